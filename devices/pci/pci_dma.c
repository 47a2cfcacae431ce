/* Bus-master DMA through guest memory's one accessor, gated by Bus Master
 * Enable. See include/kestrel/pci_dma.h. */
#include <errno.h>

#include "kestrel/guest_mem.h"
#include "kestrel/pci.h"
#include "kestrel/pci_dma.h"

static const struct guest_mem *pci_dma_gm(const struct pci_dev *pdev)
{
	return pdev->bus ? pdev->bus->board.gm : NULL;
}

bool pci_dma_allowed(const struct pci_dev *pdev)
{
	return pci_dma_gm(pdev) && __atomic_load_n(&pdev->bus_master, __ATOMIC_ACQUIRE);
}

static int pci_dma_check(const struct pci_dev *pdev)
{
	if (!pci_dma_gm(pdev))
		return -ENODEV;
	return __atomic_load_n(&pdev->bus_master, __ATOMIC_ACQUIRE) ? 0 : -EPERM;
}

int pci_dma_read(const struct pci_dev *pdev, uint64_t addr, void *buf, uint64_t len)
{
	int ret = pci_dma_check(pdev);

	return ret ? ret : gm_read(pci_dma_gm(pdev), addr, buf, len);
}

/* gm_write marks what it writes dirty. */
int pci_dma_write(const struct pci_dev *pdev, uint64_t addr, const void *buf, uint64_t len)
{
	int ret = pci_dma_check(pdev);

	return ret ? ret : gm_write(pci_dma_gm(pdev), addr, buf, len);
}

void *pci_dma_map(const struct pci_dev *pdev, uint64_t addr, uint64_t len)
{
	if (pci_dma_check(pdev))
		return NULL;
	return gm_ptr(pci_dma_gm(pdev), addr, len);
}

void pci_dma_unmap(const struct pci_dev *pdev, uint64_t addr, uint64_t written)
{
	const struct guest_mem *gm = pci_dma_gm(pdev);

	if (gm && written)
		gm_mark_dirty(gm, addr, written);
}
