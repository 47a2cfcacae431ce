#!/usr/bin/env bash
# scripts/bench/fwboot.sh [--runs N] [--linux-runs N] [--host] [--buses "scsi ide"]
# Firmware boot benchmark (issue 11), kestrel beside qemu-system-x86_64
# -enable-kvm in one run, both with the same SeaBIOS (the rig's copy of
# Debian's bios-256k.bin) and the same images, taking turns, inside the
# nested rig (real nested SVM: real mode runs as on hardware):
#  (a) exec -> the boot sector's first line (tests/guest/bootsect.S, from a
#      1 MiB raw disk on each bus) and exec -> exit (it powers off), N boots
#      each (default 5); --host also measures (a) on this host's /dev/kvm
#      (QEMU with -cpu qemu64);
#  (b) exec -> the kit's /init line through SYSLINUX and Debian's kernel
#      (tests/fw-images.sh's disk), 2 vCPUs, N boots each (default 3; 0 or
#      no image: skipped).
# scripts/bench/fwboot-inner.sh says how each VMM runs.
# The last lines print medians and kestrel/QEMU ratios (lower is better).
# The I/O part of the IDE benchmark is scripts/bench/ide.sh.
# Environment: KESTREL_BIN (a kestrel binary instead of building one),
# BENCH_VERBOSE=1 shows the rig's console.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/bench/lib.sh"
runs=5 lruns=3 host=0 buses="scsi ide"
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs=$2; shift ;;
	--linux-runs) lruns=$2; shift ;;
	--host) host=1 ;;
	--buses) buses=$2; shift ;;
	*) echo "fwboot.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
[ -x "$root/build/runstat" ] && [ -s "$root/build/tests/guest/bootsect.bin" ] ||
	cmake --build "$root/build" --target runstat guest_bootsect >/dev/null
bench_kestrel
out=$(mktemp)
stage=$(mktemp -d)
trap 'rm -rf "$out" "$stage"' EXIT
dd if=/dev/zero of="$stage/bs.img" bs=1M count=1 2>/dev/null
dd if="$root/build/tests/guest/bootsect.bin" of="$stage/bs.img" conv=notrunc 2>/dev/null
printf '\370\003' >"$stage/sercon-port.bin"
linux=
if [ "$lruns" -gt 0 ] && "$root/tests/fw-images.sh" "$stage/img" --payloads "$root/build/tests/guest" >&2; then
	mv "$stage/img/fwlinux.img" "$stage/fwlinux.img"
	linux="; sh /work/fwboot-inner.sh -l $lruns /work/fwb $buses"
fi
rm -rf "$stage/img"

if [ "$host" = 1 ] && [ -c /dev/kvm ]; then
	echo "fwboot.sh: on this host's /dev/kvm, $runs boots each" >&2
	RUNSTAT="$root/build/runstat" FIRMWARE=/usr/share/seabios/bios-256k.bin \
		sh "$root/scripts/bench/fwboot-inner.sh" "$runs" "$stage" $buses | sed 's/^a /h /' >>"$out"
fi
echo "fwboot.sh: kestrel and QEMU inside the nested rig, $runs boots each" >&2
"$root/scripts/rig.sh" ${BENCH_VERBOSE:+--verbose} --with-qemu --timeout 3000 \
	--add "$root/scripts/bench/fwboot-inner.sh:/work/fwboot-inner.sh" \
	--add "$root/build/runstat:/usr/bin/runstat" --add "$stage:/work/fwb" -- \
	"sh /work/fwboot-inner.sh $runs /work/fwb $buses$linux" >>"$out"

python3 - "$out" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 4 or f[0] not in ('a', 'b', 'h') or f[1] not in ('kestrel', 'qemu'):
        continue
    kv = dict(x.split('=') for x in f[3:] if '=' in x)
    if kv.get('status') != '0' or float(kv.get('marker_ms', -1)) <= 0:
        print(f"skipped (no marker or status {kv.get('status')}): {line.strip()}")
        continue
    rows.setdefault((f[0], f[2], f[1]), []).append((float(kv['marker_ms']), float(kv['elapsed_ms'])))
where = {'a': 'nested rig', 'b': 'nested rig, SYSLINUX -> Linux /init', 'h': 'this host'}
what = {'a': 'boot sector', 'b': 'SYSLINUX disk', 'h': 'boot sector'}
summary = []
for tier in ('h', 'a', 'b'):
    for bus in ('scsi', 'ide'):
        k, q = rows.get((tier, bus, 'kestrel')), rows.get((tier, bus, 'qemu'))
        if not k and not q:
            continue
        print(f"\n== {where[tier]}, SeaBIOS, {what[tier]} on {bus}: exec -> marker / exit (ms) ==")
        med = {}
        for who, v in (('kestrel', k), ('qemu', q)):
            if not v:
                print(f"{who:8s} no runs")
                continue
            m = [x[0] for x in v]
            e = [x[1] for x in v]
            med[who] = (statistics.median(m), statistics.median(e))
            print(f"{who:8s} n={len(v)} marker min {min(m):7.0f} median {med[who][0]:7.0f} max {max(m):7.0f}"
                  f"   exit median {med[who][1]:7.0f}   runs {' '.join(f'{x:.0f}' for x in m)}")
        if 'kestrel' in med and 'qemu' in med:
            summary.append(f"{where[tier]} {bus}: exec->marker kestrel {med['kestrel'][0]:.0f} ms, QEMU "
                           f"{med['qemu'][0]:.0f} ms, ratio {med['kestrel'][0] / med['qemu'][0]:.2f}x")
print("\n== summary (kestrel / QEMU; lower is better) ==")
for s in summary:
    print(s)
if not summary:
    print("fwboot.sh: no pair of results")
    sys.exit(1)
PY
