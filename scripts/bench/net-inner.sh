#!/bin/sh
# Inner part of scripts/bench/net.sh: runs where /dev/kvm is (the host, or
# inside the nested rig), as root. In a network namespace of its own, one
# persistent TAP (kbn0, 10.0.0.1/24); for each NIC the same payload under
# kestrel and under QEMU (-netdev tap, vhost=off), for 60-byte and
# 1514-byte frames:
#   virtio  tests/guest/vnet.c bench=tx|rx; kestrel --net tap=kbn0, QEMU
#           -device virtio-net-pci
#   tulip   tests/guest/tulip.c bench=tx|rx; kestrel --net
#           tap=kbn0,model=tulip (the 21140), QEMU -device tulip (its 21143)
#   tx  the guest keeps its transmit ring full for MS ms (to a MAC nobody
#       has, so the host drops the frames at once); frames the TAP took
#   rx  netblast (scripts/bench/netblast.c) sends COUNT frames into the TAP,
#       as fast as the VMM drains it (backing off while the TAP's queue is
#       full); the guest counts what reaches it and over how long
# Each measurement runs REPS times (default 3), kestrel and QEMU taking
# turns, so a load that comes and goes on the machine hits both alike.
# usage: net-inner.sh MS COUNT [REPS]
# Prints one line per run:
#   k|q virtio|tulip tx|rx size=N frames=N us=N fps=N mbps=N [tap=N]
# Environment: KESTREL_BIN, QEMU, QEMU_CPU (default host), PAYLOADS, NETBLAST,
# NET_BENCH_NICS (default "virtio tulip"), NET_BENCH_SIZES, NET_BENCH_DIRS,
# NET_BENCH_SYSTEMS.
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

vm() { # vm k|q NIC CMDLINE: the NIC's payload under kestrel or QEMU, in the namespace
	payload=vnet.bin kopt="" qdev=virtio-net-pci
	[ "$2" = tulip ] && payload=tulip.bin kopt=",model=tulip" qdev=tulip
	if [ "$1" = k ]; then
		$NSX timeout 300 "$K" run --kernel "$P/$payload" --debug-exit --mem 256M --cmdline "$3" --timeout 300s \
			--net "tap=kbn0,mac=$mac$kopt"
	else
		$NSX timeout 300 "$Q" -accel kvm -M pc -cpu "$QCPU" -m 256 -nodefaults -display none -serial stdio \
			-no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel "$P/$payload" \
			-append "$3" -netdev tap,id=n0,ifname=kbn0,script=no,downscript=no,vhost=off \
			-device "$qdev,netdev=n0,mac=$mac,romfile="
	fi
}

run_tx() { # run_tx SYS NIC SIZE
	o=$tmp/$1-$2-tx-$3.out
	before=$(tap_rx)
	vm "$1" "$2" "bench=tx size=$3 ms=$ms" </dev/null >"$o" 2>&1
	after=$(tap_rx)
	sed -n "s/^bench: tx \(.*\) kicks=.*/$1 $2 tx \1 tap=$((after - before))/p" "$o" | tr -d '\r'
	grep -q 'RESULT: PASS' "$o" || { echo "$1 $2 tx $3 failed:" >&2; tail -5 "$o" >&2; }
}

run_rx() { # run_rx SYS NIC SIZE
	o=$tmp/$1-$2-rx-$3.out
	: >"$o"
	vm "$1" "$2" "bench=rx count=$count" </dev/null >"$o" 2>&1 &
	vpid=$!
	n=0
	while ! grep -q 'bench: rx ready' "$o" && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
	sleep 0.2
	$NSX timeout 120 "$B" kbn0 "$mac" "$3" "$count" >"$tmp/$1-$2-blast-$3.out" 2>&1
	wait $vpid
	sed -n "s/^bench: rx size=[0-9]* \(.*\) kicks=.*/$1 $2 rx size=$3 \1/p" "$o" | tr -d '\r'
	grep -q 'RESULT: PASS' "$o" || { echo "$1 $2 rx $3 failed:" >&2; tail -5 "$o" >&2; }
	cat "$tmp/$1-$2-blast-$3.out" >&2
}

for nic in ${NET_BENCH_NICS:-virtio tulip}; do
	for size in ${NET_BENCH_SIZES:-60 1514}; do
		for dir in ${NET_BENCH_DIRS:-tx rx}; do
			i=0
			while [ $i -lt "$reps" ]; do
				for sys in ${NET_BENCH_SYSTEMS:-k q}; do
					run_$dir $sys $nic $size
				done
				i=$((i + 1))
			done
		done
	done
done
