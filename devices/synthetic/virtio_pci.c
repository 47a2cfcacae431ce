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
 * ioeventfd is not registered; when the guest moves BAR 0 the PCI core moves
 * the bus range and vpci_bar_remap() the ioeventfds. Interrupts: MSI-X
 * (devices/pci/msi.c: vector v is an MSI route with an irqfd; masked vectors
 * and a cleared Bus Master Enable collect pending bits). Without MSI-X the
 * function raises INTA# through the PCI core while ISR is non-zero; reading
 * ISR clears it. The capabilities are built with the core's pci_cap_add().
 *
 * Locking: MMIO and config hooks run under the transport's device lock
 * (dev.lock). ISR and vector numbers are also under irq_lock, which the
 * device model's threads take through virtio_queue_interrupt() — they never
 * take dev.lock, so a reset may stop them while holding it. The MSI-X table
 * and the INTx level have the core's own locks, taken inside irq_lock.
 *
 * State: quiesce, resume, save and load are in virtio_pci_state.c. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kestrel/vm.h"
#include "virtio_pci_priv.h"

#define VPCI_BAR	    0
#define VPCI_BAR_SIZE	    0x8000
#define VPCI_COMMON_OFF	    0x0000
#define VPCI_COMMON_LEN	    0x38
#define VPCI_ISR_OFF	    0x1000
#define VPCI_ISR_LEN	    4
#define VPCI_DEVICE_OFF	    0x2000
#define VPCI_NOTIFY_OFF	    0x3000
#define VPCI_NOTIFY_MULT    4
#define VPCI_MSIX_TABLE_OFF 0x4000
#define VPCI_MSIX_PBA_OFF   0x5000
#define VPCI_PAGE	    0x1000

/* 4.1.4 virtio structure PCI capabilities. */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG	  3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG	  5
#define VPCI_CAP_LEN		  16
#define VPCI_PCICFG_DATA	  16 /* in the PCI_CFG capability */

/* 4.1.4.3 struct virtio_pci_common_cfg. */
#define CC_DFSELECT	0x00
#define CC_DF		0x04
#define CC_GFSELECT	0x08
#define CC_GF		0x0c
#define CC_MSIX_CONFIG	0x10
#define CC_NUM_QUEUES	0x12
#define CC_STATUS	0x14
#define CC_CONFIG_GEN	0x15
#define CC_Q_SELECT	0x16
#define CC_Q_SIZE	0x18
#define CC_Q_MSIX	0x1a
#define CC_Q_ENABLE	0x1c
#define CC_Q_NOTIFY_OFF 0x1e
#define CC_Q_DESC	0x20
#define CC_Q_DRIVER	0x28
#define CC_Q_DEVICE	0x30

/* Features every device gets from the transport. */
#define VPCI_TRANSPORT_FEATURES                                                \
	(VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | \
	 VIRTIO_BIT(VIRTIO_F_EVENT_IDX))

/* ---- interrupts ---- */

/* INTA# follows ISR (4.1.4.5); the core masks it while MSI-X is on or
 * INTX_DISABLE is set. irq_lock held. */
void vpci_intx_update(struct virtio_dev *t)
{
	pci_intx_set(&t->pdev, t->isr != 0);
}

static void vpci_raise(struct virtio_dev *t, uint8_t isr_bit, uint16_t vector)
{
	pthread_mutex_lock(&t->irq_lock);
	if (msix_enabled(&t->msix)) {
		msix_notify(&t->msix, vector);
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

/* ---- ioeventfd and BAR placement ---- */

static void vpci_ioeventfds(struct virtio_dev *t, bool assign)
{
	for (unsigned q = 0; q < t->info.num_queues && t->vm; q++) {
		struct vpci_queue *vq = &t->q[q];
		uint64_t addr = t->bar_addr + VPCI_NOTIFY_OFF + (uint64_t)VPCI_NOTIFY_MULT * q;

		if (!assign) {
			if (vq->ioeventfd_len && vm_ioeventfd(t->vm, addr, vq->ioeventfd_len - 1,
							      false, vq->kick_fd, false))
				kwarn("%s: cannot remove the ioeventfd of queue %u", t->info.name,
				      q);
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
			kwarn("%s: no ioeventfd for queue %u: kicks exit to user space",
			      t->info.name, q);
	}
}

/* The core has moved BAR 0 on the MMIO bus (pci_bar_attach); the kicks'
 * ioeventfds follow it. bar_addr and the ioeventfds change only here, and
 * the core calls this only where config space cannot change under it: a
 * guest config write (the host's lock), the transport's load (dev.lock
 * held by the registry, vCPUs paused — so dev.lock is not taken here) and
 * pci_dev_exit at destroy. */
static void vpci_bar_remap(struct pci_dev *pdev, int bar, uint64_t old, uint64_t now)
{
	struct virtio_dev *t = pdev->opaque;

	if (bar != VPCI_BAR)
		return;
	if (t->bar_addr != PCI_BAR_UNMAPPED)
		vpci_ioeventfds(t, false);
	t->bar_addr = now;
	if (now != PCI_BAR_UNMAPPED)
		vpci_ioeventfds(t, true);
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
		__atomic_store_n(&vq->enabled, false, __ATOMIC_RELEASE);
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
	msix_clear_pending(&t->msix);
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
	val &= (uint8_t)~VIRTIO_STATUS_DEVICE_NEEDS_RESET; /* the device's bit */
	added = val & (uint8_t)~t->status;
	if ((added & VIRTIO_STATUS_FEATURES_OK) && !vpci_features_ok(t))
		val &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK; /* 3.1.1 step 6: driver re-reads */
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
	    vq_init(&t->vq[q], t->gm, size, vq->desc, vq->driver, vq->device, t->driver_features)) {
		virtio_set_needs_reset(t, "queue enabled with an invalid size or ring address");
		return;
	}
	/* Device threads read it without dev.lock (virtio_queue_enabled); the
	 * ring state itself they read under the queue's lock. */
	__atomic_store_n(&vq->enabled, true, __ATOMIC_RELEASE);
}

static struct vpci_queue *vpci_selected(struct virtio_dev *t)
{
	return t->queue_select < t->info.num_queues ? &t->q[t->queue_select] : NULL;
}

/* A vector number the driver may use, else NO_VECTOR (4.1.5.1.2: reading it
 * back tells the driver the device refused). */
static uint16_t vpci_vector_ok(const struct virtio_dev *t, uint64_t v)
{
	return v < t->msix.nvec ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

static uint64_t vpci_common_get(struct virtio_dev *t, unsigned field)
{
	struct vpci_queue *q = vpci_selected(t);

	switch (field) {
	case CC_DFSELECT: return t->dfselect;
	case CC_DF: return t->dfselect < 2 ? (uint32_t)(t->dev_features >> (32 * t->dfselect)) : 0;
	case CC_GFSELECT: return t->gfselect;
	case CC_GF:
		return t->gfselect < 2 ? (uint32_t)(t->driver_features >> (32 * t->gfselect)) : 0;
	case CC_MSIX_CONFIG: return t->config_vector;
	case CC_NUM_QUEUES: return t->info.num_queues;
	case CC_STATUS:
		return t->status |
		       (atomic_load(&t->needs_reset) ? VIRTIO_STATUS_DEVICE_NEEDS_RESET : 0);
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
	t->driver_features = (t->driver_features & ~(0xffffffffULL << shift)) | (uint64_t)val
											<< shift;
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
		return; /* 4.1.4.3.2: no changes to a live queue's layout */
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
	case CC_Q_SIZE:
	case CC_Q_MSIX:
	case CC_Q_ENABLE:
	case CC_Q_DESC:
	case CC_Q_DRIVER:
	case CC_Q_DEVICE:
		if (q)
			vpci_queue_field_set(t, q, field, val);
		return;
	}
	/* device_feature, num_queues, config_generation, queue_notify_off: read-only */
}

static const struct {
	uint8_t off, width;
} vpci_common_fields[] = {
	{ CC_DFSELECT, 4 },	{ CC_DF, 4 },	      { CC_GFSELECT, 4 }, { CC_GF, 4 },
	{ CC_MSIX_CONFIG, 2 },	{ CC_NUM_QUEUES, 2 }, { CC_STATUS, 1 },	  { CC_CONFIG_GEN, 1 },
	{ CC_Q_SELECT, 2 },	{ CC_Q_SIZE, 2 },     { CC_Q_MSIX, 2 },	  { CC_Q_ENABLE, 2 },
	{ CC_Q_NOTIFY_OFF, 2 }, { CC_Q_DESC, 8 },     { CC_Q_DRIVER, 8 }, { CC_Q_DEVICE, 8 },
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

/* Each byte lane of the access [off, off + size) that falls in a field of
 * the common configuration: a read gathers it into *val, a write merges it
 * from *val into the field, so a field written in part (a 64-bit address as
 * two 32-bit halves) keeps its other bytes. */
static void vpci_common_access(struct virtio_dev *t, uint64_t off, unsigned size, uint64_t *val,
			       bool write)
{
	unsigned lo, hi;

	for (size_t i = 0; i < ARRAY_SIZE(vpci_common_fields); i++) {
		unsigned foff = vpci_common_fields[i].off, w = vpci_common_fields[i].width;
		uint64_t fv;

		if (!vpci_lanes(off, size, foff, w, &lo, &hi))
			continue;
		fv = vpci_common_get(t, foff);
		for (unsigned a = lo; a < hi; a++) {
			uint64_t fshift = 8 * (a - foff), vshift = 8 * (a - off);

			if (write)
				fv = (fv & ~(0xffULL << fshift)) |
				     (((*val >> vshift) & 0xff) << fshift);
			else
				*val |= ((fv >> fshift) & 0xff) << vshift;
		}
		if (write)
			vpci_common_set(t, foff, fv);
	}
}

static uint64_t vpci_common_read(struct virtio_dev *t, uint64_t off, unsigned size)
{
	uint64_t v = 0;

	vpci_common_access(t, off, size, &v, false);
	return v;
}

/* ---- the BAR ---- */

static uint8_t vpci_isr_read(struct virtio_dev *t)
{
	uint8_t v;

	pthread_mutex_lock(&t->irq_lock);
	v = t->isr;
	t->isr = 0; /* 4.1.4.5: reading clears, and deasserts INTx */
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
	uint64_t page = off & ~(uint64_t)(VPCI_PAGE - 1), in = off & (VPCI_PAGE - 1), v;

	if (in + size > VPCI_PAGE)
		return 0; /* no access straddles two structures */
	if (msix_bar_read(&t->msix, VPCI_BAR, off, size, &v))
		return v;
	switch (page) {
	case VPCI_COMMON_OFF: return in < VPCI_COMMON_LEN ? vpci_common_read(t, in, size) : 0;
	case VPCI_ISR_OFF: return in == 0 ? vpci_isr_read(t) : 0;
	case VPCI_DEVICE_OFF: return vpci_cfg_region_read(t, in, size);
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

	if (in + size > VPCI_PAGE || msix_bar_write(&t->msix, VPCI_BAR, off, size, val))
		return;
	switch (page) {
	case VPCI_COMMON_OFF:
		if (in < VPCI_COMMON_LEN)
			vpci_common_access(t, in, size, &val, true);
		return;
	case VPCI_DEVICE_OFF:
		if (in < t->info.cfg_size && size <= t->info.cfg_size - in && t->ops->cfg_write)
			t->ops->cfg_write(t->opaque, (unsigned)in, size, val);
		return;
	case VPCI_NOTIFY_OFF: vpci_notify_write(t, in); return;
	}
}

/* ---- PCI configuration space hooks (PCI host lock held) ---- */

/* 4.1.4.7.1: the VIRTIO_PCI_CAP_PCI_CFG window reaches the BAR through
 * configuration cycles; bar, offset and length are the driver's to set. */
static bool vpci_pcicfg_target(struct virtio_dev *t, uint64_t *off, unsigned *len)
{
	struct pci_dev *p = &t->pdev;
	unsigned c = t->pcicfg_cap;

	*off = pci_get_u32(p, c + 8);
	*len = pci_get_u32(p, c + 12);
	if (p->cfg[c + 4] != VPCI_BAR || (*len != 1 && *len != 2 && *len != 4))
		return false;
	return *off % *len == 0 && *off + *len <= VPCI_BAR_SIZE;
}

static uint32_t vpci_cfg_read(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val)
{
	struct virtio_dev *t = pdev->opaque;
	uint64_t boff;
	unsigned len;

	if (off == t->pcicfg_cap + VPCI_PCICFG_DATA && vpci_pcicfg_target(t, &boff, &len)) {
		pthread_mutex_lock(&t->dev.lock);
		val = (uint32_t)vpci_read(&t->dev, 0, boff, len);
		pthread_mutex_unlock(&t->dev.lock);
	}
	return val;
}

/* Bus Master Enable gates the device's use of guest memory: new chains are
 * not taken (and the core holds MSI-X messages) while it is clear. Requests
 * already taken complete. When it comes back the queues are kicked so the
 * device looks at what the driver queued meanwhile. irq_lock held. */
bool vpci_bus_master(struct virtio_dev *t, bool on)
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
	uint16_t cmd = pci_get_u16(pdev, PCI_COMMAND);
	uint64_t boff;
	unsigned len;
	bool woke;

	pthread_mutex_lock(&t->irq_lock);
	woke = vpci_bus_master(t, cmd & PCI_COMMAND_MASTER);
	pthread_mutex_unlock(&t->irq_lock);
	if (woke)
		vpci_wake_queues(t);
	if (off == t->pcicfg_cap + VPCI_PCICFG_DATA && vpci_pcicfg_target(t, &boff, &len)) {
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

/* 4.1.4 struct virtio_pci_cap of cap_len bytes for the structure at
 * [boff, boff + blen) of BAR 0. Returns its offset or -ENOSPC. */
static int vpci_cap(struct pci_dev *p, unsigned cap_len, uint8_t type, uint32_t boff, uint32_t blen)
{
	int off = pci_cap_add(p, PCI_CAP_ID_VNDR, cap_len);

	if (off < 0)
		return off;
	pci_set_u8(p, (unsigned)off + 2, (uint8_t)cap_len);
	pci_set_u8(p, (unsigned)off + 3, type);
	pci_set_u8(p, (unsigned)off + 4, VPCI_BAR);
	pci_set_u32(p, (unsigned)off + 8, boff);
	pci_set_u32(p, (unsigned)off + 12, blen);
	return off;
}

/* MSI-X first (the core's msix_init), then the virtio structures. */
static int vpci_build_caps(struct virtio_dev *t, const struct msi_sink *sink)
{
	struct pci_dev *p = &t->pdev;
	int notify = -ENOSPC, pcicfg = -ENOSPC, ret;

	ret = msix_init(&t->msix, p, sink, t->info.num_queues + 1, VPCI_BAR, VPCI_MSIX_TABLE_OFF,
			VPCI_BAR, VPCI_MSIX_PBA_OFF);
	if (ret)
		return ret;
	if (vpci_cap(p, VPCI_CAP_LEN, VIRTIO_PCI_CAP_COMMON_CFG, VPCI_COMMON_OFF, VPCI_COMMON_LEN) <
		    0 ||
	    (notify = vpci_cap(p, VPCI_CAP_LEN + 4, VIRTIO_PCI_CAP_NOTIFY_CFG, VPCI_NOTIFY_OFF,
			       VPCI_NOTIFY_MULT * t->info.num_queues)) < 0 ||
	    vpci_cap(p, VPCI_CAP_LEN, VIRTIO_PCI_CAP_ISR_CFG, VPCI_ISR_OFF, VPCI_ISR_LEN) < 0 ||
	    vpci_cap(p, VPCI_CAP_LEN, VIRTIO_PCI_CAP_DEVICE_CFG, VPCI_DEVICE_OFF,
		     MAX(t->info.cfg_size, 1u)) < 0 ||
	    (pcicfg = vpci_cap(p, VPCI_CAP_LEN + 4, VIRTIO_PCI_CAP_PCI_CFG, 0, 0)) < 0)
		return -ENOSPC;
	pci_set_u32(p, (unsigned)notify + 16, VPCI_NOTIFY_MULT);
	/* bar, offset, length and data of the window are the driver's. */
	t->pcicfg_cap = (unsigned)pcicfg;
	p->wmask[pcicfg + 4] = 0xff;
	memset(&p->wmask[pcicfg + 8], 0xff, 12);
	return 0;
}

/* ---- lifetime ---- */

static void vpci_destroy(struct device *dev)
{
	struct virtio_dev *t = to_vpci(dev);

	pci_dev_exit(&t->pdev); /* BAR 0 off the bus, its ioeventfds gone */
	pthread_mutex_lock(&t->dev.lock);
	vpci_stop(t);
	pthread_mutex_unlock(&t->dev.lock);
	if (t->ops->destroy)
		t->ops->destroy(t->opaque);
	msix_destroy(&t->msix);
	for (unsigned q = 0; q < t->info.num_queues; q++)
		if (t->q[q].kick_fd >= 0)
			close(t->q[q].kick_fd);
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
	t->q = calloc(info->num_queues, sizeof(*t->q));
	t->vq = calloc(info->num_queues, sizeof(*t->vq));
	for (unsigned q = 0; t->q && q < info->num_queues; q++)
		t->q[q].kick_fd = -1;
	if (!t->q || !t->vq) {
		free(t->q);
		free(t->vq);
		free(t);
		return NULL;
	}
	return t;
}

int virtio_pci_create(struct vm *vm, struct device *pci_host, int slot,
		      const struct virtio_dev_info *info, const struct virtio_dev_ops *ops,
		      void *opaque, struct virtio_dev **out)
{
	struct msi_sink sink = msi_vm_sink(vm);
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
	t->bar_addr = PCI_BAR_UNMAPPED;
	t->dev_features = info->features | VPCI_TRANSPORT_FEATURES;
	ops->bind(opaque, t);
	pci_dev_init(&t->pdev, VIRTIO_PCI_VENDOR,
		     (uint16_t)(VIRTIO_PCI_DEVICE_BASE + info->device_id), info->class_code, 1,
		     &vpci_pci_ops, t);
	pci_dev_set_subsystem(&t->pdev, VIRTIO_PCI_VENDOR, 0x1100);
	pci_dev_set_irq(&t->pdev, 1, 0);
	ret = pci_dev_set_bar(&t->pdev, VPCI_BAR, VPCI_BAR_SIZE, PCI_BAR_MEM64);
	pci_bar_attach(&t->pdev, VPCI_BAR, &t->dev, 0);
	ret = ret ?: vpci_queues_init(t);
	ret = ret ?: vpci_build_caps(t, &sink);
	if (ret == 0)
		vpci_reset(t);
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
	return q < t->info.num_queues && __atomic_load_n(&t->q[q].enabled, __ATOMIC_ACQUIRE);
}

int virtio_queue_kick_fd(const struct virtio_dev *t, unsigned q)
{
	return q < t->info.num_queues ? t->q[q].kick_fd : -1;
}
