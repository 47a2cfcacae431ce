/* Guest CPUID: KVM's supported table, adjusted per vCPU for APIC IDs and topology. */
#ifndef KESTREL_CPUID_H
#define KESTREL_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kestrel/util.h"

int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out) WARN_UNUSED;
/* Adjust a copy of the supported table for vCPU `id` of `ncpus` (one socket,
 * one thread per core, APIC ID = id) and KVM_SET_CPUID2 it; *set gets that
 * copy (malloc'd): the table the guest sees, which a saved VM records (some
 * KVM backends hand back other bits from KVM_GET_CPUID2). */
int cpuid_setup_vcpu(int vcpu_fd, const struct kvm_cpuid2 *supported, unsigned id, unsigned ncpus,
		     struct kvm_cpuid2 **set) WARN_UNUSED;
/* The same adjustment without the ioctl (unit-testable). */
void cpuid_adjust(struct kvm_cpuid2 *c, unsigned id, unsigned ncpus);

/* ---- feature bits and CPU models (src/vm/cpu_features.c, cpu_model.c) ---- */
enum { CPUID_EAX, CPUID_EBX, CPUID_ECX, CPUID_EDX };
/* One feature bit: leaf fn, subleaf idx, register, bit, Linux's name. */
struct cpuid_feature {
	uint32_t fn, idx;
	int reg;
	unsigned bit;
	const char *name;
};
const struct cpuid_feature *cpuid_feature_by_name(const char *name);
const struct cpuid_feature *cpuid_feature_at(size_t i); /* NULL past the end */
/* The entry for fn.idx (a leaf without a significant index matches any idx). */
const struct kvm_cpuid_entry2 *cpuid_entry(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx);
uint32_t cpuid_reg_get(const struct kvm_cpuid_entry2 *e, int reg);
uint32_t *cpuid_reg_ptr(struct kvm_cpuid_entry2 *e, int reg);
/* A list of feature names for one message: "avx2, avx512f and 3 more". */
struct cpuid_names {
	char text[320];
	size_t len;
	unsigned count, shown;
	bool full;
};
void cpuid_names_append(struct cpuid_names *l, uint32_t fn, uint32_t idx, int reg, uint32_t bits);
const char *cpuid_names_text(struct cpuid_names *l);

/* --cpu host|compat|x86-64-v1..v4 (docs/cpu.md). NULL means host. */
struct cpu_model;
const struct cpu_model *cpu_model_find(const char *name);
const struct cpu_model *cpu_model_at(size_t i); /* NULL past the end */
const char *cpu_model_name(const struct cpu_model *m);
bool cpu_model_is_host(const struct cpu_model *m);
/* The i-th feature the model requires (NULL past the end; none for host). */
const char *cpu_model_feature(const struct cpu_model *m, size_t i);
bool cpu_model_requires(const struct cpu_model *m, const char *name);
/* Whether the model lets the feature through when the host has it. */
bool cpu_model_shows(const struct cpu_model *m, const char *name);
/* Filter a KVM_GET_SUPPORTED_CPUID table to the model: -ENOTSUP with one
 * line naming every required feature the table lacks, else 0 with hidden
 * bits cleared and leaf 0xD made to agree. */
int cpu_model_apply(const struct cpu_model *m, struct kvm_cpuid2 *c, char *err,
		    size_t errlen) WARN_UNUSED;
/* Clear features whose prerequisite is clear (avx without xsave, ..). */
void cpuid_apply_dependencies(struct kvm_cpuid2 *c);
/* Leaf 0xD agrees with leaves 1 and 7: XCR0 components of hidden features
 * unsupported, their subleaves empty, the sizes recomputed. */
void cpuid_xsave_fixup(struct kvm_cpuid2 *c);

#endif
