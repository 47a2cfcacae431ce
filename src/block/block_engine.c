/* Block engines, the common part: choosing an engine (io_uring, then libaio,
 * then sync), the in-flight count that drain/destroy wait on, short-transfer
 * and EINTR/EAGAIN handling, per-thread plugging, and the worker pool that is
 * the sync engine (and libaio's helper for what libaio cannot do). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block_priv.h"
#include "kestrel/sandbox.h"

static void blk_plug_forget(struct blk_engine *e);

/* ---- engine base -------------------------------------------------------- */

void blk_engine_base_init(struct blk_engine *e, const struct blk_engine_ops *ops, enum blk_aio kind)
{
	e->ops = ops;
	e->kind = kind;
	e->inflight = 0;
	e->drainers = 0;
	pthread_mutex_init(&e->idle_lock, NULL);
	pthread_cond_init(&e->idle, NULL);
}

void blk_engine_base_fini(struct blk_engine *e)
{
	pthread_cond_destroy(&e->idle);
	pthread_mutex_destroy(&e->idle_lock);
}

void blk_engine_complete(struct blk_engine *e, struct blk_io *io, long res)
{
	io->done(io, res);
	/* seq_cst pairs with blk_engine_drain: either the drainer sees 0 or we
	 * see the drainer and wake it under the lock it sleeps with. */
	if (__atomic_sub_fetch(&e->inflight, 1, __ATOMIC_SEQ_CST) == 0 &&
	    __atomic_load_n(&e->drainers, __ATOMIC_SEQ_CST) > 0) {
		pthread_mutex_lock(&e->idle_lock);
		pthread_cond_broadcast(&e->idle);
		pthread_mutex_unlock(&e->idle_lock);
	}
}

enum blk_aio blk_engine_kind(const struct blk_engine *e)
{
	return e->kind;
}

const char *blk_aio_name(enum blk_aio kind)
{
	return (unsigned)kind <= BLK_AIO_SYNC ? blk_aio_names[kind] : "?";
}

static bool blk_io_valid(const struct blk_io *io)
{
	switch (io->op) {
	case BLK_IO_READ:
	case BLK_IO_WRITE:
		return io->iovcnt >= 0 && io->iovcnt <= BLK_MAX_IOV && (io->iov || !io->iovcnt) &&
		       io->off <= INT64_MAX;
	case BLK_IO_FSYNC:
	case BLK_IO_FDATASYNC: return true;
	case BLK_IO_PUNCH:
	case BLK_IO_ZERO:
		return io->len > 0 && io->len <= INT64_MAX && io->off <= INT64_MAX - io->len;
	}
	return false;
}

int blk_engine_submit(struct blk_engine *e, struct blk_io *io)
{
	if (!io->done || !blk_io_valid(io))
		return -EINVAL;
	if (io->fd < 0)
		return -EBADF;
	io->next = NULL;
	io->rest = NULL;
	io->restcnt = 0;
	io->xfer = 0;
	__atomic_add_fetch(&e->inflight, 1, __ATOMIC_SEQ_CST);
	e->ops->submit(e, io);
	return 0;
}

void blk_engine_drain(struct blk_engine *e)
{
	/* I/O this thread prepared under blk_plug() would never complete. */
	e->ops->flush(e);
	pthread_mutex_lock(&e->idle_lock);
	__atomic_add_fetch(&e->drainers, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&e->inflight, __ATOMIC_SEQ_CST) != 0)
		pthread_cond_wait(&e->idle, &e->idle_lock);
	__atomic_sub_fetch(&e->drainers, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&e->idle_lock);
}

void blk_engine_destroy(struct blk_engine *e)
{
	if (!e)
		return;
	blk_engine_drain(e);
	blk_plug_forget(e);
	e->ops->destroy(e);
}

/* ---- choosing an engine -------------------------------------------------- */

static void blk_engine_log_choice(enum blk_aio got, const char *why_not_uring,
				  const char *why_not_aio)
{
	static int logged;

	if (__atomic_exchange_n(&logged, 1, __ATOMIC_RELAXED))
		return;
	if (got == BLK_AIO_IO_URING)
		kdebug("block: aio=auto chose io_uring");
	else if (got == BLK_AIO_LIBAIO)
		kdebug("block: aio=auto chose libaio (io_uring: %s)", why_not_uring);
	else
		kdebug("block: aio=auto chose sync (io_uring: %s; libaio: %s)", why_not_uring,
		       why_not_aio);
}

static int blk_engine_auto(unsigned depth, struct blk_engine **out, char *err, size_t errlen)
{
	char why_uring[160] = "", why_aio[160] = "";

	if (blk_uring_create(depth, out, why_uring, sizeof(why_uring)) == 0) {
		blk_engine_log_choice(BLK_AIO_IO_URING, NULL, NULL);
		return 0;
	}
	if (blk_libaio_create(depth, out, why_aio, sizeof(why_aio)) == 0) {
		blk_engine_log_choice(BLK_AIO_LIBAIO, why_uring, NULL);
		return 0;
	}
	if (blk_sync_create(depth, out, err, errlen) == 0) {
		blk_engine_log_choice(BLK_AIO_SYNC, why_uring, why_aio);
		return 0;
	}
	return -ENOTSUP;
}

int blk_engine_create(enum blk_aio kind, unsigned depth, struct blk_engine **out, char *err,
		      size_t errlen)
{
	char why[200] = "";
	int r;

	*out = NULL;
	if (depth == 0)
		depth = BLK_DEFAULT_DEPTH;
	depth = MIN(depth, 4096u);
	switch (kind) {
	case BLK_AIO_AUTO: return blk_engine_auto(depth, out, err, errlen);
	case BLK_AIO_IO_URING: r = blk_uring_create(depth, out, why, sizeof(why)); break;
	case BLK_AIO_LIBAIO: r = blk_libaio_create(depth, out, why, sizeof(why)); break;
	case BLK_AIO_SYNC: r = blk_sync_create(depth, out, why, sizeof(why)); break;
	default: snprintf(err, errlen, "unknown aio engine %d", (int)kind); return -EINVAL;
	}
	if (r < 0) {
		snprintf(err, errlen, "aio=%s is unavailable: %s", blk_aio_name(kind), why);
		return -ENOTSUP;
	}
	return 0;
}

/* ---- short transfers, EINTR, EAGAIN --------------------------------------- */

static uint64_t iov_total(const struct iovec *iov, int cnt)
{
	uint64_t n = 0;

	for (int i = 0; i < cnt; i++)
		n += iov[i].iov_len;
	return n;
}

/* Drop the first `skip` bytes (less than the total) from the cursor's iovecs.
 * The first short transfer copies the caller's array, which is const. */
static int blk_io_advance(struct blk_io *io, uint64_t skip)
{
	const struct iovec *iov;
	uint64_t off;
	int cnt, i = 0;

	blk_io_cursor(io, &iov, &cnt, &off);
	while (i < cnt && skip >= iov[i].iov_len)
		skip -= iov[i++].iov_len;
	if (!io->rest) {
		io->rest = malloc(sizeof(*io->rest) * (size_t)(cnt - i));
		if (!io->rest)
			return -ENOMEM;
	}
	memmove(io->rest, iov + i, sizeof(*io->rest) * (size_t)(cnt - i));
	io->restcnt = cnt - i;
	io->rest[0].iov_base = (uint8_t *)io->rest[0].iov_base + skip;
	io->rest[0].iov_len -= skip;
	return 0;
}

static bool blk_io_finish(struct blk_io *io, long res, long *out)
{
	free(io->rest);
	io->rest = NULL;
	*out = res;
	return false;
}

bool blk_io_step(struct blk_io *io, long res, long *out)
{
	const struct iovec *iov;
	uint64_t off, want;
	int cnt;

	if (res == -EINTR || res == -EAGAIN)
		return true;
	if ((io->op != BLK_IO_READ && io->op != BLK_IO_WRITE) || res < 0)
		return blk_io_finish(io, res, out);
	blk_io_cursor(io, &iov, &cnt, &off);
	want = iov_total(iov, cnt);
	if ((uint64_t)res >= want)
		return blk_io_finish(io, (long)(io->xfer + want), out);
	if (res == 0) /* end of file; a write that cannot progress is an error */
		return blk_io_finish(io, io->op == BLK_IO_READ ? (long)io->xfer : -EIO, out);
	if (blk_io_advance(io, (uint64_t)res) < 0)
		return blk_io_finish(io, -ENOMEM, out);
	io->xfer += (uint64_t)res;
	return true;
}

long blk_io_exec_once(struct blk_io *io)
{
	const struct iovec *iov;
	uint64_t off;
	ssize_t n;
	int cnt, r;

	switch (io->op) {
	case BLK_IO_READ:
	case BLK_IO_WRITE:
		blk_io_cursor(io, &iov, &cnt, &off);
		if (io->op == BLK_IO_READ)
			n = preadv(io->fd, iov, cnt, (off_t)off);
		else
			n = pwritev(io->fd, iov, cnt, (off_t)off);
		return n < 0 ? -errno : (long)n;
	case BLK_IO_FSYNC: r = fsync(io->fd); break;
	case BLK_IO_FDATASYNC: r = fdatasync(io->fd); break;
	case BLK_IO_PUNCH:
		r = fallocate(io->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)io->off,
			      (off_t)io->len);
		break;
	case BLK_IO_ZERO:
		r = fallocate(io->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)io->off,
			      (off_t)io->len);
		break;
	default: return -EINVAL;
	}
	return r < 0 ? -errno : 0;
}

long blk_io_exec(struct blk_io *io)
{
	long out;
	unsigned again = 0;

	while (blk_io_step(io, blk_io_exec_once(io), &out)) {
		/* EAGAIN from a blocking call means a transient shortage; do not
		 * spin on it. */
		if (++again > 16)
			usleep(100);
	}
	return out;
}

/* ---- plugging ------------------------------------------------------------- */

#define BLK_PLUG_MAX 16

static __thread unsigned plug_depth;
static __thread unsigned plug_n;
static __thread struct blk_engine *plug_list[BLK_PLUG_MAX];

void blk_plug(void)
{
	plug_depth++;
}

void blk_unplug(void)
{
	if (plug_depth == 0 || --plug_depth > 0)
		return;
	/* Flushing can run done() callbacks that plug again; take the list first. */
	while (plug_n > 0) {
		struct blk_engine *e = plug_list[--plug_n];

		e->ops->flush(e);
	}
}

static void blk_plug_forget(struct blk_engine *e)
{
	for (unsigned i = 0; i < plug_n; i++) {
		if (plug_list[i] == e) {
			plug_list[i] = plug_list[--plug_n];
			return;
		}
	}
}

void blk_plug_kick(void)
{
	for (unsigned i = 0; i < plug_n; i++)
		plug_list[i]->ops->flush(plug_list[i]);
}

bool blk_plug_defer(struct blk_engine *e)
{
	if (plug_depth == 0)
		return false;
	for (unsigned i = 0; i < plug_n; i++)
		if (plug_list[i] == e)
			return true;
	if (plug_n == BLK_PLUG_MAX)
		return false;
	plug_list[plug_n++] = e;
	return true;
}

/* ---- threads and the worker pool ---------------------------------------- */

int blk_thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name)
{
	return sandbox_thread_start(t, SANDBOX_IO, name, fn, arg);
}

struct blk_pool {
	struct blk_engine *owner;
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct blk_ioq q;
	bool stop;
	unsigned nthreads;
	pthread_t threads[];
};

static void *blk_pool_worker(void *arg)
{
	struct blk_pool *p = arg;
	struct blk_io *io;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (!p->q.head && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		io = blk_ioq_pop(&p->q);
		pthread_mutex_unlock(&p->lock);
		if (!io)
			return NULL;
		blk_engine_complete(p->owner, io, blk_io_exec(io));
	}
}

void blk_pool_queue(struct blk_pool *p, struct blk_io *io)
{
	pthread_mutex_lock(&p->lock);
	blk_ioq_push(&p->q, io);
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

static void blk_pool_stop(struct blk_pool *p, unsigned started)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int blk_pool_create(struct blk_engine *owner, unsigned nthreads, const char *name,
		    struct blk_pool **out)
{
	struct blk_pool *p = calloc(1, sizeof(*p) + nthreads * sizeof(pthread_t));
	int r;

	if (!p)
		return -ENOMEM;
	p->owner = owner;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	blk_ioq_init(&p->q);
	p->nthreads = nthreads;
	for (unsigned i = 0; i < nthreads; i++) {
		r = blk_thread_start(&p->threads[i], blk_pool_worker, p, name);
		if (r < 0) {
			blk_pool_stop(p, i);
			return r;
		}
	}
	*out = p;
	return 0;
}

void blk_pool_destroy(struct blk_pool *p)
{
	if (p)
		blk_pool_stop(p, p->nthreads);
}

/* ---- the sync engine: blocking calls on a few worker threads -------------- */

/* Enough to keep a disk busy at modest queue depths on a small host; each
 * thread is one blocking syscall in flight. */
#define BLK_SYNC_THREADS 4

struct blk_sync_engine {
	struct blk_engine base;
	struct blk_pool *pool;
};

static void blk_sync_submit(struct blk_engine *e, struct blk_io *io)
{
	blk_pool_queue(((struct blk_sync_engine *)e)->pool, io);
}

static void blk_sync_flush(struct blk_engine *e)
{
}

static void blk_sync_destroy(struct blk_engine *e)
{
	struct blk_sync_engine *s = (struct blk_sync_engine *)e;

	blk_pool_destroy(s->pool);
	blk_engine_base_fini(e);
	free(s);
}

static const struct blk_engine_ops blk_sync_ops = {
	.submit = blk_sync_submit,
	.flush = blk_sync_flush,
	.destroy = blk_sync_destroy,
};

int blk_sync_create(unsigned depth, struct blk_engine **out, char *err, size_t errlen)
{
	struct blk_sync_engine *s = calloc(1, sizeof(*s));
	int r;

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	blk_engine_base_init(&s->base, &blk_sync_ops, BLK_AIO_SYNC);
	r = blk_pool_create(&s->base, MIN(depth, BLK_SYNC_THREADS), "blk-sync", &s->pool);
	if (r < 0) {
		snprintf(err, errlen, "cannot start worker threads: %s", strerror(-r));
		free(s);
		return r;
	}
	*out = &s->base;
	return 0;
}
