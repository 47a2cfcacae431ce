/* An ATA hard disk behind an IDE channel: the ATA8-ACS (T13/1699-D r6a)
 * commands a PC guest sends — IDENTIFY DEVICE, READ/WRITE SECTORS, MULTIPLE
 * and DMA (28- and 48-bit), READ VERIFY, FLUSH CACHE, SET FEATURES, SET
 * MULTIPLE MODE, the power commands, INITIALIZE DEVICE PARAMETERS and CHS
 * addressing for old guests, SEEK and RECALIBRATE. Everything else is
 * aborted (ABRT), an address outside the disk is IDNF. The channel (ide.c)
 * moves the data; this file decides what a command means. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kestrel/state.h"
#include "ide_priv.h"

#define ATA_CMD_READ_SECTORS	      0x20
#define ATA_CMD_READ_SECTORS_NR	      0x21
#define ATA_CMD_READ_SECTORS_EXT      0x24
#define ATA_CMD_READ_DMA_EXT	      0x25
#define ATA_CMD_READ_MULTIPLE_EXT     0x29
#define ATA_CMD_WRITE_SECTORS	      0x30
#define ATA_CMD_WRITE_SECTORS_NR      0x31
#define ATA_CMD_WRITE_SECTORS_EXT     0x34
#define ATA_CMD_WRITE_DMA_EXT	      0x35
#define ATA_CMD_WRITE_MULTIPLE_EXT    0x39
#define ATA_CMD_READ_VERIFY	      0x40
#define ATA_CMD_READ_VERIFY_NR	      0x41
#define ATA_CMD_READ_VERIFY_EXT	      0x42
#define ATA_CMD_INIT_DEV_PARAMS	      0x91
#define ATA_CMD_READ_MULTIPLE	      0xc4
#define ATA_CMD_WRITE_MULTIPLE	      0xc5
#define ATA_CMD_SET_MULTIPLE	      0xc6
#define ATA_CMD_READ_DMA	      0xc8
#define ATA_CMD_READ_DMA_NR	      0xc9
#define ATA_CMD_WRITE_DMA	      0xca
#define ATA_CMD_WRITE_DMA_NR	      0xcb
#define ATA_CMD_STANDBY_IMMEDIATE     0xe0
#define ATA_CMD_IDLE_IMMEDIATE	      0xe1
#define ATA_CMD_STANDBY		      0xe2
#define ATA_CMD_IDLE		      0xe3
#define ATA_CMD_CHECK_POWER_MODE      0xe5
#define ATA_CMD_FLUSH_CACHE	      0xe7
#define ATA_CMD_FLUSH_CACHE_EXT	      0xea
#define ATA_CMD_SET_FEATURES	      0xef
/* ATA-3 aliases of the power commands. */
#define ATA_CMD_STANDBY_IMMEDIATE_OLD 0x94
#define ATA_CMD_IDLE_IMMEDIATE_OLD    0x95
#define ATA_CMD_STANDBY_OLD	      0x96
#define ATA_CMD_IDLE_OLD	      0x97
#define ATA_CMD_CHECK_POWER_MODE_OLD  0x98

/* SET FEATURES subcommands (ATA8-ACS, SET FEATURES). */
#define SF_WCE_ON	 0x02
#define SF_XFER_MODE	 0x03
#define SF_LOOKAHEAD_OFF 0x55
#define SF_REVERT_OFF	 0x66
#define SF_WCE_OFF	 0x82
#define SF_LOOKAHEAD_ON	 0xaa
#define SF_REVERT_ON	 0xcc

#define LBA28_MAX 0x0fffffffULL

enum ata_op {
	ATA_OP_NONE,
	ATA_OP_BUF,
	ATA_OP_PIO_READ,
	ATA_OP_PIO_WRITE,
	ATA_OP_DMA_READ,
	ATA_OP_DMA_WRITE,
	ATA_OP_FLUSH
};

/* The data commands, decoded from the opcode. */
struct ata_rw {
	uint8_t cmd;
	bool ext, write, dma, multi, verify;
};

static const struct ata_rw ata_rw_cmds[] = {
	{ ATA_CMD_READ_SECTORS, false, false, false, false, false },
	{ ATA_CMD_READ_SECTORS_NR, false, false, false, false, false },
	{ ATA_CMD_READ_SECTORS_EXT, true, false, false, false, false },
	{ ATA_CMD_READ_DMA_EXT, true, false, true, false, false },
	{ ATA_CMD_READ_MULTIPLE_EXT, true, false, false, true, false },
	{ ATA_CMD_WRITE_SECTORS, false, true, false, false, false },
	{ ATA_CMD_WRITE_SECTORS_NR, false, true, false, false, false },
	{ ATA_CMD_WRITE_SECTORS_EXT, true, true, false, false, false },
	{ ATA_CMD_WRITE_DMA_EXT, true, true, true, false, false },
	{ ATA_CMD_WRITE_MULTIPLE_EXT, true, true, false, true, false },
	{ ATA_CMD_READ_VERIFY, false, false, false, false, true },
	{ ATA_CMD_READ_VERIFY_NR, false, false, false, false, true },
	{ ATA_CMD_READ_VERIFY_EXT, true, false, false, false, true },
	{ ATA_CMD_READ_MULTIPLE, false, false, false, true, false },
	{ ATA_CMD_WRITE_MULTIPLE, false, true, false, true, false },
	{ ATA_CMD_READ_DMA, false, false, true, false, false },
	{ ATA_CMD_READ_DMA_NR, false, false, true, false, false },
	{ ATA_CMD_WRITE_DMA, false, true, true, false, false },
	{ ATA_CMD_WRITE_DMA_NR, false, true, true, false, false },
};

static const struct ata_rw *ata_rw_find(uint8_t cmd)
{
	for (size_t i = 0; i < sizeof(ata_rw_cmds) / sizeof(ata_rw_cmds[0]); i++)
		if (ata_rw_cmds[i].cmd == cmd)
			return &ata_rw_cmds[i];
	return NULL;
}

static uint64_t ata_capacity28(const struct ata_state *a)
{
	return MIN(a->nsectors, LBA28_MAX);
}

/* Cylinders of a translation: as many as fit, at most 65535 (word 54). */
static uint16_t ata_cyls_for(const struct ata_state *a, unsigned heads, unsigned spt)
{
	return (uint16_t)MIN(ata_capacity28(a) / (heads * spt), 65535u);
}

/* ---- addresses --------------------------------------------------------- */

/* The command's first sector and count from the task file (the 48-bit
 * Address feature set; CHS as ATA/ATAPI-6 still describes it). false: a CHS address
 * outside the current translation. */
static bool ata_decode(const struct ide_drive *d, bool ext, uint64_t *lba, uint32_t *count,
		       uint8_t *addr)
{
	const struct ide_regs *r = &d->r;
	const struct ata_state *a = &d->ata;

	if (ext) {
		*lba = (uint64_t)r->hob_lbah << 40 | (uint64_t)r->hob_lbam << 32 |
		       (uint64_t)r->hob_lbal << 24 | (uint64_t)r->lbah << 16 |
		       (uint64_t)r->lbam << 8 | r->lbal;
		*count = (uint32_t)r->hob_nsector << 8 | r->nsector;
		if (!*count)
			*count = 65536;
		*addr = ATA_ADDR_LBA48;
		return true;
	}
	*count = r->nsector ? r->nsector : 256;
	if (r->device & ATA_DEV_LBA) {
		*lba = (uint64_t)(r->device & ATA_DEV_HEAD) << 24 | (uint64_t)r->lbah << 16 |
		       (uint64_t)r->lbam << 8 | r->lbal;
		*addr = ATA_ADDR_LBA28;
		return true;
	}
	{
		unsigned cyl = (unsigned)r->lbah << 8 | r->lbam, head = r->device & ATA_DEV_HEAD;
		unsigned sect = r->lbal;

		if (!sect || sect > a->cur_spt || head >= a->cur_heads || cyl >= a->cur_cyls)
			return false;
		*lba = ((uint64_t)cyl * a->cur_heads + head) * a->cur_spt + sect - 1;
		*addr = ATA_ADDR_CHS;
		return true;
	}
}

/* Is [lba, lba+count) addressable in this mode (28-bit and CHS stop at
 * words 60-61, 48-bit at words 100-103)? No sum overflows. */
static bool ata_range_ok(const struct ata_state *a, uint8_t addr, uint64_t lba, uint64_t count)
{
	uint64_t max = addr == ATA_ADDR_LBA48 ? a->nsectors : ata_capacity28(a);

	return lba < max && count <= max - lba;
}

/* Put a sector address back in the task file, the way it was given (after a
 * block: the last sector moved; on error: the first one that failed). */
static void ata_set_lba(struct ide_drive *d, uint64_t lba)
{
	struct ide_regs *r = &d->r;
	const struct ata_state *a = &d->ata;

	switch (a->addr) {
	case ATA_ADDR_LBA48:
		r->hob_lbah = (uint8_t)(lba >> 40);
		r->hob_lbam = (uint8_t)(lba >> 32);
		r->hob_lbal = (uint8_t)(lba >> 24);
		break;
	case ATA_ADDR_LBA28:
		r->device = (uint8_t)((r->device & ~ATA_DEV_HEAD) | ((lba >> 24) & ATA_DEV_HEAD));
		break;
	default: {
		uint64_t track = lba / a->cur_spt;

		r->lbal = (uint8_t)(lba % a->cur_spt + 1);
		r->device = (uint8_t)((r->device & ~ATA_DEV_HEAD) | (track % a->cur_heads));
		track /= a->cur_heads;
		r->lbam = (uint8_t)track;
		r->lbah = (uint8_t)(track >> 8);
		return;
	}
	}
	r->lbal = (uint8_t)lba;
	r->lbam = (uint8_t)(lba >> 8);
	r->lbah = (uint8_t)(lba >> 16);
}

/* ---- IDENTIFY DEVICE (ATA8-ACS r6a Table 29) ------------------------------ */

static void ata_identify_page(const struct ide_channel *ch, const struct ide_drive *d, uint8_t *p)
{
	const struct ata_state *a = &d->ata;
	uint64_t cap28 = ata_capacity28(a);
	uint32_t cur_cap = (uint32_t)MIN((uint64_t)a->cur_cyls * a->cur_heads * a->cur_spt, cap28);

	memset(p, 0, IDE_SECTOR);
	ide_put_word(p, 0, 0x0040); /* fixed device, ATA */
	ide_put_word(p, 1, a->cyls);
	ide_put_word(p, 3, a->heads);
	ide_put_word(p, 6, a->spt);
	ide_put_string(p, 10, 10, d->serial);
	ide_put_string(p, 23, 4, KESTREL_VERSION);
	ide_put_string(p, 27, 20, d->model);
	ide_put_word(p, 47, 0x8000 | ATA_MAX_MULT);
	ide_put_word(p, 49, (1 << 11) | (1 << 9) | (1 << 8)); /* IORDY, LBA, DMA */
	ide_put_word(p, 50, 0x4000);
	ide_put_word(p, 53, 0x0007); /* words 54-58, 64-70 and 88 valid */
	ide_put_word(p, 54, a->cur_cyls);
	ide_put_word(p, 55, a->cur_heads);
	ide_put_word(p, 56, a->cur_spt);
	ide_put_word(p, 57, (uint16_t)cur_cap);
	ide_put_word(p, 58, (uint16_t)(cur_cap >> 16));
	ide_put_word(p, 59, (uint16_t)(0x100 | a->mult));
	ide_put_word(p, 60, (uint16_t)cap28);
	ide_put_word(p, 61, (uint16_t)(cap28 >> 16));
	ide_put_word(p, 63, ide_mwdma_word(a->xfer_mode));
	ide_put_word(p, 64, 0x0003); /* PIO 3 and 4 */
	for (unsigned w = 65; w <= 68; w++)
		ide_put_word(p, w, 120); /* ns cycle times */
	ide_put_word(p, 80, 0x00f0);	 /* ATA-4 .. ATA/ATAPI-7 */
	/* 82/85: power management, write cache, look-ahead (85: enabled). */
	ide_put_word(p, 82, (1 << 3) | (1 << 5) | (1 << 6));
	ide_put_word(p, 85,
		     (uint16_t)((1 << 3) | (a->wce ? 1 << 5 : 0) | (a->lookahead ? 1 << 6 : 0)));
	/* 83/86: FLUSH CACHE EXT, FLUSH CACHE, 48-bit addressing. */
	ide_put_word(p, 83, 0x4000 | (1 << 13) | (1 << 12) | (1 << 10));
	ide_put_word(p, 86, (1 << 13) | (1 << 12) | (1 << 10));
	ide_put_word(p, 84, 0x4000);
	ide_put_word(p, 87, 0x4000);
	ide_put_word(p, 88, ide_udma_word(a->xfer_mode));
	ide_put_word(p, 93, ide_reset_result(ch, d));
	for (unsigned w = 0; w < 4; w++)
		ide_put_word(p, 100 + w, (uint16_t)(a->nsectors >> (16 * w)));
	ide_put_word(p, 106, 0x4000); /* one 512-byte logical sector per physical */
	ide_identify_checksum(p);
}

/* ---- commands ------------------------------------------------------------ */

static void ata_abort(struct ide_channel *ch, struct ide_drive *d)
{
	d->ata.op = ATA_OP_NONE;
	ide_cmd_error(ch, d, ATA_ER_ABRT);
}

static void ata_done(struct ide_channel *ch, struct ide_drive *d)
{
	d->ata.op = ATA_OP_NONE;
	ide_cmd_done(ch, d);
}

/* A block-layer or bus-master error, reported at the first sector of the
 * request that failed: UNC for a read the medium refused, IDNF for an
 * address the disk does not have, ABRT for everything else. */
static void ata_io_error(struct ide_channel *ch, struct ide_drive *d, int status)
{
	struct ata_state *a = &d->ata;
	uint8_t err = ATA_ER_ABRT;

	if (status == -EINVAL)
		err = ATA_ER_IDNF;
	else if (status == -EIO && (a->op == ATA_OP_PIO_READ || a->op == ATA_OP_DMA_READ))
		err = ATA_ER_UNC;
	if (a->op != ATA_OP_FLUSH)
		ata_set_lba(d, a->io_lba);
	if (a->op != ATA_OP_BUF && a->op != ATA_OP_NONE)
		d->st.errors++;
	a->op = ATA_OP_NONE;
	ide_cmd_error(ch, d, err);
}

/* A READ or WRITE of sectors that succeeded (kestrel/ide.h, stats). */
static void ata_count(struct ide_drive *d, bool write, uint32_t sectors)
{
	if (write) {
		d->st.write_ops++;
		d->st.write_bytes += (uint64_t)sectors * IDE_SECTOR;
	} else {
		d->st.read_ops++;
		d->st.read_bytes += (uint64_t)sectors * IDE_SECTOR;
	}
}

static bool ata_fua(const struct ide_drive *d)
{
	return !d->ata.wce;
}

static unsigned ata_drq_sectors(const struct ide_drive *d)
{
	const struct ata_rw *rw = ata_rw_find(d->r.command);

	return rw && rw->multi ? MAX(d->ata.mult, 1u) : 1;
}

/* PIO moves through the buffer in requests of up to ATA_BUF_SECTORS: a read
 * fetches ahead of the DRQ blocks the host takes, a write collects them and
 * goes to the disk when the buffer is full or the command ends (its status
 * comes after that, so a write error is still reported, at the first sector
 * of the request). One block request per 64 KiB rather than per sector. */
#define ATA_BUF_SECTORS (IDE_BUF_SIZE / IDE_SECTOR)

static void ata_pio_fetch(struct ide_channel *ch, struct ide_drive *d)
{
	struct ata_state *a = &d->ata;

	a->io_lba = a->lba;
	a->io_n = MIN(a->left, ATA_BUF_SECTORS);
	ide_blk_start(ch, d, BLK_OP_READ, a->io_lba * IDE_SECTOR, a->io_n * IDE_SECTOR, false);
}

/* Offer the next DRQ block: the buffer holds it from io_lba on. */
static void ata_pio_block(struct ide_channel *ch, struct ide_drive *d, bool in, bool irq)
{
	struct ata_state *a = &d->ata;
	uint32_t at = (uint32_t)(a->lba - a->io_lba) * IDE_SECTOR;

	a->block = MIN(a->left, ata_drq_sectors(d));
	if (in) {
		ide_pio_in(ch, d, at, at + a->block * IDE_SECTOR, irq);
		ata_set_lba(d, a->lba + a->block - 1);
		d->r.nsector = (uint8_t)(a->left - a->block);
	} else {
		ide_pio_out(ch, d, at, at + a->block * IDE_SECTOR, irq);
	}
}

static void ata_rw_start(struct ide_channel *ch, struct ide_drive *d, const struct ata_rw *rw)
{
	struct ata_state *a = &d->ata;
	uint64_t lba;
	uint32_t count;
	uint8_t addr;

	if (!ata_decode(d, rw->ext, &lba, &count, &addr) || !ata_range_ok(a, addr, lba, count)) {
		d->st.errors++;
		ide_cmd_error(ch, d, ATA_ER_IDNF);
		return;
	}
	/* READ/WRITE MULTIPLE before SET MULTIPLE MODE: ABRT (ATA8-ACS, READ MULTIPLE). */
	if ((rw->multi && !a->mult) || (rw->write && d->blk->readonly)) {
		d->st.errors++;
		ata_abort(ch, d);
		return;
	}
	a->count = count;
	a->standby = false;
	a->lba = lba;
	a->left = count;
	a->addr = addr;
	if (rw->verify) {
		ata_set_lba(d, lba + count - 1);
		ata_done(ch, d);
	} else if (rw->dma) {
		a->op = rw->write ? ATA_OP_DMA_WRITE : ATA_OP_DMA_READ;
		a->block = count;
		a->io_lba = lba;
		ide_dma_start(ch, d, !rw->write, false, lba * IDE_SECTOR,
			      (uint64_t)count * IDE_SECTOR, ata_fua(d));
	} else if (rw->write) {
		/* PIO data-out: the first block without an interrupt. */
		a->op = ATA_OP_PIO_WRITE;
		a->io_lba = lba;
		a->io_n = 0;
		ata_pio_block(ch, d, false, false);
	} else {
		a->op = ATA_OP_PIO_READ;
		ata_pio_fetch(ch, d);
	}
}

static void ata_identify(struct ide_channel *ch, struct ide_drive *d)
{
	ata_identify_page(ch, d, ch->buf);
	d->ata.op = ATA_OP_BUF;
	ide_pio_in(ch, d, 0, IDE_SECTOR, true);
}

static void ata_flush(struct ide_channel *ch, struct ide_drive *d)
{
	d->ata.op = ATA_OP_FLUSH;
	ide_blk_start(ch, d, BLK_OP_FLUSH, 0, 0, false);
}

/* SET MULTIPLE MODE: 0 disables; otherwise a count the device supports. */
static void ata_set_multiple(struct ide_channel *ch, struct ide_drive *d)
{
	unsigned n = d->r.nsector;

	if (n > ATA_MAX_MULT || (n & (n - 1))) {
		ata_abort(ch, d);
		return;
	}
	d->ata.mult = (uint8_t)n;
	ata_done(ch, d);
}

/* INITIALIZE DEVICE PARAMETERS (ATA/ATAPI-6; obsolete since ATA8, still sent by old BIOSes and
 * DOS): the translation's heads and sectors per track. */
static void ata_init_dev_params(struct ide_channel *ch, struct ide_drive *d)
{
	struct ata_state *a = &d->ata;
	unsigned heads = (d->r.device & ATA_DEV_HEAD) + 1u, spt = d->r.nsector;

	if (!spt || !ata_cyls_for(a, heads, spt)) {
		ata_abort(ch, d);
		return;
	}
	a->cur_heads = (uint16_t)heads;
	a->cur_spt = (uint16_t)spt;
	a->cur_cyls = ata_cyls_for(a, heads, spt);
	ata_done(ch, d);
}

static void ata_set_features(struct ide_channel *ch, struct ide_drive *d)
{
	struct ata_state *a = &d->ata;

	switch (d->r.feature) {
	case SF_WCE_ON: a->wce = true; break;
	case SF_WCE_OFF:
		/* What the cache holds becomes durable before completion. */
		a->wce = false;
		ata_flush(ch, d);
		return;
	case SF_XFER_MODE:
		if (!ide_xfer_mode_ok(d->r.nsector)) {
			ata_abort(ch, d);
			return;
		}
		a->xfer_mode = d->r.nsector;
		break;
	case SF_LOOKAHEAD_ON:
	case SF_LOOKAHEAD_OFF: a->lookahead = d->r.feature == SF_LOOKAHEAD_ON; break;
	case SF_REVERT_ON:
	case SF_REVERT_OFF: break;
	default: ata_abort(ch, d); return;
	}
	ata_done(ch, d);
}

/* SEEK (ATA/ATAPI-6; obsolete in ATA8): the address must exist. */
static void ata_seek(struct ide_channel *ch, struct ide_drive *d)
{
	uint64_t lba;
	uint32_t count;
	uint8_t addr;

	if (!ata_decode(d, false, &lba, &count, &addr) || !ata_range_ok(&d->ata, addr, lba, 1)) {
		ide_cmd_error(ch, d, ATA_ER_IDNF);
		return;
	}
	ata_done(ch, d);
}

static void ata_power(struct ide_channel *ch, struct ide_drive *d, uint8_t cmd)
{
	switch (cmd) {
	case ATA_CMD_CHECK_POWER_MODE:
	case ATA_CMD_CHECK_POWER_MODE_OLD:
		/* CHECK POWER MODE: FFh active or idle, 00h standby. */
		d->ata.op = ATA_OP_NONE;
		ide_cmd_done(ch, d);
		d->r.nsector = d->ata.standby ? 0x00 : 0xff;
		return;
	case ATA_CMD_STANDBY_IMMEDIATE:
	case ATA_CMD_STANDBY_IMMEDIATE_OLD:
	case ATA_CMD_STANDBY:
	case ATA_CMD_STANDBY_OLD: d->ata.standby = true; break;
	default: d->ata.standby = false; break;
	}
	ata_done(ch, d);
}

static void ata_exec(struct ide_channel *ch, struct ide_drive *d)
{
	uint8_t cmd = d->r.command;
	const struct ata_rw *rw = ata_rw_find(cmd);

	if (rw) {
		ata_rw_start(ch, d, rw);
		return;
	}
	if ((cmd & 0xf0) == 0x10) { /* RECALIBRATE (obsolete) */
		ata_done(ch, d);
		return;
	}
	if ((cmd & 0xf0) == 0x70) {
		ata_seek(ch, d);
		return;
	}
	switch (cmd) {
	case ATA_CMD_IDENTIFY: ata_identify(ch, d); return;
	case ATA_CMD_SET_MULTIPLE: ata_set_multiple(ch, d); return;
	case ATA_CMD_INIT_DEV_PARAMS: ata_init_dev_params(ch, d); return;
	case ATA_CMD_SET_FEATURES: ata_set_features(ch, d); return;
	case ATA_CMD_FLUSH_CACHE:
	case ATA_CMD_FLUSH_CACHE_EXT: ata_flush(ch, d); return;
	case ATA_CMD_STANDBY_IMMEDIATE:
	case ATA_CMD_IDLE_IMMEDIATE:
	case ATA_CMD_STANDBY:
	case ATA_CMD_IDLE:
	case ATA_CMD_CHECK_POWER_MODE:
	case ATA_CMD_STANDBY_IMMEDIATE_OLD:
	case ATA_CMD_IDLE_IMMEDIATE_OLD:
	case ATA_CMD_STANDBY_OLD:
	case ATA_CMD_IDLE_OLD:
	case ATA_CMD_CHECK_POWER_MODE_OLD: ata_power(ch, d, cmd); return;
	}
	/* IDENTIFY PACKET DEVICE, PACKET, DEVICE RESET and anything unknown. */
	ata_abort(ch, d);
}

/* ---- data phases ------------------------------------------------------------ */

static void ata_pio_done(struct ide_channel *ch, struct ide_drive *d)
{
	struct ata_state *a = &d->ata;

	switch (a->op) {
	case ATA_OP_PIO_READ:
		a->lba += a->block;
		a->left -= a->block;
		if (a->left && a->lba + MIN(a->left, ata_drq_sectors(d)) <= a->io_lba + a->io_n) {
			ata_pio_block(ch, d, true, true);
			return;
		}
		if (a->left) {
			ata_pio_fetch(ch, d);
			return;
		}
		break;
	case ATA_OP_PIO_WRITE:
		a->lba += a->block;
		a->left -= a->block;
		a->io_n += a->block;
		ata_set_lba(d, a->lba - 1);
		d->r.nsector = (uint8_t)a->left;
		if (a->left && a->io_n + MIN(a->left, ata_drq_sectors(d)) <= ATA_BUF_SECTORS) {
			ata_pio_block(ch, d, false, true);
			return;
		}
		ide_blk_start(ch, d, BLK_OP_WRITE, a->io_lba * IDE_SECTOR, a->io_n * IDE_SECTOR,
			      ata_fua(d));
		return;
	default: break;
	}
	/* The last block of a PIO data-in command: no interrupt (ATA/ATAPI-6
	 * 9.7, PIO data-in protocol). */
	if (a->op == ATA_OP_PIO_READ)
		ata_count(d, false, a->count);
	a->op = ATA_OP_NONE;
	d->r.status = ATA_ST_READY;
}

static void ata_io_done(struct ide_channel *ch, struct ide_drive *d, int status)
{
	struct ata_state *a = &d->ata;

	if (status) {
		ata_io_error(ch, d, status);
		return;
	}
	switch (a->op) {
	case ATA_OP_PIO_READ: ata_pio_block(ch, d, true, true); return;
	case ATA_OP_PIO_WRITE:
		if (a->left) {
			a->io_lba = a->lba;
			a->io_n = 0;
			ata_pio_block(ch, d, false, true);
			return;
		}
		ata_count(d, true, a->count);
		break;
	case ATA_OP_DMA_READ:
	case ATA_OP_DMA_WRITE:
		ata_set_lba(d, a->lba + a->left - 1);
		d->r.nsector = 0;
		ata_count(d, a->op == ATA_OP_DMA_WRITE, a->count);
		break;
	case ATA_OP_FLUSH: d->st.flush_ops++; break;
	default: break;
	}
	ata_done(ch, d);
}

/* Power-on: the default translation, no multiple mode (SET MULTIPLE MODE), the
 * write cache as the disk's cache mode has one, PIO default mode. A
 * software reset keeps the settings and drops the command. */
static void ata_reset(struct ide_drive *d, bool hard)
{
	struct ata_state *a = &d->ata;

	a->op = ATA_OP_NONE;
	a->left = a->block = a->io_n = 0;
	a->lba = a->io_lba = 0;
	a->addr = ATA_ADDR_LBA28;
	if (!hard)
		return;
	a->cur_cyls = a->cyls;
	a->cur_heads = a->heads;
	a->cur_spt = a->spt;
	a->mult = 0;
	a->wce = blk_cache_volatile(d->blk->opts.cache);
	a->lookahead = true;
	a->standby = false;
	a->xfer_mode = 0x00; /* PIO default */
}

/* The default geometry BIOSes and other VMMs use: 16 heads,
 * 63 sectors per track, at most 16383 cylinders. */
int ata_disk_init(struct ide_drive *d, char *err, size_t errlen)
{
	struct ata_state *a = &d->ata;

	if (!d->blk) {
		snprintf(err, errlen, "IDE disk at unit %u has no image", d->unit);
		return -EINVAL;
	}
	a->nsectors = d->blk->size / IDE_SECTOR;
	if (a->nsectors == 0 || a->nsectors > (1ULL << 48)) {
		snprintf(err, errlen, "%s: an IDE disk holds 1 to 2^48 sectors of 512 bytes",
			 d->blk->path);
		return -EINVAL;
	}
	a->heads = 16;
	a->spt = 63;
	a->cyls = (uint16_t)MAX(MIN(ata_capacity28(a) / (16 * 63), 16383u), 1u);
	ata_reset(d, true);
	return 0;
}

/* ---- state ------------------------------------------------------------- */

void ata_disk_save(const struct ide_drive *d, struct state_buf *out)
{
	const struct ata_state *a = &d->ata;

	state_put_u64(out, a->nsectors);
	state_put_u16(out, a->cur_cyls);
	state_put_u16(out, a->cur_heads);
	state_put_u16(out, a->cur_spt);
	state_put_u8(out, a->mult);
	state_put_u8(out, (uint8_t)(a->wce | a->lookahead << 1 | a->standby << 2));
	state_put_u8(out, a->xfer_mode);
	state_put_u64(out, a->lba);
	state_put_u32(out, a->left);
	state_put_u32(out, a->block);
	state_put_u64(out, a->io_lba);
	state_put_u32(out, a->io_n);
	state_put_u8(out, a->addr);
	state_put_u8(out, a->op);
}

/* The power-on translation, or one INITIALIZE DEVICE PARAMETERS made. */
static bool ata_geometry_ok(const struct ata_state *a)
{
	if (a->cur_cyls == a->cyls && a->cur_heads == a->heads && a->cur_spt == a->spt)
		return true;
	return a->cur_heads >= 1 && a->cur_heads <= 16 && a->cur_spt >= 1 && a->cur_spt <= 255 &&
	       a->cur_cyls && a->cur_cyls == ata_cyls_for(a, a->cur_heads, a->cur_spt);
}

/* Into tmp (a copy of the drive); every field checked against this disk. */
bool ata_disk_load(struct ide_drive *tmp, struct state_buf *in)
{
	struct ata_state *a = &tmp->ata;
	uint64_t nsectors = state_get_u64(in);
	uint8_t flags;

	a->cur_cyls = state_get_u16(in);
	a->cur_heads = state_get_u16(in);
	a->cur_spt = state_get_u16(in);
	a->mult = state_get_u8(in);
	flags = state_get_u8(in);
	a->xfer_mode = state_get_u8(in);
	a->lba = state_get_u64(in);
	a->left = state_get_u32(in);
	a->block = state_get_u32(in);
	a->io_lba = state_get_u64(in);
	a->io_n = state_get_u32(in);
	a->addr = state_get_u8(in);
	a->op = state_get_u8(in);
	a->wce = flags & 1;
	a->lookahead = flags & 2;
	a->standby = flags & 4;
	if (in->error || nsectors != a->nsectors || flags > 7 || !ide_xfer_mode_ok(a->xfer_mode))
		return false;
	if (a->mult > ATA_MAX_MULT || (a->mult & (a->mult - 1)) || a->addr > ATA_ADDR_LBA48 ||
	    a->op > ATA_OP_FLUSH)
		return false;
	if (!ata_geometry_ok(a))
		return false;
	if (a->io_n > ATA_BUF_SECTORS || a->io_lba > a->nsectors ||
	    a->io_n > a->nsectors - a->io_lba)
		return false;
	if (a->op == ATA_OP_PIO_READ || a->op == ATA_OP_PIO_WRITE) {
		/* The block the host moves lies in the buffer's requests. */
		if (!a->block || a->block > ATA_MAX_MULT || a->lba < a->io_lba ||
		    a->lba - a->io_lba > a->io_n ||
		    (a->lba - a->io_lba + a->block) * IDE_SECTOR > IDE_BUF_SIZE)
			return false;
	}
	/* block is the last block's size once a transfer is over (left 0). */
	return (a->block <= a->left || !a->left) && a->left <= 65536 && a->lba <= a->nsectors &&
	       a->left <= a->nsectors - a->lba;
}

/* The part of the buffer a PIO command still needs: the blocks fetched
 * ahead or collected, and the one the host is moving. */
static uint32_t ata_buf_used(const struct ide_drive *d)
{
	const struct ata_state *a = &d->ata;
	uint64_t block_end;

	if (a->op != ATA_OP_PIO_READ && a->op != ATA_OP_PIO_WRITE)
		return 0;
	block_end = (a->lba - a->io_lba + a->block) * IDE_SECTOR;
	return (uint32_t)MIN(MAX(block_end, (uint64_t)a->io_n * IDE_SECTOR), IDE_BUF_SIZE);
}

const struct ide_drive_ops ata_disk_ops = {
	.exec = ata_exec,
	.pio_done = ata_pio_done,
	.io_done = ata_io_done,
	.reset = ata_reset,
	.buf_used = ata_buf_used,
};
