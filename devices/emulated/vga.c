/* Standard VGA: the registers behind ports 0x3B0-0x3DF, the planar memory
 * behind the 0xA0000-0xBFFFF window (write modes 0-3, read modes 0-1,
 * latches, chain-4 and odd/even addressing), the PCI function and the
 * device's life. The Bochs VBE extensions and the BARs are in vga_vbe.c,
 * drawing in vga_render.c, save/load in vga_state.c; vga_priv.h holds the
 * state they share.
 *
 * Semantics follow IBM's VGA as FreeVGA documents it, with QEMU's std VGA
 * (hw/display/vga.c) as the reference where guests depend on its
 * simplifications: the window's odd/even addressing follows GR5 bit 4 for
 * writes as well as reads, the address wraps at the VRAM size (not 256 KiB)
 * so that VBE banked planar modes work, and the input status register's
 * retrace and display-enable bits toggle on every read (guests poll them;
 * no timing is modelled). Legacy ports and the window decode whatever the
 * PCI command register says, as on QEMU's std VGA.
 *
 * Locking: every guest access runs under dev.lock (the bus takes it). The
 * renderer takes it only to copy the registers and the dirty pages
 * (vga_render.c), so a screendump or a VNC client never holds a vCPU up for
 * longer than that copy. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "kestrel/clock.h"
#include "kestrel/display.h"
#include "kestrel/state.h"
#include "emu.h"
#include "vga_priv.h"

/* Bits a register keeps (QEMU's sr_mask/gr_mask; FreeVGA's reserved bits). */
static const uint8_t vga_sr_mask[VGA_SEQ_NUM] = { 0x03, 0x3d, 0x0f, 0x3f, 0x0e };
static const uint8_t vga_gr_mask[VGA_GFX_NUM] = { 0x0f, 0x0f, 0x0f, 0x1f, 0x03,
						  0x7b, 0x0f, 0x0f, 0xff };

static struct vga *to_vga(struct device *dev)
{
	return (struct vga *)dev;
}

/* ---- ports ---- */

/* The CRTC and input status 1 answer at 3Bx or 3Dx as the misc register's
 * I/O address select says; the other range is not decoded. */
static bool vga_port_absent(const struct vga *v, unsigned port)
{
	if (v->r.misc & VGA_MIS_COLOR)
		return port >= 0x3b0 && port <= 0x3bf;
	return port >= 0x3d0 && port <= 0x3df;
}

static uint8_t vga_dac_read(struct vga *v)
{
	struct vga_regs *r = &v->r;
	uint8_t val = r->palette[r->dac_read * 3 + r->dac_sub];

	if (++r->dac_sub == 3) {
		r->dac_sub = 0;
		r->dac_read++;
	}
	return val;
}

/* The DAC takes red, green, blue and then moves on (the index wraps at 256). */
static void vga_dac_write(struct vga *v, uint8_t val)
{
	struct vga_regs *r = &v->r;

	r->dac_cache[r->dac_sub] = val;
	if (++r->dac_sub == 3) {
		memcpy(&r->palette[r->dac_write * 3], r->dac_cache, 3);
		r->dac_sub = 0;
		r->dac_write++;
	}
}

uint8_t vga_port_read(struct vga *v, unsigned port)
{
	struct vga_regs *r = &v->r;

	if (vga_port_absent(v, port))
		return 0xff;
	switch (port) {
	case VGA_ATT_W: return r->ar_index; /* in either flip-flop state (FreeVGA) */
	case VGA_ATT_R: return (r->ar_index & 0x1f) < VGA_ATC_NUM ? r->ar[r->ar_index & 0x1f] : 0;
	case VGA_MIS_W: return 0; /* input status 0: no switch sense, no CRT interrupt */
	case VGA_SEQ_I: return r->sr_index;
	case VGA_SEQ_D: return r->sr_index < VGA_SEQ_NUM ? r->sr[r->sr_index] : 0;
	case VGA_PEL_MSK: return r->pel_mask;
	case VGA_PEL_IR: return r->dac_state;
	case VGA_PEL_IW: return r->dac_write;
	case VGA_PEL_D: return vga_dac_read(v);
	case VGA_FTC_R: return r->fcr;
	case VGA_MIS_R: return r->misc;
	case VGA_GFX_I: return r->gr_index;
	case VGA_GFX_D: return r->gr_index < VGA_GFX_NUM ? r->gr[r->gr_index] : 0;
	case VGA_CRT_IM:
	case VGA_CRT_IC: return r->cr_index;
	case VGA_CRT_DM:
	case VGA_CRT_DC: return r->cr_index < VGA_CRTC_NUM ? r->cr[r->cr_index] : 0;
	case VGA_IS1_RM:
	case VGA_IS1_RC:
		/* Reading input status 1 also resets the attribute flip-flop. */
		r->st01 ^= VGA_IS1_VR | VGA_IS1_DE;
		r->ar_flip_flop = 0;
		return r->st01;
	default: return 0;
	}
}

static void vga_ar_write(struct vga *v, uint8_t val)
{
	struct vga_regs *r = &v->r;
	unsigned i = r->ar_index & 0x1f;

	r->ar_flip_flop ^= 1;
	if (r->ar_flip_flop) {
		r->ar_index = val & 0x3f;
		return;
	}
	if (i < 0x10)
		r->ar[i] = val & 0x3f;
	else if (i == VGA_ATC_MODE)
		r->ar[i] = val & ~0x10;
	else if (i == VGA_ATC_OVERSCAN)
		r->ar[i] = val;
	else if (i == VGA_ATC_PLANE_ENABLE)
		r->ar[i] = val & 0x3f;
	else if (i == VGA_ATC_PEL || i == VGA_ATC_COLOR_PAGE)
		r->ar[i] = val & 0x0f;
}

/* CR11 bit 7 write-protects CR0-CR7, except CR7's line-compare bit 4. */
static void vga_cr_write(struct vga *v, uint8_t val)
{
	struct vga_regs *r = &v->r;
	unsigned i = r->cr_index;

	if (i >= VGA_CRTC_NUM)
		return;
	if ((r->cr[VGA_CRTC_V_SYNC_END] & VGA_CR11_LOCK_CR0_CR7) && i <= VGA_CRTC_OVERFLOW) {
		if (i == VGA_CRTC_OVERFLOW)
			r->cr[i] = (r->cr[i] & ~0x10) | (val & 0x10);
		return;
	}
	r->cr[i] = val;
}

void vga_port_write(struct vga *v, unsigned port, uint8_t val)
{
	struct vga_regs *r = &v->r;

	if (vga_port_absent(v, port))
		return;
	switch (port) {
	case VGA_ATT_W: vga_ar_write(v, val); break;
	case VGA_MIS_W: r->misc = val & ~0x10; break;
	case VGA_SEQ_I: r->sr_index = val & 7; break;
	case VGA_SEQ_D:
		if (r->sr_index < VGA_SEQ_NUM)
			r->sr[r->sr_index] = val & vga_sr_mask[r->sr_index];
		break;
	case VGA_PEL_MSK: r->pel_mask = val; break;
	case VGA_PEL_IR:
		r->dac_read = val;
		r->dac_sub = 0;
		r->dac_state = 3;
		break;
	case VGA_PEL_IW:
		r->dac_write = val;
		r->dac_sub = 0;
		r->dac_state = 0;
		break;
	case VGA_PEL_D: vga_dac_write(v, val); break;
	case VGA_GFX_I: r->gr_index = val & 0x0f; break;
	case VGA_GFX_D:
		if (r->gr_index < VGA_GFX_NUM)
			r->gr[r->gr_index] = val & vga_gr_mask[r->gr_index];
		break;
	case VGA_CRT_IM:
	case VGA_CRT_IC: r->cr_index = val; break;
	case VGA_CRT_DM:
	case VGA_CRT_DC: vga_cr_write(v, val); break;
	case VGA_IS1_RM:
	case VGA_IS1_RC: r->fcr = val & 0x10; break;
	}
}

static uint64_t vga_ports_read(struct vga *v, uint64_t off, unsigned size)
{
	uint64_t val = 0;

	for (unsigned i = 0; i < size; i++) {
		uint64_t b = off + i < VGA_PORTS_LEN
				     ? vga_port_read(v, VGA_PORTS_BASE + (unsigned)(off + i))
				     : 0xff;

		val |= b << (8 * i);
	}
	return val;
}

/* A word write to an index port sets the index, then the data (low byte
 * first): the common "outw(0x3c4, index | value << 8)". */
static void vga_ports_write(struct vga *v, uint64_t off, unsigned size, uint64_t val)
{
	for (unsigned i = 0; i < size && off + i < VGA_PORTS_LEN; i++)
		vga_port_write(v, VGA_PORTS_BASE + (unsigned)(off + i), (uint8_t)(val >> (8 * i)));
}

/* ---- the 0xA0000 window ---- */

/* GR6 memory map select: where the window decodes and from which VRAM
 * offset; false when addr is outside the selected range. */
static bool vga_window_offset(const struct vga *v, uint64_t addr, uint32_t *off)
{
	switch ((v->r.gr[VGA_GFX_MISC] >> 2) & 3) {
	case 0: /* A0000-BFFFF, 128 KiB */ *off = (uint32_t)addr; return true;
	case 1: /* A0000-AFFFF, 64 KiB, plus the VBE bank */
		*off = (uint32_t)addr + v->r.bank_offset;
		return addr < 0x10000;
	case 2: /* B0000-B7FFF */
		*off = (uint32_t)addr - 0x10000;
		return addr >= 0x10000 && addr < 0x18000;
	default: /* B8000-BFFFF */ *off = (uint32_t)addr - 0x18000; return addr >= 0x18000;
	}
}

/* Odd/even: even addresses reach planes 0/2, odd ones 1/3 (GR4 bit 1 picks
 * the pair), at the address with bit 0 cleared. */
static uint64_t vga_odd_even(const struct vga *v, uint32_t off, unsigned *plane)
{
	*plane = (v->r.gr[VGA_GFX_PLANE_READ] & 2) | (off & 1);
	return (((uint64_t)(off & ~1u) << 1) | *plane) & (v->vram_size - 1);
}

static uint32_t *vga_dword(struct vga *v, uint32_t off)
{
	return (uint32_t *)v->vram + (off & ((v->vram_size >> 2) - 1));
}

static uint8_t vga_window_readb(struct vga *v, uint64_t addr)
{
	const struct vga_regs *r = &v->r;
	uint32_t off, x;
	unsigned plane;

	if (!vga_window_offset(v, addr, &off))
		return 0xff;
	if (r->sr[VGA_SEQ_MEMORY_MODE] & VGA_SR04_CHN_4M)
		return v->vram[off & (v->vram_size - 1)];
	if (r->gr[VGA_GFX_MODE] & VGA_GR05_ODD_EVEN)
		return v->vram[vga_odd_even(v, off, &plane)];
	/* Planar: every read loads the four latches. */
	v->r.latch = *vga_dword(v, off);
	if (!(r->gr[VGA_GFX_MODE] & VGA_GR05_READ_MODE1))
		return (uint8_t)(v->r.latch >> (8 * (r->gr[VGA_GFX_PLANE_READ] & 3)));
	/* Read mode 1 (color compare): 1 where every plane not in "color
	 * don't care" equals its color compare bit. */
	x = (v->r.latch ^ vga_plane_bytes(r->gr[VGA_GFX_COMPARE_VALUE])) &
	    vga_plane_bytes(r->gr[VGA_GFX_COMPARE_MASK]);
	x |= x >> 16;
	x |= x >> 8;
	return (uint8_t)~x;
}

static uint8_t vga_rotate(uint8_t val, unsigned n)
{
	n &= 7;
	return n ? (uint8_t)((val >> n) | (val << (8 - n))) : val;
}

/* Write modes 0-3 (FreeVGA "Graphics Controller: write modes"): the CPU
 * byte becomes four plane bytes, combined with the latches by the logical
 * operation and the bit mask; the map mask then picks the planes written. */
static uint32_t vga_planar_value(struct vga *v, uint8_t val)
{
	const struct vga_regs *r = &v->r;
	unsigned mode = r->gr[VGA_GFX_MODE] & 3, func = (r->gr[VGA_GFX_DATA_ROTATE] >> 3) & 3;
	uint32_t x, set, bits = r->gr[VGA_GFX_BIT_MASK];

	switch (mode) {
	case 0:
		x = vga_rotate(val, r->gr[VGA_GFX_DATA_ROTATE]) * 0x01010101u;
		set = vga_plane_bytes(r->gr[VGA_GFX_SR_ENABLE]);
		x = (x & ~set) | (vga_plane_bytes(r->gr[VGA_GFX_SR_VALUE]) & set);
		break;
	case 1: return r->latch;
	case 2: x = vga_plane_bytes(val & 0x0f); break;
	default:
		bits &= vga_rotate(val, r->gr[VGA_GFX_DATA_ROTATE]);
		x = vga_plane_bytes(r->gr[VGA_GFX_SR_VALUE]);
		break;
	}
	if (func == 1)
		x &= r->latch;
	else if (func == 2)
		x |= r->latch;
	else if (func == 3)
		x ^= r->latch;
	bits *= 0x01010101u;
	return (x & bits) | (r->latch & ~bits);
}

static void vga_plane_byte(struct vga *v, uint64_t at, unsigned plane, uint8_t val)
{
	if (!(v->r.sr[VGA_SEQ_PLANE_WRITE] & (1u << plane)))
		return;
	v->vram[at] = val;
	vga_mark(v, at, 1);
	if (plane == 2)
		v->font_written = true;
}

static void vga_window_writeb(struct vga *v, uint64_t addr, uint8_t val)
{
	const struct vga_regs *r = &v->r;
	uint32_t off, mask, *w;
	unsigned plane;
	uint64_t at;

	if (!vga_window_offset(v, addr, &off))
		return;
	if (r->sr[VGA_SEQ_MEMORY_MODE] & VGA_SR04_CHN_4M) {
		at = off & (v->vram_size - 1);
		vga_plane_byte(v, at, off & 3, val);
		return;
	}
	if (r->gr[VGA_GFX_MODE] & VGA_GR05_ODD_EVEN) {
		at = vga_odd_even(v, off, &plane);
		vga_plane_byte(v, at, plane, val);
		return;
	}
	w = vga_dword(v, off);
	mask = vga_plane_bytes(r->sr[VGA_SEQ_PLANE_WRITE]);
	*w = (*w & ~mask) | (vga_planar_value(v, val) & mask);
	vga_mark(v, (uint64_t)((uint8_t *)w - v->vram), 4);
	if (mask & 0x00ff0000u)
		v->font_written = true;
}

/* Wider accesses are bytes in ascending address order. */
static uint64_t vga_window_read(struct vga *v, uint64_t off, unsigned size)
{
	uint64_t val = 0;

	for (unsigned i = 0; i < size; i++)
		val |= (uint64_t)(off + i < VGA_WINDOW_LEN ? vga_window_readb(v, off + i) : 0xff)
		       << (8 * i);
	return val;
}

static void vga_window_write(struct vga *v, uint64_t off, unsigned size, uint64_t val)
{
	for (unsigned i = 0; i < size && off + i < VGA_WINDOW_LEN; i++)
		vga_window_writeb(v, off + i, (uint8_t)(val >> (8 * i)));
}

/* ---- dev_ops ---- */

static uint64_t vga_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	struct vga *v = to_vga(dev);

	switch (region) {
	case VGA_REGION_PORTS: return vga_ports_read(v, off, size);
	case VGA_REGION_DISPI: return vga_dispi_port_read(v, off, size);
	case VGA_REGION_WINDOW: return vga_window_read(v, off, size);
	case VGA_REGION_LFB: return vga_lfb_read(v, off, size);
	case VGA_REGION_MMIO: return vga_mmio_read(v, off, size);
	default: return emu_ones(size);
	}
}

static void vga_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct vga *v = to_vga(dev);

	switch (region) {
	case VGA_REGION_PORTS: vga_ports_write(v, off, size, val); break;
	case VGA_REGION_DISPI: vga_dispi_port_write(v, off, size, val); break;
	case VGA_REGION_WINDOW: vga_window_write(v, off, size, val); break;
	case VGA_REGION_LFB: vga_lfb_write(v, off, size, val); break;
	case VGA_REGION_MMIO: vga_mmio_write(v, off, size, val); break;
	default: return;
	}
	display_changed(v->display);
}

/* Power-on: every register 0 (the VGA BIOS programs a mode), the DAC mask
 * open, the VBE ID of the newest interface. VRAM keeps its contents, as on
 * hardware; the next update redraws everything. */
void vga_regs_reset(struct vga *v)
{
	memset(&v->r, 0, sizeof(v->r));
	v->r.pel_mask = 0xff;
	v->r.vbe[VBE_DISPI_INDEX_ID] = VBE_DISPI_ID5;
	v->r.qext_endian = VGA_QEXT_LITTLE;
	__atomic_store_n(&v->force_full, true, __ATOMIC_RELEASE);
}

static void vga_reset(struct device *dev)
{
	struct vga *v = to_vga(dev);

	vga_regs_reset(v);
	display_changed(v->display);
}

static void vga_destroy(struct device *dev)
{
	struct vga *v = to_vga(dev);

	if (v->pdev.bus)
		pci_dev_exit(&v->pdev);
	if (v->display)
		display_set_source(v->display, NULL, NULL);
	vga_render_free(v);
	if (v->vram)
		munmap(v->vram, v->vram_size);
	free(v->dirty);
	free(v->rom);
	pthread_mutex_destroy(&dev->lock);
	free(v);
}

static const struct dev_ops vga_dev_ops = {
	.name = "vga",
	.reset = vga_reset,
	.read = vga_read,
	.write = vga_write,
	.save = vga_save,
	.load = vga_load,
	.destroy = vga_destroy,
};

static const struct pci_dev_ops vga_pci_ops = {
	.bar_remap = vga_bar_remap,
};

static const struct display_source_ops vga_display_ops = {
	.refresh = vga_display_refresh,
};

static bool vga_opts_ok(const struct vga_opts *o)
{
	uint64_t s = o->vram_size;

	return s >= VGA_VRAM_MIN && s <= VGA_VRAM_MAX && !(s & (s - 1)) &&
	       (!o->rom || (o->rom_len && o->rom_len <= PCI_ROM_MAX_SIZE));
}

/* The VRAM: lazily backed host memory, so a 16 MiB framebuffer costs only
 * the pages the guest draws on. */
static int vga_alloc(struct vga *v, const struct vga_opts *o)
{
	v->vram_size = o->vram_size;
	v->vram_pages = o->vram_size >> VGA_PAGE_SHIFT;
	v->vram = mmap(NULL, v->vram_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (v->vram == MAP_FAILED) {
		v->vram = NULL;
		return -ENOMEM;
	}
	v->dirty = calloc(vga_words(v->vram_pages), sizeof(uint64_t));
	if (o->rom) {
		v->rom = malloc(o->rom_len);
		if (v->rom) {
			memcpy(v->rom, o->rom, o->rom_len);
			v->rom_len = o->rom_len;
		}
	}
	if (!v->dirty || (o->rom && !v->rom))
		return -ENOMEM;
	return vga_render_init(v);
}

/* 1234:1111 class 0300 with BAR 0 the prefetchable framebuffer, BAR 2 the
 * register block and the option ROM, as QEMU's "VGA" device. */
static int vga_pci_init(struct vga *v)
{
	struct pci_dev *p = &v->pdev;
	int ret;

	pci_dev_init(p, VGA_PCI_VENDOR, VGA_PCI_DEVICE, VGA_PCI_CLASS, VGA_PCI_REVISION,
		     &vga_pci_ops, v);
	pci_dev_set_subsystem(p, 0x1af4, 0x1100);
	ret = pci_dev_set_bar(p, VGA_BAR_LFB, v->vram_size, PCI_BAR_MEM32 | PCI_BAR_PREFETCH);
	ret = ret ?: pci_dev_set_bar(p, VGA_BAR_MMIO, VGA_MMIO_SIZE, PCI_BAR_MEM32);
	if (!ret && v->rom)
		ret = pci_dev_set_rom(p, v->rom, v->rom_len);
	if (ret)
		return ret;
	if (!v->has_lfb_ops)
		pci_bar_attach(p, VGA_BAR_LFB, &v->dev, VGA_REGION_LFB);
	pci_bar_attach(p, VGA_BAR_MMIO, &v->dev, VGA_REGION_MMIO);
	return 0;
}

int vga_create(const struct vga_opts *o, struct device *pci_host, int slot, struct display *display,
	       struct device **out)
{
	struct vga *v;
	int ret;

	if (!vga_opts_ok(o))
		return -EINVAL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	device_init(&v->dev, &vga_dev_ops);
	v->now_ns = o->now_ns ? o->now_ns : clock_mono_ns;
	if (o->lfb) {
		v->lfb = *o->lfb;
		v->has_lfb_ops = true;
	}
	ret = vga_alloc(v, o);
	ret = ret ?: vga_pci_init(v);
	if (!ret) {
		vga_regs_reset(v);
		if (pci_host) {
			ret = pci_host_add(pci_host, &v->pdev, slot);
			ret = ret < 0 ? ret : 0;
		}
	}
	if (ret) {
		vga_destroy(&v->dev);
		return ret;
	}
	v->display = display;
	if (display)
		display_set_source(display, &vga_display_ops, v);
	*out = &v->dev;
	return 0;
}

uint8_t *vga_vram(struct device *dev, uint64_t *size)
{
	struct vga *v = to_vga(dev);

	if (size)
		*size = v->vram_size;
	return v->vram;
}
