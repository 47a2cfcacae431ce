/* Host key names, keysyms and XT codes -> Linux key codes (src/input/keymap.c),
 * checked against the emulated keyboard itself: every name is a key it has,
 * and an XT code names the key whose set 1 make code it is. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <linux/input-event-codes.h>

#include "kestrel/devices.h"
#include "kestrel/keymap.h"
#include "fake_board.h"

/* clang-format off */
static const char *const names[] = {
	"shift", "shift_r", "alt", "alt_r", "ctrl", "ctrl_r", "menu", "esc", "1", "0", "minus",
	"equal", "backspace", "tab", "q", "bracket_left", "bracket_right", "ret", "a", "semicolon",
	"apostrophe", "grave_accent", "backslash", "z", "comma", "dot", "slash", "asterisk", "spc",
	"caps_lock", "f1", "f10", "num_lock", "scroll_lock", "kp_divide", "kp_multiply",
	"kp_subtract", "kp_add", "kp_enter", "kp_decimal", "sysrq", "kp_0", "kp_9", "less", "f11",
	"f12", "print", "home", "pgup", "pgdn", "end", "left", "up", "down", "right", "insert",
	"delete", "meta_l", "meta_r", "compose", "pause", "ro", "yen", "henkan", "muhenkan",
	"katakanahiragana", "power", "sleep", "wake", "audiomute", "volumeup", "volumedown",
};
/* clang-format on */

START_TEST(test_names)
{
	int n;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		n = keymap_by_name(names[i], strlen(names[i]));
		ck_assert_msg(n > 0, "%s", names[i]);
		ck_assert_msg(i8042_has_key((unsigned)n), "%s: the keyboard has no key %d",
			      names[i], n);
		ck_assert_int_eq(keymap_by_name(keymap_name((unsigned)n),
						strlen(keymap_name((unsigned)n))),
				 n);
	}
	ck_assert_int_eq(keymap_by_name("ret", 3), KEY_ENTER);
	ck_assert_int_eq(keymap_by_name("retx", 3), KEY_ENTER); /* by length */
	ck_assert_int_eq(keymap_by_name("Ret", 3), -ENOENT);
	ck_assert_int_eq(keymap_by_name("", 0), -ENOENT);
	ck_assert_int_eq(keymap_by_name("del", 3), -ENOENT);
	ck_assert_ptr_null(keymap_name(0));
	ck_assert_str_eq(keymap_name(KEY_SYSRQ), "sysrq");
}
END_TEST

START_TEST(test_parse)
{
	struct i8042_key k[I8042_MAX_KEYS];
	char err[200];
	unsigned n;

	ck_assert_int_eq(
		keymap_parse_keys("ctrl-alt-delete", k, I8042_MAX_KEYS, &n, err, sizeof(err)), 0);
	ck_assert_uint_eq(n, 6);
	ck_assert(k[0].code == KEY_LEFTCTRL && k[0].down && k[2].code == KEY_DELETE && k[2].down);
	ck_assert(k[3].code == KEY_DELETE && !k[3].down && k[5].code == KEY_LEFTCTRL && !k[5].down);
	ck_assert_int_eq(keymap_parse_keys("\tminus  shift-equal ", k, 8, &n, err, sizeof(err)), 0);
	ck_assert_uint_eq(n, 6);
	ck_assert(k[0].code == KEY_MINUS && k[2].code == KEY_LEFTSHIFT && k[3].code == KEY_EQUAL);
	ck_assert_int_eq(keymap_parse_keys("a b c d e", k, 8, &n, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "too many"));
	ck_assert_int_eq(keymap_parse_keys("ctrl-x-dlete", k, 8, &n, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "'dlete'"));
	ck_assert_int_eq(keymap_parse_keys("-a", k, 8, &n, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(keymap_parse_keys("a--b", k, 8, &n, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(keymap_parse_keys(" ", k, 8, &n, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "no keys"));
	ck_assert_int_eq(keymap_parse_keys("a-a-a-a-a-a-a-a-a", k, 64, &n, err, sizeof(err)),
			 -EINVAL);
	ck_assert_int_eq(keymap_parse_keys("a-a-a-a-a-a-a-a", k, 64, &n, err, sizeof(err)), 0);
}
END_TEST

/* Every printable ASCII character is typed by one US key, with Shift where
 * a US keyboard needs it. */
START_TEST(test_keysyms)
{
	static const char shifted[] = "~!@#$%^&*()_+{}|:\"<>?ABCDEFGHIJKLMNOPQRSTUVWXYZ";
	bool shift;
	int code;

	for (uint32_t c = 0x20; c < 0x7f; c++) {
		code = keymap_from_keysym(c, &shift);
		ck_assert_msg(code > 0 && i8042_has_key((unsigned)code), "keysym %#x", c);
		ck_assert_msg(shift == (strchr(shifted, (int)c) != NULL), "keysym '%c'", (char)c);
	}
	ck_assert_int_eq(keymap_from_keysym('a', &shift), KEY_A);
	ck_assert_int_eq(keymap_from_keysym('Q', &shift), KEY_Q);
	ck_assert(shift);
	ck_assert_int_eq(keymap_from_keysym('|', &shift), KEY_BACKSLASH);
	ck_assert_int_eq(keymap_from_keysym(0xff0d, &shift), KEY_ENTER);
	ck_assert(!shift);
	ck_assert_int_eq(keymap_from_keysym(0xfe20, &shift), KEY_TAB); /* ISO_Left_Tab */
	ck_assert(shift);
	ck_assert_int_eq(keymap_from_keysym(0xffe3, &shift), KEY_LEFTCTRL);
	ck_assert_int_eq(keymap_from_keysym(0xffff, &shift), KEY_DELETE);
	ck_assert_int_eq(keymap_from_keysym(0xffc9, &shift), KEY_F12);
	ck_assert_int_eq(keymap_from_keysym(0x00e9, &shift), -ENOENT); /* eacute: no US key */
	ck_assert_int_eq(keymap_from_keysym(0x7f, &shift), -ENOENT);
	ck_assert_int_eq(keymap_from_keysym(0x1000041, &shift), -ENOENT);
	for (uint32_t ks = 0xff00; ks <= 0xffff; ks++) {
		code = keymap_from_keysym(ks, &shift);
		ck_assert(code == -ENOENT || i8042_has_key((unsigned)code));
	}
}
END_TEST

/* The set 1 make code a key sends (the controller translating) as an XT
 * code: one byte, or E0 xx as 0x80 | xx. */
static int xt_of_key(struct device *k, unsigned code)
{
	struct i8042_key ev[2] = { { (uint16_t)code, true }, { (uint16_t)code, false } };
	uint8_t b[16];
	int n = 0;

	ck_assert_int_eq(i8042_keys(k, ev, 2), 0);
	while (k->ops->read(k, 1, 0, 1) & 1)
		b[n++] = (uint8_t)k->ops->read(k, 0, 0, 1);
	if (n == 2)
		return b[0];
	ck_assert_int_eq(n, 4);
	ck_assert_uint_eq(b[0], 0xe0);
	ck_assert_uint_lt(b[1], 0x80);
	return 0x80 | b[1];
}

START_TEST(test_xt_matches_the_keyboard)
{
	struct device *k = i8042_create(NULL, NULL, NULL);
	int nx = 0;

	/* Every key but the two with sequences of their own round-trips. */
	for (unsigned code = 1; code <= KEY_MAX; code++) {
		if (!i8042_has_key(code) || code == KEY_PAUSE || code == KEY_SYSRQ)
			continue;
		int xt = xt_of_key(k, code);

		ck_assert_msg(keymap_from_xt((uint32_t)xt) == (int)code,
			      "key %u sends XT %#x, "
			      "which keymap_from_xt reads as %d",
			      code, xt, keymap_from_xt((uint32_t)xt));
	}
	/* And every XT code it knows names a key that sends it. */
	for (uint32_t xt = 0; xt < 0x200; xt++) {
		int code = keymap_from_xt(xt);

		if (code < 0)
			continue;
		nx++;
		ck_assert(i8042_has_key((unsigned)code));
		if (code != KEY_PAUSE && code != KEY_SYSRQ)
			ck_assert_int_eq(xt_of_key(k, (unsigned)code), (int)xt);
	}
	ck_assert_int_ge(nx, 110);
	ck_assert_int_eq(keymap_from_xt(0x9d), KEY_RIGHTCTRL);
	ck_assert_int_eq(keymap_from_xt(0xc6), KEY_PAUSE);
	ck_assert_int_eq(keymap_from_xt(0xb7), KEY_SYSRQ);
	ck_assert_int_eq(keymap_from_xt(0x54), KEY_SYSRQ);
	ck_assert_int_eq(keymap_from_xt(0), -ENOENT);
	ck_assert_int_eq(keymap_from_xt(0x55), -ENOENT);
	ck_assert_int_eq(keymap_from_xt(0xe01d), -ENOENT);
	k->ops->destroy(k);
}
END_TEST

SUITE_MAIN("keymap", "core", NULL, NULL, 0, test_names, test_parse, test_keysyms,
	   test_xt_matches_the_keyboard)
