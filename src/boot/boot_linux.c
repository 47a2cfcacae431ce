/* Linux x86 boot protocol (Documentation/arch/x86/boot.rst): load the
 * protected-mode part of a bzImage at 1 MiB, fill the zero page, and enter at
 * the 64-bit entry (startup_64, load address + 0x200, long mode set up by us)
 * or the 32-bit entry (code32_start, flat protected mode, paging off).
 * Unless told, the 64-bit entry is taken exactly when the header says the
 * kernel has one (xloadflags XLF_KERNEL_64, protocol 2.12+); every bzImage,
 * 32- or 64-bit, has the 32-bit one. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kestrel/board.h"
#include "kestrel/boot.h"

/* Setup header offsets inside the zero page / the bzImage's first sector. */
#define HDR_SETUP_SECTS	     0x1f1
#define HDR_JUMP	     0x200 /* 2-byte jump; its second byte gives the header's end */
#define HDR_VERSION	     0x206
#define HDR_TYPE_OF_LOADER   0x210
#define HDR_LOADFLAGS	     0x211
#define HDR_CODE32_START     0x214
#define HDR_RAMDISK_IMAGE    0x218
#define HDR_RAMDISK_SIZE     0x21c
#define HDR_HEAP_END_PTR     0x224
#define HDR_CMD_LINE_PTR     0x228
#define HDR_INITRD_ADDR_MAX  0x22c
#define HDR_RELOCATABLE	     0x234
#define HDR_XLOADFLAGS	     0x236
#define HDR_CMDLINE_SIZE     0x238
#define HDR_INIT_SIZE	     0x260
/* boot_params fields outside the setup header */
#define BP_ACPI_RSDP_ADDR    0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE  0x0c4
#define BP_EXT_CMD_LINE_PTR  0x0c8
#define BP_E820_ENTRIES	     0x1e8
#define BP_E820_TABLE	     0x2d0
#define BP_E820_MAX	     128

#define LOADFLAGS_LOADED_HIGH  0x01
#define LOADFLAGS_CAN_USE_HEAP 0x80
#define XLF_KERNEL_64	       0x01
#define BOOT_PROTO_MIN	       0x020a /* 2.10: kernel_alignment/relocatable and init_size */
#define BOOT_PROTO_XLOADFLAGS  0x020c /* 2.12: xloadflags */

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}
static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}
static void wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}
static void wr64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

struct bz_layout {
	size_t setup_len;   /* real-mode part: (setup_sects + 1) * 512 */
	size_t pm_len;	    /* protected-mode kernel bytes */
	uint32_t init_size; /* memory the kernel needs from its load address */
	uint16_t version;
};

static int bz_parse(const uint8_t *k, size_t len, struct bz_layout *l, char *err, size_t errlen)
{
	unsigned sects = k[HDR_SETUP_SECTS] ? k[HDR_SETUP_SECTS] : 4;

	l->version = rd16(k + HDR_VERSION);
	if (l->version < BOOT_PROTO_MIN) {
		snprintf(err, errlen, "bzImage boot protocol %u.%02u is older than 2.10",
			 l->version >> 8, l->version & 0xff);
		return -ENOEXEC;
	}
	if (!(k[HDR_LOADFLAGS] & LOADFLAGS_LOADED_HIGH)) {
		snprintf(err, errlen, "zImage (loaded low) kernels are not supported");
		return -ENOEXEC;
	}
	l->setup_len = (size_t)(sects + 1) * 512;
	if (l->setup_len >= len) {
		snprintf(err, errlen, "bzImage truncated: setup_sects %u exceeds the file", sects);
		return -ENOEXEC;
	}
	l->pm_len = len - l->setup_len;
	l->init_size = rd32(k + HDR_INIT_SIZE);
	if (l->init_size < l->pm_len)
		l->init_size = l->pm_len;
	return 0;
}

bool boot_bzimage_has_entry64(const uint8_t *k, size_t len)
{
	return len > HDR_XLOADFLAGS + 1 && rd16(k + HDR_VERSION) >= BOOT_PROTO_XLOADFLAGS &&
	       (rd16(k + HDR_XLOADFLAGS) & XLF_KERNEL_64);
}

static int bz_load_initrd(const struct guest_mem *gm, const struct boot_input *in, uint8_t *zp,
			  uint64_t kernel_end, char *err, size_t errlen)
{
	uint64_t max = rd32(zp + HDR_INITRD_ADDR_MAX), at;

	if (!in->initrd)
		return 0;
	/* initrd_addr_max is the highest address the last byte may have. */
	at = boot_place_high(gm, in->initrd_len, kernel_end, MIN(max + 1, GM_LOWMEM_MAX), 4096);
	if (!at) {
		snprintf(err, errlen, "--initrd: %zu bytes do not fit below %#llx with the kernel",
			 in->initrd_len, (unsigned long long)max);
		return -ENOMEM;
	}
	if (gm_write(gm, at, in->initrd, in->initrd_len))
		return -EFAULT;
	wr32(zp + HDR_RAMDISK_IMAGE, (uint32_t)at);
	wr32(zp + HDR_RAMDISK_SIZE, (uint32_t)in->initrd_len);
	wr32(zp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(at >> 32));
	wr32(zp + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)in->initrd_len >> 32));
	return 0;
}

static int bz_cmdline(const struct guest_mem *gm, const struct boot_input *in, uint8_t *zp,
		      char *err, size_t errlen)
{
	size_t n = strlen(in->cmdline);
	uint32_t max = rd32(zp + HDR_CMDLINE_SIZE);

	if (n > max || n >= BOARD_CMDLINE_MAX) {
		snprintf(err, errlen, "--cmdline: %zu bytes, this kernel accepts %u", n, max);
		return -E2BIG;
	}
	if (gm_write(gm, BOARD_CMDLINE_ADDR, in->cmdline, n + 1))
		return -EFAULT;
	wr32(zp + HDR_CMD_LINE_PTR, BOARD_CMDLINE_ADDR);
	wr32(zp + BP_EXT_CMD_LINE_PTR, 0);
	return 0;
}

int boot_load_bzimage(const struct guest_mem *gm, const struct boot_input *in,
		      struct boot_cpu_state *cpu, char *err, size_t errlen)
{
	const uint8_t *k = in->kernel;
	struct bz_layout l;
	uint8_t *zp;
	size_t hdr_end;
	int ret, ne820 = MIN(in->ne820, BP_E820_MAX);
	bool has64 = boot_bzimage_has_entry64(k, in->kernel_len);
	bool entry64 = in->entry == BOOT_ENTRY_64 || (in->entry == BOOT_ENTRY_AUTO && has64);

	ret = bz_parse(k, in->kernel_len, &l, err, errlen);
	if (ret)
		return ret;
	if (entry64 && !has64) {
		snprintf(err, errlen, "--boot-entry 64: this bzImage has no 64-bit entry (use 32)");
		return -ENOEXEC;
	}
	if (!gm_ptr(gm, BOARD_KERNEL_ADDR, l.init_size)) {
		snprintf(err, errlen, "--mem: the kernel needs %u MiB above 1 MiB",
			 l.init_size >> 20);
		return -ENOMEM;
	}
	if (gm_write(gm, BOARD_KERNEL_ADDR, k + l.setup_len, l.pm_len))
		return -EFAULT;

	zp = gm_ptr(gm, BOARD_BOOT_PARAMS, 4096);
	if (!zp)
		return -EFAULT;
	memset(zp, 0, 4096);
	/* Copy the setup header as the image has it; its length is given by the jump at 0x200. */
	hdr_end = MIN((size_t)0x202 + k[HDR_JUMP + 1], (size_t)0x280);
	memcpy(zp + HDR_SETUP_SECTS, k + HDR_SETUP_SECTS, hdr_end - HDR_SETUP_SECTS);
	zp[HDR_TYPE_OF_LOADER] = 0xff; /* "undefined" boot loader id */
	zp[HDR_LOADFLAGS] |= LOADFLAGS_CAN_USE_HEAP;
	memcpy(zp + HDR_HEAP_END_PTR, &(uint16_t){ 0xfe00 }, 2);
	wr32(zp + HDR_CODE32_START, BOARD_KERNEL_ADDR);
	wr64(zp + BP_ACPI_RSDP_ADDR, in->rsdp);
	ret = bz_cmdline(gm, in, zp, err, errlen);
	if (ret)
		return ret;
	ret = bz_load_initrd(gm, in, zp, BOARD_KERNEL_ADDR + ALIGN_UP(l.init_size, 4096), err,
			     errlen);
	if (ret)
		return ret;
	zp[BP_E820_ENTRIES] = (uint8_t)ne820;
	memcpy(zp + BP_E820_TABLE, in->e820, ne820 * sizeof(struct e820_entry));

	cpu->rsi = BOARD_BOOT_PARAMS;
	if (entry64) {
		cpu->mode = BOOT_CPU_LONG64;
		cpu->rip = BOARD_KERNEL_ADDR + 0x200;
		ret = boot_write_page_tables(gm, &cpu->cr3);
	} else {
		cpu->mode = BOOT_CPU_PROT32;
		cpu->rip = BOARD_KERNEL_ADDR;
		ret = 0;
	}
	if (!ret)
		ret = boot_write_gdt(gm, entry64 ? 64 : 32);
	return ret;
}
