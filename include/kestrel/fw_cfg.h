/* QEMU's firmware configuration device (QEMU docs/specs/fw_cfg.rst), the
 * interface SeaBIOS and OVMF read the board from, and what kestrel puts in it.
 *
 * How the machine wires it (the firmware boot path does this; direct kernel
 * boot leaves it out, since Linux only looks for fw_cfg through an ACPI
 * QEMU0002 device that kestrel's DSDT does not declare):
 *
 *	fw = fw_cfg_create(&vm->gm);
 *	bus_insert(pio, FW_CFG_PORT_SEL, FW_CFG_IO_LEN, fw, FW_CFG_REGION_IO);
 *	bus_insert(pio, FW_CFG_PORT_DMA, FW_CFG_DMA_LEN, fw, FW_CFG_REGION_DMA);
 *	fw_cfg_add_board(fw, &(struct fw_cfg_board){ ... });   CPUs, RAM, etc/e820
 *	fw_cfg_add_acpi(fw, &acpi_board);       etc/acpi/{tables,rsdp}, etc/table-loader
 *	fw_cfg_add_bootorder(fw, devs, n);      bootorder
 *	fw_cfg_add_rom(fw, "name.bin", rom, len);   genroms/name.bin
 *
 * Items are added before the vCPUs run; the guest can only read them. */
#ifndef KESTREL_FW_CFG_H
#define KESTREL_FW_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/acpi.h"
#include "kestrel/boot.h"
#include "kestrel/device.h"
#include "kestrel/guest_mem.h"

/* x86 I/O ports (fw_cfg.rst "Register Locations"). Region 0 is the 16-bit
 * selector at 0x510 overlapping the 8-bit data port at 0x511; region 1 the
 * 64-bit big-endian DMA address register at 0x514. */
#define FW_CFG_PORT_SEL	  0x510
#define FW_CFG_PORT_DATA  0x511
#define FW_CFG_PORT_DMA	  0x514
#define FW_CFG_IO_LEN	  2
#define FW_CFG_DMA_LEN	  8
#define FW_CFG_REGION_IO  0
#define FW_CFG_REGION_DMA 1

/* Selector keys (QEMU include/standard-headers/linux/qemu_fw_cfg.h). */
#define FW_CFG_SIGNATURE      0x00
#define FW_CFG_ID	      0x01
#define FW_CFG_UUID	      0x02
#define FW_CFG_RAM_SIZE	      0x03
#define FW_CFG_NOGRAPHIC      0x04
#define FW_CFG_NB_CPUS	      0x05
#define FW_CFG_NUMA	      0x0d
#define FW_CFG_BOOT_MENU      0x0e
#define FW_CFG_MAX_CPUS	      0x0f
#define FW_CFG_FILE_DIR	      0x19
#define FW_CFG_FILE_FIRST     0x20
#define FW_CFG_WRITE_CHANNEL  0x4000 /* ignored since QEMU 2.4, as here */
#define FW_CFG_ARCH_LOCAL     0x8000
#define FW_CFG_ENTRY_MASK     0x3fff
#define FW_CFG_ACPI_TABLES    (FW_CFG_ARCH_LOCAL + 0)
#define FW_CFG_SMBIOS_ENTRIES (FW_CFG_ARCH_LOCAL + 1)
#define FW_CFG_IRQ0_OVERRIDE  (FW_CFG_ARCH_LOCAL + 2)
#define FW_CFG_E820_TABLE     (FW_CFG_ARCH_LOCAL + 3)

/* FW_CFG_ID feature bits, and the FWCfgDmaAccess control bits. */
#define FW_CFG_VERSION	      0x01
#define FW_CFG_VERSION_DMA    0x02
#define FW_CFG_DMA_CTL_ERROR  0x01
#define FW_CFG_DMA_CTL_READ   0x02
#define FW_CFG_DMA_CTL_SKIP   0x04
#define FW_CFG_DMA_CTL_SELECT 0x08
#define FW_CFG_DMA_CTL_WRITE  0x10
#define FW_CFG_DMA_SIGNATURE  0x51454d5520434647ULL /* "QEMU CFG" */

#define FW_CFG_MAX_FILES     64 /* QEMU's pc machines allow 0x20 .. 0x1000 */
#define FW_CFG_NAME_LEN	     56 /* FWCfgFile.name, NUL included */
#define FW_CFG_DIR_ENTRY_LEN 64
#define FW_CFG_MAX_ITEM	     (64u << 20) /* largest item we accept from the board */

/* ---- the device (devices/emulated/fw_cfg.c) ---- */

/* DMA goes through gm (gm_read/gm_write), which must outlive the device. */
struct device *fw_cfg_create(const struct guest_mem *gm);
/* A numbered item (key below FW_CFG_FILE_FIRST, or an arch key 0x8000 ..
 * 0x801f); data is copied. -EINVAL for a file key or a bad length, -EEXIST if
 * the key has data, -ENOMEM. */
int fw_cfg_add_bytes(struct device *dev, uint16_t key, const void *data, size_t len) WARN_UNUSED;
int fw_cfg_add_u16(struct device *dev, uint16_t key, uint16_t v) WARN_UNUSED; /* little-endian */
int fw_cfg_add_u32(struct device *dev, uint16_t key, uint32_t v) WARN_UNUSED;
int fw_cfg_add_u64(struct device *dev, uint16_t key, uint64_t v) WARN_UNUSED;
/* A named file in the directory; data is copied. Files are kept sorted by
 * name as QEMU's current machine types do, so a file's selector depends on
 * the names added, not on the order. -EINVAL for an empty name or one of
 * FW_CFG_NAME_LEN bytes or more, -EEXIST for a duplicate, -ENOSPC past
 * FW_CFG_MAX_FILES. */
int fw_cfg_add_file(struct device *dev, const char *name, const void *data, size_t len) WARN_UNUSED;

/* ---- what the board says through it (src/boot/fw_cfg_board.c) ---- */

struct fw_cfg_board {
	unsigned ncpus;		       /* FW_CFG_NB_CPUS, FW_CFG_MAX_CPUS (APIC ids 0..n-1) */
	uint64_t ram_size;	       /* FW_CFG_RAM_SIZE: all RAM, both sides of the hole */
	const struct e820_entry *e820; /* etc/e820: RAM and reservations, firmware adds its own */
	int ne820;
	bool graphics;		    /* FW_CFG_NOGRAPHIC = !graphics: a display to use */
	bool boot_menu;		    /* FW_CFG_BOOT_MENU: offer the F12 menu */
	uint16_t boot_menu_wait_ms; /* etc/boot-menu-wait if non-zero */
	int32_t boot_fail_wait_ms;  /* etc/boot-fail-wait: retry after; -1 never (QEMU's default) */
};

int fw_cfg_add_board(struct device *fw, const struct fw_cfg_board *b) WARN_UNUSED;
/* etc/e820 as SeaBIOS reads it: {u64 address, u64 length, u32 type} LE each. */
int fw_cfg_add_e820(struct device *fw, const struct e820_entry *e, int n) WARN_UNUSED;
/* The RAM regions of gm as e820 entries (no reservations: the firmware makes
 * its own for the BIOS areas). Returns the count, at most max. */
int fw_cfg_ram_e820(const struct guest_mem *gm, struct e820_entry *out, int max);

/* A boot device in the OpenFirmware-style path QEMU writes to "bootorder" and
 * SeaBIOS matches (src/boot.c build_*_path). PCI function 0..7, device 0..31. */
enum fw_boot_kind {
	FW_BOOT_ATA,  /* /pci@i0cf8/ide@D,F/drive@CHANNEL/disk@UNIT (disk or ATAPI) */
	FW_BOOT_SCSI, /* /pci@i0cf8/scsi@D,F/channel@0/disk@TARGET,LUN */
	FW_BOOT_NET,  /* /pci@i0cf8/ethernet@D,F/ethernet-phy@0 (its option ROM) */
	FW_BOOT_HALT, /* HALT: boot only from the list (SeaBIOS strict boot) */
};

struct fw_boot_dev {
	enum fw_boot_kind kind;
	uint8_t pci_dev, pci_fn;
	uint8_t channel, unit; /* ATA */
	uint16_t target, lun;  /* SCSI */
};

/* The bootorder file: one path per line, '\n'-separated, NUL-terminated (as
 * QEMU's get_boot_devices_list). Returns its length with the NUL, -EINVAL for
 * a bad device, -ENOSPC if size is too small. */
long fw_bootorder_build(const struct fw_boot_dev *d, unsigned n, char *buf, size_t size);
int fw_cfg_add_bootorder(struct device *fw, const struct fw_boot_dev *d, unsigned n) WARN_UNUSED;
/* An option ROM SeaBIOS runs from fw_cfg: the file "genroms/NAME". */
int fw_cfg_add_rom(struct device *fw, const char *name, const void *rom, size_t len) WARN_UNUSED;

/* ---- ACPI through QEMU's table loader (src/boot/fw_cfg_acpi.c) ---- */

/* hw/acpi/bios-linker-loader.c: 128-byte little-endian commands. */
#define TABLE_LOADER_ENTRY_LEN	   128
#define TABLE_LOADER_FILESZ	   56
#define TABLE_LOADER_ALLOCATE	   1
#define TABLE_LOADER_ADD_POINTER   2
#define TABLE_LOADER_ADD_CHECKSUM  3
#define TABLE_LOADER_WRITE_POINTER 4
#define TABLE_LOADER_ZONE_HIGH	   1
#define TABLE_LOADER_ZONE_FSEG	   2
#define ACPI_FILE_TABLES	   "etc/acpi/tables"
#define ACPI_FILE_RSDP		   "etc/acpi/rsdp"
#define ACPI_FILE_LOADER	   "etc/table-loader"

/* The loader script for blobs built by acpi_build_blobs(): ALLOCATE the RSDP
 * in the F segment and the tables anywhere below 4 GiB, then every pointer
 * and checksum in the order the builder wrote them. Returns bytes written to
 * out (a multiple of TABLE_LOADER_ENTRY_LEN) or -ENOSPC. */
long table_loader_script(const struct acpi_blobs *b, uint8_t *out, size_t size);
/* Build kestrel's tables for b and add the three files. */
int fw_cfg_add_acpi(struct device *fw, const struct acpi_board *b) WARN_UNUSED;

#endif
