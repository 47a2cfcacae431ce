#!/bin/sh
# Inner part of scripts/bench/migrate.sh --rig: runs inside the nested rig
# (real KVM), prints one result line per migration. The same guest under
# both VMMs: the kit's Debian (PVH vmlinux, 2 vCPUs) counting on its serial
# console every 20 ms (tests/kit/state.sh, no disk, no NIC), idle or
# rewriting DIRTY MiB of its RAM all the time (kestrel.state_dirty_mb).
#   migrate-inner.sh RUNS DIRTY MEM...   for each MEM and load, RUNS rounds of:
#     kestrel: a source and a `--incoming unix:` target, `kestrel ctl NAME
#              migrate` (max downtime 30 ms, auto-converge): its downtime
#              (source pause -> the target's word that its vCPUs start) and
#              total;
#     QEMU:    a source and an `-incoming unix:` target, HMP migrate with
#              auto-converge and downtime-limit 30: `info migrate`'s downtime
#              (stop -> the source's last byte sent) and total time.
#     No gap figure here: stamping each serial line in the rig's busybox
#     (a fork per line, 50 lines a second, under TCG) fell behind and
#     measured its own backlog; kestrel's "state sent" point (the span
#     QEMU's downtime measures) is printed beside it instead.
# Lines: "m WHO MEM LOAD downtime_ms=N total_ms=N gap_ms=-1" ("# ..." notes).
# Environment: KESTREL_BIN, QEMU, QEMU_CPU, KESTREL_KIT, QEMU_FIRMWARE.
set -u
K=${KESTREL_BIN:-kestrel}
Q=${QEMU:-qemu-system-x86_64}
QCPU=${QEMU_CPU:-host}
KIT=${KESTREL_KIT:-/kit}
W=${TMPDIR:-/tmp}/migrate-bench
CMDLINE="console=ttyS0 quiet panic=-1 kestrel.run=state kestrel.state_ms=20 kestrel.state_disk=0 kestrel.state_net=0"
runs=$1
dirty_mb=$2
shift 2
mkdir -p "$W"
# The kit's initrd with the repository's tests/kit/*.sh on top, as
# state-inner.sh does.
INITRD=$W/initrd.gz
cp "$KIT/initrd.cpio.gz" "$INITRD"
if [ -d /work/kit ]; then
	rm -rf "$W/kt" && mkdir -p "$W/kt/tests" && cp /work/kit/*.sh "$W/kt/tests/" &&
		chmod 0755 "$W"/kt/tests/*.sh && (cd "$W/kt" && find tests | cpio -o -H newc 2>/dev/null | gzip) >>"$INITRD"
fi

now_ms() { read -r up _ </proc/uptime; echo "${up%.*}${up#*.}0"; }
has() { grep -q -- "$2" "$1" 2>/dev/null; }
wait_for() { # wait_for SECONDS FILE PATTERN
	t=$(($1 * 20))
	while [ $t -gt 0 ]; do
		has "$2" "$3" && return 0
		sleep 0.05
		t=$((t - 1))
	done
	return 1
}
cmdline() { # cmdline LOAD
	if [ "$1" = dirty ]; then echo "$CMDLINE kestrel.state_dirty_mb=$dirty_mb"; else echo "$CMDLINE"; fi
}
ready() { # ready LOG LOAD: the guest counts (and dirties)
	wait_for 300 "$1" "state: counter 50" || return 1
	[ "$2" != dirty ] || wait_for 60 "$1" "state: dirtying"
}

kestrel_round() { # kestrel_round MEM LOAD
	n=mb-$$ t=mb-t-$$
	rm -f "$W"/k*.log "$W"/kt.err "$W"/k.mig "$W/k.sock"
	"$K" run --name "$n" --serial stdio --kernel "$KIT/vmlinux" --initrd "$INITRD" --cpus 2 \
		--mem "$1" --cmdline "$(cmdline "$2")" --timeout 900s </dev/null 2>"$W/k.err" >"$W/k.log" &
	"$K" run --name "$t" --serial stdio --incoming "unix:$W/k.sock" --timeout 900s </dev/null \
		2>"$W/kt.err" >"$W/kt.log" &
	if ! ready "$W/k.log" "$2" || ! wait_for 30 "$W/kt.err" "waiting for a migration"; then
		echo "# kestrel $1 $2: the guest never counted"
		"$K" ctl "$n" stop >/dev/null 2>&1
		"$K" ctl "$t" stop >/dev/null 2>&1
		wait
		return
	fi
	"$K" ctl "$n" migrate "unix:$W/k.sock" >"$W/k.mig" 2>&1
	wait_for 60 "$W/kt.log" "state: counter"
	sleep 0.5
	"$K" ctl "$t" stop >/dev/null 2>&1
	"$K" ctl "$n" stop >/dev/null 2>&1
	wait
	d=$(sed -n 's/.*(downtime \([0-9]*\) ms, \([0-9]*\) ms in all.*/\1 \2/p' "$W/k.mig")
	if [ -z "$d" ]; then
		echo "# kestrel $1 $2: $(tail -n 1 "$W/k.mig")"
		return
	fi
	set -- "$1" "$2" $d
	echo "m kestrel $1 $2 downtime_ms=$3 total_ms=$4 gap_ms=-1"
	echo "# kestrel $1 $2: state sent $(sed -n 's/.*state sent \([0-9]*\) ms into the pause.*/\1/p' "$W/k.mig") ms into the pause (QEMU's downtime measures this span)"
}

qemu_args() { # qemu_args MEM
	echo "-accel kvm -M pc -cpu $QCPU -m $1 -smp 2 -nodefaults -display none -no-reboot" \
		"${QEMU_FIRMWARE:+-L $QEMU_FIRMWARE} -kernel $KIT/vmlinux -initrd $INITRD"
}

qemu_round() { # qemu_round MEM LOAD
	rm -f "$W"/q*.log "$W"/q*.pid "$W/q.mon" "$W/mon.in" "$W/mon.out" "$W/q.sock"
	mkfifo "$W/mon.in" "$W/mon.out"
	# The source's monitor on two FIFOs (QEMU opens them read-write: no
	# blocking), its serial on stdout; the target has no monitor.
	# shellcheck disable=SC2046 # the arguments are words
	"$Q" $(qemu_args "$1") -append "$(cmdline "$2")" -serial stdio -monitor "pipe:$W/mon" \
		-pidfile "$W/qs.pid" </dev/null 2>"$W/q.err" >"$W/q.log" &
	# shellcheck disable=SC2046
	"$Q" $(qemu_args "$1") -append "$(cmdline "$2")" -serial stdio -monitor none \
		-pidfile "$W/qt.pid" -incoming "unix:$W/q.sock" </dev/null 2>"$W/qt.err" \
		>"$W/qt.log" &
	cat "$W/mon.out" >"$W/q.mon" &
	exec 3>"$W/mon.in"
	if ready "$W/q.log" "$2"; then
		echo "migrate_set_capability auto-converge on" >&3
		echo "migrate_set_parameter downtime-limit 30" >&3
		echo "migrate_set_parameter max-bandwidth 100G" >&3
		echo "migrate -d unix:$W/q.sock" >&3
		i=0
		while [ $i -lt 1200 ]; do
			echo "info migrate" >&3
			sleep 0.1
			has "$W/q.mon" "Migration status: completed" && break
			if has "$W/q.mon" "Migration status: failed"; then
				echo "# qemu $1 $2: the migration failed"
				break
			fi
			i=$((i + 1))
		done
		wait_for 60 "$W/qt.log" "state: counter"
		sleep 0.5
	else
		echo "# qemu $1 $2: the guest never counted"
	fi
	echo quit >&3
	exec 3>&-
	for f in qs qt; do
		[ -s "$W/$f.pid" ] && kill "$(cat "$W/$f.pid")" 2>/dev/null
	done
	pkill -f "cat $W/mon.out" 2>/dev/null
	wait
	d=$(sed -n 's/^downtime: \([0-9]*\) ms.*/\1/p' "$W/q.mon" | tail -n 1)
	tt=$(sed -n 's/^total time: \([0-9]*\) ms.*/\1/p' "$W/q.mon" | tail -n 1)
	if [ -z "$d" ] || [ -z "$tt" ]; then
		echo "# qemu $1 $2: no figures"
		return
	fi
	echo "m qemu $1 $2 downtime_ms=$d total_ms=$tt gap_ms=-1"
}

for mem in "$@"; do
	for load in idle dirty; do
		i=0
		while [ $i -lt "$runs" ]; do
			kestrel_round "$mem" $load
			qemu_round "$mem" $load
			i=$((i + 1))
		done
	done
done
rm -rf "$W"
