#!/usr/bin/env bash
# scripts/bench/migrate.sh [--runs N] [--mem "256M 1G"] [--dirty-mb N] [--rig]
# Live migration, kestrel beside qemu-system-x86_64 -accel kvm, on THIS host
# (payload guest, not the rig's Debian): tests/guest/counter.bin counting on
# its serial port every 20 ms, 1 vCPU, for each RAM size (default 256M and
# 1G), idle and dirtying (dirty_mb=N MiB rewritten every 20 ms, default 32),
# N rounds in turns (default 3). Both migrate over tcp:127.0.0.1 between two
# processes, max downtime 30 ms, no bandwidth limit, auto-converge on:
#  kestrel: `kestrel run --incoming tcp:...` and `kestrel ctl NAME migrate`;
#           downtime = source vCPU pause -> the target's word that its vCPUs
#           start; total = the ctl command's start -> that word.
#  QEMU:    `-incoming tcp:...` and QMP migrate (downtime-limit 30,
#           max-bandwidth unlimited, auto-converge); downtime and total-time
#           as query-migrate reports them (QEMU's downtime ends when the
#           source has sent everything, before the target runs: it is the
#           smaller measure).
#  gap:     for both, the guest-visible one: the guest's serial lines are
#           stamped (CLOCK_MONOTONIC) as they come out of each process; the
#           first line on the target minus the last on the source, minus the
#           guest's median line interval (the period plus its own overhead).
# --rig: the same comparison inside the nested rig with the kit's Debian
# (2 vCPUs, counting every 20 ms; dirtying: rewriting N MiB of its RAM all the
# time, tests/kit/state.sh) over unix: sockets, and QEMU driven over HMP
# (scripts/bench/migrate-inner.sh; no gap figure there, but kestrel's
# "state sent" point, the span QEMU's own downtime measures).
# Prints medians (min-max) and the ratios kestrel / QEMU on the last lines.
# Run it under the rig lock (flock /tmp/kestrel-rig.lock): it loads both cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/bench/lib.sh"
runs=3 mems="256M 1G" dirty_mb=32 where=host
bench_opts migrate.sh --runs=runs --mem=mems --dirty-mb=dirty_mb --rig=where=rig -- "$@"
bench_need migrate.sh qemu-system-x86_64 qemu-system-x86
bench_need migrate.sh python3 python3
bench_kestrel
payload=${PAYLOAD:-$root/build/tests/guest/counter.bin}
[ -f "$payload" ] || cmake --build "$root/build" >/dev/null
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP_WORK:-}" ] && trap - EXIT && echo "work: $work" >&2
port=$((30000 + $$ % 20000))
# stamp.py FILE: stdin's lines to FILE, each after its arrival time in ns.
cat >"$work/stamp.py" <<'PY'
import sys, time
out = open(sys.argv[1], "w", buffering=1)
for line in sys.stdin.buffer:
    out.write("%d %s\n" % (time.monotonic_ns(), line.decode(errors="replace").rstrip("\r\n")))
PY
# gap.py SRC DST: the guest-visible downtime (ms) of one migration.
cat >"$work/gap.py" <<'PY'
import re, statistics, sys
def lines(f):
    return [int(l.split()[0]) for l in open(f) if re.match(r"^\d+ counter: \d+$", l.strip())]
s, d = lines(sys.argv[1]), lines(sys.argv[2])
if len(s) < 5 or not d:
    sys.exit(1)
period = statistics.median(b - a for a, b in zip(s[-20:], s[-19:]))
print("%.1f" % (max(d[0] - s[-1] - period, 0) / 1e6))
PY

wait_line() { # wait_line FILE REGEX SECONDS
	local i=0
	while ! grep -Eq -- "$2" "$1" 2>/dev/null; do
		sleep 0.05
		i=$((i + 1))
		[ $i -lt $(($3 * 20)) ] || return 1
	done
}

kestrel_once() { # kestrel_once MEM CMDLINE -> "downtime_ms total_ms"
	local n=bm-$$ t=bm-t-$$ spid tpid
	port=$((port + 1))
	# The last run's logs would satisfy the waits below at once.
	rm -f "$work"/k.log "$work"/kt.log "$work"/k.err "$work"/kt.err "$work"/k.mig
	"$KESTREL_BIN" run --name "$n" --kernel "$payload" --cmdline "$2" --mem "$1" --timeout 120s \
		</dev/null 2>"$work/k.err" | python3 "$work/stamp.py" "$work/k.log" &
	spid=$!
	pids+=($spid)
	"$KESTREL_BIN" run --name "$t" --incoming "tcp:127.0.0.1:$port" --timeout 120s \
		</dev/null 2>"$work/kt.err" | python3 "$work/stamp.py" "$work/kt.log" &
	tpid=$!
	pids+=($tpid)
	wait_line "$work/k.log" '^[0-9]+ counter: 25$' 30
	wait_line "$work/kt.err" 'waiting for a migration' 10
	"$KESTREL_BIN" ctl "$n" migrate "tcp:127.0.0.1:$port" >"$work/k.mig" 2>&1 || true
	wait_line "$work/kt.log" '^[0-9]+ counter: [0-9]+$' 10 || true
	sleep 0.2
	"$KESTREL_BIN" ctl "$t" stop >/dev/null 2>&1 || true
	wait "$spid" "$tpid" 2>/dev/null || true
	echo "$(sed -n 's/.*(downtime \([0-9]*\) ms, \([0-9]*\) ms in all.*/\1 \2/p' "$work/k.mig")" \
		"$(python3 "$work/gap.py" "$work/k.log" "$work/kt.log" || echo -1)"
}

# qmp SOCKET: QMP commands from stdin (one JSON per line); "wait-migrate"
# polls query-migrate and prints "STATUS DOWNTIME TOTAL".
cat >"$work/qmp.py" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
def cmd(c):
    f.write(json.dumps(c) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
cmd({"execute": "qmp_capabilities"})
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    c = json.loads(line)
    if c.get("execute") == "wait-migrate":
        while True:
            r = cmd({"execute": "query-migrate"})["return"]
            if r.get("status") in ("completed", "failed", "cancelled"):
                print(r.get("status"), r.get("downtime", -1), r.get("total-time", -1))
                break
            time.sleep(0.01)
        continue
    r = cmd(c)
    if "error" in r:
        print("error", r["error"], file=sys.stderr)
PY
qmp() { python3 "$work/qmp.py" "$1"; }

qemu_once() { # qemu_once MEM CMDLINE -> "downtime_ms total_ms"
	local spid tpid args
	port=$((port + 1))
	rm -f "$work"/q.log "$work"/qt.log "$work"/q.mig
	args=(-M pc -accel kvm -cpu qemu64 -m "$1" -nodefaults -display none -no-reboot
	      -kernel "$payload" -append "$2")
	rm -f "$work/qs.sock" "$work/qt.sock"
	qemu-system-x86_64 "${args[@]}" -serial stdio -pidfile "$work/qs.pid" \
		-qmp "unix:$work/qs.sock,server=on,wait=off" </dev/null 2>"$work/q.err" |
		python3 "$work/stamp.py" "$work/q.log" &
	spid=$!
	pids+=($spid)
	qemu-system-x86_64 "${args[@]}" -serial stdio -pidfile "$work/qt.pid" \
		-qmp "unix:$work/qt.sock,server=on,wait=off" -incoming "tcp:127.0.0.1:$port" \
		</dev/null 2>"$work/qt.err" | python3 "$work/stamp.py" "$work/qt.log" &
	tpid=$!
	pids+=($tpid)
	wait_line "$work/q.log" '^[0-9]+ counter: 25$' 30
	while [ ! -S "$work/qt.sock" ]; do sleep 0.05; done
	qmp "$work/qs.sock" <<EOF >"$work/q.mig"
{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "auto-converge", "state": true}]}}
{"execute": "migrate-set-parameters", "arguments": {"downtime-limit": 30, "max-bandwidth": 107374182400}}
{"execute": "migrate", "arguments": {"uri": "tcp:127.0.0.1:$port"}}
{"execute": "wait-migrate"}
EOF
	wait_line "$work/qt.log" '^[0-9]+ counter: [0-9]+$' 10 || true
	sleep 0.2
	for f in qs qt; do
		[ -s "$work/$f.pid" ] && kill "$(cat "$work/$f.pid")" 2>/dev/null || true
	done
	wait "$spid" "$tpid" 2>/dev/null || true
	rm -f "$work/qs.pid" "$work/qt.pid"
	awk '$1 == "completed" { printf "%s %s ", $2, $3 }' "$work/q.mig"
	python3 "$work/gap.py" "$work/q.log" "$work/qt.log" || echo -1
}

results=$work/results
if [ "$where" = rig ]; then
	# Debian in the nested rig: scripts/bench/migrate-inner.sh, its lines
	# "m WHO MEM LOAD downtime_ms=N total_ms=N gap_ms=N".
	"$root/scripts/rig.sh" ${BENCH_VERBOSE:+--verbose} --with-qemu --timeout 3000 \
		--add "$root/scripts/bench/migrate-inner.sh:/work/migrate-inner.sh" \
		--add "$root/tests/kit:/work/kit" \
		-- "sh /work/migrate-inner.sh $runs $dirty_mb $mems" | tee "$work/rig.out" >&2
	sed -n 's/^m \([a-z]*\) \([0-9A-Z]*\) \([a-z]*\) downtime_ms=\([0-9]*\) total_ms=\([0-9]*\) gap_ms=\(-*[0-9]*\).*/\1 \2 \3 \4 \5 \6/p' \
		"$work/rig.out" >"$results"
	runs=0 where_label="the nested rig (Debian, 2 vCPUs)"
fi
for r in $(seq "$runs"); do
	for mem in $mems; do
		for load in idle dirty; do
			cl="period_ms=20"
			[ $load = dirty ] && cl="period_ms=20 dirty_mb=$dirty_mb"
			k=$(kestrel_once "$mem" "$cl")
			q=$(qemu_once "$mem" "$cl")
			echo "run $r $mem $load kestrel ${k:-failed} qemu ${q:-failed}" >&2
			[ "$(echo "$k" | wc -w)" = 3 ] && echo "kestrel $mem $load $k" >>"$results"
			[ "$(echo "$q" | wc -w)" = 3 ] && echo "qemu $mem $load $q" >>"$results"
		done
	done
done

python3 - "$results" "${where_label:-this host (payload guest)}" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    who, mem, load, down, total, gap = line.split()
    rows.setdefault((who, mem, load, "downtime"), []).append(float(down))
    rows.setdefault((who, mem, load, "total"), []).append(float(total))
    if float(gap) >= 0:
        rows.setdefault((who, mem, load, "gap"), []).append(float(gap))
def med(k):
    v = rows.get(k)
    return (statistics.median(v), min(v), max(v), len(v)) if v else None
keys = sorted({(k[1], k[2]) for k in rows}, key=lambda x: (x[0][-1], float(x[0][:-1]), x[1]))
print("\n== live migration in %s, ms: median (min-max, n) ==" % sys.argv[2])
for mem, load in keys:
    for what in ("downtime", "gap", "total"):
        for who in ("kestrel", "qemu"):
            r = med((who, mem, load, what))
            if r:
                print(f"{what:8s} {mem:5s} {load:5s} {who:8s} {r[0]:8.1f} ({r[1]:.0f}-{r[2]:.0f}, n={r[3]})")
print()
for mem, load in keys:
    for what in ("downtime", "gap", "total"):
        k, q = med(("kestrel", mem, load, what)), med(("qemu", mem, load, what))
        if k and q and q[0] > 0:
            print(f"ratio {what} {mem} {load}: kestrel/QEMU = {k[0] / q[0]:.3f}x "
                  f"({k[0]:.0f} ms vs {q[0]:.0f} ms)")
PY
