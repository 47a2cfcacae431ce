#!/bin/sh
# The i8042's PS/2 keyboard and mouse as Debian's kernel sees them, driven
# from the host (kestrel ctl send-key / mouse-move, or a VNC client); needs
# kestrel.modules=evdev,psmouse. Each step prints "input-test: ready STEP"
# when it listens, then what arrived:
#   fbcon  waits for the framebuffer console (kestrel.modules=bochs), turns its
#          cursor blink off and writes a line on it, so that the picture stays
#          still: "input-test: ready fbcon W,H"
#   tty    a line typed on the console's keyboard (tty1), run as a command:
#          "input-test: tty1 ran 'LINE': OUTPUT"
#   keys   EV_KEY events of the keyboard (evdev): "input-test: key CODE VALUE"
#   mouse  EV_KEY/EV_REL events of the mouse (evdev), "input-test: rel AXIS N",
#          and the first packet of /dev/input/mice: "input-test: mice B0 DX DY"
#   cad    waits for Ctrl-Alt-Del, which reboots the kernel at once
# kestrel.input_steps=tty,keys,mouse,cad (default: all, in this order), one
# after the other; each waits at most kestrel.input_secs (default 120) for the
# host. tty comes first: the VT keeps what was typed before (the keys step's
# keys too) and would run it as part of the line.
. "${0%/*}/lib.sh"
secs=$(arg kestrel.input_secs 120)
steps=$(arg kestrel.input_steps tty,keys,mouse,cad | tr ',' ' ')
dmesg | grep -E "i8042|serio|psmouse|atkbd" | sed 's/^/input-test: dmesg: /'

# dev_named PATTERN: the /dev/input/eventN whose device name matches.
dev_named() {
	for e in /sys/class/input/event*; do
		[ -e "$e/device/name" ] || continue
		if grep -Eq "$1" "$e/device/name"; then
			echo "/dev/input/${e##*/}"
			return 0
		fi
	done
	return 1
}
# events FILE: the EV_KEY (1) and EV_REL (2) events in a capture of 24-byte
# struct input_event records (8 shorts of time, type, code, value).
events() {
	od -An -td2 -w24 -v "$1" | awk '$9 == 1 { print "key", $10, $11 } $9 == 2 { print "rel", $10, $11 }'
}
# capture DEV FILE: record DEV's events into FILE in the background ($cap).
capture() {
	: >"$2"
	dd if="$1" of="$2" bs=24 2>/dev/null &
	cap=$!
}
# report FILE COUNT: wait for COUNT events, print them.
report() {
	wait_for "[ \$(events $1 | wc -l) -ge $2 ]" "$secs" || echo "input-test: only $(events "$1" | wc -l) of $2 events"
	events "$1" | sed 's/^/input-test: /'
}

wait_for 'kbd=$(dev_named "AT .*keyboard")' 30 || echo "input-test: no keyboard"
wait_for 'mouse=$(dev_named "PS/2")' 30 || echo "input-test: no PS/2 mouse"
echo "input-test: keyboard $kbd $(cat /sys/class/input/${kbd##*/}/device/name 2>/dev/null)"
echo "input-test: mouse $mouse $(cat /sys/class/input/${mouse##*/}/device/name 2>/dev/null)"

for step in $steps; do
	case "$step" in
	fbcon)
		wait_for '[ -e /sys/class/graphics/fbcon/cursor_blink ] && [ -e /dev/fb0 ]' 60 ||
			echo "input-test: no framebuffer console"
		echo 0 >/sys/class/graphics/fbcon/cursor_blink
		printf '\033[2J\033[Hkestrel input test: the keyboard types below\n' >/dev/tty1
		sleep 1
		echo "input-test: ready fbcon $(cat /sys/class/graphics/fb0/virtual_size 2>/dev/null)"
		;;
	keys)
		capture "$kbd" /tmp/kbd.ev
		sleep 0.5
		echo "input-test: ready keys"
		report /tmp/kbd.ev 6
		kill $cap
		;;
	mouse)
		capture "$mouse" /tmp/mouse.ev
		mcap=$cap
		dd if=/dev/input/mice of=/tmp/mice bs=3 count=1 2>/dev/null &
		sleep 0.5
		echo "input-test: ready mouse"
		report /tmp/mouse.ev 5
		wait_for '[ -s /tmp/mice ]' 10
		echo "input-test: mice $(od -An -tu1 /tmp/mice)"
		kill $mcap
		;;
	tty)
		# Keys typed while nobody has the VT open are dropped: open it first.
		exec 3</dev/tty1
		echo "input-test: ready tty"
		if read -t "$secs" -r line <&3; then
			echo "input-test: tty1 ran '$line': $(sh -c "$line" 2>&1)"
		else
			echo "input-test: nothing typed on tty1"
		fi
		exec 3<&-
		;;
	cad)
		echo "input-test: ready cad"
		sleep "$secs"
		echo "input-test: Ctrl-Alt-Del did not reboot"
		;;
	esac
done
echo "input-test: done"
