/* The PS/2 keyboard and mouse behind the i8042, driven as a guest drives
 * them (port 0x60/0x64 reads and writes through dev_ops, in the order
 * Linux's i8042, atkbd and psmouse probes use) and fed as the host feeds
 * them (i8042_keys, i8042_mouse): replies, scancodes in set 2, set 1 and
 * translated, the IntelliMouse knock, packets, remote and wrap modes,
 * IRQ 1 and 12, save/load in the middle of a stream, a fuzz case. */
#include <check.h>
#include <stdlib.h>
#include <linux/input-event-codes.h>

#include "kestrel/devices.h"
#include "fake_board.h"
#include "i8042_driver.h"

static struct fake_irq irq1, irq12;
static struct fake_ctl ctl;

static void ctr(uint8_t v)
{
	cmd(0x60);
	put(v);
}

static void aux(uint8_t v)
{
	cmd(0xd4);
	put(v);
}

/* Every byte waiting, each checked against the port it came from and the
 * interrupt line it raised. */
static int drain_port(uint8_t *out, int max, bool want_aux)
{
	int n = 0;

	while (status() & ST_OBF) {
		ck_assert_int_lt(n, max);
		ck_assert_uint_eq(!!(status() & ST_AUX), want_aux);
		ck_assert_int_eq(want_aux ? irq12.level : irq1.level, 1);
		out[n++] = data();
	}
	return n;
}

static void expect_port(const uint8_t *want, int n, bool want_aux)
{
	uint8_t got[600];

	ck_assert_int_eq(drain_port(got, (int)sizeof(got), want_aux), n);
	for (int i = 0; i < n; i++)
		ck_assert_msg(got[i] == want[i], "byte %d: got %#x, want %#x", i, got[i], want[i]);
}

#define EXPECT_KBD(...)                                      \
	do {                                                 \
		static const uint8_t w_[] = { __VA_ARGS__ }; \
		expect_port(w_, (int)sizeof(w_), false);     \
	} while (0)
#define EXPECT_AUX(...)                                      \
	do {                                                 \
		static const uint8_t w_[] = { __VA_ARGS__ }; \
		expect_port(w_, (int)sizeof(w_), true);      \
	} while (0)
#define EXPECT_NOTHING() ck_assert_uint_eq(status() & ST_OBF, 0)

static int key(unsigned code, bool down)
{
	struct i8042_key e = { .code = (uint16_t)code, .down = down };

	return i8042_keys(k, &e, 1);
}

static void tap(unsigned code)
{
	ck_assert_int_eq(key(code, true), 0);
	ck_assert_int_eq(key(code, false), 0);
}

static struct device *new_kbc(void)
{
	struct irq_line l1 = fake_irq_line(&irq1, 1);
	struct irq_line l12 = fake_irq_line(&irq12, 12);
	struct vm_ctl c = fake_vm_ctl(&ctl);

	return i8042_create(&l1, &l12, &c);
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

/* Command byte as Linux leaves it: both interrupts on, SYS, and XLATE
 * unless raw is asked for. */
static void linux_ctr(bool xlate)
{
	ctr(0x07 | (xlate ? 0x40 : 0));
}

/* i8042_controller_check/selftest/init, i8042_check_aux: flush, self test,
 * the command byte read twice and written with both ports off, the aux
 * loopback, AUXDIS toggled through A7/A8, the IRQ 12 test with a looped
 * byte, the mux probe (a plain 8042 echoes A4). */
START_TEST(test_linux_i8042_probe)
{
	uint8_t c;

	EXPECT_NOTHING();
	cmd(0xaa);
	ck_assert_uint_eq(data(), 0x55);
	cmd(0x20);
	c = data();
	cmd(0x20);
	ck_assert_uint_eq(data(), c);
	ctr((uint8_t)((c | 0x30) & ~0x03));
	cmd(0xd3);
	put(0x5a);
	ck_assert_uint_eq(status() & ST_AUX, ST_AUX);
	ck_assert_uint_eq(data(), 0x5a);
	ck_assert_int_eq(irq12.level, 0);
	cmd(0xa7);
	cmd(0x20);
	ck_assert_uint_eq(data() & 0x20, 0x20);
	cmd(0xa8);
	cmd(0x20);
	c = data();
	ck_assert_uint_eq(c & 0x20, 0);
	ctr(c | 0x02);
	cmd(0xd3);
	put(0xa5);
	ck_assert_int_eq(irq12.level, 1);
	ck_assert_uint_eq(data(), 0xa5);
	ck_assert_int_eq(irq12.level, 0);
	cmd(0xd3);
	put(0xf0);
	ck_assert_uint_eq(data(), 0xf0);
	cmd(0xd3);
	put(0x56);
	ck_assert_uint_eq(data(), 0x56);
	cmd(0xd3);
	put(0xa4);
	ck_assert_uint_eq(data(), 0xa4);
	ck_assert_int_eq(irq1.bad + irq12.bad, 0);
}
END_TEST

/* atkbd_probe and atkbd_activate on a translating controller, then keys
 * as the guest reads them: set 1, E0 kept, F0 folded into bit 7. */
START_TEST(test_atkbd_translated)
{
	linux_ctr(true);
	put(0xf2);
	EXPECT_KBD(0xfa, 0xab, 0x41); /* 83 translated: atkbd knows AB 41 */
	put(0xed);
	EXPECT_KBD(0xfa);
	put(0x00);
	EXPECT_KBD(0xfa);
	put(0xf3);
	put(0x00);
	EXPECT_KBD(0xfa, 0xfa);
	put(0xf4);
	EXPECT_KBD(0xfa);

	tap(KEY_A);
	EXPECT_KBD(0x1e, 0x9e);
	tap(KEY_RIGHTCTRL);
	EXPECT_KBD(0xe0, 0x1d, 0xe0, 0x9d);
	tap(KEY_F7); /* set 2 83, the one code above 7F */
	EXPECT_KBD(0x41, 0xc1);
	tap(KEY_KPENTER);
	EXPECT_KBD(0xe0, 0x1c, 0xe0, 0x9c);
	tap(KEY_PAUSE);
	EXPECT_KBD(0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5);
	tap(KEY_SYSRQ);
	EXPECT_KBD(0xe0, 0x2a, 0xe0, 0x37, 0xe0, 0xb7, 0xe0, 0xaa);
	ck_assert_int_eq(key(KEY_LEFTALT, true), 0);
	tap(KEY_SYSRQ); /* Alt+PrintScreen is SysRq */
	ck_assert_int_eq(key(KEY_LEFTALT, false), 0);
	EXPECT_KBD(0x38, 0x54, 0xd4, 0xb8);
	ck_assert_int_eq(irq1.bad, 0);
	ck_assert_int_le(irq12.level, 0);
}
END_TEST

/* Keys with every Linux key code the keyboard knows: set 2 raw, and the
 * translation of each equals what the keyboard sends in set 1. */
START_TEST(test_every_key_three_ways)
{
	uint8_t raw[16], xl[16], s1[16];
	int nk = 0;

	for (unsigned code = 1; code <= KEY_MAX; code++) {
		int n2, nx, n1;

		if (!i8042_has_key(code)) {
			ck_assert_int_eq(key(code, true), -EINVAL);
			continue;
		}
		nk++;
		linux_ctr(false);
		tap(code);
		n2 = drain_port(raw, 16, false);
		linux_ctr(true);
		tap(code);
		nx = drain_port(xl, 16, false);
		linux_ctr(false);
		put(0xf0);
		put(0x01);
		ck_assert_int_eq(drain_port(s1, 16, false), 2);
		tap(code);
		n1 = drain_port(s1, 16, false);
		put(0xf0);
		put(0x02);
		drain_port(raw + n2, 16 - n2, false);
		ck_assert_msg(n2 >= 2 && nx >= 1, "key %u: %d set 2 bytes, %d translated", code, n2,
			      nx);
		ck_assert_int_eq(nx, n1);
		ck_assert_msg(!memcmp(xl, s1, (size_t)nx), "key %u: translated != set 1", code);
		/* Set 1 breaks are makes with bit 7, after any E0 prefix. */
		if (code != KEY_PAUSE && code != KEY_SYSRQ && nx == 2) {
			ck_assert_uint_eq(xl[0] & 0x80, 0);
			ck_assert_uint_eq(xl[1], xl[0] | 0x80);
		} else if (code != KEY_PAUSE && code != KEY_SYSRQ) {
			ck_assert_int_eq(nx, 4);
			ck_assert(xl[0] == 0xe0 && xl[2] == 0xe0 && !(xl[1] & 0x80));
			ck_assert_uint_eq(xl[3], xl[1] | 0x80);
			ck_assert(raw[0] == 0xe0 && raw[2] == 0xe0 && raw[3] == 0xf0);
		}
	}
	ck_assert_int_ge(nk, 110);
	ck_assert(!i8042_has_key(0));
	ck_assert(!i8042_has_key(KEY_MAX + 1));
	ck_assert_int_eq(key(KEY_MAX + 1, true), -EINVAL);
}
END_TEST

START_TEST(test_set2_sequences)
{
	struct i8042_key cad[] = {
		{ KEY_LEFTCTRL, true }, { KEY_LEFTALT, true },	{ KEY_DELETE, true },
		{ KEY_DELETE, false },	{ KEY_LEFTALT, false }, { KEY_LEFTCTRL, false },
	};

	linux_ctr(false);
	tap(KEY_A);
	EXPECT_KBD(0x1c, 0xf0, 0x1c);
	ck_assert_int_eq(i8042_keys(k, cad, 6), 0);
	EXPECT_KBD(0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14);
	tap(KEY_PAUSE);
	EXPECT_KBD(0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77);
	ck_assert_int_eq(key(KEY_RIGHTCTRL, true), 0);
	tap(KEY_PAUSE); /* Ctrl+Pause is Break */
	ck_assert_int_eq(key(KEY_RIGHTCTRL, false), 0);
	EXPECT_KBD(0xe0, 0x14, 0xe0, 0x7e, 0xe0, 0xf0, 0x7e, 0xe0, 0xf0, 0x14);
	ck_assert_int_eq(key(KEY_LEFTSHIFT, true), 0);
	ck_assert_int_eq(key(KEY_RIGHTSHIFT, true), 0);
	ck_assert_int_eq(key(KEY_LEFTSHIFT, false), 0);
	tap(KEY_SYSRQ); /* a Shift still held: E0 7C alone */
	ck_assert_int_eq(key(KEY_RIGHTSHIFT, false), 0);
	EXPECT_KBD(0x12, 0x59, 0xf0, 0x12, 0xe0, 0x7c, 0xe0, 0xf0, 0x7c, 0xf0, 0x59);
	tap(KEY_SYSRQ);
	EXPECT_KBD(0xe0, 0x12, 0xe0, 0x7c, 0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12);
}
END_TEST

START_TEST(test_kbd_commands)
{
	linux_ctr(false);
	put(0xed);
	put(0x05);
	EXPECT_KBD(0xfa, 0xfa);
	ck_assert_uint_eq(i8042_kbd_leds(k), 5);
	put(0xed);
	put(0xf2); /* a command where the argument was due */
	EXPECT_KBD(0xfa, 0xfa, 0xab, 0x83);
	ck_assert_uint_eq(i8042_kbd_leds(k), 5);
	put(0xee);
	EXPECT_KBD(0xee);
	put(0xfe); /* resend: the last byte again */
	EXPECT_KBD(0xee);
	put(0xf0);
	put(0x07); /* no such set: resend, still waiting */
	EXPECT_KBD(0xfa, 0xfe);
	put(0x01);
	EXPECT_KBD(0xfa);
	put(0xf0);
	put(0x00);
	EXPECT_KBD(0xfa, 0xfa, 0x01);
	put(0xfb); /* set 3 key types: acknowledged */
	EXPECT_KBD(0xfa);
	put(0x55);
	EXPECT_KBD(0xfe);
	put(0xff); /* reset: set 2, LEDs off */
	EXPECT_KBD(0xfa, 0xaa);
	ck_assert_uint_eq(i8042_kbd_leds(k), 0);
	tap(KEY_B);
	EXPECT_KBD(0x32, 0xf0, 0x32);
}
END_TEST

/* Disabled (F5), the keyboard reports nothing and says so; the held
 * modifiers still count. F4 turns it on again; F6 restores defaults. */
START_TEST(test_kbd_disable)
{
	linux_ctr(false);
	put(0xf0);
	put(0x01);
	EXPECT_KBD(0xfa, 0xfa);
	put(0xf5);
	EXPECT_KBD(0xfa);
	ck_assert_int_eq(key(KEY_LEFTALT, true), -EAGAIN);
	EXPECT_NOTHING();
	put(0xf4);
	EXPECT_KBD(0xfa);
	tap(KEY_SYSRQ); /* Alt is still down: SysRq, set 2 (F5 reset the set) */
	EXPECT_KBD(0x84, 0xf0, 0x84);
	ck_assert_int_eq(key(KEY_LEFTALT, false), 0);
	EXPECT_KBD(0xf0, 0x11);
	put(0xf6);
	EXPECT_KBD(0xfa);
	tap(KEY_C);
	EXPECT_KBD(0x21, 0xf0, 0x21);
}
END_TEST

/* Replies to a command go ahead of scancodes not yet read; the key bytes
 * are kept. A key batch that does not fit queues nothing but one overrun
 * code; a batch with an unknown key queues nothing at all. */
START_TEST(test_kbd_queue)
{
	struct i8042_key big[I8042_MAX_KEYS], bad[2] = { { KEY_A, true }, { 0x2ff, true } };
	int n = 0, rc = 0;
	uint8_t got[600];

	linux_ctr(false);
	ck_assert_int_eq(key(KEY_A, true), 0);
	ck_assert_int_eq(key(KEY_B, true), 0);
	put(0xed); /* 1C is already in the buffer */
	EXPECT_KBD(0x1c, 0xfa, 0x32);
	put(0x00);
	EXPECT_KBD(0xfa);
	ck_assert_int_eq(i8042_keys(k, bad, 2), -EINVAL);
	EXPECT_NOTHING();
	ck_assert_int_eq(i8042_keys(k, big, I8042_MAX_KEYS + 1), -E2BIG);

	for (int i = 0; i < I8042_MAX_KEYS; i++)
		big[i] = (struct i8042_key){ KEY_DELETE, i % 2 == 0 };
	while ((rc = i8042_keys(k, big, 16)) == 0)
		n++;
	ck_assert_int_eq(rc, -ENOSPC);
	ck_assert_int_eq(i8042_keys(k, big, 16), -ENOSPC); /* one overrun code, not two */
	ck_assert_int_eq(drain_port(got, (int)sizeof(got), false), n * 40 + 1);
	ck_assert_uint_eq(got[n * 40], 0x00);
	ck_assert_int_eq(n, 6); /* 256 bytes hold six batches of 40 */
	tap(KEY_A);
	EXPECT_KBD(0x1c, 0xf0, 0x1c);
}
END_TEST

/* psmouse_probe and the protocol detection: GET ID, reset-disable,
 * IntelliMouse (200-100-80 -> ID 3), Explorer (200-200-80 -> still 3),
 * resolution, scaling, rate, enable; then packets. */
static void psmouse_init(void)
{
	static const uint8_t knock[] = { 200, 100, 80, 200, 200, 80 };

	linux_ctr(true);
	aux(0xf2);
	EXPECT_AUX(0xfa, 0x00);
	aux(0xf6);
	EXPECT_AUX(0xfa);
	for (int i = 0; i < 6; i++) {
		aux(0xf3);
		aux(knock[i]);
		EXPECT_AUX(0xfa, 0xfa);
		if (i == 2 || i == 5) {
			aux(0xf2);
			EXPECT_AUX(0xfa, 0x03);
		}
	}
	aux(0xe8);
	aux(0x03);
	EXPECT_AUX(0xfa, 0xfa);
	aux(0xe6);
	EXPECT_AUX(0xfa);
	aux(0xf3);
	aux(100);
	EXPECT_AUX(0xfa, 0xfa);
	aux(0xf4);
	EXPECT_AUX(0xfa);
}

START_TEST(test_psmouse_stream)
{
	psmouse_init();
	ck_assert_int_eq(i8042_mouse(k, 5, -3, 0, 1), 0);
	EXPECT_AUX(0x09, 0x05, 0x03, 0x00); /* y up is positive */
	ck_assert_int_eq(i8042_mouse(k, -2, 10, 1, 1), 0);
	EXPECT_AUX(0x39, 0xfe, 0xf6, 0x01);
	ck_assert_int_eq(i8042_mouse(k, 0, 0, -1, 6), 0);
	EXPECT_AUX(0x0e, 0x00, 0x00, 0xff); /* right and middle */
	ck_assert_int_eq(i8042_mouse(k, 0, 0, 0, 0), 0);
	EXPECT_AUX(0x08, 0x00, 0x00, 0x00); /* a release is a packet */
	ck_assert_int_eq(i8042_mouse(k, 0, 0, 0, 0), 0);
	EXPECT_NOTHING(); /* nothing changed: none */
	/* 600 right: three packets that add up, no overflow bits. */
	ck_assert_int_eq(i8042_mouse(k, 600, 0, 20, 0), 0);
	EXPECT_AUX(0x08, 0xff, 0x00, 0x07, 0x08, 0xff, 0x00, 0x07, 0x08, 0x5a, 0x00, 0x06);
	ck_assert_int_eq(irq12.bad, 0);
}
END_TEST

/* Motion the guest does not read fills the buffer (64 packets); what does
 * not fit waits in the counters, capped at 4096 counts, and follows as the
 * guest reads: a flood of host events costs a bounded number of packets. */
START_TEST(test_mouse_flood)
{
	int sum = 0, n = 0;

	psmouse_init();
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(i8042_mouse(k, -1000, 0, 0, 0), 0);
	while (status() & ST_OBF) {
		uint8_t b0 = data(), x = data();

		ck_assert_uint_eq(b0 & 0xd8, 0x18); /* always-1, X negative, no overflow */
		sum += (int)x - 256;
		ck_assert_uint_eq(data(), 0);
		ck_assert_uint_eq(data(), 0);
		n++;
	}
	/* 64 packets (16 events of -1000 in four each) fill the buffer; then
	 * the counters, capped. */
	ck_assert_int_eq(n, 64 + 16);
	ck_assert_int_eq(sum, -16 * 1000 - 4096);
}
END_TEST

/* Remote mode: movement waits for Read Data, which reports it saturated
 * with the overflow bits and clears it. 2:1 scaling applies to stream
 * packets only. */
START_TEST(test_mouse_remote_and_scaling)
{
	psmouse_init();
	aux(0xf0);
	EXPECT_AUX(0xfa);
	ck_assert_int_eq(i8042_mouse(k, 300, -3, 0, 1), 0);
	EXPECT_NOTHING();
	aux(0xeb);
	EXPECT_AUX(0xfa, 0x49, 0xff, 0x03, 0x00); /* X overflow */
	aux(0xeb);
	EXPECT_AUX(0xfa, 0x09, 0x00, 0x00, 0x00); /* cleared */
	aux(0xea);
	aux(0xe7);
	EXPECT_AUX(0xfa, 0xfa);
	ck_assert_int_eq(i8042_mouse(k, 4, -5, 0, 0), 0);
	EXPECT_AUX(0x08, 0x06, 0x09, 0x00); /* 4 -> 6, 5 -> 9 */
	ck_assert_int_eq(i8042_mouse(k, 200, 0, 0, 0), 0);
	EXPECT_AUX(0x48, 0xff, 0x00, 0x00); /* 400 does not fit */
	aux(0xe9);
	EXPECT_AUX(0xfa, 0x30, 0x03, 100); /* enabled, 2:1; res 3; 100/s */
}
END_TEST

START_TEST(test_mouse_commands)
{
	psmouse_init();
	ck_assert_int_eq(i8042_mouse(k, 1, 1, 0, 1), 0);
	EXPECT_AUX(0x29, 0x01, 0xff, 0x00);
	aux(0xfe); /* resend the last packet */
	EXPECT_AUX(0x29, 0x01, 0xff, 0x00);
	aux(0xe9);
	EXPECT_AUX(0xfa, 0x24, 0x03, 100); /* enabled, left held */
	aux(0xf3);
	aux(7); /* no such rate */
	EXPECT_AUX(0xfa, 0xfe);
	aux(0xe8);
	aux(9);
	EXPECT_AUX(0xfa, 0xfe);
	aux(0x12);
	EXPECT_AUX(0xfe);
	aux(0xee); /* wrap: echo */
	aux(0x12);
	aux(0xf2);
	EXPECT_AUX(0xfa, 0x12, 0xf2);
	ck_assert_int_eq(i8042_mouse(k, 1, 0, 0, 1), -EAGAIN);
	aux(0xec);
	aux(0xf2);
	EXPECT_AUX(0xfa, 0xfa, 0x03);
	/* A command drops packets not yet sent. */
	ck_assert_int_eq(i8042_mouse(k, 10, 0, 0, 1), 0);
	ck_assert_int_eq(i8042_mouse(k, 10, 0, 0, 0), 0);
	ck_assert_uint_eq(data(), 0x09); /* the controller has the next */
	aux(0xf5);
	EXPECT_AUX(0x0a, 0xfa);
	ck_assert_int_eq(i8042_mouse(k, 5, 5, 0, 0), -EAGAIN);
	EXPECT_NOTHING();
	aux(0xff); /* reset: standard mouse again */
	EXPECT_AUX(0xfa, 0xaa, 0x00);
	aux(0xf2);
	EXPECT_AUX(0xfa, 0x00);
	aux(0xf4);
	EXPECT_AUX(0xfa);
	ck_assert_int_eq(i8042_mouse(k, 1, 0, 3, 0), 0);
	EXPECT_AUX(0x08, 0x01, 0x00); /* three bytes, no wheel */
}
END_TEST

/* Keyboard and mouse bytes share the buffer; each arrives on its own line
 * with its own AUX bit, and inhibiting one port holds only its bytes. */
START_TEST(test_interleaved)
{
	uint8_t got[16];
	int nk = 0, na = 0;

	psmouse_init();
	tap(KEY_A);
	ck_assert_int_eq(i8042_mouse(k, 1, 0, 0, 0), 0);
	while (status() & ST_OBF) {
		bool is_aux = status() & ST_AUX;

		ck_assert_int_eq(is_aux ? irq12.level : irq1.level, 1);
		ck_assert_int_eq(is_aux ? irq1.level : irq12.level, 0);
		got[is_aux ? 8 + na++ : nk++] = data();
	}
	ck_assert_int_eq(nk, 2);
	ck_assert_int_eq(na, 4);
	ck_assert_uint_eq(got[0], 0x1e);
	ck_assert_uint_eq(got[8], 0x08);
	cmd(0xad);
	tap(KEY_A);
	ck_assert_int_eq(i8042_mouse(k, 1, 0, 0, 0), 0);
	ck_assert_int_eq(drain_port(got, 16, true), 4);
	cmd(0xae);
	EXPECT_KBD(0x1e, 0x9e);
}
END_TEST

/* Save in the middle of a key sequence and a packet, load into a second
 * controller: both then send the same bytes, and take host input alike. */
START_TEST(test_save_load_mid_stream)
{
	struct state_buf good;
	struct device *a = k, *b = new_kbc();

	psmouse_init();
	ck_assert_int_eq(key(KEY_LEFTSHIFT, true), 0);
	tap(KEY_DELETE);
	ck_assert_int_eq(i8042_mouse(k, 700, 3, 2, 4), 0);
	data();
	data(); /* inside E0 53 */
	roundtrip(a, b, &good);
	for (int i = 0; i < 3; i++) {
		struct device *d[2] = { a, b };
		uint8_t out[2][64];
		int n[2];

		for (int j = 0; j < 2; j++) {
			k = d[j];
			if (i == 1)
				ck_assert_int_eq(key(KEY_SYSRQ, true), 0); /* shift held: E0 37 */
			if (i == 2)
				ck_assert_int_eq(i8042_mouse(k, -1, 0, 0, 0), 0);
			n[j] = 0;
			while ((status() & ST_OBF) && n[j] < 64)
				out[j][n[j]++] = data();
		}
		ck_assert_int_eq(n[0], n[1]);
		ck_assert_int_gt(n[0], 0);
		ck_assert_mem_eq(out[0], out[1], (size_t)n[0]);
	}
	k = a;
	b->ops->destroy(b);
	state_free(&good);
}
END_TEST

/* Random guest accesses and host input: the lines stay consistent, the
 * host calls answer with their documented codes, and a save at any point
 * loads into a fresh controller and saves the same. */
START_TEST(test_fuzz)
{
	struct device *spare = new_kbc();
	static const uint8_t cmds[] = { 0x20, 0x60, 0xa7, 0xa8, 0xa9, 0xaa,
					0xad, 0xae, 0xd2, 0xd3, 0xd4 };

	for (int i = 0; i < 200000; i++) {
		uint64_t r = fuzz_next();
		int rc;

		switch (r % 8) {
		case 0: cmd(cmds[(r >> 8) % sizeof(cmds)]); break;
		case 1:
		case 2: put((uint8_t)(r >> 8)); break;
		case 3: data(); break;
		case 4:
			rc = key((unsigned)(r >> 8) % 260, (r >> 20) & 1);
			ck_assert(rc == 0 || rc == -EINVAL || rc == -ENOSPC || rc == -EAGAIN);
			break;
		case 5:
			rc = i8042_mouse(k, (int)((r >> 8) % 2001) - 1000,
					 (int)((r >> 24) % 2001) - 1000, (int)((r >> 40) % 5) - 2,
					 (unsigned)(r >> 50));
			ck_assert(rc == 0 || rc == -EAGAIN);
			break;
		case 6: aux((uint8_t)(r >> 8)); break;
		default:
			if ((r >> 8) % 500 == 0) {
				struct state_buf s;

				roundtrip(k, spare, &s);
				state_free(&s);
			}
			status();
		}
		ck_assert_int_eq(irq1.bad + irq12.bad, 0);
		uint8_t st = status();
		if (!(st & ST_OBF))
			ck_assert(irq1.level <= 0 && irq12.level <= 0);
		else if (st & ST_AUX)
			ck_assert_int_le(irq1.level, 0);
		else
			ck_assert_int_le(irq12.level, 0);
		if (ctl.stops)
			ck_assert_int_eq(ctl.why, VM_STOP_RESET);
	}
	spare->ops->destroy(spare);
}
END_TEST

SUITE_MAIN("ps2", "core", setup, teardown, 60, test_linux_i8042_probe, test_atkbd_translated,
	   test_every_key_three_ways, test_set2_sequences, test_kbd_commands, test_kbd_disable,
	   test_kbd_queue, test_psmouse_stream, test_mouse_flood, test_mouse_remote_and_scaling,
	   test_mouse_commands, test_interleaved, test_save_load_mid_stream, test_fuzz)
