/* virtio-scsi driven like a guest driver would: through the virtio-pci BAR
 * with rings crafted in guest memory and a raw disk in a temporary file.
 * Covers the per-disk counters (virtio_scsi_get_disk_stats, the control
 * socket's stats and --stats): WRITE(10), READ(10), SYNCHRONIZE CACHE(10)
 * and failed commands counted exactly, probes and other LUNs not counted,
 * lookups of empty targets, counters across hot-remove and re-add, and the
 * per-disk line --stats prints. And the controller --scsi-controller makes
 * with no disk at all: it negotiates, every target is BAD_TARGET, and a
 * hot-plugged disk is announced on the event queue and answers. And its
 * state: quiesce completes what was taken, save -> load into a fresh
 * controller -> resume answers every request exactly once, and every
 * corruption of the state is refused or loaded whole. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kestrel/scsi_disk.h"
#include "kestrel/virtio.h"
#include "kestrel/virtio_scsi.h"
#include "fake_board.h"
#include "virtio_driver.h"

#define RAM	    MiB(16)
#define REQ	    0x100000ULL /* request header + CDB */
#define RESP	    0x101000ULL /* response header + sense */
#define DATA	    0x200000ULL
#define DISK_BLOCKS 2048
#define REQQ	    2 /* queue 0 control, 1 events, 2 the first request queue */
#define EVQ	    1
#define EVBUF	    0x102000ULL /* one event buffer (5.6.6.3) */

/* 5.6.4 defaults: cdb_size 32, sense_size 96. */
#define REQ_HDR	 (19 + 32)
#define RESP_HDR (12 + 96)

static char path[] = "/tmp/check_virtio_scsi.XXXXXX";
static uint16_t avail_idx, used_seen;

/* ---- the driver side (registers and memory: virtio_driver.h) ---- */

/* 3.1.1 initialisation with VERSION_1 only, control/event/one request queue. */
static void scsi_driver_init(void)
{
	avail_idx = used_seen = 0;
	driver_init(F_VERSION_1, REQQ + 1);
}

struct scsi_result {
	uint8_t response, status, sense_key;
	uint16_t asc;
	uint32_t used_len;
};

/* One command to target/lun, data-out from DATA (dout bytes) or data-in
 * into DATA (din bytes); waits for its used entry. */
static struct scsi_result scsi_cmd(unsigned target, unsigned lun, const uint8_t *cdb,
				   size_t cdb_len, uint32_t dout, uint32_t din)
{
	uint8_t req[REQ_HDR] = { 1, (uint8_t)target, 0x40, (uint8_t)lun }, resp[RESP_HDR];
	struct virtq_desc d[3];
	struct scsi_result res = { 0 };
	uint16_t n = 0, head = 0;

	memcpy(req + 19, cdb, cdb_len);
	put(REQ, req, sizeof(req));
	memset(resp, 0xee, sizeof(resp));
	put(RESP, resp, sizeof(resp));
	d[n++] = (struct virtq_desc){ REQ, REQ_HDR, D_NEXT, 1 };
	if (dout)
		d[n++] = (struct virtq_desc){ DATA, dout, D_NEXT, 2 };
	d[n] = (struct virtq_desc){ RESP, RESP_HDR, (uint16_t)(D_WRITE | (din ? D_NEXT : 0)),
				    (uint16_t)(n + 1) };
	n++;
	if (din)
		d[n++] = (struct virtq_desc){ DATA, din, D_WRITE, 0 };
	put(RING(REQQ), d, n * sizeof(d[0]));
	put(AVAIL(REQQ) + 4 + 2 * (avail_idx % QSZ), &head, 2);
	avail_idx++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	put(AVAIL(REQQ) + 2, &avail_idx, 2);
	bar_write(NOTIFY + 4 * REQQ, 2, REQQ);
	for (int i = 0; i < 5000; i++) {
		uint16_t idx;

		get(USED(REQQ) + 2, &idx, 2);
		if (idx != used_seen)
			break;
		sleep_ms(1);
	}
	get(USED(REQQ) + 4 + 8ULL * (used_seen % QSZ) + 4, &res.used_len, 4);
	ck_assert_msg(++used_seen == (uint16_t)avail_idx, "no completion");
	get(RESP, resp, sizeof(resp));
	res.status = resp[10];
	res.response = resp[11];
	res.sense_key = resp[12 + 2] & 0x0f;
	res.asc = (uint16_t)(resp[12 + 12] << 8 | resp[12 + 13]);
	return res;
}

#define CDB(...) (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ })

/* READ(10)/WRITE(10) of n blocks at lba. */
static struct scsi_result rw10(bool write, uint32_t lba, uint16_t n)
{
	uint32_t len = n * 512u;

	return scsi_cmd(0, 0,
			CDB(write ? SCSI_WRITE_10 : SCSI_READ_10, 0, (uint8_t)(lba >> 24),
			    (uint8_t)(lba >> 16), (uint8_t)(lba >> 8), (uint8_t)lba, 0,
			    (uint8_t)(n >> 8), (uint8_t)n, 0),
			write ? len : 0, write ? 0 : len);
}

static void expect_good(struct scsi_result r)
{
	ck_assert_uint_eq(r.response, 0);
	ck_assert_uint_eq(r.status, SCSI_STATUS_GOOD);
}

static void expect_check(struct scsi_result r, uint8_t key, uint16_t asc)
{
	ck_assert_uint_eq(r.response, 0);
	ck_assert_uint_eq(r.status, SCSI_STATUS_CHECK_CONDITION);
	ck_assert_uint_eq(r.sense_key, key);
	ck_assert_uint_eq(r.asc, asc);
}

static struct virtio_scsi_disk_stats stats_of(unsigned target)
{
	struct virtio_scsi_disk_stats st;

	memset(&st, 0xa5, sizeof(st));
	ck_assert_int_eq(virtio_scsi_get_disk_stats(dev, target, &st), 0);
	return st;
}

static void expect_counters(unsigned target, uint64_t rops, uint64_t rbytes, uint64_t wops,
			    uint64_t wbytes, uint64_t flushes, uint64_t errors)
{
	struct virtio_scsi_disk_stats st = stats_of(target);

	ck_assert_uint_eq(st.read_ops, rops);
	ck_assert_uint_eq(st.read_bytes, rbytes);
	ck_assert_uint_eq(st.write_ops, wops);
	ck_assert_uint_eq(st.write_bytes, wbytes);
	ck_assert_uint_eq(st.flush_ops, flushes);
	ck_assert_uint_eq(st.errors, errors);
}

/* ---- fixtures ---- */

/* The controller model on a transport, as src/machine.c puts it together. */
static struct device *scsi_controller(unsigned nq, const struct virtio_scsi_disk *disks, unsigned n,
				      bool stats)
{
	struct virtio_model m;
	char err[256] = "";

	ck_assert_msg(virtio_scsi_new(nq, disks, n, stats, &m, err, sizeof(err)) == 0, "%s", err);
	return transport_for(&m);
}

static void make_dev(bool stats)
{
	struct blk_opts o = { .path = path, .format = BLK_FMT_RAW };
	struct virtio_scsi_disk disk = { 0 };
	char err[256] = "";

	ck_assert_msg(blk_open(&disk.blk, &o, err, sizeof(err)) == 0, "%s", err);
	dev = scsi_controller(1, &disk, 1, stats);
	scsi_driver_init();
}

static void setup_files(void)
{
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, DISK_BLOCKS * 512), 0);
	close(fd);
	ck_assert_int_eq(gm_init(&gm, RAM, false), 0);
}

static void setup(void)
{
	setup_files();
	make_dev(false);
}

/* The empty controller as src/machine.c makes it for --scsi-controller: no
 * disks; two request queues, so that their count is seen not to follow the
 * disks (the driver enables only the first). The disk file is for hot-plug. */
#define EMPTY_REQUEST_QUEUES 2

static void setup_empty(void)
{
	setup_files();
	dev = scsi_controller(EMPTY_REQUEST_QUEUES, NULL, 0, false);
	scsi_driver_init();
}

static void teardown(void)
{
	if (dev)
		dev->ops->destroy(dev);
	dev = NULL;
	gm_destroy(&gm);
	unlink(path);
	strcpy(path + strlen(path) - 6, "XXXXXX");
}

/* ---- tests ---- */

START_TEST(counters_read_write_flush_error)
{
	uint8_t w[2048], r[2048];

	expect_counters(0, 0, 0, 0, 0, 0, 0);
	for (size_t i = 0; i < sizeof(w); i++)
		w[i] = (uint8_t)(i * 13 + 1);
	put(DATA, w, sizeof(w));
	expect_good(rw10(true, 8, 4));
	memset(r, 0, sizeof(r));
	put(DATA, r, sizeof(r));
	expect_good(rw10(false, 8, 4));
	get(DATA, r, sizeof(r));
	ck_assert_int_eq(memcmp(w, r, sizeof(w)), 0);
	expect_good(
		scsi_cmd(0, 0, CDB(SCSI_SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0, 0));
	expect_counters(0, 1, 2048, 1, 2048, 1, 0);
	/* SBC-3: a READ past the last block: CHECK CONDITION, no data. */
	expect_check(rw10(false, DISK_BLOCKS, 1), SCSI_SENSE_ILLEGAL_REQUEST,
		     SCSI_ASC_LBA_OUT_OF_RANGE);
	expect_counters(0, 1, 2048, 1, 2048, 1, 1);
	/* A WRITE whose data-out buffer is short: a virtio overrun, not a write. */
	ck_assert_uint_eq(
		scsi_cmd(0, 0, CDB(SCSI_WRITE_10, 0, 0, 0, 0, 0, 0, 0, 2, 0), 512, 0).response, 1);
	expect_counters(0, 1, 2048, 1, 2048, 1, 2);
}
END_TEST

/* Device DMA reaches the dirty log (live migration): a READ's data-in pages,
 * written by the block layer straight into guest memory, are marked; a
 * WRITE's data-out pages, which the device only reads, are not. */
START_TEST(dirty_log_sees_read_data)
{
	uint64_t bm[RAM / 4096 / 64], page;
	struct gm_slot_info ram;
	uint8_t w[4096];
	int id = gm_slot_at(&gm, DATA);

	ck_assert_int_eq(gm_slot_get(&gm, id, &ram), 0);
	page = (DATA - ram.gpa) / 4096;
	memset(w, 0x5a, sizeof(w));
	put(DATA, w, sizeof(w));
	ck_assert_int_eq(gm_dirty_log_start(&gm), 0);
	expect_good(rw10(true, 16, 8));
	ck_assert_int_ge(gm_dirty_fetch(&gm, id, bm, RAM / 4096, true), 1); /* header, response */
	ck_assert(!(bm[page / 64] >> (page % 64) & 1));
	expect_good(rw10(false, 16, 8));
	ck_assert_int_ge(gm_dirty_fetch(&gm, id, bm, RAM / 4096, true), 2);
	ck_assert(bm[page / 64] >> (page % 64) & 1);
	get(DATA, w, sizeof(w));
	ck_assert_uint_eq(w[4095], 0x5a);
	gm_dirty_log_stop(&gm);
}
END_TEST

/* What a driver probes and expects refused, and commands to a LUN the disk
 * is not, are not the disk's errors. */
START_TEST(probes_and_other_luns_not_counted)
{
	expect_check(scsi_cmd(0, 0, CDB(SCSI_INQUIRY, 0, 0x80, 0, 96, 0), 0, 96),
		     SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	expect_check(scsi_cmd(0, 1, CDB(SCSI_READ_10, 0, 0, 0, 0, 0, 0, 0, 1, 0), 0, 512),
		     SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LUN_NOT_SUPPORTED);
	ck_assert_uint_eq(
		scsi_cmd(5, 0, CDB(SCSI_READ_10, 0, 0, 0, 0, 0, 0, 0, 1, 0), 0, 512).response,
		3); /* 5.6.6.1 VIRTIO_SCSI_S_BAD_TARGET */
	expect_good(scsi_cmd(0, 0, CDB(SCSI_TEST_UNIT_READY, 0, 0, 0, 0, 0), 0, 0));
	expect_counters(0, 0, 0, 0, 0, 0, 0);
}
END_TEST

START_TEST(lookup_and_hot_remove)
{
	struct virtio_scsi_disk_stats st;
	struct blk_opts ro = { .path = path, .format = BLK_FMT_RAW, .readonly = true };
	char err[256] = "";

	st = stats_of(0);
	ck_assert_str_eq(st.path, path);
	ck_assert(!st.readonly);
	ck_assert_int_eq(virtio_scsi_get_disk_stats(dev, 1, &st), -ENOENT);
	ck_assert_int_eq(virtio_scsi_get_disk_stats(dev, VIRTIO_SCSI_MAX_TARGETS, &st), -ENOENT);
	ck_assert_int_eq(virtio_scsi_get_disk_stats(dev, 1000, &st), -ENOENT);
	expect_good(rw10(true, 0, 1));
	expect_counters(0, 0, 0, 1, 512, 0, 0);
	ck_assert_msg(virtio_scsi_unplug(dev, 0, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(virtio_scsi_get_disk_stats(dev, 0, &st), -ENOENT);
	/* Re-added (read-only this time): a new attachment, counters from 0. */
	ck_assert_msg(virtio_scsi_hotplug(dev, 0, &ro, err, sizeof(err)) == 0, "%s", err);
	ck_assert(stats_of(0).readonly);
	expect_counters(0, 0, 0, 0, 0, 0, 0);
	expect_check(rw10(true, 0, 1), SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	expect_counters(0, 0, 0, 0, 0, 0, 1);
}
END_TEST

/* --stats: one line per disk with the same counters, when the device goes. */
START_TEST(print_stats_per_disk)
{
	char want[512], got[4096] = "";
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);

	dev->ops->destroy(dev);
	make_dev(true);
	put(DATA, (uint8_t[1024]){ 0 }, 1024);
	expect_good(rw10(true, 4, 2));
	expect_good(rw10(false, 4, 1));
	expect_check(rw10(false, DISK_BLOCKS + 1, 1), SCSI_SENSE_ILLEGAL_REQUEST,
		     SCSI_ASC_LBA_OUT_OF_RANGE);
	ck_assert_ptr_nonnull(f);
	fflush(stderr);
	ck_assert_int_ge(dup2(fileno(f), STDERR_FILENO), 0);
	dev->ops->destroy(dev);
	dev = NULL;
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	ck_assert_uint_gt(fread(got, 1, sizeof(got) - 1, f), 0);
	fclose(f);
	snprintf(want, sizeof(want),
		 "kestrel: stats: virtio-scsi target0 path=%s read_ops=1 "
		 "read_bytes=512 write_ops=1 write_bytes=1024 flush_ops=0 errors=1\n",
		 path);
	ck_assert_msg(strstr(got, want), "--stats printed:\n%s", got);
}
END_TEST

/* ---- the empty controller (--scsi-controller) ---- */

START_TEST(empty_negotiates)
{
	uint8_t st = (uint8_t)bar_read(CC_STATUS, 1);

	ck_assert_msg((st & ST_DRIVER_OK) && !(st & ST_NEEDS_RESET), "status 0x%x", st);
	ck_assert_uint_eq(bar_read(CC_NUM_QUEUES, 2), REQQ + EMPTY_REQUEST_QUEUES);
	/* 5.6.4: num_queues counts request queues; targets 0..15 may appear. */
	ck_assert_uint_eq(bar_read(DEVCFG + 0, 4), EMPTY_REQUEST_QUEUES);
	ck_assert_uint_eq(bar_read(DEVCFG + 30, 2), VIRTIO_SCSI_MAX_TARGETS - 1);
}
END_TEST

/* A driver's scan of an empty bus: every target is absent (5.6.6.1
 * VIRTIO_SCSI_S_BAD_TARGET), whatever the command. */
START_TEST(empty_targets_absent)
{
	static const unsigned first_and_last[] = { 0, VIRTIO_SCSI_MAX_TARGETS - 1 };
	struct virtio_scsi_disk_stats st;
	char err[256] = "";

	for (size_t i = 0; i < ARRAY_SIZE(first_and_last); i++) {
		unsigned t = first_and_last[i];

		ck_assert_uint_eq(scsi_cmd(t, 0, CDB(SCSI_INQUIRY, 0, 0, 0, 96, 0), 0, 96).response,
				  3);
		ck_assert_uint_eq(scsi_cmd(t, 0,
					   CDB(SCSI_REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0),
					   0, 256)
					  .response,
				  3);
		ck_assert_uint_eq(
			scsi_cmd(t, 0, CDB(SCSI_TEST_UNIT_READY, 0, 0, 0, 0, 0), 0, 0).response, 3);
	}
	ck_assert_int_eq(virtio_scsi_get_disk_stats(dev, 0, &st), -ENOENT);
	ck_assert_int_eq(virtio_scsi_unplug(dev, 0, err, sizeof(err)), -ENOENT);
}
END_TEST

/* One writable event buffer on the event queue, as a driver posts them. */
static void post_event_buffer(void)
{
	struct virtq_desc d = { EVBUF, 16, D_WRITE, 0 };
	uint8_t junk[16];
	uint16_t head = 0, idx = 1;

	memset(junk, 0xee, sizeof(junk));
	put(EVBUF, junk, sizeof(junk));
	put(RING(EVQ), &d, sizeof(d));
	put(AVAIL(EVQ) + 4, &head, 2);
	put(AVAIL(EVQ) + 2, &idx, 2);
}

/* READ CAPACITY(10): last LBA and block length, big-endian (SBC-3 5.16). */
static void expect_capacity(unsigned target)
{
	uint8_t cap[8];

	memset(cap, 0, sizeof(cap));
	put(DATA, cap, sizeof(cap));
	expect_good(
		scsi_cmd(target, 0, CDB(SCSI_READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0, 8));
	get(DATA, cap, sizeof(cap));
	ck_assert_uint_eq((uint32_t)cap[0] << 24 | cap[1] << 16 | cap[2] << 8 | cap[3],
			  DISK_BLOCKS - 1);
	ck_assert_uint_eq((uint32_t)cap[4] << 24 | cap[5] << 16 | cap[6] << 8 | cap[7], 512);
}

START_TEST(empty_then_hotplug)
{
	struct blk_opts o = { .path = path, .format = BLK_FMT_RAW };
	uint8_t ev[16];
	uint16_t used;
	uint32_t len;
	char err[256] = "";

	post_event_buffer();
	ck_assert_msg(virtio_scsi_hotplug(dev, 3, &o, err, sizeof(err)) == 0, "%s", err);
	/* 5.6.6.3.1: TRANSPORT_RESET, LUN 0 of target 3, reason RESCAN. */
	get(USED(EVQ) + 2, &used, 2);
	ck_assert_uint_eq(used, 1);
	get(USED(EVQ) + 8, &len, 4);
	ck_assert_uint_eq(len, 16);
	get(EVBUF, ev, sizeof(ev));
	ck_assert_uint_eq(ev[0] | ev[1] << 8 | ev[2] << 16 | (uint32_t)ev[3] << 24, 1);
	ck_assert_uint_eq(ev[4], 1);
	ck_assert_uint_eq(ev[5], 3);
	ck_assert_uint_eq(ev[12], 1);
	expect_capacity(3);
	ck_assert_uint_eq(scsi_cmd(0, 0, CDB(SCSI_TEST_UNIT_READY, 0, 0, 0, 0, 0), 0, 0).response,
			  3);
	ck_assert_str_eq(stats_of(3).path, path);
}
END_TEST

/* ---- state: quiesce, save, load into a fresh controller, resume ---- */

#define NREQ 5 /* three descriptors each: 15 of QSZ */

/* Offsets into the controller's saved state (virtio_pci_state.c
 * vpci_save): header 12, the PCI function and MSI-X sections (each a
 * 12-byte header and its length), identity 14, then the common
 * configuration (27 bytes, status at +16), then 35 bytes per queue (size
 * +0, desc +4, last_avail +28, used idx +30), then the model's section. */
static size_t st_common;

static size_t section_after(const struct state_buf *s, size_t at)
{
	const uint8_t *p = s->data + at + 8;

	return at + 12 + (p[0] | p[1] << 8 | p[2] << 16 | (size_t)p[3] << 24);
}

static void find_common(const struct state_buf *s)
{
	st_common = section_after(s, section_after(s, 12)) + 14;
}

#define ST_COMMON   st_common
#define ST_STATUS   (ST_COMMON + 16)
#define ST_QUEUE(q) (ST_COMMON + 27 + 35 * (q))

/* A second controller on the same disk, read-only (a shared lock) so that
 * both may hold it, as the source and destination of a move would. */
static struct device *make_ro(void)
{
	struct blk_opts o = { .path = path, .format = BLK_FMT_RAW, .readonly = true };
	struct virtio_scsi_disk disk = { 0 };
	char err[256] = "";

	ck_assert_msg(blk_open(&disk.blk, &o, err, sizeof(err)) == 0, "%s", err);
	return scsi_controller(1, &disk, 1, false);
}

static uint8_t pattern(uint32_t lba, unsigned i)
{
	return (uint8_t)(lba * 31 + i);
}

static void setup_state(void)
{
	uint8_t blk[512];
	int fd;

	setup_files();
	fd = open(path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	for (uint32_t lba = 0; lba < 64; lba++) {
		for (unsigned i = 0; i < sizeof(blk); i++)
			blk[i] = pattern(lba, i);
		ck_assert_int_eq(pwrite(fd, blk, sizeof(blk), lba * 512), (ssize_t)sizeof(blk));
	}
	close(fd);
	dev = make_ro();
	scsi_driver_init();
}

/* READ(10) of one block at lba into DATA + 0x1000 * i, not waited for. */
static void read_async(unsigned i, uint32_t lba)
{
	uint8_t req[REQ_HDR] = { 1,
				 0,
				 0x40,
				 0,
				 [19] = SCSI_READ_10,
				 0,
				 (uint8_t)(lba >> 24),
				 (uint8_t)(lba >> 16),
				 (uint8_t)(lba >> 8),
				 (uint8_t)lba,
				 0,
				 0,
				 1,
				 0 };
	uint64_t rq = REQ + 0x100ULL * i, rs = RESP + 0x100ULL * i, data = DATA + 0x1000ULL * i;
	uint16_t head = (uint16_t)(3 * i);
	struct virtq_desc d[3] = {
		{ rq, REQ_HDR, D_NEXT, (uint16_t)(head + 1) },
		{ rs, RESP_HDR, D_WRITE | D_NEXT, (uint16_t)(head + 2) },
		{ data, 512, D_WRITE, 0 },
	};

	put(rq, req, sizeof(req));
	put(RING(REQQ) + 16ULL * head, d, sizeof(d));
	put(AVAIL(REQQ) + 4 + 2 * (avail_idx % QSZ), &head, 2);
	avail_idx++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	put(AVAIL(REQQ) + 2, &avail_idx, 2);
}

static uint16_t used_idx(void)
{
	uint16_t idx;

	get(USED(REQQ) + 2, &idx, 2);
	return idx;
}

/* Requests in flight when the controller is quiesced are all answered
 * before quiesce returns, or left on the ring for the controller that
 * loads the state: the driver sees each exactly once, with its data. */
START_TEST(state_midflight_exactly_once)
{
	struct device *a = dev, *b;
	struct state_buf s;
	unsigned seen[NREQ] = { 0 };
	uint16_t before;

	/* Rounds differ in how far the source got: quiesced before the
	 * requests were queued (all left on the ring), right after the kick
	 * (some at the block layer), or a little later. */
	if (_i % 3 == 0)
		a->ops->quiesce(a);
	for (unsigned i = 0; i < NREQ; i++)
		read_async(i, 7 * i + (unsigned)_i);
	if (_i % 3)
		bar_write(NOTIFY + 4 * REQQ, 2, REQQ);
	if (_i % 3 == 2)
		sleep_ms(1);
	a->ops->quiesce(a);
	before = used_idx();
	s = locked_save(a);
	b = make_ro();
	s.pos = 0;
	ck_assert_int_eq(locked_load(b, &s), 0);
	a->ops->destroy(a);
	dev = b;
	ck_assert_int_eq(b->ops->resume(b), 0);
	for (int t = 0; t < 5000 && used_idx() != NREQ; t++)
		sleep_ms(1);
	ck_assert_uint_eq(used_idx(), NREQ);
	for (unsigned k = 0; k < NREQ; k++) {
		uint32_t id, len;
		uint8_t resp[RESP_HDR], data[512];

		get(USED(REQQ) + 4 + 8ULL * k, &id, 4);
		get(USED(REQQ) + 8 + 8ULL * k, &len, 4);
		ck_assert_uint_eq(id % 3, 0);
		ck_assert_uint_lt(id / 3, NREQ);
		seen[id / 3]++;
		ck_assert_uint_eq(len, RESP_HDR + 512);
		get(RESP + 0x100ULL * (id / 3), resp, sizeof(resp));
		ck_assert_uint_eq(resp[10], SCSI_STATUS_GOOD);
		ck_assert_uint_eq(resp[11], 0);
		get(DATA + 0x1000ULL * (id / 3), data, sizeof(data));
		for (unsigned i = 0; i < sizeof(data); i++)
			ck_assert_uint_eq(data[i], pattern(7 * (id / 3) + (unsigned)_i, i));
	}
	for (unsigned i = 0; i < NREQ; i++)
		ck_assert_uint_eq(seen[i], 1);
	printf("round %d: %u of %u requests answered before the move, %u after\n", _i, before, NREQ,
	       NREQ - before);
	/* The moved controller goes on serving. */
	used_seen = NREQ;
	ck_assert_uint_eq(scsi_cmd(0, 0, CDB(SCSI_TEST_UNIT_READY, 0, 0, 0, 0, 0), 0, 0).status,
			  SCSI_STATUS_GOOD);
	state_free(&s);
}
END_TEST

/* Save -> load -> save identical, every corruption refused or taken whole,
 * and the fields with rules refused when broken. */
START_TEST(state_roundtrip_and_corruption)
{
	struct device *a = dev, *b = make_ro(), *empty;
	struct state_buf s;
	unsigned refused;

	ck_assert_uint_eq(scsi_cmd(0, 0, CDB(SCSI_TEST_UNIT_READY, 0, 0, 0, 0, 0), 0, 0).status,
			  SCSI_STATUS_GOOD);
	/* Saving a running device is refused: it must be quiesced first. */
	pthread_mutex_lock(&a->lock);
	ck_assert_int_eq(a->ops->save(a, &(struct state_buf){ 0 }), -EBUSY);
	pthread_mutex_unlock(&a->lock);
	a->ops->quiesce(a);
	s = locked_save(a);
	find_common(&s);
	ck_assert_uint_eq(s.data[ST_QUEUE(REQQ)], QSZ);
	ck_assert_uint_eq(s.data[ST_QUEUE(REQQ) + 28], 1);
	ck_assert_uint_eq(s.data[ST_QUEUE(REQQ) + 30], 1);
	refused = check_every_corruption(b, &s);
	printf("virtio-scsi: state %zu bytes, %u of %zu byte flips refused, the rest loaded whole\n",
	       s.len, refused, s.len);
	check_patched_fails(b, &s, ST_STATUS, s.data[ST_STATUS] | 0x40); /* NEEDS_RESET as status */
	check_patched_fails(b, &s, ST_QUEUE(REQQ), 3);			 /* size not a power of 2 */
	check_patched_fails(b, &s, ST_QUEUE(REQQ) + 1, 1);	  /* size above the maximum */
	check_patched_fails(b, &s, ST_QUEUE(REQQ) + 4 + 3, 0x40); /* ring outside RAM */
	check_patched_fails(b, &s, ST_QUEUE(REQQ) + 4,
			    s.data[ST_QUEUE(REQQ) + 4] | 8); /* misaligned */
	check_patched_fails(b, &s, ST_QUEUE(REQQ) + 28, 0);  /* a request in flight */
	/* The same state into a controller without that disk: refused. */
	empty = scsi_controller(1, NULL, 0, false);
	s.pos = 0;
	ck_assert_int_eq(locked_load(empty, &s), -EINVAL);
	empty->ops->destroy(empty);
	/* Whole: the copy saves the same bytes and serves after resume. */
	load_saves_same(b, &s);
	a->ops->destroy(a);
	dev = b;
	ck_assert_int_eq(b->ops->resume(b), 0);
	used_seen = 1;
	ck_assert_uint_eq(scsi_cmd(0, 0, CDB(SCSI_TEST_UNIT_READY, 0, 0, 0, 0, 0), 0, 0).status,
			  SCSI_STATUS_GOOD);
	state_free(&s);
}
END_TEST

/* A disk hot-plugged while the controller is quiesced does not touch the
 * event queue then; resume reports it (NO_EVENT with EVENTS_MISSED, 5.6.6.3,
 * which makes the driver rescan). */
START_TEST(state_hotplug_while_quiesced)
{
	struct blk_opts o = { .path = path, .format = BLK_FMT_RAW, .readonly = true };
	uint8_t ev[16];
	uint16_t used;
	char err[256] = "";

	post_event_buffer();
	dev->ops->quiesce(dev);
	ck_assert_msg(virtio_scsi_hotplug(dev, 3, &o, err, sizeof(err)) == 0, "%s", err);
	get(USED(EVQ) + 2, &used, 2);
	ck_assert_uint_eq(used, 0);
	ck_assert_int_eq(dev->ops->resume(dev), 0);
	get(USED(EVQ) + 2, &used, 2);
	ck_assert_uint_eq(used, 1);
	get(EVBUF, ev, sizeof(ev));
	ck_assert_uint_eq(ev[0] | ev[1] << 8 | ev[2] << 16 | (uint32_t)ev[3] << 24, 0x80000000u);
	expect_capacity(3);
}
END_TEST

static Suite *vscsi_suite(void)
{
	Suite *s = suite_create("virtio_scsi");
	TCase *state;

	ADD_TCASE(s, "disk_stats", setup, teardown, 0, counters_read_write_flush_error,
		  dirty_log_sees_read_data, probes_and_other_luns_not_counted,
		  lookup_and_hot_remove, print_stats_per_disk);
	ADD_TCASE(s, "empty_controller", setup_empty, teardown, 0, empty_negotiates,
		  empty_targets_absent, empty_then_hotplug);
	state = ADD_TCASE(s, "state", setup_state, teardown, 60, state_roundtrip_and_corruption,
			  state_hotplug_while_quiesced);
	tcase_add_loop_test(state, state_midflight_exactly_once, 0, 8);
	return s;
}

int main(void)
{
	return run_suite(vscsi_suite());
}
