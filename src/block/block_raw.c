/* The raw format: guest offset = file offset, one engine I/O per request.
 * FLUSH is fdatasync; a FUA write is the write, then fdatasync, before done();
 * DISCARD punches a hole (when the host can: probed at open); WRITE_ZEROES is
 * FALLOC_FL_ZERO_RANGE, falling back to writing zeroes. With cache=none the
 * guest's buffers may not meet O_DIRECT's alignment: those requests go
 * through an aligned bounce buffer. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kestrel/block.h"

#define RAW_SECTOR     512u
/* Write-zeroes fallback: the zero source is one read-only anonymous mapping,
 * so it is backed by the shared zero page and costs no memory. */
#define RAW_ZERO_CHUNK (1u << 20)

struct raw_state {
	bool no_zero_range; /* FALLOC_FL_ZERO_RANGE refused once: write zeroes */
	bool warned_eof;    /* logged a read past the end of the file */
};

/* Per-request state, in blk_req.priv. */
struct raw_req {
	struct blk_io io; /* io.opaque = the blk_req */
	struct blk_dev *d;
	void *bounce;	   /* cache=none with unaligned guest buffers */
	struct iovec biov; /* the bounce buffer, or a zero chunk */
};
_Static_assert(sizeof(struct raw_req) <= sizeof(((struct blk_req *)0)->priv),
	       "struct raw_req must fit in blk_req.priv");

static struct raw_req *raw_req_of(struct blk_req *req)
{
	return (struct raw_req *)(void *)req->priv;
}

static const void *raw_zero_buf;
static pthread_once_t raw_zero_once = PTHREAD_ONCE_INIT;

static void raw_zero_init(void)
{
	void *p = mmap(NULL, RAW_ZERO_CHUNK, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	raw_zero_buf = p == MAP_FAILED ? NULL : p;
}

/* ---- iovec helpers -------------------------------------------------------- */

static uint64_t raw_iov_total(const struct iovec *iov, int cnt)
{
	uint64_t n = 0;

	for (int i = 0; i < cnt; i++)
		n += iov[i].iov_len;
	return n;
}

/* Copy between iovecs and a flat buffer, starting `skip` bytes into the iovecs. */
static void raw_iov_copy(const struct iovec *iov, int cnt, uint64_t skip, uint8_t *buf,
			 uint64_t len, bool to_iov)
{
	for (int i = 0; i < cnt && len > 0; i++) {
		uint64_t n;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		n = MIN(iov[i].iov_len - skip, len);
		if (to_iov)
			memcpy((uint8_t *)iov[i].iov_base + skip, buf, n);
		else
			memcpy(buf, (uint8_t *)iov[i].iov_base + skip, n);
		buf += n;
		len -= n;
		skip = 0;
	}
}

static void raw_iov_zero(const struct iovec *iov, int cnt, uint64_t skip)
{
	for (int i = 0; i < cnt; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		memset((uint8_t *)iov[i].iov_base + skip, 0, iov[i].iov_len - skip);
		skip = 0;
	}
}

static bool raw_iov_aligned(const struct iovec *iov, int cnt, unsigned mem_align)
{
	for (int i = 0; i < cnt; i++)
		if ((uintptr_t)iov[i].iov_base % mem_align || iov[i].iov_len % RAW_SECTOR)
			return false;
	return true;
}

/* ---- completion ----------------------------------------------------------- */

static void raw_complete(struct blk_req *req, int status)
{
	struct raw_req *rr = raw_req_of(req);

	free(rr->bounce);
	rr->bounce = NULL;
	req->done(req, status);
}

static void raw_final_done(struct blk_io *io, long res)
{
	raw_complete(io->opaque, res < 0 ? (int)res : 0);
}

static void raw_submit_io(struct raw_req *rr, void (*done)(struct blk_io *, long))
{
	int r;

	rr->io.done = done;
	r = blk_engine_submit(rr->d->engine, &rr->io);
	if (r < 0)
		raw_complete(rr->io.opaque, r);
}

/* The file ends before the disk does (it shrank under us): the missing part
 * reads as zeroes, as it would from a hole, rather than failing the guest. */
static void raw_short_read(struct raw_req *rr, struct blk_req *req, uint64_t got)
{
	struct raw_state *s = rr->d->fmt_state;

	if (!__atomic_exchange_n(&s->warned_eof, true, __ATOMIC_RELAXED))
		kwarn("block: %s: read past the end of the file at %llu (did it shrink?); "
		      "returning zeroes",
		      rr->d->path, (unsigned long long)(req->offset + got));
	if (rr->bounce)
		memset((uint8_t *)rr->bounce + got, 0, rr->biov.iov_len - got);
	else
		raw_iov_zero(req->iov, req->iovcnt, got);
}

static void raw_rw_done(struct blk_io *io, long res)
{
	struct blk_req *req = io->opaque;
	struct raw_req *rr = raw_req_of(req);
	uint64_t want = io->len; /* stashed by raw_rw; unused by the engine for READ/WRITE */

	if (res < 0) {
		raw_complete(req, (int)res);
		return;
	}
	if (req->op == BLK_OP_READ) {
		if ((uint64_t)res < want)
			raw_short_read(rr, req, (uint64_t)res);
		if (rr->bounce)
			raw_iov_copy(req->iov, req->iovcnt, 0, rr->bounce, want, true);
		raw_complete(req, 0);
		return;
	}
	if (!req->fua) {
		raw_complete(req, 0);
		return;
	}
	free(rr->bounce);
	rr->bounce = NULL;
	rr->io.op = BLK_IO_FDATASYNC;
	raw_submit_io(rr, raw_final_done);
}

/* ---- requests ------------------------------------------------------------- */

static int raw_bounce(struct raw_req *rr, struct blk_req *req, uint64_t len)
{
	if (posix_memalign(&rr->bounce, MAX(rr->d->dio_mem_align, 4096u), len) != 0) {
		rr->bounce = NULL;
		return -ENOMEM;
	}
	if (req->op == BLK_OP_WRITE)
		raw_iov_copy(req->iov, req->iovcnt, 0, rr->bounce, len, false);
	rr->biov = (struct iovec){ .iov_base = rr->bounce, .iov_len = len };
	rr->io.iov = &rr->biov;
	rr->io.iovcnt = 1;
	return 0;
}

static void raw_rw(struct raw_req *rr, struct blk_req *req)
{
	struct blk_dev *d = rr->d;

	rr->io.op = req->op == BLK_OP_READ ? BLK_IO_READ : BLK_IO_WRITE;
	rr->io.off = req->offset;
	rr->io.iov = req->iov;
	rr->io.iovcnt = req->iovcnt;
	rr->io.len = raw_iov_total(req->iov, req->iovcnt);
	if (d->dio_mem_align > 1 && !raw_iov_aligned(req->iov, req->iovcnt, d->dio_mem_align)) {
		int r = raw_bounce(rr, req, rr->io.len);

		if (r < 0) {
			raw_complete(req, r);
			return;
		}
	}
	raw_submit_io(rr, raw_rw_done);
}

/* WRITE_ZEROES without ZERO_RANGE: write the range from the zero mapping,
 * RAW_ZERO_CHUNK at a time; io.off/io.len track what is left. */
static void raw_zero_write_done(struct blk_io *io, long res);

static void raw_zero_write_next(struct raw_req *rr)
{
	rr->biov = (struct iovec){ .iov_base = (void *)raw_zero_buf,
				   .iov_len = MIN(rr->io.len, RAW_ZERO_CHUNK) };
	rr->io.op = BLK_IO_WRITE;
	rr->io.iov = &rr->biov;
	rr->io.iovcnt = 1;
	raw_submit_io(rr, raw_zero_write_done);
}

static void raw_zero_write_done(struct blk_io *io, long res)
{
	struct blk_req *req = io->opaque;
	struct raw_req *rr = raw_req_of(req);

	if (res < 0) {
		raw_complete(req, (int)res);
		return;
	}
	io->off += rr->biov.iov_len;
	io->len -= rr->biov.iov_len;
	if (io->len == 0)
		raw_complete(req, 0);
	else
		raw_zero_write_next(rr);
}

static void raw_zero_write(struct raw_req *rr, struct blk_req *req)
{
	pthread_once(&raw_zero_once, raw_zero_init);
	if (!raw_zero_buf) {
		raw_complete(req, -ENOMEM);
		return;
	}
	rr->io.off = req->offset;
	rr->io.len = req->len;
	raw_zero_write_next(rr);
}

static void raw_zero_range_done(struct blk_io *io, long res)
{
	struct blk_req *req = io->opaque;
	struct raw_req *rr = raw_req_of(req);
	struct raw_state *s = rr->d->fmt_state;

	if (res == -EOPNOTSUPP || res == -EINVAL || res == -ENODEV) {
		__atomic_store_n(&s->no_zero_range, true, __ATOMIC_RELAXED);
		raw_zero_write(rr, req);
		return;
	}
	raw_complete(req, res < 0 ? (int)res : 0);
}

static void raw_submit(struct blk_dev *d, struct blk_req *req)
{
	struct raw_state *s = d->fmt_state;
	struct raw_req *rr = raw_req_of(req);

	memset(rr, 0, sizeof(*rr));
	rr->d = d;
	rr->io.fd = d->fd;
	rr->io.opaque = req;
	switch (req->op) {
	case BLK_OP_READ:
	case BLK_OP_WRITE: raw_rw(rr, req); return;
	case BLK_OP_FLUSH:
		rr->io.op = BLK_IO_FDATASYNC;
		raw_submit_io(rr, raw_final_done);
		return;
	case BLK_OP_DISCARD:
		if (!d->can_discard) {
			raw_complete(req, -EOPNOTSUPP);
			return;
		}
		rr->io.op = BLK_IO_PUNCH;
		rr->io.off = req->offset;
		rr->io.len = req->len;
		raw_submit_io(rr, raw_final_done);
		return;
	case BLK_OP_WRITE_ZEROES:
		if (__atomic_load_n(&s->no_zero_range, __ATOMIC_RELAXED)) {
			raw_zero_write(rr, req);
			return;
		}
		rr->io.op = BLK_IO_ZERO;
		rr->io.off = req->offset;
		rr->io.len = req->len;
		raw_submit_io(rr, raw_zero_range_done);
		return;
	}
	raw_complete(req, -EINVAL);
}

/* ---- open/close ----------------------------------------------------------- */

/* Can we punch holes? Punching past the end of the file with KEEP_SIZE changes
 * nothing, and fails with EOPNOTSUPP where the file system cannot. Block
 * devices: not offered (fallocate there means write-zeroes-with-unmap, which
 * few devices do). */
static bool raw_probe_discard(struct blk_dev *d)
{
	if (d->is_bdev || d->readonly)
		return false;
	return fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			 (off_t)ALIGN_UP(d->size, 4096), 4096) == 0;
}

static int raw_open(struct blk_dev *d, char *err, size_t errlen)
{
	struct raw_state *s;

	if (d->size == 0) {
		snprintf(err, errlen, "%s: the file is empty; a raw disk needs a size", d->path);
		return -EINVAL;
	}
	if (d->size % RAW_SECTOR) {
		snprintf(err, errlen,
			 "%s: size %llu bytes is not a multiple of 512 (format=raw); "
			 "resize it, e.g. truncate -s %lluK",
			 d->path, (unsigned long long)d->size,
			 (unsigned long long)(ALIGN_UP(d->size, 1024) >> 10));
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "%s: out of memory", d->path);
		return -ENOMEM;
	}
	d->fmt_state = s;
	d->can_discard = raw_probe_discard(d);
	return 0;
}

static void raw_close(struct blk_dev *d)
{
	free(d->fmt_state);
	d->fmt_state = NULL;
}

const struct blk_format_ops blk_raw_ops = {
	.name = "raw",
	.open = raw_open,
	.submit = raw_submit,
	.close = raw_close,
};
