/* Multiboot v1 header with the a.out kludge (Multiboot 0.6.96 section 3.1).
 *
 * The payload is ELF64, which QEMU's multiboot loader refuses, so it is
 * shipped as a flat binary and flags bit 16 tells the loader where to put
 * it: the file from offset 0 goes to load_addr (the header is the first
 * thing in the file, so header_addr == load_addr), bytes up to
 * load_end_addr come from the file, up to bss_end_addr are zeroed, and
 * execution starts at mb_entry in 32-bit protected mode. Bit 1 asks for the
 * memory fields and map. The linker script keeps this in the first 8 KiB. */
#include "layout.h"

#define MB_FLAGS ((1 << 16) | (1 << 1))

	.section .multiboot, "a"
	.balign 4
	.globl mb_header
mb_header:
	.long MB_HEADER_MAGIC
	.long MB_FLAGS
	.long -(MB_HEADER_MAGIC + MB_FLAGS)
	.long mb_header         /* header_addr */
	.long _load_start       /* load_addr */
	.long _load_end         /* load_end_addr: end of .data, the file's end */
	.long _end              /* bss_end_addr: .bss and the stacks */
	.long mb_entry          /* entry_addr */
