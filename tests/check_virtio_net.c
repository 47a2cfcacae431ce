/* virtio-net driven like a guest driver would: through the virtio-pci BAR
 * (common configuration, notifications, device configuration) with rings
 * crafted in guest memory, and a SOCK_SEQPACKET socket pair standing in for
 * the TAP (same framing: one message per frame, vnet header first). Covers
 * features and config, transmit and receive with the vnet header, VLAN tag
 * insertion and removal with the header's offsets, MRG_RXBUF gathering and
 * num_buffers, frames too large for the buffers, the receive filter and
 * every control command, link down, multiqueue, and malformed chains ->
 * DEVICE_NEEDS_RESET (then working again after a reset). One case uses a
 * real TAP in a private network namespace when the host allows it. State:
 * held receive chains go back to the ring at quiesce; save -> load ->
 * resume on a fresh NIC, every corruption refused or loaded whole. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kestrel/net.h"
#include "kestrel/virtio.h"
#include "kestrel/virtio_net.h"
#include "fake_board.h"
#include "virtio_driver.h"

#define RAM	  MiB(16)
#define BUF(q, i) (0x200000ULL + 0x40000ULL * (q) + 0x4000ULL * (i))

#define F_CSUM		      (1ULL << 0)
#define F_GUEST_CSUM	      (1ULL << 1)
#define F_CTRL_GUEST_OFFLOADS (1ULL << 2)
#define F_MAC		      (1ULL << 5)
#define F_GUEST_TSO4	      (1ULL << 7)
#define F_HOST_TSO4	      (1ULL << 11)
#define F_MRG_RXBUF	      (1ULL << 15)
#define F_STATUS	      (1ULL << 16)
#define F_CTRL_VQ	      (1ULL << 17)
#define F_CTRL_RX	      (1ULL << 18)
#define F_CTRL_VLAN	      (1ULL << 19)
#define F_CTRL_RX_EXTRA	      (1ULL << 20)
#define F_MQ		      (1ULL << 22)
#define F_CTRL_MAC_ADDR	      (1ULL << 23)

#define HDR 12

static int peer[NET_MAX_QUEUES];
static unsigned npeer;
static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01 };

struct drvq {
	uint16_t avail_idx, used_seen, next_desc;
};
static struct drvq dq[2 * NET_MAX_QUEUES + 1];

/* ---- the driver side (registers and memory: virtio_driver.h) ---- */

static uint16_t get16(uint64_t gpa)
{
	uint16_t v;

	get(gpa, &v, 2);
	return v;
}

static uint32_t get32(uint64_t gpa)
{
	uint32_t v;

	get(gpa, &v, 4);
	return v;
}

/* 3.1.1 initialisation with exactly want, nqueues queues. */
static void net_driver_init(uint64_t want, unsigned nqueues)
{
	for (unsigned q = 0; q < nqueues; q++)
		dq[q] = (struct drvq){ 0 };
	driver_init(want, nqueues);
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Post a chain of segments on queue q (descriptors taken in turn). */
static uint16_t post(unsigned q, const struct seg *s, unsigned n)
{
	uint16_t head = dq[q].next_desc % QSZ;

	for (unsigned i = 0; i < n; i++) {
		uint16_t d = (uint16_t)((head + i) % QSZ);
		struct virtq_desc v = { s[i].gpa, s[i].len,
					(uint16_t)((s[i].write ? D_WRITE : 0) |
						   (i + 1 < n ? D_NEXT : 0)),
					(uint16_t)((d + 1) % QSZ) };

		put(RING(q) + 16ULL * d, &v, sizeof(v));
	}
	dq[q].next_desc = (uint16_t)(dq[q].next_desc + n);
	put(AVAIL(q) + 4 + 2 * (dq[q].avail_idx % QSZ), &head, 2);
	dq[q].avail_idx++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	put(AVAIL(q) + 2, &dq[q].avail_idx, 2);
	return head;
}

static void kick(unsigned q)
{
	bar_write(NOTIFY + 4 * q, 2, q);
}

/* Wait until the used ring of q has n entries more than seen so far. */
static bool used_wait(unsigned q, unsigned n)
{
	for (int i = 0; i < 2000; i++) {
		if ((uint16_t)(get16(USED(q) + 2) - dq[q].used_seen) >= n)
			return true;
		sleep_ms(1);
	}
	return false;
}

static void used_take(unsigned q, uint32_t *id, uint32_t *len)
{
	uint64_t e = USED(q) + 4 + 8ULL * (dq[q].used_seen % QSZ);

	*id = get32(e);
	*len = get32(e + 4);
	dq[q].used_seen++;
}

static unsigned used_new(unsigned q)
{
	return (uint16_t)(get16(USED(q) + 2) - dq[q].used_seen);
}

/* ---- the TAP side ---- */

static ssize_t peer_recv(unsigned q, uint8_t *buf, size_t len, int timeout_ms)
{
	struct pollfd p = { peer[q], POLLIN, 0 };

	if (poll(&p, 1, timeout_ms) <= 0)
		return -1;
	return recv(peer[q], buf, len, 0);
}

static void peer_send(unsigned q, const uint8_t *hdr, const uint8_t *frame, size_t len)
{
	uint8_t buf[70000];

	memcpy(buf, hdr, HDR);
	memcpy(buf + HDR, frame, len);
	ck_assert_int_eq(send(peer[q], buf, HDR + len, 0), (ssize_t)(HDR + len));
}

/* An Ethernet frame to dst with ethertype type and a counting payload. */
static size_t frame_make(uint8_t *f, const uint8_t *dst, uint16_t type, size_t len)
{
	static const uint8_t src[6] = { 0x02, 0, 0, 0, 0, 0x99 };

	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = (uint8_t)(type >> 8);
	f[13] = (uint8_t)type;
	for (size_t i = 14; i < len; i++)
		f[i] = (uint8_t)(i * 7);
	return len;
}

static void hdr_make(uint8_t *h, uint8_t flags, uint16_t csum_start, uint16_t csum_off,
		     uint16_t hdr_len)
{
	memset(h, 0, HDR);
	h[0] = flags;
	h[2] = (uint8_t)hdr_len;
	h[3] = (uint8_t)(hdr_len >> 8);
	h[6] = (uint8_t)csum_start;
	h[7] = (uint8_t)(csum_start >> 8);
	h[8] = (uint8_t)csum_off;
	h[9] = (uint8_t)(csum_off >> 8);
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* ---- fixtures ---- */

static void make_dev(unsigned vlan, unsigned queues)
{
	struct virtio_net_opts o = { .name = "net0", .vlan = vlan, .queues = queues };
	struct virtio_model m;
	int fds[NET_MAX_QUEUES];
	struct net_tap tap;
	char err[256] = "";

	memcpy(o.mac, guest_mac, 6);
	for (unsigned q = 0; q < queues; q++) {
		int sp[2];

		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sp), 0);
		fds[q] = sp[0];
		peer[q] = sp[1];
	}
	npeer = queues;
	net_tap_from_fds(&tap, fds, queues);
	ck_assert_msg(virtio_net_new(&o, &tap, &m, err, sizeof(err)) == 0, "%s", err);
	dev = transport_for(&m);
}

static void setup(void)
{
	ck_assert_int_eq(gm_init(&gm, RAM, false), 0);
	memset(dq, 0, sizeof(dq));
	make_dev(0, 1);
}

static void setup_vlan(void)
{
	ck_assert_int_eq(gm_init(&gm, RAM, false), 0);
	memset(dq, 0, sizeof(dq));
	make_dev(5, 1);
}

static void setup_mq(void)
{
	ck_assert_int_eq(gm_init(&gm, RAM, false), 0);
	memset(dq, 0, sizeof(dq));
	make_dev(0, 2);
}

static void teardown(void)
{
	dev->ops->destroy(dev);
	for (unsigned q = 0; q < npeer; q++)
		close(peer[q]);
	gm_destroy(&gm);
}

/* ---- features and configuration ---- */

START_TEST(test_features_config)
{
	uint64_t f = dev_features();
	uint8_t mac[6];

	ck_assert(f & F_VERSION_1);
	ck_assert(f & F_MAC);
	ck_assert(f & F_STATUS);
	ck_assert(f & F_CSUM);
	ck_assert(f & F_GUEST_CSUM);
	ck_assert(f & F_HOST_TSO4);
	ck_assert(f & F_GUEST_TSO4);
	ck_assert(f & F_MRG_RXBUF);
	ck_assert(f & F_CTRL_VQ);
	ck_assert(!(f & F_MQ));
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)bar_read(DEVCFG + i, 1);
	ck_assert_mem_eq(mac, guest_mac, 6);
	ck_assert_uint_eq(bar_read(DEVCFG + 6, 2), 1); /* LINK_UP */
	ck_assert_uint_eq(bar_read(DEVCFG + 8, 2), 1); /* max_virtqueue_pairs */
	bar_write(DEVCFG, 1, 0xff);		       /* read-only in 1.x */
	ck_assert_uint_eq(bar_read(DEVCFG, 1), guest_mac[0]);
}
END_TEST

/* ---- transmit ---- */

START_TEST(test_tx_plain)
{
	uint8_t h[HDR], f[100], got[200];
	struct virtio_net_stats st;
	uint32_t id, len;

	net_driver_init(F_VERSION_1 | F_CSUM, 3);
	hdr_make(h, 1, 34, 6, 0);
	h[10] = 0x77; /* num_buffers: ignored */
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	put(BUF(1, 0), h, HDR);
	put(BUF(1, 0) + HDR, f, 20); /* header + a frame in pieces */
	put(BUF(1, 1), f + 20, sizeof(f) - 20);
	post(1,
	     (struct seg[]){ { BUF(1, 0), HDR + 20, false }, { BUF(1, 1), sizeof(f) - 20, false } },
	     2);
	kick(1);
	ck_assert_int_eq(peer_recv(0, got, sizeof(got), 2000), HDR + sizeof(f));
	ck_assert_uint_eq(got[0], 1);
	ck_assert_uint_eq(le16(got + 6), 34);
	ck_assert_uint_eq(le16(got + 10), 0);
	ck_assert_mem_eq(got + HDR, f, sizeof(f));
	ck_assert(used_wait(1, 1));
	used_take(1, &id, &len);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(virtio_net_get_stats(dev, 0, &st), 0);
	ck_assert_uint_eq(st.tx_packets, 1);
	ck_assert_uint_eq(st.tx_bytes, sizeof(f));
}
END_TEST

/* Offloads the driver did not negotiate, runts: dropped, chain returned. */
START_TEST(test_tx_refused)
{
	uint8_t h[HDR], f[64], got[200];
	struct virtio_net_stats st;

	net_driver_init(F_VERSION_1, 3); /* no CSUM, no TSO */
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	hdr_make(h, 1, 34, 6, 0); /* NEEDS_CSUM */
	put(BUF(1, 0), h, HDR);
	put(BUF(1, 0) + HDR, f, sizeof(f));
	post(1, (struct seg[]){ { BUF(1, 0), HDR + sizeof(f), false } }, 1);
	hdr_make(h, 0, 0, 0, 0);
	h[1] = 1; /* GSO TCPv4 */
	put(BUF(1, 1), h, HDR);
	put(BUF(1, 1) + HDR, f, sizeof(f));
	post(1, (struct seg[]){ { BUF(1, 1), HDR + sizeof(f), false } }, 1);
	hdr_make(h, 0, 0, 0, 0);
	put(BUF(1, 2), h, HDR);
	post(1, (struct seg[]){ { BUF(1, 2), HDR + 10, false } }, 1); /* runt */
	kick(1);
	ck_assert(used_wait(1, 3));
	ck_assert_int_lt(peer_recv(0, got, sizeof(got), 100), 0);
	ck_assert_int_eq(virtio_net_get_stats(dev, 0, &st), 0);
	ck_assert_uint_eq(st.tx_dropped, 3);
	ck_assert_uint_eq(st.tx_packets, 0);
}
END_TEST

/* VLAN 5: the tag goes in at 12; csum_start and hdr_len move by 4. */
START_TEST(test_tx_vlan_tag)
{
	uint8_t h[HDR], f[80], got[200];
	static const uint8_t tag[4] = { 0x81, 0x00, 0x00, 0x05 };

	net_driver_init(F_VERSION_1 | F_CSUM | F_HOST_TSO4, 3);
	hdr_make(h, 1, 34, 6, 54);
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	put(BUF(1, 0), h, HDR);
	put(BUF(1, 1), f, 5); /* MACs split over buffers */
	put(BUF(1, 2), f + 5, sizeof(f) - 5);
	post(1,
	     (struct seg[]){ { BUF(1, 0), HDR, false },
			     { BUF(1, 1), 5, false },
			     { BUF(1, 2), sizeof(f) - 5, false } },
	     3);
	kick(1);
	ck_assert_int_eq(peer_recv(0, got, sizeof(got), 2000), HDR + sizeof(f) + 4);
	ck_assert_uint_eq(le16(got + 6), 38); /* csum_start */
	ck_assert_uint_eq(le16(got + 8), 6);  /* csum_offset: from csum_start */
	ck_assert_uint_eq(le16(got + 2), 58); /* hdr_len */
	ck_assert_mem_eq(got + HDR, f, 12);
	ck_assert_mem_eq(got + HDR + 12, tag, 4);
	ck_assert_mem_eq(got + HDR + 16, f + 12, sizeof(f) - 12);
}
END_TEST

/* An access port: a frame the guest tagged itself does not leave. */
START_TEST(test_tx_vlan_guest_tagged)
{
	uint8_t h[HDR], f[80], got[200];
	struct virtio_net_stats st;

	net_driver_init(F_VERSION_1, 3);
	hdr_make(h, 0, 0, 0, 0);
	frame_make(f, guest_mac, 0x8100, sizeof(f));
	put(BUF(1, 0), h, HDR);
	put(BUF(1, 0) + HDR, f, sizeof(f));
	post(1, (struct seg[]){ { BUF(1, 0), HDR + sizeof(f), false } }, 1);
	kick(1);
	ck_assert(used_wait(1, 1));
	ck_assert_int_lt(peer_recv(0, got, sizeof(got), 100), 0);
	ck_assert_int_eq(virtio_net_get_stats(dev, 0, &st), 0);
	ck_assert_uint_eq(st.tx_dropped, 1);
}
END_TEST

/* ---- receive ---- */

static void rx_post(unsigned n, uint32_t size)
{
	for (unsigned i = 0; i < n; i++) {
		unsigned slot = (dq[0].next_desc) % QSZ;

		post(0, (struct seg[]){ { BUF(0, slot), size, true } }, 1);
	}
	kick(0);
}

START_TEST(test_rx_plain)
{
	uint8_t h[HDR], f[60], got[HDR + 60];
	uint32_t id, len;

	net_driver_init(F_VERSION_1 | F_GUEST_CSUM, 3);
	rx_post(2, 2048);
	hdr_make(h, 1, 34, 16, 0);
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	peer_send(0, h, f, sizeof(f));
	ck_assert(used_wait(0, 1));
	used_take(0, &id, &len);
	ck_assert_uint_eq(id, 0);
	ck_assert_uint_eq(len, HDR + sizeof(f));
	get(BUF(0, 0), got, sizeof(got));
	ck_assert_uint_eq(got[0], 1);
	ck_assert_uint_eq(le16(got + 6), 34);
	ck_assert_uint_eq(le16(got + 10), 1); /* num_buffers */
	ck_assert_mem_eq(got + HDR, f, sizeof(f));
}
END_TEST

/* Offloads the driver did not take never reach it. */
START_TEST(test_rx_refused_offload)
{
	uint8_t h[HDR], f[60];
	struct virtio_net_stats st;

	net_driver_init(F_VERSION_1, 3); /* no GUEST_CSUM */
	rx_post(2, 2048);
	hdr_make(h, 1, 34, 16, 0);
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	peer_send(0, h, f, sizeof(f));
	hdr_make(h, 0, 0, 0, 0);
	peer_send(0, h, f, sizeof(f));
	ck_assert(used_wait(0, 1));
	sleep_ms(50);
	ck_assert_uint_eq(used_new(0), 1);
	ck_assert_int_eq(virtio_net_get_stats(dev, 0, &st), 0);
	ck_assert_uint_eq(st.rx_dropped, 1);
	ck_assert_uint_eq(st.rx_packets, 1);
}
END_TEST

/* A frame larger than the chain is lost; the chain takes the next one. */
START_TEST(test_rx_too_big)
{
	uint8_t h[HDR], big[1000], f[60], got[HDR + 60];
	struct virtio_net_stats st;
	uint32_t id, len;

	net_driver_init(F_VERSION_1, 3);
	rx_post(1, 256);
	hdr_make(h, 0, 0, 0, 0);
	frame_make(big, guest_mac, 0x0800, sizeof(big));
	frame_make(f, guest_mac, 0x0806, sizeof(f));
	peer_send(0, h, big, sizeof(big));
	peer_send(0, h, f, sizeof(f));
	ck_assert(used_wait(0, 1));
	used_take(0, &id, &len);
	ck_assert_uint_eq(len, HDR + sizeof(f));
	get(BUF(0, 0), got, sizeof(got));
	ck_assert_mem_eq(got + HDR, f, sizeof(f));
	ck_assert_int_eq(virtio_net_get_stats(dev, 0, &st), 0);
	ck_assert_uint_eq(st.rx_dropped, 1);
}
END_TEST

/* MRG_RXBUF: one frame over three 512-byte chains, all published at once
 * with num_buffers 3; the device waits while the ring holds too little. */
START_TEST(test_rx_mergeable)
{
	uint8_t h[HDR], f[1400], got[3 * 512];
	uint32_t id[3], len[3];

	net_driver_init(F_VERSION_1 | F_MRG_RXBUF, 3);
	rx_post(2, 512);
	hdr_make(h, 0, 0, 0, 0);
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	peer_send(0, h, f, sizeof(f));
	sleep_ms(100);
	ck_assert_uint_eq(used_new(0), 0); /* 1024 bytes: not enough */
	rx_post(6, 512);
	ck_assert(used_wait(0, 3));
	for (int i = 0; i < 3; i++)
		used_take(0, &id[i], &len[i]);
	ck_assert_uint_eq(len[0], 512);
	ck_assert_uint_eq(len[1], 512);
	ck_assert_uint_eq(len[2], HDR + sizeof(f) - 1024);
	for (int i = 0; i < 3; i++)
		get(BUF(0, id[i]), got + 512 * i, 512);
	ck_assert_uint_eq(le16(got + 10), 3);
	ck_assert_mem_eq(got + HDR, f, sizeof(f));
	/* A small frame next: one chain, num_buffers 1. */
	peer_send(0, h, f, 100);
	ck_assert(used_wait(0, 1));
	used_take(0, &id[0], &len[0]);
	ck_assert_uint_eq(len[0], HDR + 100);
	get(BUF(0, id[0]), got, HDR);
	ck_assert_uint_eq(le16(got + 10), 1);
}
END_TEST

/* Received frames are device DMA the dirty log must see (KVM does not):
 * the chains a frame filled are marked, the ones still waiting are not. */
START_TEST(test_rx_dirty_log)
{
	uint64_t bm[RAM / 4096 / 64];
	struct gm_slot_info ram;
	uint8_t h[HDR], f[1400];
	int id = gm_slot_at(&gm, BUF(0, 0));

	ck_assert_int_eq(gm_slot_get(&gm, id, &ram), 0);
	net_driver_init(F_VERSION_1 | F_MRG_RXBUF, 3);
	rx_post(5, 512);
	ck_assert_int_eq(gm_dirty_log_start(&gm), 0);
	hdr_make(h, 0, 0, 0, 0);
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	peer_send(0, h, f, sizeof(f));
	ck_assert(used_wait(0, 3));
	ck_assert_int_eq(gm_dirty_fetch(&gm, id, bm, RAM / 4096, true), 3);
	for (unsigned i = 0; i < 5; i++) {
		uint64_t page = (BUF(0, i) - ram.gpa) / 4096;

		ck_assert_uint_eq(bm[page / 64] >> (page % 64) & 1, i < 3);
	}
	gm_dirty_log_stop(&gm);
}
END_TEST

/* VLAN 5: the tag comes off, the frame moves up 4 bytes, csum_start and
 * hdr_len follow; other VLANs and untagged frames are dropped. */
START_TEST(test_rx_vlan_untag)
{
	uint8_t h[HDR], f[84], tagged[84], got[HDR + 80];
	struct virtio_net_stats st;
	uint32_t id, len;

	net_driver_init(F_VERSION_1 | F_GUEST_CSUM, 3);
	rx_post(4, 2048);
	frame_make(f, guest_mac, 0x0800, 80);
	memcpy(tagged, f, 12);
	memcpy(tagged + 12, (uint8_t[]){ 0x81, 0x00, 0x20, 0x06 }, 4); /* PCP 1, VID 6 */
	memcpy(tagged + 16, f + 12, 68);
	hdr_make(h, 1, 38, 16, 58);
	peer_send(0, h, tagged, sizeof(tagged)); /* VID 6: dropped */
	peer_send(0, h, f, 80);			 /* untagged: dropped */
	tagged[15] = 5;				 /* PCP 1, VID 5 */
	peer_send(0, h, tagged, sizeof(tagged));
	ck_assert(used_wait(0, 1));
	used_take(0, &id, &len);
	ck_assert_uint_eq(len, HDR + 80);
	get(BUF(0, id), got, sizeof(got));
	ck_assert_uint_eq(le16(got + 6), 34);
	ck_assert_uint_eq(le16(got + 2), 54);
	ck_assert_uint_eq(le16(got + 10), 1);
	ck_assert_mem_eq(got + HDR, f, 80);
	ck_assert_int_eq(virtio_net_get_stats(dev, 0, &st), 0);
	ck_assert_uint_eq(st.rx_dropped, 2);
	ck_assert_uint_eq(st.rx_packets, 1);
}
END_TEST

/* The same through merged buffers: the bounce spans chains. */
START_TEST(test_rx_vlan_mergeable)
{
	uint8_t h[HDR], f[1500], tagged[1504], got[4 * 512];
	uint32_t id[3], len[3];

	net_driver_init(F_VERSION_1 | F_MRG_RXBUF, 3);
	rx_post(8, 512);
	frame_make(f, guest_mac, 0x86dd, sizeof(f));
	memcpy(tagged, f, 12);
	memcpy(tagged + 12, (uint8_t[]){ 0x81, 0x00, 0x00, 0x05 }, 4);
	memcpy(tagged + 16, f + 12, sizeof(f) - 12);
	hdr_make(h, 0, 0, 0, 0);
	peer_send(0, h, tagged, sizeof(tagged));
	ck_assert(used_wait(0, 3));
	for (int i = 0; i < 3; i++) {
		used_take(0, &id[i], &len[i]);
		get(BUF(0, id[i]), got + 512 * i, 512);
	}
	ck_assert_uint_eq(len[0] + len[1] + len[2], HDR + sizeof(f));
	ck_assert_uint_eq(le16(got + 10), 3);
	ck_assert_mem_eq(got + HDR, f, sizeof(f));
}
END_TEST

/* ---- control queue ---- */

/* One command on the control queue (index cq); returns the ack byte. */
static uint8_t ctrl(unsigned cq, uint8_t cls, uint8_t cmd, const void *data, uint32_t len)
{
	uint8_t hdr[2] = { cls, cmd }, ack = 0xee;
	uint64_t b = BUF(cq, dq[cq].next_desc % QSZ);
	uint32_t id, l;

	struct seg segs[3] = { { b, 2, false },
			       { b + 0x100, len, false },
			       { b + 0x3000, 1, true } };

	put(b, hdr, 2);
	if (len)
		put(b + 0x100, data, len);
	put(b + 0x3000, &ack, 1);
	if (!len)
		segs[1] = segs[2]; /* header, then the ack */
	post(cq, segs, len ? 3 : 2);
	kick(cq);
	ck_assert(used_wait(cq, 1));
	used_take(cq, &id, &l);
	ck_assert_uint_eq(l, 1);
	get(b + 0x3000, &ack, 1);
	return ack;
}

static bool rx_one_of(const uint8_t *dst, uint16_t type)
{
	uint8_t h[HDR] = { 0 }, f[64];
	uint16_t before = get16(USED(0) + 2);

	frame_make(f, dst, type, sizeof(f));
	peer_send(0, h, f, sizeof(f));
	for (int i = 0; i < 100; i++) {
		if (get16(USED(0) + 2) != before)
			return true;
		sleep_ms(1);
	}
	return false;
}

START_TEST(test_ctrl_rx_filter)
{
	static const uint8_t other[6] = { 0x52, 0x54, 0, 0, 0, 0x42 },
			     listed[6] = { 0x02, 1, 2, 3, 4, 5 };
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t mcast[6] = { 0x33, 0x33, 0, 0, 0, 1 };
	/* frame_make's payload makes a tagged frame's TCI 0x6269: VID 0x269. */
	uint8_t off = 0, on = 1, table[4 + 6 + 4 + 6] = { 1, 0, 0, 0 }, vid[2] = { 0x69, 0x02 };
	uint8_t newmac[6] = { 0x52, 0x54, 0, 1, 2, 3 };
	uint64_t feat = F_VERSION_1 | F_CTRL_VQ | F_CTRL_RX | F_CTRL_RX_EXTRA | F_CTRL_VLAN |
			F_CTRL_MAC_ADDR;

	net_driver_init(feat, 3);
	rx_post(QSZ, 2048);
	ck_assert(rx_one_of(other, 0x0800));	      /* promiscuous until told */
	ck_assert_uint_eq(ctrl(2, 0, 0, &off, 1), 0); /* PROMISC off */
	ck_assert(!rx_one_of(other, 0x0800));
	ck_assert(rx_one_of(guest_mac, 0x0800));
	ck_assert(rx_one_of(bcast, 0x0806));
	ck_assert(!rx_one_of(mcast, 0x86dd));
	memcpy(table + 4, listed, 6);
	table[10] = 1;
	memcpy(table + 14, mcast, 6);
	ck_assert_uint_eq(ctrl(2, 1, 0, table, sizeof(table)), 0); /* MAC_TABLE_SET */
	ck_assert(rx_one_of(listed, 0x0800));
	ck_assert(rx_one_of(mcast, 0x86dd));
	ck_assert_uint_eq(ctrl(2, 1, 0, table, sizeof(table) - 1), 1); /* short: ERR */
	ck_assert_uint_eq(ctrl(2, 0, 5, &on, 1), 0);		       /* NOBCAST */
	ck_assert(!rx_one_of(bcast, 0x0806));
	ck_assert_uint_eq(ctrl(2, 0, 1, &on, 1), 0); /* ALLMULTI */
	ck_assert(rx_one_of((uint8_t[]){ 0x01, 0, 0x5e, 0, 0, 9 }, 0x0800));
	/* VLAN filter: a tagged frame passes only once its id is added. */
	ck_assert(!rx_one_of(guest_mac, 0x8100));
	ck_assert_uint_eq(ctrl(2, 2, 0, vid, 2), 0); /* VLAN_ADD 0x269 */
	ck_assert(rx_one_of(guest_mac, 0x8100));
	ck_assert_uint_eq(ctrl(2, 2, 1, vid, 2), 0); /* VLAN_DEL */
	ck_assert(!rx_one_of(guest_mac, 0x8100));
	ck_assert_uint_eq(ctrl(2, 2, 0, (uint8_t[]){ 0, 0x10 }, 2), 1); /* 4096: ERR */
	/* MAC_ADDR_SET: the config space and the filter follow. */
	ck_assert_uint_eq(ctrl(2, 1, 1, newmac, 6), 0);
	ck_assert_uint_eq(bar_read(DEVCFG + 5, 1), 3);
	ck_assert(rx_one_of(newmac, 0x0800));
	ck_assert(!rx_one_of(guest_mac, 0x0800));
	/* Unknown class, ANNOUNCE (not offered), bad lengths: ERR. */
	ck_assert_uint_eq(ctrl(2, 9, 0, &on, 1), 1);
	ck_assert_uint_eq(ctrl(2, 3, 0, NULL, 0), 1);
	ck_assert_uint_eq(ctrl(2, 0, 0, table, 2), 1);
	ck_assert_uint_eq(ctrl(2, 4, 0, (uint8_t[]){ 2, 0 }, 2), 1); /* MQ not negotiated */
	ck_assert(!(bar_read(CC_STATUS, 1) & ST_NEEDS_RESET));
}
END_TEST

/* More addresses than the table holds: the overflow accepts them all
 * rather than losing some (5.1.6.5.2). */
START_TEST(test_ctrl_mac_table_overflow)
{
	static const uint8_t other[6] = { 0x02, 9, 9, 9, 9, 9 };
	uint8_t table[4 + 70 * 6 + 4] = { 70, 0, 0, 0 }, off = 0;

	net_driver_init(F_VERSION_1 | F_CTRL_VQ | F_CTRL_RX, 3);
	rx_post(QSZ, 2048);
	ck_assert_uint_eq(ctrl(2, 0, 0, &off, 1), 0);
	ck_assert(!rx_one_of(other, 0x0800));
	for (int i = 0; i < 70; i++)
		memcpy(table + 4 + 6 * i, (uint8_t[]){ 0x02, 1, 1, 1, 1, (uint8_t)i }, 6);
	ck_assert_uint_eq(ctrl(2, 1, 0, table, sizeof(table)), 0);
	ck_assert(rx_one_of(other, 0x0800));
	table[0] = 71; /* claims more than it holds */
	ck_assert_uint_eq(ctrl(2, 1, 0, table, sizeof(table)), 1);
}
END_TEST

START_TEST(test_ctrl_guest_offloads)
{
	uint64_t feat = F_VERSION_1 | F_CTRL_VQ | F_GUEST_CSUM | F_CTRL_GUEST_OFFLOADS;
	uint64_t want = 0, bad = F_GUEST_TSO4;
	uint8_t h[HDR], f[60];
	struct virtio_net_stats st;

	net_driver_init(feat, 3);
	rx_post(4, 2048);
	ck_assert_uint_eq(ctrl(2, 5, 0, &bad, 8), 1);  /* not negotiated */
	ck_assert_uint_eq(ctrl(2, 5, 0, &want, 8), 0); /* no checksum offload now */
	hdr_make(h, 1, 34, 16, 0);
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	peer_send(0, h, f, sizeof(f));
	sleep_ms(100);
	ck_assert_int_eq(virtio_net_get_stats(dev, 0, &st), 0);
	ck_assert_uint_eq(st.rx_dropped, 1);
}
END_TEST

/* ---- link ---- */

START_TEST(test_link_down)
{
	uint8_t h[HDR] = { 0 }, f[64], got[200], gen;
	struct virtio_net_stats st;

	net_driver_init(F_VERSION_1 | F_STATUS, 3);
	gen = (uint8_t)bar_read(CC_CONFIG_GEN, 1);
	rx_post(2, 2048);
	ck_assert_int_eq(virtio_net_set_link(dev, false), 0);
	ck_assert_uint_eq(bar_read(DEVCFG + 6, 2), 0);
	ck_assert_uint_ne((uint8_t)bar_read(CC_CONFIG_GEN, 1), gen);
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	peer_send(0, h, f, sizeof(f));
	put(BUF(1, 0), h, HDR);
	put(BUF(1, 0) + HDR, f, sizeof(f));
	post(1, (struct seg[]){ { BUF(1, 0), HDR + sizeof(f), false } }, 1);
	kick(1);
	ck_assert(used_wait(1, 1));
	ck_assert_int_lt(peer_recv(0, got, sizeof(got), 50), 0);
	sleep_ms(50);
	ck_assert_uint_eq(used_new(0), 0);
	ck_assert_int_eq(virtio_net_get_stats(dev, 0, &st), 0);
	ck_assert_uint_eq(st.rx_dropped, 1);
	ck_assert_uint_eq(st.tx_dropped, 1);
	ck_assert_int_eq(virtio_net_set_link(dev, true), 0);
	ck_assert_uint_eq(bar_read(DEVCFG + 6, 2), 1);
	peer_send(0, h, f, sizeof(f));
	ck_assert(used_wait(0, 1));
}
END_TEST

/* ---- multiqueue ---- */

START_TEST(test_mq_pairs)
{
	uint64_t feat = F_VERSION_1 | F_CTRL_VQ | F_MQ;
	uint8_t h[HDR] = { 0 }, f[64], got[200];
	uint16_t pairs = 2;

	ck_assert(dev_features() & F_MQ);
	ck_assert_uint_eq(bar_read(DEVCFG + 8, 2), 2);
	net_driver_init(feat, 5); /* rx0 tx0 rx1 tx1 ctrl(4) */
	for (unsigned i = 0; i < 2; i++) {
		post(2, (struct seg[]){ { BUF(2, i), 2048, true } }, 1);
	}
	kick(2);
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	peer_send(1, h, f, sizeof(f));
	sleep_ms(100);
	ck_assert_uint_eq(used_new(2), 0); /* pair 1 not in use yet */
	ck_assert_uint_eq(ctrl(4, 4, 0, &(uint16_t){ 3 }, 2), 1);
	ck_assert_uint_eq(ctrl(4, 4, 0, &pairs, 2), 0);
	ck_assert(used_wait(2, 1));
	/* Transmit on pair 1 goes out on TAP queue 1. */
	put(BUF(3, 0), h, HDR);
	put(BUF(3, 0) + HDR, f, sizeof(f));
	post(3, (struct seg[]){ { BUF(3, 0), HDR + sizeof(f), false } }, 1);
	kick(3);
	ck_assert_int_eq(peer_recv(1, got, sizeof(got), 2000), HDR + sizeof(f));
}
END_TEST

/* MQ offered but not taken: the control queue is queue 2 (5.1.2). */
START_TEST(test_mq_not_negotiated)
{
	uint8_t off = 0;

	net_driver_init(F_VERSION_1 | F_CTRL_VQ | F_CTRL_RX, 3);
	ck_assert_uint_eq(ctrl(2, 0, 0, &off, 1), 0);
}
END_TEST

/* ---- malformed chains ---- */

static bool needs_reset(void)
{
	for (int i = 0; i < 1000; i++) {
		if (bar_read(CC_STATUS, 1) & ST_NEEDS_RESET)
			return true;
		sleep_ms(1);
	}
	return false;
}

static void works_after_reset(void)
{
	uint8_t h[HDR] = { 0 }, f[64], got[200];

	net_driver_init(F_VERSION_1, 3);
	ck_assert(!(bar_read(CC_STATUS, 1) & ST_NEEDS_RESET));
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	put(BUF(1, 0), h, HDR);
	put(BUF(1, 0) + HDR, f, sizeof(f));
	post(1, (struct seg[]){ { BUF(1, 0), HDR + sizeof(f), false } }, 1);
	kick(1);
	ck_assert_int_eq(peer_recv(0, got, sizeof(got), 2000), HDR + sizeof(f));
}

START_TEST(test_malformed_tx_short_header)
{
	net_driver_init(F_VERSION_1, 3);
	post(1, (struct seg[]){ { BUF(1, 0), 8, false } }, 1);
	kick(1);
	ck_assert(needs_reset());
	works_after_reset();
}
END_TEST

START_TEST(test_malformed_tx_loop)
{
	struct virtq_desc d = { BUF(1, 0), 100, D_NEXT, 0 };
	uint16_t head = 0, idx = 1;

	net_driver_init(F_VERSION_1, 3);
	put(RING(1), &d, sizeof(d)); /* next = itself */
	put(AVAIL(1) + 4, &head, 2);
	put(AVAIL(1) + 2, &idx, 2);
	kick(1);
	ck_assert(needs_reset());
	works_after_reset();
}
END_TEST

/* A frame received into the one buffer buf (read-only, or outside RAM) sets
 * NEEDS_RESET, and the device works again after a reset. */
static void rx_needs_reset(struct seg buf)
{
	uint8_t h[HDR] = { 0 }, f[64];

	net_driver_init(F_VERSION_1, 3);
	post(0, &buf, 1);
	kick(0);
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	peer_send(0, h, f, sizeof(f));
	ck_assert(needs_reset());
	works_after_reset();
}

START_TEST(test_malformed_rx_readable)
{
	rx_needs_reset((struct seg){ BUF(0, 0), 2048, false });
}
END_TEST

START_TEST(test_malformed_rx_outside_ram)
{
	rx_needs_reset((struct seg){ RAM - 100, 2048, true });
}
END_TEST

START_TEST(test_malformed_ctrl)
{
	net_driver_init(F_VERSION_1 | F_CTRL_VQ, 3);
	post(2, (struct seg[]){ { BUF(2, 0), 2, false } }, 1); /* no ack byte */
	kick(2);
	ck_assert(needs_reset());
	works_after_reset();
}
END_TEST

/* ---- a real TAP, in a network namespace of our own ---- */

static bool tap_env(void)
{
	if (access("/dev/net/tun", R_OK | W_OK) < 0 || unshare(CLONE_NEWNET) < 0)
		return false;
	return true;
}

static void if_up(const char *name)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr = { 0 };

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ck_assert_int_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	ck_assert_int_eq(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
	close(s);
}

/* Real TAP: open errors, offloads, and a frame each way through the kernel. */
START_TEST(test_real_tap)
{
	struct net_tap t, t2;
	char err[512];
	uint8_t buf[HDR + 200], f[64], h[HDR] = { 0 };
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	ssize_t n;
	int ps;

	if (!tap_env()) {
		fprintf(stderr,
			"check_virtio_net: no /dev/net/tun or no CAP_SYS_ADMIN: real TAP case "
			"skipped\n");
		return;
	}
	ck_assert_int_eq(net_tap_open(&t, "kvt0", 1, err, sizeof(err)), 0);
	ck_assert_int_eq(net_tap_open(&t2, "kvt0", 1, err, sizeof(err)), -EBUSY);
	ck_assert_msg(strstr(err, "in use by another process"), "%s", err);
	ck_assert_int_eq(net_tap_open(&t2, "kvt0", 2, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "multi_queue"), "%s", err);
	ck_assert_int_eq(net_tap_open(&t2, "bad/name", 1, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(net_tap_set_offload(&t, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4), 0);
	if_up("kvt0");
	ps = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	ck_assert_int_ge(ps, 0);
	sll.sll_ifindex = (int)if_nametoindex("kvt0");
	ck_assert_int_eq(bind(ps, (struct sockaddr *)&sll, sizeof(sll)), 0);
	/* TAP -> kernel: what we write arrives on the interface. */
	frame_make(f, guest_mac, 0x88b5, sizeof(f));
	memcpy(buf, h, HDR);
	memcpy(buf + HDR, f, sizeof(f));
	ck_assert_int_eq(net_tap_send(&t, 0, &(struct iovec){ buf, HDR + sizeof(f) }, 1),
			 HDR + sizeof(f));
	/* The kernel may send frames of its own (IPv6) on the interface. */
	do
		n = recv(ps, buf, sizeof(buf), 0);
	while (n > 0 && memcmp(buf, f, 14));
	ck_assert_int_eq(n, sizeof(f));
	ck_assert_mem_eq(buf, f, sizeof(f));
	/* kernel -> TAP: a frame sent on the interface comes with a header; a
	 * buffer too small gets what fits (the device adds a guard byte). */
	ck_assert_int_eq(send(ps, f, sizeof(f), 0), sizeof(f));
	for (int i = 0; i < 200; i++) {
		n = net_tap_recv(&t, 0, &(struct iovec){ buf, HDR + 20 }, 1);
		if (n > 0 && !memcmp(buf + HDR, f, 14))
			break;
		sleep_ms(5);
	}
	ck_assert_int_eq(n, HDR + 20);
	close(ps);
	net_tap_close(&t);
	ck_assert_int_eq(net_tap_open(&t, "kvtm", 2, err, sizeof(err)), 0);
	ck_assert_int_eq(net_tap_set_queue(&t, 1, false), 0);
	ck_assert_int_eq(net_tap_set_queue(&t, 1, true), 0);
	net_tap_close(&t);
}
END_TEST

/* ---- state: quiesce, save, load into a fresh NIC, resume ---- */

/* Another NIC like the one under test, on its own socket pair; the peer
 * ends of the first are kept in a_peer. */
static struct device *make_second(int *a_peer)
{
	struct device *a = dev, *b;

	memcpy(a_peer, peer, sizeof(peer));
	make_dev(0, 1);
	b = dev;
	dev = a;
	return b;
}

/* Receive chains the device took and holds for a frame that has not come
 * (MRG_RXBUF: 1024 bytes are not enough for one) go back to the ring at
 * quiesce: the NIC that loads the state takes them again, and the driver
 * gets each of its buffers back exactly once. */
START_TEST(test_state_held_rx_chains)
{
	uint8_t h[HDR], f[1400], got[3 * 512];
	uint32_t id[3], len[3];
	int a_peer[NET_MAX_QUEUES];
	struct device *a = dev, *b;
	struct state_buf s;

	net_driver_init(F_VERSION_1 | F_MRG_RXBUF, 3);
	rx_post(2, 512);
	sleep_ms(50);
	ck_assert_uint_eq(used_new(0), 0);
	a->ops->quiesce(a);
	s = locked_save(a);
	b = make_second(a_peer);
	s.pos = 0;
	ck_assert_int_eq(locked_load(b, &s), 0);
	a->ops->destroy(a);
	close(a_peer[0]);
	dev = b;
	ck_assert_int_eq(b->ops->resume(b), 0);
	rx_post(6, 512);
	hdr_make(h, 0, 0, 0, 0);
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	peer_send(0, h, f, sizeof(f));
	ck_assert(used_wait(0, 3));
	for (int i = 0; i < 3; i++) {
		used_take(0, &id[i], &len[i]);
		ck_assert_uint_eq(id[i], (uint32_t)i); /* the first buffers, the held ones */
		get(BUF(0, id[i]), got + 512 * i, 512);
	}
	ck_assert_uint_eq(le16(got + 10), 3);
	ck_assert_mem_eq(got + HDR, f, sizeof(f));
	sleep_ms(20);
	ck_assert_uint_eq(used_new(0), 0);
	state_free(&s);
}
END_TEST

START_TEST(test_state_roundtrip_and_corruption)
{
	int a_peer[NET_MAX_QUEUES];
	struct device *a = dev, *b;
	struct state_buf s;
	uint8_t h[HDR] = { 0 }, f[64];
	unsigned refused;

	net_driver_init(F_VERSION_1 | F_STATUS | F_CTRL_VQ | F_CTRL_RX | F_CTRL_VLAN, 3);
	ck_assert_int_eq(virtio_net_set_link(a, false), 0);
	pthread_mutex_lock(&a->lock);
	ck_assert_int_eq(a->ops->save(a, &(struct state_buf){ 0 }), -EBUSY);
	pthread_mutex_unlock(&a->lock);
	a->ops->quiesce(a);
	s = locked_save(a);
	b = make_second(a_peer);
	refused = check_every_corruption(b, &s);
	printf("virtio-net: state %zu bytes, %u of %zu byte flips refused, the rest loaded whole\n",
	       s.len, refused, s.len);
	load_saves_same(b, &s);
	a->ops->destroy(a);
	close(a_peer[0]);
	dev = b;
	ck_assert_int_eq(b->ops->resume(b), 0);
	/* The link is down on the copy too: nothing reaches the guest. */
	ck_assert_uint_eq(bar_read(DEVCFG + 6, 2), 0);
	rx_post(2, 2048);
	frame_make(f, guest_mac, 0x0800, sizeof(f));
	peer_send(0, h, f, sizeof(f));
	sleep_ms(50);
	ck_assert_uint_eq(used_new(0), 0);
	ck_assert_int_eq(virtio_net_set_link(b, true), 0);
	peer_send(0, h, f, sizeof(f));
	ck_assert(used_wait(0, 1));
	state_free(&s);
}
END_TEST

static Suite *vnet_suite(void)
{
	Suite *s = suite_create("virtio_net");

	ADD_TCASE(s, "device", setup, teardown, 0, test_features_config, test_tx_plain,
		  test_tx_refused, test_rx_plain, test_rx_refused_offload, test_rx_too_big,
		  test_rx_mergeable, test_rx_dirty_log, test_ctrl_rx_filter,
		  test_ctrl_mac_table_overflow, test_ctrl_guest_offloads, test_link_down,
		  test_mq_not_negotiated, test_malformed_tx_short_header, test_malformed_tx_loop,
		  test_malformed_rx_readable, test_malformed_rx_outside_ram, test_malformed_ctrl,
		  test_state_held_rx_chains, test_state_roundtrip_and_corruption);
	ADD_TCASE(s, "vlan", setup_vlan, teardown, 0, test_tx_vlan_tag, test_tx_vlan_guest_tagged,
		  test_rx_vlan_untag, test_rx_vlan_mergeable);
	ADD_TCASE(s, "multiqueue", setup_mq, teardown, 0, test_mq_pairs);
	ADD_TCASE(s, "tap", NULL, NULL, 0, test_real_tap);
	return s;
}

int main(void)
{
	return run_suite(vnet_suite());
}
