/* The block layer: one request interface for every disk front end (IDE,
 * virtio-scsi, ...). Two layers:
 *  - an ENGINE does file I/O asynchronously: io_uring (liburing), libaio, or a
 *    synchronous fallback on worker threads; it knows nothing of formats;
 *  - a FORMAT (raw, VHD fixed/dynamic/differencing) maps guest byte offsets to
 *    file I/O submitted to the engine; it knows nothing of the bus that asked.
 * Completions run on the engine's completion thread; front ends take their own
 * locks there. A request's iovecs point into guest RAM (already validated by
 * the front end through gm_ptr) and stay valid until done() is called. */
#ifndef KESTREL_BLOCK_H
#define KESTREL_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kestrel/util.h"

/* ---- engine: asynchronous file I/O ------------------------------------ */

enum blk_aio { BLK_AIO_AUTO, BLK_AIO_IO_URING, BLK_AIO_LIBAIO, BLK_AIO_SYNC };
enum blk_io_op { BLK_IO_READ, BLK_IO_WRITE, BLK_IO_FSYNC, BLK_IO_FDATASYNC, BLK_IO_PUNCH,
		 BLK_IO_ZERO };

struct blk_io {
	enum blk_io_op op;
	int fd;
	uint64_t off;            /* bytes */
	const struct iovec *iov; /* READ/WRITE */
	int iovcnt;
	uint64_t len;            /* PUNCH/ZERO: bytes */
	/* res: bytes transferred (READ/WRITE, short counts are the caller's to
	 * handle), 0, or -errno. Called on the engine's completion thread. */
	void (*done)(struct blk_io *io, long res);
	void *opaque;
};

struct blk_engine;
/* Create an engine; BLK_AIO_AUTO picks io_uring, then libaio, then sync.
 * On failure of an explicitly requested kind: -ENOTSUP and a one-line reason. */
int blk_engine_create(enum blk_aio kind, unsigned depth, struct blk_engine **out,
		      char *err, size_t errlen) WARN_UNUSED;
enum blk_aio blk_engine_kind(const struct blk_engine *e);
const char *blk_aio_name(enum blk_aio kind);
int blk_engine_submit(struct blk_engine *e, struct blk_io *io) WARN_UNUSED;
/* Wait for every submitted I/O to complete, then free. */
void blk_engine_destroy(struct blk_engine *e);

/* ---- disks: a format over an engine ------------------------------------ */

enum blk_format { BLK_FMT_AUTO, BLK_FMT_RAW, BLK_FMT_VHD };
enum blk_cache { BLK_CACHE_WRITEBACK, BLK_CACHE_NONE /* O_DIRECT */ };

struct blk_opts {
	const char *path;
	enum blk_format format;
	bool readonly;
	enum blk_cache cache;
	enum blk_aio aio;
};

enum blk_op { BLK_OP_READ, BLK_OP_WRITE, BLK_OP_FLUSH, BLK_OP_DISCARD, BLK_OP_WRITE_ZEROES };

struct blk_req {
	enum blk_op op;
	uint64_t offset;          /* bytes, multiple of 512 */
	struct iovec *iov;        /* READ/WRITE; total length a multiple of 512 */
	int iovcnt;
	uint64_t len;             /* DISCARD/WRITE_ZEROES bytes */
	bool fua;                 /* WRITE: durable before done() */
	/* status: 0 or -errno (-EIO media error, -EROFS read-only, -EINVAL out of
	 * range, -ENOSPC host full). Called on a block-layer thread. */
	void (*done)(struct blk_req *req, int status);
	void *opaque;
	/* private to the block layer */
	int pending;
	int status;
	uint8_t priv[64];
};

struct blk_dev;

struct blk_format_ops {
	const char *name;
	int (*open)(struct blk_dev *d, char *err, size_t errlen);
	void (*submit)(struct blk_dev *d, struct blk_req *req);
	void (*close)(struct blk_dev *d);
};

struct blk_dev {
	const struct blk_format_ops *fmt;
	struct blk_engine *engine;
	struct blk_opts opts;
	char *path;
	int fd;
	uint64_t size;            /* virtual disk size in bytes (multiple of 512) */
	unsigned block_size;      /* logical sector: 512 */
	bool readonly;
	bool can_discard;
	void *fmt_state;
	/* statistics */
	uint64_t reads, writes, flushes, bytes_read, bytes_written;
};

/* Open a disk, probing the format (BLK_FMT_AUTO) and the engine. Errors are one
 * line naming the file and what is wrong. */
int blk_open(struct blk_dev **out, const struct blk_opts *o, char *err, size_t errlen) WARN_UNUSED;
/* Validate range/read-only, then hand to the format; done() is always called
 * exactly once (possibly before blk_submit returns). */
void blk_submit(struct blk_dev *d, struct blk_req *req);
/* Synchronous helper for tools and tests: submit and wait. */
int blk_rw_sync(struct blk_dev *d, enum blk_op op, uint64_t off, void *buf, uint64_t len) WARN_UNUSED;
void blk_close(struct blk_dev *d);

/* Raw and VHD formats register here (src/block_raw.c, vhd/vhd_block.c). */
extern const struct blk_format_ops blk_raw_ops;
extern const struct blk_format_ops blk_vhd_ops;
/* Does the file at fd look like a VHD (footer cookie "conectix" at the end)? */
bool vhd_probe(int fd);

#endif
