#!/usr/bin/env bash
# scripts/guest-kit.sh [--force] [OUTDIR]
#
# Builds the Linux test guest from Debian packages only (apt-get download +
# dpkg-deb -x into OUTDIR/cache; nothing is installed on the host):
#   OUTDIR/bzImage          Debian's stock kernel, unmodified
#   OUTDIR/vmlinux          the same kernel as an ELF with the PVH note
#   OUTDIR/modules/<ver>/   the modules later tests ask for, with modules.dep
#   OUTDIR/modules.cpio.gz  the same tree as /lib/modules/<ver>, appendable to
#                           an initrd (cat initrd.cpio.gz modules.cpio.gz)
#   OUTDIR/initrd.cpio.gz   busybox initramfs whose /init prints what the
#                           guest sees (see the init script below)
#   OUTDIR/kernel-version   the kernel's release string
# OUTDIR defaults to $KESTREL_KIT or <repo>/.kit. A second run only checks
# the stamp; --force rebuilds everything from the cached .debs.
#
# Guest kernel command line understood by /init (read from /proc/cmdline):
#   kestrel.run=NAME      run /tests/NAME.sh after the report
#                         (/tests also holds the repository's tests/kit/*.sh)
#   kestrel.code=N        exit code used by /tests/exitcode.sh (default 42)
#   kestrel.modules=a,b   modprobe these first (needs modules.cpio.gz appended)
#   kestrel.exit=N        after the poweroff marker, write N to the debug-exit
#                         port 0xf4 (for VMMs without ACPI power-off)
#   kestrel.nopoweroff    drop to a shell on the console instead of poweroff
# ACPI power button (kestrel ctl NAME shutdown): with kestrel.modules=button,evdev
# /init starts busybox acpid, whose handler prints KESTREL-GUEST-ACPI-SHUTDOWN
# and powers off; /init prints KESTREL-GUEST-ACPID once it listens.
# Extra modules: KESTREL_KIT_MODULES="name ..." adds to the default list.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# TESTBED.md: what the rig needs for /dev/kvm and the drivers Debian's kernel
# offers for the devices kestrel emulates. Dependencies are pulled in.
KIT_MODULES="irqbypass ccp kvm kvm-amd
ata_piix libata sd_mod sr_mod virtio virtio_ring virtio_pci virtio_scsi
virtio_blk virtio_net failover net_failover tulip de2104x bochs vga16fb
hv_vmbus hv_storvsc hv_netvsc button evdev psmouse tun veth 8021q ${KESTREL_KIT_MODULES:-}"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

FORCE=0
OUTDIR=
while [ $# -gt 0 ]; do
	case "$1" in
	--force) FORCE=1 ;;
	-h | --help) usage; exit 0 ;;
	-*) die "unknown option $1 (try --help)" ;;
	*) [ -z "$OUTDIR" ] || die "one OUTDIR only"; OUTDIR="$1" ;;
	esac
	shift
done
OUTDIR="${OUTDIR:-$KESTREL_KIT_DEFAULT}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd -P)"
CACHE="$OUTDIR/cache"
need_cmd apt-get apt-cache dpkg-deb xz readelf cpio gzip sha256sum

# kit_kernel_pkg: the real package behind linux-image-amd64 (a metapackage),
# or the newest one already cached when apt knows nothing (offline).
kit_kernel_pkg() {
	local p
	if [ -n "${KESTREL_KERNEL_PKG:-}" ]; then
		echo "$KESTREL_KERNEL_PKG"
		return
	fi
	p="$(apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1\..*-amd64$/ { print $2; exit }')"
	if [ -z "$p" ]; then
		p="$(find "$CACHE/debs" -name 'linux-image-6.1.*-amd64_*.deb' 2>/dev/null |
			sort -V | tail -n 1 | sed 's|.*/||; s|_.*||')"
	fi
	[ -n "$p" ] || die "cannot resolve linux-image-amd64 (apt-get update?)"
	echo "$p"
}

# kit_fetch PKG: print the path of PKG's .deb, downloading it once.
kit_fetch() {
	local pkg="$1" deb
	mkdir -p "$CACHE/debs"
	deb="$(find "$CACHE/debs" -name "${pkg}_*.deb" | sort -V | tail -n 1)"
	if [ -z "$deb" ]; then
		log "downloading $pkg"
		(cd "$CACHE/debs" && apt-get download "$pkg" 2>&1 |
			grep -v -e '^W: Download is performed unsandboxed' -e '^Get:' -e '^Fetched' >&2) || true
		deb="$(find "$CACHE/debs" -name "${pkg}_*.deb" | sort -V | tail -n 1)"
		[ -n "$deb" ] || die "apt-get download $pkg failed"
	fi
	echo "$deb"
}

# kit_extract DEB DIR: dpkg-deb -x once per .deb (a stamp names the .deb).
kit_extract() {
	local deb="$1" dir="$2"
	if [ -f "$dir/.from" ] && [ "$(cat "$dir/.from")" = "$(basename "$deb")" ]; then
		return
	fi
	rm -rf "$dir"
	mkdir -p "$dir"
	log "extracting $(basename "$deb")"
	dpkg-deb -x "$deb" "$dir"
	basename "$deb" >"$dir/.from"
}

# kit_vmlinux BZIMAGE OUT: Debian builds with CONFIG_KERNEL_XZ, so the
# payload is the first xz stream (magic FD 37 7A 58 5A 00); what follows it
# in the bzImage is not xz and is ignored by --single-stream.
kit_vmlinux() {
	local bz="$1" out="$2" off
	off="$(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$bz" | awk -F: 'NR == 1 { print $1 }')"
	[ -n "$off" ] || die "$bz: no xz stream (not CONFIG_KERNEL_XZ?)"
	# xz stops reading after the stream, so feed it without a pipeline
	# (tail would die of SIGPIPE under pipefail).
	xz -dc --single-stream >"$out.tmp" < <(tail -c +"$((off + 1))" "$bz" 2>/dev/null)
	readelf -h "$out.tmp" | grep -q 'Type: *EXEC' || die "$out: not an ELF executable"
	# XEN_ELFNOTE_PHYS32_ENTRY (18): the 32-bit PVH entry point QEMU and
	# kestrel jump to.
	readelf -n "$out.tmp" | grep -qE 'Xen .*(\(0x00000012\)|PHYS32_ENTRY)' ||
		die "$out: no Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY)"
	mv "$out.tmp" "$out"
}

# kit_mod_closure MODDIR NAME...: NAMEs' .ko paths (relative to MODDIR),
# dependencies first, from modules.dep.
kit_mod_closure() {
	local dir="$1"
	shift
	awk -v want="$*" '
		function norm(s) { sub(/.*\//, "", s); sub(/\.ko.*$/, "", s); gsub(/-/, "_", s); return s }
		function visit(p,   n, i, d) {
			if (p in seen) return
			seen[p] = 1
			n = split(deps[p], d, " ")
			for (i = 1; i <= n; i++) visit(d[i])
			print p
		}
		{ p = $1; sub(/:$/, "", p); $1 = ""; deps[p] = $0; byname[norm(p)] = p }
		END {
			n = split(want, w, /[ \t\n]+/)
			for (i = 1; i <= n; i++) {
				if (w[i] == "") continue
				k = norm(w[i])
				if (!(k in byname)) { print "missing module " w[i] > "/dev/stderr"; bad = 1; continue }
				visit(byname[k])
			}
			exit bad
		}' "$dir/modules.dep"
}

kit_modules() {
	local kroot="$1" ver="$2" src dst ko
	src="$kroot/lib/modules/$ver"
	[ -s "$src/modules.dep" ] || busybox_depmod "$kroot" "$ver"
	dst="$OUTDIR/modules"
	rm -rf "$dst" "$OUTDIR/.modules.tmp"
	mkdir -p "$dst/$ver"
	# shellcheck disable=SC2086 # word splitting is the module list
	kit_mod_closure "$src" $KIT_MODULES >"$OUTDIR/.modules.list"
	while read -r ko; do
		install -D -m 0644 "$src/$ko" "$dst/$ver/$ko"
	done <"$OUTDIR/.modules.list"
	cp "$src"/modules.order "$src"/modules.builtin "$src"/modules.builtin.modinfo "$dst/$ver/"
	busybox_depmod "$dst/.." "$ver" "$dst"
	mkdir -p "$OUTDIR/.modules.tmp/lib"
	cp -a "$dst" "$OUTDIR/.modules.tmp/lib/modules"
	cpio_dir "$OUTDIR/.modules.tmp" /dev/stdout | gzip -9n >"$OUTDIR/modules.cpio.gz"
	rm -rf "$OUTDIR/.modules.tmp" "$OUTDIR/.modules.list"
}

# busybox_depmod ROOT VER [MODDIR]: modules.dep for ROOT/lib/modules/VER (or
# for MODDIR/VER); Debian's package does not ship it (postinst makes it) and
# the host may lack kmod, so use the kit's own busybox.
busybox_depmod() {
	local root="$1" ver="$2" moddir="${3:-}" tmp
	if [ -z "$moddir" ]; then
		"$BUSYBOX" depmod -b "$root" "$ver"
		return
	fi
	tmp="$(mktemp -d)"
	mkdir -p "$tmp/lib"
	ln -s "$moddir" "$tmp/lib/modules"
	"$BUSYBOX" depmod -b "$tmp" "$ver"
	rm -rf "$tmp"
}

kit_write_init() {
	cat >"$1/init" <<'EOF'
#!/bin/sh
# kestrel test guest /init (written by scripts/guest-kit.sh).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo KESTREL-GUEST-START    # the kernel got to our /init (tests tell rig flakes by it)
mount -t proc proc /proc
mount -t sysfs sysfs /sys

arg() { # arg NAME [DEFAULT]: value of NAME=... on the kernel command line
	for w in $(cat /proc/cmdline); do
		case "$w" in "$1="*) echo "${w#*=}"; return 0 ;; esac
	done
	[ $# -gt 1 ] && echo "$2"
	return 1
}
flag() { # flag NAME: is the bare word NAME on the command line?
	for w in $(cat /proc/cmdline); do [ "$w" = "$1" ] && return 0; done
	return 1
}
port_out() { # port_out PORT BYTE: one byte to an x86 I/O port via /dev/port
	printf "\\$(printf %o "$(($2 & 255))")" |
		dd of=/dev/port bs=1 seek="$1" count=1 conv=notrunc 2>/dev/null
}

for m in $(arg kestrel.modules | tr ',' ' '); do modprobe "$m" || echo "modprobe $m failed"; done
# The power button reaches user space as KEY_POWER on the button driver's
# input device (CONFIG_ACPI_BUTTON=m, CONFIG_INPUT_EVDEV=m in Debian); busybox
# acpid runs /etc/acpi/PWRF/00000080 for it. Our /init is no real init, so the
# handler powers off itself.
if ls /dev/input/event* >/dev/null 2>&1; then
	mkdir -p /etc/acpi/PWRF
	printf '#!/bin/sh\necho KESTREL-GUEST-ACPI-SHUTDOWN >/dev/console\nsync\npoweroff -f\n' \
		>/etc/acpi/PWRF/00000080
	chmod 0755 /etc/acpi/PWRF/00000080
	mkdir -p /var/log /var/run    # its log and pid files; it dies without them
	acpid -c /etc/acpi
	sleep 0.2
	if pidof acpid >/dev/null; then echo KESTREL-GUEST-ACPID; else echo "acpid failed"; fi
fi

echo KESTREL-GUEST-INIT-OK
n=0
if [ -r /sys/devices/system/cpu/online ]; then
	for r in $(tr ',' ' ' </sys/devices/system/cpu/online); do
		case "$r" in *-*) n=$((n + ${r#*-} - ${r%-*} + 1)) ;; *) n=$((n + 1)) ;; esac
	done
else
	n=$(nproc)
fi
echo "nproc=$n"
echo "memtotal_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
if [ -d /sys/firmware/memmap ]; then
	# sysfs gives unpadded hex; pad so a plain sort orders by address.
	for e in /sys/firmware/memmap/*; do
		printf '0x%016x-0x%016x %s\n' "$(($(cat "$e/start")))" "$(($(cat "$e/end")))" "$(cat "$e/type")"
	done | sort | while read -r r t; do echo "e820: $r $t"; done
else
	dmesg | grep 'BIOS-e820:'
fi

if name=$(arg kestrel.run); then
	case "$name" in */* | .*) name=invalid ;; esac
	if [ -f "/tests/$name.sh" ]; then
		sh "/tests/$name.sh"
		echo "KESTREL-GUEST-TEST-RC=$?"
	else
		echo "KESTREL-GUEST-NO-TEST=$name"
	fi
fi

if flag kestrel.nopoweroff; then
	echo KESTREL-GUEST-SHELL
	exec setsid cttyhack sh
fi
echo KESTREL-GUEST-POWEROFF
sync
if code=$(arg kestrel.exit); then port_out 244 "$code"; fi
poweroff -f
EOF
	chmod 0755 "$1/init"
	mkdir -p "$1/tests"
	cat >"$1/tests/exitcode.sh" <<'EOF'
#!/bin/sh
# Writes kestrel.code=N (default 42) to the debug-exit port 0xf4 (244): the
# VMM, like QEMU's isa-debug-exit, exits with status (N << 1) | 1.
code=42
for w in $(cat /proc/cmdline); do
	case "$w" in kestrel.code=*) code="${w#*=}" ;; esac
done
case "$code" in '' | *[!0-9]*) echo "exitcode: bad kestrel.code=$code"; exit 1 ;; esac
echo "exitcode: writing $code to port 0xf4"
printf "\\$(printf %o "$((code & 255))")" |
	dd of=/dev/port bs=1 seek=244 count=1 conv=notrunc 2>/dev/null
echo "exitcode: still running after the debug-exit write"
exit 1
EOF
	chmod 0755 "$1/tests/exitcode.sh"
	cat >"$1/tests/reboot.sh" <<'EOF'
#!/bin/sh
# Reboots at once (Linux tries the ACPI reset register, then the i8042): a
# VMM run with "exit on reboot" ends with 0; one that restarts boots again.
echo "KESTREL-GUEST-REBOOT"
reboot -f
EOF
	chmod 0755 "$1/tests/reboot.sh"
	# Device tests kept in the repository (tests/kit/NAME.sh, run with
	# kestrel.run=NAME) go to /tests as they are.
	local t
	for t in "$KESTREL_ROOT"/tests/kit/*.sh; do
		[ -e "$t" ] && install -m 0755 "$t" "$1/tests/"
	done
}

kit_initrd() {
	local stage="$OUTDIR/.initrd.tmp" a
	rm -rf "$stage"
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root,etc}
	install -m 0755 "$BUSYBOX" "$stage/bin/busybox"
	for a in $("$BUSYBOX" --list); do
		[ "$a" = busybox ] || ln -s busybox "$stage/bin/$a"
	done
	# Without a /dev/console in the archive the kernel starts init with no
	# stdio; /init also reopens it after mounting devtmpfs.
	mknod "$stage/dev/console" c 5 1 2>/dev/null || true
	kit_write_init "$stage"
	cpio_dir "$stage" /dev/stdout | gzip -9n >"$OUTDIR/initrd.cpio.gz"
	rm -rf "$stage"
}

main() {
	local kpkg kdeb bdeb kroot ver stamp
	kpkg="$(kit_kernel_pkg)"
	kdeb="$(kit_fetch "$kpkg")"
	bdeb="$(kit_fetch busybox-static)"
	stamp="$( (sha256sum "$0" "${BASH_SOURCE[0]%/*}/lib.sh" "$KESTREL_ROOT"/tests/kit/*.sh |
		awk '{print $1}'
		basename "$kdeb"; basename "$bdeb"; echo "$KIT_MODULES") | sha256sum | cut -c1-16)"
	if [ "$FORCE" = 0 ] && [ -f "$OUTDIR/.stamp" ] && [ "$(cat "$OUTDIR/.stamp")" = "$stamp" ] &&
		[ -s "$OUTDIR/vmlinux" ] && [ -s "$OUTDIR/bzImage" ] && [ -s "$OUTDIR/initrd.cpio.gz" ]; then
		log "up to date ($OUTDIR)"
	else
		rm -f "$OUTDIR/.stamp"
		[ "$FORCE" = 0 ] || rm -rf "$CACHE/kernel" "$CACHE/busybox"
		kit_extract "$bdeb" "$CACHE/busybox"
		kit_extract "$kdeb" "$CACHE/kernel"
		kroot="$CACHE/kernel"
		BUSYBOX="$(find "$CACHE/busybox" -path '*bin/busybox' -type f | head -n 1)"
		[ -x "$BUSYBOX" ] || die "no busybox in $(basename "$bdeb")"
		ver="$(find "$kroot/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n 1)"
		[ -f "$kroot/boot/vmlinuz-$ver" ] || die "no /boot/vmlinuz-$ver in $(basename "$kdeb")"
		install -m 0644 "$kroot/boot/vmlinuz-$ver" "$OUTDIR/bzImage"
		kit_vmlinux "$OUTDIR/bzImage" "$OUTDIR/vmlinux"
		kit_modules "$kroot" "$ver"
		kit_initrd
		echo "$ver" >"$OUTDIR/kernel-version"
		echo "$stamp" >"$OUTDIR/.stamp"
	fi
	echo "kit: $OUTDIR (kernel $(cat "$OUTDIR/kernel-version"), from $(basename "$kdeb"))"
	(cd "$OUTDIR" && ls -l bzImage vmlinux initrd.cpio.gz modules.cpio.gz kernel-version)
	echo "pvh entry: $(readelf -n "$OUTDIR/vmlinux" | grep -A1 -E 'Xen .*(\(0x00000012\)|PHYS32_ENTRY)' |
		awk '/description data/ { print "0x" $6 $5 $4 $3 }')"
	echo "modules: $(find "$OUTDIR/modules" -name '*.ko' | wc -l) .ko files in $OUTDIR/modules/$(cat "$OUTDIR/kernel-version")"
}

main
