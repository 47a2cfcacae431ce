#!/bin/sh
# A guest for snapshot trees (the kit's /init runs this with kestrel.run=snap
# after modprobing virtio_pci,virtio_scsi,sd_mod). Each round reads sector 0
# of SCSI target 0 past the page cache (O_DIRECT) and checks it holds the
# marker the round before wrote, which only the guest's RAM remembers: after
# the host applies a snapshot, RAM and disk both go back, so a disk that
# did not go back with RAM (or a snapshot's data lost in a merge) is a FAIL
# line. Then it writes the next marker "KESTREL-SNAP N", synced.
#   kestrel.snap_ms=MS     the period, 10 to 999 ms (default 200)
#   kestrel.snap_secs=N    run for N seconds (default 600), then return
# Lines: "snap: disk sdX", "snap: mark N ok" (read back N, then wrote N+1),
# "FAIL: snap: ...", "snap: done".
. "${0%/*}/lib.sh" # arg, wait_for, disk_of
if ! wait_for "disk_of 0 >/dev/null" 60; then
	echo "FAIL: snap: no SCSI target 0"
	exit 0
fi
disk=$(disk_of 0)
wait_for "[ -b /dev/$disk ]" 10
echo "snap: disk $disk"
ms=$(arg kestrel.snap_ms 200)
case "$ms" in [1-9][0-9] | [1-9][0-9][0-9]) ;; *) ms=200 ;; esac
period=$(printf '0.%03d' "$ms")
rounds=$(($(arg kestrel.snap_secs 600) * 1000 / ms))
n=0
while [ $n -lt "$rounds" ]; do
	if [ $n -gt 0 ]; then
		got=$(dd if="/dev/$disk" bs=512 count=1 iflag=direct 2>/dev/null | tr -d '\000' | head -n 1)
		if [ "$got" = "KESTREL-SNAP $n" ]; then
			echo "snap: mark $n ok"
		else
			echo "FAIL: snap: sector 0 holds '$got', not KESTREL-SNAP $n"
		fi
	fi
	n=$((n + 1))
	printf 'KESTREL-SNAP %d\n' "$n" |
		dd of="/dev/$disk" bs=512 count=1 conv=sync,fsync oflag=direct 2>/dev/null ||
		echo "FAIL: snap: writing KESTREL-SNAP $n"
	sleep "$period"
done
echo "snap: done"
