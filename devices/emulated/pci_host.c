/* PCI configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2) and bus 0,
 * with an i440FX host bridge at 00:00.0. The functions, BARs, INTx and
 * state of bus 0 are the PCI core's (devices/pci/, include/kestrel/pci.h).
 *
 * The host is one device with two I/O regions: region 0 = CONFIG_ADDRESS at
 * 0xCF8, inserted with length 1 because 0xCF9 is the reset register
 * (acpi_pm); a 32-bit access at 0xCF8 still arrives with size 4, and only
 * such an access latches the address. Region 1 = CONFIG_DATA at 0xCFC,
 * length 4, any size at any byte lane. A read of an absent function, another
 * bus or with the enable bit clear returns all ones, a write goes nowhere. */
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
#define CFG_ADDR_ENABLE	 0x80000000u
#define CFG_ADDR_MASK	 0x80fffffcu
#define CFG_ADDR_BUS(a)	 (((a) >> 16) & 0xff)
#define CFG_ADDR_SLOT(a) (((a) >> 11) & 0x1f)
#define CFG_ADDR_FN(a)	 (((a) >> 8) & 0x7)
#define CFG_ADDR_REG(a)	 ((a)&0xfc)

/* 82441FX (i440FX) PMC: PAM0-6 shadow-RAM attributes (mapped by the PAM
 * device once the machine gives the host one: pci_host_set_pam) and SMRAM
 * control, a plain read/write register as far as firmware can tell. */
#define I440FX_PAM0	     0x59
#define I440FX_PAM6	     0x5f
#define I440FX_SMRAM	     0x72
#define I440FX_SMRAM_DEFAULT 0x02

#define PCI_HOST_STATE_ID      0x50434948 /* "PCIH" */
#define PCI_HOST_STATE_VERSION 1

struct pci_host {
	struct device dev;
	uint32_t config_addr;
	struct pci_dev bridge;
	struct pci_bus bus;
	struct device *pam; /* NULL: PAM registers without effect */
	uint8_t pam_power_on[PAM_NREGS];
};

static struct pci_host *to_host(struct device *dev)
{
	return (struct pci_host *)dev;
}

static struct pci_dev *pci_host_target(struct pci_host *h)
{
	uint32_t a = h->config_addr;

	if (!(a & CFG_ADDR_ENABLE) || CFG_ADDR_BUS(a) != 0)
		return NULL;
	return pci_bus_fn(&h->bus, (int)CFG_ADDR_SLOT(a), (int)CFG_ADDR_FN(a));
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

static void pci_host_write(struct device *dev, int region, uint64_t off, unsigned size,
			   uint64_t val)
{
	struct pci_host *h = to_host(dev);

	if (region == PCI_REGION_DATA)
		pci_host_data_write(h, off, size, val);
	else if (off == 0 && size == 4)
		h->config_addr = (uint32_t)val & CFG_ADDR_MASK;
}

/* The PAM registers to the PAM device; a failure cannot be refused to the
 * guest (the segments that could not be re-mapped keep their old map). */
static void pci_host_pam_update(struct pci_host *h)
{
	if (h->pam && pam_set(h->pam, &h->bridge.cfg[I440FX_PAM0]))
		kwarn("i440FX: PAM %02x..%02x: re-mapping 0xC0000-0xFFFFF failed",
		      h->bridge.cfg[I440FX_PAM0], h->bridge.cfg[I440FX_PAM6]);
}

static void pci_host_bridge_cfg_write(struct pci_dev *b, unsigned off, unsigned size, uint32_t val)
{
	if (off <= I440FX_PAM6 && off + size > I440FX_PAM0)
		pci_host_pam_update(b->opaque);
}

static const struct pci_dev_ops pci_host_bridge_ops = {
	.cfg_write = pci_host_bridge_cfg_write,
};

/* The bridge's registers at power-on; its place on the bus is kept. */
static void pci_host_bridge_init(struct pci_host *h)
{
	struct pci_dev *b = &h->bridge;
	struct pci_bus *bus = b->bus;
	int slot = b->slot, fn = b->fn;

	pci_dev_init(b, 0x8086, 0x1237, 0x060000, 0x02, &pci_host_bridge_ops, h);
	b->bus = bus;
	b->slot = slot;
	b->fn = fn;
	pci_dev_set_subsystem(b, 0x1af4, 0x1100);
	pci_set_u16(b, PCI_STATUS,
		    0x0280); /* 82441FX PCISTS default: fast back-to-back, medium DEVSEL */
	for (unsigned o = I440FX_PAM0; o <= I440FX_PAM6; o++)
		b->wmask[o] = 0xff;
	memcpy(&b->cfg[I440FX_PAM0], h->pam_power_on, PAM_NREGS);
	b->wmask[I440FX_SMRAM] = 0xff;
	pci_set_u8(b, I440FX_SMRAM, I440FX_SMRAM_DEFAULT);
}

/* A PCI reset returns the bridge to power-on values; the other functions are
 * reset by their own devices. */
static void pci_host_reset(struct device *dev)
{
	struct pci_host *h = to_host(dev);

	h->config_addr = 0;
	pci_host_bridge_init(h);
	pci_host_pam_update(h);
}

int pci_host_set_pam(struct device *host, struct device *pam, const uint8_t power_on[PAM_NREGS])
{
	struct pci_host *h = to_host(host);
	int ret;

	pthread_mutex_lock(&host->lock);
	h->pam = pam;
	memcpy(h->pam_power_on, power_on, PAM_NREGS);
	memcpy(&h->bridge.cfg[I440FX_PAM0], power_on, PAM_NREGS);
	ret = pam_set(pam, power_on);
	pthread_mutex_unlock(&host->lock);
	return ret;
}

int pci_host_add_fn(struct device *host, struct pci_dev *pdev, int slot, int fn)
{
	struct pci_host *h = to_host(host);
	int ret;

	if (slot != -1 && (slot < 1 || slot >= PCI_MAX_SLOTS))
		return -EINVAL;
	pthread_mutex_lock(&host->lock);
	ret = pci_bus_add(&h->bus, pdev, slot, fn);
	pthread_mutex_unlock(&host->lock);
	return ret;
}

int pci_host_add(struct device *host, struct pci_dev *pdev, int slot)
{
	return pci_host_add_fn(host, pdev, slot, 0);
}

struct pci_dev *pci_host_fn(struct device *host, int slot, int fn)
{
	return pci_bus_fn(&to_host(host)->bus, slot, fn);
}

struct pci_dev *pci_host_slot(struct device *host, int slot)
{
	return pci_host_fn(host, slot, 0);
}

struct pci_bus *pci_host_bus(struct device *host)
{
	return &to_host(host)->bus;
}

static int pci_host_save(struct device *dev, struct state_buf *out)
{
	struct pci_host *h = to_host(dev);
	size_t mark = state_section_begin(out, PCI_HOST_STATE_ID, PCI_HOST_STATE_VERSION);
	int ret;

	state_put_u32(out, h->config_addr);
	ret = pci_dev_save(&h->bridge, out);
	state_section_end(out, mark);
	return ret < 0 || out->error ? -ENOMEM : 0;
}

static int pci_host_load(struct device *dev, struct state_buf *in)
{
	struct pci_host *h = to_host(dev);
	struct pci_dev_state st;
	uint32_t addr;
	size_t end;

	if (state_section_open(in, PCI_HOST_STATE_ID, PCI_HOST_STATE_VERSION) < 0)
		return -EINVAL;
	end = state_section_body_end(in);
	addr = state_get_u32(in);
	if (in->error || addr & ~CFG_ADDR_MASK)
		return -EINVAL;
	if (pci_dev_parse(&h->bridge, in, &st) < 0 || !state_section_done(in, end))
		return -EINVAL;
	h->config_addr = addr;
	pci_dev_commit(&h->bridge, &st);
	pci_host_pam_update(h);
	return 0;
}

static void pci_host_destroy(struct device *dev)
{
	struct pci_host *h = to_host(dev);

	pci_bus_destroy(&h->bus);
	pthread_mutex_destroy(&dev->lock);
	free(h);
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

struct device *pci_host_create(const struct pci_board *board)
{
	struct pci_host *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	device_init(&h->dev, &pci_host_ops);
	pci_bus_init(&h->bus, board);
	pci_host_bridge_init(h);
	if (pci_bus_add(&h->bus, &h->bridge, 0, 0) < 0) {
		pci_host_destroy(&h->dev);
		return NULL;
	}
	return &h->dev;
}
