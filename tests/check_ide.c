/* The IDE channel with ATA disks, driven at register level the way
 * ata_piix/SeaBIOS do (tests/ide_driver.h): IDENTIFY, PIO and MULTIPLE reads
 * and writes checked against the image file, 48-bit LBA past 128 GiB on a
 * sparse image, CHS, errors, resets and signatures, bus-master DMA with PRD
 * tables in fake guest memory (hostile ones too), commands out of order, a
 * register fuzz run, and save -> load -> save. ATAPI is in check_atapi.c. */
#include <time.h>

#include "kestrel/bus.h"
#include "../devices/emulated/ide_priv.h"
#include "ide_driver.h"

/* ---- ATA: IDENTIFY and PIO ------------------------------------------------- */

START_TEST(identify_disk)
{
	uint8_t p[512], sum = 0;
	char s[48];

	identify(0, 0xec, p);
	ck_assert_uint_eq(word(p, 0), 0x0040);
	ck_assert_uint_eq(word(p, 1), DISK_SECTORS / (16 * 63));
	ck_assert_uint_eq(word(p, 3), 16);
	ck_assert_uint_eq(word(p, 6), 63);
	ata_string(p, 10, 10, s);
	ck_assert_str_eq(s, "KESTREL-ide0-0");
	ata_string(p, 27, 20, s);
	ck_assert_str_eq(s, "KESTREL HARDDISK");
	ck_assert_uint_eq(word(p, 47), 0x8010);
	ck_assert_uint_eq(word(p, 49) & 0x0300, 0x0300); /* LBA, DMA */
	ck_assert_uint_eq(word(p, 53) & 7, 7);
	ck_assert_uint_eq(word(p, 59), 0x0100); /* multiple off at power-on */
	ck_assert_uint_eq(word(p, 60) | (uint32_t)word(p, 61) << 16, DISK_SECTORS);
	ck_assert_uint_eq(word(p, 63) & 7, 7);
	ck_assert_uint_eq(word(p, 64), 3);
	ck_assert_uint_eq(word(p, 83) & (1 << 10 | 1 << 12 | 1 << 13), 1 << 10 | 1 << 12 | 1 << 13);
	ck_assert_uint_eq(word(p, 82) & (1 << 5), 1 << 5); /* write cache */
	ck_assert_uint_eq(word(p, 85) & (1 << 5), 1 << 5); /* ... enabled (writeback) */
	ck_assert_uint_eq(word(p, 88) & 0x3f, 0x3f);
	/* Device 1 seen (DASP-, bit 5); never SeaBIOS's 0x4041, "device 0
	 * answers for an absent device 1". */
	ck_assert_uint_eq(word(p, 93) & 0xdf61, 0x4021);
	ck_assert_uint_eq(word(p, 100), DISK_SECTORS);
	ck_assert_uint_eq(word(p, 101) | word(p, 102) | word(p, 103), 0);
	ck_assert_uint_eq(word(p, 106), 0x4000);
	ck_assert_uint_eq(p[510], 0xa5);
	for (unsigned i = 0; i < 512; i++)
		sum += p[i];
	ck_assert_uint_eq(sum, 0);
	/* The interrupt came with DRQ; none at the end of PIO data-in. */
	ck_assert_int_eq(irq.rises, 1);
	ck_assert_uint_eq(reg(R_CMD), ST_DRDY | 0x10);
	ck_assert_int_eq(irq.level, 0);
}
END_TEST

START_TEST(pio_read_write_sectors)
{
	uint8_t buf[8 * 512], want[8 * 512];
	int rises;

	/* READ SECTORS: three DRQ blocks, an interrupt for each. */
	select_dev(0);
	tf28(0, 10, 3);
	rises = irq.rises;
	command(0x20);
	pio_in(buf, 3 * 512, 512, false);
	file_holds(path_of("disk.img"), 10 * 512, buf, 3 * 512);
	ck_assert_int_eq(irq.rises - rises, 3);
	expect_idle();
	ck_assert_uint_eq(reg(R_LBAL), 12); /* the last sector moved */

	/* The same with 32-bit data port accesses. */
	tf28(0, 2000, 2);
	command(0x20);
	pio_in(buf, 2 * 512, 512, true);
	file_holds(path_of("disk.img"), 2000 * 512, buf, 2 * 512);

	/* WRITE SECTORS: no interrupt before the first block, one after each. */
	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 13 + 5);
	tf28(0, 100, 2);
	rises = irq.rises;
	set_reg(R_CMD, 0x30);
	ck_assert_int_eq(irq.rises, rises);
	pio_out(buf, 2 * 512, 512);
	ck_assert_int_eq(irq.rises - rises, 2);
	expect_idle();
	file_holds(path_of("disk.img"), 100 * 512, buf, 2 * 512);
	file_read(path_of("disk.img"), 102 * 512, want, 512); /* the neighbour untouched */
	ck_assert_uint_eq(want[0], pattern(102 * 512));

	/* A count of 0 means 256 sectors. */
	tf28(0, 0, 0);
	command(0x40); /* READ VERIFY */
	expect_idle();
	ck_assert_uint_eq(reg(R_LBAL), 255);
}
END_TEST

START_TEST(pio_multiple)
{
	uint8_t buf[10 * 512];
	int rises;

	select_dev(0);
	tf28(0, 50, 10);
	command(0xc4); /* before SET MULTIPLE */
	ck_assert_uint_eq(reg(R_CMD), ST_DRDY | 0x10 | ST_ERR);
	ck_assert_uint_eq(reg(R_ERR), ER_ABRT);
	set_reg(R_NSECT, 3);
	command(0xc6);
	ck_assert_uint_eq(reg(R_CMD) & ST_ERR, ST_ERR); /* 3 is not a supported count */
	set_reg(R_NSECT, 4);
	command(0xc6);
	ck_assert_uint_eq(reg(R_CMD) & ST_ERR, 0);

	tf28(0, 50, 10);
	rises = irq.rises;
	command(0xc4); /* blocks of 4, 4, 2 */
	pio_in(buf, 10 * 512, 4 * 512, false);
	ck_assert_int_eq(irq.rises - rises, 3);
	file_holds(path_of("disk.img"), 50 * 512, buf, sizeof(buf));

	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 3 + 1);
	tf48(0, 300, 10);
	rises = irq.rises;
	command(0x39); /* WRITE MULTIPLE EXT */
	pio_out(buf, 10 * 512, 4 * 512);
	ck_assert_int_eq(irq.rises - rises, 3);
	expect_idle();
	file_holds(path_of("disk.img"), 300 * 512, buf, sizeof(buf));
}
END_TEST

/* PIO goes to the disk 64 KiB at a time, whatever the DRQ block: a read
 * fetches ahead, a write collects; interrupts still come per block. */
START_TEST(pio_requests_batched)
{
	static uint8_t buf[200 * 512], want[200 * 512];
	struct blk_dev *disk = ((struct ide_channel *)ch)->drive[0].blk;
	uint64_t reads = disk->reads, writes = disk->writes;
	int rises;

	select_dev(0);
	tf28(0, 1000, 200);
	rises = irq.rises;
	command(0x20);
	pio_in(buf, sizeof(buf), 512, false);
	ck_assert_int_eq(irq.rises - rises, 200);
	ck_assert_uint_eq(disk->reads - reads, 2); /* 128 + 72 sectors */
	file_holds(path_of("disk.img"), 1000 * 512, buf, sizeof(buf));

	set_reg(R_NSECT, 16);
	command(0xc6);
	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 11 + 7);
	tf28(0, 2500, 200);
	rises = irq.rises;
	command(0xc5); /* WRITE MULTIPLE, 16-sector blocks */
	pio_out(buf, sizeof(buf), 16 * 512);
	expect_idle();
	ck_assert_int_eq(irq.rises - rises, 13);
	ck_assert_uint_eq(disk->writes - writes, 2);
	file_read(path_of("disk.img"), 2500 * 512, want, sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(buf));
	memset(buf, 0, sizeof(buf));
	tf28(0, 2500, 200);
	command(0xc4);
	pio_in(buf, sizeof(buf), 16 * 512, true);
	ck_assert_mem_eq(buf, want, sizeof(buf));
}
END_TEST

/* The vCPU's port I/O exit hands `rep insw` over as one string of words
 * (kvm_run io.count): read a 256-sector PIO command through a real bus, once
 * a word per bus_read and once a sector per bus_read_string, and check both
 * against the file. Prints the cost per word of each (no timing assert:
 * the numbers are for the reader). */
static uint64_t bench_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static uint64_t pio_read_via_bus(struct bus *b, uint8_t *buf, bool string)
{
	uint64_t spent = 0;
	bool ok = true;

	select_dev(0);
	tf28(0, 0, 0); /* 0: 256 sectors */
	command(0x20);
	/* No ck_assert inside the timed part: each passing one writes to
	 * Check's log. */
	for (unsigned s = 0; s < 256; s++) {
		uint64_t t0;

		wait_drq(s * 512);
		t0 = bench_ns();
		if (string) {
			ok &= bus_read_string(b, IDE_PRIMARY_CMD, buf + s * 512, 2, 256);
		} else {
			for (unsigned w = 0; w < 256; w++)
				ok &= bus_read(b, IDE_PRIMARY_CMD, buf + s * 512 + 2 * w, 2);
		}
		spent += bench_ns() - t0;
	}
	ck_assert(ok);
	ide_channel_drain(ch);
	expect_idle();
	return spent;
}

START_TEST(pio_string_io_bus)
{
	static uint8_t buf[256 * 512], want[256 * 512];
	uint64_t per_word = 0, per_string = 0;
	struct bus b;

	bus_init(&b, "pio");
	ck_assert_int_eq(bus_insert(&b, IDE_PRIMARY_CMD, IDE_CMD_LEN, ch, IDE_REGION_CMD), 0);
	file_read(path_of("disk.img"), 0, want, sizeof(want));
	for (int round = 0; round < 4; round++) {
		memset(buf, 0, sizeof(buf));
		per_word += pio_read_via_bus(&b, buf, false);
		ck_assert_mem_eq(buf, want, sizeof(buf));
		memset(buf, 0, sizeof(buf));
		per_string += pio_read_via_bus(&b, buf, true);
		ck_assert_mem_eq(buf, want, sizeof(buf));
	}
	ck_assert_uint_eq(b.ranges[0].hits, 4 * 2 * 256 * 256); /* registers go around the bus */
	printf("ide: PIO data port through the bus: %.1f ns/word with bus_read per word, "
	       "%.1f ns/word with bus_read_string per sector\n",
	       (double)per_word / (4 * 256 * 256), (double)per_string / (4 * 256 * 256));
	bus_destroy(&b);
}
END_TEST

/* The counters behind `kestrel ctl stats`: commands that succeeded with
 * their bytes, and the ones that ended in an error. */
START_TEST(stats_count_commands)
{
	static uint8_t buf[4 * 512];
	uint8_t cdb[12] = { 0x28, 0, 0, 0, 0, 3, 0, 0, 2 }; /* READ(10) of 2 blocks at 3 */
	static uint8_t cd[2 * 2048];
	struct ide_drive_stats st;
	size_t got;

	ck_assert_int_eq(ide_drive_get_stats(ch, 0, &st), 0);
	ck_assert_int_eq(st.kind, IDE_DISK);
	ck_assert(!st.readonly);
	ck_assert_str_eq(st.path, path_of("disk.img"));
	ck_assert_uint_eq(st.c.read_ops + st.c.write_ops + st.c.errors, 0);
	select_dev(0);
	tf28(0, 10, 2);
	command(0x20);
	pio_in(buf, 1024, 512, false);
	tf28(0, 20, 3);
	command(0x30);
	pio_out(buf, 1536, 512);
	prd(0, DMA_BUF, 4 * 512, true);
	dma_read(30, 4, false);
	expect_dma_ok();
	command(0xe7);
	expect_idle();
	tf28(0, DISK_SECTORS, 1); /* past the end */
	command(0x20);
	ck_assert_int_eq(ide_drive_get_stats(ch, 0, &st), 0);
	ck_assert_uint_eq(st.c.read_ops, 2);
	ck_assert_uint_eq(st.c.read_bytes, 6 * 512);
	ck_assert_uint_eq(st.c.write_ops, 1);
	ck_assert_uint_eq(st.c.write_bytes, 3 * 512);
	ck_assert_uint_eq(st.c.flush_ops, 1);
	ck_assert_uint_eq(st.c.errors, 1);
	/* The CD: a read, and one past the end of the medium. */
	ck_assert_uint_eq(packet(cdb, 0, cd, sizeof(cd), &got) & ST_ERR, 0);
	cdb[5] = CD_BLOCKS;
	ck_assert_uint_eq(packet(cdb, 0, cd, sizeof(cd), &got) & ST_ERR, ST_ERR);
	ck_assert_int_eq(ide_drive_get_stats(ch, 1, &st), 0);
	ck_assert_int_eq(st.kind, IDE_CDROM);
	ck_assert(st.readonly);
	ck_assert_uint_eq(st.c.read_ops, 1);
	ck_assert_uint_eq(st.c.read_bytes, 2 * 2048);
	ck_assert_uint_eq(st.c.errors, 1);
	ck_assert_int_eq(ide_drive_get_stats(ch, 2, &st), -ENODEV);
}
END_TEST

START_TEST(lba48_past_128g)
{
	const uint64_t sectors = GiB(200) / 512, lba = (1ULL << 28) + 5;
	uint8_t p[512], buf[2 * 512], back[2 * 512];
	struct device *big;

	make_image(path_of("big.img"), GiB(200), 0); /* sparse */
	big = new_channel(IDE_DISK, open_img(path_of("big.img"), false), IDE_NONE, NULL);
	ch->ops->destroy(ch);
	ch = big;
	identify(0, 0xec, p);
	ck_assert_uint_eq(word(p, 60) | (uint32_t)word(p, 61) << 16, 0x0fffffff);
	ck_assert_uint_eq(word(p, 100) | (uint64_t)word(p, 101) << 16 |
				  (uint64_t)word(p, 102) << 32,
			  sectors);
	ck_assert_uint_eq(word(p, 1), 16383);

	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i ^ 0x5a);
	tf48(0, lba, 2);
	command(0x34); /* WRITE SECTORS EXT */
	pio_out(buf, sizeof(buf), 512);
	expect_idle();
	file_read(path_of("big.img"), lba * 512, back, sizeof(back));
	ck_assert_mem_eq(buf, back, sizeof(buf));
	memset(back, 0, sizeof(back));
	tf48(0, lba, 2);
	command(0x24); /* READ SECTORS EXT */
	pio_in(back, sizeof(back), 512, false);
	ck_assert_mem_eq(buf, back, sizeof(buf));
	/* The address of the last sector, back in the HOB registers. */
	io_wr(ch, CTRL, 0, 1, 0x80);
	ck_assert_uint_eq(reg(R_LBAL), 0x10);
	io_wr(ch, CTRL, 0, 1, 0x00);
	ck_assert_uint_eq(reg(R_LBAL), 6);

	/* 28-bit commands stop at 0x0fffffff sectors; 48-bit ones at the end. */
	tf28(0, 0x0fffffff, 2);
	command(0x20);
	ck_assert_uint_eq(reg(R_CMD) & ST_ERR, ST_ERR);
	ck_assert_uint_eq(reg(R_ERR), ER_IDNF);
	tf48(0, sectors - 1, 2);
	command(0x24);
	ck_assert_uint_eq(reg(R_ERR), ER_IDNF);
	tf48(0, sectors - 1, 1);
	command(0x24);
	pio_in(back, 512, 512, false);
	ck_assert_uint_eq(back[0] | back[511], 0);
}
END_TEST

START_TEST(chs_addressing)
{
	uint8_t buf[512], p[512];

	/* Default translation 16 heads x 63 sectors: C/H/S 1/2/3. */
	set_reg(R_NSECT, 1);
	set_reg(R_LBAL, 3);
	set_reg(R_LBAM, 1);
	set_reg(R_LBAH, 0);
	set_reg(R_DEV, 0xa0 | 2);
	command(0x20);
	pio_in(buf, 512, 512, false);
	file_holds(path_of("disk.img"), ((1 * 16 + 2) * 63 + 2) * 512ULL, buf, 512);

	/* INITIALIZE DEVICE PARAMETERS: 4 heads, 17 sectors per track. */
	set_reg(R_NSECT, 17);
	set_reg(R_DEV, 0xa0 | 3);
	command(0x91);
	ck_assert_uint_eq(reg(R_CMD) & ST_ERR, 0);
	identify(0, 0xec, p);
	ck_assert_uint_eq(word(p, 55), 4);
	ck_assert_uint_eq(word(p, 56), 17);
	ck_assert_uint_eq(word(p, 54), DISK_SECTORS / (4 * 17));
	set_reg(R_NSECT, 1);
	set_reg(R_LBAL, 17); /* C/H/S 2/3/17 */
	set_reg(R_LBAM, 2);
	set_reg(R_LBAH, 0);
	set_reg(R_DEV, 0xa0 | 3);
	command(0x20);
	pio_in(buf, 512, 512, false);
	file_holds(path_of("disk.img"), ((2 * 4 + 3) * 17 + 16) * 512ULL, buf, 512);

	/* Sector 0 and a head past the translation do not exist. */
	set_reg(R_LBAL, 0);
	set_reg(R_DEV, 0xa0);
	command(0x20);
	ck_assert_uint_eq(reg(R_ERR), ER_IDNF);
	set_reg(R_LBAL, 1);
	set_reg(R_DEV, 0xa0 | 4);
	command(0x20);
	ck_assert_uint_eq(reg(R_ERR), ER_IDNF);
	/* INITIALIZE DEVICE PARAMETERS with 0 sectors per track: ABRT. */
	set_reg(R_NSECT, 0);
	command(0x91);
	ck_assert_uint_eq(reg(R_ERR), ER_ABRT);
}
END_TEST

START_TEST(errors_and_misc_commands)
{
	uint8_t p[512];

	select_dev(0);
	tf28(0, DISK_SECTORS - 1, 2);
	command(0x20);
	ck_assert_uint_eq(reg(R_CMD), ST_DRDY | 0x10 | ST_ERR);
	ck_assert_uint_eq(reg(R_ERR), ER_IDNF);
	ck_assert_int_eq(irq.level, 0); /* the status read cleared it */
	ck_assert_int_ge(irq.rises, 1);
	for (unsigned c = 0; c < 256; c++) {
		static const uint8_t known[] = { 0x20, 0x21, 0x24, 0x25, 0x29, 0x30, 0x31, 0x34,
						 0x35, 0x39, 0x40, 0x41, 0x42, 0x90, 0x91, 0xc4,
						 0xc5, 0xc6, 0xc8, 0xc9, 0xca, 0xcb, 0xe0, 0xe1,
						 0xe2, 0xe3, 0xe5, 0xe7, 0xea, 0xec, 0xef, 0x94,
						 0x95, 0x96, 0x97, 0x98 };

		if (memchr(known, (int)c, sizeof(known)) || (c & 0xf0) == 0x10 ||
		    (c & 0xf0) == 0x70)
			continue;
		tf28(0, 0, 1);
		command((uint8_t)c);
		ck_assert_msg(reg(R_ERR) == ER_ABRT && (alt_status() & ST_ERR), "command %#x", c);
	}
	/* Power and cache commands. */
	command(0xe0); /* STANDBY IMMEDIATE */
	command(0xe5);
	ck_assert_uint_eq(reg(R_NSECT), 0x00);
	command(0xe1);
	command(0xe5);
	ck_assert_uint_eq(reg(R_NSECT), 0xff);
	command(0xe7);
	ck_assert_uint_eq(reg(R_CMD) & ST_ERR, 0);
	command(0xea);
	ck_assert_uint_eq(reg(R_CMD) & ST_ERR, 0);
	set_reg(R_ERR, 0x82); /* write cache off */
	command(0xef);
	ck_assert_uint_eq(reg(R_CMD) & ST_ERR, 0);
	identify(0, 0xec, p);
	ck_assert_uint_eq(word(p, 85) & (1 << 5), 0);
	set_reg(R_ERR, 0x03);
	set_reg(R_NSECT, 0x22); /* MWDMA 2 */
	command(0xef);
	identify(0, 0xec, p);
	ck_assert_uint_eq(word(p, 63), 0x0407);
	set_reg(R_ERR, 0x03);
	set_reg(R_NSECT, 0x46); /* UDMA 6: not ours */
	command(0xef);
	ck_assert_uint_eq(reg(R_ERR), ER_ABRT);
	set_reg(R_ERR, 0x99);
	command(0xef);
	ck_assert_uint_eq(reg(R_ERR), ER_ABRT);
}
END_TEST

START_TEST(readonly_disk_aborts_writes)
{
	uint8_t want[512];

	ch->ops->destroy(ch);
	make_image(path_of("ro.img"), 64 * 512, ~0ULL);
	ch = new_channel(IDE_DISK, open_img(path_of("ro.img"), true), IDE_NONE, NULL);
	tf28(0, 1, 1);
	command(0x30);
	ck_assert_uint_eq(reg(R_ERR), ER_ABRT);
	ck_assert_uint_eq(alt_status() & ST_DRQ, 0);
	tf28(0, 1, 1);
	command(0xca);
	ck_assert_uint_eq(reg(R_ERR), ER_ABRT);
	file_read(path_of("ro.img"), 512, want, 512);
	ck_assert_uint_eq(want[7], pattern(512 + 7));
	/* FLUSH CACHE completes inside blk_submit here (nothing can be dirty):
	 * the channel finishes it on the submitting thread without deadlock. */
	command(0xe7);
	ck_assert_uint_eq(reg(R_CMD), ST_DRDY | 0x10);
	ck_assert_int_eq(irq.level, 0);
	ck_assert_int_ge(irq.rises, 3);
}
END_TEST

/* ---- resets, signatures, absent devices ------------------------------------ */

START_TEST(srst_signatures)
{
	uint8_t p[512];

	io_wr(ch, CTRL, 0, 1, 0x04 | 0x02); /* SRST, nIEN */
	ck_assert_uint_eq(alt_status() & ST_BSY, ST_BSY);
	io_wr(ch, CTRL, 0, 1, 0x02);
	select_dev(0);
	ck_assert_uint_eq(reg(R_CMD), ST_DRDY | 0x10);
	ck_assert_uint_eq(reg(R_ERR), 0x01);
	ck_assert_uint_eq(reg(R_NSECT), 1);
	ck_assert_uint_eq(reg(R_LBAL), 1);
	ck_assert_uint_eq(reg(R_LBAM), 0);
	ck_assert_uint_eq(reg(R_LBAH), 0);
	select_dev(1);
	ck_assert_uint_eq(reg(R_CMD), 0);
	ck_assert_uint_eq(reg(R_ERR), 0x01);
	ck_assert_uint_eq(reg(R_LBAM), 0x14);
	ck_assert_uint_eq(reg(R_LBAH), 0xeb);

	/* A packet device aborts IDENTIFY DEVICE, showing the signature. */
	set_reg(R_LBAM, 0);
	command(0xec);
	ck_assert_uint_eq(reg(R_ERR), ER_ABRT);
	ck_assert_uint_eq(reg(R_LBAM), 0x14);
	identify(1, 0xa1, p);
	ck_assert_uint_eq(word(p, 0), 0x85c0);
	ck_assert_uint_eq(word(p, 49) & 0x0300, 0x0300);
	ck_assert_uint_eq(word(p, 82) & (1 << 4), 1 << 4);

	/* EXECUTE DEVICE DIAGNOSTIC and DEVICE RESET. */
	select_dev(0);
	command(0x90);
	ck_assert_uint_eq(reg(R_ERR), 0x01);
	ck_assert_uint_eq(reg(R_NSECT), 1);
	select_dev(1);
	set_reg(R_LBAM, 0x55);
	command(0x08);
	ck_assert_uint_eq(reg(R_LBAM), 0x14);
	ck_assert_uint_eq(alt_status(), 0);
	select_dev(0);
	command(0x08);
	ck_assert_uint_eq(reg(R_ERR), ER_ABRT);

	/* nIEN keeps the line low; clearing it lets the pending INTRQ through. */
	io_wr(ch, CTRL, 0, 1, 0x02);
	command(0xe5);
	ck_assert_int_eq(irq.level, 0);
	io_wr(ch, CTRL, 0, 1, 0x00);
	ck_assert_int_eq(irq.level, 1);
	(void)alt_status();
	ck_assert_int_eq(irq.level, 1); /* alternate status leaves it */
	(void)reg(R_CMD);
	ck_assert_int_eq(irq.level, 0);
}
END_TEST

START_TEST(absent_devices_read_zero)
{
	struct device *d, *empty;

	ch->ops->destroy(ch);
	ch = d = new_channel(IDE_DISK, open_img(path_of("disk.img"), false), IDE_NONE, NULL);
	empty = new_channel(IDE_NONE, NULL, IDE_NONE, NULL);
	/* SeaBIOS's and libata's probe: 55h/AAh read back from device 1. */
	select_dev(1);
	set_reg(R_NSECT, 0x55);
	set_reg(R_LBAL, 0xaa);
	ck_assert_uint_eq(reg(R_NSECT), 0);
	ck_assert_uint_eq(reg(R_LBAL), 0);
	ck_assert_uint_eq(reg(R_CMD), 0);
	ck_assert_uint_eq(reg(R_DEV), 0xb0);
	command(0xec); /* ignored */
	ck_assert_uint_eq(alt_status(), 0);
	select_dev(0);
	ck_assert_uint_eq(reg(R_NSECT), 0x55);
	ck_assert_uint_eq(reg(R_LBAL), 0xaa);

	ch = empty;
	select_dev(0);
	set_reg(R_NSECT, 0x55);
	ck_assert_uint_eq(reg(R_NSECT), 0);
	ck_assert_uint_eq(reg(R_DEV), 0);
	command(0xec);
	ck_assert_uint_eq(alt_status(), 0);
	empty->ops->destroy(empty);
	ch = d;
}
END_TEST

START_TEST(bad_configurations)
{
	struct ide_drive_conf c[2] = { { .kind = IDE_DISK }, { .kind = IDE_NONE } };
	char err[256] = "";

	ck_assert_ptr_null(ide_channel_create("ide1", NULL, c, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "no image"));
	c[0] = (struct ide_drive_conf){ .kind = IDE_CDROM, .serial = "012345678901234567890" };
	ck_assert_ptr_null(ide_channel_create("ide1", NULL, c, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "at most 20"));
	c[0] = (struct ide_drive_conf){ .kind = IDE_CDROM, .model = "bad\nname" };
	ck_assert_ptr_null(ide_channel_create("ide1", NULL, c, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "printable"));
}
END_TEST

START_TEST(dma_read_write)
{
	uint8_t want[16 * 512];
	uint8_t *mem = gm_ptr(&gm, DMA_BUF, MiB(1));
	int rises = irq.rises;

	/* 16 sectors over three regions: 0x600, 0x800 and 0x1200 bytes. */
	prd(0, DMA_BUF, 0x600, false);
	prd(1, DMA_BUF + 0x10000, 0x800, false);
	prd(2, DMA_BUF + 0x20000, 0x1200, true);
	dma_read(40, 16, false);
	expect_dma_ok();
	ck_assert_int_eq(irq.rises, rises + 1);
	file_read(path_of("disk.img"), 40 * 512, want, sizeof(want));
	ck_assert_mem_eq(mem, want, 0x600);
	ck_assert_mem_eq(mem + 0x10000, want + 0x600, 0x800);
	ck_assert_mem_eq(mem + 0x20000, want + 0xe00, 0x1200);
	ck_assert_uint_eq(dirty_bytes, sizeof(want));

	/* Start before the command; a table longer than the transfer keeps
	 * Active set (a good end too). */
	memset(mem, 0, 0x30000);
	prd(0, DMA_BUF, 0x1000, false);
	prd(1, DMA_BUF + 0x10000, 0x1000, true);
	dma_read(1000, 4, true);
	ck_assert_uint_eq(bm_status() & 0x07, 0x05);
	expect_idle();
	bm_stop();
	file_holds(path_of("disk.img"), 1000 * 512, mem, 4 * 512);

	/* WRITE DMA EXT from guest memory. */
	for (unsigned i = 0; i < 0x1000; i++)
		mem[i] = (uint8_t)(i * 7 + 3);
	prd(0, DMA_BUF, 0x1000, true);
	select_dev(0);
	bm_setup(PRD_TABLE, false);
	tf48(0, 3000, 8);
	command(0x35);
	bm_start(false);
	expect_dma_ok();
	file_holds(path_of("disk.img"), 3000 * 512, mem, 0x1000);

	/* A byte count of 0 is 64 KiB. */
	prd(0, DMA_BUF, 0, true);
	dma_read(128, 128, false);
	expect_dma_ok();
	{
		static uint8_t big[65536];

		file_read(path_of("disk.img"), 128 * 512, big, sizeof(big));
		ck_assert_mem_eq(mem, big, sizeof(big));
	}
}
END_TEST

START_TEST(dma_long_tables)
{
	static uint8_t want[MiB(1)];
	uint8_t *mem = gm_ptr(&gm, DMA_BUF, MiB(2));

	/* 2048 regions of 512 bytes (two block-layer chunks of 1024). */
	for (unsigned i = 0; i < 2048; i++)
		prd(i, (uint32_t)(DMA_BUF + 1024ull * i), 512, i == 2047);
	dma_read(0, 2048, false);
	expect_dma_ok();
	file_read(path_of("disk.img"), 0, want, MiB(1));
	for (unsigned i = 0; i < 2048; i++)
		ck_assert_mem_eq(mem + 1024ull * i, want + 512ull * i, 512);

	/* 2 bytes then 4-byte regions: 1024 segments are not whole sectors, so
	 * the chunk is cut back and the rest continues mid-region. */
	prd(0, DMA_BUF, 2, false);
	for (unsigned i = 1; i < 3000; i++)
		prd(i, (uint32_t)(DMA_BUF + 2 + 4ull * (i - 1)), 4, i == 2999);
	/* 2 + 2999 * 4 = 11998 bytes: 23 sectors (11776) fit. */
	memset(mem, 0, 12000);
	dma_read(7, 23, false);
	ck_assert_uint_eq(bm_status() & 0x07, 0x05);
	ck_assert_uint_eq(reg(R_CMD) & ST_ERR, 0);
	bm_stop();
	file_holds(path_of("disk.img"), 7 * 512, mem, 23 * 512);
}
END_TEST

START_TEST(dma_hostile_tables)
{
	uint8_t *mem = gm_ptr(&gm, DMA_BUF, MiB(1));

	/* No end-of-table bit: 8192 two-byte regions run into the 64 KiB
	 * boundary before 64 sectors are moved. */
	for (unsigned i = 0; i < 8192; i++)
		prd(i, (uint32_t)DMA_BUF, 2, false);
	dma_read(0, 64, false);
	expect_dma_error("no EOT");
	/* A region outside RAM. */
	prd(0, 0xf0000000u, 512, true);
	dma_read(0, 1, false);
	expect_dma_error("outside RAM");
	/* Straddling the end of RAM. */
	prd(0, (uint32_t)(RAM - 256), 512, true);
	dma_read(0, 1, false);
	expect_dma_error("end of RAM");
	/* Odd byte count; odd address. */
	prd(0, DMA_BUF, 0x201, true);
	dma_read(0, 1, false);
	expect_dma_error("odd count");
	prd(0, DMA_BUF + 1, 0x200, true);
	dma_read(0, 1, false);
	expect_dma_error("odd address");
	/* Shorter than the transfer. */
	prd(0, DMA_BUF, 0x200, true);
	dma_read(0, 2, false);
	expect_dma_error("short table");
	/* The table itself outside RAM, and one crossing 64 KiB. */
	select_dev(0);
	bm_setup(0xf0000000u, true);
	tf28(0, 0, 1);
	command(0xc8);
	bm_start(true);
	expect_dma_error("table outside RAM");
	{
		uint8_t e[8] = { 0, 0, 0x10, 0, 0x00, 0x02, 0, 0 }; /* 512 bytes at 1 MiB, no EOT */

		ck_assert_int_eq(gm_write(&gm, 0xfff8, e, 8), 0);
		select_dev(0);
		bm_setup(0xfff8, true);
		tf28(0, 0, 2);
		command(0xc8);
		bm_start(true);
		expect_dma_error("table crossing 64 KiB");
	}
	/* The engine set to read memory for a READ DMA. */
	prd(0, DMA_BUF, 0x200, true);
	select_dev(0);
	bm_setup(PRD_TABLE, false);
	tf28(0, 0, 1);
	command(0xc8);
	bm_start(false);
	expect_dma_error("direction");

	/* Still a working channel. */
	memset(mem, 0, 512);
	dma_read(9, 1, false);
	expect_dma_ok();
	file_holds(path_of("disk.img"), 9 * 512, mem, 512);
}
END_TEST

START_TEST(dma_without_bus_master)
{
	ide_channel_set_dma(ch, NULL, NULL);
	prd(0, DMA_BUF, 0x200, true);
	dma_read(0, 1, false);
	expect_dma_error("no bus master");
	/* A DMA command the guest never starts: the device waits; SRST ends it. */
	ide_channel_set_dma(ch, &fake_dma, NULL);
	select_dev(0);
	tf28(0, 0, 1);
	command(0xc8);
	ck_assert_uint_eq(alt_status() & ST_DRQ, ST_DRQ);
	command(0xec); /* refused meanwhile */
	ck_assert_uint_eq(alt_status() & ST_DRQ, ST_DRQ);
	io_wr(ch, CTRL, 0, 1, 0x04);
	io_wr(ch, CTRL, 0, 1, 0x00);
	ck_assert_uint_eq(reg(R_CMD), ST_DRDY | 0x10);
	bm_start(true); /* nothing pending now */
	ck_assert_uint_eq(bm_status() & 0x07, 0x01);
	bm_stop();
}
END_TEST

/* ---- the PRD walker alone ---------------------------------------------------- */

START_TEST(prd_walker_cursor)
{
	struct ide_bm bm = { .ops = &fake_dma };
	struct iovec iov[4];
	uint64_t gpa[4];
	struct ide_prd_cursor at[4], cur = { 0, 0 };
	struct ide_sg sg = { iov, gpa, at, 4, 0, 0 };

	prd(0, 0x10000, 300, false);
	prd(1, 0x20000, 300, false);
	prd(2, 0x30000, 1000, true);
	/* 4 segments allowed, 512-byte units: 300 + 212 of the second. */
	ck_assert_int_eq(ide_prd_map(&bm, PRD_TABLE, &cur, 1600, true, true, 512, &sg), 0);
	ck_assert_uint_eq(sg.bytes, 1536);
	ck_assert_int_eq(sg.n, 3);
	ck_assert_uint_eq(iov[2].iov_len, 936);
	ck_assert_uint_eq(cur.index, 2);
	ck_assert_uint_eq(cur.off, 936);
	ck_assert(!ide_prd_exhausted(&bm, PRD_TABLE, &cur));
	ck_assert_int_eq(ide_prd_map(&bm, PRD_TABLE, &cur, 64, true, true, 1, &sg), 0);
	ck_assert_uint_eq(sg.bytes, 64);
	ck_assert_uint_eq(gpa[0], 0x30000 + 936);
	ck_assert(ide_prd_exhausted(&bm, PRD_TABLE, &cur));
	ck_assert_int_eq(ide_prd_map(&bm, PRD_TABLE, &cur, 2, true, true, 1, &sg), -ENOSPC);

	/* With 2 segments: 300 + 300 = 600 -> cut back to 512 mid-region. */
	cur = (struct ide_prd_cursor){ 0, 0 };
	sg.max = 2;
	ck_assert_int_eq(ide_prd_map(&bm, PRD_TABLE, &cur, 4096, true, true, 512, &sg), 0);
	ck_assert_uint_eq(sg.bytes, 512);
	ck_assert_uint_eq(cur.index, 1);
	ck_assert_uint_eq(cur.off, 212);
	/* One tiny segment cannot hold a sector: nothing, cursor unchanged. */
	cur = (struct ide_prd_cursor){ 0, 0 };
	sg.max = 1;
	ck_assert_int_eq(ide_prd_map(&bm, PRD_TABLE, &cur, 4096, true, true, 512, &sg), -EINVAL);
	ck_assert_uint_eq(cur.index | cur.off, 0);
}
END_TEST

/* ---- commands out of order, resets mid-way, and a register fuzz ---------------- */

START_TEST(out_of_order)
{
	uint8_t buf[512], want[512];

	/* Data port with no data phase; Start with no command. */
	ck_assert_uint_eq(io_rd(ch, CMD, R_DATA, 2), 0);
	io_wr(ch, CMD, R_DATA, 2, 0x1234);
	bm_start(true);
	ck_assert_uint_eq(bm_status() & 0x05, 0x01);
	bm_stop();
	/* SRST halfway through a PIO read, then a clean read. */
	tf28(0, 5, 4);
	command(0x20);
	(void)io_rd(ch, CMD, R_DATA, 2);
	io_wr(ch, CTRL, 0, 1, 0x04);
	ck_assert_uint_eq(io_rd(ch, CMD, R_DATA, 2), 0);
	io_wr(ch, CTRL, 0, 1, 0x00);
	ide_channel_drain(ch);
	ck_assert_uint_eq(reg(R_CMD), ST_DRDY | 0x10);
	tf28(0, 5, 1);
	command(0x20);
	pio_in(buf, 512, 512, false);
	file_read(path_of("disk.img"), 5 * 512, want, 512);
	ck_assert_mem_eq(buf, want, 512);
	/* A new command in the middle of a PIO write replaces it. */
	tf28(0, 8, 2);
	command(0x30);
	io_wr(ch, CMD, R_DATA, 2, 0xffff);
	tf28(0, 5, 1);
	command(0x20);
	pio_in(buf, 512, 512, false);
	ck_assert_mem_eq(buf, want, 512);
	file_read(path_of("disk.img"), 8 * 512, want, 2);
	ck_assert_uint_eq(want[0], pattern(8 * 512));
	/* A PACKET command, then the CDB is never sent: the next command wins. */
	select_dev(1);
	command(0xa0);
	command(0xa1);
	pio_in(buf, 512, 512, false);
	ck_assert_uint_eq(word(buf, 0), 0x85c0);
}
END_TEST

/* A CDB the CD-ROM understands, with a random byte now and then. */
static void fuzz_cdb(uint64_t r)
{
	uint8_t cdb[12] = { 0 };

	switch (r % 8) {
	case 0:
		cdb[0] = 0x28;
		cdb[5] = (uint8_t)(r >> 8) % 64;
		cdb[8] = (uint8_t)(r >> 16) % 40;
		break;
	case 1:
		cdb[0] = 0xa8;
		cdb[5] = (uint8_t)(r >> 8) % 64;
		cdb[9] = (uint8_t)(r >> 16) % 40;
		break;
	case 2:
		cdb[0] = 0x12;
		cdb[4] = (uint8_t)(r >> 8);
		break;
	case 3: cdb[0] = 0x25; break;
	case 4:
		cdb[0] = 0x03;
		cdb[4] = 18;
		break;
	case 5:
		cdb[0] = 0x43;
		cdb[2] = (uint8_t)(r >> 8) % 3;
		cdb[8] = 100;
		break;
	case 6:
		cdb[0] = 0x46;
		cdb[1] = (uint8_t)(r >> 8) % 3;
		cdb[8] = 255;
		break;
	default:
		cdb[0] = 0x4a;
		cdb[1] = 1;
		cdb[4] = 0x10;
		cdb[8] = 8;
		break;
	}
	if ((r >> 24) % 4 == 0)
		cdb[(r >> 26) % 12] = (uint8_t)(r >> 32);
	for (unsigned i = 0; i < 12; i += 2)
		io_wr(ch, CMD, R_DATA, 2, (uint16_t)(cdb[i] | cdb[i + 1] << 8));
}

/* One random access, weighted so that commands find their data: small
 * addresses and counts, LBA mode, the data port often, the PRD table where
 * the entries are, SRST rarely. */
static void fuzz_access(unsigned i)
{
	static const uint8_t cmds[] = { 0x20, 0x24, 0x30, 0x34, 0xc4, 0xc5, 0xc6, 0xc8, 0xca,
					0x25, 0x35, 0x29, 0x39, 0x40, 0xa0, 0xa1, 0xec, 0xef,
					0xe7, 0x91, 0x90, 0x08, 0xe5, 0x10, 0x70 };
	static const uint8_t ops[] = { 0x00, 0x03, 0x12, 0x1b, 0x1e, 0x25, 0x28, 0x43,
				       0x46, 0x4a, 0x51, 0x5a, 0xa8, 0xbd, 0xbb, 0xff };
	uint64_t r = fuzz_next(), v = fuzz_next();
	unsigned kind = r % 100, size = fuzz_size();

	if (kind < 35) { /* data port */
		if ((r >> 8) % 2)
			(void)io_rd(ch, CMD, R_DATA, (r >> 9) % 2 ? 4 : 2);
		else
			io_wr(ch, CMD, R_DATA, 2,
			      (r >> 10) % 4 == 0   ? ops[v % sizeof(ops)] | (v & 0xff00)
			      : (r >> 10) % 4 == 1 ? 0
			      : (r >> 10) % 4 == 2 ? v % 8
						   : v);
	} else if (kind < 55) { /* task file */
		unsigned reg_ = 1 + (unsigned)((r >> 8) % 6);
		uint8_t b = (uint8_t)v;

		if ((r >> 12) % 4) {
			if (reg_ == R_NSECT)
				b = (uint8_t)(1 + v % 8);
			else if (reg_ == R_LBAM || reg_ == R_LBAH)
				b = (v % 8) ? 0 : (uint8_t)v;
			else if (reg_ == R_DEV)
				b = (uint8_t)(0xe0 | (v & 0x10));
		}
		io_wr(ch, CMD, reg_, 1, b);
	} else if (kind < 65) { /* a command */
		uint8_t c = (r >> 8) % 8 ? cmds[v % sizeof(cmds)] : (uint8_t)v;

		io_wr(ch, CMD, R_CMD, 1, c);
		if (c == 0xa0 && (r >> 16) % 2)
			fuzz_cdb(fuzz_next());
	} else if (kind < 75) { /* status and the rest */
		(void)io_rd(ch, (r >> 8) % 2 ? CMD : CTRL, (r >> 9) % 8, size);
	} else if (kind < 90) { /* bus master */
		if ((r >> 8) % 3 == 0)
			io_wr(ch, BMDMA, 4, 4, (r >> 10) % 8 ? PRD_TABLE : v);
		else if ((r >> 8) % 3 == 1)
			io_wr(ch, BMDMA, (r >> 10) % 8, size, v);
		else
			(void)io_rd(ch, BMDMA, (r >> 10) % 8, size);
	} else if (kind < 99) {
		io_wr(ch, BMDMA, 0, 1, v & 0x09); /* start/stop, direction */
	} else {
		io_wr(ch, CTRL, 0, 1, v & ((r >> 8) % 4 ? 0x82 : 0x86));
	}
	if (i % 64 == 0)
		ide_channel_drain(ch);
}

START_TEST(register_fuzz)
{
	uint8_t p[512];

	/* PRD entries mostly sane (RAM, even sizes, EOT now and then), some
	 * outside RAM, odd or 64 KiB long. */
	for (unsigned i = 0; i < 4096; i++) {
		uint64_t r = fuzz_next();

		if (r % 8)
			prd(i, (uint32_t)(DMA_BUF + (r >> 8) % MiB(8)) & ~1u,
			    (uint32_t)((r >> 32) % 8192) & ~1u, (r >> 50) % 4 == 0);
		else
			prd(i, (uint32_t)(r >> 8), (uint32_t)(r >> 32) & 0xffff, (r >> 50) % 2);
	}
	for (unsigned i = 0; i < 500000; i++)
		fuzz_access(i);
	ide_channel_drain(ch);
	ck_assert_int_eq(irq.bad, 0);
	/* Reset, and both devices answer IDENTIFY again. */
	io_wr(ch, BMDMA, 0, 1, 0);
	io_wr(ch, CTRL, 0, 1, 0x04);
	io_wr(ch, CTRL, 0, 1, 0x00);
	ide_channel_drain(ch);
	identify(0, 0xec, p);
	ck_assert_uint_eq(word(p, 0), 0x0040);
	identify(1, 0xa1, p);
	ck_assert_uint_eq(word(p, 0), 0x85c0);
}
END_TEST

/* ---- save / load ---------------------------------------------------------------- */

static struct device *twin(void)
{
	make_image(path_of("disk2.img"), DISK_SECTORS * 512, ~0ULL);
	make_image(path_of("cd2.iso"), CD_BLOCKS * 2048, ~0ULL);
	return new_channel(IDE_DISK, open_img(path_of("disk2.img"), false), IDE_CDROM,
			   open_img(path_of("cd2.iso"), true));
}

START_TEST(save_load_roundtrip)
{
	struct device *b = twin(), *a = ch;
	struct state_buf s;
	uint8_t buf[4 * 512], want[4 * 512];

	/* Middle of a READ MULTIPLE: 4-sector blocks, 10 bytes of the first read. */
	set_reg(R_NSECT, 4);
	command(0xc6);
	tf28(0, 60, 8);
	command(0xc4);
	(void)reg(R_CMD);
	for (unsigned i = 0; i < 10; i += 2) {
		uint16_t v = (uint16_t)io_rd(ch, CMD, R_DATA, 2);

		memcpy(buf + i, &v, 2);
	}
	io_wr(ch, BMDMA, 4, 4, 0x2000);
	io_wr(ch, BMDMA, 2, 1, 0x60);
	roundtrip(a, b, &s);
	check_truncations(b, &s);
	check_patched_fails(b, &s, STATE_HDR + 0, 2);	 /* sel */
	check_patched_fails(b, &s, STATE_HDR + 1, 0x08); /* dctl bit */
	check_patched_fails(b, &s, STATE_HDR + 2, 0x10); /* BM command bit */
	check_patched_fails(b, &s, STATE_HDR + 4, 0x01); /* PRD pointer not aligned */
	check_patched_fails(b, &s, STATE_HDR + 8, 0x20); /* DMA flags */
	state_free(&s);

	/* b continues the read where a was. */
	ch = b;
	for (unsigned i = 10; i < 512; i += 2) {
		uint16_t v = (uint16_t)io_rd(ch, CMD, R_DATA, 2);

		memcpy(buf + i, &v, 2);
	}
	for (unsigned i = 512; i < 4 * 512; i += 2) {
		uint16_t v = (uint16_t)io_rd(ch, CMD, R_DATA, 2);

		memcpy(buf + i, &v, 2);
	}
	file_holds(path_of("disk.img"), 60 * 512, buf, sizeof(buf));
	ck_assert_uint_eq(io_rd(ch, BMDMA, 4, 4), 0x2000);
	pio_in(buf, 4 * 512, 4 * 512, false); /* the second block */
	file_read(path_of("disk2.img"), 64 * 512, want, sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));
	ch = a;
	b->ops->destroy(b);
}
END_TEST

/* A drive at rest after a PIO read (the last block moved, none left) is
 * state a save must carry: SeaBIOS leaves its boot disk so. */
START_TEST(save_load_after_pio_read)
{
	struct device *b = twin(), *a = ch;
	struct state_buf s;
	uint8_t buf[512];

	select_dev(0);
	tf28(0, 10, 1);
	command(0x20);
	pio_in(buf, 512, 512, false);
	expect_idle();
	roundtrip(a, b, &s);
	state_free(&s);
	b->ops->destroy(b);
}
END_TEST

START_TEST(save_load_pending_dma_and_cd)
{
	struct device *b = twin(), *a = ch;
	struct state_buf s;
	uint8_t want[2 * 512], cdb[12] = { 0 }, buf[64];
	uint8_t *mem = gm_ptr(&gm, DMA_BUF, MiB(1));
	size_t got;

	/* The CD with a sense pending, the disk with a DMA waiting for Start. */
	cdb[0] = 0xff;
	ck_assert_uint_eq(packet(cdb, 0, buf, 0, &got) & ST_ERR, ST_ERR);
	cdb[0] = 0x1e;
	cdb[4] = 1;
	ck_assert_uint_eq(packet(cdb, 0, buf, 0, &got) & ST_ERR, 0);
	prd(0, DMA_BUF, 0x400, true);
	select_dev(0);
	bm_setup(PRD_TABLE, true);
	tf28(0, 77, 2);
	command(0xc8);
	roundtrip(a, b, &s);
	check_truncations(b, &s);
	state_free(&s);

	ch = b;
	bm_start(true);
	expect_dma_ok();
	file_read(path_of("disk2.img"), 77 * 512, want, sizeof(want));
	ck_assert_mem_eq(mem, want, sizeof(want));
	ck_assert_int_eq(ide_cd_eject(b, 1, false, &(struct blk_dev *){ NULL }), -EBUSY);
	ch = a;
	b->ops->destroy(b);
}
END_TEST

START_TEST(load_refuses_other_media)
{
	struct state_buf s = { 0 };
	struct device *b;

	make_image(path_of("disk3.img"), (DISK_SECTORS + 8) * 512, ~0ULL);
	b = new_channel(IDE_DISK, open_img(path_of("disk3.img"), false), IDE_CDROM, NULL);
	ck_assert_int_eq(ch->ops->save(ch, &s), 0);
	ck_assert_int_eq(b->ops->load(b, &s), -EINVAL); /* another disk size */
	state_free(&s);
	b->ops->destroy(b);
	b = new_channel(IDE_CDROM, NULL, IDE_CDROM, NULL);
	ck_assert_int_eq(ch->ops->save(ch, &s), 0);
	ck_assert_int_eq(b->ops->load(b, &s), -EINVAL); /* another drive kind */
	state_free(&s);
	b->ops->destroy(b);
}
END_TEST

static Suite *ide_suite(void)
{
	Suite *s = suite_create("ide");

	ADD_TCASE(s, "ata", setup, teardown, 0, identify_disk, pio_read_write_sectors, pio_multiple,
		  pio_requests_batched, pio_string_io_bus, stats_count_commands, lba48_past_128g,
		  chs_addressing, errors_and_misc_commands, readonly_disk_aborts_writes,
		  srst_signatures, absent_devices_read_zero, bad_configurations);
	ADD_TCASE(s, "dma", setup, teardown, 0, dma_read_write, dma_long_tables, dma_hostile_tables,
		  dma_without_bus_master, prd_walker_cursor);
	ADD_TCASE(s, "robustness", setup, teardown, 120, out_of_order, register_fuzz);
	ADD_TCASE(s, "state", setup, teardown, 0, save_load_roundtrip, save_load_after_pio_read,
		  save_load_pending_dma_and_cd, load_refuses_other_media);
	return s;
}

int main(void)
{
	return run_suite(ide_suite());
}
