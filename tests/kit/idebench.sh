#!/bin/sh
# The disk benchmark inside a Debian guest (scripts/bench/ide.sh): fio, shipped
# in the initrd under /opt/fio (it runs through its own loader), against the
# IDE disk (ata_piix, the primary master) and, when there is one, a
# virtio-scsi disk in the same guest: sequential 64 KiB and random 4 KiB
# reads and writes, O_DIRECT, one request at a time (IDE has no queueing),
# kestrel.bench_secs seconds each (default 3). Lines: "bench: ide|vscsi
# PHASE iops=N kBps=N", then "bench: done".
. "${0%/*}/lib.sh" # arg, wait_for
FIO="/opt/fio/lib/ld-linux-x86-64.so.2 --library-path /opt/fio/lib /opt/fio/fio"
secs=$(arg kestrel.bench_secs 3)

# by_path PATTERN: the sd disk whose sysfs path matches (ata1 / virtio).
by_path() {
	for b in /sys/block/sd*; do
		[ -e "$b" ] || continue
		case "$(readlink -f "$b")" in *$1*) echo "${b##*/}"; return 0 ;; esac
	done
	return 1
}

wait_for "by_path /ata1/ >/dev/null" 60
for who in ide:/ata1/ vscsi:/virtio; do
	d=$(by_path "${who#*:}") || continue
	wait_for "[ -b /dev/$d ]" 10
	for p in seqread-64k:read:64k seqwrite-64k:write:64k randread-4k:randread:4k randwrite-4k:randwrite:4k; do
		rw=${p#*:}
		# terse v3: read bandwidth (KiB/s) and IOPS in fields 7-8, write in 48-49.
		$FIO --name=b --filename=/dev/$d --direct=1 --ioengine=psync --rw=${rw%:*} \
			--bs=${rw#*:} --size=128M --runtime="$secs" --time_based \
			--output-format=terse --terse-version=3 2>/dev/null |
			awk -F';' -v w="${who%%:*}" -v p="${p%%:*}" \
				'{ r = p ~ /write/ ? 48 : 7; printf "bench: %s %s iops=%d kBps=%d\n", w, p, $(r + 1), $r }'
	done
done
echo "bench: done"
