# shellcheck shell=bash
# scripts/lib.sh: helpers shared by the kestrel shell scripts. Source it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Provides KESTREL_ROOT (the repo root, found from this file's location),
# KESTREL_KIT_DEFAULT, and log/warn/die/need_cmd/file_stamp/cpio_dir.

KESTREL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck disable=SC2034 # used by the scripts sourcing this file
KESTREL_KIT_DEFAULT="${KESTREL_KIT:-$KESTREL_ROOT/.kit}"
KESTREL_PROG="${KESTREL_PROG:-$(basename "$0" .sh)}"

log() { printf '%s: %s\n' "$KESTREL_PROG" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$KESTREL_PROG" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$KESTREL_PROG" "$*" >&2
	exit "${KESTREL_DIE_STATUS:-1}"
}

need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "missing tool '$c' (apt-get install it)"
	done
}

# file_stamp FILE...: one line per file naming it with its size and mtime;
# hashed to key caches on their inputs without reading big files.
file_stamp() {
	local f
	for f in "$@"; do
		stat -L -c '%n %s %Y' -- "$f"
	done
}

# cpio_dir DIR OUT: write DIR's contents as a newc archive (owned by root,
# sorted for reproducibility) to OUT, uncompressed.
cpio_dir() {
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort |
		cpio --quiet -o -H newc -R 0:0) >"$2"
}

# copy_with_libs ROOT SRC DEST: install executable SRC as ROOT/DEST, plus
# every shared library ldd names for it and the dynamic loader, each
# resolved through symlinks but stored under the path the loader asks for.
copy_with_libs() {
	local root="$1" src="$2" dest="$3" lib
	install -D -m 0755 "$(readlink -f "$src")" "$root$dest"
	while read -r lib; do
		[ -e "$root$lib" ] && continue
		install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
	done < <(ldd "$src" 2>/dev/null | awk '
		$2 == "=>" && $3 ~ /^\// { print $3; next }
		$1 ~ /^\// { print $1 }')
}
