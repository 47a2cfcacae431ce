/* Device state as data: a growable little-endian writer and a bounds-checked
 * reader whose error flag is sticky, so a load() can read every field and check
 * once at the end. Sections are framed {u32 id, u32 version, u32 length}. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/state.h"

#define STATE_MIN_CAP	  64
#define STATE_SECTION_HDR 12

/* Make room for n more bytes; false (and the sticky error) on failure. */
static bool state_reserve(struct state_buf *b, size_t n)
{
	size_t need, cap;
	uint8_t *p;

	if (b->error)
		return false;
	if (n > SIZE_MAX - b->len)
		goto fail;
	need = b->len + n;
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : STATE_MIN_CAP;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			cap = need;
			break;
		}
		cap *= 2;
	}
	p = realloc(b->data, cap);
	if (!p)
		goto fail;
	b->data = p;
	b->cap = cap;
	return true;
fail:
	b->error = true;
	return false;
}

static void state_put_le(struct state_buf *b, uint64_t v, unsigned n)
{
	if (!state_reserve(b, n))
		return;
	for (unsigned i = 0; i < n; i++)
		b->data[b->len++] = (uint8_t)(v >> (8 * i));
}

void state_put_u8(struct state_buf *b, uint8_t v)
{
	state_put_le(b, v, 1);
}
void state_put_u16(struct state_buf *b, uint16_t v)
{
	state_put_le(b, v, 2);
}
void state_put_u32(struct state_buf *b, uint32_t v)
{
	state_put_le(b, v, 4);
}
void state_put_u64(struct state_buf *b, uint64_t v)
{
	state_put_le(b, v, 8);
}

void state_put_bytes(struct state_buf *b, const void *p, size_t n)
{
	if (!n || !state_reserve(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

/* True if n bytes can be read; otherwise sets the sticky error. */
static bool state_avail(struct state_buf *b, size_t n)
{
	if (b->error)
		return false;
	if (b->pos > b->len || n > b->len - b->pos || (n && !b->data)) {
		b->error = true;
		return false;
	}
	return true;
}

static uint64_t state_get_le(struct state_buf *b, unsigned n)
{
	uint64_t v = 0;

	if (!state_avail(b, n))
		return 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)b->data[b->pos + i] << (8 * i);
	b->pos += n;
	return v;
}

uint8_t state_get_u8(struct state_buf *b)
{
	return (uint8_t)state_get_le(b, 1);
}
uint16_t state_get_u16(struct state_buf *b)
{
	return (uint16_t)state_get_le(b, 2);
}
uint32_t state_get_u32(struct state_buf *b)
{
	return (uint32_t)state_get_le(b, 4);
}
uint64_t state_get_u64(struct state_buf *b)
{
	return state_get_le(b, 8);
}

void state_get_bytes(struct state_buf *b, void *p, size_t n)
{
	if (!state_avail(b, n)) {
		memset(p, 0, n);
		return;
	}
	if (n)
		memcpy(p, b->data + b->pos, n);
	b->pos += n;
}

static bool state_field_is_int(uint16_t size)
{
	return size == 1 || size == 2 || size == 4 || size == 8;
}

void state_put_fields(struct state_buf *b, const void *s, const struct state_field *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = (const uint8_t *)s + f[i].off;
		uint8_t u8;
		uint16_t u16;
		uint32_t u32;
		uint64_t u64;

		switch (f[i].size) {
		case 1:
			memcpy(&u8, p, 1);
			state_put_le(b, u8, 1);
			break;
		case 2:
			memcpy(&u16, p, 2);
			state_put_le(b, u16, 2);
			break;
		case 4:
			memcpy(&u32, p, 4);
			state_put_le(b, u32, 4);
			break;
		case 8:
			memcpy(&u64, p, 8);
			state_put_le(b, u64, 8);
			break;
		default: state_put_bytes(b, p, f[i].size);
		}
	}
}

void state_get_fields(struct state_buf *b, void *s, const struct state_field *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = (uint8_t *)s + f[i].off;
		uint64_t v;
		uint8_t u8;
		uint16_t u16;
		uint32_t u32;

		if (!state_field_is_int(f[i].size)) {
			state_get_bytes(b, p, f[i].size);
			continue;
		}
		v = state_get_le(b, f[i].size);
		switch (f[i].size) {
		case 1:
			u8 = (uint8_t)v;
			memcpy(p, &u8, 1);
			break;
		case 2:
			u16 = (uint16_t)v;
			memcpy(p, &u16, 2);
			break;
		case 4:
			u32 = (uint32_t)v;
			memcpy(p, &u32, 4);
			break;
		default: memcpy(p, &v, 8);
		}
	}
}

void state_free(struct state_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* Returns the offset of the section header; state_section_end patches its length. */
size_t state_section_begin(struct state_buf *b, uint32_t id, uint32_t version)
{
	size_t mark = b->len;

	state_put_u32(b, id);
	state_put_u32(b, version);
	state_put_u32(b, 0);
	return mark;
}

void state_section_end(struct state_buf *b, size_t mark)
{
	size_t body;

	if (b->error)
		return;
	if (mark > b->len || b->len - mark < STATE_SECTION_HDR) {
		b->error = true;
		return;
	}
	body = b->len - mark - STATE_SECTION_HDR;
	if (body > UINT32_MAX) {
		b->error = true;
		return;
	}
	for (unsigned i = 0; i < 4; i++)
		b->data[mark + 8 + i] = (uint8_t)(body >> (8 * i));
}

/* On a mismatch the read position is restored so the caller may try another
 * id; a header cut short or a body longer than the buffer is a sticky error. */
int state_section_open(struct state_buf *b, uint32_t id, uint32_t max_version)
{
	size_t start = b->pos;
	uint32_t got_id, version, length;

	got_id = state_get_u32(b);
	version = state_get_u32(b);
	length = state_get_u32(b);
	if (b->error)
		return -EINVAL;
	if (length > b->len - b->pos) {
		b->error = true;
		return -EINVAL;
	}
	if (got_id != id || version == 0 || version > max_version || version > INT_MAX) {
		b->pos = start;
		return -EINVAL;
	}
	return (int)version;
}
