/* include/kestrel/clock.h: the monotonic readings agree with each other and
 * a deadline is a normalized timespec the given distance ahead. */
#include <check.h>

#include "kestrel/clock.h"
#include "check_util.h"

START_TEST(mono_readings)
{
	uint64_t ns = clock_mono_ns(), ms = clock_mono_ms(), ns2 = clock_mono_ns();

	ck_assert_uint_ge(ns2, ns);
	ck_assert_uint_ge(ms, ns / CLOCK_NS_PER_MS);
	ck_assert_uint_le(ms, ns2 / CLOCK_NS_PER_MS);
}
END_TEST

START_TEST(deadline_normalized)
{
	static const uint64_t dist[] = { 0, 1, 999, 1000, 1999, 123456 };

	for (unsigned i = 0; i < sizeof(dist) / sizeof(dist[0]); i++) {
		uint64_t before = clock_mono_ns();
		struct timespec d = clock_deadline(CLOCK_MONOTONIC, dist[i]);
		uint64_t after = clock_mono_ns();
		uint64_t at = (uint64_t)d.tv_sec * CLOCK_NS_PER_SEC + (uint64_t)d.tv_nsec;

		ck_assert_int_ge(d.tv_nsec, 0);
		ck_assert_int_lt(d.tv_nsec, (long)CLOCK_NS_PER_SEC);
		ck_assert_uint_ge(at, before + dist[i] * CLOCK_NS_PER_MS);
		ck_assert_uint_le(at, after + dist[i] * CLOCK_NS_PER_MS);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("clock");

	ADD_TCASE(s, "clock", NULL, NULL, 0, mono_readings, deadline_normalized);
	return run_suite(s);
}
