/* The board as a list: RAM, ACPI tables, the ISA devices on their ports and
 * interrupt lines, the PCI host bridge, and the kernel loaded into RAM. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/acpi.h"
#include "kestrel/block.h"
#include "kestrel/board.h"
#include "kestrel/boot.h"
#include "kestrel/devices.h"
#include "kestrel/machine.h"
#include "kestrel/sandbox.h"
#include "kestrel/tulip.h"
#include "kestrel/virtio_net.h"
#include "kestrel/virtio_scsi.h"

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static time_t wall_time(void)
{
	return time(NULL);
}

static struct irq_line machine_irq(struct machine *m, uint32_t gsi)
{
	return (struct irq_line){ vm_irq_set, &m->vm, gsi };
}

static int machine_open_serial(struct machine *m, char *err, size_t errlen)
{
	m->serial_out_fd = -1;
	switch (m->cfg->serial) {
	case SERIAL_STDIO:
		m->serial_out_fd = STDOUT_FILENO;
		return 0;
	case SERIAL_FILE:
		/* Truncated once: a reboot writes on after the last boot's output. */
		m->serial_out_fd = sandbox_open(m->cfg->serial_path,
						O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (m->serial_out_fd < 0) {
			int e = -m->serial_out_fd;

			m->serial_out_fd = -1;
			snprintf(err, errlen, "--serial: %s: %s", m->cfg->serial_path, strerror(e));
			return -e;
		}
		m->own_serial_out = true;
		return 0;
	case SERIAL_NONE:
		return 0;
	}
	return 0;
}

/* Register a new device under its id; on failure it is freed here. */
static int machine_add(struct machine *m, struct device *dev, const char *id, char *err,
		       size_t errlen)
{
	int ret;

	if (!dev) {
		snprintf(err, errlen, "out of memory creating device %s", id);
		return -ENOMEM;
	}
	ret = dev_list_add(&m->devs, dev, id);
	if (ret) {
		snprintf(err, errlen, "device %s: cannot register: %s", id, strerror(-ret));
		dev->ops->destroy(dev);
	}
	return ret;
}

/* Insert or fail with the device's id: overlaps are wiring bugs. */
static int attach(struct machine *m, uint64_t base, uint64_t len, const char *id, int region,
		  char *err, size_t errlen)
{
	struct device *dev = machine_find_device(m, id);
	int ret = dev ? bus_insert(&m->vm.pio, base, len, dev, region) : -ENODEV;

	if (ret)
		snprintf(err, errlen, "%s: cannot attach at %#llx: %s", id,
			 (unsigned long long)base, strerror(-ret));
	return ret;
}

/* Bus 0 on the VM's buses and RAM; its INTx lines through the board's one
 * routing table, which the DSDT's _PRT is built from too. */
static struct device *machine_pci_host(struct machine *m)
{
	struct pci_board board = {
		.pio = &m->vm.pio, .mmio = &m->vm.mmio, .gm = &m->vm.gm,
		.irq_set = vm_irq_set, .irq_opaque = &m->vm, .intx = &m->pci_intx,
	};

	if (pci_intx_swizzle(&m->pci_intx, BOARD_PCI_INTX_LINKS, BOARD_PCI_INTX_GSI_BASE))
		return NULL;
	return pci_host_create(&board);
}

static int machine_create_devices(struct machine *m, char *err, size_t errlen)
{
	uint64_t low = m->vm.gm.ram_low, high = m->vm.gm.ram_high;
	int ret = 0;

	m->irq_com1 = machine_irq(m, BOARD_IRQ_COM1);
	m->irq_rtc = machine_irq(m, BOARD_IRQ_RTC);
	m->irq_kbd = machine_irq(m, BOARD_IRQ_KBD);
	m->irq_sci = machine_irq(m, BOARD_IRQ_SCI);

	ret = ret ?: machine_add(m, uart_create(&m->irq_com1, m->serial_out_fd), "com1", err, errlen);
	ret = ret ?: machine_add(m, rtc_create(&m->irq_rtc, wall_time, low, high), "rtc", err, errlen);
	ret = ret ?: machine_add(m, i8042_create(&m->irq_kbd, &m->vm.ctl), "i8042", err, errlen);
	ret = ret ?: machine_add(m, acpi_pm_create(&m->irq_sci, &m->vm.ctl, monotonic_ns), "pm",
				 err, errlen);
	ret = ret ?: machine_add(m, sink_create("post"), "post", err, errlen);
	/* Where guest writes to the read-only BIOS segment go (machine_protect_bios). */
	ret = ret ?: machine_add(m, sink_create("bios"), "bios", err, errlen);
	ret = ret ?: machine_add(m, machine_pci_host(m), "pci-host", err, errlen);

	ret = ret ?: attach(m, BOARD_PORT_COM1, 8, "com1", 0, err, errlen);
	ret = ret ?: attach(m, BOARD_PORT_RTC, 2, "rtc", 0, err, errlen);
	ret = ret ?: attach(m, BOARD_PORT_I8042_DATA, 1, "i8042", 0, err, errlen);
	ret = ret ?: attach(m, BOARD_PORT_I8042_CMD, 1, "i8042", 1, err, errlen);
	ret = ret ?: attach(m, BOARD_PORT_ACPI_PM, 12, "pm", 0, err, errlen);
	ret = ret ?: attach(m, BOARD_PORT_RESET, 1, "pm", 1, err, errlen);
	ret = ret ?: attach(m, BOARD_PORT_POST, 1, "post", 0, err, errlen);
	ret = ret ?: attach(m, BOARD_PORT_PCI_ADDR, 1, "pci-host", 0, err, errlen);
	ret = ret ?: attach(m, BOARD_PORT_PCI_DATA, 4, "pci-host", 1, err, errlen);
	/* A guest that may choose the worker's exit status is a test guest:
	 * without --debug-exit the port is as unknown as any other. */
	if (!ret && m->cfg->debug_exit) {
		ret = machine_add(m, debug_exit_create(&m->vm.ctl), "debug-exit", err, errlen);
		ret = ret ?: attach(m, BOARD_PORT_DEBUG_EXIT, 4, "debug-exit", 0, err, errlen);
	}
	/* CONFIG_ADDRESS writes only latch an address: queue them in KVM so a
	 * config-space access costs one exit (at 0xCFC), not two — guests probe
	 * config space thousands of times while booting. The 4-byte zone also
	 * covers 0xCF9 (reset); such a write takes effect at the next exit. */
	if (!ret && vm_coalesce_io(&m->vm, BOARD_PORT_PCI_ADDR, 4, true))
		kdebug("coalesced PIO unavailable; 0xCF8 writes exit");
	return ret;
}

/* A device model behind its own virtio-pci function at slot (its INTA# on
 * the GSI the routing table names for the slot), registered under id. The
 * machine picks the transport; the model knows only struct virtio_dev. */
static int machine_add_virtio(struct machine *m, const struct virtio_model *model, int slot,
			      const char *id, char *err, size_t errlen)
{
	struct virtio_dev *vdev;
	int ret;

	ret = virtio_pci_create(&m->vm, machine_find_device(m, "pci-host"), slot, &model->info,
				model->ops, model->opaque, &vdev);
	if (ret) {
		snprintf(err, errlen, "%s (%s): cannot create the PCI function: %s", id,
			 model->info.name, strerror(-ret));
		return ret;
	}
	return machine_add(m, virtio_dev_device(vdev), id, err, errlen);
}

/* Synthetic storage: one virtio-scsi controller holding every --disk
 * bus=scsi, in a fixed slot; its INTA# reaches the GSI the routing table
 * names for that slot (machine_pci_host). Request queues: one per vCPU, up
 * to the controller's limit. With no scsi disk there is no controller unless
 * --scsi-controller asks for an empty one, so that a VM without disks keeps
 * the board it had. The machine opens the disks through the block layer and
 * hands them over, as it does with the TAPs of virtio-net: the front end
 * never opens a file. */
#define MACHINE_SLOT_VIRTIO_SCSI 4

/* Open every --disk bus=scsi; on failure the ones opened are closed. */
static int machine_open_scsi_disks(struct machine *m, struct virtio_scsi_disk *d, unsigned *n,
				   char *err, size_t errlen)
{
	int ret = 0;

	*n = 0;
	for (unsigned i = 0; i < m->cfg->ndisks && *n < CONFIG_MAX_DISKS && !ret; i++) {
		const struct config_disk *c = &m->cfg->disks[i];

		if (c->bus != CONFIG_BUS_SCSI)
			continue;
		d[*n] = (struct virtio_scsi_disk){ .target = (unsigned)c->target,
						   .add_after_ms = c->add_after_ms,
						   .remove_after_ms = c->remove_after_ms };
		ret = blk_open(&d[*n].blk, &c->blk, err, errlen);
		if (!ret)
			(*n)++;
	}
	if (ret)
		while (*n)
			blk_close(d[--(*n)].blk);
	return ret;
}

static int machine_create_storage(struct machine *m, char *err, size_t errlen)
{
	struct virtio_scsi_disk d[CONFIG_MAX_DISKS];
	struct virtio_model model;
	unsigned n = 0;
	int ret;

	ret = machine_open_scsi_disks(m, d, &n, err, errlen);
	if (ret || (!n && !m->cfg->scsi_controller))
		return ret;
	ret = virtio_scsi_new(MIN(m->cfg->cpus, (unsigned)VIRTIO_SCSI_MAX_REQUEST_QUEUES), d, n,
			      m->cfg->stats, &model, err, errlen);
	return ret ?: machine_add_virtio(m, &model, MACHINE_SLOT_VIRTIO_SCSI, "scsi0", err, errlen);
}

/* Network: one function per --net, in the slots after the SCSI controller,
 * each on its TAP (registered as "net0", "net1", ... for the control socket
 * and --stats): virtio-net, or the emulated DEC 21140 (model=tulip). */
#define MACHINE_SLOT_VIRTIO_NET 5

static int machine_add_tulip(struct machine *m, const struct config_net *c, const char *id,
			     int slot, struct net_tap *tap, char *err, size_t errlen)
{
	struct tulip_board b = { .vm = &m->vm, .pci_host = machine_find_device(m, "pci-host"),
				 .slot = slot };
	struct tulip_opts o = { .name = id, .vlan = c->vlan, .stats = m->cfg->stats };
	struct device *dev;
	int ret;

	memcpy(o.mac, c->mac, sizeof(o.mac));
	ret = tulip_create(&b, &o, tap, &dev, err, errlen);
	return ret ?: machine_add(m, dev, id, err, errlen);
}

static int machine_add_virtio_net(struct machine *m, const struct config_net *c, const char *id,
				  int slot, struct net_tap *tap, char *err, size_t errlen)
{
	struct virtio_net_opts o = { .name = id, .vlan = c->vlan, .queues = c->queues,
				     .stats = m->cfg->stats };
	struct virtio_model model;
	int ret;

	memcpy(o.mac, c->mac, sizeof(o.mac));
	ret = virtio_net_new(&o, tap, &model, err, errlen);
	return ret ?: machine_add_virtio(m, &model, slot, id, err, errlen);
}

static int machine_create_network(struct machine *m, char *err, size_t errlen)
{
	for (unsigned i = 0; i < m->cfg->nnets; i++) {
		const struct config_net *c = &m->cfg->nets[i];
		int slot = MACHINE_SLOT_VIRTIO_NET + (int)i;
		struct net_tap tap;
		char id[DEV_ID_MAX], terr[400];
		int ret;

		snprintf(id, sizeof(id), "net%u", i);
		ret = net_tap_open(&tap, c->ifname, c->queues, terr, sizeof(terr));
		if (ret) {
			snprintf(err, errlen, "--net %s", terr);
			return ret;
		}
		ret = c->model == CONFIG_NET_TULIP ?
		      machine_add_tulip(m, c, id, slot, &tap, err, errlen) :
		      machine_add_virtio_net(m, c, id, slot, &tap, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

static int machine_write_acpi(struct machine *m, char *err, size_t errlen)
{
	struct acpi_board b = {
		.ncpus = m->cfg->cpus,
		.pci_mmio_base = BOARD_PCI_MMIO_BASE,
		.pci_mmio_end = BOARD_PCI_MMIO_END,
		.intx = &m->pci_intx,
	};
	/* The BIOS area is firmware's, not RAM the guest may DMA into: the
	 * tables go into the RAM behind it (offset == address below 4 GiB). */
	void *buf = gm_ram_ptr(&m->vm.gm, BOARD_ACPI_BASE, BOARD_ACPI_SIZE);
	long n;

	if (!buf)
		return -EFAULT;
	n = acpi_build(buf, BOARD_ACPI_SIZE, BOARD_ACPI_BASE, &b);
	if (n < 0) {
		snprintf(err, errlen, "building ACPI tables: %s", strerror((int)-n));
		return (int)n;
	}
	return 0;
}

/* The system BIOS segment read-only, as firmware leaves it after POST
 * (i440FX PAM0 "read-only": reads from DRAM, writes forwarded to PCI, where
 * nothing answers them): the guest's writes reach the "bios" sink, which
 * drops them, and are counted (--stats). */
static int machine_protect_bios(struct machine *m, char *err, size_t errlen)
{
	struct guest_mem *gm = &m->vm.gm;
	int id = gm_slot_at(gm, BOARD_BIOS_SEGMENT), ret;

	if (id < 0)
		return 0; /* less than 1 MiB of RAM: no BIOS segment */
	ret = gm_slot_set_flags(gm, id, GM_SLOT_RAM | GM_SLOT_READONLY,
				machine_find_device(m, "bios"), 0);
	if (ret)
		snprintf(err, errlen, "write-protecting the BIOS segment: %s", strerror(-ret));
	return ret;
}

static int machine_load_kernel(struct machine *m, char *err, size_t errlen)
{
	struct e820_entry e820[E820_MAX];
	struct boot_cpu_state cpu;
	struct boot_input in = {
		.kernel = m->kernel, .kernel_len = m->kernel_len,
		.initrd = m->initrd, .initrd_len = m->initrd_len,
		.cmdline = m->cfg->cmdline ? m->cfg->cmdline : "",
		.entry = m->cfg->boot_entry,
		.rsdp = BOARD_ACPI_BASE,
	};
	char lerr[200] = "";
	int ret;

	in.e820 = e820;
	in.ne820 = boot_e820(&m->vm.gm, e820, E820_MAX);
	ret = boot_load(&m->vm.gm, &in, &cpu, lerr, sizeof(lerr));
	if (ret) {
		snprintf(err, errlen, "--kernel: %s: %s", m->cfg->kernel, lerr[0] ? lerr : strerror(-ret));
		return ret;
	}
	ret = vm_setup_boot_cpu(&m->vm, &cpu);
	if (ret)
		snprintf(err, errlen, "setting up the boot vCPU: %s", strerror(-ret));
	return ret;
}

/* Map an image read-only instead of reading it: the loaders copy what they
 * need into guest RAM once, and the mapping goes away right after, so the
 * worker keeps no second copy of a 60+ MiB vmlinux. */
static int map_image(const char *path, uint8_t **p, size_t *len)
{
	struct stat st;
	int fd = sandbox_open(path, O_RDONLY | O_CLOEXEC, 0), ret = 0;

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		ret = -errno;
	else if (!S_ISREG(st.st_mode))
		ret = -EINVAL;
	else if (st.st_size == 0)
		ret = -ENODATA;
	if (!ret) {
		void *m = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);

		if (m == MAP_FAILED) {
			ret = -errno;
		} else {
			madvise(m, st.st_size, MADV_SEQUENTIAL);
			*p = m;
			*len = st.st_size;
		}
	}
	close(fd);
	return ret;
}

static void unmap_images(struct machine *m)
{
	if (m->kernel)
		munmap(m->kernel, m->kernel_len);
	if (m->initrd)
		munmap(m->initrd, m->initrd_len);
	m->kernel = m->initrd = NULL;
	m->kernel_len = m->initrd_len = 0;
}

static int machine_read_images(struct machine *m, char *err, size_t errlen)
{
	int ret = map_image(m->cfg->kernel, &m->kernel, &m->kernel_len);

	if (ret) {
		snprintf(err, errlen, "--kernel: %s: %s", m->cfg->kernel, strerror(-ret));
		return ret;
	}
	if (boot_detect(m->kernel, m->kernel_len) == BOOT_FMT_UNKNOWN) {
		snprintf(err, errlen, "--kernel: %s: not a bzImage, an ELF vmlinux with a PVH note, "
			 "or a Multiboot kernel", m->cfg->kernel);
		return -ENOEXEC;
	}
	if (!m->cfg->initrd)
		return 0;
	ret = map_image(m->cfg->initrd, &m->initrd, &m->initrd_len);
	if (ret)
		snprintf(err, errlen, "--initrd: %s: %s", m->cfg->initrd, strerror(-ret));
	return ret;
}

static int machine_realize(struct machine *m, char *err, size_t errlen)
{
	struct device *bad = NULL;
	int ret = dev_list_realize(&m->devs, &bad);

	if (ret)
		snprintf(err, errlen, "device %s: %s", bad ? bad->id : "?", strerror(-ret));
	return ret;
}

int machine_create(struct machine *m, const struct vm_config *cfg, char *err, size_t errlen)
{
	int ret;

	memset(m, 0, sizeof(*m));
	m->cfg = cfg;
	m->serial_out_fd = -1;
	m->vm.kvm_fd = m->vm.vm_fd = -1;
	ret = machine_read_images(m, err, errlen);
	if (ret)
		return ret;
	ret = vm_create(&m->vm, cfg->mem_size, cfg->cpus, cfg->hugepages, err, errlen);
	if (ret)
		return ret;
	ret = machine_open_serial(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_create_devices(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_create_storage(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_create_network(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_realize(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_write_acpi(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_protect_bios(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_load_kernel(m, err, errlen);
	unmap_images(m);
	return ret;
}

void machine_destroy(struct machine *m)
{
	vm_stop_vcpus(&m->vm);
	/* Reverse order: the PCI functions go before the host they sit on,
	 * every device before the VM whose fds and memory it uses. */
	dev_list_destroy(&m->devs);
	vm_destroy(&m->vm);
	if (m->own_serial_out && m->serial_out_fd >= 0)
		close(m->serial_out_fd);
	unmap_images(m);
	memset(m, 0, sizeof(*m));
}

struct device *machine_find_device(struct machine *m, const char *id)
{
	return dev_list_find(&m->devs, id);
}

void machine_reset(struct machine *m)
{
	dev_list_reset(&m->devs);
}

int machine_quiesce(struct machine *m, uint64_t timeout_ms)
{
	int ret = vm_pause(&m->vm, timeout_ms);

	if (ret)
		return ret;
	dev_list_quiesce(&m->devs);
	return 0;
}

int machine_resume(struct machine *m)
{
	int ret = dev_list_resume(&m->devs);

	vm_resume(&m->vm);
	return ret;
}

int machine_save_devices(struct machine *m, struct state_buf *out)
{
	return dev_list_save(&m->devs, out);
}

int machine_load_devices(struct machine *m, struct state_buf *in)
{
	return dev_list_load(&m->devs, in);
}
