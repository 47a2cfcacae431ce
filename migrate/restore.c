/* Bringing a saved VM back (docs/state.md). The whole file but its RAM is
 * read and checked before anything is built: header, every record's
 * checksum, order and version, the RAM map. The configuration comes from
 * the file and goes through the same checks as `kestrel run`'s flags; the
 * machine is built from it without booting (machine_create_restored), RAM
 * is mapped from the file, and then CPUID, vCPUs, irqchip, PIT, clock and
 * devices are loaded, each record parsed and checked in full before KVM or
 * a device sees it. Nothing runs until all of it succeeded: a caller that
 * gets an error destroys the machine (exit status 2, one line). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/config.h"
#include "kestrel/kvm_state.h"
#include "kestrel/machine.h"
#include "kestrel/migrate.h"
#include "migrate_int.h"

#define RESTORE_CONF_MAX (1u << 20)

void migrate_restore_expect_children(struct migrate_in *in)
{
	in->disk_children = true;
}

/* Header and records into in; one line naming the file on error. */
static int restore_load(struct migrate_in *in, char *err, size_t errlen)
{
	uint8_t hdr[STREAM_HEADER_SIZE];
	char why[320] = "";
	struct stat st;
	int ret;

	if (fstat(in->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "--restore: %s: not a regular file", in->path);
		return -EINVAL;
	}
	in->st = st;
	ret = (uint64_t)st.st_size < STREAM_HEADER_SIZE ? -EINVAL
							: pread_full(in->fd, hdr, sizeof(hdr), 0);
	ret = ret ?: stream_header_decode(hdr, (uint64_t)st.st_size, &in->h, why, sizeof(why));
	if (!ret) {
		in->area = malloc(in->h.records_len);
		ret = in->area ? pread_full(in->fd, in->area, in->h.records_len, in->h.records_off)
			       : -ENOMEM;
	}
	ret = ret
		      ?: stream_records_parse(in->area, in->h.records_len, in->h.records_off,
					      &in->recs, why, sizeof(why));
	ret = ret ?: stream_ram_parse(&in->recs.ram, &in->ram, why, sizeof(why));
	if (!ret && in->ram.ram_size != in->h.ram_len) {
		snprintf(why, sizeof(why), "the RAM record says %llu bytes, the header %llu",
			 (unsigned long long)in->ram.ram_size, (unsigned long long)in->h.ram_len);
		ret = -EINVAL;
	}
	if (ret)
		snprintf(err, errlen, "--restore: %s: %s", in->path,
			 why[0] ? why
			 : (uint64_t)st.st_size < STREAM_HEADER_SIZE
				 ? "not a kestrel saved-state file (too short)"
				 : strerror(-ret));
	return ret;
}

int migrate_restore_open(const char *path, struct migrate_in **out, char *err, size_t errlen)
{
	struct migrate_in *in = calloc(1, sizeof(*in));
	int ret;

	*out = NULL;
	if (!in || !(in->path = strdup(path))) {
		free(in);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	in->conn = -1;
	in->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (in->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "--restore: %s: %s", path, strerror(errno));
		migrate_restore_close(in);
		return ret;
	}
	ret = restore_load(in, err, errlen);
	if (ret) {
		migrate_restore_close(in);
		return ret;
	}
	/* Closed until the machine is loaded: the sandbox closes descriptors
	 * it did not open (src/sandbox), and the file is opened again then. */
	close(in->fd);
	in->fd = -1;
	*out = in;
	return 0;
}

int migrate_restore_open_fd(int fd, const char *label, struct migrate_in **out, char *err,
			    size_t errlen)
{
	struct migrate_in *in = calloc(1, sizeof(*in));
	int ret;

	*out = NULL;
	if (!in || !(in->path = strdup(label))) {
		free(in);
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	in->conn = -1;
	in->fd = fd;
	in->keep_fd = true;
	ret = restore_load(in, err, errlen);
	if (ret) {
		migrate_restore_close(in);
		return ret;
	}
	*out = in;
	return 0;
}

/* The file again, for RAM: it must be the one checked, unchanged. */
static int restore_reopen(struct migrate_in *in, char *err, size_t errlen)
{
	struct stat st;

	if (in->keep_fd)
		return 0;
	in->fd = open(in->path, O_RDONLY | O_CLOEXEC);
	if (in->fd < 0) {
		snprintf(err, errlen, "--restore: %s: %s", in->path, strerror(errno));
		return -errno;
	}
	if (fstat(in->fd, &st) < 0 || st.st_dev != in->st.st_dev || st.st_ino != in->st.st_ino ||
	    st.st_size != in->st.st_size || st.st_mtim.tv_sec != in->st.st_mtim.tv_sec ||
	    st.st_mtim.tv_nsec != in->st.st_mtim.tv_nsec) {
		snprintf(err, errlen, "--restore: %s: the file changed while it was being restored",
			 in->path);
		return -EINVAL;
	}
	return 0;
}

void migrate_restore_close(struct migrate_in *in)
{
	if (!in)
		return;
	if (in->fd >= 0)
		close(in->fd);
	if (in->conn >= 0)
		close(in->conn);
	stream_ram_free(&in->ram);
	free(in->area);
	free(in->path);
	free(in);
}

char *migrate_restore_conf_text(struct migrate_in *in)
{
	struct state_buf b;
	char *conf;

	stream_record_reader(&in->recs.conf, &b);
	conf = stream_get_str(&b, RESTORE_CONF_MAX);
	if (conf && b.pos != b.len) {
		free(conf);
		return NULL;
	}
	return conf;
}

int migrate_restore_config(struct migrate_in *in, struct vm_config *cfg, char *err, size_t errlen)
{
	char label[300], *conf = migrate_restore_conf_text(in);
	int ret;

	if (!conf) {
		snprintf(err, errlen, "--restore: %s: record CONF is malformed", in->path);
		return -EINVAL;
	}
	snprintf(label, sizeof(label), "--restore: %s: saved configuration", in->path);
	ret = config_load_json_text(cfg, label, conf, strlen(conf), err, errlen);
	free(conf);
	if (ret)
		return ret;
	if (cfg->cpus != in->recs.nvcpu || cfg->mem_size != in->ram.ram_size) {
		snprintf(err, errlen,
			 "--restore: %s: the configuration says %u vCPUs and %llu bytes "
			 "of RAM, the file holds %u and %llu",
			 in->path, cfg->cpus, (unsigned long long)cfg->mem_size, in->recs.nvcpu,
			 (unsigned long long)in->ram.ram_size);
		return -EINVAL;
	}
	return 0;
}

/* ---- loading into the machine ---- */

static int restore_malformed(struct migrate_in *in, const struct stream_record *r, char *err,
			     size_t errlen)
{
	char name[8];

	snprintf(err, errlen, "--restore: %s: record %s at offset %llu: a field is out of range",
		 in->path, stream_tag_name(r->tag, name), (unsigned long long)r->off);
	return -EINVAL;
}

static int restore_cpuid(struct migrate_in *in, struct machine *m, char *err, size_t errlen)
{
	struct kvm_cpuid2 **tabs = NULL;
	struct state_buf b;
	char why[200];
	int ret = 0;

	stream_record_reader(&in->recs.cpui, &b);
	if (cpuid_state_parse(&b, m->vm.ncpus, &tabs))
		return restore_malformed(in, &in->recs.cpui, err, errlen);
	for (unsigned i = 0; i < m->vm.ncpus; i++) {
		ret = cpuid_state_check(tabs[i], m->vm.cpuid, why, sizeof(why));
		if (ret) {
			snprintf(err, errlen, "--restore: %s: %s", in->path, why);
			break;
		}
		if (ioctl(m->vm.vcpus[i].fd, KVM_SET_CPUID2, tabs[i]) < 0) {
			ret = -errno;
			snprintf(err, errlen, "--restore: %s: vCPU %u: KVM_SET_CPUID2: %s",
				 in->path, i, strerror(errno));
			break;
		}
		/* The vCPU keeps the table it now has: a later save writes it. */
		free(m->vm.vcpus[i].cpuid);
		m->vm.vcpus[i].cpuid = tabs[i];
		tabs[i] = NULL;
	}
	for (unsigned i = 0; i < m->vm.ncpus; i++)
		free(tabs[i]);
	free(tabs);
	return ret;
}

/* Every VCPU record parsed and checked first, each index once; then set. */
static int restore_vcpus(struct migrate_in *in, struct machine *m, char *err, size_t errlen)
{
	struct vcpu_caps *caps = malloc(sizeof(*caps));
	struct vcpu_state *s = calloc(in->recs.nvcpu, sizeof(*s));
	bool seen[64] = { false };
	char why[256];
	unsigned i;
	int ret = caps && s ? 0 : -ENOMEM;

	ret = ret ?: vcpu_caps_probe(m->vm.kvm_fd, m->vm.vcpus[0].fd, caps);
	for (i = 0; i < in->recs.nvcpu && !ret; i++) {
		struct state_buf b;

		stream_record_reader(&in->recs.vcpu[i], &b);
		if (vcpu_state_parse(&b, &s[i]) || s[i].index >= m->vm.ncpus || seen[s[i].index]) {
			ret = restore_malformed(in, &in->recs.vcpu[i], err, errlen);
			break;
		}
		seen[s[i].index] = true;
	}
	for (unsigned k = 0; k < i && !ret; k++) {
		ret = vcpu_state_set(m->vm.vcpus[s[k].index].fd, caps, &s[k], why, sizeof(why));
		if (ret)
			snprintf(err, errlen, "--restore: %s: %s", in->path, why);
	}
	for (unsigned k = 0; s && k < in->recs.nvcpu; k++)
		vcpu_state_free(&s[k]);
	free(s);
	free(caps);
	return ret;
}

static int restore_vm_kvm(struct migrate_in *in, struct machine *m, char *err, size_t errlen)
{
	struct vm_kvm_state s;
	struct state_buf b;
	char why[200];

	stream_record_reader(&in->recs.irqc, &b);
	if (irqchip_state_parse(&b, &s))
		return restore_malformed(in, &in->recs.irqc, err, errlen);
	stream_record_reader(&in->recs.pit2, &b);
	if (pit_state_parse(&b, &s))
		return restore_malformed(in, &in->recs.pit2, err, errlen);
	stream_record_reader(&in->recs.clck, &b);
	if (clock_state_parse(&b, &s))
		return restore_malformed(in, &in->recs.clck, err, errlen);
	if (vm_kvm_state_set(m->vm.vm_fd, &s, why, sizeof(why))) {
		snprintf(err, errlen, "--restore: %s: %s", in->path, why);
		return -EINVAL;
	}
	return 0;
}

/* Devices load only quiesced; resume them (and clear the pause flag the
 * vCPUs would park on) once all are in. */
static int restore_devices(struct migrate_in *in, struct machine *m, char *err, size_t errlen)
{
	struct state_buf b;
	int ret = machine_quiesce(m, 1000);

	if (ret) {
		snprintf(err, errlen, "--restore: quiescing the new machine: %s", strerror(-ret));
		return ret;
	}
	stream_record_reader(&in->recs.devs, &b);
	ret = machine_load_devices(m, &b);
	if (ret) {
		snprintf(err, errlen, "--restore: %s: record DEVS at offset %llu: %s", in->path,
			 (unsigned long long)in->recs.devs.off,
			 ret == -ENOENT ? "a device this VM does not have"
			 : ret == -ENODATA
				 ? "a device of this VM is missing"
				 : "a device's state is malformed or does not match this machine");
		return ret;
	}
	ret = machine_resume(m);
	if (ret)
		snprintf(err, errlen, "--restore: resuming the devices: %s", strerror(-ret));
	return ret;
}

int migrate_restore_machine(struct migrate_in *in, struct machine *m, bool eager, char *err,
			    size_t errlen)
{
	char why[320];
	int ret = disk_state_check(m, &in->recs.disk, in->disk_children, why, sizeof(why));

	if (ret) {
		snprintf(err, errlen, "--restore: %s: %s", in->path, why);
		return ret;
	}
	ret = restore_reopen(in, err, errlen);
	if (ret)
		return ret;
	ret = in->ram_in_place ? ram_layout_check(&m->vm.gm, &in->ram, why, sizeof(why))
			       : ram_restore(&m->vm.gm, in->fd, in->h.ram_off, &in->ram, eager, why,
					     sizeof(why));
	if (ret) {
		snprintf(err, errlen, "--restore: %s: %s", in->path, why);
		return ret;
	}
	ret = restore_cpuid(in, m, err, errlen);
	ret = ret ?: restore_vcpus(in, m, err, errlen);
	ret = ret ?: restore_vm_kvm(in, m, err, errlen);
	return ret ?: restore_devices(in, m, err, errlen);
}
