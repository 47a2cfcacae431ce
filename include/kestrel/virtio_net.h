/* virtio-net (virtio v1.1 5.1) on virtio-pci, backed by a TAP interface
 * (kestrel/net.h). Receive and transmit run on the device's own I/O threads,
 * one of each per queue pair; the guest's buffers go to readv/writev on the
 * TAP directly. Optional per-NIC 802.1Q VLAN: frames from the guest leave
 * tagged with the NIC's VLAN, and only frames of that VLAN reach the guest,
 * untagged (an access port). */
#ifndef KESTREL_VIRTIO_NET_H
#define KESTREL_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/device.h"
#include "kestrel/net.h"
#include "kestrel/virtio.h"

struct virtio_net_opts {
	const char *name; /* for messages and stats: "net0" */
	uint8_t mac[6];
	unsigned vlan;	 /* 1..4094, 0: none */
	unsigned queues; /* queue pairs, 1..NET_MAX_QUEUES (MQ when > 1) */
	bool stats;	 /* print per-queue counters when destroyed */
};

/* The NIC model (the machine puts it behind a transport: struct
 * virtio_model in kestrel/virtio.h), serving tap (its nqueues must equal
 * o->queues; the device owns the fds from now on, also on failure). One
 * error line in err. */
int virtio_net_new(const struct virtio_net_opts *o, struct net_tap *tap, struct virtio_model *out,
		   char *err, size_t errlen) WARN_UNUSED;

/* Link up or down (5.1.4 status VIRTIO_NET_S_LINK_UP), with a configuration
 * interrupt. While down, frames from the guest are dropped and none are
 * delivered to it. -ENODEV when dev is not a virtio-net device. */
int virtio_net_set_link(struct device *dev, bool up) WARN_UNUSED;

/* Counters of queue pair q (for tests and the control socket). */
struct virtio_net_stats {
	uint64_t rx_packets, rx_bytes, rx_dropped;
	uint64_t tx_packets, tx_bytes, tx_dropped;
};
int virtio_net_get_stats(struct device *dev, unsigned q, struct virtio_net_stats *st) WARN_UNUSED;

#endif
