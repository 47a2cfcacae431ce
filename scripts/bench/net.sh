#!/usr/bin/env bash
# scripts/bench/net.sh [--ms N] [--count N] [--reps N]
# Network benchmark, one run: the ring-3 virtio-net driver (tests/guest/
# vnet.c, bench=tx|rx) moves 60-byte and 1514-byte frames guest -> TAP (its
# transmit ring kept full for --ms, default 2000) and TAP -> guest
# (scripts/bench/netblast.c sends --count frames, default 100000, into the
# TAP as fast as the VMM drains it, backing off while the TAP's queue is
# full; the guest counts what arrives and over how long), once under kestrel (--net tap=...)
# and once under QEMU (-netdev tap,vhost=off -device virtio-net-pci), on the
# same TAP in a network namespace of its own. Each measurement is repeated
# --reps times (default 3), kestrel and QEMU taking turns; prints the median
# frames/s and Mbit/s of each and the kestrel/QEMU ratio (target >= 1.0x).
# Where this host has no /dev/kvm it all runs inside the nested rig.
# Environment: KESTREL_BIN (a kestrel binary to use instead of building one);
# BENCH_VERBOSE=1 shows the rig's console (progress) on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
ms=2000 count=100000 reps=3
while [ $# -gt 0 ]; do
	case "$1" in
	--ms) ms=$2; shift ;;
	--count) count=$2; shift ;;
	--reps) reps=$2; shift ;;
	*) echo "net.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
cmake --build "$root/build" --target netblast guest_vnet >/dev/null
if [ -z "${KESTREL_BIN:-}" ]; then
	cmake --build "$root/build" --target kestrel >/dev/null
	export KESTREL_BIN="$root/build/kestrel"
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT

if [ -c /dev/kvm ]; then
	echo "net.sh: on this host's /dev/kvm" >&2
	[ "$(id -u)" = 0 ] || { echo "net.sh: needs root (network namespace, TAP)" >&2; exit 2; }
	QEMU_CPU=qemu64 PAYLOADS="$root/build/tests/guest" NETBLAST="$root/build/netblast" \
		sh "$root/scripts/bench/net-inner.sh" "$ms" "$count" "$reps" >>"$out"
else
	echo "net.sh: no /dev/kvm here: kestrel and QEMU run inside the nested rig" >&2
	"$root/scripts/rig.sh" ${BENCH_VERBOSE:+--verbose} --with-qemu --timeout 1800 \
		--add "$root/scripts/bench/net-inner.sh:/work/net-inner.sh" \
		--add "$root/build/netblast:/work/netblast" -- \
		"NETBLAST=/work/netblast sh /work/net-inner.sh $ms $count $reps" >>"$out"
fi

python3 - "$out" <<'PY'
import sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 3 and f[0] in ('k', 'q') and f[1] in ('tx', 'rx'):
        kv = dict(x.split('=') for x in f[2:] if '=' in x)
        runs.setdefault((f[0], f[1], kv.get('size')), []).append(kv)
rows = {}
for key, kvs in runs.items():
    kvs.sort(key=lambda kv: int(kv['fps']))
    rows[key] = kvs[len(kvs) // 2]      # the median run
    print(f"{key[0]} {key[1]} {key[2]}: fps " + " ".join(kv['fps'] for kv in kvs))
print("\n== virtio-net, ring-3 polled driver, TAP in a namespace, QEMU with vhost=off ==")
print(f"{'direction':14s} {'size':>5s} | {'kestrel fps':>11s} {'Mbit/s':>8s} | {'QEMU fps':>9s} {'Mbit/s':>8s} | {'ratio':>6s}")
ratios = []
for d, name in (('tx', 'guest->TAP'), ('rx', 'TAP->guest')):
    for size in ('60', '1514'):
        k, q = rows.get(('k', d, size)), rows.get(('q', d, size))
        kf = int(k['fps']) if k else 0
        qf = int(q['fps']) if q else 0
        km = int(k['mbps']) if k else 0
        qm = int(q['mbps']) if q else 0
        r = kf / qf if qf else 0
        if kf and qf:
            ratios.append(r)
        print(f"{name:14s} {size:>5s} | {kf:11d} {km:8d} | {qf:9d} {qm:8d} | {r:5.2f}x")
if ratios:
    g = 1.0
    for r in ratios:
        g *= r
    g **= 1 / len(ratios)
    print(f"\nkestrel/QEMU frames/s: geometric mean {g:.2f}x, min {min(ratios):.2f}x, max {max(ratios):.2f}x (target >= 1.0x)")
else:
    print("\nno complete pair of measurements (see the messages above)")
PY
