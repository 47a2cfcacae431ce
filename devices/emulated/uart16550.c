/* 16550A UART, after the National PC16550D datasheet (TI TL16C550 is the same
 * register model). One region of 8 byte-wide registers at COM1.
 *
 * Transmission is instantaneous: a byte written to THR goes straight to out_fd
 * (or, in loopback, to the receiver), so THR and the shifter are always empty
 * by the time the guest looks again. Reception comes from uart_receive() on
 * the input thread. There is no baud-rate timing and no timer: the character
 * timeout of FIFO mode (PC16550D, IIR: "4 character times" of silence) is
 * treated as already elapsed whenever the FIFO holds fewer bytes than the
 * trigger level, since host input arrives in bursts and is idle afterwards. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/devices.h"
#include "kestrel/state.h"
#include "emu.h"

/* Register offsets (PC16550D register summary). */
#define UART_RBR     0 /* DLAB=0 read */
#define UART_THR     0 /* DLAB=0 write */
#define UART_DLL     0 /* DLAB=1 */
#define UART_IER     1 /* DLAB=0 */
#define UART_DLM     1 /* DLAB=1 */
#define UART_IIR     2 /* read */
#define UART_FCR     2 /* write */
#define UART_LCR     3
#define UART_MCR     4
#define UART_LSR     5
#define UART_MSR     6
#define UART_SCR     7
#define UART_NR_REGS 8

#define IER_ERBFI 0x01 /* received data available */
#define IER_ETBEI 0x02 /* THR empty */
#define IER_ELSI  0x04 /* receiver line status */
#define IER_EDSSI 0x08 /* modem status */
#define IER_MASK  0x0f

#define IIR_NO_INT 0x01
#define IIR_MSI	   0x00
#define IIR_THRI   0x02
#define IIR_RDI	   0x04
#define IIR_RLSI   0x06
#define IIR_CTI	   0x0c
#define IIR_FIFO   0xc0 /* both set in FIFO mode (FCR0 = 1) */

#define FCR_ENABLE     0x01
#define FCR_CLEAR_RCVR 0x02
#define FCR_CLEAR_XMIT 0x04
#define FCR_DMA	       0x08
#define FCR_TRIGGER    0xc0
#define FCR_MASK       (FCR_ENABLE | FCR_DMA | FCR_TRIGGER) /* the bits that are remembered */

#define LCR_DLAB 0x80

#define MCR_DTR	 0x01
#define MCR_RTS	 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR	 0x01
#define LSR_OE	 0x02
#define LSR_PE	 0x04
#define LSR_FE	 0x08
#define LSR_BI	 0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define LSR_ERRS (LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS   0x01
#define MSR_DDSR   0x02
#define MSR_TERI   0x04
#define MSR_DDCD   0x08
#define MSR_DELTAS 0x0f
#define MSR_CTS	   0x10
#define MSR_DSR	   0x20
#define MSR_RI	   0x40
#define MSR_DCD	   0x80

#define UART_FIFO_SIZE	   16
#define UART_STATE_ID	   0x55415254 /* "UART" */
#define UART_STATE_VERSION 1
/* A blocking out_fd that cannot take a byte for this long is considered stalled:
 * bytes are dropped without waiting until it drains. */
#define UART_TX_STALL_MS   50

/* Everything the guest can see; saved and loaded as a unit. */
struct uart_regs {
	uint8_t ier, lcr, mcr, lsr_err, msr, scr, dll, dlm, fcr;
	bool thri_pending;	    /* THRE interrupt armed (IIR priority 3) */
	uint8_t rx[UART_FIFO_SIZE]; /* ring, rx_head is the oldest byte */
	unsigned rx_head, rx_count;
};

struct uart {
	struct device dev;
	struct irq_line irq;
	int irq_level; /* last level given to irq_set, -1 unknown */
	int out_fd;
	bool out_poll; /* blocking, non-file fd: poll before write */
	bool out_stalled;
	uint64_t tx_dropped;
	struct uart_regs r;
};

static struct uart *to_uart(struct device *dev)
{
	return (struct uart *)dev;
}

static unsigned uart_rx_cap(const struct uart_regs *r)
{
	return (r->fcr & FCR_ENABLE) ? UART_FIFO_SIZE : 1;
}

static unsigned uart_rx_trigger(const struct uart_regs *r)
{
	static const unsigned level[4] = { 1, 4, 8, 14 };

	return (r->fcr & FCR_ENABLE) ? level[r->fcr >> 6] : 1;
}

/* PC16550D interrupt control functions: the highest-priority pending,
 * enabled source. */
static uint8_t uart_iir_id(const struct uart_regs *r)
{
	if ((r->ier & IER_ELSI) && (r->lsr_err & LSR_ERRS))
		return IIR_RLSI;
	if ((r->ier & IER_ERBFI) && r->rx_count) {
		if (r->rx_count >= uart_rx_trigger(r))
			return IIR_RDI;
		return IIR_CTI;
	}
	if ((r->ier & IER_ETBEI) && r->thri_pending)
		return IIR_THRI;
	if ((r->ier & IER_EDSSI) && (r->msr & MSR_DELTAS))
		return IIR_MSI;
	return IIR_NO_INT;
}

/* On a PC the INTR pin reaches the ISA bus through a buffer enabled by the OUT2
 * pin; in loopback OUT2 is forced inactive (PC16550D, MCR bit 4), so the
 * line is quiet even though IIR still reports. */
static void uart_update_irq(struct uart *u, bool force)
{
	const struct uart_regs *r = &u->r;
	int level = uart_iir_id(r) != IIR_NO_INT && (r->mcr & MCR_OUT2) && !(r->mcr & MCR_LOOP);

	if (level == u->irq_level && !force)
		return;
	u->irq_level = level;
	irq_set(&u->irq, level);
}

/* Modem inputs: a present, ready port outside loopback (the Linux 8250 driver
 * wants CTS/DSR/DCD); in loopback DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD. */
static uint8_t uart_modem_inputs(uint8_t mcr)
{
	uint8_t in = 0;

	if (!(mcr & MCR_LOOP))
		return MSR_CTS | MSR_DSR | MSR_DCD;
	if (mcr & MCR_DTR)
		in |= MSR_DSR;
	if (mcr & MCR_RTS)
		in |= MSR_CTS;
	if (mcr & MCR_OUT1)
		in |= MSR_RI;
	if (mcr & MCR_OUT2)
		in |= MSR_DCD;
	return in;
}

static void uart_update_msr(struct uart_regs *r)
{
	uint8_t old = r->msr & 0xf0, cur = uart_modem_inputs(r->mcr), chg = old ^ cur;
	uint8_t delta = r->msr & MSR_DELTAS;

	if (chg & MSR_CTS)
		delta |= MSR_DCTS;
	if (chg & MSR_DSR)
		delta |= MSR_DDSR;
	if (chg & MSR_DCD)
		delta |= MSR_DDCD;
	if ((old & MSR_RI) && !(cur & MSR_RI))
		delta |= MSR_TERI;
	r->msr = cur | delta;
}

static void uart_rx_clear(struct uart_regs *r)
{
	r->rx_head = 0;
	r->rx_count = 0;
}

/* One received character. FIFO mode: a full FIFO loses the new character;
 * 16450 mode: it overwrites the holding register. Both set OE (PC16550D LSR1). */
static void uart_rx_push(struct uart_regs *r, uint8_t c)
{
	unsigned cap = uart_rx_cap(r);

	if (r->rx_count >= cap) {
		r->lsr_err |= LSR_OE;
		if (cap == 1)
			r->rx[r->rx_head] = c;
		return;
	}
	r->rx[(r->rx_head + r->rx_count) % UART_FIFO_SIZE] = c;
	r->rx_count++;
}

static uint8_t uart_rx_pop(struct uart_regs *r)
{
	uint8_t c;

	if (!r->rx_count)
		return r->rx[r->rx_head];
	c = r->rx[r->rx_head];
	r->rx_head = (r->rx_head + 1) % UART_FIFO_SIZE;
	r->rx_count--;
	return c;
}

static bool uart_out_ready(struct uart *u)
{
	struct pollfd p = { .fd = u->out_fd, .events = POLLOUT };
	int n;

	do
		n = poll(&p, 1, u->out_stalled ? 0 : UART_TX_STALL_MS);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		u->out_stalled = true;
	return n > 0 && (p.revents & POLLOUT) && !(p.revents & (POLLERR | POLLHUP | POLLNVAL));
}

/* Never blocks for long: a full non-blocking pipe returns EAGAIN, a blocking
 * one is polled first. Dropped bytes are counted and logged once. */
static void uart_tx_out(struct uart *u, uint8_t c)
{
	ssize_t n;

	if (u->out_fd < 0)
		return;
	if (!u->out_poll || uart_out_ready(u)) {
		do
			n = write(u->out_fd, &c, 1);
		while (n < 0 && errno == EINTR);
		if (n == 1) {
			u->out_stalled = false;
			return;
		}
	}
	if (!u->tx_dropped++)
		kwarn("uart: output fd %d not writable, dropping transmitted bytes", u->out_fd);
}

static void uart_write_thr(struct uart *u, uint8_t c)
{
	if (u->r.mcr & MCR_LOOP)
		uart_rx_push(&u->r, c);
	else
		uart_tx_out(u, c);
	/* The byte left THR at once, so THR is empty again and THRE re-arms. */
	u->r.thri_pending = true;
}

static void uart_write_ier(struct uart_regs *r, uint8_t v)
{
	uint8_t changed = (r->ier ^ v) & IER_ETBEI;

	r->ier = v & IER_MASK;
	/* Enabling ETBEI with THR empty raises THRE at once; Linux's UART_BUG_THRE
	 * probe depends on it. */
	if (changed)
		r->thri_pending = (r->ier & IER_ETBEI) != 0;
}

/* PC16550D FCR: bit 0 must be set for the other bits to take; changing bit 0
 * empties both FIFOs. */
static void uart_write_fcr(struct uart_regs *r, uint8_t v)
{
	uint8_t nv = (v & FCR_ENABLE) ? (v & FCR_MASK) : 0;

	if ((nv ^ r->fcr) & FCR_ENABLE || (nv & FCR_ENABLE && v & FCR_CLEAR_RCVR))
		uart_rx_clear(r);
	r->fcr = nv;
}

static uint8_t uart_read_iir(struct uart_regs *r)
{
	uint8_t id = uart_iir_id(r);

	if (id == IIR_THRI)
		r->thri_pending = false;
	return id | ((r->fcr & FCR_ENABLE) ? IIR_FIFO : 0);
}

static uint8_t uart_read_lsr(struct uart_regs *r)
{
	uint8_t v = r->lsr_err | LSR_THRE | LSR_TEMT | (r->rx_count ? LSR_DR : 0);

	r->lsr_err = 0;
	return v;
}

static uint8_t uart_read_reg(struct uart *u, unsigned reg)
{
	struct uart_regs *r = &u->r;
	uint8_t v;

	switch (reg) {
	case UART_RBR: return (r->lcr & LCR_DLAB) ? r->dll : uart_rx_pop(r);
	case UART_IER: return (r->lcr & LCR_DLAB) ? r->dlm : r->ier;
	case UART_IIR: return uart_read_iir(r);
	case UART_LCR: return r->lcr;
	case UART_MCR: return r->mcr;
	case UART_LSR: return uart_read_lsr(r);
	case UART_MSR:
		v = r->msr;
		r->msr &= ~MSR_DELTAS;
		return v;
	case UART_SCR: return r->scr;
	}
	return 0xff;
}

static void uart_write_reg(struct uart *u, unsigned reg, uint8_t v)
{
	struct uart_regs *r = &u->r;

	switch (reg) {
	case UART_THR:
		if (r->lcr & LCR_DLAB)
			r->dll = v;
		else
			uart_write_thr(u, v);
		break;
	case UART_IER:
		if (r->lcr & LCR_DLAB)
			r->dlm = v;
		else
			uart_write_ier(r, v);
		break;
	case UART_FCR: uart_write_fcr(r, v); break;
	case UART_LCR: r->lcr = v; break;
	case UART_MCR:
		r->mcr = v & MCR_MASK;
		uart_update_msr(r);
		break;
	case UART_SCR: r->scr = v; break;
	default:
		/* LSR and MSR are for factory test only: writes ignored. */
		break;
	}
}

/* The registers are byte-wide: a wider access is split as the ISA bus would. */
static uint64_t uart_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	struct uart *u = to_uart(dev);
	uint64_t v = 0;

	for (unsigned i = 0; i < size; i++) {
		uint64_t reg = off + i;
		uint8_t b = reg < UART_NR_REGS ? uart_read_reg(u, (unsigned)reg) : 0xff;

		v |= (uint64_t)b << (8 * i);
	}
	uart_update_irq(u, false);
	return v;
}

static void uart_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct uart *u = to_uart(dev);

	for (unsigned i = 0; i < size; i++)
		if (off + i < UART_NR_REGS)
			uart_write_reg(u, (unsigned)(off + i), (uint8_t)(val >> (8 * i)));
	uart_update_irq(u, false);
}

/* PC16550D reset configuration (MR pin). */
static void uart_reset(struct device *dev)
{
	struct uart *u = to_uart(dev);

	memset(&u->r, 0, sizeof(u->r));
	u->r.msr = uart_modem_inputs(0);
	uart_update_irq(u, true);
}

size_t uart_receive(struct device *dev, const uint8_t *buf, size_t len)
{
	struct uart *u = to_uart(dev);
	size_t n = 0;

	pthread_mutex_lock(&dev->lock);
	if (u->r.mcr & MCR_LOOP) {
		/* The serial input is disconnected in loopback: the line drops it. */
		n = len;
	} else {
		while (n < len && u->r.rx_count < uart_rx_cap(&u->r))
			uart_rx_push(&u->r, buf[n++]);
		uart_update_irq(u, false);
	}
	pthread_mutex_unlock(&dev->lock);
	return n;
}

int uart_can_receive(struct device *dev)
{
	struct uart *u = to_uart(dev);
	int ok;

	pthread_mutex_lock(&dev->lock);
	ok = (u->r.mcr & MCR_LOOP) || u->r.rx_count < uart_rx_cap(&u->r);
	pthread_mutex_unlock(&dev->lock);
	return ok;
}

static int uart_save(struct device *dev, struct state_buf *out)
{
	const struct uart_regs *r = &to_uart(dev)->r;
	size_t mark = state_section_begin(out, UART_STATE_ID, UART_STATE_VERSION);

	state_put_u8(out, r->ier);
	state_put_u8(out, r->lcr);
	state_put_u8(out, r->mcr);
	state_put_u8(out, r->lsr_err);
	state_put_u8(out, r->msr);
	state_put_u8(out, r->scr);
	state_put_u8(out, r->dll);
	state_put_u8(out, r->dlm);
	state_put_u8(out, r->fcr);
	state_put_u8(out, r->thri_pending);
	state_put_u8(out, (uint8_t)r->rx_count);
	for (unsigned i = 0; i < UART_FIFO_SIZE; i++)
		state_put_u8(out, r->rx[(r->rx_head + i) % UART_FIFO_SIZE]);
	state_section_end(out, mark);
	return out->error ? -ENOMEM : 0;
}

static bool uart_regs_valid(const struct uart_regs *r, uint8_t thri)
{
	if (r->ier & ~IER_MASK || r->mcr & ~MCR_MASK || r->lsr_err & ~LSR_ERRS)
		return false;
	if (r->fcr & ~FCR_MASK || (!(r->fcr & FCR_ENABLE) && r->fcr))
		return false;
	if (thri > 1 || r->rx_count > uart_rx_cap(r))
		return false;
	return (r->msr & 0xf0) == uart_modem_inputs(r->mcr);
}

static int uart_load(struct device *dev, struct state_buf *in)
{
	struct uart *u = to_uart(dev);
	struct uart_regs r = { 0 };
	uint8_t thri;
	size_t end;

	if (state_section_open(in, UART_STATE_ID, UART_STATE_VERSION) < 0)
		return -EINVAL;
	end = emu_section_body_end(in);
	r.ier = state_get_u8(in);
	r.lcr = state_get_u8(in);
	r.mcr = state_get_u8(in);
	r.lsr_err = state_get_u8(in);
	r.msr = state_get_u8(in);
	r.scr = state_get_u8(in);
	r.dll = state_get_u8(in);
	r.dlm = state_get_u8(in);
	r.fcr = state_get_u8(in);
	thri = state_get_u8(in);
	r.rx_count = state_get_u8(in);
	state_get_bytes(in, r.rx, UART_FIFO_SIZE);
	if (!emu_section_done(in, end) || !uart_regs_valid(&r, thri))
		return -EINVAL;
	r.thri_pending = thri;
	u->r = r;
	uart_update_irq(u, true);
	return 0;
}

static void uart_destroy(struct device *dev)
{
	pthread_mutex_destroy(&dev->lock);
	free(to_uart(dev));
}

static const struct dev_ops uart_ops = {
	.name = "uart16550",
	.reset = uart_reset,
	.read = uart_read,
	.write = uart_write,
	.save = uart_save,
	.load = uart_load,
	.destroy = uart_destroy,
};

/* Regular files and block devices never block for long; a non-blocking fd
 * returns EAGAIN; anything else (a blocking pipe, tty or socket) is polled. */
static bool uart_fd_needs_poll(int fd)
{
	struct stat st;
	int fl;

	if (fd < 0 || fstat(fd, &st) < 0)
		return false;
	if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
		return false;
	fl = fcntl(fd, F_GETFL);
	return fl >= 0 && !(fl & O_NONBLOCK);
}

struct device *uart_create(const struct irq_line *irq, int out_fd)
{
	struct uart *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	device_init(&u->dev, &uart_ops);
	if (irq)
		u->irq = *irq;
	u->out_fd = out_fd;
	u->out_poll = uart_fd_needs_poll(out_fd);
	u->irq_level = -1;
	uart_reset(&u->dev);
	return &u->dev;
}
