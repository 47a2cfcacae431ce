/* ACPI tables for the board (ACPI 6.4): RSDP -> XSDT/RSDT -> FADT (-> FACS,
 * DSDT) and MADT. Tables are written byte by byte in little-endian at the
 * spec's offsets, never as host structs, so the layout is visible here.
 *
 * One builder serves both boot paths. Direct boot: the tables at a fixed
 * guest address, pointers final. Firmware boot: the tables as blobs whose
 * pointers hold offsets, and every pointer and checksum field written is
 * recorded (acpi_out.rec) so that fw_cfg's table loader can relocate them. */
#include <errno.h>
#include <string.h>
#include "kestrel/acpi.h"
#include "kestrel/aml.h"
#include "kestrel/board.h"
#include "kestrel/pci.h"

#define ACPI_OEM_ID	      "KESTRL"
#define ACPI_OEM_TABLE_ID     "KESTREL "
#define ACPI_OEM_REVISION     1
#define ACPI_CREATOR_ID	      "KSTL"
#define ACPI_CREATOR_REVISION 1

/* 5.2.6 System Description Table Header */
#define ACPI_HDR_LEN	  36
#define ACPI_HDR_CHECKSUM 9

/* 5.2.5.3 RSDP */
#define RSDP_LEN	  36
#define RSDP_CHECKSUM	  8
#define RSDP_V1_LEN	  20
#define RSDP_EXT_CHECKSUM 32

/* 5.2.9 FADT, revision 6 (ACPI 6.4 Table 5.9) */
#define FADT_REVISION	     6
#define FADT_MINOR_VERSION   4
#define FADT_LEN	     276
#define FADT_FIRMWARE_CTRL   36
#define FADT_DSDT	     40
#define FADT_SCI_INT	     46
#define FADT_SMI_CMD	     48
#define FADT_PM1A_EVT_BLK    56
#define FADT_PM1A_CNT_BLK    64
#define FADT_PM_TMR_BLK	     76
#define FADT_PM1_EVT_LEN     88
#define FADT_PM1_CNT_LEN     89
#define FADT_PM_TMR_LEN	     91
#define FADT_P_LVL2_LAT	     96
#define FADT_P_LVL3_LAT	     98
#define FADT_CENTURY	     108
#define FADT_IAPC_BOOT_ARCH  109
#define FADT_FLAGS	     112
#define FADT_RESET_REG	     116
#define FADT_RESET_VALUE     128
#define FADT_MINOR	     131
#define FADT_X_FIRMWARE_CTRL 132
#define FADT_X_DSDT	     140
#define FADT_X_PM1A_EVT_BLK  148
#define FADT_X_PM1A_CNT_BLK  172
#define FADT_X_PM_TMR_BLK    208
#define FADT_HYPERVISOR_ID   268

/* Table 5.10 Fixed ACPI Description Table Fixed Feature Flags */
#define FADT_F_WBINVD		  (1u << 0)
#define FADT_F_PROC_C1		  (1u << 2)
#define FADT_F_PWR_BUTTON	  (1u << 4) /* set = no fixed-feature power button */
#define FADT_F_SLP_BUTTON	  (1u << 5) /* set = no fixed-feature sleep button */
#define FADT_F_TMR_VAL_EXT	  (1u << 8)
#define FADT_F_RESET_REG_SUP	  (1u << 10)
/* 5.2.9.3 IA-PC Boot Architecture Flags */
#define FADT_BOOT_LEGACY_DEVICES  (1u << 0)
#define FADT_BOOT_8042		  (1u << 1)
#define FADT_BOOT_VGA_NOT_PRESENT (1u << 2)

#define FADT_PM1_EVT_BYTES   4
#define FADT_PM1_CNT_BYTES   2
#define FADT_PM_TMR_BYTES    4
#define FADT_RESET_VAL	     0x06   /* 0xCF9: full reset (bit 2) | system reset (bit 1) */
#define FADT_LAT_UNSUPPORTED 0x0fff /* > 100 (C2) and > 1000 (C3): no C2/C3 */
#define CMOS_CENTURY	     0x32

/* 5.2.3.2 Generic Address Structure */
#define GAS_SPACE_IO	 1
#define GAS_ACCESS_BYTE	 1
#define GAS_ACCESS_WORD	 2
#define GAS_ACCESS_DWORD 3

/* 5.2.10 FACS */
#define FACS_LEN       64
#define FACS_ALIGN     64
#define FACS_VERSION   32
#define FACS_VERSION_2 2

/* 5.2.12 MADT, revision 5 (ACPI 6.3+) */
#define MADT_REVISION	     5
#define MADT_LAPIC_ADDR	     36
#define MADT_FLAGS	     40
#define MADT_ENTRIES	     44
#define MADT_PCAT_COMPAT     1u
#define MADT_TYPE_LAPIC	     0 /* 5.2.12.2 */
#define MADT_LAPIC_LEN	     8
#define MADT_LAPIC_ENABLED   1u
#define MADT_TYPE_IOAPIC     1 /* 5.2.12.3 */
#define MADT_IOAPIC_LEN	     12
#define MADT_TYPE_ISO	     2 /* 5.2.12.5 */
#define MADT_ISO_LEN	     10
#define MADT_TYPE_LAPIC_NMI  4 /* 5.2.12.7 */
#define MADT_LAPIC_NMI_LEN   6
#define MADT_ALL_PROCESSORS  0xff
/* Table 5.26 MPS INTI flags: polarity bits 1-0, trigger mode bits 3-2 */
#define MPS_INTI_CONFORMS    0x0000
#define MPS_INTI_ACTIVE_HIGH 0x0001
#define MPS_INTI_LEVEL	     0x000c

#define DSDT_REVISION	 2 /* 64-bit integers, for the QWord 64-bit window */
#define XSDT_REVISION	 1
#define RSDT_REVISION	 1
#define ACPI_TABLE_ALIGN 16

struct acpi_out {
	uint8_t *buf;
	size_t size, off;
	uint64_t gpa;		/* what a pointer to buf[0] holds */
	struct acpi_blobs *rec; /* NULL, or where fields to patch are recorded */
	enum acpi_blob blob;	/* which blob buf is, for the record */
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* 32-bit pointer fields hold 0 when a table lies above 4 GiB; the 64-bit
 * X_ fields carry it then. */
static uint32_t acpi_addr32(uint64_t gpa)
{
	return gpa <= UINT32_MAX ? (uint32_t)gpa : 0;
}

static int acpi_record(struct acpi_out *o, struct acpi_fixup f)
{
	if (!o->rec)
		return 0;
	if (o->rec->nfix == ACPI_MAX_FIXUPS)
		return -ENOSPC;
	f.blob = o->blob;
	o->rec->fix[o->rec->nfix++] = f;
	return 0;
}

/* Pointer fields: the value, and for a loader the field to relocate. */
static int acpi_ptr32(struct acpi_out *o, uint8_t *field, uint64_t target)
{
	put32(field, acpi_addr32(target));
	return acpi_record(o, (struct acpi_fixup){ .kind = ACPI_FIX_POINTER,
						   .size = 4,
						   .offset = (uint32_t)(field - o->buf) });
}

static int acpi_ptr64(struct acpi_out *o, uint8_t *field, uint64_t target)
{
	put64(field, target);
	return acpi_record(o, (struct acpi_fixup){ .kind = ACPI_FIX_POINTER,
						   .size = 8,
						   .offset = (uint32_t)(field - o->buf) });
}

/* t[at] makes t[0..len) sum to 0; recorded after the table's pointers, so a
 * loader recomputes it once they are patched. */
static int acpi_checksum(struct acpi_out *o, uint8_t *t, size_t len, size_t at)
{
	uint8_t sum = 0;

	t[at] = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + t[i]);
	t[at] = (uint8_t)-sum;
	return acpi_record(o, (struct acpi_fixup){ .kind = ACPI_FIX_CHECKSUM,
						   .offset = (uint32_t)(t + at - o->buf),
						   .start = (uint32_t)(t - o->buf),
						   .length = (uint32_t)len });
}

/* Reserve len zeroed bytes at a guest-physical address aligned to align
 * (a power of two). Returns the table's offset, or -ENOSPC. */
static long acpi_alloc(struct acpi_out *o, size_t len, size_t align)
{
	uint64_t at = ALIGN_UP(o->gpa + o->off, align) - o->gpa;

	if (at > o->size || len > o->size - at)
		return -ENOSPC;
	memset(o->buf + o->off, 0, at + len - o->off);
	o->off = at + len;
	return (long)at;
}

static void acpi_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, ACPI_OEM_ID, 6);
	memcpy(t + 16, ACPI_OEM_TABLE_ID, 8);
	put32(t + 24, ACPI_OEM_REVISION);
	memcpy(t + 28, ACPI_CREATOR_ID, 4);
	put32(t + 32, ACPI_CREATOR_REVISION);
}

static void acpi_gas_io(uint8_t *p, uint8_t bits, uint8_t access, uint16_t port)
{
	p[0] = GAS_SPACE_IO;
	p[1] = bits;
	p[2] = 0;
	p[3] = access;
	put64(p + 4, port);
}

/* 5.2.10: FACS has no checksum; OSPM owns the waking vector and global lock. */
static long acpi_build_facs(struct acpi_out *o, uint64_t *gpa)
{
	long at = acpi_alloc(o, FACS_LEN, FACS_ALIGN);
	uint8_t *t;

	if (at < 0)
		return at;
	t = o->buf + at;
	memcpy(t, "FACS", 4);
	put32(t + 4, FACS_LEN);
	t[FACS_VERSION] = FACS_VERSION_2;
	*gpa = o->gpa + (uint64_t)at;
	return 0;
}

/* 6.1.5 _HID, 6.2.13 _PRT, 6.4 resources: the PCI root bridge. */
static void acpi_dsdt_pci_crs(struct aml *a, const struct acpi_board *b)
{
	uint8_t res[256]; /* 130 bytes with both memory windows */
	struct aml rt;

	aml_init(&rt, res, sizeof(res));
	aml_res_word_bus(&rt, 0x00, 0xff);
	aml_res_io(&rt, BOARD_PORT_PCI_ADDR, BOARD_PORT_PCI_ADDR, 1, 8);
	aml_res_word_io(&rt, 0x0000, BOARD_PORT_PCI_ADDR - 1);
	aml_res_word_io(&rt, 0x0d00, 0xffff);
	aml_res_dword_mem(&rt, AML_MEM_NONCACHEABLE, (uint32_t)b->pci_mmio_base,
			  (uint32_t)(b->pci_mmio_end - 1));
	if (b->pci_mmio64_size)
		aml_res_qword_mem(&rt, AML_MEM_CACHEABLE, b->pci_mmio64_base,
				  b->pci_mmio64_base + b->pci_mmio64_size - 1);
	aml_name(a, "_CRS");
	aml_resource_template(a, &rt);
}

/* 6.2.13: the board's INTx routing table (the one the PCI host drives the
 * lines by), each link straight to its IOAPIC GSI (no link devices yet), so
 * the OS takes them as level, active low. */
static void acpi_dsdt_pci_prt(struct aml *a, const struct pci_intx_routing *r)
{
	aml_name(a, "_PRT");
	aml_package(a, (PCI_MAX_SLOTS - 1) * PCI_INTX_PINS);
	for (unsigned slot = 1; slot < PCI_MAX_SLOTS; slot++) {
		for (unsigned pin = 0; pin < PCI_INTX_PINS; pin++) {
			aml_package(a, 4);
			aml_integer(a, (uint64_t)slot << 16 | 0xffff); /* any function */
			aml_integer(a, pin);
			aml_integer(a, 0); /* Source: none, the index is a GSI */
			aml_integer(a, pci_intx_gsi(r, slot, pin));
			aml_end(a);
		}
	}
	aml_end(a);
}

/* No _ADR: 6.1 says a device has _HID or _ADR, not both, and a root bridge
 * is found by _HID/_SEG/_BBN (iasl warns 3073 on both). */
static void acpi_dsdt_pci0(struct aml *a, const struct acpi_board *b)
{
	aml_device(a, "PCI0");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0A03");
	aml_name(a, "_UID");
	aml_integer(a, 0);
	aml_name(a, "_BBN");
	aml_integer(a, 0);
	aml_name(a, "_SEG");
	aml_integer(a, 0);
	acpi_dsdt_pci_crs(a, b);
	if (b->intx)
		acpi_dsdt_pci_prt(a, b->intx);
	aml_end(a);
}

/* A PNP device: _HID the EISA id hid, a _UID when uid >= 0, _CRS the
 * resource template rt holds. */
static void acpi_dsdt_pnp(struct aml *a, const char *name, const char *hid, int uid, struct aml *rt)
{
	aml_device(a, name);
	aml_name(a, "_HID");
	aml_eisaid(a, hid);
	if (uid >= 0) {
		aml_name(a, "_UID");
		aml_integer(a, (uint64_t)uid);
	}
	aml_name(a, "_CRS");
	aml_resource_template(a, rt);
	aml_end(a);
}

static void acpi_dsdt_com1(struct aml *a)
{
	uint8_t res[32];
	struct aml rt;

	aml_init(&rt, res, sizeof(res));
	aml_res_io(&rt, BOARD_PORT_COM1, BOARD_PORT_COM1, 1, 8);
	aml_res_irq_noflags(&rt, BOARD_IRQ_COM1);
	acpi_dsdt_pnp(a, "COM1", "PNP0501", 1, &rt);
}

/* The i8042's two ports as PNP devices (as on PC firmware and QEMU's
 * DSDT): the keyboard with the controller's ports and IRQ 1, the PS/2
 * mouse with IRQ 12 alone. Linux's i8042 finds the controller through
 * them, and without the mouse device it assumes the aux port is absent
 * ("PS/2 appears to have AUX port disabled") and never probes the mouse. */
static void acpi_dsdt_ps2k(struct aml *a)
{
	uint8_t res[32];
	struct aml rt;

	aml_init(&rt, res, sizeof(res));
	aml_res_io(&rt, BOARD_PORT_I8042_DATA, BOARD_PORT_I8042_DATA, 1, 1);
	aml_res_io(&rt, BOARD_PORT_I8042_CMD, BOARD_PORT_I8042_CMD, 1, 1);
	aml_res_irq_noflags(&rt, BOARD_IRQ_KBD);
	acpi_dsdt_pnp(a, "PS2K", "PNP0303", -1, &rt);
}

static void acpi_dsdt_ps2m(struct aml *a)
{
	uint8_t res[16];
	struct aml rt;

	aml_init(&rt, res, sizeof(res));
	aml_res_irq_noflags(&rt, BOARD_IRQ_MOUSE);
	acpi_dsdt_pnp(a, "PS2M", "PNP0F13", -1, &rt);
}

/* 7.4.2 \_S5: {SLP_TYPa, SLP_TYPb, reserved, reserved} for PM1a/PM1b_CNT. */
static void acpi_dsdt_body(struct aml *a, const struct acpi_board *b)
{
	aml_name(a, "_S5");
	aml_package(a, 4);
	aml_integer(a, BOARD_ACPI_S5_TYP);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_end(a);

	aml_scope(a, "\\_SB");
	acpi_dsdt_pci0(a, b);
	acpi_dsdt_com1(a);
	acpi_dsdt_ps2k(a);
	acpi_dsdt_ps2m(a);
	aml_end(a);
}

static long acpi_build_dsdt(struct acpi_out *o, const struct acpi_board *b, uint64_t *gpa)
{
	long at = acpi_alloc(o, ACPI_HDR_LEN, ACPI_TABLE_ALIGN);
	struct aml a;
	long n;
	uint8_t *t;

	if (at < 0)
		return at;
	t = o->buf + at;
	aml_init(&a, o->buf + o->off, o->size - o->off);
	acpi_dsdt_body(&a, b);
	n = aml_finish(&a);
	if (n < 0)
		return n;
	if ((uint64_t)n > UINT32_MAX - ACPI_HDR_LEN)
		return -EINVAL;
	o->off += (size_t)n;
	acpi_header(t, "DSDT", (uint32_t)(ACPI_HDR_LEN + n), DSDT_REVISION);
	*gpa = o->gpa + (uint64_t)at;
	return acpi_checksum(o, t, ACPI_HDR_LEN + (size_t)n, ACPI_HDR_CHECKSUM);
}

static void acpi_fadt_pm(uint8_t *t)
{
	put16(t + FADT_SCI_INT, BOARD_IRQ_SCI);
	/* SMI_CMD 0: no SMM, ACPI is always enabled (PM1_CNT.SCI_EN reads 1). */
	put32(t + FADT_SMI_CMD, 0);
	put32(t + FADT_PM1A_EVT_BLK, BOARD_PORT_PM1A_EVT);
	put32(t + FADT_PM1A_CNT_BLK, BOARD_PORT_PM1A_CNT);
	put32(t + FADT_PM_TMR_BLK, BOARD_PORT_PM_TMR);
	t[FADT_PM1_EVT_LEN] = FADT_PM1_EVT_BYTES;
	t[FADT_PM1_CNT_LEN] = FADT_PM1_CNT_BYTES;
	t[FADT_PM_TMR_LEN] = FADT_PM_TMR_BYTES;
	/* PM1 event is two 16-bit registers (status, enable): word access. */
	acpi_gas_io(t + FADT_X_PM1A_EVT_BLK, 8 * FADT_PM1_EVT_BYTES, GAS_ACCESS_WORD,
		    BOARD_PORT_PM1A_EVT);
	acpi_gas_io(t + FADT_X_PM1A_CNT_BLK, 8 * FADT_PM1_CNT_BYTES, GAS_ACCESS_WORD,
		    BOARD_PORT_PM1A_CNT);
	acpi_gas_io(t + FADT_X_PM_TMR_BLK, 8 * FADT_PM_TMR_BYTES, GAS_ACCESS_DWORD,
		    BOARD_PORT_PM_TMR);
}

static long acpi_build_fadt(struct acpi_out *o, uint64_t dsdt, uint64_t facs, uint64_t *gpa)
{
	long at = acpi_alloc(o, FADT_LEN, ACPI_TABLE_ALIGN);
	uint8_t *t;
	int err;

	if (at < 0)
		return at;
	t = o->buf + at;
	acpi_header(t, "FACP", FADT_LEN, FADT_REVISION);
	/* Both pointer widths name the same table, so either reader agrees. */
	err = acpi_ptr32(o, t + FADT_FIRMWARE_CTRL, facs);
	err = err ?: acpi_ptr32(o, t + FADT_DSDT, dsdt);
	err = err ?: acpi_ptr64(o, t + FADT_X_FIRMWARE_CTRL, facs);
	err = err ?: acpi_ptr64(o, t + FADT_X_DSDT, dsdt);
	if (err)
		return err;
	acpi_fadt_pm(t);
	put16(t + FADT_P_LVL2_LAT, FADT_LAT_UNSUPPORTED);
	put16(t + FADT_P_LVL3_LAT, FADT_LAT_UNSUPPORTED);
	t[FADT_CENTURY] = CMOS_CENTURY;
	put16(t + FADT_IAPC_BOOT_ARCH,
	      FADT_BOOT_LEGACY_DEVICES | FADT_BOOT_8042 | FADT_BOOT_VGA_NOT_PRESENT);
	/* PWR_BUTTON clear: the fixed-feature power button (PM1 PWRBTN_STS) is
	 * how the host asks for shutdown. TMR_VAL_EXT clear: 24-bit PM timer. */
	put32(t + FADT_FLAGS,
	      FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON | FADT_F_RESET_REG_SUP);
	acpi_gas_io(t + FADT_RESET_REG, 8, GAS_ACCESS_BYTE, BOARD_PORT_RESET);
	t[FADT_RESET_VALUE] = FADT_RESET_VAL;
	t[FADT_MINOR] = FADT_MINOR_VERSION;
	memcpy(t + FADT_HYPERVISOR_ID, "KESTREL ", 8);
	*gpa = o->gpa + (uint64_t)at;
	return acpi_checksum(o, t, FADT_LEN, ACPI_HDR_CHECKSUM);
}

static size_t acpi_madt_len(unsigned ncpus)
{
	return MADT_ENTRIES + ncpus * MADT_LAPIC_LEN + MADT_IOAPIC_LEN + 2 * MADT_ISO_LEN +
	       MADT_LAPIC_NMI_LEN;
}

static uint8_t *acpi_madt_iso(uint8_t *p, uint8_t irq, uint32_t gsi, uint16_t flags)
{
	p[0] = MADT_TYPE_ISO;
	p[1] = MADT_ISO_LEN;
	p[2] = 0; /* bus: ISA */
	p[3] = irq;
	put32(p + 4, gsi);
	put16(p + 8, flags);
	return p + MADT_ISO_LEN;
}

static long acpi_build_madt(struct acpi_out *o, unsigned ncpus, uint64_t *gpa)
{
	size_t len = acpi_madt_len(ncpus);
	long at = acpi_alloc(o, len, ACPI_TABLE_ALIGN);
	uint8_t *t, *p;

	if (at < 0)
		return at;
	t = o->buf + at;
	acpi_header(t, "APIC", (uint32_t)len, MADT_REVISION);
	put32(t + MADT_LAPIC_ADDR, (uint32_t)BOARD_LAPIC_BASE);
	put32(t + MADT_FLAGS, MADT_PCAT_COMPAT); /* dual 8259s present: mask them */
	p = t + MADT_ENTRIES;
	for (unsigned i = 0; i < ncpus; i++, p += MADT_LAPIC_LEN) {
		p[0] = MADT_TYPE_LAPIC;
		p[1] = MADT_LAPIC_LEN;
		p[2] = (uint8_t)i; /* ACPI processor UID */
		p[3] = (uint8_t)i; /* APIC ID */
		put32(p + 4, MADT_LAPIC_ENABLED);
	}
	/* The IOAPIC's id follows the LAPIC ids: they share one APIC bus. */
	p[0] = MADT_TYPE_IOAPIC;
	p[1] = MADT_IOAPIC_LEN;
	p[2] = (uint8_t)ncpus;
	put32(p + 4, (uint32_t)BOARD_IOAPIC_BASE);
	put32(p + 8, 0); /* GSI base */
	p += MADT_IOAPIC_LEN;
	/* The PIT's IRQ0 is wired to IOAPIC pin 2 (pin 0 is the 8259's INTR). */
	p = acpi_madt_iso(p, 0, 2, MPS_INTI_CONFORMS);
	p = acpi_madt_iso(p, BOARD_IRQ_SCI, BOARD_IRQ_SCI, MPS_INTI_LEVEL | MPS_INTI_ACTIVE_HIGH);
	p[0] = MADT_TYPE_LAPIC_NMI;
	p[1] = MADT_LAPIC_NMI_LEN;
	p[2] = MADT_ALL_PROCESSORS;
	put16(p + 3, MPS_INTI_CONFORMS);
	p[5] = 1; /* LINT1 */
	*gpa = o->gpa + (uint64_t)at;
	return acpi_checksum(o, t, len, ACPI_HDR_CHECKSUM);
}

/* 5.2.8 XSDT (8-byte entries) and 5.2.7 RSDT (4-byte entries, for parsers
 * that predate ACPI 2.0; left out when a table lies above 4 GiB). */
static long acpi_build_sdt(struct acpi_out *o, const char *sig, unsigned esize,
			   const uint64_t *tables, unsigned n, uint64_t *gpa)
{
	size_t len = ACPI_HDR_LEN + (size_t)n * esize;
	long at;
	uint8_t *t;
	int err = 0;

	if (esize == 4)
		for (unsigned i = 0; i < n; i++)
			if (tables[i] > UINT32_MAX) {
				*gpa = 0;
				return 0;
			}
	at = acpi_alloc(o, len, ACPI_TABLE_ALIGN);
	if (at < 0)
		return at;
	t = o->buf + at;
	acpi_header(t, sig, (uint32_t)len, esize == 4 ? RSDT_REVISION : XSDT_REVISION);
	for (unsigned i = 0; i < n && !err; i++) {
		if (esize == 4)
			err = acpi_ptr32(o, t + ACPI_HDR_LEN + 4 * i, tables[i]);
		else
			err = acpi_ptr64(o, t + ACPI_HDR_LEN + 8 * i, tables[i]);
	}
	if (err)
		return err;
	*gpa = o->gpa + (uint64_t)at;
	return acpi_checksum(o, t, len, ACPI_HDR_CHECKSUM);
}

/* o->buf[0..36): the RSDP, whose pointers target the tables' blob. No RSDT
 * (a table above 4 GiB, direct boot only): RsdtAddress stays 0. */
static int acpi_build_rsdp(struct acpi_out *o, uint64_t rsdt, uint64_t xsdt)
{
	uint8_t *t = o->buf;
	int err = 0;

	memcpy(t, "RSD PTR ", 8);
	memcpy(t + 9, ACPI_OEM_ID, 6);
	t[15] = 2; /* revision: ACPI 2.0+ layout with the XSDT */
	if (rsdt)
		err = acpi_ptr32(o, t + 16, rsdt);
	put32(t + 20, RSDP_LEN);
	err = err ?: acpi_ptr64(o, t + 24, xsdt);
	/* The first checksum covers the ACPI 1.0 part, the extended one all 36. */
	err = err ?: acpi_checksum(o, t, RSDP_V1_LEN, RSDP_CHECKSUM);
	return err ?: acpi_checksum(o, t, RSDP_LEN, RSDP_EXT_CHECKSUM);
}

static int acpi_board_valid(const struct acpi_board *b)
{
	if (b->ncpus < 1 || b->ncpus > ACPI_MAX_CPUS)
		return 0;
	if (b->pci_mmio_base >= b->pci_mmio_end || b->pci_mmio_end > (1ull << 32))
		return 0;
	if (b->pci_mmio64_size && b->pci_mmio64_base > UINT64_MAX - (b->pci_mmio64_size - 1))
		return 0;
	if (b->intx && (b->intx->nlinks < 1 || b->intx->nlinks > PCI_INTX_MAX_LINKS))
		return 0;
	for (unsigned s = 1; b->intx && s < PCI_MAX_SLOTS; s++)
		for (unsigned p = 0; p < PCI_INTX_PINS; p++)
			if (pci_intx_gsi(b->intx, s, p) >= BOARD_IOAPIC_PINS)
				return 0;
	return 1;
}

/* Every table after the RSDP, in o from o->off on; *rsdt and *xsdt as the
 * RSDP will point to them. */
static long acpi_build_tables(struct acpi_out *o, const struct acpi_board *b, uint64_t *rsdt,
			      uint64_t *xsdt)
{
	uint64_t facs = 0, dsdt = 0, fadt = 0, madt = 0, sdts[2];
	long err;

	err = acpi_build_facs(o, &facs);
	if (!err)
		err = acpi_build_dsdt(o, b, &dsdt);
	if (!err)
		err = acpi_build_fadt(o, dsdt, facs, &fadt);
	if (!err)
		err = acpi_build_madt(o, b->ncpus, &madt);
	sdts[0] = fadt;
	sdts[1] = madt;
	if (!err)
		err = acpi_build_sdt(o, "XSDT", 8, sdts, 2, xsdt);
	if (!err)
		err = acpi_build_sdt(o, "RSDT", 4, sdts, 2, rsdt);
	return err;
}

long acpi_build(void *buf, size_t bufsize, uint64_t gpa_base, const struct acpi_board *b)
{
	struct acpi_out o = { .buf = buf, .size = bufsize, .gpa = gpa_base };
	uint64_t xsdt = 0, rsdt = 0;
	long err;

	if (!buf || !b || !acpi_board_valid(b) || gpa_base % 16 || gpa_base > UINT64_MAX - bufsize)
		return -EINVAL;
	/* 5.2.5.1: OSPM finds the RSDP on a 16-byte boundary of 0xE0000-0xFFFFF. */
	err = acpi_alloc(&o, RSDP_LEN, 16);
	err = err < 0 ? err : acpi_build_tables(&o, b, &rsdt, &xsdt);
	err = err < 0 ? err : acpi_build_rsdp(&o, rsdt, xsdt);
	return err < 0 ? err : (long)o.off;
}

int acpi_build_blobs(struct acpi_blobs *out, const struct acpi_board *b)
{
	struct acpi_out t, r;
	uint64_t xsdt = 0, rsdt = 0;
	long err;

	if (!out || !out->tables || !b || !acpi_board_valid(b))
		return -EINVAL;
	out->nfix = 0;
	t = (struct acpi_out){
		.buf = out->tables, .size = out->tables_size, .rec = out, .blob = ACPI_BLOB_TABLES
	};
	r = (struct acpi_out){
		.buf = out->rsdp, .size = sizeof(out->rsdp), .rec = out, .blob = ACPI_BLOB_RSDP
	};
	memset(out->rsdp, 0, sizeof(out->rsdp));
	err = acpi_build_tables(&t, b, &rsdt, &xsdt);
	err = err < 0 ? err : acpi_build_rsdp(&r, rsdt, xsdt);
	if (err < 0)
		return (int)err;
	out->tables_len = t.off;
	return 0;
}
