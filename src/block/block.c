/* Disks: opening the file (read-only, O_DIRECT, size, direct-I/O alignment,
 * an advisory lock against a second writer), probing the format, picking the
 * engine; then every request is checked here (range, alignment, read-only)
 * before its format sees it, so formats can trust what they are given. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block_priv.h"
#include "kestrel/sandbox.h"

#define BLK_SECTOR 512u

/* ---- opening ------------------------------------------------------------- */

/* O_NONBLOCK: a FIFO (or a terminal) given as a disk must not hang the open
 * -- a read-only FIFO waits for a writer forever; blk_stat_fd refuses what
 * is not a regular file or a block device and clears the flag again (with
 * it io_uring would fail reads with EAGAIN). On a regular file EWOULDBLOCK
 * means another process holds a lease (fcntl(2) "Leases"): wait for it to
 * be broken, as a plain open(2) does. fd or -errno. */
static int blk_open_path(const char *path, int flags)
{
	struct stat st;
	int fd = sandbox_open(path, flags | O_NONBLOCK, 0);

	if (fd == -EWOULDBLOCK && stat(path, &st) == 0 && S_ISREG(st.st_mode))
		fd = sandbox_open(path, flags, 0);
	return fd;
}

static int blk_open_fd(struct blk_dev *d, char *err, size_t errlen)
{
	int flags = (d->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	bool direct = blk_cache_direct(d->opts.cache);
	/* Kept from the first boot: a reboot after --user still has it. */
	int fd = blk_open_path(d->path, flags | (direct ? O_DIRECT : 0));
	int e = -fd;

	if (fd >= 0) {
		d->fd = fd;
		return 0;
	}
	if (direct && e == EINVAL) {
		/* open(2): EINVAL with O_DIRECT means the file system has none. */
		int probe = open(d->path, flags | O_NONBLOCK);

		if (probe >= 0) {
			close(probe);
			snprintf(err, errlen,
				 "%s: cache=none: the file system does not support O_DIRECT "
				 "(use cache=writeback)",
				 d->path);
			return -EINVAL;
		}
	}
	if (e == EISDIR) {
		snprintf(err, errlen, "%s: not a regular file or block device", d->path);
		return -EINVAL;
	}
	if (!d->readonly && (e == EROFS || e == EACCES))
		snprintf(err, errlen, "%s: cannot open for writing: %s (add readonly?)", d->path,
			 strerror(e));
	else
		snprintf(err, errlen, "%s: %s", d->path, strerror(e));
	return -e;
}

/* O_DIRECT needs buffers and offsets aligned. Offsets: we only promise 512,
 * so a file or device that needs more cannot be used uncached. Buffers:
 * statx(STATX_DIOALIGN) (Linux 6.1) tells; else assume the logical block. */
static int blk_dio_alignment(struct blk_dev *d, unsigned lbs, char *err, size_t errlen)
{
	unsigned mem = lbs, off = lbs;
#ifdef STATX_DIOALIGN
	struct statx stx;

	if (!d->is_bdev && statx(d->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		if (stx.stx_dio_offset_align == 0) {
			snprintf(err, errlen,
				 "%s: cache=none: the file system does not support "
				 "O_DIRECT on this file (use cache=writeback)",
				 d->path);
			return -EINVAL;
		}
		mem = stx.stx_dio_mem_align;
		off = stx.stx_dio_offset_align;
	}
#endif
	if (off > BLK_SECTOR) {
		snprintf(err, errlen,
			 "%s: cache=none needs %u-byte aligned I/O here, disks have "
			 "512-byte sectors (use cache=writeback)",
			 d->path, off);
		return -EINVAL;
	}
	d->dio_mem_align = MAX(mem, 1u);
	return 0;
}

static int blk_stat_fd(struct blk_dev *d, char *err, size_t errlen)
{
	unsigned lbs = BLK_SECTOR;
	struct stat st;
	uint64_t size;
	int ssz, fl;

	if (fstat(d->fd, &st) < 0)
		goto fail;
	if (S_ISBLK(st.st_mode)) {
		d->is_bdev = true;
		if (ioctl(d->fd, BLKGETSIZE64, &size) < 0)
			goto fail;
		if (ioctl(d->fd, BLKSSZGET, &ssz) == 0 && ssz > 0)
			lbs = (unsigned)ssz;
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		snprintf(err, errlen, "%s: not a regular file or block device", d->path);
		return -EINVAL;
	}
	fl = fcntl(d->fd, F_GETFL);
	if (fl < 0 || fcntl(d->fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		goto fail;
	d->size = size;
	d->dio_mem_align = 1;
	if (blk_cache_direct(d->opts.cache))
		return blk_dio_alignment(d, lbs, err, errlen);
	return 0;

fail:
	snprintf(err, errlen, "%s: %s", d->path, strerror(errno));
	return -errno;
}

static bool blk_locks_deferred;

void blk_defer_locks(bool on)
{
	blk_locks_deferred = on;
}

/* Two VMs writing one image corrupt it: take an open-file-description lock,
 * shared for readonly, exclusive otherwise (advisory, like QEMU's). */
static int blk_lock_fd(struct blk_dev *d, char *err, size_t errlen)
{
	int r;

	if (blk_locks_deferred) {
		d->lock_deferred = true;
		return 0;
	}
	r = blk_lock_file(d->fd, !d->readonly);

	if (r == -EBUSY)
		snprintf(err, errlen, "%s: in use by another process%s", d->path,
			 d->readonly ? " for writing" : "");
	else if (r)
		snprintf(err, errlen, "%s: lock: %s", d->path, strerror(-r));
	return r;
}

/* format=auto: the pinned answer, else the probe's (src/block_probe.c). */
static const struct blk_format_ops *blk_pick_format(struct blk_dev *d)
{
	enum blk_format f = d->opts.format;

	if (f == BLK_FMT_AUTO)
		f = blk_pin_lookup(d);
	if (f == BLK_FMT_AUTO)
		f = vhd_probe(d->fd) ? BLK_FMT_VHD : BLK_FMT_RAW;
	d->probed_raw = d->opts.format == BLK_FMT_AUTO && f == BLK_FMT_RAW && !d->readonly;
	return f == BLK_FMT_VHD ? &blk_vhd_ops : &blk_raw_ops;
}

static void blk_free(struct blk_dev *d)
{
	if (d->engine)
		blk_engine_destroy(d->engine);
	/* The descriptor may share its description (and lock) with one kept
	 * for a reboot (sandbox_open): closing would not free the image. */
	if (d->fd >= 0)
		blk_unlock_file(d->fd);
	if (d->fd >= 0)
		close(d->fd);
	free(d->path);
	free(d);
}

int blk_open(struct blk_dev **out, const struct blk_opts *o, char *err, size_t errlen)
{
	struct blk_dev *d;
	uint64_t file_size;
	char why[256];
	int r;

	*out = NULL;
	if (!o->path || !*o->path) {
		snprintf(err, errlen, "disk: no path given");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->path = strdup(o->path))) {
		free(d);
		snprintf(err, errlen, "%s: out of memory", o->path);
		return -ENOMEM;
	}
	d->fd = -1;
	d->opts = *o;
	d->opts.path = d->path;
	d->opts.owned = NULL;
	d->readonly = o->readonly;
	d->block_size = BLK_SECTOR;
	r = blk_open_fd(d, err, errlen);
	if (r == 0)
		r = blk_stat_fd(d, err, errlen);
	if (r == 0)
		r = blk_lock_fd(d, err, errlen);
	if (r < 0)
		goto fail;
	r = blk_engine_create(o->aio, BLK_DEFAULT_DEPTH, &d->engine, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", d->path, why);
		goto fail;
	}
	file_size = d->size;
	d->fmt = blk_pick_format(d);
	r = d->fmt->open(d, err, errlen);
	if (r < 0)
		goto fail;
	if (o->format == BLK_FMT_AUTO)
		blk_pin_record(d, d->fmt == &blk_vhd_ops ? BLK_FMT_VHD : BLK_FMT_RAW, file_size);
	kdebug("block: %s: %s, %llu bytes, %s, cache=%s, aio=%s", d->path, d->fmt->name,
	       (unsigned long long)d->size, d->readonly ? "read-only" : "read-write",
	       blk_cache_name(d->opts.cache), blk_aio_name(blk_engine_kind(d->engine)));
	*out = d;
	return 0;

fail:
	blk_free(d);
	return r;
}

int blk_take_over(struct blk_dev *d, char *err, size_t errlen)
{
	int r;

	if (!d->lock_deferred)
		return 0;
	d->lock_deferred = false;
	r = blk_lock_fd(d, err, errlen);
	/* Taking a lock also makes NFS revalidate what it cached of the file. */
	return r ?: d->fmt->refresh ? d->fmt->refresh(d, err, errlen) : 0;
}

void blk_close(struct blk_dev *d)
{
	if (!d)
		return;
	blk_engine_drain(d->engine);
	if (d->fmt->close)
		d->fmt->close(d);
	blk_free(d);
}

/* ---- requests ------------------------------------------------------------ */

/* Is [off, off+len) a whole-sector range inside the disk? Overflow-safe. */
static bool blk_range_ok(const struct blk_dev *d, uint64_t off, uint64_t len)
{
	return off % BLK_SECTOR == 0 && len % BLK_SECTOR == 0 && off <= d->size &&
	       len <= d->size - off;
}

static int blk_iov_len(const struct blk_req *req, uint64_t *total)
{
	uint64_t n = 0;

	if (req->iovcnt < 0 || req->iovcnt > BLK_MAX_IOV || (req->iovcnt && !req->iov))
		return -EINVAL;
	for (int i = 0; i < req->iovcnt; i++) {
		if (req->iov[i].iov_len > UINT64_MAX - n)
			return -EINVAL;
		n += req->iov[i].iov_len;
	}
	*total = n;
	return 0;
}

static void blk_count(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* 0: hand to the format; 1: nothing to do (complete with 0); or -errno. */
static int blk_check(struct blk_dev *d, const struct blk_req *req)
{
	uint64_t len;

	switch (req->op) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		if (req->op == BLK_OP_WRITE && d->readonly)
			return -EROFS;
		if (blk_iov_len(req, &len) < 0 || !blk_range_ok(d, req->offset, len))
			return -EINVAL;
		if (len == 0)
			return 1;
		if (req->op == BLK_OP_WRITE && d->probed_raw && blk_write_makes_vhd(d, req, len)) {
			blk_refuse_write(d, req);
			return -EIO;
		}
		if (req->op == BLK_OP_READ) {
			blk_count(&d->reads, 1);
			blk_count(&d->bytes_read, len);
		} else {
			blk_count(&d->writes, 1);
			blk_count(&d->bytes_written, len);
		}
		return 0;
	case BLK_OP_FLUSH:
		if (d->readonly)
			return 1; /* nothing can be dirty */
		blk_count(&d->flushes, 1);
		return 0;
	case BLK_OP_DISCARD:
	case BLK_OP_WRITE_ZEROES:
		if (d->readonly)
			return -EROFS;
		if (!blk_range_ok(d, req->offset, req->len))
			return -EINVAL;
		if (req->len == 0)
			return 1;
		blk_count(&d->discards, 1);
		return 0;
	}
	return -EINVAL;
}

void blk_submit(struct blk_dev *d, struct blk_req *req)
{
	int r = blk_check(d, req);

	req->pending = 0;
	req->status = 0;
	if (r != 0) {
		req->done(req, r < 0 ? r : 0);
		return;
	}
	d->fmt->submit(d, req);
}

struct blk_sync_wait {
	sem_t sem;
	int status;
};

static void blk_sync_done(struct blk_req *req, int status)
{
	struct blk_sync_wait *w = req->opaque;

	w->status = status;
	sem_post(&w->sem);
}

int blk_rw_sync(struct blk_dev *d, enum blk_op op, uint64_t off, void *buf, uint64_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct blk_sync_wait w = { .status = 0 };
	struct blk_req req = {
		.op = op,
		.offset = off,
		.iov = &iov,
		.iovcnt = (op == BLK_OP_READ || op == BLK_OP_WRITE) ? 1 : 0,
		.len = len,
		.done = blk_sync_done,
		.opaque = &w,
	};

	sem_init(&w.sem, 0, 0);
	blk_submit(d, &req);
	blk_plug_kick(); /* a caller inside blk_plug() would wait forever */
	while (sem_wait(&w.sem) < 0 && errno == EINTR)
		;
	sem_destroy(&w.sem);
	return w.status;
}

/* ---- until vhd/ provides the real ones ----------------------------------- */
/* These are weak so that vhd/vhd_block.c's strong definitions replace them.
 * Caveat for the build: kestrel_core is a static archive, and the linker does
 * not pull an archive member in to override a weak definition; so once vhd/
 * defines these, delete this section (or link the archive whole). The probe
 * is real either way, so a VHD image is refused, never exposed as raw bytes. */

#define VHD_COOKIE "conectix"

static bool vhd_cookie_at(int fd, off_t off)
{
	char cookie[8];

	return off >= 0 && pread(fd, cookie, sizeof(cookie), off) == (ssize_t)sizeof(cookie) &&
	       memcmp(cookie, VHD_COOKIE, sizeof(cookie)) == 0;
}

__attribute__((weak)) bool vhd_probe(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 511)
		return false;
	/* Virtual PC before 2004 wrote a 511-byte footer. */
	return vhd_cookie_at(fd, st.st_size - 512) || vhd_cookie_at(fd, st.st_size - 511);
}

static int vhd_missing_open(struct blk_dev *d, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: format=vhd: this kestrel was built without VHD support",
		 d->path);
	return -ENOTSUP;
}

static void vhd_missing_submit(struct blk_dev *d, struct blk_req *req)
{
	req->done(req, -EIO);
}

__attribute__((weak)) const struct blk_format_ops blk_vhd_ops = {
	.name = "vhd",
	.open = vhd_missing_open,
	.submit = vhd_missing_submit,
};
