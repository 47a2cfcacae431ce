/* The debug-exit port, the sink and the debug console. */
#include <check.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "kestrel/devices.h"
#include "fake_board.h"

static struct fake_ctl ctl;

static struct device *new_debug_exit(void)
{
	struct vm_ctl c = fake_vm_ctl(&ctl);

	return debug_exit_create(&c);
}

START_TEST(test_debug_exit_codes)
{
	struct device *d = new_debug_exit();

	dev_wr(d, 0, 0, 1, 0x10);
	ck_assert_int_eq(ctl.stops, 1);
	ck_assert_int_eq(ctl.why, VM_STOP_DEBUG_EXIT);
	ck_assert_int_eq(ctl.code, 0x21);
	dev_wr(d, 0, 0, 1, 0);
	ck_assert_int_eq(ctl.code, 1);
	dev_wr(d, 0, 0, 1, 0x80); /* (0x80 << 1) | 1 = 0x101: the OS keeps 8 bits */
	ck_assert_int_eq(ctl.code, 0x01);
	dev_wr(d, 0, 0, 1, 0x7f);
	ck_assert_int_eq(ctl.code, 0xff);
	dev_wr(d, 0, 0, 4, 0x12345678);
	ck_assert_int_eq(ctl.code, 0xf1);
	dev_wr(d, 0, 2, 2, 0x0003);
	ck_assert_int_eq(ctl.code, 0x07);
	dev_wr(d, 0, 0, 8, 0xffffffffffffff01ULL);
	ck_assert_int_eq(ctl.code, 0x03);
	ck_assert_int_eq(ctl.stops, 7);
	ck_assert_uint_eq(dev_rd(d, 0, 0, 1), 0xff);
	ck_assert_uint_eq(dev_rd(d, 0, 0, 2), 0xffff);
	ck_assert_uint_eq(dev_rd(d, 0, 0, 4), 0xffffffff);
	ck_assert_uint_eq(dev_rd(d, 0, 0, 8), ~0ULL);
	ck_assert_int_eq(ctl.stops, 7); /* reads never exit */
	d->ops->destroy(d);
}
END_TEST

START_TEST(test_sink)
{
	struct device *s = sink_create("post");

	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s->ops->name, "sink");
	for (unsigned size = 1; size <= 8; size *= 2) {
		dev_wr(s, 0, 0, size, 0x1234);
		ck_assert_uint_eq(dev_rd(s, 0, 0, size),
				  size == 8 ? ~0ULL : (1ULL << (8 * size)) - 1);
	}
	s->ops->reset(s);
	s->ops->destroy(s);
	s = sink_create(NULL);
	ck_assert_uint_eq(dev_rd(s, 0, 0, 1), 0xff);
	s->ops->destroy(s);
}
END_TEST

START_TEST(test_fuzz)
{
	struct device *d = new_debug_exit(), *s = sink_create("x");
	int stops = 0;

	for (int i = 0; i < 100000; i++) {
		uint64_t r = fuzz_next(), v = fuzz_next();
		unsigned size = fuzz_size();

		if (r & 1) {
			dev_wr(d, 0, (r >> 8) % 4, size, v);
			stops++;
			uint64_t masked = size == 8 ? v : v & ((1ULL << (8 * size)) - 1);
			ck_assert_int_eq(ctl.code, (int)(((masked << 1) | 1) & 0xff));
			ck_assert_int_eq(ctl.code & 1, 1);
		} else {
			dev_wr(s, 0, 0, size, v);
			ck_assert_uint_eq(dev_rd(s, 0, 0, size) & 0xff, 0xff);
		}
	}
	ck_assert_int_eq(ctl.stops, stops);
	d->ops->destroy(d);
	s->ops->destroy(s);
}
END_TEST

START_TEST(test_save_load)
{
	struct device *d = new_debug_exit(), *d2 = new_debug_exit();
	struct device *s = sink_create("a"), *s2 = sink_create("b");
	struct state_buf good;

	roundtrip(d, d2, &good);
	ck_assert_uint_eq(good.len, STATE_HDR);
	check_patched_fails(d2, &good, 0, 0);
	/* A section claiming a body it does not have, or a body we do not know. */
	check_patched_fails(d2, &good, 8, 1);
	struct state_buf extra = state_copy(&good, good.len);
	state_put_u8(&extra, 0);
	extra.data[8] = 1;
	ck_assert_int_eq(d2->ops->load(d2, &extra), -EINVAL);
	state_free(&extra);
	/* The two stateless devices do not accept each other's sections. */
	good.pos = 0;
	ck_assert_int_eq(s->ops->load(s, &good), -EINVAL);
	state_free(&good);

	roundtrip(s, s2, &good);
	check_truncations(s2, &good);
	good.pos = 0;
	ck_assert_int_eq(d->ops->load(d, &good), -EINVAL);
	state_free(&good);
	d->ops->destroy(d);
	d2->ops->destroy(d2);
	s->ops->destroy(s);
	s2->ops->destroy(s2);
}
END_TEST

/* What the debug console wrote to the pipe so far (NUL-terminated). */
static size_t drain(int fd, char *buf, size_t size)
{
	ssize_t n = read(fd, buf, size - 1);

	buf[n > 0 ? n : 0] = '\0';
	return n > 0 ? (size_t)n : 0;
}

/* A debugcon writing to a new non-blocking pipe p (lines: as for a terminal). */
static struct device *debugcon_on_pipe(int p[2], bool lines)
{
	ck_assert_int_eq(pipe2(p, O_NONBLOCK), 0);
	return debugcon_create(p[1], lines);
}

/* SeaBIOS checks for the readback value before it logs (qemu_debug_preinit). */
START_TEST(test_debugcon_raw)
{
	int p[2];
	char out[64];
	struct device *d;

	d = debugcon_on_pipe(p, false);
	ck_assert_uint_eq(dev_rd(d, 0, 0, 1), 0xe9);
	ck_assert_uint_eq(dev_rd(d, 0, 0, 2), 0xffff);
	dev_wr(d, 0, 0, 1, 'S');
	dev_wr(d, 0, 0, 2, 0x6145); /* "Ea": the bytes in address order */
	dev_wr(d, 0, 0, 1, '\x1b'); /* a file gets them as they are */
	dev_wr(d, 0, 0, 1, '\n');
	dev_wr(d, 0, 1, 1, 'X'); /* past the port: nothing */
	ck_assert_uint_eq(drain(p[0], out, sizeof(out)), 5);
	ck_assert_str_eq(out, "SEa\x1b\n");
	d->ops->destroy(d);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* For a terminal: whole lines, control characters made '?', long lines cut,
 * the last partial line written at the end. */
START_TEST(test_debugcon_lines)
{
	int p[2];
	char out[1024];
	struct device *d;

	d = debugcon_on_pipe(p, true);
	for (const char *c = "Found QEMU fw_cfg\r"; *c; c++)
		dev_wr(d, 0, 0, 1, (uint8_t)*c);
	ck_assert_uint_eq(drain(p[0], out, sizeof(out)), 0); /* not a line yet */
	dev_wr(d, 0, 0, 1, '\n');
	ck_assert_str_eq((drain(p[0], out, sizeof(out)), out), "Found QEMU fw_cfg\n");
	dev_wr(d, 0, 0, 4, 0x0a5b1b41); /* "A", ESC, "[", LF */
	ck_assert_str_eq((drain(p[0], out, sizeof(out)), out), "A?[\n");
	for (int i = 0; i < 300; i++)
		dev_wr(d, 0, 0, 1, 'x');
	ck_assert_uint_eq(drain(p[0], out, sizeof(out)), 257); /* 256 and a newline */
	d->ops->destroy(d);
	ck_assert_uint_eq(drain(p[0], out, sizeof(out)), 45); /* the rest at the end */
	close(p[0]);
	close(p[1]);
}
END_TEST

SUITE_MAIN("misc_devices", "core", NULL, NULL, 0, test_debug_exit_codes, test_sink, test_fuzz,
	   test_save_load, test_debugcon_raw, test_debugcon_lines)
