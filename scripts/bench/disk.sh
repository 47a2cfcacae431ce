#!/usr/bin/env bash
# scripts/bench/disk.sh [--ms MS] [--cache none|writeback] [--reps N]
# Disk benchmark, one run: the ring-3 virtio-scsi driver (tests/guest/vscsi.c,
# bench=1) pushes 4k random reads and writes and 64k sequential reads and
# writes at queue depth 1 and 32, polling the used ring, under kestrel
# (--disk ...,bus=scsi) and under QEMU's virtio-scsi (-device
# virtio-scsi-pci + scsi-hd) on the same raw image and cache mode, --reps
# times each (default 3), taking turns; then fio on the same file is the
# ceiling. Prints the median requests/s and MB/s of each, vCPU exits per
# request (kestrel from --stats, minus a run with no I/O; QEMU: n/a), the
# kestrel/QEMU ratio, and fio. (One run each was not enough: on this host
# a qd-1 phase swings by 30% from one run to the next.)
# Where this host has no /dev/kvm it all runs inside the nested rig, on a
# tmpfs image (so cache=writeback: tmpfs has no O_DIRECT). --ms: how long
# each of the 8 phases runs, per system (default 3000).
# Environment: KESTREL_BIN (a kestrel binary to use instead of building one);
# BENCH_VERBOSE=1 shows the rig's console (progress) on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/bench/lib.sh"
ms=3000 cache= reps=3
while [ $# -gt 0 ]; do
	case "$1" in
	--ms) ms=$2; shift ;;
	--cache) cache=$2; shift ;;
	--reps) reps=$2; shift ;;
	*) echo "disk.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
bench_need disk.sh fio fio
bench_kestrel guest_vscsi
out=$(mktemp)
stage=$(mktemp -d)
trap 'rm -rf "$out" "$stage"' EXIT

if [ -c /dev/kvm ]; then
	dir=$(mktemp -d "${TMPDIR:-/var/tmp}/kestrel-disk.XXXXXX")
	trap 'rm -rf "$out" "$stage" "$dir"' EXIT
	if [ -z "$cache" ]; then
		cache=writeback
		dd if=/dev/zero of="$dir/probe" bs=4096 count=1 oflag=direct 2>/dev/null && cache=none
	fi
	echo "disk.sh: on this host's /dev/kvm, $dir, cache=$cache" >&2
	QEMU_CPU=qemu64 PAYLOADS="$root/build/tests/guest" \
		sh "$root/scripts/bench/disk-inner.sh" "$ms" "$cache" "$dir" "$reps" >>"$out"
else
	cache=${cache:-writeback}
	echo "disk.sh: no /dev/kvm here: kestrel, QEMU and fio all run inside the nested rig (tmpfs image, cache=$cache)" >&2
	# fio and its libraries under /opt/fio, run through their own loader.
	bench_stage_fio "$stage/fio"
	"$root/scripts/rig.sh" ${BENCH_VERBOSE:+--verbose} --with-qemu --timeout 3000 --add "$root/scripts/bench/disk-inner.sh:/work/disk-inner.sh" \
		--add "$stage/fio:/opt/fio" -- \
		"FIO='/opt/fio/lib/ld-linux-x86-64.so.2 --library-path /opt/fio/lib /opt/fio/fio' sh /work/disk-inner.sh $ms $cache /work $reps" >>"$out"
fi

python3 - "$out" "$cache" <<'PY'
import sys
runs, kx = {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    if not f:
        continue
    if f[0] == 'kx':
        kx = dict(x.split('=') for x in f[1:] if '=' in x)
    elif f[0] in ('k', 'q', 'f') and len(f) >= 3:
        kv = dict(x.split('=') for x in f[2:] if '=' in x)
        runs.setdefault((f[0], f[1], kv.get('qd')), []).append(kv)
rows = {}
for key, kvs in runs.items():
    kvs.sort(key=lambda kv: int(kv['iops']))
    rows[key] = kvs[len(kvs) // 2]      # the median run
    if key[0] != 'f':
        print(f"{key[0]} {key[1]} qd={key[2]}: req/s " + " ".join(kv['iops'] for kv in kvs))
phases = ['randread-4k', 'randwrite-4k', 'seqread-64k', 'seqwrite-64k']
req = int(kx.get('requests') or 0)
dex = int(kx.get('exits') or 0) - int(kx.get('base') or 0)
dmm = int(kx.get('mmio') or 0) - int(kx.get('mmio_base') or 0)
epr = f"{dex / req:.4f}" if req else "n/a"
mpr = f"{dmm / req:.4f}" if req else "n/a"
print(f"\n== virtio-scsi, ring-3 polled driver, 256 MiB raw image, cache={sys.argv[2]}, medians ==")
print(f"{'phase':14s} {'qd':>3s} | {'kestrel req/s':>13s} {'MB/s':>8s} | {'QEMU req/s':>11s} {'MB/s':>8s} | {'ratio':>6s} | {'fio req/s':>10s} {'MB/s':>8s}")
ratios = []
for p in phases:
    for qd in ('1', '32'):
        k, q, fi = rows.get(('k', p, qd)), rows.get(('q', p, qd)), rows.get(('f', p, qd))
        kr = int(k['iops']) if k else 0
        qr = int(q['iops']) if q else 0
        km = int(k['kBps']) / 1024 if k else 0
        qm = int(q['kBps']) / 1024 if q else 0
        fr = int(fi['iops']) if fi else 0
        fm = int(fi['kBps']) / 1024 if fi else 0
        ratio = kr / qr if qr else 0
        if kr and qr:
            ratios.append(ratio)
        print(f"{p:14s} {qd:>3s} | {kr:13d} {km:8.1f} | {qr:11d} {qm:8.1f} | {ratio:5.2f}x | {fr:10d} {fm:8.1f}")
print(f"\nkestrel user-space vCPU exits per request: {epr} ({dex} exits beyond the no-I/O run over {req} "
      f"requests; MMIO exits per request {mpr}; {kx.get('kicks', '?')} kicks written by the guest, "
      f"all taken by ioeventfd); QEMU: n/a")
if ratios:
    g = 1.0
    for r in ratios:
        g *= r
    g **= 1 / len(ratios)
    print(f"kestrel/QEMU requests/s: geometric mean {g:.2f}x, min {min(ratios):.2f}x, max {max(ratios):.2f}x (target >= 1.1x); exits/request {epr} (target 0)")
PY
