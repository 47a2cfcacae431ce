#!/usr/bin/env bash
# scripts/bench/state.sh [--runs N] [--mem "256M 1G"]
# Save and restore, kestrel beside qemu-system-x86_64 -enable-kvm, in the
# nested rig (real KVM) on the same guest: the kit's Debian counting on its
# serial console every 20 ms (tests/kit/state.sh), 2 vCPUs, for each RAM
# size (default 256M and 1G), N rounds taken in turns (default 3):
#  save:     kestrel `kestrel ctl NAME save FILE` (pause, quiesce, write,
#            rename, worker gone) vs QEMU HMP `migrate "exec:cat > FILE"`
#            until `info migrate` is completed;
#  restore:  exec of the new process -> the guest's next counter line,
#            `kestrel run --restore FILE` vs `qemu ... -incoming "exec:cat FILE"`.
# Prints medians (and min/max) and the ratios kestrel / QEMU on the last
# lines. The issue's target: restore-to-running <= 0.1x QEMU's, and not
# growing with RAM. Run it under the rig lock (flock /tmp/kestrel-rig.lock).
# Environment: BENCH_VERBOSE=1 shows the rig's console (progress) on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=3 mems="256M 1G"
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs=$2; shift ;;
	--mem) mems=$2; shift ;;
	*) echo "state.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
cmake --build "$root/build" --target kestrel runstat >/dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$root/scripts/rig.sh" ${BENCH_VERBOSE:+--verbose} --with-qemu --timeout 3000 \
	--add "$root/scripts/bench/state-inner.sh:/work/state-inner.sh" \
	--add "$root/build/runstat:/usr/bin/runstat" --add "$root/tests/kit:/work/kit" \
	-- "sh /work/state-inner.sh $runs $mems" | tee "$out" >&2

python3 - "$out" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r'^([sr]) (kestrel|qemu) (\S+) (.*)$', line.strip())
    if not m:
        continue
    kind, who, mem, rest = m.groups()
    kv = dict(x.split('=') for x in rest.split())
    if kind == 's':
        rows.setdefault(('save', mem, who), []).append(float(kv['save_ms']))
        rows.setdefault(('file', mem, who), []).append(float(kv['file_kb']))
    elif float(kv.get('marker_ms', -1)) > 0:
        rows.setdefault(('restore', mem, who), []).append(float(kv['marker_ms']))

def med(k):
    v = rows.get(k)
    return (statistics.median(v), min(v), max(v), len(v)) if v else None

mems = sorted({k[1] for k in rows}, key=lambda m: (m[-1], float(m[:-1])))
for what, unit in (('save', 'ms'), ('restore', 'ms'), ('file', 'KiB on disk')):
    print(f"\n== {what} ({unit}): median (min-max, n) ==")
    for mem in mems:
        for who in ('kestrel', 'qemu'):
            r = med((what, mem, who))
            if r:
                print(f"{what:8s} {mem:5s} {who:8s} {r[0]:9.1f} ({r[1]:.1f}-{r[2]:.1f}, n={r[3]})")
print()
for mem in mems:
    for what in ('save', 'restore'):
        k, q = med((what, mem, 'kestrel')), med((what, mem, 'qemu'))
        if k and q and q[0] > 0:
            print(f"ratio {what} {mem}: kestrel/QEMU = {k[0] / q[0]:.3f}x time "
                  f"({k[0]:.0f} ms vs {q[0]:.0f} ms)")
PY
