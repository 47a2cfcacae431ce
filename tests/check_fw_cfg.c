/* fw_cfg: the port and DMA interfaces read the way SeaBIOS reads them
 * (src/fw/paravirt.c qemu_cfg_init), QEMU's behaviour at item ends and on
 * bad DMA requests, the board's items (etc/e820, CPUs, bootorder, ROMs),
 * the ACPI table loader run by a SeaBIOS-style linker, state and a register
 * fuzz. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/acpi.h"
#include "kestrel/board.h"
#include "kestrel/byteorder.h"
#include "kestrel/fw_cfg.h"
#include "kestrel/guest_mem.h"
#include "kestrel/util.h"
#include "fake_board.h"

#define RAM    MiB(64)
#define DMA_AT 0x10000 /* where the tests put FWCfgDmaAccess */
#define BUF_AT 0x20000 /* and the DMA target */

static struct guest_mem gm;
static struct device *fw;

static void setup(void)
{
	ck_assert_int_eq(gm_init(&gm, RAM, false), 0);
	fw = fw_cfg_create(&gm);
	ck_assert_ptr_nonnull(fw);
}

static void teardown(void)
{
	fw->ops->destroy(fw);
	gm_destroy(&gm);
}

/* ---- the guest's side, as SeaBIOS does it ---- */

static void port_select(struct device *d, uint16_t key)
{
	dev_wr(d, FW_CFG_REGION_IO, 0, 2, key);
}

static uint8_t port_byte(struct device *d)
{
	return (uint8_t)dev_rd(d, FW_CFG_REGION_IO, 1, 1); /* inb 0x511 */
}

static void port_read(struct device *d, void *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		((uint8_t *)buf)[i] = port_byte(d);
}

/* outl(cpu_to_be32(x), 0x514 / 0x518): the port value is x byte-swapped. */
static void dma_kick_at(struct device *d, uint64_t at)
{
	dev_wr(d, FW_CFG_REGION_DMA, 0, 4, __builtin_bswap32((uint32_t)(at >> 32)));
	dev_wr(d, FW_CFG_REGION_DMA, 4, 4, __builtin_bswap32((uint32_t)at));
}

/* Write FWCfgDmaAccess at `at`, trigger, return the control word read back. */
static uint32_t dma_op_at(struct device *d, uint64_t at, uint32_t ctl, uint32_t len, uint64_t addr)
{
	uint8_t acc[16];

	put_be32(acc, ctl);
	put_be32(acc + 4, len);
	put_be64(acc + 8, addr);
	ck_assert_int_eq(gm_write(&gm, at, acc, sizeof(acc)), 0);
	dma_kick_at(d, at);
	ck_assert_int_eq(gm_read(&gm, at, acc, 4), 0);
	return get_be32(acc);
}

static uint32_t dma_op(uint32_t ctl, uint32_t len, uint64_t addr)
{
	return dma_op_at(fw, DMA_AT, ctl, len, addr);
}

/* qemu_cfg_read_entry with DMA: select + read into BUF_AT, then copy out. */
static void dma_read_entry(uint16_t key, void *buf, uint32_t len)
{
	ck_assert_uint_eq(dma_op((uint32_t)key << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ,
				 len, BUF_AT),
			  0);
	ck_assert_int_eq(gm_read(&gm, BUF_AT, buf, len), 0);
}

static void dma_read(void *buf, uint32_t len)
{
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_READ, len, BUF_AT), 0);
	ck_assert_int_eq(gm_read(&gm, BUF_AT, buf, len), 0);
}

struct romfile {
	char name[FW_CFG_NAME_LEN];
	uint16_t select;
	uint32_t size;
};

/* qemu_cfg_init: signature by port, ID by DMA, then the directory read as a
 * be32 count and count 64-byte entries continuing at the same offset. */
static int seabios_dir(struct device *d, bool use_dma, struct romfile *files, int max)
{
	uint8_t count[4], e[FW_CFG_DIR_ENTRY_LEN];
	uint32_t n;

	port_select(d, FW_CFG_SIGNATURE);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(port_byte(d), (uint8_t) "QEMU"[i]);
	if (use_dma) {
		dma_read_entry(FW_CFG_FILE_DIR, count, 4);
	} else {
		port_select(d, FW_CFG_FILE_DIR);
		port_read(d, count, 4);
	}
	n = get_be32(count);
	ck_assert_uint_le(n, (uint32_t)max);
	for (uint32_t i = 0; i < n; i++) {
		if (use_dma)
			dma_read(e, sizeof(e));
		else
			port_read(d, e, sizeof(e));
		files[i].size = get_be32(e);
		files[i].select = get_be16(e + 4);
		ck_assert_uint_eq(get_be16(e + 6), 0);
		memcpy(files[i].name, e + 8, FW_CFG_NAME_LEN);
		ck_assert_msg(memchr(files[i].name, 0, FW_CFG_NAME_LEN), "name not terminated");
	}
	return (int)n;
}

/* romfile_loadfile: find by name, read the whole file by its selector. */
static uint8_t *load_file(const char *name, uint32_t *size)
{
	struct romfile files[FW_CFG_MAX_FILES];
	int n = seabios_dir(fw, true, files, FW_CFG_MAX_FILES);

	for (int i = 0; i < n; i++) {
		uint8_t *buf;

		if (strcmp(files[i].name, name))
			continue;
		buf = malloc(files[i].size + 1);
		ck_assert_ptr_nonnull(buf);
		if (files[i].size)
			dma_read_entry(files[i].select, buf, files[i].size);
		buf[files[i].size] = 0;
		*size = files[i].size;
		return buf;
	}
	return NULL;
}

static uint64_t le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Item key read through the I/O port as an n-byte little-endian number. */
static uint64_t item_le(struct device *d, uint16_t key, unsigned n)
{
	uint8_t v[8];

	port_select(d, key);
	port_read(d, v, n);
	return le(v, n);
}

/* ---- registers ---- */

START_TEST(signature_and_id)
{
	uint8_t id[4], sig[8];

	/* After reset the signature is selected (QEMU's fw_cfg_reset). */
	fw->ops->reset(fw);
	port_read(fw, sig, 4);
	ck_assert_mem_eq(sig, "QEMU", 4);
	port_select(fw, FW_CFG_ID);
	port_read(fw, id, 4);
	ck_assert_uint_eq(le(id, 4), FW_CFG_VERSION | FW_CFG_VERSION_DMA);
	/* inb 0x510 reads data too: one region in QEMU. */
	port_select(fw, FW_CFG_SIGNATURE);
	ck_assert_uint_eq(dev_rd(fw, FW_CFG_REGION_IO, 0, 1), 'Q');
	/* The DMA register reads "QEMU CFG" in port order, at any width. */
	for (int i = 0; i < 8; i++)
		sig[i] = (uint8_t)dev_rd(fw, FW_CFG_REGION_DMA, (uint64_t)i, 1);
	ck_assert_mem_eq(sig, "QEMU CFG", 8);
	ck_assert_uint_eq(dev_rd(fw, FW_CFG_REGION_DMA, 0, 4), 0x554d4551); /* "QEMU" */
	ck_assert_uint_eq(dev_rd(fw, FW_CFG_REGION_DMA, 4, 4), 0x47464320); /* " CFG" */
	ck_assert_uint_eq(dev_rd(fw, FW_CFG_REGION_DMA, 6, 4), 0x4746);	    /* past the end: 0 */
}
END_TEST

START_TEST(read_past_end_and_bad_keys)
{
	uint8_t b[8];

	port_select(fw, FW_CFG_SIGNATURE);
	port_read(fw, b, 6);
	ck_assert_mem_eq(b, "QEMU\0\0", 6);
	/* A key with no item, one past the slots, and 0xffff: all read 0. */
	port_select(fw, FW_CFG_UUID);
	ck_assert_uint_eq(port_byte(fw), 0);
	port_select(fw, 0x3fff);
	ck_assert_uint_eq(port_byte(fw), 0);
	port_select(fw, 0xffff);
	ck_assert_uint_eq(port_byte(fw), 0);
	/* Bit 14 (old write channel) selects the same item. */
	port_select(fw, FW_CFG_WRITE_CHANNEL | FW_CFG_SIGNATURE);
	ck_assert_uint_eq(port_byte(fw), 'Q');
	/* Byte writes to the data port change nothing; wide reads are not
	 * decoded (all ones) and do not advance. */
	dev_wr(fw, FW_CFG_REGION_IO, 1, 1, 0x55);
	ck_assert_uint_eq(dev_rd(fw, FW_CFG_REGION_IO, 0, 2), 0xffff);
	ck_assert_uint_eq(dev_rd(fw, FW_CFG_REGION_IO, 0, 4), 0xffffffff);
	ck_assert_uint_eq(port_byte(fw), 'E');
	/* A 16-bit write at 0x511 still selects (QEMU's comb region). */
	dev_wr(fw, FW_CFG_REGION_IO, 1, 2, FW_CFG_SIGNATURE);
	ck_assert_uint_eq(port_byte(fw), 'Q');
}
END_TEST

START_TEST(add_api)
{
	uint8_t big[FW_CFG_MAX_FILES];
	char name[80];

	memset(big, 0x5a, sizeof(big));
	ck_assert_int_eq(fw_cfg_add_u16(fw, FW_CFG_NB_CPUS, 3), 0);
	ck_assert_int_eq(fw_cfg_add_u16(fw, FW_CFG_NB_CPUS, 3), -EEXIST);
	ck_assert_int_eq(fw_cfg_add_u16(fw, FW_CFG_SIGNATURE, 3), -EEXIST);
	ck_assert_int_eq(fw_cfg_add_bytes(fw, FW_CFG_FILE_FIRST, big, 1), -EINVAL);
	ck_assert_int_eq(fw_cfg_add_bytes(fw, FW_CFG_FILE_DIR, big, 1), -EEXIST);
	ck_assert_int_eq(fw_cfg_add_bytes(fw, FW_CFG_WRITE_CHANNEL | 7, big, 1), -EINVAL);
	ck_assert_int_eq(fw_cfg_add_bytes(fw, 7, big, (size_t)FW_CFG_MAX_ITEM + 1), -EINVAL);
	ck_assert_int_eq(fw_cfg_add_u32(fw, FW_CFG_IRQ0_OVERRIDE, 1), 0);
	ck_assert_int_eq(fw_cfg_add_u64(fw, FW_CFG_RAM_SIZE, 0x1122334455667788ULL), 0);
	port_select(fw, FW_CFG_RAM_SIZE);
	port_read(fw, big, 8);
	ck_assert_uint_eq(le(big, 8), 0x1122334455667788ULL);
	port_select(fw, FW_CFG_IRQ0_OVERRIDE);
	port_read(fw, big, 4);
	ck_assert_uint_eq(le(big, 4), 1);

	ck_assert_int_eq(fw_cfg_add_file(fw, "", big, 1), -EINVAL);
	ck_assert_int_eq(fw_cfg_add_file(fw, NULL, big, 1), -EINVAL);
	memset(name, 'n', sizeof(name));
	name[FW_CFG_NAME_LEN - 1] = 0; /* 55 bytes: fits */
	ck_assert_int_eq(fw_cfg_add_file(fw, name, big, 1), 0);
	name[FW_CFG_NAME_LEN - 1] = 'n';
	name[FW_CFG_NAME_LEN] = 0; /* 56: no room for the NUL */
	ck_assert_int_eq(fw_cfg_add_file(fw, name, big, 1), -EINVAL);
	ck_assert_int_eq(fw_cfg_add_file(fw, "etc/x", big, 2), 0);
	ck_assert_int_eq(fw_cfg_add_file(fw, "etc/x", big, 2), -EEXIST);
	for (int i = 2; i < FW_CFG_MAX_FILES; i++) {
		snprintf(name, sizeof(name), "opt/f%02d", i);
		ck_assert_int_eq(fw_cfg_add_file(fw, name, big, (size_t)i), 0);
	}
	ck_assert_int_eq(fw_cfg_add_file(fw, "one/too/many", big, 1), -ENOSPC);
}
END_TEST

/* Files come back sorted by name with selectors 0x20.., whatever order they
 * were added in, and read right through both interfaces. */
START_TEST(file_directory)
{
	static const char *const names[] = { "etc/zeta", "bootorder", "etc/acpi/rsdp",
					     "genroms/a.bin", "etc/alpha" };
	struct romfile p[8] = { 0 }, d[8] = { 0 };
	int np, nd;

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		char data[64];

		snprintf(data, sizeof(data), "contents of %s", names[i]);
		ck_assert_int_eq(fw_cfg_add_file(fw, names[i], data, strlen(data)), 0);
	}
	np = seabios_dir(fw, false, p, 8);
	nd = seabios_dir(fw, true, d, 8);
	ck_assert_int_eq(np, 5);
	ck_assert_int_eq(nd, 5);
	ck_assert_mem_eq(p, d, sizeof(p[0]) * 5);
	for (int i = 0; i < np; i++) {
		char want[96], got[96] = "";

		if (i)
			ck_assert_int_lt(strcmp(p[i - 1].name, p[i].name), 0);
		ck_assert_uint_eq(p[i].select, FW_CFG_FILE_FIRST + i);
		snprintf(want, sizeof(want), "contents of %.55s", p[i].name);
		ck_assert_uint_eq(p[i].size, strlen(want));
		port_select(fw, p[i].select);
		port_read(fw, got, p[i].size);
		ck_assert_str_eq(got, want);
		memset(got, 0, sizeof(got));
		dma_read_entry(p[i].select, got, p[i].size);
		ck_assert_str_eq(got, want);
	}
	ck_assert_str_eq(p[0].name, "bootorder");
	ck_assert_str_eq(p[4].name, "genroms/a.bin");
}
END_TEST

/* ---- DMA ---- */

START_TEST(dma_read_skip_select)
{
	uint8_t b[16];

	/* Select + skip 2 + read 4 of "QEMU": "MU" then zeros past the end. */
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_SKIP, 2, 0), 0);
	memset(b, 0xee, sizeof(b));
	ck_assert_int_eq(gm_write(&gm, BUF_AT, b, sizeof(b)), 0);
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_READ, 4, BUF_AT), 0);
	ck_assert_int_eq(gm_read(&gm, BUF_AT, b, 6), 0);
	ck_assert_mem_eq(b, "MU\0\0\xee\xee", 6);
	/* Skip past the end stays at the end; a port read then gives 0. */
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_SKIP, 100, 0), 0);
	ck_assert_uint_eq(port_byte(fw), 0);
	/* Select alone (no read/skip/write): length ignored, offset rewound. */
	ck_assert_uint_eq(dma_op((uint32_t)FW_CFG_ID << 16 | FW_CFG_DMA_CTL_SELECT, 0xffffffff, 0),
			  0);
	ck_assert_uint_eq(port_byte(fw), FW_CFG_VERSION | FW_CFG_VERSION_DMA);
	/* Read without select continues where the port left off. */
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_READ, 3, BUF_AT), 0);
	ck_assert_int_eq(gm_read(&gm, BUF_AT, b, 3), 0);
	ck_assert_mem_eq(b, "\0\0\0", 3);
	/* Read of an invalid key zeroes the target. */
	memset(b, 0xee, sizeof(b));
	ck_assert_int_eq(gm_write(&gm, BUF_AT, b, sizeof(b)), 0);
	ck_assert_uint_eq(
		dma_op(0x3fffu << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 8, BUF_AT), 0);
	ck_assert_int_eq(gm_read(&gm, BUF_AT, b, 9), 0);
	ck_assert_mem_eq(b, "\0\0\0\0\0\0\0\0\xee", 9);
	/* Writes: no item is writable, so always the error bit. */
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE, 2, BUF_AT),
			  FW_CFG_DMA_CTL_ERROR);
	ck_assert_uint_eq(dma_op(0x3fffu << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE, 2,
				 BUF_AT),
			  FW_CFG_DMA_CTL_ERROR);
	port_select(fw, FW_CFG_SIGNATURE);
	ck_assert_uint_eq(port_byte(fw), 'Q'); /* the write changed nothing */
	/* The address register is 0 again after each transfer: a low-half
	 * write alone addresses below 4 GiB. */
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4, BUF_AT), 0);
	ck_assert_int_eq(gm_read(&gm, BUF_AT, b, 4), 0);
	ck_assert_mem_eq(b, "QEMU", 4);
}
END_TEST

START_TEST(dma_hostile)
{
	uint8_t b[16], z[16] = { 0 };
	uint32_t ctl;

	ck_assert_int_eq(fw_cfg_add_file(fw, "etc/x", "0123456789", 10), 0);
	/* Target outside RAM, wrapping the address space, straddling RAM's end. */
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4, RAM),
			  FW_CFG_DMA_CTL_ERROR);
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4, GiB(5)),
			  FW_CFG_DMA_CTL_ERROR);
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 0x20,
				 0xfffffffffffffff0ULL),
			  FW_CFG_DMA_CTL_ERROR);
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4, RAM - 2),
			  FW_CFG_DMA_CTL_ERROR);
	/* A length far past the item: the item's 4 bytes land, then zeroing
	 * the next 4 GiB runs off RAM's end: error, nothing written past it. */
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 0xffffffff, RAM - 8),
			  FW_CFG_DMA_CTL_ERROR);
	ck_assert_int_eq(gm_read(&gm, RAM - 8, b, 8), 0);
	ck_assert_mem_eq(b, "QEMU", 4);
	/* The structure itself at RAM's end: unreadable, so the error lands in
	 * the control word if that is in RAM... */
	ck_assert_int_eq(gm_write(&gm, RAM - 8, z, 8), 0);
	dma_kick_at(fw, RAM - 8);
	ck_assert_int_eq(gm_read(&gm, RAM - 8, b, 8), 0);
	ck_assert_uint_eq(get_be32(b), FW_CFG_DMA_CTL_ERROR);
	ck_assert_mem_eq(b + 4, z, 4);
	/* ...and nowhere if not; outside RAM entirely, nothing at all. */
	ck_assert_int_eq(gm_write(&gm, RAM - 2, z, 2), 0);
	dma_kick_at(fw, RAM - 2);
	ck_assert_int_eq(gm_read(&gm, RAM - 2, b, 2), 0);
	ck_assert_mem_eq(b, z, 2);
	dma_kick_at(fw, GiB(16));
	dma_kick_at(fw, 0xfffffffffffffff8ULL);
	/* The structure in the same page as its target: read back whole. */
	ctl = dma_op_at(fw, BUF_AT, FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4, BUF_AT + 4);
	ck_assert_uint_eq(ctl, 0);
	ck_assert_int_eq(gm_read(&gm, BUF_AT + 4, b, 4), 0);
	ck_assert_mem_eq(b, "QEMU", 4);
	/* The target overlapping the structure: the structure was copied out
	 * first, then the status overwrites the control word. */
	ctl = dma_op_at(fw, BUF_AT, FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 16, BUF_AT);
	ck_assert_uint_eq(ctl, 0);
	ck_assert_int_eq(gm_read(&gm, BUF_AT + 4, b, 12), 0);
	ck_assert_mem_eq(b, z, 12); /* bytes 4..15: past "QEMU", zeros */
	/* Still serviceable afterwards. */
	port_select(fw, FW_CFG_SIGNATURE);
	ck_assert_uint_eq(port_byte(fw), 'Q');
}
END_TEST

/* A 64-bit structure address through both halves of the register. */
START_TEST(dma_above_4g)
{
	struct guest_mem big;
	struct device *d;
	uint8_t b[4];

	ck_assert_int_eq(gm_init(&big, GiB(5), false), 0);
	d = fw_cfg_create(&big);
	ck_assert_ptr_nonnull(d);
	{
		uint8_t acc[16];
		uint64_t at = GiB(4) + 0x1000;

		put_be32(acc, FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ);
		put_be32(acc + 4, 4);
		put_be64(acc + 8, GiB(4) + 0x2000);
		ck_assert_int_eq(gm_write(&big, at, acc, sizeof(acc)), 0);
		dma_kick_at(d, at);
		ck_assert_int_eq(gm_read(&big, at, acc, 4), 0);
		ck_assert_uint_eq(get_be32(acc), 0);
		ck_assert_int_eq(gm_read(&big, GiB(4) + 0x2000, b, 4), 0);
		ck_assert_mem_eq(b, "QEMU", 4);
	}
	d->ops->destroy(d);
	gm_destroy(&big);
}
END_TEST

/* ---- the board's items ---- */

START_TEST(board_items)
{
	struct guest_mem big;
	struct e820_entry e[E820_MAX];
	struct fw_cfg_board b = {
		.ncpus = 3, .boot_menu = true, .boot_menu_wait_ms = 2500, .boot_fail_wait_ms = -1
	};
	uint8_t *f;
	uint32_t size;
	int n;

	ck_assert_int_eq(gm_init(&big, GiB(6), false), 0);
	n = fw_cfg_ram_e820(&big, e, E820_MAX);
	ck_assert_int_eq(n, 2);
	e[n++] = (struct e820_entry){ 0xfeffc000, 0x4000, E820_RESERVED };
	b.ram_size = big.ram_size;
	b.e820 = e;
	b.ne820 = n;
	ck_assert_int_eq(fw_cfg_add_board(fw, &b), 0);
	gm_destroy(&big);

	ck_assert_uint_eq(item_le(fw, FW_CFG_NB_CPUS, 2), 3);
	ck_assert_uint_eq(item_le(fw, FW_CFG_MAX_CPUS, 2), 3);
	ck_assert_uint_eq(item_le(fw, FW_CFG_RAM_SIZE, 8), GiB(6));
	ck_assert_uint_eq(item_le(fw, FW_CFG_BOOT_MENU, 2), 1);
	ck_assert_uint_eq(item_le(fw, FW_CFG_NOGRAPHIC, 2), 1);
	ck_assert_uint_eq(item_le(fw, FW_CFG_IRQ0_OVERRIDE, 4), 1);
	/* NUMA: node count 0 and one word per APIC id, then nothing. */
	port_select(fw, FW_CFG_NUMA);
	for (int i = 0; i < 4 * 8; i++)
		ck_assert_uint_eq(port_byte(fw), 0);

	/* etc/e820 as qemu_cfg_e820 reads it: 20-byte LE entries. */
	f = load_file("etc/e820", &size);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(size, 3 * 20);
	ck_assert_uint_eq(le(f, 8), 0);
	ck_assert_uint_eq(le(f + 8, 8), GM_LOWMEM_MAX);
	ck_assert_uint_eq(le(f + 16, 4), E820_RAM);
	ck_assert_uint_eq(le(f + 20, 8), GiB(4));
	ck_assert_uint_eq(le(f + 28, 8), GiB(6) - GM_LOWMEM_MAX);
	ck_assert_uint_eq(le(f + 36, 4), E820_RAM);
	ck_assert_uint_eq(le(f + 40, 8), 0xfeffc000);
	ck_assert_uint_eq(le(f + 48, 8), 0x4000);
	ck_assert_uint_eq(le(f + 56, 4), E820_RESERVED);
	free(f);
	/* romfile_loadint files. */
	f = load_file("etc/boot-menu-wait", &size);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(size, 2);
	ck_assert_uint_eq(le(f, 2), 2500);
	free(f);
	f = load_file("etc/boot-fail-wait", &size);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(size, 4);
	ck_assert_uint_eq(le(f, 4), 0xffffffff);
	free(f);

	b.ncpus = 0;
	ck_assert_int_eq(fw_cfg_add_board(fw, &b), -EINVAL);
	ck_assert_int_eq(fw_cfg_add_e820(fw, e, E820_MAX + 1), -EINVAL);
}
END_TEST

START_TEST(board_menu_off)
{
	struct fw_cfg_board b = { .ncpus = 1, .ram_size = RAM, .boot_fail_wait_ms = 5000 };
	uint32_t size;
	uint8_t *f;

	ck_assert_int_eq(fw_cfg_add_board(fw, &b), 0);
	ck_assert_ptr_null(load_file("etc/boot-menu-wait", &size));
	f = load_file("etc/e820", &size);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(size, 0);
	free(f);
	f = load_file("etc/boot-fail-wait", &size);
	ck_assert_uint_eq(le(f, 4), 5000);
	free(f);
}
END_TEST

/* SeaBIOS src/boot.c glob_prefix: does bootorder line str match its glob? */
static bool glob_prefix(const char *glob, const char *str)
{
	for (;;) {
		if (!*glob && (!*str || *str == '/'))
			return true;
		if (*glob == '*') {
			if (!*str || *str == '/' || *str == glob[1])
				glob++;
			else
				str++;
			continue;
		}
		if (*glob != *str)
			return false;
		glob++;
		str++;
	}
}

/* SeaBIOS find_prio over the bootorder lines: 1-based priority or -1. */
static int find_prio(const char *bootorder, const char *glob)
{
	char copy[1024], *line, *save = NULL;
	int prio = 1;

	snprintf(copy, sizeof(copy), "%s", bootorder);
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save), prio++)
		if (glob_prefix(glob, line))
			return prio;
	return -1;
}

START_TEST(bootorder_paths)
{
	const struct fw_boot_dev devs[] = {
		{ .kind = FW_BOOT_ATA, .pci_dev = 1, .pci_fn = 1, .channel = 1, .unit = 0 },
		{ .kind = FW_BOOT_ATA, .pci_dev = 1, .pci_fn = 1, .channel = 0, .unit = 1 },
		{ .kind = FW_BOOT_SCSI, .pci_dev = 4, .target = 2, .lun = 0 },
		{ .kind = FW_BOOT_NET, .pci_dev = 5 },
		{ .kind = FW_BOOT_HALT },
	};
	char buf[512];
	long n = fw_bootorder_build(devs, ARRAY_SIZE(devs), buf, sizeof(buf));
	const char *want = "/pci@i0cf8/ide@1,1/drive@1/disk@0\n"
			   "/pci@i0cf8/ide@1,1/drive@0/disk@1\n"
			   "/pci@i0cf8/scsi@4/channel@0/disk@2,0\n"
			   "/pci@i0cf8/ethernet@5/ethernet-phy@0\n"
			   "HALT";
	struct fw_boot_dev bad;
	uint8_t *f;
	uint32_t size;

	ck_assert_int_eq(n, (long)strlen(want) + 1);
	ck_assert_str_eq(buf, want);
	/* The globs SeaBIOS builds (build_ata_path, build_scsi_path,
	 * bootprio_find_pci_rom) find each at its place. */
	ck_assert_int_eq(find_prio(buf, "/pci@i0cf8/*@1,1/drive@1/disk@0"), 1);
	ck_assert_int_eq(find_prio(buf, "/pci@i0cf8/*@1,1/drive@0/disk@1"), 2);
	ck_assert_int_eq(find_prio(buf, "/pci@i0cf8/*@1,1/drive@0/disk@0"), -1);
	ck_assert_int_eq(find_prio(buf, "/pci@i0cf8/*@4/*@0/*@2,0"), 3);
	ck_assert_int_eq(find_prio(buf, "/pci@i0cf8/*@5"), 4);
	ck_assert_int_eq(find_prio(buf, "HALT"), 5);

	/* Too small by one byte; every size below fails too. */
	ck_assert_int_eq(fw_bootorder_build(devs, ARRAY_SIZE(devs), buf, (size_t)n - 1), -ENOSPC);
	ck_assert_int_eq(fw_bootorder_build(devs, ARRAY_SIZE(devs), buf, 0), -ENOSPC);
	ck_assert_int_eq(fw_bootorder_build(devs, 0, buf, sizeof(buf)), 0);
	bad = devs[0];
	bad.pci_dev = 32;
	ck_assert_int_eq(fw_bootorder_build(&bad, 1, buf, sizeof(buf)), -EINVAL);
	bad = devs[0];
	bad.unit = 2;
	ck_assert_int_eq(fw_bootorder_build(&bad, 1, buf, sizeof(buf)), -EINVAL);
	bad = devs[0];
	bad.kind = (enum fw_boot_kind)9;
	ck_assert_int_eq(fw_bootorder_build(&bad, 1, buf, sizeof(buf)), -EINVAL);

	ck_assert_int_eq(fw_cfg_add_bootorder(fw, devs, ARRAY_SIZE(devs)), 0);
	f = load_file("bootorder", &size);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(size, strlen(want) + 1);
	ck_assert_str_eq((char *)f, want);
	free(f);
}
END_TEST

START_TEST(option_roms)
{
	uint8_t rom[1024], *f;
	uint32_t size;

	for (size_t i = 0; i < sizeof(rom); i++)
		rom[i] = (uint8_t)(i * 13);
	rom[0] = 0x55;
	rom[1] = 0xaa;
	ck_assert_int_eq(fw_cfg_add_rom(fw, "kestrel-vga.bin", rom, sizeof(rom)), 0);
	ck_assert_int_eq(fw_cfg_add_rom(fw, "", rom, 1), -EINVAL);
	ck_assert_int_eq(fw_cfg_add_rom(fw, "a/b", rom, 1), -EINVAL);
	ck_assert_int_eq(fw_cfg_add_rom(fw, NULL, rom, 1), -EINVAL);
	ck_assert_int_eq(fw_cfg_add_rom(fw, "0123456789012345678901234567890123456789012345678",
					rom, 1),
			 -EINVAL); /* 8 + 49 bytes */
	f = load_file("genroms/kestrel-vga.bin", &size);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(size, sizeof(rom));
	ck_assert_mem_eq(f, rom, sizeof(rom));
	free(f);
}
END_TEST

/* ---- ACPI through the table loader ---- */

/* A guest-physical window the test linker allocates into. */
struct linker {
	uint8_t *mem;
	uint64_t base, size;
	uint64_t fseg_at, high_at; /* where ALLOCATE puts the FSEG and HIGH zones */
	struct {
		char name[TABLE_LOADER_FILESZ];
		uint8_t *data;
		uint64_t addr;
		uint32_t size;
	} f[4];
	int nf;
};

static int linker_find(struct linker *l, const uint8_t *name)
{
	ck_assert_msg(memchr(name, 0, TABLE_LOADER_FILESZ), "loader file name not terminated");
	for (int i = 0; i < l->nf; i++)
		if (!strcmp(l->f[i].name, (const char *)name))
			return i;
	ck_abort_msg("loader names unallocated file %s", name);
	return -1;
}

/* romfile_loader_allocate: the file's bytes at an aligned address of the zone. */
static void linker_allocate(struct linker *l, const uint8_t *e)
{
	uint32_t align = (uint32_t)le(e + 4 + TABLE_LOADER_FILESZ, 4), size;
	uint8_t zone = e[4 + TABLE_LOADER_FILESZ + 4];
	uint64_t *at = zone == TABLE_LOADER_ZONE_FSEG ? &l->fseg_at : &l->high_at;
	uint8_t *data;

	ck_assert(zone == TABLE_LOADER_ZONE_FSEG || zone == TABLE_LOADER_ZONE_HIGH);
	ck_assert_uint_eq(align & (align - 1), 0);
	ck_assert_uint_eq(*at % align, 0);
	data = load_file((const char *)e + 4, &size);
	ck_assert_ptr_nonnull(data);
	ck_assert_uint_le(*at - l->base + size, l->size);
	memcpy(l->mem + (*at - l->base), data, size);
	free(data);
	snprintf(l->f[l->nf].name, TABLE_LOADER_FILESZ, "%s", (const char *)e + 4);
	l->f[l->nf].data = l->mem + (*at - l->base);
	l->f[l->nf].addr = *at;
	l->f[l->nf].size = size;
	l->nf++;
	*at += size;
}

static void linker_add_pointer(struct linker *l, const uint8_t *e)
{
	int dst = linker_find(l, e + 4), src = linker_find(l, e + 4 + TABLE_LOADER_FILESZ);
	uint32_t off = (uint32_t)le(e + 4 + 2 * TABLE_LOADER_FILESZ, 4);
	uint8_t size = e[4 + 2 * TABLE_LOADER_FILESZ + 4];
	uint64_t v;

	ck_assert(size == 1 || size == 2 || size == 4 || size == 8);
	ck_assert_uint_le((uint64_t)off + size, l->f[dst].size);
	v = le(l->f[dst].data + off, size);
	/* OVMF refuses a pointer that does not land inside its target blob. */
	ck_assert_uint_lt(v, l->f[src].size);
	v += l->f[src].addr;
	for (unsigned i = 0; i < size; i++)
		l->f[dst].data[off + i] = (uint8_t)(v >> (8 * i));
}

static void linker_add_checksum(struct linker *l, const uint8_t *e)
{
	int f = linker_find(l, e + 4);
	uint32_t off = (uint32_t)le(e + 4 + TABLE_LOADER_FILESZ, 4);
	uint32_t start = (uint32_t)le(e + 4 + TABLE_LOADER_FILESZ + 4, 4);
	uint32_t len = (uint32_t)le(e + 4 + TABLE_LOADER_FILESZ + 8, 4);
	uint8_t sum = 0;

	ck_assert_uint_lt(off, l->f[f].size);
	ck_assert_uint_le((uint64_t)start + len, l->f[f].size);
	for (uint32_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + l->f[f].data[start + i]);
	l->f[f].data[off] = (uint8_t)(l->f[f].data[off] - sum);
}

/* romfile_loader_execute on etc/table-loader. */
static void linker_run(struct linker *l)
{
	uint32_t size;
	uint8_t *script = load_file(ACPI_FILE_LOADER, &size);

	ck_assert_ptr_nonnull(script);
	ck_assert_uint_eq(size % TABLE_LOADER_ENTRY_LEN, 0);
	for (uint32_t off = 0; off < size; off += TABLE_LOADER_ENTRY_LEN) {
		const uint8_t *e = script + off;

		switch (le(e, 4)) {
		case TABLE_LOADER_ALLOCATE: linker_allocate(l, e); break;
		case TABLE_LOADER_ADD_POINTER: linker_add_pointer(l, e); break;
		case TABLE_LOADER_ADD_CHECKSUM: linker_add_checksum(l, e); break;
		default: ck_abort_msg("unknown loader command %llu", (unsigned long long)le(e, 4));
		}
	}
	free(script);
}

static const struct acpi_board acpi_test_board = {
	.ncpus = 4,
	.pci_mmio_base = BOARD_PCI_MMIO_BASE,
	.pci_mmio_end = BOARD_PCI_MMIO_END,
	.pci_mmio64_base = GiB(64),
	.pci_mmio64_size = GiB(32),
};

/* RSDP at R, tables right after at R + 64: exactly what acpi_build() writes
 * at gpa R, byte for byte, at bases other than the direct-boot one. */
START_TEST(table_loader_matches_direct_build)
{
	static const uint64_t bases[] = { BOARD_ACPI_BASE, 0xf5a40, 0x3ffe0000 };
	uint8_t *want = calloc(1, BOARD_ACPI_SIZE), *mem = calloc(1, BOARD_ACPI_SIZE);

	ck_assert_int_eq(fw_cfg_add_acpi(fw, &acpi_test_board), 0);
	for (size_t i = 0; i < ARRAY_SIZE(bases); i++) {
		struct linker l = { .mem = mem,
				    .base = bases[i],
				    .size = BOARD_ACPI_SIZE,
				    .fseg_at = bases[i],
				    .high_at = bases[i] + ACPI_RSDP_SPAN };
		long n;

		memset(want, 0, BOARD_ACPI_SIZE);
		memset(mem, 0, BOARD_ACPI_SIZE);
		n = acpi_build(want, BOARD_ACPI_SIZE, bases[i], &acpi_test_board);
		ck_assert_int_gt(n, 0);
		linker_run(&l);
		ck_assert_int_eq(l.nf, 2);
		ck_assert_uint_eq(l.high_at, bases[i] + (uint64_t)n);
		ck_assert_msg(!memcmp(mem, want, (size_t)n), "base %#llx: loader result differs",
			      (unsigned long long)bases[i]);
	}
	free(want);
	free(mem);
}
END_TEST

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

/* The RSDP in the F segment and the tables far away, as SeaBIOS places
 * them: every checksum holds and every pointer reaches a table. */
START_TEST(table_loader_relocates)
{
	const uint64_t base = 0xf0000, rsdp = 0xf5a40, tables = 0x1000000;
	uint64_t size = tables - base + BOARD_ACPI_SIZE;
	uint8_t *mem = calloc(1, size), *r, *x, *fadt = NULL;
	struct linker l = {
		.mem = mem, .base = base, .size = size, .fseg_at = rsdp, .high_at = tables
	};
	uint32_t xlen;

	ck_assert_int_eq(fw_cfg_add_acpi(fw, &acpi_test_board), 0);
	linker_run(&l);
	r = mem + (rsdp - base);
	ck_assert_mem_eq(r, "RSD PTR ", 8);
	ck_assert_uint_eq(sum8(r, 20), 0);
	ck_assert_uint_eq(sum8(r, 36), 0);
	x = mem + (le(r + 24, 8) - base);
	ck_assert_mem_eq(x, "XSDT", 4);
	ck_assert_uint_eq(le(r + 16, 4) - base < size, 1);
	ck_assert_mem_eq(mem + (le(r + 16, 4) - base), "RSDT", 4);
	xlen = (uint32_t)le(x + 4, 4);
	ck_assert_uint_eq(sum8(x, xlen), 0);
	for (uint32_t off = 36; off < xlen; off += 8) {
		uint64_t a = le(x + off, 8);
		uint8_t *t;

		ck_assert_uint_ge(a, tables);
		t = mem + (a - base);
		ck_assert_uint_eq(sum8(t, (uint32_t)le(t + 4, 4)), 0);
		if (!memcmp(t, "FACP", 4))
			fadt = t;
	}
	ck_assert_ptr_nonnull(fadt);
	ck_assert_mem_eq(mem + (le(fadt + 40, 4) - base), "DSDT", 4);
	ck_assert_uint_eq(le(fadt + 140, 8), le(fadt + 40, 4));
	ck_assert_mem_eq(mem + (le(fadt + 36, 4) - base), "FACS", 4);
	ck_assert_uint_eq(le(fadt + 36, 4) % 64, 0);
	ck_assert_uint_eq(le(fadt + 132, 8), le(fadt + 36, 4));
	free(mem);
}
END_TEST

/* The script's form: allocations first, each command naming only the two
 * files, and the blob record bounded. */
START_TEST(table_loader_script_form)
{
	struct acpi_blobs b = { 0 };
	uint8_t script[64 * TABLE_LOADER_ENTRY_LEN];
	long n;
	unsigned pointers = 0, sums = 0;

	b.tables_size = BOARD_ACPI_SIZE;
	b.tables = calloc(1, b.tables_size);
	ck_assert_int_eq(acpi_build_blobs(&b, &acpi_test_board), 0);
	n = table_loader_script(&b, script, sizeof(script));
	ck_assert_int_eq(n, (long)(2 + b.nfix) * TABLE_LOADER_ENTRY_LEN);
	ck_assert_uint_eq(le(script, 4), TABLE_LOADER_ALLOCATE);
	ck_assert_str_eq((char *)script + 4, ACPI_FILE_RSDP);
	ck_assert_uint_eq(script[4 + 56 + 4], TABLE_LOADER_ZONE_FSEG);
	ck_assert_uint_eq(le(script + 128, 4), TABLE_LOADER_ALLOCATE);
	ck_assert_str_eq((char *)script + 128 + 4, ACPI_FILE_TABLES);
	ck_assert_uint_eq(le(script + 128 + 4 + 56, 4), 64);
	ck_assert_uint_eq(script[128 + 4 + 56 + 4], TABLE_LOADER_ZONE_HIGH);
	for (long off = 2 * TABLE_LOADER_ENTRY_LEN; off < n; off += TABLE_LOADER_ENTRY_LEN) {
		uint64_t cmd = le(script + off, 4);

		ck_assert(cmd == TABLE_LOADER_ADD_POINTER || cmd == TABLE_LOADER_ADD_CHECKSUM);
		pointers += cmd == TABLE_LOADER_ADD_POINTER;
		sums += cmd == TABLE_LOADER_ADD_CHECKSUM;
	}
	/* FADT 4, XSDT 2, RSDT 2, RSDP 2 pointers; DSDT, FADT, MADT, XSDT,
	 * RSDT and both RSDP checksums. */
	ck_assert_uint_eq(pointers, 10);
	ck_assert_uint_eq(sums, 7);
	ck_assert_int_eq(table_loader_script(&b, script, (size_t)n - 1), -ENOSPC);
	/* A tables buffer too small fails cleanly. */
	b.tables_size = 200;
	ck_assert_int_eq(acpi_build_blobs(&b, &acpi_test_board), -ENOSPC);
	free(b.tables);
}
END_TEST

/* ---- state and fuzz ---- */

START_TEST(save_load)
{
	struct device *b = fw_cfg_create(&gm);
	struct state_buf s;

	ck_assert_int_eq(fw_cfg_add_file(fw, "etc/x", "0123456789", 10), 0);
	ck_assert_int_eq(fw_cfg_add_file(b, "etc/x", "0123456789", 10), 0);
	port_select(fw, FW_CFG_FILE_FIRST);
	port_read(fw, (uint8_t[3]){ 0 }, 3);
	dev_wr(fw, FW_CFG_REGION_DMA, 0, 4, __builtin_bswap32(1)); /* high half pending */
	roundtrip(fw, b, &s);
	ck_assert_uint_eq(port_byte(b), '3');
	check_truncations(b, &s);
	/* Offset past the item, key past the slots, a stray low half. */
	check_patched_fails(b, &s, STATE_HDR + 2, 11);
	check_patched_fails(b, &s, STATE_HDR + 1, 0x3f);
	check_patched_fails(b, &s, STATE_HDR + 6, 1);
	check_patched_loads(b, &s, STATE_HDR + 2, 10); /* at the end: fine */
	state_free(&s);
	b->ops->destroy(b);
}
END_TEST

/* Random register traffic, with DMA structures anywhere (in RAM or not):
 * the device never faults, never writes outside RAM (gm would refuse), and
 * stays usable. */
START_TEST(register_fuzz)
{
	static const uint64_t spots[] = { 0,	   DMA_AT, RAM - 16, RAM - 8,
					  RAM - 1, RAM,	   GiB(4),   0xfffffffffffffff0ULL };

	ck_assert_int_eq(fw_cfg_add_file(fw, "etc/x", "0123456789", 10), 0);
	for (int i = 0; i < 200000; i++) {
		uint64_t r = fuzz_next();
		unsigned size = fuzz_size();
		int region = (r >> 4) & 1;
		uint64_t off = (r >> 8) % (region ? FW_CFG_DMA_LEN : FW_CFG_IO_LEN);

		if ((r & 0xf) == 0) {
			/* A well-formed structure at a random spot, random fields. */
			uint8_t acc[16];
			uint64_t at = spots[(r >> 16) % ARRAY_SIZE(spots)];

			put_be32(acc, (uint32_t)fuzz_next() & 0x003f001f);
			put_be32(acc + 4, (uint32_t)fuzz_next() % 64);
			put_be64(acc + 8,
				 spots[fuzz_next() % ARRAY_SIZE(spots)] + fuzz_next() % 32);
			(void)!gm_write(&gm, at, acc, sizeof(acc));
			dma_kick_at(fw, at);
		} else if (r & 0x20) {
			dev_wr(fw, region, off, size, fuzz_next());
		} else {
			dev_rd(fw, region, off, size);
		}
	}
	port_select(fw, FW_CFG_SIGNATURE);
	ck_assert_uint_eq(port_byte(fw), 'Q');
	ck_assert_uint_eq(dma_op(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4, BUF_AT), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fw_cfg");

	ADD_TCASE(s, "fw_cfg", setup, teardown, 60, signature_and_id, read_past_end_and_bad_keys,
		  add_api, file_directory, dma_read_skip_select, dma_hostile, dma_above_4g,
		  board_items, board_menu_off, bootorder_paths, option_roms,
		  table_loader_matches_direct_build, table_loader_relocates,
		  table_loader_script_form, save_load, register_fuzz);
	return run_suite(s);
}
