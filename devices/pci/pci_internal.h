/* Calls between the PCI core's own files (devices/pci/); devices use
 * kestrel/pci.h, kestrel/msi.h and kestrel/pci_dma.h. */
#ifndef KESTREL_PCI_INTERNAL_H
#define KESTREL_PCI_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

struct pci_dev;

/* pci_bus.c: move BAR bar of pdev from old to now on its bus (either may be
 * PCI_BAR_UNMAPPED); returns where it is mapped afterwards. */
uint64_t pci_bus_map_bar(struct pci_dev *pdev, int bar, uint64_t old, uint64_t now);
/* pci.c: unmap every BAR (the function leaves its bus). */
void pci_dev_unmap_bars(struct pci_dev *pdev);
/* pci_irq.c: the pin is masked (INTX_DISABLE, MSI or MSI-X on) or not. */
void pci_intx_mask(struct pci_dev *pdev, bool masked);

#endif
