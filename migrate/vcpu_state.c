/* One vCPU's state for a saved VM (record VCPU, docs/state.md): registers,
 * segment and control registers, FPU/XSAVE, XCRs, debug registers, the LAPIC
 * page, MSRs (TSC and kvmclock among them), pending events and the MP state.
 *
 * Order matters, and we follow Firecracker's (src/vmm/src/arch/x86_64/vcpu.rs),
 * which documents why:
 *  - save: MP state first (KVM_GET_MP_STATE runs kvm_apic_accept_events(),
 *    which can change LAPIC and vCPU state), events last;
 *  - restore: regs before events (KVM_SET_REGS clears a pending exception
 *    that KVM_SET_VCPU_EVENTS puts back), sregs before the LAPIC (sregs
 *    carry the APIC base), the LAPIC before the MSRs (the TSC-deadline MSR
 *    only sticks with the LAPIC set up), and among the MSRs the TSC before
 *    the TSC deadline (we keep them in ascending order).
 * The vCPU must have completed its last exit (a KVM_RUN with immediate_exit
 * after an I/O exit: KVM API doc, KVM_EXIT_IO): src/vm/vcpu.c parks so. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kestrel/kvm_state.h"

#define VCPU_F_ALL (VCPU_F_XSAVE | VCPU_F_XCRS | VCPU_F_DEBUGREGS)
#define VCPU_EVENTS_VALID                                                                     \
	(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |                  \
	 KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD | \
	 KVM_VCPUEVENT_VALID_TRIPLE_FAULT)
/* x86's MP states: RUNNABLE, UNINITIALIZED, INIT_RECEIVED, HALTED, SIPI_RECEIVED. */
#define VCPU_MP_STATE_MAX KVM_MP_STATE_SIPI_RECEIVED
/* Denied as Firecracker denies it: Linux does not export IA32_MCG_CTL. */
#define MSR_IA32_MCG_CTL  0x17b

/* ---- KVM ---- */

static int msr_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Read the listed MSRs on probe_fd, dropping any KVM refuses to return
 * (KVM_GET_MSRS stops at the first one it cannot read). */
static int vcpu_caps_msrs(int kvm_fd, int probe_fd, struct vcpu_caps *caps)
{
	struct {
		struct kvm_msr_list l;
		uint32_t idx[VCPU_MSRS_MAX];
	} list = { .l.nmsrs = VCPU_MSRS_MAX };
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[VCPU_MSRS_MAX];
	} m;
	uint32_t n = 0;

	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &list) < 0)
		return -errno;
	for (uint32_t i = 0; i < list.l.nmsrs && i < VCPU_MSRS_MAX; i++)
		if (list.idx[i] != MSR_IA32_MCG_CTL)
			caps->msrs[n++] = list.idx[i];
	qsort(caps->msrs, n, sizeof(caps->msrs[0]), msr_cmp);
	for (uint32_t start = 0; start < n;) {
		int got;

		memset(&m, 0, sizeof(m));
		m.h.nmsrs = n - start;
		for (uint32_t i = start; i < n; i++)
			m.e[i - start].index = caps->msrs[i];
		got = ioctl(probe_fd, KVM_GET_MSRS, &m);
		if (got < 0)
			return -errno;
		start += (uint32_t)got;
		if (start < n) { /* drop the one it refused */
			memmove(&caps->msrs[start], &caps->msrs[start + 1],
				(n - start - 1) * sizeof(caps->msrs[0]));
			n--;
		}
	}
	caps->nmsrs = n;
	return 0;
}

int vcpu_caps_probe(int kvm_fd, int probe_fd, struct vcpu_caps *caps)
{
	int x2 = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

	memset(caps, 0, sizeof(*caps));
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0) {
		caps->xsave_size = sizeof(struct kvm_xsave);
		if (x2 > 0 && (unsigned)x2 <= VCPU_XSAVE_MAX) {
			caps->xsave2 = true;
			caps->xsave_size = MAX((uint32_t)x2, (uint32_t)sizeof(struct kvm_xsave));
		}
	}
	caps->xcrs = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	caps->debugregs = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DEBUGREGS) > 0;
	return vcpu_caps_msrs(kvm_fd, probe_fd, caps);
}

static int vcpu_get_fpu(int fd, const struct vcpu_caps *caps, struct vcpu_state *s)
{
	if (!caps->xsave_size)
		return ioctl(fd, KVM_GET_FPU, &s->fpu) < 0 ? -errno : 0;
	s->xsave = calloc(1, caps->xsave_size);
	if (!s->xsave)
		return -ENOMEM;
	s->xsave_len = caps->xsave_size;
	s->flags |= VCPU_F_XSAVE;
	return ioctl(fd, caps->xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, s->xsave) < 0 ? -errno : 0;
}

static int vcpu_get_msrs(int fd, const struct vcpu_caps *caps, struct vcpu_state *s)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[VCPU_MSRS_MAX];
	} m = { .h.nmsrs = caps->nmsrs };
	int got;

	for (uint32_t i = 0; i < caps->nmsrs; i++)
		m.e[i].index = caps->msrs[i];
	got = ioctl(fd, KVM_GET_MSRS, &m);
	if (got < 0)
		return -errno;
	if ((uint32_t)got != caps->nmsrs)
		return -EIO;
	s->nmsrs = caps->nmsrs;
	memcpy(s->msrs, m.e, caps->nmsrs * sizeof(m.e[0]));
	return 0;
}

#define VCPU_GET(req, arg, name)                       \
	do {                                           \
		if (!ret && ioctl(fd, req, arg) < 0) { \
			ret = -errno;                  \
			*what = name;                  \
		}                                      \
	} while (0)

int vcpu_state_get(int fd, const struct vcpu_caps *caps, uint32_t index, struct vcpu_state *s,
		   const char **what)
{
	struct kvm_mp_state mp;
	struct kvm_lapic_state lapic;
	int ret = 0, khz;

	memset(s, 0, sizeof(*s));
	s->index = index;
	*what = "";
	VCPU_GET(KVM_GET_MP_STATE, &mp, "KVM_GET_MP_STATE");
	s->mp_state = mp.mp_state;
	VCPU_GET(KVM_GET_REGS, &s->regs, "KVM_GET_REGS");
	VCPU_GET(KVM_GET_SREGS, &s->sregs, "KVM_GET_SREGS");
	if (!ret && (ret = vcpu_get_fpu(fd, caps, s)))
		*what = caps->xsave_size ? "KVM_GET_XSAVE" : "KVM_GET_FPU";
	if (caps->xcrs) {
		s->flags |= VCPU_F_XCRS;
		VCPU_GET(KVM_GET_XCRS, &s->xcrs, "KVM_GET_XCRS");
	}
	if (caps->debugregs) {
		s->flags |= VCPU_F_DEBUGREGS;
		VCPU_GET(KVM_GET_DEBUGREGS, &s->dregs, "KVM_GET_DEBUGREGS");
	}
	VCPU_GET(KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC");
	memcpy(s->lapic, lapic.regs, VCPU_LAPIC_SIZE);
	if (!ret) {
		khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
		s->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	}
	if (!ret && (ret = vcpu_get_msrs(fd, caps, s)))
		*what = "KVM_GET_MSRS";
	VCPU_GET(KVM_GET_VCPU_EVENTS, &s->events, "KVM_GET_VCPU_EVENTS");
	s->events.flags &= VCPU_EVENTS_VALID;
	if (ret)
		vcpu_state_free(s);
	return ret;
}

/* Every saved MSR must be one this host lists: an unknown index in a
 * stream is refused rather than handed to KVM. */
static int vcpu_msrs_known(const struct vcpu_caps *caps, const struct vcpu_state *s, char *err,
			   size_t errlen)
{
	for (uint32_t i = 0; i < s->nmsrs; i++) {
		uint32_t idx = s->msrs[i].index;

		if (!bsearch(&idx, caps->msrs, caps->nmsrs, sizeof(caps->msrs[0]), msr_cmp)) {
			snprintf(err, errlen, "vCPU %u: MSR %#x is not one this host's KVM saves",
				 s->index, idx);
			return -ENOTSUP;
		}
	}
	return 0;
}

static int vcpu_parts_match(const struct vcpu_caps *caps, const struct vcpu_state *s, char *err,
			    size_t errlen)
{
	if (!(s->flags & VCPU_F_XSAVE) != !caps->xsave_size ||
	    ((s->flags & VCPU_F_XSAVE) && s->xsave_len != caps->xsave_size)) {
		snprintf(err, errlen, "vCPU %u: XSAVE area of %u bytes; this host's KVM uses %u",
			 s->index, s->xsave_len, caps->xsave_size);
		return -ENOTSUP;
	}
	if (((s->flags & VCPU_F_XCRS) && !caps->xcrs) ||
	    ((s->flags & VCPU_F_DEBUGREGS) && !caps->debugregs)) {
		snprintf(err, errlen, "vCPU %u: this host's KVM cannot set XCRs or debug registers",
			 s->index);
		return -ENOTSUP;
	}
	return vcpu_msrs_known(caps, s, err, errlen);
}

#define VCPU_SET(req, arg, name)                                                                   \
	do {                                                                                       \
		if (!ret && ioctl(fd, req, arg) < 0) {                                             \
			ret = -errno;                                                              \
			snprintf(err, errlen, "vCPU %u: " name ": %s", s->index, strerror(errno)); \
		}                                                                                  \
	} while (0)

int vcpu_state_set(int fd, const struct vcpu_caps *caps, const struct vcpu_state *s, char *err,
		   size_t errlen)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[VCPU_MSRS_MAX];
	} m;
	struct kvm_mp_state mp = { .mp_state = s->mp_state };
	struct kvm_lapic_state lapic;
	int ret = vcpu_parts_match(caps, s, err, errlen), set;

	VCPU_SET(KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
	VCPU_SET(KVM_SET_REGS, &s->regs, "KVM_SET_REGS");
	VCPU_SET(KVM_SET_SREGS, &s->sregs, "KVM_SET_SREGS");
	if (s->flags & VCPU_F_XSAVE)
		VCPU_SET(KVM_SET_XSAVE, s->xsave, "KVM_SET_XSAVE");
	else
		VCPU_SET(KVM_SET_FPU, &s->fpu, "KVM_SET_FPU");
	if (s->flags & VCPU_F_XCRS)
		VCPU_SET(KVM_SET_XCRS, &s->xcrs, "KVM_SET_XCRS");
	if (s->flags & VCPU_F_DEBUGREGS)
		VCPU_SET(KVM_SET_DEBUGREGS, &s->dregs, "KVM_SET_DEBUGREGS");
	memcpy(lapic.regs, s->lapic, VCPU_LAPIC_SIZE);
	VCPU_SET(KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
	if (!ret) {
		m.h = (struct kvm_msrs){ .nmsrs = s->nmsrs };
		memcpy(m.e, s->msrs, s->nmsrs * sizeof(m.e[0]));
		set = ioctl(fd, KVM_SET_MSRS, &m);
		if (set < 0 || (uint32_t)set != s->nmsrs) {
			ret = set < 0 ? -errno : -EINVAL;
			snprintf(err, errlen, "vCPU %u: KVM_SET_MSRS refused MSR %#x", s->index,
				 set < 0 ? 0 : s->msrs[set].index);
		}
	}
	VCPU_SET(KVM_SET_VCPU_EVENTS, &s->events, "KVM_SET_VCPU_EVENTS");
	return ret;
}

void vcpu_state_free(struct vcpu_state *s)
{
	free(s->xsave);
	s->xsave = NULL;
	s->xsave_len = 0;
}

/* ---- encoding ---- */

#define SEG_F(m) STATE_FIELD(struct kvm_segment, m)
static const struct state_field seg_fields[] = {
	SEG_F(base), SEG_F(limit), SEG_F(selector), SEG_F(type), SEG_F(present), SEG_F(dpl),
	SEG_F(db),   SEG_F(s),	   SEG_F(l),	    SEG_F(g),	 SEG_F(avl),	 SEG_F(unusable),
};

static bool seg_ok(const struct kvm_segment *g)
{
	return g->type <= 15 && g->dpl <= 3 &&
	       (g->present | g->db | g->s | g->l | g->g | g->avl | g->unusable) <= 1;
}

static struct kvm_segment *sregs_seg(struct kvm_sregs *r, int i)
{
	struct kvm_segment *segs[] = { &r->cs, &r->ds, &r->es, &r->fs,
				       &r->gs, &r->ss, &r->tr, &r->ldt };

	return segs[i];
}

/* The sregs after their eight segments. */
#define SREGS_F(m) STATE_FIELD(struct kvm_sregs, m)
/* clang-format off */
static const struct state_field sregs_fields[] = {
	SREGS_F(gdt.base), SREGS_F(gdt.limit), SREGS_F(idt.base), SREGS_F(idt.limit),
	SREGS_F(cr0),	   SREGS_F(cr2),       SREGS_F(cr3),	  SREGS_F(cr4),
	SREGS_F(cr8),	   SREGS_F(efer),      SREGS_F(apic_base), SREGS_F(interrupt_bitmap[0]),
	SREGS_F(interrupt_bitmap[1]), SREGS_F(interrupt_bitmap[2]), SREGS_F(interrupt_bitmap[3]),
};
/* clang-format on */
_Static_assert(sizeof(((struct kvm_sregs *)0)->interrupt_bitmap) == 4 * 8, "interrupt_bitmap");

static void sregs_put(struct state_buf *b, const struct kvm_sregs *r)
{
	for (int i = 0; i < 8; i++)
		state_put_fields(b, sregs_seg((struct kvm_sregs *)r, i), seg_fields,
				 ARRAY_SIZE(seg_fields));
	state_put_fields(b, r, sregs_fields, ARRAY_SIZE(sregs_fields));
}

static bool sregs_get(struct state_buf *b, struct kvm_sregs *r)
{
	bool ok = true;

	memset(r, 0, sizeof(*r));
	for (int i = 0; i < 8; i++) {
		state_get_fields(b, sregs_seg(r, i), seg_fields, ARRAY_SIZE(seg_fields));
		ok &= seg_ok(sregs_seg(r, i));
	}
	state_get_fields(b, r, sregs_fields, ARRAY_SIZE(sregs_fields));
	/* CR8 is the TPR: 4 bits (SDM vol 3 10.8.6.1). */
	return ok && r->cr8 <= 15;
}

#define REGS_F(m) STATE_FIELD(struct kvm_regs, m)
static const struct state_field regs_fields[] = {
	REGS_F(rax), REGS_F(rbx), REGS_F(rcx), REGS_F(rdx), REGS_F(rsi), REGS_F(rdi),
	REGS_F(rsp), REGS_F(rbp), REGS_F(r8),  REGS_F(r9),  REGS_F(r10), REGS_F(r11),
	REGS_F(r12), REGS_F(r13), REGS_F(r14), REGS_F(r15), REGS_F(rip), REGS_F(rflags),
};

/* The legacy FPU, when the host has no XSAVE. */
#define FPU_F(m) STATE_FIELD(struct kvm_fpu, m)
static const struct state_field fpu_fields[] = {
	FPU_F(fpr),	FPU_F(fcw),	FPU_F(fsw), FPU_F(ftwx),  FPU_F(last_opcode),
	FPU_F(last_ip), FPU_F(last_dp), FPU_F(xmm), FPU_F(mxcsr),
};

#define DREGS_F(m) STATE_FIELD(struct kvm_debugregs, m)
static const struct state_field dregs_fields[] = {
	DREGS_F(db[0]), DREGS_F(db[1]), DREGS_F(db[2]), DREGS_F(db[3]),
	DREGS_F(dr6),	DREGS_F(dr7),	DREGS_F(flags),
};

#define EV_F(m) STATE_FIELD(struct kvm_vcpu_events, m)
/* clang-format off */
static const struct state_field events_fields[] = {
	EV_F(exception.injected), EV_F(exception.nr),	   EV_F(exception.has_error_code),
	EV_F(exception.pending),  EV_F(exception.error_code), EV_F(interrupt.injected),
	EV_F(interrupt.nr),	  EV_F(interrupt.soft),	   EV_F(interrupt.shadow),
	EV_F(nmi.injected),	  EV_F(nmi.pending),	   EV_F(nmi.masked),
	EV_F(sipi_vector),	  EV_F(flags),		   EV_F(smi.smm),
	EV_F(smi.pending),	  EV_F(smi.smm_inside_nmi), EV_F(smi.latched_init),
	EV_F(triple_fault.pending), EV_F(exception_has_payload), EV_F(exception_payload),
};
/* clang-format on */

static bool events_get(struct state_buf *b, struct kvm_vcpu_events *e)
{
	memset(e, 0, sizeof(*e));
	state_get_fields(b, e, events_fields, ARRAY_SIZE(events_fields));
	/* Exception vectors are 0-31 (SDM vol 3 6.3.1); the flags KVM knows;
	 * every yes/no a 0 or 1; the interrupt shadow KVM's two bits. */
	return e->exception.nr < 32 && !(e->flags & ~VCPU_EVENTS_VALID) && e->sipi_vector <= 0xff &&
	       (e->exception.injected | e->exception.has_error_code | e->exception.pending |
		e->interrupt.injected | e->interrupt.soft | e->nmi.injected | e->nmi.pending |
		e->nmi.masked | e->smi.smm | e->smi.pending | e->smi.smm_inside_nmi |
		e->smi.latched_init | e->triple_fault.pending | e->exception_has_payload) <= 1 &&
	       e->interrupt.shadow <= 3;
}

/* Body: u32 index, u32 flags (VCPU_F_*), u32 TSC kHz, u32 MP state, 18 u64
 * general registers (rax..r15, rip, rflags), the sregs, the FPU (XSAVE: u32
 * length + the area; else the legacy FPU fields), the XCRs (u32 count, then
 * u32 xcr + u64 value each), the debug registers (db0-3, dr6, dr7, flags),
 * the 1024-byte LAPIC page, the MSRs (u32 count, then u32 index + u64 value
 * each), the pending events. Optional parts are present per flags. */
void vcpu_state_put(struct state_buf *b, const struct vcpu_state *s)
{
	state_put_u32(b, s->index);
	state_put_u32(b, s->flags);
	state_put_u32(b, s->tsc_khz);
	state_put_u32(b, s->mp_state);
	state_put_fields(b, &s->regs, regs_fields, ARRAY_SIZE(regs_fields));
	sregs_put(b, &s->sregs);
	if (s->flags & VCPU_F_XSAVE) {
		state_put_u32(b, s->xsave_len);
		state_put_bytes(b, s->xsave, s->xsave_len);
	} else {
		state_put_fields(b, &s->fpu, fpu_fields, ARRAY_SIZE(fpu_fields));
	}
	if (s->flags & VCPU_F_XCRS) {
		state_put_u32(b, s->xcrs.nr_xcrs);
		for (uint32_t i = 0; i < s->xcrs.nr_xcrs && i < VCPU_XCRS_MAX; i++) {
			state_put_u32(b, s->xcrs.xcrs[i].xcr);
			state_put_u64(b, s->xcrs.xcrs[i].value);
		}
	}
	if (s->flags & VCPU_F_DEBUGREGS)
		state_put_fields(b, &s->dregs, dregs_fields, ARRAY_SIZE(dregs_fields));
	state_put_bytes(b, s->lapic, VCPU_LAPIC_SIZE);
	/* The count as it is (a loader refuses one above VCPU_MSRS_MAX), but
	 * never an entry past the array. */
	state_put_u32(b, s->nmsrs);
	for (uint32_t i = 0; i < s->nmsrs && i < VCPU_MSRS_MAX; i++) {
		state_put_u32(b, s->msrs[i].index);
		state_put_u64(b, s->msrs[i].data);
	}
	state_put_fields(b, &s->events, events_fields, ARRAY_SIZE(events_fields));
}

static bool xsave_get(struct state_buf *b, struct vcpu_state *s)
{
	uint32_t len = state_get_u32(b);

	/* At least the legacy area and the XSAVE header (SDM vol 1 13.4). */
	if (b->error || len < 512 + 64 || len > VCPU_XSAVE_MAX || len % 64 || len > b->len - b->pos)
		return false;
	s->xsave = malloc(len);
	if (!s->xsave)
		return false;
	s->xsave_len = len;
	state_get_bytes(b, s->xsave, len);
	return true;
}

static bool xcrs_get(struct state_buf *b, struct vcpu_state *s)
{
	s->xcrs.nr_xcrs = state_get_u32(b);
	if (s->xcrs.nr_xcrs > VCPU_XCRS_MAX)
		return false;
	for (uint32_t i = 0; i < s->xcrs.nr_xcrs; i++) {
		s->xcrs.xcrs[i].xcr = state_get_u32(b);
		s->xcrs.xcrs[i].value = state_get_u64(b);
	}
	return true;
}

static bool msrs_get(struct state_buf *b, struct vcpu_state *s)
{
	s->nmsrs = state_get_u32(b);
	if (s->nmsrs > VCPU_MSRS_MAX)
		return false;
	for (uint32_t i = 0; i < s->nmsrs; i++) {
		s->msrs[i].index = state_get_u32(b);
		s->msrs[i].data = state_get_u64(b);
		/* Ascending, no duplicates: the order the restore relies on. */
		if (i && s->msrs[i].index <= s->msrs[i - 1].index)
			return false;
	}
	return true;
}

int vcpu_state_parse(struct state_buf *b, struct vcpu_state *s)
{
	bool ok = true;

	memset(s, 0, sizeof(*s));
	s->index = state_get_u32(b);
	s->flags = state_get_u32(b);
	s->tsc_khz = state_get_u32(b);
	s->mp_state = state_get_u32(b);
	ok = s->index < 64 && !(s->flags & ~VCPU_F_ALL) && s->mp_state <= VCPU_MP_STATE_MAX;
	state_get_fields(b, &s->regs, regs_fields, ARRAY_SIZE(regs_fields));
	ok = sregs_get(b, &s->sregs) && ok;
	if (ok && (s->flags & VCPU_F_XSAVE))
		ok = xsave_get(b, s);
	else if (ok)
		state_get_fields(b, &s->fpu, fpu_fields, ARRAY_SIZE(fpu_fields));
	if (ok && (s->flags & VCPU_F_XCRS))
		ok = xcrs_get(b, s);
	if (ok && (s->flags & VCPU_F_DEBUGREGS))
		state_get_fields(b, &s->dregs, dregs_fields, ARRAY_SIZE(dregs_fields));
	state_get_bytes(b, s->lapic, VCPU_LAPIC_SIZE);
	ok = ok && msrs_get(b, s);
	ok = ok && events_get(b, &s->events);
	if (!ok || b->error || b->pos != b->len) {
		vcpu_state_free(s);
		return -EINVAL;
	}
	return 0;
}
