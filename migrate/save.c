/* Saving a VM (docs/state.md): with the machine quiesced, the disks are
 * flushed, RAM goes to a new file page for page (zero pages left as holes),
 * then the header and the records (configuration, CPUID, vCPUs, irqchip,
 * PIT, clock, devices, disks, the RAM map) go to its start; the file is
 * synced and renamed over the target, so a crash or an error never leaves
 * half a state under that name. The file is created 0600: it holds the
 * guest's memory. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "kestrel/clock.h"
#include "kestrel/block.h"
#include "kestrel/config.h"
#include "kestrel/ide.h"
#include "kestrel/kvm_state.h"
#include "kestrel/machine.h"
#include "kestrel/migrate.h"
#include "kestrel/virtio_scsi.h"
#include "migrate_int.h"

/* The medium an IDE drive of the configuration holds now (a CD may have
 * been changed or ejected since the start; a disk is the one it was
 * opened with). */
static void save_ide_disk(struct machine *m, struct config_disk *d)
{
	struct device *ch = machine_find_device(m, d->unit / 2 ? "ide1" : "ide0");
	enum ide_drive_kind kind;
	struct blk_dev *b = ch ? ide_drive_blk(ch, (unsigned)d->unit % 2, &kind) : NULL;
	uint8_t uuid[16];

	d->path = b ? b->path : NULL;
	if (b) {
		d->blk = b->opts;
		d->blk.format = blk_vhd_uuid(b, uuid) ? BLK_FMT_VHD : BLK_FMT_RAW;
		d->blk.readonly = b->opts.readonly || d->media == CONFIG_MEDIA_CDROM;
	}
}

/* The configuration as the machine is now: the disks attached at this
 * moment (hot-plugged ones included, removed ones not; the media in the
 * IDE drives), each with the format it was opened as, so the restore
 * neither re-probes nor misses one: a guest that wrote a VHD footer onto
 * a raw disk must not have it opened as a VHD. */
char *save_config_json(struct machine *m)
{
	struct config_disk disks[VIRTIO_SCSI_MAX_TARGETS + CONFIG_IDE_UNITS];
	struct device *scsi = machine_find_device(m, "scsi0");
	struct vm_config c = *m->cfg;
	uint8_t uuid[16];
	unsigned n = 0;

	for (unsigned t = 0; scsi && t < VIRTIO_SCSI_MAX_TARGETS; t++) {
		struct blk_dev *d = virtio_scsi_disk_blk(scsi, t);

		if (!d)
			continue;
		disks[n] = (struct config_disk){
			.blk = d->opts, .path = d->path, .target = (int)t, .bus = CONFIG_BUS_SCSI
		};
		disks[n].blk.format = blk_vhd_uuid(d, uuid) ? BLK_FMT_VHD : BLK_FMT_RAW;
		disks[n].blk.readonly = d->opts.readonly;
		n++;
	}
	for (unsigned i = 0; i < m->cfg->ndisks && n < ARRAY_SIZE(disks); i++) {
		if (m->cfg->disks[i].bus != CONFIG_BUS_IDE)
			continue;
		disks[n] = m->cfg->disks[i];
		save_ide_disk(m, &disks[n++]);
	}
	c.disks = disks;
	c.ndisks = n;
	c.scsi_controller = scsi != NULL;
	return config_to_json(&c);
}

/* The tables the vCPUs were given (struct vcpu keeps each). */
int save_cpuid(struct machine *m, struct state_buf *b)
{
	const struct kvm_cpuid2 *tabs[CONFIG_MAX_CPUS];

	for (unsigned i = 0; i < m->vm.ncpus; i++) {
		tabs[i] = m->vm.vcpus[i].cpuid;
		if (!tabs[i])
			return -ENODATA;
	}
	cpuid_state_put(b, tabs, m->vm.ncpus);
	return 0;
}

static int save_vcpus(struct machine *m, struct state_buf *b, char *err, size_t errlen)
{
	struct vcpu_caps *caps = malloc(sizeof(*caps));
	struct vcpu_state *s = malloc(sizeof(*s));
	const char *what = "";
	int ret = caps && s ? 0 : -ENOMEM;

	ret = ret ?: vcpu_caps_probe(m->vm.kvm_fd, m->vm.vcpus[0].fd, caps);
	if (ret)
		snprintf(err, errlen, "vCPU state: KVM_GET_MSR_INDEX_LIST: %s", strerror(-ret));
	for (unsigned i = 0; i < m->vm.ncpus && !ret; i++) {
		size_t mark;

		ret = vcpu_state_get(m->vm.vcpus[i].fd, caps, i, s, &what);
		if (ret) {
			snprintf(err, errlen, "vCPU %u: %s: %s", i, what, strerror(-ret));
			break;
		}
		mark = stream_record_begin(b, STREAM_VCPU, 1);
		vcpu_state_put(b, s);
		stream_record_end(b, mark);
		vcpu_state_free(s);
	}
	free(caps);
	free(s);
	return ret;
}

static int save_vm_kvm(struct machine *m, struct state_buf *b, char *err, size_t errlen)
{
	struct vm_kvm_state s;
	const char *what;
	size_t mark;
	int ret = vm_kvm_state_get(m->vm.vm_fd, &s, &what);

	if (ret) {
		snprintf(err, errlen, "%s: %s", what, strerror(-ret));
		return ret;
	}
	mark = stream_record_begin(b, STREAM_IRQC, 1);
	irqchip_state_put(b, &s);
	stream_record_end(b, mark);
	mark = stream_record_begin(b, STREAM_PIT2, 1);
	pit_state_put(b, &s);
	stream_record_end(b, mark);
	mark = stream_record_begin(b, STREAM_CLCK, 1);
	clock_state_put(b, &s);
	stream_record_end(b, mark);
	return 0;
}

static void save_str_record(struct state_buf *b, uint32_t tag, const char *s)
{
	size_t mark = stream_record_begin(b, tag, 1);

	stream_put_str(b, s);
	stream_record_end(b, mark);
}

/* Every record but RAM and END, in the stream's order. */
int save_records(struct machine *m, struct state_buf *b, char *err, size_t errlen)
{
	char *conf = save_config_json(m);
	size_t mark;
	int ret;

	save_str_record(b, STREAM_KVER, KESTREL_VERSION);
	save_str_record(b, STREAM_CONF, conf);
	free(conf);
	if (!conf)
		return -ENOMEM;
	mark = stream_record_begin(b, STREAM_CPUI, 1);
	ret = save_cpuid(m, b);
	stream_record_end(b, mark);
	if (ret) {
		snprintf(err, errlen, "KVM_GET_CPUID2: %s", strerror(-ret));
		return ret;
	}
	ret = save_vcpus(m, b, err, errlen) ?: save_vm_kvm(m, b, err, errlen);
	if (ret)
		return ret;
	mark = stream_record_begin(b, STREAM_DEVS, 1);
	ret = machine_save_devices(m, b);
	stream_record_end(b, mark);
	if (ret) {
		snprintf(err, errlen, "saving the devices: %s", strerror(-ret));
		return ret;
	}
	mark = stream_record_begin(b, STREAM_DISK, 1);
	disk_state_put(m, b);
	stream_record_end(b, mark);
	return b->error ? -ENOMEM : 0;
}

/* RAM at ram_off, then the RAM record, END and the header at the start. */
static int save_file(struct machine *m, int fd, struct state_buf *b, struct stream_ram *ram,
		     const struct migrate_save_opts *o)
{
	const struct guest_mem *gm = &m->vm.gm;
	uint64_t records = b->len + 2 * STREAM_RECORD_HDR + stream_ram_body_size(gm->ram_size);
	struct stream_header h = { .version = STREAM_FORMAT_VERSION,
				   .records_off = STREAM_HEADER_SIZE,
				   .records_len = records,
				   .ram_off = ALIGN_UP(STREAM_HEADER_SIZE + records, STREAM_PAGE),
				   .ram_len = gm->ram_size };
	struct ram_save rs = { .gm = gm,
			       .r = ram,
			       .fd = fd,
			       .ram_off = h.ram_off,
			       .progress = o->progress,
			       .opaque = o->opaque };
	uint8_t hdr[STREAM_HEADER_SIZE];
	size_t mark;
	int ret;

	if (ftruncate(fd, (off_t)(h.ram_off + h.ram_len)) < 0)
		return -errno;
	ret = ram_save(&rs);
	if (ret)
		return ret;
	mark = stream_record_begin(b, STREAM_RAM, 1);
	stream_ram_put(b, ram);
	stream_record_end(b, mark);
	mark = stream_record_begin(b, STREAM_END, 1);
	stream_record_end(b, mark);
	if (b->error || b->len != records)
		return -ENOMEM;
	stream_header_encode(&h, hdr);
	ret = pwrite_full(fd, b->data, b->len, STREAM_HEADER_SIZE);
	ret = ret ?: pwrite_full(fd, hdr, sizeof(hdr), 0);
	if (!ret && fdatasync(fd) < 0)
		ret = -errno;
	return ret;
}

/* The rename is durable once the folder is synced. */
static void save_sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd = copy ? open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;

	if (fd >= 0) {
		if (fsync(fd) < 0)
			kwarn("save: syncing the folder of %s: %s", path, strerror(errno));
		close(fd);
	}
	free(copy);
}

int migrate_config_supported(const struct vm_config *cfg, char *err, size_t errlen)
{
	/* Every device of the registry saves and loads its state and the
	 * configuration carries every part of the machine (config_to_json):
	 * nothing is refused today. Kept as the one place that says what a
	 * save cannot carry, checked before anything pauses. */
	(void)cfg;
	(void)err;
	(void)errlen;
	return 0;
}

int migrate_snapshot_supported(const struct vm_config *cfg, char *err, size_t errlen)
{
	/* A snapshot gives each VHD a differencing child; only the SCSI disks
	 * are switched to children (snapshot.c), so a writable IDE disk would
	 * go on being written under every snapshot. A CD-ROM is never written. */
	for (unsigned i = 0; i < cfg->ndisks; i++) {
		if (cfg->disks[i].bus != CONFIG_BUS_IDE ||
		    cfg->disks[i].media == CONFIG_MEDIA_CDROM)
			continue;
		snprintf(err, errlen,
			 "%s is an IDE disk: snapshots cover virtio-scsi disks only "
			 "(save and restore cover both)",
			 cfg->disks[i].path);
		return -ENOTSUP;
	}
	return migrate_config_supported(cfg, err, errlen);
}

int migrate_save(struct machine *m, const struct migrate_save_opts *o,
		 struct migrate_save_result *res, char *err, size_t errlen)
{
	struct state_buf b = { 0 };
	struct stream_ram ram;
	char tmp[PATH_MAX];
	uint64_t t0 = clock_mono_ms();
	int fd = -1, ret;

	memset(res, 0, sizeof(*res));
	ret = migrate_config_supported(m->cfg, err, errlen);
	if (ret)
		return ret;
	vm_drain_coalesced(&m->vm);
	ret = machine_flush_disks(m);
	if (ret) {
		snprintf(err, errlen, "flushing the disks: %s", strerror(-ret));
		return ret;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-%d", o->path, (int)getpid()) >=
	    sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", o->path);
		return -ENAMETOOLONG;
	}
	ret = stream_ram_init(&ram, m->vm.gm.ram_size, m->vm.gm.ram_low, m->vm.gm.ram_high);
	if (ret) {
		snprintf(err, errlen, "out of memory");
		return ret;
	}
	ret = save_records(m, &b, err, errlen);
	if (!ret) {
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			ret = -errno;
			snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		}
	}
	if (!ret) {
		ret = save_file(m, fd, &b, &ram, o);
		if (ret)
			snprintf(err, errlen, "%s: writing: %s", tmp, strerror(-ret));
	}
	if (fd >= 0 && close(fd) < 0 && !ret) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
	}
	if (!ret && rename(tmp, o->path) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", o->path, strerror(errno));
	}
	if (ret && fd >= 0)
		unlink(tmp);
	if (!ret) {
		save_sync_dir(o->path);
		res->file_bytes = STREAM_HEADER_SIZE + b.len;
		res->file_bytes = ALIGN_UP(res->file_bytes, STREAM_PAGE) + m->vm.gm.ram_size;
		res->ram_stored = ram.present * STREAM_PAGE;
		res->ms = clock_mono_ms() - t0;
	}
	stream_ram_free(&ram);
	state_free(&b);
	return ret;
}
