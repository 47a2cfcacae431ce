#!/usr/bin/env bash
# scripts/bench/vga.sh [--reps N] [--rig]
# The std VGA with a VNC server, kestrel (--vga std --display vnc=) beside
# QEMU (-device VGA -vnc), the same guest under both, taking turns, --reps
# times each (default 3). The guest:
#   default  on this host's /dev/kvm (QEMU with -accel kvm -cpu qemu64): the
#            host payload tests/guest/vga.c, pic=vbe (640x480x32 through
#            the framebuffer BAR); bench=idle halts its CPU at the still
#            picture, bench=latency writes a 64x64 square 20 times
#   --rig    inside the nested rig: the kit's Debian with bochs-drm's
#            framebuffer console (tests/kit/fbbench.sh)
# Measured, medians of the reps:
#   idle CPU      CPU time of all the VMM's threads (schedstat) per second while
#                 the guest sits at a still screen, with no VNC client and with
#                 one connected (scripts/bench/vgabench.c)
#   screendump    one screendump through each VMM's own channel (kestrel's
#                 control socket, PNG; QEMU's human monitor, PPM), 10 in a row
#                 on one connection
#   latency       from the guest's serial line announcing a framebuffer write
#                 to the VNC update arriving at a client (tests/vnc-client.c
#                 serial-latency; 20 writes, 300 ms apart)
# The last line is the kestrel/QEMU ratios. Runs under the rig lock
# (flock /tmp/kestrel-rig.lock scripts/bench/vga.sh).
# Environment: KESTREL_BIN (a kestrel to use instead of building one),
# KESTREL_KIT (--rig: a kit with bochs and the current tests/kit), QEMU,
# BENCH_VERBOSE=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/bench/lib.sh"
reps=3 rig=0
bench_opts vga.sh --reps=reps --rig=rig=1 -- "$@"
cmake --build "$root/build" --target kestrel vnc-client vgabench guest_vga >/dev/null
export KESTREL_BIN=${KESTREL_BIN:-$root/build/kestrel}
out=$(mktemp)
stage=$(mktemp -d)
trap 'rm -rf "$out" "$stage"' EXIT
if [ $rig = 0 ]; then
	bench_need vga.sh qemu-system-x86_64 qemu-system-x86
	[ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "vga.sh: no usable /dev/kvm here (try --rig)" >&2; exit 2; }
	echo "vga.sh: on this host's /dev/kvm, the vga.bin payload" >&2
	VGA_BENCH_PAYLOAD="$root/build/tests/guest/vga.bin" QEMU_CPU=qemu64 \
		sh "$root/scripts/bench/vga-inner.sh" "$reps" "$root/build" | tee -a "$out" >&2
else
	mkdir -p "$stage/h"
	cp -a "$root/tests/kit" "$stage/h/kit"
	"$root/scripts/rig.sh" ${BENCH_VERBOSE:+--verbose} --with-qemu --timeout 3000 \
		--add "$root/scripts/bench/vga-inner.sh:/work/vga-inner.sh" \
		--add "$root/build/vnc-client:/work/h/vnc-client" --add "$root/build/vgabench:/work/h/vgabench" \
		--add "$stage/h/kit:/work/h/kit" -- "sh /work/vga-inner.sh $reps /work/h" | tee -a "$out" >&2
fi

python3 - "$out" <<'PY'
import re, sys, statistics as st
vals = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 3 or f[0] != 'e':
        continue
    who, what = f[1], f[2]
    text = " ".join(f[3:])
    for key, v in re.findall(r'([a-z_0-9]+)[= ]([0-9.]+)', text):
        vals.setdefault((who, what, key), []).append(float(v))
def med(who, what, key):
    v = vals.get((who, what, key))
    return st.median(v) if v else float('nan')
rows = [("idle CPU, no client (ms/s)", "idle_noclient", "cpu_ms_per_s"),
        ("idle CPU, client connected (ms/s)", "idle_client", "cpu_ms_per_s"),
        ("screendump (ms)", "screendump", "median"),
        ("framebuffer write -> VNC update, median (ms)", "latency", "median"),
        ("framebuffer write -> VNC update, p90 (ms)", "latency", "p90")]
ratios = []
for label, what, key in rows:
    k, q = med('kestrel', what, key), med('qemu', what, key)
    r = k / q if q else float('nan')
    ratios.append(f"{what}{'_p90' if key == 'p90' else ''}={r:.2f}")
    print(f"{label:48s} kestrel {k:9.2f}   qemu {q:9.2f}   ratio {r:.2f}")
print("kestrel/qemu: " + " ".join(ratios))
PY
