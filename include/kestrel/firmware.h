/* Firmware boot (src/boot/firmware.c): the image, mapped read-only below
 * 4 GiB and its last 128 KiB through the chipset below 1 MiB; the boot
 * devices the firmware is told about (fw_cfg "bootorder", CMOS).
 *
 * How the machine boots firmware (src/machine.c, machine_setup_firmware):
 * the image in a read-only slot ending at 4 GiB; the i440FX PAM registers at
 * their power-on value 0, so 0xE0000-0xFFFFF reads the image's tail until
 * the firmware shadows itself; fw_cfg on ports 0x510/0x514 with the board
 * (CPUs, RAM, etc/e820, ACPI tables through the table loader, boot order,
 * etc/sercon-port for a serial console); the CMOS bytes firmware reads; the
 * boot vCPU left in KVM's reset state, at the reset vector. A triple fault
 * resets the machine as on a PC, and every reset (0xCF9, the keyboard
 * controller, a triple fault) builds the VM again, so the firmware runs
 * again from the reset vector with RAM zeroed and PAM at 0. */
#ifndef KESTREL_FIRMWARE_H
#define KESTREL_FIRMWARE_H

#include <stddef.h>
#include <stdint.h>

#include "kestrel/config.h"
#include "kestrel/devices.h"
#include "kestrel/fw_cfg.h"

/* What of the image the chipset shows below 1 MiB: its last 128 KiB (or
 * all of a smaller one), at 0xE0000 (QEMU's isa-bios alias). */
#define FW_ISA_ALIAS_MAX 0x20000ULL

struct fw_image {
	uint8_t *data; /* page-aligned, read-only to the worker too */
	size_t size;
};

/* Read the file into memory of the worker's own (a copy: a file changed
 * later changes nothing the guest sees) and check it as config did (the
 * file may have changed since). 0 or -errno with one line in err. */
int fw_image_load(const char *path, struct fw_image *img, char *err, size_t errlen) WARN_UNUSED;
void fw_image_free(struct fw_image *img);

/* Where the board has the boot-capable controllers (PCI slot, function). */
struct fw_boot_board {
	int scsi_slot;	      /* virtio-scsi controller, -1: none */
	int ide_slot, ide_fn; /* PIIX IDE, -1: none */
	int net_slot;	      /* the first NIC, virtio-net or 21140 (the others follow), -1: none */
};

/* The bootorder list for --boot: for each kind in its order (default disk,
 * then cdrom), the drives of that kind in a fixed order (IDE units 0-3,
 * then SCSI targets by number; NICs by slot). At most max entries; returns
 * how many. */
unsigned fw_boot_list(const struct vm_config *cfg, const struct fw_boot_board *b,
		      struct fw_boot_dev *out, unsigned max);
/* The CMOS boot bytes' three choices for --boot (QEMU's -boot order). */
void fw_boot_cmos(const struct config_boot *boot, enum rtc_boot_dev out[3]);

#endif
