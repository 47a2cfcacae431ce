/* cpuid.bin: what CPUID shows the guest, for --cpu (docs/cpu.md). Prints
 * "cpuid: has NAME" for each feature below that is set (names as Linux's
 * /proc/cpuinfo), the raw feature words and XCR0's supported mask (leaf 0xD),
 * then checks that leaf 0xD agrees with leaf 1 (no YMM state without AVX,
 * SDM vol 1 13.2). The host test decides what must be hidden. Runs in ring
 * 3, where a VMM's table reaches the guest only if CPUID exits (it does
 * under KVM on SVM/VMX; on a PVM host ring 3 sees the host's own CPUID). */
#include "guest.h"

static const struct {
	const char *name;
	uint32_t leaf;
	uint8_t reg; /* 2 ecx, 3 edx, 1 ebx */
	uint8_t bit;
} features[] = {
	{ "sse2", 1, 3, 26 },
	{ "pni", 1, 2, 0 },
	{ "ssse3", 1, 2, 9 },
	{ "cx16", 1, 2, 13 },
	{ "sse4_1", 1, 2, 19 },
	{ "sse4_2", 1, 2, 20 },
	{ "x2apic", 1, 2, 21 },
	{ "popcnt", 1, 2, 23 },
	{ "aes", 1, 2, 25 },
	{ "xsave", 1, 2, 26 },
	{ "avx", 1, 2, 28 },
	{ "rdrand", 1, 2, 30 },
	{ "hypervisor", 1, 2, 31 },
	{ "tsc_adjust", 7, 1, 1 },
	{ "bmi1", 7, 1, 3 },
	{ "avx2", 7, 1, 5 },
	{ "smep", 7, 1, 7 },
	{ "bmi2", 7, 1, 8 },
	{ "avx512f", 7, 1, 16 },
	{ "sha_ni", 7, 1, 29 },
	{ "lahf_lm", 0x80000001, 2, 0 },
	{ "svm", 0x80000001, 2, 2 },
	{ "abm", 0x80000001, 2, 5 },
	{ "nx", 0x80000001, 3, 20 },
	{ "pdpe1gb", 0x80000001, 3, 26 },
	{ "rdtscp", 0x80000001, 3, 27 },
	{ "lm", 0x80000001, 3, 29 },
};

static uint32_t reg_of(struct cpuid_regs r, int reg)
{
	return reg == 0 ? r.eax : reg == 1 ? r.ebx : reg == 2 ? r.ecx : r.edx;
}

int main(void)
{
	uint32_t max = cpuid(0, 0).eax, xmax = cpuid(0x80000000, 0).eax;
	struct cpuid_regs l1 = cpuid(1, 0), l7 = { 0 }, x1 = { 0 }, d0 = { 0 };

	if (max >= 7)
		l7 = cpuid(7, 0);
	if (max >= 0xd)
		d0 = cpuid(0xd, 0);
	if (xmax >= 0x80000001)
		x1 = cpuid(0x80000001, 0);
	gprintf("cpuid: leaf1 ecx=%08x edx=%08x leaf7 ebx=%08x ecx=%08x edx=%08x\n", l1.ecx, l1.edx,
		l7.ebx, l7.ecx, l7.edx);
	gprintf("cpuid: ext1 ecx=%08x edx=%08x xcr0-mask=%08x\n", x1.ecx, x1.edx, d0.eax);
	/* EBX[23:16]: the VMM's vCPU count (cpuid_adjust), so the test can
	 * tell whether the VMM's table is what ring 3 sees. */
	gprintf("cpuid: logical=%u\n", (l1.ebx >> 16) & 0xff);
	for (unsigned i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
		struct cpuid_regs r = features[i].leaf == 1 ? l1 : features[i].leaf == 7 ? l7 : x1;

		if (reg_of(r, features[i].reg) >> features[i].bit & 1)
			gprintf("cpuid: has %s\n", features[i].name);
	}
	check(l1.edx >> 26 & 1, "SSE2 (every x86-64 CPU)");
	check((l1.ecx >> 28 & 1) || !(d0.eax & 4), "no YMM state in XCR0's mask without AVX");
	check((l1.ecx >> 26 & 1) || d0.eax == 0, "leaf 0xD empty without XSAVE (mask %#x)", d0.eax);
	return check_result(GUEST_EXIT_FAIL);
}
