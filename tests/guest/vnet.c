/* vnet.bin: a tiny virtio-net driver in ring 3 (virtio v1.1 4.1 modern
 * virtio-pci, 2.6 split rings, 5.1 network device), polled: no interrupt is
 * ever enabled. Runs under kestrel (--net tap=...) and QEMU (-device
 * virtio-net-pci), transitional or modern-only. The ARP, IPv4 and ICMP it
 * speaks to the host's side of the TAP are lib/netproto.c's.
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
#include "netproto.h"
#include "virtio.h"

#define VNET_MODERN	  0x1041
#define VNET_TRANSITIONAL 0x1000
/* 5.1.3 */
#define F_CSUM		  (1ull << 0)
#define F_MAC		  (1ull << 5)
#define F_MRG_RXBUF	  (1ull << 15)
#define F_STATUS	  (1ull << 16)

#define Q_RX	  0
#define Q_TX	  1
#define NQ	  2
#define NRX	  128
#define RXBUF_MAX 2048
#define NTX	  128
#define TXBUF	  2048
#define HDR	  NET_HDR_LEN

static struct vdev vd;
static uint8_t rxbuf[NRX][RXBUF_MAX] __attribute__((aligned(64)));
static uint8_t txbuf[NTX][TXBUF] __attribute__((aligned(64)));
static unsigned rx_size, tx_free[NTX], ntx_free;
static unsigned bad_nbuf, nbuf_not_one;

/* One buffer as a chain of its own at descriptor head. */
static void vq_add(struct vring *r, uint16_t head, const void *buf, uint32_t len, uint16_t flags)
{
	vq_desc(r, head, buf, len, flags, 0);
	vq_publish(r, head);
}

/* ---- the device half of the driver (netproto.h) ---- */

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
	return true;
}

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

/* The next frame (without header) into net_frame; 0 when none. Merged
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
		nbuf_not_one += nbuf != 1;
		nbuf = 1;
	}
	memcpy(net_frame, rxbuf[id] + HDR, len - HDR);
	got = len - HDR;
	rx_post(id);
	for (unsigned i = 1; i < nbuf; i++) {
		if (!vq_used(r, &id, &len) || id >= NRX || len > rx_size ||
		    got + len > sizeof(net_frame)) {
			bad_nbuf++;
			break;
		}
		memcpy(net_frame + got, rxbuf[id], len);
		got += len;
		rx_post(id);
	}
	vq_kick(r, old);
	return got;
}

static const struct net_dev_ops vnet_ops = {
	.send = tx_send,
	.recv = rx_get,
	.reclaim = tx_reclaim,
};

/* ---- benchmark ---- */

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
		net_eth_head(txbuf[i] + HDR, nobody, BENCH_TYPE);
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
	net_bench_report("tx", size, done, rdtsc() - t0, vd.kicks);
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
		else if (first ? rdtsc() - last > tsc_hz
			       : rdtsc() - start > wait_ms * tsc_hz / 1000)
			break;
	}
	net_bench_report("rx", frames ? (unsigned)(bytes / frames) : 0, frames > 1 ? frames - 1 : 0,
			 last - first, vd.kicks);
}

static void bench_rx_run(uint64_t count, uint64_t wait_ms)
{
	rx_fill();
	bench_rx(count, wait_ms);
}

static const struct net_bench vnet_bench = { bench_tx, bench_rx_run, TXBUF - HDR };

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
	if (!check(vpci_caps(&vd, VCAP_COMMON | VCAP_NOTIFY | VCAP_DEVICE),
		   "common/notify/device capabilities present"))
		return false;
	pci_conf_write16(0, vd.dev, 0, PCI_COMMAND, CMD_MEM | CMD_MASTER | CMD_INTX_OFF);
	ok = vdev_start(&vd, want, NQ);
	if (!check(ok && (vd.features & F_VERSION_1) && (vd.features & F_MAC),
		   "features negotiated: %lx", vd.features))
		return false;
	for (int i = 0; i < 6; i++)
		net.mac[i] = mmio_read8(vd.devcfg + i);
	net_print_mac("vnet: mac ", net.mac);
	gprintf("\n");
	if (vd.features & F_STATUS)
		check(mmio_read16(vd.devcfg + 6) & 1, "link up (status %x)",
		      mmio_read16(vd.devcfg + 6));
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

	net_init(&vnet_ops, "vnet");
	if (!setup())
		return check_result(GUEST_EXIT_VNET);
	if (net_bench_wanted())
		return net_bench_run(&vnet_bench, GUEST_EXIT_VNET);
	rx_fill();
	net_print_ip("vnet: ip ", net.ip);
	net_print_ip(" peer ", net.peer);
	gprintf(" rxbuf %u%s\n", rx_size, (vd.features & F_MRG_RXBUF) ? " mergeable" : "");
	net_check_arp();
	if (net.peer_known) {
		net_check_ping((unsigned)mb_cmdline_uint("pings", 3));
		net_check_udp(false);
		if (vd.features & F_CSUM)
			net_check_udp(true);
	}
	if (probe)
		net_check_probe(probe, mb_cmdline_uint("expect", 0) != 0);
	if (mb_cmdline_uint("listen_ms", 0))
		net_listen(mb_cmdline_uint("listen_ms", 0));
	check(bad_nbuf == 0, "merged buffers arrive whole (%u bad)", bad_nbuf);
	gprintf("vnet: rx frames=%u tx frames=%u kicks=%u num_buffers!=1: %u\n", net.frames,
		net.tx_frames, vd.kicks, nbuf_not_one);
	return check_result(GUEST_EXIT_VNET);
}
