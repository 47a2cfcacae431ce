/* Just enough ARP, IPv4, ICMP and UDP for the NIC payloads (vnet.c,
 * tulip.c) to talk to the host's side of a TAP: the protocol half of a
 * polled driver, over a device half each payload supplies (struct
 * net_dev_ops). Also the benchmark's clock and report line. */
#ifndef GUEST_NETPROTO_H
#define GUEST_NETPROTO_H

#include "guest.h"

#define ETH_HLEN    14
#define NET_HDR_LEN 12	   /* virtio-net header (vnet.c's offloads) */
#define BENCH_TYPE  0x88b5 /* ethertype of benchmark frames */

struct net_dev_ops {
	/* One frame out; hdr: a virtio-net header or NULL (zeros). False when
	 * no transmit buffer came free in time. */
	bool (*send)(const uint8_t *f, unsigned len, const uint8_t *hdr);
	/* The next received frame into net_frame, its length, or 0. */
	unsigned (*recv)(void);
	/* Take back finished transmit buffers. */
	void (*reclaim)(void);
};

/* What the receive path saw (the checks look here). */
struct net_state {
	const struct net_dev_ops *ops;
	const char *name; /* prefix of the information lines: "vnet" */
	uint8_t mac[6], peer_mac[6];
	uint32_t ip, peer;
	bool peer_known, probe_answered, unreachable;
	unsigned echo_replies, big_reply, echo_answered, arp_answered;
	unsigned frames, tx_frames;
	uint16_t echo_id;
};
extern struct net_state net;
extern uint8_t net_frame[65536 + 64]; /* the frame received last */

static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* The PM timer, the device half, our address and the peer's (ip=, peer=;
 * default 10.0.0.2 and 10.0.0.1). */
void net_init(const struct net_dev_ops *ops, const char *name);

/* "key=a.b.c.d" on the command line, or dflt; "key=val" present. */
uint32_t net_cmdline_ip(const char *key, uint32_t dflt);
bool net_cmdline_is(const char *key, const char *val);
void net_print_ip(const char *what, uint32_t ip);
void net_print_mac(const char *what, const uint8_t *mac);

/* Ethernet header from our MAC; returns its length. */
unsigned net_eth_head(uint8_t *f, const uint8_t *dst, uint16_t type);

/* An ARP request for the peer's address. */
void net_arp_request(void);

/* Serve the receive side until cond() holds or us pass. */
bool net_rx_until(bool (*cond)(void), uint64_t us);

/* The checks, printing PASS:/FAIL: lines. */
void net_check_arp(void);
void net_check_ping(unsigned n);
void net_check_udp(bool offload);
void net_check_probe(unsigned vid, bool expect);
void net_listen(uint64_t ms);

/* Benchmark (scripts/bench/net.sh): bench=tx keeps the transmit side busy
 * with size-byte frames for ms; bench=rx counts frames of BENCH_TYPE until
 * count or a second without any. */
struct net_bench {
	bool (*tx)(unsigned size, uint64_t ms);
	void (*rx)(uint64_t count, uint64_t wait_ms);
	unsigned max_size;
};
bool net_bench_wanted(void);
int net_bench_run(const struct net_bench *b, int fail_code);
extern uint64_t tsc_hz;
void net_bench_report(const char *dir, unsigned size, uint64_t frames, uint64_t cycles,
		      unsigned kicks);

#endif
