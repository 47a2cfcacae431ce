#!/usr/bin/env bash
# scripts/test.sh: build kestrel and the guest kit, then run every test:
#   tier 1  Check unit suites (no KVM)
#   tier 2  test payloads on this host's /dev/kvm (skipped if there is none)
#   tier 3  payloads and Debian's unmodified Linux inside the nested rig
# Prints ctest's summary; exits non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
"$root/scripts/guest-kit.sh" >/dev/null
cd "$root/build"
ctest --output-on-failure --timeout 1500 "$@"
