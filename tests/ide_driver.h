/* A driver's view of the IDE channel for the unit tests (check_ide.c,
 * check_atapi.c): a fixture with a disk (master) and a CD-ROM (slave) on
 * temporary images, fake guest memory behind the bus master's ops, and the
 * register sequences ata_piix and SeaBIOS use (task file, PIO blocks,
 * PACKET, PRD tables). Accesses take the device lock, as the bus does;
 * completions come from the block layer's threads and the helpers wait for
 * them with ide_channel_drain(), never with a clock. Header-only. */
#ifndef KESTREL_TEST_IDE_DRIVER_H
#define KESTREL_TEST_IDE_DRIVER_H

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kestrel/block.h"
#include "kestrel/guest_mem.h"
#include "kestrel/ide.h"
#include "kestrel/scsi_disk.h"
#include "fake_board.h"

#define CMD   IDE_REGION_CMD
#define CTRL  IDE_REGION_CTRL
#define BMDMA IDE_REGION_BMDMA

#define R_DATA	0
#define R_ERR	1
#define R_NSECT 2
#define R_LBAL	3
#define R_LBAM	4
#define R_LBAH	5
#define R_DEV	6
#define R_CMD	7

#define ST_BSY	0x80
#define ST_DRDY 0x40
#define ST_DRQ	0x08
#define ST_ERR	0x01
#define ER_ABRT 0x04
#define ER_IDNF 0x10

#define RAM	     MiB(16)
#define PRD_TABLE    0x1000ULL
#define DMA_BUF	     0x100000ULL
#define DISK_SECTORS 4096ULL /* 2 MiB */
#define CD_BLOCKS    64ULL

static char dir[] = "/tmp/kestrel_ide.XXXXXX";
static struct guest_mem gm;
static struct fake_irq irq;
static struct device *ch;
static uint64_t dirty_bytes;

/* ---- fakes: guest memory through the bus master's ops -------------------- */

static UNUSED_FN int fdma_read(void *o, uint64_t gpa, void *buf, uint64_t len)
{
	return gm_read(&gm, gpa, buf, len);
}

static UNUSED_FN int fdma_write(void *o, uint64_t gpa, const void *buf, uint64_t len)
{
	return gm_write(&gm, gpa, buf, len);
}

static UNUSED_FN void *fdma_map(void *o, uint64_t gpa, uint64_t len, bool dev_writes)
{
	return gm_ptr(&gm, gpa, len);
}

static UNUSED_FN void fdma_dirty(void *o, uint64_t gpa, uint64_t len)
{
	dirty_bytes += len;
}

static const struct ide_dma_ops fake_dma = {
	.read = fdma_read,
	.write = fdma_write,
	.map = fdma_map,
	.mark_dirty = fdma_dirty,
};

/* ---- images ---------------------------------------------------------------- */

static UNUSED_FN const char *path_of(const char *name)
{
	static char p[4][300];
	static int k;

	k = (k + 1) % 4;
	snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
	return p[k];
}

/* Byte o of a test image: depends on the sector and the offset in it. */
static UNUSED_FN uint8_t pattern(uint64_t o)
{
	return (uint8_t)((o >> 9) * 131 + (o & 511) * 7 + (o >> 17));
}

static UNUSED_FN void make_image(const char *path, uint64_t size, uint64_t fill)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	uint8_t buf[4096];

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	for (uint64_t o = 0; o < MIN(size, fill); o += sizeof(buf)) {
		for (unsigned i = 0; i < sizeof(buf); i++)
			buf[i] = pattern(o + i);
		ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), (off_t)o), (ssize_t)sizeof(buf));
	}
	close(fd);
}

static UNUSED_FN void file_read(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* The len bytes at off in path are data. */
static UNUSED_FN void file_holds(const char *path, uint64_t off, const void *data, size_t len)
{
	uint8_t *want = malloc(len);

	ck_assert_ptr_nonnull(want);
	file_read(path, off, want, len);
	ck_assert_mem_eq(data, want, len);
	free(want);
}

static UNUSED_FN struct blk_dev *open_img(const char *path, bool ro)
{
	struct blk_opts o = { .path = path,
			      .format = BLK_FMT_RAW,
			      .readonly = ro,
			      .cache = BLK_CACHE_WRITEBACK,
			      .aio = BLK_AIO_AUTO };
	struct blk_dev *d;
	char err[256];

	ck_assert_msg(blk_open(&d, &o, err, sizeof(err)) == 0, "%s", err);
	return d;
}

static UNUSED_FN struct device *new_channel(enum ide_drive_kind k0, struct blk_dev *b0,
					    enum ide_drive_kind k1, struct blk_dev *b1)
{
	struct ide_drive_conf c[2] = { { .kind = k0, .blk = b0 }, { .kind = k1, .blk = b1 } };
	struct irq_line l = fake_irq_line(&irq, 14);
	char err[256];
	struct device *dev = ide_channel_create("ide0", &l, c, err, sizeof(err));

	ck_assert_msg(dev != NULL, "%s", err);
	ide_channel_set_dma(dev, &fake_dma, NULL);
	return dev;
}

/* A disk (master) and a CD-ROM with a 64-block medium (slave). */
static UNUSED_FN void setup(void)
{
	ck_assert_ptr_nonnull(mkdtemp(strcpy(dir, "/tmp/kestrel_ide.XXXXXX")));
	ck_assert_int_eq(gm_init(&gm, RAM, false), 0);
	make_image(path_of("disk.img"), DISK_SECTORS * 512, ~0ULL);
	make_image(path_of("cd.iso"), CD_BLOCKS * 2048, ~0ULL);
	ch = new_channel(IDE_DISK, open_img(path_of("disk.img"), false), IDE_CDROM,
			 open_img(path_of("cd.iso"), true));
	dirty_bytes = 0;
}

static UNUSED_FN void teardown(void)
{
	char cmd[400];

	if (ch)
		ch->ops->destroy(ch);
	ch = NULL;
	gm_destroy(&gm);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* ---- register access as the bus does it (device lock held) ---------------- */

static UNUSED_FN uint64_t io_rd(struct device *d, int region, uint64_t off, unsigned size)
{
	uint64_t v;

	pthread_mutex_lock(&d->lock);
	v = d->ops->read(d, region, off, size);
	pthread_mutex_unlock(&d->lock);
	return v;
}

static UNUSED_FN void io_wr(struct device *d, int region, uint64_t off, unsigned size, uint64_t v)
{
	pthread_mutex_lock(&d->lock);
	d->ops->write(d, region, off, size, v);
	pthread_mutex_unlock(&d->lock);
}

static UNUSED_FN uint8_t reg(unsigned r)
{
	return (uint8_t)io_rd(ch, CMD, r, 1);
}

static UNUSED_FN void set_reg(unsigned r, uint8_t v)
{
	io_wr(ch, CMD, r, 1, v);
}

static UNUSED_FN uint8_t alt_status(void)
{
	return (uint8_t)io_rd(ch, CTRL, 0, 1);
}

static UNUSED_FN void select_dev(unsigned dev)
{
	set_reg(R_DEV, (uint8_t)(0xa0 | dev << 4));
}

/* Write the command and wait for whatever it started at the block layer. */
static UNUSED_FN void command(uint8_t cmd)
{
	set_reg(R_CMD, cmd);
	ide_channel_drain(ch);
}

static UNUSED_FN void tf28(unsigned dev, uint64_t lba, unsigned count)
{
	set_reg(R_NSECT, (uint8_t)count);
	set_reg(R_LBAL, (uint8_t)lba);
	set_reg(R_LBAM, (uint8_t)(lba >> 8));
	set_reg(R_LBAH, (uint8_t)(lba >> 16));
	set_reg(R_DEV, (uint8_t)(0xe0 | dev << 4 | ((lba >> 24) & 0xf)));
}

static UNUSED_FN void tf48(unsigned dev, uint64_t lba, unsigned count)
{
	set_reg(R_NSECT, (uint8_t)(count >> 8));
	set_reg(R_LBAL, (uint8_t)(lba >> 24));
	set_reg(R_LBAM, (uint8_t)(lba >> 32));
	set_reg(R_LBAH, (uint8_t)(lba >> 40));
	set_reg(R_NSECT, (uint8_t)count);
	set_reg(R_LBAL, (uint8_t)lba);
	set_reg(R_LBAM, (uint8_t)(lba >> 8));
	set_reg(R_LBAH, (uint8_t)(lba >> 16));
	set_reg(R_DEV, (uint8_t)(0x40 | dev << 4));
}

/* PIO data-in of total bytes in DRQ blocks of `block`, as libata does it:
 * wait for !BSY, see DRQ (and an interrupt), read the block (a string of
 * 16-bit reads, or 32-bit with wide). */
/* Wait for the device, then expect it to offer a DRQ block (no error). */
static UNUSED_FN void wait_drq(unsigned at)
{
	uint8_t st;

	ide_channel_drain(ch);
	st = reg(R_CMD);
	ck_assert_msg((st & (ST_BSY | ST_DRQ | ST_ERR)) == ST_DRQ, "status %#x at byte %u", st, at);
}

static UNUSED_FN void pio_in(uint8_t *buf, unsigned total, unsigned block, bool wide)
{
	for (unsigned done = 0; done < total; done += block) {
		wait_drq(done);
		for (unsigned i = 0; i < MIN(block, total - done); i += wide ? 4 : 2) {
			uint32_t v = (uint32_t)io_rd(ch, CMD, R_DATA, wide ? 4 : 2);

			memcpy(buf + done + i, &v, wide ? 4 : 2);
		}
	}
	ide_channel_drain(ch);
}

static UNUSED_FN void pio_out(const uint8_t *buf, unsigned total, unsigned block)
{
	for (unsigned done = 0; done < total; done += block) {
		wait_drq(done);
		for (unsigned i = 0; i < MIN(block, total - done); i += 2) {
			uint16_t v;

			memcpy(&v, buf + done + i, 2);
			io_wr(ch, CMD, R_DATA, 2, v);
		}
	}
	ide_channel_drain(ch);
}

/* The command ended well: not busy, no data phase, no error. */
static UNUSED_FN void expect_idle(void)
{
	uint8_t st = reg(R_CMD);

	ck_assert_msg((st & (ST_BSY | ST_DRQ | ST_ERR)) == 0, "status %#x", st);
}

static UNUSED_FN uint16_t word(const uint8_t *p, unsigned i)
{
	return (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
}

static UNUSED_FN void identify(unsigned dev, uint8_t cmd, uint8_t *page)
{
	select_dev(dev);
	command(cmd);
	pio_in(page, 512, 512, false);
	ck_assert_uint_eq(alt_status() & (ST_BSY | ST_DRQ | ST_ERR), 0);
}

/* An ATA string from IDENTIFY words, trailing spaces cut. */
static UNUSED_FN void ata_string(const uint8_t *page, unsigned w, unsigned words, char *out)
{
	for (unsigned i = 0; i < 2 * words; i++)
		out[i] = (char)page[2 * w + (i ^ 1)];
	out[2 * words] = 0;
	for (int i = (int)(2 * words) - 1; i >= 0 && out[i] == ' '; i--)
		out[i] = 0;
}

/* ---- ATAPI ------------------------------------------------------------------ */

/* A PACKET command to device 1 as libata sends it by PIO: byte count limit
 * bcl; returns the final status, data in buf (at most cap), *got bytes. */
static UNUSED_FN uint8_t packet(const uint8_t *cdb, uint16_t bcl, uint8_t *buf, size_t cap,
				size_t *got)
{
	uint8_t st;

	*got = 0;
	select_dev(1);
	set_reg(R_ERR, 0);
	set_reg(R_LBAM, (uint8_t)bcl);
	set_reg(R_LBAH, (uint8_t)(bcl >> 8));
	command(0xa0);
	ck_assert_uint_eq(alt_status() & (ST_BSY | ST_DRQ), ST_DRQ);
	ck_assert_uint_eq(reg(R_NSECT) & 3, 1); /* CoD, to the device */
	for (unsigned i = 0; i < 12; i += 2)
		io_wr(ch, CMD, R_DATA, 2, (uint16_t)(cdb[i] | cdb[i + 1] << 8));
	for (;;) {
		unsigned n;

		ide_channel_drain(ch);
		st = reg(R_CMD);
		if (!(st & ST_DRQ))
			break;
		ck_assert_uint_eq(reg(R_NSECT) & 3, 2); /* data, to the host */
		n = reg(R_LBAM) | reg(R_LBAH) << 8;
		ck_assert_uint_le(n, bcl ? bcl : 0xfffe);
		for (unsigned i = 0; i < n; i += 2) {
			uint16_t v = (uint16_t)io_rd(ch, CMD, R_DATA, 2);

			if (*got + i + 2 <= cap)
				memcpy(buf + *got + i, &v, 2);
		}
		*got += n;
	}
	ck_assert_uint_eq(reg(R_NSECT) & 3, 3); /* status phase */
	return st;
}

static UNUSED_FN struct scsi_sense request_sense(void)
{
	uint8_t cdb[12] = { 0x03, 0, 0, 0, 18 }, s[18];
	size_t got;

	ck_assert_uint_eq(packet(cdb, 18, s, sizeof(s), &got) & ST_ERR, 0);
	ck_assert_uint_eq(got, 18);
	ck_assert_uint_eq(s[0], 0x70);
	return (struct scsi_sense){ s[2] & 0xf, (uint16_t)(s[12] << 8 | s[13]) };
}

/* ---- bus-master DMA ------------------------------------------------------------ */

static UNUSED_FN void prd(unsigned i, uint32_t addr, uint32_t count, bool eot)
{
	uint8_t e[8];
	uint32_t c = count | (eot ? 0x80000000u : 0);

	memcpy(e, &addr, 4);
	memcpy(e + 4, &c, 4);
	ck_assert_int_eq(gm_write(&gm, PRD_TABLE + 8ull * i, e, 8), 0);
}

static UNUSED_FN uint8_t bm_status(void)
{
	return (uint8_t)io_rd(ch, BMDMA, 2, 1);
}

/* What libata's bmdma_setup does: table, direction, clear Error/Interrupt. */
static UNUSED_FN void bm_setup(uint64_t table, bool to_memory)
{
	io_wr(ch, BMDMA, 4, 4, table);
	io_wr(ch, BMDMA, 0, 1, to_memory ? 0x08 : 0);
	io_wr(ch, BMDMA, 2, 1, 0x06);
}

static UNUSED_FN void bm_start(bool to_memory)
{
	io_wr(ch, BMDMA, 0, 1, (to_memory ? 0x08 : 0) | 0x01);
	ide_channel_drain(ch);
}

/* Stop the engine and clear Error/Interrupt, as libata's IRQ path does. */
static UNUSED_FN void bm_stop(void)
{
	io_wr(ch, BMDMA, 0, 1, io_rd(ch, BMDMA, 0, 1) & ~1u);
	io_wr(ch, BMDMA, 2, 1, 0x06);
}

/* READ DMA (EXT above 256 sectors) of count sectors at lba through the
 * PRD table at PRD_TABLE. */
static UNUSED_FN void dma_read(uint64_t lba, unsigned count, bool start_first)
{
	select_dev(0);
	bm_setup(PRD_TABLE, true);
	if (count > 256)
		tf48(0, lba, count);
	else
		tf28(0, lba, count);
	if (start_first)
		bm_start(true);
	command(count > 256 ? 0x25 : 0xc8);
	if (!start_first)
		bm_start(true);
}

static UNUSED_FN void expect_dma_ok(void)
{
	ck_assert_uint_eq(bm_status() & 0x07, 0x04); /* Interrupt, not Active/Error */
	expect_idle();
	bm_stop();
}

static UNUSED_FN void expect_dma_error(const char *what)
{
	uint8_t bs = bm_status(), st = reg(R_CMD);

	ck_assert_msg((bs & 0x06) == 0x06 && (st & (ST_ERR | ST_DRQ | ST_BSY)) == ST_ERR &&
			      reg(R_ERR) == ER_ABRT,
		      "%s: bm %#x status %#x error %#x", what, bs, st, reg(R_ERR));
	bm_stop();
}

#endif
