/* Guest memory layout and the bounds-checked accessor. */
#include <check.h>
#include <sys/mman.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/guest_mem.h"

START_TEST(layout_small)
{
	struct guest_mem gm;

	ck_assert_int_eq(gm_init(&gm, MiB(512), false), 0);
	ck_assert_int_eq(gm.nr, 1);
	ck_assert_uint_eq(gm.r[0].gpa, 0);
	ck_assert_uint_eq(gm.r[0].size, MiB(512));
	gm_destroy(&gm);
}
END_TEST

START_TEST(layout_hole)
{
	struct guest_mem gm;

	ck_assert_int_eq(gm_init(&gm, GiB(6), false), 0);
	ck_assert_int_eq(gm.nr, 2);
	ck_assert_uint_eq(gm.r[0].size, GM_LOWMEM_MAX);
	ck_assert_uint_eq(gm.r[1].gpa, GM_HIGHMEM_BASE);
	ck_assert_uint_eq(gm.r[1].size, GiB(6) - GM_LOWMEM_MAX);
	/* The hole is not RAM. */
	ck_assert_ptr_null(gm_ptr(&gm, GM_LOWMEM_MAX, 1));
	ck_assert_ptr_null(gm_ptr(&gm, 0xfee00000, 4));
	ck_assert_ptr_nonnull(gm_ptr(&gm, GM_HIGHMEM_BASE, 4096));
	ck_assert_ptr_nonnull(gm_ptr(&gm, GM_HIGHMEM_BASE + gm.r[1].size - 1, 1));
	ck_assert_ptr_null(gm_ptr(&gm, GM_HIGHMEM_BASE + gm.r[1].size, 1));
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
	ck_assert_ptr_nonnull(gm_ptr(&gm, 0, MiB(16)));
	ck_assert_ptr_null(gm_ptr(&gm, 0, MiB(16) + 1));
	ck_assert_ptr_null(gm_ptr(&gm, MiB(16) - 8, 16));        /* straddles the end */
	ck_assert_ptr_null(gm_ptr(&gm, UINT64_MAX - 4, 16));      /* gpa + len wraps */
	ck_assert_ptr_null(gm_ptr(&gm, 8, UINT64_MAX));           /* len alone huge */
	ck_assert_ptr_nonnull(gm_ptr(&gm, MiB(16), 0));           /* empty range at the end */
	ck_assert_int_eq(gm_write(&gm, MiB(16) - 3, buf, 3), 0);
	ck_assert_int_eq(gm_write(&gm, MiB(16) - 2, buf, 3), -EFAULT);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(gm_read(&gm, MiB(16) - 3, buf, 3), 0);
	ck_assert_int_eq(buf[0], 1);
	ck_assert_int_eq(buf[2], 3);
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

		pad[i] = mmap(NULL, 4096 * (size_t)(i + 1), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ck_assert_ptr_ne(pad[i], MAP_FAILED);
		ck_assert_int_eq(gm_init(&gm, MiB(6) + 4096 * (uint64_t)i, false), 0);
		ck_assert_uint_eq((uintptr_t)gm.map & (MiB(2) - 1), 0);
		end = (uint8_t *)gm.map + gm.map_size;
		end[-1] = 1;    /* the last byte is mapped */
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
}
END_TEST

int main(void)
{
	Suite *s = suite_create("guest_mem");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, layout_small);
	tcase_add_test(tc, layout_hole);
	tcase_add_test(tc, lazy_64g);
	tcase_add_test(tc, bounds);
	tcase_add_test(tc, retain_for_restart);
	tcase_add_test(tc, aligned_2m);
	tcase_add_test(tc, bad_sizes);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
