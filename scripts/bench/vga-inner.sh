#!/bin/sh
# Inner part of scripts/bench/vga.sh: runs where /dev/kvm is (this host, or
# inside the nested rig) and prints one "e WHO WHAT key=value" line per
# measurement.
#   vga-inner.sh REPS HELPERS
# HELPERS: a folder with vnc-client, vgabench and the guest scripts
# (tests/kit/*.sh). Environment: KESTREL_BIN, QEMU, QEMU_CPU (host),
# QEMU_FIRMWARE, KESTREL_KIT; VGA_BENCH_PAYLOAD=PATH to vga.bin: the host
# payload (pic=vbe, 640x480x32; bench=idle halts its CPU at the still
# picture, bench=latency writes the framebuffer after a key) instead of the
# kit's Debian on bochs-drm.
set -u
K=${KESTREL_BIN:-kestrel}
Q=${QEMU:-qemu-system-x86_64}
QCPU=${QEMU_CPU:-host}
KIT=${KESTREL_KIT:-/kit}
REPS=$1 H=$2
VC=$H/vnc-client VB=$H/vgabench
PORT=5990 SECS=10
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# The nested rig starts with the loopback interface down.
ip link set lo up 2>/dev/null || true
CMD="console=ttyS0 panic=-1 quiet vt.global_cursor_default=0 kestrel.modules=bochs kestrel.run=fbbench"

# The kit's initrd and modules with the guest scripts as /tests on top.
if [ -z "${VGA_BENCH_PAYLOAD:-}" ]; then
	cat "$KIT/initrd.cpio.gz" "$KIT/modules.cpio.gz" >"$W/initrd"
	mkdir -p "$W/t/tests"
	cp "$H"/kit/*.sh "$W/t/tests/" && chmod 0755 "$W"/t/tests/*.sh
	(cd "$W/t" && find tests | cpio -o -H newc 2>/dev/null | gzip) >>"$W/initrd"
fi

# wait_line FILE REGEX SECONDS
wait_line() {
	n=$(($3 * 10))
	while [ $n -gt 0 ]; do
		grep -Eq "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}

PAYLOAD=${VGA_BENCH_PAYLOAD:-}
start() { # start WHO SERIAL [CMDLINE]: the VMM in the background, its pid in $pid
	if [ -n "$PAYLOAD" ]; then
		start_payload "$@"
		return
	fi
	case "$1" in
	kestrel)
		"$K" run --name vgabench --kernel "$KIT/vmlinux" --initrd "$W/initrd" --cmdline "$CMD" \
			--cpus 1 --mem 256M --display "vnc=127.0.0.1:$PORT" --serial "file:$2" \
			--control "$W/k.sock" --timeout 900s </dev/null >/dev/null 2>"$W/k.err" &
		;;
	qemu)
		"$Q" -accel kvm -M pc -cpu "$QCPU" -m 256 -smp 1 -nodefaults -device VGA \
			-vnc "127.0.0.1:$((PORT - 5900))" -display none -serial "file:$2" -no-reboot \
			-monitor "unix:$W/q.sock,server=on,wait=off" ${QEMU_FIRMWARE:+-L "$QEMU_FIRMWARE"} \
			-kernel "$KIT/vmlinux" -initrd "$W/initrd" -append "$CMD" </dev/null >/dev/null 2>"$W/q.err" &
		;;
	esac
	pid=$!
}

# The payload: the same vga.bin, multiboot, under both (QEMU runs SeaBIOS
# and its VGA BIOS first; kestrel boots it directly).
start_payload() {
	case "$1" in
	kestrel)
		"$K" run --name vgabench --kernel "$PAYLOAD" --cmdline "$3" --vga std --debug-exit \
			--display "vnc=127.0.0.1:$PORT" --serial "file:$2" --control "$W/k.sock" \
			--timeout 300s </dev/null >/dev/null 2>"$W/k.err" &
		;;
	qemu)
		"$Q" -accel kvm -M pc -cpu "$QCPU" -m 128 -smp 1 -nodefaults -device VGA \
			-device isa-debug-exit,iobase=0xf4,iosize=4 \
			-vnc "127.0.0.1:$((PORT - 5900))" -display none -serial "file:$2" -no-reboot \
			-monitor "unix:$W/q.sock,server=on,wait=off" ${QEMU_FIRMWARE:+-L "$QEMU_FIRMWARE"} \
			-kernel "$PAYLOAD" -append "$3" </dev/null >/dev/null 2>"$W/q.err" &
		;;
	esac
	pid=$!
}

stop_vm() {
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}

# ready WHO SERIAL REGEX SECONDS: the guest said it is ready, or an error
# line and the VMM stopped.
ready() {
	wait_line "$2" "$3" "$4" && return 0
	echo "e $1 error guest_not_ready"
	tail -n 5 "$2" "$W"/*.err >&2
	stop_vm
	return 1
}

# At a still screen: CPU without and with a client, then screendumps.
measure_idle() { # measure_idle WHO
	sleep 3
	echo "e $1 idle_noclient $("$VB" cpu "$pid" "$SECS")"
	"$VC" "127.0.0.1:$PORT" updates $(((SECS + 3) * 1000)) >"$W/vc.out" 2>&1 &
	cpid=$!
	sleep 2
	echo "e $1 idle_client $("$VB" cpu "$pid" "$SECS")"
	wait "$cpid"
	case "$1" in
	kestrel) echo "e $1 screendump $("$VB" dump-kestrel "$W/k.sock" 10 "$W/k.png")" ;;
	qemu) echo "e $1 screendump $("$VB" dump-qemu "$W/q.sock" 10 "$W/q.ppm")" ;;
	esac
}

measure_latency() { # measure_latency WHO SERIAL
	"$VC" "127.0.0.1:$PORT" serial-latency "$2" 20 >"$W/lat.out" 2>&1
	echo "e $1 latency $(sed -n 's/^vnc-client: latency ms //p' "$W/lat.out")"
}

# The payload's two runs: the idle one (CPU, screendumps), the latency one.
run_payload() { # run_payload WHO
	who=$1 s=$W/$1.serial
	: >"$s"
	start "$who" "$s" "pic=vbe bench=idle"
	ready "$who" "$s" "^vga: picture ready" 60 || return
	measure_idle "$who"
	stop_vm
	: >"$s"
	start "$who" "$s" "pic=vbe bench=latency writes=20"
	ready "$who" "$s" "^vga: picture ready" 60 || return
	measure_latency "$who" "$s"
	stop_vm
}

run_one() { # run_one WHO
	if [ -n "$PAYLOAD" ]; then
		run_payload "$1"
		return
	fi
	who=$1 s=$W/$1.serial
	: >"$s"
	start "$who" "$s"
	ready "$who" "$s" "^fbw: ready" 300 || return
	measure_idle "$who"
	measure_latency "$who" "$s"
	stop_vm
}

i=0
while [ $i -lt "$REPS" ]; do
	run_one kestrel
	run_one qemu
	i=$((i + 1))
done
