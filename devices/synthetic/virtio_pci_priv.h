/* Internals of the virtio-pci transport shared by its register emulation
 * (virtio_pci.c) and its state: quiesce, resume, save and load
 * (virtio_pci_state.c). Nothing outside those two files includes this. */
#ifndef KESTREL_VIRTIO_PCI_PRIV_H
#define KESTREL_VIRTIO_PCI_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kestrel/device.h"
#include "kestrel/msi.h"
#include "kestrel/pci.h"
#include "kestrel/virtio.h"

#define VPCI_MAX_QUEUES 64

/* 4.1.4.5 ISR status bits. */
#define ISR_QUEUE  1
#define ISR_CONFIG 2

struct vpci_queue {
	uint16_t size;	 /* what the driver chose (default: the maximum) */
	uint16_t vector; /* MSI-X vector or VIRTIO_MSI_NO_VECTOR */
	bool enabled;	 /* written under dev.lock, read by device threads */
	uint64_t desc, driver, device;
	int kick_fd;
	unsigned ioeventfd_len; /* 0: not registered, else len + 1 */
};

struct virtio_dev {
	struct device dev;
	struct pci_dev pdev;
	struct vm *vm;
	const struct guest_mem *gm;
	struct virtio_dev_info info;
	const struct virtio_dev_ops *ops;
	void *opaque;
	uint64_t bar_addr;   /* PCI_BAR_UNMAPPED or where BAR 0 is mapped (ioeventfds) */
	unsigned pcicfg_cap; /* config offset of VIRTIO_PCI_CAP_PCI_CFG */
	uint64_t dev_features;

	/* common configuration, under dev.lock */
	uint32_t dfselect, gfselect;
	uint64_t driver_features;
	uint8_t status;
	bool started;
	bool quiesced; /* the registry's quiesce: the model's threads are parked */
	uint16_t queue_select;
	struct vpci_queue *q;
	struct virtq *vq;

	/* interrupts, under irq_lock */
	pthread_mutex_t irq_lock;
	uint16_t config_vector;
	uint8_t isr;
	bool dma_on;	  /* PCI_COMMAND Bus Master Enable (always on off-bus) */
	struct msix msix; /* one vector per queue and one for configuration */

	atomic_uint config_generation;
	atomic_bool needs_reset;
};

static inline struct virtio_dev *to_vpci(struct device *dev)
{
	return (struct virtio_dev *)dev;
}

/* INTA# follows ISR (virtio_pci.c). irq_lock held. */
void vpci_intx_update(struct virtio_dev *t);
/* Bus Master Enable on or off for the queues; true when it came on (the
 * caller then wakes the queues). irq_lock held. */
bool vpci_bus_master(struct virtio_dev *t, bool on);

/* The registry's ops (kestrel/device.h), in virtio_pci_state.c. */
void vpci_quiesce(struct device *dev);
int vpci_resume(struct device *dev);
int vpci_save(struct device *dev, struct state_buf *out) WARN_UNUSED;
int vpci_load(struct device *dev, struct state_buf *in) WARN_UNUSED;

#endif
