#!/bin/sh
# virtio-net through Debian's unmodified virtio_net (the kit's /init runs
# this with kestrel.run=net after modprobing kestrel.modules, e.g.
# virtio_pci,virtio_net). Configures the first Ethernet interface from the
# command line, waits for its link, pings the host's side of the TAP and,
# with kestrel.net_tcp=1, moves data both ways over TCP with busybox nc (so
# checksum and segmentation offloads are used in both directions).
#   kestrel.net_ip=A/N      our address (default 10.0.0.2/24)
#   kestrel.net_peer=B      the host's address (default 10.0.0.1)
#   kestrel.net_pings=N     echo requests (default 3)
#   kestrel.net_tcp=1       send 4 MiB to B:5001, then read B:5002 to its
#                           end (busybox nc both ways)
#   kestrel.net_mtu=N       set the interface MTU first
# Lines: "net: IF mac=M driver=D", "net: IF link up" (or "net: IF no
# carrier"), "net: ping B: R/N", "net: sent 4194304 bytes to B:5001",
# "net: received N bytes md5=X from B:5002", "net: IF rx_packets=..
# tx_packets=..", "net: done".
. "${0%/*}/lib.sh" # arg, wait_for, disk_of
first_eth() {
	for d in /sys/class/net/*; do
		[ -e "$d/device" ] && { echo "${d##*/}"; return 0; }
	done
	return 1
}

ip=$(arg kestrel.net_ip 10.0.0.2/24)
peer=$(arg kestrel.net_peer 10.0.0.1)
pings=$(arg kestrel.net_pings 3)
if ! wait_for "first_eth >/dev/null" 30; then
	echo "net: no network interface"
	exit 1
fi
dev=$(first_eth)
drv=$(basename "$(readlink /sys/class/net/$dev/device/driver)")
echo "net: $dev mac=$(cat /sys/class/net/$dev/address) driver=$drv"
mtu=$(arg kestrel.net_mtu "")
[ -n "$mtu" ] && ip link set "$dev" mtu "$mtu"
ip link set lo up
ip link set "$dev" up
if wait_for "[ \"\$(cat /sys/class/net/$dev/carrier 2>/dev/null)\" = 1 ]" 20; then
	echo "net: $dev link up"
else
	echo "net: $dev no carrier"
fi
ip addr add "$ip" dev "$dev"
got=$(ping -c "$pings" -W 5 "$peer" 2>&1 | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
echo "net: ping $peer: ${got:-0}/$pings"

if [ "$(arg kestrel.net_tcp 0)" = 1 ]; then
	# The host listens on 5001 (takes) and 5002 (gives); retry while it
	# gets ready. busybox nc quits at the end of its input, so only the
	# sending side's input ends; the receiving side reads a FIFO held open.
	# (busybox wget is no use here: the static build crashes resolving.)
	sent=0
	for i in 1 2 3 4 5; do
		if dd if=/dev/zero bs=65536 count=64 2>/dev/null | nc -w 30 "$peer" 5001; then
			sent=1
			break
		fi
		sleep 1
	done
	[ $sent = 1 ] && echo "net: sent 4194304 bytes to $peer:5001"
	mkfifo /tmp/net.hold
	for i in 1 2 3 4 5; do
		sleep 60 >/tmp/net.hold &
		hold=$!
		nc -w 30 "$peer" 5002 </tmp/net.hold >/tmp/net.in 2>/dev/null
		kill $hold 2>/dev/null
		[ -s /tmp/net.in ] && break
		sleep 1
	done
	echo "net: received $(wc -c </tmp/net.in) bytes md5=$(md5sum </tmp/net.in | cut -d' ' -f1) from $peer:5002"
fi
s=/sys/class/net/$dev/statistics
echo "net: $dev rx_packets=$(cat $s/rx_packets) tx_packets=$(cat $s/tx_packets) rx_dropped=$(cat $s/rx_dropped)"
echo "net: done"
