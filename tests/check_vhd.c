/* VHD: structures, geometry, the validator (one malformed image per rejected
 * field, each error naming the field and its offset), parent chains, the
 * synchronous I/O path and the block-layer format (random writes compared
 * with a shadow copy, as OpenBSD's vioscribble), repair, and the tool.
 * Files live in a temp directory made in main(). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kestrel/block.h"
#include "kestrel/vhd.h"
#include "../vhd/vhd_int.h"
#include "check_util.h"

/* Link vhd/vhd_block.c's format, not src/block/block.c's weak placeholder. */
extern const struct blk_format_ops *const vhd_blk_ops_anchor;
__attribute__((used)) static const void *const link_vhd_block = &vhd_blk_ops_anchor;

#define ERRLEN 512
#define MiB8   (8u << 20)
#define BS64K  (64u << 10)

static char tmpdir[] = "/tmp/kestrel-check-vhd-XXXXXX";

static const char *tp(const char *name)
{
	static char bufs[8][512];
	static int k;
	char *p = bufs[k++ % 8];

	snprintf(p, 512, "%s/%s", tmpdir, name);
	return p;
}

static uint64_t rnd_state = 88172645463325252ULL;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7 + (i >> 9));
}

static void create(const char *path, enum vhd_type type, uint64_t size, uint32_t bs, bool exact,
		   const char *parent)
{
	struct vhd_create_opts o = {
		.type = type, .size = size, .block_size = bs, .exact_size = exact, .parent = parent
	};
	char err[ERRLEN];

	unlink(path);
	ck_assert_msg(vhd_create(path, &o, err, sizeof(err)) == 0, "%s", err);
}

/* The synchronous tests skip fdatasync (same ordering, no waiting on the
 * disk); the block-layer tests sync for real. */
static struct vhd_image *open_img(const char *path, unsigned flags)
{
	struct vhd_image *img;
	char err[ERRLEN];

	ck_assert_msg(vhd_open(&img, path, flags | VHD_OPEN_NOSYNC, err, sizeof(err)) == 0, "%s",
		      err);
	return img;
}

/* A valid dynamic image: 8 MiB exactly, 64 KiB blocks, blocks 0, 5 and 100
 * written. Layout: copy 0, header 512, BAT [1536, 2048), blocks from 3584. */
static void make_sample(const char *path)
{
	struct vhd_image *img;
	uint8_t buf[8192];

	create(path, VHD_TYPE_DYNAMIC, MiB8, BS64K, true, NULL);
	img = open_img(path, VHD_OPEN_RDWR);
	fill(buf, sizeof(buf), 1);
	ck_assert_int_eq(vhd_write(img, buf, sizeof(buf), 0), 0);
	ck_assert_int_eq(vhd_write(img, buf, sizeof(buf), 5 * BS64K + 4096), 0);
	ck_assert_int_eq(vhd_write(img, buf, 512, 100 * BS64K), 0);
	ck_assert_int_eq(vhd_close(img), 0);
}

static int parse_path(const char *path, unsigned flags, struct vhd_diag *d, struct vhd_meta *m)
{
	int fd = open(path, O_RDONLY), ret;

	ck_assert_int_ge(fd, 0);
	memset(d, 0, sizeof(*d));
	ret = vhd_parse(fd, m, flags, d);
	close(fd);
	return ret;
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static void pwrite_at(const char *path, const void *buf, size_t n, uint64_t off)
{
	int fd = open(path, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static void pread_at(const char *path, void *buf, size_t n, uint64_t off)
{
	int fd = open(path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, n, (off_t)off), (ssize_t)n);
	close(fd);
}

/* ---- structures and sizes ------------------------------------------------------ */

START_TEST(test_checksum_roundtrip)
{
	struct vhd_footer f, g;
	struct vhd_header h, k;
	uint8_t fb[512], hb[1024];

	vhd_footer_template(&f, VHD_TYPE_DYNAMIC, 1 << 20, 30, 4, 17);
	f.uuid[3] = 0x5a;
	vhd_footer_encode(&f, fb);
	vhd_footer_decode(fb, &g);
	ck_assert_uint_eq(g.checksum, vhd_checksum(fb, 512, VHD_F_CHECKSUM));
	ck_assert_uint_eq(g.current_size, 1 << 20);
	ck_assert_int_eq(memcmp(g.creator_app, "kstl", 4), 0);
	ck_assert_uint_eq(g.uuid[3], 0x5a);
	vhd_header_template(&h, 16, BS64K);
	h.loc[2].code = VHD_PLAT_W2RU;
	h.loc[2].data_offset = 0x123456789ULL;
	vhd_header_encode(&h, hb);
	vhd_header_decode(hb, &k);
	ck_assert_uint_eq(k.checksum, vhd_checksum(hb, 1024, VHD_H_CHECKSUM));
	ck_assert_uint_eq(k.loc[2].data_offset, 0x123456789ULL);
	ck_assert_uint_eq(k.max_table_entries, 16);
	/* The one's complement of the byte sum (spec, Appendix). */
	ck_assert_uint_eq(vhd_checksum((const uint8_t *)"\x01\x02\x00\x00\x00\x00\x03", 7, 2), ~6u);
}
END_TEST

START_TEST(test_geometry)
{
	uint64_t size;
	uint16_t c;
	uint8_t h, s;

	/* The spec's algorithm, rounding down. */
	vhd_chs_from_sectors(20480, &c, &h, &s);
	ck_assert_uint_eq(c, 301);
	ck_assert_uint_eq(h, 4);
	ck_assert_uint_eq(s, 17);
	vhd_chs_from_sectors(VHD_MAX_SECTORS, &c, &h, &s);
	ck_assert_uint_eq((uint64_t)c * h * s, VHD_MAX_GEOMETRY);
	/* Creation rounds up like qemu-img: 10M and 1G give what `qemu-img
	 * create -f vpc` gives (10514432 and 1073995776 bytes). */
	ck_assert_int_eq(vhd_size_for_create(10 << 20, false, &size, &c, &h, &s), 0);
	ck_assert_uint_eq(size, 10514432);
	ck_assert_int_eq(vhd_size_for_create(1ULL << 30, false, &size, &c, &h, &s), 0);
	ck_assert_uint_eq(size, 1073995776);
	ck_assert_uint_eq(c, 2081);
	/* Exact sizes carry the maximum geometry (qemu-img's force_size). */
	ck_assert_int_eq(vhd_size_for_create(1ULL << 30, true, &size, &c, &h, &s), 0);
	ck_assert_uint_eq(size, 1ULL << 30);
	ck_assert_uint_eq((uint64_t)c * h * s, VHD_MAX_GEOMETRY);
	/* Beyond CHS (~127 GiB): exact with the maximum geometry. */
	ck_assert_int_eq(vhd_size_for_create(200ULL << 30, false, &size, &c, &h, &s), 0);
	ck_assert_uint_eq(size, 200ULL << 30);
	ck_assert_uint_eq(c, VHD_CHS_MAX_C);
	ck_assert_int_eq(vhd_size_for_create(VHD_MAX_BYTES, false, &size, &c, &h, &s), 0);
	ck_assert_int_eq(vhd_size_for_create(VHD_MAX_BYTES + 512, false, &size, &c, &h, &s),
			 -EFBIG);
	ck_assert_int_eq(vhd_size_for_create(0, false, &size, &c, &h, &s), -EINVAL);
	/* A size kept as is: the spec geometry when it fits, else the max. */
	vhd_geometry_keep(10514432, &c, &h, &s);
	ck_assert_uint_eq((uint64_t)c * h * s * 512, 10514432);
	vhd_geometry_keep(10 << 20, &c, &h, &s);
	ck_assert_uint_eq(c, VHD_CHS_MAX_C);
}
END_TEST

/* Which size an image opens at, per creator (QEMU vpc.c's table). */
START_TEST(test_size_rules)
{
	struct vhd_footer f;

	vhd_footer_template(&f, VHD_TYPE_FIXED, 10 << 20, 301, 4, 17);
	memcpy(f.creator_app, "win ", 4);
	ck_assert_int_eq(vhd_footer_size_rule(&f), VHD_SIZE_CURRENT);
	memcpy(f.creator_app, "qem2", 4);
	ck_assert_int_eq(vhd_footer_size_rule(&f), VHD_SIZE_CURRENT);
	memcpy(f.creator_app, "d2v ", 4);
	ck_assert_int_eq(vhd_footer_size_rule(&f), VHD_SIZE_CURRENT);
	memcpy(f.creator_app, "tap\0", 4);
	ck_assert_int_eq(vhd_footer_size_rule(&f), VHD_SIZE_CURRENT);
	memcpy(f.creator_app, "qemu", 4);
	ck_assert_int_eq(vhd_footer_size_rule(&f), VHD_SIZE_CHS);
	memcpy(f.creator_app, "vpc ", 4);
	ck_assert_int_eq(vhd_footer_size_rule(&f), VHD_SIZE_CHS);
	f.cylinders = VHD_CHS_MAX_C;
	f.heads = VHD_CHS_MAX_H;
	f.sectors = VHD_CHS_MAX_S;
	ck_assert_int_eq(vhd_footer_size_rule(&f), VHD_SIZE_CURRENT);
}
END_TEST

/* A Hyper-V fixed disk: geometry rounded down, current size exact. */
START_TEST(test_hyperv_fixed_size)
{
	const char *p = tp("hyperv.vhd");
	struct vhd_footer f;
	uint8_t b[512];
	struct vhd_image *img;
	uint16_t c;
	uint8_t h, s;
	int fd;

	vhd_chs_from_sectors(20480, &c, &h, &s);
	vhd_footer_template(&f, VHD_TYPE_FIXED, 10 << 20, c, h, s);
	memcpy(f.creator_app, "win ", 4);
	vhd_footer_encode(&f, b);
	fd = open(p, O_CREAT | O_TRUNC | O_RDWR, 0644);
	ck_assert_int_eq(ftruncate(fd, 10 << 20), 0);
	ck_assert_int_eq(pwrite(fd, b, 512, 10 << 20), 512);
	close(fd);
	img = open_img(p, 0);
	ck_assert_uint_eq(vhd_image_size(img), 10 << 20);
	vhd_close(img);
	/* The same with Virtual PC's creator opens at the geometry's size. */
	memcpy(f.creator_app, "vpc ", 4);
	vhd_footer_encode(&f, b);
	pwrite_at(p, b, 512, 10 << 20);
	img = open_img(p, 0);
	ck_assert_uint_eq(vhd_image_size(img), 301 * 4 * 17 * 512);
	vhd_close(img);
}
END_TEST

/* Virtual PC before 2004 wrote a 511-byte footer. */
START_TEST(test_footer_511)
{
	const char *p = tp("old.vhd");
	struct vhd_footer f;
	uint8_t b[512];
	struct vhd_image *img;
	int fd;

	vhd_footer_template(&f, VHD_TYPE_FIXED, 301 * 4 * 17 * 512, 301, 4, 17);
	memcpy(f.creator_app, "vpc ", 4);
	vhd_footer_encode(&f, b);
	/* The checksum of a 511-byte footer covers 511 bytes: the same sum. */
	fd = open(p, O_CREAT | O_TRUNC | O_RDWR, 0644);
	ck_assert_int_eq(pwrite(fd, b, 511, f.current_size), 511);
	close(fd);
	img = open_img(p, 0);
	ck_assert_uint_eq(vhd_image_meta(img)->footer_len, 511);
	ck_assert_uint_eq(vhd_image_size(img), f.current_size);
	vhd_close(img);
}
END_TEST

/* ---- the validator: one malformed image per rejected field ------------------------- */

struct vhd_layout {
	uint64_t foot;	     /* trailing footer */
	uint64_t blk0, blk5; /* file offsets of blocks 0 and 5 */
};

static void sample_layout(const char *p, struct vhd_layout *l)
{
	struct vhd_diag d;
	struct vhd_meta m;

	ck_assert_int_eq(parse_path(p, 0, &d, &m), 0);
	l->foot = m.footer_off;
	l->blk0 = (uint64_t)m.bat[0] * 512;
	l->blk5 = (uint64_t)m.bat[5] * 512;
	ck_assert_uint_eq(l->blk0, 3584);
	vhd_meta_free(&m);
}

static void edit_footers(const char *p, const struct vhd_layout *l,
			 void (*fn)(struct vhd_footer *f))
{
	struct vhd_footer f;
	uint8_t b[512];

	pread_at(p, b, 512, l->foot);
	vhd_footer_decode(b, &f);
	fn(&f);
	vhd_footer_encode(&f, b);
	pwrite_at(p, b, 512, l->foot);
	pwrite_at(p, b, 512, 0);
}

static void edit_header(const char *p, void (*fn)(struct vhd_header *h))
{
	struct vhd_header h;
	uint8_t b[1024];

	pread_at(p, b, 1024, 512);
	vhd_header_decode(b, &h);
	fn(&h);
	vhd_header_encode(&h, b);
	pwrite_at(p, b, 1024, 512);
}

static void put_be32_at(const char *p, uint64_t off, uint32_t v)
{
	uint8_t b[4];

	vhd_put32(b, v);
	pwrite_at(p, b, 4, off);
}

static void f_features(struct vhd_footer *f)
{
	f->features = 0;
}
static void f_version(struct vhd_footer *f)
{
	f->version = 0x00020000;
}
static void f_type(struct vhd_footer *f)
{
	f->disk_type = 5;
}
static void f_saved(struct vhd_footer *f)
{
	f->saved_state = 2;
}
static void f_dataoff_copy(struct vhd_footer *f)
{
	f->data_offset = 100;
}
static void f_dataoff_eof(struct vhd_footer *f)
{
	f->data_offset = 1ULL << 40;
}
static void f_size_big(struct vhd_footer *f)
{
	f->current_size = VHD_MAX_BYTES + (1 << 20);
}
static void f_geometry(struct vhd_footer *f)
{
	f->cylinders = 1000;
	f->heads = 16;
	f->sectors = 63;
}
static void f_size_zero(struct vhd_footer *f)
{
	memcpy(f->creator_app, "vpc ", 4);
	f->cylinders = f->heads = f->sectors = 0;
}
static void f_mte_vs_size(struct vhd_footer *f)
{
	f->current_size = 16 << 20;
}
static void h_version(struct vhd_header *h)
{
	h->version = 0x00030000;
}
static void h_bs_odd(struct vhd_header *h)
{
	h->block_size = 3 << 16;
}
static void h_bs_small(struct vhd_header *h)
{
	h->block_size = 512;
}
static void h_mte_small(struct vhd_header *h)
{
	h->max_table_entries = 100;
}
static void h_mte_big(struct vhd_header *h)
{
	h->max_table_entries = 0x7fffffff;
}
static void h_table_in_copy(struct vhd_header *h)
{
	h->table_offset = 256;
}
static void h_table_in_header(struct vhd_header *h)
{
	h->table_offset = 1024;
}
static void h_table_in_footer(struct vhd_header *h)
{
	h->table_offset = 1ULL << 30;
}

/* Expect a rejection whose message names `field` and `offset N`. */
static void expect_reject(const char *p, const char *field, uint64_t off, bool repairable)
{
	struct vhd_diag d;
	struct vhd_meta m;
	char want[64];
	int ret = parse_path(p, 0, &d, &m);

	if (off == UINT64_MAX)
		snprintf(want, sizeof(want), "%s", field); /* no offset: the file itself */
	else
		snprintf(want, sizeof(want), "offset %llu", (unsigned long long)off);
	ck_assert_int_eq(ret, -EINVAL);
	ck_assert_msg(strstr(d.first, field) && strstr(d.first, want), "got '%s', want %s and %s",
		      d.first, field, want);
	ck_assert_uint_eq(d.repairable > 0, repairable);
	vhd_meta_free(&m);
}

START_TEST(test_reject_fields)
{
	const char *p = tp("bad.vhd");
	struct vhd_layout l;
	uint8_t b[512], junk[512];
	struct vhd_diag d;
	struct vhd_meta m;

#define FRESH() (make_sample(p), sample_layout(p, &l))
	FRESH();
	pread_at(p, b, 512, l.foot);
	/* cookie: both copies bad */
	memcpy(junk, b, 512);
	junk[0] = 'X';
	pwrite_at(p, junk, 512, l.foot);
	pwrite_at(p, junk, 512, 0);
	expect_reject(p, "footer cookie", l.foot, false);
	/* checksum: one byte changed, checksum kept */
	FRESH();
	memcpy(junk, b, 512);
	junk[VHD_F_TIMESTAMP] ^= 1;
	pwrite_at(p, junk, 512, l.foot);
	pwrite_at(p, junk, 512, 0);
	expect_reject(p, "footer checksum", l.foot + VHD_F_CHECKSUM, false);
	FRESH();
	edit_footers(p, &l, f_features);
	expect_reject(p, "features", l.foot + VHD_F_FEATURES, false);
	FRESH();
	edit_footers(p, &l, f_version);
	expect_reject(p, "file format version", l.foot + VHD_F_VERSION, false);
	FRESH();
	edit_footers(p, &l, f_type);
	expect_reject(p, "disk type", l.foot + VHD_F_DISK_TYPE, false);
	FRESH();
	edit_footers(p, &l, f_saved);
	expect_reject(p, "saved state", l.foot + VHD_F_SAVED_STATE, false);
	FRESH();
	edit_footers(p, &l, f_dataoff_copy);
	expect_reject(p, "data offset", l.foot + VHD_F_DATA_OFFSET, false);
	FRESH();
	edit_footers(p, &l, f_dataoff_eof);
	expect_reject(p, "data offset", l.foot + VHD_F_DATA_OFFSET, false);
	FRESH();
	edit_footers(p, &l, f_size_big);
	expect_reject(p, "2040 GiB", l.foot + VHD_F_CURRENT_SIZE, false);
	FRESH();
	edit_footers(p, &l, f_geometry);
	expect_reject(p, "disk geometry", l.foot + VHD_F_GEOMETRY, false);
	FRESH();
	edit_footers(p, &l, f_size_zero);
	expect_reject(p, "disk size is 0", l.foot + VHD_F_GEOMETRY, false);
	FRESH();
	edit_footers(p, &l, f_mte_vs_size);
	expect_reject(p, "max table entries", 512 + VHD_H_MAX_TABLE_ENTRIES, false);
	/* dynamic header */
	FRESH();
	pwrite_at(p, "cxsparsX", 8, 512);
	expect_reject(p, "dynamic header cookie", 512, false);
	FRESH();
	pwrite_at(p, "\x7f", 1, 512 + VHD_H_PARENT_TIMESTAMP);
	expect_reject(p, "dynamic header checksum", 512 + VHD_H_CHECKSUM, false);
	FRESH();
	edit_header(p, h_version);
	expect_reject(p, "dynamic header version", 512 + VHD_H_VERSION, false);
	FRESH();
	edit_header(p, h_bs_odd);
	expect_reject(p, "block size", 512 + VHD_H_BLOCK_SIZE, false);
	FRESH();
	edit_header(p, h_bs_small);
	expect_reject(p, "block size", 512 + VHD_H_BLOCK_SIZE, false);
	FRESH();
	edit_header(p, h_mte_small);
	expect_reject(p, "max table entries", 512 + VHD_H_MAX_TABLE_ENTRIES, false);
	FRESH();
	edit_header(p, h_mte_big); /* the BAT it declares is not in the file */
	expect_reject(p, "table offset", 512 + VHD_H_TABLE_OFFSET, false);
	FRESH();
	edit_header(p, h_table_in_copy);
	expect_reject(p, "table offset", 512 + VHD_H_TABLE_OFFSET, false);
	ck_assert_int_eq(parse_path(p, 0, &d, &m), -EINVAL);
	ck_assert_ptr_nonnull(strstr(d.first, "footer copy"));
	vhd_meta_free(&m);
	FRESH();
	edit_header(p, h_table_in_header);
	expect_reject(p, "table offset", 512 + VHD_H_TABLE_OFFSET, false);
	FRESH();
	edit_header(p, h_table_in_footer);
	expect_reject(p, "table offset", 512 + VHD_H_TABLE_OFFSET, false);
	/* BAT entries */
	FRESH();
	put_be32_at(p, 1536 + 4 * 7, (uint32_t)((l.foot + (1 << 20)) / 512));
	expect_reject(p, "BAT entry 7", 1536 + 4 * 7, true);
	FRESH();
	put_be32_at(p, 1536 + 4 * 7, (uint32_t)((l.foot - 4096) / 512));
	expect_reject(p, "BAT entry 7", 1536 + 4 * 7, false);
	FRESH();
	put_be32_at(p, 1536 + 4 * 7, (uint32_t)(l.blk5 / 512 + 8));
	expect_reject(p, "overlaps BAT entry 5", 1536 + 4 * 7, false);
	FRESH();
	put_be32_at(p, 1536 + 4 * 7, 0); /* on top of the footer copy */
	expect_reject(p, "overlaps the footer copy", 1536 + 4 * 7, false);
	FRESH();
	put_be32_at(p, 1536 + 4 * 7, 1); /* on top of the header */
	expect_reject(p, "overlaps the dynamic header", 1536 + 4 * 7, false);
	FRESH();
	put_be32_at(p, 1536 + 4 * 7, 3); /* on top of the BAT */
	expect_reject(p, "overlaps the BAT", 1536 + 4 * 7, false);
	/* too small for a footer */
	pwrite_at(p, b, 1, 0);
	ck_assert_int_eq(truncate(p, 100), 0);
	expect_reject(p, "too small for a VHD footer", UINT64_MAX, false);
#undef FRESH
}
END_TEST

/* A footer copy problem is repairable and readable (the spec's readers fall
 * back to the other copy); a read-write open refuses until repaired. */
START_TEST(test_footer_copies)
{
	const char *p = tp("copies.vhd");
	struct vhd_layout l;
	struct vhd_image *img;
	struct vhd_diag d;
	struct vhd_meta m;
	uint8_t z[512] = { 0 }, buf[512];
	char err[ERRLEN];

	make_sample(p);
	sample_layout(p, &l);
	pwrite_at(p, z, 512, l.foot); /* trailing footer lost */
	expect_reject(p, "footer cookie", l.foot, true);
	ck_assert_int_eq(parse_path(p, VHD_PARSE_ALLOW_REPAIRABLE, &d, &m), 0);
	ck_assert(m.trailing_bad);
	vhd_meta_free(&m);
	img = open_img(p, 0);
	ck_assert_int_eq(vhd_read(img, buf, 512, 100 * BS64K), 0);
	vhd_close(img);
	ck_assert_int_eq(vhd_open(&img, p, VHD_OPEN_RDWR, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--repair"));
	{
		char *argv[] = { "vhd", "check", "--repair", (char *)p, NULL };

		ck_assert_int_eq(vhd_tool_main(4, argv), 0);
	}
	ck_assert_int_eq(parse_path(p, 0, &d, &m), 0);
	vhd_meta_free(&m);
	/* copy at 0 damaged */
	pwrite_at(p, z, 512, 0);
	expect_reject(p, "footer copy cookie", 0, true);
	{
		char *argv[] = { "vhd", "check", "--repair", (char *)p, NULL };

		ck_assert_int_eq(vhd_tool_main(4, argv), 0);
	}
	ck_assert_int_eq(parse_path(p, 0, &d, &m), 0);
	vhd_meta_free(&m);
}
END_TEST

/* --repair clears BAT entries wholly past the end; it refuses when other
 * damage exists, and check without --repair never writes. */
START_TEST(test_repair_bat)
{
	const char *p = tp("rbat.vhd");
	struct vhd_layout l;
	struct vhd_diag d;
	struct vhd_meta m;
	uint8_t before[4096], after[4096];
	char *chk[] = { "vhd", "check", (char *)p, NULL };
	char *rep[] = { "vhd", "check", "--repair", (char *)p, NULL };

	make_sample(p);
	sample_layout(p, &l);
	put_be32_at(p, 1536 + 4 * 9, (uint32_t)((l.foot + 65536) / 512));
	pread_at(p, before, sizeof(before), 0);
	ck_assert_int_eq(vhd_tool_main(3, chk), 1);
	pread_at(p, after, sizeof(after), 0);
	ck_assert_int_eq(memcmp(before, after, sizeof(before)), 0);
	/* with an overlap as well: nothing is repaired */
	put_be32_at(p, 1536 + 4 * 11, (uint32_t)(l.blk5 / 512));
	pread_at(p, before, sizeof(before), 0);
	ck_assert_int_eq(vhd_tool_main(4, rep), 1);
	pread_at(p, after, sizeof(after), 0);
	ck_assert_int_eq(memcmp(before, after, sizeof(before)), 0);
	put_be32_at(p, 1536 + 4 * 11, VHD_BAT_UNUSED);
	ck_assert_int_eq(vhd_tool_main(4, rep), 0);
	ck_assert_int_eq(parse_path(p, 0, &d, &m), 0);
	ck_assert_uint_eq(m.bat[9], VHD_BAT_UNUSED);
	ck_assert_uint_eq(m.allocated, 3);
	vhd_meta_free(&m);
}
END_TEST

/* ---- differencing chains ------------------------------------------------------------ */

static void make_chain(const char *base, const char *mid, const char *top)
{
	struct vhd_image *img;
	uint8_t buf[4096];

	create(base, VHD_TYPE_DYNAMIC, MiB8, BS64K, true, NULL);
	img = open_img(base, VHD_OPEN_RDWR);
	memset(buf, 0xaa, sizeof(buf));
	ck_assert_int_eq(vhd_write(img, buf, sizeof(buf), 0), 0);
	ck_assert_int_eq(vhd_write(img, buf, sizeof(buf), 65536), 0);
	ck_assert_int_eq(vhd_close(img), 0);
	create(mid, VHD_TYPE_DIFF, 0, BS64K, false, base);
	img = open_img(mid, VHD_OPEN_RDWR);
	memset(buf, 0xbb, sizeof(buf));
	ck_assert_int_eq(vhd_write(img, buf, 1024, 1024), 0);
	ck_assert_int_eq(vhd_close(img), 0);
	create(top, VHD_TYPE_DIFF, 0, BS64K, false, mid);
	img = open_img(top, VHD_OPEN_RDWR);
	memset(buf, 0xcc, sizeof(buf));
	ck_assert_int_eq(vhd_write(img, buf, 512, 1536), 0);
	ck_assert_int_eq(vhd_write(img, buf, 512, 65536 + 512), 0);
	ck_assert_int_eq(vhd_close(img), 0);
}

static void check_chain_content(const char *top)
{
	struct vhd_image *img = open_img(top, 0);
	uint8_t buf[4096 + 65536];

	ck_assert_int_eq(vhd_read(img, buf, sizeof(buf), 0), 0);
	ck_assert_uint_eq(buf[0], 0xaa);    /* base */
	ck_assert_uint_eq(buf[1024], 0xbb); /* mid */
	ck_assert_uint_eq(buf[1536], 0xcc); /* top */
	ck_assert_uint_eq(buf[2047], 0xcc);
	ck_assert_uint_eq(buf[2048], 0xaa); /* base again */
	ck_assert_uint_eq(buf[4096], 0);    /* nowhere */
	ck_assert_uint_eq(buf[65536], 0xaa);
	ck_assert_uint_eq(buf[65536 + 512], 0xcc);
	ck_assert_uint_eq(buf[65536 + 1024], 0xaa);
	ck_assert_ptr_nonnull(vhd_image_parent(vhd_image_parent(img)));
	vhd_close(img);
}

START_TEST(test_chain_depth3)
{
	char dir2[600], cmd[4096];

	make_chain(tp("base.vhd"), tp("mid.vhd"), tp("top.vhd"));
	check_chain_content(tp("top.vhd"));
	/* The relative locators survive moving the whole chain. */
	snprintf(dir2, sizeof(dir2), "%s/moved", tmpdir);
	snprintf(cmd, sizeof(cmd), "mkdir -p %s && mv %s/base.vhd %s/mid.vhd %s/top.vhd %s/", dir2,
		 tmpdir, tmpdir, tmpdir, dir2);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s/top.vhd", dir2);
	check_chain_content(cmd);
}
END_TEST

START_TEST(test_chain_errors)
{
	struct vhd_image *img;
	struct vhd_create_opts o = { .type = VHD_TYPE_DIFF };
	char err[ERRLEN];
	uint8_t uuid[16];

	make_chain(tp("b.vhd"), tp("m.vhd"), tp("t.vhd"));
	/* parent replaced by another image: UUID mismatch */
	rename(tp("b.vhd"), tp("b.orig"));
	create(tp("b.vhd"), VHD_TYPE_DYNAMIC, MiB8, BS64K, true, NULL);
	ck_assert_int_eq(vhd_open(&img, tp("t.vhd"), 0, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "parent UUID at offset") && strstr(err, "m.vhd"), "%s", err);
	/* parent gone */
	unlink(tp("b.vhd"));
	ck_assert_int_ne(vhd_open(&img, tp("t.vhd"), 0, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "not found"), "%s", err);
	rename(tp("b.orig"), tp("b.vhd"));
	ck_assert_int_eq(vhd_open(&img, tp("t.vhd"), 0, err, sizeof(err)), 0);
	/* a loop: b replaced by a child of t that carries b's UUID */
	memcpy(uuid, vhd_image_meta(vhd_image_parent(vhd_image_parent(img)))->footer.uuid, 16);
	vhd_close(img);
	o.parent = tp("t.vhd");
	o.uuid = uuid;
	ck_assert_msg(vhd_create(tp("loop.vhd"), &o, err, sizeof(err)) == 0, "%s", err);
	rename(tp("loop.vhd"), tp("b.vhd"));
	ck_assert_int_ne(vhd_open(&img, tp("t.vhd"), 0, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "loop"), "%s", err);
	/* NO_PARENT opens the child alone: its absent sectors read as zeros */
	img = open_img(tp("m.vhd"), VHD_OPEN_NO_PARENT);
	{
		uint8_t buf[2048];

		ck_assert_int_eq(vhd_read(img, buf, sizeof(buf), 0), 0);
		ck_assert_uint_eq(buf[0], 0);
		ck_assert_uint_eq(buf[1024], 0xbb);
	}
	vhd_close(img);
}
END_TEST

/* A locator pointing outside the file is an error naming it. */
START_TEST(test_locator_outside)
{
	const char *p = tp("loc.vhd");
	struct vhd_header h;
	uint8_t b[1024];

	create(tp("lb.vhd"), VHD_TYPE_DYNAMIC, MiB8, BS64K, true, NULL);
	create(p, VHD_TYPE_DIFF, 0, BS64K, false, tp("lb.vhd"));
	pread_at(p, b, 1024, 512);
	vhd_header_decode(b, &h);
	ck_assert_uint_eq(h.loc[0].code, VHD_PLAT_W2KU);
	ck_assert_uint_eq(h.loc[1].code, VHD_PLAT_W2RU);
	h.loc[1].data_offset = file_size(p) + 4096;
	vhd_header_encode(&h, b);
	pwrite_at(p, b, 1024, 512);
	expect_reject(p, "parent locator 2", 512 + VHD_H_LOCATORS + VHD_LOCATOR_SIZE, false);
}
END_TEST

/* ---- synchronous I/O: random writes against a shadow --------------------------------- */

static void scribble_sync(struct vhd_image *img, uint8_t *shadow, uint64_t size, int rounds)
{
	uint8_t *buf = malloc(256 * 1024);

	for (int i = 0; i < rounds; i++) {
		uint64_t len = (1 + rnd() % 256) * 512;
		uint64_t off = (rnd() % ((size - len) / 512)) * 512;

		fill(buf, len, (uint8_t)rnd());
		ck_assert_int_eq(vhd_write(img, buf, len, off), 0);
		memcpy(shadow + off, buf, len);
		if (i % 7 == 0)
			ck_assert_int_eq(vhd_flush(img), 0);
	}
	free(buf);
}

static void compare_image(const char *path, const uint8_t *shadow, uint64_t size)
{
	struct vhd_image *img = open_img(path, 0);
	uint8_t *buf = malloc(size);

	ck_assert_uint_eq(vhd_image_size(img), size);
	ck_assert_int_eq(vhd_read(img, buf, size, 0), 0);
	for (uint64_t i = 0; i < size; i += 512)
		ck_assert_msg(memcmp(buf + i, shadow + i, 512) == 0, "%s: sector %llu differs",
			      path, (unsigned long long)(i / 512));
	free(buf);
	vhd_close(img);
}

static void check_clean(const char *path)
{
	struct vhd_diag d;
	struct vhd_meta m;

	ck_assert_int_eq(parse_path(path, VHD_PARSE_CHECK, &d, &m), 0);
	ck_assert_msg(d.errors == 0 && d.repairable == 0, "%s: %s", path, d.first);
	vhd_meta_free(&m);
}

START_TEST(test_scribble_sync)
{
	static const enum vhd_type types[] = { VHD_TYPE_FIXED, VHD_TYPE_DYNAMIC, VHD_TYPE_DIFF };
	uint64_t size = MiB8;
	uint8_t *shadow = calloc(1, size);
	const char *p = tp("s.vhd");
	struct vhd_image *img;

	for (size_t t = 0; t < 3; t++) {
		memset(shadow, 0, size);
		if (types[t] == VHD_TYPE_DIFF) {
			create(tp("sp.vhd"), VHD_TYPE_DYNAMIC, size, 4096, true, NULL);
			img = open_img(tp("sp.vhd"), VHD_OPEN_RDWR);
			scribble_sync(img, shadow, size, 100);
			ck_assert_int_eq(vhd_close(img), 0);
			create(p, VHD_TYPE_DIFF, 0, 4096, false, tp("sp.vhd"));
		} else {
			create(p, types[t], size, 4096, true, NULL);
		}
		img = open_img(p, VHD_OPEN_RDWR);
		scribble_sync(img, shadow, size, 300);
		ck_assert_int_eq(vhd_close(img), 0);
		check_clean(p);
		compare_image(p, shadow, size);
	}
	free(shadow);
}
END_TEST

/* ---- the block-layer format: concurrent requests -------------------------------------- */

struct awaiter {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int pending, status;
};

static void a_done(struct blk_req *req, int status)
{
	struct awaiter *w = req->opaque;

	pthread_mutex_lock(&w->lock);
	if (status)
		w->status = status;
	if (--w->pending == 0)
		pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->lock);
}

static void a_wait(struct awaiter *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->pending)
		pthread_cond_wait(&w->cv, &w->lock);
	pthread_mutex_unlock(&w->lock);
	ck_assert_int_eq(w->status, 0);
}

#define ROUND 24

/* Rounds of concurrent writes that never overlap each other but crowd into
 * the same few unallocated blocks (each must be allocated once), some as
 * WRITE_ZEROES, some FUA; reads of what is already there in between. */
static void scribble_async(struct blk_dev *d, uint8_t *shadow, uint64_t size, uint32_t bs,
			   int rounds)
{
	struct awaiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
	struct blk_req req[ROUND + 1];
	struct iovec iov[ROUND][2];
	uint8_t *buf = malloc((size_t)ROUND * 16384), *rd = malloc(1 << 16);

	for (int r = 0; r < rounds; r++) {
		uint64_t base = (rnd() % (size / bs - 3)) * bs;
		uint64_t used[ROUND][2];
		int n = 0;

		for (int i = 0; i < ROUND; i++) {
			uint64_t len = (1 + rnd() % 32) * 512,
				 off = base + (rnd() % ((3 * bs - len) / 512)) * 512;
			uint8_t *b = buf + (size_t)i * 16384;
			bool clash = false, zero = rnd() % 6 == 0;

			for (int k = 0; k < n; k++)
				clash |= off < used[k][0] + used[k][1] && used[k][0] < off + len;
			if (clash)
				continue;
			used[n][0] = off;
			used[n][1] = len;
			fill(b, len, (uint8_t)rnd());
			/* split across two iovecs, unevenly */
			iov[n][0] = (struct iovec){ b, 512 };
			iov[n][1] = (struct iovec){ b + 512, len - 512 };
			req[n] = (struct blk_req){ .op = zero ? BLK_OP_WRITE_ZEROES : BLK_OP_WRITE,
						   .offset = off,
						   .iov = zero ? NULL : iov[n],
						   .iovcnt = zero ? 0 : (len > 512 ? 2 : 1),
						   .len = len,
						   .fua = rnd() % 5 == 0,
						   .done = a_done,
						   .opaque = &w };
			if (zero)
				memset(shadow + off, 0, len);
			else
				memcpy(shadow + off, b, len);
			n++;
		}
		w.pending = n;
		for (int i = 0; i < n; i++)
			blk_submit(d, &req[i]);
		a_wait(&w);
		if (r % 5 == 0) {
			w.pending = 1;
			req[0] = (struct blk_req){ .op = BLK_OP_FLUSH,
						   .done = a_done,
						   .opaque = &w };
			blk_submit(d, &req[0]);
			a_wait(&w);
		}
		ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, base, rd, MIN(3ULL * bs, 1 << 16)), 0);
		ck_assert_int_eq(memcmp(rd, shadow + base, MIN(3ULL * bs, 1 << 16)), 0);
	}
	free(buf);
	free(rd);
}

static struct blk_dev *blk_open_vhd(const char *path, bool ro)
{
	struct blk_opts o = { .path = path, .format = BLK_FMT_AUTO, .readonly = ro };
	struct blk_dev *d;
	char err[ERRLEN];

	ck_assert_msg(blk_open(&d, &o, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(d->fmt->name, "vhd");
	return d;
}

START_TEST(test_scribble_blk)
{
	static const enum vhd_type types[] = { VHD_TYPE_DYNAMIC, VHD_TYPE_DIFF, VHD_TYPE_FIXED };
	uint64_t size = MiB8;
	uint8_t *shadow = calloc(1, size);
	const char *p = tp("a.vhd");

	for (size_t t = 0; t < 3; t++) {
		struct blk_dev *d;
		struct vhd_diag dg;
		struct vhd_meta m;

		memset(shadow, 0, size);
		if (types[t] == VHD_TYPE_DIFF) {
			create(tp("ap.vhd"), VHD_TYPE_DYNAMIC, size, BS64K, true, NULL);
			d = blk_open_vhd(tp("ap.vhd"), false);
			scribble_async(d, shadow, size, BS64K, 20);
			blk_close(d);
			create(p, VHD_TYPE_DIFF, 0, 8192, false, tp("ap.vhd"));
		} else {
			create(p, types[t], size, 8192, true, NULL);
		}
		d = blk_open_vhd(p, false);
		ck_assert_uint_eq(d->size, size);
		scribble_async(d, shadow, size, 8192, 60);
		blk_close(d);
		check_clean(p);
		compare_image(p, shadow, size);
		/* every allocated block holds data of a write: none allocated twice */
		ck_assert_int_eq(parse_path(p, 0, &dg, &m), 0);
		if (types[t] != VHD_TYPE_FIXED)
			ck_assert_uint_le((uint64_t)m.allocated * (m.bitmap_size + m.block_size),
					  m.footer_off);
		vhd_meta_free(&m);
		/* read-only through the block layer: same bytes */
		d = blk_open_vhd(p, true);
		{
			uint8_t *all = malloc(size);

			ck_assert_int_eq(blk_rw_sync(d, BLK_OP_READ, 0, all, size), 0);
			ck_assert_int_eq(memcmp(all, shadow, size), 0);
			free(all);
		}
		blk_close(d);
	}
	free(shadow);
}
END_TEST

/* A damaged image is never exposed as raw data, and never opened. */
START_TEST(test_blk_refuses_damaged)
{
	const char *p = tp("dmg.vhd");
	struct blk_opts o = { .path = p, .format = BLK_FMT_AUTO };
	struct vhd_layout l;
	struct blk_dev *d;
	char err[ERRLEN];
	uint8_t z[512] = { 0 };

	make_sample(p);
	sample_layout(p, &l);
	pwrite_at(p, z, 512, l.foot);
	ck_assert_int_ne(blk_open(&d, &o, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "footer cookie"), "%s", err);
}
END_TEST

/* ---- bounded parsing (issue 9) ------------------------------------------------------ */

/* The sample (8 MiB, 64 KiB blocks: 128 entries) with a header claiming
 * `mte` BAT entries: the BAT moved to the end of the file, its first 128
 * entries the real ones, the rest a sparse hole (zeros: "block at 0"). */
static void make_big_bat(const char *p, uint32_t mte)
{
	struct vhd_layout l;
	struct vhd_header h;
	uint8_t hb[1024], bat[512], foot[512];
	uint64_t end;
	int fd;

	make_sample(p);
	sample_layout(p, &l);
	pread_at(p, bat, sizeof(bat), 1536);
	pread_at(p, foot, sizeof(foot), l.foot);
	pread_at(p, hb, sizeof(hb), 512);
	vhd_header_decode(hb, &h);
	h.table_offset = l.foot;
	h.max_table_entries = mte;
	vhd_header_encode(&h, hb);
	pwrite_at(p, hb, sizeof(hb), 512);
	pwrite_at(p, bat, sizeof(bat), l.foot);
	end = ALIGN_UP(l.foot + 4ULL * mte, 512);
	fd = open(p, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)end), 0);
	ck_assert_int_eq(pwrite(fd, foot, 512, (off_t)end), 512);
	close(fd);
}

/* Run fn in a child whose address space is capped: a parse whose memory
 * follows the header's claims gets ENOMEM there, deterministically. Not
 * under ASan, whose shadow memory is terabytes of address space already:
 * there the child runs uncapped (the plain build checks the bound). */
static int limited(int (*fn)(const char *), const char *p, rlim_t bytes)
{
	pid_t pid = fork();
	int st;

#ifdef __SANITIZE_ADDRESS__
	bytes = RLIM_INFINITY;
#endif
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct rlimit r = { bytes, bytes };

		if (setrlimit(RLIMIT_AS, &r))
			_exit(99);
		_exit(fn(p));
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static int open_and_read(const char *p)
{
	struct vhd_image *img;
	uint8_t buf[8192], want[8192];
	char err[ERRLEN];

	if (vhd_open(&img, p, 0, err, sizeof(err))) {
		fprintf(stderr, "vhd_open: %s\n", err);
		return 1;
	}
	fill(want, sizeof(want), 1);
	if (vhd_read(img, buf, sizeof(buf), 0) || memcmp(buf, want, sizeof(buf)))
		return 2;
	return vhd_close(img) ? 3 : 0;
}

static int blk_open_auto(const char *p)
{
	struct blk_opts o = { .path = p, .format = BLK_FMT_AUTO, .aio = BLK_AIO_SYNC };
	struct blk_dev *d;
	char err[ERRLEN];

	if (blk_open(&d, &o, err, sizeof(err))) {
		fprintf(stderr, "blk_open: %s\n", err);
		return 1;
	}
	if (d->size != MiB8 || strcmp(d->fmt->name, "vhd"))
		return 2;
	blk_close(d);
	return 0;
}

static int tool_info(const char *p)
{
	execl(KESTREL_BIN, "kestrel", "vhd", "info", p, (char *)NULL);
	return 98;
}

/* 32 Mi entries claimed for an 8 MiB disk, in a 128 MiB sparse file: the
 * parse reads the 128 the disk uses (kestrel before issue 9 allocated the
 * whole BAT twice and 24 bytes per entry: ~1.2 GB here). */
START_TEST(test_mte_bounded)
{
	const char *p = tp("bigbat.vhd");
	struct vhd_diag d;
	struct vhd_meta m;

	make_big_bat(p, 32u << 20);
	ck_assert_int_eq(parse_path(p, 0, &d, &m), 0);
	ck_assert_uint_eq(m.nblocks, 128);
	ck_assert_uint_eq(m.hdr.max_table_entries, 32u << 20);
	ck_assert_uint_eq(m.allocated, 3);
	vhd_meta_free(&m);
	ck_assert_int_eq(limited(open_and_read, p, 256u << 20), 0);
	ck_assert_int_eq(limited(blk_open_auto, p, 512u << 20), 0);
	ck_assert_int_eq(limited(tool_info, p, 256u << 20), 0);
	/* check says what it skipped. */
	memset(&d, 0, sizeof(d));
	ck_assert_int_eq(parse_path(p, VHD_PARSE_CHECK, &d, &m), 0);
	vhd_meta_free(&m);
}
END_TEST

/* Entries the size does use, all pointing at offset 0 (a sparse BAT): more
 * blocks than the file holds side by side is one error, found before any
 * per-block memory is spent. */
START_TEST(test_bat_zeros_bounded)
{
	const char *p = tp("zerobat.vhd");
	struct vhd_diag d;
	struct vhd_meta m;
	struct vhd_layout l;
	uint8_t z[512] = { 0 };

	make_sample(p);
	sample_layout(p, &l);
	pwrite_at(p, z, sizeof(z), 1536); /* all 128 entries: block at 0 */
	ck_assert_int_eq(parse_path(p, VHD_PARSE_CHECK, &d, &m), -EINVAL);
	ck_assert_msg(strstr(d.first, "blocks allocated") && strstr(d.first, "side by side"), "%s",
		      d.first);
	vhd_meta_free(&m);
}
END_TEST

/* Small blocks on a large disk: more entries than kestrel reads is refused
 * when reading and when creating. */
START_TEST(test_bat_entries_cap)
{
	const char *p = tp("cap.vhd");
	struct vhd_create_opts o = { .type = VHD_TYPE_DYNAMIC,
				     .size = 32ULL << 30,
				     .block_size = 4096,
				     .exact_size = true };
	struct vhd_diag d;
	struct vhd_meta m;
	struct vhd_footer f;
	uint8_t b[512];
	char err[ERRLEN];

	unlink(p);
	ck_assert_int_ne(vhd_create(p, &o, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "BAT entries"), "%s", err);
	ck_assert_int_eq(access(p, F_OK), -1);
	o.size = 16ULL << 30; /* exactly 4 Mi entries of 4 KiB */
	ck_assert_msg(vhd_create(p, &o, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(parse_path(p, 0, &d, &m), 0);
	ck_assert_uint_eq(m.nblocks, VHD_MAX_BAT_ENTRIES);
	vhd_meta_free(&m);
	/* The same file claiming one more sector. */
	pread_at(p, b, 512, file_size(p) - 512);
	vhd_footer_decode(b, &f);
	f.current_size += 512;
	vhd_footer_encode(&f, b);
	pwrite_at(p, b, 512, file_size(p) - 512);
	pwrite_at(p, b, 512, 0);
	ck_assert_int_eq(parse_path(p, 0, &d, &m), -EINVAL);
	ck_assert_msg(strstr(d.first, "block size") && strstr(d.first, "BAT entries"), "%s",
		      d.first);
	vhd_meta_free(&m);
}
END_TEST

/* ---- the tool -------------------------------------------------------------------------- */

/* vhd_tool_main with "vhd" and the arguments up to NULL. */
static int tool_v(const char *first, ...)
{
	char *argv[16] = { "vhd", (char *)first };
	int argc = 2;
	va_list ap;

	va_start(ap, first);
	while (argc < 15 && (argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	return vhd_tool_main(argc, argv);
}
#define tool(...) tool_v(__VA_ARGS__, (char *)NULL)

/* ---- parents: where they may be, what they may be (issue 9) ----------------------------- */

/* vhd_open of path in a child with a 10 s alarm: a FIFO parent opened
 * without O_NONBLOCK hangs there and the child dies of SIGALRM. The child's
 * err comes back through a pipe; returns the child's status (0: opened). */
static int open_in_child(const char *path, const char *dirs, char *err, size_t errlen)
{
	int pfd[2], st;
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct vhd_image *img;
		char e[ERRLEN] = "";
		int r;

		signal(SIGALRM, SIG_DFL); /* not Check's handler: it kills the whole test */
		alarm(10);
		r = vhd_open_ex(&img, -1, path, 0, dirs, e, sizeof(e));
		if (!r)
			vhd_close(img);
		(void)!write(pfd[1], e, strlen(e));
		_exit(r ? 1 : 0);
	}
	close(pfd[1]);
	n = read(pfd[0], err, errlen - 1);
	err[n > 0 ? n : 0] = '\0';
	close(pfd[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st), "%s: vhd_open hung or crashed (signal %d)", path,
		      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return WEXITSTATUS(st);
}

/* The message with every occurrence of the tmp folder's name cut out. */
static void strip(char *msg, const char *what)
{
	size_t n = strlen(what);

	for (char *p; (p = strstr(msg, what));)
		memmove(p, p + n, strlen(p + n) + 1);
}

START_TEST(test_parent_not_usable)
{
	const char *base = tp("pb.vhd"), *child = tp("pc.vhd"), *keep = tp("pb.keep");
	char other[600], otherdir[512], e1[ERRLEN], e2[ERRLEN];

	create(base, VHD_TYPE_DYNAMIC, MiB8, BS64K, true, NULL);
	create(child, VHD_TYPE_DIFF, 0, BS64K, false, base);
	ck_assert_int_eq(open_in_child(child, NULL, e1, sizeof(e1)), 0);
	ck_assert_int_eq(rename(base, keep), 0);

	/* A FIFO, a device, links to them: refused at once, not read. */
	ck_assert_int_eq(mkfifo(base, 0600), 0);
	ck_assert_int_eq(open_in_child(child, NULL, e1, sizeof(e1)), 1);
	ck_assert_msg(strstr(e1, "not usable") && strstr(e1, "pb.vhd"), "%s", e1);
	unlink(base);
	ck_assert_int_eq(symlink("/dev/zero", base), 0);
	ck_assert_int_eq(open_in_child(child, NULL, e2, sizeof(e2)), 1);
	ck_assert_str_eq(e1, e2);
	unlink(base);
	ck_assert_int_eq(mkfifo(tp("fifo"), 0600), 0);
	ck_assert_int_eq(symlink(tp("fifo"), base), 0);
	ck_assert_int_eq(open_in_child(child, NULL, e2, sizeof(e2)), 1);
	ck_assert_str_eq(e1, e2);
	unlink(base);
	/* Missing, or a host file elsewhere that exists: the same words. */
	ck_assert_int_eq(open_in_child(child, NULL, e2, sizeof(e2)), 1);
	ck_assert_str_eq(e1, e2);
	ck_assert_int_eq(symlink("/etc/passwd", base), 0);
	ck_assert_int_eq(open_in_child(child, NULL, e2, sizeof(e2)), 1);
	ck_assert_str_eq(e1, e2);
	unlink(base);
	ck_assert_int_eq(symlink("/nonexistent/pb.vhd", base), 0);
	ck_assert_int_eq(open_in_child(child, NULL, e2, sizeof(e2)), 1);
	ck_assert_str_eq(e1, e2);
	unlink(base);
	/* A regular file that is no VHD, in the folder: the same. */
	{
		uint8_t z[4096] = { 0 };
		int fd = open(base, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		ck_assert_int_eq(write(fd, z, sizeof(z)), (ssize_t)sizeof(z));
		close(fd);
	}
	ck_assert_int_eq(open_in_child(child, NULL, e2, sizeof(e2)), 1);
	ck_assert_str_eq(e1, e2);
	unlink(base);

	/* The real parent in another folder, linked in: outside the child's
	 * folder it is not usable, unless that folder is a parent-dir. */
	snprintf(otherdir, sizeof(otherdir), "%s.other", tmpdir);
	snprintf(other, sizeof(other), "%s/pb.vhd", otherdir);
	mkdir(otherdir, 0700);
	ck_assert_int_eq(rename(keep, other), 0);
	ck_assert_int_eq(symlink(other, base), 0);
	ck_assert_int_eq(open_in_child(child, NULL, e2, sizeof(e2)), 1);
	strip(e2, ".other");
	ck_assert_str_eq(e1, e2);
	ck_assert_int_eq(open_in_child(child, "/nonexistent:/usr", e2, sizeof(e2)), 1);
	ck_assert_int_eq(open_in_child(child, otherdir, e2, sizeof(e2)), 0);
	{
		char dirs[1100];

		snprintf(dirs, sizeof(dirs), "/usr:%s", otherdir);
		ck_assert_int_eq(open_in_child(child, dirs, e2, sizeof(e2)), 0);
	}
	/* A subfolder of the child's folder is the child's folder. */
	unlink(base);
	mkdir(tp("sub"), 0700);
	ck_assert_int_eq(rename(other, tp("sub/pb.vhd")), 0);
	ck_assert_int_eq(symlink(tp("sub/pb.vhd"), base), 0);
	ck_assert_int_eq(open_in_child(child, NULL, e2, sizeof(e2)), 0);
	rmdir(otherdir);
}
END_TEST

/* The block layer (--disk) and `kestrel vhd info` with a FIFO parent: an
 * error, at once. */
static int blk_open_fifo_parent(const char *p)
{
	struct blk_opts o = { .path = p, .format = BLK_FMT_AUTO, .aio = BLK_AIO_SYNC };
	struct blk_dev *d;
	char err[ERRLEN];

	signal(SIGALRM, SIG_DFL);
	alarm(10);
	if (blk_open(&d, &o, err, sizeof(err)) == 0)
		return 2;
	return strstr(err, "not usable") ? 0 : 3;
}

static int info_fifo_parent(const char *p)
{
	signal(SIGALRM, SIG_DFL);
	alarm(10);
	return tool("info", p) == 1 ? 0 : 4;
}

START_TEST(test_parent_fifo_blk_and_tool)
{
	const char *base = tp("fb.vhd"), *child = tp("fc.vhd");

	create(base, VHD_TYPE_DYNAMIC, MiB8, BS64K, true, NULL);
	create(child, VHD_TYPE_DIFF, 0, BS64K, false, base);
	unlink(base);
	ck_assert_int_eq(mkfifo(base, 0600), 0);
	ck_assert_int_eq(limited(blk_open_fifo_parent, child, RLIM_INFINITY), 0);
	ck_assert_int_eq(limited(info_fifo_parent, child, RLIM_INFINITY), 0);
	unlink(base);
}
END_TEST

START_TEST(test_tool_usage)
{
	ck_assert_int_eq(tool("bogus"), 2);
	ck_assert_int_eq(tool("create", "--type", "fixed", tp("u.vhd")), 2); /* no size */
	ck_assert_int_eq(tool("create", "--type", "odd", "--size", "1M", tp("u.vhd")), 2);
	ck_assert_int_eq(tool("create", "--type", "dynamic", "--size", "1M"), 2);
	ck_assert_int_eq(tool("create", "--size=3T", "--type=dynamic", tp("u.vhd")), 2);
	ck_assert_int_eq(tool("info", "--frobnicate", tp("u.vhd")), 2);
	ck_assert_int_eq(tool("convert", "--to", "qcow2", "a", "b"), 2);
	ck_assert_int_eq(tool("info", tp("missing.vhd")), 1);
	ck_assert_int_eq(access(tp("u.vhd"), F_OK), -1);
}
END_TEST

static void write_raw(const char *path, uint64_t size)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	uint8_t buf[4096];

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	for (uint64_t off = 0; off < size; off += 3 * 65536 + 4096) {
		fill(buf, sizeof(buf), (uint8_t)off);
		ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), (off_t)off), 4096);
	}
	close(fd);
}

static uint8_t *read_whole(const char *path, uint64_t *size)
{
	struct vhd_image *img = open_img(path, 0);
	uint8_t *buf;

	*size = vhd_image_size(img);
	buf = malloc(*size);
	ck_assert_int_eq(vhd_read(img, buf, *size, 0), 0);
	vhd_close(img);
	return buf;
}

START_TEST(test_tool_convert_roundtrip)
{
	uint64_t raw = 9763 * 512, n; /* not a CHS size */
	uint8_t *want, *got;
	int fd;

	write_raw(tp("in.raw"), raw);
	ck_assert_int_eq(tool("convert", "--to", "dynamic", "-q", tp("in.raw"), tp("d.vhd")), 0);
	ck_assert_int_eq(tool("convert", "--to", "fixed", "-q", tp("d.vhd"), tp("f.vhd")), 0);
	ck_assert_int_eq(tool("convert", "--to", "raw", "-q", tp("f.vhd"), tp("out.raw")), 0);
	ck_assert_int_eq(tool("check", tp("d.vhd")), 0);
	ck_assert_int_eq(tool("check", tp("f.vhd")), 0);
	ck_assert_uint_eq(file_size(tp("out.raw")), raw);
	got = read_whole(tp("d.vhd"), &n);
	ck_assert_uint_eq(n, raw); /* kept exactly: maximum geometry */
	want = malloc(raw);
	fd = open(tp("in.raw"), O_RDONLY);
	ck_assert_int_eq(pread(fd, want, raw, 0), (ssize_t)raw);
	close(fd);
	ck_assert_int_eq(memcmp(got, want, raw), 0);
	free(got);
	fd = open(tp("out.raw"), O_RDONLY);
	got = malloc(raw);
	ck_assert_int_eq(pread(fd, got, raw, 0), (ssize_t)raw);
	close(fd);
	ck_assert_int_eq(memcmp(got, want, raw), 0);
	/* the output must not exist: refused, and left alone */
	ck_assert_int_eq(tool("convert", "--to", "raw", "-q", tp("f.vhd"), tp("in.raw")), 1);
	ck_assert_uint_eq(file_size(tp("in.raw")), raw);
	free(got);
	free(want);
}
END_TEST

START_TEST(test_tool_compact_resize_merge)
{
	struct vhd_image *img;
	uint8_t buf[65536], *a, *b;
	uint64_t n, m, before;

	create(tp("c.vhd"), VHD_TYPE_DYNAMIC, MiB8, BS64K, true, NULL);
	img = open_img(tp("c.vhd"), VHD_OPEN_RDWR);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(vhd_write(img, buf, sizeof(buf), 0), 0); /* an all-zero block */
	fill(buf, sizeof(buf), 9);
	ck_assert_int_eq(vhd_write(img, buf, sizeof(buf), 3 * BS64K), 0);
	ck_assert_int_eq(vhd_close(img), 0);
	a = read_whole(tp("c.vhd"), &n);
	before = file_size(tp("c.vhd"));
	ck_assert_int_eq(tool("compact", "-q", tp("c.vhd")), 0);
	ck_assert_uint_lt(file_size(tp("c.vhd")), before);
	b = read_whole(tp("c.vhd"), &m);
	ck_assert_int_eq(memcmp(a, b, n), 0);
	free(b);
	/* grow: old content, zeros after */
	ck_assert_int_eq(tool("resize", "--size", "16M", "--exact-size", "-q", tp("c.vhd")), 0);
	b = read_whole(tp("c.vhd"), &m);
	ck_assert_uint_eq(m, 16 << 20);
	ck_assert_int_eq(memcmp(a, b, n), 0);
	ck_assert(vhd_is_zero(b + n, m - n));
	free(b);
	/* shrinking needs --shrink */
	ck_assert_int_eq(tool("resize", "--size", "1M", "--exact-size", "-q", tp("c.vhd")), 1);
	ck_assert_int_eq(tool("resize", "--size", "4M", "--exact-size", "--shrink", tp("c.vhd")),
			 0);
	b = read_whole(tp("c.vhd"), &m);
	ck_assert_uint_eq(m, 4 << 20);
	ck_assert_int_eq(memcmp(a, b, m), 0);
	free(b);
	free(a);
	/* fixed resize in place */
	create(tp("fx.vhd"), VHD_TYPE_FIXED, MiB8, 0, true, NULL);
	img = open_img(tp("fx.vhd"), VHD_OPEN_RDWR);
	ck_assert_int_eq(vhd_write(img, buf, sizeof(buf), MiB8 - sizeof(buf)), 0);
	ck_assert_int_eq(vhd_close(img), 0);
	ck_assert_int_eq(tool("resize", "--size", "9M", "--exact-size", "-q", tp("fx.vhd")), 0);
	ck_assert_int_eq(tool("check", tp("fx.vhd")), 0);
	b = read_whole(tp("fx.vhd"), &m);
	ck_assert_uint_eq(m, 9 << 20);
	ck_assert_int_eq(memcmp(b + MiB8 - sizeof(buf), buf, sizeof(buf)), 0);
	ck_assert(vhd_is_zero(b + MiB8, 1 << 20));
	free(b);
	/* merge: the chain's view lands in the parent */
	make_chain(tp("mb.vhd"), tp("mm.vhd"), tp("mt.vhd"));
	a = read_whole(tp("mm.vhd"), &n);
	ck_assert_int_eq(tool("merge", "-q", tp("mm.vhd")), 0);
	b = read_whole(tp("mb.vhd"), &m);
	ck_assert_int_eq(memcmp(a, b, n), 0);
	free(a);
	free(b);
	check_chain_content(tp("mt.vhd"));
	ck_assert_int_eq(tool("merge", "-q", tp("mb.vhd")), 1);		    /* not a child */
	ck_assert_int_eq(tool("compact", "-q", tp("fx.vhd")), 1);	    /* fixed */
	ck_assert_int_eq(tool("resize", "--size", "16M", tp("mt.vhd")), 1); /* diff */
}
END_TEST

/* An image in use by a writer is refused by the tools that modify it. */
START_TEST(test_tool_locks)
{
	struct vhd_image *img;

	create(tp("lk.vhd"), VHD_TYPE_DYNAMIC, MiB8, BS64K, true, NULL);
	img = open_img(tp("lk.vhd"), VHD_OPEN_RDWR);
	ck_assert_int_eq(tool("compact", "-q", tp("lk.vhd")), 1);
	ck_assert_int_eq(tool("check", "--repair", tp("lk.vhd")), 1);
	ck_assert_int_eq(tool("info", tp("lk.vhd")), 0);
	vhd_close(img);
	ck_assert_int_eq(tool("compact", "-q", tp("lk.vhd")), 0);
}
END_TEST

/* A live migration's target opens the image under blk_defer_locks while
 * the source still writes it (a new block: a new BAT entry, the footer
 * moved); blk_take_over takes the lock and reads the metadata again, so the
 * source's block reads back and the target's next block goes after it. */
START_TEST(test_blk_take_over)
{
	struct blk_opts o = { .path = tp("mig.vhd"), .format = BLK_FMT_VHD, .aio = BLK_AIO_SYNC };
	struct blk_dev *target, *other;
	struct vhd_image *src;
	char err[ERRLEN], buf[512], a[512], b[512];

	memset(a, 0x5a, sizeof(a));
	memset(b, 0xa5, sizeof(b));
	create(tp("mig.vhd"), VHD_TYPE_DYNAMIC, MiB8, BS64K, true, NULL);
	src = open_img(tp("mig.vhd"), VHD_OPEN_RDWR);
	blk_defer_locks(true);
	ck_assert_msg(blk_open(&target, &o, err, sizeof(err)) == 0, "%s", err);
	blk_defer_locks(false);
	ck_assert_int_eq(vhd_write(src, a, sizeof(a), 3 * BS64K), 0);
	ck_assert_int_eq(vhd_close(src), 0);
	ck_assert_msg(blk_take_over(target, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(blk_rw_sync(target, BLK_OP_READ, 3 * BS64K, buf, sizeof(buf)), 0);
	ck_assert_mem_eq(buf, a, sizeof(a));
	ck_assert_int_eq(blk_rw_sync(target, BLK_OP_WRITE, 5 * BS64K, b, sizeof(b)), 0);
	/* Locked now: a second writer is refused. */
	ck_assert_int_ne(
		blk_open(&other, &(struct blk_opts){ .path = tp("mig.vhd"), .format = BLK_FMT_VHD },
			 err, sizeof(err)),
		0);
	ck_assert_msg(strstr(err, "in use"), "%s", err);
	blk_close(target);
	ck_assert_int_eq(tool("check", tp("mig.vhd")), 0);
	src = open_img(tp("mig.vhd"), 0);
	ck_assert_int_eq(vhd_read(src, buf, sizeof(buf), 3 * BS64K), 0);
	ck_assert_mem_eq(buf, a, sizeof(a));
	ck_assert_int_eq(vhd_read(src, buf, sizeof(buf), 5 * BS64K), 0);
	ck_assert_mem_eq(buf, b, sizeof(b));
	vhd_close(src);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vhd");
	int failed;

	make_tmpdir(tmpdir);
	ADD_TCASE(s, "vhd", NULL, NULL, 120, test_checksum_roundtrip, test_geometry,
		  test_size_rules, test_hyperv_fixed_size, test_footer_511, test_reject_fields,
		  test_footer_copies, test_repair_bat, test_chain_depth3, test_chain_errors,
		  test_locator_outside, test_parent_not_usable, test_parent_fifo_blk_and_tool,
		  test_scribble_sync, test_scribble_blk, test_blk_refuses_damaged, test_mte_bounded,
		  test_bat_zeros_bounded, test_bat_entries_cap, test_tool_usage,
		  test_tool_convert_roundtrip, test_tool_compact_resize_merge, test_tool_locks,
		  test_blk_take_over);
	failed = run_suite(s);
	rm_tree(tmpdir);
	return failed;
}
