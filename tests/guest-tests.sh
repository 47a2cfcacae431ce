#!/bin/sh
# Guest-level tests: run kestrel on the test payloads (tests/guest) and on the
# guest kit's unmodified Debian Linux, and assert on what the GUEST prints and
# on the worker's exit status. Needs a working /dev/kvm: on the host (payloads)
# or inside the nested rig (payloads and Linux; scripts/rig.sh runs this file).
#
# usage: tests/guest-tests.sh [--payloads] [--linux] [--kestrel BIN]
#                             [--payload-dir DIR] [--kit DIR] [--filter REGEX]
# Exit: 0 all passed, 1 a failure, 77 no /dev/kvm (skipped).
# POSIX sh: it also runs under busybox inside the rig.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
KESTREL=${KESTREL_BIN:-}
PAYLOADS=${PAYLOAD_DIR:-}
KIT=${KESTREL_KIT:-}
do_payloads=0 do_linux=0 filter=.
while [ $# -gt 0 ]; do
	case "$1" in
	--payloads) do_payloads=1 ;;
	--linux) do_linux=1 ;;
	--kestrel) KESTREL=$2; shift ;;
	--payload-dir) PAYLOADS=$2; shift ;;
	--kit) KIT=$2; shift ;;
	--filter) filter=$2; shift ;;
	*) echo "guest-tests: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
[ $do_payloads = 0 ] && [ $do_linux = 0 ] && do_payloads=1 && do_linux=1
first_of() { for p in "$@"; do [ -e "$p" ] && { echo "$p"; return; }; done; echo "$1"; }
[ -n "$KESTREL" ] || KESTREL=$(first_of "$root/build/kestrel" "$(command -v kestrel || echo kestrel)")
[ -n "$PAYLOADS" ] || PAYLOADS=${PAYLOADS_DIR:-$(first_of "$root/build/tests/guest" /payloads)}
[ -n "$KIT" ] || KIT=$(first_of "$root/.kit" /kit)

if [ ! -c /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing on this machine; guest tests run inside the nested rig (scripts/rig.sh)"
	exit 77
fi

pass=0 fail=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# run_case NAME EXPECTED_RC PATTERNS... -- KESTREL_ARGS...
# Each PATTERN is an extended regex that must match a line of the guest's
# output; a leading '!' means it must NOT match; '2x:' that it matches at least twice; a leading 'stderr:' checks
# the worker's stderr instead (only for what the worker itself must report).
# Milliseconds since boot, from /proc/uptime (busybox date has no %N).
now_ms() { read -r up _ </proc/uptime; echo "${up%.*}${up#*.}0"; }

run_case() {
	name=$1 want=$2
	shift 2
	: >"$out/pats"
	while [ "$1" != "--" ]; do printf '%s\n' "$1" >>"$out/pats"; shift; done
	shift
	echo "$name" | grep -Eq -- "$filter" || return 0
	t0=$(now_ms)
	"$KESTREL" run --serial stdio --on-reboot "${ON_REBOOT:-exit}" "$@" </dev/null >"$out/$name.log" 2>"$out/$name.err"
	rc=$?
	t1=$(now_ms)
	# The guest's tty writes CR LF; compare lines without the CR.
	tr -d '\r' <"$out/$name.log" >"$out/$name.tmp" && mv "$out/$name.tmp" "$out/$name.log"
	ok=1 why=""
	[ "$rc" = "$want" ] || { ok=0; why="exit status $rc, expected $want"; }
	while IFS= read -r p; do
		case "$p" in
		2x:*)
			[ "$(grep -Ec -- "${p#2x:}" "$out/$name.log")" -ge 2 ] || { ok=0; why="${why:+$why; }/${p#2x:}/ not seen twice"; } ;;
		stderr:*)
			grep -Eq -- "${p#stderr:}" "$out/$name.err" || { ok=0; why="${why:+$why; }stderr lacks /${p#stderr:}/"; } ;;
		!*)
			! grep -Eq -- "${p#!}" "$out/$name.log" || { ok=0; why="${why:+$why; }unexpected /${p#!}/"; } ;;
		*)
			grep -Eq -- "$p" "$out/$name.log" || { ok=0; why="${why:+$why; }missing /$p/"; } ;;
		esac
	done <"$out/pats"
	if [ $ok = 1 ]; then
		pass=$((pass + 1))
		printf 'PASS: %s (%s ms)\n' "$name" "$((t1 - t0))"
	else
		fail=$((fail + 1))
		printf 'FAIL: %s: %s\n' "$name" "$why"
		echo "---- guest output (last 30 lines) ----"; tail -n 30 "$out/$name.log"
		echo "---- worker stderr ----"; tail -n 20 "$out/$name.err"
		echo "--------------------------------------"
	fi
}

# linux_case NAME KERNEL CPUS MEM ENTRY [PATTERNS...]: the kit's init reports
# its CPU count and memory, then powers off.
linux_case() {
	lname=$1 kernel=$2 cpus=$3 mem=$4 entry=$5
	shift 5
	run_case "$lname" 0 "KESTREL-GUEST-INIT-OK" "^nproc=$cpus\b" "KESTREL-GUEST-POWEROFF" "$@" -- \
		--kernel "$KIT/$kernel" --initrd "$KIT/initrd.cpio.gz" --cpus "$cpus" --mem "$mem" \
		--cmdline "console=ttyS0 panic=-1 quiet" --timeout 300s --boot-entry "$entry"
}

if [ $do_payloads = 1 ]; then
	P=$PAYLOADS
	run_case payload-exit0 1 -- --kernel "$P/exit0.bin" --timeout 60s
	run_case payload-hello 11 "hello from ring 3 \(cpl=3 iopl=3\)" "RESULT: PASS" -- --kernel "$P/hello.bin" --cmdline "code=5" --timeout 60s
	run_case payload-uart 1 "RESULT: PASS" "!FAIL" -- --kernel "$P/uart.bin" --timeout 60s
	run_case payload-pci 1 "RESULT: PASS" "pci 00:00\.0 8086:1237" "!FAIL" -- --kernel "$P/pci.bin" --timeout 60s
	run_case payload-acpi-poweroff 0 "cpus=2" "!FAIL" -- --kernel "$P/acpi.bin" --cpus 2 --timeout 60s
	run_case payload-triple-fault 3 "stderr:triple fault" "stderr:rip=" -- --kernel "$P/triple.bin" --timeout 60s
	for n in 1 2 4; do
		run_case "payload-smp-$n" 1 "cpus online: $n" "RESULT: PASS" -- --kernel "$P/smp.bin" --cpus $n --timeout 120s
	done
fi

if [ $do_linux = 1 ]; then
	for n in 1 2 4; do
		linux_case "linux-bzimage64-cpus$n" bzImage $n 512M 64 "^memtotal_kb=(4|5)[0-9]{5}$"
		linux_case "linux-pvh-cpus$n" vmlinux $n 512M 64
	done
	linux_case linux-bzimage32-cpus2 bzImage 2 512M 32
	# RAM above 4 GiB: the guest's e820 shows RAM from 0x100000000, MemTotal ~6 GiB.
	linux_case linux-pvh-6g vmlinux 2 6G 64 "^e820: 0x0*100000000-" "^memtotal_kb=(5[5-9]|6[0-2])[0-9]{5}$"
	# The guest chooses the worker's exit code through the debug-exit port.
	# Guest reboot: --on-reboot exit ends the worker with 0; restart boots the
	# guest again (seen twice) until --timeout stops it with 124.
	run_case linux-reboot-exit 0 "KESTREL-GUEST-REBOOT" "!KESTREL-GUEST-POWEROFF" -- --kernel "$KIT/vmlinux" \
		--initrd "$KIT/initrd.cpio.gz" --cpus 2 --mem 256M --timeout 300s \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.run=reboot"
	ON_REBOOT=restart
	run_case linux-reboot-restart 124 "2x:KESTREL-GUEST-REBOOT" -- --kernel "$KIT/vmlinux" \
		--initrd "$KIT/initrd.cpio.gz" --cpus 1 --mem 256M --timeout 45s \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.run=reboot"
	ON_REBOOT=
	run_case linux-debug-exit 43 "KESTREL-GUEST-INIT-OK" -- --kernel "$KIT/vmlinux" \
		--initrd "$KIT/initrd.cpio.gz" --cpus 1 --mem 256M --timeout 300s \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.run=exitcode kestrel.code=21"
fi

echo "$pass passed, $fail failed"
[ $fail = 0 ]
