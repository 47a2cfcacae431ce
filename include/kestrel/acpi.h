/* ACPI tables for the board: RSDP, XSDT (+ RSDT), FADT + FACS, MADT, DSDT. */
#ifndef KESTREL_ACPI_H
#define KESTREL_ACPI_H

#include <stddef.h>
#include <stdint.h>
#include "kestrel/util.h"

#define ACPI_MAX_CPUS 64 /* one xAPIC MADT entry each; >255 would need x2APIC entries */

struct pci_intx_routing;

struct acpi_board {
	unsigned ncpus;                           /* 1..64; LAPIC ids and processor UIDs 0..ncpus-1 */
	uint64_t pci_mmio_base, pci_mmio_end;     /* 32-bit BAR window for the PCI root bridge _CRS */
	uint64_t pci_mmio64_base, pci_mmio64_size; /* 64-bit window above RAM; size 0 = none */
	const struct pci_intx_routing *intx;      /* the _PRT (GSIs < 24); NULL = no _PRT */
};

/* Build RSDP, XSDT, RSDT, FADT (+FACS), MADT and DSDT into buf, which will be
 * copied to guest-physical gpa_base (16-byte aligned). The RSDP is at offset 0,
 * so a firmware-style scan of 0xE0000-0xFFFFF finds it when gpa_base is
 * BOARD_ACPI_BASE. Returns bytes used, -ENOSPC if buf is too small, or -EINVAL
 * for a board outside the limits above. Bytes past the returned length are
 * left as they were; bytes before it that no table uses are zero. */
long acpi_build(void *buf, size_t bufsize, uint64_t gpa_base, const struct acpi_board *b) WARN_UNUSED;

#endif
