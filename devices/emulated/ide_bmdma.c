/* The channel's half of an SFF-8038i bus-master IDE controller (as in the
 * Intel 82371SB PIIX3): the Command, Status and Descriptor Table Pointer
 * registers, the walk of the Physical Region Descriptor table, and the DMA
 * itself. Guest memory is reached only through the ide_dma_ops
 * the PCI function supplies.
 *
 * A PRD entry is 8 bytes: the region's physical address (bit 0 zero), its
 * byte count in bits 15:0 (bit 0 zero; 0 means 64 KiB) and End Of Table in
 * bit 31. The table is dword aligned and may not cross a 64 KiB boundary, so
 * it holds at most 8192 entries: a table without EOT (a "loop") ends there.
 * What a hostile table gets — no EOT within that span, an odd address or
 * count, a region outside RAM, fewer bytes than the command moves — is the
 * Error bit in the bus-master status, ABRT in the device's error register
 * and an interrupt; nothing else happens. Both transfer orders guests use
 * work: the command before the Start bit (Linux, SeaBIOS) or after.
 *
 * A disk DMA goes to the block layer as chunks of at most BLK_MAX_IOV
 * segments, each a whole number of sectors, straight into or out of guest
 * RAM; the vCPU that sets Start returns at once and the completion, on a
 * block-layer thread, raises the interrupt. An ATAPI answer (from the
 * channel's buffer) is copied at once. */
#include <errno.h>
#include <string.h>

#include "emu.h"
#include "ide_priv.h"

#define PRD_EOT	    0x80000000u
#define PRD_SPAN    0x10000u /* the table may not cross 64 KiB */
#define PRD_MAX_LEN 0x10000u

/* ---- the PRD table -------------------------------------------------------- */

struct prd {
	uint32_t addr, len;
	bool eot;
};

static int prd_read(const struct ide_bm *bm, uint32_t table, uint32_t index, struct prd *e)
{
	uint8_t raw[8];
	uint32_t cnt;

	/* (table & 0xffff) + 8 * (index + 1) must stay inside the 64 KiB block. */
	if (index >= PRD_SPAN / 8 || (table & (PRD_SPAN - 1)) + 8ull * (index + 1) > PRD_SPAN)
		return -EINVAL;
	if (!bm->ops || bm->ops->read(bm->opaque, (uint64_t)table + 8ull * index, raw, 8) < 0)
		return -EFAULT;
	e->addr = (uint32_t)raw[0] | (uint32_t)raw[1] << 8 | (uint32_t)raw[2] << 16 |
		  (uint32_t)raw[3] << 24;
	cnt = (uint32_t)raw[4] | (uint32_t)raw[5] << 8 | (uint32_t)raw[6] << 16 |
	      (uint32_t)raw[7] << 24;
	e->eot = cnt & PRD_EOT;
	e->len = (cnt & 0xffff) ? (cnt & 0xffff) : PRD_MAX_LEN;
	return (e->addr | e->len) & 1 ? -EINVAL : 0;
}

/* Drop bytes from the end of sg until it holds a multiple of align; the
 * cursor goes back to where the first dropped byte came from. */
static void prd_trim(struct ide_sg *sg, struct ide_prd_cursor *cur, unsigned align)
{
	uint64_t drop = sg->bytes % align;

	while (drop && sg->n) {
		struct iovec *v = &sg->iov[sg->n - 1];

		if (v->iov_len > drop) {
			v->iov_len -= drop;
			sg->bytes -= drop;
			drop = 0;
			break;
		}
		drop -= v->iov_len;
		sg->bytes -= v->iov_len;
		sg->n--;
	}
	if (sg->n) {
		*cur = sg->at[sg->n - 1];
		cur->off += (uint32_t)sg->iov[sg->n - 1].iov_len;
	}
}

int ide_prd_map(const struct ide_bm *bm, uint32_t table, struct ide_prd_cursor *cur, uint64_t want,
		bool device_writes, bool map, unsigned align, struct ide_sg *sg)
{
	struct ide_prd_cursor start = *cur;

	sg->n = 0;
	sg->bytes = 0;
	while (sg->bytes < want && sg->n < sg->max) {
		struct prd e;
		uint64_t take, gpa;
		void *p = NULL;
		int r = prd_read(bm, table, cur->index, &e);

		if (r < 0)
			return r;
		if (cur->off >= e.len) {
			if (e.eot)
				return -ENOSPC; /* the table is shorter than the transfer */
			cur->index++;
			cur->off = 0;
			continue;
		}
		take = MIN(e.len - cur->off, want - sg->bytes);
		gpa = (uint64_t)e.addr + cur->off;
		if (map && !(p = bm->ops->map(bm->opaque, gpa, take, device_writes)))
			return -EFAULT;
		sg->iov[sg->n] = (struct iovec){ .iov_base = p, .iov_len = take };
		sg->gpa[sg->n] = gpa;
		sg->at[sg->n] = *cur;
		sg->n++;
		sg->bytes += take;
		cur->off += (uint32_t)take;
		if (cur->off == e.len && !e.eot) {
			cur->index++;
			cur->off = 0;
		}
	}
	if (sg->bytes % align)
		prd_trim(sg, cur, align);
	if (!sg->bytes) {
		*cur = start;
		return -EINVAL;
	}
	return 0;
}

bool ide_prd_exhausted(const struct ide_bm *bm, uint32_t table, const struct ide_prd_cursor *cur)
{
	struct prd e;

	return prd_read(bm, table, cur->index, &e) == 0 && e.eot && cur->off >= e.len;
}

/* ---- the DMA -------------------------------------------------------------- */

void ide_dma_mark_dirty(struct ide_channel *ch)
{
	const struct ide_sg *sg = &ch->io.sg;

	if (!ch->bm.ops || !ch->bm.ops->mark_dirty)
		return;
	for (int i = 0; i < sg->n; i++)
		ch->bm.ops->mark_dirty(ch->bm.opaque, sg->gpa[i], sg->iov[i].iov_len);
}

/* Map the next chunk of a disk DMA into ch->io. */
static int ide_dma_prepare(struct ide_channel *ch)
{
	struct ide_dma *dma = &ch->dma;
	struct ide_io *io = &ch->io;
	int r = ide_prd_map(&ch->bm, dma->table, &dma->cur, dma->left, dma->to_guest, true,
			    IDE_SECTOR, &io->sg);

	if (r < 0) {
		dma->bm_failed = true;
		return -EFAULT;
	}
	io->req = (struct blk_req){
		.op = dma->to_guest ? BLK_OP_READ : BLK_OP_WRITE,
		.offset = dma->off,
		.iov = io->sg.iov,
		.iovcnt = io->sg.n,
		.fua = dma->fua && !dma->to_guest,
		.done = ide_io_done,
		.opaque = ch,
	};
	io->busy = true;
	io->dma = true;
	io->unit = dma->unit;
	return 0;
}

bool ide_dma_chunk_done(struct ide_channel *ch, int *status)
{
	struct ide_dma *dma = &ch->dma;

	if (*status)
		return false;
	if (dma->to_guest)
		ide_dma_mark_dirty(ch);
	dma->off += ch->io.sg.bytes;
	dma->left -= ch->io.sg.bytes;
	if (!dma->left)
		return false;
	*status = ide_dma_prepare(ch);
	return *status == 0;
}

/* An ATAPI answer: buf[off, off+left) to or from guest memory, now. */
static int ide_dma_buf(struct ide_channel *ch)
{
	struct ide_dma *dma = &ch->dma;
	struct ide_sg *sg = &ch->io.sg;
	const struct ide_dma_ops *ops = ch->bm.ops;

	while (dma->left) {
		int r = ide_prd_map(&ch->bm, dma->table, &dma->cur, dma->left, dma->to_guest, false,
				    1, sg);

		for (int i = 0; r == 0 && i < sg->n; i++) {
			uint8_t *p = ch->buf + dma->off;

			r = dma->to_guest
				    ? ops->write(ch->bm.opaque, sg->gpa[i], p, sg->iov[i].iov_len)
				    : ops->read(ch->bm.opaque, sg->gpa[i], p, sg->iov[i].iov_len);
			dma->off += sg->iov[i].iov_len;
			dma->left -= sg->iov[i].iov_len;
		}
		if (r < 0) {
			dma->bm_failed = true;
			return -EFAULT;
		}
	}
	return 0;
}

void ide_dma_finish(struct ide_channel *ch, int status)
{
	struct ide_dma *dma = &ch->dma;
	struct ide_drive *d = &ch->drive[dma->unit];

	if (dma->bm_failed) {
		/* The bus master failed, not the disk: it stops (Active clear),
		 * says Error, and the command ends in ABRT. */
		ide_warn_once(ch, IDE_WARN_PRD,
			      "bus-master DMA refused (PRD table outside RAM, "
			      "odd, without end or shorter than the transfer)");
		ch->bm.status = (uint8_t)((ch->bm.status | BM_ST_ERROR) & ~BM_ST_ACTIVE);
		status = -EFAULT;
	} else if (!status && ide_prd_exhausted(&ch->bm, dma->table, &dma->cur)) {
		/* The table ended with the transfer: Active clears (SFF-8038i,
		 * Bus Master IDE Status: Interrupt 1, Active 0 is the normal
		 * end). A longer table leaves Active set, also a good end. */
		ch->bm.status &= (uint8_t)~BM_ST_ACTIVE;
	}
	dma->pending = dma->running = false;
	d->ops->io_done(ch, d, status);
}

/* Start moving if the drive asked and the guest set Start. */
void ide_dma_kick(struct ide_channel *ch)
{
	struct ide_dma *dma = &ch->dma;
	int r;

	if (!dma->pending || dma->running || !(ch->bm.cmd & BM_CMD_START))
		return;
	dma->running = true;
	dma->table = ch->bm.prd;
	dma->cur = (struct ide_prd_cursor){ 0, 0 };
	/* Without guest memory, or with the engine set to move data the other
	 * way than the command does, nothing may move. */
	if (!ch->bm.ops || dma->to_guest != !!(ch->bm.cmd & BM_CMD_WRITE)) {
		dma->bm_failed = true;
		ide_dma_finish(ch, -EFAULT);
		return;
	}
	if (dma->from_buf) {
		ide_dma_finish(ch, ide_dma_buf(ch));
		return;
	}
	r = ide_dma_prepare(ch);
	if (r < 0) {
		ide_dma_finish(ch, r);
		return;
	}
	ide_io_submit(ch);
}

void ide_dma_start(struct ide_channel *ch, struct ide_drive *d, bool to_guest, bool from_buf,
		   uint64_t off, uint64_t len, bool fua)
{
	struct ide_dma *dma = &ch->dma;

	d->phase = IDE_PH_BUSY;
	d->r.status = ATA_ST_READY | ATA_ST_DRQ;
	*dma = (struct ide_dma){
		.pending = true,
		.unit = d->unit,
		.to_guest = to_guest,
		.from_buf = from_buf,
		.off = off,
		.left = len,
		.fua = fua,
	};
	ide_dma_kick(ch);
}

void ide_dma_cancel(struct ide_channel *ch)
{
	ch->dma.pending = ch->dma.running = false;
}

/* ---- registers -------------------------------------------------------------- */

uint64_t ide_bm_read(struct ide_channel *ch, uint64_t off, unsigned size)
{
	return emu_lane_out(off, size, BM_CMD, 1, ch->bm.cmd) |
	       emu_lane_out(off, size, BM_STATUS, 1, ch->bm.status) |
	       emu_lane_out(off, size, BM_PRD, 4, ch->bm.prd);
}

/* Start 0->1 sets Active and begins a pending DMA; 1->0 clears Active (a
 * transfer at the block layer still completes). The direction cannot change
 * while Start is set. */
static void ide_bm_cmd_write(struct ide_channel *ch, uint8_t v)
{
	struct ide_bm *bm = &ch->bm;
	uint8_t old = bm->cmd;

	if (old & BM_CMD_START)
		bm->cmd = (uint8_t)((old & BM_CMD_WRITE) | (v & BM_CMD_START));
	else
		bm->cmd = v & (BM_CMD_START | BM_CMD_WRITE);
	if (!(old & BM_CMD_START) && (v & BM_CMD_START)) {
		bm->status |= BM_ST_ACTIVE;
		ide_dma_kick(ch);
	} else if ((old & BM_CMD_START) && !(v & BM_CMD_START)) {
		bm->status &= (uint8_t)~BM_ST_ACTIVE;
	}
}

void ide_bm_write(struct ide_channel *ch, uint64_t off, unsigned size, uint64_t val)
{
	struct ide_bm *bm = &ch->bm;
	uint64_t rv, rm;

	if (emu_lane_in(off, size, val, BM_STATUS, 1, &rv, &rm)) {
		/* Error and Interrupt are write-1-to-clear; the capable bits are
		 * the driver's; Active and Simplex are read-only. */
		bm->status &= (uint8_t) ~(rv & (BM_ST_ERROR | BM_ST_INTR));
		bm->status = (uint8_t)((bm->status & ~(BM_ST_DMA0 | BM_ST_DMA1)) |
				       (rv & (BM_ST_DMA0 | BM_ST_DMA1)));
	}
	if (emu_lane_in(off, size, val, BM_PRD, 4, &rv, &rm))
		bm->prd = (uint32_t)emu_lane_merge(bm->prd, rv, rm) & ~3u;
	if (emu_lane_in(off, size, val, BM_CMD, 1, &rv, &rm))
		ide_bm_cmd_write(ch, (uint8_t)rv);
}

void ide_bm_reset(struct ide_channel *ch)
{
	ch->bm.cmd = 0;
	ch->bm.status = 0;
	ch->bm.prd = 0;
}
