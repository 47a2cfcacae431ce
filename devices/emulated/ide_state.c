/* Save and load of an IDE channel: one versioned section holding the
 * channel's registers, the bus master, a DMA the guest asked for but has not
 * started, the live part of the PIO buffer, and each drive with its model's
 * state (ata_disk_save / atapi_cd_save). Load reads everything into a copy,
 * checks every field against the configured drives, and only then replaces
 * the channel's state: a hostile stream changes nothing.
 *
 * A request at the block layer cannot be saved: save refuses with -EBUSY;
 * the quiesce step waits for it first (ide_channel_drain). The images and
 * the CD's medium are configuration, not state: a load whose drives or
 * medium sizes differ from the configured ones is refused. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/state.h"
#include "emu.h"
#include "ide_priv.h"

#define IDE_STATE_ID	  0x49444543 /* "IDEC" */
#define IDE_STATE_VERSION 1

#define BM_CMD_BITS (BM_CMD_START | BM_CMD_WRITE)
#define BM_ST_BITS  (BM_ST_ACTIVE | BM_ST_ERROR | BM_ST_INTR | BM_ST_DMA0 | BM_ST_DMA1)
#define DC_BITS	    (ATA_DC_NIEN | ATA_DC_SRST | ATA_DC_HOB)

struct ide_saved {
	unsigned sel;
	uint8_t dctl;
	struct ide_bm bm;
	struct ide_dma dma;
	struct ide_drive drive[2];
	uint32_t used;
	uint8_t *buf;
};

/* How much of the buffer holds something a drive will still hand over. */
static uint32_t ide_buf_used(const struct ide_channel *ch)
{
	uint64_t used = 0;

	for (unsigned u = 0; u < 2; u++) {
		const struct ide_drive *d = &ch->drive[u];

		if (d->phase == IDE_PH_PIO_IN || d->phase == IDE_PH_PIO_OUT)
			used = MAX(used, d->end);
		if (d->kind != IDE_NONE)
			used = MAX(used, d->ops->buf_used(d));
	}
	if (ch->dma.pending && ch->dma.from_buf)
		used = MAX(used, ch->dma.off + ch->dma.left);
	return (uint32_t)MIN(used, IDE_BUF_SIZE);
}

static void ide_put_regs(struct state_buf *out, const struct ide_regs *r)
{
	const uint8_t v[] = { r->feature,     r->nsector,     r->lbal,	   r->lbam,	r->lbah,
			      r->hob_feature, r->hob_nsector, r->hob_lbal, r->hob_lbam, r->hob_lbah,
			      r->device,      r->command,     r->status,   r->error };

	state_put_bytes(out, v, sizeof(v));
}

static void ide_get_regs(struct state_buf *in, struct ide_regs *r)
{
	uint8_t v[14];

	state_get_bytes(in, v, sizeof(v));
	*r = (struct ide_regs){ v[0], v[1], v[2], v[3],	 v[4],	v[5],  v[6],
				v[7], v[8], v[9], v[10], v[11], v[12], v[13] };
}

int ide_save(struct device *dev, struct state_buf *out)
{
	struct ide_channel *ch = (struct ide_channel *)dev;
	const struct ide_dma *dma = &ch->dma;
	uint32_t used = ide_buf_used(ch);
	size_t mark;

	if (ch->io.busy)
		return -EBUSY;
	mark = state_section_begin(out, IDE_STATE_ID, IDE_STATE_VERSION);
	state_put_u8(out, (uint8_t)ch->sel);
	state_put_u8(out, ch->dctl);
	state_put_u8(out, ch->bm.cmd);
	state_put_u8(out, ch->bm.status);
	state_put_u32(out, ch->bm.prd);
	/* Only a DMA still waiting for Start is state; the rest is history. */
	if (dma->pending) {
		state_put_u8(out, (uint8_t)(1 | dma->to_guest << 1 | dma->from_buf << 2 |
					    dma->fua << 3));
		state_put_u8(out, (uint8_t)dma->unit);
		state_put_u64(out, dma->off);
		state_put_u64(out, dma->left);
	} else {
		state_put_u8(out, 0);
		state_put_u8(out, 0);
		state_put_u64(out, 0);
		state_put_u64(out, 0);
	}
	state_put_u32(out, used);
	state_put_bytes(out, ch->buf, used);
	for (unsigned u = 0; u < 2; u++) {
		const struct ide_drive *d = &ch->drive[u];

		state_put_u8(out, (uint8_t)d->kind);
		ide_put_regs(out, &d->r);
		state_put_u8(out, d->intrq);
		bool pio = d->phase == IDE_PH_PIO_IN || d->phase == IDE_PH_PIO_OUT;

		state_put_u8(out, (uint8_t)d->phase);
		state_put_u32(out, pio ? d->pos : 0); /* the window only means */
		state_put_u32(out, pio ? d->end : 0); /* something in a PIO phase */
		if (d->kind == IDE_DISK)
			ata_disk_save(d, out);
		else if (d->kind == IDE_CDROM)
			atapi_cd_save(d, out);
	}
	state_section_end(out, mark);
	return out->error ? -ENOMEM : 0;
}

/* A DMA waiting for the Start bit: for a present drive that waits for it,
 * inside the buffer or whole sectors of the disk. */
static bool ide_dma_ok(const struct ide_saved *s)
{
	const struct ide_dma *dma = &s->dma;
	const struct ide_drive *d = &s->drive[dma->unit];

	if (!dma->pending)
		return true;
	if (d->kind == IDE_NONE || d->phase != IDE_PH_BUSY || (s->bm.cmd & BM_CMD_START) ||
	    !dma->left)
		return false;
	if (dma->from_buf)
		return dma->off <= s->used && dma->left <= s->used - dma->off;
	return dma->off % IDE_SECTOR == 0 && dma->left % IDE_SECTOR == 0 && d->blk &&
	       dma->off <= d->blk->size && dma->left <= d->blk->size - dma->off;
}

static bool ide_load_drive(struct ide_saved *s, unsigned u, struct state_buf *in)
{
	struct ide_drive *d = &s->drive[u];
	uint8_t kind = state_get_u8(in), intrq, phase;

	ide_get_regs(in, &d->r);
	intrq = state_get_u8(in);
	phase = state_get_u8(in);
	d->pos = state_get_u32(in);
	d->end = state_get_u32(in);
	if (in->error || kind != d->kind || intrq > 1 || phase > IDE_PH_PIO_OUT ||
	    d->pos > d->end || d->end > s->used)
		return false;
	d->intrq = intrq;
	d->phase = (enum ide_phase)phase;
	if (d->phase == IDE_PH_BUSY && !(s->dma.pending && s->dma.unit == u))
		return false;
	if (d->kind == IDE_DISK && !ata_disk_load(d, in))
		return false;
	if (d->kind == IDE_CDROM && !atapi_cd_load(d, in))
		return false;
	return d->kind == IDE_NONE || d->ops->buf_used(d) <= s->used;
}

static bool ide_load_body(struct ide_channel *ch, struct ide_saved *s, struct state_buf *in)
{
	uint8_t flags;

	s->sel = state_get_u8(in);
	s->dctl = state_get_u8(in);
	s->bm.cmd = state_get_u8(in);
	s->bm.status = state_get_u8(in);
	s->bm.prd = state_get_u32(in);
	flags = state_get_u8(in);
	s->dma.unit = state_get_u8(in);
	s->dma.off = state_get_u64(in);
	s->dma.left = state_get_u64(in);
	s->used = state_get_u32(in);
	if (in->error || s->sel > 1 || (s->dctl & ~DC_BITS) || (s->bm.cmd & ~BM_CMD_BITS) ||
	    (s->bm.status & ~BM_ST_BITS) || (s->bm.prd & 3) || flags > 15 || s->dma.unit > 1 ||
	    s->used > IDE_BUF_SIZE)
		return false;
	s->dma.pending = flags & 1;
	s->dma.to_guest = flags & 2;
	s->dma.from_buf = flags & 4;
	s->dma.fua = flags & 8;
	s->buf = malloc(s->used ? s->used : 1);
	if (!s->buf)
		return false;
	state_get_bytes(in, s->buf, s->used);
	for (unsigned u = 0; u < 2; u++) {
		s->drive[u] = ch->drive[u];
		if (!ide_load_drive(s, u, in))
			return false;
	}
	return ide_dma_ok(s);
}

int ide_load(struct device *dev, struct state_buf *in)
{
	struct ide_channel *ch = (struct ide_channel *)dev;
	struct ide_saved s = { 0 };
	size_t end;
	bool ok;

	if (ch->io.busy)
		return -EBUSY;
	if (state_section_open(in, IDE_STATE_ID, IDE_STATE_VERSION) < 0)
		return -EINVAL;
	end = emu_section_body_end(in);
	ok = ide_load_body(ch, &s, in) && emu_section_done(in, end);
	if (!ok) {
		free(s.buf);
		return -EINVAL;
	}
	ch->sel = s.sel;
	ch->dctl = s.dctl;
	ch->bm.cmd = s.bm.cmd;
	ch->bm.status = s.bm.status;
	ch->bm.prd = s.bm.prd;
	ch->dma = (struct ide_dma){ 0 };
	if (s.dma.pending)
		ch->dma = (struct ide_dma){ .pending = true,
					    .unit = s.dma.unit,
					    .to_guest = s.dma.to_guest,
					    .from_buf = s.dma.from_buf,
					    .off = s.dma.off,
					    .left = s.dma.left,
					    .fua = s.dma.fua };
	for (unsigned u = 0; u < 2; u++)
		ch->drive[u] = s.drive[u];
	memcpy(ch->buf, s.buf, s.used);
	free(s.buf);
	ide_irq_resync(ch);
	return 0;
}
