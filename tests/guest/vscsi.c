/* vscsi.bin: a tiny virtio-scsi driver in ring 3 (virtio v1.1 4.1 modern
 * virtio-pci, 2.6 split rings, 5.6 SCSI host), polled: no interrupt is ever
 * enabled (MSI-X off, INTx disabled in PCI COMMAND). Runs under kestrel and
 * QEMU (-device virtio-scsi-pci), transitional or modern-only.
 *
 * Command line: disks=N (targets 0..N-1, default 2), hostpat=1 (disk 1's
 * sector 7 starts with HOST-PATTERN-D1), hotplug=1 (target 2 is hot-added
 * and then removed by the VMM), malformed=0 (skip the broken-chain checks),
 * ro=T (target T is read-only: its writes must fail with DATA PROTECT),
 * bench=1 [ms=MS] [ops=N] (the disk benchmark instead of the checks: 4k
 * random read and write, 64k sequential read and write, each at queue depth
 * 1 and 32 for MS milliseconds (default 3000; 0: no I/O, for a baseline) or
 * N requests, on target 0; "bench:" lines), barmove=1 (the BAR moves
 * instead of the other checks: the driver moves the device's BAR around the
 * PCI hole, above 4 GiB and back, and turns memory decode off and on, and
 * the device must answer only where the BAR is and keep working),
 * dirty=N [period_ms=MS] (N rounds of device DMA into one page instead of
 * the checks, for the host's dirty log; see dirty_rounds), stream=N (N
 * rounds of writing and reading back all of target 0 with 32 requests in
 * flight, for saving the VM mid-transfer; see stream_rounds). */
#include "virtio.h"

#define VIRTIO_SCSI_MODERN	 0x1048
#define VIRTIO_SCSI_TRANSITIONAL 0x1004
#define F_SCSI_HOTPLUG		 (1ull << 1)

#define Q_CTRL	   0
#define Q_EVENT	   1
#define Q_REQ	   2
#define NQ	   3
#define NSLOTS	   64
#define BENCH_QD   32
#define BENCH_BUF  (64 * 1024)
#define CDB_SIZE   32
#define SENSE_SIZE 96
#define NEVENTS	   8

/* 5.6.6.1 with the default cdb_size 32 and sense_size 96. */
struct cmd_req {
	uint8_t lun[8];
	uint64_t id;
	uint8_t task_attr, prio, crn;
	uint8_t cdb[CDB_SIZE];
} __attribute__((packed));

struct cmd_resp {
	uint32_t sense_len, resid;
	uint16_t status_qualifier;
	uint8_t status, response;
	uint8_t sense[SENSE_SIZE];
} __attribute__((packed));

struct slot {
	struct cmd_req req;
	struct cmd_resp resp;
};

static struct vdev vd;
static struct slot slots[NSLOTS] __attribute__((aligned(64)));
static uint8_t events[NEVENTS][16] __attribute__((aligned(16)));
static uint8_t iobuf[2][8192] __attribute__((aligned(4096)));
static uint8_t benchbuf[BENCH_QD][BENCH_BUF] __attribute__((aligned(4096)));
static struct vdesc indirect_tab[4] __attribute__((aligned(16)));

/* ---- small helpers ---- */

static uint32_t devcfg32(unsigned off)
{
	return mmio_read32(vd.devcfg + off);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void events_post(void)
{
	struct vring *r = &vd.q[Q_EVENT];
	uint16_t old = r->avail_idx;

	for (unsigned i = 0; i < NEVENTS && i < r->num; i++) {
		vq_desc(r, i, events[i], sizeof(events[i]), D_WRITE, 0);
		vq_publish(r, (uint16_t)i);
	}
	vq_kick(r, old);
}

/* 3.1.1 driver initialisation, then the event buffers; false if a step is
 * refused. */
static bool vdev_init(uint64_t want)
{
	if (!vdev_start(&vd, want, NQ))
		return false;
	events_post();
	return !(vcc_read8(&vd, CC_STATUS) & ST_NEEDS_RESET);
}

/* ---- SCSI commands, one at a time on slot 0 ---- */

static void req_fill(struct slot *s, unsigned target, const uint8_t *cdb, unsigned cdblen)
{
	memset(&s->req, 0, sizeof(s->req));
	memset(&s->resp, 0xaa, sizeof(s->resp));
	s->req.lun[0] = 1;
	s->req.lun[1] = (uint8_t)target;
	s->req.lun[2] = 0x40;
	memcpy(s->req.cdb, cdb, cdblen);
}

/* Descriptors 3s.. of the request queue: header, then data-out or response,
 * then response or data-in. */
static void req_chain(unsigned s, bool write, void *data, uint32_t len)
{
	struct vring *r = &vd.q[Q_REQ];
	unsigned d = 3 * s;

	if (write && len) {
		vq_desc(r, d, &slots[s].req, sizeof(slots[s].req), D_NEXT, (uint16_t)(d + 1));
		vq_desc(r, d + 1, data, len, D_NEXT, (uint16_t)(d + 2));
		vq_desc(r, d + 2, &slots[s].resp, sizeof(slots[s].resp), D_WRITE, 0);
	} else {
		vq_desc(r, d, &slots[s].req, sizeof(slots[s].req), D_NEXT, (uint16_t)(d + 1));
		vq_desc(r, d + 1, &slots[s].resp, sizeof(slots[s].resp),
			D_WRITE | (len ? D_NEXT : 0), (uint16_t)(d + 2));
		if (len)
			vq_desc(r, d + 2, data, len, D_WRITE, 0);
	}
}

static uint64_t tsc_hz; /* 0 until bench_calibrate */

/* Wait for the chain with head `head` on r; false on timeout. Once the TSC
 * rate is known the clock is the TSC, which (unlike the PM timer) does not
 * exit, so how long a request takes does not change a run's exit count. */
static bool vq_wait(struct vring *r, uint32_t head, uint32_t *len)
{
	uint64_t t0 = rdtsc();
	struct deadline d = { 0, 0 };
	uint32_t id;

	if (!tsc_hz)
		deadline_start(&d, 3000000);
	for (;;) {
		if (vq_used(r, &id, len)) {
			if (id == head)
				return true;
			continue;
		}
		if (tsc_hz ? rdtsc() - t0 > 3 * tsc_hz : deadline_expired(&d))
			return false;
		cpu_relax();
	}
}

static bool scsi_sync(unsigned target, const uint8_t *cdb, unsigned cdblen, bool write, void *data,
		      uint32_t len, struct cmd_resp *out)
{
	struct vring *r = &vd.q[Q_REQ];
	uint16_t old = r->avail_idx;
	uint32_t used_len;

	req_fill(&slots[0], target, cdb, cdblen);
	req_chain(0, write, data, len);
	vq_publish(r, 0);
	vq_kick(r, old);
	if (!vq_wait(r, 0, &used_len)) {
		memset(out, 0xff, sizeof(*out));
		return false;
	}
	*out = slots[0].resp;
	return true;
}

static bool good(const struct cmd_resp *r)
{
	return r->response == 0 && r->status == 0;
}

/* TEST UNIT READY, again after a UNIT ATTENTION (SAM-5 5.14: a reset is
 * reported once, as QEMU's disks do). */
static void scsi_tur(unsigned t, struct cmd_resp *r)
{
	uint8_t tur[6] = { 0 };

	for (int i = 0; i < 3; i++) {
		scsi_sync(t, tur, 6, false, 0, 0, r);
		if (!(r->response == 0 && r->status == 2 && (r->sense[2] & 0xf) == 6))
			return;
	}
}

static void cdb10(uint8_t *c, uint8_t op, uint32_t lba, uint16_t n)
{
	memset(c, 0, 10);
	c[0] = op;
	c[2] = (uint8_t)(lba >> 24);
	c[3] = (uint8_t)(lba >> 16);
	c[4] = (uint8_t)(lba >> 8);
	c[5] = (uint8_t)lba;
	c[7] = (uint8_t)(n >> 8);
	c[8] = (uint8_t)n;
}

/* ---- the checks ---- */

static uint32_t check_capacity(unsigned t)
{
	uint8_t cdb[16] = { 0x25 };
	struct cmd_resp r;
	uint32_t last, bs;

	memset(iobuf[0], 0, 32);
	scsi_sync(t, cdb, 10, false, iobuf[0], 8, &r);
	last = be32(iobuf[0]);
	bs = be32(iobuf[0] + 4);
	check(good(&r) && bs == 512,
	      "target %u READ CAPACITY(10): %u blocks of %u (resp %u status %u)", t, last + 1, bs,
	      r.response, r.status);
	gprintf("disk%u capacity %u x %u\n", t, last + 1, bs);
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x9e;
	cdb[1] = 0x10;
	cdb[13] = 32;
	scsi_sync(t, cdb, 16, false, iobuf[0], 32, &r);
	check(good(&r) && be32(iobuf[0] + 4) == last && be32(iobuf[0] + 8) == 512,
	      "target %u READ CAPACITY(16) agrees (%u)", t, be32(iobuf[0] + 4));
	return last + 1;
}

/* MODE SENSE(6), caching page (08h), no block descriptors: the page starts
 * at byte 4; WCE is bit 2 of its byte 2. The VMM's cache mode decides it
 * (writeback and none: a volatile cache, WCE=1; directsync: WCE=0); the
 * test reads the line this prints. */
static void check_caching(unsigned t)
{
	uint8_t ms[6] = { 0x1a, 0x08, 0x08, 0, 64, 0 };
	struct cmd_resp r;

	memset(iobuf[0], 0, 64);
	scsi_sync(t, ms, 6, false, iobuf[0], 64, &r);
	if (check(good(&r) && (iobuf[0][4] & 0x3f) == 0x08 && iobuf[0][5] >= 0x12,
		  "target %u MODE SENSE caching page", t))
		gprintf("vscsi: t%u wce=%u\n", t, (iobuf[0][6] >> 2) & 1);
}

static void check_identify(unsigned t)
{
	uint8_t inq[6] = { 0x12, 0, 0, 0, 96, 0 };
	uint8_t luns[12] = { 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0 };
	struct cmd_resp r;
	char vendor[9] = "", product[17] = "";

	memset(iobuf[0], 0, 96);
	scsi_sync(t, inq, 6, false, iobuf[0], 96, &r);
	memcpy(vendor, iobuf[0] + 8, 8);
	memcpy(product, iobuf[0] + 16, 16);
	check(good(&r) && (iobuf[0][0] & 0x1f) == 0 && r.resid == 96 - (iobuf[0][4] + 5u),
	      "target %u INQUIRY: type %u '%s' '%s' resid %u", t, iobuf[0][0] & 0x1f, vendor,
	      product, r.resid);
	scsi_tur(t, &r);
	check(good(&r), "target %u TEST UNIT READY", t);
	scsi_sync(t, luns, 12, false, iobuf[0], 64, &r);
	check(good(&r) && be32(iobuf[0]) >= 8, "target %u REPORT LUNS: %u bytes of LUNs", t,
	      be32(iobuf[0]));
	check_caching(t);
}

/* WRITE(10) two sectors at LBA 200, read them back, flush. */
static void check_data(unsigned t)
{
	uint8_t cdb[10], sync[10] = { 0x35 };
	struct cmd_resp r;
	char line[64];
	int n;

	memset(iobuf[0], 0, 1024);
	for (unsigned off = 0; off + 32 <= 1024; off += 32) {
		n = 0;
		for (const char *p = "KESTREL-VSCSI-T"; *p; p++)
			line[n++] = *p;
		line[n++] = (char)('0' + t);
		for (const char *p = "-LBA200-"; *p; p++)
			line[n++] = *p;
		line[n++] = (char)('0' + (off / 32) / 10);
		line[n++] = (char)('0' + (off / 32) % 10);
		memcpy(iobuf[0] + off, line, (size_t)n);
	}
	cdb10(cdb, 0x2a, 200, 2);
	scsi_sync(t, cdb, 10, true, iobuf[0], 1024, &r);
	check(good(&r), "target %u WRITE(10) 2 blocks at 200 (resp %u status %u)", t, r.response,
	      r.status);
	memset(iobuf[1], 0, 1024);
	cdb10(cdb, 0x28, 200, 2);
	scsi_sync(t, cdb, 10, false, iobuf[1], 1024, &r);
	check(good(&r) && !memcmp(iobuf[0], iobuf[1], 1024), "target %u READ(10) returns the data",
	      t);
	scsi_sync(t, sync, 10, false, 0, 0, &r);
	check(good(&r), "target %u SYNCHRONIZE CACHE", t);
}

static void check_errors(unsigned t, uint32_t blocks)
{
	uint8_t bad[6] = { 0xc1 }, cdb[10];
	struct cmd_resp r;

	scsi_sync(t, bad, 6, false, 0, 0, &r);
	check(r.response == 0 && r.status == 2 && r.sense_len >= 14 &&
		      (r.sense[0] & 0x7f) == 0x70 && (r.sense[2] & 0xf) == 5 && r.sense[12] == 0x20,
	      "target %u unknown opcode: CHECK CONDITION, ILLEGAL REQUEST/20h (key %x asc %02x)", t,
	      r.sense[2] & 0xf, r.sense[12]);
	cdb10(cdb, 0x28, blocks, 1);
	scsi_sync(t, cdb, 10, false, iobuf[1], 512, &r);
	check(r.status == 2 && (r.sense[2] & 0xf) == 5 && r.sense[12] == 0x21,
	      "target %u READ past the end: LBA OUT OF RANGE (asc %02x)", t, r.sense[12]);
}

/* A read-only disk: WRITE fails with DATA PROTECT / WRITE PROTECTED (27h),
 * MODE SENSE shows WP, reads work. */
static void check_readonly(unsigned t)
{
	uint8_t cdb[10], ms[6] = { 0x1a, 0x08, 0x08, 0, 64, 0 };
	struct cmd_resp r;

	memset(iobuf[0], 0, 512);
	memcpy(iobuf[0], "KESTREL-RO-WRITE", 16);
	cdb10(cdb, 0x2a, 200, 1);
	scsi_sync(t, cdb, 10, true, iobuf[0], 512, &r);
	check(r.response == 0 && r.status == 2 && (r.sense[2] & 0xf) == 7 && r.sense[12] == 0x27,
	      "target %u read-only: WRITE gets DATA PROTECT/27h (key %x asc %02x)", t,
	      r.sense[2] & 0xf, r.sense[12]);
	scsi_sync(t, ms, 6, false, iobuf[0], 64, &r);
	check(good(&r) && (iobuf[0][2] & 0x80), "target %u read-only: MODE SENSE sets WP", t);
	cdb10(cdb, 0x28, 200, 1);
	scsi_sync(t, cdb, 10, false, iobuf[1], 512, &r);
	check(good(&r), "target %u read-only: READ works", t);
}

static void check_host_pattern(void)
{
	uint8_t cdb[10];
	struct cmd_resp r;

	cdb10(cdb, 0x28, 7, 1);
	memset(iobuf[1], 0, 512);
	scsi_sync(1, cdb, 10, false, iobuf[1], 512, &r);
	check(good(&r) && !memcmp(iobuf[1], "HOST-PATTERN-D1", 15),
	      "target 1 sector 7 holds what the host wrote ('%.15s')", (const char *)iobuf[1]);
}

static void check_absent_target(unsigned t)
{
	uint8_t tur[6] = { 0 };
	struct cmd_resp r;

	scsi_sync(t, tur, 6, false, 0, 0, &r);
	check(r.response == 3, "target %u absent: response BAD_TARGET (%u)", t, r.response);
}

/* ---- hot-plug events (5.6.6.3) ---- */

static bool event_wait(uint32_t *event, unsigned *target, uint32_t *reason, uint64_t us)
{
	struct vring *r = &vd.q[Q_EVENT];
	struct deadline d;
	uint32_t id, len;

	deadline_start(&d, us);
	while (!vq_used(r, &id, &len)) {
		if (deadline_expired(&d))
			return false;
		cpu_relax();
	}
	if (id >= NEVENTS)
		return false;
	*event = (uint32_t)events[id][0] | (uint32_t)events[id][1] << 8 |
		 (uint32_t)events[id][2] << 16 | (uint32_t)events[id][3] << 24;
	*target = events[id][5];
	*reason = events[id][12];
	{
		uint16_t old = r->avail_idx;

		vq_publish(r, (uint16_t)id);
		vq_kick(r, old);
	}
	return true;
}

static void check_hotplug(void)
{
	uint32_t ev = 0, reason = 0;
	unsigned t = 0;
	bool got;

	check(vd.features & F_SCSI_HOTPLUG, "VIRTIO_SCSI_F_HOTPLUG negotiated");
	got = event_wait(&ev, &t, &reason, 10000000);
	check(got && (ev & 0x7fffffff) == 1 && t == 2 && reason == 1,
	      "hot-add: TRANSPORT_RESET/RESCAN for target 2 (event %x target %u reason %u)", ev, t,
	      reason);
	if (got) {
		check_identify(2);
		check_capacity(2);
	}
	got = event_wait(&ev, &t, &reason, 10000000);
	check(got && (ev & 0x7fffffff) == 1 && t == 2 && reason == 2,
	      "hot-remove: TRANSPORT_RESET/REMOVED for target 2 (event %x target %u reason %u)", ev,
	      t, reason);
	check_absent_target(2);
}

/* ---- malformed chains: NEEDS_RESET, then a reset brings it back ---- */

static bool wait_needs_reset(void)
{
	struct deadline d;

	deadline_start(&d, 3000000);
	while (!(vcc_read8(&vd, CC_STATUS) & ST_NEEDS_RESET))
		if (deadline_expired(&d))
			return false;
	return true;
}

static void malformed(const char *what, unsigned head)
{
	struct vring *r = &vd.q[Q_REQ];
	uint8_t tur[6] = { 0 };
	struct cmd_resp resp;
	uint16_t old = r->avail_idx;

	req_fill(&slots[1], 0, tur, 6);
	vq_publish(r, (uint16_t)head);
	vq_kick(r, old);
	check(wait_needs_reset(), "%s: the device sets DEVICE_NEEDS_RESET (status %02x)", what,
	      vcc_read8(&vd, CC_STATUS));
	check(vdev_init(F_VERSION_1 | F_INDIRECT | F_SCSI_HOTPLUG),
	      "%s: re-initialised after a reset", what);
	scsi_tur(0, &resp);
	check(good(&resp), "%s: the device works again", what);
}

static void check_malformed(void)
{
	struct vring *r = &vd.q[Q_REQ];
	unsigned d = 3 * 10;

	/* A loop: d -> d+1 -> d. */
	vq_desc(r, d, &slots[1].req, sizeof(slots[1].req), D_NEXT, (uint16_t)(d + 1));
	vq_desc(r, d + 1, &slots[1].resp, sizeof(slots[1].resp), D_NEXT | D_WRITE, (uint16_t)d);
	malformed("descriptor loop", d);
	r = &vd.q[Q_REQ];
	/* A data buffer far outside RAM (512 GiB). */
	vq_desc(r, d, &slots[1].req, sizeof(slots[1].req), D_NEXT, (uint16_t)(d + 1));
	vq_desc(r, d + 1, &slots[1].resp, sizeof(slots[1].resp), D_NEXT | D_WRITE,
		(uint16_t)(d + 2));
	r->desc[d + 2].addr = 0x8000000000ull;
	r->desc[d + 2].len = 65536;
	r->desc[d + 2].flags = D_WRITE;
	malformed("buffer outside RAM", d);
	/* An oversized length: 4 GiB - 64 KiB from inside RAM. */
	vq_desc(r, d, &slots[1].req, sizeof(slots[1].req), D_NEXT, (uint16_t)(d + 1));
	vq_desc(r, d + 1, &slots[1].resp, 0xffff0000u, D_WRITE, 0);
	malformed("oversized length", d);
	/* An indirect table with a loop inside. */
	indirect_tab[0] = (struct vdesc){ (uint64_t)(uintptr_t)&slots[1].req, sizeof(slots[1].req),
					  D_NEXT, 1 };
	indirect_tab[1] = (struct vdesc){ (uint64_t)(uintptr_t)&slots[1].resp,
					  sizeof(slots[1].resp), D_NEXT | D_WRITE, 0 };
	vq_desc(r, d, indirect_tab, 2 * sizeof(struct vdesc), D_INDIRECT, 0);
	malformed("loop in an indirect table", d);
}

/* A request through an indirect table (VIRTIO_F_INDIRECT_DESC). */
static void check_indirect(void)
{
	struct vring *r = &vd.q[Q_REQ];
	uint8_t tur[6] = { 0 };
	uint16_t old = r->avail_idx;
	uint32_t len = 0;
	bool ok;

	if (!(vd.features & F_INDIRECT))
		return;
	req_fill(&slots[2], 0, tur, 6);
	indirect_tab[0] = (struct vdesc){ (uint64_t)(uintptr_t)&slots[2].req, sizeof(slots[2].req),
					  D_NEXT, 1 };
	indirect_tab[1] = (struct vdesc){ (uint64_t)(uintptr_t)&slots[2].resp,
					  sizeof(slots[2].resp), D_WRITE, 0 };
	vq_desc(r, 6, indirect_tab, 2 * sizeof(struct vdesc), D_INDIRECT, 0);
	vq_publish(r, 6);
	vq_kick(r, old);
	ok = vq_wait(r, 6, &len);
	check(ok && slots[2].resp.response == 0,
	      "a command through an indirect table (used len %u)", len);
}

/* ---- moving the BAR (PCI Local Bus 3.0, 6.2.5.1) ---- */

/* Commands on target 0 through the BAR where it is now. */
static bool io_works(void)
{
	uint8_t inq[6] = { 0x12, 0, 0, 0, 36, 0 }, cdb[10];
	struct cmd_resp r;
	bool ok;

	memset(iobuf[0], 0, 512);
	ok = scsi_sync(0, inq, 6, false, iobuf[0], 36, &r) && good(&r) && (iobuf[0][0] & 0x1f) == 0;
	cdb10(cdb, 0x28, 0, 1);
	ok = ok && scsi_sync(0, cdb, 10, false, iobuf[1], 512, &r) && good(&r);
	return ok && !(vcc_read8(&vd, CC_STATUS) & ST_NEEDS_RESET);
}

/* The common configuration answers at base (num_queues reads back). */
static bool answers_at(uint64_t common, uint16_t nq)
{
	return mmio_read16(common + CC_NUM_QUEUES) == nq;
}

static void check_barmove(void)
{
	uint16_t nq = vcc_read16(&vd, CC_NUM_QUEUES);
	uint64_t home = vd.bar_addr, off = vd.common - vd.bar_addr,
		 hole[2] = { 0xe8000000, 0xd0100000 };
	uint16_t cmd = pci_conf_read16(0, vd.dev, 0, PCI_COMMAND);
	struct cmd_resp r;

	if (!check(vd.one_bar, "the structures share one BAR (%u)", vd.bar))
		return;
	scsi_tur(0, &r); /* takes the UNIT ATTENTION of the reset, if any */
	gprintf("vscsi: BAR%u at %lx, %s\n", vd.bar, home, vd.bar64 ? "64-bit" : "32-bit");
	check(io_works(), "commands work at %lx", home);
	for (unsigned i = 0; i < 2; i++) {
		uint64_t from = vd.bar_addr;

		vpci_move_bar(&vd, hole[i]);
		check(!answers_at(from + off, nq) && answers_at(vd.common, nq),
		      "moved %lx -> %lx: only the new address answers", from, hole[i]);
		check(io_works(), "commands work at %lx", hole[i]);
	}
	pci_conf_write16(0, vd.dev, 0, PCI_COMMAND, cmd & (uint16_t)~CMD_MEM);
	check(!answers_at(vd.common, nq), "memory decode off: nothing answers at %lx", vd.bar_addr);
	pci_conf_write16(0, vd.dev, 0, PCI_COMMAND, cmd);
	check(answers_at(vd.common, nq) && io_works(), "memory decode on again: commands work");
	if (vd.bar64) {
		uint64_t from = vd.bar_addr;

		vpci_move_bar(&vd, 0x1000000000ull); /* 64 GiB: the payload maps only 4 */
		check(!answers_at(from + off, nq), "moved above 4 GiB: %lx no longer answers",
		      from);
	}
	vpci_move_bar(&vd, home);
	check(answers_at(vd.common, nq) && io_works(), "back at %lx: commands work", home);
}

/* ---- benchmark ---- */

struct bench_phase {
	const char *name;
	uint32_t bytes;
	bool write, random;
	unsigned qd;
};

static uint32_t rng = 0x2545f491;

static uint32_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static void bench_submit(unsigned s, const struct bench_phase *p, uint64_t *seq, uint32_t blocks)
{
	uint32_t n = p->bytes / 512, lba;
	uint8_t cdb[10];

	if (p->random) {
		lba = (next_rand() % (blocks / n)) * n;
	} else {
		if (*seq + n > blocks)
			*seq = 0;
		lba = (uint32_t)*seq;
		*seq += n;
	}
	cdb10(cdb, p->write ? 0x2a : 0x28, lba, (uint16_t)n);
	req_fill(&slots[s], 0, cdb, 10);
	req_chain(s, p->write, benchbuf[s], p->bytes);
	vq_publish(&vd.q[Q_REQ], (uint16_t)(3 * s));
}

/* Keep qd requests in flight for `cycles` TSC cycles (or until ops were
 * submitted), then wait for the rest; polls the used ring. The clock is the
 * TSC: reading it does not exit. *done: requests completed. */
static bool bench_run(const struct bench_phase *p, uint32_t ops, uint32_t blocks, uint64_t *cycles,
		      uint32_t *done_out, uint32_t *errors)
{
	struct vring *r = &vd.q[Q_REQ];
	unsigned freelist[BENCH_QD], nfree = 0;
	uint32_t submitted = 0, done = 0, id, len;
	uint64_t seq = 0, t0, end, progress;
	bool open = true;

	for (unsigned s = 0; s < p->qd; s++)
		freelist[nfree++] = s;
	*errors = 0;
	t0 = progress = rdtsc();
	end = t0 + *cycles;
	while (done < submitted || (open && submitted < ops)) {
		uint16_t old = r->avail_idx;
		bool added = false;

		if (open && rdtsc() >= end)
			open = false;
		while (open && nfree && submitted < ops) {
			bench_submit(freelist[--nfree], p, &seq, blocks);
			submitted++;
			added = true;
		}
		if (added)
			vq_kick(r, old);
		while (vq_used(r, &id, &len)) {
			unsigned s = id / 3;

			if (!good(&slots[s].resp))
				(*errors)++;
			freelist[nfree++] = s;
			done++;
			progress = rdtsc();
		}
		/* Stuck for 10 s? (The TSC, not the PM timer: reading it exits.) */
		if (rdtsc() - progress > 10 * tsc_hz)
			return false;
	}
	*cycles = rdtsc() - t0;
	*done_out = done;
	return true;
}

/* TSC rate against the PM timer with exactly two timer reads (each exits),
 * so a run's exit count does not depend on how fast the host is. */
static void bench_calibrate(void)
{
	uint32_t port = pmtmr_port(), p0, p1;
	uint64_t t0, t1;

	if (!port) {
		tsc_hz = 1000000000;
		return;
	}
	p0 = inl((uint16_t)port);
	t0 = rdtsc();
	while (rdtsc() - t0 < (1ull << 27))
		cpu_relax();
	p1 = inl((uint16_t)port);
	t1 = rdtsc();
	/* 2^27 cycles is well under one wrap of a 24-bit counter (4.7 s) at any
	 * TSC rate above 30 MHz. */
	tsc_hz = (t1 - t0) * 3579545ull / (((p1 - p0) & 0xffffff) ? ((p1 - p0) & 0xffffff) : 1);
}

static int bench(void)
{
	static const struct bench_phase phases[] = {
		{ "randread-4k", 4096, false, true, 1 },
		{ "randread-4k", 4096, false, true, 32 },
		{ "randwrite-4k", 4096, true, true, 1 },
		{ "randwrite-4k", 4096, true, true, 32 },
		{ "seqread-64k", 65536, false, false, 1 },
		{ "seqread-64k", 65536, false, false, 32 },
		{ "seqwrite-64k", 65536, true, false, 1 },
		{ "seqwrite-64k", 65536, true, false, 32 },
	};
	uint32_t ops = (uint32_t)mb_cmdline_uint("ops", 1000000), blocks, errors = 0, n = 0;
	uint64_t ms = mb_cmdline_uint("ms", 3000), cycles = 0, total = 0;
	struct cmd_resp r;

	bench_calibrate();
	scsi_tur(0, &r); /* takes the UNIT ATTENTION of the reset, if any */
	blocks = check_capacity(0);
	if (!check(blocks >= 4096, "target 0 has room for the benchmark (%u blocks)", blocks))
		return check_result(GUEST_EXIT_VSCSI);
	gprintf("bench: tsc_hz=%012lu ms=%06lu\n", tsc_hz, ms);
	for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
		const struct bench_phase *p = &phases[i];
		uint64_t us, iops, kbps;
		bool ok;

		cycles = ms * tsc_hz / 1000;
		ok = bench_run(p, ms ? ops : 0, blocks, &cycles, &n, &errors);
		if (!check(ok && errors == 0, "bench %s qd%u: %08u requests, %u errors", p->name,
			   p->qd, n, errors))
			break;
		us = cycles * 1000000 / (tsc_hz ? tsc_hz : 1);
		iops = us ? (uint64_t)n * 1000000 / us : 0;
		kbps = us ? (uint64_t)n * (p->bytes / 1024) * 1000000 / us : 0;
		total += n;
		/* Fixed widths: a run without I/O prints as many characters (each
		 * one is a UART exit), so exits can be compared run to run. */
		gprintf("bench: %s qd=%u ops=%08u us=%010lu iops=%08lu kBps=%010lu\n", p->name,
			p->qd, n, us, iops, kbps);
	}
	gprintf("bench: requests=%010lu kicks=%08u\n", total, vd.kicks);
	return check_result(GUEST_EXIT_VSCSI);
}

/* dirty=N: N rounds of period_ms= (default 100), each a READ(10) of 8
 * sectors of target 0 into a page nothing but the device writes. Prints
 * "vscsi: dirty dma=0x... used=0x..." first, then "vscsi: dirty round R": the
 * host's dirty log must hold the DMA page and the used ring's page, which
 * only the device writes (KVM never sees those writes). */
static uint8_t dmabuf[4096] __attribute__((aligned(4096)));

static int dirty_rounds(uint64_t rounds)
{
	uint64_t period = mb_cmdline_uint("period_ms", 100);
	struct cmd_resp r;
	uint8_t cdb[10];
	unsigned bad = 0;

	scsi_tur(0, &r); /* takes the UNIT ATTENTION of the reset, if any */
	gprintf("vscsi: dirty dma=%#lx used=%#lx\n", (uint64_t)(uintptr_t)dmabuf,
		(uint64_t)(uintptr_t)vd.q[Q_REQ].used);
	for (uint64_t n = 1; n <= rounds; n++) {
		cdb10(cdb, 0x28, 0, 8);
		if (!scsi_sync(0, cdb, 10, false, dmabuf, sizeof(dmabuf), &r) || !good(&r))
			bad++;
		gprintf("vscsi: dirty round %lu\n", n);
		udelay(period * 1000);
	}
	check(bad == 0, "%lu READs into the DMA page, %u failed", rounds, bad);
	return check_result(GUEST_EXIT_VSCSI);
}

/* stream=N: N rounds over target 0, each writing every 64 KiB block with a
 * pattern of the round, then reading all of it back and checking every
 * word, 32 requests in flight all the time. "vscsi: stream round R ok"
 * after each. The VM is saved and restored in a new worker meanwhile: a
 * request lost, done twice or answered with stale data shows as a stall or
 * a mismatch (tests/guest-tests.sh, payload-state-vscsi). */
static uint32_t stream_word(uint32_t round, uint32_t lba, uint32_t i)
{
	return (round * 0x9e3779b1u) ^ (lba << 8) ^ i;
}

static void stream_fill(uint32_t *w, uint32_t round, uint32_t lba, uint32_t words)
{
	for (uint32_t i = 0; i < words; i++)
		w[i] = stream_word(round, lba + i / 128, i % 128);
}

static bool stream_same(const uint32_t *w, uint32_t round, uint32_t lba, uint32_t words)
{
	for (uint32_t i = 0; i < words; i++)
		if (w[i] != stream_word(round, lba + i / 128, i % 128))
			return false;
	return true;
}

static void stream_submit(unsigned s, bool write, uint32_t round, uint32_t lba)
{
	uint8_t cdb[10];

	if (write)
		stream_fill((uint32_t *)benchbuf[s], round, lba, BENCH_BUF / 4);
	cdb10(cdb, write ? 0x2a : 0x28, lba, BENCH_BUF / 512);
	req_fill(&slots[s], 0, cdb, 10);
	req_chain(s, write, benchbuf[s], BENCH_BUF);
	vq_publish(&vd.q[Q_REQ], (uint16_t)(3 * s));
}

/* One pass over the disk; false when nothing completed for 20 s. */
static bool stream_pass(bool write, uint32_t round, uint32_t chunks, uint32_t *bad)
{
	struct vring *r = &vd.q[Q_REQ];
	unsigned freelist[BENCH_QD], nfree = 0;
	uint32_t lba_of[BENCH_QD], next = 0, done = 0, id, len;
	uint64_t progress = rdtsc();

	for (unsigned s = 0; s < BENCH_QD; s++)
		freelist[nfree++] = s;
	while (done < chunks) {
		uint16_t old = r->avail_idx;
		bool added = false;

		while (nfree && next < chunks) {
			unsigned s = freelist[--nfree];

			lba_of[s] = next++ * (BENCH_BUF / 512);
			stream_submit(s, write, round, lba_of[s]);
			added = true;
		}
		if (added)
			vq_kick(r, old);
		while (vq_used(r, &id, &len)) {
			unsigned s = id / 3;

			if (s >= BENCH_QD || !good(&slots[s].resp) ||
			    (!write && !stream_same((uint32_t *)benchbuf[s], round, lba_of[s],
						    BENCH_BUF / 4)))
				(*bad)++;
			if (s < BENCH_QD)
				freelist[nfree++] = s;
			done++;
			progress = rdtsc();
		}
		if (rdtsc() - progress > 20 * tsc_hz)
			return false;
		cpu_relax();
	}
	return true;
}

static int stream_rounds(uint64_t rounds)
{
	struct cmd_resp r;
	uint32_t blocks, chunks, bad = 0;

	bench_calibrate();
	scsi_tur(0, &r); /* takes the UNIT ATTENTION of the reset, if any */
	blocks = check_capacity(0);
	chunks = blocks / (BENCH_BUF / 512);
	if (!check(chunks >= BENCH_QD, "target 0 holds %u 64 KiB chunks", chunks))
		return check_result(GUEST_EXIT_VSCSI);
	for (uint64_t n = 1; n <= rounds; n++) {
		bool ok = stream_pass(true, (uint32_t)n, chunks, &bad) &&
			  stream_pass(false, (uint32_t)n, chunks, &bad);

		if (!ok || bad) {
			check(false, "stream round %lu: %u bad requests%s", n, bad,
			      ok ? "" : ", stalled");
			break;
		}
		gprintf("vscsi: stream round %lu ok\n", n);
	}
	check(bad == 0, "%lu stream rounds, every word read back as written", rounds);
	return check_result(GUEST_EXIT_VSCSI);
}

/* mark=N: N rounds of period_ms= (default 100). Round n reads back what
 * round n-1 wrote (held in RAM: `last`) at sector 0 and in the 2 MiB block
 * it used, then writes n to sector 0 and to block 1 + n % 3. RAM and disk
 * go back together when a snapshot is applied (docs/state.md): a disk that
 * did not, or a snapshot's data lost in a merge, reads as another number.
 * Prints "vscsi: mark n ok" or a FAIL line. */
#define MARK_MAGIC 0x4b4d524bu

static bool mark_io(bool write, uint32_t lba, uint32_t *val)
{
	uint32_t *w = (uint32_t *)(void *)dmabuf;
	struct cmd_resp r;
	uint8_t cdb[10];

	if (write) {
		w[0] = MARK_MAGIC;
		w[1] = *val;
	}
	cdb10(cdb, write ? 0x2a : 0x28, lba, 1);
	if (!scsi_sync(0, cdb, 10, write, dmabuf, 512, &r) || !good(&r))
		return false;
	if (!write)
		*val = w[0] == MARK_MAGIC ? w[1] : 0;
	return true;
}

static int mark_rounds(uint64_t rounds)
{
	uint64_t period = mb_cmdline_uint("period_ms", 100);
	static volatile uint32_t last; /* in RAM: saved with the VM */
	struct cmd_resp r;

	scsi_tur(0, &r); /* takes the UNIT ATTENTION of the reset, if any */
	for (uint32_t n = last + 1; n <= rounds; n = last + 1) {
		uint32_t at0 = ~0u, atb = ~0u, lba = 4096 * (1 + n % 3),
			 plba = 4096 * (1 + (n - 1) % 3);

		if (!mark_io(false, 0, &at0) || (last && !mark_io(false, plba, &atb)) ||
		    at0 != last || (last && atb != last)) {
			check(false, "mark %u: read back %u and %u, wrote %u", n, at0, atb, last);
			break;
		}
		if (!mark_io(true, lba, &n) || !mark_io(true, 0, &n)) {
			check(false, "mark %u: the write failed", n);
			break;
		}
		last = n;
		gprintf("vscsi: mark %u ok\n", n);
		udelay(period * 1000);
	}
	return check_result(GUEST_EXIT_VSCSI);
}

int main(void)
{
	unsigned ndisks = (unsigned)mb_cmdline_uint("disks", 2);
	unsigned ro = (unsigned)mb_cmdline_uint("ro", 255);
	uint64_t want = F_VERSION_1 | F_INDIRECT | F_SCSI_HOTPLUG;
	bool ok;

	pmtmr_init();
	if (!check(vpci_find(&vd, VIRTIO_SCSI_MODERN, VIRTIO_SCSI_TRANSITIONAL),
		   "virtio-scsi function on bus 0"))
		return check_result(GUEST_EXIT_VSCSI);
	gprintf("vscsi: 00:%02x.0 1af4:%04x\n", vd.dev, vd.devid);
	pci_conf_write16(0, vd.dev, 0, PCI_COMMAND, 0);
	if (!check(vpci_caps(&vd, VCAP_COMMON | VCAP_NOTIFY | VCAP_ISR | VCAP_DEVICE),
		   "common/notify/ISR/device capabilities present"))
		return check_result(GUEST_EXIT_VSCSI);
	pci_conf_write16(0, vd.dev, 0, PCI_COMMAND, CMD_MEM | CMD_MASTER | CMD_INTX_OFF);
	if (mb_cmdline_uint("evidx", 1))
		want |= F_EVENT_IDX;
	ok = vdev_init(want);
	check(ok && (vd.features & F_VERSION_1), "features negotiated: %lx", vd.features);
	gprintf("vscsi: num_queues=%u seg_max=%u max_target=%u cdb_size=%u sense_size=%u\n",
		devcfg32(0), devcfg32(4), devcfg32(28) >> 16, devcfg32(24), devcfg32(20));
	check(devcfg32(24) == CDB_SIZE && devcfg32(20) == SENSE_SIZE, "default cdb/sense sizes");
	if (mb_cmdline_uint("bench", 0))
		return bench();
	if (mb_cmdline_uint("barmove", 0)) {
		check_barmove();
		return check_result(GUEST_EXIT_VSCSI);
	}
	if (mb_cmdline_uint("dirty", 0))
		return dirty_rounds(mb_cmdline_uint("dirty", 0));
	if (mb_cmdline_uint("stream", 0))
		return stream_rounds(mb_cmdline_uint("stream", 0));
	if (mb_cmdline_uint("mark", 0))
		return mark_rounds(mb_cmdline_uint("mark", 0));
	/* First, while the VMM's hot-plug timers (counted from DRIVER_OK) run. */
	if (mb_cmdline_uint("hotplug", 0))
		check_hotplug();
	for (unsigned t = 0; t < ndisks; t++) {
		uint32_t blocks;

		check_identify(t);
		blocks = check_capacity(t);
		if (t == ro)
			check_readonly(t);
		else
			check_data(t);
		check_errors(t, blocks);
	}
	if (mb_cmdline_uint("hostpat", 0))
		check_host_pattern();
	check_absent_target(9);
	check_indirect();
	if (mb_cmdline_uint("malformed", 1))
		check_malformed();
	return check_result(GUEST_EXIT_VSCSI);
}
