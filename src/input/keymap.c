/* Host-side key names and codes -> Linux input key codes, for the control
 * socket's send-key and the VNC server (kestrel/keymap.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <linux/input-event-codes.h>

#include "kestrel/devices.h"
#include "kestrel/keymap.h"

struct key_name {
	const char *name;
	uint16_t code;
};

/* QEMU's QKeyCode names (qapi/ui.json), as its monitor's sendkey takes
 * them; where two names share a key, the first is the one listed back. */
/* clang-format off */
static const struct key_name key_names[] = {
	{ "shift", KEY_LEFTSHIFT }, { "shift_r", KEY_RIGHTSHIFT }, { "alt", KEY_LEFTALT },
	{ "alt_r", KEY_RIGHTALT }, { "ctrl", KEY_LEFTCTRL }, { "ctrl_r", KEY_RIGHTCTRL },
	{ "menu", KEY_COMPOSE }, { "esc", KEY_ESC }, { "1", KEY_1 }, { "2", KEY_2 },
	{ "3", KEY_3 }, { "4", KEY_4 }, { "5", KEY_5 }, { "6", KEY_6 }, { "7", KEY_7 },
	{ "8", KEY_8 }, { "9", KEY_9 }, { "0", KEY_0 }, { "minus", KEY_MINUS },
	{ "equal", KEY_EQUAL }, { "backspace", KEY_BACKSPACE }, { "tab", KEY_TAB },
	{ "q", KEY_Q }, { "w", KEY_W }, { "e", KEY_E }, { "r", KEY_R }, { "t", KEY_T },
	{ "y", KEY_Y }, { "u", KEY_U }, { "i", KEY_I }, { "o", KEY_O }, { "p", KEY_P },
	{ "bracket_left", KEY_LEFTBRACE }, { "bracket_right", KEY_RIGHTBRACE },
	{ "ret", KEY_ENTER }, { "a", KEY_A }, { "s", KEY_S }, { "d", KEY_D }, { "f", KEY_F },
	{ "g", KEY_G }, { "h", KEY_H }, { "j", KEY_J }, { "k", KEY_K }, { "l", KEY_L },
	{ "semicolon", KEY_SEMICOLON }, { "apostrophe", KEY_APOSTROPHE },
	{ "grave_accent", KEY_GRAVE }, { "backslash", KEY_BACKSLASH }, { "z", KEY_Z },
	{ "x", KEY_X }, { "c", KEY_C }, { "v", KEY_V }, { "b", KEY_B }, { "n", KEY_N },
	{ "m", KEY_M }, { "comma", KEY_COMMA }, { "dot", KEY_DOT }, { "slash", KEY_SLASH },
	{ "asterisk", KEY_KPASTERISK }, { "spc", KEY_SPACE }, { "caps_lock", KEY_CAPSLOCK },
	{ "f1", KEY_F1 }, { "f2", KEY_F2 }, { "f3", KEY_F3 }, { "f4", KEY_F4 }, { "f5", KEY_F5 },
	{ "f6", KEY_F6 }, { "f7", KEY_F7 }, { "f8", KEY_F8 }, { "f9", KEY_F9 },
	{ "f10", KEY_F10 }, { "num_lock", KEY_NUMLOCK }, { "scroll_lock", KEY_SCROLLLOCK },
	{ "kp_divide", KEY_KPSLASH }, { "kp_multiply", KEY_KPASTERISK },
	{ "kp_subtract", KEY_KPMINUS }, { "kp_add", KEY_KPPLUS }, { "kp_enter", KEY_KPENTER },
	{ "kp_decimal", KEY_KPDOT }, { "sysrq", KEY_SYSRQ }, { "kp_0", KEY_KP0 },
	{ "kp_1", KEY_KP1 }, { "kp_2", KEY_KP2 }, { "kp_3", KEY_KP3 }, { "kp_4", KEY_KP4 },
	{ "kp_5", KEY_KP5 }, { "kp_6", KEY_KP6 }, { "kp_7", KEY_KP7 }, { "kp_8", KEY_KP8 },
	{ "kp_9", KEY_KP9 }, { "less", KEY_102ND }, { "f11", KEY_F11 }, { "f12", KEY_F12 },
	{ "print", KEY_SYSRQ }, { "home", KEY_HOME }, { "pgup", KEY_PAGEUP },
	{ "pgdn", KEY_PAGEDOWN }, { "end", KEY_END }, { "left", KEY_LEFT }, { "up", KEY_UP },
	{ "down", KEY_DOWN }, { "right", KEY_RIGHT }, { "insert", KEY_INSERT },
	{ "delete", KEY_DELETE }, { "meta_l", KEY_LEFTMETA }, { "meta_r", KEY_RIGHTMETA },
	{ "compose", KEY_COMPOSE }, { "pause", KEY_PAUSE }, { "ro", KEY_RO }, { "yen", KEY_YEN },
	{ "henkan", KEY_HENKAN }, { "muhenkan", KEY_MUHENKAN },
	{ "katakanahiragana", KEY_KATAKANAHIRAGANA }, { "power", KEY_POWER },
	{ "sleep", KEY_SLEEP }, { "wake", KEY_WAKEUP }, { "audiomute", KEY_MUTE },
	{ "volumeup", KEY_VOLUMEUP }, { "volumedown", KEY_VOLUMEDOWN },
};
/* clang-format on */

int keymap_by_name(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(key_names); i++)
		if (strlen(key_names[i].name) == len && !memcmp(key_names[i].name, name, len))
			return key_names[i].code;
	return -ENOENT;
}

const char *keymap_name(unsigned code)
{
	for (size_t i = 0; i < ARRAY_SIZE(key_names); i++)
		if (key_names[i].code == code)
			return key_names[i].name;
	return NULL;
}

#define KEYMAP_COMBO_MAX 8

/* One combination [s, end): its keys pressed, then released in reverse. */
static int keymap_combo(const char *s, const char *end, struct i8042_key *out, unsigned max,
			unsigned *n, char *err, size_t errlen)
{
	uint16_t keys[KEYMAP_COMBO_MAX];
	unsigned nk = 0;

	for (const char *p = s; p <= end;) {
		const char *dash = memchr(p, '-', (size_t)(end - p));
		const char *w_end = dash ? dash : end;
		int code = keymap_by_name(p, (size_t)(w_end - p));

		if (code < 0) {
			snprintf(err, errlen,
				 "no key named '%.*s' (QEMU's sendkey names: a, ret, "
				 "ctrl, alt, delete, f1, ...)",
				 (int)MIN(w_end - p, 32), p);
			return -EINVAL;
		}
		if (nk == KEYMAP_COMBO_MAX) {
			snprintf(err, errlen, "'%.*s': more than %d keys at once",
				 (int)MIN(end - s, 64), s, KEYMAP_COMBO_MAX);
			return -EINVAL;
		}
		keys[nk++] = (uint16_t)code;
		p = w_end + 1;
	}
	if (*n + 2 * nk > max) {
		snprintf(err, errlen, "too many keys (at most %u presses and releases)", max);
		return -EINVAL;
	}
	for (unsigned i = 0; i < nk; i++)
		out[(*n)++] = (struct i8042_key){ .code = keys[i], .down = true };
	for (unsigned i = nk; i-- > 0;)
		out[(*n)++] = (struct i8042_key){ .code = keys[i], .down = false };
	return 0;
}

int keymap_parse_keys(const char *s, struct i8042_key *out, unsigned max, unsigned *n, char *err,
		      size_t errlen)
{
	*n = 0;
	while (*s) {
		size_t len;

		s += strspn(s, " \t");
		len = strcspn(s, " \t");
		if (!len)
			break;
		if (keymap_combo(s, s + len, out, max, n, err, errlen))
			return -EINVAL;
		s += len;
	}
	if (!*n) {
		snprintf(err, errlen, "no keys given");
		return -EINVAL;
	}
	return 0;
}

/* ---- X11 keysyms (RFB KeyEvent), US layout ---- */

/* A keysym or XT code and the key it names. */
struct code_map {
	uint32_t from;
	uint16_t code;
};

/* Printable ASCII: the key, with bit 15 when Shift types it. */
#define SHIFTED 0x8000
/* clang-format off */
static const uint16_t ascii_keys[128] = {
	[' '] = KEY_SPACE, ['!'] = SHIFTED | KEY_1, ['"'] = SHIFTED | KEY_APOSTROPHE,
	['#'] = SHIFTED | KEY_3, ['$'] = SHIFTED | KEY_4, ['%'] = SHIFTED | KEY_5,
	['&'] = SHIFTED | KEY_7, ['\''] = KEY_APOSTROPHE, ['('] = SHIFTED | KEY_9,
	[')'] = SHIFTED | KEY_0, ['*'] = SHIFTED | KEY_8, ['+'] = SHIFTED | KEY_EQUAL,
	[','] = KEY_COMMA, ['-'] = KEY_MINUS, ['.'] = KEY_DOT, ['/'] = KEY_SLASH,
	['0'] = KEY_0, ['1'] = KEY_1, ['2'] = KEY_2, ['3'] = KEY_3, ['4'] = KEY_4,
	['5'] = KEY_5, ['6'] = KEY_6, ['7'] = KEY_7, ['8'] = KEY_8, ['9'] = KEY_9,
	[':'] = SHIFTED | KEY_SEMICOLON, [';'] = KEY_SEMICOLON, ['<'] = SHIFTED | KEY_COMMA,
	['='] = KEY_EQUAL, ['>'] = SHIFTED | KEY_DOT, ['?'] = SHIFTED | KEY_SLASH,
	['@'] = SHIFTED | KEY_2, ['['] = KEY_LEFTBRACE, ['\\'] = KEY_BACKSLASH,
	[']'] = KEY_RIGHTBRACE, ['^'] = SHIFTED | KEY_6, ['_'] = SHIFTED | KEY_MINUS,
	['`'] = KEY_GRAVE, ['{'] = SHIFTED | KEY_LEFTBRACE, ['|'] = SHIFTED | KEY_BACKSLASH,
	['}'] = SHIFTED | KEY_RIGHTBRACE, ['~'] = SHIFTED | KEY_GRAVE,
};
/* clang-format on */

static const uint16_t letter_keys[26] = {
	KEY_A, KEY_B, KEY_C, KEY_D, KEY_E, KEY_F, KEY_G, KEY_H, KEY_I, KEY_J, KEY_K, KEY_L, KEY_M,
	KEY_N, KEY_O, KEY_P, KEY_Q, KEY_R, KEY_S, KEY_T, KEY_U, KEY_V, KEY_W, KEY_X, KEY_Y, KEY_Z,
};

/* The function and keypad keysyms of X11's keysymdef.h. */
static const struct code_map keysym_keys[] = {
	{ 0xff08, KEY_BACKSPACE },  { 0xff09, KEY_TAB },
	{ 0xff0d, KEY_ENTER },	    { 0xff13, KEY_PAUSE },
	{ 0xff14, KEY_SCROLLLOCK }, { 0xff15, KEY_SYSRQ },
	{ 0xff1b, KEY_ESC },	    { 0xff50, KEY_HOME },
	{ 0xff51, KEY_LEFT },	    { 0xff52, KEY_UP },
	{ 0xff53, KEY_RIGHT },	    { 0xff54, KEY_DOWN },
	{ 0xff55, KEY_PAGEUP },	    { 0xff56, KEY_PAGEDOWN },
	{ 0xff57, KEY_END },	    { 0xff61, KEY_SYSRQ },
	{ 0xff63, KEY_INSERT },	    { 0xff67, KEY_COMPOSE },
	{ 0xff7f, KEY_NUMLOCK },    { 0xff8d, KEY_KPENTER },
	{ 0xff95, KEY_KP7 },	    { 0xff96, KEY_KP4 },
	{ 0xff97, KEY_KP8 },	    { 0xff98, KEY_KP6 },
	{ 0xff99, KEY_KP2 },	    { 0xff9a, KEY_KP9 },
	{ 0xff9b, KEY_KP3 },	    { 0xff9c, KEY_KP1 },
	{ 0xff9d, KEY_KP5 },	    { 0xff9e, KEY_KP0 },
	{ 0xff9f, KEY_KPDOT },	    { 0xffaa, KEY_KPASTERISK },
	{ 0xffab, KEY_KPPLUS },	    { 0xffac, KEY_KPDOT },
	{ 0xffad, KEY_KPMINUS },    { 0xffae, KEY_KPDOT },
	{ 0xffaf, KEY_KPSLASH },    { 0xffb0, KEY_KP0 },
	{ 0xffb1, KEY_KP1 },	    { 0xffb2, KEY_KP2 },
	{ 0xffb3, KEY_KP3 },	    { 0xffb4, KEY_KP4 },
	{ 0xffb5, KEY_KP5 },	    { 0xffb6, KEY_KP6 },
	{ 0xffb7, KEY_KP7 },	    { 0xffb8, KEY_KP8 },
	{ 0xffb9, KEY_KP9 },	    { 0xffbe, KEY_F1 },
	{ 0xffbf, KEY_F2 },	    { 0xffc0, KEY_F3 },
	{ 0xffc1, KEY_F4 },	    { 0xffc2, KEY_F5 },
	{ 0xffc3, KEY_F6 },	    { 0xffc4, KEY_F7 },
	{ 0xffc5, KEY_F8 },	    { 0xffc6, KEY_F9 },
	{ 0xffc7, KEY_F10 },	    { 0xffc8, KEY_F11 },
	{ 0xffc9, KEY_F12 },	    { 0xffe1, KEY_LEFTSHIFT },
	{ 0xffe2, KEY_RIGHTSHIFT }, { 0xffe3, KEY_LEFTCTRL },
	{ 0xffe4, KEY_RIGHTCTRL },  { 0xffe5, KEY_CAPSLOCK },
	{ 0xffe7, KEY_LEFTMETA },   { 0xffe8, KEY_RIGHTMETA },
	{ 0xffe9, KEY_LEFTALT },    { 0xffea, KEY_RIGHTALT },
	{ 0xffeb, KEY_LEFTMETA },   { 0xffec, KEY_RIGHTMETA },
	{ 0xffff, KEY_DELETE },	    { 0xfe03, KEY_RIGHTALT }, /* ISO_Level3_Shift: AltGr */
};

#define XK_ISO_LEFT_TAB 0xfe20

int keymap_from_keysym(uint32_t keysym, bool *shift)
{
	*shift = false;
	if (keysym >= 'a' && keysym <= 'z')
		return letter_keys[keysym - 'a'];
	if (keysym >= 'A' && keysym <= 'Z') {
		*shift = true;
		return letter_keys[keysym - 'A'];
	}
	if (keysym < ARRAY_SIZE(ascii_keys) && ascii_keys[keysym]) {
		*shift = ascii_keys[keysym] & SHIFTED;
		return ascii_keys[keysym] & ~SHIFTED;
	}
	if (keysym == XK_ISO_LEFT_TAB) {
		*shift = true;
		return KEY_TAB;
	}
	for (size_t i = 0; i < ARRAY_SIZE(keysym_keys); i++)
		if (keysym_keys[i].from == keysym)
			return keysym_keys[i].code;
	return -ENOENT;
}

/* ---- XT scan codes (QEMU's RFB extended key event) ---- */

/* Linux numbers the keys of the PC/XT keyboard by their set 1 codes, up to
 * F12 (0x58); the rest are listed. */
#define XT_SAME_AS_CODE_MAX 0x58
#define XT_E0		    0x80

/* clang-format off */
static const struct code_map xt_keys[] = {
	{ 0x54, KEY_SYSRQ }, { 0x70, KEY_KATAKANAHIRAGANA }, { 0x73, KEY_RO },
	{ 0x79, KEY_HENKAN }, { 0x7b, KEY_MUHENKAN }, { 0x7d, KEY_YEN },
	{ XT_E0 | 0x1c, KEY_KPENTER }, { XT_E0 | 0x1d, KEY_RIGHTCTRL },
	{ XT_E0 | 0x20, KEY_MUTE }, { XT_E0 | 0x2e, KEY_VOLUMEDOWN },
	{ XT_E0 | 0x30, KEY_VOLUMEUP }, { XT_E0 | 0x35, KEY_KPSLASH },
	{ XT_E0 | 0x37, KEY_SYSRQ }, { XT_E0 | 0x38, KEY_RIGHTALT },
	{ XT_E0 | 0x46, KEY_PAUSE },  /* what VNC viewers send for Pause */
	{ XT_E0 | 0x47, KEY_HOME }, { XT_E0 | 0x48, KEY_UP }, { XT_E0 | 0x49, KEY_PAGEUP },
	{ XT_E0 | 0x4b, KEY_LEFT }, { XT_E0 | 0x4d, KEY_RIGHT }, { XT_E0 | 0x4f, KEY_END },
	{ XT_E0 | 0x50, KEY_DOWN }, { XT_E0 | 0x51, KEY_PAGEDOWN },
	{ XT_E0 | 0x52, KEY_INSERT }, { XT_E0 | 0x53, KEY_DELETE },
	{ XT_E0 | 0x5b, KEY_LEFTMETA }, { XT_E0 | 0x5c, KEY_RIGHTMETA },
	{ XT_E0 | 0x5d, KEY_COMPOSE }, { XT_E0 | 0x5e, KEY_POWER },
	{ XT_E0 | 0x5f, KEY_SLEEP }, { XT_E0 | 0x63, KEY_WAKEUP },
};
/* clang-format on */

int keymap_from_xt(uint32_t xt)
{
	if (xt >= 1 && xt <= XT_SAME_AS_CODE_MAX && xt != 0x54 && xt != 0x55)
		return (int)xt;
	for (size_t i = 0; i < ARRAY_SIZE(xt_keys); i++)
		if (xt_keys[i].from == xt)
			return xt_keys[i].code;
	return -ENOENT;
}
