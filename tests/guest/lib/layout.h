/* Memory and descriptor layout shared by boot.S and the C runtime.
 * Included from assembly too: preprocessor definitions only. */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define GUEST_LOAD_ADDR	   0x100000 /* link and load address (Multiboot a.out kludge) */
#define GUEST_MAX_CPUS	   32
#define GUEST_KSTACK_SHIFT 12 /* 4 KiB ring-0 stack (TSS.rsp0) per CPU */
#define GUEST_USTACK_SHIFT 14 /* 16 KiB ring-3 stack per CPU */

/* GDT selectors. The TSS descriptors (16 bytes each) follow, one per CPU. */
#define SEL_KCODE	  0x08 /* 64-bit ring 0 code */
#define SEL_KDATA	  0x10 /* flat data, also valid as a 32-bit stack */
#define SEL_UDATA	  0x18 /* ring 3 data (used as 0x1b) */
#define SEL_UCODE	  0x20 /* 64-bit ring 3 code (used as 0x23) */
#define SEL_KCODE32	  0x28 /* 32-bit code for the AP trampoline */
#define SEL_TSS0	  0x30
#define GDT_FIXED_ENTRIES 6

#define IDT_VECTORS 64	 /* 0-31 exceptions, 32-63 stray interrupts */
#define VEC_PARK    0x3f /* int $0x3f from ring 3: cli; hlt forever */

#define MB_HEADER_MAGIC 0x1BADB002
#define MB_BOOT_MAGIC	0x2BADB002

#endif
