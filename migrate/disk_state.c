/* Record DISK (docs/state.md): what each disk attached at save time was, so
 * that a restore refuses to bring a guest back onto other disks than the
 * ones its page cache and file systems describe. The restored machine opens
 * the disks named by the saved configuration; each must be the same file
 * (path), hold the same number of bytes, have the same format and, for a
 * VHD, carry the same unique id (a copy or a re-created image of the same
 * name does not). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/block.h"
#include "kestrel/config.h"
#include "kestrel/ide.h"
#include "kestrel/machine.h"
#include "kestrel/vhd.h"
#include "kestrel/virtio_scsi.h"
#include "migrate_int.h"

#define DISK_PATH_MAX 4096

struct disk_ident {
	char *path;
	uint8_t vhd; /* 1: VHD (uuid set), 0: raw */
	uint8_t readonly;
	uint64_t size;
	uint8_t uuid[16];
};

/* The path as an absolute one (the saved configuration names disks so). */
static void disk_ident_of(const struct blk_dev *d, struct disk_ident *id)
{
	memset(id, 0, sizeof(*id));
	id->path = realpath(d->path, NULL);
	if (!id->path)
		id->path = strdup(d->path);
	id->vhd = blk_vhd_uuid(d, id->uuid);
	id->readonly = d->readonly;
	id->size = d->size;
}

static struct blk_dev *disk_at(struct machine *m, unsigned t)
{
	struct device *scsi = machine_find_device(m, "scsi0");

	return scsi ? virtio_scsi_disk_blk(scsi, t) : NULL;
}

/* The medium in IDE unit u (0-3: channel u / 2, master when even), or NULL. */
static struct blk_dev *ide_at(struct machine *m, unsigned u)
{
	struct device *ch = machine_find_device(m, u / 2 ? "ide1" : "ide0");
	enum ide_drive_kind kind;

	return ch ? ide_drive_blk(ch, u % 2, &kind) : NULL;
}

static void disk_ident_put(struct state_buf *b, struct blk_dev *d)
{
	struct disk_ident id;

	disk_ident_of(d, &id);
	stream_put_str(b, id.path);
	state_put_u8(b, id.vhd);
	state_put_u8(b, id.readonly);
	state_put_u64(b, id.size);
	state_put_bytes(b, id.uuid, sizeof(id.uuid));
	free(id.path);
}

/* Body: u16 bitmap of targets holding a disk, then per disk in target
 * order: path (u32 length + bytes), u8 format (0 raw, 1 VHD), u8
 * read-only, u64 size in bytes, 16 bytes VHD unique id (zero for raw).
 * Then (streams since IDE drives could be saved; an older stream ends
 * before it) u8 bitmap of the IDE units 0-3 holding a medium, and the same
 * fields for each. */
void disk_state_put(struct machine *m, struct state_buf *b)
{
	uint16_t present = 0;

	for (unsigned t = 0; t < VIRTIO_SCSI_MAX_TARGETS; t++)
		present |= (uint16_t)((disk_at(m, t) != NULL) << t);
	state_put_u16(b, present);
	for (unsigned t = 0; t < VIRTIO_SCSI_MAX_TARGETS; t++)
		if (disk_at(m, t))
			disk_ident_put(b, disk_at(m, t));
	present = 0;
	for (unsigned u = 0; u < CONFIG_IDE_UNITS; u++)
		present |= (uint16_t)((ide_at(m, u) != NULL) << u);
	state_put_u8(b, (uint8_t)present);
	for (unsigned u = 0; u < CONFIG_IDE_UNITS; u++)
		if (ide_at(m, u))
			disk_ident_put(b, ide_at(m, u));
}

/* A snapshot's disk under a fresh differencing child: the child must
 * name the saved image as its parent and have its size. */
static int disk_compare_child(const char *where, const struct disk_ident *saved, struct blk_dev *d,
			      char *err, size_t errlen)
{
	uint8_t parent[16];

	if (!saved->vhd || !blk_vhd_parent_uuid(d, parent) ||
	    memcmp(parent, saved->uuid, sizeof(parent)) != 0 || d->size != saved->size) {
		snprintf(err, errlen,
			 "%s: not a differencing child of %s (the disk at %s "
			 "when the snapshot was taken)",
			 d->path, saved->path, where);
		return -EINVAL;
	}
	return 0;
}

static int disk_compare(const char *where, const struct disk_ident *saved,
			const struct disk_ident *now, char *err, size_t errlen)
{
	char a[37], b[37];

	if (!now->path || strcmp(saved->path, now->path) != 0) {
		snprintf(err, errlen, "disk at %s: saved as %s, now %s", where, saved->path,
			 now->path ? now->path : "?");
		return -EINVAL;
	}
	if (saved->vhd != now->vhd || saved->size != now->size ||
	    saved->readonly != now->readonly) {
		snprintf(err, errlen,
			 "%s: was a %s%s disk of %llu bytes, is now a %s%s disk of %llu", now->path,
			 saved->readonly ? "read-only " : "", saved->vhd ? "VHD" : "raw",
			 (unsigned long long)saved->size, now->readonly ? "read-only " : "",
			 now->vhd ? "VHD" : "raw", (unsigned long long)now->size);
		return -EINVAL;
	}
	if (saved->vhd && memcmp(saved->uuid, now->uuid, sizeof(now->uuid)) != 0) {
		vhd_uuid_format(saved->uuid, a);
		vhd_uuid_format(now->uuid, b);
		snprintf(err, errlen, "%s: VHD unique id %s, the saved VM had %s: another image",
			 now->path, b, a);
		return -EINVAL;
	}
	return 0;
}

/* One slot's entry (present: the record says a disk was there) against
 * the disk there now, d or NULL. 1 when the record is malformed. */
static int disk_check_one(struct state_buf *b, bool present, struct blk_dev *d, const char *where,
			  bool children, char *err, size_t errlen)
{
	struct disk_ident saved = { 0 }, now;
	int ret = 0;

	if (!present) {
		if (!d)
			return 0;
		snprintf(err, errlen, "%s: no disk was at %s when the VM was saved", d->path,
			 where);
		return -EINVAL;
	}
	saved.path = stream_get_str(b, DISK_PATH_MAX);
	saved.vhd = state_get_u8(b);
	saved.readonly = state_get_u8(b);
	saved.size = state_get_u64(b);
	state_get_bytes(b, saved.uuid, sizeof(saved.uuid));
	if (b->error || saved.vhd > 1 || saved.readonly > 1) {
		ret = 1;
	} else if (!d) {
		snprintf(err, errlen, "%s: the saved VM had this disk at %s; it is missing",
			 saved.path, where);
		ret = -EINVAL;
	} else if (children) {
		ret = disk_compare_child(where, &saved, d, err, errlen);
	} else {
		disk_ident_of(d, &now);
		ret = disk_compare(where, &saved, &now, err, errlen);
		free(now.path);
	}
	free(saved.path);
	return ret;
}

int disk_state_check(struct machine *m, const struct stream_record *rec, bool children, char *err,
		     size_t errlen)
{
	struct state_buf b;
	uint16_t present;
	char where[32];
	int ret = 0;

	stream_record_reader(rec, &b);
	present = state_get_u16(&b);
	for (unsigned t = 0; t < VIRTIO_SCSI_MAX_TARGETS && !ret && !b.error; t++) {
		snprintf(where, sizeof(where), "target %u", t);
		ret = disk_check_one(&b, present >> t & 1, disk_at(m, t), where, children, err,
				     errlen);
	}
	/* IDE media: never switched to snapshot children (only a CD may be
	 * there in a snapshot, and it is not written). An older stream ends
	 * here, from before a machine with IDE drives could be saved. */
	if (!ret && !b.error && b.pos < b.len) {
		present = state_get_u8(&b);
		for (unsigned u = 0; u < CONFIG_IDE_UNITS && !ret && !b.error; u++) {
			snprintf(where, sizeof(where), "IDE unit %u", u);
			ret = disk_check_one(&b, present >> u & 1, ide_at(m, u), where, false, err,
					     errlen);
		}
		if (!ret && present >> CONFIG_IDE_UNITS)
			ret = 1;
	}
	if (ret == 1 || (!ret && (b.error || b.pos != b.len))) {
		snprintf(err, errlen, "record DISK at offset %llu: malformed",
			 (unsigned long long)rec->off);
		ret = -EINVAL;
	}
	return ret;
}
