/* Xen PVH direct boot of an uncompressed ELF vmlinux (as Firecracker and Cloud
 * Hypervisor do): load PT_LOAD segments at their physical addresses, pass an
 * hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h) in EBX, and
 * enter the XEN_ELFNOTE_PHYS32_ENTRY in flat 32-bit protected mode. This skips
 * the bzImage decompressor entirely. */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kestrel/board.h"
#include "kestrel/boot.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC		 0x336ec578u

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr; /* version >= 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr, size, cmdline_paddr, reserved;
};

struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

/* Walk one PT_NOTE segment for the "Xen" PHYS32_ENTRY note. */
static int pvh_scan_notes(const uint8_t *p, uint64_t len, uint64_t *entry)
{
	uint64_t off = 0;

	while (len - off >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh; /* same layout as Elf32_Nhdr: three u32 */
		uint64_t name_sz, desc_sz, desc_off;

		memcpy(&nh, p + off, sizeof(nh));
		name_sz = ALIGN_UP((uint64_t)nh.n_namesz, 4);
		desc_sz = ALIGN_UP((uint64_t)nh.n_descsz, 4);
		desc_off = off + sizeof(nh) + name_sz;
		if (desc_off > len || desc_sz > len - desc_off)
			return -ENOENT;
		if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
		    !memcmp(p + off + sizeof(nh), "Xen", 4) &&
		    (nh.n_descsz == 4 || nh.n_descsz == 8)) {
			uint64_t e = 0;

			memcpy(&e, p + desc_off, nh.n_descsz);
			if (entry)
				*entry = nh.n_descsz == 4 ? (uint32_t)e : e;
			return 0;
		}
		off = desc_off + desc_sz;
	}
	return -ENOENT;
}

int boot_pvh_entry(const uint8_t *k, size_t len, uint64_t *entry)
{
	bool is64 = k[EI_CLASS] == ELFCLASS64;
	size_t phsz = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	uint64_t phoff, phnum;

	if (len < (is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr)))
		return -ENOENT;
	if (is64) {
		const Elf64_Ehdr *eh = (const void *)k;
		phoff = eh->e_phoff, phnum = eh->e_phnum;
		if (eh->e_phentsize != phsz)
			return -ENOENT;
	} else {
		const Elf32_Ehdr *eh = (const void *)k;
		phoff = eh->e_phoff, phnum = eh->e_phnum;
		if (eh->e_phentsize != phsz)
			return -ENOENT;
	}
	if (phoff > len || phnum * phsz > len - phoff)
		return -ENOENT;
	for (uint64_t i = 0; i < phnum; i++) {
		const uint8_t *ph = k + phoff + i * phsz;
		uint64_t type, off, sz;

		if (is64) {
			const Elf64_Phdr *p = (const void *)ph;
			type = p->p_type, off = p->p_offset, sz = p->p_filesz;
		} else {
			const Elf32_Phdr *p = (const void *)ph;
			type = p->p_type, off = p->p_offset, sz = p->p_filesz;
		}
		if (type != PT_NOTE || off > len || sz > len - off)
			continue;
		if (pvh_scan_notes(k + off, sz, entry) == 0)
			return 0;
	}
	return -ENOENT;
}

int boot_load_pvh(const struct guest_mem *gm, const struct boot_input *in,
		  struct boot_cpu_state *cpu, char *err, size_t errlen)
{
	uint64_t entry, end, si_addr = BOARD_BOOT_PARAMS;
	uint64_t modlist = si_addr + 0x100, memmap = si_addr + 0x200;
	struct hvm_start_info si = { .magic = HVM_START_MAGIC, .version = 1 };
	struct hvm_memmap_entry mm[E820_MAX];
	size_t n = strlen(in->cmdline);
	int ret;

	if (boot_pvh_entry(in->kernel, in->kernel_len, &entry) || entry >= GM_LOWMEM_MAX) {
		snprintf(err, errlen, "ELF kernel has no usable PVH entry note");
		return -ENOEXEC;
	}
	ret = boot_load_elf_segments(gm, in->kernel, in->kernel_len, &(uint64_t){ 0 }, &end, err,
				     errlen);
	if (ret)
		return ret;
	if (n >= BOARD_CMDLINE_MAX) {
		snprintf(err, errlen, "--cmdline: %zu bytes, at most %d", n, BOARD_CMDLINE_MAX - 1);
		return -E2BIG;
	}
	if (gm_write(gm, BOARD_CMDLINE_ADDR, in->cmdline, n + 1))
		return -EFAULT;
	si.cmdline_paddr = BOARD_CMDLINE_ADDR;
	si.rsdp_paddr = in->rsdp;

	if (in->initrd) {
		struct hvm_modlist_entry mod = { .size = in->initrd_len };

		mod.paddr = boot_place_high(gm, in->initrd_len, ALIGN_UP(end, 4096), GM_LOWMEM_MAX,
					    4096);
		if (!mod.paddr) {
			snprintf(err, errlen,
				 "--initrd: %zu bytes do not fit in RAM with the kernel",
				 in->initrd_len);
			return -ENOMEM;
		}
		if (gm_write(gm, mod.paddr, in->initrd, in->initrd_len) ||
		    gm_write(gm, modlist, &mod, sizeof(mod)))
			return -EFAULT;
		si.nr_modules = 1;
		si.modlist_paddr = modlist;
	}
	for (int i = 0; i < in->ne820 && i < E820_MAX; i++)
		mm[i] = (struct hvm_memmap_entry){ in->e820[i].addr, in->e820[i].size,
						   in->e820[i].type, 0 };
	si.memmap_paddr = memmap;
	si.memmap_entries = MIN(in->ne820, E820_MAX);
	if (gm_write(gm, memmap, mm, si.memmap_entries * sizeof(mm[0])) ||
	    gm_write(gm, si_addr, &si, sizeof(si)))
		return -EFAULT;

	cpu->mode = BOOT_CPU_PROT32;
	cpu->rip = entry;
	cpu->rbx = si_addr;
	return boot_write_gdt(gm, 32);
}
