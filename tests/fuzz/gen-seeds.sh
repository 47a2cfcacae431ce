#!/usr/bin/env bash
# Make the fuzzer's seed corpus (tests/fuzz/corpus/vhd): small images of every
# kind, from kestrel and from qemu-img, each a few KiB.
#   tests/fuzz/gen-seeds.sh KESTREL VHD-TESTIO
set -euo pipefail
K=${1:?usage: gen-seeds.sh KESTREL VHD-TESTIO}
T=${2:?usage: gen-seeds.sh KESTREL VHD-TESTIO}
OUT=$(cd "$(dirname "$0")" && pwd)/corpus/vhd
W=$(mktemp -d /tmp/vhd-seeds.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$OUT"
cd "$W"
"$K" vhd create -q --type fixed --size 4K --exact-size fixed-exact.vhd
"$K" vhd create -q --type fixed --size 8K fixed-chs.vhd          # rounded up to 34 KiB
"$T" write fixed-chs.vhd 0 1K 0x41
"$K" vhd create -q --type dynamic --size 64K --exact-size --block-size 4K dyn-empty.vhd
"$K" vhd create -q --type dynamic --size 64K --exact-size --block-size 4K dyn.vhd
"$T" write dyn.vhd 0 4K 0x42
"$T" write dyn.vhd 40K 1K 0x43
"$K" vhd create -q --type dynamic --size 32K --exact-size --block-size 8K base.vhd
"$T" write base.vhd 8K 8K 0x44
"$K" vhd create -q --type diff --parent base.vhd --block-size 4K diff.vhd
"$T" write diff.vhd 9K 1K 0x45
qemu-img create -q -f vpc -o subformat=dynamic qemu-dyn.vhd 1M
qemu-img create -q -f vpc -o subformat=fixed,force_size=on qemu-fixed.vhd 8K
# A 511-byte footer, as Virtual PC before 2004 wrote.
head -c $(( $(stat -c %s fixed-exact.vhd) - 1 )) fixed-exact.vhd > old511.vhd
for f in *.vhd; do
	[ "$f" = base.vhd ] || cp "$f" "$OUT/$f"
done
ls -l "$OUT"
