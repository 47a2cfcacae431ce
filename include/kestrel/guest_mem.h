/* Guest physical memory: the one accessor every guest-physical access goes through. */
#ifndef KESTREL_GUEST_MEM_H
#define KESTREL_GUEST_MEM_H

#include <stdbool.h>
#include <stdint.h>
#include "kestrel/util.h"

/* Board memory map (x86 PC): RAM below the PCI hole, the hole for 32-bit MMIO
 * (PCI BARs, IOAPIC, LAPIC, HPET), RAM again from 4 GiB. */
#define GM_LOWMEM_MAX   0xC0000000ULL   /* 3 GiB: start of the 32-bit PCI hole */
#define GM_HIGHMEM_BASE 0x100000000ULL  /* 4 GiB */
#define GM_MAX_REGIONS  4

struct gm_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct guest_mem {
	struct gm_region r[GM_MAX_REGIONS];
	int nr;
	uint64_t ram_size;   /* total RAM bytes, all regions */
	void *map;           /* the single host mapping backing all regions */
	uint64_t map_size;
	bool hugepages;
};

/* Map RAM lazily (MAP_NORESERVE) and lay it out around the PCI hole.
 * hugepages: back with MAP_HUGETLB. 0 or -errno. */
int gm_init(struct guest_mem *gm, uint64_t ram_size, bool hugepages) WARN_UNUSED;
void gm_destroy(struct guest_mem *gm);
/* on: the next gm_destroy keeps the mapping, zeroing the pages the guest
 * touched, for the next gm_init of the same size (a guest reboot in place). */
void gm_retain_next(bool on);

/* Host pointer for [gpa, gpa+len) if the whole range lies inside one RAM
 * region, else NULL. Overflow-safe; len 0 is valid inside RAM. */
void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
/* Copy in/out; 0 or -EFAULT when any byte is outside RAM. */
int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len) WARN_UNUSED;
int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len) WARN_UNUSED;
/* Record that the VMM itself wrote [gpa, gpa+len) (device DMA through a
 * pointer from gm_ptr, loaders): KVM's dirty log sees only the guest's own
 * writes. Bytes outside RAM are ignored. gm_write marks what it writes. */
void gm_mark_dirty(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

#endif
