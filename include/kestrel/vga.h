/* Standard VGA with the Bochs VBE extensions, as Bochs and QEMU's "std VGA"
 * (PCI 1234:1111, class 0300): devices/emulated/vga*.c. The machine puts the
 * legacy regions on its buses (below); the PCI function brings BAR 0 (the
 * linear framebuffer, the whole VRAM), BAR 2 (the registers as MMIO, as
 * Linux's bochs-drm uses them) and the option ROM (vgabios-stdvga.bin). The
 * device draws into a struct display (kestrel/display.h) when a consumer
 * asks, from the pages that changed. */
#ifndef KESTREL_VGA_H
#define KESTREL_VGA_H

#include <stddef.h>
#include <stdint.h>

#include "kestrel/device.h"
#include "kestrel/util.h"

struct display;
struct display_hint;

#define VGA_VRAM_MIN	 MiB(1)
#define VGA_VRAM_MAX	 MiB(256)
#define VGA_VRAM_DEFAULT MiB(16)
#define VGA_PAGE_SHIFT	 12

/* The legacy regions, inserted by the machine as (device, region). */
#define VGA_REGION_PORTS  0 /* I/O 0x3B0-0x3DF: misc, SR, GR, CR, AR, DAC, status */
#define VGA_REGION_DISPI  1 /* I/O 0x1CE index, 0x1CF (and 0x1D0) data */
#define VGA_REGION_WINDOW 2 /* MMIO 0xA0000-0xBFFFF */
#define VGA_PORTS_BASE	  0x3b0
#define VGA_PORTS_LEN	  0x30
#define VGA_DISPI_BASE	  0x1ce
#define VGA_DISPI_LEN	  3
#define VGA_WINDOW_BASE	  0xa0000ULL
#define VGA_WINDOW_LEN	  0x20000ULL

/* The framebuffer as guest memory: how BAR 0 reaches the VRAM without an
 * exit per access. The machine implements it with a dirty-logged memory
 * slot; without it (NULL) the device serves BAR 0 as MMIO on the bus. */
struct vga_lfb_ops {
	/* BAR 0 moved from old to now (either may be PCI_BAR_UNMAPPED): map
	 * hva (size bytes, the VRAM) at now, dirty-logged. 0 or -errno (the
	 * framebuffer is then unreachable until the next move; warned). */
	int (*map)(void *opaque, uint64_t old_gpa, uint64_t new_gpa, void *hva, uint64_t size);
	/* The pages the guest wrote through the mapping since the last call,
	 * a bit per 4 KiB page of the VRAM, into bitmap (nbits bits, 64-bit
	 * words), and forget them. Returns pages set, or -errno. */
	long (*fetch_dirty)(void *opaque, uint64_t *bitmap, uint64_t nbits);
	void *opaque;
};

struct vga_opts {
	uint64_t vram_size; /* power of two, VGA_VRAM_MIN..MAX */
	const uint8_t *rom; /* option ROM image (copied); NULL: none */
	size_t rom_len;
	const struct vga_lfb_ops *lfb; /* NULL: BAR 0 as MMIO */
	uint64_t (*now_ns)(void);      /* blink clock; NULL: CLOCK_MONOTONIC */
};

/* Create the device, put its PCI function at slot (-1: the first free) of
 * pci_host (NULL: no bus, for tests) and make it display's source (NULL:
 * none). 0 or -errno; *out is the device for the machine to wire. */
int vga_create(const struct vga_opts *o, struct device *pci_host, int slot, struct display *display,
	       struct device **out) WARN_UNUSED;

/* Draw what changed into d (the display's lock held: this is the source's
 * refresh, exposed for tests). lfb_dirty: pages of the VRAM the guest wrote
 * through the framebuffer mapping (a bit per 4 KiB page, nbits bits), or
 * NULL; the device adds the pages it wrote itself (window, MMIO). */
void vga_update(struct device *dev, struct display *d, const uint64_t *lfb_dirty, uint64_t nbits,
		struct display_hint *hint);

/* The VRAM, for tests and the machine's memory slot. */
uint8_t *vga_vram(struct device *dev, uint64_t *size);

#endif
