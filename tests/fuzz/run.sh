#!/bin/sh
# Build one libFuzzer harness with clang (libFuzzer + ASan + UBSan) and run it
# for a while, starting from its committed seeds (tests/fuzz/corpus/NAME):
#   tests/fuzz/run.sh NAME [--out DIR] [--time SECONDS] [--jobs N]
# NAME is one of
#   vhd        VHD images: the parser, then reads and writes (vhd/)
#   scsi       SCSI CDBs and UNMAP/WRITE SAME data (scsi_disk.c)
#   virtqueue  split-ring descriptor chains in guest RAM (devices/synthetic/virtqueue.c)
#   control    a control-socket client's byte stream (src/control*.c)
# New inputs go to DIR/NAME/corpus; a finding is kept as DIR/NAME/crash-*
# (or leak-, timeout-, oom-) and replays with `DIR/NAME/fuzz_NAME FILE`.
# Exit: 0 nothing found, 1 a finding or a build failure, 2 usage, 77 skipped
# (no clang, or no libFuzzer runtime: apt-get install clang libclang-rt-14-dev).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
usage() { echo "usage: $0 vhd|scsi|virtqueue|control [--out DIR] [--time SECONDS] [--jobs N]" >&2; exit 2; }
[ $# -ge 1 ] || usage
NAME=$1
shift
OUT=${TMPDIR:-/tmp}/kestrel-fuzz
TIME=60
JOBS=1
while [ $# -gt 0 ]; do
	case $1 in
	--out) OUT=$2; shift 2 ;;
	--time) TIME=$2; shift 2 ;;
	--jobs) JOBS=$2; shift 2 ;;
	*) usage ;;
	esac
done
# Per harness: its sources, libraries and libFuzzer options. -max_len: vhd
# images up to 64 KiB; control streams stay short (a \v in one stands for
# 16 KiB of spaces).
case $NAME in
vhd)
	SOURCES="vhd/vhd_format.c vhd/vhd_io.c vhd/vhd_parent.c vhd/vhd_build.c src/block/file_lock.c
		 src/sandbox/keep.c src/lib/util.c"
	LIBS="-lpthread"
	# -rss_limit_mb: dynamic images may declare 256 MiB blocks (sparse in the memfd).
	OPTS="-max_len=65536 -rss_limit_mb=4096 -timeout=20" ;;
scsi)
	SOURCES="devices/synthetic/scsi_disk.c"
	LIBS=""
	OPTS="-max_len=4096 -timeout=10" ;;
virtqueue)
	SOURCES="devices/synthetic/virtqueue.c src/vm/guest_mem.c src/vm/guest_mem_dirty.c src/vm/device.c
		 migrate/state.c src/lib/util.c"
	LIBS="-lpthread"
	OPTS="-max_len=70000 -timeout=10" ;;
control)
	# The machine below src/control/control_vm.c is faked in the harness itself.
	SOURCES="src/control/control.c src/control/control_cmd.c src/control/control_vm.c
		 src/config/config.c src/config/config_disk.c src/config/config_net.c src/config/config_display.c src/config/config_firmware.c
		 src/block/block_opts.c src/vm/device.c migrate/state.c src/vm/guest_mem.c src/vm/guest_mem_dirty.c
		 src/control/notify.c src/lib/util.c src/lib/json_text.c src/sandbox/sandbox.c src/sandbox/seccomp.c
		 src/sandbox/privdrop.c src/sandbox/landlock.c src/sandbox/keep.c src/input/keymap.c
		 src/config/config_vnc.c src/vm/cpu_model.c src/vm/cpu_features.c"
	LIBS="$(pkg-config --libs json-c 2>/dev/null || echo -ljson-c) -lseccomp -lpthread"
	OPTS="-max_len=4096 -timeout=20" ;;
*) usage ;;
esac
CLANG=${CLANG:-clang}
CFLAGS="-g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
if ! command -v "$CLANG" >/dev/null 2>&1; then
	echo "SKIP: fuzz_$NAME not run: clang is not installed (apt-get install clang libclang-rt-14-dev)"
	exit 77
fi
DIR=$OUT/$NAME
mkdir -p "$DIR/corpus"
# clang without its fuzzer runtime (only "recommended" by Debian's clang) is
# a missing tool, not a failing harness.
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' >"$DIR/probe.c"
# shellcheck disable=SC2086
if ! "$CLANG" $CFLAGS "$DIR/probe.c" -o "$DIR/probe" >"$DIR/probe.log" 2>&1; then
	echo "SKIP: fuzz_$NAME not run: $CLANG cannot link -fsanitize=fuzzer (apt-get install libclang-rt-14-dev):"
	tail -n 3 "$DIR/probe.log"
	exit 77
fi
srcs=
for f in $SOURCES; do srcs="$srcs $SRC/$f"; done
# shellcheck disable=SC2086
"$CLANG" $CFLAGS -I"$SRC/include" "$HERE/fuzz_$NAME.c" $srcs $LIBS -o "$DIR/fuzz_$NAME"
cd "$DIR"
rm -f crash-* leak-* timeout-* oom-* fuzz-*.log
[ -e "$HERE/$NAME.dict" ] && OPTS="$OPTS -dict=$HERE/$NAME.dict"
[ "$JOBS" -gt 1 ] && OPTS="$OPTS -jobs=$JOBS -workers=$JOBS"
rc=0
# shellcheck disable=SC2086
"./fuzz_$NAME" -max_total_time="$TIME" $OPTS -print_final_stats=1 \
	corpus "$HERE/corpus/$NAME" >fuzz.log 2>&1 || rc=$?
if [ -e fuzz-0.log ]; then cat fuzz-*.log >>fuzz.log; fi
found=$(find . -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | head -n 5)
if [ $rc -ne 0 ] || [ -n "$found" ]; then
	tail -n 60 fuzz.log
	echo "FAIL: fuzz_$NAME: exit $rc; findings in $DIR: $found"
	for f in $found; do echo "  replay: $DIR/fuzz_$NAME $DIR/${f#./}"; done
	exit 1
fi
grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' fuzz.log || true
echo "PASS: fuzz_$NAME: no finding in ${TIME}s ($(ls corpus | wc -l) new inputs, $(ls "$HERE/corpus/$NAME" | wc -l) seeds)"
