/* An ATAPI CD-ROM (DVD-ROM for a large medium) behind an IDE channel: the
 * PACKET command and its protocol (ATA8-ACS; ATA/ATAPI-6 for the protocol)
 * and the MMC-5 (T10/1675D) commands boot loaders and Linux's sr and cdrom
 * drivers send. SPC pieces (INQUIRY data, sense data, READ CAPACITY and the
 * READ(10)/(12) decoding) come from the SCSI disk interpreter
 * (devices/synthetic/scsi_disk.c) with a read-only 2048-byte-block unit.
 *
 * Sense is kept until the next command (ATAPI has no autosense): a CHECK
 * CONDITION sets ERR with the sense key in the error register's high nibble,
 * and REQUEST SENSE returns the rest. A medium change raises UNIT ATTENTION
 * 28/00 once (INQUIRY, REQUEST SENSE, GET CONFIGURATION and GET EVENT STATUS
 * NOTIFICATION pass it, as MMC-5 allows) and a media event for GESN; an
 * empty drive is NOT READY 3A/00 (3A/02 with the tray open). */
#include <errno.h>
#include <string.h>

#include "kestrel/byteorder.h"
#include "kestrel/state.h"
#include "ide_priv.h"

#define SCSI_TYPE_CDROM 0x05

#define MMC_READ_TOC	      0x43
#define MMC_GET_CONFIGURATION 0x46
#define MMC_GET_EVENT_STATUS  0x4a
#define MMC_READ_DISC_INFO    0x51
#define MMC_SET_CD_SPEED      0xbb
#define MMC_MECHANISM_STATUS  0xbd

#define ATA_CMD_SET_FEATURES	  0xef
#define ATA_CMD_CHECK_POWER_MODE  0xe5
#define ATA_CMD_IDLE_IMMEDIATE	  0xe1
#define ATA_CMD_STANDBY_IMMEDIATE 0xe0

/* MMC-5 media event codes (GET EVENT STATUS NOTIFICATION), kept in atapi_state.event. */
#define MEV_NONE	  0
#define MEV_EJECT_REQUEST 1
#define MEV_NEW_MEDIA	  2
#define MEV_MEDIA_REMOVAL 3

/* MMC-5 profiles; above a CD's 80 minutes the medium is a DVD. */
#define PROFILE_CDROM  0x0008
#define PROFILE_DVDROM 0x0010
#define CD_MAX_BLOCKS  (80u * 60 * 75)

enum atapi_op { CD_OP_NONE, CD_OP_CDB, CD_OP_DATA, CD_OP_FETCH, CD_OP_DMA };

static bool cd_has_medium(const struct ide_drive *d)
{
	return d->blk && !d->cd.tray_open && d->cd.nblocks;
}

static uint16_t cd_profile(const struct ide_drive *d)
{
	if (!cd_has_medium(d))
		return 0;
	return d->cd.nblocks > CD_MAX_BLOCKS ? PROFILE_DVDROM : PROFILE_CDROM;
}

/* ---- completion of a packet command ----------------------------------------- */

/* The PACKET protocol's status phase: CoD and IO both set, an interrupt. */
static bool cd_is_read(const struct ide_drive *d)
{
	return d->r.command == ATA_CMD_PACKET &&
	       (d->cd.cdb[0] == SCSI_READ_10 || d->cd.cdb[0] == SCSI_READ_12);
}

static void cd_good(struct ide_channel *ch, struct ide_drive *d)
{
	if (cd_is_read(d)) {
		d->st.read_ops++;
		d->st.read_bytes += d->cd.read_bytes;
	}
	d->cd.op = CD_OP_NONE;
	d->cd.sense = (struct scsi_sense){ SCSI_SENSE_NO_SENSE, SCSI_ASC_NONE };
	ide_cmd_done(ch, d);
	d->r.nsector = ATAPI_IR_IO | ATAPI_IR_COD;
}

static void cd_check(struct ide_channel *ch, struct ide_drive *d, uint8_t key, uint16_t asc)
{
	if (cd_is_read(d))
		d->st.errors++;
	d->cd.op = CD_OP_NONE;
	d->cd.sense = (struct scsi_sense){ key, asc };
	ide_cmd_error(ch, d, (uint8_t)(key << 4));
	d->r.nsector = ATAPI_IR_IO | ATAPI_IR_COD;
}

static void cd_illegal(struct ide_channel *ch, struct ide_drive *d, uint16_t asc)
{
	cd_check(ch, d, SCSI_SENSE_ILLEGAL_REQUEST, asc);
}

/* A PIO DRQ block of the data-in phase: at most the byte count limit the
 * host gave, even unless it is the last one (ATA8-ACS PACKET: an odd limit
 * is used as limit-1 when more data follows); 0 means the largest. */
static uint32_t cd_chunk(uint32_t remaining, uint16_t bcl)
{
	uint32_t limit = (bcl == 0 || bcl == 0xffff) ? 0xfffe : bcl;

	if (remaining <= limit)
		return remaining;
	limit &= ~1u;
	return limit ? limit : 2;
}

/* Hand the host the next piece of the data-in phase, fetch more blocks, or
 * end the command. */
static void cd_pio_next(struct ide_channel *ch, struct ide_drive *d)
{
	struct atapi_state *cd = &d->cd;

	if (cd->pos < cd->end) {
		uint32_t n = cd_chunk(cd->end - cd->pos, cd->bcl);

		cd->op = CD_OP_DATA;
		ide_pio_in(ch, d, cd->pos, cd->pos + n, true);
		cd->pos += n;
		d->r.lbam = (uint8_t)n;
		d->r.lbah = (uint8_t)(n >> 8);
		d->r.nsector = ATAPI_IR_IO;
		return;
	}
	if (cd->left) {
		uint32_t n = MIN(cd->left, IDE_BUF_SIZE / ATAPI_BLOCK);

		cd->op = CD_OP_FETCH;
		ide_blk_start(ch, d, BLK_OP_READ, cd->lba * ATAPI_BLOCK, n * ATAPI_BLOCK, false);
		return;
	}
	cd_good(ch, d);
}

/* Data-in of len bytes already in the buffer (the answer of a command). */
static void cd_data_in(struct ide_channel *ch, struct ide_drive *d, uint32_t len)
{
	struct atapi_state *cd = &d->cd;

	cd->left = 0;
	if (!len) {
		cd_good(ch, d);
		return;
	}
	if (cd->dma) {
		cd->op = CD_OP_DMA;
		ide_dma_start(ch, d, true, true, 0, len, false);
		return;
	}
	cd->pos = 0;
	cd->end = len;
	cd_pio_next(ch, d);
}

static void cd_read_blocks(struct ide_channel *ch, struct ide_drive *d, uint64_t lba, uint32_t n)
{
	struct atapi_state *cd = &d->cd;

	cd->lba = lba;
	cd->left = n;
	cd->read_bytes = (uint64_t)n * ATAPI_BLOCK;
	if (cd->dma) {
		cd->op = CD_OP_DMA;
		cd->left = 0;
		ide_dma_start(ch, d, true, false, lba * ATAPI_BLOCK, (uint64_t)n * ATAPI_BLOCK,
			      false);
		return;
	}
	cd->pos = cd->end = 0;
	cd_pio_next(ch, d);
}

/* ---- MMC answers ---------------------------------------------------------- */

/* MMC-5 (READ TOC/PMA/ATIP): LBA 0 is MSF 00:02:00. */
static void cd_msf(uint8_t *p, uint64_t lba)
{
	uint64_t f = lba + 150;

	p[0] = (uint8_t)MIN(f / (75 * 60), 0xffu);
	p[1] = (uint8_t)(f / 75 % 60);
	p[2] = (uint8_t)(f % 75);
}

static void cd_toc_addr(uint8_t *p, uint64_t lba, bool msf)
{
	if (msf) {
		p[0] = 0;
		cd_msf(p + 1, lba);
	} else {
		put_be32(p, (uint32_t)MIN(lba, 0xffffffffULL));
	}
}

/* READ TOC/PMA/ATIP (MMC-5): one data track, one session. Format 0
 * (TOC), 1 (session information) and 2 (raw TOC). */
static uint32_t cd_read_toc(const struct ide_drive *d, const uint8_t *cdb, uint8_t *b)
{
	bool msf = cdb[1] & 0x02;
	uint8_t format = cdb[2] & 0x0f, start = cdb[6];
	uint32_t n = 4;

	if (!format && (cdb[9] >> 6))
		format = cdb[9] >> 6; /* SFF-8020i's place for it */
	memset(b, 0, 64);
	b[2] = b[3] = 1; /* first and last track / session */
	switch (format) {
	case 0:
		if (start > 1 && start != 0xaa)
			return 0;
		if (start <= 1) {
			b[n + 1] = 0x14; /* ADR 1, data track */
			b[n + 2] = 1;
			cd_toc_addr(b + n + 4, 0, msf);
			n += 8;
		}
		b[n + 1] = 0x14;
		b[n + 2] = 0xaa; /* lead-out */
		cd_toc_addr(b + n + 4, d->cd.nblocks, msf);
		n += 8;
		break;
	case 1:
		b[n + 1] = 0x14;
		b[n + 2] = 1;
		cd_toc_addr(b + n + 4, 0, msf);
		n += 8;
		break;
	case 2: {
		static const uint8_t points[] = { 0xa0, 0xa1, 0xa2, 0x01 };

		for (unsigned i = 0; i < 4; i++, n += 11) {
			uint8_t *e = b + n;

			e[0] = 1; /* session */
			e[1] = 0x14;
			e[3] = points[i];
			if (points[i] == 0xa2)
				cd_msf(e + 8, d->cd.nblocks);
			else if (points[i] == 0x01)
				cd_msf(e + 8, 0);
			else
				e[8] = 1; /* first / last track number */
		}
		break;
	}
	default: return 0;
	}
	put_be16(b, (uint16_t)(n - 2));
	return n;
}

/* One feature descriptor (MMC-5, features): code, version, persistent/current. */
static uint32_t cd_feature(uint8_t *p, uint16_t code, uint8_t version, bool persistent,
			   bool current, uint8_t len)
{
	put_be16(p, code);
	p[2] = (uint8_t)(version << 2 | (persistent ? 2 : 0) | (current ? 1 : 0));
	p[3] = len;
	memset(p + 4, 0, len);
	return 4u + len;
}

/* GET CONFIGURATION (MMC-5): Profile List, Core, Morphing, Removable
 * Medium, Random Readable, CD Read, DVD Read. RT 0: all from the starting
 * feature, 1: the current ones, 2: the starting feature only. */
static uint32_t cd_get_config(const struct ide_drive *d, const uint8_t *cdb, uint8_t *b)
{
	uint16_t start = get_be16(cdb + 2), prof = cd_profile(d);
	uint8_t rt = cdb[1] & 3, f[128];
	uint32_t n = 8;
	bool media = prof != 0;
	struct {
		uint16_t code;
		uint32_t len;
		bool current;
	} list[7];
	uint32_t off = 0;
	unsigned k = 0;

	list[k].code = 0x0000; /* Profile List */
	list[k].len = cd_feature(f + off, 0x0000, 0, true, true, 8);
	put_be16(f + off + 4, PROFILE_DVDROM);
	f[off + 6] = prof == PROFILE_DVDROM;
	put_be16(f + off + 8, PROFILE_CDROM);
	f[off + 10] = prof == PROFILE_CDROM;
	list[k].current = true;
	off += list[k++].len;
	list[k].code = 0x0001; /* Core: ATAPI, DBE */
	list[k].len = cd_feature(f + off, 0x0001, 1, true, true, 8);
	put_be32(f + off + 4, 2);
	f[off + 8] = 0x01;
	list[k].current = true;
	off += list[k++].len;
	list[k].code = 0x0002; /* Morphing: OCEvent */
	list[k].len = cd_feature(f + off, 0x0002, 1, true, true, 4);
	f[off + 4] = 0x02;
	list[k].current = true;
	off += list[k++].len;
	list[k].code = 0x0003; /* Removable Medium: tray, eject, lock */
	list[k].len = cd_feature(f + off, 0x0003, 0, true, true, 4);
	f[off + 4] = 0x20 | 0x08 | 0x01;
	list[k].current = true;
	off += list[k++].len;
	list[k].code = 0x0010; /* Random Readable */
	list[k].len = cd_feature(f + off, 0x0010, 0, false, media, 8);
	put_be32(f + off + 4, ATAPI_BLOCK);
	put_be16(f + off + 8, prof == PROFILE_DVDROM ? 16 : 1);
	list[k].current = media;
	off += list[k++].len;
	list[k].code = 0x001e; /* CD Read */
	list[k].len = cd_feature(f + off, 0x001e, 2, false, prof == PROFILE_CDROM, 4);
	list[k].current = prof == PROFILE_CDROM;
	off += list[k++].len;
	list[k].code = 0x001f; /* DVD Read */
	list[k].len = cd_feature(f + off, 0x001f, 0, false, prof == PROFILE_DVDROM, 4);
	list[k].current = prof == PROFILE_DVDROM;
	off += list[k++].len;

	memset(b, 0, 8);
	put_be16(b + 6, prof);
	off = 0;
	for (unsigned i = 0; i < k; off += list[i++].len) {
		bool want = rt == 2 ? list[i].code == start
				    : list[i].code >= start && (rt == 0 || list[i].current);

		if (want) {
			memcpy(b + n, f + off, list[i].len);
			n += list[i].len;
		}
	}
	put_be32(b, n - 4);
	return n;
}

/* GET EVENT STATUS NOTIFICATION (MMC-5), polled only: the media class. */
static uint32_t cd_gesn(struct ide_drive *d, const uint8_t *cdb, uint8_t *b)
{
	struct atapi_state *cd = &d->cd;

	memset(b, 0, 8);
	b[3] = 1 << 4; /* supported: media */
	if (!(cdb[4] & (1 << 4))) {
		b[2] = 0x80; /* NEA: nothing of the classes asked */
		put_be16(b, 2);
		return 4;
	}
	b[2] = 4; /* media class */
	b[4] = cd->event;
	b[5] = (uint8_t)((d->blk && cd->nblocks ? 0x02 : 0) | (cd->tray_open ? 0x01 : 0));
	cd->event = MEV_NONE;
	put_be16(b, 6);
	return 8;
}

/* READ DISC INFORMATION (MMC-5), standard disc information: a
 * finalized disc, one session, one track. */
static uint32_t cd_disc_info(uint8_t *b)
{
	memset(b, 0, 34);
	put_be16(b, 32);
	b[2] = 0x0e; /* last session complete, disc complete */
	b[3] = b[4] = b[5] = b[6] = 1;
	return 34;
}

/* MODE SENSE pages (MMC-5 / SFF-8020i): Read Error Recovery and
 * the CD/DVD Capabilities and Mechanical Status page Linux's sr reads. */
static uint32_t cd_mode_page(const struct ide_drive *d, uint8_t page, bool changeable, uint8_t *p)
{
	if (page == 0x01) {
		memset(p, 0, 12);
		p[0] = 0x01;
		p[1] = 10;
		return 12;
	}
	memset(p, 0, 20);
	p[0] = 0x2a;
	p[1] = 18;
	if (changeable)
		return 20;
	p[2] = 0x0b; /* reads CD-R, CD-RW, DVD-ROM */
	p[4] = 0x71; /* audio play, mode 2 form 1/2, multi-session */
	p[6] = (uint8_t)(0x20 | 0x08 | 0x01 | (d->cd.locked ? 0x02 : 0)); /* tray, eject, lock */
	put_be16(p + 8, 706);  /* maximum read speed, kB/s (4x) */
	put_be16(p + 12, 512); /* buffer, KiB */
	put_be16(p + 14, 706); /* current read speed */
	return 20;
}

static void cd_mode_sense(struct ide_channel *ch, struct ide_drive *d, const uint8_t *cdb)
{
	bool ten = cdb[0] == SCSI_MODE_SENSE_10;
	uint8_t pc = cdb[2] >> 6, page = cdb[2] & 0x3f, *b = ch->buf;
	uint32_t hdr = ten ? 8 : 4, alloc = ten ? get_be16(cdb + 7) : cdb[4], n = hdr;

	if (pc == 3) {
		cd_illegal(ch, d, SCSI_ASC_SAVING_NOT_SUPPORTED);
		return;
	}
	if (page == 0x01 || page == 0x3f)
		n += cd_mode_page(d, 0x01, pc == 1, b + n);
	if (page == 0x2a || page == 0x3f)
		n += cd_mode_page(d, 0x2a, pc == 1, b + n);
	if (n == hdr || cdb[3]) {
		cd_illegal(ch, d, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	memset(b, 0, hdr); /* no block descriptors */
	if (ten)
		put_be16(b, (uint16_t)(n - 2));
	else
		b[0] = (uint8_t)(n - 1);
	cd_data_in(ch, d, MIN(n, alloc));
}

/* START STOP UNIT (MMC-5): LoEj with Start loads (closes the tray),
 * without ejects unless the medium is locked. */
static void cd_start_stop(struct ide_channel *ch, struct ide_drive *d, const uint8_t *cdb)
{
	struct atapi_state *cd = &d->cd;
	bool loej = cdb[4] & 0x02, start = cdb[4] & 0x01;

	if (loej && !start) {
		if (cd->locked) {
			cd_illegal(ch, d, SCSI_ASC_MEDIUM_REMOVAL_PREVENTED);
			return;
		}
		if (!cd->tray_open && d->blk)
			cd->event = MEV_MEDIA_REMOVAL;
		cd->tray_open = true;
	} else if (loej && cd->tray_open) {
		cd->tray_open = false;
		if (d->blk && cd->nblocks)
			cd->event = MEV_NEW_MEDIA;
	}
	cd_good(ch, d);
}

static void cd_request_sense(struct ide_channel *ch, struct ide_drive *d, const uint8_t *cdb)
{
	struct atapi_state *cd = &d->cd;
	struct scsi_sense s = cd->sense;

	if (cd->ua) {
		s = (struct scsi_sense){ SCSI_SENSE_UNIT_ATTENTION,
					 SCSI_ASC_MEDIUM_MAY_HAVE_CHANGED };
		cd->ua = false;
	}
	scsi_sense_fixed(&s, ch->buf, SCSI_SENSE_FIXED_LEN);
	cd_data_in(ch, d, MIN(SCSI_SENSE_FIXED_LEN, cdb[4]));
}

/* READ CAPACITY(10), READ(10) and READ(12) as a read-only SCSI unit with
 * 2048-byte blocks. */
static void cd_scsi_block(struct ide_channel *ch, struct ide_drive *d, const uint8_t *cdb)
{
	struct scsi_disk unit = { .nblocks = d->cd.nblocks,
				  .block_size = ATAPI_BLOCK,
				  .readonly = true };
	struct scsi_cmd c;

	scsi_disk_exec(&unit, cdb, 12, ch->buf, &c);
	if (c.status != SCSI_STATUS_GOOD)
		cd_check(ch, d, c.sense.key, c.sense.asc);
	else if (c.action == SCSI_ACT_READ)
		cd_read_blocks(ch, d, c.lba, c.nblocks);
	else
		cd_data_in(ch, d, c.data_len);
}

/* Commands that run during a UNIT ATTENTION (MMC-5) and commands
 * that need a medium. */
static bool cd_passes_ua(uint8_t op)
{
	return op == SCSI_INQUIRY || op == SCSI_REQUEST_SENSE || op == MMC_GET_CONFIGURATION ||
	       op == MMC_GET_EVENT_STATUS;
}

static bool cd_needs_medium(uint8_t op)
{
	return op == SCSI_TEST_UNIT_READY || op == SCSI_READ_CAPACITY_10 || op == SCSI_READ_10 ||
	       op == SCSI_READ_12 || op == MMC_READ_TOC || op == MMC_READ_DISC_INFO;
}

static void cd_packet_exec(struct ide_channel *ch, struct ide_drive *d)
{
	struct atapi_state *cd = &d->cd;
	const uint8_t *cdb = cd->cdb;
	uint8_t *b = ch->buf;
	uint32_t n;

	cd->read_bytes = 0;
	if (cd->ua && !cd_passes_ua(cdb[0])) {
		cd->ua = false;
		cd_check(ch, d, SCSI_SENSE_UNIT_ATTENTION, SCSI_ASC_MEDIUM_MAY_HAVE_CHANGED);
		return;
	}
	if (cd_needs_medium(cdb[0]) && !cd_has_medium(d)) {
		cd_check(ch, d, SCSI_SENSE_NOT_READY,
			 cd->tray_open ? SCSI_ASC_MEDIUM_NOT_PRESENT_TRAY_OPEN
				       : SCSI_ASC_MEDIUM_NOT_PRESENT);
		return;
	}
	switch (cdb[0]) {
	case SCSI_TEST_UNIT_READY:
	case MMC_SET_CD_SPEED: cd_good(ch, d); return;
	case SCSI_REQUEST_SENSE: cd_request_sense(ch, d, cdb); return;
	case SCSI_INQUIRY:
		if (cdb[1] & 0x01) { /* no VPD pages */
			cd_illegal(ch, d, SCSI_ASC_INVALID_FIELD_IN_CDB);
			return;
		}
		n = scsi_inquiry_standard(b, SCSI_TYPE_CDROM, true, "VIRTUAL DVD-ROM");
		cd_data_in(ch, d, MIN(n, get_be16(cdb + 3)));
		return;
	case SCSI_MODE_SENSE_6:
	case SCSI_MODE_SENSE_10: cd_mode_sense(ch, d, cdb); return;
	case SCSI_START_STOP_UNIT: cd_start_stop(ch, d, cdb); return;
	case SCSI_PREVENT_ALLOW_MEDIUM_REMOVAL:
		cd->locked = cdb[4] & 0x01;
		cd_good(ch, d);
		return;
	case SCSI_READ_CAPACITY_10:
	case SCSI_READ_10:
	case SCSI_READ_12: cd_scsi_block(ch, d, cdb); return;
	case MMC_READ_TOC: n = cd_read_toc(d, cdb, b); break;
	case MMC_GET_CONFIGURATION: n = (cdb[1] & 3) == 3 ? 0 : cd_get_config(d, cdb, b); break;
	case MMC_GET_EVENT_STATUS: n = (cdb[1] & 0x01) ? cd_gesn(d, cdb, b) : 0; break;
	case MMC_READ_DISC_INFO: n = (cdb[1] & 0x07) ? 0 : cd_disc_info(b); break;
	case MMC_MECHANISM_STATUS:
		memset(b, 0, 8);
		b[1] = cd->tray_open ? 0x10 : 0;
		cd_data_in(ch, d, MIN(8u, get_be16(cdb + 8)));
		return;
	default: cd_illegal(ch, d, SCSI_ASC_INVALID_OPCODE); return;
	}
	if (!n) {
		cd_illegal(ch, d, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	cd_data_in(ch, d, MIN(n, get_be16(cdb + 7)));
}

/* ---- ATA commands of a packet device --------------------------------------- */

/* IDENTIFY PACKET DEVICE (ATA8-ACS r6a Table 39). */
static void cd_identify_page(const struct ide_channel *ch, const struct ide_drive *d, uint8_t *p)
{
	memset(p, 0, IDE_SECTOR);
	/* ATAPI, CD-ROM, removable, DRQ within 50 us of PACKET, 12-byte packets */
	ide_put_word(p, 0, (2 << 14) | (SCSI_TYPE_CDROM << 8) | (1 << 7) | (2 << 5));
	ide_put_string(p, 10, 10, d->serial);
	ide_put_string(p, 23, 4, KESTREL_VERSION);
	ide_put_string(p, 27, 20, d->model);
	ide_put_word(p, 49, (1 << 11) | (1 << 9) | (1 << 8)); /* IORDY, LBA, DMA */
	ide_put_word(p, 50, 0x4000);
	ide_put_word(p, 53, 0x0006); /* words 64-70 and 88 valid */
	ide_put_word(p, 63, ide_mwdma_word(d->cd.xfer_mode));
	ide_put_word(p, 64, 0x0003);
	for (unsigned w = 65; w <= 68; w++)
		ide_put_word(p, w, 120);
	ide_put_word(p, 80, 0x00f0);
	ide_put_word(p, 82, (1 << 4) | (1 << 3)); /* PACKET, power management */
	ide_put_word(p, 83, 0x4000);
	ide_put_word(p, 84, 0x4000);
	ide_put_word(p, 85, (1 << 4) | (1 << 3));
	ide_put_word(p, 87, 0x4000);
	ide_put_word(p, 88, ide_udma_word(d->cd.xfer_mode));
	ide_put_word(p, 93, ide_reset_result(ch, d));
	ide_identify_checksum(p);
}

static void cd_exec(struct ide_channel *ch, struct ide_drive *d)
{
	struct atapi_state *cd = &d->cd;

	cd->op = CD_OP_NONE;
	switch (d->r.command) {
	case ATA_CMD_PACKET:
		cd->dma = d->r.feature & 0x01;
		cd->bcl = (uint16_t)(d->r.lbah << 8 | d->r.lbam);
		cd->op = CD_OP_CDB;
		ide_pio_out(ch, d, 0, sizeof(cd->cdb), false);
		d->r.nsector = ATAPI_IR_COD;
		return;
	case ATA_CMD_IDENTIFY_PACKET:
		cd_identify_page(ch, d, ch->buf);
		cd->op = CD_OP_DATA;
		cd->pos = cd->end = 0;
		cd->left = 0;
		ide_pio_in(ch, d, 0, IDE_SECTOR, true);
		return;
	case ATA_CMD_DEVICE_RESET:
		/* DEVICE RESET: the device resets itself; no interrupt. */
		d->ops->reset(d, false);
		ide_set_signature(d);
		d->r.status = 0;
		d->r.error = 0x01;
		return;
	case ATA_CMD_IDENTIFY:
		/* A packet device aborts IDENTIFY DEVICE and shows its signature. */
		ide_set_signature(d);
		break;
	case ATA_CMD_SET_FEATURES:
		if (d->r.feature == 0x03 && ide_xfer_mode_ok(d->r.nsector)) {
			cd->xfer_mode = d->r.nsector;
			ide_cmd_done(ch, d);
			return;
		}
		break;
	case ATA_CMD_CHECK_POWER_MODE:
		ide_cmd_done(ch, d);
		d->r.nsector = 0xff;
		return;
	case ATA_CMD_IDLE_IMMEDIATE:
	case ATA_CMD_STANDBY_IMMEDIATE: ide_cmd_done(ch, d); return;
	}
	ide_cmd_error(ch, d, ATA_ER_ABRT);
}

static void cd_pio_done(struct ide_channel *ch, struct ide_drive *d)
{
	struct atapi_state *cd = &d->cd;

	switch (cd->op) {
	case CD_OP_CDB:
		memcpy(cd->cdb, ch->buf, sizeof(cd->cdb));
		cd_packet_exec(ch, d);
		return;
	case CD_OP_DATA:
		if (d->r.command == ATA_CMD_IDENTIFY_PACKET) {
			/* Like IDENTIFY DEVICE: PIO data-in, no interrupt at the end. */
			cd->op = CD_OP_NONE;
			d->r.status = ATA_ST_READY;
			return;
		}
		cd_pio_next(ch, d);
		return;
	default: d->r.status = ATA_ST_READY; return;
	}
}

static void cd_io_done(struct ide_channel *ch, struct ide_drive *d, int status)
{
	struct atapi_state *cd = &d->cd;
	uint32_t n;

	if (status) {
		struct scsi_cmd c = { .action = SCSI_ACT_READ };

		scsi_cmd_set_errno(&c, status);
		cd_check(ch, d, c.sense.key, c.sense.asc);
		return;
	}
	if (cd->op != CD_OP_FETCH) {
		cd_good(ch, d);
		return;
	}
	n = MIN(cd->left, IDE_BUF_SIZE / ATAPI_BLOCK);
	cd->lba += n;
	cd->left -= n;
	cd->pos = 0;
	cd->end = n * ATAPI_BLOCK;
	cd_pio_next(ch, d);
}

/* A reset drops the command; power-on also unlocks and closes the tray. */
static void cd_reset(struct ide_drive *d, bool hard)
{
	struct atapi_state *cd = &d->cd;

	cd->op = CD_OP_NONE;
	cd->left = cd->pos = cd->end = 0;
	cd->lba = 0;
	if (!hard)
		return;
	cd->tray_open = cd->locked = false;
	cd->ua = false;
	cd->event = MEV_NONE;
	cd->sense = (struct scsi_sense){ SCSI_SENSE_NO_SENSE, SCSI_ASC_NONE };
	cd->xfer_mode = 0;
}

void atapi_cd_medium_changed(struct ide_drive *d)
{
	struct atapi_state *cd = &d->cd;

	cd->nblocks = d->blk ? d->blk->size / ATAPI_BLOCK : 0;
	cd->tray_open = false;
	cd->ua = true;
	cd->event = cd->nblocks ? MEV_NEW_MEDIA : MEV_MEDIA_REMOVAL;
}

void atapi_cd_eject_request(struct ide_drive *d)
{
	d->cd.event = MEV_EJECT_REQUEST;
}

void atapi_cd_init(struct ide_drive *d)
{
	d->cd.nblocks = d->blk ? d->blk->size / ATAPI_BLOCK : 0;
	cd_reset(d, true);
}

/* ---- state ------------------------------------------------------------- */

void atapi_cd_save(const struct ide_drive *d, struct state_buf *out)
{
	const struct atapi_state *cd = &d->cd;

	state_put_u64(out, cd->nblocks);
	state_put_u8(out, (uint8_t)(cd->tray_open | cd->locked << 1 | cd->ua << 2 | cd->dma << 3));
	state_put_u8(out, cd->event);
	state_put_u8(out, cd->sense.key);
	state_put_u16(out, cd->sense.asc);
	state_put_u8(out, cd->xfer_mode);
	state_put_bytes(out, cd->cdb, sizeof(cd->cdb));
	state_put_u16(out, cd->bcl);
	state_put_u64(out, cd->lba);
	state_put_u32(out, cd->left);
	state_put_u32(out, cd->pos);
	state_put_u32(out, cd->end);
	state_put_u8(out, cd->op);
}

bool atapi_cd_load(struct ide_drive *tmp, struct state_buf *in)
{
	struct atapi_state *cd = &tmp->cd;
	uint64_t nblocks = state_get_u64(in);
	uint8_t flags = state_get_u8(in);

	cd->event = state_get_u8(in);
	cd->sense.key = state_get_u8(in);
	cd->sense.asc = state_get_u16(in);
	cd->xfer_mode = state_get_u8(in);
	state_get_bytes(in, cd->cdb, sizeof(cd->cdb));
	cd->bcl = state_get_u16(in);
	cd->lba = state_get_u64(in);
	cd->left = state_get_u32(in);
	cd->pos = state_get_u32(in);
	cd->end = state_get_u32(in);
	cd->op = state_get_u8(in);
	cd->tray_open = flags & 1;
	cd->locked = flags & 2;
	cd->ua = flags & 4;
	cd->dma = flags & 8;
	/* The medium is configuration: the same size must be there. */
	if (in->error || nblocks != cd->nblocks || flags > 15 || cd->event > MEV_MEDIA_REMOVAL ||
	    cd->sense.key > 0x0f || !ide_xfer_mode_ok(cd->xfer_mode) || cd->op > CD_OP_DMA)
		return false;
	return cd->pos <= cd->end && cd->end <= IDE_BUF_SIZE && cd->left <= 65535 &&
	       cd->lba <= cd->nblocks && cd->left <= cd->nblocks - cd->lba;
}

/* Blocks fetched and not yet handed over, or an answer still to go. */
static uint32_t cd_buf_used(const struct ide_drive *d)
{
	return d->cd.end;
}

const struct ide_drive_ops atapi_cd_ops = {
	.exec = cd_exec,
	.pio_done = cd_pio_done,
	.io_done = cd_io_done,
	.reset = cd_reset,
	.buf_used = cd_buf_used,
};
