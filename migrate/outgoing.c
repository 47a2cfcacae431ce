/* The source of a live migration (docs/migration.md), on its own thread
 * while the guest runs: HELLO and the target's answer; RAM in rounds with
 * KVM's dirty log on (round 1 every non-zero page, then the pages dirtied
 * meanwhile) until the pages left would go within max-downtime at the
 * bandwidth measured; then the guest stops, the last dirty pages and the
 * state (the saved-state file's records, save.c) go, the target checks them
 * all, the disks are let go and SWITCH tells the target to start. Any
 * failure before the target said it runs leaves the caller to resume the
 * guest here. A guest that dirties faster than the link drains is slowed
 * down (auto-converge): its vCPUs are parked a growing share of the time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kestrel/byteorder.h"
#include "kestrel/clock.h"
#include "kestrel/machine.h"
#include "kestrel/migrate.h"
#include "kestrel/migrate_wire.h"
#include "migrate_int.h"

#define OUT_TIMEOUT_MS	      30000
#define OUT_MAX_ROUNDS	      300
#define OUT_BW_SAMPLE_MIN     (4ull << 20) /* bytes: a round this big measures the link */
#define OUT_THROTTLE_SLICE_NS 10000000ull  /* the guest runs this long between naps */

struct outgoing {
	struct machine *m;
	const struct migrate_send_opts *o;
	struct migrate_send_result *res;
	struct mig_conn c;
	uint64_t pages;
	uint64_t *dirty;   /* bit per RAM page: to send */
	uint64_t *tmp;	   /* one slot's bits */
	uint64_t t0_ns;	   /* the start, for the bandwidth limit */
	unsigned throttle; /* % of the time the vCPUs are parked */
	uint64_t last_nap_ns;
};

/* Where the downtime goes (KESTREL_DEBUG=1). */
static void out_debug_time(const struct outgoing *out, const char *what)
{
	kdebug("migrate: %s %llu us after the pause", what,
	       (unsigned long long)((clock_mono_ns() - out->res->pause_ns) / 1000));
}

static uint8_t *out_ram(struct outgoing *out, uint64_t pg)
{
	return (uint8_t *)out->m->vm.gm.map + pg * MIG_PAGE;
}

/* Hold the sending rate at the limit; park the vCPUs for the throttle. */
static void out_pace(struct outgoing *out)
{
	uint64_t now = clock_mono_ns();

	if (out->o->bandwidth) {
		uint64_t due = out->c.sent * 1000000000ull / out->o->bandwidth;

		if (due > now - out->t0_ns)
			usleep((useconds_t)MIN((due - (now - out->t0_ns)) / 1000, 1000000));
	}
	if (out->throttle && !out->res->quiesced &&
	    now - out->last_nap_ns >= OUT_THROTTLE_SLICE_NS) {
		uint64_t nap = OUT_THROTTLE_SLICE_NS * out->throttle / (100 - out->throttle);

		if (!vm_pause(&out->m->vm, 1000)) {
			usleep((useconds_t)(nap / 1000));
			vm_resume(&out->m->vm);
		}
		out->last_nap_ns = clock_mono_ns();
	}
}

static int out_send_run(struct outgoing *out, uint64_t first, uint64_t n)
{
	uint8_t hdr[MIG_HDR_SIZE + 8];
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { out_ram(out, first), n * MIG_PAGE } };
	int ret;

	if (out->c.cancel && __atomic_load_n(out->c.cancel, __ATOMIC_ACQUIRE))
		return -ECANCELED;
	mig_hdr_encode(MIG_PAGES, 8 + n * MIG_PAGE, hdr);
	put_le64(hdr + MIG_HDR_SIZE, first);
	ret = mig_sendv(&out->c, iov, 2);
	if (!ret)
		out_pace(out);
	return ret;
}

/* The pages whose bit is set in out->dirty, in runs; the bits cleared. */
static int out_send_dirty(struct outgoing *out, uint64_t *count)
{
	uint64_t run = 0, at = 0;
	int ret = 0;

	*count = 0;
	for (uint64_t pg = 0; pg <= out->pages && !ret; pg++) {
		bool d = pg < out->pages && (out->dirty[pg / 64] >> (pg % 64) & 1);

		if (d) {
			out->dirty[pg / 64] &= ~(1ull << (pg % 64));
			(*count)++;
			if (!run++)
				at = pg;
			if (run < MIG_BATCH_PAGES)
				continue;
		}
		if (run)
			ret = out_send_run(out, at, run);
		run = 0;
	}
	return ret;
}

/* Round 1: every page but the zero ones (the target's RAM starts zero). */
static void out_mark_nonzero(struct outgoing *out)
{
	for (uint64_t pg = 0; pg < out->pages; pg++)
		if (!ram_page_is_zero(out_ram(out, pg)))
			out->dirty[pg / 64] |= 1ull << (pg % 64);
}

/* KVM's log and the VMM's marks of every RAM slot into out->dirty (by RAM
 * offset); the number of pages now marked. */
static long out_fetch_dirty(struct outgoing *out)
{
	struct guest_mem *gm = &out->m->vm.gm;
	struct gm_slot_info s[GM_MAX_SLOTS];
	int n = gm_slots(gm, s, GM_MAX_SLOTS);
	long total = 0;

	for (int i = 0; i < n && i < GM_MAX_SLOTS; i++) {
		uint64_t base = s[i].ram_offset / MIG_PAGE, np = s[i].size / MIG_PAGE;
		long got;

		if (!(s[i].flags & GM_SLOT_RAM) || !s[i].logging)
			continue;
		got = gm_dirty_fetch(gm, s[i].id, out->tmp, out->pages, true);
		if (got < 0)
			return got;
		for (uint64_t p = 0; p < np && got; p++) {
			if (!(out->tmp[p / 64] >> (p % 64) & 1) || base + p >= out->pages)
				continue;
			out->dirty[(base + p) / 64] |= 1ull << ((base + p) % 64);
		}
	}
	for (uint64_t w = 0; w < (out->pages + 63) / 64; w++)
		total += __builtin_popcountll(out->dirty[w]);
	return total;
}

/* The round's progress: an event here, and ROUND (the target's events). */
static int out_round_end(struct outgoing *out, unsigned round, uint64_t remaining, uint64_t rate,
			 uint64_t expect_ms)
{
	struct migrate_progress p = { .round = round,
				      .transferred = out->c.sent,
				      .remaining = remaining,
				      .dirty_rate = rate,
				      .expected_downtime_ms = expect_ms,
				      .throttle_pct = out->throttle };
	uint8_t b[MIG_ROUND_SIZE];

	if (out->o->progress)
		out->o->progress(out->o->opaque, &p);
	mig_round_put(&p, b);
	return mig_send_msg(&out->c, MIG_ROUND, b, sizeof(b));
}

static int out_send_failed(int ret, char *err, size_t errlen)
{
	snprintf(err, errlen, "sending RAM: %s",
		 ret == -ECANCELED		       ? "cancelled"
		 : ret == -EPIPE || ret == -ECONNRESET ? "the target went away"
						       : strerror(-ret));
	return ret;
}

/* Rounds until the rest fits max-downtime: 0, or -errno with err set. */
static int out_precopy(struct outgoing *out, char *err, size_t errlen)
{
	uint64_t link_bw = 0, prev_expect = UINT64_MAX;
	int ret = gm_dirty_log_start(&out->m->vm.gm);

	if (ret) {
		snprintf(err, errlen, "dirty logging: %s",
			 ret == -EBUSY ? "already on (dirty-log start on the control socket?)"
				       : strerror(-ret));
		return ret;
	}
	out_mark_nonzero(out);
	for (unsigned round = 1;; round++) {
		uint64_t t = clock_mono_ns(), sent0 = out->c.sent, pages, ns, bw, left, expect;
		long dirty;

		ret = out_send_dirty(out, &pages);
		if (ret)
			return out_send_failed(ret, err, errlen);
		ns = MAX(clock_mono_ns() - t, 1000ull);
		bw = (out->c.sent - sent0) * 1000000000ull / ns;
		/* The last round that moved enough to measure the link, not the
		 * best one ever: a link that slowed down must not promise a
		 * short stop it cannot keep. */
		if (!link_bw || out->c.sent - sent0 >= OUT_BW_SAMPLE_MIN)
			link_bw = bw;
		if (out->o->bandwidth)
			link_bw = MIN(link_bw, out->o->bandwidth);
		dirty = out_fetch_dirty(out);
		if (dirty < 0) {
			snprintf(err, errlen, "fetching the dirty log: %s", strerror((int)-dirty));
			return (int)dirty;
		}
		left = (uint64_t)dirty * MIG_PAGE;
		expect = left * 1000 / MAX(link_bw, 1ull);
		out->res->rounds = round;
		ret = out_round_end(out, round, left, left * 1000000000ull / ns, expect);
		if (ret)
			return out_send_failed(ret, err, errlen);
		if (expect <= out->o->max_downtime_ms)
			return 0;
		if (round >= OUT_MAX_ROUNDS) {
			snprintf(err, errlen,
				 "did not converge in %u rounds (%llu KiB left, %llu ms "
				 "expected downtime)",
				 round, (unsigned long long)(left >> 10),
				 (unsigned long long)expect);
			return -ETIME;
		}
		/* Auto-converge: slower each round that brings no progress. */
		if (round >= out->o->converge_after && prev_expect != UINT64_MAX &&
		    expect > prev_expect / 4 * 3 && out->throttle < 99)
			out->throttle = out->throttle ? MIN(out->throttle + 10, 99u) : 20;
		prev_expect = expect;
	}
}

/* The guest stopped: the last pages, the state, the target's check. */
static int out_stop_and_copy(struct outgoing *out, char *err, size_t errlen)
{
	struct machine *m = out->m;
	struct state_buf b = { 0 };
	uint64_t pages;
	long dirty;
	int ret;

	out->res->pause_ns = clock_mono_ns();
	ret = machine_quiesce(m, 2000);
	if (ret) {
		snprintf(err, errlen, "%s",
			 ret == -ETIMEDOUT ? "the vCPUs did not stop in time"
					   : "the VM is stopping");
		return ret;
	}
	out->res->quiesced = true;
	out_debug_time(out, "paused");
	vm_drain_coalesced(&m->vm);
	ret = machine_flush_disks(m);
	if (ret) {
		snprintf(err, errlen, "flushing the disks: %s", strerror(-ret));
		return ret;
	}
	dirty = out_fetch_dirty(out);
	if (dirty < 0) {
		snprintf(err, errlen, "fetching the dirty log: %s", strerror((int)-dirty));
		return (int)dirty;
	}
	ret = out_send_dirty(out, &pages);
	out->res->last_pages = pages;
	ret = ret ?: save_records(m, &b, err, errlen);
	if (!ret)
		ret = mig_send_msg(&out->c, MIG_STATE, b.data, b.len);
	state_free(&b);
	out->res->state_sent_ms = (clock_mono_ns() - out->res->pause_ns) / 1000000;
	out_debug_time(out, "state sent");
	if (ret && !err[0])
		snprintf(err, errlen, "sending the state: %s", strerror(-ret));
	return ret ?: mig_recv_reply(&out->c, err, errlen);
}

/* The disks go to the target; it answers once its vCPUs are about to run. */
static int out_switch(struct outgoing *out, char *err, size_t errlen)
{
	int ret = machine_disks_release(out->m);

	out_debug_time(out, "the target checked the state");

	if (ret) {
		snprintf(err, errlen, "releasing the disks: %s", strerror(-ret));
		return ret;
	}
	/* From here on the target may run the guest: no cancel. */
	out->c.cancel = NULL;
	ret = mig_send_msg(&out->c, MIG_SWITCH, NULL, 0);
	ret = ret ?: mig_recv_reply(&out->c, err, errlen);
	if (ret && machine_disks_retake(out->m))
		kwarn("migration: a disk's lock could not be taken back");
	return ret;
}

static int out_hello(struct outgoing *out, char *err, size_t errlen)
{
	struct guest_mem *gm = &out->m->vm.gm;
	struct state_buf b = { 0 };
	char *conf = save_config_json(out->m);
	int ret = conf ? 0 : -ENOMEM;

	if (!ret) {
		mig_hello_put(&b, gm->ram_size, gm->ram_low, gm->ram_high, conf);
		ret = save_cpuid(out->m, &b);
	}
	free(conf);
	ret = ret ?: b.error ? -ENOMEM : mig_send_msg(&out->c, MIG_HELLO, b.data, b.len);
	state_free(&b);
	if (ret) {
		snprintf(err, errlen, "sending HELLO: %s", strerror(-ret));
		return ret;
	}
	return mig_recv_reply(&out->c, err, errlen);
}

static int out_connect(struct outgoing *out, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	socklen_t len;
	int ret = mig_addr(out->o->uri, &sa, &len, err, errlen);

	if (ret)
		return ret;
	out->c.fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (out->c.fd < 0 || connect(out->c.fd, (struct sockaddr *)&sa, len) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", out->o->uri, strerror(errno));
		return ret;
	}
	mig_tune(out->c.fd);
	return 0;
}

int migrate_send(struct machine *m, const struct migrate_send_opts *o,
		 struct migrate_send_result *res, char *err, size_t errlen)
{
	struct outgoing out = {
		.m = m,
		.o = o,
		.res = res,
		.c = { .fd = -1, .cancel = o->cancel, .timeout_ms = OUT_TIMEOUT_MS }
	};
	uint64_t words;
	int ret;

	memset(res, 0, sizeof(*res));
	err[0] = '\0';
	out.t0_ns = clock_mono_ns();
	out.pages = m->vm.gm.ram_size / MIG_PAGE;
	words = (out.pages + 63) / 64;
	ret = migrate_config_supported(m->cfg, err, errlen);
	if (ret)
		return ret;
	out.dirty = calloc(words, 8);
	out.tmp = calloc(words, 8);
	ret = out.dirty && out.tmp ? 0 : -ENOMEM;
	if (ret)
		snprintf(err, errlen, "out of memory");
	ret = ret ?: out_connect(&out, err, errlen);
	ret = ret ?: out_hello(&out, err, errlen);
	ret = ret ?: out_precopy(&out, err, errlen);
	ret = ret ?: out_stop_and_copy(&out, err, errlen);
	ret = ret ?: out_switch(&out, err, errlen);
	if (gm_dirty_logging(&m->vm.gm))
		gm_dirty_log_stop(&m->vm.gm);
	res->transferred = out.c.sent;
	res->total_ms = (clock_mono_ns() - out.t0_ns) / 1000000;
	if (!ret)
		res->downtime_ms = (clock_mono_ns() - res->pause_ns) / 1000000;
	if (out.c.fd >= 0)
		close(out.c.fd);
	free(out.dirty);
	free(out.tmp);
	return ret;
}
