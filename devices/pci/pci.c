/* PCI configuration mechanism #1 and bus 0, with an i440FX host bridge at
 * 00:00.0. The design (masks, BAR decoding, hooks, locking, state) is written
 * up at the top of include/kestrel/pci.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/devices.h"
#include "kestrel/pci.h"
#include "kestrel/state.h"
#include "emu.h"

#define PCI_REGION_ADDR 0
#define PCI_REGION_DATA 1

/* CONFIG_ADDRESS (PCI Local Bus 3.0, 3.2.2.3.2): enable, bus, device, function,
 * dword register; bits 30:24 reserved and bits 1:0 read as 0. */
#define CFG_ADDR_ENABLE 0x80000000u
#define CFG_ADDR_MASK   0x80fffffcu
#define CFG_ADDR_BUS(a)  (((a) >> 16) & 0xff)
#define CFG_ADDR_SLOT(a) (((a) >> 11) & 0x1f)
#define CFG_ADDR_FN(a)   (((a) >> 8) & 0x7)
#define CFG_ADDR_REG(a)  ((a) & 0xfc)

#define PCI_COMMAND_WMASK (PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | \
			   PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE)
#define PCI_STATUS_W1C (PCI_STATUS_PARITY | PCI_STATUS_SIG_TARGET_ABORT | \
			PCI_STATUS_REC_TARGET_ABORT | PCI_STATUS_REC_MASTER_ABORT | \
			PCI_STATUS_SIG_SYSTEM_ERROR | PCI_STATUS_DETECTED_PARITY)
#define PCI_IO_SPACE_END 0x10000ULL

/* 82441FX (i440FX) PMC: PAM0-6 shadow-RAM attributes and SMRAM control are
 * plain read/write registers as far as firmware can tell. */
#define I440FX_PAM0  0x59
#define I440FX_PAM6  0x5f
#define I440FX_SMRAM 0x72
#define I440FX_SMRAM_DEFAULT 0x02

#define PCI_DEV_STATE_ID  0x50434946 /* "PCIF" */
#define PCI_HOST_STATE_ID 0x50434948 /* "PCIH" */
#define PCI_STATE_VERSION 1

struct pci_host {
	struct device dev;
	uint32_t config_addr;
	struct pci_dev bridge;
	struct pci_dev *slots[PCI_MAX_SLOTS];
};

static struct pci_host *to_host(struct device *dev)
{
	return (struct pci_host *)dev;
}

/* ---- one function's config space ---- */

static void pci_set_wmask16(struct pci_dev *p, unsigned off, uint16_t m)
{
	p->wmask[off] = (uint8_t)m;
	p->wmask[off + 1] = (uint8_t)(m >> 8);
}

void pci_dev_init(struct pci_dev *pdev, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint8_t revision, const struct pci_dev_ops *ops, void *opaque)
{
	memset(pdev, 0, sizeof(*pdev));
	pdev->ops = ops;
	pdev->opaque = opaque;
	pdev->slot = -1;
	for (int i = 0; i < PCI_NUM_BARS; i++)
		pdev->bar[i].addr = PCI_BAR_UNMAPPED;
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

static bool pci_is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

int pci_dev_set_bar(struct pci_dev *pdev, int bar, uint64_t size, uint8_t flags)
{
	bool io = flags & PCI_BAR_IO, is64 = flags & PCI_BAR_MEM64;
	unsigned off = PCI_BASE_ADDRESS_0 + 4 * (unsigned)bar;
	uint64_t mask = ~(size - 1);

	if (bar < 0 || bar >= PCI_NUM_BARS || (is64 && bar == PCI_NUM_BARS - 1) || !pci_is_pow2(size))
		return -EINVAL;
	if (io ? (flags != PCI_BAR_IO || size < 4 || size > 256)
	       : (flags & ~(PCI_BAR_MEM64 | PCI_BAR_PREFETCH) || size < 16 || (!is64 && size > (1ULL << 31))))
		return -EINVAL;
	pdev->bar[bar] = (struct pci_bar){ .size = size, .flags = flags, .addr = PCI_BAR_UNMAPPED };
	pci_set_u32(pdev, off, flags);
	/* The minimum sizes keep the type bits out of the mask. */
	for (unsigned i = 0; i < 4; i++)
		pdev->wmask[off + i] = (uint8_t)((uint32_t)mask >> (8 * i));
	if (is64) {
		pdev->bar[bar + 1] = (struct pci_bar){ .addr = PCI_BAR_UNMAPPED };
		pci_set_u32(pdev, off + 4, 0);
		for (unsigned i = 0; i < 4; i++)
			pdev->wmask[off + 4 + i] = (uint8_t)((mask >> 32) >> (8 * i));
	}
	return 0;
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

static void pci_update_bars(struct pci_dev *p)
{
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		uint64_t old = p->bar[i].addr, now = pci_bar_decode(p, i);

		if (old == now)
			continue;
		p->bar[i].addr = now;
		if (p->ops && p->ops->bar_remap)
			p->ops->bar_remap(p, i, old, now);
	}
}

uint64_t pci_dev_bar_addr(const struct pci_dev *pdev, int bar)
{
	if (bar < 0 || bar >= PCI_NUM_BARS)
		return PCI_BAR_UNMAPPED;
	return pdev->bar[bar].addr;
}

uint32_t pci_cfg_read(struct pci_dev *pdev, unsigned off, unsigned size)
{
	uint32_t v = 0;

	if (size > 4 || off >= PCI_CFG_SIZE || size > PCI_CFG_SIZE - off)
		return (uint32_t)emu_ones(size > 4 ? 4 : size);
	for (unsigned i = 0; i < size; i++)
		v |= (uint32_t)pdev->cfg[off + i] << (8 * i);
	if (pdev->ops && pdev->ops->cfg_read)
		v = pdev->ops->cfg_read(pdev, off, size, v);
	return v;
}

static bool pci_range_touches(unsigned off, unsigned size, unsigned start, unsigned end)
{
	return off < end && off + size > start;
}

void pci_cfg_write(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val)
{
	if (size > 4 || off >= PCI_CFG_SIZE || size > PCI_CFG_SIZE - off)
		return;
	for (unsigned i = 0; i < size; i++) {
		unsigned o = off + i;
		uint8_t b = (uint8_t)(val >> (8 * i));

		pdev->cfg[o] = (uint8_t)((pdev->cfg[o] & ~pdev->wmask[o]) | (b & pdev->wmask[o]));
		pdev->cfg[o] &= (uint8_t)~(b & pdev->w1cmask[o]);
	}
	if (pci_range_touches(off, size, PCI_COMMAND, PCI_COMMAND + 2) ||
	    pci_range_touches(off, size, PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_0 + 4 * PCI_NUM_BARS))
		pci_update_bars(pdev);
	if (pdev->ops && pdev->ops->cfg_write)
		pdev->ops->cfg_write(pdev, off, size, val);
}

int pci_dev_save(struct pci_dev *pdev, struct state_buf *out)
{
	size_t mark = state_section_begin(out, PCI_DEV_STATE_ID, PCI_STATE_VERSION);

	state_put_bytes(out, pdev->cfg, PCI_CFG_SIZE);
	state_section_end(out, mark);
	return out->error ? -ENOMEM : 0;
}

/* Read a saved config space into cfg (not yet applied). Read-only bits of the
 * standard header must match this model; STATUS's read-only bits are driven
 * by the device (e.g. the interrupt bit) and the device-specific area's
 * read-only bits belong to the model, so both are taken from the live device. */
static int pci_dev_parse(const struct pci_dev *pdev, struct state_buf *in, uint8_t *cfg)
{
	uint8_t snap[PCI_CFG_SIZE];
	size_t end;

	if (state_section_open(in, PCI_DEV_STATE_ID, PCI_STATE_VERSION) < 0)
		return -EINVAL;
	end = emu_section_body_end(in);
	state_get_bytes(in, snap, PCI_CFG_SIZE);
	if (!emu_section_done(in, end))
		return -EINVAL;
	for (unsigned o = 0; o < PCI_CFG_SIZE; o++) {
		uint8_t ro = (uint8_t)~(pdev->wmask[o] | pdev->w1cmask[o]);
		bool status = o == PCI_STATUS || o == PCI_STATUS + 1;

		if (o < PCI_HEADER_END && !status && ((snap[o] ^ pdev->cfg[o]) & ro))
			return -EINVAL;
		cfg[o] = (uint8_t)((pdev->cfg[o] & ro) | (snap[o] & ~ro));
	}
	return 0;
}

static void pci_dev_commit(struct pci_dev *pdev, const uint8_t *cfg)
{
	memcpy(pdev->cfg, cfg, PCI_CFG_SIZE);
	pci_update_bars(pdev);
}

int pci_dev_load(struct pci_dev *pdev, struct state_buf *in)
{
	uint8_t cfg[PCI_CFG_SIZE];
	int ret = pci_dev_parse(pdev, in, cfg);

	if (ret < 0)
		return ret;
	pci_dev_commit(pdev, cfg);
	return 0;
}

/* ---- the host: mechanism #1 and the slots ---- */

static struct pci_dev *pci_host_target(struct pci_host *h)
{
	uint32_t a = h->config_addr;

	if (!(a & CFG_ADDR_ENABLE) || CFG_ADDR_BUS(a) != 0 || CFG_ADDR_FN(a) != 0)
		return NULL;
	return h->slots[CFG_ADDR_SLOT(a)];
}

/* An access to CONFIG_DATA at byte lane off; any part past 0xCFF floats high. */
static uint64_t pci_host_data_read(struct pci_host *h, uint64_t off, unsigned size)
{
	struct pci_dev *p = pci_host_target(h);
	unsigned n = off < 4 ? (unsigned)MIN(size, 4 - off) : 0;
	uint64_t v;

	if (!p || !n)
		return emu_ones(size);
	v = pci_cfg_read(p, CFG_ADDR_REG(h->config_addr) + (unsigned)off, n);
	return v | (emu_ones(size) & ~emu_ones(n));
}

static void pci_host_data_write(struct pci_host *h, uint64_t off, unsigned size, uint64_t val)
{
	struct pci_dev *p = pci_host_target(h);
	unsigned n = off < 4 ? (unsigned)MIN(size, 4 - off) : 0;

	if (p && n)
		pci_cfg_write(p, CFG_ADDR_REG(h->config_addr) + (unsigned)off, n,
			      (uint32_t)(val & emu_ones(n)));
}

static uint64_t pci_host_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	struct pci_host *h = to_host(dev);

	if (region == PCI_REGION_DATA)
		return pci_host_data_read(h, off, size);
	/* Narrower accesses to 0xCF8 go to the ISA bus on real chipsets. */
	if (off == 0 && size == 4)
		return h->config_addr;
	return emu_ones(size);
}

static void pci_host_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct pci_host *h = to_host(dev);

	if (region == PCI_REGION_DATA)
		pci_host_data_write(h, off, size, val);
	else if (off == 0 && size == 4)
		h->config_addr = (uint32_t)val & CFG_ADDR_MASK;
}

static void pci_host_bridge_init(struct pci_dev *b)
{
	pci_dev_init(b, 0x8086, 0x1237, 0x060000, 0x02, NULL, NULL);
	pci_dev_set_subsystem(b, 0x1af4, 0x1100);
	pci_set_u16(b, PCI_STATUS, 0x0280); /* 82441FX PCISTS default: fast back-to-back, medium DEVSEL */
	for (unsigned o = I440FX_PAM0; o <= I440FX_PAM6; o++)
		b->wmask[o] = 0xff;
	b->wmask[I440FX_SMRAM] = 0xff;
	pci_set_u8(b, I440FX_SMRAM, I440FX_SMRAM_DEFAULT);
}

/* A PCI reset returns the bridge to power-on values; the other functions are
 * reset by their own devices. */
static void pci_host_reset(struct device *dev)
{
	struct pci_host *h = to_host(dev);

	h->config_addr = 0;
	pci_host_bridge_init(&h->bridge);
	h->bridge.slot = 0;
}

int pci_host_add(struct device *host, struct pci_dev *pdev, int slot)
{
	struct pci_host *h = to_host(host);
	int ret = -ENOSPC;

	if (slot != -1 && (slot < 1 || slot >= PCI_MAX_SLOTS))
		return -EINVAL;
	pthread_mutex_lock(&host->lock);
	if (slot == -1) {
		for (int s = 1; s < PCI_MAX_SLOTS && ret < 0; s++)
			if (!h->slots[s])
				ret = s;
	} else {
		ret = h->slots[slot] ? -EEXIST : slot;
	}
	if (ret >= 0) {
		h->slots[ret] = pdev;
		pdev->slot = ret;
	}
	pthread_mutex_unlock(&host->lock);
	return ret;
}

struct pci_dev *pci_host_slot(struct device *host, int slot)
{
	if (slot < 0 || slot >= PCI_MAX_SLOTS)
		return NULL;
	return to_host(host)->slots[slot];
}

static int pci_host_save(struct device *dev, struct state_buf *out)
{
	struct pci_host *h = to_host(dev);
	size_t mark = state_section_begin(out, PCI_HOST_STATE_ID, PCI_STATE_VERSION);
	int ret;

	state_put_u32(out, h->config_addr);
	ret = pci_dev_save(&h->bridge, out);
	state_section_end(out, mark);
	return ret < 0 || out->error ? -ENOMEM : 0;
}

static int pci_host_load(struct device *dev, struct state_buf *in)
{
	struct pci_host *h = to_host(dev);
	uint8_t cfg[PCI_CFG_SIZE];
	uint32_t addr;
	size_t end;

	if (state_section_open(in, PCI_HOST_STATE_ID, PCI_STATE_VERSION) < 0)
		return -EINVAL;
	end = emu_section_body_end(in);
	addr = state_get_u32(in);
	if (in->error || addr & ~CFG_ADDR_MASK)
		return -EINVAL;
	if (pci_dev_parse(&h->bridge, in, cfg) < 0 || !emu_section_done(in, end))
		return -EINVAL;
	h->config_addr = addr;
	pci_dev_commit(&h->bridge, cfg);
	return 0;
}

static void pci_host_destroy(struct device *dev)
{
	pthread_mutex_destroy(&dev->lock);
	free(to_host(dev));
}

static const struct dev_ops pci_host_ops = {
	.name = "pci_host",
	.reset = pci_host_reset,
	.read = pci_host_read,
	.write = pci_host_write,
	.save = pci_host_save,
	.load = pci_host_load,
	.destroy = pci_host_destroy,
};

struct device *pci_host_create(void)
{
	struct pci_host *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	device_init(&h->dev, &pci_host_ops);
	pci_host_reset(&h->dev);
	h->slots[0] = &h->bridge;
	return &h->dev;
}
