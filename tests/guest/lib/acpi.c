/* ACPI table discovery (ACPI 6.4 section 5.2.5: RSDP in the first KiB of
 * the EBDA or 0xE0000-0xFFFFF on 16-byte boundaries). Tables are firmware
 * input: lengths are bounded and everything must sit below 4 GiB, the part
 * the boot page tables map. */
#include "guest.h"

#define EBDA_PTR	0x40e /* BDA: EBDA segment */
#define BIOS_AREA_START 0xe0000
#define BIOS_AREA_END	0x100000
#define MAPPED_END	0x100000000ull

static const struct acpi_rsdp *rsdp_cache;
static bool rsdp_searched;

bool acpi_checksum_ok(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum = (uint8_t)(sum + *b++);
	return sum == 0;
}

static const struct acpi_rsdp *rsdp_scan(uint64_t start, uint64_t end)
{
	for (uint64_t a = start; a + 20 <= end; a += 16) {
		const struct acpi_rsdp *r = (const struct acpi_rsdp *)(uintptr_t)a;

		if (memcmp(r->signature, "RSD PTR ", 8) || !acpi_checksum_ok(r, 20))
			continue;
		/* Revision 2+: the 36-byte extended checksum must hold too. */
		if (r->revision >= 2 && (a + 36 > end || !acpi_checksum_ok(r, 36)))
			continue;
		return r;
	}
	return NULL;
}

const struct acpi_rsdp *acpi_find_rsdp(void)
{
	uint64_t ebda;

	if (rsdp_searched)
		return rsdp_cache;
	rsdp_searched = true;
	/* Real mode segment in the BDA; anything outside 0x80000-0x9ffff is junk. */
	ebda = (uint64_t) * (volatile uint16_t *)phys_ptr(EBDA_PTR) << 4;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		rsdp_cache = rsdp_scan(ebda, ebda + 1024 < 0xa0000 ? ebda + 1024 : 0xa0000);
	if (!rsdp_cache)
		rsdp_cache = rsdp_scan(BIOS_AREA_START, BIOS_AREA_END);
	return rsdp_cache;
}

const struct acpi_sdt *acpi_table_at(uint64_t addr)
{
	const struct acpi_sdt *t = (const struct acpi_sdt *)(uintptr_t)addr;

	if (addr == 0 || addr >= MAPPED_END - sizeof(*t))
		return NULL;
	if (t->length < sizeof(*t) || t->length > ACPI_TABLE_MAX || addr + t->length > MAPPED_END)
		return NULL;
	return t;
}

const struct acpi_sdt *acpi_root(void)
{
	const struct acpi_rsdp *r = acpi_find_rsdp();
	const struct acpi_sdt *t;

	if (!r)
		return NULL;
	if (r->revision >= 2 && r->xsdt_addr) {
		t = acpi_table_at(r->xsdt_addr);
		if (t && !memcmp(t->signature, "XSDT", 4))
			return t;
	}
	t = acpi_table_at(r->rsdt_addr);
	return t && !memcmp(t->signature, "RSDT", 4) ? t : NULL;
}

uint64_t acpi_field(const struct acpi_sdt *t, unsigned off, unsigned size)
{
	const uint8_t *b = (const uint8_t *)t;
	uint64_t v = 0;

	if (!t || size > 8 || (uint64_t)off + size > t->length)
		return 0;
	for (unsigned i = size; i--;)
		v = v << 8 | b[off + i];
	return v;
}

static const struct acpi_sdt *dsdt_from_fadt(void)
{
	const struct acpi_sdt *fadt = acpi_find_table("FACP");
	uint64_t addr = acpi_field(fadt, FADT_X_DSDT, 8);

	if (!addr)
		addr = acpi_field(fadt, FADT_DSDT, 4);
	return acpi_table_at(addr);
}

const struct acpi_sdt *acpi_find_table(const char sig[4])
{
	const struct acpi_sdt *root = acpi_root();
	unsigned esize, n;

	if (!memcmp(sig, "DSDT", 4))
		return dsdt_from_fadt();
	if (!root)
		return NULL;
	esize = root->signature[0] == 'X' ? 8 : 4;
	n = (root->length - sizeof(*root)) / esize;
	for (unsigned i = 0; i < n; i++) {
		uint64_t addr = acpi_field(root, sizeof(*root) + i * esize, esize);
		const struct acpi_sdt *t = acpi_table_at(addr);

		if (t && !memcmp(t->signature, sig, 4))
			return t;
	}
	return NULL;
}
