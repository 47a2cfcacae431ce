/* Internals shared by the block engines (block_engine.c, block_uring.c,
 * block_libaio.c): the engine base every kind embeds, the completion path,
 * short-transfer bookkeeping, plugging and the worker pool. */
#ifndef KESTREL_BLOCK_PRIV_H
#define KESTREL_BLOCK_PRIV_H

#include <pthread.h>

#include "kestrel/block.h"

struct blk_engine_ops {
	/* Queue io (never fails: the engine keeps a backlog when the kernel
	 * queue is full). Under blk_plug() it may only prepare it. */
	void (*submit)(struct blk_engine *e, struct blk_io *io);
	/* Hand everything prepared to the kernel (blk_unplug). */
	void (*flush)(struct blk_engine *e);
	/* Nothing is in flight: stop the threads, then (only then: the last
	 * completion may still be waking a drainer) blk_engine_base_fini and
	 * free. */
	void (*destroy)(struct blk_engine *e);
};

struct blk_engine {
	const struct blk_engine_ops *ops;
	enum blk_aio kind;
	unsigned inflight; /* submitted, done() not yet returned; atomic */
	unsigned drainers; /* threads in blk_engine_drain; atomic */
	pthread_mutex_t idle_lock;
	pthread_cond_t idle;
};

void blk_engine_base_init(struct blk_engine *e, const struct blk_engine_ops *ops,
			  enum blk_aio kind);
void blk_engine_base_fini(struct blk_engine *e);
/* io is finished with res: call done(), then drop it from the in-flight count
 * (after, so that I/O done() submits keeps the engine busy). */
void blk_engine_complete(struct blk_engine *e, struct blk_io *io, long res);

/* Where the next attempt of a READ/WRITE starts. */
static inline void blk_io_cursor(const struct blk_io *io, const struct iovec **iov, int *cnt,
				 uint64_t *off)
{
	*iov = io->rest ? io->rest : io->iov;
	*cnt = io->rest ? io->restcnt : io->iovcnt;
	*off = io->off + io->xfer;
}

/* One attempt of io returned res (bytes or -errno). true: submit io again (the
 * cursor moved past a short transfer, or EINTR/EAGAIN); false: io is finished
 * with *out. */
bool blk_io_step(struct blk_io *io, long res, long *out);
/* One synchronous attempt of io at its cursor: bytes or -errno. */
long blk_io_exec_once(struct blk_io *io);
/* Run io to completion synchronously. */
long blk_io_exec(struct blk_io *io);

/* Is this thread inside blk_plug()? Then e is remembered and flushed at the
 * outermost blk_unplug(), and the caller should not submit to the kernel now. */
bool blk_plug_defer(struct blk_engine *e);
/* Hand this thread's plugged I/O to the kernel now, staying plugged: for
 * whoever is about to wait for a completion. */
void blk_plug_kick(void);

/* Threads that run I/O with blocking system calls (the sync engine; libaio's
 * helper for fsync and fallocate, which it cannot do asynchronously). */
struct blk_pool;
int blk_pool_create(struct blk_engine *owner, unsigned nthreads, const char *name,
		    struct blk_pool **out) WARN_UNUSED;
void blk_pool_queue(struct blk_pool *p, struct blk_io *io);
/* Stop the threads once the queue is empty; free. */
void blk_pool_destroy(struct blk_pool *p);

/* Start an engine thread: an I/O thread of the sandbox (sandbox_thread_start:
 * every signal blocked, so signals meant for the vCPU and main threads never
 * land on it). */
int blk_thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name) WARN_UNUSED;

/* Engine constructors; on failure a one-line reason in err. */
/* A ring made with IORING_SETUP_R_DISABLED: allow it only the opcodes the
 * engine issues (no SQE flags, no more registering), then enable it. */
struct io_uring;
int blk_uring_restrict(struct io_uring *ring) WARN_UNUSED;
int blk_uring_create(unsigned depth, struct blk_engine **out, char *err, size_t errlen) WARN_UNUSED;
int blk_libaio_create(unsigned depth, struct blk_engine **out, char *err,
		      size_t errlen) WARN_UNUSED;
int blk_sync_create(unsigned depth, struct blk_engine **out, char *err, size_t errlen) WARN_UNUSED;

/* Singly linked FIFO of blk_io through io->next. */
struct blk_ioq {
	struct blk_io *head, **tail;
};

static inline void blk_ioq_init(struct blk_ioq *q)
{
	q->head = NULL;
	q->tail = &q->head;
}

static inline void blk_ioq_push(struct blk_ioq *q, struct blk_io *io)
{
	io->next = NULL;
	*q->tail = io;
	q->tail = &io->next;
}

static inline struct blk_io *blk_ioq_pop(struct blk_ioq *q)
{
	struct blk_io *io = q->head;

	if (io) {
		q->head = io->next;
		if (!q->head)
			q->tail = &q->head;
	}
	return io;
}

/* format=auto (src/block_probe.c): the format pinned for this file at its
 * first open in this process (BLK_FMT_AUTO: none), recording it, and the
 * probed-raw write guard blk_check applies. */
enum blk_format blk_pin_lookup(const struct blk_dev *d);
void blk_pin_record(const struct blk_dev *d, enum blk_format format, uint64_t file_size);
/* Would this WRITE (len bytes, inside the disk) put a VHD cookie where
 * vhd_probe() looks? */
bool blk_write_makes_vhd(const struct blk_dev *d, const struct blk_req *req, uint64_t len);
void blk_refuse_write(struct blk_dev *d, const struct blk_req *req);

#endif
