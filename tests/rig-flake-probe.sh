#!/bin/sh
# The nested rig's flake, measured without kestrel-specific load: counter.bin
# (2 vCPUs, 100 lines 20 ms apart) under kestrel and under QEMU, N runs each
# in turn, while a shell loop starts a process every 50 ms in the outer VM.
# A run fails when the guest does not reach "counter: done". Run it inside
# the rig (QEMU copied in):
#   scripts/rig.sh --with-qemu --timeout 1400 \
#     --add tests/rig-flake-probe.sh:/work/probe.sh -- "sh /work/probe.sh"
# Measured 2026-12-05: with the loop, kestrel's and QEMU's guests both
# triple-fault now and then (QEMU with -no-reboot just exits 0 early), and the
# outer kernel panicked with "corrupted stack end detected inside scheduler"
# in a kestrel thread twice and in a qemu-system-x86 thread once. Without the
# loop: 0 of 100 runs failed (kestrel 1 and 2 vCPUs, QEMU 1 and 2 vCPUs).
# Environment: N (runs per round, default 25), ROUNDS (default "k2 q2 k2 q2"),
# CHURN=0 to leave the process loop out.
N=${N:-25}
ROUNDS=${ROUNDS:-"k2 q2 k2 q2"}
P=${PAYLOADS:-/payloads}
args="period_ms=20 count=100"
run_k() {
	kestrel run --kernel "$P/counter.bin" --debug-exit --cmdline "$args" --cpus "$1" --timeout 60s \
		--serial stdio </dev/null >/work/probe.out 2>/work/probe.err
}
run_q() {
	timeout 60 qemu-system-x86_64 -accel kvm -M pc -cpu host -m 512 -smp "$1" -nodefaults \
		-display none -serial stdio -no-reboot -L "$QEMU_FIRMWARE" \
		-device isa-debug-exit,iobase=0xf4,iosize=4 -kernel "$P/counter.bin" -append "$args" \
		</dev/null >/work/probe.out 2>/work/probe.err
}
churn() { while :; do ls /proc >/dev/null 2>&1; sleep 0.05; done; }
cp=
[ "${CHURN:-1}" = 0 ] || { churn & cp=$!; }
for r in $ROUNDS; do
	bad=0 i=0
	while [ $i -lt "$N" ]; do
		case $r in
		k*) run_k "${r#k}" ;;
		q*) run_q "${r#q}" ;;
		esac
		rc=$?
		if ! grep -q "counter: done" /work/probe.out; then
			bad=$((bad + 1))
			echo "$r run $i: exit $rc after $(grep -c 'counter: [0-9]' /work/probe.out) lines;" \
				"$(head -n 1 /work/probe.err)"
		fi
		i=$((i + 1))
	done
	echo "RESULT $r: $bad of $N runs failed"
done
[ -n "$cp" ] && kill "$cp"
exit 0
