/* MC146818 RTC + CMOS: time formats, setting the clock, flags and IRQ 8,
 * firmware memory-size bytes, state. */
#include <check.h>
#include <stdlib.h>
#include <time.h>

#include "kestrel/devices.h"
#include "kestrel/util.h"
#include "fake_board.h"

enum {
	SEC = 0,
	SEC_ALARM,
	MIN,
	MIN_ALARM,
	HOUR,
	HOUR_ALARM,
	DOW,
	DOM,
	MON,
	YEAR,
	REG_A,
	REG_B,
	REG_C,
	REG_D,
	CENTURY = 0x32
};

static struct fake_irq irq;
static struct device *rtc;

static time_t utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900,
			 .tm_mon = mo - 1,
			 .tm_mday = d,
			 .tm_hour = h,
			 .tm_min = mi,
			 .tm_sec = s };

	return timegm(&tm);
}

static uint8_t cmos_rd(unsigned idx)
{
	dev_wr(rtc, 0, 0, 1, idx);
	return (uint8_t)dev_rd(rtc, 0, 1, 1);
}

static void cmos_wr(unsigned idx, uint8_t v)
{
	dev_wr(rtc, 0, 0, 1, idx);
	dev_wr(rtc, 0, 1, 1, v);
}

static struct device *new_rtc(uint64_t lo, uint64_t hi)
{
	struct irq_line l = fake_irq_line(&irq, 8);

	return rtc_create(&l, fake_wall, lo, hi);
}

static void setup(void)
{
	fake_secs = utc(2024, 3, 15, 13, 45, 30); /* a Friday */
	rtc = new_rtc(MiB(512), 0);
	ck_assert_ptr_nonnull(rtc);
}

static void teardown(void)
{
	rtc->ops->destroy(rtc);
}

/* The seven time fields as read, compared with what they should show. */
static void expect_time(uint8_t s, uint8_t mi, uint8_t h, uint8_t dow, uint8_t d, uint8_t mo,
			uint8_t y, uint8_t c)
{
	ck_assert_uint_eq(cmos_rd(SEC), s);
	ck_assert_uint_eq(cmos_rd(MIN), mi);
	ck_assert_uint_eq(cmos_rd(HOUR), h);
	ck_assert_uint_eq(cmos_rd(DOW), dow);
	ck_assert_uint_eq(cmos_rd(DOM), d);
	ck_assert_uint_eq(cmos_rd(MON), mo);
	ck_assert_uint_eq(cmos_rd(YEAR), y);
	ck_assert_uint_eq(cmos_rd(CENTURY), c);
}

START_TEST(test_defaults_bcd_24h)
{
	ck_assert_uint_eq(cmos_rd(REG_A), 0x26);
	ck_assert_uint_eq(cmos_rd(REG_B), 0x02);
	ck_assert_uint_eq(cmos_rd(REG_D), 0x80);
	expect_time(0x30, 0x45, 0x13, 6, 0x15, 0x03, 0x24, 0x20);
	fake_secs += 61;
	ck_assert_uint_eq(cmos_rd(SEC), 0x31);
	ck_assert_uint_eq(cmos_rd(MIN), 0x46);
	/* Across a year boundary. */
	fake_secs = utc(2099, 12, 31, 23, 59, 59) + 1;
	expect_time(0x00, 0x00, 0x00, 6, 0x01, 0x01, 0x00, 0x21); /* a Friday */
}
END_TEST

START_TEST(test_binary_and_12h)
{
	cmos_wr(REG_B, 0x06); /* binary, 24h */
	expect_time(30, 45, 13, 6, 15, 3, 24, 20);
	cmos_wr(REG_B, 0x04); /* binary, 12h: 1 PM */
	ck_assert_uint_eq(cmos_rd(HOUR), 0x81);
	cmos_wr(REG_B, 0x00); /* BCD, 12h */
	ck_assert_uint_eq(cmos_rd(HOUR), 0x81);
	fake_secs = utc(2024, 3, 15, 0, 30, 0);
	ck_assert_uint_eq(cmos_rd(HOUR), 0x12); /* 12 AM */
	fake_secs = utc(2024, 3, 15, 12, 30, 0);
	ck_assert_uint_eq(cmos_rd(HOUR), 0x92); /* 12 PM */
	fake_secs = utc(2024, 3, 15, 23, 0, 0);
	ck_assert_uint_eq(cmos_rd(HOUR), 0x91);
	cmos_wr(REG_B, 0x04);
	ck_assert_uint_eq(cmos_rd(HOUR), 0x8b);
}
END_TEST

START_TEST(test_set_bit_sets_clock)
{
	ck_assert_uint_eq(cmos_rd(SEC), 0x30);
	fake_secs += 5;
	cmos_wr(REG_B, 0x02 | 0x10); /* UIE */
	cmos_wr(REG_B, 0x82 | 0x10); /* SET: freezes, clears UIE */
	ck_assert_uint_eq(cmos_rd(REG_B), 0x82);
	fake_secs += 100;
	ck_assert_uint_eq(cmos_rd(SEC), 0x35); /* frozen when SET was written */
	cmos_wr(YEAR, 0x30);
	cmos_wr(MON, 0x01);
	cmos_wr(DOM, 0x02);
	cmos_wr(HOUR, 0x03);
	cmos_wr(MIN, 0x04);
	cmos_wr(SEC, 0x05);
	fake_secs += 50;
	ck_assert_uint_eq(cmos_rd(SEC), 0x05);
	cmos_wr(REG_B, 0x02);
	expect_time(0x05, 0x04, 0x03, 4, 0x02, 0x01, 0x30, 0x20); /* 2030-01-02 is a Wednesday */
	fake_secs += 10;
	ck_assert_uint_eq(cmos_rd(SEC), 0x15);

	/* Set in binary 12-hour format: 11 PM. */
	cmos_wr(REG_B, 0x84);
	cmos_wr(HOUR, 0x8b);
	cmos_wr(MIN, 0);
	cmos_wr(SEC, 0);
	cmos_wr(REG_B, 0x06);
	ck_assert_uint_eq(cmos_rd(HOUR), 23);
	/* 12 AM is hour 0, 12 PM hour 12. */
	cmos_wr(REG_B, 0x84);
	cmos_wr(HOUR, 12);
	cmos_wr(REG_B, 0x06);
	ck_assert_uint_eq(cmos_rd(HOUR), 0);
	cmos_wr(REG_B, 0x84);
	cmos_wr(HOUR, 0x8c);
	cmos_wr(REG_B, 0x06);
	ck_assert_uint_eq(cmos_rd(HOUR), 12);
	cmos_wr(REG_B, 0x84);
	cmos_wr(HOUR, 0x8b);
	cmos_wr(REG_B, 0x06);

	/* An impossible date leaves the clock alone. */
	cmos_wr(REG_B, 0x82);
	cmos_wr(MON, 0x13);
	cmos_wr(REG_B, 0x02);
	ck_assert_uint_eq(cmos_rd(HOUR), 0x23);
	ck_assert_uint_eq(cmos_rd(MON), 0x01);
	cmos_wr(REG_B, 0x82);
	cmos_wr(SEC, 0x5a); /* not BCD */
	cmos_wr(REG_B, 0x02);
	ck_assert_uint_eq(cmos_rd(MON), 0x01);
	ck_assert_uint_eq(cmos_rd(SEC), 0x00);
}
END_TEST

START_TEST(test_write_running_clock)
{
	/* Without SET a field write moves the clock by that field. */
	cmos_wr(MIN, 0x50);
	ck_assert_uint_eq(cmos_rd(MIN), 0x50);
	ck_assert_uint_eq(cmos_rd(HOUR), 0x13);
	fake_secs += 60;
	ck_assert_uint_eq(cmos_rd(MIN), 0x51);
	cmos_wr(CENTURY, 0x19);
	ck_assert_uint_eq(cmos_rd(YEAR), 0x24);
	ck_assert_uint_eq(cmos_rd(CENTURY), 0x19);
	ck_assert_uint_eq(cmos_rd(DOW), 7); /* 1924-03-15 was a Saturday */
}
END_TEST

START_TEST(test_regs_a_c_d)
{
	for (int i = 0; i < 3000; i++) {
		fake_secs += i % 3 == 0;
		ck_assert_uint_eq(cmos_rd(REG_A) & 0x80, 0); /* UIP never set */
	}
	cmos_wr(REG_A, 0xff);
	ck_assert_uint_eq(cmos_rd(REG_A), 0x7f);
	cmos_wr(REG_D, 0x00);
	ck_assert_uint_eq(cmos_rd(REG_D), 0x80);
	cmos_rd(REG_C);
	ck_assert_uint_eq(cmos_rd(REG_C), 0x00);
	fake_secs++;
	cmos_wr(REG_C, 0xff);			 /* read-only */
	ck_assert_uint_eq(cmos_rd(REG_C), 0x10); /* UF, no IRQF: UIE clear */
	ck_assert_uint_eq(cmos_rd(REG_C), 0x00);
}
END_TEST

START_TEST(test_update_interrupt)
{
	cmos_rd(REG_C);
	cmos_wr(REG_B, 0x12);
	ck_assert_int_eq(irq.level, 0);
	fake_secs++;
	cmos_rd(REG_A); /* any access brings the flags up to date */
	ck_assert_int_eq(irq.level, 1);
	ck_assert_uint_eq(irq.gsi, 8);
	ck_assert_uint_eq(cmos_rd(REG_C), 0x90);
	ck_assert_int_eq(irq.level, 0);
	ck_assert_uint_eq(cmos_rd(REG_C), 0x00);
	/* No time passed, no new update. */
	ck_assert_int_eq(irq.level, 0);
	/* A flag already set raises IRQF when its enable is turned on. */
	cmos_wr(REG_B, 0x02);
	fake_secs++;
	cmos_rd(REG_A);
	ck_assert_int_eq(irq.level, 0);
	cmos_wr(REG_B, 0x12);
	ck_assert_int_eq(irq.level, 1);
	/* Reset clears enables and flags. */
	rtc->ops->reset(rtc);
	ck_assert_int_eq(irq.level, 0);
	ck_assert_uint_eq(cmos_rd(REG_B), 0x02);
}
END_TEST

START_TEST(test_alarm)
{
	cmos_wr(SEC_ALARM, 0x35);
	cmos_wr(MIN_ALARM, 0x45);
	cmos_wr(HOUR_ALARM, 0x13);
	cmos_wr(REG_B, 0x22); /* AIE */
	cmos_rd(REG_C);
	fake_secs += 4;
	cmos_rd(REG_A);
	ck_assert_int_eq(irq.level, 0);
	ck_assert_uint_eq(cmos_rd(REG_C), 0x10); /* updates only */
	fake_secs += 1;				 /* 13:45:35 */
	cmos_rd(REG_A);
	ck_assert_int_eq(irq.level, 1);
	ck_assert_uint_eq(cmos_rd(REG_C), 0xb0);
	ck_assert_int_eq(irq.level, 0);

	/* Passing the alarm time between two accesses still counts. */
	fake_secs = utc(2024, 3, 16, 13, 40, 0);
	cmos_rd(REG_C);
	fake_secs = utc(2024, 3, 16, 13, 50, 0);
	ck_assert_uint_eq(cmos_rd(REG_C) & 0x20, 0x20);

	/* Don't-care seconds: every second of 13:46 matches... */
	cmos_wr(SEC_ALARM, 0xc0);
	cmos_wr(MIN_ALARM, 0x46);
	fake_secs = utc(2024, 3, 16, 13, 45, 58);
	cmos_rd(REG_C);
	fake_secs++;
	ck_assert_uint_eq(cmos_rd(REG_C) & 0x20, 0);
	fake_secs++;
	ck_assert_uint_eq(cmos_rd(REG_C) & 0x20, 0x20);
	/* ...and an alarm that can never match (not BCD) never fires. */
	cmos_wr(SEC_ALARM, 0x5a);
	cmos_rd(REG_C);
	fake_secs += 2 * 86400;
	ck_assert_uint_eq(cmos_rd(REG_C), 0x10);
}
END_TEST

START_TEST(test_index_nmi_bit_and_nvram)
{
	dev_wr(rtc, 0, 0, 1, 0x80 | REG_D);
	ck_assert_uint_eq(dev_rd(rtc, 0, 1, 1), 0x80);
	cmos_wr(0x40, 0xab);
	cmos_wr(0x7f, 0xcd);
	ck_assert_uint_eq(cmos_rd(0x40), 0xab);
	ck_assert_uint_eq(cmos_rd(0x7f), 0xcd);
	ck_assert_uint_eq(cmos_rd(0xff), 0xcd); /* index wraps at 128 */
	rtc->ops->reset(rtc);
	ck_assert_uint_eq(cmos_rd(0x40), 0xab);	       /* battery-backed */
	ck_assert_uint_eq(dev_rd(rtc, 0, 0, 1), 0xff); /* index port is write-only */
	/* A 2-byte write sets index and data together. */
	dev_wr(rtc, 0, 0, 2, 0x1141);
	ck_assert_uint_eq(cmos_rd(0x41), 0x11);
}
END_TEST

static uint16_t cmos16(unsigned idx)
{
	return (uint16_t)(cmos_rd(idx) | cmos_rd(idx + 1) << 8);
}

START_TEST(test_memory_bytes)
{
	/* 512 MiB, all below 4 GiB. */
	ck_assert_uint_eq(cmos16(0x15), 640);
	ck_assert_uint_eq(cmos16(0x17), 0xffff); /* 523264 KiB, capped */
	ck_assert_uint_eq(cmos16(0x30), 0xffff);
	ck_assert_uint_eq(cmos16(0x34), (512 - 16) * 16);
	ck_assert_uint_eq(cmos_rd(0x5b) | cmos_rd(0x5c) << 8 | cmos_rd(0x5d) << 16, 0);
	ck_assert_uint_eq(cmos_rd(0x14), 0x02);
	rtc->ops->destroy(rtc);

	/* 6 GiB: 3 GiB below the PCI hole, 3 GiB above 4 GiB. */
	rtc = new_rtc(GiB(3), GiB(3));
	ck_assert_uint_eq(cmos16(0x15), 640);
	ck_assert_uint_eq(cmos16(0x17), 0xffff);
	ck_assert_uint_eq(cmos16(0x34), (3072 - 16) * 16);
	ck_assert_uint_eq(cmos_rd(0x5b), 0x00);
	ck_assert_uint_eq(cmos_rd(0x5c), 0xc0);
	ck_assert_uint_eq(cmos_rd(0x5d), 0x00);
	/* A guest that scribbles them gets them back at reset. */
	cmos_wr(0x34, 0);
	rtc->ops->reset(rtc);
	ck_assert_uint_eq(cmos16(0x34), (3072 - 16) * 16);
	rtc->ops->destroy(rtc);

	/* Small enough not to cap; and an absurd high size caps at 24 bits. */
	rtc = new_rtc(MiB(32), GiB(2048));
	ck_assert_uint_eq(cmos16(0x17), 31 * 1024);
	ck_assert_uint_eq(cmos16(0x30), 31 * 1024);
	ck_assert_uint_eq(cmos16(0x34), 16 * 16);
	ck_assert_uint_eq(cmos_rd(0x5b) | cmos_rd(0x5c) << 8 | cmos_rd(0x5d) << 16, 0xffffff);
	rtc->ops->destroy(rtc);

	/* More below 4 GiB than can exist still caps every field. */
	rtc = new_rtc(GiB(64), 0);
	ck_assert_uint_eq(cmos16(0x17), 0xffff);
	ck_assert_uint_eq(cmos16(0x34), 0xffff);
	rtc->ops->destroy(rtc);

	rtc = new_rtc(KiB(512), 0);
	ck_assert_uint_eq(cmos16(0x15), 512);
	ck_assert_uint_eq(cmos16(0x17), 0);
	ck_assert_uint_eq(cmos16(0x34), 0);
}
END_TEST

static unsigned bcd_ok(uint8_t v)
{
	return (v & 0x0f) <= 9 && (v >> 4) <= 9;
}

/* The bytes SeaBIOS reads besides memory: boot order (src/boot.c boot_init:
 * 0x3d low nibble first, high nibble second, 0x38 high nibble third; 0x38
 * bit 0 turns the floppy signature check off), equipment, CPUs - 1 at 0x5f. */
START_TEST(test_board_bytes)
{
	struct rtc_cmos_board b = {
		.mem_below_4g = GiB(2),
		.mem_above_4g = GiB(1),
		.equipment = RTC_EQUIP_FPU | RTC_EQUIP_PS2_MOUSE,
		.boot = { RTC_BOOT_CDROM, RTC_BOOT_DISK, RTC_BOOT_NET },
		.ncpus = 4,
	};
	struct rtc_cmos_board bad;

	/* Defaults: no boot devices, floppy check off, one CPU. */
	ck_assert_uint_eq(cmos_rd(0x3d), 0x00);
	ck_assert_uint_eq(cmos_rd(0x38), 0x01);
	ck_assert_uint_eq(cmos_rd(0x5f), 0);

	ck_assert_int_eq(rtc_set_cmos_board(rtc, &b), 0);
	ck_assert_uint_eq(cmos_rd(0x3d), 0x23);
	ck_assert_uint_eq(cmos_rd(0x38), 0x41);
	ck_assert_uint_eq(cmos_rd(0x14), 0x06);
	ck_assert_uint_eq(cmos_rd(0x5f), 3);
	ck_assert_uint_eq(cmos16(0x34), (2048 - 16) * 16);
	ck_assert_uint_eq(cmos_rd(0x5b) | cmos_rd(0x5c) << 8 | cmos_rd(0x5d) << 16, 0x4000);
	/* SeaBIOS's RamSize from 0x34/0x35: (v << 16) + 16 MiB. */
	ck_assert_uint_eq(((uint64_t)cmos16(0x34) << 16) + MiB(16), GiB(2));

	/* Kept across reset, like the memory bytes. */
	cmos_wr(0x3d, 0x11);
	cmos_wr(0x5f, 0x7f);
	rtc->ops->reset(rtc);
	ck_assert_uint_eq(cmos_rd(0x3d), 0x23);
	ck_assert_uint_eq(cmos_rd(0x5f), 3);

	b.floppy_sig_check = true;
	b.boot[2] = RTC_BOOT_FLOPPY;
	b.ncpus = 256;
	ck_assert_int_eq(rtc_set_cmos_board(rtc, &b), 0);
	ck_assert_uint_eq(cmos_rd(0x38), 0x10);
	ck_assert_uint_eq(cmos_rd(0x5f), 255);

	/* Out of range: refused, nothing changed. */
	bad = b;
	bad.ncpus = 0;
	ck_assert_int_eq(rtc_set_cmos_board(rtc, &bad), -EINVAL);
	bad = b;
	bad.ncpus = 257;
	ck_assert_int_eq(rtc_set_cmos_board(rtc, &bad), -EINVAL);
	bad = b;
	bad.boot[1] = (enum rtc_boot_dev)5;
	ck_assert_int_eq(rtc_set_cmos_board(rtc, &bad), -EINVAL);
	ck_assert_uint_eq(cmos_rd(0x38), 0x10);
	ck_assert_uint_eq(cmos_rd(0x5f), 255);
}
END_TEST

START_TEST(test_fuzz)
{
	for (int i = 0; i < 100000; i++) {
		uint64_t r = fuzz_next();
		unsigned size = fuzz_size();

		switch (r % 6) {
		case 0:
		case 1: dev_wr(rtc, 0, (r >> 8) % 3, size, fuzz_next()); break;
		case 2:
		case 3: dev_rd(rtc, 0, (r >> 8) % 3, size); break;
		case 4:
			fake_secs += (time_t)((r >> 8) % 5);
			if ((r >> 20) % 1000 == 0)
				fake_secs += (time_t)((r >> 30) % (400LL * 86400));
			break;
		case 5:
			if ((r >> 20) % 1000 == 0)
				rtc->ops->reset(rtc);
			break;
		}
		ck_assert_int_eq(irq.bad, 0);
		if (i % 5)
			continue;
		ck_assert_uint_eq(cmos_rd(REG_D), 0x80);
		ck_assert_uint_eq(cmos_rd(REG_A) & 0x80, 0);
		uint8_t b = cmos_rd(REG_B);
		if (!(b & 0x80)) {
			/* A running clock always shows a valid time. */
			uint8_t s = cmos_rd(SEC), m = cmos_rd(MIN), mo = cmos_rd(MON);
			if (!(b & 0x04)) {
				ck_assert(bcd_ok(s) && bcd_ok(m) && bcd_ok(mo));
				s = (uint8_t)((s >> 4) * 10 + (s & 15));
				m = (uint8_t)((m >> 4) * 10 + (m & 15));
				mo = (uint8_t)((mo >> 4) * 10 + (mo & 15));
			}
			ck_assert_uint_lt(s, 60);
			ck_assert_uint_lt(m, 60);
			ck_assert(mo >= 1 && mo <= 12);
		} else {
			ck_assert_uint_eq(b & 0x10, 0);
		}
		int level = irq.level;
		uint8_t c = cmos_rd(REG_C);
		ck_assert_int_eq(level, (c & 0x80) != 0);
		ck_assert_uint_eq(c & 0x0f, 0);
		ck_assert_int_eq(irq.level, 0);
	}
}
END_TEST

static void rtc_busy_state(void)
{
	cmos_wr(REG_B, 0x82);
	cmos_wr(YEAR, 0x99);
	cmos_wr(REG_B, 0x36); /* binary, AIE|UIE */
	cmos_wr(SEC_ALARM, 0xc0);
	cmos_wr(0x50, 0x77);
	fake_secs += 3;
	dev_wr(rtc, 0, 0, 1, 0x50); /* leave the index somewhere */
}

START_TEST(test_save_load_roundtrip)
{
	struct state_buf good;
	struct device *a = rtc, *b = new_rtc(0, 0);

	rtc_busy_state();
	ck_assert_int_eq(irq.level, 1);
	roundtrip(a, b, &good);
	ck_assert_int_eq(irq.level, 1);
	static const unsigned seq[] = { SEC,	 MIN,	HOUR,  DOM,   MON,	YEAR,
					CENTURY, REG_A, REG_B, REG_C, REG_C,	0x50,
					0x15,	 0x16,	0x34,  0x35,  SEC_ALARM };
	fake_secs += 7;
	for (unsigned i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		rtc = a;
		uint8_t va = cmos_rd(seq[i]);
		rtc = b;
		uint8_t vb = cmos_rd(seq[i]);
		ck_assert_msg(va == vb, "reg %#x: %#x vs %#x", seq[i], va, vb);
	}
	/* The index register travels too. */
	rtc = a;
	dev_wr(a, 0, 0, 1, 0x50);
	state_free(&good);
	roundtrip(a, b, &good);
	ck_assert_uint_eq(dev_rd(b, 0, 1, 1), 0x77);
	rtc = a;
	b->ops->destroy(b);
	state_free(&good);
}
END_TEST

START_TEST(test_load_rejects_corruption)
{
	struct state_buf good;
	struct device *b = new_rtc(0, 0);
	enum { O_CMOS = STATE_HDR, O_INDEX = STATE_HDR + 128, O_OFFSET, O_TICK = O_OFFSET + 8 };

	rtc_busy_state();
	roundtrip(rtc, b, &good);
	check_truncations(b, &good);
	check_patched_fails(b, &good, 0, 0x00);
	check_patched_fails(b, &good, O_INDEX, 0x80); /* index < 128 */
	check_patched_loads(b, &good, O_INDEX, 0x7f);
	check_patched_fails(b, &good, O_CMOS + REG_A, 0xa6); /* UIP is never set */
	check_patched_fails(b, &good, O_CMOS + REG_C, 0x01);
	check_patched_fails(b, &good, O_CMOS + REG_C, 0x80); /* IRQF is derived */
	check_patched_fails(b, &good, O_CMOS + REG_D, 0x00);
	check_patched_fails(b, &good, O_CMOS + REG_B, 0x92); /* SET with UIE */
	check_patched_fails(b, &good, O_OFFSET + 7, 0x40);   /* offset beyond any year */
	check_patched_fails(b, &good, O_TICK + 7, 0x40);
	check_patched_loads(b, &good, O_CMOS + 0x60, 0x12); /* NVRAM is the guest's */
	b->ops->destroy(b);
	state_free(&good);
}
END_TEST

SUITE_MAIN("cmos_rtc", "core", setup, teardown, 30, test_defaults_bcd_24h, test_binary_and_12h,
	   test_set_bit_sets_clock, test_write_running_clock, test_regs_a_c_d,
	   test_update_interrupt, test_alarm, test_index_nmi_bit_and_nvram, test_memory_bytes,
	   test_board_bytes, test_fuzz, test_save_load_roundtrip, test_load_rejects_corruption)
