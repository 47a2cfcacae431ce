/* The live-migration wire format (docs/migration.md, "Wire format"): a
 * stream of messages {u32 type, u32 reserved (0), u64 length} + body,
 * little-endian, in the order HELLO (source) → REPLY (target) → PAGES and
 * ROUND (pre-copy) → STATE → REPLY → SWITCH → REPLY. The device and vCPU
 * state inside STATE is the saved-state file's records area (docs/state.md),
 * checked on the target by the very code that checks a file.
 *
 * The parsers here see only bytes and treat them as hostile: every length is
 * bounded before anything is allocated, every page index within RAM. */
#ifndef KESTREL_MIGRATE_WIRE_H
#define KESTREL_MIGRATE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/state.h"
#include "kestrel/util.h"

#define MIG_MAGIC	  "\x89KMIGR\r\n" /* 8 bytes, as the state file's */
#define MIG_MAGIC_LEN	  8
#define MIG_PROTO_VERSION 1
#define MIG_HDR_SIZE	  16
#define MIG_PAGE	  4096u
#define MIG_BATCH_PAGES	  256u /* at most this many pages per PAGES message */
#define MIG_CONF_MAX	  (1u << 20)
#define MIG_SMALL_MAX	  (MIG_CONF_MAX + (1u << 20)) /* HELLO, REPLY, ROUND, SWITCH */

enum mig_type {
	MIG_HELLO = 1,	/* magic, versions, RAM layout, configuration, CPUID */
	MIG_REPLY = 2,	/* u32 status (0 ok, else an errno), message */
	MIG_PAGES = 3,	/* u64 first page, then n whole pages (RAM offset order) */
	MIG_ROUND = 4,	/* u32 round that just ended, then (optional) the progress */
	MIG_STATE = 5,	/* the state file's records KVER..DISK */
	MIG_SWITCH = 6, /* the source let go of the disks: start */
};

struct mig_hdr {
	uint32_t type;
	uint64_t len;
};

/* ROUND: u32 round, u32 throttle %, u64 dirty bytes left, u64 bytes dirtied
 * per second, u64 expected downtime (ms); a bare u32 round (4 bytes) is
 * accepted too. */
#define MIG_ROUND_SIZE 32u
struct migrate_progress;
void mig_round_put(const struct migrate_progress *p, uint8_t out[MIG_ROUND_SIZE]);
/* 0, or -EINVAL for a length that is neither 4 nor MIG_ROUND_SIZE (the
 * fields the body does not carry are 0). */
int mig_round_parse(const uint8_t *body, uint64_t len, struct migrate_progress *p) WARN_UNUSED;

void mig_hdr_encode(uint32_t type, uint64_t len, uint8_t out[MIG_HDR_SIZE]);
/* Known type, reserved zero, length within the type's bound (records_max:
 * the bound of STATE). 0 or -EINVAL with one line in err. */
int mig_hdr_decode(const uint8_t in[MIG_HDR_SIZE], uint64_t records_max, struct mig_hdr *h,
		   char *err, size_t errlen) WARN_UNUSED;

struct mig_hello {
	uint32_t proto, stream_version;
	uint64_t ram_size, ram_low, ram_high;
	char *conf;		/* malloc'd JSON */
	struct state_buf cpuid; /* reader over the CPUI body (cpuid_state_parse) */
};

void mig_hello_put(struct state_buf *b, uint64_t ram_size, uint64_t ram_low, uint64_t ram_high,
		   const char *conf);
/* Checks magic, versions and the RAM layout; h->cpuid points into body. */
int mig_hello_parse(const uint8_t *body, size_t len, struct mig_hello *h, char *err,
		    size_t errlen) WARN_UNUSED;
void mig_hello_free(struct mig_hello *h);

/* A PAGES body of len bytes whose first 8 are in head: the pages it carries
 * lie in RAM of `pages` pages. */
int mig_pages_check(const uint8_t head[8], uint64_t len, uint64_t pages, uint64_t *first,
		    uint64_t *n, char *err, size_t errlen) WARN_UNUSED;

void mig_reply_put(struct state_buf *b, int status, const char *msg);
/* status: 0 or a positive errno the peer reported; msg malloc'd. */
int mig_reply_parse(const uint8_t *body, size_t len, int *status, char **msg) WARN_UNUSED;

#endif
