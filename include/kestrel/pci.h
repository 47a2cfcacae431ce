/* PCI: the function core every PCI device builds on (devices/pci/), and bus 0
 * behind configuration mechanism #1 (devices/emulated/pci_host.c).
 *
 * Design
 * - A PCI function is a struct pci_dev embedded in its device's own state
 *   struct, set up with pci_dev_init() and pci_dev_set_*(), and attached to
 *   bus 0 with pci_host_add() (function 0 of a slot) or pci_host_add_fn().
 *   The bus holds functions by devfn (slot * 8 + fn). Function 0 of a slot
 *   carries the multi-function bit (HEADER_TYPE bit 7) as soon as another
 *   function of the slot exists: Linux and SeaBIOS look at functions 1-7 only
 *   then (PCI Local Bus 3.0, 6.2.1). A function's emulated and synthetic users
 *   (PIIX IDE, virtio-pci, ...) know only this core, never each other.
 * - Config space is 256 bytes with two per-byte masks: wmask (bits the guest
 *   may write) and w1cmask (bits a guest write of 1 clears, e.g. the error
 *   bits of STATUS). Every other bit is read-only. Devices write cfg[]
 *   directly (pci_set_u8/16/32) for their own read-only registers.
 * - Capabilities are added with pci_cap_add() (first free dword-aligned
 *   space from 0x40) or pci_cap_add_at() (a fixed offset), which link them at
 *   the end of the list that starts at 0x34 and set STATUS.CAP_LIST; no
 *   device writes capability offsets by hand. pci_dev_reserve() keeps a
 *   device's own registers in 0x40-0xff out of the allocator's way.
 * - BARs: pci_dev_set_bar() declares I/O, 32- or 64-bit memory BARs;
 *   pci_dev_set_rom() an expansion ROM BAR (0x30) backed by an image the
 *   device owns. Sizing (write all ones, read the mask) falls out of the wmask.
 *   After a guest write touching COMMAND, a BAR or the ROM BAR, every BAR's
 *   decoded address is recomputed (PCI_BAR_UNMAPPED while decoding is off, at
 *   address 0, or when the range leaves its space). A BAR with a bus owner
 *   (pci_bar_attach()) is moved on the board's I/O or MMIO bus by the core;
 *   the ROM is served by the core itself (an MMIO region reading the image).
 *   Then ops->bar_remap(pdev, bar, old, new) runs with where the BAR was and
 *   now is mapped, so the device moves what else hangs on the address
 *   (ioeventfds, a RAM-backed memslot). A range the bus refuses (it overlaps
 *   another device) stays unmapped, with a warning, until the guest moves it.
 * - INTx: a function drives its pin with pci_intx_set(); the bus turns slot
 *   and pin into a GSI through one routing table (struct pci_intx_routing:
 *   pin -> link -> GSI, the table the ACPI _PRT is built from), ORs the
 *   functions sharing a link (level-triggered, wired-OR) and masks a function
 *   whose COMMAND.INTX_DISABLE is set or whose MSI/MSI-X is on (6.8.1.3).
 * - MSI and MSI-X (kestrel/msi.h) and DMA (kestrel/pci_dma.h) build on this.
 * - Hooks: cfg_read may replace the value a read returns (live registers),
 *   cfg_write sees each write after the masks, BARs, MSI/MSI-X and INTx have
 *   been updated.
 * - Locking: config accesses run with the host device's lock held (the bus
 *   dispatch holds it); hooks and bar_remap are called under it. A device
 *   taking its own lock inside a hook orders host -> device, so a device must
 *   not call into the host while holding its own lock. INTx levels have a
 *   lock of their own in the bus (a leaf): pci_intx_set() may be called from
 *   any thread, with the device's locks held.
 * - State: the host saves CONFIG_ADDRESS and the bridge. Each device saves its
 *   own functions with pci_dev_save()/pci_dev_load() (and msix_save/load); a
 *   load refuses a snapshot whose read-only header bytes differ (another
 *   model, another function layout), and replays BAR decoding, MSI routes and
 *   the INTx level. pci_dev_parse()/pci_dev_commit() split the load for a
 *   device that must check all of its sections before changing anything.
 * - Not yet: extended (4 KiB) config space, PCI-to-PCI bridges and other
 *   buses, a function-level reset of config space, hot-unplug of a function
 *   while vCPUs run. */
#ifndef KESTREL_PCI_H
#define KESTREL_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kestrel/device.h"
#include "kestrel/util.h"

struct bus;
struct guest_mem;
struct state_buf;
struct msi;
struct msix;

#define PCI_CFG_SIZE	 256
#define PCI_MAX_SLOTS	 32
#define PCI_MAX_FNS	 8
#define PCI_MAX_DEVFN	 (PCI_MAX_SLOTS * PCI_MAX_FNS)
#define PCI_NUM_BARS	 6
#define PCI_ROM_BAR	 6 /* the expansion ROM, as a bar index for bar_remap */
#define PCI_NUM_REGIONS	 7
#define PCI_BAR_UNMAPPED (~0ULL)

/* Type 0 header (PCI Local Bus 3.0, 6.1). */
#define PCI_VENDOR_ID		0x00
#define PCI_DEVICE_ID		0x02
#define PCI_COMMAND		0x04
#define PCI_STATUS		0x06
#define PCI_REVISION_ID		0x08
#define PCI_CLASS_PROG		0x09
#define PCI_CLASS_DEVICE	0x0a
#define PCI_CACHE_LINE_SIZE	0x0c
#define PCI_LATENCY_TIMER	0x0d
#define PCI_HEADER_TYPE		0x0e
#define PCI_BIST		0x0f
#define PCI_BASE_ADDRESS_0	0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID	0x2e
#define PCI_ROM_ADDRESS		0x30
#define PCI_CAPABILITY_LIST	0x34
#define PCI_INTERRUPT_LINE	0x3c
#define PCI_INTERRUPT_PIN	0x3d
#define PCI_HEADER_END		0x40

#define PCI_COMMAND_IO		 0x0001
#define PCI_COMMAND_MEMORY	 0x0002
#define PCI_COMMAND_MASTER	 0x0004
#define PCI_COMMAND_PARITY	 0x0040
#define PCI_COMMAND_SERR	 0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400

#define PCI_STATUS_INTERRUPT	    0x0008
#define PCI_STATUS_CAP_LIST	    0x0010
#define PCI_STATUS_PARITY	    0x0100
#define PCI_STATUS_SIG_TARGET_ABORT 0x0800
#define PCI_STATUS_REC_TARGET_ABORT 0x1000
#define PCI_STATUS_REC_MASTER_ABORT 0x2000
#define PCI_STATUS_SIG_SYSTEM_ERROR 0x4000
#define PCI_STATUS_DETECTED_PARITY  0x8000

#define PCI_HEADER_TYPE_MULTI_FN 0x80

/* BAR type bits (the read-only low bits of a BAR). */
#define PCI_BAR_MEM32	 0x0
#define PCI_BAR_IO	 0x1
#define PCI_BAR_MEM64	 0x4
#define PCI_BAR_PREFETCH 0x8

/* Expansion ROM BAR (6.2.5.2): enable bit, address from bit 11 (2 KiB). */
#define PCI_ROM_ENABLE	 0x1
#define PCI_ROM_MIN_SIZE 0x800
#define PCI_ROM_MAX_SIZE MiB(16)

/* Capability IDs (PCI Code and ID Assignment, 2). */
#define PCI_CAP_ID_MSI	0x05
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11

#define PCI_INTX_PINS	   4 /* INTA#..INTD# */
#define PCI_INTX_MAX_LINKS 8

struct pci_dev;

struct pci_dev_ops {
	/* Optional. val is what the generic code read; return what the guest sees. */
	uint32_t (*cfg_read)(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val);
	/* Optional. Called after a guest write was applied through the masks. */
	void (*cfg_write)(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val);
	/* Optional. Where a BAR (0-5, or PCI_ROM_BAR) is mapped changed; either
	 * address may be PCI_BAR_UNMAPPED. The size is pdev->bar[bar].size. */
	void (*bar_remap)(struct pci_dev *pdev, int bar, uint64_t old_addr, uint64_t new_addr);
};

struct pci_bar {
	uint64_t size;	      /* 0: not implemented (reads 0, not writable) */
	uint8_t flags;	      /* PCI_BAR_IO, or PCI_BAR_MEM32/MEM64 | PCI_BAR_PREFETCH */
	uint64_t addr;	      /* decoded address, or PCI_BAR_UNMAPPED */
	uint64_t mapped;      /* where it is mapped (addr, unless the bus refused it) */
	struct device *owner; /* pci_bar_attach: placed on the bus as (owner, region) */
	int region;
};

struct pci_dev {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];
	uint8_t w1cmask[PCI_CFG_SIZE];
	uint8_t used[PCI_CFG_SIZE / 8]; /* bytes taken: header, capabilities, reserved */
	uint8_t cap_last;		/* the list's last capability, 0: none */
	struct pci_bar bar[PCI_NUM_REGIONS];
	const struct pci_dev_ops *ops;
	void *opaque;	     /* for the ops: usually the owning device */
	struct pci_bus *bus; /* NULL until added */
	int slot, fn;	     /* -1 until added */
	struct msi *msi;     /* set by msi_init / msix_init */
	struct msix *msix;
	const uint8_t *rom; /* pci_dev_set_rom: the device's image */
	size_t rom_len;
	struct device rom_dev; /* serves the ROM BAR on the MMIO bus */
	/* INTx, under the bus's intx_lock: the level the device drives (shown in
	 * STATUS.INTERRUPT), whether it is masked (INTX_DISABLE, MSI or MSI-X
	 * on) and what reaches the link. */
	bool intx_level, intx_masked, intx_out;
	bool bus_master; /* COMMAND.MASTER, read atomically by DMA helpers */
};

/* Fill the header: IDs, class (base << 16 | sub << 8 | prog-if), revision,
 * header type 0, the standard writable fields (COMMAND, cache line, latency,
 * interrupt line) and the W1C bits of STATUS. ops may be NULL. */
void pci_dev_init(struct pci_dev *pdev, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint8_t revision, const struct pci_dev_ops *ops, void *opaque);
void pci_dev_set_subsystem(struct pci_dev *pdev, uint16_t vendor, uint16_t id);
/* pin: 1..4 for INTA#..INTD# (0: none); line: the initial Interrupt Line
 * (the host fills in the routed GSI when the function is added). */
void pci_dev_set_irq(struct pci_dev *pdev, uint8_t pin, uint8_t line);
/* size: a power of two, >= 16 for memory, 4..256 for I/O. A 64-bit BAR also
 * takes bar + 1. -EINVAL on a bad bar index, size or flags. */
int pci_dev_set_bar(struct pci_dev *pdev, int bar, uint64_t size, uint8_t flags) WARN_UNUSED;
/* Have the core place (owner, region) on the I/O or MMIO bus wherever the
 * BAR decodes; the owner's read/write see offsets inside the BAR. */
void pci_bar_attach(struct pci_dev *pdev, int bar, struct device *owner, int region);
/* An expansion ROM of len bytes (1 .. 16 MiB): the ROM BAR's size is len
 * rounded up to a power of two, at least 2 KiB; bytes past len read 0. The
 * image must outlive the function. -EINVAL on a bad length. */
int pci_dev_set_rom(struct pci_dev *pdev, const void *image, size_t len) WARN_UNUSED;
/* Where the BAR (0-5 or PCI_ROM_BAR) decodes now, or PCI_BAR_UNMAPPED. */
uint64_t pci_dev_bar_addr(const struct pci_dev *pdev, int bar);

/* Capabilities (6.7). Returns the capability's offset, its ID written and
 * linked at the end of the list, the rest of its len bytes zero and
 * read-only; -EINVAL (len < 2 or off not a dword in 0x40..0xff) or -ENOSPC
 * (no room / the range is taken). */
int pci_cap_add(struct pci_dev *pdev, uint8_t id, unsigned len) WARN_UNUSED;
int pci_cap_add_at(struct pci_dev *pdev, unsigned off, uint8_t id, unsigned len) WARN_UNUSED;
/* The first capability with this ID, or 0. */
unsigned pci_cap_find(const struct pci_dev *pdev, uint8_t id);
/* Keep [off, off + len) for the device's own registers; -EINVAL / -EBUSY. */
int pci_dev_reserve(struct pci_dev *pdev, unsigned off, unsigned len) WARN_UNUSED;

/* Config space as the guest sees it (off + size within 256; size 1, 2 or 4). */
uint32_t pci_cfg_read(struct pci_dev *pdev, unsigned off, unsigned size);
void pci_cfg_write(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val);

/* Take the function off its bus: BARs unmapped (bar_remap runs), INTx
 * deasserted, its devfn free. For the device's destroy, after the vCPUs
 * stopped (or before they ran); without the device's own lock held. */
void pci_dev_exit(struct pci_dev *pdev);

/* State: one section of the config space and the INTx level. */
struct pci_dev_state {
	uint8_t cfg[PCI_CFG_SIZE];
	bool intx_level;
};
int pci_dev_save(struct pci_dev *pdev, struct state_buf *out) WARN_UNUSED;
int pci_dev_load(struct pci_dev *pdev, struct state_buf *in) WARN_UNUSED;
/* pci_dev_load in two steps: parse (checks everything, changes nothing),
 * then commit (cannot fail). */
int pci_dev_parse(const struct pci_dev *pdev, struct state_buf *in,
		  struct pci_dev_state *st) WARN_UNUSED;
void pci_dev_commit(struct pci_dev *pdev, const struct pci_dev_state *st);
/* A device's reset of its function: every bit the guest can change (wmask,
 * w1cmask) back to power_on (a copy of cfg[] the device took after setting
 * the function up), except the Interrupt Line the bus filled in; INTx
 * deasserted; BARs, Bus Master and MSI follow, as after a load. */
void pci_dev_reset_cfg(struct pci_dev *pdev, const uint8_t power_on[PCI_CFG_SIZE]);

/* ---- INTx routing (devices/pci/pci_irq.c) -------------------------------- */

/* How the board wires INTx: each slot's pins INTA#..INTD# reach one of
 * nlinks links, and each link drives one GSI (IOAPIC input). Today's board
 * routes every link straight to its own GSI; a PIIX3 later makes the links
 * its PIRQA-D, whose route registers (0x60-0x63) move a link to another GSI
 * with pci_bus_set_link_gsi(), and the ACPI tables name link devices. */
struct pci_intx_routing {
	unsigned nlinks;			    /* 1..PCI_INTX_MAX_LINKS */
	uint8_t link[PCI_MAX_SLOTS][PCI_INTX_PINS]; /* slot, pin (0 = INTA#) -> link */
	uint32_t gsi[PCI_INTX_MAX_LINKS];	    /* link -> GSI */
};

/* The rotation a PCI-to-PCI bridge uses (PCI-to-PCI Bridge 1.2, 9.1), over
 * nlinks links: slot s pin p on link (s + p) % nlinks, link i on GSI
 * gsi_base + i. -EINVAL unless 1 <= nlinks <= PCI_INTX_MAX_LINKS. */
int pci_intx_swizzle(struct pci_intx_routing *r, unsigned nlinks, uint32_t gsi_base) WARN_UNUSED;
/* The GSI of a slot's pin (0 = INTA#), or UINT32_MAX for a bad slot/pin. */
uint32_t pci_intx_gsi(const struct pci_intx_routing *r, unsigned slot, unsigned pin);

/* The function's interrupt pin asserted (level 1) or deasserted; any thread.
 * No effect on the line while the pin is masked, but STATUS.INTERRUPT shows it. */
void pci_intx_set(struct pci_dev *pdev, bool level);

/* ---- bus 0 (devices/pci/pci_bus.c) --------------------------------------- */

/* What the board gives bus 0. Every field may be NULL (unit tests): BARs then
 * decode nowhere, DMA fails and INTx goes nowhere. */
struct pci_board {
	struct bus *pio, *mmio;					/* where BARs are placed */
	const struct guest_mem *gm;				/* what bus-master DMA reaches */
	void (*irq_set)(void *opaque, uint32_t gsi, int level); /* e.g. vm_irq_set */
	void *irq_opaque;
	const struct pci_intx_routing *intx; /* copied by the bus */
};

struct pci_bus {
	struct pci_board board;
	struct pci_intx_routing intx;
	pthread_mutex_t lock; /* fn[] */
	struct pci_dev *fn[PCI_MAX_DEVFN];
	pthread_mutex_t intx_lock;		 /* link_count[], intx.gsi[], every pdev's intx_* */
	unsigned link_count[PCI_INTX_MAX_LINKS]; /* functions asserting each link */
};

void pci_bus_init(struct pci_bus *bus, const struct pci_board *board);
void pci_bus_destroy(struct pci_bus *bus);
/* Attach pdev at slot 0..31 (-1: the first slot with no function at all,
 * from 1) and function fn 0..7. Returns the slot, or -EINVAL, -EEXIST
 * (taken), -ENOSPC (bus full). Fills INTERRUPT_LINE with the routed GSI. */
int pci_bus_add(struct pci_bus *bus, struct pci_dev *pdev, int slot, int fn) WARN_UNUSED;
struct pci_dev *pci_bus_fn(struct pci_bus *bus, int slot, int fn);
/* Move a link to another GSI (PIIX3 PIRQ route registers), carrying an
 * asserted level along. -EINVAL for a bad link. */
int pci_bus_set_link_gsi(struct pci_bus *bus, unsigned link, uint32_t gsi) WARN_UNUSED;

/* ---- the host (devices/emulated/pci_host.c) ------------------------------ */

/* Attach pdev as function 0 at slot 1..31, or the first free slot if slot is
 * -1. Returns the slot, or -EINVAL (bad slot), -EEXIST (taken), -ENOSPC. */
int pci_host_add(struct device *host, struct pci_dev *pdev, int slot) WARN_UNUSED;
/* Attach pdev at slot 1..31 (-1: first free slot), function 0..7. */
int pci_host_add_fn(struct device *host, struct pci_dev *pdev, int slot, int fn) WARN_UNUSED;
/* The function at a slot (slot 0: the host bridge), or NULL. */
struct pci_dev *pci_host_slot(struct device *host, int slot);
struct pci_dev *pci_host_fn(struct device *host, int slot, int fn);
struct pci_bus *pci_host_bus(struct device *host);

/* Device-side access to config space, bypassing the guest write masks. */
static inline void pci_put_le(uint8_t *bytes, unsigned off, uint32_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		bytes[off + i] = (uint8_t)(v >> (8 * i));
}

static inline void pci_set_u8(struct pci_dev *p, unsigned off, uint8_t v)
{
	p->cfg[off] = v;
}

static inline void pci_set_u16(struct pci_dev *p, unsigned off, uint16_t v)
{
	pci_put_le(p->cfg, off, v, 2);
}

static inline void pci_set_u32(struct pci_dev *p, unsigned off, uint32_t v)
{
	pci_put_le(p->cfg, off, v, 4);
}

static inline uint16_t pci_get_u16(const struct pci_dev *p, unsigned off)
{
	return (uint16_t)(p->cfg[off] | p->cfg[off + 1] << 8);
}

static inline uint32_t pci_get_u32(const struct pci_dev *p, unsigned off)
{
	return pci_get_u16(p, off) | (uint32_t)pci_get_u16(p, off + 2) << 16;
}

/* Which bits of a register the guest may write. */
static inline void pci_set_wmask16(struct pci_dev *p, unsigned off, uint16_t m)
{
	pci_put_le(p->wmask, off, m, 2);
}

static inline void pci_set_wmask32(struct pci_dev *p, unsigned off, uint32_t m)
{
	pci_put_le(p->wmask, off, m, 4);
}

#endif
