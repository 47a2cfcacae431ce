/* PS/2 mouse on the i8042's auxiliary port (IRQ 12), with the IntelliMouse
 * wheel: three-byte packets, four once the guest has set the sample rates
 * 200, 100, 80 in a row (the ID then reads 3).
 *
 * Movement from the host is added to counters; in stream mode with
 * reporting enabled it leaves as packets right away, as many as the
 * transmit buffer has room for, each carrying at most what its 9-bit fields
 * hold (-256..255; the wheel -8..7 per packet), the rest following in the
 * next ones as the guest reads - so no movement is lost, where a real mouse
 * would set the overflow bits. The sample rate is stored, not used as a
 * clock. In remote mode the counters wait for Read Data (EB), which reports
 * them saturated, with the overflow bits, and clears them, as the hardware
 * does. Scaling 2:1 applies to stream packets only.
 *
 * References: IBM PS/2 Hardware Interface Technical Reference, "Pointing
 * Device"; Microsoft's IntelliMouse PS/2 protocol (the 200-100-80 sequence,
 * the fourth byte); Linux's drivers/input/mouse/psmouse-base.c. */
#include <errno.h>
#include <string.h>

#include "kestrel/state.h"
#include "kestrel/util.h"
#include "ps2.h"

/* Mouse commands (IBM pointing device reference, "Commands from the system"). */
#define AUX_CMD_SCALE11	   0xe6
#define AUX_CMD_SCALE21	   0xe7
#define AUX_CMD_SET_RES	   0xe8
#define AUX_CMD_STATUS	   0xe9
#define AUX_CMD_STREAM	   0xea
#define AUX_CMD_READ_DATA  0xeb
#define AUX_CMD_RESET_WRAP 0xec
#define AUX_CMD_SET_WRAP   0xee
#define AUX_CMD_REMOTE	   0xf0
#define AUX_CMD_GET_ID	   0xf2
#define AUX_CMD_SET_RATE   0xf3
#define AUX_CMD_ENABLE	   0xf4
#define AUX_CMD_DISABLE	   0xf5
#define AUX_CMD_DEFAULTS   0xf6
#define AUX_CMD_RESEND	   0xfe
#define AUX_CMD_RESET	   0xff

#define AUX_ID_STANDARD 0x00
#define AUX_ID_WHEEL	0x03 /* IntelliMouse */

/* Packet byte 0. */
#define PKT_ALWAYS1 0x08
#define PKT_XSIGN   0x10
#define PKT_YSIGN   0x20
#define PKT_XOVF    0x40
#define PKT_YOVF    0x80

#define AUX_RATE_DEFAULT 100
#define AUX_RES_DEFAULT	 2	/* 4 counts/mm */
#define AUX_MOVE_MIN	 (-256) /* 9-bit two's complement */
#define AUX_MOVE_MAX	 255
#define AUX_WHEEL_MIN	 (-8) /* the IntelliMouse's 4-bit Z */
#define AUX_WHEEL_MAX	 7
/* Unreported movement is capped: a guest that reads nothing for an hour
 * gets a bounded burst of packets, not one per host event. */
#define AUX_COUNTER_MAX	 4096

static const uint8_t aux_rates[] = { 10, 20, 40, 60, 80, 100, 200 };
static const uint8_t aux_knock_wheel[3] = { 200, 100, 80 };

static bool aux_rate_valid(uint8_t r)
{
	for (unsigned i = 0; i < sizeof(aux_rates); i++)
		if (aux_rates[i] == r)
			return true;
	return false;
}

static void aux_counters_clear(struct ps2_mouse *m)
{
	m->dx = m->dy = m->dz = 0;
}

static void aux_defaults(struct ps2_mouse *m)
{
	m->rate = AUX_RATE_DEFAULT;
	m->resolution = AUX_RES_DEFAULT;
	m->status = 0; /* stream mode, reporting off, scaling 1:1 */
	m->pending_cmd = 0;
	aux_counters_clear(m);
}

void ps2_mouse_reset(struct ps2_mouse *m)
{
	uint8_t buttons = m->buttons;

	memset(m, 0, sizeof(*m));
	aux_defaults(m);
	/* The buttons are the host's: a reset does not release them. */
	m->buttons = buttons;
	m->reported = buttons;
}

/* ---- packets ---- */

static int32_t clamp32(int64_t v, int32_t lo, int32_t hi)
{
	return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* 2:1 scaling (IBM: 1->1, 2->1, 3->3, 4->6, 5->9, then twice the count). */
static int32_t aux_scale21(int32_t v)
{
	static const int32_t small[6] = { 0, 1, 1, 3, 6, 9 };
	int32_t a = v < 0 ? -v : v;
	int32_t s = a < 6 ? small[a] : 2 * a;

	return v < 0 ? -s : s;
}

static unsigned aux_packet_len(const struct ps2_mouse *m)
{
	return m->id == AUX_ID_WHEEL ? 4 : 3;
}

/* Fit v into a 9-bit field: *ovf when it did not fit. */
static int32_t aux_field(int32_t v, bool *ovf)
{
	*ovf = v < AUX_MOVE_MIN || v > AUX_MOVE_MAX;
	return clamp32(v, AUX_MOVE_MIN, AUX_MOVE_MAX);
}

static void aux_emit(struct ps2_mouse *m, int32_t x, int32_t y, int32_t z)
{
	bool xo, yo;
	uint8_t p[4];

	x = aux_field(x, &xo);
	y = aux_field(y, &yo);
	p[0] = PKT_ALWAYS1 | (m->buttons & PS2_MOUSE_BUTTONS) | (x < 0 ? PKT_XSIGN : 0) |
	       (y < 0 ? PKT_YSIGN : 0) | (xo ? PKT_XOVF : 0) | (yo ? PKT_YOVF : 0);
	p[1] = (uint8_t)x;
	p[2] = (uint8_t)y;
	p[3] = (uint8_t)clamp32(z, AUX_WHEEL_MIN, AUX_WHEEL_MAX);
	m->last_len = (uint8_t)aux_packet_len(m);
	memcpy(m->last, p, m->last_len);
	for (unsigned i = 0; i < m->last_len; i++)
		ps2_queue_put(&m->q, p[i]);
	m->reported = m->buttons;
}

static bool aux_streaming(const struct ps2_mouse *m)
{
	return !(m->status & PS2_MOUSE_ST_REMOTE) && (m->status & PS2_MOUSE_ST_ENABLED) && !m->wrap;
}

/* Stream mode: send what the counters hold while there is room. */
static void aux_flush(struct ps2_mouse *m)
{
	while (aux_streaming(m) && (m->dx || m->dy || m->dz || m->buttons != m->reported) &&
	       ps2_queue_room(&m->q) >= aux_packet_len(m)) {
		int32_t x = clamp32(m->dx, AUX_MOVE_MIN, AUX_MOVE_MAX);
		int32_t y = clamp32(m->dy, AUX_MOVE_MIN, AUX_MOVE_MAX);
		int32_t z = clamp32(m->dz, AUX_WHEEL_MIN, AUX_WHEEL_MAX);

		m->dx -= x;
		m->dy -= y;
		m->dz -= z;
		if (m->status & PS2_MOUSE_ST_SCALE21) {
			x = aux_scale21(x);
			y = aux_scale21(y);
		}
		aux_emit(m, x, y, z);
	}
}

int ps2_mouse_event(struct ps2_mouse *m, int dx, int dy, int dz, unsigned buttons)
{
	bool remote = m->status & PS2_MOUSE_ST_REMOTE;

	m->buttons = buttons & PS2_MOUSE_BUTTONS;
	if (!remote && !aux_streaming(m)) {
		m->reported = m->buttons;
		return -EAGAIN;
	}
	/* PS/2's Y axis points up, the host's down. */
	m->dx = clamp32((int64_t)m->dx + dx, -AUX_COUNTER_MAX, AUX_COUNTER_MAX);
	m->dy = clamp32((int64_t)m->dy - dy, -AUX_COUNTER_MAX, AUX_COUNTER_MAX);
	if (m->id == AUX_ID_WHEEL)
		m->dz = clamp32((int64_t)m->dz + dz, -AUX_COUNTER_MAX, AUX_COUNTER_MAX);
	aux_flush(m);
	return 0;
}

/* ---- bytes from the controller ---- */

static void aux_reply(struct ps2_mouse *m, uint8_t v)
{
	ps2_queue_put(&m->q, v);
}

/* E9: flags and the buttons (bit 2 left, 1 middle, 0 right), the
 * resolution, the sample rate. */
static void aux_status(struct ps2_mouse *m)
{
	uint8_t b = m->buttons;
	uint8_t st = m->status | (b & 1 ? 0x04 : 0) | (b & 4 ? 0x02 : 0) | (b & 2 ? 0x01 : 0);

	aux_reply(m, PS2_REPLY_ACK);
	aux_reply(m, st);
	aux_reply(m, m->resolution);
	aux_reply(m, m->rate);
}

static void aux_set_rate(struct ps2_mouse *m, uint8_t v)
{
	if (!aux_rate_valid(v)) {
		aux_reply(m, PS2_REPLY_RESEND);
		return;
	}
	m->rate = v;
	memmove(m->knock, m->knock + 1, 2);
	m->knock[2] = v;
	if (!memcmp(m->knock, aux_knock_wheel, sizeof(m->knock)))
		m->id = AUX_ID_WHEEL;
	aux_reply(m, PS2_REPLY_ACK);
}

static void aux_argument(struct ps2_mouse *m, uint8_t cmd, uint8_t v)
{
	if (cmd == AUX_CMD_SET_RATE) {
		aux_set_rate(m, v);
		return;
	}
	if (v > 3) { /* AUX_CMD_SET_RES: 1, 2, 4, 8 counts/mm */
		aux_reply(m, PS2_REPLY_RESEND);
		return;
	}
	m->resolution = v;
	aux_reply(m, PS2_REPLY_ACK);
}

static void aux_reset(struct ps2_mouse *m)
{
	ps2_mouse_reset(m);
	aux_reply(m, PS2_REPLY_ACK);
	aux_reply(m, PS2_REPLY_BAT_OK);
	aux_reply(m, AUX_ID_STANDARD);
}

/* Read Data: one packet of what the counters hold, saturated with the
 * overflow bits, whatever the mode; the counters start again. */
static void aux_read_data(struct ps2_mouse *m)
{
	aux_reply(m, PS2_REPLY_ACK);
	aux_emit(m, m->dx, m->dy, m->dz);
	aux_counters_clear(m);
}

/* Commands that only set a mode bit (and clear the counters). */
static bool aux_mode_command(struct ps2_mouse *m, uint8_t v)
{
	switch (v) {
	case AUX_CMD_SCALE11: m->status &= ~PS2_MOUSE_ST_SCALE21; return true;
	case AUX_CMD_SCALE21: m->status |= PS2_MOUSE_ST_SCALE21; return true;
	case AUX_CMD_STREAM: m->status &= ~PS2_MOUSE_ST_REMOTE; break;
	case AUX_CMD_REMOTE: m->status |= PS2_MOUSE_ST_REMOTE; break;
	case AUX_CMD_ENABLE: m->status |= PS2_MOUSE_ST_ENABLED; break;
	case AUX_CMD_DISABLE: m->status &= ~PS2_MOUSE_ST_ENABLED; break;
	case AUX_CMD_SET_WRAP: m->wrap = true; break;
	case AUX_CMD_RESET_WRAP: /* outside wrap mode: nothing to leave */ break;
	case AUX_CMD_DEFAULTS: aux_defaults(m); break;
	default: return false;
	}
	aux_counters_clear(m);
	return true;
}

static void aux_command(struct ps2_mouse *m, uint8_t v)
{
	/* The mouse drops what it had not sent yet when a command comes. */
	ps2_queue_clear(&m->q);
	m->reported = m->buttons;
	if (aux_mode_command(m, v)) {
		aux_reply(m, PS2_REPLY_ACK);
		return;
	}
	switch (v) {
	case AUX_CMD_SET_RES:
	case AUX_CMD_SET_RATE:
		m->pending_cmd = v;
		aux_reply(m, PS2_REPLY_ACK);
		break;
	case AUX_CMD_STATUS: aux_status(m); break;
	case AUX_CMD_READ_DATA: aux_read_data(m); break;
	case AUX_CMD_GET_ID:
		aux_reply(m, PS2_REPLY_ACK);
		aux_reply(m, m->id);
		break;
	case AUX_CMD_RESEND:
		for (unsigned i = 0; i < m->last_len; i++)
			aux_reply(m, m->last[i]);
		break;
	case AUX_CMD_RESET: aux_reset(m); break;
	default: aux_reply(m, PS2_REPLY_RESEND);
	}
}

/* Wrap mode echoes every byte but Reset Wrap (EC) and Reset (FF). */
static bool aux_wrap(struct ps2_mouse *m, uint8_t v)
{
	if (!m->wrap || v == AUX_CMD_RESET)
		return false;
	if (v == AUX_CMD_RESET_WRAP) {
		ps2_queue_clear(&m->q);
		m->wrap = false;
		aux_reply(m, PS2_REPLY_ACK);
	} else {
		aux_reply(m, v);
	}
	return true;
}

void ps2_mouse_write(struct ps2_mouse *m, uint8_t v)
{
	uint8_t cmd = m->pending_cmd;

	m->pending_cmd = 0;
	if (aux_wrap(m, v))
		return;
	if (cmd)
		aux_argument(m, cmd, v);
	else
		aux_command(m, v);
}

bool ps2_mouse_pending(const struct ps2_mouse *m)
{
	return m->q.count != 0;
}

uint8_t ps2_mouse_read(struct ps2_mouse *m)
{
	uint8_t v = ps2_queue_get(&m->q);

	aux_flush(m);
	return v;
}

/* ---- state ---- */

#define AUX_STATE_ID	  0x4d325350 /* "PS2M" */
#define AUX_STATE_VERSION 1

void ps2_mouse_save(const struct ps2_mouse *m, struct state_buf *out)
{
	size_t mark = state_section_begin(out, AUX_STATE_ID, AUX_STATE_VERSION);

	ps2_queue_save(&m->q, out);
	state_put_u8(out, m->pending_cmd);
	state_put_u8(out, m->status);
	state_put_u8(out, m->resolution);
	state_put_u8(out, m->rate);
	state_put_u8(out, m->id);
	state_put_bytes(out, m->knock, sizeof(m->knock));
	state_put_u8(out, m->wrap);
	state_put_u32(out, (uint32_t)m->dx);
	state_put_u32(out, (uint32_t)m->dy);
	state_put_u32(out, (uint32_t)m->dz);
	state_put_u8(out, m->buttons);
	state_put_u8(out, m->reported);
	state_put_u8(out, m->last_len);
	state_put_bytes(out, m->last, sizeof(m->last));
	state_section_end(out, mark);
}

static bool aux_counter_valid(int32_t v)
{
	return v >= -AUX_COUNTER_MAX && v <= AUX_COUNTER_MAX;
}

static bool aux_state_valid(const struct ps2_mouse *n, uint8_t wrap)
{
	bool ok = n->pending_cmd == 0 || n->pending_cmd == AUX_CMD_SET_RATE ||
		  n->pending_cmd == AUX_CMD_SET_RES;

	ok &= (n->status & ~(PS2_MOUSE_ST_REMOTE | PS2_MOUSE_ST_ENABLED | PS2_MOUSE_ST_SCALE21)) ==
	      0;
	ok &= n->resolution <= 3 && aux_rate_valid(n->rate) && wrap <= 1;
	ok &= n->id == AUX_ID_STANDARD || n->id == AUX_ID_WHEEL;
	for (unsigned i = 0; i < sizeof(n->knock); i++)
		ok &= n->knock[i] == 0 || aux_rate_valid(n->knock[i]);
	ok &= aux_counter_valid(n->dx) && aux_counter_valid(n->dy) && aux_counter_valid(n->dz);
	ok &= (n->buttons & ~PS2_MOUSE_BUTTONS) == 0 && (n->reported & ~PS2_MOUSE_BUTTONS) == 0;
	ok &= n->last_len == 0 || n->last_len == 3 || n->last_len == 4;
	return ok;
}

int ps2_mouse_load(struct ps2_mouse *m, struct state_buf *in)
{
	struct ps2_mouse n = { 0 };
	uint8_t wrap;
	bool ok;
	size_t end;

	if (state_section_open(in, AUX_STATE_ID, AUX_STATE_VERSION) != AUX_STATE_VERSION)
		return -EINVAL;
	end = state_section_body_end(in);
	ok = ps2_queue_load(&n.q, in);
	n.pending_cmd = state_get_u8(in);
	n.status = state_get_u8(in);
	n.resolution = state_get_u8(in);
	n.rate = state_get_u8(in);
	n.id = state_get_u8(in);
	state_get_bytes(in, n.knock, sizeof(n.knock));
	wrap = state_get_u8(in);
	n.dx = (int32_t)state_get_u32(in);
	n.dy = (int32_t)state_get_u32(in);
	n.dz = (int32_t)state_get_u32(in);
	n.buttons = state_get_u8(in);
	n.reported = state_get_u8(in);
	n.last_len = state_get_u8(in);
	state_get_bytes(in, n.last, sizeof(n.last));
	if (!ok || !aux_state_valid(&n, wrap) || !state_section_done(in, end))
		return -EINVAL;
	n.wrap = wrap;
	*m = n;
	return 0;
}
