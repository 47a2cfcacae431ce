/* virtio-pci, modern only (virtio v1.1 4.1): the PCI function a virtio device
 * model sits behind. Device ID 0x1040 + type, revision 1, VIRTIO_F_VERSION_1
 * required. One 64-bit memory BAR (BAR 0, not prefetchable) holds every
 * structure the capabilities point at, each in its own page:
 *
 *   0x0000 common configuration (4.1.4.3)   0x3000 notifications (4.1.4.4)
 *   0x1000 ISR status (4.1.4.5)             0x4000 MSI-X table
 *   0x2000 device configuration (4.1.4.6)   0x5000 MSI-X pending bits
 *
 * Kicks: queue q is notified at 0x3000 + 4 * q (notify_off_multiplier 4,
 * queue_notify_off = q); an ioeventfd per queue on that address signals the
 * queue's kick fd inside KVM. The MMIO handler signals the same fd when the
 * ioeventfd is not registered. Interrupts: MSI-X vector v is an MSI route
 * (GSI) with an irqfd; masked vectors collect pending bits. Without MSI-X the
 * function raises INTA# (level) while ISR is non-zero; reading ISR clears it.
 *
 * Locking: MMIO and config hooks run under the transport's device lock
 * (dev.lock). Interrupt state (ISR, INTx level, MSI-X table, pending bits,
 * vector numbers) is also under irq_lock, which the device model's threads
 * take through virtio_queue_interrupt() — they never take dev.lock, so a
 * reset may stop them while holding it. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kestrel/pci.h"
#include "kestrel/state.h"
#include "kestrel/virtio.h"
#include "kestrel/vm.h"

#define VPCI_BAR 0
#define VPCI_BAR_SIZE 0x8000
#define VPCI_COMMON_OFF 0x0000
#define VPCI_COMMON_LEN 0x38
#define VPCI_ISR_OFF 0x1000
#define VPCI_ISR_LEN 4
#define VPCI_DEVICE_OFF 0x2000
#define VPCI_NOTIFY_OFF 0x3000
#define VPCI_NOTIFY_MULT 4
#define VPCI_MSIX_TABLE_OFF 0x4000
#define VPCI_MSIX_PBA_OFF 0x5000
#define VPCI_PAGE 0x1000
#define VPCI_MAX_QUEUES 64
#define VPCI_MAX_VECTORS (VPCI_MAX_QUEUES + 1)

/* 4.1.4 virtio structure PCI capabilities. */
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5
#define VPCI_CAP_MSIX 0x40
#define VPCI_CAP_COMMON 0x4c
#define VPCI_CAP_NOTIFY 0x5c
#define VPCI_CAP_ISR 0x70
#define VPCI_CAP_DEVICE 0x80
#define VPCI_CAP_PCICFG 0x90
#define VPCI_CAP_LEN 16
#define VPCI_PCICFG_DATA (VPCI_CAP_PCICFG + 16)

/* PCI Local Bus 3.0 6.8.2: MSI-X capability and table entries. */
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASKALL 0x4000
#define MSIX_ENTRY_SIZE 16
#define MSIX_VECTOR_MASKED 1

/* 4.1.4.3 struct virtio_pci_common_cfg. */
#define CC_DFSELECT 0x00
#define CC_DF 0x04
#define CC_GFSELECT 0x08
#define CC_GF 0x0c
#define CC_MSIX_CONFIG 0x10
#define CC_NUM_QUEUES 0x12
#define CC_STATUS 0x14
#define CC_CONFIG_GEN 0x15
#define CC_Q_SELECT 0x16
#define CC_Q_SIZE 0x18
#define CC_Q_MSIX 0x1a
#define CC_Q_ENABLE 0x1c
#define CC_Q_NOTIFY_OFF 0x1e
#define CC_Q_DESC 0x20
#define CC_Q_DRIVER 0x28
#define CC_Q_DEVICE 0x30

#define ISR_QUEUE 1
#define ISR_CONFIG 2

/* Features every device gets from the transport. */
#define VPCI_TRANSPORT_FEATURES (VIRTIO_BIT(VIRTIO_F_VERSION_1) | \
				 VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX))

struct vpci_queue {
	uint16_t size;             /* what the driver chose (default: the maximum) */
	uint16_t vector;           /* MSI-X vector or VIRTIO_MSI_NO_VECTOR */
	bool enabled;
	uint64_t desc, driver, device;
	int kick_fd;
	unsigned ioeventfd_len;    /* 0: not registered, else len + 1 */
};

struct vpci_vector {
	uint32_t addr_lo, addr_hi, data, ctrl;
	uint32_t gsi;
	int irqfd;                 /* -1 without a VM */
	bool pending;
};

struct virtio_dev {
	struct device dev;
	struct pci_dev pdev;
	struct vm *vm;
	const struct guest_mem *gm;
	struct virtio_dev_info info;
	const struct virtio_dev_ops *ops;
	void *opaque;
	uint32_t intx_gsi;
	uint64_t bar_addr;         /* PCI_BAR_UNMAPPED or the BAR's base on the MMIO bus */
	uint64_t dev_features;

	/* common configuration, under dev.lock */
	uint32_t dfselect, gfselect;
	uint64_t driver_features;
	uint8_t status;
	bool started;
	bool quiesced;             /* the registry's quiesce: the model's threads are parked */
	uint16_t queue_select;
	struct vpci_queue *q;
	struct virtq *vq;

	/* interrupts, under irq_lock */
	pthread_mutex_t irq_lock;
	uint16_t config_vector;
	uint8_t isr;
	bool intx_level, intx_disabled, msix_enabled, msix_masked;
	bool dma_on;               /* PCI_COMMAND Bus Master Enable (always on off-bus) */
	unsigned nvec;
	struct vpci_vector *vec;

	atomic_uint config_generation;
	atomic_bool needs_reset;
};

static struct virtio_dev *to_vpci(struct device *dev)
{
	return (struct virtio_dev *)dev;
}

/* ---- interrupts (irq_lock held) ---- */

static void vpci_intx_update(struct virtio_dev *t)
{
	bool level = t->isr && !t->msix_enabled && !t->intx_disabled;

	if (level == t->intx_level)
		return;
	t->intx_level = level;
	if (t->vm)
		vm_irq_set(t->vm, t->intx_gsi, level);
}

static void vpci_msix_fire(struct virtio_dev *t, uint16_t v)
{
	if (v >= t->nvec)
		return;
	/* An MSI-X message is a memory write: held, like a masked one, while
	 * the function may not master the bus (PCI 3.0 6.8.3.1). */
	if (t->msix_masked || (t->vec[v].ctrl & MSIX_VECTOR_MASKED) || !t->dma_on) {
		t->vec[v].pending = true;
		return;
	}
	if (t->vec[v].irqfd >= 0 && eventfd_write(t->vec[v].irqfd, 1) < 0)
		kwarn("%s: irqfd write for vector %u failed", t->info.name, v);
}

static void vpci_raise(struct virtio_dev *t, uint8_t isr_bit, uint16_t vector)
{
	pthread_mutex_lock(&t->irq_lock);
	if (t->msix_enabled) {
		vpci_msix_fire(t, vector);
	} else {
		t->isr |= isr_bit;
		vpci_intx_update(t);
	}
	pthread_mutex_unlock(&t->irq_lock);
}

void virtio_queue_interrupt(struct virtio_dev *t, unsigned q)
{
	uint16_t vector;

	if (q >= t->info.num_queues)
		return;
	pthread_mutex_lock(&t->irq_lock);
	vector = t->q[q].vector;
	pthread_mutex_unlock(&t->irq_lock);
	vpci_raise(t, ISR_QUEUE, vector);
}

void virtio_config_changed(struct virtio_dev *t)
{
	uint16_t vector;

	atomic_fetch_add(&t->config_generation, 1);
	pthread_mutex_lock(&t->irq_lock);
	vector = t->config_vector;
	pthread_mutex_unlock(&t->irq_lock);
	vpci_raise(t, ISR_CONFIG, vector);
}

void virtio_set_needs_reset(struct virtio_dev *t, const char *why)
{
	if (atomic_exchange(&t->needs_reset, true))
		return;
	kwarn("%s: %s; DEVICE_NEEDS_RESET set", t->info.name, why);
	virtio_config_changed(t);
}

bool virtio_needs_reset(const struct virtio_dev *t)
{
	return atomic_load(&t->needs_reset);
}

/* Point vector v's MSI route at what the guest programmed (when usable). */
static void vpci_msix_route(struct virtio_dev *t, unsigned v)
{
	struct vpci_vector *e = &t->vec[v];

	if (!t->vm || (e->ctrl & MSIX_VECTOR_MASKED))
		return;
	if (vm_msi_route_set(t->vm, e->gsi, (uint64_t)e->addr_hi << 32 | e->addr_lo, e->data))
		kwarn("%s: cannot route MSI-X vector %u", t->info.name, v);
}

/* After a mask bit cleared: deliver what was held back (6.8.2.9). */
static void vpci_msix_flush(struct virtio_dev *t)
{
	for (unsigned v = 0; v < t->nvec; v++) {
		if (!t->vec[v].pending || t->msix_masked || (t->vec[v].ctrl & MSIX_VECTOR_MASKED) ||
		    !t->dma_on)
			continue;
		t->vec[v].pending = false;
		vpci_msix_fire(t, (uint16_t)v);
	}
}

/* ---- ioeventfd and BAR placement ---- */

static void vpci_ioeventfds(struct virtio_dev *t, bool assign)
{
	for (unsigned q = 0; q < t->info.num_queues && t->vm; q++) {
		struct vpci_queue *vq = &t->q[q];
		uint64_t addr = t->bar_addr + VPCI_NOTIFY_OFF + (uint64_t)VPCI_NOTIFY_MULT * q;

		if (!assign) {
			if (vq->ioeventfd_len &&
			    vm_ioeventfd(t->vm, addr, vq->ioeventfd_len - 1, false, vq->kick_fd, false))
				kwarn("%s: cannot remove the ioeventfd of queue %u", t->info.name, q);
			vq->ioeventfd_len = 0;
			continue;
		}
		/* Any length first (KVM_CAP_IOEVENTFD_ANY_LENGTH), else the 16-bit
		 * write drivers use (4.1.4.4: "writes a 16-bit queue index"). */
		if (vm_ioeventfd(t->vm, addr, 0, false, vq->kick_fd, true) == 0)
			vq->ioeventfd_len = 1;
		else if (vm_ioeventfd(t->vm, addr, 2, false, vq->kick_fd, true) == 0)
			vq->ioeventfd_len = 3;
		else
			kwarn("%s: no ioeventfd for queue %u: kicks exit to user space", t->info.name, q);
	}
}

/* BAR 0 now decodes at now (or nowhere): move the MMIO range and the
 * ioeventfds. dev.lock held. */
static void vpci_bar_move(struct virtio_dev *t, uint64_t now)
{
	int ret;

	if (t->bar_addr != PCI_BAR_UNMAPPED) {
		vpci_ioeventfds(t, false);
		if (t->vm)
			bus_remove(&t->vm->mmio, t->bar_addr);
		t->bar_addr = PCI_BAR_UNMAPPED;
	}
	if (now != PCI_BAR_UNMAPPED && t->vm) {
		ret = bus_insert(&t->vm->mmio, now, VPCI_BAR_SIZE, &t->dev, 0);
		if (ret) {
			kwarn("%s: BAR at %#llx overlaps another device; not decoded", t->info.name,
			      (unsigned long long)now);
		} else {
			t->bar_addr = now;
			vpci_ioeventfds(t, true);
		}
	} else if (now != PCI_BAR_UNMAPPED) {
		t->bar_addr = now;
	}
}

static void vpci_bar_remap(struct pci_dev *pdev, int bar, uint64_t old, uint64_t now)
{
	struct virtio_dev *t = pdev->opaque;

	if (bar != VPCI_BAR)
		return;
	pthread_mutex_lock(&t->dev.lock);
	vpci_bar_move(t, now);
	pthread_mutex_unlock(&t->dev.lock);
}

/* ---- device status, features, reset (dev.lock held) ---- */

static void vpci_stop(struct virtio_dev *t)
{
	if (t->started && t->ops->stop)
		t->ops->stop(t->opaque);
	t->started = false;
}

static void vpci_drain_kicks(struct virtio_dev *t)
{
	eventfd_t v;

	for (unsigned q = 0; q < t->info.num_queues; q++)
		while (eventfd_read(t->q[q].kick_fd, &v) == 0)
			;
}

/* 2.1.1 / 4.1.4.3.1: writing 0 to device_status resets the device. */
static void vpci_reset(struct virtio_dev *t)
{
	vpci_stop(t);
	for (unsigned q = 0; q < t->info.num_queues; q++) {
		struct vpci_queue *vq = &t->q[q];

		vq_reset(&t->vq[q]);
		vq->size = t->info.queue_size;
		vq->enabled = false;
		vq->desc = vq->driver = vq->device = 0;
	}
	vpci_drain_kicks(t);
	t->dfselect = t->gfselect = 0;
	t->driver_features = 0;
	t->status = 0;
	t->queue_select = 0;
	atomic_store(&t->needs_reset, false);
	pthread_mutex_lock(&t->irq_lock);
	t->config_vector = VIRTIO_MSI_NO_VECTOR;
	for (unsigned q = 0; q < t->info.num_queues; q++)
		t->q[q].vector = VIRTIO_MSI_NO_VECTOR;
	for (unsigned v = 0; v < t->nvec; v++)
		t->vec[v].pending = false;
	t->isr = 0;
	vpci_intx_update(t);
	pthread_mutex_unlock(&t->irq_lock);
}

/* 3.1.1 step 5: accept FEATURES_OK only for a subset of ours with VERSION_1
 * (this transport has no legacy interface). */
static bool vpci_features_ok(const struct virtio_dev *t)
{
	if (t->driver_features & ~t->dev_features)
		return false;
	return t->driver_features & VIRTIO_BIT(VIRTIO_F_VERSION_1);
}

static void vpci_driver_ok(struct virtio_dev *t)
{
	int ret;

	if (!(t->status & VIRTIO_STATUS_FEATURES_OK)) {
		virtio_set_needs_reset(t, "DRIVER_OK before FEATURES_OK");
		return;
	}
	t->started = true;
	ret = t->ops->start ? t->ops->start(t->opaque, t->driver_features) : 0;
	if (ret) {
		t->started = false;
		virtio_set_needs_reset(t, "the device could not start");
	}
}

static void vpci_status_write(struct virtio_dev *t, uint8_t val)
{
	uint8_t added;

	if (val == 0) {
		vpci_reset(t);
		return;
	}
	val &= (uint8_t)~VIRTIO_STATUS_DEVICE_NEEDS_RESET;  /* the device's bit */
	added = val & (uint8_t)~t->status;
	if ((added & VIRTIO_STATUS_FEATURES_OK) && !vpci_features_ok(t))
		val &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;    /* 3.1.1 step 6: driver re-reads */
	t->status = val;
	if ((added & VIRTIO_STATUS_DRIVER_OK) && !t->started)
		vpci_driver_ok(t);
	if ((added & VIRTIO_STATUS_FAILED))
		vpci_stop(t);
}

/* ---- common configuration ---- */

static void vpci_queue_enable(struct virtio_dev *t, unsigned q)
{
	struct vpci_queue *vq = &t->q[q];
	uint16_t size = vq->size;

	if (vq->enabled)
		return;
	if (!(t->status & VIRTIO_STATUS_FEATURES_OK)) {
		virtio_set_needs_reset(t, "queue enabled before FEATURES_OK");
		return;
	}
	if (!t->gm || size > t->info.queue_size ||
	    vq_init(&t->vq[q], t->gm, size, vq->desc, vq->driver, vq->device,
		    t->driver_features)) {
		virtio_set_needs_reset(t, "queue enabled with an invalid size or ring address");
		return;
	}
	vq->enabled = true;
}

static struct vpci_queue *vpci_selected(struct virtio_dev *t)
{
	return t->queue_select < t->info.num_queues ? &t->q[t->queue_select] : NULL;
}

/* A vector number the driver may use, else NO_VECTOR (4.1.5.1.2: reading it
 * back tells the driver the device refused). */
static uint16_t vpci_vector_ok(const struct virtio_dev *t, uint64_t v)
{
	return v < t->nvec ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

static uint64_t vpci_common_get(struct virtio_dev *t, unsigned field)
{
	struct vpci_queue *q = vpci_selected(t);

	switch (field) {
	case CC_DFSELECT: return t->dfselect;
	case CC_DF: return t->dfselect < 2 ? (uint32_t)(t->dev_features >> (32 * t->dfselect)) : 0;
	case CC_GFSELECT: return t->gfselect;
	case CC_GF: return t->gfselect < 2 ? (uint32_t)(t->driver_features >> (32 * t->gfselect)) : 0;
	case CC_MSIX_CONFIG: return t->config_vector;
	case CC_NUM_QUEUES: return t->info.num_queues;
	case CC_STATUS:
		return t->status | (atomic_load(&t->needs_reset) ? VIRTIO_STATUS_DEVICE_NEEDS_RESET : 0);
	case CC_CONFIG_GEN: return (uint8_t)atomic_load(&t->config_generation);
	case CC_Q_SELECT: return t->queue_select;
	case CC_Q_SIZE: return q ? q->size : 0;
	case CC_Q_MSIX: return q ? q->vector : VIRTIO_MSI_NO_VECTOR;
	case CC_Q_ENABLE: return q ? q->enabled : 0;
	case CC_Q_NOTIFY_OFF: return q ? t->queue_select : 0;
	case CC_Q_DESC: return q ? q->desc : 0;
	case CC_Q_DRIVER: return q ? q->driver : 0;
	case CC_Q_DEVICE: return q ? q->device : 0;
	}
	return 0;
}

static void vpci_driver_features_set(struct virtio_dev *t, uint32_t val)
{
	unsigned shift = 32 * t->gfselect;

	/* 3.1.1: features are fixed once FEATURES_OK is set. */
	if (t->gfselect >= 2 || (t->status & VIRTIO_STATUS_FEATURES_OK))
		return;
	t->driver_features = (t->driver_features & ~(0xffffffffULL << shift)) | (uint64_t)val << shift;
}

static void vpci_queue_field_set(struct virtio_dev *t, struct vpci_queue *q, unsigned field,
				 uint64_t val)
{
	if (field == CC_Q_MSIX) {
		pthread_mutex_lock(&t->irq_lock);
		q->vector = vpci_vector_ok(t, val);
		pthread_mutex_unlock(&t->irq_lock);
		return;
	}
	if (field == CC_Q_ENABLE) {
		/* 4.1.4.3.2: the driver never writes 0 here; only 1 means anything. */
		if (val == 1)
			vpci_queue_enable(t, t->queue_select);
		return;
	}
	if (q->enabled)
		return;   /* 4.1.4.3.2: no changes to a live queue's layout */
	switch (field) {
	case CC_Q_SIZE: q->size = (uint16_t)val; break;
	case CC_Q_DESC: q->desc = val; break;
	case CC_Q_DRIVER: q->driver = val; break;
	case CC_Q_DEVICE: q->device = val; break;
	}
}

static void vpci_common_set(struct virtio_dev *t, unsigned field, uint64_t val)
{
	struct vpci_queue *q = vpci_selected(t);

	switch (field) {
	case CC_DFSELECT: t->dfselect = (uint32_t)val; return;
	case CC_GFSELECT: t->gfselect = (uint32_t)val; return;
	case CC_GF: vpci_driver_features_set(t, (uint32_t)val); return;
	case CC_MSIX_CONFIG:
		pthread_mutex_lock(&t->irq_lock);
		t->config_vector = vpci_vector_ok(t, val);
		pthread_mutex_unlock(&t->irq_lock);
		return;
	case CC_STATUS: vpci_status_write(t, (uint8_t)val); return;
	case CC_Q_SELECT: t->queue_select = (uint16_t)val; return;
	case CC_Q_SIZE: case CC_Q_MSIX: case CC_Q_ENABLE:
	case CC_Q_DESC: case CC_Q_DRIVER: case CC_Q_DEVICE:
		if (q)
			vpci_queue_field_set(t, q, field, val);
		return;
	}
	/* device_feature, num_queues, config_generation, queue_notify_off: read-only */
}

static const struct { uint8_t off, width; } vpci_common_fields[] = {
	{ CC_DFSELECT, 4 }, { CC_DF, 4 }, { CC_GFSELECT, 4 }, { CC_GF, 4 },
	{ CC_MSIX_CONFIG, 2 }, { CC_NUM_QUEUES, 2 }, { CC_STATUS, 1 }, { CC_CONFIG_GEN, 1 },
	{ CC_Q_SELECT, 2 }, { CC_Q_SIZE, 2 }, { CC_Q_MSIX, 2 }, { CC_Q_ENABLE, 2 },
	{ CC_Q_NOTIFY_OFF, 2 }, { CC_Q_DESC, 8 }, { CC_Q_DRIVER, 8 }, { CC_Q_DEVICE, 8 },
};

/* Byte lanes: the bytes of field [foff, foff+w) an access [off, off+size) sees. */
static bool vpci_lanes(uint64_t off, unsigned size, unsigned foff, unsigned w, unsigned *lo,
		       unsigned *hi)
{
	uint64_t a = MAX(off, (uint64_t)foff), b = MIN(off + size, (uint64_t)foff + w);

	if (a >= b)
		return false;
	*lo = (unsigned)a;
	*hi = (unsigned)b;
	return true;
}

static uint64_t vpci_common_read(struct virtio_dev *t, uint64_t off, unsigned size)
{
	uint64_t v = 0;
	unsigned lo, hi;

	for (size_t i = 0; i < ARRAY_SIZE(vpci_common_fields); i++) {
		unsigned foff = vpci_common_fields[i].off, w = vpci_common_fields[i].width;
		uint64_t fv;

		if (!vpci_lanes(off, size, foff, w, &lo, &hi))
			continue;
		fv = vpci_common_get(t, foff);
		for (unsigned a = lo; a < hi; a++)
			v |= ((fv >> (8 * (a - foff))) & 0xff) << (8 * (a - off));
	}
	return v;
}

/* A field written in part (a 64-bit address as two 32-bit halves) keeps its
 * other bytes. */
static void vpci_common_write(struct virtio_dev *t, uint64_t off, unsigned size, uint64_t val)
{
	unsigned lo, hi;

	for (size_t i = 0; i < ARRAY_SIZE(vpci_common_fields); i++) {
		unsigned foff = vpci_common_fields[i].off, w = vpci_common_fields[i].width;
		uint64_t fv;

		if (!vpci_lanes(off, size, foff, w, &lo, &hi))
			continue;
		fv = vpci_common_get(t, foff);
		for (unsigned a = lo; a < hi; a++) {
			uint64_t shift = 8 * (a - foff);

			fv = (fv & ~(0xffULL << shift)) | (((val >> (8 * (a - off))) & 0xff) << shift);
		}
		vpci_common_set(t, foff, fv);
	}
}

/* ---- MSI-X table and PBA ---- */

static uint32_t vpci_msix_dword(struct virtio_dev *t, unsigned v, unsigned dw)
{
	const struct vpci_vector *e = &t->vec[v];

	switch (dw) {
	case 0: return e->addr_lo;
	case 1: return e->addr_hi;
	case 2: return e->data;
	default: return e->ctrl;
	}
}

static void vpci_msix_dword_write(struct virtio_dev *t, unsigned v, unsigned dw, uint32_t val)
{
	struct vpci_vector *e = &t->vec[v];
	bool was_masked = e->ctrl & MSIX_VECTOR_MASKED;

	switch (dw) {
	case 0: e->addr_lo = val & ~3u; break;   /* dword aligned */
	case 1: e->addr_hi = val; break;
	case 2: e->data = val; break;
	default: e->ctrl = val & MSIX_VECTOR_MASKED; break;
	}
	if (!(e->ctrl & MSIX_VECTOR_MASKED) && (dw != 3 || was_masked)) {
		vpci_msix_route(t, v);
		vpci_msix_flush(t);
	}
}

/* Accesses are dwords or qwords (6.8.2); others read 0 and write nothing. */
static uint64_t vpci_msix_read(struct virtio_dev *t, uint64_t off, unsigned size)
{
	unsigned v = (unsigned)(off / MSIX_ENTRY_SIZE), dw = (unsigned)(off % MSIX_ENTRY_SIZE) / 4;
	uint64_t val;

	if ((size != 4 && size != 8) || off % size || v >= t->nvec)
		return 0;
	pthread_mutex_lock(&t->irq_lock);
	val = vpci_msix_dword(t, v, dw);
	if (size == 8)
		val |= (uint64_t)vpci_msix_dword(t, v, dw + 1) << 32;
	pthread_mutex_unlock(&t->irq_lock);
	return val;
}

static void vpci_msix_write(struct virtio_dev *t, uint64_t off, unsigned size, uint64_t val)
{
	unsigned v = (unsigned)(off / MSIX_ENTRY_SIZE), dw = (unsigned)(off % MSIX_ENTRY_SIZE) / 4;

	if ((size != 4 && size != 8) || off % size || v >= t->nvec)
		return;
	pthread_mutex_lock(&t->irq_lock);
	vpci_msix_dword_write(t, v, dw, (uint32_t)val);
	if (size == 8)
		vpci_msix_dword_write(t, v, dw + 1, (uint32_t)(val >> 32));
	pthread_mutex_unlock(&t->irq_lock);
}

static uint64_t vpci_pba_read(struct virtio_dev *t, uint64_t off, unsigned size)
{
	uint64_t v = 0;

	pthread_mutex_lock(&t->irq_lock);
	for (unsigned i = 0; i < 8 * size; i++) {
		uint64_t bit = off * 8 + i;

		if (bit < t->nvec && t->vec[bit].pending)
			v |= 1ULL << i;
	}
	pthread_mutex_unlock(&t->irq_lock);
	return v;
}

/* ---- the BAR ---- */

static uint8_t vpci_isr_read(struct virtio_dev *t)
{
	uint8_t v;

	pthread_mutex_lock(&t->irq_lock);
	v = t->isr;
	t->isr = 0;          /* 4.1.4.5: reading clears, and deasserts INTx */
	vpci_intx_update(t);
	pthread_mutex_unlock(&t->irq_lock);
	return v;
}

static uint64_t vpci_cfg_region_read(struct virtio_dev *t, uint64_t off, unsigned size)
{
	uint64_t v;

	if (off >= t->info.cfg_size || size > t->info.cfg_size - off || !t->ops->cfg_read)
		return 0;
	v = t->ops->cfg_read(t->opaque, (unsigned)off, size);
	return size >= 8 ? v : v & ((1ULL << (8 * size)) - 1);
}

static uint64_t vpci_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	struct virtio_dev *t = to_vpci(dev);
	uint64_t page = off & ~(uint64_t)(VPCI_PAGE - 1), in = off & (VPCI_PAGE - 1);

	if (in + size > VPCI_PAGE)
		return 0;   /* no access straddles two structures */
	switch (page) {
	case VPCI_COMMON_OFF: return in < VPCI_COMMON_LEN ? vpci_common_read(t, in, size) : 0;
	case VPCI_ISR_OFF: return in == 0 ? vpci_isr_read(t) : 0;
	case VPCI_DEVICE_OFF: return vpci_cfg_region_read(t, in, size);
	case VPCI_MSIX_TABLE_OFF: return vpci_msix_read(t, in, size);
	case VPCI_MSIX_PBA_OFF: return vpci_pba_read(t, in, size);
	}
	return 0;
}

/* A kick that reached user space: ioeventfd not registered (or a write of
 * another width than the one registered). Same effect as the in-kernel path. */
static void vpci_notify_write(struct virtio_dev *t, uint64_t in)
{
	uint64_t q = in / VPCI_NOTIFY_MULT;

	if (in % VPCI_NOTIFY_MULT == 0 && q < t->info.num_queues)
		eventfd_write(t->q[q].kick_fd, 1);
}

static void vpci_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct virtio_dev *t = to_vpci(dev);
	uint64_t page = off & ~(uint64_t)(VPCI_PAGE - 1), in = off & (VPCI_PAGE - 1);

	if (in + size > VPCI_PAGE)
		return;
	switch (page) {
	case VPCI_COMMON_OFF:
		if (in < VPCI_COMMON_LEN)
			vpci_common_write(t, in, size, val);
		return;
	case VPCI_DEVICE_OFF:
		if (in < t->info.cfg_size && size <= t->info.cfg_size - in && t->ops->cfg_write)
			t->ops->cfg_write(t->opaque, (unsigned)in, size, val);
		return;
	case VPCI_NOTIFY_OFF: vpci_notify_write(t, in); return;
	case VPCI_MSIX_TABLE_OFF: vpci_msix_write(t, in, size, val); return;
	}
}

/* ---- PCI configuration space hooks (PCI host lock held) ---- */

/* 4.1.4.7.1: the VIRTIO_PCI_CAP_PCI_CFG window reaches the BAR through
 * configuration cycles; bar, offset and length are the driver's to set. */
static bool vpci_pcicfg_target(struct virtio_dev *t, uint64_t *off, unsigned *len)
{
	struct pci_dev *p = &t->pdev;

	*off = pci_get_u32(p, VPCI_CAP_PCICFG + 8);
	*len = pci_get_u32(p, VPCI_CAP_PCICFG + 12);
	if (p->cfg[VPCI_CAP_PCICFG + 4] != VPCI_BAR || (*len != 1 && *len != 2 && *len != 4))
		return false;
	return *off % *len == 0 && *off + *len <= VPCI_BAR_SIZE;
}

static uint32_t vpci_cfg_read(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val)
{
	struct virtio_dev *t = pdev->opaque;
	uint64_t boff;
	unsigned len;

	if (off <= PCI_STATUS && off + size > PCI_STATUS) {
		pthread_mutex_lock(&t->irq_lock);
		if (t->isr && !t->msix_enabled)
			val |= (uint32_t)PCI_STATUS_INTERRUPT << (8 * (PCI_STATUS - off));
		pthread_mutex_unlock(&t->irq_lock);
	}
	if (off == VPCI_PCICFG_DATA && vpci_pcicfg_target(t, &boff, &len)) {
		pthread_mutex_lock(&t->dev.lock);
		val = (uint32_t)vpci_read(&t->dev, 0, boff, len);
		pthread_mutex_unlock(&t->dev.lock);
	}
	return val;
}

/* Bus Master Enable gates the device's use of guest memory: new chains are
 * not taken and MSI-X messages are held while it is clear. Requests already
 * taken complete. When it comes back the queues are kicked so the device
 * looks at what the driver queued meanwhile. irq_lock held. */
static bool vpci_bus_master(struct virtio_dev *t, bool on)
{
	if (on == t->dma_on)
		return false;
	t->dma_on = on;
	for (unsigned q = 0; q < t->info.num_queues; q++)
		vq_set_dma(&t->vq[q], on);
	return on;
}

static void vpci_wake_queues(struct virtio_dev *t)
{
	for (unsigned q = 0; q < t->info.num_queues; q++)
		if (eventfd_write(t->q[q].kick_fd, 1) < 0)
			kwarn("%s: cannot wake queue %u", t->info.name, q);
}

static void vpci_cfg_write(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val)
{
	struct virtio_dev *t = pdev->opaque;
	uint16_t ctrl = pci_get_u16(pdev, VPCI_CAP_MSIX + 2);
	uint16_t cmd = pci_get_u16(pdev, PCI_COMMAND);
	bool enable = ctrl & MSIX_CTRL_ENABLE, masked = ctrl & MSIX_CTRL_MASKALL, woke;
	uint64_t boff;
	unsigned len;

	pthread_mutex_lock(&t->irq_lock);
	t->intx_disabled = cmd & PCI_COMMAND_INTX_DISABLE;
	woke = vpci_bus_master(t, cmd & PCI_COMMAND_MASTER);
	if (woke && t->msix_enabled)
		vpci_msix_flush(t);
	if (enable && !t->msix_enabled)
		for (unsigned v = 0; v < t->nvec; v++)
			vpci_msix_route(t, v);
	if (enable != t->msix_enabled || masked != t->msix_masked) {
		t->msix_enabled = enable;
		t->msix_masked = masked;
		if (enable)
			vpci_msix_flush(t);
	}
	vpci_intx_update(t);
	pthread_mutex_unlock(&t->irq_lock);
	if (woke)
		vpci_wake_queues(t);
	if (off == VPCI_PCICFG_DATA && vpci_pcicfg_target(t, &boff, &len)) {
		pthread_mutex_lock(&t->dev.lock);
		vpci_write(&t->dev, 0, boff, len, val);
		pthread_mutex_unlock(&t->dev.lock);
	}
}

static const struct pci_dev_ops vpci_pci_ops = {
	.cfg_read = vpci_cfg_read,
	.cfg_write = vpci_cfg_write,
	.bar_remap = vpci_bar_remap,
};

/* 4.1.4 struct virtio_pci_cap at off, chained to next. */
static void vpci_cap(struct pci_dev *p, unsigned off, unsigned next, unsigned len, uint8_t type,
		     uint32_t boff, uint32_t blen)
{
	pci_set_u8(p, off, PCI_CAP_ID_VNDR);
	pci_set_u8(p, off + 1, (uint8_t)next);
	pci_set_u8(p, off + 2, (uint8_t)len);
	pci_set_u8(p, off + 3, type);
	pci_set_u8(p, off + 4, VPCI_BAR);
	pci_set_u32(p, off + 8, boff);
	pci_set_u32(p, off + 12, blen);
}

static void vpci_build_caps(struct virtio_dev *t)
{
	struct pci_dev *p = &t->pdev;

	pci_set_u16(p, PCI_STATUS, pci_get_u16(p, PCI_STATUS) | PCI_STATUS_CAP_LIST);
	pci_set_u8(p, PCI_CAPABILITY_LIST, VPCI_CAP_MSIX);
	pci_set_u8(p, VPCI_CAP_MSIX, PCI_CAP_ID_MSIX);
	pci_set_u8(p, VPCI_CAP_MSIX + 1, VPCI_CAP_COMMON);
	pci_set_u16(p, VPCI_CAP_MSIX + 2, (uint16_t)(t->nvec - 1));
	p->wmask[VPCI_CAP_MSIX + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
	pci_set_u32(p, VPCI_CAP_MSIX + 4, VPCI_MSIX_TABLE_OFF | VPCI_BAR);
	pci_set_u32(p, VPCI_CAP_MSIX + 8, VPCI_MSIX_PBA_OFF | VPCI_BAR);

	vpci_cap(p, VPCI_CAP_COMMON, VPCI_CAP_NOTIFY, VPCI_CAP_LEN, VIRTIO_PCI_CAP_COMMON_CFG,
		 VPCI_COMMON_OFF, VPCI_COMMON_LEN);
	vpci_cap(p, VPCI_CAP_NOTIFY, VPCI_CAP_ISR, VPCI_CAP_LEN + 4, VIRTIO_PCI_CAP_NOTIFY_CFG,
		 VPCI_NOTIFY_OFF, VPCI_NOTIFY_MULT * t->info.num_queues);
	pci_set_u32(p, VPCI_CAP_NOTIFY + 16, VPCI_NOTIFY_MULT);
	vpci_cap(p, VPCI_CAP_ISR, VPCI_CAP_DEVICE, VPCI_CAP_LEN, VIRTIO_PCI_CAP_ISR_CFG,
		 VPCI_ISR_OFF, VPCI_ISR_LEN);
	vpci_cap(p, VPCI_CAP_DEVICE, VPCI_CAP_PCICFG, VPCI_CAP_LEN, VIRTIO_PCI_CAP_DEVICE_CFG,
		 VPCI_DEVICE_OFF, MAX(t->info.cfg_size, 1u));
	vpci_cap(p, VPCI_CAP_PCICFG, 0, VPCI_CAP_LEN + 4, VIRTIO_PCI_CAP_PCI_CFG, 0, 0);
	/* bar, offset, length and data of the window are the driver's. */
	p->wmask[VPCI_CAP_PCICFG + 4] = 0xff;
	memset(&p->wmask[VPCI_CAP_PCICFG + 8], 0xff, 12);
}

/* ---- MSI-X state: table, pending bits, enable and function mask ----
 * A pair that knows only the vector table, so that it moves with the MSI-X
 * code to the PCI core. Section {MSIX, 1}: u16 vectors, u8 flags (bit 0
 * enable, bit 1 function mask), per vector u32 address low/high, data,
 * vector control, then the pending bits, one per vector, LSB first. */
#define VPCI_MSIX_STATE_ID 0x4d534958 /* "MSIX" */
#define VPCI_MSIX_STATE_VERSION 1
#define VPCI_MSIX_F_ENABLE 1
#define VPCI_MSIX_F_MASKALL 2

struct vpci_msix_state {
	bool enable, maskall;
	struct vpci_vector v[VPCI_MAX_VECTORS];   /* addresses, data, ctrl, pending */
};

static void vpci_msix_save(struct virtio_dev *t, struct state_buf *out)
{
	size_t mark = state_section_begin(out, VPCI_MSIX_STATE_ID, VPCI_MSIX_STATE_VERSION);
	uint8_t bits = 0;

	pthread_mutex_lock(&t->irq_lock);
	state_put_u16(out, (uint16_t)t->nvec);
	state_put_u8(out, (t->msix_enabled ? VPCI_MSIX_F_ENABLE : 0) |
			  (t->msix_masked ? VPCI_MSIX_F_MASKALL : 0));
	for (unsigned v = 0; v < t->nvec; v++) {
		state_put_u32(out, t->vec[v].addr_lo);
		state_put_u32(out, t->vec[v].addr_hi);
		state_put_u32(out, t->vec[v].data);
		state_put_u32(out, t->vec[v].ctrl);
	}
	for (unsigned v = 0; v < t->nvec; v++) {
		bits |= (uint8_t)(t->vec[v].pending << (v % 8));
		if (v % 8 == 7 || v == t->nvec - 1) {
			state_put_u8(out, bits);
			bits = 0;
		}
	}
	pthread_mutex_unlock(&t->irq_lock);
	state_section_end(out, mark);
}

/* Into ms, checked: the same vector count, bits only where the table has
 * them (6.8.2: address dword aligned, only the mask bit in vector control). */
static int vpci_msix_parse(const struct virtio_dev *t, struct state_buf *in,
			   struct vpci_msix_state *ms)
{
	size_t end;
	uint8_t flags, bits = 0;

	if (state_section_open(in, VPCI_MSIX_STATE_ID, VPCI_MSIX_STATE_VERSION) < 0)
		return -EINVAL;
	end = state_section_body_end(in);
	if (state_get_u16(in) != t->nvec)
		return -EINVAL;
	flags = state_get_u8(in);
	ms->enable = flags & VPCI_MSIX_F_ENABLE;
	ms->maskall = flags & VPCI_MSIX_F_MASKALL;
	for (unsigned v = 0; v < t->nvec; v++) {
		struct vpci_vector *e = &ms->v[v];

		e->addr_lo = state_get_u32(in);
		e->addr_hi = state_get_u32(in);
		e->data = state_get_u32(in);
		e->ctrl = state_get_u32(in);
		if ((e->addr_lo & 3) || (e->ctrl & ~(uint32_t)MSIX_VECTOR_MASKED))
			return -EINVAL;
	}
	for (unsigned v = 0; v < t->nvec; v++) {
		if (v % 8 == 0)
			bits = state_get_u8(in);
		ms->v[v].pending = bits & 1;
		bits >>= 1;
	}
	if (flags & ~(VPCI_MSIX_F_ENABLE | VPCI_MSIX_F_MASKALL) || bits ||
	    !state_section_done(in, end))
		return -EINVAL;
	return 0;
}

/* irq_lock held. Routes follow the table; what is pending stays pending
 * until a mask bit clears, as it would have. */
static void vpci_msix_commit(struct virtio_dev *t, const struct vpci_msix_state *ms)
{
	t->msix_enabled = ms->enable;
	t->msix_masked = ms->maskall;
	for (unsigned v = 0; v < t->nvec; v++) {
		struct vpci_vector *e = &t->vec[v];

		e->addr_lo = ms->v[v].addr_lo;
		e->addr_hi = ms->v[v].addr_hi;
		e->data = ms->v[v].data;
		e->ctrl = ms->v[v].ctrl;
		e->pending = ms->v[v].pending;
		if (t->msix_enabled)
			vpci_msix_route(t, v);
	}
}

/* ---- transport state: quiesce, resume, save, load ----
 * Section {VPCI, 1}: the identity (device id, queue count, device features,
 * largest queue size), the PCI function (pci_dev_save: config space, so
 * COMMAND's Bus Master Enable and the MSI-X control word), the common
 * configuration, each queue's layout and position (struct virtq_state), the
 * MSI-X section, then the device model's own section. A queue is saved
 * only at rest: every chain taken from it has been returned (quiesce), so
 * last_avail == used idx for each live queue and nothing is in flight. */
#define VPCI_STATE_ID 0x56504349 /* "VPCI" */
#define VPCI_STATE_VERSION 1
#define VPCI_SF_STARTED 1
#define VPCI_SF_NEEDS_RESET 2
#define VPCI_QF_ENABLED 1
#define VPCI_QF_SIGNALLED_VALID 2
#define VPCI_QF_BROKEN 4
#define VPCI_STATUS_BITS (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | \
			  VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED)

struct vpci_saved {
	struct pci_dev pdev;
	uint32_t dfselect, gfselect, config_generation;
	uint64_t driver_features;
	uint8_t status, flags, isr;
	uint16_t queue_select, config_vector;
	struct vpci_queue q[VPCI_MAX_QUEUES];
	struct virtq_state qs[VPCI_MAX_QUEUES];
	struct vpci_msix_state msix;
};

static void vpci_quiesce(struct device *dev)
{
	struct virtio_dev *t = to_vpci(dev);

	pthread_mutex_lock(&t->dev.lock);
	if (!t->quiesced && t->started && t->ops->quiesce)
		t->ops->quiesce(t->opaque);
	t->quiesced = true;
	pthread_mutex_unlock(&t->dev.lock);
}

static int vpci_resume(struct device *dev)
{
	struct virtio_dev *t = to_vpci(dev);
	int ret = 0;

	pthread_mutex_lock(&t->dev.lock);
	if (t->quiesced && t->started && t->ops->resume)
		ret = t->ops->resume(t->opaque);
	t->quiesced = false;
	if (ret) {
		t->started = false;
		virtio_set_needs_reset(t, "the device could not resume");
	}
	pthread_mutex_unlock(&t->dev.lock);
	return ret;
}

static void vpci_save_queue(struct virtio_dev *t, unsigned q, struct state_buf *out)
{
	const struct vpci_queue *vq = &t->q[q];
	struct virtq_state st;

	vq_state_get(&t->vq[q], &st);
	state_put_u16(out, vq->size);
	state_put_u16(out, vq->vector);
	state_put_u64(out, vq->desc);
	state_put_u64(out, vq->driver);
	state_put_u64(out, vq->device);
	state_put_u16(out, st.last_avail);
	state_put_u16(out, st.used_idx);
	state_put_u16(out, st.signalled_used);
	state_put_u8(out, (vq->enabled ? VPCI_QF_ENABLED : 0) |
			  (st.signalled_valid ? VPCI_QF_SIGNALLED_VALID : 0) |
			  (st.broken ? VPCI_QF_BROKEN : 0));
}

/* dev.lock held (the registry). */
static int vpci_save(struct device *dev, struct state_buf *out)
{
	struct virtio_dev *t = to_vpci(dev);
	size_t mark;
	int ret;

	if (t->started && !t->quiesced)
		return -EBUSY;
	mark = state_section_begin(out, VPCI_STATE_ID, VPCI_STATE_VERSION);
	state_put_u16(out, t->info.device_id);
	state_put_u16(out, (uint16_t)t->info.num_queues);
	state_put_u64(out, t->dev_features);
	state_put_u16(out, t->info.queue_size);
	ret = pci_dev_save(&t->pdev, out);
	state_put_u32(out, t->dfselect);
	state_put_u32(out, t->gfselect);
	state_put_u64(out, t->driver_features);
	state_put_u8(out, t->status);
	state_put_u8(out, (t->started ? VPCI_SF_STARTED : 0) |
			  (atomic_load(&t->needs_reset) ? VPCI_SF_NEEDS_RESET : 0));
	state_put_u16(out, t->queue_select);
	state_put_u32(out, atomic_load(&t->config_generation));
	pthread_mutex_lock(&t->irq_lock);
	state_put_u16(out, t->config_vector);
	state_put_u8(out, t->isr);
	pthread_mutex_unlock(&t->irq_lock);
	for (unsigned q = 0; q < t->info.num_queues; q++)
		vpci_save_queue(t, q, out);
	vpci_msix_save(t, out);
	if (!ret && t->ops->save)
		ret = t->ops->save(t->opaque, out);
	state_section_end(out, mark);
	return ret ? ret : out->error ? -ENOMEM : 0;
}

static bool vpci_vector_valid(const struct virtio_dev *t, uint16_t v)
{
	return v < t->nvec || v == VIRTIO_MSI_NO_VECTOR;
}

/* One queue, checked as the driver's programming would be (vq_init's
 * checks on the rings of a live queue), and at rest. */
static int vpci_parse_queue(const struct virtio_dev *t, const struct vpci_saved *sv, unsigned q,
			    struct state_buf *in, struct vpci_queue *vq, struct virtq_state *st)
{
	uint8_t f;

	vq->size = state_get_u16(in);
	vq->vector = state_get_u16(in);
	vq->desc = state_get_u64(in);
	vq->driver = state_get_u64(in);
	vq->device = state_get_u64(in);
	st->last_avail = state_get_u16(in);
	st->used_idx = state_get_u16(in);
	st->signalled_used = state_get_u16(in);
	f = state_get_u8(in);
	vq->enabled = f & VPCI_QF_ENABLED;
	st->signalled_valid = f & VPCI_QF_SIGNALLED_VALID;
	st->broken = f & VPCI_QF_BROKEN;
	vq->kick_fd = t->q[q].kick_fd;
	vq->ioeventfd_len = t->q[q].ioeventfd_len;
	if (in->error || f & ~(VPCI_QF_ENABLED | VPCI_QF_SIGNALLED_VALID | VPCI_QF_BROKEN) ||
	    !vpci_vector_valid(t, vq->vector))
		return -EINVAL;
	if (!vq->enabled)   /* a queue the driver has not enabled has no position */
		return st->last_avail || st->used_idx || st->signalled_used || f ? -EINVAL : 0;
	if (!(sv->status & VIRTIO_STATUS_FEATURES_OK) || vq->size > t->info.queue_size ||
	    vq_check(t->gm, vq->size, vq->desc, vq->driver, vq->device))
		return -EINVAL;
	/* A chain in flight: not saved at rest. Only a queue the device gave
	 * up on (broken, or the device needs a reset) may hold some, and never
	 * more than the ring has. */
	if ((uint16_t)(st->last_avail - st->used_idx) > vq->size)
		return -EINVAL;
	if (st->last_avail != st->used_idx && !st->broken && !(sv->flags & VPCI_SF_NEEDS_RESET))
		return -EINVAL;
	if (st->signalled_valid && !(sv->driver_features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX)))
		return -EINVAL;
	return 0;
}

/* The common configuration, checked against what a driver could have
 * reached through the registers and 3.1.1's order. */
static int vpci_parse_common(const struct virtio_dev *t, struct state_buf *in, struct vpci_saved *sv)
{
	bool started;

	sv->dfselect = state_get_u32(in);
	sv->gfselect = state_get_u32(in);
	sv->driver_features = state_get_u64(in);
	sv->status = state_get_u8(in);
	sv->flags = state_get_u8(in);
	sv->queue_select = state_get_u16(in);
	sv->config_generation = state_get_u32(in);
	sv->config_vector = state_get_u16(in);
	sv->isr = state_get_u8(in);
	started = sv->flags & VPCI_SF_STARTED;
	if (in->error || sv->status & ~VPCI_STATUS_BITS ||
	    sv->flags & ~(VPCI_SF_STARTED | VPCI_SF_NEEDS_RESET) ||
	    sv->driver_features & ~t->dev_features || sv->isr & ~(ISR_QUEUE | ISR_CONFIG) ||
	    !vpci_vector_valid(t, sv->config_vector))
		return -EINVAL;
	if ((sv->status & VIRTIO_STATUS_FEATURES_OK) &&
	    !(sv->driver_features & VIRTIO_BIT(VIRTIO_F_VERSION_1)))
		return -EINVAL;
	if (started && !((sv->status & VIRTIO_STATUS_DRIVER_OK) &&
			 (sv->status & VIRTIO_STATUS_FEATURES_OK)))
		return -EINVAL;
	return 0;
}

/* The PCI function into a copy without hooks: pci_dev_load checks it (the
 * same device model) and decodes the BARs there, moving nothing. */
static int vpci_parse_pci(const struct virtio_dev *t, struct state_buf *in, struct vpci_saved *sv)
{
	uint16_t ctrl;

	sv->pdev = t->pdev;
	sv->pdev.ops = NULL;
	if (pci_dev_load(&sv->pdev, in) < 0)
		return -EINVAL;
	ctrl = pci_get_u16(&sv->pdev, VPCI_CAP_MSIX + 2);
	sv->msix.enable = ctrl & MSIX_CTRL_ENABLE;
	sv->msix.maskall = ctrl & MSIX_CTRL_MASKALL;
	return 0;
}

static int vpci_parse(const struct virtio_dev *t, struct state_buf *in, struct vpci_saved *sv)
{
	bool enable, maskall;

	if (state_get_u16(in) != t->info.device_id ||
	    state_get_u16(in) != t->info.num_queues || state_get_u64(in) != t->dev_features ||
	    state_get_u16(in) != t->info.queue_size || in->error)
		return -EINVAL;   /* another device, or another configuration of it */
	if (vpci_parse_pci(t, in, sv) || vpci_parse_common(t, in, sv))
		return -EINVAL;
	for (unsigned q = 0; q < t->info.num_queues; q++)
		if (vpci_parse_queue(t, sv, q, in, &sv->q[q], &sv->qs[q]))
			return -EINVAL;
	enable = sv->msix.enable;
	maskall = sv->msix.maskall;
	if (vpci_msix_parse(t, in, &sv->msix))
		return -EINVAL;
	/* The control word lives in config space too: both must agree. */
	return enable == sv->msix.enable && maskall == sv->msix.maskall ? 0 : -EINVAL;
}

/* Everything checked: replace the state. The BAR is decoded where the
 * loaded config space says, Bus Master and INTx Disable follow COMMAND. */
static void vpci_commit(struct virtio_dev *t, const struct vpci_saved *sv)
{
	uint16_t cmd = pci_get_u16(&sv->pdev, PCI_COMMAND);

	memcpy(t->pdev.cfg, sv->pdev.cfg, sizeof(t->pdev.cfg));
	memcpy(t->pdev.bar, sv->pdev.bar, sizeof(t->pdev.bar));
	vpci_bar_move(t, pci_dev_bar_addr(&t->pdev, VPCI_BAR));
	t->dfselect = sv->dfselect;
	t->gfselect = sv->gfselect;
	t->driver_features = sv->driver_features;
	t->status = sv->status;
	t->started = sv->flags & VPCI_SF_STARTED;
	t->quiesced = t->started;   /* resume() starts it */
	t->queue_select = sv->queue_select;
	atomic_store(&t->config_generation, sv->config_generation);
	atomic_store(&t->needs_reset, (sv->flags & VPCI_SF_NEEDS_RESET) != 0);
	for (unsigned q = 0; q < t->info.num_queues; q++) {
		struct vpci_queue *vq = &t->q[q];

		*vq = sv->q[q];
		vq_reset(&t->vq[q]);
		if (vq->enabled && vq_restore(&t->vq[q], t->gm, vq->size, vq->desc, vq->driver,
					       vq->device, t->driver_features, &sv->qs[q]))
			vq->enabled = false;   /* cannot happen: vpci_parse_queue checked it */
	}
	pthread_mutex_lock(&t->irq_lock);
	t->config_vector = sv->config_vector;
	t->isr = sv->isr;
	t->intx_disabled = cmd & PCI_COMMAND_INTX_DISABLE;
	/* Off a bus (unit tests) the function may always DMA, as when created. */
	vpci_bus_master(t, (cmd & PCI_COMMAND_MASTER) || t->pdev.slot < 0);
	vpci_msix_commit(t, &sv->msix);
	vpci_intx_update(t);
	pthread_mutex_unlock(&t->irq_lock);
}

/* Where the section starting at in->pos ends, without reading it. */
static size_t vpci_model_section_end(const struct state_buf *in)
{
	uint32_t len = 0;

	if (in->error || in->pos > in->len || in->len - in->pos < 12)
		return (size_t)-1;
	for (unsigned i = 0; i < 4; i++)
		len |= (uint32_t)in->data[in->pos + 8 + i] << (8 * i);
	return in->pos + 12 + len;
}

/* dev.lock held (the registry). The model's section is loaded last among
 * the checks: it validates before it changes anything, and after it the
 * transport's commit cannot fail. */
static int vpci_load(struct device *dev, struct state_buf *in)
{
	struct virtio_dev *t = to_vpci(dev);
	struct vpci_saved *sv;
	size_t end;
	int ret;

	if (t->started && !t->quiesced)
		return -EBUSY;
	if (state_section_open(in, VPCI_STATE_ID, VPCI_STATE_VERSION) < 0)
		return -EINVAL;
	end = state_section_body_end(in);
	sv = calloc(1, sizeof(*sv));
	if (!sv)
		return -ENOMEM;
	ret = vpci_parse(t, in, sv);
	if (!ret && t->ops->load) {
		/* The model's section must be the rest of ours, checked before
		 * the model changes anything. */
		ret = vpci_model_section_end(in) == end ? 0 : -EINVAL;
		ret = ret ?: t->ops->load(t->opaque, in, sv->driver_features,
					  sv->flags & VPCI_SF_STARTED);
	}
	if (!ret && !state_section_done(in, end))
		ret = -EINVAL;
	if (!ret)
		vpci_commit(t, sv);
	free(sv);
	return ret;
}

/* ---- lifetime ---- */

static void vpci_destroy(struct device *dev)
{
	struct virtio_dev *t = to_vpci(dev);

	pthread_mutex_lock(&t->dev.lock);
	vpci_stop(t);
	if (t->bar_addr != PCI_BAR_UNMAPPED) {
		vpci_ioeventfds(t, false);
		if (t->vm)
			bus_remove(&t->vm->mmio, t->bar_addr);
	}
	pthread_mutex_unlock(&t->dev.lock);
	if (t->ops->destroy)
		t->ops->destroy(t->opaque);
	for (unsigned v = 0; v < t->nvec; v++) {
		if (t->vec[v].irqfd < 0)
			continue;
		if (vm_irqfd(t->vm, t->vec[v].irqfd, t->vec[v].gsi, false))
			kwarn("%s: cannot remove irqfd of vector %u", t->info.name, v);
		vm_msi_route_free(t->vm, t->vec[v].gsi);
		close(t->vec[v].irqfd);
	}
	for (unsigned q = 0; q < t->info.num_queues; q++)
		if (t->q[q].kick_fd >= 0)
			close(t->q[q].kick_fd);
	free(t->vec);
	free(t->q);
	free(t->vq);
	pthread_mutex_destroy(&t->irq_lock);
	pthread_mutex_destroy(&t->dev.lock);
	free(t);
}

static void vpci_dev_reset(struct device *dev)
{
	vpci_reset(to_vpci(dev));
}

static const struct dev_ops vpci_dev_ops = {
	.name = "virtio-pci",
	.reset = vpci_dev_reset,
	.read = vpci_read,
	.write = vpci_write,
	.quiesce = vpci_quiesce,
	.resume = vpci_resume,
	.save = vpci_save,
	.load = vpci_load,
	.destroy = vpci_destroy,
};

/* One MSI route and irqfd per vector, made now so that programming a vector
 * later is only a route update. */
static int vpci_vectors_init(struct virtio_dev *t)
{
	int ret;

	for (unsigned v = 0; v < t->nvec; v++) {
		struct vpci_vector *e = &t->vec[v];

		e->ctrl = MSIX_VECTOR_MASKED;   /* 6.8.2.9: masked after reset */
		e->irqfd = -1;
		if (!t->vm)
			continue;
		ret = vm_msi_route_alloc(t->vm, &e->gsi);
		if (ret)
			return ret;
		e->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (e->irqfd < 0)
			return -errno;
		ret = vm_irqfd(t->vm, e->irqfd, e->gsi, true);
		if (ret)
			return ret;
	}
	return 0;
}

static int vpci_queues_init(struct virtio_dev *t)
{
	for (unsigned q = 0; q < t->info.num_queues; q++) {
		vq_init_empty(&t->vq[q]);
		t->q[q].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (t->q[q].kick_fd < 0)
			return -errno;
	}
	return 0;
}

static bool vpci_info_ok(const struct virtio_dev_info *info)
{
	uint16_t qs = info->queue_size;

	return info->num_queues >= 1 && info->num_queues <= VPCI_MAX_QUEUES && qs &&
	       !(qs & (qs - 1)) && qs <= VIRTQ_MAX_SIZE && info->cfg_size <= VPCI_PAGE;
}

static struct virtio_dev *vpci_alloc(const struct virtio_dev_info *info)
{
	struct virtio_dev *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->info = *info;
	t->nvec = info->num_queues + 1;
	t->q = calloc(info->num_queues, sizeof(*t->q));
	t->vq = calloc(info->num_queues, sizeof(*t->vq));
	t->vec = calloc(t->nvec, sizeof(*t->vec));
	for (unsigned q = 0; t->q && q < info->num_queues; q++)
		t->q[q].kick_fd = -1;
	for (unsigned v = 0; t->vec && v < t->nvec; v++)
		t->vec[v].irqfd = -1;
	if (!t->q || !t->vq || !t->vec) {
		free(t->q);
		free(t->vq);
		free(t->vec);
		free(t);
		return NULL;
	}
	return t;
}

int virtio_pci_create(struct vm *vm, struct device *pci_host, int slot, uint32_t intx_gsi,
		      const struct virtio_dev_info *info, const struct virtio_dev_ops *ops,
		      void *opaque, struct virtio_dev **out)
{
	struct virtio_dev *t;
	int ret;

	if (!vpci_info_ok(info) || !ops || !ops->bind) {
		if (ops && ops->destroy)
			ops->destroy(opaque);
		return -EINVAL;
	}
	t = vpci_alloc(info);
	if (!t) {
		if (ops->destroy)
			ops->destroy(opaque);
		return -ENOMEM;
	}
	device_init(&t->dev, &vpci_dev_ops);
	pthread_mutex_init(&t->irq_lock, NULL);
	t->vm = vm;
	t->gm = vm ? &vm->gm : NULL;
	t->ops = ops;
	t->opaque = opaque;
	t->intx_gsi = intx_gsi;
	t->bar_addr = PCI_BAR_UNMAPPED;
	t->dev_features = info->features | VPCI_TRANSPORT_FEATURES;
	ops->bind(opaque, t);
	pci_dev_init(&t->pdev, VIRTIO_PCI_VENDOR, (uint16_t)(VIRTIO_PCI_DEVICE_BASE + info->device_id),
		     info->class_code, 1, &vpci_pci_ops, t);
	pci_dev_set_subsystem(&t->pdev, VIRTIO_PCI_VENDOR, 0x1100);
	pci_dev_set_irq(&t->pdev, 1, (uint8_t)intx_gsi);
	ret = pci_dev_set_bar(&t->pdev, VPCI_BAR, VPCI_BAR_SIZE, PCI_BAR_MEM64);
	ret = ret ?: vpci_queues_init(t);
	ret = ret ?: vpci_vectors_init(t);
	if (ret == 0) {
		vpci_build_caps(t);
		vpci_reset(t);
	}
	/* On a bus the function starts with Bus Master Enable clear (the
	 * driver sets it); a device made without one (unit tests) may DMA. */
	t->dma_on = true;
	if (ret == 0 && pci_host) {
		vpci_bus_master(t, false);
		ret = pci_host_add(pci_host, &t->pdev, slot);
		ret = ret < 0 ? ret : 0;
	}
	if (ret) {
		vpci_destroy(&t->dev);
		return ret;
	}
	*out = t;
	return 0;
}

/* ---- accessors for the device model ---- */

struct device *virtio_dev_device(struct virtio_dev *t)
{
	return &t->dev;
}

void *virtio_device_model(struct device *dev, uint16_t device_id)
{
	struct virtio_dev *t = to_vpci(dev);

	if (!dev || dev->ops != &vpci_dev_ops || t->info.device_id != device_id)
		return NULL;
	return t->opaque;
}

int virtio_dev_slot(const struct virtio_dev *t)
{
	return t->pdev.slot;
}

void virtio_pci_set_guest_mem(struct device *dev, const struct guest_mem *gm)
{
	struct virtio_dev *t = to_vpci(dev);

	if (!dev || dev->ops != &vpci_dev_ops)
		return;
	pthread_mutex_lock(&t->dev.lock);
	if (!t->vm)
		t->gm = gm;
	pthread_mutex_unlock(&t->dev.lock);
}

const struct guest_mem *virtio_gm(const struct virtio_dev *t)
{
	return t->gm;
}

struct virtq *virtio_queue(struct virtio_dev *t, unsigned q)
{
	return q < t->info.num_queues ? &t->vq[q] : NULL;
}

bool virtio_queue_enabled(const struct virtio_dev *t, unsigned q)
{
	return q < t->info.num_queues && t->q[q].enabled;
}

int virtio_queue_kick_fd(const struct virtio_dev *t, unsigned q)
{
	return q < t->info.num_queues ? t->q[q].kick_fd : -1;
}
