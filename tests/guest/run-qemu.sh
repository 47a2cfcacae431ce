#!/bin/sh
# Run one guest payload under QEMU and print its exit status.
#   run-qemu.sh PAYLOAD [-smp N] [-m SIZE] [-append ARGS] [-- EXTRA QEMU ARGS]
# Environment: QEMU (binary), QEMU_ACCEL (default kvm if /dev/kvm is usable,
# else tcg), GUEST_TIMEOUT (seconds, default 120).
# Exit status is QEMU's: 1 for a passing payload (debug-exit 0), 0 for an
# ACPI poweroff, (code << 1) | 1 for debug-exit code, 124 on timeout.
set -u

usage() {
	echo "usage: $0 PAYLOAD [-smp N] [-m SIZE] [-append ARGS] [-- QEMU ARGS]" >&2
	exit 2
}

[ $# -ge 1 ] || usage
payload=$1
shift
[ -f "$payload" ] || { echo "$0: no such payload: $payload" >&2; exit 2; }

smp=1
mem=128M
append=
has_append=0
while [ $# -gt 0 ]; do
	case $1 in
	-smp) [ $# -ge 2 ] || usage; smp=$2; shift 2 ;;
	-m) [ $# -ge 2 ] || usage; mem=$2; shift 2 ;;
	-append) [ $# -ge 2 ] || usage; append=$2; has_append=1; shift 2 ;;
	--) shift; break ;;
	*) usage ;;
	esac
done

qemu=${QEMU:-qemu-system-x86_64}
if [ -z "${QEMU_ACCEL:-}" ]; then
	if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then QEMU_ACCEL=kvm; else QEMU_ACCEL=tcg; fi
fi

# -cpu qemu64: "-cpu host" aborts on the test hosts (TESTBED.md).
set -- -M pc -accel "$QEMU_ACCEL" -cpu qemu64 -smp "$smp" -m "$mem" \
	-nodefaults -display none -serial stdio -no-reboot \
	-device isa-debug-exit,iobase=0xf4,iosize=4 \
	-kernel "$payload" "$@"
[ "$has_append" = 1 ] && set -- "$@" -append "$append"

# stdin from /dev/null: QEMU leaves the terminal alone and the guest sees no input.
timeout "${GUEST_TIMEOUT:-120}" "$qemu" "$@" </dev/null
rc=$?
echo "exit status: $rc"
exit $rc
