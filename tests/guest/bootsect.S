/* bootsect.bin: a boot sector for firmware-boot tests (1 KiB: the boot
 * sector, then "sector 1" holding a marker). The firmware loads sector 0 at
 * 0x7C00 and jumps to it in real mode with DL = the boot drive. It checks
 * the BIOS services an OS loader needs and says so on COM1, then powers off
 * through the ACPI PM block as kestrel and QEMU's PIIX4 both have it
 * (PM1a_CNT 0x604: SLP_EN with SLP_TYP 0, S5):
 *
 *   bootsect: int 10h teletype works       through the BIOS (SeaBIOS's sercon
 *                                          copies it to COM1)
 *   bootsect: booted from drive 0xNN       straight to COM1
 *   bootsect: int 13h read sector 1: KESTREL-SECTOR-1     (a disk, DL < 0xE0)
 *   bootsect: int 13h read the volume descriptor: CD001   (a CD, DL >= 0xE0,
 *                                          El Torito no-emulation)
 *   bootsect: done
 *
 * or "bootsect: FAIL ..." for a service that failed, and then it halts. For
 * a CD, make the image with a load size of 4 (2 KiB, both sectors). */
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

	/* A disk: LBA 1, one 512-byte sector, at 0x8000. */
	movw $1, dap_count
	movw $1, dap_lba
	call disk_read
	jc fail_read
	movw $expect, %si
	movw $0x8000, %di
	movw $marker_len, %cx
	repe cmpsb
	jne fail_data
	movw $msg_sector, %si
	call com_puts
	jmp done

read_cd:
	/* A CD (2 KiB sectors): the ISO 9660 primary volume descriptor, LBA 16,
	 * whose bytes 1-5 are "CD001". */
	movw $1, dap_count
	movw $16, dap_lba
	call disk_read
	jc fail_read
	movw $cd001, %si
	movw $0x8001, %di
	movw $5, %cx
	repe cmpsb
	jne fail_data
	movw $msg_cd, %si
	call com_puts

done:
	movw $msg_done, %si
	call com_puts
	movw $0x604, %dx
	movw $0x2000, %ax
	outw %ax, %dx
halt:
	hlt
	jmp halt

fail_read:
	movw $msg_fail_read, %si
	call com_puts
	jmp halt
fail_data:
	movw $msg_fail_data, %si
	call com_puts
	jmp halt

/* int 13h AH=42h (EDD extended read) with the packet at dap; CF on error. */
disk_read:
	movb $0x42, %ah
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
dap_count:
	.word 1
	.word 0x8000, 0          /* buffer 0000:8000 */
dap_lba:
	.long 0, 0

msg_int10:	.asciz "bootsect: int 10h teletype works\r\n"
msg_drive:	.asciz "bootsect: booted from drive 0x"
msg_crlf:	.asciz "\r\n"
msg_sector:	.ascii "bootsect: int 13h read sector 1: "
expect:	.asciz "KESTREL-SECTOR-1\r\n"    /* what sector 1 must hold */
msg_cd:	.ascii "bootsect: int 13h read the volume descriptor: "
cd001:	.asciz "CD001\r\n"
msg_done:	.asciz "bootsect: done\r\n"
msg_fail_read:	.asciz "bootsect: FAIL int 13h read\r\n"
msg_fail_data:	.asciz "bootsect: FAIL wrong data\r\n"

	.org 510
	.byte 0x55, 0xaa

/* Sector 1 (not loaded by the firmware: read with int 13h). */
marker:	.ascii "KESTREL-SECTOR-1"
	.set marker_len, 16
	.org 1024

	.section .note.GNU-stack, "", @progbits
