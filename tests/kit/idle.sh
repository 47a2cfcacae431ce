#!/bin/sh
# Keeps the guest up for tests that drive it from the host (kestrel ctl):
# prints "idle: N" every second for at most kestrel.idle=SECONDS (default
# 300), then returns and /init powers off. With acpid running (see /init),
# the ACPI power button ends it sooner through the acpid handler.
limit=300
for w in $(cat /proc/cmdline); do
	case "$w" in kestrel.idle=*) limit="${w#*=}" ;; esac
done
case "$limit" in '' | *[!0-9]*) limit=300 ;; esac
n=0
echo "idle: start"
while [ "$n" -lt "$limit" ]; do
	sleep 1
	n=$((n + 1))
	echo "idle: $n"
done
echo "idle: done"
