/* Intel 8042 keyboard controller as found on PC/AT boards, with an AT keyboard
 * that answers commands but never has a key pressed, and no auxiliary (mouse)
 * device. Region 0 is the data port 0x60, region 1 the status/command port 0x64.
 *
 * Its jobs here: satisfy Linux's i8042 and atkbd probes without timeouts, and
 * carry the CPU reset line (command 0xFE, or 0xD1 with output-port bit 0 low)
 * to vm_ctl. A20 is recorded but not gated: the guest always sees all memory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/devices.h"
#include "kestrel/state.h"
#include "emu.h"

#define I8042_REGION_DATA 0
#define I8042_REGION_CMD  1

/* Status register (port 0x64 read). */
#define STR_OBF     0x01
#define STR_IBF     0x02
#define STR_SYS     0x04
#define STR_A2      0x08 /* last write went to the command port */
#define STR_INH     0x10 /* 1: keyboard not inhibited (keylock open) */
#define STR_AUXDATA 0x20

/* Controller command byte ("CTR"). */
#define CTR_KBDINT 0x01
#define CTR_AUXINT 0x02
#define CTR_SYS    0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE  0x40
#define CTR_DEFAULT (CTR_KBDINT | CTR_SYS | CTR_XLATE) /* as a PC BIOS leaves it */

/* Output port (commands 0xD0/0xD1). */
#define OUTP_RESET  0x01 /* low = CPU in reset */
#define OUTP_A20    0x02
#define OUTP_KBDOBF 0x10
#define OUTP_AUXOBF 0x20
#define OUTP_DEFAULT 0xcf

/* Controller commands. */
#define CMD_READ_CTR   0x20
#define CMD_WRITE_CTR  0x60
#define CMD_AUX_DIS    0xa7
#define CMD_AUX_EN     0xa8
#define CMD_AUX_TEST   0xa9
#define CMD_SELF_TEST  0xaa
#define CMD_KBD_TEST   0xab
#define CMD_KBD_DIS    0xad
#define CMD_KBD_EN     0xae
#define CMD_READ_INP   0xc0
#define CMD_READ_OUTP  0xd0
#define CMD_WRITE_OUTP 0xd1
#define CMD_WRITE_KBD_OBUF 0xd2
#define CMD_WRITE_AUX_OBUF 0xd3
#define CMD_WRITE_AUX  0xd4
#define CMD_PULSE_BASE 0xf0

/* Keyboard commands and replies (IBM PS/2 Technical Reference, keyboard). */
#define KBD_CMD_SET_LEDS  0xed
#define KBD_CMD_ECHO      0xee
#define KBD_CMD_SCANSET   0xf0
#define KBD_CMD_GET_ID    0xf2
#define KBD_CMD_TYPEMATIC 0xf3
#define KBD_CMD_RESET     0xff
#define KBD_REPLY_ACK     0xfa
#define KBD_REPLY_RESEND  0xfe
#define KBD_REPLY_POR     0xaa /* basic assurance test passed */

#define I8042_QUEUE_SIZE 16
#define I8042_STATE_ID 0x38303432 /* "8042" */
#define I8042_STATE_VERSION 1

struct i8042_regs {
	uint8_t ctr, outp;
	uint8_t status_a2;                 /* STR_A2 or 0 */
	uint8_t obuf;                      /* last byte presented on port 0x60 */
	bool obf, obf_aux;
	uint8_t pending_cmd;               /* controller command awaiting its data byte, or 0 */
	uint8_t kbd_pending;               /* keyboard command awaiting its argument, or 0 */
	uint8_t scanset;
	uint8_t q[I8042_QUEUE_SIZE];       /* bytes waiting for the output buffer */
	bool q_aux[I8042_QUEUE_SIZE];
	unsigned q_head, q_count;
};

struct i8042 {
	struct device dev;
	struct irq_line irq;
	int irq_level;
	struct vm_ctl ctl;
	bool warned_cmd;
	struct i8042_regs r;
};

static struct i8042 *to_i8042(struct device *dev)
{
	return (struct i8042 *)dev;
}

/* IRQ 1 follows a keyboard byte in the output buffer when CTR bit 0 allows it.
 * There is no aux device, so nothing drives IRQ 12. */
static void i8042_update_irq(struct i8042 *k, bool force)
{
	const struct i8042_regs *r = &k->r;
	int level = r->obf && !r->obf_aux && (r->ctr & CTR_KBDINT);

	if (level == k->irq_level && !force)
		return;
	k->irq_level = level;
	irq_set(&k->irq, level);
}

/* Move the next queued byte into the output buffer if it is free. */
static void i8042_refill(struct i8042_regs *r)
{
	if (r->obf || !r->q_count)
		return;
	r->obuf = r->q[r->q_head];
	r->obf_aux = r->q_aux[r->q_head];
	r->obf = true;
	r->q_head = (r->q_head + 1) % I8042_QUEUE_SIZE;
	r->q_count--;
}

static void i8042_queue(struct i8042_regs *r, uint8_t v, bool aux)
{
	unsigned slot;

	if (r->q_count == I8042_QUEUE_SIZE)
		return; /* the guest is not reading: lose the reply, as a keyboard would */
	slot = (r->q_head + r->q_count) % I8042_QUEUE_SIZE;
	r->q[slot] = v;
	r->q_aux[slot] = aux;
	r->q_count++;
	i8042_refill(r);
}

/* A controller command's reply replaces whatever the guest did not read. */
static void i8042_reply(struct i8042_regs *r, uint8_t v)
{
	r->obf = false;
	r->q_count = 0;
	i8042_queue(r, v, false);
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
	case CMD_READ_CTR:
		i8042_reply(r, r->ctr);
		break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTP:
	case CMD_WRITE_KBD_OBUF:
	case CMD_WRITE_AUX_OBUF:
	case CMD_WRITE_AUX:
		r->pending_cmd = cmd;
		break;
	case CMD_AUX_DIS:
		r->ctr |= CTR_AUXDIS;
		break;
	case CMD_AUX_EN:
		r->ctr &= ~CTR_AUXDIS;
		break;
	case CMD_AUX_TEST:
	case CMD_KBD_TEST:
		i8042_reply(r, 0x00); /* interface OK */
		break;
	case CMD_SELF_TEST:
		r->ctr |= CTR_SYS;
		i8042_reply(r, 0x55);
		break;
	case CMD_KBD_DIS:
		r->ctr |= CTR_KBDDIS;
		break;
	case CMD_KBD_EN:
		r->ctr &= ~CTR_KBDDIS;
		break;
	case CMD_READ_INP:
		i8042_reply(r, 0x80); /* keylock open */
		break;
	case CMD_READ_OUTP:
		i8042_reply(r, i8042_read_outp(r));
		break;
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

/* The keyboard's side: every command is ACKed; a few add more bytes. */
static void i8042_kbd_command(struct i8042_regs *r, uint8_t v)
{
	uint8_t pending = r->kbd_pending;

	r->kbd_pending = 0;
	if (pending) {
		i8042_queue(r, KBD_REPLY_ACK, false);
		if (pending == KBD_CMD_SCANSET) {
			if (v == 0)
				i8042_queue(r, r->scanset, false);
			else if (v <= 3)
				r->scanset = v;
		}
		return;
	}
	switch (v) {
	case KBD_CMD_SET_LEDS:
	case KBD_CMD_TYPEMATIC:
	case KBD_CMD_SCANSET:
		r->kbd_pending = v;
		i8042_queue(r, KBD_REPLY_ACK, false);
		break;
	case KBD_CMD_ECHO:
		i8042_queue(r, KBD_CMD_ECHO, false);
		break;
	case KBD_CMD_GET_ID:
		i8042_queue(r, KBD_REPLY_ACK, false);
		i8042_queue(r, 0xab, false);
		i8042_queue(r, 0x83, false);
		break;
	case KBD_CMD_RESET:
		r->scanset = 2;
		i8042_queue(r, KBD_REPLY_ACK, false);
		i8042_queue(r, KBD_REPLY_POR, false);
		break;
	default:
		if (v >= 0xf4 && v <= 0xfe) /* enable, disable, defaults, modes, resend */
			i8042_queue(r, KBD_REPLY_ACK, false);
		else
			i8042_queue(r, KBD_REPLY_RESEND, false);
	}
}

static void i8042_write_data(struct i8042 *k, uint8_t v)
{
	struct i8042_regs *r = &k->r;
	uint8_t cmd = r->pending_cmd;

	r->pending_cmd = 0;
	switch (cmd) {
	case CMD_WRITE_CTR:
		r->ctr = v;
		break;
	case CMD_WRITE_OUTP:
		i8042_write_outp(k, v);
		break;
	case CMD_WRITE_KBD_OBUF:
		i8042_reply(r, v);
		break;
	case CMD_WRITE_AUX_OBUF:
		r->obf = false;
		r->q_count = 0;
		i8042_queue(r, v, true);
		break;
	case CMD_WRITE_AUX:
		/* No mouse: answer "resend" so psmouse gives up at once. */
		r->obf = false;
		r->q_count = 0;
		i8042_queue(r, KBD_REPLY_RESEND, true);
		break;
	default:
		i8042_kbd_command(r, v);
	}
}

static uint8_t i8042_read_data(struct i8042_regs *r)
{
	uint8_t v = r->obuf;

	/* An empty buffer still reads as the last byte, as the real latch does. */
	r->obf = false;
	i8042_refill(r);
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

static uint64_t i8042_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	struct i8042 *k = to_i8042(dev);
	uint8_t v;

	if (off != 0)
		return emu_ones(size);
	if (region == I8042_REGION_DATA) {
		v = i8042_read_data(&k->r);
		/* IRQ 1 is edge-triggered on the ISA bus: drop the line after each
		 * read so a following byte makes a new edge (Linux's i8042 takes one
		 * byte per interrupt). */
		if (k->irq_level == 1) {
			k->irq_level = 0;
			irq_set(&k->irq, 0);
		}
	} else {
		v = i8042_read_status(&k->r);
	}
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
	i8042_update_irq(k, false);
}

static void i8042_reset(struct device *dev)
{
	struct i8042 *k = to_i8042(dev);

	memset(&k->r, 0, sizeof(k->r));
	k->r.ctr = CTR_DEFAULT;
	k->r.outp = OUTP_DEFAULT;
	k->r.scanset = 2;
	i8042_update_irq(k, true);
}

static int i8042_save(struct device *dev, struct state_buf *out)
{
	const struct i8042_regs *r = &to_i8042(dev)->r;
	size_t mark = state_section_begin(out, I8042_STATE_ID, I8042_STATE_VERSION);

	state_put_u8(out, r->ctr);
	state_put_u8(out, r->outp);
	state_put_u8(out, r->status_a2);
	state_put_u8(out, r->obuf);
	state_put_u8(out, r->obf);
	state_put_u8(out, r->obf_aux);
	state_put_u8(out, r->pending_cmd);
	state_put_u8(out, r->kbd_pending);
	state_put_u8(out, r->scanset);
	state_put_u8(out, (uint8_t)r->q_count);
	for (unsigned i = 0; i < I8042_QUEUE_SIZE; i++) {
		unsigned s = (r->q_head + i) % I8042_QUEUE_SIZE;

		state_put_u8(out, r->q[s]);
		state_put_u8(out, r->q_aux[s]);
	}
	state_section_end(out, mark);
	return out->error ? -ENOMEM : 0;
}

static bool i8042_pending_valid(uint8_t cmd, uint8_t kbd)
{
	bool cmd_ok = cmd == 0 || cmd == CMD_WRITE_CTR || cmd == CMD_WRITE_OUTP ||
		      (cmd >= CMD_WRITE_KBD_OBUF && cmd <= CMD_WRITE_AUX);
	bool kbd_ok = kbd == 0 || kbd == KBD_CMD_SET_LEDS || kbd == KBD_CMD_TYPEMATIC ||
		      kbd == KBD_CMD_SCANSET;

	return cmd_ok && kbd_ok;
}

static int i8042_load(struct device *dev, struct state_buf *in)
{
	struct i8042 *k = to_i8042(dev);
	struct i8042_regs r = { 0 };
	uint8_t flags[2], aux;
	bool ok = true;
	size_t end;

	if (state_section_open(in, I8042_STATE_ID, I8042_STATE_VERSION) < 0)
		return -EINVAL;
	end = emu_section_body_end(in);
	r.ctr = state_get_u8(in);
	r.outp = state_get_u8(in);
	r.status_a2 = state_get_u8(in);
	r.obuf = state_get_u8(in);
	flags[0] = state_get_u8(in);
	flags[1] = state_get_u8(in);
	r.pending_cmd = state_get_u8(in);
	r.kbd_pending = state_get_u8(in);
	r.scanset = state_get_u8(in);
	r.q_count = state_get_u8(in);
	for (unsigned i = 0; i < I8042_QUEUE_SIZE; i++) {
		r.q[i] = state_get_u8(in);
		aux = state_get_u8(in);
		ok &= aux <= 1;
		r.q_aux[i] = aux;
	}
	ok &= flags[0] <= 1 && flags[1] <= 1 && (flags[0] || !flags[1]);
	ok &= (r.status_a2 & ~STR_A2) == 0 && r.q_count <= I8042_QUEUE_SIZE;
	ok &= r.scanset >= 1 && r.scanset <= 3 && i8042_pending_valid(r.pending_cmd, r.kbd_pending);
	if (!emu_section_done(in, end) || !ok)
		return -EINVAL;
	r.obf = flags[0];
	r.obf_aux = flags[1];
	k->r = r;
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

struct device *i8042_create(const struct irq_line *kbd_irq, const struct vm_ctl *ctl)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	device_init(&k->dev, &i8042_ops);
	if (kbd_irq)
		k->irq = *kbd_irq;
	if (ctl)
		k->ctl = *ctl;
	k->irq_level = -1;
	i8042_reset(&k->dev);
	return &k->dev;
}
