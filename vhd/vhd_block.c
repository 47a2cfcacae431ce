/* The VHD format of the block layer (blk_vhd_ops). Guest data goes through
 * the disk's engine (io_uring where available), straight into the image's
 * blocks; metadata updates run on one thread per writable image ("vhd-meta"),
 * one sequence at a time:
 *  - allocation: writes to unallocated blocks are gathered per block (a second
 *    request to a block being allocated waits for it, so a block is allocated
 *    once), then allocated in a batch with vhd_io.c's protocol: footer moved
 *    and synced, data written through the engine, bitmaps written, synced,
 *    BAT entries written;
 *  - flush: data synced, then differencing bitmaps written and synced;
 *  - a dynamic block whose bitmap is partial gets an all-ones bitmap first.
 * A write is acknowledged once its data (and for a new block, its BAT entry)
 * is written; a guest flush makes everything acknowledged before it durable. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kestrel/block.h"
#include "kestrel/sandbox.h"
#include "vhd_int.h"

struct vbd;

struct vreq {
	struct blk_req *req;
	struct vbd *b;
	atomic_int pending;
	atomic_int status;
	bool flush_after; /* FUA: a flush before done() */
};

/* One file I/O of a request, or a write segment within one block. */
struct vseg {
	struct blk_io io;
	struct vreq *r;
	struct vhd_image *img;
	uint64_t off, len; /* guest bytes */
	bool write, zero, set_bits, in_batch;
	struct valloc *alloc; /* in_batch: the allocation it belongs to */
	struct vseg *next;
	void *bounce;	    /* cache=none and unaligned guest buffers */
	struct iovec *ziov; /* WRITE_ZEROES written as zeroes */
	struct iovec biov;
	int iovcnt;
	struct iovec iov[];
};

#define VBD_ZERO_CHUNK	   (1u << 20)
#define VBD_FIXED_ZERO_SEG (64u << 20) /* WRITE_ZEROES pieces on a fixed disk */

struct valloc {
	uint32_t block;
	bool running, already;
	int status;	      /* of the allocation: its segments' result */
	struct vseg *segs;    /* written by the allocation itself */
	struct vseg *waiters; /* arrived while it ran: written after */
	struct valloc *next;
};

enum vjob_kind { VJOB_FLUSH, VJOB_FILL };
struct vjob {
	enum vjob_kind kind;
	struct vreq *r;
	struct vseg *seg;
	struct vjob *next;
};

struct vbd {
	struct blk_dev *d;
	struct vhd_image *img;
	pthread_mutex_t lock; /* jobs, allocations, batch counters */
	pthread_cond_t wake;
	pthread_cond_t batch_done;
	pthread_t worker;
	bool worker_started, stop;
	struct vjob *jobs, **jobs_tail;
	struct valloc *allocs;
	unsigned nqueued;
	unsigned batch_inflight;
	atomic_uint requests; /* guest requests not yet done() */
	atomic_bool closing;  /* vbd_close waits for requests == 0 */
	pthread_cond_t idle;
};

static void write_seg(struct vbd *b, struct vseg *s);

/* ---- iovec helpers ----------------------------------------------------------- */

static int iov_slice(const struct iovec *src, int cnt, uint64_t skip, uint64_t len,
		     struct iovec *dst)
{
	int n = 0;

	for (int i = 0; i < cnt && len > 0; i++) {
		uint64_t l = src[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		dst[n].iov_base = (uint8_t *)src[i].iov_base + skip;
		dst[n].iov_len = (size_t)MIN(l - skip, len);
		len -= dst[n].iov_len;
		skip = 0;
		n++;
	}
	return n;
}

static void iov_zero(const struct iovec *src, int cnt, uint64_t skip, uint64_t len)
{
	for (int i = 0; i < cnt && len > 0; i++) {
		uint64_t l = src[i].iov_len, n;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		n = MIN(l - skip, len);
		memset((uint8_t *)src[i].iov_base + skip, 0, (size_t)n);
		len -= n;
		skip = 0;
	}
}

static uint64_t iov_total(const struct iovec *iov, int cnt)
{
	uint64_t t = 0;

	for (int i = 0; i < cnt; i++)
		t += iov[i].iov_len;
	return t;
}

/* ---- requests -------------------------------------------------------------------- */

static void queue_job(struct vbd *b, enum vjob_kind kind, struct vreq *r, struct vseg *s);

static void vreq_put(struct vreq *r, int status)
{
	struct vbd *b = r->b;
	int zero = 0;

	if (status)
		atomic_compare_exchange_strong(&r->status, &zero, status);
	if (atomic_fetch_sub(&r->pending, 1) != 1)
		return;
	if (r->flush_after && atomic_load(&r->status) == 0) {
		r->flush_after = false;
		atomic_store(&r->pending, 1);
		queue_job(b, VJOB_FLUSH, r, NULL);
		return;
	}
	r->req->done(r->req, atomic_load(&r->status));
	if (atomic_fetch_sub(&b->requests, 1) == 1 && atomic_load(&b->closing)) {
		pthread_mutex_lock(&b->lock);
		pthread_cond_broadcast(&b->idle);
		pthread_mutex_unlock(&b->lock);
	}
}

static struct vseg *seg_new(struct vreq *r, struct vhd_image *img, uint64_t off, uint64_t len,
			    const struct iovec *iov, int cnt, uint64_t skip)
{
	struct vseg *s = calloc(1, sizeof(*s) + (size_t)(iov ? cnt : 0) * sizeof(struct iovec));

	if (!s)
		return NULL;
	s->r = r;
	s->img = img;
	s->off = off;
	s->len = len;
	s->zero = !iov;
	if (iov)
		s->iovcnt = iov_slice(iov, cnt, skip, len, s->iov);
	atomic_fetch_add(&r->pending, 1);
	return s;
}

static void seg_finish(struct vseg *s, int status)
{
	if (s->write)
		vhd_write_done(s->img, s->off, s->len, s->set_bits, status);
	vreq_put(s->r, status);
	free(s->bounce);
	free(s->ziov);
	free(s);
}

/* The zero source: one read-only anonymous mapping (the shared zero page). */
static const void *vbd_zero_buf;
static pthread_once_t vbd_zero_once = PTHREAD_ONCE_INIT;

static void vbd_zero_init(void)
{
	void *p = mmap(NULL, VBD_ZERO_CHUNK, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	vbd_zero_buf = p == MAP_FAILED ? NULL : p;
}

static void io_submit_seg(struct vbd *b, struct vseg *s, enum blk_io_op op, int fd,
			  uint64_t file_off);

/* The file system has no FALLOC_FL_ZERO_RANGE: write zeroes instead. */
static bool seg_zero_as_write(struct vseg *s)
{
	size_t n = (size_t)((s->len + VBD_ZERO_CHUNK - 1) / VBD_ZERO_CHUNK);
	uint64_t left = s->len;

	pthread_once(&vbd_zero_once, vbd_zero_init);
	if (!vbd_zero_buf || s->ziov || n > BLK_MAX_IOV || !(s->ziov = calloc(n, sizeof(*s->ziov))))
		return false;
	for (size_t i = 0; i < n; i++) {
		s->ziov[i].iov_base = (void *)vbd_zero_buf;
		s->ziov[i].iov_len = (size_t)MIN(left, VBD_ZERO_CHUNK);
		left -= s->ziov[i].iov_len;
	}
	s->io.iov = s->ziov;
	s->io.iovcnt = (int)n;
	io_submit_seg(s->r->b, s, BLK_IO_WRITE, s->io.fd, s->io.off);
	return true;
}

static void iov_copy(const struct iovec *iov, int cnt, uint8_t *flat, uint64_t len, bool to_iov)
{
	for (int i = 0; i < cnt && len > 0; i++) {
		size_t n = (size_t)MIN(len, iov[i].iov_len);

		if (to_iov)
			memcpy(iov[i].iov_base, flat, n);
		else
			memcpy(flat, iov[i].iov_base, n);
		flat += n;
		len -= n;
	}
}

static void seg_done(struct blk_io *io, long res)
{
	struct vseg *s = (struct vseg *)((uint8_t *)io - offsetof(struct vseg, io));
	uint64_t want = io->op == BLK_IO_READ || io->op == BLK_IO_WRITE ? s->len : 0;
	int st = res < 0 ? (int)res : (uint64_t)res == want ? 0 : -EIO;
	struct vbd *b = s->r->b;

	if (io->op == BLK_IO_ZERO && (st == -EOPNOTSUPP || st == -EINVAL) && seg_zero_as_write(s))
		return;
	if (io->op == BLK_IO_READ && s->bounce && st == 0)
		iov_copy(s->iov, s->iovcnt, s->bounce, s->len, true);

	if (s->in_batch) {
		pthread_mutex_lock(&b->lock);
		if (st && !s->alloc->status)
			s->alloc->status = st;
		if (--b->batch_inflight == 0)
			pthread_cond_signal(&b->batch_done);
		pthread_mutex_unlock(&b->lock);
		return;
	}
	seg_finish(s, st);
}

/* Without an engine (a tool or test that opened the format directly) the
 * I/O runs here, synchronously. */
static long io_exec_sync(struct blk_io *io)
{
	uint64_t done = 0, want = iov_total(io->iov, io->iovcnt);

	if (io->op == BLK_IO_ZERO)
		return fallocate(io->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)io->off,
				 (off_t)io->len) < 0
			       ? -errno
			       : 0;
	while (done < want) {
		struct iovec v[BLK_MAX_IOV];
		int n = iov_slice(io->iov, io->iovcnt, done, want - done, v);
		ssize_t r = io->op == BLK_IO_READ ? preadv(io->fd, v, n, (off_t)(io->off + done))
						  : pwritev(io->fd, v, n, (off_t)(io->off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : (long)done;
		done += (uint64_t)r;
	}
	return (long)done;
}

static bool iov_aligned(const struct iovec *iov, int cnt, unsigned align)
{
	for (int i = 0; i < cnt; i++)
		if ((uintptr_t)iov[i].iov_base % align || iov[i].iov_len % align)
			return false;
	return true;
}

/* O_DIRECT wants aligned memory: unaligned guest buffers go through a bounce
 * buffer (as block_raw.c does). */
static int seg_bounce(struct vbd *b, struct vseg *s, enum blk_io_op op, int fd)
{
	unsigned align = b->d->dio_mem_align;

	if (s->bounce || s->ziov || fd != b->d->fd || align <= 1 ||
	    (op != BLK_IO_READ && op != BLK_IO_WRITE) || iov_aligned(s->iov, s->iovcnt, align))
		return 0;
	if (posix_memalign(&s->bounce, MAX(align, 4096u), s->len)) {
		s->bounce = NULL;
		return -ENOMEM;
	}
	if (op == BLK_IO_WRITE)
		iov_copy(s->iov, s->iovcnt, s->bounce, s->len, false);
	s->biov = (struct iovec){ .iov_base = s->bounce, .iov_len = (size_t)s->len };
	return 0;
}

static void io_submit_seg(struct vbd *b, struct vseg *s, enum blk_io_op op, int fd,
			  uint64_t file_off)
{
	int ret = seg_bounce(b, s, op, fd);

	if (ret) {
		seg_done(&s->io, ret);
		return;
	}
	s->io.op = op;
	s->io.fd = fd;
	s->io.off = file_off;
	if (!s->ziov) {
		s->io.iov = s->bounce ? &s->biov : s->iov;
		s->io.iovcnt = s->bounce ? 1 : s->iovcnt;
	}
	s->io.len = s->len;
	s->io.done = seg_done;
	if (!b->d->engine) {
		seg_done(&s->io, io_exec_sync(&s->io));
		return;
	}
	ret = blk_engine_submit(b->d->engine, &s->io);
	if (ret)
		seg_done(&s->io, ret);
}

/* The top image's data goes through the disk's descriptor (which may be
 * O_DIRECT); parents are read through their own. */
static int data_fd(struct vbd *b, struct vhd_image *img)
{
	return img == b->img ? b->d->fd : img->fd;
}

/* ---- reads -------------------------------------------------------------------- */

static int submit_read(struct vbd *b, struct vreq *r, struct vhd_image *img, uint64_t off,
		       uint64_t len, const struct iovec *iov, int cnt, uint64_t skip)
{
	while (len > 0) {
		struct vhd_run run;
		struct vseg *s;
		int ret = vhd_map(img, off, len, false, &run);

		if (ret)
			return ret;
		if (run.kind == VHD_RUN_FILE) {
			s = seg_new(r, img, off, run.len, iov, cnt, skip);
			if (!s)
				return -ENOMEM;
			io_submit_seg(b, s, BLK_IO_READ, data_fd(b, img), run.file_off);
		} else if (run.kind == VHD_RUN_PARENT && img->parent) {
			ret = submit_read(b, r, img->parent, off, run.len, iov, cnt, skip);
			if (ret)
				return ret;
		} else {
			iov_zero(iov, cnt, skip, run.len);
		}
		off += run.len;
		skip += run.len;
		len -= run.len;
	}
	return 0;
}

/* ---- writes ------------------------------------------------------------------- */

static struct valloc *alloc_find(struct vbd *b, uint32_t block)
{
	for (struct valloc *a = b->allocs; a; a = a->next)
		if (a->block == block)
			return a;
	return NULL;
}

/* Queue a write to an unallocated block; one allocation per block. */
static void alloc_attach(struct vbd *b, struct vseg *s)
{
	uint32_t block = vhd_block_of(b->img, s->off);
	struct valloc *a;

	pthread_mutex_lock(&b->lock);
	a = alloc_find(b, block);
	if (!a) {
		a = calloc(1, sizeof(*a));
		if (!a) {
			pthread_mutex_unlock(&b->lock);
			seg_finish(s, -ENOMEM);
			return;
		}
		a->block = block;
		a->next = b->allocs;
		b->allocs = a;
		b->nqueued++;
		pthread_cond_signal(&b->wake);
	}
	if (a->running) {
		s->next = a->waiters;
		a->waiters = s;
	} else {
		s->next = a->segs;
		a->segs = s;
	}
	pthread_mutex_unlock(&b->lock);
}

static void write_seg(struct vbd *b, struct vseg *s)
{
	struct vhd_run run;
	int ret = vhd_map(b->img, s->off, s->len, true, &run);

	if (ret) {
		seg_finish(s, ret);
		return;
	}
	s->set_bits = run.set_bits;
	if (run.kind == VHD_RUN_FILE && run.fill_bitmap)
		queue_job(b, VJOB_FILL, NULL, s);
	else if (run.kind == VHD_RUN_FILE)
		io_submit_seg(b, s, s->zero ? BLK_IO_ZERO : BLK_IO_WRITE, data_fd(b, b->img),
			      run.file_off);
	else if (s->zero && b->img->m.type == VHD_TYPE_DYNAMIC)
		seg_finish(s, 0); /* an unallocated dynamic block already reads as zeros */
	else
		alloc_attach(b, s);
}

static int submit_write(struct vbd *b, struct vreq *r, uint64_t off, uint64_t len,
			const struct iovec *iov, int cnt)
{
	const struct vhd_meta *m = &b->img->m;
	uint64_t skip = 0;

	while (len > 0) {
		uint64_t n = m->type != VHD_TYPE_FIXED
				     ? MIN(len, m->block_size - off % m->block_size)
			     : iov ? len
				   : MIN(len, VBD_FIXED_ZERO_SEG);
		struct vseg *s = seg_new(r, b->img, off, n, iov, cnt, skip);

		if (!s)
			return -ENOMEM;
		s->write = true;
		write_seg(b, s);
		off += n;
		skip += n;
		len -= n;
	}
	return 0;
}

/* ---- the metadata thread ------------------------------------------------------ */

static void queue_job(struct vbd *b, enum vjob_kind kind, struct vreq *r, struct vseg *s)
{
	struct vjob *j = calloc(1, sizeof(*j));

	if (!j) {
		if (s)
			seg_finish(s, -ENOMEM);
		else
			vreq_put(r, -ENOMEM);
		return;
	}
	j->kind = kind;
	j->r = r;
	j->seg = s;
	pthread_mutex_lock(&b->lock);
	*b->jobs_tail = j;
	b->jobs_tail = &j->next;
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
}

static void run_job(struct vbd *b, struct vjob *j)
{
	int ret;

	if (j->kind == VJOB_FLUSH) {
		vreq_put(j->r, vhd_flush(b->img));
	} else {
		ret = vhd_fill_bitmap(b->img, vhd_block_of(b->img, j->seg->off));
		if (ret)
			seg_finish(j->seg, ret);
		else
			write_seg(b, j->seg);
	}
	free(j);
}

/* Write every gathered segment into its reserved block through the engine
 * and wait for them all; a failed write fails its own block only. */
static void batch_write_data(struct vbd *b, struct valloc **va, unsigned n, struct vhd_alloc *a)
{
	struct vhd_image *img = b->img;

	pthread_mutex_lock(&b->lock);
	b->batch_inflight = 1; /* held until everything is submitted */
	pthread_mutex_unlock(&b->lock);
	for (unsigned i = 0, k = 0; i < n; i++) {
		if (va[i]->already)
			continue;
		for (struct vseg *s = va[i]->segs; s; s = s->next) {
			uint64_t in = s->off % img->m.block_size;

			vhd_alloc_mark(img, &a[k], in, s->len);
			if (s->zero)
				continue; /* the new block is a hole: it reads as zeros */
			s->in_batch = true;
			s->alloc = va[i];
			pthread_mutex_lock(&b->lock);
			b->batch_inflight++;
			pthread_mutex_unlock(&b->lock);
			io_submit_seg(b, s, BLK_IO_WRITE, data_fd(b, img),
				      a[k].file_off + img->m.bitmap_size + in);
		}
		k++;
	}
	pthread_mutex_lock(&b->lock);
	b->batch_inflight--;
	while (b->batch_inflight)
		pthread_cond_wait(&b->batch_done, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

/* Commit the blocks whose data all landed; the others stay unreferenced
 * space (the image is valid either way) and their writes fail. */
static void batch_commit(struct vbd *b, struct valloc **va, unsigned n, struct vhd_alloc *a)
{
	struct vhd_alloc *ok = calloc(n, sizeof(*ok));
	unsigned k = 0, c = 0;
	int ret;

	for (unsigned i = 0; i < n; i++) {
		if (va[i]->already)
			continue;
		if (va[i]->status || !ok)
			free(a[k].bitmap);
		else
			ok[c++] = a[k];
		if (!ok && !va[i]->status)
			va[i]->status = -ENOMEM;
		k++;
	}
	ret = c ? vhd_alloc_commit(b->img, ok, c, false) : 0;
	for (unsigned i = 0; ret && i < n; i++)
		if (!va[i]->already && !va[i]->status)
			va[i]->status = ret;
	free(ok);
}

static void batch_allocate(struct vbd *b, struct valloc **va, unsigned n)
{
	struct vhd_image *img = b->img;
	struct vhd_alloc *a = calloc(n, sizeof(*a));
	unsigned k = 0;
	int ret;

	pthread_mutex_lock(&img->lock);
	for (unsigned i = 0; i < n; i++) {
		va[i]->already = img->m.bat[va[i]->block] != VHD_BAT_UNUSED;
		if (a && !va[i]->already)
			a[k++].block = va[i]->block;
	}
	pthread_mutex_unlock(&img->lock);
	ret = !a ? -ENOMEM : k ? vhd_alloc_reserve(img, a, k) : 0;
	if (!ret && k) {
		batch_write_data(b, va, n, a);
		batch_commit(b, va, n, a);
	}
	for (unsigned i = 0; ret && i < n; i++)
		va[i]->status = ret;
	free(a);
}

static void run_allocations(struct vbd *b, struct valloc **va, unsigned n)
{
	pthread_mutex_lock(&b->img->meta_lock);
	batch_allocate(b, va, n);
	pthread_mutex_unlock(&b->img->meta_lock);
	pthread_mutex_lock(&b->lock);
	for (unsigned i = 0; i < n; i++) {
		struct valloc **pp = &b->allocs;

		while (*pp != va[i])
			pp = &(*pp)->next;
		*pp = va[i]->next;
	}
	pthread_mutex_unlock(&b->lock);
	for (unsigned i = 0; i < n; i++) {
		struct vseg *s, *next;

		for (s = va[i]->segs; s; s = next) {
			next = s->next;
			s->in_batch = false;
			if (va[i]->already)
				write_seg(b, s);
			else
				seg_finish(s, va[i]->status);
		}
		for (s = va[i]->waiters; s; s = next) {
			next = s->next;
			write_seg(b, s);
		}
		free(va[i]);
	}
}

static struct valloc **take_queued(struct vbd *b, unsigned *n)
{
	struct valloc **va = calloc(b->nqueued, sizeof(*va));
	unsigned k = 0;

	if (!va)
		return NULL;
	for (struct valloc *a = b->allocs; a; a = a->next) {
		if (!a->running) {
			a->running = true;
			va[k++] = a;
		}
	}
	b->nqueued = 0;
	*n = k;
	return va;
}

static void *vbd_worker(void *arg)
{
	struct vbd *b = arg;

	for (;;) {
		struct valloc **va = NULL;
		struct vjob *j = NULL;
		unsigned n = 0;

		pthread_mutex_lock(&b->lock);
		while (!b->stop && !b->jobs && !b->nqueued)
			pthread_cond_wait(&b->wake, &b->lock);
		if (b->nqueued) {
			va = take_queued(b, &n);
		} else if (b->jobs) {
			j = b->jobs;
			b->jobs = j->next;
			if (!b->jobs)
				b->jobs_tail = &b->jobs;
		}
		pthread_mutex_unlock(&b->lock);
		if (va) {
			run_allocations(b, va, n);
			free(va);
		} else if (j) {
			run_job(b, j);
		} else if (b->stop || n == 0) {
			if (b->stop)
				break;
			/* take_queued had no memory: back off a little */
			usleep(1000);
		}
	}
	return NULL;
}

/* ---- blk_format_ops ----------------------------------------------------------- */

_Static_assert(sizeof(struct vreq) <= sizeof(((struct blk_req *)0)->priv),
	       "struct vreq must fit in blk_req.priv");

static void vbd_submit(struct blk_dev *d, struct blk_req *req)
{
	struct vbd *b = d->fmt_state;
	struct vreq *r = (struct vreq *)(void *)req->priv; /* ours until done() */
	uint64_t len;
	int ret = 0;

	memset(r, 0, sizeof(*r));
	r->req = req;
	r->b = b;
	atomic_fetch_add(&b->requests, 1);
	atomic_init(&r->pending, 1);
	atomic_init(&r->status, 0);
	switch (req->op) {
	case BLK_OP_READ:
		len = iov_total(req->iov, req->iovcnt);
		ret = submit_read(b, r, b->img, req->offset, len, req->iov, req->iovcnt, 0);
		break;
	case BLK_OP_WRITE:
		r->flush_after = req->fua;
		len = iov_total(req->iov, req->iovcnt);
		ret = submit_write(b, r, req->offset, len, req->iov, req->iovcnt);
		break;
	case BLK_OP_WRITE_ZEROES: ret = submit_write(b, r, req->offset, req->len, NULL, 0); break;
	case BLK_OP_FLUSH:
		atomic_fetch_add(&r->pending, 1);
		if (b->img->readonly)
			vreq_put(r, 0);
		else
			queue_job(b, VJOB_FLUSH, r, NULL);
		break;
	case BLK_OP_DISCARD:
	default: ret = -EOPNOTSUPP; break;
	}
	vreq_put(r, ret);
}

static int vbd_start_worker(struct vbd *b)
{
	int ret = sandbox_thread_start(&b->worker, SANDBOX_IO, "vhd-meta", vbd_worker, b);

	if (!ret)
		b->worker_started = true;
	return ret;
}

static void vbd_free(struct vbd *b)
{
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->wake);
	pthread_cond_destroy(&b->batch_done);
	pthread_cond_destroy(&b->idle);
	free(b);
}

static int vbd_open(struct blk_dev *d, char *err, size_t errlen)
{
	struct vbd *b = calloc(1, sizeof(*b));
	int ret;

	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->wake, NULL);
	pthread_cond_init(&b->batch_done, NULL);
	pthread_cond_init(&b->idle, NULL);
	b->jobs_tail = &b->jobs;
	b->d = d;
	/* blk_open already holds the lock on this file; the parents are ours. */
	ret = vhd_open_ex(&b->img, d->fd, d->path,
			  (d->readonly ? 0 : VHD_OPEN_RDWR) | VHD_OPEN_NOLOCK, d->opts.parent_dirs,
			  err, errlen);
	if (!ret && !d->readonly)
		ret = vbd_start_worker(b);
	if (ret) {
		if (b->img)
			(void)vhd_close(b->img);
		vbd_free(b);
		return ret;
	}
	d->size = b->img->m.size;
	d->can_discard = false;
	d->fmt_state = b;
	return 0;
}

/* blk_take_over: the BAT and the footer as the source left them. */
static int vbd_refresh(struct blk_dev *d, char *err, size_t errlen)
{
	struct vbd *b = d->fmt_state;
	int ret;

	pthread_mutex_lock(&b->img->lock);
	ret = vhd_refresh(b->img, err, errlen);
	pthread_mutex_unlock(&b->img->lock);
	return ret;
}

static void vbd_close(struct blk_dev *d)
{
	struct vbd *b = d->fmt_state;
	int ret;

	if (!b)
		return;
	/* blk_close drained the engine, but a request may still sit in our
	 * queues (an allocation, a FUA write's flush): let it finish. */
	atomic_store(&b->closing, true);
	pthread_mutex_lock(&b->lock);
	while (atomic_load(&b->requests))
		pthread_cond_wait(&b->idle, &b->lock);
	pthread_mutex_unlock(&b->lock);
	if (b->worker_started) {
		pthread_mutex_lock(&b->lock);
		b->stop = true;
		pthread_cond_signal(&b->wake);
		pthread_mutex_unlock(&b->lock);
		pthread_join(b->worker, NULL);
	}
	ret = vhd_close(b->img);
	if (ret)
		kerr("%s: flushing VHD metadata at close: %s", d->path, strerror(-ret));
	vbd_free(b);
	d->fmt_state = NULL;
}

const struct blk_format_ops blk_vhd_ops = {
	.name = "vhd",
	.open = vbd_open,
	.submit = vbd_submit,
	.close = vbd_close,
	.refresh = vbd_refresh,
};

bool blk_vhd_uuid(const struct blk_dev *d, uint8_t uuid[16])
{
	const struct vbd *b = d->fmt == &blk_vhd_ops ? d->fmt_state : NULL;

	if (!b)
		return false;
	memcpy(uuid, vhd_image_meta(b->img)->footer.uuid, 16);
	return true;
}

bool blk_vhd_parent_uuid(const struct blk_dev *d, uint8_t uuid[16])
{
	const struct vbd *b = d->fmt == &blk_vhd_ops ? d->fmt_state : NULL;

	if (!b || vhd_image_meta(b->img)->type != VHD_TYPE_DIFF)
		return false;
	memcpy(uuid, vhd_image_meta(b->img)->hdr.parent_uuid, 16);
	return true;
}

/* src/block/block.c carries weak placeholders of blk_vhd_ops and vhd_probe, and a
 * linker does not pull an archive member in to override a weak definition:
 * vhd_tool.c refers to this anchor so that any binary with the tool (kestrel,
 * the tests) links this file. */
const struct blk_format_ops *const vhd_blk_ops_anchor = &blk_vhd_ops;

/* ---- probing ------------------------------------------------------------------ */

bool vhd_probe(int fd)
{
	return vhd_probe_fd(fd);
}
