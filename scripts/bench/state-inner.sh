#!/bin/sh
# Inner part of scripts/bench/state.sh: runs inside the nested rig (real
# KVM), prints one result line per measurement. The same guest under both
# VMMs: the kit's Debian (PVH vmlinux, 2 vCPUs) counting on its serial
# console every 20 ms (tests/kit/state.sh, no disk, no NIC).
#   state-inner.sh RUNS MEM...   for each MEM (e.g. 256M 1G), RUNS rounds of:
#     kestrel: boot, let it count, `kestrel ctl save` (wall time of the
#              command: pause, write, exit), then `kestrel run --restore`
#              (exec -> the guest's next counter line);
#     QEMU:    boot, let it count, HMP `migrate "exec:cat > FILE"` until
#              `info migrate` says completed, then `-incoming "exec:cat FILE"`
#              (exec -> the guest's next counter line).
# Lines: "s WHO MEM save_ms=N file_kb=N" and "r WHO MEM restore_ms=N".
# Environment: KESTREL_BIN, QEMU, QEMU_CPU, KESTREL_KIT, RUNSTAT, QEMU_FIRMWARE.
set -u
K=${KESTREL_BIN:-kestrel}
Q=${QEMU:-qemu-system-x86_64}
QCPU=${QEMU_CPU:-host}
R=${RUNSTAT:-runstat}
KIT=${KESTREL_KIT:-/kit}
W=${TMPDIR:-/tmp}/state-bench
CMDLINE="console=ttyS0 quiet panic=-1 kestrel.run=state kestrel.state_ms=20 kestrel.state_disk=0 kestrel.state_net=0"
runs=$1
shift
mkdir -p "$W"
# The kit's initrd with the repository's tests/kit/*.sh on top (as
# tests/guest-tests.sh's kit_tests_initrd does), when they were shipped.
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
file_kb() { du -k "$1" | cut -f1; }

kestrel_round() { # kestrel_round MEM
	n=bench-$$
	rm -f "$W/k.state"
	"$K" run --name "$n" --serial stdio --kernel "$KIT/vmlinux" --initrd "$INITRD" --cpus 2 \
		--mem "$1" --cmdline "$CMDLINE" --timeout 600s </dev/null >"$W/k.log" 2>&1 &
	kp=$!
	if ! wait_for 300 "$W/k.log" "state: counter 50"; then
		echo "# kestrel $1: the guest never counted"; kill -9 $kp; wait $kp; return
	fi
	t0=$(now_ms)
	"$K" ctl "$n" save "$W/k.state" >/dev/null 2>&1
	t1=$(now_ms)
	wait $kp
	echo "s kestrel $1 save_ms=$((t1 - t0)) file_kb=$(file_kb "$W/k.state")"
	echo "r kestrel $1 $("$R" --marker "state: counter" --stop-at-marker --timeout 120 -- \
		"$K" run --restore "$W/k.state" --control none --serial stdio --timeout 120s </dev/null)"
}

qemu_args() { # qemu_args MEM
	echo "-accel kvm -M pc -cpu $QCPU -m $1 -smp 2 -nodefaults -display none -no-reboot" \
		"${QEMU_FIRMWARE:+-L $QEMU_FIRMWARE} -kernel $KIT/vmlinux -initrd $INITRD"
}

qemu_round() { # qemu_round MEM
	rm -f "$W/q.state" "$W/mon" "$W/q.mon"
	mkfifo "$W/mon"
	# shellcheck disable=SC2046 # the arguments are words
	"$Q" $(qemu_args "$1") -append "$CMDLINE" -serial "file:$W/q.log" -monitor stdio \
		<"$W/mon" >"$W/q.mon" 2>&1 &
	qp=$!
	exec 3>"$W/mon"
	if ! wait_for 300 "$W/q.log" "state: counter 50"; then
		echo "# qemu $1: the guest never counted"; echo quit >&3; exec 3>&-; wait $qp; return
	fi
	t0=$(now_ms)
	echo "migrate \"exec:cat > $W/q.state\"" >&3
	while :; do
		echo "info migrate" >&3
		sleep 0.02
		has "$W/q.mon" "Migration status: completed" && break
		if has "$W/q.mon" "Migration status: failed"; then
			echo "# qemu $1: the migration failed"; break
		fi
	done
	t1=$(now_ms)
	echo quit >&3
	exec 3>&-
	wait $qp
	echo "s qemu $1 save_ms=$((t1 - t0)) file_kb=$(file_kb "$W/q.state")"
	# shellcheck disable=SC2046
	echo "r qemu $1 $("$R" --marker "state: counter" --stop-at-marker --timeout 120 -- \
		"$Q" $(qemu_args "$1") -append "$CMDLINE" -serial stdio -incoming "exec:cat $W/q.state" </dev/null)"
}

for mem in "$@"; do
	i=0
	while [ $i -lt "$runs" ]; do
		kestrel_round "$mem"
		qemu_round "$mem"
		i=$((i + 1))
	done
done
rm -rf "$W"
