#!/usr/bin/env bash
# scripts/deps.sh: install, from Debian's packages, everything kestrel needs to
# build, build its guest kit, and run its tests. Debian 12; run as root.
set -euo pipefail

PACKAGES=(
	# build
	build-essential cmake pkg-config libjson-c-dev liburing-dev libaio-dev libseccomp-dev check
	# screendumps (libpng); the std VGA's option ROM (vgabios-stdvga.bin)
	libpng-dev seabios
	# guest kit and nested rig (Debian kernel + busybox, QEMU for the outer VM)
	qemu-system-x86 qemu-utils busybox-static cpio xz-utils gzip binutils file
	# tests: iasl checks our ACPI tables; systemd-analyze verifies and rates the
	# unit; strace enumerates system calls (docs/sandbox.md)
	acpica-tools systemd strace
	# tests: the host's side of the virtio-net cases (ip netns, ping)
	iproute2 iputils-ping
	# tests: libFuzzer harnesses (tests/fuzz/run.sh: clang, and its fuzzer and
	# sanitizer runtimes, only "recommended" by clang); bc for scripts/bench/vhd.sh
	clang libclang-rt-14-dev bc
	# tests: every C file is formatted as .clang-format says (tests/format-check.sh)
	clang-format
	# benchmarks: fio is the ceiling in scripts/bench/disk.sh
	fio
	# the VNC server (--display vnc=) and the VNC test client: libvncserver and
	# libvncclient, both in this one package
	libvncserver-dev
	# firmware boot: Debian's SeaBIOS is kestrel's default firmware; the tests'
	# images are made with xorriso (El Torito CD), mtools and syslinux (a
	# SYSLINUX disk, without mounting)
	seabios xorriso mtools syslinux syslinux-common
	# the OCF resource agent's test: ocf-tester (resource-agents) and the
	# xmllint it checks the meta-data with (only "recommended" by it)
	resource-agents libxml2-utils
)

if [ "$(id -u)" != 0 ]; then
	exec sudo "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
