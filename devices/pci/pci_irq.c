/* INTx: the board's routing table (slot/pin -> link -> GSI), from which the
 * ACPI _PRT is built too, and the level of each link as the OR of the
 * functions asserting it (PCI interrupts are level-triggered and shareable,
 * PCI Local Bus 3.0, 2.2.6). */
#include <errno.h>

#include "kestrel/pci.h"
#include "pci_internal.h"

int pci_intx_swizzle(struct pci_intx_routing *r, unsigned nlinks, uint32_t gsi_base)
{
	if (nlinks < 1 || nlinks > PCI_INTX_MAX_LINKS)
		return -EINVAL;
	*r = (struct pci_intx_routing){ .nlinks = nlinks };
	for (unsigned s = 0; s < PCI_MAX_SLOTS; s++)
		for (unsigned p = 0; p < PCI_INTX_PINS; p++)
			r->link[s][p] = (uint8_t)((s + p) % nlinks);
	for (unsigned l = 0; l < nlinks; l++)
		r->gsi[l] = gsi_base + l;
	return 0;
}

uint32_t pci_intx_gsi(const struct pci_intx_routing *r, unsigned slot, unsigned pin)
{
	unsigned link;

	if (slot >= PCI_MAX_SLOTS || pin >= PCI_INTX_PINS || !r->nlinks)
		return UINT32_MAX;
	link = r->link[slot][pin];
	return link < r->nlinks ? r->gsi[link] : UINT32_MAX;
}

/* The level of a GSI: any link on it asserted. intx_lock held. */
static void pci_gsi_drive(struct pci_bus *bus, uint32_t gsi)
{
	bool level = false;

	for (unsigned l = 0; l < bus->intx.nlinks; l++)
		level |= bus->intx.gsi[l] == gsi && bus->link_count[l];
	if (bus->board.irq_set)
		bus->board.irq_set(bus->board.irq_opaque, gsi, level);
}

/* What the function puts on its link now; the link's GSI changes level only
 * when its count crosses zero. intx_lock held. */
static void pci_intx_drive(struct pci_dev *p)
{
	struct pci_bus *bus = p->bus;
	uint8_t pin = p->cfg[PCI_INTERRUPT_PIN];
	bool out = p->intx_level && !p->intx_masked;
	unsigned link;

	if (out == p->intx_out || pin < 1 || pin > PCI_INTX_PINS || !bus->intx.nlinks)
		return;
	link = bus->intx.link[p->slot][pin - 1];
	if (link >= bus->intx.nlinks)
		return;
	p->intx_out = out;
	if (out && bus->link_count[link]++ == 0)
		pci_gsi_drive(bus, bus->intx.gsi[link]);
	else if (!out && --bus->link_count[link] == 0)
		pci_gsi_drive(bus, bus->intx.gsi[link]);
}

void pci_intx_set(struct pci_dev *pdev, bool level)
{
	struct pci_bus *bus = pdev->bus;

	if (!bus) {
		__atomic_store_n(&pdev->intx_level, level, __ATOMIC_RELAXED);
		return;
	}
	pthread_mutex_lock(&bus->intx_lock);
	__atomic_store_n(&pdev->intx_level, level, __ATOMIC_RELAXED);
	pci_intx_drive(pdev);
	pthread_mutex_unlock(&bus->intx_lock);
}

void pci_intx_mask(struct pci_dev *pdev, bool masked)
{
	struct pci_bus *bus = pdev->bus;

	if (!bus) {
		pdev->intx_masked = masked;
		return;
	}
	pthread_mutex_lock(&bus->intx_lock);
	pdev->intx_masked = masked;
	pci_intx_drive(pdev);
	pthread_mutex_unlock(&bus->intx_lock);
}

int pci_bus_set_link_gsi(struct pci_bus *bus, unsigned link, uint32_t gsi)
{
	uint32_t old;

	if (link >= bus->intx.nlinks)
		return -EINVAL;
	pthread_mutex_lock(&bus->intx_lock);
	old = bus->intx.gsi[link];
	bus->intx.gsi[link] = gsi;
	if (old != gsi && bus->link_count[link]) {
		pci_gsi_drive(bus, old);
		pci_gsi_drive(bus, gsi);
	}
	pthread_mutex_unlock(&bus->intx_lock);
	return 0;
}
