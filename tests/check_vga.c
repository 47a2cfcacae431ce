/* Standard VGA: the PCI function, register semantics (write modes, read
 * modes, latches, map mask, chain-4, odd/even), drawing (text with the
 * guest's font, mode 13h, mode 12h, VBE packed modes, panning) against
 * pictures computed from tests/guest/lib/vga_pictures.h (not by the
 * renderer), dirty tracking and change reports, hostile register values,
 * a register fuzz, and save/load. */
#include <check.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "kestrel/devices.h"
#include "kestrel/display.h"
#include "kestrel/pci.h"
#include "kestrel/vga.h"
#include "fake_board.h"
#include "guest/lib/vga_pictures.h"

#define LFB  3 /* the device's BAR 0 region (MMIO fallback) */
#define MMIO 4 /* BAR 2 */

static struct display *disp;
static struct device *vga;

static struct device *new_vga(struct display *d, struct device *host, const struct vga_lfb_ops *lfb)
{
	struct vga_opts o = { .vram_size = VGA_VRAM_DEFAULT, .now_ns = fake_now_ns, .lfb = lfb };
	struct device *v = NULL;

	ck_assert_int_eq(vga_create(&o, host, host ? 2 : -1, d, &v), 0);
	return v;
}

static void setup(void)
{
	fake_ns = 0;
	disp = display_create();
	ck_assert_ptr_nonnull(disp);
	vga = new_vga(disp, NULL, NULL);
}

static void teardown(void)
{
	vga->ops->destroy(vga);
	display_destroy(disp);
}

/* ---- driving the device as a guest would ---- */

static void out8(unsigned port, uint8_t v)
{
	dev_wr(vga, VGA_REGION_PORTS, port - VGA_PORTS_BASE, 1, v);
}

static uint8_t in8(unsigned port)
{
	return (uint8_t)dev_rd(vga, VGA_REGION_PORTS, port - VGA_PORTS_BASE, 1);
}

static void io_out8(uint16_t port, uint8_t v)
{
	out8(port, v);
}

static uint8_t io_in8(uint16_t port)
{
	return in8(port);
}

static void io_out16(uint16_t port, uint16_t v)
{
	dev_wr(vga, VGA_REGION_DISPI, port - VGA_DISPI_BASE, 2, v);
}

static void io_mem64(uint32_t addr, uint64_t v)
{
	dev_wr(vga, VGA_REGION_WINDOW, addr - VGA_WINDOW_BASE, 8, v);
}

/* The register sequences vga.bin uses too (tests/guest/lib/vga_pictures.h). */
static const struct vga_pic_io io = { io_out8, io_in8, io_out16, io_mem64 };

#define seq(i, v)   vga_pic_seq(&io, i, v)
#define gfx(i, v)   vga_pic_gfx(&io, i, v)
#define crtc(i, v)  vga_pic_crtc(&io, i, v)
#define dispi(i, v) vga_pic_dispi(&io, i, v)

static void wmem(uint32_t addr, uint8_t v)
{
	dev_wr(vga, VGA_REGION_WINDOW, addr - VGA_WINDOW_BASE, 1, v);
}

static uint8_t rmem(uint32_t addr)
{
	return (uint8_t)dev_rd(vga, VGA_REGION_WINDOW, addr - VGA_WINDOW_BASE, 1);
}

static uint16_t dispi_rd(unsigned i)
{
	dev_wr(vga, VGA_REGION_DISPI, 0, 2, i);
	return (uint16_t)dev_rd(vga, VGA_REGION_DISPI, 1, 2);
}

static uint8_t *vram(void)
{
	return vga_vram(vga, NULL);
}

static void dac_set(uint8_t index, uint8_t r, uint8_t g, uint8_t b)
{
	out8(0x3c8, index);
	out8(0x3c9, r);
	out8(0x3c9, g);
	out8(0x3c9, b);
}

static void set_mode(const struct vga_mode_regs *m)
{
	vga_pic_set_mode(&io, m);
}

static void load_dac(void (*entry)(unsigned, uint8_t *), unsigned n)
{
	vga_pic_load_dac(&io, entry, n);
}

static void draw_text_screen(void)
{
	vga_pic_draw_text(&io);
}

static void draw_mode13(void)
{
	vga_pic_draw_13h(&io);
}

static struct display_status refresh(void)
{
	struct display_status st;

	display_lock(disp);
	display_refresh(disp, &st);
	display_unlock(disp);
	return st;
}

static uint32_t px(unsigned x, unsigned y)
{
	const struct display_surface *s = display_surface(disp);

	ck_assert_uint_lt(x, s->width);
	ck_assert_uint_lt(y, s->height);
	return s->pixels[(size_t)y * s->stride + x];
}

/* The whole surface against an expected picture; the first difference named. */
static void expect_picture(unsigned w, unsigned h, uint32_t (*expect)(unsigned, unsigned))
{
	const struct display_surface *s = display_surface(disp);

	ck_assert_uint_eq(s->width, w);
	ck_assert_uint_eq(s->height, h);
	for (unsigned y = 0; y < h; y++)
		for (unsigned x = 0; x < w; x++)
			ck_assert_msg(px(x, y) == expect(x, y),
				      "pixel %u,%u is %06x, expected %06x", x, y, px(x, y),
				      expect(x, y));
}

/* Planar access at A0000 (64 KiB), all planes, write mode 0, no function. */
static void planar(void)
{
	seq(2, 0x0f);
	seq(4, 0x06);
	gfx(0, 0);
	gfx(1, 0);
	gfx(3, 0);
	gfx(4, 0);
	gfx(5, 0x00);
	gfx(6, 0x05);
	gfx(8, 0xff);
}

static uint32_t plane_dword(uint32_t off)
{
	uint32_t v;

	memcpy(&v, vram() + 4 * off, 4);
	return v;
}

/* ---- the PCI function ---- */

START_TEST(test_pci_function)
{
	struct pci_board board = { 0 };
	struct device *host = pci_host_create(&board);
	struct display *d2 = display_create();
	static const uint8_t rom[3000] = { 0x55, 0xaa, 6 };
	struct vga_opts o = { .vram_size = MiB(16), .rom = rom, .rom_len = sizeof(rom) };
	struct device *v;
	struct pci_dev *p;

	ck_assert_int_eq(vga_create(&o, host, 2, d2, &v), 0);
	p = pci_host_fn(host, 2, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(pci_cfg_read(p, 0, 4), 0x11111234);
	ck_assert_uint_eq(pci_cfg_read(p, 8, 4), 0x03000002); /* class 0300, revision 2 */
	pci_cfg_write(p, 0x10, 4, 0xffffffff);
	ck_assert_uint_eq(pci_cfg_read(p, 0x10, 4), 0xff000008); /* 16 MiB, prefetchable */
	pci_cfg_write(p, 0x18, 4, 0xffffffff);
	ck_assert_uint_eq(pci_cfg_read(p, 0x18, 4), 0xfffff000); /* 4 KiB registers */
	pci_cfg_write(p, 0x30, 4, 0xffffffff);
	ck_assert_uint_eq(pci_cfg_read(p, 0x30, 4), 0xfffff001); /* 4 KiB ROM */
	ck_assert_uint_eq(pci_cfg_read(p, 0x2c, 4), 0x11001af4);
	v->ops->destroy(v);
	host->ops->destroy(host);
	display_destroy(d2);
}
END_TEST

START_TEST(test_bad_options)
{
	struct vga_opts o = { .vram_size = MiB(3) };
	struct device *v;

	ck_assert_int_eq(vga_create(&o, NULL, -1, NULL, &v), -EINVAL);
	o.vram_size = MiB(512);
	ck_assert_int_eq(vga_create(&o, NULL, -1, NULL, &v), -EINVAL);
	o.vram_size = KiB(512);
	ck_assert_int_eq(vga_create(&o, NULL, -1, NULL, &v), -EINVAL);
}
END_TEST

/* ---- registers ---- */

START_TEST(test_register_readback)
{
	out8(0x3c2, 0x67);
	ck_assert_uint_eq(in8(0x3cc), 0x67);
	seq(2, 0xff);
	ck_assert_uint_eq(in8(0x3c5), 0x0f); /* SR2 keeps 4 bits */
	gfx(5, 0xff);
	ck_assert_uint_eq(in8(0x3cf), 0x7b);
	crtc(0x0e, 0x12);
	ck_assert_uint_eq(in8(0x3d5), 0x12);
	/* CR11 bit 7 protects CR0-7, but CR7 bit 4 stays writable. */
	crtc(0x11, 0x80);
	crtc(0x01, 0x4f);
	crtc(0x07, 0xff);
	crtc(0x11, 0x00);
	out8(0x3d4, 0x01);
	ck_assert_uint_eq(in8(0x3d5), 0);
	out8(0x3d4, 0x07);
	ck_assert_uint_eq(in8(0x3d5), 0x10);
	/* Mono addressing: the colour CRTC ports do not answer. */
	out8(0x3c2, 0x66);
	ck_assert_uint_eq(in8(0x3d5), 0xff);
	out8(0x3b4, 0x0e);
	ck_assert_uint_eq(in8(0x3b5), 0x12);
}
END_TEST

START_TEST(test_status_and_attribute_flipflop)
{
	uint8_t a, b;

	out8(0x3c2, 0x67);
	a = in8(0x3da);
	b = in8(0x3da);
	ck_assert_uint_eq((a ^ b) & 0x09, 0x09); /* retrace and display enable toggle */
	out8(0x3c0, 0x10);			 /* index */
	out8(0x3c0, 0x0c);			 /* data */
	out8(0x3c0, 0x10);
	ck_assert_uint_eq(in8(0x3c1), 0x0c);
	ck_assert_uint_eq(in8(0x3c0), 0x10);
	out8(0x3c0, 0x11); /* a data write the flip-flop expects */
	(void)in8(0x3da);  /* resets it to index */
	out8(0x3c0, 0x12);
	out8(0x3c0, 0x05);
	out8(0x3c0, 0x12);
	ck_assert_uint_eq(in8(0x3c1), 0x05);
}
END_TEST

START_TEST(test_dac)
{
	out8(0x3c8, 10);
	out8(0x3c9, 1);
	out8(0x3c9, 2);
	out8(0x3c9, 3);
	out8(0x3c9, 4); /* index 11 */
	ck_assert_uint_eq(in8(0x3c8), 11);
	out8(0x3c7, 10);
	ck_assert_uint_eq(in8(0x3c7), 3);
	ck_assert_uint_eq(in8(0x3c9), 1);
	ck_assert_uint_eq(in8(0x3c9), 2);
	ck_assert_uint_eq(in8(0x3c9), 3);
	ck_assert_uint_eq(in8(0x3c9), 0); /* index 11, red: still in the cache */
	ck_assert_uint_eq(in8(0x3c6), 0xff);
}
END_TEST

/* Write mode 0: rotate, set/reset per plane, the function with the latches,
 * the bit mask keeping latched bits. */
START_TEST(test_write_mode0)
{
	planar();
	wmem(0xa0000, 0x5a);
	ck_assert_uint_eq(plane_dword(0), 0x5a5a5a5a);
	gfx(3, 0x02); /* rotate right by 2 */
	wmem(0xa0001, 0x81);
	ck_assert_uint_eq(plane_dword(1), 0x60606060);
	gfx(3, 0);
	gfx(0, 0x05); /* set/reset value: planes 0 and 2 */
	gfx(1, 0x03); /* enabled for planes 0 and 1 */
	wmem(0xa0002, 0x3c);
	ck_assert_uint_eq(plane_dword(2), 0x3c3c00ff);
	gfx(1, 0);
	/* Latches from offset 0 (5a); bit mask f0: the high nibble from the
	 * operation, the low one (a) from the latches. */
	(void)rmem(0xa0000);
	gfx(8, 0xf0);
	gfx(3, 0x18); /* XOR: 5a ^ f0 = aa */
	wmem(0xa0003, 0xf0);
	ck_assert_uint_eq(plane_dword(3), 0xaaaaaaaa);
	gfx(3, 0x08); /* AND: 5a & 30 = 10 */
	wmem(0xa0003, 0x30);
	ck_assert_uint_eq(plane_dword(3), 0x1a1a1a1a);
	gfx(3, 0x10); /* OR: 5a | a5 = ff */
	wmem(0xa0003, 0xa5);
	ck_assert_uint_eq(plane_dword(3), 0xfafafafa);
}
END_TEST

START_TEST(test_write_modes_1_2_3)
{
	planar();
	wmem(0xa0010, 0x11);
	seq(2, 0x04);
	wmem(0xa0010, 0xee); /* plane 2 differs */
	seq(2, 0x0f);
	ck_assert_uint_eq(plane_dword(0x10), 0x11ee1111);
	/* Mode 1: the latches copied whole, the bit mask ignored. */
	(void)rmem(0xa0010);
	gfx(5, 0x01);
	gfx(8, 0x00);
	wmem(0xa0020, 0x00);
	ck_assert_uint_eq(plane_dword(0x20), 0x11ee1111);
	/* Mode 2: CPU bits 0-3 fill the planes, through the bit mask. */
	gfx(5, 0x02);
	gfx(8, 0xf0);
	(void)rmem(0xa0030); /* latches 0 */
	wmem(0xa0030, 0x09); /* planes 0 and 3 */
	ck_assert_uint_eq(plane_dword(0x30), 0xf00000f0);
	/* Mode 3: set/reset value through (rotated CPU byte & bit mask). */
	gfx(5, 0x03);
	gfx(0, 0x06); /* planes 1 and 2 */
	gfx(8, 0x3c);
	gfx(3, 0x04); /* rotate by 4: 0xf0 -> 0x0f */
	(void)rmem(0xa0040);
	wmem(0xa0040, 0xf0);
	ck_assert_uint_eq(plane_dword(0x40), 0x000c0c00);
}
END_TEST

START_TEST(test_map_mask)
{
	planar();
	seq(2, 0x0a);
	wmem(0xa0005, 0xcd);
	ck_assert_uint_eq(plane_dword(5), 0xcd00cd00);
}
END_TEST

START_TEST(test_read_modes)
{
	planar();
	seq(2, 0x01);
	wmem(0xa0000, 0xf0);
	seq(2, 0x02);
	wmem(0xa0000, 0xcc);
	seq(2, 0x04);
	wmem(0xa0000, 0xaa);
	seq(2, 0x08);
	wmem(0xa0000, 0x0f);
	seq(2, 0x0f);
	for (unsigned p = 0; p < 4; p++) {
		gfx(4, (uint8_t)p);
		ck_assert_uint_eq(rmem(0xa0000), ((const uint8_t[]){ 0xf0, 0xcc, 0xaa, 0x0f })[p]);
	}
	/* Read mode 1: bit b is 1 where the planes' bits equal colour compare.
	 * Pixels (msb first): planes give colours 7,3,5,1,e,a,c,8 ... */
	gfx(5, 0x08);
	gfx(7, 0x0f);
	gfx(2, 0x07); /* colour 7 = planes 0,1,2 set, 3 clear */
	ck_assert_uint_eq(rmem(0xa0000), 0x80);
	gfx(7, 0x03); /* planes 2 and 3: don't care */
	gfx(2, 0x03);
	ck_assert_uint_eq(rmem(0xa0000), 0xc0); /* colours 7 and 3 have planes 0,1 set */
	gfx(7, 0x00);				/* everything don't care: all match */
	ck_assert_uint_eq(rmem(0xa0000), 0xff);
}
END_TEST

START_TEST(test_chain4_and_odd_even)
{
	/* Chain-4: address A is plane A & 3 at offset A >> 2 = VRAM byte A. */
	seq(2, 0x0f);
	seq(4, 0x0e);
	gfx(5, 0x40);
	gfx(6, 0x05);
	for (unsigned a = 0; a < 8; a++)
		wmem(0xa0100 + a, (uint8_t)(0x10 + a));
	for (unsigned a = 0; a < 8; a++)
		ck_assert_uint_eq(vram()[0x100 + a], 0x10 + a);
	seq(2, 0x05); /* planes 0 and 2 only */
	wmem(0xa0200, 1);
	wmem(0xa0201, 2);
	ck_assert_uint_eq(vram()[0x200], 1);
	ck_assert_uint_eq(vram()[0x201], 0);
	ck_assert_uint_eq(rmem(0xa0100 + 3), 0x13);
	/* Odd/even at B8000: even bytes to plane 0, odd to plane 1. */
	seq(2, 0x03);
	seq(4, 0x02);
	gfx(5, 0x10);
	gfx(6, 0x0e);
	wmem(0xb8000, 'A');
	wmem(0xb8001, 0x1f);
	wmem(0xb8002, 'B');
	ck_assert_uint_eq(vram()[0], 'A');
	ck_assert_uint_eq(vram()[1], 0x1f);
	ck_assert_uint_eq(vram()[4], 'B');
	ck_assert_uint_eq(rmem(0xb8002), 'B');
	ck_assert_uint_eq(rmem(0xa0000), 0xff); /* outside the B8000 map */
	gfx(4, 0x02);				/* plane pair 2/3 for reads */
	vram()[6] = 0x77;
	ck_assert_uint_eq(rmem(0xb8002), 0x77);
}
END_TEST

/* ---- drawing ---- */

START_TEST(test_text_screen)
{
	struct display_status st;

	draw_text_screen();
	st = refresh();
	ck_assert(st.text);
	expect_picture(720, 400, vga_pic_text_expect);
	ck_assert_int_eq(st.next_ms, -1); /* no cursor, nothing blinking */
}
END_TEST

/* The font is the guest's: change a glyph in plane 2 and the cells using it
 * change. */
START_TEST(test_text_font_change)
{
	unsigned col = 33, row = 12; /* 'K' */
	uint32_t fg = vga_pic_text_color(0xf);

	draw_text_screen();
	refresh();
	ck_assert_uint_eq(px(col * 9 + 2, row * 16 + 3), vga_pic_text_color(4));
	seq(2, 0x04);
	seq(4, 0x06);
	gfx(4, 0x02);
	gfx(5, 0x00);
	gfx(6, 0x04);
	wmem(0xa0000 + 'K' * 32 + 3, 0xff);
	seq(2, 0x03);
	seq(4, 0x02);
	gfx(5, 0x10);
	gfx(6, 0x0e);
	refresh();
	for (unsigned x = 0; x < 8; x++)
		ck_assert_uint_eq(px(col * 9 + x, row * 16 + 3), fg);
	ck_assert_uint_eq(px(col * 9 + 8, row * 16 + 3), vga_pic_text_color(4));
}
END_TEST

START_TEST(test_text_cursor_and_blink)
{
	unsigned col = 5, row = 3;
	uint32_t fg = vga_pic_text_color(0x7), bg = vga_pic_text_color(0),
		 red = vga_pic_text_color(4);
	uint32_t cur = row * 80 + col;
	struct display_status st;

	draw_text_screen();
	crtc(0x0a, 14);
	crtc(0x0b, 15);
	crtc(0x0e, (uint8_t)(cur >> 8));
	crtc(0x0f, (uint8_t)cur);
	wmem(0xb8000 + 2 * cur, ' ');
	wmem(0xb8000 + 2 * cur + 1, 0x07);
	fake_ns = 1000; /* cursor phase on */
	st = refresh();
	ck_assert_uint_eq(px(col * 9 + 4, row * 16 + 14), fg);
	ck_assert_uint_eq(px(col * 9 + 8, row * 16 + 15), fg);
	ck_assert_uint_eq(px(col * 9 + 4, row * 16 + 13), bg);
	ck_assert_int_gt(st.next_ms, 0);
	ck_assert_int_le(st.next_ms, 267);
	fake_ns = 300000000; /* off */
	refresh();
	ck_assert_uint_eq(px(col * 9 + 4, row * 16 + 14), bg);
	/* Blink attribute (AR10 bit 3 is set in mode 3): background from 3
	 * bits, the character gone in the off phase. */
	wmem(0xb8000 + 2 * cur, 0x01);
	wmem(0xb8000 + 2 * cur + 1, 0xcf); /* blink, bg 4 (red), fg f */
	crtc(0x0a, 0x20);
	fake_ns = 1000;
	refresh();
	ck_assert_uint_eq(px(col * 9, row * 16), vga_pic_text_color(0xf));
	fake_ns = 600000000; /* blink off */
	st = refresh();
	ck_assert_uint_eq(px(col * 9, row * 16), red);
	ck_assert_int_gt(st.next_ms, 0);
}
END_TEST

START_TEST(test_mode13)
{
	draw_mode13();
	refresh();
	expect_picture(640, 400, vga_pic13_expect);
}
END_TEST

/* Mode 12h through write mode 2 (a colour per pixel, the bit mask picking
 * the pixel), as a BIOS putpixel does. */
START_TEST(test_mode12)
{
	set_mode(&vga_mode12);
	load_dac(vga_pic_dac64, 64);
	gfx(5, 0x02);
	for (unsigned x = 0; x < 64; x++) {
		uint32_t a = 0xa0000 + 100 * 80 + x / 8;

		gfx(8, (uint8_t)(0x80 >> (x % 8)));
		(void)rmem(a);
		wmem(a, (uint8_t)(x / 4));
	}
	refresh();
	ck_assert_uint_eq(display_surface(disp)->width, 640);
	ck_assert_uint_eq(display_surface(disp)->height, 480);
	for (unsigned x = 0; x < 64; x++) {
		uint8_t rgb[3];

		vga_pic_dac64(vga_mode12.ar[x / 4], rgb);
		ck_assert_uint_eq(px(x, 100), vga_pic_rgb6(rgb));
	}
	ck_assert_uint_eq(px(0, 99), 0);
	/* AR12 colour plane enable masks planes out of the index. */
	(void)in8(0x3da);
	out8(0x3c0, 0x12);
	out8(0x3c0, 0x01);
	out8(0x3c0, 0x20);
	refresh();
	{
		uint8_t rgb[3];

		vga_pic_dac64(vga_mode12.ar[(60 / 4) & 1], rgb);
		ck_assert_uint_eq(px(60, 100), vga_pic_rgb6(rgb));
	}
}
END_TEST

static void vbe_mode(unsigned w, unsigned h, unsigned bpp)
{
	dispi(4, 0);
	dispi(1, (uint16_t)w);
	dispi(2, (uint16_t)h);
	dispi(3, (uint16_t)bpp);
	dispi(4, 0x41);
	out8(0x3c2, 0x01);
	(void)in8(0x3da);
	out8(0x3c0, 0x20);
}

static void lfb_write32(uint64_t off, uint32_t v)
{
	dev_wr(vga, LFB, off, 4, v);
}

static uint32_t picv(unsigned x, unsigned y)
{
	return vga_picv_pixel(x, y);
}

START_TEST(test_vbe_32bpp)
{
	vbe_mode(VGA_PICV_W, VGA_PICV_H, 32);
	ck_assert_uint_eq(dispi_rd(0), 0xb0c5);
	ck_assert_uint_eq(dispi_rd(0xa), 256); /* 16 MiB in 64 KiB units */
	ck_assert_uint_eq(dispi_rd(7), 16 * 1024 * 1024 / (640 * 4));
	for (unsigned y = 0; y < VGA_PICV_H; y++)
		for (unsigned x = 0; x < VGA_PICV_W; x++)
			lfb_write32(4ull * (y * VGA_PICV_W + x), picv(x, y));
	refresh();
	expect_picture(VGA_PICV_W, VGA_PICV_H, picv);
	/* QEMU's byte-order register: big-endian pixels. */
	dev_wr(vga, MMIO, 0x604, 4, 0xbebebebe);
	lfb_write32(0, 0x00123456);
	refresh();
	ck_assert_uint_eq(px(0, 0), 0x341200); /* bytes 56 34 12 00: x r g b */
}
END_TEST

/* bochs-drm sets a mode with DISPI off and the attribute controller on
 * (drivers/gpu/drm/tiny/bochs.c, bochs_hw_setmode): for a moment the legacy
 * registers of a VGA no BIOS programmed - one 9x1 text cell - are the
 * picture. QEMU draws nothing for a text screen of one cell or less (its
 * vga_draw_text: "transient size is too small"); neither may we, or a VNC
 * client is resized to 9x1 between the two real modes. */
START_TEST(test_transient_text_size)
{
	uint32_t w, h;

	refresh();
	w = display_surface(disp)->width;
	h = display_surface(disp)->height;
	/* bochs_hw_blank(false), then DISPI off: the registers as reset. */
	out8(0x3c2, 0x01);
	(void)in8(0x3da);
	out8(0x3c0, 0x20);
	dispi(4, 0);
	refresh();
	ck_assert_uint_eq(display_surface(disp)->width, w);
	ck_assert_uint_eq(display_surface(disp)->height, h);
	vbe_mode(1024, 768, 32);
	refresh();
	ck_assert_uint_eq(display_surface(disp)->width, 1024);
	ck_assert_uint_eq(display_surface(disp)->height, 768);
}
END_TEST

/* Two cells are a screen (QEMU's rule too). */
START_TEST(test_two_cell_text)
{
	out8(0x3c2, 0x01);
	(void)in8(0x3da);
	out8(0x3c0, 0x20);
	crtc(0x01, 1);
	refresh();
	ck_assert_uint_eq(display_surface(disp)->width, 18);
	ck_assert_uint_eq(display_surface(disp)->height, 1);
}
END_TEST

START_TEST(test_vbe_16_24_8bpp)
{
	vbe_mode(64, 8, 16);
	dev_wr(vga, LFB, 0, 2, 0xf800); /* red 5:6:5 */
	dev_wr(vga, LFB, 2, 2, 0x07e0);
	refresh();
	ck_assert_uint_eq(px(0, 0), 0xf80000);
	ck_assert_uint_eq(px(1, 0), 0x00fc00);
	vbe_mode(64, 8, 15);
	dev_wr(vga, LFB, 0, 2, 0x7c00);
	refresh();
	ck_assert_uint_eq(px(0, 0), 0xf80000);
	vbe_mode(64, 8, 24);
	dev_wr(vga, LFB, 3, 1, 0x11); /* pixel 1: b g r */
	dev_wr(vga, LFB, 4, 1, 0x22);
	dev_wr(vga, LFB, 5, 1, 0x33);
	refresh();
	ck_assert_uint_eq(px(1, 0), 0x332211);
	vbe_mode(64, 8, 8);
	dac_set(9, 0x3f, 0x00, 0x15);
	dev_wr(vga, LFB, 64 + 3, 1, 9);
	refresh();
	ck_assert_uint_eq(px(3, 1), 0xff0057);
	/* An 8-bit DAC takes the palette as it is. */
	dispi(4, 0x41 | 0x20);
	dac_set(9, 0x80, 0x40, 0x20);
	dev_wr(vga, LFB, 64 + 3, 1, 9);
	refresh();
	ck_assert_uint_eq(px(3, 1), 0x804020);
}
END_TEST

/* Virtual width and offsets: the screen is a window on a larger canvas. */
START_TEST(test_vbe_panning)
{
	vbe_mode(320, 200, 32);
	dispi(6, 1024);
	dispi(8, 16);
	dispi(9, 100);
	ck_assert_uint_eq(dispi_rd(6), 1024);
	lfb_write32(4ull * (100 * 1024 + 16), 0xabcdef);
	lfb_write32(4ull * (101 * 1024 + 17), 0x123456);
	refresh();
	ck_assert_uint_eq(px(0, 0), 0xabcdef);
	ck_assert_uint_eq(px(1, 1), 0x123456);
	dispi(9, 101); /* scroll by a line */
	refresh();
	ck_assert_uint_eq(px(1, 0), 0x123456);
}
END_TEST

/* Hostile DISPI values are clamped to what the VRAM holds; the guest reads
 * the clamped values back and drawing stays inside the VRAM (ASan). */
START_TEST(test_vbe_hostile)
{
	vbe_mode(0xffff, 0xffff, 32);
	ck_assert_uint_eq(dispi_rd(1), 2560);
	ck_assert_uint_eq(dispi_rd(2), 1600);
	dispi(6, 0xffff);
	ck_assert_uint_eq(dispi_rd(6), 2560);
	dispi(9, 0xffff); /* a screen past the VRAM: back to 0 */
	ck_assert_uint_eq(dispi_rd(9), 0);
	dispi(8, 0xffff);
	ck_assert_uint_le(dispi_rd(8), 2560);
	refresh();
	ck_assert_uint_eq(display_surface(disp)->width, 2560);
	dispi(3, 7); /* no such depth */
	ck_assert_uint_eq(dispi_rd(3), 8);
	dispi(1, 13); /* odd widths round down to 8 */
	ck_assert_uint_eq(dispi_rd(1), 8);
	dispi(1, 0);
	ck_assert_uint_eq(dispi_rd(1), 8);
	refresh();
	dispi(4, 0x43); /* GETCAPS */
	ck_assert_uint_eq(dispi_rd(1), 2560);
	ck_assert_uint_eq(dispi_rd(3), 32);
	dispi(5, 0xffff); /* bank: masked to the VRAM */
	ck_assert_uint_eq(dispi_rd(5), 255);
	dispi(0, 0x1234); /* not an ID: ignored */
	ck_assert_uint_eq(dispi_rd(0), 0xb0c5);
	dispi(0x55, 1);
	ck_assert_uint_eq(dispi_rd(0x55), 0);
	refresh();
}
END_TEST

/* Legacy CRTC values that would read past the planar memory wrap instead;
 * huge text geometries are bounded by the surface. */
START_TEST(test_crtc_hostile)
{
	set_mode(&vga_mode13);
	crtc(0x0c, 0xff);
	crtc(0x0d, 0xff);
	crtc(0x13, 0xff);
	crtc(0x01, 0xff);
	crtc(0x12, 0xff);
	crtc(0x07, 0xff);
	crtc(0x09, 0x00);
	refresh();
	ck_assert_uint_le(display_surface(disp)->width, DISPLAY_MAX_WIDTH);
	set_mode(&vga_mode3);
	crtc(0x09, 0x00); /* 1-line cells: 1024 rows of 256 columns */
	crtc(0x01, 0xff);
	refresh();
	ck_assert_uint_le(display_surface(disp)->height, DISPLAY_MAX_HEIGHT);
	seq(1, 0x08); /* 9 dots doubled: 256 columns would be 4608 */
	refresh();
	ck_assert_uint_le(display_surface(disp)->width, DISPLAY_MAX_WIDTH);
}
END_TEST

/* ---- changes ---- */

START_TEST(test_only_changes_drawn)
{
	struct display_status a, b, c;
	struct display_rect r[8];
	uint64_t runs;

	draw_mode13();
	a = refresh();
	runs = display_refresh_count(disp);
	b = refresh();
	ck_assert_uint_eq(b.gen, a.gen); /* nothing changed: same picture */
	ck_assert_uint_eq(display_changes(disp, a.gen, r, 8), 0);
	wmem(0xa0000 + 150 * 320 + 100, 3);
	c = refresh();
	ck_assert_uint_eq(display_refresh_count(disp), runs + 2);
	ck_assert_uint_gt(c.gen, b.gen);
	/* Only the tile of screen pixels 200-201 on lines 300-301, although a
	 * whole page of lines was looked at. */
	ck_assert_uint_eq(display_changes(disp, b.gen, r, 8), 1);
	ck_assert_uint_eq(r[0].x, 192);
	ck_assert_uint_eq(r[0].w, 16);
	ck_assert_uint_eq(r[0].y, 288);
	ck_assert_uint_eq(r[0].h, 16);
	{
		uint8_t rgb[3];

		vga_pic_dac256(3, rgb);
		ck_assert_uint_eq(px(200, 300), vga_pic_rgb6(rgb));
		ck_assert_uint_eq(px(201, 301), vga_pic_rgb6(rgb));
	}
	/* A palette change redraws everything. */
	dac_set(0, 1, 1, 1);
	c = refresh();
	ck_assert_uint_eq(display_changes(disp, c.gen - 1, r, 8), 1);
	ck_assert_uint_eq(r[0].h, 400);
}
END_TEST

START_TEST(test_text_cell_changes)
{
	struct display_status a, b;
	struct display_rect r[8];

	draw_text_screen();
	a = refresh();
	wmem(0xb8000 + 2 * (24 * 80 + 79), 'K');
	b = refresh();
	ck_assert_uint_eq(display_changes(disp, a.gen, r, 8), 1);
	ck_assert_uint_eq(r[0].x, 704); /* the tile of column 79 (x 711-719) */
	ck_assert_uint_eq(r[0].y, 384);
	ck_assert_uint_eq(r[0].w, 16);
	ck_assert_uint_eq(r[0].h, 16);
	ck_assert_uint_gt(b.gen, a.gen);
}
END_TEST

/* Pages written through the framebuffer mapping are drawn only when the
 * dirty log reports them. */
START_TEST(test_lfb_dirty_bitmap)
{
	uint64_t bits[64] = { 0 };
	struct display_hint h = { -1, -1, false };

	vbe_mode(640, 480, 32);
	refresh();
	memcpy(vram() + 4 * (10 * 640 + 5), &(uint32_t){ 0x00ff00 }, 4);
	refresh();
	ck_assert_uint_eq(px(5, 10), 0);
	bits[0] = 1ull << ((4 * (10 * 640 + 5)) >> 12);
	display_lock(disp);
	vga_update(vga, disp, bits, 4096, &h);
	display_unlock(disp);
	ck_assert_uint_eq(px(5, 10), 0x00ff00);
}
END_TEST

struct fake_lfb {
	int maps;
	uint64_t gpa;
	int fetches;
	uint64_t page; /* reported dirty once */
};

static int fake_map(void *o, uint64_t old, uint64_t now, void *hva, uint64_t size)
{
	struct fake_lfb *f = o;

	(void)old;
	(void)hva;
	ck_assert_uint_eq(size, VGA_VRAM_DEFAULT);
	f->maps++;
	f->gpa = now;
	return 0;
}

static long fake_fetch(void *o, uint64_t *bitmap, uint64_t nbits)
{
	struct fake_lfb *f = o;

	memset(bitmap, 0, (nbits + 63) / 64 * 8);
	f->fetches++;
	if (f->page == UINT64_MAX)
		return 0;
	bitmap[f->page / 64] |= 1ull << (f->page % 64);
	f->page = UINT64_MAX;
	return 1;
}

/* The fixture's VGA replaced by one on a PCI host with BAR 0 mapped at
 * 0xe0000000 through f; returns its function (the host in *host). */
static struct pci_dev *lfb_vga(struct fake_lfb *f, struct vga_lfb_ops *ops, struct pci_board *b,
			       struct device **host)
{
	struct pci_dev *p;

	*ops = (struct vga_lfb_ops){ .map = fake_map, .fetch_dirty = fake_fetch, .opaque = f };
	*host = pci_host_create(b);
	vga->ops->destroy(vga);
	vga = new_vga(disp, *host, ops);
	p = pci_host_fn(*host, 2, 0);
	pci_cfg_write(p, 0x10, 4, 0xe0000000);
	pci_cfg_write(p, 0x04, 2, 0x0002);
	return p;
}

START_TEST(test_lfb_memslot)
{
	struct pci_board board = { 0 };
	struct device *host;
	struct fake_lfb f = { .page = UINT64_MAX };
	struct vga_lfb_ops ops;
	struct pci_dev *p = lfb_vga(&f, &ops, &board, &host);
	struct display_status st;

	ck_assert_int_eq(f.maps, 1);
	ck_assert_uint_eq(f.gpa, 0xe0000000);
	vbe_mode(640, 480, 32);
	st = refresh();
	ck_assert_int_eq(st.poll_ms, 30);
	ck_assert_int_ge(f.fetches, 1);
	memcpy(vram() + 4 * 7, &(uint32_t){ 0x0000ff }, 4);
	f.page = 0;
	refresh();
	ck_assert_uint_eq(px(7, 0), 0xff);
	pci_cfg_write(p, 0x04, 2, 0x0000); /* decode off: unmapped */
	ck_assert_int_eq(f.maps, 2);
	ck_assert_uint_eq(f.gpa, PCI_BAR_UNMAPPED);
	st = refresh();
	ck_assert_int_eq(st.poll_ms, -1);
	vga->ops->destroy(vga);
	vga = new_vga(disp, NULL, NULL);
	host->ops->destroy(host);
}
END_TEST

/* The log is read every 30 ms while the guest writes through the mapping,
 * less often once it has not for a while, every 30 ms again after a write. */
START_TEST(test_lfb_poll_backoff)
{
	struct pci_board board = { 0 };
	struct device *host;
	struct fake_lfb f = { .page = UINT64_MAX };
	struct vga_lfb_ops ops;

	(void)lfb_vga(&f, &ops, &board, &host);
	vbe_mode(640, 480, 32);
	ck_assert_int_eq(refresh().poll_ms, 30);
	fake_ns += 900000000ULL;
	ck_assert_int_eq(refresh().poll_ms, 30);
	fake_ns += 200000000ULL;
	ck_assert_int_eq(refresh().poll_ms, 250);
	fake_ns += 2000000000ULL;
	ck_assert_int_eq(refresh().poll_ms, 1000);
	fake_ns += 60000000000ULL;
	ck_assert_int_eq(refresh().poll_ms, 1000);
	f.page = 3;
	ck_assert_int_eq(refresh().poll_ms, 30);
	fake_ns += 500000000ULL;
	ck_assert_int_eq(refresh().poll_ms, 30);
	vga->ops->destroy(vga);
	vga = new_vga(disp, NULL, NULL);
	host->ops->destroy(host);
}
END_TEST

/* BAR 2: the VGA ports at 0x400, DISPI at 0x500, QEMU's registers at 0x600. */
START_TEST(test_mmio_bar)
{
	dev_wr(vga, MMIO, 0x500 + 2 * 1, 2, 800);
	ck_assert_uint_eq(dispi_rd(1), 800);
	ck_assert_uint_eq(dev_rd(vga, MMIO, 0x500, 2), 0xb0c5);
	ck_assert_uint_eq(dev_rd(vga, MMIO, 0x500 + 2 * 0xa, 2), 256);
	ck_assert_uint_eq(dev_rd(vga, MMIO, 0x500, 4), 0xb0c5 | 800u << 16);
	dev_wr(vga, MMIO, 0x400 + 0x02, 1, 0x67); /* misc */
	ck_assert_uint_eq(in8(0x3cc), 0x67);
	dev_wr(vga, MMIO, 0x400 + 0x14, 2, 0x3c0e); /* CR0E = 3c, word write */
	out8(0x3d4, 0x0e);
	ck_assert_uint_eq(in8(0x3d5), 0x3c);
	ck_assert_uint_eq(dev_rd(vga, MMIO, 0x600, 4), 8);
	ck_assert_uint_eq(dev_rd(vga, MMIO, 0x604, 4), 0x1e1e1e1e);
	dev_wr(vga, MMIO, 0x604, 4, 0x12345678); /* not a byte order: kept */
	ck_assert_uint_eq(dev_rd(vga, MMIO, 0x604, 4), 0x1e1e1e1e);
	ck_assert_uint_eq(dev_rd(vga, MMIO, 0x000, 4), 0); /* no EDID */
}
END_TEST

START_TEST(test_notify)
{
	struct pollfd pfd = { .fd = display_notify_fd(disp), .events = POLLIN };
	uint64_t n;

	wmem(0xa0000, 1); /* nobody armed it */
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);
	refresh();
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);
	wmem(0xa0000, 2);
	wmem(0xa0001, 2);
	ck_assert_int_eq(poll(&pfd, 1, 0), 1);
	ck_assert_int_eq(read(pfd.fd, &n, sizeof(n)), 8);
	ck_assert_uint_eq(n, 1); /* once per refresh */
	wmem(0xa0002, 2);
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);
}
END_TEST

/* Random writes to every region, drawing in between: no crash, no access
 * outside the VRAM or the surface (run under ASan in CI). */
START_TEST(test_fuzz)
{
	static const struct {
		int region;
		uint64_t len;
	} regions[] = {
		{ VGA_REGION_PORTS, VGA_PORTS_LEN },
		{ VGA_REGION_DISPI, VGA_DISPI_LEN },
		{ VGA_REGION_WINDOW, VGA_WINDOW_LEN },
		{ LFB, VGA_VRAM_DEFAULT },
		{ MMIO, 0x1000 },
	};

	fuzz_seed = 0x5eed0f0a;
	for (unsigned i = 0; i < 200000; i++) {
		unsigned k = (unsigned)(fuzz_next() % 5), size = fuzz_size();
		uint64_t r = fuzz_next(), off = r % regions[k].len;

		/* Bias toward the registers that shape the picture. */
		if (k == VGA_REGION_DISPI && (r >> 40) % 2)
			off = 0;
		if (fuzz_next() % 3)
			dev_wr(vga, regions[k].region, off, size, fuzz_next());
		else
			(void)dev_rd(vga, regions[k].region, off, size);
		if (i % 5000 == 0) {
			fake_ns += 123456789;
			refresh();
		}
	}
	refresh();
	ck_assert_uint_le(display_surface(disp)->width, DISPLAY_MAX_WIDTH);
	ck_assert_uint_le(display_surface(disp)->height, DISPLAY_MAX_HEIGHT);
}
END_TEST

/* ---- state ---- */

START_TEST(test_state_roundtrip)
{
	struct display *d2 = display_create();
	struct device *b = new_vga(d2, NULL, NULL);
	struct state_buf s;
	const struct display_surface *s1, *s2;

	draw_mode13();
	roundtrip(vga, b, &s);
	refresh();
	display_lock(d2);
	{
		struct display_status st;

		display_refresh(d2, &st);
	}
	display_unlock(d2);
	s1 = display_surface(disp);
	s2 = display_surface(d2);
	ck_assert_uint_eq(s2->width, 640);
	ck_assert_mem_eq(s1->pixels, s2->pixels, (size_t)640 * 400 * 4);
	state_free(&s);
	b->ops->destroy(b);
	display_destroy(d2);
}
END_TEST

/* Every cut of a saved state fails and changes nothing; fields no guest
 * write can produce are refused. */
START_TEST(test_state_hostile)
{
	struct device *b = new_vga(NULL, NULL, NULL);
	struct state_buf s;

	planar();
	wmem(0xa0000, 0x42); /* one page of VRAM: a small state */
	dispi(3, 32);
	roundtrip(vga, b, &s);
	check_truncations(b, &s);
	check_patched_fails(b, &s, STATE_HDR + 3, 9);	    /* sr_index 9 */
	check_patched_fails(b, &s, STATE_HDR + 4, 0xff);    /* SR0 reserved bits */
	check_patched_fails(b, &s, s.len - 4096 - 1, 0xff); /* page index past the VRAM */
	check_patched_loads(b, &s, s.len - 1, 0x99);	    /* VRAM content is data */
	state_free(&s);
	b->ops->destroy(b);
}
END_TEST

SUITE_MAIN("vga", "vga", setup, teardown, 120, test_pci_function, test_bad_options,
	   test_register_readback, test_status_and_attribute_flipflop, test_dac, test_write_mode0,
	   test_write_modes_1_2_3, test_map_mask, test_read_modes, test_chain4_and_odd_even,
	   test_text_screen, test_text_font_change, test_text_cursor_and_blink, test_mode13,
	   test_mode12, test_vbe_32bpp, test_transient_text_size, test_two_cell_text,
	   test_vbe_16_24_8bpp, test_vbe_panning, test_vbe_hostile, test_crtc_hostile,
	   test_only_changes_drawn, test_text_cell_changes, test_lfb_dirty_bitmap, test_lfb_memslot,
	   test_lfb_poll_backoff, test_mmio_bar, test_notify, test_fuzz, test_state_roundtrip,
	   test_state_hostile)
