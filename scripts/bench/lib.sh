# scripts/bench/lib.sh: what the benchmark drivers share; sourced (after
# `root` is set to the repository) by scripts/bench/*.sh, never run.

# bench_need SCRIPT COMMAND PACKAGE: exit 2 with one line when COMMAND is missing.
bench_need() {
	command -v "$2" >/dev/null || { echo "$1: $2 missing (apt-get install $3)" >&2; exit 2; }
}

# bench_kestrel [TARGET...]: unless KESTREL_BIN names a kestrel binary
# already, build kestrel (and TARGETs) in $root/build and export KESTREL_BIN.
bench_kestrel() {
	if [ -z "${KESTREL_BIN:-}" ]; then
		cmake --build "$root/build" --target kestrel "$@" >/dev/null
		export KESTREL_BIN="$root/build/kestrel"
	fi
}

# bench_stage_fio DIR: this host's fio as DIR/fio with its libraries (and
# loader) in DIR/lib, for a guest or the rig to run through that loader.
bench_stage_fio() {
	mkdir -p "$1/lib"
	cp -L "$(command -v fio)" "$1/fio"
	ldd "$(command -v fio)" | awk '$3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }' |
		while read -r lib; do cp -L "$lib" "$1/lib/"; done
}
