#!/usr/bin/env bash
# scripts/build.sh [cmake args...]: configure and build kestrel into build/
# (or into $KESTREL_BUILD_DIR: scripts/test.sh's ASan build is build-asan/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${KESTREL_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$dir" -DKESTREL_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
