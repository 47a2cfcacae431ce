/* The 82441FX (i440FX) PMC's Programmable Attribute Map: what the CPU sees
 * at 0xC0000-0xFFFFF, shadow RAM or the PCI/ISA side (82441FX datasheet,
 * 3.2.18 PAM0-PAM6; QEMU hw/pci-host/pam.c).
 *
 * Thirteen segments: PAM0 bits 5:4 for the system BIOS segment 0xF0000-
 * 0xFFFFF (64 KiB), PAM1-PAM6 two 16 KiB segments each for 0xC0000-0xEFFFF
 * (bits 1:0 the lower, bits 5:4 the upper). In each two-bit field, bit 0 is
 * RE (reads come from DRAM) and bit 1 WE (writes go to DRAM); what DRAM does
 * not take goes to PCI, where the BIOS flash answers 0xE0000-0xFFFFF (its
 * last 128 KiB, aliased below 1 MiB) and nothing answers 0xC0000-0xDFFFF.
 *
 * Each segment is one guest-memory slot (or none), so every state is plain
 * memory to KVM and costs no exit except where DRAM and PCI split a
 * segment's reads and writes:
 *
 *   attr 3 read/write   DRAM, read-write
 *   attr 1 read-only    DRAM, read-only slot; writes go to PCI: dropped
 *   attr 2 write-only   the PCI view, read-only slot; writes reach the
 *                       segment's DRAM through this device (the slot's sink)
 *   attr 0 disabled     the PCI view, read-only slot, writes dropped; where
 *                       the PCI side is empty (0xC0000-0xDFFFF, or past a
 *                       ROM shorter than 128 KiB) no slot at all, so that a
 *                       device decoding there on the MMIO bus answers
 *
 * The PCI view of an empty segment in the write-only state is a page of
 * 0xFF (an empty bus). The DRAM is the RAM backing at the same offset
 * (below 4 GiB RAM offset == address), so shadow contents survive every
 * change of attribute, as on the real chipset.
 *
 * The host bridge calls pam_set() after each guest write to 0x59-0x5F and at
 * reset; a change re-maps only the segments whose attribute changed (KVM
 * cannot change a slot's read-only flag in place: guest_mem deletes and
 * re-creates it, a moment in which another vCPU touching that segment would
 * see a hole; firmware changes PAM on one CPU during POST). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kestrel/board.h"
#include "kestrel/devices.h"
#include "kestrel/guest_mem.h"
#include "kestrel/state.h"
#include "emu.h"

#define PAM_SEGS	  13
#define PAM_LOW_SEG_SIZE  0x4000ULL  /* PAM1-6: 16 KiB each */
#define PAM_BIOS_SEG	  12	     /* PAM0: 0xF0000, 64 KiB */
#define PAM_ROM_WINDOW	  0xe0000ULL /* where the BIOS flash aliases below 1 MiB */
#define PAM_ATTR_RE	  1u
#define PAM_ATTR_WE	  2u
#define PAM_NOT_MAPPED	  0xffu
#define PAM_STATE_ID	  0x50414d30 /* "PAM0" */
#define PAM_STATE_VERSION 1

struct pam_seg {
	uint64_t gpa, size;
	const uint8_t *rom; /* the flash behind it, or NULL: nothing on PCI */
	int slot;	    /* guest-memory slot id, -1: none (a hole) */
	uint8_t attr;	    /* what is mapped now, PAM_NOT_MAPPED before the first */
	char name[GM_SLOT_NAME_MAX];
};

struct pam {
	struct device dev;
	struct guest_mem *gm;
	uint8_t *ones; /* PAM_LOW_SEG_SIZE of 0xFF: an empty PCI bus */
	struct pam_seg seg[PAM_SEGS];
	uint8_t regs[PAM_NREGS];
};

static struct pam *to_pam(struct device *dev)
{
	return (struct pam *)dev;
}

/* The two-bit attribute of segment i in the registers. */
static uint8_t pam_attr(const uint8_t regs[PAM_NREGS], unsigned i)
{
	if (i == PAM_BIOS_SEG)
		return (regs[0] >> 4) & 3;
	return (regs[1 + i / 2] >> (i % 2 ? 4 : 0)) & 3;
}

/* ---- the write-only state: writes reach shadow RAM ---- */

static uint64_t pam_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	return emu_ones(size); /* never on a bus: reads are KVM's */
}

static void pam_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct pam *p = to_pam(dev);
	const struct pam_seg *s;
	uint8_t *ram;

	if (region < 0 || region >= PAM_SEGS || size > sizeof(val))
		return;
	s = &p->seg[region];
	if (off > s->size || size > s->size - off)
		return;
	ram = gm_ram_ptr(p->gm, s->gpa + off, size);
	if (!ram)
		return;
	memcpy(ram, &val, size); /* x86: the value's bytes in address order */
	gm_mark_dirty_hva(p->gm, ram, size);
}

/* ---- mapping ---- */

static struct gm_slot_spec pam_spec(struct pam *p, const struct pam_seg *s, uint8_t attr)
{
	struct gm_slot_spec sp = {
		.name = s->name, .gpa = s->gpa, .size = s->size, .sink_region = (int)(s - p->seg)
	};

	if (attr & PAM_ATTR_RE) {
		sp.flags = GM_SLOT_RAM | (attr & PAM_ATTR_WE ? 0 : GM_SLOT_READONLY);
		sp.ram_offset = s->gpa;
		return sp;
	}
	sp.flags = GM_SLOT_READONLY;
	sp.hva = (void *)(s->rom ? s->rom : p->ones);
	if (attr & PAM_ATTR_WE)
		sp.sink = &p->dev;
	return sp;
}

/* Segment i as attr says: flags and sink changed in place where the backing
 * stays (DRAM read-only <-> read-write; the PCI view with writes dropped <->
 * reaching DRAM), else the slot replaced. */
static int pam_map(struct pam *p, unsigned i, uint8_t attr)
{
	struct pam_seg *s = &p->seg[i];
	struct gm_slot_spec sp = pam_spec(p, s, attr);
	bool hole = attr == 0 && !s->rom;
	int ret = 0, id;

	if (s->attr == attr)
		return 0;
	if (s->slot >= 0 && !hole && (s->attr & PAM_ATTR_RE) == (attr & PAM_ATTR_RE)) {
		ret = gm_slot_set_flags(p->gm, s->slot, sp.flags, sp.sink, sp.sink_region);
		if (!ret)
			s->attr = attr;
		return ret;
	}
	if (s->slot >= 0) {
		ret = gm_slot_remove(p->gm, s->slot);
		if (ret)
			return ret;
		s->slot = -1;
	}
	s->attr = attr;
	if (hole)
		return 0;
	id = gm_slot_add(p->gm, &sp);
	if (id < 0) {
		s->attr = PAM_NOT_MAPPED;
		return id;
	}
	s->slot = id;
	return 0;
}

int pam_set(struct device *dev, const uint8_t regs[PAM_NREGS])
{
	struct pam *p = to_pam(dev);
	int ret = 0;

	pthread_mutex_lock(&dev->lock);
	memcpy(p->regs, regs, PAM_NREGS);
	for (unsigned i = 0; i < PAM_SEGS; i++) {
		int r = pam_map(p, i, pam_attr(regs, i));

		ret = ret ?: r;
	}
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

void pam_get(struct device *dev, uint8_t regs[PAM_NREGS])
{
	pthread_mutex_lock(&dev->lock);
	memcpy(regs, to_pam(dev)->regs, PAM_NREGS);
	pthread_mutex_unlock(&dev->lock);
}

/* ---- device ---- */

static void pam_reset(struct device *dev)
{
	/* The registers are the host bridge's: it resets them and calls pam_set. */
}

/* The map follows the host bridge's registers, which the host saves and
 * replays into pam_set on load: nothing of its own to keep. */
static int pam_save(struct device *dev, struct state_buf *out)
{
	return emu_save_empty(out, PAM_STATE_ID, PAM_STATE_VERSION);
}

static int pam_load(struct device *dev, struct state_buf *in)
{
	return emu_load_empty(in, PAM_STATE_ID, PAM_STATE_VERSION);
}

/* Slots go with the guest memory (the VM is torn down with it); only what
 * this device mapped itself is freed here. */
static void pam_destroy(struct device *dev)
{
	struct pam *p = to_pam(dev);

	if (p->ones)
		munmap(p->ones, PAM_LOW_SEG_SIZE);
	pthread_mutex_destroy(&dev->lock);
	free(p);
}

static const struct dev_ops pam_ops = {
	.name = "i440fx-pam",
	.reset = pam_reset,
	.read = pam_read,
	.write = pam_write,
	.save = pam_save,
	.load = pam_load,
	.destroy = pam_destroy,
};

/* Take 0xC0000-0xFFFFF over from guest memory's PC layout: its slots there
 * must lie wholly inside the range. */
static int pam_claim(struct pam *p)
{
	const uint64_t lo = BOARD_VGA_WINDOW_END, hi = BOARD_BIOS_SEGMENT_END;
	struct gm_slot_info in;
	int id, ret;

	for (uint64_t a = lo; a < hi; a += PAM_LOW_SEG_SIZE) {
		id = gm_slot_at(p->gm, a);
		if (id < 0)
			continue;
		if (gm_slot_get(p->gm, id, &in) || in.gpa < lo || in.gpa + in.size > hi)
			return -EBUSY;
		ret = gm_slot_remove(p->gm, id);
		if (ret)
			return ret;
	}
	return 0;
}

static void pam_seg_init(struct pam *p, const uint8_t *rom, size_t rom_len)
{
	for (unsigned i = 0; i < PAM_SEGS; i++) {
		struct pam_seg *s = &p->seg[i];
		uint64_t rom_start = BOARD_BIOS_SEGMENT_END - rom_len;

		s->gpa = i == PAM_BIOS_SEG ? BOARD_BIOS_SEGMENT
					   : BOARD_VGA_WINDOW_END + i * PAM_LOW_SEG_SIZE;
		s->size = i == PAM_BIOS_SEG ? BOARD_BIOS_SEGMENT_END - BOARD_BIOS_SEGMENT
					    : PAM_LOW_SEG_SIZE;
		s->slot = -1;
		s->attr = PAM_NOT_MAPPED;
		if (rom && s->gpa >= rom_start)
			s->rom = rom + (s->gpa - rom_start);
		/* "bios" as guest_mem's layout names the F segment (query-vm, --stats). */
		if (i == PAM_BIOS_SEG)
			snprintf(s->name, sizeof(s->name), "bios");
		else
			snprintf(s->name, sizeof(s->name), "pam-%05llx",
				 (unsigned long long)s->gpa);
	}
}

struct device *pam_create(struct guest_mem *gm, const void *rom, size_t rom_len,
			  const uint8_t regs[PAM_NREGS])
{
	struct pam *p;

	if (rom_len > BOARD_BIOS_SEGMENT_END - PAM_ROM_WINDOW || rom_len % PAM_LOW_SEG_SIZE ||
	    ((uintptr_t)rom % GM_PAGE_SIZE))
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	device_init(&p->dev, &pam_ops);
	p->gm = gm;
	pam_seg_init(p, rom_len ? rom : NULL, rom_len);
	p->ones = mmap(NULL, PAM_LOW_SEG_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (p->ones == MAP_FAILED) {
		p->ones = NULL;
		goto fail;
	}
	memset(p->ones, 0xff, PAM_LOW_SEG_SIZE);
	if (mprotect(p->ones, PAM_LOW_SEG_SIZE, PROT_READ) || pam_claim(p) ||
	    pam_set(&p->dev, regs))
		goto fail;
	return &p->dev;
fail:
	pam_destroy(&p->dev);
	return NULL;
}
