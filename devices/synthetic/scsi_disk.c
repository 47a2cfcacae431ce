/* SCSI disk command set (SPC-4 r37, SBC-3 r36): what Linux's sd, sr and udev
 * send to a disk. See include/kestrel/scsi_disk.h for the split between this
 * interpreter and the front end that moves the data. */
#include <errno.h>
#include <string.h>

#include "kestrel/byteorder.h"
#include "kestrel/scsi_disk.h"
#include "kestrel/util.h"

#define SCSI_VENDOR	  "KESTREL "
#define SCSI_PRODUCT	  "VIRTUAL DISK    "
#define SCSI_REVISION	  "0001"
#define SCSI_VERSION_SPC3 0x05
#define SCSI_TYPE_DISK	  0x00
#define SCSI_TYPE_NO_LUN  0x7f /* peripheral qualifier 3, type 1Fh */

#define MODE_PAGE_CACHING  0x08
#define MODE_PAGE_CONTROL  0x0a
#define MODE_PAGE_ALL	   0x3f
#define MODE_PC_CHANGEABLE 1
#define MODE_PC_SAVED	   3

void scsi_cmd_check(struct scsi_cmd *c, uint8_t key, uint16_t asc)
{
	c->action = SCSI_ACT_DONE;
	c->status = SCSI_STATUS_CHECK_CONDITION;
	c->sense.key = key;
	c->sense.asc = asc;
	c->data_len = 0;
}

static void scsi_illegal(struct scsi_cmd *c, uint16_t asc)
{
	scsi_cmd_check(c, SCSI_SENSE_ILLEGAL_REQUEST, asc);
}

/* Answer with len bytes of buf, cut to the CDB's allocation length. */
static void scsi_data(struct scsi_cmd *c, uint32_t len, uint32_t alloc)
{
	c->action = SCSI_ACT_DONE;
	c->status = SCSI_STATUS_GOOD;
	c->data_len = MIN(len, alloc);
}

static void scsi_good(struct scsi_cmd *c)
{
	scsi_data(c, 0, 0);
}

size_t scsi_sense_fixed(const struct scsi_sense *s, uint8_t *buf, size_t len)
{
	uint8_t f[SCSI_SENSE_FIXED_LEN] = { 0 };
	size_t n = MIN(len, sizeof(f));

	f[0] = 0x70; /* current error, fixed format */
	f[2] = s->key & 0x0f;
	f[7] = sizeof(f) - 8; /* additional sense length */
	f[12] = (uint8_t)(s->asc >> 8);
	f[13] = (uint8_t)s->asc;
	memcpy(buf, f, n);
	return n;
}

void scsi_cmd_set_errno(struct scsi_cmd *c, int err)
{
	bool write = c->action == SCSI_ACT_WRITE || c->action == SCSI_ACT_WRITE_ZEROES ||
		     c->action == SCSI_ACT_DISCARD || c->action == SCSI_ACT_FLUSH;

	switch (err) {
	case -EIO:
		scsi_cmd_check(c, SCSI_SENSE_MEDIUM_ERROR,
			       write ? SCSI_ASC_WRITE_ERROR : SCSI_ASC_UNRECOVERED_READ_ERROR);
		break;
	case -EROFS: scsi_cmd_check(c, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED); break;
	case -ENOSPC:
		scsi_cmd_check(c, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_SPACE_ALLOC_FAILED);
		break;
	case -EINVAL: scsi_illegal(c, SCSI_ASC_LBA_OUT_OF_RANGE); break;
	default:
		scsi_cmd_check(c, SCSI_SENSE_HARDWARE_ERROR, SCSI_ASC_INTERNAL_TARGET_FAILURE);
		break;
	}
}

/* SBC-3 4.5: lba names a block of the medium (even for a transfer of 0
 * blocks) and [lba, lba + n) stays inside it; no sum can overflow. */
static bool scsi_range_ok(const struct scsi_disk *d, uint64_t lba, uint64_t n)
{
	return lba < d->nblocks && n <= d->nblocks - lba;
}

/* CDB length from the operation code's group (SPC-4 4.2.5.1). */
static size_t scsi_cdb_len(uint8_t op)
{
	static const uint8_t len[8] = { 6, 10, 10, 0, 16, 12, 0, 0 };

	return len[op >> 5];
}

/* ---- INQUIRY (SPC-4 6.6) and VPD pages (7.8) ---- */

uint32_t scsi_inquiry_standard(uint8_t *b, uint8_t type, bool removable, const char *product)
{
	size_t n = strnlen(product, 16);

	memset(b, 0, 36);
	b[0] = type;
	b[1] = removable ? 0x80 : 0; /* RMB */
	b[2] = SCSI_VERSION_SPC3;
	b[3] = 0x12; /* HISUP, response data format 2 */
	b[4] = 36 - 5;
	memcpy(b + 8, SCSI_VENDOR, 8);
	memset(b + 16, ' ', 16);
	memcpy(b + 16, product, n);
	memcpy(b + 32, SCSI_REVISION, 4);
	return 36;
}

static uint32_t scsi_inquiry_std(uint8_t *b, uint8_t type)
{
	uint32_t n = scsi_inquiry_standard(b, type, false, SCSI_PRODUCT);

	b[7] = 0x02; /* CMDQUE: tagged queueing */
	return n;
}

static uint32_t scsi_vpd_supported(uint8_t *b)
{
	static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2 };

	memcpy(b + 4, pages, sizeof(pages));
	return 4 + sizeof(pages);
}

static uint32_t scsi_vpd_serial(const struct scsi_disk *d, uint8_t *b)
{
	size_t n = strnlen(d->serial, sizeof(d->serial) - 1);

	memcpy(b + 4, d->serial, n);
	return 4 + (uint32_t)n;
}

/* 7.8.6: a T10 vendor ID designator and a locally assigned NAA (type 3). */
static uint32_t scsi_vpd_devid(const struct scsi_disk *d, uint8_t *b)
{
	size_t sn = strnlen(d->serial, sizeof(d->serial) - 1);
	uint8_t *p = b + 4;

	p[0] = 0x02; /* code set ASCII */
	p[1] = 0x01; /* association: LU, type: T10 vendor ID */
	p[3] = (uint8_t)(8 + sn);
	memcpy(p + 4, SCSI_VENDOR, 8);
	memcpy(p + 12, d->serial, sn);
	p += 4 + p[3];
	p[0] = 0x01; /* code set binary */
	p[1] = 0x03; /* association: LU, type: NAA */
	p[3] = 8;
	put_be64(p + 4, (3ULL << 60) | (d->naa_id & 0x0fffffffffffffffULL));
	p += 12;
	return (uint32_t)(p - b);
}

/* SBC-3 6.6.4 Block Limits. */
static uint32_t scsi_vpd_limits(const struct scsi_disk *d, uint8_t *b)
{
	uint32_t gran = d->block_size < 4096 ? 4096 / d->block_size : 1;

	b[4] = 0x01; /* WSNZ: WRITE SAME of 0 blocks is an error */
	put_be16(b + 6, (uint16_t)gran);
	put_be32(b + 8, SCSI_DISK_MAX_XFER_BLOCKS);
	put_be32(b + 12, SCSI_DISK_MAX_XFER_BLOCKS);
	if (d->can_discard) {
		put_be32(b + 20, SCSI_DISK_MAX_UNMAP_BLOCKS);
		put_be32(b + 24, SCSI_DISK_MAX_UNMAP_DESC);
		put_be32(b + 28, gran);
	}
	put_be64(b + 36, SCSI_DISK_MAX_UNMAP_BLOCKS);
	return 64;
}

/* SBC-3 6.6.2 Block Device Characteristics: not rotating. */
static uint32_t scsi_vpd_characteristics(uint8_t *b)
{
	put_be16(b + 4, 1);
	return 64;
}

/* SBC-3 6.6.5 Logical Block Provisioning: UNMAP and WRITE SAME(16) with
 * UNMAP when the backend punches holes (which then read as zeros). */
static uint32_t scsi_vpd_provisioning(const struct scsi_disk *d, uint8_t *b)
{
	if (d->can_discard) {
		b[5] = 0x80 | 0x40 | 0x04; /* LBPU, LBPWS, LBPRZ */
		b[6] = 0x02;		   /* thin provisioned */
	}
	return 8;
}

static void scsi_inquiry(const struct scsi_disk *d, const uint8_t *cdb, uint8_t *b,
			 struct scsi_cmd *c)
{
	uint32_t alloc = get_be16(cdb + 3), n;

	if (!(cdb[1] & 0x01)) {
		if (cdb[2])
			return scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return scsi_data(c, scsi_inquiry_std(b, SCSI_TYPE_DISK), alloc);
	}
	memset(b, 0, SCSI_DISK_BUF_SIZE);
	b[0] = SCSI_TYPE_DISK;
	b[1] = cdb[2];
	switch (cdb[2]) {
	case 0x00: n = scsi_vpd_supported(b); break;
	case 0x80: n = scsi_vpd_serial(d, b); break;
	case 0x83: n = scsi_vpd_devid(d, b); break;
	case 0xb0: n = scsi_vpd_limits(d, b); break;
	case 0xb1: n = scsi_vpd_characteristics(b); break;
	case 0xb2: n = scsi_vpd_provisioning(d, b); break;
	default: return scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
	}
	put_be16(b + 2, (uint16_t)(n - 4));
	scsi_data(c, n, alloc);
}

/* ---- READ CAPACITY (SBC-3 5.15, 5.16) ---- */

static void scsi_read_capacity10(const struct scsi_disk *d, uint8_t *b, struct scsi_cmd *c)
{
	uint64_t last = d->nblocks ? d->nblocks - 1 : 0;

	/* Too large for 32 bits: all ones sends the initiator to READ CAPACITY(16). */
	put_be32(b, last > 0xfffffffeULL ? 0xffffffffu : (uint32_t)last);
	put_be32(b + 4, d->block_size);
	scsi_data(c, 8, 8);
}

static void scsi_read_capacity16(const struct scsi_disk *d, const uint8_t *cdb, uint8_t *b,
				 struct scsi_cmd *c)
{
	if ((cdb[1] & 0x1f) != SCSI_SAI_READ_CAPACITY_16)
		return scsi_illegal(c, SCSI_ASC_INVALID_OPCODE);
	memset(b, 0, 32);
	put_be64(b, d->nblocks ? d->nblocks - 1 : 0);
	put_be32(b + 8, d->block_size);
	if (d->can_discard)
		b[14] = 0x80 | 0x40; /* LBPME, LBPRZ */
	scsi_data(c, 32, get_be32(cdb + 10));
}

/* ---- MODE SENSE (SPC-4 6.11, 6.12; pages SBC-3 6.4) ---- */

static uint32_t scsi_mode_page(const struct scsi_disk *d, uint8_t page, bool changeable, uint8_t *p)
{
	if (page == MODE_PAGE_CACHING) {
		memset(p, 0, 20);
		p[0] = MODE_PAGE_CACHING;
		p[1] = 18;
		if (!changeable && d->write_cache)
			p[2] = 0x04; /* WCE */
		return 20;
	}
	memset(p, 0, 12); /* control page: all defaults */
	p[0] = MODE_PAGE_CONTROL;
	p[1] = 10;
	return 12;
}

/* The pages after a header of hdr bytes and an optional block descriptor;
 * returns the total length, or 0 for a page we do not have. */
static uint32_t scsi_mode_body(const struct scsi_disk *d, uint8_t page, bool changeable,
			       bool blockdesc, uint32_t hdr, uint8_t *b)
{
	uint32_t n = hdr;

	if (blockdesc) {
		uint64_t nb = d->nblocks;

		memset(b + n, 0, 8);
		put_be32(b + n, nb > 0xffffffffULL ? 0xffffffffu : (uint32_t)nb);
		put_be32(b + n + 4, d->block_size & 0xffffff);
		n += 8;
	}
	if (page == MODE_PAGE_CACHING || page == MODE_PAGE_ALL)
		n += scsi_mode_page(d, MODE_PAGE_CACHING, changeable, b + n);
	if (page == MODE_PAGE_CONTROL || page == MODE_PAGE_ALL)
		n += scsi_mode_page(d, MODE_PAGE_CONTROL, changeable, b + n);
	return n == hdr + (blockdesc ? 8 : 0) ? 0 : n;
}

static void scsi_mode_sense(const struct scsi_disk *d, const uint8_t *cdb, uint8_t *b,
			    struct scsi_cmd *c)
{
	bool ten = cdb[0] == SCSI_MODE_SENSE_10, dbd = cdb[1] & 0x08;
	uint8_t pc = cdb[2] >> 6, page = cdb[2] & 0x3f, subpage = cdb[3];
	uint32_t hdr = ten ? 8 : 4, alloc = ten ? get_be16(cdb + 7) : cdb[4], n;
	uint8_t devspec = (uint8_t)((d->readonly ? 0x80 : 0) | 0x10); /* WP, DPOFUA */

	if (pc == MODE_PC_SAVED)
		return scsi_illegal(c, SCSI_ASC_SAVING_NOT_SUPPORTED);
	if (subpage != 0 && !(page == MODE_PAGE_ALL && subpage == 0xff))
		return scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
	n = scsi_mode_body(d, page, pc == MODE_PC_CHANGEABLE, !dbd, hdr, b);
	if (!n)
		return scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
	memset(b, 0, hdr);
	if (ten) {
		put_be16(b, (uint16_t)(n - 2));
		b[3] = devspec;
		put_be16(b + 6, dbd ? 0 : 8);
	} else {
		b[0] = (uint8_t)(n - 1);
		b[2] = devspec;
		b[3] = dbd ? 0 : 8;
	}
	scsi_data(c, n, alloc);
}

/* ---- the rest of the answers ---- */

static void scsi_report_luns(const uint8_t *cdb, uint8_t *b, struct scsi_cmd *c)
{
	uint32_t alloc = get_be32(cdb + 6);

	/* SPC-4 6.33: at least 16 bytes of allocation. One LUN: 0. */
	if (alloc < 16)
		return scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
	memset(b, 0, 16);
	put_be32(b, 8);
	scsi_data(c, 16, alloc);
}

static void scsi_request_sense(const uint8_t *cdb, const struct scsi_sense *s, uint8_t *b,
			       struct scsi_cmd *c)
{
	/* Sense is returned with each command (autosense), so nothing is pending. */
	if (cdb[1] & 0x01)
		return scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB); /* descriptor format */
	scsi_data(c, (uint32_t)scsi_sense_fixed(s, b, SCSI_SENSE_FIXED_LEN), cdb[4]);
}

/* ---- block commands ---- */

static void scsi_rw(const struct scsi_disk *d, const uint8_t *cdb, struct scsi_cmd *c)
{
	uint8_t op = cdb[0];
	bool write = op == SCSI_WRITE_6 || op == SCSI_WRITE_10 || op == SCSI_WRITE_12 ||
		     op == SCSI_WRITE_16;
	uint64_t lba;
	uint32_t n;

	switch (op) {
	case SCSI_READ_6:
	case SCSI_WRITE_6:
		lba = (uint32_t)(cdb[1] & 0x1f) << 16 | get_be16(cdb + 2);
		n = cdb[4] ? cdb[4] : 256; /* SBC-3 5.7: 0 means 256 */
		break;
	case SCSI_READ_10:
	case SCSI_WRITE_10:
		lba = get_be32(cdb + 2);
		n = get_be16(cdb + 7);
		break;
	case SCSI_READ_12:
	case SCSI_WRITE_12:
		lba = get_be32(cdb + 2);
		n = get_be32(cdb + 6);
		break;
	default:
		lba = get_be64(cdb + 2);
		n = get_be32(cdb + 10);
		break;
	}
	if (write && d->readonly)
		return scsi_cmd_check(c, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	if (!scsi_range_ok(d, lba, n))
		return scsi_illegal(c, SCSI_ASC_LBA_OUT_OF_RANGE);
	if (n > SCSI_DISK_MAX_XFER_BLOCKS)
		return scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
	if (n == 0)
		return scsi_good(c); /* SBC-3: a transfer length of 0 is no transfer */
	c->action = write ? SCSI_ACT_WRITE : SCSI_ACT_READ;
	c->status = SCSI_STATUS_GOOD;
	c->lba = lba;
	c->nblocks = n;
	/* FUA (byte 1 bit 3, not in the 6-byte CDBs); without a volatile cache
	 * (WCE 0) every write is reported durable, so it is written through. */
	c->fua = write && ((op != SCSI_WRITE_6 && (cdb[1] & 0x08)) || !d->write_cache);
}

static void scsi_write_same16(const struct scsi_disk *d, const uint8_t *cdb, struct scsi_cmd *c)
{
	uint64_t lba = get_be64(cdb + 2);
	uint32_t n = get_be32(cdb + 10);

	if (d->readonly)
		return scsi_cmd_check(c, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	/* NDOB (no data-out buffer) and ANCHOR are not supported; WSNZ: n != 0. */
	if ((cdb[1] & 0x11) || n == 0 || n > SCSI_DISK_MAX_UNMAP_BLOCKS)
		return scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
	if (!scsi_range_ok(d, lba, n))
		return scsi_illegal(c, SCSI_ASC_LBA_OUT_OF_RANGE);
	c->action = SCSI_ACT_DATAOUT;
	c->status = SCSI_STATUS_GOOD;
	c->lba = lba;
	c->nblocks = n;
	c->unmap = (cdb[1] & 0x08) && d->can_discard;
	c->dataout_len = d->block_size;
}

static void scsi_unmap(const struct scsi_disk *d, const uint8_t *cdb, struct scsi_cmd *c)
{
	uint32_t plen = get_be16(cdb + 7);

	if (d->readonly)
		return scsi_cmd_check(c, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	if (!d->can_discard)
		return scsi_illegal(c, SCSI_ASC_INVALID_OPCODE);
	if (cdb[1] & 0x01)
		return scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB); /* ANCHOR */
	if (plen == 0)
		return scsi_good(c);
	if (plen < 8)
		return scsi_illegal(c, SCSI_ASC_PARAM_LIST_LENGTH);
	c->action = SCSI_ACT_DATAOUT;
	c->status = SCSI_STATUS_GOOD;
	c->dataout_len = MIN(plen, 8u + 16u * SCSI_DISK_MAX_UNMAP_DESC);
}

/* SBC-3 5.28 UNMAP parameter list: 8-byte header, 16-byte descriptors. */
static unsigned scsi_unmap_ranges(const struct scsi_disk *d, struct scsi_cmd *c, const uint8_t *p,
				  size_t len, struct scsi_range *r, unsigned max)
{
	uint32_t dlen, nd;
	unsigned k = 0;

	if (len < 8) {
		scsi_illegal(c, SCSI_ASC_PARAM_LIST_LENGTH);
		return 0;
	}
	dlen = get_be16(p + 2);
	if (dlen % 16 || dlen > len - 8) {
		scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_PARAM);
		return 0;
	}
	nd = dlen / 16;
	if (nd > max || nd > SCSI_DISK_MAX_UNMAP_DESC) {
		scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_PARAM);
		return 0;
	}
	for (uint32_t i = 0; i < nd; i++) {
		const uint8_t *e = p + 8 + 16 * i;
		uint64_t lba = get_be64(e);
		uint32_t n = get_be32(e + 8);

		if (!scsi_range_ok(d, lba, n)) {
			scsi_illegal(c, SCSI_ASC_LBA_OUT_OF_RANGE);
			return 0;
		}
		if (n > SCSI_DISK_MAX_UNMAP_BLOCKS) {
			scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_PARAM);
			return 0;
		}
		if (n)
			r[k++] = (struct scsi_range){ lba, n };
	}
	c->action = k ? SCSI_ACT_DISCARD : SCSI_ACT_DONE;
	return k;
}

static bool scsi_all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

unsigned scsi_disk_dataout(const struct scsi_disk *d, struct scsi_cmd *c, const uint8_t *data,
			   size_t len, struct scsi_range *ranges, unsigned max)
{
	if (c->action != SCSI_ACT_DATAOUT || max == 0) {
		scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return 0;
	}
	c->data_len = 0;
	if (c->opcode == SCSI_UNMAP)
		return scsi_unmap_ranges(d, c, data, len, ranges, max);
	/* WRITE SAME: only a block of zeros can be written without copying it
	 * n times; with UNMAP (and LBPRZ) the range is punched instead. */
	if (len < d->block_size || !scsi_all_zero(data, d->block_size)) {
		scsi_illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return 0;
	}
	ranges[0] = (struct scsi_range){ c->lba, c->nblocks };
	c->action = c->unmap ? SCSI_ACT_DISCARD : SCSI_ACT_WRITE_ZEROES;
	return 1;
}

/* ---- dispatch ---- */

static void scsi_cmd_begin(struct scsi_cmd *c, uint8_t op)
{
	memset(c, 0, sizeof(*c));
	c->opcode = op;
	c->action = SCSI_ACT_DONE;
}

void scsi_disk_exec(const struct scsi_disk *d, const uint8_t *cdb, size_t cdb_len, uint8_t *buf,
		    struct scsi_cmd *c)
{
	static const struct scsi_sense no_sense = { SCSI_SENSE_NO_SENSE, SCSI_ASC_NONE };
	uint8_t op = cdb_len ? cdb[0] : 0xff;

	scsi_cmd_begin(c, op);
	if (!cdb_len || !scsi_cdb_len(op) || cdb_len < scsi_cdb_len(op))
		return scsi_illegal(c, SCSI_ASC_INVALID_OPCODE);
	switch (op) {
	case SCSI_TEST_UNIT_READY:
	case SCSI_START_STOP_UNIT:
	case SCSI_PREVENT_ALLOW_MEDIUM_REMOVAL: return scsi_good(c);
	case SCSI_REQUEST_SENSE: return scsi_request_sense(cdb, &no_sense, buf, c);
	case SCSI_INQUIRY: return scsi_inquiry(d, cdb, buf, c);
	case SCSI_MODE_SENSE_6:
	case SCSI_MODE_SENSE_10: return scsi_mode_sense(d, cdb, buf, c);
	case SCSI_READ_CAPACITY_10: return scsi_read_capacity10(d, buf, c);
	case SCSI_SERVICE_ACTION_IN_16: return scsi_read_capacity16(d, cdb, buf, c);
	case SCSI_REPORT_LUNS: return scsi_report_luns(cdb, buf, c);
	case SCSI_READ_6:
	case SCSI_READ_10:
	case SCSI_READ_12:
	case SCSI_READ_16:
	case SCSI_WRITE_6:
	case SCSI_WRITE_10:
	case SCSI_WRITE_12:
	case SCSI_WRITE_16: return scsi_rw(d, cdb, c);
	case SCSI_SYNCHRONIZE_CACHE_10:
	case SCSI_SYNCHRONIZE_CACHE_16:
		c->action = SCSI_ACT_FLUSH;
		c->status = SCSI_STATUS_GOOD;
		return;
	case SCSI_WRITE_SAME_16: return scsi_write_same16(d, cdb, c);
	case SCSI_UNMAP: return scsi_unmap(d, cdb, c);
	}
	scsi_illegal(c, SCSI_ASC_INVALID_OPCODE);
}

void scsi_nolun_exec(const uint8_t *cdb, size_t cdb_len, uint8_t *buf, struct scsi_cmd *c)
{
	static const struct scsi_sense nolun = { SCSI_SENSE_ILLEGAL_REQUEST,
						 SCSI_ASC_LUN_NOT_SUPPORTED };
	uint8_t op = cdb_len ? cdb[0] : 0xff;

	scsi_cmd_begin(c, op);
	if (!cdb_len || !scsi_cdb_len(op) || cdb_len < scsi_cdb_len(op))
		return scsi_illegal(c, SCSI_ASC_INVALID_OPCODE);
	switch (op) {
	case SCSI_INQUIRY:
		if (cdb[1] & 0x01)
			break;
		return scsi_data(c, scsi_inquiry_std(buf, SCSI_TYPE_NO_LUN), get_be16(cdb + 3));
	case SCSI_REPORT_LUNS: return scsi_report_luns(cdb, buf, c);
	case SCSI_REQUEST_SENSE: return scsi_request_sense(cdb, &nolun, buf, c);
	}
	scsi_illegal(c, SCSI_ASC_LUN_NOT_SUPPORTED);
}
