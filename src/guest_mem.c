/* Guest RAM: one lazily-populated host mapping split around the 32-bit PCI hole,
 * and the one bounds-checked accessor every guest-physical access goes through. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "kestrel/guest_mem.h"

int gm_init(struct guest_mem *gm, uint64_t ram_size, bool hugepages)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	uint64_t low;

	memset(gm, 0, sizeof(*gm));
	if (ram_size == 0 || ram_size % 4096)
		return -EINVAL;
	if (hugepages)
		flags |= MAP_HUGETLB;
	/* MAP_NORESERVE: pages are allocated on first touch, so a guest larger
	 * than the host's free memory starts as long as it does not use it all. */
	gm->map = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (gm->map == MAP_FAILED) {
		gm->map = NULL;
		return -errno;
	}
	gm->map_size = ram_size;
	gm->ram_size = ram_size;
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
	if (gm->map)
		munmap(gm->map, gm->map_size);
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
