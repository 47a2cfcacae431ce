/* The PCI core (devices/pci/) through its public functions, on a bus with
 * real I/O and MMIO buses, a fake interrupt sink and a fake MSI sink: BAR
 * sizing and moving (the bus range and bar_remap follow, disabling decode
 * unmaps, 64-bit BARs above 4 GiB, overlaps refused), the expansion ROM BAR,
 * capability chains, INTx routing and sharing, MSI and MSI-X programming
 * into route calls, Bus Master gating of messages and DMA, and state. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "kestrel/bus.h"
#include "kestrel/guest_mem.h"
#include "kestrel/msi.h"
#include "kestrel/pci.h"
#include "kestrel/pci_dma.h"
#include "fake_board.h"

#define RAM MiB(2)

/* ---- a function whose BARs are bus devices, recording remaps ---- */

struct remap {
	int bar;
	uint64_t old_addr, new_addr;
};

struct tdev {
	struct device dev; /* owner of its BARs on the buses */
	struct pci_dev pci;
	struct remap log[32];
	int nlog;
	uint64_t last_write_off;
};

static uint64_t tdev_read(struct device *d, int region, uint64_t off, unsigned size)
{
	return 0xab000000u | (uint64_t)region << 16 | off;
}

static void tdev_write(struct device *d, int region, uint64_t off, unsigned size, uint64_t val)
{
	((struct tdev *)d)->last_write_off = off;
}

static const struct dev_ops tdev_ops = { .name = "tdev", .read = tdev_read, .write = tdev_write };

static void tdev_remap(struct pci_dev *p, int bar, uint64_t old_addr, uint64_t new_addr)
{
	struct tdev *t = p->opaque;

	if (t->nlog < 32)
		t->log[t->nlog++] = (struct remap){ bar, old_addr, new_addr };
}

static const struct pci_dev_ops tdev_pci_ops = { .bar_remap = tdev_remap };

/* BAR 0: 4 KiB memory, BAR 1: 32 bytes of I/O, BAR 2/3: 64-bit 1 MiB
 * prefetchable; each attached to the bus as region = bar. INTA#. */
static void tdev_init(struct tdev *t)
{
	memset(t, 0, sizeof(*t));
	device_init(&t->dev, &tdev_ops);
	pci_dev_init(&t->pci, 0x1234, 0x0001, 0x020000, 0, &tdev_pci_ops, t);
	pci_dev_set_irq(&t->pci, 1, 0);
	ck_assert_int_eq(pci_dev_set_bar(&t->pci, 0, 4096, PCI_BAR_MEM32), 0);
	ck_assert_int_eq(pci_dev_set_bar(&t->pci, 1, 32, PCI_BAR_IO), 0);
	ck_assert_int_eq(pci_dev_set_bar(&t->pci, 2, MiB(1), PCI_BAR_MEM64 | PCI_BAR_PREFETCH), 0);
	for (int b = 0; b < 3; b++)
		pci_bar_attach(&t->pci, b, &t->dev, b);
}

/* ---- fakes: the board's interrupt lines and the VM's MSI routes ---- */

static int gsi_level[32], gsi_calls;

static void fake_gsi_set(void *opaque, uint32_t gsi, int level)
{
	ck_assert_uint_lt(gsi, 32);
	gsi_level[gsi] = level;
	gsi_calls++;
}

struct fake_sink {
	uint32_t next_gsi;
	int allocs, frees, sets, irqfd_on, irqfd_off;
	uint32_t set_gsi;
	uint64_t set_addr;
	uint32_t set_data;
	uint64_t routed_addr[64];
	uint32_t routed_data[64];
};

static struct fake_sink fs;

static int fs_alloc(void *o, uint32_t *gsi)
{
	*gsi = 24 + fs.next_gsi++;
	fs.allocs++;
	return 0;
}

static int fs_set(void *o, uint32_t gsi, uint64_t addr, uint32_t data)
{
	fs.sets++;
	fs.set_gsi = gsi;
	fs.set_addr = addr;
	fs.set_data = data;
	fs.routed_addr[gsi - 24] = addr;
	fs.routed_data[gsi - 24] = data;
	return 0;
}

static void fs_free(void *o, uint32_t gsi)
{
	fs.frees++;
}

static int fs_irqfd(void *o, int fd, uint32_t gsi, bool assign)
{
	ck_assert_int_ge(fd, 0);
	if (assign)
		fs.irqfd_on++;
	else
		fs.irqfd_off++;
	return 0;
}

static const struct msi_sink_ops fs_ops = { fs_alloc, fs_set, fs_free, fs_irqfd };
static const struct msi_sink sink = { &fs_ops, &fs };

/* Messages sent on a vector since the last look. */
static uint64_t fired(const struct msi_vec *v)
{
	eventfd_t n = 0;

	return eventfd_read(v->irqfd, &n) == 0 ? n : 0;
}

/* ---- the fixture: bus 0 on two buses and 2 MiB of RAM ---- */

static struct bus pio, mmio;
static struct guest_mem gm;
static struct pci_intx_routing routing;
static struct pci_bus pbus;
static struct tdev a, b;

static void setup(void)
{
	struct pci_board board = {
		.pio = &pio, .mmio = &mmio, .gm = &gm, .irq_set = fake_gsi_set, .intx = &routing
	};

	memset(gsi_level, 0, sizeof(gsi_level));
	gsi_calls = 0;
	memset(&fs, 0, sizeof(fs));
	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	ck_assert_int_eq(gm_init(&gm, RAM, false), 0);
	ck_assert_int_eq(pci_intx_swizzle(&routing, 8, 16), 0);
	pci_bus_init(&pbus, &board);
	tdev_init(&a);
	tdev_init(&b);
	ck_assert_int_eq(pci_bus_add(&pbus, &a.pci, 3, 0), 3);
	ck_assert_int_eq(pci_bus_add(&pbus, &b.pci, 11, 0), 11);
}

static void teardown(void)
{
	pci_dev_exit(&a.pci);
	pci_dev_exit(&b.pci);
	pci_bus_destroy(&pbus);
	gm_destroy(&gm);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

static uint64_t mmio_rd(uint64_t addr, unsigned size)
{
	uint64_t v = 0;

	if (!bus_read(&mmio, addr, &v, size))
		return ~0ULL;
	return v;
}

static void cmd(struct tdev *t, uint16_t c)
{
	pci_cfg_write(&t->pci, PCI_COMMAND, 2, c);
}

/* ---- BARs ---- */

START_TEST(bar_sizing)
{
	pci_cfg_write(&a.pci, 0x10, 4, 0xffffffff);
	ck_assert_uint_eq(pci_cfg_read(&a.pci, 0x10, 4), 0xfffff000);
	pci_cfg_write(&a.pci, 0x14, 4, 0xffffffff);
	ck_assert_uint_eq(pci_cfg_read(&a.pci, 0x14, 4), 0xffffffe1);
	/* 64-bit: both halves size together (6.2.5.1). */
	pci_cfg_write(&a.pci, 0x18, 4, 0xffffffff);
	pci_cfg_write(&a.pci, 0x1c, 4, 0xffffffff);
	ck_assert_uint_eq(pci_cfg_read(&a.pci, 0x18, 4), 0xfff0000c);
	ck_assert_uint_eq(pci_cfg_read(&a.pci, 0x1c, 4), 0xffffffff);
	ck_assert_int_eq(a.nlog, 0); /* decoding off: nothing mapped */
	ck_assert_uint_eq(mmio.nr + pio.nr, 0);
}
END_TEST

START_TEST(bar_move_follows_on_the_bus)
{
	pci_cfg_write(&a.pci, 0x10, 4, 0xc0001000);
	pci_cfg_write(&a.pci, 0x14, 4, 0xc001);
	cmd(&a, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
	ck_assert_int_eq(a.nlog, 2);
	ck_assert_uint_eq(mmio_rd(0xc0001010, 4), 0xab000010);
	{
		uint64_t v = 0;

		ck_assert(bus_read(&pio, 0xc004, &v, 4));
		ck_assert_uint_eq(v, 0xab010004);
	}
	/* Move BAR 0: the old range is gone, the new one answers, one remap. */
	pci_cfg_write(&a.pci, 0x10, 4, 0xd0000000);
	ck_assert_int_eq(a.nlog, 3);
	ck_assert_int_eq(a.log[2].bar, 0);
	ck_assert_uint_eq(a.log[2].old_addr, 0xc0001000);
	ck_assert_uint_eq(a.log[2].new_addr, 0xd0000000);
	ck_assert_uint_eq(mmio_rd(0xc0001010, 4), ~0ULL);
	ck_assert_uint_eq(mmio_rd(0xd0000ffc, 4), 0xab000ffc);
	ck_assert_uint_eq(pci_dev_bar_addr(&a.pci, 0), 0xd0000000);
	/* Memory decode off: unmapped, and the I/O BAR stays. */
	cmd(&a, PCI_COMMAND_IO);
	ck_assert_int_eq(a.nlog, 4);
	ck_assert_uint_eq(a.log[3].new_addr, PCI_BAR_UNMAPPED);
	ck_assert_uint_eq(mmio_rd(0xd0000000, 4), ~0ULL);
	ck_assert_uint_eq(mmio.nr, 0);
	ck_assert_uint_eq(pio.nr, 1);
	/* Back on: where the BAR says. */
	cmd(&a, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
	ck_assert_uint_eq(a.log[4].new_addr, 0xd0000000);
	ck_assert_uint_eq(mmio_rd(0xd0000000, 4), 0xab000000);
}
END_TEST

START_TEST(bar_64bit_above_4g)
{
	cmd(&a, PCI_COMMAND_MEMORY);
	pci_cfg_write(&a.pci, 0x1c, 4, 0x80); /* upper half first */
	pci_cfg_write(&a.pci, 0x18, 4, 0x00100000);
	ck_assert_uint_eq(pci_dev_bar_addr(&a.pci, 2), 0x8000100000ULL);
	ck_assert_uint_eq(mmio_rd(0x8000100000ULL + 0x20, 4), 0xab020020);
	ck_assert_uint_eq(pci_dev_bar_addr(&a.pci, 3), PCI_BAR_UNMAPPED);
	/* Down below 4 GiB by the upper half alone. */
	pci_cfg_write(&a.pci, 0x1c, 4, 0);
	ck_assert_uint_eq(pci_dev_bar_addr(&a.pci, 2), 0x00100000);
	ck_assert_uint_eq(mmio_rd(0x8000100000ULL, 4), ~0ULL);
	ck_assert_uint_eq(mmio_rd(0x00100000, 4), 0xab020000);
}
END_TEST

/* A BAR moved onto another device's range is refused (not decoded, no
 * remap, a warning), and mapped once the guest moves it somewhere free. */
START_TEST(bar_overlap_refused)
{
	pci_cfg_write(&a.pci, 0x10, 4, 0xc0000000);
	cmd(&a, PCI_COMMAND_MEMORY);
	cmd(&b, PCI_COMMAND_MEMORY);
	pci_cfg_write(&b.pci, 0x10, 4, 0xc0000000);
	ck_assert_uint_eq(pci_dev_bar_addr(&b.pci, 0), PCI_BAR_UNMAPPED);
	ck_assert_int_eq(b.nlog, 0);
	ck_assert_uint_eq(mmio_rd(0xc0000004, 4), 0xab000004); /* still a's */
	pci_cfg_write(&b.pci, 0x10, 4, 0xc0002000);
	ck_assert_int_eq(b.nlog, 1);
	ck_assert_uint_eq(b.log[0].old_addr, PCI_BAR_UNMAPPED);
	ck_assert_uint_eq(pci_dev_bar_addr(&b.pci, 0), 0xc0002000);
	/* Leaving the bus unmaps everything. */
	pci_dev_exit(&a.pci);
	ck_assert_uint_eq(mmio_rd(0xc0000004, 4), ~0ULL);
	ck_assert_uint_eq(a.log[a.nlog - 1].new_addr, PCI_BAR_UNMAPPED);
	ck_assert_ptr_null(pci_bus_fn(&pbus, 3, 0));
}
END_TEST

/* ---- expansion ROM (6.2.5.2) ---- */

START_TEST(rom_bar)
{
	static uint8_t image[3000];
	uint64_t base = 0xfeb00000;

	for (size_t i = 0; i < sizeof(image); i++)
		image[i] = (uint8_t)(i * 7);
	image[0] = 0x55;
	image[1] = 0xaa;
	ck_assert_int_eq(pci_dev_set_rom(&a.pci, image, 0), -EINVAL);
	ck_assert_int_eq(pci_dev_set_rom(&a.pci, image, PCI_ROM_MAX_SIZE + 1), -EINVAL);
	ck_assert_int_eq(pci_dev_set_rom(&a.pci, image, sizeof(image)), 0);
	/* Sizing: 4 KiB (3000 rounded up), the enable bit writable. */
	pci_cfg_write(&a.pci, PCI_ROM_ADDRESS, 4, 0xffffffff);
	ck_assert_uint_eq(pci_cfg_read(&a.pci, PCI_ROM_ADDRESS, 4), 0xfffff001);
	pci_cfg_write(&a.pci, PCI_ROM_ADDRESS, 4, 0xfffff800);
	ck_assert_uint_eq(pci_cfg_read(&a.pci, PCI_ROM_ADDRESS, 4), 0xfffff000);
	/* Address without the enable bit, or enable without Memory Space: nothing. */
	pci_cfg_write(&a.pci, PCI_ROM_ADDRESS, 4, (uint32_t)base);
	cmd(&a, PCI_COMMAND_MEMORY);
	ck_assert_uint_eq(pci_dev_bar_addr(&a.pci, PCI_ROM_BAR), PCI_BAR_UNMAPPED);
	cmd(&a, 0);
	pci_cfg_write(&a.pci, PCI_ROM_ADDRESS, 4, (uint32_t)base | PCI_ROM_ENABLE);
	ck_assert_uint_eq(pci_dev_bar_addr(&a.pci, PCI_ROM_BAR), PCI_BAR_UNMAPPED);
	cmd(&a, PCI_COMMAND_MEMORY);
	ck_assert_uint_eq(pci_dev_bar_addr(&a.pci, PCI_ROM_BAR), base);
	ck_assert_int_eq(a.log[a.nlog - 1].bar, PCI_ROM_BAR);
	ck_assert_uint_eq(a.log[a.nlog - 1].new_addr, base);
	/* The image, then zeros to the end of the BAR; writes change nothing. */
	ck_assert_uint_eq(mmio_rd(base, 2), 0xaa55);
	{
		uint64_t want;

		memcpy(&want, &image[1000], 8);
		ck_assert_uint_eq(mmio_rd(base + 1000, 8), want);
	}
	ck_assert_uint_eq(mmio_rd(base + 2998, 4), image[2998] | (uint32_t)image[2999] << 8);
	ck_assert_uint_eq(mmio_rd(base + 4092, 4), 0);
	{
		uint32_t junk = 0xdeadbeef;

		ck_assert(bus_write(&mmio, base, &junk, 4));
		ck_assert_uint_eq(mmio_rd(base, 2), 0xaa55);
	}
	ck_assert_uint_eq(mmio_rd(base + 4096, 4), ~0ULL);
	/* Moved, then disabled. */
	pci_cfg_write(&a.pci, PCI_ROM_ADDRESS, 4, 0xfea00000 | PCI_ROM_ENABLE);
	ck_assert_uint_eq(mmio_rd(base, 2), ~0ULL);
	ck_assert_uint_eq(mmio_rd(0xfea00000, 2), 0xaa55);
	pci_cfg_write(&a.pci, PCI_ROM_ADDRESS, 4, 0xfea00000);
	ck_assert_uint_eq(mmio_rd(0xfea00000, 2), ~0ULL);
	ck_assert_uint_eq(a.log[a.nlog - 1].new_addr, PCI_BAR_UNMAPPED);
}
END_TEST

/* ---- capabilities (6.7) ---- */

/* Walk the list from 0x34 as a guest would; returns the count, checking
 * every entry is a dword in 0x40..0xff and that the walk ends. */
static int walk_caps(struct pci_dev *p, uint8_t *ids, unsigned *offs)
{
	unsigned c = pci_cfg_read(p, PCI_CAPABILITY_LIST, 1);
	int n = 0;

	if (!(pci_cfg_read(p, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST))
		return 0;
	while (c) {
		ck_assert_uint_eq(c % 4, 0);
		ck_assert_uint_ge(c, 0x40);
		ck_assert_int_lt(n, 48);
		ids[n] = (uint8_t)pci_cfg_read(p, c, 1);
		offs[n++] = c;
		c = pci_cfg_read(p, c + 1, 1);
	}
	return n;
}

START_TEST(capability_chain)
{
	uint8_t ids[48];
	unsigned offs[48];
	int c1, c2, c3, c4;

	ck_assert_int_eq(walk_caps(&a.pci, ids, offs), 0);
	ck_assert_uint_eq(pci_cap_find(&a.pci, 0x09), 0);
	ck_assert_int_eq(pci_dev_reserve(&a.pci, 0x40, 6), 0); /* device registers */
	ck_assert_int_eq(pci_dev_reserve(&a.pci, 0x44, 1), -EBUSY);
	ck_assert_int_eq(pci_dev_reserve(&a.pci, 0x3f, 1), -EINVAL);
	c1 = pci_cap_add(&a.pci, 0x09, 14);
	c2 = pci_cap_add(&a.pci, 0x05, 10);
	c3 = pci_cap_add_at(&a.pci, 0xf0, 0x10, 16);
	c4 = pci_cap_add(&a.pci, 0x11, 12);
	ck_assert_int_eq(c1, 0x48);
	ck_assert_int_eq(c2, 0x58);
	ck_assert_int_eq(c3, 0xf0);
	ck_assert_int_eq(c4, 0x64);
	ck_assert(pci_cfg_read(&a.pci, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	ck_assert_int_eq(walk_caps(&a.pci, ids, offs), 4);
	ck_assert_uint_eq(ids[0], 0x09);
	ck_assert_uint_eq(ids[1], 0x05);
	ck_assert_uint_eq(ids[2], 0x10);
	ck_assert_uint_eq(ids[3], 0x11);
	ck_assert_uint_eq(offs[2], 0xf0);
	ck_assert_uint_eq(pci_cap_find(&a.pci, 0x11), 0x64);
	/* The list is read-only to the guest. */
	pci_cfg_write(&a.pci, 0x48, 4, 0xffffffff);
	pci_cfg_write(&a.pci, PCI_CAPABILITY_LIST, 1, 0x40);
	ck_assert_int_eq(walk_caps(&a.pci, ids, offs), 4);
	/* Bad or taken ranges, then full. */
	ck_assert_int_eq(pci_cap_add_at(&a.pci, 0x4a, 0x01, 8), -EINVAL);
	ck_assert_int_eq(pci_cap_add_at(&a.pci, 0x3c, 0x01, 8), -EINVAL);
	ck_assert_int_eq(pci_cap_add_at(&a.pci, 0xfc, 0x01, 8), -EINVAL);
	ck_assert_int_eq(pci_cap_add_at(&a.pci, 0x54, 0x01, 8), -ENOSPC);
	ck_assert_int_eq(pci_cap_add(&a.pci, 0x01, 1), -EINVAL);
	while (pci_cap_add(&a.pci, 0x01, 8) > 0)
		;
	ck_assert_int_eq(pci_cap_add(&a.pci, 0x01, 8), -ENOSPC);
	ck_assert_int_gt(walk_caps(&a.pci, ids, offs), 4);
}
END_TEST

/* ---- INTx ---- */

START_TEST(intx_routing_and_sharing)
{
	/* Interrupt Line holds the routed GSI: slot 3 INTA# -> 16 + 3, slot 11 -> 16 + 3. */
	ck_assert_uint_eq(pci_cfg_read(&a.pci, PCI_INTERRUPT_LINE, 1), 19);
	ck_assert_uint_eq(pci_cfg_read(&b.pci, PCI_INTERRUPT_LINE, 1), 19);
	ck_assert_uint_eq(pci_intx_gsi(&routing, 3, 1), 20);
	ck_assert_uint_eq(pci_intx_gsi(&routing, 32, 0), UINT32_MAX);
	ck_assert_uint_eq(pci_intx_gsi(&routing, 3, 4), UINT32_MAX);
	/* Shared, level-triggered: the line is the OR. */
	pci_intx_set(&a.pci, true);
	ck_assert_int_eq(gsi_level[19], 1);
	pci_intx_set(&b.pci, true);
	pci_intx_set(&a.pci, false);
	ck_assert_int_eq(gsi_level[19], 1);
	pci_intx_set(&b.pci, false);
	ck_assert_int_eq(gsi_level[19], 0);
	/* INTX_DISABLE masks the pin; STATUS still shows the device's level. */
	cmd(&a, PCI_COMMAND_INTX_DISABLE);
	pci_intx_set(&a.pci, true);
	ck_assert_int_eq(gsi_level[19], 0);
	ck_assert(pci_cfg_read(&a.pci, PCI_STATUS, 1) & PCI_STATUS_INTERRUPT);
	cmd(&a, 0);
	ck_assert_int_eq(gsi_level[19], 1);
	/* A link moved (PIIX3 PIRQ register) carries the level along. */
	ck_assert_int_eq(pci_bus_set_link_gsi(&pbus, 3, 10), 0);
	ck_assert_int_eq(gsi_level[19], 0);
	ck_assert_int_eq(gsi_level[10], 1);
	ck_assert_int_eq(pci_bus_set_link_gsi(&pbus, 8, 10), -EINVAL);
	pci_intx_set(&a.pci, false);
	ck_assert_int_eq(gsi_level[10], 0);
	ck_assert(!(pci_cfg_read(&a.pci, PCI_STATUS, 1) & PCI_STATUS_INTERRUPT));
	ck_assert_int_eq(pci_intx_swizzle(&routing, 0, 16), -EINVAL);
	ck_assert_int_eq(pci_intx_swizzle(&routing, 9, 16), -EINVAL);
}
END_TEST

/* ---- MSI-X (6.8.2) ---- */

START_TEST(msix_programming)
{
	struct msix mx;
	unsigned cap;
	uint64_t v;

	ck_assert_int_eq(msix_init(&mx, &a.pci, &sink, 4, 0, 0x800, 0, 0x810),
			 -EINVAL);						     /* overlap */
	ck_assert_int_eq(msix_init(&mx, &a.pci, &sink, 4, 1, 0, 0, 0x800), -EINVAL); /* I/O BAR */
	ck_assert_int_eq(msix_init(&mx, &a.pci, &sink, 4, 0, 0xfd0, 0, 0x800),
			 -EINVAL); /* past the end */
	ck_assert_int_eq(fs.allocs, 0);
	ck_assert_int_eq(msix_init(&mx, &a.pci, &sink, 4, 0, 0, 0, 0x800), 0);
	ck_assert_int_eq(fs.allocs, 4);
	ck_assert_int_eq(fs.irqfd_on, 4);
	cap = pci_cap_find(&a.pci, PCI_CAP_ID_MSIX);
	ck_assert_uint_eq(cap, mx.cap);
	ck_assert_uint_eq(pci_cfg_read(&a.pci, cap + 2, 2), 3);
	ck_assert_uint_eq(pci_cfg_read(&a.pci, cap + 8, 4), 0x800);
	/* Program vector 2 (masked at reset): no route until unmasked. */
	ck_assert(msix_bar_write(&mx, 0, 2 * 16, 8, 0xfee01000ULL));
	ck_assert(msix_bar_write(&mx, 0, 2 * 16 + 8, 4, 0x4041));
	ck_assert_int_eq(fs.sets, 0);
	ck_assert(msix_bar_read(&mx, 0, 2 * 16 + 12, 4, &v));
	ck_assert_uint_eq(v, MSIX_VECTOR_MASKED);
	ck_assert(msix_bar_write(&mx, 0, 2 * 16 + 12, 4, 0));
	ck_assert_int_eq(fs.sets, 1);
	ck_assert_uint_eq(fs.set_gsi, mx.e[2].v.gsi);
	ck_assert_uint_eq(fs.set_addr, 0xfee01000ULL);
	ck_assert_uint_eq(fs.set_data, 0x4041);
	/* Not ours: other BARs and offsets past the table and PBA. */
	ck_assert(!msix_bar_read(&mx, 0, 4 * 16, 4, &v));
	ck_assert(!msix_bar_read(&mx, 2, 0, 4, &v));
	ck_assert(!msix_bar_write(&mx, 0, 0x808, 4, 0));
	/* Off: notify drops. On, but Bus Master clear: held in the PBA. */
	msix_notify(&mx, 2);
	ck_assert(msix_bar_read(&mx, 0, 0x800, 8, &v));
	ck_assert_uint_eq(v, 0);
	pci_cfg_write(&a.pci, cap + 2, 2, MSIX_CTRL_ENABLE);
	ck_assert(msix_enabled(&mx));
	msix_notify(&mx, 2);
	ck_assert_uint_eq(fired(&mx.e[2].v), 0);
	msix_bar_read(&mx, 0, 0x800, 8, &v);
	ck_assert_uint_eq(v, 1u << 2);
	cmd(&a, PCI_COMMAND_MASTER);
	ck_assert_uint_eq(fired(&mx.e[2].v), 1);
	msix_bar_read(&mx, 0, 0x800, 8, &v);
	ck_assert_uint_eq(v, 0);
	/* Function mask, then vector mask. */
	pci_cfg_write(&a.pci, cap + 2, 2, MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL);
	msix_notify(&mx, 2);
	ck_assert_uint_eq(fired(&mx.e[2].v), 0);
	pci_cfg_write(&a.pci, cap + 2, 2, MSIX_CTRL_ENABLE);
	ck_assert_uint_eq(fired(&mx.e[2].v), 1);
	msix_bar_write(&mx, 0, 2 * 16 + 12, 4, MSIX_VECTOR_MASKED);
	msix_notify(&mx, 2);
	ck_assert_uint_eq(fired(&mx.e[2].v), 0);
	msix_bar_write(&mx, 0, 2 * 16 + 12, 4, 0);
	ck_assert_uint_eq(fired(&mx.e[2].v), 1);
	ck_assert_int_eq(fs.sets, 1); /* the same message: no new route */
	/* INTx is off while MSI-X is on. */
	pci_intx_set(&a.pci, true);
	ck_assert_int_eq(gsi_level[19], 0);
	pci_cfg_write(&a.pci, cap + 2, 2, 0);
	ck_assert_int_eq(gsi_level[19], 1);
	pci_intx_set(&a.pci, false);
	/* Odd sizes and vectors past the end. */
	msix_notify(&mx, 4);
	ck_assert(msix_bar_read(&mx, 0, 2 * 16 + 8, 2, &v));
	ck_assert_uint_eq(v, 0);
	msix_destroy(&mx);
	ck_assert_int_eq(fs.frees, 4);
	ck_assert_int_eq(fs.irqfd_off, 4);
	ck_assert_ptr_null(a.pci.msix);
}
END_TEST

START_TEST(msix_save_load)
{
	struct msix mx, my;
	struct tdev c;
	struct state_buf sp = { 0 }, sx = { 0 };
	struct pci_dev_state st;
	uint64_t v;

	ck_assert_int_eq(msix_init(&mx, &a.pci, &sink, 2, 0, 0, 0, 0x800), 0);
	msix_bar_write(&mx, 0, 16, 8, 0xfee02000ULL);
	msix_bar_write(&mx, 0, 16 + 8, 4, 0x51);
	msix_bar_write(&mx, 0, 16 + 12, 4, 0);
	pci_cfg_write(&a.pci, mx.cap + 2, 2, MSIX_CTRL_ENABLE);
	msix_notify(&mx, 1); /* held: no Bus Master */
	ck_assert_int_eq(pci_dev_save(&a.pci, &sp), 0);
	ck_assert_int_eq(msix_save(&mx, &sx), 0);

	tdev_init(&c);
	ck_assert_int_eq(msix_init(&my, &c.pci, &sink, 2, 0, 0, 0, 0x800), 0);
	ck_assert_int_eq(pci_dev_load(&c.pci, &sp), 0);
	fs.sets = 0;
	ck_assert_int_eq(msix_load(&my, &sx), 0);
	ck_assert_int_eq(fs.sets, 1); /* vector 1 routed again */
	ck_assert_uint_eq(fs.routed_addr[my.e[1].v.gsi - 24], 0xfee02000ULL);
	ck_assert(msix_enabled(&my));
	msix_bar_read(&my, 0, 0x800, 8, &v);
	ck_assert_uint_eq(v, 2); /* still pending */
	cmd(&c, PCI_COMMAND_MASTER);
	ck_assert_uint_eq(fired(&my.e[1].v), 1);

	/* Hostile sections change nothing: wrong vector count, bad control bits. */
	sx.pos = 0;
	sx.data[STATE_HDR] = 3;
	ck_assert_int_eq(msix_load(&my, &sx), -EINVAL);
	sx.data[STATE_HDR] = 2;
	sx.pos = 0;
	sx.data[STATE_HDR + 4 + 17 + 12] = 0x02; /* vector 1's control: reserved bit */
	ck_assert_int_eq(msix_load(&my, &sx), -EINVAL);
	sx.pos = 0;
	sx.len--;
	ck_assert_int_eq(msix_load(&my, &sx), -EINVAL);
	msix_bar_read(&my, 0, 16 + 12, 4, &v);
	ck_assert_uint_eq(v, 0);
	/* A snapshot from another function layout: the parse refuses it. */
	sp.pos = 0;
	c.pci.cfg[PCI_HEADER_TYPE] |= PCI_HEADER_TYPE_MULTI_FN;
	ck_assert_int_eq(pci_dev_parse(&c.pci, &sp, &st), -EINVAL);
	msix_destroy(&mx);
	msix_destroy(&my);
	state_free(&sp);
	state_free(&sx);
}
END_TEST

/* ---- MSI (6.8.1) ---- */

START_TEST(msi_programming)
{
	struct msi m;
	unsigned cap;

	ck_assert_int_eq(msi_init(&m, &a.pci, &sink, 3, true, true), -EINVAL);
	ck_assert_int_eq(msi_init(&m, &a.pci, &sink, 4, true, true), 0);
	ck_assert_int_eq(fs.allocs, 4);
	cap = m.cap;
	ck_assert_uint_eq(pci_cap_find(&a.pci, PCI_CAP_ID_MSI), cap);
	/* Control: 64-bit, per-vector masking, 4 vectors capable (MMC 2). */
	ck_assert_uint_eq(pci_cfg_read(&a.pci, cap + 2, 2), 0x0184);
	ck_assert_uint_eq(pci_cfg_read(&a.pci, cap, 1), PCI_CAP_ID_MSI);
	pci_cfg_write(&a.pci, cap + 4, 4, 0xfee00003); /* bits 1:0 are read-only */
	ck_assert_uint_eq(pci_cfg_read(&a.pci, cap + 4, 4), 0xfee00000);
	pci_cfg_write(&a.pci, cap + 8, 4, 0x1);
	pci_cfg_write(&a.pci, cap + 12, 2, 0x4060);
	ck_assert_int_eq(fs.sets, 0); /* off: no routes */
	/* On with 4 vectors (MME 2): vector v's data has v in its low bits. */
	cmd(&a, PCI_COMMAND_MASTER);
	pci_cfg_write(&a.pci, cap + 2, 2, 0x21);
	ck_assert(msi_enabled(&m));
	ck_assert_int_eq(fs.sets, 4);
	ck_assert_uint_eq(fs.routed_addr[m.vec[3].gsi - 24], 0x1fee00000ULL);
	ck_assert_uint_eq(fs.routed_data[m.vec[3].gsi - 24], 0x4063);
	ck_assert_uint_eq(fs.routed_data[m.vec[0].gsi - 24], 0x4060);
	msi_notify(&m, 2);
	ck_assert_uint_eq(fired(&m.vec[2]), 1);
	/* Masked: the pending bit shows, unmasking sends it. */
	pci_cfg_write(&a.pci, cap + 0x10, 4, 1u << 2);
	msi_notify(&m, 2);
	ck_assert_uint_eq(fired(&m.vec[2]), 0);
	ck_assert_uint_eq(pci_cfg_read(&a.pci, cap + 0x14, 4), 1u << 2);
	pci_cfg_write(&a.pci, cap + 0x14, 4, 0); /* pending bits are read-only */
	ck_assert_uint_eq(pci_cfg_read(&a.pci, cap + 0x14, 1), 1u << 2);
	pci_cfg_write(&a.pci, cap + 0x10, 4, 0);
	ck_assert_uint_eq(fired(&m.vec[2]), 1);
	ck_assert_uint_eq(pci_cfg_read(&a.pci, cap + 0x14, 4), 0);
	/* Bus Master clear holds it too. */
	cmd(&a, 0);
	msi_notify(&m, 1);
	ck_assert_uint_eq(fired(&m.vec[1]), 0);
	cmd(&a, PCI_COMMAND_MASTER);
	ck_assert_uint_eq(fired(&m.vec[1]), 1);
	/* Only enabled vectors: MME 1 (2 vectors) drops vector 3. */
	pci_cfg_write(&a.pci, cap + 2, 2, 0x11);
	msi_notify(&m, 3);
	ck_assert_uint_eq(fired(&m.vec[3]), 0);
	/* INTx is off while MSI is on. */
	pci_intx_set(&a.pci, true);
	ck_assert_int_eq(gsi_level[19], 0);
	pci_cfg_write(&a.pci, cap + 2, 2, 0);
	ck_assert(!msi_enabled(&m));
	ck_assert_int_eq(gsi_level[19], 1);
	pci_intx_set(&a.pci, false);
	msi_destroy(&m);
	ck_assert_int_eq(fs.frees, 4);
	ck_assert_ptr_null(a.pci.msi);
}
END_TEST

/* ---- DMA ---- */

START_TEST(dma_needs_bus_master)
{
	struct tdev off_bus;
	uint8_t buf[16] = "kestrel-dma-ok!", back[16] = { 0 };
	uint8_t *p;

	ck_assert(!pci_dma_allowed(&a.pci));
	ck_assert_int_eq(pci_dma_write(&a.pci, 0x1000, buf, sizeof(buf)), -EPERM);
	ck_assert_int_eq(pci_dma_read(&a.pci, 0x1000, back, sizeof(back)), -EPERM);
	ck_assert_ptr_null(pci_dma_map(&a.pci, 0x1000, 16));
	cmd(&a, PCI_COMMAND_MASTER);
	ck_assert(pci_dma_allowed(&a.pci));
	ck_assert_int_eq(pci_dma_write(&a.pci, 0x1000, buf, sizeof(buf)), 0);
	ck_assert_int_eq(pci_dma_read(&a.pci, 0x1000, back, sizeof(back)), 0);
	ck_assert_mem_eq(back, buf, sizeof(buf));
	ck_assert_int_eq(pci_dma_read(&a.pci, RAM - 8, back, 16), -EFAULT);
	ck_assert_int_eq(pci_dma_write(&a.pci, ~0ULL - 4, buf, 16), -EFAULT);
	p = pci_dma_map(&a.pci, 0x1000, 16);
	ck_assert_ptr_nonnull(p);
	ck_assert_mem_eq(p, buf, sizeof(buf));
	pci_dma_unmap(&a.pci, 0x1000, 16);
	ck_assert_ptr_null(pci_dma_map(&a.pci, RAM - 8, 16));
	cmd(&a, 0);
	ck_assert_int_eq(pci_dma_read(&a.pci, 0x1000, back, sizeof(back)), -EPERM);
	/* A function on no bus reaches no memory. */
	tdev_init(&off_bus);
	pci_cfg_write(&off_bus.pci, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
	ck_assert_int_eq(pci_dma_read(&off_bus.pci, 0x1000, back, 4), -ENODEV);
}
END_TEST

/* ---- state: the INTx level comes back ---- */

START_TEST(state_intx_level)
{
	struct state_buf s = { 0 };

	pci_intx_set(&a.pci, true);
	ck_assert_int_eq(pci_dev_save(&a.pci, &s), 0);
	pci_intx_set(&a.pci, false);
	ck_assert_int_eq(gsi_level[19], 0);
	ck_assert_int_eq(pci_dev_load(&a.pci, &s), 0);
	ck_assert_int_eq(gsi_level[19], 1);
	s.pos = 0;
	s.data[STATE_HDR + PCI_CFG_SIZE] = 2; /* a level that is no level */
	ck_assert_int_eq(pci_dev_load(&a.pci, &s), -EINVAL);
	pci_intx_set(&a.pci, false);
	state_free(&s);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pci");

	ADD_TCASE(s, "core", setup, teardown, 0, bar_sizing, bar_move_follows_on_the_bus,
		  bar_64bit_above_4g, bar_overlap_refused, rom_bar, capability_chain,
		  intx_routing_and_sharing, msix_programming, msix_save_load, msi_programming,
		  dma_needs_bus_master, state_intx_level);
	return run_suite(s);
}
