/* Constructors of the board's emulated devices. Each returns a device the
 * machine inserts on a bus; everything a device needs from outside comes in
 * through these parameters (irq lines, vm_ctl, clocks, fds). */
#ifndef KESTREL_DEVICES_H
#define KESTREL_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "kestrel/device.h"

struct bus;

/* 16550A UART. out_fd: where transmitted bytes go (-1: discard). */
struct device *uart_create(const struct irq_line *irq, int out_fd);
/* Feed received bytes (from the input thread); returns bytes accepted (FIFO space). */
size_t uart_receive(struct device *dev, const uint8_t *buf, size_t len);
/* Whether the guest can take more input (FIFO not full). */
int uart_can_receive(struct device *dev);

/* MC146818 CMOS RTC. wall(): seconds since the epoch (host time, or a fake in tests).
 * mem_below_4g / mem_above_4g fill the CMOS memory-size bytes firmware reads. */
struct device *rtc_create(const struct irq_line *irq, time_t (*wall)(void), uint64_t mem_below_4g,
			  uint64_t mem_above_4g);

/* The CMOS bytes the firmware and old OSes read (SeaBIOS src/hw/rtc.h, QEMU
 * pc_cmos_init): memory sizes (0x15-0x18, 0x30-0x31, 0x34-0x35, 0x5b-0x5d),
 * the equipment byte (0x14), the boot order (0x3d, 0x38) and the CPU count
 * (0x5f). They are rewritten at every reset; the guest may change them in
 * between, like any CMOS byte. */
#define RTC_EQUIP_FLOPPY    0x01 /* IBM PC equipment word bit 0: a floppy drive */
#define RTC_EQUIP_FPU	    0x02
#define RTC_EQUIP_PS2_MOUSE 0x04
enum rtc_boot_dev { RTC_BOOT_NONE, RTC_BOOT_FLOPPY, RTC_BOOT_DISK, RTC_BOOT_CDROM, RTC_BOOT_NET };
struct rtc_cmos_board {
	uint64_t mem_below_4g, mem_above_4g;
	uint8_t equipment;
	enum rtc_boot_dev boot[3]; /* first, second, third choice */
	bool floppy_sig_check;	   /* check the boot sector signature on floppies */
	unsigned ncpus;		   /* 1..256 */
};
/* 0, or -EINVAL (nothing changed) for a CPU count or boot device out of range. */
int rtc_set_cmos_board(struct device *dev, const struct rtc_cmos_board *b) WARN_UNUSED;

/* i8042 keyboard controller with a PS/2 keyboard (kbd_irq, ISA IRQ 1) and a
 * PS/2 mouse on its aux port (aux_irq, IRQ 12); A20 and the reset line
 * (command 0xFE -> vm_ctl reset). */
struct device *i8042_create(const struct irq_line *kbd_irq, const struct irq_line *aux_irq,
			    const struct vm_ctl *ctl);
/* Host input, from any thread. A key is a Linux input key code (KEY_* of
 * linux/input-event-codes.h) pressed or released. i8042_keys queues the
 * scancodes of all n events or of none: 0, -EINVAL (a code the keyboard
 * has no key for), -ENOSPC (its buffer is full: the guest is not reading),
 * -EAGAIN (the guest disabled the keyboard), -E2BIG (n > I8042_MAX_KEYS). */
#define I8042_MAX_KEYS 128
struct i8042_key {
	uint16_t code;
	bool down;
};
int i8042_keys(struct device *dev, const struct i8042_key *keys, unsigned n) WARN_UNUSED;
bool i8042_has_key(unsigned code);
/* Relative motion: dx right, dy down, dz wheel notches towards the user;
 * buttons bit 0 left, 1 right, 2 middle. 0, or -EAGAIN while the guest has
 * the mouse's reporting off (the motion is dropped). */
int i8042_mouse(struct device *dev, int dx, int dy, int dz, unsigned buttons) WARN_UNUSED;
/* The keyboard LEDs as the guest last set them: bit 0 Scroll, 1 Num, 2 Caps Lock. */
unsigned i8042_kbd_leds(struct device *dev);

/* ACPI PM1a event/control and PM timer at BOARD_PORT_ACPI_PM; SLP_EN with
 * SLP_TYP S5 -> poweroff. Also the 0xCF9 reset control register (separate region).
 * now_ns(): monotonic clock for the 3.579545 MHz PM timer. */
struct device *acpi_pm_create(const struct irq_line *sci, const struct vm_ctl *ctl,
			      uint64_t (*now_ns)(void));
/* Raise the power-button event (PM1 PWRBTN_STS) so the guest's ACPI shuts down. */
void acpi_pm_power_button(struct device *dev);

/* Debug-exit port: write V -> vm_ctl DEBUG_EXIT with code (V<<1)|1. */
struct device *debug_exit_create(const struct vm_ctl *ctl);

/* QEMU's ISA debug console at BOARD_PORT_DEBUGCON, where SeaBIOS logs: bytes
 * written go to fd (not closed by the device); lines: whole lines with
 * control characters made '?' (for a terminal), else the bytes as written. */
struct device *debugcon_create(int fd, bool lines);

/* Port 0x80 and other write-only sinks that must not count as unhandled. */
struct device *sink_create(const char *name);

/* PCI configuration mechanism #1 and bus 0 with a host bridge at 00:00.0,
 * on the board's buses, RAM and INTx routing (kestrel/pci.h; NULL: none). */
struct pci_board;
struct device *pci_host_create(const struct pci_board *board);

/* The i440FX PAM registers (0x59-0x5F, PAM0-PAM6) and what they map at
 * 0xC0000-0xFFFFF (devices/emulated/i440fx_pam.c). pam_create takes that
 * range over from guest memory's layout and maps it as regs say. rom: the
 * BIOS flash's last rom_len bytes (0 or a multiple of 16 KiB up to 128 KiB,
 * page-aligned, outliving the device), seen at 1 MiB - rom_len where PCI
 * decodes. NULL on a bad argument or when the slots cannot be made. */
#define PAM_NREGS 7
struct guest_mem;
struct device *pam_create(struct guest_mem *gm, const void *rom, size_t rom_len,
			  const uint8_t regs[PAM_NREGS]);
/* Map the segments as the registers say; 0 or the first slot error (the
 * segments that could be mapped are). */
int pam_set(struct device *pam, const uint8_t regs[PAM_NREGS]) WARN_UNUSED;
void pam_get(struct device *pam, uint8_t regs[PAM_NREGS]);
/* Give the host bridge's PAM registers their effect: their power-on (and
 * reset) values become power_on, written to the bridge and mapped now; every
 * guest write to them, a reset and a load re-map. 0 or pam_set's error. */
int pci_host_set_pam(struct device *host, struct device *pam,
		     const uint8_t power_on[PAM_NREGS]) WARN_UNUSED;

#endif
