/* The VM: the KVM handles, guest RAM, the two buses and the vCPU threads. */
#ifndef KESTREL_VM_H
#define KESTREL_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kestrel/bus.h"
#include "kestrel/device.h"
#include "kestrel/guest_mem.h"

enum vcpu_exit_stat {
	STAT_EXIT_IO,
	STAT_EXIT_MMIO,
	STAT_EXIT_HLT,
	STAT_EXIT_INTR,
	STAT_EXIT_SHUTDOWN,
	STAT_EXIT_OTHER,
	STAT_EXIT_NR
};

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	struct kvm_cpuid2 *cpuid; /* the table set on it: what the guest sees */
	pthread_t thread;
	bool started;
	uint64_t exits[STAT_EXIT_NR];
};

/* Register state the boot loader asks for on the boot vCPU. RESET: the
 * state KVM creates a vCPU in, the x86 reset state (real mode, CS base
 * 0xFFFF0000, IP 0xFFF0: the reset vector 16 bytes below 4 GiB), for
 * firmware; the other fields are then unused. */
enum boot_cpu_mode { BOOT_CPU_PROT32, BOOT_CPU_LONG64, BOOT_CPU_RESET };
struct boot_cpu_state {
	enum boot_cpu_mode mode;
	uint64_t rip, rsp, rax, rbx, rsi;
	uint64_t cr3; /* LONG64: page-table root built by the loader */
};

struct vm {
	int kvm_fd, vm_fd;
	int run_size;
	unsigned ncpus;
	struct guest_mem gm;
	struct bus pio, mmio;
	struct vcpu *vcpus;
	/* KVM's coalesced I/O ring (one page shared by all vCPUs): writes to
	 * registered ports are queued there without an exit and replayed on the
	 * bus before the next exit is handled. */
	struct kvm_coalesced_mmio_ring *coalesced;
	pthread_mutex_t coalesced_lock;
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID, adjusted per vCPU at setup */

	/* Stop request: the first one wins; the main thread waits on cond. */
	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
	bool stop_requested;
	enum vm_stop_reason stop_why;
	int stop_code;
	/* Pause (control socket): vCPUs park at the top of their run loop while
	 * paused is set. Guarded by stop_lock; parking and waking use stop_cond
	 * too, so a stop request also wakes parked vCPUs. */
	bool paused;
	unsigned parked;
	struct vm_ctl ctl; /* handed to devices */
	/* A triple fault (KVM_EXIT_SHUTDOWN) resets the machine, as a PC's
	 * chipset does, instead of stopping it as a VM error: a stop with
	 * VM_STOP_RESET and code VM_RESET_TRIPLE_FAULT. Set before vm_start. */
	bool triple_fault_resets;

	/* GSI routing: the PC's fixed IRQCHIP entries plus MSI routes that
	 * devices allocate (MSI-X vectors -> irqfd). Guarded by route_lock. */
	pthread_mutex_t route_lock;
	struct kvm_irq_routing_entry *routes;
	unsigned nr_routes;
	uint32_t next_msi_gsi;
};

#define VM_RESET_TRIPLE_FAULT 1 /* stop_code of a reset that was a triple fault */

/* cpu: the --cpu model every vCPU's CPUID is filtered to (NULL: host). */
struct cpu_model;
int vm_create(struct vm *vm, uint64_t ram_size, unsigned ncpus, bool hugepages,
	      const struct cpu_model *cpu, char *err, size_t errlen) WARN_UNUSED;
void vm_destroy(struct vm *vm);
/* Set the boot vCPU's registers (vCPU 0); the APs wait for INIT/SIPI. */
int vm_setup_boot_cpu(struct vm *vm, const struct boot_cpu_state *bs) WARN_UNUSED;
int vm_start(struct vm *vm) WARN_UNUSED;
/* Stop and join every vCPU thread. */
void vm_stop_vcpus(struct vm *vm);
void vm_request_stop_cb(void *opaque, enum vm_stop_reason why, int code);
/* Interrupt line for devices: KVM_IRQ_LINE on the in-kernel PIC/IOAPIC. */
void vm_irq_set(void *opaque, uint32_t gsi, int level);
/* Queue guest writes to [addr, addr+len) in KVM instead of exiting for each
 * (only for registers whose writes have no immediate side effect). */
int vm_coalesce_io(struct vm *vm, uint64_t addr, unsigned len, bool pio) WARN_UNUSED;
/* Replay queued writes; every exit handler runs this first. */
void vm_drain_coalesced(struct vm *vm);

/* ioeventfd: a guest write to addr (len 1/2/4/8, or 0 = any length for MMIO)
 * signals fd in the kernel, without a user-space exit. pio selects port I/O. */
int vm_ioeventfd(struct vm *vm, uint64_t addr, unsigned len, bool pio, int fd,
		 bool assign) WARN_UNUSED;
/* irqfd: writing fd raises gsi (edge), without going through user space. */
int vm_irqfd(struct vm *vm, int fd, uint32_t gsi, bool assign) WARN_UNUSED;
/* MSI routes for MSI/MSI-X vectors: allocate a GSI (>= 24), point it at an MSI
 * address/data pair (update any time, e.g. when the guest reprograms the
 * vector), free it. */
int vm_msi_route_alloc(struct vm *vm, uint32_t *gsi) WARN_UNUSED;
int vm_msi_route_set(struct vm *vm, uint32_t gsi, uint64_t addr, uint32_t data) WARN_UNUSED;
void vm_msi_route_free(struct vm *vm, uint32_t gsi);
/* Inject one MSI directly (KVM_SIGNAL_MSI). */
int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data) WARN_UNUSED;

/* Wait for a stop request; timeout_ms 0 = forever. Returns false on timeout. */
bool vm_wait_stop(struct vm *vm, uint64_t timeout_ms);
void vm_print_stats(struct vm *vm, FILE *f);

/* Pause: kick every vCPU out of KVM_RUN and park it until vm_resume() (or a
 * stop request). Waits up to timeout_ms for all of them to park: 0, or
 * -ETIMEDOUT (the VM is resumed again), -ESHUTDOWN (a stop came first). Call
 * from a thread that is not a vCPU. */
int vm_pause(struct vm *vm, uint64_t timeout_ms) WARN_UNUSED;
void vm_resume(struct vm *vm);

/* What vm_print_stats prints, as numbers (memory: 0 when /proc is missing). */
struct vm_stats {
	uint64_t exits[STAT_EXIT_NR]; /* all vCPUs */
	uint64_t pio_unhandled, mmio_unhandled;
	uint64_t rom_writes; /* guest writes to read-only memory slots */
	uint64_t rss_kb, guest_ram_kb, vmm_kb;
};
extern const char *const vm_exit_stat_names[STAT_EXIT_NR];
void vm_get_stats(struct vm *vm, struct vm_stats *st);

#endif
