#!/bin/sh
# Build the virtio/SCSI fuzzers with clang (libFuzzer + ASan + UBSan) and run
# each for SECONDS: fuzz_virtqueue (descriptor chains in fuzzer-written guest
# RAM) and fuzz_scsi (CDBs and UNMAP/WRITE SAME parameter data).
#   tests/fuzz/run-virtio.sh [--out DIR] [--time SECONDS]
# Exit 77 (skip) without clang; non-zero if a fuzzer finds a crash.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
OUT=${TMPDIR:-/tmp}/kestrel-fuzz-virtio
TIME=60
while [ $# -gt 0 ]; do
	case $1 in
	--out) OUT=$2; shift 2 ;;
	--time) TIME=$2; shift 2 ;;
	*) echo "usage: $0 [--out DIR] [--time SECONDS]" >&2; exit 2 ;;
	esac
done
CLANG=${CLANG:-clang}
command -v "$CLANG" >/dev/null 2>&1 || { echo "fuzz: clang not installed: skipped"; exit 77; }
mkdir -p "$OUT"
CFLAGS="-g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$SRC/include"
# shellcheck disable=SC2086
"$CLANG" $CFLAGS "$HERE/fuzz_virtqueue.c" "$SRC/devices/synthetic/virtqueue.c" "$SRC/src/vm/guest_mem.c" \
	"$SRC/src/vm/guest_mem_dirty.c" "$SRC/src/vm/device.c" \
	"$SRC/src/lib/util.c" -lpthread -o "$OUT/fuzz_virtqueue"
# shellcheck disable=SC2086
"$CLANG" $CFLAGS "$HERE/fuzz_scsi.c" "$SRC/devices/synthetic/scsi_disk.c" -o "$OUT/fuzz_scsi"
rc=0
for f in fuzz_virtqueue fuzz_scsi; do
	mkdir -p "$OUT/$f.corpus"
	(cd "$OUT" && rm -f crash-* leak-* timeout-* oom-* &&
		"./$f" -max_total_time="$TIME" -max_len=70000 -timeout=10 -print_final_stats=1 \
			"$f.corpus" >"$f.log" 2>&1) || rc=1
	tail -n 3 "$OUT/$f.log"
	if [ -n "$(find "$OUT" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'timeout-*' | head -n 1)" ]; then
		echo "fuzz: $f: findings in $OUT"
		rc=1
	fi
done
[ $rc = 0 ] && echo "fuzz: no crash in ${TIME}s each"
exit $rc
