/* PIIX3 PCI-to-ISA bridge, function 0 of the southbridge at 00:01.0
 * (8086:7000, class 0601; Intel 82371SB datasheet, "PCI to ISA/EIDE bridge
 * configuration registers", function 0). What an OS or firmware reads and
 * writes in its config space is kept; what it does on the board here is the
 * PIRQ routing (kestrel/piix.h says how it is wired): PIRQRC[A:D] at
 * 0x60-0x63, bit 7 IRQROUTEN (1: not routed), bits 3:0 the ISA IRQ. The other
 * registers (ISA recovery timer, X-Bus chip select, top of memory, motherboard
 * IRQ/DMA routing, APIC base, deterministic latency, SMI) are storage with
 * their datasheet defaults: the rest of the board does not depend on them
 * (kestrel's I/O APIC, RTC, keyboard and PM sit at fixed places). The ISA
 * bus itself needs no emulation: the ISA devices are on the I/O bus. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/piix.h"
#include "kestrel/util.h"

#define PIIX3_VENDOR 0x8086
#define PIIX3_DEVICE 0x7000
#define PIIX3_CLASS  0x060100 /* bridge, PCI-to-ISA */

#define PIIX3_PIRQRC	   0x60
#define PIIX3_PIRQ_DISABLE 0x80
#define PIIX3_PIRQ_IRQ	   0x0f

/* Datasheet defaults of the registers kept as storage (offset, bytes, value). */
static const struct {
	uint8_t off, len;
	uint16_t val;
} piix3_regs[] = {
	{ 0x4c, 1, 0x4d },   /* IORT: ISA I/O recovery timer */
	{ 0x4e, 2, 0x0003 }, /* XBCS: X-Bus chip select */
	{ 0x60, 1, 0x80 },   /* PIRQRC[A:D]: not routed */
	{ 0x61, 1, 0x80 },   { 0x62, 1, 0x80 },
	{ 0x63, 1, 0x80 },   { 0x69, 1, 0x02 },	  /* TOM: top of memory */
	{ 0x6a, 2, 0x0000 },			  /* MSTAT: miscellaneous status */
	{ 0x70, 1, 0x80 },			  /* MBIRQ0: motherboard IRQ route, disabled */
	{ 0x76, 1, 0x0c },			  /* MBDMA0/1: motherboard DMA, disabled */
	{ 0x77, 1, 0x0c },   { 0x78, 2, 0x0002 }, /* PCSC: programmable chip select */
	{ 0x80, 1, 0x00 },			  /* APICBASE */
	{ 0x82, 1, 0x00 },   /* DLC: deterministic latency (Linux's passive-release quirk) */
	{ 0xa0, 1, 0x08 },   /* SMICNTL */
	{ 0xa2, 2, 0x0000 }, /* SMIEN */
	{ 0xa4, 2, 0x0000 }, /* SEE: system event enable (low half) */
	{ 0xa6, 2, 0x0000 }, { 0xa8, 1, 0x0f }, /* FTMR: fast off timer */
	{ 0xaa, 2, 0x0000 },			/* SMIREQ */
	{ 0xac, 1, 0x00 },			/* CTLTMR */
	{ 0xae, 1, 0x00 },			/* CTHTMR */
};

struct piix3 {
	struct device dev;
	struct pci_dev pdev;
	uint8_t power_on[PCI_CFG_SIZE];
	void (*irq_set)(void *opaque, uint32_t gsi, int level);
	void *irq_opaque;
	uint32_t gsi_base;
	/* Under irq_lock (a leaf): what each PIRQ input carries, the routes as
	 * last written, and the ISA IRQs we hold high. */
	pthread_mutex_t irq_lock;
	bool pirq_level[PIIX3_PIRQS];
	uint8_t route[PIIX3_PIRQS];
	uint16_t isa_high;
};

static struct piix3 *to_piix3(struct device *dev)
{
	return (struct piix3 *)dev;
}

/* The ISA IRQ a route register sends its PIRQ to, or 0: not routed, or an
 * IRQ the datasheet reserves (0-2, 8, 13: timer, cascade, RTC, FPU). */
static unsigned piix3_route_irq(uint8_t r)
{
	static const uint16_t valid = 0xdef8; /* 3-7, 9-12, 14, 15 */
	unsigned irq = r & PIIX3_PIRQ_IRQ;

	return (r & PIIX3_PIRQ_DISABLE) || !(valid & (1u << irq)) ? 0 : irq;
}

/* Each ISA IRQ is the OR of the PIRQs routed to it; drive the ones that
 * changed. irq_lock held. */
static void piix3_update_isa(struct piix3 *p)
{
	uint16_t want = 0, diff;

	for (unsigned k = 0; k < PIIX3_PIRQS; k++) {
		unsigned irq = piix3_route_irq(p->route[k]);

		if (irq && p->pirq_level[k])
			want |= (uint16_t)(1u << irq);
	}
	diff = want ^ p->isa_high;
	p->isa_high = want;
	for (unsigned irq = 0; diff && irq < 16; irq++)
		if ((diff & (1u << irq)) && p->irq_set)
			p->irq_set(p->irq_opaque, irq, !!(want & (1u << irq)));
}

static void piix3_routes_changed(struct piix3 *p)
{
	pthread_mutex_lock(&p->irq_lock);
	memcpy(p->route, &p->pdev.cfg[PIIX3_PIRQRC], PIIX3_PIRQS);
	piix3_update_isa(p);
	pthread_mutex_unlock(&p->irq_lock);
}

void piix3_intx_set(void *opaque, uint32_t gsi, int level)
{
	struct piix3 *p = to_piix3(opaque);

	if (p->irq_set)
		p->irq_set(p->irq_opaque, gsi, level);
	if (gsi < p->gsi_base || gsi - p->gsi_base >= PIIX3_PIRQS)
		return;
	pthread_mutex_lock(&p->irq_lock);
	p->pirq_level[gsi - p->gsi_base] = level != 0;
	piix3_update_isa(p);
	pthread_mutex_unlock(&p->irq_lock);
}

void piix3_intx_routing(struct pci_intx_routing *r, uint32_t gsi_base)
{
	*r = (struct pci_intx_routing){ .nlinks = PIIX3_PIRQS };
	for (unsigned s = 0; s < PCI_MAX_SLOTS; s++)
		for (unsigned pin = 0; pin < PCI_INTX_PINS; pin++)
			r->link[s][pin] = (uint8_t)((s + PIIX3_PIRQS - 1 + pin) % PIIX3_PIRQS);
	for (unsigned k = 0; k < PIIX3_PIRQS; k++)
		r->gsi[k] = gsi_base + k;
}

static void piix3_cfg_write(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val)
{
	(void)val;
	if (off < PIIX3_PIRQRC + PIIX3_PIRQS && off + size > PIIX3_PIRQRC)
		piix3_routes_changed(pdev->opaque);
}

static const struct pci_dev_ops piix3_pci_ops = {
	.cfg_write = piix3_cfg_write,
};

/* ---- dev_ops ------------------------------------------------------------- */

static void piix3_reset(struct device *dev)
{
	struct piix3 *p = to_piix3(dev);

	pci_dev_reset_cfg(&p->pdev, p->power_on);
	piix3_routes_changed(p);
}

/* Config space is the whole state; the PIRQ levels come back from the
 * functions that drive them when they load. */
static int piix3_save(struct device *dev, struct state_buf *out)
{
	return pci_dev_save(&to_piix3(dev)->pdev, out);
}

static int piix3_load(struct device *dev, struct state_buf *in)
{
	struct piix3 *p = to_piix3(dev);
	int ret = pci_dev_load(&p->pdev, in);

	if (!ret)
		piix3_routes_changed(p);
	return ret;
}

static void piix3_destroy(struct device *dev)
{
	struct piix3 *p = to_piix3(dev);

	pci_dev_exit(&p->pdev);
	pthread_mutex_destroy(&p->irq_lock);
	pthread_mutex_destroy(&dev->lock);
	free(p);
}

static const struct dev_ops piix3_ops = {
	.name = "piix3",
	.reset = piix3_reset,
	.save = piix3_save,
	.load = piix3_load,
	.destroy = piix3_destroy,
};

struct pci_dev *piix3_pci(struct device *dev)
{
	return &to_piix3(dev)->pdev;
}

struct device *piix3_create(const struct piix3_conf *c)
{
	struct piix3 *p = calloc(1, sizeof(*p));
	struct pci_dev *pd;

	if (!p)
		return NULL;
	device_init(&p->dev, &piix3_ops);
	pthread_mutex_init(&p->irq_lock, NULL);
	p->irq_set = c->irq_set;
	p->irq_opaque = c->irq_opaque;
	p->gsi_base = c->pirq_gsi_base;
	pd = &p->pdev;
	pci_dev_init(pd, PIIX3_VENDOR, PIIX3_DEVICE, PIIX3_CLASS, 0, &piix3_pci_ops, p);
	/* PCICMD 0007h: I/O, memory and bus master on from power-on; PCISTS
	 * 0200h: medium DEVSEL timing. No interrupt pin. */
	pci_set_u16(pd, PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	pci_set_u16(pd, PCI_STATUS, 0x0200);
	if (pci_dev_reserve(pd, PCI_HEADER_END, PCI_CFG_SIZE - PCI_HEADER_END))
		goto fail;
	for (size_t i = 0; i < ARRAY_SIZE(piix3_regs); i++) {
		for (unsigned b = 0; b < piix3_regs[i].len; b++) {
			pd->cfg[piix3_regs[i].off + b] = (uint8_t)(piix3_regs[i].val >> (8 * b));
			pd->wmask[piix3_regs[i].off + b] = 0xff;
		}
	}
	for (unsigned k = 0; k < PIIX3_PIRQS; k++)
		pd->wmask[PIIX3_PIRQRC + k] = PIIX3_PIRQ_DISABLE | PIIX3_PIRQ_IRQ;
	memcpy(p->power_on, pd->cfg, PCI_CFG_SIZE);
	memcpy(p->route, &pd->cfg[PIIX3_PIRQRC], PIIX3_PIRQS);
	return &p->dev;

fail:
	pthread_mutex_destroy(&p->irq_lock);
	pthread_mutex_destroy(&p->dev.lock);
	free(p);
	return NULL;
}
