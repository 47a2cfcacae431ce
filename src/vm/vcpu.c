/* vCPU threads: initial register state, the KVM_RUN loop, exit dispatch to the
 * buses, and the register dump printed when the guest dies. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "kestrel/clock.h"
#include "kestrel/board.h"
#include "kestrel/sandbox.h"
#include "kestrel/vm.h"

#define SIG_VCPU_KICK SIGUSR1

#define MSR_IA32_TSC			 0x00000010
#define MSR_IA32_MISC_ENABLE		 0x000001a0
#define MSR_IA32_MISC_ENABLE_FAST_STRING 1ULL
#define X86_CR0_PE			 (1ULL << 0)
#define X86_CR0_ET			 (1ULL << 4)
#define X86_CR0_PG			 (1ULL << 31)
#define X86_CR4_PAE			 (1ULL << 5)
#define EFER_LME			 (1ULL << 8)
#define EFER_LMA			 (1ULL << 10)

/* Flat segments matching the GDT the loaders write at BOARD_GDT_ADDR:
 * 0x08 64-bit code, 0x10 code (64- or 32-bit per boot mode), 0x18 data, 0x20 TSS. */
static struct kvm_segment seg_flat(uint16_t sel, uint8_t type, bool code64)
{
	return (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = code64 ? 0 : 1,
		.s = 1,
		.l = code64,
		.g = 1,
	};
}

static int vcpu_set_msrs(struct vcpu *c)
{
	/* TSC = 0 on every vCPU, written together at start: KVM treats such
	 * writes as one synchronization, so the guest sees synchronized TSCs. */
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[2];
	} m = { .hdr.nmsrs = 2,
		.e = { { .index = MSR_IA32_MISC_ENABLE, .data = MSR_IA32_MISC_ENABLE_FAST_STRING },
		       { .index = MSR_IA32_TSC, .data = 0 } } };

	return ioctl(c->fd, KVM_SET_MSRS, &m) == 2 ? 0 : -EIO;
}

static int vcpu_set_fpu(struct vcpu *c)
{
	/* Power-on FPU state: FCW 0x37f, MXCSR 0x1f80 (SDM vol 3 table 9-1). */
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };

	return ioctl(c->fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0;
}

/* Firmware starts where a PC's CPU does: KVM created every vCPU in the reset
 * state and its in-kernel LAPIC holds the APs until INIT/SIPI, so only the
 * TSCs are synchronised and MSRs set as for a kernel. */
static int vcpu_reset_state(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vcpu_set_msrs(&vm->vcpus[i]))
			return -EIO;
	return 0;
}

int vm_setup_boot_cpu(struct vm *vm, const struct boot_cpu_state *bs)
{
	struct vcpu *c = &vm->vcpus[0];
	struct kvm_sregs sregs;
	struct kvm_regs regs = { 0 };
	bool lm = bs->mode == BOOT_CPU_LONG64;
	struct kvm_segment code = seg_flat(0x10, 0xb, lm), data = seg_flat(0x18, 0x3, false);

	if (bs->mode == BOOT_CPU_RESET)
		return vcpu_reset_state(vm);
	if (ioctl(c->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.tr =
		(struct kvm_segment){ .selector = 0x20, .limit = 0x67, .type = 0xb, .present = 1 };
	sregs.gdt.base = BOARD_GDT_ADDR;
	sregs.gdt.limit = 5 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (lm) {
		sregs.cr3 = bs->cr3;
		sregs.cr4 |= X86_CR4_PAE;
		sregs.cr0 |= X86_CR0_PG;
		sregs.efer |= EFER_LME | EFER_LMA;
	}
	if (ioctl(c->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;

	regs.rflags = 2; /* bit 1 is reserved-set; IF clear as every boot protocol asks */
	regs.rip = bs->rip;
	regs.rsp = bs->rsp;
	regs.rax = bs->rax;
	regs.rbx = bs->rbx;
	regs.rsi = bs->rsi;
	if (ioctl(c->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	if (vcpu_set_fpu(c))
		return -EIO;
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vcpu_set_msrs(&vm->vcpus[i]))
			return -EIO;
	return 0;
}

static void vcpu_dump(struct vcpu *c, const char *why)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	kerr("vcpu%u: %s", c->id, why);
	if (ioctl(c->fd, KVM_GET_REGS, &r) < 0 || ioctl(c->fd, KVM_GET_SREGS, &s) < 0)
		return;
	fprintf(stderr,
		"kestrel: vcpu%u: rip=%016llx rsp=%016llx rflags=%08llx\n"
		"kestrel: vcpu%u: rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n"
		"kestrel: vcpu%u: rsi=%016llx rdi=%016llx rbp=%016llx\n"
		"kestrel: vcpu%u: cs=%04x(base %llx l%d db%d) ss=%04x cr0=%llx cr2=%llx cr3=%llx cr4=%llx efer=%llx\n",
		c->id, r.rip, r.rsp, r.rflags, c->id, r.rax, r.rbx, r.rcx, r.rdx, c->id, r.rsi,
		r.rdi, r.rbp, c->id, s.cs.selector, s.cs.base, s.cs.l, s.cs.db, s.ss.selector,
		s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
	/* AMD's KVM INITs the vCPU on a shutdown intercept (the VMCB is
	 * undefined after one), so what it hands back is the reset state. */
	if (r.rip == 0xfff0 && s.cs.base == 0xffff0000 && !(s.cr0 & 1))
		fprintf(stderr,
			"kestrel: vcpu%u: (these are the CPU's reset values: this KVM "
			"re-initialised the vCPU at the fault, the faulting state is lost)\n",
			c->id);
}

static void vcpu_handle_io(struct vcpu *c)
{
	struct kvm_run *run = c->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	unsigned size = run->io.size;

	/* data_offset/count/size come from KVM, not the guest; still keep the
	 * access inside the shared page. */
	if ((uint64_t)run->io.data_offset + (uint64_t)run->io.count * size >
	    (uint64_t)c->vm->run_size)
		return;
	if (run->io.direction == KVM_EXIT_IO_OUT)
		bus_write_string(&c->vm->pio, run->io.port, data, size, run->io.count);
	else
		bus_read_string(&c->vm->pio, run->io.port, data, size, run->io.count);
}

static void vcpu_handle_mmio(struct vcpu *c)
{
	struct kvm_run *run = c->run;

	if (run->mmio.len > 8)
		return;
	/* A write to read-only memory (KVM_MEM_READONLY) goes to its slot's device. */
	if (run->mmio.is_write &&
	    gm_mmio_write(&c->vm->gm, run->mmio.phys_addr, run->mmio.data, run->mmio.len))
		return;
	if (run->mmio.is_write)
		bus_write(&c->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
	else
		bus_read(&c->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
}

void vm_drain_coalesced(struct vm *vm)
{
	struct kvm_coalesced_mmio_ring *ring = vm->coalesced;
	uint32_t max;

	if (!ring || __atomic_load_n(&ring->first, __ATOMIC_ACQUIRE) ==
			     __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE))
		return;
	max = (getpagesize() - sizeof(*ring)) / sizeof(ring->coalesced_mmio[0]);
	pthread_mutex_lock(&vm->coalesced_lock);
	while (ring->first != __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE)) {
		struct kvm_coalesced_mmio e = ring->coalesced_mmio[ring->first % max];

		/* The ring is written by KVM, but bound the length anyway. */
		if (e.len <= sizeof(e.data))
			bus_write(e.pio ? &vm->pio : &vm->mmio, e.phys_addr, e.data, e.len);
		__atomic_store_n(&ring->first, (ring->first + 1) % max, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&vm->coalesced_lock);
}

/* One exit; returns false when the vCPU must stop. */
static bool vcpu_handle_exit(struct vcpu *c)
{
	struct kvm_run *run = c->run;
	char why[96];

	vm_drain_coalesced(c->vm);

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		c->exits[STAT_EXIT_IO]++;
		vcpu_handle_io(c);
		return true;
	case KVM_EXIT_MMIO:
		c->exits[STAT_EXIT_MMIO]++;
		vcpu_handle_mmio(c);
		return true;
	case KVM_EXIT_INTR: c->exits[STAT_EXIT_INTR]++; return true;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; a halted CPU with nothing to wake it. */
		c->exits[STAT_EXIT_HLT]++;
		vm_request_stop_cb(c->vm, VM_STOP_POWEROFF, 0);
		return false;
	case KVM_EXIT_SHUTDOWN:
		c->exits[STAT_EXIT_SHUTDOWN]++;
		if (c->vm->triple_fault_resets) {
			kinfo("vcpu%u: triple fault: the machine resets, as a PC does", c->id);
			vm_request_stop_cb(c->vm, VM_STOP_RESET, VM_RESET_TRIPLE_FAULT);
			return false;
		}
		vcpu_dump(c, "triple fault (KVM_EXIT_SHUTDOWN)");
		vm_request_stop_cb(c->vm, VM_STOP_ERROR, 0);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		vm_request_stop_cb(c->vm,
				   run->system_event.type == KVM_SYSTEM_EVENT_RESET
					   ? VM_STOP_RESET
					   : VM_STOP_POWEROFF,
				   0);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(why, sizeof(why), "KVM internal error, suberror %u",
			 run->internal.suberror);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(why, sizeof(why), "VM entry failed, hardware reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		break;
	default: snprintf(why, sizeof(why), "unhandled exit reason %u", run->exit_reason); break;
	}
	c->exits[STAT_EXIT_OTHER]++;
	vcpu_dump(c, why);
	vm_request_stop_cb(c->vm, VM_STOP_ERROR, 0);
	return false;
}

static bool vm_stopping(struct vm *vm)
{
	return __atomic_load_n(&vm->stop_requested, __ATOMIC_ACQUIRE);
}

/* A paused vCPU sleeps here, outside KVM_RUN, until vm_resume or a stop
 * request; vm_pause counts the parked ones. */
static void vcpu_park(struct vcpu *c)
{
	struct vm *vm = c->vm;

	pthread_mutex_lock(&vm->stop_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->stop_cond);
	while (__atomic_load_n(&vm->paused, __ATOMIC_RELAXED) && !vm->stop_requested)
		pthread_cond_wait(&vm->stop_cond, &vm->stop_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->stop_lock);
}

/* KVM finishes an I/O or MMIO exit (the value of an IN into RAX, the
 * instruction skipped) only at the next KVM_RUN, and keeps that pending in
 * state no ioctl shows (KVM API doc, KVM_EXIT_IO: "userspace should ensure
 * that the operation is completed before performing a live migration"). So
 * a vCPU about to park runs once with immediate_exit set: KVM completes the
 * operation and returns EINTR before the guest runs an instruction. A split
 * MMIO access can exit once more; that exit is handled the same way. */
static void vcpu_complete_exit(struct vcpu *c)
{
	for (int i = 0; i < 8; i++) {
		__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_RELAXED);
		if (ioctl(c->fd, KVM_RUN, 0) < 0 || !vcpu_handle_exit(c))
			return;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *c = arg;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIG_VCPU_KICK);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (;;) {
		/* Clear the kick before looking at the flags: a kick after this
		 * point finds immediate_exit set (KVM_RUN returns at once), one
		 * before it comes with its flag already visible (see vm_pause). */
		__atomic_store_n(&c->run->immediate_exit, 0, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (vm_stopping(c->vm))
			break;
		if (__atomic_load_n(&c->vm->paused, __ATOMIC_RELAXED)) {
			vcpu_complete_exit(c);
			vcpu_park(c);
			continue;
		}
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vcpu_dump(c, strerror(errno));
			vm_request_stop_cb(c->vm, VM_STOP_ERROR, 0);
			break;
		}
		if (!vcpu_handle_exit(c))
			break;
	}
	return NULL;
}

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

int vm_start(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };
	sigset_t set;

	/* No SA_RESTART: the kick must make KVM_RUN return EINTR. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIG_VCPU_KICK, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIG_VCPU_KICK);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* only vCPU threads take the kick */
	for (unsigned i = 0; i < vm->ncpus; i++) {
		char name[32];
		int ret;

		snprintf(name, sizeof(name), "vcpu%u", i);
		ret = sandbox_thread_start(&vm->vcpus[i].thread, SANDBOX_VCPU, name, vcpu_thread,
					   &vm->vcpus[i]);
		if (ret) {
			vm_request_stop_cb(vm, VM_STOP_ERROR, 0);
			vm_stop_vcpus(vm);
			return ret;
		}
		vm->vcpus[i].started = true;
	}
	return 0;
}

/* Kick every running vCPU out of KVM_RUN. */
static void vm_kick_vcpus(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];

		if (!c->started)
			continue;
		/* immediate_exit closes the race where the kick lands before KVM_RUN. */
		__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_RELEASE);
		pthread_kill(c->thread, SIG_VCPU_KICK);
	}
}

void vm_stop_vcpus(struct vm *vm)
{
	if (!vm->vcpus)
		return;
	vm_request_stop_cb(vm, VM_STOP_POWEROFF, 0); /* no-op if a reason is already set */
	vm_kick_vcpus(vm);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		int tries = 0;

		if (!c->started)
			continue;
		/* Re-kick while waiting: a thread between its stop check and
		 * KVM_RUN must not be able to sleep in the kernel forever. */
		for (;;) {
			/* pthread_timedjoin_np waits on CLOCK_REALTIME. */
			struct timespec ts = clock_deadline(CLOCK_REALTIME, 100);

			if (pthread_timedjoin_np(c->thread, NULL, &ts) == 0)
				break;
			if (++tries % 50 == 0)
				kwarn("vcpu%u: still running %d s after the stop request", c->id,
				      tries / 10);
			vm_kick_vcpus(vm);
		}
		c->started = false;
	}
}

/* The pause flag is written before the kick, with a full fence between them,
 * pairing with the fence in vcpu_thread: a vCPU either sees the flag at the
 * top of its loop or gets the kick in (or on its way into) KVM_RUN. */
int vm_pause(struct vm *vm, uint64_t timeout_ms)
{
	struct timespec ts;
	unsigned want = 0;
	int ret = 0;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(timeout_ms / 1000);
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&vm->stop_lock);
	__atomic_store_n(&vm->paused, true, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&vm->stop_lock);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];

		if (!c->started)
			continue;
		want++;
		__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_RELAXED);
		pthread_kill(c->thread, SIG_VCPU_KICK);
	}
	pthread_mutex_lock(&vm->stop_lock);
	while (vm->parked < want && !vm->stop_requested && ret == 0)
		ret = pthread_cond_timedwait(&vm->stop_cond, &vm->stop_lock, &ts);
	if (vm->stop_requested)
		ret = ESHUTDOWN;
	else if (vm->parked >= want)
		ret = 0;
	if (ret) {
		__atomic_store_n(&vm->paused, false, __ATOMIC_RELAXED);
		pthread_cond_broadcast(&vm->stop_cond);
	}
	pthread_mutex_unlock(&vm->stop_lock);
	return -ret;
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->stop_lock);
	__atomic_store_n(&vm->paused, false, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&vm->stop_cond);
	pthread_mutex_unlock(&vm->stop_lock);
}
