/* virtio 1.x (OASIS virtio v1.1): the split virtqueue, and the interface
 * between the transport (virtio-pci, devices/synthetic/virtio_pci.c) and a
 * device model (virtio_scsi.c, virtio_net.c, ...).
 *
 * Design
 * - The transport owns what the driver programs through the PCI function:
 *   feature negotiation, device status and reset, queue addresses, MSI-X and
 *   INTx. It knows nothing of the device type beyond the numbers in
 *   struct virtio_dev_info.
 * - The device model owns its I/O threads. For every queue the transport
 *   makes one eventfd, the "kick fd": KVM signals it through an ioeventfd on
 *   the queue's notify address, so a driver's kick never exits to user space
 *   (when the ioeventfd cannot be registered, the transport's MMIO handler
 *   signals the same fd). A device thread polls the kick fds of its queues,
 *   pops chains with vq_pop(), completes them with vq_push() and, when that
 *   says so, calls virtio_queue_interrupt() — which writes the irqfd of the
 *   queue's MSI-X vector (or raises INTx), again without a vCPU exit.
 * - Threads and locks: the transport's MMIO handlers run on vCPU threads
 *   under the transport's device lock. start() and stop() are called there.
 *   stop() must return only when the device's threads are stopped and no
 *   request is in flight: after it nothing may touch guest memory or the
 *   queues. Everything a device calls from its own threads
 *   (virtio_queue_interrupt, virtio_config_interrupt, virtio_set_needs_reset,
 *   vq_push) takes only small internal locks, never the transport's device
 *   lock, so stop() may wait for those threads while holding it.
 * - A chain that breaks the rules (loop, address outside RAM, oversized or
 *   misordered descriptors, bad indirect table) makes vq_pop() return
 *   -EPROTO and marks the queue broken; the device then calls
 *   virtio_set_needs_reset() (DEVICE_NEEDS_RESET, 2.1.1) and stops using the
 *   queue until the driver resets the device. Nothing is fatal to the worker.
 *
 * A device model fills struct virtio_model (struct virtio_dev_info: device
 * id, its feature bits, queues, config size; the ops; its state) and knows
 * nothing of PCI: the machine puts it behind virtio_pci_create(). */
#ifndef KESTREL_VIRTIO_H
#define KESTREL_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kestrel/device.h"
#include "kestrel/guest_mem.h"
#include "kestrel/util.h"

/* 2.1 Device status field. */
#define VIRTIO_STATUS_ACKNOWLEDGE	 0x01
#define VIRTIO_STATUS_DRIVER		 0x02
#define VIRTIO_STATUS_DRIVER_OK		 0x04
#define VIRTIO_STATUS_FEATURES_OK	 0x08
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED		 0x80

/* 6 Reserved feature bits. */
#define VIRTIO_F_INDIRECT_DESC	 28
#define VIRTIO_F_EVENT_IDX	 29
#define VIRTIO_F_VERSION_1	 32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED	 34
#define VIRTIO_BIT(f)		 (1ULL << (f))

/* 5 Device types. */
#define VIRTIO_ID_NET	1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_SCSI	8

/* 4.1.2.1 PCI IDs: modern devices are 0x1040 + device type, revision >= 1. */
#define VIRTIO_PCI_VENDOR      0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040
#define VIRTIO_MSI_NO_VECTOR   0xffff

/* 2.6 Split virtqueues. */
#define VIRTQ_DESC_F_NEXT	   1
#define VIRTQ_DESC_F_WRITE	   2
#define VIRTQ_DESC_F_INDIRECT	   4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY	   1
#define VIRTQ_MAX_SIZE		   32768

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

/* ---- split virtqueue (devices/synthetic/virtqueue.c) --------------------------------- */

/* One queue as the device sees it. The ring areas are validated once, when
 * the driver enables the queue (guest RAM never moves); every descriptor and
 * buffer is validated each time it is used. The avail side (vq_pop, the
 * notification calls) belongs to one thread at a time; the used side
 * (vq_push) may be called from any thread. Every call takes lock, so a
 * vCPU thread's vq_reset/vq_init never overlaps a pop or a push. */
struct virtq {
	const struct guest_mem *gm;
	uint16_t size;		  /* entries, a power of two */
	bool ready;		  /* vq_init succeeded */
	bool broken;		  /* a chain broke the rules: no more pops */
	bool event_idx, indirect; /* negotiated VIRTIO_F_EVENT_IDX / INDIRECT_DESC */
	/* The PCI function's Bus Master Enable is clear: the device may not
	 * read or write guest memory, so pops find nothing and notification
	 * flags are left alone. Atomic; kept across vq_reset/vq_init. */
	bool dma_off;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	/* Host views of the rings; only the accessor helpers in virtqueue.c
	 * read or write them, with the barriers 2.6.13 asks for. */
	uint8_t *desc, *avail, *used;

	uint16_t last_avail;	 /* next avail ring entry to take */
	pthread_mutex_t lock;	 /* all of the above but dma_off, and below */
	uint16_t used_idx;	 /* our copy of used->idx */
	uint16_t signalled_used; /* used_idx when the driver was last interrupted */
	bool signalled_valid;
};

/* A popped chain: the device-readable buffers come first in iov (out_num of
 * them, out_len bytes), the device-writable ones after (in_num, in_len). */
struct vq_elem {
	uint16_t head;
	unsigned out_num, in_num;
	uint64_t out_len, in_len;
	struct iovec *iov;
};

void vq_init_empty(struct virtq *vq);
/* Accept the driver's ring addresses (4.1.4.3 queue_desc/driver/device):
 * size a power of two <= VIRTQ_MAX_SIZE, areas aligned (2.6: 16/2/4) and
 * wholly inside guest RAM. 0 or -EINVAL (the queue stays unusable). */
int vq_init(struct virtq *vq, const struct guest_mem *gm, uint16_t size, uint64_t desc,
	    uint64_t avail, uint64_t used, uint64_t features) WARN_UNUSED;
/* The checks vq_init makes, changing nothing: 0 or -EINVAL. */
int vq_check(const struct guest_mem *gm, uint16_t size, uint64_t desc, uint64_t avail,
	     uint64_t used) WARN_UNUSED;
/* A queue's position, beyond its addresses: what a saved queue holds. */
struct virtq_state {
	uint16_t last_avail, used_idx;
	uint16_t signalled_used; /* EVENT_IDX: used_idx at the last interrupt */
	bool signalled_valid, broken;
};
void vq_state_get(struct virtq *vq, struct virtq_state *s);
/* A queue coming back from a saved state, like one the driver enabled:
 * vq_init's checks, then the position. 0 or -EINVAL (nothing changed but
 * the queue being reset). */
int vq_restore(struct virtq *vq, const struct guest_mem *gm, uint16_t size, uint64_t desc,
	       uint64_t avail, uint64_t used, uint64_t features,
	       const struct virtq_state *s) WARN_UNUSED;
/* Forget the rings (device reset). */
void vq_reset(struct virtq *vq);
/* Whether the device may touch guest memory through this queue (the PCI
 * function's Bus Master Enable); a new queue may. */
void vq_set_dma(struct virtq *vq, bool on);
/* Take the next available chain. iov must hold at least vq->size entries
 * (2.6.5.3.1: no chain is longer than the queue). Returns 1 with *e filled,
 * 0 when the ring is empty, -EPROTO when the ring or the chain is nonsense
 * (the queue is then broken; the caller sets DEVICE_NEEDS_RESET). */
int vq_pop(struct virtq *vq, struct vq_elem *e, struct iovec *iov, unsigned max_iov) WARN_UNUSED;
/* Put back the last popped chain (the device could not take it now). */
void vq_unpop(struct virtq *vq);
/* Return a chain to the driver: used ring entry {head, len = bytes written
 * into the device-writable buffers}, then used->idx with release order.
 * Returns whether the driver asked to be interrupted (2.6.7, 2.6.10:
 * used_event with EVENT_IDX, else VIRTQ_AVAIL_F_NO_INTERRUPT). */
bool vq_push(struct virtq *vq, uint16_t head, uint32_t len) WARN_UNUSED;
/* Before pushing a chain: the device wrote the first len bytes of its
 * device-writable buffers (in, n: from the popped element, or a copy). KVM's
 * dirty log sees only the guest's writes, so every device marks what it
 * wrote here (live migration, see guest_mem.h); the rings vq_push and the
 * notification calls write are marked by them. */
void vq_mark_written(const struct virtq *vq, const struct iovec *in, unsigned n, uint64_t len);
/* n used elements, published with one used->idx update (merged receive
 * buffers); same return as vq_push. */
bool vq_push_batch(struct virtq *vq, const struct virtq_used_elem *elems, unsigned n) WARN_UNUSED;
/* Device-side notification suppression while a thread drains the queue:
 * off asks the driver not to kick; on asks it to kick again and returns
 * true when buffers arrived in between (keep popping, nothing was lost). */
void vq_notify_off(struct virtq *vq);
bool vq_notify_on(struct virtq *vq) WARN_UNUSED;
/* Whether there are chains to pop (acquire-ordered read of avail->idx). */
bool vq_has_work(struct virtq *vq);

/* Scatter-gather helpers over guest buffers. Offsets and lengths are bytes;
 * they copy what fits and return the number of bytes copied. */
size_t vq_iov_read(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len);
size_t vq_iov_write(const struct iovec *iov, unsigned n, size_t off, const void *buf, size_t len);
/* The part [off, off + len) of iov as a new vector in out (at most max
 * entries); returns the entry count, or -1 when it does not fit in max or
 * iov is shorter than off + len. */
int vq_iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len, struct iovec *out,
		 unsigned max);

/* ---- transport <-> device ---------------------------------------------- */

struct vm;
struct virtio_dev;
struct state_buf;

struct virtio_dev_info {
	const char *name;    /* for messages and stats: "virtio-scsi" */
	uint16_t device_id;  /* VIRTIO_ID_* */
	uint32_t class_code; /* PCI class (base << 16 | sub << 8 | prog-if) */
	/* Device feature bits; the transport adds VIRTIO_F_VERSION_1,
	 * VIRTIO_F_INDIRECT_DESC and VIRTIO_F_EVENT_IDX. */
	uint64_t features;
	unsigned num_queues; /* 1..64 */
	uint16_t queue_size; /* largest size a queue may use, power of two */
	unsigned cfg_size;   /* device-specific configuration bytes, <= 4096 */
};

struct virtio_dev_ops {
	/* Called once by the transport, before any other op: the transport
	 * the model reaches its queues and interrupts through. */
	void (*bind)(void *opaque, struct virtio_dev *vdev);
	/* Device-specific configuration (4.1.4.6); off + size <= cfg_size.
	 * Called on a vCPU thread under the transport's lock. */
	uint64_t (*cfg_read)(void *opaque, unsigned off, unsigned size);
	void (*cfg_write)(void *opaque, unsigned off, unsigned size, uint64_t val);
	/* The driver set DRIVER_OK: serve the enabled queues with the
	 * negotiated features. 0, or -errno to set DEVICE_NEEDS_RESET. */
	int (*start)(void *opaque, uint64_t features);
	/* Reset or teardown: stop serving; return when no thread of the device
	 * touches guest memory or a queue any more (see the header comment). */
	void (*stop)(void *opaque);
	/* Free the model (after stop). Optional. */
	void (*destroy)(void *opaque);
	/* Optional, for a started device (the registry's quiesce/resume, see
	 * kestrel/device.h): quiesce stops the threads and completes every
	 * request taken from a queue (or puts it back: the queue's last_avail
	 * moves back), keeping the state; resume starts the threads again,
	 * after a quiesce or a load. 0 or -errno (DEVICE_NEEDS_RESET). */
	void (*quiesce)(void *opaque);
	int (*resume)(void *opaque);
	/* Optional: the model's own section inside the transport's. load
	 * validates everything, then replaces the model's state; the model is
	 * stopped or quiesced when it is called. features: the driver's;
	 * started: whether the loaded device is live (DRIVER_OK accepted), in
	 * which case resume() follows. */
	int (*save)(void *opaque, struct state_buf *out);
	int (*load)(void *opaque, struct state_buf *in, uint64_t features, bool started);
};

/* A device model ready to sit behind a transport: what virtio_scsi_new()
 * and virtio_net_new() give the machine, which picks the transport and its
 * place (virtio_pci_create). Until then the model is freed with
 * ops->destroy(opaque). */
struct virtio_model {
	struct virtio_dev_info info;
	const struct virtio_dev_ops *ops;
	void *opaque;
};

/* Create a modern virtio-pci function for a device model and attach it to
 * the PCI host at slot (1..31, or -1: first free); INTA# reaches the GSI the
 * host's routing table names for the slot. vm may be NULL (unit tests): no
 * ioeventfd, irqfd or MSI routes; interrupts are then dropped. Returns the
 * bus device (the machine frees it through its ops->destroy, which calls
 * stop and destroy of the model). On failure the model is destroyed too:
 * the caller must not free it again. */
int virtio_pci_create(struct vm *vm, struct device *pci_host, int slot,
		      const struct virtio_dev_info *info, const struct virtio_dev_ops *ops,
		      void *opaque, struct virtio_dev **out) WARN_UNUSED;
struct device *virtio_dev_device(struct virtio_dev *vdev);
/* The model behind a transport device, if it is a virtio device of that
 * type (NULL otherwise): how a caller holding only the struct device (the
 * control socket, a test) finds e.g. the virtio-scsi controller. */
void *virtio_device_model(struct device *dev, uint16_t device_id);
/* The PCI slot the function sits in. */
int virtio_dev_slot(const struct virtio_dev *vdev);

/* For the device model, from any of its threads. */
const struct guest_mem *virtio_gm(const struct virtio_dev *vdev);
struct virtq *virtio_queue(struct virtio_dev *vdev, unsigned q);
bool virtio_queue_enabled(const struct virtio_dev *vdev, unsigned q);
int virtio_queue_kick_fd(const struct virtio_dev *vdev, unsigned q);
/* Interrupt the driver for queue q (its MSI-X vector, or INTx with ISR bit 0). */
void virtio_queue_interrupt(struct virtio_dev *vdev, unsigned q);
/* Configuration changed (4.1.4.3.1: config_generation moves, config vector
 * or ISR bit 1). */
void virtio_config_changed(struct virtio_dev *vdev);
/* 2.1.2: the device hit an error it cannot recover from without a reset. */
void virtio_set_needs_reset(struct virtio_dev *vdev, const char *why);
/* Whether DEVICE_NEEDS_RESET is set (tests, stats). */
bool virtio_needs_reset(const struct virtio_dev *vdev);
/* Unit tests: a transport made without a VM gets the guest memory its
 * queues live in (with a VM it is the VM's). */
void virtio_pci_set_guest_mem(struct device *dev, const struct guest_mem *gm);

#endif
