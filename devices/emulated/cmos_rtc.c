/* Motorola MC146818 real-time clock and its 128 bytes of CMOS: index port 0x70
 * (offset 0), data port 0x71 (offset 1).
 *
 * The clock is host wall() plus a guest offset; the guest moves it by writing
 * the time registers (normally between SET=1 and SET=0, as Linux's
 * mc146818_set_time does). Time is kept in UTC, as Linux expects on x86.
 *
 * Choices where a timer would be needed:
 * - UIP (register A bit 7) is never set: the clock registers are computed at
 *   read time, so there is no update cycle to straddle. Linux's
 *   mc146818_avoid_UIP re-reads the seconds around its read and retries if
 *   they changed, which covers a read that crosses a second boundary.
 * - The update-ended (UF) and alarm (AF) flags are computed lazily: every
 *   access catches up on the seconds elapsed since the last one, so register C
 *   is right when polled and IRQ 8 rises at the next RTC access, not at the
 *   second boundary itself. The periodic flag (PF) and square wave are not
 *   emulated; PIE is stored but never fires. The divider bits of register A
 *   are stored and ignored (the clock never stops except under SET). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kestrel/devices.h"
#include "kestrel/state.h"
#include "emu.h"

#define RTC_SECONDS	  0x00
#define RTC_SECONDS_ALARM 0x01
#define RTC_MINUTES	  0x02
#define RTC_MINUTES_ALARM 0x03
#define RTC_HOURS	  0x04
#define RTC_HOURS_ALARM	  0x05
#define RTC_DAY_OF_WEEK	  0x06
#define RTC_DAY_OF_MONTH  0x07
#define RTC_MONTH	  0x08
#define RTC_YEAR	  0x09
#define RTC_REG_A	  0x0a
#define RTC_REG_B	  0x0b
#define RTC_REG_C	  0x0c
#define RTC_REG_D	  0x0d
#define RTC_CENTURY	  0x32 /* IBM PC convention, named by the FADT CENTURY field */

#define REG_A_UIP	0x80
#define REG_B_SET	0x80
#define REG_B_PIE	0x40
#define REG_B_AIE	0x20
#define REG_B_UIE	0x10
#define REG_B_SQWE	0x08
#define REG_B_DM	0x04 /* 1: binary, 0: BCD */
#define REG_B_24H	0x02
#define REG_C_IRQF	0x80
#define REG_C_PF	0x40
#define REG_C_AF	0x20
#define REG_C_UF	0x10
#define REG_C_FLAGS	(REG_C_PF | REG_C_AF | REG_C_UF)
#define REG_D_VRT	0x80
#define HOUR_PM		0x80 /* 12-hour mode */
#define ALARM_DONT_CARE 0xc0

/* PC/AT CMOS layout read by firmware (SeaBIOS src/hw/rtc.h and
 * src/fw/paravirt.c, QEMU's pc_cmos_init). */
#define CMOS_EQUIPMENT		  0x14
#define CMOS_BASE_MEM_LO	  0x15
#define CMOS_EXT_MEM_LO		  0x17
#define CMOS_EXT_MEM2_LO	  0x30
#define CMOS_MEM_16M_LO		  0x34
#define CMOS_BOOTFLAG1		  0x38 /* bits 7-4 third boot device, bit 0 no floppy check */
#define CMOS_BOOTFLAG2		  0x3d /* bits 3-0 first boot device, 7-4 second */
#define CMOS_MEM_4G_LO		  0x5b
#define CMOS_SMP_COUNT		  0x5f /* QEMU's: CPUs - 1 */
#define BOOTFLAG1_NO_FLOPPY_CHECK 0x01
#define RTC_BOOT_SLOTS		  3

#define RTC_NVRAM_SIZE	  128
#define RTC_DEFAULT_A	  0x26 /* 32.768 kHz time base, 1024 Hz rate */
#define RTC_DEFAULT_B	  REG_B_24H
#define SECS_PER_DAY	  86400
/* Guest years 0..9999 fit in +-2^40 seconds of any host time. */
#define RTC_MAX_OFFSET	  (1LL << 40)
#define RTC_STATE_ID	  0x52544343 /* "RTCC" */
#define RTC_STATE_VERSION 1

struct rtc_regs {
	uint8_t cmos[RTC_NVRAM_SIZE];
	uint8_t index;
	int64_t offset;	   /* guest seconds = wall() + offset */
	int64_t last_tick; /* guest second up to which UF/AF are current */
};

struct rtc {
	struct device dev;
	struct irq_line irq;
	int irq_level;
	time_t (*wall)(void);
	struct rtc_cmos_board board;
	bool warned_bad_time;
	struct rtc_regs r;
};

static struct rtc *to_rtc(struct device *dev)
{
	return (struct rtc *)dev;
}

static int64_t rtc_now(const struct rtc *rtc)
{
	return (int64_t)rtc->wall() + rtc->r.offset;
}

static bool rtc_is_time_reg(unsigned idx)
{
	return idx <= RTC_YEAR || idx == RTC_CENTURY;
}

static bool rtc_is_alarm_reg(unsigned idx)
{
	return idx == RTC_SECONDS_ALARM || idx == RTC_MINUTES_ALARM || idx == RTC_HOURS_ALARM;
}

/* Register B DM selects binary or BCD for every time and alarm byte. */
static uint8_t rtc_encode(uint8_t b, unsigned v)
{
	if (b & REG_B_DM)
		return (uint8_t)v;
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static bool rtc_decode(uint8_t b, uint8_t raw, unsigned *v)
{
	if (b & REG_B_DM) {
		*v = raw;
		return true;
	}
	if ((raw & 0x0f) > 9 || (raw >> 4) > 9)
		return false;
	*v = (raw >> 4) * 10 + (raw & 0x0f);
	return true;
}

static uint8_t rtc_encode_hour(uint8_t b, unsigned h)
{
	unsigned h12;

	if (b & REG_B_24H)
		return rtc_encode(b, h);
	h12 = h % 12 ? h % 12 : 12;
	return rtc_encode(b, h12) | (h >= 12 ? HOUR_PM : 0);
}

static bool rtc_decode_hour(uint8_t b, uint8_t raw, unsigned *h)
{
	if (b & REG_B_24H)
		return rtc_decode(b, raw, h) && *h < 24;
	if (!rtc_decode(b, raw & ~HOUR_PM, h) || *h < 1 || *h > 12)
		return false;
	*h = *h % 12 + ((raw & HOUR_PM) ? 12 : 0);
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t rtc_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* Load the clock registers with guest time t in the format register B selects. */
static void rtc_store_time(struct rtc_regs *r, int64_t t)
{
	uint8_t b = r->cmos[RTC_REG_B];
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
		return;
	r->cmos[RTC_SECONDS] = rtc_encode(b, (unsigned)tm.tm_sec % 60);
	r->cmos[RTC_MINUTES] = rtc_encode(b, (unsigned)tm.tm_min);
	r->cmos[RTC_HOURS] = rtc_encode_hour(b, (unsigned)tm.tm_hour);
	r->cmos[RTC_DAY_OF_WEEK] = rtc_encode(b, (unsigned)tm.tm_wday + 1); /* Sunday = 1 */
	r->cmos[RTC_DAY_OF_MONTH] = rtc_encode(b, (unsigned)tm.tm_mday);
	r->cmos[RTC_MONTH] = rtc_encode(b, (unsigned)tm.tm_mon + 1);
	r->cmos[RTC_YEAR] = rtc_encode(b, (unsigned)(tm.tm_year + 1900) % 100);
	r->cmos[RTC_CENTURY] = rtc_encode(b, (unsigned)(tm.tm_year + 1900) / 100);
}

/* The guest time the clock registers hold, in format b; false if they hold
 * something no clock could show. */
static bool rtc_parse_time(const struct rtc_regs *r, uint8_t b, int64_t *t)
{
	const uint8_t *c = r->cmos;
	unsigned sec, min, hour, mday, mon, year, cent;

	if (!rtc_decode(b, c[RTC_SECONDS], &sec) || sec > 59 ||
	    !rtc_decode(b, c[RTC_MINUTES], &min) || min > 59 ||
	    !rtc_decode_hour(b, c[RTC_HOURS], &hour) ||
	    !rtc_decode(b, c[RTC_DAY_OF_MONTH], &mday) || mday < 1 || mday > 31 ||
	    !rtc_decode(b, c[RTC_MONTH], &mon) || mon < 1 || mon > 12 ||
	    !rtc_decode(b, c[RTC_YEAR], &year) || year > 99 ||
	    !rtc_decode(b, c[RTC_CENTURY], &cent) || cent > 99)
		return false;
	*t = rtc_days_from_civil(cent * 100 + year, mon, mday) * SECS_PER_DAY + hour * 3600 +
	     min * 60 + sec;
	return true;
}

/* Take the clock registers as the new guest time (format b). */
static void rtc_set_from_regs(struct rtc *rtc, uint8_t b)
{
	int64_t t;

	if (!rtc_parse_time(&rtc->r, b, &t)) {
		if (!rtc->warned_bad_time)
			kwarn("rtc: guest wrote an invalid date/time, clock unchanged");
		rtc->warned_bad_time = true;
		return;
	}
	rtc->r.offset = t - (int64_t)rtc->wall();
	rtc->r.last_tick = t;
}

/* MC146818 "alarm": the three alarm bytes equal the time bytes, 11xxxxxx = any. */
static bool rtc_alarm_matches(const struct rtc_regs *r, int64_t t)
{
	uint8_t b = r->cmos[RTC_REG_B];
	int64_t sod = ((t % SECS_PER_DAY) + SECS_PER_DAY) % SECS_PER_DAY;
	uint8_t now[3] = { rtc_encode(b, (unsigned)(sod % 60)),
			   rtc_encode(b, (unsigned)(sod / 60 % 60)),
			   rtc_encode_hour(b, (unsigned)(sod / 3600)) };
	const uint8_t alarm[3] = { r->cmos[RTC_SECONDS_ALARM], r->cmos[RTC_MINUTES_ALARM],
				   r->cmos[RTC_HOURS_ALARM] };

	for (int i = 0; i < 3; i++)
		if ((alarm[i] & ALARM_DONT_CARE) != ALARM_DONT_CARE && alarm[i] != now[i])
			return false;
	return true;
}

/* Run the update cycles of the seconds elapsed since the last access. A day
 * covers every alarm pattern, so at most one day is scanned. */
static void rtc_catch_up(struct rtc *rtc)
{
	struct rtc_regs *r = &rtc->r;
	int64_t now, t;

	if (r->cmos[RTC_REG_B] & REG_B_SET)
		return;
	now = rtc_now(rtc);
	if (now <= r->last_tick) {
		r->last_tick = now;
		return;
	}
	r->cmos[RTC_REG_C] |= REG_C_UF;
	t = now - r->last_tick > SECS_PER_DAY ? now - SECS_PER_DAY : r->last_tick;
	while (t < now && !(r->cmos[RTC_REG_C] & REG_C_AF))
		if (rtc_alarm_matches(r, ++t))
			r->cmos[RTC_REG_C] |= REG_C_AF;
	r->last_tick = now;
}

static bool rtc_irqf(const struct rtc_regs *r)
{
	return (r->cmos[RTC_REG_C] & r->cmos[RTC_REG_B] & REG_C_FLAGS) != 0;
}

static void rtc_update_irq(struct rtc *rtc, bool force)
{
	int level = rtc_irqf(&rtc->r);

	if (level == rtc->irq_level && !force)
		return;
	rtc->irq_level = level;
	irq_set(&rtc->irq, level);
}

static void rtc_write_b(struct rtc *rtc, uint8_t v)
{
	struct rtc_regs *r = &rtc->r;
	uint8_t old = r->cmos[RTC_REG_B];

	/* MC146818: UIE is cleared while SET is one. */
	if (v & REG_B_SET)
		v &= ~REG_B_UIE;
	if ((old & REG_B_SET) && !(v & REG_B_SET))
		rtc_set_from_regs(rtc, old);
	r->cmos[RTC_REG_B] = v;
	if (!(old & REG_B_SET) && (v & REG_B_SET))
		rtc_store_time(r, rtc_now(rtc)); /* freeze what the guest will see */
}

static void rtc_write_time(struct rtc *rtc, unsigned idx, uint8_t v)
{
	struct rtc_regs *r = &rtc->r;
	uint8_t b = r->cmos[RTC_REG_B];

	if (b & REG_B_SET) {
		r->cmos[idx] = v;
		return;
	}
	/* Running clock: change one field of the current time. */
	rtc_store_time(r, rtc_now(rtc));
	r->cmos[idx] = v;
	rtc_set_from_regs(rtc, b);
}

static uint8_t rtc_read_data(struct rtc *rtc)
{
	struct rtc_regs *r = &rtc->r;
	unsigned idx = r->index;
	uint8_t v;

	if (rtc_is_time_reg(idx) && !rtc_is_alarm_reg(idx) && !(r->cmos[RTC_REG_B] & REG_B_SET))
		rtc_store_time(r, rtc_now(rtc));
	switch (idx) {
	case RTC_REG_A: return r->cmos[idx] & ~REG_A_UIP;
	case RTC_REG_C:
		v = r->cmos[idx] | (rtc_irqf(r) ? REG_C_IRQF : 0);
		r->cmos[idx] = 0; /* reading C clears every flag */
		return v;
	case RTC_REG_D: return REG_D_VRT;
	}
	return r->cmos[idx];
}

static void rtc_write_data(struct rtc *rtc, uint8_t v)
{
	struct rtc_regs *r = &rtc->r;
	unsigned idx = r->index;

	if (rtc_is_time_reg(idx) && !rtc_is_alarm_reg(idx)) {
		rtc_write_time(rtc, idx, v);
		return;
	}
	switch (idx) {
	case RTC_REG_A: r->cmos[idx] = v & ~REG_A_UIP; break;
	case RTC_REG_B: rtc_write_b(rtc, v); break;
	case RTC_REG_C:
	case RTC_REG_D: break; /* read-only */
	default: r->cmos[idx] = v;
	}
}

static uint8_t rtc_read_byte(struct rtc *rtc, uint64_t off)
{
	if (off == 1)
		return rtc_read_data(rtc);
	return 0xff; /* the index port is write-only */
}

static void rtc_write_byte(struct rtc *rtc, uint64_t off, uint8_t v)
{
	if (off == 0)
		rtc->r.index = v & 0x7f; /* bit 7 gates NMI on a PC: not ours */
	else if (off == 1)
		rtc_write_data(rtc, v);
}

static uint64_t rtc_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	struct rtc *rtc = to_rtc(dev);
	uint64_t v = 0;

	rtc_catch_up(rtc);
	for (unsigned i = 0; i < size; i++)
		v |= (uint64_t)rtc_read_byte(rtc, off + i) << (8 * i);
	rtc_update_irq(rtc, false);
	return v;
}

static void rtc_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct rtc *rtc = to_rtc(dev);

	rtc_catch_up(rtc);
	for (unsigned i = 0; i < size; i++)
		rtc_write_byte(rtc, off + i, (uint8_t)(val >> (8 * i)));
	rtc_update_irq(rtc, false);
}

static void rtc_put16(uint8_t *c, unsigned idx, uint64_t v)
{
	c[idx] = (uint8_t)v;
	c[idx + 1] = (uint8_t)(v >> 8);
}

/* What the BIOS setup would have stored: memory sizes, equipment, boot
 * order and (QEMU's addition) the CPU count. */
static void rtc_fill_board(struct rtc *rtc)
{
	const struct rtc_cmos_board *b = &rtc->board;
	uint8_t *c = rtc->r.cmos;
	uint64_t lo = b->mem_below_4g, v;

	rtc_put16(c, CMOS_BASE_MEM_LO, MIN(lo / KiB(1), 640));
	v = lo > MiB(1) ? MIN((lo - MiB(1)) / KiB(1), 0xffff) : 0;
	rtc_put16(c, CMOS_EXT_MEM_LO, v);
	rtc_put16(c, CMOS_EXT_MEM2_LO, v);
	v = lo > MiB(16) ? MIN((lo - MiB(16)) / KiB(64), 0xffff) : 0;
	rtc_put16(c, CMOS_MEM_16M_LO, v);
	v = MIN(b->mem_above_4g / KiB(64), 0xffffff);
	c[CMOS_MEM_4G_LO] = (uint8_t)v;
	c[CMOS_MEM_4G_LO + 1] = (uint8_t)(v >> 8);
	c[CMOS_MEM_4G_LO + 2] = (uint8_t)(v >> 16);
	c[CMOS_EQUIPMENT] = b->equipment;
	/* SeaBIOS boot_init: priorities 101..103 from the nibbles 3d[3:0],
	 * 3d[7:4], 38[7:4]. */
	c[CMOS_BOOTFLAG2] = (uint8_t)(b->boot[1] << 4 | b->boot[0]);
	c[CMOS_BOOTFLAG1] =
		(uint8_t)(b->boot[2] << 4 | (b->floppy_sig_check ? 0 : BOOTFLAG1_NO_FLOPPY_CHECK));
	c[CMOS_SMP_COUNT] = (uint8_t)(b->ncpus - 1);
}

static bool rtc_board_valid(const struct rtc_cmos_board *b)
{
	if (b->ncpus < 1 || b->ncpus > 256)
		return false;
	for (int i = 0; i < RTC_BOOT_SLOTS; i++)
		if (b->boot[i] > RTC_BOOT_NET)
			return false;
	return true;
}

int rtc_set_cmos_board(struct device *dev, const struct rtc_cmos_board *b)
{
	struct rtc *rtc = to_rtc(dev);

	if (!rtc_board_valid(b))
		return -EINVAL;
	pthread_mutex_lock(&dev->lock);
	rtc->board = *b;
	rtc_fill_board(rtc);
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

/* MC146818 RESET pin: clears the interrupt enables and flags; the clock and
 * the rest of the battery-backed RAM stay. */
static void rtc_reset(struct device *dev)
{
	struct rtc *rtc = to_rtc(dev);
	struct rtc_regs *r = &rtc->r;

	r->cmos[RTC_REG_B] &= ~(REG_B_PIE | REG_B_AIE | REG_B_UIE | REG_B_SQWE);
	r->cmos[RTC_REG_C] = 0;
	r->cmos[RTC_REG_D] = REG_D_VRT;
	rtc_fill_board(rtc);
	rtc_update_irq(rtc, true);
}

static int rtc_save(struct device *dev, struct state_buf *out)
{
	const struct rtc_regs *r = &to_rtc(dev)->r;
	size_t mark = state_section_begin(out, RTC_STATE_ID, RTC_STATE_VERSION);

	state_put_bytes(out, r->cmos, RTC_NVRAM_SIZE);
	state_put_u8(out, r->index);
	state_put_u64(out, (uint64_t)r->offset);
	state_put_u64(out, (uint64_t)r->last_tick);
	state_section_end(out, mark);
	return out->error ? -ENOMEM : 0;
}

static bool rtc_regs_valid(const struct rtc_regs *r)
{
	if (r->index >= RTC_NVRAM_SIZE || r->cmos[RTC_REG_A] & REG_A_UIP)
		return false;
	if (r->cmos[RTC_REG_C] & ~REG_C_FLAGS || r->cmos[RTC_REG_D] != REG_D_VRT)
		return false;
	if ((r->cmos[RTC_REG_B] & REG_B_SET) && (r->cmos[RTC_REG_B] & REG_B_UIE))
		return false;
	return r->offset > -RTC_MAX_OFFSET && r->offset < RTC_MAX_OFFSET &&
	       r->last_tick > -RTC_MAX_OFFSET * 2 && r->last_tick < RTC_MAX_OFFSET * 2;
}

static int rtc_load(struct device *dev, struct state_buf *in)
{
	struct rtc *rtc = to_rtc(dev);
	struct rtc_regs r;
	size_t end;

	if (state_section_open(in, RTC_STATE_ID, RTC_STATE_VERSION) < 0)
		return -EINVAL;
	end = emu_section_body_end(in);
	state_get_bytes(in, r.cmos, RTC_NVRAM_SIZE);
	r.index = state_get_u8(in);
	r.offset = (int64_t)state_get_u64(in);
	r.last_tick = (int64_t)state_get_u64(in);
	if (!emu_section_done(in, end) || !rtc_regs_valid(&r))
		return -EINVAL;
	rtc->r = r;
	rtc_update_irq(rtc, true);
	return 0;
}

static void rtc_destroy(struct device *dev)
{
	pthread_mutex_destroy(&dev->lock);
	free(to_rtc(dev));
}

static const struct dev_ops rtc_ops = {
	.name = "mc146818",
	.reset = rtc_reset,
	.read = rtc_read,
	.write = rtc_write,
	.save = rtc_save,
	.load = rtc_load,
	.destroy = rtc_destroy,
};

static time_t rtc_host_wall(void)
{
	return time(NULL);
}

struct device *rtc_create(const struct irq_line *irq, time_t (*wall)(void), uint64_t mem_below_4g,
			  uint64_t mem_above_4g)
{
	struct rtc *rtc = calloc(1, sizeof(*rtc));

	if (!rtc)
		return NULL;
	device_init(&rtc->dev, &rtc_ops);
	if (irq)
		rtc->irq = *irq;
	rtc->wall = wall ? wall : rtc_host_wall;
	/* Until the machine says more: no floppy, VGA-class video, no PS/2
	 * mouse, no boot devices, one CPU. */
	rtc->board = (struct rtc_cmos_board){ .mem_below_4g = mem_below_4g,
					      .mem_above_4g = mem_above_4g,
					      .equipment = RTC_EQUIP_FPU,
					      .ncpus = 1 };
	rtc->irq_level = -1;
	rtc->r.cmos[RTC_REG_A] = RTC_DEFAULT_A;
	rtc->r.cmos[RTC_REG_B] = RTC_DEFAULT_B;
	rtc->r.last_tick = rtc_now(rtc);
	rtc_store_time(&rtc->r, rtc->r.last_tick);
	rtc_reset(&rtc->dev);
	return &rtc->dev;
}
