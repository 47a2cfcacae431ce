#!/bin/sh
# tests/format-check.sh [ROOT]: every C source and header tracked by git is
# formatted as .clang-format says (docs/architecture.md, "Style"): a file
# clang-format would change is named with the first lines of the change, and
# the test fails. Skipped (77) without clang-format or outside a git tree.
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 1
command -v clang-format >/dev/null 2>&1 || { echo "SKIP: no clang-format (Debian: apt-get install clang-format)"; exit 77; }
files=$(git ls-files '*.c' '*.h' 2>/dev/null) || { echo "SKIP: not a git tree"; exit 77; }
[ -n "$files" ] || { echo "SKIP: no tracked sources"; exit 77; }
bad=0
for f in $files; do
	if ! clang-format --style=file "$f" | cmp -s - "$f"; then
		echo "not formatted: $f (clang-format -i $f)"
		clang-format --style=file "$f" | diff -u "$f" - | sed -n '3,12p'
		bad=$((bad + 1))
	fi
done
[ $bad = 0 ] && echo "format: $(echo "$files" | wc -l) files as .clang-format says"
[ $bad = 0 ]
