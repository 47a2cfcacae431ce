#!/usr/bin/env bash
# scripts/demo.sh: on a fresh Debian 12 machine, install what kestrel needs,
# build it and the guest kit, and boot Debian's stock kernel with a busybox
# shell on the serial console (Ctrl-A x quits). Without a /dev/kvm that boots
# it (probed: 20 s to its /init), the same guest boots inside the nested rig.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"
"$root/scripts/build.sh"
"$root/scripts/guest-kit.sh"
kit=${KESTREL_KIT:-$root/.kit}
# probe: the same guest, headless, must reach its /init (it then powers
# off) within 20 s; a second on real hardware. Some /dev/kvm cannot run a
# Linux kernel at all (a paravirtual backend inside a VM that emulates guest
# ring 0 instruction by instruction); there the rig is the way.
probe() {
	local out
	out=$(mktemp)
	"$root/build/kestrel" run --kernel "$kit/bzImage" --initrd "$kit/initrd.cpio.gz" --cpus 2 \
		--mem 512M --cmdline "console=ttyS0 quiet" --timeout 20s --quiet </dev/null >"$out" 2>&1
	grep -q KESTREL-GUEST-INIT-OK "$out"
	local ok=$?
	rm -f "$out"
	return $ok
}
if [ -c /dev/kvm ]; then
	if probe; then
		# kestrel.nopoweroff: the kit's init drops to a shell instead of powering off.
		exec "$root/build/kestrel" run --kernel "$kit/bzImage" --initrd "$kit/initrd.cpio.gz" \
			--cpus 2 --mem 512M --cmdline "console=ttyS0 quiet kestrel.nopoweroff"
	fi
	echo "demo: this host's /dev/kvm did not boot the guest to its /init within 20 s;" \
		"booting it inside the nested rig instead (slower)" >&2
else
	echo "demo: no /dev/kvm here; booting the demo guest inside the nested rig (slower)" >&2
fi
exec "$root/scripts/rig.sh" -- kestrel run --kernel /kit/bzImage --initrd /kit/initrd.cpio.gz \
	--cpus 2 --mem 512M --cmdline "console=ttyS0 quiet"
