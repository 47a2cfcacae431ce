/* Bus 0: functions by devfn, the multi-function bit, and BARs placed on the
 * board's I/O and MMIO buses. See include/kestrel/pci.h. */
#include <errno.h>
#include <string.h>

#include "kestrel/bus.h"
#include "kestrel/pci.h"
#include "pci_internal.h"

static int pci_devfn(int slot, int fn)
{
	return slot * PCI_MAX_FNS + fn;
}

void pci_bus_init(struct pci_bus *bus, const struct pci_board *board)
{
	memset(bus, 0, sizeof(*bus));
	if (board)
		bus->board = *board;
	if (board && board->intx)
		bus->intx = *board->intx;
	if (bus->intx.nlinks > PCI_INTX_MAX_LINKS)
		bus->intx.nlinks = 0;
	bus->board.intx = NULL; /* the copy is ours; PIIX3 may move links */
	pthread_mutex_init(&bus->lock, NULL);
	pthread_mutex_init(&bus->intx_lock, NULL);
}

void pci_bus_destroy(struct pci_bus *bus)
{
	pthread_mutex_destroy(&bus->lock);
	pthread_mutex_destroy(&bus->intx_lock);
}

static bool pci_slot_empty(const struct pci_bus *bus, int slot)
{
	for (int fn = 0; fn < PCI_MAX_FNS; fn++)
		if (bus->fn[pci_devfn(slot, fn)])
			return false;
	return true;
}

/* 6.2.1 Header Type bit 7: function 0 says whether the slot has others. */
static void pci_update_multifn(struct pci_bus *bus, int slot)
{
	struct pci_dev *f0 = bus->fn[pci_devfn(slot, 0)];
	bool multi = false;

	for (int fn = 1; fn < PCI_MAX_FNS; fn++)
		multi |= bus->fn[pci_devfn(slot, fn)] != NULL;
	if (!f0)
		return;
	if (multi)
		f0->cfg[PCI_HEADER_TYPE] |= PCI_HEADER_TYPE_MULTI_FN;
	else
		f0->cfg[PCI_HEADER_TYPE] &= (uint8_t)~PCI_HEADER_TYPE_MULTI_FN;
}

/* What firmware would write into Interrupt Line: the GSI the pin reaches. */
static void pci_fill_irq_line(struct pci_bus *bus, struct pci_dev *pdev)
{
	uint8_t pin = pdev->cfg[PCI_INTERRUPT_PIN];
	uint32_t gsi;

	if (pin < 1 || pin > PCI_INTX_PINS || !bus->intx.nlinks)
		return;
	gsi = pci_intx_gsi(&bus->intx, (unsigned)pdev->slot, pin - 1u);
	if (gsi < 0xff)
		pdev->cfg[PCI_INTERRUPT_LINE] = (uint8_t)gsi;
}

int pci_bus_add(struct pci_bus *bus, struct pci_dev *pdev, int slot, int fn)
{
	int ret = -ENOSPC;

	if (slot < -1 || slot >= PCI_MAX_SLOTS || fn < 0 || fn >= PCI_MAX_FNS)
		return -EINVAL;
	pthread_mutex_lock(&bus->lock);
	if (slot == -1) {
		for (int s = 1; s < PCI_MAX_SLOTS && ret < 0; s++)
			if (pci_slot_empty(bus, s))
				ret = s;
	} else {
		ret = bus->fn[pci_devfn(slot, fn)] ? -EEXIST : slot;
	}
	if (ret >= 0) {
		bus->fn[pci_devfn(ret, fn)] = pdev;
		pdev->bus = bus;
		pdev->slot = ret;
		pdev->fn = fn;
		pci_update_multifn(bus, ret);
		pci_fill_irq_line(bus, pdev);
	}
	pthread_mutex_unlock(&bus->lock);
	return ret;
}

struct pci_dev *pci_bus_fn(struct pci_bus *bus, int slot, int fn)
{
	struct pci_dev *p;

	if (slot < 0 || slot >= PCI_MAX_SLOTS || fn < 0 || fn >= PCI_MAX_FNS)
		return NULL;
	pthread_mutex_lock(&bus->lock);
	p = bus->fn[pci_devfn(slot, fn)];
	pthread_mutex_unlock(&bus->lock);
	return p;
}

void pci_dev_exit(struct pci_dev *pdev)
{
	struct pci_bus *bus = pdev->bus;

	pci_dev_unmap_bars(pdev);
	pci_intx_set(pdev, false);
	if (!bus)
		return;
	pthread_mutex_lock(&bus->lock);
	if (bus->fn[pci_devfn(pdev->slot, pdev->fn)] == pdev)
		bus->fn[pci_devfn(pdev->slot, pdev->fn)] = NULL;
	pci_update_multifn(bus, pdev->slot);
	pthread_mutex_unlock(&bus->lock);
	pdev->bus = NULL;
	pdev->slot = pdev->fn = -1;
}

/* The bus range follows the BAR when it has an owner (the ROM BAR's is the
 * core's own reader); without one, or without buses (unit tests), the device
 * alone decides what the address means and the decoded address stands. */
uint64_t pci_bus_map_bar(struct pci_dev *pdev, int i, uint64_t old, uint64_t now)
{
	const struct pci_bar *b = &pdev->bar[i];
	struct bus *space = NULL;
	int ret;

	if (pdev->bus)
		space = (b->flags & PCI_BAR_IO) ? pdev->bus->board.pio : pdev->bus->board.mmio;
	if (!b->owner || !space)
		return now;
	if (old != PCI_BAR_UNMAPPED && bus_remove(space, old))
		kwarn("pci %02x.%x: BAR %d was not at %#llx", pdev->slot, pdev->fn, i,
		      (unsigned long long)old);
	if (now == PCI_BAR_UNMAPPED)
		return PCI_BAR_UNMAPPED;
	ret = bus_insert(space, now, b->size, b->owner, b->region);
	if (ret) {
		kwarn("pci %02x.%x (%s): BAR %d at %#llx: %s; not decoded", pdev->slot, pdev->fn,
		      b->owner->ops->name, i, (unsigned long long)now,
		      ret == -EEXIST ? "overlaps another device" : "cannot map");
		return PCI_BAR_UNMAPPED;
	}
	return now;
}
