#!/bin/sh
# Inner part of scripts/bench/net.sh: runs where /dev/kvm is (the host, or
# inside the nested rig), as root. In a network namespace of its own, one
# persistent TAP (kbn0, 10.0.0.1/24); the same payload (tests/guest/vnet.c
# bench=tx|rx) under kestrel (--net tap=kbn0) and under QEMU (-netdev tap,
# vhost=off, -device virtio-net-pci), for 60-byte and 1514-byte frames:
#   tx  the guest keeps its transmit ring full for MS ms (to a MAC nobody
#       has, so the host drops the frames at once); frames the TAP took
#   rx  netblast (scripts/bench/netblast.c) sends COUNT frames into the TAP,
#       as fast as the VMM drains it (backing off while the TAP's queue is
#       full); the guest counts what reaches it and over how long
# Each measurement runs REPS times (default 3), kestrel and QEMU taking
# turns, so a load that comes and goes on the machine hits both alike.
# usage: net-inner.sh MS COUNT [REPS]
# Prints one line per run:
#   k|q tx|rx size=N frames=N us=N fps=N mbps=N [tap=N]
# Environment: KESTREL_BIN, QEMU, QEMU_CPU (default host), PAYLOADS, NETBLAST.
set -u
K=${KESTREL_BIN:-kestrel}
Q=${QEMU:-qemu-system-x86_64}
QCPU=${QEMU_CPU:-host}
P=${PAYLOADS:-/payloads}
B=${NETBLAST:-netblast}
ms=$1 count=$2 reps=${3:-3}
tmp=$(mktemp -d)
mac=52:54:00:12:34:56
ns=$tmp/ns
: >"$ns"
unshare --net="$ns" true || { echo "net-inner: cannot make a network namespace" >&2; exit 1; }
NSX="nsenter -n$ns"
cleanup() { umount "$ns" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
$NSX ip link set lo up
$NSX ip tuntap add mode tap name kbn0 2>/dev/null || $NSX tunctl -t kbn0 >/dev/null
$NSX ip link set kbn0 up
$NSX ip addr add 10.0.0.1/24 dev kbn0

tap_rx() { $NSX cat /proc/net/dev | awk '$1 == "kbn0:" { print $3 }'; }

vm() { # vm k|q CMDLINE: the payload under kestrel or QEMU, in the namespace
	if [ "$1" = k ]; then
		$NSX timeout 300 "$K" run --kernel "$P/vnet.bin" --debug-exit --mem 256M --cmdline "$2" --timeout 300s \
			--net "tap=kbn0,mac=$mac"
	else
		$NSX timeout 300 "$Q" -accel kvm -M pc -cpu "$QCPU" -m 256 -nodefaults -display none -serial stdio \
			-no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel "$P/vnet.bin" \
			-append "$2" -netdev tap,id=n0,ifname=kbn0,script=no,downscript=no,vhost=off \
			-device "virtio-net-pci,netdev=n0,mac=$mac,romfile="
	fi
}

run_tx() { # run_tx SYS SIZE
	before=$(tap_rx)
	vm "$1" "bench=tx size=$2 ms=$ms" </dev/null >"$tmp/$1-tx-$2.out" 2>&1
	after=$(tap_rx)
	sed -n "s/^bench: tx \(.*\) kicks=.*/$1 tx \1 tap=$((after - before))/p" "$tmp/$1-tx-$2.out" | tr -d '\r'
	grep -q 'RESULT: PASS' "$tmp/$1-tx-$2.out" || { echo "$1 tx $2 failed:" >&2; tail -5 "$tmp/$1-tx-$2.out" >&2; }
}

run_rx() { # run_rx SYS SIZE
	o=$tmp/$1-rx-$2.out
	: >"$o"
	vm "$1" "bench=rx count=$count" </dev/null >"$o" 2>&1 &
	vpid=$!
	n=0
	while ! grep -q 'bench: rx ready' "$o" && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
	sleep 0.2
	$NSX timeout 120 "$B" kbn0 "$mac" "$2" "$count" >"$tmp/$1-blast-$2.out" 2>&1
	wait $vpid
	sed -n "s/^bench: rx size=[0-9]* \(.*\) kicks=.*/$1 rx size=$2 \1/p" "$o" | tr -d '\r'
	grep -q 'RESULT: PASS' "$o" || { echo "$1 rx $2 failed:" >&2; tail -5 "$o" >&2; }
	cat "$tmp/$1-blast-$2.out" >&2
}

for size in ${NET_BENCH_SIZES:-60 1514}; do
	for dir in ${NET_BENCH_DIRS:-tx rx}; do
		i=0
		while [ $i -lt "$reps" ]; do
			for sys in ${NET_BENCH_SYSTEMS:-k q}; do
				run_$dir $sys $size
			done
			i=$((i + 1))
		done
	done
done
