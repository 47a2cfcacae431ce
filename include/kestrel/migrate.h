/* Saving a VM to a file and bringing it back (docs/state.md): the stream
 * (kestrel/state_stream.h) filled from and loaded into a machine. */
#ifndef KESTREL_MIGRATE_H
#define KESTREL_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/util.h"

struct machine;
struct vm_config;

struct migrate_save_opts {
	const char *path;          /* written as PATH.tmp-PID, then renamed over PATH */
	/* Called from the saving thread as RAM goes out (done of total bytes). */
	void (*progress)(void *opaque, uint64_t done, uint64_t total);
	void *opaque;
};

struct migrate_save_result {
	uint64_t file_bytes;       /* the file's size (holes included) */
	uint64_t ram_stored;       /* bytes of RAM written (non-zero pages) */
	uint64_t ms;               /* from the start of the write to the rename */
};

/* What the state stream cannot carry (nothing today: every device and every
 * part of the configuration travels). 0 when cfg can be saved, else -ENOTSUP
 * with one line in err that names what stands in the way. */
int migrate_config_supported(const struct vm_config *cfg, char *err, size_t errlen) WARN_UNUSED;
/* The same for a snapshot, which also refuses a writable IDE disk (only the
 * SCSI disks get differencing children). */
int migrate_snapshot_supported(const struct vm_config *cfg, char *err, size_t errlen) WARN_UNUSED;

/* Write the machine's whole state to o->path. The machine must be quiesced
 * (machine_quiesce: vCPUs parked, devices idle); it stays so. The disks are
 * flushed first. On failure nothing is left at o->path (an older file there
 * is kept): 0 or -errno with one line in err. */
int migrate_save(struct machine *m, const struct migrate_save_opts *o,
		 struct migrate_save_result *res, char *err, size_t errlen) WARN_UNUSED;

/* Restore, in three steps: open and check the whole file but its RAM, take
 * the configuration from it, then load it into a machine made from that
 * configuration with machine_create_restored. Errors: one line in err. */
struct migrate_in;
int migrate_restore_open(const char *path, struct migrate_in **out, char *err,
			 size_t errlen) WARN_UNUSED;
/* cfg: config_defaults'ed; gets the saved configuration (config_free it). */
int migrate_restore_config(struct migrate_in *in, struct vm_config *cfg, char *err,
			   size_t errlen) WARN_UNUSED;
/* Everything into m, before its vCPUs run: RAM (mapped lazily unless
 * eager), CPUID and vCPU state, irqchip, PIT, clock, devices, and the check
 * of the disks. On failure m is half-loaded: destroy it, never run it. */
int migrate_restore_machine(struct migrate_in *in, struct machine *m, bool eager, char *err,
			    size_t errlen) WARN_UNUSED;
/* Applying a snapshot: each disk of the machine is a fresh differencing
 * child of the disk the state was saved with, not that disk itself. */
void migrate_restore_expect_children(struct migrate_in *in);
/* The file stays open while RAM is mapped from it: close after the machine. */
void migrate_restore_close(struct migrate_in *in);

#endif
