/* VGA save/load: three sections, each checked before anything changes.
 *
 *   "VGAR" v1  the registers (sequencer, graphics, CRTC, attribute, DAC and
 *              its palette, latches, the DISPI registers and QEMU's extended
 *              byte-order register), fixed-endian, field by field;
 *   "PCIF"     the PCI function (pci_dev_save: BARs, command, ROM BAR);
 *   "VGAM" v1  the VRAM: its size, then each page that is not all zero as
 *              {u32 page, 4 KiB}. The VRAM is guest-visible memory (the
 *              framebuffer BAR) and must travel with the device; sparse,
 *              because most of a 16 MiB framebuffer is never touched. A live
 *              migration would send it with RAM, in dirty-log rounds (the
 *              framebuffer slot is dirty-logged anyway): this section is the
 *              stop-and-copy form.
 *
 * load() treats every field as hostile: indices and sub-indices must be in
 * range, registers may hold only the bits a guest write can set, the DISPI
 * geometry is clamped again by vga_vbe_fixup(), pages must be in range and
 * ascending; the section ends must match. Derived state (the VBE start and
 * line, the renderer's cache) is recomputed. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "kestrel/state.h"
#include "emu.h"
#include "vga_priv.h"

#define VGA_REGS_ID	 0x52414756 /* "VGAR" */
#define VGA_REGS_VERSION 1
#define VGA_VRAM_ID	 0x4d414756 /* "VGAM" */
#define VGA_VRAM_VERSION 1
#define VGA_PAGE	 (1u << VGA_PAGE_SHIFT)

static const uint8_t vga_sr_bits[VGA_SEQ_NUM] = { 0x03, 0x3d, 0x0f, 0x3f, 0x0e };
static const uint8_t vga_gr_bits[VGA_GFX_NUM] = { 0x0f, 0x0f, 0x0f, 0x1f, 0x03,
						  0x7b, 0x0f, 0x0f, 0xff };

static void vga_save_regs(const struct vga_regs *r, struct state_buf *out)
{
	size_t mark = state_section_begin(out, VGA_REGS_ID, VGA_REGS_VERSION);

	state_put_u8(out, r->misc);
	state_put_u8(out, r->fcr);
	state_put_u8(out, r->st01);
	state_put_u8(out, r->sr_index);
	state_put_bytes(out, r->sr, sizeof(r->sr));
	state_put_u8(out, r->gr_index);
	state_put_bytes(out, r->gr, sizeof(r->gr));
	state_put_u8(out, r->cr_index);
	state_put_bytes(out, r->cr, sizeof(r->cr));
	state_put_u8(out, r->ar_index);
	state_put_bytes(out, r->ar, sizeof(r->ar));
	state_put_u8(out, r->ar_flip_flop);
	state_put_u8(out, r->dac_state);
	state_put_u8(out, r->dac_read);
	state_put_u8(out, r->dac_write);
	state_put_u8(out, r->dac_sub);
	state_put_bytes(out, r->dac_cache, sizeof(r->dac_cache));
	state_put_u8(out, r->pel_mask);
	state_put_bytes(out, r->palette, sizeof(r->palette));
	state_put_u32(out, r->latch);
	state_put_u16(out, r->vbe_index);
	for (unsigned i = 0; i < VBE_DISPI_INDEX_NB; i++)
		state_put_u16(out, r->vbe[i]);
	state_put_u32(out, r->bank_offset);
	state_put_u32(out, r->qext_endian);
	state_section_end(out, mark);
}

static bool vga_page_zero(const uint8_t *p)
{
	static const uint8_t zero[VGA_PAGE];

	return memcmp(p, zero, VGA_PAGE) == 0;
}

static void vga_save_vram(const struct vga *v, struct state_buf *out)
{
	size_t mark = state_section_begin(out, VGA_VRAM_ID, VGA_VRAM_VERSION);
	uint32_t n = 0;
	size_t count_at;

	state_put_u64(out, v->vram_size);
	count_at = out->len;
	state_put_u32(out, 0);
	for (uint64_t p = 0; p < v->vram_pages && !out->error; p++) {
		const uint8_t *page = v->vram + (p << VGA_PAGE_SHIFT);

		if (vga_page_zero(page))
			continue;
		state_put_u32(out, (uint32_t)p);
		state_put_bytes(out, page, VGA_PAGE);
		n++;
	}
	if (!out->error)
		for (unsigned i = 0; i < 4; i++)
			out->data[count_at + i] = (uint8_t)(n >> (8 * i));
	state_section_end(out, mark);
}

int vga_save(struct device *dev, struct state_buf *out)
{
	struct vga *v = (struct vga *)dev;

	vga_save_regs(&v->r, out);
	if (pci_dev_save(&v->pdev, out))
		return -ENOMEM;
	vga_save_vram(v, out);
	return out->error ? -ENOMEM : 0;
}

static bool vga_regs_valid(const struct vga_regs *r)
{
	for (unsigned i = 0; i < VGA_SEQ_NUM; i++)
		if (r->sr[i] & ~vga_sr_bits[i])
			return false;
	for (unsigned i = 0; i < VGA_GFX_NUM; i++)
		if (r->gr[i] & ~vga_gr_bits[i])
			return false;
	for (unsigned i = 0; i < 0x10; i++)
		if (r->ar[i] & ~0x3f)
			return false;
	return r->sr_index < 8 && r->gr_index < 0x10 && r->ar_index < 0x40 && !(r->misc & 0x10) &&
	       !(r->fcr & ~0x10) && !(r->st01 & ~(VGA_IS1_VR | VGA_IS1_DE)) &&
	       r->ar_flip_flop <= 1 && (r->dac_state == 0 || r->dac_state == 3) && r->dac_sub < 3 &&
	       !(r->ar[VGA_ATC_MODE] & 0x10) && !(r->ar[VGA_ATC_PLANE_ENABLE] & 0xc0) &&
	       !(r->ar[VGA_ATC_PEL] & 0xf0) && !(r->ar[VGA_ATC_COLOR_PAGE] & 0xf0) &&
	       (r->qext_endian == VGA_QEXT_BIG || r->qext_endian == VGA_QEXT_LITTLE);
}

static int vga_parse_regs(const struct vga *v, struct state_buf *in, struct vga_regs *r)
{
	size_t end;
	uint32_t banks = (uint32_t)(v->vram_size >> 16);

	if (state_section_open(in, VGA_REGS_ID, VGA_REGS_VERSION) < 1)
		return -EINVAL;
	end = state_section_body_end(in);
	memset(r, 0, sizeof(*r));
	r->misc = state_get_u8(in);
	r->fcr = state_get_u8(in);
	r->st01 = state_get_u8(in);
	r->sr_index = state_get_u8(in);
	state_get_bytes(in, r->sr, sizeof(r->sr));
	r->gr_index = state_get_u8(in);
	state_get_bytes(in, r->gr, sizeof(r->gr));
	r->cr_index = state_get_u8(in);
	state_get_bytes(in, r->cr, sizeof(r->cr));
	r->ar_index = state_get_u8(in);
	state_get_bytes(in, r->ar, sizeof(r->ar));
	r->ar_flip_flop = state_get_u8(in);
	r->dac_state = state_get_u8(in);
	r->dac_read = state_get_u8(in);
	r->dac_write = state_get_u8(in);
	r->dac_sub = state_get_u8(in);
	state_get_bytes(in, r->dac_cache, sizeof(r->dac_cache));
	r->pel_mask = state_get_u8(in);
	state_get_bytes(in, r->palette, sizeof(r->palette));
	r->latch = state_get_u32(in);
	r->vbe_index = state_get_u16(in);
	for (unsigned i = 0; i < VBE_DISPI_INDEX_NB; i++)
		r->vbe[i] = state_get_u16(in);
	r->bank_offset = state_get_u32(in);
	r->qext_endian = state_get_u32(in);
	if (!state_section_done(in, end) || !vga_regs_valid(r))
		return -EINVAL;
	/* The bank as a write would have masked it; the geometry clamped. */
	r->vbe[VBE_DISPI_INDEX_BANK] &=
		(uint16_t)((r->vbe[VBE_DISPI_INDEX_BPP] == 4 ? banks >> 2 : banks) - 1);
	if (r->bank_offset != 0 && r->bank_offset != (uint32_t)r->vbe[VBE_DISPI_INDEX_BANK] << 16)
		return -EINVAL;
	vga_vbe_fixup(r, v->vram_size);
	return 0;
}

/* The VRAM section walked without copying: sizes, page order, the end. */
static int vga_check_vram(const struct vga *v, struct state_buf *in, size_t *body)
{
	size_t end;
	uint32_t n;
	int64_t last = -1;

	if (state_section_open(in, VGA_VRAM_ID, VGA_VRAM_VERSION) < 1)
		return -EINVAL;
	end = state_section_body_end(in);
	if (state_get_u64(in) != v->vram_size)
		return -EINVAL; /* another --vga mem= */
	*body = in->pos;
	n = state_get_u32(in);
	for (uint32_t i = 0; i < n && !in->error; i++) {
		uint32_t p = state_get_u32(in);

		if (p >= v->vram_pages || (int64_t)p <= last || in->len - in->pos < VGA_PAGE)
			return -EINVAL;
		last = p;
		in->pos += VGA_PAGE;
	}
	return state_section_done(in, end) ? 0 : -EINVAL;
}

static void vga_load_vram(struct vga *v, struct state_buf *in, size_t body)
{
	size_t end = in->pos;
	uint32_t n;

	in->pos = body;
	/* Zero pages without touching them: the mapping is private anonymous. */
	if (madvise(v->vram, v->vram_size, MADV_DONTNEED) < 0)
		memset(v->vram, 0, v->vram_size);
	n = state_get_u32(in);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t p = state_get_u32(in);

		state_get_bytes(in, v->vram + ((uint64_t)p << VGA_PAGE_SHIFT), VGA_PAGE);
	}
	in->pos = end;
}

int vga_load(struct device *dev, struct state_buf *in)
{
	struct vga *v = (struct vga *)dev;
	struct pci_dev_state pst;
	struct vga_regs r;
	size_t body;

	if (vga_parse_regs(v, in, &r) || pci_dev_parse(&v->pdev, in, &pst) ||
	    vga_check_vram(v, in, &body))
		return -EINVAL;
	v->r = r;
	vga_load_vram(v, in, body);
	vga_mark(v, 0, v->vram_size);
	__atomic_store_n(&v->force_full, true, __ATOMIC_RELEASE);
	pci_dev_commit(&v->pdev, &pst);
	display_changed(v->display);
	return 0;
}
