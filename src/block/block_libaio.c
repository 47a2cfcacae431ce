/* The libaio engine (Linux AIO): reads and writes go through io_submit with
 * preallocated iocbs; completions signal an eventfd that the completion
 * thread sleeps on, then io_getevents reaps them without blocking. Linux AIO
 * has no fallocate, so punch/zero — and fsync, to keep the thread simple —
 * run on a one-thread helper pool. Note that Linux AIO is asynchronous only
 * with O_DIRECT (cache=none); on the page cache io_submit does the copy. */
#include <errno.h>
#include <libaio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "block_priv.h"

#define AIO_BATCH 64

struct aio_engine {
	struct blk_engine base;
	io_context_t ctx;
	int efd;
	unsigned cap;
	pthread_mutex_t lock; /* everything below */
	struct iocb *cbs;     /* cap of them */
	struct iocb **free_cbs;
	unsigned nfree;
	struct iocb **pending; /* prepared, not yet accepted by io_submit */
	unsigned npending;
	struct blk_ioq backlog;
	bool stop;
	struct blk_pool *helper;
	pthread_t thread;
};

/* In the kernel, i.e. accepted by io_submit and not yet reaped. */
static unsigned aio_in_kernel(const struct aio_engine *a)
{
	return a->cap - a->nfree - a->npending;
}

static void aio_prep(struct aio_engine *a, struct iocb *cb, struct blk_io *io)
{
	const struct iovec *iov;
	uint64_t off;
	int cnt;

	blk_io_cursor(io, &iov, &cnt, &off);
	if (io->op == BLK_IO_READ)
		io_prep_preadv(cb, io->fd, iov, cnt, (long long)off);
	else
		io_prep_pwritev(cb, io->fd, iov, cnt, (long long)off);
	io_set_eventfd(cb, a->efd);
	cb->data = io;
}

static void aio_fill_locked(struct aio_engine *a)
{
	while (a->backlog.head && a->nfree > 0) {
		struct iocb *cb = a->free_cbs[--a->nfree];

		aio_prep(a, cb, blk_ioq_pop(&a->backlog));
		a->pending[a->npending++] = cb;
	}
}

/* io_submit everything pending. An iocb the kernel refuses (io_submit fails
 * on the first one it cannot take: EINVAL for a file without AIO support,
 * EBADF, ...; or EAGAIN with nothing in flight) goes to the helper, which
 * runs it with plain syscalls and so either succeeds or reports the real
 * error on a block-layer thread. */
static void aio_submit_locked(struct aio_engine *a)
{
	while (a->npending > 0) {
		int r = io_submit(a->ctx, (long)a->npending, a->pending);

		if (r > 0) {
			a->npending -= (unsigned)r;
			memmove(a->pending, a->pending + r, a->npending * sizeof(*a->pending));
		} else if (r == -EINTR) {
			continue;
		} else if ((r == -EAGAIN || r == 0) && aio_in_kernel(a) > 0) {
			/* Out of kernel resources: the completion thread resubmits
			 * once completions have made room. With nothing in flight
			 * no completion would come, so fall through to the helper. */
			return;
		} else {
			struct iocb *cb = a->pending[0];

			a->npending--;
			memmove(a->pending, a->pending + 1, a->npending * sizeof(*a->pending));
			a->free_cbs[a->nfree++] = cb;
			blk_pool_queue(a->helper, cb->data);
		}
	}
}

static bool aio_is_rw(const struct blk_io *io)
{
	return io->op == BLK_IO_READ || io->op == BLK_IO_WRITE;
}

static void aio_submit(struct blk_engine *e, struct blk_io *io)
{
	struct aio_engine *a = (struct aio_engine *)e;

	if (!aio_is_rw(io)) {
		blk_pool_queue(a->helper, io);
		return;
	}
	pthread_mutex_lock(&a->lock);
	blk_ioq_push(&a->backlog, io);
	aio_fill_locked(a);
	if (!blk_plug_defer(e))
		aio_submit_locked(a);
	pthread_mutex_unlock(&a->lock);
}

static void aio_flush(struct blk_engine *e)
{
	struct aio_engine *a = (struct aio_engine *)e;

	pthread_mutex_lock(&a->lock);
	aio_fill_locked(a);
	aio_submit_locked(a);
	pthread_mutex_unlock(&a->lock);
}

/* Reap what has completed, without blocking; returns how many. */
static int aio_reap(struct aio_engine *a, struct io_event *ev)
{
	struct timespec zero = { 0, 0 };
	int n;

	do
		n = io_getevents(a->ctx, 0, AIO_BATCH, ev, &zero);
	while (n == -EINTR);
	if (n < 0) {
		kerr("block: io_getevents: %s", strerror(-n));
		return 0;
	}
	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < n; i++)
		a->free_cbs[a->nfree++] = ev[i].obj;
	pthread_mutex_unlock(&a->lock);
	return n;
}

static void aio_complete_batch(struct aio_engine *a, struct io_event *ev, int n)
{
	blk_plug();
	for (int i = 0; i < n; i++) {
		struct blk_io *io = ev[i].data;
		long res;

		if (blk_io_step(io, (long)ev[i].res, &res))
			aio_submit(&a->base, io);
		else
			blk_engine_complete(&a->base, io, res);
	}
	blk_unplug();
}

static void *aio_thread(void *arg)
{
	struct aio_engine *a = arg;
	struct io_event ev[AIO_BATCH];

	for (;;) {
		uint64_t count;
		bool stop;
		int n;

		if (read(a->efd, &count, sizeof(count)) < 0 && errno != EINTR && errno != EAGAIN) {
			kerr("block: libaio eventfd: %s", strerror(errno));
			usleep(1000);
		}
		/* The kernel fills the event before it signals the eventfd, so
		 * everything counted is reapable now. */
		do {
			n = aio_reap(a, ev);
			aio_complete_batch(a, ev, n);
		} while (n == AIO_BATCH);
		pthread_mutex_lock(&a->lock);
		aio_fill_locked(a);
		aio_submit_locked(a);
		stop = a->stop;
		pthread_mutex_unlock(&a->lock);
		if (stop)
			return NULL;
	}
}

static void aio_free(struct aio_engine *a)
{
	if (a->efd >= 0)
		close(a->efd);
	if (a->ctx)
		io_destroy(a->ctx);
	free(a->cbs);
	free(a->free_cbs);
	free(a->pending);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

static void aio_destroy(struct blk_engine *e)
{
	struct aio_engine *a = (struct aio_engine *)e;
	uint64_t one = 1;

	blk_pool_destroy(a->helper);
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_mutex_unlock(&a->lock);
	if (write(a->efd, &one, sizeof(one)) != sizeof(one))
		kerr("block: libaio eventfd: %s", strerror(errno));
	pthread_join(a->thread, NULL);
	blk_engine_base_fini(e);
	aio_free(a);
}

static const struct blk_engine_ops aio_ops = {
	.submit = aio_submit,
	.flush = aio_flush,
	.destroy = aio_destroy,
};

static const char *aio_setup_hint(int r)
{
	switch (r) {
	case -ENOSYS: return " (kernel built without AIO)";
	case -EAGAIN: return " (fs.aio-max-nr exhausted)";
	case -EPERM: return " (refused by a seccomp policy)";
	default: return "";
	}
}

static int aio_alloc(struct aio_engine *a, unsigned cap)
{
	a->cap = cap;
	a->cbs = calloc(cap, sizeof(*a->cbs));
	a->free_cbs = calloc(cap, sizeof(*a->free_cbs));
	a->pending = calloc(cap, sizeof(*a->pending));
	if (!a->cbs || !a->free_cbs || !a->pending)
		return -ENOMEM;
	for (unsigned i = 0; i < cap; i++)
		a->free_cbs[i] = &a->cbs[i];
	a->nfree = cap;
	return 0;
}

int blk_libaio_create(unsigned depth, struct blk_engine **out, char *err, size_t errlen)
{
	struct aio_engine *a = calloc(1, sizeof(*a));
	int r;

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	blk_engine_base_init(&a->base, &aio_ops, BLK_AIO_LIBAIO);
	pthread_mutex_init(&a->lock, NULL);
	blk_ioq_init(&a->backlog);
	a->efd = -1;
	r = io_setup((int)depth, &a->ctx);
	if (r < 0) {
		a->ctx = 0;
		snprintf(err, errlen, "io_setup: %s%s", strerror(-r), aio_setup_hint(r));
		goto fail;
	}
	r = aio_alloc(a, depth);
	if (r < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	a->efd = eventfd(0, EFD_CLOEXEC);
	if (a->efd < 0) {
		r = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	r = blk_pool_create(&a->base, 1, "blk-aio-helper", &a->helper);
	if (r < 0) {
		snprintf(err, errlen, "cannot start the helper thread: %s", strerror(-r));
		goto fail;
	}
	r = blk_thread_start(&a->thread, aio_thread, a, "blk-aio");
	if (r < 0) {
		snprintf(err, errlen, "cannot start the completion thread: %s", strerror(-r));
		blk_pool_destroy(a->helper);
		goto fail;
	}
	*out = &a->base;
	return 0;

fail:
	aio_free(a);
	return r;
}
