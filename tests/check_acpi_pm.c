/* ACPI PM1a event/control, PM timer and the 0xCF9 reset register. */
#include <check.h>
#include <stdlib.h>

#include "kestrel/board.h"
#include "kestrel/devices.h"
#include "fake_board.h"

enum { EVT = 0, RST = 1 };
#define STS    0
#define EN     2
#define CNT    4
#define TMR    8
#define PWRBTN 0x0100
#define SLP_EN 0x2000
#define TMR_HZ 3579545ULL

static struct fake_irq sci;
static struct fake_ctl ctl;
static struct device *pm;

static struct device *new_pm(void)
{
	struct irq_line l = fake_irq_line(&sci, 9);
	struct vm_ctl c = fake_vm_ctl(&ctl);

	return acpi_pm_create(&l, &c, fake_now_ns);
}

static void setup(void)
{
	fake_ns = 123456789ULL; /* not zero: the counter must start from 0 anyway */
	pm = new_pm();
	ck_assert_ptr_nonnull(pm);
}

static void teardown(void)
{
	pm->ops->destroy(pm);
}

static uint64_t rd(uint64_t off, unsigned size)
{
	return dev_rd(pm, EVT, off, size);
}

static void wr(uint64_t off, unsigned size, uint64_t v)
{
	dev_wr(pm, EVT, off, size, v);
}

START_TEST(test_s5_poweroff)
{
	ck_assert_uint_eq(rd(CNT, 2), 0x0001); /* SCI_EN always set */
	wr(CNT, 2, 5 << 10);		       /* SLP_TYP alone does nothing */
	ck_assert_int_eq(ctl.stops, 0);
	ck_assert_uint_eq(rd(CNT, 2), (5 << 10) | 1);
	wr(CNT, 2, (5 << 10) | SLP_EN); /* S3-ish: unsupported, ignored */
	ck_assert_int_eq(ctl.stops, 0);
	ck_assert_uint_eq(rd(CNT, 2) & SLP_EN, 0); /* write-only */
	wr(CNT, 2, (BOARD_ACPI_S5_TYP << 10) | SLP_EN);
	ck_assert_int_eq(ctl.stops, 1);
	ck_assert_int_eq(ctl.why, VM_STOP_POWEROFF);
	/* SLP_EN in the high byte alone, with TYP there too. */
	wr(CNT + 1, 1, (BOARD_ACPI_S5_TYP << 2) | 0x20);
	ck_assert_int_eq(ctl.stops, 2);
}
END_TEST

START_TEST(test_power_button_sci)
{
	acpi_pm_power_button(pm);
	ck_assert_uint_eq(rd(STS, 2) & PWRBTN, PWRBTN);
	ck_assert_int_eq(sci.level, 0); /* not enabled */
	wr(EN, 2, PWRBTN);
	ck_assert_int_eq(sci.level, 1);
	ck_assert_uint_eq(sci.gsi, 9);
	wr(STS, 2, 0x0001); /* clearing another bit leaves it */
	ck_assert_int_eq(sci.level, 1);
	wr(STS, 2, PWRBTN); /* write 1 to clear */
	ck_assert_int_eq(sci.level, 0);
	ck_assert_uint_eq(rd(STS, 2) & PWRBTN, 0);
	acpi_pm_power_button(pm);
	ck_assert_int_eq(sci.level, 1);
	wr(EN, 2, 0);
	ck_assert_int_eq(sci.level, 0);
	wr(EN, 2, 0xffff);
	ck_assert_uint_eq(rd(EN, 2), 0x0721); /* only defined enables stick */
	ck_assert_int_eq(sci.level, 1);
	pm->ops->reset(pm);
	ck_assert_int_eq(sci.level, 0);
	ck_assert_uint_eq(rd(STS, 4), 0);
}
END_TEST

START_TEST(test_timer)
{
	ck_assert_uint_eq(rd(TMR, 4), 0);
	fake_ns += 1000000000ULL;
	ck_assert_uint_eq(rd(TMR, 4), TMR_HZ);
	fake_ns += 1000ULL; /* 1 us = 3.58 ticks */
	ck_assert_uint_eq(rd(TMR, 4), TMR_HZ + 3);
	wr(TMR, 4, 0); /* read-only */
	ck_assert_uint_eq(rd(TMR, 4), TMR_HZ + 3);
	/* 24-bit wrap: 5 s is 17897725 ticks. */
	fake_ns = 123456789ULL + 5000000000ULL;
	ck_assert_uint_eq(rd(TMR, 4), 17897725ULL & 0xffffff);
	ck_assert_uint_lt(rd(TMR, 4), 1 << 24);
	/* Hours later the counter still wraps in 24 bits. */
	fake_ns += 3600ULL * 1000000000ULL;
	ck_assert_uint_eq(rd(TMR, 4), ((5ULL + 3600) * TMR_HZ) & 0xffffff);
	/* Byte lanes of the counter. */
	uint32_t t = (uint32_t)rd(TMR, 4);
	ck_assert_uint_eq(rd(TMR + 1, 1), (t >> 8) & 0xff);
	ck_assert_uint_eq(rd(TMR + 2, 2), t >> 16);
	ck_assert_uint_eq(rd(TMR + 3, 1), 0);
}
END_TEST

START_TEST(test_timer_status)
{
	wr(EN, 2, 0x0001);
	rd(STS, 2);
	fake_ns += 2000000000ULL; /* 7.2M ticks: bit 23 not yet toggled */
	ck_assert_uint_eq(rd(STS, 2) & 1, 0);
	ck_assert_int_eq(sci.level, 0);
	fake_ns += 400000000ULL; /* past 2^23 ticks */
	ck_assert_uint_eq(rd(STS, 2) & 1, 1);
	ck_assert_int_eq(sci.level, 1);
	wr(STS, 2, 1);
	ck_assert_int_eq(sci.level, 0);
	ck_assert_uint_eq(rd(STS, 2) & 1, 0);
}
END_TEST

START_TEST(test_reset_register)
{
	ck_assert_uint_eq(dev_rd(pm, RST, 0, 1), 0);
	dev_wr(pm, RST, 0, 1, 0x02);
	ck_assert_int_eq(ctl.stops, 0);
	ck_assert_uint_eq(dev_rd(pm, RST, 0, 1), 0x02);
	dev_wr(pm, RST, 0, 1, 0x06);
	ck_assert_int_eq(ctl.stops, 1);
	ck_assert_int_eq(ctl.why, VM_STOP_RESET);
	ck_assert_uint_eq(dev_rd(pm, RST, 0, 1), 0x02); /* bit 2 reads 0 */
	dev_wr(pm, RST, 0, 1, 0x04);			/* soft reset: a reset too */
	ck_assert_int_eq(ctl.stops, 2);
	ck_assert_uint_eq(dev_rd(pm, RST, 0, 2), 0xff00);
	dev_wr(pm, RST, 0, 2, 0x0400); /* bit 2 lands outside the register */
	ck_assert_int_eq(ctl.stops, 2);
}
END_TEST

START_TEST(test_byte_lanes)
{
	acpi_pm_power_button(pm);
	wr(EN, 2, 0x0120);
	ck_assert_uint_eq(rd(STS, 4), 0x01200100);
	ck_assert_uint_eq(rd(STS + 1, 2), 0x2001); /* STS high, EN low */
	ck_assert_uint_eq(rd(EN + 1, 1), 0x01);
	wr(EN + 1, 1, 0x04); /* EN high byte only */
	ck_assert_uint_eq(rd(EN, 2), 0x0420);
	wr(EN, 1, 0x01); /* EN low byte only */
	ck_assert_uint_eq(rd(EN, 2), 0x0401);
	wr(STS, 4, 0x01210100); /* clear PWRBTN and set EN at once */
	ck_assert_uint_eq(rd(STS, 4), 0x01210000);
	ck_assert_uint_eq(rd(CNT, 4), 0x00000001); /* CNT + the unused word */
	/* A qword at +4 sees CNT, the gap and the timer. */
	uint64_t q = rd(CNT, 8);
	ck_assert_uint_eq(q & 0xffffffff, 1);
	ck_assert_uint_eq(q >> 32, rd(TMR, 4));
	/* Past the 12-byte block reads float high. */
	ck_assert_uint_eq(rd(10, 4) >> 16, 0xffff);
	ck_assert_uint_eq(rd(TMR, 8) >> 32, 0xffffffff);
	ck_assert_uint_eq(rd(11, 1), 0);
}
END_TEST

START_TEST(test_fuzz)
{
	for (int i = 0; i < 100000; i++) {
		uint64_t r = fuzz_next();
		int region = (r >> 8) % 8 == 0 ? RST : EVT;
		uint64_t off = region == RST ? 0 : (r >> 12) % 12;

		switch (r % 5) {
		case 0:
		case 1: dev_wr(pm, region, off, fuzz_size(), fuzz_next()); break;
		case 2: dev_rd(pm, region, off, fuzz_size()); break;
		case 3: fake_ns += (r >> 16) % 2000000000ULL; break;
		case 4:
			if ((r >> 16) % 50 == 0)
				acpi_pm_power_button(pm);
			break;
		}
		ck_assert_int_eq(sci.bad, 0);
		uint32_t se = (uint32_t)rd(STS, 4);
		uint16_t sts = (uint16_t)se, en = (uint16_t)(se >> 16);
		ck_assert_int_eq(sci.level, (sts & en & 0x0101) != 0);
		ck_assert_uint_eq(sts & ~0x8731, 0);
		ck_assert_uint_eq(en & ~0x0721, 0);
		ck_assert_uint_eq(rd(CNT, 2) & 0xe001, 1);
		ck_assert_uint_lt(rd(TMR, 4), 1 << 24);
		ck_assert_uint_eq(dev_rd(pm, RST, 0, 1) & 4, 0);
	}
	ck_assert_int_gt(ctl.stops, 0);
}
END_TEST

static void pm_busy_state(void)
{
	fake_ns += 7777777777ULL;
	wr(EN, 2, 0x0101);
	acpi_pm_power_button(pm);
	wr(CNT, 2, 0x1402);
	dev_wr(pm, RST, 0, 1, 0x0a);
}

START_TEST(test_save_load_roundtrip)
{
	struct state_buf good;
	struct device *a = pm, *b;

	pm_busy_state();
	b = new_pm(); /* created later: its own counter starts at 0 */
	ck_assert_int_eq(sci.level, 0);
	roundtrip(a, b, &good);
	ck_assert_int_eq(sci.level, 1);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(dev_rd(a, EVT, 0, 4), dev_rd(b, EVT, 0, 4));
		ck_assert_uint_eq(dev_rd(a, EVT, 4, 8), dev_rd(b, EVT, 4, 8));
		ck_assert_uint_eq(dev_rd(a, RST, 0, 1), dev_rd(b, RST, 0, 1));
		fake_ns += 1000000000ULL; /* the loaded counter keeps counting */
	}
	b->ops->destroy(b);
	state_free(&good);
}
END_TEST

START_TEST(test_load_rejects_corruption)
{
	struct state_buf good;
	struct device *b = new_pm();
	enum { O_STS = STATE_HDR, O_EN = O_STS + 2, O_CNT = O_EN + 2, O_RST = O_CNT + 2, O_TMR };

	pm_busy_state();
	roundtrip(pm, b, &good);
	check_truncations(b, &good);
	check_patched_fails(b, &good, 1, 0x00);
	check_patched_fails(b, &good, O_STS, 0x02);
	check_patched_fails(b, &good, O_EN + 1, 0x80);
	check_patched_fails(b, &good, O_CNT + 1, 0x20); /* SLP_EN is never stored */
	check_patched_fails(b, &good, O_CNT, 0x01);	/* nor SCI_EN */
	check_patched_fails(b, &good, O_RST, 0x04);
	check_patched_fails(b, &good, O_TMR + 3, 0x01); /* beyond 24 bits */
	check_patched_loads(b, &good, O_TMR + 2, 0xff);
	b->ops->destroy(b);
	state_free(&good);
}
END_TEST

SUITE_MAIN("acpi_pm", "core", setup, teardown, 30, test_s5_poweroff, test_power_button_sci,
	   test_timer, test_timer_status, test_reset_register, test_byte_lanes, test_fuzz,
	   test_save_load_roundtrip, test_load_rejects_corruption)
