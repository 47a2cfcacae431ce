/* virtio-scsi controller (virtio v1.1 5.6) on virtio-pci: disks are targets
 * 0..VIRTIO_SCSI_MAX_TARGETS-1, each with one LUN (0). Requests are served on
 * the device's I/O threads and submitted to the block layer; hot-add and
 * hot-remove are reported on the event queue (5.6.6.3.1). */
#ifndef KESTREL_VIRTIO_SCSI_H
#define KESTREL_VIRTIO_SCSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/block.h"
#include "kestrel/device.h"
#include "kestrel/virtio.h"

#define VIRTIO_SCSI_MAX_TARGETS	       16
#define VIRTIO_SCSI_MAX_REQUEST_QUEUES 8

struct virtio_scsi_disk {
	struct blk_dev *blk; /* opened by the caller (blk_open) */
	unsigned target;
	/* Test hooks, in ms after the guest driver first starts the controller
	 * (DRIVER_OK); 0: none. add_after: the disk is absent at boot and
	 * hot-added then; remove_after: hot-removed then. Both go through
	 * virtio_scsi_hotplug()/virtio_scsi_unplug(), as the control socket will. */
	uint64_t add_after_ms, remove_after_ms;
};

/* The controller model (the machine puts it behind a transport: struct
 * virtio_model in kestrel/virtio.h), serving the disks the caller opened:
 * it owns every disks[i].blk from this call on, also when it fails (errors:
 * one line). nqueues: request queues, 1..VIRTIO_SCSI_MAX_REQUEST_QUEUES.
 * stats: print per-queue requests and bytes to stderr when destroyed.
 * ndisks may be 0 (disks NULL): an empty controller, every target
 * BAD_TARGET until hot-plugged. */
int virtio_scsi_new(unsigned nqueues, const struct virtio_scsi_disk *disks, unsigned ndisks,
		    bool stats, struct virtio_model *out, char *err, size_t errlen) WARN_UNUSED;

/* Hot-add an opened disk as target (LUN 0) while the guest runs: the driver
 * gets a TRANSPORT_RESET/RESCAN event. On success the controller owns blk;
 * on failure the caller still does. -ENODEV (not a virtio-scsi device),
 * -EINVAL (target out of range), -EEXIST (target in use). Opening the disk
 * (blk_open, callable from any thread) is the caller's, outside any lock of
 * the controller. */
int virtio_scsi_attach_disk(struct device *dev, unsigned target, struct blk_dev *blk, char *err,
			    size_t errlen) WARN_UNUSED;
/* blk_open + virtio_scsi_attach_disk; blk_open's error too. */
int virtio_scsi_hotplug(struct device *dev, unsigned target, const struct blk_opts *o, char *err,
			size_t errlen) WARN_UNUSED;
/* Hot-remove target: new requests to it fail with BAD_TARGET, the driver
 * gets TRANSPORT_RESET/REMOVED, and the disk is closed once its requests in
 * flight are done. -ENOENT when no disk is there. */
int virtio_scsi_unplug(struct device *dev, unsigned target, char *err, size_t errlen) WARN_UNUSED;

/* The two halves of virtio_scsi_unplug, for a caller whose thread must not
 * wait (the control socket: a removal waits for the disk's requests in
 * flight): detach at once (the guest is told, the disk stays open for the
 * requests holding it), then close it on a thread that may wait:
 * virtio_scsi_target_close() touches only the target, so the controller
 * may be gone by then. */
struct vscsi_target;
int virtio_scsi_detach(struct device *dev, unsigned target, struct vscsi_target **out, char *err,
		       size_t errlen) WARN_UNUSED;
void virtio_scsi_target_close(struct vscsi_target *t);

/* Counters of one disk (for the control socket's stats and --stats), taken
 * when requests complete. ops and bytes count READ/WRITE/SYNCHRONIZE CACHE
 * that succeeded; errors counts the disk's I/O commands (those, UNMAP and
 * WRITE SAME) that ended in CHECK CONDITION or a failed virtio response,
 * not the probes a driver expects to be refused. They belong to the
 * attachment: a hot-removed and re-added disk starts again from 0. */
struct virtio_scsi_disk_stats {
	char path[4096];
	bool readonly; /* as the guest sees it (file or option) */
	uint64_t read_ops, read_bytes, write_ops, write_bytes, flush_ops, errors;
};
/* -ENODEV (not a virtio-scsi device) or -ENOENT (no disk at target, also
 * when out of range). Safe against a concurrent hot-remove. */
int virtio_scsi_get_disk_stats(struct device *dev, unsigned target,
			       struct virtio_scsi_disk_stats *out) WARN_UNUSED;

/* The disk at target, or NULL. Only while the controller is quiesced (or on
 * the thread that alone hot-plugs): a hot-remove would free it. For saving
 * a VM (what the disks are, flushing them). */
struct blk_dev *virtio_scsi_disk_blk(struct device *dev, unsigned target);
/* Put another image under target, quiesced: the same size, block size and
 * read-only flag, and the guest sees the same disk (geometry, serial, NAA
 * id). *old gets the image it had (the caller closes it; while it is open
 * and out of the controller, nothing else uses it). For snapshots: the
 * running disk becomes a differencing child of itself. -ENOENT (no disk),
 * -EBUSY (not quiesced), -EINVAL (another geometry). */
int virtio_scsi_replace_disk(struct device *dev, unsigned target, struct blk_dev *blk,
			     struct blk_dev **old) WARN_UNUSED;

#endif
