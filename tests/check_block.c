/* The block layer: engines (io_uring, libaio, sync), the raw format, request
 * checks and disk option parsing. Data tests follow vmd's vioscribble: random
 * reads and writes through the block layer, every read compared against a
 * shadow copy, and the file itself compared at the end. Files live under the
 * build directory (ext4 here, where O_DIRECT works; tmpfs has no
 * FALLOC_FL_ZERO_RANGE, which is used on purpose for the fallback). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/filter.h>
#include <linux/loop.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kestrel/block.h"
#include "../src/block/block_priv.h" /* blk_io_step: short transfers */
#include "check_util.h"

#define ERRLEN	  512
#define DISK_SIZE MiB(8)

static char tmpdir[256];
static pid_t main_pid; /* names files outside tmpdir, for main() to remove */

static const enum blk_aio engines[] = { BLK_AIO_IO_URING, BLK_AIO_LIBAIO, BLK_AIO_SYNC };

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* xorshift64*: fast, reproducible; each test seeds it. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

static const char *tmp_path(const char *name)
{
	static char path[2][400];
	static int which;

	which ^= 1;
	snprintf(path[which], sizeof(path[which]), "%s/%s", tmpdir, name);
	return path[which];
}

/* A file of `size` bytes filled with `content` (or random bytes if NULL). */
static void make_file(const char *path, uint64_t size, uint8_t *content)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	uint8_t *buf = content;

	ck_assert_int_ge(fd, 0);
	if (!buf) {
		buf = malloc(size ? size : 1);
		ck_assert_ptr_nonnull(buf);
		fill_random(buf, size);
	}
	ck_assert_int_eq(pwrite(fd, buf, size, 0), (ssize_t)size);
	close(fd);
	if (buf != content)
		free(buf);
}

static void read_whole(const char *path, uint8_t *buf, uint64_t size)
{
	int fd = open(path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, size, 0), (ssize_t)size);
	close(fd);
}

/* Can this engine be created here? io_uring may be missing or refused in
 * containers; that skips (with a message), libaio and sync must work. */
static bool engine_available(enum blk_aio kind, const char *test)
{
	struct blk_engine *e;
	char err[ERRLEN];

	if (blk_engine_create(kind, 8, &e, err, sizeof(err)) == 0) {
		ck_assert_int_eq(blk_engine_kind(e), kind);
		blk_engine_destroy(e);
		return true;
	}
	ck_assert_msg(kind == BLK_AIO_IO_URING, "%s: %s", blk_aio_name(kind), err);
	printf("check_block: SKIP %s with io_uring: %s\n", test, err);
	return false;
}

static struct blk_dev *open_disk(const char *path, enum blk_aio aio, enum blk_cache cache,
				 bool readonly)
{
	struct blk_opts o = { .path = path,
			      .format = BLK_FMT_RAW,
			      .readonly = readonly,
			      .cache = cache,
			      .aio = aio };
	struct blk_dev *d;
	char err[ERRLEN];

	ck_assert_msg(blk_open(&d, &o, err, sizeof(err)) == 0, "blk_open: %s", err);
	ck_assert_int_eq(blk_engine_kind(d->engine), aio);
	return d;
}

/* cache=none where the file system allows it; NULL (and a message) if not. */
static struct blk_dev *open_direct(const char *path, enum blk_aio aio, const char *test)
{
	struct blk_opts o = {
		.path = path, .format = BLK_FMT_RAW, .cache = BLK_CACHE_NONE, .aio = aio
	};
	struct blk_dev *d;
	char err[ERRLEN];

	if (blk_open(&d, &o, err, sizeof(err)) == 0)
		return d;
	ck_assert_msg(strstr(err, "cache=none") != NULL, "unexpected error: %s", err);
	printf("check_block: SKIP %s with cache=none: %s\n", test, err);
	return NULL;
}

/* ---- the scribble model: random I/O at a queue depth against a shadow ------- */

#define SCRIB_MAX_QD  32
#define SCRIB_MAX_LEN KiB(64)

struct scrib_slot {
	struct blk_req req;
	struct iovec iov[3];
	uint8_t *buf;
	bool busy, finished;
	int status;
};

struct scrib {
	struct blk_dev *d;
	uint8_t *shadow;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct scrib_slot slot[SCRIB_MAX_QD];
	unsigned checked_reads, writes;
};

static void scrib_done(struct blk_req *req, int status)
{
	struct scrib *s = req->opaque;
	struct scrib_slot *sl =
		(struct scrib_slot *)((char *)req - offsetof(struct scrib_slot, req));

	pthread_mutex_lock(&s->lock);
	sl->status = status;
	sl->finished = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static bool scrib_overlaps(struct scrib *s, uint64_t off, uint64_t len)
{
	for (int i = 0; i < SCRIB_MAX_QD; i++) {
		struct blk_req *r = &s->slot[i].req;
		uint64_t rlen = s->slot[i].iov[0].iov_len + s->slot[i].iov[1].iov_len +
				s->slot[i].iov[2].iov_len;

		if (s->slot[i].busy && off < r->offset + rlen && r->offset < off + len)
			return true;
	}
	return false;
}

/* Start a random 4k or 64k read or write in sl, in 1-3 iovecs split at 512
 * boundaries, on a range no other in-flight request touches. */
static void scrib_start(struct scrib *s, struct scrib_slot *sl)
{
	uint64_t len = rnd() % 2 ? KiB(4) : KiB(64), off, cut1, cut2;
	int nio = 1 + (int)(rnd() % 3);

	do
		off = (rnd() % ((s->d->size - len) / 512 + 1)) * 512;
	while (scrib_overlaps(s, off, len));
	cut1 = nio > 1 ? (rnd() % (len / 512)) * 512 : len;
	cut2 = nio > 2 ? cut1 + (rnd() % ((len - cut1) / 512 + 1)) * 512 : len;
	sl->iov[0] = (struct iovec){ sl->buf, cut1 };
	sl->iov[1] = (struct iovec){ sl->buf + cut1, cut2 - cut1 };
	sl->iov[2] = (struct iovec){ sl->buf + cut2, len - cut2 };
	memset(&sl->req, 0, sizeof(sl->req));
	sl->req.op = rnd() % 2 ? BLK_OP_WRITE : BLK_OP_READ;
	sl->req.offset = off;
	sl->req.iov = sl->iov;
	sl->req.iovcnt = 3;
	sl->req.fua = sl->req.op == BLK_OP_WRITE && rnd() % 8 == 0;
	sl->req.done = scrib_done;
	sl->req.opaque = s;
	if (sl->req.op == BLK_OP_WRITE)
		fill_random(sl->buf, len);
	else
		memset(sl->buf, 0xee, len);
	sl->busy = true;
	sl->finished = false;
	blk_submit(s->d, &sl->req);
}

/* Check a finished slot against the shadow (reads) or apply it (writes). */
static void scrib_finish(struct scrib *s, struct scrib_slot *sl)
{
	uint64_t len = sl->iov[0].iov_len + sl->iov[1].iov_len + sl->iov[2].iov_len;

	ck_assert_int_eq(sl->status, 0);
	if (sl->req.op == BLK_OP_READ) {
		ck_assert_msg(memcmp(sl->buf, s->shadow + sl->req.offset, len) == 0,
			      "read at %llu (%llu bytes) differs from the shadow",
			      (unsigned long long)sl->req.offset, (unsigned long long)len);
		s->checked_reads++;
	} else {
		memcpy(s->shadow + sl->req.offset, sl->buf, len);
		s->writes++;
	}
	sl->busy = false;
}

/* nops random requests, at most qd in flight, on a disk whose file holds
 * `shadow`; at the end the file must equal the shadow. buf_skew offsets the
 * buffers from their (page) alignment, to exercise bouncing. */
static void scribble(struct blk_dev *d, const char *path, uint8_t *shadow, unsigned qd,
		     unsigned nops, unsigned buf_skew)
{
	struct scrib *s = calloc(1, sizeof(*s));
	unsigned started = 0, finished = 0, inflight = 0;
	uint8_t *file;

	ck_assert_ptr_nonnull(s);
	s->d = d;
	s->shadow = shadow;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	for (unsigned i = 0; i < qd; i++) {
		void *p;

		ck_assert_int_eq(posix_memalign(&p, 4096, SCRIB_MAX_LEN + 4096), 0);
		s->slot[i].buf = (uint8_t *)p + buf_skew;
	}
	while (finished < nops) {
		/* Top up the queue in one batch (one io_uring_enter / io_submit). */
		blk_plug();
		for (unsigned i = 0; i < qd && started < nops; i++) {
			if (s->slot[i].busy)
				continue;
			scrib_start(s, &s->slot[i]);
			started++;
			inflight++;
		}
		blk_unplug();
		pthread_mutex_lock(&s->lock);
		for (;;) {
			bool any = false;

			for (unsigned i = 0; i < qd; i++) {
				if (s->slot[i].busy && s->slot[i].finished) {
					scrib_finish(s, &s->slot[i]);
					finished++;
					inflight--;
					any = true;
				}
			}
			if (any || inflight == 0)
				break;
			pthread_cond_wait(&s->cond, &s->lock);
		}
		pthread_mutex_unlock(&s->lock);
	}
	ck_assert_uint_gt(s->checked_reads, 0);
	ck_assert_uint_gt(s->writes, 0);
	for (unsigned i = 0; i < qd; i++)
		free(s->slot[i].buf - buf_skew);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);

	file = malloc(d->size);
	ck_assert_ptr_nonnull(file);
	read_whole(path, file, d->size);
	ck_assert_msg(memcmp(file, shadow, d->size) == 0, "file differs from the shadow");
	free(file);
}

static void scribble_test(enum blk_aio aio, enum blk_cache cache, unsigned qd, unsigned nops,
			  unsigned skew, const char *name)
{
	const char *path = tmp_path(name);
	uint8_t *shadow = malloc(DISK_SIZE);
	struct blk_dev *d;

	if (!engine_available(aio, name))
		return;
	rng_state = 0x1234567ull + qd * 131 + aio * 7 + skew;
	ck_assert_ptr_nonnull(shadow);
	fill_random(shadow, DISK_SIZE);
	make_file(path, DISK_SIZE, shadow);
	d = cache == BLK_CACHE_NONE ? open_direct(path, aio, name)
				    : open_disk(path, aio, cache, false);
	if (d) {
		scribble(d, path, shadow, qd, nops, skew);
		blk_close(d);
	}
	free(shadow);
}

START_TEST(scribble_qd1)
{
	scribble_test(engines[_i], BLK_CACHE_WRITEBACK, 1, 400, 0, "scribble-qd1");
}
END_TEST

START_TEST(scribble_qd32)
{
	scribble_test(engines[_i], BLK_CACHE_WRITEBACK, 32, 3000, 0, "scribble-qd32");
}
END_TEST

START_TEST(scribble_direct_qd32)
{
	scribble_test(engines[_i], BLK_CACHE_NONE, 32, 1500, 0, "scribble-direct-qd32");
}
END_TEST

/* cache=none with buffers 1 byte off alignment: every request bounces. */
START_TEST(scribble_direct_unaligned)
{
	scribble_test(engines[_i], BLK_CACHE_NONE, 8, 400, 1, "scribble-direct-unaligned");
}
END_TEST

/* ---- block devices: a loop device over a file ----------------------------- */

/* Attach a loop device with logical block size bs to path; returns an fd on
 * it, or -1 (not root, no loop driver, no device node). AUTOCLEAR detaches it
 * when the last descriptor closes, so a failed test leaves nothing behind. */
static int loop_attach(const char *path, unsigned bs, char *dev, size_t devlen)
{
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	int backing = open(path, O_RDWR | O_CLOEXEC);
	int fd = -1;

	for (int tries = 0; ctl >= 0 && backing >= 0 && tries < 8; tries++) {
		struct loop_config cfg = { .fd = (uint32_t)backing,
					   .block_size = bs,
					   .info.lo_flags = LO_FLAGS_AUTOCLEAR };
		int n = ioctl(ctl, LOOP_CTL_GET_FREE), e;

		if (n < 0)
			break;
		snprintf(dev, devlen, "/dev/loop%d", n);
		fd = open(dev, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			break;
		if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
		if (e != EBUSY) /* EBUSY: someone else took it first */
			break;
	}
	if (ctl >= 0)
		close(ctl);
	if (backing >= 0)
		close(backing);
	return fd;
}

START_TEST(block_device)
{
	const char *path = tmp_path("bdev-backing");
	uint8_t *shadow = malloc(DISK_SIZE);
	char dev[64], err[ERRLEN];
	struct blk_opts o = { .aio = engines[_i], .format = BLK_FMT_RAW };
	struct blk_dev *d;
	int fd, fd4k;

	if (!engine_available(engines[_i], "block-device"))
		goto out;
	rng_state = 4242 + _i;
	fill_random(shadow, DISK_SIZE);
	make_file(path, DISK_SIZE, shadow);
	fd = loop_attach(path, 512, dev, sizeof(dev));
	if (fd < 0) {
		printf("check_block: SKIP block devices: cannot attach a loop device (%s)\n",
		       strerror(errno));
		goto out;
	}
	o.path = dev;
	ck_assert_msg(blk_open(&d, &o, err, sizeof(err)) == 0, "%s", err);
	ck_assert(d->is_bdev);
	ck_assert_uint_eq(d->size, DISK_SIZE);
	ck_assert(!d->can_discard);
	scribble(d, dev, shadow, 8, 200, 0);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_WRITE_ZEROES, MiB(1), NULL, KiB(64)), 0);
	memset(shadow + MiB(1), 0, KiB(64));
	blk_close(d);
	o.cache = BLK_CACHE_NONE;
	ck_assert_msg(blk_open(&d, &o, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_ge(d->dio_mem_align, 512);
	scribble(d, dev, shadow, 8, 200, 1);
	blk_close(d);

	/* A 4096-byte-sector device cannot take 512-byte O_DIRECT I/O. */
	fd4k = loop_attach(path, 4096, dev, sizeof(dev));
	if (fd4k >= 0) {
		ck_assert_int_eq(blk_open(&d, &o, err, sizeof(err)), -EINVAL);
		ck_assert_msg(strstr(err, "cache=none needs 4096-byte aligned I/O"), "%s", err);
		o.cache = BLK_CACHE_WRITEBACK;
		ck_assert_msg(blk_open(&d, &o, err, sizeof(err)) == 0, "%s", err);
		ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, 512, shadow, 512), 0);
		blk_close(d);
		close(fd4k);
	}
	close(fd);
out:
	free(shadow);
}
END_TEST

/* ---- requests of odd shapes ------------------------------------------------- */

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int status;
	bool done;
};

static void waiter_done(struct blk_req *req, int status)
{
	struct waiter *w = req->opaque;

	pthread_mutex_lock(&w->lock);
	w->status = status;
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static int submit_and_wait(struct blk_dev *d, struct blk_req *req)
{
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false };

	req->done = waiter_done;
	req->opaque = &w;
	blk_submit(d, req);
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	return w.status;
}

/* Unaligned iovec lengths and bases summing to whole sectors. */
static void odd_iov(struct iovec *iov, uint8_t *base, const size_t *lens, int n)
{
	for (int i = 0; i < n; i++) {
		iov[i] = (struct iovec){ base, lens[i] };
		base += lens[i] + 3; /* gaps keep every base unaligned */
	}
}

static void multi_iov_test(enum blk_aio aio, enum blk_cache cache, const char *name)
{
	static const size_t wlens[] = { 100, 1000, 3000, 4092, 512, 7 * 512 + 1, 511 };
	static const size_t rlens[] = { 4096, 1, 4095, 2048, 512, 3 * 512 + 7, 505 };
	const char *path = tmp_path(name);
	uint8_t *wbuf = malloc(KiB(32)), *rbuf = malloc(KiB(32)), *flat = malloc(KiB(16));
	uint8_t *file = malloc(MiB(1));
	struct iovec wiov[7], riov[7];
	struct blk_req req;
	struct blk_dev *d;
	uint64_t total = 0, rtotal = 0, off = KiB(40) + 512;
	size_t pos = 0;

	if (!engine_available(aio, name))
		goto out;
	for (int i = 0; i < 7; i++) {
		total += wlens[i];
		rtotal += rlens[i];
	}
	ck_assert_uint_eq(total % 512, 0);
	ck_assert_uint_eq(rtotal, total);
	make_file(path, MiB(1), NULL);
	d = cache == BLK_CACHE_NONE ? open_direct(path, aio, name)
				    : open_disk(path, aio, cache, false);
	if (!d)
		goto out;
	fill_random(wbuf, KiB(32));
	odd_iov(wiov, wbuf + 1, wlens, 7);
	memset(&req, 0, sizeof(req));
	req = (struct blk_req){ .op = BLK_OP_WRITE, .offset = off, .iov = wiov, .iovcnt = 7 };
	ck_assert_int_eq(submit_and_wait(d, &req), 0);
	for (int i = 0; i < 7; i++) {
		memcpy(flat + pos, wiov[i].iov_base, wlens[i]);
		pos += wlens[i];
	}
	memset(rbuf, 0, KiB(32));
	odd_iov(riov, rbuf + 5, rlens, 7);
	req = (struct blk_req){ .op = BLK_OP_READ, .offset = off, .iov = riov, .iovcnt = 7 };
	ck_assert_int_eq(submit_and_wait(d, &req), 0);
	pos = 0;
	for (int i = 0; i < 7; i++) {
		ck_assert_msg(memcmp(flat + pos, riov[i].iov_base, rlens[i]) == 0, "iovec %d", i);
		pos += rlens[i];
	}
	blk_close(d);
	read_whole(path, file, MiB(1));
	ck_assert(memcmp(file + off, flat, total) == 0);
out:
	free(wbuf);
	free(rbuf);
	free(flat);
	free(file);
}

START_TEST(multi_iov_writeback)
{
	multi_iov_test(engines[_i], BLK_CACHE_WRITEBACK, "multi-iov");
}
END_TEST

START_TEST(multi_iov_direct)
{
	multi_iov_test(engines[_i], BLK_CACHE_NONE, "multi-iov-direct");
}
END_TEST

/* FLUSH and FUA writes complete, and what they wrote is in the file. */
START_TEST(flush_and_fua)
{
	const char *path = tmp_path("flush");
	uint8_t buf[4096], back[4096];
	struct iovec iov = { buf, sizeof(buf) };
	struct blk_req req;
	struct blk_dev *d;

	if (!engine_available(engines[_i], "flush"))
		return;
	make_file(path, MiB(1), NULL);
	d = open_disk(path, engines[_i], BLK_CACHE_WRITEBACK, false);
	fill_random(buf, sizeof(buf));
	req = (struct blk_req){
		.op = BLK_OP_WRITE, .offset = 8192, .iov = &iov, .iovcnt = 1, .fua = true
	};
	ck_assert_int_eq(submit_and_wait(d, &req), 0);
	req = (struct blk_req){ .op = BLK_OP_FLUSH };
	ck_assert_int_eq(submit_and_wait(d, &req), 0);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_FLUSH, 0, NULL, 0), 0);
	ck_assert_uint_eq(d->flushes, 2);
	ck_assert_uint_eq(d->writes, 1);
	ck_assert_uint_eq(d->bytes_written, 4096);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, 8192, back, sizeof(back)), 0);
	ck_assert(memcmp(buf, back, sizeof(buf)) == 0);
	ck_assert_uint_eq(d->reads, 1);
	ck_assert_uint_eq(d->bytes_read, 4096);
	blk_close(d);
}
END_TEST

START_TEST(readonly_refuses_writes)
{
	const char *path = tmp_path("ro");
	uint8_t buf[4096], orig[4096];
	struct blk_dev *d;
	int fd;

	if (!engine_available(engines[_i], "readonly"))
		return;
	make_file(path, MiB(1), NULL);
	d = open_disk(path, engines[_i], BLK_CACHE_WRITEBACK, true);
	ck_assert(d->readonly);
	ck_assert(!d->can_discard);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, 0, orig, sizeof(orig)), 0);
	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_WRITE, 0, buf, sizeof(buf)), -EROFS);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_DISCARD, 0, NULL, 4096), -EROFS);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_WRITE_ZEROES, 0, NULL, 4096), -EROFS);
	/* ... even out of range: read-only is checked first. */
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_WRITE, MiB(2), buf, sizeof(buf)), -EROFS);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_FLUSH, 0, NULL, 0), 0);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, 0, buf, sizeof(buf)), 0);
	ck_assert(memcmp(buf, orig, sizeof(buf)) == 0);
	ck_assert_uint_eq(d->writes, 0);
	/* The descriptor itself is read-only: nothing could write through it. */
	fd = d->fd;
	ck_assert_int_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	blk_close(d);
}
END_TEST

START_TEST(out_of_range)
{
	const char *path = tmp_path("range");
	uint8_t *buf = malloc(KiB(8));
	struct iovec iov[BLK_MAX_IOV + 1];
	struct blk_req req;
	struct blk_dev *d;
	const uint64_t size = MiB(1);

	make_file(path, size, NULL);
	d = open_disk(path, BLK_AIO_SYNC, BLK_CACHE_WRITEBACK, false);
	ck_assert_uint_eq(d->size, size);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, size - 4096, buf, 4096), 0);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, size, buf, 512), -EINVAL);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, size - 512, buf, 1024), -EINVAL);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_WRITE, size - 512, buf, 1024), -EINVAL);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, 100, buf, 512), -EINVAL);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, 0, buf, 100), -EINVAL);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, UINT64_MAX - 511, buf, 512), -EINVAL);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, 512, buf, UINT64_MAX - 511), -EINVAL);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_DISCARD, size - 512, NULL, 1024), -EINVAL);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_WRITE_ZEROES, 0, NULL, size + 512), -EINVAL);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_WRITE_ZEROES, 512, NULL, 100), -EINVAL);
	/* Nothing to do is fine. */
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, size, buf, 0), 0);
	/* Too many iovecs; a NULL iovec array; an unknown op. */
	for (int i = 0; i <= BLK_MAX_IOV; i++)
		iov[i] = (struct iovec){ buf, 512 };
	req = (struct blk_req){ .op = BLK_OP_READ, .iov = iov, .iovcnt = BLK_MAX_IOV + 1 };
	ck_assert_int_eq(submit_and_wait(d, &req), -EINVAL);
	req = (struct blk_req){ .op = BLK_OP_READ, .iov = iov, .iovcnt = BLK_MAX_IOV };
	ck_assert_int_eq(submit_and_wait(d, &req), 0); /* 512 KiB, all of it in range */
	req = (struct blk_req){ .op = BLK_OP_READ, .iov = NULL, .iovcnt = 1 };
	ck_assert_int_eq(submit_and_wait(d, &req), -EINVAL);
	req = (struct blk_req){ .op = BLK_OP_READ, .iov = iov, .iovcnt = -1 };
	ck_assert_int_eq(submit_and_wait(d, &req), -EINVAL);
	req = (struct blk_req){ .op = (enum blk_op)99 };
	ck_assert_int_eq(submit_and_wait(d, &req), -EINVAL);
	/* An iovec length sum that wraps. */
	iov[0].iov_len = SIZE_MAX;
	iov[1].iov_len = 513;
	req = (struct blk_req){ .op = BLK_OP_WRITE, .iov = iov, .iovcnt = 2 };
	ck_assert_int_eq(submit_and_wait(d, &req), -EINVAL);
	blk_close(d);
	free(buf);
}
END_TEST

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Discard (punch) and write-zeroes read back as zeroes, the neighbours stay. */
static void zero_test(const char *path, enum blk_aio aio, bool expect_discard)
{
	const uint64_t size = MiB(8);
	uint8_t *orig = malloc(size), *back = malloc(size);
	struct blk_dev *d;
	struct stat st0, st1;
	int r;

	fill_random(orig, size);
	make_file(path, size, orig);
	d = open_disk(path, aio, BLK_CACHE_WRITEBACK, false);
	ck_assert_int_eq(d->can_discard, expect_discard);
	ck_assert_int_eq(stat(path, &st0), 0);
	r = blk_rw_sync(d, BLK_OP_DISCARD, KiB(64), NULL, KiB(256));
	if (expect_discard) {
		ck_assert_int_eq(r, 0);
		memset(orig + KiB(64), 0, KiB(256));
		ck_assert_int_eq(stat(path, &st1), 0);
		ck_assert_int_lt(st1.st_blocks, st0.st_blocks); /* really a hole */
	} else {
		ck_assert_int_eq(r, -EOPNOTSUPP);
	}
	/* Unaligned to 4k, and (on tmpfs) several fallback chunks long. */
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_WRITE_ZEROES, MiB(1) + 512, NULL, MiB(3) + 1536), 0);
	memset(orig + MiB(1) + 512, 0, MiB(3) + 1536);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_WRITE_ZEROES, MiB(6), NULL, 512), 0);
	memset(orig + MiB(6), 0, 512);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, 0, back, size), 0);
	ck_assert(memcmp(orig, back, size) == 0);
	ck_assert(all_zero(back + KiB(64), expect_discard ? KiB(256) : 0));
	ck_assert_uint_eq(d->discards, 3);
	blk_close(d);
	read_whole(path, back, size);
	ck_assert(memcmp(orig, back, size) == 0);
	ck_assert_int_eq(stat(path, &st1), 0);
	ck_assert_int_eq(st1.st_size, (off_t)size);
	free(orig);
	free(back);
}

START_TEST(discard_write_zeroes)
{
	if (!engine_available(engines[_i], "discard"))
		return;
	rng_state = 99 + _i;
	zero_test(tmp_path("zero"), engines[_i], true);
}
END_TEST

/* tmpfs can punch holes but has no FALLOC_FL_ZERO_RANGE: the zero-writing
 * fallback runs. */
START_TEST(write_zeroes_fallback)
{
	char path[64];

	if (!engine_available(engines[_i], "write-zeroes-fallback"))
		return;
	if (access("/dev/shm", W_OK) != 0) {
		printf("check_block: SKIP write-zeroes fallback: no /dev/shm\n");
		return;
	}
	snprintf(path, sizeof(path), "/dev/shm/check-block-%d-%d", (int)main_pid, _i);
	rng_state = 7 + _i;
	zero_test(path, engines[_i], true);
	unlink(path);
}
END_TEST

/* ---- engines directly ------------------------------------------------------- */

struct counter {
	unsigned n;
	long res_sum;
	bool bad;
};

static void count_done(struct blk_io *io, long res)
{
	struct counter *c = io->opaque;

	if (res < 0)
		c->bad = true;
	__atomic_fetch_add(&c->res_sum, res, __ATOMIC_RELAXED);
	__atomic_fetch_add(&c->n, 1, __ATOMIC_RELAXED);
}

/* Destroy returns only after every submitted I/O has completed: more than the
 * engine's depth is queued, reads, writes and syncs mixed. */
START_TEST(destroy_with_io_in_flight)
{
	enum { N = 300 };
	const char *path = tmp_path("destroy");
	struct blk_io *ios = calloc(N, sizeof(*ios));
	struct iovec *iov = calloc(N, sizeof(*iov));
	uint8_t *buf = malloc(KiB(4) * N); /* one buffer each: no two I/Os share memory */
	struct counter c = { 0 };
	struct blk_engine *e;
	char err[ERRLEN];
	int fd;

	if (!engine_available(engines[_i], "destroy"))
		goto out;
	make_file(path, MiB(4), NULL);
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(blk_engine_create(engines[_i], 16, &e, err, sizeof(err)), 0);
	for (int i = 0; i < N; i++) {
		iov[i] = (struct iovec){ buf + KiB(4) * i, KiB(4) };
		ios[i] = (struct blk_io){ .op = i % 3 ? BLK_IO_READ : BLK_IO_WRITE,
					  .fd = fd,
					  .off = (uint64_t)i * KiB(4),
					  .iov = &iov[i],
					  .iovcnt = 1,
					  .done = count_done,
					  .opaque = &c };
		if (i % 50 == 49)
			ios[i].op = BLK_IO_FDATASYNC;
		ck_assert_int_eq(blk_engine_submit(e, &ios[i]), 0);
	}
	blk_engine_destroy(e);
	ck_assert_uint_eq(c.n, N);
	ck_assert(!c.bad);
	close(fd);
out:
	free(ios);
	free(iov);
	free(buf);
}
END_TEST

static void store_res(struct blk_io *io, long res)
{
	*(long *)io->opaque = res;
}

static long engine_once(struct blk_engine *e, struct blk_io *io)
{
	long res = 1L << 40;

	io->done = store_res;
	io->opaque = &res;
	ck_assert_int_eq(blk_engine_submit(e, io), 0);
	blk_engine_drain(e);
	return res;
}

/* A read across the end of the file: the engine resubmits the remainder
 * (mid-iovec), finds end of file, and returns the short count. */
START_TEST(engine_short_read)
{
	const char *path = tmp_path("short");
	uint8_t data[1500], buf[3000];
	struct iovec iov[3] = { { buf, 1000 }, { buf + 1000, 1000 }, { buf + 2000, 1000 } };
	struct blk_engine *e;
	struct blk_io io;
	char err[ERRLEN];
	int fd;

	if (!engine_available(engines[_i], "short-read"))
		return;
	fill_random(data, sizeof(data));
	make_file(path, sizeof(data), data);
	fd = open(path, O_RDWR);
	ck_assert_int_eq(blk_engine_create(engines[_i], 4, &e, err, sizeof(err)), 0);
	memset(buf, 0xcc, sizeof(buf));
	io = (struct blk_io){ .op = BLK_IO_READ, .fd = fd, .off = 0, .iov = iov, .iovcnt = 3 };
	ck_assert_int_eq(engine_once(e, &io), 1500);
	ck_assert(memcmp(buf, data, 1500) == 0);
	ck_assert_int_eq(buf[1500], 0xcc);
	io = (struct blk_io){ .op = BLK_IO_READ, .fd = fd, .off = 1200, .iov = iov, .iovcnt = 3 };
	ck_assert_int_eq(engine_once(e, &io), 300);
	io = (struct blk_io){ .op = BLK_IO_READ, .fd = fd, .off = 5000, .iov = iov, .iovcnt = 3 };
	ck_assert_int_eq(engine_once(e, &io), 0);
	/* Errors come back as -errno, and bad requests are refused up front. */
	io = (struct blk_io){
		.op = BLK_IO_WRITE, .fd = open("/dev/null", O_RDONLY), .iov = iov, .iovcnt = 1
	};
	ck_assert_int_eq(engine_once(e, &io), -EBADF);
	close(io.fd);
	io = (struct blk_io){
		.op = BLK_IO_READ, .fd = -1, .iov = iov, .iovcnt = 1, .done = store_res
	};
	ck_assert_int_eq(blk_engine_submit(e, &io), -EBADF);
	io = (struct blk_io){ .op = BLK_IO_PUNCH, .fd = fd, .len = 0, .done = store_res };
	ck_assert_int_eq(blk_engine_submit(e, &io), -EINVAL);
	blk_engine_destroy(e);
	close(fd);
}
END_TEST

/* The bookkeeping behind every engine's short-transfer handling: a regular
 * file only returns short counts at its end, so drive it directly. */
START_TEST(io_step_resumes)
{
	uint8_t buf[3000];
	struct iovec iov[3] = { { buf, 1000 }, { buf + 1000, 1000 }, { buf + 2000, 1000 } };
	struct blk_io io = { .op = BLK_IO_READ, .off = 4096, .iov = iov, .iovcnt = 3 };
	const struct iovec *cur;
	uint64_t off;
	long out = 12345;
	int cnt;

	ck_assert(blk_io_step(&io, -EINTR, &out));
	ck_assert(blk_io_step(&io, -EAGAIN, &out));
	ck_assert_int_eq(out, 12345);
	ck_assert(blk_io_step(&io, 1500, &out)); /* stops mid-iovec */
	blk_io_cursor(&io, &cur, &cnt, &off);
	ck_assert_uint_eq(off, 4096 + 1500);
	ck_assert_int_eq(cnt, 2);
	ck_assert_ptr_eq(cur[0].iov_base, buf + 1500);
	ck_assert_uint_eq(cur[0].iov_len, 500);
	ck_assert_ptr_eq(cur[1].iov_base, buf + 2000);
	ck_assert_uint_eq(iov[1].iov_len, 1000); /* the caller's array is untouched */
	ck_assert(blk_io_step(&io, 500, &out));	 /* exactly at an iovec boundary */
	blk_io_cursor(&io, &cur, &cnt, &off);
	ck_assert_int_eq(cnt, 1);
	ck_assert_ptr_eq(cur[0].iov_base, buf + 2000);
	ck_assert(!blk_io_step(&io, 1000, &out));
	ck_assert_int_eq(out, 3000);
	ck_assert_ptr_null(io.rest);

	io = (struct blk_io){ .op = BLK_IO_READ, .iov = iov, .iovcnt = 3 };
	ck_assert(blk_io_step(&io, 2500, &out));
	ck_assert(!blk_io_step(&io, 0, &out)); /* end of file */
	ck_assert_int_eq(out, 2500);
	ck_assert_ptr_null(io.rest);

	io = (struct blk_io){ .op = BLK_IO_WRITE, .iov = iov, .iovcnt = 3 };
	ck_assert(blk_io_step(&io, 100, &out));
	ck_assert(!blk_io_step(&io, 0, &out)); /* no progress: an error */
	ck_assert_int_eq(out, -EIO);
	io = (struct blk_io){ .op = BLK_IO_WRITE, .iov = iov, .iovcnt = 3 };
	ck_assert(blk_io_step(&io, 100, &out));
	ck_assert(!blk_io_step(&io, -ENOSPC, &out));
	ck_assert_int_eq(out, -ENOSPC);
	ck_assert_ptr_null(io.rest);
	io = (struct blk_io){ .op = BLK_IO_FDATASYNC };
	ck_assert(!blk_io_step(&io, 0, &out));
	ck_assert_int_eq(out, 0);
}
END_TEST

/* The file shrinks under a running disk: the part past its end reads as zeroes. */
START_TEST(disk_file_shrinks)
{
	const char *path = tmp_path("shrink");
	const uint64_t size = MiB(1), cut = 700000;
	uint8_t *orig = malloc(size), *buf = malloc(KiB(256));
	struct blk_dev *d;

	if (!engine_available(engines[_i], "shrink"))
		goto out;
	fill_random(orig, size);
	make_file(path, size, orig);
	d = open_disk(path, engines[_i], BLK_CACHE_WRITEBACK, false);
	ck_assert_int_eq(truncate(path, (off_t)cut), 0);
	memset(buf, 0xcc, KiB(256));
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, KiB(512), buf, KiB(256)), 0);
	ck_assert(memcmp(buf, orig + KiB(512), cut - KiB(512)) == 0);
	ck_assert(all_zero(buf + (cut - KiB(512)), KiB(768) - cut));
	memset(buf, 0xcc, KiB(256));
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, KiB(768), buf, KiB(256)), 0);
	ck_assert(all_zero(buf, KiB(256)));
	blk_close(d);
out:
	free(orig);
	free(buf);
}
END_TEST

/* Several threads submit to one disk at once, each on its own region. */
struct hammer {
	struct blk_dev *d;
	unsigned id;
	int failures;
};

static void *hammer_thread(void *arg)
{
	struct hammer *h = arg;
	uint8_t w[8192], r[8192];
	uint64_t base = MiB(1) * h->id;

	for (unsigned i = 0; i < 150; i++) {
		uint64_t off = base + (i % 100) * 8192;

		memset(w, (int)(h->id * 16 + i), sizeof(w));
		if (blk_rw_sync(h->d, BLK_OP_WRITE, off, w, sizeof(w)) != 0 ||
		    blk_rw_sync(h->d, BLK_OP_READ, off, r, sizeof(r)) != 0 ||
		    memcmp(w, r, sizeof(w)) != 0)
			h->failures++;
		if (i % 40 == 0 && blk_rw_sync(h->d, BLK_OP_FLUSH, 0, NULL, 0) != 0)
			h->failures++;
	}
	return NULL;
}

START_TEST(concurrent_submitters)
{
	const char *path = tmp_path("threads");
	struct hammer h[4];
	pthread_t t[4];
	struct blk_dev *d;

	if (!engine_available(engines[_i], "threads"))
		return;
	make_file(path, MiB(4), NULL);
	d = open_disk(path, engines[_i], BLK_CACHE_WRITEBACK, false);
	for (unsigned i = 0; i < 4; i++) {
		h[i] = (struct hammer){ d, i, 0 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_thread, &h[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(h[i].failures, 0);
	}
	ck_assert_uint_eq(d->writes, 600);
	ck_assert_uint_eq(d->reads, 600);
	blk_close(d);
}
END_TEST

/* Inside blk_plug(), submissions wait for blk_unplug(); a synchronous request
 * there must still complete, and plugging nests. */
START_TEST(plugged_sync)
{
	const char *path = tmp_path("plug");
	uint8_t w[4096], r[4096];
	struct blk_dev *d;

	if (!engine_available(engines[_i], "plug"))
		return;
	make_file(path, MiB(1), NULL);
	d = open_disk(path, engines[_i], BLK_CACHE_WRITEBACK, false);
	fill_random(w, sizeof(w));
	blk_plug();
	blk_plug();
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_WRITE, 4096, w, sizeof(w)), 0);
	blk_unplug();
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, 4096, r, sizeof(r)), 0);
	blk_unplug();
	blk_unplug(); /* unbalanced: ignored */
	ck_assert(memcmp(w, r, sizeof(w)) == 0);
	blk_close(d);
}
END_TEST

/* ---- choosing an engine ------------------------------------------------------ */

/* In a child: make io_uring_setup (and, if asked, io_setup) fail with ENOSYS as
 * on an old kernel or in a container, then check what AUTO picks. */
static void deny_syscalls(bool deny_aio)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, deny_aio ? __NR_io_setup : 0xffffffffu, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
	};
	struct sock_fprog prog = { .len = ARRAY_SIZE(f), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
		_exit(90);
}

static int child_auto(bool deny_aio)
{
	struct blk_engine *e;
	char err[ERRLEN];

	deny_syscalls(deny_aio);
	if (blk_engine_create(BLK_AIO_AUTO, 8, &e, err, sizeof(err)) != 0)
		return 91;
	if (blk_engine_kind(e) != (deny_aio ? BLK_AIO_SYNC : BLK_AIO_LIBAIO))
		return 92;
	blk_engine_destroy(e);
	err[0] = '\0';
	if (blk_engine_create(BLK_AIO_IO_URING, 8, &e, err, sizeof(err)) != -ENOTSUP)
		return 93;
	if (!strstr(err, "aio=io_uring is unavailable: io_uring_setup: Function not implemented"))
		return 94;
	if (deny_aio && (blk_engine_create(BLK_AIO_LIBAIO, 8, &e, err, sizeof(err)) != -ENOTSUP ||
			 !strstr(err, "aio=libaio is unavailable: io_setup")))
		return 95;
	return 0;
}

START_TEST(auto_falls_back)
{
	for (int deny_aio = 0; deny_aio < 2; deny_aio++) {
		pid_t pid = fork();
		int st;

		ck_assert_int_ge(pid, 0);
		if (pid == 0)
			_exit(child_auto(deny_aio));
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "deny_aio=%d: child status %d",
			      deny_aio, st);
	}
}
END_TEST

START_TEST(engine_names)
{
	ck_assert_str_eq(blk_aio_name(BLK_AIO_AUTO), "auto");
	ck_assert_str_eq(blk_aio_name(BLK_AIO_IO_URING), "io_uring");
	ck_assert_str_eq(blk_aio_name(BLK_AIO_LIBAIO), "libaio");
	ck_assert_str_eq(blk_aio_name(BLK_AIO_SYNC), "sync");
	ck_assert_str_eq(blk_format_name(BLK_FMT_VHD), "vhd");
}
END_TEST

/* ---- opening ------------------------------------------------------------------ */

static int try_open(const char *spec, char *err)
{
	struct blk_opts o;
	struct blk_dev *d;
	int r;

	ck_assert_msg(blk_parse_opts(spec, &o, err, ERRLEN) == 0, "%s: %s", spec, err);
	r = blk_open(&d, &o, err, ERRLEN);
	blk_opts_free(&o);
	if (r == 0)
		blk_close(d);
	return r;
}

START_TEST(open_errors)
{
	char err[ERRLEN], spec[600];
	uint8_t vhd_tail[512] = "conectix";

	snprintf(spec, sizeof(spec), "path=%s", tmp_path("missing"));
	ck_assert_int_eq(try_open(spec, err), -ENOENT);
	ck_assert_msg(strstr(err, "missing: No such file or directory"), "%s", err);

	snprintf(spec, sizeof(spec), "path=%s", tmpdir);
	ck_assert_int_eq(try_open(spec, err), -EINVAL);
	ck_assert_msg(strstr(err, "not a regular file or block device"), "%s", err);

	make_file(tmp_path("odd"), 1000, NULL);
	snprintf(spec, sizeof(spec), "path=%s,format=raw", tmp_path("odd"));
	ck_assert_int_eq(try_open(spec, err), -EINVAL);
	ck_assert_msg(strstr(err, "odd: size 1000 bytes is not a multiple of 512"), "%s", err);

	make_file(tmp_path("empty"), 0, NULL);
	snprintf(spec, sizeof(spec), "path=%s", tmp_path("empty"));
	ck_assert_int_eq(try_open(spec, err), -EINVAL);
	ck_assert_msg(strstr(err, "empty"), "%s", err);

	/* Something that only looks like a VHD is never opened as raw by AUTO. */
	make_file(tmp_path("fake.vhd"), KiB(64), NULL);
	{
		int fd = open(tmp_path("fake.vhd"), O_WRONLY);

		ck_assert_int_eq(pwrite(fd, vhd_tail, 512, KiB(64) - 512), 512);
		close(fd);
	}
	snprintf(spec, sizeof(spec), "path=%s", tmp_path("fake.vhd"));
	ck_assert_int_ne(try_open(spec, err), 0);
	ck_assert_msg(strstr(err, "fake.vhd"), "%s", err);
	snprintf(spec, sizeof(spec), "path=%s,format=raw", tmp_path("fake.vhd"));
	ck_assert_int_eq(try_open(spec, err), 0);

	make_file(tmp_path("ok"), MiB(1), NULL);
	snprintf(spec, sizeof(spec), "path=%s,format=vhd", tmp_path("ok"));
	ck_assert_int_ne(try_open(spec, err), 0);
	ck_assert_msg(strstr(err, "ok"), "%s", err);
}
END_TEST

/* format=auto, writable, raw (issue 9): a guest write that would put a VHD
 * footer cookie where vhd_probe() looks (the footer at size-512 or size-511,
 * the footer copy at 0) fails with -EIO and changes nothing; any other write,
 * zeroes, and the same writes with format=raw go through. */
static struct blk_dev *open_spec(const char *spec)
{
	struct blk_opts o;
	struct blk_dev *d;
	char err[ERRLEN];

	ck_assert_msg(blk_parse_opts(spec, &o, err, ERRLEN) == 0, "%s: %s", spec, err);
	ck_assert_msg(blk_open(&d, &o, err, ERRLEN) == 0, "%s: %s", spec, err);
	blk_opts_free(&o);
	return d;
}

static int write_cookie(struct blk_dev *d, uint64_t sector, unsigned at, unsigned nsect)
{
	uint8_t buf[4096] = { 0 };

	ck_assert_uint_le(nsect * 512u, sizeof(buf));
	memcpy(buf + at, "conectix", 8);
	return blk_rw_sync(d, BLK_OP_WRITE, sector * 512, buf, nsect * 512u);
}

START_TEST(probed_raw_guard)
{
	const char *path = tmp_path("guard.img");
	uint64_t last = MiB(1) / 512 - 1;
	uint8_t *before = malloc(MiB(1)), *after = malloc(MiB(1));
	struct blk_dev *d;
	char spec[600];
	int fd;

	make_file(path, MiB(1), NULL);
	read_whole(path, before, MiB(1));
	snprintf(spec, sizeof(spec), "path=%s,aio=sync", path);
	d = open_spec(spec);
	ck_assert_str_eq(d->fmt->name, "raw");
	ck_assert(d->probed_raw);
	ck_assert_int_eq(write_cookie(d, 0, 0, 1), -EIO); /* footer copy */
	ck_assert_int_eq(write_cookie(d, 0, 0, 8), -EIO);
	ck_assert_int_eq(write_cookie(d, last, 0, 1), -EIO); /* footer */
	ck_assert_int_eq(write_cookie(d, last, 1, 1), -EIO); /* 511-byte footer */
	ck_assert_int_eq(write_cookie(d, last - 7, 7 * 512, 8), -EIO);
	ck_assert_int_eq(write_cookie(d, last - 7, 7 * 512 + 1, 8), -EIO);
	ck_assert_uint_eq(d->refused_writes, 6);
	ck_assert_uint_eq(d->writes, 0);
	read_whole(path, after, MiB(1));
	ck_assert(memcmp(before, after, MiB(1)) == 0);
	/* Elsewhere the cookie is data like any other. */
	ck_assert_int_eq(write_cookie(d, 0, 1, 1), 0);
	ck_assert_int_eq(write_cookie(d, 1, 0, 1), 0);
	ck_assert_int_eq(write_cookie(d, last - 1, 0, 1), 0);
	ck_assert_int_eq(write_cookie(d, last, 2, 1), 0);
	ck_assert_int_eq(blk_rw_sync(d, BLK_OP_WRITE_ZEROES, 0, NULL, MiB(1)), 0);
	ck_assert_uint_eq(d->refused_writes, 6);
	blk_close(d);
	fd = open(path, O_RDONLY);
	ck_assert(!vhd_probe(fd));
	close(fd);

	/* The user's format=raw lifts it; the file then probes as a VHD. */
	snprintf(spec, sizeof(spec), "path=%s,format=raw,aio=sync", path);
	d = open_spec(spec);
	ck_assert(!d->probed_raw);
	ck_assert_int_eq(write_cookie(d, last, 0, 1), 0);
	blk_close(d);
	fd = open(path, O_RDONLY);
	ck_assert(vhd_probe(fd));
	close(fd);
	free(before);
	free(after);
}
END_TEST

/* Within one process a file keeps the format its first format=auto open
 * chose: a reopen (the guest's reboot) does not probe again. */
START_TEST(auto_format_pinned)
{
	const char *path = tmp_path("pin.img"), *other = tmp_path("pin2.img");
	uint8_t cookie[512] = "conectix";
	struct blk_dev *d;
	char spec[600];
	int fd;

	make_file(path, MiB(1), NULL);
	snprintf(spec, sizeof(spec), "path=%s,aio=sync", path);
	d = open_spec(spec);
	ck_assert_str_eq(d->fmt->name, "raw");
	blk_close(d);
	/* Something else than the guest writes a footer meanwhile. */
	fd = open(path, O_WRONLY);
	ck_assert_int_eq(pwrite(fd, cookie, 512, MiB(1) - 512), 512);
	close(fd);
	d = open_spec(spec);
	ck_assert_str_eq(d->fmt->name, "raw");
	ck_assert(d->probed_raw);
	blk_close(d);
	/* Another name for it is another file to the pin: probed, a VHD. */
	ck_assert_int_eq(link(path, other), 0);
	snprintf(spec, sizeof(spec), "path=%s,aio=sync", other);
	{
		struct blk_opts o;
		char err[ERRLEN];

		ck_assert_int_eq(blk_parse_opts(spec, &o, err, ERRLEN), 0);
		ck_assert_int_ne(blk_open(&d, &o, err, ERRLEN), 0);
		blk_opts_free(&o);
	}
	unlink(other);
}
END_TEST

/* A second writer is refused; readers share. */
START_TEST(open_locks)
{
	const char *path = tmp_path("locked");
	struct blk_opts rw = { .path = path, .aio = BLK_AIO_SYNC };
	struct blk_opts ro = { .path = path, .aio = BLK_AIO_SYNC, .readonly = true };
	struct blk_dev *a, *b, *c;
	char err[ERRLEN];

	make_file(path, MiB(1), NULL);
	ck_assert_int_eq(blk_open(&a, &rw, err, sizeof(err)), 0);
	ck_assert_int_eq(blk_open(&b, &rw, err, sizeof(err)), -EBUSY);
	ck_assert_msg(strstr(err, "locked: in use by another process"), "%s", err);
	ck_assert_int_eq(blk_open(&b, &ro, err, sizeof(err)), -EBUSY);
	blk_close(a);
	ck_assert_int_eq(blk_open(&b, &ro, err, sizeof(err)), 0);
	ck_assert_int_eq(blk_open(&c, &ro, err, sizeof(err)), 0);
	ck_assert_int_eq(blk_open(&a, &rw, err, sizeof(err)), -EBUSY);
	blk_close(b);
	blk_close(c);
}
END_TEST

/* A FIFO given as a disk is refused at once, read-only too -- whose plain
 * open(2) waits for a writer forever and so hung disk-add (issue #9) -- as
 * are character devices. */
START_TEST(open_fifo_refused)
{
	const char *path = tmp_path("fifo");
	struct blk_opts ro = { .path = path, .aio = BLK_AIO_SYNC, .readonly = true };
	struct blk_opts rw = { .path = path, .aio = BLK_AIO_SYNC };
	struct blk_opts null = { .path = "/dev/null", .aio = BLK_AIO_SYNC, .readonly = true };
	struct blk_dev *d;
	char err[ERRLEN];

	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_int_eq(blk_open(&d, &ro, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "fifo: not a regular file or block device"), "%s", err);
	ck_assert_int_eq(blk_open(&d, &rw, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "fifo: not a regular file or block device"), "%s", err);
	ck_assert_int_eq(blk_open(&d, &null, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "not a regular file or block device"), "%s", err);
	unlink(path);
}
END_TEST

/* The O_NONBLOCK that keeps a FIFO from hanging the open makes a lease
 * another process holds fail with EWOULDBLOCK; a regular file is then
 * waited for as a plain open(2) would: the holder is told (SIGIO), lets go,
 * and the disk opens. */
START_TEST(open_waits_for_a_lease)
{
	const char *path = tmp_path("leased");
	struct blk_opts rw = { .path = path, .aio = BLK_AIO_SYNC };
	int ready[2], status;
	struct blk_dev *d;
	char err[ERRLEN], c;
	pid_t pid;

	make_file(path, MiB(1), NULL);
	ck_assert_int_eq(pipe(ready), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		sigset_t io;
		int fd = open(path, O_RDONLY);

		sigemptyset(&io);
		sigaddset(&io, SIGIO);
		sigprocmask(SIG_BLOCK, &io, NULL);
		if (fd < 0 || fcntl(fd, F_SETLEASE, F_WRLCK) < 0)
			_exit(2);
		(void)!write(ready[1], "r", 1);
		if (sigwaitinfo(&io, NULL) != SIGIO)
			_exit(3);
		_exit(fcntl(fd, F_SETLEASE, F_UNLCK) < 0 ? 4 : 0);
	}
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	ck_assert_msg(blk_open(&d, &rw, err, sizeof(err)) == 0, "%s", err);
	blk_close(d);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lease holder: %#x", status);
	close(ready[0]);
	close(ready[1]);
}
END_TEST

START_TEST(open_reports_engine_and_alignment)
{
	const char *path = tmp_path("info");
	struct blk_dev *d;

	make_file(path, MiB(1), NULL);
	d = open_disk(path, BLK_AIO_SYNC, BLK_CACHE_WRITEBACK, false);
	ck_assert_uint_eq(d->dio_mem_align, 1);
	ck_assert_uint_eq(d->block_size, 512);
	ck_assert_str_eq(d->fmt->name, "raw");
	ck_assert(!d->is_bdev);
	blk_close(d);
	d = open_direct(path, BLK_AIO_SYNC, "alignment");
	if (d) {
		ck_assert_uint_ge(d->dio_mem_align, 1);
		ck_assert_uint_le(d->dio_mem_align, 4096);
		blk_close(d);
	}
}
END_TEST

/* ---- option strings --------------------------------------------------------------- */

START_TEST(parse_good)
{
	struct blk_opts o;
	char err[ERRLEN];
	struct blk_opt_extra ex[] = {
		{ "bus", NULL }, { "removable", NULL }, { "id", NULL }, { NULL, NULL }
	};

	ck_assert_int_eq(blk_parse_opts("path=/a/b.img", &o, err, sizeof(err)), 0);
	ck_assert_str_eq(o.path, "/a/b.img");
	ck_assert_int_eq(o.format, BLK_FMT_AUTO);
	ck_assert(!o.readonly);
	ck_assert_int_eq(o.cache, BLK_CACHE_WRITEBACK);
	ck_assert_int_eq(o.aio, BLK_AIO_AUTO);
	blk_opts_free(&o);
	ck_assert_ptr_null(o.owned);

	ck_assert_int_eq(blk_parse_opts("format=vhd,readonly,cache=none,aio=libaio,path=x.vhd", &o,
					err, sizeof(err)),
			 0);
	ck_assert_str_eq(o.path, "x.vhd");
	ck_assert_int_eq(o.format, BLK_FMT_VHD);
	ck_assert(o.readonly);
	ck_assert_int_eq(o.cache, BLK_CACHE_NONE);
	ck_assert_int_eq(o.aio, BLK_AIO_LIBAIO);
	ck_assert_ptr_null(o.parent_dirs);
	blk_opts_free(&o);

	ck_assert_int_eq(
		blk_parse_opts("path=c.vhd,parent-dir=/base:/more,,dirs", &o, err, sizeof(err)), 0);
	ck_assert_str_eq(o.parent_dirs, "/base:/more,dirs");
	blk_opts_free(&o);

	ck_assert_int_eq(blk_parse_opts("path=d,readonly=off,aio=io_uring,format=raw,"
					"cache=writeback",
					&o, err, sizeof(err)),
			 0);
	ck_assert(!o.readonly);
	ck_assert_int_eq(o.aio, BLK_AIO_IO_URING);
	ck_assert_int_eq(o.format, BLK_FMT_RAW);
	ck_assert_int_eq(o.cache, BLK_CACHE_WRITEBACK);
	ck_assert(!blk_cache_direct(o.cache) && blk_cache_volatile(o.cache));
	blk_opts_free(&o);
	/* QEMU's three: none keeps the guest-visible volatile cache, directsync not. */
	ck_assert_int_eq(blk_parse_opts("path=d,cache=directsync", &o, err, sizeof(err)), 0);
	ck_assert_int_eq(o.cache, BLK_CACHE_DIRECTSYNC);
	ck_assert(blk_cache_direct(o.cache) && !blk_cache_volatile(o.cache));
	ck_assert(blk_cache_direct(BLK_CACHE_NONE) && blk_cache_volatile(BLK_CACHE_NONE));
	ck_assert_str_eq(blk_cache_name(o.cache), "directsync");
	blk_opts_free(&o);
	ck_assert_int_eq(blk_parse_opts("path=d,aio=sync,readonly=yes", &o, err, sizeof(err)), 0);
	ck_assert_int_eq(o.aio, BLK_AIO_SYNC);
	ck_assert(o.readonly);
	blk_opts_free(&o);

	/* ",," is a comma inside a value. */
	ck_assert_int_eq(blk_parse_opts("path=a,,b,,,,c.img,readonly", &o, err, sizeof(err)), 0);
	ck_assert_str_eq(o.path, "a,b,,c.img");
	ck_assert(o.readonly);
	blk_opts_free(&o);
	ck_assert_int_eq(blk_parse_opts("path=x,,", &o, err, sizeof(err)), 0);
	ck_assert_str_eq(o.path, "x,");
	blk_opts_free(&o);
	ck_assert_int_eq(blk_parse_opts("path=a=b", &o, err, sizeof(err)), 0);
	ck_assert_str_eq(o.path, "a=b");
	blk_opts_free(&o);

	/* Keys the caller handles. */
	ck_assert_int_eq(
		blk_parse_opts_ex("bus=scsi,path=disk.img,removable", &o, ex, err, sizeof(err)), 0);
	ck_assert_str_eq(o.path, "disk.img");
	ck_assert_str_eq(ex[0].value, "scsi");
	ck_assert_str_eq(ex[1].value, "");
	ck_assert_ptr_null(ex[2].value);
	blk_opts_free(&o);
}
END_TEST

static void parse_bad(const char *spec, const char *want)
{
	struct blk_opt_extra ex[] = { { "bus", NULL }, { NULL, NULL } };
	struct blk_opts o;
	char err[ERRLEN] = "";

	ck_assert_msg(blk_parse_opts_ex(spec, &o, ex, err, sizeof(err)) == -EINVAL, "%s", spec);
	ck_assert_msg(strstr(err, want), "%s: got '%s', want '%s'", spec, err, want);
	ck_assert_ptr_null(o.owned);
	ck_assert_ptr_null(ex[0].value);
}

START_TEST(parse_errors)
{
	parse_bad("", "path=FILE is required");
	parse_bad("readonly", "path=FILE is required");
	parse_bad("bus=scsi", "path=FILE is required");
	parse_bad("path=", "'path': empty file name");
	parse_bad("path", "'path': empty file name");
	parse_bad("path=a,colour=blue", "unknown disk option 'colour' (known: path, format, "
					"readonly, cache, aio, parent-dir, bus)");
	parse_bad("path=a,format=qcow2", "'format': expected raw, vhd or auto, got 'qcow2'");
	parse_bad("path=a,cache=unsafe", "'cache': expected writeback, none or directsync");
	parse_bad("path=a,cache", "'cache': expected writeback, none or directsync, got ''");
	parse_bad("path=a,aio=native", "'aio': expected io_uring, libaio, sync or auto");
	parse_bad("path=a,readonly=maybe", "'readonly': expected on or off, got 'maybe'");
	parse_bad("path=a,path=b", "disk option 'path' given twice");
	parse_bad("path=a,bus=scsi,bus=ide", "disk option 'bus' given twice");
	parse_bad("path=a,cache=none,cache=none", "'cache' given twice");
	parse_bad("path=a,parent-dir=", "'parent-dir': expected DIR[:DIR...]");
	parse_bad("path=a,parent-dir=/x,parent-dir=/y", "'parent-dir' given twice");
	parse_bad("path=a,", "empty option");
	parse_bad(",path=a", "empty option");
	parse_bad("path=a,,,,,", "empty option");
	parse_bad("path=a,=x", "unknown disk option ''");
	{
		struct blk_opts o;
		char err[ERRLEN];

		/* Without an allow-list, a front end's key is unknown too. */
		ck_assert_int_eq(blk_parse_opts("path=a,bus=scsi", &o, err, sizeof(err)), -EINVAL);
		ck_assert_msg(strstr(err, "unknown disk option 'bus'"), "%s", err);
	}
}
END_TEST

/* ---- suite ------------------------------------------------------------------------- */

static Suite *block_suite(void)
{
	Suite *s = suite_create("block");
	int n = ARRAY_SIZE(engines);
	TCase *data, *eng;

	data = ADD_TCASE(s, "data", NULL, NULL, 120, out_of_range);
	tcase_add_loop_test(data, scribble_qd1, 0, n);
	tcase_add_loop_test(data, scribble_qd32, 0, n);
	tcase_add_loop_test(data, scribble_direct_qd32, 0, n);
	tcase_add_loop_test(data, scribble_direct_unaligned, 0, n);
	tcase_add_loop_test(data, multi_iov_writeback, 0, n);
	tcase_add_loop_test(data, multi_iov_direct, 0, n);
	tcase_add_loop_test(data, flush_and_fua, 0, n);
	tcase_add_loop_test(data, readonly_refuses_writes, 0, n);
	tcase_add_loop_test(data, discard_write_zeroes, 0, n);
	tcase_add_loop_test(data, write_zeroes_fallback, 0, n);
	tcase_add_loop_test(data, disk_file_shrinks, 0, n);
	tcase_add_loop_test(data, concurrent_submitters, 0, n);
	tcase_add_loop_test(data, plugged_sync, 0, n);
	tcase_add_loop_test(data, block_device, 0, n);

	eng = ADD_TCASE(s, "engine", NULL, NULL, 60, io_step_resumes, auto_falls_back,
			engine_names);
	tcase_add_loop_test(eng, destroy_with_io_in_flight, 0, n);
	tcase_add_loop_test(eng, engine_short_read, 0, n);

	/* open_locks waits out the lock grace period (block.c) twice. */
	ADD_TCASE(s, "open", NULL, NULL, 60, open_errors, open_locks,
		  open_reports_engine_and_alignment, probed_raw_guard, auto_format_pinned,
		  open_waits_for_a_lease);
	/* Before the fix a FIFO hung the open: the timeout ends such a run. */
	ADD_TCASE(s, "open_fifo", NULL, NULL, 10, open_fifo_refused);
	ADD_TCASE(s, "opts", NULL, NULL, 0, parse_good, parse_errors);
	return s;
}

int main(void)
{
	int failed;

	/* ext4 under the build directory: O_DIRECT works there, unlike tmpfs on
	 * older kernels. */
	snprintf(tmpdir, sizeof(tmpdir), "%s/check-block-XXXXXX", KESTREL_BINARY_DIR);
	make_tmpdir(tmpdir);
	main_pid = getpid();
	failed = run_suite(block_suite());
	rm_tree(tmpdir);
	for (int i = 0; i < (int)ARRAY_SIZE(engines); i++) {
		char shm[64];

		snprintf(shm, sizeof(shm), "/dev/shm/check-block-%d-%d", (int)main_pid, i);
		unlink(shm);
	}
	return failed ? 1 : 0;
}
