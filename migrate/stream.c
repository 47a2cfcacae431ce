/* The saved-VM file format (docs/state.md): header, checksummed records in a
 * fixed order, and the RAM record's bitmap and checksums. Readers here see
 * only bytes; what a record means is for save.c / restore.c and the
 * vcpu/irqchip encoders. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/byteorder.h"
#include "kestrel/crc32c.h"
#include "kestrel/state_stream.h"

int stream_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

const char *stream_tag_name(uint32_t tag, char buf[8])
{
	for (int i = 0; i < 4; i++) {
		char c = (char)(tag >> (24 - 8 * i));

		buf[i] = c >= 0x20 && c < 0x7f ? c : '?';
	}
	buf[4] = '\0';
	return buf;
}

/* ---- header ---- */

/* Layout: magic[8], u32 version, u32 header size, u64 records offset, u64
 * records length, u64 RAM offset, u64 RAM length, u64 reserved (0), u32
 * reserved (0), u32 CRC-32C of bytes 0..59. */
void stream_header_encode(const struct stream_header *h, uint8_t out[STREAM_HEADER_SIZE])
{
	memset(out, 0, STREAM_HEADER_SIZE);
	memcpy(out, STREAM_MAGIC, STREAM_MAGIC_LEN);
	put_le32(out + 8, h->version);
	put_le32(out + 12, STREAM_HEADER_SIZE);
	put_le64(out + 16, h->records_off);
	put_le64(out + 24, h->records_len);
	put_le64(out + 32, h->ram_off);
	put_le64(out + 40, h->ram_len);
	put_le32(out + 60, crc32c(0, out, 60));
}

int stream_header_decode(const uint8_t in[STREAM_HEADER_SIZE], uint64_t file_size,
			 struct stream_header *h, char *err, size_t errlen)
{
	if (file_size < STREAM_HEADER_SIZE || memcmp(in, STREAM_MAGIC, STREAM_MAGIC_LEN) != 0)
		return stream_err(err, errlen, "not a kestrel saved-state file (no magic)");
	h->version = get_le32(in + 8);
	if (h->version == 0 || h->version > STREAM_FORMAT_VERSION)
		return stream_err(err, errlen, "format version %u: this kestrel reads 1 to %u",
				  h->version, STREAM_FORMAT_VERSION);
	if (get_le32(in + 60) != crc32c(0, in, 60))
		return stream_err(err, errlen, "header checksum mismatch (the file is damaged)");
	h->records_off = get_le64(in + 16);
	h->records_len = get_le64(in + 24);
	h->ram_off = get_le64(in + 32);
	h->ram_len = get_le64(in + 40);
	if (get_le32(in + 12) != STREAM_HEADER_SIZE || get_le64(in + 48) || get_le32(in + 56))
		return stream_err(err, errlen, "header: reserved fields set");
	if (h->records_off != STREAM_HEADER_SIZE || h->records_len < STREAM_RECORD_HDR ||
	    h->records_len > STREAM_RECORDS_MAX)
		return stream_err(err, errlen, "header: records area of %llu bytes at %llu",
				  (unsigned long long)h->records_len,
				  (unsigned long long)h->records_off);
	if (h->ram_off % STREAM_PAGE || h->ram_off < h->records_off + h->records_len ||
	    h->ram_len % STREAM_PAGE || h->ram_len > UINT64_MAX - h->ram_off)
		return stream_err(err, errlen, "header: RAM area at %llu (%llu bytes) is misplaced",
				  (unsigned long long)h->ram_off, (unsigned long long)h->ram_len);
	if (h->ram_off + h->ram_len > file_size)
		return stream_err(err, errlen,
				  "the file is %llu bytes, its header says %llu: "
				  "truncated",
				  (unsigned long long)file_size,
				  (unsigned long long)(h->ram_off + h->ram_len));
	return 0;
}

/* ---- records ---- */

size_t stream_record_begin(struct state_buf *b, uint32_t tag, uint32_t version)
{
	size_t mark = b->len;

	state_put_u32(b, tag);
	state_put_u32(b, version);
	state_put_u32(b, 0);
	state_put_u32(b, 0);
	return mark;
}

/* The checksum covers the tag, version and length, then the body: a record
 * whose header was damaged fails its checksum as one whose body was. */
static uint32_t stream_record_crc(const uint8_t *hdr, const uint8_t *body, uint32_t len)
{
	return crc32c(crc32c(0, hdr, 12), body, len);
}

void stream_record_end(struct state_buf *b, size_t mark)
{
	size_t body;

	if (b->error || mark > b->len || b->len - mark < STREAM_RECORD_HDR) {
		b->error = true;
		return;
	}
	body = b->len - mark - STREAM_RECORD_HDR;
	if (body > UINT32_MAX) {
		b->error = true;
		return;
	}
	put_le32(b->data + mark + 8, (uint32_t)body);
	put_le32(b->data + mark + 12,
		 stream_record_crc(b->data + mark, b->data + mark + STREAM_RECORD_HDR,
				   (uint32_t)body));
}

void stream_record_reader(const struct stream_record *r, struct state_buf *b)
{
	*b = (struct state_buf){ .data = (uint8_t *)r->body, .len = r->len };
}

/* The order records must come in, how many of each and the newest version
 * this kestrel reads. */
static const struct {
	uint32_t tag, max_version;
	unsigned min, max;
} stream_order[] = {
	{ STREAM_KVER, 1, 1, 1 },  { STREAM_CONF, 1, 1, 1 }, { STREAM_CPUI, 1, 1, 1 },
	{ STREAM_VCPU, 1, 1, 64 }, { STREAM_IRQC, 1, 1, 1 }, { STREAM_PIT2, 1, 1, 1 },
	{ STREAM_CLCK, 1, 1, 1 },  { STREAM_DEVS, 1, 1, 1 }, { STREAM_DISK, 1, 1, 1 },
	{ STREAM_RAM, 1, 1, 1 },   { STREAM_END, 1, 1, 1 },
};

static struct stream_record *stream_slot(struct stream_records *out, uint32_t tag)
{
	switch (tag) {
	case STREAM_KVER: return &out->kver;
	case STREAM_CONF: return &out->conf;
	case STREAM_CPUI: return &out->cpui;
	case STREAM_IRQC: return &out->irqc;
	case STREAM_PIT2: return &out->pit2;
	case STREAM_CLCK: return &out->clck;
	case STREAM_DEVS: return &out->devs;
	case STREAM_DISK: return &out->disk;
	case STREAM_RAM: return &out->ram;
	case STREAM_END: return &out->end;
	case STREAM_VCPU:
		return out->nvcpu < ARRAY_SIZE(out->vcpu) ? &out->vcpu[out->nvcpu++] : NULL;
	default: return NULL;
	}
}

/* One record header at area[pos]: framed within the area, checksum right. */
static int stream_record_at(const uint8_t *area, uint64_t len, uint64_t pos, uint64_t base,
			    struct stream_record *r, char *err, size_t errlen)
{
	char name[8];

	if (len - pos < STREAM_RECORD_HDR)
		return stream_err(err, errlen, "record at offset %llu: cut short",
				  (unsigned long long)(base + pos));
	r->tag = get_le32(area + pos);
	r->version = get_le32(area + pos + 4);
	r->len = get_le32(area + pos + 8);
	r->off = base + pos;
	if (r->len > len - pos - STREAM_RECORD_HDR)
		return stream_err(err, errlen,
				  "record %s at offset %llu: %u bytes run past the "
				  "end",
				  stream_tag_name(r->tag, name), (unsigned long long)r->off,
				  r->len);
	r->body = area + pos + STREAM_RECORD_HDR;
	if (get_le32(area + pos + 12) != stream_record_crc(area + pos, r->body, r->len))
		return stream_err(err, errlen,
				  "record %s at offset %llu: checksum mismatch "
				  "(the file is damaged)",
				  stream_tag_name(r->tag, name), (unsigned long long)r->off);
	return 0;
}

int stream_records_parse(const uint8_t *area, uint64_t len, uint64_t base,
			 struct stream_records *out, char *err, size_t errlen)
{
	unsigned step = 0, count = 0;
	uint64_t pos = 0;
	char name[8];

	memset(out, 0, sizeof(*out));
	for (;;) {
		struct stream_record r, *slot;
		int ret = stream_record_at(area, len, pos, base, &r, err, errlen);

		if (ret)
			return ret;
		while (step < ARRAY_SIZE(stream_order) && stream_order[step].tag != r.tag) {
			if (count < stream_order[step].min)
				break;
			step++;
			count = 0;
		}
		if (step == ARRAY_SIZE(stream_order) || stream_order[step].tag != r.tag)
			return stream_err(err, errlen,
					  "record %s at offset %llu: unknown or out of "
					  "order",
					  stream_tag_name(r.tag, name), (unsigned long long)r.off);
		if (r.version == 0 || r.version > stream_order[step].max_version)
			return stream_err(err, errlen,
					  "record %s at offset %llu: version %u, this "
					  "kestrel reads 1 to %u",
					  stream_tag_name(r.tag, name), (unsigned long long)r.off,
					  r.version, stream_order[step].max_version);
		if (++count > stream_order[step].max || !(slot = stream_slot(out, r.tag)))
			return stream_err(err, errlen, "record %s at offset %llu: too many",
					  stream_tag_name(r.tag, name), (unsigned long long)r.off);
		*slot = r;
		pos += STREAM_RECORD_HDR + (uint64_t)r.len;
		if (r.tag == STREAM_END)
			break;
	}
	if (pos != len)
		return stream_err(err, errlen, "%llu bytes after the END record",
				  (unsigned long long)(len - pos));
	return 0;
}

/* ---- strings ---- */

void stream_put_str(struct state_buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	state_put_u32(b, (uint32_t)n);
	state_put_bytes(b, s, n);
}

char *stream_get_str(struct state_buf *b, uint32_t max)
{
	uint32_t n = state_get_u32(b);
	char *s;

	if (b->error || n > max || n > b->len - b->pos) {
		b->error = true;
		return NULL;
	}
	s = malloc((size_t)n + 1);
	if (!s) {
		b->error = true;
		return NULL;
	}
	state_get_bytes(b, s, n);
	s[n] = '\0';
	if (b->error || strlen(s) != n) {
		b->error = true;
		free(s);
		return NULL;
	}
	return s;
}

/* ---- RAM ---- */

/* Body: u64 RAM size, u64 RAM below the PCI hole, u64 RAM above 4 GiB, u32
 * page size (4096), u32 pages per checksum chunk (512), u64 stored pages,
 * the bitmap (a u64 per 64 pages), a u32 CRC-32C per chunk. */
#define STREAM_RAM_FIXED (8 * 3 + 4 * 2 + 8)

static uint64_t ram_words(uint64_t ram_size)
{
	return ALIGN_UP(ram_size / STREAM_PAGE, 64) / 64;
}

static uint64_t ram_chunks(uint64_t ram_size)
{
	uint64_t pages = ram_size / STREAM_PAGE;

	return (pages + STREAM_CHUNK_PAGES - 1) / STREAM_CHUNK_PAGES;
}

uint64_t stream_ram_body_size(uint64_t ram_size)
{
	return STREAM_RAM_FIXED + 8 * ram_words(ram_size) + 4 * ram_chunks(ram_size);
}

int stream_ram_init(struct stream_ram *r, uint64_t ram_size, uint64_t ram_low, uint64_t ram_high)
{
	memset(r, 0, sizeof(*r));
	if (!ram_size || ram_size % STREAM_PAGE)
		return -EINVAL;
	r->ram_size = ram_size;
	r->ram_low = ram_low;
	r->ram_high = ram_high;
	r->pages = ram_size / STREAM_PAGE;
	r->nchunks = ram_chunks(ram_size);
	r->bitmap = calloc(ram_words(ram_size), sizeof(uint64_t));
	r->crc = calloc(r->nchunks, sizeof(uint32_t));
	if (!r->bitmap || !r->crc) {
		stream_ram_free(r);
		return -ENOMEM;
	}
	return 0;
}

void stream_ram_free(struct stream_ram *r)
{
	free(r->bitmap);
	free(r->crc);
	r->bitmap = NULL;
	r->crc = NULL;
}

void stream_ram_put(struct state_buf *b, const struct stream_ram *r)
{
	state_put_u64(b, r->ram_size);
	state_put_u64(b, r->ram_low);
	state_put_u64(b, r->ram_high);
	state_put_u32(b, STREAM_PAGE);
	state_put_u32(b, STREAM_CHUNK_PAGES);
	state_put_u64(b, r->present);
	for (uint64_t i = 0; i < ram_words(r->ram_size); i++)
		state_put_u64(b, r->bitmap[i]);
	for (uint64_t i = 0; i < r->nchunks; i++)
		state_put_u32(b, r->crc[i]);
}

static int stream_ram_bits(struct state_buf *b, struct stream_ram *r, uint64_t present)
{
	uint64_t words = ram_words(r->ram_size), count = 0;

	for (uint64_t i = 0; i < words; i++) {
		r->bitmap[i] = state_get_u64(b);
		count += (uint64_t)__builtin_popcountll(r->bitmap[i]);
	}
	/* No page past the end of RAM. */
	if (r->pages % 64 && r->bitmap[words - 1] >> (r->pages % 64))
		return -EINVAL;
	for (uint64_t i = 0; i < r->nchunks; i++)
		r->crc[i] = state_get_u32(b);
	if (b->error || count != present || b->pos != b->len)
		return -EINVAL;
	r->present = present;
	return 0;
}

int stream_ram_parse(const struct stream_record *rec, struct stream_ram *r, char *err,
		     size_t errlen)
{
	struct state_buf b;
	uint64_t size, low, high, present;
	uint32_t page, chunk;

	memset(r, 0, sizeof(*r));
	stream_record_reader(rec, &b);
	size = state_get_u64(&b);
	low = state_get_u64(&b);
	high = state_get_u64(&b);
	page = state_get_u32(&b);
	chunk = state_get_u32(&b);
	present = state_get_u64(&b);
	if (b.error || page != STREAM_PAGE || chunk != STREAM_CHUNK_PAGES || !size ||
	    size % STREAM_PAGE || low > size || high != size - low ||
	    rec->len != stream_ram_body_size(size) || present > size / STREAM_PAGE)
		return stream_err(err, errlen, "record RAM at offset %llu: bad layout",
				  (unsigned long long)rec->off);
	if (stream_ram_init(r, size, low, high))
		return stream_err(err, errlen, "out of memory for the RAM bitmap");
	if (stream_ram_bits(&b, r, present)) {
		stream_ram_free(r);
		return stream_err(err, errlen, "record RAM at offset %llu: bad page bitmap",
				  (unsigned long long)rec->off);
	}
	return 0;
}
