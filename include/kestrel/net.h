/* Network backends for virtio-net: a Linux TAP interface (src/net/net_tap.c).
 *
 * A TAP is opened on /dev/net/tun with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
 * (plus IFF_MULTI_QUEUE for several queues): every read returns one Ethernet
 * frame, every write sends one, each preceded by a 12-byte virtio-net header
 * (TUNSETVNETHDRSZ 12, the virtio 1.x layout, little endian) which carries
 * the checksum and segmentation offloads both ways. All fds are non-blocking.
 *
 * For unit tests the same interface runs over a SOCK_SEQPACKET socket pair
 * (net_tap_from_fds): message boundaries are kept, and a frame longer than
 * the buffers is cut, as a TAP read does. */
#ifndef KESTREL_NET_H
#define KESTREL_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "kestrel/util.h"

#define NET_MAX_QUEUES	 8  /* queue pairs per NIC (TAP queues) */
#define NET_IFNAME_MAX	 15 /* IFNAMSIZ - 1 */
#define NET_VNET_HDR_LEN 12 /* struct virtio_net_hdr_v1 */

/* TUNSETOFFLOAD bits (linux/if_tun.h): what the TAP may hand us. */
#define NET_OFFLOAD_CSUM    0x01
#define NET_OFFLOAD_TSO4    0x02
#define NET_OFFLOAD_TSO6    0x04
#define NET_OFFLOAD_TSO_ECN 0x08

enum net_kind { NET_KIND_TAP, NET_KIND_SOCKET };

struct net_tap {
	enum net_kind kind;
	char ifname[NET_IFNAME_MAX + 1];
	unsigned nqueues;
	int fd[NET_MAX_QUEUES];
};

/* Open (or create) the TAP interface ifname with nqueues queues
 * (1..NET_MAX_QUEUES; more than one needs a multi-queue TAP). Errors are one
 * line in err naming the interface and what to do: no /dev/net/tun, no
 * CAP_NET_ADMIN, the TAP busy in another process, a multi-queue mismatch. */
int net_tap_open(struct net_tap *t, const char *ifname, unsigned nqueues, char *err,
		 size_t errlen) WARN_UNUSED;
/* Wrap already open SOCK_SEQPACKET fds (tests); takes ownership. */
void net_tap_from_fds(struct net_tap *t, const int *fds, unsigned nqueues);
void net_tap_close(struct net_tap *t);

/* TUNSETOFFLOAD with NET_OFFLOAD_* on every queue (no-op for sockets). */
int net_tap_set_offload(const struct net_tap *t, unsigned flags) WARN_UNUSED;
/* Multi-queue: attach or detach queue q (TUNSETQUEUE), so the kernel only
 * steers frames to the queues the guest uses. No-op for one queue. */
int net_tap_set_queue(const struct net_tap *t, unsigned q, bool enabled) WARN_UNUSED;

/* One frame (vnet header first) from queue q into iov. Returns the bytes
 * stored, at most what iov holds: a longer frame is cut and the rest lost,
 * so a caller that must tell gives one spare byte more than it can take.
 * -EAGAIN when there is none. */
ssize_t net_tap_recv(const struct net_tap *t, unsigned q, const struct iovec *iov, int iovcnt);
/* One frame (vnet header first) to queue q. Bytes written or -errno. */
ssize_t net_tap_send(const struct net_tap *t, unsigned q, const struct iovec *iov, int iovcnt);

/* ---- 802.1Q VLAN for an access port (src/net/vlan.c) ----
 * A NIC with a VLAN id is an access port of that VLAN (IEEE 802.1Q): frames
 * from the guest leave with a C-tag (TPID 0x8100, PCP 0, DEI 0, the VID)
 * after the MAC addresses, frames to the guest must carry that tag and
 * lose it, and frames the guest tags itself are refused. Every NIC model
 * (virtio-net, the emulated 21140) uses these. */
#define NET_ETH_ALEN	 6
#define NET_ETH_HLEN	 14
#define NET_VLAN_HLEN	 4
#define NET_ETH_P_8021Q	 0x8100
#define NET_ETH_P_8021AD 0x88a8
#define NET_VLAN_ID_MAX	 4094

/* The 4 tag bytes for vid (1..NET_VLAN_ID_MAX). */
void net_vlan_tag(uint8_t tag[NET_VLAN_HLEN], unsigned vid);
/* Whether the frame at eth (at least NET_ETH_HLEN bytes) carries a C- or
 * S-tag already: such a frame from the guest does not pass an access port. */
bool net_vlan_tagged(const uint8_t *eth);
/* Whether tag (the 4 bytes after the MAC addresses) is a C-tag of vid. */
bool net_vlan_match(const uint8_t *tag, unsigned vid);
/* The vnet header's csum_start and hdr_len count from the frame's start, so
 * they move with a tag: +4 for a frame that gets one, -4 for a frame whose
 * tag was removed. False when the header does not fit the change (an
 * offset that would overflow, or a checksum that starts inside the tag):
 * drop the frame. */
bool net_vnet_hdr_tag(uint8_t *hdr);
bool net_vnet_hdr_untag(uint8_t *hdr);
/* Flat frames (no vnet header): put vid's tag in after the MAC addresses
 * (*len grows by 4; -ENOSPC past cap, -EINVAL for a runt or a frame the
 * guest tagged itself), or take it out (-ENOENT unless the frame carries
 * vid's tag). */
int net_vlan_insert(uint8_t *frame, size_t *len, size_t cap, unsigned vid) WARN_UNUSED;
int net_vlan_strip(uint8_t *frame, size_t *len, unsigned vid) WARN_UNUSED;

#endif
