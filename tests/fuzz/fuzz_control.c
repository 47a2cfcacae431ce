/* libFuzzer harness: the control socket as a local client reaches it — the
 * server's line framing (src/control/control.c), request validation and dispatch
 * (src/control/control_cmd.c) and the real commands (src/control/control_vm.c).
 *
 * Each input gets a fresh control_vm listening on a socket of its own, with
 * a fake machine attached. One client sends the input as its byte stream,
 * half-closes and reads every reply until the server closes. A form feed in
 * the stream (never valid inside JSON) ends that client: the guest resets
 * (the machine is detached and a new one attached, so control_vm replays
 * what the socket changed) and a second client sends the rest.
 *
 * A vertical tab stands for 16 KiB of spaces (the first eight of them), so
 * that short inputs reach the request-too-long paths (64 KiB lines).
 *
 * Byte 0 shapes the machine: bit 0 none attached (between two boots);
 * bit 1 a SCSI controller; bits 2-3 the number of NICs (the third an
 * emulated 21140); bit 4 two disks in the configuration; bit 5 the vCPUs
 * never park (pause times out); bit 6 an IDE controller with a CD-ROM drive
 * at unit 2 (ide1-0) and a disk at 3.
 *
 * Below control_vm.c the machine is faked at link time (vm_pause, blk_open,
 * virtio_scsi_attach_disk, ide_cd_change, ...). The fakes never open a host file and trap on
 * anything the commands must not hand down: a target outside the
 * controller, a relative or empty path, an option outside its table. The
 * client, which sends and reads at once, traps on a reply line that is not
 * a JSON object with exactly one of "return", "error" and "event", on a
 * line without its newline, on a dropped connection, and unless every
 * non-blank request line got exactly one reply (docs/control.md).
 * Build and run: tests/fuzz/run.sh control. */
#include <errno.h>
#include <stdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>
#include <linux/input-event-codes.h>

#include "kestrel/config.h"
#include "kestrel/control.h"
#include "kestrel/control_vm.h"
#include "kestrel/devices.h"
#include "kestrel/display.h"
#include "kestrel/ide.h"
#include "kestrel/machine.h"
#include "kestrel/migrate.h"
#include "kestrel/snapshot.h"
#include "kestrel/pci.h"
#include "kestrel/tulip.h"
#include "kestrel/virtio_net.h"
#include "kestrel/virtio_scsi.h"

#define FUZZ_NICS      3
#define FUZZ_TULIP     (FUZZ_NICS - 1) /* the last NIC is an emulated 21140 */
#define FUZZ_VT_SPACES 16384

#define CHECK(cond)                                                                              \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "fuzz_control: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			__builtin_trap();                                                        \
		}                                                                                \
	} while (0)

/* ---- the fake machine under control_vm.c --------------------------------- */

static struct {
	struct device pm, scsi, net[FUZZ_NICS], bus_dev, kbc, ide;
	struct blk_dev *cd_medium; /* what the fake drive holds (blk_open's) */
	bool cd_locked;
	struct pci_dev tulip_fn; /* only its address: control_vm tests for one */
	bool pause_times_out;
	bool quiesced; /* machine_quiesce'd by a save */
	bool plugged[VIRTIO_SCSI_MAX_TARGETS];
	char path[VIRTIO_SCSI_MAX_TARGETS][4096];
	unsigned power_button;
	unsigned keys, mouse_moves;
} fake;

static const struct dev_ops fake_dev_ops = { .name = "fake-device" };

const char *const vm_exit_stat_names[STAT_EXIT_NR] = {
	"fake0", "fake1", "fake2", "fake3", "fake4", "fake5",
};

int vm_pause(struct vm *vm, uint64_t timeout_ms)
{
	CHECK(!vm->paused);
	if (vm->stop_requested)
		return -ESHUTDOWN;
	if (fake.pause_times_out)
		return -ETIMEDOUT;
	vm->paused = true;
	return 0;
}

void vm_resume(struct vm *vm)
{
	vm->paused = false;
}

void vm_request_stop_cb(void *opaque, enum vm_stop_reason why, int code)
{
	struct vm *vm = opaque;

	if (!vm->stop_requested) {
		vm->stop_requested = true;
		vm->stop_why = why;
		vm->stop_code = code;
	}
}

struct device *machine_find_device(struct machine *m, const char *id)
{
	return dev_list_find(&m->devs, id);
}

void vm_get_stats(struct vm *vm, struct vm_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->rss_kb = 1;
}

void acpi_pm_power_button(struct device *dev)
{
	CHECK(dev == &fake.pm);
	fake.power_button++;
}

/* Keys come as presses and releases of keys the keyboard has (the schema
 * and keymap.c checked them), never more than it takes at once. */
int i8042_keys(struct device *dev, const struct i8042_key *keys, unsigned n)
{
	CHECK(dev == &fake.kbc);
	CHECK(n > 0 && n <= I8042_MAX_KEYS);
	for (unsigned i = 0; i < n; i++)
		CHECK(keys[i].code > 0 && keys[i].code <= KEY_MAX);
	fake.keys += n;
	return fake.keys % 7 == 0 ? -ENOSPC : 0;
}

int i8042_mouse(struct device *dev, int dx, int dy, int dz, unsigned buttons)
{
	CHECK(dev == &fake.kbc);
	CHECK(dx >= -4096 && dx <= 4096 && dy >= -4096 && dy <= 4096);
	CHECK(dz >= -127 && dz <= 127 && buttons <= 7);
	return ++fake.mouse_moves % 3 == 0 ? -EAGAIN : 0;
}

static void check_blk_opts(const struct blk_opts *o)
{
	CHECK(o->path && o->path[0] == '/');
	CHECK(strlen(o->path) < sizeof(fake.path[0]));
	CHECK((unsigned)o->format <= BLK_FMT_VHD);
	CHECK((unsigned)o->cache <= BLK_CACHE_DIRECTSYNC);
	CHECK((unsigned)o->aio <= BLK_AIO_SYNC);
}

/* disk-add opens its file on a job thread (blk_open), then attaches it
 * under control_vm's lock; disk-remove detaches, and a job closes. */
int blk_open(struct blk_dev **out, const struct blk_opts *o, char *err, size_t errlen)
{
	struct blk_dev *d;

	check_blk_opts(o);
	/* A file that "cannot be opened": the error path with a message. */
	if (strstr(o->path, "/missing")) {
		snprintf(err, errlen, "%s: No such file or directory", o->path);
		return -ENOENT;
	}
	d = calloc(1, sizeof(*d));
	CHECK(d && (d->path = strdup(o->path)));
	d->opts = *o;
	d->opts.path = d->path;
	*out = d;
	return 0;
}

void blk_close(struct blk_dev *d)
{
	if (d)
		free(d->path);
	free(d);
}

int virtio_scsi_attach_disk(struct device *dev, unsigned target, struct blk_dev *blk, char *err,
			    size_t errlen)
{
	CHECK(dev == &fake.scsi);
	CHECK(target < VIRTIO_SCSI_MAX_TARGETS);
	check_blk_opts(&blk->opts);
	if (fake.plugged[target])
		return -EEXIST;
	fake.plugged[target] = true;
	snprintf(fake.path[target], sizeof(fake.path[target]), "%s", blk->path);
	blk_close(blk); /* taken over */
	return 0;
}

/* A detached target is only a token here: the fake closes nothing. */
int virtio_scsi_detach(struct device *dev, unsigned target, struct vscsi_target **out, char *err,
		       size_t errlen)
{
	CHECK(dev == &fake.scsi);
	if (target >= VIRTIO_SCSI_MAX_TARGETS || !fake.plugged[target]) {
		snprintf(err, errlen, "no disk at target %u", target);
		return -ENOENT;
	}
	fake.plugged[target] = false;
	*out = (struct vscsi_target *)&fake.scsi;
	return 0;
}

void virtio_scsi_target_close(struct vscsi_target *t)
{
	CHECK(t == (struct vscsi_target *)&fake.scsi);
}

int virtio_scsi_get_disk_stats(struct device *dev, unsigned target,
			       struct virtio_scsi_disk_stats *out)
{
	CHECK(dev == &fake.scsi);
	if (target >= VIRTIO_SCSI_MAX_TARGETS || !fake.plugged[target])
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	snprintf(out->path, sizeof(out->path), "%s", fake.path[target]);
	out->read_ops = target;
	return 0;
}

/* Only after a snapshot, which snapshot_vm_dir below always refuses. */
struct blk_dev *virtio_scsi_disk_blk(struct device *dev, unsigned target)
{
	(void)dev;
	(void)target;
	__builtin_trap();
}

int virtio_net_get_stats(struct device *dev, unsigned q, struct virtio_net_stats *st)
{
	CHECK(dev >= &fake.net[0] && dev < &fake.net[FUZZ_TULIP]);
	CHECK(q < NET_MAX_QUEUES);
	memset(st, 0, sizeof(*st));
	st->rx_packets = q;
	return 0;
}

int virtio_net_set_link(struct device *dev, bool up)
{
	CHECK(dev >= &fake.net[0] && dev < &fake.net[FUZZ_TULIP]);
	return 0;
}

struct pci_dev *tulip_pci(struct device *dev)
{
	return dev == &fake.net[FUZZ_TULIP] ? &fake.tulip_fn : NULL;
}

int tulip_set_link(struct device *dev, bool up)
{
	CHECK(dev == &fake.net[FUZZ_TULIP]);
	return 0;
}

int tulip_get_stats(struct device *dev, struct tulip_stats *st)
{
	if (dev != &fake.net[FUZZ_TULIP])
		return -ENODEV;
	*st = (struct tulip_stats){ .rx_packets = 1, .rx_missed = 2 };
	return 0;
}

/* The save's calls into the machine (src/machine.c, migrate/save.c). */
int machine_quiesce(struct machine *m, uint64_t timeout_ms)
{
	(void)timeout_ms;
	CHECK(!fake.quiesced);
	if (m->vm.stop_requested)
		return -ESHUTDOWN;
	if (fake.pause_times_out)
		return -ETIMEDOUT;
	fake.quiesced = true;
	return 0;
}

int machine_resume_devices(struct machine *m)
{
	(void)m;
	CHECK(fake.quiesced);
	fake.quiesced = false;
	return 0;
}

int machine_resume(struct machine *m)
{
	CHECK(fake.quiesced);
	fake.quiesced = false;
	m->vm.paused = false;
	return 0;
}

/* Every configuration the fake machine boots can be saved. */
int migrate_config_supported(const struct vm_config *c, char *err, size_t errlen)
{
	CHECK(c != NULL);
	(void)err;
	(void)errlen;
	return 0;
}

int migrate_save(struct machine *m, const struct migrate_save_opts *o,
		 struct migrate_save_result *res, char *err, size_t errlen)
{
	(void)m;
	CHECK(fake.quiesced);
	CHECK(o->path && o->path[0] == '/');
	memset(res, 0, sizeof(*res));
	if (o->progress)
		o->progress(o->opaque, 1, 1);
	if (strstr(o->path, "/missing")) {
		snprintf(err, errlen, "%s: No such file or directory", o->path);
		return -ENOENT;
	}
	return 0;
}

/* Live migration (migrate/outgoing.c, migrate/mig_sock.c): the addresses a
 * real check takes are local ones here; a target whose path says "fail"
 * goes away, as a killed target would. */
int migrate_uri_check(const char *uri, char *err, size_t errlen)
{
	if (!strncmp(uri, "unix:/", 6) || !strncmp(uri, "tcp:127.0.0.1:", 14))
		return 0;
	snprintf(err, errlen, "%s: expected tcp:ADDR:PORT or unix:PATH", uri);
	return -EINVAL;
}

int migrate_send(struct machine *m, const struct migrate_send_opts *o,
		 struct migrate_send_result *res, char *err, size_t errlen)
{
	struct migrate_progress p = { .round = 1 };

	(void)m;
	CHECK(o->uri && o->max_downtime_ms > 0 && o->cancel);
	memset(res, 0, sizeof(*res));
	if (o->progress)
		o->progress(o->opaque, &p);
	if (strstr(o->uri, "fail") || __atomic_load_n(o->cancel, __ATOMIC_ACQUIRE)) {
		snprintf(err, errlen, "the target closed the connection");
		return -EPIPE;
	}
	return 0;
}

/* Snapshots (migrate/snapshot.c): this fake machine has no VHD disk. */
int snapshot_vm_dir(struct machine *m, char *dir, size_t len, char *err, size_t errlen)
{
	(void)m;
	(void)dir;
	(void)len;
	snprintf(err, errlen, "fuzz: no VHD disk");
	return -ENOTSUP;
}

int snapshot_list(const char *dir, struct json_object *out, char *err, size_t errlen)
{
	(void)dir;
	(void)out;
	(void)err;
	(void)errlen;
	__builtin_trap(); /* snapshot_vm_dir always fails first */
}

int snapshot_create(struct machine *m, const char *name, char *err, size_t errlen)
{
	(void)m;
	(void)name;
	(void)err;
	(void)errlen;
	__builtin_trap();
}

int snapshot_apply_prepare(struct machine *m, const char *name, struct snapshot_apply *a, char *err,
			   size_t errlen)
{
	(void)m;
	(void)name;
	(void)a;
	(void)err;
	(void)errlen;
	__builtin_trap();
}

int snapshot_delete(const char *dir, const char *name, char *err, size_t errlen)
{
	(void)dir;
	(void)name;
	(void)err;
	(void)errlen;
	__builtin_trap();
}

int snapshot_delete_machine(struct machine *m, const char *name, char *err, size_t errlen)
{
	(void)m;
	(void)name;
	(void)err;
	(void)errlen;
	__builtin_trap();
}

void snapshot_apply_free(struct snapshot_apply *a)
{
	(void)a;
}

/* The fake machine has no display: screendump must answer with an error. */
int display_screendump(struct display *d, const char *path, uint32_t *width, uint32_t *height,
		       char *err, size_t errlen)
{
	CHECK(path != NULL);
	(void)d;
	snprintf(err, errlen, "no display");
	return -ENODEV;
}

/* The IDE channel with a CD-ROM drive (shape bit 6); its media come from
 * blk_open above and go back through blk_close. */
int ide_drive_get_stats(struct device *dev, unsigned unit, struct ide_drive_stats *out)
{
	CHECK(dev == &fake.ide);
	CHECK(unit < 2);
	memset(out, 0, sizeof(*out));
	out->kind = unit == 0 ? IDE_CDROM : IDE_DISK;
	out->readonly = unit == 0;
	return 0;
}

int ide_cd_change(struct device *dev, unsigned unit, struct blk_dev *blk, struct blk_dev **old)
{
	CHECK(dev == &fake.ide && unit == 0 && blk);
	*old = fake.cd_medium;
	fake.cd_medium = blk;
	fake.cd_locked = false;
	return 0;
}

int ide_cd_eject(struct device *dev, unsigned unit, bool force, struct blk_dev **old)
{
	CHECK(dev == &fake.ide && unit == 0);
	*old = NULL;
	if (fake.cd_locked && !force)
		return -EBUSY;
	*old = fake.cd_medium;
	fake.cd_medium = NULL;
	fake.cd_locked = true; /* the next eject without force meets a lock */
	return 0;
}

/* ---- the VM ---------------------------------------------------------------- */

static struct vm_config cfg;
static struct config_disk cfg_disks[2];
static struct config_net cfg_nets[FUZZ_NICS];
static struct machine machine;
static struct vcpu vcpus[2];
static struct bus_range ranges[1];
static char sock_dir[64];
static char sock_path[108];

static void fuzz_setup(void)
{
	snprintf(sock_dir, sizeof(sock_dir), "/tmp/kestrel-fuzz-control.XXXXXX");
	if (!mkdtemp(sock_dir))
		abort();
	snprintf(sock_path, sizeof(sock_path), "%s/vm.sock", sock_dir);
	for (unsigned i = 0; i < FUZZ_NICS; i++) {
		device_init(&fake.net[i], &fake_dev_ops);
		snprintf(cfg_nets[i].ifname, sizeof(cfg_nets[i].ifname), "tap-fz%u", i);
		cfg_nets[i].queues = i == FUZZ_TULIP ? 1 : i + 1;
		cfg_nets[i].model = i == FUZZ_TULIP ? CONFIG_NET_TULIP : CONFIG_NET_VIRTIO;
	}
	device_init(&fake.pm, &fake_dev_ops);
	device_init(&fake.kbc, &fake_dev_ops);
	device_init(&fake.scsi, &fake_dev_ops);
	device_init(&fake.ide, &fake_dev_ops);
	device_init(&fake.bus_dev, &fake_dev_ops);
	cfg_disks[0] = (struct config_disk){ .path = "/fuzz/boot.img", .target = 0 };
	cfg_disks[1] = (struct config_disk){ .path = "/fuzz/data.vhd", .target = 3 };
	for (unsigned i = 0; i < 2; i++)
		cfg_disks[i].blk =
			(struct blk_opts){ .path = cfg_disks[i].path, .format = BLK_FMT_RAW };
	ranges[0] = (struct bus_range){ .base = 0x3f8, .len = 8, .dev = &fake.bus_dev };
	/* Quiet: control_vm warns on purpose (failed replays) and the fuzzer
	 * would print each one. */
	log_threshold = LOG_ERR;
}

static void configure(uint8_t shape)
{
	cfg = (struct vm_config){
		.name = "fuzz", .cpus = 2, .mem_size = MiB(64), .control = sock_path
	};
	cfg.nnets = (shape >> 2) & 3;
	cfg.nets = cfg_nets;
	if (shape & 16) {
		cfg.disks = cfg_disks;
		cfg.ndisks = 2;
	}
	memset(fake.plugged, 0, sizeof(fake.plugged));
	fake.pause_times_out = shape & 32;
	if (shape & 16) {
		for (unsigned i = 0; i < 2; i++) {
			fake.plugged[cfg_disks[i].target] = true;
			snprintf(fake.path[cfg_disks[i].target], sizeof(fake.path[0]), "%s",
				 cfg_disks[i].path);
		}
	}
}

/* A freshly created machine as machine_create leaves it for control_vm. */
static void machine_boot(uint8_t shape)
{
	struct vm *vm = &machine.vm;

	memset(&machine, 0, sizeof(machine));
	memset(vcpus, 0, sizeof(vcpus));
	machine.cfg = &cfg;
	vm->ncpus = 2;
	vm->vcpus = vcpus;
	pthread_mutex_init(&vm->stop_lock, NULL);
	pthread_cond_init(&vm->stop_cond, NULL);
	vm->pio = (struct bus){ .name = "pio", .ranges = ranges, .nr = 1, .cap = 1 };
	vm->mmio = (struct bus){ .name = "mmio" };
	pthread_rwlock_init(&vm->pio.lock, NULL);
	pthread_rwlock_init(&vm->mmio.lock, NULL);
	fake.quiesced = false;
	/* The devices control_vm looks up by id, as machine_create registers them. */
	CHECK(dev_list_add(&machine.devs, &fake.pm, "pm") == 0);
	CHECK(dev_list_add(&machine.devs, &fake.kbc, "i8042") == 0);
	if (shape & 2)
		CHECK(dev_list_add(&machine.devs, &fake.scsi, "scsi0") == 0);
	if (shape & 64)
		CHECK(dev_list_add(&machine.devs, &fake.ide, "ide1") == 0);
	for (unsigned i = 0; i < ((shape >> 2) & 3u); i++) {
		char id[DEV_ID_MAX];

		snprintf(id, sizeof(id), "net%u", i);
		CHECK(dev_list_add(&machine.devs, &fake.net[i], id) == 0);
	}
	/* The configured disks come back with every boot. */
	if (shape & 16)
		for (unsigned i = 0; i < 2; i++)
			fake.plugged[cfg_disks[i].target] = true;
}

static void machine_shutdown(void)
{
	blk_close(fake.cd_medium); /* the channel owns its medium */
	fake.cd_medium = NULL;
	fake.cd_locked = false;
	pthread_rwlock_destroy(&machine.vm.pio.lock);
	pthread_rwlock_destroy(&machine.vm.mmio.lock);
	pthread_cond_destroy(&machine.vm.stop_cond);
	pthread_mutex_destroy(&machine.vm.stop_lock);
}

/* ---- the client ------------------------------------------------------------ */

static int client_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		CHECK(errno == EINTR);
	return fd;
}

static void check_reply(const char *line, size_t len, unsigned *replies)
{
	json_object *o = json_tokener_parse(line);
	bool ret, err, ev;

	CHECK(len > 0 && strlen(line) == len);
	CHECK(o && json_object_is_type(o, json_type_object));
	ret = json_object_object_get_ex(o, "return", NULL);
	err = json_object_object_get_ex(o, "error", NULL);
	ev = json_object_object_get_ex(o, "event", NULL);
	CHECK(ret + err + ev == 1);
	*replies += !ev;
	json_object_put(o);
}

/* The client's side of the stream: what it sends and what came back so far. */
struct client {
	int fd;
	const char *out;
	size_t out_len, sent;
	char in[2 * CONTROL_LINE_MAX];
	size_t in_len;
	unsigned replies;
};

/* Check every whole line received; keep a partial one. */
static void client_lines(struct client *c)
{
	char *start = c->in, *nl;

	while ((nl = memchr(start, '\n', c->in_len - (size_t)(start - c->in)))) {
		*nl = '\0';
		check_reply(start, (size_t)(nl - start), &c->replies);
		start = nl + 1;
	}
	c->in_len -= (size_t)(start - c->in);
	memmove(c->in, start, c->in_len);
	CHECK(c->in_len < sizeof(c->in) - 1); /* no reply line is this long */
}

/* Send and receive at once, as a well-behaved client does, so the server
 * never has reason to drop us; then read until the server closes. */
static void client_talk(struct client *c)
{
	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		ssize_t n;

		if (c->sent < c->out_len)
			p.events |= POLLOUT;
		if (poll(&p, 1, -1) < 0) {
			CHECK(errno == EINTR); /* libFuzzer's -timeout alarm */
			continue;
		}
		if (p.revents & POLLOUT) {
			n = send(c->fd, c->out + c->sent, c->out_len - c->sent,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			CHECK(n > 0 || errno == EAGAIN || errno == EINTR);
			if (n > 0)
				c->sent += (size_t)n;
			if (c->sent == c->out_len)
				shutdown(c->fd, SHUT_WR);
		}
		if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len, MSG_DONTWAIT);
		if (n == 0)
			break;
		CHECK(n > 0 || errno == EAGAIN || errno == EINTR);
		if (n < 0)
			continue;
		c->in_len += (size_t)n;
		c->in[c->in_len] = '\0';
		client_lines(c);
	}
	CHECK(c->sent == c->out_len); /* the server read everything */
	CHECK(c->in_len == 0);	      /* and ended every line */
}

/* The stream with each vertical tab as FUZZ_VT_SPACES spaces (the first
 * eight; later ones are one space). */
static size_t expand(const uint8_t *data, size_t size, char *out)
{
	size_t n = 0;
	unsigned vts = 0;

	for (size_t i = 0; i < size; i++) {
		if (data[i] == '\v' && vts++ < 8) {
			memset(out + n, ' ', FUZZ_VT_SPACES);
			n += FUZZ_VT_SPACES;
		} else {
			out[n++] = data[i] == '\v' ? ' ' : (char)data[i];
		}
	}
	return n;
}

/* docs/control.md: every non-blank line gets exactly one reply; a line of
 * CONTROL_LINE_MAX bytes or more (without its newline) gets one error. */
static unsigned replies_due(const char *s, size_t len)
{
	unsigned due = 0;
	size_t start = 0;

	while (start < len) {
		const char *nl = memchr(s + start, '\n', len - start);
		size_t end = nl ? (size_t)(nl - s) : len;
		bool blank = true;

		for (size_t i = start; i < end && blank; i++)
			blank = s[i] == ' ' || s[i] == '\t' || s[i] == '\r';
		due += end - start >= CONTROL_LINE_MAX || !blank;
		start = end + 1;
	}
	return due;
}

static void client_run(const uint8_t *data, size_t size)
{
	static struct client c;
	char *stream = malloc(size + 8 * FUZZ_VT_SPACES);

	CHECK(stream);
	c = (struct client){ .fd = client_connect(), .out = stream };
	c.out_len = expand(data, size, stream);
	if (c.out_len == 0)
		shutdown(c.fd, SHUT_WR);
	client_talk(&c);
	CHECK(c.replies == replies_due(stream, c.out_len));
	close(c.fd);
	free(stream);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct control_vm *cv;
	const uint8_t *ff;
	char err[256];
	uint8_t shape;

	if (!ready) {
		fuzz_setup();
		ready = true;
	}
	if (size < 1)
		return 0;
	shape = data[0];
	data++;
	size--;
	configure(shape);
	CHECK(control_vm_create(&cv, &cfg, err, sizeof(err)) == 0);
	if (!(shape & 1)) {
		machine_boot(shape);
		control_vm_attach(cv, &machine);
	}
	ff = memchr(data, '\f', size);
	if (ff) {
		client_run(data, (size_t)(ff - data));
		size -= (size_t)(ff - data) + 1;
		data = ff + 1;
		/* A guest reset: on_reboot restart re-creates the machine. */
		if (!(shape & 1)) {
			vm_request_stop_cb(&machine.vm, VM_STOP_RESET, 0);
			control_vm_detach(cv, &machine);
			machine_shutdown();
		}
		machine_boot(shape);
		control_vm_attach(cv, &machine);
		shape &= (uint8_t)~1;
	}
	client_run(data, size);
	if (!(shape & 1)) {
		vm_request_stop_cb(&machine.vm, VM_STOP_POWEROFF, 0);
		control_vm_detach(cv, &machine);
		machine_shutdown();
	}
	control_vm_destroy(cv, 0);
	return 0;
}
