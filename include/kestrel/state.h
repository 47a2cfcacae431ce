/* Device state as data: sections {id, version, length} of little-endian fields.
 * Readers treat every field as untrusted (bounds-checked getters). */
#ifndef KESTREL_STATE_H
#define KESTREL_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kestrel/util.h"

struct state_buf {
	uint8_t *data;
	size_t len; /* bytes written (writer) or available (reader) */
	size_t cap; /* writer capacity */
	size_t pos; /* reader position */
	bool error; /* sticky: allocation failure or read past end */
};

void state_put_u8(struct state_buf *b, uint8_t v);
void state_put_u16(struct state_buf *b, uint16_t v);
void state_put_u32(struct state_buf *b, uint32_t v);
void state_put_u64(struct state_buf *b, uint64_t v);
void state_put_bytes(struct state_buf *b, const void *p, size_t n);
uint8_t state_get_u8(struct state_buf *b);
uint16_t state_get_u16(struct state_buf *b);
uint32_t state_get_u32(struct state_buf *b);
uint64_t state_get_u64(struct state_buf *b);
void state_get_bytes(struct state_buf *b, void *p, size_t n);
void state_free(struct state_buf *b);

/* A member of a struct as a stream carries it: one of 1, 2, 4 or 8 bytes is
 * an unsigned integer (little-endian in the stream), any other size raw
 * bytes. One table of them serves the put and the get, so the two cannot
 * drift apart; the get leaves checking the values to its caller. */
struct state_field {
	uint16_t off, size;
};
#define STATE_FIELD(type, member)                                   \
	{                                                           \
		offsetof(type, member), sizeof(((type *)0)->member) \
	}
void state_put_fields(struct state_buf *b, const void *s, const struct state_field *f, size_t n);
void state_get_fields(struct state_buf *b, void *s, const struct state_field *f, size_t n);

/* Section framing: begin writes {id, version, length placeholder}; end patches length.
 * state_section_open checks id and that version <= max_version; returns the version or -EINVAL. */
size_t state_section_begin(struct state_buf *b, uint32_t id, uint32_t version);
void state_section_end(struct state_buf *b, size_t mark);
int state_section_open(struct state_buf *b, uint32_t id, uint32_t max_version) WARN_UNUSED;

/* The end of the body of the section state_section_open just opened (its
 * header ends at b->pos), for checking that a load consumed exactly it. */
static inline size_t state_section_body_end(const struct state_buf *b)
{
	uint32_t len = 0;

	if (b->error || b->pos < 4 || b->pos > b->len)
		return (size_t)-1;
	for (unsigned i = 0; i < 4; i++)
		len |= (uint32_t)b->data[b->pos - 4 + i] << (8 * i);
	return b->pos + len;
}

/* After reading a section's fields: nothing ran past the end and exactly the
 * section was consumed. */
static inline bool state_section_done(const struct state_buf *b, size_t end)
{
	return !b->error && b->pos == end;
}

#endif
