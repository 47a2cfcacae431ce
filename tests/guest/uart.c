/* uart.bin: the 16550A on COM1 at register level (PC16550D datasheet;
 * register offsets from the base below). Each test quiesces the console,
 * pokes registers, records what it read, restores the console and only then
 * prints, so its own output cannot disturb the state under test. */
#include "guest.h"

#define COM1 BOARD_PORT_COM1
#define RBR  0 /* receive buffer (read, DLAB=0) */
#define THR  0 /* transmit holding (write, DLAB=0) */
#define DLL  0 /* divisor latch low (DLAB=1) */
#define IER  1
#define DLM  1 /* divisor latch high (DLAB=1) */
#define IIR  2 /* read */
#define FCR  2 /* write */
#define LCR  3
#define MCR  4
#define LSR  5
#define MSR  6
#define SCR  7

#define LCR_DLAB   0x80
#define LSR_DR	   0x01
#define LSR_ERRORS 0x1e /* OE PE FE BI */
#define LSR_THRE   0x20
#define LSR_TEMT   0x40
#define IIR_NO_INT 0x01
#define IIR_ID	   0x0f
#define IIR_THRI   0x02
#define IIR_RDI	   0x04
#define IIR_CTI	   0x0c
#define IIR_FIFO   0xc0
#define MCR_LOOP   0x10
#define POLLS	   100000

static uint8_t rd(unsigned reg)
{
	return inb(COM1 + reg);
}

static void wr(unsigned reg, uint8_t v)
{
	outb(COM1 + reg, v);
}

/* Wait for the transmitter to go idle, so register changes do not cut a
 * character of our own output. */
static void quiesce(void)
{
	for (unsigned i = 0;
	     i < POLLS && (rd(LSR) & (LSR_THRE | LSR_TEMT)) != (LSR_THRE | LSR_TEMT); i++)
		;
}

static void drain_rx(void)
{
	for (unsigned i = 0; i < 64 && (rd(LSR) & LSR_DR); i++)
		(void)rd(RBR);
}

static void restore(void)
{
	serial_init();
	drain_rx();
}

static bool wait_dr(void)
{
	for (unsigned i = 0; i < POLLS; i++)
		if (rd(LSR) & LSR_DR)
			return true;
	return false;
}

static void test_scratch(void)
{
	uint8_t a, b, c;

	quiesce();
	wr(SCR, 0x55);
	a = rd(SCR);
	wr(SCR, 0xaa);
	b = rd(SCR);
	wr(SCR, 0x00);
	c = rd(SCR);
	restore();
	check(a == 0x55 && b == 0xaa && c == 0x00,
	      "scratch register holds 55/aa/00 (read %02x/%02x/%02x)", a, b, c);
}

static void test_lcr_divisor(void)
{
	uint8_t lcr_word, lcr_dlab, dll, dlm, ier;

	quiesce();
	wr(IER, 0x00);
	wr(LCR, 0x1b); /* 8 bits, even parity, 1 stop */
	lcr_word = rd(LCR);
	wr(LCR, 0x03 | LCR_DLAB);
	lcr_dlab = rd(LCR);
	wr(DLL, 0x34);
	wr(DLM, 0x12);
	dll = rd(DLL);
	dlm = rd(DLM);
	wr(LCR, 0x03);
	ier = rd(IER); /* DLM and IER share offset 1 */
	restore();
	check(lcr_word == 0x1b, "LCR reads back 1b (read %02x)", lcr_word);
	check(lcr_dlab == 0x83, "LCR reads back 83 with DLAB (read %02x)", lcr_dlab);
	check(dll == 0x34 && dlm == 0x12, "divisor latch reads back 1234 (read %02x%02x)", dlm,
	      dll);
	check(ier == 0x00, "IER unaffected by DLM write while DLAB=1 (read %02x)", ier);
}

static void test_lsr_idle(void)
{
	uint8_t lsr1, lsr2;

	quiesce();
	drain_rx();
	lsr1 = rd(LSR);
	lsr2 = rd(LSR);
	restore();
	check((lsr1 & (LSR_THRE | LSR_TEMT)) == (LSR_THRE | LSR_TEMT),
	      "LSR THRE and TEMT set when idle (read %02x)", lsr1);
	check(!(lsr1 & LSR_DR), "LSR DR clear with nothing received (read %02x)", lsr1);
	check(!(lsr2 & LSR_ERRORS), "LSR error bits clear after a read (read %02x)", lsr2);
}

static void test_fifo(void)
{
	uint8_t iir_on, iir_off, iir_noint;

	quiesce();
	wr(IER, 0x00);
	wr(FCR, 0x07);
	iir_on = rd(IIR);
	wr(FCR, 0x00);
	iir_off = rd(IIR);
	iir_noint = iir_off;
	restore();
	check((iir_on & IIR_FIFO) == IIR_FIFO,
	      "FCR enable: IIR bits 7:6 = 11, a 16550A (read %02x)", iir_on);
	check((iir_off & IIR_FIFO) == 0, "FCR disable: IIR bits 7:6 = 00 (read %02x)", iir_off);
	check((iir_noint & IIR_ID) == IIR_NO_INT, "IIR reports no interrupt with IER=0 (read %02x)",
	      iir_noint);
}

static void test_ier_thri(void)
{
	uint8_t ier, first, second, off, again;

	quiesce();
	wr(IER, 0x0f);
	ier = rd(IER);
	wr(IER, 0x02); /* ETBEI only, THR is empty */
	first = rd(IIR);
	second = rd(IIR); /* reading IIR cleared the THRE source */
	wr(IER, 0x00);
	off = rd(IIR);
	wr(IER, 0x02); /* enabling again while THR is empty re-arms it */
	again = rd(IIR);
	wr(IER, 0x00);
	restore();
	check(ier == 0x0f, "IER reads back 0f (read %02x)", ier);
	check((first & IIR_ID) == IIR_THRI, "ETBEI with THR empty: IIR = THR empty (read %02x)",
	      first);
	check((second & IIR_ID) == IIR_NO_INT, "reading IIR cleared the THRE interrupt (read %02x)",
	      second);
	check((off & IIR_ID) == IIR_NO_INT, "IER=0: no interrupt (read %02x)", off);
	check((again & IIR_ID) == IIR_THRI, "re-enabling ETBEI raises THRE again (read %02x)",
	      again);
}

static void test_loopback_msr(void)
{
	static const struct {
		uint8_t mcr, msr;
	} map[] = {
		{ 0x00, 0x00 }, /* all outputs off */
		{ 0x01, 0x20 }, /* DTR  -> DSR */
		{ 0x02, 0x10 }, /* RTS  -> CTS */
		{ 0x04, 0x40 }, /* OUT1 -> RI */
		{ 0x08, 0x80 }, /* OUT2 -> DCD */
		{ 0x0f, 0xf0 },
	};
	uint8_t got[sizeof(map) / sizeof(map[0])];

	quiesce();
	for (unsigned i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		wr(MCR, MCR_LOOP | map[i].mcr);
		got[i] = rd(MSR);
	}
	wr(MCR, 0x03);
	restore();
	for (unsigned i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		check((got[i] & 0xf0) == map[i].msr,
		      "loopback MCR %02x: MSR status bits %02x (read %02x)", MCR_LOOP | map[i].mcr,
		      map[i].msr, got[i]);
}

static void test_loopback_data(void)
{
	static const uint8_t msg[4] = { 'K', 0x00, 0xff, 0x5a };
	uint8_t got[4] = { 0 };
	bool ready[4] = { false };
	uint8_t lsr_after;

	quiesce();
	wr(IER, 0x00);
	wr(FCR, 0x07);
	wr(MCR, MCR_LOOP | 0x03);
	drain_rx();
	for (unsigned i = 0; i < 4; i++)
		wr(THR, msg[i]);
	for (unsigned i = 0; i < 4; i++) {
		ready[i] = wait_dr();
		got[i] = rd(RBR);
	}
	lsr_after = rd(LSR);
	wr(MCR, 0x03);
	restore();
	for (unsigned i = 0; i < 4; i++)
		check(ready[i] && got[i] == msg[i],
		      "loopback byte %u: LSR.DR %s, RBR %02x (sent %02x)", i,
		      ready[i] ? "set" : "never set", got[i], msg[i]);
	check(!(lsr_after & LSR_DR), "LSR.DR clear once the FIFO is read empty (read %02x)",
	      lsr_after);
}

static void test_loopback_irq(void)
{
	uint8_t rdi, prio, after;
	bool ready;

	quiesce();
	wr(IER, 0x00);
	wr(FCR, 0x07); /* trigger level 1 byte */
	wr(MCR, MCR_LOOP | 0x03);
	drain_rx();
	wr(IER, 0x01); /* ERBFI */
	wr(THR, 0x42);
	ready = wait_dr();
	rdi = rd(IIR);
	wr(IER, 0x03); /* THRE too: received data has priority */
	prio = rd(IIR);
	wr(IER, 0x01);
	(void)rd(RBR);
	after = rd(IIR);
	wr(IER, 0x00);
	wr(MCR, 0x03);
	restore();
	check(ready && ((rdi & IIR_ID) == IIR_RDI || (rdi & IIR_ID) == IIR_CTI),
	      "ERBFI with a byte received: IIR = received data (read %02x)", rdi);
	check((prio & IIR_ID) == IIR_RDI || (prio & IIR_ID) == IIR_CTI,
	      "received data outranks THR empty (read %02x)", prio);
	check((after & IIR_ID) == IIR_NO_INT, "reading RBR cleared it (read %02x)", after);
}

int main(void)
{
	gprintf("uart: 16550A at %#x\n", COM1);
	test_scratch();
	test_lcr_divisor();
	test_lsr_idle();
	test_fifo();
	test_ier_thri();
	test_loopback_msr();
	test_loopback_data();
	test_loopback_irq();
	return check_result(GUEST_EXIT_UART);
}
