#!/bin/sh
# Watches the first Ethernet interface's carrier for the control socket's
# net-link test (kestrel ctl NAME net-link up|down): brings the interface up,
# then prints "link: IF carrier=0|1" at start and on every change, for at most
# kestrel.link_secs=N seconds (default 90), polling every 0.2 s.
secs=90
for w in $(cat /proc/cmdline); do
	case "$w" in kestrel.link_secs=*) secs="${w#*=}" ;; esac
done
case "$secs" in '' | *[!0-9]*) secs=90 ;; esac
eth=
n=0
while [ -z "$eth" ] && [ $n -lt 100 ]; do
	for d in /sys/class/net/*; do
		[ -e "$d/device" ] && { eth=${d##*/}; break; }
	done
	[ -n "$eth" ] || sleep 0.2
	n=$((n + 1))
done
if [ -z "$eth" ]; then
	echo "link: no Ethernet interface"
	exit 1
fi
ip link set "$eth" up
last=
n=$((secs * 5))
while [ $n -gt 0 ]; do
	c=$(cat "/sys/class/net/$eth/carrier" 2>/dev/null || echo "?")
	if [ "$c" != "$last" ]; then
		echo "link: $eth carrier=$c"
		last=$c
	fi
	sleep 0.2
	n=$((n - 1))
done
echo "link: done"
