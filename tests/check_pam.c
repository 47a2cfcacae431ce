/* The i440FX PAM (devices/emulated/i440fx_pam.c): what each attribute of
 * each segment maps at 0xC0000-0xFFFFF, in guest memory's slot table (no
 * KVM: gm_init alone), on its own and through the host bridge's registers
 * (config writes, reset, save/load), and a register fuzz that must leave
 * exactly one mapping per segment and no slot leaked. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kestrel/board.h"
#include "kestrel/devices.h"
#include "kestrel/guest_mem.h"
#include "kestrel/pci.h"
#include "kestrel/state.h"
#include "fake_board.h"

#define ROM_SIZE 0x20000
#define RAM_SIZE MiB(64)
#define SEG_LOW	 0x4000

static struct guest_mem gm;
static uint8_t *rom;
static const uint8_t power_on[PAM_NREGS];
static const uint8_t after_post[PAM_NREGS] = { 0x10, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33 };

static void setup(void)
{
	ck_assert_int_eq(gm_init(&gm, RAM_SIZE, false), 0);
	rom = mmap(NULL, ROM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(rom, MAP_FAILED);
	for (unsigned i = 0; i < ROM_SIZE; i++)
		rom[i] = (uint8_t)(i * 7 + 1);
}

static void teardown(void)
{
	munmap(rom, ROM_SIZE);
	gm_destroy(&gm);
}

/* The slot at gpa, which must start there; false if none. */
static bool slot_at(uint64_t gpa, struct gm_slot_info *in)
{
	int id = gm_slot_at(&gm, gpa);

	if (id < 0)
		return false;
	ck_assert_int_eq(gm_slot_get(&gm, id, in), 0);
	ck_assert_uint_eq(in->gpa, gpa);
	return true;
}

static uint8_t ram_byte(uint64_t gpa)
{
	return *(uint8_t *)gm_ram_ptr(&gm, gpa, 1);
}

/* Segment gpa shows the flash (ROM) at rom_off, read-only. */
static void expect_rom(uint64_t gpa, size_t rom_off)
{
	struct gm_slot_info in;

	ck_assert_msg(slot_at(gpa, &in), "no slot at %#llx", (unsigned long long)gpa);
	ck_assert_uint_eq(in.flags, GM_SLOT_READONLY);
	ck_assert_ptr_eq(in.hva, rom + rom_off);
	ck_assert_ptr_null(gm_ptr(&gm, gpa, 1));
}

/* Segment gpa is DRAM, read-only or not. */
static void expect_ram(uint64_t gpa, uint64_t size, bool readonly)
{
	struct gm_slot_info in;

	ck_assert_msg(slot_at(gpa, &in), "no slot at %#llx", (unsigned long long)gpa);
	ck_assert_uint_eq(in.size, size);
	ck_assert_uint_eq(in.flags, GM_SLOT_RAM | (readonly ? GM_SLOT_READONLY : 0));
	ck_assert_uint_eq(in.ram_offset, gpa);
	if (readonly)
		ck_assert_ptr_null(gm_ptr(&gm, gpa, 1));
	else
		ck_assert_ptr_nonnull(gm_ptr(&gm, gpa, size));
}

START_TEST(test_power_on_reads_the_flash)
{
	struct device *p = pam_create(&gm, rom, ROM_SIZE, power_on);
	struct gm_slot_info in;

	ck_assert_ptr_nonnull(p);
	/* Nothing on PCI below 0xE0000: holes, for a device to decode there. */
	for (uint64_t a = 0xc0000; a < 0xe0000; a += SEG_LOW)
		ck_assert_int_lt(gm_slot_at(&gm, a), 0);
	for (uint64_t a = 0xe0000; a < 0xf0000; a += SEG_LOW)
		expect_rom(a, a - 0xe0000);
	expect_rom(0xf0000, 0x10000);
	ck_assert(slot_at(0xf0000, &in));
	ck_assert_str_eq(in.name, "bios");
	ck_assert_uint_eq(in.size, 0x10000);
	/* The reset vector's bytes are the image's last 16. */
	ck_assert_mem_eq((uint8_t *)in.hva + 0xfff0, rom + ROM_SIZE - 16, 16);
	/* The rest of the PC layout is untouched. */
	ck_assert_int_ge(gm_slot_at(&gm, 0x9f000), 0);
	ck_assert_int_lt(gm_slot_at(&gm, 0xa0000), 0);
	ck_assert_int_ge(gm_slot_at(&gm, 0x100000), 0);
	p->ops->destroy(p);
}
END_TEST

/* SeaBIOS's make_bios_writable then make_bios_readonly (src/fw/shadow.c). */
START_TEST(test_shadowing_as_seabios_does)
{
	uint8_t rw[PAM_NREGS] = { 0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33 };
	uint8_t ro[PAM_NREGS] = { 0x10, 0x11, 0x11, 0x11, 0x11, 0x31, 0x33 };
	struct device *p = pam_create(&gm, rom, ROM_SIZE, power_on);
	uint8_t *f;

	ck_assert_int_eq(pam_set(p, rw), 0);
	for (uint64_t a = 0xc0000; a < 0xf0000; a += SEG_LOW)
		expect_ram(a, SEG_LOW, false);
	expect_ram(0xf0000, 0x10000, false);
	/* The copy the firmware makes from the flash's 4 GiB alias. */
	f = gm_ptr(&gm, 0xe0000, ROM_SIZE);
	ck_assert_ptr_null(f); /* two segments per gm_ptr at most: separate slots */
	for (uint64_t a = 0xe0000; a < 0x100000; a += SEG_LOW) {
		memcpy(gm_ptr(&gm, a, SEG_LOW), rom + (a - 0xe0000), SEG_LOW);
	}
	ck_assert_int_eq(pam_set(p, ro), 0);
	for (uint64_t a = 0xc0000; a < 0xe4000; a += SEG_LOW)
		expect_ram(a, SEG_LOW, true);
	expect_ram(0xe4000, SEG_LOW, false); /* 0x31: upper half read/write */
	expect_ram(0xe8000, SEG_LOW, false);
	expect_ram(0xf0000, 0x10000, true);
	/* A write to read-only shadow is dropped, and counted. */
	ck_assert(gm_mmio_write(&gm, 0xf0010, "\xaa", 1));
	ck_assert_uint_eq(ram_byte(0xf0010), rom[0x10010]);
	/* The shadow keeps its contents through every change. */
	ck_assert_int_eq(pam_set(p, power_on), 0);
	expect_rom(0xf0000, 0x10000);
	ck_assert_int_eq(pam_set(p, rw), 0);
	ck_assert_mem_eq(gm_ptr(&gm, 0xf0000, 0x10000), rom + 0x10000, 0x10000);
	p->ops->destroy(p);
}
END_TEST

/* Write-only: reads from PCI (the flash, or an empty bus), writes to DRAM. */
START_TEST(test_write_only)
{
	uint8_t wo[PAM_NREGS] = { 0x20, 0x02, 0, 0, 0, 0, 0 };
	struct device *p = pam_create(&gm, rom, ROM_SIZE, power_on);
	struct gm_slot_info in;

	ck_assert_int_eq(pam_set(p, wo), 0);
	expect_rom(0xf0000, 0x10000);
	ck_assert(gm_mmio_write(&gm, 0xf0100, "\x12\x34\x56\x78", 4));
	ck_assert_uint_eq(ram_byte(0xf0100), 0x12);
	ck_assert_uint_eq(ram_byte(0xf0103), 0x78);
	ck_assert_uint_eq(rom[0x10100], (uint8_t)(0x10100 * 7 + 1)); /* the flash unchanged */
	/* 0xC0000 has nothing on PCI: it reads all ones, writes reach DRAM. */
	ck_assert(slot_at(0xc0000, &in));
	ck_assert_uint_eq(in.flags, GM_SLOT_READONLY);
	ck_assert_uint_eq(((uint8_t *)in.hva)[0x123], 0xff);
	ck_assert(gm_mmio_write(&gm, 0xc3ffe, "\x5a\xa5", 2));
	ck_assert_uint_eq(ram_byte(0xc3ffe), 0x5a);
	ck_assert_uint_eq(ram_byte(0xc3fff), 0xa5);
	ck_assert_int_lt(gm_slot_at(&gm, 0xc4000), 0); /* its upper half: disabled */
	/* Read/write DRAM now shows what was written. */
	wo[0] = 0x30;
	wo[1] = 0x03;
	ck_assert_int_eq(pam_set(p, wo), 0);
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, 0xf0101, 1), 0x34);
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, 0xc3fff, 1), 0xa5);
	p->ops->destroy(p);
}
END_TEST

/* A direct kernel boot's map, and images smaller than 128 KiB. */
START_TEST(test_after_post_and_small_flash)
{
	struct device *p = pam_create(&gm, NULL, 0, after_post);

	ck_assert_ptr_nonnull(p);
	for (uint64_t a = 0xc0000; a < 0xf0000; a += SEG_LOW)
		expect_ram(a, SEG_LOW, false);
	expect_ram(0xf0000, 0x10000, true);
	/* No flash at all: disabling the BIOS segment leaves a hole. */
	ck_assert_int_eq(pam_set(p, power_on), 0);
	ck_assert_int_lt(gm_slot_at(&gm, 0xf0000), 0);
	p->ops->destroy(p);
	gm_destroy(&gm);
	ck_assert_int_eq(gm_init(&gm, RAM_SIZE, false), 0);
	/* A 64 KiB image covers the BIOS segment only. */
	p = pam_create(&gm, rom, 0x10000, power_on);
	ck_assert_ptr_nonnull(p);
	expect_rom(0xf0000, 0);
	ck_assert_int_lt(gm_slot_at(&gm, 0xe0000), 0);
	p->ops->destroy(p);
}
END_TEST

START_TEST(test_bad_arguments)
{
	ck_assert_ptr_null(pam_create(&gm, rom, 1000, power_on));	  /* not 16 KiB units */
	ck_assert_ptr_null(pam_create(&gm, rom, 2 * ROM_SIZE, power_on)); /* past 128 KiB */
	ck_assert_ptr_null(pam_create(&gm, rom + 16, 0x4000, power_on));  /* unaligned */
}
END_TEST

/* The host bridge's PAM0-6 at 0x59-0x5F through CONFIG_ADDRESS/DATA. */
static void cfg_write8(struct device *host, unsigned reg, uint8_t v)
{
	dev_wr(host, 0, 0, 4, 0x80000000u | (reg & 0xfc));
	dev_wr(host, 1, reg & 3, 1, v);
}

static uint8_t cfg_read8(struct device *host, unsigned reg)
{
	dev_wr(host, 0, 0, 4, 0x80000000u | (reg & 0xfc));
	return (uint8_t)dev_rd(host, 1, reg & 3, 1);
}

START_TEST(test_through_the_host_bridge)
{
	struct device *host = pci_host_create(NULL), *host2 = pci_host_create(NULL);
	struct device *p = pam_create(&gm, rom, ROM_SIZE, power_on);
	struct state_buf s = { 0 };
	uint8_t regs[PAM_NREGS];

	ck_assert_int_eq(pci_host_set_pam(host, p, power_on), 0);
	ck_assert_uint_eq(cfg_read8(host, 0x59), 0);
	cfg_write8(host, 0x59, 0x30);
	cfg_write8(host, 0x5e, 0x13); /* PAM5: 0xE0000 read/write, 0xE4000 read-only */
	pam_get(p, regs);
	ck_assert_uint_eq(regs[0], 0x30);
	ck_assert_uint_eq(regs[5], 0x13);
	expect_ram(0xf0000, 0x10000, false);
	expect_ram(0xe0000, SEG_LOW, false);
	expect_ram(0xe4000, SEG_LOW, true);
	expect_rom(0xe8000, 0x8000);
	/* A 32-bit write covering PAM0-2 (0x58-0x5B) too. */
	dev_wr(host, 0, 0, 4, 0x80000058u);
	dev_wr(host, 1, 0, 4, 0x33331000u);
	expect_ram(0xf0000, 0x10000, true);
	expect_ram(0xc0000, SEG_LOW, false);
	/* The state goes with the bridge; a load re-maps. */
	pthread_mutex_lock(&host->lock);
	ck_assert_int_eq(host->ops->save(host, &s), 0);
	pthread_mutex_unlock(&host->lock);
	host->ops->reset(host);
	ck_assert_uint_eq(cfg_read8(host, 0x59), 0);
	expect_rom(0xf0000, 0x10000);
	ck_assert_int_lt(gm_slot_at(&gm, 0xc0000), 0);
	ck_assert_int_eq(pci_host_set_pam(host2, p, power_on), 0);
	s.pos = 0;
	ck_assert_int_eq(host2->ops->load(host2, &s), 0);
	expect_ram(0xf0000, 0x10000, true);
	expect_ram(0xc0000, SEG_LOW, false);
	expect_ram(0xe4000, SEG_LOW, true);
	state_free(&s);
	host->ops->destroy(host);
	host2->ops->destroy(host2);
	p->ops->destroy(p);
}
END_TEST

/* Random register values: every segment has exactly the mapping its
 * attribute says, and the slot table does not grow. */
START_TEST(test_register_fuzz)
{
	struct device *p = pam_create(&gm, rom, ROM_SIZE, power_on);
	struct gm_slot_info all[GM_MAX_SLOTS];
	int base = gm_slots(&gm, all, GM_MAX_SLOTS) - 5; /* power-on: E0000-FFFFF mapped */

	for (int round = 0; round < 3000; round++) {
		uint8_t regs[PAM_NREGS];
		int mapped = 0;

		for (unsigned r = 0; r < PAM_NREGS; r++)
			regs[r] = (uint8_t)fuzz_next();
		ck_assert_int_eq(pam_set(p, regs), 0);
		for (unsigned i = 0; i < 13; i++) {
			uint64_t gpa = i == 12 ? 0xf0000 : 0xc0000 + i * SEG_LOW;
			uint64_t size = i == 12 ? 0x10000 : SEG_LOW;
			unsigned a = i == 12 ? (regs[0] >> 4) & 3
					     : (regs[1 + i / 2] >> (i % 2 * 4)) & 3;
			size_t rom_off = gpa - 0xe0000;

			if (a & 1)
				expect_ram(gpa, size, !(a & 2));
			else if (gpa >= 0xe0000)
				expect_rom(gpa, rom_off);
			else if (a == 2)
				ck_assert_int_ge(gm_slot_at(&gm, gpa), 0);
			else
				ck_assert_int_lt(gm_slot_at(&gm, gpa), 0);
			mapped += gm_slot_at(&gm, gpa) >= 0;
		}
		ck_assert_int_eq(gm_slots(&gm, all, GM_MAX_SLOTS), base + mapped);
	}
	p->ops->destroy(p);
}
END_TEST

SUITE_MAIN("pam", "core", setup, teardown, 60, test_power_on_reads_the_flash,
	   test_shadowing_as_seabios_does, test_write_only, test_after_post_and_small_flash,
	   test_bad_arguments, test_through_the_host_bridge, test_register_fuzz)
