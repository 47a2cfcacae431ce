#!/usr/bin/env bash
# scripts/demo.sh: on a fresh Debian 12 machine, install what kestrel needs,
# build it and the guest kit, and boot Debian's stock kernel with a busybox
# shell on the serial console (Ctrl-A x quits). Without /dev/kvm on this
# machine, the same guest boots inside the nested rig instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"
"$root/scripts/build.sh"
"$root/scripts/guest-kit.sh"
kit=${KESTREL_KIT:-$root/.kit}
if [ -c /dev/kvm ]; then
	# kestrel.nopoweroff: the kit's init drops to a shell instead of powering off.
	exec "$root/build/kestrel" run --kernel "$kit/bzImage" --initrd "$kit/initrd.cpio.gz" \
		--cpus 2 --mem 512M --cmdline "console=ttyS0 quiet kestrel.nopoweroff"
fi
echo "demo: no /dev/kvm here; booting the demo guest inside the nested rig (slower)" >&2
exec "$root/scripts/rig.sh" -- kestrel run --kernel /kit/bzImage --initrd /kit/initrd.cpio.gz \
	--cpus 2 --mem 512M --cmdline "'console=ttyS0 quiet'"
