#!/usr/bin/env bash
# scripts/build.sh [cmake args...]: configure and build kestrel into build/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$root" -B "$root/build" -DKESTREL_WERROR=ON "$@" >/dev/null
cmake --build "$root/build" -j"$(nproc)"
