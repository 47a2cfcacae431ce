#!/bin/sh
# tests/sanitizer-reports.sh clear|check DIR: the ASan/UBSan build's test
# fixture (CMakeLists.txt, KESTREL_SANITIZE). Its tests' processes write any
# sanitizer report to DIR (ASAN_OPTIONS/UBSAN_OPTIONS log_path); "clear"
# empties DIR before them, "check" afterwards prints every report and fails
# if there is one.
set -u
dir=$2
case $1 in
clear)
	rm -rf "$dir" && mkdir -p "$dir" && echo "sanitizer reports go to $dir" ;;
check)
	set -- "$dir"/*
	if [ ! -e "$1" ]; then
		echo "PASS: no ASan/UBSan/LSan report in $dir"
		exit 0
	fi
	for f in "$@"; do
		echo "==== $f"
		cat "$f"
	done
	echo "FAIL: $# sanitizer report(s) in $dir"
	exit 1 ;;
*)
	echo "usage: $0 clear|check DIR" >&2
	exit 2 ;;
esac
