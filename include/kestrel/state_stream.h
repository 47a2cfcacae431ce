/* The saved-VM file (docs/state.md): a 64-byte header, then records
 * {tag, version, length, CRC-32C} in a fixed order, then guest RAM laid out
 * page for page at a page-aligned offset, zero pages left as holes. This is
 * the file format only: migrate/save.c and migrate/restore.c fill and use it.
 *
 * Everything here treats the file as hostile: lengths are bounded by what is
 * left, every record's checksum is checked before its body is looked at,
 * tags must come in the order below and versions must not be newer than this
 * reader knows; older ones are accepted (a newer kestrel loads an older
 * stream, each record's reader keeping the old layouts it has to). */
#ifndef KESTREL_STATE_STREAM_H
#define KESTREL_STATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/state.h"
#include "kestrel/util.h"

#define STREAM_MAGIC	      "\x89KSTATE\n" /* 8 bytes; the high byte and LF catch text-mode copies */
#define STREAM_MAGIC_LEN      8
#define STREAM_FORMAT_VERSION 1
#define STREAM_HEADER_SIZE    64
#define STREAM_RECORD_HDR     16 /* u32 tag, u32 version, u32 length, u32 crc */
#define STREAM_PAGE	      4096u
#define STREAM_CHUNK_PAGES    512u /* RAM checksum granule: 2 MiB */
/* Bounds that make a hostile header harmless before anything is allocated. */
#define STREAM_RECORDS_MAX    (256u << 20)
#define STREAM_MAX_RECORDS    (64u + 2 * 64u)

/* Record tags: u32 constants written little-endian, as the device sections. */
#define STREAM_KVER 0x4b564552u /* "KVER" kestrel version that wrote it */
#define STREAM_CONF 0x434f4e46u /* "CONF" the VM's configuration (JSON) */
#define STREAM_CPUI 0x43505549u /* "CPUI" the CPUID each vCPU saw */
#define STREAM_VCPU 0x56435055u /* "VCPU" one per vCPU */
#define STREAM_IRQC 0x49525143u /* "IRQC" in-kernel PIC master, slave, IOAPIC */
#define STREAM_PIT2 0x50495432u /* "PIT2" in-kernel PIT */
#define STREAM_CLCK 0x434c434bu /* "CLCK" kvmclock, TSC rate, save time */
#define STREAM_DEVS 0x44455653u /* "DEVS" every device (dev_list_save) */
#define STREAM_DISK 0x4449534bu /* "DISK" what each disk was (path, size, VHD id) */
#define STREAM_RAM  0x52414d20u /* "RAM " guest RAM: layout, present pages, checksums */
#define STREAM_END  0x454e4420u /* "END " the last record, empty */

struct stream_header {
	uint32_t version; /* format version */
	uint64_t records_off, records_len;
	uint64_t ram_off, ram_len; /* ram_off page-aligned; the file is ram_off + ram_len long */
};

/* Format a one-line message into err (nothing when errlen is 0); -EINVAL.
 * The parsers here and the migration wire checks (migrate/wire.c) share it. */
int stream_err(char *err, size_t errlen, const char *fmt, ...) PRINTF_LIKE(3, 4);

void stream_header_encode(const struct stream_header *h, uint8_t out[STREAM_HEADER_SIZE]);
/* Check magic, version, header checksum and that the areas fit file_size and
 * do not overlap. 0 or -EINVAL with one line in err. */
int stream_header_decode(const uint8_t in[STREAM_HEADER_SIZE], uint64_t file_size,
			 struct stream_header *h, char *err, size_t errlen) WARN_UNUSED;

/* Writing records into a buffer: begin writes the header with placeholders,
 * end patches the length and the checksum. */
size_t stream_record_begin(struct state_buf *b, uint32_t tag, uint32_t version);
void stream_record_end(struct state_buf *b, size_t mark);

struct stream_record {
	uint32_t tag, version;
	const uint8_t *body;
	uint32_t len;
	uint64_t off; /* of its header in the file (for messages) */
};

/* The records of a stream, all checked (checksums, order, counts, versions). */
struct stream_records {
	struct stream_record kver, conf, cpui, irqc, pit2, clck, devs, disk, ram, end;
	struct stream_record vcpu[64];
	unsigned nvcpu;
};

/* Split and check a records area (base: its offset in the file). The
 * records point into area. 0 or -EINVAL with one line in err. */
int stream_records_parse(const uint8_t *area, uint64_t len, uint64_t base,
			 struct stream_records *out, char *err, size_t errlen) WARN_UNUSED;
/* A reader over a record's body. */
void stream_record_reader(const struct stream_record *r, struct state_buf *b);
/* The tag as text ("VCPU"), for messages. */
const char *stream_tag_name(uint32_t tag, char buf[8]);

/* ---- the RAM record ---- */
struct stream_ram {
	uint64_t ram_size, ram_low, ram_high;
	uint64_t pages, present; /* pages of RAM, pages stored in the file */
	uint64_t *bitmap;	 /* bit i: page i is stored (else it is zero) */
	uint32_t *crc;		 /* per STREAM_CHUNK_PAGES chunk: CRC-32C of its stored pages */
	uint64_t nchunks;
};

/* Bytes of the RAM record's body for ram_size bytes of RAM. */
uint64_t stream_ram_body_size(uint64_t ram_size);
/* Zeroed bitmap and checksums for ram_size; free with stream_ram_free. */
int stream_ram_init(struct stream_ram *r, uint64_t ram_size, uint64_t ram_low,
		    uint64_t ram_high) WARN_UNUSED;
void stream_ram_free(struct stream_ram *r);
void stream_ram_put(struct state_buf *b, const struct stream_ram *r);
/* Decode and check (sizes agree, no bit past the end, the count matches). */
int stream_ram_parse(const struct stream_record *rec, struct stream_ram *r, char *err,
		     size_t errlen) WARN_UNUSED;
static inline bool stream_ram_present(const struct stream_ram *r, uint64_t page)
{
	return r->bitmap[page / 64] >> (page % 64) & 1;
}

/* Length-prefixed strings in record bodies: u32 length then the bytes. get
 * returns a malloc'd NUL-terminated copy (NULL and the sticky error on a
 * length over max or an embedded NUL). */
void stream_put_str(struct state_buf *b, const char *s);
char *stream_get_str(struct state_buf *b, uint32_t max);

#endif
