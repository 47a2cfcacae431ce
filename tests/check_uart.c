/* 16550A UART: registers, FIFO, interrupts, output fd, state. */
#include <check.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "kestrel/devices.h"
#include "fake_board.h"

enum {
	RBR = 0,
	THR = 0,
	DLL = 0,
	IER = 1,
	DLM = 1,
	IIR = 2,
	FCR = 2,
	LCR = 3,
	MCR = 4,
	LSR = 5,
	MSR = 6,
	SCR = 7
};

static struct fake_irq irq;
static struct device *u;

static uint8_t rd(unsigned reg)
{
	return (uint8_t)dev_rd(u, 0, reg, 1);
}

static void wr(unsigned reg, uint8_t v)
{
	dev_wr(u, 0, reg, 1, v);
}

static struct device *new_uart(int fd)
{
	struct irq_line l = fake_irq_line(&irq, 4);

	return uart_create(&l, fd);
}

static void setup(void)
{
	u = new_uart(-1);
	ck_assert_ptr_nonnull(u);
}

static void teardown(void)
{
	u->ops->destroy(u);
}

START_TEST(test_reset_values)
{
	ck_assert_int_eq(irq.level, 0);
	ck_assert_uint_eq(rd(IER), 0);
	ck_assert_uint_eq(rd(IIR), 0x01);
	ck_assert_uint_eq(rd(LCR), 0);
	ck_assert_uint_eq(rd(MCR), 0);
	ck_assert_uint_eq(rd(LSR), 0x60);
	ck_assert_uint_eq(rd(MSR), 0xb0); /* CTS, DSR, DCD: a present port */
	ck_assert_uint_eq(rd(MSR), 0xb0);
	wr(SCR, 0x5a);
	ck_assert_uint_eq(rd(SCR), 0x5a);
	wr(IER, 0xff);
	ck_assert_uint_eq(rd(IER), 0x0f);
	wr(MCR, 0xff);
	ck_assert_uint_eq(rd(MCR), 0x1f);
	u->ops->reset(u);
	ck_assert_uint_eq(rd(IER), 0);
	ck_assert_uint_eq(rd(MCR), 0);
	ck_assert_uint_eq(rd(SCR), 0);
}
END_TEST

/* Replace the fixture's UART by one writing to a new non-blocking pipe p. */
static void uart_on_pipe(int p[2])
{
	ck_assert_int_eq(pipe2(p, O_NONBLOCK), 0);
	u->ops->destroy(u);
	u = new_uart(p[1]);
}

START_TEST(test_dlab)
{
	int p[2];

	wr(IER, 0x05);
	wr(LCR, 0x83);
	wr(DLL, 0x0c);
	wr(DLM, 0x01);
	ck_assert_uint_eq(rd(DLL), 0x0c);
	ck_assert_uint_eq(rd(DLM), 0x01);
	wr(LCR, 0x03);
	ck_assert_uint_eq(rd(IER), 0x05);
	ck_assert_uint_eq(rd(LCR), 0x03);
	wr(LCR, 0x80);
	ck_assert_uint_eq(rd(DLL), 0x0c);
	ck_assert_uint_eq(rd(DLM), 0x01);
	u->ops->destroy(u);

	/* Under DLAB offset 0 is the divisor, not THR: nothing is sent. */
	ck_assert_int_eq(pipe2(p, O_NONBLOCK), 0);
	u = new_uart(p[1]);
	wr(LCR, 0x80);
	wr(THR, 'x');
	char c;
	ck_assert_int_eq(read(p[0], &c, 1), -1);
	wr(LCR, 0x00);
	wr(THR, 'y');
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	ck_assert_int_eq(c, 'y');
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_loopback)
{
	int p[2];

	uart_on_pipe(p);

	/* Linux autoconfig: MCR = LOOP | RTS | OUT2 must read MSR[7:4] = 0x90. */
	wr(MCR, 0x10 | 0x0a);
	ck_assert_uint_eq(rd(MSR) & 0xf0, 0x90);
	wr(MCR, 0x10 | 0x01 | 0x04); /* DTR, OUT1 -> DSR, RI */
	uint8_t msr = rd(MSR);
	ck_assert_uint_eq(msr & 0xf0, 0x60);
	ck_assert_uint_eq(msr & 0x0f, 0x01 | 0x02 | 0x08); /* CTS, DSR, DCD all changed */
	ck_assert_uint_eq(rd(MSR) & 0x0f, 0);		   /* deltas clear on read */
	wr(MCR, 0x10);					   /* RI falls: trailing edge */
	ck_assert_uint_eq(rd(MSR), 0x04 | 0x02);

	wr(THR, 'A');
	wr(THR, 'B');
	ck_assert_uint_eq(rd(LSR), 0x63); /* DR, OE, THRE, TEMT: non-FIFO, B overran A */
	ck_assert_uint_eq(rd(RBR), 'B');
	ck_assert_uint_eq(rd(LSR) & 0x01, 0);
	char c;
	ck_assert_int_eq(read(p[0], &c, 1), -1); /* nothing reached the line */

	/* Input is disconnected in loopback: accepted and dropped. */
	ck_assert_uint_eq(uart_receive(u, (const uint8_t *)"zz", 2), 2);
	ck_assert_uint_eq(rd(LSR) & 0x01, 0);

	wr(MCR, 0x00);
	ck_assert_uint_eq(rd(MSR) & 0xf0, 0xb0);
	wr(THR, 'C');
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	ck_assert_int_eq(c, 'C');
	ck_assert_uint_eq(rd(LSR) & 0x01, 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_fifo_mode_iir_bits)
{
	wr(FCR, 0x01);
	ck_assert_uint_eq(rd(IIR), 0xc1);
	wr(FCR, 0x06); /* bit 0 clear: back to 16450 mode */
	ck_assert_uint_eq(rd(IIR), 0x01);
	wr(FCR, 0xc7);
	ck_assert_uint_eq(rd(IIR), 0xc1);
}
END_TEST

START_TEST(test_fifo_overflow)
{
	uint8_t buf[20];

	wr(FCR, 0x07);
	wr(MCR, 0x10);
	for (int i = 0; i < 17; i++)
		wr(THR, (uint8_t)('a' + i));
	uint8_t lsr = rd(LSR);
	ck_assert_uint_eq(lsr & 0x03, 0x03);  /* DR and OE */
	ck_assert_uint_eq(rd(LSR) & 0x02, 0); /* reading LSR cleared OE */
	for (int i = 0; i < 16; i++)
		ck_assert_uint_eq(rd(RBR), 'a' + i); /* the 17th was lost */
	ck_assert_uint_eq(rd(LSR) & 0x03, 0);

	/* Host input is flow-controlled, never overrun. */
	wr(MCR, 0x00);
	for (int i = 0; i < 20; i++)
		buf[i] = (uint8_t)i;
	ck_assert_uint_eq(uart_receive(u, buf, 20), 16);
	ck_assert_int_eq(uart_can_receive(u), 0);
	ck_assert_uint_eq(uart_receive(u, buf, 20), 0);
	ck_assert_uint_eq(rd(LSR) & 0x02, 0);
	ck_assert_uint_eq(rd(RBR), 0);
	ck_assert_int_eq(uart_can_receive(u), 1);
	ck_assert_uint_eq(uart_receive(u, buf + 16, 4), 1);
	for (int i = 1; i < 16; i++)
		ck_assert_uint_eq(rd(RBR), i);
	ck_assert_uint_eq(rd(RBR), 16);

	/* FCR bit 1 empties the receive FIFO; toggling bit 0 does too. */
	ck_assert_uint_eq(uart_receive(u, buf, 5), 5);
	wr(FCR, 0x03);
	ck_assert_uint_eq(rd(LSR) & 0x01, 0);
	ck_assert_uint_eq(uart_receive(u, buf, 5), 5);
	wr(FCR, 0x00);
	ck_assert_uint_eq(rd(LSR) & 0x01, 0);
	ck_assert_uint_eq(uart_receive(u, buf, 5), 1); /* 16450 mode: one holding register */
}
END_TEST

START_TEST(test_rx_trigger_levels)
{
	static const struct {
		uint8_t fcr;
		unsigned level;
	} t[] = {
		{ 0x01, 1 },
		{ 0x41, 4 },
		{ 0x81, 8 },
		{ 0xc1, 14 },
	};
	uint8_t b = 'q';

	wr(MCR, 0x08);
	wr(IER, 0x01);
	for (unsigned i = 0; i < 4; i++) {
		wr(FCR, t[i].fcr | 0x02);
		ck_assert_uint_eq(rd(IIR), 0xc1);
		for (unsigned n = 1; n <= t[i].level; n++) {
			ck_assert_uint_eq(uart_receive(u, &b, 1), 1);
			/* Below the trigger: character timeout (taken as elapsed). */
			ck_assert_uint_eq(rd(IIR), n < t[i].level ? 0xcc : 0xc4);
			ck_assert_int_eq(irq.level, 1);
		}
	}
	wr(IER, 0x00);
	ck_assert_uint_eq(rd(IIR), 0xc1);
	ck_assert_int_eq(irq.level, 0);
}
END_TEST

START_TEST(test_thre_interrupt)
{
	int p[2];

	uart_on_pipe(p);
	wr(MCR, 0x08);
	ck_assert_int_eq(irq.level, 0);
	wr(IER, 0x02); /* THR is empty: THRE at once */
	ck_assert_int_eq(irq.level, 1);
	ck_assert_uint_eq(rd(IIR), 0x02);
	ck_assert_int_eq(irq.level, 0); /* reading IIR cleared it */
	ck_assert_uint_eq(rd(IIR), 0x01);
	wr(THR, 'x'); /* sent at once, THR empty again */
	ck_assert_int_eq(irq.level, 1);
	wr(IER, 0x00);
	ck_assert_int_eq(irq.level, 0);
	ck_assert_uint_eq(rd(IIR), 0x01);
	/* Linux's UART_BUG_THRE probe: IER=THRI, read IIR, IER=0, IER=THRI, read IIR. */
	wr(IER, 0x02);
	ck_assert_uint_eq(rd(IIR) & 0x01, 0);
	wr(IER, 0x00);
	wr(IER, 0x02);
	ck_assert_uint_eq(rd(IIR) & 0x01, 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_iir_priority)
{
	uint8_t c = 1;

	/* Loopback to make an overrun; IIR reports even though the line is gated. */
	wr(FCR, 0x01);
	wr(MCR, 0x10);
	for (int i = 0; i < 17; i++)
		wr(THR, (uint8_t)i);
	wr(MCR, 0x12); /* RTS -> CTS: a modem status change */
	wr(IER, 0x0f);
	ck_assert_int_eq(irq.level, 0);	  /* loopback forces OUT2 inactive */
	ck_assert_uint_eq(rd(IIR), 0xc6); /* line status first */
	ck_assert_uint_eq(rd(IIR), 0xc6); /* reading IIR does not clear it */
	ck_assert_uint_eq(rd(LSR) & 0x02, 0x02);
	ck_assert_uint_eq(rd(IIR), 0xc4); /* then received data (16 >= trigger 1) */
	for (int i = 0; i < 16; i++)
		rd(RBR);
	ck_assert_uint_eq(rd(IIR), 0xc2); /* then THR empty, cleared by this read */
	ck_assert_uint_eq(rd(IIR), 0xc0); /* then modem status */
	ck_assert_uint_eq(rd(IIR), 0xc0);
	rd(MSR);
	ck_assert_uint_eq(rd(IIR), 0xc1);
	(void)c;
}
END_TEST

START_TEST(test_out2_gating)
{
	wr(IER, 0x02);
	ck_assert_int_eq(irq.level, 0); /* MCR OUT2 clear: line gated */
	wr(MCR, 0x08);
	ck_assert_int_eq(irq.level, 1);
	wr(MCR, 0x18); /* loopback: OUT2 pin forced inactive */
	ck_assert_int_eq(irq.level, 0);
	wr(MCR, 0x0b);
	ck_assert_int_eq(irq.level, 1);
	wr(MCR, 0x03);
	ck_assert_int_eq(irq.level, 0);
	ck_assert_int_eq(irq.bad, 0);
	ck_assert_uint_eq(irq.gsi, 4);
}
END_TEST

START_TEST(test_output_pipe_nonblocking_full)
{
	int p[2];
	char buf[8192];
	struct timespec t0, t1;

	ck_assert_int_eq(pipe2(p, O_NONBLOCK), 0);
	ck_assert_int_ge(fcntl(p[1], F_SETPIPE_SZ, 4096), 4096);
	u->ops->destroy(u);
	u = new_uart(p[1]);
	wr(THR, 'h');
	wr(THR, 'i');
	ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 2);
	ck_assert_mem_eq(buf, "hi", 2);

	int cap = fcntl(p[1], F_GETPIPE_SZ);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < cap + 5000; i++)
		wr(THR, (uint8_t)i);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 20); /* hang guard only */
	ssize_t n = read(p[0], buf, sizeof(buf));
	ck_assert_int_eq(n, cap);
	for (int i = 0; i < n; i++)
		ck_assert_uint_eq((uint8_t)buf[i], (uint8_t)i);
	ck_assert_uint_eq(rd(LSR) & 0x60, 0x60);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* A blocking pipe nobody reads: bytes are dropped after a short wait instead
 * of stalling the vCPU. Linux's poll() reports a pipe full when all its page
 * slots are in use, which can leave up to a page unused. */
START_TEST(test_output_pipe_blocking_full)
{
	int p[2];
	static char buf[1 << 17];
	struct timespec t0, t1;

	ck_assert_int_eq(pipe(p), 0);
	u->ops->destroy(u);
	u = new_uart(p[1]);
	int cap = fcntl(p[1], F_GETPIPE_SZ);
	ck_assert_int_ge(cap, 8192);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < cap + 2000; i++)
		wr(THR, (uint8_t)(i + 1));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double dt = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* A hang guard, not a timing test: the writer must give up eventually. */
	ck_assert_msg(dt < 20.0, "blocked %.3f s on a full pipe", dt);
	ck_assert_int_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	ssize_t n = read(p[0], buf, sizeof(buf));
	ck_assert_int_gt(n, cap - 4096);
	ck_assert_int_le(n, cap);
	for (ssize_t i = 0; i < n; i++)
		ck_assert_uint_eq((uint8_t)buf[i], (uint8_t)(i + 1));
	/* Drained: output flows again. */
	wr(THR, 'z');
	ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 'z');
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_wide_access_split)
{
	/* A 2-byte write at LCR hits LCR and MCR; a 4-byte read at 4 sees MCR..SCR. */
	dev_wr(u, 0, LCR, 2, 0x0803);
	ck_assert_uint_eq(rd(LCR), 0x03);
	ck_assert_uint_eq(rd(MCR), 0x08);
	wr(SCR, 0x77);
	ck_assert_uint_eq(dev_rd(u, 0, MCR, 4), 0x77b06008ULL);
	/* Past the last register: floats high. */
	ck_assert_uint_eq(dev_rd(u, 0, SCR, 2), 0xff77);
}
END_TEST

/* IRQ level must be 1 exactly when IIR has a source and OUT2 is set outside
 * loopback. IIR is read only after the level is checked. */
static void uart_check_invariants(void)
{
	uint8_t mcr = rd(MCR), lsr;
	bool gate = (mcr & 0x08) && !(mcr & 0x10);
	int level = irq.level;
	uint8_t iir = rd(IIR); /* may clear THRE: compare with the level before */

	ck_assert_int_eq(irq.bad, 0);
	ck_assert_int_ge(level, 0);
	if (gate)
		ck_assert_int_eq(level, !(iir & 1));
	else
		ck_assert_int_eq(level, 0);
	ck_assert_uint_eq(iir & 0x30, 0);
	uint8_t id = iir & 0x0f;
	ck_assert(id == 1 || id == 0 || id == 2 || id == 4 || id == 6 || id == 0xc);
	lsr = rd(LSR);
	ck_assert_uint_eq(lsr & 0xe0, 0x60);
	if (!(rd(LCR) & 0x80))
		ck_assert_uint_eq(rd(IER) & 0xf0, 0);
	ck_assert_uint_eq(mcr & 0xe0, 0);
}

START_TEST(test_fuzz)
{
	uint8_t buf[32];

	for (int i = 0; i < 100000; i++) {
		uint64_t r = fuzz_next();
		unsigned size = fuzz_size();
		uint64_t off = (r >> 8) % 10;

		switch (r % 8) {
		case 0:
		case 1:
		case 2: dev_wr(u, 0, off, size, fuzz_next()); break;
		case 3:
		case 4:
		case 5: dev_rd(u, 0, off, size); break;
		case 6: uart_receive(u, buf, (r >> 16) % sizeof(buf)); break;
		case 7:
			if ((r >> 20) % 500 == 0)
				u->ops->reset(u);
			break;
		}
		if (i % 7 == 0)
			uart_check_invariants();
	}
}
END_TEST

static void uart_make_busy_state(void)
{
	uint8_t data[5] = { 1, 2, 3, 4, 5 };

	wr(LCR, 0x80);
	wr(DLL, 0x34);
	wr(DLM, 0x12);
	wr(LCR, 0x1b);
	wr(FCR, 0x81);
	wr(MCR, 0x10);
	for (int i = 0; i < 18; i++)
		wr(THR, (uint8_t)(0x40 + i)); /* full FIFO + OE */
	wr(MCR, 0x0b);
	for (int i = 0; i < 11; i++)
		rd(RBR);
	ck_assert_uint_eq(uart_receive(u, data, 5), 5);
	wr(SCR, 0xa5);
	wr(IER, 0x0d);
}

START_TEST(test_save_load_roundtrip)
{
	struct state_buf good;
	struct device *a = u;
	struct device *b;

	uart_make_busy_state();
	ck_assert_int_eq(irq.level, 1);
	b = new_uart(-1);
	ck_assert_int_eq(irq.level, 0);
	roundtrip(a, b, &good);
	ck_assert_int_eq(irq.level, 1); /* load restored the line */

	/* Both devices now answer every read the same way. */
	static const unsigned seq[] = { LSR, IIR, MSR, LCR, MCR, SCR, IER, RBR, RBR, LSR, RBR,
					RBR, RBR, RBR, RBR, RBR, RBR, RBR, RBR, LSR, IIR };
	for (unsigned i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		u = a;
		uint8_t va = rd(seq[i]);
		u = b;
		uint8_t vb = rd(seq[i]);
		ck_assert_msg(va == vb, "reg %u: %#x vs %#x", seq[i], va, vb);
	}
	u = b;
	wr(LCR, 0x80);
	ck_assert_uint_eq(rd(DLL), 0x34);
	ck_assert_uint_eq(rd(DLM), 0x12);
	u = a;
	b->ops->destroy(b);
	state_free(&good);
}
END_TEST

START_TEST(test_load_rejects_corruption)
{
	struct state_buf good;
	struct device *b;
	enum {
		O_IER = STATE_HDR,
		O_LCR,
		O_MCR,
		O_LSR,
		O_MSR,
		O_SCR,
		O_DLL,
		O_DLM,
		O_FCR,
		O_THRI,
		O_COUNT,
		O_RX
	};

	uart_make_busy_state();
	b = new_uart(-1);
	roundtrip(u, b, &good);
	check_truncations(b, &good);
	check_patched_fails(b, &good, 0, 0x00); /* section id */
	check_patched_fails(b, &good, 4, 0x02); /* newer version */
	check_patched_fails(b, &good, 8, 0x00); /* section length */
	check_patched_fails(b, &good, O_IER, 0x10);
	check_patched_fails(b, &good, O_MCR, 0x2b);
	check_patched_fails(b, &good, O_LSR, 0x01); /* DR is not stored */
	check_patched_fails(b, &good, O_MSR, 0x00); /* not what MCR implies */
	check_patched_fails(b, &good, O_FCR, 0x80); /* trigger without FIFO */
	check_patched_fails(b, &good, O_FCR, 0x03); /* clear bit is not a state */
	check_patched_fails(b, &good, O_THRI, 2);
	check_patched_fails(b, &good, O_COUNT, 17);
	check_patched_loads(b, &good, O_COUNT, 16);
	check_patched_loads(b, &good, O_SCR, 0x00);
	/* 16450 mode holds one byte at most. */
	struct state_buf s = state_copy(&good, good.len);
	s.data[O_FCR] = 0x00;
	s.data[O_COUNT] = 2;
	ck_assert_int_eq(b->ops->load(b, &s), -EINVAL);
	s.pos = 0;
	s.data[O_COUNT] = 1;
	ck_assert_int_eq(b->ops->load(b, &s), 0);
	state_free(&s);
	/* Extra bytes inside the section are refused too. */
	s = state_copy(&good, good.len);
	state_put_u8(&s, 0);
	s.data[8]++;
	ck_assert_int_eq(b->ops->load(b, &s), -EINVAL);
	state_free(&s);
	b->ops->destroy(b);
	state_free(&good);
}
END_TEST

SUITE_MAIN("uart16550", "core", setup, teardown, 30, test_reset_values, test_dlab, test_loopback,
	   test_fifo_mode_iir_bits, test_fifo_overflow, test_rx_trigger_levels, test_thre_interrupt,
	   test_iir_priority, test_out2_gating, test_output_pipe_nonblocking_full,
	   test_output_pipe_blocking_full, test_wide_access_split, test_fuzz,
	   test_save_load_roundtrip, test_load_rejects_corruption)
