#!/bin/sh
# A guest for saving and restoring (the kit's /init runs this with
# kestrel.run=state after modprobing kestrel.modules, e.g.
# virtio_pci,virtio_scsi,sd_mod,virtio_net). Brings the first Ethernet
# interface up at kestrel.net_ip (default 10.0.0.2/24) when there is one,
# then counts: every kestrel.state_ms (default 500) "state: counter N" on the console, then
# the line "KESTREL-LOG N" written into sector N of SCSI target 0 and synced
# to the disk (dd conv=fsync: the write and a SYNCHRONIZE CACHE), then
# "state: synced N". The host saves and restores the VM meanwhile and checks
# that the count goes on without a reboot, that every line the guest called
# synced is on the disk, and that the guest answers pings again.
#   kestrel.state_secs=N   count for N seconds (default 300), then return
#   kestrel.state_ms=MS    the period, 10 to 999 ms (default 500)
#   kestrel.state_disk=0   no disk log
#   kestrel.state_net=0    no network
#   kestrel.state_dirty_mb=N  meanwhile rewrite N MiB of RAM (a tmpfs file,
#                          over and over: a guest that dirties memory fast,
#                          for live migration)
# Lines: "state: IF up ADDR", "state: disk sdX", "state: counter N",
# "state: synced N", "state: done".
. "${0%/*}/lib.sh" # arg, wait_for, disk_of
first_eth() {
	for d in /sys/class/net/*; do
		[ -e "$d/device" ] && { echo "${d##*/}"; return 0; }
	done
	return 1
}

if [ "$(arg kestrel.state_net 1)" = 1 ] && wait_for "first_eth >/dev/null" 10; then
	dev=$(first_eth)
	ip link set lo up
	ip link set "$dev" up
	ip addr add "$(arg kestrel.net_ip 10.0.0.2/24)" dev "$dev"
	echo "state: $dev up $(arg kestrel.net_ip 10.0.0.2/24)"
fi
disk=
if [ "$(arg kestrel.state_disk 1)" = 1 ] && wait_for "disk_of 0 >/dev/null" 60; then
	disk=$(disk_of 0)
	wait_for "[ -b /dev/$disk ]" 10
	echo "state: disk $disk"
fi
dirty=$(arg kestrel.state_dirty_mb 0)
case "$dirty" in [1-9] | [1-9][0-9] | [1-9][0-9][0-9]) ;; *) dirty=0 ;; esac
if [ "$dirty" != 0 ]; then
	# In the initramfs (RAM). Not zeros: a VMM must not get away with
	# sending zero pages cheaply.
	mkdir -p /tmp/dirty
	head -c $((dirty << 20)) /dev/urandom >/tmp/dirty/src
	(while :; do dd if=/tmp/dirty/src of=/tmp/dirty/dst bs=1M conv=notrunc 2>/dev/null; done) &
	echo "state: dirtying $dirty MiB"
fi
secs=$(arg kestrel.state_secs 300)
ms=$(arg kestrel.state_ms 500)
case "$ms" in [1-9][0-9] | [1-9][0-9][0-9]) ;; *) ms=500 ;; esac
period=$(printf '0.%03d' "$ms")
n=0
while [ $n -lt $((secs * 1000 / ms)) ]; do
	n=$((n + 1))
	echo "state: counter $n"
	if [ -n "$disk" ]; then
		printf 'KESTREL-LOG %d\n' "$n" |
			dd of="/dev/$disk" bs=512 seek="$n" count=1 conv=sync,fsync 2>/dev/null &&
			echo "state: synced $n"
	fi
	sleep "$period"
done
echo "state: done"
