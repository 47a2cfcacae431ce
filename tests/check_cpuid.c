/* Per-vCPU CPUID adjustment: APIC IDs and topology leaves agree with the MADT. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/cpuid.h"
#include "check_util.h"

static struct kvm_cpuid2 *table(void)
{
	/* A stand-in for KVM_GET_SUPPORTED_CPUID with the leaves we adjust. */
	static const struct kvm_cpuid_entry2 e[] = {
		{ .function = 1, .eax = 0x806f8, .ebx = 0x00000800, .ecx = 0x0, .edx = 1u << 28 },
		{ .function = 4, .index = 0, .eax = 0x121 },   /* L1d, level 1 */
		{ .function = 4, .index = 3, .eax = 0x163 },   /* L3, level 3 */
		{ .function = 0xb, .index = 0 },
		{ .function = 0xb, .index = 1 },
		{ .function = 0xb, .index = 2 },
		{ .function = 0x80000008, .ecx = 0xffff },
		{ .function = 0x8000001e, .eax = 99, .ebx = 99, .ecx = 99 },
	};
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + sizeof(e));

	c->nent = sizeof(e) / sizeof(e[0]);
	memcpy(c->entries, e, sizeof(e));
	return c;
}

static struct kvm_cpuid_entry2 *leaf(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (unsigned i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	ck_abort_msg("leaf %x.%u missing", fn, idx);
	return NULL;
}

START_TEST(apic_ids_and_topology)
{
	for (unsigned n = 1; n <= 64; n = n * 2 + 1) {
		for (unsigned id = 0; id < n; id += (n > 4 ? n / 4 : 1)) {
			struct kvm_cpuid2 *c = table();

			cpuid_adjust(c, id, n);
			ck_assert_uint_eq(leaf(c, 1, 0)->ebx >> 24, id);
			ck_assert_uint_eq((leaf(c, 1, 0)->ebx >> 16) & 0xff, n);
			ck_assert_uint_eq(leaf(c, 1, 0)->ebx & 0xffff, 0x0800);        /* CLFLUSH size kept */
			ck_assert_uint_eq(leaf(c, 1, 0)->ecx >> 31, 1);                /* hypervisor bit */
			ck_assert_uint_eq((leaf(c, 1, 0)->edx >> 28) & 1, n > 1);      /* HTT */
			ck_assert_uint_eq(leaf(c, 0xb, 0)->edx, id);                   /* x2APIC id */
			ck_assert_uint_eq(leaf(c, 0xb, 0)->ebx, 1);                    /* 1 thread/core */
			ck_assert_uint_eq((leaf(c, 0xb, 1)->ecx >> 8) & 0xff, 2);      /* core level */
			ck_assert_uint_eq(leaf(c, 0xb, 1)->ebx, n);
			ck_assert_uint_ge(1u << leaf(c, 0xb, 1)->eax, n);              /* shift covers n */
			ck_assert_uint_lt(1u << leaf(c, 0xb, 1)->eax, 2 * n);
			ck_assert_uint_eq((leaf(c, 0xb, 2)->ecx >> 8) & 0xff, 0);      /* end of levels */
			ck_assert_uint_eq(leaf(c, 4, 0)->eax >> 26, n - 1);
			ck_assert_uint_eq((leaf(c, 4, 0)->eax >> 14) & 0xfff, 0);      /* L1 per core */
			ck_assert_uint_eq((leaf(c, 4, 3)->eax >> 14) & 0xfff, n - 1);  /* L3 shared */
			ck_assert_uint_eq(leaf(c, 0x80000008, 0)->ecx & 0xff, n - 1);
			ck_assert_uint_eq(leaf(c, 0x8000001e, 0)->eax, id);
			free(c);
		}
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cpuid");

	ADD_TCASE(s, "adjust", NULL, NULL, 0, apic_ids_and_topology);
	return run_suite(s);
}
