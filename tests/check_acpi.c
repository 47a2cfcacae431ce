/* ACPI tables and the AML builder: checksums, links, MADT/FADT contents,
 * PkgLength boundaries, buffer limits, and a round trip through iasl. Offsets
 * here are typed in from the ACPI 6.4 tables, independent of src/boot/acpi.c. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kestrel/acpi.h"
#include "kestrel/aml.h"
#include "kestrel/board.h"
#include "kestrel/pci.h"

#include "check_util.h"

#define BUFSZ 0x20000
static const unsigned test_ncpus[] = { 1, 4, 64 };
static struct pci_intx_routing test_intx; /* the board's: 8 links from GSI 16 */

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return rd16(p) | (uint32_t)rd16(p + 2) << 16;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

static struct acpi_board board(unsigned ncpus, uint64_t mmio64_size)
{
	struct acpi_board b = {
		.ncpus = ncpus,
		.pci_mmio_base = BOARD_PCI_MMIO_BASE,
		.pci_mmio_end = BOARD_PCI_MMIO_END,
		.pci_mmio64_base = 0x8000000000ull,
		.pci_mmio64_size = mmio64_size,
		.intx = &test_intx,
	};
	ck_assert_int_eq(
		pci_intx_swizzle(&test_intx, BOARD_PCI_INTX_LINKS, BOARD_PCI_INTX_GSI_BASE), 0);
	return b;
}

struct built {
	uint8_t *buf;
	long len;
	uint64_t base;
};

static struct built build(unsigned ncpus, uint64_t mmio64_size)
{
	struct acpi_board b = board(ncpus, mmio64_size);
	struct built t = { .buf = calloc(1, BUFSZ), .base = BOARD_ACPI_BASE };

	ck_assert_ptr_nonnull(t.buf);
	t.len = acpi_build(t.buf, BUFSZ, t.base, &b);
	ck_assert_int_gt(t.len, 0);
	ck_assert_int_le(t.len, BOARD_ACPI_SIZE);
	return t;
}

/* A table at guest-physical gpa: inside the built region, signature and
 * checksum right, the length field within bounds. */
static const uint8_t *table_at(const struct built *t, uint64_t gpa, const char *sig)
{
	const uint8_t *p;
	uint32_t len;

	ck_assert_uint_ge(gpa, t->base);
	ck_assert_uint_le(gpa - t->base + 36, (uint64_t)t->len);
	p = t->buf + (gpa - t->base);
	ck_assert_msg(!memcmp(p, sig, 4), "expected %s at %#llx", sig, (unsigned long long)gpa);
	len = rd32(p + 4);
	ck_assert_uint_ge(len, 36);
	ck_assert_uint_le(gpa - t->base + len, (uint64_t)t->len);
	ck_assert_msg(sum8(p, len) == 0, "%s checksum", sig);
	ck_assert(!memcmp(p + 10, "KESTRL", 6));
	ck_assert(!memcmp(p + 16, "KESTREL ", 8));
	ck_assert(!memcmp(p + 28, "KSTL", 4));
	return p;
}

static const uint8_t *find_sdt(const struct built *t, const char *sig)
{
	const uint8_t *xsdt = table_at(t, rd64(t->buf + 24), "XSDT");
	uint32_t n = (rd32(xsdt + 4) - 36) / 8;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t gpa = rd64(xsdt + 36 + 8 * i);
		if (!memcmp(t->buf + (gpa - t->base), sig, 4))
			return table_at(t, gpa, sig);
	}
	ck_abort_msg("%s not in XSDT", sig);
	return NULL;
}

START_TEST(rsdp_and_links)
{
	struct built t = build(test_ncpus[_i], 0x4000000000ull);
	const uint8_t *r = t.buf, *xsdt, *rsdt, *fadt, *facs;
	uint64_t facs_gpa;

	/* 5.2.5.3 RSDP */
	ck_assert(!memcmp(r, "RSD PTR ", 8));
	ck_assert_int_eq(sum8(r, 20), 0);
	ck_assert_int_eq(sum8(r, 36), 0);
	ck_assert(!memcmp(r + 9, "KESTRL", 6));
	ck_assert_int_eq(r[15], 2);
	ck_assert_uint_eq(rd32(r + 20), 36);
	ck_assert_uint_eq(t.base % 16, 0);

	xsdt = table_at(&t, rd64(r + 24), "XSDT");
	ck_assert_uint_eq(rd32(xsdt + 4), 36 + 2 * 8);
	rsdt = table_at(&t, rd32(r + 16), "RSDT");
	ck_assert_uint_eq(rd32(rsdt + 4), 36 + 2 * 4);
	for (int i = 0; i < 2; i++)
		ck_assert_uint_eq(rd64(xsdt + 36 + 8 * i), rd32(rsdt + 36 + 4 * i));

	fadt = find_sdt(&t, "FACP");
	find_sdt(&t, "APIC");
	ck_assert_uint_eq(rd32(fadt + 4), 276);
	ck_assert_int_eq(fadt[8], 6);
	/* DSDT and X_DSDT, FIRMWARE_CTRL and X_FIRMWARE_CTRL agree. */
	ck_assert_uint_eq(rd32(fadt + 40), rd64(fadt + 140));
	ck_assert_uint_eq(rd32(fadt + 36), rd64(fadt + 132));
	ck_assert_int_eq(table_at(&t, rd64(fadt + 140), "DSDT")[8], 2);

	facs_gpa = rd64(fadt + 132);
	ck_assert_uint_eq(facs_gpa % 64, 0);
	ck_assert_uint_le(facs_gpa - t.base + 64, (uint64_t)t.len);
	facs = t.buf + (facs_gpa - t.base);
	ck_assert(!memcmp(facs, "FACS", 4));
	ck_assert_uint_eq(rd32(facs + 4), 64);
	free(t.buf);
}
END_TEST

START_TEST(madt_entries)
{
	unsigned ncpus = test_ncpus[_i];
	struct built t = build(ncpus, 0);
	const uint8_t *m = find_sdt(&t, "APIC");
	uint32_t len = rd32(m + 4), off = 44;
	unsigned lapics = 0, ioapics = 0, isos = 0, nmis = 0;

	ck_assert_uint_eq(rd32(m + 36), 0xfee00000u);
	ck_assert_uint_eq(rd32(m + 40), 1); /* PCAT_COMPAT */
	while (off < len) {
		const uint8_t *e = m + off;

		ck_assert_uint_ge(e[1], 2);
		ck_assert_uint_le(off + e[1], len);
		switch (e[0]) {
		case 0:
			ck_assert_uint_eq(e[1], 8);
			ck_assert_uint_eq(e[2], lapics); /* UID */
			ck_assert_uint_eq(e[3], lapics); /* APIC id */
			ck_assert_uint_eq(rd32(e + 4), 1);
			lapics++;
			break;
		case 1:
			ck_assert_uint_eq(e[1], 12);
			ck_assert_uint_eq(e[2], ncpus);
			ck_assert_uint_eq(rd32(e + 4), 0xfec00000u);
			ck_assert_uint_eq(rd32(e + 8), 0);
			ioapics++;
			break;
		case 2:
			ck_assert_uint_eq(e[1], 10);
			ck_assert_uint_eq(e[2], 0);
			if (e[3] == 0) {
				ck_assert_uint_eq(rd32(e + 4), 2);
				ck_assert_uint_eq(rd16(e + 8), 0);
			} else {
				ck_assert_uint_eq(e[3], 9);
				ck_assert_uint_eq(rd32(e + 4), 9);
				ck_assert_uint_eq(rd16(e + 8), 0x000d);
			}
			isos++;
			break;
		case 4:
			ck_assert_uint_eq(e[1], 6);
			ck_assert_uint_eq(e[2], 0xff);
			ck_assert_uint_eq(e[5], 1);
			nmis++;
			break;
		default: ck_abort_msg("unexpected MADT entry type %u", e[0]);
		}
		off += e[1];
	}
	ck_assert_uint_eq(off, len);
	ck_assert_uint_eq(lapics, ncpus);
	ck_assert_uint_eq(ioapics, 1);
	ck_assert_uint_eq(isos, 2);
	ck_assert_uint_eq(nmis, 1);
	free(t.buf);
}
END_TEST

static void check_gas_io(const uint8_t *g, unsigned bits, uint64_t port)
{
	ck_assert_uint_eq(g[0], 1); /* SystemIO */
	ck_assert_uint_eq(g[1], bits);
	ck_assert_uint_eq(g[2], 0);
	ck_assert_uint_eq(rd64(g + 4), port);
}

START_TEST(fadt_fields)
{
	struct built t = build(4, 0);
	const uint8_t *f = find_sdt(&t, "FACP");
	uint32_t flags = rd32(f + 112);

	ck_assert_uint_eq(rd16(f + 46), BOARD_IRQ_SCI);
	ck_assert_uint_eq(rd32(f + 48), 0); /* SMI_CMD */
	ck_assert_uint_eq(f[52], 0);
	ck_assert_uint_eq(f[53], 0);
	ck_assert_uint_eq(rd32(f + 56), 0x600);
	ck_assert_uint_eq(rd32(f + 64), 0x604);
	ck_assert_uint_eq(rd32(f + 76), 0x608);
	ck_assert_uint_eq(rd32(f + 80), 0); /* GPE0 */
	ck_assert_uint_eq(f[88], 4);
	ck_assert_uint_eq(f[89], 2);
	ck_assert_uint_eq(f[91], 4);
	ck_assert_uint_eq(f[92], 0);
	ck_assert_uint_eq(f[108], 0x32);
	ck_assert_uint_eq(rd16(f + 109), 0x7); /* legacy devices, 8042, no VGA */
	ck_assert(flags & (1u << 0));	       /* WBINVD */
	ck_assert(flags & (1u << 2));	       /* PROC_C1 */
	ck_assert(!(flags & (1u << 4)));       /* fixed power button present */
	ck_assert(flags & (1u << 5));	       /* no sleep button */
	ck_assert(!(flags & (1u << 8)));       /* 24-bit PM timer */
	ck_assert(flags & (1u << 10));	       /* RESET_REG_SUP */
	ck_assert(!(flags & (1u << 20)));      /* not hardware-reduced */
	check_gas_io(f + 116, 8, 0xcf9);
	ck_assert_uint_eq(f[128], 0x06);
	check_gas_io(f + 148, 32, 0x600);
	check_gas_io(f + 172, 16, 0x604);
	check_gas_io(f + 208, 32, 0x608);
	ck_assert_uint_eq(f[220], 0); /* X_GPE0: none */
	ck_assert_uint_eq(rd64(f + 224), 0);
	free(t.buf);
}
END_TEST

/* The QWord window is one 46-byte descriptor; none when the size is 0. */
START_TEST(mmio64_window_optional)
{
	struct built with = build(4, 0x4000000000ull), without = build(4, 0);
	uint32_t a = rd32(find_sdt(&with, "FACP") + 40), b = rd32(find_sdt(&without, "FACP") + 40);
	const uint8_t *dw = table_at(&with, a, "DSDT"), *dwo = table_at(&without, b, "DSDT");

	ck_assert_uint_eq(rd32(dw + 4), rd32(dwo + 4) + 46);
	free(with.buf);
	free(without.buf);
}
END_TEST

START_TEST(bad_board)
{
	uint8_t *buf = malloc(BUFSZ);
	struct acpi_board b;

	b = board(0, 0);
	ck_assert_int_eq(acpi_build(buf, BUFSZ, BOARD_ACPI_BASE, &b), -EINVAL);
	b = board(65, 0);
	ck_assert_int_eq(acpi_build(buf, BUFSZ, BOARD_ACPI_BASE, &b), -EINVAL);
	b = board(1, 0);
	b.pci_mmio_end = b.pci_mmio_base;
	ck_assert_int_eq(acpi_build(buf, BUFSZ, BOARD_ACPI_BASE, &b), -EINVAL);
	b = board(1, 0);
	b.pci_mmio_end = (1ull << 32) + 1;
	ck_assert_int_eq(acpi_build(buf, BUFSZ, BOARD_ACPI_BASE, &b), -EINVAL);
	b = board(1, 0);
	b.pci_mmio64_base = ~0ull - 10;
	b.pci_mmio64_size = 12;
	ck_assert_int_eq(acpi_build(buf, BUFSZ, BOARD_ACPI_BASE, &b), -EINVAL);
	b = board(1, 0);
	test_intx.gsi[3] = BOARD_IOAPIC_PINS; /* a link past the IOAPIC */
	ck_assert_int_eq(acpi_build(buf, BUFSZ, BOARD_ACPI_BASE, &b), -EINVAL);
	b = board(1, 0);
	test_intx.nlinks = 0;
	ck_assert_int_eq(acpi_build(buf, BUFSZ, BOARD_ACPI_BASE, &b), -EINVAL);
	b = board(1, 0);
	ck_assert_int_eq(acpi_build(buf, BUFSZ, BOARD_ACPI_BASE + 8, &b), -EINVAL);
	ck_assert_int_eq(acpi_build(NULL, BUFSZ, BOARD_ACPI_BASE, &b), -EINVAL);
	ck_assert_int_eq(acpi_build(buf, BUFSZ, BOARD_ACPI_BASE, NULL), -EINVAL);
	/* The widest 32-bit window still works: 0xFFFFFFFF is its last byte. */
	b.pci_mmio_end = 1ull << 32;
	ck_assert_int_gt(acpi_build(buf, BUFSZ, BOARD_ACPI_BASE, &b), 0);
	free(buf);
}
END_TEST

/* The _PRT is the routing table: an entry moved in the table moves in the
 * AML. Package (4) { 0x0005FFFF, One, Zero, <GSI> } is PackageOp, PkgLength,
 * NumElements, DWordPrefix 0x0005FFFF, OneOp, ZeroOp, BytePrefix GSI (ACPI
 * 6.4, 20.2.5.4, 20.2.3). Without a table there is no _PRT. */
static bool dsdt_has(const struct built *t, const uint8_t *pat, size_t n)
{
	const uint8_t *d = table_at(t, rd32(find_sdt(t, "FACP") + 40), "DSDT");

	for (size_t i = 0; i + n <= rd32(d + 4); i++)
		if (!memcmp(d + i, pat, n))
			return true;
	return false;
}

START_TEST(prt_from_routing_table)
{
	/* slot 5, INTB#: link (5 + 1) % 8 = 6 -> GSI 22 */
	uint8_t pat[] = { 0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x05, 0x00, 0x01, 0x00, 0x0a, 22 };
	struct acpi_board b = board(1, 0);
	struct built t = build(1, 0);
	uint8_t *buf = calloc(1, BUFSZ);

	ck_assert(dsdt_has(&t, pat, sizeof(pat)));
	free(t.buf);
	test_intx.link[5][1] = 2; /* now link 2 -> GSI 18 */
	t = (struct built){ .buf = buf, .base = BOARD_ACPI_BASE };
	t.len = acpi_build(buf, BUFSZ, BOARD_ACPI_BASE, &b);
	ck_assert_int_gt(t.len, 0);
	ck_assert(!dsdt_has(&t, pat, sizeof(pat)));
	pat[sizeof(pat) - 1] = 18;
	ck_assert(dsdt_has(&t, pat, sizeof(pat)));
	b.intx = NULL;
	t.len = acpi_build(buf, BUFSZ, BOARD_ACPI_BASE, &b);
	ck_assert_int_gt(t.len, 0);
	ck_assert(!dsdt_has(&t, pat, sizeof(pat)));
	ck_assert(!dsdt_has(&t, (const uint8_t *)"_PRT", 4));
	free(buf);
}
END_TEST

/* Every size short of what is needed fails with -ENOSPC and writes nothing
 * past the size it was given. */
START_TEST(too_small)
{
	unsigned ncpus = test_ncpus[_i];
	struct acpi_board b = board(ncpus, 0x4000000000ull);
	struct built t = build(ncpus, b.pci_mmio64_size);
	size_t need = (size_t)t.len, guard = 64;
	uint8_t *buf = malloc(need + guard);

	for (size_t size = 0; size < need; size++) {
		memset(buf, 0xa5, need + guard);
		ck_assert_int_eq(acpi_build(buf, size, BOARD_ACPI_BASE, &b), -ENOSPC);
		size_t i = size;

		while (i < need + guard && buf[i] == 0xa5)
			i++;
		ck_assert_msg(i == need + guard, "size %zu: wrote byte %zu", size, i);
	}
	ck_assert_int_eq(acpi_build(buf, need, BOARD_ACPI_BASE, &b), (long)need);
	ck_assert(!memcmp(buf, t.buf, need));
	free(buf);
	free(t.buf);
}
END_TEST

/* Tables placed above 4 GiB: 32-bit pointers become 0, no RSDT. */
START_TEST(above_4g)
{
	struct acpi_board b = board(2, 0);
	uint8_t *buf = calloc(1, BUFSZ);
	struct built t = { .buf = buf, .base = 0x100000000ull };
	const uint8_t *f;

	t.len = acpi_build(buf, BUFSZ, t.base, &b);
	ck_assert_int_gt(t.len, 0);
	ck_assert_int_eq(sum8(buf, 20), 0);
	ck_assert_int_eq(sum8(buf, 36), 0);
	ck_assert_uint_eq(rd32(buf + 16), 0);
	f = find_sdt(&t, "FACP");
	ck_assert_uint_eq(rd32(f + 36), 0);
	ck_assert_uint_eq(rd32(f + 40), 0);
	table_at(&t, rd64(f + 140), "DSDT");
	free(buf);
}
END_TEST

static void pkglength_is(uint32_t value, const uint8_t *want, int n)
{
	uint8_t out[4];

	ck_assert_int_eq(aml_pkglength_encode(out, value), n);
	ck_assert_msg(!memcmp(out, want, (size_t)n), "PkgLength %u", value);
}

/* 20.2.4 PkgLength */
START_TEST(pkglength_boundaries)
{
	uint8_t out[4];

	pkglength_is(63, (const uint8_t[]){ 0x3f }, 1);
	pkglength_is(64, (const uint8_t[]){ 0x40, 0x04 }, 2);
	pkglength_is(4095, (const uint8_t[]){ 0x4f, 0xff }, 2);
	pkglength_is(4096, (const uint8_t[]){ 0x80, 0x00, 0x01 }, 3);
	pkglength_is(1048575, (const uint8_t[]){ 0x8f, 0xff, 0xff }, 3);
	pkglength_is(1048576, (const uint8_t[]){ 0xc0, 0x00, 0x00, 0x01 }, 4);
	pkglength_is((1u << 28) - 1, (const uint8_t[]){ 0xcf, 0xff, 0xff, 0xff }, 4);
	ck_assert_int_eq(aml_pkglength_encode(out, 1u << 28), -EINVAL);

	/* The length counts its own bytes: a 63-byte body no longer fits one. */
	ck_assert_uint_eq(aml_pkglength_size(62), 1);
	ck_assert_uint_eq(aml_pkglength_size(63), 2);
	ck_assert_uint_eq(aml_pkglength_size(4093), 2);
	ck_assert_uint_eq(aml_pkglength_size(4094), 3);
	ck_assert_uint_eq(aml_pkglength_size(1048572), 3);
	ck_assert_uint_eq(aml_pkglength_size(1048573), 4);
	ck_assert_uint_eq(aml_pkglength_size((1u << 28) - 5), 4);
	ck_assert_uint_eq(aml_pkglength_size((1u << 28) - 4), 0);
}
END_TEST

static uint32_t pkglength_decode(const uint8_t *p, unsigned *n)
{
	uint32_t v;

	*n = 1 + (p[0] >> 6);
	if (*n == 1)
		return p[0] & 0x3f;
	v = p[0] & 0x0f;
	for (unsigned i = 1; i < *n; i++)
		v |= (uint32_t)p[i] << (4 + 8 * (i - 1));
	return v;
}

/* Buffers of sizes around each PkgLength step: the encoded length always
 * covers exactly the PkgLength and the body. */
START_TEST(pkglength_in_objects)
{
	static const size_t sizes[] = { 0,    55,   56,	     57,      58,      59,	60,
					61,   4085, 4086,    4087,    4088,    4089,	4090,
					4091, 4092, 1048564, 1048565, 1048566, 1048567, 1048568 };
	size_t cap = 1100000;
	uint8_t *out = malloc(cap), *data = calloc(1, cap);

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct aml a;
		unsigned n;
		long len;

		aml_init(&a, out, cap);
		aml_buffer(&a, data, sizes[i]);
		len = aml_finish(&a);
		ck_assert_int_gt(len, 0);
		ck_assert_uint_eq(out[0], 0x11);
		ck_assert_uint_eq(pkglength_decode(out + 1, &n), (uint32_t)len - 1);
		ck_assert_uint_eq(n, aml_pkglength_size((size_t)len - 1 - n));
	}
	free(out);
	free(data);
}
END_TEST

static void aml_is(struct aml *a, const uint8_t *want, size_t n)
{
	long len = aml_finish(a);

	ck_assert_int_eq(len, (long)n);
	ck_assert(!memcmp(a->buf, want, n));
}

START_TEST(aml_encodings)
{
	uint8_t buf[256];
	struct aml a;
	uint32_t v;

#define EXPECT(call, ...)                                      \
	do {                                                   \
		static const uint8_t want[] = { __VA_ARGS__ }; \
		aml_init(&a, buf, sizeof(buf));                \
		call;                                          \
		aml_is(&a, want, sizeof(want));                \
	} while (0)

	EXPECT(aml_integer(&a, 0), 0x00);
	EXPECT(aml_integer(&a, 1), 0x01);
	EXPECT(aml_integer(&a, 2), 0x0a, 0x02);
	EXPECT(aml_integer(&a, 0xff), 0x0a, 0xff);
	EXPECT(aml_integer(&a, 0x100), 0x0b, 0x00, 0x01);
	EXPECT(aml_integer(&a, 0x10000), 0x0c, 0x00, 0x00, 0x01, 0x00);
	EXPECT(aml_integer(&a, 0x100000000ull), 0x0e, 0, 0, 0, 0, 1, 0, 0, 0);
	EXPECT(aml_string(&a, "ab"), 0x0d, 'a', 'b', 0x00);
	EXPECT(aml_namestring(&a, "_S5"), '_', 'S', '5', '_');
	EXPECT(aml_namestring(&a, "\\_SB.PCI0"), 0x5c, 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I',
	       '0');
	EXPECT(aml_namestring(&a, "\\_SB.PCI0.S08"), 0x5c, 0x2f, 3, '_', 'S', 'B', '_', 'P', 'C',
	       'I', '0', 'S', '0', '8', '_');
	EXPECT(aml_namestring(&a, "^^AB"), 0x5e, 0x5e, 'A', 'B', '_', '_');
	EXPECT(aml_namestring(&a, "\\"), 0x5c, 0x00);
	EXPECT(aml_eisaid(&a, "PNP0A03"), 0x0c, 0x41, 0xd0, 0x0a, 0x03);
	EXPECT((aml_device(&a, "COM1"), aml_end(&a)), 0x5b, 0x82, 0x05, 'C', 'O', 'M', '1');
	EXPECT((aml_package(&a, 2), aml_integer(&a, 0), aml_integer(&a, 1), aml_end(&a)), 0x12,
	       0x04, 0x02, 0x00, 0x01);
	EXPECT((aml_name(&a, "X"), aml_integer(&a, 5)), 0x08, 'X', '_', '_', '_', 0x0a, 0x05);
	ck_assert_int_eq(aml_eisaid_value("PNP0501", &v), 0);
	ck_assert_uint_eq(v, 0x0105d041);
	ck_assert_int_eq(aml_eisaid_value("pnp0501", &v), -EINVAL);
	ck_assert_int_eq(aml_eisaid_value("PNP05", &v), -EINVAL);
#undef EXPECT
}
END_TEST

static long aml_result(void (*fn)(struct aml *))
{
	uint8_t buf[64];
	struct aml a;

	aml_init(&a, buf, sizeof(buf));
	fn(&a);
	return aml_finish(&a);
}

static void bad_lead(struct aml *a)
{
	aml_namestring(a, "1ABC");
}
static void too_long(struct aml *a)
{
	aml_namestring(a, "ABCDE");
}
static void lower(struct aml *a)
{
	aml_namestring(a, "ab");
}
static void empty_seg(struct aml *a)
{
	aml_namestring(a, "A..B");
}
static void trailing_dot(struct aml *a)
{
	aml_namestring(a, "AB.");
}
static void unclosed(struct aml *a)
{
	aml_scope(a, "\\_SB");
}
static void extra_end(struct aml *a)
{
	aml_end(a);
}
static void big_package(struct aml *a)
{
	aml_package(a, 256);
}
static void irq16(struct aml *a)
{
	aml_res_irq_noflags(a, 16);
}
static void word_full(struct aml *a)
{
	aml_res_word_io(a, 0, 0xffff);
}
static void inverted(struct aml *a)
{
	aml_res_dword_mem(a, AML_MEM_NONCACHEABLE, 2, 1);
}
static void overflow(struct aml *a)
{
	for (int i = 0; i < 100; i++)
		aml_integer(a, 0x1234);
}

static void too_deep(struct aml *a)
{
	for (int i = 0; i <= AML_MAX_DEPTH; i++)
		aml_package(a, 0);
}

START_TEST(aml_errors)
{
	ck_assert_int_eq(aml_result(bad_lead), -EINVAL);
	ck_assert_int_eq(aml_result(too_long), -EINVAL);
	ck_assert_int_eq(aml_result(lower), -EINVAL);
	ck_assert_int_eq(aml_result(empty_seg), -EINVAL);
	ck_assert_int_eq(aml_result(trailing_dot), -EINVAL);
	ck_assert_int_eq(aml_result(unclosed), -EINVAL);
	ck_assert_int_eq(aml_result(extra_end), -EINVAL);
	ck_assert_int_eq(aml_result(big_package), -EINVAL);
	ck_assert_int_eq(aml_result(irq16), -EINVAL);
	ck_assert_int_eq(aml_result(word_full), -EINVAL);
	ck_assert_int_eq(aml_result(inverted), -EINVAL);
	ck_assert_int_eq(aml_result(overflow), -ENOSPC);
	ck_assert_int_eq(aml_result(too_deep), -EINVAL);
}
END_TEST

/* ---- iasl round trip ---- */

static int run(const char *cmd, char *out, size_t outsz)
{
	FILE *p = popen(cmd, "r");
	size_t n = 0, r;
	int st;

	ck_assert_ptr_nonnull(p);
	while (n + 1 < outsz && (r = fread(out + n, 1, outsz - 1 - n, p)) > 0)
		n += r;
	out[n] = 0;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *read_whole(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *s;
	long n;

	ck_assert_msg(f != NULL, "open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	s = malloc((size_t)n + 1);
	ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
	s[n] = 0;
	fclose(f);
	*len = (size_t)n;
	return s;
}

static void write_table(const char *dir, const char *name, const uint8_t *t)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(t, 1, rd32(t + 4), f), rd32(t + 4));
	fclose(f);
}

/* Disassemble; then compile the disassembly back (no optimisations) and
 * expect iasl's own bytes to equal ours after the header, where iasl stamps
 * its own creator id and revision (the FACS has no such header). */
static char *iasl_round_trip(const char *dir, const char *name, const uint8_t *t, size_t skip)
{
	char cmd[512], out[16384], path[256];
	size_t len, blen;
	char *dsl, *bin;
	int rc;

	write_table(dir, name, t);
	snprintf(cmd, sizeof(cmd), "cd %s && iasl -d %s.dat 2>&1", dir, name);
	rc = run(cmd, out, sizeof(out));
	ck_assert_msg(rc == 0, "iasl -d %s: %s", name, out);
	ck_assert_msg(!strstr(out, "Error") && !strstr(out, "Warning") && !strstr(out, "checksum"),
		      "iasl -d %s: %s", name, out);
	snprintf(path, sizeof(path), "%s/%s.dsl", dir, name);
	dsl = read_whole(path, &len);

	snprintf(cmd, sizeof(cmd), "cd %s && iasl -oa -p re_%s %s.dsl 2>&1", dir, name, name);
	rc = run(cmd, out, sizeof(out));
	ck_assert_msg(rc == 0 && strstr(out, "0 Errors, 0 Warnings, 0 Remarks"), "iasl %s.dsl: %s",
		      name, out);
	snprintf(path, sizeof(path), "%s/re_%s.aml", dir, name);
	bin = read_whole(path, &blen);
	ck_assert_uint_eq(blen, rd32(t + 4));
	ck_assert_msg(!memcmp(bin + skip, t + skip, blen - skip), "%s: differs from iasl's", name);
	free(bin);
	return dsl;
}

START_TEST(iasl_accepts_tables)
{
	struct built t = build(test_ncpus[_i], 0x4000000000ull);
	const uint8_t *fadt;
	char dir[] = "/tmp/check_acpi.XXXXXX", *dsl;

	if (system("command -v iasl >/dev/null 2>&1") != 0) {
		fprintf(stderr, "check_acpi: iasl not found (apt-get install acpica-tools): "
				"skipping the disassembler round trip\n");
		free(t.buf);
		return;
	}
	ck_assert_ptr_nonnull(mkdtemp(dir));
	fadt = find_sdt(&t, "FACP");
	dsl = iasl_round_trip(dir, "dsdt", table_at(&t, rd64(fadt + 140), "DSDT"), 36);
	ck_assert(strstr(dsl, "_S5_") != NULL);
	ck_assert(strstr(dsl, "PNP0A03") != NULL);
	ck_assert(strstr(dsl, "_PRT") != NULL);
	ck_assert(strstr(dsl, "Package (0x7C)") != NULL); /* 31 slots x 4 pins */
	ck_assert(strstr(dsl, "0x001FFFFF") != NULL);
	ck_assert(strstr(dsl, "PNP0501") != NULL);
	/* The i8042's keyboard and mouse ports: Linux probes the mouse only
	 * when the aux device is there. */
	ck_assert(strstr(dsl, "PNP0303") != NULL);
	ck_assert(strstr(dsl, "PNP0F13") != NULL);
	ck_assert(strstr(dsl, "{12}") != NULL); /* the mouse's IRQNoFlags */
	ck_assert(strstr(dsl, "QWordMemory") != NULL);
	free(dsl);
	free(iasl_round_trip(dir, "facp", fadt, 36));
	free(iasl_round_trip(dir, "apic", find_sdt(&t, "APIC"), 36));
	free(iasl_round_trip(dir, "xsdt", t.buf + (rd64(t.buf + 24) - t.base), 36));
	free(iasl_round_trip(dir, "rsdt", t.buf + (rd32(t.buf + 16) - t.base), 36));
	free(iasl_round_trip(dir, "facs", t.buf + (rd64(fadt + 132) - t.base), 0));
	rm_tree(dir);
	free(t.buf);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("acpi");
	int n = (int)(sizeof(test_ncpus) / sizeof(test_ncpus[0]));
	TCase *tc;

	tc = ADD_TCASE(s, "core", NULL, NULL, 120, fadt_fields, mmio64_window_optional, bad_board,
		       prt_from_routing_table, above_4g, pkglength_boundaries, pkglength_in_objects,
		       aml_encodings, aml_errors);
	tcase_add_loop_test(tc, rsdp_and_links, 0, n);
	tcase_add_loop_test(tc, madt_entries, 0, n);
	tcase_add_loop_test(tc, too_small, 0, n);
	tcase_add_loop_test(tc, iasl_accepts_tables, 0, n);
	return run_suite(s);
}
