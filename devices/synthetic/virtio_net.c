/* virtio-net (virtio v1.1 5.1): an Ethernet NIC on virtio-pci whose frames
 * go to and come from a TAP interface (src/net/net_tap.c).
 *
 * Queues: receiveq(2p) and transmitq(2p + 1) for each queue pair p, then the
 * control queue: index 2 * max_virtqueue_pairs with VIRTIO_NET_F_MQ, else 2
 * (5.1.2). The 12-byte struct virtio_net_hdr_v1 in front of every frame is
 * also the TAP's vnet header (TUNSETVNETHDRSZ 12), so checksum and TSO
 * offloads pass through unchanged; TUNSETOFFLOAD tells the kernel which
 * offloaded frames the guest accepts (its GUEST_* features).
 *
 * Threads: per queue pair one receive and one transmit thread (the first
 * transmit thread also serves the control queue). Receive reads a frame
 * with one readv straight into the guest's buffers: without MRG_RXBUF into
 * one chain, with it into as many chains as a largest frame needs, gathered
 * beforehand and published together with num_buffers (5.1.6.4). Transmit
 * writes a chain with one writev straight from the guest's buffers. The
 * vCPU threads only reach this file through the transport's callbacks.
 *
 * VLAN (per NIC, an 802.1Q access port; the port's rules are in
 * src/net/vlan.c): transmitted frames get the tag after the MAC addresses;
 * the vnet header's csum_start and hdr_len, which count from the start of
 * the frame, move by 4. Received frames must carry
 * the NIC's VLAN id: the header, the MAC addresses and the tag are read
 * into a small bounce buffer and everything after the tag straight into the
 * guest's buffers, four bytes later than the tag; the header and MACs are
 * then copied in front of it, which removes the tag without moving the
 * frame. Untagged frames, other VLANs, and frames the guest tags itself are
 * dropped. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kestrel/net.h"
#include "kestrel/sandbox.h"
#include "kestrel/state.h"
#include "kestrel/virtio.h"
#include "kestrel/virtio_net.h"

#define VNET_QUEUE_SIZE 256
#define VNET_HDR_LEN	NET_VNET_HDR_LEN
#define VNET_RX_IOV_MAX 1024 /* UIO_MAXIOV: the most one readv takes */
#define VNET_BUDGET	256  /* frames per pass before polling again */
#define ETH_HLEN	NET_ETH_HLEN
#define ETH_ALEN	NET_ETH_ALEN
#define VLAN_HLEN	NET_VLAN_HLEN
#define ETH_P_8021Q	NET_ETH_P_8021Q
#define VNET_FRAME_MAX	(65535 + ETH_HLEN + VLAN_HLEN) /* a GSO frame, tagged */
#define VNET_MAC_TABLE	64			       /* unicast + multicast filter entries */
#define VNET_VLAN_IDS	4096

/* 5.1.3 feature bits. */
#define VIRTIO_NET_F_CSUM		 0
#define VIRTIO_NET_F_GUEST_CSUM		 1
#define VIRTIO_NET_F_CTRL_GUEST_OFFLOADS 2
#define VIRTIO_NET_F_MAC		 5
#define VIRTIO_NET_F_GUEST_TSO4		 7
#define VIRTIO_NET_F_GUEST_TSO6		 8
#define VIRTIO_NET_F_GUEST_ECN		 9
#define VIRTIO_NET_F_HOST_TSO4		 11
#define VIRTIO_NET_F_HOST_TSO6		 12
#define VIRTIO_NET_F_HOST_ECN		 13
#define VIRTIO_NET_F_MRG_RXBUF		 15
#define VIRTIO_NET_F_STATUS		 16
#define VIRTIO_NET_F_CTRL_VQ		 17
#define VIRTIO_NET_F_CTRL_RX		 18
#define VIRTIO_NET_F_CTRL_VLAN		 19
#define VIRTIO_NET_F_CTRL_RX_EXTRA	 20
#define VIRTIO_NET_F_MQ			 22
#define VIRTIO_NET_F_CTRL_MAC_ADDR	 23
#define VNET_HAS(f, bit)		 (((f)&VIRTIO_BIT(bit)) != 0)

/* 5.1.4 config layout. */
#define VNET_CFG_MAC	     0
#define VNET_CFG_STATUS	     6
#define VNET_CFG_MAX_PAIRS   8
#define VNET_CFG_MTU	     10
#define VNET_CFG_SIZE	     12
#define VIRTIO_NET_S_LINK_UP 1

/* 5.1.6 struct virtio_net_hdr_v1. */
#define HDR_FLAGS		    0
#define HDR_GSO_TYPE		    1
#define HDR_HDR_LEN		    2
#define HDR_CSUM_START		    6
#define HDR_CSUM_OFFSET		    8
#define HDR_NUM_BUFFERS		    10
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE	    0
#define VIRTIO_NET_HDR_GSO_TCPV4    1
#define VIRTIO_NET_HDR_GSO_TCPV6    4
#define VIRTIO_NET_HDR_GSO_ECN	    0x80

/* 5.1.6.5 control queue. */
#define VIRTIO_NET_OK			   0
#define VIRTIO_NET_ERR			   1
#define VIRTIO_NET_CTRL_RX		   0
#define VIRTIO_NET_CTRL_MAC		   1
#define VIRTIO_NET_CTRL_MAC_TABLE_SET	   0
#define VIRTIO_NET_CTRL_MAC_ADDR_SET	   1
#define VIRTIO_NET_CTRL_VLAN		   2
#define VIRTIO_NET_CTRL_VLAN_ADD	   0
#define VIRTIO_NET_CTRL_VLAN_DEL	   1
#define VIRTIO_NET_CTRL_MQ		   4
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET	   0
#define VIRTIO_NET_CTRL_GUEST_OFFLOADS	   5
#define VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET 0
#define VNET_CTRL_RX_CMDS		   6 /* PROMISC ALLMULTI ALLUNI NOMULTI NOUNI NOBCAST */

#define VNET_GUEST_OFFLOADS                                                          \
	(VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | \
	 VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN))

/* What the control queue sets (5.1.6.5.1-3); reset by each DRIVER_OK. */
struct vnet_filter {
	bool rx_mode[VNET_CTRL_RX_CMDS];
	uint8_t mac[ETH_ALEN];
	unsigned nuni, nmulti;
	bool uni_overflow, multi_overflow;
	uint8_t table[VNET_MAC_TABLE][ETH_ALEN]; /* unicast, then multicast */
	uint32_t vlans[VNET_VLAN_IDS / 32];
};
enum { RX_PROMISC, RX_ALLMULTI, RX_ALLUNI, RX_NOMULTI, RX_NOUNI, RX_NOBCAST };

/* A receive chain taken from the ring, not yet returned. */
struct vnet_chain {
	uint16_t head;
	uint32_t len;
	unsigned iov_n;
};

struct virtio_net;

struct vnet_rxq {
	struct virtio_net *n;
	unsigned pair, vqi;
	pthread_t thread;
	bool running, dead;
	int wake_fd;
	bool irq; /* an interrupt is owed */
	unsigned nheld, niov;
	uint64_t held_len;
	struct vnet_chain held[VNET_QUEUE_SIZE];
	struct iovec iov[VNET_RX_IOV_MAX + VNET_QUEUE_SIZE]; /* the held chains' buffers */
	struct iovec rv[VNET_RX_IOV_MAX];
	struct virtq_used_elem used[VNET_QUEUE_SIZE];
	uint8_t bounce[VNET_HDR_LEN + 2 * ETH_ALEN + VLAN_HLEN];
	uint8_t guard;	  /* a frame reaching it did not fit */
	uint8_t *scratch; /* frames nobody takes */
	atomic_ullong packets, bytes, dropped, kicks;
};

struct vnet_txq {
	struct virtio_net *n;
	unsigned pair, vqi;
	pthread_t thread;
	bool running, dead;
	struct iovec iov[VNET_QUEUE_SIZE];
	struct iovec wv[VNET_QUEUE_SIZE + 4];
	atomic_ullong packets, bytes, dropped, kicks;
};

struct virtio_net {
	struct virtio_dev *vdev;
	char name[32];
	struct net_tap tap;
	uint8_t cfg_mac[ETH_ALEN];
	unsigned vlan, max_pairs;
	bool stats;
	int stop_fd;
	atomic_bool link_up;

	/* Fixed between start() and stop(). */
	uint64_t features;
	unsigned npairs;	   /* pairs with threads */
	unsigned ctrl_vqi;	   /* or -1u */
	size_t rx_need;		   /* what gathered chains must hold (MRG_RXBUF) */
	atomic_uint curr_pairs;	   /* 5.1.6.5.5: pairs the guest uses */
	atomic_ullong rx_offloads; /* GUEST_* features the TAP may use now */

	pthread_mutex_t filter_lock;
	struct vnet_filter f;
	struct iovec ctrl_iov[VNET_QUEUE_SIZE];
	struct vnet_rxq rx[NET_MAX_QUEUES];
	struct vnet_txq tx[NET_MAX_QUEUES];
};

static uint16_t le16_get(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void le16_put(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static uint16_t be16_get(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void vnet_wake(int fd)
{
	if (fd >= 0 && eventfd_write(fd, 1) < 0)
		kdebug("virtio-net: wake-up write failed");
}

/* ---- receive filter (5.1.6.5.1 RX mode, .2 MAC table, .3 VLAN) ---- */

static void vnet_filter_reset(struct virtio_net *n)
{
	pthread_mutex_lock(&n->filter_lock);
	memset(&n->f, 0, sizeof(n->f));
	/* Until the driver sets a mode it gets everything, as from QEMU. */
	n->f.rx_mode[RX_PROMISC] = true;
	memcpy(n->f.mac, n->cfg_mac, ETH_ALEN);
	/* Without CTRL_VLAN there is no VLAN filter: every id passes. */
	if (!VNET_HAS(n->features, VIRTIO_NET_F_CTRL_VLAN))
		memset(n->f.vlans, 0xff, sizeof(n->f.vlans));
	pthread_mutex_unlock(&n->filter_lock);
}

static bool vnet_table_has(const struct vnet_filter *f, unsigned from, unsigned to,
			   const uint8_t *mac)
{
	for (unsigned i = from; i < to; i++)
		if (!memcmp(f->table[i], mac, ETH_ALEN))
			return true;
	return false;
}

/* Whether the driver wants frame (its first 18 bytes, as delivered). */
static bool vnet_filter_accept_locked(const struct vnet_filter *f, const uint8_t *frame)
{
	static const uint8_t bcast[ETH_ALEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

	if (f->rx_mode[RX_PROMISC])
		return true;
	if (be16_get(frame + 12) == ETH_P_8021Q) {
		unsigned vid = be16_get(frame + 14) & 0xfff;

		if (!(f->vlans[vid / 32] & (1u << (vid % 32))))
			return false;
	}
	if (frame[0] & 1) {
		if (!memcmp(frame, bcast, ETH_ALEN))
			return !f->rx_mode[RX_NOBCAST];
		if (f->rx_mode[RX_NOMULTI])
			return false;
		if (f->rx_mode[RX_ALLMULTI] || f->multi_overflow)
			return true;
		return vnet_table_has(f, f->nuni, f->nuni + f->nmulti, frame);
	}
	if (f->rx_mode[RX_NOUNI])
		return false;
	if (f->rx_mode[RX_ALLUNI] || f->uni_overflow || !memcmp(frame, f->mac, ETH_ALEN))
		return true;
	return vnet_table_has(f, 0, f->nuni, frame);
}

/* ---- receive ---- */

enum vnet_rx_wait { VNET_WAIT_TAP, VNET_WAIT_KICK, VNET_WAIT_WAKE };

static void vnet_rx_fail(struct vnet_rxq *q, const char *why)
{
	q->dead = true;
	virtio_set_needs_reset(q->n->vdev, why);
}

/* Take chains until they hold rx_need bytes (one chain without MRG_RXBUF),
 * or the whole ring. 1: enough, 0: wait for buffers, -EPROTO: broken. */
static int vnet_rx_gather(struct vnet_rxq *q, struct virtq *vq)
{
	bool mrg = VNET_HAS(q->n->features, VIRTIO_NET_F_MRG_RXBUF);
	struct vq_elem e;
	int r;

	for (;;) {
		if (q->nheld && (!mrg || q->held_len >= q->n->rx_need))
			return 1;
		if (q->nheld >= vq->size || q->niov >= VNET_RX_IOV_MAX)
			return 1;
		r = vq_pop(vq, &e, q->iov + q->niov, vq->size);
		if (r <= 0)
			return r;
		/* 5.1.6.3.1: receive buffers are device-writable and each holds
		 * at least the header. */
		if (e.out_num || e.in_len < VNET_HDR_LEN)
			return -EPROTO;
		q->held[q->nheld++] =
			(struct vnet_chain){ e.head, (uint32_t)MIN(e.in_len, (uint64_t)UINT32_MAX),
					     e.in_num };
		q->niov += e.in_num;
		q->held_len += e.in_len;
	}
}

/* The readv vector: [bounce] + the held buffers from byte skip on + one
 * guard byte, at most VNET_RX_IOV_MAX entries. A TAP read stops where the
 * buffers end, so a frame that reaches the guard byte was cut: that is how
 * a frame longer than the buffers shows. Returns the entry count; *cap:
 * bytes before the guard. */
static int vnet_rx_vector(struct vnet_rxq *q, bool bounce, size_t skip, size_t *cap)
{
	int k = 0;

	*cap = 0;
	if (bounce) {
		q->rv[k++] = (struct iovec){ q->bounce, sizeof(q->bounce) };
		*cap = sizeof(q->bounce);
	}
	for (unsigned i = 0; i < q->niov && k < VNET_RX_IOV_MAX - 1; i++) {
		size_t len = q->iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		q->rv[k++] = (struct iovec){ (uint8_t *)q->iov[i].iov_base + skip, len - skip };
		*cap += len - skip;
		skip = 0;
	}
	q->rv[k++] = (struct iovec){ &q->guard, 1 };
	return k;
}

/* 5.1.6.4.1: offloads the driver did not accept never reach it. hdr is the
 * header as the TAP wrote it; false drops the frame. */
static bool vnet_rx_hdr_fix(struct vnet_rxq *q, uint8_t *hdr, bool untagged_by_us)
{
	uint64_t off = atomic_load(&q->n->rx_offloads);
	uint8_t gso = hdr[HDR_GSO_TYPE] & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	bool csum = VNET_HAS(off, VIRTIO_NET_F_GUEST_CSUM);

	if (!csum)
		hdr[HDR_FLAGS] &= (uint8_t)~VIRTIO_NET_HDR_F_DATA_VALID;
	if ((hdr[HDR_FLAGS] & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !csum)
		return false;
	if ((gso == VIRTIO_NET_HDR_GSO_TCPV4 && !VNET_HAS(off, VIRTIO_NET_F_GUEST_TSO4)) ||
	    (gso == VIRTIO_NET_HDR_GSO_TCPV6 && !VNET_HAS(off, VIRTIO_NET_F_GUEST_TSO6)) ||
	    (gso != VIRTIO_NET_HDR_GSO_NONE && gso != VIRTIO_NET_HDR_GSO_TCPV4 &&
	     gso != VIRTIO_NET_HDR_GSO_TCPV6) ||
	    ((hdr[HDR_GSO_TYPE] & VIRTIO_NET_HDR_GSO_ECN) &&
	     !VNET_HAS(off, VIRTIO_NET_F_GUEST_ECN)))
		return false;
	return !untagged_by_us || net_vnet_hdr_untag(hdr);
}

/* Return the first chains holding len bytes to the driver, all at once, and
 * forget them. */
static void vnet_rx_complete(struct vnet_rxq *q, struct virtq *vq, uint64_t len)
{
	unsigned k = 0, iovs = 0;
	uint64_t total = len;

	while (k < q->nheld && (len || k == 0)) {
		uint32_t l = (uint32_t)MIN((uint64_t)q->held[k].len, len);

		q->used[k] = (struct virtq_used_elem){ q->held[k].head, l };
		len -= l;
		iovs += q->held[k].iov_n;
		q->held_len -= q->held[k].len;
		k++;
	}
	/* The frame filled these chains' buffers in order from the first. */
	vq_mark_written(vq, q->iov, iovs, total);
	if (vq_push_batch(vq, q->used, k))
		q->irq = true;
	q->nheld -= k;
	q->niov -= iovs;
	memmove(q->held, q->held + k, q->nheld * sizeof(q->held[0]));
	memmove(q->iov, q->iov + iovs, q->niov * sizeof(q->iov[0]));
}

/* The frame is in the guest's buffers (header included, total bytes):
 * fix the header, filter, count the chains used. */
static bool vnet_rx_finish(struct vnet_rxq *q, struct virtq *vq, uint8_t *hdr, bool untagged,
			   size_t total)
{
	struct virtio_net *n = q->n;
	uint8_t head[ETH_HLEN + VLAN_HLEN] = { 0 };
	unsigned nbuf = 0;
	bool ok;

	if (!vnet_rx_hdr_fix(q, hdr, untagged))
		return false;
	vq_iov_read(q->iov, q->niov, VNET_HDR_LEN, head, MIN(sizeof(head), total - VNET_HDR_LEN));
	pthread_mutex_lock(&n->filter_lock);
	ok = vnet_filter_accept_locked(&n->f, head);
	pthread_mutex_unlock(&n->filter_lock);
	if (!ok)
		return false;
	for (uint64_t left = total; nbuf < q->nheld && left; nbuf++)
		left -= MIN(left, (uint64_t)q->held[nbuf].len);
	/* 5.1.6.4.1: num_buffers is 1 without MRG_RXBUF. */
	le16_put(hdr + HDR_NUM_BUFFERS, (uint16_t)nbuf);
	vq_iov_write(q->iov, q->niov, 0, hdr, VNET_HDR_LEN);
	vnet_rx_complete(q, vq, total);
	atomic_fetch_add(&q->packets, 1);
	atomic_fetch_add(&q->bytes, total - VNET_HDR_LEN);
	return true;
}

/* One frame into the held chains, no VLAN. */
static bool vnet_rx_plain(struct vnet_rxq *q, struct virtq *vq, ssize_t got, size_t cap)
{
	uint8_t hdr[VNET_HDR_LEN];

	if (got < VNET_HDR_LEN + ETH_HLEN || (size_t)got > cap)
		return false;
	vq_iov_read(q->iov, q->niov, 0, hdr, sizeof(hdr));
	return vnet_rx_finish(q, vq, hdr, false, (size_t)got);
}

/* One frame with the NIC's VLAN: bounce = header, MACs, tag; the rest is at
 * guest offset VNET_HDR_LEN + 12 already. */
static bool vnet_rx_tagged(struct vnet_rxq *q, struct virtq *vq, ssize_t got, size_t cap)
{
	uint8_t *b = q->bounce, *tag = b + VNET_HDR_LEN + 2 * ETH_ALEN;

	if (got < VNET_HDR_LEN + ETH_HLEN + VLAN_HLEN || (size_t)got > cap)
		return false;
	if (!net_vlan_match(tag, q->n->vlan))
		return false;
	vq_iov_write(q->iov, q->niov, 0, b, VNET_HDR_LEN + 2 * ETH_ALEN);
	return vnet_rx_finish(q, vq, b, true, (size_t)got - VLAN_HLEN);
}

/* Read one frame into the held chains. 1: done (delivered or dropped),
 * 0: the TAP is empty. */
static int vnet_rx_one(struct vnet_rxq *q, struct virtq *vq)
{
	bool tagged = q->n->vlan != 0;
	size_t skip = tagged ? VNET_HDR_LEN + 2 * ETH_ALEN : 0, cap;
	int cnt;
	ssize_t got;

	if (q->held_len < VNET_HDR_LEN + ETH_HLEN + VLAN_HLEN) {
		/* Chains too small for any frame: nothing fits, drop it. */
		got = net_tap_recv(&q->n->tap, q->pair,
				   &(struct iovec){ q->scratch, VNET_HDR_LEN + VNET_FRAME_MAX }, 1);
		if (got == -EAGAIN)
			return 0;
		atomic_fetch_add(&q->dropped, 1);
		return 1;
	}
	cnt = vnet_rx_vector(q, tagged, skip, &cap);
	got = net_tap_recv(&q->n->tap, q->pair, q->rv, cnt);
	if (got == -EAGAIN)
		return 0;
	if (got < 0) {
		kdebug("%s: TAP read: %s", q->n->name, strerror((int)-got));
		return 0;
	}
	if (!(tagged ? vnet_rx_tagged(q, vq, got, cap) : vnet_rx_plain(q, vq, got, cap)))
		atomic_fetch_add(&q->dropped, 1);
	return 1;
}

static void vnet_rx_irq(struct vnet_rxq *q)
{
	if (q->irq)
		virtio_queue_interrupt(q->n->vdev, q->vqi);
	q->irq = false;
}

/* Link down: frames are read and dropped. */
static enum vnet_rx_wait vnet_rx_drain(struct vnet_rxq *q)
{
	struct iovec v = { q->scratch, VNET_HDR_LEN + VNET_FRAME_MAX };

	for (unsigned i = 0; i < VNET_BUDGET; i++) {
		if (net_tap_recv(&q->n->tap, q->pair, &v, 1) < 0)
			break;
		atomic_fetch_add(&q->dropped, 1);
	}
	return VNET_WAIT_TAP;
}

static enum vnet_rx_wait vnet_rx_serve(struct vnet_rxq *q)
{
	struct virtio_net *n = q->n;
	struct virtq *vq = virtio_queue(n->vdev, q->vqi);
	enum vnet_rx_wait w = VNET_WAIT_TAP;
	int r;

	if (q->dead || !virtio_queue_enabled(n->vdev, q->vqi) ||
	    q->pair >= atomic_load(&n->curr_pairs))
		return VNET_WAIT_WAKE;
	if (!atomic_load(&n->link_up))
		return vnet_rx_drain(q);
	/* The driver need not kick while we have buffers; when they run out
	 * we ask for a kick and look once more (2.6.10.1). */
	vq_notify_off(vq);
	for (unsigned i = 0; i < VNET_BUDGET; i++) {
		r = vnet_rx_gather(q, vq);
		if (r == 0 && vq_notify_on(vq))
			r = vnet_rx_gather(q, vq);
		if (r < 0) {
			vnet_rx_irq(q);
			vnet_rx_fail(q, "malformed receive buffer");
			return VNET_WAIT_WAKE;
		}
		if (r == 0) {
			w = VNET_WAIT_KICK;
			break;
		}
		if (!vnet_rx_one(q, vq))
			break;
	}
	vnet_rx_irq(q);
	/* VNET_WAIT_TAP also when the budget ran out: the TAP is readable
	 * still, so poll returns at once. */
	return w;
}

/* ---- transmit ---- */

/* 5.1.6.2.1: only the offloads the driver negotiated; false drops. */
static bool vnet_tx_hdr_ok(const struct virtio_net *n, uint8_t *hdr, uint64_t frame_len)
{
	uint64_t f = n->features;
	uint8_t gso = hdr[HDR_GSO_TYPE] & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;

	hdr[HDR_FLAGS] &= VIRTIO_NET_HDR_F_NEEDS_CSUM;
	le16_put(hdr + HDR_NUM_BUFFERS, 0);
	if (hdr[HDR_FLAGS] & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		uint32_t end = (uint32_t)le16_get(hdr + HDR_CSUM_START) +
			       le16_get(hdr + HDR_CSUM_OFFSET) + 2;

		if (!VNET_HAS(f, VIRTIO_NET_F_CSUM) || end > frame_len)
			return false;
	}
	if ((hdr[HDR_GSO_TYPE] & VIRTIO_NET_HDR_GSO_ECN) && !VNET_HAS(f, VIRTIO_NET_F_HOST_ECN))
		return false;
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE: return true;
	case VIRTIO_NET_HDR_GSO_TCPV4: return VNET_HAS(f, VIRTIO_NET_F_HOST_TSO4);
	case VIRTIO_NET_HDR_GSO_TCPV6: return VNET_HAS(f, VIRTIO_NET_F_HOST_TSO6);
	}
	return false;
}

/* The tag goes after the MAC addresses; offsets from the frame's start
 * move with it. False when the guest tagged the frame itself (an access
 * port takes none) or the offsets overflow. */
static bool vnet_tx_tag(const struct virtio_net *n, const struct vq_elem *e, uint8_t *hdr)
{
	uint8_t eth[ETH_HLEN];

	vq_iov_read(e->iov, e->out_num, VNET_HDR_LEN, eth, sizeof(eth));
	return !net_vlan_tagged(eth) && net_vnet_hdr_tag(hdr);
}

/* Header copy, then the guest's frame with the tag spliced in at 12. */
static int vnet_tx_vector(struct vnet_txq *q, const struct vq_elem *e, uint8_t *hdr, uint8_t *tag,
			  uint64_t frame_len)
{
	unsigned max = ARRAY_SIZE(q->wv);
	int k = 1, a, b;

	q->wv[0] = (struct iovec){ hdr, VNET_HDR_LEN };
	if (!tag) {
		a = vq_iov_slice(e->iov, e->out_num, VNET_HDR_LEN, frame_len, q->wv + 1, max - 1);
		return a < 0 ? -1 : 1 + a;
	}
	a = vq_iov_slice(e->iov, e->out_num, VNET_HDR_LEN, 2 * ETH_ALEN, q->wv + k, max - k);
	if (a < 0)
		return -1;
	k += a;
	q->wv[k++] = (struct iovec){ tag, VLAN_HLEN };
	b = vq_iov_slice(e->iov, e->out_num, VNET_HDR_LEN + 2 * ETH_ALEN, frame_len - 2 * ETH_ALEN,
			 q->wv + k, max - k);
	return b < 0 ? -1 : k + b;
}

/* One chain to the TAP. 0 (sent or dropped), or -EPROTO for a chain that
 * has no room for the header (5.1.6.2). */
static int vnet_tx_one(struct vnet_txq *q, const struct vq_elem *e)
{
	struct virtio_net *n = q->n;
	uint8_t hdr[VNET_HDR_LEN], tag[VLAN_HLEN];
	uint64_t frame_len;
	ssize_t sent;
	int k;

	if (e->out_len < VNET_HDR_LEN)
		return -EPROTO;
	frame_len = e->out_len - VNET_HDR_LEN;
	vq_iov_read(e->iov, e->out_num, 0, hdr, sizeof(hdr));
	net_vlan_tag(tag, n->vlan);
	if (!atomic_load(&n->link_up) || frame_len < ETH_HLEN || frame_len > VNET_FRAME_MAX ||
	    !vnet_tx_hdr_ok(n, hdr, frame_len) || (n->vlan && !vnet_tx_tag(n, e, hdr)))
		goto drop;
	k = vnet_tx_vector(q, e, hdr, n->vlan ? tag : NULL, frame_len);
	if (k < 0)
		goto drop;
	sent = net_tap_send(&n->tap, q->pair, q->wv, k);
	if (sent < 0) {
		kdebug("%s: TAP write: %s", n->name, strerror((int)-sent));
		goto drop;
	}
	atomic_fetch_add(&q->packets, 1);
	atomic_fetch_add(&q->bytes, frame_len);
	return 0;
drop:
	atomic_fetch_add(&q->dropped, 1);
	return 0;
}

/* Send what the ring holds, up to a budget; true when more may be there. */
static bool vnet_tx_serve(struct vnet_txq *q)
{
	struct virtio_net *n = q->n;
	struct virtq *vq = virtio_queue(n->vdev, q->vqi);
	struct vq_elem e;
	bool irq = false, more = false;
	unsigned done = 0;
	int r = 0;

	if (q->dead || !virtio_queue_enabled(n->vdev, q->vqi))
		return false;
	do {
		vq_notify_off(vq);
		while (done < VNET_BUDGET && (r = vq_pop(vq, &e, q->iov, VNET_QUEUE_SIZE)) > 0) {
			if (vnet_tx_one(q, &e) < 0) {
				r = -EPROTO;
				break;
			}
			irq |= vq_push(vq, e.head, 0);
			done++;
		}
		if (r < 0) {
			q->dead = true;
			virtio_set_needs_reset(n->vdev, "malformed transmit buffer");
			break;
		}
		if (done >= VNET_BUDGET) {
			more = true;
			break;
		}
	} while (vq_notify_on(vq));
	if (irq)
		virtio_queue_interrupt(n->vdev, q->vqi);
	return more;
}

/* ---- control queue (5.1.6.5) ---- */

/* What one command reads: the part of the chain after class and command. */
struct vnet_cmd {
	const struct vq_elem *e;
	uint64_t off, len;
};

static bool vnet_cmd_read(const struct vnet_cmd *c, uint64_t at, void *buf, size_t len)
{
	if (at > c->len || len > c->len - at)
		return false;
	return vq_iov_read(c->e->iov, c->e->out_num, c->off + at, buf, len) == len;
}

static uint8_t vnet_ctrl_rx(struct virtio_net *n, uint8_t cmd, const struct vnet_cmd *c)
{
	bool extra = VNET_HAS(n->features, VIRTIO_NET_F_CTRL_RX_EXTRA);
	uint8_t on;

	if (!VNET_HAS(n->features, VIRTIO_NET_F_CTRL_RX) || cmd >= VNET_CTRL_RX_CMDS ||
	    (cmd > RX_ALLMULTI && !extra) || c->len != 1 || !vnet_cmd_read(c, 0, &on, 1))
		return VIRTIO_NET_ERR;
	pthread_mutex_lock(&n->filter_lock);
	n->f.rx_mode[cmd] = on != 0;
	pthread_mutex_unlock(&n->filter_lock);
	return VIRTIO_NET_OK;
}

/* One table of struct virtio_net_ctrl_mac: le32 entries, then the MACs.
 * Entries past the table's room only set the overflow flag. */
static bool vnet_mac_table_read(const struct vnet_cmd *c, uint64_t *at, struct vnet_filter *f,
				unsigned *count, bool *overflow)
{
	uint8_t b[4];
	uint32_t entries;

	if (!vnet_cmd_read(c, *at, b, 4))
		return false;
	entries = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
		  (uint32_t)b[3] << 24;
	*at += 4;
	if (entries > (c->len - *at) / ETH_ALEN)
		return false;
	for (uint32_t i = 0; i < entries; i++) {
		unsigned slot = f->nuni + f->nmulti;

		if (slot >= VNET_MAC_TABLE) {
			*overflow = true;
			break;
		}
		if (vnet_cmd_read(c, *at + (uint64_t)i * ETH_ALEN, f->table[slot], ETH_ALEN))
			(*count)++;
	}
	*at += (uint64_t)entries * ETH_ALEN;
	return true;
}

static uint8_t vnet_ctrl_mac(struct virtio_net *n, uint8_t cmd, const struct vnet_cmd *c)
{
	struct vnet_filter f;
	uint8_t mac[ETH_ALEN];
	uint64_t at = 0;

	if (cmd == VIRTIO_NET_CTRL_MAC_ADDR_SET) {
		if (!VNET_HAS(n->features, VIRTIO_NET_F_CTRL_MAC_ADDR) || c->len != ETH_ALEN ||
		    !vnet_cmd_read(c, 0, mac, ETH_ALEN))
			return VIRTIO_NET_ERR;
		pthread_mutex_lock(&n->filter_lock);
		memcpy(n->f.mac, mac, ETH_ALEN);
		pthread_mutex_unlock(&n->filter_lock);
		return VIRTIO_NET_OK;
	}
	if (cmd != VIRTIO_NET_CTRL_MAC_TABLE_SET || !VNET_HAS(n->features, VIRTIO_NET_F_CTRL_RX))
		return VIRTIO_NET_ERR;
	memset(&f, 0, sizeof(f));
	if (!vnet_mac_table_read(c, &at, &f, &f.nuni, &f.uni_overflow) ||
	    !vnet_mac_table_read(c, &at, &f, &f.nmulti, &f.multi_overflow) || at != c->len)
		return VIRTIO_NET_ERR;
	pthread_mutex_lock(&n->filter_lock);
	memcpy(n->f.table, f.table, sizeof(f.table));
	n->f.nuni = f.nuni;
	n->f.nmulti = f.nmulti;
	n->f.uni_overflow = f.uni_overflow;
	n->f.multi_overflow = f.multi_overflow;
	pthread_mutex_unlock(&n->filter_lock);
	return VIRTIO_NET_OK;
}

static uint8_t vnet_ctrl_vlan(struct virtio_net *n, uint8_t cmd, const struct vnet_cmd *c)
{
	uint8_t b[2];
	uint16_t vid;

	if (!VNET_HAS(n->features, VIRTIO_NET_F_CTRL_VLAN) || cmd > VIRTIO_NET_CTRL_VLAN_DEL ||
	    c->len != 2 || !vnet_cmd_read(c, 0, b, 2))
		return VIRTIO_NET_ERR;
	vid = le16_get(b);
	if (vid >= VNET_VLAN_IDS)
		return VIRTIO_NET_ERR;
	pthread_mutex_lock(&n->filter_lock);
	if (cmd == VIRTIO_NET_CTRL_VLAN_ADD)
		n->f.vlans[vid / 32] |= 1u << (vid % 32);
	else
		n->f.vlans[vid / 32] &= ~(1u << (vid % 32));
	pthread_mutex_unlock(&n->filter_lock);
	return VIRTIO_NET_OK;
}

/* 5.1.6.5.5: receive only on the first pairs queues; the TAP steers
 * frames to the queues attached. */
static void vnet_set_pairs(struct virtio_net *n, unsigned pairs)
{
	for (unsigned p = 0; p < n->tap.nqueues; p++)
		if (net_tap_set_queue(&n->tap, p, p < pairs))
			kwarn("%s: cannot %s TAP queue %u", n->name,
			      p < pairs ? "attach" : "detach", p);
	atomic_store(&n->curr_pairs, pairs);
	for (unsigned p = 0; p < n->npairs; p++)
		vnet_wake(n->rx[p].wake_fd);
}

static uint8_t vnet_ctrl_mq(struct virtio_net *n, uint8_t cmd, const struct vnet_cmd *c)
{
	uint8_t b[2];
	uint16_t pairs;

	if (!VNET_HAS(n->features, VIRTIO_NET_F_MQ) || cmd != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET ||
	    c->len != 2 || !vnet_cmd_read(c, 0, b, 2))
		return VIRTIO_NET_ERR;
	pairs = le16_get(b);
	if (pairs < 1 || pairs > n->npairs)
		return VIRTIO_NET_ERR;
	vnet_set_pairs(n, pairs);
	return VIRTIO_NET_OK;
}

static unsigned vnet_tap_offloads(uint64_t g)
{
	unsigned t = 0;

	if (!VNET_HAS(g, VIRTIO_NET_F_GUEST_CSUM))
		return 0;
	t |= NET_OFFLOAD_CSUM;
	if (VNET_HAS(g, VIRTIO_NET_F_GUEST_TSO4))
		t |= NET_OFFLOAD_TSO4;
	if (VNET_HAS(g, VIRTIO_NET_F_GUEST_TSO6))
		t |= NET_OFFLOAD_TSO6;
	if ((t & (NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6)) && VNET_HAS(g, VIRTIO_NET_F_GUEST_ECN))
		t |= NET_OFFLOAD_TSO_ECN;
	return t;
}

/* GUEST_* features in g the TAP may use from now on (at start, and
 * 5.1.6.5.6.1 GUEST_OFFLOADS_SET). */
static int vnet_set_rx_offloads(struct virtio_net *n, uint64_t g)
{
	int ret;

	g &= n->features & VNET_GUEST_OFFLOADS;
	ret = net_tap_set_offload(&n->tap, vnet_tap_offloads(g));
	if (ret) {
		kwarn("%s: TUNSETOFFLOAD: %s; receiving without offloads", n->name, strerror(-ret));
		g = 0;
		if (net_tap_set_offload(&n->tap, 0))
			kwarn("%s: cannot clear the TAP's offloads", n->name);
	}
	atomic_store(&n->rx_offloads, g);
	return ret;
}

static uint8_t vnet_ctrl_offloads(struct virtio_net *n, uint8_t cmd, const struct vnet_cmd *c)
{
	uint8_t b[8];
	uint64_t g = 0;

	if (!VNET_HAS(n->features, VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) ||
	    cmd != VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET || c->len != 8 || !vnet_cmd_read(c, 0, b, 8))
		return VIRTIO_NET_ERR;
	for (int i = 7; i >= 0; i--)
		g = g << 8 | b[i];
	/* Only offloads that were negotiated (5.1.6.5.6.2). */
	if (g & ~(n->features & VNET_GUEST_OFFLOADS))
		return VIRTIO_NET_ERR;
	return vnet_set_rx_offloads(n, g) ? VIRTIO_NET_ERR : VIRTIO_NET_OK;
}

static uint8_t vnet_ctrl_cmd(struct virtio_net *n, uint8_t cls, uint8_t cmd,
			     const struct vnet_cmd *c)
{
	switch (cls) {
	case VIRTIO_NET_CTRL_RX: return vnet_ctrl_rx(n, cmd, c);
	case VIRTIO_NET_CTRL_MAC: return vnet_ctrl_mac(n, cmd, c);
	case VIRTIO_NET_CTRL_VLAN: return vnet_ctrl_vlan(n, cmd, c);
	case VIRTIO_NET_CTRL_MQ: return vnet_ctrl_mq(n, cmd, c);
	case VIRTIO_NET_CTRL_GUEST_OFFLOADS: return vnet_ctrl_offloads(n, cmd, c);
	}
	return VIRTIO_NET_ERR; /* ANNOUNCE and others: not offered */
}

/* Each command: class and command (device-readable), data, then the ack
 * byte (device-writable). */
static void vnet_ctrl_serve(struct virtio_net *n)
{
	struct virtq *vq = virtio_queue(n->vdev, n->ctrl_vqi);
	struct vq_elem e;
	bool irq = false;
	uint8_t cc[2], ack;
	int r;

	if (!virtio_queue_enabled(n->vdev, n->ctrl_vqi))
		return;
	do {
		vq_notify_off(vq);
		while ((r = vq_pop(vq, &e, n->ctrl_iov, VNET_QUEUE_SIZE)) > 0) {
			if (e.out_len < 2 || e.in_len < 1) {
				r = -EPROTO;
				break;
			}
			vq_iov_read(e.iov, e.out_num, 0, cc, 2);
			ack = vnet_ctrl_cmd(n, cc[0], cc[1],
					    &(struct vnet_cmd){ &e, 2, e.out_len - 2 });
			vq_iov_write(e.iov + e.out_num, e.in_num, 0, &ack, 1);
			vq_mark_written(vq, e.iov + e.out_num, e.in_num, 1);
			irq |= vq_push(vq, e.head, 1);
		}
		if (r < 0) {
			virtio_set_needs_reset(n->vdev, "malformed control command");
			break;
		}
	} while (vq_notify_on(vq));
	if (irq)
		virtio_queue_interrupt(n->vdev, n->ctrl_vqi);
}

/* ---- I/O threads ---- */

static void vnet_kicked(int fd, atomic_ullong *kicks)
{
	eventfd_t v;

	if (eventfd_read(fd, &v) == 0)
		atomic_fetch_add(kicks, v);
}

static void *vnet_rx_thread(void *arg)
{
	struct vnet_rxq *q = arg;
	struct virtio_net *n = q->n;
	struct pollfd pfd[4] = {
		{ .fd = n->stop_fd, .events = POLLIN },
		{ .fd = q->wake_fd, .events = POLLIN },
		{ .fd = virtio_queue_kick_fd(n->vdev, q->vqi), .events = POLLIN },
		{ .fd = n->tap.fd[q->pair] },
	};
	eventfd_t v;

	for (;;) {
		pfd[3].events = vnet_rx_serve(q) == VNET_WAIT_TAP ? POLLIN : 0;
		if (poll(pfd, 4, -1) < 0)
			continue;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN)
			(void)eventfd_read(q->wake_fd, &v);
		if (pfd[2].revents & POLLIN)
			vnet_kicked(pfd[2].fd, &q->kicks);
	}
	return NULL;
}

static void *vnet_tx_thread(void *arg)
{
	struct vnet_txq *q = arg;
	struct virtio_net *n = q->n;
	bool ctrl = q->pair == 0 && n->ctrl_vqi != -1u, more;
	struct pollfd pfd[3] = {
		{ .fd = n->stop_fd, .events = POLLIN },
		{ .fd = virtio_queue_kick_fd(n->vdev, q->vqi), .events = POLLIN },
		{ .fd = ctrl ? virtio_queue_kick_fd(n->vdev, n->ctrl_vqi) : -1, .events = POLLIN },
	};

	/* Kicks before DRIVER_OK are in the fds already; serve once anyway. */
	if (ctrl)
		vnet_ctrl_serve(n);
	more = vnet_tx_serve(q);
	for (;;) {
		if (poll(pfd, 3, more ? 0 : -1) < 0)
			continue;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN)
			vnet_kicked(pfd[1].fd, &q->kicks);
		if (pfd[2].revents & POLLIN) {
			vnet_kicked(pfd[2].fd, &q->kicks);
			vnet_ctrl_serve(n);
		}
		more = vnet_tx_serve(q);
	}
	return NULL;
}

/* "net0-rx1": the NIC and the queue pair, for ps and the seccomp report. */
static int vnet_thread_start(struct virtio_net *n, pthread_t *th, const char *dir, unsigned p,
			     void *(*fn)(void *), void *arg)
{
	char name[32];

	snprintf(name, sizeof(name), "%.8s-%s%u", n->name, dir, p);
	return sandbox_thread_start(th, SANDBOX_IO, name, fn, arg);
}

/* ---- transport callbacks ---- */

static uint64_t vnet_cfg_read(void *opaque, unsigned off, unsigned size)
{
	struct virtio_net *n = opaque;
	uint8_t cfg[VNET_CFG_SIZE] = { 0 };
	uint64_t v = 0;

	pthread_mutex_lock(&n->filter_lock);
	memcpy(cfg + VNET_CFG_MAC, n->f.mac, ETH_ALEN);
	pthread_mutex_unlock(&n->filter_lock);
	le16_put(cfg + VNET_CFG_STATUS, atomic_load(&n->link_up) ? VIRTIO_NET_S_LINK_UP : 0);
	le16_put(cfg + VNET_CFG_MAX_PAIRS, (uint16_t)n->max_pairs);
	le16_put(cfg + VNET_CFG_MTU, 1500); /* meaningful only with VIRTIO_NET_F_MTU */
	for (unsigned i = 0; i < size && off + i < sizeof(cfg); i++)
		v |= (uint64_t)cfg[off + i] << (8 * i);
	return v;
}

/* 5.1.4: every field is read-only for a 1.x driver (mac is writable only
 * through the legacy interface, which this device does not have). */
static void vnet_cfg_write(void *opaque, unsigned off, unsigned size, uint64_t val)
{
}

/* Bytes the gathered chains of one frame must hold: a GSO frame when the
 * TAP may send one, else a full frame at the TAP's MTU. */
static size_t vnet_rx_need(const struct virtio_net *n, uint64_t offloads)
{
	if (vnet_tap_offloads(offloads) & (NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6))
		return VNET_HDR_LEN + VNET_FRAME_MAX;
	return VNET_HDR_LEN + ETH_HLEN + VLAN_HLEN + 1500;
}

static void vnet_stop(void *opaque);
static uint64_t vnet_features(unsigned pairs);

static int vnet_start_threads(struct virtio_net *n)
{
	for (unsigned p = 0; p < n->npairs; p++) {
		if (vnet_thread_start(n, &n->rx[p].thread, "rx", p, vnet_rx_thread, &n->rx[p]))
			return -EAGAIN;
		n->rx[p].running = true;
		if (vnet_thread_start(n, &n->tx[p].thread, "tx", p, vnet_tx_thread, &n->tx[p]))
			return -EAGAIN;
		n->tx[p].running = true;
	}
	return 0;
}

static int vnet_start(void *opaque, uint64_t features)
{
	struct virtio_net *n = opaque;
	int ret;

	n->features = features;
	n->npairs = VNET_HAS(features, VIRTIO_NET_F_MQ) ? n->max_pairs : 1;
	n->ctrl_vqi = VNET_HAS(features, VIRTIO_NET_F_CTRL_VQ) ? 2 * n->npairs : -1u;
	vnet_filter_reset(n);
	(void)vnet_set_rx_offloads(n, features);
	n->rx_need = vnet_rx_need(n, features);
	vnet_set_pairs(n, 1);
	for (unsigned p = 0; p < n->npairs; p++) {
		n->rx[p].dead = n->tx[p].dead = false;
		n->rx[p].nheld = n->rx[p].niov = 0;
		n->rx[p].held_len = 0;
		n->rx[p].irq = false;
	}
	ret = vnet_start_threads(n);
	if (ret)
		vnet_stop(n);
	return ret;
}

/* Join the threads; chains a receive thread held for a frame that never
 * came go back to the ring (last_avail moves back over them: the driver
 * sees them untouched, as if never taken). */
static void vnet_threads_stop(struct virtio_net *n)
{
	eventfd_t v;

	eventfd_write(n->stop_fd, 1);
	for (unsigned p = 0; p < NET_MAX_QUEUES; p++) {
		struct virtq *vq = p < n->max_pairs ? virtio_queue(n->vdev, n->rx[p].vqi) : NULL;

		if (n->rx[p].running)
			pthread_join(n->rx[p].thread, NULL);
		if (n->tx[p].running)
			pthread_join(n->tx[p].thread, NULL);
		n->rx[p].running = n->tx[p].running = false;
		for (unsigned i = 0; vq && i < n->rx[p].nheld; i++)
			vq_unpop(vq);
		n->rx[p].nheld = n->rx[p].niov = 0;
		n->rx[p].held_len = 0;
	}
	while (eventfd_read(n->stop_fd, &v) == 0)
		;
}

static void vnet_stop(void *opaque)
{
	vnet_threads_stop(opaque);
}

static void vnet_quiesce(void *opaque)
{
	vnet_threads_stop(opaque);
}

static int vnet_resume(void *opaque)
{
	struct virtio_net *n = opaque;
	int ret;

	for (unsigned p = 0; p < n->npairs; p++)
		n->rx[p].dead = n->tx[p].dead = false;
	ret = vnet_start_threads(n);
	if (ret)
		vnet_threads_stop(n);
	return ret;
}

/* ---- state ----
 * Section {VNET, 1}: the link, the queue pairs in use, the receive
 * offloads in force, and the receive filter the control queue set (RX
 * modes, MAC, the unicast and multicast tables, the VLAN bitmap). The
 * negotiated features come from the transport; the TAP is the machine's. */
#define VNET_STATE_ID	       0x564e4554 /* "VNET" */
#define VNET_STATE_VERSION     1
#define VNET_SF_LINK_UP	       1
#define VNET_SF_UNI_OVERFLOW   2
#define VNET_SF_MULTI_OVERFLOW 4

static int vnet_save(void *opaque, struct state_buf *out)
{
	struct virtio_net *n = opaque;
	size_t mark = state_section_begin(out, VNET_STATE_ID, VNET_STATE_VERSION);
	const struct vnet_filter *f = &n->f;
	uint8_t modes = 0;

	pthread_mutex_lock(&n->filter_lock);
	for (unsigned i = 0; i < VNET_CTRL_RX_CMDS; i++)
		modes |= (uint8_t)(f->rx_mode[i] << i);
	state_put_u8(out, (atomic_load(&n->link_up) ? VNET_SF_LINK_UP : 0) |
				  (f->uni_overflow ? VNET_SF_UNI_OVERFLOW : 0) |
				  (f->multi_overflow ? VNET_SF_MULTI_OVERFLOW : 0));
	state_put_u16(out, (uint16_t)atomic_load(&n->curr_pairs));
	state_put_u64(out, atomic_load(&n->rx_offloads));
	state_put_u8(out, modes);
	state_put_bytes(out, f->mac, ETH_ALEN);
	state_put_u8(out, (uint8_t)f->nuni);
	state_put_u8(out, (uint8_t)f->nmulti);
	state_put_bytes(out, f->table, (size_t)(f->nuni + f->nmulti) * ETH_ALEN);
	for (unsigned i = 0; i < ARRAY_SIZE(f->vlans); i++)
		state_put_u32(out, f->vlans[i]);
	pthread_mutex_unlock(&n->filter_lock);
	state_section_end(out, mark);
	return out->error ? -ENOMEM : 0;
}

struct vnet_saved {
	bool link_up;
	unsigned pairs;
	uint64_t rx_offloads;
	struct vnet_filter f;
};

static int vnet_parse(const struct virtio_net *n, struct state_buf *in, uint64_t features,
		      bool started, struct vnet_saved *v)
{
	uint64_t offered = vnet_features(n->max_pairs) & VNET_GUEST_OFFLOADS;
	unsigned npairs = started && VNET_HAS(features, VIRTIO_NET_F_MQ) ? n->max_pairs : 1;
	uint8_t flags = state_get_u8(in), modes;

	v->link_up = flags & VNET_SF_LINK_UP;
	v->f.uni_overflow = flags & VNET_SF_UNI_OVERFLOW;
	v->f.multi_overflow = flags & VNET_SF_MULTI_OVERFLOW;
	v->pairs = state_get_u16(in);
	v->rx_offloads = state_get_u64(in);
	modes = state_get_u8(in);
	for (unsigned i = 0; i < VNET_CTRL_RX_CMDS; i++)
		v->f.rx_mode[i] = modes & (1u << i);
	state_get_bytes(in, v->f.mac, ETH_ALEN);
	v->f.nuni = state_get_u8(in);
	v->f.nmulti = state_get_u8(in);
	if (in->error ||
	    flags & ~(VNET_SF_LINK_UP | VNET_SF_UNI_OVERFLOW | VNET_SF_MULTI_OVERFLOW) ||
	    modes >> VNET_CTRL_RX_CMDS || v->f.nuni + v->f.nmulti > VNET_MAC_TABLE)
		return -EINVAL;
	state_get_bytes(in, v->f.table, (size_t)(v->f.nuni + v->f.nmulti) * ETH_ALEN);
	for (unsigned i = 0; i < ARRAY_SIZE(v->f.vlans); i++)
		v->f.vlans[i] = state_get_u32(in);
	if (in->error || v->pairs < 1 || v->pairs > (started ? npairs : n->max_pairs) ||
	    v->rx_offloads & ~offered || (started && v->rx_offloads & ~features))
		return -EINVAL;
	return 0;
}

static int vnet_load(void *opaque, struct state_buf *in, uint64_t features, bool started)
{
	struct virtio_net *n = opaque;
	struct vnet_saved *v;
	size_t end;

	if (state_section_open(in, VNET_STATE_ID, VNET_STATE_VERSION) < 0)
		return -EINVAL;
	end = state_section_body_end(in);
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	if (vnet_parse(n, in, features, started, v) || !state_section_done(in, end)) {
		free(v);
		return -EINVAL;
	}
	/* As vnet_start derives them, for the threads resume() starts. */
	n->features = started ? features : 0;
	n->npairs = VNET_HAS(n->features, VIRTIO_NET_F_MQ) ? n->max_pairs : 1;
	n->ctrl_vqi = VNET_HAS(n->features, VIRTIO_NET_F_CTRL_VQ) ? 2 * n->npairs : -1u;
	n->rx_need = vnet_rx_need(n, n->features);
	pthread_mutex_lock(&n->filter_lock);
	n->f = v->f;
	pthread_mutex_unlock(&n->filter_lock);
	atomic_store(&n->link_up, v->link_up);
	(void)vnet_set_rx_offloads(n, v->rx_offloads);
	vnet_set_pairs(n, v->pairs);
	free(v);
	return 0;
}

/* ---- lifetime ---- */

static void vnet_print_stats(struct virtio_net *n)
{
	for (unsigned p = 0; p < n->max_pairs; p++) {
		struct vnet_rxq *r = &n->rx[p];
		struct vnet_txq *t = &n->tx[p];

		fprintf(stderr,
			"kestrel: stats: virtio-net %s q%u rx_packets=%llu rx_bytes=%llu "
			"rx_dropped=%llu rx_kicks=%llu tx_packets=%llu tx_bytes=%llu tx_dropped=%llu "
			"tx_kicks=%llu\n",
			n->name, p, (unsigned long long)atomic_load(&r->packets),
			(unsigned long long)atomic_load(&r->bytes),
			(unsigned long long)atomic_load(&r->dropped),
			(unsigned long long)atomic_load(&r->kicks),
			(unsigned long long)atomic_load(&t->packets),
			(unsigned long long)atomic_load(&t->bytes),
			(unsigned long long)atomic_load(&t->dropped),
			(unsigned long long)atomic_load(&t->kicks));
	}
}

static void vnet_destroy(void *opaque)
{
	struct virtio_net *n = opaque;

	if (n->stats)
		vnet_print_stats(n);
	for (unsigned p = 0; p < NET_MAX_QUEUES; p++) {
		if (n->rx[p].wake_fd >= 0)
			close(n->rx[p].wake_fd);
		free(n->rx[p].scratch);
	}
	if (n->stop_fd >= 0)
		close(n->stop_fd);
	net_tap_close(&n->tap);
	pthread_mutex_destroy(&n->filter_lock);
	free(n);
}

static void vnet_bind(void *opaque, struct virtio_dev *vdev)
{
	((struct virtio_net *)opaque)->vdev = vdev;
}

static const struct virtio_dev_ops vnet_ops = {
	.bind = vnet_bind,
	.cfg_read = vnet_cfg_read,
	.cfg_write = vnet_cfg_write,
	.start = vnet_start,
	.stop = vnet_stop,
	.destroy = vnet_destroy,
	.quiesce = vnet_quiesce,
	.resume = vnet_resume,
	.save = vnet_save,
	.load = vnet_load,
};

static int vnet_queues_init(struct virtio_net *n)
{
	for (unsigned p = 0; p < NET_MAX_QUEUES; p++) {
		n->rx[p] = (struct vnet_rxq){ .n = n, .pair = p, .vqi = 2 * p, .wake_fd = -1 };
		n->tx[p] = (struct vnet_txq){ .n = n, .pair = p, .vqi = 2 * p + 1 };
	}
	for (unsigned p = 0; p < n->max_pairs; p++) {
		n->rx[p].wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		n->rx[p].scratch = malloc(VNET_HDR_LEN + VNET_FRAME_MAX);
		if (n->rx[p].wake_fd < 0 || !n->rx[p].scratch)
			return -ENOMEM;
	}
	return 0;
}

/* The tap is the device's from here on: closed with it, also on failure. */
static struct virtio_net *vnet_alloc(const struct virtio_net_opts *o, struct net_tap *tap)
{
	struct virtio_net *n = calloc(1, sizeof(*n));

	if (!n) {
		net_tap_close(tap);
		return NULL;
	}
	n->tap = *tap;
	snprintf(n->name, sizeof(n->name), "%s", o->name ? o->name : "net");
	memcpy(n->cfg_mac, o->mac, ETH_ALEN);
	n->vlan = o->vlan;
	n->max_pairs = o->queues;
	n->stats = o->stats;
	n->ctrl_vqi = -1u;
	atomic_store(&n->link_up, true);
	atomic_store(&n->curr_pairs, 1);
	pthread_mutex_init(&n->filter_lock, NULL);
	memcpy(n->f.mac, n->cfg_mac, ETH_ALEN);
	n->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->stop_fd < 0 || vnet_queues_init(n)) {
		vnet_destroy(n);
		return NULL;
	}
	return n;
}

static uint64_t vnet_features(unsigned pairs)
{
	uint64_t f = 0;
	static const unsigned bits[] = {
		VIRTIO_NET_F_CSUM,
		VIRTIO_NET_F_GUEST_CSUM,
		VIRTIO_NET_F_CTRL_GUEST_OFFLOADS,
		VIRTIO_NET_F_MAC,
		VIRTIO_NET_F_GUEST_TSO4,
		VIRTIO_NET_F_GUEST_TSO6,
		VIRTIO_NET_F_GUEST_ECN,
		VIRTIO_NET_F_HOST_TSO4,
		VIRTIO_NET_F_HOST_TSO6,
		VIRTIO_NET_F_HOST_ECN,
		VIRTIO_NET_F_MRG_RXBUF,
		VIRTIO_NET_F_STATUS,
		VIRTIO_NET_F_CTRL_VQ,
		VIRTIO_NET_F_CTRL_RX,
		VIRTIO_NET_F_CTRL_VLAN,
		VIRTIO_NET_F_CTRL_RX_EXTRA,
		VIRTIO_NET_F_CTRL_MAC_ADDR,
	};

	for (size_t i = 0; i < ARRAY_SIZE(bits); i++)
		f |= VIRTIO_BIT(bits[i]);
	if (pairs > 1)
		f |= VIRTIO_BIT(VIRTIO_NET_F_MQ);
	return f;
}

int virtio_net_new(const struct virtio_net_opts *o, struct net_tap *tap, struct virtio_model *out,
		   char *err, size_t errlen)
{
	struct virtio_net *n;

	if (o->queues < 1 || o->queues > NET_MAX_QUEUES || tap->nqueues != o->queues ||
	    o->vlan >= VNET_VLAN_IDS - 1) {
		net_tap_close(tap);
		snprintf(err, errlen, "%s: bad queue count or VLAN id", o->name ? o->name : "net");
		return -EINVAL;
	}
	n = vnet_alloc(o, tap);
	if (!n) {
		snprintf(err, errlen, "virtio-net: out of memory");
		return -ENOMEM;
	}
	*out = (struct virtio_model){
		.info = {
			.name = "virtio-net",
			.device_id = VIRTIO_ID_NET,
			.class_code = 0x020000,             /* network, Ethernet */
			.features = vnet_features(n->max_pairs),
			.num_queues = 2 * n->max_pairs + 1,
			.queue_size = VNET_QUEUE_SIZE,
			.cfg_size = VNET_CFG_SIZE,
		},
		.ops = &vnet_ops,
		.opaque = n,
	};
	return 0;
}

int virtio_net_set_link(struct device *dev, bool up)
{
	struct virtio_net *n = virtio_device_model(dev, VIRTIO_ID_NET);

	if (!n)
		return -ENODEV;
	if (atomic_exchange(&n->link_up, up) == up)
		return 0;
	virtio_config_changed(n->vdev);
	for (unsigned p = 0; p < n->max_pairs; p++)
		vnet_wake(n->rx[p].wake_fd);
	return 0;
}

int virtio_net_get_stats(struct device *dev, unsigned q, struct virtio_net_stats *st)
{
	struct virtio_net *n = virtio_device_model(dev, VIRTIO_ID_NET);

	if (!n || q >= n->max_pairs)
		return -ENODEV;
	*st = (struct virtio_net_stats){
		.rx_packets = atomic_load(&n->rx[q].packets),
		.rx_bytes = atomic_load(&n->rx[q].bytes),
		.rx_dropped = atomic_load(&n->rx[q].dropped),
		.tx_packets = atomic_load(&n->tx[q].packets),
		.tx_bytes = atomic_load(&n->tx[q].bytes),
		.tx_dropped = atomic_load(&n->tx[q].dropped),
	};
	return 0;
}
