/* Bus-master DMA for PCI functions (devices/pci/pci_dma.c): a device reads
 * and writes guest memory only through these, so that
 * - nothing moves while the function's Bus Master Enable is clear (PCI Local
 *   Bus 3.0, 6.2.2: the function may not master the bus): -EPERM, and the
 *   device treats it as a failed transfer;
 * - every byte goes through gm_ptr/gm_read/gm_write (range-checked;
 *   -EFAULT outside RAM);
 * - what the VMM writes into guest RAM is marked dirty (gm_mark_dirty), which
 *   KVM's dirty log cannot see, so migration copies it again.
 * Any thread may call them. BME is sampled at the call: a transfer under way
 * when the guest clears it completes, as on hardware. */
#ifndef KESTREL_PCI_DMA_H
#define KESTREL_PCI_DMA_H

#include <stdbool.h>
#include <stdint.h>
#include "kestrel/util.h"

struct pci_dev;

/* Whether the function may master the bus now (and sits on a bus with RAM). */
bool pci_dma_allowed(const struct pci_dev *pdev);
/* Copy len bytes from / to guest-physical addr. 0, -EPERM (BME clear),
 * -EFAULT (outside RAM), -ENODEV (not on a bus with guest memory). */
int pci_dma_read(const struct pci_dev *pdev, uint64_t addr, void *buf, uint64_t len) WARN_UNUSED;
int pci_dma_write(const struct pci_dev *pdev, uint64_t addr, const void *buf,
		  uint64_t len) WARN_UNUSED;
/* A host pointer to [addr, addr + len) for zero-copy transfers, or NULL
 * (BME clear, outside RAM, no bus). A writer calls pci_dma_unmap() with the
 * bytes it wrote, from the start, so they are marked dirty. */
void *pci_dma_map(const struct pci_dev *pdev, uint64_t addr, uint64_t len);
void pci_dma_unmap(const struct pci_dev *pdev, uint64_t addr, uint64_t written);

#endif
