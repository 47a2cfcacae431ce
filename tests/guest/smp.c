/* smp.bin: start every CPU the MADT lists with INIT-SIPI-SIPI (SDM vol. 3
 * 8.4.4.1; MP spec B.4) from ring 3 through the xAPIC MMIO page. Each AP
 * runs the real-mode trampoline, boot.S's long-mode path and cpu_enter()
 * with its own stacks and TSS, then counts in ring 3 and reports its APIC
 * ID. APs are started one at a time: ap_boot_index tells the next one which
 * slot is its own. */
#include "guest.h"

#define MADT_LAPIC_ADDR 36
#define MADT_ENTRIES	44
#define MADT_LAPIC	0
#define MADT_X2APIC	9

#define LAPIC_ID	 0x020
#define LAPIC_VERSION	 0x030
#define LAPIC_SVR	 0x0f0
#define LAPIC_ICR_LOW	 0x300
#define LAPIC_ICR_HIGH	 0x310
#define LAPIC_SVR_ENABLE 0x100
#define ICR_BUSY	 (1u << 12)
#define ICR_INIT	 0x500
#define ICR_STARTUP	 0x600
#define ICR_ASSERT	 (1u << 14)
#define ICR_LEVEL	 (1u << 15)

#define AP_LOOPS	 1000000u
#define START_TIMEOUT_US 5000000u
#define DONE_TIMEOUT_US	 20000000u
#define PAGE		 0x1000u

struct percpu {
	volatile uint32_t started;
	volatile uint32_t done;
	volatile uint32_t lapic_id;
	volatile uint32_t target_id;
	volatile uint64_t count;
} __attribute__((aligned(64)));

static struct percpu percpu[GUEST_MAX_CPUS];
static uint64_t lapic;
static uint32_t madt_ids[GUEST_MAX_CPUS];
static unsigned madt_count;

static uint32_t lapic_read(unsigned reg)
{
	return mmio_read32(lapic + reg);
}

static void lapic_write(unsigned reg, uint32_t v)
{
	mmio_write32(lapic + reg, v);
}

/* Enabled processors (ACPI 6.4 5.2.12.2 / 5.2.12.12); false if too many. */
static bool madt_read(const struct acpi_sdt *madt)
{
	unsigned off = MADT_ENTRIES;
	bool fits = true;

	lapic = acpi_field(madt, MADT_LAPIC_ADDR, 4);
	while (off + 2 <= madt->length) {
		unsigned type = (unsigned)acpi_field(madt, off, 1);
		unsigned len = (unsigned)acpi_field(madt, off + 1, 1);
		uint32_t id = 0, flags = 0;

		if (len < 2 || off + len > madt->length)
			break;
		if (type == MADT_LAPIC && len >= 8) {
			id = (uint32_t)acpi_field(madt, off + 3, 1);
			flags = (uint32_t)acpi_field(madt, off + 4, 4);
		} else if (type == MADT_X2APIC && len >= 16) {
			id = (uint32_t)acpi_field(madt, off + 4, 4);
			flags = (uint32_t)acpi_field(madt, off + 8, 4);
		}
		off += len;
		if (!(flags & 1))
			continue;
		if (madt_count == GUEST_MAX_CPUS)
			fits = false;
		else
			madt_ids[madt_count++] = id;
	}
	return fits;
}

static bool icr_send(uint32_t apic_id, uint32_t low)
{
	lapic_write(LAPIC_ICR_HIGH, apic_id << 24);
	lapic_write(LAPIC_ICR_LOW, low);
	for (unsigned i = 0; i < 100000; i++)
		if (!(lapic_read(LAPIC_ICR_LOW) & ICR_BUSY))
			return true;
	return false;
}

/* A free page below 1 MiB for the trampoline: not holding anything the
 * loader gave us, RAM in its memory map, and a valid SIPI vector. */
static uint64_t trampoline_page(void)
{
	for (uint64_t i = 0; i < 0x9f; i++) {
		uint64_t a = (0x8000 + i * PAGE) % 0x9f000;

		if (a == 0)
			continue;
		if (!mb_range_used(a, PAGE) && mb_range_available(a, PAGE))
			return a;
	}
	return 0;
}

static bool wait_started(unsigned idx)
{
	struct deadline d;

	deadline_start(&d, START_TIMEOUT_US);
	while (!percpu[idx].started)
		if (deadline_expired(&d))
			return false;
	return true;
}

static bool start_ap(unsigned idx, uint32_t apic_id, uint8_t vector)
{
	percpu[idx].target_id = apic_id;
	ap_boot_index = idx;
	barrier();
	if (!icr_send(apic_id, ICR_INIT | ICR_LEVEL | ICR_ASSERT) ||
	    !icr_send(apic_id, ICR_INIT | ICR_LEVEL))
		return false;
	udelay(10000);
	for (int sipi = 0; sipi < 2 && !percpu[idx].started; sipi++) {
		if (!icr_send(apic_id, ICR_STARTUP | vector))
			return false;
		udelay(200);
	}
	return wait_started(idx);
}

void ap_main(unsigned idx)
{
	struct percpu *c = &percpu[idx];

	c->lapic_id = lapic_read(LAPIC_ID) >> 24;
	c->started = 1;
	for (uint32_t i = 0; i < AP_LOOPS; i++)
		c->count++;
	c->done = 1;
}

static unsigned start_all(uint32_t bsp_id, uint8_t vector)
{
	unsigned ncpu = 1;

	for (unsigned i = 0; i < madt_count; i++) {
		if (madt_ids[i] == bsp_id)
			continue;
		if (madt_ids[i] > 0xfe) {
			check(false, "APIC ID %u needs x2APIC, which this test does not drive",
			      madt_ids[i]);
			continue;
		}
		if (!check(start_ap(ncpu, madt_ids[i], vector),
			   "AP with APIC ID %u started as cpu %u", madt_ids[i], ncpu))
			continue;
		ncpu++;
	}
	return ncpu;
}

static unsigned wait_done(unsigned ncpu)
{
	struct deadline d;
	unsigned online = 1;

	deadline_start(&d, DONE_TIMEOUT_US);
	for (unsigned i = 1; i < ncpu; i++)
		while (!percpu[i].done && !deadline_expired(&d))
			cpu_relax();
	for (unsigned i = 1; i < ncpu; i++)
		online += percpu[i].done;
	return online;
}

static void report(unsigned ncpu, uint32_t bsp_id)
{
	gprintf("cpu 0 apic id %u (cpuid %u) bsp\n", bsp_id, cpu_boot_apic_id(0));
	check(cpu_boot_apic_id(0) == bsp_id, "BSP: CPUID initial APIC ID %u = LAPIC ID %u",
	      cpu_boot_apic_id(0), bsp_id);
	for (unsigned i = 1; i < ncpu; i++) {
		struct percpu *c = &percpu[i];

		gprintf("cpu %u apic id %u (cpuid %u) count %lu%s\n", i, c->lapic_id,
			cpu_boot_apic_id(i), c->count, c->done ? "" : " NOT DONE");
		check(c->done && c->count == AP_LOOPS, "cpu %u counted to %u", i, AP_LOOPS);
		check(c->lapic_id == c->target_id, "cpu %u LAPIC ID %u is the one started (%u)", i,
		      c->lapic_id, c->target_id);
		check(cpu_boot_apic_id(i) == c->lapic_id,
		      "cpu %u CPUID initial APIC ID %u = LAPIC ID", i, cpu_boot_apic_id(i));
	}
}

int main(void)
{
	const struct acpi_sdt *madt = acpi_find_table("APIC");
	size_t tsize = (size_t)(ap_trampoline_end - ap_trampoline_start);
	uint64_t tpage;
	uint32_t bsp_id;
	unsigned ncpu, online;

	if (!pmtmr_init())
		gprintf("smp: no PM timer, delays are approximate\n");
	if (!check(madt != NULL, "MADT found"))
		return check_result(GUEST_EXIT_SMP);
	check(madt_read(madt), "MADT CPUs fit in %u slots", GUEST_MAX_CPUS);
	check(lapic == BOARD_LAPIC_BASE, "MADT local APIC address %#lx", lapic);
	if (!lapic || lapic >= 0x100000000ull)
		lapic = BOARD_LAPIC_BASE;
	gprintf("smp: %u CPUs in the MADT\n", madt_count);

	bsp_id = lapic_read(LAPIC_ID) >> 24;
	gprintf("bsp apic id %u, lapic version %#x\n", bsp_id, lapic_read(LAPIC_VERSION));
	bool listed = false;
	for (unsigned i = 0; i < madt_count; i++)
		listed |= madt_ids[i] == bsp_id;
	check(listed, "BSP APIC ID %u is in the MADT", bsp_id);
	lapic_write(LAPIC_SVR, (lapic_read(LAPIC_SVR) & ~0xffu) | LAPIC_SVR_ENABLE | 0xff);

	tpage = trampoline_page();
	if (!check(tpage != 0, "free trampoline page below 1 MiB at %#lx (SIPI vector %#lx)", tpage,
		   tpage >> 12))
		return check_result(GUEST_EXIT_SMP);
	memcpy(phys_ptr(tpage), ap_trampoline_start, tsize);

	ncpu = start_all(bsp_id, (uint8_t)(tpage >> 12));
	online = wait_done(ncpu);
	gprintf("cpus online: %u\n", online);
	report(ncpu, bsp_id);
	check(online == madt_count, "all %u CPUs in the MADT reported (%u)", madt_count, online);
	return check_result(GUEST_EXIT_SMP);
}
