/* tulip.bin: a ring-3 driver for the DEC 21140A "Tulip" (kestrel's
 * --net model=tulip, PCI 1011:0009) and the 21143 (QEMU's -device tulip,
 * 1011:0019), polled: interrupts stay masked at the CPU, but INTA#'s state
 * is read from PCI STATUS. Register level first: software reset values,
 * the MAC address from the serial ROM (bit-banged through CSR9 as Linux's
 * tulip_read_eeprom does), the MII PHY's link (as tulip_mdio_read), the
 * link-sense pin (CSR12, 21140 only); then descriptor rings, a setup frame,
 * and lib/netproto.c's ARP/ICMP/UDP checks against the host's side of the
 * TAP; then setup-frame filtering (perfect, hash, hash-only, inverse,
 * promiscuous) seen through the host's ARP replies.
 *
 * Command line (addresses dotted):
 *   ip=A peer=B     our address and the host's (default 10.0.0.2, 10.0.0.1)
 *   pings=N         echo requests (default 3), plus one of 1400 bytes
 *   probe=VID expect=0|1  an ARP request the guest tags itself with VID
 *   listen_ms=N     answer ARP and echo requests for N ms ("tulip: listening")
 *   filter=0        skip the filtering checks
 *   hostile=1       hostile lists instead (kestrel only): a transmit buffer
 *                   and a descriptor list outside RAM (fatal bus error), a
 *                   chained transmit loop (jabber), more zero-length receive
 *                   descriptors than a frame may take (receive stopped), and
 *                   receive descriptors rewritten while the device owns
 *                   them; after each a software reset, and the NIC must
 *                   still answer ARP
 *   linkwatch_ms=N  wait up to N ms each for the link to go down and come
 *                   back (the host's `kestrel ctl NAME net-link`): the PHY,
 *                   the link-sense pin, a frame sent while down, ARP after
 *                   ("tulip: watching the link", "tulip: link down seen")
 *   bench=tx|rx size=N ms=N count=N  the network benchmark (as vnet.bin's)
 * Lines: "PASS:/FAIL:" per check, "tulip: ..." information, "bench: ...". */
#include "netproto.h"

#define DEC_VENDOR   0x1011
#define DEV_21140    0x0009
#define DEV_21143    0x0019
#define PCI_COMMAND  0x04
#define PCI_STATUS   0x06
#define PCI_BAR0     0x10
#define CMD_IO	     0x0001
#define CMD_MASTER   0x0004
#define CMD_INTX_OFF 0x0400
#define STATUS_INTX  0x0008
#define IO_WINDOW    0xc000	 /* where BAR 0 goes when firmware left none */
#define MEM_WINDOW   0xe8000000u /* and BAR 1 */
#define CMD_MEM	     0x0002

/* CSRs (21140A HRM chapter 3), 8 bytes apart. */
#define CSR(n)	   ((n)*8)
#define CSR0_SWR   0x1u
#define CSR5_TI	   0x1u
#define CSR5_TPS   0x2u
#define CSR5_TU	   0x4u
#define CSR5_TJT   0x8u
#define CSR5_RI	   0x40u
#define CSR5_RU	   0x80u
#define CSR5_RPS   0x100u
#define CSR5_FBE   0x2000u
#define CSR5_NIS   0x10000u
#define CSR5_RS(v) (((v) >> 17) & 7)
#define CSR5_TS(v) (((v) >> 20) & 7)
#define CSR6_SR	   0x2u
#define CSR6_PR	   0x40u
#define CSR6_ST	   0x2000u
#define CSR6_MBO   0x02000000u
#define CSR7_TI	   0x1u
#define CSR7_NIE   0x10000u

#define OWN    0x80000000u
#define RD_ES  0x8000u
#define RD_FS  0x200u
#define RD_LS  0x100u
#define TD_ES  0x8000u /* TDES0: error summary, */
#define TD_LO  0x800u  /* loss of carrier, */
#define TD_NC  0x400u  /* no carrier */
#define TD_IC  0x80000000u
#define TD_LS  0x40000000u
#define TD_FS  0x20000000u
#define TD_FT1 0x10000000u
#define TD_SET 0x08000000u
#define TD_TER 0x02000000u
#define TD_TCH 0x01000000u
#define TD_FT0 0x00400000u
#define RD_RER 0x02000000u

#define NRX 32
#define NTX 32
#define BUF 1536

struct tdesc {
	volatile uint32_t des0, des1, buf1, buf2;
};

static struct tdesc rxr[NRX] __attribute__((aligned(16)));
static struct tdesc txr[NTX] __attribute__((aligned(16)));
static uint8_t rxbuf[NRX][BUF] __attribute__((aligned(64)));
static uint8_t txbuf[NTX][BUF] __attribute__((aligned(64)));
static uint8_t setup_buf[192] __attribute__((aligned(16)));
static struct tdesc scratch[320] __attribute__((aligned(16)));
static unsigned dev, io, rx_next, tx_next, tx_done_idx, kicks;
static uint32_t mem; /* BAR 1: the same CSRs in memory space */
static uint16_t devid;

static uint32_t csr_rd(unsigned n)
{
	return inl((uint16_t)(io + CSR(n)));
}

static void csr_wr(unsigned n, uint32_t v)
{
	outl((uint16_t)(io + CSR(n)), v);
}

static uint32_t phys(const volatile void *p)
{
	return (uint32_t)(uintptr_t)p;
}

/* ---- the function ---- */

static bool find_nic(void)
{
	for (unsigned d = 0; d < 32; d++) {
		uint32_t id = pci_conf_read32(0, d, 0, 0);

		if ((id & 0xffff) == DEC_VENDOR &&
		    (id >> 16 == DEV_21140 || id >> 16 == DEV_21143)) {
			dev = d;
			devid = (uint16_t)(id >> 16);
			return true;
		}
	}
	return false;
}

/* BAR 0 (I/O) and BAR 1 (memory), placed where firmware left none. */
static void place_bars(void)
{
	uint32_t bar = pci_conf_read32(0, dev, 0, PCI_BAR0);

	if (!(bar & ~3u)) {
		pci_conf_write32(0, dev, 0, PCI_BAR0, IO_WINDOW);
		bar = pci_conf_read32(0, dev, 0, PCI_BAR0);
	}
	io = bar & ~3u;
	bar = pci_conf_read32(0, dev, 0, PCI_BAR0 + 4);
	if (!(bar & ~0xfu)) {
		pci_conf_write32(0, dev, 0, PCI_BAR0 + 4, MEM_WINDOW);
		bar = pci_conf_read32(0, dev, 0, PCI_BAR0 + 4);
	}
	mem = bar & ~0xfu;
}

/* ---- serial ROM and MII through CSR9 (Linux's eeprom.c and media.c) ---- */

#define CSR9_READ()   csr_rd(9)
#define CSR9_WRITE(v) csr_wr(9, (v))
#include "tulip_csr9.h"

static uint32_t eeprom_read(unsigned location, unsigned addr_len)
{
	return csr9_eeprom_read(location, addr_len);
}

static unsigned mdio_read(unsigned phy, unsigned reg)
{
	return csr9_mdio_read(phy, reg);
}

static void check_srom(void)
{
	static uint8_t ee[128];
	unsigned bits = eeprom_read(0xff, 8) & 0x40000 ? 8 : 6;

	check(bits == 6, "serial ROM answers as a 93C46 (6 address bits)");
	for (unsigned i = 0; i < 64; i++) {
		uint16_t w = (uint16_t)eeprom_read(i, 6);

		ee[2 * i] = (uint8_t)w;
		ee[2 * i + 1] = (uint8_t)(w >> 8);
	}
	memcpy(net.mac, ee + 20, 6);
	net_print_mac("tulip: mac ", net.mac);
	gprintf(" (SROM format %u, %u controller)\n", ee[18], ee[19]);
	check(!(net.mac[0] & 1) && (net.mac[0] | net.mac[1] | net.mac[2]),
	      "a unicast MAC address at SROM byte 20");
	check((uint16_t)(ee[126] | ee[127] << 8) == (uint16_t)~crc32_le(ee, 126),
	      "the SROM's CRC matches");
}

static void check_link(void)
{
	unsigned bmsr = mdio_read(1, 1);

	gprintf("tulip: MII PHY 1 BMSR %04x ID %04x:%04x\n", bmsr, mdio_read(1, 2),
		mdio_read(1, 3));
	check(bmsr != 0xffff && (bmsr & 0x0004), "MII PHY at address 1 reports the link up");
	if (devid == DEV_21140)
		check(csr_rd(12) & 0x40, "link-sense pin (CSR12 GP6) high");
}

/* ---- rings ---- */

static void rings_init(void)
{
	for (unsigned i = 0; i < NRX; i++) {
		rxr[i].des1 = (i == NRX - 1 ? RD_RER : 0) | BUF;
		rxr[i].buf1 = phys(rxbuf[i]);
		rxr[i].buf2 = 0;
		rxr[i].des0 = OWN;
	}
	for (unsigned i = 0; i < NTX; i++) {
		txr[i].des0 = 0;
		txr[i].des1 = i == NTX - 1 ? TD_TER : 0;
	}
	rx_next = tx_next = tx_done_idx = 0;
	csr_wr(3, phys(rxr));
	csr_wr(4, phys(txr));
}

static void tx_reclaim(void)
{
	while (tx_done_idx != tx_next && !(txr[tx_done_idx % NTX].des0 & OWN))
		tx_done_idx++;
}

/* Wait up to 2 s for a free transmit descriptor. */
static bool tx_room(void)
{
	struct deadline d;

	deadline_start(&d, 2000000);
	while (tx_next - tx_done_idx >= NTX) {
		tx_reclaim();
		if (tx_next - tx_done_idx >= NTX && deadline_expired(&d))
			return false;
	}
	return true;
}

/* Post buffer b (len bytes) with flags in the next descriptor (the caller
 * made sure it is free); kick the transmitter. */
static void tx_post(uint32_t flags, uint32_t b, unsigned len, bool kick)
{
	struct tdesc *t = &txr[tx_next % NTX];

	t->des1 = flags | (tx_next % NTX == NTX - 1 ? TD_TER : 0) | len;
	t->buf1 = b;
	mb();
	t->des0 = OWN;
	mb();
	tx_next++;
	if (kick) {
		csr_wr(1, 0);
		kicks++;
	}
}

static bool tx_send(const uint8_t *f, unsigned len, const uint8_t *hdr)
{
	unsigned slot = tx_next % NTX;

	(void)hdr;
	if (!tx_room())
		return false;
	memcpy(txbuf[slot], f, len);
	tx_post(TD_FS | TD_LS, phys(txbuf[slot]), len, true);
	return true;
}

/* The next good frame (without FCS) into net_frame; 0 when none. */
static unsigned rx_get(void)
{
	for (;;) {
		struct tdesc *r = &rxr[rx_next];
		uint32_t s = r->des0, len = (s >> 16) & 0x3fff;
		bool ok;

		if (s & OWN)
			return 0;
		ok = (s & (RD_FS | RD_LS | RD_ES)) == (RD_FS | RD_LS) && len > 4 && len - 4 <= BUF;
		if (ok)
			memcpy(net_frame, rxbuf[rx_next], len - 4);
		r->des0 = OWN;
		mb();
		rx_next = (rx_next + 1) % NRX;
		csr_wr(2, 0); /* receive poll demand: a suspended receiver goes on */
		if (ok)
			return len - 4;
	}
}

static const struct net_dev_ops tulip_ops = {
	.send = tx_send,
	.recv = rx_get,
	.reclaim = tx_reclaim,
};

/* A setup frame (HRM 4.2.3) of ft (0, TD_FT0, TD_FT1, TD_FT0 | TD_FT1)
 * through the transmit ring. Perfect/inverse: n addresses then broadcast;
 * hash modes: the addresses' bits, and for hash mode the first address as
 * the perfect one. */
static bool setup_frame(uint32_t ft, const uint8_t (*a)[6], unsigned n, bool bcast)
{
	static const uint8_t ff[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	struct deadline d;
	unsigned at;

	if (!tx_room())
		return false;
	at = tx_next % NTX;
	memset(setup_buf, 0, sizeof(setup_buf));
	if (!(ft & TD_FT0)) {
		for (unsigned i = 0; i < 16; i++) {
			const uint8_t *m = i < n ? a[i] : bcast ? ff : a[0];

			for (unsigned k = 0; k < 6; k++)
				setup_buf[12 * i + 4 * (k / 2) + k % 2] = m[k];
		}
	} else {
		for (unsigned i = 0; i < n + bcast; i++) {
			unsigned bit = crc32_le(i < n ? a[i] : ff, 6) & 0x1ff;

			setup_buf[4 * (bit / 16) + (bit % 16) / 8] |= (uint8_t)(1u << (bit % 8));
		}
		for (unsigned k = 0; k < 6; k++)
			setup_buf[156 + 4 * (k / 2) + k % 2] = a[0][k];
	}
	tx_post(TD_SET | ft | TD_IC, phys(setup_buf), sizeof(setup_buf), true);
	deadline_start(&d, 1000000);
	while (txr[at].des0 & OWN)
		if (deadline_expired(&d))
			return false;
	tx_reclaim();
	return true;
}

/* Software reset, rings, our address and broadcast, both processes on. */
static bool nic_start(void)
{
	const uint8_t(*me)[6] = (const uint8_t(*)[6])net.mac;

	csr_wr(0, CSR0_SWR);
	udelay(10);
	csr_wr(0, 0x01a08000); /* Linux's CSR0 on x86 */
	rings_init();
	csr_wr(6, CSR6_MBO | CSR6_ST);
	if (!setup_frame(0, me, 1, true))
		return false;
	csr_wr(6, CSR6_MBO | CSR6_ST | CSR6_SR);
	return true;
}

/* ---- register level ---- */

static void check_registers(void)
{
	uint32_t c0, c5;

	csr_wr(0, CSR0_SWR);
	udelay(10);
	c0 = csr_rd(0);
	c5 = csr_rd(5);
	check(c0 == 0xfe000000, "CSR0 after software reset: %x", c0);
	check((c5 & 0x03ffffff) == 0,
	      "CSR5 after reset: nothing pending, both processes stopped (%x)", c5);
	csr_wr(3, 0x12345);
	check(csr_rd(3) == 0x12344, "CSR3 holds a longword-aligned list base (%x)", csr_rd(3));
	csr_wr(7, 0x1ebef);
	check((csr_rd(7) & 0x1ebef) == 0x1ebef, "CSR7 holds the interrupt enables (%x)", csr_rd(7));
	mmio_write32(mem + CSR(7), 0x41);
	check(csr_rd(7) == 0x41 && mmio_read32(mem + CSR(3)) == 0x12344,
	      "the memory BAR reaches the same CSRs (CSR7 %x)", csr_rd(7));
	csr_wr(7, 0);
}

/* INTA# follows TI while NIE and TI are enabled (PCI STATUS bit 3). */
static void check_interrupt(void)
{
	static const uint8_t nobody[6] = { 0x02, 0, 0, 0, 0, 1 };
	struct deadline d;
	unsigned slot = tx_next % NTX;
	bool seen = false;

	if (!tx_room())
		return;
	csr_wr(5, 0x1ffff);
	csr_wr(7, CSR7_TI | CSR7_NIE);
	memset(txbuf[slot], 0, 60);
	net_eth_head(txbuf[slot], nobody, BENCH_TYPE);
	tx_post(TD_FS | TD_LS | TD_IC, phys(txbuf[slot]), 60, true);
	deadline_start(&d, 1000000);
	while (!seen && !deadline_expired(&d))
		seen = pci_conf_read16(0, dev, 0, PCI_STATUS) & STATUS_INTX;
	check(seen && (csr_rd(5) & (CSR5_TI | CSR5_NIS)) == (CSR5_TI | CSR5_NIS),
	      "TI with IC set raises INTA# (CSR5 %x)", csr_rd(5));
	csr_wr(5, CSR5_TI | CSR5_TU);
	check(!(pci_conf_read16(0, dev, 0, PCI_STATUS) & STATUS_INTX),
	      "acknowledging CSR5 drops INTA#");
	csr_wr(7, 0);
	tx_reclaim();
}

/* ---- setup-frame filtering, seen through the host's ARP replies (they
 * are unicast to our address) ---- */

static bool peer_known(void)
{
	return net.peer_known;
}

static bool arp_reply_seen(void)
{
	net.peer_known = false;
	for (int i = 0; i < 3 && !net.peer_known; i++) {
		net_arp_request();
		net_rx_until(peer_known, 300000);
	}
	return net.peer_known;
}

static void check_filters(void)
{
	static const uint8_t other[2][6] = { { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 },
					     { 0x02, 0x66, 0x77, 0x88, 0x99, 0xaa } };
	const uint8_t(*me)[6] = (const uint8_t(*)[6])net.mac;
	uint32_t run = CSR6_MBO | CSR6_ST | CSR6_SR;

	setup_frame(0, other, 1, true);
	check(!arp_reply_seen(), "perfect filter without our address: the reply stays out");
	csr_wr(6, run | CSR6_PR);
	check(arp_reply_seen(), "promiscuous: the reply comes in");
	csr_wr(6, run);
	setup_frame(TD_FT0, me, 1, true);
	check(arp_reply_seen(), "hash filter with our address as the perfect one: reply in");
	setup_frame(TD_FT0 | TD_FT1, other, 2, true);
	check(!arp_reply_seen(), "hash-only filter without our bit: reply out");
	setup_frame(TD_FT0 | TD_FT1, me, 1, true);
	check(arp_reply_seen(), "hash-only filter with our bit: reply in");
	setup_frame(TD_FT1, me, 1, false);
	check(!arp_reply_seen(), "inverse filter listing our address: reply out");
	setup_frame(TD_FT1, other, 1, false);
	check(arp_reply_seen(), "inverse filter listing others: reply in");
	setup_frame(0, me, 1, true);
	check(arp_reply_seen(), "perfect filter with our address: reply in");
}

/* ---- hostile lists (kestrel) ---- */

static bool wait_csr5(uint32_t bits)
{
	struct deadline d;

	deadline_start(&d, 2000000);
	while (!(csr_rd(5) & bits))
		if (deadline_expired(&d))
			return false;
	return true;
}

static void hostile_recover(const char *what)
{
	check(nic_start() && arp_reply_seen(), "after %s and a software reset the NIC answers",
	      what);
}

static void check_hostile(void)
{
	uint32_t c5;

	/* A transmit buffer outside RAM: master abort. */
	tx_room();
	tx_post(TD_FS | TD_LS, 0xfff00000u, 64, true);
	check(wait_csr5(CSR5_FBE), "transmit buffer outside RAM: fatal bus error");
	c5 = csr_rd(5);
	check(((c5 >> 23) & 7) == 1 && CSR5_TS(c5) == 0 && CSR5_RS(c5) == 0,
	      "master abort, both processes stopped (CSR5 %x)", c5);
	hostile_recover("a fatal bus error");
	/* The list itself outside RAM. */
	csr_wr(6, CSR6_MBO);
	csr_wr(4, 0xfff00000u);
	csr_wr(6, CSR6_MBO | CSR6_ST);
	check(wait_csr5(CSR5_FBE), "transmit list outside RAM: fatal bus error");
	hostile_recover("a list outside RAM");
	/* A chained descriptor pointing at itself, data and no last segment,
	 * re-armed: the frame jabbers. */
	csr_wr(6, CSR6_MBO);
	scratch[0].des1 = TD_TCH | TD_FS | 1500;
	scratch[0].buf1 = phys(txbuf[0]);
	scratch[0].buf2 = phys(&scratch[0]);
	scratch[0].des0 = OWN;
	csr_wr(4, phys(&scratch[0]));
	csr_wr(6, CSR6_MBO | CSR6_ST);
	for (int i = 0; i < 4; i++) {
		struct deadline d;

		deadline_start(&d, 1000000);
		while ((scratch[0].des0 & OWN) && !deadline_expired(&d))
			cpu_relax();
		scratch[0].des1 = TD_TCH | (i == 3 ? TD_LS : 0) | 1500;
		scratch[0].des0 = OWN;
		csr_wr(1, 0);
	}
	check(wait_csr5(CSR5_TJT) && (csr_rd(5) & CSR5_TPS), "a looping frame jabbers: TJT, TPS");
	hostile_recover("jabber");
	/* 320 zero-length receive descriptors: more than a frame may take. */
	csr_wr(6, CSR6_MBO | CSR6_ST);
	for (unsigned i = 0; i < 320; i++) {
		scratch[i].des1 = 0;
		scratch[i].des0 = OWN;
	}
	csr_wr(3, phys(scratch));
	csr_wr(6, CSR6_MBO | CSR6_ST | CSR6_SR | CSR6_PR);
	arp_reply_seen();
	check(wait_csr5(CSR5_RPS) && CSR5_RS(csr_rd(5)) == 0,
	      "zero-length receive descriptors: receive process stopped");
	hostile_recover("a stopped receiver");
	/* Rewrite receive descriptors under the device while frames come. */
	for (unsigned round = 0; round < 200; round++) {
		uint32_t x = round * 2654435761u;

		for (unsigned i = 0; i < NRX; i++) {
			rxr[i].des1 = (x >> (i % 16)) & 0x03ffffff;
			rxr[i].buf1 = i & 1 ? phys(rxbuf[i]) : x ^ (i << 12);
			rxr[i].buf2 = i & 2 ? phys(&rxr[(i + 1) % NRX])
					    : phys(rxbuf[(i * 7) % NRX]);
			rxr[i].des0 = OWN | (x & 0xffff);
		}
		if (round % 20 == 0)
			net_arp_request();
		csr_wr(2, 0);
	}
	udelay(100000);
	c5 = csr_rd(5);
	gprintf("tulip: after the rewrites CSR5 %x\n", c5);
	hostile_recover("descriptors rewritten under the device");
}

/* ---- the link going down and up (the host's net-link) ---- */

/* BMSR's link status latches low (IEEE 802.3 22.2.4.2.13): the second read
 * is the link as it is now. */
static bool link_now(void)
{
	mdio_read(1, 1);
	return mdio_read(1, 1) & 0x0004;
}

static bool link_wait(bool up, uint64_t ms)
{
	struct deadline d;

	deadline_start(&d, ms * 1000);
	while (link_now() != up)
		if (deadline_expired(&d))
			return false;
	return true;
}

/* A broadcast frame out; its descriptor's TDES0 once the NIC hands it back
 * (OWN still set: it never did). */
static uint32_t tx_status_of_one(void)
{
	static const uint8_t all[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	unsigned at = tx_next % NTX;
	struct deadline d;

	if (!tx_room())
		return OWN;
	memset(txbuf[at], 0, 60);
	net_eth_head(txbuf[at], all, BENCH_TYPE);
	tx_post(TD_FS | TD_LS, phys(txbuf[at]), 60, true);
	deadline_start(&d, 1000000);
	while ((txr[at].des0 & OWN) && !deadline_expired(&d))
		;
	tx_reclaim();
	return txr[at].des0;
}

/* HRM 4.3.3: a frame sent without a link ends with loss of carrier. */
static void check_link_changes(uint64_t ms)
{
	uint32_t s;

	gprintf("tulip: watching the link\n");
	if (!check(link_wait(false, ms), "the PHY reports the link down (BMSR)"))
		return;
	check(!(csr_rd(12) & 0x40), "link-sense pin (CSR12 GP6) low while the link is down");
	s = tx_status_of_one();
	gprintf("tulip: a frame sent while down: TDES0 %x\n", s);
	check(!(s & OWN) && (s & (TD_ES | TD_LO)) == (TD_ES | TD_LO),
	      "a frame sent while the link is down ends with loss of carrier");
	gprintf("tulip: link down seen\n");
	if (!check(link_wait(true, ms), "the PHY reports the link up again"))
		return;
	check(csr_rd(12) & 0x40, "link-sense pin (CSR12 GP6) high again");
	net_check_arp();
}

/* ---- benchmark (as vnet.bin's) ---- */

static bool bench_tx(unsigned size, uint64_t ms)
{
	static const uint8_t nobody[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
	uint64_t done = 0, t0, end;

	for (unsigned i = 0; i < NTX; i++) {
		memset(txbuf[i], 0, size);
		net_eth_head(txbuf[i], nobody, BENCH_TYPE);
	}
	t0 = rdtsc();
	end = t0 + ms * tsc_hz / 1000;
	while (rdtsc() < end || tx_done_idx != tx_next) {
		unsigned before = tx_done_idx, posted = 0;

		while (tx_next - tx_done_idx < NTX && rdtsc() < end) {
			tx_post(TD_FS | TD_LS, phys(txbuf[tx_next % NTX]), size, false);
			posted++;
		}
		if (posted) {
			csr_wr(1, 0);
			kicks++;
		}
		tx_reclaim();
		done += tx_done_idx - before;
		if (rdtsc() > end + 10 * tsc_hz) {
			/* Where the NIC stopped, for the next time (seen once). */
			gprintf("bench: tx stalled: CSR5 %x posted %u done %u des0 %x\n", csr_rd(5),
				tx_next, tx_done_idx, txr[tx_done_idx % NTX].des0);
			return false;
		}
	}
	net_bench_report("tx", size, done, rdtsc() - t0, kicks);
	return true;
}

static void bench_rx(uint64_t count, uint64_t wait_ms)
{
	uint64_t frames = 0, bytes = 0, first = 0, last = 0, start = rdtsc();

	gprintf("bench: rx ready\n");
	while (frames < count) {
		bool any = false;

		while (!(rxr[rx_next].des0 & OWN)) {
			uint32_t s = rxr[rx_next].des0, len = (s >> 16) & 0x3fff;

			if ((s & (RD_FS | RD_LS)) == (RD_FS | RD_LS) && len >= ETH_HLEN + 4 &&
			    get_be16(rxbuf[rx_next] + 12) == BENCH_TYPE) {
				frames++;
				bytes += len - 4;
				last = rdtsc();
				if (!first)
					first = last;
			}
			rxr[rx_next].des0 = OWN;
			rx_next = (rx_next + 1) % NRX;
			any = true;
		}
		if (any) {
			mb();
			csr_wr(2, 0);
			kicks++;
		} else if (first ? rdtsc() - last > tsc_hz
				 : rdtsc() - start > wait_ms * tsc_hz / 1000) {
			break;
		}
	}
	net_bench_report("rx", frames ? (unsigned)(bytes / frames) : 0, frames > 1 ? frames - 1 : 0,
			 last - first, kicks);
}

static void bench_rx_run(uint64_t count, uint64_t wait_ms)
{
	csr_wr(6, CSR6_MBO | CSR6_ST | CSR6_SR | CSR6_PR);
	bench_rx(count, wait_ms);
}

static const struct net_bench tulip_bench = { bench_tx, bench_rx_run, 1514 };

/* ---- main ---- */

int main(void)
{
	unsigned probe = (unsigned)mb_cmdline_uint("probe", 0);

	net_init(&tulip_ops, "tulip");
	if (!check(find_nic(), "DEC 21140/21143 function on bus 0"))
		return check_result(GUEST_EXIT_TULIP);
	pci_conf_write16(0, dev, 0, PCI_COMMAND, 0);
	place_bars();
	pci_conf_write16(0, dev, 0, PCI_COMMAND, CMD_IO | CMD_MEM | CMD_MASTER | CMD_INTX_OFF);
	gprintf("tulip: 00:%02x.0 1011:%04x rev %02x io %x mem %x\n", dev, devid,
		pci_conf_read8(0, dev, 0, 8), io, mem);
	check_registers();
	check_srom();
	check_link();
	if (!check(nic_start(), "setup frame taken"))
		return check_result(GUEST_EXIT_TULIP);
	if (net_bench_wanted())
		return net_bench_run(&tulip_bench, GUEST_EXIT_TULIP);
	check_interrupt();
	net_print_ip("tulip: ip ", net.ip);
	net_print_ip(" peer ", net.peer);
	gprintf("\n");
	if (mb_cmdline_uint("hostile", 0)) {
		check_hostile();
		return check_result(GUEST_EXIT_TULIP);
	}
	if (mb_cmdline_uint("linkwatch_ms", 0)) {
		check_link_changes(mb_cmdline_uint("linkwatch_ms", 0));
		return check_result(GUEST_EXIT_TULIP);
	}
	net_check_arp();
	if (net.peer_known) {
		net_check_ping((unsigned)mb_cmdline_uint("pings", 3));
		net_check_udp(false);
		if (mb_cmdline_uint("filter", 1))
			check_filters();
	}
	if (probe)
		net_check_probe(probe, mb_cmdline_uint("expect", 0) != 0);
	if (mb_cmdline_uint("listen_ms", 0))
		net_listen(mb_cmdline_uint("listen_ms", 0));
	gprintf("tulip: rx frames=%u tx frames=%u kicks=%u missed=%u\n", net.frames, net.tx_frames,
		kicks, csr_rd(8) & 0xffff);
	return check_result(GUEST_EXIT_TULIP);
}
