/* Guest RAM: one lazily-populated host mapping split around the 32-bit PCI hole,
 * and the one bounds-checked accessor every guest-physical access goes through. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "kestrel/guest_mem.h"

/* Guest RAM kept from one boot to the next when the guest reboots in place
 * (--on-reboot restart): the next gm_init of the same shape takes it back
 * instead of mapping fresh memory. Besides saving the map/fault-in, this
 * keeps the host pages behind guest-physical addresses stable across the
 * VM's re-creation, as QEMU's in-place reset does: handing them back to the
 * host kernel and mapping new ones at once corrupted guests and froze the
 * nested test rig (QEMU TCG emulating SVM) within a few dozen reboots. */
static struct {
	void *map;
	uint64_t size;
	bool hugepages, retain_next;
} gm_spare;

void gm_retain_next(bool on)
{
	gm_spare.retain_next = on;
}

/* Zero what the last boot touched: a rebooted guest starts from zeroed RAM
 * as on first boot, and pages it never touched stay unallocated. */
static void gm_zero_resident(uint8_t *map, uint64_t size)
{
	const uint64_t page = 4096, chunk = 1ull << 30;
	static unsigned char vec[(1u << 30) / 4096];

	for (uint64_t off = 0; off < size; off += chunk) {
		uint64_t len = MIN(chunk, size - off);

		if (mincore(map + off, len, vec) < 0) {
			memset(map + off, 0, len); /* cannot tell: zero it all */
			continue;
		}
		for (uint64_t p = 0; p < len / page; p++)
			if (vec[p] & 1)
				memset(map + off + p * page, 0, page);
	}
}

/* The kept mapping if it has this shape (else it is dropped), or NULL. */
static void *gm_take_spare(uint64_t ram_size, bool hugepages)
{
	void *map = gm_spare.map;

	gm_spare.map = NULL;
	if (map && (gm_spare.size != ram_size || gm_spare.hugepages != hugepages)) {
		munmap(map, gm_spare.size);
		map = NULL;
	}
	return map;
}

/* Anonymous memory whose start is 2 MiB-aligned. KVM maps a guest's 2 MiB
 * page with one large page (THP behind it) only where the guest-physical
 * and host-virtual addresses agree modulo 2 MiB; an mmap() that is merely
 * page-aligned (what kernels before 6.7 return) would make every 4 KiB of
 * guest RAM a separate stage-2 fault and TLB entry. */
static void *gm_map_aligned(uint64_t size, int flags)
{
	const uint64_t align = 2ull << 20;
	uint8_t *raw, *start;
	uintptr_t head;

	if (flags & MAP_HUGETLB) /* hugetlbfs mappings come aligned */
		return mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
	raw = mmap(NULL, size + align, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (raw == MAP_FAILED)
		return MAP_FAILED;
	head = (align - ((uintptr_t)raw & (align - 1))) & (align - 1);
	start = raw + head;
	if (head)
		munmap(raw, head);
	munmap(start + size, align - head);
	return start;
}

int gm_init(struct guest_mem *gm, uint64_t ram_size, bool hugepages)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	uint64_t low;

	memset(gm, 0, sizeof(*gm));
	if (ram_size == 0 || ram_size % 4096)
		return -EINVAL;
	gm->map = gm_take_spare(ram_size, hugepages);
	if (!gm->map) {
		if (hugepages)
			flags |= MAP_HUGETLB;
		/* MAP_NORESERVE: pages are allocated on first touch, so a guest
		 * larger than the host's free memory starts as long as it does
		 * not use it all. */
		gm->map = gm_map_aligned(ram_size, flags);
		if (gm->map == MAP_FAILED) {
			gm->map = NULL;
			return -errno;
		}
	}
	gm->map_size = ram_size;
	gm->ram_size = ram_size;
	gm->hugepages = hugepages;
	if (!hugepages)
		madvise(gm->map, ram_size, MADV_HUGEPAGE); /* best effort: fewer TLB misses */

	low = MIN(ram_size, GM_LOWMEM_MAX);
	gm->r[0] = (struct gm_region){ .gpa = 0, .size = low, .hva = gm->map };
	gm->nr = 1;
	if (ram_size > low) {
		gm->r[1] = (struct gm_region){ .gpa = GM_HIGHMEM_BASE, .size = ram_size - low,
					       .hva = (uint8_t *)gm->map + low };
		gm->nr = 2;
	}
	return 0;
}

void gm_destroy(struct guest_mem *gm)
{
	if (gm->map && gm_spare.retain_next && !gm_spare.map) {
		gm_zero_resident(gm->map, gm->map_size);
		gm_spare.map = gm->map;
		gm_spare.size = gm->map_size;
		gm_spare.hugepages = gm->hugepages;
	} else if (gm->map) {
		munmap(gm->map, gm->map_size);
	}
	gm_spare.retain_next = false;
	memset(gm, 0, sizeof(*gm));
}

void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < gm->nr; i++) {
		const struct gm_region *r = &gm->r[i];
		uint64_t off;

		if (gpa < r->gpa)
			continue;
		off = gpa - r->gpa;
		/* Written so that no sum can wrap: off <= size and len <= size - off. */
		if (off > r->size || len > r->size - off)
			continue;
		return r->hva + off;
	}
	return NULL;
}

int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	return 0;
}

/* Placeholder until dirty tracking lands (issue 10): nothing reads it yet. */
void gm_mark_dirty(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	(void)gm;
	(void)gpa;
	(void)len;
}
