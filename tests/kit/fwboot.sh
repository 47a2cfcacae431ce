#!/bin/sh
# Firmware boot (issue 11): what Debian's kernel sees after SeaBIOS and a
# boot loader started it from a disk (the kit's /init runs this with
# kestrel.run=fwboot after modprobing ata_piix, virtio_scsi and sd_mod; the
# loader's configuration on the disk says so). Lines:
#   "fwboot: loader BOOT_IMAGE=NAME"  the boot loader's mark on the command line
#   "fwboot: acpi rsdp 0xADDR"        where the firmware put the RSDP (the
#                                     table loader's F segment zone)
#   "fwboot: acpi dsdt OEM"           the DSDT's OEM id: kestrel's tables
#                                     reached the OS through the firmware
#   "fwboot: disk sdX size=SECTORS"   the disk it came from (ata_piix or
#                                     virtio_scsi)
#   "fwboot: reboot once"             the disk's last sector held REBOOT-ONCE:
#                                     it now holds REBOOTED and the guest
#                                     reboots (through the firmware again)
#   "fwboot: after a reboot"          the next boot found REBOOTED there
#   "fwboot: vgacon ready NAME"       the last sector held VGACON: the kernel's
#                                     last messages and KESTREL-VGACON-MARKER
#                                     are on tty1, whose console driver is
#                                     NAME (vgacon's is "VGA+"); the host has
#                                     60 s to look
#   "fwboot: done"
. "${0%/*}/lib.sh" # wait_for

for w in $(cat /proc/cmdline); do
	case "$w" in BOOT_IMAGE=*) echo "fwboot: loader $w" ;; esac
done
rsdp=$(dmesg | sed -n 's/.*ACPI: RSDP \(0x[0-9A-Fa-f]*\).*/\1/p' | head -n 1)
echo "fwboot: acpi rsdp $(echo "$rsdp" | tr 'A-F' 'a-f')"
oem=$(dmesg | sed -n 's/.*ACPI: DSDT 0x[0-9A-Fa-f]* [0-9A-Fa-f]* (v[0-9]* \([A-Za-z0-9_]*\) .*/\1/p' | head -n 1)
echo "fwboot: acpi dsdt $oem"

disk=
if wait_for "ls /sys/block | grep -q '^sd'" 60; then
	disk=$(ls /sys/block | grep '^sd' | head -n 1)
	wait_for "[ -b /dev/$disk ]" 10
	size=$(cat "/sys/block/$disk/size")
	echo "fwboot: disk $disk size=$size"
else
	echo "fwboot: no disk"
fi

if [ -n "$disk" ]; then
	last=$((size - 1))
	mark=$(dd if="/dev/$disk" bs=512 skip="$last" count=1 2>/dev/null | tr -dc 'A-Z-' | head -c 16)
	case "$mark" in
	REBOOT-ONCE)
		printf 'REBOOTED   ' | dd of="/dev/$disk" bs=512 seek="$last" conv=notrunc,fsync 2>/dev/null
		echo "fwboot: reboot once"
		sync
		reboot -f
		sleep 30
		;;
	REBOOTED*) echo "fwboot: after a reboot" ;;
	VGACON*)
		{ dmesg | tail -n 20; echo "KESTREL-VGACON-MARKER"; } >/dev/tty1
		con=
		for v in /sys/class/vtconsole/vtcon*; do
			[ "$(cat "$v/bind" 2>/dev/null)" = 1 ] && con=$(cut -c5- "$v/name")
		done
		echo "fwboot: vgacon ready $con"
		sleep 60
		;;
	esac
fi
echo "fwboot: done"
