/* PCI configuration mechanism #1 (PCI Local Bus 3.0 section 3.2.2.3.2):
 * CONFIG_ADDRESS at 0xCF8 selects bus/device/function/dword, CONFIG_DATA at
 * 0xCFC-0xCFF accesses the selected dword, sub-dword at 0xCFC + (off & 3). */
#include "guest.h"

uint32_t pci_conf_addr(unsigned bus, unsigned dev, unsigned fn, unsigned off)
{
	return 0x80000000u | (bus & 0xff) << 16 | (dev & 0x1f) << 11 | (fn & 7) << 8 | (off & 0xfc);
}

static void select(unsigned bus, unsigned dev, unsigned fn, unsigned off)
{
	outl(BOARD_PORT_PCI_ADDR, pci_conf_addr(bus, dev, fn, off));
}

uint32_t pci_conf_read32(unsigned bus, unsigned dev, unsigned fn, unsigned off)
{
	select(bus, dev, fn, off);
	return inl(BOARD_PORT_PCI_DATA);
}

uint16_t pci_conf_read16(unsigned bus, unsigned dev, unsigned fn, unsigned off)
{
	select(bus, dev, fn, off);
	return inw(BOARD_PORT_PCI_DATA + (off & 2));
}

uint8_t pci_conf_read8(unsigned bus, unsigned dev, unsigned fn, unsigned off)
{
	select(bus, dev, fn, off);
	return inb(BOARD_PORT_PCI_DATA + (off & 3));
}

void pci_conf_write32(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint32_t v)
{
	select(bus, dev, fn, off);
	outl(BOARD_PORT_PCI_DATA, v);
}

void pci_conf_write16(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint16_t v)
{
	select(bus, dev, fn, off);
	outw(BOARD_PORT_PCI_DATA + (off & 2), v);
}

void pci_conf_write8(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint8_t v)
{
	select(bus, dev, fn, off);
	outb(BOARD_PORT_PCI_DATA + (off & 3), v);
}
