#!/usr/bin/env bash
# scripts/test.sh [--no-asan] [CTEST ARGS...]: build kestrel and the guest kit,
# then run every test with ctest in build/:
#   tier 1  Check unit suites (no KVM)                     label unit
#   tier 2  test payloads on this host's /dev/kvm          label payloads
#           (skipped if there is none)
#   tier 3  payloads and Debian's unmodified Linux inside the nested rig
#   fuzz    each libFuzzer harness for under a minute      label fuzz
#           (skipped without clang)
# then build build-asan/ (-DKESTREL_SANITIZE=ON: ASan + UBSan + LeakSanitizer)
# and run tiers 1 and 2 again there (`ctest -L sanitize`). CTEST ARGS go to
# both runs (e.g. -R check_vhd, -L unit, -j2); --no-asan leaves out the second
# build. Prints each ctest summary; exits non-zero if either run failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
asan=1
if [ "${1:-}" = --no-asan ]; then
	asan=0
	shift
fi
"$root/scripts/build.sh"
"$root/scripts/guest-kit.sh" >/dev/null
rc=0
(cd "$root/build" && ctest --output-on-failure --timeout 1500 "$@") || rc=1
if [ $asan = 1 ]; then
	echo "== ASan/UBSan build (build-asan/): unit suites and host payloads"
	start=$SECONDS
	KESTREL_BUILD_DIR=$root/build-asan "$root/scripts/build.sh" -DKESTREL_SANITIZE=ON >/dev/null
	(cd "$root/build-asan" && ctest --output-on-failure --timeout 1500 -L sanitize "$@") || rc=1
	echo "== ASan/UBSan build and tests: $((SECONDS - start)) s"
fi
exit $rc
