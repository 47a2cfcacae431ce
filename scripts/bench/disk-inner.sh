#!/bin/sh
# Inner part of scripts/bench/disk.sh: runs where /dev/kvm is (the host, or
# inside the nested rig). One raw image, one cache mode, three systems:
#   kestrel  vscsi.bin bench=1 (tests/guest/vscsi.c) on --disk ...,bus=scsi
#   qemu     the same payload on -device virtio-scsi-pci + scsi-hd
#   fio      the same file from the host side: the ceiling
# usage: disk-inner.sh MS CACHE DIR [REPS]
#   MS: milliseconds per phase, each system; REPS (default 1): kestrel and
#   QEMU each run REPS times, taking turns (fio once).
# Prints one line per measurement:
#   k|q PHASE qd=N ops=N us=N iops=N kBps=N
#   f PHASE qd=N iops=N kBps=N
#   kx exits=N base=N mmio=N mmio_base=N requests=N kicks=N
#                                            (kestrel vCPU exits: the run and a ms=0 run)
# Environment: KESTREL_BIN, QEMU, QEMU_CPU (default host), PAYLOADS, FIO (a
# command, may include a loader).
set -u
K=${KESTREL_BIN:-kestrel}
Q=${QEMU:-qemu-system-x86_64}
QCPU=${QEMU_CPU:-host}
P=${PAYLOADS:-/payloads}
FIO=${FIO:-fio}
ms=$1 cache=$2 dir=$3 reps=${4:-1}
img=$dir/bench.img
out=$dir/bench-out
mkdir -p "$out"

rm -f "$img"
# conv=fsync: allocated and written back before either VMM runs (else the
# first one pays ext4's delayed allocation inside its O_DIRECT writes).
dd if=/dev/zero of="$img" bs=1M count=256 conv=fsync 2>/dev/null

# Sum of the vCPU exits kestrel counted (--stats): all kinds, or one (mmio).
exits_of() {
	sed -n 's/^kestrel: stats: vcpu[0-9]* exits: //p' "$1" | tr ' ' '\n' |
		awk -F= -v k="${2:-}" 'NF == 2 && (k == "" || $1 == k) { s += $2 } END { print s + 0 }'
}

kestrel_run() { # kestrel_run MS NAME
	"$K" run --kernel "$P/vscsi.bin" --debug-exit --mem 256M --cmdline "bench=1 ms=$1" --timeout 900s --stats \
		--disk "path=$img,bus=scsi,cache=$cache" </dev/null >"$out/$2.out" 2>"$out/$2.err"
}

qemu_run() { # qemu_run MS NAME
	timeout 900 "$Q" -accel kvm -M pc -cpu "$QCPU" -m 256 -nodefaults -display none -serial stdio -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=4 -kernel "$P/vscsi.bin" -append "bench=1 ms=$1" \
		-device virtio-scsi-pci,id=s0 -drive "if=none,file=$img,format=raw,cache=$cache,id=d0" \
		-device scsi-hd,drive=d0,bus=s0.0,scsi-id=0 </dev/null >"$out/$2.out" 2>"$out/$2.err"
}

echo "disk-inner: kestrel, no I/O (exit count baseline)" >&2
kestrel_run 0 kbase
rep=1
while [ $rep -le "$reps" ]; do
	echo "disk-inner: kestrel ($rep/$reps)" >&2
	kestrel_run "$ms" k$rep
	sed -n 's/^bench: \([a-z0-9-]*\) qd=/k \1 qd=/p' "$out/k$rep.out"
	grep -q 'RESULT: PASS' "$out/k$rep.out" || { echo "kestrel run failed:" >&2; tail -5 "$out/k$rep.out" "$out/k$rep.err" >&2; }
	echo "disk-inner: QEMU ($rep/$reps)" >&2
	qemu_run "$ms" q$rep
	sed -n 's/^bench: \([a-z0-9-]*\) qd=/q \1 qd=/p' "$out/q$rep.out"
	grep -q 'RESULT: PASS' "$out/q$rep.out" || { echo "qemu run failed:" >&2; tail -5 "$out/q$rep.out" "$out/q$rep.err" >&2; }
	rep=$((rep + 1))
done
echo "kx exits=$(exits_of "$out/k1.err") base=$(exits_of "$out/kbase.err")" \
	"mmio=$(exits_of "$out/k1.err" mmio) mmio_base=$(exits_of "$out/kbase.err" mmio)" \
	"requests=$(sed -n 's/^bench: requests=\([0-9]*\).*/\1/p' "$out/k1.out")" \
	"kicks=$(sed -n 's/^bench: requests=[0-9]* kicks=\([0-9]*\).*/\1/p' "$out/k1.out")"

echo "disk-inner: fio" >&2
direct=0
[ "$cache" = none ] && direct=1
for spec in randread-4k:randread:4k randwrite-4k:randwrite:4k seqread-64k:read:64k seqwrite-64k:write:64k; do
	name=${spec%%:*} rest=${spec#*:}
	for qd in 1 32; do
		# shellcheck disable=SC2086 # FIO may be "loader --library-path D fio"
		timeout 60 $FIO --name=bench --filename="$img" --rw="${rest%%:*}" --bs="${rest#*:}" --iodepth=$qd \
			--ioengine=io_uring --direct=$direct --runtime="${ms}ms" --time_based \
			--output-format=terse --terse-version=3 2>/dev/null |
			awk -F';' -v n="$name" -v qd=$qd '{ r = $8 + $49; b = $7 + $48;
				printf "f %s qd=%d iops=%d kBps=%d\n", n, qd, r, b }'
	done
done
