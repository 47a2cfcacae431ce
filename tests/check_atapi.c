/* The IDE channel's ATAPI CD-ROM, driven with PACKET commands as libata's
 * sr path and SeaBIOS's El Torito code send them (tests/ide_driver.h):
 * INQUIRY, READ CAPACITY, READ(10)/(12) by PIO with byte count limits and by
 * DMA, READ TOC, GET CONFIGURATION, MODE SENSE, GET EVENT STATUS
 * NOTIFICATION, sense after errors, an empty drive, media change with UNIT
 * ATTENTION, and the medium lock. */
#include "ide_driver.h"

START_TEST(atapi_inquiry_capacity_read)
{
	uint8_t cdb[12] = { 0 }, buf[8 * 2048], want[8 * 2048];
	size_t got;

	cdb[0] = 0x12; /* INQUIRY */
	cdb[4] = 96;
	ck_assert_uint_eq(packet(cdb, 96, buf, sizeof(buf), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 36);
	ck_assert_uint_eq(buf[0], 0x05);
	ck_assert_uint_eq(buf[1], 0x80);
	ck_assert_int_eq(memcmp(buf + 8, "KESTREL ", 8), 0);

	memset(cdb, 0, 12);
	cdb[0] = 0x00; /* TEST UNIT READY */
	ck_assert_uint_eq(packet(cdb, 0, buf, 0, &got) & ST_ERR, 0);
	cdb[0] = 0x25; /* READ CAPACITY */
	ck_assert_uint_eq(packet(cdb, 8, buf, sizeof(buf), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 8);
	ck_assert_uint_eq((uint32_t)buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3],
			  CD_BLOCKS - 1);
	ck_assert_uint_eq(buf[6] << 8 | buf[7], 2048);

	/* READ(10) of 3 blocks at 5: byte count limit 2048, then 6000 (cut to
	 * an even 6000 with a shorter last piece) and 0 (the largest). */
	file_read(path_of("cd.iso"), 5 * 2048, want, 3 * 2048);
	cdb[0] = 0x28;
	cdb[5] = 5;
	cdb[8] = 3;
	ck_assert_uint_eq(packet(cdb, 2048, buf, sizeof(buf), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 3 * 2048);
	ck_assert_mem_eq(buf, want, 3 * 2048);
	memset(buf, 0, sizeof(buf));
	ck_assert_uint_eq(packet(cdb, 6001, buf, sizeof(buf), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 3 * 2048);
	ck_assert_mem_eq(buf, want, 3 * 2048);
	ck_assert_uint_eq(packet(cdb, 0, buf, sizeof(buf), &got) & ST_ERR, 0);
	ck_assert_mem_eq(buf, want, 3 * 2048);

	/* READ(12) across the 32-block buffer refill. */
	{
		static uint8_t big[40 * 2048], exp[40 * 2048];
		uint8_t c12[12] = { 0xa8, 0, 0, 0, 0, 20, 0, 0, 0, 40 };

		file_read(path_of("cd.iso"), 20 * 2048, exp, sizeof(exp));
		ck_assert_uint_eq(packet(c12, 0xfffe, big, sizeof(big), &got) & ST_ERR, 0);
		ck_assert_uint_eq(got, sizeof(big));
		ck_assert_mem_eq(big, exp, sizeof(big));
	}

	/* Past the end: ILLEGAL REQUEST, LBA out of range. */
	cdb[5] = CD_BLOCKS - 1;
	cdb[8] = 2;
	ck_assert_uint_eq(packet(cdb, 2048, buf, sizeof(buf), &got) & ST_ERR, ST_ERR);
	ck_assert_uint_eq(reg(R_ERR) >> 4, SCSI_SENSE_ILLEGAL_REQUEST);
	{
		struct scsi_sense s = request_sense();

		ck_assert_uint_eq(s.key, SCSI_SENSE_ILLEGAL_REQUEST);
		ck_assert_uint_eq(s.asc, SCSI_ASC_LBA_OUT_OF_RANGE);
	}
	/* An unknown opcode, then the sense is gone after a good command. */
	memset(cdb, 0, 12);
	cdb[0] = 0xff;
	ck_assert_uint_eq(packet(cdb, 0, buf, 0, &got) & ST_ERR, ST_ERR);
	ck_assert_uint_eq(request_sense().asc, SCSI_ASC_INVALID_OPCODE);
	ck_assert_uint_eq(request_sense().key, SCSI_SENSE_NO_SENSE);
}
END_TEST

START_TEST(atapi_toc_config_mode_events)
{
	uint8_t cdb[12] = { 0 }, b[256];
	size_t got;

	cdb[0] = 0x43; /* READ TOC, LBA */
	cdb[8] = 100;
	ck_assert_uint_eq(packet(cdb, 100, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 20);
	ck_assert_uint_eq(b[0] << 8 | b[1], 18);
	ck_assert_uint_eq(b[2], 1);
	ck_assert_uint_eq(b[3], 1);
	ck_assert_uint_eq(b[5], 0x14);
	ck_assert_uint_eq(b[6], 1);
	ck_assert_uint_eq(b[14], 0xaa);
	ck_assert_uint_eq(b[19], CD_BLOCKS);
	cdb[1] = 0x02; /* MSF: lead-out 00:02:64 */
	ck_assert_uint_eq(packet(cdb, 100, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(b[17], 0);
	ck_assert_uint_eq(b[18], 2);
	ck_assert_uint_eq(b[19], 64);
	cdb[2] = 1; /* session info */
	ck_assert_uint_eq(packet(cdb, 100, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 12);
	cdb[2] = 2; /* raw TOC */
	ck_assert_uint_eq(packet(cdb, 100, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 4 + 4 * 11);
	cdb[2] = 5;
	ck_assert_uint_eq(packet(cdb, 100, b, sizeof(b), &got) & ST_ERR, ST_ERR);

	memset(cdb, 0, 12); /* GET CONFIGURATION */
	cdb[0] = 0x46;
	cdb[8] = 255;
	ck_assert_uint_eq(packet(cdb, 255, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(b[6] << 8 | b[7], 0x0008); /* CD-ROM */
	ck_assert_uint_eq((uint32_t)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3], got - 4);
	ck_assert_uint_eq(b[8] << 8 | b[9], 0x0000); /* Profile List first */
	cdb[1] = 2;				     /* just feature 1Eh */
	cdb[3] = 0x1e;
	ck_assert_uint_eq(packet(cdb, 255, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 8 + 8);
	ck_assert_uint_eq(b[9], 0x1e);
	ck_assert_uint_eq(b[10] & 1, 1); /* current */

	memset(cdb, 0, 12); /* MODE SENSE(10) 2Ah */
	cdb[0] = 0x5a;
	cdb[2] = 0x2a;
	cdb[8] = 128;
	ck_assert_uint_eq(packet(cdb, 128, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 28);
	ck_assert_uint_eq(b[8], 0x2a);
	ck_assert_uint_eq(b[8 + 6] & 0x08, 0x08); /* can eject */
	cdb[2] = 0xc0 | 0x2a;			  /* saved values */
	ck_assert_uint_eq(packet(cdb, 128, b, sizeof(b), &got) & ST_ERR, ST_ERR);

	memset(cdb, 0, 12); /* GET EVENT STATUS */
	cdb[0] = 0x4a;
	cdb[1] = 1;
	cdb[4] = 0x10;
	cdb[8] = 8;
	ck_assert_uint_eq(packet(cdb, 8, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 8);
	ck_assert_uint_eq(b[2], 4);
	ck_assert_uint_eq(b[4], 0);
	ck_assert_uint_eq(b[5], 0x02); /* medium present */
	cdb[1] = 0;		       /* asynchronous: no */
	ck_assert_uint_eq(packet(cdb, 8, b, sizeof(b), &got) & ST_ERR, ST_ERR);

	memset(cdb, 0, 12); /* READ DISC INFORMATION */
	cdb[0] = 0x51;
	cdb[8] = 34;
	ck_assert_uint_eq(packet(cdb, 34, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 34);
	ck_assert_uint_eq(b[2], 0x0e);
	memset(cdb, 0, 12); /* MECHANISM STATUS */
	cdb[0] = 0xbd;
	cdb[9] = 8;
	ck_assert_uint_eq(packet(cdb, 8, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 8);
}
END_TEST

START_TEST(atapi_media_change_and_empty)
{
	uint8_t cdb[12] = { 0 }, b[64];
	struct blk_dev *old = NULL;
	size_t got;

	/* Empty the drive from the host. */
	ck_assert_int_eq(ide_cd_eject(ch, 1, false, &old), 0);
	ck_assert_ptr_nonnull(old);
	blk_close(old);
	ck_assert_uint_eq(packet(cdb, 0, b, 0, &got) & ST_ERR, ST_ERR); /* TUR: UA first */
	ck_assert_uint_eq(reg(R_ERR) >> 4, SCSI_SENSE_UNIT_ATTENTION);
	ck_assert_uint_eq(request_sense().asc, SCSI_ASC_MEDIUM_MAY_HAVE_CHANGED);
	ck_assert_uint_eq(packet(cdb, 0, b, 0, &got) & ST_ERR, ST_ERR);
	ck_assert_uint_eq(reg(R_ERR) >> 4, SCSI_SENSE_NOT_READY);
	{
		struct scsi_sense s = request_sense();

		ck_assert_uint_eq(s.key, SCSI_SENSE_NOT_READY);
		ck_assert_uint_eq(s.asc, SCSI_ASC_MEDIUM_NOT_PRESENT);
	}
	cdb[0] = 0x25;
	ck_assert_uint_eq(packet(cdb, 8, b, sizeof(b), &got) & ST_ERR, ST_ERR);
	cdb[0] = 0x12; /* INQUIRY still answers */
	cdb[4] = 36;
	ck_assert_uint_eq(packet(cdb, 36, b, sizeof(b), &got) & ST_ERR, 0);

	/* A new medium: GESN reports it once, the next command sees UA. */
	make_image(path_of("cd2.iso"), 10 * 2048, ~0ULL);
	ck_assert_int_eq(ide_cd_change(ch, 1, open_img(path_of("cd2.iso"), true), &old), 0);
	ck_assert_ptr_null(old);
	memset(cdb, 0, 12);
	cdb[0] = 0x4a;
	cdb[1] = 1;
	cdb[4] = 0x10;
	cdb[8] = 8;
	ck_assert_uint_eq(packet(cdb, 8, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(b[4], 2); /* new media */
	ck_assert_uint_eq(packet(cdb, 8, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(b[4], 0);
	memset(cdb, 0, 12);
	cdb[0] = 0x25;
	ck_assert_uint_eq(packet(cdb, 8, b, sizeof(b), &got) & ST_ERR, ST_ERR);
	ck_assert_uint_eq(reg(R_ERR) >> 4, SCSI_SENSE_UNIT_ATTENTION);
	ck_assert_uint_eq(packet(cdb, 8, b, sizeof(b), &got) & ST_ERR, 0);
	ck_assert_uint_eq(b[3], 9);

	/* PREVENT: the host's eject is refused (an eject request is posted),
	 * the guest's eject too; ALLOW, then the guest ejects. */
	memset(cdb, 0, 12);
	cdb[0] = 0x1e;
	cdb[4] = 1;
	ck_assert_uint_eq(packet(cdb, 0, b, 0, &got) & ST_ERR, 0);
	ck_assert_int_eq(ide_cd_eject(ch, 1, false, &old), -EBUSY);
	ck_assert_ptr_null(old);
	cdb[0] = 0x1b;
	cdb[4] = 0x02;
	ck_assert_uint_eq(packet(cdb, 0, b, 0, &got) & ST_ERR, ST_ERR);
	ck_assert_uint_eq(request_sense().asc, SCSI_ASC_MEDIUM_REMOVAL_PREVENTED);
	cdb[0] = 0x1e;
	cdb[4] = 0;
	ck_assert_uint_eq(packet(cdb, 0, b, 0, &got) & ST_ERR, 0);
	cdb[0] = 0x1b;
	cdb[4] = 0x02;
	ck_assert_uint_eq(packet(cdb, 0, b, 0, &got) & ST_ERR, 0);
	memset(cdb, 0, 12);
	ck_assert_uint_eq(packet(cdb, 0, b, 0, &got) & ST_ERR, ST_ERR);
	ck_assert_uint_eq(request_sense().asc, SCSI_ASC_MEDIUM_NOT_PRESENT_TRAY_OPEN);
	cdb[0] = 0x1b;
	cdb[4] = 0x03; /* load */
	ck_assert_uint_eq(packet(cdb, 0, b, 0, &got) & ST_ERR, 0);
	cdb[0] = 0x00;
	ck_assert_uint_eq(packet(cdb, 0, b, 0, &got) & ST_ERR, 0);

	ck_assert_int_eq(ide_cd_change(ch, 0, NULL, &old), -ENODEV); /* unit 0 is the disk */
}
END_TEST

START_TEST(atapi_dma)
{
	uint8_t want[4 * 2048], cdb[12] = { 0x28, 0, 0, 0, 0, 7, 0, 0, 4 };
	uint8_t *mem = gm_ptr(&gm, DMA_BUF, MiB(1));

	prd(0, DMA_BUF, 0x2000, true);
	select_dev(1);
	bm_setup(PRD_TABLE, true);
	set_reg(R_ERR, 0x01); /* DMA */
	command(0xa0);
	for (unsigned i = 0; i < 12; i += 2)
		io_wr(ch, CMD, R_DATA, 2, (uint16_t)(cdb[i] | cdb[i + 1] << 8));
	bm_start(true);
	ck_assert_uint_eq(bm_status() & 0x07, 0x04);
	ck_assert_uint_eq(reg(R_CMD) & (ST_ERR | ST_DRQ | ST_BSY), 0);
	ck_assert_uint_eq(reg(R_NSECT) & 3, 3);
	bm_stop();
	file_read(path_of("cd.iso"), 7 * 2048, want, sizeof(want));
	ck_assert_mem_eq(mem, want, sizeof(want));

	/* An answer by DMA: INQUIRY, 36 bytes into a longer region. */
	memset(mem, 0, 64);
	memset(cdb, 0, 12);
	cdb[0] = 0x12;
	cdb[4] = 36;
	prd(0, DMA_BUF, 64, true);
	bm_setup(PRD_TABLE, true);
	set_reg(R_ERR, 0x01);
	command(0xa0);
	for (unsigned i = 0; i < 12; i += 2)
		io_wr(ch, CMD, R_DATA, 2, (uint16_t)(cdb[i] | cdb[i + 1] << 8));
	bm_start(true);
	ck_assert_uint_eq(bm_status() & 0x07, 0x05);
	ck_assert_uint_eq(reg(R_CMD) & ST_ERR, 0);
	bm_stop();
	ck_assert_uint_eq(mem[0], 0x05);
	ck_assert_int_eq(memcmp(mem + 8, "KESTREL ", 8), 0);
	ck_assert_uint_eq(mem[36], 0);
}
END_TEST

SUITE_MAIN("atapi", "atapi", setup, teardown, 0, atapi_inquiry_capacity_read,
	   atapi_toc_config_mode_events, atapi_media_change_and_empty, atapi_dma)
