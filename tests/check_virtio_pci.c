/* The virtio-pci transport at register level, without a VM: PCI header and
 * capabilities, feature negotiation, the status machine and reset, queue
 * setup validation (NEEDS_RESET), notifications through the MMIO fallback,
 * ISR/INTx, MSI-X vectors, masking and pending bits, and a register fuzz. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "kestrel/bus.h"
#include "kestrel/devices.h"
#include "kestrel/pci.h"
#include "kestrel/virtio.h"
#include "fake_board.h"

#define NQ	   3
#define SLOT	   3
#define COMMON	   0x0000
#define ISR	   0x1000
#define DEVCFG	   0x2000
#define NOTIFY	   0x3000
#define MSIX_TABLE 0x4000
#define MSIX_PBA   0x5000
#define RAM	   MiB(2)

struct model {
	int starts, stops, destroys;
	uint64_t features;
	unsigned cfg_off, cfg_size;
	uint64_t cfg_written;
	struct virtio_dev *vdev; /* what bind() handed over */
};

static struct model model;
static struct device *host, *dev;
static struct virtio_dev *vdev;
static struct pci_dev *pdev;
static struct guest_mem gm;

static uint64_t m_cfg_read(void *o, unsigned off, unsigned size)
{
	struct model *m = o;

	m->cfg_off = off;
	m->cfg_size = size;
	return 0x1234567800000000ULL | off;
}

static void m_cfg_write(void *o, unsigned off, unsigned size, uint64_t val)
{
	((struct model *)o)->cfg_written = val;
}

static int m_start(void *o, uint64_t features)
{
	struct model *m = o;

	m->starts++;
	m->features = features;
	return 0;
}

static void m_stop(void *o)
{
	((struct model *)o)->stops++;
}

static void m_destroy(void *o)
{
	((struct model *)o)->destroys++;
}

static void m_bind(void *o, struct virtio_dev *v)
{
	((struct model *)o)->vdev = v;
}

static const struct virtio_dev_ops m_ops = {
	.bind = m_bind,
	.cfg_read = m_cfg_read,
	.cfg_write = m_cfg_write,
	.start = m_start,
	.stop = m_stop,
	.destroy = m_destroy,
};

static uint64_t rd(uint64_t off, unsigned size)
{
	return dev->ops->read(dev, 0, off, size);
}

static void wr(uint64_t off, unsigned size, uint64_t v)
{
	dev->ops->write(dev, 0, off, size, v);
}

/* The transport under test: NQ queues of 64, 24 config bytes, features offered. */
static struct virtio_dev_info test_info(uint64_t features)
{
	return (struct virtio_dev_info){ .name = "test",
					 .device_id = 42,
					 .class_code = 0x018000,
					 .features = features,
					 .num_queues = NQ,
					 .queue_size = 64,
					 .cfg_size = 24 };
}

static void setup(void)
{
	struct virtio_dev_info info = test_info(1ULL << 5);

	memset(&model, 0, sizeof(model));
	ck_assert_int_eq(gm_init(&gm, RAM, false), 0);
	host = pci_host_create(NULL);
	ck_assert_int_eq(virtio_pci_create(NULL, host, SLOT, &info, &m_ops, &model, &vdev), 0);
	ck_assert_ptr_eq(model.vdev, vdev); /* the model was bound to its transport */
	dev = virtio_dev_device(vdev);
	virtio_pci_set_guest_mem(dev, &gm);
	pdev = pci_host_slot(host, SLOT);
	ck_assert_ptr_nonnull(pdev);
}

static void teardown(void)
{
	dev->ops->destroy(dev);
	ck_assert_int_eq(model.destroys, 1);
	host->ops->destroy(host);
	gm_destroy(&gm);
}

/* 3.1.1 steps 1-6 with the given driver features; returns the status read back. */
static uint8_t negotiate(uint64_t features)
{
	wr(COMMON + 0x14, 1, 0);
	wr(COMMON + 0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(COMMON + 0x08, 4, 0);
	wr(COMMON + 0x0c, 4, (uint32_t)features);
	wr(COMMON + 0x08, 4, 1);
	wr(COMMON + 0x0c, 4, (uint32_t)(features >> 32));
	wr(COMMON + 0x14, 1,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	return (uint8_t)rd(COMMON + 0x14, 1);
}

/* Queue q at desc/avail/used, enabled. */
static void queue(unsigned q, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
	wr(COMMON + 0x16, 2, q);
	wr(COMMON + 0x18, 2, size);
	wr(COMMON + 0x20, 4, (uint32_t)desc); /* 64-bit fields as two halves */
	wr(COMMON + 0x24, 4, (uint32_t)(desc >> 32));
	wr(COMMON + 0x28, 8, avail);
	wr(COMMON + 0x30, 8, used);
	wr(COMMON + 0x1c, 2, 1);
}

/* A transport that cannot be made frees its model, once. */
START_TEST(create_failure_frees_model)
{
	struct virtio_dev_info bad = {
		.name = "bad", .device_id = 42, .num_queues = 0, .queue_size = 64
	};
	struct model m = { 0 };
	struct virtio_dev *v = NULL;

	ck_assert_int_eq(virtio_pci_create(NULL, NULL, -1, &bad, &m_ops, &m, &v), -EINVAL);
	ck_assert_int_eq(m.destroys, 1);
	ck_assert_ptr_null(v);
}
END_TEST

START_TEST(header_and_capabilities)
{
	unsigned types = 0, c;

	ck_assert_uint_eq(pci_cfg_read(pdev, PCI_VENDOR_ID, 2), 0x1af4);
	ck_assert_uint_eq(pci_cfg_read(pdev, PCI_DEVICE_ID, 2), 0x1040 + 42);
	ck_assert_uint_ge(pci_cfg_read(pdev, PCI_REVISION_ID, 1), 1);
	ck_assert_uint_eq(pci_cfg_read(pdev, PCI_INTERRUPT_PIN, 1), 1);
	ck_assert(pci_cfg_read(pdev, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	/* 64-bit memory BAR 0, not prefetchable, 32 KiB. */
	ck_assert_uint_eq(pci_cfg_read(pdev, PCI_BASE_ADDRESS_0, 4) & 0xf, PCI_BAR_MEM64);
	pci_cfg_write(pdev, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
	ck_assert_uint_eq(pci_cfg_read(pdev, PCI_BASE_ADDRESS_0, 4) & ~0xfu, 0xffff8000u);
	for (c = pci_cfg_read(pdev, PCI_CAPABILITY_LIST, 1); c; c = pci_cfg_read(pdev, c + 1, 1)) {
		uint8_t id = (uint8_t)pci_cfg_read(pdev, c, 1);

		if (id == 0x11) {
			ck_assert_uint_eq(pci_cfg_read(pdev, c + 2, 2) & 0x7ff,
					  NQ); /* NQ + 1 vectors */
			ck_assert_uint_eq(pci_cfg_read(pdev, c + 4, 4), MSIX_TABLE);
			ck_assert_uint_eq(pci_cfg_read(pdev, c + 8, 4), MSIX_PBA);
			continue;
		}
		ck_assert_uint_eq(id, 0x09);
		types |= 1u << pci_cfg_read(pdev, c + 3, 1);
		ck_assert_uint_eq(pci_cfg_read(pdev, c + 4, 1), 0); /* BAR 0 */
		if (pci_cfg_read(pdev, c + 3, 1) == 2) {
			ck_assert_uint_eq(pci_cfg_read(pdev, c + 8, 4), NOTIFY);
			ck_assert_uint_eq(pci_cfg_read(pdev, c + 16, 4), 4); /* multiplier */
		}
	}
	ck_assert_uint_eq(types, 0x3e); /* common, notify, ISR, device, PCI cfg */
}
END_TEST

START_TEST(features)
{
	uint64_t dev_f;

	wr(COMMON + 0x00, 4, 0);
	dev_f = rd(COMMON + 0x04, 4);
	wr(COMMON + 0x00, 4, 1);
	dev_f |= rd(COMMON + 0x04, 4) << 32;
	ck_assert(dev_f & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	ck_assert(dev_f & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	ck_assert(dev_f & VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	ck_assert(dev_f & (1ULL << 5));
	wr(COMMON + 0x00, 4, 2);
	ck_assert_uint_eq(rd(COMMON + 0x04, 4), 0);
	/* No legacy interface: FEATURES_OK only with VERSION_1... */
	ck_assert(!(negotiate(1ULL << 5) & VIRTIO_STATUS_FEATURES_OK));
	/* ...and only for features the device offers. */
	ck_assert(!(negotiate(VIRTIO_BIT(VIRTIO_F_VERSION_1) | (1ULL << 7)) &
		    VIRTIO_STATUS_FEATURES_OK));
	ck_assert(negotiate(VIRTIO_BIT(VIRTIO_F_VERSION_1) | (1ULL << 5)) &
		  VIRTIO_STATUS_FEATURES_OK);
	/* Fixed after FEATURES_OK. */
	wr(COMMON + 0x08, 4, 0);
	wr(COMMON + 0x0c, 4, 0);
	ck_assert_uint_eq(rd(COMMON + 0x0c, 4), 1u << 5);
	wr(COMMON + 0x14, 1, 0x0f);
	ck_assert_int_eq(model.starts, 1);
	ck_assert_uint_eq(model.features, VIRTIO_BIT(VIRTIO_F_VERSION_1) | (1ULL << 5));
}
END_TEST

START_TEST(status_and_reset)
{
	ck_assert_uint_eq(rd(COMMON + 0x12, 2), NQ);
	negotiate(VIRTIO_BIT(VIRTIO_F_VERSION_1));
	queue(1, 16, 0x1000, 0x2000, 0x3000);
	wr(COMMON + 0x16, 2, 1);
	ck_assert_uint_eq(rd(COMMON + 0x1c, 2), 1);
	ck_assert_uint_eq(rd(COMMON + 0x20, 8), 0x1000);
	ck_assert_uint_eq(rd(COMMON + 0x1e, 2), 1); /* notify offset = index */
	ck_assert(virtio_queue_enabled(vdev, 1));
	/* Layout changes to a live queue are ignored. */
	wr(COMMON + 0x18, 2, 8);
	ck_assert_uint_eq(rd(COMMON + 0x18, 2), 16);
	wr(COMMON + 0x14, 1, 0x0f);
	ck_assert_int_eq(model.starts, 1);
	ck_assert(!virtio_needs_reset(vdev));
	/* The driver cannot set the device's NEEDS_RESET bit. */
	wr(COMMON + 0x14, 1, 0x0f | VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	ck_assert_uint_eq(rd(COMMON + 0x14, 1), 0x0f);
	wr(COMMON + 0x14, 1, 0);
	ck_assert_int_eq(model.stops, 1);
	ck_assert_uint_eq(rd(COMMON + 0x14, 1), 0);
	wr(COMMON + 0x16, 2, 1);
	ck_assert_uint_eq(rd(COMMON + 0x1c, 2), 0);
	ck_assert_uint_eq(rd(COMMON + 0x18, 2), 64); /* back to the maximum */
	ck_assert_uint_eq(rd(COMMON + 0x20, 8), 0);
	ck_assert(!virtio_queue_enabled(vdev, 1));
	/* A queue index past the last reads size 0. */
	wr(COMMON + 0x16, 2, NQ);
	ck_assert_uint_eq(rd(COMMON + 0x18, 2), 0);
}
END_TEST

START_TEST(bad_queue_setup_needs_reset)
{
	negotiate(VIRTIO_BIT(VIRTIO_F_VERSION_1));
	queue(0, 16, RAM - 64, 0x2000, 0x3000); /* table past RAM */
	ck_assert(virtio_needs_reset(vdev));
	ck_assert(rd(COMMON + 0x14, 1) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	wr(COMMON + 0x16, 2, 0);
	ck_assert_uint_eq(rd(COMMON + 0x1c, 2), 0);
	wr(COMMON + 0x14, 1, 0);
	ck_assert(!virtio_needs_reset(vdev));
	negotiate(VIRTIO_BIT(VIRTIO_F_VERSION_1));
	queue(0, 12, 0x1000, 0x2000, 0x3000); /* not a power of two */
	ck_assert(virtio_needs_reset(vdev));
	wr(COMMON + 0x14, 1, 0);
	negotiate(VIRTIO_BIT(VIRTIO_F_VERSION_1));
	queue(0, 128, 0x1000, 0x2000, 0x3000); /* above the maximum */
	ck_assert(virtio_needs_reset(vdev));
	wr(COMMON + 0x14, 1, 0);
	/* Enabling before FEATURES_OK, DRIVER_OK before FEATURES_OK. */
	wr(COMMON + 0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	queue(0, 16, 0x1000, 0x2000, 0x3000);
	ck_assert(virtio_needs_reset(vdev));
	wr(COMMON + 0x14, 1, 0);
	wr(COMMON + 0x14, 1,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
	ck_assert(virtio_needs_reset(vdev));
	ck_assert_int_eq(model.starts, 0);
}
END_TEST

START_TEST(notify_fallback)
{
	eventfd_t v;
	int fd = virtio_queue_kick_fd(vdev, 2);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ne(eventfd_read(fd, &v), 0); /* nothing yet */
	wr(NOTIFY + 4 * 2, 2, 2);
	ck_assert_int_eq(eventfd_read(fd, &v), 0);
	ck_assert_uint_eq(v, 1);
	wr(NOTIFY + 4 * NQ, 2, NQ);   /* no such queue */
	wr(NOTIFY + 4 * 2 + 2, 2, 2); /* not a slot start */
	ck_assert_int_ne(eventfd_read(fd, &v), 0);
}
END_TEST

START_TEST(isr_and_intx)
{
	virtio_queue_interrupt(vdev, 0);
	ck_assert(pci_cfg_read(pdev, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	ck_assert_uint_eq(rd(ISR, 1), 1); /* queue interrupt */
	ck_assert_uint_eq(rd(ISR, 1), 0); /* read clears */
	ck_assert(!(pci_cfg_read(pdev, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
	virtio_config_changed(vdev);
	ck_assert_uint_eq(rd(ISR, 1), 2); /* configuration change */
}
END_TEST

START_TEST(msix_vectors)
{
	unsigned cap = 0x40;

	pci_cfg_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	wr(COMMON + 0x10, 2, 1);
	ck_assert_uint_eq(rd(COMMON + 0x10, 2), 1);
	wr(COMMON + 0x10, 2, NQ + 1); /* no such vector */
	ck_assert_uint_eq(rd(COMMON + 0x10, 2), VIRTIO_MSI_NO_VECTOR);
	wr(COMMON + 0x16, 2, 0);
	wr(COMMON + 0x1a, 2, 2);
	ck_assert_uint_eq(rd(COMMON + 0x1a, 2), 2);
	/* Entries start masked (PCI 3.0 6.8.2.9). */
	ck_assert_uint_eq(rd(MSIX_TABLE + 16 * 2 + 12, 4), 1);
	wr(MSIX_TABLE + 16 * 2, 8, 0xfee00000ULL);
	wr(MSIX_TABLE + 16 * 2 + 8, 4, 0x4041);
	ck_assert_uint_eq(rd(MSIX_TABLE + 16 * 2 + 8, 4), 0x4041);
	pci_cfg_write(pdev, cap + 2, 2, 0x8000); /* MSI-X on */
	virtio_queue_interrupt(vdev, 0);
	ck_assert_uint_eq(rd(ISR, 1), 0);	     /* no ISR with MSI-X */
	ck_assert_uint_eq(rd(MSIX_PBA, 8), 1u << 2); /* held: masked */
	wr(MSIX_TABLE + 16 * 2 + 12, 4, 0);	     /* unmask: delivered */
	ck_assert_uint_eq(rd(MSIX_PBA, 8), 0);
	pci_cfg_write(pdev, cap + 2, 2, 0xc000); /* function mask */
	virtio_queue_interrupt(vdev, 0);
	ck_assert_uint_eq(rd(MSIX_PBA, 4), 1u << 2);
	pci_cfg_write(pdev, cap + 2, 2, 0x8000);
	ck_assert_uint_eq(rd(MSIX_PBA, 4), 0);
	/* Odd sizes and offsets in the table read 0 and write nothing. */
	ck_assert_uint_eq(rd(MSIX_TABLE + 16 * 2 + 8, 2), 0);
	wr(MSIX_TABLE + 16 * 2 + 9, 1, 0xff);
	ck_assert_uint_eq(rd(MSIX_TABLE + 16 * 2 + 8, 4), 0x4041);
}
END_TEST

/* Descriptor i: one device-readable buffer of 64 bytes at 0x4000 + 64 i;
 * avail ring entry n names it and avail->idx becomes n + 1. */
static void offer(uint16_t n, uint16_t i)
{
	uint64_t addr = 0x4000 + 64ULL * i;
	uint32_t len = 64;
	uint16_t idx = (uint16_t)(n + 1);

	ck_assert_int_eq(gm_write(&gm, 0x1000 + 16ULL * i, &addr, 8), 0);
	ck_assert_int_eq(gm_write(&gm, 0x1000 + 16ULL * i + 8, &len, 4), 0);
	ck_assert_int_eq(gm_write(&gm, 0x2000 + 4 + 2ULL * n, &i, 2), 0);
	ck_assert_int_eq(gm_write(&gm, 0x2000 + 2, &idx, 2), 0);
}

/* Bus Master Enable is clear at power-on; while it is clear the device takes
 * no chain and MSI-X messages wait in the PBA; setting it delivers them and
 * kicks every queue, so what was queued meanwhile is seen. */
START_TEST(bus_master_gates_dma)
{
	struct virtq *vq = virtio_queue(vdev, 0);
	struct iovec iov[16];
	struct vq_elem e;
	eventfd_t v;
	int kick = virtio_queue_kick_fd(vdev, 0);
	unsigned cap = 0x40;

	ck_assert_uint_eq(pci_cfg_read(pdev, PCI_COMMAND, 2) & PCI_COMMAND_MASTER, 0);
	ck_assert_uint_eq(negotiate(VIRTIO_BIT(VIRTIO_F_VERSION_1)) & VIRTIO_STATUS_FEATURES_OK,
			  VIRTIO_STATUS_FEATURES_OK);
	queue(0, 16, 0x1000, 0x2000, 0x3000);
	wr(COMMON + 0x16, 2, 0);
	wr(COMMON + 0x1a, 2, 1); /* queue 0 -> vector 1 */
	wr(MSIX_TABLE + 16 * 1, 8, 0xfee00000ULL);
	wr(MSIX_TABLE + 16 * 1 + 12, 4, 0);	 /* unmasked */
	pci_cfg_write(pdev, cap + 2, 2, 0x8000); /* MSI-X on */
	pci_cfg_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	offer(0, 0);
	ck_assert_int_eq(vq_pop(vq, &e, iov, 16), 0); /* no DMA: nothing taken */
	ck_assert(!vq_has_work(vq));
	virtio_queue_interrupt(vdev, 0);
	ck_assert_uint_eq(rd(MSIX_PBA, 8), 1u << 1); /* held */
	while (eventfd_read(kick, &v) == 0)
		;
	pci_cfg_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	ck_assert_uint_eq(rd(MSIX_PBA, 8), 0);	     /* delivered */
	ck_assert_int_eq(eventfd_read(kick, &v), 0); /* the queue was kicked */
	ck_assert_int_eq(vq_pop(vq, &e, iov, 16), 1);
	ck_assert_uint_eq(e.head, 0);
	ck_assert_uint_eq(e.out_len, 64);
	/* Cleared again: the next chain waits, and comes once it is set. */
	pci_cfg_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	offer(1, 1);
	ck_assert_int_eq(vq_pop(vq, &e, iov, 16), 0);
	pci_cfg_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	ck_assert_int_eq(vq_pop(vq, &e, iov, 16), 1);
	ck_assert_uint_eq(e.head, 1);
	/* A device reset keeps the PCI command register's word. */
	wr(COMMON + 0x14, 1, 0);
	negotiate(VIRTIO_BIT(VIRTIO_F_VERSION_1));
	queue(0, 16, 0x1000, 0x2000, 0x3000);
	ck_assert_int_eq(vq_pop(vq, &e, iov, 16), 1);
}
END_TEST

START_TEST(device_config_and_pci_cfg_window)
{
	ck_assert_uint_eq(rd(DEVCFG + 8, 4), 8); /* cut to the access size */
	ck_assert_uint_eq(model.cfg_off, 8);
	ck_assert_uint_eq(model.cfg_size, 4);
	ck_assert_uint_eq(rd(DEVCFG + 8, 8), 0x1234567800000008ULL);
	model.cfg_size = 0;
	ck_assert_uint_eq(rd(DEVCFG + 22, 4), 0); /* past cfg_size */
	ck_assert_uint_eq(model.cfg_size, 0);
	wr(DEVCFG + 4, 4, 77);
	ck_assert_uint_eq(model.cfg_written, 77);
	/* 4.1.4.7: VIRTIO_PCI_CAP_PCI_CFG at 0x90 reaches the BAR. */
	pci_cfg_write(pdev, 0x90 + 4, 1, 0);
	pci_cfg_write(pdev, 0x90 + 8, 4, COMMON + 0x12);
	pci_cfg_write(pdev, 0x90 + 12, 4, 2);
	ck_assert_uint_eq(pci_cfg_read(pdev, 0x90 + 16, 4) & 0xffff, NQ);
}
END_TEST

/* BAR 0 is wherever the guest puts it: the PCI core moves the range on the
 * MMIO bus (and vpci_bar_remap the ioeventfds, with a VM), decode off
 * unmaps it, and the device keeps its state across moves. */
START_TEST(bar_moves_on_the_bus)
{
	struct virtio_dev_info info = { .name = "moving",
					.device_id = 42,
					.class_code = 0x018000,
					.num_queues = 2,
					.queue_size = 16,
					.cfg_size = 8 };
	struct bus mmio;
	struct pci_board board = { .mmio = &mmio };
	struct device *h2, *d2;
	struct virtio_dev *v2;
	struct pci_dev *p2;
	struct model m2 = { 0 };
	uint64_t v = 0;

	bus_init(&mmio, "mmio");
	h2 = pci_host_create(&board);
	ck_assert_int_eq(virtio_pci_create(NULL, h2, 6, &info, &m_ops, &m2, &v2), 0);
	d2 = virtio_dev_device(v2);
	p2 = pci_host_slot(h2, 6);
	pci_cfg_write(p2, PCI_BASE_ADDRESS_0, 4, 0xc0008000);
	pci_cfg_write(p2, PCI_BASE_ADDRESS_0 + 4, 4, 0);
	ck_assert(!bus_read(&mmio, 0xc0008000 + COMMON + 0x12, &v, 2)); /* decode off */
	pci_cfg_write(p2, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	ck_assert(bus_read(&mmio, 0xc0008000 + COMMON + 0x12, &v, 2));
	ck_assert_uint_eq(v, 2); /* num_queues */
	v = 0x0f;
	ck_assert(bus_write(&mmio, 0xc0008000 + COMMON + 0x16, &v, 2)); /* queue_select 15 */
	/* Move it above 4 GiB: the old address is dead, the state came along. */
	pci_cfg_write(p2, PCI_BASE_ADDRESS_0 + 4, 4, 0x10);
	ck_assert(!bus_read(&mmio, 0xc0008000 + COMMON + 0x16, &v, 2));
	ck_assert(bus_read(&mmio, 0x10c0008000ULL + COMMON + 0x16, &v, 2));
	ck_assert_uint_eq(v, 0x0f);
	ck_assert(bus_read(&mmio, 0x10c0008000ULL + MSIX_TABLE + 12, &v, 4));
	ck_assert_uint_eq(v & 0xffffffff, 1); /* vector 0 masked */
	pci_cfg_write(p2, PCI_COMMAND, 2, 0);
	ck_assert_int_eq(mmio.nr, 0);
	d2->ops->destroy(d2);
	ck_assert_int_eq(m2.destroys, 1);
	h2->ops->destroy(h2);
	bus_destroy(&mmio);
}
END_TEST

/* Whatever a guest writes anywhere in the BAR, nothing breaks. */
START_TEST(register_fuzz)
{
	uint32_t x = 0x9e3779b9;

	for (int i = 0; i < 200000; i++) {
		uint64_t off, val;
		unsigned size;

		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		off = x % 0x6000;
		size = 1u << (x >> 28 & 3);
		val = (uint64_t)x * 0x9e3779b97f4a7c15ULL;
		if ((x & 7) == 0)
			off = COMMON + (x >> 8) % 0x40; /* the interesting part */
		if ((x & 0x3ff) == 1)
			val = 0; /* resets */
		if (x & 1)
			wr(off, size, val);
		else
			rd(off, size);
	}
	wr(COMMON + 0x14, 1, 0);
	ck_assert_int_eq(model.starts >= model.stops - 1, 1);
}
END_TEST

/* A second transport like the one under test, on its own host. */
static struct device *host2;
static struct model model2;

static struct device *make_second(uint64_t offer_features, struct virtio_dev **out)
{
	struct virtio_dev_info info = test_info(offer_features);
	struct virtio_dev *v;

	host2 = pci_host_create(NULL);
	ck_assert_int_eq(virtio_pci_create(NULL, host2, SLOT, &info, &m_ops, &model2, &v), 0);
	virtio_pci_set_guest_mem(virtio_dev_device(v), &gm);
	if (out)
		*out = v;
	return virtio_dev_device(v);
}

static void free_second(struct device *b)
{
	b->ops->destroy(b);
	host2->ops->destroy(host2);
}

/* The transport's own state: a queue with a position (EVENT_IDX), MSI-X on
 * with a vector held pending while Bus Master is off, the selectors. After
 * a load into a fresh function the same bytes save again, the held vector
 * is delivered when Bus Master comes on, and the queue goes on from where
 * it was. Every corruption is refused or loaded whole; another device or
 * another feature set is refused. */
START_TEST(state_transport)
{
	struct iovec iov[16];
	struct vq_elem e;
	struct state_buf s;
	struct device *a = dev, *b, *other;
	struct virtio_dev *vb;
	unsigned refused, cap = pci_cap_find(pdev, PCI_CAP_ID_MSIX);

	pci_cfg_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	negotiate(VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	queue(0, 16, 0x1000, 0x2000, 0x3000);
	wr(COMMON + 0x16, 2, 0);
	wr(COMMON + 0x1a, 2, 1); /* queue 0 -> vector 1 */
	wr(COMMON + 0x10, 2, 0); /* config -> vector 0 */
	wr(MSIX_TABLE + 16 * 1, 8, 0xfee01000ULL);
	wr(MSIX_TABLE + 16 * 1 + 8, 4, 0x4051);
	wr(MSIX_TABLE + 16 * 1 + 12, 4, 0);	 /* unmasked */
	pci_cfg_write(pdev, cap + 2, 2, 0x8000); /* MSI-X on */
	offer(0, 0);
	ck_assert_int_eq(vq_pop(virtio_queue(vdev, 0), &e, iov, 16), 1);
	ck_assert(vq_push(virtio_queue(vdev, 0), e.head, 0));
	pci_cfg_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	virtio_queue_interrupt(vdev, 0);
	ck_assert_uint_eq(rd(MSIX_PBA, 8), 1u << 1); /* held */
	wr(COMMON + 0x00, 4, 1);		     /* device_feature_select */
	s = locked_save(dev);
	b = make_second(1ULL << 5, &vb);
	refused = check_every_corruption(b, &s);
	printf("virtio-pci transport: state %zu bytes, %u of %zu byte flips refused, the rest "
	       "loaded whole\n",
	       s.len, refused, s.len);
	load_saves_same(b, &s);
	/* Through b now: the selector, the vector table, the held vector, the
	 * queue's place. */
	dev = b;
	pdev = pci_host_slot(host2, SLOT);
	ck_assert_uint_eq(rd(COMMON + 0x00, 4), 1);
	ck_assert_uint_eq(rd(MSIX_TABLE + 16 * 1 + 8, 4), 0x4051);
	ck_assert_uint_eq(rd(MSIX_PBA, 8), 1u << 1);
	offer(1, 1);
	ck_assert_int_eq(vq_pop(virtio_queue(vb, 0), &e, iov, 16), 0); /* no Bus Master */
	pci_cfg_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	ck_assert_uint_eq(rd(MSIX_PBA, 8), 0); /* delivered */
	ck_assert_int_eq(vq_pop(virtio_queue(vb, 0), &e, iov, 16), 1);
	ck_assert_uint_eq(e.head, 1);
	ck_assert_int_eq(vq_pop(virtio_queue(vb, 0), &e, iov, 16), 0);
	if (vq_push(virtio_queue(vb, 0), e.head, 0))
		virtio_queue_interrupt(vb, 0);
	{
		uint16_t used;

		ck_assert_int_eq(gm_read(&gm, 0x3000 + 2, &used, 2), 0);
		ck_assert_uint_eq(used, 2);
	}
	dev = a;
	pdev = pci_host_slot(host, SLOT);
	free_second(b);
	/* Another device type, or the same type offering other features. */
	other = make_second(1ULL << 6, NULL);
	s.pos = 0;
	ck_assert_int_eq(locked_load(other, &s), -EINVAL);
	free_second(other);
	state_free(&s);
}
END_TEST

/* A transport on its own host and MMIO bus, BAR 0 above 4 GiB, decoding. */
#define BAR_AT 0x10c0008000ULL

static struct device *make_on_bus(struct bus *mmio, struct device **h, struct model *m,
				  struct virtio_dev **v, struct pci_dev **p)
{
	struct virtio_dev_info info = test_info(1ULL << 5);
	struct pci_board board = { .mmio = mmio };

	bus_init(mmio, "mmio");
	*h = pci_host_create(&board);
	ck_assert_int_eq(virtio_pci_create(NULL, *h, 6, &info, &m_ops, m, v), 0);
	virtio_pci_set_guest_mem(virtio_dev_device(*v), &gm);
	*p = pci_host_slot(*h, 6);
	return virtio_dev_device(*v);
}

/* The PCI parts of the transport's state come back through the core: BAR 0
 * decodes on the loading function's bus where the source had it (the load
 * runs under the device lock, as the registry calls it, and the core's
 * bar_remap moves the ioeventfds then), and INTA#, which follows ISR, is
 * asserted again until the driver reads ISR. A saved INTx level that does
 * not follow ISR is refused. */
START_TEST(state_bar_and_intx)
{
	struct bus mmio_a, mmio_b;
	struct device *ha, *hb, *da, *db;
	struct virtio_dev *va, *vb;
	struct pci_dev *pa, *pb;
	struct model ma = { 0 }, mb = { 0 };
	struct state_buf s;
	uint64_t v = 2;

	da = make_on_bus(&mmio_a, &ha, &ma, &va, &pa);
	db = make_on_bus(&mmio_b, &hb, &mb, &vb, &pb);
	pci_cfg_write(pa, PCI_BASE_ADDRESS_0, 4, (uint32_t)BAR_AT);
	pci_cfg_write(pa, PCI_BASE_ADDRESS_0 + 4, 4, (uint32_t)(BAR_AT >> 32));
	pci_cfg_write(pa, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	ck_assert(bus_write(&mmio_a, BAR_AT + COMMON + 0x16, &v, 2)); /* queue_select 2 */
	virtio_queue_interrupt(va, 0);
	ck_assert(pci_cfg_read(pa, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	s = locked_save(da);
	check_patched_fails(db, &s, 12 + 12 + PCI_CFG_SIZE, 0); /* PCIF's INTx level */
	ck_assert(!bus_read(&mmio_b, BAR_AT + COMMON + 0x16, &v, 2));
	load_saves_same(db, &s);
	v = 0;
	ck_assert(bus_read(&mmio_b, BAR_AT + COMMON + 0x16, &v, 2));
	ck_assert_uint_eq(v, 2);
	ck_assert(pci_cfg_read(pb, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	ck_assert(bus_read(&mmio_b, BAR_AT + ISR, &v, 1));
	ck_assert_uint_eq(v, 1);
	ck_assert(!(pci_cfg_read(pb, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
	state_free(&s);
	da->ops->destroy(da);
	db->ops->destroy(db);
	ck_assert_int_eq(ma.destroys + mb.destroys, 2);
	ha->ops->destroy(ha);
	hb->ops->destroy(hb);
	ck_assert_int_eq(mmio_a.nr + mmio_b.nr, 0);
	bus_destroy(&mmio_a);
	bus_destroy(&mmio_b);
}
END_TEST

SUITE_MAIN("virtio_pci", "transport", setup, teardown, 0, create_failure_frees_model,
	   header_and_capabilities, features, status_and_reset, bad_queue_setup_needs_reset,
	   notify_fallback, isr_and_intx, msix_vectors, bus_master_gates_dma,
	   device_config_and_pci_cfg_window, register_fuzz, bar_moves_on_the_bus, state_transport,
	   state_bar_and_intx)
