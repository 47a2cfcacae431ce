/* The VNC server's input: RFB KeyEvent (X11 keysyms, turned into keys of a
 * US keyboard), QEMU's extended key event (XT scan codes: the key the client
 * pressed, whatever its layout; RFB community spec, "QEMU Extended Key
 * Event"), and PointerEvent (absolute positions, sent to the PS/2 mouse as
 * the motion since the last one: the guest's driver decides where its own
 * pointer goes, acceleration included, so the two pointers need not line
 * up; an absolute device such as a USB tablet would make them). All of it
 * runs on the server's thread, inside rfbProcessEvents. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/input-event-codes.h>

#include "kestrel/devices.h"
#include "kestrel/keymap.h"
#include "vnc_priv.h"

/* RFB PointerEvent button mask (RFC 6143 7.5.5): 1 left, 2 middle, 4 right,
 * 8 and 16 the wheel up and down (one notch per press). */
#define RFB_BTN_LEFT   0x01
#define RFB_BTN_MIDDLE 0x02
#define RFB_BTN_RIGHT  0x04
#define RFB_WHEEL_UP   0x08
#define RFB_WHEEL_DOWN 0x10
/* i8042_mouse's buttons */
#define PS2_LEFT       0x01
#define PS2_RIGHT      0x02
#define PS2_MIDDLE     0x04

/* QEMU extended key event: type 255, subtype 0, then u16 down, u32 keysym,
 * u32 XT keycode (big-endian). */
#define QEMU_EXT_KEY_SUBTYPE 0
#define QEMU_EXT_KEY_REST    11 /* bytes after the type */

struct vnc_client {
	bool shift_l, shift_r; /* the client's Shift keys, as its key events said */
	bool qemu_ack;	       /* owes the client the extended key event's ack */
};

static struct vnc *vnc_of(rfbClientPtr cl)
{
	return cl->screen->screenData;
}

void vnc_send_keys(struct vnc *v, const struct i8042_key *keys, unsigned n)
{
	int rc = 0;

	pthread_mutex_lock(&v->lock);
	if (v->kbc)
		rc = i8042_keys(v->kbc, keys, n);
	pthread_mutex_unlock(&v->lock);
	/* -EAGAIN: the guest has the keyboard off; -ENOSPC: it does not read
	 * it. Either way the key is lost, as on a real keyboard. */
	if (rc && rc != -EAGAIN && rc != -ENOSPC)
		kdebug("vnc: key not sent: %s", strerror(-rc));
}

/* A keysym: the key that types it on a US layout. For a character, Shift is
 * pressed or released around the key when the character needs the other
 * Shift state than the client holds ('!' from a client that sends keysyms
 * alone); other keys (arrows, F1, Ctrl) keep the client's Shift. A release
 * is the key's release alone. */
static void vnc_kbd_event(rfbBool down, rfbKeySym keysym, rfbClientPtr cl)
{
	struct vnc_client *c = cl->clientData;
	struct i8042_key ev[4];
	unsigned n = 0;
	bool need_shift, held;
	int code = keymap_from_keysym(keysym, &need_shift);
	/* Only a character's keysym says which Shift state it needs. */
	bool is_char = keysym >= 0x20 && keysym < 0x7f;

	if (code < 0 || !c)
		return;
	if (code == KEY_LEFTSHIFT)
		c->shift_l = down;
	if (code == KEY_RIGHTSHIFT)
		c->shift_r = down;
	held = c->shift_l || c->shift_r;
	if (down && is_char && need_shift && !held)
		ev[n++] = (struct i8042_key){ KEY_LEFTSHIFT, true };
	if (down && is_char && !need_shift && c->shift_l)
		ev[n++] = (struct i8042_key){ KEY_LEFTSHIFT, false };
	if (down && is_char && !need_shift && c->shift_r)
		ev[n++] = (struct i8042_key){ KEY_RIGHTSHIFT, false };
	ev[n++] = (struct i8042_key){ (uint16_t)code, down };
	/* Put the Shift keys back as the client holds them. */
	for (unsigned i = 0, m = n - 1; i < m; i++)
		ev[n++] = (struct i8042_key){ ev[i].code, !ev[i].down };
	vnc_send_keys(vnc_of(cl), ev, n);
}

static void vnc_ptr_event(int mask, int x, int y, rfbClientPtr cl)
{
	struct vnc *v = vnc_of(cl);
	int dz = 0, b = 0, rc = 0;

	/* A wheel notch is its button going down. */
	if ((mask & RFB_WHEEL_UP) && !(v->buttons & RFB_WHEEL_UP))
		dz--;
	if ((mask & RFB_WHEEL_DOWN) && !(v->buttons & RFB_WHEEL_DOWN))
		dz++;
	b |= mask & RFB_BTN_LEFT ? PS2_LEFT : 0;
	b |= mask & RFB_BTN_MIDDLE ? PS2_MIDDLE : 0;
	b |= mask & RFB_BTN_RIGHT ? PS2_RIGHT : 0;
	if (!v->pointer_seen) {
		v->pointer_x = x;
		v->pointer_y = y;
		v->pointer_seen = true;
	}
	pthread_mutex_lock(&v->lock);
	if (v->kbc)
		rc = i8042_mouse(v->kbc, x - v->pointer_x, y - v->pointer_y, dz, (unsigned)b);
	pthread_mutex_unlock(&v->lock);
	(void)rc; /* -EAGAIN: the guest's mouse is off; the motion is dropped */
	v->pointer_x = x;
	v->pointer_y = y;
	v->buttons = mask;
}

/* ---- QEMU extended key event (pseudo-encoding -258) ---- */

/* The client asked for it in SetEncodings; the server says yes with an
 * empty FramebufferUpdate rectangle of that encoding (vnc_input_acks). */
static rfbBool vnc_qemu_enable(rfbClientPtr cl, void **data, int encoding)
{
	struct vnc_client *c = cl->clientData;

	(void)data;
	if ((uint32_t)encoding != rfbEncodingQemuExtendedKeyEvent || !c)
		return FALSE;
	c->qemu_ack = true;
	kdebug("vnc: %s: asks for QEMU's extended key event", cl->host);
	return TRUE;
}

/* QEMU acknowledges in the middle of SetEncodings. Here the ack waits until
 * libvncserver has sent its SupportedMessages rectangle (with the client's
 * first update), because a client that reads that list (libvncclient)
 * replaces what it knew with it and would forget the extension. Called
 * between two rounds of rfbProcessEvents, never inside an update. */
static void vnc_ack(rfbClientPtr cl)
{
	struct {
		uint8_t type, pad;
		uint16_t nrects;
		uint16_t x, y, w, h;
		uint32_t encoding;
	} __attribute__((packed)) ack = {
		.type = rfbFramebufferUpdate,
		.nrects = htons(1),
		.encoding = htonl((uint32_t)rfbEncodingQemuExtendedKeyEvent),
	};
	int rc;

	LOCK(cl->sendMutex);
	rc = rfbWriteExact(cl, (const char *)&ack, sizeof(ack));
	UNLOCK(cl->sendMutex);
	if (rc < 0)
		rfbCloseClient(cl);
}

void vnc_input_acks(struct vnc *v)
{
	rfbClientIteratorPtr it = rfbGetClientIterator(v->screen);
	rfbClientPtr cl;

	while ((cl = rfbClientIteratorNext(it))) {
		struct vnc_client *c = cl->clientData;

		if (c && c->qemu_ack && cl->sock >= 0 && !cl->enableSupportedMessages) {
			c->qemu_ack = false;
			kdebug("vnc: %s: QEMU extended key event acknowledged", cl->host);
			vnc_ack(cl);
		}
	}
	rfbReleaseClientIterator(it);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The client's message: the XT code names the key; a code we do not know
 * falls back to the keysym. */
static rfbBool vnc_qemu_message(rfbClientPtr cl, void *data, const rfbClientToServerMsg *msg)
{
	uint8_t b[QEMU_EXT_KEY_REST];
	struct i8042_key ev;
	int code;

	(void)data;
	if (msg->type != rfbQemuEvent)
		return FALSE;
	if (rfbReadExact(cl, (char *)b, sizeof(b)) <= 0) {
		rfbCloseClient(cl);
		return TRUE;
	}
	if (b[0] != QEMU_EXT_KEY_SUBTYPE) {
		/* Another QEMU message (audio): its length is unknown here. */
		rfbCloseClient(cl);
		return TRUE;
	}
	code = keymap_from_xt(be32(b + 7));
	if (code < 0) {
		if (be32(b + 3))
			vnc_kbd_event(b[1] | b[2], be32(b + 3), cl);
		return TRUE;
	}
	ev = (struct i8042_key){ (uint16_t)code, (b[1] | b[2]) != 0 };
	vnc_send_keys(vnc_of(cl), &ev, 1);
	return TRUE;
}

static int vnc_qemu_encodings[] = { (int)rfbEncodingQemuExtendedKeyEvent, 0 };

static rfbProtocolExtension vnc_qemu_ext = {
	.pseudoEncodings = vnc_qemu_encodings,
	.enablePseudoEncoding = vnc_qemu_enable,
	.handleMessage = vnc_qemu_message,
};

static void vnc_register_qemu_ext(void)
{
	rfbRegisterProtocolExtension(&vnc_qemu_ext);
}

/* The LEDs the guest set, in libvncserver's KeyboardLedState bits, which
 * are the PS/2 ED bits (0 Scroll, 1 Num, 2 Caps Lock). */
static int vnc_leds(rfbScreenInfoPtr screen)
{
	struct vnc *v = screen->screenData;
	int leds = 0;

	pthread_mutex_lock(&v->lock);
	if (v->kbc)
		leds = (int)i8042_kbd_leds(v->kbc);
	pthread_mutex_unlock(&v->lock);
	return leds;
}

static void vnc_client_gone(rfbClientPtr cl)
{
	free(cl->clientData);
	cl->clientData = NULL;
}

void vnc_input_client(rfbClientPtr cl)
{
	cl->clientData = calloc(1, sizeof(struct vnc_client));
	cl->clientGoneHook = vnc_client_gone;
}

void vnc_input_init(struct vnc *v)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	v->screen->kbdAddEvent = vnc_kbd_event;
	v->screen->ptrAddEvent = vnc_ptr_event;
	v->screen->getKeyboardLedStateHook = vnc_leds;
	/* A library-wide list: once per process. */
	pthread_once(&once, vnc_register_qemu_ext);
}
