#!/usr/bin/env bash
# scripts/bench/boot.sh [--runs N] [--linux-runs N]
# Boot benchmark, kestrel beside qemu-system-x86_64 -enable-kvm in one run:
#  (a) exec -> exit of a payload that exits at once (the VMM's own start-up and
#      tear-down), min/median/max over N runs (default 20);
#  (b) exec -> init marker of the kit's Debian Linux, vmlinux (PVH) and bzImage,
#      2 vCPUs, 256M, N runs each (default 3) — inside the nested rig, where Linux boots;
#  (c) peak RSS of both, and kestrel's memory beyond the guest RAM it touched;
#  (d) in the rig, one PCI config read as the guest times it (tests/guest/pci.c
#      scan=2): Debian's kernel makes 16,384 of them while booting there.
# (a) runs on this host's /dev/kvm when there is one, else inside the rig too.
# The last lines print both systems' figures and kestrel/QEMU ratios.
# Environment: BENCH_VERBOSE=1 shows the rig's console (progress) on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/bench/lib.sh"
runs=20 lruns=3
bench_opts boot.sh --runs=runs --linux-runs=lruns -- "$@"
cmake --build "$root/build" --target kestrel runstat >/dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
inner=(--add "$root/scripts/bench/boot-inner.sh:/work/boot-inner.sh" --add "$root/build/runstat:/usr/bin/runstat")

if [ -c /dev/kvm ]; then
	echo "boot.sh: (a) on this host's /dev/kvm (QEMU with -cpu qemu64)" >&2
	QEMU_CPU=qemu64 KESTREL_BIN="$root/build/kestrel" RUNSTAT="$root/build/runstat" \
		PAYLOADS="$root/build/tests/guest" sh "$root/scripts/bench/boot-inner.sh" payload "$runs" >>"$out"
	"$root/scripts/rig.sh" ${BENCH_VERBOSE:+--verbose} --with-qemu "${inner[@]}" -- "sh /work/boot-inner.sh linux $lruns" >>"$out"
else
	echo "boot.sh: no /dev/kvm on this host: (a), (b) and (c) all run inside the nested rig" >&2
	"$root/scripts/rig.sh" ${BENCH_VERBOSE:+--verbose} --with-qemu --timeout 3000 "${inner[@]}" -- \
		"sh /work/boot-inner.sh payload $runs; sh /work/boot-inner.sh linux $lruns" >>"$out"
fi

python3 - "$out" <<'PY'
import re, statistics, sys
rows = {}
extra = []
cfg = {}
for line in open(sys.argv[1]):
    m = re.match(r'^([abcd]) (\w+)(?: ([A-Za-z][^\s=]*))? (\S+=.*)$', line.strip())
    if not m:
        continue
    kind, who, img, rest = m.groups()
    if kind == 'd':
        cfg[who] = int(rest.split('=')[1])
        continue
    if kind == 'c':
        extra.append(f"{who}: {rest}")
        continue
    kv = dict(x.split('=') for x in rest.split())
    if not kv.get('status', '').isdigit():
        print(f"skipped, did not exit: {line.strip()}")
        continue
    rows.setdefault((kind, img or 'exit0', who), []).append(kv)

def stat(vals):
    return min(vals), statistics.median(vals), max(vals)

print("\n== (a) exec -> exit, payload exit0.bin (ms) ==")
res = {}
for who in ('kestrel', 'qemu'):
    v = [float(r['elapsed_ms']) for r in rows.get(('a', 'exit0', who), [])]
    if v:
        res[who] = stat(v)
        print(f"{who:8s} n={len(v):2d} min {res[who][0]:8.1f} median {res[who][1]:8.1f} max {res[who][2]:8.1f}")
print("\n== (b) exec -> init marker, Debian Linux, 2 vCPUs, 256M (ms) ==")
resb = {}
for img in ('vmlinux', 'bzImage'):
    for who in ('kestrel', 'qemu'):
        v = [float(r['marker_ms']) for r in rows.get(('b', img, who), []) if float(r['marker_ms']) > 0]
        rss = [int(r['maxrss_kb']) for r in rows.get(('b', img, who), [])]
        if v:
            resb[(img, who)] = (stat(v), max(rss))
            s = resb[(img, who)][0]
            print(f"{who:8s} {img:8s} n={len(v)} min {s[0]:8.0f} median {s[1]:8.0f} max {s[2]:8.0f}   peak RSS {max(rss)/1024:7.1f} MiB")
print("\n== (c) memory ==")
for e in extra:
    print(e)
print("\n== summary (kestrel / QEMU; lower is better) ==")
if 'kestrel' in res and 'qemu' in res:
    print(f"(a) payload exec->exit median: kestrel {res['kestrel'][1]:.1f} ms, QEMU {res['qemu'][1]:.1f} ms, ratio {res['kestrel'][1]/res['qemu'][1]:.2f}x (target <= 0.3x)")
for img in ('vmlinux', 'bzImage'):
    k, q = resb.get((img, 'kestrel')), resb.get((img, 'qemu'))
    if k and q:
        print(f"(b) {img} exec->init median: kestrel {k[0][1]:.0f} ms, QEMU {q[0][1]:.0f} ms, ratio {k[0][1]/q[0][1]:.2f}x (target <= 0.7x)")
        print(f"(c) {img} peak RSS: kestrel {k[1]/1024:.1f} MiB, QEMU {q[1]/1024:.1f} MiB, ratio {k[1]/q[1]:.2f}x")
if 'kestrel' in cfg and 'qemu' in cfg:
    print(f"(d) PCI config read in the rig: kestrel {cfg['kestrel']/1000:.1f} us, QEMU {cfg['qemu']/1000:.1f} us, ratio {cfg['kestrel']/cfg['qemu']:.2f}x")
PY
