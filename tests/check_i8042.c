/* i8042 keyboard controller: status, command byte, self tests, the reset
 * line, keyboard replies, IRQ 1 and 12, the aux port, translation, the
 * output buffer's order, state. The keyboard and mouse themselves are
 * tests/check_ps2.c. */
#include <check.h>
#include <stdlib.h>

#include "kestrel/devices.h"
#include "fake_board.h"
#include "i8042_driver.h"

static struct fake_irq irq, irq12;
static struct fake_ctl ctl;

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
	struct irq_line l12 = fake_irq_line(&irq12, 12);
	struct vm_ctl c = fake_vm_ctl(&ctl);

	return i8042_create(&l, &l12, &c);
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
	static const uint8_t id_xlate[] = { 0xfa, 0xab, 0x41 };
	static const uint8_t scanset_xlate[] = { 0xfa, 0xfa, 0x41 };

	/* XLATE (the default command byte) translates every keyboard byte:
	 * the ID's 83 reads 41, the scan set's 2 reads 41 (Linux's atkbd
	 * knows the translated ID AB 41). */
	put(0xf2);
	expect_bytes(id_xlate, 3);
	put(0xf0);
	put(0x00);
	expect_bytes(scanset_xlate, 3);
	cmd(0x60);
	put(0x05); /* XLATE off: the keyboard's own bytes from here on */
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
	/* Set 3 is acknowledged but not taken: the keyboard still says 2. */
	put(0xf0);
	put(0x03);
	expect_bytes(ack2, 2);
	put(0xf0);
	put(0x00);
	expect_bytes(scanset, 3);
}
END_TEST

/* Linux's i8042_check_aux(): the loopback (D3), the AUXDIS bit through
 * A7/A8 and the command byte, and IRQ 12 for a looped byte once AUXINT is
 * set. */
START_TEST(test_aux)
{
	cmd(0xd3);
	put(0x5a);
	ck_assert_uint_eq(status() & (ST_OBF | ST_AUX), ST_OBF | ST_AUX);
	ck_assert_int_eq(irq.level, 0);	  /* aux data never drives IRQ 1 */
	ck_assert_int_eq(irq12.level, 0); /* AUXINT is off */
	ck_assert_uint_eq(data(), 0x5a);
	cmd(0xa7);
	cmd(0x20);
	ck_assert_uint_eq(data() & 0x20, 0x20);
	cmd(0xa8);
	cmd(0x20);
	ck_assert_uint_eq(data() & 0x20, 0x00);
	cmd(0x60);
	put(0x47); /* KBDINT | AUXINT | SYS | XLATE */
	cmd(0xd3);
	put(0xa5);
	ck_assert_int_eq(irq12.level, 1);
	ck_assert_uint_eq(irq12.gsi, 12);
	ck_assert_int_eq(irq.level, 0);
	ck_assert_uint_eq(data(), 0xa5);
	ck_assert_int_eq(irq12.level, 0);
	/* Aux bytes are never translated; the mouse answers through D4. */
	cmd(0xd4);
	put(0xf2);
	ck_assert_uint_eq(status() & (ST_OBF | ST_AUX), ST_OBF | ST_AUX);
	ck_assert_int_eq(irq12.level, 1);
	ck_assert_uint_eq(data(), 0xfa);
	ck_assert_int_eq(irq12.level, 1); /* a new edge for the ID */
	ck_assert_uint_eq(data(), 0x00);
	ck_assert_uint_eq(status() & ST_OBF, 0);
	ck_assert_int_eq(irq12.level, 0);
	ck_assert_int_eq(irq12.bad, 0);
}
END_TEST

/* Active multiplexing is probed by looping F0, 56, A4 through D3: a plain
 * 8042 echoes the third byte, and Linux then does not use mux mode. */
START_TEST(test_no_mux)
{
	static const uint8_t seq[] = { 0xf0, 0x56, 0xa4 };

	for (int i = 0; i < 3; i++) {
		cmd(0xd3);
		put(seq[i]);
		ck_assert_uint_eq(status() & (ST_OBF | ST_AUX), ST_OBF | ST_AUX);
		ck_assert_uint_eq(data(), seq[i]);
	}
}
END_TEST

/* A controller reply while a device byte waits unread comes first; the
 * device byte is not lost but follows it. Inhibiting a port (KBDDIS/AUXDIS)
 * holds the device's bytes back until the port is enabled again. */
START_TEST(test_output_order)
{
	uint8_t got[8];

	put(0xf2); /* the keyboard answers FA AB 41 (translated) */
	ck_assert_uint_eq(status() & ST_OBF, ST_OBF);
	cmd(0x20); /* reply: the command byte */
	ck_assert_uint_eq(data(), 0x45);
	ck_assert_uint_eq(data(), 0xfa);
	ck_assert_uint_eq(data(), 0xab);
	ck_assert_uint_eq(data(), 0x41);
	ck_assert_uint_eq(status() & ST_OBF, 0);

	cmd(0xad); /* keyboard clock off */
	cmd(0xa7); /* aux clock off */
	cmd(0xd4);
	put(0xf2); /* reenables the aux port (as QEMU's 8042) */
	ck_assert_uint_eq(data(), 0xfa);
	ck_assert_uint_eq(data(), 0x00);
	cmd(0xa7);
	cmd(0xd4);
	put(0xe9); /* status: FA + 3 bytes, held back... */
	cmd(0xa7);
	ck_assert_int_eq(drain(got, 8), 1); /* ...but for the one already in the buffer */
	ck_assert_uint_eq(got[0], 0xfa);
	cmd(0xa8);
	ck_assert_int_eq(drain(got, 8), 3);
	ck_assert_uint_eq(got[1], 0x02); /* resolution 4 counts/mm */
	ck_assert_uint_eq(got[2], 100);	 /* 100 samples/s */
	cmd(0x20);
	ck_assert_uint_eq(data() & 0x10, 0x10); /* the keyboard is still off */
	put(0xee);				/* writing to it turns it on again */
	ck_assert_uint_eq(data(), 0xee);
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
		ck_assert_int_eq(irq12.bad, 0);
		/* IRQ 1 is up only while a keyboard byte waits, IRQ 12 only
		 * while a mouse byte does. */
		uint8_t st = status();
		if (!(st & ST_OBF) || (st & ST_AUX))
			ck_assert_int_le(irq.level, 0);
		if (!(st & ST_OBF) || !(st & ST_AUX))
			ck_assert_int_le(irq12.level, 0);
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
	put(0xf2); /* three bytes queued, one in the buffer */
	cmd(0xd1);
	put(0xcd);
	cmd(0xd3); /* pending aux-buffer write */
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

/* The saved state is three sections: the controller (12 bytes), the
 * keyboard, the mouse. Every field is checked on load. */
START_TEST(test_load_rejects_corruption)
{
	struct state_buf good;
	struct device *b = new_kbc();
	enum {
		O_CTR = STATE_HDR,
		O_OUTP,
		O_A2,
		O_OBUF,
		O_OBF,
		O_OBFAUX,
		O_OBFCTL,
		O_HELD,
		O_HELDAUX,
		O_HELDBYTE,
		O_F0,
		O_PCMD,
		/* keyboard: reply queue (2 bytes queued), key queue (empty) */
		K = O_PCMD + 1 + STATE_HDR,
		K_RCOUNT = K,
		K_RDATA = K + 2,
		K_KCOUNT = K + 4,
		K_PEND = K + 6,
		K_SET,
		K_LEDS,
		K_TYPEMATIC,
		K_SCANNING,
		K_LAST,
		K_MODS,
		/* mouse: an empty queue */
		M = K_MODS + 1 + STATE_HDR,
		M_COUNT = M,
		M_PEND = M + 2,
		M_STATUS,
		M_RES,
		M_RATE,
		M_ID,
		M_KNOCK,
		M_WRAP = M_KNOCK + 3,
		M_DX,
		M_DY = M_DX + 4,
		M_DZ = M_DY + 4,
		M_BUTTONS = M_DZ + 4,
		M_REPORTED,
		M_LASTLEN,
		M_LAST,
		M_END = M_LAST + 4
	};

	kbc_busy_state();
	roundtrip(k, b, &good);
	ck_assert_uint_eq(good.len, M_END);
	check_truncations(b, &good);
	check_patched_fails(b, &good, 0, 0x01);
	check_patched_fails(b, &good, 4, 0x01); /* version 1: the old layout */
	check_patched_fails(b, &good, O_A2, 0x01);
	check_patched_fails(b, &good, O_OBF, 2);
	check_patched_fails(b, &good, O_OBFAUX, 2);
	check_patched_fails(b, &good, O_HELD, 1); /* a held byte with no reply ahead */
	check_patched_fails(b, &good, O_F0, 2);
	struct state_buf s = state_copy(&good, good.len);
	s.data[O_OBF] = 0;
	s.data[O_OBFAUX] = 1; /* aux flag without a byte */
	ck_assert_int_eq(b->ops->load(b, &s), -EINVAL);
	s.data[O_OBFAUX] = 0;
	s.data[O_OBFCTL] = 1; /* controller flag without a byte */
	ck_assert_int_eq(b->ops->load(b, &s), -EINVAL);
	state_free(&s);
	check_patched_fails(b, &good, O_PCMD, 0x20);	/* not a command that takes data */
	check_patched_fails(b, &good, K_RCOUNT + 1, 1); /* 258 bytes queued */
	check_patched_fails(b, &good, K_PEND, 0xff);
	check_patched_fails(b, &good, K_SET, 0);
	check_patched_fails(b, &good, K_SET, 3);
	check_patched_fails(b, &good, K_LEDS, 8);
	check_patched_fails(b, &good, K_TYPEMATIC, 0x80);
	check_patched_fails(b, &good, K_SCANNING, 2);
	check_patched_fails(b, &good, K_MODS, 0x40);
	check_patched_fails(b, &good, M_COUNT, 1); /* a byte the section does not hold */
	check_patched_fails(b, &good, M_PEND, 0xe9);
	check_patched_fails(b, &good, M_STATUS, 0x01);
	check_patched_fails(b, &good, M_RES, 4);
	check_patched_fails(b, &good, M_RATE, 7);
	check_patched_fails(b, &good, M_ID, 4);
	check_patched_fails(b, &good, M_KNOCK + 2, 5);
	check_patched_fails(b, &good, M_WRAP, 2);
	check_patched_fails(b, &good, M_DX + 2, 1); /* 65536 counts */
	check_patched_fails(b, &good, M_DZ + 3, 0x80);
	check_patched_fails(b, &good, M_BUTTONS, 8);
	check_patched_fails(b, &good, M_REPORTED, 8);
	check_patched_fails(b, &good, M_LASTLEN, 2);
	check_patched_loads(b, &good, K_PEND, 0xed);
	check_patched_loads(b, &good, K_SET, 1);
	check_patched_loads(b, &good, K_RDATA, 0x00);
	check_patched_loads(b, &good, M_PEND, 0xf3);
	check_patched_loads(b, &good, M_ID, 3);
	check_patched_loads(b, &good, M_RATE, 200);
	ck_assert_uint_eq(good.data[K_KCOUNT], 0);
	b->ops->destroy(b);
	state_free(&good);
}
END_TEST

SUITE_MAIN("i8042", "core", setup, teardown, 30, test_status_and_self_test, test_command_byte,
	   test_irq1, test_reset_fe, test_reset_d1_and_output_port, test_keyboard_replies, test_aux,
	   test_no_mux, test_output_order, test_wide_and_offset_accesses, test_fuzz,
	   test_save_load_roundtrip, test_load_rejects_corruption)
