/* Kernel loaders: Linux bzImage (64- and 32-bit entries), ELF vmlinux via the
 * Xen PVH entry, and Multiboot v1. Each writes the image and its boot
 * structures into guest RAM and says how to start the boot vCPU. */
#ifndef KESTREL_BOOT_H
#define KESTREL_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "kestrel/config.h"
#include "kestrel/guest_mem.h"
#include "kestrel/vm.h"

#define E820_RAM      1
#define E820_RESERVED 2
#define E820_MAX      16

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

struct boot_input {
	const uint8_t *kernel;
	size_t kernel_len;
	const uint8_t *initrd; /* NULL if none */
	size_t initrd_len;
	const char *cmdline;   /* never NULL */
	enum boot_entry entry; /* bzImage only: auto, 64-bit or 32-bit entry */
	uint64_t rsdp;	       /* guest-physical address of the ACPI RSDP */
	const struct e820_entry *e820;
	int ne820;
};

enum boot_format { BOOT_FMT_UNKNOWN, BOOT_FMT_BZIMAGE, BOOT_FMT_PVH, BOOT_FMT_MULTIBOOT };

/* The board's memory map for this RAM layout. Returns the entry count. */
int boot_e820(const struct guest_mem *gm, struct e820_entry *out, int max);
enum boot_format boot_detect(const uint8_t *k, size_t len);
const char *boot_format_name(enum boot_format f);
/* Load and fill *cpu. On error writes one line to err and returns -errno. */
int boot_load(const struct guest_mem *gm, const struct boot_input *in, struct boot_cpu_state *cpu,
	      char *err, size_t errlen) WARN_UNUSED;

/* Shared by the loaders (boot.c). */
int boot_write_gdt(const struct guest_mem *gm, int code_bits) WARN_UNUSED;
int boot_write_page_tables(const struct guest_mem *gm, uint64_t *cr3) WARN_UNUSED;
/* Highest address below `limit` where `len` bytes fit in RAM above `floor`,
 * aligned to `align`; 0 if none. Used for initrds and modules. */
uint64_t boot_place_high(const struct guest_mem *gm, uint64_t len, uint64_t floor, uint64_t limit,
			 uint64_t align);

/* Whether a bzImage's header offers the 64-bit entry (XLF_KERNEL_64). */
bool boot_bzimage_has_entry64(const uint8_t *k, size_t len);
int boot_load_bzimage(const struct guest_mem *gm, const struct boot_input *in,
		      struct boot_cpu_state *cpu, char *err, size_t errlen) WARN_UNUSED;
int boot_load_pvh(const struct guest_mem *gm, const struct boot_input *in,
		  struct boot_cpu_state *cpu, char *err, size_t errlen) WARN_UNUSED;
int boot_load_multiboot(const struct guest_mem *gm, const struct boot_input *in,
			struct boot_cpu_state *cpu, char *err, size_t errlen) WARN_UNUSED;
/* PVH entry point from the ELF's Xen note; 0 if found (entry may be NULL), -ENOENT if not. */
int boot_pvh_entry(const uint8_t *k, size_t len, uint64_t *entry);
/* ELF64/ELF32 PT_LOAD loading shared by PVH and Multiboot ELF kernels. */
int boot_load_elf_segments(const struct guest_mem *gm, const uint8_t *k, size_t len,
			   uint64_t *entry, uint64_t *end, char *err, size_t errlen) WARN_UNUSED;

#endif
