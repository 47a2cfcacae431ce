#!/usr/bin/env bash
# scripts/bench/ide.sh [--secs N] [--reps N]
# Emulated IDE benchmark, kestrel beside QEMU in one run, inside the nested
# rig (where Debian's kernel boots; scripts/bench/ide-inner.sh):
#  (a) TODO, with firmware boot (--firmware, SeaBIOS): exec -> boot-sector
#      marker from an IDE disk, both VMMs. Not measured yet: kestrel boots
#      kernels directly only.
#  (b) the kit's Debian guest (direct kernel boot, same vmlinux and initrd in
#      both) runs fio on its IDE disk through ata_piix (bus-master DMA,
#      MWDMA2, one request at a time): sequential 64 KiB and random 4 KiB
#      reads and writes, O_DIRECT, --secs seconds each (default 3), --reps
#      boots of each VMM taking turns (default 3); medians printed, and
#      kestrel/QEMU per phase (target >= 1.0x);
#  (c) in the same guests, the same phases on a virtio-scsi disk: the seed's
#      claim as a ratio, virtio-scsi / IDE (expected several times).
# Images: 256 MiB raw on the rig's tmpfs, cache=writeback in both VMMs.
# The last line prints the ratios. Environment: KESTREL_BIN (a kestrel
# binary instead of building one); BENCH_VERBOSE=1 shows the rig's console.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/bench/lib.sh"
secs=3 reps=3
while [ $# -gt 0 ]; do
	case "$1" in
	--secs) secs=$2; shift ;;
	--reps) reps=$2; shift ;;
	*) echo "ide.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
bench_need ide.sh fio fio
bench_need ide.sh cpio cpio
bench_kestrel
kit=${KESTREL_KIT:-$root/.kit}
[ -s "$kit/initrd.cpio.gz" ] && [ -s "$kit/modules.cpio.gz" ] ||
	{ echo "ide.sh: no guest kit in $kit (scripts/guest-kit.sh)" >&2; exit 2; }
out=$(mktemp)
stage=$(mktemp -d)
trap 'rm -rf "$out" "$stage"' EXIT

# The guest's initrd: the kit's, its modules, the repository's tests/kit as
# /tests, and fio with its libraries as /opt/fio.
mkdir -p "$stage/root/tests"
bench_stage_fio "$stage/root/opt/fio"
cp "$root"/tests/kit/*.sh "$stage/root/tests/" && chmod 0755 "$stage"/root/tests/*.sh
cat "$kit/initrd.cpio.gz" "$kit/modules.cpio.gz" >"$stage/initrd-bench.gz"
(cd "$stage/root" && find opt tests | cpio -o -H newc 2>/dev/null | gzip) >>"$stage/initrd-bench.gz"

echo "ide.sh: kestrel and QEMU inside the nested rig, $reps boots each, ${secs}s per phase" >&2
"$root/scripts/rig.sh" ${BENCH_VERBOSE:+--verbose} --with-qemu --timeout 3000 \
	--add "$root/scripts/bench/ide-inner.sh:/work/ide-inner.sh" \
	--add "$stage/initrd-bench.gz:/work/initrd-bench.gz" -- \
	"sh /work/ide-inner.sh $secs $reps /work" >>"$out"

python3 - "$out" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 4 or f[0] not in ('k', 'q') or f[1] not in ('ide', 'vscsi'):
        continue
    kv = dict(x.split('=') for x in f[3:] if '=' in x)
    runs.setdefault((f[0], f[1], f[2]), []).append((int(kv.get('iops', 0)), int(kv.get('kBps', 0))))
def med(key):
    v = runs.get(key)
    if not v:
        return 0, 0
    v.sort()
    return v[len(v) // 2]
phases = ['seqread-64k', 'seqwrite-64k', 'randread-4k', 'randwrite-4k']
def gmean(xs):
    g = 1.0
    for x in xs:
        g *= x
    return g ** (1 / len(xs)) if xs else 0
print("\n== (b) IDE through Debian's ata_piix (DMA), fio O_DIRECT qd 1, medians ==")
print(f"{'phase':14s} | {'kestrel IOPS':>12s} {'MB/s':>7s} | {'QEMU IOPS':>10s} {'MB/s':>7s} | {'ratio':>6s} | runs (kestrel IOPS)")
kq = []
for p in phases:
    (ki, kb), (qi, qb) = med(('k', 'ide', p)), med(('q', 'ide', p))
    r = ki / qi if qi else 0
    if ki and qi:
        kq.append(r)
    allk = ' '.join(str(i) for i, _ in sorted(runs.get(('k', 'ide', p), [])))
    print(f"{p:14s} | {ki:12d} {kb / 1024:7.1f} | {qi:10d} {qb / 1024:7.1f} | {r:5.2f}x | {allk}")
print("\n== (c) virtio-scsi in the same guests, medians, and virtio-scsi / IDE ==")
print(f"{'phase':14s} | {'kestrel IOPS':>12s} {'vs/IDE':>7s} | {'QEMU IOPS':>10s} {'vs/IDE':>7s}")
kv_, qv_ = [], []
for p in phases:
    (ki, _), (qi, _) = med(('k', 'ide', p)), med(('q', 'ide', p))
    (kv, _), (qv, _) = med(('k', 'vscsi', p)), med(('q', 'vscsi', p))
    kr = kv / ki if ki else 0
    qr = qv / qi if qi else 0
    if kr:
        kv_.append(kr)
    if qr:
        qv_.append(qr)
    print(f"{p:14s} | {kv:12d} {kr:6.1f}x | {qv:10d} {qr:6.1f}x")
print("\n(a) boot-sector marker: not measured (needs --firmware; TODO)")
if kq:
    print(f"ide.sh: IDE kestrel/QEMU geometric mean {gmean(kq):.2f}x (min {min(kq):.2f}x, max {max(kq):.2f}x; "
          f"target >= 1.0x); virtio-scsi/IDE in the same guest: kestrel {gmean(kv_):.1f}x, QEMU {gmean(qv_):.1f}x")
else:
    print("ide.sh: no results (see the rig's output above)")
    sys.exit(1)
PY
