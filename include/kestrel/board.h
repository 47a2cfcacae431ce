/* The board: fixed addresses, ports and interrupt lines every part agrees on. */
#ifndef KESTREL_BOARD_H
#define KESTREL_BOARD_H

/* ISA interrupt lines (GSI = ISA IRQ through the IOAPIC, IRQ0 overridden to GSI 2). */
#define BOARD_IRQ_COM1		4
#define BOARD_IRQ_RTC		8
#define BOARD_IRQ_SCI		9
#define BOARD_IRQ_KBD		1
#define BOARD_IRQ_MOUSE		12
#define BOARD_IOAPIC_PINS	24
/* PCI INTx: the pins of each slot rotate over eight links, link i on GSI
 * 16 + i, the IOAPIC inputs above the ISA lines (pci_intx_swizzle). */
#define BOARD_PCI_INTX_LINKS	8
#define BOARD_PCI_INTX_GSI_BASE 16

/* Port I/O */
#define BOARD_PORT_COM1	      0x3f8
#define BOARD_PORT_I8042_DATA 0x60
#define BOARD_PORT_I8042_CMD  0x64
#define BOARD_PORT_RTC	      0x70 /* 0x70 index, 0x71 data */
#define BOARD_PORT_POST	      0x80
#define BOARD_PORT_DEBUG_EXIT 0xf4  /* QEMU isa-debug-exit compatible: write V -> exit (V<<1)|1 */
#define BOARD_PORT_DEBUGCON   0x402 /* QEMU isa-debugcon where SeaBIOS logs (--firmware-log) */
#define BOARD_PORT_ACPI_PM    0x600 /* PM1a_EVT 0x600 (4), PM1a_CNT 0x604 (2), PM_TMR 0x608 (4) */
#define BOARD_PORT_PM1A_EVT   0x600
#define BOARD_PORT_PM1A_CNT   0x604
#define BOARD_PORT_PM_TMR     0x608
#define BOARD_PORT_RESET      0xcf9 /* FADT RESET_REG, value 0x06 */
#define BOARD_PORT_PCI_ADDR   0xcf8
#define BOARD_PORT_PCI_DATA   0xcfc
#define BOARD_ACPI_S5_TYP     0 /* SLP_TYP written for S5 (as QEMU's PIIX4 DSDT) */

/* MMIO */
#define BOARD_IOAPIC_BASE      0xfec00000ULL
#define BOARD_LAPIC_BASE       0xfee00000ULL
#define BOARD_PCI_MMIO_BASE    0xc0000000ULL /* 32-bit BAR window: hole start .. IOAPIC */
#define BOARD_PCI_MMIO_END     0xfec00000ULL
/* Pages KVM needs for its real-mode/TSS tricks on Intel (KVM_SET_IDENTITY_MAP_ADDR,
 * KVM_SET_TSS_ADDR: one page, then three): in the PCI hole below the firmware,
 * never RAM, as QEMU and Firecracker place them; firmware is told they are
 * reserved (fw_cfg etc/e820). */
#define BOARD_KVM_IDENTITY_MAP 0xfeffc000ULL
#define BOARD_KVM_TSS	       0xfeffd000ULL
#define BOARD_KVM_PRIVATE_SIZE 0x4000ULL
/* The firmware image (--firmware) ends at 4 GiB, at most 16 MiB long, so it
 * starts above the IOAPIC, HPET, LAPIC and KVM's pages. */
#define BOARD_FIRMWARE_END     0x100000000ULL
#define BOARD_FIRMWARE_MAX     0x1000000ULL

/* Below 1 MiB, as on the PC/AT: the legacy VGA window is MMIO (its device
 * traps it; a hole in guest RAM), and the system BIOS segment is read-only
 * RAM, as firmware leaves it after POST (i440FX PAM0). */
#define BOARD_VGA_WINDOW       0xa0000ULL
#define BOARD_VGA_WINDOW_END   0xc0000ULL
#define BOARD_BIOS_SEGMENT     0xf0000ULL
#define BOARD_BIOS_SEGMENT_END 0x100000ULL

/* Low memory used by the loaders and firmware tables. */
#define BOARD_GDT_ADDR	   0x500
#define BOARD_BOOT_PARAMS  0x7000 /* zero page / PVH start_info / multiboot info */
#define BOARD_CMDLINE_ADDR 0x20000
#define BOARD_CMDLINE_MAX  0x10000
#define BOARD_PML4_ADDR	   0x9000 /* 0x9000 PML4, 0xa000 PDPT, 0xb000.. PDs (4 GiB identity map) */
#define BOARD_EBDA_START   0x9fc00
#define BOARD_ACPI_BASE	   0xe0000 /* RSDP then tables, inside the reserved BIOS area */
#define BOARD_ACPI_SIZE	   0x20000
#define BOARD_KERNEL_ADDR  0x100000
#endif
