/* The host clocks, one copy: nanoseconds and milliseconds of CLOCK_MONOTONIC
 * (what every interval and timeout is measured on: it never steps) and an
 * absolute deadline for the *timed* waits
 * (pthread_cond_timedwait, pthread_timedjoin_np) that take a struct timespec
 * on a given clock. Header-only (static inline) so that any build of a few
 * sources (the fuzz harnesses in tests/fuzz/run.sh) gets it without a new
 * source file. */
#ifndef KESTREL_CLOCK_H
#define KESTREL_CLOCK_H

#include <stdint.h>
#include <time.h>

#define CLOCK_NS_PER_SEC 1000000000ULL
#define CLOCK_NS_PER_MS	 1000000ULL

/* clk in nanoseconds (CLOCK_MONOTONIC and CLOCK_REALTIME cannot fail). */
static inline uint64_t clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * CLOCK_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static inline uint64_t clock_mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static inline uint64_t clock_mono_ms(void)
{
	return clock_mono_ns() / CLOCK_NS_PER_MS;
}

/* The time ms milliseconds from now on clk, as a normalized timespec
 * (tv_nsec below one second) for the timed waits on that clock. */
static inline struct timespec clock_deadline(clockid_t clk, uint64_t ms)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * (long)CLOCK_NS_PER_MS;
	if (ts.tv_nsec >= (long)CLOCK_NS_PER_SEC) {
		ts.tv_sec++;
		ts.tv_nsec -= (long)CLOCK_NS_PER_SEC;
	}
	return ts;
}

#endif
