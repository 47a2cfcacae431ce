/* format=auto without letting the guest choose the format (issue 9; QEMU
 * learned it with CVE-2008-2004: the format of an image a guest can write is
 * never probed again from the guest's bytes).
 *  1. Pin: the format a file was given at its first open in this worker is
 *     kept for every later open of the same file (guest reboot with
 *     --on-reboot restart, disk-add again): no second probe.
 *  2. Probed raw: an image that format=auto opened as raw stays raw for every
 *     later worker too. The guest's writes that would put a VHD footer cookie
 *     where vhd_probe() looks for one — the last sector (footer at size-512,
 *     Virtual PC's 511-byte footer at size-511) and the first (the dynamic
 *     disk's footer copy at 0) — fail with an I/O error, counted and logged
 *     once. format=raw given by the user lifts the restriction.
 *  3. A VHD stays a VHD without any of this: the guest's data never reaches
 *     the footer, header or BAT (vhd/).
 * Requests are whole sectors and a raw disk is a whole number of sectors
 * (raw_open), so each place lies inside one sector a write either covers
 * whole or not at all: the new bytes alone decide, no old bytes are read. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kestrel/block.h"

#define BLK_SECTOR	   512u
#define BLK_VHD_COOKIE	   "conectix" /* VHD spec, Hard Disk Footer Format: Cookie */
#define BLK_VHD_COOKIE_LEN 8

/* ---- 1: the pin ----------------------------------------------------------- */

/* A file is the same file while device, inode and path are (a path that now
 * names another file, or a file renamed, is probed afresh). Raw pins also
 * keep the size: only the host resizes a raw image, and then the host chose. */
struct blk_pin {
	dev_t dev;
	ino_t ino;
	uint64_t size;
	enum blk_format format;
	struct blk_pin *next;
	char path[];
};

static struct blk_pin *blk_pins;
static pthread_mutex_t blk_pins_lock = PTHREAD_MUTEX_INITIALIZER;

static bool blk_pin_matches(const struct blk_pin *p, const struct stat *st, const char *path,
			    uint64_t size)
{
	return p->dev == st->st_dev && p->ino == st->st_ino && strcmp(p->path, path) == 0 &&
	       (p->format != BLK_FMT_RAW || p->size == size);
}

enum blk_format blk_pin_lookup(const struct blk_dev *d)
{
	enum blk_format f = BLK_FMT_AUTO;
	struct stat st;

	if (fstat(d->fd, &st) < 0)
		return BLK_FMT_AUTO;
	pthread_mutex_lock(&blk_pins_lock);
	for (struct blk_pin *p = blk_pins; p; p = p->next) {
		if (blk_pin_matches(p, &st, d->path, d->size)) {
			f = p->format;
			break;
		}
	}
	pthread_mutex_unlock(&blk_pins_lock);
	return f;
}

void blk_pin_record(const struct blk_dev *d, enum blk_format format, uint64_t file_size)
{
	struct blk_pin *p;
	struct stat st;

	if (fstat(d->fd, &st) < 0)
		return;
	pthread_mutex_lock(&blk_pins_lock);
	for (p = blk_pins; p; p = p->next)
		if (blk_pin_matches(p, &st, d->path, file_size))
			break;
	if (!p) {
		/* Without memory the next open probes again; the write guard
		 * still keeps a probed-raw image raw. */
		p = calloc(1, sizeof(*p) + strlen(d->path) + 1);
		if (p) {
			*p = (struct blk_pin){ .dev = st.st_dev,
					       .ino = st.st_ino,
					       .size = file_size,
					       .format = format,
					       .next = blk_pins };
			strcpy(p->path, d->path);
			blk_pins = p;
		}
	}
	pthread_mutex_unlock(&blk_pins_lock);
}

/* ---- 2: the probed-raw write guard ---------------------------------------- */

/* n bytes at offset skip of the request's data into out; false if short. */
static bool blk_iov_peek(const struct blk_req *req, uint64_t skip, uint8_t *out, size_t n)
{
	for (int i = 0; i < req->iovcnt && n > 0; i++) {
		size_t take;

		if (skip >= req->iov[i].iov_len) {
			skip -= req->iov[i].iov_len;
			continue;
		}
		take = MIN(req->iov[i].iov_len - skip, n);
		memcpy(out, (const uint8_t *)req->iov[i].iov_base + skip, take);
		out += take;
		n -= take;
		skip = 0;
	}
	return n == 0;
}

static bool blk_cookie_at(const struct blk_req *req, uint64_t skip)
{
	uint8_t b[BLK_VHD_COOKIE_LEN];

	return blk_iov_peek(req, skip, b, sizeof(b)) &&
	       memcmp(b, BLK_VHD_COOKIE, BLK_VHD_COOKIE_LEN) == 0;
}

bool blk_write_makes_vhd(const struct blk_dev *d, const struct blk_req *req, uint64_t len)
{
	uint64_t end = req->offset + len; /* blk_check: inside the disk */

	if (req->offset == 0 && blk_cookie_at(req, 0))
		return true;
	if (d->size < BLK_SECTOR || end != d->size)
		return false; /* whole sectors: ending before the disk's end misses the last one */
	return blk_cookie_at(req, d->size - BLK_SECTOR - req->offset) ||
	       blk_cookie_at(req, d->size - BLK_SECTOR + 1 - req->offset);
}

void blk_refuse_write(struct blk_dev *d, const struct blk_req *req)
{
	__atomic_fetch_add(&d->refused_writes, 1, __ATOMIC_RELAXED);
	if (!__atomic_exchange_n(&d->warned_refused, true, __ATOMIC_RELAXED))
		kwarn("block: %s: refused a guest write at byte %llu: it would make this raw "
		      "image (format=auto) open as a VHD next time; format=raw allows it "
		      "(logged once, counted)",
		      d->path, (unsigned long long)req->offset);
}
