/* SCSI disk command decoding (devices/synthetic/scsi_disk.c): what Linux's sd
 * and udev send, the block operations READ/WRITE/SYNC/UNMAP/WRITE SAME turn
 * into, and CHECK CONDITION with fixed-format sense for everything wrong. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "kestrel/scsi_disk.h"
#include "check_util.h"

static struct scsi_disk disk;
static uint8_t buf[SCSI_DISK_BUF_SIZE];
static struct scsi_cmd c;

static void setup(void)
{
	disk = (struct scsi_disk){ .nblocks = 2048,
				   .block_size = 512,
				   .write_cache = true,
				   .naa_id = 0x123456789abcdefULL };
	strcpy(disk.serial, "KST00-TEST");
	memset(buf, 0xee, sizeof(buf));
}

static void exec(const uint8_t *cdb, size_t len)
{
	uint8_t full[32] = { 0 };

	memcpy(full, cdb, len);
	scsi_disk_exec(&disk, full, sizeof(full), buf, &c);
}

#define EXEC(...)                                       \
	do {                                            \
		const uint8_t cdb_[] = { __VA_ARGS__ }; \
		exec(cdb_, sizeof(cdb_));               \
	} while (0)

static void expect_check(uint8_t key, uint16_t asc)
{
	uint8_t sense[SCSI_SENSE_FIXED_LEN];

	ck_assert_int_eq(c.action, SCSI_ACT_DONE);
	ck_assert_uint_eq(c.status, SCSI_STATUS_CHECK_CONDITION);
	ck_assert_uint_eq(c.sense.key, key);
	ck_assert_uint_eq(c.sense.asc, asc);
	ck_assert_uint_eq(c.data_len, 0);
	/* SPC-4 4.5.3 fixed format: 70h, key in byte 2, ASC/ASCQ in 12/13. */
	ck_assert_uint_eq(scsi_sense_fixed(&c.sense, sense, sizeof(sense)), 18);
	ck_assert_uint_eq(sense[0], 0x70);
	ck_assert_uint_eq(sense[2], key);
	ck_assert_uint_eq(sense[7], 10);
	ck_assert_uint_eq(sense[12], asc >> 8);
	ck_assert_uint_eq(sense[13], asc & 0xff);
}

static void expect_good(uint32_t len)
{
	ck_assert_int_eq(c.action, SCSI_ACT_DONE);
	ck_assert_uint_eq(c.status, SCSI_STATUS_GOOD);
	ck_assert_uint_eq(c.data_len, len);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

START_TEST(inquiry_standard)
{
	EXEC(SCSI_INQUIRY, 0, 0, 0, 96, 0);
	expect_good(36);
	ck_assert_uint_eq(buf[0], 0x00); /* direct access, connected */
	ck_assert_uint_eq(buf[2], 0x05); /* SPC-3: Linux then reads VPD */
	ck_assert_uint_eq(buf[4], 31);
	ck_assert_int_eq(memcmp(buf + 8, "KESTREL ", 8), 0);
	EXEC(SCSI_INQUIRY, 0, 0, 0, 5, 0); /* allocation length cuts */
	expect_good(5);
	EXEC(SCSI_INQUIRY, 0, 0x80, 0, 96, 0); /* page code without EVPD */
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}
END_TEST

START_TEST(inquiry_vpd)
{
	EXEC(SCSI_INQUIRY, 1, 0x00, 0, 255, 0);
	expect_good(10);
	ck_assert_int_eq(memcmp(buf + 4, "\x00\x80\x83\xb0\xb1\xb2", 6), 0);
	EXEC(SCSI_INQUIRY, 1, 0x80, 0, 255, 0);
	expect_good(4 + 10);
	ck_assert_int_eq(memcmp(buf + 4, "KST00-TEST", 10), 0);
	EXEC(SCSI_INQUIRY, 1, 0x83, 0, 255, 0);
	ck_assert_uint_eq(c.status, SCSI_STATUS_GOOD);
	ck_assert_uint_eq(buf[1], 0x83);
	ck_assert_uint_eq(buf[5], 0x01);		/* T10 vendor id designator first */
	ck_assert_uint_eq(buf[4 + 4 + 18 + 1], 0x03);	/* then NAA */
	ck_assert_uint_eq(buf[4 + 4 + 18 + 4] >> 4, 3); /* locally assigned */
	EXEC(SCSI_INQUIRY, 1, 0xb0, 0, 255, 0);
	expect_good(64);
	ck_assert_uint_eq(be32(buf + 8), SCSI_DISK_MAX_XFER_BLOCKS);
	ck_assert_uint_eq(be32(buf + 20), 0); /* no UNMAP without discard */
	EXEC(SCSI_INQUIRY, 1, 0xb1, 0, 255, 0);
	expect_good(64);
	ck_assert_uint_eq(buf[5], 1); /* non-rotating */
	EXEC(SCSI_INQUIRY, 1, 0xb2, 0, 255, 0);
	expect_good(8);
	ck_assert_uint_eq(buf[5], 0);
	disk.can_discard = true;
	EXEC(SCSI_INQUIRY, 1, 0xb2, 0, 255, 0);
	ck_assert_uint_eq(buf[5] & 0xc4, 0xc4); /* LBPU, LBPWS, LBPRZ */
	EXEC(SCSI_INQUIRY, 1, 0xb0, 0, 255, 0);
	ck_assert_uint_eq(be32(buf + 24), SCSI_DISK_MAX_UNMAP_DESC);
	EXEC(SCSI_INQUIRY, 1, 0x89, 0, 255, 0); /* ATA information: not ours */
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}
END_TEST

START_TEST(read_capacity)
{
	EXEC(SCSI_READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	expect_good(8);
	ck_assert_uint_eq(be32(buf), 2047);
	ck_assert_uint_eq(be32(buf + 4), 512);
	EXEC(SCSI_SERVICE_ACTION_IN_16, SCSI_SAI_READ_CAPACITY_16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	     32, 0, 0);
	expect_good(32);
	ck_assert_uint_eq(be32(buf) | be32(buf + 4), 2047);
	ck_assert_uint_eq(buf[14], 0);
	disk.nblocks = 1ULL << 33; /* 4 TiB: beyond READ CAPACITY(10) */
	disk.can_discard = true;
	EXEC(SCSI_READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	ck_assert_uint_eq(be32(buf), 0xffffffffu);
	EXEC(SCSI_SERVICE_ACTION_IN_16, SCSI_SAI_READ_CAPACITY_16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	     32, 0, 0);
	ck_assert_uint_eq(be32(buf), 1);
	ck_assert_uint_eq(be32(buf + 4), 0xffffffffu);
	ck_assert_uint_eq(buf[14] & 0xc0, 0xc0); /* LBPME, LBPRZ */
	EXEC(SCSI_SERVICE_ACTION_IN_16, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0);
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
}
END_TEST

START_TEST(read_write_decoding)
{
	EXEC(SCSI_READ_10, 0, 0, 0, 0, 10, 0, 0, 8, 0);
	ck_assert_int_eq(c.action, SCSI_ACT_READ);
	ck_assert_uint_eq(c.lba, 10);
	ck_assert_uint_eq(c.nblocks, 8);
	ck_assert(!c.fua);
	EXEC(SCSI_WRITE_10, 0x08, 0, 0, 0x01, 0, 0, 0, 1, 0); /* FUA */
	ck_assert_int_eq(c.action, SCSI_ACT_WRITE);
	ck_assert_uint_eq(c.lba, 256);
	ck_assert(c.fua);
	EXEC(SCSI_WRITE_6, 0x00, 0x01, 0x02, 0, 0); /* 0 blocks = 256 */
	ck_assert_int_eq(c.action, SCSI_ACT_WRITE);
	ck_assert_uint_eq(c.lba, 0x102);
	ck_assert_uint_eq(c.nblocks, 256);
	EXEC(SCSI_READ_12, 0, 0, 0, 0x07, 0xff, 0, 0, 0, 1, 0, 0);
	ck_assert_int_eq(c.action, SCSI_ACT_READ);
	ck_assert_uint_eq(c.lba, 2047);
	EXEC(SCSI_READ_16, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 3, 0, 0);
	ck_assert_int_eq(c.action, SCSI_ACT_READ);
	ck_assert_uint_eq(c.lba, 5);
	ck_assert_uint_eq(c.nblocks, 3);
	EXEC(SCSI_READ_10, 0, 0, 0, 0, 10, 0, 0, 0, 0); /* 0 blocks: nothing */
	expect_good(0);
	/* Without a volatile cache (cache=directsync) every write is written through. */
	disk.write_cache = false;
	EXEC(SCSI_WRITE_16, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 3, 0, 0);
	ck_assert(c.fua);
}
END_TEST

START_TEST(lba_out_of_range)
{
	EXEC(SCSI_READ_10, 0, 0, 0, 0x07, 0xff, 0, 0, 2, 0); /* 2047 + 2 */
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	EXEC(SCSI_READ_10, 0, 0, 0, 0x08, 0x00, 0, 0, 0, 0); /* past the end, 0 blocks */
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	/* LBA + count wraps 64 bits. */
	EXEC(SCSI_WRITE_16, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 4, 0, 0);
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	disk.nblocks = 1ULL << 40;
	EXEC(SCSI_READ_16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0); /* 65536 blocks */
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}
END_TEST

START_TEST(write_protected)
{
	disk.readonly = true;
	EXEC(SCSI_WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0);
	expect_check(SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	EXEC(SCSI_READ_10, 0, 0, 0, 0, 0, 0, 0, 1, 0);
	ck_assert_int_eq(c.action, SCSI_ACT_READ);
	EXEC(SCSI_MODE_SENSE_6, 0x08, 0x08, 0, 64, 0);
	ck_assert_uint_eq(buf[2] & 0x80, 0x80); /* WP */
	disk.can_discard = true;
	EXEC(SCSI_UNMAP, 0, 0, 0, 0, 0, 0, 0, 24, 0);
	expect_check(SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
}
END_TEST

START_TEST(invalid_opcode)
{
	EXEC(0xc1, 0, 0, 0, 0, 0);
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
	EXEC(0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0); /* REPORT SUPPORTED OPCODES */
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
	/* A CDB shorter than its group's length. */
	scsi_disk_exec(&disk, (const uint8_t[]){ SCSI_READ_10, 0, 0, 0, 0, 0 }, 6, buf, &c);
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
	scsi_disk_exec(&disk, (const uint8_t[]){ 0 }, 0, buf, &c);
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
}
END_TEST

START_TEST(mode_sense)
{
	EXEC(SCSI_MODE_SENSE_6, 0x08, 0x08, 0, 255, 0); /* DBD, caching page */
	expect_good(4 + 20);
	ck_assert_uint_eq(buf[0], 23);
	ck_assert_uint_eq(buf[2], 0x10); /* DPOFUA, not WP */
	ck_assert_uint_eq(buf[3], 0);
	ck_assert_uint_eq(buf[4], 0x08);
	ck_assert_uint_eq(buf[6] & 0x04, 0x04); /* WCE */
	disk.write_cache = false;
	EXEC(SCSI_MODE_SENSE_6, 0x08, 0x08, 0, 255, 0);
	ck_assert_uint_eq(buf[6] & 0x04, 0);
	EXEC(SCSI_MODE_SENSE_6, 0x00, 0x3f, 0, 255, 0); /* all pages + block descriptor */
	expect_good(4 + 8 + 20 + 12);
	ck_assert_uint_eq(buf[3], 8);
	ck_assert_uint_eq(be32(buf + 4), 2048);
	EXEC(SCSI_MODE_SENSE_10, 0x08, 0x08, 0, 0, 0, 0, 0, 255, 0);
	expect_good(8 + 20);
	ck_assert_uint_eq(buf[1], 26);
	EXEC(SCSI_MODE_SENSE_6, 0x08, 0xc8, 0, 255, 0); /* saved values */
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_SAVING_NOT_SUPPORTED);
	EXEC(SCSI_MODE_SENSE_6, 0x08, 0x1c, 0, 255, 0); /* a page we lack */
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	EXEC(SCSI_MODE_SENSE_6, 0x08, 0x08, 0, 4, 0); /* header only */
	expect_good(4);
}
END_TEST

START_TEST(report_luns_sense_tur)
{
	EXEC(SCSI_REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0);
	expect_good(16);
	ck_assert_uint_eq(be32(buf), 8);
	EXEC(SCSI_REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0);
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	EXEC(SCSI_REQUEST_SENSE, 0, 0, 0, 252, 0);
	expect_good(18);
	ck_assert_uint_eq(buf[0], 0x70);
	ck_assert_uint_eq(buf[2], 0);
	EXEC(SCSI_TEST_UNIT_READY, 0, 0, 0, 0, 0);
	expect_good(0);
	EXEC(SCSI_SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	ck_assert_int_eq(c.action, SCSI_ACT_FLUSH);
}
END_TEST

START_TEST(unmap)
{
	uint8_t p[8 + 32] = { 0, 38, 0, 32 };
	struct scsi_range r[4];

	EXEC(SCSI_UNMAP, 0, 0, 0, 0, 0, 0, 0, sizeof(p), 0);
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE); /* no discard */
	disk.can_discard = true;
	EXEC(SCSI_UNMAP, 0, 0, 0, 0, 0, 0, 0, sizeof(p), 0);
	ck_assert_int_eq(c.action, SCSI_ACT_DATAOUT);
	ck_assert_uint_eq(c.dataout_len, sizeof(p));
	p[8 + 7] = 100; /* LBA 100, 8 blocks */
	p[8 + 11] = 8;
	p[24 + 6] = 0x07; /* LBA 0x700, 16 blocks */
	p[24 + 11] = 16;
	ck_assert_uint_eq(scsi_disk_dataout(&disk, &c, p, sizeof(p), r, 4), 2);
	ck_assert_int_eq(c.action, SCSI_ACT_DISCARD);
	ck_assert_uint_eq(r[0].lba, 100);
	ck_assert_uint_eq(r[0].nblocks, 8);
	ck_assert_uint_eq(r[1].lba, 0x700);
	ck_assert_uint_eq(r[1].nblocks, 16);
	/* A descriptor past the end of the disk. */
	EXEC(SCSI_UNMAP, 0, 0, 0, 0, 0, 0, 0, sizeof(p), 0);
	p[24 + 6] = 0x08;
	p[24 + 7] = 0x00;
	ck_assert_uint_eq(scsi_disk_dataout(&disk, &c, p, sizeof(p), r, 4), 0);
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	/* Block descriptor length beyond the data. */
	EXEC(SCSI_UNMAP, 0, 0, 0, 0, 0, 0, 0, sizeof(p), 0);
	p[3] = 48;
	ck_assert_uint_eq(scsi_disk_dataout(&disk, &c, p, sizeof(p), r, 4), 0);
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_PARAM);
}
END_TEST

START_TEST(write_same)
{
	uint8_t blk[512] = { 0 };
	struct scsi_range r[1];

	disk.can_discard = true;
	EXEC(SCSI_WRITE_SAME_16, 0x08, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 32, 0, 0);
	ck_assert_int_eq(c.action, SCSI_ACT_DATAOUT);
	ck_assert_uint_eq(scsi_disk_dataout(&disk, &c, blk, sizeof(blk), r, 1), 1);
	ck_assert_int_eq(c.action, SCSI_ACT_DISCARD);
	ck_assert_uint_eq(r[0].lba, 64);
	ck_assert_uint_eq(r[0].nblocks, 32);
	EXEC(SCSI_WRITE_SAME_16, 0x00, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 32, 0, 0);
	ck_assert_uint_eq(scsi_disk_dataout(&disk, &c, blk, sizeof(blk), r, 1), 1);
	ck_assert_int_eq(c.action, SCSI_ACT_WRITE_ZEROES);
	blk[17] = 1; /* a pattern we cannot replicate */
	EXEC(SCSI_WRITE_SAME_16, 0x08, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 32, 0, 0);
	ck_assert_uint_eq(scsi_disk_dataout(&disk, &c, blk, sizeof(blk), r, 1), 0);
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	EXEC(SCSI_WRITE_SAME_16, 0x08, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0); /* WSNZ */
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	EXEC(SCSI_WRITE_SAME_16, 0x08, 0, 0, 0, 0, 0, 0, 0x07, 0xff, 0, 0, 0, 2, 0, 0);
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
}
END_TEST

START_TEST(absent_lun)
{
	uint8_t cdb[32] = { SCSI_INQUIRY, 0, 0, 0, 36, 0 };

	scsi_nolun_exec(cdb, sizeof(cdb), buf, &c);
	expect_good(36);
	ck_assert_uint_eq(buf[0], 0x7f); /* qualifier 3: no LUN here */
	cdb[0] = SCSI_TEST_UNIT_READY;
	scsi_nolun_exec(cdb, sizeof(cdb), buf, &c);
	expect_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LUN_NOT_SUPPORTED);
	memcpy(cdb, (const uint8_t[]){ SCSI_REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0 }, 12);
	scsi_nolun_exec(cdb, sizeof(cdb), buf, &c);
	expect_good(16);
}
END_TEST

/* A command doing action that fails with err ends in CHECK CONDITION key/asc. */
static void expect_errno_sense(enum scsi_action action, int err, uint8_t key, uint16_t asc)
{
	c.action = action;
	scsi_cmd_set_errno(&c, err);
	expect_check(key, asc);
}

START_TEST(errno_sense)
{
	expect_errno_sense(SCSI_ACT_READ, -EIO, SCSI_SENSE_MEDIUM_ERROR,
			   SCSI_ASC_UNRECOVERED_READ_ERROR);
	expect_errno_sense(SCSI_ACT_WRITE, -EIO, SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_WRITE_ERROR);
	expect_errno_sense(SCSI_ACT_WRITE, -EROFS, SCSI_SENSE_DATA_PROTECT,
			   SCSI_ASC_WRITE_PROTECTED);
	expect_errno_sense(SCSI_ACT_WRITE, -ENOSPC, SCSI_SENSE_DATA_PROTECT,
			   SCSI_ASC_SPACE_ALLOC_FAILED);
	expect_errno_sense(SCSI_ACT_DISCARD, -EOPNOTSUPP, SCSI_SENSE_HARDWARE_ERROR,
			   SCSI_ASC_INTERNAL_TARGET_FAILURE);
}
END_TEST

/* Random CDBs: whatever comes in, the answer stays inside the buffer and is
 * either a block operation inside the disk or a complete status. */
START_TEST(cdb_fuzz)
{
	uint32_t x = 0x12345678;
	uint8_t cdb[32];

	disk.can_discard = true;
	for (int i = 0; i < 200000; i++) {
		for (size_t k = 0; k < sizeof(cdb); k++) {
			x = x * 1103515245 + 12345;
			cdb[k] = (uint8_t)(x >> 16);
		}
		scsi_disk_exec(&disk, cdb, sizeof(cdb), buf, &c);
		ck_assert_uint_le(c.data_len, SCSI_DISK_BUF_SIZE);
		if (c.action == SCSI_ACT_READ || c.action == SCSI_ACT_WRITE) {
			ck_assert(c.nblocks > 0 && c.nblocks <= SCSI_DISK_MAX_XFER_BLOCKS);
			ck_assert(c.lba + c.nblocks <= disk.nblocks);
		}
	}
}
END_TEST

SUITE_MAIN("scsi", "disk", setup, NULL, 0, inquiry_standard, inquiry_vpd, read_capacity,
	   read_write_decoding, lba_out_of_range, write_protected, invalid_opcode, mode_sense,
	   report_luns_sense_tur, unmap, write_same, absent_lun, errno_sense, cdb_fuzz)
