/* acpi.bin: RSDP -> XSDT/RSDT -> FACP, APIC, DSDT with checksums; CPUs in
 * the MADT; the PM timer runs; then S5 through PM1a_CNT (ACPI 6.4 section
 * 4.8.3.2.1: SLP_TYP bits 12:10, SLP_EN bit 13). The VMM should power off
 * (exit 0); coming back is a failure. */
#include "guest.h"

#define MADT_ENTRIES	  44
#define MADT_LAPIC	  0
#define MADT_X2APIC	  9
#define PM1_SLP_TYP_SHIFT 10
#define PM1_SLP_TYP_MASK  (7u << PM1_SLP_TYP_SHIFT)
#define PM1_SLP_EN	  (1u << 13)
#define PM1_SCI_EN	  (1u << 0)
#define AML_NAME_OP	  0x08
#define AML_PACKAGE_OP	  0x12
#define AML_ROOT_CHAR	  0x5c

static const struct acpi_sdt *check_table(const char *sig)
{
	const struct acpi_sdt *t = acpi_find_table(sig);

	if (!check(t != NULL, "%.4s found", sig))
		return NULL;
	gprintf("%.4s at %p length %u rev %u oem \"%.6s\"\n", sig, (const void *)t, t->length,
		t->revision, t->oem_id);
	check(acpi_checksum_ok(t, t->length), "%.4s checksum", sig);
	return t;
}

static void check_rsdp(void)
{
	const struct acpi_rsdp *r = acpi_find_rsdp();
	const struct acpi_sdt *root;

	if (!check(r != NULL, "RSDP found with a valid checksum"))
		return;
	gprintf("RSDP at %p rev %u oem \"%.6s\" rsdt %#x xsdt %#lx\n", (const void *)r, r->revision,
		r->oem_id, r->rsdt_addr, r->revision >= 2 ? r->xsdt_addr : 0);
	root = acpi_root();
	if (check(root != NULL, "root table (XSDT or RSDT) found"))
		check(acpi_checksum_ok(root, root->length), "%.4s checksum (length %u)",
		      root->signature, root->length);
}

/* Enabled local APICs and x2APICs (ACPI 6.4 sections 5.2.12.2 and .12). */
static unsigned madt_cpus(const struct acpi_sdt *madt)
{
	unsigned off = MADT_ENTRIES, cpus = 0, entries = 0;

	while (off + 2 <= madt->length) {
		unsigned type = (unsigned)acpi_field(madt, off, 1);
		unsigned len = (unsigned)acpi_field(madt, off + 1, 1);

		if (len < 2 || off + len > madt->length)
			break;
		if (type == MADT_LAPIC && len >= 8) {
			entries++;
			cpus += acpi_field(madt, off + 4, 4) & 1;
		} else if (type == MADT_X2APIC && len >= 16) {
			entries++;
			cpus += acpi_field(madt, off + 8, 4) & 1;
		}
		off += len;
	}
	gprintf("madt: %u processor entries, %u enabled\n", entries, cpus);
	return cpus;
}

/* SLP_TYPa for S5: the first element of Name(_S5_, Package(){...}) in the
 * DSDT (ACPI 6.4 sections 7.4.2, 20.2.5.4 DefPackage). 0 if absent. */
static unsigned dsdt_s5_typ(const struct acpi_sdt *dsdt, bool *found)
{
	const uint8_t *b = (const uint8_t *)dsdt;
	uint32_t len = dsdt->length;

	*found = false;
	for (uint32_t i = sizeof(*dsdt) + 1; i + 4 + 4 <= len; i++) {
		uint32_t p;
		unsigned pkglen_bytes;

		if (memcmp(b + i, "_S5_", 4))
			continue;
		if (b[i - 1] != AML_NAME_OP &&
		    !(b[i - 1] == AML_ROOT_CHAR && b[i - 2] == AML_NAME_OP))
			continue;
		p = i + 4;
		if (b[p] != AML_PACKAGE_OP)
			continue;
		pkglen_bytes = (b[p + 1] >> 6) + 1; /* PkgLength lead byte bits 7:6 */
		p += 1 + pkglen_bytes + 1;	    /* PackageOp, PkgLength, NumElements */
		if (p >= len)
			return 0;
		*found = true;
		switch (b[p]) {
		case 0x00: return 0;				  /* ZeroOp */
		case 0x01: return 1;				  /* OneOp */
		case 0x0a: return p + 1 < len ? b[p + 1] & 7 : 0; /* BytePrefix */
		case 0x0b: return p + 1 < len ? b[p + 1] & 7 : 0; /* WordPrefix, low byte */
		case 0x0c: return p + 1 < len ? b[p + 1] & 7 : 0; /* DWordPrefix, low byte */
		default: return 0;
		}
	}
	return 0;
}

static void check_pm_timer(const struct acpi_sdt *fadt)
{
	uint32_t port = (uint32_t)acpi_field(fadt, FADT_PM_TMR_BLK, 4);
	uint32_t mask = (acpi_field(fadt, FADT_FLAGS, 4) & FADT_F_TMR_VAL_EXT) ? 0xffffffffu
									       : 0xffffffu;
	uint32_t t0, t1 = 0;
	unsigned i;

	if (!check(port != 0 && port <= 0xfffc, "FADT PM_TMR_BLK %#x", port))
		return;
	t0 = inl((uint16_t)port);
	for (i = 0; i < 1000000; i++) {
		t1 = inl((uint16_t)port);
		if (t1 != t0)
			break;
	}
	check(t1 != t0, "PM timer advances (%#x -> %#x after %u reads)", t0, t1, i + 1);
	check((t0 & ~mask) == 0 && (t1 & ~mask) == 0, "PM timer within %u bits",
	      mask == 0xffffffffu ? 32 : 24);
}

static uint32_t pm1a_cnt_port(const struct acpi_sdt *fadt)
{
	uint32_t port = (uint32_t)acpi_field(fadt, FADT_PM1A_CNT_BLK, 4);

	/* X_PM1a_CNT_BLK when the legacy field is empty: GAS in system I/O space. */
	if (!port && acpi_field(fadt, FADT_X_PM1A_CNT, 1) == 1)
		port = (uint32_t)acpi_field(fadt, FADT_X_PM1A_CNT + 4, 8);
	return port <= 0xfffe ? port : 0;
}

int main(void)
{
	const struct acpi_sdt *fadt, *madt, *dsdt;
	uint32_t cnt = 0;
	unsigned s5 = 0;
	bool s5_found = false;

	check_rsdp();
	fadt = check_table("FACP");
	madt = check_table("APIC");
	dsdt = check_table("DSDT");
	if (madt) {
		unsigned cpus = madt_cpus(madt);

		gprintf("cpus=%u\n", cpus);
		check(cpus >= 1, "MADT lists at least one enabled CPU");
	}
	if (fadt) {
		cnt = pm1a_cnt_port(fadt);
		check(cnt != 0, "FADT PM1a_CNT_BLK %#x (PM1_CNT_LEN %lu)", cnt,
		      acpi_field(fadt, FADT_PM1_CNT_LEN, 1));
		check_pm_timer(fadt);
	}
	if (dsdt) {
		s5 = dsdt_s5_typ(dsdt, &s5_found);
		gprintf("\\_S5 %s, SLP_TYP %u\n", s5_found ? "found" : "not found, using 0", s5);
	}
	if (check_result(GUEST_EXIT_ACPI) != GUEST_EXIT_PASS || !cnt)
		return GUEST_EXIT_ACPI;

	uint16_t v = inw((uint16_t)cnt);
	gprintf("poweroff: PM1a_CNT %#x = %#x (SCI_EN %u), writing SLP_TYP %u | SLP_EN\n", cnt, v,
		v & PM1_SCI_EN, s5);
	v &= (uint16_t) ~(PM1_SLP_TYP_MASK | PM1_SLP_EN);
	v |= (uint16_t)(s5 << PM1_SLP_TYP_SHIFT);
	outw((uint16_t)cnt, v);
	outw((uint16_t)cnt, v | PM1_SLP_EN);

	pmtmr_init();
	udelay(1000000);
	gprintf("FAIL: still running 1 s after the S5 write\n");
	gprintf("RESULT: FAIL\n");
	return GUEST_EXIT_ACPI_NO_OFF;
}
