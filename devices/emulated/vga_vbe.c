/* The Bochs VBE "DISPI" interface (index at 0x1CE, data at 0x1CF, as Bochs's
 * vbe.h and QEMU's bochs-vbe.h define it), BAR 2 (the VGA ports, the DISPI
 * registers and QEMU's extended registers as MMIO, which Linux's bochs-drm
 * uses) and BAR 0, the linear framebuffer.
 *
 * DISPI values are the guest's and hostile: like QEMU's vbe_fixup_regs, every
 * write of a geometry register clamps the set to something the VRAM holds
 * (depth to 4/8/15/16/24/32, resolution to 2560x1600, the virtual width to
 * at least the resolution, the height and the panning offsets to the VRAM),
 * so the renderer never reads outside it; the guest reads the clamped
 * values back. */
#include <errno.h>
#include <string.h>

#include "kestrel/display.h"
#include "emu.h"
#include "vga_priv.h"

bool vga_vbe_enabled(const struct vga_regs *r)
{
	return r->vbe[VBE_DISPI_INDEX_ENABLE] & VBE_DISPI_ENABLED;
}

static unsigned vbe_bits(struct vga_regs *r)
{
	uint16_t *bpp = &r->vbe[VBE_DISPI_INDEX_BPP];

	switch (*bpp) {
	case 4:
	case 8:
	case 16:
	case 24:
	case 32: return *bpp;
	case 15: return 16;
	default: *bpp = 8; return 8;
	}
}

static uint16_t vbe_clamp(uint16_t v, uint16_t lo, uint16_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* The panning offset must leave a whole screen inside the VRAM: else Y
 * then X go back to 0 (as QEMU). */
static void vbe_fixup_offset(struct vga_regs *r, unsigned bits, uint32_t line, uint64_t vram)
{
	uint16_t *vr = r->vbe;
	uint64_t screen = (uint64_t)vr[VBE_DISPI_INDEX_YRES] * line, off;

	vr[VBE_DISPI_INDEX_X_OFFSET] = MIN(vr[VBE_DISPI_INDEX_X_OFFSET], VBE_DISPI_MAX_XRES);
	vr[VBE_DISPI_INDEX_Y_OFFSET] = MIN(vr[VBE_DISPI_INDEX_Y_OFFSET], VBE_DISPI_MAX_YRES);
	off = (uint64_t)vr[VBE_DISPI_INDEX_X_OFFSET] * bits / 8 +
	      (uint64_t)vr[VBE_DISPI_INDEX_Y_OFFSET] * line;
	if (off + screen > vram) {
		vr[VBE_DISPI_INDEX_Y_OFFSET] = 0;
		off = (uint64_t)vr[VBE_DISPI_INDEX_X_OFFSET] * bits / 8;
		if (off + screen > vram) {
			vr[VBE_DISPI_INDEX_X_OFFSET] = 0;
			off = 0;
		}
	}
	r->vbe_start = (uint32_t)off;
}

void vga_vbe_fixup(struct vga_regs *r, uint64_t vram)
{
	uint16_t *vr = r->vbe;
	unsigned bits;
	uint32_t line, maxy;

	if (!vga_vbe_enabled(r))
		return;
	bits = vbe_bits(r);
	vr[VBE_DISPI_INDEX_XRES] = vbe_clamp(vr[VBE_DISPI_INDEX_XRES] & ~7u, 8, VBE_DISPI_MAX_XRES);
	vr[VBE_DISPI_INDEX_VIRT_WIDTH] = vbe_clamp(vr[VBE_DISPI_INDEX_VIRT_WIDTH] & ~7u,
						   vr[VBE_DISPI_INDEX_XRES], VBE_DISPI_MAX_XRES);
	line = vr[VBE_DISPI_INDEX_VIRT_WIDTH] * bits / 8;
	maxy = (uint32_t)MIN(vram / line, 0xffffULL);
	vr[VBE_DISPI_INDEX_YRES] = vbe_clamp(vr[VBE_DISPI_INDEX_YRES], 1, VBE_DISPI_MAX_YRES);
	vr[VBE_DISPI_INDEX_YRES] = (uint16_t)MIN(vr[VBE_DISPI_INDEX_YRES], maxy);
	vbe_fixup_offset(r, bits, line, vram);
	vr[VBE_DISPI_INDEX_VIRT_HEIGHT] = (uint16_t)maxy;
	r->vbe_line = line;
}

/* Turning VBE on also sets the VGA registers a VBE mode implies (graphics,
 * 64 KiB window at A0000, chain-4 for packed pixels), as the Bochs BIOS
 * expects and QEMU does, and clears the screen unless told not to. */
static void vbe_enable(struct vga *v, uint16_t val)
{
	struct vga_regs *r = &v->r;
	uint16_t *vr = r->vbe;
	unsigned h;
	uint64_t clear;

	vr[VBE_DISPI_INDEX_VIRT_WIDTH] = 0;
	vr[VBE_DISPI_INDEX_X_OFFSET] = 0;
	vr[VBE_DISPI_INDEX_Y_OFFSET] = 0;
	vr[VBE_DISPI_INDEX_ENABLE] |= VBE_DISPI_ENABLED;
	vga_vbe_fixup(r, v->vram_size);
	if (!(val & VBE_DISPI_NOCLEARMEM)) {
		clear = MIN((uint64_t)vr[VBE_DISPI_INDEX_YRES] * r->vbe_line, v->vram_size);
		memset(v->vram, 0, clear);
		vga_mark(v, 0, clear);
	}
	r->gr[VGA_GFX_MISC] = (r->gr[VGA_GFX_MISC] & ~0x0c) | 0x04 | VGA_GR06_GRAPHICS;
	r->cr[VGA_CRTC_MODE] |= 3;
	r->cr[VGA_CRTC_OFFSET] = (uint8_t)(r->vbe_line >> 3);
	r->cr[VGA_CRTC_H_DISP] = (uint8_t)((vr[VBE_DISPI_INDEX_XRES] >> 3) - 1);
	h = vr[VBE_DISPI_INDEX_YRES] - 1u;
	r->cr[VGA_CRTC_V_DISP_END] = (uint8_t)h;
	r->cr[VGA_CRTC_OVERFLOW] = (r->cr[VGA_CRTC_OVERFLOW] & ~0x42) | ((h >> 7) & 0x02) |
				   ((h >> 3) & 0x40) | 0x10;
	r->cr[VGA_CRTC_LINE_COMPARE] = 0xff;
	r->cr[VGA_CRTC_MAX_SCAN] = (r->cr[VGA_CRTC_MAX_SCAN] | 0x40) & ~0x9f;
	if (vr[VBE_DISPI_INDEX_BPP] == 4) {
		r->sr[VGA_SEQ_CLOCK_MODE] &= ~VGA_SR01_DOT_HALF;
		r->gr[VGA_GFX_MODE] &= ~0x60;
	} else {
		r->sr[VGA_SEQ_MEMORY_MODE] |= VGA_SR04_CHN_4M;
		r->sr[VGA_SEQ_PLANE_WRITE] |= 0x0f;
		r->gr[VGA_GFX_MODE] = (r->gr[VGA_GFX_MODE] & ~0x60) | 0x40;
	}
}

static void vbe_write_enable(struct vga *v, uint16_t val)
{
	struct vga_regs *r = &v->r;

	if ((val & VBE_DISPI_ENABLED) && !vga_vbe_enabled(r))
		vbe_enable(v, val);
	else if (!(val & VBE_DISPI_ENABLED))
		r->bank_offset = 0;
	r->vbe[VBE_DISPI_INDEX_ENABLE] = val;
	vga_vbe_fixup(r, v->vram_size);
}

uint16_t vga_dispi_read(struct vga *v, unsigned index)
{
	const uint16_t *vr = v->r.vbe;

	if (index == VBE_DISPI_INDEX_VIDEO_MEMORY_64K)
		return (uint16_t)(v->vram_size >> 16);
	if (index >= VBE_DISPI_INDEX_NB)
		return 0;
	/* GETCAPS: the geometry registers read as the maxima. */
	if (vr[VBE_DISPI_INDEX_ENABLE] & VBE_DISPI_GETCAPS) {
		if (index == VBE_DISPI_INDEX_XRES)
			return VBE_DISPI_MAX_XRES;
		if (index == VBE_DISPI_INDEX_YRES)
			return VBE_DISPI_MAX_YRES;
		if (index == VBE_DISPI_INDEX_BPP)
			return VBE_DISPI_MAX_BPP;
	}
	return vr[index];
}

void vga_dispi_write(struct vga *v, unsigned index, uint16_t val)
{
	struct vga_regs *r = &v->r;
	uint32_t banks = (uint32_t)(v->vram_size >> 16);

	switch (index) {
	case VBE_DISPI_INDEX_ID:
		if ((val & 0xfff0) == VBE_DISPI_ID0 && val <= VBE_DISPI_ID5)
			r->vbe[index] = val;
		break;
	case VBE_DISPI_INDEX_XRES:
	case VBE_DISPI_INDEX_YRES:
	case VBE_DISPI_INDEX_BPP:
	case VBE_DISPI_INDEX_VIRT_WIDTH:
	case VBE_DISPI_INDEX_X_OFFSET:
	case VBE_DISPI_INDEX_Y_OFFSET:
		r->vbe[index] = val;
		vga_vbe_fixup(r, v->vram_size);
		break;
	case VBE_DISPI_INDEX_BANK:
		/* A bank is 64 KiB of the window; 4 bpp banks count planar bytes. */
		val &= (uint16_t)((r->vbe[VBE_DISPI_INDEX_BPP] == 4 ? banks >> 2 : banks) - 1);
		r->vbe[index] = val;
		r->bank_offset = (uint32_t)val << 16;
		break;
	case VBE_DISPI_INDEX_ENABLE: vbe_write_enable(v, val); break;
	default: break; /* VIRT_HEIGHT is computed; the rest does not exist */
	}
}

/* 0x1CE index, 0x1CF data (the Bochs ports), 0x1D0 data as well (QEMU). */
uint64_t vga_dispi_port_read(struct vga *v, uint64_t off, unsigned size)
{
	uint64_t val = off == 0 ? v->r.vbe_index : vga_dispi_read(v, v->r.vbe_index);

	return val & emu_ones(MIN(size, 2u));
}

void vga_dispi_port_write(struct vga *v, uint64_t off, unsigned size, uint64_t val)
{
	uint16_t x = (uint16_t)(val & emu_ones(MIN(size, 2u)));

	if (off == 0)
		v->r.vbe_index = x;
	else
		vga_dispi_write(v, v->r.vbe_index, x);
}

/* ---- BAR 2 ---- */

static uint64_t vga_qext_read(const struct vga *v, uint64_t off)
{
	if (off == 0)
		return VGA_QEXT_SIZE;
	if (off == 4)
		return v->r.qext_endian;
	return 0;
}

/* One naturally aligned piece of a BAR 2 access: a byte of the VGA ports,
 * a 16-bit DISPI register, a 32-bit QEMU extended register. */
static uint64_t vga_mmio_piece_read(struct vga *v, uint64_t off, unsigned *len)
{
	*len = 1;
	if (off >= VGA_MMIO_PORTS && off < VGA_MMIO_PORTS + 0x20)
		return vga_port_read(v, 0x3c0 + (unsigned)(off - VGA_MMIO_PORTS));
	if (off >= VGA_MMIO_DISPI && off < VGA_MMIO_DISPI + 2 * VBE_DISPI_INDEX_NB + 2) {
		*len = 2 - (unsigned)(off & 1);
		return vga_dispi_read(v, (unsigned)(off - VGA_MMIO_DISPI) / 2) >> (8 * (off & 1));
	}
	if (off >= VGA_MMIO_QEXT && off < VGA_MMIO_QEXT + VGA_QEXT_SIZE) {
		*len = 4 - (unsigned)(off & 3);
		return vga_qext_read(v, (off - VGA_MMIO_QEXT) & ~3ULL) >> (8 * (off & 3));
	}
	return 0; /* no EDID: bochs-drm then offers its default modes */
}

uint64_t vga_mmio_read(struct vga *v, uint64_t off, unsigned size)
{
	uint64_t val = 0;
	unsigned len;

	for (unsigned i = 0; i < size; i += len) {
		uint64_t piece = vga_mmio_piece_read(v, off + i, &len);

		len = MIN(len, size - i);
		val |= (piece & emu_ones(len)) << (8 * i);
	}
	return val;
}

static void vga_qext_write(struct vga *v, uint64_t off, uint64_t rv, uint64_t rmask)
{
	uint32_t e;

	if (off != 4)
		return;
	e = (uint32_t)emu_lane_merge(v->r.qext_endian, rv, rmask);
	if (e == VGA_QEXT_BIG || e == VGA_QEXT_LITTLE)
		v->r.qext_endian = e;
}

/* A DISPI register written through part of it keeps its other byte. */
static void vga_mmio_dispi_write(struct vga *v, unsigned index, uint64_t rv, uint64_t rmask)
{
	uint16_t old = vga_dispi_read(v, index);

	vga_dispi_write(v, index, (uint16_t)emu_lane_merge(old, rv, rmask));
}

void vga_mmio_write(struct vga *v, uint64_t off, unsigned size, uint64_t val)
{
	uint64_t rv, rm;

	/* Ports: bytes in ascending order (index before data, as a word write
	 * to an index/data pair means). */
	for (unsigned i = 0; i < size; i++)
		if (off + i >= VGA_MMIO_PORTS && off + i < VGA_MMIO_PORTS + 0x20)
			vga_port_write(v, 0x3c0 + (unsigned)(off + i - VGA_MMIO_PORTS),
				       (uint8_t)(val >> (8 * i)));
	for (unsigned idx = 0; idx < VBE_DISPI_INDEX_NB; idx++)
		if (emu_lane_in(off, size, val, VGA_MMIO_DISPI + 2 * idx, 2, &rv, &rm))
			vga_mmio_dispi_write(v, idx, rv, rm);
	for (unsigned reg = 0; reg < VGA_QEXT_SIZE; reg += 4)
		if (emu_lane_in(off, size, val, VGA_MMIO_QEXT + reg, 4, &rv, &rm))
			vga_qext_write(v, reg, rv, rm);
}

/* ---- BAR 0 ---- */

/* The framebuffer as MMIO: used when there is no memory slot for it. */
uint64_t vga_lfb_read(struct vga *v, uint64_t off, unsigned size)
{
	uint64_t val = 0;

	if (off >= v->vram_size || size > v->vram_size - off)
		return emu_ones(size);
	memcpy(&val, v->vram + off, size);
	return val;
}

void vga_lfb_write(struct vga *v, uint64_t off, unsigned size, uint64_t val)
{
	if (off >= v->vram_size || size > v->vram_size - off)
		return;
	memcpy(v->vram + off, &val, size);
	vga_mark(v, off, size);
}

/* BAR 0 moved: move the memory slot. KVM forgets a moved slot's dirty log,
 * so the next update redraws everything. Called under the PCI host's lock
 * (pci.h: host -> device order), or from a load with the device's own lock
 * held: the flags are atomics, not under dev.lock. */
void vga_bar_remap(struct pci_dev *pdev, int bar, uint64_t old, uint64_t now)
{
	struct vga *v = pdev->opaque;
	int ret;

	if (bar != VGA_BAR_LFB || !v->has_lfb_ops)
		return;
	ret = v->lfb.map(v->lfb.opaque, old, now, v->vram, v->vram_size);
	__atomic_store_n(&v->lfb_mapped, !ret && now != PCI_BAR_UNMAPPED, __ATOMIC_RELEASE);
	__atomic_store_n(&v->force_full, true, __ATOMIC_RELEASE);
	if (ret && !__atomic_exchange_n(&v->warned_lfb, true, __ATOMIC_RELAXED))
		kwarn("vga: cannot map the framebuffer at %#llx: %s", (unsigned long long)now,
		      strerror(-ret));
	display_changed(v->display);
}
