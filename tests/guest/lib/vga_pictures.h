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
	.ar = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c,
		0x3d, 0x3e, 0x3f, 0x0c, 0x00, 0x0f, 0x08, 0x00 },
};

/* 320x200, 256 colours, chain-4: 640x400 on screen (each pixel doubled). */
static const struct vga_mode_regs vga_mode13 = {
	.misc = 0x63,
	.sr = { 0x03, 0x01, 0x0f, 0x00, 0x0e },
	.cr = { 0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x9c, 0x0e, 0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff },
	.gr = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0f, 0xff },
	.ar = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
		0x0d, 0x0e, 0x0f, 0x41, 0x00, 0x0f, 0x00, 0x00 },
};

/* 640x480, 16 colours, planar. */
static const struct vga_mode_regs vga_mode12 = {
	.misc = 0xe3,
	.sr = { 0x03, 0x01, 0x0f, 0x00, 0x06 },
	.cr = { 0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0x0b, 0x3e, 0x00, 0x40, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0xea, 0x0c, 0xdf, 0x28, 0x00, 0xe7, 0x04, 0xe3, 0xff },
	.gr = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0f, 0xff },
	.ar = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c,
		0x3d, 0x3e, 0x3f, 0x01, 0x00, 0x0f, 0x00, 0x00 },
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
#define VGA_PIC_CH 16

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
	{ 0x01, { 0xff, 0x81, 0xbd, 0xa5, 0xa5, 0xbd, 0x81, 0xff, 0xaa, 0x55, 0xaa, 0x55, 0xaa, 0x55,
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
		return 0xc4 | 0x1e00;                  /* yellow on blue lines */
	if (row == 12 && col >= 33 && col < 33 + n)
		return (uint8_t)word[col - 33] | 0x4f00; /* white on red */
	if ((row + col) % 7 == 0)
		return 0x01 | (uint16_t)((((row + col) / 7) % 0x70 + 1) << 8);
	if (row % 4 == 2 && col % 10 < 6)
		return (uint8_t)"KESTRL"[col % 10] | (uint16_t)(((col + row) % 15 + 1) << 8);
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

#endif
