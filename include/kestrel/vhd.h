/* VHD disk images (Microsoft "Virtual Hard Disk Image Format Specification",
 * October 2006, v1.0): fixed, dynamic and differencing disks.
 *
 * Layers, bottom up:
 *  - vhd/vhd_format.c: the on-disk structures. A file is untrusted input: it is
 *    parsed into a validated struct vhd_meta (footer, dynamic header, BAT) or
 *    rejected with one line naming the field and its file offset.
 *  - vhd/vhd_parent.c: parent locators and the parent chain of differencing disks.
 *  - vhd/vhd_io.c: an open image (struct vhd_image): sector mapping through the
 *    chain, sector-bitmap cache, the crash-safe block allocation protocol and a
 *    synchronous read/write/flush API (used by the tool, the tests, the fuzzer).
 *  - vhd/vhd_block.c: the block-layer format (blk_vhd_ops): guest data through
 *    the engine (io_uring), metadata serialized on a per-image thread.
 *  - vhd/vhd_build.c + vhd/vhd_tool.c: image creation and `kestrel vhd`.
 *
 * Sizes: the guest sees `vhd_meta.size`, chosen as QEMU's vpc driver does (see
 * vhd_size_rule) so that an image opens at the same size in kestrel, QEMU and
 * Hyper-V. Images we create keep current size and CHS geometry consistent. */
#ifndef KESTREL_VHD_H
#define KESTREL_VHD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/util.h"

#define VHD_SECTOR	     512u
#define VHD_FOOTER_SIZE	     512u
#define VHD_HEADER_SIZE	     1024u
#define VHD_LOCATORS	     8
/* "The maximum size of a dynamic hard disk is 2040 GB" (spec, Dynamic Hard Disk Image). */
#define VHD_MAX_SECTORS	     0xff000000ULL
#define VHD_MAX_BYTES	     (VHD_MAX_SECTORS * VHD_SECTOR)
/* 65535 cylinders x 16 heads x 255 sectors: the largest geometry the spec's
 * algorithm produces; an image carrying it is sized by its current size. */
#define VHD_CHS_MAX_C	     65535u
#define VHD_CHS_MAX_H	     16u
#define VHD_CHS_MAX_S	     255u
#define VHD_MAX_GEOMETRY     ((uint64_t)VHD_CHS_MAX_C * VHD_CHS_MAX_H * VHD_CHS_MAX_S)
#define VHD_BAT_UNUSED	     0xffffffffu
#define VHD_BLOCK_DEFAULT    (2u << 20)
/* Block sizes accepted when reading: a power of two (spec, Block Size) in this
 * range. Real tools write 512 KiB or 2 MiB; below 4 KiB QEMU computes a
 * 0-byte bitmap, so such images would not mean the same thing to both. */
#define VHD_BLOCK_MIN	     4096u
#define VHD_BLOCK_MAX	     (256u << 20)
/* Blocks we create: 4 KiB keeps the 4 KiB data alignment we give them. */
#define VHD_CREATE_BLOCK_MIN 4096u
#define VHD_MAX_CHAIN	     256 /* differencing chain depth */
/* BAT entries read from one image: the 2040 GiB maximum at 512 KiB blocks,
 * the smallest real tools write (16 MiB of BAT, 4 MiB of block state). An
 * image whose size needs more (small blocks on a large disk) is refused. */
#define VHD_MAX_BAT_ENTRIES  (1u << 22)
#define VHD_LOCATOR_MAX	     65536u /* bytes of one parent locator we read */

/* Timestamps count seconds from 2000-01-01 00:00:00 UTC (spec, Time Stamp). */
#define VHD_EPOCH_OFFSET 946684800LL

enum vhd_type { VHD_TYPE_FIXED = 2, VHD_TYPE_DYNAMIC = 3, VHD_TYPE_DIFF = 4 };

/* Platform codes of parent locator entries (spec, Parent Locator Entries). */
#define VHD_PLAT_NONE 0u
#define VHD_PLAT_WI2R 0x57693272u /* deprecated */
#define VHD_PLAT_WI2K 0x5769326bu /* deprecated */
#define VHD_PLAT_W2RU 0x57327275u /* UTF-16LE path relative to the child */
#define VHD_PLAT_W2KU 0x57326b75u /* UTF-16LE absolute path */
#define VHD_PLAT_MAC  0x4d616320u /* Mac OS alias blob: not usable here */
#define VHD_PLAT_MACX 0x4d616358u /* UTF-8 file:// URL */

/* Footer (spec, Hard Disk Footer Format), decoded to host order. */
struct vhd_footer {
	char cookie[8];
	uint32_t features;
	uint32_t version;
	uint64_t data_offset;
	uint32_t timestamp;
	char creator_app[4];
	uint32_t creator_version;
	uint32_t creator_os;
	uint64_t original_size;
	uint64_t current_size;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t disk_type;
	uint32_t checksum;
	uint8_t uuid[16];
	uint8_t saved_state;
};

struct vhd_locator {
	uint32_t code;
	uint32_t data_space;  /* as stored: sectors per the spec, bytes as Hyper-V writes */
	uint32_t data_length; /* bytes */
	uint32_t reserved;
	uint64_t data_offset;
};

/* Dynamic disk header (spec, Dynamic Disk Header Format), decoded. */
struct vhd_header {
	char cookie[8];
	uint64_t data_offset;
	uint64_t table_offset;
	uint32_t version;
	uint32_t max_table_entries;
	uint32_t block_size;
	uint32_t checksum;
	uint8_t parent_uuid[16];
	uint32_t parent_timestamp;
	uint32_t reserved;
	uint8_t parent_name[512]; /* UTF-16BE, as stored */
	struct vhd_locator loc[VHD_LOCATORS];
};

/* Field offsets, for error messages and the tests. */
#define VHD_F_FEATURES		8
#define VHD_F_VERSION		12
#define VHD_F_DATA_OFFSET	16
#define VHD_F_TIMESTAMP		24
#define VHD_F_CREATOR_APP	28
#define VHD_F_ORIGINAL_SIZE	40
#define VHD_F_CURRENT_SIZE	48
#define VHD_F_GEOMETRY		56
#define VHD_F_DISK_TYPE		60
#define VHD_F_CHECKSUM		64
#define VHD_F_UUID		68
#define VHD_F_SAVED_STATE	84
#define VHD_H_DATA_OFFSET	8
#define VHD_H_TABLE_OFFSET	16
#define VHD_H_VERSION		24
#define VHD_H_MAX_TABLE_ENTRIES 28
#define VHD_H_BLOCK_SIZE	32
#define VHD_H_CHECKSUM		36
#define VHD_H_PARENT_UUID	40
#define VHD_H_PARENT_TIMESTAMP	56
#define VHD_H_PARENT_NAME	64
#define VHD_H_LOCATORS		576
#define VHD_LOCATOR_SIZE	24

/* Where the guest-visible size comes from (QEMU block/vpc.c's table, which
 * follows what each creator's own product reads):
 *  - CHS: cylinders x heads x sectors, for Virtual PC ("vpc "), QEMU's
 *    default ("qemu"), kestrel ("kstl") and unknown creators;
 *  - CURRENT: the footer's current size, for Hyper-V ("win "), QEMU with
 *    force_size ("qem2"), Disk2VHD ("d2v "), XenConverter ("CTXS"),
 *    XenServer ("tap\0"), and for any image whose geometry is the maximum
 *    65535/16/255 (the size cannot be expressed in CHS). */
enum vhd_size_rule { VHD_SIZE_CHS, VHD_SIZE_CURRENT };

/* A validated image. Every offset here has been checked against the file size
 * and against every other structure. */
struct vhd_meta {
	struct vhd_footer footer; /* the footer in use */
	uint64_t file_size;
	uint64_t footer_off; /* the trailing footer; new blocks go here */
	unsigned footer_len; /* 512, or 511 (before Virtual PC 2004) */
	bool trailing_bad;   /* no valid trailing footer: using the copy at 0 */
	bool copy_bad;	     /* dynamic: the copy at offset 0 is missing/bad */
	enum vhd_type type;
	uint64_t size; /* guest-visible bytes, a multiple of 512 */
	enum vhd_size_rule size_rule;
	/* dynamic and differencing only */
	struct vhd_header hdr;
	uint64_t hdr_off;
	uint32_t block_size;  /* bytes */
	uint32_t bitmap_size; /* bytes, padded to a sector */
	uint32_t nblocks;     /* max table entries */
	uint32_t *bat;	      /* host order */
	uint64_t bat_bytes;   /* on-disk BAT extent, sector padded */
	uint32_t allocated;   /* BAT entries in use */
	uint64_t data_end;    /* end of the last structure before the footer */
	/* check --repair candidates (errors in VHD_PARSE_CHECK mode) */
	uint32_t *bad_bat; /* indexes of BAT entries wholly past the data area */
	uint32_t nbad_bat;
};

/* Parse diagnostics: every problem is one line "FIELD at offset N: what". */
enum vhd_sev { VHD_INFO, VHD_WARN, VHD_ERROR };
struct vhd_diag {
	void (*report)(void *ctx, enum vhd_sev sev, bool repairable, const char *msg);
	void *ctx;
	unsigned errors, warnings, repairable;
	char first[320]; /* the first error */
};

#define VHD_PARSE_CHECK		   0x1 /* report everything, don't stop at the first error */
#define VHD_PARSE_ALLOW_REPAIRABLE 0x2 /* a repairable error does not fail the parse */

/* ---- vhd_format.c ------------------------------------------------------- */
uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off);
void vhd_footer_decode(const uint8_t *buf, struct vhd_footer *f);
/* Encode and set the checksum (in buf and in f). */
void vhd_footer_encode(struct vhd_footer *f, uint8_t buf[VHD_FOOTER_SIZE]);
void vhd_header_decode(const uint8_t *buf, struct vhd_header *h);
void vhd_header_encode(struct vhd_header *h, uint8_t buf[VHD_HEADER_SIZE]);
/* The spec's CHS algorithm (Appendix: CHS Calculation); rounds down. */
void vhd_chs_from_sectors(uint64_t sectors, uint16_t *c, uint8_t *h, uint8_t *s);
/* Sizes for a new image of at least `bytes`: with exact=false, the smallest
 * CHS product >= bytes (as qemu-img create; every tool then agrees); with
 * exact=true, or above the CHS range, the size itself with the maximum
 * geometry (as qemu-img's force_size). 0 or -EFBIG (beyond 2040 GiB), -EINVAL. */
int vhd_size_for_create(uint64_t bytes, bool exact, uint64_t *size, uint16_t *c, uint8_t *h,
			uint8_t *s) WARN_UNUSED;
enum vhd_size_rule vhd_footer_size_rule(const struct vhd_footer *f);
/* Validate the file at fd into m. 0, -EINVAL (bad image; d->first says why)
 * or -errno (I/O). On success free m with vhd_meta_free. */
int vhd_parse(int fd, struct vhd_meta *m, unsigned flags, struct vhd_diag *d) WARN_UNUSED;
void vhd_meta_free(struct vhd_meta *m);
void vhd_diag_add(struct vhd_diag *d, enum vhd_sev sev, bool repairable, const char *fmt, ...)
	PRINTF_LIKE(4, 5);
const char *vhd_type_name(uint32_t type);
void vhd_uuid_format(const uint8_t uuid[16], char out[37]);
int vhd_uuid_generate(uint8_t uuid[16]) WARN_UNUSED;
uint32_t vhd_now(void);
bool vhd_probe_buf(const uint8_t *tail512);
/* A VHD footer at the end of the file (or a dynamic footer copy at 0)? */
bool vhd_probe_fd(int fd);

/* ---- vhd_io.c: an open image and its parent chain ---------------------- */
struct vhd_image;

#define VHD_OPEN_RDWR		0x1
#define VHD_OPEN_NO_PARENT	0x2  /* don't resolve parents: their sectors read as zero */
#define VHD_OPEN_NOSYNC		0x4  /* building a temp file: skip fdatasync (fsync at the end) */
#define VHD_OPEN_NOLOCK		0x8  /* don't lock this file (the caller holds it) */
#define VHD_OPEN_NOLOCK_PARENTS 0x10 /* nor its parents */

/* Open and validate path (and, for a differencing disk, its parents, read
 * only; a parent must be a regular VHD file in path's folder or below it,
 * see vhd_open_ex). err gets one line "FILE: field at offset N: what".
 * -EINVAL for a bad image, -errno otherwise. */
int vhd_open(struct vhd_image **out, const char *path, unsigned flags, char *err,
	     size_t errlen) WARN_UNUSED;
/* Same for an already open descriptor (the image keeps its own dup). */
int vhd_open_fd(struct vhd_image **out, int fd, const char *path, unsigned flags, char *err,
		size_t errlen) WARN_UNUSED;
/* Either of the above (fd < 0: open path), with parent_dirs: folders, ':'
 * separated, where parents may be besides the image's own folder (and
 * below each); NULL for none. */
int vhd_open_ex(struct vhd_image **out, int fd, const char *path, unsigned flags,
		const char *parent_dirs, char *err, size_t errlen) WARN_UNUSED;
/* Read the top image's metadata (footer, header, BAT) again and forget its
 * cached bitmaps: another process wrote the image since it was opened (a
 * live migration's source, until it let go of the image's lock). Nothing
 * may be in flight. Its type and geometry must be as they were; on an
 * error (err says what) the image is as before. */
int vhd_refresh(struct vhd_image *img, char *err, size_t errlen) WARN_UNUSED;
/* Flush metadata (vhd_flush) and free the chain. */
int vhd_close(struct vhd_image *img);
const struct vhd_meta *vhd_image_meta(const struct vhd_image *img);
const char *vhd_image_path(const struct vhd_image *img);
struct vhd_image *vhd_image_parent(const struct vhd_image *img);
uint64_t vhd_image_size(const struct vhd_image *img);
/* Synchronous guest-level I/O (bytes, multiples of 512, inside the disk). */
int vhd_read(struct vhd_image *img, void *buf, uint64_t len, uint64_t off) WARN_UNUSED;
int vhd_write(struct vhd_image *img, const void *buf, uint64_t len, uint64_t off) WARN_UNUSED;
/* Make every completed write durable (data, then sector bitmaps). */
int vhd_flush(struct vhd_image *img) WARN_UNUSED;
/* Is [off, off+len) stored in this image (not the parent, not unallocated)?
 * Sets *n to the length of the run with the same answer. */
int vhd_block_status(struct vhd_image *img, uint64_t off, uint64_t len, bool *present,
		     uint64_t *n) WARN_UNUSED;

/* ---- vhd_build.c: creating images ---------------------------------------- */
struct vhd_create_opts {
	enum vhd_type type;
	uint64_t size;	     /* bytes; for VHD_TYPE_DIFF, 0 = the parent's */
	bool exact_size;     /* keep size exactly (max geometry) instead of rounding up */
	uint32_t block_size; /* 0: 2 MiB */
	const char *parent;  /* VHD_TYPE_DIFF */
	const uint8_t *uuid; /* NULL: a new random UUID */
};
/* Create path (which must not exist). On error nothing is left behind. */
int vhd_create(const char *path, const struct vhd_create_opts *o, char *err,
	       size_t errlen) WARN_UNUSED;

/* ---- vhd_convert.c: merging for snapshots ---------------------------------- */
/* Merge the differencing disk child_path into its parent, which then takes
 * the child's place: the child's unique id and timestamp, and by a rename
 * its name, so whatever named the child (its own differencing children, a
 * snapshot tree) finds the merged image. The parent must have no other
 * child (they would read the merged data). nolock: the caller holds the
 * files (a worker that closed its disks). Crash-safe: interrupted at any
 * write, the chain through child_path reads as before, and calling it again
 * on child_path finishes the merge (vhd_convert.c says how). */
int vhd_merge_up(const char *child_path, bool nolock, char *err, size_t errlen) WARN_UNUSED;

/* ---- vhd_tool.c ---------------------------------------------------------- */
int vhd_tool_main(int argc, char **argv);

#endif
