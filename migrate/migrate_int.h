/* What the parts of migrate/ share: the RAM writer and reader (ram.c) and
 * the DISK record (disk_state.c). */
#ifndef KESTREL_MIGRATE_INT_H
#define KESTREL_MIGRATE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "kestrel/state_stream.h"

struct guest_mem;
struct machine;

struct ram_save {
	const struct guest_mem *gm;
	struct stream_ram *r;      /* filled: bitmap, count, checksums */
	int fd;
	uint64_t ram_off;
	int pagemap;
	void (*progress)(void *opaque, uint64_t done, uint64_t total);
	void *opaque;
};

/* Write RAM's non-zero pages to fd at ram_off (the file already has its
 * final size, so skipped pages are holes). 0 or -errno. */
int ram_save(struct ram_save *rs) WARN_UNUSED;
/* RAM from the file: mapped (lazy) unless eager or the mapping fails, then
 * read with every chunk's checksum checked. 0 or -errno, one line in err. */
int ram_restore(struct guest_mem *gm, int fd, uint64_t ram_off, const struct stream_ram *r,
		bool eager, char *err, size_t errlen) WARN_UNUSED;

/* The DISK record: what each attached disk is (target, path, format, size,
 * VHD unique id, read-only), written at save and compared at restore with
 * the disks the restored machine opened from the saved configuration. */
void disk_state_put(struct machine *m, struct state_buf *b);
/* children: each disk now must be a differencing VHD child of the saved one
 * (a snapshot applied: docs/state.md, "Snapshots") instead of the same. */
int disk_state_check(struct machine *m, const struct stream_record *rec, bool children, char *err,
		     size_t errlen) WARN_UNUSED;

#endif
