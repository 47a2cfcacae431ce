#!/usr/bin/env bash
# Make the seed corpora of fuzz_scsi and fuzz_virtqueue (tests/fuzz/corpus/
# scsi and corpus/virtqueue): one well-formed input per command or chain
# shape, laid out as each harness's header comment says. Committed; run again
# only to change them.
#   tests/fuzz/gen-seeds-virtio.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

# Little-endian fields as printf escapes.
le() { local v=$1 n=$2 i; for ((i = 0; i < n; i++)); do printf '\\x%02x' $(((v >> (8 * i)) & 255)); done; }
be() { local v=$1 n=$2 i; for ((i = n - 1; i >= 0; i--)); do printf '\\x%02x' $(((v >> (8 * i)) & 255)); done; }
zeros() { head -c "$1" /dev/zero; }

# ---- scsi: byte 0 flags (1 readonly, 2 discard, 4 write cache, 8 huge disk),
# a 32-byte CDB, then the data-out bytes.
S=$HERE/corpus/scsi
rm -rf "$S"
mkdir -p "$S"
scsi() {   # NAME FLAGS CDB-ESCAPES [DATA-ESCAPES [ZERO-BYTES]]
	local name=$1 flags=$2 cdb=$3 data=${4:-} len
	len=$(printf "$cdb" | wc -c)
	{ printf "$(printf '\\x%02x' "$flags")"; printf "$cdb"; zeros $((32 - len)); printf "$data"; zeros "${5:-0}"; } >"$S/$name"
}
scsi test-unit-ready 0 '\x00\x00\x00\x00\x00\x00'
scsi request-sense 0 '\x03\x00\x00\x00\xfc\x00'
scsi inquiry 0 '\x12\x00\x00\x00\x60\x00'
for p in 00 80 83 b0 b1 b2; do
	scsi "inquiry-vpd-$p" 2 "\\x12\\x01\\x$p\\x00\\xff\\x00"
done
scsi read-capacity-10 0 '\x25\x00\x00\x00\x00\x00\x00\x00\x00\x00'
scsi read-capacity-16 8 "\\x9e\\x10$(be 0 8)$(be 32 4)\\x00\\x00"
scsi mode-sense-6 4 '\x1a\x00\x3f\x00\xff\x00'
scsi mode-sense-10 4 '\x5a\x00\x08\x00\x00\x00\x00\x01\x00\x00'
scsi report-luns 0 "\\xa0\\x00\\x00\\x00\\x00\\x00$(be 256 4)\\x00\\x00"
scsi read-6 0 '\x08\x00\x00\x10\x08\x00'
scsi read-10 0 "\\x28\\x00$(be 2048 4)\\x00$(be 8 2)\\x00"
scsi write-10-readonly 1 "\\x2a\\x00$(be 2048 4)\\x00$(be 8 2)\\x00"
scsi read-16-end 0 "\\x88\\x00$(be $((1048576 - 8)) 8)$(be 8 4)\\x00\\x00"
scsi write-16 0 "\\x8a\\x00$(be 4096 8)$(be 16 4)\\x00\\x00"
scsi sync-cache-10 4 '\x35\x00\x00\x00\x00\x00\x00\x00\x00\x00'
scsi verify-10 0 "\\x2f\\x00$(be 0 4)\\x00$(be 1 2)\\x00"
scsi start-stop 0 '\x1b\x00\x00\x00\x01\x00'
scsi prevent-allow 0 '\x1e\x00\x00\x00\x00\x00'
scsi report-supported-opcodes 0 "\\xa3\\x0c\\x00\\x00\\x00\\x00$(be 512 4)\\x00\\x00"
# UNMAP (SBC-4 5.32): an 8-byte header, then 16-byte block descriptors.
scsi unmap 2 "\\x42\\x00\\x00\\x00\\x00\\x00\\x00$(be 40 2)\\x00" \
	"$(be 38 2)$(be 32 2)$(be 0 4)$(be 100 8)$(be 8 4)$(be 0 4)$(be 5000 8)$(be 16 4)$(be 0 4)"
scsi write-same-16-unmap 2 "\\x93\\x08$(be 64 8)$(be 32 4)\\x00\\x00" "" 512

# ---- virtqueue: byte 0 queue size (2^(b%9)), byte 1 features (1 indirect, 2
# EVENT_IDX), avail->idx, 8 avail ring entries, the descriptor table (16 bytes
# a descriptor, at 0x1000), then RAM from 0x4000 on.
V=$HERE/corpus/virtqueue
rm -rf "$V"
mkdir -p "$V"
desc() { printf '%s' "$(le "$1" 8)$(le "$2" 4)$(le "$3" 2)$(le "$4" 2)"; }   # addr len flags next
NEXT=1 WRITE=2 INDIRECT=4
vq() {   # NAME QSZ-BYTE FEATURES AVAIL-IDX "RING..." DESC-ESCAPES [RAM-OFFSET RAM-ESCAPES]
	local name=$1 q=$2 feat=$3 idx=$4 ring=$5 descs=$6 at=${7:-0} ram=${8:-} r hdr n qsz
	qsz=$((1 << (q % 9)))
	hdr="\\x$(printf %02x "$q")\\x$(printf %02x "$feat")$(le "$idx" 2)"
	n=0
	for r in $ring; do hdr="$hdr$(le "$r" 2)"; n=$((n + 1)); done
	for ((; n < 8; n++)); do hdr="$hdr$(le 0 2)"; done
	{
		printf "$hdr"
		printf "$descs"
		zeros $((16 * qsz - $(printf "$descs" | wc -c)))
		zeros "$at"
		printf "$ram"
	} >"$V/$name"
}
# A request: header out, data in, status in.
vq chain-3 3 0 1 "0" \
	"$(desc 0x4000 16 $NEXT 1)$(desc 0x5000 4096 $((NEXT | WRITE)) 2)$(desc 0x4010 1 $WRITE 0)"
# Two chains, EVENT_IDX on.
vq two-chains 4 2 2 "0 3" \
	"$(desc 0x4000 64 $NEXT 1)$(desc 0x6000 512 $WRITE 0)$(desc 0 0 0 0)$(desc 0x4100 16 0 0)"
# An indirect table at 0x4200 of two descriptors.
vq indirect 3 1 1 "0" "$(desc 0x4200 32 $INDIRECT 0)" 512 \
	"$(desc 0x4000 16 $NEXT 1)$(desc 0x5000 64 $WRITE 0)"
# A loop (1 -> 2 -> 1): the walk must stop at the queue size.
vq loop 2 0 1 "1" "$(desc 0 0 0 0)$(desc 0x4000 8 $NEXT 2)$(desc 0x4008 8 $NEXT 1)"
# A buffer that runs past the end of guest RAM.
vq past-ram 1 0 1 "0" "$(desc $((2 * 1024 * 1024 - 8)) 64 0 0)"
# avail->idx far ahead of the ring: more heads than the queue holds.
vq idx-ahead 2 0 40000 "0 1 2 3" "$(desc 0x4000 8 0 0)$(desc 0x4000 8 0 0)"
ls -l "$S" "$V" | grep -c '^-' | sed 's/^/seed files: /'
