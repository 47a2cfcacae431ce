#!/bin/sh
# A hostile guest tries to turn its raw disk into a VHD (issue 9; QEMU's
# CVE-2008-2004): it copies a differencing-VHD layout onto its raw disk,
# target 0 — the footer copy, dynamic header, BAT and parent locators over
# the first sectors, the footer over the last sector — and reboots. The
# worker runs with --on-reboot restart and opens its disks again; a worker
# that probed the format from the guest's bytes would now show the guest
# another host file (the "parent") in place of its disk.
# Target 1 (format=raw, writable) carries the layout, made on the host: its
# first kestrel.vhdrw_head=N sectors are the head, its last sector the
# footer; its sector 1000 remembers that the first boot is done.
# Lines: "vhdrw: boot B: t0 sdX size=SECTORS", "vhdrw: boot B: t0 sector 7:
# <text>" (written by the host), "vhdrw: wrote head: ok|failed", "vhdrw:
# wrote tail: ok|failed", "vhdrw: rebooting", "vhdrw: done".
. "${0%/*}/lib.sh" # arg, wait_for, disk_of
text() { tr -dc 'A-Za-z0-9-' | head -c 40; }
sector() { dd if="/dev/$1" bs=512 skip="$2" count=1 2>/dev/null | text; }

head=$(arg kestrel.vhdrw_head 16)
if ! wait_for "disk_of 0 >/dev/null && disk_of 1 >/dev/null" 60; then
	echo "vhdrw: targets 0 and 1 did not appear"
	exit 1
fi
d0=$(disk_of 0) d1=$(disk_of 1)
wait_for "[ -b /dev/$d0 ] && [ -b /dev/$d1 ]" 10
boot=1
[ "$(sector "$d1" 1000)" = VHDRW-BOOTED ] && boot=2
size0=$(cat "/sys/block/$d0/size") size1=$(cat "/sys/block/$d1/size")
echo "vhdrw: boot $boot: t0 $d0 size=$size0"
echo "vhdrw: boot $boot: t0 sector 7: $(sector "$d0" 7)"
if [ $boot = 2 ]; then
	echo "vhdrw: done"
	exit 0
fi
printf 'VHDRW-BOOTED' | dd of="/dev/$d1" bs=512 seek=1000 conv=sync,fsync 2>/dev/null
if dd if="/dev/$d1" of="/dev/$d0" bs=512 count="$head" conv=fsync 2>/dev/null; then
	echo "vhdrw: wrote head: ok"
else
	echo "vhdrw: wrote head: failed"
fi
if dd if="/dev/$d1" of="/dev/$d0" bs=512 skip=$((size1 - 1)) seek=$((size0 - 1)) count=1 \
	conv=fsync 2>/dev/null; then
	echo "vhdrw: wrote tail: ok"
else
	echo "vhdrw: wrote tail: failed"
fi
sync
echo "vhdrw: rebooting"
reboot -f
