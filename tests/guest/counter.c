/* counter.bin: a guest that shows whether it is running, for the control
 * socket's pause/resume tests. Prints "counter: N" every period_ms (command
 * line, default 100) timed on the ACPI PM timer, N counting up from 1, until
 * count=N lines were printed (default 0: until the host stops it, at most ten
 * minutes); then exits with 0. While the VM is paused no line appears.
 *
 * dirty_mb=N (at most 256): the guest also dirties N MiB of RAM from 32 MiB
 * on once per period, each word a stamp of the line number, and checks at
 * the next line that every word still holds the last stamp: a live
 * migration must converge against it (auto-converge) and bring every page
 * across ("counter: RAM lost at ..." and exit 1 if one is stale). */
#include "guest.h"

#define COUNTER_MAX_MS 600000u
#define DIRTY_BASE     0x2000000ul
#define DIRTY_MAX_MB   256u

static uint64_t stamp(uint64_t n, uint64_t i)
{
	return (n << 40) ^ (i * 0x9e3779b97f4a7c15ull);
}

/* Every word still the last round's stamp; then this round's. */
static bool dirty_round(uint64_t mb, uint64_t n)
{
	volatile uint64_t *w = phys_ptr(DIRTY_BASE);
	uint64_t words = mb << 17;

	for (uint64_t i = 0; n > 1 && i < words; i++) {
		if (w[i] != stamp(n - 1, i)) {
			gprintf("counter: RAM lost at %#lx (line %lu)\n", DIRTY_BASE + i * 8, n);
			return false;
		}
	}
	for (uint64_t i = 0; i < words; i++)
		w[i] = stamp(n, i);
	return true;
}

int main(void)
{
	uint64_t period = mb_cmdline_uint("period_ms", 100), count = mb_cmdline_uint("count", 0);
	uint64_t dirty = mb_cmdline_uint("dirty_mb", 0);

	bool tmr = pmtmr_init();

	if (!check(tmr, "PM timer at port %#x", pmtmr_port()))
		return check_result(GUEST_EXIT_FAIL);
	if (period == 0 || period > 60000)
		period = 100;
	if (count == 0 || count > COUNTER_MAX_MS / period)
		count = COUNTER_MAX_MS / period;
	gprintf("counter: start period_ms=%lu\n", period);
	if (dirty > DIRTY_MAX_MB)
		dirty = DIRTY_MAX_MB;
	for (uint64_t n = 1; n <= count; n++) {
		if (dirty && !dirty_round(dirty, n))
			return check_result(GUEST_EXIT_FAIL);
		udelay(period * 1000);
		gprintf("counter: %lu\n", n);
	}
	gprintf("counter: done\n");
	return GUEST_EXIT_PASS;
}
