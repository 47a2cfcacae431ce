/* The io_uring engine: one ring and one completion thread per engine.
 * Submitters (any thread) fill SQEs under a lock and enter the kernel right
 * away, or once per blk_unplug() when plugged; the completion thread is the
 * only consumer of the CQ (liburing allows one SQ producer and one CQ consumer
 * at a time). At most cq_entries requests are in the kernel, so the CQ can
 * never overflow; the rest wait on a backlog the completion thread drains. */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "block_priv.h"

/* CQEs reaped per wake-up before their callbacks run. */
#define URING_BATCH 64

struct uring_engine {
	struct blk_engine base;
	struct io_uring ring;
	pthread_mutex_t lock; /* SQ, in_kernel, backlog */
	unsigned cap;	      /* most requests in the kernel at once */
	unsigned in_kernel;   /* SQEs filled and not yet reaped */
	struct blk_ioq backlog;
	pthread_t thread;
	bool submit_failed; /* logged once */
};

static void uring_prep(struct io_uring_sqe *sqe, struct blk_io *io)
{
	const struct iovec *iov;
	uint64_t off;
	int cnt;

	blk_io_cursor(io, &iov, &cnt, &off);
	switch (io->op) {
	case BLK_IO_READ: io_uring_prep_readv(sqe, io->fd, iov, (unsigned)cnt, off); break;
	case BLK_IO_WRITE: io_uring_prep_writev(sqe, io->fd, iov, (unsigned)cnt, off); break;
	case BLK_IO_FSYNC: io_uring_prep_fsync(sqe, io->fd, 0); break;
	case BLK_IO_FDATASYNC: io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC); break;
	case BLK_IO_PUNCH:
		io_uring_prep_fallocate(sqe, io->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)io->off, (off_t)io->len);
		break;
	case BLK_IO_ZERO:
		io_uring_prep_fallocate(sqe, io->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
					(off_t)io->off, (off_t)io->len);
		break;
	}
	io_uring_sqe_set_data(sqe, io);
}

/* Enter the kernel with every filled SQE. Lock held. A failure leaves them in
 * the SQ; the completion thread retries after its next reap, so only when
 * nothing else is in flight do we retry here (briefly: -EAGAIN/-ENOMEM are
 * transient shortages in the kernel). */
static void uring_enter_locked(struct uring_engine *u)
{
	unsigned tries = 0;

	while (io_uring_sq_ready(&u->ring) > 0) {
		int r = io_uring_submit(&u->ring);

		if (r >= 0)
			continue;
		if (r == -EINTR)
			continue;
		if (!u->submit_failed) {
			u->submit_failed = true;
			kwarn("block: io_uring_enter: %s (will retry)", strerror(-r));
		}
		if (u->in_kernel > io_uring_sq_ready(&u->ring) || ++tries > 1000)
			return;
		usleep(100);
	}
}

/* Move backlog into free SQEs while the kernel has room. Lock held. */
static void uring_fill_locked(struct uring_engine *u)
{
	while (u->backlog.head && u->in_kernel < u->cap) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

		if (!sqe) {
			/* SQ ring full of filled entries: push them to the kernel. */
			unsigned ready = io_uring_sq_ready(&u->ring);

			uring_enter_locked(u);
			if (io_uring_sq_ready(&u->ring) == ready)
				return;
			continue;
		}
		uring_prep(sqe, blk_ioq_pop(&u->backlog));
		u->in_kernel++;
	}
}

static void uring_submit(struct blk_engine *e, struct blk_io *io)
{
	struct uring_engine *u = (struct uring_engine *)e;

	pthread_mutex_lock(&u->lock);
	blk_ioq_push(&u->backlog, io);
	uring_fill_locked(u);
	if (!blk_plug_defer(e))
		uring_enter_locked(u);
	pthread_mutex_unlock(&u->lock);
}

static void uring_flush(struct blk_engine *e)
{
	struct uring_engine *u = (struct uring_engine *)e;

	pthread_mutex_lock(&u->lock);
	uring_fill_locked(u);
	uring_enter_locked(u);
	pthread_mutex_unlock(&u->lock);
}

struct uring_cqe_copy {
	struct blk_io *io;
	long res;
};

/* Take up to URING_BATCH CQEs off the ring. */
static unsigned uring_reap(struct uring_engine *u, struct uring_cqe_copy *out)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&u->ring, head, cqe)
	{
		out[n].io = io_uring_cqe_get_data(cqe);
		out[n].res = cqe->res;
		if (++n == URING_BATCH)
			break;
	}
	io_uring_cq_advance(&u->ring, n);
	return n;
}

static void *uring_thread(void *arg)
{
	struct uring_engine *u = arg;
	struct uring_cqe_copy batch[URING_BATCH];
	struct io_uring_cqe *cqe;
	bool stop = false;

	while (!stop) {
		unsigned n;
		int r = io_uring_wait_cqe(&u->ring, &cqe);

		if (r < 0) {
			if (r != -EINTR && r != -EAGAIN) {
				kerr("block: io_uring wait: %s", strerror(-r));
				usleep(1000);
			}
			continue;
		}
		n = uring_reap(u, batch);
		pthread_mutex_lock(&u->lock);
		u->in_kernel -= n;
		pthread_mutex_unlock(&u->lock);
		/* Resubmissions and whatever done() submits go out in one enter. */
		blk_plug();
		for (unsigned i = 0; i < n; i++) {
			struct blk_io *io = batch[i].io;
			long res;

			if (!io) {
				stop = true; /* the NOP of uring_destroy */
				continue;
			}
			if (blk_io_step(io, batch[i].res, &res))
				uring_submit(&u->base, io);
			else
				blk_engine_complete(&u->base, io, res);
		}
		blk_unplug();
		uring_flush(&u->base);
	}
	return NULL;
}

static void uring_destroy(struct blk_engine *e)
{
	struct uring_engine *u = (struct uring_engine *)e;
	struct io_uring_sqe *sqe;

	pthread_mutex_lock(&u->lock);
	/* Nothing is in flight, so the SQ has room once it is entered. */
	while (!(sqe = io_uring_get_sqe(&u->ring))) {
		uring_enter_locked(u);
		usleep(100);
	}
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data(sqe, NULL);
	u->in_kernel++;
	uring_enter_locked(u);
	pthread_mutex_unlock(&u->lock);
	pthread_join(u->thread, NULL);
	blk_engine_base_fini(e);
	io_uring_queue_exit(&u->ring);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

static const struct blk_engine_ops uring_ops = {
	.submit = uring_submit,
	.flush = uring_flush,
	.destroy = uring_destroy,
};

/* Every opcode the engine issues must exist: FALLOCATE arrived in 5.6, the
 * probe interface itself in 5.6 too. */
static int uring_check_ops(struct io_uring *ring, char *err, size_t errlen)
{
	static const struct {
		int op;
		const char *name;
	} need[] = {
		{ IORING_OP_NOP, "NOP" },
		{ IORING_OP_READV, "READV" },
		{ IORING_OP_WRITEV, "WRITEV" },
		{ IORING_OP_FSYNC, "FSYNC" },
		{ IORING_OP_FALLOCATE, "FALLOCATE" },
	};
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);

	if (!p) {
		snprintf(err, errlen, "kernel io_uring cannot report its opcodes (older than 5.6)");
		return -ENOTSUP;
	}
	for (size_t i = 0; i < ARRAY_SIZE(need); i++) {
		if (!io_uring_opcode_supported(p, need[i].op)) {
			snprintf(err, errlen, "kernel io_uring lacks IORING_OP_%s", need[i].name);
			io_uring_free_probe(p);
			return -ENOTSUP;
		}
	}
	io_uring_free_probe(p);
	return 0;
}

/* The kernel runs a ring's requests itself, out of seccomp's sight: a thread
 * that may enter the ring could open files or sockets through it
 * (IORING_OP_OPENAT, _SOCKET, _CONNECT...). So the ring starts disabled and
 * takes only the opcodes uring_prep issues, with no SQE flags and no further
 * io_uring_register, before it is enabled (Linux 5.10). */
int blk_uring_restrict(struct io_uring *ring)
{
	static const uint8_t ops[] = {
		IORING_OP_NOP,	 IORING_OP_READV,     IORING_OP_WRITEV,
		IORING_OP_FSYNC, IORING_OP_FALLOCATE,
	};
	struct io_uring_restriction res[ARRAY_SIZE(ops)];
	int r;

	memset(res, 0, sizeof(res));
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
		res[i].opcode = IORING_RESTRICTION_SQE_OP;
		res[i].sqe_op = ops[i];
	}
	/* The system call itself: Debian 12's liburing 2.3 declares
	 * io_uring_register_restrictions/io_uring_enable_rings but does not
	 * export them. */
	r = (int)syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_RESTRICTIONS, res,
			 (unsigned)ARRAY_SIZE(res));
	if (r == 0)
		r = (int)syscall(__NR_io_uring_register, ring->ring_fd,
				 IORING_REGISTER_ENABLE_RINGS, NULL, 0);
	return r < 0 ? -errno : 0;
}

static const char *uring_setup_hint(int r)
{
	switch (r) {
	case -ENOSYS: return " (kernel built without io_uring)";
	case -EPERM: return " (disabled by kernel.io_uring_disabled or a seccomp policy)";
	case -ENOMEM: return " (RLIMIT_MEMLOCK too low for the ring?)";
	default: return "";
	}
}

int blk_uring_create(unsigned depth, struct blk_engine **out, char *err, size_t errlen)
{
	struct io_uring_params p;
	struct uring_engine *u = calloc(1, sizeof(*u));
	int r;

	if (!u) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_R_DISABLED;
	r = io_uring_queue_init_params(depth, &u->ring, &p);
	if (r == -EINVAL) {
		/* Before 5.10: a ring without restrictions. */
		memset(&p, 0, sizeof(p));
		r = io_uring_queue_init_params(depth, &u->ring, &p);
	}
	if (r < 0) {
		snprintf(err, errlen, "io_uring_setup: %s%s", strerror(-r), uring_setup_hint(r));
		free(u);
		return r;
	}
	r = uring_check_ops(&u->ring, err, errlen);
	if (r < 0)
		goto fail_ring;
	if (p.flags & IORING_SETUP_R_DISABLED) {
		r = blk_uring_restrict(&u->ring);
		if (r < 0) {
			snprintf(err, errlen, "restricting the ring's opcodes: %s", strerror(-r));
			goto fail_ring;
		}
	}
	blk_engine_base_init(&u->base, &uring_ops, BLK_AIO_IO_URING);
	pthread_mutex_init(&u->lock, NULL);
	blk_ioq_init(&u->backlog);
	u->cap = p.cq_entries;
	r = blk_thread_start(&u->thread, uring_thread, u, "blk-uring");
	if (r < 0) {
		snprintf(err, errlen, "cannot start the completion thread: %s", strerror(-r));
		pthread_mutex_destroy(&u->lock);
		goto fail_ring;
	}
	*out = &u->base;
	return 0;

fail_ring:
	io_uring_queue_exit(&u->ring);
	free(u);
	return r;
}
