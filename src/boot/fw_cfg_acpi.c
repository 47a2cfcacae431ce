/* kestrel's ACPI tables for firmware, through QEMU's table loader
 * (hw/acpi/bios-linker-loader.c; SeaBIOS src/fw/romfile_loader.c and OVMF's
 * QemuFwCfgAcpi run it): the blobs etc/acpi/tables and etc/acpi/rsdp, and
 * etc/table-loader, a list of 128-byte little-endian commands:
 *
 *   ALLOCATE     file[56], align u32, zone u8: copy the file into memory
 *   ADD_POINTER  dest[56], src[56], offset u32, size u8: add src's address
 *                to the size-byte little-endian integer at dest+offset
 *   ADD_CHECKSUM file[56], offset u32, start u32, length u32: make the range
 *                sum to 0 by subtracting its sum from the byte at offset
 *
 * So the guest sees the same tables as on direct boot, wherever the
 * firmware puts them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/board.h"
#include "kestrel/byteorder.h"
#include "kestrel/fw_cfg.h"

#define LOADER_CMD	0
#define LOADER_ARGS	4
#define LOADER_MAX_CMDS (2 + ACPI_MAX_FIXUPS)

static const char *loader_file(enum acpi_blob b)
{
	return b == ACPI_BLOB_RSDP ? ACPI_FILE_RSDP : ACPI_FILE_TABLES;
}

/* Names are at most 55 bytes and the command is zeroed, so each stays
 * NUL-terminated as romfile_loader_find requires. */
static void loader_name(uint8_t *p, const char *name)
{
	memcpy(p, name, strlen(name));
}

static void loader_allocate(uint8_t *e, enum acpi_blob b, uint32_t align, uint8_t zone)
{
	put_le32(e + LOADER_CMD, TABLE_LOADER_ALLOCATE);
	loader_name(e + LOADER_ARGS, loader_file(b));
	put_le32(e + LOADER_ARGS + TABLE_LOADER_FILESZ, align);
	e[LOADER_ARGS + TABLE_LOADER_FILESZ + 4] = zone;
}

static void loader_fixup(uint8_t *e, const struct acpi_fixup *f)
{
	uint8_t *a = e + LOADER_ARGS;

	if (f->kind == ACPI_FIX_POINTER) {
		put_le32(e + LOADER_CMD, TABLE_LOADER_ADD_POINTER);
		loader_name(a, loader_file(f->blob));
		loader_name(a + TABLE_LOADER_FILESZ, ACPI_FILE_TABLES);
		put_le32(a + 2 * TABLE_LOADER_FILESZ, f->offset);
		a[2 * TABLE_LOADER_FILESZ + 4] = f->size;
		return;
	}
	put_le32(e + LOADER_CMD, TABLE_LOADER_ADD_CHECKSUM);
	loader_name(a, loader_file(f->blob));
	put_le32(a + TABLE_LOADER_FILESZ, f->offset);
	put_le32(a + TABLE_LOADER_FILESZ + 4, f->start);
	put_le32(a + TABLE_LOADER_FILESZ + 8, f->length);
}

long table_loader_script(const struct acpi_blobs *b, uint8_t *out, size_t size)
{
	size_t len = (2 + (size_t)b->nfix) * TABLE_LOADER_ENTRY_LEN;

	if (len > size)
		return -ENOSPC;
	memset(out, 0, len);
	/* ACPI 5.2.5.1: the RSDP in 0xE0000-0xFFFFF; the tables in the high
	 * zone (below 4 GiB for SeaBIOS and OVMF alike), FACS-aligned. The
	 * checksums come after the pointers they cover: the builder's order. */
	loader_allocate(out, ACPI_BLOB_RSDP, ACPI_RSDP_ALIGN, TABLE_LOADER_ZONE_FSEG);
	loader_allocate(out + TABLE_LOADER_ENTRY_LEN, ACPI_BLOB_TABLES, ACPI_TABLES_ALIGN,
			TABLE_LOADER_ZONE_HIGH);
	for (unsigned i = 0; i < b->nfix; i++)
		loader_fixup(out + (2 + i) * TABLE_LOADER_ENTRY_LEN, &b->fix[i]);
	return (long)len;
}

int fw_cfg_add_acpi(struct device *fw, const struct acpi_board *board)
{
	struct acpi_blobs *b = calloc(1, sizeof(*b));
	uint8_t script[LOADER_MAX_CMDS * TABLE_LOADER_ENTRY_LEN];
	long n;
	int ret = -ENOMEM;

	if (!b)
		return -ENOMEM;
	b->tables_size = BOARD_ACPI_SIZE;
	b->tables = malloc(b->tables_size);
	if (!b->tables)
		goto out;
	ret = acpi_build_blobs(b, board);
	if (ret)
		goto out;
	n = table_loader_script(b, script, sizeof(script));
	if (n < 0) {
		ret = (int)n;
		goto out;
	}
	ret = fw_cfg_add_file(fw, ACPI_FILE_TABLES, b->tables, b->tables_len);
	ret = ret ?: fw_cfg_add_file(fw, ACPI_FILE_RSDP, b->rsdp, sizeof(b->rsdp));
	ret = ret ?: fw_cfg_add_file(fw, ACPI_FILE_LOADER, script, (size_t)n);
out:
	free(b->tables);
	free(b);
	return ret;
}
