/* One PCI function: config space with its write masks, BARs and the
 * expansion ROM BAR, the capability list, and its state. The design (masks,
 * BAR decoding, hooks, locking, state) is written up at the top of
 * include/kestrel/pci.h; the bus, INTx and DMA are in this folder's other
 * files, MSI/MSI-X in msi.c. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "kestrel/msi.h"
#include "kestrel/pci.h"
#include "kestrel/state.h"
#include "pci_internal.h"

#define PCI_COMMAND_WMASK                                                                \
	(PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | \
	 PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE)
#define PCI_STATUS_W1C                                                                   \
	(PCI_STATUS_PARITY | PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_REC_TARGET_ABORT | \
	 PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_SIG_SYSTEM_ERROR | PCI_STATUS_DETECTED_PARITY)
#define PCI_IO_SPACE_END  0x10000ULL
#define PCI_ROM_ADDR_MASK 0xfffff800u
/* The list from 0x34 has at most (256 - 64) / 4 entries; a longer walk loops. */
#define PCI_CAP_MAX_WALK  48

#define PCI_DEV_STATE_ID      0x50434946 /* "PCIF" */
#define PCI_DEV_STATE_VERSION 2		 /* 2: the INTx level after the config space */

static uint32_t pci_ones(unsigned size)
{
	return size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
}

static bool pci_range_touches(unsigned off, unsigned size, unsigned start, unsigned end)
{
	return off < end && off + size > start;
}

static bool pci_is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* ---- config space layout: which bytes are taken ---- */

static bool pci_used(const struct pci_dev *p, unsigned off, unsigned len)
{
	for (unsigned o = off; o < off + len; o++)
		if (p->used[o / 8] & (1u << (o % 8)))
			return true;
	return false;
}

static void pci_mark_used(struct pci_dev *p, unsigned off, unsigned len)
{
	for (unsigned o = off; o < off + len; o++)
		p->used[o / 8] |= (uint8_t)(1u << (o % 8));
}

void pci_dev_init(struct pci_dev *pdev, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint8_t revision, const struct pci_dev_ops *ops, void *opaque)
{
	memset(pdev, 0, sizeof(*pdev));
	pdev->ops = ops;
	pdev->opaque = opaque;
	pdev->slot = pdev->fn = -1;
	for (int i = 0; i < PCI_NUM_REGIONS; i++)
		pdev->bar[i].addr = pdev->bar[i].mapped = PCI_BAR_UNMAPPED;
	pci_mark_used(pdev, 0, PCI_HEADER_END);
	pci_set_u16(pdev, PCI_VENDOR_ID, vendor);
	pci_set_u16(pdev, PCI_DEVICE_ID, device);
	pci_set_u8(pdev, PCI_REVISION_ID, revision);
	pci_set_u8(pdev, PCI_CLASS_PROG, (uint8_t)class_code);
	pci_set_u16(pdev, PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
	pci_set_wmask16(pdev, PCI_COMMAND, PCI_COMMAND_WMASK);
	pdev->w1cmask[PCI_STATUS] = (uint8_t)PCI_STATUS_W1C;
	pdev->w1cmask[PCI_STATUS + 1] = (uint8_t)(PCI_STATUS_W1C >> 8);
	pdev->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	pdev->wmask[PCI_LATENCY_TIMER] = 0xff;
	pdev->wmask[PCI_INTERRUPT_LINE] = 0xff;
}

void pci_dev_set_subsystem(struct pci_dev *pdev, uint16_t vendor, uint16_t id)
{
	pci_set_u16(pdev, PCI_SUBSYSTEM_VENDOR_ID, vendor);
	pci_set_u16(pdev, PCI_SUBSYSTEM_ID, id);
}

void pci_dev_set_irq(struct pci_dev *pdev, uint8_t pin, uint8_t line)
{
	pci_set_u8(pdev, PCI_INTERRUPT_PIN, pin);
	pci_set_u8(pdev, PCI_INTERRUPT_LINE, line);
}

/* ---- BARs ---- */

int pci_dev_set_bar(struct pci_dev *pdev, int bar, uint64_t size, uint8_t flags)
{
	bool io = flags & PCI_BAR_IO, is64 = flags & PCI_BAR_MEM64;
	unsigned off = PCI_BASE_ADDRESS_0 + 4 * (unsigned)bar;
	uint64_t mask = ~(size - 1);

	if (bar < 0 || bar >= PCI_NUM_BARS || (is64 && bar == PCI_NUM_BARS - 1) ||
	    !pci_is_pow2(size))
		return -EINVAL;
	if (io ? (flags != PCI_BAR_IO || size < 4 || size > 256)
	       : (flags & ~(PCI_BAR_MEM64 | PCI_BAR_PREFETCH) || size < 16 ||
		  (!is64 && size > (1ULL << 31))))
		return -EINVAL;
	pdev->bar[bar] = (struct pci_bar){
		.size = size, .flags = flags, .addr = PCI_BAR_UNMAPPED, .mapped = PCI_BAR_UNMAPPED
	};
	pci_set_u32(pdev, off, flags);
	/* The minimum sizes keep the type bits out of the mask. */
	pci_set_wmask32(pdev, off, (uint32_t)mask);
	if (is64) {
		pdev->bar[bar + 1] =
			(struct pci_bar){ .addr = PCI_BAR_UNMAPPED, .mapped = PCI_BAR_UNMAPPED };
		pci_set_u32(pdev, off + 4, 0);
		pci_set_wmask32(pdev, off + 4, (uint32_t)(mask >> 32));
	}
	return 0;
}

void pci_bar_attach(struct pci_dev *pdev, int bar, struct device *owner, int region)
{
	if (bar < 0 || bar >= PCI_NUM_BARS)
		return;
	pdev->bar[bar].owner = owner;
	pdev->bar[bar].region = region;
}

/* The ROM BAR as the MMIO bus sees it: the image, zeros after it; writes
 * go nowhere (a ROM). */
static uint64_t pci_rom_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	const struct pci_dev *p =
		(const struct pci_dev *)((const char *)dev - offsetof(struct pci_dev, rom_dev));
	uint64_t v = 0;

	for (unsigned i = 0; i < size; i++)
		if (off + i < p->rom_len)
			v |= (uint64_t)p->rom[off + i] << (8 * i);
	return v;
}

static const struct dev_ops pci_rom_ops = {
	.name = "pci-rom",
	.read = pci_rom_read,
};

int pci_dev_set_rom(struct pci_dev *pdev, const void *image, size_t len)
{
	uint64_t size = PCI_ROM_MIN_SIZE;

	if (!image || !len || len > PCI_ROM_MAX_SIZE)
		return -EINVAL;
	while (size < len)
		size <<= 1;
	pdev->rom = image;
	pdev->rom_len = len;
	device_init(&pdev->rom_dev, &pci_rom_ops);
	pdev->bar[PCI_ROM_BAR] = (struct pci_bar){ .size = size,
						   .flags = PCI_BAR_MEM32,
						   .addr = PCI_BAR_UNMAPPED,
						   .mapped = PCI_BAR_UNMAPPED,
						   .owner = &pdev->rom_dev };
	pci_set_u32(pdev, PCI_ROM_ADDRESS, 0);
	pci_set_wmask32(pdev, PCI_ROM_ADDRESS, (uint32_t) ~(size - 1) & PCI_ROM_ADDR_MASK);
	pdev->wmask[PCI_ROM_ADDRESS] |= PCI_ROM_ENABLE;
	return 0;
}

/* 6.2.5.2: the ROM decodes when both its enable bit and Memory Space are set. */
static uint64_t pci_rom_decode(const struct pci_dev *p, uint16_t cmd)
{
	const struct pci_bar *b = &p->bar[PCI_ROM_BAR];
	uint32_t v = pci_get_u32(p, PCI_ROM_ADDRESS);
	uint64_t addr = v & PCI_ROM_ADDR_MASK & ~(b->size - 1);

	if (!b->size || !(v & PCI_ROM_ENABLE) || !(cmd & PCI_COMMAND_MEMORY) || !addr ||
	    addr + b->size - 1 >= 0xffffffffULL)
		return PCI_BAR_UNMAPPED;
	return addr;
}

/* The address a BAR decodes, by the rules of PCI Local Bus 3.0, 6.2.5.1 plus
 * the checks QEMU's pci_bar_address makes: nothing at 0, nothing off the end
 * of the space (which also keeps the all-ones sizing pattern unmapped). */
static uint64_t pci_bar_decode(const struct pci_dev *p, int i)
{
	const struct pci_bar *b = &p->bar[i];
	unsigned off = PCI_BASE_ADDRESS_0 + 4 * (unsigned)i;
	uint16_t cmd = pci_get_u16(p, PCI_COMMAND);
	uint64_t addr, last;

	if (i == PCI_ROM_BAR)
		return pci_rom_decode(p, cmd);
	if (!b->size)
		return PCI_BAR_UNMAPPED;
	if (b->flags & PCI_BAR_IO) {
		addr = pci_get_u32(p, off) & ~(b->size - 1) & ~3ULL;
		if (!(cmd & PCI_COMMAND_IO) || !addr || addr + b->size > PCI_IO_SPACE_END)
			return PCI_BAR_UNMAPPED;
		return addr;
	}
	if (!(cmd & PCI_COMMAND_MEMORY))
		return PCI_BAR_UNMAPPED;
	addr = pci_get_u32(p, off) & ~0xfULL;
	if (b->flags & PCI_BAR_MEM64)
		addr |= (uint64_t)pci_get_u32(p, off + 4) << 32;
	addr &= ~(b->size - 1);
	last = addr + b->size - 1;
	if (!addr || last < addr || last == ~0ULL)
		return PCI_BAR_UNMAPPED;
	if (!(b->flags & PCI_BAR_MEM64) && last >= 0xffffffffULL)
		return PCI_BAR_UNMAPPED;
	return addr;
}

/* A BAR's mapping follows its decoding: the bus range moves (when it has an
 * owner), then the device hears where it was and is. A range the bus refused
 * is tried again only when the guest moves the BAR. */
static void pci_update_bar(struct pci_dev *p, int i)
{
	struct pci_bar *b = &p->bar[i];
	uint64_t now = pci_bar_decode(p, i), old = b->mapped;

	if (now == b->addr)
		return;
	b->addr = now;
	b->mapped = pci_bus_map_bar(p, i, old, now);
	if (b->mapped != old && p->ops && p->ops->bar_remap)
		p->ops->bar_remap(p, i, old, b->mapped);
}

static void pci_update_bars(struct pci_dev *p)
{
	for (int i = 0; i < PCI_NUM_REGIONS; i++)
		pci_update_bar(p, i);
}

uint64_t pci_dev_bar_addr(const struct pci_dev *pdev, int bar)
{
	if (bar < 0 || bar >= PCI_NUM_REGIONS)
		return PCI_BAR_UNMAPPED;
	return pdev->bar[bar].mapped;
}

void pci_dev_unmap_bars(struct pci_dev *p)
{
	for (int i = 0; i < PCI_NUM_REGIONS; i++) {
		struct pci_bar *b = &p->bar[i];
		uint64_t old = b->mapped;

		b->addr = PCI_BAR_UNMAPPED;
		if (old == PCI_BAR_UNMAPPED)
			continue;
		b->mapped = pci_bus_map_bar(p, i, old, PCI_BAR_UNMAPPED);
		if (p->ops && p->ops->bar_remap)
			p->ops->bar_remap(p, i, old, PCI_BAR_UNMAPPED);
	}
}

/* ---- capabilities (6.7) ---- */

int pci_dev_reserve(struct pci_dev *pdev, unsigned off, unsigned len)
{
	if (!len || off < PCI_HEADER_END || off >= PCI_CFG_SIZE || len > PCI_CFG_SIZE - off)
		return -EINVAL;
	if (pci_used(pdev, off, len))
		return -EBUSY;
	pci_mark_used(pdev, off, len);
	return 0;
}

int pci_cap_add_at(struct pci_dev *pdev, unsigned off, uint8_t id, unsigned len)
{
	if (len < 2 || off % 4 || off < PCI_HEADER_END || off >= PCI_CFG_SIZE ||
	    len > PCI_CFG_SIZE - off)
		return -EINVAL;
	if (pci_used(pdev, off, len))
		return -ENOSPC;
	pci_mark_used(pdev, off, len);
	memset(&pdev->cfg[off], 0, len);
	memset(&pdev->wmask[off], 0, len);
	memset(&pdev->w1cmask[off], 0, len);
	pci_set_u8(pdev, off, id);
	if (pdev->cap_last)
		pci_set_u8(pdev, pdev->cap_last + 1u, (uint8_t)off);
	else
		pci_set_u8(pdev, PCI_CAPABILITY_LIST, (uint8_t)off);
	pdev->cap_last = (uint8_t)off;
	pci_set_u16(pdev, PCI_STATUS, pci_get_u16(pdev, PCI_STATUS) | PCI_STATUS_CAP_LIST);
	return (int)off;
}

int pci_cap_add(struct pci_dev *pdev, uint8_t id, unsigned len)
{
	if (len < 2 || len > PCI_CFG_SIZE - PCI_HEADER_END)
		return -EINVAL;
	for (unsigned off = PCI_HEADER_END; off + len <= PCI_CFG_SIZE; off += 4)
		if (!pci_used(pdev, off, len))
			return pci_cap_add_at(pdev, off, id, len);
	return -ENOSPC;
}

unsigned pci_cap_find(const struct pci_dev *pdev, uint8_t id)
{
	unsigned c = pdev->cfg[PCI_CAPABILITY_LIST] & 0xfc;

	for (unsigned n = 0; c >= PCI_HEADER_END && n < PCI_CAP_MAX_WALK; n++) {
		if (pdev->cfg[c] == id)
			return c;
		c = pdev->cfg[c + 1] & 0xfc;
	}
	return 0;
}

/* ---- guest accesses ---- */

uint32_t pci_cfg_read(struct pci_dev *pdev, unsigned off, unsigned size)
{
	uint32_t v = 0;

	if (size > 4 || off >= PCI_CFG_SIZE || size > PCI_CFG_SIZE - off)
		return pci_ones(size > 4 ? 4 : size);
	for (unsigned i = 0; i < size; i++)
		v |= (uint32_t)pdev->cfg[off + i] << (8 * i);
	/* 6.2.3: Interrupt Status shows the device's level, masked or not. */
	if (pci_range_touches(off, size, PCI_STATUS, PCI_STATUS + 1) &&
	    __atomic_load_n(&pdev->intx_level, __ATOMIC_RELAXED))
		v |= (uint32_t)PCI_STATUS_INTERRUPT << (8 * (PCI_STATUS - off));
	if (pdev->msi)
		v = msi_config_read(pdev->msi, off, size, v);
	if (pdev->ops && pdev->ops->cfg_read)
		v = pdev->ops->cfg_read(pdev, off, size, v);
	return v;
}

/* 6.8.1.3 / 6.8.2.3: INTx is off while MSI or MSI-X is enabled. */
static bool pci_intx_masked_now(const struct pci_dev *p)
{
	unsigned msi = p->msi ? pci_cap_find(p, PCI_CAP_ID_MSI) : 0;
	unsigned msix = p->msix ? pci_cap_find(p, PCI_CAP_ID_MSIX) : 0;

	return (pci_get_u16(p, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE) ||
	       (msi && (p->cfg[msi + 2] & 1)) ||
	       (msix && (pci_get_u16(p, msix + 2) & MSIX_CTRL_ENABLE));
}

/* Everything that follows from config space, after it changed. */
static void pci_cfg_apply(struct pci_dev *p)
{
	pci_update_bars(p);
	__atomic_store_n(&p->bus_master, (pci_get_u16(p, PCI_COMMAND) & PCI_COMMAND_MASTER) != 0,
			 __ATOMIC_RELEASE);
	if (p->msix)
		msix_config_written(p->msix);
	if (p->msi)
		msi_config_written(p->msi);
	pci_intx_mask(p, pci_intx_masked_now(p));
}

void pci_cfg_write(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val)
{
	if (size > 4 || off >= PCI_CFG_SIZE || size > PCI_CFG_SIZE - off)
		return;
	for (unsigned i = 0; i < size; i++) {
		unsigned o = off + i;
		uint8_t b = (uint8_t)(val >> (8 * i));

		pdev->cfg[o] = (uint8_t)((pdev->cfg[o] & ~pdev->wmask[o]) | (b & pdev->wmask[o]));
		pdev->cfg[o] &= (uint8_t) ~(b & pdev->w1cmask[o]);
	}
	pci_cfg_apply(pdev);
	if (pdev->ops && pdev->ops->cfg_write)
		pdev->ops->cfg_write(pdev, off, size, val);
}

/* ---- state ---- */

int pci_dev_save(struct pci_dev *pdev, struct state_buf *out)
{
	size_t mark = state_section_begin(out, PCI_DEV_STATE_ID, PCI_DEV_STATE_VERSION);

	state_put_bytes(out, pdev->cfg, PCI_CFG_SIZE);
	state_put_u8(out, __atomic_load_n(&pdev->intx_level, __ATOMIC_RELAXED));
	state_section_end(out, mark);
	return out->error ? -ENOMEM : 0;
}

/* Read-only bits of the standard header must match this model (IDs, class,
 * BAR types, the multi-function bit, the capability pointer); STATUS's
 * read-only bits are driven by the device (e.g. the interrupt bit) and the
 * device-specific area's read-only bits belong to the model, so both are
 * taken from the live device. Version 1 had no INTx level (it was 0). */
int pci_dev_parse(const struct pci_dev *pdev, struct state_buf *in, struct pci_dev_state *st)
{
	uint8_t snap[PCI_CFG_SIZE];
	int ver = state_section_open(in, PCI_DEV_STATE_ID, PCI_DEV_STATE_VERSION);
	size_t end;
	uint8_t level = 0;

	if (ver < 1)
		return -EINVAL;
	end = state_section_body_end(in);
	state_get_bytes(in, snap, PCI_CFG_SIZE);
	if (ver >= 2)
		level = state_get_u8(in);
	if (!state_section_done(in, end) || level > 1)
		return -EINVAL;
	for (unsigned o = 0; o < PCI_CFG_SIZE; o++) {
		uint8_t ro = (uint8_t) ~(pdev->wmask[o] | pdev->w1cmask[o]);
		bool status = o == PCI_STATUS || o == PCI_STATUS + 1;

		if (o < PCI_HEADER_END && !status && ((snap[o] ^ pdev->cfg[o]) & ro))
			return -EINVAL;
		st->cfg[o] = (uint8_t)((pdev->cfg[o] & ro) | (snap[o] & ~ro));
	}
	st->intx_level = level;
	return 0;
}

void pci_dev_commit(struct pci_dev *pdev, const struct pci_dev_state *st)
{
	memcpy(pdev->cfg, st->cfg, PCI_CFG_SIZE);
	pci_cfg_apply(pdev);
	pci_intx_set(pdev, st->intx_level);
}

void pci_dev_reset_cfg(struct pci_dev *pdev, const uint8_t power_on[PCI_CFG_SIZE])
{
	struct pci_dev_state st = { .intx_level = false };

	for (unsigned o = 0; o < PCI_CFG_SIZE; o++) {
		uint8_t rw = pdev->wmask[o] | pdev->w1cmask[o];

		st.cfg[o] = (uint8_t)((pdev->cfg[o] & ~rw) | (power_on[o] & rw));
	}
	st.cfg[PCI_INTERRUPT_LINE] = pdev->cfg[PCI_INTERRUPT_LINE];
	pci_dev_commit(pdev, &st);
}

int pci_dev_load(struct pci_dev *pdev, struct state_buf *in)
{
	struct pci_dev_state st;
	int ret = pci_dev_parse(pdev, in, &st);

	if (ret < 0)
		return ret;
	pci_dev_commit(pdev, &st);
	return 0;
}
