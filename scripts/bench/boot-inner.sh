#!/bin/sh
# Inner part of scripts/bench/boot.sh: runs where /dev/kvm is (the host, or
# inside the nested rig) and prints one result line per measurement.
#   boot-inner.sh payload RUNS      (a) exec -> exit of exit0.bin, kestrel and QEMU
#   boot-inner.sh linux RUNS        (b)+(c) exec -> init marker of the kit's Linux, and peak RSS;
#                                   (d) the cost of one PCI config read (pci.bin scan=2)
# Environment: KESTREL_BIN, QEMU (qemu-system-x86_64), QEMU_CPU (host), PAYLOADS, KESTREL_KIT, RUNSTAT.
set -u
K=${KESTREL_BIN:-kestrel}
Q=${QEMU:-qemu-system-x86_64}
QCPU=${QEMU_CPU:-host}
R=${RUNSTAT:-runstat}
KIT=${KESTREL_KIT:-/kit}
P=${PAYLOADS:-/payloads}
MARK=KESTREL-GUEST-INIT-OK
CMDLINE="console=ttyS0 quiet panic=-1"

# sample LABEL CMD...: one "LABEL elapsed_ms=.. marker_ms=.. maxrss_kb=.. status=.." line
# stdin is /dev/null: a VMM given a terminal puts it in raw mode and restores
# it at exit, which stops a VMM outside the foreground process group (SIGTTOU).
sample() { label=$1; shift; echo "$label $("$R" "$@" </dev/null)"; }

# per_read WHO: pci.bin's timing line (stdin) as "d WHO ns_per_read=N".
per_read() { sed -n "s/^pci: [0-9]* config reads in [0-9]* us: \([0-9]*\) ns per read.*/d $1 ns_per_read=\1/p"; }

case "$1" in
payload)
	i=0
	while [ $i -lt "$2" ]; do
		sample "a kestrel" --timeout 120 -- "$K" run --kernel "$P/exit0.bin" --debug-exit --mem 256M --serial none --quiet
		sample "a qemu" --timeout 120 -- "$Q" -accel kvm -M pc -cpu "$QCPU" -m 256 -nodefaults -display none \
			-serial none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel "$P/exit0.bin"
		i=$((i + 1))
	done
	;;
linux)
	i=0
	while [ $i -lt "$2" ]; do
		for img in vmlinux bzImage; do
			sample "b kestrel $img" --marker "$MARK" --timeout 300 -- "$K" run --kernel "$KIT/$img" \
				--initrd "$KIT/initrd.cpio.gz" --cmdline "$CMDLINE" --cpus 2 --mem 256M \
				--on-reboot exit --timeout 300s
			sample "b qemu $img" --marker "$MARK" --timeout 300 -- "$Q" -accel kvm -M pc -cpu "$QCPU" -m 256 \
				-smp 2 -nodefaults -display none -serial stdio -no-reboot -kernel "$KIT/$img" \
				-initrd "$KIT/initrd.cpio.gz" -append "$CMDLINE"
		done
		i=$((i + 1))
	done
	# (d) one PCI config read (0xCF8 write + 0xCFC read), timed by the guest
	# over the 8,192-read sweep Linux's early AGP probe makes (twice per boot
	# when the CPU is AMD family 0xf, as this rig's qemu64 is).
	"$K" run --kernel "$P/pci.bin" --debug-exit --cmdline "scan=2" --serial stdio --timeout 120s </dev/null 2>/dev/null |
		per_read kestrel
	"$Q" -accel kvm -M pc -cpu "$QCPU" -m 256 -nodefaults -display none -serial stdio -no-reboot \
		${QEMU_FIRMWARE:+-L "$QEMU_FIRMWARE"} -device isa-debug-exit,iobase=0xf4,iosize=4 \
		-kernel "$P/pci.bin" -append "scan=2" </dev/null 2>/dev/null | per_read qemu
	# (c) kestrel's own memory beside the guest RAM it touched (from --stats).
	"$K" run --kernel "$KIT/vmlinux" --initrd "$KIT/initrd.cpio.gz" --cmdline "$CMDLINE" --cpus 2 \
		--mem 256M --on-reboot exit --timeout 300s --stats 2>&1 >/dev/null | grep 'stats: memory' |
		sed 's/^.*memory /c kestrel /'
	;;
esac
