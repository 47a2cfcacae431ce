/* The target of a live migration (docs/migration.md): `kestrel run
 * --incoming ADDR` listens, takes one connection and closes the listener,
 * checks the source's HELLO (versions, configuration, CPUID against this
 * host's KVM through cpuid_state_check) and, while the worker builds its
 * machine from that configuration (disks opened without their locks, which
 * the source holds), keeps the source waiting; then it receives RAM into a
 * memfd laid out exactly as a saved-state file (page i at ram_off + i *
 * 4096). When STATE arrives it writes the header and the records there
 * (the RAM record from what it received) and hands the memfd to the restore
 * path, which checks it as it checks a file: a hostile or cut stream ends
 * here, before anything runs, with one line and exit 2. Only after the
 * source said SWITCH (it has let go of the disks) are the disks taken over
 * and the state loaded, so the source's pause spans that and no more; it
 * learns the outcome (migrate_incoming_done) before the vCPUs start.
 *
 * Pages arrive straight in the built machine's RAM (migrate_incoming_attach:
 * its anonymous memory, huge pages where the host gives them), the host's
 * page tables for it filled as they are written, so after the switch the
 * guest meets neither a copy nor a copy-on-write fault per page, and a 2 MiB
 * region costs it one stage-2 fault. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kestrel/clock.h"
#include "kestrel/config.h"
#include "kestrel/cpuid.h"
#include "kestrel/guest_mem.h"
#include "kestrel/kvm_state.h"
#include "kestrel/migrate.h"
#include "kestrel/migrate_wire.h"
#include "migrate_int.h"

#define IN_TIMEOUT_MS  60000 /* the source silent this long: give up */
#define IN_RECORDS_MAX (STREAM_RECORDS_MAX / 2)
#define IN_RAM_OFF     ALIGN_UP((uint64_t)STREAM_HEADER_SIZE + STREAM_RECORDS_MAX, STREAM_PAGE)

struct migrate_incoming {
	char *uri;
	char *conf; /* the HELLO's configuration (JSON) */
	struct mig_conn c;
	int memfd;
	uint8_t *ram;	     /* the VM's RAM (migrate_incoming_attach) */
	struct stream_ram r; /* pages received so far */
	uint8_t *state;	     /* the STATE body */
	uint64_t state_len;
	uint64_t pages_in;
	void (*progress)(void *opaque, const struct migrate_progress *p);
	void *opaque;
};

static int in_listen(const char *uri, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	socklen_t len;
	int one = 1, fd, ret = mig_addr(uri, &sa, &len, err, errlen);

	if (ret)
		return ret;
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "--incoming %s: socket: %s", uri, strerror(errno));
		return -errno;
	}
	if (sa.ss_family != AF_UNIX)
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 1) < 0) {
		ret = -errno;
		snprintf(err, errlen, "--incoming %s: %s", uri, strerror(errno));
		close(fd);
		return ret;
	}
	return fd;
}

/* Wait up to wait_ms (0: for ever) for the one connection; -ETIMEDOUT. */
static int in_wait(int lfd, uint64_t wait_ms)
{
	uint64_t end = clock_mono_ms() + wait_ms;
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	for (;;) {
		uint64_t now = clock_mono_ms();
		int r;

		if (wait_ms && now >= end)
			return -ETIMEDOUT;
		r = poll(&p, 1, wait_ms ? (int)MIN(end - now, (uint64_t)INT_MAX) : -1);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

/* One connection, then the listener is gone (a unix socket's file too). */
static int in_accept(const char *uri, uint64_t wait_ms, char *err, size_t errlen)
{
	int lfd = in_listen(uri, err, errlen), fd = -1, ret;

	if (lfd < 0)
		return lfd;
	kinfo("waiting for a migration on %s", uri);
	ret = in_wait(lfd, wait_ms);
	if (ret == -ETIMEDOUT)
		snprintf(err, errlen, "--incoming %s: no migration arrived within the --timeout",
			 uri);
	else if (ret)
		snprintf(err, errlen, "--incoming %s: poll: %s", uri, strerror(-ret));
	while (!ret && (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (!ret && fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "--incoming %s: accept: %s", uri, strerror(-ret));
	}
	close(lfd);
	if (!strncmp(uri, "unix:", 5))
		unlink(uri + 5);
	if (fd >= 0)
		mig_tune(fd);
	return ret ? ret : fd;
}

/* The source's last word from us: why we do not take the VM. */
static void in_refuse(struct migrate_incoming *in, int ret, const char *why)
{
	if (mig_send_reply(&in->c, ret, why))
		kdebug("incoming: the source is gone already");
}

/* The guest's CPUID must be one this host's KVM can give (the same check
 * as a restore's; the table comes again with STATE and is checked again). */
static int in_check_cpuid(struct mig_hello *h, unsigned ncpus, char *why, size_t whylen)
{
	struct kvm_cpuid2 **tabs = NULL, *sup = NULL;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), ret;

	if (kvm < 0) {
		snprintf(why, whylen, "/dev/kvm: %s", strerror(errno));
		return -errno;
	}
	ret = cpuid_get_supported(kvm, &sup);
	close(kvm);
	if (ret) {
		snprintf(why, whylen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(-ret));
		return ret;
	}
	if (cpuid_state_parse(&h->cpuid, ncpus, &tabs)) {
		snprintf(why, whylen, "HELLO: malformed CPUID tables");
		free(sup);
		return -EINVAL;
	}
	for (unsigned i = 0; i < ncpus && !ret; i++)
		ret = cpuid_state_check(tabs[i], sup, why, whylen);
	for (unsigned i = 0; i < ncpus; i++)
		free(tabs[i]);
	free(tabs);
	free(sup);
	return ret;
}

static int in_hello_check(struct migrate_incoming *in, struct mig_hello *h, char *why,
			  size_t whylen)
{
	struct vm_config cfg;
	char cerr[400];
	int ret;

	config_defaults(&cfg);
	ret = config_load_json_text(&cfg, "the source's configuration", h->conf, strlen(h->conf),
				    cerr, sizeof(cerr));
	if (ret)
		snprintf(why, whylen, "%s", cerr);
	if (!ret && (cfg.mem_size != h->ram_size || !cfg.cpus || cfg.cpus > 64)) {
		snprintf(why, whylen, "HELLO: the configuration's RAM or vCPUs do not match");
		ret = -EINVAL;
	}
	ret = ret ?: in_check_cpuid(h, cfg.cpus, why, whylen);
	config_free(&cfg);
	(void)in;
	return ret;
}

static int in_setup_ram(struct migrate_incoming *in, const struct mig_hello *h, char *why,
			size_t whylen)
{
	int ret = stream_ram_init(&in->r, h->ram_size, h->ram_low, h->ram_high);

	if (ret) {
		snprintf(why, whylen, "out of memory");
		return ret;
	}
	/* The state file's view: header and records; its RAM area stays a
	 * hole (RAM goes straight into the VM's, migrate_incoming_attach). */
	in->memfd = memfd_create("kestrel-incoming", MFD_CLOEXEC);
	if (in->memfd < 0 || ftruncate(in->memfd, (off_t)(IN_RAM_OFF + h->ram_size)) < 0) {
		snprintf(why, whylen, "the incoming state: %s", strerror(errno));
		return -ENOMEM;
	}
	return 0;
}

static int in_handshake(struct migrate_incoming *in, char *err, size_t errlen)
{
	uint8_t raw[MIG_HDR_SIZE], *body = NULL;
	struct mig_hello h = { 0 };
	struct mig_hdr hd;
	char why[400] = "";
	int ret = mig_recv(&in->c, raw, sizeof(raw));

	if (ret) {
		snprintf(err, errlen, "--incoming %s: the source sent no HELLO: %s", in->uri,
			 strerror(-ret));
		return ret;
	}
	ret = mig_hdr_decode(raw, 0, &hd, why, sizeof(why));
	if (!ret && hd.type != MIG_HELLO) {
		snprintf(why, sizeof(why), "not a kestrel migration stream (no HELLO)");
		ret = -EINVAL;
	}
	ret = ret ?: mig_recv_body(&in->c, &hd, &body);
	ret = ret ?: mig_hello_parse(body, hd.len, &h, why, sizeof(why));
	ret = ret ?: in_hello_check(in, &h, why, sizeof(why));
	ret = ret ?: in_setup_ram(in, &h, why, sizeof(why));
	if (!ret && !(in->conf = strdup(h.conf))) {
		snprintf(why, sizeof(why), "out of memory");
		ret = -ENOMEM;
	}
	/* The answer waits for the machine (migrate_incoming_ready). */
	if (ret) {
		in_refuse(in, ret, why[0] ? why : strerror(-ret));
		snprintf(err, errlen, "--incoming %s: %s", in->uri, why[0] ? why : strerror(-ret));
	}
	mig_hello_free(&h);
	free(body);
	return ret;
}

static int in_pages(struct migrate_incoming *in, const struct mig_hdr *h, char *why, size_t whylen)
{
	uint8_t head[8];
	uint64_t first, n;
	int ret = mig_recv(&in->c, head, sizeof(head));

	ret = ret ?: mig_pages_check(head, h->len, in->r.pages, &first, &n, why, whylen);
	ret = ret ?: mig_recv(&in->c, in->ram + first * MIG_PAGE, n * MIG_PAGE);
	if (ret)
		return ret;
	for (uint64_t pg = first; pg < first + n; pg++) {
		if (!stream_ram_present(&in->r, pg)) {
			in->r.bitmap[pg / 64] |= 1ull << (pg % 64);
			in->r.present++;
		}
	}
	in->pages_in += n;
	return 0;
}

/* A round ended: the source's figures as this side's progress
 * (transferred: the RAM received). */
static int in_round(struct migrate_incoming *in, const struct mig_hdr *h, char *why, size_t whylen)
{
	uint8_t body[MIG_ROUND_SIZE];
	struct migrate_progress p;
	int ret = mig_recv(&in->c, body, h->len);

	if (!ret && mig_round_parse(body, h->len, &p)) {
		snprintf(why, whylen, "ROUND of %llu bytes", (unsigned long long)h->len);
		ret = -EINVAL;
	}
	if (ret)
		return ret;
	p.transferred = in->pages_in * MIG_PAGE;
	if (in->progress)
		in->progress(in->opaque, &p);
	return 0;
}

/* Pages and rounds until STATE. */
static int in_receive(struct migrate_incoming *in, char *why, size_t whylen)
{
	for (;;) {
		uint8_t raw[MIG_HDR_SIZE];
		struct mig_hdr h;
		int ret = mig_recv(&in->c, raw, sizeof(raw));

		ret = ret ?: mig_hdr_decode(raw, IN_RECORDS_MAX, &h, why, whylen);
		if (ret)
			return ret;
		switch (h.type) {
		case MIG_PAGES: ret = in_pages(in, &h, why, whylen); break;
		case MIG_ROUND: ret = in_round(in, &h, why, whylen); break;
		case MIG_STATE: in->state_len = h.len; return mig_recv_body(&in->c, &h, &in->state);
		default:
			snprintf(why, whylen, "message type %u where pages or STATE belong",
				 h.type);
			return -EINVAL;
		}
		if (ret)
			return ret;
	}
}

/* Header and records (STATE, then the RAM record and END) at the memfd's
 * start, as save.c writes a file. */
static int in_write_file(struct migrate_incoming *in)
{
	struct state_buf b = { 0 };
	uint8_t hdr[STREAM_HEADER_SIZE];
	struct stream_header sh = { .version = STREAM_FORMAT_VERSION,
				    .records_off = STREAM_HEADER_SIZE,
				    .ram_off = IN_RAM_OFF,
				    .ram_len = in->r.ram_size };
	size_t mark;
	int ret;

	/* Its chunks' checksums stay 0: they guard RAM read back from a file
	 * (a restore's eager load); RAM received in place is never read back
	 * (the link's integrity is TCP's). */
	state_put_bytes(&b, in->state, in->state_len);
	mark = stream_record_begin(&b, STREAM_RAM, 1);
	stream_ram_put(&b, &in->r);
	stream_record_end(&b, mark);
	mark = stream_record_begin(&b, STREAM_END, 1);
	stream_record_end(&b, mark);
	if (b.error || b.len > STREAM_RECORDS_MAX) {
		state_free(&b);
		return -ENOMEM;
	}
	sh.records_len = b.len;
	stream_header_encode(&sh, hdr);
	ret = pwrite_full(in->memfd, b.data, b.len, STREAM_HEADER_SIZE);
	ret = ret ?: pwrite_full(in->memfd, hdr, sizeof(hdr), 0);
	state_free(&b);
	return ret;
}

static void in_free(struct migrate_incoming *in)
{
	if (in->memfd >= 0)
		close(in->memfd);
	if (in->c.fd >= 0)
		close(in->c.fd);
	stream_ram_free(&in->r);
	free(in->state);
	free(in->conf);
	free(in->uri);
	free(in);
}

/* The configuration in STATE must be the one the machine was built from
 * (the HELLO's), and agree with the state as a restore's must. */
static int in_same_config(struct migrate_incoming *in, struct migrate_in *got, char *err,
			  size_t errlen)
{
	char *conf = migrate_restore_conf_text(got);
	struct vm_config cfg;
	int ret = conf && !strcmp(conf, in->conf) ? 0 : -EINVAL;

	if (ret)
		snprintf(err, errlen, "--incoming %s: %s", in->uri,
			 conf ? "the source's configuration changed during the migration"
			      : "the state's configuration record is malformed");
	free(conf);
	config_defaults(&cfg);
	ret = ret ?: migrate_restore_config(got, &cfg, err, errlen);
	config_free(&cfg);
	return ret;
}

/* After STATE: the whole stream checked as a file. The source hears about
 * it (and lets go of the disks) only in migrate_incoming_switch. */
static int in_finish(struct migrate_incoming *in, struct migrate_in **out, char *err, size_t errlen)
{
	char label[300];
	int ret = in_write_file(in);

	snprintf(label, sizeof(label), "incoming %s", in->uri);
	if (ret) {
		snprintf(err, errlen, "--incoming %s: the received state: %s", in->uri,
			 strerror(-ret));
		in_refuse(in, ret, err);
		return ret;
	}
	ret = migrate_restore_open_fd(in->memfd, label, out, err, errlen);
	in->memfd = -1; /* the restore owns it now */
	ret = ret ?: in_same_config(in, *out, err, errlen);
	if (ret) {
		migrate_restore_close(*out);
		*out = NULL;
		in_refuse(in, ret, err);
		return ret;
	}
	(*out)->conn = in->c.fd;
	(*out)->ram_in_place = true;
	in->c.fd = -1;
	return 0;
}

int migrate_incoming_switch(struct migrate_in *in, char *err, size_t errlen)
{
	struct mig_conn c;
	uint8_t raw[MIG_HDR_SIZE];
	struct mig_hdr h;
	char why[200];
	int ret;

	if (!in || in->conn < 0)
		return 0;
	c = (struct mig_conn){ .fd = in->conn, .timeout_ms = IN_TIMEOUT_MS };
	ret = mig_send_reply(&c, 0, "received");
	ret = ret ?: mig_recv(&c, raw, sizeof(raw));
	ret = ret ?: mig_hdr_decode(raw, 0, &h, why, sizeof(why));
	if (!ret && h.type != MIG_SWITCH)
		ret = -EPROTO;
	if (ret) {
		snprintf(err, errlen, "--%s: the source did not hand over (%s); it keeps the VM",
			 in->path, ret == -EPIPE ? "it closed the connection" : strerror(-ret));
		return ret;
	}
	in->switch_ns = clock_mono_ns();
	return 0;
}

int migrate_incoming_accept(const char *uri, uint64_t wait_ms, struct migrate_incoming **out,
			    const char **conf, char *err, size_t errlen)
{
	struct migrate_incoming *in = calloc(1, sizeof(*in));
	int ret;

	*out = NULL;
	if (!in || !(in->uri = strdup(uri))) {
		free(in);
		snprintf(err, errlen, "--incoming %s: out of memory", uri);
		return -ENOMEM;
	}
	in->memfd = -1;
	in->c = (struct mig_conn){ .fd = -1, .timeout_ms = IN_TIMEOUT_MS };
	in->c.fd = in_accept(uri, wait_ms, err, errlen);
	ret = in->c.fd < 0 ? in->c.fd : in_handshake(in, err, errlen);
	if (ret) {
		in_free(in);
		return ret;
	}
	*conf = in->conf;
	*out = in;
	return 0;
}

int migrate_incoming_attach(struct migrate_incoming *in, struct guest_mem *gm, char *err,
			    size_t errlen)
{
	int ret = ram_layout_check(gm, &in->r, err, errlen);

	if (ret)
		return ret;
	/* The VM's own anonymous RAM (huge pages where the host gives them:
	 * a guest's first touch of a 2 MiB region is one stage-2 fault, not
	 * 512), zero as the stream's RAM starts (a machine built for a
	 * restore writes nothing into RAM); the memfd keeps only the header
	 * and the records, its RAM area a hole. */
	in->ram = gm->map;
	return 0;
}

void migrate_incoming_on_progress(struct migrate_incoming *in,
				  void (*progress)(void *opaque, const struct migrate_progress *p),
				  void *opaque)
{
	in->progress = progress;
	in->opaque = opaque;
}

int migrate_incoming_ready(struct migrate_incoming *in, int rc, const char *msg, char *err,
			   size_t errlen)
{
	int ret;

	if (!rc && !in->ram) { /* pages would have nowhere to go */
		rc = -EINVAL;
		msg = "the target attached no RAM";
	}
	ret = mig_send_reply(&in->c, rc, rc ? msg : "ready");

	if (!rc && ret)
		snprintf(err, errlen, "--incoming %s: the source went away after its HELLO",
			 in->uri);
	if (rc || ret)
		in_free(in);
	return rc ?: ret;
}

int migrate_incoming_receive(struct migrate_incoming *in, struct migrate_in **out, char *err,
			     size_t errlen)
{
	char why[400] = "";
	int ret = in_receive(in, why, sizeof(why));

	*out = NULL;
	if (ret)
		snprintf(err, errlen, "--incoming %s: %s", in->uri,
			 why[0]		 ? why
			 : ret == -EPIPE ? "the source closed the connection before the end"
					 : strerror(-ret));
	ret = ret ?: in_finish(in, out, err, errlen);
	if (!ret)
		kinfo("migration received from %s: %llu pages", in->uri,
		      (unsigned long long)in->pages_in);
	in_free(in);
	return ret;
}

void migrate_incoming_abort(struct migrate_incoming *in, int rc, const char *msg)
{
	if (!in)
		return;
	in_refuse(in, rc ? rc : -ECANCELED, msg ? msg : "the target gave up");
	in_free(in);
}

void migrate_incoming_done(struct migrate_in *in, int rc, const char *msg)
{
	struct mig_conn c;

	if (!in || in->conn < 0)
		return;
	c = (struct mig_conn){ .fd = in->conn, .timeout_ms = 5000 };
	kdebug("incoming: machine %s %llu us after SWITCH", rc ? "failed" : "loaded",
	       (unsigned long long)((clock_mono_ns() - in->switch_ns) / 1000));
	if (mig_send_reply(&c, rc, rc ? msg : "running"))
		kwarn("migration: the source did not take the last word");
	close(in->conn);
	in->conn = -1;
}
