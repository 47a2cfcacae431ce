/* Split virtqueues (virtio v1.1 2.6), device side.
 *
 * Every value read from the rings is the guest's and hostile: indices are
 * bounded by the queue size, each descriptor is copied out of guest RAM once
 * and only the copy is used (no check-then-use), every buffer goes through
 * gm_ptr() for its whole length, chains are walked with a counter so a loop
 * ends the walk, and anything that breaks 2.6's rules marks the queue broken
 * (the device then sets DEVICE_NEEDS_RESET). Barriers follow 2.6.13/2.6.7:
 * acquire after reading avail->idx, release before writing used->idx, and a
 * full fence between publishing used->idx (or avail_event) and reading the
 * driver's suppression fields.
 *
 * Threads: the device's I/O threads pop while a vCPU thread may reset or
 * re-enable the queue (device_status 0, queue_enable). Every function that
 * reads the ring state -- ready, size, the ring pointers, last_avail -- holds
 * vq->lock for its whole use of it, so a reset waits for a pop in progress
 * and a pop never sees half of a reset (issue #9). The lock is uncontended
 * but for vq_push from the block layer's completion threads. */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kestrel/virtio.h"

#define VQ_DESC_SIZE	  16
#define VQ_AVAIL_FLAGS	  0
#define VQ_AVAIL_IDX	  2
#define VQ_AVAIL_RING	  4
#define VQ_USED_FLAGS	  0
#define VQ_USED_IDX	  2
#define VQ_USED_RING	  4
#define VQ_USED_ELEM_SIZE 8

/* 2.6 "Queue Part sizes": both rings always have room for the event field. */
static uint64_t vq_avail_bytes(uint16_t size)
{
	return 6 + 2ULL * size;
}

static uint64_t vq_used_bytes(uint16_t size)
{
	return 6 + (uint64_t)VQ_USED_ELEM_SIZE * size;
}

/* 16-bit ring fields are 2-aligned (vq_init checks the ring alignment), so
 * these are single atomic accesses the driver can race with safely. */
static uint16_t vq_load16(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED));
}

static uint16_t vq_load16_acquire(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE));
}

static void vq_store16(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELAXED);
}

static void vq_store16_release(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELEASE);
}

static void vq_store32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)(void *)p, htole32(v), __ATOMIC_RELAXED);
}

static uint8_t *vq_used_event(const struct virtq *vq)
{
	return vq->avail + VQ_AVAIL_RING + 2u * vq->size;
}

static uint8_t *vq_avail_event(const struct virtq *vq)
{
	return vq->used + VQ_USED_RING + (size_t)VQ_USED_ELEM_SIZE * vq->size;
}

static bool vq_dma_off(const struct virtq *vq)
{
	return __atomic_load_n(&vq->dma_off, __ATOMIC_ACQUIRE);
}

void vq_set_dma(struct virtq *vq, bool on)
{
	__atomic_store_n(&vq->dma_off, !on, __ATOMIC_RELEASE);
}

void vq_init_empty(struct virtq *vq)
{
	memset(vq, 0, sizeof(*vq));
	pthread_mutex_init(&vq->lock, NULL);
}

void vq_reset(struct virtq *vq)
{
	pthread_mutex_lock(&vq->lock);
	vq->gm = NULL;
	vq->size = 0;
	vq->ready = vq->broken = vq->event_idx = vq->indirect = false;
	vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
	vq->desc = vq->avail = vq->used = NULL;
	vq->last_avail = vq->used_idx = vq->signalled_used = 0;
	vq->signalled_valid = false;
	pthread_mutex_unlock(&vq->lock);
}

/* Host views of the three ring areas, or -EINVAL. */
static int vq_map(const struct guest_mem *gm, uint16_t size, uint64_t desc, uint64_t avail,
		  uint64_t used, uint8_t **d, uint8_t **a, uint8_t **u)
{
	if (size == 0 || (size & (size - 1)) || size > VIRTQ_MAX_SIZE)
		return -EINVAL;
	/* 2.6 table "Virtqueue Part Alignment": 16, 2, 4. */
	if ((desc & 15) || (avail & 1) || (used & 3))
		return -EINVAL;
	*d = gm_ptr(gm, desc, (uint64_t)VQ_DESC_SIZE * size);
	*a = gm_ptr(gm, avail, vq_avail_bytes(size));
	*u = gm_ptr(gm, used, vq_used_bytes(size));
	return *d && *a && *u ? 0 : -EINVAL;
}

int vq_check(const struct guest_mem *gm, uint16_t size, uint64_t desc, uint64_t avail,
	     uint64_t used)
{
	uint8_t *d, *a, *u;

	return gm ? vq_map(gm, size, desc, avail, used, &d, &a, &u) : -EINVAL;
}

int vq_init(struct virtq *vq, const struct guest_mem *gm, uint16_t size, uint64_t desc,
	    uint64_t avail, uint64_t used, uint64_t features)
{
	uint8_t *d, *a, *u;

	vq_reset(vq);
	if (vq_map(gm, size, desc, avail, used, &d, &a, &u))
		return -EINVAL;
	pthread_mutex_lock(&vq->lock);
	vq->gm = gm;
	vq->size = size;
	vq->desc_gpa = desc;
	vq->avail_gpa = avail;
	vq->used_gpa = used;
	vq->desc = d;
	vq->avail = a;
	vq->used = u;
	vq->event_idx = features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	vq->indirect = features & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	vq->ready = true;
	pthread_mutex_unlock(&vq->lock);
	return 0;
}

void vq_state_get(struct virtq *vq, struct virtq_state *s)
{
	pthread_mutex_lock(&vq->lock);
	*s = (struct virtq_state){
		.last_avail = vq->last_avail,
		.used_idx = vq->used_idx,
		.signalled_used = vq->signalled_used,
		.signalled_valid = vq->signalled_valid,
		.broken = vq->broken,
	};
	pthread_mutex_unlock(&vq->lock);
}

int vq_restore(struct virtq *vq, const struct guest_mem *gm, uint16_t size, uint64_t desc,
	       uint64_t avail, uint64_t used, uint64_t features, const struct virtq_state *s)
{
	int ret = vq_init(vq, gm, size, desc, avail, used, features);

	if (ret)
		return ret;
	pthread_mutex_lock(&vq->lock);
	vq->last_avail = s->last_avail;
	vq->used_idx = s->used_idx;
	vq->signalled_used = s->signalled_used;
	vq->signalled_valid = s->signalled_valid;
	vq->broken = s->broken;
	pthread_mutex_unlock(&vq->lock);
	return 0;
}

/* Log once per breakage (the flag stays until the device is reset). */
PRINTF_LIKE(2, 3) static int vq_break(struct virtq *vq, const char *fmt, ...)
{
	char msg[160];
	va_list ap;

	if (!vq->broken) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		kwarn("virtqueue at %#llx: %s; the device needs a reset",
		      (unsigned long long)vq->desc_gpa, msg);
	}
	vq->broken = true;
	return -EPROTO;
}

/* The walk of one chain: where buffers go and what has been seen. */
struct vq_walk {
	struct iovec *iov;
	unsigned max, n;
	unsigned out_num;
	bool in_seen;
	uint64_t out_len, in_len;
};

/* Copy descriptor i of a table out of guest RAM; the main table was
 * validated by vq_init, an indirect one goes through the accessor. */
static int vq_read_desc(const struct virtq *vq, uint64_t table, bool indirect, uint16_t i,
			struct virtq_desc *out)
{
	struct virtq_desc raw;

	if (!indirect)
		memcpy(&raw, vq->desc + (size_t)i * VQ_DESC_SIZE, sizeof(raw));
	else if (gm_read(vq->gm, table + (uint64_t)i * VQ_DESC_SIZE, &raw, sizeof(raw)))
		return -EFAULT;
	out->addr = le64toh(raw.addr);
	out->len = le32toh(raw.len);
	out->flags = le16toh(raw.flags);
	out->next = le16toh(raw.next);
	return 0;
}

/* One buffer of the chain: RAM for its whole length, writable ones last. */
static int vq_walk_add(struct virtq *vq, struct vq_walk *w, const struct virtq_desc *d)
{
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	void *p;

	if (!writable && w->in_seen)
		return vq_break(vq, "device-readable descriptor after a writable one");
	if (writable)
		w->in_seen = true;
	if (d->len == 0)
		return 0;
	p = gm_ptr(vq->gm, d->addr, d->len);
	if (!p)
		return vq_break(vq, "buffer %#llx+%u is not guest RAM", (unsigned long long)d->addr,
				d->len);
	if (w->n >= w->max)
		return vq_break(vq, "chain has more than %u buffers", w->max);
	w->iov[w->n].iov_base = p;
	w->iov[w->n].iov_len = d->len;
	w->n++;
	if (writable) {
		w->in_len += d->len;
	} else {
		w->out_num++;
		w->out_len += d->len;
	}
	return 0;
}

/* 2.6.5.3: switch the walk to an indirect table. */
static int vq_walk_indirect(struct virtq *vq, const struct virtq_desc *d, uint64_t *table,
			    uint32_t *tsize)
{
	if (!vq->indirect)
		return vq_break(vq, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
	if (d->flags & VIRTQ_DESC_F_NEXT)
		return vq_break(vq, "descriptor with both INDIRECT and NEXT");
	if (d->len == 0 || d->len % VQ_DESC_SIZE || d->len / VQ_DESC_SIZE > vq->size)
		return vq_break(vq, "indirect table of %u bytes", d->len);
	if (!gm_ptr(vq->gm, d->addr, d->len))
		return vq_break(vq, "indirect table %#llx+%u is not guest RAM",
				(unsigned long long)d->addr, d->len);
	*table = d->addr;
	*tsize = d->len / VQ_DESC_SIZE;
	return 0;
}

static int vq_walk_chain(struct virtq *vq, uint16_t head, struct vq_walk *w)
{
	uint64_t table = vq->desc_gpa;
	uint32_t tsize = vq->size, seen = 0;
	bool indirect = false;
	struct virtq_desc d;
	uint32_t i = head;

	for (;;) {
		if (i >= tsize)
			return vq_break(vq, "descriptor index %u out of a table of %u", i, tsize);
		/* A table of n entries holds no chain longer than n: more is a loop. */
		if (++seen > tsize)
			return vq_break(vq, "descriptor chain loops (head %u)", head);
		if (vq_read_desc(vq, table, indirect, (uint16_t)i, &d))
			return vq_break(vq, "indirect descriptor %u unreadable", i);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			/* 2.6.5.3.1: no nested tables, no indirect inside one. */
			if (indirect)
				return vq_break(vq, "indirect descriptor inside an indirect table");
			if (vq_walk_indirect(vq, &d, &table, &tsize))
				return -EPROTO;
			indirect = true;
			seen = 0;
			i = 0;
			continue;
		}
		if (vq_walk_add(vq, w, &d))
			return -EPROTO;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = d.next;
	}
}

#ifdef KESTREL_VQ_TEST_HOOKS
void (*vq_test_pop_hook)(struct virtq *vq);
#define VQ_TEST_POP_HOOK(vq)                  \
	do {                                  \
		if (vq_test_pop_hook)         \
			vq_test_pop_hook(vq); \
	} while (0)
#else
#define VQ_TEST_POP_HOOK(vq) \
	do {                 \
	} while (0)
#endif

/* vq->lock held. */
static int vq_pop_locked(struct virtq *vq, struct vq_elem *e, struct iovec *iov, unsigned max_iov)
{
	struct vq_walk w = { .iov = iov, .max = max_iov };
	uint16_t avail_idx, pending, head;

	if (vq->broken)
		return -EPROTO;
	if (!vq->ready || vq_dma_off(vq))
		return 0;
	/* Tests pause here (tests/check_virtqueue.c): between finding the
	 * queue ready and reading its rings, where a reset once slipped in. */
	VQ_TEST_POP_HOOK(vq);
	avail_idx = vq_load16_acquire(vq->avail + VQ_AVAIL_IDX);
	pending = (uint16_t)(avail_idx - vq->last_avail);
	if (pending == 0)
		return 0;
	if (pending > vq->size)
		return vq_break(vq, "avail idx %u is %u entries ahead of %u", avail_idx, pending,
				vq->last_avail);
	head = vq_load16(vq->avail + VQ_AVAIL_RING + 2u * (vq->last_avail & (vq->size - 1)));
	if (vq_walk_chain(vq, head, &w))
		return -EPROTO;
	vq->last_avail++;
	e->head = head;
	e->iov = iov;
	e->out_num = w.out_num;
	e->in_num = w.n - w.out_num;
	e->out_len = w.out_len;
	e->in_len = w.in_len;
	return 1;
}

int vq_pop(struct virtq *vq, struct vq_elem *e, struct iovec *iov, unsigned max_iov)
{
	int r;

	pthread_mutex_lock(&vq->lock);
	r = vq_pop_locked(vq, e, iov, max_iov);
	pthread_mutex_unlock(&vq->lock);
	return r;
}

void vq_unpop(struct virtq *vq)
{
	pthread_mutex_lock(&vq->lock);
	if (vq->ready)
		vq->last_avail--;
	pthread_mutex_unlock(&vq->lock);
}

bool vq_has_work(struct virtq *vq)
{
	bool work = false;

	pthread_mutex_lock(&vq->lock);
	if (vq->ready && !vq->broken && !vq_dma_off(vq))
		work = vq_load16_acquire(vq->avail + VQ_AVAIL_IDX) != vq->last_avail;
	pthread_mutex_unlock(&vq->lock);
	return work;
}

/* 2.6.7.2 / 2.6.10: called with lock held right after used->idx moved. */
static bool vq_need_interrupt(struct virtq *vq)
{
	uint16_t old = vq->signalled_used, now = vq->used_idx, event;
	bool valid = vq->signalled_valid;

	/* used->idx must be visible before the driver's fields are read. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(vq_load16(vq->avail + VQ_AVAIL_FLAGS) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	vq->signalled_used = now;
	vq->signalled_valid = true;
	if (!valid)
		return true;
	event = vq_load16(vq_used_event(vq));
	/* vring_need_event(): the driver's event index lies in [old, now). */
	return (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

/* The used ring is written by the device only (rings, flags, avail_event):
 * tell guest memory's dirty log, after the write. */
static void vq_used_written(const struct virtq *vq)
{
	gm_mark_dirty_hva(vq->gm, vq->used, vq_used_bytes(vq->size));
}

void vq_mark_written(const struct virtq *vq, const struct iovec *in, unsigned n, uint64_t len)
{
	const struct guest_mem *gm = vq->gm;

	if (gm && len)
		gm_mark_dirty_iov(gm, in, n, len);
}

bool vq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
	uint8_t *elem;
	bool notify;

	pthread_mutex_lock(&vq->lock);
	if (!vq->ready) {
		pthread_mutex_unlock(&vq->lock);
		return false;
	}
	elem = vq->used + VQ_USED_RING +
	       (size_t)VQ_USED_ELEM_SIZE * (vq->used_idx & (vq->size - 1));
	vq_store32(elem, head);
	vq_store32(elem + 4, len);
	vq->used_idx++;
	vq_store16_release(vq->used + VQ_USED_IDX, vq->used_idx);
	vq_used_written(vq);
	notify = vq_need_interrupt(vq);
	pthread_mutex_unlock(&vq->lock);
	return notify;
}

/* Several chains made visible at once: every element first, then one
 * used->idx store. A merged receive buffer (5.1.6.4, num_buffers > 1) must
 * not be seen by the driver before all its chains are there. */
bool vq_push_batch(struct virtq *vq, const struct virtq_used_elem *elems, unsigned n)
{
	bool notify;

	if (n == 0)
		return false;
	pthread_mutex_lock(&vq->lock);
	if (!vq->ready) {
		pthread_mutex_unlock(&vq->lock);
		return false;
	}
	for (unsigned i = 0; i < n; i++) {
		uint8_t *elem =
			vq->used + VQ_USED_RING +
			(size_t)VQ_USED_ELEM_SIZE * ((uint16_t)(vq->used_idx + i) & (vq->size - 1));

		vq_store32(elem, elems[i].id);
		vq_store32(elem + 4, elems[i].len);
	}
	vq->used_idx = (uint16_t)(vq->used_idx + n);
	vq_store16_release(vq->used + VQ_USED_IDX, vq->used_idx);
	vq_used_written(vq);
	notify = vq_need_interrupt(vq);
	pthread_mutex_unlock(&vq->lock);
	return notify;
}

void vq_notify_off(struct virtq *vq)
{
	pthread_mutex_lock(&vq->lock);
	/* With EVENT_IDX, leaving avail_event behind already stops kicks. */
	if (vq->ready && !vq->event_idx && !vq_dma_off(vq)) {
		vq_store16(vq->used + VQ_USED_FLAGS, VIRTQ_USED_F_NO_NOTIFY);
		vq_used_written(vq);
	}
	pthread_mutex_unlock(&vq->lock);
}

bool vq_notify_on(struct virtq *vq)
{
	bool more = false;

	pthread_mutex_lock(&vq->lock);
	if (vq->ready && !vq->broken && !vq_dma_off(vq)) {
		if (vq->event_idx)
			vq_store16(vq_avail_event(vq), vq->last_avail);
		else
			vq_store16(vq->used + VQ_USED_FLAGS, 0);
		vq_used_written(vq);
		/* The store must be visible before avail->idx is read again, or a
		 * buffer added in between would never be kicked (2.6.10.1). */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		more = vq_load16_acquire(vq->avail + VQ_AVAIL_IDX) != vq->last_avail;
	}
	pthread_mutex_unlock(&vq->lock);
	return more;
}

/* ---- scatter-gather helpers ---- */

/* Copy up to len bytes between buf and the scatter list from byte off of it:
 * into buf (to_iov false) or out of it (to_iov true). Returns the bytes
 * copied (fewer where the list ends first). */
static size_t vq_iov_copy(const struct iovec *iov, unsigned n, size_t off, uint8_t *buf, size_t len,
			  bool to_iov)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t seg = iov[i].iov_len, chunk;
		uint8_t *at;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		at = (uint8_t *)iov[i].iov_base + off;
		chunk = MIN(seg - off, len - done);
		if (to_iov)
			memcpy(at, buf + done, chunk);
		else
			memcpy(buf + done, at, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

size_t vq_iov_read(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len)
{
	return vq_iov_copy(iov, n, off, buf, len, false);
}

size_t vq_iov_write(const struct iovec *iov, unsigned n, size_t off, const void *buf, size_t len)
{
	return vq_iov_copy(iov, n, off, (uint8_t *)buf, len, true);
}

int vq_iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len, struct iovec *out,
		 unsigned max)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n && len > 0; i++) {
		size_t seg = iov[i].iov_len, chunk;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		if (k >= max)
			return -1;
		chunk = MIN(seg - off, len);
		out[k].iov_base = (uint8_t *)iov[i].iov_base + off;
		out[k].iov_len = chunk;
		k++;
		len -= chunk;
		off = 0;
	}
	return len ? -1 : (int)k;
}
