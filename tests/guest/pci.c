/* pci.bin: configuration mechanism #1 on bus 0. Lists every function,
 * checks the host bridge at 00:00.0 (class 06 00 xx), that absent functions
 * read all ones, that sub-dword reads agree with dword reads, and that the
 * bridge's read-only ID/class/header fields ignore writes. With scan=N on the
 * command line it first times N sweeps of the config reads Linux's early AGP
 * probe makes (aperture_64.c: one dword per bus and slot, 8,192 reads), the
 * VMM's cost per config cycle, and prints it. */
#include "guest.h"

#define PCI_VENDOR	0x00
#define PCI_DEVICE	0x02
#define PCI_CLASS_REV	0x08
#define PCI_HEADER_TYPE 0x0e
#define PCI_HT_MULTIFN	0x80
#define PCI_NO_VENDOR	0xffff

static unsigned scan_bus0(int *empty_dev)
{
	unsigned found = 0;

	*empty_dev = -1;
	for (unsigned dev = 0; dev < 32; dev++) {
		unsigned nfn = 1;

		for (unsigned fn = 0; fn < nfn; fn++) {
			uint32_t id = pci_conf_read32(0, dev, fn, PCI_VENDOR);
			uint32_t cls;

			if ((id & 0xffff) == PCI_NO_VENDOR) {
				if (fn == 0 && *empty_dev < 0)
					*empty_dev = (int)dev;
				continue;
			}
			if (fn == 0 &&
			    (pci_conf_read8(0, dev, 0, PCI_HEADER_TYPE) & PCI_HT_MULTIFN))
				nfn = 8;
			cls = pci_conf_read32(0, dev, fn, PCI_CLASS_REV) >> 8;
			gprintf("pci 00:%02x.%u %04x:%04x class %06x\n", dev, fn, id & 0xffff,
				id >> 16, cls);
			found++;
		}
	}
	return found;
}

static void check_config_address(void)
{
	uint32_t want = pci_conf_addr(0, 3, 2, 0x44);
	uint32_t got;

	outl(BOARD_PORT_PCI_ADDR, want);
	got = inl(BOARD_PORT_PCI_ADDR);
	check(got == want, "CONFIG_ADDRESS reads back %08x (read %08x)", want, got);
}

static void check_host_bridge(void)
{
	uint32_t id = pci_conf_read32(0, 0, 0, PCI_VENDOR);
	uint32_t cls = pci_conf_read32(0, 0, 0, PCI_CLASS_REV) >> 8;
	uint16_t vendor = pci_conf_read16(0, 0, 0, PCI_VENDOR);
	uint16_t device = pci_conf_read16(0, 0, 0, PCI_DEVICE);
	uint8_t b1 = pci_conf_read8(0, 0, 0, PCI_VENDOR + 1);
	uint8_t b3 = pci_conf_read8(0, 0, 0, PCI_DEVICE + 1);

	check((id & 0xffff) != PCI_NO_VENDOR && (id & 0xffff) != 0,
	      "00:00.0 present, vendor %04x device %04x", id & 0xffff, id >> 16);
	check((cls & 0xffff00) == 0x060000, "00:00.0 is a host bridge (class %06x)", cls);
	check(vendor == (id & 0xffff) && device == id >> 16,
	      "16-bit reads match the dword (%04x:%04x)", vendor, device);
	check(b1 == ((id >> 8) & 0xff) && b3 == id >> 24,
	      "8-bit reads at 0xcfd/0xcff match the dword (%02x %02x)", b1, b3);
}

static void check_read_only(void)
{
	uint32_t id = pci_conf_read32(0, 0, 0, PCI_VENDOR);
	uint32_t cls = pci_conf_read32(0, 0, 0, PCI_CLASS_REV);
	uint8_t ht = pci_conf_read8(0, 0, 0, PCI_HEADER_TYPE);
	uint32_t id2, cls2;
	uint8_t ht2;

	pci_conf_write32(0, 0, 0, PCI_VENDOR, ~id);
	pci_conf_write16(0, 0, 0, PCI_DEVICE, 0x1234);
	pci_conf_write32(0, 0, 0, PCI_CLASS_REV, ~cls);
	pci_conf_write8(0, 0, 0, PCI_HEADER_TYPE, (uint8_t)~ht);
	id2 = pci_conf_read32(0, 0, 0, PCI_VENDOR);
	cls2 = pci_conf_read32(0, 0, 0, PCI_CLASS_REV);
	ht2 = pci_conf_read8(0, 0, 0, PCI_HEADER_TYPE);
	check(id2 == id, "vendor/device ignore writes (%08x -> %08x)", id, id2);
	check(cls2 == cls, "class/revision ignore writes (%08x -> %08x)", cls, cls2);
	check(ht2 == ht, "header type ignores writes (%02x -> %02x)", ht, ht2);
}

static void check_absent(int empty_dev)
{
	if (check(empty_dev >= 0, "bus 0 has an empty device slot (%d)", empty_dev)) {
		uint32_t v = pci_conf_read32(0, (unsigned)empty_dev, 0, PCI_VENDOR);
		uint16_t w = pci_conf_read16(0, (unsigned)empty_dev, 0, PCI_VENDOR);

		check(v == 0xffffffff && w == PCI_NO_VENDOR,
		      "absent 00:%02x.0 reads all ones (%08x, %04x)", empty_dev, v, w);
	}
	if (!(pci_conf_read8(0, 0, 0, PCI_HEADER_TYPE) & PCI_HT_MULTIFN)) {
		uint16_t v = pci_conf_read16(0, 0, 1, PCI_VENDOR);

		check(v == PCI_NO_VENDOR, "absent function 00:00.1 reads vendor ffff (%04x)", v);
	}
	/* Bus 255 is beyond any bridge this board has. */
	uint16_t far = pci_conf_read16(255, 0, 0, PCI_VENDOR);
	check(far == PCI_NO_VENDOR, "absent bus ff reads vendor ffff (%04x)", far);
}

/* N sweeps of 256 buses x 32 slots, as search_agp_bridge reads them. */
static void time_scans(uint64_t n)
{
	struct stopwatch w;
	uint64_t reads = 0, us = 0;

	pmtmr_init();
	stopwatch_start(&w);
	for (uint64_t i = 0; i < n; i++) {
		for (unsigned bus = 0; bus < 256; bus++)
			for (unsigned dev = 0; dev < 32; dev++)
				(void)pci_conf_read32(bus, dev, 0, PCI_CLASS_REV);
		reads += 256 * 32;
		us = stopwatch_us(&w);
	}
	gprintf("pci: %lu config reads in %lu us: %lu ns per read\n", reads, us,
		reads ? us * 1000 / reads : 0);
}

int main(void)
{
	uint64_t scans = mb_cmdline_uint("scan", 0);
	int empty_dev;
	unsigned found;

	if (scans)
		time_scans(scans);
	check_config_address();
	found = scan_bus0(&empty_dev);
	gprintf("pci: %u functions on bus 0\n", found);
	check(found >= 1, "bus 0 enumerates (%u functions)", found);
	check_host_bridge();
	check_read_only();
	check_absent(empty_dev);
	return check_result(GUEST_EXIT_PCI);
}
