/* State buffers: little-endian fields, growth, the sticky reader error and
 * section framing. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "kestrel/state.h"
#include "fake_board.h"

START_TEST(test_fields_little_endian)
{
	struct state_buf b = { 0 };
	static const uint8_t want[] = { 0xab, 0x02, 0x01, 0x04, 0x03, 0x02, 0x01, 0x08, 0x07,
					0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 'x',  'y' };

	state_put_u8(&b, 0xab);
	state_put_u16(&b, 0x0102);
	state_put_u32(&b, 0x01020304);
	state_put_u64(&b, 0x0102030405060708ULL);
	state_put_bytes(&b, "xy", 2);
	ck_assert(!b.error);
	ck_assert_uint_eq(b.len, sizeof(want));
	ck_assert_mem_eq(b.data, want, sizeof(want));

	ck_assert_uint_eq(state_get_u8(&b), 0xab);
	ck_assert_uint_eq(state_get_u16(&b), 0x0102);
	ck_assert_uint_eq(state_get_u32(&b), 0x01020304);
	ck_assert_uint_eq(state_get_u64(&b), 0x0102030405060708ULL);
	char xy[2];
	state_get_bytes(&b, xy, 2);
	ck_assert_mem_eq(xy, "xy", 2);
	ck_assert(!b.error);
	ck_assert_uint_eq(b.pos, b.len);
	state_free(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
}
END_TEST

START_TEST(test_growth)
{
	struct state_buf b = { 0 };
	uint8_t blob[1000];

	for (unsigned i = 0; i < 100000; i++)
		state_put_u32(&b, i * 2654435761u);
	for (unsigned i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)i;
	state_put_bytes(&b, blob, sizeof(blob));
	ck_assert(!b.error);
	ck_assert_uint_eq(b.len, 400000 + sizeof(blob));
	ck_assert_uint_ge(b.cap, b.len);
	for (unsigned i = 0; i < 100000; i++)
		ck_assert_uint_eq(state_get_u32(&b), i * 2654435761u);
	uint8_t back[1000];
	state_get_bytes(&b, back, sizeof(back));
	ck_assert_mem_eq(back, blob, sizeof(blob));
	ck_assert(!b.error);
	state_free(&b);
}
END_TEST

START_TEST(test_reader_sticky_error)
{
	struct state_buf b = { 0 };
	uint8_t out[4] = { 1, 2, 3, 4 };

	state_put_u8(&b, 0x11);
	state_put_u8(&b, 0x22);
	state_put_u8(&b, 0x33);
	ck_assert_uint_eq(state_get_u32(&b), 0); /* 3 bytes left: past the end */
	ck_assert(b.error);
	ck_assert_uint_eq(b.pos, 0);
	/* Sticky: bytes are there, but every later read yields 0. */
	ck_assert_uint_eq(state_get_u8(&b), 0);
	ck_assert_uint_eq(state_get_u16(&b), 0);
	state_get_bytes(&b, out, sizeof(out));
	ck_assert_uint_eq(out[0] | out[1] | out[2] | out[3], 0);
	state_free(&b);

	/* Exactly to the end is fine; one more is not. */
	state_put_u16(&b, 0xbeef);
	ck_assert_uint_eq(state_get_u16(&b), 0xbeef);
	ck_assert(!b.error);
	ck_assert_uint_eq(state_get_u8(&b), 0);
	ck_assert(b.error);
	state_free(&b);

	/* A reader whose pos is past len (a corrupted struct) is an error too. */
	state_put_u32(&b, 7);
	b.pos = 9;
	ck_assert_uint_eq(state_get_u8(&b), 0);
	ck_assert(b.error);
	state_free(&b);

	/* An empty reader with no data. */
	ck_assert_uint_eq(state_get_u64(&b), 0);
	ck_assert(b.error);
	state_free(&b);
}
END_TEST

START_TEST(test_writer_error_sticky)
{
	struct state_buf b = { 0 };

	state_put_u32(&b, 1);
	b.error = true;
	state_put_u32(&b, 2);
	state_put_bytes(&b, "abc", 3);
	ck_assert_uint_eq(b.len, 4);
	state_free(&b);
	ck_assert(!b.error);
}
END_TEST

START_TEST(test_section_framing)
{
	struct state_buf b = { 0 };
	static const uint8_t hdr[] = { 0x44, 0x33, 0x22, 0x11, 3, 0, 0, 0, 5, 0, 0, 0 };
	size_t m1, m2;

	m1 = state_section_begin(&b, 0x11223344, 3);
	ck_assert_uint_eq(m1, 0);
	state_put_u8(&b, 1);
	state_put_u32(&b, 2);
	state_section_end(&b, m1);
	ck_assert_mem_eq(b.data, hdr, sizeof(hdr));

	/* A second section, with one nested in it. */
	m1 = state_section_begin(&b, 0xa, 1);
	state_put_u16(&b, 0x5555);
	m2 = state_section_begin(&b, 0xb, 2);
	state_put_u64(&b, 42);
	state_section_end(&b, m2);
	state_section_end(&b, m1);
	ck_assert(!b.error);
	ck_assert_uint_eq(b.len, 17 + 12 + 2 + 12 + 8);

	ck_assert_int_eq(state_section_open(&b, 0x11223344, 3), 3);
	ck_assert_uint_eq(state_get_u8(&b), 1);
	ck_assert_uint_eq(state_get_u32(&b), 2);
	ck_assert_int_eq(state_section_open(&b, 0xa, 5), 1);
	ck_assert_uint_eq(b.data[b.pos - 4], 2 + 12 + 8);
	ck_assert_uint_eq(state_get_u16(&b), 0x5555);
	ck_assert_int_eq(state_section_open(&b, 0xb, 2), 2);
	ck_assert_uint_eq(state_get_u64(&b), 42);
	ck_assert(!b.error);
	ck_assert_uint_eq(b.pos, b.len);
	state_free(&b);
}
END_TEST

START_TEST(test_section_open_rejects)
{
	struct state_buf b = { 0 };
	size_t m;

	m = state_section_begin(&b, 0x1234, 2);
	state_put_u32(&b, 0xdeadbeef);
	state_section_end(&b, m);

	/* Wrong id: -EINVAL, position restored, no sticky error, can retry. */
	ck_assert_int_eq(state_section_open(&b, 0x1235, 9), -EINVAL);
	ck_assert_uint_eq(b.pos, 0);
	ck_assert(!b.error);
	/* Newer than we understand. */
	ck_assert_int_eq(state_section_open(&b, 0x1234, 1), -EINVAL);
	ck_assert_uint_eq(b.pos, 0);
	ck_assert_int_eq(state_section_open(&b, 0x1234, 2), 2);
	b.pos = 0;

	/* Version 0 is never valid. */
	b.data[4] = 0;
	ck_assert_int_eq(state_section_open(&b, 0x1234, 9), -EINVAL);
	b.data[4] = 2;

	/* A length longer than what is left. */
	b.data[8] = 5;
	ck_assert_int_eq(state_section_open(&b, 0x1234, 9), -EINVAL);
	ck_assert(b.error);
	b.error = false;
	b.pos = 0;
	b.data[8] = 4;

	/* A header cut short. */
	b.len = 11;
	ck_assert_int_eq(state_section_open(&b, 0x1234, 9), -EINVAL);
	ck_assert(b.error);
	/* And once in error, even a good header is refused. */
	b.len = 16;
	b.pos = 0;
	ck_assert_int_eq(state_section_open(&b, 0x1234, 9), -EINVAL);
	state_free(&b);
}
END_TEST

START_TEST(test_section_end_bad_mark)
{
	struct state_buf b = { 0 };

	state_put_u32(&b, 1);
	state_section_end(&b, 2); /* no header there */
	ck_assert(b.error);
	state_free(&b);
	state_section_end(&b, 100);
	ck_assert(b.error);
	state_free(&b);
}
END_TEST

SUITE_MAIN("state", "core", NULL, NULL, 0, test_fields_little_endian, test_growth,
	   test_reader_sticky_error, test_writer_error_sticky, test_section_framing,
	   test_section_open_rejects, test_section_end_bad_mark)
