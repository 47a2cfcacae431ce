#!/bin/sh
# Helpers the kit's device tests share (sourced: . "${0%/*}/lib.sh"; the
# kit's /init runs each test as sh /tests/NAME.sh, next to this file).
# arg NAME DEFAULT: the value of NAME=... on the kernel command line.
arg() {
	for w in $(cat /proc/cmdline); do
		case "$w" in "$1="*) echo "${w#*=}"; return 0 ;; esac
	done
	echo "$2"
}
# wait_for CMD SECONDS: poll CMD every 0.2 s.
wait_for() {
	n=$(($2 * 5))
	while [ $n -gt 0 ]; do
		eval "$1" && return 0
		sleep 0.2
		n=$((n - 1))
	done
	return 1
}
# disk_of T: the sd name of SCSI target T (host and channel 0 here), or "".
disk_of() {
	for d in /sys/block/sd*; do
		[ -e "$d" ] || continue
		for a in "$d"/device/scsi_device/*; do
			case "${a##*/}" in *:0:"$1":0) echo "${d##*/}"; return 0 ;; esac
		done
	done
	return 1
}
