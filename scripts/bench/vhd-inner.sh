#!/bin/sh
# Inner part of scripts/bench/vhd.sh: runs where /dev/kvm is (the host, or
# inside the nested rig). The disk benchmark's payload (tests/guest/vscsi.c
# bench=1: 4k random and 64k sequential reads and writes at QD 1 and 32) on:
#   k-raw     kestrel, a raw image
#   k-alloc   kestrel, a fresh dynamic VHD (writes allocate blocks; reads of
#             blocks not yet written are zeros without any file I/O)
#   k-vhd     kestrel, the same VHD again, now allocated
#   q-alloc   QEMU's vpc driver, a fresh copy of the same dynamic VHD
#   q-vhd     QEMU's vpc driver, that copy again, now allocated
# usage: vhd-inner.sh OPS CACHE DIR FRESH_VHD
# Prints "SYSTEM PHASE qd=N ops=N us=N iops=N kBps=N" lines.
# Environment: KESTREL_BIN, QEMU, QEMU_CPU (default host), PAYLOADS.
set -u
K=${KESTREL_BIN:-kestrel}
Q=${QEMU:-qemu-system-x86_64}
QCPU=${QEMU_CPU:-host}
P=${PAYLOADS:-/payloads}
ops=$1 cache=$2 dir=$3 fresh=$4
out=$dir/vhd-bench-out
mkdir -p "$out"

kestrel_run() { # image name
	"$K" run --kernel "$P/vscsi.bin" --debug-exit --mem 256M --cmdline "bench=1 ops=$ops" --timeout 1800s \
		--disk "path=$1,bus=scsi,cache=$cache" </dev/null >"$out/$2.out" 2>"$out/$2.err"
	sed -n "s/^bench: \([a-z0-9-]*\) qd=/$2 \1 qd=/p" "$out/$2.out"
	grep -q 'RESULT: PASS' "$out/$2.out" || { echo "$2: kestrel run failed:" >&2; tail -5 "$out/$2.out" "$out/$2.err" >&2; }
}

qemu_run() { # image name
	"$Q" -accel kvm -M pc -cpu "$QCPU" -m 256 -nodefaults -display none -serial stdio -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=4 -kernel "$P/vscsi.bin" -append "bench=1 ops=$ops" \
		-device virtio-scsi-pci,id=s0 -drive "if=none,file=$1,format=vpc,cache=$cache,id=d0" \
		-device scsi-hd,drive=d0,bus=s0.0,scsi-id=0 </dev/null >"$out/$2.out" 2>"$out/$2.err"
	sed -n "s/^bench: \([a-z0-9-]*\) qd=/$2 \1 qd=/p" "$out/$2.out"
	grep -q 'RESULT: PASS' "$out/$2.out" || { echo "$2: qemu run failed:" >&2; tail -5 "$out/$2.out" "$out/$2.err" >&2; }
}

rm -f "$dir/raw.img" "$dir/k.vhd" "$dir/q.vhd"
dd if=/dev/zero of="$dir/raw.img" bs=1M count=256 2>/dev/null # FRESH_VHD's size
kestrel_run "$dir/raw.img" k-raw
rm -f "$dir/raw.img"
cp "$fresh" "$dir/k.vhd"
kestrel_run "$dir/k.vhd" k-alloc
kestrel_run "$dir/k.vhd" k-vhd
rm -f "$dir/k.vhd"
cp "$fresh" "$dir/q.vhd"
qemu_run "$dir/q.vhd" q-alloc
qemu_run "$dir/q.vhd" q-vhd
rm -f "$dir/q.vhd"
