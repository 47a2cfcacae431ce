/* ACPI tables for the board: RSDP, XSDT (+ RSDT), FADT + FACS, MADT, DSDT. */
#ifndef KESTREL_ACPI_H
#define KESTREL_ACPI_H

#include <stddef.h>
#include <stdint.h>
#include "kestrel/util.h"

#define ACPI_MAX_CPUS 64 /* one xAPIC MADT entry each; >255 would need x2APIC entries */

struct pci_intx_routing;

struct acpi_board {
	unsigned ncpus;			      /* 1..64; LAPIC ids and processor UIDs 0..ncpus-1 */
	uint64_t pci_mmio_base, pci_mmio_end; /* 32-bit BAR window for the PCI root bridge _CRS */
	uint64_t pci_mmio64_base, pci_mmio64_size; /* 64-bit window above RAM; size 0 = none */
	const struct pci_intx_routing *intx;	   /* the _PRT (GSIs < 24); NULL = no _PRT */
};

/* Build RSDP, XSDT, RSDT, FADT (+FACS), MADT and DSDT into buf, which will be
 * copied to guest-physical gpa_base (16-byte aligned). The RSDP is at offset 0,
 * so a firmware-style scan of 0xE0000-0xFFFFF finds it when gpa_base is
 * BOARD_ACPI_BASE. Returns bytes used, -ENOSPC if buf is too small, or -EINVAL
 * for a board outside the limits above. Bytes past the returned length are
 * left as they were; bytes before it that no table uses are zero. */
long acpi_build(void *buf, size_t bufsize, uint64_t gpa_base,
		const struct acpi_board *b) WARN_UNUSED;

/* The same tables for a loader that places them itself (QEMU's table loader,
 * include/kestrel/fw_cfg.h): two blobs, the RSDP and everything else, with
 * every pointer field holding its target's offset in the tables blob, and a
 * record of the fields to patch. Placing the tables blob at T and the RSDP
 * at R, adding T to each pointer field and recomputing each checksum in
 * record order gives the bytes acpi_build() writes at gpa_base R with the
 * tables from R + ACPI_RSDP_SPAN (T = R + ACPI_RSDP_SPAN, R aligned to
 * ACPI_TABLES_ALIGN, below 4 GiB). */
#define ACPI_RSDP_LEN	  36
#define ACPI_RSDP_ALIGN	  16
#define ACPI_TABLES_ALIGN 64 /* the FACS, first in the blob */
#define ACPI_RSDP_SPAN	  64 /* acpi_build(): the first table's offset */
#define ACPI_MAX_FIXUPS	  32

enum acpi_blob { ACPI_BLOB_TABLES, ACPI_BLOB_RSDP };
enum acpi_fixup_kind { ACPI_FIX_POINTER, ACPI_FIX_CHECKSUM };

struct acpi_fixup {
	enum acpi_fixup_kind kind;
	enum acpi_blob blob;	/* the blob holding the field */
	uint32_t offset;	/* the field's offset in that blob */
	uint8_t size;		/* pointer: 4 or 8 bytes, target in the tables blob */
	uint32_t start, length; /* checksum: the byte range it makes sum to 0 */
};

struct acpi_blobs {
	uint8_t *tables;    /* caller's buffer */
	size_t tables_size; /* its size */
	size_t tables_len;  /* bytes built */
	uint8_t rsdp[ACPI_RSDP_LEN];
	struct acpi_fixup fix[ACPI_MAX_FIXUPS];
	unsigned nfix;
};

/* Fill out->tables (out->tables/tables_size set by the caller), out->rsdp and
 * the record. 0, -ENOSPC (buffer or record too small) or -EINVAL. */
int acpi_build_blobs(struct acpi_blobs *out, const struct acpi_board *b) WARN_UNUSED;

#endif
