/* vga-compare: screendumps against the VGA test pictures, pixel for pixel.
 *
 *   vga-compare expect 13h|text|vbe FILE   FILE against the picture computed
 *                                          from tests/guest/lib/vga_pictures.h
 *   vga-compare same FILE1 FILE2           two dumps against each other
 *   vga-compare raw FILE                   the pixels as B, G, R, 0 bytes on stdout
 *                                          (an XRGB8888 framebuffer, for md5sum)
 *   vga-compare count FILE                 how many pixels are not black
 *   vga-compare text FILE ROM              the text a mode 3 screen shows, read
 *                                          back cell by cell with the 8x16 font
 *                                          of the VGA BIOS ROM (vgabios-*.bin)
 *
 * FILE: a PNG (kestrel's screendump) or a binary PPM (QEMU's). Prints
 * "match WxH" and exits 0, or says how many pixels differ and where the
 * first is, and exits 1; 2 for an unreadable file. The expected pictures are
 * computed here from the definitions vga.bin draws, not by kestrel's
 * renderer. */
#include <png.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest/lib/vga_pictures.h"

struct image {
	uint32_t w, h;
	uint32_t *px; /* 0xRRGGBB */
};

static int ppm_skip(FILE *f)
{
	int c;

	while ((c = fgetc(f)) != EOF) {
		if (c == '#')
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
		else if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return ungetc(c, f) == EOF ? -1 : 0;
	}
	return -1;
}

static int ppm_load(const char *path, struct image *im)
{
	FILE *f = fopen(path, "rb");
	unsigned maxval;
	char magic[3] = "";

	if (!f || fread(magic, 1, 2, f) != 2 || strcmp(magic, "P6") || ppm_skip(f) ||
	    fscanf(f, "%u", &im->w) != 1 || ppm_skip(f) || fscanf(f, "%u", &im->h) != 1 ||
	    ppm_skip(f) || fscanf(f, "%u", &maxval) != 1 || maxval != 255 || fgetc(f) == EOF ||
	    !im->w || !im->h || im->w > 8192 || im->h > 8192)
		goto bad;
	im->px = calloc((size_t)im->w * im->h, sizeof(uint32_t));
	for (size_t i = 0; im->px && i < (size_t)im->w * im->h; i++) {
		uint8_t rgb[3];

		if (fread(rgb, 1, 3, f) != 3)
			goto bad;
		im->px[i] = (uint32_t)rgb[0] << 16 | rgb[1] << 8 | rgb[2];
	}
	fclose(f);
	return im->px ? 0 : -1;
bad:
	if (f)
		fclose(f);
	return -1;
}

static int png_load(const char *path, struct image *im)
{
	png_image img = { .version = PNG_IMAGE_VERSION };
	uint8_t *buf;

	if (!png_image_begin_read_from_file(&img, path))
		return -1;
	img.format = PNG_FORMAT_RGB;
	buf = malloc(PNG_IMAGE_SIZE(img));
	if (!buf || !png_image_finish_read(&img, NULL, buf, 0, NULL)) {
		free(buf);
		return -1;
	}
	im->w = img.width;
	im->h = img.height;
	im->px = calloc((size_t)im->w * im->h, sizeof(uint32_t));
	for (size_t i = 0; im->px && i < (size_t)im->w * im->h; i++)
		im->px[i] = (uint32_t)buf[3 * i] << 16 | buf[3 * i + 1] << 8 | buf[3 * i + 2];
	free(buf);
	return im->px ? 0 : -1;
}

static void load(const char *path, struct image *im)
{
	if (png_load(path, im) && ppm_load(path, im)) {
		fprintf(stderr, "vga-compare: %s: not a PNG or a binary PPM\n", path);
		exit(2);
	}
}

static uint32_t expect_vbe(unsigned x, unsigned y)
{
	return vga_picv_pixel(x, y);
}

/* The picture by name into im. */
static int picture(const char *name, struct image *im)
{
	uint32_t (*fn)(unsigned, unsigned);

	if (!strcmp(name, "13h")) {
		*im = (struct image){ 2 * VGA_PIC13_W, 2 * VGA_PIC13_H, NULL };
		fn = vga_pic13_expect;
	} else if (!strcmp(name, "text")) {
		*im = (struct image){ 9 * VGA_PIC_COLS, VGA_PIC_CH * VGA_PIC_ROWS, NULL };
		fn = vga_pic_text_expect;
	} else if (!strcmp(name, "vbe")) {
		*im = (struct image){ VGA_PICV_W, VGA_PICV_H, NULL };
		fn = expect_vbe;
	} else {
		return -1;
	}
	im->px = malloc((size_t)im->w * im->h * sizeof(uint32_t));
	if (!im->px)
		return -1;
	for (uint32_t y = 0; y < im->h; y++)
		for (uint32_t x = 0; x < im->w; x++)
			im->px[(size_t)y * im->w + x] = fn(x, y);
	return 0;
}

static int compare(const char *what, const struct image *got, const struct image *want)
{
	size_t diff = 0, first = 0;

	if (got->w != want->w || got->h != want->h) {
		printf("%s: %ux%u, expected %ux%u\n", what, got->w, got->h, want->w, want->h);
		return 1;
	}
	for (size_t i = 0; i < (size_t)got->w * got->h; i++)
		if (got->px[i] != want->px[i] && !diff++)
			first = i;
	if (!diff) {
		printf("match %ux%u\n", got->w, got->h);
		return 0;
	}
	printf("%s: %zu of %zu pixels differ; the first at %zu,%zu is %06x, expected %06x\n", what,
	       diff, (size_t)got->w * got->h, first % got->w, first / got->w, got->px[first],
	       want->px[first]);
	return 1;
}

/* ---- reading a text screen back ---- */

#define FONT_H 16

/* The VGA BIOS's 8x16 font: IBM's, found in the ROM by its first two
 * glyphs (a blank and the smiley). */
static int rom_font(const char *path, uint8_t font[256][FONT_H])
{
	static const uint8_t smiley[FONT_H] = { 0,    0,    0x7e, 0x81, 0xa5, 0x81, 0x81, 0xbd,
						0x99, 0x81, 0x81, 0x7e, 0,    0,    0,	  0 };
	static uint8_t rom[256 * 1024];
	FILE *f = fopen(path, "rb");
	size_t n = f ? fread(rom, 1, sizeof(rom), f) : 0;

	if (f)
		fclose(f);
	for (size_t i = 0; i + 256 * FONT_H <= n; i++) {
		bool blank = true;

		for (size_t k = 0; k < FONT_H && blank; k++)
			blank = !rom[i + k];
		if (blank && !memcmp(rom + i + FONT_H, smiley, FONT_H)) {
			memcpy(font, rom + i, 256 * FONT_H);
			return 0;
		}
	}
	return -1;
}

/* The cell's commonest colour is its background; the glyph is the pixels
 * of the other colours in its first 8 columns (the 9th repeats the 8th or
 * is background). */
static int cell_char(const struct image *im, uint32_t x0, uint32_t y0, uint32_t cw,
		     const uint8_t font[256][FONT_H])
{
	uint32_t bg = im->px[(size_t)y0 * im->w + x0], best = 0;
	uint8_t rows[FONT_H] = { 0 };

	for (uint32_t i = 0; i < cw * FONT_H; i++) {
		uint32_t c = im->px[(size_t)(y0 + i / cw) * im->w + x0 + i % cw], n = 0;

		for (uint32_t j = 0; j < cw * FONT_H; j++)
			n += im->px[(size_t)(y0 + j / cw) * im->w + x0 + j % cw] == c;
		if (n > best) {
			best = n;
			bg = c;
		}
	}
	for (uint32_t y = 0; y < FONT_H; y++)
		for (uint32_t x = 0; x < 8; x++)
			if (im->px[(size_t)(y0 + y) * im->w + x0 + x] != bg)
				rows[y] |= (uint8_t)(0x80 >> x);
	if (!memcmp(rows, font[' '], FONT_H))
		return ' ';
	for (int ch = 0x21; ch < 0x7f; ch++)
		if (!memcmp(rows, font[ch], FONT_H))
			return ch;
	return '?';
}

static int read_text(const struct image *im, const char *rom)
{
	static uint8_t font[256][FONT_H];
	uint32_t cw = im->w % 9 == 0 ? 9 : 8;

	if (rom_font(rom, font)) {
		fprintf(stderr, "vga-compare: %s: no 8x16 VGA font in it\n", rom);
		return 2;
	}
	if (im->w % cw || im->h % FONT_H) {
		printf("%ux%u is not a screen of %ux%u cells\n", im->w, im->h, cw, FONT_H);
		return 1;
	}
	for (uint32_t y = 0; y < im->h; y += FONT_H) {
		char line[512];
		size_t n = 0;

		for (uint32_t x = 0; x + cw <= im->w && n < sizeof(line) - 1; x += cw)
			line[n++] = (char)cell_char(im, x, y, cw, font);
		while (n && line[n - 1] == ' ')
			n--;
		line[n] = '\0';
		printf("%s\n", line);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct image a, b;

	if (argc == 4 && !strcmp(argv[1], "expect")) {
		if (picture(argv[2], &b)) {
			fprintf(stderr, "vga-compare: no picture '%s' (13h, text, vbe)\n", argv[2]);
			return 2;
		}
		load(argv[3], &a);
		return compare(argv[3], &a, &b);
	}
	if (argc == 4 && !strcmp(argv[1], "same")) {
		load(argv[2], &a);
		load(argv[3], &b);
		return compare(argv[2], &a, &b);
	}
	if (argc == 3 && !strcmp(argv[1], "raw")) {
		load(argv[2], &a);
		for (size_t i = 0; i < (size_t)a.w * a.h; i++) {
			uint8_t bgrx[4] = { (uint8_t)a.px[i], (uint8_t)(a.px[i] >> 8),
					    (uint8_t)(a.px[i] >> 16), 0 };

			fwrite(bgrx, 1, 4, stdout);
		}
		return fflush(stdout) ? 2 : 0;
	}
	if (argc == 3 && !strcmp(argv[1], "count")) {
		size_t n = 0;

		load(argv[2], &a);
		for (size_t i = 0; i < (size_t)a.w * a.h; i++)
			n += a.px[i] != 0;
		printf("%zu\n", n);
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "text")) {
		load(argv[2], &a);
		return read_text(&a, argv[3]);
	}
	fprintf(stderr,
		"usage: vga-compare expect 13h|text|vbe FILE | same FILE1 FILE2 | raw FILE | "
		"count FILE | text FILE ROM\n");
	return 2;
}
