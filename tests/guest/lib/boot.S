/* Boot path: Multiboot 32-bit entry -> long mode -> cpu_enter() (ring 0 C)
 * -> iretq to ring 3 with IOPL=3. Also the AP real-mode trampoline, the
 * static page tables and GDT, and the exception stubs.
 *
 * Ring 0 is kept to a few hundred instructions: on the PVM test hosts it is
 * emulated (~1 us per instruction). The page tables are therefore built by
 * the assembler, not by a loop at run time. */
#include "layout.h"

#define CR0_PE      (1 << 0)
#define CR0_ET      (1 << 4)
#define CR0_NE      (1 << 5)
#define CR0_PG      (1 << 31)
#define CR0_NW      (1 << 29)
#define CR0_CD      (1 << 30)
#define CR4_PAE     (1 << 5)
#define MSR_EFER    0xc0000080
#define EFER_LME    (1 << 8)

/* ---- 32-bit entry (Multiboot 0.6.96 section 3.2 machine state) --------- */
	.code32
	.section .text.boot, "ax"
	.globl mb_entry
mb_entry:
	cli
	cld
	movl %eax, boot_mb_magic
	movl %ebx, boot_mb_info
	xorl %esi, %esi                 /* the BSP is CPU index 0 */
	jmp cpu_common32

/* APs arrive from ap_trampoline_start in 32-bit protected mode on
 * SEL_KCODE32; DS still holds the real-mode segment until reloaded. */
	.globl ap_entry32
ap_entry32:
	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movl ap_boot_index, %esi

cpu_common32:
	lgdt gdt_ptr                    /* 32-bit form: limit and low 4 bytes of base */
	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	/* esp = top of this CPU's ring-0 stack */
	leal 1(%esi), %eax
	shll $GUEST_KSTACK_SHIFT, %eax
	addl $kstacks, %eax
	movl %eax, %esp

	/* Long mode (SDM vol. 3 9.8.5): PAE, CR3, EFER.LME, then paging.
	 * CR4 is written whole so SMEP/SMAP stay off: ring 0 runs on User pages. */
	movl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	andl $~(CR0_CD | CR0_NW), %eax
	orl $(CR0_PG | CR0_PE | CR0_ET | CR0_NE), %eax
	movl %eax, %cr0
	ljmp $SEL_KCODE, $long64

	.code64
long64:
	movl %esp, %esp                 /* upper halves are undefined after the switch */
	movl %esi, %edi
	call cpu_enter                  /* ring 0 C; iretq's to ring 3, never returns */
1:	hlt
	jmp 1b

/* ---- AP trampoline: copied to a free page below 1 MiB --------------------
 * SIPI starts it in real mode at CS = vector << 8, IP = 0. Only
 * label differences are used for its own data, so it runs at any page. */
	.code16
	.section .text, "ax"
	.globl ap_trampoline_start, ap_trampoline_end
	.balign 16
ap_trampoline_start:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	lgdtl (ap_tramp_gdtr - ap_trampoline_start)
	movl %cr0, %eax
	orl $CR0_PE, %eax
	movl %eax, %cr0
	ljmpl $SEL_KCODE32, $ap_entry32
	.balign 8
ap_tramp_gdtr:
	.word gdt_end - gdt - 1
	.long gdt
ap_trampoline_end:

/* ---- exception and interrupt stubs ---------------------------------------
 * One 16-byte stub per vector at isr_stubs + 16 * vector; each pushes an
 * error code if the CPU did not (SDM vol. 3 table 6-1) and the vector. */
	.code64
	.balign 16
	.globl isr_stubs
isr_stubs:
	.set isr_vec, 0
	.rept IDT_VECTORS
	.balign 16
	.if (isr_vec == 8) || ((isr_vec >= 10) && (isr_vec <= 14)) || (isr_vec == 17) || (isr_vec == 21) || (isr_vec == 29) || (isr_vec == 30)
	.else
	pushq $0
	.endif
	pushq $isr_vec
	jmp isr_common
	.set isr_vec, isr_vec + 1
	.endr
	/* each stub: two 2-byte pushes and a jmp of at most 5 bytes */

isr_common:
	cmpq $VEC_PARK, (%rsp)
	je 2f
	/* #UD at guest_park's ud2: a CPU that has finished (see guest_park). */
	cmpq $6, (%rsp)
	jne 3f
	leaq guest_park_ud2(%rip), %rax
	cmpq %rax, 16(%rsp)             /* trap_frame.rip */
	je 2f
3:
	movq %rsp, %rdi                 /* struct trap_frame * */
	andq $-16, %rsp
	call trap_handler               /* prints, debug-exits */
2:	cli
1:	hlt
	jmp 1b

/* guest_park: ring 3 -> cli; hlt in ring 0, forever. Through #UD rather
 * than `int $VEC_PARK`: the PVM backend raises #UD for int n from ring 3,
 * while every KVM delivers ud2's #UD to our handler. */
	.globl guest_park
guest_park:
guest_park_ud2:
	ud2
	jmp guest_park

/* ---- data: boot info, GDT, page tables ---------------------------------- */
	.section .data, "aw"
	.balign 8
	.globl boot_mb_magic, boot_mb_info, ap_boot_index, gdt
boot_mb_magic:  .long 0
boot_mb_info:   .long 0
ap_boot_index:  .long 0

	.balign 16
gdt:
	.quad 0
	.quad 0x00af9a000000ffff        /* 0x08 ring 0 code, L=1 */
	.quad 0x00cf92000000ffff        /* 0x10 ring 0 data, 4 GiB, B=1 */
	.quad 0x00cff2000000ffff        /* 0x18 ring 3 data */
	.quad 0x00affa000000ffff        /* 0x20 ring 3 code, L=1 */
	.quad 0x00cf9a000000ffff        /* 0x28 ring 0 code, 32-bit (AP trampoline) */
	.fill 2 * GUEST_MAX_CPUS, 8, 0  /* 0x30 + 16 * i: TSS of CPU i, set by cpu_enter */
gdt_end:

	.balign 8
	.word 0, 0, 0                   /* so that gdt_ptr + 2 (the base) is 8-aligned */
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

/* Identity map of the first 4 GiB with 2 MiB pages, all User so ring 3 can
 * reach the LAPIC/IOAPIC and low memory; 3-4 GiB (PCI hole, IOAPIC, LAPIC)
 * uncached. */
#define PTE_P   0x01
#define PTE_RW  0x02
#define PTE_US  0x04
#define PTE_PWT 0x08
#define PTE_PCD 0x10
#define PTE_PS  0x80
	.balign 4096
	.globl pml4
pml4:
	.quad pdpt + (PTE_P | PTE_RW | PTE_US)
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x0000 + (PTE_P | PTE_RW | PTE_US)
	.quad pd + 0x1000 + (PTE_P | PTE_RW | PTE_US)
	.quad pd + 0x2000 + (PTE_P | PTE_RW | PTE_US)
	.quad pd + 0x3000 + (PTE_P | PTE_RW | PTE_US)
	.fill 508, 8, 0
pd:
	.set pde_addr, 0
	.rept 2048
	.if pde_addr >= 0xc0000000
	.quad pde_addr + (PTE_P | PTE_RW | PTE_US | PTE_PS | PTE_PWT | PTE_PCD)
	.else
	.quad pde_addr + (PTE_P | PTE_RW | PTE_US | PTE_PS)
	.endif
	.set pde_addr, pde_addr + 0x200000
	.endr

/* ---- stacks: reserved by the loader (bss_end_addr), never cleared -------- */
	.section .stack, "aw", @nobits
	.balign 4096
	.globl kstacks, ustacks
kstacks:
	.skip GUEST_MAX_CPUS << GUEST_KSTACK_SHIFT
ustacks:
	.skip GUEST_MAX_CPUS << GUEST_USTACK_SHIFT

	.section .note.GNU-stack, "", @progbits
