/* PCI bus 0 behind configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2).
 *
 * Design
 * - The host (pci_host_create() in devices.h) is one device with two I/O
 *   regions: region 0 = CONFIG_ADDRESS at 0xCF8, inserted with length 1
 *   because 0xCF9 is the reset register (acpi_pm); a 32-bit access at 0xCF8
 *   still arrives with size 4, and only such an access latches the address.
 *   Region 1 = CONFIG_DATA at 0xCFC, length 4, any size at any byte lane.
 *   Slot 0 holds the host bridge, an i440FX (8086:1237, class 06 00 00).
 * - A PCI function is a struct pci_dev embedded in its device's own state
 *   struct, set up with pci_dev_init() and pci_dev_set_*() and attached with
 *   pci_host_add(). Only function 0 of each slot exists; a read of an empty
 *   slot, another function, another bus or with the enable bit clear returns
 *   all ones, a write goes nowhere.
 * - Config space is 256 bytes with two per-byte masks: wmask (bits the guest
 *   may write) and w1cmask (bits a guest write of 1 clears, e.g. the error
 *   bits of STATUS). Every other bit is read-only. Devices write cfg[]
 *   directly (pci_set_u8/16/32) for their own read-only registers.
 * - BARs are declared with pci_dev_set_bar(); BAR sizing (write all ones,
 *   read back the size mask) falls out of the wmask. After each guest write
 *   touching COMMAND or a BAR, every BAR's decoded address is recomputed
 *   (PCI_BAR_UNMAPPED while decoding is off, at address 0, or when the range
 *   does not fit its space) and ops->bar_remap(pdev, bar, old, new) runs for
 *   each BAR whose address changed, so the device can move its bus ranges.
 * - Hooks: cfg_read may replace the value a read returns (live registers),
 *   cfg_write sees each write after the masks are applied and BARs are remapped.
 * - Locking: config accesses run with the host device's lock held (the bus
 *   dispatch holds it); hooks and bar_remap are called under it. A device
 *   taking its own lock inside a hook orders host -> device, so a device must
 *   not call into the host while holding its own lock.
 * - State: the host saves CONFIG_ADDRESS and the bridge. Each device saves its
 *   own function with pci_dev_save()/pci_dev_load(); a load refuses a snapshot
 *   whose read-only header bytes differ (another device model) and replays
 *   BAR decoding through bar_remap.
 * - Not yet: extended (4 KiB) config space, capabilities helpers, MSI,
 *   multi-function devices, bridges to other buses, expansion ROM BARs. */
#ifndef KESTREL_PCI_H
#define KESTREL_PCI_H

#include <stdbool.h>
#include <stdint.h>
#include "kestrel/device.h"
#include "kestrel/util.h"

struct state_buf;

#define PCI_CFG_SIZE  256
#define PCI_MAX_SLOTS 32
#define PCI_NUM_BARS  6
#define PCI_BAR_UNMAPPED (~0ULL)

/* Type 0 header (PCI Local Bus 3.0, 6.1). */
#define PCI_VENDOR_ID           0x00
#define PCI_DEVICE_ID           0x02
#define PCI_COMMAND             0x04
#define PCI_STATUS              0x06
#define PCI_REVISION_ID         0x08
#define PCI_CLASS_PROG          0x09
#define PCI_CLASS_DEVICE        0x0a
#define PCI_CACHE_LINE_SIZE     0x0c
#define PCI_LATENCY_TIMER       0x0d
#define PCI_HEADER_TYPE         0x0e
#define PCI_BIST                0x0f
#define PCI_BASE_ADDRESS_0      0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID        0x2e
#define PCI_ROM_ADDRESS         0x30
#define PCI_CAPABILITY_LIST     0x34
#define PCI_INTERRUPT_LINE      0x3c
#define PCI_INTERRUPT_PIN       0x3d
#define PCI_HEADER_END          0x40

#define PCI_COMMAND_IO           0x0001
#define PCI_COMMAND_MEMORY       0x0002
#define PCI_COMMAND_MASTER       0x0004
#define PCI_COMMAND_PARITY       0x0040
#define PCI_COMMAND_SERR         0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400

#define PCI_STATUS_INTERRUPT        0x0008
#define PCI_STATUS_CAP_LIST         0x0010
#define PCI_STATUS_PARITY           0x0100
#define PCI_STATUS_SIG_TARGET_ABORT 0x0800
#define PCI_STATUS_REC_TARGET_ABORT 0x1000
#define PCI_STATUS_REC_MASTER_ABORT 0x2000
#define PCI_STATUS_SIG_SYSTEM_ERROR 0x4000
#define PCI_STATUS_DETECTED_PARITY  0x8000

/* BAR type bits (the read-only low bits of a BAR). */
#define PCI_BAR_MEM32    0x0
#define PCI_BAR_IO       0x1
#define PCI_BAR_MEM64    0x4
#define PCI_BAR_PREFETCH 0x8

struct pci_dev;

struct pci_dev_ops {
	/* Optional. val is what the generic code read; return what the guest sees. */
	uint32_t (*cfg_read)(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val);
	/* Optional. Called after a guest write was applied through the masks. */
	void (*cfg_write)(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val);
	/* Optional. A BAR's decoded address changed; either may be PCI_BAR_UNMAPPED. */
	void (*bar_remap)(struct pci_dev *pdev, int bar, uint64_t old_addr, uint64_t new_addr);
};

struct pci_bar {
	uint64_t size;  /* 0: not implemented (reads 0, not writable) */
	uint8_t flags;  /* PCI_BAR_IO, or PCI_BAR_MEM32/MEM64 | PCI_BAR_PREFETCH */
	uint64_t addr;  /* decoded address, or PCI_BAR_UNMAPPED */
};

struct pci_dev {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];
	uint8_t w1cmask[PCI_CFG_SIZE];
	struct pci_bar bar[PCI_NUM_BARS];
	const struct pci_dev_ops *ops;
	void *opaque;   /* for the ops: usually the owning device */
	int slot;       /* -1 until added to the host */
};

/* Fill the header: IDs, class (base << 16 | sub << 8 | prog-if), revision,
 * header type 0, the standard writable fields (COMMAND, cache line, latency,
 * interrupt line) and the W1C bits of STATUS. ops may be NULL. */
void pci_dev_init(struct pci_dev *pdev, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint8_t revision, const struct pci_dev_ops *ops, void *opaque);
void pci_dev_set_subsystem(struct pci_dev *pdev, uint16_t vendor, uint16_t id);
/* pin: 1..4 for INTA#..INTD# (0: none); line: the initial Interrupt Line. */
void pci_dev_set_irq(struct pci_dev *pdev, uint8_t pin, uint8_t line);
/* size: a power of two, >= 16 for memory, 4..256 for I/O. A 64-bit BAR also
 * takes bar + 1. -EINVAL on a bad bar index, size or flags. */
int pci_dev_set_bar(struct pci_dev *pdev, int bar, uint64_t size, uint8_t flags) WARN_UNUSED;
/* Where the BAR decodes now, or PCI_BAR_UNMAPPED. */
uint64_t pci_dev_bar_addr(const struct pci_dev *pdev, int bar);

/* Config space as the guest sees it (off + size within 256; size 1, 2 or 4). */
uint32_t pci_cfg_read(struct pci_dev *pdev, unsigned off, unsigned size);
void pci_cfg_write(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val);

int pci_dev_save(struct pci_dev *pdev, struct state_buf *out) WARN_UNUSED;
int pci_dev_load(struct pci_dev *pdev, struct state_buf *in) WARN_UNUSED;

/* Attach pdev at slot 1..31, or the first free slot if slot is -1. Returns the
 * slot, or -EINVAL (bad slot), -EEXIST (taken), -ENOSPC (bus full). */
int pci_host_add(struct device *host, struct pci_dev *pdev, int slot) WARN_UNUSED;
/* The function at a slot (slot 0: the host bridge), or NULL. */
struct pci_dev *pci_host_slot(struct device *host, int slot);

/* Device-side access to config space, bypassing the guest write masks. */
static inline void pci_set_u8(struct pci_dev *p, unsigned off, uint8_t v)
{
	p->cfg[off] = v;
}

static inline void pci_set_u16(struct pci_dev *p, unsigned off, uint16_t v)
{
	p->cfg[off] = (uint8_t)v;
	p->cfg[off + 1] = (uint8_t)(v >> 8);
}

static inline void pci_set_u32(struct pci_dev *p, unsigned off, uint32_t v)
{
	pci_set_u16(p, off, (uint16_t)v);
	pci_set_u16(p, off + 2, (uint16_t)(v >> 16));
}

static inline uint16_t pci_get_u16(const struct pci_dev *p, unsigned off)
{
	return (uint16_t)(p->cfg[off] | p->cfg[off + 1] << 8);
}

static inline uint32_t pci_get_u32(const struct pci_dev *p, unsigned off)
{
	return pci_get_u16(p, off) | (uint32_t)pci_get_u16(p, off + 2) << 16;
}

#endif
