#!/bin/sh
# Inner part of scripts/bench/fwboot.sh: runs where /dev/kvm is (inside the
# nested rig, or on the host with --host) and prints one line per boot:
#   "a|b kestrel|qemu BUS elapsed_ms=.. marker_ms=.. maxrss_kb=.. status=.."
# usage: fwboot-inner.sh RUNS DIR BUS...     (a) the boot sector
#        fwboot-inner.sh -l RUNS DIR BUS...  (b) SYSLINUX -> Debian's Linux
# DIR holds bs.img (tests/guest/bootsect.bin on a 1 MiB raw disk),
# sercon-port.bin (0x3F8, little-endian) and for (b) fwlinux.img
# (tests/fw-images.sh: SYSLINUX, the kit's kernel and initrd; the marker is
# the kit's /init line, and the guest powers off: 2 vCPUs, 512M). Both VMMs run the same SeaBIOS
# image ($FIRMWARE) from the reset vector, its screen on COM1 (fw_cfg
# etc/sercon-port, which kestrel gives by default and QEMU gets from -fw_cfg),
# no display, the disk on BUS (ide: the PIIX3's primary master; scsi: a
# virtio-scsi disk), taking turns. The marker is the boot sector's first
# line (SeaBIOS loaded it and jumped to it); the boot sector then powers off
# through the ACPI PM block, which ends both (elapsed_ms).
# Environment: KESTREL_BIN, QEMU, QEMU_CPU, QEMU_FIRMWARE, RUNSTAT, FIRMWARE.
set -u
K=${KESTREL_BIN:-kestrel}
Q=${QEMU:-qemu-system-x86_64}
QCPU=${QEMU_CPU:-qemu64}
R=${RUNSTAT:-runstat}
FW=${FIRMWARE:-${QEMU_FIRMWARE:-/usr/share/seabios}/bios-256k.bin}
MARK="bootsect: int 10h"
img=bs.img kind=a mem=256M smp=1
if [ "$1" = -l ]; then
	MARK=KESTREL-GUEST-INIT-OK img=fwlinux.img kind=b mem=512M smp=2
	shift
fi
runs=$1 dir=$2
shift 2

sample() { label=$1; shift; echo "$label $("$R" "$@" </dev/null)"; }

qemu_disk() {
	case "$1" in
	ide) echo "-drive file=$dir/$img,if=ide,index=0,format=raw" ;;
	scsi) echo "-device virtio-scsi-pci -drive file=$dir/$img,if=none,id=d0,format=raw -device scsi-hd,drive=d0" ;;
	esac
}

i=0
while [ "$i" -lt "$runs" ]; do
	for bus in "$@"; do
		sample "$kind kestrel $bus" --marker "$MARK" --timeout 300 -- "$K" run --firmware "$FW" \
			--mem $mem --cpus $smp --serial stdio --on-reboot exit --timeout 280s --quiet \
			--disk "path=$dir/$img,bus=$bus"
		# shellcheck disable=SC2046 # the disk's options are words
		sample "$kind qemu $bus" --marker "$MARK" --timeout 300 -- "$Q" -accel kvm -M pc -cpu "$QCPU" \
			-m $mem -smp $smp -nodefaults -display none -serial stdio -no-reboot -bios "$FW" \
			-fw_cfg "name=etc/sercon-port,file=$dir/sercon-port.bin" $(qemu_disk "$bus")
	done
	i=$((i + 1))
done
