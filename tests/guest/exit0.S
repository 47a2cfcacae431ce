/* exit0.bin: debug-exit(0) straight from the 32-bit Multiboot entry, to time
 * the VMM's start-up and teardown rather than the payload. */
#include "kestrel/board.h"

	.code32
	.section .text.boot, "ax"
	.globl mb_entry
mb_entry:
	movw $BOARD_PORT_DEBUG_EXIT, %dx
	xorl %eax, %eax
	outl %eax, %dx
1:	cli
	hlt
	jmp 1b

	.section .note.GNU-stack, "", @progbits
