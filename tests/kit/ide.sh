#!/bin/sh
# The PIIX3 IDE controller through Debian's unmodified ata_piix, sd_mod and
# sr_mod (the kit's /init runs this with kestrel.run=ide after modprobing
# kestrel.modules). Prints what the guest sees; tests/guest-tests.sh asserts
# on these lines and on the image files afterwards. Drives are named by
# channel and device as libata numbers them: p0/p1 the primary master/slave
# (ata1.00/ata1.01), s0/s1 the secondary's (ata2.00/ata2.01).
#   kestrel.ide_drives=p0,p1,s0   the drives to wait for (default p0)
#   kestrel.ide_cdwait=1          then wait for a medium to come into s0 (the
#                                 host's cdrom-change) and to go (cdrom-eject)
# Lines: "ide: bound BDF", "ide: ataN: PATA max .. cmd .. ctl .. bmdma .. irq
# N" (libata's port lines), "ide: D sdX|srX size=SECTORS model=..", "ide: D
# mode=<the transfer mode libata configured (sysfs xfer_mode)>", "ide: read D: <text>" (sector
# 7 of a disk, block 20 of a CD, written by the host), "ide: wrote D" after
# writing KESTREL-LINUX-IDE-D at sector 100 (then fsync), "ide: read back D:
# <text>", "ide: s0 new medium size=SECTORS: <text>", "ide: s0 medium gone",
# "ide: done".
. "${0%/*}/lib.sh" # arg, wait_for
text() { tr -dc 'A-Za-z0-9-' | head -c 40; }

# drive_of D: the block device of drive D (p0 -> ata1 device 0, ...).
drive_of() {
	case "$1" in
	p*) port=ata1 ;;
	s*) port=ata2 ;;
	*) return 1 ;;
	esac
	for b in /sys/block/sd* /sys/block/sr*; do
		[ -e "$b" ] || continue
		p=$(readlink -f "$b")
		case "$p" in */"$port"/host*/target*:0:"${1#?}"/*) echo "${b##*/}"; return 0 ;; esac
	done
	return 1
}

bdf=
if wait_for "[ -n \"\$(ls /sys/bus/pci/drivers/ata_piix 2>/dev/null | grep 0000:)\" ]" 30; then
	bdf=$(ls /sys/bus/pci/drivers/ata_piix | grep 0000: | head -n 1)
	echo "ide: bound $bdf"
else
	echo "ide: ata_piix bound nothing"
fi

# The ports as libata found them: legacy ports, bus-master base, IRQ.
dmesg | grep -E 'ata[12]: PATA ' | sed 's/^\[[^]]*\] */ide: /'
for d in $(arg kestrel.ide_drives p0 | tr ',' ' '); do
	if ! wait_for "drive_of $d >/dev/null" 60; then
		echo "ide: $d did not appear"
		continue
	fi
	dev=$(drive_of "$d")
	wait_for "[ -b /dev/$dev ]" 10
	wait_for "[ \$(cat /sys/block/$dev/size) != 0 ]" 10
	echo "ide: $d $dev size=$(cat /sys/block/$dev/size) model=$(tr -s ' ' _ </sys/block/$dev/device/model)"
	n=${d#?}
	[ "${d%?}" = p ] && a=1 || a=2
	echo "ide: $d mode=$(cat /sys/class/ata_device/dev$a.$n/xfer_mode 2>/dev/null)"

	case "$dev" in
	sr*)
		echo "ide: read $d: $(dd if=/dev/$dev bs=2048 skip=20 count=1 2>/dev/null | text)"
		;;
	sd*)
		echo "ide: read $d: $(dd if=/dev/$dev bs=512 skip=7 count=1 2>/dev/null | text)"
		if printf 'KESTREL-LINUX-IDE-%s' "$(echo "$d" | tr a-z A-Z)" |
			dd of=/dev/$dev bs=512 seek=100 conv=sync,fsync 2>/dev/null; then
			sync
			echo "ide: wrote $d"
		fi
		echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
		echo "ide: read back $d: $(dd if=/dev/$dev bs=512 skip=100 count=1 2>/dev/null | text)"
		;;
	esac
done
# sr re-reads the medium's state when the device is opened (no polling).
cd_block20() { dd if=/dev/$1 bs=2048 skip=20 count=1 2>/dev/null | text; }
if [ "$(arg kestrel.ide_cdwait 0)" = 1 ] && cd=$(drive_of s0); then
	echo "ide: s0 waiting for a medium"
	if wait_for "[ -n \"\$(cd_block20 $cd)\" ]" 120; then
		echo "ide: s0 new medium size=$(cat /sys/block/$cd/size): $(cd_block20 $cd)"
		if wait_for "[ -z \"\$(cd_block20 $cd)\" ]" 120; then
			echo "ide: s0 medium gone"
		else
			echo "ide: s0 medium still there"
		fi
	else
		echo "ide: s0 no medium came"
	fi
fi
echo "ide: done"
