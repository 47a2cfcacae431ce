/* The driver side of an in-process virtio-pci test: the device's BAR 0
 * registers under its lock, and guest memory through the one accessor.
 * Included by the virtio device suites, which set gm and dev up. */
#ifndef KESTREL_TESTS_VIRTIO_DRIVER_H
#define KESTREL_TESTS_VIRTIO_DRIVER_H

#include <check.h>
#include <pthread.h>

#include "kestrel/device.h"
#include "kestrel/guest_mem.h"
#include "kestrel/virtio.h"

static struct guest_mem gm;
static struct device *dev;

static void bar_write(uint64_t off, unsigned size, uint64_t v)
{
	pthread_mutex_lock(&dev->lock);
	dev->ops->write(dev, 0, off, size, v);
	pthread_mutex_unlock(&dev->lock);
}

static uint64_t bar_read(uint64_t off, unsigned size)
{
	uint64_t v;

	pthread_mutex_lock(&dev->lock);
	v = dev->ops->read(dev, 0, off, size);
	pthread_mutex_unlock(&dev->lock);
	return v;
}

/* A device model behind a virtio-pci function made without a VM or a bus
 * (interrupts dropped, DMA on), its queues in gm. */
static __attribute__((unused)) struct device *transport_for(const struct virtio_model *m)
{
	struct virtio_dev *v;

	ck_assert_int_eq(virtio_pci_create(NULL, NULL, -1, &m->info, m->ops, m->opaque, &v), 0);
	virtio_pci_set_guest_mem(virtio_dev_device(v), &gm);
	return virtio_dev_device(v);
}

static void put(uint64_t gpa, const void *p, size_t n)
{
	ck_assert_int_eq(gm_write(&gm, gpa, p, n), 0);
}

static void get(uint64_t gpa, void *p, size_t n)
{
	ck_assert_int_eq(gm_read(&gm, gpa, p, n), 0);
}

#endif
