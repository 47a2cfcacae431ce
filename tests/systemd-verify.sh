#!/bin/sh
# tests/systemd-verify.sh UNIT KESTREL: `systemd-analyze verify` on the
# kestrel@.service template (instantiated as kestrel@ci-test), with its
# ExecStart/ExecStop pointed at the kestrel binary under test, since verify
# checks that the commands exist. Exit 77 (skipped) without systemd-analyze
# (apt-get install systemd; scripts/deps.sh has it).
set -u
unit=$1 kestrel=$2
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "SKIP: systemd-analyze is not installed (apt-get install systemd)"
	exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s|/usr/local/bin/kestrel|$kestrel|g" "$unit" >"$dir/kestrel@.service"
grep -q "^ExecStart=$kestrel run --config /etc/kestrel/%i.json" "$dir/kestrel@.service" || {
	echo "FAIL: unexpected ExecStart in $unit"
	exit 1
}
# A production VM never lets its guest pick the worker's exit status.
if grep -q -- "^Exec.*--debug-exit" "$dir/kestrel@.service"; then
	echo "FAIL: $unit passes --debug-exit"
	exit 1
fi
# verify prints problems and exits non-zero on errors; warnings are failures too.
if ! msg=$(systemd-analyze verify "$dir/kestrel@ci-test.service" 2>&1); then
	echo "FAIL: systemd-analyze verify: $msg"
	exit 1
fi
if [ -n "$msg" ]; then
	echo "FAIL: systemd-analyze verify warns: $msg"
	exit 1
fi
echo "PASS: systemd-analyze verify $(basename "$unit") ($(systemd-analyze --version | head -n 1))"
