/* PS/2 keyboard (IBM MF2, ID AB 83) on the i8042's keyboard port.
 *
 * Host keys come in as Linux input key codes and go out as scan code set 2
 * (the keyboard's default; the controller translates to set 1 when its
 * command byte says XLATE, as every PC BIOS leaves it) or, when the guest
 * selects it, set 1 directly. Set 3 requests are acknowledged but the
 * keyboard stays in set 2 and reports so (Linux's atkbd then falls back).
 *
 * Typematic repeat is not generated here: the rate is stored and
 * acknowledged, and a host that holds a key (a VNC client's auto-repeat)
 * sends repeated make codes itself, which is what a repeating keyboard
 * sends. The "fake shift" codes real keyboards wrap around the grey keys
 * are not sent either; Linux and QEMU ignore them.
 *
 * References: IBM PS/2 Hardware Interface Technical Reference, "Keyboard and
 * Auxiliary Device Controller" and "Keyboards (101- and 102-Key)"; the
 * scan code tables of Linux's drivers/input/keyboard/atkbd.c. */
#include <errno.h>
#include <string.h>
#include <linux/input-event-codes.h>

#include "kestrel/state.h"
#include "ps2.h"

/* Keyboard commands (IBM keyboard technical reference, "Commands from the system"). */
#define KBD_CMD_SET_LEDS   0xed
#define KBD_CMD_ECHO	   0xee
#define KBD_CMD_SCANSET	   0xf0
#define KBD_CMD_GET_ID	   0xf2
#define KBD_CMD_TYPEMATIC  0xf3
#define KBD_CMD_ENABLE	   0xf4
#define KBD_CMD_DISABLE	   0xf5 /* defaults, stop scanning */
#define KBD_CMD_DEFAULTS   0xf6 /* defaults, scan */
#define KBD_CMD_SET3_FIRST 0xf7 /* F7..FD: set 3 key types, acknowledged only */
#define KBD_CMD_SET3_LAST  0xfd
#define KBD_CMD_RESEND	   0xfe
#define KBD_CMD_RESET	   0xff
#define KBD_CMD_FIRST	   KBD_CMD_SET_LEDS /* bytes from here on are commands */

#define KBD_ID_1	      0xab
#define KBD_ID_2	      0x83
#define KBD_BREAK	      0xf0 /* set 2: the next code is a release */
#define KBD_E0		      0xe0
#define KBD_E1		      0xe1
#define KBD_OVERRUN_SET2      0x00 /* set 1: 0xff, which is its translation */
#define KBD_TYPEMATIC_DEFAULT 0x2b /* 10.9 characters/s after 500 ms */

#define SC_E0 0x100 /* the code has the E0 prefix */

/* Set 2 make codes by Linux key code. KEY_SYSRQ (Print Screen) and
 * KEY_PAUSE send sequences of their own (kbd_special). */
/* clang-format off */
static const uint16_t kbd_set2[KEY_MAX + 1] = {
	[KEY_ESC] = 0x76, [KEY_1] = 0x16, [KEY_2] = 0x1e, [KEY_3] = 0x26, [KEY_4] = 0x25,
	[KEY_5] = 0x2e, [KEY_6] = 0x36, [KEY_7] = 0x3d, [KEY_8] = 0x3e, [KEY_9] = 0x46,
	[KEY_0] = 0x45, [KEY_MINUS] = 0x4e, [KEY_EQUAL] = 0x55, [KEY_BACKSPACE] = 0x66,
	[KEY_TAB] = 0x0d, [KEY_Q] = 0x15, [KEY_W] = 0x1d, [KEY_E] = 0x24, [KEY_R] = 0x2d,
	[KEY_T] = 0x2c, [KEY_Y] = 0x35, [KEY_U] = 0x3c, [KEY_I] = 0x43, [KEY_O] = 0x44,
	[KEY_P] = 0x4d, [KEY_LEFTBRACE] = 0x54, [KEY_RIGHTBRACE] = 0x5b, [KEY_ENTER] = 0x5a,
	[KEY_LEFTCTRL] = 0x14, [KEY_A] = 0x1c, [KEY_S] = 0x1b, [KEY_D] = 0x23, [KEY_F] = 0x2b,
	[KEY_G] = 0x34, [KEY_H] = 0x33, [KEY_J] = 0x3b, [KEY_K] = 0x42, [KEY_L] = 0x4b,
	[KEY_SEMICOLON] = 0x4c, [KEY_APOSTROPHE] = 0x52, [KEY_GRAVE] = 0x0e,
	[KEY_LEFTSHIFT] = 0x12, [KEY_BACKSLASH] = 0x5d, [KEY_Z] = 0x1a, [KEY_X] = 0x22,
	[KEY_C] = 0x21, [KEY_V] = 0x2a, [KEY_B] = 0x32, [KEY_N] = 0x31, [KEY_M] = 0x3a,
	[KEY_COMMA] = 0x41, [KEY_DOT] = 0x49, [KEY_SLASH] = 0x4a, [KEY_RIGHTSHIFT] = 0x59,
	[KEY_KPASTERISK] = 0x7c, [KEY_LEFTALT] = 0x11, [KEY_SPACE] = 0x29,
	[KEY_CAPSLOCK] = 0x58, [KEY_F1] = 0x05, [KEY_F2] = 0x06, [KEY_F3] = 0x04,
	[KEY_F4] = 0x0c, [KEY_F5] = 0x03, [KEY_F6] = 0x0b, [KEY_F7] = 0x83, [KEY_F8] = 0x0a,
	[KEY_F9] = 0x01, [KEY_F10] = 0x09, [KEY_NUMLOCK] = 0x77, [KEY_SCROLLLOCK] = 0x7e,
	[KEY_KP7] = 0x6c, [KEY_KP8] = 0x75, [KEY_KP9] = 0x7d, [KEY_KPMINUS] = 0x7b,
	[KEY_KP4] = 0x6b, [KEY_KP5] = 0x73, [KEY_KP6] = 0x74, [KEY_KPPLUS] = 0x79,
	[KEY_KP1] = 0x69, [KEY_KP2] = 0x72, [KEY_KP3] = 0x7a, [KEY_KP0] = 0x70,
	[KEY_KPDOT] = 0x71, [KEY_102ND] = 0x61, [KEY_F11] = 0x78, [KEY_F12] = 0x07,
	/* Japanese 106/109-key keyboards */
	[KEY_RO] = 0x51, [KEY_KATAKANAHIRAGANA] = 0x13, [KEY_HENKAN] = 0x64,
	[KEY_MUHENKAN] = 0x67, [KEY_YEN] = 0x6a,
	/* The grey keys and the Windows/ACPI keys, behind E0 */
	[KEY_KPENTER] = SC_E0 | 0x5a, [KEY_RIGHTCTRL] = SC_E0 | 0x14,
	[KEY_KPSLASH] = SC_E0 | 0x4a, [KEY_RIGHTALT] = SC_E0 | 0x11,
	[KEY_HOME] = SC_E0 | 0x6c, [KEY_UP] = SC_E0 | 0x75, [KEY_PAGEUP] = SC_E0 | 0x7d,
	[KEY_LEFT] = SC_E0 | 0x6b, [KEY_RIGHT] = SC_E0 | 0x74, [KEY_END] = SC_E0 | 0x69,
	[KEY_DOWN] = SC_E0 | 0x72, [KEY_PAGEDOWN] = SC_E0 | 0x7a, [KEY_INSERT] = SC_E0 | 0x70,
	[KEY_DELETE] = SC_E0 | 0x71, [KEY_MUTE] = SC_E0 | 0x23,
	[KEY_VOLUMEDOWN] = SC_E0 | 0x21, [KEY_VOLUMEUP] = SC_E0 | 0x32,
	[KEY_POWER] = SC_E0 | 0x37, [KEY_LEFTMETA] = SC_E0 | 0x1f,
	[KEY_RIGHTMETA] = SC_E0 | 0x27, [KEY_COMPOSE] = SC_E0 | 0x2f,
	[KEY_SLEEP] = SC_E0 | 0x3f, [KEY_WAKEUP] = SC_E0 | 0x5e,
};
/* clang-format on */

/* The 8042's translation of set 2 to set 1 (its ROM table): the first half
 * maps every set 2 code to its set 1 code, the second half passes bytes
 * through except F7 (83) and Alt+SysRq (84), the two set 2 codes above 7F.
 * F0 is not in the table: it sets bit 7 of the next byte instead. */
static const uint8_t set2_to_set1[128] = {
	0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29,
	0x59, 0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11,
	0x03, 0x5b, 0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14,
	0x13, 0x06, 0x5d, 0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24,
	0x16, 0x08, 0x09, 0x5f, 0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35,
	0x26, 0x27, 0x19, 0x0c, 0x61, 0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36,
	0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76, 0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c,
	0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f, 0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45,
	0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
};

uint8_t ps2_set2_to_set1(uint8_t v)
{
	if (v < 0x80)
		return set2_to_set1[v];
	if (v == 0x83)
		return 0x41;
	if (v == 0x84)
		return 0x54;
	return v;
}

bool ps2_kbd_has_key(unsigned code)
{
	return code <= KEY_MAX && (kbd_set2[code] || code == KEY_SYSRQ || code == KEY_PAUSE);
}

static void kbd_defaults(struct ps2_kbd *k)
{
	k->scanset = 2;
	k->leds = 0;
	k->typematic = KBD_TYPEMATIC_DEFAULT;
	k->pending_cmd = 0;
}

void ps2_kbd_reset(struct ps2_kbd *k)
{
	memset(k, 0, sizeof(*k));
	kbd_defaults(k);
	k->scanning = true;
}

/* ---- host keys -> scan codes ---- */

static unsigned kbd_mod_bit(unsigned code)
{
	switch (code) {
	case KEY_LEFTCTRL: return PS2_MOD_LCTRL;
	case KEY_RIGHTCTRL: return PS2_MOD_RCTRL;
	case KEY_LEFTSHIFT: return PS2_MOD_LSHIFT;
	case KEY_RIGHTSHIFT: return PS2_MOD_RSHIFT;
	case KEY_LEFTALT: return PS2_MOD_LALT;
	case KEY_RIGHTALT: return PS2_MOD_RALT;
	}
	return 0;
}

static unsigned kbd_put(uint8_t *out, unsigned n, const uint8_t *seq, unsigned len)
{
	memcpy(out + n, seq, len);
	return n + len;
}

/* Print Screen and Pause (set 2), which depend on the modifiers held:
 * Print Screen is E0 12 E0 7C alone, E0 7C with Shift or Ctrl, and 84
 * (SysRq) with Alt; Pause sends its whole make and break on the press, and
 * E0 7E E0 F0 7E (Break) with Ctrl; neither sends anything on release. */
static unsigned kbd_special(unsigned code, bool down, uint8_t mods, uint8_t *out)
{
	static const uint8_t prtsc[] = { KBD_E0, 0x12, KBD_E0, 0x7c };
	static const uint8_t prtsc_up[] = { KBD_E0, KBD_BREAK, 0x7c, KBD_E0, KBD_BREAK, 0x12 };
	static const uint8_t pause[] = { KBD_E1,    0x14, 0x77,	     KBD_E1,
					 KBD_BREAK, 0x14, KBD_BREAK, 0x77 };
	static const uint8_t brk[] = { KBD_E0, 0x7e, KBD_E0, KBD_BREAK, 0x7e };
	bool alt = mods & (PS2_MOD_LALT | PS2_MOD_RALT);
	bool ctrl = mods & (PS2_MOD_LCTRL | PS2_MOD_RCTRL);
	bool shift = mods & (PS2_MOD_LSHIFT | PS2_MOD_RSHIFT);

	if (code == KEY_PAUSE) {
		if (!down)
			return 0;
		return ctrl ? kbd_put(out, 0, brk, sizeof(brk))
			    : kbd_put(out, 0, pause, sizeof(pause));
	}
	if (alt) {
		out[0] = down ? 0x84 : KBD_BREAK;
		out[1] = 0x84;
		return down ? 1 : 2;
	}
	if (ctrl || shift)
		return down ? kbd_put(out, 0, prtsc + 2, 2) : kbd_put(out, 0, prtsc_up, 3);
	return down ? kbd_put(out, 0, prtsc, sizeof(prtsc))
		    : kbd_put(out, 0, prtsc_up, sizeof(prtsc_up));
}

/* Set 2 bytes of one event (at most 8). */
static unsigned kbd_set2_bytes(unsigned code, bool down, uint8_t mods, uint8_t *out)
{
	uint16_t sc = kbd_set2[code];
	unsigned n = 0;

	if (code == KEY_SYSRQ || code == KEY_PAUSE)
		return kbd_special(code, down, mods, out);
	if (sc & SC_E0)
		out[n++] = KBD_E0;
	if (!down)
		out[n++] = KBD_BREAK;
	out[n++] = (uint8_t)sc;
	return n;
}

/* Set 2 -> set 1 in place, as the 8042 would: F0 becomes bit 7 of the
 * code after it. */
static unsigned kbd_to_set1(uint8_t *b, unsigned n)
{
	unsigned o = 0;
	bool brk = false;

	for (unsigned i = 0; i < n; i++) {
		if (b[i] == KBD_BREAK) {
			brk = true;
			continue;
		}
		b[o++] = ps2_set2_to_set1(b[i]) | (brk ? 0x80 : 0);
		brk = false;
	}
	return o;
}

/* An overrun code tells the guest keys were lost (once, however many). */
static void kbd_overrun(struct ps2_kbd *k)
{
	uint8_t ov = k->scanset == 1 ? 0xff : KBD_OVERRUN_SET2;
	unsigned tail = (k->keys.head + k->keys.count + PS2_QUEUE_SIZE - 1) % PS2_QUEUE_SIZE;

	if (k->keys.count && k->keys.data[tail] == ov)
		return;
	ps2_queue_put(&k->keys, ov);
}

#define KBD_MAX_EVENT_BYTES 8
#define KBD_MAX_EVENTS	    128

int ps2_kbd_keys(struct ps2_kbd *k, const struct ps2_key_event *ev, unsigned n)
{
	uint8_t buf[KBD_MAX_EVENTS * KBD_MAX_EVENT_BYTES];
	uint8_t mods = k->mods;
	unsigned len = 0;

	if (n > KBD_MAX_EVENTS)
		return -ENOSPC;
	for (unsigned i = 0; i < n; i++)
		if (!ps2_kbd_has_key(ev[i].code))
			return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		unsigned bit = kbd_mod_bit(ev[i].code);
		unsigned m = kbd_set2_bytes(ev[i].code, ev[i].down, mods, buf + len);

		len += k->scanset == 1 ? kbd_to_set1(buf + len, m) : m;
		mods = ev[i].down ? (mods | bit) : (mods & ~bit);
	}
	/* The held keys change even when the keyboard does not report them. */
	k->mods = mods;
	if (!k->scanning)
		return -EAGAIN;
	/* One byte is kept for the overrun code. */
	if (len + 1 > ps2_queue_room(&k->keys)) {
		kbd_overrun(k);
		return -ENOSPC;
	}
	for (unsigned i = 0; i < len; i++)
		ps2_queue_put(&k->keys, buf[i]);
	return 0;
}

/* ---- bytes from the controller ---- */

static void kbd_reply(struct ps2_kbd *k, uint8_t v)
{
	ps2_queue_put(&k->reply, v);
}

/* The argument of ED, F3 or F0. */
static void kbd_argument(struct ps2_kbd *k, uint8_t cmd, uint8_t v)
{
	switch (cmd) {
	case KBD_CMD_SET_LEDS:
		k->leds = v & 0x07;
		kbd_reply(k, PS2_REPLY_ACK);
		return;
	case KBD_CMD_TYPEMATIC:
		k->typematic = v & 0x7f;
		kbd_reply(k, PS2_REPLY_ACK);
		return;
	}
	/* KBD_CMD_SCANSET: 0 asks, 1-3 select; only 1 and 2 are real. */
	if (v > 3) {
		k->pending_cmd = cmd; /* still waiting for a valid argument */
		kbd_reply(k, PS2_REPLY_RESEND);
		return;
	}
	kbd_reply(k, PS2_REPLY_ACK);
	if (v == 0)
		kbd_reply(k, k->scanset);
	else if (v <= 2)
		k->scanset = v;
}

static void kbd_command(struct ps2_kbd *k, uint8_t v)
{
	/* A new command ends whatever the keyboard was still sending for the
	 * previous one. */
	ps2_queue_clear(&k->reply);
	switch (v) {
	case KBD_CMD_SET_LEDS:
	case KBD_CMD_TYPEMATIC:
	case KBD_CMD_SCANSET:
		k->pending_cmd = v;
		kbd_reply(k, PS2_REPLY_ACK);
		break;
	case KBD_CMD_ECHO: kbd_reply(k, KBD_CMD_ECHO); break;
	case KBD_CMD_GET_ID:
		kbd_reply(k, PS2_REPLY_ACK);
		kbd_reply(k, KBD_ID_1);
		kbd_reply(k, KBD_ID_2);
		break;
	case KBD_CMD_ENABLE:
		ps2_queue_clear(&k->keys);
		k->scanning = true;
		kbd_reply(k, PS2_REPLY_ACK);
		break;
	case KBD_CMD_DISABLE:
	case KBD_CMD_DEFAULTS:
		ps2_queue_clear(&k->keys);
		kbd_defaults(k);
		k->scanning = v == KBD_CMD_DEFAULTS;
		kbd_reply(k, PS2_REPLY_ACK);
		break;
	case KBD_CMD_RESEND: kbd_reply(k, k->last); break;
	case KBD_CMD_RESET:
		ps2_queue_clear(&k->keys);
		kbd_defaults(k);
		k->scanning = true;
		kbd_reply(k, PS2_REPLY_ACK);
		kbd_reply(k, PS2_REPLY_BAT_OK);
		break;
	default:
		if (v >= KBD_CMD_SET3_FIRST && v <= KBD_CMD_SET3_LAST)
			kbd_reply(k, PS2_REPLY_ACK);
		else
			kbd_reply(k, PS2_REPLY_RESEND);
	}
}

void ps2_kbd_write(struct ps2_kbd *k, uint8_t v)
{
	uint8_t cmd = k->pending_cmd;

	k->pending_cmd = 0;
	/* A command byte in place of an argument is a new command. */
	if (cmd && v < KBD_CMD_FIRST)
		kbd_argument(k, cmd, v);
	else
		kbd_command(k, v);
}

bool ps2_kbd_pending(const struct ps2_kbd *k)
{
	return k->reply.count || k->keys.count;
}

uint8_t ps2_kbd_read(struct ps2_kbd *k)
{
	k->last = ps2_queue_get(k->reply.count ? &k->reply : &k->keys);
	return k->last;
}

/* ---- state ---- */

#define KBD_STATE_ID	  0x4b325350 /* "PS2K" */
#define KBD_STATE_VERSION 1

void ps2_kbd_save(const struct ps2_kbd *k, struct state_buf *out)
{
	size_t mark = state_section_begin(out, KBD_STATE_ID, KBD_STATE_VERSION);

	ps2_queue_save(&k->reply, out);
	ps2_queue_save(&k->keys, out);
	state_put_u8(out, k->pending_cmd);
	state_put_u8(out, k->scanset);
	state_put_u8(out, k->leds);
	state_put_u8(out, k->typematic);
	state_put_u8(out, k->scanning);
	state_put_u8(out, k->last);
	state_put_u8(out, k->mods);
	state_section_end(out, mark);
}

int ps2_kbd_load(struct ps2_kbd *k, struct state_buf *in)
{
	struct ps2_kbd n = { 0 };
	uint8_t scanning;
	bool ok;
	size_t end;

	if (state_section_open(in, KBD_STATE_ID, KBD_STATE_VERSION) != KBD_STATE_VERSION)
		return -EINVAL;
	end = state_section_body_end(in);
	ok = ps2_queue_load(&n.reply, in) && ps2_queue_load(&n.keys, in);
	n.pending_cmd = state_get_u8(in);
	n.scanset = state_get_u8(in);
	n.leds = state_get_u8(in);
	n.typematic = state_get_u8(in);
	scanning = state_get_u8(in);
	n.last = state_get_u8(in);
	n.mods = state_get_u8(in);
	ok &= n.pending_cmd == 0 || n.pending_cmd == KBD_CMD_SET_LEDS ||
	      n.pending_cmd == KBD_CMD_TYPEMATIC || n.pending_cmd == KBD_CMD_SCANSET;
	ok &= (n.scanset == 1 || n.scanset == 2) && n.leds <= 0x07 && n.typematic <= 0x7f;
	ok &= scanning <= 1 && (n.mods & ~PS2_MOD_ALL) == 0;
	if (!ok || !state_section_done(in, end))
		return -EINVAL;
	n.scanning = scanning;
	*k = n;
	return 0;
}
