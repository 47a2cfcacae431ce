#!/bin/sh
# virtio-scsi through Debian's unmodified virtio_scsi/sd_mod (the kit's /init
# runs this with kestrel.run=vscsi after modprobing kestrel.modules). Prints
# what the guest sees; tests/guest-tests.sh asserts on these lines and on the
# image files afterwards. Disks are found by SCSI target (t0, t1, ...), not by
# sd name, which depends on probe order.
#   kestrel.vscsi_disks=N     wait for targets 0..N-1 at start (default 2)
#   kestrel.vscsi_hotplug=1   then wait for target 2 to appear and to go away
#   kestrel.vscsi_rebind=1    then unbind the controller from virtio-pci (Linux
#                             resets it and clears Bus Master Enable), bind it
#                             again and read target 1 once more
#   kestrel.vscsi_pci=1       print where Linux put the virtio functions' BARs
#                             (for pci=realloc): what it logged assigning them,
#                             its resource0, and the BAR registers now
# Lines: "vscsi: t<T> sdX size=SECTORS vendor=.. model=..", "vscsi: read t1:
# <text>" (sector 7, written by the host), "vscsi: wrote t0" after writing
# KESTREL-LINUX-PATTERN to t0's sector 100 (then sync), "vscsi: read back t0:
# <text>", "vscsi: t2 absent at start", "vscsi: added t2 sdX size=N",
# "vscsi: removed t2", "vscsi: unbound BDF bus_master=0", "vscsi: rebound BDF
# bus_master=1", "vscsi: read t1 after rebind: <text>", "vscsi: dmesg: <the
# kernel's BAR lines>", "vscsi: pci BDF resource0=START-END bar0=LO,HI",
# "vscsi: done".
. "${0%/*}/lib.sh" # arg, wait_for, disk_of
describe() { # describe WHAT T DISK
	d=/sys/block/$3
	echo "vscsi: $1 $3 size=$(cat $d/size) vendor=$(tr -d ' ' <$d/device/vendor) model=$(tr -s ' ' _ <$d/device/model)"
}
text() { tr -dc 'A-Za-z0-9-' | head -c 40; }

want=$(arg kestrel.vscsi_disks 2)
t=0
while [ $t -lt "$want" ]; do
	if wait_for "disk_of $t >/dev/null" 60; then
		describe "t$t" $t "$(disk_of $t)"
	else
		echo "vscsi: target $t did not appear"
	fi
	t=$((t + 1))
done
hot=0
[ "$(arg kestrel.vscsi_hotplug 0)" = 1 ] && hot=1
[ $hot = 1 ] && ! disk_of 2 >/dev/null && echo "vscsi: t2 absent at start"

d1=$(disk_of 1) && wait_for "[ -b /dev/$d1 ]" 10 &&
	echo "vscsi: read t1: $(dd if=/dev/$d1 bs=512 skip=7 count=1 2>/dev/null | text)"
if d0=$(disk_of 0) && wait_for "[ -b /dev/$d0 ]" 10; then
	if printf 'KESTREL-LINUX-PATTERN' | dd of=/dev/$d0 bs=512 seek=100 conv=sync,fsync 2>/dev/null; then
		sync
		echo "vscsi: wrote t0"
	fi
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
	echo "vscsi: read back t0: $(dd if=/dev/$d0 bs=512 skip=100 count=1 2>/dev/null | text)"
fi

if [ $hot = 1 ]; then
	if wait_for "disk_of 2 >/dev/null" 90; then
		new=$(disk_of 2)
		wait_for "[ -s /sys/block/$new/size ] && [ \$(cat /sys/block/$new/size) != 0 ]" 10
		describe "added t2" 2 "$new"
		if wait_for "! disk_of 2 >/dev/null" 90; then
			echo "vscsi: removed t2"
		else
			echo "vscsi: t2 was not removed"
		fi
	else
		echo "vscsi: t2 was not hot-added"
	fi
fi
if [ "$(arg kestrel.vscsi_pci 0)" = 1 ]; then
	dmesg | grep -E 'pci 0000:00:[0-9a-f]{2}\.[0-7]: (reg 0x(1[0-9a-f]|2[0-4]|30)|BAR [0-9]+|ROM)|max bus depth' |
		sed 's/^\[[^]]*\] */vscsi: dmesg: /'
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor")" = 0x1af4 ] || continue
		read -r start end _ <"$d/resource"
		regs=$(dd if="$d/config" bs=4 skip=4 count=2 2>/dev/null | od -An -tx4 | tr -s ' ' ',')
		echo "vscsi: pci ${d##*/} resource0=$start-$end bar0=${regs#,}"
	done
fi
# rebind: the controller's PCI function, found by its virtio device id (8).
# bus_master BDF: PCI_COMMAND bit 2, from the function's config space.
bus_master() {
	c=$(dd if=/sys/bus/pci/devices/$1/config bs=1 skip=4 count=1 2>/dev/null | od -An -tu1)
	echo $(((c >> 2) & 1))
}
if [ "$(arg kestrel.vscsi_rebind 0)" = 1 ]; then
	bdf=
	for f in /sys/bus/pci/drivers/virtio-pci/*/virtio*/device; do
		[ "$(cat "$f" 2>/dev/null)" = 0x0008 ] && { bdf=${f%/virtio*}; bdf=${bdf##*/}; }
	done
	if [ -z "$bdf" ]; then
		echo "vscsi: no virtio-scsi function under virtio-pci"
	else
		echo -n "$bdf" >/sys/bus/pci/drivers/virtio-pci/unbind
		wait_for "! disk_of 1 >/dev/null" 30
		echo "vscsi: unbound $bdf bus_master=$(bus_master $bdf)"
		echo -n "$bdf" >/sys/bus/pci/drivers/virtio-pci/bind
		echo "vscsi: rebound $bdf bus_master=$(bus_master $bdf)"
		if wait_for "disk_of 1 >/dev/null" 60 && d1=$(disk_of 1) && wait_for "[ -b /dev/$d1 ]" 10; then
			echo "vscsi: read t1 after rebind: $(dd if=/dev/$d1 bs=512 skip=7 count=1 2>/dev/null | text)"
		else
			echo "vscsi: target 1 did not come back after the rebind"
		fi
	fi
fi
echo "vscsi: done"
