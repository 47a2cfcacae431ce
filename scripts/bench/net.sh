#!/usr/bin/env bash
# scripts/bench/net.sh [--ms N] [--count N] [--reps N] [--nics "virtio tulip"]
# Network benchmark, one run: a ring-3 driver moves 60-byte and 1514-byte
# frames guest -> TAP (its transmit ring kept full for --ms, default 2000)
# and TAP -> guest (scripts/bench/netblast.c sends --count frames, default
# 100000, into the TAP as fast as the VMM drains it, backing off while the
# TAP's queue is full; the guest counts what arrives and over how long),
# once under kestrel and once under QEMU (-netdev tap,vhost=off), on the
# same TAP in a network namespace of its own, for each NIC:
#   virtio  tests/guest/vnet.c; kestrel's virtio-net, QEMU's virtio-net-pci
#   tulip   tests/guest/tulip.c; kestrel's emulated 21140 (model=tulip),
#           QEMU's tulip (a 21143 with the same CSRs and descriptors)
# Each measurement is repeated --reps times (default 3), kestrel and QEMU
# taking turns; prints the median frames/s and Mbit/s of each, the
# kestrel/QEMU ratio per NIC (target >= 1.0x), and kestrel's tulip against
# its virtio-net in the same guest.
# Where this host has no /dev/kvm it all runs inside the nested rig.
# Environment: KESTREL_BIN (a kestrel binary to use instead of building one);
# BENCH_VERBOSE=1 shows the rig's console (progress) on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
ms=2000 count=100000 reps=3 nics="virtio tulip"
while [ $# -gt 0 ]; do
	case "$1" in
	--ms) ms=$2; shift ;;
	--count) count=$2; shift ;;
	--reps) reps=$2; shift ;;
	--nics) nics=$2; shift ;;
	*) echo "net.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
cmake --build "$root/build" --target netblast guest_vnet guest_tulip >/dev/null
if [ -z "${KESTREL_BIN:-}" ]; then
	cmake --build "$root/build" --target kestrel >/dev/null
	export KESTREL_BIN="$root/build/kestrel"
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT

if [ -c /dev/kvm ]; then
	echo "net.sh: on this host's /dev/kvm" >&2
	[ "$(id -u)" = 0 ] || { echo "net.sh: needs root (network namespace, TAP)" >&2; exit 2; }
	NET_BENCH_NICS=$nics QEMU_CPU=qemu64 PAYLOADS="$root/build/tests/guest" NETBLAST="$root/build/netblast" \
		sh "$root/scripts/bench/net-inner.sh" "$ms" "$count" "$reps" >>"$out"
else
	echo "net.sh: no /dev/kvm here: kestrel and QEMU run inside the nested rig" >&2
	"$root/scripts/rig.sh" ${BENCH_VERBOSE:+--verbose} --with-qemu --timeout 1800 \
		--add "$root/scripts/bench/net-inner.sh:/work/net-inner.sh" \
		--add "$root/build/netblast:/work/netblast" -- \
		"NET_BENCH_NICS='$nics' NETBLAST=/work/netblast sh /work/net-inner.sh $ms $count $reps" >>"$out"
fi

python3 - "$out" <<'PY'
import sys
from statistics import geometric_mean
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 4 and f[0] in ('k', 'q') and f[1] in ('virtio', 'tulip') and f[2] in ('tx', 'rx'):
        kv = dict(x.split('=') for x in f[3:] if '=' in x)
        runs.setdefault((f[0], f[1], f[2], kv.get('size')), []).append(kv)
rows = {}
for key, kvs in runs.items():
    kvs.sort(key=lambda kv: int(kv['fps']))
    rows[key] = kvs[len(kvs) // 2]      # the median run
    print(f"{key[0]} {key[1]} {key[2]} {key[3]}: fps " + " ".join(kv['fps'] for kv in kvs))
def figs(key):
    r = rows.get(key)
    return (int(r['fps']), int(r['mbps'])) if r else (0, 0)
def table(title, left, right, pairs):
    print(f"\n== {title} ==")
    print(f"{'direction':14s} {'size':>5s} | {left + ' fps':>14s} {'Mbit/s':>8s} | {right + ' fps':>14s} {'Mbit/s':>8s} | {'ratio':>6s}")
    ratios = []
    for name, size, a, b in pairs:
        (af, am), (bf, bm) = figs(a), figs(b)
        r = af / bf if bf else 0
        if af and bf:
            ratios.append(r)
        print(f"{name:14s} {size:>5s} | {af:14d} {am:8d} | {bf:14d} {bm:8d} | {r:5.2f}x")
    if ratios:
        g = geometric_mean(ratios)
        print(f"{left}/{right} frames/s: geometric mean {g:.2f}x, min {min(ratios):.2f}x, max {max(ratios):.2f}x")
    else:
        print("no complete pair of measurements (see the messages above)")
def pairs(fa, fb):
    return [(name, size, fa(d, size), fb(d, size)) for d, name in (('tx', 'guest->TAP'), ('rx', 'TAP->guest'))
            for size in ('60', '1514')]
nics = sorted({k[1] for k in rows}, key=lambda n: n != 'virtio')
titles = {'virtio': 'virtio-net, ring-3 polled driver, TAP in a namespace, QEMU with vhost=off',
          'tulip': "DEC 21140 (kestrel) vs QEMU's tulip (21143), ring-3 polled driver, same TAP"}
for nic in nics:
    table(titles[nic], 'kestrel', 'QEMU', pairs(lambda d, s, n=nic: ('k', n, d, s), lambda d, s, n=nic: ('q', n, d, s)))
    print("(target >= 1.0x)")
if {'virtio', 'tulip'} <= set(nics):
    table("kestrel: the emulated 21140 against virtio-net in the same guest", 'tulip', 'virtio',
          pairs(lambda d, s: ('k', 'tulip', d, s), lambda d, s: ('k', 'virtio', d, s)))
PY
