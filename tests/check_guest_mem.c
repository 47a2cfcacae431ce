/* Guest memory: the PC layout and its holes, the bounds-checked accessor,
 * the slot API (add, remove, move, read-only with a sink, overlap and limit
 * refusal), dirty tracking (the VMM's marks merged with KVM's log, kept with
 * the memory across slot changes), lock-free lookups racing slot changes,
 * and, where /dev/kvm works, all of it against a real vCPU. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kestrel/board.h"
#include "kestrel/device.h"
#include "kestrel/guest_mem.h"
#include "check_util.h"

#define PAGE GM_PAGE_SIZE

/* A device that records the writes it gets (a read-only slot's sink). */
struct rec_dev {
	struct device dev;
	unsigned n;
	int region;
	uint64_t off, val;
	unsigned size;
};

static void rec_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct rec_dev *r = (struct rec_dev *)dev;

	r->n++;
	r->region = region;
	r->off = off;
	r->size = size;
	r->val = val;
}

static const struct dev_ops rec_ops = { .name = "rec", .write = rec_write };

static int slot_named(struct guest_mem *gm, const char *name, struct gm_slot_info *out)
{
	struct gm_slot_info all[GM_MAX_SLOTS];
	int n = gm_slots(gm, all, GM_MAX_SLOTS);

	for (int i = 0; i < n; i++)
		if (strcmp(all[i].name, name) == 0) {
			*out = all[i];
			return all[i].id;
		}
	return -ENOENT;
}

static int dev_slot(struct guest_mem *gm, uint64_t gpa, uint64_t size, unsigned flags)
{
	return gm_slot_add(gm, &(struct gm_slot_spec){
				       .name = "dev", .gpa = gpa, .size = size, .flags = flags });
}

/* Bit i of a fetched bitmap. */
static bool bit(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

/* ---- layout ---- */

START_TEST(layout_small)
{
	struct guest_mem gm;
	struct gm_slot_info all[GM_MAX_SLOTS];
	static const struct {
		const char *name;
		uint64_t gpa, size;
	} want[] = {
		{ "ram-low", 0, 0xa0000 },
		{ "ram-rom-area", 0xc0000, 0x30000 },
		{ "bios", 0xf0000, 0x10000 },
		{ "ram", 0x100000, MiB(512) - 0x100000 },
	};

	ck_assert_int_eq(gm_init(&gm, MiB(512), false), 0);
	ck_assert_uint_eq(gm.ram_low, MiB(512));
	ck_assert_uint_eq(gm.ram_high, 0);
	ck_assert_int_eq(gm_slots(&gm, all, GM_MAX_SLOTS), 4);
	for (int i = 0; i < 4; i++) {
		ck_assert_str_eq(all[i].name, want[i].name);
		ck_assert_uint_eq(all[i].gpa, want[i].gpa);
		ck_assert_uint_eq(all[i].size, want[i].size);
		ck_assert_uint_eq(all[i].flags, GM_SLOT_RAM);
		ck_assert_uint_eq(all[i].ram_offset, want[i].gpa); /* offset == address */
	}
	/* The VGA window is a hole: MMIO, not RAM. */
	ck_assert_ptr_nonnull(gm_ptr(&gm, BOARD_VGA_WINDOW - 1, 1));
	ck_assert_ptr_null(gm_ptr(&gm, BOARD_VGA_WINDOW, 1));
	ck_assert_ptr_null(gm_ptr(&gm, 0xb8000, 2));
	ck_assert_ptr_null(gm_ptr(&gm, BOARD_VGA_WINDOW_END - 1, 1));
	ck_assert_ptr_null(gm_ptr(&gm, BOARD_VGA_WINDOW - 4, 8)); /* straddles into it */
	ck_assert_int_eq(gm_slot_at(&gm, 0xb8000), -ENOENT);
	ck_assert_ptr_eq(gm_ptr(&gm, BOARD_VGA_WINDOW_END, 1),
			 (uint8_t *)gm.map + BOARD_VGA_WINDOW_END);
	/* Slots meet at 0xf0000 and 1 MiB; one access stays inside one slot. */
	ck_assert_ptr_null(gm_ptr(&gm, 0xfffff, 2));
	ck_assert_ptr_nonnull(gm_ptr(&gm, 0x100000, MiB(511)));
	gm_destroy(&gm);
}
END_TEST

START_TEST(layout_hole)
{
	struct guest_mem gm;
	struct gm_slot_info hi;

	ck_assert_int_eq(gm_init(&gm, GiB(6), false), 0);
	ck_assert_uint_eq(gm.ram_low, GM_LOWMEM_MAX);
	ck_assert_uint_eq(gm.ram_high, GiB(6) - GM_LOWMEM_MAX);
	ck_assert_int_ge(slot_named(&gm, "ram-high", &hi), 0);
	ck_assert_uint_eq(hi.gpa, GM_HIGHMEM_BASE);
	ck_assert_uint_eq(hi.ram_offset, GM_LOWMEM_MAX);
	/* The PCI hole is not RAM. */
	ck_assert_ptr_null(gm_ptr(&gm, GM_LOWMEM_MAX, 1));
	ck_assert_ptr_null(gm_ptr(&gm, 0xfee00000, 4));
	ck_assert_ptr_eq(gm_ptr(&gm, GM_HIGHMEM_BASE, 4096), (uint8_t *)gm.map + GM_LOWMEM_MAX);
	ck_assert_ptr_nonnull(gm_ptr(&gm, GM_HIGHMEM_BASE + gm.ram_high - 1, 1));
	ck_assert_ptr_null(gm_ptr(&gm, GM_HIGHMEM_BASE + gm.ram_high, 1));
	gm_destroy(&gm);
}
END_TEST

/* Less than 1 MiB: the pieces below it, clipped. */
START_TEST(layout_tiny)
{
	struct guest_mem gm;
	struct gm_slot_info all[GM_MAX_SLOTS];

	ck_assert_int_eq(gm_init(&gm, KiB(512), false), 0);
	ck_assert_int_eq(gm_slots(&gm, all, GM_MAX_SLOTS), 1);
	ck_assert_uint_eq(all[0].size, KiB(512));
	gm_destroy(&gm);
	ck_assert_int_eq(gm_init(&gm, KiB(800), false), 0);
	ck_assert_int_eq(gm_slots(&gm, all, GM_MAX_SLOTS), 2);
	ck_assert_uint_eq(all[1].gpa, 0xc0000);
	ck_assert_uint_eq(all[1].size, KiB(800) - 0xc0000);
	gm_destroy(&gm);
}
END_TEST

START_TEST(lazy_64g)
{
	/* MAP_NORESERVE: a guest larger than this host's RAM must map. */
	struct guest_mem gm;

	ck_assert_int_eq(gm_init(&gm, GiB(64), false), 0);
	ck_assert_uint_eq(gm.ram_size, GiB(64));
	gm_destroy(&gm);
}
END_TEST

START_TEST(bounds)
{
	struct guest_mem gm;
	uint8_t buf[16] = { 1, 2, 3 };

	ck_assert_int_eq(gm_init(&gm, MiB(16), false), 0);
	ck_assert_ptr_nonnull(gm_ptr(&gm, MiB(1), MiB(15)));
	ck_assert_ptr_null(gm_ptr(&gm, MiB(1), MiB(15) + 1));
	ck_assert_ptr_null(gm_ptr(&gm, MiB(16) - 8, 16));    /* straddles the end */
	ck_assert_ptr_null(gm_ptr(&gm, UINT64_MAX - 4, 16)); /* gpa + len wraps */
	ck_assert_ptr_null(gm_ptr(&gm, 8, UINT64_MAX));	     /* len alone huge */
	ck_assert_ptr_nonnull(gm_ptr(&gm, MiB(16), 0));	     /* empty range at the end */
	ck_assert_ptr_null(gm_ptr(&gm, MiB(16) + 1, 0));
	ck_assert_int_eq(gm_write(&gm, MiB(16) - 3, buf, 3), 0);
	ck_assert_int_eq(gm_write(&gm, MiB(16) - 2, buf, 3), -EFAULT);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(gm_read(&gm, MiB(16) - 3, buf, 3), 0);
	ck_assert_int_eq(buf[0], 1);
	ck_assert_int_eq(buf[2], 3);
	/* The RAM backing by offset, holes included. */
	ck_assert_ptr_eq(gm_ram_ptr(&gm, 0xa0000, 0x60000), (uint8_t *)gm.map + 0xa0000);
	ck_assert_ptr_null(gm_ram_ptr(&gm, MiB(16) - 1, 2));
	ck_assert_ptr_null(gm_ram_ptr(&gm, 1, UINT64_MAX));
	gm_destroy(&gm);
}
END_TEST

/* A reboot in place keeps the mapping, zeroed where the guest wrote; a
 * different shape, or no retain request, maps afresh. */
START_TEST(retain_for_restart)
{
	struct guest_mem gm;
	uint8_t *p;
	void *first;

	ck_assert_int_eq(gm_init(&gm, MiB(64), false), 0);
	first = gm.map;
	p = gm_ptr(&gm, MiB(3) + 5, 1);
	ck_assert_ptr_nonnull(p);
	*p = 0xa5;
	gm_retain_next(true);
	gm_destroy(&gm);
	ck_assert_int_eq(gm_init(&gm, MiB(64), false), 0);
	ck_assert_ptr_eq(gm.map, first);
	{
		/* The same host page, still resident (fresh memory would not be). */
		unsigned char v = 0;

		ck_assert_int_eq(mincore((uint8_t *)gm.map + MiB(3), 4096, &v), 0);
		ck_assert_uint_eq(v & 1, 1);
	}
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, MiB(3) + 5, 1), 0);
	/* Without a retain request the next destroy unmaps. */
	gm_destroy(&gm);
	ck_assert_int_eq(gm_init(&gm, MiB(64), false), 0);
	gm_retain_next(true);
	gm_destroy(&gm);
	/* A spare of another size is dropped, not reused. */
	ck_assert_int_eq(gm_init(&gm, MiB(32), false), 0);
	ck_assert_uint_eq(gm.ram_size, MiB(32));
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, MiB(3) + 5, 1), 0);
	gm_destroy(&gm);
}
END_TEST

/* RAM starts on a 2 MiB boundary whatever mmap() would have picked, so KVM
 * can back guest 2 MiB pages with host huge pages; the region past it is
 * not ours any more. Small mappings in between shift where mmap() lands. */
START_TEST(aligned_2m)
{
	void *pad[8];

	for (int i = 0; i < 8; i++) {
		struct guest_mem gm;
		uint8_t *end;
		unsigned char v;

		pad[i] = mmap(NULL, 4096 * (size_t)(i + 1), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
			      -1, 0);
		ck_assert_ptr_ne(pad[i], MAP_FAILED);
		ck_assert_int_eq(gm_init(&gm, MiB(6) + 4096 * (uint64_t)i, false), 0);
		ck_assert_uint_eq((uintptr_t)gm.map & (MiB(2) - 1), 0);
		end = (uint8_t *)gm.map + gm.map_size;
		end[-1] = 1; /* the last byte is mapped */
		/* mincore fails with ENOMEM on an unmapped page. */
		if (((uintptr_t)end & (MiB(2) - 1)) != 0)
			ck_assert_int_eq(mincore(end, 4096, &v), -1);
		gm_destroy(&gm);
	}
	for (int i = 0; i < 8; i++)
		munmap(pad[i], 4096 * (size_t)(i + 1));
}
END_TEST

START_TEST(bad_sizes)
{
	struct guest_mem gm;

	ck_assert_int_eq(gm_init(&gm, 0, false), -EINVAL);
	ck_assert_int_eq(gm_init(&gm, 4097, false), -EINVAL);
	gm_destroy(&gm); /* harmless after a failed init */
}
END_TEST

/* ---- slots ---- */

START_TEST(slot_add_remove)
{
	struct guest_mem gm;
	struct gm_slot_info in;
	uint8_t *mem;
	int id;

	ck_assert_int_eq(gm_init(&gm, MiB(16), false), 0);
	/* Device memory the slot maps itself (a framebuffer BAR). */
	id = dev_slot(&gm, 0xd0000000, KiB(64), 0);
	ck_assert_int_ge(id, 0);
	ck_assert_int_eq(gm_slot_at(&gm, 0xd0000000), id);
	ck_assert_int_eq(gm_slot_at(&gm, 0xd000ffff), id);
	ck_assert_int_eq(gm_slot_at(&gm, 0xd0010000), -ENOENT);
	ck_assert_int_eq(gm_slot_get(&gm, id, &in), 0);
	ck_assert_str_eq(in.name, "dev");
	ck_assert_ptr_nonnull(in.hva);
	mem = in.hva;
	mem[KiB(64) - 1] = 1; /* mapped, writable, zeroed */
	ck_assert_uint_eq(mem[0], 0);
	/* Device DMA never reaches device memory. */
	ck_assert_ptr_null(gm_ptr(&gm, 0xd0000000, 1));
	ck_assert_int_eq(gm_write(&gm, 0xd0000000, "x", 1), -EFAULT);
	ck_assert_int_eq(gm_slot_remove(&gm, id), 0);
	ck_assert_int_eq(gm_slot_at(&gm, 0xd0000000), -ENOENT);
	ck_assert_int_eq(gm_slot_remove(&gm, id), -ENOENT);
	ck_assert_int_eq(gm_slot_get(&gm, id, &in), -ENOENT);
	ck_assert_int_eq(gm_slot_remove(&gm, -1), -ENOENT);
	ck_assert_int_eq(gm_slot_remove(&gm, GM_MAX_SLOTS), -ENOENT);
	/* A caller's memory is mapped as it is. */
	mem = mmap(NULL, KiB(8), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	id = gm_slot_add(&gm,
			 &(struct gm_slot_spec){ .gpa = 0xd0000000, .size = KiB(8), .hva = mem });
	ck_assert_int_ge(id, 0);
	ck_assert_int_eq(gm_slot_get(&gm, id, &in), 0);
	ck_assert_ptr_eq(in.hva, mem);
	ck_assert_int_eq(gm_slot_remove(&gm, id), 0);
	mem[0] = 1; /* still the caller's */
	munmap(mem, KiB(8));
	gm_destroy(&gm);
}
END_TEST

START_TEST(slot_refusals)
{
	struct guest_mem gm;
	uint8_t *odd;
	int ids[GM_MAX_SLOTS], n = 0, id;

	ck_assert_int_eq(gm_init(&gm, MiB(16), false), 0);
	odd = (uint8_t *)gm.map + 8;
	/* Overlaps with RAM, and with the RAM around the VGA hole. */
	ck_assert_int_eq(dev_slot(&gm, 0x1000, PAGE, 0), -EEXIST);
	ck_assert_int_eq(dev_slot(&gm, 0x9f000, 2 * PAGE, 0), -EEXIST);
	ck_assert_int_eq(dev_slot(&gm, 0xbf000, 2 * PAGE, 0), -EEXIST);
	ck_assert_int_eq(dev_slot(&gm, MiB(15), MiB(2), 0), -EEXIST);
	/* The hole itself is free: VGA may map memory there. */
	id = dev_slot(&gm, BOARD_VGA_WINDOW, BOARD_VGA_WINDOW_END - BOARD_VGA_WINDOW, 0);
	ck_assert_int_ge(id, 0);
	ck_assert_int_eq(dev_slot(&gm, 0xb0000, PAGE, 0), -EEXIST);
	ck_assert_int_eq(gm_slot_remove(&gm, id), 0);
	/* Shapes. */
	ck_assert_int_eq(dev_slot(&gm, 0xd0000000, 0, 0), -EINVAL);
	ck_assert_int_eq(dev_slot(&gm, 0xd0000800, PAGE, 0), -EINVAL);
	ck_assert_int_eq(dev_slot(&gm, 0xd0000000, PAGE + 1, 0), -EINVAL);
	ck_assert_int_eq(dev_slot(&gm, UINT64_MAX - PAGE + 1, 2 * PAGE, 0), -EINVAL); /* wraps */
	ck_assert_int_eq(dev_slot(&gm, 0xd0000000, PAGE, 1u << 7), -EINVAL);
	ck_assert_int_eq(
		gm_slot_add(&gm,
			    &(struct gm_slot_spec){ .gpa = 0xd0000000, .size = PAGE, .hva = odd }),
		-EINVAL);
	ck_assert_int_eq(gm_slot_add(&gm, &(struct gm_slot_spec){ .gpa = 0xd0000000,
								  .size = 2 * PAGE,
								  .flags = GM_SLOT_RAM,
								  .ram_offset = MiB(16) - PAGE }),
			 -EINVAL);
	ck_assert_int_eq(gm_slot_add(&gm,
				     &(struct gm_slot_spec){ .gpa = 0xd0000000,
							     .size = PAGE,
							     .flags = GM_SLOT_RAM,
							     .ram_offset = UINT64_MAX - PAGE + 1 }),
			 -EINVAL);
	/* The last page of the address space is a valid place. */
	id = dev_slot(&gm, UINT64_MAX - PAGE + 1, PAGE, 0);
	ck_assert_int_ge(id, 0);
	ck_assert_int_eq(gm_slot_at(&gm, UINT64_MAX), id);
	ck_assert_int_eq(gm_slot_remove(&gm, id), 0);
	/* Ids run out; a freed one is reused. */
	while ((id = dev_slot(&gm, 0xd0000000 + (uint64_t)n * PAGE, PAGE, 0)) >= 0)
		ids[n++] = id;
	ck_assert_int_eq(id, -ENOSPC);
	ck_assert_int_eq(n, GM_MAX_SLOTS - 4); /* the layout holds 4 */
	ck_assert_int_eq(gm_slot_remove(&gm, ids[3]), 0);
	ck_assert_int_eq(dev_slot(&gm, 0xe0000000, PAGE, 0), ids[3]);
	gm_destroy(&gm); /* frees what the slots mapped */
}
END_TEST

START_TEST(slot_move)
{
	struct guest_mem gm;
	struct gm_slot_info in, rom;
	uint8_t *mem;
	int id, rid;

	ck_assert_int_eq(gm_init(&gm, MiB(16), false), 0);
	id = dev_slot(&gm, 0xd0000000, KiB(16), 0);
	ck_assert_int_eq(gm_slot_get(&gm, id, &in), 0);
	mem = in.hva;
	mem[5] = 0x5a;
	ck_assert_int_eq(gm_slot_move(&gm, id, 0xe0000000), 0);
	ck_assert_int_eq(gm_slot_at(&gm, 0xd0000000), -ENOENT);
	ck_assert_int_eq(gm_slot_at(&gm, 0xe0003fff), id); /* same id */
	ck_assert_int_eq(gm_slot_get(&gm, id, &in), 0);
	ck_assert_ptr_eq(in.hva, mem); /* same memory */
	ck_assert_uint_eq(mem[5], 0x5a);
	ck_assert_int_eq(gm_slot_move(&gm, id, 0xe0000000), 0);	  /* no-op */
	ck_assert_int_eq(gm_slot_move(&gm, id, MiB(8)), -EEXIST); /* onto RAM */
	ck_assert_int_eq(gm_slot_move(&gm, id, 0xe0000100), -EINVAL);
	ck_assert_int_eq(gm_slot_move(&gm, id, UINT64_MAX - PAGE + 1), -EINVAL);
	ck_assert_int_eq(gm_slot_move(&gm, 31, 0xf0000000), -ENOENT);
	ck_assert_int_eq(gm_slot_at(&gm, 0xe0000000), id); /* refusals changed nothing */
	/* A RAM slot moves with its RAM, and DMA follows it. */
	rid = slot_named(&gm, "ram-rom-area", &rom);
	ck_assert_int_eq(gm_slot_move(&gm, rid, 0xd0000000), 0);
	ck_assert_ptr_eq(gm_ptr(&gm, 0xd0000000, rom.size), (uint8_t *)gm.map + 0xc0000);
	ck_assert_ptr_null(gm_ptr(&gm, 0xc0000, 1));
	/* Slots sort by address whatever the order of their ids. */
	ck_assert_int_eq(gm_slot_move(&gm, rid, 0xc0000), 0);
	ck_assert_int_eq(gm_slot_at(&gm, 0xc0000), rid);
	ck_assert_int_eq(gm_slot_at(&gm, 0xe0000000), id);
	gm_destroy(&gm);
}
END_TEST

/* A read-only slot: reads are memory, DMA is refused, guest writes go to the
 * sink with the offset inside the slot, and are counted. */
START_TEST(slot_readonly)
{
	struct guest_mem gm;
	struct rec_dev rec = { 0 };
	struct gm_slot_info bios;
	uint32_t v = 0x11223344, w = 0;
	int id;

	device_init(&rec.dev, &rec_ops);
	ck_assert_int_eq(gm_init(&gm, MiB(16), false), 0);
	id = slot_named(&gm, "bios", &bios);
	ck_assert_int_ge(id, 0);
	memcpy(gm_ram_ptr(&gm, 0xf0010, 4), "ROM!", 4);
	ck_assert_int_eq(gm_slot_set_flags(&gm, id, GM_SLOT_RAM | GM_SLOT_READONLY, &rec.dev, 3),
			 0);
	ck_assert_ptr_null(gm_ptr(&gm, 0xf0010, 4));
	ck_assert_int_eq(gm_write(&gm, 0xf0010, &v, 4), -EFAULT);
	ck_assert_int_eq(gm_read(&gm, 0xf0010, &w, 4), -EFAULT);
	ck_assert_int_eq(memcmp(gm_ram_ptr(&gm, 0xf0010, 4), "ROM!", 4), 0);
	ck_assert(gm_mmio_write(&gm, 0xf0010, &v, 4));
	ck_assert_uint_eq(rec.n, 1);
	ck_assert_int_eq(rec.region, 3);
	ck_assert_uint_eq(rec.off, 0x10);
	ck_assert_uint_eq(rec.size, 4);
	ck_assert_uint_eq(rec.val, 0x11223344);
	ck_assert(gm_mmio_write(&gm, 0xfffff, &v, 1));
	ck_assert_uint_eq(rec.off, 0xffff);
	ck_assert_uint_eq(rec.val, 0x44);
	ck_assert_int_eq(gm_slot_get(&gm, id, &bios), 0);
	ck_assert_uint_eq(bios.writes, 2);
	/* Not a read-only slot: the bus's business. */
	ck_assert(!gm_mmio_write(&gm, 0x100000, &v, 4));
	ck_assert(!gm_mmio_write(&gm, 0xb8000, &v, 4));
	ck_assert(!gm_mmio_write(&gm, 0xfee00000, &v, 4));
	ck_assert_uint_eq(rec.n, 2);
	/* No sink: dropped, still counted. */
	ck_assert_int_eq(gm_slot_set_flags(&gm, id, GM_SLOT_RAM | GM_SLOT_READONLY, NULL, 0), 0);
	ck_assert(gm_mmio_write(&gm, 0xf0000, &v, 2));
	ck_assert_uint_eq(rec.n, 2);
	ck_assert_int_eq(gm_slot_get(&gm, id, &bios), 0);
	ck_assert_uint_eq(bios.writes, 3);
	/* Read-write again (PAM: shadow RAM writable). */
	ck_assert_int_eq(gm_slot_set_flags(&gm, id, GM_SLOT_RAM, NULL, 0), 0);
	ck_assert_int_eq(gm_read(&gm, 0xf0010, &w, 4), 0);
	ck_assert_int_eq(memcmp(&w, "ROM!", 4), 0);
	ck_assert(!gm_mmio_write(&gm, 0xf0010, &v, 4));
	/* The RAM flag is what the slot maps: not changeable. */
	ck_assert_int_eq(gm_slot_set_flags(&gm, id, GM_SLOT_READONLY, NULL, 0), -EINVAL);
	ck_assert_int_eq(gm_slot_set_flags(&gm, id, GM_SLOT_RAM | 0x100, NULL, 0), -EINVAL);
	ck_assert_int_eq(gm_slot_set_flags(&gm, 29, GM_SLOT_RAM, NULL, 0), -ENOENT);
	gm_destroy(&gm);
}
END_TEST

/* ---- dirty tracking (the VMM's own marks; KVM's log in the kvm case) ---- */

START_TEST(dirty_marks)
{
	struct guest_mem gm;
	struct gm_slot_info ram;
	uint64_t bm[MiB(16) / PAGE / 64];
	uint8_t buf[3] = { 1, 2, 3 };
	struct iovec iov[2];
	int id;

	ck_assert_int_eq(gm_init(&gm, MiB(16), false), 0);
	id = slot_named(&gm, "ram", &ram);
	/* Not logging: nothing to fetch, marks cost nothing. */
	ck_assert(!gm_dirty_logging(&gm));
	ck_assert_int_eq(gm_dirty_fetch(&gm, id, bm, MiB(16) / PAGE, true), -EINVAL);
	ck_assert_int_eq(gm_write(&gm, 0x200000, buf, 1), 0);
	ck_assert_int_eq(gm_dirty_log_start(&gm), 0);
	ck_assert_int_eq(gm_dirty_log_start(&gm), -EBUSY);
	ck_assert(gm_dirty_logging(&gm));
	ck_assert_int_eq(gm_dirty_fetch(&gm, id, bm, MiB(16) / PAGE, false), 0);
	/* gm_write marks each page it touches. */
	ck_assert_int_eq(gm_write(&gm, 0x200000, buf, 1), 0);
	ck_assert_int_eq(gm_write(&gm, 0x203fff, buf, 2), 0);
	ck_assert_int_eq(gm_dirty_fetch(&gm, id, bm, 16, false), -ENOSPC);
	ck_assert_int_eq(gm_dirty_fetch(&gm, id, bm, MiB(16) / PAGE, false), 3);
	ck_assert(bit(bm, 0x100) && bit(bm, 0x103) && bit(bm, 0x104));
	ck_assert(!bit(bm, 0x101) && !bit(bm, 0xff) && !bit(bm, 0x105));
	/* Without clear they stay; with it they go. */
	ck_assert_int_eq(gm_dirty_fetch(&gm, id, bm, MiB(16) / PAGE, true), 3);
	ck_assert_int_eq(gm_dirty_fetch(&gm, id, bm, MiB(16) / PAGE, true), 0);
	ck_assert_uint_eq(bm[4], 0);
	/* DMA through pointers: by address, by host pointer, by scatter list. */
	gm_mark_dirty(&gm, 0x300010, 1);
	gm_mark_dirty_hva(&gm, gm_ptr(&gm, 0x400000, PAGE), PAGE);
	iov[0] = (struct iovec){ gm_ptr(&gm, 0x500000, 100), 100 };
	iov[1] = (struct iovec){ gm_ptr(&gm, 0x600ff0, 0x20), 0x20 };
	gm_mark_dirty_iov(&gm, iov, 2, 100 + 0x10); /* 0x600ff0..0x600fff: one page */
	ck_assert_int_eq(gm_dirty_fetch(&gm, id, bm, MiB(16) / PAGE, true), 4);
	ck_assert(bit(bm, 0x200) && bit(bm, 0x300) && bit(bm, 0x400) && bit(bm, 0x500));
	/* Outside RAM and overflowing ranges are ignored; ranges over two slots
	 * mark both; a range that runs into a hole stops there. */
	gm_mark_dirty(&gm, 0xb8000, 100);
	gm_mark_dirty(&gm, UINT64_MAX - 10, 100);
	gm_mark_dirty(&gm, 0xff000, 0x2000);
	gm_mark_dirty_hva(&gm, (uint8_t *)gm.map + gm.map_size, 10);
	gm_mark_dirty_hva(&gm, (uint8_t *)gm.map + gm.map_size - 1, UINT64_MAX);
	ck_assert_int_eq(gm_dirty_fetch(&gm, id, bm, MiB(16) / PAGE, true), 2);
	ck_assert(bit(bm, 0) && bit(bm, MiB(15) / PAGE - 1));
	ck_assert_int_eq(gm_dirty_fetch(&gm, slot_named(&gm, "bios", &ram), bm, 16, true), 1);
	ck_assert(bit(bm, 15));
	gm_mark_dirty(&gm, 0x9f800, 0x10000);
	ck_assert_int_eq(gm_dirty_fetch(&gm, slot_named(&gm, "ram-low", &ram), bm, 160, true), 1);
	ck_assert(bit(bm, 0x9f));
	/* Stop: marks are no longer kept, a new start begins empty. */
	gm_dirty_log_stop(&gm);
	ck_assert_int_eq(gm_write(&gm, 0x200000, buf, 1), 0);
	ck_assert_int_eq(gm_dirty_log_start(&gm), 0);
	ck_assert_int_eq(gm_dirty_fetch(&gm, id, bm, MiB(16) / PAGE, true), 0);
	gm_dirty_log_stop(&gm);
	gm_dirty_log_stop(&gm);
	gm_destroy(&gm);
}
END_TEST

/* The bits belong to the memory: an alias of the same RAM (mapped at a RAM
 * offset that is not a multiple of 64 pages, so bits cross words) sees what
 * was written through the other mapping, and clearing through one clears it
 * for both. */
START_TEST(dirty_alias_shifts)
{
	struct guest_mem gm;
	struct gm_slot_info ram;
	uint64_t bm[MiB(16) / PAGE / 64];
	int alias, id;

	ck_assert_int_eq(gm_init(&gm, MiB(16), false), 0);
	id = slot_named(&gm, "ram", &ram);
	alias = gm_slot_add(&gm, &(struct gm_slot_spec){ .name = "alias",
							 .gpa = 0xd0000000,
							 .size = 64 * PAGE,
							 .flags = GM_SLOT_RAM,
							 .ram_offset = 0x1f0000 });
	ck_assert_int_ge(alias, 0);
	ck_assert_int_eq(gm_dirty_log_start(&gm), 0);
	gm_mark_dirty(&gm, 0x1f0000, 1);	/* alias page 0 (RAM page 496) */
	gm_mark_dirty(&gm, 0x1ff000, 2 * PAGE); /* alias pages 15, 16: across a word */
	gm_mark_dirty(&gm, 0x22f000, 2 * PAGE); /* alias page 63, and past its end */
	ck_assert_int_eq(gm_dirty_fetch(&gm, alias, bm, 64, false), 4);
	ck_assert_uint_eq(bm[0], 1ULL | 1ULL << 15 | 1ULL << 16 | 1ULL << 63);
	ck_assert_int_eq(gm_dirty_fetch(&gm, alias, bm, 64, true), 4);
	/* Through the other mapping only the page past the alias is left. */
	ck_assert_int_eq(gm_dirty_fetch(&gm, id, bm, MiB(16) / PAGE, true), 1);
	ck_assert(bit(bm, (0x230000 - MiB(1)) / PAGE));
	gm_destroy(&gm);
}
END_TEST

/* Slot changes never lose a mark: a removed RAM slot's range counts as
 * dirty when it comes back (PAM remapping shadow RAM while logging); a moved
 * device slot keeps its bitmap and is wholly dirty after the move. */
START_TEST(dirty_across_changes)
{
	struct guest_mem gm;
	struct gm_slot_info rom;
	uint64_t bm[64];
	int rid, fb;

	ck_assert_int_eq(gm_init(&gm, MiB(16), false), 0);
	rid = slot_named(&gm, "ram-rom-area", &rom);
	ck_assert_int_eq(gm_dirty_log_start(&gm), 0);
	ck_assert_int_eq(gm_slot_remove(&gm, rid), 0);
	rid = gm_slot_add(&gm, &(struct gm_slot_spec){ .name = "shadow",
						       .gpa = 0xc0000,
						       .size = rom.size,
						       .flags = GM_SLOT_RAM,
						       .ram_offset = 0xc0000 });
	ck_assert_int_ge(rid, 0);
	ck_assert_int_eq(gm_dirty_fetch(&gm, rid, bm, 64, true), (long)(rom.size / PAGE));
	ck_assert_int_eq(gm_slot_set_flags(&gm, rid, GM_SLOT_RAM | GM_SLOT_READONLY, NULL, 0), 0);
	ck_assert_int_eq(gm_dirty_fetch(&gm, rid, bm, 64, true), (long)(rom.size / PAGE));
	/* A logged device slot: its owner's marks, kept across a move. */
	fb = dev_slot(&gm, 0xd0000000, 8 * PAGE, GM_SLOT_LOG_DIRTY);
	ck_assert_int_ge(fb, 0);
	ck_assert_int_eq(gm_dirty_fetch(&gm, fb, bm, 8, true), 0);
	gm_slot_mark_dirty(&gm, fb, 2 * PAGE + 5, 1);
	gm_slot_mark_dirty(&gm, fb, 7 * PAGE, 100 * PAGE); /* clipped */
	gm_slot_mark_dirty(&gm, fb, 8 * PAGE, 1);	   /* outside */
	gm_slot_mark_dirty(&gm, 30, 0, 1);		   /* no such slot */
	ck_assert_int_eq(gm_dirty_fetch(&gm, fb, bm, 8, true), 2);
	ck_assert_uint_eq(bm[0], 1u << 2 | 1u << 7);
	ck_assert_int_eq(gm_slot_move(&gm, fb, 0xe0000000), 0);
	ck_assert_int_eq(gm_dirty_fetch(&gm, fb, bm, 8, true), 8);
	/* A device slot is logged whatever RAM does; others are not. */
	gm_dirty_log_stop(&gm);
	ck_assert_int_eq(gm_dirty_fetch(&gm, fb, bm, 8, true), 0);
	ck_assert_int_eq(gm_dirty_fetch(&gm, rid, bm, 64, true), -EINVAL);
	ck_assert_int_eq(gm_dirty_fetch(&gm, dev_slot(&gm, 0xf0000000, PAGE, 0), bm, 64, true),
			 -EINVAL);
	ck_assert_int_eq(gm_dirty_fetch(&gm, -3, bm, 64, true), -ENOENT);
	ck_assert_int_eq(gm_dirty_fetch(&gm, 28, bm, 64, true), -ENOENT);
	gm_destroy(&gm);
}
END_TEST

/* ---- lookups racing slot changes ---- */

struct race {
	struct guest_mem *gm;
	int rid;
	bool stop;
	unsigned long bad, looked;
};

static void *race_reader(void *arg)
{
	struct race *r = arg;
	uint8_t *base = r->gm->map;
	unsigned long bad = 0, looked = 0;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		uint8_t *p = gm_ptr(r->gm, 0x100000, PAGE);
		uint8_t *q = gm_ptr(r->gm, 0xc1000, 8);

		/* The big slot never changes; the other is there or not, never wrong. */
		if (p != base + 0x100000 || (q && q != base + 0xc1000))
			bad++;
		looked++;
	}
	__atomic_add_fetch(&r->bad, bad, __ATOMIC_RELAXED);
	__atomic_add_fetch(&r->looked, looked, __ATOMIC_RELAXED);
	return NULL;
}

START_TEST(lookups_race_changes)
{
	struct guest_mem gm;
	struct gm_slot_info rom;
	struct race r = { .gm = &gm };
	pthread_t t[2];
	int fb;

	ck_assert_int_eq(gm_init(&gm, MiB(16), false), 0);
	r.rid = slot_named(&gm, "ram-rom-area", &rom);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, race_reader, &r), 0);
	fb = dev_slot(&gm, 0xd0000000, PAGE, 0);
	for (int i = 0; i < 20000; i++) {
		ck_assert_int_eq(gm_slot_set_flags(&gm, r.rid,
						   GM_SLOT_RAM | (i & 1 ? GM_SLOT_READONLY : 0),
						   NULL, 0),
				 0);
		ck_assert_int_eq(gm_slot_move(&gm, fb, i & 1 ? 0xd0000000 : 0x800000000ULL), 0);
		if (i % 3 == 0) {
			ck_assert_int_eq(gm_slot_remove(&gm, r.rid), 0);
			ck_assert_int_eq(
				gm_slot_add(&gm, &(struct gm_slot_spec){ .gpa = 0xc0000,
									 .size = rom.size,
									 .flags = GM_SLOT_RAM,
									 .ram_offset = 0xc0000 }),
				r.rid);
		}
	}
	__atomic_store_n(&r.stop, true, __ATOMIC_RELAXED);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("guest_mem: %lu lookups raced 20000 slot changes, %lu wrong\n", r.looked, r.bad);
	ck_assert_uint_eq(r.bad, 0);
	gm_destroy(&gm);
}
END_TEST

/* What a lookup costs in CPU time (printed, not asserted: no timing asserts).
 * For scale: the two-region linear scan before slots took 1.8 ns here. */
START_TEST(lookup_cost)
{
	struct guest_mem gm;
	struct timespec a, b;
	const unsigned n = 20000000;
	uintptr_t sum = 0;
	double ns;

	ck_assert_int_eq(gm_init(&gm, GiB(6), false), 0);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	for (unsigned i = 0; i < n; i++)
		sum += (uintptr_t)gm_ptr(&gm, 0x100000 + (uint64_t)(i & 0xffff) * 64, 64);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / n;
	printf("guest_mem: gm_ptr %.1f ns per lookup (5 slots)\n", ns);
	ck_assert_uint_ne(sum, 0);
	gm_destroy(&gm);
}
END_TEST

/* ---- against a real vCPU ---- */

struct kvm_rig {
	int kvm, vm, cpu;
	struct kvm_run *run;
};

static bool kvm_rig_open(struct kvm_rig *k)
{
	k->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->kvm < 0) {
		printf("guest_mem: SKIP the KVM cases: /dev/kvm: %s\n", strerror(errno));
		return false;
	}
	k->vm = ioctl(k->kvm, KVM_CREATE_VM, 0);
	ck_assert_int_ge(k->vm, 0);
	return true;
}

/* vCPU 0 in flat 32-bit protected mode at rip. */
static void kvm_rig_cpu(struct kvm_rig *k, uint64_t rip)
{
	struct kvm_segment cs = { .limit = 0xffffffff,
				  .selector = 8,
				  .type = 11,
				  .present = 1,
				  .db = 1,
				  .s = 1,
				  .g = 1 },
			   ds = cs;
	struct kvm_regs regs = { .rip = rip, .rflags = 2 };
	struct kvm_sregs sr;
	int sz = ioctl(k->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

	k->cpu = ioctl(k->vm, KVM_CREATE_VCPU, 0);
	ck_assert_int_ge(k->cpu, 0);
	k->run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, k->cpu, 0);
	ck_assert_ptr_ne(k->run, MAP_FAILED);
	ck_assert_int_eq(ioctl(k->cpu, KVM_GET_SREGS, &sr), 0);
	ds.type = 3;
	ds.selector = 16;
	sr.cs = cs;
	sr.ds = sr.es = sr.fs = sr.gs = sr.ss = ds;
	sr.cr0 |= 1;
	ck_assert_int_eq(ioctl(k->cpu, KVM_SET_SREGS, &sr), 0);
	ck_assert_int_eq(ioctl(k->cpu, KVM_SET_REGS, &regs), 0);
}

/* Run to the next hlt, handing MMIO writes over as the vCPU loop does. */
static void kvm_rig_run(struct kvm_rig *k, struct guest_mem *gm)
{
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(ioctl(k->cpu, KVM_RUN, 0), 0);
		if (k->run->exit_reason == KVM_EXIT_HLT)
			return;
		ck_assert_uint_eq(k->run->exit_reason, KVM_EXIT_MMIO);
		if (!k->run->mmio.is_write)
			memset(k->run->mmio.data, 0xff, sizeof(k->run->mmio.data));
		else
			ck_assert(gm_mmio_write(gm, k->run->mmio.phys_addr, k->run->mmio.data,
						k->run->mmio.len));
	}
	ck_abort_msg("the guest never halted");
}

static void kvm_rig_close(struct kvm_rig *k)
{
	close(k->cpu);
	close(k->vm);
	close(k->kvm);
}

/* Guest code, 32-bit. Round 1: a RAM write, a write to the read-only BIOS
 * segment, a read of it kept in RAM, a write to a logged device slot; hlt.
 * Round 2: the same RAM page again (after it was fetched and cleared), a
 * new one, the device slot at the address it was moved to; hlt. */
static const uint8_t kvm_code[] = {
	0xc6, 0x05, 0x00, 0x30, 0x00, 0x00, 0x01, /* mov byte [0x3000], 1 */
	0xc7, 0x05, 0x10, 0x00, 0x0f, 0x00, 0x44,
	0x33, 0x22, 0x11,			  /* mov dword [0xf0010], 0x11223344 */
	0xa1, 0x10, 0x00, 0x0f, 0x00,		  /* mov eax, [0xf0010] */
	0xa3, 0x00, 0x50, 0x00, 0x00,		  /* mov [0x5000], eax */
	0xc6, 0x05, 0x00, 0x10, 0x00, 0xe0, 0x07, /* mov byte [0xe0001000], 7 */
	0xf4,					  /* hlt */
	0xc6, 0x05, 0x00, 0x30, 0x00, 0x00, 0x02, /* mov byte [0x3000], 2 */
	0xc6, 0x05, 0x00, 0x40, 0x00, 0x00, 0x03, /* mov byte [0x4000], 3 */
	0xc6, 0x05, 0x00, 0x20, 0x10, 0xe0, 0x09, /* mov byte [0xe0102000], 9 */
	0xf4,					  /* hlt */
};

START_TEST(kvm_readonly_and_dirty_log)
{
	struct kvm_rig k;
	struct guest_mem gm;
	struct rec_dev rec = { 0 };
	struct gm_slot_info low, fbi;
	uint64_t bm[8];
	uint32_t got;
	int lid, bid, fb;

	if (!kvm_rig_open(&k))
		return;
	device_init(&rec.dev, &rec_ops);
	ck_assert_int_eq(gm_init(&gm, MiB(2), false), 0);
	fb = dev_slot(&gm, 0xe0000000, 4 * PAGE, GM_SLOT_LOG_DIRTY);
	ck_assert_int_ge(fb, 0);
	ck_assert_int_eq(gm_attach_kvm(&gm, k.kvm, k.vm), 0);
	printf("guest_mem: KVM manual dirty-log protection %s\n",
	       gm.kvm_manual_protect ? "on (KVM_CLEAR_DIRTY_LOG)"
				     : "off (KVM_GET_DIRTY_LOG clears)");
	lid = slot_named(&gm, "ram-low", &low);
	bid = slot_named(&gm, "bios", &low);
	memcpy(gm_ram_ptr(&gm, 0xf0010, 4), "ROM!", 4);
	ck_assert_int_eq(gm_slot_set_flags(&gm, bid, GM_SLOT_RAM | GM_SLOT_READONLY, &rec.dev, 1),
			 0);
	memcpy(gm_ram_ptr(&gm, 0x1000, sizeof(kvm_code)), kvm_code, sizeof(kvm_code));
	ck_assert_int_eq(gm_dirty_log_start(&gm), 0);
	ck_assert_int_eq(gm_write(&gm, 0x7000, "vmm", 3), 0); /* the VMM's own write */

	kvm_rig_cpu(&k, 0x1000);
	kvm_rig_run(&k, &gm);
	/* The write reached the sink; the ROM kept its bytes and the guest read them. */
	ck_assert_uint_eq(rec.n, 1);
	ck_assert_int_eq(rec.region, 1);
	ck_assert_uint_eq(rec.off, 0x10);
	ck_assert_uint_eq(rec.size, 4);
	ck_assert_uint_eq(rec.val, 0x11223344);
	ck_assert_int_eq(memcmp(gm_ram_ptr(&gm, 0xf0010, 4), "ROM!", 4), 0);
	ck_assert_int_eq(gm_read(&gm, 0x5000, &got, 4), 0);
	ck_assert_int_eq(memcmp(&got, "ROM!", 4), 0);
	/* Guest writes (KVM's log) and the VMM's, in one fetch. */
	ck_assert_int_eq(gm_dirty_fetch(&gm, lid, bm, 160, true), 3);
	ck_assert(bit(bm, 3) && bit(bm, 5) && bit(bm, 7));
	ck_assert_int_eq(gm_dirty_fetch(&gm, lid, bm, 160, true), 0);
	ck_assert_int_eq(gm_dirty_fetch(&gm, fb, bm, 4, true), 1);
	ck_assert_uint_eq(bm[0], 1u << 1);
	/* The BAR moves: the whole slot counts as dirty once. */
	ck_assert_int_eq(gm_slot_move(&gm, fb, 0xe0100000), 0);
	ck_assert_int_eq(gm_dirty_fetch(&gm, fb, bm, 4, true), 4);

	kvm_rig_run(&k, &gm);
	/* Page 3 again: KVM write-protected it anew when its bit was cleared. */
	ck_assert_int_eq(gm_dirty_fetch(&gm, lid, bm, 160, true), 2);
	ck_assert(bit(bm, 3) && bit(bm, 4));
	ck_assert_int_eq(gm_dirty_fetch(&gm, fb, bm, 4, true), 1);
	ck_assert_uint_eq(bm[0], 1u << 2);
	ck_assert_int_eq(gm_slot_get(&gm, fb, &fbi), 0);
	ck_assert_uint_eq(((uint8_t *)fbi.hva)[2 * PAGE], 9);
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, 0x3000, 1), 2);
	kvm_rig_close(&k);
	gm_destroy(&gm);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("guest_mem");

	ADD_TCASE(s, "core", NULL, NULL, 120, layout_small, layout_hole, layout_tiny, lazy_64g,
		  bounds, retain_for_restart, aligned_2m, bad_sizes, slot_add_remove, slot_refusals,
		  slot_move, slot_readonly, dirty_marks, dirty_alias_shifts, dirty_across_changes,
		  lookups_race_changes, lookup_cost);
	ADD_TCASE(s, "kvm", NULL, NULL, 60, kvm_readonly_and_dirty_log);
	return run_suite(s);
}
