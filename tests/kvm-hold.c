/* kvm-hold: keeps one idle KVM VM open for the life of the nested rig.
 *
 * Creating and destroying a VM moves static keys through zero, and each
 * such transition live-patches kernel code with int3 (text_poke_bp):
 * preempt_notifier_key (kvm_create_vm/kvm_destroy_vm), read by every
 * context switch in __schedule, and KVM's APIC keys apic_sw_disabled and
 * apic_hw_disabled (arch/x86/kvm/lapic.c). Under the rig's outer QEMU
 * (TCG, several vCPUs) that cross-modification is where the outer VM was
 * caught frozen: one CPU in exc_int3, or both CPUs stuck on the jump-label
 * NOP in __schedule. With one VM alive for the rig's whole life, holding a
 * vCPU whose APIC is hardware- and software-disabled, every one of those
 * counts stays above zero: the keys are patched once, at rig start, never
 * while tests run. A test-rig measure, not part of kestrel.
 *
 * Usage: kvm-hold (runs until killed; prints "kvm-hold: ready").
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MSR_IA32_APICBASE 0x1b

static int must(int r, const char *what)
{
	if (r < 0) {
		fprintf(stderr, "kvm-hold: %s: %s\n", what, strerror(errno));
		exit(1);
	}
	return r;
}

int main(void)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} msrs;
	int kvm = must(open("/dev/kvm", O_RDWR | O_CLOEXEC), "/dev/kvm");
	int vm = must(ioctl(kvm, KVM_CREATE_VM, 0), "KVM_CREATE_VM");
	int cpu;

	must(ioctl(vm, KVM_CREATE_IRQCHIP, 0), "KVM_CREATE_IRQCHIP");
	cpu = must(ioctl(vm, KVM_CREATE_VCPU, 0), "KVM_CREATE_VCPU");
	/* APIC base without the enable bit: hardware-disabled (its SVR stays
	 * at the reset value, software-disabled, as the vCPU never runs). */
	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = 1;
	msrs.e.index = MSR_IA32_APICBASE;
	msrs.e.data = 0xfee00000;
	if (ioctl(cpu, KVM_SET_MSRS, &msrs) != 1)
		fprintf(stderr,
			"kvm-hold: APIC base not set; only the software-disabled count is held\n");
	printf("kvm-hold: ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
