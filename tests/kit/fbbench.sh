#!/bin/sh
# The guest of scripts/bench/vga.sh (kestrel.modules=bochs): a framebuffer
# console that stays still, then framebuffer writes the host can time.
#   "fbw: ready WxH"  fbcon is up, its cursor hidden; the screen does not
#                     change until a line is typed on tty1 (the host measures
#                     an idle guest at a static screen meanwhile)
#   "fbw: N"          printed just before the N-th write of a 64 KiB block to
#                     /dev/fb0 (kestrel.fbw_count=20 of them, 300 ms apart)
#   "fbw: done"       then idle again for kestrel.fbw_idle seconds (600)
. "${0%/*}/lib.sh"
if ! wait_for '[ -e /dev/fb0 ]' 60; then
	echo "fbw: no /dev/fb0"
	exit 1
fi
echo 0 >/sys/class/graphics/fbcon/cursor_blink 2>/dev/null
printf '\033[2J\033[Hkestrel VGA benchmark\n' >/dev/tty1
exec 3</dev/tty1
sleep 1
echo "fbw: ready $(tr ',' x </sys/class/graphics/fb0/virtual_size)"
read -r _ <&3
n=$(arg kestrel.fbw_count 20)
i=1
while [ "$i" -le "$n" ]; do
	echo "fbw: $i"
	# A block of one colour, changing with i: a real change every time.
	head -c 65536 /dev/zero | tr '\0' "\\$(printf %o $((i * 37 % 255 + 1)))" >/dev/fb0
	sleep 0.3
	i=$((i + 1))
done
echo "fbw: done"
sleep "$(arg kestrel.fbw_idle 600)"
