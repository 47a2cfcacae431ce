/* The block layer: one request interface for every disk front end (IDE,
 * virtio-scsi, ...). Two layers:
 *  - an ENGINE does file I/O asynchronously: io_uring (liburing), libaio, or a
 *    synchronous fallback on worker threads; it knows nothing of formats;
 *  - a FORMAT (raw, VHD fixed/dynamic/differencing) maps guest byte offsets to
 *    file I/O submitted to the engine; it knows nothing of the bus that asked.
 * Completions run on a block-layer thread (the engine's completion thread or
 * one of its workers); front ends take their own locks there. A request's
 * iovecs point into guest RAM (already validated by the front end through
 * gm_ptr) and stay valid until done() is called. Submission is thread-safe:
 * several queues of one disk may submit at once, and done() may submit more. */
#ifndef KESTREL_BLOCK_H
#define KESTREL_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kestrel/util.h"

/* Most iovecs one request may carry (the kernel's UIO_MAXIOV): front ends
 * advertise at most this many segments (virtio-scsi seg_max). */
#define BLK_MAX_IOV	  1024
/* Engine queue depth blk_open asks for; more requests than this are queued in
 * the engine, not refused. */
#define BLK_DEFAULT_DEPTH 128

/* ---- engine: asynchronous file I/O ------------------------------------ */

enum blk_aio { BLK_AIO_AUTO, BLK_AIO_IO_URING, BLK_AIO_LIBAIO, BLK_AIO_SYNC };
enum blk_io_op {
	BLK_IO_READ,
	BLK_IO_WRITE,
	BLK_IO_FSYNC,
	BLK_IO_FDATASYNC,
	BLK_IO_PUNCH,
	BLK_IO_ZERO
};

struct blk_io {
	enum blk_io_op op;
	int fd;
	uint64_t off;		 /* bytes */
	const struct iovec *iov; /* READ/WRITE, at most BLK_MAX_IOV */
	int iovcnt;
	uint64_t len; /* PUNCH/ZERO: bytes (PUNCH keeps the file size,
				  * ZERO too: FALLOC_FL_KEEP_SIZE) */
	/* res: bytes transferred (READ/WRITE), 0, or -errno. The engine resubmits
	 * the rest of a short transfer and retries EINTR/EAGAIN itself, so a
	 * READ returns fewer bytes than asked only at end of file, and a WRITE
	 * that makes no progress fails with -EIO. Called on a block-layer thread;
	 * it may submit more I/O, but must not wait for I/O of the same engine
	 * (it would wait for itself). */
	void (*done)(struct blk_io *io, long res);
	void *opaque;
	/* private to the engine (no need to initialise) */
	struct blk_io *next; /* queue link */
	struct iovec *rest;  /* what is left after a short transfer */
	int restcnt;
	uint64_t xfer; /* bytes transferred so far */
};

struct blk_engine;
/* Create an engine; BLK_AIO_AUTO picks io_uring, then libaio, then sync.
 * On failure of an explicitly requested kind: -ENOTSUP and a one-line reason. */
int blk_engine_create(enum blk_aio kind, unsigned depth, struct blk_engine **out, char *err,
		      size_t errlen) WARN_UNUSED;
enum blk_aio blk_engine_kind(const struct blk_engine *e);
const char *blk_aio_name(enum blk_aio kind);
/* 0 (done() will be called exactly once) or -errno (done() will not be). */
int blk_engine_submit(struct blk_engine *e, struct blk_io *io) WARN_UNUSED;
/* Wait until every submitted I/O has completed (including I/O that done()
 * callbacks submit meanwhile). */
void blk_engine_drain(struct blk_engine *e);
/* Wait for every submitted I/O to complete, then free. */
void blk_engine_destroy(struct blk_engine *e);

/* Batching: between blk_plug() and the matching blk_unplug() the calling
 * thread's submissions are queued and handed to the kernel at the outermost
 * blk_unplug() — one io_uring_enter / io_submit per engine for a whole
 * virtqueue's worth of requests. Nests; per thread. Unplug before waiting
 * for a completion (blk_rw_sync and blk_engine_drain take care of it) and
 * before destroying an engine this thread submitted to. */
void blk_plug(void);
void blk_unplug(void);

/* ---- disks: a format over an engine ------------------------------------ */

enum blk_format { BLK_FMT_AUTO, BLK_FMT_RAW, BLK_FMT_VHD };
/* As QEMU names them: writeback = page cache + a volatile write cache the
 * guest flushes; none = O_DIRECT + that volatile cache (the device's own
 * writes are not durable until a flush, exactly like a disk with WCE=1);
 * directsync = O_DIRECT and no write cache: every write durable when done. */
enum blk_cache { BLK_CACHE_WRITEBACK, BLK_CACHE_NONE, BLK_CACHE_DIRECTSYNC };
static inline bool blk_cache_direct(enum blk_cache c)
{
	return c != BLK_CACHE_WRITEBACK;
}
static inline bool blk_cache_volatile(enum blk_cache c)
{
	return c != BLK_CACHE_DIRECTSYNC;
}

/* The option values' one spelling, indexed by enum blk_format, blk_cache and
 * blk_aio, NULL-terminated: --disk, the JSON config, the control socket's
 * disk-add and every message use these tables. */
extern const char *const blk_format_names[];
extern const char *const blk_cache_names[];
extern const char *const blk_aio_names[];
/* The index of s in a NULL-terminated names table, or -1. */
int blk_name_index(const char *const *names, const char *s);
const char *blk_cache_name(enum blk_cache c);

struct blk_opts {
	const char *path;
	enum blk_format format;
	bool readonly;
	enum blk_cache cache;
	enum blk_aio aio;
	/* VHD differencing disks: folders (':'-separated) where parents may be
	 * besides the image's own folder; NULL: only there. */
	const char *parent_dirs;
	/* storage blk_parse_opts allocated (path, extra values); blk_opts_free() */
	char *owned;
};

/* A key the caller of blk_parse_opts_ex handles itself (e.g. --disk's "bus").
 * value is NULL when the key is absent, "" for a bare flag ("removable"),
 * else the text after '='; it lives until blk_opts_free(). */
struct blk_opt_extra {
	const char *key;
	const char *value;
};

/* Parse "path=FILE[,format=raw|vhd|auto][,readonly[=on|off]][,cache=none|
 * writeback][,aio=io_uring|libaio|sync|auto][,parent-dir=DIR[:DIR]]" into *o
 * (defaults first). A
 * literal ',' in a value is written ",,". Unknown or repeated keys and a
 * missing path are errors naming the key. 0 or -EINVAL with a one-line err. */
int blk_parse_opts(const char *spec, struct blk_opts *o, char *err, size_t errlen) WARN_UNUSED;
/* Same, also accepting the keys of extras[] (terminated by a NULL key) and
 * returning their values there. */
int blk_parse_opts_ex(const char *spec, struct blk_opts *o, struct blk_opt_extra *extras, char *err,
		      size_t errlen) WARN_UNUSED;
/* Same, with path= optional (o->path NULL when absent): for a front end
 * whose drive may be empty (--disk media=cdrom), which checks the rest. */
int blk_parse_opts_nopath(const char *spec, struct blk_opts *o, struct blk_opt_extra *extras,
			  char *err, size_t errlen) WARN_UNUSED;
void blk_opts_free(struct blk_opts *o);
const char *blk_format_name(enum blk_format f);

enum blk_op { BLK_OP_READ, BLK_OP_WRITE, BLK_OP_FLUSH, BLK_OP_DISCARD, BLK_OP_WRITE_ZEROES };

struct blk_req {
	enum blk_op op;
	uint64_t offset;   /* bytes, multiple of 512 */
	struct iovec *iov; /* READ/WRITE; total length a multiple of 512;
				   * any alignment (O_DIRECT bounces when needed) */
	int iovcnt;	   /* READ/WRITE: 0..BLK_MAX_IOV */
	uint64_t len;	   /* DISCARD/WRITE_ZEROES bytes */
	bool fua;	   /* WRITE: durable before done() */
	/* status: 0 or -errno (-EIO media error, -EROFS read-only, -EINVAL out of
	 * range, -ENOSPC host full, -EOPNOTSUPP discard where the host cannot).
	 * Called on a block-layer thread, or before blk_submit returns. */
	void (*done)(struct blk_req *req, int status);
	void *opaque;
	/* private to the block layer */
	int pending;
	int status;
	_Alignas(8) uint8_t priv[192];
};

struct blk_dev;

struct blk_format_ops {
	const char *name;
	int (*open)(struct blk_dev *d, char *err, size_t errlen);
	void (*submit)(struct blk_dev *d, struct blk_req *req);
	void (*close)(struct blk_dev *d);
	/* Optional: read the format's metadata again (blk_take_over). */
	int (*refresh)(struct blk_dev *d, char *err, size_t errlen);
};

struct blk_dev {
	const struct blk_format_ops *fmt;
	struct blk_engine *engine;
	struct blk_opts opts;
	char *path;
	int fd;
	uint64_t size;	     /* virtual disk size in bytes (multiple of 512); blk_open
				   * sets the file's size, a format's open() may change it */
	unsigned block_size; /* logical sector: 512 */
	bool readonly;
	bool can_discard;
	void *fmt_state;
	/* statistics: requests accepted by blk_submit (updated atomically) */
	uint64_t reads, writes, flushes, bytes_read, bytes_written;
	uint64_t discards; /* DISCARD and WRITE_ZEROES */
	/* cache=none: O_DIRECT needs buffers aligned to this (else they are
	 * bounced); 1 with the page cache. */
	unsigned dio_mem_align;
	bool is_bdev; /* a block device, not a regular file */
	/* format=auto chose raw (src/block/block_probe.c): writes that would make the
	 * image probe as a VHD fail with -EIO; counted here, logged once. */
	bool probed_raw;
	bool lock_deferred; /* opened under blk_defer_locks: not locked yet */
	bool warned_refused;
	uint64_t refused_writes;
};

/* Open a disk, probing the format (BLK_FMT_AUTO: a VHD by its footer, else
 * raw; a file's first open in this process pins the answer for every later
 * open, and a writable image probed as raw refuses the guest's writes that
 * would make it probe as a VHD) and the engine. Errors are one line naming
 * the file and what is wrong. */
/* Whole-file OFD lock, shared or exclusive: 0, -EBUSY when another holder
 * conflicts (after a short grace period), or -errno. */
int blk_lock_file(int fd, bool exclusive) WARN_UNUSED;
/* Give the lock back before close: the description may live on in a
 * descriptor kept for a reboot (sandbox_open). */
void blk_unlock_file(int fd);

int blk_open(struct blk_dev **out, const struct blk_opts *o, char *err, size_t errlen) WARN_UNUSED;
/* A live migration's target opens its disks while the source still owns
 * them (docs/migration.md): while on, blk_open takes no image lock (the
 * source holds it) and nothing may be read or written until
 * blk_take_over. The worker's main thread only. */
void blk_defer_locks(bool on);
/* The source has let go: take the image's lock and read the format's
 * metadata again (the source wrote the image after our open). 0 for a disk
 * opened the ordinary way. */
int blk_take_over(struct blk_dev *d, char *err, size_t errlen) WARN_UNUSED;
/* Validate range/read-only, then hand to the format; done() is always called
 * exactly once (possibly before blk_submit returns). */
void blk_submit(struct blk_dev *d, struct blk_req *req);
/* Synchronous helper for tools and tests: submit and wait. */
int blk_rw_sync(struct blk_dev *d, enum blk_op op, uint64_t off, void *buf,
		uint64_t len) WARN_UNUSED;
/* Waits for in-flight requests, then closes the format, the engine and the file. */
void blk_close(struct blk_dev *d);

/* Raw and VHD formats register here (src/block/block_raw.c, vhd/vhd_block.c). */
extern const struct blk_format_ops blk_raw_ops;
extern const struct blk_format_ops blk_vhd_ops;
/* A VHD disk's unique id (its footer's UUID, which Hyper-V and a
 * differencing child's parent link name it by): true and *uuid for a VHD,
 * false for any other format. */
bool blk_vhd_uuid(const struct blk_dev *d, uint8_t uuid[16]);
/* A differencing VHD's parent's unique id: true and *uuid, else false. */
bool blk_vhd_parent_uuid(const struct blk_dev *d, uint8_t uuid[16]);
/* Does the file at fd look like a VHD (footer cookie "conectix" at the end)? */
bool vhd_probe(int fd);

#endif
