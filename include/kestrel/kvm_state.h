/* What KVM holds of a VM, as data: each vCPU's registers and pending events
 * (migrate/vcpu_state.c), the in-kernel PIC, IOAPIC and PIT and the kvmclock
 * (migrate/irqchip_state.c). Each has a get (ioctls), a put (encode into a
 * record body of fixed-endian fields, docs/state.md), a parse (decode and
 * check every field of a hostile body) and a set (ioctls, in the order KVM
 * needs). The encoders never see KVM, so tests can drive them alone. */
#ifndef KESTREL_KVM_STATE_H
#define KESTREL_KVM_STATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/state.h"
#include "kestrel/util.h"

#define VCPU_MSRS_MAX	256
#define VCPU_XSAVE_MAX	(64u * 1024)
#define VCPU_XCRS_MAX	16   /* KVM_MAX_XCRS */
#define VCPU_LAPIC_SIZE 1024 /* KVM_APIC_REG_SIZE */

/* What this host's KVM offers for a vCPU's state (vcpu_caps_probe). */
struct vcpu_caps {
	uint32_t xsave_size; /* 0: no XSAVE (KVM_GET_FPU); else the buffer KVM wants */
	bool xsave2;	     /* KVM_GET_XSAVE2 (xsave_size may exceed 4096) */
	bool xcrs, debugregs;
	uint32_t nmsrs; /* MSRs KVM lists and lets us read back, ascending */
	uint32_t msrs[VCPU_MSRS_MAX];
};

#define VCPU_F_XSAVE	 1u
#define VCPU_F_XCRS	 2u
#define VCPU_F_DEBUGREGS 4u

struct vcpu_state {
	uint32_t index;
	uint32_t flags; /* VCPU_F_*: which optional parts are there */
	uint32_t tsc_khz;
	uint32_t mp_state;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint32_t xsave_len; /* VCPU_F_XSAVE */
	uint8_t *xsave;
	struct kvm_fpu fpu; /* without VCPU_F_XSAVE */
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dregs;
	uint8_t lapic[VCPU_LAPIC_SIZE];
	uint32_t nmsrs;
	struct kvm_msr_entry msrs[VCPU_MSRS_MAX];
	struct kvm_vcpu_events events;
};

/* probe_fd: a vCPU that has not run, used to find which listed MSRs KVM
 * really returns. 0 or -errno. */
int vcpu_caps_probe(int kvm_fd, int probe_fd, struct vcpu_caps *caps) WARN_UNUSED;
/* The vCPU must be outside KVM_RUN with its last exit completed
 * (vcpu.c parks it so). 0 or -errno; *what names the ioctl that failed. */
int vcpu_state_get(int fd, const struct vcpu_caps *caps, uint32_t index, struct vcpu_state *s,
		   const char **what) WARN_UNUSED;
/* Set in Firecracker's order (migrate/vcpu_state.c says why). The parts
 * must match this host's caps. 0 or -errno with one line in err. */
int vcpu_state_set(int fd, const struct vcpu_caps *caps, const struct vcpu_state *s, char *err,
		   size_t errlen) WARN_UNUSED;
void vcpu_state_put(struct state_buf *b, const struct vcpu_state *s);
/* Decode and check a record body (all of it). 0 or -EINVAL; on success the
 * state owns a malloc'd xsave buffer: vcpu_state_free. */
int vcpu_state_parse(struct state_buf *b, struct vcpu_state *s) WARN_UNUSED;
void vcpu_state_free(struct vcpu_state *s);

/* CPUID tables, one per vCPU (the STREAM_CPUI record). */
#define CPUID_SAVE_MAX_ENTRIES 256
void cpuid_state_put(struct state_buf *b, const struct kvm_cpuid2 *const *tabs, unsigned n);
/* Exactly n tables; each malloc'd (free each, then the array). */
int cpuid_state_parse(struct state_buf *b, unsigned n, struct kvm_cpuid2 ***out) WARN_UNUSED;
/* The saved table must ask for nothing this host cannot give (the feature
 * bits of leaves 1, 7, 0xd, 0x80000001, 0x80000007 and 0x80000008 against
 * the supported table). 0, or -ENOTSUP with one line naming every missing
 * feature: "the saved CPU has avx2, avx512f that this host's KVM cannot
 * offer". */
int cpuid_state_check(const struct kvm_cpuid2 *saved, const struct kvm_cpuid2 *supported, char *err,
		      size_t errlen) WARN_UNUSED;

/* ---- the VM's own: irqchip, PIT, clock ---- */
struct vm_kvm_state {
	struct kvm_pic_state pic[2]; /* master, slave */
	struct kvm_ioapic_state ioapic;
	struct kvm_pit_state2 pit;
	uint64_t clock;	      /* kvmclock ns (KVM_GET_CLOCK) */
	uint64_t realtime_ns; /* host CLOCK_REALTIME at save */
};

int vm_kvm_state_get(int vm_fd, struct vm_kvm_state *s, const char **what) WARN_UNUSED;
int vm_kvm_state_set(int vm_fd, const struct vm_kvm_state *s, char *err, size_t errlen) WARN_UNUSED;
/* Three record bodies: IRQC (PICs + IOAPIC), PIT2, CLCK. */
void irqchip_state_put(struct state_buf *b, const struct vm_kvm_state *s);
void pit_state_put(struct state_buf *b, const struct vm_kvm_state *s);
void clock_state_put(struct state_buf *b, const struct vm_kvm_state *s);
int irqchip_state_parse(struct state_buf *b, struct vm_kvm_state *s) WARN_UNUSED;
int pit_state_parse(struct state_buf *b, struct vm_kvm_state *s) WARN_UNUSED;
int clock_state_parse(struct state_buf *b, struct vm_kvm_state *s) WARN_UNUSED;

#endif
