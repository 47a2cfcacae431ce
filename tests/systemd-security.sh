#!/bin/sh
# tests/systemd-security.sh UNIT: `systemd-analyze security --offline` on the
# kestrel@.service template UNIT (as kestrel@ci-test), printing the exposure
# systemd gives it and what counts against it, and failing when it is worse
# than "OK" (systemd's scale: below 1.0 SAFE or PERFECT, below 5.0 OK, then
# MEDIUM, EXPOSED, UNSAFE, DANGEROUS; src/analyze/analyze-security.c). Exit 77
# (skipped) without systemd-analyze (scripts/deps.sh installs systemd).
set -u
unit=$1
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "SKIP: systemd-analyze is not installed (apt-get install systemd)"
	exit 77
fi
instance=$(basename "$unit" .service)ci-test.service
out=$(cd "$(dirname "$unit")" && systemd-analyze security --offline=true --no-pager "$instance" 2>&1)
line=$(printf '%s\n' "$out" | grep "Overall exposure level")
if [ -z "$line" ]; then
	echo "FAIL: systemd-analyze security printed no exposure level:"
	printf '%s\n' "$out"
	exit 1
fi
score=$(printf '%s\n' "$line" | sed -n 's/.*: \([0-9]*\.[0-9]\) \([A-Z]*\).*/\1 \2/p')
printf '%s\n' "$out" | grep "✗"
case "${score#* }" in
PERFECT | SAFE | OK)
	echo "PASS: systemd-analyze security $(basename "$unit"): exposure $score" ;;
*)
	echo "FAIL: systemd-analyze security $(basename "$unit"): exposure $score, worse than OK"
	exit 1 ;;
esac
