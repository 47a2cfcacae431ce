#!/usr/bin/env bash
# scripts/guest-kit-i386.sh [OUTDIR]
#
# A 32-bit Linux guest from Debian's i386 packages, for the case that a
# 32-bit bzImage boots with the entry kestrel picks itself:
#   OUTDIR/bzImage         linux-image-686's vmlinuz, unmodified
#   OUTDIR/initrd.cpio.gz  the guest kit's initramfs (its /init and /tests)
#                          with busybox-static:i386 in place of the amd64
#                          busybox, which a 686 kernel cannot run
#   OUTDIR/kernel-version  the kernel's release string
# OUTDIR defaults to $KESTREL_KIT_I386 or <repo>/.kit-i386; the amd64 kit
# ($KESTREL_KIT, scripts/guest-kit.sh) must exist. apt reads i386 package
# lists kept under OUTDIR/cache: the host's apt configuration is not
# changed (no dpkg --add-architecture) and nothing is installed.
#
# The rig case (tests/guest-tests.sh linux-686-auto) finds it at /work/kit-i386:
#   flock /tmp/kestrel-rig.lock scripts/rig.sh --add tests/guest-tests.sh:/work/guest-tests.sh \
#     --add .kit-i386:/work/kit-i386 -- "/work/guest-tests.sh --filter linux-686"
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUTDIR="${1:-${KESTREL_KIT_I386:-$KESTREL_ROOT/.kit-i386}}"
KIT="$KESTREL_KIT_DEFAULT"
need_cmd apt-get apt-cache dpkg-deb cpio gzip
[ -s "$KIT/initrd.cpio.gz" ] || die "$KIT/initrd.cpio.gz missing: run scripts/guest-kit.sh first"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd -P)"
CACHE="$OUTDIR/cache"
mkdir -p "$CACHE/lists/partial" "$CACHE/archives/partial" "$CACHE/debs"

# apt with its own state: i386 only, status file empty, lists in the cache.
apt_i386() {
	local tool="$1"
	shift
	"$tool" -o APT::Architecture=i386 -o APT::Architectures=i386 \
		-o Dir::State::Lists="$CACHE/lists" -o Dir::Cache="$CACHE" \
		-o Dir::State::Status=/dev/null -o Debug::NoLocking=1 "$@"
}

# fetch PKG: the path of PKG's i386 .deb, downloaded once.
fetch() {
	local deb
	deb="$(find "$CACHE/debs" -name "${1}_*_i386.deb" | sort -V | tail -n 1)"
	if [ -z "$deb" ]; then
		log "downloading $1 (i386)"
		(cd "$CACHE/debs" && apt_i386 apt-get download "$1" 2>&1 |
			grep -v -e '^W: Download is performed unsandboxed' -e '^Get:' -e '^Fetched' >&2) || true
		deb="$(find "$CACHE/debs" -name "${1}_*_i386.deb" | sort -V | tail -n 1)"
	fi
	[ -n "$deb" ] || die "could not download $1 for i386"
	echo "$deb"
}

main() {
	local kpkg ver stage x
	apt_i386 apt-get -qq update >&2 || warn "apt-get update (i386 lists) failed; using the cache"
	kpkg="$(apt_i386 apt-cache depends linux-image-686 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1\..*-686$/ { print $2; exit }')"
	[ -n "$kpkg" ] || die "cannot resolve linux-image-686"
	ver="${kpkg#linux-image-}"
	x="$OUTDIR/.x.tmp"
	rm -rf "$x"
	mkdir -p "$x"
	dpkg-deb -x "$(fetch "$kpkg")" "$x/k"
	dpkg-deb -x "$(fetch busybox-static)" "$x/b"
	install -m 0644 "$x/k/boot/vmlinuz-$ver" "$OUTDIR/bzImage"
	echo "$ver" >"$OUTDIR/kernel-version"

	# The kit's initramfs, its applet links kept, the busybox binary swapped.
	stage="$x/initrd"
	mkdir -p "$stage"
	(cd "$stage" && gzip -dc "$KIT/initrd.cpio.gz" | cpio --quiet -id 2>/dev/null)
	[ -x "$stage/init" ] || die "$KIT/initrd.cpio.gz has no /init"
	install -m 0755 "$x/b/bin/busybox" "$stage/bin/busybox"
	cpio_dir "$stage" /dev/stdout | gzip -9n >"$OUTDIR/initrd.cpio.gz"
	rm -rf "$x"
	log "i386 kit in $OUTDIR ($ver)"
	(cd "$OUTDIR" && ls -l bzImage initrd.cpio.gz kernel-version) >&2
}

main
