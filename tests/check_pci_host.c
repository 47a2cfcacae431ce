/* PCI mechanism #1, the host bridge, config-space masks, BAR sizing and
 * remapping, hooks, state. */
#include <check.h>
#include <stdlib.h>

#include "kestrel/devices.h"
#include "kestrel/pci.h"
#include "fake_board.h"

enum { ADDR = 0, DATA = 1 };

static struct device *host;

/* A device with a 4 KiB MMIO BAR, a 32-byte I/O BAR and a 64-bit 1 MiB
 * prefetchable BAR, recording every remap. */
struct remap_rec {
	int bar;
	uint64_t old_addr, new_addr;
};

struct dummy {
	struct pci_dev pci;
	struct remap_rec log[64];
	int nlog;
	int reads, writes;
	uint64_t addr[PCI_NUM_BARS]; /* where we believe each BAR is */
};

static struct dummy dummy;

static void dummy_remap(struct pci_dev *p, int bar, uint64_t old_addr, uint64_t new_addr)
{
	struct dummy *d = p->opaque;

	ck_assert_uint_eq(old_addr, d->addr[bar]); /* remaps form a consistent history */
	d->addr[bar] = new_addr;
	if (d->nlog < 64)
		d->log[d->nlog++] = (struct remap_rec){ bar, old_addr, new_addr };
}

static uint32_t dummy_cfg_read(struct pci_dev *p, unsigned off, unsigned size, uint32_t val)
{
	struct dummy *d = p->opaque;

	d->reads++;
	if (off == 0x40 && size == 4)
		return 0xc0ffee00u | (uint32_t)d->writes; /* a live register */
	return val;
}

static void dummy_cfg_write(struct pci_dev *p, unsigned off, unsigned size, uint32_t val)
{
	((struct dummy *)p->opaque)->writes++;
}

static const struct pci_dev_ops dummy_ops = {
	.cfg_read = dummy_cfg_read,
	.cfg_write = dummy_cfg_write,
	.bar_remap = dummy_remap,
};

static void dummy_init(struct dummy *d)
{
	memset(d, 0, sizeof(*d));
	for (int i = 0; i < PCI_NUM_BARS; i++)
		d->addr[i] = PCI_BAR_UNMAPPED;
	pci_dev_init(&d->pci, 0x1234, 0x5678, 0x020000, 0x07, &dummy_ops, d);
	pci_dev_set_subsystem(&d->pci, 0x1af4, 0x0001);
	pci_dev_set_irq(&d->pci, 1, 11);
	ck_assert_int_eq(pci_dev_set_bar(&d->pci, 0, 4096, PCI_BAR_MEM32), 0);
	ck_assert_int_eq(pci_dev_set_bar(&d->pci, 1, 32, PCI_BAR_IO), 0);
	ck_assert_int_eq(pci_dev_set_bar(&d->pci, 2, 1 << 20, PCI_BAR_MEM64 | PCI_BAR_PREFETCH), 0);
}

static uint32_t cfg_addr(unsigned bus, unsigned slot, unsigned fn, unsigned reg)
{
	return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t cfg_rd(unsigned bus, unsigned slot, unsigned fn, unsigned reg, unsigned size)
{
	dev_wr(host, ADDR, 0, 4, cfg_addr(bus, slot, fn, reg));
	return (uint32_t)dev_rd(host, DATA, reg & 3, size);
}

static void cfg_wr(unsigned bus, unsigned slot, unsigned fn, unsigned reg, unsigned size,
		   uint32_t v)
{
	dev_wr(host, ADDR, 0, 4, cfg_addr(bus, slot, fn, reg));
	dev_wr(host, DATA, reg & 3, size, v);
}

static void setup(void)
{
	host = pci_host_create(NULL);
	ck_assert_ptr_nonnull(host);
	dummy_init(&dummy);
	ck_assert_int_eq(pci_host_add(host, &dummy.pci, 3), 3);
}

static void teardown(void)
{
	host->ops->destroy(host);
}

START_TEST(test_host_bridge_ids)
{
	ck_assert_uint_eq(cfg_rd(0, 0, 0, 0x00, 4), 0x12378086);
	ck_assert_uint_eq(cfg_rd(0, 0, 0, 0x08, 4) >> 8, 0x060000);
	ck_assert_uint_eq(cfg_rd(0, 0, 0, 0x0e, 1), 0x00);
	ck_assert_uint_eq(cfg_rd(0, 0, 0, 0x2c, 4), 0x11001af4);
	ck_assert_uint_eq(cfg_rd(0, 0, 0, 0x02, 2), 0x1237);
	ck_assert_uint_eq(cfg_rd(0, 0, 0, 0x01, 1), 0x80);
	ck_assert_uint_eq(cfg_rd(0, 0, 0, 0x10, 4), 0); /* no BARs */
	ck_assert_ptr_nonnull(pci_host_slot(host, 0));
	/* PAM registers hold what firmware writes. */
	cfg_wr(0, 0, 0, 0x59, 1, 0x30);
	ck_assert_uint_eq(cfg_rd(0, 0, 0, 0x59, 1), 0x30);
	cfg_wr(0, 0, 0, 0x50, 1, 0x30);
	ck_assert_uint_eq(cfg_rd(0, 0, 0, 0x50, 1), 0x00);
}
END_TEST

START_TEST(test_empty_and_disabled)
{
	ck_assert_uint_eq(cfg_rd(0, 5, 0, 0, 4), 0xffffffff);
	ck_assert_uint_eq(cfg_rd(0, 31, 0, 0, 4), 0xffffffff);
	ck_assert_uint_eq(cfg_rd(0, 5, 0, 2, 2), 0xffff);
	ck_assert_uint_eq(cfg_rd(0, 0, 1, 0, 4), 0xffffffff); /* function 1 */
	ck_assert_uint_eq(cfg_rd(0, 3, 7, 0, 4), 0xffffffff);
	ck_assert_uint_eq(cfg_rd(1, 0, 0, 0, 4), 0xffffffff); /* bus 1 */
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0, 4), 0x56781234);
	/* Enable bit clear: nothing answers, writes go nowhere. */
	dev_wr(host, ADDR, 0, 4, cfg_addr(0, 3, 0, 4) & 0x7fffffff);
	ck_assert_uint_eq(dev_rd(host, DATA, 0, 4), 0xffffffff);
	dev_wr(host, DATA, 0, 2, 0x0003);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 4, 2), 0);
	/* Writes to an empty slot are dropped. */
	cfg_wr(0, 7, 0, 4, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(0, 7, 0, 0, 4), 0xffffffff);
}
END_TEST

START_TEST(test_config_address_register)
{
	dev_wr(host, ADDR, 0, 4, 0xffffffff);
	ck_assert_uint_eq(dev_rd(host, ADDR, 0, 4), 0x80fffffc);
	/* Byte and word accesses at 0xCF8 are not ours. */
	dev_wr(host, ADDR, 0, 1, 0x00);
	dev_wr(host, ADDR, 0, 2, 0x0000);
	ck_assert_uint_eq(dev_rd(host, ADDR, 0, 4), 0x80fffffc);
	ck_assert_uint_eq(dev_rd(host, ADDR, 0, 1), 0xff);
	ck_assert_uint_eq(dev_rd(host, ADDR, 0, 2), 0xffff);
	/* Data-port byte lanes select the byte within the dword. */
	dev_wr(host, ADDR, 0, 4, cfg_addr(0, 0, 0, 0));
	ck_assert_uint_eq(dev_rd(host, DATA, 1, 1), 0x80);
	ck_assert_uint_eq(dev_rd(host, DATA, 2, 2), 0x1237);
	ck_assert_uint_eq(dev_rd(host, DATA, 3, 1), 0x12);
	/* A wide access running past 0xCFF floats high there. */
	ck_assert_uint_eq(dev_rd(host, DATA, 2, 4), 0xffff1237);
	ck_assert_uint_eq(dev_rd(host, DATA, 0, 8), 0xffffffff12378086ULL);
}
END_TEST

START_TEST(test_write_masks)
{
	cfg_wr(0, 3, 0, 0x00, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x00, 4), 0x56781234);
	cfg_wr(0, 3, 0, 0x08, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x08, 4), 0x02000007);
	cfg_wr(0, 3, 0, 0x2c, 4, 0);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x2c, 4), 0x00011af4);
	cfg_wr(0, 3, 0, 0x04, 2, 0xffff);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x04, 2), 0x0547);
	cfg_wr(0, 3, 0, 0x04, 2, 0);
	cfg_wr(0, 3, 0, 0x3c, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x3c, 4), 0x000001ff); /* line RW, pin RO */
	cfg_wr(0, 3, 0, 0x0c, 2, 0xffff);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x0c, 4), 0x0000ffff);
	cfg_wr(0, 3, 0, 0x30, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x30, 4), 0); /* no ROM */
	/* STATUS: error bits are write-1-to-clear, the rest read-only. */
	pci_set_u16(&dummy.pci, PCI_STATUS, 0xf918);
	cfg_wr(0, 3, 0, 0x06, 2, 0x0000);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x06, 2), 0xf918);
	cfg_wr(0, 3, 0, 0x06, 2, 0x2000 | 0x0018);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x06, 2), 0xd918);
	cfg_wr(0, 3, 0, 0x04, 4, 0xffff0000); /* dword write: COMMAND + STATUS */
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x04, 4), 0x00180000);
}
END_TEST

START_TEST(test_bar_sizing)
{
	static const uint32_t sized[6] = { 0xfffff000, 0xffffffe1, 0xfff0000c, 0xffffffff, 0, 0 };

	for (unsigned i = 0; i < 6; i++)
		cfg_wr(0, 3, 0, 0x10 + 4 * i, 4, 0xffffffff);
	for (unsigned i = 0; i < 6; i++)
		ck_assert_msg(cfg_rd(0, 3, 0, 0x10 + 4 * i, 4) == sized[i], "BAR%u = %#x", i,
			      cfg_rd(0, 3, 0, 0x10 + 4 * i, 4));
	ck_assert_int_eq(dummy.nlog, 0); /* decoding is off: nothing moved */
	/* Type bits survive any write. */
	cfg_wr(0, 3, 0, 0x10, 4, 0);
	cfg_wr(0, 3, 0, 0x14, 4, 0);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x10, 4), 0x0);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x14, 4), 0x1);
	/* Byte writes to a BAR are masked per byte. */
	cfg_wr(0, 3, 0, 0x11, 1, 0xff);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x10, 4), 0xf000);
}
END_TEST

START_TEST(test_bar_remap)
{
	cfg_wr(0, 3, 0, 0x10, 4, 0xc0001000);
	cfg_wr(0, 3, 0, 0x14, 4, 0xc001);
	cfg_wr(0, 3, 0, 0x18, 4, 0x00100000);
	cfg_wr(0, 3, 0, 0x1c, 4, 0x00000001);
	ck_assert_int_eq(dummy.nlog, 0);
	ck_assert_uint_eq(pci_dev_bar_addr(&dummy.pci, 0), PCI_BAR_UNMAPPED);

	cfg_wr(0, 3, 0, 0x04, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
	ck_assert_int_eq(dummy.nlog, 3);
	ck_assert_uint_eq(dummy.addr[0], 0xc0001000);
	ck_assert_uint_eq(dummy.addr[1], 0xc000);
	ck_assert_uint_eq(dummy.addr[2], 0x100100000ULL);
	ck_assert_uint_eq(dummy.addr[3], PCI_BAR_UNMAPPED); /* the upper half is no BAR */
	ck_assert_uint_eq(pci_dev_bar_addr(&dummy.pci, 1), 0xc000);

	/* Move BAR0: one remap, old -> new. */
	cfg_wr(0, 3, 0, 0x10, 4, 0xc0002000);
	ck_assert_int_eq(dummy.nlog, 4);
	ck_assert_int_eq(dummy.log[3].bar, 0);
	ck_assert_uint_eq(dummy.log[3].old_addr, 0xc0001000);
	ck_assert_uint_eq(dummy.log[3].new_addr, 0xc0002000);
	/* Sizing while decoding: the all-ones pattern is not a mapping. */
	cfg_wr(0, 3, 0, 0x10, 4, 0xffffffff);
	ck_assert_uint_eq(dummy.addr[0], PCI_BAR_UNMAPPED);
	cfg_wr(0, 3, 0, 0x14, 4, 0xffffffff);
	ck_assert_uint_eq(dummy.addr[1], PCI_BAR_UNMAPPED); /* past 64 KiB of I/O */
	cfg_wr(0, 3, 0, 0x10, 4, 0xc0003000);
	cfg_wr(0, 3, 0, 0x14, 4, 0xe000);
	ck_assert_uint_eq(dummy.addr[0], 0xc0003000);
	ck_assert_uint_eq(dummy.addr[1], 0xe000);
	/* Address 0 is not a mapping either. */
	cfg_wr(0, 3, 0, 0x18, 4, 0);
	cfg_wr(0, 3, 0, 0x1c, 4, 0);
	ck_assert_uint_eq(dummy.addr[2], PCI_BAR_UNMAPPED);
	/* Turning off memory decoding unmaps the memory BARs only. */
	int n = dummy.nlog;
	cfg_wr(0, 3, 0, 0x04, 2, PCI_COMMAND_IO);
	ck_assert_int_eq(dummy.nlog, n + 1);
	ck_assert_uint_eq(dummy.addr[0], PCI_BAR_UNMAPPED);
	ck_assert_uint_eq(dummy.addr[1], 0xe000);
	/* Writes elsewhere never remap. */
	cfg_wr(0, 3, 0, 0x3c, 1, 5);
	ck_assert_int_eq(dummy.nlog, n + 1);
}
END_TEST

START_TEST(test_hooks_and_add)
{
	struct dummy other;

	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x40, 4), 0xc0ffee00);
	cfg_wr(0, 3, 0, 0x40, 4, 0x1234);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x40, 4), 0xc0ffee01);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x40, 2), 0); /* only the dword is live */
	ck_assert_int_gt(dummy.reads, 2);

	dummy_init(&other);
	ck_assert_int_eq(pci_host_add(host, &other.pci, 0), -EINVAL);
	ck_assert_int_eq(pci_host_add(host, &other.pci, 32), -EINVAL);
	ck_assert_int_eq(pci_host_add(host, &other.pci, -2), -EINVAL);
	ck_assert_int_eq(pci_host_add(host, &other.pci, 3), -EEXIST);
	ck_assert_int_eq(pci_host_add(host, &other.pci, -1), 1);
	ck_assert_int_eq(other.pci.slot, 1);
	ck_assert_ptr_eq(pci_host_slot(host, 1), &other.pci);
	ck_assert_uint_eq(cfg_rd(0, 1, 0, 0, 4), 0x56781234);
	for (int s = 2; s < 32; s++)
		if (s != 3)
			ck_assert_int_eq(pci_host_add(host, &other.pci, -1), s);
	ck_assert_int_eq(pci_host_add(host, &other.pci, -1), -ENOSPC);
	ck_assert_ptr_null(pci_host_slot(host, 32));

	/* Bad BAR declarations. */
	ck_assert_int_eq(pci_dev_set_bar(&other.pci, 6, 4096, 0), -EINVAL);
	ck_assert_int_eq(pci_dev_set_bar(&other.pci, 5, 4096, PCI_BAR_MEM64), -EINVAL);
	ck_assert_int_eq(pci_dev_set_bar(&other.pci, 0, 3000, 0), -EINVAL);
	ck_assert_int_eq(pci_dev_set_bar(&other.pci, 0, 8, 0), -EINVAL);
	ck_assert_int_eq(pci_dev_set_bar(&other.pci, 0, 512, PCI_BAR_IO), -EINVAL);
	ck_assert_int_eq(pci_dev_set_bar(&other.pci, 0, 16, PCI_BAR_IO | PCI_BAR_PREFETCH),
			 -EINVAL);
	ck_assert_int_eq(pci_dev_set_bar(&other.pci, 0, 1ULL << 32, PCI_BAR_MEM32), -EINVAL);
	ck_assert_int_eq(pci_dev_set_bar(&other.pci, 4, 1ULL << 32, PCI_BAR_MEM64), 0);
	pci_cfg_write(&other.pci, 0x20, 4, 0xffffffff);
	pci_cfg_write(&other.pci, 0x24, 4, 0xffffffff);
	ck_assert_uint_eq(pci_cfg_read(&other.pci, 0x20, 4), 0x00000004);
	ck_assert_uint_eq(pci_cfg_read(&other.pci, 0x24, 4), 0xffffffff);
	/* Out-of-range direct accesses are refused, not overrun. */
	ck_assert_uint_eq(pci_cfg_read(&other.pci, 0xfe, 4), 0xffffffff);
	pci_cfg_write(&other.pci, 0xff, 2, 0);
}
END_TEST

/* Enumerate bus 0 as Linux and SeaBIOS do: function 0 of each slot, and
 * functions 1-7 only when function 0 sets the multi-function bit (PCI 3.0
 * 6.2.1). Returns the devfns found. */
static int scan_bus0(int *found)
{
	int n = 0;

	for (unsigned slot = 0; slot < 32; slot++) {
		if (cfg_rd(0, slot, 0, 0, 4) == 0xffffffff)
			continue;
		found[n++] = (int)slot * 8;
		if (!(cfg_rd(0, slot, 0, 0x0e, 1) & 0x80))
			continue;
		for (unsigned fn = 1; fn < 8; fn++)
			if (cfg_rd(0, slot, fn, 0, 4) != 0xffffffff)
				found[n++] = (int)(slot * 8 + fn);
	}
	return n;
}

START_TEST(test_multifunction)
{
	struct dummy f50, f52, f74, f31;
	int found[256], n;

	dummy_init(&f50);
	dummy_init(&f52);
	dummy_init(&f74);
	dummy_init(&f31);
	pci_set_u16(&f52.pci, PCI_DEVICE_ID, 0x7010);
	ck_assert_int_eq(pci_host_add_fn(host, &f52.pci, 5, 2), 5); /* before its function 0 */
	ck_assert_int_eq(pci_host_add_fn(host, &f50.pci, 5, 0), 5);
	ck_assert_int_eq(pci_host_add_fn(host, &f74.pci, 7, 4), 7); /* no function 0 */
	ck_assert_int_eq(pci_host_add_fn(host, &f31.pci, 5, 2), -EEXIST);
	ck_assert_int_eq(pci_host_add_fn(host, &f31.pci, 5, 8), -EINVAL);
	ck_assert_int_eq(pci_host_add_fn(host, &f31.pci, 0, 1), -EINVAL);
	ck_assert_uint_eq(cfg_rd(0, 5, 0, 0x0e, 1), 0x80);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x0e, 1), 0x00);
	ck_assert_uint_eq(cfg_rd(0, 5, 2, 0x00, 4), 0x70101234);
	ck_assert_uint_eq(cfg_rd(0, 5, 1, 0x00, 4), 0xffffffff);
	ck_assert_uint_eq(cfg_rd(0, 7, 4, 0x00, 2), 0x1234); /* there, if asked */
	n = scan_bus0(found);
	ck_assert_int_eq(n, 4);
	ck_assert_int_eq(found[0], 0x00);
	ck_assert_int_eq(found[1], 0x18);
	ck_assert_int_eq(found[2], 0x28);
	ck_assert_int_eq(found[3], 0x2a);
	/* The guest cannot clear the bit; config writes reach each function. */
	cfg_wr(0, 5, 0, 0x0c, 4, 0);
	ck_assert_uint_eq(cfg_rd(0, 5, 0, 0x0e, 1), 0x80);
	cfg_wr(0, 5, 2, 0x3c, 1, 9);
	ck_assert_uint_eq(cfg_rd(0, 5, 2, 0x3c, 1), 9);
	ck_assert_uint_eq(cfg_rd(0, 5, 0, 0x3c, 1), 11);
	ck_assert_ptr_eq(pci_host_fn(host, 5, 2), &f52.pci);
	ck_assert_int_eq(f52.pci.fn, 2);
	/* A second function joins slot 3; one leaves slot 5. */
	ck_assert_int_eq(pci_host_add_fn(host, &f31.pci, 3, 1), 3);
	ck_assert_uint_eq(cfg_rd(0, 3, 0, 0x0e, 1), 0x80);
	pci_dev_exit(&f52.pci);
	ck_assert_uint_eq(cfg_rd(0, 5, 0, 0x0e, 1), 0x00);
	ck_assert_uint_eq(cfg_rd(0, 5, 2, 0x00, 4), 0xffffffff);
	n = scan_bus0(found);
	ck_assert_int_eq(n, 4);
	ck_assert_int_eq(found[2], 0x19);
	/* -1 picks a slot with no function at all. */
	dummy_init(&f52);
	ck_assert_int_eq(pci_host_add(host, &f52.pci, -1), 1);
	pci_dev_exit(&f52.pci);
	pci_dev_exit(&f50.pci);
	pci_dev_exit(&f74.pci);
	pci_dev_exit(&f31.pci);
}
END_TEST

START_TEST(test_fuzz)
{
	struct pci_dev *bridge = pci_host_slot(host, 0);

	for (int i = 0; i < 100000; i++) {
		uint64_t r = fuzz_next();

		switch (r % 4) {
		case 0: {
			/* Mostly our two functions, sometimes anything. */
			uint32_t a = (uint32_t)fuzz_next();
			if ((r >> 8) % 4)
				a = (a & 0x800000fc) | ((r >> 12) & 1 ? 3u << 11 : 0);
			dev_wr(host, ADDR, 0, (r >> 16) % 8 ? 4 : fuzz_size(), a);
			break;
		}
		case 1: dev_wr(host, DATA, (r >> 8) % 4, fuzz_size(), fuzz_next()); break;
		case 2: dev_rd(host, DATA, (r >> 8) % 4, fuzz_size()); break;
		case 3: dev_rd(host, ADDR, 0, fuzz_size()); break;
		}
		/* Read-only identity never changes; remaps (checked in the hook) agree
		 * with what the function says. */
		ck_assert_uint_eq(pci_get_u32(&dummy.pci, 0), 0x56781234);
		ck_assert_uint_eq(pci_get_u32(&dummy.pci, 8), 0x02000007);
		ck_assert_uint_eq(pci_get_u32(bridge, 0), 0x12378086);
		ck_assert_uint_eq(dummy.pci.cfg[0x10] & 0xf, 0);
		ck_assert_uint_eq(dummy.pci.cfg[0x14] & 0x3, 1);
		ck_assert_uint_eq(dummy.pci.cfg[0x18] & 0xf, 0xc);
		for (int b = 0; b < PCI_NUM_BARS; b++) {
			uint64_t at = pci_dev_bar_addr(&dummy.pci, b);
			ck_assert_uint_eq(at, dummy.addr[b]);
			if (at != PCI_BAR_UNMAPPED)
				ck_assert_uint_eq(at & (dummy.pci.bar[b].size - 1), 0);
		}
	}
	ck_assert_int_gt(dummy.nlog, 10);
}
END_TEST

START_TEST(test_save_load_roundtrip)
{
	struct state_buf good, ds = { 0 };
	struct device *h2 = pci_host_create(NULL);
	struct dummy d2;

	cfg_wr(0, 0, 0, 0x5a, 1, 0x33);
	cfg_wr(0, 0, 0, 0x04, 2, 0x0006);
	dev_wr(host, ADDR, 0, 4, cfg_addr(0, 3, 0, 0x14));
	roundtrip(host, h2, &good);
	ck_assert_uint_eq(dev_rd(h2, ADDR, 0, 4), cfg_addr(0, 3, 0, 0x14));
	ck_assert_uint_eq(pci_cfg_read(pci_host_slot(h2, 0), 0x5a, 1), 0x33);
	ck_assert_uint_eq(pci_cfg_read(pci_host_slot(h2, 0), 0x04, 2), 0x0006);

	/* A function's own state: BARs come back through bar_remap. */
	cfg_wr(0, 3, 0, 0x10, 4, 0xc0004000);
	cfg_wr(0, 3, 0, 0x14, 4, 0xd000);
	cfg_wr(0, 3, 0, 0x04, 2, 0x0007);
	cfg_wr(0, 3, 0, 0x3c, 1, 10);
	ck_assert_int_eq(pci_dev_save(&dummy.pci, &ds), 0);
	dummy_init(&d2);
	ck_assert_int_eq(pci_dev_load(&d2.pci, &ds), 0);
	ck_assert_uint_eq(d2.addr[0], 0xc0004000);
	ck_assert_uint_eq(d2.addr[1], 0xd000);
	ck_assert_int_eq(d2.nlog, 2);
	ck_assert_mem_eq(d2.pci.cfg, dummy.pci.cfg, PCI_CFG_SIZE);

	/* A snapshot of another model is refused, and changes nothing. */
	ds.pos = 0;
	ds.data[STATE_HDR + 2] ^= 1; /* device id */
	dummy_init(&d2);
	ck_assert_int_eq(pci_dev_load(&d2.pci, &ds), -EINVAL);
	ck_assert_int_eq(d2.nlog, 0);
	ck_assert_uint_eq(pci_cfg_read(&d2.pci, 0x04, 2), 0);
	ds.data[STATE_HDR + 2] ^= 1;
	ds.pos = 0;
	ds.data[STATE_HDR + 0x10] = 0x08; /* BAR type bits */
	ck_assert_int_eq(pci_dev_load(&d2.pci, &ds), -EINVAL);
	ds.data[STATE_HDR + 0x10] = 0x00;
	ds.pos = 0;
	ds.data[STATE_HDR + 0x80] = 0x99; /* device-specific read-only: the model's value wins */
	ds.data[STATE_HDR + 0x06] = 0xff; /* STATUS: only W1C bits are taken */
	ck_assert_int_eq(pci_dev_load(&d2.pci, &ds), 0);
	ck_assert_uint_eq(d2.pci.cfg[0x80], 0);
	ck_assert_uint_eq(d2.pci.cfg[0x06], 0x00);
	state_free(&ds);
	h2->ops->destroy(h2);
	state_free(&good);
}
END_TEST

START_TEST(test_load_rejects_corruption)
{
	struct state_buf good;
	struct device *h2 = pci_host_create(NULL);

	dev_wr(host, ADDR, 0, 4, cfg_addr(0, 3, 0, 0x14));
	roundtrip(host, h2, &good);
	check_truncations(h2, &good);
	check_patched_fails(h2, &good, 0, 0x00);
	check_patched_fails(h2, &good, STATE_HDR + 3, 0x81); /* reserved address bits */
	check_patched_fails(h2, &good, STATE_HDR, 0x15);     /* address bits 1:0 */
	check_patched_fails(h2, &good, STATE_HDR + 4 + STATE_HDR + 0, 0x87); /* bridge vendor */
	check_patched_fails(h2, &good, STATE_HDR + 4, 0x00);		     /* inner section id */
	check_patched_loads(h2, &good, STATE_HDR + 4 + STATE_HDR + 0x5b, 0x11); /* PAM */
	h2->ops->destroy(h2);
	state_free(&good);
}
END_TEST

SUITE_MAIN("pci_host", "core", setup, teardown, 30, test_host_bridge_ids, test_empty_and_disabled,
	   test_config_address_register, test_write_masks, test_bar_sizing, test_bar_remap,
	   test_hooks_and_add, test_multifunction, test_fuzz, test_save_load_roundtrip,
	   test_load_rejects_corruption)
