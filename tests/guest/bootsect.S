/* bootsect.bin: a boot sector for firmware-boot tests, 1 KiB: the boot
 * sector, then sector 1 (a marker, a mode byte, more code). The firmware
 * loads sector 0 at 0x7C00 and jumps to it in real mode with DL = the boot
 * drive. It checks the BIOS services an OS loader needs, says so on COM1,
 * and powers off through the ACPI PM block as kestrel and QEMU's PIIX4 have
 * it (PM1a_CNT 0x604: SLP_EN with SLP_TYP 0, S5):
 *
 *   bootsect: int 10h teletype works       through the BIOS (SeaBIOS's serial
 *                                          console copies it to COM1)
 *   bootsect: booted from drive 0xNN       straight to COM1, as the rest
 *   bootsect: int 13h read sector 1: KESTREL-SECTOR-1     a disk (DL < 0xE0):
 *                                          sector 1 read to 0x7E00
 *   bootsect: int 13h read the volume descriptor: CD001   a CD (DL >= 0xE0,
 *                                          El Torito no-emulation, load size
 *                                          4: both sectors loaded): LBA 16
 *   bootsect: done
 *
 * or "bootsect: FAIL ..." and a halt. Sector 1's byte 16 (file offset 528)
 * asks for a reset instead of the power-off on a disk: 1 through 0xCF9, 2
 * through the keyboard controller (0xFE to 0x64), 3 by a triple fault. The
 * sector goes back to the disk with the byte cleared and byte 17 (resets)
 * counted, and the line "bootsect: reset through 0xcf9|kbc|triple fault"
 * comes before it; after the reset the next boot prints "bootsect: after
 * N reset(s)" and powers off. Mode 4 waits for a key instead, through the
 * BIOS (int 16h: IRQ 1, the firmware's handler and buffer), prints
 * "bootsect: waiting for a key" first and "bootsect: key 0xNN" (the scan
 * code) after, then powers off: a save/restore test sends the key to the
 * restored VM. */
	.code16
	.section .text.boot, "ax"
	.globl _start
_start:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw $0x7c00, %sp
	ljmp $0, $1f
1:	movb %dl, drive
	sti

	movw $msg_int10, %si
	call bios_puts
	/* SeaBIOS's serial console holds the last character back until its
	 * next flush, which the timer interrupt makes: let two ticks pass
	 * before writing to COM1 directly. */
	movw $2, %cx
2:	hlt
	loop 2b

	movw $msg_drive, %si
	call com_puts
	movb drive, %al
	call com_hex8
	movw $msg_crlf, %si
	call com_puts

	cmpb $0xe0, drive
	jae read_cd

	/* A disk: LBA 1, one 512-byte sector, to 0x7E00 where it is linked. */
	movw $1, dap_lba
	call disk_read
	jc fail_read
	movw $expect, %si
	movw $marker, %di
	movw $16, %cx
	repe cmpsb
	jne fail_data
	movw $msg_sector, %si
	call com_puts
	jmp sector1

read_cd:
	/* A CD (2 KiB sectors): the ISO 9660 primary volume descriptor, LBA 16,
	 * to 0x8000; bytes 1-5 are "CD001". */
	movw $16, dap_lba
	movw $0x8000, dap_buf
	call disk_read
	jc fail_read
	movw $cd001, %si
	movw $0x8001, %di
	movw $5, %cx
	repe cmpsb
	jne fail_data
	movw $msg_cd, %si
	call com_puts
	jmp sector1

fail_read:
	movw $msg_fail_read, %si
	jmp fail
fail_data:
	movw $msg_fail_data, %si
fail:	call com_puts
halt:	hlt
	jmp halt

/* int 13h AH=42h (EDD extended read) with the packet at dap; CF on error. */
disk_read:
	movb $0x42, %ah
disk_io:
	movb drive, %dl
	movw $dap, %si
	int $0x13
	ret

/* The NUL-terminated string at DS:SI through int 10h AH=0Eh. */
bios_puts:
	lodsb
	testb %al, %al
	jz 1f
	movb $0x0e, %ah
	movw $0x0007, %bx
	int $0x10
	jmp bios_puts
1:	ret

/* The NUL-terminated string at DS:SI straight to COM1's THR (the firmware
 * left the UART set up; the FIFO takes a short line). */
com_puts:
	movw $0x3f8, %dx
1:	lodsb
	testb %al, %al
	jz 2f
	outb %al, %dx
	jmp 1b
2:	ret

/* AL as two hex digits on COM1. */
com_hex8:
	movw $0x3f8, %dx
	movb %al, %ah
	shrb $4, %al
	call 1f
	movb %ah, %al
	andb $0x0f, %al
1:	addb $'0', %al
	cmpb $'9', %al
	jbe 2f
	addb $('a' - '0' - 10), %al
2:	outb %al, %dx
	ret

drive:	.byte 0
	.balign 4
dap:	.byte 16, 0
	.word 1                  /* sectors */
dap_buf:
	.word 0x7e00, 0          /* buffer 0000:7E00 */
dap_lba:
	.long 0, 0

msg_int10:	.asciz "bootsect: int 10h teletype works\r\n"
msg_drive:	.asciz "bootsect: booted from drive 0x"
msg_crlf:	.asciz "\r\n"
msg_sector:	.ascii "bootsect: int 13h read sector 1: "
expect:	.asciz "KESTREL-SECTOR-1\r\n"    /* what sector 1 must start with */
msg_cd:	.ascii "bootsect: int 13h read the volume descriptor: "
cd001:	.asciz "CD001\r\n"
msg_fail_read:	.asciz "bootsect: FAIL int 13h read\r\n"
msg_fail_data:	.asciz "bootsect: FAIL wrong data\r\n"

	.org 510
	.byte 0x55, 0xaa

/* ---- sector 1, at 0x7E00 once read (or loaded with a CD's 2 KiB) ---- */
marker:	.ascii "KESTREL-SECTOR-1"
mode:	.byte 0                  /* 1 0xCF9, 2 keyboard controller, 3 triple fault */
resets:	.byte 0

sector1:
	cmpb $0, resets
	je 1f
	movw $msg_after, %si
	call com_puts
	movb resets, %al
	call com_hex8
	movw $msg_resets, %si
	call com_puts
1:	movb mode, %bl
	cmpb $0xe0, drive
	jae poweroff
	cmpb $4, %bl
	je keywait
	testb %bl, %bl
	jnz reset

poweroff:
	movw $msg_done, %si
	call com_puts
	movw $0x604, %dx
	movw $0x2000, %ax
	outw %ax, %dx
	jmp halt

/* Write this sector back with the mode cleared and the reset counted, then
 * reset the machine the way mode asks. */
reset:
	movb $0, mode
	incb resets
	movw $1, dap_lba
	movw $0x4300, %ax        /* EDD extended write, no verify */
	call disk_io
	jc fail_write
	movw $msg_reset, %si
	call com_puts
	cmpb $1, %bl
	jne 1f
	movw $msg_cf9, %si
	call com_puts
	movw $0xcf9, %dx
	movb $0x06, %al          /* reset CPU, hard reset */
	outb %al, %dx
	jmp halt
1:	cmpb $2, %bl
	jne 2f
	movw $msg_kbc, %si
	call com_puts
	movb $0xfe, %al          /* pulse the reset line */
	outb %al, $0x64
	jmp halt
2:	movw $msg_triple, %si
	call com_puts
	/* An exception with an empty IDT in protected mode: #UD, then #GP and
	 * #DF cannot be delivered either: shutdown. (In real mode the limit
	 * is not checked by every implementation: KVM's emulator reads the
	 * IVT entry regardless.) */
	cli
	lidt null_idt
	movl %cr0, %eax
	orb $1, %al
	movl %eax, %cr0
	ud2
	jmp halt

keywait:
	movw $msg_wait, %si
	call com_puts
	xorb %ah, %ah            /* int 16h AH=0: wait for a keystroke */
	int $0x16
	movb %ah, %bl
	movw $msg_key, %si
	call com_puts
	movb %bl, %al
	call com_hex8
	movw $msg_crlf, %si
	call com_puts
	jmp poweroff

fail_write:
	movw $msg_fail_write, %si
	jmp fail

null_idt:
	.word 0
	.long 0
msg_done:	.asciz "bootsect: done\r\n"
msg_after:	.asciz "bootsect: after "
msg_resets:	.asciz " reset(s)\r\n"
msg_reset:	.asciz "bootsect: reset through "
msg_cf9:	.asciz "0xcf9\r\n"
msg_kbc:	.asciz "kbc\r\n"
msg_triple:	.asciz "triple fault\r\n"
msg_fail_write:	.asciz "bootsect: FAIL int 13h write\r\n"
msg_wait:	.asciz "bootsect: waiting for a key\r\n"
msg_key:	.asciz "bootsect: key 0x"

	.org 1024

	.section .note.GNU-stack, "", @progbits
