/* ACPI fixed hardware (ACPI 6.5 ch. 4.8): the PM1a event block, the PM1a
 * control block and the PM timer in region 0 at BOARD_PORT_ACPI_PM, and the
 * reset control register at 0xCF9 in region 1 (the FADT RESET_REG).
 *
 * Region 0 layout: +0 PM1_STS (2), +2 PM1_EN (2), +4 PM1_CNT (2), +6 unused,
 * +8 PM_TMR (4). Any 1/2/4/8-byte access at any offset is split into byte
 * lanes, so a 4-byte read at +0 returns STS | EN << 16.
 *
 * There is no SMI_CMD, so the board is always in ACPI mode (SCI_EN reads 1).
 * TMR_STS is evaluated lazily at each access (no timer), which is enough for
 * polling; a guest enabling TMR_EN sees the SCI only when it next touches the
 * block. Linux does not enable it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/board.h"
#include "kestrel/clock.h"
#include "kestrel/devices.h"
#include "kestrel/state.h"
#include "emu.h"

#define PM_REGION_EVT	0
#define PM_REGION_RESET 1

#define PM1_STS	     0
#define PM1_EN	     2
#define PM1_CNT	     4
#define PM_TMR	     8
#define PM_BLOCK_LEN 12

/* ACPI 6.5 4.8.3.1.1, PM1 status and enable bits. */
#define PM1_TMR_STS    0x0001
#define PM1_BM_STS     0x0010
#define PM1_GBL_STS    0x0020
#define PM1_PWRBTN_STS 0x0100
#define PM1_SLPBTN_STS 0x0200
#define PM1_RTC_STS    0x0400
#define PM1_WAK_STS    0x8000
#define PM1_STS_MASK                                                                              \
	(PM1_TMR_STS | PM1_BM_STS | PM1_GBL_STS | PM1_PWRBTN_STS | PM1_SLPBTN_STS | PM1_RTC_STS | \
	 PM1_WAK_STS)
#define PM1_TMR_EN	0x0001
#define PM1_GBL_EN	0x0020
#define PM1_PWRBTN_EN	0x0100
#define PM1_SLPBTN_EN	0x0200
#define PM1_RTC_EN	0x0400
#define PM1_EN_MASK	(PM1_TMR_EN | PM1_GBL_EN | PM1_PWRBTN_EN | PM1_SLPBTN_EN | PM1_RTC_EN)
#define PM1_SCI_SOURCES (PM1_TMR_STS | PM1_PWRBTN_STS)

/* ACPI 6.5 4.8.3.2.1, PM1 control. */
#define PM1_SCI_EN	  0x0001
#define PM1_BM_RLD	  0x0002
#define PM1_GBL_RLS	  0x0004 /* write-only */
#define PM1_SLP_TYP_SHIFT 10
#define PM1_SLP_TYP	  0x1c00
#define PM1_SLP_EN	  0x2000 /* write-only */
#define PM1_CNT_STORED	  (PM1_BM_RLD | PM1_SLP_TYP)

/* 3.579545 MHz, 24 bits (FADT TMR_VAL_EXT clear); TMR_STS on each bit-23 toggle. */
#define PM_TMR_HZ	 3579545ULL
#define PM_TMR_MASK	 0xffffffULL
#define PM_TMR_STS_SHIFT 23

/* Reset control register (Intel PIIX4/ICH, port 0xCF9). */
#define RST_SYS_RST 0x02
#define RST_CPU	    0x04

#define PM_STATE_ID	 0x41435049 /* "ACPI" */
#define PM_STATE_VERSION 1

struct acpi_pm_regs {
	uint16_t sts, en, cnt;
	uint8_t reset_reg;
	uint64_t tmr_adjust; /* counter = ticks(now_ns()) + tmr_adjust, wrapping */
	uint64_t tmr_last;   /* full counter when TMR_STS was last evaluated */
};

struct acpi_pm {
	struct device dev;
	struct irq_line sci;
	int sci_level;
	struct vm_ctl ctl;
	uint64_t (*now_ns)(void);
	bool warned_sleep;
	struct acpi_pm_regs r;
};

static struct acpi_pm *to_pm(struct device *dev)
{
	return (struct acpi_pm *)dev;
}

static uint64_t pm_ticks(const struct acpi_pm *pm)
{
	return (uint64_t)((unsigned __int128)pm->now_ns() * PM_TMR_HZ / 1000000000ULL);
}

static uint64_t pm_counter(const struct acpi_pm *pm)
{
	return pm_ticks(pm) + pm->r.tmr_adjust;
}

static void pm_update_tmr_sts(struct acpi_pm *pm)
{
	uint64_t now = pm_counter(pm);

	if ((now >> PM_TMR_STS_SHIFT) != (pm->r.tmr_last >> PM_TMR_STS_SHIFT))
		pm->r.sts |= PM1_TMR_STS;
	pm->r.tmr_last = now;
}

static void pm_update_sci(struct acpi_pm *pm, bool force)
{
	int level = (pm->r.sts & pm->r.en & PM1_SCI_SOURCES) != 0;

	if (level == pm->sci_level && !force)
		return;
	pm->sci_level = level;
	irq_set(&pm->sci, level);
}

/* SLP_EN starts the transition to the state SLP_TYP names (ACPI 6.5
 * 4.8.3.2.1). Only S5 exists on this board. */
static void pm_write_cnt(struct acpi_pm *pm, uint64_t rval, uint64_t rmask)
{
	uint16_t v = (uint16_t)emu_lane_merge(pm->r.cnt, rval, rmask);
	unsigned typ = (v & PM1_SLP_TYP) >> PM1_SLP_TYP_SHIFT;

	pm->r.cnt = v & PM1_CNT_STORED;
	if (!(rval & rmask & PM1_SLP_EN))
		return;
	if (typ == BOARD_ACPI_S5_TYP) {
		vm_request_stop(&pm->ctl, VM_STOP_POWEROFF, 0);
		return;
	}
	if (!pm->warned_sleep)
		kwarn("acpi: guest asked for sleep type %u, only S5 is supported", typ);
	pm->warned_sleep = true;
}

static uint64_t pm_evt_read(struct acpi_pm *pm, uint64_t off, unsigned size)
{
	const struct acpi_pm_regs *r = &pm->r;
	uint64_t v;

	v = emu_lane_out(off, size, PM1_STS, 2, r->sts);
	v |= emu_lane_out(off, size, PM1_EN, 2, r->en);
	v |= emu_lane_out(off, size, PM1_CNT, 2, r->cnt | PM1_SCI_EN);
	v |= emu_lane_out(off, size, PM_TMR, 4, pm_counter(pm) & PM_TMR_MASK);
	/* Bytes past the block float high. */
	v |= emu_lane_out(off, size, PM_BLOCK_LEN, 8, ~0ULL);
	return v;
}

static void pm_evt_write(struct acpi_pm *pm, uint64_t off, unsigned size, uint64_t val)
{
	struct acpi_pm_regs *r = &pm->r;
	uint64_t rv, rm;

	/* PM1_STS bits are write-1-to-clear. */
	if (emu_lane_in(off, size, val, PM1_STS, 2, &rv, &rm))
		r->sts &= (uint16_t) ~(rv & rm & PM1_STS_MASK);
	if (emu_lane_in(off, size, val, PM1_EN, 2, &rv, &rm))
		r->en = (uint16_t)emu_lane_merge(r->en, rv, rm) & PM1_EN_MASK;
	if (emu_lane_in(off, size, val, PM1_CNT, 2, &rv, &rm))
		pm_write_cnt(pm, rv, rm);
	/* PM_TMR is read-only. */
}

static uint64_t pm_reset_read(struct acpi_pm *pm, uint64_t off, unsigned size)
{
	return emu_lane_out(off, size, 0, 1, pm->r.reset_reg) |
	       emu_lane_out(off, size, 1, 8, ~0ULL);
}

/* RST_CPU starts the reset; SYS_RST picks hard or soft, which are the same here. */
static void pm_reset_write(struct acpi_pm *pm, uint64_t off, unsigned size, uint64_t val)
{
	uint64_t rv, rm;

	if (!emu_lane_in(off, size, val, 0, 1, &rv, &rm))
		return;
	pm->r.reset_reg = (uint8_t)rv & ~RST_CPU;
	if (rv & RST_CPU)
		vm_request_stop(&pm->ctl, VM_STOP_RESET, 0);
}

static uint64_t pm_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	struct acpi_pm *pm = to_pm(dev);
	uint64_t v;

	if (region == PM_REGION_RESET)
		return pm_reset_read(pm, off, size);
	pm_update_tmr_sts(pm);
	v = pm_evt_read(pm, off, size);
	pm_update_sci(pm, false);
	return v;
}

static void pm_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct acpi_pm *pm = to_pm(dev);

	if (region == PM_REGION_RESET) {
		pm_reset_write(pm, off, size, val);
		return;
	}
	pm_update_tmr_sts(pm);
	pm_evt_write(pm, off, size, val);
	pm_update_sci(pm, false);
}

void acpi_pm_power_button(struct device *dev)
{
	struct acpi_pm *pm = to_pm(dev);

	pthread_mutex_lock(&dev->lock);
	pm->r.sts |= PM1_PWRBTN_STS;
	pm_update_sci(pm, false);
	pthread_mutex_unlock(&dev->lock);
}

/* The PM timer is free-running from power-on and keeps counting. */
static void pm_reset(struct device *dev)
{
	struct acpi_pm *pm = to_pm(dev);

	pm->r.sts = 0;
	pm->r.en = 0;
	pm->r.cnt = 0;
	pm->r.reset_reg = 0;
	pm_update_sci(pm, true);
}

static int pm_save(struct device *dev, struct state_buf *out)
{
	struct acpi_pm *pm = to_pm(dev);
	size_t mark = state_section_begin(out, PM_STATE_ID, PM_STATE_VERSION);

	pm_update_tmr_sts(pm);
	state_put_u16(out, pm->r.sts);
	state_put_u16(out, pm->r.en);
	state_put_u16(out, pm->r.cnt);
	state_put_u8(out, pm->r.reset_reg);
	state_put_u32(out, (uint32_t)(pm_counter(pm) & PM_TMR_MASK));
	state_section_end(out, mark);
	return out->error ? -ENOMEM : 0;
}

static int pm_load(struct device *dev, struct state_buf *in)
{
	struct acpi_pm *pm = to_pm(dev);
	struct acpi_pm_regs r = { 0 };
	uint32_t tmr;
	size_t end;

	if (state_section_open(in, PM_STATE_ID, PM_STATE_VERSION) < 0)
		return -EINVAL;
	end = emu_section_body_end(in);
	r.sts = state_get_u16(in);
	r.en = state_get_u16(in);
	r.cnt = state_get_u16(in);
	r.reset_reg = state_get_u8(in);
	tmr = state_get_u32(in);
	if (!emu_section_done(in, end) || r.sts & ~PM1_STS_MASK || r.en & ~PM1_EN_MASK ||
	    r.cnt & ~PM1_CNT_STORED || r.reset_reg & RST_CPU || tmr > PM_TMR_MASK)
		return -EINVAL;
	/* Continue counting from the saved value; the bit-23 phase is kept so a
	 * toggle is not reported twice. */
	r.tmr_adjust = tmr - pm_ticks(pm);
	r.tmr_last = tmr;
	pm->r = r;
	pm_update_sci(pm, true);
	return 0;
}

static void pm_destroy(struct device *dev)
{
	pthread_mutex_destroy(&dev->lock);
	free(to_pm(dev));
}

static const struct dev_ops acpi_pm_ops = {
	.name = "acpi_pm",
	.reset = pm_reset,
	.read = pm_read,
	.write = pm_write,
	.save = pm_save,
	.load = pm_load,
	.destroy = pm_destroy,
};

struct device *acpi_pm_create(const struct irq_line *sci, const struct vm_ctl *ctl,
			      uint64_t (*now_ns)(void))
{
	struct acpi_pm *pm = calloc(1, sizeof(*pm));

	if (!pm)
		return NULL;
	device_init(&pm->dev, &acpi_pm_ops);
	if (sci)
		pm->sci = *sci;
	if (ctl)
		pm->ctl = *ctl;
	pm->now_ns = now_ns ? now_ns : clock_mono_ns;
	pm->sci_level = -1;
	/* Start counting at 0. */
	pm->r.tmr_adjust = 0 - pm_ticks(pm);
	pm->r.tmr_last = 0;
	pm_reset(&pm->dev);
	return &pm->dev;
}
