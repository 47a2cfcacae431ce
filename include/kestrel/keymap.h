/* Names and codes of keys on the host side (src/input/keymap.c): what the
 * control socket's send-key and a VNC client say, turned into the Linux
 * input key codes (KEY_* of linux/input-event-codes.h) the emulated
 * keyboard takes (i8042_keys). */
#ifndef KESTREL_KEYMAP_H
#define KESTREL_KEYMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/util.h"

struct i8042_key;

/* A key by its name in QEMU's sendkey (QKeyCode) vocabulary: "a", "ret",
 * "ctrl", "alt_r", "delete", "kp_add", "f12", ... The key code, or -ENOENT. */
int keymap_by_name(const char *name, size_t len);
/* The name of a key code (the first one listed for it), or NULL. */
const char *keymap_name(unsigned code);
/* Keys as `kestrel ctl NAME send-key` takes them: combinations separated by
 * spaces, the keys of one joined by '-' ("ctrl-alt-delete", "shift-a b
 * ret"). Each combination is pressed in order and released in reverse.
 * Writes the events to out (at most max) and their count to *n; 0, or
 * -EINVAL with one line in err naming the word at fault. */
int keymap_parse_keys(const char *s, struct i8042_key *out, unsigned max, unsigned *n, char *err,
		      size_t errlen) WARN_UNUSED;
/* An X11 keysym (RFB KeyEvent) on a US layout: the key code, and in *shift
 * whether the character needs Shift (a for 'a', Shift+a for 'A'). -ENOENT
 * for a keysym no US key types. */
int keymap_from_keysym(uint32_t keysym, bool *shift);
/* An XT scan code as QEMU's RFB extended key event carries it (an E0
 * prefix as bit 7 of a two-byte code: E0 1D is 0x9d). -ENOENT if unknown. */
int keymap_from_xt(uint32_t xt);

#endif
