/* A polled virtio 1.x driver core for the payloads (virtio v1.1: 4.1 modern
 * virtio-pci, 2.6 split rings): find the function, place its BARs, read its
 * capabilities, negotiate features, set up the queues, kick and reap. No
 * interrupt is ever enabled (MSI-X vectors off, INTx disabled by the caller).
 * The device-specific parts (what goes into the rings) stay in each payload. */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include "guest.h"

#define VIRTIO_VENDOR 0x1af4
#define PCI_COMMAND   0x04
#define CMD_MEM	      0x0002
#define CMD_MASTER    0x0004
#define CMD_INTX_OFF  0x0400

/* 4.1.4.3 common configuration. */
#define CC_DFSELECT	0x00
#define CC_DF		0x04
#define CC_GFSELECT	0x08
#define CC_GF		0x0c
#define CC_MSIX_CONFIG	0x10
#define CC_NUM_QUEUES	0x12
#define CC_STATUS	0x14
#define CC_Q_SELECT	0x16
#define CC_Q_SIZE	0x18
#define CC_Q_MSIX	0x1a
#define CC_Q_ENABLE	0x1c
#define CC_Q_NOTIFY_OFF 0x1e
#define CC_Q_DESC	0x20
#define CC_Q_DRIVER	0x28
#define CC_Q_DEVICE	0x30

#define ST_ACK	       1
#define ST_DRIVER      2
#define ST_DRIVER_OK   4
#define ST_FEATURES_OK 8
#define ST_NEEDS_RESET 0x40

#define F_INDIRECT  (1ull << 28)
#define F_EVENT_IDX (1ull << 29)
#define F_VERSION_1 (1ull << 32)

#define D_NEXT	       1
#define D_WRITE	       2
#define D_INDIRECT     4
#define USED_NO_NOTIFY 1

/* virtio-pci capability types (4.1.4), as bits for vpci_caps(). */
#define VCAP_COMMON (1u << 1)
#define VCAP_NOTIFY (1u << 2)
#define VCAP_ISR    (1u << 3)
#define VCAP_DEVICE (1u << 4)

#define VQ_MAX	    4 /* queues per device */
#define VQ_SIZE_MAX 256

struct vdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
} __attribute__((packed));

struct vring {
	unsigned qidx;
	uint16_t num, avail_idx, last_used;
	volatile struct vdesc *desc;
	volatile uint16_t *avail; /* flags, idx, ring[num], used_event */
	volatile uint8_t *used;	  /* flags, idx, {id, len}[num], avail_event */
	uint64_t notify;
	bool event_idx;
	unsigned *kicks;
};

struct vdev {
	unsigned dev; /* slot on bus 0 */
	uint16_t devid;
	unsigned bar;	     /* the BAR the structures are in */
	bool one_bar, bar64; /* all of them in that one; 64-bit BAR */
	uint64_t bar_addr;
	uint64_t common, notify_base, isr, devcfg;
	uint32_t notify_mult;
	uint64_t features;
	unsigned nq;
	struct vring q[VQ_MAX];
	unsigned kicks;
};

/* The first function on bus 0 with either device ID. */
bool vpci_find(struct vdev *vd, uint16_t modern_id, uint16_t transitional_id);
/* Walk the vendor capabilities; true if every VCAP_ bit in need was found. */
bool vpci_caps(struct vdev *vd, unsigned need);
/* Move the structures' BAR to addr as an OS does (memory decode off, new
 * address, decode back as it was); the pointers into it follow. The
 * payload must not touch the device while addr is above 4 GiB. */
void vpci_move_bar(struct vdev *vd, uint64_t addr);
/* 3.1.1 driver initialisation up to DRIVER_OK with nq queues (at most
 * VQ_MAX, each at most VQ_SIZE_MAX entries); false if FEATURES_OK is refused. */
bool vdev_start(struct vdev *vd, uint64_t want, unsigned nq);

static inline uint8_t vcc_read8(const struct vdev *vd, unsigned off)
{
	return mmio_read8(vd->common + off);
}
static inline uint16_t vcc_read16(const struct vdev *vd, unsigned off)
{
	return mmio_read16(vd->common + off);
}
static inline void vcc_write8(const struct vdev *vd, unsigned off, uint8_t v)
{
	mmio_write8(vd->common + off, v);
}

/* Descriptor i; then publish a chain's head in the available ring. */
void vq_desc(struct vring *r, unsigned i, const void *addr, uint32_t len, uint16_t flags,
	     uint16_t next);
void vq_publish(struct vring *r, uint16_t head);
/* Notify unless the device said it is already looking (2.6.10.2); old is
 * avail_idx before this batch was published. */
void vq_kick(struct vring *r, uint16_t old);
/* Reap one used element; false if none. */
bool vq_used(struct vring *r, uint32_t *id, uint32_t *len);

#endif
