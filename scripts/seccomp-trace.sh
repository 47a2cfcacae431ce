#!/bin/sh
# scripts/seccomp-trace.sh [--kestrel BIN] [--out DIR] -- COMMAND [ARGS...]
#
# Which system calls each kind of worker thread makes (docs/sandbox.md: how
# the lists were made). COMMAND runs with $KESTREL_TRACE_BIN set to a wrapper
# that runs every `kestrel run` under strace -f -ff with --seccomp log (so a
# call missing from a list is allowed and shows up); give it to what starts
# workers, e.g.
#
#   scripts/seccomp-trace.sh -- sh -c 'tests/guest-tests.sh --payloads \
#       --kestrel "$KESTREL_TRACE_BIN" --payload-dir build/tests/guest'
#
# Then, per kind (thread names: vcpuN -> vcpu; control, vscsi-timer ->
# control; console; spawner; the main thread; everything else -> io), the
# calls made after the thread installed its own filter, with counts, and the
# ioctl requests by name. Compare with src/sandbox/seccomp.c. The kernel's
# audit lines (dmesg: type=1326) name calls that are off the lists.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/kestrel
out=
while [ $# -gt 0 ]; do
	case "$1" in
	--kestrel) bin=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--) shift; break ;;
	*) echo "usage: $0 [--kestrel BIN] [--out DIR] -- COMMAND [ARGS...]" >&2; exit 2 ;;
	esac
done
[ $# -gt 0 ] || { echo "$0: no COMMAND" >&2; exit 2; }
command -v strace >/dev/null || { echo "$0: strace is not installed (apt-get install strace)" >&2; exit 2; }
[ -n "$out" ] || out=$(mktemp -d /tmp/kestrel-seccomp-trace.XXXXXX)
mkdir -p "$out/traces"
cat >"$out/kestrel" <<EOF
#!/bin/sh
if [ "\$1" = run ]; then
	shift
	exec strace -f -ff -qq -o "$out/traces/t.\$\$" "$bin" run --seccomp log "\$@"
fi
exec "$bin" "\$@"
EOF
chmod +x "$out/kestrel"
rc=0
KESTREL_TRACE_BIN=$out/kestrel "$@" || rc=$?

# One line per call made after the thread's own filter: "KIND CALL [REQUEST]".
for f in "$out"/traces/t.*; do
	[ -e "$f" ] || continue
	awk -v first="$(head -c 7 "$f")" '
		BEGIN { kind = first == "execve(" ? "main" : ""; on = 0 }
		kind == "" && /prctl\(PR_SET_NAME, "/ {
			n = $0; sub(/.*PR_SET_NAME, "/, "", n); sub(/".*/, "", n)
			if (n ~ /^vcpu/) kind = "vcpu"
			else if (n == "control" || n == "vscsi-timer") kind = "control"
			else if (n == "console" || n == "spawner") kind = n
			else kind = "io"
		}
		/^seccomp\(SECCOMP_SET_MODE_FILTER, 0,/ && / = 0$/ { on = 1; next }
		on && match($0, /^[a-z0-9_]+\(/) {
			call = substr($0, 1, RLENGTH - 1)
			if (call == "ioctl") {
				split($0, a, ", "); call = call " " a[2]
			}
			print kind, call
		}' "$f"
done | sort | uniq -c | sort -k2,2 -k1,1nr | awk '
	$2 != k { if (k != "") printf "\n"; k = $2; printf "== %s\n", k }
	{ printf "  %-40s %d\n", $3 ($4 != "" ? " " $4 : ""), $1 }'
echo "traces: $out/traces"
exit $rc
