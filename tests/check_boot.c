/* Kernel loaders driven with hand-built images into plain guest memory (no KVM). */
#include <check.h>
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/board.h"
#include "kestrel/boot.h"
#include "check_util.h"

static struct guest_mem gm;
static struct e820_entry e820[E820_MAX];
static int ne820;
static char err[256];

static void setup(void)
{
	ck_assert_int_eq(gm_init(&gm, MiB(256), false), 0);
	ne820 = boot_e820(&gm, e820, E820_MAX);
	err[0] = 0;
}

static void teardown(void)
{
	gm_destroy(&gm);
}

static uint32_t g32(uint64_t gpa)
{
	uint32_t v;

	ck_assert_int_eq(gm_read(&gm, gpa, &v, 4), 0);
	return v;
}

static uint64_t g64(uint64_t gpa)
{
	uint64_t v;

	ck_assert_int_eq(gm_read(&gm, gpa, &v, 8), 0);
	return v;
}

/* A minimal bzImage: 4 KiB setup (setup_sects 7) + 8 KiB protected-mode body. */
static uint8_t *make_bzimage(size_t *len, uint16_t version, bool has64)
{
	size_t n = 4096 + 8192;
	uint8_t *k = calloc(1, n);
	uint32_t v;

	k[0x1f1] = 7;
	k[0x1fe] = 0x55;
	k[0x1ff] = 0xaa;
	k[0x201] = 0x66; /* header ends at 0x268 */
	memcpy(k + 0x202, "HdrS", 4);
	memcpy(k + 0x206, &version, 2);
	k[0x211] = 0x01; /* LOADED_HIGH */
	v = 0x37ffffff;
	memcpy(k + 0x22c, &v, 4); /* initrd_addr_max */
	v = 2047;
	memcpy(k + 0x238, &v, 4); /* cmdline_size */
	v = 0x400000;
	memcpy(k + 0x260, &v, 4); /* init_size: 4 MiB */
	k[0x236] = has64 ? 1 : 0; /* XLF_KERNEL_64 */
	for (size_t i = 4096; i < n; i++)
		k[i] = (uint8_t)(i * 7);
	*len = n;
	return k;
}

static struct boot_input input(const uint8_t *k, size_t len)
{
	static const uint8_t initrd[5000] = { 0xab };

	return (struct boot_input){ .kernel = k,
				    .kernel_len = len,
				    .initrd = initrd,
				    .initrd_len = sizeof(initrd),
				    .cmdline = "console=ttyS0 quiet",
				    .entry = BOOT_ENTRY_64,
				    .rsdp = BOARD_ACPI_BASE,
				    .e820 = e820,
				    .ne820 = ne820 };
}

START_TEST(e820_layouts)
{
	struct guest_mem big;
	struct e820_entry e[E820_MAX];
	int n;

	ck_assert_int_ge(ne820, 4);
	ck_assert_uint_eq(e820[0].addr, 0);
	ck_assert_uint_eq(e820[0].type, E820_RAM);
	ck_assert_uint_eq(e820[ne820 - 1].addr + e820[ne820 - 1].size, MiB(256));
	ck_assert_int_eq(gm_init(&big, GiB(6), false), 0);
	n = boot_e820(&big, e, E820_MAX);
	ck_assert_uint_eq(e[n - 1].addr, GiB(4));
	ck_assert_uint_eq(e[n - 1].size, GiB(6) - GM_LOWMEM_MAX);
	ck_assert_uint_eq(e[n - 1].type, E820_RAM);
	/* Entries sorted and disjoint. */
	for (int i = 1; i < n; i++)
		ck_assert_uint_ge(e[i].addr, e[i - 1].addr + e[i - 1].size);
	gm_destroy(&big);
}
END_TEST

START_TEST(bzimage_64)
{
	size_t len;
	uint8_t *k = make_bzimage(&len, 0x020f, true);
	struct boot_input in = input(k, len);
	struct boot_cpu_state cpu;
	uint8_t *body = gm_ptr(&gm, BOARD_KERNEL_ADDR, 8192);
	uint32_t rd, rdsz;

	ck_assert_int_eq(boot_detect(k, len), BOOT_FMT_BZIMAGE);
	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), 0);
	ck_assert_int_eq(memcmp(body, k + 4096, 8192), 0);
	ck_assert_int_eq(cpu.mode, BOOT_CPU_LONG64);
	ck_assert_uint_eq(cpu.rip, BOARD_KERNEL_ADDR + 0x200);
	ck_assert_uint_eq(cpu.rsi, BOARD_BOOT_PARAMS);
	/* Zero page: loader id, header copied, cmdline, e820, RSDP. */
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, BOARD_BOOT_PARAMS + 0x210, 1), 0xff);
	ck_assert_int_eq(memcmp(gm_ptr(&gm, BOARD_BOOT_PARAMS + 0x202, 4), "HdrS", 4), 0);
	ck_assert_uint_eq(g32(BOARD_BOOT_PARAMS + 0x228), BOARD_CMDLINE_ADDR);
	ck_assert_str_eq((char *)gm_ptr(&gm, BOARD_CMDLINE_ADDR, 1), "console=ttyS0 quiet");
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, BOARD_BOOT_PARAMS + 0x1e8, 1), (unsigned)ne820);
	ck_assert_uint_eq(g64(BOARD_BOOT_PARAMS + 0x70), BOARD_ACPI_BASE);
	/* initrd: above the kernel's init_size, below initrd_addr_max, content intact. */
	rd = g32(BOARD_BOOT_PARAMS + 0x218);
	rdsz = g32(BOARD_BOOT_PARAMS + 0x21c);
	ck_assert_uint_eq(rdsz, 5000);
	ck_assert_uint_ge(rd, BOARD_KERNEL_ADDR + 0x400000);
	ck_assert_uint_le((uint64_t)rd + rdsz - 1, 0x37ffffff);
	ck_assert_uint_eq(rd % 4096, 0);
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, rd, 1), 0xab);
	/* Identity map: PML4[0] -> PDPT, 2 MiB pages covering 4 GiB. */
	ck_assert_uint_eq(cpu.cr3, BOARD_PML4_ADDR);
	ck_assert_uint_eq(g64(BOARD_PML4_ADDR) & ~0xfffULL, BOARD_PML4_ADDR + 0x1000);
	ck_assert_uint_eq(g64(BOARD_PML4_ADDR + 0x2000 + 8 * 2047), (2047ULL << 21) | 0x83);
	/* GDT: 0x10 is 64-bit code (L bit). */
	ck_assert_uint_eq((g64(BOARD_GDT_ADDR + 0x10) >> 53) & 1, 1);
	free(k);
}
END_TEST

START_TEST(bzimage_32)
{
	size_t len;
	uint8_t *k = make_bzimage(&len, 0x020f, false);
	struct boot_input in = input(k, len);
	struct boot_cpu_state cpu;

	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), -ENOEXEC);
	ck_assert_ptr_nonnull(strstr(err, "64-bit entry"));
	in.entry = BOOT_ENTRY_32;
	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), 0);
	ck_assert_int_eq(cpu.mode, BOOT_CPU_PROT32);
	ck_assert_uint_eq(cpu.rip, BOARD_KERNEL_ADDR);
	ck_assert_uint_eq(g32(BOARD_BOOT_PARAMS + 0x214), BOARD_KERNEL_ADDR);
	/* GDT: 0x10 is 32-bit code (D bit), 0x18 flat data. */
	ck_assert_uint_eq((g64(BOARD_GDT_ADDR + 0x10) >> 54) & 1, 1);
	ck_assert_uint_eq(g64(BOARD_GDT_ADDR + 0x18), 0x00cf93000000ffffULL);
	free(k);
}
END_TEST

/* --boot-entry auto: the 64-bit entry exactly when xloadflags offers it on a
 * 2.12+ header (Debian's linux-image-686 has XLF_KERNEL_64 clear), else the
 * 32-bit one, which every bzImage has. */
START_TEST(bzimage_auto_entry)
{
	static const struct {
		uint16_t version;
		uint16_t xloadflags;
		bool entry64;
	} cases[] = {
		{ 0x020f, 0x0001, true },  /* x86_64 kernel */
		{ 0x020f, 0x0013, true },  /* with EFI handover flags too */
		{ 0x020f, 0x0000, false }, /* i386 kernel */
		{ 0x020f, 0x0002, false }, /* XLF_CAN_BE_LOADED_ABOVE_4G alone */
		{ 0x020c, 0x0001, true },  /* 2.12: the first with xloadflags */
		{ 0x020b, 0x0001, false }, /* 2.11: 0x236 is not xloadflags yet */
		{ 0x020a, 0x0000, false },
	};
	struct boot_cpu_state cpu;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t len;
		uint8_t *k = make_bzimage(&len, cases[i].version, false);
		struct boot_input in = input(k, len);

		memcpy(k + 0x236, &cases[i].xloadflags, 2);
		in.entry = BOOT_ENTRY_AUTO;
		ck_assert_int_eq(boot_bzimage_has_entry64(k, len), cases[i].entry64);
		ck_assert_msg(boot_load(&gm, &in, &cpu, err, sizeof(err)) == 0, "case %zu: %s", i,
			      err);
		ck_assert_int_eq(cpu.mode, cases[i].entry64 ? BOOT_CPU_LONG64 : BOOT_CPU_PROT32);
		ck_assert_uint_eq(cpu.rip, BOARD_KERNEL_ADDR + (cases[i].entry64 ? 0x200 : 0));
		/* Forcing: 32 always loads; 64 only where the kernel has it. */
		in.entry = BOOT_ENTRY_32;
		ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), 0);
		ck_assert_int_eq(cpu.mode, BOOT_CPU_PROT32);
		in.entry = BOOT_ENTRY_64;
		ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)),
				 cases[i].entry64 ? 0 : -ENOEXEC);
		free(k);
	}
}
END_TEST

START_TEST(bzimage_rejects)
{
	size_t len;
	uint8_t *k = make_bzimage(&len, 0x0209, true);
	struct boot_input in = input(k, len);
	struct boot_cpu_state cpu;
	char longcmd[4000];

	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), -ENOEXEC);
	ck_assert_ptr_nonnull(strstr(err, "older than 2.10"));
	free(k);
	k = make_bzimage(&len, 0x020f, true);
	in = input(k, len);
	k[0x1f1] = 200; /* setup larger than the file */
	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), -ENOEXEC);
	ck_assert_ptr_nonnull(strstr(err, "truncated"));
	k[0x1f1] = 7;
	memset(longcmd, 'a', sizeof(longcmd) - 1);
	longcmd[sizeof(longcmd) - 1] = 0;
	in.cmdline = longcmd; /* beyond cmdline_size 2047 */
	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), -E2BIG);
	in.cmdline = "";
	k[0x260 + 3] = 0x40; /* init_size 1 GiB: more than RAM */
	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), -ENOMEM);
	free(k);
}
END_TEST

/* ELF64 vmlinux stand-in: one PT_LOAD at 16 MiB and a PT_NOTE with the Xen PVH entry. */
static uint8_t *make_pvh(size_t *len, bool with_note)
{
	size_t n = 0x3000;
	uint8_t *k = calloc(1, n);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)k;
	Elf64_Phdr *ph = (Elf64_Phdr *)(k + sizeof(*eh));
	uint8_t *note = k + 0x200;
	uint32_t nh[3] = { 4, 8, 18 };
	uint64_t entry = 0x1000040;

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 2;
	eh->e_entry = 0xffffffff81000000ULL;
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD,
			      .p_offset = 0x1000,
			      .p_paddr = 0x1000000,
			      .p_filesz = 0x2000,
			      .p_memsz = 0x5000 };
	ph[1] = (Elf64_Phdr){ .p_type = with_note ? PT_NOTE : PT_NULL,
			      .p_offset = 0x200,
			      .p_filesz = 24 };
	memcpy(note, nh, 12);
	memcpy(note + 12, "Xen", 4);
	memcpy(note + 16, &entry, 8);
	memset(k + 0x1000, 0x5a, 0x2000);
	*len = n;
	return k;
}

START_TEST(pvh)
{
	size_t len;
	uint8_t *k = make_pvh(&len, true);
	struct boot_input in = input(k, len);
	struct boot_cpu_state cpu;
	uint64_t mod, mm;

	ck_assert_int_eq(boot_detect(k, len), BOOT_FMT_PVH);
	memset(gm_ptr(&gm, 0x1002000, 0x3000), 0xee, 0x3000);
	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), 0);
	ck_assert_int_eq(cpu.mode, BOOT_CPU_PROT32);
	ck_assert_uint_eq(cpu.rip, 0x1000040);
	ck_assert_uint_eq(cpu.rbx, BOARD_BOOT_PARAMS);
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, 0x1001fff, 1), 0x5a);
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, 0x1002000, 1), 0); /* bss zeroed */
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, 0x1004fff, 1), 0);
	ck_assert_uint_eq(g32(BOARD_BOOT_PARAMS), 0x336ec578);
	ck_assert_uint_eq(g32(BOARD_BOOT_PARAMS + 4), 1);
	ck_assert_uint_eq(g32(BOARD_BOOT_PARAMS + 12), 1); /* nr_modules */
	ck_assert_uint_eq(g64(BOARD_BOOT_PARAMS + 24), BOARD_CMDLINE_ADDR);
	ck_assert_uint_eq(g64(BOARD_BOOT_PARAMS + 32), BOARD_ACPI_BASE);
	mod = g64(BOARD_BOOT_PARAMS + 16);
	ck_assert_uint_ge(g64(mod), 0x1005000); /* initrd above the kernel */
	ck_assert_uint_eq(g64(mod + 8), 5000);
	mm = g64(BOARD_BOOT_PARAMS + 40);
	ck_assert_uint_eq(g32(BOARD_BOOT_PARAMS + 48), (unsigned)ne820);
	ck_assert_uint_eq(g64(mm + 8), e820[0].size);
	free(k);
}
END_TEST

START_TEST(elf_without_note)
{
	size_t len;
	uint8_t *k = make_pvh(&len, false);

	ck_assert_int_eq(boot_detect(k, len), BOOT_FMT_UNKNOWN);
	free(k);
}
END_TEST

START_TEST(elf_hostile_segments)
{
	size_t len;
	uint8_t *k = make_pvh(&len, true);
	struct boot_input in = input(k, len);
	struct boot_cpu_state cpu;
	Elf64_Phdr *ph = (Elf64_Phdr *)(k + sizeof(Elf64_Ehdr));

	ph[0].p_paddr = MiB(256) - 0x1000; /* runs past the end of RAM */
	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), -ENOMEM);
	ph[0].p_paddr = UINT64_MAX - 0x100; /* wraps */
	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), -ENOMEM);
	ph[0].p_paddr = 0x1000000;
	ph[0].p_filesz = 0x100000; /* beyond the file */
	ph[0].p_memsz = 0x100000;
	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), -ENOEXEC);
	((Elf64_Ehdr *)k)->e_phnum = 60000; /* headers beyond the file */
	ck_assert_int_eq(boot_detect(k, len), BOOT_FMT_UNKNOWN);
	free(k);
}
END_TEST

START_TEST(multiboot_kludge)
{
	size_t len = 0x2000;
	uint8_t *k = calloc(1, len);
	uint32_t h[8] = { 0x1BADB002, 0x00010003,	 0,	  0x100000 + 0x40, 0x100000,
			  0,	      0x100000 + 0x4000, 0x100080 };
	struct boot_input in;
	struct boot_cpu_state cpu;
	uint32_t mbi;

	h[2] = -(h[0] + h[1]);
	memcpy(k + 0x40, h, sizeof(h));
	k[0x1fff] = 0x77;
	in = input(k, len);
	ck_assert_int_eq(boot_detect(k, len), BOOT_FMT_MULTIBOOT);
	memset(gm_ptr(&gm, 0x100000, 0x4000), 0xee, 0x4000);
	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), 0);
	ck_assert_uint_eq(cpu.rip, 0x100080);
	ck_assert_uint_eq(cpu.rax, 0x2BADB002);
	mbi = (uint32_t)cpu.rbx;
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, 0x101fff, 1), 0x77);
	ck_assert_uint_eq(*(uint8_t *)gm_ptr(&gm, 0x103fff, 1), 0); /* bss */
	ck_assert_uint_eq(g32(mbi) & 0x4d, 0x4d);		    /* mem, cmdline, mods, mmap */
	ck_assert_uint_eq(g32(mbi + 4), 640);
	ck_assert_str_eq((char *)gm_ptr(&gm, g32(mbi + 16), 1), "console=ttyS0 quiet");
	ck_assert_uint_eq(g32(mbi + 20), 1);
	ck_assert_uint_ge(g32(g32(mbi + 24)), 0x104000); /* module above bss */
	ck_assert_uint_eq(g32(mbi + 44), (unsigned)ne820 * 24);
	/* Inconsistent header: header_addr below load_addr. */
	h[3] = 0xf0000;
	h[2] = -(h[0] + h[1]);
	memcpy(k + 0x40, h, sizeof(h));
	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), -ENOEXEC);
	free(k);
}
END_TEST

START_TEST(unknown_format)
{
	uint8_t junk[4096];
	struct boot_input in;
	struct boot_cpu_state cpu;

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 31 + 5);
	in = input(junk, sizeof(junk));
	ck_assert_int_eq(boot_detect(junk, sizeof(junk)), BOOT_FMT_UNKNOWN);
	ck_assert_int_eq(boot_load(&gm, &in, &cpu, err, sizeof(err)), -ENOEXEC);
	ck_assert_int_eq(boot_detect(junk, 10), BOOT_FMT_UNKNOWN);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("boot");

	ADD_TCASE(s, "loaders", setup, teardown, 0, e820_layouts, bzimage_64, bzimage_32,
		  bzimage_auto_entry, bzimage_rejects, pvh, elf_without_note, elf_hostile_segments,
		  multiboot_kludge, unknown_format);
	return run_suite(s);
}
