/* --vga and --display (JSON "vga", "display"): the graphics card and where
 * its picture goes.
 *
 *   --vga std[,mem=SIZE][,rom=FILE|none] | none
 *
 * std: the standard VGA (PCI 1234:1111, QEMU's "std VGA") with mem bytes of
 * VRAM (a power of two, 1M to 256M; default 16M) and its option ROM (default
 * Debian's /usr/share/seabios/vgabios-stdvga.bin when it is there; none: no
 * ROM). A VM booting its kernel directly has no VGA unless asked for; one
 * booting through firmware gets std by default (the firmware path is not
 * there yet).
 *
 *   --display none | vnc=[ADDR]:PORT[,password-file=FILE]
 *
 * No display output besides screendumps, or a VNC server
 * (src/config/config_vnc.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/config.h"

#define VGA_SPEC_MAX 4096

#define disp_err config_errf

static int vga_mem(const char *v, uint64_t *out, char *err, size_t errlen)
{
	uint64_t n;

	if (parse_size(v, &n) < 0 || n < CONFIG_VGA_MEM_MIN || n > CONFIG_VGA_MEM_MAX ||
	    (n & (n - 1)))
		return disp_err(err, errlen, "mem=%s: not a power of two from 1M to 256M", v);
	*out = n;
	return 0;
}

/* rom=FILE (relative to basedir when set) or rom=none. */
static int vga_rom(struct vm_config *c, const char *v, const char *basedir, char *err,
		   size_t errlen)
{
	char *p;

	if (!*v)
		return disp_err(err, errlen, "rom=: needs a file or none");
	if (!strcmp(v, "none")) {
		p = strdup("none");
	} else if (basedir && v[0] != '/') {
		if (asprintf(&p, "%s/%s", basedir, v) < 0)
			p = NULL;
	} else {
		p = strdup(v);
	}
	if (!p)
		return disp_err(err, errlen, "out of memory");
	free(c->vga_rom);
	c->vga_rom = p;
	return 0;
}

static int vga_key(struct vm_config *c, char *kv, const char *basedir, char *err, size_t errlen)
{
	char *eq = strchr(kv, '=');

	if (!eq)
		return disp_err(err, errlen, "'%s': expected key=value (mem=, rom=)", kv);
	*eq = '\0';
	if (!strcmp(kv, "mem"))
		return vga_mem(eq + 1, &c->vga_mem, err, errlen);
	if (!strcmp(kv, "rom"))
		return vga_rom(c, eq + 1, basedir, err, errlen);
	return disp_err(err, errlen, "'%s': unknown option (mem=, rom=)", kv);
}

int config_vga_set(struct vm_config *c, const char *spec, const char *basedir, char *err,
		   size_t errlen)
{
	char buf[VGA_SPEC_MAX], *save = NULL, *kv;
	int ret = 0;

	if (strlen(spec) >= sizeof(buf))
		return disp_err(err, errlen, "too long");
	/* The whole value replaces an earlier one (a flag over the JSON file). */
	c->vga_mem = 0;
	config_display_free(c);
	if (!strcmp(spec, "none")) {
		c->vga = CONFIG_VGA_NONE;
		return 0;
	}
	memcpy(buf, spec, strlen(spec) + 1);
	kv = strtok_r(buf, ",", &save);
	if (!kv || strcmp(kv, "std"))
		return disp_err(err, errlen,
				"'%s' is not a VGA (use std[,mem=SIZE][,rom=FILE|none] "
				"or none)",
				spec);
	c->vga = CONFIG_VGA_STD;
	while (!ret && (kv = strtok_r(NULL, ",", &save)))
		ret = vga_key(c, kv, basedir, err, errlen);
	return ret;
}

int config_display_set(struct vm_config *c, const char *v, const char *basedir, char *err,
		       size_t errlen)
{
	if (!strncmp(v, "vnc=", 4))
		return config_vnc_set(c, v + 4, basedir, err, errlen);
	if (strcmp(v, "none"))
		return disp_err(err, errlen,
				"'%s' is not a display (use none or "
				"vnc=[ADDR]:PORT[,password-file=FILE])",
				v);
	config_vnc_free(c);
	c->display = CONFIG_DISPLAY_NONE;
	return 0;
}

bool config_vga_same(const struct vm_config *a, const struct vm_config *b)
{
	return a->vga == b->vga && a->vga_mem == b->vga_mem &&
	       ((!a->vga_rom && !b->vga_rom) ||
		(a->vga_rom && b->vga_rom && !strcmp(a->vga_rom, b->vga_rom)));
}

/* An explicit ROM must be a readable file a PCI ROM BAR can hold. */
int config_vga_validate(struct vm_config *c, char *err, size_t errlen)
{
	struct stat st;

	/* As on any PC, a VM booting firmware has a screen (the BIOS banner,
	 * boot menus, installers); a kernel booted directly keeps its serial
	 * console and no VGA unless asked for. */
	if (c->vga == CONFIG_VGA_DEFAULT)
		c->vga = c->kernel ? CONFIG_VGA_NONE : CONFIG_VGA_STD;
	if (c->vga != CONFIG_VGA_STD) {
		if (c->vga_mem || c->vga_rom)
			return disp_err(err, errlen, "--vga: mem= and rom= need std");
		return 0;
	}
	if (!c->vga_mem)
		c->vga_mem = CONFIG_VGA_MEM_DEFAULT;
	if (!c->vga_rom || !strcmp(c->vga_rom, "none"))
		return 0;
	if (stat(c->vga_rom, &st) < 0 || access(c->vga_rom, R_OK) < 0)
		return disp_err(err, errlen, "--vga: rom=%s: %s", c->vga_rom, strerror(errno));
	if (!S_ISREG(st.st_mode) || st.st_size == 0 || (uint64_t)st.st_size > CONFIG_VGA_ROM_MAX)
		return disp_err(err, errlen, "--vga: rom=%s: not a file of 1 byte to 16M",
				c->vga_rom);
	return 0;
}

void config_display_free(struct vm_config *c)
{
	free(c->vga_rom);
	c->vga_rom = NULL;
}
