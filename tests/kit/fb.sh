#!/bin/sh
# fb.sh: Linux's framebuffer console on the std VGA (--vga std, with
# kestrel.modules=bochs): bochs-drm binds 1234:1111, fbcon takes the console.
# Prints the framebuffer's name and geometry, puts the kernel's last messages
# and a marker line on tty1, then every second the md5 of the visible part
# of /dev/fb0 (what the guest drew), so the host can compare a screendump
# with it (tests/guest-tests.sh linux-bochs-fbcon). kestrel.fb_secs=N (120):
# how long it keeps printing.
. "${0%/*}/lib.sh"

if ! wait_for '[ -e /dev/fb0 ]' 30; then
	echo "fb: no /dev/fb0"
	exit 1
fi
fb=/sys/class/graphics/fb0
size=$(cat "$fb/virtual_size")
stride=$(cat "$fb/stride")
echo "fb: name $(cat "$fb/name")"
echo "fb: size $size stride $stride bpp $(cat "$fb/bits_per_pixel")"
w=${size%,*} h=${size#*,}
{ dmesg | tail -n 30; echo "KESTREL-FBCON-MARKER ${w}x${h}"; } >/dev/tty1
n=$(arg kestrel.fb_secs 120)
while [ "$n" -gt 0 ]; do
	sleep 1
	echo "fb: md5 $(head -c $((stride * h)) /dev/fb0 | md5sum | cut -d' ' -f1)"
	n=$((n - 1))
done
