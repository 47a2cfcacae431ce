/* The live-migration messages (kestrel/migrate_wire.h, docs/migration.md):
 * encoders and the hostile-input checks, nothing that touches a machine. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/byteorder.h"
#include "kestrel/migrate.h"
#include "kestrel/migrate_wire.h"
#include "kestrel/state_stream.h"

void mig_hdr_encode(uint32_t type, uint64_t len, uint8_t out[MIG_HDR_SIZE])
{
	put_le32(out, type);
	put_le32(out + 4, 0);
	put_le64(out + 8, len);
}

static uint64_t mig_max_len(uint32_t type, uint64_t records_max)
{
	switch (type) {
	case MIG_HELLO:
	case MIG_REPLY: return MIG_SMALL_MAX;
	case MIG_PAGES: return 8 + (uint64_t)MIG_BATCH_PAGES * MIG_PAGE;
	case MIG_ROUND: return MIG_ROUND_SIZE;
	case MIG_STATE: return records_max;
	case MIG_SWITCH: return 0;
	default: return 0;
	}
}

int mig_hdr_decode(const uint8_t in[MIG_HDR_SIZE], uint64_t records_max, struct mig_hdr *h,
		   char *err, size_t errlen)
{
	uint64_t w = get_le64(in);
	uint32_t reserved = (uint32_t)(w >> 32);

	h->type = (uint32_t)w;
	h->len = get_le64(in + 8);
	if (h->type < MIG_HELLO || h->type > MIG_SWITCH)
		return stream_err(err, errlen, "message of unknown type %u", h->type);
	if (reserved)
		return stream_err(err, errlen, "message type %u: reserved field set", h->type);
	if (h->len > mig_max_len(h->type, records_max))
		return stream_err(err, errlen, "message type %u: %llu bytes, at most %llu", h->type,
				  (unsigned long long)h->len,
				  (unsigned long long)mig_max_len(h->type, records_max));
	return 0;
}

/* ---- ROUND ---- */

void mig_round_put(const struct migrate_progress *p, uint8_t out[MIG_ROUND_SIZE])
{
	put_le32(out, p->round);
	put_le32(out + 4, p->throttle_pct);
	put_le64(out + 8, p->remaining);
	put_le64(out + 16, p->dirty_rate);
	put_le64(out + 24, p->expected_downtime_ms);
}

int mig_round_parse(const uint8_t *body, uint64_t len, struct migrate_progress *p)
{
	memset(p, 0, sizeof(*p));
	if (len != 4 && len != MIG_ROUND_SIZE)
		return -EINVAL;
	p->round = get_le32(body);
	if (len == 4)
		return 0;
	/* Only reported, never acted on: any value will do but a silly % . */
	p->throttle_pct = MIN(get_le32(body + 4), 100u);
	p->remaining = get_le64(body + 8);
	p->dirty_rate = get_le64(body + 16);
	p->expected_downtime_ms = get_le64(body + 24);
	return 0;
}

/* ---- HELLO ---- */

void mig_hello_put(struct state_buf *b, uint64_t ram_size, uint64_t ram_low, uint64_t ram_high,
		   const char *conf)
{
	state_put_bytes(b, MIG_MAGIC, MIG_MAGIC_LEN);
	state_put_u32(b, MIG_PROTO_VERSION);
	state_put_u32(b, STREAM_FORMAT_VERSION);
	state_put_u64(b, ram_size);
	state_put_u64(b, ram_low);
	state_put_u64(b, ram_high);
	stream_put_str(b, conf);
	/* the CPUI body follows (cpuid_state_put) */
}

int mig_hello_parse(const uint8_t *body, size_t len, struct mig_hello *h, char *err, size_t errlen)
{
	struct state_buf b = { .data = (uint8_t *)body, .len = len };
	char magic[MIG_MAGIC_LEN];

	memset(h, 0, sizeof(*h));
	state_get_bytes(&b, magic, sizeof(magic));
	if (b.error || memcmp(magic, MIG_MAGIC, MIG_MAGIC_LEN))
		return stream_err(err, errlen, "not a kestrel migration stream (no magic)");
	h->proto = state_get_u32(&b);
	h->stream_version = state_get_u32(&b);
	if (b.error || h->proto != MIG_PROTO_VERSION)
		return stream_err(err, errlen,
				  "migration protocol version %u: this kestrel speaks %u", h->proto,
				  MIG_PROTO_VERSION);
	if (h->stream_version == 0 || h->stream_version > STREAM_FORMAT_VERSION)
		return stream_err(err, errlen,
				  "state format version %u: this kestrel reads 1 to %u",
				  h->stream_version, STREAM_FORMAT_VERSION);
	h->ram_size = state_get_u64(&b);
	h->ram_low = state_get_u64(&b);
	h->ram_high = state_get_u64(&b);
	if (b.error || !h->ram_size || h->ram_size % MIG_PAGE || h->ram_low > h->ram_size ||
	    h->ram_high != h->ram_size - h->ram_low || h->ram_low % MIG_PAGE)
		return stream_err(err, errlen, "HELLO: bad RAM layout");
	h->conf = stream_get_str(&b, MIG_CONF_MAX);
	if (!h->conf)
		return stream_err(err, errlen, "HELLO: malformed configuration");
	h->cpuid = (struct state_buf){ .data = b.data + b.pos, .len = b.len - b.pos };
	return 0;
}

void mig_hello_free(struct mig_hello *h)
{
	free(h->conf);
	h->conf = NULL;
}

/* ---- PAGES ---- */

int mig_pages_check(const uint8_t head[8], uint64_t len, uint64_t pages, uint64_t *first,
		    uint64_t *n, char *err, size_t errlen)
{
	if (len < 8 + MIG_PAGE || (len - 8) % MIG_PAGE)
		return stream_err(err, errlen, "PAGES: %llu bytes is not whole pages",
				  (unsigned long long)len);
	*first = get_le64(head);
	*n = (len - 8) / MIG_PAGE;
	if (*first >= pages || *n > pages - *first)
		return stream_err(err, errlen,
				  "PAGES: pages %llu+%llu lie outside RAM (%llu pages)",
				  (unsigned long long)*first, (unsigned long long)*n,
				  (unsigned long long)pages);
	return 0;
}

/* ---- REPLY ---- */

void mig_reply_put(struct state_buf *b, int status, const char *msg)
{
	state_put_u32(b, (uint32_t)(status < 0 ? -status : status));
	stream_put_str(b, msg ? msg : "");
}

int mig_reply_parse(const uint8_t *body, size_t len, int *status, char **msg)
{
	struct state_buf b = { .data = (uint8_t *)body, .len = len };
	uint32_t st = state_get_u32(&b);

	*msg = stream_get_str(&b, MIG_SMALL_MAX - 8);
	if (b.error || !*msg || b.pos != b.len || st > 4095) {
		free(*msg);
		*msg = NULL;
		return -EINVAL;
	}
	*status = (int)st;
	return 0;
}
