/* Small helpers shared by the emulated devices in this folder: byte lanes of
 * wide accesses and section bookkeeping for load(). Header-only on purpose. */
#ifndef KESTREL_EMU_H
#define KESTREL_EMU_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include "kestrel/state.h"

/* All ones in an access of `size` bytes: what an unclaimed read returns. */
static inline uint64_t emu_ones(unsigned size)
{
	return size >= 8 ? ~0ULL : (1ULL << (8 * size)) - 1;
}

/* The part of an access [off, off+size) carrying value val that lands in the
 * register [reg, reg+width): the bytes in register coordinates (*rval) and
 * which of them were written (*rmask). False if they do not overlap. */
static inline bool emu_lane_in(uint64_t off, unsigned size, uint64_t val, uint64_t reg,
			       unsigned width, uint64_t *rval, uint64_t *rmask)
{
	*rval = 0;
	*rmask = 0;
	for (unsigned i = 0; i < size; i++) {
		uint64_t a = off + i;

		if (a < reg || a >= reg + width)
			continue;
		*rval |= ((val >> (8 * i)) & 0xff) << (8 * (a - reg));
		*rmask |= 0xffULL << (8 * (a - reg));
	}
	return *rmask != 0;
}

/* The bytes of register [reg, reg+width) holding regval, placed where an access
 * [off, off+size) sees them; OR the results of every register together. */
static inline uint64_t emu_lane_out(uint64_t off, unsigned size, uint64_t reg, unsigned width,
				    uint64_t regval)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < size; i++) {
		uint64_t a = off + i;

		if (a < reg || a >= reg + width)
			continue;
		v |= ((regval >> (8 * (a - reg))) & 0xff) << (8 * i);
	}
	return v;
}

/* Merge written lanes into a register. */
static inline uint64_t emu_lane_merge(uint64_t old, uint64_t rval, uint64_t rmask)
{
	return (old & ~rmask) | (rval & rmask);
}

/* Section bookkeeping for load(), now in kestrel/state.h for every device. */
static inline size_t emu_section_body_end(const struct state_buf *b)
{
	return state_section_body_end(b);
}

static inline bool emu_section_done(const struct state_buf *b, size_t end)
{
	return state_section_done(b, end);
}

/* The save and load of a device with no state of its own: an empty
 * section {id, version}, which keeps the stream uniform. */
static inline int emu_save_empty(struct state_buf *out, uint32_t id, uint32_t version)
{
	state_section_end(out, state_section_begin(out, id, version));
	return out->error ? -ENOMEM : 0;
}

static inline int emu_load_empty(struct state_buf *in, uint32_t id, uint32_t version)
{
	size_t end;

	if (state_section_open(in, id, version) < 0)
		return -EINVAL;
	end = emu_section_body_end(in);
	return emu_section_done(in, end) ? 0 : -EINVAL;
}

#endif
