#!/bin/sh
# The OCF resource agent (scripts/ocf/kestrel) under Debian's ocf-tester
# (resource-agents), on one node, against a real worker booting counter.bin
# (a payload that runs until it is stopped and ignores the power button, so
# stop's forced path runs). Then live migration through the agent on the
# same node, when this kestrel has it (kestrel run --incoming).
#
# usage: tests/ocf-test.sh KESTREL PAYLOAD_DIR
# Exit: 0 passed, 1 failed, 77 skipped (no ocf-tester or no /dev/kvm).
set -u
here=$(cd "$(dirname "$0")" && pwd)
KESTREL=$1 P=$2
AGENT=$here/../scripts/ocf/kestrel

command -v ocf-tester >/dev/null || { echo "SKIP: no ocf-tester (apt-get install resource-agents)"; exit 77; }
[ -c /dev/kvm ] || { echo "SKIP: no /dev/kvm"; exit 77; }
t=$(mktemp -d /tmp/kestrel-ocf-XXXXXX)
chmod 755 "$t"
# A worker left by a failed case: stopped by its own PID (query-status).
cleanup() {
	for s in "$t"/run/*.sock; do
		[ -S "$s" ] || continue
		p=$("$KESTREL" ctl "$s" query-status 2>/dev/null | sed -n 's/^pid: //p')
		[ -n "$p" ] && kill -KILL "$p"
	done
	rm -rf "$t"
}
trap cleanup EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

cat >"$t/vm1.json" <<JSON
{ "kernel": "$P/counter.bin", "cmdline": "period_ms=200", "mem": "64M", "serial": "stdio" }
JSON
set -- -o config="$t/vm1.json" -o binary="$KESTREL" -o control="$t/run/vm1.sock" \
	-o log="$t/vm1.log" -o shutdown_timeout=2
ocf-tester -v -n vm1 "$@" "$AGENT" >"$t/tester.out" 2>&1
rc=$?
cat "$t/tester.out"
[ $rc -eq 0 ] || bad "ocf-tester exited $rc"
grep -q "passed all tests" "$t/tester.out" || bad "ocf-tester did not pass all tests"
# ocf-tester starts the VM twice (and once more when already running):
# the guest printed each boot's first lines.
n=$(grep -c '^counter: start' "$t/vm1.log")
[ "$n" -ge 2 ] || bad "the guest booted $n times, want 2 (log: $t/vm1.log)"
grep -q '^counter: 3$' "$t/vm1.log" || bad "the guest never counted to 3"
[ -S "$t/run/vm1.sock" ] && "$KESTREL" ctl "$t/run/vm1.sock" query-status >/dev/null 2>&1 &&
	bad "a worker still runs after ocf-tester"

# Live migration through the agent (migrate_to on the source, migrate_from
# on the target, here the same node), as Pacemaker calls them.
if "$KESTREL" help run 2>&1 | grep -q -- '--incoming'; then
	export OCF_ROOT=/usr/lib/ocf OCF_RESOURCE_INSTANCE=vm1 OCF_RESKEY_config="$t/vm1.json" \
		OCF_RESKEY_binary="$KESTREL" OCF_RESKEY_control="$t/run/vm1.sock" \
		OCF_RESKEY_log="$t/vm1.log" OCF_RESKEY_shutdown_timeout=2 \
		OCF_RESKEY_migration_uri="unix:$t/migrate.sock" OCF_RESKEY_CRM_meta_timeout=60000
	"$AGENT" start || bad "start before migration"
	OCF_RESKEY_CRM_meta_migrate_target=$(uname -n) OCF_RESKEY_CRM_meta_migrate_source=$(uname -n) \
		"$AGENT" migrate_to || bad "migrate_to"
	OCF_RESKEY_CRM_meta_migrate_target=$(uname -n) OCF_RESKEY_CRM_meta_migrate_source=$(uname -n) \
		"$AGENT" migrate_from || bad "migrate_from"
	"$AGENT" monitor || bad "monitor after migration"
	c=$(grep -c '^counter: [0-9]*$' "$t/vm1.log")
	sleep 1
	[ "$(grep -c '^counter: [0-9]*$' "$t/vm1.log")" -gt "$c" ] || bad "the guest stopped counting after migration"
	# And once more over TCP, %n resolved to this node's address.
	OCF_RESKEY_migration_uri="tcp:%n:$((40000 + $$ % 20000))" OCF_RESKEY_CRM_meta_migrate_target=$(uname -n) \
		"$AGENT" migrate_to || bad "migrate_to over tcp"
	OCF_RESKEY_CRM_meta_migrate_target=$(uname -n) "$AGENT" migrate_from || bad "migrate_from over tcp"
	c=$(grep -c '^counter: [0-9]*$' "$t/vm1.log")
	sleep 1
	[ "$(grep -c '^counter: [0-9]*$' "$t/vm1.log")" -gt "$c" ] || bad "the guest stopped counting after the second migration"
	# No line lost or repeated across both moves: the count since the last
	# boot goes up one by one.
	awk '/^counter: start/ { last = 0; next } /^counter: [0-9]+$/ { if ($2 != last + 1) bad = 1; last = $2 }
		END { exit bad }' "$t/vm1.log" || bad "the guest's count skipped or repeated a number"
	# No reboot: the guest's boot line appears once more for the start above only.
	[ "$(grep -c '^counter: start' "$t/vm1.log")" -eq $((n + 1)) ] || bad "the guest rebooted in a migration"
	"$AGENT" stop || bad "stop after migration"
else
	echo "SKIP: migrate_to/migrate_from not exercised: this kestrel has no run --incoming (live migration)"
fi
[ $fail -eq 0 ] && echo "ocf-test: PASS"
exit $fail
