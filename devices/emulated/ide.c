/* An IDE channel (ATA/ATAPI-6 (T13/1410D) clause 7 and 9; ATA8-ACS for the
 * commands): the command block registers at BASE+0..7, Device Control and
 * Alternate Status at CTRL, the two devices behind them, the PIO data buffer,
 * INTRQ, software reset, and the block requests the drive models ask for.
 * What the commands mean is in ata_disk.c and atapi_cd.c; the bus master is
 * in ide_bmdma.c. See include/kestrel/ide.h for wiring and threads.
 *
 * Register model, as both Linux's libata and SeaBIOS expect it (and as QEMU
 * does it): a write to a command block register is latched by both devices;
 * a read comes from the selected one; a device that is not there reads 0 and
 * ignores commands (so the 55h/AAh probe of the sector count and LBA low
 * registers finds nothing). Status read clears the device's INTRQ;
 * Alternate Status does not. Data port accesses of 1, 2 or 4 bytes move that
 * many bytes of the current DRQ block: KVM hands a `rep insw` over in one
 * exit (run->io.count words), so a whole sector costs one exit and no host
 * system call. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/sandbox.h"
#include "kestrel/state.h"
#include "emu.h"
#include "ide_priv.h"

enum { IO_IDLE, IO_SUBMITTING, IO_SUBMITTED, IO_DONE };

static struct ide_channel *to_ch(struct device *dev)
{
	return (struct ide_channel *)dev;
}

static bool ide_present(const struct ide_drive *d)
{
	return d->kind != IDE_NONE;
}

static bool ide_channel_empty(const struct ide_channel *ch)
{
	return !ide_present(&ch->drive[0]) && !ide_present(&ch->drive[1]);
}

void ide_warn_once(struct ide_channel *ch, unsigned what, const char *msg)
{
	if (ch->warned & what)
		return;
	ch->warned |= what;
	kwarn("%s: %s (said once)", ch->name, msg);
}

/* ---- interrupts ------------------------------------------------------------ */

/* INTRQ is driven by the selected device only, and not while nIEN is set
 * (ATA/ATAPI-6, INTRQ and nIEN). The PIIX's bus-master Interrupt bit latches each
 * assertion the host sees (SFF-8038i, Bus Master IDE Status; libata's DMA interrupt handler
 * looks for it). */
static void ide_update_irq(struct ide_channel *ch)
{
	const struct ide_drive *d = &ch->drive[ch->sel];
	int level = d->intrq && !(ch->dctl & ATA_DC_NIEN);

	if (level && ch->irq_level != 1)
		ch->bm.status |= BM_ST_INTR;
	if (level != ch->irq_level) {
		ch->irq_level = level;
		irq_set(&ch->irq, level);
	}
}

/* After a load: drive the line to what the registers say, without the
 * bus-master latch (the loaded status already has it). */
void ide_irq_resync(struct ide_channel *ch)
{
	const struct ide_drive *d = &ch->drive[ch->sel];

	ch->irq_level = d->intrq && !(ch->dctl & ATA_DC_NIEN);
	irq_set(&ch->irq, ch->irq_level);
}

void ide_irq_raise(struct ide_channel *ch, struct ide_drive *d)
{
	d->intrq = true;
	ide_update_irq(ch);
}

static void ide_irq_clear(struct ide_channel *ch, struct ide_drive *d)
{
	d->intrq = false;
	ide_update_irq(ch);
}

/* ---- services for the drive models ----------------------------------------- */

void ide_cmd_done(struct ide_channel *ch, struct ide_drive *d)
{
	d->phase = IDE_PH_IDLE;
	d->r.status = ATA_ST_READY;
	d->r.error = 0;
	ide_irq_raise(ch, d);
}

void ide_cmd_error(struct ide_channel *ch, struct ide_drive *d, uint8_t err)
{
	d->phase = IDE_PH_IDLE;
	d->r.status = ATA_ST_READY | ATA_ST_ERR;
	d->r.error = err;
	ide_irq_raise(ch, d);
}

static void ide_pio_open(struct ide_channel *ch, struct ide_drive *d, enum ide_phase ph,
			 uint32_t pos, uint32_t end, bool irq)
{
	d->phase = ph;
	d->pos = MIN(pos, IDE_BUF_SIZE);
	d->end = MIN(MAX(end, d->pos), IDE_BUF_SIZE);
	d->r.status = ATA_ST_READY | ATA_ST_DRQ;
	d->r.error = 0;
	if (irq)
		ide_irq_raise(ch, d);
}

void ide_pio_in(struct ide_channel *ch, struct ide_drive *d, uint32_t pos, uint32_t end, bool irq)
{
	ide_pio_open(ch, d, IDE_PH_PIO_IN, pos, end, irq);
}

void ide_pio_out(struct ide_channel *ch, struct ide_drive *d, uint32_t pos, uint32_t end, bool irq)
{
	ide_pio_open(ch, d, IDE_PH_PIO_OUT, pos, end, irq);
}

void ide_put_word(uint8_t *page, unsigned i, uint16_t v)
{
	page[2 * i] = (uint8_t)v;
	page[2 * i + 1] = (uint8_t)(v >> 8);
}

/* ATA strings: the first character of each pair is in bits 15:8. */
void ide_put_string(uint8_t *page, unsigned word, unsigned words, const char *s)
{
	size_t n = strlen(s);

	for (unsigned i = 0; i < 2 * words; i++)
		page[2 * word + (i ^ 1)] = i < n ? (uint8_t)s[i] : ' ';
}

void ide_identify_checksum(uint8_t *page)
{
	uint8_t sum = 0xa5;

	page[510] = 0xa5;
	for (unsigned i = 0; i < 510; i++)
		sum += page[i];
	page[511] = (uint8_t)-sum;
}

bool ide_xfer_mode_ok(uint8_t m)
{
	switch (m & 0xf8) {
	case 0x00: return m <= 0x01;	/* PIO default, with or without IORDY */
	case 0x08: return (m & 7) <= 4; /* PIO flow control */
	case 0x20: return (m & 7) <= 2; /* multiword DMA */
	case 0x40: return (m & 7) <= 5; /* Ultra DMA */
	}
	return false;
}

uint16_t ide_mwdma_word(uint8_t m)
{
	return (uint16_t)(0x0007 | ((m & 0xf8) == 0x20 ? 0x100 << (m & 7) : 0));
}

uint16_t ide_udma_word(uint8_t m)
{
	return (uint16_t)(0x003f | ((m & 0xf8) == 0x40 ? 0x100 << (m & 7) : 0));
}

/* Word 93 (ATA8-ACS IDENTIFY DEVICE, hardware reset result): bit 14 set, bit 13 an 80-conductor cable,
 * the device's own byte with bit 0 set, "jumper" (01b) as the way its number
 * was determined, and for device 0 diagnostics passed and whether device 1
 * asserted DASP-. SeaBIOS reads 0x4041 in the masked value as "device 0
 * answers for an absent device 1", which we never report. */
uint16_t ide_reset_result(const struct ide_channel *ch, const struct ide_drive *d)
{
	if (d->unit == 1)
		return 0x6000 | 0x0100 | (1 << 9) | (1 << 11);
	return (uint16_t)(0x6000 | 0x0001 | (1 << 1) | (1 << 3) |
			  (ide_present(&ch->drive[1]) ? 1 << 5 : 0));
}

/* ATA8-ACS: the signatures a device leaves after reset and diagnostics. */
void ide_set_signature(struct ide_drive *d)
{
	d->r.nsector = d->r.hob_nsector = 1;
	d->r.lbal = d->r.hob_lbal = 1;
	d->r.lbam = d->r.hob_lbam = d->kind == IDE_CDROM ? 0x14 : 0;
	d->r.lbah = d->r.hob_lbah = d->kind == IDE_CDROM ? 0xeb : 0;
}

/* After a reset or diagnostics a packet device leaves DRDY clear until its
 * IDENTIFY PACKET DEVICE (ATA/ATAPI-6, reset protocols); a disk is ready. Error 01h: the
 * device passed (and for device 0, device 1 passed or is absent). */
static void ide_drive_post_reset(struct ide_drive *d)
{
	ide_set_signature(d);
	d->phase = IDE_PH_IDLE;
	d->r.status = d->kind == IDE_CDROM ? 0 : ATA_ST_READY;
	d->r.error = 0x01;
	d->intrq = false;
}

void ide_execute_diagnostic(struct ide_channel *ch)
{
	for (unsigned u = 0; u < 2; u++)
		if (ide_present(&ch->drive[u]))
			ide_drive_post_reset(&ch->drive[u]);
	ide_irq_raise(ch, &ch->drive[ch->sel]);
}

/* ---- block requests ---------------------------------------------------------- */

static bool ide_io_complete(struct ide_channel *ch, int status);

/* The completion can come before blk_submit returns (on this thread, lock
 * held) or on a block-layer thread that must take the lock. handoff decides
 * who finishes: whichever of the submitter and the completion arrives second
 * (an atomic exchange each), so nobody waits for the lock it holds. */
static void ide_io_submit_now(struct ide_channel *ch)
{
	struct ide_io *io = &ch->io;
	struct blk_dev *blk = ch->drive[io->unit].blk;

	for (;;) {
		atomic_store(&io->handoff, IO_SUBMITTING);
		blk_submit(blk, &io->req);
		if (atomic_exchange(&io->handoff, IO_SUBMITTED) != IO_DONE)
			return;
		if (!ide_io_complete(ch, io->status))
			return;
	}
}

/* A request goes to the block layer from the channel's I/O thread, not from
 * the vCPU that asked for it: the vCPU returns to the guest at once (the
 * command or the bus master's Start is all it did), and its thread makes no
 * block-layer system call (its seccomp list has none). Without the thread
 * (it could not be started) the caller submits. */
void ide_io_submit(struct ide_channel *ch)
{
	if (!ch->io_thread_on) {
		ide_io_submit_now(ch);
		return;
	}
	ch->io_queued = true;
	pthread_cond_signal(&ch->io_kick);
}

static void *ide_io_thread(void *arg)
{
	struct ide_channel *ch = arg;

	pthread_mutex_lock(&ch->dev.lock);
	for (;;) {
		while (!ch->io_queued && !ch->io_stop)
			pthread_cond_wait(&ch->io_kick, &ch->dev.lock);
		if (!ch->io_queued)
			break;
		ch->io_queued = false;
		ide_io_submit_now(ch);
	}
	pthread_mutex_unlock(&ch->dev.lock);
	return NULL;
}

void ide_io_done(struct blk_req *req, int status)
{
	struct ide_channel *ch = req->opaque;

	ch->io.status = status;
	if (atomic_exchange(&ch->io.handoff, IO_DONE) == IO_SUBMITTING)
		return;
	pthread_mutex_lock(&ch->dev.lock);
	/* The next chunk of a DMA from here: this is a block-layer thread. */
	if (ide_io_complete(ch, status))
		ide_io_submit_now(ch);
	pthread_mutex_unlock(&ch->dev.lock);
}

/* true: the next DMA chunk is prepared in ch->io (submit it). */
static bool ide_io_complete(struct ide_channel *ch, int status)
{
	struct ide_io *io = &ch->io;
	struct ide_drive *d = &ch->drive[io->unit];

	if (io->stale) {
		if (io->dma && ch->dma.to_guest)
			ide_dma_mark_dirty(ch);
		io->busy = io->stale = false;
		if (!(ch->dctl & ATA_DC_SRST))
			ide_reset_finish(ch);
		pthread_cond_broadcast(&ch->idle);
		return false;
	}
	if (io->dma && ide_dma_chunk_done(ch, &status))
		return true;
	io->busy = false;
	pthread_cond_broadcast(&ch->idle);
	if (io->dma)
		ide_dma_finish(ch, status);
	else
		d->ops->io_done(ch, d, status);
	return false;
}

void ide_blk_start(struct ide_channel *ch, struct ide_drive *d, enum blk_op op, uint64_t off,
		   uint32_t len, bool fua)
{
	struct ide_io *io = &ch->io;

	d->phase = IDE_PH_BUSY;
	d->r.status = ATA_ST_BSY | ATA_ST_DRDY;
	io->sg.iov[0] = (struct iovec){ .iov_base = ch->buf, .iov_len = MIN(len, IDE_BUF_SIZE) };
	io->req = (struct blk_req){
		.op = op,
		.offset = off,
		.iov = io->sg.iov,
		.iovcnt = (op == BLK_OP_READ || op == BLK_OP_WRITE) ? 1 : 0,
		.fua = fua,
		.done = ide_io_done,
		.opaque = ch,
	};
	io->busy = true;
	io->dma = false;
	io->unit = d->unit;
	ide_io_submit(ch);
}

/* ---- PIO data port ----------------------------------------------------------- */

static void ide_pio_block_done(struct ide_channel *ch, struct ide_drive *d)
{
	d->phase = IDE_PH_IDLE;
	d->r.status &= (uint8_t)~ATA_ST_DRQ;
	d->ops->pio_done(ch, d);
}

static uint64_t ide_data_read(struct ide_channel *ch, unsigned size)
{
	struct ide_drive *d = &ch->drive[ch->sel];
	uint64_t v = 0;
	uint32_t n;

	if (d->phase != IDE_PH_PIO_IN)
		return 0;
	n = MIN(size, d->end - d->pos);
	memcpy(&v, ch->buf + d->pos, n);
	d->pos += n;
	if (d->pos >= d->end)
		ide_pio_block_done(ch, d);
	return v;
}

static void ide_data_write(struct ide_channel *ch, unsigned size, uint64_t v)
{
	struct ide_drive *d = &ch->drive[ch->sel];
	uint32_t n;

	if (d->phase != IDE_PH_PIO_OUT)
		return;
	n = MIN(size, d->end - d->pos);
	memcpy(ch->buf + d->pos, &v, n);
	d->pos += n;
	if (d->pos >= d->end)
		ide_pio_block_done(ch, d);
}

/* ---- command block registers -------------------------------------------------- */

static uint8_t ide_reg_read(struct ide_channel *ch, unsigned reg)
{
	struct ide_drive *d = &ch->drive[ch->sel];
	bool hob = ch->dctl & ATA_DC_HOB;

	if (ide_channel_empty(ch))
		return 0;
	if (reg == IDE_DEVICE)
		return d->r.device;
	if (!ide_present(d))
		return 0;
	switch (reg) {
	case IDE_ERROR: return d->r.error;
	case IDE_NSECTOR: return hob ? d->r.hob_nsector : d->r.nsector;
	case IDE_LBAL: return hob ? d->r.hob_lbal : d->r.lbal;
	case IDE_LBAM: return hob ? d->r.hob_lbam : d->r.lbam;
	case IDE_LBAH: return hob ? d->r.hob_lbah : d->r.lbah;
	}
	ide_irq_clear(ch, d); /* IDE_COMMAND: Status */
	return d->r.status;
}

/* The register is latched by both devices; the previous value moves to the
 * HOB half (the 48-bit Address feature set's two-deep register "FIFO"). */
static void ide_latch(struct ide_regs *r, unsigned reg, uint8_t v)
{
	switch (reg) {
	case IDE_ERROR:
		r->hob_feature = r->feature;
		r->feature = v;
		break;
	case IDE_NSECTOR:
		r->hob_nsector = r->nsector;
		r->nsector = v;
		break;
	case IDE_LBAL:
		r->hob_lbal = r->lbal;
		r->lbal = v;
		break;
	case IDE_LBAM:
		r->hob_lbam = r->lbam;
		r->lbam = v;
		break;
	case IDE_LBAH:
		r->hob_lbah = r->lbah;
		r->lbah = v;
		break;
	case IDE_DEVICE: r->device = v; break;
	}
}

static void ide_command(struct ide_channel *ch, uint8_t cmd)
{
	struct ide_drive *d = &ch->drive[ch->sel];

	if (!ide_present(d))
		return;
	/* A command while the device is busy is a protocol violation; one while
	 * the other device's request is still at the block layer too (the
	 * channel has one). Both are dropped, as a busy device would. */
	if ((d->r.status & ATA_ST_BSY) || ch->io.busy || ch->dma.pending) {
		ide_warn_once(ch, IDE_WARN_BUSY, "command while the channel is busy, ignored");
		return;
	}
	d->r.command = cmd;
	d->phase = IDE_PH_IDLE;
	ide_irq_clear(ch, d);
	if (cmd == ATA_CMD_EXECUTE_DIAGNOSTIC) {
		ide_execute_diagnostic(ch);
		return;
	}
	d->ops->exec(ch, d);
}

static void ide_reg_write(struct ide_channel *ch, unsigned reg, uint8_t v)
{
	ch->dctl &= (uint8_t)~ATA_DC_HOB; /* any command block write clears HOB */
	if (reg == IDE_COMMAND) {
		ide_command(ch, v);
		return;
	}
	for (unsigned u = 0; u < 2; u++)
		ide_latch(&ch->drive[u].r, reg, v);
	if (reg == IDE_DEVICE) {
		ch->sel = (v & ATA_DEV_DEV) ? 1 : 0;
		ide_update_irq(ch);
	}
}

/* ---- resets ------------------------------------------------------------------ */

/* SRST asserted (ATA/ATAPI-6, software reset protocol): both devices drop what they were doing
 * and are busy. A request at the block layer cannot be called back: its
 * result is dropped when it comes, and the reset completes after it. */
static void ide_srst_assert(struct ide_channel *ch)
{
	for (unsigned u = 0; u < 2; u++) {
		struct ide_drive *d = &ch->drive[u];

		if (!ide_present(d))
			continue;
		d->phase = IDE_PH_IDLE;
		d->r.status = ATA_ST_BSY;
		d->intrq = false;
	}
	ide_dma_cancel(ch);
	if (ch->io.busy)
		ch->io.stale = true;
}

void ide_reset_finish(struct ide_channel *ch)
{
	for (unsigned u = 0; u < 2; u++) {
		struct ide_drive *d = &ch->drive[u];

		if (!ide_present(d))
			continue;
		d->ops->reset(d, false);
		ide_drive_post_reset(d);
	}
}

static void ide_ctrl_write(struct ide_channel *ch, uint8_t v)
{
	uint8_t old = ch->dctl;

	ch->dctl = v & (ATA_DC_NIEN | ATA_DC_SRST | ATA_DC_HOB);
	if (!(old & ATA_DC_SRST) && (v & ATA_DC_SRST))
		ide_srst_assert(ch);
	else if ((old & ATA_DC_SRST) && !(v & ATA_DC_SRST) && !ch->io.busy)
		ide_reset_finish(ch);
	ide_update_irq(ch);
}

/* Power-on / hardware reset (RESET-): every setting back to its default. */
static void ide_reset(struct device *dev)
{
	struct ide_channel *ch = to_ch(dev);

	ch->dctl = 0;
	ch->sel = 0;
	ide_dma_cancel(ch);
	ide_bm_reset(ch);
	for (unsigned u = 0; u < 2; u++) {
		struct ide_drive *d = &ch->drive[u];

		memset(&d->r, 0, sizeof(d->r));
		if (!ide_present(d))
			continue;
		d->ops->reset(d, true);
		ide_drive_post_reset(d);
		if (ch->io.busy)
			d->r.status = ATA_ST_BSY;
	}
	if (ch->io.busy)
		ch->io.stale = true;
	ch->irq_level = -1;
	ide_update_irq(ch);
}

/* ---- dev_ops --------------------------------------------------------------- */

static uint64_t ide_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	struct ide_channel *ch = to_ch(dev);
	uint64_t v = 0;

	if (region == IDE_REGION_BMDMA)
		return ide_bm_read(ch, off, size);
	if (region == IDE_REGION_CTRL) {
		/* Alternate Status, in every byte lane of a wider access. */
		const struct ide_drive *d = &ch->drive[ch->sel];
		uint8_t st = ide_present(d) ? d->r.status : 0;

		for (unsigned i = 0; i < size; i++)
			v |= (uint64_t)st << (8 * i);
		return v;
	}
	if (off == IDE_DATA && size > 1)
		return ide_data_read(ch, size);
	for (unsigned i = 0; i < size; i++) {
		uint64_t reg = off + i;
		uint8_t b = reg == IDE_DATA	? (uint8_t)ide_data_read(ch, 1)
			    : reg < IDE_CMD_LEN ? ide_reg_read(ch, (unsigned)reg)
						: 0xff;

		v |= (uint64_t)b << (8 * i);
	}
	return v;
}

static void ide_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct ide_channel *ch = to_ch(dev);

	if (region == IDE_REGION_BMDMA) {
		ide_bm_write(ch, off, size, val);
		return;
	}
	if (region == IDE_REGION_CTRL) {
		if (off == 0)
			ide_ctrl_write(ch, (uint8_t)val);
		return;
	}
	if (off == IDE_DATA && size > 1) {
		ide_data_write(ch, size, val);
		return;
	}
	for (unsigned i = 0; i < size; i++) {
		uint64_t reg = off + i;
		uint8_t b = (uint8_t)(val >> (8 * i));

		if (reg == IDE_DATA)
			ide_data_write(ch, 1, b);
		else if (reg < IDE_CMD_LEN)
			ide_reg_write(ch, (unsigned)reg, b);
	}
}

/* ---- creation, media, teardown -------------------------------------------- */

static void ide_channel_free(struct ide_channel *ch)
{
	if (!ch)
		return;
	free(ch->io.sg.iov);
	free(ch->io.sg.gpa);
	free(ch->io.sg.at);
	free(ch->buf);
	free(ch);
}

static void ide_destroy(struct device *dev)
{
	struct ide_channel *ch = to_ch(dev);

	ide_channel_drain(dev);
	if (ch->io_thread_on) {
		pthread_mutex_lock(&dev->lock);
		ch->io_stop = true;
		pthread_cond_signal(&ch->io_kick);
		pthread_mutex_unlock(&dev->lock);
		pthread_join(ch->io_thread, NULL);
	}
	for (unsigned u = 0; u < 2; u++)
		if (ch->drive[u].blk)
			blk_close(ch->drive[u].blk);
	pthread_cond_destroy(&ch->io_kick);
	pthread_cond_destroy(&ch->idle);
	pthread_mutex_destroy(&dev->lock);
	ide_channel_free(ch);
}

static const struct dev_ops ide_ops = {
	.name = "ide",
	.reset = ide_reset,
	.quiesce = ide_channel_drain,
	.read = ide_read,
	.write = ide_write,
	.save = ide_save,
	.load = ide_load,
	.destroy = ide_destroy,
};

/* With the lock held: until no request is at the block layer (the medium,
 * the bus master's ops and the state are then ours to change). */
static void ide_wait_idle(struct ide_channel *ch)
{
	while (ch->io.busy)
		pthread_cond_wait(&ch->idle, &ch->dev.lock);
}

void ide_channel_drain(struct device *dev)
{
	pthread_mutex_lock(&dev->lock);
	ide_wait_idle(to_ch(dev));
	pthread_mutex_unlock(&dev->lock);
}

void ide_channel_set_dma(struct device *dev, const struct ide_dma_ops *ops, void *opaque)
{
	struct ide_channel *ch = to_ch(dev);

	pthread_mutex_lock(&dev->lock);
	ide_wait_idle(ch); /* a DMA at the block layer uses the old ops */
	ch->bm.ops = ops;
	ch->bm.opaque = opaque;
	pthread_mutex_unlock(&dev->lock);
}

static int ide_drive_setup(struct ide_channel *ch, unsigned u, const struct ide_drive_conf *c,
			   char *err, size_t errlen)
{
	struct ide_drive *d = &ch->drive[u];

	d->unit = u;
	d->kind = c->kind;
	if (c->kind == IDE_NONE)
		return 0;
	if ((c->serial && strlen(c->serial) >= sizeof(d->serial)) ||
	    (c->model && strlen(c->model) >= sizeof(d->model))) {
		snprintf(err, errlen,
			 "%s unit %u: serial is at most 20, model at most 40 characters", ch->name,
			 u);
		return -EINVAL;
	}
	for (const char *s = c->serial ? c->serial : ""; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			goto bad_char;
	for (const char *s = c->model ? c->model : ""; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			goto bad_char;
	if (c->serial)
		snprintf(d->serial, sizeof(d->serial), "%s", c->serial);
	else
		snprintf(d->serial, sizeof(d->serial), "KESTREL-%.8s-%u", ch->name, u);
	snprintf(d->model, sizeof(d->model), "%s",
		 c->model	       ? c->model
		 : c->kind == IDE_DISK ? "KESTREL HARDDISK"
				       : "KESTREL DVD-ROM");
	d->blk = c->blk;
	if (c->kind == IDE_DISK) {
		d->ops = &ata_disk_ops;
		return ata_disk_init(d, err, errlen);
	}
	if (c->kind != IDE_CDROM) {
		snprintf(err, errlen, "%s unit %u: unknown drive kind", ch->name, u);
		return -EINVAL;
	}
	d->ops = &atapi_cd_ops;
	atapi_cd_init(d);
	return 0;

bad_char:
	snprintf(err, errlen, "%s unit %u: serial and model must be printable ASCII", ch->name, u);
	return -EINVAL;
}

struct device *ide_channel_create(const char *name, const struct irq_line *irq,
				  const struct ide_drive_conf drives[2], char *err, size_t errlen)
{
	struct ide_channel *ch = calloc(1, sizeof(*ch));
	struct ide_sg *sg = ch ? &ch->io.sg : NULL;

	if (!ch || !(ch->buf = calloc(1, IDE_BUF_SIZE)) ||
	    !(sg->iov = calloc(BLK_MAX_IOV, sizeof(*sg->iov))) ||
	    !(sg->gpa = calloc(BLK_MAX_IOV, sizeof(*sg->gpa))) ||
	    !(sg->at = calloc(BLK_MAX_IOV, sizeof(*sg->at)))) {
		snprintf(err, errlen, "%s: out of memory", name);
		goto fail;
	}
	sg->max = BLK_MAX_IOV;
	ch->io.req.done = ide_io_done;
	snprintf(ch->name, sizeof(ch->name), "%s", name);
	for (unsigned u = 0; u < 2; u++)
		if (ide_drive_setup(ch, u, &drives[u], err, errlen) < 0)
			goto fail;
	device_init(&ch->dev, &ide_ops);
	pthread_cond_init(&ch->idle, NULL);
	pthread_cond_init(&ch->io_kick, NULL);
	if (irq)
		ch->irq = *irq;
	ide_reset(&ch->dev);
	if (!ide_channel_empty(ch)) {
		char tname[16];

		snprintf(tname, sizeof(tname), "%.8s-io", ch->name);
		ch->io_thread_on = sandbox_thread_start(&ch->io_thread, SANDBOX_IO, tname,
							ide_io_thread, ch) == 0;
		if (!ch->io_thread_on)
			kwarn("%s: no I/O thread; requests are submitted by the vCPU", ch->name);
	}
	return &ch->dev;

fail:
	ide_channel_free(ch);
	return NULL;
}

int ide_drive_get_stats(struct device *dev, unsigned unit, struct ide_drive_stats *out)
{
	struct ide_channel *ch = to_ch(dev);
	const struct ide_drive *d;

	if (unit > 1 || !ide_present(&ch->drive[unit]))
		return -ENODEV;
	pthread_mutex_lock(&dev->lock);
	d = &ch->drive[unit];
	out->c = d->st;
	out->kind = d->kind;
	out->readonly = d->kind == IDE_CDROM || (d->blk && d->blk->readonly);
	snprintf(out->path, sizeof(out->path), "%s", d->blk && d->blk->path ? d->blk->path : "");
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

struct blk_dev *ide_drive_blk(struct device *dev, unsigned unit, enum ide_drive_kind *kind)
{
	struct ide_channel *ch = to_ch(dev);
	struct blk_dev *b;

	*kind = IDE_NONE;
	if (unit > 1 || !ide_present(&ch->drive[unit]))
		return NULL;
	pthread_mutex_lock(&dev->lock);
	b = ch->drive[unit].blk;
	*kind = ch->drive[unit].kind;
	pthread_mutex_unlock(&dev->lock);
	return b;
}

void ide_channel_print_stats(struct device *dev, unsigned first_unit, FILE *f)
{
	static struct ide_drive_stats st; /* 4 KiB of path: not on the stack */

	for (unsigned u = 0; u < 2; u++) {
		if (ide_drive_get_stats(dev, u, &st))
			continue;
		fprintf(f,
			"kestrel: stats: ide unit%u %s path=%s read_ops=%llu read_bytes=%llu "
			"write_ops=%llu write_bytes=%llu flush_ops=%llu errors=%llu\n",
			first_unit + u, st.kind == IDE_CDROM ? "cdrom" : "disk", st.path,
			(unsigned long long)st.c.read_ops, (unsigned long long)st.c.read_bytes,
			(unsigned long long)st.c.write_ops, (unsigned long long)st.c.write_bytes,
			(unsigned long long)st.c.flush_ops, (unsigned long long)st.c.errors);
	}
}

static struct ide_drive *ide_cd_at(struct ide_channel *ch, unsigned unit)
{
	return unit < 2 && ch->drive[unit].kind == IDE_CDROM ? &ch->drive[unit] : NULL;
}

int ide_cd_change(struct device *dev, unsigned unit, struct blk_dev *blk, struct blk_dev **old)
{
	struct ide_channel *ch = to_ch(dev);
	struct ide_drive *d;

	*old = NULL;
	pthread_mutex_lock(&dev->lock);
	d = ide_cd_at(ch, unit);
	if (!d) {
		pthread_mutex_unlock(&dev->lock);
		return -ENODEV;
	}
	ide_wait_idle(ch);
	*old = d->blk;
	d->blk = blk;
	atapi_cd_medium_changed(d);
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

int ide_cd_eject(struct device *dev, unsigned unit, bool force, struct blk_dev **old)
{
	struct ide_channel *ch = to_ch(dev);
	struct ide_drive *d;
	int r = 0;

	*old = NULL;
	pthread_mutex_lock(&dev->lock);
	d = ide_cd_at(ch, unit);
	if (!d) {
		r = -ENODEV;
	} else if (d->cd.locked && !force) {
		atapi_cd_eject_request(d);
		r = -EBUSY;
	} else {
		ide_wait_idle(ch);
		*old = d->blk;
		d->blk = NULL;
		atapi_cd_medium_changed(d);
	}
	pthread_mutex_unlock(&dev->lock);
	return r;
}
