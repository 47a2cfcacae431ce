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

#include "kestrel/clock.h"
#include "kestrel/acpi.h"
#include "kestrel/block.h"
#include "kestrel/board.h"
#include "kestrel/boot.h"
#include "kestrel/byteorder.h"
#include "kestrel/devices.h"
#include "kestrel/display.h"
#include "kestrel/machine.h"
#include "kestrel/fw_cfg.h"
#include "kestrel/ide.h"
#include "kestrel/piix.h"
#include "kestrel/sandbox.h"
#include "kestrel/tulip.h"
#include "kestrel/vga.h"
#include "kestrel/virtio_net.h"
#include "kestrel/virtio_scsi.h"

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
	case SERIAL_STDIO: m->serial_out_fd = STDOUT_FILENO; return 0;
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
	case SERIAL_NONE: return 0;
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

static bool machine_has_ide(const struct vm_config *cfg)
{
	for (unsigned i = 0; i < cfg->ndisks; i++)
		if (cfg->disks[i].bus == CONFIG_BUS_IDE)
			return true;
	return false;
}

/* Bus 0 on the VM's buses and RAM; its INTx lines through the board's one
 * routing table, which the DSDT's _PRT is built from too. With a PIIX3 (an
 * IDE drive is configured: the PC southbridge comes with its IDE), the
 * table is the PIIX3 board's: four links PIRQA-D on GSIs 16-19, and the
 * bridge's route registers add the PIC-mode ISA IRQs (kestrel/piix.h).
 * Without one the board stays as it was: eight links on GSIs 16-23. */
static struct device *machine_pci_host(struct machine *m)
{
	struct pci_board board = {
		.pio = &m->vm.pio,
		.mmio = &m->vm.mmio,
		.gm = &m->vm.gm,
		.irq_set = vm_irq_set,
		.irq_opaque = &m->vm,
		.intx = &m->pci_intx,
	};

	if (machine_has_ide(m->cfg)) {
		struct piix3_conf pc = { .irq_set = vm_irq_set,
					 .irq_opaque = &m->vm,
					 .pirq_gsi_base = BOARD_PCI_INTX_GSI_BASE };

		m->piix3 = piix3_create(&pc);
		if (!m->piix3)
			return NULL;
		piix3_intx_routing(&m->pci_intx, BOARD_PCI_INTX_GSI_BASE);
		board.irq_set = piix3_intx_set;
		board.irq_opaque = m->piix3;
	} else if (pci_intx_swizzle(&m->pci_intx, BOARD_PCI_INTX_LINKS, BOARD_PCI_INTX_GSI_BASE)) {
		return NULL;
	}
	return pci_host_create(&board);
}

static int machine_create_devices(struct machine *m, char *err, size_t errlen)
{
	uint64_t low = m->vm.gm.ram_low, high = m->vm.gm.ram_high;
	int ret = 0;

	m->irq_com1 = machine_irq(m, BOARD_IRQ_COM1);
	m->irq_rtc = machine_irq(m, BOARD_IRQ_RTC);
	m->irq_kbd = machine_irq(m, BOARD_IRQ_KBD);
	m->irq_mouse = machine_irq(m, BOARD_IRQ_MOUSE);
	m->irq_sci = machine_irq(m, BOARD_IRQ_SCI);

	ret = ret
		      ?: machine_add(m, uart_create(&m->irq_com1, m->serial_out_fd), "com1", err,
				     errlen);
	ret = ret
		      ?: machine_add(m, rtc_create(&m->irq_rtc, wall_time, low, high), "rtc", err,
				     errlen);
	ret = ret
		      ?: machine_add(m, i8042_create(&m->irq_kbd, &m->irq_mouse, &m->vm.ctl),
				     "i8042", err, errlen);
	ret = ret
		      ?: machine_add(m, acpi_pm_create(&m->irq_sci, &m->vm.ctl, clock_mono_ns),
				     "pm", err, errlen);
	ret = ret ?: machine_add(m, sink_create("post"), "post", err, errlen);
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

/* Emulated storage: the PIIX3's IDE controller at 00:01.1 (the bridge at
 * 00:01.0) with both channels in compatibility mode, 0x1F0/0x3F6 on IRQ 14
 * and 0x170/0x376 on IRQ 15 (ISA edge interrupts), only when a --disk
 * bus=ide is given so that other VMs keep the board they had. unit 0/1 are
 * the primary channel's master/slave, 2/3 the secondary's. There is no
 * firmware on a direct kernel boot to set the channels' IDE Decode Enable
 * bits, so the controller powers on with them set. The machine opens the
 * images (a CD read-only, an empty drive none) and the channels own them. */
static int machine_ide_drives(struct machine *m, struct ide_drive_conf d[CONFIG_IDE_UNITS],
			      char *err, size_t errlen)
{
	int ret = 0;

	memset(d, 0, sizeof(*d) * CONFIG_IDE_UNITS);
	for (unsigned i = 0; i < m->cfg->ndisks && !ret; i++) {
		const struct config_disk *c = &m->cfg->disks[i];
		struct ide_drive_conf *u;

		if (c->bus != CONFIG_BUS_IDE || c->unit < 0 || c->unit >= CONFIG_IDE_UNITS)
			continue;
		u = &d[c->unit];
		u->kind = c->media == CONFIG_MEDIA_CDROM ? IDE_CDROM : IDE_DISK;
		if (c->blk.path)
			ret = blk_open(&u->blk, &c->blk, err, errlen);
	}
	if (ret)
		for (unsigned u = 0; u < CONFIG_IDE_UNITS; u++)
			if (d[u].blk)
				blk_close(d[u].blk);
	return ret;
}

/* The channels and the controller, registered as "piix3-ide", "ide0",
 * "ide1" (after the bridge "piix3", so quiesce and destroy take the
 * channels first). ch[]: channels not registered yet, freed on failure. */
static int machine_add_ide(struct machine *m, struct ide_drive_conf d[CONFIG_IDE_UNITS], char *err,
			   size_t errlen)
{
	static const char *const ids[2] = { "ide0", "ide1" };
	static const uint32_t irqs[2] = { IDE_PRIMARY_IRQ, IDE_SECONDARY_IRQ };
	/* Firmware sets IDE Decode Enable itself (SeaBIOS piix_ide_setup). */
	struct piix_ide_conf pc = { .pio = &m->vm.pio, .decode_on = m->cfg->kernel != NULL };
	struct device *ide;
	int ret = 0;

	for (unsigned c = 0; c < 2 && !ret; c++) {
		struct irq_line irq = machine_irq(m, irqs[c]);

		pc.ch[c] = ide_channel_create(ids[c], &irq, &d[2 * c], err, errlen);
		if (!pc.ch[c]) {
			for (unsigned u = 2 * c; u < CONFIG_IDE_UNITS; u++)
				if (d[u].blk)
					blk_close(d[u].blk);
			ret = -EINVAL;
		}
	}
	ide = ret ? NULL : piix_ide_create(&pc);
	ret = ret ?: machine_add(m, ide, "piix3-ide", err, errlen);
	for (unsigned c = 0; c < 2; c++) {
		struct device *ch = pc.ch[c];

		if (ch && !ret)
			ret = machine_add(m, ch, ids[c], err, errlen); /* frees it on failure */
		else if (ch)
			ch->ops->destroy(ch);
	}
	ret = ret
		      ?: pci_host_add_fn(machine_find_device(m, "pci-host"), piix_ide_pci(ide),
					 PIIX_SLOT, PIIX3_FN_IDE);
	if (ret < 0 && !err[0])
		snprintf(err, errlen, "PIIX3 IDE: cannot add 00:%02x.%d: %s", PIIX_SLOT,
			 PIIX3_FN_IDE, strerror(-ret));
	return ret < 0 ? ret : 0;
}

static int machine_create_ide(struct machine *m, char *err, size_t errlen)
{
	struct ide_drive_conf d[CONFIG_IDE_UNITS];
	struct device *isa = m->piix3;
	int ret;

	if (!isa)
		return 0;
	m->piix3 = NULL;
	err[0] = '\0';
	ret = machine_add(m, isa, "piix3", err, errlen);
	if (!ret) {
		ret = pci_host_add_fn(machine_find_device(m, "pci-host"), piix3_pci(isa), PIIX_SLOT,
				      PIIX3_FN_ISA);
		if (ret < 0) {
			snprintf(err, errlen, "PIIX3: cannot add 00:%02x.0: %s", PIIX_SLOT,
				 strerror(-ret));
			return ret;
		}
		ret = 0;
	}
	ret = ret ?: machine_ide_drives(m, d, err, errlen);
	return ret ?: machine_add_ide(m, d, err, errlen);
}

/* Network: one function per --net, in the slots after the SCSI controller,
 * each on its TAP (registered as "net0", "net1", ... for the control socket
 * and --stats): virtio-net, or the emulated DEC 21140 (model=tulip). */
#define MACHINE_SLOT_VIRTIO_NET 5

static int machine_add_tulip(struct machine *m, const struct config_net *c, const char *id,
			     int slot, struct net_tap *tap, char *err, size_t errlen)
{
	struct tulip_board b = { .vm = &m->vm,
				 .pci_host = machine_find_device(m, "pci-host"),
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
	struct virtio_net_opts o = {
		.name = id, .vlan = c->vlan, .queues = c->queues, .stats = m->cfg->stats
	};
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
		ret = c->model == CONFIG_NET_TULIP
			      ? machine_add_tulip(m, c, id, slot, &tap, err, errlen)
			      : machine_add_virtio_net(m, c, id, slot, &tap, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

/* The std VGA in slot 2 (where QEMU's pc puts it), its legacy ports and
 * window on the board's buses, drawing into the machine's display. Its
 * option ROM: the file --vga rom= names, else Debian's when installed. */
#define MACHINE_SLOT_VGA 2

static int map_image(const char *path, uint8_t **p, size_t *len);

/* Mapped like the kernel (sandbox_open: a reboot uses the first boot's file);
 * the VGA keeps a copy. Debian's file missing is no error: then no ROM. */
static int machine_vga_rom(const struct vm_config *c, uint8_t **rom, size_t *len, char *err,
			   size_t errlen)
{
	const char *path = c->vga_rom ? c->vga_rom : CONFIG_VGA_ROM_DEFAULT;
	int ret;

	*rom = NULL;
	*len = 0;
	if (!strcmp(path, "none"))
		return 0;
	ret = map_image(path, rom, len);
	if (!ret && *len > CONFIG_VGA_ROM_MAX) {
		munmap(*rom, *len);
		*rom = NULL;
		ret = -EFBIG;
	}
	if (ret && c->vga_rom)
		snprintf(err, errlen, "--vga: rom=%s: %s", path, strerror(-ret));
	return c->vga_rom ? ret : 0;
}

/* BAR 0 as guest memory: a dirty-logged slot over the VRAM, moved with the
 * BAR, removed while the BAR decodes nowhere (the VGA redraws everything
 * after each change: KVM's log of a moved slot starts empty). Called from
 * the vCPU whose config write moved the BAR. */
static int machine_lfb_map(void *opaque, uint64_t old, uint64_t now, void *hva, uint64_t size)
{
	struct machine *m = opaque;
	int id = __atomic_load_n(&m->vga_slot, __ATOMIC_ACQUIRE), ret = 0;
	struct gm_slot_spec spec = {
		.name = "vga-vram", .gpa = now, .size = size, .flags = GM_SLOT_LOG_DIRTY, .hva = hva
	};

	(void)old;
	if (now == PCI_BAR_UNMAPPED) {
		if (id >= 0)
			ret = gm_slot_remove(&m->vm.gm, id);
		__atomic_store_n(&m->vga_slot, -1, __ATOMIC_RELEASE);
		return ret;
	}
	if (id >= 0)
		return gm_slot_move(&m->vm.gm, id, now);
	id = gm_slot_add(&m->vm.gm, &spec);
	if (id < 0)
		return id;
	__atomic_store_n(&m->vga_slot, id, __ATOMIC_RELEASE);
	return 0;
}

/* The pages the guest wrote through BAR 0 (KVM's log), for the renderer. */
static long machine_lfb_dirty(void *opaque, uint64_t *bitmap, uint64_t nbits)
{
	struct machine *m = opaque;
	int id = __atomic_load_n(&m->vga_slot, __ATOMIC_ACQUIRE);
	long n;

	if (id < 0)
		return 0;
	n = gm_dirty_fetch(&m->vm.gm, id, bitmap, nbits, true);
	return n == -ENOENT ? 0 : n; /* unmapped meanwhile: a full redraw follows */
}

static int machine_vga_window(struct machine *m, char *err, size_t errlen)
{
	int ret = bus_insert(&m->vm.mmio, VGA_WINDOW_BASE, VGA_WINDOW_LEN,
			     machine_find_device(m, "vga"), VGA_REGION_WINDOW);

	if (ret)
		snprintf(err, errlen, "vga: cannot attach at %#llx: %s",
			 (unsigned long long)VGA_WINDOW_BASE, strerror(-ret));
	return ret;
}

static int machine_create_vga(struct machine *m, char *err, size_t errlen)
{
	struct vga_lfb_ops lfb = { .map = machine_lfb_map,
				   .fetch_dirty = machine_lfb_dirty,
				   .opaque = m };
	struct vga_opts o = { .vram_size = m->cfg->vga_mem, .lfb = &lfb };
	struct device *vga = NULL;
	int ret;

	if (m->cfg->vga != CONFIG_VGA_STD)
		return 0;
	m->display = display_create();
	if (!m->display) {
		snprintf(err, errlen, "out of memory creating the display");
		return -ENOMEM;
	}
	ret = machine_vga_rom(m->cfg, (uint8_t **)&o.rom, &o.rom_len, err, errlen);
	if (ret)
		return ret;
	ret = vga_create(&o, machine_find_device(m, "pci-host"), MACHINE_SLOT_VGA, m->display,
			 &vga);
	if (o.rom)
		munmap((void *)o.rom, o.rom_len);
	if (ret) {
		snprintf(err, errlen, "--vga: cannot create the VGA: %s", strerror(-ret));
		return ret;
	}
	ret = machine_add(m, vga, "vga", err, errlen);
	ret = ret ?: attach(m, VGA_PORTS_BASE, VGA_PORTS_LEN, "vga", VGA_REGION_PORTS, err, errlen);
	ret = ret ?: attach(m, VGA_DISPI_BASE, VGA_DISPI_LEN, "vga", VGA_REGION_DISPI, err, errlen);
	return ret ?: machine_vga_window(m, err, errlen);
}

/* The ACPI tables describe the same board on both boot paths. */
static struct acpi_board machine_acpi_board(struct machine *m)
{
	return (struct acpi_board){
		.ncpus = m->cfg->cpus,
		.pci_mmio_base = BOARD_PCI_MMIO_BASE,
		.pci_mmio_end = BOARD_PCI_MMIO_END,
		.intx = &m->pci_intx,
	};
}

static int machine_write_acpi(struct machine *m, char *err, size_t errlen)
{
	struct acpi_board b = machine_acpi_board(m);
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

/* The chipset's map of 0xC0000-0xFFFFF (i440FX PAM). Firmware starts with
 * the registers at their power-on 0, reading its own image's tail there; a
 * kernel booted directly finds the map firmware would have left: the BIOS
 * segment read-only DRAM (its writes dropped and counted, --stats), the rest
 * read/write DRAM. */
static const uint8_t pam_power_on[PAM_NREGS];
static const uint8_t pam_after_post[PAM_NREGS] = { 0x10, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33 };

static int machine_setup_pam(struct machine *m, char *err, size_t errlen)
{
	size_t alias = MIN(m->fw.size, (size_t)FW_ISA_ALIAS_MAX);
	const uint8_t *regs = m->fw.data ? pam_power_on : pam_after_post;
	int ret;

	ret = machine_add(m,
			  pam_create(&m->vm.gm, alias ? m->fw.data + m->fw.size - alias : NULL,
				     alias, regs),
			  "pam", err, errlen);
	if (ret)
		return ret;
	ret = pci_host_set_pam(machine_find_device(m, "pci-host"), machine_find_device(m, "pam"),
			       regs);
	if (ret)
		snprintf(err, errlen, "mapping 0xC0000-0xFFFFF (i440FX PAM): %s", strerror(-ret));
	return ret;
}

static int machine_load_kernel(struct machine *m, char *err, size_t errlen)
{
	struct e820_entry e820[E820_MAX];
	struct boot_cpu_state cpu;
	struct boot_input in = {
		.kernel = m->kernel,
		.kernel_len = m->kernel_len,
		.initrd = m->initrd,
		.initrd_len = m->initrd_len,
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
		snprintf(err, errlen, "--kernel: %s: %s", m->cfg->kernel,
			 lerr[0] ? lerr : strerror(-ret));
		return ret;
	}
	ret = vm_setup_boot_cpu(&m->vm, &cpu);
	if (ret)
		snprintf(err, errlen, "setting up the boot vCPU: %s", strerror(-ret));
	return ret;
}

/* ---- firmware boot (kestrel/firmware.h) ---- */

/* The image in a read-only slot ending at 4 GiB, its last 16 bytes the
 * reset vector; writes (flash programming) are dropped and counted. */
static int machine_map_firmware(struct machine *m, char *err, size_t errlen)
{
	int id = gm_slot_add(&m->vm.gm,
			     &(struct gm_slot_spec){ .name = "firmware",
						     .gpa = BOARD_FIRMWARE_END - m->fw.size,
						     .size = m->fw.size,
						     .flags = GM_SLOT_READONLY,
						     .hva = m->fw.data });

	if (id < 0)
		snprintf(err, errlen, "--firmware: %s: mapping it below 4 GiB: %s",
			 m->cfg->firmware, strerror(-id));
	return id < 0 ? id : 0;
}

/* What QEMU's pc machine tells SeaBIOS: CPUs, RAM and its e820 with KVM's
 * private pages reserved, no boot retry (-1), the boot menu; and a serial
 * console on COM1 (SeaBIOS's sercon), since the board has no display. */
static int machine_fw_cfg_board(struct machine *m, struct device *fw)
{
	struct e820_entry e[E820_MAX];
	int n = fw_cfg_ram_e820(&m->vm.gm, e, E820_MAX - 1);
	uint8_t com1[2];
	int ret;

	e[n++] = (struct e820_entry){ BOARD_KVM_IDENTITY_MAP, BOARD_KVM_PRIVATE_SIZE,
				      E820_RESERVED };
	ret = fw_cfg_add_board(fw, &(struct fw_cfg_board){
					   .ncpus = m->cfg->cpus,
					   .ram_size = m->vm.gm.ram_size,
					   .e820 = e,
					   .ne820 = n,
					   .boot_menu = m->cfg->boot.menu,
					   .boot_menu_wait_ms = (uint16_t)m->cfg->boot.menu_wait_ms,
					   .boot_fail_wait_ms = -1 });
	put_le16(com1, BOARD_PORT_COM1);
	return ret ?: fw_cfg_add_file(fw, "etc/sercon-port", com1, sizeof(com1));
}

/* --boot in both places firmware looks: the bootorder file (each drive)
 * and the CMOS boot bytes (each kind, as QEMU's -boot order), with the
 * other CMOS bytes SeaBIOS and old OSes read. */
static int machine_fw_boot_order(struct machine *m, struct device *fw)
{
	struct fw_boot_board b = {
		.scsi_slot = machine_find_device(m, "scsi0") ? MACHINE_SLOT_VIRTIO_SCSI : -1,
		.ide_slot = machine_find_device(m, "piix3-ide") ? PIIX_SLOT : -1,
		.ide_fn = PIIX3_FN_IDE,
		.net_slot = machine_find_device(m, "net0") ? MACHINE_SLOT_VIRTIO_NET : -1
	};
	struct fw_boot_dev d[CONFIG_MAX_DISKS + CONFIG_IDE_UNITS + CONFIG_MAX_NETS];
	unsigned n = fw_boot_list(m->cfg, &b, d, ARRAY_SIZE(d));
	struct rtc_cmos_board cmos = { .mem_below_4g = m->vm.gm.ram_low,
				       .mem_above_4g = m->vm.gm.ram_high,
				       .equipment = RTC_EQUIP_FPU,
				       .floppy_sig_check = true,
				       .ncpus = m->cfg->cpus };
	int ret;

	fw_boot_cmos(&m->cfg->boot, cmos.boot);
	ret = rtc_set_cmos_board(machine_find_device(m, "rtc"), &cmos);
	return ret ?: fw_cfg_add_bootorder(fw, d, n);
}

static int machine_setup_fw_cfg(struct machine *m, char *err, size_t errlen)
{
	struct acpi_board acpi = machine_acpi_board(m);
	struct device *fw;
	int ret;

	ret = machine_add(m, fw_cfg_create(&m->vm.gm), "fw-cfg", err, errlen);
	ret = ret
		      ?: attach(m, FW_CFG_PORT_SEL, FW_CFG_IO_LEN, "fw-cfg", FW_CFG_REGION_IO, err,
				errlen);
	ret = ret
		      ?: attach(m, FW_CFG_PORT_DMA, FW_CFG_DMA_LEN, "fw-cfg", FW_CFG_REGION_DMA,
				err, errlen);
	if (ret)
		return ret;
	fw = machine_find_device(m, "fw-cfg");
	ret = machine_fw_cfg_board(m, fw);
	ret = ret ?: fw_cfg_add_acpi(fw, &acpi);
	ret = ret ?: machine_fw_boot_order(m, fw);
	if (ret)
		snprintf(err, errlen, "filling fw_cfg for the firmware: %s", strerror(-ret));
	return ret;
}

/* --firmware-log: the debug console SeaBIOS finds at 0x402. The file spans
 * the worker's life, every boot of the guest: opened (and truncated) at
 * the first boot, kept open for the next. */
static int machine_firmware_log(struct machine *m, char *err, size_t errlen)
{
	static int log_fd = -1;
	const char *path = m->cfg->firmware_log;
	bool to_stderr;

	if (!path)
		return 0;
	to_stderr = !strcmp(path, "stderr");
	if (!to_stderr && log_fd < 0) {
		log_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
		if (log_fd < 0) {
			snprintf(err, errlen, "--firmware-log: %s: %s", path, strerror(errno));
			return -errno;
		}
	}
	return machine_add(m, debugcon_create(to_stderr ? STDERR_FILENO : log_fd, to_stderr),
			   "debugcon", err, errlen)
		       ?: attach(m, BOARD_PORT_DEBUGCON, 1, "debugcon", 0, err, errlen);
}

/* Everything a firmware boot needs besides the board itself; the boot vCPU
 * starts at the reset vector. A triple fault resets the machine as on a PC
 * (with --on-reboot exit it stays a VM error, so that CI tells a crash from
 * a reboot the guest asked for). */
static int machine_setup_firmware(struct machine *m, char *err, size_t errlen)
{
	int ret = machine_map_firmware(m, err, errlen);

	ret = ret ?: machine_setup_fw_cfg(m, err, errlen);
	ret = ret ?: machine_firmware_log(m, err, errlen);
	if (ret)
		return ret;
	m->vm.triple_fault_resets = m->cfg->on_reboot == ON_REBOOT_RESTART;
	ret = vm_setup_boot_cpu(&m->vm, &(struct boot_cpu_state){ .mode = BOOT_CPU_RESET });
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
	int ret;

	if (!m->cfg->kernel)
		return fw_image_load(m->cfg->firmware, &m->fw, err, errlen);
	ret = map_image(m->cfg->kernel, &m->kernel, &m->kernel_len);

	if (ret) {
		snprintf(err, errlen, "--kernel: %s: %s", m->cfg->kernel, strerror(-ret));
		return ret;
	}
	if (boot_detect(m->kernel, m->kernel_len) == BOOT_FMT_UNKNOWN) {
		snprintf(err, errlen,
			 "--kernel: %s: not a bzImage, an ELF vmlinux with a PVH note, "
			 "or a Multiboot kernel",
			 m->cfg->kernel);
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

/* boot: load the kernel and write the firmware tables into RAM; without it
 * RAM and registers come from a saved state (machine_create_restored). */
static int machine_build(struct machine *m, const struct vm_config *cfg, bool boot, char *err,
			 size_t errlen)
{
	int ret;

	memset(m, 0, sizeof(*m));
	m->cfg = cfg;
	m->serial_out_fd = -1;
	m->vga_slot = -1;
	m->vm.kvm_fd = m->vm.vm_fd = -1;
	/* A restored VM needs no kernel (its RAM is the saved one) but does
	 * need its firmware's ROM: the state does not carry it. */
	ret = boot || !cfg->kernel ? machine_read_images(m, err, errlen) : 0;
	if (ret)
		return ret;
	ret = vm_create(&m->vm, cfg->mem_size, cfg->cpus, cfg->hugepages, cfg->cpu, err, errlen);
	if (ret)
		return ret;
	ret = machine_open_serial(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_create_devices(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_create_vga(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_create_ide(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_create_storage(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_create_network(m, err, errlen);
	if (ret)
		return ret;
	ret = machine_setup_pam(m, err, errlen);
	if (ret)
		return ret;
	if (!cfg->kernel) {
		ret = machine_setup_firmware(m, err, errlen);
		return ret ?: machine_realize(m, err, errlen);
	}
	ret = machine_realize(m, err, errlen);
	if (ret)
		return ret;
	ret = boot ? machine_write_acpi(m, err, errlen) : 0;
	if (ret)
		return ret;
	if (!boot)
		return 0;
	ret = machine_load_kernel(m, err, errlen);
	unmap_images(m);
	return ret;
}

int machine_create(struct machine *m, const struct vm_config *cfg, char *err, size_t errlen)
{
	return machine_build(m, cfg, true, err, errlen);
}

int machine_create_restored(struct machine *m, const struct vm_config *cfg, char *err,
			    size_t errlen)
{
	return machine_build(m, cfg, false, err, errlen);
}

void machine_destroy(struct machine *m)
{
	vm_stop_vcpus(&m->vm);
	for (unsigned c = 0; m->cfg && m->cfg->stats && c < 2; c++) {
		struct device *ch = machine_find_device(m, c ? "ide1" : "ide0");

		if (ch)
			ide_channel_print_stats(ch, 2 * c, stderr);
	}
	if (m->piix3) /* created, never registered (the host failed) */
		m->piix3->ops->destroy(m->piix3);
	/* Reverse order: the PCI functions go before the host they sit on,
	 * every device before the VM whose fds and memory it uses. */
	dev_list_destroy(&m->devs);
	/* After the VGA, which draws into it. How often something asked for the
	 * picture: 0 while nobody looked. */
	if (m->display && m->cfg && m->cfg->stats)
		fprintf(stderr, "kestrel: stats: display refreshes=%llu\n",
			(unsigned long long)display_refresh_count(m->display));
	display_destroy(m->display);
	vm_destroy(&m->vm);
	fw_image_free(&m->fw); /* after the VM: KVM's slot pointed at it */
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

int machine_resume_devices(struct machine *m)
{
	return dev_list_resume(&m->devs);
}

int machine_flush_disks(struct machine *m)
{
	struct device *scsi = machine_find_device(m, "scsi0");
	int first = 0;

	for (unsigned t = 0; scsi && t < VIRTIO_SCSI_MAX_TARGETS; t++) {
		struct blk_dev *d = virtio_scsi_disk_blk(scsi, t);
		int ret = d && !d->readonly ? blk_rw_sync(d, BLK_OP_FLUSH, 0, NULL, 0) : 0;

		if (ret && !first)
			first = ret;
	}
	return first;
}

/* Live migration's hand-over (docs/migration.md): the image locks go, the
 * descriptors stay, so the target can take the images while this worker
 * could still take them back. Differencing parents hold shared locks, which
 * the target's shared locks live with. */
/* Every image the machine has open: the SCSI targets, then the media in the
 * IDE units (0-3); NULL past the end. */
static struct blk_dev *machine_disk_at(struct machine *m, unsigned i)
{
	struct device *scsi = machine_find_device(m, "scsi0");
	enum ide_drive_kind kind;
	struct device *ch;

	if (i < VIRTIO_SCSI_MAX_TARGETS)
		return scsi ? virtio_scsi_disk_blk(scsi, i) : NULL;
	i -= VIRTIO_SCSI_MAX_TARGETS;
	ch = i < CONFIG_IDE_UNITS ? machine_find_device(m, i / 2 ? "ide1" : "ide0") : NULL;
	return ch ? ide_drive_blk(ch, i % 2, &kind) : NULL;
}
#define MACHINE_DISK_SLOTS (VIRTIO_SCSI_MAX_TARGETS + CONFIG_IDE_UNITS)

int machine_disks_release(struct machine *m)
{
	for (unsigned i = 0; i < MACHINE_DISK_SLOTS; i++) {
		struct blk_dev *d = machine_disk_at(m, i);

		if (d && d->fd >= 0)
			blk_unlock_file(d->fd);
	}
	return 0;
}

int machine_disks_retake(struct machine *m)
{
	int first = 0;

	for (unsigned i = 0; i < MACHINE_DISK_SLOTS; i++) {
		struct blk_dev *d = machine_disk_at(m, i);
		int ret = d && d->fd >= 0 ? blk_lock_file(d->fd, !d->readonly) : 0;

		if (ret && !first)
			first = ret;
	}
	return first;
}

int machine_disks_take_over(struct machine *m, char *err, size_t errlen)
{
	for (unsigned i = 0; i < MACHINE_DISK_SLOTS; i++) {
		struct blk_dev *d = machine_disk_at(m, i);
		int ret = d ? blk_take_over(d, err, errlen) : 0;

		if (ret)
			return ret;
	}
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
