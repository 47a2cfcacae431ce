/* counter.bin: a guest that shows whether it is running, for the control
 * socket's pause/resume tests. Prints "counter: N" every period_ms (command
 * line, default 100) timed on the ACPI PM timer, N counting up from 1, until
 * count=N lines were printed (default 0: until the host stops it, at most ten
 * minutes); then exits with 0. While the VM is paused no line appears. */
#include "guest.h"

#define COUNTER_MAX_MS 600000u

int main(void)
{
	uint64_t period = mb_cmdline_uint("period_ms", 100), count = mb_cmdline_uint("count", 0);

	bool tmr = pmtmr_init();

	if (!check(tmr, "PM timer at port %#x", pmtmr_port()))
		return check_result(GUEST_EXIT_FAIL);
	if (period == 0 || period > 60000)
		period = 100;
	if (count == 0 || count > COUNTER_MAX_MS / period)
		count = COUNTER_MAX_MS / period;
	gprintf("counter: start period_ms=%lu\n", period);
	for (uint64_t n = 1; n <= count; n++) {
		udelay(period * 1000);
		gprintf("counter: %lu\n", n);
	}
	gprintf("counter: done\n");
	return GUEST_EXIT_PASS;
}
