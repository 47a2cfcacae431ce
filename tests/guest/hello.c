/* hello.bin: the boot path works. Prints from ring 3, checks CPL 3, that
 * ring 3 can reach I/O ports (it printed), and the Multiboot magic, then exits with "code=N" from the command line
 * (default 0), so a test can see a chosen code come through. A VMM that does
 * not decode the debug-exit port (kestrel without --debug-exit) ignores that
 * write: the payload says so, and with reset=1 resets the board through
 * 0xCF9 (which a worker with --on-reboot exit ends with status 0). */
#include "guest.h"

int main(void)
{
	const struct mb_info *mi = mb_info();
	uint64_t code = mb_cmdline_uint("code", 0);
	unsigned cpl = cpu_cpl(), iopl = cpu_iopl();

	gprintf("hello from ring 3 (cpl=%u iopl=%u)\n", cpl, iopl);
	check(cpl == 3, "running at CPL %u", cpl);
	/* IOPL may read 0 (PVM ignores it); the ports still work through the
	 * TSS I/O bitmap, or this line would not have printed. */
	check(inb(0x3f8 + 5) & 0x20, "UART LSR read from ring 3 shows THR empty");
	check(boot_mb_magic == MB_BOOT_MAGIC, "multiboot magic %#x", boot_mb_magic);
	if (mi) {
		gprintf("multiboot info at %#x flags %#x\n", boot_mb_info, mi->flags);
		if (mi->flags & MB_INFO_MEM)
			gprintf("mem_lower=%u KiB mem_upper=%u KiB\n", mi->mem_lower,
				mi->mem_upper);
		if ((mi->flags & MB_INFO_LOADER) && mi->boot_loader_name)
			gprintf("boot loader: %.64s\n",
				(const char *)phys_ptr(mi->boot_loader_name));
	}
	gprintf("cmdline: \"%s\"\n", mb_cmdline());
	check(code < 128, "exit code %lu from the command line fits in 7 bits", code);
	if (check_result(GUEST_EXIT_HELLO) != GUEST_EXIT_PASS)
		return GUEST_EXIT_HELLO;
	gprintf("exit code %lu\n", code);
	outl(BOARD_PORT_DEBUG_EXIT, (uint32_t)code);
	gprintf("hello: still running after the debug-exit write\n");
	if (mb_cmdline_uint("reset", 0)) {
		outb(BOARD_PORT_RESET, 0x06);
		/* The 0xCF9 write may wait in KVM's coalesced ring until the
		 * next exit to the VMM: this line is one. */
		gprintf("hello: board reset requested\n");
	}
	return (int)code;
}
