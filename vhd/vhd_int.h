/* Internals shared by the files of vhd/: byte order, whole-buffer file I/O,
 * and the open image that vhd_io.c and vhd_block.c both work on. */
#ifndef KESTREL_VHD_INT_H
#define KESTREL_VHD_INT_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "kestrel/util.h"
#include "kestrel/vhd.h"

static inline uint16_t vhd_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t vhd_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t vhd_be64(const uint8_t *p)
{
	return (uint64_t)vhd_be32(p) << 32 | vhd_be32(p + 4);
}

static inline void vhd_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void vhd_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void vhd_put64(uint8_t *p, uint64_t v)
{
	vhd_put32(p, (uint32_t)(v >> 32));
	vhd_put32(p + 4, (uint32_t)v);
}

int vhd_file_size(int fd, uint64_t *size) WARN_UNUSED;
bool vhd_is_zero(const void *buf, size_t len);
/* Whole-file OFD lock: 0, or -EBUSY when another holder conflicts. */
int vhd_lock_fd(int fd, bool exclusive) WARN_UNUSED;

/* Per-block state of the sector bitmap cache. Dynamic images only track
 * whether a block's bitmap is all ones (reads ignore it: spec, "sectors whose
 * bits are zero must contain 512 bytes of zero on disk"); differencing images
 * cache partial bitmaps, since a clear bit means "read the parent". */
enum vhd_bm_state { VHD_BM_UNKNOWN, VHD_BM_FULL, VHD_BM_PARTIAL };

/* A differencing block's bitmap. Bits are set in `mem` when a write's data has
 * completed, and reach the file only at the next flush, after an fdatasync of
 * the data (spec, Write Operation for a Differencing Hard Disk: the bitmap is
 * marked for the sectors written): a crash then never shows a sector whose
 * data did not land. */
struct vhd_bitmap {
	uint8_t *mem;  /* what reads see */
	uint8_t *disk; /* what the file holds */
	unsigned pins; /* writes in flight that will set bits */
	bool dirty;    /* on the dirty list: mem has bits disk lacks */
	bool writing;  /* a flush is writing a snapshot of mem */
};

#define VHD_BMDIR_SHIFT 10

struct vhd_image {
	char *path;
	char *parent_dirs; /* ':'-separated folders parents may be in, besides the top's */
	int fd;		   /* buffered descriptor: metadata and sync I/O */
	unsigned flags;
	bool readonly;
	struct vhd_meta m;
	struct vhd_image *parent;
	pthread_mutex_t lock;	   /* BAT, bitmaps, pending list, end */
	pthread_mutex_t meta_lock; /* one metadata update sequence at a time */
	uint64_t end;		   /* trailing footer offset: where the next block goes */
	uint8_t footer_buf[VHD_FOOTER_SIZE];
	/* differencing: sector bitmaps, two-level directory by block */
	uint8_t *bm_state; /* enum vhd_bm_state per block */
	struct vhd_bitmap ***bm_dir;
	size_t bm_loaded, bm_cap, bm_clock;
	uint32_t *dirty; /* blocks whose bitmap has unflushed bits */
	size_t ndirty, dirty_cap;
};

/* ---- vhd_io.c internals used by vhd_block.c ----------------------------- */
enum vhd_run_kind { VHD_RUN_FILE, VHD_RUN_ZERO, VHD_RUN_PARENT, VHD_RUN_UNALLOC };
struct vhd_run {
	enum vhd_run_kind kind;
	uint64_t file_off; /* VHD_RUN_FILE */
	uint64_t len;
	bool set_bits;	  /* write to a differencing block: mark sectors after the data */
	bool fill_bitmap; /* write to a dynamic block whose bitmap is partial */
};

static inline uint32_t vhd_block_of(const struct vhd_image *img, uint64_t off)
{
	return (uint32_t)(off / img->m.block_size);
}

/* Map [off, off+len) of img (not its parents) for a read or a write; the run
 * ends at a block boundary or where the answer changes. Differencing bitmaps
 * are loaded on demand (a pread). For a write to a differencing block the
 * bitmap stays pinned until vhd_write_done(). */
int vhd_map(struct vhd_image *img, uint64_t off, uint64_t len, bool write,
	    struct vhd_run *run) WARN_UNUSED;
/* A write mapped with set_bits finished: with status 0, record its sectors in
 * memory and queue them for the next flush; unpin either way. */
void vhd_write_done(struct vhd_image *img, uint64_t off, uint64_t len, bool set_bits, int status);
/* Dynamic block with a partial bitmap: write it as all ones (every clear bit's
 * sector holds zeros, spec: Block Allocation Table and Data Blocks, so all ones
 * is true) before the first write into it. Takes meta_lock. */
int vhd_fill_bitmap(struct vhd_image *img, uint32_t block) WARN_UNUSED;

/* Block allocation, in the order that keeps the file valid at every instant:
 *  1. reserve: the footer is written at the new end of the file and synced
 *     (the old footer becomes dead space inside the new block);
 *  2. the caller writes the data into the block;
 *  3. commit: the sector bitmap is written, the file synced (data + bitmap
 *     durable), then the BAT entry written and the in-memory BAT updated.
 * Until the BAT entry lands, the block is unreferenced space. Caller holds
 * meta_lock across the three steps. */
struct vhd_alloc {
	uint32_t block;
	uint64_t file_off; /* of the bitmap; data follows */
	uint8_t *bitmap;   /* bitmap_size bytes: what commit writes */
};
int vhd_alloc_reserve(struct vhd_image *img, struct vhd_alloc *a, unsigned n) WARN_UNUSED;
int vhd_alloc_commit(struct vhd_image *img, struct vhd_alloc *a, unsigned n,
		     bool sync_bat) WARN_UNUSED;
void vhd_alloc_mark(struct vhd_image *img, struct vhd_alloc *a, uint64_t off_in_block,
		    uint64_t len);
/* Make completed writes durable: fdatasync (data), write the dirty bitmaps,
 * fdatasync. Caller holds meta_lock. */
int vhd_flush_locked(struct vhd_image *img) WARN_UNUSED;
int vhd_datasync(struct vhd_image *img) WARN_UNUSED;
uint64_t vhd_data_off(const struct vhd_image *img, uint64_t bat_entry_off, uint64_t off);

/* ---- vhd_parent.c ---------------------------------------------------------- */
/* Open the parent chain of a differencing image (img->parent...). Parents
 * must be regular VHD files in img's folder (or below it) or in one of
 * img->parent_dirs; any other candidate is "not usable", one answer for
 * missing, elsewhere, not a regular file and not a VHD, so that an image
 * cannot learn which host paths exist. */
int vhd_open_parents(struct vhd_image *img, char *err, size_t errlen) WARN_UNUSED;
/* Open path read only for a parent: non-blocking (a FIFO cannot hang us),
 * no controlling tty, regular files only, beneath one of dirs[0..ndirs).
 * A descriptor, or -EACCES for any refusal. */
int vhd_parent_open_fd(const char *path, char *const *dirs, int ndirs) WARN_UNUSED;
/* UTF-16 (big- or little-endian) to UTF-8; -EINVAL on bad surrogates or NUL. */
int vhd_utf16_to_utf8(const uint8_t *in, size_t inlen, bool big_endian, char *out,
		      size_t outlen) WARN_UNUSED;
/* UTF-8 to UTF-16; returns bytes written or -EINVAL/-ENOSPC. */
int vhd_utf8_to_utf16(const char *in, bool big_endian, uint8_t *out, size_t outlen) WARN_UNUSED;
/* Bytes reserved for a locator's data (the spec says sectors, Virtual PC and
 * Hyper-V store bytes). */
uint64_t vhd_locator_space(const struct vhd_locator *l);
/* Candidate paths for the parent, in the order tried: W2ru, W2ku, MacX, the
 * header's parent name; each relative one resolved against child's directory.
 * Returns the count (<= max); paths are malloc'd. */
int vhd_parent_candidates(const struct vhd_image *img, char **paths, int max);

/* ---- vhd_build.c ----------------------------------------------------------- */
/* Write a fresh dynamic/differencing image sequentially (temp files only: no
 * crash-safety ordering, one fsync at the end). */
struct vhd_builder {
	int fd;
	struct vhd_footer footer;
	struct vhd_header hdr;
	uint32_t *bat;
	uint32_t bitmap_size;
	uint64_t next; /* where the next block goes */
};
int vhd_builder_begin(struct vhd_builder *b, int fd, const struct vhd_footer *f,
		      const struct vhd_header *h,
		      const uint8_t *const loc_data[VHD_LOCATORS]) WARN_UNUSED;
int vhd_builder_add(struct vhd_builder *b, uint32_t block, const uint8_t *bitmap,
		    const uint8_t *data) WARN_UNUSED;
/* Reserve block's place (BAT entry set); the caller writes bitmap and data
 * there itself, before vhd_builder_finish. */
int vhd_builder_place(struct vhd_builder *b, uint32_t block, uint64_t *at) WARN_UNUSED;
int vhd_builder_finish(struct vhd_builder *b) WARN_UNUSED;
void vhd_builder_abort(struct vhd_builder *b);
void vhd_footer_template(struct vhd_footer *f, enum vhd_type type, uint64_t size, uint16_t c,
			 uint8_t h, uint8_t s);
void vhd_header_template(struct vhd_header *h, uint32_t nblocks, uint32_t block_size);
/* Where the block after `end` goes: its data 4 KiB aligned when blocks are. */
uint64_t vhd_next_block_off(uint64_t end, uint32_t bitmap_size, uint32_t block_size);
/* Geometry for a size kept exactly: the spec's when it covers the size, else
 * the maximum (which every reader takes as "use the current size"). */
void vhd_geometry_keep(uint64_t size, uint16_t *c, uint8_t *h, uint8_t *s);
/* Create a temp file next to path ("path.XXXXXX"); returns fd, name in tmp. */
int vhd_tmpfile(const char *path, char *tmp, size_t tmplen) WARN_UNUSED;

/* Writes of the image's own I/O and of a merge go through vhd_pwrite, so a
 * test can stop them as a crash would: check_vhd_merge builds its own copy
 * of vhd_io.c and vhd_convert.c with KESTREL_VHD_TEST_HOOKS, where
 * vhd_test_writes_left (-1: no limit) counts down and, once 0, every later
 * write and rename fails with EIO -- the files stay as the first N writes
 * left them. The library and the worker have no hook. */
#ifdef KESTREL_VHD_TEST_HOOKS
extern long vhd_test_writes_left;
static inline int vhd_crash_point(void)
{
	if (vhd_test_writes_left == 0)
		return -EIO;
	if (vhd_test_writes_left > 0)
		vhd_test_writes_left--;
	return 0;
}
#else
static inline int vhd_crash_point(void)
{
	return 0;
}
#endif

static inline int vhd_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	return vhd_crash_point() ?: pwrite_full(fd, buf, len, off);
}

#endif
