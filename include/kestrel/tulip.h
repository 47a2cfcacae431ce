/* The emulated DEC 21140A "Tulip" Fast Ethernet controller (PCI 1011:0009):
 * Hyper-V's legacy network adapter, the NIC nearly every OS has a driver
 * for. Frames go to and come from a TAP (kestrel/net.h), with the same
 * per-NIC 802.1Q access port as virtio-net. Registers in an I/O BAR (0)
 * and a memory BAR (1); descriptors walked and frames moved on the NIC's
 * own I/O thread, never by a vCPU; guest memory only through the
 * function's bus-master path (nothing moves while Bus Master Enable is
 * clear); INTA# level-triggered. The serial ROM carries the MAC address and
 * a media table; an MII PHY and a general-purpose pin report the link
 * (tulip_set_link). Files: devices/emulated/tulip*.c. */
#ifndef KESTREL_TULIP_H
#define KESTREL_TULIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/device.h"
#include "kestrel/net.h"

struct vm;
struct pci_bus;
struct pci_dev;

#define TULIP_VENDOR 0x1011 /* Digital Equipment Corporation */
#define TULIP_DEVICE 0x0009 /* 21140 / 21140A */

struct tulip_opts {
	const char *name; /* for messages and stats: "net0" */
	uint8_t mac[6];
	unsigned vlan; /* 1..4094, 0: none */
	bool stats;    /* print the counters when destroyed */
};

/* Where the function lives: function 0 of slot on the host's bus 0, or
 * (unit tests) on a bus of the caller's. Guest memory, INTx routing and the
 * buses the BARs go on are the PCI bus's; vm (NULL in unit tests) is for
 * the ioeventfds on the poll demands. */
struct tulip_board {
	struct vm *vm;
	struct device *pci_host;
	struct pci_bus *bus; /* when pci_host is NULL */
	int slot;
};

/* Create the NIC serving tap (one queue; the device owns the fds from now
 * on, also on failure). One error line in err. */
int tulip_create(const struct tulip_board *b, const struct tulip_opts *o, struct net_tap *tap,
		 struct device **out, char *err, size_t errlen) WARN_UNUSED;
/* The PCI function of a tulip device, or NULL for another device. */
struct pci_dev *tulip_pci(struct device *dev);

/* Link up or down: the PHY's link status, the link-sense pin, and frames
 * (none go either way while it is down). -ENODEV for another device. */
int tulip_set_link(struct device *dev, bool up) WARN_UNUSED;

struct tulip_stats {
	uint64_t rx_packets, rx_bytes, rx_dropped, rx_missed;
	uint64_t tx_packets, tx_bytes, tx_dropped, kicks;
};
int tulip_get_stats(struct device *dev, struct tulip_stats *st) WARN_UNUSED;

#endif
