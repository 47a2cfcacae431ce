/* The payload library: port I/O, MMIO, serial console, checks and exit,
 * PCI conf1, ACPI tables, Multiboot info, PM-timer delays.
 *
 * Everything here runs in ring 3 with IOPL=3 (see boot.S), except the few
 * functions in cpu.c marked "ring 0". Only the BSP prints. */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/board.h"
#include "layout.h"

/* Exit codes written to the debug-exit port; QEMU and kestrel exit with
 * (code << 1) | 1. Keep below 128 so the status survives as 8 bits. */
#define GUEST_EXIT_PASS	       0
#define GUEST_EXIT_FAIL	       1 /* generic */
#define GUEST_EXIT_HELLO       2
#define GUEST_EXIT_UART	       3
#define GUEST_EXIT_PCI	       4
#define GUEST_EXIT_ACPI	       5
#define GUEST_EXIT_ACPI_NO_OFF 6 /* S5 write returned */
#define GUEST_EXIT_SMP	       7
#define GUEST_EXIT_VSCSI       8
#define GUEST_EXIT_VNET	       9
#define GUEST_EXIT_MEM	       10
#define GUEST_EXIT_VGA	       11
#define GUEST_EXIT_IDE	       12
#define GUEST_EXIT_TULIP       13
#define GUEST_EXIT_EXCEPTION   0x40 /* + vector */

/* ---- port I/O and MMIO ------------------------------------------------ */
static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* A pointer to a physical address (identity mapped below 4 GiB). The empty
 * asm hides the constant from gcc, which otherwise flags low addresses as
 * null-pointer arithmetic. */
static inline void *phys_ptr(uint64_t addr)
{
	__asm__("" : "+r"(addr));
	return (void *)(uintptr_t)addr;
}

static inline uint32_t mmio_read32(uint64_t addr)
{
	return *(volatile uint32_t *)(uintptr_t)addr;
}

static inline void mmio_write32(uint64_t addr, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)addr = v;
}

static inline uint8_t mmio_read8(uint64_t addr)
{
	return *(volatile uint8_t *)(uintptr_t)addr;
}

static inline void mmio_write8(uint64_t addr, uint8_t v)
{
	*(volatile uint8_t *)(uintptr_t)addr = v;
}

static inline uint16_t mmio_read16(uint64_t addr)
{
	return *(volatile uint16_t *)(uintptr_t)addr;
}

static inline void mmio_write16(uint64_t addr, uint16_t v)
{
	*(volatile uint16_t *)(uintptr_t)addr = v;
}

/* A full fence: ring updates must be visible before the notify write. */
static inline void mb(void)
{
	__asm__ volatile("mfence" ::: "memory");
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

static inline void barrier(void)
{
	__asm__ volatile("" ::: "memory");
}

struct cpuid_regs {
	uint32_t eax, ebx, ecx, edx;
};

static inline struct cpuid_regs cpuid(uint32_t leaf, uint32_t subleaf)
{
	struct cpuid_regs r;
	__asm__ volatile("cpuid"
			 : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx)
			 : "a"(leaf), "c"(subleaf));
	return r;
}

/* ---- string.c --------------------------------------------------------- */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strnlen(const char *s, size_t max);

/* ---- serial.c: COM1 console, checks, exit ----------------------------- */
void serial_init(void);
void serial_putc(char c);
void gprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void gvprintf(const char *fmt, va_list ap);
/* Print "PASS: msg" or "FAIL: msg"; returns ok. */
bool check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
unsigned check_failures(void);
/* Print "RESULT: PASS|FAIL"; returns GUEST_EXIT_PASS or fail_code. */
int check_result(int fail_code);
/* Debug-exit: never returns (parks the CPU if the VMM ignores the port). */
void guest_exit(uint32_t code) __attribute__((noreturn));

/* ---- cpu.c ------------------------------------------------------------ */
/* cli; hlt in ring 0 through a recognised ud2 (boot.S): a CPU that has finished. */
void guest_park(void) __attribute__((noreturn));
/* CPL from CS and IOPL from RFLAGS of the caller. */
unsigned cpu_cpl(void);
unsigned cpu_iopl(void);
/* Initial APIC ID from CPUID leaf 1 EBX[31:24], read in ring 0 at start-up
 * (on the PVM test host ring-3 CPUID is the host's own). */
uint32_t cpu_boot_apic_id(unsigned idx);
extern volatile uint32_t ap_boot_index; /* boot.S: index the next AP takes */
extern const char ap_trampoline_start[], ap_trampoline_end[];

/* The payload's entry points, called in ring 3. */
int main(void);
void ap_main(unsigned idx); /* weak default parks */

/* ---- multiboot.c ------------------------------------------------------ */
#define MB_INFO_MEM	(1u << 0)
#define MB_INFO_CMDLINE (1u << 2)
#define MB_INFO_MODS	(1u << 3)
#define MB_INFO_MMAP	(1u << 6)
#define MB_INFO_DRIVES	(1u << 7)
#define MB_INFO_LOADER	(1u << 9)

struct mb_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
	uint32_t mods_count, mods_addr, syms[4], mmap_length, mmap_addr;
	uint32_t drives_length, drives_addr, config_table, boot_loader_name;
} __attribute__((packed));

struct mb_mmap_entry {
	uint32_t size; /* of the rest of the entry */
	uint64_t addr, len;
	uint32_t type; /* 1 = available RAM */
} __attribute__((packed));

extern uint32_t boot_mb_magic, boot_mb_info; /* saved by boot.S */
const struct mb_info *mb_info(void);	     /* NULL if the magic is wrong */
/* Command line, NUL-terminated and at most MB_CMDLINE_MAX bytes, or "". */
#define MB_CMDLINE_MAX 4096
const char *mb_cmdline(void);
/* Value of "key=N" on the command line (decimal or 0x hex), or dflt. */
uint64_t mb_cmdline_uint(const char *key, uint64_t dflt);
/* Whether [addr, addr+len) overlaps anything the boot loader handed us. */
bool mb_range_used(uint64_t addr, uint64_t len);
/* Whether [addr, addr+len) is inside one available mmap entry (true if no mmap). */
bool mb_range_available(uint64_t addr, uint64_t len);

/* ---- pci.c: configuration mechanism #1 -------------------------------- */
uint32_t pci_conf_read32(unsigned bus, unsigned dev, unsigned fn, unsigned off);
uint16_t pci_conf_read16(unsigned bus, unsigned dev, unsigned fn, unsigned off);
uint8_t pci_conf_read8(unsigned bus, unsigned dev, unsigned fn, unsigned off);
void pci_conf_write32(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint32_t v);
void pci_conf_write16(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint16_t v);
void pci_conf_write8(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint8_t v);
uint32_t pci_conf_addr(unsigned bus, unsigned dev, unsigned fn, unsigned off);

/* ---- acpi.c ----------------------------------------------------------- */
struct acpi_rsdp {
	char signature[8];
	uint8_t checksum;
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_addr;
	uint32_t length; /* revision >= 2 from here */
	uint64_t xsdt_addr;
	uint8_t ext_checksum;
	uint8_t reserved[3];
} __attribute__((packed));

struct acpi_sdt {
	char signature[4];
	uint32_t length;
	uint8_t revision, checksum;
	char oem_id[6], oem_table_id[8];
	uint32_t oem_revision, creator_id, creator_revision;
} __attribute__((packed));

#define ACPI_TABLE_MAX (1u << 20) /* refuse anything longer: hostile length */

bool acpi_checksum_ok(const void *p, size_t len);
/* Scans the EBDA and 0xE0000-0xFFFFF; returns a checksum-valid RSDP or NULL. */
const struct acpi_rsdp *acpi_find_rsdp(void);
/* The root table (XSDT if usable, else RSDT) or NULL. */
const struct acpi_sdt *acpi_root(void);
/* Validated table at a physical address (length sane, below 4 GiB). */
const struct acpi_sdt *acpi_table_at(uint64_t addr);
/* First table with the signature listed in the root table, checksum not
 * required (callers check and report it). "DSDT" goes through the FADT. */
const struct acpi_sdt *acpi_find_table(const char sig[4]);
/* Little-endian field read at a byte offset; 0 if past the table end. */
uint64_t acpi_field(const struct acpi_sdt *t, unsigned off, unsigned size);

/* FADT offsets (ACPI 6.4 table 5.9). */
#define FADT_DSDT	   40
#define FADT_SMI_CMD	   48
#define FADT_PM1A_EVT_BLK  56
#define FADT_PM1A_CNT_BLK  64
#define FADT_PM_TMR_BLK	   76
#define FADT_PM1_CNT_LEN   89
#define FADT_PM_TMR_LEN	   91
#define FADT_FLAGS	   112
#define FADT_X_DSDT	   140
#define FADT_X_PM1A_CNT	   172
#define FADT_X_PM_TMR	   208
#define FADT_F_TMR_VAL_EXT (1u << 8)

/* ---- pmtimer.c: delays and deadlines ---------------------------------- */
/* Finds the PM timer through the FADT; false if there is none (then delays
 * fall back to counting port-0x80 reads as ~1 us each). */
bool pmtmr_init(void);
uint32_t pmtmr_port(void);
void udelay(uint64_t us);
struct deadline {
	uint64_t left_ticks;
	uint32_t last;
};
void deadline_start(struct deadline *d, uint64_t us);
bool deadline_expired(struct deadline *d);
/* Elapsed time on the PM timer (0 without one); read it at least every
 * ~4 s (24-bit counter) for a longer total. */
struct stopwatch {
	uint64_t ticks;
	uint32_t last;
};
void stopwatch_start(struct stopwatch *w);
uint64_t stopwatch_us(struct stopwatch *w);

#endif
