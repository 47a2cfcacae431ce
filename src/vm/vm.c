/* VM lifetime on raw KVM ioctls: capabilities, RAM slots, in-kernel irqchip
 * and PIT, vCPU creation, stop requests and interrupt lines. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kestrel/clock.h"
#include "kestrel/board.h"
#include "kestrel/cpuid.h"
#include "kestrel/sandbox.h"
#include "kestrel/vm.h"

static void errf(char *err, size_t len, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void errf(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

struct kvm_cap_need {
	int cap;
	const char *what;
};

/* What kestrel relies on; every one is in mainline KVM since 2.6.x–4.x. */
static const struct kvm_cap_need kvm_caps_needed[] = {
	{ KVM_CAP_IRQCHIP, "in-kernel irqchip (KVM_CAP_IRQCHIP)" },
	{ KVM_CAP_PIT2, "in-kernel PIT (KVM_CAP_PIT2)" },
	{ KVM_CAP_USER_MEMORY, "user memory slots (KVM_CAP_USER_MEMORY)" },
	{ KVM_CAP_READONLY_MEM, "read-only memory slots (KVM_CAP_READONLY_MEM)" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_EXT_CPUID, "KVM_GET_SUPPORTED_CPUID (KVM_CAP_EXT_CPUID)" },
	{ KVM_CAP_IRQ_ROUTING, "GSI routing (KVM_CAP_IRQ_ROUTING)" },
	{ KVM_CAP_IOEVENTFD, "ioeventfd (KVM_CAP_IOEVENTFD)" },
	{ KVM_CAP_IRQFD, "irqfd (KVM_CAP_IRQFD)" },
};

static int vm_check_kvm(struct vm *vm, unsigned ncpus, char *err, size_t errlen)
{
	int v, max;

	v = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION) {
		errf(err, errlen, "/dev/kvm: API version %d, kestrel needs %d", v, KVM_API_VERSION);
		return -ENOTSUP;
	}
	for (size_t i = 0; i < ARRAY_SIZE(kvm_caps_needed); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, kvm_caps_needed[i].cap) <= 0) {
			errf(err, errlen, "/dev/kvm: missing %s", kvm_caps_needed[i].what);
			return -ENOTSUP;
		}
	}
	max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max <= 0)
		max = 4; /* KVM's documented default when the capability is absent */
	if (ncpus > (unsigned)max) {
		errf(err, errlen, "--cpus: %u exceeds this host's KVM limit of %d", ncpus, max);
		return -EINVAL;
	}
	return 0;
}

/* Guest memory's slots go to KVM now; it keeps KVM in step from then on. */
static int vm_map_ram(struct vm *vm, char *err, size_t errlen)
{
	int ret = gm_attach_kvm(&vm->gm, vm->kvm_fd, vm->vm_fd);

	if (ret)
		errf(err, errlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-ret));
	return ret;
}

static int vm_setup_irq_routing(struct vm *vm, char *err, size_t errlen);

static int vm_create_irqchip(struct vm *vm, char *err, size_t errlen)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, BOARD_KVM_TSS) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ BOARD_KVM_IDENTITY_MAP }) <
		    0) {
		errf(err, errlen, "KVM_SET_TSS_ADDR: %s", strerror(errno));
		return -errno;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		errf(err, errlen, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return -errno;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		errf(err, errlen, "KVM_CREATE_PIT2: %s", strerror(errno));
		return -errno;
	}
	return vm_setup_irq_routing(vm, err, errlen);
}

/* Push the routing table to KVM; called with route_lock held. */
static int vm_commit_routes(struct vm *vm)
{
	size_t sz = sizeof(struct kvm_irq_routing) +
		    vm->nr_routes * sizeof(struct kvm_irq_routing_entry);
	struct kvm_irq_routing *r = calloc(1, sz);
	int ret = 0;

	if (!r)
		return -ENOMEM;
	r->nr = vm->nr_routes;
	memcpy(r->entries, vm->routes, vm->nr_routes * sizeof(*vm->routes));
	if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r) < 0)
		ret = -errno;
	free(r);
	return ret;
}

static int vm_add_route(struct vm *vm, const struct kvm_irq_routing_entry *e)
{
	struct kvm_irq_routing_entry *n = realloc(vm->routes, (vm->nr_routes + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	vm->routes = n;
	vm->routes[vm->nr_routes++] = *e;
	return 0;
}

/* GSI routing as on a PC (and as QEMU sets it): GSI 0-15 reach the PICs,
 * GSI 0 (the PIT) reaches IOAPIC pin 2 to match the MADT's IRQ0 override,
 * every other GSI n < 24 reaches IOAPIC pin n. KVM's default table would
 * send GSI 0 to pin 0, where Linux never looks for its timer. */
static int vm_setup_irq_routing(struct vm *vm, char *err, size_t errlen)
{
	int ret = 0;

	for (uint32_t gsi = 0; gsi < 16 && !ret; gsi++) {
		if (gsi == 2)
			continue; /* the cascade */
		ret = vm_add_route(vm, &(struct kvm_irq_routing_entry){
					       .gsi = gsi,
					       .type = KVM_IRQ_ROUTING_IRQCHIP,
					       .u.irqchip = { gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
								      : KVM_IRQCHIP_PIC_SLAVE,
							      gsi % 8 } });
	}
	for (uint32_t gsi = 0; gsi < 24 && !ret; gsi++) {
		if (gsi == 2)
			continue;
		ret = vm_add_route(
			vm, &(struct kvm_irq_routing_entry){
				    .gsi = gsi,
				    .type = KVM_IRQ_ROUTING_IRQCHIP,
				    .u.irqchip = { KVM_IRQCHIP_IOAPIC, gsi == 0 ? 2 : gsi } });
	}
	vm->next_msi_gsi = 24;
	ret = ret ?: vm_commit_routes(vm);
	if (ret)
		errf(err, errlen, "KVM_SET_GSI_ROUTING: %s", strerror(-ret));
	return ret;
}

int vm_msi_route_alloc(struct vm *vm, uint32_t *gsi)
{
	int ret;

	pthread_mutex_lock(&vm->route_lock);
	*gsi = vm->next_msi_gsi++;
	/* Until the guest programs the vector, route it nowhere harmful: an MSI to
	 * address 0 with data 0 is never raised because nothing writes the irqfd
	 * before the vector is set up. */
	ret = vm_add_route(
		vm, &(struct kvm_irq_routing_entry){ .gsi = *gsi,
						     .type = KVM_IRQ_ROUTING_MSI,
						     .u.msi = { .address_lo = 0xfee00000 } });
	ret = ret ?: vm_commit_routes(vm);
	pthread_mutex_unlock(&vm->route_lock);
	return ret;
}

int vm_msi_route_set(struct vm *vm, uint32_t gsi, uint64_t addr, uint32_t data)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&vm->route_lock);
	for (unsigned i = 0; i < vm->nr_routes; i++) {
		struct kvm_irq_routing_entry *e = &vm->routes[i];

		if (e->gsi != gsi || e->type != KVM_IRQ_ROUTING_MSI)
			continue;
		e->u.msi.address_lo = (uint32_t)addr;
		e->u.msi.address_hi = (uint32_t)(addr >> 32);
		e->u.msi.data = data;
		ret = vm_commit_routes(vm);
		break;
	}
	pthread_mutex_unlock(&vm->route_lock);
	return ret;
}

void vm_msi_route_free(struct vm *vm, uint32_t gsi)
{
	pthread_mutex_lock(&vm->route_lock);
	for (unsigned i = 0; i < vm->nr_routes; i++) {
		if (vm->routes[i].gsi != gsi || vm->routes[i].type != KVM_IRQ_ROUTING_MSI)
			continue;
		vm->routes[i] = vm->routes[--vm->nr_routes];
		if (vm_commit_routes(vm))
			kwarn("KVM_SET_GSI_ROUTING while freeing gsi %u failed", gsi);
		break;
	}
	pthread_mutex_unlock(&vm->route_lock);
}

int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = { .address_lo = (uint32_t)addr,
			       .address_hi = (uint32_t)(addr >> 32),
			       .data = data };

	return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? -errno : 0;
}

int vm_coalesce_io(struct vm *vm, uint64_t addr, unsigned len, bool pio)
{
	struct kvm_coalesced_mmio_zone z = { .addr = addr, .size = len, .pio = pio };

	if (!vm->coalesced)
		return -ENOTSUP;
	if (pio && ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO) <= 0)
		return -ENOTSUP;
	return ioctl(vm->vm_fd, KVM_REGISTER_COALESCED_MMIO, &z) < 0 ? -errno : 0;
}

int vm_ioeventfd(struct vm *vm, uint64_t addr, unsigned len, bool pio, int fd, bool assign)
{
	struct kvm_ioeventfd io = { .addr = addr, .len = len, .fd = fd };

	if (pio)
		io.flags |= KVM_IOEVENTFD_FLAG_PIO;
	if (!assign)
		io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

int vm_irqfd(struct vm *vm, int fd, uint32_t gsi, bool assign)
{
	struct kvm_irqfd irq = { .fd = (uint32_t)fd,
				 .gsi = gsi,
				 .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };

	return ioctl(vm->vm_fd, KVM_IRQFD, &irq) < 0 ? -errno : 0;
}

static int vm_create_vcpus(struct vm *vm, char *err, size_t errlen)
{
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size < (int)sizeof(struct kvm_run)) {
		errf(err, errlen, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		return -EIO;
	}
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		int ret;

		c->vm = vm;
		c->id = i;
		c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
		if (c->fd < 0) {
			errf(err, errlen, "KVM_CREATE_VCPU %u: %s", i, strerror(errno));
			return -errno;
		}
		c->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
		if (c->run == MAP_FAILED) {
			c->run = NULL;
			errf(err, errlen, "mmap vcpu %u: %s", i, strerror(errno));
			return -errno;
		}
		ret = cpuid_setup_vcpu(c->fd, vm->cpuid, i, vm->ncpus, &c->cpuid);
		if (ret < 0) {
			errf(err, errlen, "KVM_SET_CPUID2 vcpu %u: %s", i, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int vm_create(struct vm *vm, uint64_t ram_size, unsigned ncpus, bool hugepages,
	      const struct cpu_model *cpu, char *err, size_t errlen)
{
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	vm->ncpus = ncpus;
	pthread_mutex_init(&vm->stop_lock, NULL);
	pthread_mutex_init(&vm->route_lock, NULL);
	pthread_mutex_init(&vm->coalesced_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca,
					  CLOCK_MONOTONIC); /* timeouts immune to clock steps */
		pthread_cond_init(&vm->stop_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	vm->ctl = (struct vm_ctl){ vm_request_stop_cb, vm };
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");

	ret = gm_init(&vm->gm, ram_size, hugepages);
	if (ret) {
		errf(err, errlen, "--mem: cannot map %llu MiB of guest RAM%s: %s",
		     (unsigned long long)(ram_size >> 20), hugepages ? " with hugepages" : "",
		     strerror(-ret));
		return ret;
	}

	/* Kept from the first boot: a reboot after --user still has it. */
	vm->kvm_fd = sandbox_open("/dev/kvm", O_RDWR | O_CLOEXEC, 0);
	if (vm->kvm_fd < 0) {
		ret = vm->kvm_fd;
		vm->kvm_fd = -1;
		errf(err, errlen, "/dev/kvm: %s", strerror(-ret));
		return ret;
	}
	ret = vm_check_kvm(vm, ncpus, err, errlen);
	if (ret)
		return ret;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = -errno;
		errf(err, errlen, "KVM_CREATE_VM: %s", strerror(errno));
		return ret;
	}
	ret = vm_map_ram(vm, err, errlen);
	if (ret)
		return ret;
	ret = vm_create_irqchip(vm, err, errlen);
	if (ret)
		return ret;
	ret = cpuid_get_supported(vm->kvm_fd, &vm->cpuid);
	if (ret) {
		errf(err, errlen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(-ret));
		return ret;
	}
	ret = cpu_model_apply(cpu, vm->cpuid, err, errlen);
	if (ret)
		return ret;
	ret = vm_create_vcpus(vm, err, errlen);
	if (ret)
		return ret;
	/* The coalesced ring is the page at KVM_COALESCED_MMIO_PAGE_OFFSET of
	 * every vCPU's mapping (the same page for all of them). */
	int off = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
	if (off > 0 && (off + 1) * getpagesize() <= vm->run_size)
		vm->coalesced = (void *)((uint8_t *)vm->vcpus[0].run + off * getpagesize());
	return 0;
}

void vm_destroy(struct vm *vm)
{
	if (vm->vcpus) {
		for (unsigned i = 0; i < vm->ncpus; i++) {
			if (vm->vcpus[i].run)
				munmap(vm->vcpus[i].run, vm->run_size);
			if (vm->vcpus[i].fd > 0)
				close(vm->vcpus[i].fd);
			free(vm->vcpus[i].cpuid);
		}
		free(vm->vcpus);
	}
	free(vm->cpuid);
	free(vm->routes);
	vm->routes = NULL;
	vm->nr_routes = 0;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	gm_destroy(&vm->gm);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	pthread_mutex_destroy(&vm->stop_lock);
	pthread_cond_destroy(&vm->stop_cond);
	vm->vcpus = NULL;
	vm->cpuid = NULL;
	vm->vm_fd = vm->kvm_fd = -1;
}

void vm_request_stop_cb(void *opaque, enum vm_stop_reason why, int code)
{
	struct vm *vm = opaque;

	pthread_mutex_lock(&vm->stop_lock);
	if (!vm->stop_requested) {
		vm->stop_requested = true;
		vm->stop_why = why;
		vm->stop_code = code;
		pthread_cond_broadcast(&vm->stop_cond);
	}
	pthread_mutex_unlock(&vm->stop_lock);
}

bool vm_wait_stop(struct vm *vm, uint64_t timeout_ms)
{
	struct timespec ts = clock_deadline(CLOCK_MONOTONIC, timeout_ms);
	bool stopped;

	pthread_mutex_lock(&vm->stop_lock);
	while (!vm->stop_requested) {
		if (!timeout_ms)
			pthread_cond_wait(&vm->stop_cond, &vm->stop_lock);
		else if (pthread_cond_timedwait(&vm->stop_cond, &vm->stop_lock, &ts) == ETIMEDOUT)
			break;
	}
	stopped = vm->stop_requested;
	pthread_mutex_unlock(&vm->stop_lock);
	return stopped;
}

void vm_irq_set(void *opaque, uint32_t gsi, int level)
{
	struct vm *vm = opaque;
	struct kvm_irq_level irq = { .irq = gsi, .level = level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		kwarn("KVM_IRQ_LINE gsi %u: %s", gsi, strerror(errno));
}

const char *const vm_exit_stat_names[STAT_EXIT_NR] = { "io",   "mmio",	   "hlt",
						       "intr", "shutdown", "other" };

/* Resident memory: the whole process, and the part of it that is guest RAM
 * (the guest mapping's Rss in /proc/self/smaps), so the VMM's own overhead
 * can be told apart from what the guest touched. */
static void vm_read_memory(struct vm *vm, struct vm_stats *st)
{
	FILE *sm = fopen("/proc/self/smaps", "r");
	char line[256];
	unsigned long long total = 0, guest = 0, kb;
	uintptr_t start, cur = 0, gstart = (uintptr_t)vm->gm.map;

	if (!sm)
		return;
	while (fgets(line, sizeof(line), sm)) {
		if (sscanf(line, "%lx-%*x ", &start) == 1 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			cur = start;
		} else if (sscanf(line, "Rss: %llu kB", &kb) == 1) {
			total += kb;
			if (cur == gstart)
				guest += kb;
		}
	}
	fclose(sm);
	st->rss_kb = total;
	st->guest_ram_kb = guest;
	st->vmm_kb = total - guest;
}

/* Guest writes to read-only slots, all of them; f: also one line per slot. */
static uint64_t vm_rom_writes(struct vm *vm, FILE *f)
{
	struct gm_slot_info sl[GM_MAX_SLOTS];
	int n = MIN(gm_slots(&vm->gm, sl, GM_MAX_SLOTS), GM_MAX_SLOTS);
	uint64_t sum = 0;

	if (f)
		fprintf(f, "kestrel: stats: read-only memory writes:");
	for (int i = 0; i < n; i++) {
		if (!(sl[i].flags & GM_SLOT_READONLY))
			continue;
		sum += sl[i].writes;
		if (f)
			fprintf(f, " %s@0x%llx=%llu", sl[i].name, (unsigned long long)sl[i].gpa,
				(unsigned long long)sl[i].writes);
	}
	if (f)
		fputc('\n', f);
	return sum;
}

/* The counters are written by the vCPU threads; relaxed loads give a
 * consistent-enough snapshot while the VM runs. */
void vm_get_stats(struct vm *vm, struct vm_stats *st)
{
	memset(st, 0, sizeof(*st));
	vm_read_memory(vm, st);
	for (unsigned i = 0; i < vm->ncpus && vm->vcpus; i++)
		for (int s = 0; s < STAT_EXIT_NR; s++)
			st->exits[s] += __atomic_load_n(&vm->vcpus[i].exits[s], __ATOMIC_RELAXED);
	st->pio_unhandled = __atomic_load_n(&vm->pio.unhandled, __ATOMIC_RELAXED);
	st->mmio_unhandled = __atomic_load_n(&vm->mmio.unhandled, __ATOMIC_RELAXED);
	st->rom_writes = vm_rom_writes(vm, NULL);
}

void vm_print_stats(struct vm *vm, FILE *f)
{
	struct vm_stats st;

	vm_get_stats(vm, &st);
	if (st.rss_kb)
		fprintf(f, "kestrel: stats: memory rss_kb=%llu guest_ram_kb=%llu vmm_kb=%llu\n",
			(unsigned long long)st.rss_kb, (unsigned long long)st.guest_ram_kb,
			(unsigned long long)st.vmm_kb);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		fprintf(f, "kestrel: stats: vcpu%u exits:", i);
		for (int s = 0; s < STAT_EXIT_NR; s++)
			fprintf(f, " %s=%llu", vm_exit_stat_names[s],
				(unsigned long long)vm->vcpus[i].exits[s]);
		fputc('\n', f);
	}
	fprintf(f, "kestrel: stats: unhandled pio=%llu mmio=%llu\n",
		(unsigned long long)st.pio_unhandled, (unsigned long long)st.mmio_unhandled);
	bus_print_hits(&vm->pio, f);
	bus_print_hits(&vm->mmio, f);
	vm_rom_writes(vm, f);
}
