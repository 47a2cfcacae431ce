#!/usr/bin/env bash
# scripts/rig.sh [options] -- COMMAND [ARGS...]
# scripts/rig.sh [options] --shell
#
# Runs COMMAND inside the nested rig: an outer QEMU TCG VM with nested SVM
# (TESTBED.md) booting the kit's Debian kernel with a busybox initramfs that
# loads irqbypass, ccp, kvm, kvm-amd so /dev/kvm works. COMMAND runs with
# /bin/sh -c in /work (a tmpfs); one argument is taken as a shell script
# string, several are quoted and joined. Its output comes back on stdout
# and rig.sh exits with its status (125: the rig itself failed).
#
# Inside the rig:
#   /usr/bin/kestrel   $KESTREL_BIN or <repo>/build/kestrel (+ its libraries)
#   /kit/              bzImage vmlinux initrd.cpio.gz modules.cpio.gz
#   /payloads/         <repo>/build/tests/guest/*.bin, when present
#   /usr/bin/kvm-hold  <repo>/build/kvm-hold, when built: started at boot, it
#                      keeps one idle VM open (tests/kvm-hold.c says why)
#   /usr/share/qemu/   with --with-qemu: qemu-system-x86_64's firmware (the
#                      built-in search path; also fine as -L /usr/share/qemu)
#   env: KESTREL_KIT=/kit PAYLOADS=/payloads QEMU_FIRMWARE=/usr/share/qemu
#        KESTREL_BIN=/usr/bin/kestrel (when shipped) HOME=/work
#
# Options:
#   --kit DIR        guest kit (default $KESTREL_KIT or <repo>/.kit; built
#                    with scripts/guest-kit.sh when missing)
#   --with-qemu      ship Debian's qemu-system-x86_64, libraries, firmware
#   --mem MB         outer VM memory (3072)      --smp N   outer vCPUs (2)
#   --timeout SEC    give up after SEC seconds (600), exit 125
#   --silence SEC    give up when the console (which has a 20 s heartbeat)
#                    is silent for SEC seconds: the outer VM froze (120)
#   --retries N      when the outer VM freezes, dies or times out without the
#                    command's exit status, run the command again in a fresh
#                    one, up to N times (0)
#   --add SRC[:DEST] copy a file or directory in (a program with its shared
#                    libraries); DEST defaults to /work/<basename SRC>; repeatable
#   --no-kestrel     do not ship the kestrel binary
#   --shell          interactive shell on the console instead of COMMAND
#   --verbose        also show the outer boot's console on stderr
#   --time           print boot and command timings on stderr
# Environment: KESTREL_BIN, KESTREL_KIT, KESTREL_RIG_CPU (outer -cpu, for
# experiments; default qemu64,+svm,+npt), KESTREL_RIG_APPEND (outer kernel
# log options instead of "quiet loglevel=2": emergencies and alerts, so a panic or an oops of the
# outer kernel reaches the console and rig.sh's failure tail; "loglevel=7" for all),
# KESTREL_RIG_TCG (single|multi, default multi; single makes SMP inner guests
# far too slow: a 2-vCPU boot took over 180 s).
# The base initramfs (busybox, modules, kit, init) and the QEMU part are
# cached under KIT/rig/, keyed by their inputs; per run only a small cpio
# with the binary, payloads, --add files and the command is built.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RIG_SELF="$(readlink -f "${BASH_SOURCE[0]}")"
KESTREL_DIE_STATUS=125

# TESTBED.md: these four, in this order, give a real /dev/kvm inside.
RIG_KVM_MODULES="kernel/virt/lib/irqbypass.ko kernel/drivers/crypto/ccp/ccp.ko
kernel/arch/x86/kvm/kvm.ko kernel/arch/x86/kvm/kvm-amd.ko"
# TAP and 802.1Q for the virtio-net tests, in dependency order; loaded when
# the kit has them (guest-kit.sh's module list).
RIG_NET_MODULES="kernel/drivers/net/tun.ko kernel/net/llc/llc.ko kernel/net/802/stp.ko
kernel/net/802/garp.ko kernel/net/802/mrp.ko kernel/net/8021q/8021q.ko kernel/drivers/net/veth.ko"
# What qemu-system-x86_64 -M pc (with or without -nodefaults) loads.
RIG_QEMU_FIRMWARE="bios-256k.bin bios.bin kvmvapic.bin linuxboot.bin
linuxboot_dma.bin multiboot.bin multiboot_dma.bin pvh.bin vgabios.bin
vgabios-stdvga.bin efi-e1000.rom"
RIG_QEMU_FWDIRS="/usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

KIT="$KESTREL_KIT_DEFAULT"
WITH_QEMU=0
MEM=3072
SMP=2
TIMEOUT=600
SILENCE=120
RETRIES=0
SHELL_MODE=0
VERBOSE=0
TIMING=0
SHIP_KESTREL=1
ADDS=()
while [ $# -gt 0 ]; do
	case "$1" in
	--kit) KIT="${2:?--kit needs a directory}"; shift ;;
	--with-qemu) WITH_QEMU=1 ;;
	--mem) MEM="${2:?--mem needs MB}"; shift ;;
	--smp) SMP="${2:?--smp needs a count}"; shift ;;
	--timeout) TIMEOUT="${2:?--timeout needs seconds}"; shift ;;
	--silence) SILENCE="${2:?--silence needs seconds}"; shift ;;
	--retries) RETRIES="${2:?--retries needs a count}"; shift ;;
	--add) ADDS+=("${2:?--add needs SRC[:DEST]}"); shift ;;
	--no-kestrel) SHIP_KESTREL=0 ;;
	--shell) SHELL_MODE=1 ;;
	--verbose | -v) VERBOSE=1 ;;
	--time) TIMING=1 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	*) die "unknown option '$1' (try --help)" ;;
	esac
	shift
done
case "$MEM$SMP$TIMEOUT$SILENCE$RETRIES" in *[!0-9]*) die "--mem, --smp and --timeout take numbers" ;; esac
if [ "$SHELL_MODE" = 0 ] && [ $# -eq 0 ]; then
	die "no COMMAND (usage: rig.sh [options] -- COMMAND, or --shell)"
fi
if [ $# -eq 1 ]; then
	RIG_CMD="$1"
else
	RIG_CMD="$(printf '%q ' "$@")"
fi
need_cmd qemu-system-x86_64 cpio timeout sha256sum ldd awk

[ -s "$KIT/vmlinux" ] || "$KESTREL_ROOT/scripts/guest-kit.sh" "$KIT" >&2
KIT="$(cd "$KIT" && pwd -P)"
KVER="$(cat "$KIT/kernel-version")"
BUSYBOX="$KIT/cache/busybox/bin/busybox"
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing: rerun scripts/guest-kit.sh --force $KIT"
mkdir -p "$KIT/rig"

rig_write_init() {
	cat >"$1/init" <<'EOF'
#!/bin/sh
# Rig /init (written by scripts/rig.sh): load KVM, run /rig/cmd, report.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /work
[ -d /rig/work ] && cp -a /rig/work/. /work/

rig_off() {
	# TCSADRAIN: wait until the UART has sent everything before power-off.
	stty -F /dev/console "$(stty -F /dev/console -g)" 2>/dev/null
	sync
	sleep 0.1
	poweroff -f
	sleep 10
}
rig_fail() { echo; echo "RIG-FAIL=$*"; rig_off; }

for ko in $(cat /rig/modules); do
	insmod "$ko" || rig_fail "insmod $ko"
done
[ -c /dev/kvm ] || rig_fail "/dev/kvm missing after loading kvm-amd"
# One idle VM for the rig's whole life: the static keys VMs flip (the
# scheduler's preempt notifiers, KVM's APIC keys) stay on, so kernel code is not
# live-patched (int3) under the outer TCG while tests run (tests/kvm-hold.c).
[ -x /usr/bin/kvm-hold ] && { kvm-hold >/dev/null & }

# KESTREL_RIG tells tests/guest-tests.sh it runs on the rig's nested SVM.
export HOME=/work KESTREL_KIT=/kit PAYLOADS=/payloads QEMU_FIRMWARE=/usr/share/qemu KESTREL_RIG=1
[ -x /usr/bin/kestrel ] && export KESTREL_BIN=/usr/bin/kestrel
cd /work
if grep -qw rig.shell /proc/cmdline; then
	echo "RIG-SHELL: /dev/kvm ready; exit the shell to power off"
	setsid cttyhack sh
	rc=$?
else
	# A heartbeat on the console lets scripts/rig.sh tell a busy rig
	# from a frozen one (a nested-KVM wedge can stop every outer CPU).
	(while sleep 20; do echo RIG-HEARTBEAT; done) &
	hb=$!
	echo RIG-BEGIN
	/bin/sh -c "$(cat /rig/cmd)" </dev/null
	rc=$?
	kill $hb 2>/dev/null
fi
echo "RIG-EXIT-STATUS=$rc"
rig_off
EOF
	chmod 0755 "$1/init"
}

# rig_cached NAME BUILDER STAMP...: path of KIT/rig/NAME-<hash>.cpio,
# building it with BUILDER STAGEDIR when its inputs changed.
rig_cached() {
	local name="$1" builder="$2" key out stage
	shift 2
	key="$(file_stamp "$@" "$KESTREL_ROOT"/scripts/{rig,lib}.sh | sha256sum | cut -c1-16)"
	out="$KIT/rig/$name-$key.cpio"
	if [ ! -s "$out" ]; then
		stage="$(mktemp -d "$KIT/rig/.stage.XXXXXX")"
		"$builder" "$stage"
		cpio_dir "$stage" "$out.tmp.$$"
		rm -rf "$stage"
		find "$KIT/rig" -maxdepth 1 -name "$name-*.cpio" -delete
		mv "$out.tmp.$$" "$out"
	fi
	echo "$out"
}

rig_build_base() {
	local s="$1" a ko
	mkdir -p "$s"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,work,rig,kit,var/tmp,etc}
	install -m 0755 "$BUSYBOX" "$s/bin/busybox"
	for a in $("$BUSYBOX" --list); do
		[ "$a" = busybox ] || ln -s busybox "$s/bin/$a"
	done
	mknod "$s/dev/console" c 5 1 2>/dev/null || true
	: >"$s/rig/modules"
	for ko in $RIG_KVM_MODULES; do
		install -D -m 0644 "$KIT/modules/$KVER/$ko" "$s/lib/modules/$KVER/$ko"
		echo "/lib/modules/$KVER/$ko" >>"$s/rig/modules"
	done
	for ko in $RIG_NET_MODULES; do
		[ -f "$KIT/modules/$KVER/$ko" ] || continue
		install -D -m 0644 "$KIT/modules/$KVER/$ko" "$s/lib/modules/$KVER/$ko"
		echo "/lib/modules/$KVER/$ko" >>"$s/rig/modules"
	done
	for a in bzImage vmlinux initrd.cpio.gz modules.cpio.gz kernel-version; do
		cp "$KIT/$a" "$s/kit/$a"
	done
	rig_write_init "$s"
}

rig_qemu_fw() { # rig_qemu_fw NAME: the first firmware dir holding NAME
	local d
	for d in $RIG_QEMU_FWDIRS; do
		[ -e "$d/$1" ] && { echo "$d/$1"; return 0; }
	done
	return 1
}

rig_build_qemu() {
	local s="$1" f src
	copy_with_libs "$s" "$(command -v qemu-system-x86_64)" /usr/bin/qemu-system-x86_64
	mkdir -p "$s/usr/share/qemu"
	for f in $RIG_QEMU_FIRMWARE; do
		src="$(rig_qemu_fw "$f")" || die "qemu firmware $f not found in $RIG_QEMU_FWDIRS"
		cp -L "$src" "$s/usr/share/qemu/$f"
	done
}

rig_qemu_inputs() {
	local q f
	q="$(command -v qemu-system-x86_64)"
	echo "$q"
	ldd "$q" | awk '$3 ~ /^\// { print $3 }'
	for f in $RIG_QEMU_FIRMWARE; do rig_qemu_fw "$f" || true; done
}

# rig_build_run STAGE: the per-run part (binary, payloads, --add, command).
rig_build_run() {
	local s="$1" bin add src dest vnclib
	mkdir -p "$s/rig/work" "$s/usr/bin"
	printf '%s\n' "$RIG_CMD" >"$s/rig/cmd"
	bin="${KESTREL_BIN:-$KESTREL_ROOT/build/kestrel}"
	if [ "$SHIP_KESTREL" = 1 ]; then
		if [ -x "$bin" ]; then
			copy_with_libs "$s" "$bin" /usr/bin/kestrel
			# libvncserver is dlopen()ed for --display vnc= (src/display/vnc_lib.h),
			# so ldd does not list it: the library and its own libraries.
			# (awk reads to the end: an early exit would SIGPIPE ldconfig under pipefail)
			vnclib=$(/sbin/ldconfig -p 2>/dev/null | awk '/libvncserver\.so\.1 .*x86-64/ && !f { print $NF; f = 1 }') || vnclib=
			[ -n "$vnclib" ] && copy_with_libs "$s" "$vnclib" "$vnclib"
		else
			warn "no kestrel binary at $bin; running without it"
		fi
	fi
	[ -x "$KESTREL_ROOT/build/kvm-hold" ] && copy_with_libs "$s" "$KESTREL_ROOT/build/kvm-hold" /usr/bin/kvm-hold
	if compgen -G "$KESTREL_ROOT/build/tests/guest/*.bin" >/dev/null; then
		mkdir -p "$s/payloads"
		cp "$KESTREL_ROOT"/build/tests/guest/*.bin "$s/payloads/"
	fi
	for add in "${ADDS[@]}"; do
		src="${add%%:*}"
		dest="${add#*:}"
		[ "$dest" != "$add" ] || dest="/work/$(basename "$src")"
		[ -e "$src" ] || die "--add $src: no such file"
		case "$dest" in /work/*) dest="/rig/work/${dest#/work/}" ;; /*) ;; *) dest="/rig/work/$dest" ;; esac
		mkdir -p "$(dirname "$s$dest")"
		# A program gets its shared libraries too (vnc-client: libvncclient).
		if [ -f "$src" ] && [ -x "$src" ] && [ "$(head -c 4 "$src" | tail -c 3)" = ELF ]; then
			copy_with_libs "$s" "$src" "$dest"
		else
			cp -a "$src" "$s$dest"
		fi
	done
}

# rig_filter DIR: console in, COMMAND's output out. Hides the boot before
# RIG-BEGIN (kept in DIR/console.log), stops at RIG-EXIT-STATUS=<rc> or
# RIG-FAIL=<why> and leaves that in DIR/status.
rig_filter() {
	local awk=(awk)
	# mawk fills its input buffer before handing out a line; -W interactive
	# makes it stream line by line.
	if awk -W version 2>/dev/null | grep -qi mawk; then awk+=(-W interactive); fi
	# shellcheck disable=SC2016 # the program is awk, not shell
	"${awk[@]}" -v dir="$1" -v verbose="$VERBOSE" '
		BEGIN { logf = dir "/console.log"; state = 0 }
		{ sub(/\r$/, ""); print > logf; fflush(logf) }
		/RIG-HEARTBEAT/ { sub(/RIG-HEARTBEAT/, ""); if ($0 == "") next }
		state == 0 && /^RIG-BEGIN$/ {
			state = 1; system("date +%s.%N >" dir "/begin"); next }
		state == 0 && match($0, /RIG-FAIL=.*$/) {
			print "fail " substr($0, RSTART + 9) > (dir "/status"); close(dir "/status")
			state = 2; next }
		state == 1 && match($0, /RIG-EXIT-STATUS=[0-9]+$/) {
			if (RSTART > 1) { print substr($0, 1, RSTART - 1); fflush() }
			print "exit " substr($0, RSTART + 16) > (dir "/status"); close(dir "/status")
			state = 2; next }
		state == 1 { print; fflush(); next }
		verbose == 1 { print > "/dev/stderr"; fflush("/dev/stderr") }'
}

rig_qemu_argv() {
	QEMU_ARGV=(qemu-system-x86_64 -accel "tcg,thread=${KESTREL_RIG_TCG:-multi}" -cpu "${KESTREL_RIG_CPU:-qemu64,+svm,+npt}"
		-smp "$SMP" -m "$MEM" -display none -serial stdio -no-reboot
		-monitor "unix:$work/monitor.sock,server=on,wait=off"
		-kernel "$KIT/vmlinux" -initrd "$1" -append "console=ttyS0 panic=-1 nokaslr ${KESTREL_RIG_APPEND:-quiet loglevel=2} $2")
}

# rig_freeze_dump DIR: where the outer vCPUs are when the VM froze, from
# QEMU's monitor (`info registers -a`) into DIR/rips; rig_freeze_names then
# names kernel addresses through the
# outer kernel's /proc/kallsyms (modules too). The outer kernel runs with
# nokaslr, so one listing, taken once in a fresh outer VM and cached in
# KIT/rig/, names the addresses of every run. Evidence for the nested-rig
# freezes; needs python3, else says so.
rig_freeze_dump() {
	command -v python3 >/dev/null || { echo "rig: (no python3: no register dump)" >&2; return 0; }
	python3 - "$1/monitor.sock" >"$1/rips" 2>&1 <<'PY' || true
import re, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.settimeout(3)
s.connect(sys.argv[1])
s.sendall(b"info registers -a\n")
buf, end = b"", time.time() + 8
while time.time() < end:
    try:
        d = s.recv(65536)
    except socket.timeout:
        break
    if not d:
        break
    buf += d
for m in re.finditer(r"CPU#(\d+).*?RIP=([0-9a-f]+).*?CPL=(\d).*?HLT=(\d)", buf.decode("latin-1"), re.S):
    print(*m.groups())
PY
}

# rig_freeze_names DIR: print the vCPU positions rig_freeze_dump took, named
# (the outer VM must be gone: a kallsyms listing not cached yet takes a
# fresh one).
rig_freeze_names() {
	local syms
	syms="$KIT/rig/kallsyms-$(cat "$KIT/kernel-version" 2>/dev/null)"
	[ -s "$1/rips" ] || return 0
	if [ ! -s "$syms" ]; then
		mkdir -p "$KIT/rig"
		"$RIG_SELF" --kit "$KIT" --no-kestrel --timeout 180 -- cat /proc/kallsyms >"$syms.tmp" 2>/dev/null &&
			mv "$syms.tmp" "$syms" || rm -f "$syms.tmp"
	fi
	python3 - "$1/rips" "$syms" >&2 <<'PY' || true
import bisect, sys
syms = []
try:
    for line in open(sys.argv[2]):
        f = line.split()
        if len(f) >= 3 and f[1] in "tTwW":
            syms.append((int(f[0], 16), f[2] + (" " + f[3] if len(f) > 3 else "")))
except OSError:
    pass
syms.sort()
addrs = [a for a, _ in syms]
print("rig: outer vCPUs at the freeze (QEMU monitor; kernel symbols from the outer kernel's kallsyms):")
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 4:
        print("rig:   " + line.rstrip())
        continue
    cpu, rip, cpl, hlt = f[0], int(f[1], 16), f[2], f[3]
    i = bisect.bisect_right(addrs, rip) - 1
    where = "%s+0x%x" % (syms[i][1], rip - addrs[i]) if cpl == "0" and i >= 0 and rip - addrs[i] < 0x10000 else ("(user)" if cpl == "3" else "?")
    print("rig:   cpu%s rip=%016x %s cpl=%s hlt=%s" % (cpu, rip, where, cpl, hlt))
PY
}

# rig_watchdog DIR PID: while PID (the QEMU pipeline) lives, stop the outer VM
# when its console has been silent for SILENCE seconds: the rig's init
# prints a heartbeat every 20 s, so silence means the outer VM is frozen
# (seen: a wedged nested guest holding every outer CPU), and waiting for
# --timeout would only waste the rest of it.
rig_watchdog() {
	local now last done_at=
	: >"$1/console.log"
	while kill -0 "$2" 2>/dev/null; do
		sleep 5
		now="$(date +%s)"
		# The command has reported: the outer VM gets 30 s to power off (a
		# CPU stuck in a wedged nested guest can hold poweroff up for ever).
		if [ -s "$1/status" ]; then
			done_at="${done_at:-$now}"
			if [ $((now - done_at)) -ge 30 ]; then
				kill "$(cat "$1/qemu.pid")" 2>/dev/null
				break
			fi
			continue
		fi
		last="$(stat -c %Y "$1/console.log" 2>/dev/null || echo "$now")"
		if [ $((now - last)) -ge "$SILENCE" ]; then
			echo "rig: error: the outer VM's console has been silent for ${SILENCE}s (frozen); stopping it" >&2
			echo frozen >"$1/frozen"
			rig_freeze_dump "$1"
			kill "$(cat "$1/qemu.pid")" 2>/dev/null
			rig_freeze_names "$1"
			break
		fi
	done
}

rig_tail() { # the end of the console and QEMU's stderr, to explain a failure
	echo "rig: last console lines:" >&2
	tail -n 30 "$1/console.log" | sed 's/^/  | /' >&2
	sed 's/^/  | /' "$1/qemu.err" >&2
}

# One outer VM run of the command: sets status (DIR/status), rc (QEMU's).
rig_run_once() {
	local begin
	t1="$(date +%s.%N)"
	set +e
	{
		timeout -k 5 "$TIMEOUT" "${QEMU_ARGV[@]}" </dev/null 2>"$work/qemu.err" &
		echo $! >"$work/qemu.pid"
		wait $!
		echo $? >"$work/qemu.rc"
	} | rig_filter "$work" &
	rig_watchdog "$work" $!
	wait
	rc="$(cat "$work/qemu.rc" 2>/dev/null || echo 125)"
	set -e
	status="$(cat "$work/status" 2>/dev/null || true)"
	if [ "$TIMING" = 1 ]; then
		begin="$(cat "$work/begin" 2>/dev/null || echo 0)"
		awk -v t0="$t0" -v t1="$t1" -v b="$begin" -v t2="$(date +%s.%N)" 'BEGIN {
			printf "rig: initramfs %.2fs, boot to command %s, total %.1fs\n", t1 - t0,
				(b > 0 ? sprintf("%.1fs", b - t1) : "n/a"), t2 - t0 }' >&2
	fi
}

main() {
	local base qemu_part rc t0 t1 status qin attempt why
	t0="$(date +%s.%N)"
	base="$(rig_cached base rig_build_base "$BUSYBOX" "$KIT"/{bzImage,vmlinux,initrd.cpio.gz,modules.cpio.gz})"
	work="$(mktemp -d "${TMPDIR:-/tmp}/kestrel-rig.XXXXXX")"
	trap 'rm -rf "${work:?}"' EXIT
	mkdir "$work/run"
	rig_build_run "$work/run"
	cpio_dir "$work/run" "$work/run.cpio"
	# The kernel unpacks concatenated archives in order; later files win.
	if [ "$WITH_QEMU" = 1 ]; then
		mapfile -t qin < <(rig_qemu_inputs)
		qemu_part="$(rig_cached qemu rig_build_qemu "${qin[@]}")"
		cat "$base" "$qemu_part" "$work/run.cpio" >"$work/rig.cpio"
	else
		cat "$base" "$work/run.cpio" >"$work/rig.cpio"
	fi

	if [ "$SHELL_MODE" = 1 ]; then
		rig_qemu_argv "$work/rig.cpio" rig.shell
		"${QEMU_ARGV[@]}"
		return
	fi
	rig_qemu_argv "$work/rig.cpio" ""
	for attempt in $(seq 0 "$RETRIES"); do
		rm -f "$work/status" "$work/frozen" "$work/qemu.rc" "$work/begin"
		rig_run_once
		case "$status" in
		"exit "*) exit "${status#exit }" ;;
		"fail "*)
			rig_tail "$work"
			die "rig failed inside: ${status#fail }"
			;;
		esac
		rig_tail "$work"
		if [ -e "$work/frozen" ]; then
			why="the outer VM froze (no console output, not even the heartbeat, for ${SILENCE}s)"
		elif [ "$rc" = 124 ]; then
			why="no RIG-EXIT-STATUS within ${TIMEOUT}s (timeout)"
		else
			why="outer VM ended (qemu status $rc) without RIG-EXIT-STATUS"
		fi
		[ "$attempt" -lt "$RETRIES" ] || die "$why"
		echo "rig: RETRY: $why; running COMMAND again in a fresh outer VM" >&2
	done
}

main
