/* The PC board kestrel emulates, wired in one place. */
#ifndef KESTREL_MACHINE_H
#define KESTREL_MACHINE_H

#include <stdint.h>

#include "kestrel/config.h"
#include "kestrel/pci.h"
#include "kestrel/vm.h"

struct machine {
	struct vm vm;
	const struct vm_config *cfg;
	struct device *uart, *rtc, *i8042, *pm, *debug_exit, *post, *pci;
	struct device *bios_sink;   /* guest writes to the read-only BIOS segment */
	struct device *vscsi;    /* virtio-scsi controller, when there are SCSI disks */
	struct device *vnet[CONFIG_MAX_NETS];   /* NICs, one per --net, "net0".. (cfg->nets[i].model) */
	unsigned nvnet;
	struct irq_line irq_com1, irq_rtc, irq_kbd, irq_sci;
	struct pci_intx_routing pci_intx;   /* INTx wiring: the PCI host and the _PRT */
	int serial_out_fd;       /* -1: discard */
	bool own_serial_out;
	uint8_t *kernel, *initrd;
	size_t kernel_len, initrd_len;
};

/* Everything up to (not including) starting the vCPUs; one error line in err. */
int machine_create(struct machine *m, const struct vm_config *cfg, char *err, size_t errlen) WARN_UNUSED;
void machine_destroy(struct machine *m);
/* Reload the kernel, RAM and device state for a guest reset (--on-reboot restart). */

#endif
