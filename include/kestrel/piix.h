/* The PIIX3 southbridge's PCI functions (Intel 82371SB PCI ISA IDE Xcelerator
 * datasheet): the PCI-to-ISA bridge at 00:01.0 (8086:7000,
 * devices/emulated/piix3.c) and the IDE controller at 00:01.1 (8086:7010,
 * devices/emulated/piix_ide.c). Each is a struct device of its own holding
 * one PCI function; the IDE channels behind the controller are the channel
 * devices of kestrel/ide.h, which the machine creates and registers apart.
 *
 * Interrupt wiring of the board with a PIIX3 (src/machine.c):
 * - PCI INTx: four links, PIRQA-D; slot s pin p (0 = INTA#) is on PIRQ
 *   (s - 1 + p) mod 4, the rotation SeaBIOS's piix_pci_slot_get_irq and
 *   QEMU's pc_piix assume. Each PIRQ reaches IOAPIC input gsi_base + n
 *   (16-19) directly, as on PIIX3 boards with an I/O APIC; that is what the
 *   ACPI _PRT names, so an OS in APIC mode never depends on the routers.
 * - The route registers PIRQRC[A:D] (0x60-0x63) are the PIC-mode path: a
 *   PIRQ whose register is enabled (bit 7 clear) and names a valid ISA IRQ
 *   (3-7, 9-12, 14, 15) also drives that ISA IRQ, the OR of every PIRQ
 *   routed there (level, as the firmware then sets in the ELCR). Power-on
 *   value 80h: disabled. Firmware (SeaBIOS programs 10/10/11/11) and legacy
 *   OSes use them; Linux in APIC mode ignores them.
 * - The IDE channels in compatibility mode use ISA IRQ 14 and 15 (edge), wired
 *   by the machine; the IDE function has no INTx pin.
 *
 * Locking: config space is reached under the PCI host's lock (kestrel/pci.h).
 * The PIRQ levels and ISA outputs have a leaf lock of their own, taken from
 * the PCI bus's INTx path (any thread) and from config writes. */
#ifndef KESTREL_PIIX_H
#define KESTREL_PIIX_H

#include <stdbool.h>
#include <stdint.h>
#include "kestrel/device.h"
#include "kestrel/pci.h"

struct bus;

#define PIIX_SLOT    1
#define PIIX3_FN_ISA 0
#define PIIX3_FN_IDE 1
#define PIIX3_PIRQS  4

/* PCI-to-ISA bridge. irq_set/irq_opaque: the board's interrupt lines (GSI
 * numbers: the ISA IRQs and the PIRQ inputs gsi_base..gsi_base + 3). */
struct piix3_conf {
	void (*irq_set)(void *opaque, uint32_t gsi, int level);
	void *irq_opaque;
	uint32_t pirq_gsi_base;
};
struct device *piix3_create(const struct piix3_conf *c);
struct pci_dev *piix3_pci(struct device *dev);
/* The board's PCI INTx output (struct pci_board irq_set, opaque = the
 * PIIX3 device): the GSI as asked, and through the route registers the ISA
 * IRQ of a PIRQ input. Any thread. */
void piix3_intx_set(void *piix3, uint32_t gsi, int level);
/* The INTx routing table of a PIIX3 board (see above), links on GSIs
 * gsi_base..gsi_base + 3. */
void piix3_intx_routing(struct pci_intx_routing *r, uint32_t gsi_base);

/* IDE controller (bus-master IDE, both channels in compatibility mode:
 * 0x1F0/0x3F6 and 0x170/0x376, class 0101 prog-if 80h). ch[0]/ch[1]: the
 * primary and secondary channel devices; the controller places their
 * command and control blocks on pio while they decode (PCICMD I/O Space and
 * the channel's IDETIM IDE Decode Enable) and their bus-master registers at
 * BMIBA (BAR 4, 16 bytes: primary at +0, secondary at +8), and gives them
 * bus-master DMA through the PCI core (pci_dma_*: Bus Master Enable,
 * guest RAM only, dirty marking). It does not own the channels.
 * decode_on: power on with both IDE Decode Enable bits set, as firmware
 * leaves them; for a direct kernel boot, which has no firmware to do it
 * (Linux's ata_piix skips a channel whose bit is clear). */
struct piix_ide_conf {
	struct bus *pio;
	struct device *ch[2];
	bool decode_on;
};
struct device *piix_ide_create(const struct piix_ide_conf *c);
struct pci_dev *piix_ide_pci(struct device *dev);

#endif
