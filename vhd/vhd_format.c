/* VHD on-disk structures: footer, dynamic disk header, BAT. Everything read
 * from a file is untrusted: vhd_parse() turns it into a validated vhd_meta or
 * names the first bad field and its file offset. Section names in comments
 * refer to the Virtual Hard Disk Image Format Specification (Oct 2006, v1.0). */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vhd_int.h"

#define VHD_COOKIE	      "conectix"
#define VHD_HDR_COOKIE	      "cxsparse"
#define VHD_FEATURE_TEMPORARY 0x1u
#define VHD_FEATURE_RESERVED  0x2u /* "This bit must always be set to 1" */
#define VHD_MSG_LIMIT	      20   /* per-entry messages in check mode */
#define VHD_LEAK_MIN	      4096

/* ---- small helpers -------------------------------------------------------- */

int vhd_file_size(int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*size = (uint64_t)st.st_size;
	return 0;
}

bool vhd_is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;

	/* Compare the buffer with itself shifted by one byte after the first. */
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

const char *vhd_type_name(uint32_t type)
{
	switch (type) {
	case VHD_TYPE_FIXED: return "fixed";
	case VHD_TYPE_DYNAMIC: return "dynamic";
	case VHD_TYPE_DIFF: return "differencing";
	case 0: return "none";
	case 1:
	case 5:
	case 6: return "deprecated";
	}
	return "unknown";
}

void vhd_uuid_format(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

int vhd_uuid_generate(uint8_t uuid[16])
{
	size_t got = 0;

	while (got < 16) {
		ssize_t n = getrandom(uuid + got, 16 - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		got += (size_t)n;
	}
	uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40); /* RFC 4122 version 4 */
	uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
	return 0;
}

uint32_t vhd_now(void)
{
	time_t t = time(NULL);

	return t > VHD_EPOCH_OFFSET ? (uint32_t)(t - VHD_EPOCH_OFFSET) : 0;
}

bool vhd_probe_buf(const uint8_t *tail512)
{
	return memcmp(tail512, VHD_COOKIE, 8) == 0;
}

/* Reads whole 4 KiB units into an aligned buffer: fd may be O_DIRECT. */
static bool probe_at(int fd, uint64_t off, uint8_t *buf, size_t buflen, size_t want, uint8_t *out)
{
	uint64_t start = off & ~4095ULL;
	ssize_t n = pread(fd, buf, buflen, (off_t)start);

	if (n < 0 || (uint64_t)n < off - start + want)
		return false;
	memcpy(out, buf + (off - start), want);
	return true;
}

bool vhd_probe_fd(int fd)
{
	uint8_t *buf, f[VHD_FOOTER_SIZE];
	uint64_t size;
	bool yes = false;

	if (vhd_file_size(fd, &size) || size < VHD_FOOTER_SIZE ||
	    posix_memalign((void **)&buf, 4096, 8192))
		return false;
	if (probe_at(fd, size - 512, buf, 8192, 8, f) && vhd_probe_buf(f))
		yes = true;
	else if (probe_at(fd, size - 511, buf, 8192, 8, f) && vhd_probe_buf(f))
		yes = true;
	/* A dynamic image whose trailing footer was lost still has its copy:
	 * better a clear "damaged VHD" error than its metadata shown as data. */
	else if (probe_at(fd, 0, buf, 4096, VHD_FOOTER_SIZE, f) && vhd_probe_buf(f))
		yes = vhd_be32(f + VHD_F_DISK_TYPE) == VHD_TYPE_DYNAMIC ||
		      vhd_be32(f + VHD_F_DISK_TYPE) == VHD_TYPE_DIFF;
	free(buf);
	return yes;
}

void vhd_diag_add(struct vhd_diag *d, enum vhd_sev sev, bool repairable, const char *fmt, ...)
{
	char msg[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (sev == VHD_ERROR) {
		if (!d->errors && !d->repairable)
			snprintf(d->first, sizeof(d->first), "%s", msg);
		if (repairable)
			d->repairable++;
		else
			d->errors++;
	} else if (sev == VHD_WARN) {
		d->warnings++;
	}
	if (d->report)
		d->report(d->ctx, sev, repairable, msg);
}

/* ---- checksums and encodings ---------------------------------------------- */

/* Appendix, Checksum Calculation: one's complement of the byte sum, the
 * checksum field itself counted as zero. */
uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i++)
		if (i < csum_off || i >= csum_off + 4)
			sum += buf[i];
	return ~sum;
}

void vhd_footer_decode(const uint8_t *b, struct vhd_footer *f)
{
	memcpy(f->cookie, b, 8);
	f->features = vhd_be32(b + VHD_F_FEATURES);
	f->version = vhd_be32(b + VHD_F_VERSION);
	f->data_offset = vhd_be64(b + VHD_F_DATA_OFFSET);
	f->timestamp = vhd_be32(b + VHD_F_TIMESTAMP);
	memcpy(f->creator_app, b + VHD_F_CREATOR_APP, 4);
	f->creator_version = vhd_be32(b + 32);
	f->creator_os = vhd_be32(b + 36);
	f->original_size = vhd_be64(b + VHD_F_ORIGINAL_SIZE);
	f->current_size = vhd_be64(b + VHD_F_CURRENT_SIZE);
	f->cylinders = vhd_be16(b + VHD_F_GEOMETRY);
	f->heads = b[VHD_F_GEOMETRY + 2];
	f->sectors = b[VHD_F_GEOMETRY + 3];
	f->disk_type = vhd_be32(b + VHD_F_DISK_TYPE);
	f->checksum = vhd_be32(b + VHD_F_CHECKSUM);
	memcpy(f->uuid, b + VHD_F_UUID, 16);
	f->saved_state = b[VHD_F_SAVED_STATE];
}

void vhd_footer_encode(struct vhd_footer *f, uint8_t b[VHD_FOOTER_SIZE])
{
	memset(b, 0, VHD_FOOTER_SIZE);
	memcpy(b, f->cookie, 8);
	vhd_put32(b + VHD_F_FEATURES, f->features);
	vhd_put32(b + VHD_F_VERSION, f->version);
	vhd_put64(b + VHD_F_DATA_OFFSET, f->data_offset);
	vhd_put32(b + VHD_F_TIMESTAMP, f->timestamp);
	memcpy(b + VHD_F_CREATOR_APP, f->creator_app, 4);
	vhd_put32(b + 32, f->creator_version);
	vhd_put32(b + 36, f->creator_os);
	vhd_put64(b + VHD_F_ORIGINAL_SIZE, f->original_size);
	vhd_put64(b + VHD_F_CURRENT_SIZE, f->current_size);
	vhd_put16(b + VHD_F_GEOMETRY, f->cylinders);
	b[VHD_F_GEOMETRY + 2] = f->heads;
	b[VHD_F_GEOMETRY + 3] = f->sectors;
	vhd_put32(b + VHD_F_DISK_TYPE, f->disk_type);
	memcpy(b + VHD_F_UUID, f->uuid, 16);
	b[VHD_F_SAVED_STATE] = f->saved_state;
	f->checksum = vhd_checksum(b, VHD_FOOTER_SIZE, VHD_F_CHECKSUM);
	vhd_put32(b + VHD_F_CHECKSUM, f->checksum);
}

static void locator_decode(const uint8_t *p, struct vhd_locator *l)
{
	l->code = vhd_be32(p);
	l->data_space = vhd_be32(p + 4);
	l->data_length = vhd_be32(p + 8);
	l->reserved = vhd_be32(p + 12);
	l->data_offset = vhd_be64(p + 16);
}

void vhd_header_decode(const uint8_t *b, struct vhd_header *h)
{
	memcpy(h->cookie, b, 8);
	h->data_offset = vhd_be64(b + VHD_H_DATA_OFFSET);
	h->table_offset = vhd_be64(b + VHD_H_TABLE_OFFSET);
	h->version = vhd_be32(b + VHD_H_VERSION);
	h->max_table_entries = vhd_be32(b + VHD_H_MAX_TABLE_ENTRIES);
	h->block_size = vhd_be32(b + VHD_H_BLOCK_SIZE);
	h->checksum = vhd_be32(b + VHD_H_CHECKSUM);
	memcpy(h->parent_uuid, b + VHD_H_PARENT_UUID, 16);
	h->parent_timestamp = vhd_be32(b + VHD_H_PARENT_TIMESTAMP);
	h->reserved = vhd_be32(b + 60);
	memcpy(h->parent_name, b + VHD_H_PARENT_NAME, sizeof(h->parent_name));
	for (int i = 0; i < VHD_LOCATORS; i++)
		locator_decode(b + VHD_H_LOCATORS + i * VHD_LOCATOR_SIZE, &h->loc[i]);
}

void vhd_header_encode(struct vhd_header *h, uint8_t b[VHD_HEADER_SIZE])
{
	memset(b, 0, VHD_HEADER_SIZE);
	memcpy(b, h->cookie, 8);
	vhd_put64(b + VHD_H_DATA_OFFSET, h->data_offset);
	vhd_put64(b + VHD_H_TABLE_OFFSET, h->table_offset);
	vhd_put32(b + VHD_H_VERSION, h->version);
	vhd_put32(b + VHD_H_MAX_TABLE_ENTRIES, h->max_table_entries);
	vhd_put32(b + VHD_H_BLOCK_SIZE, h->block_size);
	memcpy(b + VHD_H_PARENT_UUID, h->parent_uuid, 16);
	vhd_put32(b + VHD_H_PARENT_TIMESTAMP, h->parent_timestamp);
	memcpy(b + VHD_H_PARENT_NAME, h->parent_name, sizeof(h->parent_name));
	for (int i = 0; i < VHD_LOCATORS; i++) {
		uint8_t *p = b + VHD_H_LOCATORS + i * VHD_LOCATOR_SIZE;

		vhd_put32(p, h->loc[i].code);
		vhd_put32(p + 4, h->loc[i].data_space);
		vhd_put32(p + 8, h->loc[i].data_length);
		vhd_put64(p + 16, h->loc[i].data_offset);
	}
	h->checksum = vhd_checksum(b, VHD_HEADER_SIZE, VHD_H_CHECKSUM);
	vhd_put32(b + VHD_H_CHECKSUM, h->checksum);
}

/* ---- geometry and size ------------------------------------------------------ */

/* Appendix, CHS Calculation, verbatim in meaning: rounds the size down. */
void vhd_chs_from_sectors(uint64_t total, uint16_t *c, uint8_t *h, uint8_t *s)
{
	uint64_t cth;
	unsigned heads, spt;

	if (total > VHD_MAX_GEOMETRY)
		total = VHD_MAX_GEOMETRY;
	if (total >= 65535ULL * 16 * 63) {
		spt = 255;
		heads = 16;
		cth = total / spt;
	} else {
		spt = 17;
		cth = total / spt;
		heads = (unsigned)((cth + 1023) / 1024);
		if (heads < 4)
			heads = 4;
		if (cth >= heads * 1024ULL || heads > 16) {
			spt = 31;
			heads = 16;
			cth = total / spt;
		}
		if (cth >= heads * 1024ULL) {
			spt = 63;
			heads = 16;
			cth = total / spt;
		}
	}
	*c = (uint16_t)(cth / heads);
	*h = (uint8_t)heads;
	*s = (uint8_t)spt;
}

int vhd_size_for_create(uint64_t bytes, bool exact, uint64_t *size, uint16_t *c, uint8_t *h,
			uint8_t *s)
{
	uint64_t want, chs = 0;

	if (bytes == 0)
		return -EINVAL;
	want = (bytes + VHD_SECTOR - 1) / VHD_SECTOR;
	if (want > VHD_MAX_SECTORS)
		return -EFBIG;
	if (!exact && want <= VHD_MAX_GEOMETRY) {
		/* As qemu-img: grow the sector count until the rounded-down
		 * geometry covers it. The product grows by at most one cylinder
		 * per step, so this ends within a few thousand steps. */
		for (uint64_t i = 0; chs < want && want + i <= VHD_MAX_GEOMETRY; i++) {
			vhd_chs_from_sectors(want + i, c, h, s);
			chs = (uint64_t)*c * *h * *s;
		}
		if (chs >= want && chs != VHD_MAX_GEOMETRY) {
			*size = chs * VHD_SECTOR;
			return 0;
		}
	}
	*c = VHD_CHS_MAX_C;
	*h = VHD_CHS_MAX_H;
	*s = VHD_CHS_MAX_S;
	*size = want * VHD_SECTOR;
	return 0;
}

enum vhd_size_rule vhd_footer_size_rule(const struct vhd_footer *f)
{
	static const char *const by_size[] = { "win ", "qem2", "d2v ", "CTXS" };
	uint64_t chs = (uint64_t)f->cylinders * f->heads * f->sectors;

	if (chs == VHD_MAX_GEOMETRY || memcmp(f->creator_app, "tap", 4) == 0)
		return VHD_SIZE_CURRENT;
	for (size_t i = 0; i < ARRAY_SIZE(by_size); i++)
		if (memcmp(f->creator_app, by_size[i], 4) == 0)
			return VHD_SIZE_CURRENT;
	return VHD_SIZE_CHS;
}

/* Creators whose geometry is known not to follow the size (QEMU's vpc.c notes
 * Disk2VHD; Xen's tools pick their own). */
static bool geometry_unchecked(const struct vhd_footer *f)
{
	return memcmp(f->creator_app, "d2v ", 4) == 0 || memcmp(f->creator_app, "tap", 4) == 0 ||
	       memcmp(f->creator_app, "CTXS", 4) == 0;
}

/* ---- parsing ---------------------------------------------------------------- */

struct parse {
	int fd;
	struct vhd_meta *m;
	struct vhd_diag *d;
	unsigned flags;
	uint64_t foff; /* offset of the footer in use, for messages */
};

/* Stop at the first error unless checking everything. */
static bool stop(const struct parse *p)
{
	return !(p->flags & VHD_PARSE_CHECK);
}

static int footer_read(struct parse *p, const char *what, uint64_t off, unsigned len,
		       struct vhd_footer *f, char *why, size_t whylen)
{
	uint8_t buf[VHD_FOOTER_SIZE] = { 0 };
	uint32_t sum;
	int ret;

	ret = pread_full(p->fd, buf, len, off);
	if (ret)
		return ret;
	if (memcmp(buf, VHD_COOKIE, 8) != 0) {
		snprintf(why, whylen, "%s cookie at offset %llu: not \"conectix\"", what,
			 (unsigned long long)off);
		return 1;
	}
	vhd_footer_decode(buf, f);
	sum = vhd_checksum(buf, len, VHD_F_CHECKSUM);
	if (sum != f->checksum) {
		snprintf(why, whylen, "%s checksum at offset %llu: stored 0x%08x, computed 0x%08x",
			 what, (unsigned long long)off + VHD_F_CHECKSUM, f->checksum, sum);
		return 1;
	}
	return 0;
}

static bool footers_agree(const struct vhd_footer *a, const struct vhd_footer *b)
{
	return a->disk_type == b->disk_type && a->data_offset == b->data_offset &&
	       a->current_size == b->current_size && a->cylinders == b->cylinders &&
	       a->heads == b->heads && a->sectors == b->sectors &&
	       memcmp(a->uuid, b->uuid, 16) == 0 && memcmp(a->creator_app, b->creator_app, 4) == 0;
}

/* The footer lives in the last 512 (or, before Virtual PC 2004, 511) bytes;
 * dynamic disks mirror it at offset 0 and "if the checksum verification
 * fails ... will instead use the header" (spec, Checksum). */
static int parse_footers(struct parse *p)
{
	struct vhd_meta *m = p->m;
	struct vhd_footer tail, head;
	char twhy[160] = "", hwhy[160] = "";
	int tret = 1, hret = 1;

	if (m->file_size < VHD_FOOTER_SIZE) {
		vhd_diag_add(p->d, VHD_ERROR, false,
			     "file size %llu: too small for a VHD footer (512 bytes at the end)",
			     (unsigned long long)m->file_size);
		return -EINVAL;
	}
	m->footer_len = VHD_FOOTER_SIZE;
	tret = footer_read(p, "footer", m->file_size - 512, 512, &tail, twhy, sizeof(twhy));
	if (tret == 1) {
		char why511[160];

		if (footer_read(p, "footer", m->file_size - 511, 511, &tail, why511,
				sizeof(why511)) == 0) {
			m->footer_len = 511;
			tret = 0;
		}
	}
	if (tret < 0)
		return tret;
	if (m->file_size >= 2 * VHD_FOOTER_SIZE) {
		hret = footer_read(p, "footer copy", 0, 512, &head, hwhy, sizeof(hwhy));
		if (hret < 0)
			return hret;
		if (hret == 0 && head.disk_type == VHD_TYPE_FIXED) {
			hret = 1; /* a fixed disk has no copy: that is guest data */
			snprintf(hwhy, sizeof(hwhy), "footer copy cookie at offset 0: missing");
		}
	} else {
		snprintf(hwhy, sizeof(hwhy), "footer copy cookie at offset 0: missing");
	}

	if (tret == 0) {
		m->footer = tail;
		m->footer_off = m->file_size - m->footer_len;
		p->foff = m->footer_off;
		if (tail.disk_type == VHD_TYPE_FIXED)
			return 0;
		if (hret == 0 && !footers_agree(&head, &tail))
			snprintf(hwhy, sizeof(hwhy),
				 "footer copy at offset 0: differs from the footer at offset %llu",
				 (unsigned long long)m->footer_off);
		if (hret != 0 || hwhy[0]) {
			m->copy_bad = true;
			vhd_diag_add(p->d, VHD_ERROR, true, "%s (check --repair rewrites it)",
				     hwhy);
		}
		return 0;
	}
	if (hret == 0) {
		/* Only a dynamic image has a copy; the data area then ends at EOF. */
		m->footer = head;
		m->footer_off = m->file_size;
		m->trailing_bad = true;
		p->foff = 0;
		vhd_diag_add(
			p->d, VHD_ERROR, true,
			"%s; using the intact copy at offset 0 (check --repair rewrites the footer)",
			twhy);
		return 0;
	}
	vhd_diag_add(p->d, VHD_ERROR, false, "%s", twhy);
	return -EINVAL;
}

static int check_geometry(struct parse *p, uint64_t cur_sectors)
{
	const struct vhd_footer *f = &p->m->footer;
	uint64_t chs = (uint64_t)f->cylinders * f->heads * f->sectors;
	uint64_t tol = ((uint64_t)f->heads + 1) * f->sectors;
	uint64_t diff = chs > cur_sectors ? chs - cur_sectors : cur_sectors - chs;

	if (chs == VHD_MAX_GEOMETRY || geometry_unchecked(f))
		return 0;
	if (chs == 0 && p->m->size_rule == VHD_SIZE_CURRENT) {
		vhd_diag_add(p->d, VHD_WARN, false, "disk geometry at offset %llu: 0/0/0",
			     (unsigned long long)p->foff + VHD_F_GEOMETRY);
		return 0;
	}
	/* The spec's algorithm rounds down by less than (heads + 1) tracks;
	 * qemu-img and older tools round up by about as much. */
	if (diff > tol) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"disk geometry at offset %llu: %u/%u/%u is %llu sectors, but the current size at offset %llu is %llu sectors",
			(unsigned long long)p->foff + VHD_F_GEOMETRY, f->cylinders, f->heads,
			f->sectors, (unsigned long long)chs,
			(unsigned long long)p->foff + VHD_F_CURRENT_SIZE,
			(unsigned long long)cur_sectors);
		return -EINVAL;
	}
	return 0;
}

static int check_footer_size(struct parse *p)
{
	struct vhd_meta *m = p->m;
	const struct vhd_footer *f = &m->footer;
	uint64_t chs = (uint64_t)f->cylinders * f->heads * f->sectors;
	uint64_t sectors;

	if (f->current_size > VHD_MAX_BYTES) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"current size at offset %llu: %llu bytes is beyond the 2040 GiB maximum",
			(unsigned long long)p->foff + VHD_F_CURRENT_SIZE,
			(unsigned long long)f->current_size);
		return -EINVAL;
	}
	if (f->current_size % VHD_SECTOR)
		vhd_diag_add(
			p->d, VHD_WARN, false,
			"current size at offset %llu: %llu is not a multiple of 512; using %llu",
			(unsigned long long)p->foff + VHD_F_CURRENT_SIZE,
			(unsigned long long)f->current_size,
			(unsigned long long)(f->current_size & ~511ULL));
	m->size_rule = vhd_footer_size_rule(f);
	sectors = m->size_rule == VHD_SIZE_CURRENT ? f->current_size / VHD_SECTOR : chs;
	if (sectors == 0) {
		vhd_diag_add(p->d, VHD_ERROR, false, "%s at offset %llu: the disk size is 0",
			     m->size_rule == VHD_SIZE_CURRENT ? "current size" : "disk geometry",
			     (unsigned long long)p->foff + (m->size_rule == VHD_SIZE_CURRENT
								    ? VHD_F_CURRENT_SIZE
								    : VHD_F_GEOMETRY));
		return -EINVAL;
	}
	if (check_geometry(p, f->current_size / VHD_SECTOR) && stop(p))
		return -EINVAL;
	if (sectors > VHD_MAX_SECTORS) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"disk geometry at offset %llu: %llu sectors is beyond the 2040 GiB maximum",
			(unsigned long long)p->foff + VHD_F_GEOMETRY, (unsigned long long)sectors);
		return -EINVAL;
	}
	m->size = sectors * VHD_SECTOR;
	return 0;
}

static int check_footer_fields(struct parse *p)
{
	struct vhd_meta *m = p->m;
	const struct vhd_footer *f = &m->footer;
	unsigned long long base = p->foff;

	if (!(f->features & VHD_FEATURE_RESERVED)) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"features at offset %llu: 0x%08x has the reserved bit 0x2 clear (the spec requires it set)",
			base + VHD_F_FEATURES, f->features);
		if (stop(p))
			return -EINVAL;
	}
	if (f->features & ~(VHD_FEATURE_RESERVED | VHD_FEATURE_TEMPORARY))
		vhd_diag_add(p->d, VHD_WARN, false, "features at offset %llu: unknown bits 0x%08x",
			     base + VHD_F_FEATURES, f->features);
	if (f->version >> 16 != 1) {
		vhd_diag_add(p->d, VHD_ERROR, false,
			     "file format version at offset %llu: 0x%08x, expected major version 1",
			     base + VHD_F_VERSION, f->version);
		return -EINVAL;
	}
	if (f->disk_type < VHD_TYPE_FIXED || f->disk_type > VHD_TYPE_DIFF) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"disk type at offset %llu: %u (%s) is not fixed (2), dynamic (3) or differencing (4)",
			base + VHD_F_DISK_TYPE, f->disk_type, vhd_type_name(f->disk_type));
		return -EINVAL;
	}
	m->type = (enum vhd_type)f->disk_type;
	if (f->saved_state > 1) {
		vhd_diag_add(p->d, VHD_ERROR, false, "saved state at offset %llu: %u is not 0 or 1",
			     base + VHD_F_SAVED_STATE, f->saved_state);
		if (stop(p))
			return -EINVAL;
	}
	if (m->type == VHD_TYPE_FIXED && f->data_offset != UINT64_MAX &&
	    f->data_offset != 0xffffffffULL) {
		vhd_diag_add(p->d, VHD_ERROR, false,
			     "data offset at offset %llu: 0x%llx, a fixed disk has 0xffffffff",
			     base + VHD_F_DATA_OFFSET, (unsigned long long)f->data_offset);
		if (stop(p))
			return -EINVAL;
	}
	return check_footer_size(p);
}

static int check_fixed(struct parse *p)
{
	struct vhd_meta *m = p->m;
	uint64_t data = m->footer_off;

	if (m->footer.current_size > data || m->size > data) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"current size at offset %llu: %llu bytes, but the file holds %llu bytes before its footer",
			(unsigned long long)p->foff + VHD_F_CURRENT_SIZE,
			(unsigned long long)MAX(m->footer.current_size, m->size),
			(unsigned long long)data);
		return -EINVAL;
	}
	if (m->footer.current_size < data)
		vhd_diag_add(p->d, VHD_WARN, false,
			     "%llu bytes between the end of the data and the footer",
			     (unsigned long long)(data - m->footer.current_size));
	m->data_end = m->size;
	return 0;
}

static int parse_header(struct parse *p)
{
	struct vhd_meta *m = p->m;
	uint8_t buf[VHD_HEADER_SIZE];
	uint64_t h = m->footer.data_offset;
	uint32_t sum;
	int ret;

	if (h < VHD_FOOTER_SIZE || h > m->footer_off || m->footer_off - h < VHD_HEADER_SIZE) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"data offset at offset %llu: 0x%llx does not leave room for the 1024-byte dynamic header between the footer copy [0, 512) and the footer at %llu",
			(unsigned long long)p->foff + VHD_F_DATA_OFFSET, (unsigned long long)h,
			(unsigned long long)m->footer_off);
		return -EINVAL;
	}
	if (h % VHD_SECTOR)
		vhd_diag_add(p->d, VHD_WARN, false,
			     "data offset at offset %llu: 0x%llx is not on a sector boundary",
			     (unsigned long long)p->foff + VHD_F_DATA_OFFSET,
			     (unsigned long long)h);
	ret = pread_full(p->fd, buf, sizeof(buf), h);
	if (ret)
		return ret;
	m->hdr_off = h;
	if (memcmp(buf, VHD_HDR_COOKIE, 8) != 0) {
		vhd_diag_add(p->d, VHD_ERROR, false,
			     "dynamic header cookie at offset %llu: not \"cxsparse\"",
			     (unsigned long long)h);
		return -EINVAL;
	}
	vhd_header_decode(buf, &m->hdr);
	sum = vhd_checksum(buf, sizeof(buf), VHD_H_CHECKSUM);
	if (sum != m->hdr.checksum) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"dynamic header checksum at offset %llu: stored 0x%08x, computed 0x%08x",
			(unsigned long long)h + VHD_H_CHECKSUM, m->hdr.checksum, sum);
		if (stop(p))
			return -EINVAL;
	}
	if (m->hdr.version >> 16 != 1) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"dynamic header version at offset %llu: 0x%08x, expected major version 1",
			(unsigned long long)h + VHD_H_VERSION, m->hdr.version);
		return -EINVAL;
	}
	return 0;
}

/* Memory and time follow the disk's virtual size, never the header's claim:
 * max table entries may exceed what the size needs (XenServer's vhd-util -S
 * reserves a BAT for a later resize, up to 2 TiB), but only the entries the
 * disk can address are read and kept; the rest must lie in the file and are
 * otherwise ignored (no reader can reach a block through them). */
static int check_block_size(struct parse *p)
{
	struct vhd_meta *m = p->m;
	uint32_t bs = m->hdr.block_size;
	uint64_t need;

	if (bs < VHD_BLOCK_MIN || bs > VHD_BLOCK_MAX || (bs & (bs - 1))) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"block size at offset %llu: %u is not a power of two from %u to %u bytes",
			(unsigned long long)m->hdr_off + VHD_H_BLOCK_SIZE, bs, VHD_BLOCK_MIN,
			VHD_BLOCK_MAX);
		return -EINVAL;
	}
	m->block_size = bs;
	/* One bit per sector, padded to a sector (spec, BAT and Data Blocks). */
	m->bitmap_size = (uint32_t)ALIGN_UP(bs / VHD_SECTOR / 8, VHD_SECTOR);
	need = (m->size + bs - 1) / bs;
	if (need > VHD_MAX_BAT_ENTRIES) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"block size at offset %llu: %u-byte blocks for a disk of %llu bytes make %llu BAT entries, more than the %u kestrel reads (512 KiB blocks cover 2040 GiB)",
			(unsigned long long)m->hdr_off + VHD_H_BLOCK_SIZE, bs,
			(unsigned long long)m->size, (unsigned long long)need, VHD_MAX_BAT_ENTRIES);
		return -EINVAL;
	}
	if (m->hdr.max_table_entries < need) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"max table entries at offset %llu: %u blocks of %u bytes, but a disk of %llu bytes needs %llu",
			(unsigned long long)m->hdr_off + VHD_H_MAX_TABLE_ENTRIES,
			m->hdr.max_table_entries, bs, (unsigned long long)m->size,
			(unsigned long long)need);
		return -EINVAL;
	}
	m->nblocks = (uint32_t)need;
	if (m->hdr.max_table_entries > need && (p->flags & VHD_PARSE_CHECK))
		vhd_diag_add(
			p->d, VHD_INFO, false,
			"max table entries at offset %llu: %u, the disk uses %u; the rest are not read",
			(unsigned long long)m->hdr_off + VHD_H_MAX_TABLE_ENTRIES,
			m->hdr.max_table_entries, m->nblocks);
	return 0;
}

/* An extent of the file, for the overlap check. */
enum ext_kind { EXT_COPY, EXT_HEADER, EXT_BAT, EXT_LOCATOR, EXT_BLOCK };
struct extent {
	uint64_t start, end;
	enum ext_kind kind;
	uint32_t index;
};

static void extent_name(const struct extent *e, const struct vhd_meta *m, char *out, size_t n)
{
	switch (e->kind) {
	case EXT_COPY: snprintf(out, n, "the footer copy [0, 512)"); break;
	case EXT_HEADER:
		snprintf(out, n, "the dynamic header at %llu", (unsigned long long)e->start);
		break;
	case EXT_BAT:
		snprintf(out, n, "the BAT [%llu, %llu)", (unsigned long long)e->start,
			 (unsigned long long)e->end);
		break;
	case EXT_LOCATOR:
		snprintf(out, n, "parent locator %u's data at %llu", e->index + 1,
			 (unsigned long long)e->start);
		break;
	case EXT_BLOCK:
		snprintf(out, n, "BAT entry %u at offset %llu (block at %llu)", e->index,
			 (unsigned long long)(m->hdr.table_offset + 4ULL * e->index),
			 (unsigned long long)e->start);
		break;
	}
}

/* The BAT the header declares must lie in the file (its length bounds the
 * claim); only its first nblocks entries are read. */
static int check_bat_extent(struct parse *p)
{
	struct vhd_meta *m = p->m;
	uint64_t t = m->hdr.table_offset;
	uint64_t bytes = (uint64_t)m->hdr.max_table_entries * 4;
	unsigned long long at = m->hdr_off + VHD_H_TABLE_OFFSET;

	if (t > m->footer_off || m->footer_off - t < bytes) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"table offset at offset %llu: the BAT [%llu, %llu) runs past the data area (footer at %llu)",
			at, (unsigned long long)t, (unsigned long long)(t + bytes),
			(unsigned long long)m->footer_off);
		return -EINVAL;
	}
	/* "The BAT is always extended to a sector boundary." */
	m->bat_bytes = MIN(ALIGN_UP(t + bytes, VHD_SECTOR), m->footer_off) - t;
	if (t < VHD_FOOTER_SIZE ||
	    (t < m->hdr_off + VHD_HEADER_SIZE && t + m->bat_bytes > m->hdr_off)) {
		vhd_diag_add(p->d, VHD_ERROR, false,
			     "table offset at offset %llu: the BAT [%llu, %llu) overlaps %s", at,
			     (unsigned long long)t, (unsigned long long)(t + m->bat_bytes),
			     t < VHD_FOOTER_SIZE ? "the footer copy [0, 512)"
						 : "the dynamic header");
		return -EINVAL;
	}
	return 0;
}

/* One allocation, converted in place. */
static int read_bat(struct parse *p)
{
	struct vhd_meta *m = p->m;
	size_t bytes = (size_t)m->nblocks * 4;
	int ret;

	m->bat = malloc(bytes ? bytes : 4);
	if (!m->bat)
		return -ENOMEM;
	ret = pread_full(p->fd, m->bat, bytes, m->hdr.table_offset);
	for (uint32_t i = 0; ret == 0 && i < m->nblocks; i++)
		m->bat[i] = vhd_be32((const uint8_t *)&m->bat[i]);
	return ret;
}

static int check_locators(struct parse *p, struct extent *ext, size_t *n)
{
	struct vhd_meta *m = p->m;

	for (uint32_t i = 0; i < VHD_LOCATORS; i++) {
		const struct vhd_locator *l = &m->hdr.loc[i];
		unsigned long long at = m->hdr_off + VHD_H_LOCATORS + i * VHD_LOCATOR_SIZE;
		uint64_t space = vhd_locator_space(l);

		if (l->code == VHD_PLAT_NONE)
			continue;
		if (l->data_length > space || l->data_offset > m->footer_off ||
		    m->footer_off - l->data_offset < space) {
			vhd_diag_add(
				p->d, VHD_ERROR, false,
				"parent locator %u at offset %llu: data [%llu, +%llu) (length %u) lies outside the file's data area (footer at %llu)",
				i + 1, at, (unsigned long long)l->data_offset,
				(unsigned long long)space, l->data_length,
				(unsigned long long)m->footer_off);
			if (stop(p))
				return -EINVAL;
			continue;
		}
		if (space == 0)
			continue;
		ext[(*n)++] =
			(struct extent){ l->data_offset, l->data_offset + space, EXT_LOCATOR, i };
	}
	return 0;
}

/* The allocated blocks, for the overlap check: (sector << 32 | index), so
 * that sorting orders them by offset. 8 bytes per block the file can hold. */
struct blocks {
	uint64_t *key;
	size_t n, cap;
};

static struct extent block_extent(const struct vhd_meta *m, uint64_t key)
{
	uint64_t off = (key >> 32) * VHD_SECTOR;

	return (struct extent){ off, off + m->bitmap_size + m->block_size, EXT_BLOCK,
				(uint32_t)key };
}

/* More blocks than the data area can hold side by side must overlap: said
 * once, without listing each (the count is the header's, not the file's). */
static int blocks_push(struct parse *p, struct blocks *b, uint32_t i)
{
	struct vhd_meta *m = p->m;

	if (b->n == b->cap) {
		vhd_diag_add(
			p->d, VHD_ERROR, false,
			"BAT at offset %llu: more than %zu blocks allocated, but the data area (footer at %llu) holds at most %llu blocks of %u bytes side by side",
			(unsigned long long)m->hdr.table_offset, b->cap,
			(unsigned long long)m->footer_off,
			(unsigned long long)(m->footer_off / (m->bitmap_size + m->block_size)),
			m->bitmap_size + m->block_size);
		return -EINVAL;
	}
	b->key[b->n++] = (uint64_t)m->bat[i] << 32 | i;
	return 0;
}

static int check_blocks(struct parse *p, struct blocks *b)
{
	struct vhd_meta *m = p->m;
	uint64_t span = (uint64_t)m->bitmap_size + m->block_size;
	unsigned msgs = 0;

	for (uint32_t i = 0; i < m->nblocks; i++) {
		uint64_t off = (uint64_t)m->bat[i] * VHD_SECTOR;
		unsigned long long at = m->hdr.table_offset + 4ULL * i;

		if (m->bat[i] == VHD_BAT_UNUSED)
			continue;
		m->allocated++;
		if (off >= m->footer_off) {
			vhd_diag_add(
				p->d, VHD_ERROR, true,
				"BAT entry %u at offset %llu: block at %llu lies past the end of the data (footer at %llu)",
				i, at, (unsigned long long)off, (unsigned long long)m->footer_off);
			m->bad_bat[m->nbad_bat++] = i;
			if (stop(p))
				return -EINVAL;
			continue;
		}
		if (m->footer_off - off < span) {
			if (msgs++ < VHD_MSG_LIMIT || stop(p))
				vhd_diag_add(
					p->d, VHD_ERROR, false,
					"BAT entry %u at offset %llu: block [%llu, %llu) runs into the footer at %llu",
					i, at, (unsigned long long)off,
					(unsigned long long)(off + span),
					(unsigned long long)m->footer_off);
			else
				p->d->errors++;
			if (stop(p))
				return -EINVAL;
			continue;
		}
		if (blocks_push(p, b, i))
			return -EINVAL;
	}
	return 0;
}

static int extent_cmp(const void *a, const void *b)
{
	const struct extent *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

static int key_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The next extent by start: the fixed structures and the blocks, both sorted. */
static bool next_extent(const struct vhd_meta *m, const struct extent *fixed, size_t nfixed,
			size_t *fi, const struct blocks *b, size_t *bi, struct extent *out)
{
	struct extent blk;

	if (*bi < b->n)
		blk = block_extent(m, b->key[*bi]);
	if (*fi < nfixed && (*bi >= b->n || fixed[*fi].start <= blk.start)) {
		*out = fixed[(*fi)++];
		return true;
	}
	if (*bi < b->n) {
		*out = blk;
		(*bi)++;
		return true;
	}
	return false;
}

/* Every structure must stand alone: overlapping blocks would alias guest
 * sectors, a block over the BAT would let guest data rewrite the BAT. */
static int check_overlaps(struct parse *p, struct extent *fixed, size_t nfixed, struct blocks *b)
{
	struct extent cur, last = { 0 };
	bool have_last = false;
	size_t fi = 0, bi = 0;
	unsigned msgs = 0;
	uint64_t leaked = 0;

	qsort(fixed, nfixed, sizeof(*fixed), extent_cmp);
	qsort(b->key, b->n, sizeof(*b->key), key_cmp);
	while (next_extent(p->m, fixed, nfixed, &fi, b, &bi, &cur)) {
		char x[128], y[128];

		if (have_last && cur.start < last.end) {
			extent_name(&cur, p->m, x, sizeof(x));
			extent_name(&last, p->m, y, sizeof(y));
			if (msgs++ < VHD_MSG_LIMIT || stop(p))
				vhd_diag_add(p->d, VHD_ERROR, false, "%s overlaps %s", x, y);
			else
				p->d->errors++;
			if (stop(p))
				return -EINVAL;
		} else if (have_last && cur.start - last.end >= VHD_LEAK_MIN) {
			leaked += cur.start - last.end;
		}
		if (!have_last || cur.end > last.end)
			last = cur;
		have_last = true;
	}
	p->m->data_end = have_last ? last.end : 0;
	if (have_last && p->m->footer_off - last.end >= VHD_LEAK_MIN)
		leaked += p->m->footer_off - last.end;
	/* Gaps under 4 KiB are alignment padding (ours: block data on 4 KiB). */
	if (leaked && (p->flags & VHD_PARSE_CHECK))
		vhd_diag_add(
			p->d, VHD_INFO, false,
			"%llu bytes before the footer belong to no structure (left by interrupted allocations; compact reclaims them)",
			(unsigned long long)leaked);
	return 0;
}

/* Memory: the BAT (4 bytes per entry the size needs), and 8 bytes per
 * allocated block up to what the data area can hold side by side. */
static int parse_dynamic(struct parse *p)
{
	struct vhd_meta *m = p->m;
	struct extent fixed[3 + VHD_LOCATORS];
	struct blocks b = { 0 };
	size_t n = 0, used = 0;
	int ret;

	ret = parse_header(p);
	if (!ret)
		ret = check_block_size(p);
	if (!ret)
		ret = check_bat_extent(p);
	if (!ret)
		ret = read_bat(p);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < m->nblocks; i++)
		used += m->bat[i] != VHD_BAT_UNUSED;
	b.cap = MIN(used, m->footer_off / (m->bitmap_size + m->block_size) + 1);
	b.key = malloc((b.cap ? b.cap : 1) * sizeof(*b.key));
	m->bad_bat = calloc(used + 1, sizeof(*m->bad_bat));
	if (!b.key || !m->bad_bat) {
		free(b.key);
		return -ENOMEM;
	}
	fixed[n++] = (struct extent){ 0, VHD_FOOTER_SIZE, EXT_COPY, 0 };
	fixed[n++] = (struct extent){ m->hdr_off, m->hdr_off + VHD_HEADER_SIZE, EXT_HEADER, 0 };
	fixed[n++] = (struct extent){ m->hdr.table_offset, m->hdr.table_offset + m->bat_bytes,
				      EXT_BAT, 0 };
	ret = m->type == VHD_TYPE_DIFF ? check_locators(p, fixed, &n) : 0;
	if (!ret)
		ret = check_blocks(p, &b);
	if (!ret)
		ret = check_overlaps(p, fixed, n, &b);
	free(b.key);
	return ret;
}

int vhd_parse(int fd, struct vhd_meta *m, unsigned flags, struct vhd_diag *d)
{
	struct parse p = { .fd = fd, .m = m, .d = d, .flags = flags };
	int ret;

	memset(m, 0, sizeof(*m));
	ret = vhd_file_size(fd, &m->file_size);
	if (ret) {
		vhd_diag_add(d, VHD_ERROR, false, "not a regular file or block device (%s)",
			     strerror(-ret));
		return ret;
	}
	ret = parse_footers(&p);
	if (!ret)
		ret = check_footer_fields(&p);
	if (!ret)
		ret = m->type == VHD_TYPE_FIXED ? check_fixed(&p) : parse_dynamic(&p);
	if (ret == -EIO)
		vhd_diag_add(d, VHD_ERROR, false, "read error (%s)", strerror(EIO));
	if (ret)
		return ret;
	if (d->errors)
		return -EINVAL;
	if (d->repairable && !(flags & VHD_PARSE_ALLOW_REPAIRABLE))
		return -EINVAL;
	/* Repairable BAT damage is never silently read past. */
	if (m->nbad_bat)
		return -EINVAL;
	return 0;
}

void vhd_meta_free(struct vhd_meta *m)
{
	free(m->bat);
	free(m->bad_bat);
	m->bat = NULL;
	m->bad_bat = NULL;
}
