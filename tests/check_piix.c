/* The PIIX3 functions on a real PCI host and I/O bus: IDs and header of
 * 00:01.0 and 00:01.1, the PIRQ route registers (PIC-mode ISA IRQs beside
 * the IOAPIC inputs), the IDE controller's decoding of the legacy ports and
 * BMIBA, bus-master DMA gated by Bus Master Enable and bounded by guest RAM,
 * reset and save -> load. The channel and its drives are check_ide.c's. */
#include "kestrel/bus.h"
#include "kestrel/devices.h"
#include "kestrel/piix.h"
#include "kestrel/state.h"
#include "ide_driver.h"
#include "check_util.h"

#define GSI_BASE 16
#define NGSI	 24

static struct bus pio;
static struct device *host, *isa, *pide, *ch2; /* ch2: an empty secondary channel */
static int gsi_level[NGSI], gsi_calls[NGSI];

static void rec_irq(void *opaque, uint32_t gsi, int level)
{
	(void)opaque;
	ck_assert_uint_lt(gsi, NGSI);
	gsi_level[gsi] = level;
	gsi_calls[gsi]++;
}

/* A function of our own in slot 3 that drives INTA#. */
static struct pci_dev other;

static uint32_t cfg_rd(int fn, unsigned off, unsigned size)
{
	uint32_t v;

	pthread_mutex_lock(&host->lock);
	v = pci_cfg_read(pci_host_fn(host, PIIX_SLOT, fn), off, size);
	pthread_mutex_unlock(&host->lock);
	return v;
}

static void cfg_wr(int fn, unsigned off, unsigned size, uint32_t v)
{
	pthread_mutex_lock(&host->lock);
	pci_cfg_write(pci_host_fn(host, PIIX_SLOT, fn), off, size, v);
	pthread_mutex_unlock(&host->lock);
}

static void piix_setup(bool decode_on)
{
	struct pci_intx_routing r;
	struct pci_board b = { .pio = &pio, .gm = &gm, .irq_set = piix3_intx_set, .intx = &r };
	struct piix3_conf ic = { .irq_set = rec_irq, .pirq_gsi_base = GSI_BASE };
	struct piix_ide_conf dc = { .pio = &pio, .decode_on = decode_on };

	setup();
	memset(gsi_level, 0, sizeof(gsi_level));
	memset(gsi_calls, 0, sizeof(gsi_calls));
	bus_init(&pio, "pio");
	piix3_intx_routing(&r, GSI_BASE);
	isa = piix3_create(&ic);
	ck_assert_ptr_nonnull(isa);
	b.irq_opaque = isa;
	host = pci_host_create(&b);
	ck_assert_ptr_nonnull(host);
	ch2 = new_channel(IDE_NONE, NULL, IDE_NONE, NULL);
	dc.ch[0] = ch;
	dc.ch[1] = ch2;
	pide = piix_ide_create(&dc);
	ck_assert_ptr_nonnull(pide);
	ck_assert_int_eq(pci_host_add_fn(host, piix3_pci(isa), PIIX_SLOT, PIIX3_FN_ISA), PIIX_SLOT);
	ck_assert_int_eq(pci_host_add_fn(host, piix_ide_pci(pide), PIIX_SLOT, PIIX3_FN_IDE),
			 PIIX_SLOT);
	pci_dev_init(&other, 0x1234, 0x0001, 0xff0000, 0, NULL, NULL);
	pci_dev_set_irq(&other, 1, 0);
	ck_assert_int_eq(pci_host_add(host, &other, 3), 3);
}

static void setup_plain(void)
{
	piix_setup(false);
}

static void setup_decoding(void)
{
	piix_setup(true);
}

static void piix_teardown(void)
{
	pci_dev_exit(&other);
	pide->ops->destroy(pide);
	isa->ops->destroy(isa);
	host->ops->destroy(host);
	ch2->ops->destroy(ch2);
	teardown(); /* the channel, guest memory, the images */
	bus_destroy(&pio);
}

static bool port_decoded(uint64_t port)
{
	uint8_t v;

	return bus_read(&pio, port, &v, 1);
}

START_TEST(ids_and_header)
{
	ck_assert_uint_eq(cfg_rd(0, PCI_VENDOR_ID, 4), 0x70008086);
	ck_assert_uint_eq(cfg_rd(0, PCI_CLASS_PROG, 1) | cfg_rd(0, PCI_CLASS_DEVICE, 2) << 8,
			  0x060100);
	ck_assert_uint_eq(cfg_rd(0, PCI_HEADER_TYPE, 1), 0x80); /* function 1 is there */
	ck_assert_uint_eq(cfg_rd(0, PCI_COMMAND, 2), 0x0007);
	ck_assert_uint_eq(cfg_rd(0, 0x60, 4), 0x80808080);
	ck_assert_uint_eq(cfg_rd(0, 0x4c, 1), 0x4d);
	ck_assert_uint_eq(cfg_rd(0, PCI_INTERRUPT_PIN, 1), 0);
	ck_assert_uint_eq(cfg_rd(1, PCI_VENDOR_ID, 4), 0x70108086);
	ck_assert_uint_eq(cfg_rd(1, PCI_CLASS_PROG, 1) | cfg_rd(1, PCI_CLASS_DEVICE, 2) << 8,
			  0x010180);
	ck_assert_uint_eq(cfg_rd(1, PCI_HEADER_TYPE, 1), 0);
	ck_assert_uint_eq(cfg_rd(1, PCI_COMMAND, 2), 0);
	ck_assert_uint_eq(cfg_rd(1, PCI_INTERRUPT_PIN, 1), 0);
	/* BARs 0-3 do not exist in compatibility mode; BMIBA sizes to 16 I/O bytes. */
	for (unsigned b = 0; b < 4; b++) {
		cfg_wr(1, PCI_BASE_ADDRESS_0 + 4 * b, 4, 0xffffffff);
		ck_assert_uint_eq(cfg_rd(1, PCI_BASE_ADDRESS_0 + 4 * b, 4), 0);
	}
	cfg_wr(1, 0x20, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(1, 0x20, 4), 0xfffffff1);
	/* PCICMD: I/O Space and Bus Master only. */
	cfg_wr(1, PCI_COMMAND, 2, 0xffff);
	ck_assert_uint_eq(cfg_rd(1, PCI_COMMAND, 2), PCI_COMMAND_IO | PCI_COMMAND_MASTER);
	/* Reserved bits of a route register read 0. */
	cfg_wr(0, 0x61, 1, 0xff);
	ck_assert_uint_eq(cfg_rd(0, 0x61, 1), 0x8f);
}
END_TEST

START_TEST(intx_rotation)
{
	struct pci_intx_routing r;

	piix3_intx_routing(&r, GSI_BASE);
	ck_assert_uint_eq(r.nlinks, 4);
	/* SeaBIOS piix_pci_slot_get_irq: PIRQ (slot - 1 + pin) & 3. */
	for (unsigned s = 1; s < PCI_MAX_SLOTS; s++)
		for (unsigned p = 0; p < 4; p++)
			ck_assert_uint_eq(pci_intx_gsi(&r, s, p), GSI_BASE + ((s - 1 + p) & 3));
	ck_assert_uint_eq(pci_intx_gsi(&r, 0, 0), GSI_BASE + 3);
}
END_TEST

START_TEST(pirq_routes)
{
	const unsigned pirq = (3 - 1 + 0) & 3, gsi = GSI_BASE + pirq; /* slot 3 INTA#: PIRQC */

	pci_intx_set(&other, true);
	ck_assert_int_eq(gsi_level[gsi], 1);
	for (unsigned i = 0; i < 16; i++)
		ck_assert_int_eq(gsi_calls[i], 0); /* not routed at power-on */
	cfg_wr(0, 0x60 + pirq, 1, 0x0b);
	ck_assert_int_eq(gsi_level[11], 1); /* routed: follows at once */
	pci_intx_set(&other, false);
	ck_assert_int_eq(gsi_level[gsi], 0);
	ck_assert_int_eq(gsi_level[11], 0);
	pci_intx_set(&other, true);
	ck_assert_int_eq(gsi_level[11], 1);
	/* Another PIRQ routed to IRQ 11 too: wired-OR, and moving ours away
	 * leaves 11 low and raises 10. */
	cfg_wr(0, 0x60, 1, 0x0b);
	cfg_wr(0, 0x60 + pirq, 1, 0x0a);
	ck_assert_int_eq(gsi_level[11], 0);
	ck_assert_int_eq(gsi_level[10], 1);
	/* Disabled, or an IRQ the datasheet reserves: nothing on the ISA side. */
	cfg_wr(0, 0x60 + pirq, 1, 0x8a);
	ck_assert_int_eq(gsi_level[10], 0);
	for (unsigned bad = 0; bad < 16; bad++) {
		if (bad != 0 && bad != 1 && bad != 2 && bad != 8 && bad != 13)
			continue;
		gsi_calls[bad] = 0;
		cfg_wr(0, 0x60 + pirq, 1, bad);
		ck_assert_int_eq(gsi_calls[bad], 0);
	}
	ck_assert_int_eq(gsi_level[gsi], 1);   /* the IOAPIC input stays */
	cfg_wr(0, 0x60 + pirq, 4, 0x0e0e0e0e); /* a dword write */
	ck_assert_int_eq(gsi_level[14], 1);
	isa->ops->reset(isa);
	ck_assert_int_eq(gsi_level[14], 0);
	ck_assert_uint_eq(cfg_rd(0, 0x60, 4), 0x80808080);
	ck_assert_int_eq(gsi_level[gsi], 1);
	pci_intx_set(&other, false);
}
END_TEST

START_TEST(legacy_decode)
{
	ck_assert(!port_decoded(0x1f7));
	cfg_wr(1, PCI_COMMAND, 2, PCI_COMMAND_IO);
	ck_assert(!port_decoded(0x1f7)); /* IDETIM decode still off */
	cfg_wr(1, 0x40, 2, 0x8000);
	ck_assert(port_decoded(0x1f0) && port_decoded(0x1f7) && port_decoded(0x3f6));
	ck_assert(!port_decoded(0x3f7) && !port_decoded(0x1f8) && !port_decoded(0x170));
	cfg_wr(1, 0x42, 2, 0x8000);
	ck_assert(port_decoded(0x170) && port_decoded(0x177) && port_decoded(0x376));
	ck_assert(!port_decoded(0x377));
	{
		uint8_t st;

		ck_assert(bus_read(&pio, 0x1f7, &st, 1));
		ck_assert_uint_eq(st & (ST_BSY | ST_DRDY), ST_DRDY);
	}
	cfg_wr(1, PCI_COMMAND, 2, 0);
	ck_assert(!port_decoded(0x1f0) && !port_decoded(0x3f6));
	cfg_wr(1, PCI_COMMAND, 2, PCI_COMMAND_IO);
	ck_assert(port_decoded(0x1f0));
	cfg_wr(1, 0x40, 2, 0x0000);
	ck_assert(!port_decoded(0x1f0));
}
END_TEST

START_TEST(decode_on_for_direct_boot)
{
	ck_assert_uint_eq(cfg_rd(1, 0x40, 4), 0x80008000);
	ck_assert(!port_decoded(0x1f0)); /* until I/O Space is on */
	cfg_wr(1, PCI_COMMAND, 2, PCI_COMMAND_IO);
	ck_assert(port_decoded(0x1f0) && port_decoded(0x3f6));
	pide->ops->reset(pide);
	ck_assert(!port_decoded(0x1f0));
	ck_assert_uint_eq(cfg_rd(1, 0x40, 4), 0x80008000);
}
END_TEST

START_TEST(bmiba_moves)
{
	uint32_t v;

	cfg_wr(1, 0x20, 4, 0xc001);
	ck_assert(!port_decoded(0xc000));
	cfg_wr(1, PCI_COMMAND, 2, PCI_COMMAND_IO);
	ck_assert(port_decoded(0xc000) && port_decoded(0xc007) && port_decoded(0xc008) &&
		  port_decoded(0xc00f));
	ck_assert(!port_decoded(0xc010));
	/* The primary's PRD table register is at +4. */
	v = 0x12340;
	ck_assert(bus_write(&pio, 0xc004, &v, 4));
	ck_assert_uint_eq(io_rd(ch, BMDMA, 4, 4), 0x12340);
	cfg_wr(1, 0x20, 4, 0xd041);
	ck_assert(!port_decoded(0xc000) && !port_decoded(0xc008));
	ck_assert(port_decoded(0xd040) && port_decoded(0xd04f));
	ck_assert(bus_read(&pio, 0xd044, &v, 4));
	ck_assert_uint_eq(v, 0x12340);
	cfg_wr(1, PCI_COMMAND, 2, 0);
	ck_assert(!port_decoded(0xd040) && !port_decoded(0xd048));
}
END_TEST

/* DMA goes through the PCI core: nothing moves without Bus Master Enable,
 * and a PRD outside RAM is a bus-master error; with it, data lands. */
START_TEST(dma_through_pci)
{
	uint8_t want[512], got[512];

	cfg_wr(1, PCI_COMMAND, 2, PCI_COMMAND_IO);
	prd(0, DMA_BUF, 512, true);
	dma_read(5, 1, false);
	expect_dma_error("bus master enable clear");
	cfg_wr(1, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MASTER);
	dma_read(5, 1, false);
	expect_dma_ok();
	file_read(path_of("disk.img"), 5 * 512, want, sizeof(want));
	ck_assert_int_eq(gm_read(&gm, DMA_BUF, got, sizeof(got)), 0);
	ck_assert_mem_eq(got, want, sizeof(got));
	prd(0, RAM - 256, 512, true); /* runs off the end of RAM */
	dma_read(5, 1, false);
	expect_dma_error("past the end of RAM");
	prd(0, DMA_BUF, 512, true);
	dma_read(6, 1, true); /* engine started first */
	expect_dma_ok();
}
END_TEST

START_TEST(save_load)
{
	struct state_buf s1 = { 0 }, s2 = { 0 }, in;

	cfg_wr(0, 0x62, 1, 0x0b);
	cfg_wr(1, 0x20, 4, 0xc041);
	cfg_wr(1, 0x40, 4, 0x80a38000);
	cfg_wr(1, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MASTER);
	ck_assert_int_eq(isa->ops->save(isa, &s1), 0);
	ck_assert_int_eq(pide->ops->save(pide, &s1), 0);
	isa->ops->reset(isa);
	pide->ops->reset(pide);
	ck_assert(!port_decoded(0x1f0) && !port_decoded(0xc040));
	in = (struct state_buf){ .data = s1.data, .len = s1.len };
	ck_assert_int_eq(isa->ops->load(isa, &in), 0);
	ck_assert_int_eq(pide->ops->load(pide, &in), 0);
	ck_assert(port_decoded(0x1f0) && port_decoded(0xc040) && port_decoded(0xc048));
	ck_assert_uint_eq(cfg_rd(0, 0x60, 4), 0x800b8080);
	pci_intx_set(&other, true);
	ck_assert_int_eq(gsi_level[11], 1); /* PIRQC routed again */
	pci_intx_set(&other, false);
	ck_assert_int_eq(isa->ops->save(isa, &s2), 0);
	ck_assert_int_eq(pide->ops->save(pide, &s2), 0);
	ck_assert_uint_eq(s1.len, s2.len);
	ck_assert_mem_eq(s1.data, s2.data, s1.len);
	/* The ISA bridge's section into the IDE function: another model, refused. */
	in = (struct state_buf){ .data = s1.data, .len = s1.len };
	ck_assert_int_eq(pide->ops->load(pide, &in), -EINVAL);
	state_free(&s1);
	state_free(&s2);
}
END_TEST

static Suite *piix_suite(void)
{
	Suite *s = suite_create("piix");

	ADD_TCASE(s, "piix", setup_plain, piix_teardown, 0, ids_and_header, intx_rotation,
		  pirq_routes, legacy_decode, bmiba_moves, dma_through_pci, save_load);
	ADD_TCASE(s, "direct-boot", setup_decoding, piix_teardown, 0, decode_on_for_direct_boot);
	return s;
}

int main(void)
{
	return run_suite(piix_suite());
}
