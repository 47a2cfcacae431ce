/* vnet.bin: a tiny virtio-net driver in ring 3 (virtio v1.1 4.1 modern
 * virtio-pci, 2.6 split rings, 5.1 network device), polled: no interrupt is
 * ever enabled. Runs under kestrel (--net tap=...) and QEMU (-device
 * virtio-net-pci), transitional or modern-only. It speaks just enough ARP,
 * IPv4 and ICMP to talk to the host's side of the TAP.
 *
 * Command line (addresses dotted):
 *   ip=A peer=B     our address and the host's (default 10.0.0.2, 10.0.0.1)
 *   mrg=1 rxbuf=N   negotiate MRG_RXBUF and post N-byte receive buffers
 *                   (default 2048; with mrg=1, 512, so frames span buffers)
 *   csum=1          negotiate CSUM and send one datagram checksum-offloaded
 *   pings=N         echo requests to peer (default 3), plus one of 1400 bytes
 *   probe=VID expect=0|1  an ARP request the guest tags itself with VID, for
 *                   10.0.VID.1: answered (expect=1) or not (an access port)
 *   listen_ms=N     then answer ARP and echo requests for N ms, printing
 *                   "vnet: listening" first (the host pings us meanwhile)
 *   bench=tx|rx size=N ms=N count=N  the network benchmark instead (see
 *                   scripts/bench/net.sh): tx sends N-byte frames for ms to
 *                   a MAC nobody has; rx counts frames of ethertype 0x88b5
 *                   until count or 1 s of silence.
 * Lines: "PASS:/FAIL:" per check, "vnet: ..." information, "bench: ...". */
#include "virtio.h"

#define VNET_MODERN 0x1041
#define VNET_TRANSITIONAL 0x1000
/* 5.1.3 */
#define F_CSUM (1ull << 0)
#define F_MAC (1ull << 5)
#define F_MRG_RXBUF (1ull << 15)
#define F_STATUS (1ull << 16)

#define Q_RX 0
#define Q_TX 1
#define NQ 2
#define NRX 128
#define RXBUF_MAX 2048
#define NTX 128
#define TXBUF 2048
#define HDR 12
#define ETH_HLEN 14
#define BENCH_TYPE 0x88b5

static struct vdev vd;
static uint8_t rxbuf[NRX][RXBUF_MAX] __attribute__((aligned(64)));
static uint8_t txbuf[NTX][TXBUF] __attribute__((aligned(64)));
static uint8_t frame[65536 + 64];          /* the frame received last */
static uint8_t txf[2048];                  /* the frame being built */
static unsigned rx_size, tx_free[NTX], ntx_free;

/* What the receive path saw (the checks look here). */
static struct {
	uint8_t mac[6], peer_mac[6];
	uint32_t ip, peer;
	bool peer_known, probe_answered, unreachable;
	unsigned echo_replies, big_reply, echo_answered, arp_answered;
	unsigned frames, tx_frames, bad_nbuf, nbuf_not_one;
	uint16_t echo_id;
} net;

/* ---- small helpers ---- */

static uint16_t get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	put_be16(p, (uint16_t)(v >> 16));
	put_be16(p + 2, (uint16_t)v);
}

/* "key=a.b.c.d" on the command line, or dflt. */
static uint32_t cmdline_ip(const char *key, uint32_t dflt)
{
	const char *s = mb_cmdline();
	size_t kl = strnlen(key, 32);

	for (; *s; s++) {
		uint32_t ip = 0, part = 0;
		unsigned dots = 0;
		const char *p;

		if ((s != mb_cmdline() && s[-1] != ' ') || memcmp(s, key, kl) || s[kl] != '=')
			continue;
		for (p = s + kl + 1; (*p >= '0' && *p <= '9') || *p == '.'; p++) {
			if (*p == '.') {
				ip = ip << 8 | (part & 255);
				part = 0;
				dots++;
			} else {
				part = part * 10 + (uint32_t)(*p - '0');
			}
		}
		if (dots == 3)
			return ip << 8 | (part & 255);
	}
	return dflt;
}

static bool cmdline_is(const char *key, const char *val)
{
	const char *s = mb_cmdline();
	size_t kl = strnlen(key, 32), vl = strnlen(val, 32);

	for (; *s; s++)
		if ((s == mb_cmdline() || s[-1] == ' ') && !memcmp(s, key, kl) && s[kl] == '=' &&
		    !memcmp(s + kl + 1, val, vl) && (s[kl + 1 + vl] == ' ' || !s[kl + 1 + vl]))
			return true;
	return false;
}

static void print_ip(const char *what, uint32_t ip)
{
	gprintf("%s%u.%u.%u.%u", what, ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

/* One buffer as a chain of its own at descriptor head. */
static void vq_add(struct vring *r, uint16_t head, const void *buf, uint32_t len, uint16_t flags)
{
	vq_desc(r, head, buf, len, flags, 0);
	vq_publish(r, head);
}

/* ---- frames out ---- */

static void tx_reclaim(void)
{
	uint32_t id, len;

	while (vq_used(&vd.q[Q_TX], &id, &len))
		if (id < NTX)
			tx_free[ntx_free++] = id;
}

/* One frame (without vnet header) out; hdr: 12 bytes or NULL for zeros. */
static bool tx_send(const uint8_t *f, unsigned len, const uint8_t *hdr)
{
	struct vring *r = &vd.q[Q_TX];
	struct deadline d;
	uint16_t old = r->avail_idx;
	unsigned slot;

	deadline_start(&d, 2000000);
	while (!ntx_free) {
		tx_reclaim();
		if (!ntx_free && deadline_expired(&d))
			return false;
	}
	slot = tx_free[--ntx_free];
	memset(txbuf[slot], 0, HDR);
	if (hdr)
		memcpy(txbuf[slot], hdr, HDR);
	memcpy(txbuf[slot] + HDR, f, len);
	vq_add(r, (uint16_t)slot, txbuf[slot], HDR + len, 0);
	vq_kick(r, old);
	net.tx_frames++;
	return true;
}

static unsigned eth_head(uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, net.mac, 6);
	put_be16(f + 12, type);
	return ETH_HLEN;
}

static void arp_send(const uint8_t *dst_mac, uint16_t op, uint32_t tpa, const uint8_t *tha,
		     uint32_t spa, uint16_t vid)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint8_t f[64] = { 0 }, *a;
	unsigned n = eth_head(f, dst_mac ? dst_mac : bcast, vid ? 0x8100 : 0x0806);

	if (vid) {
		put_be16(f + n, vid);
		put_be16(f + n + 2, 0x0806);
		n += 4;
	}
	a = f + n;
	put_be16(a, 1);
	put_be16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put_be16(a + 6, op);
	memcpy(a + 8, net.mac, 6);
	put_be32(a + 14, spa);
	if (tha)
		memcpy(a + 18, tha, 6);
	put_be32(a + 24, tpa);
	tx_send(f, 60, NULL);
}

static uint16_t csum_fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static uint32_t csum_add(uint32_t s, const uint8_t *p, unsigned n)
{
	for (unsigned i = 0; i + 1 < n; i += 2)
		s += get_be16(p + i);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

/* An IPv4 header at ip for len bytes of payload after it. */
static void ip_head(uint8_t *ip, uint8_t proto, uint32_t dst, unsigned len)
{
	static uint16_t id = 1;

	memset(ip, 0, 20);
	ip[0] = 0x45;
	put_be16(ip + 2, (uint16_t)(20 + len));
	put_be16(ip + 4, id++);
	ip[8] = 64;
	ip[9] = proto;
	put_be32(ip + 12, net.ip);
	put_be32(ip + 16, dst);
	put_be16(ip + 10, csum_fold(csum_add(0, ip, 20)));
}

static void icmp_echo_send(const uint8_t *dst_mac, uint32_t dst, uint8_t type, uint16_t id,
			   uint16_t seq, const uint8_t *data, unsigned dlen)
{
	uint8_t *f = txf;
	unsigned n = eth_head(f, dst_mac, 0x0800);
	uint8_t *ic = f + n + 20;

	if (dlen > sizeof(txf) - n - 28)
		return;
	ic[0] = type;
	ic[1] = 0;
	put_be16(ic + 2, 0);
	put_be16(ic + 4, id);
	put_be16(ic + 6, seq);
	memcpy(ic + 8, data, dlen);
	put_be16(ic + 2, csum_fold(csum_add(0, ic, 8 + dlen)));
	ip_head(f + n, 1, dst, 8 + dlen);
	tx_send(f, n + 20 + 8 + dlen, NULL);
}

/* UDP to dst:port; offload: leave the checksum to the device (5.1.6.2
 * NEEDS_CSUM: csum_start at the UDP header, csum_offset 6, the pseudo-header
 * sum in the field). */
static void udp_send(uint32_t dst, uint16_t port, const char *text, bool offload)
{
	uint8_t f[128] = { 0 }, hdr[HDR] = { 0 }, pseudo[12];
	unsigned n = eth_head(f, net.peer_mac, 0x0800), len = (unsigned)strnlen(text, 64);
	uint8_t *u = f + n + 20;
	uint32_t s;

	put_be16(u, 40000);
	put_be16(u + 2, port);
	put_be16(u + 4, (uint16_t)(8 + len));
	memcpy(u + 8, text, len);
	ip_head(f + n, 17, dst, 8 + len);
	put_be32(pseudo, net.ip);
	put_be32(pseudo + 4, dst);
	pseudo[8] = 0;
	pseudo[9] = 17;
	put_be16(pseudo + 10, (uint16_t)(8 + len));
	s = csum_add(0, pseudo, 12);
	if (offload) {
		put_be16(u + 6, (uint16_t)~csum_fold(s));
		hdr[0] = 1;
		hdr[6] = (uint8_t)(n + 20);
		hdr[8] = 6;
	} else {
		put_be16(u + 6, csum_fold(csum_add(s, u, 8 + len)));
	}
	tx_send(f, n + 20 + 8 + len, offload ? hdr : NULL);
}

/* ---- frames in ---- */

static void rx_post(unsigned i)
{
	vq_add(&vd.q[Q_RX], (uint16_t)i, rxbuf[i], rx_size, D_WRITE);
}

static void rx_fill(void)
{
	struct vring *r = &vd.q[Q_RX];
	uint16_t old = r->avail_idx;

	for (unsigned i = 0; i < NRX && i < r->num; i++)
		rx_post(i);
	vq_kick(r, old);
}

/* The next frame (without header) into `frame`; 0 when none. Merged
 * buffers (num_buffers > 1) are joined; all go back to the ring. */
static unsigned rx_get(void)
{
	struct vring *r = &vd.q[Q_RX];
	uint16_t old = r->avail_idx;
	uint32_t id, len, got = 0;
	unsigned nbuf;

	if (!vq_used(r, &id, &len))
		return 0;
	if (id >= NRX || len < HDR || len > rx_size)
		return 0;
	nbuf = rxbuf[id][10] | rxbuf[id][11] << 8;
	/* 5.1.6.4.1: 1 without MRG_RXBUF (QEMU 7.2 leaves 0 there). */
	if (!(vd.features & F_MRG_RXBUF)) {
		net.nbuf_not_one += nbuf != 1;
		nbuf = 1;
	}
	memcpy(frame, rxbuf[id] + HDR, len - HDR);
	got = len - HDR;
	rx_post(id);
	for (unsigned i = 1; i < nbuf; i++) {
		if (!vq_used(r, &id, &len) || id >= NRX || len > rx_size ||
		    got + len > sizeof(frame)) {
			net.bad_nbuf++;
			break;
		}
		memcpy(frame + got, rxbuf[id], len);
		got += len;
		rx_post(id);
	}
	vq_kick(r, old);
	net.frames++;
	return got;
}

static void rx_arp(const uint8_t *a, uint16_t vid)
{
	uint16_t op = get_be16(a + 6);
	uint32_t spa = get_be32(a + 14), tpa = get_be32(a + 24);

	if (op == 1 && tpa == net.ip && !vid) {
		arp_send(a + 8, 2, spa, a + 8, net.ip, 0);
		net.arp_answered++;
	} else if (op == 2 && vid) {
		net.probe_answered = true;
	} else if (op == 2 && spa == net.peer && tpa == net.ip) {
		memcpy(net.peer_mac, a + 8, 6);
		net.peer_known = true;
	}
}

static void rx_icmp(const uint8_t *ip, unsigned len)
{
	unsigned ihl = (ip[0] & 15) * 4, tot = get_be16(ip + 2);
	const uint8_t *ic = ip + ihl;

	if (tot > len || tot < ihl + 8)
		return;
	if (ic[0] == 8) {                       /* echo request: answer it */
		icmp_echo_send(frame + 6, get_be32(ip + 12), 0, get_be16(ic + 4), get_be16(ic + 6),
			       ic + 8, tot - ihl - 8);
		net.echo_answered++;
	} else if (ic[0] == 0 && get_be16(ic + 4) == net.echo_id) {
		if (tot - ihl - 8 >= 1400)
			net.big_reply++;
		else
			net.echo_replies++;
	} else if (ic[0] == 3 && ic[1] == 3 && tot >= ihl + 8 + 28 && get_be16(ic + 8 + 20 + 2) == 9) {
		net.unreachable = true;
	}
}

static void rx_handle(unsigned len)
{
	uint16_t type = get_be16(frame + 12), vid = 0;
	const uint8_t *p = frame + ETH_HLEN;

	if (len < ETH_HLEN + 28)
		return;
	if (type == 0x8100) {
		vid = get_be16(p) & 0xfff;
		type = get_be16(p + 2);
		p += 4;
	}
	if (type == 0x0806)
		rx_arp(p, vid);
	else if (type == 0x0800 && !vid && p[9] == 1 && get_be32(p + 16) == net.ip)
		rx_icmp(p, len - ETH_HLEN);
}

/* Serve the receive ring until cond() holds or us pass. */
static bool rx_until(bool (*cond)(void), uint64_t us)
{
	struct deadline d;
	unsigned n;

	deadline_start(&d, us);
	for (;;) {
		while ((n = rx_get()))
			rx_handle(n);
		tx_reclaim();
		if (cond && cond())
			return true;
		if (deadline_expired(&d))
			return false;
		cpu_relax();
	}
}

/* ---- the checks ---- */

static bool peer_known(void) { return net.peer_known; }
static unsigned pings_wanted;
static bool pings_done(void) { return net.echo_replies >= pings_wanted; }
static bool big_done(void) { return net.big_reply > 0; }
static bool unreach_done(void) { return net.unreachable; }
static bool probe_done(void) { return net.probe_answered; }

static void check_arp(void)
{
	for (int i = 0; i < 20 && !net.peer_known; i++) {
		arp_send(NULL, 1, net.peer, NULL, net.ip, 0);
		rx_until(peer_known, 500000);
	}
	print_ip("vnet: peer ", net.peer);
	gprintf(" is %02x:%02x:%02x:%02x:%02x:%02x\n", net.peer_mac[0], net.peer_mac[1],
		net.peer_mac[2], net.peer_mac[3], net.peer_mac[4], net.peer_mac[5]);
	check(net.peer_known, "ARP request answered by the peer");
}

static void check_ping(unsigned n)
{
	static uint8_t data[1400];

	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13);
	net.echo_id = 0x4b45;
	pings_wanted = n;
	for (unsigned i = 0; i < n; i++) {
		icmp_echo_send(net.peer_mac, net.peer, 8, net.echo_id, (uint16_t)i, data, 56);
		rx_until(NULL, 20000);
	}
	rx_until(pings_done, 3000000);
	check(net.echo_replies == n, "echo replies from the peer: %u of %u", net.echo_replies, n);
	icmp_echo_send(net.peer_mac, net.peer, 8, net.echo_id, 99, data, sizeof(data));
	check(rx_until(big_done, 3000000), "a 1400-byte echo came back");
}

static void check_udp(bool offload)
{
	net.unreachable = false;
	udp_send(net.peer, 9, "KESTREL-VNET-UDP", offload);
	check(rx_until(unreach_done, 3000000),
	      "UDP to a closed port (%s checksum): port unreachable came back",
	      offload ? "offloaded" : "software");
}

static void check_probe(unsigned vid, bool expect)
{
	net.probe_answered = false;
	for (int i = 0; i < 3 && !net.probe_answered; i++) {
		arp_send(NULL, 1, 10u << 24 | vid << 8 | 1, NULL, 10u << 24 | vid << 8 | 2,
			 (uint16_t)vid);
		rx_until(probe_done, 300000);
	}
	check(net.probe_answered == expect, "an ARP request the guest tagged with VLAN %u was %s "
	      "(expected %s)", vid, net.probe_answered ? "answered" : "not answered",
	      expect ? "answered" : "not answered");
}

static void listen(uint64_t ms)
{
	gprintf("vnet: listening for %lu ms\n", ms);
	rx_until(NULL, ms * 1000);
	gprintf("vnet: answered %u echo requests, %u ARP requests\n", net.echo_answered,
		net.arp_answered);
}

/* ---- benchmark ---- */

static uint64_t tsc_hz;

static void tsc_calibrate(void)
{
	uint64_t t0 = rdtsc();

	udelay(200000);
	tsc_hz = (rdtsc() - t0) * 5;
}

static void bench_report(const char *dir, unsigned size, uint64_t frames, uint64_t cycles)
{
	uint64_t us = cycles * 1000000 / (tsc_hz ? tsc_hz : 1);
	uint64_t fps = us ? frames * 1000000 / us : 0;
	uint64_t mbps = us ? frames * size * 8 / us : 0;

	gprintf("bench: %s size=%u frames=%lu us=%lu fps=%lu mbps=%lu kicks=%u\n", dir, size, frames,
		us, fps, mbps, vd.kicks);
}

/* Keep the transmit ring full of size-byte frames for ms. */
static bool bench_tx(unsigned size, uint64_t ms)
{
	static const uint8_t nobody[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
	struct vring *r = &vd.q[Q_TX];
	unsigned inflight = 0, depth = r->num < NTX ? r->num : NTX;
	uint64_t sent = 0, done = 0, t0, end;
	uint32_t id, len;

	for (unsigned i = 0; i < depth; i++) {
		memset(txbuf[i], 0, HDR + size);
		eth_head(txbuf[i] + HDR, nobody, BENCH_TYPE);
	}
	t0 = rdtsc();
	end = t0 + ms * tsc_hz / 1000;
	while (rdtsc() < end || inflight) {
		uint16_t old = r->avail_idx;

		while (inflight < depth && rdtsc() < end) {
			vq_add(r, (uint16_t)(sent % depth), txbuf[sent % depth], HDR + size, 0);
			sent++;
			inflight++;
		}
		vq_kick(r, old);
		while (vq_used(r, &id, &len)) {
			inflight--;
			done++;
		}
		if (rdtsc() > end + 10 * tsc_hz)
			return false;
	}
	bench_report("tx", size, done, rdtsc() - t0);
	return true;
}

/* Count frames of BENCH_TYPE until count or a second without any. */
static void bench_rx(uint64_t count, uint64_t wait_ms)
{
	uint64_t frames = 0, bytes = 0, first = 0, last = 0, start = rdtsc();
	uint32_t id, len;
	struct vring *r = &vd.q[Q_RX];

	gprintf("bench: rx ready\n");
	while (frames < count) {
		uint16_t old = r->avail_idx;
		bool any = false;

		while (vq_used(r, &id, &len)) {
			if (id < NRX && len >= HDR + ETH_HLEN &&
			    get_be16(rxbuf[id] + HDR + 12) == BENCH_TYPE) {
				frames++;
				bytes += len - HDR;
				last = rdtsc();
				if (!first)
					first = last;
			}
			rx_post(id);
			any = true;
		}
		if (any)
			vq_kick(r, old);
		else if (first ? rdtsc() - last > tsc_hz : rdtsc() - start > wait_ms * tsc_hz / 1000)
			break;
	}
	bench_report("rx", frames ? (unsigned)(bytes / frames) : 0, frames > 1 ? frames - 1 : 0,
		     last - first);
}

static int bench(void)
{
	unsigned size = (unsigned)mb_cmdline_uint("size", 60);
	uint64_t ms = mb_cmdline_uint("ms", 2000);

	tsc_calibrate();
	gprintf("bench: tsc_hz=%lu\n", tsc_hz);
	if (size < ETH_HLEN || size > TXBUF - HDR)
		size = 60;
	if (cmdline_is("bench", "rx")) {
		rx_fill();
		bench_rx(mb_cmdline_uint("count", 1000000), mb_cmdline_uint("wait_ms", 60000));
	} else {
		check(bench_tx(size, ms), "transmit benchmark finished");
	}
	return check_result(GUEST_EXIT_VNET);
}

/* ---- main ---- */

static bool setup(void)
{
	uint64_t want = F_VERSION_1 | F_MAC | F_STATUS | F_EVENT_IDX;
	bool ok;

	if (mb_cmdline_uint("mrg", 0))
		want |= F_MRG_RXBUF;
	if (mb_cmdline_uint("csum", 0))
		want |= F_CSUM;
	if (!check(vpci_find(&vd, VNET_MODERN, VNET_TRANSITIONAL), "virtio-net function on bus 0"))
		return false;
	gprintf("vnet: 00:%02x.0 1af4:%04x\n", vd.dev, vd.devid);
	pci_conf_write16(0, vd.dev, 0, PCI_COMMAND, 0);
	if (!check(vpci_caps(&vd, VCAP_COMMON | VCAP_NOTIFY | VCAP_DEVICE), "common/notify/device capabilities present"))
		return false;
	pci_conf_write16(0, vd.dev, 0, PCI_COMMAND, CMD_MEM | CMD_MASTER | CMD_INTX_OFF);
	ok = vdev_start(&vd, want, NQ);
	if (!check(ok && (vd.features & F_VERSION_1) && (vd.features & F_MAC),
		   "features negotiated: %lx", vd.features))
		return false;
	for (int i = 0; i < 6; i++)
		net.mac[i] = mmio_read8(vd.devcfg + i);
	gprintf("vnet: mac %02x:%02x:%02x:%02x:%02x:%02x\n", net.mac[0], net.mac[1], net.mac[2],
		net.mac[3], net.mac[4], net.mac[5]);
	if (vd.features & F_STATUS)
		check(mmio_read16(vd.devcfg + 6) & 1, "link up (status %x)", mmio_read16(vd.devcfg + 6));
	for (unsigned i = 0; i < NTX; i++)
		tx_free[ntx_free++] = NTX - 1 - i;
	rx_size = (unsigned)mb_cmdline_uint("rxbuf", (vd.features & F_MRG_RXBUF) ? 512 : 2048);
	if (rx_size < 64 || rx_size > RXBUF_MAX)
		rx_size = RXBUF_MAX;
	return true;
}

int main(void)
{
	unsigned probe = (unsigned)mb_cmdline_uint("probe", 0);

	pmtmr_init();
	net.ip = cmdline_ip("ip", 0x0a000002);
	net.peer = cmdline_ip("peer", 0x0a000001);
	if (!setup())
		return check_result(GUEST_EXIT_VNET);
	if (mb_cmdline_uint("bench", 0) || cmdline_is("bench", "tx") || cmdline_is("bench", "rx"))
		return bench();
	rx_fill();
	print_ip("vnet: ip ", net.ip);
	print_ip(" peer ", net.peer);
	gprintf(" rxbuf %u%s\n", rx_size, (vd.features & F_MRG_RXBUF) ? " mergeable" : "");
	check_arp();
	if (net.peer_known) {
		check_ping((unsigned)mb_cmdline_uint("pings", 3));
		check_udp(false);
		if (vd.features & F_CSUM)
			check_udp(true);
	}
	if (probe)
		check_probe(probe, mb_cmdline_uint("expect", 0) != 0);
	if (mb_cmdline_uint("listen_ms", 0))
		listen(mb_cmdline_uint("listen_ms", 0));
	check(net.bad_nbuf == 0, "merged buffers arrive whole (%u bad)", net.bad_nbuf);
	gprintf("vnet: rx frames=%u tx frames=%u kicks=%u num_buffers!=1: %u\n", net.frames,
		net.tx_frames, vd.kicks, net.nbuf_not_one);
	return check_result(GUEST_EXIT_VNET);
}
