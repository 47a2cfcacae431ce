#!/bin/sh
# tests/fw-images.sh OUT [--kit DIR] [--payloads DIR]: disk images for the
# firmware-boot cases that need tools the nested rig does not carry, made
# with Debian's packages and without mounting anything:
#   OUT/bootsect.iso  an El Torito CD (xorriso, no emulation, load size 4)
#                     booting tests/guest/bootsect.S
#   OUT/fwlinux.img   a 17 MiB disk: FAT (mtools' mformat) with SYSLINUX
#                     (syslinux --install, the mtools installer), the kit's
#                     Debian kernel and its initrd with its modules and
#                     tests/kit/*.sh; SYSLINUX starts Linux with console=ttyS0
#                     and kestrel.run=fwboot (tests/kit/fwboot.sh). The FAT
#                     ends 1 MiB before the disk: fwboot.sh's reboot mark
#                     lives in the last sector.
# tests/guest-tests.sh uses them from $FW_IMAGES (the rig gets them with
# --add). Exit 77 when a tool or the kit is missing (nothing made).
set -eu

out= kit=${KESTREL_KIT:-} payloads=
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
while [ $# -gt 0 ]; do
	case "$1" in
	--kit) kit=$2; shift ;;
	--payloads) payloads=$2; shift ;;
	-*) echo "fw-images: unknown option $1" >&2; exit 2 ;;
	*) out=$1 ;;
	esac
	shift
done
[ -n "$out" ] || { echo "usage: tests/fw-images.sh OUT [--kit DIR] [--payloads DIR]" >&2; exit 2; }
[ -n "$kit" ] || kit=$root/.kit
[ -n "$payloads" ] || payloads=$root/build/tests/guest
mkdir -p "$out"   # even when skipping: the rig's --add wants it

for t in xorriso mformat mcopy syslinux cpio gzip; do
	command -v "$t" >/dev/null || { echo "SKIP: fw-images: $t is missing (scripts/deps.sh)"; exit 77; }
done
for f in "$kit/bzImage" "$kit/initrd.cpio.gz" "$kit/modules.cpio.gz" "$payloads/bootsect.bin"; do
	[ -s "$f" ] || { echo "SKIP: fw-images: $f is missing"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The CD: the boot image is 2 KiB (both of bootsect's sectors and padding).
mkdir "$tmp/iso"
dd if=/dev/zero of="$tmp/iso/boot.bin" bs=2048 count=1 2>/dev/null
dd if="$payloads/bootsect.bin" of="$tmp/iso/boot.bin" conv=notrunc 2>/dev/null
xorriso -as mkisofs -quiet -V KESTREL -o "$out/bootsect.iso.tmp" -b boot.bin \
	-no-emul-boot -boot-load-size 4 "$tmp/iso" 2>/dev/null
mv "$out/bootsect.iso.tmp" "$out/bootsect.iso"

# The initrd: the kit's, its modules, and the repository's kit tests on top.
mkdir -p "$tmp/t/tests"
cp "$here"/kit/*.sh "$tmp/t/tests/"
chmod 0755 "$tmp"/t/tests/*.sh
cat "$kit/initrd.cpio.gz" "$kit/modules.cpio.gz" >"$tmp/initrd.gz"
(cd "$tmp/t" && find tests | cpio -o -H newc 2>/dev/null | gzip) >>"$tmp/initrd.gz"

cat >"$tmp/syslinux.cfg" <<'EOF'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0 panic=-1 quiet kestrel.modules=ata_piix,virtio_pci,virtio_scsi,sd_mod kestrel.run=fwboot
EOF

# 17 MiB: a 16 MiB FAT (32768 sectors, 64 heads x 32 sectors) and 1 MiB after it.
img=$out/fwlinux.img.tmp
rm -f "$img"
dd if=/dev/zero of="$img" bs=1M count=17 2>/dev/null
mformat -i "$img" -T 32768 -h 64 -s 32 -v KESTREL ::
mcopy -i "$img" "$kit/bzImage" ::vmlinuz
mcopy -i "$img" "$tmp/initrd.gz" ::initrd.gz
mcopy -i "$img" "$tmp/syslinux.cfg" ::syslinux.cfg
syslinux --install "$img"
mv "$img" "$out/fwlinux.img"
echo "fw-images: $out/bootsect.iso $out/fwlinux.img"
