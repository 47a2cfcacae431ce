/* The control socket's commands acting on the worker's real VM, and the run
 * state the socket reports (docs/control.md). The main thread attaches each
 * machine it boots and detaches it before destroying it; cv->lock makes the
 * two sides agree on which machine, if any, a command may touch. Commands run
 * on the control thread and never wait for a vCPU thread, except pause, which
 * waits a bounded time for the vCPUs to park. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kestrel/clock.h"
#include "kestrel/config.h"
#include "kestrel/control.h"
#include "kestrel/control_vm.h"
#include "kestrel/cpuid.h"
#include "kestrel/devices.h"
#include "kestrel/display.h"
#include "kestrel/ide.h"
#include "kestrel/machine.h"
#include "kestrel/migrate.h"
#include "kestrel/notify.h"
#include "kestrel/sandbox.h"
#include "kestrel/snapshot.h"
#include "kestrel/tulip.h"
#include "kestrel/virtio_net.h"
#include "kestrel/virtio_scsi.h"

#define CV_PAUSE_TIMEOUT_MS 2000
#define CV_FLUSH_MS	    500
#define CV_PROGRESS_NS	    250000000ull /* a save-progress event at most this often */

/* What the socket knows of each SCSI target, to list disks and to re-apply
 * hot-plug changes when a guest reset re-creates the machine. */
struct cv_disk {
	bool present;
	bool busy;	 /* a disk-add or disk-remove job holds the target */
	bool hotplugged; /* added through the socket */
	bool configured; /* present at boot by the configuration */
	char *path;
	struct blk_opts opts; /* opts.path points at path */
};

struct control_vm {
	pthread_mutex_t lock;
	const struct vm_config *cfg;
	struct control_server *srv;
	char sock[108];
	struct machine *m; /* NULL between boots */
	const char *state;
	unsigned boots;
	uint64_t start_ns, boot_ns;
	uint64_t shutdown_deadline_ns; /* 0: no forced stop pending */
	bool host_stop, host_reset, shutdown_forced;
	bool ready_sent;
	uint64_t wd_usec, wd_next_ns;
	struct cv_disk disks[CONFIG_MAX_DISKS];
	/* The media cdrom-change/cdrom-eject put in each IDE unit, re-applied
	 * after a reset: changed, and the path (NULL: ejected). */
	struct cv_cd {
		bool changed;
		bool busy; /* a cdrom-change job is opening the new medium */
		char *path;
		enum blk_format format;
	} cds[CONFIG_IDE_UNITS];
	bool link_down[CONFIG_MAX_NETS]; /* net-link down, re-applied after a reset */
	unsigned jobs;			 /* disk and medium jobs running (see "hot-plug") */
	bool dying;			 /* control_vm_destroy began: jobs reply to nobody */
	bool released;			 /* control_vm_destroy is done: the last job frees cv */
	/* A save in progress runs on its own thread (cv_save_thread); the
	 * machine stays attached until it is joined (control_vm_detach). */
	struct cv_save {
		pthread_t thread;
		bool running, joinable, keep_running, was_paused, stopped;
		enum { CV_SAVE, CV_SNAP_CREATE, CV_SNAP_APPLY, CV_SNAP_DELETE, CV_MIGRATE } op;
		/* migrate: path is the target's address */
		uint64_t max_downtime_ms, bandwidth;
		bool cancel; /* migrate-cancel (atomic) */
		char *path;  /* save: the file; delete: the VM directory */
		char name[SNAP_NAME_MAX + 1];
		struct control_pending *p; /* a snapshot's reply */
		uint64_t last_progress_ns;
		struct snapshot_apply apply;
		bool apply_ready; /* apply prepared: main rebuilds the machine */
	} save;
};

static json_object *jstr(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static json_object *jint(uint64_t v)
{
	return json_object_new_int64((int64_t)MIN(v, (uint64_t)INT64_MAX));
}

/* Called with cv->lock held. */
static void cv_set_state(struct control_vm *cv, const char *state)
{
	json_object *d;

	if (cv->state && strcmp(cv->state, state) == 0)
		return;
	d = json_object_new_object();
	json_object_object_add(d, "state", json_object_new_string(state));
	json_object_object_add(d, "previous", jstr(cv->state));
	cv->state = state;
	control_event(cv->srv, CTL_EV_STATE, d);
	notify_send("STATUS=VM %s: %s", cv->cfg->name, state);
}

/* A command that needs the machine: fails when there is none or it is on its
 * way out. Called with cv->lock held. */
static int cv_need_vm(struct control_vm *cv, struct control_error *e)
{
	if (!cv->m)
		return control_fail(e, CTL_E_STATE, "the VM is %s", cv->state);
	if (__atomic_load_n(&cv->m->vm.stop_requested, __ATOMIC_ACQUIRE))
		return control_fail(e, CTL_E_STATE, "the VM is stopping");
	if (cv->save.running)
		return control_fail(e, CTL_E_STATE, "the VM is being %s",
				    cv->save.op == CV_MIGRATE ? "migrated" : "saved");
	return 0;
}

/* ---- queries ------------------------------------------------------------ */

static void cv_query_status(void *opaque, json_object *ret)
{
	struct control_vm *cv = opaque;
	uint64_t now = clock_mono_ns();

	pthread_mutex_lock(&cv->lock);
	json_object_object_add(ret, "name", jstr(cv->cfg->name));
	json_object_object_add(ret, "pid", json_object_new_int(getpid()));
	json_object_object_add(ret, "state", jstr(cv->state));
	json_object_object_add(ret, "running",
			       json_object_new_boolean(cv->m &&
						       (!strcmp(cv->state, "running") ||
							!strcmp(cv->state, "shutting-down"))));
	json_object_object_add(ret, "vcpus", jint(cv->cfg->cpus));
	json_object_object_add(ret, "memory", jint(cv->cfg->mem_size));
	json_object_object_add(ret, "uptime_ms", jint((now - cv->start_ns) / 1000000));
	json_object_object_add(ret, "boots", jint(cv->boots));
	if (cv->m)
		json_object_object_add(ret, "boot_uptime_ms", jint((now - cv->boot_ns) / 1000000));
	json_object_object_add(ret, "version", jstr(KESTREL_VERSION));
	if (cv->sock[0])
		json_object_object_add(ret, "socket", jstr(cv->sock));
	pthread_mutex_unlock(&cv->lock);
}

static json_object *cv_config_json(const struct vm_config *c)
{
	json_object *o = json_object_new_object();
	char serial[4200];

	snprintf(serial, sizeof(serial), "%s%s",
		 c->serial == SERIAL_STDIO  ? "stdio"
		 : c->serial == SERIAL_NONE ? "none"
					    : "file:",
		 c->serial == SERIAL_FILE ? c->serial_path : "");
	json_object_object_add(o, "kernel", jstr(c->kernel));
	json_object_object_add(o, "firmware", jstr(c->firmware));
	json_object_object_add(o, "initrd", jstr(c->initrd));
	json_object_object_add(o, "cmdline", jstr(c->cmdline ? c->cmdline : ""));
	json_object_object_add(o, "mem", jint(c->mem_size));
	json_object_object_add(o, "cpus", jint(c->cpus));
	json_object_object_add(o, "cpu", jstr(cpu_model_name(c->cpu)));
	json_object_object_add(o, "serial", jstr(serial));
	json_object_object_add(o, "boot_entry",
			       c->boot_entry == BOOT_ENTRY_AUTO
				       ? jstr("auto")
				       : jint(c->boot_entry == BOOT_ENTRY_32 ? 32 : 64));
	json_object_object_add(o, "on_reboot",
			       jstr(c->on_reboot == ON_REBOOT_EXIT ? "exit" : "restart"));
	json_object_object_add(o, "hugepages", json_object_new_boolean(c->hugepages));
	json_object_object_add(o, "timeout_ms", jint(c->timeout_ms));
	json_object_object_add(o, "debug_exit", json_object_new_boolean(c->debug_exit));
	return o;
}

static json_object *cv_exits_json(const uint64_t *exits)
{
	json_object *o = json_object_new_object();

	for (int s = 0; s < STAT_EXIT_NR; s++)
		json_object_object_add(o, vm_exit_stat_names[s],
				       jint(__atomic_load_n(&exits[s], __ATOMIC_RELAXED)));
	return o;
}

/* The machine's devices by their registry ids (docs/devices.md). */
static struct device *cv_scsi(struct control_vm *cv)
{
	return machine_find_device(cv->m, "scsi0");
}

static struct device *cv_nic(struct control_vm *cv, unsigned i)
{
	char id[DEV_ID_MAX];

	snprintf(id, sizeof(id), "net%u", i);
	return machine_find_device(cv->m, id);
}

/* NICs are "net0".."netN-1", one per --net. */
static unsigned cv_nnics(struct control_vm *cv)
{
	unsigned n = 0;

	while (n < CONFIG_MAX_NETS && cv_nic(cv, n))
		n++;
	return n;
}

static void cv_bus_json(struct bus *bus, json_object *arr)
{
	pthread_rwlock_rdlock(&bus->lock);
	for (int i = 0; i < bus->nr; i++) {
		const struct bus_range *r = &bus->ranges[i];
		json_object *d = json_object_new_object();
		char base[24];

		snprintf(base, sizeof(base), "0x%llx", (unsigned long long)r->base);
		json_object_object_add(d, "id", jstr(r->dev->id));
		json_object_object_add(d, "name", jstr(r->dev->ops->name));
		json_object_object_add(d, "bus", jstr(bus->name));
		json_object_object_add(d, "base", jstr(base));
		json_object_object_add(d, "size", jint(r->len));
		json_object_array_add(arr, d);
	}
	pthread_rwlock_unlock(&bus->lock);
}

static json_object *cv_disks_json(struct control_vm *cv)
{
	json_object *arr = json_object_new_array();

	for (unsigned t = 0; t < CONFIG_MAX_DISKS; t++) {
		const struct cv_disk *d = &cv->disks[t];
		json_object *o;

		if (!d->present)
			continue;
		o = json_object_new_object();
		json_object_object_add(o, "target", jint(t));
		json_object_object_add(o, "path", jstr(d->path));
		json_object_object_add(o, "format", jstr(blk_format_name(d->opts.format)));
		json_object_object_add(o, "readonly", json_object_new_boolean(d->opts.readonly));
		json_object_object_add(o, "hotplugged", json_object_new_boolean(d->hotplugged));
		json_object_array_add(arr, o);
	}
	return arr;
}

/* A NIC's counters, summed over its queue pairs. */
static void cv_nic_stats(struct control_vm *cv, unsigned i, struct virtio_net_stats *sum)
{
	struct device *d = cv_nic(cv, i);
	unsigned nq = i < cv->cfg->nnets ? cv->cfg->nets[i].queues : 1;
	struct virtio_net_stats q;
	struct tulip_stats t;

	*sum = (struct virtio_net_stats){ 0 };
	if (tulip_get_stats(d, &t) == 0) {
		*sum = (struct virtio_net_stats){ .rx_packets = t.rx_packets,
						  .rx_bytes = t.rx_bytes,
						  .rx_dropped = t.rx_dropped + t.rx_missed,
						  .tx_packets = t.tx_packets,
						  .tx_bytes = t.tx_bytes,
						  .tx_dropped = t.tx_dropped };
		return;
	}
	for (unsigned k = 0; k < nq; k++) {
		if (virtio_net_get_stats(d, k, &q))
			continue;
		sum->rx_packets += q.rx_packets;
		sum->rx_bytes += q.rx_bytes;
		sum->rx_dropped += q.rx_dropped;
		sum->tx_packets += q.tx_packets;
		sum->tx_bytes += q.tx_bytes;
		sum->tx_dropped += q.tx_dropped;
	}
}

/* The emulated 21140 (model=tulip) or virtio-net. */
static int cv_nic_set_link(struct control_vm *cv, unsigned i, bool up)
{
	struct device *d = cv_nic(cv, i);

	return tulip_pci(d) ? tulip_set_link(d, up) : virtio_net_set_link(d, up);
}

/* Per NIC: the link and the counters summed over its queue pairs. */
static json_object *cv_nics_json(struct control_vm *cv, bool counters)
{
	json_object *arr = json_object_new_array();

	for (unsigned i = 0; i < cv_nnics(cv); i++) {
		json_object *o = json_object_new_object();
		struct virtio_net_stats sum;
		char name[16];

		snprintf(name, sizeof(name), "net%u", i);
		json_object_object_add(o, "device", jstr(name));
		if (i < cv->cfg->nnets)
			json_object_object_add(o, "ifname", jstr(cv->cfg->nets[i].ifname));
		json_object_object_add(o, "link", jstr(cv->link_down[i] ? "down" : "up"));
		if (counters) {
			cv_nic_stats(cv, i, &sum);
			json_object_object_add(o, "rx_packets", jint(sum.rx_packets));
			json_object_object_add(o, "rx_bytes", jint(sum.rx_bytes));
			json_object_object_add(o, "rx_dropped", jint(sum.rx_dropped));
			json_object_object_add(o, "tx_packets", jint(sum.tx_packets));
			json_object_object_add(o, "tx_bytes", jint(sum.tx_bytes));
			json_object_object_add(o, "tx_dropped", jint(sum.tx_dropped));
		}
		json_object_object_add(o, "model",
				       jstr(tulip_pci(cv_nic(cv, i)) ? "tulip" : "virtio"));
		json_object_array_add(arr, o);
	}
	return arr;
}

/* Per disk: what the device holds now, so a disk hot-added or removed by
 * any path is listed as it is. */
static json_object *cv_disk_stats_json(struct control_vm *cv)
{
	json_object *arr = json_object_new_array();
	struct device *scsi = cv_scsi(cv);
	struct virtio_scsi_disk_stats st;

	for (unsigned t = 0; scsi && t < VIRTIO_SCSI_MAX_TARGETS; t++) {
		json_object *o;

		if (virtio_scsi_get_disk_stats(scsi, t, &st))
			continue;
		o = json_object_new_object();
		json_object_object_add(o, "bus", jstr("scsi"));
		json_object_object_add(o, "target", jint(t));
		json_object_object_add(o, "path", jstr(st.path));
		json_object_object_add(o, "readonly", json_object_new_boolean(st.readonly));
		json_object_object_add(o, "read_ops", jint(st.read_ops));
		json_object_object_add(o, "read_bytes", jint(st.read_bytes));
		json_object_object_add(o, "write_ops", jint(st.write_ops));
		json_object_object_add(o, "write_bytes", jint(st.write_bytes));
		json_object_object_add(o, "flush_ops", jint(st.flush_ops));
		json_object_object_add(o, "errors", jint(st.errors));
		json_object_array_add(arr, o);
	}
	return arr;
}

static json_object *jhex(uint64_t v)
{
	char b[24];

	snprintf(b, sizeof(b), "0x%llx", (unsigned long long)v);
	return json_object_new_string(b);
}

/* The memory map as query-vm shows it: every slot; holes are what is not. */
static json_object *cv_memory_json(struct guest_mem *gm)
{
	struct gm_slot_info sl[GM_MAX_SLOTS];
	int n = MIN(gm_slots(gm, sl, GM_MAX_SLOTS), GM_MAX_SLOTS);
	json_object *arr = json_object_new_array();

	for (int i = 0; i < n; i++) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "name", jstr(sl[i].name));
		json_object_object_add(o, "gpa", jhex(sl[i].gpa));
		json_object_object_add(o, "size", jint(sl[i].size));
		json_object_object_add(o, "kind",
				       jstr(sl[i].flags & GM_SLOT_RAM ? "ram" : "device"));
		json_object_object_add(o, "readonly",
				       json_object_new_boolean(sl[i].flags & GM_SLOT_READONLY));
		json_object_object_add(o, "dirty_log", json_object_new_boolean(sl[i].logging));
		json_object_array_add(arr, o);
	}
	return arr;
}

static struct device *cv_ide_channel(struct control_vm *cv, unsigned c)
{
	return c < 2 ? machine_find_device(cv->m, c ? "ide1" : "ide0") : NULL;
}

/* Per IDE drive, for stats: its counters (kestrel/ide.h). */
static void cv_ide_stats_json(struct control_vm *cv, json_object *arr)
{
	struct ide_drive_stats *st = malloc(sizeof(*st));

	for (unsigned u = 0; st && u < CONFIG_IDE_UNITS; u++) {
		struct device *ch = cv_ide_channel(cv, u / 2);
		json_object *o;

		if (!ch || ide_drive_get_stats(ch, u % 2, st))
			continue;
		o = json_object_new_object();
		json_object_object_add(o, "bus", jstr("ide"));
		json_object_object_add(o, "unit", jint(u));
		json_object_object_add(o, "media", jstr(st->kind == IDE_CDROM ? "cdrom" : "disk"));
		json_object_object_add(o, "path", st->path[0] ? jstr(st->path) : NULL);
		json_object_object_add(o, "readonly", json_object_new_boolean(st->readonly));
		json_object_object_add(o, "read_ops", jint(st->c.read_ops));
		json_object_object_add(o, "read_bytes", jint(st->c.read_bytes));
		json_object_object_add(o, "write_ops", jint(st->c.write_ops));
		json_object_object_add(o, "write_bytes", jint(st->c.write_bytes));
		json_object_object_add(o, "flush_ops", jint(st->c.flush_ops));
		json_object_object_add(o, "errors", jint(st->c.errors));
		json_object_array_add(arr, o);
	}
	free(st);
}

static int cv_query_vm(void *opaque, json_object *ret, struct control_error *e)
{
	struct control_vm *cv = opaque;
	json_object *vcpus = json_object_new_array(), *devs = json_object_new_array();

	(void)e;
	pthread_mutex_lock(&cv->lock);
	json_object_object_add(ret, "name", jstr(cv->cfg->name));
	json_object_object_add(ret, "state", jstr(cv->state));
	json_object_object_add(ret, "config", cv_config_json(cv->cfg));
	if (cv->m) {
		struct vm *vm = &cv->m->vm;

		for (unsigned i = 0; i < vm->ncpus; i++) {
			json_object *c = json_object_new_object();

			json_object_object_add(c, "id", jint(i));
			json_object_object_add(c, "exits", cv_exits_json(vm->vcpus[i].exits));
			json_object_array_add(vcpus, c);
		}
		cv_bus_json(&vm->pio, devs);
		cv_bus_json(&vm->mmio, devs);
		if (cv_scsi(cv)) {
			json_object *d = json_object_new_object();

			json_object_object_add(d, "id", jstr("scsi0"));
			json_object_object_add(d, "name", jstr("virtio-scsi"));
			json_object_object_add(d, "bus", jstr("pci"));
			json_object_array_add(devs, d);
		}
	}
	json_object_object_add(ret, "vcpus", vcpus);
	json_object_object_add(ret, "devices", devs);
	json_object_object_add(ret, "disks", cv_disks_json(cv));
	json_object_object_add(ret, "net",
			       cv->m ? cv_nics_json(cv, false) : json_object_new_array());
	json_object_object_add(ret, "memory",
			       cv->m ? cv_memory_json(&cv->m->vm.gm) : json_object_new_array());
	pthread_mutex_unlock(&cv->lock);
	return 0;
}

static int cv_stats(void *opaque, json_object *ret, struct control_error *e)
{
	struct control_vm *cv = opaque;
	json_object *mem, *io, *vcpus, *disks;
	struct vm_stats st;
	struct vm *vm;
	int rc;

	pthread_mutex_lock(&cv->lock);
	rc = cv->m ? 0 : control_fail(e, CTL_E_STATE, "the VM is %s", cv->state);
	if (rc)
		goto out;
	vm = &cv->m->vm;
	vm_get_stats(vm, &st);
	mem = json_object_new_object();
	json_object_object_add(mem, "rss_kb", jint(st.rss_kb));
	json_object_object_add(mem, "guest_ram_kb", jint(st.guest_ram_kb));
	json_object_object_add(mem, "vmm_kb", jint(st.vmm_kb));
	json_object_object_add(mem, "guest_ram_size_kb", jint(cv->cfg->mem_size >> 10));
	io = json_object_new_object();
	json_object_object_add(io, "pio_unhandled", jint(st.pio_unhandled));
	json_object_object_add(io, "mmio_unhandled", jint(st.mmio_unhandled));
	json_object_object_add(io, "rom_writes", jint(st.rom_writes));
	vcpus = json_object_new_array();
	for (unsigned i = 0; i < vm->ncpus; i++) {
		json_object *c = json_object_new_object();

		json_object_object_add(c, "id", jint(i));
		json_object_object_add(c, "exits", cv_exits_json(vm->vcpus[i].exits));
		json_object_array_add(vcpus, c);
	}
	json_object_object_add(ret, "uptime_ms", jint((clock_mono_ns() - cv->start_ns) / 1000000));
	json_object_object_add(ret, "memory", mem);
	json_object_object_add(ret, "exits", cv_exits_json(st.exits));
	json_object_object_add(ret, "vcpus", vcpus);
	json_object_object_add(ret, "io", io);
	json_object_object_add(ret, "net", cv_nics_json(cv, true));
	disks = cv_disk_stats_json(cv);
	cv_ide_stats_json(cv, disks);
	json_object_object_add(ret, "disks", disks);
out:
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

/* ---- run state ---------------------------------------------------------- */

static int cv_pause(void *opaque, struct control_error *e)
{
	struct control_vm *cv = opaque;
	int rc;

	pthread_mutex_lock(&cv->lock);
	rc = cv_need_vm(cv, e);
	if (!rc && strcmp(cv->state, "running") != 0)
		rc = control_fail(e, CTL_E_STATE, "the VM is %s, not running", cv->state);
	if (!rc) {
		rc = vm_pause(&cv->m->vm, CV_PAUSE_TIMEOUT_MS);
		if (rc == -ETIMEDOUT)
			control_fail(e, CTL_E_TIMEOUT,
				     "the vCPUs did not stop within %d ms; the VM "
				     "keeps running",
				     CV_PAUSE_TIMEOUT_MS);
		else if (rc)
			control_fail(e, CTL_E_STATE, "the VM is stopping");
		else
			cv_set_state(cv, "paused");
	}
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

static int cv_resume(void *opaque, struct control_error *e)
{
	struct control_vm *cv = opaque;
	int rc;

	pthread_mutex_lock(&cv->lock);
	rc = cv_need_vm(cv, e);
	if (!rc && strcmp(cv->state, "paused") != 0)
		rc = control_fail(e, CTL_E_STATE, "the VM is %s, not paused", cv->state);
	if (!rc) {
		vm_resume(&cv->m->vm);
		cv_set_state(cv, "running");
	}
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

/* The ACPI power button: the guest's OS shuts down in its own way and writes
 * S5 at the end (ACPI 6.5 4.8.2.2.1.1). A paused VM is resumed first, or it
 * could never react. */
static int cv_shutdown(void *opaque, uint64_t timeout_ms, struct control_error *e)
{
	struct control_vm *cv = opaque;
	json_object *d;
	int rc;

	pthread_mutex_lock(&cv->lock);
	rc = cv_need_vm(cv, e);
	if (!rc) {
		if (strcmp(cv->state, "paused") == 0)
			vm_resume(&cv->m->vm);
		acpi_pm_power_button(machine_find_device(cv->m, "pm"));
		if (timeout_ms) {
			uint64_t at = clock_mono_ns() + timeout_ms * 1000000ULL;

			if (!cv->shutdown_deadline_ns || at < cv->shutdown_deadline_ns)
				cv->shutdown_deadline_ns = at;
		}
		d = json_object_new_object();
		json_object_object_add(d, "timeout_ms", jint(timeout_ms));
		control_event(cv->srv, CTL_EV_POWERDOWN, d);
		cv_set_state(cv, "shutting-down");
	}
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

/* stop and reset: who asked is remembered (host_stop, host_reset), then the
 * same path as the guest's own power-off or reset; the main loop restarts or
 * exits per --on-reboot. */
static int cv_request_stop(struct control_vm *cv, bool *by_host, enum vm_stop_reason why,
			   struct control_error *e)
{
	int rc;

	pthread_mutex_lock(&cv->lock);
	rc = cv_need_vm(cv, e);
	if (!rc) {
		*by_host = true;
		vm_request_stop_cb(&cv->m->vm, why, 0);
	}
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

static int cv_stop(void *opaque, struct control_error *e)
{
	struct control_vm *cv = opaque;

	return cv_request_stop(cv, &cv->host_stop, VM_STOP_POWEROFF, e);
}

static int cv_reset(void *opaque, struct control_error *e)
{
	struct control_vm *cv = opaque;

	return cv_request_stop(cv, &cv->host_reset, VM_STOP_RESET, e);
}

/* ---- hot-plug ------------------------------------------------------------ */

/* Opening a disk can block for long (NFS, a lease another process holds, a
 * slow device) and a removal waits for the disk's requests in flight. Neither
 * runs on the control thread nor under cv->lock, or query-status, the other
 * clients and the systemd watchdog would wait too: a job thread does the slow
 * part, and the command's reply comes when it is done (control_defer). The
 * quick parts -- checking and reserving the target, attaching, bookkeeping,
 * the reply and the event -- run under cv->lock; a job that finds the
 * machine gone or re-created since it began undoes its work. While a job
 * holds a target, cv->disks[t].busy keeps other commands off it. A
 * cdrom-change is the same kind of job: the medium is opened on the job
 * thread and put in the drive under cv->lock (cv->cds[u].busy). */
struct cv_job {
	struct control_vm *cv;
	struct control_pending *p; /* NULL: re-adding a disk after a reset */
	bool add;		   /* the job opens opts (a disk or a medium) */
	bool cd;		   /* cdrom-change: target is the IDE unit */
	char *id;		   /* cd: the drive's id as the command named it */
	bool any_target;	   /* add: the lowest free target, when done */
	unsigned target;
	unsigned boot; /* cv->boots when the job began */
	char *path;
	struct blk_opts opts;	   /* add: opts.path = path */
	struct blk_dev *blk;	   /* add: the disk the job opened */
	struct vscsi_target *gone; /* remove: the target the job closes */
	int rc;
	char err[256];
};

static int cv_blk_opts(const struct control_disk_req *r, struct blk_opts *o,
		       struct control_error *e)
{
	/* The schema checked each value against these same tables. */
	int f = blk_name_index(blk_format_names, r->format);
	int c = blk_name_index(blk_cache_names, r->cache);
	int a = blk_name_index(blk_aio_names, r->aio);

	memset(o, 0, sizeof(*o));
	o->path = r->path;
	o->readonly = r->readonly;
	o->format = f < 0 ? BLK_FMT_AUTO : (enum blk_format)f;
	o->cache = c < 0 ? BLK_CACHE_WRITEBACK : (enum blk_cache)c;
	o->aio = a < 0 ? BLK_AIO_AUTO : (enum blk_aio)a;
	(void)e;
	return 0;
}

static int cv_need_scsi(struct control_vm *cv, struct control_error *e)
{
	int rc = cv_need_vm(cv, e);

	if (!rc && !cv_scsi(cv))
		rc = control_fail(e, CTL_E_UNSUPPORTED,
				  "this VM has no SCSI controller (start it "
				  "with --scsi-controller or a --disk ...,bus=scsi)");
	return rc;
}

static void cv_disk_set(struct cv_disk *d, const struct blk_opts *o, bool hotplugged)
{
	free(d->path);
	d->path = strdup(o->path);
	d->opts = *o;
	d->opts.path = d->path;
	d->opts.owned = NULL;
	d->present = d->path != NULL;
	d->hotplugged = hotplugged;
}

static bool cv_target_free(const struct control_vm *cv, unsigned t)
{
	return !cv->disks[t].present && !cv->disks[t].busy;
}

static void cv_device_event(struct control_vm *cv, const char *ev, unsigned t)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "device", jstr("scsi-disk"));
	json_object_object_add(d, "target", jint(t));
	if (cv->disks[t].path)
		json_object_object_add(d, "path", jstr(cv->disks[t].path));
	control_event(cv->srv, ev, d);
}

static void cv_job_free(struct cv_job *j)
{
	if (j->blk)
		blk_close(j->blk);
	free(j->path);
	free(j->id);
	free(j);
}

static void cv_free(struct control_vm *cv)
{
	for (unsigned t = 0; t < CONFIG_MAX_DISKS; t++)
		free(cv->disks[t].path);
	free(cv->save.path);
	snapshot_apply_free(&cv->save.apply);
	for (unsigned u = 0; u < CONFIG_IDE_UNITS; u++)
		free(cv->cds[u].path);
	pthread_mutex_destroy(&cv->lock);
	free(cv);
}

/* An opened disk onto the controller; the controller is the judge of a
 * free target (a test hook may have taken one). */
static int cv_add_attach(struct control_vm *cv, struct cv_job *j, struct control_error *e)
{
	int rc = -EEXIST;

	for (unsigned t = j->any_target ? 0 : j->target; t < CONFIG_MAX_DISKS && rc == -EEXIST;
	     t++) {
		if (j->any_target && !cv_target_free(cv, t))
			continue;
		rc = virtio_scsi_attach_disk(cv_scsi(cv), t, j->blk, j->err, sizeof(j->err));
		j->target = t;
		if (!j->any_target)
			break;
	}
	if (rc == -EEXIST)
		return control_fail(e, CTL_E_EXISTS,
				    j->any_target ? "every SCSI target is in use"
						  : "target %u is in use",
				    j->target);
	if (rc)
		return control_fail(e, CTL_E_FAILED, "%s", j->err[0] ? j->err : strerror(-rc));
	j->blk = NULL; /* the controller's now */
	cv_disk_set(&cv->disks[j->target], &j->opts, true);
	return 0;
}

static int cv_cd_job_result(struct control_vm *cv, struct cv_job *j, json_object *ret,
			    struct control_error *e);

/* The end of a job, under cv->lock: 0 with ret filled, or e. */
static int cv_job_result(struct control_vm *cv, struct cv_job *j, json_object *ret,
			 struct control_error *e)
{
	if (j->cd)
		return cv_cd_job_result(cv, j, ret, e);
	if (j->add && j->rc)
		return control_fail(e, CTL_E_FAILED, "%s", j->err[0] ? j->err : strerror(-j->rc));
	if (j->add && cv->m && cv->boots != j->boot)
		return control_fail(e, CTL_E_STATE,
				    "the VM restarted while the disk was being "
				    "opened; it was not added");
	if (j->add && (cv_need_scsi(cv, e) || cv_add_attach(cv, j, e)))
		return -EINVAL;
	json_object_object_add(ret, "target", jint(j->target));
	if (j->add)
		json_object_object_add(ret, "path", jstr(j->path));
	return 0;
}

static void cv_job_finish(struct cv_job *j)
{
	struct control_vm *cv = j->cv;
	struct control_error e = { .code = CTL_E_INTERNAL };
	json_object *ret = json_object_new_object();
	bool last;
	int rc;

	pthread_mutex_lock(&cv->lock);
	if (!cv->dying) {
		rc = cv_job_result(cv, j, ret, &e);
		if (j->p) {
			control_pending_done(j->p, rc ? NULL : ret, rc ? &e : NULL);
			j->p = NULL;
			ret = rc ? ret : NULL;
			/* After the reply: a command's events follow it. */
			if (!rc && !j->cd)
				cv_device_event(
					cv, j->add ? CTL_EV_DEVICE_ADDED : CTL_EV_DEVICE_REMOVED,
					j->target);
		} else if (rc) {
			kwarn("control: re-adding target %u after the reset: %s", j->target,
			      e.message);
			cv->disks[j->target].present = false;
		}
	}
	if (j->cd)
		cv->cds[j->target].busy = false;
	else if (!j->any_target)
		cv->disks[j->target].busy = false;
	control_pending_drop(j->p); /* the worker is exiting: no reply */
	last = --cv->jobs == 0 && cv->released;
	pthread_mutex_unlock(&cv->lock);
	json_object_put(ret);
	cv_job_free(j);
	if (last)
		cv_free(cv);
}

static void *cv_job_thread(void *arg)
{
	struct cv_job *j = arg;

	if (j->add)
		j->rc = blk_open(&j->blk, &j->opts, j->err, sizeof(j->err));
	else
		virtio_scsi_target_close(j->gone);
	cv_job_finish(j);
	return NULL;
}

/* Start a job (cv->lock held); it owns j from here on and answers through
 * j->p. Without a thread the job runs here: slow, but answered. */
static void cv_job_start(struct control_vm *cv, struct cv_job *j)
{
	pthread_t th;

	j->cv = cv;
	j->boot = cv->boots;
	if (j->cd)
		cv->cds[j->target].busy = true;
	else if (!j->any_target)
		cv->disks[j->target].busy = true;
	cv->jobs++;
	/* A control thread of the sandbox: what a job does -- open a disk,
	 * wait for its requests, close it -- is what disk-add and disk-remove
	 * did on the control thread itself. */
	if (sandbox_thread_start(&th, SANDBOX_CONTROL, "disk-job", cv_job_thread, j) == 0) {
		pthread_detach(th);
		return;
	}
	kwarn("control: no thread for a disk job; running it on the control thread");
	pthread_mutex_unlock(&cv->lock);
	cv_job_thread(j);
	pthread_mutex_lock(&cv->lock);
}

static struct cv_job *cv_job_new(bool add, const struct blk_opts *o, struct control_error *e)
{
	struct cv_job *j = calloc(1, sizeof(*j));

	if (j && o) {
		j->opts = *o;
		j->opts.owned = NULL;
		j->path = strdup(o->path);
		j->opts.path = j->path;
	}
	if (!j || (o && !j->path)) {
		free(j);
		control_fail(e, CTL_E_INTERNAL, "out of memory");
		return NULL;
	}
	j->add = add;
	return j;
}

/* The target a disk-add asks for is free now (the job checks again). */
static int cv_add_target_ok(struct control_vm *cv, int target, struct control_error *e)
{
	if (target >= 0)
		return cv_target_free(cv, (unsigned)target)
			       ? 0
			       : control_fail(e, CTL_E_EXISTS, "target %d is in use", target);
	for (unsigned t = 0; t < CONFIG_MAX_DISKS; t++)
		if (cv_target_free(cv, t))
			return 0;
	return control_fail(e, CTL_E_EXISTS, "every SCSI target is in use");
}

static int cv_disk_add(void *opaque, const struct control_disk_req *r, struct control_call *call,
		       json_object *ret, struct control_error *e)
{
	struct control_vm *cv = opaque;
	struct cv_job *j = NULL;
	struct blk_opts o;
	int rc;

	(void)ret;
	pthread_mutex_lock(&cv->lock);
	rc = cv_need_scsi(cv, e) ?: cv_blk_opts(r, &o, e) ?: cv_add_target_ok(cv, r->target, e);
	if (!rc && !(j = cv_job_new(true, &o, e)))
		rc = -ENOMEM;
	if (!rc && !(j->p = control_defer(call)))
		rc = control_fail(e, CTL_E_INTERNAL, "cannot answer later (out of memory)");
	if (!rc) {
		j->any_target = r->target < 0;
		j->target = r->target < 0 ? 0 : (unsigned)r->target;
		cv_job_start(cv, j);
	} else if (j) {
		cv_job_free(j);
	}
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

/* The guest sees the disk go at once; the reply comes once the file is
 * closed, after the requests in flight. */
static int cv_disk_remove(void *opaque, unsigned t, struct control_call *call, json_object *ret,
			  struct control_error *e)
{
	struct control_vm *cv = opaque;
	struct cv_job *j = NULL;
	char err[256] = "";
	int rc;

	(void)ret;
	pthread_mutex_lock(&cv->lock);
	rc = cv_need_scsi(cv, e);
	if (!rc && t >= CONFIG_MAX_DISKS)
		rc = control_fail(e, CTL_E_ARGUMENT, "no target %u", t);
	if (!rc && cv->disks[t].busy)
		rc = control_fail(e, CTL_E_STATE, "target %u is being added or removed", t);
	if (!rc && !(j = cv_job_new(false, NULL, e)))
		rc = -ENOMEM;
	if (!rc && !(j->p = control_defer(call)))
		rc = control_fail(e, CTL_E_INTERNAL, "cannot answer later (out of memory)");
	if (!rc) {
		rc = virtio_scsi_detach(cv_scsi(cv), t, &j->gone, err, sizeof(err));
		if (rc == -ENOENT)
			control_fail(e, CTL_E_NOT_FOUND, "no disk at target %u", t);
		else if (rc)
			control_fail(e, CTL_E_FAILED, "%s", err[0] ? err : strerror(-rc));
	}
	if (!rc) {
		cv->disks[t].present = false;
		j->target = t;
		cv_job_start(cv, j);
	} else if (j) {
		if (j->p) { /* deferred already: the error is the reply */
			control_pending_done(j->p, NULL, e);
			j->p = NULL;
			rc = 0;
		}
		cv_job_free(j);
	}
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

/* A reset re-creates the machine from the configuration: put back what was
 * hot-plugged since and take out what was hot-removed, through jobs as the
 * commands do (the files are opened and closed off this thread; a disk put
 * back reaches a running driver as a hot-add). Called with the lock held. */
static void cv_replay_disks(struct control_vm *cv)
{
	struct device *scsi = cv_scsi(cv);
	struct control_error e;
	struct cv_job *j;
	char err[256];

	if (!scsi)
		return;
	for (unsigned t = 0; t < CONFIG_MAX_DISKS; t++) {
		struct cv_disk *d = &cv->disks[t];
		bool put_back = d->hotplugged && d->present && !d->busy;

		if (!put_back && !(d->configured && !d->present))
			continue;
		j = cv_job_new(put_back, put_back ? &d->opts : NULL, &e);
		if (!j) {
			kwarn("control: re-applying hot-plug of target %u after the reset: out of "
			      "memory",
			      t);
			continue;
		}
		j->target = t;
		err[0] = '\0';
		if (!put_back && virtio_scsi_detach(scsi, t, &j->gone, err, sizeof(err))) {
			kwarn("control: re-applying the removal of target %u: %s", t, err);
			cv_job_free(j);
			continue;
		}
		cv_job_start(cv, j);
	}
}

/* "net0".. or the TAP's name; NULL: the first NIC. -1 when there is none. */
static int cv_nic_index(struct control_vm *cv, const char *device)
{
	unsigned i, n = cv_nnics(cv);
	char name[16];

	if (!device)
		return n ? 0 : -1;
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "net%u", i);
		if (!strcmp(device, name) ||
		    (i < cv->cfg->nnets && !strcmp(device, cv->cfg->nets[i].ifname)))
			return (int)i;
	}
	return -1;
}

/* ---- IDE CD-ROM media ---------------------------------------------------- */

/* "0".."3" (--disk unit=) or "ide0-0".."ide1-1" (channel-device): the unit,
 * or -1. */
static int cv_cd_unit(const char *id)
{
	if (id[0] >= '0' && id[0] <= '3' && !id[1])
		return id[0] - '0';
	if (strlen(id) == 6 && !strncmp(id, "ide", 3) && (id[3] == '0' || id[3] == '1') &&
	    id[4] == '-' && (id[5] == '0' || id[5] == '1'))
		return (id[3] - '0') * 2 + (id[5] - '0');
	return -1;
}

/* The CD-ROM drive id names: 0, or the error (e filled). */
static int cv_cd_find(struct control_vm *cv, const char *id, struct device **ch, unsigned *unit,
		      struct control_error *e)
{
	struct ide_drive_stats *st;
	int u = cv_cd_unit(id), rc = cv_need_vm(cv, e);

	if (rc)
		return rc;
	if (!cv_ide_channel(cv, 0) && !cv_ide_channel(cv, 1))
		return control_fail(e, CTL_E_UNSUPPORTED,
				    "this VM has no IDE controller (start it "
				    "with a --disk ...,bus=ide,media=cdrom)");
	if (u < 0)
		return control_fail(e, CTL_E_ARGUMENT,
				    "id %s: expected 0-3 or ide0-0, ide0-1, "
				    "ide1-0, ide1-1",
				    id);
	st = malloc(sizeof(*st));
	if (!st)
		return control_fail(e, CTL_E_INTERNAL, "out of memory");
	*ch = cv_ide_channel(cv, (unsigned)u / 2);
	*unit = (unsigned)u;
	rc = *ch ? ide_drive_get_stats(*ch, (unsigned)u % 2, st) : -ENODEV;
	if (!rc && st->kind != IDE_CDROM)
		rc = -ENODEV;
	free(st);
	return rc ? control_fail(e, CTL_E_NOT_FOUND, "no CD-ROM drive at %s", id) : 0;
}

/* Open path as a CD's medium and put it in the drive; the one taken out is
 * closed. 0 or -errno, err says why. */
static int cv_cd_insert(struct device *ch, unsigned unit, const char *path, enum blk_format f,
			char *err, size_t errlen)
{
	struct blk_opts o = { .path = path,
			      .format = f,
			      .readonly = true,
			      .cache = BLK_CACHE_WRITEBACK,
			      .aio = BLK_AIO_AUTO };
	struct blk_dev *blk = NULL, *old = NULL;
	int rc = blk_open(&blk, &o, err, errlen);

	if (rc)
		return rc;
	rc = ide_cd_change(ch, unit % 2, blk, &old);
	if (rc) {
		snprintf(err, errlen, "%s", strerror(-rc));
		blk_close(blk);
	} else if (old) {
		blk_close(old);
	}
	return rc;
}

static void cv_cd_set(struct cv_cd *cd, const char *path, enum blk_format f)
{
	free(cd->path);
	cd->path = path ? strdup(path) : NULL;
	cd->format = f;
	cd->changed = true;
}

/* The job's medium into the drive (under cv->lock). The drive is looked up
 * again: a reset since the command re-created the machine (the medium then
 * goes into the new one's drive, and is re-applied after later resets). */
static int cv_cd_job_result(struct control_vm *cv, struct cv_job *j, json_object *ret,
			    struct control_error *e)
{
	struct blk_dev *old = NULL;
	struct device *ch;
	unsigned u;
	int rc;

	if (j->rc)
		return control_fail(e, CTL_E_FAILED, "%s", j->err[0] ? j->err : strerror(-j->rc));
	rc = cv_cd_find(cv, j->id, &ch, &u, e);
	if (rc)
		return rc;
	rc = ide_cd_change(ch, u % 2, j->blk, &old);
	if (rc)
		return control_fail(e, CTL_E_FAILED, "%s", strerror(-rc));
	j->blk = NULL; /* the drive's now */
	if (old)
		blk_close(old);
	cv_cd_set(&cv->cds[u], j->path, j->opts.format);
	json_object_object_add(ret, "id", jstr(j->id));
	json_object_object_add(ret, "path", jstr(j->path));
	return 0;
}

/* Checks here, at once; the medium is opened on a job thread (an open can
 * wait for long: NFS, a lease another process holds), the reply deferred. */
static int cv_cdrom_change(void *opaque, const char *id, const char *path, const char *format,
			   struct control_call *call, json_object *ret, struct control_error *e)
{
	struct control_vm *cv = opaque;
	int f = blk_name_index(blk_format_names, format);
	struct blk_opts o = { .path = path,
			      .format = f < 0 ? BLK_FMT_AUTO : (enum blk_format)f,
			      .readonly = true,
			      .cache = BLK_CACHE_WRITEBACK,
			      .aio = BLK_AIO_AUTO };
	struct cv_job *j = NULL;
	struct device *ch;
	unsigned u;
	int rc;

	(void)ret;
	pthread_mutex_lock(&cv->lock);
	rc = cv_cd_find(cv, id, &ch, &u, e);
	if (!rc && cv->cds[u].busy)
		rc = control_fail(e, CTL_E_STATE, "a cdrom-change of %s is under way", id);
	if (!rc && (!(j = cv_job_new(true, &o, e)) || !(j->id = strdup(id))))
		rc = j ? control_fail(e, CTL_E_INTERNAL, "out of memory") : -ENOMEM;
	if (!rc && !(j->p = control_defer(call)))
		rc = control_fail(e, CTL_E_INTERNAL, "cannot answer later (out of memory)");
	if (!rc) {
		j->cd = true;
		j->target = u;
		cv_job_start(cv, j);
	} else if (j) {
		cv_job_free(j);
	}
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

static int cv_cdrom_eject(void *opaque, const char *id, bool force, json_object *ret,
			  struct control_error *e)
{
	struct control_vm *cv = opaque;
	struct blk_dev *old = NULL;
	struct device *ch;
	unsigned u;
	int rc;

	pthread_mutex_lock(&cv->lock);
	rc = cv_cd_find(cv, id, &ch, &u, e);
	if (!rc && cv->cds[u].busy)
		rc = control_fail(e, CTL_E_STATE, "a cdrom-change of %s is under way", id);
	if (!rc) {
		rc = ide_cd_eject(ch, u % 2, force, &old);
		if (rc == -EBUSY)
			control_fail(e, CTL_E_FAILED,
				     "the guest has locked the medium in (PREVENT "
				     "MEDIUM REMOVAL); it was asked to eject it; force=true takes "
				     "it out anyway");
		else if (rc)
			control_fail(e, CTL_E_FAILED, "%s", strerror(-rc));
	}
	if (!rc) {
		if (old)
			blk_close(old);
		cv_cd_set(&cv->cds[u], NULL, BLK_FMT_AUTO);
		json_object_object_add(ret, "id", jstr(id));
	}
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

static void cv_replay_cds(struct control_vm *cv)
{
	char err[256];

	for (unsigned u = 0; u < CONFIG_IDE_UNITS; u++) {
		struct device *ch = cv_ide_channel(cv, u / 2);
		struct blk_dev *old = NULL;
		int rc;

		if (!cv->cds[u].changed || !ch)
			continue;
		err[0] = '\0';
		if (cv->cds[u].path) {
			rc = cv_cd_insert(ch, u, cv->cds[u].path, cv->cds[u].format, err,
					  sizeof(err));
		} else {
			rc = ide_cd_eject(ch, u % 2, true, &old);
			if (old)
				blk_close(old);
		}
		if (rc)
			kwarn("control: re-applying the medium of IDE unit %u after the reset: %s",
			      u, err[0] ? err : strerror(-rc));
	}
}

/* A reset re-creates the machine from the configuration: re-apply what the
 * socket changed since (disks, links, CD media). Called with the lock held. */
static void cv_replay(struct control_vm *cv)
{
	cv_replay_disks(cv);
	cv_replay_cds(cv);
	for (unsigned i = 0; i < cv_nnics(cv); i++)
		if (cv->link_down[i] && cv_nic_set_link(cv, i, false))
			kwarn("control: net%u: keeping the link down after the reset failed", i);
}

static int cv_net_link(void *opaque, const char *device, bool up, struct control_error *e)
{
	struct control_vm *cv = opaque;
	int rc, i = -1;

	pthread_mutex_lock(&cv->lock);
	rc = cv_need_vm(cv, e);
	if (!rc && !cv_nnics(cv))
		rc = control_fail(e, CTL_E_UNSUPPORTED,
				  "this VM has no network device (start it "
				  "with --net)");
	if (!rc) {
		i = cv_nic_index(cv, device);
		if (i < 0)
			rc = control_fail(e, CTL_E_NOT_FOUND,
					  "no network device '%.64s' (net0 to "
					  "net%u, or the TAP's name)",
					  device, cv_nnics(cv) - 1);
	}
	if (!rc) {
		rc = cv_nic_set_link(cv, (unsigned)i, up);
		if (rc)
			control_fail(e, CTL_E_FAILED, "net%d: %s", i, strerror(-rc));
		else
			cv->link_down[i] = !up;
	}
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

/* Rendering happens here, on the control thread: the VGA's lock is taken
 * only to copy its registers and dirty pages, so vCPUs are held up for that
 * copy at most; cv->lock keeps the machine from going away meanwhile. */
static int cv_screendump(void *opaque, const char *path, json_object *ret, struct control_error *e)
{
	struct control_vm *cv = opaque;
	uint32_t w = 0, h = 0;
	char msg[300];
	int rc;

	pthread_mutex_lock(&cv->lock);
	rc = cv_need_vm(cv, e);
	if (!rc && !cv->m->display)
		rc = control_fail(e, CTL_E_UNSUPPORTED,
				  "this VM has no display (start it with "
				  "--vga std)");
	if (!rc) {
		rc = display_screendump(cv->m->display, path, &w, &h, msg, sizeof(msg));
		if (rc)
			control_fail(e, CTL_E_FAILED, "%s", msg);
	}
	pthread_mutex_unlock(&cv->lock);
	if (!rc) {
		json_object_object_add(ret, "file", jstr(path));
		json_object_object_add(ret, "width", jint(w));
		json_object_object_add(ret, "height", jint(h));
	}
	return rc;
}

/* ---- guest memory ----------------------------------------------------------- */

/* Runs of consecutive dirty pages, at most CV_DIRTY_RUNS_MAX listed. */
#define CV_DIRTY_RUNS_MAX 4096

struct cv_runs {
	json_object *arr;
	uint64_t start, len;
	unsigned n;
	bool truncated;
};

static void cv_run_end(struct cv_runs *r)
{
	json_object *o;

	if (!r->len)
		return;
	if (r->n == CV_DIRTY_RUNS_MAX) {
		r->truncated = true;
	} else {
		o = json_object_new_object();
		json_object_object_add(o, "gpa", jhex(r->start));
		json_object_object_add(o, "pages", jint(r->len));
		json_object_array_add(r->arr, o);
		r->n++;
	}
	r->len = 0;
}

static void cv_run_page(struct cv_runs *r, uint64_t gpa)
{
	if (r->len && r->start + r->len * GM_PAGE_SIZE == gpa) {
		r->len++;
		return;
	}
	cv_run_end(r);
	r->start = gpa;
	r->len = 1;
}

/* Every RAM slot's dirty pages since the last fetch (or start), cleared. */
static int cv_dirty_fetch(struct guest_mem *gm, json_object *ret, struct control_error *e)
{
	struct gm_slot_info sl[GM_MAX_SLOTS];
	int n = MIN(gm_slots(gm, sl, GM_MAX_SLOTS), GM_MAX_SLOTS);
	struct cv_runs r = { .arr = json_object_new_array() };
	uint64_t pages = 0;

	for (int i = 0; i < n; i++) {
		uint64_t np = sl[i].size / GM_PAGE_SIZE, *bm;
		long got;

		if (!(sl[i].flags & GM_SLOT_RAM))
			continue;
		bm = calloc(ALIGN_UP(np, 64) / 64, sizeof(*bm));
		got = bm ? gm_dirty_fetch(gm, sl[i].id, bm, np, true) : -ENOMEM;
		if (got < 0) {
			free(bm);
			json_object_put(r.arr);
			return control_fail(e, CTL_E_FAILED, "%s: %s", sl[i].name,
					    strerror((int)-got));
		}
		pages += (uint64_t)got;
		for (uint64_t w = 0; w * 64 < np; w++)
			for (uint64_t v = bm[w]; v; v &= v - 1)
				cv_run_page(&r,
					    sl[i].gpa + (w * 64 + (uint64_t)__builtin_ctzll(v)) *
								GM_PAGE_SIZE);
		free(bm);
	}
	cv_run_end(&r);
	json_object_object_add(ret, "pages", jint(pages));
	json_object_object_add(ret, "ranges", r.arr);
	json_object_object_add(ret, "truncated", json_object_new_boolean(r.truncated));
	return 0;
}

static int cv_dirty_action(struct guest_mem *gm, const char *action, json_object *ret,
			   struct control_error *e)
{
	int rc;

	if (!strcmp(action, "start")) {
		rc = gm_dirty_log_start(gm);
		if (rc == -EBUSY)
			return control_fail(e, CTL_E_STATE, "dirty logging is on already");
		if (rc)
			control_fail(e, CTL_E_FAILED, "starting dirty logging: %s", strerror(-rc));
		return rc;
	}
	if (!gm_dirty_logging(gm))
		return control_fail(e, CTL_E_STATE, "dirty logging is off (dirty-log start)");
	if (!strcmp(action, "fetch"))
		return cv_dirty_fetch(gm, ret, e);
	gm_dirty_log_stop(gm);
	return 0;
}

static int cv_dirty_log(void *opaque, const char *action, json_object *ret, struct control_error *e)
{
	struct control_vm *cv = opaque;
	int rc;

	pthread_mutex_lock(&cv->lock);
	rc = cv_need_vm(cv, e);
	if (!rc)
		rc = cv_dirty_action(&cv->m->vm.gm, action, ret, e);
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

/* ---- save ------------------------------------------------------------------ */

static void cv_save_progress(void *opaque, uint64_t done, uint64_t total)
{
	struct control_vm *cv = opaque;
	uint64_t now = clock_mono_ns();
	json_object *d;

	if (done < total && now - cv->save.last_progress_ns < CV_PROGRESS_NS)
		return;
	cv->save.last_progress_ns = now;
	d = json_object_new_object();
	json_object_object_add(d, "bytes", jint(done));
	json_object_object_add(d, "total", jint(total));
	control_event(cv->srv, CTL_EV_SAVE_PROGRESS, d);
}

static void cv_save_event(struct control_vm *cv, int rc, const struct migrate_save_result *r,
			  const char *msg)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "path", jstr(cv->save.path));
	if (rc) {
		json_object_object_add(d, "message", jstr(msg));
		control_event(cv->srv, CTL_EV_SAVE_FAILED, d);
		return;
	}
	json_object_object_add(d, "bytes", jint(r->file_bytes));
	json_object_object_add(d, "ram_bytes", jint(r->ram_stored));
	json_object_object_add(d, "ms", jint(r->ms));
	json_object_object_add(d, "keep_running", json_object_new_boolean(cv->save.keep_running));
	control_event(cv->srv, CTL_EV_SAVED, d);
}

static void *cv_save_thread_save(struct control_vm *cv);
static void *cv_migrate_thread(struct control_vm *cv);

/* After a snapshot the VM runs on other files (new children): what the
 * socket lists and what a reboot opens (control_vm_disk_paths) follow. */
static void cv_sync_disk_paths(struct control_vm *cv)
{
	struct device *scsi = machine_find_device(cv->m, "scsi0");

	pthread_mutex_lock(&cv->lock);
	for (unsigned t = 0; scsi && t < CONFIG_MAX_DISKS; t++) {
		struct blk_dev *d = virtio_scsi_disk_blk(scsi, t);
		char *p;

		if (!d || !cv->disks[t].present || !cv->disks[t].path ||
		    !strcmp(cv->disks[t].path, d->path) || !(p = strdup(d->path)))
			continue;
		free(cv->disks[t].path);
		cv->disks[t].path = p;
		cv->disks[t].opts.path = p;
	}
	pthread_mutex_unlock(&cv->lock);
}

void control_vm_disk_paths(struct control_vm *cv, struct vm_config *cfg)
{
	if (!cv)
		return;
	pthread_mutex_lock(&cv->lock);
	for (unsigned i = 0; i < cfg->ndisks; i++) {
		struct config_disk *c = &cfg->disks[i];
		const char *now;
		char *p;

		if (c->target < 0 || c->target >= CONFIG_MAX_DISKS || !cv->disks[c->target].present)
			continue;
		now = cv->disks[c->target].path;
		if (!now || !strcmp(now, c->path) || !(p = strdup(now)))
			continue;
		free(c->path);
		c->path = p;
		c->blk.path = p;
		c->blk.format = BLK_FMT_VHD;
	}
	pthread_mutex_unlock(&cv->lock);
}

/* A snapshot operation, on the save thread; the reply through the pending. */
static void cv_snapshot_run(struct control_vm *cv)
{
	struct machine *m = cv->m;
	struct control_error e = { .code = CTL_E_FAILED };
	json_object *ret = json_object_new_object();
	char err[512] = "";
	bool quiesced = false;
	int rc = 0;

	if (cv->save.op != CV_SNAP_APPLY) {
		rc = machine_quiesce(m, CV_PAUSE_TIMEOUT_MS);
		quiesced = rc == 0;
		if (rc)
			snprintf(err, sizeof(err), "the vCPUs did not stop in time");
		else if (cv->save.op == CV_SNAP_CREATE)
			rc = snapshot_create(m, cv->save.name, err, sizeof(err));
		else
			rc = snapshot_delete_machine(m, cv->save.name, err, sizeof(err));
		cv_sync_disk_paths(cv);
	} else {
		rc = snapshot_apply_prepare(m, cv->save.name, &cv->save.apply, err, sizeof(err));
	}
	pthread_mutex_lock(&cv->lock);
	if (rc) {
		control_fail(&e,
			     rc == -ENOENT    ? CTL_E_NOT_FOUND
			     : rc == -EEXIST  ? CTL_E_EXISTS
			     : rc == -ENOTSUP ? CTL_E_UNSUPPORTED
					      : CTL_E_FAILED,
			     "%s", err);
		kerr("snapshot %s: %s", cv->save.name, err);
	} else {
		json_object_object_add(ret, "name", jstr(cv->save.name));
	}
	if (!rc && cv->save.op == CV_SNAP_APPLY) {
		cv->save.apply_ready = cv->save.stopped = true;
		vm_request_stop_cb(&m->vm, VM_STOP_APPLY, 0);
	}
	if (quiesced && (cv->save.was_paused ? machine_resume_devices(m) : machine_resume(m)))
		kwarn("snapshot: a device did not resume cleanly");
	if (!cv->save.stopped)
		cv_set_state(cv, cv->save.was_paused ? "paused" : "running");
	control_pending_done(cv->save.p, rc ? NULL : ret, rc ? &e : NULL);
	cv->save.p = NULL;
	if (!rc)
		ret = NULL;
	cv->save.running = false;
	pthread_mutex_unlock(&cv->lock);
	json_object_put(ret);
}

/* Quiesce, write, then resume (keep-running, or after a failure) or end
 * the worker. The machine cannot go away meanwhile: detach joins us. */
static void *cv_save_thread(void *arg)
{
	struct control_vm *cv = arg;

	if (cv->save.op == CV_MIGRATE)
		return cv_migrate_thread(cv);
	if (cv->save.op != CV_SAVE) {
		cv_snapshot_run(cv);
		return NULL;
	}
	return cv_save_thread_save(cv);
}

static void *cv_save_thread_save(struct control_vm *cv)
{
	struct machine *m = cv->m;
	struct migrate_save_opts o = { .path = cv->save.path,
				       .progress = cv_save_progress,
				       .opaque = cv };
	struct migrate_save_result r = { 0 };
	char err[512] = "";
	bool quiesced;
	int rc = machine_quiesce(m, CV_PAUSE_TIMEOUT_MS);

	quiesced = rc == 0;
	if (rc)
		snprintf(err, sizeof(err), "%s",
			 rc == -ETIMEDOUT ? "the vCPUs did not stop in time"
					  : "the VM is stopping");
	else
		rc = migrate_save(m, &o, &r, err, sizeof(err));
	if (rc)
		kerr("save: %s", err);
	else
		kinfo("saved the VM to %s (%llu MiB of RAM stored, %llu ms)", cv->save.path,
		      (unsigned long long)(r.ram_stored >> 20), (unsigned long long)r.ms);
	pthread_mutex_lock(&cv->lock);
	cv_save_event(cv, rc, &r, err);
	if (!rc && !cv->save.keep_running) {
		cv->save.stopped = true;
		vm_request_stop_cb(&m->vm, VM_STOP_SAVED, 0);
	} else if (quiesced) {
		if ((cv->save.was_paused ? machine_resume_devices(m) : machine_resume(m)))
			kwarn("save: a device did not resume cleanly");
	}
	if (!cv->save.stopped)
		cv_set_state(cv, cv->save.was_paused ? "paused" : "running");
	cv->save.running = false;
	pthread_mutex_unlock(&cv->lock);
	return NULL;
}

static void cv_save_join(struct control_vm *cv)
{
	if (cv->save.joinable) {
		pthread_join(cv->save.thread, NULL);
		cv->save.joinable = false;
	}
}

static int cv_save(void *opaque, const char *path, bool keep_running, json_object *ret,
		   struct control_error *e)
{
	struct control_vm *cv = opaque;
	int rc;

	pthread_mutex_lock(&cv->lock);
	rc = cv_need_vm(cv, e);
	if (!rc && strcmp(cv->state, "running") && strcmp(cv->state, "paused"))
		rc = control_fail(e, CTL_E_STATE, "the VM is %s", cv->state);
	if (!rc) {
		char why[256] = "";

		/* Before anything pauses: a VM the stream cannot carry runs on. */
		if (cv->m->cfg && migrate_config_supported(cv->m->cfg, why, sizeof(why)))
			rc = control_fail(e, CTL_E_UNSUPPORTED, "%s", why);
	}
	if (!rc) {
		cv_save_join(cv); /* a finished save's thread */
		free(cv->save.path);
		cv->save.path = strdup(path);
		cv->save.keep_running = keep_running;
		cv->save.op = CV_SAVE;
		cv->save.was_paused = !strcmp(cv->state, "paused");
		cv->save.last_progress_ns = 0;
		cv->save.running = cv->save.path &&
				   !sandbox_thread_start(&cv->save.thread, SANDBOX_SAVE, "save",
							 cv_save_thread, cv);
		cv->save.joinable = cv->save.running;
		if (!cv->save.running)
			rc = control_fail(e, CTL_E_INTERNAL, "cannot start the save");
	}
	if (!rc) {
		json_object_object_add(ret, "path", jstr(path));
		cv_set_state(cv, "saving");
	}
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

/* ---- live migration (docs/migration.md) ------------------------------------ */

#define CV_MIGRATE_DOWNTIME_MS	  30
#define CV_MIGRATE_CONVERGE_AFTER 4

void control_vm_migrate_progress(void *opaque, const struct migrate_progress *p)
{
	struct control_vm *cv = opaque;
	json_object *d = json_object_new_object();

	json_object_object_add(d, "round", jint(p->round));
	json_object_object_add(d, "transferred", jint(p->transferred));
	json_object_object_add(d, "remaining", jint(p->remaining));
	json_object_object_add(d, "dirty_rate", jint(p->dirty_rate));
	json_object_object_add(d, "expected_downtime_ms", jint(p->expected_downtime_ms));
	json_object_object_add(d, "throttle_pct", jint(p->throttle_pct));
	control_event(cv->srv, CTL_EV_MIGRATE_PROGRESS, d);
}

static void cv_migrate_event(struct control_vm *cv, int rc, const struct migrate_send_result *r,
			     const char *msg)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "uri", jstr(cv->save.path));
	if (rc) {
		json_object_object_add(d, "message", jstr(msg));
		json_object_object_add(d, "resumed", json_object_new_boolean(true));
		control_event(cv->srv, CTL_EV_MIGRATE_FAILED, d);
		return;
	}
	json_object_object_add(d, "downtime_ms", jint(r->downtime_ms));
	json_object_object_add(d, "state_sent_ms", jint(r->state_sent_ms));
	json_object_object_add(d, "total_ms", jint(r->total_ms));
	json_object_object_add(d, "rounds", jint(r->rounds));
	json_object_object_add(d, "transferred", jint(r->transferred));
	json_object_object_add(d, "last_pages", jint(r->last_pages));
	control_event(cv->srv, CTL_EV_MIGRATED, d);
}

/* Send the VM; on success the worker ends (the target runs the guest), on
 * any failure the guest runs on here. */
static void *cv_migrate_thread(struct control_vm *cv)
{
	struct machine *m = cv->m;
	struct migrate_send_opts o = { .uri = cv->save.path,
				       .bandwidth = cv->save.bandwidth,
				       .max_downtime_ms = cv->save.max_downtime_ms
								  ? cv->save.max_downtime_ms
								  : CV_MIGRATE_DOWNTIME_MS,
				       .converge_after = CV_MIGRATE_CONVERGE_AFTER,
				       .cancel = &cv->save.cancel,
				       .progress = control_vm_migrate_progress,
				       .opaque = cv };
	struct migrate_send_result r = { 0 };
	char err[512] = "";
	int rc = migrate_send(m, &o, &r, err, sizeof(err));

	if (rc)
		kerr("migrate %s: %s; the VM runs on here", cv->save.path, err);
	else
		kinfo("migrated to %s: downtime %llu ms, %llu ms in all, %u rounds, %llu MiB sent",
		      cv->save.path, (unsigned long long)r.downtime_ms,
		      (unsigned long long)r.total_ms, r.rounds,
		      (unsigned long long)(r.transferred >> 20));
	pthread_mutex_lock(&cv->lock);
	cv_migrate_event(cv, rc, &r, err);
	if (!rc) {
		cv->save.stopped = true;
		vm_request_stop_cb(&m->vm, VM_STOP_SAVED, 0);
	} else if (r.quiesced && machine_resume(m)) {
		kwarn("migrate: a device did not resume cleanly");
	}
	if (!cv->save.stopped)
		cv_set_state(cv, "running");
	cv->save.running = false;
	pthread_mutex_unlock(&cv->lock);
	return NULL;
}

static int cv_migrate(void *opaque, const char *uri, uint64_t max_downtime_ms, uint64_t bandwidth,
		      json_object *ret, struct control_error *e)
{
	struct control_vm *cv = opaque;
	char why[256] = "";
	int rc;

	/* Quick migration: a save to shared storage, restored elsewhere. */
	if (!strncmp(uri, "file:", 5))
		return uri[5] ? cv_save(opaque, uri + 5, false, ret, e)
			      : control_fail(e, CTL_E_ARGUMENT, "file: needs a path");
	if (migrate_uri_check(uri, why, sizeof(why)))
		return control_fail(e, CTL_E_ARGUMENT, "%s", why);
	pthread_mutex_lock(&cv->lock);
	rc = cv_need_vm(cv, e);
	if (!rc && strcmp(cv->state, "running"))
		rc = control_fail(e, CTL_E_STATE, "the VM is %s (only a running VM migrates)",
				  cv->state);
	if (!rc && cv->m->cfg && migrate_config_supported(cv->m->cfg, why, sizeof(why)))
		rc = control_fail(e, CTL_E_UNSUPPORTED, "%s", why);
	if (!rc) {
		cv_save_join(cv);
		free(cv->save.path);
		cv->save.path = strdup(uri);
		cv->save.op = CV_MIGRATE;
		cv->save.max_downtime_ms = max_downtime_ms;
		cv->save.bandwidth = bandwidth;
		cv->save.was_paused = cv->save.stopped = false;
		__atomic_store_n(&cv->save.cancel, false, __ATOMIC_RELEASE);
		cv->save.running = cv->save.path &&
				   !sandbox_thread_start(&cv->save.thread, SANDBOX_MIGRATE,
							 "migrate", cv_save_thread, cv);
		cv->save.joinable = cv->save.running;
		if (!cv->save.running)
			rc = control_fail(e, CTL_E_INTERNAL, "cannot start the migration");
	}
	if (!rc) {
		json_object_object_add(ret, "uri", jstr(uri));
		cv_set_state(cv, "migrating");
	}
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

static int cv_migrate_cancel(void *opaque, struct control_error *e)
{
	struct control_vm *cv = opaque;
	int rc = 0;

	pthread_mutex_lock(&cv->lock);
	if (!cv->save.running || cv->save.op != CV_MIGRATE)
		rc = control_fail(e, CTL_E_STATE, "no migration is running");
	else
		__atomic_store_n(&cv->save.cancel, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

/* Snapshots of the VM's disks and state (docs/state.md, "Snapshots"): list
 * here, the rest on the save thread with the reply deferred. */
static int cv_snapshot(void *opaque, const char *action, const char *name,
		       struct control_call *call, json_object *ret, struct control_error *e)
{
	struct control_vm *cv = opaque;
	char dir[PATH_MAX], err[512] = "";
	int rc;

	pthread_mutex_lock(&cv->lock);
	rc = cv_need_vm(cv, e);
	if (!rc && strcmp(cv->state, "running") && strcmp(cv->state, "paused"))
		rc = control_fail(e, CTL_E_STATE, "the VM is %s", cv->state);
	if (!rc && snapshot_vm_dir(cv->m, dir, sizeof(dir), err, sizeof(err)))
		rc = control_fail(e, CTL_E_UNSUPPORTED, "%s", err);
	if (!rc && !strcmp(action, "list")) {
		if (snapshot_list(dir, ret, err, sizeof(err)))
			rc = control_fail(e, CTL_E_FAILED, "%s", err);
		pthread_mutex_unlock(&cv->lock);
		return rc;
	}
	if (!rc && !(cv->save.p = control_defer(call)))
		rc = control_fail(e, CTL_E_INTERNAL, "cannot answer later (out of memory)");
	if (!rc) {
		cv_save_join(cv);
		free(cv->save.path);
		cv->save.path = strdup(dir);
		snprintf(cv->save.name, sizeof(cv->save.name), "%s", name);
		cv->save.op = !strcmp(action, "create")	 ? CV_SNAP_CREATE
			      : !strcmp(action, "apply") ? CV_SNAP_APPLY
							 : CV_SNAP_DELETE;
		cv->save.was_paused = !strcmp(cv->state, "paused");
		cv->save.stopped = false;
		cv->save.running = cv->save.path &&
				   !sandbox_thread_start(&cv->save.thread, SANDBOX_SAVE, "snapshot",
							 cv_save_thread, cv);
		cv->save.joinable = cv->save.running;
		if (!cv->save.running) {
			control_pending_drop(cv->save.p);
			cv->save.p = NULL;
			rc = control_fail(e, CTL_E_INTERNAL, "cannot start the snapshot");
		}
	}
	if (!rc)
		cv_set_state(cv, "saving");
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

bool control_vm_take_apply(struct control_vm *cv, struct snapshot_apply *a)
{
	bool ready;

	if (!cv)
		return false;
	cv_save_join(cv);
	pthread_mutex_lock(&cv->lock);
	ready = cv->save.apply_ready;
	if (ready) {
		*a = cv->save.apply;
		memset(&cv->save.apply, 0, sizeof(cv->save.apply));
		cv->save.apply_ready = false;
		/* What the socket lists: the disks the rebuilt machine opens. */
		for (unsigned t = 0; t < CONFIG_MAX_DISKS; t++) {
			if (!a->disk[t] || !cv->disks[t].present)
				continue;
			free(cv->disks[t].path);
			cv->disks[t].path = strdup(a->disk[t]);
			cv->disks[t].opts.path = cv->disks[t].path;
		}
	}
	pthread_mutex_unlock(&cv->lock);
	return ready;
}

/* ---- timers -------------------------------------------------------------- */

static int64_t cv_ms_until(uint64_t at, uint64_t now)
{
	return at <= now ? 0 : (int64_t)((at - now + 999999) / 1000000);
}

static int64_t cv_tick(void *opaque)
{
	struct control_vm *cv = opaque;
	uint64_t now = clock_mono_ns();
	int64_t next = -1;

	/* The watchdog proves the control thread turns; half the interval, as
	 * sd_watchdog_enabled(3) suggests. Before cv->lock: the main thread
	 * may hold it a while (a boot's attach), and that is no hang. */
	if (cv->wd_usec && now >= cv->wd_next_ns) {
		notify_send("WATCHDOG=1");
		cv->wd_next_ns = now + cv->wd_usec * 1000 / 2;
	}
	pthread_mutex_lock(&cv->lock);
	if (cv->shutdown_deadline_ns && now >= cv->shutdown_deadline_ns) {
		cv->shutdown_deadline_ns = 0;
		if (cv->m) {
			kwarn("shutdown: the guest did not power off in time; stopping it");
			cv->shutdown_forced = true;
			vm_request_stop_cb(&cv->m->vm, VM_STOP_POWEROFF, 0);
		}
	}
	if (cv->shutdown_deadline_ns)
		next = cv_ms_until(cv->shutdown_deadline_ns, now);
	pthread_mutex_unlock(&cv->lock);
	if (cv->wd_usec)
		next = next < 0 ? cv_ms_until(cv->wd_next_ns, now)
				: MIN(next, cv_ms_until(cv->wd_next_ns, now));
	return next;
}

/* ---- input ------------------------------------------------------------------ */

/* What send-key or mouse-move hands the i8042. */
struct cv_input {
	const struct i8042_key *keys; /* send-key; NULL for mouse-move */
	unsigned n;
	int dx, dy, wheel;
	unsigned buttons;
};

/* Input reaches the guest's buffers at once, paused or not, under cv->lock
 * (the machine stays while it is held); a guest that does not read them
 * (or turned its keyboard or mouse off) gets nothing more. */
static int cv_input(struct control_vm *cv, const struct cv_input *in, struct control_error *e)
{
	struct device *kbc;
	int rc;

	pthread_mutex_lock(&cv->lock);
	rc = cv_need_vm(cv, e);
	kbc = rc ? NULL : machine_find_device(cv->m, "i8042");
	if (kbc)
		rc = in->keys ? i8042_keys(kbc, in->keys, in->n)
			      : i8042_mouse(kbc, in->dx, in->dy, in->wheel, in->buttons);
	pthread_mutex_unlock(&cv->lock);
	if (!rc && !kbc)
		rc = control_fail(e, CTL_E_UNSUPPORTED, "the machine has no i8042");
	else if (!kbc || !rc)
		return rc;
	else if (!in->keys)
		control_fail(e, CTL_E_FAILED,
			     "the guest has not turned the mouse on (no PS/2 "
			     "mouse driver, or reporting disabled)");
	else if (rc == -ENOSPC)
		control_fail(e, CTL_E_FAILED,
			     "the keyboard's buffer is full: the guest is not "
			     "reading its keyboard");
	else if (rc == -EAGAIN)
		control_fail(e, CTL_E_FAILED, "the guest has turned the keyboard off");
	else
		control_fail(e, CTL_E_ARGUMENT, "the keyboard has no such key");
	return rc;
}

static int cv_send_key(void *opaque, const struct i8042_key *keys, unsigned n,
		       struct control_error *e)
{
	const struct cv_input in = { .keys = keys, .n = n };

	return cv_input(opaque, &in, e);
}

static int cv_mouse_move(void *opaque, int dx, int dy, int wheel, unsigned buttons,
			 struct control_error *e)
{
	const struct cv_input in = { .dx = dx, .dy = dy, .wheel = wheel, .buttons = buttons };

	return cv_input(opaque, &in, e);
}

static const struct control_ops cv_ops = {
	.query_status = cv_query_status,
	.query_vm = cv_query_vm,
	.pause = cv_pause,
	.resume = cv_resume,
	.shutdown = cv_shutdown,
	.stop = cv_stop,
	.reset = cv_reset,
	.stats = cv_stats,
	.disk_add = cv_disk_add,
	.disk_remove = cv_disk_remove,
	.net_link = cv_net_link,
	.dirty_log = cv_dirty_log,
	.save = cv_save,
	.migrate = cv_migrate,
	.migrate_cancel = cv_migrate_cancel,
	.snapshot = cv_snapshot,
	.send_key = cv_send_key,
	.mouse_move = cv_mouse_move,
	.screendump = cv_screendump,
	.cdrom_change = cv_cdrom_change,
	.cdrom_eject = cv_cdrom_eject,
	.tick = cv_tick,
};

/* ---- the worker's side ----------------------------------------------------- */

static const char *cv_stop_reason(struct control_vm *cv, enum vm_stop_reason why)
{
	switch (why) {
	case VM_STOP_POWEROFF:
		return cv->shutdown_forced ? "shutdown-timeout"
		       : cv->host_stop	   ? "host-stop"
					   : "guest-poweroff";
	case VM_STOP_RESET: return "reset";
	case VM_STOP_DEBUG_EXIT: return "guest-debug-exit";
	case VM_STOP_ERROR: return "vm-error";
	case VM_STOP_SIGNAL: return "host-signal";
	case VM_STOP_TIMEOUT: return "timeout";
	case VM_STOP_SAVED: return "saved";
	case VM_STOP_APPLY: return "snapshot-apply";
	}
	return "unknown";
}

static void cv_init_disks(struct control_vm *cv)
{
	for (unsigned i = 0; i < cv->cfg->ndisks; i++) {
		const struct config_disk *c = &cv->cfg->disks[i];

		if (c->target < 0 || c->target >= CONFIG_MAX_DISKS || c->add_after_ms)
			continue;
		cv_disk_set(&cv->disks[c->target], &c->blk, false);
		cv->disks[c->target].configured = true;
	}
}

/* mkdir -p: missing parents 0755 (a bare system may lack /run), the socket
 * directory itself 0700. */
static int cv_mkdirs(const char *dir)
{
	char tmp[sizeof(((struct control_vm *)0)->sock)];

	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return mkdir(tmp, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

/* NULL: the default path (its directory is made 0700 here); "none": none. */
static int cv_socket_path(struct control_vm *cv, bool *fatal, char *err, size_t errlen)
{
	const char *c = cv->cfg->control;
	char dir[sizeof(cv->sock)];
	struct stat st;

	*fatal = c != NULL;
	if (c && strcmp(c, "none") == 0)
		return 1;
	if (c) {
		snprintf(cv->sock, sizeof(cv->sock), "%s", c);
		return 0;
	}
	if (control_socket_dir(dir, sizeof(dir)) ||
	    control_socket_path(cv->cfg->name, cv->sock, sizeof(cv->sock))) {
		snprintf(err, errlen, "control socket: path too long");
		return -ENAMETOOLONG;
	}
	if (cv_mkdirs(dir) < 0) {
		snprintf(err, errlen, "control socket: %s: %s", dir, strerror(errno));
		return -errno;
	}
	/* A shared /tmp fallback must really be ours. */
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 0022)) {
		snprintf(err, errlen, "control socket: %s is not a private directory of this user",
			 dir);
		return -EPERM;
	}
	return 0;
}

int control_vm_create(struct control_vm **out, const struct vm_config *cfg, char *err,
		      size_t errlen)
{
	struct control_vm *cv = calloc(1, sizeof(*cv));
	bool fatal = false;
	int rc;

	*out = NULL;
	if (!cv) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&cv->lock, NULL);
	cv->cfg = cfg;
	cv->state = "starting";
	cv->start_ns = clock_mono_ns();
	cv->wd_usec = notify_watchdog_usec();
	cv_init_disks(cv);
	rc = cv_socket_path(cv, &fatal, err, errlen);
	if (rc < 0 && fatal)
		goto fail;
	if (rc) {
		if (rc < 0)
			kwarn("%s; running without one", err);
		cv->sock[0] = '\0';
	}
	rc = control_server_start(&cv->srv, cv->sock[0] ? cv->sock : NULL, cfg->name, &cv_ops, cv,
				  err, errlen);
	if (rc == -EADDRINUSE || (rc && fatal))
		goto fail;
	if (rc) {
		kwarn("%s; running without a control socket", err);
		cv->sock[0] = '\0';
		rc = control_server_start(&cv->srv, NULL, cfg->name, &cv_ops, cv, err, errlen);
		if (rc)
			goto fail;
	}
	*out = cv;
	return 0;
fail:
	control_vm_destroy(cv, 0);
	return rc;
}

void control_vm_attach(struct control_vm *cv, struct machine *m)
{
	if (!cv)
		return;
	pthread_mutex_lock(&cv->lock);
	cv->m = m;
	cv->boots++;
	cv->boot_ns = clock_mono_ns();
	cv->host_stop = cv->host_reset = cv->shutdown_forced = false;
	cv->shutdown_deadline_ns = 0;
	if (cv->boots > 1)
		cv_replay(cv);
	cv_set_state(cv, "running");
	if (!cv->ready_sent) {
		notify_send("READY=1");
		cv->ready_sent = true;
	}
	pthread_mutex_unlock(&cv->lock);
}

void control_vm_detach(struct control_vm *cv, struct machine *m)
{
	enum vm_stop_reason why = m->vm.stop_why;
	bool restart = (why == VM_STOP_RESET && cv && cv->cfg->on_reboot == ON_REBOOT_RESTART) ||
		       why == VM_STOP_APPLY;
	json_object *d;

	if (!cv)
		return;
	/* A save still writing holds the machine: wait for it (outside the
	 * lock, which it takes to report). A migration gives up (unless it is
	 * past the switch-over, where it no longer looks). */
	if (cv->save.op == CV_MIGRATE)
		__atomic_store_n(&cv->save.cancel, true, __ATOMIC_RELEASE);
	cv_save_join(cv);
	pthread_mutex_lock(&cv->lock);
	if (why == VM_STOP_RESET) {
		d = json_object_new_object();
		json_object_object_add(d, "reason", jstr(cv->host_reset ? "host" : "guest"));
		json_object_object_add(d, "action", jstr(restart ? "restart" : "exit"));
		control_event(cv->srv, CTL_EV_RESET, d);
	}
	if (!restart) {
		d = json_object_new_object();
		json_object_object_add(d, "reason", jstr(cv_stop_reason(cv, why)));
		json_object_object_add(d, "code", json_object_new_int(m->vm.stop_code));
		control_event(cv->srv, CTL_EV_STOPPED, d);
	}
	cv_set_state(cv, restart ? "restarting" : "stopped");
	cv->m = NULL;
	cv->shutdown_deadline_ns = 0;
	pthread_mutex_unlock(&cv->lock);
}

void control_vm_destroy(struct control_vm *cv, int exit_code)
{
	json_object *d;
	bool last;

	if (!cv)
		return;
	/* A disk job still running (a file that takes minutes to open) must not
	 * touch the server from now on; the last one frees cv. */
	pthread_mutex_lock(&cv->lock);
	cv->dying = true;
	pthread_mutex_unlock(&cv->lock);
	if (cv->srv) {
		pthread_mutex_lock(&cv->lock);
		cv_set_state(cv, "stopped");
		pthread_mutex_unlock(&cv->lock);
		d = json_object_new_object();
		json_object_object_add(d, "exit_code", json_object_new_int(exit_code));
		control_event(cv->srv, CTL_EV_EXITING, d);
		if (cv->ready_sent)
			notify_send("STOPPING=1\nSTATUS=VM %s: exiting with status %d",
				    cv->cfg->name, exit_code);
		control_server_stop(cv->srv, CV_FLUSH_MS);
	}
	pthread_mutex_lock(&cv->lock);
	cv->released = true;
	last = cv->jobs == 0;
	pthread_mutex_unlock(&cv->lock);
	if (last)
		cv_free(cv);
}
