/* Per-vCPU CPUID adjustment: APIC IDs and topology leaves agree with the MADT. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>

#include "kestrel/cpuid.h"
#include "kestrel/kvm_state.h"
#include "check_util.h"

static struct kvm_cpuid2 *table(void)
{
	/* A stand-in for KVM_GET_SUPPORTED_CPUID with the leaves we adjust. */
	static const struct kvm_cpuid_entry2 e[] = {
		{ .function = 1, .eax = 0x806f8, .ebx = 0x00000800, .ecx = 0x0, .edx = 1u << 28 },
		{ .function = 4, .index = 0, .eax = 0x121 }, /* L1d, level 1 */
		{ .function = 4, .index = 3, .eax = 0x163 }, /* L3, level 3 */
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
			ck_assert_uint_eq(leaf(c, 1, 0)->ebx & 0xffff,
					  0x0800);			/* CLFLUSH size kept */
			ck_assert_uint_eq(leaf(c, 1, 0)->ecx >> 31, 1); /* hypervisor bit */
			ck_assert_uint_eq((leaf(c, 1, 0)->edx >> 28) & 1, n > 1); /* HTT */
			ck_assert_uint_eq(leaf(c, 0xb, 0)->edx, id);		  /* x2APIC id */
			ck_assert_uint_eq(leaf(c, 0xb, 0)->ebx, 1); /* 1 thread/core */
			ck_assert_uint_eq((leaf(c, 0xb, 1)->ecx >> 8) & 0xff, 2); /* core level */
			ck_assert_uint_eq(leaf(c, 0xb, 1)->ebx, n);
			ck_assert_uint_ge(1u << leaf(c, 0xb, 1)->eax, n); /* shift covers n */
			ck_assert_uint_lt(1u << leaf(c, 0xb, 1)->eax, 2 * n);
			ck_assert_uint_eq((leaf(c, 0xb, 2)->ecx >> 8) & 0xff,
					  0); /* end of levels */
			ck_assert_uint_eq(leaf(c, 4, 0)->eax >> 26, n - 1);
			ck_assert_uint_eq((leaf(c, 4, 0)->eax >> 14) & 0xfff, 0); /* L1 per core */
			ck_assert_uint_eq((leaf(c, 4, 3)->eax >> 14) & 0xfff,
					  n - 1); /* L3 shared */
			ck_assert_uint_eq(leaf(c, 0x80000008, 0)->ecx & 0xff, n - 1);
			ck_assert_uint_eq(leaf(c, 0x8000001e, 0)->eax, id);
			free(c);
		}
	}
}
END_TEST

/* ---- --cpu models: a fake KVM_GET_SUPPORTED_CPUID with every feature ---- */

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX
#define ALL 0xffffffffu

/* A host with everything: all feature words set, leaf 0xD as on an
 * AVX-512 Intel part (SDM vol 1 13.4.3: component sizes and offsets). */
static const struct kvm_cpuid_entry2 full_entries[] = {
	{ .function = 0, .eax = 0x1f },
	{ .function = 1, .eax = 0x806f8, .ebx = 0x800, .ecx = ALL, .edx = ALL & ~(1u << 28) },
	{ .function = 6, .eax = 4 },
	{ .function = 7, .index = 0, .flags = SIG, .eax = 2, .ebx = ALL, .ecx = ALL, .edx = ALL },
	{ .function = 7, .index = 1, .flags = SIG, .eax = ALL, .ebx = ALL, .ecx = ALL, .edx = ALL },
	{ .function = 0xd, .index = 0, .flags = SIG, .eax = 0x602ff, .ebx = 2696, .ecx = 11008 },
	{ .function = 0xd, .index = 1, .flags = SIG, .eax = 0x1f, .ebx = 2696, .ecx = 0x1900 },
	{ .function = 0xd, .index = 2, .flags = SIG, .eax = 256, .ebx = 576 },
	{ .function = 0xd, .index = 3, .flags = SIG, .eax = 64, .ebx = 960 },
	{ .function = 0xd, .index = 4, .flags = SIG, .eax = 64, .ebx = 1024 },
	{ .function = 0xd, .index = 5, .flags = SIG, .eax = 64, .ebx = 1088 },
	{ .function = 0xd, .index = 6, .flags = SIG, .eax = 512, .ebx = 1152 },
	{ .function = 0xd, .index = 7, .flags = SIG, .eax = 1024, .ebx = 1664 },
	{ .function = 0xd, .index = 9, .flags = SIG, .eax = 8, .ebx = 2688 },
	{ .function = 0xd, .index = 17, .flags = SIG, .eax = 64, .ebx = 2752 },
	{ .function = 0xd, .index = 18, .flags = SIG, .eax = 8192, .ebx = 2816 },
	{ .function = 0x12, .index = 0, .flags = SIG, .eax = 3, .ebx = 1 },
	{ .function = 0x14, .index = 0, .flags = SIG, .eax = 1, .ebx = 0xf },
	{ .function = 0x80000001, .ecx = ALL, .edx = ALL },
	{ .function = 0x80000007, .edx = ALL },
	{ .function = 0x80000008, .eax = 0x3030, .ebx = ALL },
	{ .function = 0x8000001f, .eax = 0x1b },
};

static struct kvm_cpuid2 *full_table(void)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + sizeof(full_entries));

	c->nent = ARRAY_SIZE(full_entries);
	memcpy(c->entries, full_entries, sizeof(full_entries));
	return c;
}

static bool has(const struct kvm_cpuid2 *c, const char *name)
{
	const struct cpuid_feature *f = cpuid_feature_by_name(name);
	const struct kvm_cpuid_entry2 *e;

	ck_assert_msg(f != NULL, "no feature '%s'", name);
	e = cpuid_entry(c, f->fn, f->idx);
	return e && (cpuid_reg_get(e, f->reg) >> f->bit & 1);
}

static void clear(struct kvm_cpuid2 *c, const char *name)
{
	const struct cpuid_feature *f = cpuid_feature_by_name(name);

	*cpuid_reg_ptr(leaf(c, f->fn, f->idx), f->reg) &= ~(1u << f->bit);
}

static struct kvm_cpuid2 *applied(const char *model)
{
	struct kvm_cpuid2 *c = full_table();
	char err[512] = "";

	ck_assert_ptr_nonnull(cpu_model_find(model));
	ck_assert_msg(cpu_model_apply(cpu_model_find(model), c, err, sizeof(err)) == 0, "%s: %s",
		      model, err);
	return c;
}

START_TEST(models_named)
{
	static const char *const names[] = { "host",	  "compat",    "x86-64-v1",
					     "x86-64-v2", "x86-64-v3", "x86-64-v4" };

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		ck_assert_str_eq(cpu_model_name(cpu_model_find(names[i])), names[i]);
	ck_assert_ptr_null(cpu_model_find("x86-64-v5"));
	ck_assert_ptr_null(cpu_model_find(""));
	ck_assert_str_eq(cpu_model_name(NULL), "host");
	ck_assert(cpu_model_is_host(NULL));
	/* Every name a model lists is a known bit (a typo would hide nothing). */
	for (size_t i = 0; cpu_model_at(i); i++)
		for (size_t k = 0; cpu_model_feature(cpu_model_at(i), k); k++)
			ck_assert_msg(cpuid_feature_by_name(cpu_model_feature(cpu_model_at(i), k)),
				      "%s: '%s' unknown", cpu_model_name(cpu_model_at(i)),
				      cpu_model_feature(cpu_model_at(i), k));
}
END_TEST

/* What each level shows and hides, on a host that has everything: the
 * psABI table (docs/cpu.md). */
START_TEST(models_mask)
{
	static const struct {
		const char *model, *shown, *hidden;
	} t[] = {
		{ "x86-64-v1",
		  "sse2 cmov cx8 fxsr mmx syscall lm nx fpu x2apic hypervisor spec_ctrl",
		  "pni cx16 lahf_lm ssse3 popcnt aes pclmulqdq rdrand xsave avx sse4a abm "
		  "pdpe1gb rdtscp invtsc tsc_adjust fsgsbase smep smap vmx svm monitor pcid "
		  "sha_ni avx2 avx512f umip la57 clzero mmxext vme" },
		{ "compat", "sse2 pni cx16 lahf_lm x2apic tsc_deadline_timer",
		  "ssse3 sse4_1 sse4_2 popcnt misalignsse xsave avx avx2 avx512f sha_ni rdrand "
		  "rdseed aes movbe f16c fma bmi1 adx erms" },
		{ "x86-64-v2", "pni cx16 lahf_lm popcnt ssse3 sse4_1 sse4_2",
		  "xsave avx avx2 aes rdrand fma movbe abm avx512f" },
		{ "x86-64-v3", "xsave osxsave avx avx2 bmi1 bmi2 f16c fma abm movbe sse4_2",
		  "avx512f avx512vl sha_ni aes vaes rdrand xsavec xsaves pku mpx amx_tile" },
		{ "x86-64-v4", "avx512f avx512bw avx512cd avx512dq avx512vl avx2",
		  "avx512ifma avx512vbmi avx512_vnni avx512_fp16 avx512_bf16 amx_tile sha_ni" },
		{ "host", "avx512f sha_ni aes rdrand vmx invtsc tsc_adjust", "" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct kvm_cpuid2 *c = applied(t[i].model);
		char list[512], *save = NULL;

		snprintf(list, sizeof(list), "%s", t[i].shown);
		for (char *n = strtok_r(list, " ", &save); n; n = strtok_r(NULL, " ", &save))
			ck_assert_msg(has(c, n), "%s hides %s", t[i].model, n);
		snprintf(list, sizeof(list), "%s", t[i].hidden);
		for (char *n = strtok_r(list, " ", &save); n; n = strtok_r(NULL, " ", &save))
			ck_assert_msg(!has(c, n), "%s shows %s", t[i].model, n);
		/* Nothing but what the model lists gets through. */
		for (size_t k = 0; cpuid_feature_at(k); k++) {
			const struct cpuid_feature *f = cpuid_feature_at(k);
			const struct kvm_cpuid_entry2 *e = cpuid_entry(c, f->fn, f->idx);

			if (e && (cpuid_reg_get(e, f->reg) >> f->bit & 1) && f->fn != 0xd)
				ck_assert_msg(cpu_model_shows(cpu_model_find(t[i].model), f->name),
					      "%s shows %s", t[i].model, f->name);
		}
		free(c);
	}
}
END_TEST

START_TEST(models_host_untouched)
{
	struct kvm_cpuid2 *a = full_table(), *b = full_table();
	char err[64];

	ck_assert_int_eq(cpu_model_apply(NULL, a, err, sizeof(err)), 0);
	ck_assert_int_eq(cpu_model_apply(cpu_model_find("host"), a, err, sizeof(err)), 0);
	ck_assert_mem_eq(a->entries, b->entries, sizeof(full_entries));
	free(a);
	free(b);
}
END_TEST

/* Leaf 0xD agrees with leaves 1 and 7: a hidden AVX leaves XCR0's YMM bit
 * unsupported, hidden components' subleaves are empty, the sizes fit. */
START_TEST(models_xsave_consistent)
{
	struct kvm_cpuid2 *c;

	for (size_t i = 0; i < 3; i++) {
		c = applied((const char *[]){ "compat", "x86-64-v1", "x86-64-v2" }[i]);
		for (unsigned k = 0; k < c->nent; k++)
			if (c->entries[k].function == 0xd)
				ck_assert(!c->entries[k].eax && !c->entries[k].ebx &&
					  !c->entries[k].ecx && !c->entries[k].edx);
		free(c);
	}
	c = applied("x86-64-v3");
	ck_assert_uint_eq(leaf(c, 0xd, 0)->eax, 0x7); /* x87, SSE, YMM */
	ck_assert_uint_eq(leaf(c, 0xd, 0)->edx, 0);
	ck_assert_uint_eq(leaf(c, 0xd, 0)->ecx, 576 + 256); /* YMM ends the area */
	ck_assert_uint_eq(leaf(c, 0xd, 0)->ebx, 576);
	ck_assert_uint_eq(leaf(c, 0xd, 1)->eax, 0); /* xsaveopt not on v3's list */
	ck_assert_uint_eq(leaf(c, 0xd, 1)->ecx | leaf(c, 0xd, 1)->edx, 0); /* no XSS */
	ck_assert_uint_eq(leaf(c, 0xd, 2)->eax, 256);
	for (unsigned i = 3; i <= 18; i++)
		if (i <= 7 || i == 9 || i >= 17)
			ck_assert_uint_eq(leaf(c, 0xd, i)->eax | leaf(c, 0xd, i)->ebx, 0);
	free(c);
	c = applied("x86-64-v4");
	ck_assert_uint_eq(leaf(c, 0xd, 0)->eax, 0xe7); /* + opmask, ZMM_Hi256, Hi16_ZMM */
	ck_assert_uint_eq(leaf(c, 0xd, 0)->ecx, 1664 + 1024);
	ck_assert_uint_eq(leaf(c, 0xd, 9)->eax, 0); /* PKRU: pku hidden */
	free(c);
	/* Host mode on a host whose table is inconsistent by itself is left as
	 * KVM gave it; the fixup alone makes it agree. */
	c = full_table();
	clear(c, "avx");
	cpuid_apply_dependencies(c);
	cpuid_xsave_fixup(c);
	ck_assert(!has(c, "avx2") && !has(c, "fma") && !has(c, "avx512f") && !has(c, "avx512vl"));
	ck_assert_uint_eq(leaf(c, 0xd, 0)->eax & 0xe4, 0); /* no YMM, no AVX-512 state */
	ck_assert_uint_eq(leaf(c, 0xd, 2)->eax, 0);
	ck_assert(has(c, "xsave") && has(c, "sse4_2"));
	free(c);
	c = full_table();
	clear(c, "xsave");
	cpuid_apply_dependencies(c);
	cpuid_xsave_fixup(c);
	ck_assert(!has(c, "avx") && !has(c, "osxsave") && !has(c, "xsaveopt") && !has(c, "pku"));
	ck_assert_uint_eq(leaf(c, 0xd, 0)->eax, 0);
	free(c);
}
END_TEST

/* A host that cannot satisfy the model: refused, every missing feature
 * named on one line; a lower level still fits. */
START_TEST(models_refused)
{
	struct kvm_cpuid2 *c = full_table();
	char err[512];

	clear(c, "avx2");
	clear(c, "avx512f");
	clear(c, "bmi2");
	ck_assert_int_eq(cpu_model_apply(cpu_model_find("x86-64-v4"), c, err, sizeof(err)),
			 -ENOTSUP);
	ck_assert_str_eq(err, "--cpu x86-64-v4: this host's KVM cannot offer avx2, bmi2, avx512f");
	ck_assert_int_eq(cpu_model_apply(cpu_model_find("x86-64-v3"), c, err, sizeof(err)),
			 -ENOTSUP);
	ck_assert_str_eq(err, "--cpu x86-64-v3: this host's KVM cannot offer avx2, bmi2");
	ck_assert_int_eq(cpu_model_apply(cpu_model_find("x86-64-v2"), c, err, sizeof(err)), 0);
	free(c);
	/* A table with nothing: every one of v4's features, the tail counted. */
	c = calloc(1, sizeof(*c) + sizeof(c->entries[0]));
	c->nent = 1;
	ck_assert_int_eq(cpu_model_apply(cpu_model_find("x86-64-v4"), c, err, sizeof(err)),
			 -ENOTSUP);
	ck_assert_ptr_null(strchr(err, '\n'));
	ck_assert_ptr_nonnull(strstr(err, "cannot offer fpu, de, pse, "));
	free(c);
}
END_TEST

START_TEST(names_list_cut)
{
	struct cpuid_names l = { 0 };

	cpuid_names_append(&l, 7, 0, CPUID_EBX, 1u << 5);
	ck_assert_str_eq(cpuid_names_text(&l), "avx2");
	cpuid_names_append(&l, 7, 0, CPUID_EDX, 1u << 1); /* no name */
	ck_assert_str_eq(cpuid_names_text(&l), "avx2, CPUID 0x7.0 edx bit 1");
	memset(&l, 0, sizeof(l));
	for (uint32_t fn = 0x40; fn < 0x50; fn++)
		cpuid_names_append(&l, fn, 0, CPUID_EAX, ALL);
	ck_assert_uint_eq(l.count, 16 * 32);
	ck_assert_ptr_nonnull(strstr(cpuid_names_text(&l), " more"));
	ck_assert_uint_lt(strlen(l.text), sizeof(l.text));
}
END_TEST

/* cpuid_state_check (migrate/cpuid_state.c): a restore's or incoming
 * migration's saved CPUID against this host's, every missing bit named. */
START_TEST(state_check_names_all)
{
	struct kvm_cpuid2 *saved = applied("x86-64-v4"), *host = full_table();
	char err[512];

	ck_assert_int_eq(cpuid_state_check(saved, host, err, sizeof(err)), 0);
	clear(host, "avx2");
	clear(host, "avx512f");
	ck_assert_int_eq(cpuid_state_check(saved, host, err, sizeof(err)), -ENOTSUP);
	ck_assert_str_eq(err, "the saved CPU has avx2, avx512f that this host's KVM cannot offer");
	/* The same guest under compat asks for neither. */
	free(saved);
	saved = applied("compat");
	ck_assert_int_eq(cpuid_state_check(saved, host, err, sizeof(err)), 0);
	/* XCR0 state and AMD's leaves are compared too. */
	leaf(host, 0xd, 0)->eax &= ~4u;
	leaf(host, 0x80000001, 0)->ecx &= ~1u;
	ck_assert_int_eq(cpuid_state_check(saved, host, err, sizeof(err)), -ENOTSUP);
	ck_assert_str_eq(err, "the saved CPU has lahf_lm that this host's KVM cannot offer");
	free(saved);
	saved = full_table();
	ck_assert_int_eq(cpuid_state_check(saved, host, err, sizeof(err)), -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(err, "avx2, avx512f"));
	ck_assert_ptr_nonnull(strstr(err, "xstate-avx"));
	/* Bits we set ourselves (hypervisor, HTT, TSC deadline, OSXSAVE) are no
	 * reason to refuse. */
	free(saved);
	saved = calloc(1, sizeof(*saved) + sizeof(saved->entries[0]));
	saved->nent = 1;
	saved->entries[0] =
		(struct kvm_cpuid_entry2){ .function = 1, .ecx = 0x89000000u, .edx = 1u << 28 };
	host->entries[1].ecx = 0;
	host->entries[1].edx = 0;
	ck_assert_int_eq(cpuid_state_check(saved, host, err, sizeof(err)), 0);
	free(saved);
	free(host);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cpuid");

	ADD_TCASE(s, "adjust", NULL, NULL, 0, apic_ids_and_topology);
	ADD_TCASE(s, "models", NULL, NULL, 0, models_named, models_mask, models_host_untouched,
		  models_xsave_consistent, models_refused, names_list_cut);
	ADD_TCASE(s, "state_check", NULL, NULL, 0, state_check_names_all);
	return run_suite(s);
}
