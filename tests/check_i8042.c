/* i8042 keyboard controller: status, command byte, self tests, the reset
 * line, keyboard replies, IRQ 1, state. */
#include <check.h>
#include <stdlib.h>

#include "kestrel/devices.h"
#include "fake_board.h"

enum { DATA = 0, CMD = 1 };
#define ST_OBF 0x01
#define ST_SYS 0x04
#define ST_A2  0x08
#define ST_AUX 0x20

static struct fake_irq irq;
static struct fake_ctl ctl;
static struct device *k;

static uint8_t status(void)
{
	return (uint8_t)dev_rd(k, CMD, 0, 1);
}

static uint8_t data(void)
{
	return (uint8_t)dev_rd(k, DATA, 0, 1);
}

static void cmd(uint8_t c)
{
	dev_wr(k, CMD, 0, 1, c);
}

static void put(uint8_t v)
{
	dev_wr(k, DATA, 0, 1, v);
}

/* Read every queued byte; each must be announced by OBF. */
static int drain(uint8_t *out, int max)
{
	int n = 0;

	while (status() & ST_OBF) {
		ck_assert_int_lt(n, max);
		out[n++] = data();
	}
	return n;
}

static void expect_bytes(const uint8_t *want, int n)
{
	uint8_t got[32];

	ck_assert_int_eq(drain(got, 32), n);
	ck_assert_mem_eq(got, want, (size_t)n);
}

static struct device *new_kbc(void)
{
	struct irq_line l = fake_irq_line(&irq, 1);
	struct vm_ctl c = fake_vm_ctl(&ctl);

	return i8042_create(&l, &c);
}

static void setup(void)
{
	k = new_kbc();
	ck_assert_ptr_nonnull(k);
}

static void teardown(void)
{
	k->ops->destroy(k);
}

START_TEST(test_status_and_self_test)
{
	ck_assert_uint_eq(status(), 0x14); /* keylock open, SYS */
	ck_assert_int_eq(irq.level, 0);
	cmd(0xaa);
	ck_assert_uint_eq(status() & (ST_OBF | ST_A2 | ST_AUX), ST_OBF | ST_A2);
	ck_assert_uint_eq(data(), 0x55);
	ck_assert_uint_eq(status() & ST_OBF, 0);
	cmd(0xab);
	ck_assert_uint_eq(data(), 0x00);
	cmd(0xa9);
	ck_assert_uint_eq(data(), 0x00);
	ck_assert_uint_eq(data(), 0x00); /* empty: the last byte again */
	put(0xf4);
	ck_assert_uint_eq(status() & ST_A2, 0);
	ck_assert_int_eq(ctl.stops, 0);
}
END_TEST

START_TEST(test_command_byte)
{
	cmd(0x20);
	ck_assert_uint_eq(data(), 0x45);
	cmd(0x60);
	put(0x03);
	cmd(0x20);
	ck_assert_uint_eq(data(), 0x03);
	ck_assert_uint_eq(status() & ST_SYS, 0); /* SYS follows CTR bit 2 */
	cmd(0xaa);
	data();
	ck_assert_uint_eq(status() & ST_SYS, ST_SYS);
	cmd(0xad);
	cmd(0xa7);
	cmd(0x20);
	ck_assert_uint_eq(data(), 0x37);
	cmd(0xae);
	cmd(0xa8);
	cmd(0x20);
	ck_assert_uint_eq(data(), 0x07);
	/* A command interrupting a pending parameter cancels it. */
	cmd(0x60);
	cmd(0x20);
	ck_assert_uint_eq(data(), 0x07);
	put(0xf2); /* goes to the keyboard, not the CTR */
	static const uint8_t id[] = { 0xfa, 0xab, 0x83 };
	expect_bytes(id, 3);
}
END_TEST

START_TEST(test_irq1)
{
	cmd(0x20); /* CTR has KBDINT */
	ck_assert_int_eq(irq.level, 1);
	ck_assert_uint_eq(irq.gsi, 1);
	data();
	ck_assert_int_eq(irq.level, 0);
	put(0xff); /* two bytes: the line drops and rises again between them */
	ck_assert_int_eq(irq.level, 1);
	int rises = irq.rises;
	ck_assert_uint_eq(data(), 0xfa);
	ck_assert_int_eq(irq.level, 1);
	ck_assert_uint_eq(data(), 0xaa);
	ck_assert_int_eq(irq.level, 0);
	ck_assert_int_eq(irq.rises, rises + 1); /* a fresh edge for the second byte */
	cmd(0x60);
	put(0x44); /* KBDINT off */
	put(0xf4);
	ck_assert_uint_eq(status() & ST_OBF, ST_OBF);
	ck_assert_int_eq(irq.level, 0);
	cmd(0x60);
	put(0x45); /* enabling with a byte waiting raises the line */
	ck_assert_int_eq(irq.level, 1);
	ck_assert_uint_eq(data(), 0xfa);
	ck_assert_int_eq(irq.level, 0);
	/* D2: as if from the keyboard. */
	cmd(0xd2);
	put(0x1c);
	ck_assert_int_eq(irq.level, 1);
	ck_assert_uint_eq(status() & ST_AUX, 0);
	ck_assert_uint_eq(data(), 0x1c);
	ck_assert_int_eq(irq.bad, 0);
}
END_TEST

START_TEST(test_reset_fe)
{
	cmd(0xff); /* pulse nothing */
	cmd(0xf1); /* line 0 stays high */
	ck_assert_int_eq(ctl.stops, 0);
	cmd(0xfe);
	ck_assert_int_eq(ctl.stops, 1);
	ck_assert_int_eq(ctl.why, VM_STOP_RESET);
	cmd(0xf0);
	ck_assert_int_eq(ctl.stops, 2);
}
END_TEST

START_TEST(test_reset_d1_and_output_port)
{
	cmd(0xd0);
	ck_assert_uint_eq(data() & 0x03, 0x03);
	cmd(0xd1);
	put(0xdd); /* A20 off, reset high */
	ck_assert_int_eq(ctl.stops, 0);
	cmd(0xd0);
	ck_assert_uint_eq(data() & 0x03, 0x01);
	cmd(0xd1);
	put(0xdf);
	ck_assert_int_eq(ctl.stops, 0);
	cmd(0xd1);
	put(0xde); /* bit 0 low: reset */
	ck_assert_int_eq(ctl.stops, 1);
	ck_assert_int_eq(ctl.why, VM_STOP_RESET);
	/* A data write without D1 before it is for the keyboard: no reset. */
	put(0x00);
	ck_assert_int_eq(ctl.stops, 1);
}
END_TEST

START_TEST(test_keyboard_replies)
{
	static const uint8_t reset[] = { 0xfa, 0xaa };
	static const uint8_t ack[] = { 0xfa };
	static const uint8_t ack2[] = { 0xfa, 0xfa };
	static const uint8_t resend[] = { 0xfe };
	static const uint8_t echo[] = { 0xee };
	static const uint8_t scanset[] = { 0xfa, 0xfa, 0x02 };
	static const uint8_t scanset3[] = { 0xfa, 0xfa, 0x03 };

	put(0xff);
	expect_bytes(reset, 2);
	put(0xed);
	expect_bytes(ack, 1);
	put(0x07); /* the LED argument, not a command */
	expect_bytes(ack, 1);
	put(0xf3);
	put(0x00);
	expect_bytes(ack2, 2);
	put(0xf4);
	expect_bytes(ack, 1);
	put(0xf5);
	expect_bytes(ack, 1);
	put(0xf6);
	expect_bytes(ack, 1);
	put(0xee);
	expect_bytes(echo, 1);
	put(0x12);
	expect_bytes(resend, 1);
	put(0xf0);
	put(0x00);
	expect_bytes(scanset, 3);
	put(0xf0);
	put(0x03);
	expect_bytes(ack2, 2);
	put(0xf0);
	put(0x00);
	expect_bytes(scanset3, 3);
}
END_TEST

START_TEST(test_aux)
{
	cmd(0xd3);
	put(0x5a);
	ck_assert_uint_eq(status() & (ST_OBF | ST_AUX), ST_OBF | ST_AUX);
	ck_assert_int_eq(irq.level, 0); /* aux data never drives IRQ 1 */
	ck_assert_uint_eq(data(), 0x5a);
	cmd(0xd4);
	put(0xf2);
	ck_assert_uint_eq(status() & (ST_OBF | ST_AUX), ST_OBF | ST_AUX);
	ck_assert_uint_eq(data(), 0xfe);
	ck_assert_uint_eq(status() & ST_OBF, 0);
}
END_TEST

START_TEST(test_wide_and_offset_accesses)
{
	cmd(0xaa);
	ck_assert_uint_eq(dev_rd(k, CMD, 0, 2) & 0xff01, 0xff01);
	ck_assert_uint_eq(dev_rd(k, DATA, 0, 4), 0xffffff55);
	ck_assert_uint_eq(dev_rd(k, DATA, 1, 1), 0xff);
	dev_wr(k, CMD, 1, 1, 0xfe); /* not our port */
	ck_assert_int_eq(ctl.stops, 0);
}
END_TEST

START_TEST(test_fuzz)
{
	for (int i = 0; i < 100000; i++) {
		uint64_t r = fuzz_next();
		int region = (int)((r >> 8) & 1);
		uint64_t off = (r >> 12) % 8 == 0 ? 1 : 0;

		if (r % 2)
			dev_wr(k, region, off, fuzz_size(), fuzz_next());
		else
			dev_rd(k, region, off, fuzz_size());
		if ((r >> 20) % 2000 == 0)
			k->ops->reset(k);
		ck_assert_int_eq(irq.bad, 0);
		/* IRQ 1 is up exactly when a keyboard byte waits and CTR allows it. */
		uint8_t st = status();
		if (!(st & ST_OBF) || (st & ST_AUX))
			ck_assert_int_eq(irq.level, 0);
		ck_assert_uint_eq(st & 0x12, 0x10); /* IBF never stuck, keylock open */
		if (ctl.stops)
			ck_assert_int_eq(ctl.why, VM_STOP_RESET);
	}
	ck_assert_int_gt(ctl.stops, 0);
}
END_TEST

static void kbc_busy_state(void)
{
	cmd(0x60);
	put(0x47);
	put(0xf2);          /* three bytes queued, one in the buffer */
	cmd(0xd1);
	put(0xcd);
	cmd(0xd3);          /* pending aux-buffer write */
}

START_TEST(test_save_load_roundtrip)
{
	struct state_buf good;
	struct device *a = k, *b = new_kbc();

	kbc_busy_state();
	roundtrip(a, b, &good);
	ck_assert_int_eq(irq.level, 1);
	for (int i = 0; i < 6; i++) {
		k = a;
		uint8_t sa = status(), va = data();
		k = b;
		uint8_t sb = status(), vb = data();
		ck_assert_uint_eq(sa, sb);
		ck_assert_uint_eq(va, vb);
	}
	/* The pending D3 survived: the next data byte is aux data on both. */
	k = b;
	put(0x99);
	ck_assert_uint_eq(status() & ST_AUX, ST_AUX);
	cmd(0xd0);
	ck_assert_uint_eq(data() & 0x0f, 0x0d);
	k = a;
	b->ops->destroy(b);
	state_free(&good);
}
END_TEST

START_TEST(test_load_rejects_corruption)
{
	struct state_buf good;
	struct device *b = new_kbc();
	enum { O_CTR = STATE_HDR, O_OUTP, O_A2, O_OBUF, O_OBF, O_OBFAUX, O_PCMD, O_KPEND,
	       O_SCANSET, O_COUNT, O_Q };

	kbc_busy_state();
	roundtrip(k, b, &good);
	check_truncations(b, &good);
	check_patched_fails(b, &good, 0, 0x01);
	check_patched_fails(b, &good, O_A2, 0x01);
	check_patched_fails(b, &good, O_OBF, 2);
	check_patched_fails(b, &good, O_OBFAUX, 2);
	struct state_buf s = state_copy(&good, good.len);
	s.data[O_OBF] = 0;
	s.data[O_OBFAUX] = 1;                          /* aux flag without a byte */
	ck_assert_int_eq(b->ops->load(b, &s), -EINVAL);
	state_free(&s);
	check_patched_fails(b, &good, O_PCMD, 0x20);   /* not a command that takes data */
	check_patched_fails(b, &good, O_KPEND, 0xff);
	check_patched_fails(b, &good, O_SCANSET, 0);
	check_patched_fails(b, &good, O_COUNT, 17);
	check_patched_fails(b, &good, O_Q + 1, 2);     /* aux flag of a queued byte */
	check_patched_loads(b, &good, O_COUNT, 16);
	check_patched_loads(b, &good, O_KPEND, 0xed);
	b->ops->destroy(b);
	state_free(&good);
}
END_TEST

static Suite *i8042_suite(void)
{
	Suite *s = suite_create("i8042");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_status_and_self_test);
	tcase_add_test(tc, test_command_byte);
	tcase_add_test(tc, test_irq1);
	tcase_add_test(tc, test_reset_fe);
	tcase_add_test(tc, test_reset_d1_and_output_port);
	tcase_add_test(tc, test_keyboard_replies);
	tcase_add_test(tc, test_aux);
	tcase_add_test(tc, test_wide_and_offset_accesses);
	tcase_add_test(tc, test_fuzz);
	tcase_add_test(tc, test_save_load_roundtrip);
	tcase_add_test(tc, test_load_rejects_corruption);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(i8042_suite());
}
