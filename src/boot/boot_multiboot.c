/* Multiboot v1 (GNU Multiboot Specification 0.6.96), as qemu -kernel loads it:
 * the a.out-kludge addresses when header flag 16 is set, otherwise ELF
 * segments; the initrd becomes module 0. Entry in flat 32-bit protected mode
 * with EAX = 0x2BADB002 and EBX = the multiboot information structure. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kestrel/board.h"
#include "kestrel/boot.h"

#define MB_HEADER_MAGIC	    0x1BADB002u
#define MB_BOOT_MAGIC	    0x2BADB002u
#define MB_SEARCH	    8192
#define MB_FLAG_AOUT_KLUDGE (1u << 16)
#define MBI_MEM		    (1u << 0)
#define MBI_CMDLINE	    (1u << 2)
#define MBI_MODS	    (1u << 3)
#define MBI_MMAP	    (1u << 6)
#define MBI_LOADER_NAME	    (1u << 9)

struct mb_header {
	uint32_t magic, flags, checksum;
	uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
};

struct mb_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;
	uint32_t drives_length, drives_addr, config_table, boot_loader_name;
};

struct mb_mmap_entry {
	uint32_t size;
	uint64_t addr, len;
	uint32_t type;
} __attribute__((packed));

struct mb_module {
	uint32_t mod_start, mod_end, string, reserved;
};

/* Guest-physical layout of what we pass, all inside the 0x7000 page. */
#define MBI_ADDR      BOARD_BOOT_PARAMS
#define MBI_MMAP_ADDR (MBI_ADDR + 0x100)
#define MBI_MODS_ADDR (MBI_ADDR + 0x400)
#define MBI_NAME_ADDR (MBI_ADDR + 0x500)

static long mb_find_header(const uint8_t *k, size_t len, struct mb_header *h)
{
	for (size_t off = 0; off + 12 <= MIN(len, MB_SEARCH); off += 4) {
		memset(h, 0, sizeof(*h));
		memcpy(h, k + off, MIN(sizeof(*h), len - off));
		if (h->magic == MB_HEADER_MAGIC && h->magic + h->flags + h->checksum == 0)
			return (long)off;
	}
	return -1;
}

/* a.out kludge: the file is loaded so that header_addr lines up with the header. */
static int mb_load_kludge(const struct guest_mem *gm, const uint8_t *k, size_t len, long hoff,
			  const struct mb_header *h, uint64_t *end, char *err, size_t errlen)
{
	uint64_t start, n, bss;
	uint8_t *dst;

	if (hoff + sizeof(*h) > len || h->header_addr < h->load_addr ||
	    h->header_addr - h->load_addr > (uint64_t)hoff) {
		snprintf(err, errlen,
			 "Multiboot header: load_addr %#x / header_addr %#x inconsistent",
			 h->load_addr, h->header_addr);
		return -ENOEXEC;
	}
	start = hoff - (h->header_addr - h->load_addr);
	n = h->load_end_addr ? (uint64_t)h->load_end_addr - h->load_addr : len - start;
	if (h->load_end_addr && h->load_end_addr < h->load_addr)
		n = UINT64_MAX;
	if (n > len - start) {
		snprintf(err, errlen, "Multiboot header: load_end_addr %#x beyond the file",
			 h->load_end_addr);
		return -ENOEXEC;
	}
	bss = h->bss_end_addr > h->load_addr + n ? h->bss_end_addr - (h->load_addr + n) : 0;
	dst = gm_ptr(gm, h->load_addr, n + bss);
	if (!dst || h->load_addr < 0x100000) {
		snprintf(err, errlen,
			 "Multiboot image %#x+%#llx does not fit in guest RAM above 1 MiB",
			 h->load_addr, (unsigned long long)(n + bss));
		return -ENOMEM;
	}
	memcpy(dst, k + start, n);
	memset(dst + n, 0, bss);
	*end = h->load_addr + n + bss;
	return 0;
}

static int mb_write_info(const struct guest_mem *gm, const struct boot_input *in, uint64_t kend,
			 char *err, size_t errlen)
{
	struct mb_info mbi = { .flags = MBI_MEM | MBI_CMDLINE | MBI_MMAP | MBI_LOADER_NAME };
	struct mb_mmap_entry mm[E820_MAX];
	static const char name[] = "kestrel";
	int n = MIN(in->ne820, E820_MAX);
	size_t clen = strlen(in->cmdline);

	for (int i = 0; i < n; i++)
		mm[i] = (struct mb_mmap_entry){ 20, in->e820[i].addr, in->e820[i].size,
						in->e820[i].type };
	mbi.mem_lower = 640;
	mbi.mem_upper = (uint32_t)MIN((gm->ram_low - 0x100000) >> 10, 0xffffffffULL);
	mbi.mmap_addr = MBI_MMAP_ADDR;
	mbi.mmap_length = n * sizeof(mm[0]);
	mbi.cmdline = BOARD_CMDLINE_ADDR;
	mbi.boot_loader_name = MBI_NAME_ADDR;
	if (clen >= BOARD_CMDLINE_MAX) {
		snprintf(err, errlen, "--cmdline: %zu bytes, at most %d", clen,
			 BOARD_CMDLINE_MAX - 1);
		return -E2BIG;
	}
	if (in->initrd) {
		struct mb_module mod;
		uint64_t at = boot_place_high(gm, in->initrd_len, ALIGN_UP(kend, 4096),
					      GM_LOWMEM_MAX, 4096);

		if (!at) {
			snprintf(err, errlen, "--initrd: does not fit in RAM with the kernel");
			return -ENOMEM;
		}
		mod = (struct mb_module){ (uint32_t)at, (uint32_t)(at + in->initrd_len),
					  BOARD_CMDLINE_ADDR, 0 };
		if (gm_write(gm, at, in->initrd, in->initrd_len) ||
		    gm_write(gm, MBI_MODS_ADDR, &mod, sizeof(mod)))
			return -EFAULT;
		mbi.flags |= MBI_MODS;
		mbi.mods_count = 1;
		mbi.mods_addr = MBI_MODS_ADDR;
	}
	if (gm_write(gm, BOARD_CMDLINE_ADDR, in->cmdline, clen + 1) ||
	    gm_write(gm, MBI_NAME_ADDR, name, sizeof(name)) ||
	    gm_write(gm, MBI_MMAP_ADDR, mm, mbi.mmap_length) ||
	    gm_write(gm, MBI_ADDR, &mbi, sizeof(mbi)))
		return -EFAULT;
	return 0;
}

int boot_load_multiboot(const struct guest_mem *gm, const struct boot_input *in,
			struct boot_cpu_state *cpu, char *err, size_t errlen)
{
	struct mb_header h;
	long hoff = mb_find_header(in->kernel, in->kernel_len, &h);
	uint64_t entry, end;
	int ret;

	if (hoff < 0)
		return -ENOEXEC;
	if (h.flags & MB_FLAG_AOUT_KLUDGE) {
		ret = mb_load_kludge(gm, in->kernel, in->kernel_len, hoff, &h, &end, err, errlen);
		entry = h.entry_addr;
	} else {
		ret = boot_load_elf_segments(gm, in->kernel, in->kernel_len, &entry, &end, err,
					     errlen);
	}
	if (ret)
		return ret;
	if (entry >= GM_LOWMEM_MAX) {
		snprintf(err, errlen, "Multiboot entry %#llx is not in low RAM",
			 (unsigned long long)entry);
		return -ENOEXEC;
	}
	ret = mb_write_info(gm, in, end, err, errlen);
	if (ret)
		return ret;
	cpu->mode = BOOT_CPU_PROT32;
	cpu->rip = entry;
	cpu->rax = MB_BOOT_MAGIC;
	cpu->rbx = MBI_ADDR;
	return boot_write_gdt(gm, 32);
}
