/* Between the i8042 controller (i8042.c) and the two PS/2 devices on its
 * ports, the keyboard (ps2_kbd.c) and the mouse (ps2_mouse.c). Internal to
 * this folder: the board sees only the controller (kestrel/devices.h).
 *
 * A device is plain data owned by the controller and driven under the
 * controller's device lock. The controller hands it the bytes the guest
 * writes for it (ps2_*_write), pulls the bytes it sends back one at a time
 * when its output buffer is free and the port is not inhibited
 * (ps2_*_pending / ps2_*_read), and passes host input on (keys, motion).
 * Save and load work on a caller's copy so that a failed load changes
 * nothing. */
#ifndef KESTREL_PS2_H
#define KESTREL_PS2_H

#include <stdbool.h>
#include <stdint.h>

#include "kestrel/state.h"
#include "kestrel/util.h"

/* Replies shared by both devices (IBM PS/2 Technical Reference). */
#define PS2_REPLY_ACK	 0xfa
#define PS2_REPLY_RESEND 0xfe
#define PS2_REPLY_BAT_OK 0xaa /* basic assurance test passed, after a reset */

/* A device's transmit buffer. Real devices hold 16 bytes; a virtual one
 * holds more so that host input typed faster than a slow (or paused) guest
 * reads it is kept, not dropped. */
#define PS2_QUEUE_SIZE 256

struct ps2_queue {
	uint8_t data[PS2_QUEUE_SIZE];
	uint16_t head, count;
};

static inline unsigned ps2_queue_room(const struct ps2_queue *q)
{
	return PS2_QUEUE_SIZE - q->count;
}

static inline void ps2_queue_clear(struct ps2_queue *q)
{
	q->head = 0;
	q->count = 0;
}

/* False (and nothing stored) when full. */
static inline bool ps2_queue_put(struct ps2_queue *q, uint8_t v)
{
	if (q->count == PS2_QUEUE_SIZE)
		return false;
	q->data[(q->head + q->count) % PS2_QUEUE_SIZE] = v;
	q->count++;
	return true;
}

/* The next byte; the queue must not be empty. */
static inline uint8_t ps2_queue_get(struct ps2_queue *q)
{
	uint8_t v = q->data[q->head];

	q->head = (q->head + 1) % PS2_QUEUE_SIZE;
	q->count--;
	return v;
}

/* The bytes in order: a count, then the bytes. */
static inline void ps2_queue_save(const struct ps2_queue *q, struct state_buf *out)
{
	state_put_u16(out, q->count);
	for (unsigned i = 0; i < q->count; i++)
		state_put_u8(out, q->data[(q->head + i) % PS2_QUEUE_SIZE]);
}

static inline bool ps2_queue_load(struct ps2_queue *q, struct state_buf *in)
{
	unsigned n = state_get_u16(in);

	ps2_queue_clear(q);
	if (n > PS2_QUEUE_SIZE)
		return false;
	for (unsigned i = 0; i < n; i++)
		q->data[i] = state_get_u8(in);
	q->count = (uint16_t)n;
	return !in->error;
}

/* ---- keyboard (ps2_kbd.c) ---- */

struct ps2_kbd {
	struct ps2_queue reply; /* command replies: sent before pending scancodes */
	struct ps2_queue keys;	/* scancodes of host key events */
	uint8_t pending_cmd;	/* command waiting for its argument byte, or 0 */
	uint8_t scanset;	/* 1 or 2 */
	uint8_t leds;		/* ED argument: bit 0 Scroll, 1 Num, 2 Caps Lock */
	uint8_t typematic;	/* F3 argument: delay bits 5-6, rate bits 0-4 */
	bool scanning;		/* F4/F5: key events are reported */
	uint8_t last;		/* last byte sent, for the resend command */
	uint8_t mods;		/* host modifier keys held (PS2_MOD_*) */
};

/* The host's modifier keys held down, which change what PrintScreen and
 * Pause send (one bit per key, so that releasing one of two held keeps the
 * other). */
#define PS2_MOD_LCTRL  0x01
#define PS2_MOD_RCTRL  0x02
#define PS2_MOD_LSHIFT 0x04
#define PS2_MOD_RSHIFT 0x08
#define PS2_MOD_LALT   0x10
#define PS2_MOD_RALT   0x20
#define PS2_MOD_ALL    0x3f

/* A key as the host presses it: a Linux input key code (KEY_* of
 * linux/input-event-codes.h), down or up. */
struct ps2_key_event {
	uint16_t code;
	bool down;
};

void ps2_kbd_reset(struct ps2_kbd *k);
void ps2_kbd_write(struct ps2_kbd *k, uint8_t v);
bool ps2_kbd_pending(const struct ps2_kbd *k);
uint8_t ps2_kbd_read(struct ps2_kbd *k);
/* Queue the scancodes of n key events, all or none: 0, -EINVAL (a code the
 * keyboard has no key for), -ENOSPC (the buffer cannot take them all),
 * -EAGAIN (scanning is disabled: the guest turned the keyboard off). */
int ps2_kbd_keys(struct ps2_kbd *k, const struct ps2_key_event *ev, unsigned n) WARN_UNUSED;
bool ps2_kbd_has_key(unsigned code);
/* The i8042's translation of a scan code set 2 byte to set 1. */
uint8_t ps2_set2_to_set1(uint8_t v);
void ps2_kbd_save(const struct ps2_kbd *k, struct state_buf *out);
int ps2_kbd_load(struct ps2_kbd *k, struct state_buf *in) WARN_UNUSED;

/* ---- mouse (ps2_mouse.c) ---- */

struct ps2_mouse {
	struct ps2_queue q;  /* replies and movement packets, in order */
	uint8_t pending_cmd; /* F3 or E8 waiting for its argument, or 0 */
	uint8_t status;	     /* PS2_MOUSE_ST_REMOTE | _ENABLED | _SCALE21 */
	uint8_t resolution;  /* 0..3: 1, 2, 4, 8 counts/mm */
	uint8_t rate;	     /* samples/s */
	uint8_t id;	     /* 0 standard, 3 IntelliMouse (wheel) */
	uint8_t knock[3];    /* the last three sample rates set, newest last */
	bool wrap;	     /* echo mode (EE .. EC) */
	int32_t dx, dy, dz;  /* movement not yet reported, in PS/2 axes (y up) */
	uint8_t buttons;     /* host buttons held: bit 0 left, 1 right, 2 middle */
	uint8_t reported;    /* buttons in the last packet */
	uint8_t last[4];     /* last packet, for the resend command */
	uint8_t last_len;
};

#define PS2_MOUSE_ST_REMOTE  0x40
#define PS2_MOUSE_ST_ENABLED 0x20
#define PS2_MOUSE_ST_SCALE21 0x10
#define PS2_MOUSE_BUTTONS    0x07

void ps2_mouse_reset(struct ps2_mouse *m);
void ps2_mouse_write(struct ps2_mouse *m, uint8_t v);
bool ps2_mouse_pending(const struct ps2_mouse *m);
uint8_t ps2_mouse_read(struct ps2_mouse *m);
/* Host motion: dx right, dy down (screen axes), dz wheel notches towards the
 * user; buttons PS2_MOUSE_BUTTONS. 0, or -EAGAIN while the guest has
 * reporting disabled (the motion is dropped, as a real mouse does). */
int ps2_mouse_event(struct ps2_mouse *m, int dx, int dy, int dz, unsigned buttons) WARN_UNUSED;
void ps2_mouse_save(const struct ps2_mouse *m, struct state_buf *out);
int ps2_mouse_load(struct ps2_mouse *m, struct state_buf *in) WARN_UNUSED;

#endif
