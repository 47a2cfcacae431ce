/* ide.bin: the PIIX3 IDE controller (00:01.1, 8086:7010) driven at register
 * level from ring 3, polled (the payload never enables interrupts): ATA on
 * the primary master, ATAPI on the secondary master. PIO data moves with
 * `rep insw`/`rep outsw` (one exit per sector), DMA through PRD tables the
 * payload builds in its own memory (identity mapped: a buffer's address is
 * its physical address). Runs under kestrel and QEMU (-drive if=ide).
 *
 * Command line:
 *   sectors=N   the disk's size in sectors (IDENTIFY words 60-61/100-103)
 *   hostpat=1   the host wrote HOST-PATTERN-IDE at the disk's sector 7
 *   big=1       the disk is larger than 128 GiB (a sparse image): 48-bit
 *               commands past LBA 2^28 write and read KESTREL-IDE-LBA48 at
 *               LBA 2^28 + 5
 *   cd=BLOCKS   a CD-ROM on the secondary master with an ISO 9660-like medium
 *               of BLOCKS 2048-byte blocks (CD001 at block 16, and
 *               HOST-PATTERN-CD at block 20); cd=0: none
 *   cdempty=1   an empty CD-ROM drive on the secondary master instead
 *   hostile=0   skip the hostile PRD tables and commands out of order (QEMU
 *               completes or ignores most of them instead of refusing)
 * Writes KESTREL-IDE-PIO-LBA200 at LBA 200 (PIO) and KESTREL-IDE-DMA-LBA300
 * at LBA 300 (DMA), which tests/guest-tests.sh then finds in the host file. */
#include "guest.h"

#define ST_ERR	0x01
#define ST_DRQ	0x08
#define ST_DF	0x20
#define ST_DRDY 0x40
#define ST_BSY	0x80
#define ER_ABRT 0x04
#define ER_IDNF 0x10

#define BM_START  0x01
#define BM_READ	  0x08 /* the bus master writes memory */
#define BM_ACTIVE 0x01
#define BM_ERROR  0x02
#define BM_INTR	  0x04

#define PCI_COMMAND 0x04
#define CMD_IO	    0x01
#define CMD_MASTER  0x04
#define BMIBA_PORT  0xc040

struct chan {
	const char *name;
	uint16_t cmd, ctrl, bm;
};

static struct chan pri = { "primary", 0x1f0, 0x3f6, BMIBA_PORT };
static struct chan sec = { "secondary", 0x170, 0x376, BMIBA_PORT + 8 };

static uint8_t sector[512 * 64] __attribute__((aligned(4096)));
static uint8_t sector2[512 * 64] __attribute__((aligned(4096)));
static uint8_t big[65536] __attribute__((aligned(65536))); /* a 64 KiB region / PRD span */
static uint32_t prd[16] __attribute__((aligned(64)));
static unsigned dev_slot;

/* ---- register access ------------------------------------------------------ */

static void insw_rep(uint16_t port, void *buf, uint32_t words)
{
	__asm__ volatile("rep insw" : "+D"(buf), "+c"(words) : "d"(port) : "memory");
}

static void outsw_rep(uint16_t port, const void *buf, uint32_t words)
{
	__asm__ volatile("rep outsw" : "+S"(buf), "+c"(words) : "d"(port) : "memory");
}

static uint8_t alt(const struct chan *c)
{
	return inb(c->ctrl);
}

/* Wait (up to 2 s) for BSY to clear; the status register read after it
 * also clears the device's interrupt. */
static uint8_t wait_ready(const struct chan *c)
{
	struct deadline d;

	deadline_start(&d, 2000000);
	while ((alt(c) & ST_BSY) && !deadline_expired(&d))
		cpu_relax();
	return inb(c->cmd + 7);
}

static void select_dev(const struct chan *c, unsigned dev)
{
	outb(c->cmd + 6, (uint8_t)(0xa0 | dev << 4));
	udelay(1);
}

static void tf28(const struct chan *c, uint64_t lba, unsigned count)
{
	outb(c->cmd + 2, (uint8_t)count);
	outb(c->cmd + 3, (uint8_t)lba);
	outb(c->cmd + 4, (uint8_t)(lba >> 8));
	outb(c->cmd + 5, (uint8_t)(lba >> 16));
	outb(c->cmd + 6, (uint8_t)(0xe0 | ((lba >> 24) & 0xf)));
}

static void tf48(const struct chan *c, uint64_t lba, unsigned count)
{
	outb(c->cmd + 2, (uint8_t)(count >> 8));
	outb(c->cmd + 3, (uint8_t)(lba >> 24));
	outb(c->cmd + 4, (uint8_t)(lba >> 32));
	outb(c->cmd + 5, (uint8_t)(lba >> 40));
	outb(c->cmd + 2, (uint8_t)count);
	outb(c->cmd + 3, (uint8_t)lba);
	outb(c->cmd + 4, (uint8_t)(lba >> 8));
	outb(c->cmd + 5, (uint8_t)(lba >> 16));
	outb(c->cmd + 6, 0x40);
}

/* PIO data-in: count sectors into buf; the status after the last one. */
static uint8_t pio_in(const struct chan *c, void *buf, unsigned count)
{
	uint8_t st = 0;

	for (unsigned i = 0; i < count; i++) {
		st = wait_ready(c);
		if ((st & (ST_ERR | ST_DRQ)) != ST_DRQ)
			return st;
		insw_rep(c->cmd, (uint8_t *)buf + 512 * i, 256);
	}
	return wait_ready(c);
}

static uint8_t pio_out(const struct chan *c, const void *buf, unsigned count)
{
	uint8_t st = 0;

	for (unsigned i = 0; i < count; i++) {
		st = wait_ready(c);
		if ((st & (ST_ERR | ST_DRQ)) != ST_DRQ)
			return st;
		outsw_rep(c->cmd, (const uint8_t *)buf + 512 * i, 256);
	}
	return wait_ready(c);
}

static bool ok_status(uint8_t st)
{
	return (st & (ST_BSY | ST_DRQ | ST_ERR | ST_DF)) == 0 && (st & ST_DRDY);
}

static uint16_t word(const uint8_t *p, unsigned i)
{
	return (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
}

/* IDENTIFY strings are byte-swapped per word, space padded. */
static void ata_string(const uint8_t *p, unsigned w, unsigned words, char *out)
{
	unsigned n = 0;

	for (unsigned i = 0; i < words; i++) {
		out[n++] = (char)p[2 * (w + i) + 1];
		out[n++] = (char)p[2 * (w + i)];
	}
	while (n && out[n - 1] == ' ')
		n--;
	out[n] = 0;
}

static bool has_text(const uint8_t *p, const char *s)
{
	return memcmp(p, s, strnlen(s, 64)) == 0;
}

/* ---- bus master --------------------------------------------------------- */

static void prd_set(unsigned i, uint32_t addr, uint32_t count, bool eot)
{
	prd[2 * i] = addr;
	prd[2 * i + 1] = count | (eot ? 0x80000000u : 0);
}

static uint32_t phys(const void *p)
{
	return (uint32_t)(uintptr_t)p;
}

/* libata's order: table, direction, clear Error/Interrupt; the command;
 * then Start. Waits for the device and returns its status; *bms gets the
 * bus-master status, and the engine is stopped and cleared after. */
static uint8_t dma_cmd(const struct chan *c, uint32_t table, bool to_mem, uint8_t cmd, uint64_t lba,
		       unsigned count, uint8_t *bms)
{
	uint8_t st;
	struct deadline d;

	outl(c->bm + 4, table);
	outb(c->bm, to_mem ? BM_READ : 0);
	outb(c->bm + 2, BM_ERROR | BM_INTR);
	if (cmd == 0x25 || cmd == 0x35)
		tf48(c, lba, count);
	else
		tf28(c, lba, count);
	outb(c->cmd + 7, cmd);
	outb(c->bm, (uint8_t)((to_mem ? BM_READ : 0) | BM_START));
	deadline_start(&d, 3000000);
	while (!(inb(c->bm + 2) & (BM_INTR | BM_ERROR)) && !deadline_expired(&d))
		cpu_relax();
	st = wait_ready(c);
	*bms = inb(c->bm + 2);
	outb(c->bm, 0);
	outb(c->bm + 2, BM_ERROR | BM_INTR);
	return st;
}

static bool dma_ok(uint8_t st, uint8_t bms)
{
	return ok_status(st) && (bms & (BM_INTR | BM_ERROR | BM_ACTIVE)) == BM_INTR;
}

static bool dma_refused(const struct chan *c, uint8_t st, uint8_t bms)
{
	return (bms & BM_ERROR) && (st & ST_ERR) && !(st & (ST_BSY | ST_DRQ)) &&
	       (inb(c->cmd + 1) & ER_ABRT);
}

/* ---- the controller ------------------------------------------------------- */

static bool find_controller(void)
{
	for (unsigned dev = 0; dev < 32; dev++) {
		if (pci_conf_read32(0, dev, 1, 0) != 0x70108086)
			continue;
		dev_slot = dev;
		gprintf("pci 00:%02x.1 8086:7010 class %06x\n", dev,
			pci_conf_read32(0, dev, 1, 8) >> 8);
		check(pci_conf_read32(0, dev, 0, 0) == 0x70008086 &&
			      (pci_conf_read8(0, dev, 0, 0x0e) & 0x80),
		      "00:%02x.0 is the PIIX3 ISA bridge, multi-function", dev);
		check(pci_conf_read32(0, dev, 1, 8) >> 8 == 0x010180,
		      "IDE class 0101 prog-if 80 (compatibility mode, bus master)");
		/* Firmware programs them (SeaBIOS: 10, 10, 11, 11); without
		 * firmware they are as at power-on, 80h: not routed. */
		gprintf("pirq routes %08x\n", pci_conf_read32(0, dev, 0, 0x60));
		return true;
	}
	return false;
}

static void enable_controller(void)
{
	pci_conf_write32(0, dev_slot, 1, 0x20, 0xffffffff);
	check(pci_conf_read32(0, dev_slot, 1, 0x20) == 0xfffffff1,
	      "BMIBA sizes to 16 bytes of I/O");
	pci_conf_write32(0, dev_slot, 1, 0x20, BMIBA_PORT | 1);
	/* What SeaBIOS does (IDE Decode Enable on both channels), then I/O
	 * Space and Bus Master. */
	pci_conf_write16(0, dev_slot, 1, 0x40, 0x8000);
	pci_conf_write16(0, dev_slot, 1, 0x42, 0x8000);
	pci_conf_write16(0, dev_slot, 1, PCI_COMMAND, CMD_IO | CMD_MASTER);
	check((pci_conf_read16(0, dev_slot, 1, PCI_COMMAND) & (CMD_IO | CMD_MASTER)) ==
		      (CMD_IO | CMD_MASTER),
	      "I/O Space and Bus Master on");
}

/* Software reset of a channel; the master's signature says what it is. */
static void channel_reset(const struct chan *c)
{
	outb(c->ctrl, 0x04);
	udelay(10);
	outb(c->ctrl, 0x00);
	udelay(2000);
	wait_ready(c);
}

/* ---- ATA ------------------------------------------------------------------ */

static uint64_t disk_identify(uint64_t want)
{
	char model[41];
	uint64_t n48;

	channel_reset(&pri);
	select_dev(&pri, 0);
	check(inb(pri.cmd + 4) == 0 && inb(pri.cmd + 5) == 0, "primary master signature: ATA");
	outb(pri.cmd + 7, 0xec);
	check(ok_status(pio_in(&pri, sector, 1)), "IDENTIFY DEVICE");
	ata_string(sector, 27, 20, model);
	n48 = word(sector, 100) | (uint64_t)word(sector, 101) << 16 |
	      (uint64_t)word(sector, 102) << 32 | (uint64_t)word(sector, 103) << 48;
	gprintf("disk model=\"%s\" sectors=%lu lba28=%u\n", model, (unsigned long)n48,
		word(sector, 60) | (uint32_t)word(sector, 61) << 16);
	check(word(sector, 49) & (1u << 9), "IDENTIFY word 49: LBA supported");
	check(word(sector, 49) & (1u << 8), "IDENTIFY word 49: DMA supported");
	check(word(sector, 83) & (1u << 10), "IDENTIFY word 83: 48-bit addressing");
	check(!want || n48 == want, "capacity (words 100-103) %lu sectors, expected %lu",
	      (unsigned long)n48, (unsigned long)want);
	return n48;
}

static void disk_pio(bool hostpat)
{
	outb(pri.ctrl, 0); /* nIEN clear, as libata */
	select_dev(&pri, 0);
	tf28(&pri, 7, 1);
	outb(pri.cmd + 7, 0x20); /* READ SECTORS */
	check(ok_status(pio_in(&pri, sector, 1)), "READ SECTORS of LBA 7");
	if (hostpat)
		check(has_text(sector, "HOST-PATTERN-IDE"), "LBA 7 holds the host's pattern");

	for (unsigned i = 0; i < 1024; i++)
		sector[i] = (uint8_t)(i * 7 + 3);
	memcpy(sector, "KESTREL-IDE-PIO-LBA200", 22);
	tf28(&pri, 200, 2);
	outb(pri.cmd + 7, 0x30); /* WRITE SECTORS */
	check(ok_status(pio_out(&pri, sector, 2)), "WRITE SECTORS of LBA 200-201");
	outb(pri.cmd + 7, 0xe7); /* FLUSH CACHE */
	check(ok_status(wait_ready(&pri)), "FLUSH CACHE");
	memset(sector2, 0, 1024);
	outb(pri.cmd + 2, 8);
	outb(pri.cmd + 7, 0xc6); /* SET MULTIPLE MODE 8 */
	check(ok_status(wait_ready(&pri)), "SET MULTIPLE MODE 8");
	tf28(&pri, 200, 2);
	outb(pri.cmd + 7, 0xc4); /* READ MULTIPLE: one DRQ block */
	{
		uint8_t st = wait_ready(&pri);

		if ((st & (ST_ERR | ST_DRQ)) == ST_DRQ)
			insw_rep(pri.cmd, sector2, 512);
		check(ok_status(wait_ready(&pri)) && memcmp(sector, sector2, 1024) == 0,
		      "READ MULTIPLE reads back what WRITE SECTORS wrote");
	}
}

static void disk_dma(void)
{
	uint8_t st, bms;

	/* Two PRD entries for one 8-sector read: 1 KiB then 3 KiB. */
	prd_set(0, phys(sector2), 1024, false);
	prd_set(1, phys(sector2 + 1024), 3072, true);
	memset(sector2, 0xee, 4096);
	select_dev(&pri, 0);
	st = dma_cmd(&pri, phys(prd), true, 0xc8, 0, 8, &bms);
	check(dma_ok(st, bms), "READ DMA of LBA 0-7 through two PRDs (status %x, bm %x)", st, bms);
	tf28(&pri, 0, 8);
	outb(pri.cmd + 7, 0x20);
	pio_in(&pri, sector, 8);
	check(memcmp(sector, sector2, 4096) == 0, "DMA and PIO read the same sectors");

	for (unsigned i = 0; i < 4096; i++)
		sector[i] = (uint8_t)(i * 13 + 1);
	memcpy(sector, "KESTREL-IDE-DMA-LBA300", 22);
	prd_set(0, phys(sector), 4096, true);
	st = dma_cmd(&pri, phys(prd), false, 0xca, 300, 8, &bms);
	check(dma_ok(st, bms), "WRITE DMA of LBA 300-307 (status %x, bm %x)", st, bms);
	prd_set(0, phys(sector2), 4096, true);
	memset(sector2, 0, 4096);
	st = dma_cmd(&pri, phys(prd), true, 0xc8, 300, 8, &bms);
	check(dma_ok(st, bms) && memcmp(sector, sector2, 4096) == 0,
	      "READ DMA reads back what WRITE DMA wrote");
	/* A byte count of 0 is 64 KiB: one entry for 128 sectors. */
	prd_set(0, phys(big), 0, true);
	memset(big, 0, sizeof(big));
	st = dma_cmd(&pri, phys(prd), true, 0xc8, 300, 128, &bms);
	check(dma_ok(st, bms) && memcmp(big, sector, 4096) == 0,
	      "a PRD byte count of 0 moves 64 KiB (status %x, bm %x)", st, bms);
}

static void disk_errors(uint64_t sectors)
{
	uint8_t st;

	select_dev(&pri, 0);
	tf48(&pri, sectors, 1);
	outb(pri.cmd + 7, 0x24); /* READ SECTORS EXT past the end */
	st = wait_ready(&pri);
	check((st & ST_ERR) && (inb(pri.cmd + 1) & ER_IDNF), "a read past the end: IDNF");
	outb(pri.cmd + 7, 0xa0); /* PACKET to a disk */
	st = wait_ready(&pri);
	check((st & ST_ERR) && (inb(pri.cmd + 1) & ER_ABRT), "PACKET to a disk: ABRT");
	outb(pri.cmd + 7, 0xff);
	st = wait_ready(&pri);
	check((st & ST_ERR) && (inb(pri.cmd + 1) & ER_ABRT), "an unknown command: ABRT");
}

/* 48-bit commands past 128 GiB, PIO and DMA. */
static void disk_lba48(void)
{
	const uint64_t lba = (1ull << 28) + 5;
	uint8_t st, bms;

	for (unsigned i = 0; i < 512; i++)
		sector[i] = (uint8_t)(i ^ 0x5a);
	memcpy(sector, "KESTREL-IDE-LBA48", 17);
	select_dev(&pri, 0);
	tf48(&pri, lba, 1);
	outb(pri.cmd + 7, 0x34); /* WRITE SECTORS EXT */
	check(ok_status(pio_out(&pri, sector, 1)), "WRITE SECTORS EXT at LBA 2^28 + 5");
	tf48(&pri, lba, 1);
	outb(pri.cmd + 7, 0x24);
	memset(sector2, 0, 512);
	check(ok_status(pio_in(&pri, sector2, 1)) && memcmp(sector, sector2, 512) == 0,
	      "READ SECTORS EXT reads it back");
	check(inb(pri.cmd + 3) == (uint8_t)lba, "LBA low after the command: the last sector");
	prd_set(0, phys(sector2), 512, true);
	memset(sector2, 0, 512);
	st = dma_cmd(&pri, phys(prd), true, 0x25, lba, 1, &bms);
	check(dma_ok(st, bms) && memcmp(sector, sector2, 512) == 0, "READ DMA EXT reads it too");
}

/* ---- hostile bus-master use ---------------------------------------------- */

static uint64_t ram_end(void)
{
	const struct mb_info *mb = mb_info();

	return mb && (mb->flags & MB_INFO_MEM) ? 0x100000ull + (uint64_t)mb->mem_upper * 1024 : 0;
}

/* One READ DMA of count sectors at LBA 0 with the table at `table`. */
static bool hostile_read(uint32_t table, unsigned count, const char *what)
{
	uint8_t bms, st = dma_cmd(&pri, table, true, 0xc8, 0, count, &bms);

	return check(dma_refused(&pri, st, bms), "%s: bus-master error, ABRT (status %x, bm %x)",
		     what, st, bms);
}

static void hostile(void)
{
	uint64_t top = ram_end();
	uint32_t *loop = (uint32_t *)big;
	uint8_t st, bms;

	select_dev(&pri, 0);
	/* A table with no end: 8192 entries of 2 bytes fill its 64 KiB block
	 * and still fall short of 32 KiB. */
	for (unsigned i = 0; i < 8192; i++) {
		loop[2 * i] = phys(sector2);
		loop[2 * i + 1] = 2;
	}
	hostile_read(phys(big), 64, "a table without End Of Table running off its 64 KiB");
	prd_set(0, 0xf0000000u, 512, true);
	hostile_read(phys(prd), 1, "a region outside RAM");
	if (top >= 0x200000) {
		prd_set(0, (uint32_t)(top - 4096), 0, true);
		hostile_read(phys(prd), 128,
			     "a 64 KiB region (count 0) running past the end of RAM");
	}
	prd_set(0, phys(sector2), 0x201, true);
	hostile_read(phys(prd), 1, "an odd byte count");
	prd_set(0, phys(sector2) + 1, 512, true);
	hostile_read(phys(prd), 1, "an odd address");
	prd_set(0, phys(sector2), 512, true);
	hostile_read(phys(prd), 2, "a table shorter than the transfer");
	hostile_read(0xf0000000u, 1, "the table itself outside RAM");
	/* The engine set to read memory for a command that writes it. */
	prd_set(0, phys(sector2), 512, true);
	outl(pri.bm + 4, phys(prd));
	outb(pri.bm + 2, BM_ERROR | BM_INTR);
	tf28(&pri, 0, 1);
	outb(pri.cmd + 7, 0xc8);
	outb(pri.bm, BM_START); /* no BM_READ */
	st = wait_ready(&pri);
	bms = inb(pri.bm + 2);
	outb(pri.bm, 0);
	check(dma_refused(&pri, st, bms), "the engine's direction against the command's: refused");
	outb(pri.bm + 2, BM_ERROR | BM_INTR);
}

static void out_of_order(void)
{
	uint8_t st, bms;

	select_dev(&pri, 0);
	outb(pri.cmd + 7, 0xe7); /* a good command clears the last error */
	check(ok_status(wait_ready(&pri)), "FLUSH CACHE after the refused tables");
	/* Start with nothing to move: Active, nothing else, until stopped. */
	outl(pri.bm + 4, phys(prd));
	outb(pri.bm, BM_READ | BM_START);
	udelay(1000);
	bms = inb(pri.bm + 2);
	outb(pri.bm, 0);
	check((bms & (BM_ACTIVE | BM_ERROR)) == BM_ACTIVE,
	      "bus master started with no command: waits (bm %x)", bms);
	outb(pri.bm + 2, BM_ERROR | BM_INTR);
	/* Data port with no data phase: ignored, reads do not hang. */
	outsw_rep(pri.cmd, sector, 256);
	insw_rep(pri.cmd, sector2, 256);
	check(ok_status(wait_ready(&pri)), "data port without DRQ: nothing happens");
	/* A DMA command the guest never starts, and a command meanwhile:
	 * ignored; software reset ends both. */
	tf28(&pri, 0, 1);
	outb(pri.cmd + 7, 0xc8);
	st = wait_ready(&pri);
	outb(pri.cmd + 7, 0xec);
	check((st & ST_DRQ) && (alt(&pri) & ST_DRQ), "a command while a DMA waits is ignored");
	channel_reset(&pri);
	select_dev(&pri, 0);
	check(ok_status(wait_ready(&pri)), "software reset ends the command");
	/* After all this, the disk works. */
	prd_set(0, phys(sector2), 4096, true);
	st = dma_cmd(&pri, phys(prd), true, 0xc8, 300, 8, &bms);
	check(dma_ok(st, bms) && has_text(sector2, "KESTREL-IDE-DMA-LBA300"),
	      "after hostile tables and commands out of order the disk works (status %x, bm %x)",
	      st, bms);
}

/* ---- ATAPI ------------------------------------------------------------- */

/* PACKET with a 12-byte CDB; PIO data-in of up to cap bytes, or DMA into
 * buf when dma. Returns the final status; *got: the bytes received. */
static uint8_t packet(const uint8_t cdb[12], void *buf, unsigned cap, bool dma, unsigned *got)
{
	const struct chan *c = &sec;
	uint8_t st, bms = 0;
	unsigned n = 0;

	*got = 0;
	if (dma) {
		prd_set(0, phys(buf), cap, true);
		outl(c->bm + 4, phys(prd));
		outb(c->bm, BM_READ);
		outb(c->bm + 2, BM_ERROR | BM_INTR);
	}
	outb(c->cmd + 1, dma ? 1 : 0);
	outb(c->cmd + 4, (uint8_t)cap);
	outb(c->cmd + 5, (uint8_t)(cap >> 8));
	outb(c->cmd + 7, 0xa0);
	st = wait_ready(c);
	if ((st & (ST_ERR | ST_DRQ)) != ST_DRQ)
		return st;
	outsw_rep(c->cmd, cdb, 6);
	if (dma) {
		struct deadline d;

		outb(c->bm, BM_READ | BM_START);
		deadline_start(&d, 3000000);
		while (!(inb(c->bm + 2) & (BM_INTR | BM_ERROR)) && !deadline_expired(&d))
			cpu_relax();
		st = wait_ready(c);
		bms = inb(c->bm + 2);
		outb(c->bm, 0);
		outb(c->bm + 2, BM_ERROR | BM_INTR);
		*got = (bms & BM_ERROR) ? 0 : cap;
		return st;
	}
	for (;;) {
		unsigned len;

		st = wait_ready(c);
		if ((st & (ST_ERR | ST_DRQ)) != ST_DRQ)
			break;
		len = inb(c->cmd + 4) | (unsigned)inb(c->cmd + 5) << 8;
		if (!len || n + len > cap)
			break;
		insw_rep(c->cmd, (uint8_t *)buf + n, (len + 1) / 2);
		n += len;
	}
	*got = n;
	return st;
}

static void cdrom(uint64_t blocks)
{
	uint8_t cdb[12] = { 0 }, st;
	unsigned got;

	channel_reset(&sec);
	select_dev(&sec, 0);
	check(inb(sec.cmd + 4) == 0x14 && inb(sec.cmd + 5) == 0xeb,
	      "secondary master signature: ATAPI (14h EBh)");
	outb(sec.cmd + 7, 0xec);
	st = wait_ready(&sec);
	check((st & ST_ERR) && (inb(sec.cmd + 1) & ER_ABRT), "IDENTIFY DEVICE to a CD-ROM: ABRT");
	outb(sec.cmd + 7, 0xa1);
	check(ok_status(pio_in(&sec, sector, 1)) && (word(sector, 0) >> 14) == 2 &&
		      ((word(sector, 0) >> 8) & 0x1f) == 5,
	      "IDENTIFY PACKET DEVICE: ATAPI, CD-ROM");
	cdb[0] = 0x12; /* INQUIRY */
	cdb[4] = 36;
	st = packet(cdb, sector, 36, false, &got);
	gprintf("cd inquiry type=%u vendor=%.8s product=%.16s\n", sector[0] & 0x1f,
		(const char *)sector + 8, (const char *)sector + 16);
	check(ok_status(st) && got == 36 && (sector[0] & 0x1f) == 5, "INQUIRY: a CD-ROM");
	/* The first command after power-on may meet UNIT ATTENTION. */
	memset(cdb, 0, sizeof(cdb));
	for (int i = 0; i < 3; i++) {
		st = packet(cdb, sector, 0, false, &got); /* TEST UNIT READY */
		if (ok_status(st))
			break;
	}
	check(ok_status(st), "TEST UNIT READY");
	cdb[0] = 0x25; /* READ CAPACITY */
	st = packet(cdb, sector, 8, false, &got);
	{
		uint32_t last = (uint32_t)sector[0] << 24 | sector[1] << 16 | sector[2] << 8 |
				sector[3];
		uint32_t len = (uint32_t)sector[4] << 24 | sector[5] << 16 | sector[6] << 8 |
			       sector[7];

		gprintf("cd capacity %u x %u\n", last + 1, len);
		check(ok_status(st) && last + 1 == blocks && len == 2048,
		      "READ CAPACITY: %lu blocks of 2048", (unsigned long)blocks);
	}
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x28; /* READ(10) of block 16, PIO */
	cdb[5] = 16;
	cdb[8] = 1;
	st = packet(cdb, sector, 2048, false, &got);
	check(ok_status(st) && got == 2048 && has_text(sector + 1, "CD001"),
	      "READ(10) of block 16 (PIO): the volume descriptor");
	cdb[5] = 20;
	memset(sector2, 0, 2048);
	st = packet(cdb, sector2, 2048, true, &got);
	check(ok_status(st) && has_text(sector2, "HOST-PATTERN-CD"), "READ(10) of block 20 (DMA)");
	cdb[2] = 0x7f; /* far past the end */
	st = packet(cdb, sector2, 2048, false, &got);
	check(st & ST_ERR, "READ(10) past the end: CHECK CONDITION");
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x03; /* REQUEST SENSE */
	cdb[4] = 18;
	st = packet(cdb, sector, 18, false, &got);
	check(ok_status(st) && (sector[2] & 0xf) == 5 && sector[12] == 0x21,
	      "REQUEST SENSE: ILLEGAL REQUEST, LBA out of range (key %x asc %x)", sector[2] & 0xf,
	      sector[12]);
}

/* An empty drive: there, but TEST UNIT READY says MEDIUM NOT PRESENT. */
static void cdrom_empty(void)
{
	uint8_t cdb[12] = { 0 }, st;
	unsigned got;

	channel_reset(&sec);
	select_dev(&sec, 0);
	check(inb(sec.cmd + 4) == 0x14 && inb(sec.cmd + 5) == 0xeb, "empty drive: ATAPI signature");
	for (int i = 0; i < 3; i++) {
		st = packet(cdb, sector, 0, false, &got);
		cdb[0] = 0x03;
		cdb[4] = 18;
		packet(cdb, sector, 18, false, &got);
		memset(cdb, 0, sizeof(cdb));
		if ((sector[2] & 0xf) != 6) /* past UNIT ATTENTION */
			break;
	}
	check((st & ST_ERR) && (sector[2] & 0xf) == 2 && sector[12] == 0x3a,
	      "empty drive: NOT READY, MEDIUM NOT PRESENT (key %x asc %x)", sector[2] & 0xf,
	      sector[12]);
	cdb[0] = 0x25;
	st = packet(cdb, sector, 8, false, &got);
	check(st & ST_ERR, "empty drive: READ CAPACITY fails");
}

int main(void)
{
	uint64_t want = mb_cmdline_uint("sectors", 0), cd = mb_cmdline_uint("cd", 0), n;

	pmtmr_init();
	if (!check(find_controller(), "PIIX3 IDE function on bus 0"))
		return check_result(GUEST_EXIT_IDE);
	enable_controller();
	n = disk_identify(want);
	disk_pio(mb_cmdline_uint("hostpat", 0) == 1);
	disk_dma();
	disk_errors(n);
	if (mb_cmdline_uint("big", 0) == 1)
		disk_lba48();
	if (mb_cmdline_uint("hostile", 1) == 1) {
		hostile();
		out_of_order();
	}
	if (cd)
		cdrom(cd);
	else if (mb_cmdline_uint("cdempty", 0) == 1)
		cdrom_empty();
	return check_result(GUEST_EXIT_IDE);
}
