/* vga.bin: the standard VGA (PCI 1234:1111) at register level, from ring 3,
 * with no BIOS help: the PCI function and its BARs, the Bochs DISPI
 * registers through the ports and through BAR 2, the VGA registers, then one
 * picture of tests/guest/lib/vga_pictures.h drawn through the hardware:
 *
 *   pic=13h   mode 13h programmed by registers, its palette, 320x200 pixels
 *             through the A0000 window (chain-4);
 *   pic=text  mode 3 programmed by registers, the test font loaded into
 *             plane 2 (planar access), the screen written at B8000;
 *   pic=vbe   640x480x32 through DISPI, pixels through the framebuffer BAR;
 *   pic=regs  no picture: window semantics (write modes 0-3, latches, read
 *             mode 1, map mask) checked by reading back;
 *   pic=hostile  DISPI and CRTC values no driver writes (huge resolutions,
 *             odd strides, offsets past the VRAM): read back clamped; the
 *             harness's screendump must still work.
 *
 * For scripts/bench/vga.sh, with pic=vbe:
 *   bench=idle     after the picture the CPU halts for good (cli; hlt): a
 *                  still screen with nothing running in the guest;
 *   bench=latency  after the picture it waits (up to 60 s) for a key on the
 *                  PS/2 keyboard (the VNC client's, so that it is connected),
 *                  then writes=N (20) times prints "fbw: K", fills a 64x64
 *                  square of the framebuffer and waits 300 ms.
 *
 * Then it prints "vga: picture ready" and waits hold_ms (default 120000) for
 * the harness to take a screendump (kestrel ctl NAME screendump, QEMU's
 * monitor screendump) and stop the VM; the harness compares the dump with
 * the picture computed from the same definitions (tests/vga-compare.c).
 * Under QEMU the VGA BIOS has run first; everything the picture depends on
 * is programmed here again, so both VMMs start from the same registers. */
#include "guest.h"
#include "vga_pictures.h"

#define VGA_ID	    0x11111234u
#define BAR_BASE    0xe0000000u /* where BARs go when no firmware placed them */
#define DISPI_INDEX 0x1ce
#define DISPI_DATA  0x1cf
#define WINDOW	    0xa0000u

static unsigned slot;
static uint64_t lfb, mmio;
static uint32_t lfb_size;

static void io_out8(uint16_t port, uint8_t v)
{
	outb(port, v);
}

static uint8_t io_in8(uint16_t port)
{
	return inb(port);
}

static void io_out16(uint16_t port, uint16_t v)
{
	outw(port, v);
}

/* One 8-byte store: one exit where the window traps. */
static void io_mem64(uint32_t addr, uint64_t v)
{
	*(volatile uint64_t *)phys_ptr(addr) = v;
}

static const struct vga_pic_io io = { io_out8, io_in8, io_out16, io_mem64 };

#define seq(i, v)   vga_pic_seq(&io, i, v)
#define gfx(i, v)   vga_pic_gfx(&io, i, v)
#define crtc(i, v)  vga_pic_crtc(&io, i, v)
#define dispi(i, v) vga_pic_dispi(&io, i, v)

static uint8_t crtc_rd(unsigned i)
{
	outb(0x3d4, (uint8_t)i);
	return inb(0x3d5);
}

static uint16_t dispi_rd(unsigned i)
{
	outw(DISPI_INDEX, (uint16_t)i);
	return inw(DISPI_DATA);
}

static volatile uint8_t *win8(uint32_t addr)
{
	return phys_ptr(addr);
}

/* ---- the PCI function ---- */

static bool find_vga(void)
{
	for (unsigned d = 0; d < 32; d++)
		if (pci_conf_read32(0, d, 0, 0) == VGA_ID) {
			slot = d;
			return true;
		}
	return false;
}

/* A BAR's address, placing it in the PCI hole when nothing did (kestrel
 * boots the payload without firmware); *size from the sizing pattern. */
static uint64_t bar(unsigned i, uint32_t *size)
{
	static uint32_t next = BAR_BASE;
	unsigned off = 0x10 + 4 * i;
	uint32_t v = pci_conf_read32(0, slot, 0, off);

	pci_conf_write32(0, slot, 0, off, 0xffffffff);
	*size = ~(pci_conf_read32(0, slot, 0, off) & ~0xfu) + 1;
	pci_conf_write32(0, slot, 0, off, v);
	if (v & ~0xfu)
		return v & ~0xfu;
	next = (next + *size - 1) & ~(*size - 1);
	pci_conf_write32(0, slot, 0, off, next);
	next += *size;
	return next - *size;
}

static void check_pci(void)
{
	uint32_t cls = pci_conf_read32(0, slot, 0, 8), mmio_size, bar0;

	gprintf("vga 00:%02x.0 1234:1111 class %06x rev %u\n", slot, cls >> 8, cls & 0xff);
	check(cls >> 8 == 0x030000, "class 030000 (VGA)");
	lfb = bar(0, &lfb_size);
	mmio = bar(2, &mmio_size);
	bar0 = pci_conf_read32(0, slot, 0, 0x10);
	check((bar0 & 0xf) == 0x8, "BAR 0 is 32-bit prefetchable memory (%08x)", bar0);
	check(lfb_size >= (1u << 20), "BAR 0: %u MiB of VRAM", lfb_size >> 20);
	check(mmio_size == 4096, "BAR 2: 4 KiB of registers (%u)", mmio_size);
	pci_conf_write16(0, slot, 0, 4, pci_conf_read16(0, slot, 0, 4) | 0x3);
}

/* ---- registers ---- */

static void check_dispi(void)
{
	uint16_t id = dispi_rd(0), mem = dispi_rd(0xa);

	check((id & 0xfff0) == 0xb0c0, "DISPI ID %04x", id);
	check((uint32_t)mem << 16 == lfb_size, "DISPI video memory %u x 64 KiB = BAR 0", mem);
	check(mmio_read16(mmio + 0x500) == id, "DISPI ID through BAR 2 at 0x500");
	mmio_write16(mmio + 0x500 + 2 * 1, 1024);
	check(dispi_rd(1) == 1024, "DISPI XRES written through BAR 2 reads back through the ports");
	dispi(4, 0x02); /* GETCAPS */
	check(dispi_rd(1) >= 1600 && dispi_rd(3) == 32, "GETCAPS: max %ux?x%u", dispi_rd(1),
	      dispi_rd(3));
	dispi(4, 0);
	check(mmio_read32(mmio + 0x600) >= 8, "QEMU extended registers: %u bytes",
	      mmio_read32(mmio + 0x600));
}

static void check_registers(void)
{
	uint8_t a, b;

	outb(0x3c2, 0x67);
	check(inb(0x3cc) == 0x67, "misc output reads back");
	seq(2, 0xff);
	check(inb(0x3c5) == 0x0f, "SR2 map mask keeps 4 bits");
	crtc(0x11, 0x00);
	crtc(0x0e, 0x12);
	check(crtc_rd(0x0e) == 0x12, "CR0E reads back");
	a = inb(0x3da);
	b = inb(0x3da);
	check(((a ^ b) & 0x08) || ((a ^ inb(0x3da)) & 0x08), "input status 1: retrace bit moves");
	outb(0x3c8, 200);
	outb(0x3c9, 0x11);
	outb(0x3c9, 0x22);
	outb(0x3c9, 0x33);
	outb(0x3c7, 200);
	check(inb(0x3c9) == 0x11 && inb(0x3c9) == 0x22 && inb(0x3c9) == 0x33,
	      "DAC entry reads back");
}

/* Window semantics, read back through the window (needs it trapped). */
static void check_window(void)
{
	volatile uint8_t *w = win8(WINDOW);
	uint8_t v;

	seq(2, 0x0f);
	seq(4, 0x06);
	gfx(0, 0);
	gfx(1, 0);
	gfx(3, 0);
	gfx(5, 0);
	gfx(6, 0x05);
	gfx(8, 0xff);
	seq(2, 0x01);
	w[0] = 0xf0;
	seq(2, 0x02);
	w[0] = 0xcc;
	seq(2, 0x04);
	w[0] = 0xaa;
	seq(2, 0x08);
	w[0] = 0x0f;
	seq(2, 0x0f);
	gfx(4, 1);
	v = w[0];
	check(v == 0xcc, "read mode 0, plane 1: %02x", v);
	gfx(5, 0x08); /* read mode 1 */
	gfx(7, 0x0f);
	gfx(2, 0x07);
	v = w[0];
	check(v == 0x80, "read mode 1, colour 7: %02x", v);
	gfx(5, 0x01); /* write mode 1: latches copied */
	w[1] = 0;
	gfx(5, 0x00);
	gfx(4, 2);
	check(w[1] == 0xaa, "write mode 1 copied the latches (plane 2 %02x)", w[1]);
	gfx(5, 0x00);
	w[2] = 0;     /* known latches: all planes 0 */
	gfx(5, 0x02); /* write mode 2, bit mask */
	gfx(8, 0x0f);
	(void)w[2];
	w[2] = 0x05;
	gfx(5, 0x00);
	gfx(4, 0);
	v = w[2];
	check(v == 0x0f, "write mode 2 through the bit mask (plane 0 %02x)", v);
	gfx(8, 0xff);
	gfx(3, 0x18); /* XOR with the latches */
	(void)w[0];
	w[3] = 0xff;
	gfx(3, 0);
	gfx(4, 1);
	check(w[3] == 0x33, "write mode 0 XOR the latches (plane 1 %02x)", w[3]);
}

/* ---- pictures ---- */

static void draw_13h(void)
{
	vga_pic_draw_13h(&io);
	check(win8(WINDOW)[321] == vga_pic13_pixel(1, 1), "mode 13h pixel 1,1 reads back");
}

static void draw_text(void)
{
	vga_pic_draw_text(&io);
	check(win8(0xb8000)[2 * (12 * 80 + 33)] == 'K', "text cell 33,12 reads back");
}

static void draw_vbe(void)
{
	volatile uint64_t *fb = phys_ptr(lfb);

	dispi(4, 0);
	dispi(1, VGA_PICV_W);
	dispi(2, VGA_PICV_H);
	dispi(3, 32);
	dispi(4, 0x41); /* enabled, linear framebuffer */
	outb(0x3c2, 0x01);
	(void)inb(0x3da);
	outb(0x3c0, 0x20);
	check(dispi_rd(1) == VGA_PICV_W && dispi_rd(2) == VGA_PICV_H, "VBE mode %ux%u set",
	      dispi_rd(1), dispi_rd(2));
	for (unsigned y = 0; y < VGA_PICV_H; y++)
		for (unsigned x = 0; x < VGA_PICV_W; x += 2)
			fb[(y * VGA_PICV_W + x) / 2] = vga_picv_pixel(x, y) |
						       (uint64_t)vga_picv_pixel(x + 1, y) << 32;
	check(mmio_read32(lfb + 4 * (7 * VGA_PICV_W + 9)) == vga_picv_pixel(9, 7),
	      "VBE pixel 9,7 reads back");
}

/* Values no driver would write: the device must clamp them to what the
 * VRAM holds (the guest reads the clamped values back) and keep drawing.
 * The checks hold for any such clamping (QEMU's maxima differ from ours). */
static void draw_hostile(void)
{
	uint32_t line, screen, off;

	dispi(4, 0);
	dispi(1, 0xffff);
	dispi(2, 0xffff);
	dispi(3, 32);
	dispi(4, 0x41);
	dispi(6, 1001);	  /* an odd stride */
	dispi(9, 0xffff); /* a screen past the VRAM */
	dispi(8, 0xffff);
	line = dispi_rd(6) * 4u;
	screen = dispi_rd(2) * line;
	off = dispi_rd(9) * line + dispi_rd(8) * 4u;
	check(dispi_rd(1) >= 8 && dispi_rd(1) % 8 == 0 && dispi_rd(6) >= dispi_rd(1) &&
		      dispi_rd(6) % 8 == 0,
	      "DISPI %ux%u, virtual width %u: clamped, multiples of 8", dispi_rd(1), dispi_rd(2),
	      dispi_rd(6));
	check(off + screen <= lfb_size, "DISPI screen at offset %u + %u bytes inside %u of VRAM",
	      off, screen, lfb_size);
	check((uint32_t)dispi_rd(7) * line <= lfb_size, "DISPI virtual height %u fits the VRAM",
	      dispi_rd(7));
	dispi(3, 7); /* no such depth */
	check(dispi_rd(3) == 8, "DISPI depth 7 became %u", dispi_rd(3));
	outb(0x3c2, 0x01);
	(void)inb(0x3da);
	outb(0x3c0, 0x20);
	/* Legacy CRTC values past the planar memory, in a 16-colour mode. */
	dispi(4, 0);
	vga_pic_set_mode(&io, &vga_mode12);
	crtc(0x0c, 0xff);
	crtc(0x0d, 0xff);
	crtc(0x13, 0xff);
	crtc(0x12, 0xff);
	crtc(0x07, 0xff);
	crtc(0x09, 0x1f);
	crtc(0x18, 0x00);
}

static bool arg_is(const char *key, const char *val)
{
	const char *c = mb_cmdline();
	unsigned kl = 0, vl = 0;

	while (key[kl])
		kl++;
	while (val[vl])
		vl++;
	for (; *c; c++)
		if (!memcmp(c, key, kl) && c[kl] == '=' && !memcmp(c + kl + 1, val, vl) &&
		    (c[kl + 1 + vl] == ' ' || !c[kl + 1 + vl]))
			return true;
	return false;
}

/* Any byte from the keyboard (i8042 status bit 0, not an aux byte). */
static bool kbd_key(uint64_t wait_us)
{
	struct deadline d;

	deadline_start(&d, wait_us);
	while (!deadline_expired(&d)) {
		uint8_t st = inb(0x64);

		if ((st & 0x01) && !(st & 0x20))
			return true;
		if (st & 0x01)
			(void)inb(0x60);
		cpu_relax();
	}
	return false;
}

static void bench_latency(void)
{
	volatile uint32_t *fb = phys_ptr(lfb);
	unsigned n = (unsigned)mb_cmdline_uint("writes", 20);

	if (!kbd_key(60 * 1000 * 1000))
		gprintf("vga: no key within 60 s, writing anyway\n");
	for (unsigned k = 0; k < n; k++) {
		uint32_t color = 0x00ff00ffu ^ (k * 0x00102030u);

		gprintf("fbw: %u\n", k);
		for (unsigned y = 0; y < 64; y++)
			for (unsigned x = 0; x < 64; x++)
				fb[(100 + y) * VGA_PICV_W + 100 + x] = color;
		udelay(300 * 1000);
	}
	gprintf("vga: %u writes done\n", n);
}

int main(void)
{
	struct deadline d;

	if (!check(find_vga(), "a VGA 1234:1111 on bus 0"))
		return check_result(GUEST_EXIT_VGA);
	pmtmr_init();
	check_pci();
	check_dispi();
	check_registers();
	if (arg_is("pic", "regs"))
		check_window();
	else if (arg_is("pic", "13h"))
		draw_13h();
	else if (arg_is("pic", "text"))
		draw_text();
	else if (arg_is("pic", "vbe"))
		draw_vbe();
	else if (arg_is("pic", "hostile"))
		draw_hostile();
	if (check_failures() || arg_is("pic", "regs"))
		return check_result(GUEST_EXIT_VGA);
	gprintf("vga: picture ready\n");
	if (arg_is("pic", "vbe") && arg_is("bench", "idle"))
		guest_park();
	if (arg_is("pic", "vbe") && arg_is("bench", "latency")) {
		bench_latency();
		return check_result(GUEST_EXIT_VGA);
	}
	deadline_start(&d, mb_cmdline_uint("hold_ms", 120000) * 1000);
	while (!deadline_expired(&d))
		cpu_relax();
	return check_result(GUEST_EXIT_VGA);
}
