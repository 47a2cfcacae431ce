/* The driver side of an in-process virtio-pci test: the device's BAR 0
 * registers under its lock, and guest memory through the one accessor.
 * Included by the virtio device suites, which set gm and dev up. */
#ifndef KESTREL_TESTS_VIRTIO_DRIVER_H
#define KESTREL_TESTS_VIRTIO_DRIVER_H

#include <check.h>
#include <pthread.h>
#include <time.h>

#include "kestrel/device.h"
#include "kestrel/guest_mem.h"
#include "kestrel/virtio.h"

/* The BAR layout (devices/synthetic/virtio_pci.c): common configuration
 * (4.1.4.3), device configuration, notifications. */
#define CC_DFSELECT   0x00
#define CC_DF	      0x04
#define CC_GFSELECT   0x08
#define CC_GF	      0x0c
#define CC_NUM_QUEUES 0x12
#define CC_STATUS     0x14
#define CC_CONFIG_GEN 0x15
#define CC_Q_SELECT   0x16
#define CC_Q_SIZE     0x18
#define CC_Q_ENABLE   0x1c
#define CC_Q_DESC     0x20
#define CC_Q_DRIVER   0x28
#define CC_Q_DEVICE   0x30
#define DEVCFG	      0x2000
#define NOTIFY	      0x3000

#define ST_ACK	       VIRTIO_STATUS_ACKNOWLEDGE
#define ST_DRIVER      VIRTIO_STATUS_DRIVER
#define ST_DRIVER_OK   VIRTIO_STATUS_DRIVER_OK
#define ST_FEATURES_OK VIRTIO_STATUS_FEATURES_OK
#define ST_NEEDS_RESET VIRTIO_STATUS_DEVICE_NEEDS_RESET
#define F_VERSION_1    VIRTIO_BIT(VIRTIO_F_VERSION_1)
#define D_NEXT	       VIRTQ_DESC_F_NEXT
#define D_WRITE	       VIRTQ_DESC_F_WRITE

/* Queue q's rings in guest memory: QSZ descriptors, then the available
 * and the used ring, in one page of its own. */
#define QSZ	 16
#define RING(q)	 (0x10000ULL + 0x1000ULL * (q))
#define AVAIL(q) (RING(q) + 0x400)
#define USED(q)	 (RING(q) + 0x800)

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

static uint64_t dev_features(void)
{
	bar_write(CC_DFSELECT, 4, 0);
	uint64_t f = bar_read(CC_DF, 4);
	bar_write(CC_DFSELECT, 4, 1);
	return f | bar_read(CC_DF, 4) << 32;
}

/* Queue q on its zeroed rings, enabled. */
static void queue_setup(unsigned q)
{
	uint8_t zero[0x1000] = { 0 };

	put(RING(q), zero, sizeof(zero));
	bar_write(CC_Q_SELECT, 2, q);
	bar_write(CC_Q_SIZE, 2, QSZ);
	bar_write(CC_Q_DESC, 8, RING(q));
	bar_write(CC_Q_DRIVER, 8, AVAIL(q));
	bar_write(CC_Q_DEVICE, 8, USED(q));
	bar_write(CC_Q_ENABLE, 2, 1);
}

/* 3.1.1 initialisation with exactly want (which the device must offer) and
 * queues 0 to nqueues - 1. */
static void driver_init(uint64_t want, unsigned nqueues)
{
	bar_write(CC_STATUS, 1, 0);
	bar_write(CC_STATUS, 1, ST_ACK | ST_DRIVER);
	ck_assert_msg((dev_features() & want) == want, "device lacks %llx",
		      (unsigned long long)(want & ~dev_features()));
	bar_write(CC_GFSELECT, 4, 0);
	bar_write(CC_GF, 4, (uint32_t)want);
	bar_write(CC_GFSELECT, 4, 1);
	bar_write(CC_GF, 4, (uint32_t)(want >> 32));
	bar_write(CC_STATUS, 1, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
	ck_assert(bar_read(CC_STATUS, 1) & ST_FEATURES_OK);
	for (unsigned q = 0; q < nqueues; q++)
		queue_setup(q);
	bar_write(CC_STATUS, 1, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

#endif
