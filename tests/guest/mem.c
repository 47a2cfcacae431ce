/* mem.bin: the guest-physical memory map below 1 MiB as a guest sees it,
 * and pages for the host's dirty log to find.
 *
 * Checks: RAM just below the VGA window keeps what is written; with hole=1,
 * the VGA window (0xa0000-0xbffff) is not RAM (nothing is there without a
 * VGA: a written byte does not read back); the system BIOS segment
 * (0xf0000-0xfffff) is read-only: four writes of 1, 2, 4 and 8 bytes leave
 * its bytes as they were. Under kestrel the writes reach the device behind
 * the read-only slot, which counts them (--stats "read-only memory writes",
 * control socket stats io.rom_writes); SeaBIOS write-protects the segment
 * the same way under QEMU.
 *
 * Then rounds=N (default 0) rounds of period_ms= (default 100): each writes
 * the "busy" page and prints "mem: round R". The "quiet" page is written
 * once before the first round and never again. Their addresses are printed
 * first ("mem: busy=0x... quiet=0x..."): the host's dirty log (kestrel ctl
 * dirty-log) must hold the busy page and not the quiet one. */
#include "guest.h"

#define PAGE	      4096
#define VGA_PROBE     0xb8000 /* where a text-mode screen would be */
#define BIOS_PROBE    0xfff00 /* near the reset vector, inside the BIOS segment */
#define LOW_RAM_PROBE 0x9e000 /* below the EBDA, e820 RAM, nothing the loader uses */

static uint8_t busy[PAGE] __attribute__((aligned(PAGE)));
static uint8_t quiet[PAGE] __attribute__((aligned(PAGE)));

static void check_low_ram(void)
{
	volatile uint32_t *p = phys_ptr(LOW_RAM_PROBE);

	*p = 0x5a5aa5a5;
	check(*p == 0x5a5aa5a5, "RAM at %#x below the VGA window keeps what is written",
	      LOW_RAM_PROBE);
}

/* Only with hole=1: QEMU's pc machine without a VGA shows RAM there. */
static void check_vga_window(bool must_be_hole)
{
	volatile uint8_t *p = phys_ptr(VGA_PROBE);
	uint8_t before = *p, wrote = (uint8_t)(before ^ 0xa5), after;

	*p = wrote;
	after = *p;
	gprintf("mem: VGA window at %#x: read %02x, wrote %02x, read %02x\n", VGA_PROBE, before,
		wrote, after);
	if (must_be_hole)
		check(after != wrote, "VGA window is not RAM: the byte written did not stay");
}

static void check_bios_readonly(void)
{
	uint8_t before[64], after[64];
	volatile uint8_t *b = phys_ptr(BIOS_PROBE);

	for (int i = 0; i < 64; i++)
		before[i] = b[i];
	*(volatile uint8_t *)(b + 0x00) = (uint8_t)~before[0];
	*(volatile uint16_t *)(b + 0x10) = 0xa55a;
	*(volatile uint32_t *)(b + 0x20) = 0xdeadbeef;
	*(volatile uint64_t *)(b + 0x30) = 0x0123456789abcdefull;
	for (int i = 0; i < 64; i++)
		after[i] = b[i];
	check(memcmp(before, after, sizeof(before)) == 0,
	      "BIOS segment is read-only: 4 writes (1, 2, 4, 8 bytes) at %#x, its bytes unchanged "
	      "(%02x %02x %02x %02x)",
	      BIOS_PROBE, after[0], after[0x10], after[0x20], after[0x30]);
	gprintf("mem: wrote the BIOS segment 4 times\n");
}

static void dirty_rounds(uint64_t rounds, uint64_t period_ms)
{
	quiet[0] = 1;
	gprintf("mem: busy=%#lx quiet=%#lx\n", (uint64_t)(uintptr_t)busy,
		(uint64_t)(uintptr_t)quiet);
	for (uint64_t r = 1; r <= rounds; r++) {
		*(volatile uint64_t *)busy = r;
		gprintf("mem: round %lu\n", r);
		udelay(period_ms * 1000);
	}
	check(quiet[0] == 1 && *(volatile uint64_t *)busy == rounds,
	      "%lu rounds wrote the busy page only", rounds);
}

int main(void)
{
	uint64_t rounds = mb_cmdline_uint("rounds", 0), period = mb_cmdline_uint("period_ms", 100);

	check_low_ram();
	check_vga_window(mb_cmdline_uint("hole", 0));
	check_bios_readonly();
	if (rounds) {
		bool tmr = pmtmr_init();

		if (!check(tmr, "PM timer at port %#x", pmtmr_port()))
			return check_result(GUEST_EXIT_MEM);
		dirty_rounds(rounds > 6000 ? 6000 : rounds,
			     period && period <= 10000 ? period : 100);
	}
	return check_result(GUEST_EXIT_MEM);
}
