/* What vga.c (registers, window), vga_vbe.c (Bochs DISPI, BAR 2, the
 * framebuffer BAR), vga_render.c (drawing) and vga_state.c (save/load) share.
 * Register names follow IBM's VGA reference as Linux's <video/vga.h> spells
 * them; FreeVGA ("VGA/SVGA Video Programming", osdever.net/FreeVGA) describes
 * each one. */
#ifndef KESTREL_VGA_PRIV_H
#define KESTREL_VGA_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "kestrel/display.h"
#include "kestrel/pci.h"
#include "kestrel/vga.h"

/* Port addresses. */
#define VGA_ATT_W   0x3c0 /* attribute index/data (flip-flop) */
#define VGA_ATT_R   0x3c1
#define VGA_MIS_W   0x3c2 /* write: misc output; read: input status 0 */
#define VGA_SEQ_I   0x3c4
#define VGA_SEQ_D   0x3c5
#define VGA_PEL_MSK 0x3c6
#define VGA_PEL_IR  0x3c7 /* write: DAC read index; read: DAC state */
#define VGA_PEL_IW  0x3c8
#define VGA_PEL_D   0x3c9
#define VGA_FTC_R   0x3ca /* feature control, read */
#define VGA_MIS_R   0x3cc
#define VGA_GFX_I   0x3ce
#define VGA_GFX_D   0x3cf
#define VGA_CRT_IM  0x3b4 /* CRTC, mono addressing */
#define VGA_CRT_DM  0x3b5
#define VGA_IS1_RM  0x3ba /* input status 1 / feature control write, mono */
#define VGA_CRT_IC  0x3d4 /* CRTC, colour addressing */
#define VGA_CRT_DC  0x3d5
#define VGA_IS1_RC  0x3da

#define VGA_MIS_COLOR 0x01 /* I/O address select: CRTC at 3Dx */
#define VGA_IS1_DE    0x01 /* display disabled (in blanking) */
#define VGA_IS1_VR    0x08 /* vertical retrace */

/* Sequencer. */
#define VGA_SEQ_RESET	      0
#define VGA_SEQ_CLOCK_MODE    1
#define VGA_SEQ_PLANE_WRITE   2
#define VGA_SEQ_CHARACTER_MAP 3
#define VGA_SEQ_MEMORY_MODE   4
#define VGA_SEQ_NUM	      5
#define VGA_SR01_8DOTS	      0x01
#define VGA_SR01_DOT_HALF     0x08 /* dot clock / 2: pixels twice as wide */
#define VGA_SR01_SCREEN_OFF   0x20
#define VGA_SR04_CHN_4M	      0x08

/* Graphics controller. */
#define VGA_GFX_SR_VALUE      0
#define VGA_GFX_SR_ENABLE     1
#define VGA_GFX_COMPARE_VALUE 2
#define VGA_GFX_DATA_ROTATE   3
#define VGA_GFX_PLANE_READ    4
#define VGA_GFX_MODE	      5
#define VGA_GFX_MISC	      6
#define VGA_GFX_COMPARE_MASK  7
#define VGA_GFX_BIT_MASK      8
#define VGA_GFX_NUM	      9
#define VGA_GR05_READ_MODE1   0x08
#define VGA_GR05_ODD_EVEN     0x10
#define VGA_GR06_GRAPHICS     0x01

/* CRT controller. */
#define VGA_CRTC_H_DISP	      0x01
#define VGA_CRTC_V_TOTAL      0x06
#define VGA_CRTC_OVERFLOW     0x07
#define VGA_CRTC_MAX_SCAN     0x09
#define VGA_CRTC_CURSOR_START 0x0a
#define VGA_CRTC_CURSOR_END   0x0b
#define VGA_CRTC_START_HI     0x0c
#define VGA_CRTC_START_LO     0x0d
#define VGA_CRTC_CURSOR_HI    0x0e
#define VGA_CRTC_CURSOR_LO    0x0f
#define VGA_CRTC_V_SYNC_END   0x11
#define VGA_CRTC_V_DISP_END   0x12
#define VGA_CRTC_OFFSET	      0x13
#define VGA_CRTC_MODE	      0x17
#define VGA_CRTC_LINE_COMPARE 0x18
#define VGA_CRTC_NUM	      0x19
#define VGA_CR11_LOCK_CR0_CR7 0x80

/* Attribute controller. */
#define VGA_ATC_MODE	       0x10
#define VGA_ATC_OVERSCAN       0x11
#define VGA_ATC_PLANE_ENABLE   0x12
#define VGA_ATC_PEL	       0x13
#define VGA_ATC_COLOR_PAGE     0x14
#define VGA_ATC_NUM	       0x15
#define VGA_AR_ENABLE_DISPLAY  0x20 /* in the index: palette address source */
#define VGA_AR10_LINE_GRAPHICS 0x04
#define VGA_AR10_BLINK	       0x08
#define VGA_AR10_P54_SELECT    0x80

/* Bochs VBE DISPI (Bochs vbe.h; QEMU include/hw/display/bochs-vbe.h). */
#define VBE_DISPI_INDEX_ID		 0x0
#define VBE_DISPI_INDEX_XRES		 0x1
#define VBE_DISPI_INDEX_YRES		 0x2
#define VBE_DISPI_INDEX_BPP		 0x3
#define VBE_DISPI_INDEX_ENABLE		 0x4
#define VBE_DISPI_INDEX_BANK		 0x5
#define VBE_DISPI_INDEX_VIRT_WIDTH	 0x6
#define VBE_DISPI_INDEX_VIRT_HEIGHT	 0x7
#define VBE_DISPI_INDEX_X_OFFSET	 0x8
#define VBE_DISPI_INDEX_Y_OFFSET	 0x9
#define VBE_DISPI_INDEX_NB		 0xa
#define VBE_DISPI_INDEX_VIDEO_MEMORY_64K 0xa
#define VBE_DISPI_ID0			 0xb0c0
#define VBE_DISPI_ID5			 0xb0c5
#define VBE_DISPI_ENABLED		 0x01
#define VBE_DISPI_GETCAPS		 0x02
#define VBE_DISPI_8BIT_DAC		 0x20
#define VBE_DISPI_LFB_ENABLED		 0x40
#define VBE_DISPI_NOCLEARMEM		 0x80
#define VBE_DISPI_MAX_XRES		 2560
#define VBE_DISPI_MAX_YRES		 1600
#define VBE_DISPI_MAX_BPP		 32

/* The PCI function (QEMU's hw/display/vga-pci.c layout). */
#define VGA_PCI_VENDOR	 0x1234
#define VGA_PCI_DEVICE	 0x1111
#define VGA_PCI_CLASS	 0x030000
#define VGA_PCI_REVISION 2 /* 2: the QEMU extended registers exist */
#define VGA_BAR_LFB	 0
#define VGA_BAR_MMIO	 2
#define VGA_MMIO_SIZE	 0x1000
#define VGA_MMIO_EDID	 0x000 /* EDID blob: none here (reads 0) */
#define VGA_MMIO_PORTS	 0x400 /* ports 0x3c0-0x3df */
#define VGA_MMIO_DISPI	 0x500 /* DISPI register i at 0x500 + 2 * i */
#define VGA_MMIO_QEXT	 0x600 /* +0 size of this block, +4 framebuffer byte order */
#define VGA_QEXT_SIZE	 8
#define VGA_QEXT_BIG	 0xbebebebe
#define VGA_QEXT_LITTLE	 0x1e1e1e1e

/* Regions inside the device past the legacy ones of kestrel/vga.h. */
#define VGA_REGION_LFB	3 /* BAR 0 served as MMIO */
#define VGA_REGION_MMIO 4 /* BAR 2 */

#define VGA_PLANAR_SIZE 0x40000u /* 4 planes of 64 KiB, interleaved */

/* Everything the guest programs. VRAM layout (as QEMU's): plane p of
 * planar offset o is byte 4 * o + p, so chain-4 (mode 13h) and the VBE
 * modes address it linearly. */
struct vga_regs {
	uint8_t misc, fcr, st01;
	uint8_t sr_index, sr[VGA_SEQ_NUM];
	uint8_t gr_index, gr[VGA_GFX_NUM];
	uint8_t cr_index, cr[VGA_CRTC_NUM];
	uint8_t ar_index, ar[VGA_ATC_NUM];
	uint8_t ar_flip_flop;
	uint8_t dac_state, dac_read, dac_write, dac_sub, dac_cache[3], pel_mask;
	uint8_t palette[768];
	uint32_t latch;
	uint16_t vbe_index, vbe[VBE_DISPI_INDEX_NB];
	uint32_t bank_offset; /* VBE bank * 64 KiB, for the window */
	uint32_t qext_endian; /* VGA_QEXT_BIG / _LITTLE */
	/* derived from vbe[] by vga_vbe_fixup(), never saved */
	uint32_t vbe_start, vbe_line; /* framebuffer offset, bytes per line */
};

/* The renderer's memory of what the surface shows (vga_render.c): touched
 * only in vga_update, under the display's lock. */
struct vga_render {
	bool valid;		     /* false: redraw everything */
	int mode;		     /* VGA_DRAW_* */
	uint32_t width, height;	     /* surface size drawn */
	uint32_t palette[256];	     /* XRGB of each index last drawn */
	struct vga_geom *last;	     /* geometry last drawn (vga_render.c) */
	uint8_t planes, last_planes; /* AR12 colour plane enable */
	uint16_t *cells;	     /* text: char | attr << 8 per cell drawn */
	size_t ncells;
	size_t blink_cells;	       /* cells drawn with the blink attribute */
	int cursor_phase, blink_phase; /* -1: not drawn yet */
	uint64_t *dirty;	       /* VRAM pages to look at this update */
	uint64_t *lfb_scratch;	       /* fetch_dirty's bitmap */
	uint64_t lfb_quiet_ns;	       /* since when the log has been empty */
	bool lfb_polled;	       /* lfb_quiet_ns is set */
	uint32_t *line;		       /* a line drawn before it is compared */
	uint8_t *scratch;	       /* a line's bytes where they wrap */
};

struct vga {
	struct device dev;
	struct pci_dev pdev;
	struct display *display;
	uint8_t *vram;
	uint64_t vram_size;
	uint64_t vram_pages; /* vram_size >> VGA_PAGE_SHIFT */
	uint8_t *rom;
	size_t rom_len;
	struct vga_lfb_ops lfb;
	bool has_lfb_ops;
	uint64_t (*now_ns)(void);

	/* under dev.lock */
	struct vga_regs r;
	uint64_t *dirty;   /* VRAM pages the device wrote */
	bool font_written; /* plane 2 written since the last update */
	/* atomics (set by BAR moves, which do not take dev.lock) */
	bool force_full; /* redraw all at the next update */
	bool lfb_mapped; /* BAR 0 is a memory slot now */
	bool warned_lfb;

	struct vga_render rc;
};

static inline uint64_t vga_words(uint64_t bits)
{
	return (bits + 63) / 64;
}

/* A byte range of VRAM was written by the device (not the guest's LFB
 * mapping, which KVM logs): the renderer looks at those pages. dev.lock held. */
static inline void vga_mark(struct vga *v, uint64_t off, uint64_t len)
{
	uint64_t last;

	if (!len || off >= v->vram_size)
		return;
	last = MIN(off + len - 1, v->vram_size - 1) >> VGA_PAGE_SHIFT;
	for (uint64_t p = off >> VGA_PAGE_SHIFT; p <= last; p++)
		v->dirty[p / 64] |= 1ULL << (p % 64);
}

/* A 4-bit plane mask as a byte mask over a latch (plane p = byte p). */
static inline uint32_t vga_plane_bytes(unsigned m)
{
	uint32_t v = 0;

	for (unsigned p = 0; p < 4; p++)
		if (m & (1u << p))
			v |= 0xffu << (8 * p);
	return v;
}

/* vga.c */
uint8_t vga_port_read(struct vga *v, unsigned port);
void vga_port_write(struct vga *v, unsigned port, uint8_t val);
void vga_regs_reset(struct vga *v);

/* vga_vbe.c */
bool vga_vbe_enabled(const struct vga_regs *r);
void vga_vbe_fixup(struct vga_regs *r, uint64_t vram_size);
uint16_t vga_dispi_read(struct vga *v, unsigned index);
void vga_dispi_write(struct vga *v, unsigned index, uint16_t val);
uint64_t vga_dispi_port_read(struct vga *v, uint64_t off, unsigned size);
void vga_dispi_port_write(struct vga *v, uint64_t off, unsigned size, uint64_t val);
uint64_t vga_mmio_read(struct vga *v, uint64_t off, unsigned size);
void vga_mmio_write(struct vga *v, uint64_t off, unsigned size, uint64_t val);
uint64_t vga_lfb_read(struct vga *v, uint64_t off, unsigned size);
void vga_lfb_write(struct vga *v, uint64_t off, unsigned size, uint64_t val);
void vga_bar_remap(struct pci_dev *pdev, int bar, uint64_t old, uint64_t now);

/* vga_render.c */
int vga_render_init(struct vga *v);
void vga_render_free(struct vga *v);
void vga_display_refresh(void *opaque, struct display *d, struct display_hint *hint);

/* vga_state.c */
int vga_save(struct device *dev, struct state_buf *out);
int vga_load(struct device *dev, struct state_buf *in);

#endif
