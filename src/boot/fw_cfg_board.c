/* What the board tells firmware through fw_cfg, in the items and files
 * QEMU's pc machines provide (hw/i386/fw_cfg.c fw_cfg_arch_create,
 * hw/nvram/fw_cfg.c) and SeaBIOS reads (src/fw/paravirt.c, src/boot.c):
 * CPU counts, RAM size and etc/e820, the boot menu and boot order, and
 * option ROMs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/byteorder.h"
#include "kestrel/fw_cfg.h"

#define E820_FILE_ENTRY_LEN 20
#define FW_PCI_ROOT	    "/pci@i0cf8" /* SeaBIOS FW_PCI_DOMAIN: the 0xCF8 host bridge */
#define FW_BOOT_PATH_MAX    96
#define FW_ROM_PREFIX	    "genroms/"

int fw_cfg_ram_e820(const struct guest_mem *gm, struct e820_entry *out, int max)
{
	int n = 0;

	/* As QEMU's etc/e820: RAM below the PCI hole as one range from 0 (the
	 * firmware reserves its own areas below 1 MiB), then RAM from 4 GiB. */
	if (n < max && gm->ram_low)
		out[n++] = (struct e820_entry){ 0, gm->ram_low, E820_RAM };
	if (n < max && gm->ram_high)
		out[n++] = (struct e820_entry){ GM_HIGHMEM_BASE, gm->ram_high, E820_RAM };
	return n;
}

int fw_cfg_add_e820(struct device *fw, const struct e820_entry *e, int n)
{
	uint8_t buf[E820_MAX * E820_FILE_ENTRY_LEN];

	if (n < 0 || n > E820_MAX)
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		uint8_t *p = buf + i * E820_FILE_ENTRY_LEN;

		put_le64(p, e[i].addr);
		put_le64(p + 8, e[i].size);
		put_le32(p + 16, e[i].type);
	}
	return fw_cfg_add_file(fw, "etc/e820", buf, (size_t)n * E820_FILE_ENTRY_LEN);
}

/* FW_CFG_NUMA with no nodes: u64 node count 0, then one u64 per APIC id
 * (SeaBIOS skips over them by etc/max-cpus). */
static int fw_cfg_add_numa(struct device *fw, unsigned ncpus)
{
	size_t len = (1 + (size_t)ncpus) * 8;
	uint8_t *z = calloc(1, len);
	int ret;

	if (!z)
		return -ENOMEM;
	ret = fw_cfg_add_bytes(fw, FW_CFG_NUMA, z, len);
	free(z);
	return ret;
}

static int fw_cfg_add_le16_file(struct device *fw, const char *name, uint16_t v)
{
	uint8_t le[2];

	put_le16(le, v);
	return fw_cfg_add_file(fw, name, le, sizeof(le));
}

static int fw_cfg_add_le32_file(struct device *fw, const char *name, uint32_t v)
{
	uint8_t le[4];

	put_le32(le, v);
	return fw_cfg_add_file(fw, name, le, sizeof(le));
}

int fw_cfg_add_board(struct device *fw, const struct fw_cfg_board *b)
{
	int ret;

	if (!b->ncpus || b->ncpus > UINT16_MAX)
		return -EINVAL;
	/* FW_CFG_MAX_CPUS is the APIC id limit (QEMU's comment in
	 * fw_cfg_arch_create); ids here are 0..ncpus-1. */
	ret = fw_cfg_add_u16(fw, FW_CFG_NB_CPUS, (uint16_t)b->ncpus);
	ret = ret ?: fw_cfg_add_u16(fw, FW_CFG_MAX_CPUS, (uint16_t)b->ncpus);
	ret = ret ?: fw_cfg_add_u64(fw, FW_CFG_RAM_SIZE, b->ram_size);
	ret = ret ?: fw_cfg_add_u16(fw, FW_CFG_NOGRAPHIC, !b->graphics);
	ret = ret ?: fw_cfg_add_u16(fw, FW_CFG_BOOT_MENU, b->boot_menu);
	/* The PIT's IRQ0 reaches IOAPIC pin 2, as the MADT's override says. */
	ret = ret ?: fw_cfg_add_u32(fw, FW_CFG_IRQ0_OVERRIDE, 1);
	ret = ret ?: fw_cfg_add_numa(fw, b->ncpus);
	ret = ret ?: fw_cfg_add_e820(fw, b->e820, b->ne820);
	if (!ret && b->boot_menu_wait_ms)
		ret = fw_cfg_add_le16_file(fw, "etc/boot-menu-wait", b->boot_menu_wait_ms);
	/* QEMU always adds it; -1 (0xffffffff) means "do not retry". */
	ret = ret ?: fw_cfg_add_le32_file(fw, "etc/boot-fail-wait", (uint32_t)b->boot_fail_wait_ms);
	return ret;
}

/* One device's path; -EINVAL for addresses no PCI bus or channel has. */
static int fw_boot_path(const struct fw_boot_dev *d, char *p, size_t size)
{
	char fn[8] = "";
	int n;

	if (d->kind == FW_BOOT_HALT)
		return snprintf(p, size, "HALT");
	if (d->pci_dev > 31 || d->pci_fn > 7)
		return -EINVAL;
	/* build_pci_path: "@dev" with ",fn" only for a non-zero function. */
	if (d->pci_fn)
		snprintf(fn, sizeof(fn), ",%x", d->pci_fn);
	switch (d->kind) {
	case FW_BOOT_ATA:
		if (d->channel > 1 || d->unit > 1)
			return -EINVAL;
		n = snprintf(p, size, FW_PCI_ROOT "/ide@%x%s/drive@%x/disk@%x", d->pci_dev, fn,
			     d->channel, d->unit);
		break;
	case FW_BOOT_SCSI:
		n = snprintf(p, size, FW_PCI_ROOT "/scsi@%x%s/channel@0/disk@%x,%x", d->pci_dev, fn,
			     d->target, d->lun);
		break;
	case FW_BOOT_NET:
		n = snprintf(p, size, FW_PCI_ROOT "/ethernet@%x%s/ethernet-phy@0", d->pci_dev, fn);
		break;
	default: return -EINVAL;
	}
	return n;
}

long fw_bootorder_build(const struct fw_boot_dev *d, unsigned n, char *buf, size_t size)
{
	size_t used = 0;

	if (!size)
		return -ENOSPC;
	buf[0] = '\0';
	for (unsigned i = 0; i < n; i++) {
		char path[FW_BOOT_PATH_MAX];
		int len = fw_boot_path(&d[i], path, sizeof(path));

		if (len < 0)
			return len;
		/* The path, then '\n' between entries or the final NUL. */
		if ((size_t)len + 1 > size - used)
			return -ENOSPC;
		memcpy(buf + used, path, (size_t)len);
		used += (size_t)len;
		buf[used++] = i + 1 < n ? '\n' : '\0';
	}
	return (long)used; /* 0 with no devices: QEMU's empty list */
}

int fw_cfg_add_bootorder(struct device *fw, const struct fw_boot_dev *d, unsigned n)
{
	size_t size = (size_t)n * FW_BOOT_PATH_MAX + 1;
	char *buf = malloc(size);
	long len;
	int ret;

	if (!buf)
		return -ENOMEM;
	len = fw_bootorder_build(d, n, buf, size);
	ret = len < 0 ? (int)len : fw_cfg_add_file(fw, "bootorder", buf, (size_t)len);
	free(buf);
	return ret;
}

int fw_cfg_add_rom(struct device *fw, const char *name, const void *rom, size_t len)
{
	char path[FW_CFG_NAME_LEN];

	if (!name || !*name || strchr(name, '/') ||
	    (size_t)snprintf(path, sizeof(path), FW_ROM_PREFIX "%s", name) >= sizeof(path))
		return -EINVAL;
	return fw_cfg_add_file(fw, path, rom, len);
}
