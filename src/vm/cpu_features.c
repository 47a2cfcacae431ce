/* Names of CPUID feature bits, as Linux spells them in /proc/cpuinfo
 * (arch/x86/include/asm/cpufeatures.h) so a message names what a user
 * compares with `grep flags /proc/cpuinfo`. Bits of leaf 0x80000001 EDX that
 * repeat leaf 1 (AMD APM vol 3, E.4.2) carry the same names; XCR0 components
 * (leaf 0xD.0 EAX, SDM vol 1 13.1) are named "xstate-COMPONENT". */
#include <stdio.h>
#include <string.h>

#include "kestrel/cpuid.h"

#define W(f, i, r) f, i, CPUID_##r

/* clang-format off */
static const struct cpuid_feature cpuid_feature_table[] = {
	/* Leaf 1 EDX (SDM vol 2A, CPUID, table 3-11). */
	{ W(1, 0, EDX), 0, "fpu" }, { W(1, 0, EDX), 1, "vme" }, { W(1, 0, EDX), 2, "de" },
	{ W(1, 0, EDX), 3, "pse" }, { W(1, 0, EDX), 4, "tsc" }, { W(1, 0, EDX), 5, "msr" },
	{ W(1, 0, EDX), 6, "pae" }, { W(1, 0, EDX), 7, "mce" }, { W(1, 0, EDX), 8, "cx8" },
	{ W(1, 0, EDX), 9, "apic" }, { W(1, 0, EDX), 11, "sep" }, { W(1, 0, EDX), 12, "mtrr" },
	{ W(1, 0, EDX), 13, "pge" }, { W(1, 0, EDX), 14, "mca" }, { W(1, 0, EDX), 15, "cmov" },
	{ W(1, 0, EDX), 16, "pat" }, { W(1, 0, EDX), 17, "pse36" }, { W(1, 0, EDX), 18, "pn" },
	{ W(1, 0, EDX), 19, "clflush" }, { W(1, 0, EDX), 21, "dts" }, { W(1, 0, EDX), 22, "acpi" },
	{ W(1, 0, EDX), 23, "mmx" }, { W(1, 0, EDX), 24, "fxsr" }, { W(1, 0, EDX), 25, "sse" },
	{ W(1, 0, EDX), 26, "sse2" }, { W(1, 0, EDX), 27, "ss" }, { W(1, 0, EDX), 28, "ht" },
	{ W(1, 0, EDX), 29, "tm" }, { W(1, 0, EDX), 31, "pbe" },
	/* Leaf 1 ECX (table 3-10). */
	{ W(1, 0, ECX), 0, "pni" }, { W(1, 0, ECX), 1, "pclmulqdq" }, { W(1, 0, ECX), 2, "dtes64" },
	{ W(1, 0, ECX), 3, "monitor" }, { W(1, 0, ECX), 4, "ds_cpl" }, { W(1, 0, ECX), 5, "vmx" },
	{ W(1, 0, ECX), 6, "smx" }, { W(1, 0, ECX), 7, "est" }, { W(1, 0, ECX), 8, "tm2" },
	{ W(1, 0, ECX), 9, "ssse3" }, { W(1, 0, ECX), 10, "cid" }, { W(1, 0, ECX), 11, "sdbg" },
	{ W(1, 0, ECX), 12, "fma" }, { W(1, 0, ECX), 13, "cx16" }, { W(1, 0, ECX), 14, "xtpr" },
	{ W(1, 0, ECX), 15, "pdcm" }, { W(1, 0, ECX), 17, "pcid" }, { W(1, 0, ECX), 18, "dca" },
	{ W(1, 0, ECX), 19, "sse4_1" }, { W(1, 0, ECX), 20, "sse4_2" }, { W(1, 0, ECX), 21, "x2apic" },
	{ W(1, 0, ECX), 22, "movbe" }, { W(1, 0, ECX), 23, "popcnt" },
	{ W(1, 0, ECX), 24, "tsc_deadline_timer" }, { W(1, 0, ECX), 25, "aes" },
	{ W(1, 0, ECX), 26, "xsave" }, { W(1, 0, ECX), 27, "osxsave" }, { W(1, 0, ECX), 28, "avx" },
	{ W(1, 0, ECX), 29, "f16c" }, { W(1, 0, ECX), 30, "rdrand" },
	{ W(1, 0, ECX), 31, "hypervisor" },
	/* Leaf 7.0 EBX, ECX, EDX (table 3-8). */
	{ W(7, 0, EBX), 0, "fsgsbase" }, { W(7, 0, EBX), 1, "tsc_adjust" }, { W(7, 0, EBX), 2, "sgx" },
	{ W(7, 0, EBX), 3, "bmi1" }, { W(7, 0, EBX), 4, "hle" }, { W(7, 0, EBX), 5, "avx2" },
	{ W(7, 0, EBX), 7, "smep" }, { W(7, 0, EBX), 8, "bmi2" }, { W(7, 0, EBX), 9, "erms" },
	{ W(7, 0, EBX), 10, "invpcid" }, { W(7, 0, EBX), 11, "rtm" }, { W(7, 0, EBX), 12, "cqm" },
	{ W(7, 0, EBX), 14, "mpx" }, { W(7, 0, EBX), 15, "rdt_a" }, { W(7, 0, EBX), 16, "avx512f" },
	{ W(7, 0, EBX), 17, "avx512dq" }, { W(7, 0, EBX), 18, "rdseed" }, { W(7, 0, EBX), 19, "adx" },
	{ W(7, 0, EBX), 20, "smap" }, { W(7, 0, EBX), 21, "avx512ifma" },
	{ W(7, 0, EBX), 23, "clflushopt" }, { W(7, 0, EBX), 24, "clwb" },
	{ W(7, 0, EBX), 25, "intel_pt" }, { W(7, 0, EBX), 26, "avx512pf" },
	{ W(7, 0, EBX), 27, "avx512er" }, { W(7, 0, EBX), 28, "avx512cd" },
	{ W(7, 0, EBX), 29, "sha_ni" }, { W(7, 0, EBX), 30, "avx512bw" },
	{ W(7, 0, EBX), 31, "avx512vl" },
	{ W(7, 0, ECX), 1, "avx512vbmi" }, { W(7, 0, ECX), 2, "umip" }, { W(7, 0, ECX), 3, "pku" },
	{ W(7, 0, ECX), 4, "ospke" }, { W(7, 0, ECX), 5, "waitpkg" },
	{ W(7, 0, ECX), 6, "avx512_vbmi2" }, { W(7, 0, ECX), 7, "shstk" }, { W(7, 0, ECX), 8, "gfni" },
	{ W(7, 0, ECX), 9, "vaes" }, { W(7, 0, ECX), 10, "vpclmulqdq" },
	{ W(7, 0, ECX), 11, "avx512_vnni" }, { W(7, 0, ECX), 12, "avx512_bitalg" },
	{ W(7, 0, ECX), 13, "tme" }, { W(7, 0, ECX), 14, "avx512_vpopcntdq" },
	{ W(7, 0, ECX), 16, "la57" }, { W(7, 0, ECX), 22, "rdpid" },
	{ W(7, 0, ECX), 24, "bus_lock_detect" }, { W(7, 0, ECX), 25, "cldemote" },
	{ W(7, 0, ECX), 27, "movdiri" }, { W(7, 0, ECX), 28, "movdir64b" },
	{ W(7, 0, ECX), 29, "enqcmd" }, { W(7, 0, ECX), 30, "sgx_lc" },
	{ W(7, 0, EDX), 2, "avx512_4vnniw" }, { W(7, 0, EDX), 3, "avx512_4fmaps" },
	{ W(7, 0, EDX), 4, "fsrm" }, { W(7, 0, EDX), 8, "avx512_vp2intersect" },
	{ W(7, 0, EDX), 10, "md_clear" }, { W(7, 0, EDX), 14, "serialize" },
	{ W(7, 0, EDX), 16, "tsxldtrk" }, { W(7, 0, EDX), 18, "pconfig" },
	{ W(7, 0, EDX), 19, "arch_lbr" }, { W(7, 0, EDX), 20, "ibt" },
	{ W(7, 0, EDX), 22, "amx_bf16" }, { W(7, 0, EDX), 23, "avx512_fp16" },
	{ W(7, 0, EDX), 24, "amx_tile" }, { W(7, 0, EDX), 25, "amx_int8" },
	{ W(7, 0, EDX), 26, "spec_ctrl" }, { W(7, 0, EDX), 27, "intel_stibp" },
	{ W(7, 0, EDX), 28, "flush_l1d" }, { W(7, 0, EDX), 29, "arch_capabilities" },
	{ W(7, 0, EDX), 30, "core_capabilities" }, { W(7, 0, EDX), 31, "spec_ctrl_ssbd" },
	/* Leaf 7.1 EAX. */
	{ W(7, 1, EAX), 4, "avx_vnni" }, { W(7, 1, EAX), 5, "avx512_bf16" },
	{ W(7, 1, EAX), 10, "fzrm" }, { W(7, 1, EAX), 11, "fsrs" }, { W(7, 1, EAX), 12, "fsrc" },
	{ W(7, 1, EAX), 26, "lam" },
	/* Leaf 0xD.0 EAX: XCR0 components the guest may enable (SDM vol 1 13.1). */
	{ W(0xd, 0, EAX), 0, "xstate-x87" }, { W(0xd, 0, EAX), 1, "xstate-sse" },
	{ W(0xd, 0, EAX), 2, "xstate-avx" }, { W(0xd, 0, EAX), 3, "xstate-bndregs" },
	{ W(0xd, 0, EAX), 4, "xstate-bndcsr" }, { W(0xd, 0, EAX), 5, "xstate-opmask" },
	{ W(0xd, 0, EAX), 6, "xstate-zmm_hi256" }, { W(0xd, 0, EAX), 7, "xstate-hi16_zmm" },
	{ W(0xd, 0, EAX), 9, "xstate-pkru" }, { W(0xd, 0, EAX), 17, "xstate-xtilecfg" },
	{ W(0xd, 0, EAX), 18, "xstate-xtiledata" },
	/* Leaf 0xD.1 EAX. */
	{ W(0xd, 1, EAX), 0, "xsaveopt" }, { W(0xd, 1, EAX), 1, "xsavec" },
	{ W(0xd, 1, EAX), 2, "xgetbv1" }, { W(0xd, 1, EAX), 3, "xsaves" },
	{ W(0xd, 1, EAX), 4, "xfd" },
	/* Leaf 0x80000001 ECX, EDX (AMD APM vol 3, E.4.2). */
	{ W(0x80000001, 0, ECX), 0, "lahf_lm" }, { W(0x80000001, 0, ECX), 1, "cmp_legacy" },
	{ W(0x80000001, 0, ECX), 2, "svm" }, { W(0x80000001, 0, ECX), 3, "extapic" },
	{ W(0x80000001, 0, ECX), 4, "cr8_legacy" }, { W(0x80000001, 0, ECX), 5, "abm" },
	{ W(0x80000001, 0, ECX), 6, "sse4a" }, { W(0x80000001, 0, ECX), 7, "misalignsse" },
	{ W(0x80000001, 0, ECX), 8, "3dnowprefetch" }, { W(0x80000001, 0, ECX), 9, "osvw" },
	{ W(0x80000001, 0, ECX), 10, "ibs" }, { W(0x80000001, 0, ECX), 11, "xop" },
	{ W(0x80000001, 0, ECX), 12, "skinit" }, { W(0x80000001, 0, ECX), 13, "wdt" },
	{ W(0x80000001, 0, ECX), 15, "lwp" }, { W(0x80000001, 0, ECX), 16, "fma4" },
	{ W(0x80000001, 0, ECX), 17, "tce" }, { W(0x80000001, 0, ECX), 19, "nodeid_msr" },
	{ W(0x80000001, 0, ECX), 21, "tbm" }, { W(0x80000001, 0, ECX), 22, "topoext" },
	{ W(0x80000001, 0, ECX), 23, "perfctr_core" }, { W(0x80000001, 0, ECX), 24, "perfctr_nb" },
	{ W(0x80000001, 0, ECX), 26, "bpext" }, { W(0x80000001, 0, ECX), 27, "ptsc" },
	{ W(0x80000001, 0, ECX), 28, "perfctr_llc" }, { W(0x80000001, 0, ECX), 29, "mwaitx" },
	{ W(0x80000001, 0, EDX), 0, "fpu" }, { W(0x80000001, 0, EDX), 1, "vme" },
	{ W(0x80000001, 0, EDX), 2, "de" }, { W(0x80000001, 0, EDX), 3, "pse" },
	{ W(0x80000001, 0, EDX), 4, "tsc" }, { W(0x80000001, 0, EDX), 5, "msr" },
	{ W(0x80000001, 0, EDX), 6, "pae" }, { W(0x80000001, 0, EDX), 7, "mce" },
	{ W(0x80000001, 0, EDX), 8, "cx8" }, { W(0x80000001, 0, EDX), 9, "apic" },
	{ W(0x80000001, 0, EDX), 11, "syscall" }, { W(0x80000001, 0, EDX), 12, "mtrr" },
	{ W(0x80000001, 0, EDX), 13, "pge" }, { W(0x80000001, 0, EDX), 14, "mca" },
	{ W(0x80000001, 0, EDX), 15, "cmov" }, { W(0x80000001, 0, EDX), 16, "pat" },
	{ W(0x80000001, 0, EDX), 17, "pse36" }, { W(0x80000001, 0, EDX), 19, "mp" },
	{ W(0x80000001, 0, EDX), 20, "nx" }, { W(0x80000001, 0, EDX), 22, "mmxext" },
	{ W(0x80000001, 0, EDX), 23, "mmx" }, { W(0x80000001, 0, EDX), 24, "fxsr" },
	{ W(0x80000001, 0, EDX), 25, "fxsr_opt" }, { W(0x80000001, 0, EDX), 26, "pdpe1gb" },
	{ W(0x80000001, 0, EDX), 27, "rdtscp" }, { W(0x80000001, 0, EDX), 29, "lm" },
	{ W(0x80000001, 0, EDX), 30, "3dnowext" }, { W(0x80000001, 0, EDX), 31, "3dnow" },
	/* Leaf 0x80000007 EDX bit 8: invariant TSC (Linux shows constant_tsc
	 * and nonstop_tsc; QEMU calls it invtsc). */
	{ W(0x80000007, 0, EDX), 8, "invtsc" },
	/* Leaf 0x80000008 EBX (AMD APM vol 3, E.4.7). */
	{ W(0x80000008, 0, EBX), 0, "clzero" }, { W(0x80000008, 0, EBX), 1, "irperf" },
	{ W(0x80000008, 0, EBX), 2, "xsaveerptr" }, { W(0x80000008, 0, EBX), 4, "rdpru" },
	{ W(0x80000008, 0, EBX), 9, "wbnoinvd" }, { W(0x80000008, 0, EBX), 12, "amd_ibpb" },
	{ W(0x80000008, 0, EBX), 14, "amd_ibrs" }, { W(0x80000008, 0, EBX), 15, "amd_stibp" },
	{ W(0x80000008, 0, EBX), 24, "amd_ssbd" }, { W(0x80000008, 0, EBX), 25, "virt_ssbd" },
	{ W(0x80000008, 0, EBX), 26, "amd_ssb_no" },
};
/* clang-format on */

const struct cpuid_feature *cpuid_feature_by_name(const char *name)
{
	/* The first match: a leaf 1 name before its 0x80000001 repeat. */
	for (size_t i = 0; i < ARRAY_SIZE(cpuid_feature_table); i++)
		if (strcmp(cpuid_feature_table[i].name, name) == 0)
			return &cpuid_feature_table[i];
	return NULL;
}

const struct cpuid_feature *cpuid_feature_at(size_t i)
{
	return i < ARRAY_SIZE(cpuid_feature_table) ? &cpuid_feature_table[i] : NULL;
}

uint32_t cpuid_reg_get(const struct kvm_cpuid_entry2 *e, int reg)
{
	return reg == CPUID_EAX	  ? e->eax
	       : reg == CPUID_EBX ? e->ebx
	       : reg == CPUID_ECX ? e->ecx
				  : e->edx;
}

uint32_t *cpuid_reg_ptr(struct kvm_cpuid_entry2 *e, int reg)
{
	return reg == CPUID_EAX	  ? &e->eax
	       : reg == CPUID_EBX ? &e->ebx
	       : reg == CPUID_ECX ? &e->ecx
				  : &e->edx;
}

void cpuid_names_append(struct cpuid_names *l, uint32_t fn, uint32_t idx, int reg, uint32_t bits)
{
	for (unsigned bit = 0; bit < 32; bit++) {
		const char *name = NULL;
		char unnamed[48];
		int w;

		if (!(bits >> bit & 1))
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(cpuid_feature_table) && !name; i++) {
			const struct cpuid_feature *f = &cpuid_feature_table[i];

			if (f->fn == fn && f->idx == idx && f->reg == reg && f->bit == bit)
				name = f->name;
		}
		if (!name) {
			snprintf(unnamed, sizeof(unnamed), "CPUID %#x.%u e%cx bit %u", fn, idx,
				 "abcd"[reg], bit);
			name = unnamed;
		}
		l->count++;
		/* Room kept for cpuid_names_text's " and N more". */
		w = snprintf(NULL, 0, "%s%s", l->shown ? ", " : "", name);
		if (l->full || l->len + (size_t)w + 24 > sizeof(l->text)) {
			l->full = true;
			continue;
		}
		l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len, "%s%s",
					   l->shown ? ", " : "", name);
		l->shown++;
	}
}

const char *cpuid_names_text(struct cpuid_names *l)
{
	if (l->count > l->shown)
		snprintf(l->text + l->len, sizeof(l->text) - l->len, " and %u more",
			 l->count - l->shown);
	return l->text;
}

const struct kvm_cpuid_entry2 *cpuid_entry(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn &&
		    !(c->entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX))
			return &c->entries[i];
	return NULL;
}
