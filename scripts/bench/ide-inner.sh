#!/bin/sh
# Inner part of scripts/bench/ide.sh: runs inside the nested rig (where
# Debian's kernel boots) and prints one line per measurement:
#   "k|q ide|vscsi PHASE iops=N kBps=N" from the guest's bench lines.
# usage: ide-inner.sh SECS REPS DIR
# DIR holds initrd-bench.gz (the kit's initrd, modules, tests/kit and fio).
# kestrel and QEMU boot the same kernel and initrd with the same two disks,
# an IDE disk on the PIIX3's primary master and a virtio-scsi disk, on the
# same kind of image (256 MiB raw on the rig's tmpfs, page cache: cache=
# writeback in both), taking turns REPS times.
# Environment: KESTREL_BIN, QEMU (qemu-system-x86_64), QEMU_CPU, KESTREL_KIT.
set -u
K=${KESTREL_BIN:-kestrel}
Q=${QEMU:-qemu-system-x86_64}
QCPU=${QEMU_CPU:-qemu64}
KIT=${KESTREL_KIT:-/kit}
secs=$1 reps=$2 dir=$3
CMDLINE="console=ttyS0 panic=-1 quiet kestrel.modules=ata_piix,sd_mod,virtio_pci,virtio_scsi kestrel.run=idebench kestrel.bench_secs=$secs"

for d in ide vs; do
	[ -f "$dir/$d.img" ] || dd if=/dev/zero of="$dir/$d.img" bs=1M count=256 2>/dev/null
done
i=0
while [ "$i" -lt "$reps" ]; do
	"$K" run --serial stdio --kernel "$KIT/vmlinux" --initrd "$dir/initrd-bench.gz" --cpus 2 --mem 512M \
		--on-reboot exit --timeout 600s --cmdline "$CMDLINE" \
		--disk "path=$dir/ide.img,bus=ide" --disk "path=$dir/vs.img,bus=scsi" </dev/null 2>&1 |
		tr -d '\r' | sed -n 's/^bench: \([a-z]* [a-z0-9-]* .*\)/k \1/p'
	"$Q" -accel kvm -M pc -cpu "$QCPU" -m 512 -smp 2 -nodefaults -display none -serial stdio \
		-no-reboot ${QEMU_FIRMWARE:+-L "$QEMU_FIRMWARE"} -kernel "$KIT/vmlinux" \
		-initrd "$dir/initrd-bench.gz" -append "$CMDLINE" \
		-drive "file=$dir/ide.img,if=ide,index=0,format=raw,cache=writeback" \
		-device virtio-scsi-pci -drive "file=$dir/vs.img,if=none,id=vs,format=raw,cache=writeback" \
		-device scsi-hd,drive=vs </dev/null 2>&1 |
		tr -d '\r' | sed -n 's/^bench: \([a-z]* [a-z0-9-]* .*\)/q \1/p'
	i=$((i + 1))
done
