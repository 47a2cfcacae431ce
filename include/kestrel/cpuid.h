/* Guest CPUID: KVM's supported table, adjusted per vCPU for APIC IDs and topology. */
#ifndef KESTREL_CPUID_H
#define KESTREL_CPUID_H

#include <linux/kvm.h>
#include "kestrel/util.h"

int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out) WARN_UNUSED;
/* Adjust a copy of the supported table for vCPU `id` of `ncpus` (one socket,
 * one thread per core, APIC ID = id) and KVM_SET_CPUID2 it; *set gets that
 * copy (malloc'd): the table the guest sees, which a saved VM records (some
 * KVM backends hand back other bits from KVM_GET_CPUID2). */
int cpuid_setup_vcpu(int vcpu_fd, const struct kvm_cpuid2 *supported, unsigned id,
		     unsigned ncpus, struct kvm_cpuid2 **set) WARN_UNUSED;
/* The same adjustment without the ioctl (unit-testable). */
void cpuid_adjust(struct kvm_cpuid2 *c, unsigned id, unsigned ncpus);

#endif
