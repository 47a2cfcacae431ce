/* The PC board kestrel emulates, wired in one place. */
#ifndef KESTREL_MACHINE_H
#define KESTREL_MACHINE_H

#include <stdint.h>

#include "kestrel/config.h"
#include "kestrel/device.h"
#include "kestrel/firmware.h"
#include "kestrel/pci.h"
#include "kestrel/vm.h"

struct machine {
	struct vm vm;
	const struct vm_config *cfg;
	/* Every device, in creation order, by stable id (docs/devices.md):
	 * "com1" "rtc" "i8042" "pm" "debug-exit" "post" "pci-host", then
	 * "piix3" "piix3-ide" "ide0" "ide1" (when there are IDE drives),
	 * "scsi0" (when there are SCSI disks or --scsi-controller) and "net0"..
	 * (one per --net), "pam"; booting firmware, "fw-cfg" and, with
	 * --firmware-log, "debugcon". Destroyed in reverse order. */
	struct dev_list devs;
	/* With --vga std: device "vga", its framebuffer's memory slot (-1:
	 * none; atomic) and what it draws, for screendumps (NULL without). */
	int vga_slot;
	struct display *display;
	/* The PIIX3 between its creation (before the PCI host: it is the
	 * host's INTx output) and its registration (after the host, so that
	 * it is destroyed first); NULL after. */
	struct device *piix3;
	struct irq_line irq_com1, irq_rtc, irq_kbd, irq_mouse, irq_sci;
	struct pci_intx_routing pci_intx; /* INTx wiring: the PCI host and the _PRT */
	int serial_out_fd;		  /* -1: discard */
	bool own_serial_out;
	uint8_t *kernel, *initrd;
	size_t kernel_len, initrd_len;
	struct fw_image fw; /* firmware boot (no --kernel): the image */
};

/* Everything up to (not including) starting the vCPUs; one error line in err. */
int machine_create(struct machine *m, const struct vm_config *cfg, char *err,
		   size_t errlen) WARN_UNUSED;
/* The same machine without booting it: no kernel loaded, no firmware tables
 * written, vCPUs at their reset state: for a saved state to be loaded into
 * (migrate/restore.c), which brings RAM, registers and device state. */
int machine_create_restored(struct machine *m, const struct vm_config *cfg, char *err,
			    size_t errlen) WARN_UNUSED;
void machine_destroy(struct machine *m);

/* The device registered under id ("scsi0", "net1", ...), or NULL. */
struct device *machine_find_device(struct machine *m, const char *id);
/* Every device to its power-on state, in creation order (a guest reset of
 * the devices; RAM and vCPUs are the caller's). Call with the vCPUs paused
 * or stopped. */
void machine_reset(struct machine *m);
/* Pause the vCPUs (vm_pause), then quiesce every device in reverse order:
 * afterwards nothing touches guest memory or a queue and every request the
 * guest queued and the devices took is complete, so device state and RAM
 * can be saved consistently. 0, or vm_pause's error (nothing quiesced). */
int machine_quiesce(struct machine *m, uint64_t timeout_ms) WARN_UNUSED;
/* Only the devices (a save of a VM the user had paused leaves it paused). */
int machine_resume_devices(struct machine *m) WARN_UNUSED;
/* Let go of the disks' image locks, keeping them open (a live migration's
 * hand-over), and take them back when the target did not start. 0 or the
 * first error. */
int machine_disks_release(struct machine *m) WARN_UNUSED;
int machine_disks_retake(struct machine *m) WARN_UNUSED;
/* A migration's target, whose disks were opened under blk_defer_locks:
 * every image's lock, and its metadata read again (blk_take_over). */
int machine_disks_take_over(struct machine *m, char *err, size_t errlen) WARN_UNUSED;
/* Make every disk's acknowledged writes durable (blk flush), for a save.
 * Call quiesced. 0 or the first error. */
int machine_flush_disks(struct machine *m) WARN_UNUSED;
/* Resume the devices in order, then the vCPUs. The first device error is
 * returned; everything is resumed regardless. */
int machine_resume(struct machine *m) WARN_UNUSED;
/* Every device's state (dev_list_save), and back (dev_list_load: into a
 * fresh, quiesced machine of the same configuration). */
int machine_save_devices(struct machine *m, struct state_buf *out) WARN_UNUSED;
int machine_load_devices(struct machine *m, struct state_buf *in) WARN_UNUSED;

#endif
