#!/bin/sh
# Build the VHD fuzzer with clang (libFuzzer + ASan + UBSan) and run it.
#   tests/fuzz/run.sh [--out DIR] [--time SECONDS] [--jobs N]
# The seed corpus is tests/fuzz/corpus/vhd (small images made by
# gen-seeds.sh); new inputs go to DIR/corpus, crashes to DIR/crash-*.
# Exit 77 (skip) without clang; non-zero if the fuzzer finds a crash.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
OUT=${TMPDIR:-/tmp}/kestrel-fuzz
TIME=60
JOBS=1
while [ $# -gt 0 ]; do
	case $1 in
	--out) OUT=$2; shift 2 ;;
	--time) TIME=$2; shift 2 ;;
	--jobs) JOBS=$2; shift 2 ;;
	*) echo "usage: $0 [--out DIR] [--time SECONDS] [--jobs N]" >&2; exit 2 ;;
	esac
done
CLANG=${CLANG:-clang}
command -v "$CLANG" >/dev/null 2>&1 || { echo "fuzz: clang not installed: skipped"; exit 77; }
mkdir -p "$OUT/corpus"
"$CLANG" -g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -I"$SRC/include" \
	"$HERE/fuzz_vhd.c" "$SRC/vhd/vhd_format.c" "$SRC/vhd/vhd_io.c" "$SRC/vhd/vhd_parent.c" \
	"$SRC/vhd/vhd_build.c" "$SRC/src/block/file_lock.c" "$SRC/src/sandbox/keep.c" \
	"$SRC/src/lib/util.c" -lpthread -o "$OUT/fuzz_vhd"
cd "$OUT"
rm -f crash-* leak-* timeout-* oom-* fuzz-*.log
# -rss_limit_mb: dynamic images may declare 256 MiB blocks (sparse in the memfd).
rc=0
./fuzz_vhd -max_total_time="$TIME" -jobs="$JOBS" -workers="$JOBS" -max_len=65536 \
	-rss_limit_mb=4096 -timeout=20 -print_final_stats=1 \
	corpus "$HERE/corpus/vhd" >fuzz.log 2>&1 || rc=$?
tail -n 25 fuzz.log
[ -e fuzz-0.log ] && tail -n 5 fuzz-*.log
found=$(find . -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | head -n 5)
if [ $rc -ne 0 ] || [ -n "$found" ]; then
	echo "fuzz: findings in $OUT: $found (exit $rc)"
	exit 1
fi
echo "fuzz: no crash in ${TIME}s ($(ls corpus | wc -l) inputs in the corpus)"
