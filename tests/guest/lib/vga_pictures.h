/* The VGA test pictures, defined once: the register tables of the standard
 * modes, the palettes, the mode 13h picture, the text screen with its font
 * glyphs, and the VBE picture. vga.bin draws them through the hardware's
 * registers; tests/check_vga.c and tests/vga-compare.c compute the
 * expected pixels from the same definitions, without the device's renderer.
 * Header-only, freestanding (the payload has no libc). */
#ifndef VGA_PICTURES_H
#define VGA_PICTURES_H

#include <stdint.h>

/* ---- register tables: misc, SR0-4, CR0-18, GR0-8, AR0-14 --------------
 * The values IBM's BIOS programs (as listed in FreeVGA and OSDev's "VGA
 * Hardware" page). */
struct vga_mode_regs {
	uint8_t misc;
	uint8_t sr[5];
	uint8_t cr[25];
	uint8_t gr[9];
	uint8_t ar[21];
};

/* 80x25 text, 9x16 cells: 720x400. */
static const struct vga_mode_regs vga_mode3 = {
	.misc = 0x67,
	.sr = { 0x03, 0x00, 0x03, 0x00, 0x02 },
	.cr = { 0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00,
		0x00, 0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff },
	.gr = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x00, 0xff },
	.ar = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a,
		0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x0c, 0x00, 0x0f, 0x08, 0x00 },
};

/* 320x200, 256 colours, chain-4: 640x400 on screen (each pixel doubled). */
static const struct vga_mode_regs vga_mode13 = {
	.misc = 0x63,
	.sr = { 0x03, 0x01, 0x0f, 0x00, 0x0e },
	.cr = { 0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x9c, 0x0e, 0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff },
	.gr = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0f, 0xff },
	.ar = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
		0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x41, 0x00, 0x0f, 0x00, 0x00 },
};

/* 640x480, 16 colours, planar. */
static const struct vga_mode_regs vga_mode12 = {
	.misc = 0xe3,
	.sr = { 0x03, 0x01, 0x0f, 0x00, 0x06 },
	.cr = { 0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0x0b, 0x3e, 0x00, 0x40, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0xea, 0x0c, 0xdf, 0x28, 0x00, 0xe7, 0x04, 0xe3, 0xff },
	.gr = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0f, 0xff },
	.ar = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a,
		0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x01, 0x00, 0x0f, 0x00, 0x00 },
};

/* ---- palettes (6-bit DAC values) ----------------------------------------- */

/* The EGA colours of DAC entries 0-63 (bit 0/1/2: blue/green/red at 2/3,
 * bit 3/4/5: at 1/3), as the BIOS loads them for 16-colour modes. */
static inline void vga_pic_dac64(unsigned i, uint8_t rgb[3])
{
	rgb[0] = (uint8_t)(((i >> 2) & 1) * 0x2a + ((i >> 5) & 1) * 0x15);
	rgb[1] = (uint8_t)(((i >> 1) & 1) * 0x2a + ((i >> 4) & 1) * 0x15);
	rgb[2] = (uint8_t)((i & 1) * 0x2a + ((i >> 3) & 1) * 0x15);
}

/* Mode 13h's palette: every entry different, all 64 levels used. */
static inline void vga_pic_dac256(unsigned i, uint8_t rgb[3])
{
	rgb[0] = (uint8_t)(i & 0x3f);
	rgb[1] = (uint8_t)((i * 5 + 7) & 0x3f);
	rgb[2] = (uint8_t)((255 - i) >> 2);
}

/* The DAC's 6 bits to 8, the low bit copied into the two new ones (what
 * QEMU's screendump does; the test's own definition, not the device's). */
static inline uint32_t vga_pic_rgb6(const uint8_t rgb[3])
{
	uint32_t c = 0;

	for (unsigned k = 0; k < 3; k++) {
		unsigned v = rgb[k] & 0x3f;

		c = c << 8 | (v << 2) | ((v & 1) << 1) | (v & 1);
	}
	return c;
}

/* ---- mode 13h picture ---------------------------------------------------- */

#define VGA_PIC13_W 320
#define VGA_PIC13_H 200

/* Bands, a checkerboard, a diagonal and a frame: neighbours differ, so a
 * pixel out of place shows. */
static inline uint8_t vga_pic13_pixel(unsigned x, unsigned y)
{
	if (x == 0 || y == 0 || x == VGA_PIC13_W - 1 || y == VGA_PIC13_H - 1)
		return 15;
	if (x == y || x == VGA_PIC13_W - 1 - y)
		return 255;
	if (y < 64)
		return (uint8_t)(x & 0xff);
	if (y < 128)
		return (uint8_t)((((x >> 3) ^ (y >> 3)) & 1) ? 40 + (y & 7) : 200 - (x & 7));
	return (uint8_t)((x * 3 + y * 7) & 0xff);
}

/* ---- the text screen ----------------------------------------------------- */

#define VGA_PIC_COLS 80
#define VGA_PIC_ROWS 25
#define VGA_PIC_CH   16

/* 8x16 glyphs of the characters the screen uses, row 0 first, bit 7 the
 * leftmost dot. 0xC4 (a horizontal line touching both edges) shows the
 * line-graphics rule: its 9th dot repeats the 8th. */
struct vga_pic_glyph {
	uint8_t ch;
	uint8_t rows[16];
};

static const struct vga_pic_glyph vga_pic_font[] = {
	{ ' ', { 0 } },
	{ 'K', { 0, 0, 0xc6, 0xcc, 0xd8, 0xf0, 0xe0, 0xf0, 0xd8, 0xcc, 0xc6, 0xc3, 0, 0, 0, 0 } },
	{ 'E', { 0, 0, 0xfe, 0xc0, 0xc0, 0xc0, 0xfc, 0xc0, 0xc0, 0xc0, 0xc0, 0xfe, 0, 0, 0, 0 } },
	{ 'S', { 0, 0, 0x7c, 0xc6, 0xc0, 0x60, 0x38, 0x0c, 0x06, 0x06, 0xc6, 0x7c, 0, 0, 0, 0 } },
	{ 'T', { 0, 0, 0xff, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0, 0, 0, 0 } },
	{ 'R', { 0, 0, 0xfc, 0xc6, 0xc6, 0xc6, 0xfc, 0xd8, 0xcc, 0xc6, 0xc6, 0xc3, 0, 0, 0, 0 } },
	{ 'L', { 0, 0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xfe, 0, 0, 0, 0 } },
	{ 'V', { 0, 0, 0xc3, 0xc3, 0xc3, 0x66, 0x66, 0x66, 0x3c, 0x3c, 0x18, 0x18, 0, 0, 0, 0 } },
	{ 'G', { 0, 0, 0x3c, 0x66, 0xc0, 0xc0, 0xce, 0xc6, 0xc6, 0xc6, 0x66, 0x3e, 0, 0, 0, 0 } },
	{ 'A', { 0, 0, 0x18, 0x3c, 0x66, 0xc3, 0xc3, 0xff, 0xc3, 0xc3, 0xc3, 0xc3, 0, 0, 0, 0 } },
	{ '1', { 0, 0, 0x18, 0x38, 0x78, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x7e, 0, 0, 0, 0 } },
	{ '2', { 0, 0, 0x7c, 0xc6, 0x06, 0x0c, 0x18, 0x30, 0x60, 0xc0, 0xc6, 0xfe, 0, 0, 0, 0 } },
	{ 0xc4, { 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0 } },
	{ 0x01,
	  { 0xff, 0x81, 0xbd, 0xa5, 0xa5, 0xbd, 0x81, 0xff, 0xaa, 0x55, 0xaa, 0x55, 0xaa, 0x55,
	    0xaa, 0x55 } },
};

#define VGA_PIC_NGLYPHS (sizeof(vga_pic_font) / sizeof(vga_pic_font[0]))

static inline const uint8_t *vga_pic_glyph(uint8_t ch)
{
	for (unsigned i = 0; i < VGA_PIC_NGLYPHS; i++)
		if (vga_pic_font[i].ch == ch)
			return vga_pic_font[i].rows;
	return vga_pic_font[0].rows;
}

/* The character and attribute of each cell (attributes below 0x80: with
 * AR10's blink bit set, bit 7 would blink). */
static inline uint16_t vga_pic_cell(unsigned col, unsigned row)
{
	static const char word[] = "KESTREL VGA 12";
	unsigned n = sizeof(word) - 1;

	if (row == 0 || row == VGA_PIC_ROWS - 1)
		return 0xc4 | 0x1e00; /* yellow on blue lines */
	if (row == 12 && col >= 33 && col < 33 + n)
		return (uint8_t)word[col - 33] | 0x4f00; /* white on red */
	if ((row + col) % 7 == 0)
		return 0x01 | (uint16_t)((((row + col) / 7) % 0x70 + 1) << 8);
	if (row % 4 == 2 && col % 10 < 6)
		return (uint8_t) "KESTRL"[col % 10] | (uint16_t)(((col + row) % 15 + 1) << 8);
	return ' ' | 0x0700;
}

/* ---- what a screendump must show (XRGB), from the definitions above ---- */

/* Mode 13h on a 640x400 screen: each pixel twice wide and twice high. */
static inline uint32_t vga_pic13_expect(unsigned x, unsigned y)
{
	uint8_t rgb[3];

	vga_pic_dac256(vga_pic13_pixel(x / 2, y / 2), rgb);
	return vga_pic_rgb6(rgb);
}

static inline uint32_t vga_pic_text_color(unsigned nibble)
{
	uint8_t rgb[3];

	vga_pic_dac64(vga_mode3.ar[nibble & 0xf], rgb);
	return vga_pic_rgb6(rgb);
}

/* The text screen on 720x400: 9x16 cells, the 9th dot blank except for the
 * line-graphics characters (mode 3 sets AR10 bit 2), no cursor. */
static inline uint32_t vga_pic_text_expect(unsigned x, unsigned y)
{
	unsigned col = x / 9, dot = x % 9, row = y / VGA_PIC_CH, line = y % VGA_PIC_CH;
	uint16_t cell = vga_pic_cell(col, row);
	uint8_t ch = (uint8_t)cell, attr = (uint8_t)(cell >> 8), bits = vga_pic_glyph(ch)[line];
	unsigned on;

	if (dot < 8)
		on = (bits >> (7 - dot)) & 1;
	else
		on = ch >= 0xc0 && ch <= 0xdf ? bits & 1 : 0;
	return vga_pic_text_color(on ? attr : attr >> 4);
}

/* ---- the VBE picture ----------------------------------------------------- */

#define VGA_PICV_W 640
#define VGA_PICV_H 480

static inline uint32_t vga_picv_pixel(unsigned x, unsigned y)
{
	uint32_t r = x * 255 / (VGA_PICV_W - 1), g = y * 255 / (VGA_PICV_H - 1);
	uint32_t b = ((x >> 4) ^ (y >> 4)) & 1 ? 0xff : (x ^ y) & 0x7f;

	return r << 16 | g << 8 | b;
}

/* ---- drawing them through the hardware ----------------------------------
 * The same register sequences for vga.bin (real port I/O and stores into the
 * window) and for tests/check_vga.c (the device's read/write ops), so both
 * program the device the same way. */
struct vga_pic_io {
	void (*out8)(uint16_t port, uint8_t v);
	uint8_t (*in8)(uint16_t port);
	void (*out16)(uint16_t port, uint16_t v);
	void (*mem64)(uint32_t addr, uint64_t v); /* 8 bytes at addr in A0000-BFFFF, ascending */
};

static inline void vga_pic_reg(const struct vga_pic_io *io, uint16_t port, unsigned i, uint8_t v)
{
	io->out8(port, (uint8_t)i);
	io->out8((uint16_t)(port + 1), v);
}

static inline void vga_pic_seq(const struct vga_pic_io *io, unsigned i, uint8_t v)
{
	vga_pic_reg(io, 0x3c4, i, v);
}

static inline void vga_pic_gfx(const struct vga_pic_io *io, unsigned i, uint8_t v)
{
	vga_pic_reg(io, 0x3ce, i, v);
}

static inline void vga_pic_crtc(const struct vga_pic_io *io, unsigned i, uint8_t v)
{
	vga_pic_reg(io, 0x3d4, i, v);
}

/* Bochs DISPI register i (index port 0x1CE, data 0x1CF). */
static inline void vga_pic_dispi(const struct vga_pic_io *io, unsigned i, uint16_t v)
{
	io->out16(0x1ce, (uint16_t)i);
	io->out16(0x1cf, v);
}

/* A mode from its table, as a BIOS sets it: misc, the sequencer (held in
 * reset meanwhile), the CRTC (unlocked first), graphics, attributes (the
 * flip-flop reset by reading input status 1), then the display on (AR
 * index bit 5). */
static inline void vga_pic_set_mode(const struct vga_pic_io *io, const struct vga_mode_regs *m)
{
	io->out8(0x3c2, m->misc);
	vga_pic_seq(io, 0, 0x01);
	for (unsigned i = 1; i < 5; i++)
		vga_pic_seq(io, i, m->sr[i]);
	vga_pic_seq(io, 0, 0x03);
	vga_pic_crtc(io, 0x11, m->cr[0x11] & 0x7f);
	for (unsigned i = 0; i < 25; i++)
		vga_pic_crtc(io, i, m->cr[i]);
	for (unsigned i = 0; i < 9; i++)
		vga_pic_gfx(io, i, m->gr[i]);
	(void)io->in8(0x3da);
	for (unsigned i = 0; i < 21; i++) {
		io->out8(0x3c0, (uint8_t)i);
		io->out8(0x3c0, m->ar[i]);
	}
	io->out8(0x3c0, 0x20);
}

static inline void vga_pic_load_dac(const struct vga_pic_io *io, void (*entry)(unsigned, uint8_t *),
				    unsigned n)
{
	uint8_t rgb[3];

	io->out8(0x3c6, 0xff);
	io->out8(0x3c8, 0);
	for (unsigned i = 0; i < n; i++) {
		entry(i, rgb);
		for (unsigned k = 0; k < 3; k++)
			io->out8(0x3c9, rgb[k]);
	}
}

/* The test font into plane 2 (map mask 4, sequential planar access at
 * A0000, 32 bytes a character), then mode 3's odd/even access back. */
static inline void vga_pic_load_font(const struct vga_pic_io *io)
{
	vga_pic_seq(io, 2, 0x04);
	vga_pic_seq(io, 4, 0x06);
	vga_pic_gfx(io, 4, 0x02);
	vga_pic_gfx(io, 5, 0x00);
	vga_pic_gfx(io, 6, 0x04);
	for (unsigned i = 0; i < VGA_PIC_NGLYPHS; i++)
		for (unsigned q = 0; q < 2; q++) {
			uint64_t v = 0;

			for (unsigned k = 0; k < 8; k++)
				v |= (uint64_t)vga_pic_font[i].rows[8 * q + k] << (8 * k);
			io->mem64(0xa0000 + vga_pic_font[i].ch * 32u + 8 * q, v);
		}
	vga_pic_seq(io, 2, vga_mode3.sr[2]);
	vga_pic_seq(io, 4, vga_mode3.sr[4]);
	vga_pic_gfx(io, 4, vga_mode3.gr[4]);
	vga_pic_gfx(io, 5, vga_mode3.gr[5]);
	vga_pic_gfx(io, 6, vga_mode3.gr[6]);
}

/* Mode 3 with no cursor, the EGA palette, the font, the screen at B8000. */
static inline void vga_pic_draw_text(const struct vga_pic_io *io)
{
	vga_pic_dispi(io, 4, 0);
	vga_pic_set_mode(io, &vga_mode3);
	vga_pic_crtc(io, 0x0a, 0x20);
	vga_pic_load_dac(io, vga_pic_dac64, 64);
	vga_pic_load_font(io);
	for (unsigned i = 0; i < VGA_PIC_COLS * VGA_PIC_ROWS / 4; i++) {
		uint64_t q = 0;

		for (unsigned k = 0; k < 4; k++) {
			unsigned c = 4 * i + k;

			q |= (uint64_t)vga_pic_cell(c % VGA_PIC_COLS, c / VGA_PIC_COLS) << (16 * k);
		}
		io->mem64(0xb8000 + 8 * i, q);
	}
}

/* Mode 13h, its palette, the picture through the window (chain-4). */
static inline void vga_pic_draw_13h(const struct vga_pic_io *io)
{
	vga_pic_dispi(io, 4, 0);
	vga_pic_set_mode(io, &vga_mode13);
	vga_pic_load_dac(io, vga_pic_dac256, 256);
	for (unsigned i = 0; i < VGA_PIC13_W * VGA_PIC13_H / 8; i++) {
		uint64_t q = 0;

		for (unsigned k = 0; k < 8; k++) {
			unsigned p = 8 * i + k;

			q |= (uint64_t)vga_pic13_pixel(p % VGA_PIC13_W, p / VGA_PIC13_W) << (8 * k);
		}
		io->mem64(0xa0000 + 8 * i, q);
	}
}

#endif
