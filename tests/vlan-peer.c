/* vlan-peer: the host side of an 802.1Q link, in user space, for test hosts
 * whose kernel has no 8021q support (no IF.VID interfaces). It speaks on a
 * TAP through an AF_PACKET socket, so what it sends and sees is exactly what
 * the VMM's NIC puts on and takes off the wire.
 *
 *   vlan-peer serve IF VID...          answer ARP and ICMP echo for 10.0.VID.1
 *                                      on each VID; on SIGTERM print
 *                                      "vid N frames M" for each VID served
 *   vlan-peer ping IF VID SRC DST N    ARP for DST, then N echo requests;
 *                                      prints "N packets received" (as ping)
 *   vlan-peer arp IF VID SRC DST       exit 0 if DST answers an ARP request
 *
 * VID 0 means untagged. The kernel moves a received tag into the packet's
 * auxiliary data (PACKET_AUXDATA); a tag still in the frame is read too. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_VIDS   8
#define ETH_P_VLAN 0x8100

struct link {
	int fd;
	int ifindex;
	uint8_t mac[6];
};

struct frame {
	int vid;	  /* 0: untagged */
	int csum_partial; /* the sender offloaded its checksum (not filled in) */
	const uint8_t *dst, *src;
	uint16_t type;
	const uint8_t *body;
	size_t len;
};

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int link_open(struct link *l, const char *ifname)
{
	struct sockaddr_ll sa = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	struct ifreq ifr = { 0 };
	int one = 1;

	l->fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	if (l->fd < 0)
		return -1;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(l->fd, SIOCGIFINDEX, &ifr) < 0)
		return -1;
	l->ifindex = ifr.ifr_ifindex;
	if (ioctl(l->fd, SIOCGIFHWADDR, &ifr) < 0)
		return -1;
	memcpy(l->mac, ifr.ifr_hwaddr.sa_data, 6);
	sa.sll_ifindex = l->ifindex;
	if (bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	return setsockopt(l->fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one));
}

/* Receive one frame the interface got from the NIC (not one we sent);
 * 0 on timeout. */
static int link_recv(struct link *l, uint8_t *buf, size_t size, struct frame *f, int timeout_ms)
{
	union {
		struct cmsghdr c;
		char b[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
	} ctl;
	struct sockaddr_ll from;
	struct iovec iov = { buf, size };
	struct msghdr mh = { .msg_name = &from,
			     .msg_namelen = sizeof(from),
			     .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = &ctl,
			     .msg_controllen = sizeof(ctl) };
	struct pollfd p = { l->fd, POLLIN, 0 };
	ssize_t n;

	if (poll(&p, 1, timeout_ms) <= 0)
		return 0;
	n = recvmsg(l->fd, &mh, 0);
	if (n < 14 || from.sll_pkttype == PACKET_OUTGOING)
		return n < 0 && errno != EINTR ? -1 : 2;
	memset(f, 0, sizeof(*f));
	f->dst = buf;
	f->src = buf + 6;
	f->type = (uint16_t)(buf[12] << 8 | buf[13]);
	f->body = buf + 14;
	f->len = (size_t)n - 14;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		struct tpacket_auxdata *a = (void *)CMSG_DATA(c);

		if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA)
			continue;
		if (a->tp_status & TP_STATUS_VLAN_VALID)
			f->vid = a->tp_vlan_tci & 0xfff;
		f->csum_partial = !!(a->tp_status & TP_STATUS_CSUMNOTREADY);
	}
	if (!f->vid && f->type == ETH_P_VLAN && f->len >= 4) {
		f->vid = (f->body[0] << 8 | f->body[1]) & 0xfff;
		f->type = (uint16_t)(f->body[2] << 8 | f->body[3]);
		f->body += 4;
		f->len -= 4;
	}
	return 1;
}

static int link_send(struct link *l, int vid, const uint8_t *dst, uint16_t type, const void *body,
		     size_t len)
{
	uint8_t buf[1600];
	size_t h = 12;

	if (len > sizeof(buf) - 18)
		return -1;
	memcpy(buf, dst, 6);
	memcpy(buf + 6, l->mac, 6);
	if (vid) {
		buf[h++] = ETH_P_VLAN >> 8;
		buf[h++] = ETH_P_VLAN & 0xff;
		buf[h++] = (uint8_t)(vid >> 8);
		buf[h++] = (uint8_t)vid;
	}
	buf[h++] = (uint8_t)(type >> 8);
	buf[h++] = (uint8_t)type;
	memcpy(buf + h, body, len);
	h += len;
	while (h < 60)
		buf[h++] = 0;
	return send(l->fd, buf, h, 0) == (ssize_t)h ? 0 : -1;
}

/* ---- ARP (RFC 826) and ICMP echo (RFC 792) ------------------------------ */
struct arp {
	uint16_t htype, ptype;
	uint8_t hlen, plen;
	uint16_t op;
	uint8_t sha[6], spa[4], tha[6], tpa[4];
} __attribute__((packed));

static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static void arp_send(struct link *l, int vid, int op, const uint8_t *tha, const uint8_t *spa,
		     const uint8_t *tpa)
{
	struct arp a = { htons(1), htons(ETH_P_IP), 6,	   4,	 htons((uint16_t)op),
			 { 0 },	   { 0 },	    { 0 }, { 0 } };

	memcpy(a.sha, l->mac, 6);
	memcpy(a.spa, spa, 4);
	memcpy(a.tha, tha, 6);
	memcpy(a.tpa, tpa, 4);
	link_send(l, vid, op == 1 ? bcast : tha, ETH_P_ARP, &a, sizeof(a));
}

static uint16_t csum(const uint8_t *p, size_t n)
{
	uint32_t s = 0;

	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* An IPv4 packet with ICMP TYPE; the ICMP header's id/seq/data from icmp. */
static void icmp_send(struct link *l, int vid, const uint8_t *dmac, const uint8_t *src,
		      const uint8_t *dst, int type, const uint8_t *icmp, size_t icmp_len)
{
	uint8_t p[1500];
	uint16_t c;

	if (icmp_len < 8 || icmp_len > sizeof(p) - 20)
		return;
	memset(p, 0, 20);
	p[0] = 0x45;
	p[2] = (uint8_t)((20 + icmp_len) >> 8);
	p[3] = (uint8_t)(20 + icmp_len);
	p[8] = 64;
	p[9] = 1;
	memcpy(p + 12, src, 4);
	memcpy(p + 16, dst, 4);
	c = csum(p, 20);
	p[10] = (uint8_t)(c >> 8);
	p[11] = (uint8_t)c;
	memcpy(p + 20, icmp, icmp_len);
	p[20] = (uint8_t)type;
	p[22] = p[23] = 0;
	c = csum(p + 20, icmp_len);
	p[22] = (uint8_t)(c >> 8);
	p[23] = (uint8_t)c;
	link_send(l, vid, dmac, ETH_P_IP, p, 20 + icmp_len);
}

/* The payload of an IPv4 packet of protocol PROTO in f (at least 8 bytes);
 * NULL if f is not one. */
static const uint8_t *ip_payload(const struct frame *f, int proto, size_t *len)
{
	size_t ihl, tot;

	if (f->type != ETH_P_IP || f->len < 20 || (f->body[0] >> 4) != 4 || f->body[9] != proto)
		return NULL;
	ihl = (size_t)(f->body[0] & 15) * 4;
	tot = (size_t)(f->body[2] << 8 | f->body[3]);
	if (ihl < 20 || tot > f->len || tot < ihl + 8)
		return NULL;
	*len = tot - ihl;
	return f->body + ihl;
}

static const uint8_t *icmp_of(const struct frame *f, size_t *icmp_len)
{
	return ip_payload(f, 1, icmp_len);
}

/* RFC 768: a UDP checksum over the pseudo-header is right when it sums to
 * 0xffff; 0 means none was sent. A frame whose sender offloaded the
 * checksum carries only the pseudo-header sum: the stack accepts it. */
static int udp_csum_ok(const struct frame *f, const uint8_t *udp, size_t len)
{
	uint8_t ph[12 + 1500];

	if (f->csum_partial || (udp[6] == 0 && udp[7] == 0))
		return 1;
	if (len > sizeof(ph) - 12)
		return 0;
	memcpy(ph, f->body + 12, 8);
	ph[8] = 0;
	ph[9] = 17;
	ph[10] = (uint8_t)(len >> 8);
	ph[11] = (uint8_t)len;
	memcpy(ph + 12, udp, len);
	return csum(ph, 12 + len) == 0;
}

static int parse_ip(const char *s, uint8_t ip[4])
{
	return inet_pton(AF_INET, s, ip) == 1 ? 0 : -1;
}

/* ---- serve ------------------------------------------------------------- */
static int serve(struct link *l, int nvid, const int *vids)
{
	unsigned long frames[MAX_VIDS] = { 0 };
	uint8_t buf[2048];
	struct frame f;

	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	printf("serving\n");
	fflush(stdout);
	while (!stop) {
		int slot = -1, r = link_recv(l, buf, sizeof(buf), &f, 200);
		uint8_t me[4] = { 10, 0, 0, 1 };
		const uint8_t *icmp;
		size_t ilen;

		if (r < 0)
			break;
		if (r != 1)
			continue;
		for (int i = 0; i < nvid; i++)
			if (vids[i] == f.vid)
				slot = i;
		if (slot < 0)
			continue;
		frames[slot]++;
		me[2] = (uint8_t)f.vid;
		if (f.type == ETH_P_ARP && f.len >= sizeof(struct arp)) {
			const struct arp *a = (const void *)f.body;

			if (ntohs(a->op) == 1 && !memcmp(a->tpa, me, 4))
				arp_send(l, f.vid, 2, a->sha, me, a->spa);
		} else if ((icmp = icmp_of(&f, &ilen)) && icmp[0] == 8 &&
			   !memcmp(f.body + 16, me, 4)) {
			icmp_send(l, f.vid, f.src, me, f.body + 12, 0, icmp, ilen);
		} else if ((icmp = ip_payload(&f, 17, &ilen)) && !memcmp(f.body + 16, me, 4) &&
			   udp_csum_ok(&f, icmp, ilen)) {
			/* No UDP port is open here: port unreachable (RFC 792)
			 * quoting the IP header and 8 bytes of the datagram. */
			uint8_t un[8 + 60 + 8] = { 3, 3 };
			size_t ihl = (size_t)(f.body[0] & 15) * 4;

			memcpy(un + 8, f.body, ihl + 8);
			icmp_send(l, f.vid, f.src, me, f.body + 12, 3, un, 8 + ihl + 8);
		}
	}
	for (int i = 0; i < nvid; i++)
		printf("vid %d frames %lu\n", vids[i], frames[i]);
	return 0;
}

/* ---- ping / arp -------------------------------------------------------- */
static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ARP for dst; 0 and its MAC in mac if it answered within ms. */
static int resolve(struct link *l, int vid, const uint8_t *src, const uint8_t *dst, uint8_t *mac,
		   int tries)
{
	static const uint8_t zero[6];
	uint8_t buf[2048];
	struct frame f;

	for (int t = 0; t < tries; t++) {
		long end = now_ms() + 1000;

		arp_send(l, vid, 1, zero, src, dst);
		while (now_ms() < end) {
			const struct arp *a;

			if (link_recv(l, buf, sizeof(buf), &f, (int)(end - now_ms())) != 1)
				continue;
			a = (const void *)f.body;
			if (f.vid != vid || f.type != ETH_P_ARP || f.len < sizeof(*a))
				continue;
			if (ntohs(a->op) == 2 && !memcmp(a->spa, dst, 4)) {
				memcpy(mac, a->sha, 6);
				return 0;
			}
		}
	}
	return -1;
}

static int ping(struct link *l, int vid, const uint8_t *src, const uint8_t *dst, int count)
{
	uint8_t mac[6], buf[2048], icmp[64];
	int got = 0;
	struct frame f;

	if (resolve(l, vid, src, dst, mac, 3) == 0) {
		for (int seq = 1; seq <= count; seq++) {
			long end = now_ms() + 2000;

			memset(icmp, 0, sizeof(icmp));
			icmp[4] = 0x4b; /* id */
			icmp[7] = (uint8_t)seq;
			for (size_t i = 8; i < sizeof(icmp); i++)
				icmp[i] = (uint8_t)i;
			icmp_send(l, vid, mac, src, dst, 8, icmp, sizeof(icmp));
			while (now_ms() < end) {
				const uint8_t *r;
				size_t ilen;

				if (link_recv(l, buf, sizeof(buf), &f, (int)(end - now_ms())) != 1)
					continue;
				r = icmp_of(&f, &ilen);
				if (f.vid == vid && r && r[0] == 0 && r[4] == 0x4b && r[7] == seq &&
				    ilen == sizeof(icmp) &&
				    !memcmp(r + 8, icmp + 8, sizeof(icmp) - 8)) {
					got++;
					break;
				}
			}
		}
	} else {
		printf("no ARP reply from the target\n");
	}
	printf("%d packets transmitted, %d packets received\n", count, got);
	return got == count ? 0 : 1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: vlan-peer serve IF VID... | ping IF VID SRC DST N | arp IF VID SRC DST\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct link l;
	uint8_t src[4], dst[4], mac[6];
	int vids[MAX_VIDS];

	if (argc < 4)
		return usage();
	if (link_open(&l, argv[2]) < 0) {
		fprintf(stderr, "vlan-peer: %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(argv[1], "serve")) {
		if (argc - 3 > MAX_VIDS)
			return usage();
		for (int i = 3; i < argc; i++)
			vids[i - 3] = atoi(argv[i]) & 0xfff;
		return serve(&l, argc - 3, vids);
	}
	if (argc < 6 || parse_ip(argv[4], src) || parse_ip(argv[5], dst))
		return usage();
	if (!strcmp(argv[1], "ping") && argc == 7)
		return ping(&l, atoi(argv[3]) & 0xfff, src, dst, atoi(argv[6]));
	if (!strcmp(argv[1], "arp") && argc == 6)
		return resolve(&l, atoi(argv[3]) & 0xfff, src, dst, mac, 2) ? 1 : 0;
	return usage();
}
