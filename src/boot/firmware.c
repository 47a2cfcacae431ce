/* Firmware boot: the image the worker maps for the guest, and the boot
 * devices it tells the firmware about (include/kestrel/firmware.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/firmware.h"
#include "kestrel/sandbox.h"

static int fw_read_all(int fd, uint8_t *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA; /* shrank under us */
		done += (size_t)n;
	}
	return 0;
}

int fw_image_load(const char *path, struct fw_image *img, char *err, size_t errlen)
{
	struct stat st;
	int fd, ret = 0;
	void *p;

	img->data = NULL;
	img->size = 0;
	/* A reboot reads the first boot's file again, whatever the sandbox
	 * allows by then (docs/sandbox.md: kept descriptors). */
	fd = sandbox_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = fd < 0 ? fd : -errno;
		snprintf(err, errlen, "--firmware: %s: %s", path, strerror(-ret));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < (off_t)CONFIG_FIRMWARE_MIN ||
	    st.st_size > (off_t)CONFIG_FIRMWARE_MAX || st.st_size % (off_t)CONFIG_FIRMWARE_MIN) {
		ret = -EINVAL;
		snprintf(err, errlen,
			 "--firmware: %s: not a firmware image (a regular file of a "
			 "multiple of 64 KiB, 64 KiB to 16 MiB)",
			 path);
		goto out;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		 0);
	if (p == MAP_FAILED) {
		ret = -ENOMEM;
		snprintf(err, errlen, "--firmware: %s: out of memory", path);
		goto out;
	}
	ret = fw_read_all(fd, p, (size_t)st.st_size);
	if (!ret && mprotect(p, (size_t)st.st_size, PROT_READ))
		ret = -errno;
	if (ret) {
		munmap(p, (size_t)st.st_size);
		snprintf(err, errlen, "--firmware: %s: %s", path, strerror(-ret));
		goto out;
	}
	img->data = p;
	img->size = (size_t)st.st_size;
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

void fw_image_free(struct fw_image *img)
{
	if (img->data)
		munmap(img->data, img->size);
	img->data = NULL;
	img->size = 0;
}

/* ---- boot devices ---- */

static unsigned fw_boot_order(const struct config_boot *boot,
			      enum config_boot_dev out[CONFIG_BOOT_MAX])
{
	if (!boot->n) {
		out[0] = CONFIG_BOOT_DISK;
		out[1] = CONFIG_BOOT_CDROM;
		return 2;
	}
	memcpy(out, boot->order, boot->n * sizeof(out[0]));
	return boot->n;
}

/* The IDE drives of one media, by unit: primary master, slave, secondary
 * master, slave (drive@CHANNEL/disk@UNIT, SeaBIOS build_ata_path). */
static unsigned fw_boot_ide(const struct vm_config *cfg, const struct fw_boot_board *b,
			    enum config_disk_media media, struct fw_boot_dev *out, unsigned n,
			    unsigned max)
{
	for (int u = 0; b->ide_slot >= 0 && u < CONFIG_IDE_UNITS; u++)
		for (unsigned i = 0; i < cfg->ndisks && n < max; i++)
			if (cfg->disks[i].bus == CONFIG_BUS_IDE && cfg->disks[i].unit == u &&
			    cfg->disks[i].media == media)
				out[n++] = (struct fw_boot_dev){ .kind = FW_BOOT_ATA,
								 .pci_dev = (uint8_t)b->ide_slot,
								 .pci_fn = (uint8_t)b->ide_fn,
								 .channel = (uint8_t)(u / 2),
								 .unit = (uint8_t)(u % 2) };
	return n;
}

static unsigned fw_boot_disks(const struct vm_config *cfg, const struct fw_boot_board *b,
			      struct fw_boot_dev *out, unsigned n, unsigned max)
{
	n = fw_boot_ide(cfg, b, CONFIG_MEDIA_DISK, out, n, max);
	/* SCSI targets by number: the order SeaBIOS finds them in too. */
	for (int t = 0; b->scsi_slot >= 0 && t < CONFIG_MAX_DISKS; t++)
		for (unsigned i = 0; i < cfg->ndisks && n < max; i++)
			if (cfg->disks[i].bus == CONFIG_BUS_SCSI && cfg->disks[i].target == t &&
			    !cfg->disks[i].add_after_ms)
				out[n++] = (struct fw_boot_dev){ .kind = FW_BOOT_SCSI,
								 .pci_dev = (uint8_t)b->scsi_slot,
								 .target = (uint16_t)t };
	return n;
}

static unsigned fw_boot_cdroms(const struct vm_config *cfg, const struct fw_boot_board *b,
			       struct fw_boot_dev *out, unsigned n, unsigned max)
{
	return fw_boot_ide(cfg, b, CONFIG_MEDIA_CDROM, out, n, max);
}

static unsigned fw_boot_nics(const struct vm_config *cfg, const struct fw_boot_board *b,
			     struct fw_boot_dev *out, unsigned n, unsigned max)
{
	for (unsigned i = 0; b->net_slot >= 0 && i < cfg->nnets && n < max; i++)
		out[n++] = (struct fw_boot_dev){ .kind = FW_BOOT_NET,
						 .pci_dev = (uint8_t)(b->net_slot + (int)i) };
	return n;
}

unsigned fw_boot_list(const struct vm_config *cfg, const struct fw_boot_board *b,
		      struct fw_boot_dev *out, unsigned max)
{
	enum config_boot_dev order[CONFIG_BOOT_MAX];
	unsigned k = fw_boot_order(&cfg->boot, order), n = 0;

	for (unsigned i = 0; i < k; i++) {
		switch (order[i]) {
		case CONFIG_BOOT_DISK: n = fw_boot_disks(cfg, b, out, n, max); break;
		case CONFIG_BOOT_CDROM: n = fw_boot_cdroms(cfg, b, out, n, max); break;
		case CONFIG_BOOT_NET: n = fw_boot_nics(cfg, b, out, n, max); break;
		}
	}
	return n;
}

void fw_boot_cmos(const struct config_boot *boot, enum rtc_boot_dev out[3])
{
	static const enum rtc_boot_dev map[] = {
		[CONFIG_BOOT_DISK] = RTC_BOOT_DISK,
		[CONFIG_BOOT_CDROM] = RTC_BOOT_CDROM,
		[CONFIG_BOOT_NET] = RTC_BOOT_NET,
	};
	enum config_boot_dev order[CONFIG_BOOT_MAX];
	unsigned k = fw_boot_order(boot, order);

	for (unsigned i = 0; i < 3; i++)
		out[i] = i < k ? map[order[i]] : RTC_BOOT_NONE;
}
