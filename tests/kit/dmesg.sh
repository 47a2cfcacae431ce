#!/bin/sh
# Prints the kernel log with its timestamps after the boot, for boot
# profiling (scripts/bench/boot.sh --profile): where the guest's time goes,
# kestrel beside QEMU.
echo "dmesg: begin"
dmesg
echo "dmesg: end"
