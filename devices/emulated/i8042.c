/* Intel 8042 keyboard controller as found on PC/AT and PS/2 boards: the
 * status and command registers, the command byte, one output buffer shared
 * by a PS/2 keyboard (ps2_kbd.c, IRQ 1) and a PS/2 mouse on the auxiliary
 * port (ps2_mouse.c, IRQ 12), the set 2 -> set 1 translation (command byte
 * XLATE), and the CPU reset line (command 0xFE, or 0xD1 with output-port
 * bit 0 low) to vm_ctl. A20 is recorded but not gated: the guest always sees
 * all memory. Region 0 is the data port 0x60, region 1 the status/command
 * port 0x64.
 *
 * The output buffer takes, in this order: the controller's own reply to a
 * command, a keyboard byte unless the keyboard clock is inhibited (command
 * byte KBDDIS), a mouse byte unless the aux clock is (AUXDIS). A controller
 * reply that arrives while a device byte waits unread takes its place, and
 * the device byte follows the reply (the real 8042 would lose it).
 *
 * Host input (i8042_keys, i8042_mouse) comes from other threads under the
 * device lock; the devices queue it and the controller moves it on as the
 * guest reads. Reference: IBM PS/2 Hardware Interface Technical Reference,
 * "Keyboard and Auxiliary Device Controller". */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/devices.h"
#include "kestrel/state.h"
#include "emu.h"
#include "ps2.h"

#define I8042_REGION_DATA 0
#define I8042_REGION_CMD  1

/* Status register (port 0x64 read). */
#define STR_OBF	    0x01
#define STR_IBF	    0x02
#define STR_SYS	    0x04
#define STR_A2	    0x08 /* last write went to the command port */
#define STR_INH	    0x10 /* 1: keyboard not inhibited (keylock open) */
#define STR_AUXDATA 0x20

/* Controller command byte ("CTR"). */
#define CTR_KBDINT  0x01
#define CTR_AUXINT  0x02
#define CTR_SYS	    0x04
#define CTR_KBDDIS  0x10
#define CTR_AUXDIS  0x20
#define CTR_XLATE   0x40
#define CTR_DEFAULT (CTR_KBDINT | CTR_SYS | CTR_XLATE) /* as a PC BIOS leaves it */

/* Output port (commands 0xD0/0xD1). */
#define OUTP_RESET   0x01 /* low = CPU in reset */
#define OUTP_A20     0x02
#define OUTP_KBDOBF  0x10
#define OUTP_AUXOBF  0x20
#define OUTP_DEFAULT 0xcf

/* Controller commands. */
#define CMD_READ_CTR	   0x20
#define CMD_WRITE_CTR	   0x60
#define CMD_AUX_DIS	   0xa7
#define CMD_AUX_EN	   0xa8
#define CMD_AUX_TEST	   0xa9
#define CMD_SELF_TEST	   0xaa
#define CMD_KBD_TEST	   0xab
#define CMD_KBD_DIS	   0xad
#define CMD_KBD_EN	   0xae
#define CMD_READ_INP	   0xc0
#define CMD_READ_OUTP	   0xd0
#define CMD_WRITE_OUTP	   0xd1
#define CMD_WRITE_KBD_OBUF 0xd2
#define CMD_WRITE_AUX_OBUF 0xd3
#define CMD_WRITE_AUX	   0xd4
#define CMD_PULSE_BASE	   0xf0

#define I8042_STATE_ID	    0x38303432 /* "8042" */
#define I8042_STATE_VERSION 2

struct i8042_regs {
	uint8_t ctr, outp;
	uint8_t status_a2; /* STR_A2 or 0 */
	uint8_t obuf;	   /* last byte presented on port 0x60 */
	bool obf, obf_aux;
	bool obf_ctl;	     /* the byte in obuf is the controller's */
	bool held, held_aux; /* a device byte a controller reply displaced */
	uint8_t held_byte;
	bool xlate_f0;	     /* XLATE saw a set 2 break prefix */
	uint8_t pending_cmd; /* controller command awaiting its data byte, or 0 */
};

struct i8042 {
	struct device dev;
	struct irq_line irq_kbd, irq_aux;
	int level_kbd, level_aux;
	struct vm_ctl ctl;
	bool warned_cmd;
	struct i8042_regs r;
	struct ps2_kbd kbd;
	struct ps2_mouse mouse;
};

static struct i8042 *to_i8042(struct device *dev)
{
	return (struct i8042 *)dev;
}

/* IRQ 1 follows a keyboard byte in the output buffer, IRQ 12 a mouse byte,
 * each when its command byte bit allows it. */
static void i8042_update_irq(struct i8042 *k, bool force)
{
	const struct i8042_regs *r = &k->r;
	int kbd = r->obf && !r->obf_aux && (r->ctr & CTR_KBDINT);
	int aux = r->obf && r->obf_aux && (r->ctr & CTR_AUXINT);

	if (kbd != k->level_kbd || force) {
		k->level_kbd = kbd;
		irq_set(&k->irq_kbd, kbd);
	}
	if (aux != k->level_aux || force) {
		k->level_aux = aux;
		irq_set(&k->irq_aux, aux);
	}
}

/* A keyboard byte, translated to set 1 when XLATE is on: F0 is swallowed
 * and sets bit 7 of the byte after it. False when none is ready. */
static bool i8042_pull_kbd(struct i8042 *k, uint8_t *out)
{
	struct i8042_regs *r = &k->r;

	while (ps2_kbd_pending(&k->kbd)) {
		uint8_t v = ps2_kbd_read(&k->kbd);

		if (!(r->ctr & CTR_XLATE)) {
			*out = v;
			return true;
		}
		if (v == 0xf0) {
			r->xlate_f0 = true;
			continue;
		}
		*out = ps2_set2_to_set1(v) | (r->xlate_f0 ? 0x80 : 0);
		r->xlate_f0 = false;
		return true;
	}
	return false;
}

static void i8042_present(struct i8042_regs *r, uint8_t v, bool aux, bool ctl)
{
	r->obuf = v;
	r->obf = true;
	r->obf_aux = aux;
	r->obf_ctl = ctl;
}

/* Move the next byte into the output buffer if it is free. */
static void i8042_refill(struct i8042 *k)
{
	struct i8042_regs *r = &k->r;
	uint8_t v;

	if (r->obf)
		return;
	if (r->held) {
		i8042_present(r, r->held_byte, r->held_aux, false);
		r->held = r->held_aux = false;
		r->held_byte = 0;
	} else if (!(r->ctr & CTR_KBDDIS) && i8042_pull_kbd(k, &v)) {
		i8042_present(r, v, false, false);
	} else if (!(r->ctr & CTR_AUXDIS) && ps2_mouse_pending(&k->mouse)) {
		i8042_present(r, ps2_mouse_read(&k->mouse), true, false);
	}
}

/* A byte from the controller itself: a command's reply, or D2/D3. */
static void i8042_reply(struct i8042 *k, uint8_t v, bool aux)
{
	struct i8042_regs *r = &k->r;

	if (r->obf && !r->obf_ctl) {
		r->held = true;
		r->held_byte = r->obuf;
		r->held_aux = r->obf_aux;
	}
	i8042_present(r, v, aux, true);
}

static void i8042_reset_cpu(struct i8042 *k)
{
	vm_request_stop(&k->ctl, VM_STOP_RESET, 0);
}

static void i8042_write_outp(struct i8042 *k, uint8_t v)
{
	k->r.outp = v;
	if (!(v & OUTP_RESET))
		i8042_reset_cpu(k);
}

static uint8_t i8042_read_outp(const struct i8042_regs *r)
{
	uint8_t v = r->outp & ~(OUTP_KBDOBF | OUTP_AUXOBF);

	if (r->obf)
		v |= r->obf_aux ? OUTP_AUXOBF : OUTP_KBDOBF;
	return v;
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
	struct i8042_regs *r = &k->r;

	switch (cmd) {
	case CMD_READ_CTR: i8042_reply(k, r->ctr, false); break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTP:
	case CMD_WRITE_KBD_OBUF:
	case CMD_WRITE_AUX_OBUF:
	case CMD_WRITE_AUX: r->pending_cmd = cmd; break;
	case CMD_AUX_DIS: r->ctr |= CTR_AUXDIS; break;
	case CMD_AUX_EN: r->ctr &= ~CTR_AUXDIS; break;
	case CMD_AUX_TEST:
	case CMD_KBD_TEST:
		i8042_reply(k, 0x00, false); /* interface OK */
		break;
	case CMD_SELF_TEST:
		r->ctr |= CTR_SYS;
		i8042_reply(k, 0x55, false);
		break;
	case CMD_KBD_DIS: r->ctr |= CTR_KBDDIS; break;
	case CMD_KBD_EN: r->ctr &= ~CTR_KBDDIS; break;
	case CMD_READ_INP:
		i8042_reply(k, 0x80, false); /* keylock open */
		break;
	case CMD_READ_OUTP: i8042_reply(k, i8042_read_outp(r), false); break;
	default:
		if (cmd >= CMD_PULSE_BASE) {
			/* Pulse the output lines whose bits are 0; line 0 is the reset. */
			if (!(cmd & OUTP_RESET))
				i8042_reset_cpu(k);
			break;
		}
		if (!k->warned_cmd)
			kdebug("i8042: ignoring controller command 0x%02x", cmd);
		k->warned_cmd = true;
	}
}

static void i8042_write_data(struct i8042 *k, uint8_t v)
{
	struct i8042_regs *r = &k->r;
	uint8_t cmd = r->pending_cmd;

	r->pending_cmd = 0;
	switch (cmd) {
	case CMD_WRITE_CTR: r->ctr = v; break;
	case CMD_WRITE_OUTP: i8042_write_outp(k, v); break;
	case CMD_WRITE_KBD_OBUF: i8042_reply(k, v, false); break;
	case CMD_WRITE_AUX_OBUF: i8042_reply(k, v, true); break;
	case CMD_WRITE_AUX:
		/* Sending to a device enables its clock line again (as QEMU's
		 * 8042 does; Linux does not depend on it). */
		r->ctr &= ~CTR_AUXDIS;
		ps2_mouse_write(&k->mouse, v);
		break;
	default: r->ctr &= ~CTR_KBDDIS; ps2_kbd_write(&k->kbd, v);
	}
}

static uint8_t i8042_read_data(struct i8042 *k)
{
	uint8_t v = k->r.obuf;

	/* An empty buffer still reads as the last byte, as the real latch does. */
	k->r.obf = false;
	k->r.obf_aux = false;
	k->r.obf_ctl = false;
	return v;
}

static uint8_t i8042_read_status(const struct i8042_regs *r)
{
	uint8_t v = STR_INH | r->status_a2;

	if (r->ctr & CTR_SYS)
		v |= STR_SYS;
	if (r->obf)
		v |= STR_OBF | (r->obf_aux ? STR_AUXDATA : 0);
	return v;
}

/* IRQ 1 and 12 are edge-triggered on the ISA bus: drop a raised line after
 * each data read so that a following byte makes a new edge (Linux's i8042
 * takes one byte per interrupt). */
static void i8042_lower_lines(struct i8042 *k)
{
	if (k->level_kbd == 1) {
		k->level_kbd = 0;
		irq_set(&k->irq_kbd, 0);
	}
	if (k->level_aux == 1) {
		k->level_aux = 0;
		irq_set(&k->irq_aux, 0);
	}
}

static uint64_t i8042_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	struct i8042 *k = to_i8042(dev);
	uint8_t v;

	if (off != 0)
		return emu_ones(size);
	if (region == I8042_REGION_DATA) {
		v = i8042_read_data(k);
		i8042_lower_lines(k);
	} else {
		v = i8042_read_status(&k->r);
	}
	i8042_refill(k);
	i8042_update_irq(k, false);
	/* Each port is one byte wide: the rest of a wider access floats high. */
	return v | (emu_ones(size) & ~0xffULL);
}

static void i8042_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct i8042 *k = to_i8042(dev);

	if (off != 0)
		return;
	if (region == I8042_REGION_DATA) {
		k->r.status_a2 = 0;
		i8042_write_data(k, (uint8_t)val);
	} else {
		k->r.status_a2 = STR_A2;
		k->r.pending_cmd = 0;
		i8042_command(k, (uint8_t)val);
	}
	i8042_refill(k);
	i8042_update_irq(k, false);
}

/* ---- host input ---- */

int i8042_keys(struct device *dev, const struct i8042_key *keys, unsigned n)
{
	struct i8042 *k = to_i8042(dev);
	struct ps2_key_event ev[I8042_MAX_KEYS];
	int ret;

	if (n > I8042_MAX_KEYS)
		return -E2BIG;
	for (unsigned i = 0; i < n; i++)
		ev[i] = (struct ps2_key_event){ .code = keys[i].code, .down = keys[i].down };
	pthread_mutex_lock(&dev->lock);
	ret = ps2_kbd_keys(&k->kbd, ev, n);
	i8042_refill(k);
	i8042_update_irq(k, false);
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

bool i8042_has_key(unsigned code)
{
	return ps2_kbd_has_key(code);
}

int i8042_mouse(struct device *dev, int dx, int dy, int dz, unsigned buttons)
{
	struct i8042 *k = to_i8042(dev);
	int ret;

	pthread_mutex_lock(&dev->lock);
	ret = ps2_mouse_event(&k->mouse, dx, dy, dz, buttons);
	i8042_refill(k);
	i8042_update_irq(k, false);
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

unsigned i8042_kbd_leds(struct device *dev)
{
	unsigned leds;

	pthread_mutex_lock(&dev->lock);
	leds = to_i8042(dev)->kbd.leds;
	pthread_mutex_unlock(&dev->lock);
	return leds;
}

/* ---- reset and state ---- */

static void i8042_reset(struct device *dev)
{
	struct i8042 *k = to_i8042(dev);

	memset(&k->r, 0, sizeof(k->r));
	k->r.ctr = CTR_DEFAULT;
	k->r.outp = OUTP_DEFAULT;
	ps2_kbd_reset(&k->kbd);
	ps2_mouse_reset(&k->mouse);
	i8042_update_irq(k, true);
}

/* Three sections: the controller's registers, the keyboard, the mouse. */
static int i8042_save(struct device *dev, struct state_buf *out)
{
	struct i8042 *k = to_i8042(dev);
	const struct i8042_regs *r = &k->r;
	size_t mark = state_section_begin(out, I8042_STATE_ID, I8042_STATE_VERSION);

	state_put_u8(out, r->ctr);
	state_put_u8(out, r->outp);
	state_put_u8(out, r->status_a2);
	state_put_u8(out, r->obuf);
	state_put_u8(out, r->obf);
	state_put_u8(out, r->obf_aux);
	state_put_u8(out, r->obf_ctl);
	state_put_u8(out, r->held);
	state_put_u8(out, r->held_aux);
	state_put_u8(out, r->held_byte);
	state_put_u8(out, r->xlate_f0);
	state_put_u8(out, r->pending_cmd);
	state_section_end(out, mark);
	ps2_kbd_save(&k->kbd, out);
	ps2_mouse_save(&k->mouse, out);
	return out->error ? -ENOMEM : 0;
}

static bool i8042_pending_valid(uint8_t cmd)
{
	return cmd == 0 || cmd == CMD_WRITE_CTR || cmd == CMD_WRITE_OUTP ||
	       (cmd >= CMD_WRITE_KBD_OBUF && cmd <= CMD_WRITE_AUX);
}

/* The flags as saved: each 0 or 1; a byte in the buffer for the aux and
 * controller flags to describe; a held byte only behind a controller reply. */
static bool i8042_flags_valid(const uint8_t *f)
{
	enum { OBF, AUX, CTL, HELD, HELD_AUX, F0, NFLAGS };

	for (int i = 0; i < NFLAGS; i++)
		if (f[i] > 1)
			return false;
	if ((f[AUX] || f[CTL]) && !f[OBF])
		return false;
	if (f[HELD] && !f[CTL])
		return false;
	return f[HELD] || !f[HELD_AUX];
}

static int i8042_load_regs(struct i8042_regs *r, struct state_buf *in)
{
	uint8_t f[6];
	size_t end;

	if (state_section_open(in, I8042_STATE_ID, I8042_STATE_VERSION) != I8042_STATE_VERSION)
		return -EINVAL;
	end = emu_section_body_end(in);
	r->ctr = state_get_u8(in);
	r->outp = state_get_u8(in);
	r->status_a2 = state_get_u8(in);
	r->obuf = state_get_u8(in);
	f[0] = state_get_u8(in);
	f[1] = state_get_u8(in);
	f[2] = state_get_u8(in);
	f[3] = state_get_u8(in);
	f[4] = state_get_u8(in);
	r->held_byte = state_get_u8(in);
	f[5] = state_get_u8(in);
	r->pending_cmd = state_get_u8(in);
	if (!emu_section_done(in, end) || !i8042_flags_valid(f) || (r->status_a2 & ~STR_A2) ||
	    !i8042_pending_valid(r->pending_cmd))
		return -EINVAL;
	r->obf = f[0];
	r->obf_aux = f[1];
	r->obf_ctl = f[2];
	r->held = f[3];
	r->held_aux = f[4];
	r->xlate_f0 = f[5];
	return 0;
}

static int i8042_load(struct device *dev, struct state_buf *in)
{
	struct i8042 *k = to_i8042(dev);
	struct i8042_regs r = { 0 };
	struct ps2_kbd kbd;
	struct ps2_mouse mouse;

	if (i8042_load_regs(&r, in) || ps2_kbd_load(&kbd, in) || ps2_mouse_load(&mouse, in))
		return -EINVAL;
	k->r = r;
	k->kbd = kbd;
	k->mouse = mouse;
	i8042_update_irq(k, true);
	return 0;
}

static void i8042_destroy(struct device *dev)
{
	pthread_mutex_destroy(&dev->lock);
	free(to_i8042(dev));
}

static const struct dev_ops i8042_ops = {
	.name = "i8042",
	.reset = i8042_reset,
	.read = i8042_read,
	.write = i8042_write,
	.save = i8042_save,
	.load = i8042_load,
	.destroy = i8042_destroy,
};

struct device *i8042_create(const struct irq_line *kbd_irq, const struct irq_line *aux_irq,
			    const struct vm_ctl *ctl)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	device_init(&k->dev, &i8042_ops);
	if (kbd_irq)
		k->irq_kbd = *kbd_irq;
	if (aux_irq)
		k->irq_aux = *aux_irq;
	if (ctl)
		k->ctl = *ctl;
	k->level_kbd = k->level_aux = -1;
	i8042_reset(&k->dev);
	return &k->dev;
}
