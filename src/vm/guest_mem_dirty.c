/* Dirty tracking of guest memory: a bit per 4 KiB page, kept with the
 * memory (one bitmap for the RAM backing, one per device-memory slot that
 * logs), set by the VMM's own writes and filled from KVM's dirty log when a
 * slot is fetched or changed. See the top of include/kestrel/guest_mem.h. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "guest_mem_int.h"

/* ---- bitmaps: arrays of 64-bit words, atomic where threads race ---- */

/* Set bits [first, first + n). A word whose bits are set already is only
 * read: marking the same ring page on every request stays a load. */
static void bits_set(uint64_t *map, uint64_t first, uint64_t n)
{
	while (n) {
		uint64_t w = first / 64, b = first % 64, k = MIN(n, 64 - b);
		uint64_t m = (k == 64 ? ~0ULL : (1ULL << k) - 1) << b;

		if ((__atomic_load_n(&map[w], __ATOMIC_RELAXED) & m) != m)
			__atomic_fetch_or(&map[w], m, __ATOMIC_RELAXED);
		first += k;
		n -= k;
	}
}

/* dst bits [first, first + n) |= src bits [0, n). */
static void bits_or_at(uint64_t *dst, uint64_t first, const uint64_t *src, uint64_t n)
{
	for (uint64_t j = 0; j * 64 < n; j++) {
		uint64_t left = n - j * 64, v = src[j] & (left >= 64 ? ~0ULL : (1ULL << left) - 1);
		uint64_t at = first + j * 64, w = at / 64, b = at % 64;

		if (!v)
			continue;
		__atomic_fetch_or(&dst[w], v << b, __ATOMIC_RELAXED);
		if (b && v >> (64 - b))
			__atomic_fetch_or(&dst[w + 1], v >> (64 - b), __ATOMIC_RELAXED);
	}
}

/* The bits of *word under mask, cleared if asked (atomically: a bit set
 * meanwhile by another thread is either taken now or kept for later). */
static uint64_t bits_pick(uint64_t *word, uint64_t mask, bool clear)
{
	uint64_t v;

	if (!mask)
		return 0;
	v = __atomic_load_n(word, __ATOMIC_RELAXED) & mask;
	if (v && clear)
		v = __atomic_fetch_and(word, ~mask, __ATOMIC_RELAXED) & mask;
	return v;
}

/* out bits [0, n) = src bits [first, first + n); returns how many are set. */
static uint64_t bits_take(uint64_t *src, uint64_t first, uint64_t n, uint64_t *out, bool clear)
{
	uint64_t count = 0;

	for (uint64_t j = 0; j * 64 < n; j++) {
		uint64_t left = n - j * 64, m = left >= 64 ? ~0ULL : (1ULL << left) - 1;
		uint64_t at = first + j * 64, w = at / 64, b = at % 64, v;

		v = bits_pick(&src[w], m << b, clear) >> b;
		if (b)
			v |= bits_pick(&src[w + 1], m >> (64 - b), clear) << (64 - b);
		out[j] = v;
		count += (uint64_t)__builtin_popcountll(v);
	}
	return count;
}

/* Where a slot's bits live: the RAM bitmap at its RAM offset, or its own. */
static uint64_t *gm_slot_bits(struct guest_mem *gm, const struct gm_slot *s, uint64_t *first)
{
	if (s->flags & GM_SLOT_RAM) {
		*first = s->ram_offset >> GM_PAGE_SHIFT;
		return gm->ram_dirty;
	}
	*first = 0;
	return s->dirty;
}

/* ---- marks by the VMM ---- */

bool gm_dirty_logging(const struct guest_mem *gm)
{
	return __atomic_load_n(&gm->ram_logging, __ATOMIC_RELAXED);
}

void gm_mark_dirty_hva(const struct guest_mem *gm, const void *hva, uint64_t len)
{
	uintptr_t p = (uintptr_t)hva, base = (uintptr_t)gm->map;
	uint64_t off;

	if (!len || !gm_dirty_logging(gm) || p < base || p - base >= gm->map_size)
		return;
	off = p - base;
	len = MIN(len, gm->map_size - off);
	bits_set(gm->ram_dirty, off >> GM_PAGE_SHIFT,
		 ((off + len - 1) >> GM_PAGE_SHIFT) - (off >> GM_PAGE_SHIFT) + 1);
}

void gm_mark_dirty(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	struct gm_map_entry h;

	while (len && gm_dirty_logging(gm) && gm_find(gm, gpa, &h) && (h.flags & GM_SLOT_RAM)) {
		uint64_t off = gpa - h.gpa, n = MIN(len, h.size - off);

		gm_mark_dirty_hva(gm, h.hva + off, n);
		len -= n;
		if (gpa + n < gpa)
			break; /* the slot ends at the top of the address space */
		gpa += n;
	}
}

void gm_mark_dirty_iov(const struct guest_mem *gm, const struct iovec *iov, unsigned n,
		       uint64_t len)
{
	for (unsigned i = 0; i < n && len && gm_dirty_logging(gm); i++) {
		uint64_t k = MIN((uint64_t)iov[i].iov_len, len);

		gm_mark_dirty_hva(gm, iov[i].iov_base, k);
		len -= k;
	}
}

void gm_slot_mark_dirty(struct guest_mem *gm, int id, uint64_t off, uint64_t len)
{
	struct gm_slot *s;
	uint64_t first, *bits;

	if (id < 0 || id >= GM_MAX_SLOTS || !len)
		return;
	pthread_mutex_lock(&gm->lock);
	s = &gm->slot[id];
	bits = gm_slot_bits(gm, s, &first);
	if (off < s->size && gm_slot_logged(gm, s) && bits) {
		len = MIN(len, s->size - off);
		bits_set(bits, first + (off >> GM_PAGE_SHIFT),
			 ((off + len - 1) >> GM_PAGE_SHIFT) - (off >> GM_PAGE_SHIFT) + 1);
	}
	pthread_mutex_unlock(&gm->lock);
}

/* ---- KVM's log ---- */

/* KVM_CLEAR_DIRTY_LOG takes a 32-bit page count; chunks stay multiples of
 * 64 pages, as it requires except at the slot's end. */
#define GM_CLEAR_CHUNK (1ULL << 30)

/* Whether any of the chunk's bits is set: an empty one has nothing to
 * write-protect again (a still framebuffer's log, read every poll). */
static bool gm_chunk_dirty(const uint64_t *bm, uint64_t first, uint64_t n)
{
	for (uint64_t w = first / 64; w < (first + n + 63) / 64; w++)
		if (bm[w])
			return true;
	return false;
}

static int gm_kvm_clear(struct guest_mem *gm, int id, uint64_t *bm, uint64_t npages)
{
	for (uint64_t first = 0; first < npages; first += GM_CLEAR_CHUNK) {
		struct kvm_clear_dirty_log c = {
			.slot = (uint32_t)id,
			.first_page = first,
			.num_pages = (uint32_t)MIN(GM_CLEAR_CHUNK, npages - first),
			.dirty_bitmap = bm + first / 64,
		};

		if (!gm_chunk_dirty(bm, first, c.num_pages))
			continue;
		if (ioctl(gm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
			return -errno;
	}
	return 0;
}

/* Move KVM's log of slot id into the slot's bitmap and clear it in KVM
 * (KVM_GET_DIRTY_LOG clears it by itself unless manual protection is on). */
static int gm_kvm_harvest(struct guest_mem *gm, int id)
{
	struct gm_slot *s = &gm->slot[id];
	uint64_t npages = s->size >> GM_PAGE_SHIFT, first, *bm, *bits;
	struct kvm_dirty_log log = { .slot = (uint32_t)id };
	int ret = 0;

	if (gm->vm_fd < 0 || !s->kvm_logging)
		return 0;
	bits = gm_slot_bits(gm, s, &first);
	bm = calloc(ALIGN_UP(npages, 64) / 64, sizeof(*bm));
	if (!bm)
		return -ENOMEM;
	log.dirty_bitmap = bm;
	if (ioctl(gm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		ret = -errno;
	if (!ret && gm->kvm_manual_protect)
		ret = gm_kvm_clear(gm, id, bm, npages);
	if (!ret)
		bits_or_at(bits, first, bm, npages);
	free(bm);
	return ret;
}

void gm_dirty_after_change(struct guest_mem *gm, int id)
{
	struct gm_slot *s = &gm->slot[id];
	uint64_t first, *bits = gm_slot_bits(gm, s, &first);

	if (gm_slot_logged(gm, s) && bits)
		bits_set(bits, first, s->size >> GM_PAGE_SHIFT);
}

void gm_dirty_before_change(struct guest_mem *gm, int id)
{
	if (gm_kvm_harvest(gm, id)) {
		kwarn("guest memory: slot %s: KVM's dirty log could not be read; all of it "
		      "counts as dirty",
		      gm->slot[id].name);
		gm_dirty_after_change(gm, id);
	}
}

long gm_dirty_fetch(struct guest_mem *gm, int id, uint64_t *bitmap, uint64_t nbits, bool clear)
{
	struct gm_slot *s;
	uint64_t first, *bits;
	long ret;

	if (id < 0 || id >= GM_MAX_SLOTS)
		return -ENOENT;
	pthread_mutex_lock(&gm->lock);
	s = &gm->slot[id];
	if (!s->size)
		ret = -ENOENT;
	else if (!gm_slot_logged(gm, s))
		ret = -EINVAL;
	else if (nbits < s->size >> GM_PAGE_SHIFT)
		ret = -ENOSPC;
	else
		ret = gm_kvm_harvest(gm, id);
	if (!ret) {
		bits = gm_slot_bits(gm, s, &first);
		ret = (long)bits_take(bits, first, s->size >> GM_PAGE_SHIFT, bitmap, clear);
	}
	pthread_mutex_unlock(&gm->lock);
	return ret;
}

/* ---- logging RAM on and off ---- */

/* Every RAM slot's KVM flags as ram_logging now says. */
static int gm_kvm_relog_ram(struct guest_mem *gm)
{
	int ret = 0;

	for (int id = 0; id < GM_MAX_SLOTS && !ret; id++)
		if (gm->slot[id].size && (gm->slot[id].flags & GM_SLOT_RAM))
			ret = gm_kvm_set(gm, id, true);
	return ret;
}

int gm_dirty_log_start(struct guest_mem *gm)
{
	int ret = 0;

	pthread_mutex_lock(&gm->lock);
	if (gm->ram_logging) {
		ret = -EBUSY;
	} else {
		/* Forget old marks before new ones may land. */
		if (madvise(gm->ram_dirty, gm->ram_dirty_bytes, MADV_DONTNEED))
			memset(gm->ram_dirty, 0, gm->ram_dirty_bytes);
		__atomic_store_n(&gm->ram_logging, true, __ATOMIC_SEQ_CST);
		ret = gm_kvm_relog_ram(gm);
		if (ret) {
			__atomic_store_n(&gm->ram_logging, false, __ATOMIC_SEQ_CST);
			if (gm_kvm_relog_ram(gm))
				kwarn("guest memory: KVM keeps logging dirty pages");
		}
	}
	pthread_mutex_unlock(&gm->lock);
	return ret;
}

void gm_dirty_log_stop(struct guest_mem *gm)
{
	pthread_mutex_lock(&gm->lock);
	if (gm->ram_logging) {
		__atomic_store_n(&gm->ram_logging, false, __ATOMIC_SEQ_CST);
		if (gm_kvm_relog_ram(gm))
			kwarn("guest memory: KVM keeps logging dirty pages");
	}
	pthread_mutex_unlock(&gm->lock);
}
