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
KIT_I386=${KESTREL_KIT_I386:-$(first_of "$root/.kit-i386" /work/kit-i386)}

if [ ! -c /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing on this machine; guest tests run inside the nested rig (scripts/rig.sh)"
	exit 77
fi

pass=0 fail=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# run_case NAME EXPECTED_RC PATTERNS... -- KESTREL_ARGS...
# The payloads (and the kit's kestrel.run=exitcode) report their verdict
# through the debug-exit port, so the worker gets --debug-exit unless
# DEBUG_EXIT is set (empty: without it).
# Each PATTERN is an extended regex that must match a line of the guest's
# output; a leading '!' means it must NOT match; '2x:' that it matches at least twice; a leading 'stderr:' checks
# the worker's stderr instead (only for what the worker itself must report).
# Milliseconds since boot, from /proc/uptime (busybox date has no %N).
now_ms() { read -r up _ </proc/uptime; echo "${up%.*}${up#*.}0"; }

# timeout_of ARGS...: the seconds of the worker's --timeout (300 if none).
timeout_of() {
	tt=300
	while [ $# -gt 1 ]; do
		[ "$1" = --timeout ] && { tt=${2%s}; break; }
		shift
	done
	echo "$tt"
}
# Whether any thread of PID still runs: a killed process whose leader is a
# zombie can keep a thread stuck in the kernel, and `wait` would then block.
# Builtins only on the common path: forks are slow in the rig's TCG VM.
pid_running() {
	read -r pst 2>/dev/null <"/proc/$1/stat" || return 1
	st=${pst##*) }
	[ "${st%% *}" = Z ] || return 0
	for t in /proc/$1/task/*/stat; do
		read -r pst 2>/dev/null <"$t" || continue
		st=${pst##*) }
		[ "${st%% *}" = Z ] || return 0
	done
	return 1
}
# task_dump PID: state, wait channel and kernel stack of each thread (what a
# hang report needs; the stack only where we may read it).
task_dump() {
	for t in /proc/$1/task/*; do
		[ -d "$t" ] || continue
		printf '  task %s %s state=%s wchan=%s\n' "${t##*/}" "$(cat "$t/comm" 2>/dev/null)" \
			"$(sed 's/.*) //' "$t/stat" 2>/dev/null | cut -c1)" "$(cat "$t/wchan" 2>/dev/null)"
		sed 's/^/    /' "$t/stack" 2>/dev/null | head -n 12
	done
}
# reap_worker PID TIMEOUT_S: rc= the worker's exit status. Its own --timeout
# should end it; past that plus a minute it is SIGKILLed, and a worker that
# outlives SIGKILL too (a vCPU thread stuck in the kernel's nested KVM) is
# left behind as rc=wedged so one wedged VM cannot stall the whole suite.
reap_worker() {
	rpid=$1 rlimit=$((($2 + 60) * 4)) rt=0
	while :; do
		pid_running "$rpid" || break
		rt=$((rt + 1))
		if [ $rt = $rlimit ]; then
			echo "note: worker $rpid past its deadline: its threads, then SIGKILL"
			task_dump "$rpid"
			kill -KILL "$rpid" 2>/dev/null
		fi
		if [ $rt -ge $((rlimit + 40)) ]; then
			echo "note: worker $rpid outlived SIGKILL by 10 s:"
			task_dump "$rpid"
			rc=wedged
			return
		fi
		sleep 0.25
	done
	wait "$rpid"
	rc=$?
}

# rig_flake LOG ERR STATUS EXPECTED: succeeds, printing why, when a worker
# that did not end as EXPECTED shows one of the nested rig's flakes (QEMU
# TCG emulating SVM; never seen on the host): it wedged in the kernel
# (STATUS wedged: kicks and SIGKILL do not reach a vCPU thread), or its
# guest triple-faulted or its own watchdog saw a stuck CPU (soft lockup, RCU
# stall) while printing nothing but kernel lines -- no payload output, not
# even the kit's first /init line. Inside the rig (KESTREL_RIG) a triple
# fault later on counts too, unless a payload printed an exception first: a
# payload's IDT takes every exception and prints it, with IF=0, so only a
# CPU that lost its descriptor tables or its memory view can triple-fault
# there -- seen in CI 2.3 s into counter.bin, never on the host, and QEMU's
# guest does the same on the rig (tests/rig-flake-probe.sh: processes
# starting in the outer VM make both VMMs' guests triple-fault, and the outer
# kernel itself has panicked on a corrupted kernel stack under either). Such
# cases are run once more, said out loud; a real bug fails both attempts.
rig_flake() {
	[ "$3" != "$4" ] || return 1
	if [ "$3" = wedged ]; then
		echo "the worker wedged in the kernel"
		return 0
	fi
	if [ "${KESTREL_RIG:-0}" = 1 ] && [ "$4" != 3 ] && grep -q "triple fault" "$2" 2>/dev/null &&
		! grep -q 'FAIL: exception' "$1" 2>/dev/null; then
		echo "the guest triple-faulted on the nested rig: $(head -n 2 "$2" | tr '\n' ' ')"
		return 0
	fi
	tr -d '\r' <"$1" 2>/dev/null | grep -Ev '^\[ *[0-9]+\.[0-9]+\]|^[[:space:]]*$' | grep -q . && return 1
	if [ "$4" != 3 ] && grep -q "triple fault" "$2" 2>/dev/null; then
		echo "triple fault before /init: $(head -n 2 "$2" | tr '\n' ' ')"
	elif grep -Eq 'BUG: soft lockup|rcu: INFO: rcu_[a-z]+ (self-)?detected stall|Watchdog detected hard LOCKUP' "$1" 2>/dev/null; then
		echo "the guest's watchdog saw a stuck CPU before /init: $(grep -Em 1 'lockup|stall' "$1")"
	else
		return 1
	fi
}

run_case() {
	name=$1 want=$2
	shift 2
	: >"$out/pats"
	while [ "$1" != "--" ]; do printf '%s\n' "$1" >>"$out/pats"; shift; done
	shift
	echo "$name" | grep -Eq -- "$filter" || return 0
	for attempt in 1 2; do
		t0=$(now_ms)
		# shellcheck disable=SC2086 # an empty DEBUG_EXIT is no argument
		"$KESTREL" run --serial stdio --on-reboot "${ON_REBOOT:-exit}" ${DEBUG_EXIT---debug-exit} "$@" \
			</dev/null >"$out/$name.log" 2>"$out/$name.err" &
		reap_worker $! "$(timeout_of "$@")"
		t1=$(now_ms)
		# One retry, said out loud, for the nested rig's flakes (rig_flake).
		[ $attempt = 1 ] && flake=$(rig_flake "$out/$name.log" "$out/$name.err" "$rc" "$want") || break
		echo "RETRY: $name: $flake; once more"
	done
	# The guest's tty writes CR LF; compare lines without the CR.
	tr -d '\r' <"$out/$name.log" >"$out/$name.tmp" && cat "$out/$name.tmp" >"$out/$name.log"
	ok=1 why=""
	[ "$rc" = "$want" ] || { ok=0; why="exit status $rc, expected $want"; }
	[ "$rc" = wedged ] && why="the worker outlived SIGKILL (wedged in the kernel); left behind"
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
		--cmdline "console=ttyS0 panic=-1 quiet" --timeout 180s --boot-entry "$entry"
}

if [ $do_payloads = 1 ]; then
	P=$PAYLOADS
	run_case payload-exit0 1 -- --kernel "$P/exit0.bin" --timeout 60s
	run_case payload-hello 11 "hello from ring 3 \(cpl=3 iopl=[03]\)" "RESULT: PASS" "!still running after the debug-exit" -- --kernel "$P/hello.bin" --cmdline "code=5" --timeout 60s
	# Without --debug-exit the port is not decoded (issue #9): the guest's
	# write is ignored, it goes on and resets the board (--on-reboot exit: 0).
	DEBUG_EXIT=
	run_case payload-debug-exit-off 0 "^exit code 5$" "^hello: still running after the debug-exit write" -- \
		--kernel "$P/hello.bin" --cmdline "code=5 reset=1" --timeout 60s
	unset DEBUG_EXIT
	run_case payload-uart 1 "RESULT: PASS" "!FAIL" -- --kernel "$P/uart.bin" --timeout 60s
	run_case payload-pci 1 "RESULT: PASS" "pci 00:00\.0 8086:1237" "!FAIL" -- --kernel "$P/pci.bin" --timeout 60s
	run_case payload-acpi-poweroff 0 "cpus=2" "!FAIL" -- --kernel "$P/acpi.bin" --cpus 2 --timeout 60s
	run_case payload-triple-fault 3 "stderr:triple fault" "stderr:rip=" -- --kernel "$P/triple.bin" --timeout 60s
	for n in 1 2 4; do
		run_case "payload-smp-$n" 1 "cpus online: $n" "RESULT: PASS" -- --kernel "$P/smp.bin" --cpus $n --timeout 120s
	done
	# --cpu (docs/cpu.md): the payload prints the features ring 3 sees. Where
	# the VMM's table reaches ring 3 (KVM on SVM/VMX: the vCPU count of
	# --cpus 3 shows in leaf 1), x86-64-v1 must hide everything above the
	# baseline. A PVM host shows ring 3 its own CPUID, or parts of it
	# (TESTBED.md; seen: the vCPU count and cx16/lahf_lm as the VMM's table
	# says, the other feature bits the host's), so outside the rig
	# (KESTREL_RIG, real SVM: always the whole check) where ring 3 shows host
	# features under x86-64-v1, what is checked is that the table reaches it
	# at all: leaf 1 or 0x80000001 differ from --cpu host's.
	run_case payload-cpuid-host 1 "RESULT: PASS" "cpuid: has sse2$" -- --kernel "$P/cpuid.bin" \
		--cpus 3 --cpu host --timeout 60s
	v1_hidden='!^cpuid: has (pni|ssse3|cx16|sse4_1|sse4_2|popcnt|aes|xsave|avx|rdrand|tsc_adjust|bmi1|avx2|smep|bmi2|avx512f|sha_ni|lahf_lm|svm|abm|pdpe1gb|rdtscp)$'
	v1_partial=
	if [ "${KESTREL_RIG:-0}" != 1 ]; then
		grep -q '^cpuid: logical=3$' "$out/payload-cpuid-host.log" 2>/dev/null || v1_hidden=
		"$KESTREL" run --kernel "$P/cpuid.bin" --cpus 3 --cpu x86-64-v1 --timeout 60s </dev/null \
			>"$out/cpuid-v1-probe.log" 2>&1 || :
		if [ -n "$v1_hidden" ] && grep -Eq "${v1_hidden#!}" "$out/cpuid-v1-probe.log"; then
			v1_hidden= v1_partial=1
		fi
	fi
	run_case payload-cpuid-v1 1 "RESULT: PASS" "cpuid: has (sse2|lm|nx)$" ${v1_hidden:+"$v1_hidden"} \
		-- --kernel "$P/cpuid.bin" --cpus 3 --cpu x86-64-v1 --timeout 60s
	if [ -n "$v1_partial" ] && echo "payload-cpuid-v1-reaches" | grep -Eq -- "$filter"; then
		if [ "$(grep -E '^cpuid: (leaf1|ext1)' "$out/payload-cpuid-v1.log" 2>/dev/null)" != \
			"$(grep -E '^cpuid: (leaf1|ext1)' "$out/payload-cpuid-host.log" 2>/dev/null)" ]; then
			pass=$((pass + 1))
			echo "PASS: payload-cpuid-v1-reaches (ring 3 sees the host's features here; hiding all of them is checked in the rig)"
		else
			fail=$((fail + 1))
			echo "FAIL: payload-cpuid-v1-reaches: --cpu x86-64-v1 changed nothing ring 3 sees"
		fi
	fi
	# A level this host's KVM cannot offer: refused at start, naming what is
	# missing (a CPU without AVX-512 cannot offer it through any KVM).
	if ! grep -qw avx512f /proc/cpuinfo; then
		run_case payload-cpuid-refused 2 "stderr:--cpu x86-64-v4: this host's KVM cannot offer .*avx512f" \
			"!RESULT" -- --kernel "$P/cpuid.bin" --cpu x86-64-v4 --timeout 60s
	fi
fi

if [ $do_linux = 1 ]; then
	for n in 1 2 4; do
		linux_case "linux-bzimage64-cpus$n" bzImage $n 512M 64 "^memtotal_kb=(4|5)[0-9]{5}$"
		linux_case "linux-pvh-cpus$n" vmlinux $n 512M 64
	done
	linux_case linux-bzimage32-cpus2 bzImage 2 512M 32
	# A 32-bit kernel (Debian's linux-image-686 with an i386 busybox,
	# scripts/guest-kit-i386.sh) and no --boot-entry: the entry comes from
	# its header. Not quiet, so the guest names its kernel.
	if [ -s "$KIT_I386/bzImage" ] && [ -s "$KIT_I386/initrd.cpio.gz" ]; then
		run_case linux-686-auto 0 "Linux version [^ ]+-686 " "KESTREL-GUEST-INIT-OK" "^nproc=2\b" \
			"KESTREL-GUEST-POWEROFF" -- --kernel "$KIT_I386/bzImage" \
			--initrd "$KIT_I386/initrd.cpio.gz" --cpus 2 --mem 512M \
			--cmdline "console=ttyS0 panic=-1" --timeout 180s
	elif echo linux-686-auto | grep -Eq -- "$filter"; then
		echo "SKIP: linux-686-auto: no i386 kit in $KIT_I386 (scripts/guest-kit-i386.sh)"
	fi
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
		--initrd "$KIT/initrd.cpio.gz" --cpus 1 --mem 256M --timeout 25s \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.run=reboot"
	ON_REBOOT=
	run_case linux-debug-exit 43 "KESTREL-GUEST-INIT-OK" -- --kernel "$KIT/vmlinux" \
		--initrd "$KIT/initrd.cpio.gz" --cpus 1 --mem 256M --timeout 300s \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.run=exitcode kestrel.code=21"
fi

# kit_tests_initrd OUT: the kit's initrd and modules, then the repository's
# tests/kit/*.sh as /tests on top (later archives win), so a kit built before
# a script changed runs the current one. In the rig they sit beside this file
# (CMake's rig tests --add tests/kit as /work/kit); without them, the kit's own.
kit_tests_initrd() {
	cat "$KIT/initrd.cpio.gz" "$KIT/modules.cpio.gz" >"$1"
	[ -d "$here/kit" ] || return 0
	rm -rf "$out/kit-tests"
	mkdir -p "$out/kit-tests/tests"
	cp "$here"/kit/*.sh "$out/kit-tests/tests/" && chmod 0755 "$out"/kit-tests/tests/*.sh
	(cd "$out/kit-tests" && find tests | cpio -o -H newc 2>/dev/null | gzip) >>"$1"
}

# ---- virtio-scsi (issue 3) ----------------------------------------------
# Fresh images in $out: vd0 8M, vd1 16M with HOST-PATTERN-D1 at sector 7, vd2
# 4M (hot-plugged as target 2).
vscsi_images() {
	for s in 0:8 1:16 2:4; do
		dd if=/dev/zero of="$out/vd${s%:*}.img" bs=1M count="${s#*:}" 2>/dev/null
	done
	printf 'HOST-PATTERN-D1' | dd of="$out/vd1.img" bs=512 seek=7 conv=notrunc 2>/dev/null
}
# file_case NAME FILE LBA TEXT: after the guest ran, the host file holds TEXT
# at sector LBA (!TEXT: does not hold it).
file_case() {
	echo "$1" | grep -Eq -- "$filter" || return 0
	want=yes text=$4
	case "$4" in !*) want=no text=${4#!} ;; esac
	if dd if="$2" bs=512 skip="$3" count=1 2>/dev/null | grep -q "$text"; then got=yes; else got=no; fi
	if [ $got = $want ]; then
		pass=$((pass + 1))
		printf 'PASS: %s\n' "$1"
	else
		fail=$((fail + 1))
		printf 'FAIL: %s: %s sector %s: %s\n' "$1" "$2" "$3" "$4"
	fi
}
vscsi_disks() { # the three --disk flags; $1: extra options for the hot-plugged one
	echo "--disk path=$out/vd0.img,bus=scsi --disk path=$out/vd1.img,bus=scsi" \
		"--disk path=$out/vd2.img,bus=scsi,target=2,$1"
}

if [ $do_payloads = 1 ]; then
	# The ring-3 driver (tests/guest/vscsi.c): two disks, a third hot-added
	# then removed, malformed chains -> NEEDS_RESET -> reset -> working.
	vscsi_images
	# shellcheck disable=SC2046 # the flags are words
	run_case payload-vscsi 1 "RESULT: PASS" "!FAIL" "^disk0 capacity 16384 x 512" \
		"^disk1 capacity 32768 x 512" "^disk2 capacity 8192 x 512" \
		"PASS: hot-remove" "PASS: descriptor loop: the device works again" -- \
		--kernel "$P/vscsi.bin" --cmdline "disks=2 hostpat=1 hotplug=1" --timeout 60s \
		$(vscsi_disks add-after=300ms,remove-after=3s)
	file_case payload-vscsi-host-file-t0 "$out/vd0.img" 200 KESTREL-VSCSI-T0-LBA200
	file_case payload-vscsi-host-file-t1 "$out/vd1.img" 200 KESTREL-VSCSI-T1-LBA200
	# A read-only disk refuses writes with DATA PROTECT; the file is untouched.
	vscsi_images
	run_case payload-vscsi-readonly 1 "RESULT: PASS" "!FAIL" "PASS: target 1 read-only: WRITE gets DATA PROTECT" -- \
		--kernel "$P/vscsi.bin" --cmdline "disks=2 ro=1 malformed=0" --timeout 60s \
		--disk "path=$out/vd0.img,bus=scsi" --disk "path=$out/vd1.img,bus=scsi,readonly"
	file_case payload-vscsi-readonly-untouched "$out/vd1.img" 200 '!KESTREL-RO-WRITE'
	# The driver moves the controller's BAR around the PCI hole, above 4 GiB
	# and back, and turns memory decode off and on (issue 10): the device
	# answers only where its BAR is and keeps working.
	vscsi_images
	run_case payload-vscsi-barmove 1 "RESULT: PASS" "!FAIL" "^vscsi: BAR0 at [0-9a-f]+, 64-bit" \
		"PASS: moved [0-9a-f]+ -> e8000000: only the new address answers" \
		"PASS: memory decode off: nothing answers" "PASS: moved above 4 GiB" \
		"PASS: back at [0-9a-f]+: commands work" -- \
		--kernel "$P/vscsi.bin" --cmdline "barmove=1" --timeout 60s \
		--disk "path=$out/vd0.img,bus=scsi" --disk "path=$out/vd1.img,bus=scsi"
	# Cache modes as the guest sees them (MODE SENSE caching page): writeback
	# and none have a volatile cache (WCE=1), directsync has none. none and
	# directsync need O_DIRECT where the images are (not on the rig's tmpfs).
	if dd if=/dev/zero of="$out/odirect" bs=4096 count=1 oflag=direct 2>/dev/null; then
		vscsi_images
		run_case payload-vscsi-cache-modes 1 "RESULT: PASS" "!FAIL" "^vscsi: t0 wce=1" \
			"^vscsi: t1 wce=0" "^vscsi: t2 wce=1" -- \
			--kernel "$P/vscsi.bin" --cmdline "disks=3 malformed=0" --timeout 60s \
			--disk "path=$out/vd0.img,bus=scsi,cache=none" \
			--disk "path=$out/vd1.img,bus=scsi,cache=directsync" \
			--disk "path=$out/vd2.img,bus=scsi,cache=writeback"
	else
		echo "payload-vscsi-cache-modes" | grep -Eq -- "$filter" &&
			echo "SKIP: payload-vscsi-cache-modes: no O_DIRECT in $out"
	fi
	rm -f "$out/odirect"
fi

if [ $do_linux = 1 ]; then
	# Debian's virtio_scsi sees both disks with their sizes, reads what the
	# host wrote, writes a pattern the host file then holds, and sees target 2
	# arrive and leave (tests/kit/vscsi.sh).
	vscsi_images
	cat "$KIT/initrd.cpio.gz" "$KIT/modules.cpio.gz" >"$out/initrd-modules.gz"
	# shellcheck disable=SC2046
	run_case linux-vscsi 0 "^vscsi: t0 sd[a-z] size=16384 vendor=KESTREL " "^vscsi: t1 sd[a-z] size=32768 " \
		"^vscsi: read t1: HOST-PATTERN-D1" "^vscsi: wrote t0" "^vscsi: read back t0: KESTREL-LINUX-PATTERN" \
		"^vscsi: t2 absent at start" "^vscsi: added t2 sd[a-z] size=8192 " "^vscsi: removed t2" \
		"KESTREL-GUEST-POWEROFF" -- \
		--kernel "$KIT/vmlinux" --initrd "$out/initrd-modules.gz" --cpus 2 --mem 512M --timeout 300s \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=virtio_pci,virtio_scsi,sd_mod kestrel.run=vscsi kestrel.vscsi_hotplug=1" \
		$(vscsi_disks add-after=10s,remove-after=20s)
	file_case linux-vscsi-host-file "$out/vd0.img" 100 KESTREL-LINUX-PATTERN
	# Linux told to re-assign BARs (pci=realloc) still reaches its disks
	# through the controller's BAR wherever it put it, and says where.
	vscsi_images
	kit_tests_initrd "$out/initrd-kit-tests.gz"
	run_case linux-vscsi-pci-realloc 0 "^vscsi: t0 sd[a-z] size=16384 " "^vscsi: t1 sd[a-z] size=32768 " \
		"^vscsi: read t1: HOST-PATTERN-D1" "^vscsi: read back t0: KESTREL-LINUX-PATTERN" \
		"^vscsi: dmesg: .*max bus depth" "^vscsi: pci 0000:00:04\.0 resource0=0x0*[1-9a-f]" \
		"KESTREL-GUEST-POWEROFF" -- \
		--kernel "$KIT/vmlinux" --initrd "$out/initrd-kit-tests.gz" --cpus 2 --mem 512M --timeout 300s \
		--cmdline "console=ttyS0 panic=-1 quiet pci=realloc kestrel.modules=virtio_pci,virtio_scsi,sd_mod kestrel.run=vscsi kestrel.vscsi_pci=1" \
		--disk "path=$out/vd0.img,bus=scsi" --disk "path=$out/vd1.img,bus=scsi"
fi

# ---- VHD disks (issue 4) --------------------------------------------------
# vhd_images DIFF_TARGET: in $out, vhddyn.vhd (dynamic, 8 MiB or 16 MiB) and
# vhdchild.vhd (differencing, over vhdbase.vhd), made with `kestrel vhd`.
# The pattern HOST-PATTERN-D1 at sector 7 of target 1 lives in a dynamic
# image: for DIFF_TARGET=1 in the child's parent (read through the chain),
# for DIFF_TARGET=0 in the dynamic disk itself. Target 0 is 8 MiB, target 1
# 16 MiB, as for the raw images above.
vhd_images() {
	rm -f "$out"/vhd*
	dd if=/dev/zero of="$out/vhdpat.raw" bs=1M count=16 2>/dev/null
	printf 'HOST-PATTERN-D1' | dd of="$out/vhdpat.raw" bs=512 seek=7 conv=notrunc 2>/dev/null
	if [ "$1" = 1 ]; then
		"$KESTREL" vhd create -q --type dynamic --size 8M --exact-size "$out/vhddyn.vhd"
		"$KESTREL" vhd convert -q --to dynamic "$out/vhdpat.raw" "$out/vhdbase.vhd"
	else
		"$KESTREL" vhd convert -q --to dynamic "$out/vhdpat.raw" "$out/vhddyn.vhd"
		"$KESTREL" vhd create -q --type dynamic --size 8M --exact-size "$out/vhdbase.vhd"
	fi
	"$KESTREL" vhd create -q --type diff --parent "$out/vhdbase.vhd" "$out/vhdchild.vhd"
	rm -f "$out/vhdpat.raw"
}
# vhd_file_case NAME IMAGE LBA TEXT: `kestrel vhd check` accepts IMAGE (and
# its chain), and the image flattened to raw holds TEXT at sector LBA.
vhd_file_case() {
	echo "$1" | grep -Eq -- "$filter" || return 0
	rm -f "$out/vhdflat.raw"
	if ! "$KESTREL" vhd check "$2" >"$out/vhdcheck.out" 2>&1 ||
		! "$KESTREL" vhd convert -q --to raw "$2" "$out/vhdflat.raw" 2>>"$out/vhdcheck.out"; then
		fail=$((fail + 1))
		printf 'FAIL: %s: %s: %s\n' "$1" "$2" "$(tail -n 3 "$out/vhdcheck.out")"
		return 0
	fi
	file_case "$1" "$out/vhdflat.raw" "$3" "$4"
	rm -f "$out/vhdflat.raw"
}

if [ $do_payloads = 1 ]; then
	# The ring-3 driver on a dynamic VHD (target 0) and a differencing child
	# (target 1) whose sector 7 comes from its parent; both get written.
	vhd_images 1
	run_case payload-vhd 1 "RESULT: PASS" "!FAIL" "^disk0 capacity 16384 x 512" \
		"^disk1 capacity 32768 x 512" -- \
		--kernel "$P/vscsi.bin" --cmdline "disks=2 hostpat=1" --timeout 60s \
		--disk "path=$out/vhddyn.vhd,bus=scsi" --disk "path=$out/vhdchild.vhd,bus=scsi"
	vhd_file_case payload-vhd-dynamic-file "$out/vhddyn.vhd" 200 KESTREL-VSCSI-T0-LBA200
	vhd_file_case payload-vhd-child-file "$out/vhdchild.vhd" 200 KESTREL-VSCSI-T1-LBA200
	vhd_file_case payload-vhd-child-reads-parent "$out/vhdchild.vhd" 7 HOST-PATTERN-D1
	vhd_file_case payload-vhd-parent-unchanged "$out/vhdbase.vhd" 7 HOST-PATTERN-D1
fi

if [ $do_linux = 1 ]; then
	# Debian's virtio_scsi + sd_mod: target 0 a differencing child (Linux
	# writes its pattern there), target 1 a dynamic VHD holding the host's.
	vhd_images 0
	[ -e "$out/initrd-modules.gz" ] || cat "$KIT/initrd.cpio.gz" "$KIT/modules.cpio.gz" >"$out/initrd-modules.gz"
	# Then the guest unbinds the controller from virtio-pci (Linux resets it
	# and clears Bus Master Enable) and binds it again: the disks come back.
	run_case linux-vhd 0 "^vscsi: t0 sd[a-z] size=16384 " "^vscsi: t1 sd[a-z] size=32768 " \
		"^vscsi: read t1: HOST-PATTERN-D1" "^vscsi: wrote t0" "^vscsi: read back t0: KESTREL-LINUX-PATTERN" \
		"^vscsi: unbound [0-9a-f:.]+ bus_master=0$" "^vscsi: rebound [0-9a-f:.]+ bus_master=1$" \
		"^vscsi: read t1 after rebind: HOST-PATTERN-D1" "KESTREL-GUEST-POWEROFF" -- \
		--kernel "$KIT/vmlinux" --initrd "$out/initrd-modules.gz" --cpus 2 --mem 512M --timeout 300s \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=virtio_pci,virtio_scsi,sd_mod kestrel.run=vscsi kestrel.vscsi_rebind=1" \
		--disk "path=$out/vhdchild.vhd,bus=scsi" --disk "path=$out/vhddyn.vhd,bus=scsi"
	vhd_file_case linux-vhd-child-file "$out/vhdchild.vhd" 100 KESTREL-LINUX-PATTERN
	vhd_file_case linux-vhd-dynamic-file "$out/vhddyn.vhd" 7 HOST-PATTERN-D1
fi

# The guest tries to turn its raw disk (format=auto) into a differencing VHD
# whose parent is a host file (issue 9, QEMU's CVE-2008-2004), then reboots
# with --on-reboot restart (tests/kit/vhdrewrite.sh). The layout is a real
# `kestrel vhd create --type diff` child of vhdsecret.vhd, carried in on a
# second disk: its head for the first sectors, its footer for the last. After
# the reboot the guest must still see its 8 MiB raw disk and its own data,
# and the host file must be unchanged.
if [ $do_linux = 1 ] && echo linux-vhd-rewrite | grep -Eq -- "$filter"; then
	rm -f "$out"/vhd*
	vscsi_images
	printf 'RAW-PATTERN-T0' | dd of="$out/vd0.img" bs=512 seek=7 conv=notrunc 2>/dev/null
	cp "$out/vd0.img" "$out/vd0.orig"
	dd if=/dev/zero of="$out/vhdpat.raw" bs=1M count=16 2>/dev/null
	printf 'HOST-SECRET-PATTERN' | dd of="$out/vhdpat.raw" bs=512 seek=7 conv=notrunc 2>/dev/null
	"$KESTREL" vhd convert -q --to dynamic "$out/vhdpat.raw" "$out/vhdsecret.vhd"
	"$KESTREL" vhd create -q --type diff --parent "$out/vhdsecret.vhd" "$out/vhdevil.vhd"
	evil=$(wc -c <"$out/vhdevil.vhd")
	dd if=/dev/zero of="$out/vhdattack.img" bs=1M count=1 2>/dev/null
	dd if="$out/vhdevil.vhd" of="$out/vhdattack.img" bs=512 count=$((evil / 512 - 1)) conv=notrunc 2>/dev/null
	dd if="$out/vhdevil.vhd" of="$out/vhdattack.img" bs=512 skip=$((evil / 512 - 1)) seek=2047 conv=notrunc 2>/dev/null
	[ -e "$out/initrd-modules.gz" ] || cat "$KIT/initrd.cpio.gz" "$KIT/modules.cpio.gz" >"$out/initrd-modules.gz"
	ON_REBOOT=restart
	run_case linux-vhd-rewrite 0 "^vhdrw: boot 1: t0 sd[a-z] size=16384$" "^vhdrw: boot 1: t0 sector 7: RAW-PATTERN-T0" \
		"^vhdrw: rebooting" "^vhdrw: boot 2: t0 sd[a-z] size=16384$" "^vhdrw: boot 2: t0 sector 7: RAW-PATTERN-T0" \
		"^vhdrw: done" "!HOST-SECRET" "KESTREL-GUEST-POWEROFF" -- \
		--kernel "$KIT/vmlinux" --initrd "$out/initrd-modules.gz" --cpus 2 --mem 512M --timeout 300s \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=virtio_pci,virtio_scsi,sd_mod kestrel.run=vhdrewrite kestrel.vhdrw_head=$((evil / 512 - 1))" \
		--disk "path=$out/vd0.img,bus=scsi" --disk "path=$out/vhdattack.img,bus=scsi,format=raw"
	ON_REBOOT=
	if cmp -s "$out/vd0.img" "$out/vd0.orig"; then
		pass=$((pass + 1))
		echo "PASS: linux-vhd-rewrite-host-file"
	else
		fail=$((fail + 1))
		echo "FAIL: linux-vhd-rewrite-host-file: $out/vd0.img changed ($(wc -c <"$out/vd0.img") bytes; differs at $(cmp "$out/vd0.img" "$out/vd0.orig" 2>&1 | head -n 1))"
	fi
	rm -f "$out"/vhd* "$out/vd0.orig"
fi

# ---- emulated IDE (issue 11) ----------------------------------------------
# ide_images: in $out, id0.img (8 MiB, HOST-PATTERN-IDE at sector 7) and
# icd.iso, 300 blocks of 2048 bytes shaped like ISO 9660 where the payload
# and Linux look: a volume descriptor (CD001) at block 16, HOST-PATTERN-CD
# at block 20.
ide_images() {
	dd if=/dev/zero of="$out/id0.img" bs=1M count=8 2>/dev/null
	printf 'HOST-PATTERN-IDE' | dd of="$out/id0.img" bs=512 seek=7 conv=notrunc 2>/dev/null
	dd if=/dev/zero of="$out/icd.iso" bs=2048 count=300 2>/dev/null
	printf '\001CD001\001' | dd of="$out/icd.iso" bs=2048 seek=16 conv=notrunc 2>/dev/null
	printf 'HOST-PATTERN-CD' | dd of="$out/icd.iso" bs=2048 seek=20 conv=notrunc 2>/dev/null
}

if [ $do_payloads = 1 ]; then
	# The ring-3 driver (tests/guest/ide.c): ATA PIO/DMA on the primary
	# master, ATAPI on the secondary master, hostile PRD tables and commands
	# out of order; then the host file holds what the guest wrote.
	ide_images
	run_case payload-ide 1 "RESULT: PASS" "!FAIL" "^pci 00:01\.1 8086:7010 class 010180" \
		"^pirq routes 80808080" "^disk model=\"KESTREL HARDDISK\" sectors=16384 " \
		"^cd capacity 300 x 2048" "PASS: a table without End Of Table" \
		"PASS: after hostile tables and commands out of order the disk works" -- \
		--kernel "$P/ide.bin" --cmdline "sectors=16384 hostpat=1 cd=300" --timeout 60s \
		--disk "path=$out/id0.img,bus=ide" --disk "path=$out/icd.iso,bus=ide,media=cdrom,unit=2"
	file_case payload-ide-host-file-pio "$out/id0.img" 200 KESTREL-IDE-PIO-LBA200
	file_case payload-ide-host-file-dma "$out/id0.img" 300 KESTREL-IDE-DMA-LBA300
	# 48-bit LBA past 128 GiB on a 200 GiB sparse image; an empty CD drive.
	if truncate -s 200G "$out/ibig.img" 2>/dev/null; then
		run_case payload-ide-lba48 1 "RESULT: PASS" "!FAIL" "sectors=419430400 lba28=268435455" \
			"PASS: READ DMA EXT reads it too" "PASS: empty drive: NOT READY, MEDIUM NOT PRESENT" -- \
			--kernel "$P/ide.bin" --cmdline "sectors=419430400 big=1 hostile=0 cdempty=1" \
			--timeout 60s --disk "path=$out/ibig.img,bus=ide" --disk "bus=ide,media=cdrom,unit=2"
		file_case payload-ide-lba48-host-file "$out/ibig.img" 268435461 KESTREL-IDE-LBA48
	fi
	rm -f "$out/ibig.img"
	# The same block layer as SCSI: the disk a dynamic VHD.
	ide_images
	"$KESTREL" vhd convert -q --to dynamic "$out/id0.img" "$out/id0.vhd"
	run_case payload-ide-vhd 1 "RESULT: PASS" "!FAIL" "sectors=16384 " -- \
		--kernel "$P/ide.bin" --cmdline "sectors=16384 hostpat=1 hostile=0" --timeout 60s \
		--disk "path=$out/id0.vhd,bus=ide"
	vhd_file_case payload-ide-vhd-file "$out/id0.vhd" 300 KESTREL-IDE-DMA-LBA300
fi

if [ $do_linux = 1 ]; then
	# Debian's ata_piix binds 00:01.1 and uses DMA; sd sees a raw disk
	# (primary master, 8 MiB) and a dynamic VHD (primary slave, 16 MiB), sr
	# the CD (secondary master, 300 blocks = 1200 sectors); each reads what
	# the host wrote, and what the guest writes reaches the host files
	# (tests/kit/ide.sh).
	ide_images
	dd if=/dev/zero of="$out/id1.raw" bs=1M count=16 2>/dev/null
	printf 'HOST-PATTERN-VHD' | dd of="$out/id1.raw" bs=512 seek=7 conv=notrunc 2>/dev/null
	rm -f "$out/id1.vhd"
	"$KESTREL" vhd convert -q --to dynamic "$out/id1.raw" "$out/id1.vhd"
	rm -f "$out/id1.raw"
	kit_tests_initrd "$out/initrd-kit-tests.gz"
	run_case linux-ide 0 "^ide: bound 0000:00:01\.1" "^ide: p0 sd[a-z] size=16384 model=KESTREL_HARDDISK" \
		"^ide: ata1: PATA max MWDMA2 cmd 0x1f0 ctl 0x3f6 bmdma 0x[0-9a-f]+ irq 14" \
		"^ide: ata2: PATA max MWDMA2 cmd 0x170 ctl 0x376 bmdma 0x[0-9a-f]+ irq 15" \
		"^ide: p1 sd[a-z] size=32768 " "^ide: s0 sr[0-9] size=1200 model=VIRTUAL_DVD-ROM" \
		"^ide: p0 mode=(XFER_MW_DMA_2|MWDMA2)$" "^ide: read p0: HOST-PATTERN-IDE" "^ide: read p1: HOST-PATTERN-VHD" \
		"^ide: read s0: HOST-PATTERN-CD" "^ide: read back p0: KESTREL-LINUX-IDE-P0" \
		"^ide: read back p1: KESTREL-LINUX-IDE-P1" "^ide: done" "KESTREL-GUEST-POWEROFF" -- \
		--kernel "$KIT/vmlinux" --initrd "$out/initrd-kit-tests.gz" --cpus 2 --mem 512M --timeout 300s \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=ata_piix,sd_mod,sr_mod kestrel.run=ide kestrel.ide_drives=p0,p1,s0" \
		--disk "path=$out/id0.img,bus=ide" --disk "path=$out/id1.vhd,bus=ide,unit=1" \
		--disk "path=$out/icd.iso,bus=ide,media=cdrom,unit=2"
	file_case linux-ide-host-file "$out/id0.img" 100 KESTREL-LINUX-IDE-P0
	vhd_file_case linux-ide-vhd-file "$out/id1.vhd" 100 KESTREL-LINUX-IDE-P1
fi

# ---- control socket, kestrel ctl, systemd, CI-rig mode (issue 5) --------------
# Workers run in the background with their default control socket (named
# after the case), driven through `kestrel ctl`; the checks are on what the
# guest prints, on what `kestrel ctl` returns, on the events and on the
# notifications a stand-in for systemd receives (tests/notify-listen.c).
NOTIFY_LISTEN=${NOTIFY_LISTEN:-$(first_of "$root/build/notify-listen" "$here/notify-listen" /work/notify-listen)}
UNIT=${KESTREL_UNIT:-$(first_of "$root/scripts/systemd/kestrel@.service" "$here/kestrel@.service" /work/kestrel@.service)}
LEASE_HOLD=${LEASE_HOLD:-$(first_of "$root/build/lease-hold" "$here/lease-hold" /work/lease-hold)}

ctl() { "$KESTREL" ctl "$@"; }
has() { grep -Eq -- "$2" "$1"; }                   # has FILE REGEX
lines_of() { grep -Ec -- "$2" "$1"; }              # lines_of FILE REGEX
fails() { ! "$@" >/dev/null 2>&1; }
alive() { ctl "$1" query-status >/dev/null 2>&1; }
more_than() { [ "$(lines_of "$1" "$2")" -gt "$3" ]; }  # more_than FILE REGEX N
# wait_for SECONDS CMD...: poll CMD every 0.1 s.
wait_for() {
	wt=$(($1 * 10))
	shift
	while [ $wt -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		wt=$((wt - 1))
	done
	return 1
}
# case_begin NAME (false when --filter leaves it out), expect WHY CMD...,
# case_end FILES...: one PASS/FAIL per case, with every failed expectation.
case_begin() {
	cname=$1
	: >"$out/why"
	echo "$cname" | grep -Eq -- "$filter"
}
expect() {
	ewhy=$1
	shift
	"$@" || printf '%s\n' "$ewhy" >>"$out/why"
}
case_end() {
	if [ ! -s "$out/why" ]; then
		pass=$((pass + 1))
		printf 'PASS: %s\n' "$cname"
		return
	fi
	# The first attempt of a case run through with_retry may be retried for
	# the rig's flakes (rig_flake; each worker's LOG and ERR are given).
	if [ "$case_try" = 1 ]; then
		st=failed
		grep -q "wedged" "$out/why" && st=wedged
		for f in "$@"; do
			case "$f" in *.err) ;; *) continue ;; esac
			if flake=$(rig_flake "${f%.err}.log" "$f" "$st" 0); then
				case_again=1
				echo "RETRY: $cname: $(tr '\n' ';' <"$out/why") -- $flake; once more"
				return
			fi
		done
	fi
	fail=$((fail + 1))
	printf 'FAIL: %s: %s\n' "$cname" "$(tr '\n' ';' <"$out/why")"
	for f in "$@"; do
		[ -f "$f" ] && { echo "---- $f (last 20 lines) ----"; tail -n 20 "$f" | tr -d '\r'; }
	done
	echo "--------------------------------------"
}
# with_retry CASE-FUNCTION ARGS...: run it; run it once more when its
# case_end asked for that (case_again). Outside it case_try is 0.
case_try=0 case_again=0
with_retry() {
	case_again=0 case_try=1
	"$@"
	if [ $case_again = 1 ]; then
		case_try=2
		"$@"
	fi
	case_try=0
}
# bg_run NAME ARGS...: a worker named NAME in the background; guest output
# in $out/NAME.log, its stderr in $out/NAME.err, its pid in $bg_pid.
bg_run() {
	bn=$1
	shift
	"$KESTREL" run --name "$bn" --serial stdio "$@" </dev/null >"$out/$bn.log" 2>"$out/$bn.err" &
	bg_pid=$!
}
# events FILE: the event names of a `kestrel ctl watch --json` log, in order,
# and whether their seq numbers only grow.
events() { grep -o '"event":"[a-z-]*"' "$1" | cut -d'"' -f4 | tr '\n' ' '; }
states() { grep -o '"state":"[a-z-]*"' "$1" | cut -d'"' -f4 | tr '\n' ' '; }
seq_grows() { grep -o '"seq":[0-9]*' "$1" | cut -d: -f2 | awk 'NR > 1 && $1 <= p { bad = 1 } { p = $1 } END { exit bad }'; }
# A hostile request stream: ~3 MB of random bytes (~11,000 lines), requests
# of the wrong shapes and types, truncated ones and a 200 KB line.
fuzz_stream() {
	head -c 3000000 /dev/urandom
	echo
	i=0
	while [ $i -lt 300 ]; do
		printf '{"id":%d,"command":"stats","arguments":{"x":%d}}\n' $i $i
		printf '{"id":"%d","command":"disk-remove","arguments":{"target":"two"}}\n' $i
		printf '{"command":"shutdown","arguments":{"timeout":-%d}}\n' $((i + 1))
		printf '{"id":[%d],"command":"pause"}\n' $i
		printf '{"id":%d,"command":"query-st\n' $i
		i=$((i + 1))
	done
	head -c 200000 /dev/zero | tr '\0' 'a'
	echo
}

# Status, pause/resume against a counting guest, errors, a second worker of
# the same name, `kestrel list`, the fuzzed stream, stop; events in order.
ctl_payload_case() {
	n=ctl-pay-$$
	case_begin payload-ctl || return 0
	bg_run "$n" --kernel "$P/counter.bin" --cmdline "period_ms=100" --cpus 2 --timeout 180s
	expect "the control socket never answered" wait_for 20 alive "$n"
	expect "the counter never ran" wait_for 30 has "$out/$n.log" "^counter: 5$"
	ctl "$n" watch --json >"$out/$n.ev" 2>&1 &
	wpid=$!
	sleep 1    # let it connect before the first event
	ctl "$n" query-status >"$out/st" 2>&1
	expect "query-status: not running" has "$out/st" "^state: running$"
	expect "query-status: no vCPU count" has "$out/st" "^vcpus: 2$"
	"$KESTREL" list >"$out/list" 2>&1
	expect "kestrel list lacks the VM" has "$out/list" "^$n +$bg_pid +running +2 +512M "
	ctl "$n" query-vm --json >"$out/vm" 2>&1
	expect "query-vm lacks the UART" has "$out/vm" '"name":"uart16550","bus":"pio","base":"0x3f8"'
	expect "query-vm lacks the CPU model" has "$out/vm" '"cpu":"host"'
	ctl "$n" stats --json >"$out/stats" 2>&1
	expect "stats lack exits" has "$out/stats" '"exits":\{"io":[1-9]'
	expect "pause failed" ctl "$n" pause
	ctl "$n" query-status >"$out/st" 2>&1
	expect "query-status: not paused" has "$out/st" "^state: paused$"
	c1=$(lines_of "$out/$n.log" "^counter: [0-9]+$")
	sleep 2
	c2=$(lines_of "$out/$n.log" "^counter: [0-9]+$")
	expect "the guest counted while paused ($c1 -> $c2)" [ "$c1" = "$c2" ]
	expect "pausing twice was accepted" fails ctl "$n" pause
	expect "resume failed" ctl "$n" resume
	expect "the counter did not go on after resume" wait_for 5 more_than "$out/$n.log" "^counter: [0-9]+$" "$c2"
	expect "resume when running was accepted" fails ctl "$n" resume
	ctl "$n" disk-add /nonexistent.img >/dev/null 2>"$out/e"
	expect "disk-add without a controller: not 'unsupported'" has "$out/e" "\(unsupported\)"
	expect "disk-add without a controller: no hint at --scsi-controller" has "$out/e" "with --scsi-controller"
	ctl "$n" net-link down >/dev/null 2>"$out/e"
	expect "net-link: not 'unsupported'" has "$out/e" "\(unsupported\)"
	# The i8042 through the real worker: no driver reads it here.
	ctl "$n" mouse-move 1 1 >/dev/null 2>"$out/e"
	expect "mouse-move without a mouse driver: $(cat "$out/e")" has "$out/e" "has not turned the mouse on .*\(failed\)"
	i=0
	while [ $i -lt 40 ] && ctl "$n" send-key "a b c d e f g h" >/dev/null 2>"$out/e"; do i=$((i + 1)); done
	expect "send-key to a guest that never reads its keyboard: $i sent, $(cat "$out/e")" \
		has "$out/e" "the keyboard's buffer is full.*\(failed\)"
	ctl "$n" frobnicate >/dev/null 2>"$out/e"
	expect "unknown command: not 'unknown-command'" has "$out/e" "\(unknown-command\)"
	"$KESTREL" run --name "$n" --kernel "$P/counter.bin" --timeout 20s </dev/null >/dev/null 2>"$out/dup.err"
	rc=$?
	expect "a second worker named $n exited $rc, not 2" [ $rc = 2 ]
	expect "no 'another VM named' message" has "$out/dup.err" "another VM named $n is running"
	fuzz_stream >"$out/fuzz.in"
	ctl "$n" raw <"$out/fuzz.in" >"$out/fuzz.out" 2>&1
	nrep=$(lines_of "$out/fuzz.out" '^\{"(id|error)')
	expect "the fuzzed stream got $nrep replies, want >= 10000" [ "$nrep" -ge 10000 ]
	expect "a fuzzed line got a success reply" fails grep -q '"return"' "$out/fuzz.out"
	expect "no request-too-long reply" has "$out/fuzz.out" '"code":"request-too-long"'
	expect "the worker died of the fuzzed stream" alive "$n"
	c3=$(lines_of "$out/$n.log" "^counter: [0-9]+$")
	# 15 s, not 5: on the rig a line every 100 ms once took longer than 5 s
	# to appear after the stream (the worker was alive and then stopped cleanly).
	expect "the guest stopped counting after the fuzzed stream" wait_for 15 more_than "$out/$n.log" "^counter: [0-9]+$" "$c3"
	ctl "$n" stop >"$out/stop" 2>&1
	expect "stop did not report the exit" has "$out/stop" "^$n stopped \(exit status 0\)$"
	reap_worker $bg_pid 300
	expect "the worker exited $rc after stop, not 0" [ $rc = 0 ]
	wait $wpid
	expect "events out of order: $(events "$out/$n.ev")" [ "$(events "$out/$n.ev")" = "state-changed state-changed stopped state-changed exiting " ]
	expect "states: $(states "$out/$n.ev")" [ "$(states "$out/$n.ev")" = "paused running stopped " ]
	expect "stop reason is not host-stop" has "$out/$n.ev" '"event":"stopped","data":\{"reason":"host-stop"'
	expect "event seq numbers do not grow" seq_grows "$out/$n.ev"
	"$KESTREL" list >"$out/list" 2>&1
	expect "kestrel list still shows the VM" fails grep -q "^$n " "$out/list"
	case_end "$out/$n.log" "$out/$n.err" "$out/$n.ev"
}

# reset restarts the machine (--on-reboot restart) with the socket alive.
ctl_reset_case() {
	n=ctl-rst-$$
	case_begin payload-ctl-reset || return 0
	bg_run "$n" --kernel "$P/counter.bin" --cmdline "period_ms=100" --timeout 120s --on-reboot restart
	expect "the control socket never answered" wait_for 20 alive "$n"
	expect "the counter never ran" wait_for 30 has "$out/$n.log" "^counter: 3$"
	ctl "$n" watch --json >"$out/$n.ev" 2>&1 &
	wpid=$!
	sleep 1    # let it connect before the first event
	expect "reset failed" ctl "$n" reset
	expect "the guest did not boot again" wait_for 30 more_than "$out/$n.log" "^counter: start" 1
	ctl "$n" query-status >"$out/st" 2>&1
	expect "query-status: not boots 2" has "$out/st" "^boots: 2$"
	expect "stop failed" ctl "$n" stop
	reap_worker $bg_pid 300
	expect "the worker exited $rc, not 0" [ $rc = 0 ]
	wait $wpid
	expect "events: $(events "$out/$n.ev")" [ "$(events "$out/$n.ev")" = "reset state-changed state-changed stopped state-changed exiting " ]
	expect "states: $(states "$out/$n.ev")" [ "$(states "$out/$n.ev")" = "restarting running stopped " ]
	expect "reset event is not host/restart" has "$out/$n.ev" '"event":"reset","data":\{"reason":"host","action":"restart"'
	case_end "$out/$n.log" "$out/$n.err" "$out/$n.ev"
}

# READY=1 comes once the guest runs (query-status says so at that moment), not
# for a worker that fails to start; STOPPING=1 at the end.
ctl_notify_case() {
	n=ctl-ntf-$$
	case_begin payload-notify || return 0
	if [ ! -x "$NOTIFY_LISTEN" ]; then
		echo "SKIP: payload-notify: no notify-listen helper"
		return 0
	fi
	nsock=$out/notify-$n.sock
	"$NOTIFY_LISTEN" "$nsock" 120 >"$out/$n.notify" &
	lpid=$!
	expect "notify-listen did not start" wait_for 5 test -S "$nsock"
	NOTIFY_SOCKET=$nsock "$KESTREL" run --name "$n-bad" --kernel /nonexistent </dev/null >/dev/null 2>&1
	sleep 0.3
	expect "a worker that failed to start sent READY=1" fails grep -q READY "$out/$n.notify"
	export NOTIFY_SOCKET="$nsock"
	bg_run "$n" --kernel "$P/counter.bin" --timeout 60s
	unset NOTIFY_SOCKET
	expect "READY=1 never came" wait_for 20 has "$out/$n.notify" "^notify: READY=1$"
	ctl "$n" query-status >"$out/st" 2>&1
	expect "at READY=1 the VM was not running" has "$out/st" "^state: running$"
	expect "no STATUS= running" has "$out/$n.notify" "^notify: STATUS=VM $n: running$"
	expect "stop failed" ctl "$n" stop
	reap_worker $bg_pid 300
	expect "the worker exited $rc, not 0" [ $rc = 0 ]
	wait $lpid
	expect "READY=1 not exactly once" [ "$(lines_of "$out/$n.notify" "READY=1")" = 1 ]
	expect "STOPPING=1 does not come last" [ "$(tail -n 2 "$out/$n.notify" | head -n 1)" = "notify: STOPPING=1" ]
	case_end "$out/$n.notify" "$out/$n.err"
}

# CI-rig mode: only the guest's output on stdout; --quiet leaves stderr empty
# on success; --timeout ends a running guest with 124 and one line.
ctl_ci_case() {
	case_begin payload-ci-mode || return 0
	"$KESTREL" run --kernel "$P/hello.bin" --cmdline code=5 --debug-exit --quiet --timeout 60s </dev/null >"$out/ci.out" 2>"$out/ci.err"
	rc=$?
	expect "hello: exit $rc, want 11" [ $rc = 11 ]
	expect "hello: no guest output" has "$out/ci.out" "hello from ring 3"
	expect "hello: worker lines on stdout" fails grep -q "^kestrel:" "$out/ci.out"
	expect "--quiet: stderr not empty" [ ! -s "$out/ci.err" ]
	"$KESTREL" run --kernel "$P/counter.bin" --quiet --timeout 2s </dev/null >"$out/ci2.out" 2>"$out/ci2.err"
	rc=$?
	expect "--timeout: exit $rc, want 124" [ $rc = 124 ]
	expect "--timeout: the guest did not run" has "$out/ci2.out" "^counter: 1$"
	expect "--timeout: not one line on stderr" [ "$(wc -l <"$out/ci2.err")" -eq 1 ]
	case_end "$out/ci.out" "$out/ci.err" "$out/ci2.err"
}

# disk-add opens its file off the control thread (issue #9): a FIFO is
# refused at once (a read-only one used to hang the worker's control
# thread for good), and while an open waits -- on a lease another process
# holds, as a file server's would -- query-status is answered and the add
# is still pending; once the lease is let go the disk is added.
ctl_disk_open_case() {
	n=ctl-dko-$$
	case_begin payload-ctl-disk-open || return 0
	if [ ! -x "$LEASE_HOLD" ]; then
		echo "SKIP: payload-ctl-disk-open: no lease-hold helper"
		return 0
	fi
	dd if=/dev/zero of="$out/dko.img" bs=1M count=4 2>/dev/null
	rm -f "$out/dko.fifo"
	mkfifo "$out/dko.fifo"
	bg_run "$n" --kernel "$P/counter.bin" --cmdline "period_ms=500" --scsi-controller --timeout 120s
	expect "the control socket never answered" wait_for 20 alive "$n"
	expect "the counter never ran" wait_for 30 has "$out/$n.log" "^counter: 1$"
	ctl "$n" disk-add "$out/dko.fifo" readonly=true >"$out/dko.add0" 2>&1
	expect "disk-add of a FIFO: $(tr '\n' ' ' <"$out/dko.add0")" has "$out/dko.add0" \
		"not a regular file or block device \\(failed\\)"
	: >"$out/dko.lease"
	"$LEASE_HOLD" "$out/dko.img" >"$out/dko.lease" 2>&1 &
	lpid=$!
	wait_for 10 has "$out/dko.lease" "^held$"
	if has "$out/dko.lease" "^held$"; then
		ctl "$n" disk-add "$out/dko.img" target=5 >"$out/dko.add" 2>&1 &
		apid=$!
		expect "the worker's open never reached the lease" wait_for 20 has "$out/dko.lease" "^break$"
		ctl "$n" query-status >"$out/dko.st" 2>&1
		expect "query-status while disk-add waits: $(tr '\n' ' ' <"$out/dko.st")" has "$out/dko.st" "^state: running$"
		expect "disk-add answered while its open still waited" pid_running $apid
		kill -TERM $lpid
		wait $apid
		expect "disk-add after the lease was let go: $(tr '\n' ' ' <"$out/dko.add")" has "$out/dko.add" "^target: 5$"
		ctl "$n" query-vm --json >"$out/dko.vm" 2>&1
		expect "query-vm does not list the disk" has "$out/dko.vm" '"target":5,"path":"[^"]*dko.img"'
		expect "disk-remove failed" ctl "$n" disk-remove 5
	else
		echo "note: payload-ctl-disk-open: no file lease here ($(cat "$out/dko.lease")); the slow-open half is skipped"
	fi
	kill -TERM $lpid 2>/dev/null
	wait $lpid 2>/dev/null
	expect "stop failed" ctl "$n" stop
	reap_worker $bg_pid 300
	expect "the worker exited $rc, not 0" [ "$rc" = 0 ]
	case_end "$out/$n.log" "$out/$n.err" "$out/dko.lease" "$out/dko.add"
}

if [ $do_payloads = 1 ]; then
	with_retry ctl_payload_case
	with_retry ctl_disk_open_case
	with_retry ctl_reset_case
	with_retry ctl_notify_case
	with_retry ctl_ci_case
fi

# ---- std VGA (issue 12): screendumps of pictures drawn by register -----------
# vga.bin draws one picture of tests/guest/lib/vga_pictures.h through the
# hardware; the dump must equal the picture vga-compare computes from the same
# definitions (not with kestrel's renderer) and, where QEMU is installed,
# QEMU's dump of the same payload on its std VGA, pixel for pixel.
# VGA_WINDOW=0 leaves out the cases that need guest accesses to the
# A0000-BFFFF window to reach the device (a memory hole there).
VGA_COMPARE=${VGA_COMPARE:-$(first_of "$root/build/vga-compare" "$here/vga-compare" /work/vga-compare)}
VGA_WINDOW=${VGA_WINDOW:-1}
vga_needs_window() {
	[ "$VGA_WINDOW" = 1 ] && return 0
	echo "$1" | grep -Eq -- "$filter" && echo "SKIP: $1: the A0000 window is RAM (VGA_WINDOW=0)"
	return 1
}
vga_case() {
	vpic=$2 n=vga-$2-$$
	case_begin "$1" || return 0
	if [ ! -x "$VGA_COMPARE" ]; then
		echo "SKIP: $1: no vga-compare helper"
		return 0
	fi
	bg_run "$n" --kernel "$P/vga.bin" --cmdline "pic=$vpic" --vga std --debug-exit --timeout 300s
	expect "the picture was never ready" wait_for 120 has "$out/$n.log" "^vga: picture ready$"
	expect "a check failed" fails grep -q "^FAIL" "$out/$n.log"
	ctl "$n" screendump "$out/vga-$vpic.png" >"$out/$n.dump" 2>&1
	expect "screendump: $(tr '\n' ' ' <"$out/$n.dump")" has "$out/$n.dump" "^file: "
	"$VGA_COMPARE" expect "$vpic" "$out/vga-$vpic.png" >"$out/$n.cmp" 2>&1
	expect "not the picture: $(cat "$out/$n.cmp")" has "$out/$n.cmp" "^match "
	ctl "$n" screendump "$out/no-such-dir/x.png" >/dev/null 2>"$out/$n.dump"
	expect "a dump into a missing folder: not 'failed'" has "$out/$n.dump" "No such file or directory \(failed\)"
	expect "stop failed" ctl "$n" stop >"$out/$n.stop" 2>&1
	reap_worker $bg_pid 300
	expect "the worker exited $rc, not 0" [ "$rc" = 0 ]
	case_end "$out/$n.log" "$out/$n.err"
}
# vga_qemu_case NAME PIC: the same payload on QEMU's std VGA (TCG), its
# monitor's screendump through a pair of fifos, against kestrel's dump.
vga_qemu_case() {
	vpic=$2 qd=$out/qemu-$2
	case_begin "$1" || return 0
	if ! command -v qemu-system-x86_64 >/dev/null || [ ! -f "$out/vga-$vpic.png" ]; then
		echo "SKIP: $1: no QEMU here, or no kestrel dump to compare"
		return 0
	fi
	mkdir -p "$qd"
	mkfifo "$qd/mon.in" "$qd/mon.out"
	cat "$qd/mon.out" >"$qd/mon.log" &
	mpid=$!
	QEMU_ACCEL=tcg GUEST_TIMEOUT=300 "$root/tests/guest/run-qemu.sh" "$P/vga.bin" \
		-append "pic=$vpic" -- -device VGA -monitor "pipe:$qd/mon" >"$qd/serial.log" 2>&1 &
	qpid=$!
	expect "QEMU: the picture was never ready" wait_for 200 has "$qd/serial.log" "^vga: picture ready$"
	echo "screendump $qd/dump.ppm" >"$qd/mon.in"
	expect "QEMU wrote no screendump" wait_for 20 test -s "$qd/dump.ppm"
	sleep 1
	echo quit >"$qd/mon.in"
	wait $qpid
	kill $mpid 2>/dev/null
	"$VGA_COMPARE" same "$out/vga-$vpic.png" "$qd/dump.ppm" >"$qd/cmp" 2>&1
	expect "kestrel's dump differs from QEMU's: $(cat "$qd/cmp")" has "$qd/cmp" "^match "
	case_end "$qd/serial.log"
}

# Hostile DISPI and CRTC values: clamped as the guest reads them back, and
# the worker still draws and answers (the dump's content is not checked).
vga_hostile_case() {
	n=vga-hostile-$$
	case_begin payload-vga-hostile || return 0
	bg_run "$n" --kernel "$P/vga.bin" --cmdline "pic=hostile" --vga std --debug-exit --timeout 300s
	expect "the guest never got through" wait_for 120 has "$out/$n.log" "^vga: picture ready$"
	expect "a check failed" fails grep -q "^FAIL" "$out/$n.log"
	for i in 1 2 3; do
		ctl "$n" screendump "$out/$n-$i.png" >"$out/$n.dump" 2>&1
		expect "screendump $i: $(tr '\n' ' ' <"$out/$n.dump")" has "$out/$n.dump" "^file: "
	done
	expect "the worker died" alive "$n"
	expect "stop failed" ctl "$n" stop >"$out/$n.stop" 2>&1
	reap_worker $bg_pid 300
	expect "the worker exited $rc, not 0" [ "$rc" = 0 ]
	case_end "$out/$n.log" "$out/$n.err"
}

# The VNC server in the sandboxed worker (seccomp on, the display kind's
# list): tests/vnc_hostile.h's clients (huge cut text, bad pixel formats,
# absurd resizes and update requests, file transfer, junk QEMU messages, a
# client stalling mid-message, noise) leave the worker alive, and then a
# frame equals the VBE picture and the screendump.
VNC_CLIENT=${VNC_CLIENT:-$(first_of "$root/build/vnc-client" "$here/vnc-client" /work/vnc-client)}
vnc_hostile_case() {
	n=vnc-hostile-$$ vport=$((6900 + $$ % 1000))
	case_begin payload-vnc-hostile || return 0
	if [ ! -x "$VNC_CLIENT" ] || [ ! -x "$VGA_COMPARE" ]; then
		echo "SKIP: payload-vnc-hostile: no vnc-client or vga-compare helper"
		return 0
	fi
	ip link set lo up 2>/dev/null || true
	bg_run "$n" --kernel "$P/vga.bin" --cmdline "pic=vbe" --vga std --debug-exit --timeout 300s \
		--display "vnc=127.0.0.1:$vport"
	expect "the picture was never ready" wait_for 120 has "$out/$n.log" "^vga: picture ready$"
	"$VNC_CLIENT" "127.0.0.1:$vport" hostile >"$out/$n.hostile" 2>&1
	expect "hostile clients: $(tail -n 2 "$out/$n.hostile" | tr '\n' ' ')" \
		has "$out/$n.hostile" "^vnc-client: hostile garbage: done$"
	expect "the worker died of a hostile client" alive "$n"
	"$VNC_CLIENT" "127.0.0.1:$vport" frame "$out/$n.ppm" >"$out/$n.frame" 2>&1
	"$VGA_COMPARE" expect vbe "$out/$n.ppm" >"$out/$n.cmp" 2>&1
	expect "the frame after them is not the picture: $(cat "$out/$n.frame" "$out/$n.cmp" | tr '\n' ' ')" \
		has "$out/$n.cmp" "^match "
	ctl "$n" screendump "$out/$n.png" >/dev/null 2>&1
	"$VGA_COMPARE" same "$out/$n.png" "$out/$n.ppm" >"$out/$n.cmp" 2>&1
	expect "the frame is not the screendump: $(cat "$out/$n.cmp")" has "$out/$n.cmp" "^match "
	expect "stop failed" ctl "$n" stop >"$out/$n.stop" 2>&1
	reap_worker $bg_pid 300
	expect "the worker exited $rc, not 0" [ "$rc" = 0 ]
	case_end "$out/$n.log" "$out/$n.err" "$out/$n.hostile"
}

if [ $do_payloads = 1 ]; then
	vga_hostile_case
	vnc_hostile_case
	vga_needs_window payload-vga-regs &&
		run_case payload-vga-regs 1 "RESULT: PASS" "!FAIL" "PASS: write mode 0 XOR the latches" -- \
			--kernel "$P/vga.bin" --cmdline pic=regs --vga std --timeout 60s
	for vp in vbe 13h text; do
		[ $vp = vbe ] || vga_needs_window payload-vga-$vp || continue
		vga_case payload-vga-$vp $vp
		vga_qemu_case payload-vga-$vp-qemu $vp
	done
fi

# Debian's bochs-drm on the std VGA with the kernel booted directly: fbcon
# draws the kernel's messages (tests/kit/fb.sh puts them on tty1), the guest
# prints the md5 of its framebuffer every second, and a screendump taken
# meanwhile must hash the same (XRGB8888 as B, G, R, 0): what kestrel shows is
# what the guest drew, pixel for pixel, through the framebuffer's memory slot
# and its dirty log.
linux_fbcon_case() {
	n=fb-$$
	case_begin linux-bochs-fbcon || return 0
	if [ ! -x "$VGA_COMPARE" ]; then
		echo "SKIP: linux-bochs-fbcon: no vga-compare helper"
		return 0
	fi
	kit_tests_initrd "$out/initrd-fb.gz"
	bg_run "$n" --kernel "$KIT/vmlinux" --initrd "$out/initrd-fb.gz" --cpus 2 --mem 512M \
		--vga std --timeout 400s \
		--cmdline "console=tty0 console=ttyS0 panic=-1 quiet vt.global_cursor_default=0 kestrel.modules=bochs kestrel.run=fb kestrel.fb_secs=150"
	expect "bochs-drm made no framebuffer" wait_for 300 has "$out/$n.log" "^fb: md5 "
	expect "fb0 is not bochs-drm's" has "$out/$n.log" "^fb: name bochs-?drmdrmfb"
	sleep 3
	ctl "$n" screendump "$out/$n.png" >"$out/$n.dump" 2>&1
	expect "screendump: $(tr '\n' ' ' <"$out/$n.dump")" has "$out/$n.dump" "^file: "
	sum=$("$VGA_COMPARE" raw "$out/$n.png" | md5sum | cut -d' ' -f1)
	# (The guest's tty ends lines with CR LF.)
	expect "the dump (md5 $sum) is not the guest's framebuffer" wait_for 5 has "$out/$n.log" "^fb: md5 $sum"
	lit=$("$VGA_COMPARE" count "$out/$n.png")
	expect "the dump shows almost nothing ($lit pixels lit)" [ "${lit:-0}" -gt 2000 ]
	ctl "$n" stop >"$out/$n.stop" 2>&1
	reap_worker $bg_pid 400
	expect "the worker exited $rc, not 0" [ "$rc" = 0 ]
	case_end "$out/$n.log" "$out/$n.err"
}
if [ $do_linux = 1 ]; then
	with_retry linux_fbcon_case
fi

# ---- guest memory (issue 10) -----------------------------------------------
# The payloads print the addresses of pages they (or their device) write and
# keep writing them in rounds; the worker's dirty log, read through the
# control socket, must list those pages and not a page written only before
# logging started.

# in_ranges FILE ADDR: a `dirty-log fetch --json` reply in FILE has ADDR's page.
in_ranges() {
	for r in $(grep -o '"gpa":"0x[0-9a-f]*","pages":[0-9]*' "$1" | sed 's/"gpa":"//; s/","pages":/:/'); do
		rs=$((${r%:*}))
		[ $(($2)) -ge $rs ] && [ $(($2)) -lt $((rs + ${r#*:} * 4096)) ] && return 0
	done
	return 1
}
# addr_of LOG KEY: the address the guest printed as KEY=0x...
addr_of() { grep -o "$2=0x[0-9a-f]*" "$1" | head -n 1 | cut -d= -f2; }
# rounds_after N NAME REGEX: wait until REGEX lines number more than N + 1
# (so one whole round began after the count was taken).
rounds_after() { wait_for 60 more_than "$out/$2.log" "$3" $(($1 + 1)); }
# dirty_fetch NAME FILE REGEX: two rounds on, fetch the log into FILE.
dirty_fetch() {
	rounds_after "$(lines_of "$out/$1.log" "$3")" "$1" "$3" || echo "no round came" >>"$out/why"
	ctl "$1" dirty-log fetch --json >"$2" 2>&1
}
# dirty_session NAME REGEX: once worker NAME's guest printed round 2 (a
# REGEX line ending in 2), start the log and fetch it twice, each two rounds
# on: NAME.d1, NAME.d2. Logging stays on.
dirty_session() {
	expect "the control socket never answered" wait_for 20 alive "$1"
	expect "the guest never got to round 2" wait_for 60 has "$out/$1.log" "${2} 2$"
	expect "dirty-log start failed" ctl "$1" dirty-log start
	dirty_fetch "$1" "$out/$1.d1" "$2"
	dirty_fetch "$1" "$out/$1.d2" "$2"
}
# dirty_in_both NAME WHAT ADDR: both fetches list ADDR's page.
dirty_in_both() {
	expect "first fetch: $2 $3 is missing" in_ranges "$out/$1.d1" "${3:-0}"
	expect "second fetch: $2 $3 is missing" in_ranges "$out/$1.d2" "${3:-0}"
}
# stop_worker NAME: stop it, reap it, its log without CRs.
stop_worker() {
	ctl "$1" stop >/dev/null 2>&1
	reap_worker $bg_pid 300
	tr -d '\r' <"$out/$1.log" >"$out/$1.tmp" && mv "$out/$1.tmp" "$out/$1.log"
}

# mem.bin: the VGA window is a hole, the BIOS segment read-only (the
# worker counts the 4 writes), and the page the guest keeps writing is in
# the dirty log, twice (so clearing re-arms it), the quiet one never.
mem_payload_case() {
	n=mem-$$
	case_begin payload-mem || return 0
	bg_run "$n" --kernel "$P/mem.bin" --cmdline "hole=1 rounds=300 period_ms=100" --timeout 120s --stats
	dirty_session "$n" "^mem: round"
	ctl "$n" dirty-log start >/dev/null 2>"$out/e"
	expect "a second start: not 'invalid-state'" has "$out/e" "\(invalid-state\)"
	expect "dirty-log stop failed" ctl "$n" dirty-log stop
	ctl "$n" dirty-log fetch >/dev/null 2>"$out/e"
	expect "fetch after stop: not 'invalid-state'" has "$out/e" "\(invalid-state\)"
	ctl "$n" stats --json >"$out/$n.stats" 2>&1
	ctl "$n" query-vm --json >"$out/$n.vm" 2>&1
	stop_worker "$n"
	busy=$(addr_of "$out/$n.log" busy) quiet=$(addr_of "$out/$n.log" quiet)
	expect "the guest printed no page addresses" [ -n "$busy" ] && [ -n "$quiet" ]
	expect "a guest check failed" fails grep -q "^FAIL" "$out/$n.log"
	expect "no PASS for the VGA hole" has "$out/$n.log" "^PASS: VGA window is not RAM"
	expect "no PASS for the read-only BIOS segment" has "$out/$n.log" "^PASS: BIOS segment is read-only"
	expect "first fetch: no page count" has "$out/$n.d1" '"pages":[1-9]'
	dirty_in_both "$n" "the busy page" "$busy"
	expect "the quiet page $quiet is dirty" fails in_ranges "$out/$n.d1" "${quiet:-0}"
	expect "stats: the 4 BIOS writes did not reach the device" has "$out/$n.stats" '"rom_writes":4[,}]'
	expect "query-vm: the BIOS segment is not a read-only RAM slot" has "$out/$n.vm" \
		'"name":"bios","gpa":"0xf0000","size":65536,"kind":"ram","readonly":true'
	expect "query-vm: a slot covers the VGA window" fails grep -q '"gpa":"0xa0000"' "$out/$n.vm"
	expect "--stats: no read-only write count" has "$out/$n.err" "read-only memory writes: bios@0xf0000=4$"
	case_end "$out/$n.log" "$out/$n.err" "$out/$n.d1"
}

# vscsi.bin dirty=N: a READ lands in a page only the device writes, and the
# device writes the used ring: KVM sees neither, the dirty log has both.
mem_dma_case() {
	n=memdma-$$
	case_begin payload-mem-dma || return 0
	vscsi_images
	bg_run "$n" --kernel "$P/vscsi.bin" --cmdline "dirty=300 period_ms=100" --timeout 120s \
		--disk "path=$out/vd0.img,bus=scsi"
	dirty_session "$n" "^vscsi: dirty round"
	stop_worker "$n"
	dma=$(addr_of "$out/$n.log" dma) used=$(addr_of "$out/$n.log" used)
	expect "the guest printed no page addresses" [ -n "$dma" ] && [ -n "$used" ]
	expect "a guest check failed" fails grep -q "^FAIL" "$out/$n.log"
	dirty_in_both "$n" "the DMA page" "$dma"
	dirty_in_both "$n" "the used ring" "$used"
	case_end "$out/$n.log" "$out/$n.err" "$out/$n.d1"
}

if [ $do_payloads = 1 ]; then
	with_retry mem_payload_case
	with_retry mem_dma_case
fi

# The unit's ExecStart (READY=1 to a stand-in NOTIFY_SOCKET) and ExecStop
# (ACPI power button, which busybox acpid in the guest turns into a clean
# poweroff), taken from scripts/systemd/kestrel@.service.
ctl_linux_systemd_case() {
	n=unit-$$
	case_begin linux-systemd-acpi-shutdown || return 0
	if [ ! -x "$NOTIFY_LISTEN" ] || [ ! -f "$UNIT" ]; then
		echo "SKIP: linux-systemd-acpi-shutdown: no notify-listen helper or unit file"
		return 0
	fi
	cat "$KIT/initrd.cpio.gz" "$KIT/modules.cpio.gz" >"$out/initrd-ctl.gz"
	cat >"$out/$n.json" <<JSON
{ "kernel": "$KIT/vmlinux", "initrd": "$out/initrd-ctl.gz", "cpus": 2, "mem": "256M",
  "cmdline": "console=ttyS0 panic=-1 quiet kestrel.modules=button,evdev kestrel.run=idle kestrel.idle=100",
  "timeout": "150s", "on_reboot": "exit" }
JSON
	unit_cmd() { sed -n "s/^$1=-\{0,1\}//p" "$UNIT" | sed "s|/usr/local/bin/kestrel|$KESTREL|; s|/etc/kestrel/|$out/|; s|%i|$n|g"; }
	start_cmd=$(unit_cmd ExecStart)
	stop_cmd=$(unit_cmd ExecStop)
	nsock=$out/notify-$n.sock
	"$NOTIFY_LISTEN" "$nsock" 400 >"$out/$n.notify" &
	lpid=$!
	wait_for 5 test -S "$nsock"
	# shellcheck disable=SC2086 # the unit's command line, split as systemd would
	NOTIFY_SOCKET=$nsock $start_cmd </dev/null >"$out/$n.log" 2>"$out/$n.err" &
	wpid=$!
	expect "READY=1 never came" wait_for 60 has "$out/$n.notify" "^notify: READY=1$"
	ctl "$n" query-status >"$out/st" 2>&1
	expect "at READY=1 the VM was not running" has "$out/st" "^state: running$"
	ctl "$n" watch --json >"$out/$n.ev" 2>&1 &
	evpid=$!
	sleep 1
	expect "acpid never started in the guest" wait_for 120 has "$out/$n.log" "KESTREL-GUEST-ACPID"
	expect "the guest never got to idle" wait_for 60 has "$out/$n.log" "^idle: 1"
	# shellcheck disable=SC2086
	$stop_cmd >"$out/$n.stop" 2>&1
	rc=$?
	expect "ExecStop ($stop_cmd) exited $rc" [ $rc = 0 ]
	expect "ExecStop did not wait for the exit" has "$out/$n.stop" "^$n stopped \(exit status 0\)$"
	reap_worker $wpid 300
	expect "the worker exited $rc, not 0" [ $rc = 0 ]
	wait $evpid
	wait $lpid
	tr -d '\r' <"$out/$n.log" >"$out/$n.tmp" && mv "$out/$n.tmp" "$out/$n.log"
	expect "no shutdown message from the guest's acpid handler" has "$out/$n.log" "^KESTREL-GUEST-ACPI-SHUTDOWN"
	expect "the guest powered off by itself, not by the button" fails grep -q "KESTREL-GUEST-POWEROFF" "$out/$n.log"
	expect "events: $(events "$out/$n.ev")" [ "$(events "$out/$n.ev")" = "powerdown state-changed stopped state-changed exiting " ]
	expect "states: $(states "$out/$n.ev")" [ "$(states "$out/$n.ev")" = "shutting-down stopped " ]
	expect "not stopped by guest-poweroff" has "$out/$n.ev" '"event":"stopped","data":\{"reason":"guest-poweroff","code":0\}'
	expect "event seq numbers do not grow" seq_grows "$out/$n.ev"
	expect "STOPPING=1 missing" has "$out/$n.notify" "^notify: STOPPING=1$"
	case_end "$out/$n.log" "$out/$n.err" "$out/$n.ev" "$out/$n.notify"
}

# A disk hot-added and removed through the socket, seen by Debian's
# virtio_scsi (tests/kit/vscsi.sh waits for target 2 to come and go).
ctl_linux_hotplug_case() {
	n=ctl-hp-$$
	case_begin linux-ctl-disk-hotplug || return 0
	for s in 0:8 1:16 2:4; do
		dd if=/dev/zero of="$out/hp${s%:*}.img" bs=1M count="${s#*:}" 2>/dev/null
	done
	[ -f "$out/initrd-ctl.gz" ] || cat "$KIT/initrd.cpio.gz" "$KIT/modules.cpio.gz" >"$out/initrd-ctl.gz"
	bg_run "$n" --kernel "$KIT/vmlinux" --initrd "$out/initrd-ctl.gz" --cpus 2 --mem 512M \
		--timeout 300s --on-reboot exit --disk "path=$out/hp0.img,bus=scsi" --disk "path=$out/hp1.img,bus=scsi" \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=virtio_pci,virtio_scsi,sd_mod kestrel.run=vscsi kestrel.vscsi_hotplug=1"
	expect "the control socket never answered" wait_for 20 alive "$n"
	expect "the guest never looked for target 2" wait_for 180 has "$out/$n.log" "vscsi: t2 absent at start"
	ctl "$n" watch --json >"$out/$n.ev" 2>&1 &
	wpid=$!
	sleep 1    # let it connect before the first event
	ctl "$n" disk-add "$out/hp2.img" >"$out/add" 2>&1
	expect "disk-add did not pick target 2" has "$out/add" "^target: 2$"
	expect "the guest did not see the hot-added disk" wait_for 90 has "$out/$n.log" "vscsi: added t2 sd[a-z]+ size=8192 "
	ctl "$n" query-vm --json >"$out/vm" 2>&1
	expect "query-vm does not list it" has "$out/vm" '"target":2,"path":"[^"]*hp2.img","format":"[a-z]+","readonly":false,"hotplugged":true'
	expect "disk-remove failed" ctl "$n" disk-remove 2
	ctl "$n" disk-remove 2 >/dev/null 2>"$out/e"
	expect "removing it twice: not 'not-found'" has "$out/e" "\(not-found\)"
	expect "the guest did not see the removal" wait_for 90 has "$out/$n.log" "vscsi: removed t2"
	reap_worker $bg_pid 300
	expect "the worker exited $rc, not 0" [ $rc = 0 ]
	wait $wpid
	expect "events: $(events "$out/$n.ev")" [ "$(events "$out/$n.ev")" = "device-added device-removed stopped state-changed exiting " ]
	case_end "$out/$n.log" "$out/$n.err" "$out/$n.ev"
}

# The same through an empty controller: --scsi-controller and no --disk, so
# Debian's virtio_scsi scans a bus with no target, then sees the disk that
# disk-add puts at target 2 come and go (tests/kit/vscsi.sh with
# kestrel.vscsi_disks=0 waits for no disk at start).
ctl_linux_hotplug_empty_case() {
	n=ctl-hpe-$$
	case_begin linux-ctl-disk-hotplug-empty || return 0
	dd if=/dev/zero of="$out/hpe2.img" bs=1M count=4 2>/dev/null
	[ -f "$out/initrd-ctl.gz" ] || cat "$KIT/initrd.cpio.gz" "$KIT/modules.cpio.gz" >"$out/initrd-ctl.gz"
	bg_run "$n" --kernel "$KIT/vmlinux" --initrd "$out/initrd-ctl.gz" --cpus 2 --mem 512M \
		--timeout 300s --on-reboot exit --scsi-controller \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=virtio_pci,virtio_scsi,sd_mod kestrel.run=vscsi kestrel.vscsi_disks=0 kestrel.vscsi_hotplug=1"
	expect "the control socket never answered" wait_for 20 alive "$n"
	expect "the guest never looked for target 2" wait_for 180 has "$out/$n.log" "vscsi: t2 absent at start"
	expect "the guest saw a disk at boot" fails grep -Eq "vscsi: t[0-9]+ sd" "$out/$n.log"
	ctl "$n" query-vm --json >"$out/vm" 2>&1
	expect "query-vm lists no virtio-scsi controller" has "$out/vm" '"name":"virtio-scsi","bus":"pci"'
	expect "query-vm lists disks before disk-add" has "$out/vm" '"disks":\[\]'
	ctl "$n" watch --json >"$out/$n.ev" 2>&1 &
	wpid=$!
	sleep 1    # let it connect before the first event
	ctl "$n" disk-add "$out/hpe2.img" target=2 >"$out/add" 2>&1
	expect "disk-add on the empty controller failed: $(tr '\n' ' ' <"$out/add")" has "$out/add" "^target: 2$"
	expect "the guest did not see the hot-added disk" wait_for 90 has "$out/$n.log" "vscsi: added t2 sd[a-z]+ size=8192 "
	ctl "$n" query-vm --json >"$out/vm" 2>&1
	expect "query-vm does not list it" has "$out/vm" '"disks":\[\{"target":2,"path":"[^"]*hpe2.img","format":"[a-z]+","readonly":false,"hotplugged":true\}\]'
	expect "disk-remove failed" ctl "$n" disk-remove 2
	expect "the guest did not see the removal" wait_for 90 has "$out/$n.log" "vscsi: removed t2"
	reap_worker $bg_pid 300
	expect "the worker exited $rc, not 0" [ $rc = 0 ]
	wait $wpid
	expect "events: $(events "$out/$n.ev")" [ "$(events "$out/$n.ev")" = "device-added device-removed stopped state-changed exiting " ]
	case_end "$out/$n.log" "$out/$n.err" "$out/$n.ev"
}

if [ $do_linux = 1 ]; then
	with_retry ctl_linux_systemd_case
	with_retry ctl_linux_hotplug_case
	with_retry ctl_linux_hotplug_empty_case
fi

# ---- VM state: save and restore (issue 14) ----------------------------------
# A worker saves its VM (kestrel ctl NAME save FILE) and exits; a new worker
# brings it back (kestrel run --restore FILE). The guest's own output must
# go on where it stopped: the serial lines of all the workers together are
# one unbroken sequence.
# consecutive FILE PREFIX [SUFFIX]: the numbers of the lines "PREFIX N[ SUFFIX]"
# in FILE count up by one from 1, none missing or repeated.
consecutive() {
	# A worker stopped while its guest was mid-line leaves that line
	# unterminated ("counter: 3" of 37): not a line of the count.
	if [ -n "$(tail -c 1 "$1")" ]; then cut_last='$d'; else cut_last=; fi
	tr -d '\r' <"$1" | sed "$cut_last" | sed -n "s/^$2 \([0-9][0-9]*\)${3:+ $3}\$/\1/p" |
		awk 'NR != $1 { bad = 1; exit } { last = $1 } END { if (bad || !last) exit 1 }'
}
# tests/state-tamper.c: one field of a saved VM changed, its checksum fixed.
STATE_TAMPER=${STATE_TAMPER:-$(first_of "$root/build/state-tamper" "$here/state-tamper" /work/state-tamper)}
# state_save NAME FILE: save the worker named NAME to FILE; it exits 0.
state_save() {
	ctl "$1" save "$2" >"$out/$1.save" 2>&1 && has "$out/$1.save" "saved to $2"
}

# counter.bin through three save/restore round trips, each in a new worker.
state_counter_case() {
	n=st-cnt-$$
	case_begin payload-state-counter || return 0
	rm -f "$out/$n".* "$out/$n-all.log"
	bg_run "$n" --kernel "$P/counter.bin" --cmdline "period_ms=50" --timeout 120s
	for r in 1 2 3; do
		expect "round $r: the counter never ran" wait_for 20 has "$out/$n.log" "^counter: [0-9]*[05]$"
		expect "round $r: the save failed: $(tail -n 2 "$out/$n.save" 2>/dev/null | tr '\n' ' ')" \
			state_save "$n" "$out/$n.state"
		reap_worker $bg_pid 120
		expect "round $r: the saved worker exited $rc, not 0" [ "$rc" = 0 ]
		cat "$out/$n.log" >>"$out/$n-all.log"
		expect "round $r: the state file is not private" [ "$(stat -c %a "$out/$n.state")" = 600 ]
		# Empty before the start: the next wait must not see this log's lines.
		: >"$out/$n.log"
		"$KESTREL" run --name "$n" --restore "$out/$n.state" --timeout 120s </dev/null \
			>>"$out/$n.log" 2>"$out/$n.err" &
		bg_pid=$!
		expect "round $r: the restored worker's socket never answered" wait_for 20 alive "$n"
	done
	expect "the restored counter never ran" wait_for 20 more_than "$out/$n.log" "^counter: " 5
	expect "stop failed" ctl "$n" stop
	reap_worker $bg_pid 120
	cat "$out/$n.log" >>"$out/$n-all.log"
	expect "the counter did not go on from where it was saved: $(tr -d '\r' <"$out/$n-all.log" | grep -c '^counter: [0-9]') lines" \
		consecutive "$out/$n-all.log" "counter:"
	expect "the guest booted again after a restore" [ "$(lines_of "$out/$n-all.log" "^counter: start")" = 1 ]
	case_end "$out/$n-all.log" "$out/$n.err"
}

# vscsi.bin writing and reading back its disk with 32 requests in flight is
# saved mid-transfer; restored, it finishes every round and every word it
# reads back is the one it wrote (tests/guest/vscsi.c, stream=N).
state_vscsi_case() {
	n=st-vs-$$
	case_begin payload-state-disk || return 0
	vscsi_images
	bg_run "$n" --kernel "$P/vscsi.bin" --cmdline "stream=400" --timeout 120s --debug-exit \
		--disk "path=$out/vd0.img,bus=scsi"
	expect "the transfer never started" wait_for 30 has "$out/$n.log" "^vscsi: stream round 20 ok"
	expect "the save failed: $(tail -n 2 "$out/$n.save" 2>/dev/null | tr '\n' ' ')" state_save "$n" "$out/$n.state"
	reap_worker $bg_pid 120
	expect "the saved worker exited $rc, not 0" [ "$rc" = 0 ]
	expect "the save came after the last round" fails has "$out/$n.log" "RESULT"
	mv "$out/$n.log" "$out/$n-1.log"
	"$KESTREL" run --restore "$out/$n.state" --timeout 120s </dev/null >"$out/$n.log" 2>"$out/$n.err"
	rc=$?
	expect "the restored worker exited $rc, not 1" [ "$rc" = 1 ]
	cat "$out/$n-1.log" "$out/$n.log" >"$out/$n-all.log"
	expect "a round was lost or repeated" consecutive "$out/$n-all.log" "vscsi: stream round" ok
	expect "the restored guest did not finish" has "$out/$n.log" "^RESULT: PASS"
	expect "a check failed" fails grep -q "^FAIL" "$out/$n.log"
	case_end "$out/$n-all.log" "$out/$n.err"
}

# What --restore refuses, each with one line and status 2, nothing run: a
# truncated file, a damaged byte in the header, in a record and in the RAM
# map, a flag that would change the machine, a disk that is another image
# (same name, other VHD unique id).
state_refused_case() {
	n=st-bad-$$
	case_begin payload-state-refused || return 0
	rm -f "$out"/vhd*
	"$KESTREL" vhd create -q --type dynamic --size 8M "$out/vhdst.vhd"
	bg_run "$n" --kernel "$P/counter.bin" --timeout 60s --disk "path=$out/vhdst.vhd,bus=scsi"
	expect "the counter never ran" wait_for 20 has "$out/$n.log" "^counter: 3$"
	expect "the save failed" state_save "$n" "$out/$n.state"
	reap_worker $bg_pid 60
	sz=$(wc -c <"$out/$n.state")
	refuse() { # refuse WHY FILE REGEX [FLAGS...]: --restore FILE exits 2 with one line matching REGEX
		rw=$1 rf=$2 rx=$3
		shift 3
		"$KESTREL" run --restore "$rf" --timeout 10s "$@" </dev/null >"$out/$n.rlog" 2>"$out/$n.rerr"
		rrc=$?
		expect "$rw: status $rrc, not 2" [ "$rrc" = 2 ]
		expect "$rw: not one line: $(head -c 300 "$out/$n.rerr")" [ "$(wc -l <"$out/$n.rerr")" = 1 ]
		expect "$rw: the message does not say /$rx/: $(head -c 300 "$out/$n.rerr")" has "$out/$n.rerr" "$rx"
		expect "$rw: the guest ran" fails has "$out/$n.rlog" "counter"
	}
	flip() { # flip OFFSET: a copy of the state with the byte at OFFSET inverted
		cp "$out/$n.state" "$out/$n.bad"
		b=$(dd if="$out/$n.bad" bs=1 skip="$1" count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
		printf "\\$(printf %o $((255 - ${b:-0})))" | dd of="$out/$n.bad" bs=1 seek="$1" conv=notrunc 2>/dev/null
	}
	head -c $((sz / 2)) "$out/$n.state" >"$out/$n.bad"
	refuse "truncated" "$out/$n.bad" "truncated"
	flip 9
	refuse "header byte" "$out/$n.bad" "format version|header"
	flip 200
	refuse "record byte" "$out/$n.bad" "checksum mismatch"
	flip 4000
	refuse "a later record byte" "$out/$n.bad" "checksum mismatch|record"
	refuse "--mem with --restore" "$out/$n.state" "--mem: cannot be changed with --restore" --mem 1G
	refuse "--cpu with --restore" "$out/$n.state" "--cpu: cannot be changed with --restore" --cpu x86-64-v1
	refuse "a missing file" "$out/missing.state" "No such file"
	mv "$out/vhdst.vhd" "$out/vhdst.orig"
	"$KESTREL" vhd create -q --type dynamic --size 8M "$out/vhdst.vhd"
	refuse "another VHD under the disk's name" "$out/$n.state" "unique id"
	mv "$out/vhdst.orig" "$out/vhdst.vhd"
	if [ -x "$STATE_TAMPER" ]; then
		for t in "VCPU 0 12 41" "DEVS 0 12 ff" "PIT2 0 13 07" "CLCK 0 7 80" "IRQC 0 4 ff"; do
			cp "$out/$n.state" "$out/$n.bad"
			# shellcheck disable=SC2086 # the words are the tamper's arguments
			"$STATE_TAMPER" "$out/$n.bad" $t
			refuse "hostile $t" "$out/$n.bad" "out of range|malformed|does not match"
		done
		# Leaf 1 (the table's second entry) ECX bits 16-23 made 0x01: bit 16
		# is reserved, so no KVM offers it, and the check names it.
		cp "$out/$n.state" "$out/$n.bad"
		"$STATE_TAMPER" "$out/$n.bad" CPUI 0 58 01
		refuse "a CPUID bit no host offers" "$out/$n.bad" \
			"the saved CPU has CPUID 0x1\.0 ecx bit 16 that this host's KVM cannot offer"
	fi
	"$KESTREL" run --restore "$out/$n.state" --timeout 3s </dev/null >"$out/$n.rlog" 2>"$out/$n.rerr"
	rrc=$?
	expect "the intact state did not restore: status $rrc, $(head -c 300 "$out/$n.rerr")" [ "$rrc" = 124 ]
	cat "$out/$n.log" "$out/$n.rlog" >"$out/$n.both"
	expect "the intact state did not count on" consecutive "$out/$n.both" "counter:"
	case_end "$out/$n.log" "$out/$n.rerr"
}

# Snapshot trees (docs/state.md, "Snapshots"): vscsi.bin mark=N reads back
# at each round what it wrote the round before (kept in its RAM) and writes
# the next number, so a disk that does not go back with RAM, or a
# snapshot's data lost in a merge, is a FAIL line. A -> B, apply A, apply B,
# delete A (its file merged away), apply B again, delete B (the running
# disk merged into B's file): each apply resumes the count at the
# snapshot's number; in the end one VHD is left and holds the last number.
# marks FILE [WHO]: the N of each "WHO: mark N ok" line (WHO: vscsi)
marks() { tr -d '\r' <"$1" | sed -n "s/^${2:-vscsi}: mark \([0-9][0-9]*\) ok\$/\1/p"; }
# resumes FILE [WHO]: the numbers the count went on from after going back
resumes() { marks "$1" "${2:-vscsi}" | awk 'NR > 1 && $1 != p + 1 { printf "%s ", $1 } { p = $1 }'; }
# snap_step ACTION NAME ROUNDS [WHO] [SECS]: `snapshot ACTION NAME` on the
# worker $n, then wait up to SECS (30) for ROUNDS more "WHO: mark" lines
snap_step() {
	sc=$(lines_of "$out/$n.log" "^${4:-vscsi}: mark")
	ctl "$n" snapshot "$1" "$2" >"$out/$n.snap" 2>&1
	expect "snapshot $1 $2: $(head -c 300 "$out/$n.snap")" has "$out/$n.snap" "^name: $2$"
	expect "snapshot $1 $2: the count stopped" wait_for "${5:-30}" more_than "$out/$n.log" "^${4:-vscsi}: mark" $((sc + $3))
}
state_snapshot_case() {
	n=st-snap-$$
	case_begin payload-state-snapshot || return 0
	sd="$out/snapvm"
	rm -rf "$sd"
	mkdir -p "$sd"
	"$KESTREL" vhd create -q --type dynamic --size 8M "$sd/d.vhd"
	bg_run "$n" --kernel "$P/vscsi.bin" --cmdline "mark=1000000 period_ms=20" --timeout 120s \
		--debug-exit --disk "path=$sd/d.vhd,bus=scsi"
	expect "the count never started" wait_for 30 more_than "$out/$n.log" "^vscsi: mark" 10
	a1=$(marks "$out/$n.log" | tail -n 1)
	snap_step create A 40
	a2=$(marks "$out/$n.log" | tail -n 1)
	b1=$(marks "$out/$n.log" | tail -n 1)
	snap_step create B 5
	b2=$(marks "$out/$n.log" | tail -n 1)
	ctl "$n" snapshot create A >"$out/$n.dup" 2>&1
	expect "a second snapshot A was taken" has "$out/$n.dup" "exists"
	# Few rounds after apply A: the count must stay below B's number, or
	# going back to B would not show.
	snap_step apply A 3
	snap_step apply B 5
	snap_step delete A 5
	expect "A's disk file is still there" [ ! -e "$sd/d.vhd" ]
	snap_step apply B 5
	snap_step delete B 5
	ctl "$n" snapshot list --json >"$out/$n.list" 2>&1
	expect "the tree is not empty: $(cat "$out/$n.list")" has "$out/$n.list" '"snapshots":\[\],"links":\[\]'
	expect "stop failed" ctl "$n" stop
	reap_worker $bg_pid 120
	expect "the worker exited $rc, not 0" [ "$rc" = 0 ]
	expect "a read-back failed: $(grep FAIL "$out/$n.log" | head -n 2 | tr '\n' ' ')" fails grep -q "^FAIL" "$out/$n.log"
	set -- $(resumes "$out/$n.log")
	expect "the count went back $# times ($*), not 3" [ $# = 3 ]
	expect "apply A resumed at ${1:-?}, not in $((a1 + 1))..$((a2 + 1))" within "${1:-0}" $((a1 + 1)) $((a2 + 1))
	for r in "${2:-0}" "${3:-0}"; do
		expect "apply B resumed at $r, not in $((b1 + 1))..$((b2 + 1))" within "$r" $((b1 + 1)) $((b2 + 1))
	done
	set -- "$sd"/*.vhd
	expect "not one disk file left: $*" [ $# = 1 ]
	expect "the disk left is not a whole dynamic disk" has_cmd "^type: *dynamic" "$KESTREL" vhd info "$1"
	"$KESTREL" vhd convert -q --to raw "$1" "$sd/flat.raw"
	last=$(marks "$out/$n.log" | tail -n 1)
	# The guest writes a number, then prints it: the stop may come between.
	got=$(od -An -tu4 -j4 -N4 "$sd/flat.raw" | tr -d ' ')
	expect "sector 0 holds ${got:-?}, not the last number $last (or the one after)" within "${got:-0}" "$last" $((last + 1))
	# A raw disk refuses snapshots with one clear line.
	dd if=/dev/zero of="$sd/raw.img" bs=1M count=8 2>/dev/null
	bg_run "$n" --kernel "$P/counter.bin" --timeout 60s --disk "path=$sd/raw.img,bus=scsi"
	expect "the raw VM's socket never answered" wait_for 20 alive "$n"
	ctl "$n" snapshot create R >"$out/$n.raw" 2>&1
	expect "a raw disk was snapshotted: $(head -c 300 "$out/$n.raw")" has "$out/$n.raw" "raw disk.*cannot be snapshotted"
	expect "stop failed" ctl "$n" stop
	reap_worker $bg_pid 60
	case_end "$out/$n.log" "$out/$n.err"
}
# A snapshot create that fails on the second disk is all or nothing: the
# first disk goes back onto its file and its new child is removed, the
# tree (snapshots.json) and the folder are as before, no state is left,
# and the next create works. The failure: every name the second disk's
# child could take is a dangling symlink (the child is placed with
# RENAME_NOREPLACE: "File exists").
state_snapshot_undo_case() {
	n=st-snu-$$
	case_begin payload-state-snapshot-undo || return 0
	sd="$out/snapundo"
	rm -rf "$sd"
	mkdir -p "$sd"
	"$KESTREL" vhd create -q --type dynamic --size 8M "$sd/d.vhd"
	"$KESTREL" vhd create -q --type dynamic --size 8M "$sd/e.vhd"
	bg_run "$n" --kernel "$P/counter.bin" --cmdline "period_ms=50" --timeout 120s \
		--disk "path=$sd/d.vhd,bus=scsi" --disk "path=$sd/e.vhd,bus=scsi"
	expect "the counter never ran" wait_for 20 has "$out/$n.log" "^counter: 3$"
	ctl "$n" snapshot create A >"$out/$n.snap" 2>&1
	expect "snapshot create A: $(head -c 300 "$out/$n.snap")" has "$out/$n.snap" "^name: A$"
	i=1
	while [ $i -le 40 ]; do
		[ -e "$sd/e.$i.vhd" ] || ln -s "$sd/nowhere" "$sd/e.$i.vhd"
		i=$((i + 1))
	done
	cp "$sd/snapshots.json" "$out/$n.tree"
	ls "$sd" "$sd/snapshots" >"$out/$n.ls1"
	ctl "$n" query-vm --json | grep -o '"target":[0-9]*,"path":"[^"]*"' >"$out/$n.vm1"
	expect "query-vm does not list two disks: $(tr '\n' ' ' <"$out/$n.vm1")" [ "$(grep -c 'd.1.vhd\|e.2.vhd' "$out/$n.vm1")" = 2 ]
	ctl "$n" snapshot create B >"$out/$n.snap" 2>&1
	expect "snapshot create B with e's children blocked: $(head -c 300 "$out/$n.snap")" \
		has "$out/$n.snap" "File exists"
	expect "the tree changed" cmp -s "$sd/snapshots.json" "$out/$n.tree"
	ls "$sd" "$sd/snapshots" >"$out/$n.ls2"
	expect "the folder changed: $(diff "$out/$n.ls1" "$out/$n.ls2" | tr '\n' ' ')" cmp -s "$out/$n.ls1" "$out/$n.ls2"
	ctl "$n" query-vm --json | grep -o '"target":[0-9]*,"path":"[^"]*"' >"$out/$n.vm2"
	expect "the disks moved: $(tr '\n' ' ' <"$out/$n.vm2")" cmp -s "$out/$n.vm1" "$out/$n.vm2"
	c=$(lines_of "$out/$n.log" "^counter: ")
	expect "the VM does not run on after the failed create" wait_for 20 more_than "$out/$n.log" "^counter: " $((c + 5))
	for f in "$sd"/e.*.vhd; do
		[ -L "$f" ] && rm -f "$f"
	done
	ctl "$n" snapshot create B >"$out/$n.snap" 2>&1
	expect "snapshot create B once unblocked: $(head -c 300 "$out/$n.snap")" has "$out/$n.snap" "^name: B$"
	expect "stop failed" ctl "$n" stop
	reap_worker $bg_pid 60
	expect "the worker exited $rc, not 0" [ "$rc" = 0 ]
	expect "the counter went back or skipped" consecutive "$out/$n.log" "counter:"
	case_end "$out/$n.log" "$out/$n.err"
}
within() { [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }  # within N LO HI
has_cmd() { # has_cmd REGEX CMD...: CMD's output has a line matching REGEX
	hr=$1
	shift
	"$@" 2>&1 | grep -Eq -- "$hr"
}

if [ $do_payloads = 1 ]; then
	state_counter_case
	state_vscsi_case
	state_refused_case
	state_snapshot_case
	state_snapshot_undo_case
fi

# ---- live migration (issue 15) ----------------------------------------------
# A worker sends its running VM to another worker on this host (kestrel run
# --incoming, kestrel ctl NAME migrate): the guest goes on there where it
# was, the source exits 0; whatever fails before the switch-over leaves the
# guest running on the source. counter.bin's dirty_mb makes it dirty RAM all
# the time and check every word it wrote after the move.
# migrate_to NAME URI [ARGS...]: ctl migrate, its output in $out/NAME.mig.
migrate_to() {
	mn=$1
	shift
	ctl "$mn" migrate "$@" >"$out/$mn.mig" 2>&1
}
# migrate_downtime NAME: the downtime ctl migrate printed (ms).
migrate_downtime() { sed -n 's/.*(downtime \([0-9]*\) ms.*/\1/p' "$out/$1.mig"; }

# The rig's init leaves the loopback interface down: tcp:127.0.0.1 needs it.
migrate_lo_up() {
	ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null || :
}

migrate_live_case() { # migrate_live_case unix|tcp
	n=mig-$1-$$ tg=mig-$1-t-$$
	case_begin "payload-migrate-$1" || return 0
	rm -f "$out/$n.sock"
	if [ "$1" = unix ]; then uri="unix:$out/$n.sock"; else uri="tcp:127.0.0.1:$((20000 + $$ % 20000))"; migrate_lo_up; fi
	bg_run "$n" --kernel "$P/counter.bin" --cmdline "period_ms=20 dirty_mb=32" --timeout 120s
	spid=$bg_pid
	bg_run "$tg" --incoming "$uri" --timeout 120s
	tpid=$bg_pid
	expect "the counter never ran" wait_for 20 has "$out/$n.log" "^counter: 20$"
	expect "the target never listened" wait_for 20 has "$out/$tg.err" "waiting for a migration"
	expect "the migration failed: $(tail -n 2 "$out/$n.mig" 2>/dev/null | tr '\n' ' ')" \
		migrate_to "$n" "$uri"
	expect "ctl migrate printed no downtime" has "$out/$n.mig" "migrated to .*downtime [0-9]+ ms"
	reap_worker $spid 120
	expect "the source exited $rc, not 0" [ "$rc" = 0 ]
	expect "the target's socket never answered" wait_for 20 alive "$tg"
	expect "the counter did not go on on the target" wait_for 20 more_than "$out/$tg.log" "^counter: [0-9]" 10
	expect "stop failed" ctl "$tg" stop
	reap_worker $tpid 120
	cat "$out/$n.log" "$out/$tg.log" >"$out/$n-all.log"
	expect "a line was lost or repeated across the move" consecutive "$out/$n-all.log" "counter:"
	expect "the guest booted again on the target" [ "$(lines_of "$out/$n-all.log" "^counter: start")" = 1 ]
	expect "guest RAM was lost in the move" fails has "$out/$n-all.log" "RAM lost"
	echo "note: payload-migrate-$1: $(sed -n 's/.*(\(downtime.*\))$/\1/p' "$out/$n.mig")"
	case_end "$out/$n-all.log" "$out/$n.err" "$out/$tg.err"
}

# vscsi.bin moved mid-transfer with 32 requests in flight: the source drains
# and flushes, lets go of the image lock, the target (same image, same host)
# takes it and finishes every round.
migrate_disk_case() {
	n=mig-vs-$$ tg=mig-vs-t-$$
	case_begin payload-migrate-disk || return 0
	rm -f "$out/$n.sock"
	vscsi_images
	# 200 rounds: the move comes at round 20 or so; the rest must finish
	# on the target (a minute on this host; the rig is slower).
	bg_run "$n" --kernel "$P/vscsi.bin" --cmdline "stream=200" --timeout 240s --debug-exit \
		--disk "path=$out/vd0.img,bus=scsi"
	spid=$bg_pid
	bg_run "$tg" --incoming "unix:$out/$n.sock" --timeout 240s
	tpid=$bg_pid
	expect "the transfer never started" wait_for 30 has "$out/$n.log" "^vscsi: stream round 20 ok"
	expect "the target never listened" wait_for 20 has "$out/$tg.err" "waiting for a migration"
	expect "the migration failed: $(tail -n 2 "$out/$n.mig" 2>/dev/null | tr '\n' ' ')" \
		migrate_to "$n" "unix:$out/$n.sock"
	reap_worker $spid 240
	expect "the source exited $rc, not 0" [ "$rc" = 0 ]
	expect "the move came after the last round" fails has "$out/$n.log" "RESULT"
	reap_worker $tpid 240
	expect "the target exited $rc, not 1" [ "$rc" = 1 ]
	cat "$out/$n.log" "$out/$tg.log" >"$out/$n-all.log"
	expect "a round was lost or repeated" consecutive "$out/$n-all.log" "vscsi: stream round" ok
	expect "the target did not finish" has "$out/$tg.log" "^RESULT: PASS"
	expect "a check failed" fails grep -q "^FAIL" "$out/$tg.log"
	case_end "$out/$n-all.log" "$out/$n.err" "$out/$tg.err"
}

# The target's control socket during the pre-copy: it answers (the worker
# seals once its machine is built, before RAM arrives) and shows each
# round (migrate-progress with the source's figures). 50 MiB/s against a
# guest rewriting 8 MiB every 20 ms: rounds for a while (auto-converge).
migrate_progress_case() {
	n=mig-p-$$ tg=mig-p-t-$$
	case_begin payload-migrate-progress || return 0
	rm -f "$out/$tg.sock"
	bg_run "$n" --kernel "$P/counter.bin" --cmdline "period_ms=20 dirty_mb=8" --timeout 120s
	spid=$bg_pid
	bg_run "$tg" --incoming "unix:$out/$tg.sock" --timeout 120s
	tpid=$bg_pid
	expect "the counter never ran" wait_for 20 has "$out/$n.log" "^counter: 5$"
	wait_for 10 test -S "$out/$tg.sock"
	migrate_to "$n" "unix:$out/$tg.sock" --bandwidth 50 &
	mpid=$!
	expect "the target's socket did not answer during the pre-copy" wait_for 20 alive "$tg"
	ctl "$tg" watch --json >"$out/$tg.ev" 2>&1 &
	wpid=$!
	ctl "$tg" query-status >"$out/$tg.qs" 2>&1
	expect "the target was not waiting for the VM: $(cat "$out/$tg.qs")" has "$out/$tg.qs" "state: starting"
	wait $mpid
	expect "the migration failed: $(tail -n 2 "$out/$n.mig" 2>/dev/null | tr '\n' ' ')" \
		has "$out/$n.mig" "migrated to .*downtime [0-9]+ ms"
	reap_worker $spid 60
	expect "the target's socket showed no round: $(events "$out/$tg.ev")" \
		wait_for 10 has "$out/$tg.ev" '"event":"migrate-progress","data":\{"round":[0-9]+,"transferred":[1-9]'
	expect "stop failed" ctl "$tg" stop
	reap_worker $tpid 60
	wait $wpid 2>/dev/null || :
	expect "the target's events came out of order" seq_grows "$out/$tg.ev"
	cat "$out/$n.log" "$out/$tg.log" >"$out/$n-all.log"
	expect "a line was lost or repeated across the move" consecutive "$out/$n-all.log" "counter:"
	expect "guest RAM was lost in the move" fails has "$out/$n-all.log" "RAM lost"
	echo "note: payload-migrate-progress: $(sed -n 's/.*(\(downtime.*\))$/\1/p' "$out/$n.mig"); target events: $(lines_of "$out/$tg.ev" migrate-progress) rounds"
	case_end "$out/$n-all.log" "$out/$n.err" "$out/$tg.err"
}

# Failures before the switch-over: the target killed mid-migration, a
# migrate-cancel, a target that refuses (a flag it may not change): the
# source says why (migrate-failed) and its guest runs on, untouched.
migrate_fail_case() {
	n=mig-f-$$ tg=mig-f-t-$$
	case_begin payload-migrate-failures || return 0
	rm -f "$out/$n.img"
	truncate -s 8M "$out/$n.img"
	bg_run "$n" --kernel "$P/counter.bin" --cmdline "period_ms=20 dirty_mb=64" --timeout 120s \
		--disk "path=$out/$n.img,bus=scsi"
	spid=$bg_pid
	expect "the counter never ran" wait_for 20 has "$out/$n.log" "^counter: 5$"
	# 1 MiB/s: round 1 alone takes a minute.
	bg_run "$tg" --incoming "unix:$out/$tg.sock" --timeout 120s
	tpid=$bg_pid
	wait_for 10 test -S "$out/$tg.sock"
	migrate_to "$n" "unix:$out/$tg.sock" --bandwidth 1 &
	mpid=$!
	sleep 2
	kill -KILL $tpid
	wait $mpid
	expect "killing the target did not fail the migration: $(cat "$out/$n.mig")" \
		has "$out/$n.mig" "migrate: .*runs on here"
	lines=$(lines_of "$out/$n.log" "^counter: [0-9]")
	expect "the source stopped counting after the target died" \
		wait_for 10 more_than "$out/$n.log" "^counter: [0-9]" $((lines + 5))
	bg_run "$tg" --incoming "unix:$out/$tg.sock" --timeout 120s
	tpid=$bg_pid
	wait_for 10 test -S "$out/$tg.sock"
	migrate_to "$n" "unix:$out/$tg.sock" --bandwidth 1 &
	mpid=$!
	sleep 2
	expect "migrate-cancel was refused" ctl "$n" migrate-cancel
	wait $mpid
	expect "the cancel did not fail the migration: $(cat "$out/$n.mig")" has "$out/$n.mig" "cancel"
	reap_worker $tpid 30
	expect "the target exited $rc after the cancel, not 2" [ "$rc" = 2 ]
	bg_run "$tg" --incoming "unix:$out/$tg.sock" --timeout 120s --mem 1G
	tpid=$bg_pid
	wait_for 10 test -S "$out/$tg.sock"
	expect "a target with --mem took the VM" fails migrate_to "$n" "unix:$out/$tg.sock"
	expect "the source did not say why: $(cat "$out/$n.mig")" has "$out/$n.mig" "mem: cannot be changed"
	reap_worker $tpid 30
	expect "the refusing target exited $rc, not 2" [ "$rc" = 2 ]
	expect "the source is not running" alive "$n"
	# The refusal came after the source let go of its disk: it took it back.
	"$KESTREL" run --kernel "$P/exit0.bin" --disk "path=$out/$n.img,bus=scsi" --timeout 20s \
		</dev/null >"$out/$n.other" 2>&1
	expect "the source did not take its disk's lock back: $(tail -n 1 "$out/$n.other")" \
		has "$out/$n.other" "in use by another process"
	lines=$(lines_of "$out/$n.log" "^counter: [0-9]")
	expect "the source stopped counting" wait_for 10 more_than "$out/$n.log" "^counter: [0-9]" $((lines + 5))
	expect "stop failed" ctl "$n" stop
	reap_worker $spid 60
	expect "the source's guest lost RAM" fails has "$out/$n.log" "RAM lost"
	expect "a line was lost or repeated on the source" consecutive "$out/$n.log" "counter:"
	case_end "$out/$n.log" "$out/$n.err" "$out/$tg.err"
}

# A hostile source: a target fed junk, a HELLO without magic, a cut HELLO
# exits 2 with one line and runs nothing (python3 plays the source; the
# wire parsers' own cases are in tests/check_migrate_wire.c).
migrate_hostile_case() {
	tg=mig-h-$$
	case_begin payload-migrate-hostile || return 0
	if ! command -v python3 >/dev/null 2>&1; then
		echo "SKIP: payload-migrate-hostile (no python3)"
		return 0
	fi
	for junk in random nomagic cut; do
		rm -f "$out/$tg.sock"
		"$KESTREL" run --name "$tg" --incoming "unix:$out/$tg.sock" --timeout 30s </dev/null \
			>"$out/$tg.log" 2>"$out/$tg.err" &
		tpid=$!
		wait_for 10 test -S "$out/$tg.sock"
		python3 - "$out/$tg.sock" "$junk" <<'PY'
import os, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = b"\x89KMIGR\r\n" + struct.pack("<IIQQQ", 1, 1, 1 << 29, 1 << 29, 0) + struct.pack("<I", 100)
msg = {"random": os.urandom(4096),
       "nomagic": struct.pack("<IIQ", 1, 0, 16) + b"\x00" * 16,
       "cut": struct.pack("<IIQ", 1, 0, len(body)) + body}[sys.argv[2]]
s.sendall(msg)
s.shutdown(socket.SHUT_WR)
try:
    s.recv(4096)
except OSError:
    pass
PY
		reap_worker $tpid 30
		expect "$junk: the target exited $rc, not 2" [ "$rc" = 2 ]
		expect "$junk: not one line: $(cat "$out/$tg.err")" [ "$(grep -c . "$out/$tg.err")" -le 2 ]
		expect "$junk: no error named: $(cat "$out/$tg.err")" has "$out/$tg.err" "error: --incoming unix:"
		expect "$junk: the target ran something" fails alive "$tg"
	done
	case_end "$out/$tg.err"
}

if [ $do_payloads = 1 ]; then
	# The rig's TCG-emulated SVM flakes (a guest triple-faulting at the
	# reset vector, rig_flake) take a moved guest as any other: once more.
	with_retry migrate_live_case unix
	with_retry migrate_live_case tcp
	with_retry migrate_disk_case
	with_retry migrate_progress_case
	migrate_fail_case
	migrate_hostile_case
fi

# ---- IDE CD-ROM media through the control socket (issue 11) ---------------
# ide_stats FILE UNIT: the unit's entry in a `stats --json` reply.
ide_stats() { grep -o "\"bus\":\"ide\",\"unit\":$2,[^}]*" "$1"; }
# stats_has NAME REGEX [N]: a fresh `stats --json` (with query-status's
# boots) matches REGEX on N lines (default 1); left in $out/stats.
stats_has() {
	{ ctl "$1" query-status --json; ctl "$1" stats --json | tr '{' '\n'; } >"$out/stats" 2>&1
	[ "$(grep -Ec -- "$2" "$out/stats")" -ge "${3:-1}" ]
}
# A counting guest with a disk and an empty CD drive: the medium comes, goes
# and survives a reset, as stats shows; the errors are the documented ones.
ctl_payload_cdrom_case() {
	n=ctl-cd-$$
	case_begin payload-ctl-cdrom || return 0
	ide_images
	ON_REBOOT=
	bg_run "$n" --kernel "$P/counter.bin" --cmdline "period_ms=100" --timeout 120s \
		--on-reboot restart --disk "path=$out/id0.img,bus=ide" --disk "bus=ide,media=cdrom,unit=2"
	expect "the control socket never answered" wait_for 20 alive "$n"
	expect "the counter never ran" wait_for 30 has "$out/$n.log" "^counter: 2$"
	ctl "$n" stats --json >"$out/stats" 2>&1
	expect "stats lack the empty CD drive: $(ide_stats "$out/stats" 2)" has "$out/stats" \
		'"bus":"ide","unit":2,"media":"cdrom","path":null,"readonly":true'
	expect "stats lack the disk" has "$out/stats" '"bus":"ide","unit":0,"media":"disk","path":"[^"]*id0.img","readonly":false'
	ctl "$n" cdrom-change 2 "$out/icd.iso" >"$out/cd" 2>&1
	expect "cdrom-change failed: $(tr '\n' ' ' <"$out/cd")" has "$out/cd" "^id: 2$"
	ctl "$n" stats --json >"$out/stats" 2>&1
	expect "stats do not show the new medium" has "$out/stats" '"unit":2,"media":"cdrom","path":"[^"]*icd.iso"'
	ctl "$n" cdrom-change 0 "$out/icd.iso" >/dev/null 2>"$out/e"
	expect "cdrom-change of the disk: not 'not-found'" has "$out/e" "no CD-ROM drive at 0 \(not-found\)"
	ctl "$n" cdrom-change ide1-1 "$out/icd.iso" >/dev/null 2>"$out/e"
	expect "cdrom-change of an absent drive: not 'not-found'" has "$out/e" "\(not-found\)"
	ctl "$n" cdrom-change 7 "$out/icd.iso" >/dev/null 2>"$out/e"
	expect "a bad id: not 'invalid-argument'" has "$out/e" "\(invalid-argument\)"
	ctl "$n" cdrom-change ide1-0 "$out/missing.iso" >/dev/null 2>"$out/e"
	expect "a missing file: not 'failed'" has "$out/e" "missing.iso.*\(failed\)"
	# The medium is opened off the control thread (as disk-add's disk): a
	# FIFO is refused at once, and while an open waits on a lease another
	# process holds, query-status is answered within 10 s and the change
	# is still pending; let go, the change finishes.
	rm -f "$out/icd.fifo"
	mkfifo "$out/icd.fifo"
	ctl "$n" cdrom-change 2 "$out/icd.fifo" >/dev/null 2>"$out/e"
	expect "a FIFO: $(tr '\n' ' ' <"$out/e")" has "$out/e" "not a regular file or block device \(failed\)"
	if [ -x "$LEASE_HOLD" ]; then
		cp "$out/icd.iso" "$out/icd2.iso"
		"$LEASE_HOLD" "$out/icd2.iso" >"$out/icd.lease" 2>&1 &
		lpid=$!
		wait_for 10 has "$out/icd.lease" "^held$"
	fi
	if [ -x "$LEASE_HOLD" ] && has "$out/icd.lease" "^held$"; then
		ctl "$n" cdrom-change 2 "$out/icd2.iso" >"$out/cd2" 2>&1 &
		apid=$!
		expect "the worker's open never reached the lease" wait_for 20 has "$out/icd.lease" "^break$"
		ctl "$n" query-status >"$out/cd.st" 2>&1 &
		expect "query-status was not answered while cdrom-change waited" \
			wait_for 10 has "$out/cd.st" "^state: running$"
		ctl "$n" cdrom-eject 2 >/dev/null 2>"$out/e"
		expect "cdrom-eject during the change: $(tr '\n' ' ' <"$out/e")" has "$out/e" "under way \(invalid-state\)"
		expect "cdrom-change answered while its open still waited" pid_running $apid
		kill -TERM $lpid
		wait $apid
		expect "cdrom-change after the lease was let go: $(tr '\n' ' ' <"$out/cd2")" has "$out/cd2" "^path: .*icd2.iso$"
		ctl "$n" stats --json >"$out/stats" 2>&1
		expect "stats do not show the leased medium" has "$out/stats" '"unit":2,"media":"cdrom","path":"[^"]*icd2.iso"'
		ctl "$n" cdrom-change 2 "$out/icd.iso" >/dev/null 2>&1
	else
		echo "note: payload-ctl-cdrom: no lease-hold helper or no file lease here; the slow-open half is skipped"
	fi
	[ -n "${lpid:-}" ] && { kill -TERM $lpid 2>/dev/null; wait $lpid 2>/dev/null; }
	lpid=
	ctl "$n" stats --json >"$out/stats" 2>&1
	expect "a failed change took the medium out" has "$out/stats" '"unit":2,"media":"cdrom","path":"[^"]*icd.iso"'
	# A reset re-creates the machine: the medium goes back in.
	expect "reset failed" ctl "$n" reset
	expect "the medium did not survive the reset: $(ide_stats "$out/stats" 2)" wait_for 30 \
		stats_has "$n" '"boots":2|"unit":2,"media":"cdrom","path":"[^"]*icd.iso"' 2
	ctl "$n" cdrom-eject ide1-0 >"$out/cd" 2>&1
	expect "cdrom-eject failed: $(tr '\n' ' ' <"$out/cd")" has "$out/cd" "^id: ide1-0$"
	ctl "$n" stats --json >"$out/stats" 2>&1
	expect "the medium is still listed" has "$out/stats" '"unit":2,"media":"cdrom","path":null'
	expect "stop failed" ctl "$n" stop
	reap_worker $bg_pid 120
	expect "the worker exited $rc, not 0" [ $rc = 0 ]
	case_end "$out/$n.log" "$out/$n.err"
}
# Debian's sr_mod with an empty drive: the medium cdrom-change puts in is
# read, and it is gone after cdrom-eject (tests/kit/ide.sh, ide_cdwait).
ctl_linux_cdrom_case() {
	n=ctl-lcd-$$
	case_begin linux-ide-ctl-cdrom || return 0
	ide_images
	kit_tests_initrd "$out/initrd-kit-tests.gz"
	bg_run "$n" --kernel "$KIT/vmlinux" --initrd "$out/initrd-kit-tests.gz" --cpus 2 --mem 512M \
		--timeout 300s --on-reboot exit --disk "path=$out/id0.img,bus=ide" \
		--disk "bus=ide,media=cdrom,unit=2" \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=ata_piix,sd_mod,sr_mod kestrel.run=ide kestrel.ide_drives=p0,s0 kestrel.ide_cdwait=1"
	expect "the control socket never answered" wait_for 20 alive "$n"
	expect "the guest never waited for a medium" wait_for 200 has "$out/$n.log" "^ide: s0 waiting for a medium"
	expect "the empty drive was not listed" has "$out/$n.log" "^ide: s0 sr[0-9] size="
	expect "the empty drive read something" has "$out/$n.log" "^ide: read s0: [[:space:]]*$"
	ctl "$n" cdrom-change ide1-0 "$out/icd.iso" >"$out/cd" 2>&1
	expect "cdrom-change failed: $(tr '\n' ' ' <"$out/cd")" has "$out/cd" "^id: ide1-0$"
	expect "the guest did not read the new medium" wait_for 120 has "$out/$n.log" \
		"^ide: s0 new medium size=1200: HOST-PATTERN-CD"
	expect "cdrom-eject failed" ctl "$n" cdrom-eject 2 force=true
	expect "the guest still reads the medium" wait_for 120 has "$out/$n.log" "^ide: s0 medium gone"
	reap_worker $bg_pid 300
	expect "the worker exited $rc, not 0" [ $rc = 0 ]
	case_end "$out/$n.log" "$out/$n.err"
}
if [ $do_payloads = 1 ]; then
	with_retry ctl_payload_cdrom_case
fi
if [ $do_linux = 1 ]; then
	with_retry ctl_linux_cdrom_case
fi

# ---- virtio-net (issue 3) --------------------------------------------------
# Every case runs the worker inside a network namespace of its own holding a
# TAP whose host side has 10.0.0.1/24 (and for VLAN N an 802.1Q interface
# TAP.N with 10.0.N.1/24); only those addresses are used, nothing leaves the
# namespace. iproute2 where it has netns/tuntap/vlan, else busybox (unshare,
# nsenter, tunctl, vconfig), as inside the rig.
net_ns_up() { # net_ns_up NAME: $NSX runs a command in the new namespace
	nsname=$1
	if ip netns add "$nsname" 2>/dev/null; then
		NSX="ip netns exec $nsname"
	else
		: >"$out/netns-$nsname"
		unshare --net="$out/netns-$nsname" true || return 1
		NSX="nsenter -n$out/netns-$nsname"
	fi
	$NSX ip link set lo up
	printf '#!/bin/sh\nexec %s %s "$@"\n' "$NSX" "$KESTREL_HOST" >"$out/kestrel-ns"
	chmod +x "$out/kestrel-ns"
}
net_ns_down() {
	case "$NSX" in
	"ip netns"*) ip netns del "$nsname" ;;
	*) umount "$out/netns-$nsname" 2>/dev/null; rm -f "$out/netns-$nsname" ;;
	esac
}
net_addr() { # net_addr IF: 10.0.0.1/24 on IF, up
	$NSX ip link set "$1" up && $NSX ip addr add 10.0.0.1/24 dev "$1"
}
net_vlan() { # net_vlan IF VID: IF.VID with 10.0.VID.1/24, up
	$NSX ip link add link "$1" name "$1.$2" type vlan id "$2" 2>/dev/null ||
		$NSX vconfig add "$1" "$2" >/dev/null 2>&1 || return 1
	$NSX ip link set "$1.$2" up && $NSX ip addr add "10.0.$2.1/24" dev "$1.$2"
}
# Where the kernel has no 802.1Q interfaces (no 8021q), tests/vlan-peer.c
# plays 10.0.VID.1 on each VID in user space, on the TAP itself.
VLAN_PEER=${VLAN_PEER:-$(first_of "$root/build/vlan-peer" "$here/vlan-peer" /work/vlan-peer)}
net_kernel_vlan() { # net_kernel_vlan IF VID...: kernel VLAN interfaces, or fail
	vif=$1
	shift
	for v in "$@"; do
		net_vlan "$vif" "$v" || return 1
	done
}
net_peer_start() { # net_peer_start IF VID...: the user-space peer in the background
	[ -x "$VLAN_PEER" ] || return 1
	$NSX "$VLAN_PEER" serve "$@" >"$out/vlan-peer.out" 2>&1 &
	peer_pid=$!
	wait_for 5 has "$out/vlan-peer.out" "^serving"
}
net_peer_stop() { # frames per VID end up in $out/vlan-peer.out
	[ -n "${peer_pid:-}" ] || return 0
	kill "$peer_pid" 2>/dev/null
	wait "$peer_pid" 2>/dev/null
	peer_pid=
}
# net_vlans IF VID...: kernel 802.1Q interfaces where the kernel has them,
# else the user-space peer; sets vlan_mode to kernel or peer.
net_vlans() {
	if net_kernel_vlan "$@"; then
		vlan_mode=kernel
	elif net_peer_start "$@"; then
		vlan_mode=peer
		echo "note: no 802.1Q interfaces in this kernel; the VLAN peer is tests/vlan-peer.c"
	else
		vlan_mode=none
		return 1
	fi
}
net_tap() { # net_tap IF: a persistent TAP
	$NSX ip tuntap add mode tap name "$1" 2>/dev/null || $NSX tunctl -t "$1" >/dev/null
}
# net_stat IF: frames IF received (/proc/net is the reader's namespace;
# /sys/class/net is the one sysfs was mounted in).
net_stat() { $NSX cat /proc/net/dev | awk -v i="$1:" '$1 == i { print $3; f = 1 } END { if (!f) print 0 }'; }
net_has_if() { $NSX cat /proc/net/dev | grep -q "^ *$1:"; }
net_skip() {
	if [ ! -c /dev/net/tun ] || ! unshare --help 2>&1 | grep -q -- --net; then
		echo "SKIP: virtio-net cases: no /dev/net/tun or no unshare --net here"
		return 0
	fi
	return 1
}
KESTREL_HOST=$KESTREL

# The ring-3 driver (tests/guest/vnet.c): ARP, pings of 56 and 1400 bytes,
# UDP with software and offloaded checksums, a frame the guest tags itself
# (passed through on an untagged NIC), once with plain and once with merged
# receive buffers.
net_payload_case() { # net_payload_case NAME CMDLINE
	echo "$1" | grep -Eq -- "$filter" || return 0
	net_ns_up "kvn$$" || { echo "FAIL: $1: no network namespace"; fail=$((fail + 1)); return 0; }
	net_tap kvn0 && net_addr kvn0 && net_vlans kvn0 7
	KESTREL=$out/kestrel-ns
	run_case "$1" 1 "RESULT: PASS" "!FAIL" "^vnet: mac 52:54:00:12:34:56" \
		"PASS: echo replies from the peer: 3 of 3" "PASS: a 1400-byte echo came back" \
		"PASS: UDP to a closed port \(offloaded checksum\)" "VLAN 7 was answered" -- \
		--kernel "$P/vnet.bin" --cmdline "$2 csum=1 probe=7 expect=1" --timeout 60s --stats \
		--net tap=kvn0,mac=52:54:00:12:34:56
	KESTREL=$KESTREL_HOST
	net_peer_stop
	net_ns_down
}

# payload_passed NAME: a payload run in the background (its console in
# $out/NAME.log, reaped into $rc) passed: status 1, RESULT: PASS, no FAIL.
payload_passed() {
	tr -d '\r' <"$out/$1.log" >"$out/$1.tmp" && mv "$out/$1.tmp" "$out/$1.log"
	expect "the worker exited $rc, not 1" [ $rc = 1 ]
	expect "no RESULT: PASS" has "$out/$1.log" "RESULT: PASS"
	expect "a guest check failed" fails grep -q "^FAIL" "$out/$1.log"
}

# VLAN 5, an access port: the guest talks to kvn0.5 only; the host pings
# the guest through it while it listens; untagged ARP on kvn0 goes
# unanswered; the guest's own VLAN 7 tag never reaches kvn0.7. $1 the case,
# $2 the payload (vnet, tulip), $3 more --net options, $4 the worker's
# stats line for the NIC.
net_payload_vlan_case() {
	n=$1
	case_begin $n || return 0
	net_ns_up "kvv$$" || { expect "no network namespace" false; case_end; return 0; }
	expect "TAP setup failed" net_tap kvv0
	net_addr kvv0
	expect "no 802.1Q interface (8021q module?) and no vlan-peer" net_vlans kvv0 5 7
	: >"$out/$n.log"
	"$out/kestrel-ns" run --serial stdio --kernel "$P/$2.bin" --debug-exit --timeout 90s --stats \
		--cmdline "ip=10.0.5.2 peer=10.0.5.1 mrg=1 csum=1 filter=0 probe=7 expect=0 listen_ms=8000" \
		--net "tap=kvv0,vlan=5,mac=52:54:00:12:34:58$3" </dev/null >"$out/$n.log" 2>"$out/$n.err" &
	kpid=$!
	expect "the guest never listened" wait_for 60 has "$out/$n.log" "^$2: listening"
	if [ "$vlan_mode" = kernel ]; then
		$NSX ping -c 3 -W 2 10.0.5.2 >"$out/$n.ping" 2>&1
	else
		$NSX "$VLAN_PEER" ping kvv0 5 10.0.5.1 10.0.5.2 3 >"$out/$n.ping" 2>&1
	fi
	expect "the host's ping through VLAN 5 failed: $(tail -n 2 "$out/$n.ping" | tr '\n' ' ')" \
		has "$out/$n.ping" " 3 packets received"
	expect "an untagged ARP request was answered" fails $NSX "$VLAN_PEER" arp kvv0 0 10.0.5.1 10.0.5.2
	reap_worker $kpid 300
	if [ "$vlan_mode" = kernel ]; then
		expect "frames the guest tagged VLAN 7 reached kvv0.7" [ "$(net_stat kvv0.7)" = 0 ]
	else
		net_peer_stop
		expect "the VLAN peer did not report" has "$out/vlan-peer.out" "^vid 5 frames [1-9]"
		expect "frames the guest tagged VLAN 7 reached the TAP" has "$out/vlan-peer.out" "^vid 7 frames 0$"
	fi
	payload_passed "$n"
	expect "the guest answered no echo request" has "$out/$n.log" "answered [1-9][0-9]* echo requests"
	expect "no NIC stats" has "$out/$n.err" "$4"
	case_end "$out/$n.log" "$out/$n.err"
	net_ns_down
}

# Debian's virtio_net: link, ping, 4 MiB to the host and 1 MiB back with nc
# (so TSO/checksum offloads in both directions); $1 the case, $2
# the --net options after tap=, $3 the VLAN id or "" (then the guest is on
# 10.0.VID.0/24), $4 "mq" to let kestrel create a multi-queue TAP itself,
# $5 "tulip" for the emulated 21140 and Debian's tulip driver.
net_linux_case() {
	n=$1
	case_begin "$n" || return 0
	mods=virtio_pci,virtio_net drv=virtio_net nstat="virtio-net net0 q0 rx_packets=[1-9]"
	[ "${5:-}" = tulip ] && mods=tulip drv=tulip nstat="tulip net0 rx_packets=[1-9]"
	net_ns_up "kvl$$" || { expect "no network namespace" false; case_end; return 0; }
	sub=0
	[ -n "$3" ] && sub=$3
	head -c 1048576 /dev/urandom >"$out/net.blob"
	sum=$(md5sum <"$out/net.blob" | cut -d' ' -f1)
	rm -f "$out/net.recv" "$out/net.fifo"
	[ -e "$out/initrd-modules.gz" ] || cat "$KIT/initrd.cpio.gz" "$KIT/modules.cpio.gz" >"$out/initrd-modules.gz"
	[ "$4" = mq ] || net_tap kvl0
	"$out/kestrel-ns" run --serial stdio --kernel "$KIT/vmlinux" --initrd "$out/initrd-modules.gz" \
		--cpus 2 --mem 512M --timeout 300s --on-reboot exit --stats --net "tap=kvl0,$2" \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=$mods kestrel.run=net kestrel.net_ip=10.0.$sub.2/24 kestrel.net_peer=10.0.$sub.1 kestrel.net_tcp=1" \
		</dev/null >"$out/$n.log" 2>"$out/$n.err" &
	kpid=$!
	expect "the TAP never appeared" wait_for 30 net_has_if kvl0
	net_addr kvl0
	[ -n "$3" ] && expect "no 802.1Q interface" net_vlan kvl0 "$3"
	mkfifo "$out/net.fifo"
	$NSX sh -c "sleep 280 >'$out/net.fifo' & s=\$!; nc -l -p 5001 <'$out/net.fifo' >'$out/net.recv'; kill \$s" &
	ncpid=$!
	$NSX nc -l -p 5002 <"$out/net.blob" >/dev/null &
	hpid=$!
	reap_worker $kpid 300
	kill $hpid $ncpid 2>/dev/null
	wait $hpid $ncpid 2>/dev/null
	tr -d '\r' <"$out/$n.log" >"$out/$n.tmp" && mv "$out/$n.tmp" "$out/$n.log"
	expect "the worker exited $rc, not 0" [ $rc = 0 ]
	expect "$drv did not bind" has "$out/$n.log" "^net: eth0 mac=${6:-52:54:00:[0-9a-f:]+} driver=$drv$"
	expect "no link" has "$out/$n.log" "^net: eth0 link up"
	expect "the guest's ping failed" has "$out/$n.log" "^net: ping 10.0.$sub.1: 3/3"
	expect "the guest did not send its 4 MiB" has "$out/$n.log" "^net: sent 4194304 bytes"
	expect "the host got $(wc -c <"$out/net.recv" 2>/dev/null) bytes, not 4194304" \
		[ "$(wc -c <"$out/net.recv" 2>/dev/null)" = 4194304 ]
	expect "the guest did not get the host's 1 MiB intact" has "$out/$n.log" "^net: received 1048576 bytes md5=$sum"
	expect "no NIC stats" has "$out/$n.err" "$nstat"
	case_end "$out/$n.log" "$out/$n.err"
	rm -f "$out/net.fifo"
	net_ns_down
}

if [ $do_payloads = 1 ] && ! net_skip; then
	net_payload_case payload-vnet ""
	net_payload_case payload-vnet-mrg "mrg=1"
	with_retry net_payload_vlan_case payload-vnet-vlan vnet "" "virtio-net net0 q0 rx_packets=[1-9]"
fi
if [ $do_linux = 1 ] && ! net_skip; then
	with_retry net_linux_case linux-vnet "mac=52:54:00:12:34:57" "" ""
	with_retry net_linux_case linux-vnet-vlan-mq "vlan=5,queues=2" 5 mq
fi

# ---- the emulated DEC 21140 (issue 13; the virtio-net helpers above) -------
# tests/guest/tulip.c on --net model=tulip: reset values, the MAC from the
# serial ROM, the PHY's link, INTA# on TI, ARP, pings, UDP, setup-frame
# filtering (perfect, hash, hash-only, inverse, promiscuous), an ARP request
# the guest tags itself (an untagged NIC passes it); hostile=1: lists
# outside RAM, a looping frame, zero-length descriptors, descriptors
# rewritten under the device, each followed by a software reset.
tulip_payload_case() { # tulip_payload_case NAME CMDLINE PATTERNS...
	tn=$1 tc=$2
	shift 2
	echo "$tn" | grep -Eq -- "$filter" || return 0
	net_ns_up "ktp$$" || { echo "FAIL: $tn: no network namespace"; fail=$((fail + 1)); return 0; }
	net_tap ktn0 && net_addr ktn0 && net_vlans ktn0 7
	KESTREL=$out/kestrel-ns
	run_case "$tn" 1 "RESULT: PASS" "!FAIL" "^tulip: mac 52:54:00:12:34:60" \
		"^tulip: 00:[0-9a-f]{2}\.0 1011:0009 rev 20" "$@" -- \
		--kernel "$P/tulip.bin" --cmdline "$tc" --timeout 90s --stats \
		--net tap=ktn0,model=tulip,mac=52:54:00:12:34:60
	KESTREL=$KESTREL_HOST
	net_peer_stop
	net_ns_down
}
# tulip.bin linkwatch_ms: `kestrel ctl NAME net-link down`, then up, as the
# driver sees them (the PHY, the link-sense pin, a frame sent while down
# ends with loss of carrier, ARP answered after).
# For the two cases below: in a new namespace $1 with TAP $2, start worker $3
# (sets vmn, kpid) running tulip.bin with MAC $4, output to $5.log and $5.err,
# and wait until the guest watches its link. 1 (the case ended) when there is
# no namespace.
tulip_linkwatch_start() {
	net_ns_up "$1" || { expect "no network namespace" false; case_end; return 1; }
	expect "TAP setup failed" net_tap "$2"
	net_addr "$2"
	vmn=$3
	"$out/kestrel-ns" run --name "$vmn" --serial stdio --kernel "$P/tulip.bin" --debug-exit \
		--timeout 90s --cmdline "linkwatch_ms=30000" --net "tap=$2,model=tulip,mac=$4" \
		</dev/null >"$5.log" 2>"$5.err" &
	kpid=$!
	expect "the guest never watched the link" wait_for 60 has "$5.log" "^tulip: watching the link"
}
# Take worker $vmn's link down and up again as "$1" (the guest, the restored
# guest) printing to $out/$n.log, reap it and check the PASS lines both cases share.
tulip_link_flap() {
	expect "net-link down failed" ctl "$vmn" net-link down
	expect "$1 did not see the link go down" wait_for 40 has "$out/$n.log" "^tulip: link down seen"
	expect "net-link up failed" ctl "$vmn" net-link up device=net0
	reap_worker $kpid 90
	payload_passed "$n"
	expect "the PHY never showed the link up again" has "$out/$n.log" "^PASS: the PHY reports the link up again"
	expect "no ARP reply after the link came back" has "$out/$n.log" "^PASS: ARP request answered"
}
tulip_payload_link_case() {
	n=payload-tulip-net-link
	case_begin "$n" || return 0
	tulip_linkwatch_start "ktl$$" ktl0 "tl-$$" 52:54:00:12:34:62 "$out/$n" || return 0
	tulip_link_flap "the guest"
	expect "the PHY never showed the link down" has "$out/$n.log" "^PASS: the PHY reports the link down"
	expect "no loss of carrier while down" has "$out/$n.log" "^PASS: a frame sent while the link is down"
	case_end "$out/$n.log" "$out/$n.err"
	net_ns_down
}
# The same with a save and a restore in the middle (docs/state.md): tulip.bin
# watching its link is saved, the worker exits and lets go of the TAP, a new
# worker restores it onto the same TAP; the link going down and up then
# reaches the restored 21140's PHY and CSR12, and ARP is answered after.
tulip_state_case() {
	n=payload-tulip-state
	case_begin "$n" || return 0
	tulip_linkwatch_start "kts$$" kts0 "ts-$$" 52:54:00:12:34:63 "$out/$n-1" || return 0
	expect "the save failed: $(tail -n 2 "$out/$vmn.save" 2>/dev/null | tr '\n' ' ')" \
		state_save "$vmn" "$out/$vmn.state"
	reap_worker $kpid 60
	expect "the saved worker exited $rc, not 0" [ "$rc" = 0 ]
	"$out/kestrel-ns" run --name "$vmn" --serial stdio --restore "$out/$vmn.state" --timeout 90s \
		</dev/null >"$out/$n.log" 2>"$out/$n.err" &
	kpid=$!
	expect "the restored worker's socket never answered" wait_for 20 alive "$vmn"
	tulip_link_flap "the restored guest"
	expect "the guest started again" fails has "$out/$n.log" "^tulip: mac "
	case_end "$out/$n.log" "$out/$n.err"
	net_ns_down
}
if [ $do_payloads = 1 ] && ! net_skip; then
	tulip_payload_case payload-tulip "probe=7 expect=1" "PASS: MII PHY at address 1 reports the link up" \
		"PASS: TI with IC set raises INTA#" "PASS: echo replies from the peer: 3 of 3" \
		"PASS: a 1400-byte echo came back" "PASS: UDP to a closed port" \
		"PASS: hash-only filter without our bit: reply out" "PASS: inverse filter listing others: reply in" \
		"VLAN 7 was answered" "stderr:tulip net0 rx_packets=[1-9]"
	tulip_payload_case payload-tulip-hostile "hostile=1" \
		"PASS: transmit buffer outside RAM: fatal bus error" "PASS: a looping frame jabbers" \
		"PASS: zero-length receive descriptors: receive process stopped" \
		"PASS: after descriptors rewritten under the device and a software reset the NIC answers"
	with_retry net_payload_vlan_case payload-tulip-vlan tulip ",model=tulip" "tulip net0 rx_packets=[1-9]"
	tulip_payload_link_case
	tulip_state_case
fi
# Debian's tulip driver on it: binds with the MAC from --net, link, ping,
# TCP both ways; tagged on VLAN 5.
if [ $do_linux = 1 ] && ! net_skip; then
	with_retry net_linux_case linux-tulip "model=tulip,mac=52:54:00:12:34:61" "" "" tulip 52:54:00:12:34:61
	with_retry net_linux_case linux-tulip-vlan "model=tulip,vlan=5" 5 "" tulip
fi

# ---- control socket: net-link (issue 5; uses the virtio-net helpers above) ----
# Debian's virtio_net sees carrier go and come back as `kestrel ctl net-link`
# sets the link (tests/kit/link.sh prints every change); $1 "tulip": the same
# with the emulated 21140 and Debian's tulip driver (which polls the link).
ctl_linux_netlink_case() {
	n=ctl-nl-$$
	nlname=linux-ctl-net-link lmods=virtio_pci,virtio_net lopt=""
	[ "${1:-}" = tulip ] && nlname=linux-tulip-net-link lmods=tulip lopt=",model=tulip"
	case_begin "$nlname" || return 0
	net_ns_up "kcl$$" || { expect "no network namespace" false; case_end; return 0; }
	net_tap kcl0
	[ -f "$out/initrd-ctl.gz" ] || cat "$KIT/initrd.cpio.gz" "$KIT/modules.cpio.gz" >"$out/initrd-ctl.gz"
	"$out/kestrel-ns" run --name "$n" --serial stdio --kernel "$KIT/vmlinux" --initrd "$out/initrd-ctl.gz" \
		--cpus 1 --mem 256M --timeout 200s --on-reboot exit --net "tap=kcl0$lopt" \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=$lmods kestrel.run=link kestrel.link_secs=150" \
		</dev/null >"$out/$n.log" 2>"$out/$n.err" &
	kpid=$!
	expect "the control socket never answered" wait_for 30 alive "$n"
	expect "the guest never saw carrier" wait_for 150 has "$out/$n.log" "^link: [a-z0-9]+ carrier=1"
	expect "net-link down failed" ctl "$n" net-link down
	expect "the guest did not lose carrier" wait_for 30 has "$out/$n.log" "carrier=0"
	ctl "$n" query-vm --json >"$out/vm" 2>&1
	expect "query-vm does not say the link is down" has "$out/vm" '"device":"net0","ifname":"kcl0","link":"down"'
	expect "net-link up failed" ctl "$n" net-link up device=net0
	expect "carrier did not come back" wait_for 30 more_than "$out/$n.log" "carrier=1" 1
	ctl "$n" net-link down device=net7 >/dev/null 2>"$out/e"
	expect "an unknown NIC: not 'not-found'" has "$out/e" "\(not-found\)"
	ctl "$n" stats --json >"$out/stats" 2>&1
	expect "stats lack the NIC" has "$out/stats" '"net":\[\{"device":"net0","ifname":"kcl0","link":"up","rx_packets"'
	expect "stop failed" ctl "$n" stop
	reap_worker $kpid 300
	expect "the worker exited $rc, not 0" [ $rc = 0 ]
	case_end "$out/$n.log" "$out/$n.err"
	net_ns_down
}
if [ $do_linux = 1 ] && ! net_skip; then
	with_retry ctl_linux_netlink_case
	with_retry ctl_linux_netlink_case tulip
fi

# ---- VM state with Debian (issue 14) ----------------------------------------
# Debian's kernel counts on its console and logs each count into a sector of
# a virtio-scsi VHD, synced (tests/kit/state.sh), with virtio-net up. Five
# times over, the worker saves the VM and exits and a new worker restores
# it: the count goes on without a reboot, the disk holds every line the
# guest had synced when it was saved, and the guest answers pings again.
# Then a copy of the state with one hostile field (right checksum) is
# refused with one line, and the running VM is not disturbed by that.
synced_max() { tr -d '\r' <"$1" | sed -n 's/^state: synced \([0-9]*\)$/\1/p' | tail -n 1; }
synced_past() { [ "$(synced_max "$1")" -gt "$2" ] 2>/dev/null; }
# disk_log_holds VHD N: the VHD's sectors 1.. hold "KESTREL-LOG 1".. up to at least N.
disk_log_holds() {
	rm -f "$out/stflat.raw"
	"$KESTREL" vhd convert -q --to raw "$1" "$out/stflat.raw" || return 1
	head -c $((($2 + 64) * 512)) "$out/stflat.raw" | tr -d '\000' | grep '^KESTREL-LOG ' >"$out/stlines"
	rm -f "$out/stflat.raw"
	consecutive "$out/stlines" "KESTREL-LOG" && [ "$(wc -l <"$out/stlines")" -ge "$2" ]
}
state_linux_case() {
	n=st-lx-$$
	case_begin linux-state-save-restore || return 0
	net_ns_up "kst$$" || { expect "no network namespace" false; case_end; return 0; }
	net_tap kst0
	net_addr kst0
	rm -f "$out/stdisk.vhd" "$out/$n".*
	"$KESTREL" vhd create -q --type dynamic --size 16M "$out/stdisk.vhd"
	[ -e "$out/initrd-modules.gz" ] || cat "$KIT/initrd.cpio.gz" "$KIT/modules.cpio.gz" >"$out/initrd-modules.gz"
	kit_tests_initrd "$out/initrd-state.gz"
	: >"$out/$n.all"
	"$out/kestrel-ns" run --name "$n" --serial stdio --kernel "$KIT/vmlinux" \
		--initrd "$out/initrd-state.gz" --cpus 2 --mem 256M --timeout 300s --on-reboot exit \
		--disk "path=$out/stdisk.vhd,bus=scsi" --net tap=kst0 \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=virtio_pci,virtio_scsi,sd_mod,virtio_net kestrel.run=state" \
		</dev/null >"$out/$n.log" 2>"$out/$n.err" &
	kpid=$!
	expect "the guest never synced a line" wait_for 240 has "$out/$n.log" "^state: synced 3[^0-9]"
	for r in 1 2 3 4 5; do
		[ -s "$out/why" ] && break
		last=$(synced_max "$out/$n.log")
		expect "round $r: the guest synced nothing new" wait_for 60 synced_past "$out/$n.log" "${last:-0}"
		expect "round $r: the save failed" state_save "$n" "$out/$n.state"
		reap_worker $kpid 300
		expect "round $r: the saved worker exited $rc, not 0" [ "$rc" = 0 ]
		cat "$out/$n.log" >>"$out/$n.all"
		cat "$out/$n.err" >>"$out/$n.allerr"
		synced=$(synced_max "$out/$n.all")
		expect "round $r: the disk lacks lines the guest synced (up to ${synced:-?})" \
			disk_log_holds "$out/stdisk.vhd" "${synced:-1}"
		: >"$out/$n.log"
		"$out/kestrel-ns" run --name "$n" --restore "$out/$n.state" --timeout 300s </dev/null \
			>>"$out/$n.log" 2>"$out/$n.err" &
		kpid=$!
		expect "round $r: the restored guest did not count on" wait_for 60 has "$out/$n.log" "^state: counter"
		expect "round $r: the restored guest did not sync" wait_for 60 has "$out/$n.log" "^state: synced"
		expect "round $r: the guest does not answer pings" $NSX ping -c 2 -W 5 10.0.0.2
	done
	# One hostile field each, checksums made right again: refused, one line.
	for t in "VCPU 0 12 41" "DEVS 0 12 ff" "PIT2 0 13 07" "CLCK 0 7 80"; do
		[ -s "$out/$n.state" ] || break
		cp "$out/$n.state" "$out/$n.bad"
		# shellcheck disable=SC2086 # the words are the tamper's arguments
		"$STATE_TAMPER" "$out/$n.bad" $t
		"$out/kestrel-ns" run --restore "$out/$n.bad" --name "$n-bad" --timeout 30s </dev/null \
			>"$out/$n.badlog" 2>"$out/$n.baderr"
		rrc=$?
		expect "hostile $t: status $rrc, not 2" [ "$rrc" = 2 ]
		expect "hostile $t: not one line: $(head -c 200 "$out/$n.baderr")" [ "$(wc -l <"$out/$n.baderr")" = 1 ]
		expect "hostile $t: the guest ran" fails has "$out/$n.badlog" "state:"
	done
	rm -f "$out/$n.bad"
	expect "stop failed" ctl "$n" stop
	reap_worker $kpid 300
	cat "$out/$n.log" >>"$out/$n.all"
	expect "the count did not go on across the restores" consecutive "$out/$n.all" "state: counter"
	expect "the guest booted more than once" [ "$(lines_of "$out/$n.all" KESTREL-GUEST-START)" = 1 ]
	case_end "$out/$n.all" "$out/$n.err"
	net_ns_down
}
if [ $do_linux = 1 ] && ! net_skip; then
	with_retry state_linux_case
fi

# Snapshot trees with Debian (docs/state.md, "Snapshots"): tests/kit/snap.sh
# reads back sector 0 of its virtio-scsi VHD past the page cache each round
# and checks it holds the marker the round before wrote (kept in the guest's
# RAM), then writes the next one. A -> B, apply A, apply B, delete A (A's
# file merged away), apply B again: each apply resumes at the marker the
# guest had written when that snapshot was taken, which it reads back from
# the disk (a FAIL line if the disk did not go back with RAM, or lost B's
# or the running state's data in the merge); in the end the disk holds the
# last marker.
snap_linux_case() {
	n=sn-lx-$$
	case_begin linux-state-snapshot-tree || return 0
	sd="$out/lsnapvm"
	rm -rf "$sd" "$out/$n".*
	mkdir -p "$sd"
	"$KESTREL" vhd create -q --type dynamic --size 16M "$sd/d.vhd"
	kit_tests_initrd "$out/initrd-snap.gz"
	: >"$out/$n.log"   # the first wait may come before the worker's shell opens it
	bg_run "$n" --kernel "$KIT/vmlinux" --initrd "$out/initrd-snap.gz" --cpus 1 --mem 128M \
		--timeout 600s --on-reboot exit --disk "path=$sd/d.vhd,bus=scsi" \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=virtio_pci,virtio_scsi,sd_mod kestrel.run=snap"
	expect "the guest never counted" wait_for 300 more_than "$out/$n.log" "^snap: mark" 3
	a1=$(marks "$out/$n.log" snap | tail -n 1)
	snap_step create A 12 snap 120
	a2=$(marks "$out/$n.log" snap | tail -n 1)
	b1=$a2
	snap_step create B 3 snap 120
	b2=$(marks "$out/$n.log" snap | tail -n 1)
	snap_step apply A 3 snap 120
	snap_step apply B 3 snap 120
	snap_step delete A 3 snap 120
	expect "A's disk file is still there" [ ! -e "$sd/d.vhd" ]
	snap_step apply B 3 snap 120
	ctl "$n" snapshot list --json >"$out/$n.list" 2>&1
	expect "the tree is not B alone: $(head -c 300 "$out/$n.list")" has "$out/$n.list" '"snapshots":\[\{"name":"B"'
	expect "A is still in the tree: $(head -c 300 "$out/$n.list")" fails has "$out/$n.list" '"name":"A"'
	expect "stop failed" ctl "$n" stop
	reap_worker $bg_pid 300
	expect "the worker exited $rc, not 0" [ "$rc" = 0 ]
	expect "a read-back failed: $(grep FAIL "$out/$n.log" | head -n 2 | tr '\n' ' ')" fails grep -q "^FAIL" "$out/$n.log"
	set -- $(resumes "$out/$n.log" snap)
	expect "the count went back $# times ($*), not 3" [ $# = 3 ]
	expect "apply A resumed at ${1:-?}, not in $((a1 + 1))..$((a2 + 1))" within "${1:-0}" $((a1 + 1)) $((a2 + 1))
	for r in "${2:-0}" "${3:-0}"; do
		expect "apply B resumed at $r, not in $((b1 + 1))..$((b2 + 1))" within "$r" $((b1 + 1)) $((b2 + 1))
	done
	last=$(marks "$out/$n.log" snap | tail -n 1)
	echo "note: $cname: A taken at marks $a1..$a2, B at $b1..$b2; resumed at $*; last $last"

	set -- $(ls "$sd"/*.vhd)
	expect "no disk file after the run" [ $# -ge 1 ]
	# The running disk (the newest child) holds the last marker read back
	# or the one written after it (the stop may come between).
	newest=$(ls -t "$sd"/*.vhd | head -n 1)
	"$KESTREL" vhd convert -q --to raw "$newest" "$sd/flat.raw"
	got=$(head -c 64 "$sd/flat.raw" | tr -d '\000' | sed -n 's/^KESTREL-SNAP \([0-9]*\)$/\1/p')
	expect "the running disk holds '${got:-?}', not KESTREL-SNAP $last (or the one after)" \
		within "${got:-0}" "$last" $((last + 1))
	case_end "$out/$n.log" "$out/$n.err"
}
if [ $do_linux = 1 ]; then
	with_retry snap_linux_case
fi

# Live migration of Debian (issue 15): two workers in this VM, the guest
# counting on serial every 100 ms and appending each line to a shared VHD
# (tests/kit/state.sh, no network) while it rewrites 16 MiB of its RAM all
# the time (a guest that dirties memory fast: the pre-copy must converge),
# moved over unix: and back over tcp:127.0.0.1 while it runs: no reboot, no
# lost line, every synced line on the disk; the downtime ctl migrate
# measured is printed.
migrate_linux_case() {
	n=mig-lx-$$ tg=mig-lx-t-$$
	case_begin linux-migrate || return 0
	rm -f "$out/mgdisk.vhd" "$out/$n".* "$out/$tg".*
	"$KESTREL" vhd create -q --type dynamic --size 16M "$out/mgdisk.vhd"
	kit_tests_initrd "$out/initrd-migrate.gz"
	bg_run "$n" --kernel "$KIT/vmlinux" --initrd "$out/initrd-migrate.gz" --cpus 2 --mem 256M \
		--timeout 400s --on-reboot exit --disk "path=$out/mgdisk.vhd,bus=scsi" \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=virtio_pci,virtio_scsi,sd_mod kestrel.run=state kestrel.state_net=0 kestrel.state_ms=100 kestrel.state_dirty_mb=16"
	src=$n src_pid=$bg_pid
	expect "the guest never synced a line" wait_for 240 has "$out/$n.log" "^state: synced 10[^0-9]"
	expect "the guest does not dirty its RAM" has "$out/$n.log" "^state: dirtying 16 MiB"
	: >"$out/$n.all"
	migrate_lo_up
	for uri in "unix:$out/$n.sock" "tcp:127.0.0.1:$((20000 + $$ % 20000))"; do
		[ -s "$out/why" ] && break
		[ "$src" = "$n" ] && dst=$tg || dst=$n
		bg_run "$dst" --incoming "$uri" --timeout 400s
		dst_pid=$bg_pid
		expect "$uri: the target never listened" wait_for 60 has "$out/$dst.err" "waiting for a migration"
		last=$(synced_max "$out/$src.log")
		expect "$uri: the guest synced nothing new" wait_for 60 synced_past "$out/$src.log" "${last:-0}"
		if ! migrate_to "$src" "$uri"; then
			expect "$uri: the migration failed: $(tail -n 2 "$out/$src.mig" 2>/dev/null | tr '\n' ' ')" false
			ctl "$dst" stop >/dev/null 2>&1
			kill $dst_pid 2>/dev/null
			reap_worker $dst_pid 30
			break
		fi
		echo "note: linux-migrate $uri: $(sed -n 's/.*(\(downtime.*\))$/\1/p' "$out/$src.mig")"
		reap_worker $src_pid 400
		expect "$uri: the source exited $rc, not 0" [ "$rc" = 0 ]
		cat "$out/$src.log" >>"$out/$n.all"
		cat "$out/$src.err" >>"$out/$n.allerr"
		expect "$uri: the guest did not count on" wait_for 60 has "$out/$dst.log" "^state: counter"
		expect "$uri: the guest did not sync on the target" wait_for 60 has "$out/$dst.log" "^state: synced"
		src=$dst src_pid=$dst_pid
	done
	last=$(synced_max "$out/$src.log")
	expect "the guest synced nothing after the moves" wait_for 60 synced_past "$out/$src.log" "${last:-0}"
	expect "stop failed" ctl "$src" stop
	reap_worker $src_pid 400
	cat "$out/$src.log" >>"$out/$n.all"
	synced=$(synced_max "$out/$n.all")
	expect "the disk lacks lines the guest synced (up to ${synced:-?})" \
		disk_log_holds "$out/mgdisk.vhd" "${synced:-1}"
	expect "the count did not go on across the moves" consecutive "$out/$n.all" "state: counter"
	expect "the guest booted more than once" [ "$(lines_of "$out/$n.all" KESTREL-GUEST-START)" = 1 ]
	case_end "$out/$n.all" "$out/$n.err" "$out/$tg.err"
}
if [ $do_linux = 1 ]; then
	with_retry migrate_linux_case
fi

# ---- PS/2 keyboard and mouse (issue 12) -------------------------------------
# The i8042's devices driven through the control socket and read by Debian's
# built-in atkbd and i8042 and its psmouse module (tests/kit/input.sh): keys
# and motion as evdev and mousedev report them, a command typed on the VT
# and run by the guest's shell, and Ctrl-Alt-Del, which the guest's kernel answers
# by restarting (--on-reboot exit: the worker exits 0). Needs psmouse in the
# kit (scripts/guest-kit.sh KIT_MODULES).
ctl_linux_input_case() {
	n=ctl-in-$$
	case_begin linux-ctl-input || return 0
	if ! zcat "$KIT/modules.cpio.gz" | cpio -t 2>/dev/null | grep -q '/psmouse\.ko$'; then
		echo "SKIP: linux-ctl-input: the kit has no psmouse module (rebuild it: scripts/guest-kit.sh)"
		return 0
	fi
	kit_tests_initrd "$out/initrd-input.gz"
	bg_run "$n" --kernel "$KIT/vmlinux" --initrd "$out/initrd-input.gz" --cpus 1 --mem 256M \
		--timeout 400s --on-reboot exit \
		--cmdline "console=ttyS0 panic=-1 quiet kestrel.modules=evdev,psmouse kestrel.run=input"
	expect "the control socket never answered" wait_for 20 alive "$n"
	expect "the guest found no PS/2 mouse" wait_for 180 has "$out/$n.log" "^input-test: mouse /dev/input/event[0-9]+ ImPS/2 Generic Wheel Mouse"
	expect "the guest found no keyboard" has "$out/$n.log" "^input-test: keyboard /dev/input/event[0-9]+ AT Translated Set 2 keyboard"
	expect "tty: the guest never listened" wait_for 60 has "$out/$n.log" "^input-test: ready tty"
	expect "send-key (a command) failed" ctl "$n" send-key \
		"e c h o spc shift-4 shift-9 shift-9 6 shift-8 7 shift-0 shift-0 ret"
	expect "tty: the guest did not run the typed command" wait_for 60 has "$out/$n.log" \
		"^input-test: tty1 ran 'echo \\$\\(\\(6\\*7\\)\\)': 42"
	expect "keys: the guest never listened" wait_for 60 has "$out/$n.log" "^input-test: ready keys"
	expect "send-key a shift-b failed" ctl "$n" send-key "a shift-b"
	expect "keys: no release of b" wait_for 60 has "$out/$n.log" "^input-test: key 42 0"
	tr -d '\r' <"$out/$n.log" | sed -n 's/^input-test: key //p' | tr '\n' ';' >"$out/keys"
	expect "keys: $(cat "$out/keys")" [ "$(cat "$out/keys")" = "30 1;30 0;42 1;48 1;48 0;42 0;" ]
	expect "mouse: the guest never listened" wait_for 60 has "$out/$n.log" "^input-test: ready mouse"
	expect "mouse-move 5 -3 failed" ctl "$n" mouse-move 5 -3 buttons=1
	expect "mouse-move wheel failed" ctl "$n" mouse-move 0 0 wheel=1
	expect "mouse: no packet from /dev/input/mice" wait_for 60 has "$out/$n.log" "^input-test: mice "
	for e in "key 272 1" "rel 0 5" "rel 1 -3" "rel 8 -1" "key 272 0" "mice +9 +5 +3"; do
		expect "mouse: no '$e'" has "$out/$n.log" "^input-test: $e\b"
	done
	expect "cad: the guest never listened" wait_for 60 has "$out/$n.log" "^input-test: ready cad"
	expect "send-key ctrl-alt-delete failed" ctl "$n" send-key ctrl-alt-delete
	reap_worker $bg_pid 400
	expect "the worker exited $rc, not 0" [ $rc = 0 ]
	expect "the guest did not restart on Ctrl-Alt-Del" has "$out/$n.log" "reboot: Restarting system"
	expect "Ctrl-Alt-Del was ignored" fails grep -q "did not reboot" "$out/$n.log"
	case_end "$out/$n.log" "$out/$n.err"
}
# The VNC server (--display vnc=) on Debian's bochs-drm framebuffer console,
# with tests/vnc-client.c: a client connected from the start sees the mode
# change; a frame equals the screendump taken at the same still moment; a
# command typed through VNC (XT codes, then keysyms) runs in the guest's
# shell; pointer motion comes out of psmouse.
ctl_linux_vnc_case() {
	n=vnc-$$ vport=$((5900 + $$ % 1000))
	case_begin linux-vnc || return 0
	if [ ! -x "$VNC_CLIENT" ] || [ ! -x "$VGA_COMPARE" ] ||
		! zcat "$KIT/modules.cpio.gz" | cpio -t 2>/dev/null | grep -q '/psmouse\.ko$'; then
		echo "SKIP: linux-vnc: no vnc-client or vga-compare helper, or no psmouse in the kit"
		return 0
	fi
	kit_tests_initrd "$out/initrd-vnc.gz"
	# The nested rig starts with the loopback interface down.
	ip link set lo up 2>/dev/null || true
	bg_run "$n" --kernel "$KIT/vmlinux" --initrd "$out/initrd-vnc.gz" --cpus 1 --mem 256M \
		--timeout 400s --on-reboot exit --display "vnc=127.0.0.1:$vport" \
		--cmdline "console=ttyS0 panic=-1 quiet vt.global_cursor_default=0 kestrel.modules=bochs,evdev,psmouse kestrel.run=input kestrel.input_steps=fbcon,tty,mouse"
	expect "the control socket never answered" wait_for 20 alive "$n"
	"$VNC_CLIENT" "127.0.0.1:$vport" resize 300000 >"$out/$n.size" 2>&1 &
	vpid=$!
	expect "fbcon: never ready" wait_for 240 has "$out/$n.log" "^input-test: ready fbcon [0-9]+,[0-9]+"
	wait $vpid
	vsize=$(tr -d '\r' <"$out/$n.log" | sed -n 's/^input-test: ready fbcon \([0-9]*\),\([0-9]*\)$/\1x\2/p')
	expect "the first client did not see the mode change to $vsize: $(cat "$out/$n.size")" \
		has "$out/$n.size" "^vnc-client: size $vsize$"
	ctl "$n" screendump "$out/$n.png" >/dev/null 2>&1
	"$VNC_CLIENT" "127.0.0.1:$vport" frame "$out/$n.ppm" >"$out/$n.frame" 2>&1
	"$VGA_COMPARE" same "$out/$n.png" "$out/$n.ppm" >"$out/$n.cmp" 2>&1
	expect "the VNC frame is not the screendump: $(cat "$out/$n.frame" "$out/$n.cmp" | tr '\n' ' ')" \
		has "$out/$n.cmp" "^match $vsize"
	expect "tty: the guest never listened" wait_for 60 has "$out/$n.log" "^input-test: ready tty"
	"$VNC_CLIENT" "127.0.0.1:$vport" xt 0x12 0x2e 0x23 0x18 type " \$((6*7))
" >"$out/$n.type" 2>&1
	expect "typing through VNC: $(tr '\n' ' ' <"$out/$n.type")" has "$out/$n.type" "typed 10 characters"
	expect "tty: the guest did not run what VNC typed" wait_for 60 has "$out/$n.log" \
		"^input-test: tty1 ran 'echo \\$\\(\\(6\\*7\\)\\)': 42"
	expect "mouse: the guest never listened" wait_for 60 has "$out/$n.log" "^input-test: ready mouse"
	"$VNC_CLIENT" "127.0.0.1:$vport" pointer 100 100 0 pointer 105 97 1 pointer 105 97 16 \
		pointer 105 97 0 sleep 500 >"$out/$n.ptr" 2>&1
	expect "mouse: no packet from /dev/input/mice" wait_for 60 has "$out/$n.log" "^input-test: mice "
	for e in "key 272 1" "rel 0 5" "rel 1 -3" "rel 8 -1" "key 272 0" "mice +9 +5 +3"; do
		expect "mouse: no '$e'" has "$out/$n.log" "^input-test: $e\b"
	done
	# input.sh is done: the guest powers off by itself.
	reap_worker $bg_pid 400
	expect "the worker exited $rc, not 0" [ $rc = 0 ]
	case_end "$out/$n.log" "$out/$n.err" "$out/$n.size" "$out/$n.frame" "$out/$n.type" "$out/$n.ptr"
}
if [ $do_linux = 1 ]; then
	with_retry ctl_linux_input_case
	with_retry ctl_linux_vnc_case
fi

# ---- firmware boot (issue 11) --------------------------------------------
# SeaBIOS from the reset vector (Debian's bios-256k.bin, kestrel's default
# firmware; KESTREL_FIRMWARE for another), its screen on COM1 (sercon), its
# log with --firmware-log. The boot sector is tests/guest/bootsect.S.
FW_BIOS=${KESTREL_FIRMWARE:-/usr/share/seabios/bios-256k.bin}
# Images made with tools the rig lacks (tests/fw-images.sh; the rig's --add).
FW_IMAGES=${FW_IMAGES:-$(first_of "$root/build/fwimages" /work/fwimages)}
fw_missing() {
	[ -s "$FW_BIOS" ] && return 1
	echo "$1" | grep -Eq -- "$filter" && echo "SKIP: $1: no firmware at $FW_BIOS"
	return 0
}
# fw_bootsect FILE [MODE]: bootsect.bin as a 1 MiB raw disk; MODE (1 0xCF9,
# 2 keyboard controller, 3 triple fault) makes it reset once first.
fw_bootsect() {
	dd if=/dev/zero of="$1" bs=1M count=1 2>/dev/null
	dd if="$PAYLOADS/bootsect.bin" of="$1" conv=notrunc 2>/dev/null
	[ -z "${2:-}" ] || printf "\\00$2" | dd of="$1" bs=1 seek=528 conv=notrunc 2>/dev/null
}
FW_BOOTSECT="bootsect: int 10h teletype works"
fw_bootsect_case() { # fw_bootsect_case NAME MODE PATTERNS... -- ARGS...
	fname=$1 fmode=$2
	shift 2
	fw_missing "$fname" && return 0
	echo "$fname" | grep -Eq -- "$filter" || return 0
	fw_bootsect "$out/fwbs.img" "$fmode"
	run_case "$fname" 0 "SeaBIOS \(version " "$FW_BOOTSECT" "bootsect: booted from drive 0x80" \
		"bootsect: int 13h read sector 1: KESTREL-SECTOR-1" "bootsect: done" "!FAIL" "$@" \
		--firmware "$FW_BIOS" --timeout 120s
}

# A firmware-booted VM saved and restored (docs/state.md): SeaBIOS booted
# bootsect.bin (mode 4) from an IDE disk, with the std VGA and an empty IDE
# CD drive, and it waits for a key through int 16h. Saved there, restored in
# a new worker, the key sent then reaches it through the restored PS/2
# keyboard, PIC and the BIOS's own handler in shadow RAM: it prints the scan
# code and powers off, and the firmware never ran again.
fw_state_case() {
	n=fw-st-$$
	case_begin fw-state-keywait || return 0
	fw_missing fw-state-keywait && return 0
	fw_bootsect "$out/fwst.img" 4
	rm -f "$out/$n".*
	bg_run "$n" --firmware "$FW_BIOS" --timeout 120s --disk "path=$out/fwst.img,bus=ide" \
		--disk "bus=ide,media=cdrom,unit=2"
	expect "the boot sector never waited for a key" \
		wait_for 90 has "$out/$n.log" "^bootsect: waiting for a key"
	expect "the save failed: $(tail -n 2 "$out/$n.save" 2>/dev/null | tr '\n' ' ')" \
		state_save "$n" "$out/$n.state"
	reap_worker $bg_pid 60
	expect "the saved worker exited $rc, not 0" [ "$rc" = 0 ]
	mv "$out/$n.log" "$out/$n-1.log"
	"$KESTREL" run --name "$n" --restore "$out/$n.state" --timeout 60s --serial stdio \
		</dev/null >"$out/$n.log" 2>"$out/$n.err" &
	bg_pid=$!
	expect "the restored worker's socket never answered" wait_for 20 alive "$n"
	expect "the restored VM has no screen" ctl "$n" screendump "$out/$n.png"
	expect "send-key failed" ctl "$n" send-key a
	reap_worker $bg_pid 60
	expect "the restored worker exited $rc, not 0 (powered off)" [ "$rc" = 0 ]
	cat "$out/$n-1.log" "$out/$n.log" >"$out/$n-all.log"
	expect "the key did not reach the restored guest" has "$out/$n.log" "^bootsect: key 0x1e"
	expect "the firmware ran again" [ "$(lines_of "$out/$n-all.log" "SeaBIOS \(version ")" = 1 ]
	case_end "$out/$n-all.log" "$out/$n.err"
}

# The same machine live-migrated (docs/migration.md) instead: over unix: to a
# second worker on this host, which takes the IDE disk's lock at the
# switch-over; the key sent to the target reaches the guest, and the
# firmware ran once.
fw_migrate_case() {
	n=fw-mg-$$ tg=fw-mg-t-$$
	case_begin fw-migrate-keywait || return 0
	fw_missing fw-migrate-keywait && return 0
	fw_bootsect "$out/fwmg.img" 4
	rm -f "$out/$n".* "$out/$tg".*
	bg_run "$n" --firmware "$FW_BIOS" --timeout 120s --disk "path=$out/fwmg.img,bus=ide" \
		--disk "bus=ide,media=cdrom,unit=2"
	src_pid=$bg_pid
	expect "the boot sector never waited for a key" \
		wait_for 90 has "$out/$n.log" "^bootsect: waiting for a key"
	bg_run "$tg" --incoming "unix:$out/$n.sock" --timeout 60s
	dst_pid=$bg_pid
	expect "the target never listened" wait_for 30 has "$out/$tg.err" "waiting for a migration"
	expect "the migration failed: $(tail -n 2 "$out/$n.mig" 2>/dev/null | tr '\n' ' ')" \
		migrate_to "$n" "unix:$out/$n.sock"
	reap_worker $src_pid 60
	expect "the source exited $rc, not 0" [ "$rc" = 0 ]
	expect "the target's socket never answered" wait_for 20 alive "$tg"
	expect "send-key failed" ctl "$tg" send-key a
	reap_worker $dst_pid 60
	expect "the target exited $rc, not 0 (powered off)" [ "$rc" = 0 ]
	cat "$out/$n.log" "$out/$tg.log" >"$out/$n-all.log"
	expect "the key did not reach the migrated guest" has "$out/$tg.log" "^bootsect: key 0x1e"
	expect "the firmware ran again" [ "$(lines_of "$out/$n-all.log" "SeaBIOS \(version ")" = 1 ]
	case_end "$out/$n-all.log" "$out/$tg.err"
}

# SeaBIOS's screen through the std VGA (no disk: it says so and waits): the
# screendump, a PNG, is read back cell by cell with the 8x16 font of the VGA
# BIOS ROM itself (vga-compare text), and must show SeaBIOS's banner and its
# "No bootable device." - text the VGA BIOS drew in mode 3 with the font it
# loaded into plane 2. Debian's VGA BIOS (SeaVGABIOS) puts no banner of its
# own on the screen: its "Start SeaVGABIOS" goes to the debug port, which
# fw-no-bootable-device checks.
FW_VGA_ROM=${KESTREL_VGA_ROM:-/usr/share/seabios/vgabios-stdvga.bin}
fw_screen_shows() {
	ctl "$1" screendump "$out/$1.png" >"$out/$1.dump" 2>&1 &&
		"$VGA_COMPARE" text "$out/$1.png" "$FW_VGA_ROM" >"$out/$1.txt" 2>&1 &&
		has "$out/$1.txt" "^SeaBIOS \(version [0-9]" && has "$out/$1.txt" "^No bootable device\.$"
}
fw_vga_screen_case() {
	n=fwvga-$$
	fw_missing fw-vga-screendump && return 0
	case_begin fw-vga-screendump || return 0
	if [ ! -x "$VGA_COMPARE" ] || [ ! -s "$FW_VGA_ROM" ]; then
		echo "SKIP: fw-vga-screendump: no vga-compare helper or no $FW_VGA_ROM"
		return 0
	fi
	: >"$out/$n.log"
	bg_run "$n" --firmware "$FW_BIOS" --timeout 120s
	expect "SeaBIOS never said there is no bootable device" \
		wait_for 100 has "$out/$n.log" "No bootable device\."
	wait_for 10 fw_screen_shows "$n"
	expect "the screendump does not show SeaBIOS's banner: $(tr '\n' '|' <"$out/$n.txt")" \
		has "$out/$n.txt" "^SeaBIOS \(version [0-9]"
	expect "the screendump does not show 'No bootable device.'" \
		has "$out/$n.txt" "^No bootable device\.$"
	expect "the dump is not a mode 3 screen: $(tr '\n' ' ' <"$out/$n.dump")" \
		has "$out/$n.dump" "^width: 720$"
	lit=$("$VGA_COMPARE" count "$out/$n.png")
	expect "the dump shows almost nothing ($lit pixels lit)" [ "${lit:-0}" -gt 1000 ]
	expect "stop failed" ctl "$n" stop >"$out/$n.stop" 2>&1
	reap_worker $bg_pid 120
	expect "the worker exited $rc, not 0" [ "$rc" = 0 ]
	case_end "$out/$n.log" "$out/$n.err" "$out/$n.txt"
}

if [ $do_payloads = 1 ] && [ -s "$PAYLOADS/bootsect.bin" ]; then
	# No disk: SeaBIOS looks everywhere and says so on its screen (COM1);
	# its log (port 0x402) shows it found the board through fw_cfg, used
	# kestrel's ACPI tables (table loader) and counted the vCPUs (INIT/SIPI).
	if ! fw_missing fw-no-bootable-device; then
		run_case fw-no-bootable-device 124 "SeaBIOS \(version " "No bootable device\." \
			"stderr:Found QEMU fw_cfg" "stderr:table\([0-9a-f]+\)=0x[0-9a-f]+ \(via xsdt\)" \
			"stderr:Found 4 cpu\(s\) max supported 4 cpu\(s\)" "stderr:sercon: using ioport 0x3f8" \
			"stderr:PCI: Using 00:02.0 for primary VGA" "stderr:Running option rom at c000:0003" \
			"stderr:Start SeaVGABIOS" -- \
			--firmware "$FW_BIOS" --firmware-log stderr --cpus 4 --timeout 12s
	fi
	fw_vga_screen_case
	# A boot sector on a virtio-scsi disk, raw and as a dynamic VHD; the boot
	# order names it (fw_cfg bootorder).
	fw_bootsect_case fw-bootsect-scsi "" -- --disk "path=$out/fwbs.img,bus=scsi"
	if echo fw-bootsect-scsi-vhd | grep -Eq -- "$filter" && ! fw_missing fw-bootsect-scsi-vhd; then
		fw_bootsect "$out/fwbs.raw"
		rm -f "$out/fwbs.vhd"
		"$KESTREL" vhd convert -q --to dynamic "$out/fwbs.raw" "$out/fwbs.vhd"
		run_case fw-bootsect-scsi-vhd 0 "SeaBIOS \(version " "$FW_BOOTSECT" \
			"bootsect: int 13h read sector 1: KESTREL-SECTOR-1" "bootsect: done" "!FAIL" -- \
			--firmware "$FW_BIOS" --timeout 120s --disk "path=$out/fwbs.vhd,bus=scsi,target=3" \
			--boot disk
	fi
	# A guest reset runs the firmware again: through 0xCF9, the keyboard
	# controller and a triple fault (a PC resets on one); the boot sector
	# wrote its count to the disk before it reset.
	ON_REBOOT=restart
	for m in 1:cf9:0xcf9 2:kbc:kbc 3:triple:"triple fault"; do
		fw_bootsect_case "fw-reset-$(echo "$m" | cut -d: -f2)" "${m%%:*}" "2x:SeaBIOS \(version " \
			"bootsect: reset through ${m##*:}" "bootsect: after 01 reset\(s\)" -- \
			--disk "path=$out/fwbs.img,bus=scsi"
	done
	ON_REBOOT=
	# With --on-reboot exit a triple fault stays a VM error (exit 3), so CI
	# tells a crash from a reboot the guest asked for.
	if echo fw-triple-fault-exit | grep -Eq -- "$filter" && ! fw_missing fw-triple-fault-exit; then
		fw_bootsect "$out/fwbs.img" 3
		run_case fw-triple-fault-exit 3 "bootsect: reset through triple fault" "!bootsect: after" \
			"stderr:triple fault" -- --firmware "$FW_BIOS" --timeout 120s \
			--disk "path=$out/fwbs.img,bus=scsi"
	fi
fi

# The PIIX3's IDE: a boot sector on a disk (raw and dynamic VHD) and on the
# ATAPI CD (an El Torito ISO, tests/fw-images.sh), and --boot choosing the CD
# over a bootable disk.
if [ $do_payloads = 1 ] && [ -s "$PAYLOADS/bootsect.bin" ]; then
	fw_bootsect_case fw-bootsect-ide "" -- --disk "path=$out/fwbs.img,bus=ide"
	if echo fw-bootsect-ide-vhd | grep -Eq -- "$filter" && ! fw_missing fw-bootsect-ide-vhd; then
		fw_bootsect "$out/fwbs.raw"
		rm -f "$out/fwbs.vhd"
		"$KESTREL" vhd convert -q --to dynamic "$out/fwbs.raw" "$out/fwbs.vhd"
		run_case fw-bootsect-ide-vhd 0 "SeaBIOS \(version " "$FW_BOOTSECT" \
			"bootsect: int 13h read sector 1: KESTREL-SECTOR-1" "bootsect: done" "!FAIL" -- \
			--firmware "$FW_BIOS" --timeout 120s --disk "path=$out/fwbs.vhd,bus=ide,unit=1"
	fi
	if [ ! -s "$FW_IMAGES/bootsect.iso" ]; then
		for n in fw-bootsect-cdrom fw-boot-order-cdrom; do
			echo "$n" | grep -Eq -- "$filter" &&
				echo "SKIP: $n: no $FW_IMAGES/bootsect.iso (tests/fw-images.sh)"
		done
	elif ! fw_missing fw-bootsect-cdrom; then
		run_case fw-bootsect-cdrom 0 "SeaBIOS \(version " "Booting from DVD/CD" "$FW_BOOTSECT" \
			"bootsect: booted from drive 0xe0" \
			"bootsect: int 13h read the volume descriptor: CD001" "bootsect: done" "!FAIL" -- \
			--firmware "$FW_BIOS" --timeout 120s \
			--disk "path=$FW_IMAGES/bootsect.iso,bus=ide,media=cdrom,unit=2"
		fw_bootsect "$out/fwbs.img"
		run_case fw-boot-order-cdrom 0 "bootsect: booted from drive 0xe0" "bootsect: done" \
			"!drive 0x80" -- --firmware "$FW_BIOS" --timeout 120s --boot cdrom,disk \
			--disk "path=$out/fwbs.img,bus=ide" \
			--disk "path=$FW_IMAGES/bootsect.iso,bus=ide,media=cdrom,unit=2"
	fi
	fw_state_case
	fw_migrate_case
fi

# The headline: SeaBIOS -> SYSLINUX (Debian's) on a disk, a dynamic VHD ->
# Debian's kernel -> the kit's /init with 2 CPUs; the tables, the e820
# reservation and the disk as the kernel sees them (tests/kit/fwboot.sh;
# the image: tests/fw-images.sh). Then the raw disk with a mark that makes
# Linux reboot once: the reset runs SeaBIOS and SYSLINUX again, and the
# second boot powers off. fw_linux_cases BUS: the disks on that bus.
fw_linux_cases() {
	fb=$1
	if [ ! -s "$FW_IMAGES/fwlinux.img" ]; then
		for n in "fw-syslinux-$fb-vhd" "fw-syslinux-$fb-reboot"; do
			echo "$n" | grep -Eq -- "$filter" &&
				echo "SKIP: $n: no $FW_IMAGES/fwlinux.img (tests/fw-images.sh)"
		done
		return 0
	fi
	if echo "fw-syslinux-$fb-vhd" | grep -Eq -- "$filter" && ! fw_missing "fw-syslinux-$fb-vhd"; then
		rm -f "$out/fwlinux.vhd"
		"$KESTREL" vhd convert -q --to dynamic "$FW_IMAGES/fwlinux.img" "$out/fwlinux.vhd"
		run_case "fw-syslinux-$fb-vhd" 0 "SeaBIOS \(version " "SYSLINUX [0-9]" \
			"KESTREL-GUEST-INIT-OK" "^nproc=2\b" "^fwboot: loader BOOT_IMAGE=vmlinuz" \
			"^fwboot: acpi dsdt KESTRL$" "^fwboot: acpi rsdp 0x0*f[0-9a-f]{4}$" \
			"^fwboot: disk sd[a-z] size=34816$" \
			"^e820: 0x0*feffc000-0x0*feffffff Reserved" "^fwboot: done" \
			"KESTREL-GUEST-POWEROFF" "!fwboot: reboot" -- \
			--firmware "$FW_BIOS" --cpus 2 --mem 512M --timeout 300s \
			--disk "path=$out/fwlinux.vhd,bus=$fb"
	fi
	if echo "fw-syslinux-$fb-reboot" | grep -Eq -- "$filter" && ! fw_missing "fw-syslinux-$fb-reboot"; then
		cp "$FW_IMAGES/fwlinux.img" "$out/fwlinux.img"
		printf 'REBOOT-ONCE' | dd of="$out/fwlinux.img" bs=512 seek=34815 conv=notrunc 2>/dev/null
		ON_REBOOT=restart
		run_case "fw-syslinux-$fb-reboot" 0 "2x:SeaBIOS \(version " "2x:SYSLINUX [0-9]" \
			"^fwboot: reboot once" "^fwboot: after a reboot" "KESTREL-GUEST-POWEROFF" -- \
			--firmware "$FW_BIOS" --cpus 1 --mem 256M --timeout 300s \
			--disk "path=$out/fwlinux.img,bus=$fb"
		ON_REBOOT=
	fi
}
# Debian's VGA text console: SeaBIOS's VGA BIOS set mode 3, SYSLINUX started
# Linux, vgacon took tty1 (bochs-drm is not loaded), and fwboot.sh (the
# disk's VGACON mark) put the kernel's last messages and a marker there; the
# screendump, read back with the VGA BIOS's font, shows them.
fw_vgacon_shows() {
	ctl "$1" screendump "$out/$1.png" >"$out/$1.dump" 2>&1 &&
		"$VGA_COMPARE" text "$out/$1.png" "$FW_VGA_ROM" >"$out/$1.txt" 2>&1 &&
		has "$out/$1.txt" "^KESTREL-VGACON-MARKER$"
}
fw_vgacon_case() {
	n=fwvgacon-$$
	fw_missing fw-syslinux-vgacon && return 0
	case_begin fw-syslinux-vgacon || return 0
	if [ ! -s "$FW_IMAGES/fwlinux.img" ] || [ ! -x "$VGA_COMPARE" ] || [ ! -s "$FW_VGA_ROM" ]; then
		echo "SKIP: fw-syslinux-vgacon: no $FW_IMAGES/fwlinux.img, vga-compare or $FW_VGA_ROM"
		return 0
	fi
	cp "$FW_IMAGES/fwlinux.img" "$out/fwvgacon.img"
	printf 'VGACON' | dd of="$out/fwvgacon.img" bs=512 seek=34815 conv=notrunc 2>/dev/null
	bg_run "$n" --firmware "$FW_BIOS" --cpus 1 --mem 256M --timeout 300s \
		--disk "path=$out/fwvgacon.img,bus=ide"
	expect "the guest never put its messages on tty1" \
		wait_for 240 has "$out/$n.log" "^fwboot: vgacon ready"
	expect "tty1's console is not vgacon: $(grep -a 'vgacon ready' "$out/$n.log")" \
		has "$out/$n.log" "^fwboot: vgacon ready VGA\+"
	wait_for 10 fw_vgacon_shows "$n"
	expect "the screendump does not show the marker: $(tail -n 4 "$out/$n.txt" | tr '\n' '|')" \
		has "$out/$n.txt" "^KESTREL-VGACON-MARKER$"
	expect "the screendump shows no kernel message" has "$out/$n.txt" "^\[ *[0-9]+\.[0-9]{6}\] [A-Za-z]"
	expect "the dump is not a mode 3 screen: $(tr '\n' ' ' <"$out/$n.dump")" \
		has "$out/$n.dump" "^width: 720$"
	expect "stop failed" ctl "$n" stop >"$out/$n.stop" 2>&1
	reap_worker $bg_pid 300
	expect "the worker exited $rc, not 0" [ "$rc" = 0 ]
	case_end "$out/$n.log" "$out/$n.err" "$out/$n.txt"
}
if [ $do_linux = 1 ]; then
	fw_linux_cases ide
	fw_linux_cases scsi
	fw_vgacon_case
fi

# ---- processor compatibility mode (issue 15, docs/cpu.md) ---------------
# Debian's /proc/cpuinfo under --cpu compat lacks every flag above compat's
# baseline and keeps the baseline; under --cpu host it shows at least one of
# them where this CPU's KVM offers it (the rig's qemu64 CPU: KVM's own
# tsc_adjust, nested svm). The same list both ways, so host proves the list
# can match.
if [ $do_linux = 1 ] && echo linux-cpumodel | grep -Eq -- "$filter"; then
	kit_tests_initrd "$out/initrd-cpu.gz"
	above_compat='^cpuflag=(ssse3|sse4_1|sse4_2|popcnt|aes|pclmulqdq|xsave|avx|avx2|avx512f|rdrand|rdseed|sha_ni|movbe|fma|f16c|bmi1|bmi2|tsc_adjust|svm|sse4a|misalignsse|abm|pdpe1gb|rdtscp|fsgsbase|smep|smap)$'
	for m in compat host; do
		if [ $m = compat ]; then
			pats="^cpuflag=sse2$ ^cpuflag=pni$ ^cpuflag=cx16$ ^cpuflag=lahf_lm$ ^cpuflag=lm$ ^cpuflag=nx$ !$above_compat"
		else
			pats="^cpuflag=sse2$ $above_compat"
		fi
		# shellcheck disable=SC2086 # the patterns hold no spaces
		run_case "linux-cpumodel-$m" 0 "KESTREL-GUEST-INIT-OK" "^cpuflags: done" $pats -- \
			--kernel "$KIT/vmlinux" --initrd "$out/initrd-cpu.gz" --cpus 1 --mem 256M \
			--cpu $m --timeout 300s --cmdline "console=ttyS0 panic=-1 quiet kestrel.run=cpuflags"
	done
	hid=$(grep -E "$above_compat" "$out/linux-cpumodel-host.log" 2>/dev/null | sed 's/^cpuflag=//' | tr '\n' ' ')
	echo "note: linux-cpumodel: host shows, compat hides: ${hid:-nothing}"
fi

echo "$pass passed, $fail failed"
[ $fail = 0 ]
