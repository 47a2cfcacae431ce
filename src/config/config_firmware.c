/* Firmware boot: what `kestrel run` does without --kernel.
 *
 *   --firmware bios|FILE       the image mapped below 4 GiB (default bios:
 *                              Debian's SeaBIOS, CONFIG_FIRMWARE_BIOS)
 *   --firmware-log stderr|FILE where the firmware's debug log goes (QEMU's
 *                              debugcon on port 0x402; default nowhere)
 *   --boot ORDER[,menu=on|off][,menu-wait=DURATION]
 *                              ORDER: disk, cdrom, net, comma-separated in
 *                              the order to try them (default disk,cdrom)
 *
 * A direct kernel boot runs no firmware, so these go with --kernel as
 * little as --initrd, --cmdline and --boot-entry go without it: each such
 * pair is a one-line error naming the flag. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/config.h"

#define BOOT_SPEC_MAX 256

/* A path as given, or relative to the JSON file's folder. */
static int fw_path(char **field, const char *v, const char *basedir, char *err, size_t errlen)
{
	char *s;

	if (!*v)
		return config_errf(err, errlen, "empty path");
	if (basedir && v[0] != '/') {
		if (asprintf(&s, "%s/%s", basedir, v) < 0)
			s = NULL;
	} else {
		s = strdup(v);
	}
	if (!s)
		return config_errf(err, errlen, "out of memory");
	free(*field);
	*field = s;
	return 0;
}

/* "bios" is the keyword for Debian's SeaBIOS; a file of that name is ./bios. */
int config_firmware_set(struct vm_config *c, const char *v, const char *basedir, char *err,
			size_t errlen)
{
	if (!strcmp(v, "bios"))
		return fw_path(&c->firmware, CONFIG_FIRMWARE_BIOS, NULL, err, errlen);
	return fw_path(&c->firmware, v, basedir, err, errlen);
}

int config_firmware_log_set(struct vm_config *c, const char *v, const char *basedir, char *err,
			    size_t errlen)
{
	if (!strcmp(v, "stderr"))
		return fw_path(&c->firmware_log, v, NULL, err, errlen);
	return fw_path(&c->firmware_log, v, basedir, err, errlen);
}

/* ---- --boot ---- */

static const char *const boot_dev_names[] = {
	[CONFIG_BOOT_DISK] = "disk",
	[CONFIG_BOOT_CDROM] = "cdrom",
	[CONFIG_BOOT_NET] = "net",
};

static int boot_option(struct config_boot *b, const char *key, const char *v, char *err,
		       size_t errlen)
{
	uint64_t ms;

	if (!strcmp(key, "menu")) {
		if (config_parse_bool(v, &b->menu))
			return config_errf(err, errlen, "menu=%s: use on or off", v);
		return 0;
	}
	if (!strcmp(key, "menu-wait") || !strcmp(key, "menu_wait")) {
		if (config_parse_duration(v, &ms) || ms > CONFIG_BOOT_MENU_WAIT_MAX)
			return config_errf(err, errlen,
					   "menu-wait=%s: not a duration up to %ums (e.g. "
					   "3s, 2500ms)",
					   v, CONFIG_BOOT_MENU_WAIT_MAX);
		b->menu_wait_ms = (unsigned)ms;
		return 0;
	}
	return config_errf(err, errlen, "%s=: unknown option (use menu=on|off, menu-wait=DURATION)",
			   key);
}

static int boot_device(struct config_boot *b, const char *tok, char *err, size_t errlen)
{
	for (unsigned d = 0; d < ARRAY_SIZE(boot_dev_names); d++) {
		if (strcmp(tok, boot_dev_names[d]))
			continue;
		for (unsigned i = 0; i < b->n; i++)
			if (b->order[i] == d)
				return config_errf(err, errlen, "%s: named twice", tok);
		b->order[b->n++] = (enum config_boot_dev)d;
		return 0;
	}
	return config_errf(err, errlen,
			   "'%s' is not a boot device (use disk, cdrom or net, "
			   "comma-separated in the order to try them)",
			   tok);
}

static int boot_parse(struct config_boot *b, char *spec, char *err, size_t errlen)
{
	char *save = NULL;
	int ret = 0;

	for (char *tok = strtok_r(spec, ",", &save); tok && !ret;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (eq) {
			*eq = '\0';
			ret = boot_option(b, tok, eq + 1, err, errlen);
		} else {
			ret = boot_device(b, tok, err, errlen);
		}
	}
	return ret;
}

int config_boot_set(struct vm_config *c, const char *v, char *err, size_t errlen)
{
	struct config_boot b = { .set = true };
	char spec[BOOT_SPEC_MAX];
	int ret;

	if (!*v || strlen(v) >= sizeof(spec) || strstr(v, ",,") || v[0] == ',' ||
	    v[strlen(v) - 1] == ',')
		return config_errf(err, errlen,
				   "'%.64s' is not a boot order (e.g. disk, cdrom, "
				   "cdrom,disk, disk,menu=on)",
				   v);
	memcpy(spec, v, strlen(v) + 1);
	ret = boot_parse(&b, spec, err, errlen);
	if (!ret)
		c->boot = b;
	return ret;
}

/* ---- checks ---- */

int config_firmware_file_check(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd, ret = 0;

	/* O_NONBLOCK: a FIFO must not hang us before fstat rejects it. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		ret = -errno;
		config_errf(err, errlen, "%s", strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		config_errf(err, errlen, "%s", strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		ret = config_errf(err, errlen, "not a regular file");
	} else if (st.st_size < (off_t)CONFIG_FIRMWARE_MIN ||
		   st.st_size > (off_t)CONFIG_FIRMWARE_MAX ||
		   st.st_size % (off_t)CONFIG_FIRMWARE_MIN) {
		ret = config_errf(err, errlen,
				  "%lld bytes is not a firmware image size (a multiple of "
				  "64 KiB, 64 KiB to 16 MiB)",
				  (long long)st.st_size);
	}
	close(fd);
	return ret;
}

static int fw_needs_kernel(const char *flag, char *err, size_t errlen)
{
	return config_errf(err, errlen,
			   "--%s: needs --kernel (without one the VM boots firmware, "
			   "which starts the OS from a disk)",
			   flag);
}

static int fw_not_with_kernel(const char *flag, char *err, size_t errlen)
{
	return config_errf(err, errlen,
			   "--%s: does not go with --kernel (a direct kernel boot runs "
			   "no firmware; drop one of them)",
			   flag);
}

int config_firmware_validate(struct vm_config *c, char *err, size_t errlen)
{
	char why[200];
	int ret;

	if (c->kernel) {
		if (c->firmware)
			return fw_not_with_kernel("firmware", err, errlen);
		if (c->firmware_log)
			return fw_not_with_kernel("firmware-log", err, errlen);
		if (c->boot.set)
			return fw_not_with_kernel("boot", err, errlen);
		return 0;
	}
	if (c->initrd)
		return fw_needs_kernel("initrd", err, errlen);
	if (c->cmdline)
		return fw_needs_kernel("cmdline", err, errlen);
	if (c->boot_entry != BOOT_ENTRY_AUTO)
		return fw_needs_kernel("boot-entry", err, errlen);
	if (!c->firmware && config_firmware_set(c, "bios", NULL, err, errlen))
		return -ENOMEM;
	ret = config_firmware_file_check(c->firmware, why, sizeof(why));
	if (ret)
		return config_errf(
			err, errlen, "--firmware: %s: %s%s", c->firmware, why,
			strcmp(c->firmware, CONFIG_FIRMWARE_BIOS)
				? ""
				: " (the default firmware, from Debian's seabios package; or boot a "
				  "kernel with --kernel FILE)");
	if (c->firmware_log && strcmp(c->firmware_log, "stderr"))
		return config_output_file_check("firmware-log", c->firmware_log, err, errlen);
	return 0;
}
