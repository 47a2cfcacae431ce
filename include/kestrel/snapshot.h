/* Snapshot trees on VHD disks (migrate/snapshot.c, docs/state.md
 * "Snapshots"): a snapshot is a saved state plus the disks as they were,
 * frozen; the VM runs on differencing children of them. The tree lives in
 * the VM directory (the folder of its disks) as snapshots.json. */
#ifndef KESTREL_SNAPSHOT_H
#define KESTREL_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <limits.h>

#include "kestrel/util.h"

struct machine;
struct json_object;

#define SNAP_NAME_MAX 64
#define SNAP_DISKS    16

/* The VM directory of a machine: the folder of its disks, which must all be
 * VHDs there (raw and pass-through disks cannot be snapshotted). 0 or
 * -ENOTSUP / -EINVAL with one line in err. */
int snapshot_vm_dir(struct machine *m, char *dir, size_t len, char *err, size_t errlen) WARN_UNUSED;

/* Take snapshot name of the quiesced machine: its state into
 * DIR/snapshots/NAME.state, then each disk under a new differencing child
 * the VM goes on with. On failure the VM keeps its disks. */
int snapshot_create(struct machine *m, const char *name, char *err, size_t errlen) WARN_UNUSED;

/* Applying a snapshot, in two steps around the machine's teardown. */
struct snapshot_apply {
	char state[4096 + 96];	   /* the snapshot's saved state */
	char *disk[SNAP_DISKS];	   /* per target: the fresh child, or NULL */
	char *garbage[SNAP_DISKS]; /* the children the VM ran on: delete after */
};
/* Fresh children of the snapshot's disks, the tree's current position moved
 * to them. 0 or -errno with one line in err (nothing changed then). */
int snapshot_apply_prepare(struct machine *m, const char *name, struct snapshot_apply *a, char *err,
			   size_t errlen) WARN_UNUSED;
/* Once no machine holds them: remove the children the VM ran on. */
void snapshot_apply_finish(struct snapshot_apply *a);
void snapshot_apply_free(struct snapshot_apply *a);

/* Remove a snapshot from the tree and its saved state; its children in the
 * tree get its parent. Its disk files become links (listed as such), then
 * each link with no child file is removed and each with one child is merged
 * into it (vhd_merge_up); one with several children stays, so no other
 * snapshot loses data. */
int snapshot_delete(const char *dir, const char *name, char *err, size_t errlen) WARN_UNUSED;
/* The same on the quiesced machine m: its disks closed meanwhile. */
int snapshot_delete_machine(struct machine *m, const char *name, char *err,
			    size_t errlen) WARN_UNUSED;
/* The tree as JSON: "snapshots" (name, parent, created, disks), "current"
 * (the position: parent, disks), "links" (disk files no snapshot or the
 * current position names, still parents in some chain). */
int snapshot_list(const char *dir, struct json_object *out, char *err, size_t errlen) WARN_UNUSED;

/* `kestrel snapshot list|delete ... --vm-dir DIR` */
int snapshot_tool_main(int argc, char **argv);

#endif
