/* Delays and timeouts on the ACPI PM timer (ACPI 6.4 section 4.8.3.3:
 * 3.579545 MHz, 24 or 32 bits per FADT TMR_VAL_EXT), found through the FADT.
 * Without one, each poll reads port 0x80 and counts as one microsecond. */
#include "guest.h"

#define PMTMR_HZ 3579545ull

static uint32_t tmr_port;
static uint32_t tmr_mask;

bool pmtmr_init(void)
{
	const struct acpi_sdt *fadt = acpi_find_table("FACP");
	uint32_t port = (uint32_t)acpi_field(fadt, FADT_PM_TMR_BLK, 4);

	if (!port || port > 0xfffc) {
		tmr_port = 0;
		return false;
	}
	tmr_port = port;
	tmr_mask = (acpi_field(fadt, FADT_FLAGS, 4) & FADT_F_TMR_VAL_EXT) ? 0xffffffffu : 0xffffffu;
	return true;
}

uint32_t pmtmr_port(void)
{
	return tmr_port;
}

static uint32_t now(void)
{
	if (tmr_port)
		return inl((uint16_t)tmr_port) & tmr_mask;
	(void)inb(BOARD_PORT_POST);
	return 0;
}

void deadline_start(struct deadline *d, uint64_t us)
{
	d->left_ticks = tmr_port ? us * PMTMR_HZ / 1000000 + 1 : us;
	d->last = now();
}

/* Ticks since *last (then moved to now); without a timer each call is one
 * tick. Modular difference: correct across one wrap of the counter. */
static uint64_t ticks_since(uint32_t *last)
{
	uint32_t t = now();
	uint64_t elapsed = tmr_port ? ((t - *last) & tmr_mask) : 1;

	*last = t;
	return elapsed;
}

bool deadline_expired(struct deadline *d)
{
	uint64_t elapsed = ticks_since(&d->last);

	if (elapsed >= d->left_ticks) {
		d->left_ticks = 0;
		return true;
	}
	d->left_ticks -= elapsed;
	return false;
}

uint64_t stopwatch_us(struct stopwatch *w)
{
	if (!tmr_port)
		return 0;
	w->ticks += ticks_since(&w->last);
	return w->ticks * 1000000 / PMTMR_HZ;
}

void stopwatch_start(struct stopwatch *w)
{
	w->ticks = 0;
	w->last = now();
}

void udelay(uint64_t us)
{
	struct deadline d;

	deadline_start(&d, us);
	while (!deadline_expired(&d))
		cpu_relax();
}
