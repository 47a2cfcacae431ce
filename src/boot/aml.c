/* A tiny AML byte-code builder. Section numbers are ACPI 6.4: chapter 20 for
 * the AML grammar, 6.4 for resource data. */
#include <errno.h>
#include <string.h>
#include "kestrel/aml.h"

/* 20.2.x opcodes and prefixes */
#define AML_ZERO_OP	      0x00
#define AML_ONE_OP	      0x01
#define AML_NAME_OP	      0x08
#define AML_BYTE_PREFIX	      0x0a
#define AML_WORD_PREFIX	      0x0b
#define AML_DWORD_PREFIX      0x0c
#define AML_STRING_PREFIX     0x0d
#define AML_QWORD_PREFIX      0x0e
#define AML_SCOPE_OP	      0x10
#define AML_BUFFER_OP	      0x11
#define AML_PACKAGE_OP	      0x12
#define AML_DUAL_NAME_PREFIX  0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_EXT_OP_PREFIX     0x5b
#define AML_DEVICE_OP	      0x82 /* after ExtOpPrefix */
#define AML_ROOT_CHAR	      0x5c
#define AML_PARENT_PREFIX     0x5e
#define AML_NULL_NAME	      0x00

/* 6.4.2 small and 6.4.3 large resource descriptor tags */
#define AML_RES_IRQ_NOFLAGS    0x22 /* IRQ, 2 data bytes (no information byte) */
#define AML_RES_IO	       0x47
#define AML_RES_END_TAG	       0x79
#define AML_RES_DWORD_ADDR     0x87
#define AML_RES_WORD_ADDR      0x88
#define AML_RES_QWORD_ADDR     0x8a
/* 6.4.3.5 Address Space Resource Descriptors */
#define AML_ADDR_TYPE_MEM      0
#define AML_ADDR_TYPE_IO       1
#define AML_ADDR_TYPE_BUS      2
#define AML_ADDR_GFLAGS_WINDOW 0x0c /* _MAF | _MIF, positive decode, producer */
#define AML_ADDR_IO_RNG_ENTIRE 0x03
#define AML_ADDR_MEM_RW	       0x01

void aml_init(struct aml *a, void *buf, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->buf = buf;
	a->cap = buf ? cap : 0;
}

long aml_finish(const struct aml *a)
{
	if (a->err)
		return a->err;
	if (a->depth)
		return -EINVAL;
	return (long)a->len;
}

static void aml_fail(struct aml *a, int err)
{
	if (!a->err)
		a->err = err;
}

static int aml_room(struct aml *a, size_t n)
{
	if (a->err)
		return 0;
	if (n > a->cap - a->len) {
		aml_fail(a, -ENOSPC);
		return 0;
	}
	return 1;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (!aml_room(a, n))
		return;
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void aml_le(struct aml *a, uint64_t v, unsigned n)
{
	uint8_t b[8];

	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	aml_bytes(a, b, n);
}

/* 20.2.4: bits 7-6 of the lead byte count the bytes that follow. With a
 * single byte, bits 5-0 hold the length; otherwise bits 3-0 hold its low
 * nibble and each following byte the next 8 bits. */
int aml_pkglength_encode(uint8_t out[4], uint32_t value)
{
	unsigned n;

	if (value > AML_PKGLENGTH_MAX)
		return -EINVAL;
	if (value <= 0x3f) {
		out[0] = (uint8_t)value;
		return 1;
	}
	n = value <= 0xfff ? 2 : value <= 0xfffff ? 3 : 4;
	out[0] = (uint8_t)(((n - 1) << 6) | (value & 0xf));
	for (unsigned i = 1; i < n; i++)
		out[i] = (uint8_t)(value >> (4 + 8 * (i - 1)));
	return (int)n;
}

/* The encoded length includes the PkgLength bytes themselves, so a body that
 * fits one form may need the next once those bytes are added. */
unsigned aml_pkglength_size(size_t body)
{
	static const uint32_t max[] = { 0x3f, 0xfff, 0xfffff, AML_PKGLENGTH_MAX };

	for (unsigned n = 1; n <= 4; n++)
		if (body <= max[n - 1] - n)
			return n;
	return 0;
}

static void aml_open(struct aml *a, const uint8_t *op, size_t oplen)
{
	if (a->err)
		return;
	if (a->depth == AML_MAX_DEPTH) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_bytes(a, op, oplen);
	a->open[a->depth++] = a->len;
}

void aml_end(struct aml *a)
{
	uint8_t enc[4];
	size_t pos, body;
	unsigned n;

	if (a->err)
		return;
	if (!a->depth) {
		aml_fail(a, -EINVAL);
		return;
	}
	pos = a->open[--a->depth];
	body = a->len - pos;
	n = aml_pkglength_size(body);
	if (!n) {
		aml_fail(a, -EINVAL);
		return;
	}
	if (!aml_room(a, n))
		return;
	memmove(a->buf + pos + n, a->buf + pos, body);
	if (aml_pkglength_encode(enc, (uint32_t)(body + n)) != (int)n) {
		aml_fail(a, -EINVAL);
		return;
	}
	memcpy(a->buf + pos, enc, n);
	a->len += n;
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0)
		aml_byte(a, AML_ZERO_OP);
	else if (v == 1)
		aml_byte(a, AML_ONE_OP);
	else if (v <= UINT8_MAX) {
		aml_byte(a, AML_BYTE_PREFIX);
		aml_le(a, v, 1);
	} else if (v <= UINT16_MAX) {
		aml_byte(a, AML_WORD_PREFIX);
		aml_le(a, v, 2);
	} else if (v <= UINT32_MAX) {
		aml_byte(a, AML_DWORD_PREFIX);
		aml_le(a, v, 4);
	} else {
		/* Needs a revision 2 DSDT: revision 1 truncates integers to 32 bits. */
		aml_byte(a, AML_QWORD_PREFIX);
		aml_le(a, v, 8);
	}
}

/* 20.2.3: String := StringPrefix AsciiCharList NullChar, chars 0x01-0x7F. */
void aml_string(struct aml *a, const char *s)
{
	size_t n = strlen(s);

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] > 0x7f) {
			aml_fail(a, -EINVAL);
			return;
		}
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, n + 1);
}

static int aml_eisa_letter(char c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 1 : -1;
}

static int aml_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* 6.1.5: three letters packed 5 bits each ('A' = 1) into a big-endian
 * 16-bit word, then four hex digits as a big-endian 16-bit product id; the
 * four bytes in that order form a little-endian 32-bit integer. */
int aml_eisaid_value(const char *id, uint32_t *out)
{
	uint32_t vendor = 0, product = 0;

	if (strlen(id) != 7)
		return -EINVAL;
	for (int i = 0; i < 3; i++) {
		int l = aml_eisa_letter(id[i]);
		if (l < 0)
			return -EINVAL;
		vendor = (vendor << 5) | (uint32_t)l;
	}
	for (int i = 3; i < 7; i++) {
		int d = aml_hex_digit(id[i]);
		if (d < 0)
			return -EINVAL;
		product = (product << 4) | (uint32_t)d;
	}
	*out = (vendor >> 8) | (vendor & 0xff) << 8 | (product >> 8) << 16 | (product & 0xff) << 24;
	return 0;
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v;

	if (aml_eisaid_value(id, &v) < 0) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_byte(a, AML_DWORD_PREFIX); /* always DWord, as ASL's EISAID() does */
	aml_le(a, v, 4);
}

/* 20.2.2 NameSeg: LeadNameChar ('A'-'Z', '_') then NameChars (also '0'-'9'),
 * four in all; shorter names are padded with '_' as ASL does. */
static int aml_nameseg(const char *s, size_t n, uint8_t seg[4])
{
	if (n == 0 || n > 4)
		return -EINVAL;
	for (size_t i = 0; i < 4; i++) {
		char c = i < n ? s[i] : '_';
		int ok = (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return -EINVAL;
		seg[i] = (uint8_t)c;
	}
	return 0;
}

static size_t aml_count_segs(const char *p)
{
	size_t n = *p ? 1 : 0;

	for (; *p; p++)
		n += *p == '.';
	return n;
}

void aml_namestring(struct aml *a, const char *path)
{
	size_t nsegs;

	if (*path == '\\') {
		aml_byte(a, AML_ROOT_CHAR);
		path++;
	} else {
		for (; *path == '^'; path++)
			aml_byte(a, AML_PARENT_PREFIX);
	}
	nsegs = aml_count_segs(path);
	if (nsegs == 0) {
		aml_byte(a, AML_NULL_NAME);
		return;
	}
	if (nsegs > 255) {
		aml_fail(a, -EINVAL);
		return;
	}
	if (nsegs == 2)
		aml_byte(a, AML_DUAL_NAME_PREFIX);
	else if (nsegs > 2) {
		aml_byte(a, AML_MULTI_NAME_PREFIX);
		aml_byte(a, (uint8_t)nsegs);
	}
	while (*path) {
		const char *dot = strchr(path, '.');
		size_t n = dot ? (size_t)(dot - path) : strlen(path);
		uint8_t seg[4];

		if (aml_nameseg(path, n, seg) < 0) {
			aml_fail(a, -EINVAL);
			return;
		}
		aml_bytes(a, seg, 4);
		path += n + (dot ? 1 : 0);
		if (dot && !*path) { /* trailing '.' */
			aml_fail(a, -EINVAL);
			return;
		}
	}
}

void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME_OP);
	aml_namestring(a, path);
}

void aml_scope(struct aml *a, const char *path)
{
	static const uint8_t op[] = { AML_SCOPE_OP };

	aml_open(a, op, sizeof(op));
	aml_namestring(a, path);
}

void aml_device(struct aml *a, const char *path)
{
	static const uint8_t op[] = { AML_EXT_OP_PREFIX, AML_DEVICE_OP };

	aml_open(a, op, sizeof(op));
	aml_namestring(a, path);
}

/* 20.2.5.4: NumElements is a single byte; VarPackageOp is not needed here. */
void aml_package(struct aml *a, unsigned nelems)
{
	static const uint8_t op[] = { AML_PACKAGE_OP };

	if (nelems > 255) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_open(a, op, sizeof(op));
	aml_byte(a, (uint8_t)nelems);
}

void aml_buffer(struct aml *a, const void *data, size_t n)
{
	static const uint8_t op[] = { AML_BUFFER_OP };

	aml_open(a, op, sizeof(op));
	aml_integer(a, n);
	aml_bytes(a, data, n);
	aml_end(a);
}

/* 6.4.2.5 I/O Port Descriptor, 16-bit decode. */
void aml_res_io(struct aml *rt, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
	if (min > max) {
		aml_fail(rt, -EINVAL);
		return;
	}
	aml_byte(rt, AML_RES_IO);
	aml_byte(rt, 0x01); /* _DEC: decodes 16 address lines */
	aml_le(rt, min, 2);
	aml_le(rt, max, 2);
	aml_byte(rt, align);
	aml_byte(rt, len);
}

/* 6.4.2.1 IRQ Descriptor without the information byte: ISA edge, active high. */
void aml_res_irq_noflags(struct aml *rt, unsigned irq)
{
	if (irq > 15) {
		aml_fail(rt, -EINVAL);
		return;
	}
	aml_byte(rt, AML_RES_IRQ_NOFLAGS);
	aml_le(rt, 1u << irq, 2);
}

/* 6.4.3.5.1-3: tag, length, type, general flags, type-specific flags, then
 * granularity, min, max, translation offset and length, each `width` bytes. */
static void aml_res_addr(struct aml *rt, uint8_t tag, unsigned width, uint8_t type, uint8_t tflags,
			 uint64_t min, uint64_t max)
{
	uint64_t wmax = width == 8 ? UINT64_MAX : (1ull << (8 * width)) - 1;

	/* The window's length must be representable in the same width. */
	if (min > max || max > wmax || max - min == wmax) {
		aml_fail(rt, -EINVAL);
		return;
	}
	aml_byte(rt, tag);
	aml_le(rt, 3 + 5 * width, 2);
	aml_byte(rt, type);
	aml_byte(rt, AML_ADDR_GFLAGS_WINDOW);
	aml_byte(rt, tflags);
	aml_le(rt, 0, width);
	aml_le(rt, min, width);
	aml_le(rt, max, width);
	aml_le(rt, 0, width);
	aml_le(rt, max - min + 1, width);
}

void aml_res_word_bus(struct aml *rt, uint16_t min, uint16_t max)
{
	aml_res_addr(rt, AML_RES_WORD_ADDR, 2, AML_ADDR_TYPE_BUS, 0, min, max);
}

void aml_res_word_io(struct aml *rt, uint16_t min, uint16_t max)
{
	aml_res_addr(rt, AML_RES_WORD_ADDR, 2, AML_ADDR_TYPE_IO, AML_ADDR_IO_RNG_ENTIRE, min, max);
}

/* 6.4.3.5.4 Memory type-specific flags: bits 2-1 _MEM, bit 0 _RW. */
void aml_res_dword_mem(struct aml *rt, enum aml_mem_cache c, uint32_t min, uint32_t max)
{
	aml_res_addr(rt, AML_RES_DWORD_ADDR, 4, AML_ADDR_TYPE_MEM,
		     (uint8_t)((c & 3) << 1 | AML_ADDR_MEM_RW), min, max);
}

void aml_res_qword_mem(struct aml *rt, enum aml_mem_cache c, uint64_t min, uint64_t max)
{
	aml_res_addr(rt, AML_RES_QWORD_ADDR, 8, AML_ADDR_TYPE_MEM,
		     (uint8_t)((c & 3) << 1 | AML_ADDR_MEM_RW), min, max);
}

/* 6.4.2.9 End Tag: a checksum byte of 0 means "treat as valid". */
void aml_resource_template(struct aml *a, struct aml *rt)
{
	long n;

	aml_byte(rt, AML_RES_END_TAG);
	aml_byte(rt, 0);
	n = aml_finish(rt);
	if (n < 0) {
		aml_fail(a, (int)n);
		return;
	}
	aml_buffer(a, rt->buf, (size_t)n);
}
