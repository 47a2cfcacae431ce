/* The VM-wide state KVM keeps: the in-kernel 8259 pair and IOAPIC (record
 * IRQC), the 8254 PIT (PIT2) and the kvmclock (CLCK). Every field is written
 * out by name and range-checked on the way in: KVM takes what we hand it.
 *
 * The clock: a restored guest's kvmclock goes on from the value it had when
 * it was saved (as QEMU and Firecracker do), so its monotonic time never
 * goes backwards and no timer of the guest sees the time it spent saved;
 * the TSC (an MSR, restored per vCPU) does the same. The RTC follows the
 * host's wall clock (devices/emulated/cmos_rtc.c), so the guest's date is
 * right again when it next reads the RTC. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "kestrel/clock.h"
#include "kestrel/board.h"
#include "kestrel/kvm_state.h"

#define PIC_F(m) STATE_FIELD(struct kvm_pic_state, m)
static const struct state_field pic_fields[] = {
	PIC_F(last_irr),
	PIC_F(irr),
	PIC_F(imr),
	PIC_F(isr),
	PIC_F(priority_add),
	PIC_F(irq_base),
	PIC_F(read_reg_select),
	PIC_F(poll),
	PIC_F(special_mask),
	PIC_F(init_state),
	PIC_F(auto_eoi),
	PIC_F(rotate_on_auto_eoi),
	PIC_F(special_fully_nested_mode),
	PIC_F(init4),
	PIC_F(elcr),
	PIC_F(elcr_mask),
};

#define IOAPIC_F(m) STATE_FIELD(struct kvm_ioapic_state, m)
static const struct state_field ioapic_fields[] = {
	IOAPIC_F(base_address),
	IOAPIC_F(ioregsel),
	IOAPIC_F(id),
	IOAPIC_F(irr),
};

#define PIT_F(m) STATE_FIELD(struct kvm_pit_channel_state, m)
static const struct state_field pit_channel_fields[] = {
	PIT_F(count),	PIT_F(latched_count), PIT_F(count_latched), PIT_F(status_latched),
	PIT_F(status),	PIT_F(read_state),    PIT_F(write_state),   PIT_F(write_latch),
	PIT_F(rw_mode), PIT_F(mode),	      PIT_F(bcd),	    PIT_F(gate),
};

static int irqchip_get(int vm_fd, uint32_t id, struct kvm_irqchip *c)
{
	memset(c, 0, sizeof(*c));
	c->chip_id = id;
	return ioctl(vm_fd, KVM_GET_IRQCHIP, c) < 0 ? -errno : 0;
}

int vm_kvm_state_get(int vm_fd, struct vm_kvm_state *s, const char **what)
{
	struct kvm_clock_data clk = { 0 };
	struct kvm_irqchip c;
	int ret = 0;

	memset(s, 0, sizeof(*s));
	*what = "KVM_GET_IRQCHIP";
	for (uint32_t id = KVM_IRQCHIP_PIC_MASTER; id <= KVM_IRQCHIP_IOAPIC && !ret; id++) {
		ret = irqchip_get(vm_fd, id, &c);
		if (id == KVM_IRQCHIP_IOAPIC)
			s->ioapic = c.chip.ioapic;
		else
			s->pic[id] = c.chip.pic;
	}
	if (!ret && ioctl(vm_fd, KVM_GET_PIT2, &s->pit) < 0) {
		*what = "KVM_GET_PIT2";
		ret = -errno;
	}
	if (!ret && ioctl(vm_fd, KVM_GET_CLOCK, &clk) < 0) {
		*what = "KVM_GET_CLOCK";
		ret = -errno;
	}
	s->clock = clk.clock;
	s->realtime_ns = clock_ns(CLOCK_REALTIME);
	return ret;
}

int vm_kvm_state_set(int vm_fd, const struct vm_kvm_state *s, char *err, size_t errlen)
{
	struct kvm_clock_data clk = { .clock = s->clock };
	struct kvm_irqchip c;
	const char *what = NULL;

	for (uint32_t id = KVM_IRQCHIP_PIC_MASTER; id <= KVM_IRQCHIP_IOAPIC && !what; id++) {
		memset(&c, 0, sizeof(c));
		c.chip_id = id;
		if (id == KVM_IRQCHIP_IOAPIC)
			c.chip.ioapic = s->ioapic;
		else
			c.chip.pic = s->pic[id];
		if (ioctl(vm_fd, KVM_SET_IRQCHIP, &c) < 0)
			what = "KVM_SET_IRQCHIP";
	}
	if (!what && ioctl(vm_fd, KVM_SET_PIT2, &s->pit) < 0)
		what = "KVM_SET_PIT2";
	if (!what && ioctl(vm_fd, KVM_SET_CLOCK, &clk) < 0)
		what = "KVM_SET_CLOCK";
	if (!what)
		return 0;
	snprintf(err, errlen, "%s: %s", what, strerror(errno));
	return -errno;
}

/* ---- IRQC: u8 x 16 per PIC (master, slave), then the IOAPIC: u64 base,
 * u32 IOREGSEL, u32 id, u32 IRR, 24 u64 redirection entries. ---- */

void irqchip_state_put(struct state_buf *b, const struct vm_kvm_state *s)
{
	for (int p = 0; p < 2; p++)
		state_put_fields(b, &s->pic[p], pic_fields, ARRAY_SIZE(pic_fields));
	state_put_fields(b, &s->ioapic, ioapic_fields, ARRAY_SIZE(ioapic_fields));
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		state_put_u64(b, s->ioapic.redirtbl[i].bits);
}

/* What an 8259A can hold (its datasheet's ICW/OCW fields; KVM's i8259.c
 * state machine): flags are 0/1, init_state 0..3, priority 0..7, the
 * vector base a multiple of 8, read_reg_select 0/1. */
static bool pic_ok(struct kvm_pic_state *p)
{
	return p->priority_add <= 7 && !(p->irq_base & 7) && p->init_state <= 3 &&
	       (p->read_reg_select | p->poll | p->special_mask | p->auto_eoi |
		p->rotate_on_auto_eoi | p->special_fully_nested_mode | p->init4) <= 1;
}

int irqchip_state_parse(struct state_buf *b, struct vm_kvm_state *s)
{
	bool ok = true;

	for (int p = 0; p < 2; p++) {
		memset(&s->pic[p], 0, sizeof(s->pic[p]));
		state_get_fields(b, &s->pic[p], pic_fields, ARRAY_SIZE(pic_fields));
		ok &= pic_ok(&s->pic[p]);
	}
	memset(&s->ioapic, 0, sizeof(s->ioapic));
	state_get_fields(b, &s->ioapic, ioapic_fields, ARRAY_SIZE(ioapic_fields));
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		s->ioapic.redirtbl[i].bits = state_get_u64(b);
	/* The board's IOAPIC sits at BOARD_IOAPIC_BASE (as the MADT says);
	 * IOREGSEL is an 8-bit index; the IRR has a bit per pin. */
	ok = ok && s->ioapic.base_address == BOARD_IOAPIC_BASE && s->ioapic.ioregsel <= 0xff &&
	     !(s->ioapic.irr >> KVM_IOAPIC_NUM_PINS) && s->ioapic.id <= 0xff;
	return ok && !b->error && b->pos == b->len ? 0 : -EINVAL;
}

/* ---- PIT2: per channel u32 count, u16 latched count, u8 count latched,
 * status latched, status, read state, write state, write latch, rw mode,
 * mode, bcd, gate; then u32 flags. The load time is KVM's: it restarts each
 * channel's count when it is set. ---- */

void pit_state_put(struct state_buf *b, const struct vm_kvm_state *s)
{
	for (int i = 0; i < 3; i++)
		state_put_fields(b, &s->pit.channels[i], pit_channel_fields,
				 ARRAY_SIZE(pit_channel_fields));
	state_put_u32(b, s->pit.flags);
}

int pit_state_parse(struct state_buf *b, struct vm_kvm_state *s)
{
	bool ok = true;

	memset(&s->pit, 0, sizeof(s->pit));
	for (int i = 0; i < 3; i++) {
		struct kvm_pit_channel_state *c = &s->pit.channels[i];

		state_get_fields(b, c, pit_channel_fields, ARRAY_SIZE(pit_channel_fields));
		/* 8254 datasheet: a count of 0 means 65536; modes 0-5 (KVM's
		 * 0xff: never programmed); RW modes 1-3 (0 until programmed);
		 * KVM's read/write states RW_STATE_LSB..RW_STATE_WORD1 (1-4) or 0. */
		ok &= c->count <= 0x10000 && (c->mode <= 5 || c->mode == 0xff) && c->rw_mode <= 3 &&
		      c->read_state <= 4 && c->write_state <= 4 && c->count_latched <= 3 &&
		      c->status_latched <= 1 && c->bcd <= 1 && c->gate <= 1;
	}
	s->pit.flags = state_get_u32(b);
	ok &= !(s->pit.flags & ~(KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON));
	return ok && !b->error && b->pos == b->len ? 0 : -EINVAL;
}

/* ---- CLCK: u64 kvmclock ns, u64 host CLOCK_REALTIME ns at save. ---- */

void clock_state_put(struct state_buf *b, const struct vm_kvm_state *s)
{
	state_put_u64(b, s->clock);
	state_put_u64(b, s->realtime_ns);
}

int clock_state_parse(struct state_buf *b, struct vm_kvm_state *s)
{
	s->clock = state_get_u64(b);
	s->realtime_ns = state_get_u64(b);
	/* kvmclock counts ns since the VM started: below 2^62 (146 years). */
	return !b->error && b->pos == b->len && s->clock < (1ull << 62) ? 0 : -EINVAL;
}
