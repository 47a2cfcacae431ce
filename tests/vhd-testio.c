/* Test helper for VHD images, driving kestrel's block layer (engine + the VHD
 * format) the way a guest does: concurrent requests, flushes.
 *
 *   vhd-testio write IMG OFFSET LENGTH BYTE    fill a range with one byte value, flush
 *   vhd-testio dump IMG OUT                    the whole disk, read through the block
 *                                              layer, into the raw file OUT
 *   vhd-testio bench IMG read|write rand|seq BS DEPTH COUNT [none|writeback]
 *                                              COUNT requests of BS bytes, DEPTH in
 *                                              flight, through the engine; prints
 *                                              "iops=N MBps=N"
 *   vhd-testio crash-writer IMG LOG SEED [N]   tagged allocating writes in batches:
 *                                              log "W id off len", write the batch
 *                                              concurrently, flush, log "F"; N batches
 *                                              or until killed
 *   vhd-testio crash-verify IMG|RAW LOG        every sector holds a value the log
 *                                              allows: after an "F" exactly the last
 *                                              write; writes in flight at a kill
 *                                              ("K", appended by the test) may or may
 *                                              not have landed
 * IMG is opened through blk_open (format probed), RAW with plain reads. A
 * sector written by write `id` holds "KSTLSECT", id, its sector number, then a
 * byte pattern of both; id 0 means zeroes (WRITE_ZEROES). Exit 0 on success. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kestrel/block.h"
#include "kestrel/vhd.h"

/* Link vhd/vhd_block.c's format, not src/block/block.c's weak placeholder. */
extern const struct blk_format_ops *const vhd_blk_ops_anchor;
__attribute__((used)) static const void *const link_vhd_block = &vhd_blk_ops_anchor;

#define SECT	  512u
#define MAX_BATCH 16
#define MAX_SECTS 64

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int pending;
	int status;
};

static void req_done(struct blk_req *req, int status)
{
	struct waiter *w = req->opaque;

	pthread_mutex_lock(&w->lock);
	if (status && !w->status)
		w->status = status;
	if (--w->pending == 0)
		pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->lock);
}

static int wait_all(struct waiter *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->pending)
		pthread_cond_wait(&w->cv, &w->lock);
	pthread_mutex_unlock(&w->lock);
	return w->status;
}

static struct blk_dev *open_disk_cache(const char *path, enum blk_cache cache)
{
	struct blk_opts o = {
		.path = path, .format = BLK_FMT_AUTO, .aio = BLK_AIO_AUTO, .cache = cache
	};
	struct blk_dev *d;
	char err[512];

	if (blk_open(&d, &o, err, sizeof(err))) {
		fprintf(stderr, "vhd-testio: %s\n", err);
		exit(1);
	}
	return d;
}

static struct blk_dev *open_disk(const char *path)
{
	return open_disk_cache(path, BLK_CACHE_WRITEBACK);
}

static void fill_sector(uint8_t *p, uint64_t id, uint64_t sector)
{
	memcpy(p, "KSTLSECT", 8);
	memcpy(p + 8, &id, 8);
	memcpy(p + 16, &sector, 8);
	for (unsigned i = 24; i < SECT; i++)
		p[i] = (uint8_t)(id * 131 + sector * 7 + i);
}

static bool is_zero(const uint8_t *p)
{
	return p[0] == 0 && memcmp(p, p + 1, SECT - 1) == 0;
}

/* Which write produced this sector: 0 for zeroes, UINT64_MAX for garbage. */
static uint64_t sector_id(const uint8_t *p, uint64_t sector)
{
	uint8_t want[SECT];
	uint64_t id, s;

	if (is_zero(p))
		return 0;
	if (memcmp(p, "KSTLSECT", 8) != 0)
		return UINT64_MAX;
	memcpy(&id, p + 8, 8);
	memcpy(&s, p + 16, 8);
	fill_sector(want, id, sector);
	return s == sector && memcmp(p, want, SECT) == 0 ? id : UINT64_MAX;
}

/* ---- write ------------------------------------------------------------------------ */

static int cmd_write(int argc, char **argv)
{
	uint64_t off, len;
	struct blk_dev *d;
	uint8_t *buf;
	int ret;

	if (argc != 6 || parse_size(argv[3], &off) || parse_size(argv[4], &len)) {
		fprintf(stderr, "usage: vhd-testio write IMG OFFSET LENGTH BYTE\n");
		return 2;
	}
	d = open_disk(argv[2]);
	buf = malloc(len);
	memset(buf, (int)strtol(argv[5], NULL, 0), len);
	ret = blk_rw_sync(d, BLK_OP_WRITE, off, buf, len);
	if (!ret)
		ret = blk_rw_sync(d, BLK_OP_FLUSH, 0, NULL, 0);
	blk_close(d);
	free(buf);
	if (ret)
		fprintf(stderr, "vhd-testio: write: %s\n", strerror(-ret));
	return ret ? 1 : 0;
}

/* ---- dump ------------------------------------------------------------------------ */

static int cmd_dump(int argc, char **argv)
{
	struct blk_dev *d;
	uint8_t *buf = malloc(1u << 20);
	int fd, ret = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: vhd-testio dump IMG OUT\n");
		return 2;
	}
	d = open_disk(argv[2]);
	fd = open(argv[3], O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0 || !buf || ftruncate(fd, (off_t)d->size) < 0)
		return 1;
	for (uint64_t off = 0; !ret && off < d->size; off += 1u << 20) {
		uint64_t n = MIN(1u << 20, d->size - off);

		ret = blk_rw_sync(d, BLK_OP_READ, off, buf, n);
		if (!ret && pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			ret = -EIO;
	}
	blk_close(d);
	close(fd);
	free(buf);
	if (ret)
		fprintf(stderr, "vhd-testio: dump: %s\n", strerror(-ret));
	return ret ? 1 : 0;
}

/* ---- bench ----------------------------------------------------------------------- */

struct bench {
	struct blk_dev *d;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	uint64_t issued, done, count, blocks, bs, seed;
	bool write, rand;
	int inflight, status;
};

struct bench_slot {
	struct blk_req req;
	struct iovec iov;
	struct bench *b;
};

static uint64_t rnd(uint64_t *s);

/* Called with b->lock held; drops it to submit. */
static void bench_next(struct bench *b, struct bench_slot *sl)
{
	uint64_t n = b->issued++;
	uint64_t blk = b->rand ? rnd(&b->seed) % b->blocks : n % b->blocks;

	b->inflight++;
	sl->req = (struct blk_req){ .op = b->write ? BLK_OP_WRITE : BLK_OP_READ,
				    .offset = blk * b->bs,
				    .iov = &sl->iov,
				    .iovcnt = 1,
				    .done = sl->req.done,
				    .opaque = sl };
	pthread_mutex_unlock(&b->lock);
	blk_submit(b->d, &sl->req);
	pthread_mutex_lock(&b->lock);
}

static void bench_done(struct blk_req *req, int status)
{
	struct bench_slot *sl = req->opaque;
	struct bench *b = sl->b;

	pthread_mutex_lock(&b->lock);
	b->inflight--;
	b->done++;
	if (status && !b->status)
		b->status = status;
	if (b->issued < b->count && !b->status)
		bench_next(b, sl);
	if (b->inflight == 0)
		pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->lock);
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmd_bench(int argc, char **argv)
{
	struct bench b = { .lock = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER,
			   .seed = 7 };
	struct bench_slot *slots;
	uint64_t depth;
	uint8_t *bufs;
	double t0, t;

	if ((argc != 8 && argc != 9) || parse_size(argv[5], &b.bs) || !b.bs || b.bs % 512 ||
	    parse_size(argv[6], &depth) || !depth || parse_size(argv[7], &b.count)) {
		fprintf(stderr,
			"usage: vhd-testio bench IMG read|write rand|seq BS DEPTH COUNT [none|writeback]\n");
		return 2;
	}
	b.write = !strcmp(argv[3], "write");
	b.rand = !strcmp(argv[4], "rand");
	b.d = open_disk_cache(argv[2], argc == 9 && !strcmp(argv[8], "none") ? BLK_CACHE_NONE
									     : BLK_CACHE_WRITEBACK);
	b.blocks = b.d->size / b.bs;
	slots = calloc(depth, sizeof(*slots));
	if (posix_memalign((void **)&bufs, 4096, depth * b.bs) || !slots)
		return 1;
	memset(bufs, 0x6b, depth * b.bs);
	t0 = now_s();
	pthread_mutex_lock(&b.lock);
	for (uint64_t i = 0; i < depth && b.issued < b.count; i++) {
		slots[i] = (struct bench_slot){ .iov = { bufs + i * b.bs, b.bs }, .b = &b };
		slots[i].req.done = bench_done;
		bench_next(&b, &slots[i]);
	}
	while (b.inflight)
		pthread_cond_wait(&b.cv, &b.lock);
	pthread_mutex_unlock(&b.lock);
	if (b.write && !b.status)
		b.status = blk_rw_sync(b.d, BLK_OP_FLUSH, 0, NULL, 0);
	t = now_s() - t0;
	blk_close(b.d);
	if (b.status) {
		fprintf(stderr, "vhd-testio: bench: %s\n", strerror(-b.status));
		return 1;
	}
	printf("iops=%.0f MBps=%.1f seconds=%.3f\n", (double)b.done / t,
	       (double)b.done * (double)b.bs / t / 1e6, t);
	return 0;
}

/* ---- crash-writer ----------------------------------------------------------------- */

struct wr {
	struct blk_req req;
	struct iovec iov;
	uint64_t id, off, n; /* sectors */
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* One write(2) per line on an O_APPEND file: a kill never leaves half a line. */
static void log_line(int fd, const char *line)
{
	ssize_t n = (ssize_t)strlen(line);

	if (write(fd, line, (size_t)n) != n)
		exit(1);
}

static bool overlaps(const struct wr *w, int n, uint64_t off, uint64_t len)
{
	for (int i = 0; i < n; i++)
		if (off < w[i].off + w[i].n && w[i].off < off + len)
			return true;
	return false;
}

static void make_batch(struct wr *w, int n, uint64_t sectors, uint64_t *seed, uint64_t *next_id)
{
	for (int i = 0; i < n; i++) {
		uint64_t len, off;

		do {
			len = 1 + rnd(seed) % MAX_SECTS;
			off = rnd(seed) % (sectors - len);
		} while (overlaps(w, i, off, len));
		w[i].id = rnd(seed) % 8 == 0 ? 0 : (*next_id)++;
		w[i].off = off;
		w[i].n = len;
	}
}

static void submit_batch(struct blk_dev *d, struct wr *w, int n, uint8_t *bufs, struct waiter *wt)
{
	wt->pending = n;
	for (int i = 0; i < n; i++) {
		uint8_t *b = bufs + (size_t)i * MAX_SECTS * SECT;

		for (uint64_t k = 0; k < w[i].n; k++)
			fill_sector(b + k * SECT, w[i].id, w[i].off + k);
		w[i].iov = (struct iovec){ b, w[i].n * SECT };
		w[i].req = (struct blk_req){
			.op = w[i].id ? BLK_OP_WRITE : BLK_OP_WRITE_ZEROES,
			.offset = w[i].off * SECT,
			.iov = &w[i].iov,
			.iovcnt = w[i].id ? 1 : 0,
			.len = w[i].n * SECT,
			.fua = (w[i].id & 15) == 7,
			.done = req_done,
			.opaque = wt,
		};
	}
	for (int i = 0; i < n; i++)
		blk_submit(d, &w[i].req);
}

static int cmd_crash_writer(int argc, char **argv)
{
	struct waiter wt = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
	uint64_t seed, id, sectors, batches = UINT64_MAX;
	struct wr w[MAX_BATCH];
	struct blk_dev *d;
	uint8_t *bufs;
	int logfd;

	if (argc < 5 || argc > 6) {
		fprintf(stderr, "usage: vhd-testio crash-writer IMG LOG SEED [BATCHES]\n");
		return 2;
	}
	seed = strtoull(argv[4], NULL, 0) * 0x9e3779b97f4a7c15ULL + 1;
	if (argc == 6)
		batches = strtoull(argv[5], NULL, 0);
	id = (seed >> 20) << 20 | 1; /* ids of different runs don't collide */
	logfd = open(argv[3], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	d = open_disk(argv[2]);
	sectors = d->size / SECT;
	bufs = malloc((size_t)MAX_BATCH * MAX_SECTS * SECT);
	if (logfd < 0 || !bufs || sectors <= MAX_SECTS)
		return 1;
	for (uint64_t b = 0; b < batches; b++) {
		int n = 1 + (int)(rnd(&seed) % MAX_BATCH);

		make_batch(w, n, sectors, &seed, &id);
		for (int i = 0; i < n; i++) {
			char line[96];

			snprintf(line, sizeof(line), "W %llu %llu %llu\n",
				 (unsigned long long)w[i].id, (unsigned long long)w[i].off,
				 (unsigned long long)w[i].n);
			log_line(logfd, line);
		}
		submit_batch(d, w, n, bufs, &wt);
		if (wait_all(&wt))
			break;
		wt.pending = 1;
		w[0].req = (struct blk_req){ .op = BLK_OP_FLUSH, .done = req_done, .opaque = &wt };
		blk_submit(d, &w[0].req);
		if (wait_all(&wt))
			break;
		log_line(logfd, "F\n");
	}
	blk_close(d);
	if (wt.status)
		fprintf(stderr, "vhd-testio: crash-writer: %s\n", strerror(-wt.status));
	return wt.status ? 1 : 0;
}

/* ---- crash-verify ------------------------------------------------------------------ */

/* Per sector, the ids it may hold: one inline; more only where a kill left
 * writes in flight. */
struct cand {
	uint64_t id0;
	uint64_t *more;
	uint32_t n, cap;
};

static bool cand_has(const struct cand *c, uint64_t id)
{
	if (c->n && c->id0 == id)
		return true;
	for (uint32_t i = 1; i < c->n; i++)
		if (c->more[i - 1] == id)
			return true;
	return false;
}

static void cand_add(struct cand *c, uint64_t id, bool replace)
{
	if (replace)
		c->n = 0;
	if (cand_has(c, id))
		return;
	if (c->n == 0) {
		c->id0 = id;
		c->n = 1;
		return;
	}
	if (c->n - 1 == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 2;
		c->more = realloc(c->more, c->cap * sizeof(*c->more));
	}
	c->more[c->n++ - 1] = id;
}

struct pend {
	uint64_t id, off, n;
};

static int replay_log(const char *path, struct cand *c, uint64_t sectors)
{
	FILE *f = fopen(path, "r");
	struct pend *p = NULL;
	size_t np = 0, cap = 0;
	char line[128];

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long id, off, n;

		if (sscanf(line, "W %llu %llu %llu", &id, &off, &n) == 3 && off + n <= sectors) {
			if (np == cap) {
				cap = cap ? cap * 2 : 64;
				p = realloc(p, cap * sizeof(*p));
			}
			p[np++] = (struct pend){ id, off, n };
		} else if (line[0] == 'F' || line[0] == 'K') {
			for (size_t i = 0; i < np; i++)
				for (uint64_t s = p[i].off; s < p[i].off + p[i].n; s++)
					cand_add(&c[s], p[i].id, line[0] == 'F');
			np = 0;
		}
	}
	/* A log cut short (no K yet): whatever was in flight is uncertain. */
	for (size_t i = 0; i < np; i++)
		for (uint64_t s = p[i].off; s < p[i].off + p[i].n; s++)
			cand_add(&c[s], p[i].id, false);
	free(p);
	fclose(f);
	return 0;
}

static int read_all(const char *path, uint8_t **data, uint64_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct blk_dev *d;

	if (fd >= 0 && !vhd_probe_fd(fd)) {
		/* raw (qemu-img convert -O raw output) */
		*size = (uint64_t)lseek(fd, 0, SEEK_END);
		*data = malloc(*size ? *size : 1);
		if (pread(fd, *data, *size, 0) != (ssize_t)*size)
			return -EIO;
		close(fd);
		return 0;
	}
	if (fd >= 0)
		close(fd);
	d = open_disk(path);
	*size = d->size;
	*data = malloc(*size);
	for (uint64_t off = 0; off < *size; off += 1u << 20) {
		int ret = blk_rw_sync(d, BLK_OP_READ, off, *data + off, MIN(1u << 20, *size - off));

		if (ret) {
			blk_close(d);
			return ret;
		}
	}
	blk_close(d);
	return 0;
}

static int cmd_crash_verify(int argc, char **argv)
{
	uint64_t size, sectors, bad = 0, checked = 0;
	struct cand *c;
	uint8_t *data;

	if (argc != 4) {
		fprintf(stderr, "usage: vhd-testio crash-verify IMG|RAW LOG\n");
		return 2;
	}
	if (read_all(argv[2], &data, &size)) {
		fprintf(stderr, "vhd-testio: %s: read failed\n", argv[2]);
		return 1;
	}
	sectors = size / SECT;
	c = calloc(sectors, sizeof(*c));
	for (uint64_t s = 0; s < sectors; s++)
		cand_add(&c[s], 0, true);
	if (replay_log(argv[3], c, sectors)) {
		fprintf(stderr, "vhd-testio: %s: cannot read\n", argv[3]);
		return 1;
	}
	for (uint64_t s = 0; s < sectors; s++) {
		uint64_t got = sector_id(data + s * SECT, s);
		bool ok = cand_has(&c[s], got);

		checked++;
		if (!ok && bad++ < 10)
			fprintf(stderr,
				"vhd-testio: %s: sector %llu holds write %lld, expected %s%llu%s\n",
				argv[2], (unsigned long long)s,
				got == UINT64_MAX ? -1LL : (long long)got,
				c[s].n > 1 ? "one of " : "", (unsigned long long)c[s].id0,
				c[s].n > 1 ? ", ..." : "");
		free(c[s].more);
	}
	free(c);
	free(data);
	if (bad) {
		fprintf(stderr, "vhd-testio: %s: %llu of %llu sectors wrong\n", argv[2],
			(unsigned long long)bad, (unsigned long long)checked);
		return 1;
	}
	printf("%s: all %llu sectors as the log allows\n", argv[2], (unsigned long long)checked);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "write"))
		return cmd_write(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "bench"))
		return cmd_bench(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "dump"))
		return cmd_dump(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "crash-writer"))
		return cmd_crash_writer(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "crash-verify"))
		return cmd_crash_verify(argc, argv);
	fprintf(stderr, "usage: vhd-testio write|dump|bench|crash-writer|crash-verify ...\n");
	return 2;
}
