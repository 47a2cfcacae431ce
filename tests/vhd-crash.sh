#!/usr/bin/env bash
# VHD crash test: a writer (vhd-testio crash-writer: kestrel's block layer,
# io_uring, the VHD format) does batches of concurrent allocating writes, each
# batch followed by a flush, and is killed with SIGKILL at a random moment,
# again and again on the same image. After every kill:
#  - `kestrel vhd check` must accept the image,
#  - QEMU must open it (`qemu-img check` where it supports vpc, else
#    `qemu-img info`) and `qemu-img convert` must read it,
#  - every write flushed before the kill must be there, through kestrel's
#    reader and through QEMU's (vhd-testio crash-verify against the log).
# Then the same on a differencing child of the result (kestrel's reader only:
# QEMU's vpc driver has no differencing support).
#
# usage: tests/vhd-crash.sh KESTREL VHD-TESTIO [KILLS] [DIFF_KILLS]
set -euo pipefail

KESTREL=${1:?usage: vhd-crash.sh KESTREL VHD-TESTIO [KILLS] [DIFF_KILLS]}
TESTIO=${2:?usage: vhd-crash.sh KESTREL VHD-TESTIO [KILLS] [DIFF_KILLS]}
KILLS=${3:-50}
DIFF_KILLS=${4:-20}
command -v qemu-img >/dev/null || { echo "vhd-crash: qemu-img not installed: skipped"; exit 77; }

DIR=$(mktemp -d /tmp/vhd-crash.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
IMG=$DIR/disk.vhd
LOG=$DIR/writes.log
RAW=$DIR/qemu.raw
fail() { echo "vhd-crash: FAIL: $*" >&2; exit 1; }

qemu_opens() {
	local rc=0
	qemu-img check -f vpc "$1" >"$DIR/qcheck" 2>&1 || rc=$?
	case $rc in
	0) ;;
	63) qemu-img info -f vpc "$1" >/dev/null || fail "qemu-img info rejects $1" ;; # no vpc checks
	*) cat "$DIR/qcheck" >&2; fail "qemu-img check rejects $1" ;;
	esac
}

# Kill the writer at a random point between 10 and 250 ms into its run.
one_kill() { # image seed
	local pid ms
	"$TESTIO" crash-writer "$1" "$LOG" "$2" 2>"$DIR/writer.err" &
	pid=$!
	ms=$((10 + RANDOM % 240))
	sleep "$(printf '0.%03d' "$ms")"
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	echo K >>"$LOG"
	if [ -s "$DIR/writer.err" ]; then cat "$DIR/writer.err" >&2; fail "writer error (seed $2)"; fi
}

verify() { # image qemu?
	"$KESTREL" vhd check "$1" >"$DIR/check.out" || { cat "$DIR/check.out" >&2; fail "kestrel vhd check rejects $1"; }
	"$TESTIO" crash-verify "$1" "$LOG" >/dev/null || fail "kestrel's reader: flushed writes missing from $1"
	if [ "$2" = qemu ]; then
		qemu_opens "$1"
		rm -f "$RAW"
		qemu-img convert -f vpc -O raw "$1" "$RAW" || fail "qemu-img convert cannot read $1"
		"$TESTIO" crash-verify "$RAW" "$LOG" >/dev/null || fail "QEMU's reader: flushed writes missing from $1"
	fi
}

# Small blocks (8 KiB: 8192 of them) so that most writes keep allocating
# through all the kills.
"$KESTREL" vhd create --type dynamic --size 64M --block-size 8K -q "$IMG"
for i in $(seq 1 "$KILLS"); do
	one_kill "$IMG" "$i"
	verify "$IMG" qemu
done
blocks=$("$KESTREL" vhd info --json "$IMG" | sed -n 's/.*"allocated_blocks":\([0-9]*\).*/\1/p')
echo "vhd-crash: dynamic: $KILLS kills, image valid and every flushed write present each time ($blocks blocks allocated)"

CHILD=$DIR/child.vhd
"$KESTREL" vhd create --type diff --parent "$IMG" --block-size 8K -q "$CHILD"
for i in $(seq 1 "$DIFF_KILLS"); do
	one_kill "$CHILD" "$((1000 + i))"
	verify "$CHILD" kestrel-only
done
"$KESTREL" vhd check "$IMG" >/dev/null || fail "the parent changed under its child"
echo "vhd-crash: differencing: $DIFF_KILLS kills, chain valid and every flushed write present each time"
echo "vhd-crash: PASS"
