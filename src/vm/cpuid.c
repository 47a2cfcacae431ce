/* CPUID for each vCPU: start from KVM_GET_SUPPORTED_CPUID, then describe one
 * socket with `ncpus` cores of one thread each, APIC ID = vCPU index. The
 * topology leaves must agree with the MADT or Linux warns and may misnumber. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kestrel/cpuid.h"

#define CPUID_MAX_ENTRIES	 256
#define CPUID_1_ECX_HYPERVISOR	 (1u << 31)
#define CPUID_1_EDX_HTT		 (1u << 28)
#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)

int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out)
{
	size_t sz = sizeof(struct kvm_cpuid2) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = calloc(1, sz);

	if (!c)
		return -ENOMEM;
	c->nent = CPUID_MAX_ENTRIES;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		int ret = -errno;

		free(c);
		return ret;
	}
	/* KVM emulates the TSC-deadline LAPIC timer but leaves the CPUID bit to
	 * the VMM (KVM API doc, KVM_CAP_TSC_DEADLINE_TIMER). With it, Linux
	 * skips its ~100 ms LAPIC timer calibration at every boot. */
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0) {
		for (unsigned i = 0; i < c->nent; i++)
			if (c->entries[i].function == 1)
				c->entries[i].ecx |= CPUID_1_ECX_TSC_DEADLINE;
	}
	*out = c;
	return 0;
}

/* Bits needed to number n items: the x2APIC ID shift of a topology level. */
static unsigned order_base_2(unsigned n)
{
	unsigned s = 0;

	while ((1u << s) < n)
		s++;
	return s;
}

static void cpuid_topology_leaf(struct kvm_cpuid_entry2 *e, unsigned id, unsigned ncpus)
{
	/* SDM vol 2 CPUID leaf 0Bh/1Fh: level 0 = SMT (1 thread), level 1 = core. */
	switch (e->index) {
	case 0:
		e->eax = 0;
		e->ebx = 1;
		e->ecx = (1u << 8) | 0;
		break;
	case 1:
		e->eax = order_base_2(ncpus);
		e->ebx = ncpus;
		e->ecx = (2u << 8) | 1;
		break;
	default:
		e->eax = e->ebx = 0;
		e->ecx = e->index;
		break;
	}
	e->edx = id;
}

void cpuid_adjust(struct kvm_cpuid2 *c, unsigned id, unsigned ncpus)
{
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			/* EBX[31:24] initial APIC ID, [23:16] logical processors per package. */
			e->ebx = (e->ebx & 0xffff) | (id << 24) | (MIN(ncpus, 255u) << 16);
			e->ecx |= CPUID_1_ECX_HYPERVISOR;
			if (ncpus > 1)
				e->edx |= CPUID_1_EDX_HTT;
			else
				e->edx &= ~CPUID_1_EDX_HTT;
			break;
		case 4:
			/* Deterministic cache parameters: EAX[31:26] cores per package - 1,
			 * [25:14] threads sharing the cache - 1 (caches: L1/L2 per core, L3 shared). */
			e->eax &= 0x3fff;
			e->eax |= (ncpus - 1) << 26;
			if (((e->eax >> 5) & 7) >= 3)
				e->eax |= (ncpus - 1) << 14;
			break;
		case 0xb:
		case 0x1f: cpuid_topology_leaf(e, id, ncpus); break;
		case 0x80000008:
			/* AMD: ECX[7:0] cores - 1, [15:12] APIC ID size. */
			e->ecx = (e->ecx & ~0xf0ffu) | (order_base_2(ncpus) << 12) | (ncpus - 1);
			break;
		case 0x8000001e:
			/* AMD extended APIC ID, one thread per core, one node. */
			e->eax = id;
			e->ebx = id & 0xff;
			e->ecx = 0;
			break;
		default: break;
		}
	}
}

int cpuid_setup_vcpu(int vcpu_fd, const struct kvm_cpuid2 *supported, unsigned id, unsigned ncpus,
		     struct kvm_cpuid2 **set)
{
	size_t sz = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int ret = 0;

	*set = NULL;
	if (!c)
		return -ENOMEM;
	memcpy(c, supported, sz);
	cpuid_adjust(c, id, ncpus);
	if (ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0)
		ret = -errno;
	if (ret)
		free(c);
	else
		*set = c;
	return ret;
}
