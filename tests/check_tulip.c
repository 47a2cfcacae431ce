/* The emulated DEC 21140A (devices/emulated/tulip*.c) driven like a guest
 * driver: CSR reads and writes under the device lock, descriptor lists and
 * buffers in a guest memory of the test's own, a SOCK_SEQPACKET socket pair
 * standing in for the TAP (one message per frame, vnet header first) and a
 * fake INTA# line. Covers the PCI header, the serial ROM (bit-banged as
 * Linux's tulip_read_eeprom does), the MII PHY (as tulip_mdio_read/write),
 * reset values and software reset, transmit in ring and chained lists,
 * setup frames and every filtering mode, receive into one and several
 * descriptors, running out of descriptors (RU, poll demand, missed
 * frames), VLAN tagging, link down, the general-purpose timer, Bus Master
 * Enable, hostile lists (addresses outside RAM, loops, zero lengths,
 * jabber), a register fuzz, and the state round trip. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kestrel/guest_mem.h"
#include "kestrel/net.h"
#include "kestrel/pci.h"
#include "kestrel/state.h"
#include "kestrel/tulip.h"
#include "fake_board.h"

#define RAM	  MiB(16)
#define RX_RING	  0x10000u
#define TX_RING	  0x20000u
#define RX_BUF(i) (0x100000u + 0x800u * (i))
#define TX_BUF(i) (0x200000u + 0x800u * (i))
#define SETUP_BUF 0x300000u
#define NDESC	  8
#define HDR	  NET_VNET_HDR_LEN

/* CSRs and bits, as a driver spells them (21140A HRM chapter 3). */
#define CSR(n)	 ((n)*8)
#define OWN	 0x80000000u
#define TI	 0x1u
#define TPS	 0x2u
#define TU	 0x4u
#define TJT	 0x8u
#define RI	 0x40u
#define RU	 0x80u
#define RPS	 0x100u
#define GTE	 0x800u
#define FBE	 0x2000u
#define AIS	 0x8000u
#define NIS	 0x10000u
#define RS(csr5) (((csr5) >> 17) & 7)
#define TS(csr5) (((csr5) >> 20) & 7)
#define SR	 0x2u
#define ST	 0x2000u
#define PR	 0x40u
#define PM	 0x80u
#define RA	 0x40000000u
#define IC	 0x80000000u
#define LS	 0x40000000u
#define FS	 0x20000000u
#define FT1	 0x10000000u
#define SET	 0x08000000u
#define TER	 0x02000000u
#define TCH	 0x01000000u
#define FT0	 0x00400000u
#define RER	 0x02000000u
#define RCH	 0x01000000u
#define R_FS	 0x200u
#define R_LS	 0x100u
#define R_DE	 0x4000u
#define R_ES	 0x8000u
#define R_MF	 0x400u
#define R_FF	 0x40000000u

static struct guest_mem gm;
static struct pci_bus bus;
static struct device *dev;
static struct fake_irq irq;
static int peer = -1;
static const uint8_t our_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static unsigned tx_next, rx_next;

/* ---- the driver side ---- */

static uint32_t csr_read(unsigned n)
{
	uint32_t v;

	pthread_mutex_lock(&dev->lock);
	v = (uint32_t)dev->ops->read(dev, 0, CSR(n), 4);
	pthread_mutex_unlock(&dev->lock);
	return v;
}

static void csr_write(unsigned n, uint32_t v)
{
	pthread_mutex_lock(&dev->lock);
	dev->ops->write(dev, 0, CSR(n), 4, v);
	pthread_mutex_unlock(&dev->lock);
}

static int irq_level(void)
{
	return __atomic_load_n(&irq.level, __ATOMIC_ACQUIRE);
}

static void put(uint64_t gpa, const void *p, size_t n)
{
	ck_assert_int_eq(gm_write(&gm, gpa, p, n), 0);
}

static void get(uint64_t gpa, void *p, size_t n)
{
	ck_assert_int_eq(gm_read(&gm, gpa, p, n), 0);
}

static uint32_t get32(uint64_t gpa)
{
	uint32_t v;

	get(gpa, &v, 4);
	return __atomic_load_n(&v, __ATOMIC_ACQUIRE);
}

static void put32(uint64_t gpa, uint32_t v)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	put(gpa, &v, 4);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Wait up to 3 s for cond (the I/O thread runs on its own). */
#define WAIT_FOR(cond)                                               \
	({                                                           \
		bool ok_ = false;                                    \
		for (int i_ = 0; i_ < 3000 && !(ok_ = (cond)); i_++) \
			sleep_ms(1);                                 \
		ok_;                                                 \
	})

static void desc_put(uint32_t at, uint32_t des0, uint32_t des1, uint32_t b1, uint32_t b2)
{
	uint32_t d[3] = { des1, b1, b2 };

	put(at + 4, d, sizeof(d));
	put32(at, des0);
}

static void pci_command(uint16_t cmd)
{
	pci_cfg_write(tulip_pci(dev), PCI_COMMAND, 2, cmd);
}

/* Receive ring of NDESC 1536-byte buffers, transmit ring of NDESC, both
 * started; interrupts all enabled. */
static void rings_start(void)
{
	for (unsigned i = 0; i < NDESC; i++) {
		desc_put(RX_RING + 16 * i, OWN, (i == NDESC - 1 ? RER : 0) | 1536, RX_BUF(i), 0);
		desc_put(TX_RING + 16 * i, 0, i == NDESC - 1 ? TER : 0, 0, 0);
	}
	tx_next = rx_next = 0;
	csr_write(3, RX_RING);
	csr_write(4, TX_RING);
	csr_write(7, 0x1ebef);
	csr_write(6, SR | ST);
}

/* Post one transmit descriptor (flags | buffer 1 of len at b1). */
static uint32_t tx_post(uint32_t flags, uint32_t b1, uint32_t len1)
{
	unsigned i = tx_next++ % NDESC;
	uint32_t at = TX_RING + 16 * i;

	desc_put(at, OWN, flags | (i == NDESC - 1 ? TER : 0) | len1, b1, 0);
	return at;
}

static bool tx_done(uint32_t at)
{
	return !(get32(at) & OWN);
}

static size_t make_frame(uint8_t *f, const uint8_t *dst, uint16_t type, size_t len)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, (uint8_t[]){ 0x02, 0, 0, 0, 0, 9 }, 6);
	f[12] = (uint8_t)(type >> 8);
	f[13] = (uint8_t)type;
	for (size_t i = 14; i < len; i++)
		f[i] = (uint8_t)(i * 7);
	return len;
}

/* Send one frame as the host would (vnet header first). */
static void peer_send(const uint8_t *f, size_t len)
{
	uint8_t b[HDR + 4096] = { 0 };

	memcpy(b + HDR, f, len);
	ck_assert_int_eq(send(peer, b, HDR + len, 0), (ssize_t)(HDR + len));
}

/* A frame of len bytes to dst from the host. */
static void send_to(const uint8_t *dst, size_t len)
{
	uint8_t f[2048];

	make_frame(f, dst, 0x0800, len);
	peer_send(f, len);
}

/* One frame the device sent (without header), or -1 after 3 s. */
static ssize_t peer_recv(uint8_t *f, size_t cap)
{
	uint8_t b[HDR + 8192];
	struct pollfd p = { .fd = peer, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, 3000) != 1)
		return -1;
	n = recv(peer, b, sizeof(b), 0);
	ck_assert_int_ge(n, HDR);
	memcpy(f, b + HDR, MIN((size_t)n - HDR, cap));
	return n - HDR;
}

static bool peer_quiet(void)
{
	struct pollfd p = { .fd = peer, .events = POLLIN };

	return poll(&p, 1, 200) == 0;
}

/* A 192-byte setup frame through the transmit ring; wait for it. */
static void setup_frame(const uint8_t *b, uint32_t ft)
{
	uint32_t at;

	put(SETUP_BUF, b, 192);
	at = tx_post(SET | ft | IC, SETUP_BUF, 192);
	csr_write(1, 0);
	ck_assert(WAIT_FOR(tx_done(at)));
}

static void setup_perfect(const uint8_t (*addrs)[6], unsigned n)
{
	uint8_t b[192];

	memset(b, 0, sizeof(b));
	for (unsigned i = 0; i < 16; i++) {
		const uint8_t *a = i < n ? addrs[i] : addrs[0];

		for (unsigned k = 0; k < 3; k++) {
			b[12 * i + 4 * k] = a[2 * k];
			b[12 * i + 4 * k + 1] = a[2 * k + 1];
		}
	}
	setup_frame(b, 0);
}

/* Guest memory and a PCI bus of the test's own (INTA# of every slot on a
 * fake line); the NIC at slot 1 with vlan, Bus Master on. */
static void make_nic(unsigned vlan)
{
	struct pci_intx_routing r;
	struct pci_board board = {
		.gm = &gm, .irq_set = fake_irq_set, .irq_opaque = &irq, .intx = &r
	};
	struct tulip_board b = { .bus = &bus, .slot = 1 };
	struct tulip_opts o = { .name = "tnet", .vlan = vlan };
	struct net_tap tap;
	char err[200];
	int sv[2];

	ck_assert_int_eq(gm_init(&gm, RAM, false), 0);
	ck_assert_int_eq(pci_intx_swizzle(&r, 1, 17), 0);
	(void)fake_irq_line(&irq, 17);
	pci_bus_init(&bus, &board);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	peer = sv[0];
	net_tap_from_fds(&tap, &sv[1], 1);
	memcpy(o.mac, our_mac, 6);
	ck_assert_int_eq(tulip_create(&b, &o, &tap, &dev, err, sizeof(err)), 0);
	pci_command(PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

static void setup(void)
{
	make_nic(0);
}

static void setup_vlan(void)
{
	make_nic(5);
}

static void teardown(void)
{
	dev->ops->destroy(dev);
	dev = NULL;
	close(peer);
	pci_bus_destroy(&bus);
	gm_destroy(&gm);
}

/* ---- PCI, ROM, PHY, registers ---- */

START_TEST(test_pci_header)
{
	struct pci_dev *p = tulip_pci(dev);

	ck_assert_uint_eq(pci_cfg_read(p, PCI_VENDOR_ID, 2), 0x1011);
	ck_assert_uint_eq(pci_cfg_read(p, PCI_DEVICE_ID, 2), 0x0009);
	ck_assert_uint_eq(pci_cfg_read(p, PCI_CLASS_PROG, 4) >> 8, 0x0200);
	ck_assert_uint_eq(pci_cfg_read(p, PCI_REVISION_ID, 1), 0x20);
	ck_assert_uint_eq(pci_cfg_read(p, PCI_INTERRUPT_PIN, 1), 1);
	/* BAR 0: 128 bytes of I/O; BAR 1: 128 bytes of memory. */
	pci_cfg_write(p, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
	ck_assert_uint_eq(pci_cfg_read(p, PCI_BASE_ADDRESS_0, 4), 0xffffff81);
	pci_cfg_write(p, PCI_BASE_ADDRESS_0 + 4, 4, 0xffffffff);
	ck_assert_uint_eq(pci_cfg_read(p, PCI_BASE_ADDRESS_0 + 4, 4), 0xffffff80);
	ck_assert_ptr_null(tulip_pci(NULL));
}
END_TEST

#define CSR9_READ()   csr_read(9)
#define CSR9_WRITE(v) csr_write(9, (v))
#include "guest/lib/tulip_csr9.h"

static uint32_t eeprom_read(unsigned location, unsigned addr_len)
{
	return csr9_eeprom_read(location, addr_len);
}

START_TEST(test_srom)
{
	uint8_t ee[128];

	/* Linux sizes the ROM by reading 0xff with 8 address bits: a 93C46
	 * drives its dummy 0 where a 93C66 still takes address bits. */
	ck_assert_uint_eq(eeprom_read(0xff, 8) & 0x40000, 0);
	for (unsigned i = 0; i < 64; i++) {
		uint16_t w = (uint16_t)eeprom_read(i, 6);

		ee[2 * i] = (uint8_t)w;
		ee[2 * i + 1] = (uint8_t)(w >> 8);
	}
	ck_assert_mem_ne(ee, ee + 16, 8); /* not the old layout: MAC at 20 */
	ck_assert_mem_eq(ee + 20, our_mac, 6);
	ck_assert_uint_eq(ee[18], 4);		    /* format version */
	ck_assert_uint_eq(ee[19], 1);		    /* one controller */
	ck_assert_uint_eq(ee[27], 30);		    /* its info leaf */
	ck_assert_uint_eq(ee[30] | ee[31] << 8, 3); /* default 100BaseTX */
	ck_assert_uint_eq(ee[33], 2);		    /* two media blocks */
	ck_assert_uint_eq(ee[34], 0x8c);	    /* MII PHY block, extended */
	ck_assert_uint_eq(ee[35], 1);
	ck_assert_uint_eq(ee[47], 3);		 /* compact 100BaseTX block */
	ck_assert_uint_eq((ee[49] >> 1) & 7, 6); /* link sense on GP pin 6 */
	ck_assert_uint_eq(ee[126] | ee[127] << 8, (uint16_t)~crc32_le(ee, 126));
	/* Sequential read goes on into the next word. */
	ck_assert_uint_eq(eeprom_read(10, 6) & 0xffff, (uint16_t)(our_mac[0] | our_mac[1] << 8));
}
END_TEST

static unsigned mdio_read(unsigned phy, unsigned reg)
{
	return csr9_mdio_read(phy, reg);
}

static void mdio_write(unsigned phy, unsigned reg, unsigned val)
{
	csr9_mdio_write(phy, reg, val);
}

START_TEST(test_mii)
{
	unsigned bmsr = mdio_read(1, 1);

	/* What Linux's tulip_find_mii() takes for a PHY. */
	ck_assert((bmsr & 0x8301) == 0x8001 || ((bmsr & 0x8000) == 0 && (bmsr & 0x7800)));
	ck_assert_uint_eq(bmsr & 0x0004, 0x0004);   /* link up */
	ck_assert_uint_eq(mdio_read(2, 1), 0xffff); /* nobody at 2 */
	ck_assert_uint_eq(mdio_read(1, 2), 0x2000);
	ck_assert_uint_eq(mdio_read(1, 4), 0x01e1);
	mdio_write(1, 4, 0x0061);
	ck_assert_uint_eq(mdio_read(1, 4), 0x0061);
	mdio_write(2, 4, 0x01e1); /* another PHY's */
	ck_assert_uint_eq(mdio_read(1, 4), 0x0061);
	ck_assert_uint_eq(mdio_read(1, 5) & 0x01e0, 0x01e0); /* the partner's abilities */
	/* Link down and up again: BMSR shows the loss once (latched low). */
	ck_assert_int_eq(tulip_set_link(dev, false), 0);
	ck_assert_uint_eq(mdio_read(1, 1) & 0x0004, 0);
	ck_assert_uint_eq(csr_read(12) & 0x40, 0); /* link-sense pin */
	ck_assert_int_eq(tulip_set_link(dev, true), 0);
	ck_assert_uint_eq(mdio_read(1, 1) & 0x0004, 0x0004);
	ck_assert_uint_eq(csr_read(12) & 0x40, 0x40);
	ck_assert_int_eq(tulip_set_link(dev, false), 0);
	ck_assert_int_eq(tulip_set_link(dev, true), 0);
	ck_assert_uint_eq(mdio_read(1, 1) & 0x0004, 0);
	ck_assert_uint_eq(mdio_read(1, 1) & 0x0004, 0x0004);
	/* BMCR reset brings the advertisement back. */
	mdio_write(1, 0, 0x8000);
	ck_assert_uint_eq(mdio_read(1, 4), 0x01e1);
	ck_assert_uint_eq(mdio_read(1, 0), 0x3100);
}
END_TEST

START_TEST(test_reset_values)
{
	ck_assert_uint_eq(csr_read(0), 0xfe000000);
	ck_assert_uint_eq(csr_read(5) & 0x3ffffff, 0); /* nothing pending, both stopped */
	ck_assert_uint_eq(csr_read(6), 0x02000000);
	ck_assert_uint_eq(csr_read(7), 0);
	csr_write(0, 0x01a08000); /* Linux's x86 CSR0 */
	ck_assert_uint_eq(csr_read(0), 0xfe000000 | 0x01a08000);
	csr_write(3, RX_RING | 3);
	ck_assert_uint_eq(csr_read(3), RX_RING); /* longword aligned */
	csr_write(7, 0xffffffff);
	ck_assert_uint_eq(csr_read(7), 0x1efef);
	csr_write(6, SR | ST);
	ck_assert_uint_ne(RS(csr_read(5)), 0);
	csr_write(6, 0x02000000);
	ck_assert_uint_eq(csr_read(5) & 0x7e0000, 0); /* Linux's tulip_stop_rxtx waits for this */
	csr_write(0, 1);			      /* software reset */
	ck_assert_uint_eq(csr_read(0), 0xfe000000);
	ck_assert_uint_eq(csr_read(3), 0);
	ck_assert_uint_eq(csr_read(7), 0);
	/* Narrow reads see their lanes; narrow writes do nothing. */
	csr_write(7, 0x1ebef);
	pthread_mutex_lock(&dev->lock);
	ck_assert_uint_eq(dev->ops->read(dev, 0, CSR(7) + 1, 1), 0xeb);
	dev->ops->write(dev, 0, CSR(7), 2, 0);
	pthread_mutex_unlock(&dev->lock);
	ck_assert_uint_eq(csr_read(7), 0x1ebef);
}
END_TEST

/* ---- transmit ---- */

START_TEST(test_tx_frame)
{
	uint8_t f[100], got[200];
	uint32_t at;

	rings_start();
	setup_perfect(&our_mac, 1);
	ck_assert_uint_eq(csr_read(5) & TI, TI);
	ck_assert_int_eq(irq_level(), 1);
	csr_write(5, 0x1ffff);
	ck_assert_int_eq(irq_level(), 0);
	make_frame(f, bcast, 0x0806, 42);
	put(TX_BUF(0), f, 42);
	at = tx_post(FS | LS | IC, TX_BUF(0), 42);
	csr_write(1, 0);
	ck_assert_int_eq(peer_recv(got, sizeof(got)), 60); /* padded to the minimum */
	ck_assert_mem_eq(got, f, 42);
	ck_assert_uint_eq(got[42] | got[59], 0);
	ck_assert(WAIT_FOR(tx_done(at)));
	ck_assert_uint_eq(get32(at), 0); /* no error */
	ck_assert(WAIT_FOR(csr_read(5) & TI));
	ck_assert(WAIT_FOR(irq_level() == 1));
	ck_assert(csr_read(5) & NIS);
	/* The ring runs dry: suspended, TU. */
	ck_assert(WAIT_FOR(TS(csr_read(5)) == 6));
	ck_assert(csr_read(5) & TU);
	ck_assert(pci_cfg_read(tulip_pci(dev), PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	/* Interrupt Disable masks INTA# but not the status bit. */
	pci_command(PCI_COMMAND_IO | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	ck_assert_int_eq(irq_level(), 0);
	pci_command(PCI_COMMAND_IO | PCI_COMMAND_MASTER);
	ck_assert_int_eq(irq_level(), 1);
	csr_write(5, TI | TU);
	ck_assert_int_eq(irq_level(), 0);
	ck_assert(!(pci_cfg_read(tulip_pci(dev), PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
}
END_TEST

/* One frame in three chained descriptors using both buffers, after
 * Linux's zero-length descriptor; DSL on the ring. */
START_TEST(test_tx_chained)
{
	uint8_t f[1514], got[2048];
	const uint32_t d0 = 0x30000, d1 = 0x30020, d2 = 0x30100, d3 = 0x30200;

	make_frame(f, our_mac, 0x0800, sizeof(f));
	put(TX_BUF(0), f, 500);
	put(TX_BUF(1), f + 500, 500);
	put(TX_BUF(2), f + 1000, 514);
	desc_put(d3, 0, TCH, 0, d0);
	desc_put(d2, OWN, TCH | LS | IC | 514, TX_BUF(2), d3);
	desc_put(d1, OWN, TCH | 500, TX_BUF(1), d2);
	desc_put(d0, OWN, FS | (300u << 11) | 200, TX_BUF(0), TX_BUF(0) + 200);
	/* d0 is a ring-mode descriptor with two buffers: d1 is the next
	 * one after 4 skipped longwords (CSR0 DSL). */
	csr_write(0, 4u << 2);
	csr_write(4, d0);
	csr_write(7, 0x1ebef);
	csr_write(6, ST);
	ck_assert_int_eq(peer_recv(got, sizeof(got)), (ssize_t)sizeof(f));
	ck_assert_mem_eq(got, f, sizeof(f));
	ck_assert(WAIT_FOR(tx_done(d2)));
	ck_assert(WAIT_FOR(TS(csr_read(5)) == 6));
	ck_assert_uint_eq(csr_read(5) & (TI | TU), TI | TU);
	ck_assert(peer_quiet());
}
END_TEST

/* A chained descriptor pointing at itself with data and no LS: the frame
 * grows past 2048 bytes, the jabber timer stops the transmitter. */
START_TEST(test_tx_jabber_loop)
{
	const uint32_t d = 0x30000;

	desc_put(d, OWN, TCH | FS | 1500, TX_BUF(0), d);
	csr_write(4, d);
	csr_write(6, ST);
	ck_assert(WAIT_FOR(tx_done(d)));
	ck_assert(peer_quiet());
	/* The descriptor was given back without LS: no frame, waiting. */
	desc_put(d, OWN, TCH | 1500, TX_BUF(0), d);
	csr_write(1, 0);
	ck_assert(WAIT_FOR(tx_done(d)));
	desc_put(d, OWN, TCH | LS | 100, TX_BUF(0), d);
	csr_write(1, 0);
	ck_assert(WAIT_FOR(csr_read(5) & TJT));
	ck_assert_uint_eq(get32(d), 0x8000 | 0x4000); /* ES | TO */
	ck_assert(csr_read(5) & TPS);
	ck_assert_uint_eq(TS(csr_read(5)), 0);
	ck_assert(peer_quiet());
	/* With the jabber timer disabled such a frame goes out whole. */
	csr_write(15, 1);
	desc_put(d, OWN, TCH | FS | 1500, TX_BUF(0), d);
	csr_write(6, 0x02000000);
	csr_write(6, ST);
	ck_assert(WAIT_FOR(tx_done(d)));
	desc_put(d, OWN, TCH | LS | 1500, TX_BUF(0), d);
	csr_write(1, 0);
	{
		uint8_t got[8192];

		ck_assert_int_eq(peer_recv(got, sizeof(got)), 3000);
	}
}
END_TEST

START_TEST(test_tx_outside_ram)
{
	uint8_t got[200];
	uint32_t at;

	rings_start();
	at = tx_post(FS | LS, RAM - 10, 60);
	csr_write(1, 0);
	ck_assert(WAIT_FOR(csr_read(5) & FBE));
	ck_assert_uint_eq((csr_read(5) >> 23) & 7, 1); /* master abort */
	ck_assert_uint_eq(TS(csr_read(5)) | RS(csr_read(5)), 0);
	ck_assert(get32(at) & OWN);
	ck_assert(pci_cfg_read(tulip_pci(dev), PCI_STATUS, 2) & PCI_STATUS_REC_MASTER_ABORT);
	ck_assert(WAIT_FOR(irq_level() == 1));
	/* Starting again does nothing until a software reset. */
	csr_write(6, SR | ST);
	ck_assert_uint_eq(TS(csr_read(5)), 0);
	csr_write(0, 1);
	ck_assert_int_eq(irq_level(), 0);
	rings_start();
	memset(got, 0, sizeof(got));
	put(TX_BUF(1), got, 60);
	at = tx_post(FS | LS, TX_BUF(1), 60);
	csr_write(1, 0);
	ck_assert_int_eq(peer_recv(got, sizeof(got)), 60);
	/* A descriptor list outside RAM. */
	csr_write(6, 0x02000000);
	csr_write(4, 0xfffffff0);
	csr_write(6, ST);
	ck_assert(WAIT_FOR(csr_read(5) & FBE));
}
END_TEST

START_TEST(test_bus_master_off)
{
	uint8_t f[60], got[100];
	uint32_t at;

	pci_command(PCI_COMMAND_IO);
	rings_start();
	make_frame(f, bcast, 0x0806, 60);
	put(TX_BUF(0), f, 60);
	at = tx_post(FS | LS, TX_BUF(0), 60);
	csr_write(1, 0);
	ck_assert(peer_quiet());
	ck_assert(get32(at) & OWN);
	pci_command(PCI_COMMAND_IO | PCI_COMMAND_MASTER);
	ck_assert_int_eq(peer_recv(got, sizeof(got)), 60);
	ck_assert(WAIT_FOR(tx_done(at)));
}
END_TEST

/* ---- receive ---- */

static bool rx_done(unsigned i)
{
	return !(get32(RX_RING + 16 * i) & OWN);
}

/* Receive (promiscuous) into the list at list, interrupts enabled. */
static void rx_start(uint32_t list)
{
	csr_write(3, list);
	csr_write(7, 0x1ebef);
	csr_write(6, SR | PR);
}

/* Descriptor i comes back holding a frame for dst. */
static void rx_expect(unsigned i, const uint8_t *dst)
{
	uint8_t f[6];

	ck_assert(WAIT_FOR(rx_done(i)));
	get(RX_BUF(i), f, 6);
	ck_assert_mem_eq(f, dst, 6);
}

START_TEST(test_rx_frame)
{
	uint8_t f[1514], got[1514];
	uint32_t s;

	rings_start();
	setup_perfect(&our_mac, 1);
	make_frame(f, our_mac, 0x0800, sizeof(f));
	peer_send(f, sizeof(f));
	ck_assert(WAIT_FOR(rx_done(0)));
	s = get32(RX_RING);
	ck_assert_uint_eq(s & (R_FS | R_LS | R_ES), R_FS | R_LS);
	ck_assert_uint_eq((s >> 16) & 0x3fff, sizeof(f) + 4); /* FCS counted */
	get(RX_BUF(0), got, sizeof(got));
	ck_assert_mem_eq(got, f, sizeof(f));
	ck_assert(WAIT_FOR(csr_read(5) & RI));
	ck_assert_int_eq(irq_level(), 1);
	/* A short frame arrives padded to the minimum. */
	make_frame(f, our_mac, 0x0806, 42);
	peer_send(f, 42);
	ck_assert(WAIT_FOR(rx_done(1)));
	ck_assert_uint_eq((get32(RX_RING + 16) >> 16) & 0x3fff, 64);
}
END_TEST

/* Frames not for us stay out; broadcast only when in the table. */
START_TEST(test_filter_perfect_inverse)
{
	static const uint8_t other[6] = { 0x52, 0x54, 0x00, 0x99, 0x99, 0x99 };
	const uint8_t table[2][6] = { { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 },
				      { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff } };

	rings_start();
	setup_perfect(table, 1);
	send_to(other, 64);
	send_to(bcast, 64);
	send_to(our_mac, 64);
	rx_expect(0, our_mac);
	ck_assert(!rx_done(1));
	setup_perfect(table, 2);
	send_to(bcast, 64);
	ck_assert(WAIT_FOR(rx_done(1)));
	ck_assert(get32(RX_RING + 16) & R_MF);
	/* Inverse: everything but the table. */
	{
		uint8_t b[192];

		memset(b, 0, sizeof(b));
		for (unsigned i = 0; i < 16; i++)
			for (unsigned k = 0; k < 3; k++) {
				b[12 * i + 4 * k] = our_mac[2 * k];
				b[12 * i + 4 * k + 1] = our_mac[2 * k + 1];
			}
		setup_frame(b, FT1);
	}
	ck_assert_uint_eq(csr_read(6) & 0x15, 0x10); /* IF shows the mode */
	send_to(our_mac, 64);
	send_to(other, 64);
	rx_expect(2, other);
}
END_TEST

/* Linux's build_setup_frame_hash(): 512-bit table, our address at
 * longwords 39-41. */
START_TEST(test_filter_hash)
{
	static const uint8_t mc1[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };
	static const uint8_t mc2[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x02 };
	uint8_t b[192];
	uint16_t table[32] = { 0 };
	unsigned bit;

	rings_start();
	table[255 / 16] |= 1u << (255 % 16); /* broadcast */
	bit = crc32_le(mc1, 6) & 0x1ff;
	table[bit / 16] |= (uint16_t)(1u << (bit % 16));
	ck_assert_uint_ne(bit, crc32_le(mc2, 6) & 0x1ff);
	memset(b, 0, sizeof(b));
	for (unsigned i = 0; i < 32; i++) {
		b[4 * i] = (uint8_t)table[i];
		b[4 * i + 1] = (uint8_t)(table[i] >> 8);
	}
	for (unsigned k = 0; k < 3; k++) {
		b[156 + 4 * k] = our_mac[2 * k];
		b[156 + 4 * k + 1] = our_mac[2 * k + 1];
	}
	setup_frame(b, FT0);
	ck_assert_uint_eq(csr_read(6) & 0x15, 0x01); /* HP */
	send_to(mc2, 64);
	send_to(mc1, 64);
	send_to(bcast, 64);
	send_to(our_mac, 64);
	rx_expect(0, mc1);
	rx_expect(1, bcast);
	rx_expect(2, our_mac);
	/* Pass-all-multicast, then promiscuous, then receive-all with FF. */
	csr_write(6, SR | ST | PM);
	send_to(mc2, 64);
	ck_assert(WAIT_FOR(rx_done(3)));
	csr_write(6, SR | ST | PR);
	send_to((uint8_t[]){ 2, 2, 2, 2, 2, 2 }, 64);
	ck_assert(WAIT_FOR(rx_done(4)));
	ck_assert(!(get32(RX_RING + 64) & R_FF));
	csr_write(6, SR | ST | RA);
	send_to((uint8_t[]){ 2, 2, 2, 2, 2, 3 }, 64);
	ck_assert(WAIT_FOR(rx_done(5)));
	ck_assert(get32(RX_RING + 80) & R_FF);
}
END_TEST

/* Small buffers: one frame over several descriptors, FS on the first, LS
 * and the length on the last. */
START_TEST(test_rx_multi_desc)
{
	uint8_t f[1000], got[1000];
	uint32_t s;

	for (unsigned i = 0; i < NDESC; i++)
		desc_put(RX_RING + 16 * i, OWN, (i == NDESC - 1 ? RER : 0) | (100u << 11) | 200,
			 RX_BUF(i), RX_BUF(i) + 0x400);
	rx_start(RX_RING);
	make_frame(f, our_mac, 0x0800, sizeof(f));
	peer_send(f, sizeof(f));
	ck_assert(WAIT_FOR(rx_done(3)));
	ck_assert_uint_eq(get32(RX_RING) & (R_FS | R_LS), R_FS);
	ck_assert_uint_eq(get32(RX_RING + 16) & (R_FS | R_LS), 0);
	s = get32(RX_RING + 48);
	ck_assert_uint_eq(s & (R_FS | R_LS | R_ES), R_LS);
	ck_assert_uint_eq((s >> 16) & 0x3fff, 1004);
	for (unsigned i = 0; i < 4; i++) {
		get(RX_BUF(i), got + 300 * i, MIN(200u, 1000 - 300 * i));
		if (300 * i + 200 < 1000)
			get(RX_BUF(i) + 0x400, got + 300 * i + 200,
			    MIN(100u, 1000 - 300 * i - 200));
	}
	ck_assert_mem_eq(got, f, sizeof(f));
	ck_assert(!rx_done(4));
}
END_TEST

/* No descriptor: RU and suspended; the frame waits for a poll demand;
 * later ones are missed (CSR8) when none comes. */
START_TEST(test_rx_suspend)
{
	desc_put(RX_RING, 0, RER | 1536, RX_BUF(0), 0);
	rx_start(RX_RING);
	send_to(our_mac, 64);
	ck_assert(WAIT_FOR(csr_read(5) & RU));
	ck_assert_uint_eq(RS(csr_read(5)), 4);
	ck_assert(csr_read(5) & AIS);
	desc_put(RX_RING, OWN, RER | 1536, RX_BUF(0), 0);
	csr_write(2, 0);
	ck_assert(WAIT_FOR(rx_done(0)));
	ck_assert_uint_eq(csr_read(8), 0);
	/* Nobody gives the descriptor back: frames are missed. */
	for (int i = 0; i < 3; i++)
		send_to(our_mac, 64);
	ck_assert(WAIT_FOR((csr_read(8) & 0xffff) >= 2));
}
END_TEST

/* A chained list that loops back on itself with small buffers: the frame
 * meets its first descriptor again, is cut (DE) and the process
 * suspends. A loop of zero-length descriptors: the process stops (RPS). */
START_TEST(test_rx_loops)
{
	const uint32_t a = 0x30000, b = 0x30100;

	desc_put(b, OWN, RCH | 64, RX_BUF(1), a);
	desc_put(a, OWN, RCH | 64, RX_BUF(0), b);
	rx_start(a);
	send_to(our_mac, 1000);
	ck_assert(WAIT_FOR(!(get32(a) & OWN)));
	ck_assert_uint_eq(get32(a) & (R_FS | R_LS), R_FS);
	ck_assert_uint_eq(get32(b) & (R_LS | R_DE | R_ES), R_LS | R_DE | R_ES);
	ck_assert(WAIT_FOR(csr_read(5) & RU));
	/* A zero-length descriptor chained to itself: nothing fits. */
	csr_write(6, 0x02000000);
	desc_put(a, OWN, RCH, 0, a);
	rx_start(a);
	send_to(our_mac, 64);
	ck_assert(WAIT_FOR(!(get32(a) & OWN)));
	ck_assert_uint_eq(get32(a) & (R_FS | R_LS | R_DE), R_FS | R_LS | R_DE);
	/* More zero-length descriptors than a frame may take: stopped. */
	csr_write(6, 0x02000000);
	for (unsigned i = 0; i < 300; i++)
		desc_put(0x40000 + 16 * i, OWN, 0, 0, 0);
	rx_start(0x40000);
	send_to(our_mac, 64);
	ck_assert(WAIT_FOR(csr_read(5) & RPS));
	ck_assert_uint_eq(RS(csr_read(5)), 0);
	ck_assert(get32(0x40000) & OWN);
	/* Restarted with a good list, it receives again. */
	rings_start();
	csr_write(6, SR | ST | PR);
	send_to(our_mac, 64);
	ck_assert(WAIT_FOR(rx_done(0)));
}
END_TEST

START_TEST(test_rx_outside_ram)
{
	desc_put(RX_RING, OWN, RER | 1536, RAM - 32, 0);
	rx_start(RX_RING);
	send_to(our_mac, 64);
	ck_assert(WAIT_FOR(csr_read(5) & FBE));
	ck_assert_uint_eq(RS(csr_read(5)), 0);
}
END_TEST

START_TEST(test_link_down)
{
	uint8_t f[64], got[100];
	uint32_t at;

	rings_start();
	csr_write(6, SR | ST | PR);
	ck_assert_int_eq(tulip_set_link(dev, false), 0);
	make_frame(f, bcast, 0x0806, 60);
	put(TX_BUF(0), f, 60);
	at = tx_post(FS | LS, TX_BUF(0), 60);
	csr_write(1, 0);
	ck_assert(WAIT_FOR(tx_done(at)));
	ck_assert_uint_eq(get32(at) & 0x8c00, 0x8c00); /* ES, LO, NC */
	ck_assert(peer_quiet());
	peer_send(f, 60);
	sleep_ms(100);
	ck_assert(!rx_done(0));
	ck_assert_int_eq(tulip_set_link(dev, true), 0);
	at = tx_post(FS | LS, TX_BUF(0), 60);
	csr_write(1, 0);
	ck_assert_int_eq(peer_recv(got, sizeof(got)), 60);
	peer_send(f, 60);
	ck_assert(WAIT_FOR(rx_done(0)));
	ck_assert_int_eq(tulip_set_link(NULL, true), -ENODEV);
}
END_TEST

/* CSR0 DBO: descriptors big-endian; CSR0 TAP: a suspended transmitter
 * looks at its list again without a poll demand. */
START_TEST(test_dbo_and_auto_poll)
{
	uint8_t f[60], got[100];
	uint32_t d[4];

	csr_write(0, 0x00100000 | 1u << 17); /* DBO, TAP = 200 us */
	make_frame(f, bcast, 0x0806, 60);
	put(TX_BUF(0), f, 60);
	d[0] = 0;
	d[1] = __builtin_bswap32(FS | LS | TER | 60);
	d[2] = __builtin_bswap32(TX_BUF(0));
	d[3] = 0;
	put(TX_RING, d, sizeof(d));
	csr_write(4, TX_RING);
	csr_write(6, ST);
	ck_assert(WAIT_FOR(TS(csr_read(5)) == 6));
	put32(TX_RING, __builtin_bswap32(OWN)); /* no CSR1 write */
	ck_assert_int_eq(peer_recv(got, sizeof(got)), 60);
	ck_assert_mem_eq(got, f, 60);
	ck_assert(WAIT_FOR(get32(TX_RING) == 0));
}
END_TEST

/* HRM 3.2.2.16: frames past 2048 bytes are cut by the receive watchdog
 * (RW, RWT) unless CSR15 RWD disables it. */
START_TEST(test_rx_watchdog)
{
	uint8_t f[3000];

	for (unsigned i = 0; i < NDESC; i++)
		desc_put(RX_RING + 16 * i, OWN, (i == NDESC - 1 ? RER : 0) | (2047u << 11) | 2047,
			 RX_BUF(4 * i), RX_BUF(4 * i + 2));
	rx_start(RX_RING);
	make_frame(f, our_mac, 0x0800, sizeof(f));
	peer_send(f, sizeof(f));
	ck_assert(WAIT_FOR(rx_done(0)));
	ck_assert_uint_eq(get32(RX_RING) & (R_FS | R_LS | 0x10), R_FS | R_LS | 0x10);
	ck_assert_uint_eq((get32(RX_RING) >> 16) & 0x3fff, 2048);
	ck_assert(csr_read(5) & 0x200); /* RWT */
	csr_write(15, 0x10);		/* RWD */
	peer_send(f, sizeof(f));
	ck_assert(WAIT_FOR(rx_done(1)));
	ck_assert_uint_eq(get32(RX_RING + 16) & 0x10, 0);
	ck_assert_uint_eq((get32(RX_RING + 16) >> 16) & 0x3fff, sizeof(f) + 4);
}
END_TEST

START_TEST(test_gp_timer)
{
	csr_write(7, GTE | AIS);
	csr_write(11, 2);
	ck_assert(WAIT_FOR(csr_read(5) & GTE));
	ck_assert_int_eq(irq_level(), 1);
	ck_assert_uint_eq(csr_read(11) & 0xffff, 0);
	csr_write(5, GTE);
	ck_assert_int_eq(irq_level(), 0);
	/* Continuous mode reloads. */
	csr_write(11, 0x10000 | 1);
	ck_assert(WAIT_FOR(csr_read(5) & GTE));
	csr_write(5, GTE);
	ck_assert(WAIT_FOR(csr_read(5) & GTE));
	csr_write(11, 0);
}
END_TEST

/* Random CSR writes (SWR included) must leave a device that still works
 * after a software reset. */
START_TEST(test_fuzz)
{
	uint8_t f[60], got[100];

	for (int i = 0; i < 20000; i++) {
		unsigned n = (unsigned)(fuzz_next() % 16);
		uint32_t v = (uint32_t)fuzz_next();

		if (fuzz_next() % 4 == 0)
			v &= 0x00ffffff; /* addresses inside RAM now and then */
		csr_write(n, v);
		(void)csr_read((unsigned)(fuzz_next() % 16));
	}
	csr_write(0, 1);
	csr_write(11, 0);
	rings_start();
	make_frame(f, bcast, 0x0806, 60);
	put(TX_BUF(0), f, 60);
	tx_post(FS | LS, TX_BUF(0), 60);
	csr_write(1, 0);
	do
		ck_assert_int_ge(peer_recv(got, sizeof(got)), 0);
	while (memcmp(got, f, 60));
}
END_TEST

/* ---- VLAN ---- */

START_TEST(test_vlan)
{
	uint8_t f[100], got[200], tagged[104];
	size_t len = 64;

	rings_start();
	csr_write(6, SR | ST | PR);
	make_frame(f, bcast, 0x0806, 64);
	put(TX_BUF(0), f, 64);
	tx_post(FS | LS, TX_BUF(0), 64);
	csr_write(1, 0);
	ck_assert_int_eq(peer_recv(got, sizeof(got)), 68);
	ck_assert_mem_eq(got, f, 12);
	ck_assert(net_vlan_match(got + 12, 5));
	ck_assert_mem_eq(got + 16, f + 12, 52);
	/* The guest's own tag does not leave. */
	memcpy(tagged, f, 64);
	ck_assert_int_eq(net_vlan_insert(tagged, &len, sizeof(tagged), 7), 0);
	put(TX_BUF(1), tagged, len);
	tx_post(FS | LS, TX_BUF(1), (uint32_t)len);
	csr_write(1, 0);
	ck_assert(peer_quiet());
	/* In: VLAN 5 arrives untagged, others and untagged frames stay out. */
	peer_send(f, 64);
	peer_send(tagged, len);
	len = 64;
	memcpy(tagged, f, 64);
	ck_assert_int_eq(net_vlan_insert(tagged, &len, sizeof(tagged), 5), 0);
	peer_send(tagged, len);
	ck_assert(WAIT_FOR(rx_done(0)));
	get(RX_BUF(0), got, 64);
	ck_assert_mem_eq(got, f, 64);
	ck_assert_uint_eq((get32(RX_RING) >> 16) & 0x3fff, 68);
	sleep_ms(100);
	ck_assert(!rx_done(1));
}
END_TEST

/* ---- state ---- */

/* Another NIC on the same bus (slot 2), to load into. */
static struct device *second_device(int *peer2)
{
	struct tulip_board b = { .bus = &bus, .slot = 2 };
	struct tulip_opts o = { .name = "t2" };
	struct net_tap tap;
	struct device *d;
	char err[200];
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	*peer2 = sv[0];
	net_tap_from_fds(&tap, &sv[1], 1);
	memcpy(o.mac, our_mac, 6);
	ck_assert_int_eq(tulip_create(&b, &o, &tap, &d, err, sizeof(err)), 0);
	return d;
}

START_TEST(test_state_roundtrip)
{
	struct state_buf s;
	struct device *b;
	uint8_t f[60], got[100];
	int peer2;
	uint32_t at;

	rings_start();
	setup_perfect(&our_mac, 1);
	csr_write(15, 0x11);
	csr_write(12, 0x13f);
	csr_write(12, 0x05);
	csr_write(11, 0x10000 | 5000); /* a timer running */
	/* A frame half gathered: FS without LS. */
	make_frame(f, bcast, 0x0806, 60);
	put(TX_BUF(0), f, 60);
	at = tx_post(FS, TX_BUF(0), 30);
	csr_write(1, 0);
	ck_assert(WAIT_FOR(tx_done(at)));
	ck_assert(WAIT_FOR(TS(csr_read(5)) == 6));
	(void)eeprom_read(3, 6);
	/* As the registry does it: quiesced, under each device's lock. */
	b = second_device(&peer2);
	dev->ops->quiesce(dev);
	b->ops->quiesce(b);
	s = locked_save(dev);
	ck_assert_int_eq(locked_load(dev, &s), 0); /* a quiesced NIC saves what it loads */
	load_saves_same(b, &s);
	ck_assert_uint_gt(check_every_corruption(b, &s), 100);
	load_saves_same(b, &s);
	state_free(&s);
	/* Not quiesced: refused. */
	ck_assert_int_eq(b->ops->resume(b), 0);
	s = locked_save(b);
	ck_assert_int_eq(locked_load(b, &s), -EBUSY);
	state_free(&s);
	/* The loaded NIC finishes the frame the first one began. */
	dev->ops->destroy(dev);
	dev = b;
	close(peer);
	peer = peer2;
	tx_post(LS, TX_BUF(0) + 30, 30);
	csr_write(1, 0);
	ck_assert_int_eq(peer_recv(got, sizeof(got)), 60);
	ck_assert_mem_eq(got, f, 60);
	ck_assert_uint_eq(csr_read(15), 0x11);
	ck_assert_uint_eq(csr_read(12) & 0x3f, 0x05);
	ck_assert_uint_gt(csr_read(11) & 0xffff, 0); /* the timer goes on */
}
END_TEST

static Suite *tulip_suite(void)
{
	Suite *s = suite_create("tulip");
	TCase *tc = tcase_create("device");
	TCase *tv = tcase_create("vlan");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_pci_header);
	tcase_add_test(tc, test_srom);
	tcase_add_test(tc, test_mii);
	tcase_add_test(tc, test_reset_values);
	tcase_add_test(tc, test_tx_frame);
	tcase_add_test(tc, test_tx_chained);
	tcase_add_test(tc, test_tx_jabber_loop);
	tcase_add_test(tc, test_tx_outside_ram);
	tcase_add_test(tc, test_bus_master_off);
	tcase_add_test(tc, test_rx_frame);
	tcase_add_test(tc, test_filter_perfect_inverse);
	tcase_add_test(tc, test_filter_hash);
	tcase_add_test(tc, test_rx_multi_desc);
	tcase_add_test(tc, test_rx_suspend);
	tcase_add_test(tc, test_rx_loops);
	tcase_add_test(tc, test_rx_outside_ram);
	tcase_add_test(tc, test_link_down);
	tcase_add_test(tc, test_gp_timer);
	tcase_add_test(tc, test_dbo_and_auto_poll);
	tcase_add_test(tc, test_rx_watchdog);
	tcase_add_test(tc, test_fuzz);
	tcase_add_test(tc, test_state_roundtrip);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(tv, setup_vlan, teardown);
	tcase_add_test(tv, test_vlan);
	suite_add_tcase(s, tv);
	return s;
}

int main(void)
{
	return run_suite(tulip_suite());
}
