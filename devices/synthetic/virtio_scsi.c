/* virtio-scsi (virtio v1.1 5.6): a controller whose targets are the VM's
 * disks, one LUN each. Queue 0 is the control queue, 1 the event queue, 2..
 * the request queues. SCSI commands are interpreted by scsi_disk.c; block
 * I/O goes to the block layer.
 *
 * Threads: one I/O thread per request queue polls that queue's kick fd (the
 * first one also polls the control and event queues), pops requests and
 * submits them; the block layer completes them on its own threads, where the
 * response is written, the used ring updated and the irqfd signalled. The
 * vCPU threads only ever touch this device through the transport's
 * configuration (start/stop, config space).
 *
 * Hot-plug: targets[] is swapped under lock; every request takes a reference
 * (inflight) on its target under that lock, so an unplugged disk is closed
 * only after its last request completed. Events go out on the event queue
 * (5.6.6.3.1 TRANSPORT_RESET with RESCAN/REMOVED); with no buffer there the
 * next event carries EVENTS_MISSED, which makes the driver rescan. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "kestrel/clock.h"
#include "kestrel/block.h"
#include "kestrel/sandbox.h"
#include "kestrel/scsi_disk.h"
#include "kestrel/state.h"
#include "kestrel/virtio.h"
#include "kestrel/virtio_scsi.h"

#define VSCSI_CTRLQ	    0
#define VSCSI_EVENTQ	    1
#define VSCSI_REQQ	    2
#define VSCSI_QUEUE_SIZE    256
#define VSCSI_CDB_SIZE	    32 /* 5.6.4 defaults */
#define VSCSI_SENSE_SIZE    96
#define VSCSI_MAX_CDB_SENSE 256 /* largest cdb_size/sense_size a driver may set */
#define VSCSI_REQ_HDR	    19	/* lun[8], id, task_attr, prio, crn */
#define VSCSI_RESP_HDR	    12	/* sense_len, residual, status_qualifier, status, response */
#define VSCSI_EVENT_SIZE    16
#define VSCSI_TMF_WAIT_MS   5000

/* 5.6.6.1 response values. */
#define VIRTIO_SCSI_S_OK		0
#define VIRTIO_SCSI_S_OVERRUN		1
#define VIRTIO_SCSI_S_BAD_TARGET	3
#define VIRTIO_SCSI_S_FUNCTION_COMPLETE 0
/* 5.6.6.2 control queue request types. */
#define VIRTIO_SCSI_T_TMF		0
#define VIRTIO_SCSI_T_AN_QUERY		1
#define VIRTIO_SCSI_T_AN_SUBSCRIBE	2
/* 5.6.6.3 events. */
#define VIRTIO_SCSI_T_NO_EVENT		0
#define VIRTIO_SCSI_T_TRANSPORT_RESET	1
#define VIRTIO_SCSI_T_EVENTS_MISSED	0x80000000u
#define VIRTIO_SCSI_EVT_RESET_RESCAN	1
#define VIRTIO_SCSI_EVT_RESET_REMOVED	2
/* 5.6.3 feature bits. */
#define VIRTIO_SCSI_F_HOTPLUG		1

/* 5.6.4 struct virtio_scsi_config. */
#define VSCSI_CFG_NUM_QUEUES	  0
#define VSCSI_CFG_SEG_MAX	  4
#define VSCSI_CFG_MAX_SECTORS	  8
#define VSCSI_CFG_CMD_PER_LUN	  12
#define VSCSI_CFG_EVENT_INFO_SIZE 16
#define VSCSI_CFG_SENSE_SIZE	  20
#define VSCSI_CFG_CDB_SIZE	  24
#define VSCSI_CFG_MAX_CHANNEL	  28
#define VSCSI_CFG_MAX_TARGET	  30
#define VSCSI_CFG_MAX_LUN	  32
#define VSCSI_CFG_SIZE		  36

/* Per-disk counters (struct virtio_scsi_disk_stats), kept on the target
 * rather than the queue: a disk's requests are spread over every queue. */
struct vscsi_counters {
	atomic_ullong read_ops, read_bytes, write_ops, write_bytes, flush_ops, errors;
};

struct vscsi_target {
	unsigned id;
	struct blk_dev *blk;
	struct scsi_disk disk;
	atomic_uint inflight; /* requests holding this target */
	struct vscsi_counters stats;
};

struct virtio_scsi;

struct vscsi_queue {
	struct virtio_scsi *s;
	unsigned vqi; /* its virtqueue */
	pthread_t thread;
	bool thread_running;
	struct iovec iov[VSCSI_QUEUE_SIZE]; /* scratch for vq_pop */
	uint8_t buf[SCSI_DISK_BUF_SIZE];    /* scratch for answers */
	atomic_ullong requests, bytes_read, bytes_written, kicks;
};

struct vscsi_timer {
	unsigned target;
	uint64_t at_ms;
	bool add, done;
	struct blk_dev *blk; /* add: opened at start-up, attached at at_ms */
};

struct virtio_scsi {
	struct virtio_dev *vdev;
	unsigned nreq;
	struct vscsi_queue q[VIRTIO_SCSI_MAX_REQUEST_QUEUES];
	int stop_fd;
	bool stats;
	uint32_t cfg_cdb_size, cfg_sense_size; /* as the driver wrote them */
	uint32_t cdb_size, sense_size;	       /* in use since DRIVER_OK */
	atomic_uint inflight;		       /* requests at the block layer */

	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cond;  /* timers: first DRIVER_OK, teardown */
	struct vscsi_target *targets[VIRTIO_SCSI_MAX_TARGETS];
	bool running, quiesced, ever_started, events_missed, dying;
	struct timespec started_at;
	struct iovec ev_iov[VSCSI_QUEUE_SIZE];
	struct vscsi_timer timers[2 * VIRTIO_SCSI_MAX_TARGETS];
	unsigned ntimers;
	pthread_t timer_thread;
	bool timer_running;
};

/* An asynchronous request: what its completion needs once the I/O thread
 * has moved on. */
struct vscsi_req {
	struct virtio_scsi *s;
	struct vscsi_queue *q;
	struct virtq *vq;
	struct vscsi_target *t;
	uint16_t head;
	uint32_t rsz; /* response header + sense bytes */
	uint64_t dout_len, din_len, bytes;
	struct scsi_cmd cmd;
	enum scsi_action op; /* cmd.action at submission */
	atomic_int pending, err;
	unsigned in_num;
	struct iovec *in; /* copy of the device-writable buffers */
	unsigned nblk;
	struct blk_req blk[];
};

static void le32_put(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t le32_get(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- targets ---- */

/* 5.6.6.1: lun[0] = 1, lun[1] = target, lun[2..3] = LUN (flat space 0x40xx
 * or peripheral 0x00xx), lun[4..7] = 0. False when the target byte is
 * unusable; *lun is -1 when the LUN field is malformed. */
static bool vscsi_lun_parse(const uint8_t *l, unsigned *target, int *lun)
{
	if (l[0] != 1)
		return false;
	*target = l[1];
	*lun = -1;
	if (l[4] | l[5] | l[6] | l[7])
		return true;
	if ((l[2] & 0xc0) == 0x40)
		*lun = (l[2] & 0x3f) << 8 | l[3];
	else if (l[2] == 0)
		*lun = l[3];
	return true;
}

static struct vscsi_target *vscsi_target_get(struct virtio_scsi *s, unsigned target)
{
	struct vscsi_target *t = NULL;

	pthread_mutex_lock(&s->lock);
	if (target < VIRTIO_SCSI_MAX_TARGETS)
		t = s->targets[target];
	if (t)
		atomic_fetch_add(&t->inflight, 1);
	pthread_mutex_unlock(&s->lock);
	return t;
}

static void vscsi_target_put(struct vscsi_target *t)
{
	atomic_fetch_sub(&t->inflight, 1);
}

static uint64_t vscsi_hash(const char *s, unsigned salt)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ salt;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	return h;
}

static struct vscsi_target *vscsi_target_new(unsigned id, struct blk_dev *blk)
{
	const struct blk_opts *o = &blk->opts;
	struct vscsi_target *t = calloc(1, sizeof(*t));
	uint32_t bs = blk->block_size ? blk->block_size : 512;
	uint64_t h = vscsi_hash(o->path ? o->path : "", id);

	if (!t)
		return NULL;
	t->id = id;
	t->blk = blk;
	t->disk = (struct scsi_disk){
		.nblocks = blk->size / bs,
		.block_size = bs,
		.readonly = blk->readonly || o->readonly,
		.can_discard = blk->can_discard && !(blk->readonly || o->readonly),
		.write_cache = blk_cache_volatile(o->cache),
		.naa_id = h,
	};
	snprintf(t->disk.serial, sizeof(t->disk.serial), "KST%02u-%08X", id, (unsigned)(h >> 32));
	return t;
}

/* ---- per-disk counters ---- */

enum vscsi_io_kind { VSCSI_IO_NONE, VSCSI_IO_READ, VSCSI_IO_WRITE, VSCSI_IO_FLUSH, VSCSI_IO_OTHER };

/* By opcode, not by action: a READ refused up front (LBA out of range)
 * never becomes SCSI_ACT_READ but is still a failed read. */
static enum vscsi_io_kind vscsi_io_kind(uint8_t opcode)
{
	switch (opcode) {
	case SCSI_READ_6:
	case SCSI_READ_10:
	case SCSI_READ_12:
	case SCSI_READ_16: return VSCSI_IO_READ;
	case SCSI_WRITE_6:
	case SCSI_WRITE_10:
	case SCSI_WRITE_12:
	case SCSI_WRITE_16: return VSCSI_IO_WRITE;
	case SCSI_SYNCHRONIZE_CACHE_10:
	case SCSI_SYNCHRONIZE_CACHE_16: return VSCSI_IO_FLUSH;
	case SCSI_UNMAP:
	case SCSI_WRITE_SAME_16: return VSCSI_IO_OTHER;
	default: return VSCSI_IO_NONE; /* probes: a refused one is no disk error */
	}
}

static void vscsi_count(struct vscsi_target *t, uint8_t opcode, bool ok, uint64_t bytes)
{
	struct vscsi_counters *k = &t->stats;
	enum vscsi_io_kind kind = vscsi_io_kind(opcode);

	if (kind == VSCSI_IO_NONE)
		return;
	if (!ok) {
		atomic_fetch_add(&k->errors, 1);
	} else if (kind == VSCSI_IO_READ) {
		atomic_fetch_add(&k->read_ops, 1);
		atomic_fetch_add(&k->read_bytes, bytes);
	} else if (kind == VSCSI_IO_WRITE) {
		atomic_fetch_add(&k->write_ops, 1);
		atomic_fetch_add(&k->write_bytes, bytes);
	} else if (kind == VSCSI_IO_FLUSH) {
		atomic_fetch_add(&k->flush_ops, 1);
	}
}

static void vscsi_stats_fill(const struct vscsi_target *t, struct virtio_scsi_disk_stats *out)
{
	const struct vscsi_counters *k = &t->stats;

	snprintf(out->path, sizeof(out->path), "%s", t->blk->path ? t->blk->path : "");
	out->readonly = t->disk.readonly;
	out->read_ops = atomic_load(&k->read_ops);
	out->read_bytes = atomic_load(&k->read_bytes);
	out->write_ops = atomic_load(&k->write_ops);
	out->write_bytes = atomic_load(&k->write_bytes);
	out->flush_ops = atomic_load(&k->flush_ops);
	out->errors = atomic_load(&k->errors);
}

/* ---- responses ---- */

/* 5.6.6.1 struct virtio_scsi_resp_cmd: header and sense, at the start of
 * the device-writable buffers. */
static void vscsi_resp_write(const struct iovec *in, unsigned n, uint32_t sense_size,
			     const struct scsi_cmd *c, uint8_t response, uint64_t residual)
{
	uint8_t r[VSCSI_RESP_HDR + VSCSI_MAX_CDB_SENSE] = { 0 };
	uint32_t sl = 0;

	if (response == VIRTIO_SCSI_S_OK && c->status == SCSI_STATUS_CHECK_CONDITION)
		sl = (uint32_t)scsi_sense_fixed(&c->sense, r + VSCSI_RESP_HDR, sense_size);
	le32_put(r, sl);
	le32_put(r + 4, (uint32_t)MIN(residual, (uint64_t)UINT32_MAX));
	r[10] = response == VIRTIO_SCSI_S_OK ? c->status : 0;
	r[11] = response;
	vq_iov_write(in, n, 0, r, VSCSI_RESP_HDR + sense_size);
}

/* Return a chain whose device-writable buffers (in) got len bytes: the
 * response, sense and data-in, or an event. */
static void vscsi_push(struct virtio_scsi *s, struct virtq *vq, unsigned vqi, uint16_t head,
		       const struct iovec *in, unsigned in_num, uint32_t len)
{
	vq_mark_written(vq, in, in_num, len);
	if (vq_push(vq, head, len))
		virtio_queue_interrupt(s->vdev, vqi);
}

/* ---- asynchronous requests ---- */

static void vscsi_req_complete(struct vscsi_req *r)
{
	struct virtio_scsi *s = r->s;
	int err = atomic_load(&r->err);
	uint64_t written = 0, residual = 0;

	if (r->op == SCSI_ACT_READ) {
		written = err ? 0 : r->bytes;
		residual = r->din_len - written;
		atomic_fetch_add(&r->q->bytes_read, written);
	} else if (r->op == SCSI_ACT_WRITE) {
		residual = r->dout_len - (err ? 0 : r->bytes);
		atomic_fetch_add(&r->q->bytes_written, err ? 0 : r->bytes);
	}
	if (err) {
		r->cmd.action = r->op;
		scsi_cmd_set_errno(&r->cmd, err);
	}
	atomic_fetch_add(&r->q->requests, 1);
	vscsi_count(r->t, r->cmd.opcode, !err, err ? 0 : r->bytes);
	vscsi_resp_write(r->in, r->in_num, s->sense_size, &r->cmd, VIRTIO_SCSI_S_OK, residual);
	vscsi_push(s, r->vq, r->q->vqi, r->head, r->in, r->in_num, (uint32_t)(r->rsz + written));
	vscsi_target_put(r->t);
	atomic_fetch_sub(&s->inflight, 1);
	free(r);
}

/* Block layer thread. */
static void vscsi_blk_done(struct blk_req *b, int status)
{
	struct vscsi_req *r = b->opaque;
	int zero = 0;

	if (status < 0)
		atomic_compare_exchange_strong(&r->err, &zero, status);
	if (atomic_fetch_sub(&r->pending, 1) == 1)
		vscsi_req_complete(r);
}

static struct vscsi_req *vscsi_req_alloc(unsigned nblk, unsigned niov, const struct vq_elem *e)
{
	unsigned in_num = e->in_num;
	size_t sz = sizeof(struct vscsi_req) + nblk * sizeof(struct blk_req) +
		    (in_num + niov) * sizeof(struct iovec);
	struct vscsi_req *r = calloc(1, sz);

	if (!r)
		return NULL;
	r->nblk = nblk;
	r->in_num = in_num;
	r->in = (struct iovec *)(void *)&r->blk[nblk];
	memcpy(r->in, e->iov + e->out_num, in_num * sizeof(struct iovec));
	return r;
}

static void vscsi_req_submit(struct vscsi_req *r)
{
	struct blk_dev *blk = r->t->blk;
	unsigned n = r->nblk;

	atomic_store(&r->pending, (int)n);
	atomic_fetch_add(&r->s->inflight, 1);
	for (unsigned i = 0; i < n; i++) {
		r->blk[i].done = vscsi_blk_done;
		r->blk[i].opaque = r;
	}
	/* The last completion frees r, possibly inside blk_submit: do not
	 * touch r after handing over its last block request. */
	for (unsigned i = 0; i < n; i++)
		blk_submit(blk, &r->blk[i]);
}

/* ---- one command ---- */

/* What the I/O thread knows about a popped command. */
struct vscsi_cmd_ctx {
	struct vscsi_queue *q;
	struct virtq *vq;
	const struct vq_elem *e;
	struct vscsi_target *t;
	bool nolun; /* a LUN other than the disk's: not its I/O */
	uint32_t hdr, rsz;
	uint64_t dout_len, din_len;
};

static void vscsi_finish_sync(struct vscsi_cmd_ctx *x, const struct scsi_cmd *c, uint8_t response)
{
	const struct iovec *in = x->e->iov + x->e->out_num;
	uint64_t copied = 0;

	if (response == VIRTIO_SCSI_S_OK && c->status == SCSI_STATUS_GOOD && c->data_len)
		copied = vq_iov_write(in, x->e->in_num, x->rsz, x->q->buf,
				      MIN(c->data_len, x->din_len));
	vscsi_resp_write(in, x->e->in_num, x->q->s->sense_size, c, response, x->din_len - copied);
	atomic_fetch_add(&x->q->requests, 1);
	if (x->t && !x->nolun)
		vscsi_count(x->t, c->opcode,
			    response == VIRTIO_SCSI_S_OK && c->status == SCSI_STATUS_GOOD, 0);
	vscsi_push(x->q->s, x->vq, x->q->vqi, x->e->head, in, x->e->in_num,
		   (uint32_t)(x->rsz + copied));
}

/* Fill the fields every asynchronous request has, then hand it over. */
static void vscsi_req_start(struct vscsi_req *r, struct vscsi_cmd_ctx *x, const struct scsi_cmd *c)
{
	r->s = x->q->s;
	r->q = x->q;
	r->vq = x->vq;
	r->t = x->t;
	r->head = x->e->head;
	r->rsz = x->rsz;
	r->dout_len = x->dout_len;
	r->din_len = x->din_len;
	r->cmd = *c;
	r->op = c->action;
	atomic_fetch_add(&r->t->inflight, 1);
	vscsi_req_submit(r);
}

static void vscsi_nomem(struct vscsi_cmd_ctx *x, struct scsi_cmd *c)
{
	scsi_cmd_check(c, SCSI_SENSE_HARDWARE_ERROR, SCSI_ASC_INTERNAL_TARGET_FAILURE);
	vscsi_finish_sync(x, c, VIRTIO_SCSI_S_OK);
}

/* READ/WRITE: the data part of the buffers becomes the request's iovecs. */
static void vscsi_rw(struct vscsi_cmd_ctx *x, struct scsi_cmd *c)
{
	bool read = c->action == SCSI_ACT_READ;
	uint64_t bytes = (uint64_t)c->nblocks * x->t->disk.block_size;
	const struct vq_elem *e = x->e;
	unsigned niov = read ? e->in_num : e->out_num;
	struct iovec *data;
	struct vscsi_req *r;
	int n;

	/* 5.6.6.1: a buffer smaller than the transfer is an overrun. */
	if (bytes > (read ? x->din_len : x->dout_len))
		return vscsi_finish_sync(x, c, VIRTIO_SCSI_S_OVERRUN);
	r = vscsi_req_alloc(1, niov, e);
	if (!r)
		return vscsi_nomem(x, c);
	data = r->in + r->in_num;
	if (read)
		n = vq_iov_slice(e->iov + e->out_num, e->in_num, x->rsz, bytes, data, niov);
	else
		n = vq_iov_slice(e->iov, e->out_num, x->hdr, bytes, data, niov);
	r->blk[0] = (struct blk_req){
		.op = read ? BLK_OP_READ : BLK_OP_WRITE,
		.offset = c->lba * x->t->disk.block_size,
		.iov = data,
		.iovcnt = n,
		.fua = c->fua,
	};
	r->bytes = bytes;
	vscsi_req_start(r, x, c);
}

static void vscsi_flush(struct vscsi_cmd_ctx *x, struct scsi_cmd *c)
{
	struct vscsi_req *r = vscsi_req_alloc(1, 0, x->e);

	if (!r)
		return vscsi_nomem(x, c);
	r->blk[0] = (struct blk_req){ .op = BLK_OP_FLUSH };
	vscsi_req_start(r, x, c);
}

/* UNMAP / WRITE SAME: read the parameter data, then one block request per
 * range. */
static void vscsi_dataout(struct vscsi_cmd_ctx *x, struct scsi_cmd *c)
{
	struct scsi_range ranges[SCSI_DISK_MAX_UNMAP_DESC];
	const struct scsi_disk *d = &x->t->disk;
	uint8_t *buf = x->q->buf;
	size_t len = (size_t)MIN((uint64_t)c->dataout_len, x->dout_len);
	struct vscsi_req *r;
	unsigned n;

	len = vq_iov_read(x->e->iov, x->e->out_num, x->hdr, buf, MIN(len, sizeof(x->q->buf)));
	n = scsi_disk_dataout(d, c, buf, len, ranges, ARRAY_SIZE(ranges));
	if (c->action == SCSI_ACT_DONE || n == 0) {
		c->data_len = 0;
		return vscsi_finish_sync(x, c, VIRTIO_SCSI_S_OK);
	}
	r = vscsi_req_alloc(n, 0, x->e);
	if (!r)
		return vscsi_nomem(x, c);
	for (unsigned i = 0; i < n; i++)
		r->blk[i] = (struct blk_req){
			.op = c->action == SCSI_ACT_DISCARD ? BLK_OP_DISCARD : BLK_OP_WRITE_ZEROES,
			.offset = ranges[i].lba * d->block_size,
			.len = (uint64_t)ranges[i].nblocks * d->block_size,
		};
	vscsi_req_start(r, x, c);
}

static void vscsi_exec(struct vscsi_cmd_ctx *x, const uint8_t *cdb, int lun)
{
	struct scsi_cmd c;

	if (lun != 0) {
		x->nolun = true;
		scsi_nolun_exec(cdb, x->q->s->cdb_size, x->q->buf, &c);
		return vscsi_finish_sync(x, &c, VIRTIO_SCSI_S_OK);
	}
	scsi_disk_exec(&x->t->disk, cdb, x->q->s->cdb_size, x->q->buf, &c);
	switch (c.action) {
	case SCSI_ACT_READ:
	case SCSI_ACT_WRITE: return vscsi_rw(x, &c);
	case SCSI_ACT_FLUSH: return vscsi_flush(x, &c);
	case SCSI_ACT_DATAOUT: return vscsi_dataout(x, &c);
	default: return vscsi_finish_sync(x, &c, VIRTIO_SCSI_S_OK);
	}
}

/* 5.6.6.1 struct virtio_scsi_req_cmd: header + CDB readable, response +
 * sense writable; data-out follows the header, data-in the response. */
static void vscsi_cmd(struct vscsi_queue *q, struct virtq *vq, const struct vq_elem *e)
{
	struct virtio_scsi *s = q->s;
	uint8_t req[VSCSI_REQ_HDR + VSCSI_MAX_CDB_SENSE];
	struct vscsi_cmd_ctx x = { .q = q, .vq = vq, .e = e };
	struct scsi_cmd none = { .status = SCSI_STATUS_GOOD };
	unsigned target;
	int lun;

	x.hdr = VSCSI_REQ_HDR + s->cdb_size;
	x.rsz = VSCSI_RESP_HDR + s->sense_size;
	if (e->out_len < x.hdr || e->in_len < x.rsz) {
		virtio_set_needs_reset(s->vdev, "virtio-scsi request without room for its headers");
		vscsi_push(s, vq, q->vqi, e->head, NULL, 0, 0);
		return;
	}
	x.dout_len = e->out_len - x.hdr;
	x.din_len = e->in_len - x.rsz;
	vq_iov_read(e->iov, e->out_num, 0, req, x.hdr);
	if (!vscsi_lun_parse(req, &target, &lun) || !(x.t = vscsi_target_get(s, target)))
		return vscsi_finish_sync(&x, &none, VIRTIO_SCSI_S_BAD_TARGET);
	vscsi_exec(&x, req + VSCSI_REQ_HDR, lun);
	vscsi_target_put(x.t); /* an asynchronous request took its own reference */
}

/* ---- control queue (5.6.6.2) ---- */

static bool vscsi_wait_idle(struct virtio_scsi *s, uint64_t ms)
{
	uint64_t end = clock_mono_ms() + ms;

	while (atomic_load(&s->inflight)) {
		if (clock_mono_ms() > end)
			return false;
		usleep(200);
	}
	return true;
}

static void vscsi_ctrl(struct vscsi_queue *q, struct virtq *vq, const struct vq_elem *e)
{
	struct virtio_scsi *s = q->s;
	const struct iovec *in = e->iov + e->out_num;
	uint8_t req[24] = { 0 }, resp[5] = { 0 };
	uint32_t len = 0, target_ok;
	unsigned target;
	int lun;

	vq_iov_read(e->iov, e->out_num, 0, req, sizeof(req));
	switch (le32_get(req)) {
	case VIRTIO_SCSI_T_TMF:
		/* struct virtio_scsi_ctrl_tmf: type, subtype, lun[8], id; u8 response.
		 * Requests cannot be cancelled once at the block layer, so every TMF
		 * (abort, LUN/target reset) waits for them: then the task is gone. */
		if (e->out_len < 24 || e->in_len < 1)
			break;
		target_ok = vscsi_lun_parse(req + 8, &target, &lun) &&
			    target < VIRTIO_SCSI_MAX_TARGETS;
		if (target_ok) {
			pthread_mutex_lock(&s->lock);
			target_ok = s->targets[target] != NULL;
			pthread_mutex_unlock(&s->lock);
		}
		vscsi_wait_idle(s, VSCSI_TMF_WAIT_MS);
		resp[0] = target_ok ? VIRTIO_SCSI_S_FUNCTION_COMPLETE : VIRTIO_SCSI_S_BAD_TARGET;
		len = 1;
		break;
	case VIRTIO_SCSI_T_AN_QUERY:
	case VIRTIO_SCSI_T_AN_SUBSCRIBE:
		/* No asynchronous notifications: event_actual 0, response OK. */
		if (e->out_len < 16 || e->in_len < 5)
			break;
		len = 5;
		break;
	}
	if (len)
		vq_iov_write(in, e->in_num, 0, resp, len);
	vscsi_push(s, vq, q->vqi, e->head, in, e->in_num, len);
}

/* ---- event queue (5.6.6.3), s->lock held ---- */

static void vscsi_event_locked(struct virtio_scsi *s, uint32_t event, unsigned target,
			       uint32_t reason)
{
	uint8_t ev[VSCSI_EVENT_SIZE] = { 0 };
	struct virtq *vq;
	struct vq_elem e;
	int r;

	/* A driver that is not running scans everything when it starts. */
	if (!s->running || !virtio_queue_enabled(s->vdev, VSCSI_EVENTQ))
		return;
	if (s->quiesced) {
		s->events_missed = true; /* reported at resume */
		return;
	}
	vq = virtio_queue(s->vdev, VSCSI_EVENTQ);
	r = vq_pop(vq, &e, s->ev_iov, VSCSI_QUEUE_SIZE);
	if (r < 0) {
		virtio_set_needs_reset(s->vdev, "malformed event queue buffer");
		return;
	}
	if (r == 0 || e.in_len < VSCSI_EVENT_SIZE) {
		if (r)
			vscsi_push(s, vq, VSCSI_EVENTQ, e.head, NULL, 0, 0);
		s->events_missed = true;
		return;
	}
	le32_put(ev, event | (s->events_missed ? VIRTIO_SCSI_T_EVENTS_MISSED : 0));
	ev[4] = 1; /* lun[]: as in requests, LUN 0 */
	ev[5] = (uint8_t)target;
	le32_put(ev + 12, reason);
	vq_iov_write(e.iov + e.out_num, e.in_num, 0, ev, sizeof(ev));
	vscsi_push(s, vq, VSCSI_EVENTQ, e.head, e.iov + e.out_num, e.in_num, sizeof(ev));
	s->events_missed = false;
}

/* The driver added event buffers: report what found none before. */
static void vscsi_eventq_kick(struct virtio_scsi *s)
{
	pthread_mutex_lock(&s->lock);
	if (s->events_missed)
		vscsi_event_locked(s, VIRTIO_SCSI_T_NO_EVENT, 0, 0);
	pthread_mutex_unlock(&s->lock);
}

/* ---- I/O threads ---- */

static void vscsi_serve(struct vscsi_queue *q, unsigned vqi)
{
	struct virtio_scsi *s = q->s;
	struct virtq *vq = virtio_queue(s->vdev, vqi);
	struct vq_elem e;
	int r;

	if (!virtio_queue_enabled(s->vdev, vqi))
		return;
	if (vqi == VSCSI_EVENTQ)
		return vscsi_eventq_kick(s);
	/* One submission to the kernel per batch of requests (blk_plug). */
	blk_plug();
	do {
		vq_notify_off(vq);
		while ((r = vq_pop(vq, &e, q->iov, VSCSI_QUEUE_SIZE)) > 0) {
			if (vqi == VSCSI_CTRLQ)
				vscsi_ctrl(q, vq, &e);
			else
				vscsi_cmd(q, vq, &e);
		}
		if (r < 0) {
			virtio_set_needs_reset(s->vdev, "malformed descriptor chain");
			break;
		}
	} while (vq_notify_on(vq));
	blk_unplug();
}

static void *vscsi_io_thread(void *arg)
{
	struct vscsi_queue *q = arg;
	struct virtio_scsi *s = q->s;
	struct pollfd pfd[4];
	unsigned vqis[4], n = 0;
	eventfd_t v;

	pfd[n++] = (struct pollfd){ .fd = s->stop_fd, .events = POLLIN };
	vqis[n] = q->vqi;
	pfd[n++] = (struct pollfd){ .fd = virtio_queue_kick_fd(s->vdev, q->vqi), .events = POLLIN };
	if (q == &s->q[0]) {
		vqis[n] = VSCSI_CTRLQ;
		pfd[n++] = (struct pollfd){ .fd = virtio_queue_kick_fd(s->vdev, VSCSI_CTRLQ),
					    .events = POLLIN };
		vqis[n] = VSCSI_EVENTQ;
		pfd[n++] = (struct pollfd){ .fd = virtio_queue_kick_fd(s->vdev, VSCSI_EVENTQ),
					    .events = POLLIN };
	}
	/* Kicks before DRIVER_OK are in the fds already; serve once anyway. */
	for (unsigned i = 1; i < n; i++)
		vscsi_serve(q, vqis[i]);
	for (;;) {
		if (poll(pfd, n, -1) < 0)
			continue; /* EINTR: every signal is blocked here, but be safe */
		if (pfd[0].revents)
			break;
		for (unsigned i = 1; i < n; i++) {
			if (!(pfd[i].revents & POLLIN) || eventfd_read(pfd[i].fd, &v) < 0)
				continue;
			atomic_fetch_add(&q->kicks, v);
			vscsi_serve(q, vqis[i]);
		}
	}
	return NULL;
}

/* ---- transport callbacks ---- */

static uint64_t vscsi_cfg_read(void *opaque, unsigned off, unsigned size)
{
	struct virtio_scsi *s = opaque;
	uint8_t cfg[VSCSI_CFG_SIZE] = { 0 };
	uint64_t v = 0;

	le32_put(cfg + VSCSI_CFG_NUM_QUEUES, s->nreq);
	le32_put(cfg + VSCSI_CFG_SEG_MAX, VSCSI_QUEUE_SIZE - 2); /* + request and response */
	le32_put(cfg + VSCSI_CFG_MAX_SECTORS, SCSI_DISK_MAX_XFER_BLOCKS);
	le32_put(cfg + VSCSI_CFG_CMD_PER_LUN, VSCSI_QUEUE_SIZE);
	le32_put(cfg + VSCSI_CFG_EVENT_INFO_SIZE, VSCSI_EVENT_SIZE);
	le32_put(cfg + VSCSI_CFG_SENSE_SIZE, s->cfg_sense_size);
	le32_put(cfg + VSCSI_CFG_CDB_SIZE, s->cfg_cdb_size);
	cfg[VSCSI_CFG_MAX_TARGET] = VIRTIO_SCSI_MAX_TARGETS - 1; /* max_channel 0, max_lun 0 */
	for (unsigned i = 0; i < size && off + i < sizeof(cfg); i++)
		v |= (uint64_t)cfg[off + i] << (8 * i);
	return v;
}

/* 5.6.4: sense_size and cdb_size are the driver's; everything else is
 * read-only. Values are kept within what the request buffers can hold. */
static void vscsi_cfg_write(void *opaque, unsigned off, unsigned size, uint64_t val)
{
	struct virtio_scsi *s = opaque;
	uint32_t v = (uint32_t)val;

	if (size != 4 || v == 0 || v > VSCSI_MAX_CDB_SENSE)
		return;
	if (off == VSCSI_CFG_SENSE_SIZE)
		s->cfg_sense_size = v;
	else if (off == VSCSI_CFG_CDB_SIZE)
		s->cfg_cdb_size = v;
}

static void vscsi_threads_stop(struct virtio_scsi *s);

/* One I/O thread per request queue ("vscsi-q0"..., sandbox kind io). */
static int vscsi_threads_start(struct virtio_scsi *s)
{
	for (unsigned i = 0; i < s->nreq; i++) {
		char name[32];

		snprintf(name, sizeof(name), "vscsi-q%u", i);
		if (sandbox_thread_start(&s->q[i].thread, SANDBOX_IO, name, vscsi_io_thread,
					 &s->q[i])) {
			vscsi_threads_stop(s);
			return -EAGAIN;
		}
		s->q[i].thread_running = true;
	}
	return 0;
}

/* Join the I/O threads; the block layer finishes what it has. Afterwards
 * nothing of the device touches RAM and every request it popped has been
 * pushed back to its used ring (5.6.6: each request gets its response). */
static void vscsi_threads_stop(struct virtio_scsi *s)
{
	eventfd_t v;

	eventfd_write(s->stop_fd, 1);
	for (unsigned i = 0; i < s->nreq; i++) {
		if (s->q[i].thread_running)
			pthread_join(s->q[i].thread, NULL);
		s->q[i].thread_running = false;
	}
	while (atomic_load(&s->inflight))
		usleep(100);
	while (eventfd_read(s->stop_fd, &v) == 0)
		;
}

static void vscsi_stop(void *opaque);

static int vscsi_start(void *opaque, uint64_t features)
{
	struct virtio_scsi *s = opaque;

	s->cdb_size = s->cfg_cdb_size;
	s->sense_size = s->cfg_sense_size;
	pthread_mutex_lock(&s->lock);
	s->running = true;
	s->quiesced = false;
	if (!s->ever_started) {
		s->ever_started = true;
		clock_gettime(CLOCK_MONOTONIC, &s->started_at);
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	if (vscsi_threads_start(s)) {
		vscsi_stop(s);
		return -EAGAIN;
	}
	return 0;
}

static void vscsi_stop(void *opaque)
{
	struct virtio_scsi *s = opaque;

	pthread_mutex_lock(&s->lock);
	s->running = false;
	s->quiesced = false;
	s->events_missed = false;
	pthread_mutex_unlock(&s->lock);
	vscsi_threads_stop(s);
}

/* Hot-plug events while quiesced only set events_missed (the event queue
 * is not touched); resume reports them with the first event buffer. */
static void vscsi_quiesce(void *opaque)
{
	struct virtio_scsi *s = opaque;

	pthread_mutex_lock(&s->lock);
	s->quiesced = true;
	pthread_mutex_unlock(&s->lock);
	vscsi_threads_stop(s);
}

static int vscsi_resume(void *opaque)
{
	struct virtio_scsi *s = opaque;

	pthread_mutex_lock(&s->lock);
	s->quiesced = false;
	pthread_mutex_unlock(&s->lock);
	if (vscsi_threads_start(s))
		return -EAGAIN;
	vscsi_eventq_kick(s);
	return 0;
}

/* ---- state ----
 * Section {VSCS, 1}: the driver's cdb_size and sense_size (as written and
 * in use), the flags (running, started once, events missed), then which
 * targets hold a disk and each disk's geometry: the disks themselves are
 * the machine's (opened from its configuration), so a load only checks
 * they are the same and refuses otherwise. No per-target sense or unit
 * attention is kept by this model (scsi_disk.c answers every command from
 * the disk's geometry alone). */
#define VSCSI_STATE_ID	       0x56534353 /* "VSCS" */
#define VSCSI_STATE_VERSION    1
#define VSCSI_SF_RUNNING       1
#define VSCSI_SF_EVER_STARTED  2
#define VSCSI_SF_EVENTS_MISSED 4

struct vscsi_saved {
	uint32_t cfg_cdb_size, cfg_sense_size, cdb_size, sense_size;
	uint8_t flags;
};

static int vscsi_save(void *opaque, struct state_buf *out)
{
	struct virtio_scsi *s = opaque;
	size_t mark = state_section_begin(out, VSCSI_STATE_ID, VSCSI_STATE_VERSION);
	uint16_t present = 0;

	state_put_u32(out, s->cfg_cdb_size);
	state_put_u32(out, s->cfg_sense_size);
	state_put_u32(out, s->cdb_size);
	state_put_u32(out, s->sense_size);
	pthread_mutex_lock(&s->lock);
	state_put_u8(out, (s->running ? VSCSI_SF_RUNNING : 0) |
				  (s->ever_started ? VSCSI_SF_EVER_STARTED : 0) |
				  (s->events_missed ? VSCSI_SF_EVENTS_MISSED : 0));
	for (unsigned i = 0; i < VIRTIO_SCSI_MAX_TARGETS; i++)
		present |= (uint16_t)((s->targets[i] != NULL) << i);
	state_put_u16(out, present);
	for (unsigned i = 0; i < VIRTIO_SCSI_MAX_TARGETS; i++) {
		const struct scsi_disk *d = s->targets[i] ? &s->targets[i]->disk : NULL;

		if (!d)
			continue;
		state_put_u64(out, d->nblocks);
		state_put_u32(out, d->block_size);
		state_put_u8(out, d->readonly);
	}
	pthread_mutex_unlock(&s->lock);
	state_section_end(out, mark);
	return out->error ? -ENOMEM : 0;
}

static bool vscsi_size_ok(uint32_t v)
{
	return v >= 1 && v <= VSCSI_MAX_CDB_SENSE;
}

/* The saved disks must be the ones this controller holds. s->lock held. */
static bool vscsi_targets_match(struct virtio_scsi *s, struct state_buf *in)
{
	uint16_t present = state_get_u16(in);
	bool ok = !in->error;

	for (unsigned i = 0; i < VIRTIO_SCSI_MAX_TARGETS && ok; i++) {
		const struct vscsi_target *t = s->targets[i];
		uint64_t nblocks;
		uint32_t bs;
		uint8_t ro;

		if (!(present & (1u << i))) {
			ok = !t;
			continue;
		}
		nblocks = state_get_u64(in);
		bs = state_get_u32(in);
		ro = state_get_u8(in);
		ok = t && !in->error && nblocks == t->disk.nblocks && bs == t->disk.block_size &&
		     ro == t->disk.readonly;
	}
	return ok;
}

static int vscsi_load(void *opaque, struct state_buf *in, uint64_t features, bool started)
{
	struct virtio_scsi *s = opaque;
	struct vscsi_saved v;
	bool running;
	size_t end;

	if (state_section_open(in, VSCSI_STATE_ID, VSCSI_STATE_VERSION) < 0)
		return -EINVAL;
	end = state_section_body_end(in);
	v.cfg_cdb_size = state_get_u32(in);
	v.cfg_sense_size = state_get_u32(in);
	v.cdb_size = state_get_u32(in);
	v.sense_size = state_get_u32(in);
	v.flags = state_get_u8(in);
	running = v.flags & VSCSI_SF_RUNNING;
	if (in->error || !vscsi_size_ok(v.cfg_cdb_size) || !vscsi_size_ok(v.cfg_sense_size) ||
	    !vscsi_size_ok(v.cdb_size) || !vscsi_size_ok(v.sense_size) ||
	    v.flags & ~(VSCSI_SF_RUNNING | VSCSI_SF_EVER_STARTED | VSCSI_SF_EVENTS_MISSED) ||
	    running != started || (running && !(v.flags & VSCSI_SF_EVER_STARTED)))
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (!vscsi_targets_match(s, in) || !state_section_done(in, end)) {
		pthread_mutex_unlock(&s->lock);
		return -EINVAL;
	}
	s->cfg_cdb_size = v.cfg_cdb_size;
	s->cfg_sense_size = v.cfg_sense_size;
	s->cdb_size = v.cdb_size;
	s->sense_size = v.sense_size;
	s->running = running;
	s->quiesced = running; /* the transport resumes it */
	s->events_missed = v.flags & VSCSI_SF_EVENTS_MISSED;
	/* The test-hook timers count from this controller's first start. */
	if ((v.flags & VSCSI_SF_EVER_STARTED) && !s->ever_started) {
		clock_gettime(CLOCK_MONOTONIC, &s->started_at);
		pthread_cond_broadcast(&s->cond);
	}
	s->ever_started = v.flags & VSCSI_SF_EVER_STARTED;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* ---- hot-plug ---- */

static int vscsi_attach(struct virtio_scsi *s, unsigned target, struct blk_dev *blk, char *err,
			size_t errlen)
{
	struct vscsi_target *t;

	if (target >= VIRTIO_SCSI_MAX_TARGETS) {
		snprintf(err, errlen, "virtio-scsi: target %u out of range (0 to %u)", target,
			 VIRTIO_SCSI_MAX_TARGETS - 1);
		return -EINVAL;
	}
	t = vscsi_target_new(target, blk);
	if (!t) {
		snprintf(err, errlen, "virtio-scsi: out of memory");
		return -ENOMEM;
	}
	pthread_mutex_lock(&s->lock);
	if (s->targets[target]) {
		pthread_mutex_unlock(&s->lock);
		free(t);
		snprintf(err, errlen, "virtio-scsi: target %u is in use", target);
		return -EEXIST;
	}
	s->targets[target] = t;
	vscsi_event_locked(s, VIRTIO_SCSI_T_TRANSPORT_RESET, target, VIRTIO_SCSI_EVT_RESET_RESCAN);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Take the target off the bus: new requests get BAD_TARGET, the driver is
 * told. The disk stays open for the requests holding it. */
static int vscsi_detach(struct virtio_scsi *s, unsigned target, struct vscsi_target **out,
			char *err, size_t errlen)
{
	struct vscsi_target *t = NULL;

	pthread_mutex_lock(&s->lock);
	if (target < VIRTIO_SCSI_MAX_TARGETS) {
		t = s->targets[target];
		s->targets[target] = NULL;
	}
	if (t)
		vscsi_event_locked(s, VIRTIO_SCSI_T_TRANSPORT_RESET, target,
				   VIRTIO_SCSI_EVT_RESET_REMOVED);
	pthread_mutex_unlock(&s->lock);
	if (!t) {
		snprintf(err, errlen, "virtio-scsi: no disk at target %u", target);
		return -ENOENT;
	}
	*out = t;
	return 0;
}

/* Requests already holding a detached target finish on its disk; then it
 * is closed. Touches only t, so the controller may be gone by now. */
void virtio_scsi_target_close(struct vscsi_target *t)
{
	if (!t)
		return;
	while (atomic_load(&t->inflight))
		usleep(100);
	blk_close(t->blk);
	free(t);
}

static struct virtio_scsi *vscsi_of(struct device *dev, char *err, size_t errlen)
{
	struct virtio_scsi *s = virtio_device_model(dev, VIRTIO_ID_SCSI);

	if (!s)
		snprintf(err, errlen, "not a virtio-scsi controller");
	return s;
}

int virtio_scsi_attach_disk(struct device *dev, unsigned target, struct blk_dev *blk, char *err,
			    size_t errlen)
{
	struct virtio_scsi *s = vscsi_of(dev, err, errlen);

	return s ? vscsi_attach(s, target, blk, err, errlen) : -ENODEV;
}

int virtio_scsi_hotplug(struct device *dev, unsigned target, const struct blk_opts *o, char *err,
			size_t errlen)
{
	struct virtio_scsi *s = vscsi_of(dev, err, errlen);
	struct blk_dev *blk;
	int ret;

	if (!s)
		return -ENODEV;
	if (target >= VIRTIO_SCSI_MAX_TARGETS) {
		snprintf(err, errlen, "virtio-scsi: target %u out of range (0 to %u)", target,
			 VIRTIO_SCSI_MAX_TARGETS - 1);
		return -EINVAL;
	}
	ret = blk_open(&blk, o, err, errlen);
	if (ret)
		return ret;
	ret = virtio_scsi_attach_disk(dev, target, blk, err, errlen);
	if (ret)
		blk_close(blk);
	return ret;
}

int virtio_scsi_detach(struct device *dev, unsigned target, struct vscsi_target **out, char *err,
		       size_t errlen)
{
	struct virtio_scsi *s = vscsi_of(dev, err, errlen);

	return s ? vscsi_detach(s, target, out, err, errlen) : -ENODEV;
}

int virtio_scsi_unplug(struct device *dev, unsigned target, char *err, size_t errlen)
{
	struct vscsi_target *t;
	int ret = virtio_scsi_detach(dev, target, &t, err, errlen);

	if (ret == 0)
		virtio_scsi_target_close(t);
	return ret;
}

int virtio_scsi_get_disk_stats(struct device *dev, unsigned target,
			       struct virtio_scsi_disk_stats *out)
{
	struct virtio_scsi *s = virtio_device_model(dev, VIRTIO_ID_SCSI);
	struct vscsi_target *t = NULL;

	if (!s)
		return -ENODEV;
	/* vscsi_detach frees a target only after taking it out of targets[]
	 * under s->lock: while we hold it, t stays. */
	pthread_mutex_lock(&s->lock);
	if (target < VIRTIO_SCSI_MAX_TARGETS)
		t = s->targets[target];
	if (t)
		vscsi_stats_fill(t, out);
	pthread_mutex_unlock(&s->lock);
	return t ? 0 : -ENOENT;
}

struct blk_dev *virtio_scsi_disk_blk(struct device *dev, unsigned target)
{
	struct virtio_scsi *s = virtio_device_model(dev, VIRTIO_ID_SCSI);
	struct blk_dev *blk = NULL;

	if (!s || target >= VIRTIO_SCSI_MAX_TARGETS)
		return NULL;
	pthread_mutex_lock(&s->lock);
	if (s->targets[target])
		blk = s->targets[target]->blk;
	pthread_mutex_unlock(&s->lock);
	return blk;
}

int virtio_scsi_replace_disk(struct device *dev, unsigned target, struct blk_dev *blk,
			     struct blk_dev **old)
{
	struct virtio_scsi *s = virtio_device_model(dev, VIRTIO_ID_SCSI);
	struct vscsi_target *t;
	int ret = 0;

	if (!s || target >= VIRTIO_SCSI_MAX_TARGETS)
		return -ENODEV;
	pthread_mutex_lock(&s->lock);
	t = s->targets[target];
	if (!t)
		ret = -ENOENT;
	else if (s->running && !s->quiesced)
		ret = -EBUSY;
	else if (blk->size / t->disk.block_size != t->disk.nblocks ||
		 blk->size % t->disk.block_size ||
		 (blk->readonly || blk->opts.readonly) != t->disk.readonly)
		ret = -EINVAL;
	if (!ret) {
		/* The guest's view (geometry, serial, NAA id) stays: only the
		 * image under it changes. */
		*old = t->blk;
		t->blk = blk;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* ---- timed hot-plug (test hook): ms after the first DRIVER_OK ---- */

static struct vscsi_timer *vscsi_next_timer(struct virtio_scsi *s)
{
	struct vscsi_timer *best = NULL;

	for (unsigned i = 0; i < s->ntimers; i++)
		if (!s->timers[i].done && (!best || s->timers[i].at_ms < best->at_ms))
			best = &s->timers[i];
	return best;
}

static void vscsi_timer_fire(struct virtio_scsi *s, struct vscsi_timer *tm)
{
	char err[256] = "";
	int ret;

	if (tm->add) {
		ret = vscsi_attach(s, tm->target, tm->blk, err, sizeof(err));
		if (ret == 0)
			tm->blk = NULL;
	} else {
		struct vscsi_target *t;

		ret = vscsi_detach(s, tm->target, &t, err, sizeof(err));
		if (ret == 0)
			virtio_scsi_target_close(t);
	}
	if (ret)
		kwarn("%s", err);
	else
		kinfo("virtio-scsi: target %u hot-%s", tm->target, tm->add ? "added" : "removed");
}

static void *vscsi_timer_thread(void *arg)
{
	struct virtio_scsi *s = arg;
	struct vscsi_timer *tm;
	struct timespec at;

	pthread_mutex_lock(&s->lock);
	while (!s->dying) {
		tm = s->ever_started ? vscsi_next_timer(s) : NULL;
		if (!tm) {
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		at = s->started_at;
		at.tv_sec += (time_t)(tm->at_ms / 1000);
		at.tv_nsec += (long)(tm->at_ms % 1000) * 1000000L;
		if (at.tv_nsec >= 1000000000L) {
			at.tv_sec++;
			at.tv_nsec -= 1000000000L;
		}
		if (pthread_cond_timedwait(&s->cond, &s->lock, &at) != ETIMEDOUT)
			continue;
		tm->done = true;
		pthread_mutex_unlock(&s->lock);
		vscsi_timer_fire(s, tm);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- lifetime ---- */

/* Disks hot-removed before the end are not listed: their counters went
 * with them. */
static void vscsi_print_disk_stats(struct virtio_scsi *s)
{
	struct virtio_scsi_disk_stats st;

	for (unsigned i = 0; i < VIRTIO_SCSI_MAX_TARGETS; i++) {
		if (!s->targets[i])
			continue;
		vscsi_stats_fill(s->targets[i], &st);
		fprintf(stderr,
			"kestrel: stats: virtio-scsi target%u path=%s read_ops=%llu "
			"read_bytes=%llu write_ops=%llu write_bytes=%llu flush_ops=%llu "
			"errors=%llu\n",
			i, st.path, (unsigned long long)st.read_ops,
			(unsigned long long)st.read_bytes, (unsigned long long)st.write_ops,
			(unsigned long long)st.write_bytes, (unsigned long long)st.flush_ops,
			(unsigned long long)st.errors);
	}
}

static void vscsi_print_stats(struct virtio_scsi *s)
{
	const char *name = "virtio-scsi";

	for (unsigned i = 0; i < s->nreq; i++) {
		struct vscsi_queue *q = &s->q[i];

		fprintf(stderr,
			"kestrel: stats: %s rq%u requests=%llu read_bytes=%llu "
			"write_bytes=%llu kicks=%llu\n",
			name, i, (unsigned long long)atomic_load(&q->requests),
			(unsigned long long)atomic_load(&q->bytes_read),
			(unsigned long long)atomic_load(&q->bytes_written),
			(unsigned long long)atomic_load(&q->kicks));
	}
	vscsi_print_disk_stats(s);
}

static void vscsi_destroy(void *opaque)
{
	struct virtio_scsi *s = opaque;

	pthread_mutex_lock(&s->lock);
	s->dying = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (s->timer_running)
		pthread_join(s->timer_thread, NULL);
	if (s->stats)
		vscsi_print_stats(s);
	for (unsigned i = 0; i < VIRTIO_SCSI_MAX_TARGETS; i++) {
		if (!s->targets[i])
			continue;
		blk_close(s->targets[i]->blk);
		free(s->targets[i]);
	}
	for (unsigned i = 0; i < s->ntimers; i++)
		if (s->timers[i].blk)
			blk_close(s->timers[i].blk);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

static void vscsi_bind(void *opaque, struct virtio_dev *vdev)
{
	((struct virtio_scsi *)opaque)->vdev = vdev;
}

static const struct virtio_dev_ops vscsi_ops = {
	.bind = vscsi_bind,
	.cfg_read = vscsi_cfg_read,
	.cfg_write = vscsi_cfg_write,
	.start = vscsi_start,
	.stop = vscsi_stop,
	.destroy = vscsi_destroy,
	.quiesce = vscsi_quiesce,
	.resume = vscsi_resume,
	.save = vscsi_save,
	.load = vscsi_load,
};

static struct virtio_scsi *vscsi_alloc(unsigned nqueues, bool stats)
{
	struct virtio_scsi *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;

	if (!s)
		return NULL;
	s->nreq = MAX(1u, MIN(nqueues, (unsigned)VIRTIO_SCSI_MAX_REQUEST_QUEUES));
	s->stats = stats;
	s->cfg_cdb_size = s->cdb_size = VSCSI_CDB_SIZE;
	s->cfg_sense_size = s->sense_size = VSCSI_SENSE_SIZE;
	for (unsigned i = 0; i < s->nreq; i++) {
		s->q[i].s = s;
		s->q[i].vqi = VSCSI_REQQ + i;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0) {
		vscsi_destroy(s);
		return NULL;
	}
	return s;
}

/* One configured disk: attached now, or held for its add_after timer. The
 * controller owns d->blk whatever happens. */
static int vscsi_add_disk(struct virtio_scsi *s, const struct virtio_scsi_disk *d, char *err,
			  size_t errlen)
{
	int ret;

	if (d->target >= VIRTIO_SCSI_MAX_TARGETS) {
		snprintf(err, errlen, "--disk %s: target %u out of range (0 to %u)", d->blk->path,
			 d->target, VIRTIO_SCSI_MAX_TARGETS - 1);
		blk_close(d->blk);
		return -EINVAL;
	}
	if (d->add_after_ms) {
		s->timers[s->ntimers++] =
			(struct vscsi_timer){ d->target, d->add_after_ms, true, false, d->blk };
	} else {
		ret = vscsi_attach(s, d->target, d->blk, err, errlen);
		if (ret) {
			blk_close(d->blk);
			return ret;
		}
	}
	if (d->remove_after_ms)
		s->timers[s->ntimers++] =
			(struct vscsi_timer){ d->target, d->remove_after_ms, false, false, NULL };
	return 0;
}

static void vscsi_close_disks(const struct virtio_scsi_disk *disks, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		blk_close(disks[i].blk);
}

int virtio_scsi_new(unsigned nqueues, const struct virtio_scsi_disk *disks, unsigned ndisks,
		    bool stats, struct virtio_model *out, char *err, size_t errlen)
{
	struct virtio_scsi *s;
	int ret = 0;

	if (ndisks > VIRTIO_SCSI_MAX_TARGETS) {
		snprintf(err, errlen, "--disk: at most %u disks on the SCSI controller",
			 VIRTIO_SCSI_MAX_TARGETS);
		vscsi_close_disks(disks, ndisks);
		return -EINVAL;
	}
	s = vscsi_alloc(nqueues, stats);
	if (!s) {
		snprintf(err, errlen, "virtio-scsi: out of memory");
		vscsi_close_disks(disks, ndisks);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < ndisks; i++) {
		if (ret)
			blk_close(disks[i].blk); /* after a failure: still ours to close */
		else
			ret = vscsi_add_disk(s, &disks[i], err, errlen);
	}
	/* The timer hot-plugs (it opens disks): a control thread. */
	if (!ret && s->ntimers &&
	    sandbox_thread_start(&s->timer_thread, SANDBOX_CONTROL, "vscsi-timer",
				 vscsi_timer_thread, s) == 0)
		s->timer_running = true;
	if (ret) {
		vscsi_destroy(s);
		return ret;
	}
	*out = (struct virtio_model){
		.info = {
			.name = "virtio-scsi",
			.device_id = VIRTIO_ID_SCSI,
			.class_code = 0x010000,             /* mass storage, SCSI */
			.features = VIRTIO_BIT(VIRTIO_SCSI_F_HOTPLUG),
			.num_queues = VSCSI_REQQ + s->nreq,
			.queue_size = VSCSI_QUEUE_SIZE,
			.cfg_size = VSCSI_CFG_SIZE,
		},
		.ops = &vscsi_ops,
		.opaque = s,
	};
	return 0;
}
