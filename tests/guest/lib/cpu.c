/* CPU start-up in ring 0 (TSS, IDT, drop to ring 3), the exception
 * handler, and the ring-3 entry that clears .bss and calls main().
 *
 * Ring 0 code here is deliberately short: on the PVM test hosts every
 * ring-0 instruction is emulated. */
#include "guest.h"

struct tss64 {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

/* SDM vol. 3 6.14.1: 64-bit IDT gate descriptor. */
struct idt_gate {
	uint16_t offset_lo, selector;
	uint8_t ist, type_attr;
	uint16_t offset_mid;
	uint32_t offset_hi, reserved;
} __attribute__((packed));

struct desc_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

/* What isr_common in boot.S leaves on the ring-0 stack. */
struct trap_frame {
	uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

#define IDT_GATE_INTR	0x8e /* present, DPL 0, 64-bit interrupt gate */
#define IDT_GATE_USER	0xee /* same with DPL 3: reachable by int n from ring 3 */
#define TSS_AVAILABLE	0x89 /* present, 64-bit TSS (available) */
#define RFLAGS_RESERVED (1u << 1)
#define RFLAGS_IOPL3	(3u << 12)

/* Written in ring 0 before the BSP clears .bss in ring 3: keep out of .bss. */
#define PERSIST __attribute__((section(".data.persist")))
/* Each TSS is followed by an all-zero I/O permission bitmap (SDM vol. 1
 * 19.5.2) covering every port: ring 3 may then use in/out whatever IOPL the
 * CPU honours. IOPL 3 alone is not enough on every KVM: the PVM backend keeps
 * the guest's ring 3 at IOPL 0 but does consult the TSS bitmap. In .stack,
 * which the loader zeroes, so the 8 KiB per CPU costs nothing in the image. */
struct tss_io {
	struct tss64 tss;
	uint8_t iomap[65536 / 8];
} __attribute__((packed));
static struct tss_io cpu_tss[GUEST_MAX_CPUS] __attribute__((section(".stack")));
static struct idt_gate idt[IDT_VECTORS] PERSIST;
static uint32_t cpu_apic_id[GUEST_MAX_CPUS] PERSIST;

extern uint64_t gdt[];
extern char kstacks[], ustacks[], isr_stubs[];
extern char __bss_start[], __bss_end[];

void cpu_enter(uint32_t idx) __attribute__((noreturn, used));
void trap_handler(const struct trap_frame *f) __attribute__((noreturn, used));

static void idt_build(void)
{
	for (unsigned v = 0; v < IDT_VECTORS; v++) {
		uint64_t off = (uint64_t)(uintptr_t)isr_stubs + 16 * v;
		struct idt_gate *g = &idt[v];

		g->offset_lo = (uint16_t)off;
		g->selector = SEL_KCODE;
		g->ist = 0;
		g->type_attr = v == VEC_PARK ? IDT_GATE_USER : IDT_GATE_INTR;
		g->offset_mid = (uint16_t)(off >> 16);
		g->offset_hi = (uint32_t)(off >> 32);
		g->reserved = 0;
	}
}

/* SDM vol. 3 8.2.3: 16-byte TSS descriptor in long mode. */
static void tss_install(uint32_t idx)
{
	struct tss64 *t = &cpu_tss[idx].tss;
	uint64_t base = (uint64_t)(uintptr_t)t;
	uint64_t limit = sizeof(cpu_tss[idx]) - 1;
	unsigned slot = (SEL_TSS0 >> 3) + 2 * idx;

	/* The other fields are zero from the loader (.stack); no memset,
	 * which would cost ~400 emulated instructions here. */
	t->rsp[0] = (uint64_t)(uintptr_t)kstacks + ((uint64_t)(idx + 1) << GUEST_KSTACK_SHIFT);
	t->iomap_base = sizeof(*t); /* the zeroed bitmap right after it */
	gdt[slot] = (limit & 0xffff) | ((base & 0xffffff) << 16) | ((uint64_t)TSS_AVAILABLE << 40) |
		    (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[slot + 1] = base >> 32;
}

static void __attribute__((noreturn)) user_start_bsp(uint32_t idx);
static void __attribute__((noreturn)) user_start_ap(uint32_t idx);

static void __attribute__((noreturn)) enter_user(void (*entry)(uint32_t), uint32_t idx)
{
	/* -8: a function entry expects rsp + 8 to be 16-byte aligned. */
	uint64_t usp =
		(uint64_t)(uintptr_t)ustacks + ((uint64_t)(idx + 1) << GUEST_USTACK_SHIFT) - 8;

	__asm__ volatile(
		"pushq %[ss]\n\t"
		"pushq %[sp]\n\t"
		"pushq %[fl]\n\t"
		"pushq %[cs]\n\t"
		"pushq %[ip]\n\t"
		"iretq"
		:
		: [ss] "i"(SEL_UDATA | 3), [sp] "r"(usp), [fl] "i"(RFLAGS_IOPL3 | RFLAGS_RESERVED),
		  [cs] "i"(SEL_UCODE | 3), [ip] "r"(entry), "D"(idx)
		: "memory");
	__builtin_unreachable();
}

/* Ring 0, called from boot.S on every CPU with its index. IF stays 0 in
 * ring 3: nothing here expects interrupts, and the PIC left by the BIOS
 * would deliver IRQ0 on exception vector 8. */
void cpu_enter(uint32_t idx)
{
	struct desc_ptr idtr = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };
	uint16_t tr = SEL_TSS0 + 16 * idx;

	if (idx == 0)
		idt_build();
	tss_install(idx);
	__asm__ volatile("ltr %0" : : "r"(tr));
	__asm__ volatile("lidt %0" : : "m"(idtr));
	cpu_apic_id[idx] = cpuid(1, 0).ebx >> 24;
	enter_user(idx == 0 ? user_start_bsp : user_start_ap, idx);
}

static const char *const trap_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS",
	"#NP", "#SS", "#GP", "#PF", "?15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
	"?22", "?23", "?24", "?25", "?26", "?27", "#HV", "#VC", "#SX", "?31",
};

/* Ring 0: any exception or stray interrupt is a failed test. */
void trap_handler(const struct trap_frame *f)
{
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	gprintf("FAIL: exception %lu (%s) error %#lx at rip %#lx cs %#lx rsp %#lx cr2 %#lx\n",
		f->vector, f->vector < 32 ? trap_names[f->vector] : "irq", f->error, f->rip, f->cs,
		f->rsp, cr2);
	gprintf("RESULT: FAIL\n");
	guest_exit(GUEST_EXIT_EXCEPTION + (uint32_t)(f->vector & 0x3f));
}

static void __attribute__((noreturn)) user_start_bsp(uint32_t idx)
{
	memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
	serial_init();
	guest_exit((uint32_t)main());
}

static void __attribute__((noreturn)) user_start_ap(uint32_t idx)
{
	ap_main(idx);
	guest_park();
}

__attribute__((weak)) void ap_main(unsigned idx)
{
}

unsigned cpu_cpl(void)
{
	uint16_t cs;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	return cs & 3;
}

unsigned cpu_iopl(void)
{
	uint64_t fl;

	__asm__ volatile("pushfq; popq %0" : "=r"(fl));
	return (fl >> 12) & 3;
}

uint32_t cpu_boot_apic_id(unsigned idx)
{
	return idx < GUEST_MAX_CPUS ? cpu_apic_id[idx] : 0;
}
