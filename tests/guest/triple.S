/* triple.bin: a guest that triple-faults at once (no IDT, then #UD), so the
 * worker must stop with its VM-error status and a register dump, not hang. */
	.code32
	.section .text.boot, "ax"
	.globl mb_entry
mb_entry:
	lidt null_idt
	ud2
1:	jmp 1b

	.section .rodata
null_idt:
	.word 0
	.long 0

	.section .note.GNU-stack, "", @progbits
