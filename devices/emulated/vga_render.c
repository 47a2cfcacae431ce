/* Drawing the VGA's picture into the display surface, on demand (the
 * display's refresh; kestrel/display.h): text modes with the guest's own font
 * from plane 2, 16-colour planar and CGA modes, 256-colour chain-4 and the VBE
 * packed-pixel modes.
 *
 * Only what changed is drawn. Under the device lock an update copies the
 * registers and takes the VRAM pages the device wrote (window and MMIO
 * writes); the caller adds the pages the guest wrote through the framebuffer
 * mapping (KVM's dirty log). A graphics line is drawn when a page it reads
 * is dirty; a text cell when its page is dirty and its character or
 * attribute differs from what was drawn, or the cursor or blink phase changed
 * on it. A new geometry, palette or font redraws everything. VRAM is read
 * without the device lock: a write racing the drawing marks its page again,
 * so the next update draws it.
 *
 * Geometry as QEMU's std VGA computes it, so screendumps are comparable:
 * width (CR1 + 1) * 8 (doubled by SR1 bit 3 in 16-colour and CGA modes;
 * 256-colour modes draw each byte twice, mode 13h is 640x400), height
 * CR12 + 1 with its overflow bits, line offset CR13 * 8 bytes of interleaved
 * VRAM, start address CR0C/CR0D, line compare, scan doubling by CR9, the CGA
 * address bits of CR17. Text cells are 8 or 9 dots (SR1 bit 0; 9 with the
 * line-graphics rule for characters C0-DF when AR10 bit 2 is set, as IBM's
 * VGA does, where QEMU uses B0-DF), doubled by SR1 bit 3; a mode 3 screen
 * is 720x400. Legacy modes wrap at the 256 KiB of planar memory, VBE modes
 * at the VRAM size. Not modelled: pixel panning (AR13), underline, the
 * overscan colour, split-screen panning control. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/display.h"
#include "vga_priv.h"

enum { VGA_DRAW_BLANK, VGA_DRAW_TEXT, VGA_DRAW_GRAPHIC };
enum { LINE2, LINE2D2, LINE4, LINE4D2, LINE8D2, LINE8, LINE15, LINE16, LINE24, LINE32 };

#define VGA_CURSOR_HALF_NS    266666667ULL /* 16 frames at 60 Hz: cursor on, then off */
#define VGA_BLINK_HALF_NS     533333333ULL /* 32 frames: blinking characters */
/* How often KVM's log of the framebuffer is read: every 30 ms while the
 * guest writes through the mapping, 250 ms after 1 s of no writes, 1 s
 * after 3 s (a still screen costs one read a second; QEMU's VNC refresh
 * backs off the same way, from 30 ms to 3 s). Writes the device sees itself
 * (window, MMIO, registers) notify at once whatever the interval. */
#define VGA_LFB_POLL_MS	      30
#define VGA_LFB_POLL_SLOW_MS  250
#define VGA_LFB_POLL_IDLE_MS  1000
#define VGA_LFB_SLOW_AFTER_NS 1000000000ULL
#define VGA_LFB_IDLE_AFTER_NS 3000000000ULL
#define VGA_LINE_MAX	      (VBE_DISPI_MAX_XRES * 4)

/* The picture's shape, from the registers; compared whole between updates. */
struct vga_geom {
	int mode;
	uint32_t width, height; /* surface */
	uint32_t start, line;	/* VRAM byte address of the first line, bytes per line */
	uint32_t line_compare;	/* display line where the address restarts at 0 */
	uint32_t wrap;		/* address space (a power of two) */
	/* graphics */
	int draw;
	uint32_t src_width;  /* pixels a line function produces */
	uint32_t bwidth;     /* bytes one line reads */
	uint32_t multi_scan; /* each line shown multi_scan + 1 times */
	uint8_t cr17;
	bool big_endian;
	/* text */
	uint32_t cols, rows, cw, ch;
	bool dup, line_gfx, blink;
	uint32_t font[2];	      /* VRAM byte address of each font (attr bit 3 = 0, 1) */
	uint32_t cursor;	      /* VRAM byte address of the cursor cell */
	int cursor_start, cursor_end; /* scan lines; start > end: no cursor */
};

/* 6-bit DAC values to 8 bits, the low bit copied into the new ones (QEMU's
 * c6_to_8, so that colours match its screendumps). */
static uint8_t vga_c6_to_8(uint8_t v)
{
	v &= 0x3f;
	return (uint8_t)((v << 2) | ((v & 1) << 1) | (v & 1));
}

static uint32_t vga_dac_color(const struct vga_regs *r, unsigned index)
{
	const uint8_t *p = &r->palette[3 * (index & r->pel_mask & 0xff)];

	if (r->vbe[VBE_DISPI_INDEX_ENABLE] & VBE_DISPI_8BIT_DAC)
		return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
	return (uint32_t)vga_c6_to_8(p[0]) << 16 | (uint32_t)vga_c6_to_8(p[1]) << 8 |
	       vga_c6_to_8(p[2]);
}

/* 16-colour modes reach the DAC through the attribute palette and the colour
 * select register (AR14; AR10 bit 7 picks which of its bits apply). */
static void vga_palette16(const struct vga_regs *r, uint32_t *pal)
{
	for (unsigned i = 0; i < 16; i++) {
		unsigned v = r->ar[i];

		if (r->ar[VGA_ATC_MODE] & VGA_AR10_P54_SELECT)
			v = ((r->ar[VGA_ATC_COLOR_PAGE] & 0xf) << 4) | (v & 0xf);
		else
			v = ((r->ar[VGA_ATC_COLOR_PAGE] & 0xc) << 4) | (v & 0x3f);
		pal[i] = vga_dac_color(r, v);
	}
	memset(&pal[16], 0, 240 * sizeof(*pal));
}

static void vga_palette256(const struct vga_regs *r, uint32_t *pal)
{
	for (unsigned i = 0; i < 256; i++)
		pal[i] = vga_dac_color(r, i);
}

/* ---- geometry ---- */

static uint32_t vga_vde(const struct vga_regs *r)
{
	return (r->cr[VGA_CRTC_V_DISP_END] | ((r->cr[VGA_CRTC_OVERFLOW] & 0x02) << 7) |
		((r->cr[VGA_CRTC_OVERFLOW] & 0x40) << 3)) +
	       1u;
}

static uint32_t vga_font_addr(unsigned sel)
{
	/* SR3: maps 0-3 at 0, 16, 32, 48 KiB of plane 2, 4-7 at 8, 24, 40, 56. */
	return (((sel >> 2) & 1) | ((sel & 3) << 1)) * 8192u * 4u + 2u;
}

static void vga_geom_text(const struct vga_regs *r, struct vga_geom *g)
{
	uint8_t sr3 = r->sr[VGA_SEQ_CHARACTER_MAP];
	uint32_t cursor = (uint32_t)r->cr[VGA_CRTC_CURSOR_HI] << 8 | r->cr[VGA_CRTC_CURSOR_LO];

	g->mode = VGA_DRAW_TEXT;
	g->ch = (r->cr[VGA_CRTC_MAX_SCAN] & 0x1f) + 1u;
	g->cw = (r->sr[VGA_SEQ_CLOCK_MODE] & VGA_SR01_8DOTS) ? 8 : 9;
	g->dup = r->sr[VGA_SEQ_CLOCK_MODE] & VGA_SR01_DOT_HALF;
	g->cols = r->cr[VGA_CRTC_H_DISP] + 1u;
	g->rows = vga_vde(r) / g->ch;
	/* A screen larger than the surface shows what fits. */
	g->cols = MIN(g->cols, DISPLAY_MAX_WIDTH / (g->cw << g->dup));
	g->rows = MIN(g->rows, DISPLAY_MAX_HEIGHT / g->ch);
	g->width = g->cols * (g->cw << g->dup);
	g->height = g->rows * g->ch;
	g->line_gfx = r->ar[VGA_ATC_MODE] & VGA_AR10_LINE_GRAPHICS;
	g->blink = r->ar[VGA_ATC_MODE] & VGA_AR10_BLINK;
	g->font[0] = vga_font_addr((sr3 & 3) | ((sr3 >> 2) & 4));
	g->font[1] = vga_font_addr(((sr3 >> 2) & 3) | ((sr3 >> 3) & 4));
	g->cursor = (cursor * 4) & (g->wrap - 1);
	g->cursor_start = r->cr[VGA_CRTC_CURSOR_START] & 0x1f;
	g->cursor_end = MIN(r->cr[VGA_CRTC_CURSOR_END] & 0x1f, (int)g->ch - 1);
	if (r->cr[VGA_CRTC_CURSOR_START] & 0x20)
		g->cursor_start = 32; /* cursor off */
}

static void vga_geom_vbe(const struct vga_regs *r, struct vga_geom *g, unsigned *bits)
{
	static const int draw[] = {
		[4] = LINE4, [8] = LINE8, [15] = LINE15, [16] = LINE16, [24] = LINE24, [32] = LINE32
	};
	unsigned bpp = r->vbe[VBE_DISPI_INDEX_BPP];

	g->width = g->src_width = r->vbe[VBE_DISPI_INDEX_XRES];
	g->height = r->vbe[VBE_DISPI_INDEX_YRES];
	g->start = r->vbe_start;
	g->line = r->vbe_line;
	g->line_compare = UINT32_MAX;
	g->multi_scan = 0;
	/* The fixup left bpp one of these. */
	g->draw = bpp < ARRAY_SIZE(draw) ? draw[bpp] : LINE8;
	*bits = bpp == 15 ? 16 : bpp;
	if (bpp == 4)
		g->start &= ~3u; /* planar: whole dwords of the four planes */
	g->big_endian = r->qext_endian == VGA_QEXT_BIG;
}

static void vga_geom_legacy(const struct vga_regs *r, struct vga_geom *g, unsigned *bits)
{
	unsigned shift = (r->gr[VGA_GFX_MODE] >> 5) & 3, dbl = r->cr[VGA_CRTC_MAX_SCAN] >> 7;
	bool half = r->sr[VGA_SEQ_CLOCK_MODE] & VGA_SR01_DOT_HALF;

	g->src_width = (r->cr[VGA_CRTC_H_DISP] + 1u) * 8;
	g->height = vga_vde(r);
	g->start = ((uint32_t)r->cr[VGA_CRTC_START_HI] << 8 | r->cr[VGA_CRTC_START_LO]) * 4;
	g->line = (uint32_t)r->cr[VGA_CRTC_OFFSET] << 3;
	g->line_compare = r->cr[VGA_CRTC_LINE_COMPARE] | ((r->cr[VGA_CRTC_OVERFLOW] & 0x10) << 4) |
			  ((r->cr[VGA_CRTC_MAX_SCAN] & 0x40) << 3);
	/* In CGA modes the scan-line count is ignored (QEMU). */
	g->multi_scan = shift == 1 ? dbl : (((r->cr[VGA_CRTC_MAX_SCAN] & 0x1f) + 1u) << dbl) - 1;
	*bits = 4;
	if (shift == 0)
		g->draw = half ? LINE4D2 : LINE4;
	else if (shift == 1)
		g->draw = half ? LINE2D2 : LINE2;
	else
		g->draw = LINE8D2;
	g->width = (shift <= 1 && half) ? g->src_width * 2 : g->src_width;
}

static void vga_geom(const struct vga *v, const struct vga_regs *r, struct vga_geom *g)
{
	bool vbe = vga_vbe_enabled(r);
	unsigned bits;

	memset(g, 0, sizeof(*g));
	g->wrap = vbe ? (uint32_t)MIN(v->vram_size, 1ULL << 31) : VGA_PLANAR_SIZE;
	if (!(r->ar_index & VGA_AR_ENABLE_DISPLAY) ||
	    (r->sr[VGA_SEQ_CLOCK_MODE] & VGA_SR01_SCREEN_OFF)) {
		g->mode = VGA_DRAW_BLANK;
		return;
	}
	if (!(r->gr[VGA_GFX_MISC] & VGA_GR06_GRAPHICS)) {
		g->start = ((uint32_t)r->cr[VGA_CRTC_START_HI] << 8 | r->cr[VGA_CRTC_START_LO]) * 4;
		g->line = (uint32_t)r->cr[VGA_CRTC_OFFSET] << 3;
		g->line_compare = r->cr[VGA_CRTC_LINE_COMPARE] |
				  ((r->cr[VGA_CRTC_OVERFLOW] & 0x10) << 4) |
				  ((r->cr[VGA_CRTC_MAX_SCAN] & 0x40) << 3);
		vga_geom_text(r, g);
		if (!g->cols || !g->rows)
			g->mode = VGA_DRAW_BLANK;
		return;
	}
	g->mode = VGA_DRAW_GRAPHIC;
	g->cr17 = vbe ? 3 : r->cr[VGA_CRTC_MODE];
	if (vbe)
		vga_geom_vbe(r, g, &bits);
	else
		vga_geom_legacy(r, g, &bits);
	/* Draw only what the surface holds. */
	if (g->width > DISPLAY_MAX_WIDTH) {
		g->src_width = g->src_width * DISPLAY_MAX_WIDTH / g->width;
		g->width = DISPLAY_MAX_WIDTH;
	}
	g->height = MIN(g->height, (uint32_t)DISPLAY_MAX_HEIGHT);
	g->src_width &= ~7u;
	g->bwidth = (g->src_width * bits + 7) / 8;
	if (!g->src_width || !g->height)
		g->mode = VGA_DRAW_BLANK;
}

/* ---- reading VRAM ---- */

static bool vga_page_dirty(const struct vga *v, uint64_t page)
{
	page %= v->vram_pages;
	return v->rc.dirty[page / 64] & (1ULL << (page % 64));
}

/* Whether any page of [addr, addr + len) (wrapping at g->wrap) is dirty. */
static bool vga_range_dirty(const struct vga *v, const struct vga_geom *g, uint32_t addr,
			    uint32_t len)
{
	uint32_t first = addr >> VGA_PAGE_SHIFT, last = (addr + len - 1) >> VGA_PAGE_SHIFT;
	uint32_t wrap_pages = g->wrap >> VGA_PAGE_SHIFT;

	for (uint32_t p = first; p <= last; p++)
		if (vga_page_dirty(v, p % wrap_pages))
			return true;
	return false;
}

/* len bytes at addr, wrapping at g->wrap: a pointer into VRAM, or a copy. */
static const uint8_t *vga_src(const struct vga *v, const struct vga_geom *g, uint32_t addr,
			      uint32_t len, uint8_t *scratch)
{
	uint32_t mask = g->wrap - 1;

	addr &= mask;
	if ((uint64_t)addr + len <= g->wrap)
		return v->vram + addr;
	for (uint32_t i = 0; i < len; i++)
		scratch[i] = v->vram[(addr + i) & mask];
	return scratch;
}

/* ---- graphics lines ---- */

static void vga_put(uint32_t *d, unsigned *x, uint32_t color, bool dbl)
{
	d[(*x)++] = color;
	if (dbl)
		d[(*x)++] = color;
}

/* 16 colours: a bit of each plane per pixel, masked by AR12. */
static void vga_line4(uint32_t *d, const uint8_t *s, uint32_t n, const uint32_t *pal,
		      uint8_t planes, bool dbl)
{
	unsigned x = 0;

	for (uint32_t i = 0; i < n / 8; i++, s += 4)
		for (int b = 7; b >= 0; b--) {
			unsigned c = 0;

			for (unsigned p = 0; p < 4; p++)
				c |= ((unsigned)(s[p] >> b) & 1) << p;
			vga_put(d, &x, pal[c & planes], dbl);
		}
}

/* CGA 4 colours (shift register interleave): two bits per pixel, planes 0
 * and 2 give the first four pixels of a byte group, 1 and 3 the next four. */
static void vga_line2(uint32_t *d, const uint8_t *s, uint32_t n, const uint32_t *pal,
		      uint8_t planes, bool dbl)
{
	unsigned x = 0;

	for (uint32_t i = 0; i < n / 8; i++, s += 4)
		for (unsigned half = 0; half < 2; half++)
			for (int k = 3; k >= 0; k--) {
				unsigned c = ((unsigned)(s[half] >> (2 * k)) & 3) |
					     (((unsigned)(s[half + 2] >> (2 * k)) & 3) << 2);

				vga_put(d, &x, pal[c & planes], dbl);
			}
}

static uint32_t vga_rgb(uint32_t r, uint32_t g, uint32_t b)
{
	return r << 16 | g << 8 | b;
}

static void vga_line_direct(uint32_t *d, const uint8_t *s, uint32_t n, int draw, bool be)
{
	for (uint32_t x = 0; x < n; x++) {
		uint32_t v;

		switch (draw) {
		case LINE15:
		case LINE16:
			v = be ? (uint32_t)s[2 * x] << 8 | s[2 * x + 1]
			       : s[2 * x] | (uint32_t)s[2 * x + 1] << 8;
			d[x] = draw == LINE15
				       ? vga_rgb((v >> 7) & 0xf8, (v >> 2) & 0xf8, (v << 3) & 0xf8)
				       : vga_rgb((v >> 8) & 0xf8, (v >> 3) & 0xfc, (v << 3) & 0xf8);
			break;
		case LINE24: d[x] = vga_rgb(s[3 * x + 2], s[3 * x + 1], s[3 * x]); break;
		default:
			d[x] = be ? vga_rgb(s[4 * x + 1], s[4 * x + 2], s[4 * x + 3])
				  : vga_rgb(s[4 * x + 2], s[4 * x + 1], s[4 * x]);
			break;
		}
	}
}

static void vga_draw_line(const struct vga *v, const struct vga_geom *g, uint32_t *d,
			  const uint8_t *s, const uint32_t *pal)
{
	uint8_t planes = v->rc.planes;
	uint32_t n = g->src_width;

	switch (g->draw) {
	case LINE4:
	case LINE4D2: vga_line4(d, s, n, pal, planes, g->draw == LINE4D2); break;
	case LINE2:
	case LINE2D2: vga_line2(d, s, n, pal, planes, g->draw == LINE2D2); break;
	case LINE8D2:
		for (uint32_t x = 0; x < n / 2; x++)
			d[2 * x] = d[2 * x + 1] = pal[s[x]];
		break;
	case LINE8:
		for (uint32_t x = 0; x < n; x++)
			d[x] = pal[s[x]];
		break;
	default: vga_line_direct(d, s, n, g->draw, g->big_endian); break;
	}
}

/* The CGA-compatible address bits of CR17 (bit 0: scan line bit 0 into
 * address bit 13 (14 with bit 6), bit 1: scan line bit 1 into bit 15). */
static uint32_t vga_cga_addr(const struct vga_geom *g, uint32_t addr, uint32_t y1)
{
	if (!(g->cr17 & 1)) {
		unsigned shift = 14 + ((g->cr17 >> 6) & 1);

		addr = (addr & ~(1u << shift)) | ((y1 & 1) << shift);
	}
	if (!(g->cr17 & 2))
		addr = (addr & ~0x8000u) | ((y1 & 2) << 14);
	return addr;
}

/* A line drawn into rc.line goes to the surface where it differs, so a
 * page written with what it held already, or only partly changed, reports
 * only the pixels that changed. */
static void vga_commit_line(struct display *d, uint32_t *row, const uint32_t *line, uint32_t w,
			    uint32_t y)
{
	uint32_t x0 = 0, x1 = w;

	while (x0 < w && row[x0] == line[x0])
		x0++;
	if (x0 == w)
		return;
	while (x1 > x0 && row[x1 - 1] == line[x1 - 1])
		x1--;
	memcpy(row + x0, line + x0, (size_t)(x1 - x0) * sizeof(*row));
	display_damage(d, x0, y, x1 - x0, 1);
}

static void vga_draw_graphic(struct vga *v, struct display *d, const struct vga_geom *g,
			     const uint32_t *pal, bool full)
{
	const struct display_surface *s = display_surface(d);
	uint32_t addr1 = g->start, y1 = 0, multi = g->multi_scan;
	uint32_t w = MIN(g->width, s->width), h = MIN(g->height, s->height);

	for (uint32_t y = 0; y < h; y++) {
		uint32_t addr = vga_cga_addr(g, addr1, y1);
		uint32_t *row = s->pixels + (size_t)y * s->stride;

		if (full) {
			vga_draw_line(v, g, row, vga_src(v, g, addr, g->bwidth, v->rc.scratch),
				      pal);
		} else if (vga_range_dirty(v, g, addr & (g->wrap - 1), g->bwidth)) {
			vga_draw_line(v, g, v->rc.line,
				      vga_src(v, g, addr, g->bwidth, v->rc.scratch), pal);
			vga_commit_line(d, row, v->rc.line, w, y);
		}
		if (!multi) {
			unsigned mask = (g->cr17 & 3) ^ 3;

			if ((y1 & mask) == mask)
				addr1 += g->line;
			y1++;
			multi = g->multi_scan;
		} else {
			multi--;
		}
		if (y == g->line_compare)
			addr1 = 0;
	}
	if (full)
		display_damage(d, 0, 0, w, h);
}

/* ---- text ---- */

struct vga_text_phase {
	bool cursor_on, blink_on;
	bool cursor_changed, blink_changed;
};

static void vga_glyph(uint32_t *d, uint32_t stride, const struct vga *v, const struct vga_geom *g,
		      uint32_t font, unsigned c, uint32_t fg, uint32_t bg, int cur0, int cur1)
{
	bool ninth = g->cw == 9 && g->line_gfx && c >= 0xc0 && c <= 0xdf;

	for (uint32_t l = 0; l < g->ch; l++, d += stride) {
		unsigned bits = v->vram[(font + (c * 32 + l) * 4) & (VGA_PLANAR_SIZE - 1)];
		unsigned x = 0;

		if ((int)l >= cur0 && (int)l <= cur1)
			bits = 0x1ff; /* the cursor: all foreground, 9th dot too */
		else if (ninth && (bits & 1))
			bits = bits << 1 | 1; /* line graphics: the 9th dot repeats the 8th */
		else
			bits <<= 1;
		for (int b = (int)g->cw - 1; b >= 0; b--)
			vga_put(d, &x, ((bits >> (b + 9 - g->cw)) & 1) ? fg : bg, g->dup);
	}
}

static void vga_draw_cell(struct vga *v, struct display *d, const struct vga_geom *g,
			  const uint32_t *pal, uint32_t col, uint32_t row, uint16_t ca, bool cursor,
			  const struct vga_text_phase *ph)
{
	const struct display_surface *s = display_surface(d);
	uint32_t cw = g->cw << g->dup, x = col * cw, y = row * g->ch;
	unsigned c = ca & 0xff, attr = ca >> 8;
	uint32_t fg = pal[attr & 0xf], bg = pal[attr >> 4];
	int cur0 = 32, cur1 = -1;

	if (g->blink) {
		bg = pal[(attr >> 4) & 7];
		if ((attr & 0x80) && !ph->blink_on)
			fg = bg;
	}
	if (cursor && ph->cursor_on && g->cursor_start <= g->cursor_end) {
		cur0 = g->cursor_start;
		cur1 = g->cursor_end;
	}
	vga_glyph(s->pixels + (size_t)y * s->stride + x, s->stride, v, g, g->font[(attr >> 3) & 1],
		  c, fg, bg, cur0, cur1);
	display_damage(d, x, y, cw, g->ch);
}

/* Whether a cell must be drawn this time. */
static bool vga_cell_stale(const struct vga *v, const struct vga_geom *g, uint32_t addr,
			   uint16_t ca, size_t k, bool cursor, const struct vga_text_phase *ph,
			   bool full)
{
	if (full || v->rc.cells[k] != ca)
		return true;
	if (cursor && ph->cursor_changed)
		return true;
	return g->blink && (ca & 0x8000) && ph->blink_changed;
}

static void vga_draw_text(struct vga *v, struct display *d, const struct vga_geom *g,
			  const uint32_t *pal, const struct vga_text_phase *ph, bool full)
{
	uint32_t offset = g->start, line = 0, mask = g->wrap - 1;
	size_t k = 0;

	if (full)
		v->rc.blink_cells = 0;
	for (uint32_t row = 0; row < g->rows; row++) {
		for (uint32_t col = 0; col < g->cols; col++, k++) {
			uint32_t addr = (offset + col * 4) & mask;
			uint16_t ca = (uint16_t)(v->vram[addr] | v->vram[addr + 1] << 8);
			bool cursor = addr == g->cursor || addr == v->rc.last->cursor;

			if (!full && !vga_page_dirty(v, addr >> VGA_PAGE_SHIFT) &&
			    !(cursor && ph->cursor_changed) && !(g->blink && ph->blink_changed))
				continue;
			if (!vga_cell_stale(v, g, addr, ca, k, cursor, ph, full))
				continue;
			v->rc.blink_cells -= !full && (v->rc.cells[k] & 0x8000);
			v->rc.blink_cells += (ca & 0x8000) != 0;
			v->rc.cells[k] = ca;
			vga_draw_cell(v, d, g, pal, col, row, ca, addr == g->cursor, ph);
		}
		offset += g->line;
		if (line < g->line_compare && line + g->ch >= g->line_compare)
			offset = 0;
		line += g->ch;
	}
}

static int64_t vga_ms_to_edge(uint64_t now, uint64_t half)
{
	return (int64_t)((half - now % half + 999999) / 1000000);
}

/* The blink phases at now, and whether they differ from what was drawn. */
static void vga_text_phase(struct vga *v, const struct vga_geom *g, uint64_t now,
			   struct vga_text_phase *ph)
{
	int cursor = (int)((now / VGA_CURSOR_HALF_NS) & 1),
	    blink = (int)((now / VGA_BLINK_HALF_NS) & 1);

	ph->cursor_on = cursor == 0;
	ph->blink_on = blink == 0;
	ph->cursor_changed = cursor != v->rc.cursor_phase || memcmp(g, v->rc.last, sizeof(*g)) != 0;
	ph->blink_changed = blink != v->rc.blink_phase;
	v->rc.cursor_phase = cursor;
	v->rc.blink_phase = blink;
}

/* When the picture changes by itself next: a visible cursor or blinking
 * characters on screen. */
static void vga_text_hint(const struct vga *v, const struct vga_geom *g, uint64_t now,
			  struct display_hint *hint)
{
	int64_t next = -1;

	hint->text = true;
	if (g->cursor_start <= g->cursor_end)
		next = vga_ms_to_edge(now, VGA_CURSOR_HALF_NS);
	if (g->blink && v->rc.blink_cells) {
		int64_t b = vga_ms_to_edge(now, VGA_BLINK_HALF_NS);

		next = next < 0 ? b : MIN(next, b);
	}
	if (next >= 0)
		hint->next_ms = hint->next_ms < 0 ? next : MIN(hint->next_ms, next);
}

static int vga_text_cells(struct vga *v, const struct vga_geom *g)
{
	size_t n = (size_t)g->cols * g->rows;
	uint16_t *c;

	if (n <= v->rc.ncells)
		return 0;
	c = realloc(v->rc.cells, n * sizeof(*c));
	if (!c)
		return -ENOMEM;
	v->rc.cells = c;
	v->rc.ncells = n;
	return 0;
}

static bool vga_any_dirty(const struct vga *v)
{
	for (uint64_t i = 0; i < vga_words(v->vram_pages); i++)
		if (v->rc.dirty[i])
			return true;
	return false;
}

/* Text geometry apart from the cursor, which moves without a redraw. */
static bool vga_text_same(const struct vga_geom *a, const struct vga_geom *b)
{
	struct vga_geom x = *a, y = *b;

	x.cursor = y.cursor = 0;
	x.cursor_start = y.cursor_start = x.cursor_end = y.cursor_end = 0;
	return memcmp(&x, &y, sizeof(x)) == 0;
}

/* ---- an update ---- */

/* What an update needs from under the device lock. */
static void vga_snapshot(struct vga *v, struct vga_regs *r, bool *full, bool *font)
{
	uint64_t words = vga_words(v->vram_pages);

	pthread_mutex_lock(&v->dev.lock);
	*r = v->r;
	for (uint64_t i = 0; i < words; i++) {
		v->rc.dirty[i] |= v->dirty[i];
		v->dirty[i] = 0;
	}
	*font = v->font_written;
	v->font_written = false;
	pthread_mutex_unlock(&v->dev.lock);
	*full = __atomic_exchange_n(&v->force_full, false, __ATOMIC_ACQ_REL);
}

static void vga_blank(struct display *d)
{
	const struct display_surface *s = display_surface(d);

	for (uint32_t y = 0; y < s->height; y++)
		memset(s->pixels + (size_t)y * s->stride, 0, (size_t)s->width * sizeof(uint32_t));
	display_damage(d, 0, 0, s->width, s->height);
}

/* The picture's geometry and palette against what the surface shows:
 * anything new means drawing all of it. */
static bool vga_prepare(struct vga *v, struct display *d, const struct vga_regs *r,
			struct vga_geom *g, uint32_t *pal)
{
	bool full = !v->rc.valid || g->mode != v->rc.last->mode;

	if (g->mode == VGA_DRAW_BLANK)
		return full;
	if (display_resize(d, g->width, g->height) ||
	    (g->mode == VGA_DRAW_TEXT && vga_text_cells(v, g))) {
		g->mode = VGA_DRAW_BLANK; /* out of memory: keep what is there */
		return full;
	}
	if (g->mode == VGA_DRAW_TEXT || g->draw <= LINE4D2)
		vga_palette16(r, pal);
	else
		vga_palette256(r, pal);
	v->rc.planes = r->ar[VGA_ATC_PLANE_ENABLE] & 0xf;
	full |= memcmp(pal, v->rc.palette, sizeof(v->rc.palette)) != 0;
	if (g->mode == VGA_DRAW_GRAPHIC)
		full |= memcmp(g, v->rc.last, sizeof(*g)) != 0 || v->rc.planes != v->rc.last_planes;
	else
		full |= !vga_text_same(g, v->rc.last);
	return full;
}

void vga_update(struct device *dev, struct display *d, const uint64_t *lfb, uint64_t nbits,
		struct display_hint *hint)
{
	struct vga *v = (struct vga *)dev;
	struct vga_regs r;
	struct vga_geom g;
	struct vga_text_phase ph;
	uint32_t pal[256];
	uint64_t now;
	bool full, font;

	vga_snapshot(v, &r, &full, &font);
	for (uint64_t i = 0; lfb && i < vga_words(MIN(nbits, v->vram_pages)); i++)
		v->rc.dirty[i] |= lfb[i];
	vga_geom(v, &r, &g);
	/* A text screen of one cell is a mode being set (bochs-drm turns DISPI
	 * off with the legacy registers as reset: 9x1): keep the last picture
	 * and what is dirty, as QEMU's vga_draw_text does, so that no client
	 * is resized to it. */
	if (g.mode == VGA_DRAW_TEXT && g.cols * g.rows <= 1) {
		if (full || font)
			__atomic_store_n(&v->force_full, true, __ATOMIC_RELEASE);
		return;
	}
	full |= vga_prepare(v, d, &r, &g, pal);
	switch (g.mode) {
	case VGA_DRAW_TEXT:
		now = v->now_ns();
		vga_text_phase(v, &g, now, &ph);
		if (full || font || ph.cursor_changed || ph.blink_changed || vga_any_dirty(v))
			vga_draw_text(v, d, &g, pal, &ph, full || font);
		vga_text_hint(v, &g, now, hint);
		break;
	case VGA_DRAW_GRAPHIC:
		if (full || vga_any_dirty(v))
			vga_draw_graphic(v, d, &g, pal, full);
		break;
	default:
		if (full)
			vga_blank(d);
		break;
	}
	memcpy(v->rc.palette, pal, sizeof(pal));
	*v->rc.last = g;
	v->rc.last_planes = v->rc.planes;
	v->rc.valid = true;
	memset(v->rc.dirty, 0, vga_words(v->vram_pages) * sizeof(uint64_t));
}

/* The next read of the log, from how long it has been empty (n: pages the
 * last read found). */
static int64_t vga_lfb_poll_ms(struct vga *v, long n)
{
	uint64_t now = v->now_ns(), quiet;

	if (n != 0 || !v->rc.lfb_polled)
		v->rc.lfb_quiet_ns = now;
	v->rc.lfb_polled = true;
	quiet = now - v->rc.lfb_quiet_ns;
	if (quiet >= VGA_LFB_IDLE_AFTER_NS)
		return VGA_LFB_POLL_IDLE_MS;
	return quiet >= VGA_LFB_SLOW_AFTER_NS ? VGA_LFB_POLL_SLOW_MS : VGA_LFB_POLL_MS;
}

/* The display's refresh: the pages the guest wrote through the framebuffer
 * mapping come from KVM's dirty log, which must be polled. */
void vga_display_refresh(void *opaque, struct display *d, struct display_hint *hint)
{
	struct vga *v = opaque;
	long n = 0;

	if (__atomic_load_n(&v->lfb_mapped, __ATOMIC_ACQUIRE)) {
		n = v->lfb.fetch_dirty(v->lfb.opaque, v->rc.lfb_scratch, v->vram_pages);
		hint->poll_ms = vga_lfb_poll_ms(v, n);
		if (n < 0) /* what the guest wrote is unknown: draw it all */
			__atomic_store_n(&v->force_full, true, __ATOMIC_RELEASE);
	} else {
		v->rc.lfb_polled = false;
	}
	vga_update(&v->dev, d, n > 0 ? v->rc.lfb_scratch : NULL, v->vram_pages, hint);
}

int vga_render_init(struct vga *v)
{
	uint64_t words = vga_words(v->vram_pages);

	v->rc.dirty = calloc(words, sizeof(uint64_t));
	v->rc.lfb_scratch = calloc(words, sizeof(uint64_t));
	v->rc.last = calloc(1, sizeof(*v->rc.last));
	v->rc.line = calloc(DISPLAY_MAX_WIDTH, sizeof(uint32_t));
	v->rc.scratch = calloc(VGA_LINE_MAX, 1);
	v->rc.cursor_phase = v->rc.blink_phase = -1;
	if (!v->rc.dirty || !v->rc.lfb_scratch || !v->rc.last || !v->rc.line || !v->rc.scratch)
		return -ENOMEM;
	return 0;
}

void vga_render_free(struct vga *v)
{
	free(v->rc.dirty);
	free(v->rc.lfb_scratch);
	free(v->rc.last);
	free(v->rc.cells);
	free(v->rc.line);
	free(v->rc.scratch);
	memset(&v->rc, 0, sizeof(v->rc));
}
