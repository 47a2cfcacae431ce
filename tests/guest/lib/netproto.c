/* ARP, IPv4, ICMP and UDP for the NIC payloads (netproto.h): requests to
 * the host's side of the TAP and answers to what it sends us, through the
 * device half in net.ops. */
#include "netproto.h"

struct net_state net;
uint8_t net_frame[65536 + 64];
uint64_t tsc_hz;

static uint8_t txf[2048]; /* the frame being built */

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	put_be16(p, (uint16_t)(v >> 16));
	put_be16(p + 2, (uint16_t)v);
}

void net_init(const struct net_dev_ops *ops, const char *name)
{
	pmtmr_init();
	net.ops = ops;
	net.name = name;
	net.ip = net_cmdline_ip("ip", 0x0a000002);
	net.peer = net_cmdline_ip("peer", 0x0a000001);
}

uint32_t net_cmdline_ip(const char *key, uint32_t dflt)
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

bool net_cmdline_is(const char *key, const char *val)
{
	const char *s = mb_cmdline();
	size_t kl = strnlen(key, 32), vl = strnlen(val, 32);

	for (; *s; s++)
		if ((s == mb_cmdline() || s[-1] == ' ') && !memcmp(s, key, kl) && s[kl] == '=' &&
		    !memcmp(s + kl + 1, val, vl) && (s[kl + 1 + vl] == ' ' || !s[kl + 1 + vl]))
			return true;
	return false;
}

void net_print_ip(const char *what, uint32_t ip)
{
	gprintf("%s%u.%u.%u.%u", what, ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

void net_print_mac(const char *what, const uint8_t *m)
{
	gprintf("%s%02x:%02x:%02x:%02x:%02x:%02x", what, m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* ---- frames out ---- */

unsigned net_eth_head(uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, net.mac, 6);
	put_be16(f + 12, type);
	return ETH_HLEN;
}

static void net_send(const uint8_t *f, unsigned len, const uint8_t *hdr)
{
	if (net.ops->send(f, len, hdr))
		net.tx_frames++;
}

static void arp_send(const uint8_t *dst_mac, uint16_t op, uint32_t tpa, const uint8_t *tha,
		     uint32_t spa, uint16_t vid)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint8_t f[64] = { 0 }, *a;
	unsigned n = net_eth_head(f, dst_mac ? dst_mac : bcast, vid ? 0x8100 : 0x0806);

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
	net_send(f, 60, NULL);
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
	unsigned n = net_eth_head(f, dst_mac, 0x0800);
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
	net_send(f, n + 20 + 8 + dlen, NULL);
}

/* UDP to dst:port; offload: leave the checksum to the device (virtio
 * 5.1.6.2 NEEDS_CSUM: csum_start at the UDP header, csum_offset 6, the
 * pseudo-header sum in the field). */
static void udp_send(uint32_t dst, uint16_t port, const char *text, bool offload)
{
	uint8_t f[128] = { 0 }, hdr[NET_HDR_LEN] = { 0 }, pseudo[12];
	unsigned n = net_eth_head(f, net.peer_mac, 0x0800), len = (unsigned)strnlen(text, 64);
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
	net_send(f, n + 20 + 8 + len, offload ? hdr : NULL);
}

void net_arp_request(void)
{
	arp_send(NULL, 1, net.peer, NULL, net.ip, 0);
}

/* ---- frames in ---- */

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
	if (ic[0] == 8) { /* echo request: answer it */
		icmp_echo_send(net_frame + 6, get_be32(ip + 12), 0, get_be16(ic + 4),
			       get_be16(ic + 6), ic + 8, tot - ihl - 8);
		net.echo_answered++;
	} else if (ic[0] == 0 && get_be16(ic + 4) == net.echo_id) {
		if (tot - ihl - 8 >= 1400)
			net.big_reply++;
		else
			net.echo_replies++;
	} else if (ic[0] == 3 && ic[1] == 3 && tot >= ihl + 8 + 28 &&
		   get_be16(ic + 8 + 20 + 2) == 9) {
		net.unreachable = true;
	}
}

static void rx_handle(unsigned len)
{
	uint16_t type = get_be16(net_frame + 12), vid = 0;
	const uint8_t *p = net_frame + ETH_HLEN;

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

bool net_rx_until(bool (*cond)(void), uint64_t us)
{
	struct deadline d;
	unsigned n;

	deadline_start(&d, us);
	for (;;) {
		while ((n = net.ops->recv())) {
			net.frames++;
			rx_handle(n);
		}
		if (net.ops->reclaim)
			net.ops->reclaim();
		if (cond && cond())
			return true;
		if (deadline_expired(&d))
			return false;
		cpu_relax();
	}
}

/* ---- the checks ---- */

static bool peer_known(void)
{
	return net.peer_known;
}
static unsigned pings_wanted;
static bool pings_done(void)
{
	return net.echo_replies >= pings_wanted;
}
static bool big_done(void)
{
	return net.big_reply > 0;
}
static bool unreach_done(void)
{
	return net.unreachable;
}
static bool probe_done(void)
{
	return net.probe_answered;
}

void net_check_arp(void)
{
	for (int i = 0; i < 20 && !net.peer_known; i++) {
		net_arp_request();
		net_rx_until(peer_known, 500000);
	}
	gprintf("%s: ", net.name);
	net_print_ip("peer ", net.peer);
	net_print_mac(" is ", net.peer_mac);
	gprintf("\n");
	check(net.peer_known, "ARP request answered by the peer");
}

void net_check_ping(unsigned n)
{
	static uint8_t data[1400];

	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13);
	net.echo_id = 0x4b45;
	pings_wanted = n;
	for (unsigned i = 0; i < n; i++) {
		icmp_echo_send(net.peer_mac, net.peer, 8, net.echo_id, (uint16_t)i, data, 56);
		net_rx_until(NULL, 20000);
	}
	net_rx_until(pings_done, 3000000);
	check(net.echo_replies == n, "echo replies from the peer: %u of %u", net.echo_replies, n);
	icmp_echo_send(net.peer_mac, net.peer, 8, net.echo_id, 99, data, sizeof(data));
	check(net_rx_until(big_done, 3000000), "a 1400-byte echo came back");
}

void net_check_udp(bool offload)
{
	net.unreachable = false;
	udp_send(net.peer, 9, "KESTREL-VNET-UDP", offload);
	check(net_rx_until(unreach_done, 3000000),
	      "UDP to a closed port (%s checksum): port unreachable came back",
	      offload ? "offloaded" : "software");
}

void net_check_probe(unsigned vid, bool expect)
{
	net.probe_answered = false;
	for (int i = 0; i < 3 && !net.probe_answered; i++) {
		arp_send(NULL, 1, 10u << 24 | vid << 8 | 1, NULL, 10u << 24 | vid << 8 | 2,
			 (uint16_t)vid);
		net_rx_until(probe_done, 300000);
	}
	check(net.probe_answered == expect,
	      "an ARP request the guest tagged with VLAN %u was %s "
	      "(expected %s)",
	      vid, net.probe_answered ? "answered" : "not answered",
	      expect ? "answered" : "not answered");
}

void net_listen(uint64_t ms)
{
	gprintf("%s: listening for %lu ms\n", net.name, ms);
	net_rx_until(NULL, ms * 1000);
	gprintf("%s: answered %u echo requests, %u ARP requests\n", net.name, net.echo_answered,
		net.arp_answered);
}

/* ---- benchmark ---- */

static void net_tsc_calibrate(void)
{
	uint64_t t0 = rdtsc();

	udelay(200000);
	tsc_hz = (rdtsc() - t0) * 5;
}

void net_bench_report(const char *dir, unsigned size, uint64_t frames, uint64_t cycles,
		      unsigned kicks)
{
	uint64_t us = cycles * 1000000 / (tsc_hz ? tsc_hz : 1);
	uint64_t fps = us ? frames * 1000000 / us : 0;
	uint64_t mbps = us ? frames * size * 8 / us : 0;

	gprintf("bench: %s size=%u frames=%lu us=%lu fps=%lu mbps=%lu kicks=%u\n", dir, size,
		frames, us, fps, mbps, kicks);
}

bool net_bench_wanted(void)
{
	return mb_cmdline_uint("bench", 0) || net_cmdline_is("bench", "tx") ||
	       net_cmdline_is("bench", "rx");
}

int net_bench_run(const struct net_bench *b, int fail_code)
{
	unsigned size = (unsigned)mb_cmdline_uint("size", 60);

	net_tsc_calibrate();
	gprintf("bench: tsc_hz=%lu\n", tsc_hz);
	if (size < ETH_HLEN || size > b->max_size)
		size = 60;
	if (net_cmdline_is("bench", "rx"))
		b->rx(mb_cmdline_uint("count", 1000000), mb_cmdline_uint("wait_ms", 60000));
	else
		check(b->tx(size, mb_cmdline_uint("ms", 2000)), "transmit benchmark finished");
	return check_result(fail_code);
}
