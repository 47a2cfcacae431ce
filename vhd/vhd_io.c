/* An open VHD image: sector mapping (spec, Mapping a Disk Sector to a Sector
 * in the Block), the sector-bitmap cache of differencing disks, the
 * crash-safe block allocation protocol, and a synchronous read/write/flush
 * API over the parent chain. vhd_block.c drives the same pieces
 * asynchronously for guests.
 *
 * Locking: img->lock guards the in-memory BAT, bitmap cache, dirty list and
 * img->end, and is never held across I/O. img->meta_lock serializes whole
 * metadata sequences (allocate, fill a bitmap, flush), which do I/O. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/block.h"
#include "kestrel/sandbox.h"
#include "vhd_int.h"

#ifdef KESTREL_VHD_TEST_HOOKS
long vhd_test_writes_left = -1;
#endif

#define VHD_BM_CACHE_BYTES (64u << 20) /* per image, for partial bitmaps */

/* ---- bit helpers: sector 0 of a block is bit 7 of bitmap byte 0 ----------- */

static inline bool bit_test(const uint8_t *bm, uint32_t i)
{
	return bm[i >> 3] & (0x80u >> (i & 7));
}

static void bit_set_range(uint8_t *bm, uint32_t first, uint32_t count)
{
	for (uint32_t i = first; i < first + count; i++)
		bm[i >> 3] |= (uint8_t)(0x80u >> (i & 7));
}

/* Length of the run of equal bits starting at first, at most max. */
static uint32_t bit_run(const uint8_t *bm, uint32_t first, uint32_t max)
{
	bool v = bit_test(bm, first);
	uint32_t n = 1;

	while (n < max && bit_test(bm, first + n) == v)
		n++;
	return n;
}

static bool bits_all_set(const uint8_t *bm, uint32_t first, uint32_t count)
{
	for (uint32_t i = first; i < first + count; i++)
		if (!bit_test(bm, i))
			return false;
	return true;
}

static uint32_t sectors_per_block(const struct vhd_image *img)
{
	return img->m.block_size / VHD_SECTOR;
}

/* bm_state and BAT entries are read without img->lock on the fast path
 * (vhd_map): writers, who hold the lock, publish with release stores, a
 * block's state before its BAT entry. */
static inline uint8_t bm_state_get(const struct vhd_image *img, uint32_t block)
{
	return __atomic_load_n(&img->bm_state[block], __ATOMIC_ACQUIRE);
}

static inline void bm_state_set(struct vhd_image *img, uint32_t block, enum vhd_bm_state st)
{
	__atomic_store_n(&img->bm_state[block], (uint8_t)st, __ATOMIC_RELEASE);
}

static inline uint32_t bat_get(const struct vhd_image *img, uint32_t block)
{
	return __atomic_load_n(&img->m.bat[block], __ATOMIC_ACQUIRE);
}

uint64_t vhd_data_off(const struct vhd_image *img, uint64_t bitmap_off, uint64_t off)
{
	return bitmap_off + img->m.bitmap_size + off % img->m.block_size;
}

/* ---- bitmap cache ------------------------------------------------------------ */

static struct vhd_bitmap **bm_slot(struct vhd_image *img, uint32_t block, bool create)
{
	struct vhd_bitmap ***dir = &img->bm_dir[block >> VHD_BMDIR_SHIFT];

	if (!*dir) {
		if (!create)
			return NULL;
		*dir = calloc(1u << VHD_BMDIR_SHIFT, sizeof(**dir));
		if (!*dir)
			return NULL;
	}
	return &(*dir)[block & ((1u << VHD_BMDIR_SHIFT) - 1)];
}

static struct vhd_bitmap *bm_get(struct vhd_image *img, uint32_t block)
{
	struct vhd_bitmap **slot = bm_slot(img, block, false);

	return slot ? *slot : NULL;
}

static void bm_free(struct vhd_bitmap *b)
{
	if (b) {
		free(b->mem);
		free(b->disk);
		free(b);
	}
}

static bool bm_full(const struct vhd_image *img, const uint8_t *bits)
{
	return bits_all_set(bits, 0, sectors_per_block(img));
}

/* Drop clean, idle bitmaps until the cache is back under 3/4 of its budget. */
static void bm_evict(struct vhd_image *img)
{
	size_t nchunks = ((size_t)img->m.nblocks >> VHD_BMDIR_SHIFT) + 1;
	size_t total = nchunks << VHD_BMDIR_SHIFT;

	for (size_t scanned = 0; scanned < total && img->bm_loaded > img->bm_cap * 3 / 4;
	     scanned++) {
		size_t i = img->bm_clock++ % total;
		struct vhd_bitmap **slot = bm_slot(img, (uint32_t)i, false);
		struct vhd_bitmap *b = slot ? *slot : NULL;

		if (!b || b->pins || b->dirty || b->writing)
			continue;
		*slot = NULL;
		bm_state_set(img, (uint32_t)i, VHD_BM_UNKNOWN);
		img->bm_loaded--;
		bm_free(b);
	}
}

/* Install a bitmap read from the file (or built by an allocation). Called
 * with img->lock held; takes ownership of bits. */
static int bm_install(struct vhd_image *img, uint32_t block, uint8_t *bits)
{
	struct vhd_bitmap **slot, *b;

	if (bm_full(img, bits)) {
		free(bits);
		bm_state_set(img, block, VHD_BM_FULL);
		return 0;
	}
	if (img->m.type != VHD_TYPE_DIFF) {
		free(bits);
		bm_state_set(img, block, VHD_BM_PARTIAL);
		return 0;
	}
	if (img->bm_loaded >= img->bm_cap)
		bm_evict(img);
	slot = bm_slot(img, block, true);
	b = calloc(1, sizeof(*b));
	if (!slot || !b) {
		free(b);
		free(bits);
		return -ENOMEM;
	}
	b->mem = bits;
	b->disk = malloc(img->m.bitmap_size);
	if (!b->disk) {
		bm_free(b);
		return -ENOMEM;
	}
	memcpy(b->disk, bits, img->m.bitmap_size);
	*slot = b;
	img->bm_loaded++;
	bm_state_set(img, block, VHD_BM_PARTIAL);
	return 0;
}

/* Make sure the bitmap state of an allocated block is known. Called and
 * returns with img->lock held; drops it around the read. */
static int bm_load(struct vhd_image *img, uint32_t block)
{
	uint64_t off = (uint64_t)img->m.bat[block] * VHD_SECTOR;
	uint8_t *bits;
	int ret;

	if (bm_state_get(img, block) != VHD_BM_UNKNOWN)
		return 0;
	pthread_mutex_unlock(&img->lock);
	bits = malloc(img->m.bitmap_size);
	ret = bits ? pread_full(img->fd, bits, img->m.bitmap_size, off) : -ENOMEM;
	pthread_mutex_lock(&img->lock);
	if (ret) {
		free(bits);
		return ret;
	}
	if (bm_state_get(img, block) != VHD_BM_UNKNOWN) { /* loaded meanwhile */
		free(bits);
		return 0;
	}
	return bm_install(img, block, bits);
}

static int dirty_add(struct vhd_image *img, uint32_t block, struct vhd_bitmap *b)
{
	if (b->dirty)
		return 0;
	if (img->ndirty == img->dirty_cap) {
		size_t cap = img->dirty_cap ? img->dirty_cap * 2 : 64;
		uint32_t *n = realloc(img->dirty, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		img->dirty = n;
		img->dirty_cap = cap;
	}
	img->dirty[img->ndirty++] = block;
	b->dirty = true;
	return 0;
}

/* ---- mapping ---------------------------------------------------------------- */

static void map_diff(struct vhd_image *img, uint32_t block, uint64_t base, uint64_t in, uint64_t n,
		     bool write, struct vhd_run *run)
{
	struct vhd_bitmap *b = bm_get(img, block);
	uint32_t first = (uint32_t)(in / VHD_SECTOR), count = (uint32_t)(n / VHD_SECTOR);

	run->kind = VHD_RUN_FILE;
	run->file_off = base + in;
	run->len = n;
	if (bm_state_get(img, block) == VHD_BM_FULL || !b)
		return;
	if (write) {
		run->set_bits = !bits_all_set(b->mem, first, count);
		if (run->set_bits)
			b->pins++;
		return;
	}
	run->len = (uint64_t)bit_run(b->mem, first, count) * VHD_SECTOR;
	if (!bit_test(b->mem, first))
		run->kind = VHD_RUN_PARENT;
}

/* The common cases without the lock: an unallocated block read, and any
 * block whose bitmap need not be consulted (dynamic reads; writes and
 * differencing reads of a block whose bitmap is all ones). */
static bool map_fast(struct vhd_image *img, uint32_t block, uint64_t in, uint64_t n, bool write,
		     struct vhd_run *run)
{
	uint32_t e = bat_get(img, block);
	bool dyn = img->m.type == VHD_TYPE_DYNAMIC;

	if (e == VHD_BAT_UNUSED) {
		if (write)
			return false;
		run->kind = dyn ? VHD_RUN_ZERO : VHD_RUN_PARENT;
		run->len = n;
		return true;
	}
	if (bm_state_get(img, block) != VHD_BM_FULL && !(dyn && !write))
		return false;
	run->kind = VHD_RUN_FILE;
	run->file_off = (uint64_t)e * VHD_SECTOR + img->m.bitmap_size + in;
	run->len = n;
	return true;
}

int vhd_map(struct vhd_image *img, uint64_t off, uint64_t len, bool write, struct vhd_run *run)
{
	uint32_t block;
	uint64_t in, n, base;
	int ret = 0;

	memset(run, 0, sizeof(*run));
	if (img->m.type == VHD_TYPE_FIXED) {
		run->kind = VHD_RUN_FILE;
		run->file_off = off;
		run->len = len;
		return 0;
	}
	block = vhd_block_of(img, off);
	in = off % img->m.block_size;
	n = MIN(len, img->m.block_size - in);
	if (map_fast(img, block, in, n, write, run))
		return 0;
	pthread_mutex_lock(&img->lock);
	if (img->m.bat[block] == VHD_BAT_UNUSED) {
		run->kind = write			   ? VHD_RUN_UNALLOC
			    : img->m.type == VHD_TYPE_DIFF ? VHD_RUN_PARENT
							   : VHD_RUN_ZERO;
		run->len = n;
		goto out;
	}
	base = (uint64_t)img->m.bat[block] * VHD_SECTOR + img->m.bitmap_size;
	if (img->m.type == VHD_TYPE_DYNAMIC) {
		run->kind = VHD_RUN_FILE;
		run->file_off = base + in;
		run->len = n;
		if (write) {
			ret = bm_load(img, block);
			run->fill_bitmap = bm_state_get(img, block) == VHD_BM_PARTIAL;
		}
		goto out;
	}
	ret = bm_load(img, block);
	if (!ret)
		map_diff(img, block, base, in, n, write, run);
out:
	pthread_mutex_unlock(&img->lock);
	return ret;
}

void vhd_write_done(struct vhd_image *img, uint64_t off, uint64_t len, bool set_bits, int status)
{
	uint32_t block;
	struct vhd_bitmap *b;

	if (!set_bits)
		return; /* also every fixed disk, whose block size is 0 */
	block = vhd_block_of(img, off);
	pthread_mutex_lock(&img->lock);
	b = bm_get(img, block);
	if (b) {
		if (status == 0) {
			bit_set_range(b->mem, (uint32_t)(off % img->m.block_size / VHD_SECTOR),
				      (uint32_t)(len / VHD_SECTOR));
			/* Without memory for the dirty list the bits stay
			 * in `mem` only: reads are right, a crash loses the
			 * write, which was never flushed. */
			(void)dirty_add(img, block, b);
		}
		b->pins--;
	}
	pthread_mutex_unlock(&img->lock);
}

int vhd_fill_bitmap(struct vhd_image *img, uint32_t block)
{
	uint64_t off;
	uint8_t *ones;
	int ret = 0;

	pthread_mutex_lock(&img->meta_lock);
	pthread_mutex_lock(&img->lock);
	if (bm_state_get(img, block) != VHD_BM_PARTIAL) {
		pthread_mutex_unlock(&img->lock);
		goto out;
	}
	off = (uint64_t)img->m.bat[block] * VHD_SECTOR;
	pthread_mutex_unlock(&img->lock);
	ones = malloc(img->m.bitmap_size);
	if (!ones) {
		ret = -ENOMEM;
		goto out;
	}
	memset(ones, 0xff, img->m.bitmap_size);
	/* No sync needed: until the guest's next flush nothing written here is
	 * promised, and either state of these bits reads the same data. */
	ret = vhd_pwrite(img->fd, ones, img->m.bitmap_size, off);
	free(ones);
	if (!ret) {
		pthread_mutex_lock(&img->lock);
		bm_state_set(img, block, VHD_BM_FULL);
		pthread_mutex_unlock(&img->lock);
	}
out:
	pthread_mutex_unlock(&img->meta_lock);
	return ret;
}

/* ---- allocation --------------------------------------------------------------- */

int vhd_datasync(struct vhd_image *img)
{
	if (img->flags & VHD_OPEN_NOSYNC)
		return 0;
	return fdatasync(img->fd) < 0 ? -errno : 0;
}

int vhd_alloc_reserve(struct vhd_image *img, struct vhd_alloc *a, unsigned n)
{
	uint64_t end, old_size;
	int ret;

	pthread_mutex_lock(&img->lock);
	end = img->end;
	pthread_mutex_unlock(&img->lock);
	for (unsigned i = 0; i < n; i++) {
		a[i].file_off = vhd_next_block_off(end, img->m.bitmap_size, img->m.block_size);
		end = a[i].file_off + img->m.bitmap_size + img->m.block_size;
		a[i].bitmap = calloc(1, img->m.bitmap_size);
		if (!a[i].bitmap)
			goto nomem;
		/* Dynamic: all ones is true of every sector (spec, BAT and Data
		 * Blocks); the unwritten ones are holes that read as zero. */
		if (img->m.type == VHD_TYPE_DYNAMIC)
			memset(a[i].bitmap, 0xff, img->m.bitmap_size);
	}
	if (end / VHD_SECTOR > UINT32_MAX) {
		ret = -EFBIG; /* BAT entries are 32-bit sector numbers */
		goto fail;
	}
	/* The footer moves first: the file ends in a valid footer at every
	 * instant, and the old one becomes unreferenced space in the block. A
	 * footer only partly written (host disk full) is cut off again, which
	 * leaves the old one last. */
	ret = vhd_file_size(img->fd, &old_size);
	if (!ret) {
		ret = vhd_pwrite(img->fd, img->footer_buf, VHD_FOOTER_SIZE, end);
		if (ret && ftruncate(img->fd, (off_t)old_size) < 0)
			ret = -EIO; /* neither the footer nor its removal worked */
	}
	if (!ret)
		ret = vhd_datasync(img);
	if (ret)
		goto fail;
	pthread_mutex_lock(&img->lock);
	img->end = end;
	pthread_mutex_unlock(&img->lock);
	return 0;
nomem:
	ret = -ENOMEM;
fail:
	for (unsigned i = 0; i < n; i++) {
		free(a[i].bitmap);
		a[i].bitmap = NULL;
	}
	return ret;
}

void vhd_alloc_mark(struct vhd_image *img, struct vhd_alloc *a, uint64_t off_in_block, uint64_t len)
{
	bit_set_range(a->bitmap, (uint32_t)(off_in_block / VHD_SECTOR),
		      (uint32_t)(len / VHD_SECTOR));
}

static int bat_write(struct vhd_image *img, uint32_t block, uint32_t entry)
{
	uint8_t be[4];

	vhd_put32(be, entry);
	return vhd_pwrite(img->fd, be, sizeof(be), img->m.hdr.table_offset + 4ULL * block);
}

int vhd_alloc_commit(struct vhd_image *img, struct vhd_alloc *a, unsigned n, bool sync_bat)
{
	int ret = 0;

	for (unsigned i = 0; i < n && !ret; i++)
		ret = vhd_pwrite(img->fd, a[i].bitmap, img->m.bitmap_size, a[i].file_off);
	if (!ret)
		ret = vhd_datasync(img); /* data and bitmaps before the BAT */
	for (unsigned i = 0; i < n && !ret; i++)
		ret = bat_write(img, a[i].block, (uint32_t)(a[i].file_off / VHD_SECTOR));
	if (!ret && sync_bat)
		ret = vhd_datasync(img);
	pthread_mutex_lock(&img->lock);
	for (unsigned i = 0; i < n; i++) {
		if (!ret) {
			img->m.allocated++;
			img->m.data_end = MAX(img->m.data_end, a[i].file_off + img->m.bitmap_size +
								       img->m.block_size);
			if (bm_install(img, a[i].block, a[i].bitmap))
				bm_state_set(img, a[i].block, VHD_BM_UNKNOWN); /* reloaded later */
			/* Published last: a lock-free reader seeing the entry
			 * sees the block's bitmap state. */
			__atomic_store_n(&img->m.bat[a[i].block],
					 (uint32_t)(a[i].file_off / VHD_SECTOR), __ATOMIC_RELEASE);
		} else {
			free(a[i].bitmap);
		}
		a[i].bitmap = NULL;
	}
	pthread_mutex_unlock(&img->lock);
	return ret;
}

/* ---- flush ------------------------------------------------------------------- */

struct flush_item {
	uint32_t block;
	uint64_t off;
	uint8_t *snap;
};

/* Snapshot the dirty bitmaps: every bit in `mem` belongs to a write whose
 * data had completed, so after the next fdatasync all of them are true. */
static struct flush_item *flush_collect(struct vhd_image *img, size_t *n)
{
	struct flush_item *items;
	size_t k = 0;

	pthread_mutex_lock(&img->lock);
	items = calloc(img->ndirty ? img->ndirty : 1, sizeof(*items));
	for (size_t i = 0; items && i < img->ndirty; i++) {
		struct vhd_bitmap *b = bm_get(img, img->dirty[i]);
		uint8_t *snap = malloc(img->m.bitmap_size);

		if (!b || !snap) {
			free(snap);
			continue;
		}
		memcpy(snap, b->mem, img->m.bitmap_size);
		b->dirty = false;
		b->writing = true;
		items[k++] = (struct flush_item){ img->dirty[i],
						  (uint64_t)img->m.bat[img->dirty[i]] * VHD_SECTOR,
						  snap };
	}
	if (items)
		img->ndirty = 0;
	pthread_mutex_unlock(&img->lock);
	*n = k;
	return items;
}

static void flush_finish(struct vhd_image *img, struct flush_item *items, size_t n, int ret)
{
	pthread_mutex_lock(&img->lock);
	for (size_t i = 0; i < n; i++) {
		struct vhd_bitmap *b = bm_get(img, items[i].block);

		if (!b)
			continue;
		b->writing = false;
		if (ret) {
			(void)dirty_add(img, items[i].block, b);
			continue;
		}
		memcpy(b->disk, items[i].snap, img->m.bitmap_size);
		if (!b->dirty && !b->pins && bm_full(img, b->disk)) {
			struct vhd_bitmap **slot = bm_slot(img, items[i].block, false);

			*slot = NULL;
			img->bm_loaded--;
			bm_state_set(img, items[i].block, VHD_BM_FULL);
			bm_free(b);
		}
	}
	pthread_mutex_unlock(&img->lock);
	for (size_t i = 0; i < n; i++)
		free(items[i].snap);
	free(items);
}

int vhd_flush_locked(struct vhd_image *img)
{
	struct flush_item *items;
	size_t n = 0;
	int ret;

	if (img->readonly)
		return 0;
	items = flush_collect(img, &n);
	if (!items)
		return -ENOMEM;
	ret = vhd_datasync(img);
	for (size_t i = 0; i < n && !ret; i++)
		ret = vhd_pwrite(img->fd, items[i].snap, img->m.bitmap_size, items[i].off);
	if (!ret && n)
		ret = vhd_datasync(img);
	flush_finish(img, items, n, ret);
	return ret;
}

int vhd_flush(struct vhd_image *img)
{
	int ret;

	pthread_mutex_lock(&img->meta_lock);
	ret = vhd_flush_locked(img);
	pthread_mutex_unlock(&img->meta_lock);
	return ret;
}

/* ---- synchronous I/O ------------------------------------------------------------ */

static int check_range(const struct vhd_image *img, uint64_t len, uint64_t off)
{
	if (off % VHD_SECTOR || len % VHD_SECTOR || off > img->m.size || img->m.size - off < len)
		return -EINVAL;
	return 0;
}

int vhd_read(struct vhd_image *img, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;
	int ret = check_range(img, len, off);

	while (!ret && len > 0) {
		struct vhd_run run;

		ret = vhd_map(img, off, len, false, &run);
		if (ret)
			break;
		if (run.kind == VHD_RUN_FILE)
			ret = pread_full(img->fd, p, run.len, run.file_off);
		else if (run.kind == VHD_RUN_PARENT && img->parent)
			ret = vhd_read(img->parent, p, run.len, off);
		else
			memset(p, 0, run.len);
		p += run.len;
		off += run.len;
		len -= run.len;
	}
	return ret;
}

/* Allocate the block under off and write [off, off+len) into it. */
static int write_alloc(struct vhd_image *img, const uint8_t *p, uint64_t len, uint64_t off)
{
	struct vhd_alloc a = { .block = vhd_block_of(img, off) };
	uint64_t in = off % img->m.block_size;
	int ret;

	ret = vhd_alloc_reserve(img, &a, 1);
	if (ret)
		return ret;
	vhd_alloc_mark(img, &a, in, len);
	ret = vhd_pwrite(img->fd, p, len, a.file_off + img->m.bitmap_size + in);
	if (ret) {
		free(a.bitmap); /* the reserved space stays unreferenced */
		return ret;
	}
	return vhd_alloc_commit(img, &a, 1, false);
}

static int write_run(struct vhd_image *img, const uint8_t *p, uint64_t off, struct vhd_run *run)
{
	int ret = 0;

	if (run->fill_bitmap)
		ret = vhd_fill_bitmap(img, vhd_block_of(img, off));
	if (!ret)
		ret = vhd_pwrite(img->fd, p, run->len, run->file_off);
	vhd_write_done(img, off, run->len, run->set_bits, ret);
	return ret;
}

int vhd_write(struct vhd_image *img, const void *buf, uint64_t len, uint64_t off)
{
	const uint8_t *p = buf;
	int ret = img->readonly ? -EROFS : check_range(img, len, off);

	while (!ret && len > 0) {
		struct vhd_run run;

		ret = vhd_map(img, off, len, true, &run);
		if (ret)
			break;
		if (run.kind == VHD_RUN_UNALLOC) {
			pthread_mutex_lock(&img->meta_lock);
			ret = vhd_map(img, off, len, true, &run); /* allocated meanwhile? */
			if (!ret && run.kind == VHD_RUN_UNALLOC)
				ret = write_alloc(img, p, run.len, off);
			pthread_mutex_unlock(&img->meta_lock);
			if (!ret && run.kind != VHD_RUN_UNALLOC)
				ret = write_run(img, p, off, &run);
		} else {
			ret = write_run(img, p, off, &run);
		}
		p += run.len;
		off += run.len;
		len -= run.len;
	}
	return ret;
}

int vhd_block_status(struct vhd_image *img, uint64_t off, uint64_t len, bool *present, uint64_t *n)
{
	struct vhd_run run;
	int ret = check_range(img, len, off);

	if (!ret)
		ret = vhd_map(img, off, len, false, &run);
	if (ret)
		return ret;
	*present = run.kind == VHD_RUN_FILE;
	*n = run.len;
	return 0;
}

/* ---- open and close -------------------------------------------------------------- */

static int image_init_state(struct vhd_image *img)
{
	const struct vhd_meta *m = &img->m;

	/* New blocks go where the footer is; with no trailing footer (read
	 * only) the end of the file stands in. */
	img->end = m->trailing_bad ? ALIGN_UP(m->file_size, VHD_SECTOR) : m->footer_off;
	vhd_footer_encode(&img->m.footer, img->footer_buf);
	if (m->type == VHD_TYPE_FIXED)
		return 0;
	img->bm_state = calloc(m->nblocks ? m->nblocks : 1, 1);
	img->bm_dir = calloc(((size_t)m->nblocks >> VHD_BMDIR_SHIFT) + 1, sizeof(*img->bm_dir));
	if (!img->bm_state || !img->bm_dir)
		return -ENOMEM;
	img->bm_cap = MAX(16u, VHD_BM_CACHE_BYTES / m->bitmap_size);
	return 0;
}

/* The cached sector bitmaps and their directory. */
static void image_drop_bitmaps(struct vhd_image *img)
{
	if (img->bm_dir) {
		for (size_t c = 0; c <= ((size_t)img->m.nblocks >> VHD_BMDIR_SHIFT); c++) {
			if (!img->bm_dir[c])
				continue;
			for (size_t i = 0; i < (1u << VHD_BMDIR_SHIFT); i++)
				bm_free(img->bm_dir[c][i]);
			free(img->bm_dir[c]);
		}
	}
	free(img->bm_dir);
	free(img->bm_state);
	img->bm_dir = NULL;
	img->bm_state = NULL;
	img->bm_loaded = img->bm_clock = 0;
}

static void image_free(struct vhd_image *img)
{
	image_drop_bitmaps(img);
	free(img->dirty);
	vhd_meta_free(&img->m);
	/* The descriptor may share its description (and lock) with one a
	 * worker keeps for a reboot (sandbox_open): closing alone would leave
	 * the lock held, as block.c's blk_free knows. */
	if (img->fd >= 0 && !(img->flags & VHD_OPEN_NOLOCK))
		blk_unlock_file(img->fd);
	if (img->fd >= 0)
		close(img->fd);
	pthread_mutex_destroy(&img->lock);
	pthread_mutex_destroy(&img->meta_lock);
	free(img->path);
	free(img->parent_dirs);
	free(img);
}

int vhd_lock_fd(int fd, bool exclusive)
{
	int r = blk_lock_file(fd, exclusive);

	return r == -EBUSY ? r : 0; /* other errors: a file system without locks */
}

static int image_lock(struct vhd_image *img, char *err, size_t errlen)
{
	int ret;

	if (img->flags & VHD_OPEN_NOLOCK)
		return 0;
	ret = vhd_lock_fd(img->fd, !img->readonly);
	if (ret)
		snprintf(err, errlen, "%s: in use by another process%s", img->path,
			 img->readonly ? " for writing" : "");
	return ret;
}

static int image_parse(struct vhd_image *img, char *err, size_t errlen)
{
	struct vhd_diag d = { 0 };
	unsigned pflags = img->readonly ? VHD_PARSE_ALLOW_REPAIRABLE : 0;
	int ret = vhd_parse(img->fd, &img->m, pflags, &d);

	if (ret == -EINVAL || (ret == 0 && d.errors))
		snprintf(err, errlen, "%s: %s", img->path,
			 d.first[0] ? d.first : "not a valid VHD");
	else if (ret)
		snprintf(err, errlen, "%s: %s", img->path, strerror(-ret));
	return ret;
}

/* Opening must not wait on a FIFO nor open a terminal as our tty, and
 * only a regular file or a block device can hold an image. */
static int image_fd_check(int fd)
{
	struct stat st;
	int fl;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return -EINVAL;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

#define IMAGE_OPEN_FLAGS(rdwr) (((rdwr) ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

/* In the worker, what the first boot opened is kept for a reboot
 * (sandbox_open): a reboot after --user still has it. */
static int image_open_path(const char *path, bool rdwr)
{
	int fd = sandbox_open(path, IMAGE_OPEN_FLAGS(rdwr), 0);
	int ret;

	if (fd < 0)
		return fd;
	ret = image_fd_check(fd);
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

/* A private descriptor: buffered (no O_DIRECT) and with its own flock; the
 * same file as fd (checked: the path fallback could name another). In the
 * worker, a reboot gets the one kept from the first boot instead
 * (sandbox_reopen): the same file, though no longer private. */
static int image_reopen(int fd, const char *path, bool rdwr)
{
	struct stat a, b;
	int nfd = sandbox_reopen(fd, path, IMAGE_OPEN_FLAGS(rdwr));
	int ret;

	if (nfd < 0)
		return nfd;
	ret = image_fd_check(nfd);
	if (!ret && (fstat(fd, &a) < 0 || fstat(nfd, &b) < 0 || a.st_dev != b.st_dev ||
		     a.st_ino != b.st_ino))
		ret = -ESTALE;
	if (ret) {
		close(nfd);
		return ret;
	}
	return nfd;
}

static int image_open(struct vhd_image **out, int fd, const char *path, unsigned flags,
		      const char *parent_dirs, char *err, size_t errlen)
{
	struct vhd_image *img = calloc(1, sizeof(*img));
	int ret;

	*out = NULL;
	if (!img)
		return -ENOMEM;
	pthread_mutex_init(&img->lock, NULL);
	pthread_mutex_init(&img->meta_lock, NULL);
	img->flags = flags;
	img->readonly = !(flags & VHD_OPEN_RDWR);
	img->path = strdup(path);
	img->parent_dirs = parent_dirs ? strdup(parent_dirs) : NULL;
	img->fd = fd >= 0 ? image_reopen(fd, path, !img->readonly)
			  : image_open_path(path, !img->readonly);
	if (img->fd < 0) {
		ret = img->fd;
		img->fd = -1;
		snprintf(err, errlen, "%s: %s", path,
			 ret == -EINVAL ? "not a regular file or block device" : strerror(-ret));
		goto fail;
	}
	ret = img->path && (img->parent_dirs || !parent_dirs) ? image_lock(img, err, errlen)
							      : -ENOMEM;
	if (!ret)
		ret = image_parse(img, err, errlen);
	if (!ret)
		ret = image_init_state(img);
	if (!ret && !(flags & VHD_OPEN_NO_PARENT) && img->m.type == VHD_TYPE_DIFF)
		ret = vhd_open_parents(img, err, errlen);
	if (ret)
		goto fail;
	*out = img;
	return 0;
fail:
	if (ret == -ENOMEM && !err[0])
		snprintf(err, errlen, "%s: out of memory", path);
	while (img) {
		struct vhd_image *p = img->parent;

		image_free(img);
		img = p;
	}
	return ret;
}

int vhd_refresh(struct vhd_image *img, char *err, size_t errlen)
{
	struct vhd_meta old = img->m;
	int ret;

	err[0] = '\0';
	if (img->ndirty)
		return -EBUSY; /* unflushed bits of ours: not a fresh open */
	memset(&img->m, 0, sizeof(img->m));
	ret = image_parse(img, err, errlen);
	if (!ret && (img->m.type != old.type || img->m.size != old.size ||
		     img->m.block_size != old.block_size || img->m.nblocks != old.nblocks)) {
		snprintf(err, errlen, "%s: the image changed its type or geometry", img->path);
		ret = -EINVAL;
	}
	if (ret) {
		vhd_meta_free(&img->m);
		img->m = old;
		return ret;
	}
	/* The bitmaps' directory is sized by nblocks, which stayed. */
	image_drop_bitmaps(img);
	vhd_meta_free(&old);
	return image_init_state(img);
}

int vhd_open_ex(struct vhd_image **out, int fd, const char *path, unsigned flags,
		const char *parent_dirs, char *err, size_t errlen)
{
	if (errlen)
		err[0] = '\0';
	return image_open(out, fd, path, flags, parent_dirs, err, errlen);
}

int vhd_open(struct vhd_image **out, const char *path, unsigned flags, char *err, size_t errlen)
{
	return vhd_open_ex(out, -1, path, flags, NULL, err, errlen);
}

int vhd_open_fd(struct vhd_image **out, int fd, const char *path, unsigned flags, char *err,
		size_t errlen)
{
	return vhd_open_ex(out, fd, path, flags, NULL, err, errlen);
}

int vhd_close(struct vhd_image *img)
{
	int ret = 0;

	if (!img)
		return 0;
	if (!img->readonly)
		ret = vhd_flush(img);
	while (img) {
		struct vhd_image *p = img->parent;

		image_free(img);
		img = p;
	}
	return ret;
}

const struct vhd_meta *vhd_image_meta(const struct vhd_image *img)
{
	return &img->m;
}

const char *vhd_image_path(const struct vhd_image *img)
{
	return img->path;
}

struct vhd_image *vhd_image_parent(const struct vhd_image *img)
{
	return img->parent;
}

uint64_t vhd_image_size(const struct vhd_image *img)
{
	return img->m.size;
}
