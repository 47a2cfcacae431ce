/* What every loader shares: the e820 map, the boot GDT, identity page tables,
 * placement of initrds/modules, ELF segment loading, and format detection. */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kestrel/board.h"
#include "kestrel/boot.h"

#define MULTIBOOT_MAGIC		 0x1BADB002u
#define MULTIBOOT_SEARCH	 8192
#define XEN_ELFNOTE_PHYS32_ENTRY 18

int boot_e820(const struct guest_mem *gm, struct e820_entry *out, int max)
{
	int n = 0;
	uint64_t low_end = gm->ram_low;

#define E820_ADD(a, s, t)                                                \
	do {                                                             \
		if (n < max)                                             \
			out[n++] = (struct e820_entry){ (a), (s), (t) }; \
	} while (0)
	E820_ADD(0, BOARD_EBDA_START, E820_RAM);
	E820_ADD(BOARD_EBDA_START, 0xa0000 - BOARD_EBDA_START, E820_RESERVED);
	/* The BIOS area holds our ACPI tables; reserved so the guest keeps them. */
	E820_ADD(BOARD_ACPI_BASE, 0x100000 - BOARD_ACPI_BASE, E820_RESERVED);
	E820_ADD(0x100000, low_end - 0x100000, E820_RAM);
	if (gm->ram_high)
		E820_ADD(GM_HIGHMEM_BASE, gm->ram_high, E820_RAM);
#undef E820_ADD
	return n;
}

/* Entries: 0 null, 0x08 64-bit code, 0x10 boot code (per mode), 0x18 data,
 * 0x20 TSS. Linux's boot protocol requires __BOOT_CS 0x10 and __BOOT_DS 0x18. */
int boot_write_gdt(const struct guest_mem *gm, int code_bits)
{
	uint64_t gdt[5] = {
		0,
		0x00af9b000000ffffULL, /* 64-bit code */
		code_bits == 64 ? 0x00af9b000000ffffULL
				: 0x00cf9b000000ffffULL, /* 32-bit code, 4 GiB flat */
		0x00cf93000000ffffULL,			 /* data, 4 GiB flat */
		0x00008b0000000067ULL,			 /* busy 32-bit TSS at 0 */
	};
	return gm_write(gm, BOARD_GDT_ADDR, gdt, sizeof(gdt));
}

/* Identity-map the first 4 GiB with 2 MiB pages: PML4 -> one PDPT -> 4 PDs. */
int boot_write_page_tables(const struct guest_mem *gm, uint64_t *cr3)
{
	uint64_t pml4 = BOARD_PML4_ADDR, pdpt = pml4 + 0x1000, pd = pml4 + 0x2000;
	uint64_t *p4 = gm_ptr(gm, pml4, 0x1000), *p3 = gm_ptr(gm, pdpt, 0x1000);
	uint64_t *p2 = gm_ptr(gm, pd, 4 * 0x1000);

	if (!p4 || !p3 || !p2)
		return -EFAULT;
	memset(p4, 0, 0x1000);
	memset(p3, 0, 0x1000);
	p4[0] = pdpt | 0x3; /* present, writable */
	for (int i = 0; i < 4; i++)
		p3[i] = (pd + i * 0x1000) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		p2[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
	*cr3 = pml4;
	return 0;
}

uint64_t boot_place_high(const struct guest_mem *gm, uint64_t len, uint64_t floor, uint64_t limit,
			 uint64_t align)
{
	/* The RAM the e820 map gives the OS, highest first; nothing goes below
	 * 1 MiB, where the holes and firmware areas are. */
	const uint64_t ram[2][2] = {
		{ BOARD_BIOS_SEGMENT_END, gm->ram_low },
		{ GM_HIGHMEM_BASE, GM_HIGHMEM_BASE + gm->ram_high },
	};

	for (int i = 1; i >= 0; i--) {
		uint64_t lo = MAX(ram[i][0], floor);
		uint64_t hi = MIN(ram[i][1], limit);
		uint64_t at;

		if (hi <= lo || hi - lo < len)
			continue;
		at = (hi - len) & ~(align - 1);
		if (at >= lo)
			return at;
	}
	return 0;
}

int boot_load_elf_segments(const struct guest_mem *gm, const uint8_t *k, size_t len,
			   uint64_t *entry, uint64_t *end, char *err, size_t errlen)
{
	bool is64 = len >= EI_NIDENT && k[EI_CLASS] == ELFCLASS64;
	size_t ehsz = is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
	size_t phsz = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	uint64_t phoff, phnum, phentsize;

	*end = 0;
	if (len < ehsz) {
		snprintf(err, errlen, "ELF header truncated");
		return -ENOEXEC;
	}
	if (is64) {
		const Elf64_Ehdr *eh = (const void *)k;
		phoff = eh->e_phoff, phnum = eh->e_phnum, phentsize = eh->e_phentsize,
		*entry = eh->e_entry;
	} else {
		const Elf32_Ehdr *eh = (const void *)k;
		phoff = eh->e_phoff, phnum = eh->e_phnum, phentsize = eh->e_phentsize,
		*entry = eh->e_entry;
	}
	if (phentsize != phsz || phoff > len || phnum * phsz > len - phoff) {
		snprintf(err, errlen, "ELF program headers out of the file (e_phoff %#llx)",
			 (unsigned long long)phoff);
		return -ENOEXEC;
	}
	for (uint64_t i = 0; i < phnum; i++) {
		const uint8_t *ph = k + phoff + i * phsz;
		uint64_t type, off, paddr, filesz, memsz;
		uint8_t *dst;

		if (is64) {
			const Elf64_Phdr *p = (const void *)ph;
			type = p->p_type, off = p->p_offset, paddr = p->p_paddr,
			filesz = p->p_filesz, memsz = p->p_memsz;
		} else {
			const Elf32_Phdr *p = (const void *)ph;
			type = p->p_type, off = p->p_offset, paddr = p->p_paddr,
			filesz = p->p_filesz, memsz = p->p_memsz;
		}
		if (type != PT_LOAD)
			continue;
		if (off > len || filesz > len - off || filesz > memsz) {
			snprintf(err, errlen, "ELF segment %llu lies outside the file",
				 (unsigned long long)i);
			return -ENOEXEC;
		}
		dst = gm_ptr(gm, paddr, memsz);
		if (!dst) {
			snprintf(err, errlen,
				 "ELF segment %llu at %#llx+%#llx does not fit in guest RAM",
				 (unsigned long long)i, (unsigned long long)paddr,
				 (unsigned long long)memsz);
			return -ENOMEM;
		}
		memcpy(dst, k + off, filesz);
		memset(dst + filesz, 0, memsz - filesz);
		*end = MAX(*end, paddr + memsz);
	}
	if (!*end) {
		snprintf(err, errlen, "ELF file has no loadable segment");
		return -ENOEXEC;
	}
	return 0;
}

static bool is_bzimage(const uint8_t *k, size_t len)
{
	return len >= 0x260 && k[0x1fe] == 0x55 && k[0x1ff] == 0xaa &&
	       !memcmp(k + 0x202, "HdrS", 4);
}

static bool is_elf(const uint8_t *k, size_t len)
{
	return len >= EI_NIDENT && !memcmp(k, ELFMAG, SELFMAG) &&
	       (k[EI_CLASS] == ELFCLASS64 || k[EI_CLASS] == ELFCLASS32) &&
	       k[EI_DATA] == ELFDATA2LSB;
}

static bool is_multiboot(const uint8_t *k, size_t len)
{
	for (size_t off = 0; off + 12 <= MIN(len, MULTIBOOT_SEARCH); off += 4) {
		uint32_t h[3];

		memcpy(h, k + off, sizeof(h));
		if (h[0] == MULTIBOOT_MAGIC && h[0] + h[1] + h[2] == 0)
			return true;
	}
	return false;
}

enum boot_format boot_detect(const uint8_t *k, size_t len)
{
	if (is_bzimage(k, len))
		return BOOT_FMT_BZIMAGE;
	if (is_elf(k, len) && boot_pvh_entry(k, len, NULL) == 0)
		return BOOT_FMT_PVH;
	if (is_multiboot(k, len))
		return BOOT_FMT_MULTIBOOT;
	return BOOT_FMT_UNKNOWN;
}

const char *boot_format_name(enum boot_format f)
{
	switch (f) {
	case BOOT_FMT_BZIMAGE: return "bzImage";
	case BOOT_FMT_PVH: return "ELF (PVH entry)";
	case BOOT_FMT_MULTIBOOT: return "Multiboot";
	default: return "unknown";
	}
}

int boot_load(const struct guest_mem *gm, const struct boot_input *in, struct boot_cpu_state *cpu,
	      char *err, size_t errlen)
{
	memset(cpu, 0, sizeof(*cpu));
	switch (boot_detect(in->kernel, in->kernel_len)) {
	case BOOT_FMT_BZIMAGE: return boot_load_bzimage(gm, in, cpu, err, errlen);
	case BOOT_FMT_PVH: return boot_load_pvh(gm, in, cpu, err, errlen);
	case BOOT_FMT_MULTIBOOT: return boot_load_multiboot(gm, in, cpu, err, errlen);
	default:
		snprintf(err, errlen,
			 "not a bzImage, an ELF vmlinux with a PVH note, or a Multiboot kernel");
		return -ENOEXEC;
	}
}
