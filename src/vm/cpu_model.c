/* CPU models for --cpu (docs/cpu.md): which CPUID feature bits a guest is
 * shown. "host" shows everything KVM_GET_SUPPORTED_CPUID offers. A baseline
 * shows only its own list, and a host whose KVM lacks one of them refuses to
 * start: a guest then sees the same features on every host that runs it, so
 * it can move between CPU generations (Hyper-V's processor compatibility
 * mode; the x86-64 psABI's micro-architecture levels, which QEMU and the
 * toolchains use as x86-64-v1..v4). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kestrel/cpuid.h"

struct cpu_model {
	const char *name;
	const struct cpu_model *base; /* everything of base, then adds */
	const char *const *adds;      /* NULL: host, no masking */
};

/* x86-64 psABI 1.0, 3.1.1 "Micro-architecture levels" (table 3.1), plus the
 * architectural leaf 1 bits of QEMU's qemu64 model (target/i386/cpu.c:
 * PPRO_FEATURES and the rest), which every KVM offers. Not VME: the nested
 * rig's SVM KVM on a qemu64 CPU does not offer it, and a 64-bit guest has
 * no virtual-8086 mode to use it in. */
static const char *const adds_v1[] = {
	"fpu",	"de",	"pse",	"tsc",	   "msr",  "pae", "mce",   "cx8",     "apic",
	"sep",	"mtrr", "pge",	"mca",	   "cmov", "pat", "pse36", "clflush", "mmx",
	"fxsr", "sse",	"sse2", "syscall", "nx",   "lm",  NULL,
};
/* compat: Hyper-V's standard processor compatibility mode hides SSSE3,
 * SSE4.1/4.2, POPCNT, XSAVE, AVX and all newer extensions; what is left is
 * QEMU's default qemu64 model (SSE3, CMPXCHG16B, LAHF in long mode), which
 * QEMU picked because every x86-64 host can run it. */
static const char *const adds_compat[] = { "pni", "cx16", "lahf_lm", NULL };
static const char *const adds_v2[] = {
	"pni", "cx16", "lahf_lm", "popcnt", "ssse3", "sse4_1", "sse4_2", NULL,
};
/* v3 lists OSXSAVE, which is the guest's own CR4 bit: XSAVE is what a host
 * must have for it. LZCNT is AMD's "abm" bit. */
static const char *const adds_v3[] = {
	"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave", NULL,
};
static const char *const adds_v4[] = {
	"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", NULL,
};

static const struct cpu_model cpu_host = { "host", NULL, NULL };
static const struct cpu_model cpu_v1 = { "x86-64-v1", NULL, adds_v1 };
static const struct cpu_model cpu_compat = { "compat", &cpu_v1, adds_compat };
static const struct cpu_model cpu_v2 = { "x86-64-v2", &cpu_v1, adds_v2 };
static const struct cpu_model cpu_v3 = { "x86-64-v3", &cpu_v2, adds_v3 };
static const struct cpu_model cpu_v4 = { "x86-64-v4", &cpu_v3, adds_v4 };
static const struct cpu_model *const cpu_models[] = {
	&cpu_host, &cpu_compat, &cpu_v1, &cpu_v2, &cpu_v3, &cpu_v4,
};

/* Shown by every baseline when the host has them, required by none: what
 * KVM itself emulates on any host (x2APIC, the TSC-deadline timer, the
 * hypervisor bit; osxsave and ht follow the guest's CR4 and the vCPU
 * count), and the speculation controls, which a guest needs to protect
 * itself and which QEMU's named models carry too (the "-IBRS" versions). A
 * target without one of those refuses the migration by name
 * (cpuid_state_check) rather than silently leaving the guest unprotected. */
/* clang-format off */
static const char *const cpu_passthrough[] = {
	"hypervisor", "x2apic", "tsc_deadline_timer", "osxsave", "ht", "md_clear", "spec_ctrl",
	"intel_stibp", "flush_l1d", "arch_capabilities", "spec_ctrl_ssbd", "amd_ibpb", "amd_ibrs",
	"amd_stibp", "amd_ssbd", "virt_ssbd", "amd_ssb_no", NULL,
};
/* clang-format on */

/* The feature registers a baseline filters; a bit not on the model's lists
 * is cleared. Leaf 0xD is made consistent afterwards (cpuid_xsave_fixup). */
static const struct {
	uint32_t fn, idx;
	int reg;
} cpu_masked_words[] = {
	{ 1, 0, CPUID_ECX },	      { 1, 0, CPUID_EDX },	    { 7, 0, CPUID_EBX },
	{ 7, 0, CPUID_ECX },	      { 7, 0, CPUID_EDX },	    { 7, 1, CPUID_EAX },
	{ 7, 1, CPUID_EBX },	      { 7, 1, CPUID_ECX },	    { 7, 1, CPUID_EDX },
	{ 7, 2, CPUID_EDX },	      { 0xd, 1, CPUID_EAX },	    { 0x80000001, 0, CPUID_ECX },
	{ 0x80000001, 0, CPUID_EDX }, { 0x80000007, 0, CPUID_EDX }, { 0x80000008, 0, CPUID_EBX },
};

/* Leaves that only describe features no baseline has (SGX, processor
 * trace, Key Locker, AMX tiles, AMD SEV and PQoS, AMD's extended features
 * 2): a baseline shows them empty. */
static const uint32_t cpu_hidden_leaves[] = {
	0x12, 0x14, 0x19, 0x1d, 0x1e, 0x8000001f, 0x80000020, 0x80000021,
};

/* A feature whose prerequisite is hidden is hidden too, as QEMU's
 * feature_dependencies[] (target/i386/cpu.c): AVX needs XSAVE (SDM vol 1
 * 14.3), its extensions need AVX, AVX-512's need AVX512F (SDM vol 1 15.2). */
static const struct {
	const char *feature, *needs;
} cpu_dependencies[] = {
	{ "osxsave", "xsave" },
	{ "avx", "xsave" },
	{ "xsaveopt", "xsave" },
	{ "xsavec", "xsave" },
	{ "xgetbv1", "xsave" },
	{ "xsaves", "xsave" },
	{ "xfd", "xsave" },
	{ "pku", "xsave" },
	{ "avx2", "avx" },
	{ "fma", "avx" },
	{ "f16c", "avx" },
	{ "vaes", "avx" },
	{ "vpclmulqdq", "avx" },
	{ "avx_vnni", "avx2" },
	{ "avx512f", "avx2" },
	{ "avx512dq", "avx512f" },
	{ "avx512ifma", "avx512f" },
	{ "avx512pf", "avx512f" },
	{ "avx512er", "avx512f" },
	{ "avx512cd", "avx512f" },
	{ "avx512bw", "avx512f" },
	{ "avx512vl", "avx512f" },
	{ "avx512vbmi", "avx512f" },
	{ "avx512_vbmi2", "avx512f" },
	{ "avx512_vnni", "avx512f" },
	{ "avx512_bitalg", "avx512f" },
	{ "avx512_vpopcntdq", "avx512f" },
	{ "avx512_4vnniw", "avx512f" },
	{ "avx512_4fmaps", "avx512f" },
	{ "avx512_vp2intersect", "avx512f" },
	{ "avx512_fp16", "avx512bw" },
	{ "avx512_bf16", "avx512bw" },
	{ "amx_bf16", "amx_tile" },
	{ "amx_int8", "amx_tile" },
};

const struct cpu_model *cpu_model_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(cpu_models); i++)
		if (strcmp(cpu_models[i]->name, name) == 0)
			return cpu_models[i];
	return NULL;
}

const struct cpu_model *cpu_model_at(size_t i)
{
	return i < ARRAY_SIZE(cpu_models) ? cpu_models[i] : NULL;
}

const char *cpu_model_name(const struct cpu_model *m)
{
	return m ? m->name : cpu_host.name;
}

bool cpu_model_is_host(const struct cpu_model *m)
{
	return !m || !m->adds;
}

static bool names_have(const char *const *list, const char *name)
{
	for (; list && *list; list++)
		if (strcmp(*list, name) == 0)
			return true;
	return false;
}

bool cpu_model_requires(const struct cpu_model *m, const char *name)
{
	for (; m && m->adds; m = m->base)
		if (names_have(m->adds, name))
			return true;
	return false;
}

static size_t cpu_model_count(const struct cpu_model *m)
{
	size_t n = 0;

	if (!m || !m->adds)
		return 0;
	while (m->adds[n])
		n++;
	return cpu_model_count(m->base) + n;
}

const char *cpu_model_feature(const struct cpu_model *m, size_t i)
{
	size_t nb;

	if (!m || !m->adds)
		return NULL;
	nb = cpu_model_count(m->base);
	if (i < nb)
		return cpu_model_feature(m->base, i);
	return i < cpu_model_count(m) ? m->adds[i - nb] : NULL;
}

bool cpu_model_shows(const struct cpu_model *m, const char *name)
{
	return cpu_model_is_host(m) || cpu_model_requires(m, name) ||
	       names_have(cpu_passthrough, name);
}

static bool entry_has(const struct kvm_cpuid2 *c, const struct cpuid_feature *f)
{
	const struct kvm_cpuid_entry2 *e = cpuid_entry(c, f->fn, f->idx);

	return e && (cpuid_reg_get(e, f->reg) >> f->bit & 1);
}

/* The model's required features the table lacks, named into l. */
static void cpu_model_missing(const struct cpu_model *m, const struct kvm_cpuid2 *c,
			      struct cpuid_names *l)
{
	if (!m || !m->adds)
		return;
	cpu_model_missing(m->base, c, l);
	for (const char *const *n = m->adds; *n; n++) {
		const struct cpuid_feature *f = cpuid_feature_by_name(*n);

		if (f && !entry_has(c, f))
			cpuid_names_append(l, f->fn, f->idx, f->reg, 1u << f->bit);
	}
}

/* The bits of one register the model lets through. AMD repeats leaf 1's
 * EDX bits 0-9, 12-17, 23-24 in 0x80000001 EDX (APM vol 3, E.4.2). */
static uint32_t cpu_model_allowed(const struct cpu_model *m, uint32_t fn, uint32_t idx, int reg)
{
	uint32_t mask = 0;

	for (size_t i = 0; cpuid_feature_at(i); i++) {
		const struct cpuid_feature *f = cpuid_feature_at(i);

		if (f->fn == fn && f->idx == idx && f->reg == reg && cpu_model_shows(m, f->name))
			mask |= 1u << f->bit;
	}
	if (fn == 0x80000001 && reg == CPUID_EDX)
		mask |= cpu_model_allowed(m, 1, 0, CPUID_EDX) & 0x0183f3ffu;
	return mask;
}

static void cpuid_clear_feature(struct kvm_cpuid2 *c, const char *name)
{
	const struct cpuid_feature *f = cpuid_feature_by_name(name);
	struct kvm_cpuid_entry2 *e = f ? (struct kvm_cpuid_entry2 *)cpuid_entry(c, f->fn, f->idx)
				       : NULL;

	if (e)
		*cpuid_reg_ptr(e, f->reg) &= ~(1u << f->bit);
}

static bool cpuid_has(const struct kvm_cpuid2 *c, const char *name)
{
	const struct cpuid_feature *f = cpuid_feature_by_name(name);

	return f && entry_has(c, f);
}

void cpuid_apply_dependencies(struct kvm_cpuid2 *c)
{
	/* Dependencies come in order (a prerequisite's own before it). */
	for (size_t i = 0; i < ARRAY_SIZE(cpu_dependencies); i++)
		if (!cpuid_has(c, cpu_dependencies[i].needs))
			cpuid_clear_feature(c, cpu_dependencies[i].feature);
}

#define XCR0_X87		(1u << 0)
#define XCR0_SSE		(1u << 1)
#define XCR0_YMM		(1u << 2)
#define XCR0_MPX		(3u << 3)
#define XCR0_AVX512		(7u << 5)
#define XCR0_PKRU		(1u << 9)
#define XCR0_AMX		(3u << 17)
#define XSAVE_LEGACY_AND_HEADER 576 /* SDM vol 1 13.4: 512-byte legacy area + 64-byte header */

/* Leaf 0xD must agree with leaves 1 and 7 (SDM vol 1 13.2): the guest may
 * set in XCR0 only what 0xD.0 EDX:EAX offers, and KVM refuses an XSETBV
 * beyond it, so a hidden AVX leaves the YMM state unsupported too. */
void cpuid_xsave_fixup(struct kvm_cpuid2 *c)
{
	bool xsave = cpuid_has(c, "xsave");
	uint32_t xcr0 = XCR0_X87 | XCR0_SSE, size = XSAVE_LEGACY_AND_HEADER;

	xcr0 |= cpuid_has(c, "avx") ? XCR0_YMM : 0;
	xcr0 |= cpuid_has(c, "mpx") ? XCR0_MPX : 0;
	xcr0 |= cpuid_has(c, "avx512f") ? XCR0_AVX512 : 0;
	xcr0 |= cpuid_has(c, "pku") ? XCR0_PKRU : 0;
	xcr0 |= cpuid_has(c, "amx_tile") ? XCR0_AMX : 0;
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function != 0xd)
			continue;
		if (!xsave || (e->index >= 2 && (e->index >= 32 || !(xcr0 >> e->index & 1)))) {
			e->eax = e->ebx = e->ecx = e->edx = 0;
			continue;
		}
		if (e->index == 0) {
			e->eax &= xcr0;
			e->edx = 0;
		} else if (e->index == 1 && !cpuid_has(c, "xsaves")) {
			e->ecx = e->edx = 0; /* IA32_XSS components: XSAVES only */
		}
	}
	if (!xsave)
		return;
	/* 0xD.0 ECX: the area for every component XCR0 may hold; EBX: for
	 * what XCR0 holds now, x87|SSE at reset (KVM updates it on XSETBV). */
	for (uint32_t i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 0xd && e->index >= 2 && e->index < 32 && (xcr0 >> e->index & 1))
			size = MAX(size, e->eax + e->ebx);
	}
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 0xd && e->index == 0) {
			e->ecx = size;
			e->ebx = XSAVE_LEGACY_AND_HEADER;
		}
	}
}

int cpu_model_apply(const struct cpu_model *m, struct kvm_cpuid2 *c, char *err, size_t errlen)
{
	struct cpuid_names missing = { 0 };

	if (cpu_model_is_host(m))
		return 0;
	cpu_model_missing(m, c, &missing);
	if (missing.count) {
		snprintf(err, errlen, "--cpu %s: this host's KVM cannot offer %s", m->name,
			 cpuid_names_text(&missing));
		return -ENOTSUP;
	}
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		for (size_t w = 0; w < ARRAY_SIZE(cpu_masked_words); w++)
			if (cpu_masked_words[w].fn == e->function &&
			    cpu_masked_words[w].idx == e->index)
				*cpuid_reg_ptr(e, cpu_masked_words[w].reg) &= cpu_model_allowed(
					m, e->function, e->index, cpu_masked_words[w].reg);
		for (size_t l = 0; l < ARRAY_SIZE(cpu_hidden_leaves); l++)
			if (cpu_hidden_leaves[l] == e->function)
				e->eax = e->ebx = e->ecx = e->edx = 0;
	}
	cpuid_apply_dependencies(c);
	cpuid_xsave_fixup(c);
	return 0;
}
