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
	const char *path; /* written as PATH.tmp-PID, then renamed over PATH */
	/* Called from the saving thread as RAM goes out (done of total bytes). */
	void (*progress)(void *opaque, uint64_t done, uint64_t total);
	void *opaque;
};

struct migrate_save_result {
	uint64_t file_bytes; /* the file's size (holes included) */
	uint64_t ram_stored; /* bytes of RAM written (non-zero pages) */
	uint64_t ms;	     /* from the start of the write to the rename */
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
/* ---- live migration (docs/migration.md) ---- */

struct migrate_progress {
	unsigned round;
	uint64_t transferred;	       /* bytes sent so far */
	uint64_t remaining;	       /* dirty bytes left after the round */
	uint64_t dirty_rate;	       /* bytes dirtied per second in the round */
	uint64_t expected_downtime_ms; /* remaining at the bandwidth measured */
	unsigned throttle_pct;	       /* auto-converge: share of time the vCPUs are parked */
};

struct migrate_send_opts {
	const char *uri;	  /* tcp:ADDR:PORT or unix:PATH */
	uint64_t max_downtime_ms; /* stop and copy once the rest fits this */
	uint64_t bandwidth;	  /* bytes per second, 0: no limit */
	unsigned converge_after;  /* rounds before auto-converge may throttle */
	const bool *cancel;	  /* another thread sets it: give up */
	void (*progress)(void *opaque, const struct migrate_progress *p);
	void *opaque;
};

struct migrate_send_result {
	uint64_t transferred, total_ms, downtime_ms, pause_ns, last_pages;
	/* the pause to the state's last byte written: the span QEMU's
	 * "downtime" measures (kestrel's goes on to the target's start) */
	uint64_t state_sent_ms;
	unsigned rounds;
	bool quiesced; /* the machine is left quiesced: resume it */
};

/* uri is tcp:ADDR:PORT or unix:PATH as migrate_send takes it: 0, or
 * -EINVAL with one line in err. */
int migrate_uri_check(const char *uri, char *err, size_t errlen) WARN_UNUSED;
/* tcp:HOST:PORT with a host name: *out (malloc'd) the same with the first
 * address the resolver gives (tcp:[v6]:PORT for IPv6); any other URI is
 * checked and copied. Not in the sandbox: kestrel ctl and --incoming call
 * it before. 0, or -errno with one line in err. */
int migrate_uri_resolve(const char *uri, char **out, char *err, size_t errlen) WARN_UNUSED;
/* Send the running machine to the target. 0: the target runs the guest
 * (stop this one, quiesced). Else -errno with one line in err; the caller
 * resumes the machine if res->quiesced (the disks' locks are taken back). */
int migrate_send(struct machine *m, const struct migrate_send_opts *o,
		 struct migrate_send_result *res, char *err, size_t errlen) WARN_UNUSED;
/* --incoming, in three steps, so that the target builds its machine while
 * RAM comes (docs/migration.md). migrate_incoming_accept: listen on uri,
 * take one connection, read and check the source's HELLO (versions,
 * configuration, CPUID); *conf is the source's configuration (JSON, valid
 * while *out lives). No connection within wait_ms (0: no limit) is
 * -ETIMEDOUT. The source waits for migrate_incoming_ready. */
struct migrate_incoming;
int migrate_incoming_accept(const char *uri, uint64_t wait_ms, struct migrate_incoming **out,
			    const char **conf, char *err, size_t errlen) WARN_UNUSED;
/* Receive RAM straight into the built machine's (still zero) RAM, which
 * then needs neither a copy nor a copy-on-write fault per page. Before
 * migrate_incoming_ready; gm must outlive the migration. 0, or -errno with
 * one line in err. */
struct guest_mem;
int migrate_incoming_attach(struct migrate_incoming *inc, struct guest_mem *gm, char *err,
			    size_t errlen) WARN_UNUSED;
/* Called at each pre-copy round with the source's figures (transferred:
 * the RAM received so far), on the thread in migrate_incoming_receive. */
void migrate_incoming_on_progress(struct migrate_incoming *inc,
				  void (*progress)(void *opaque, const struct migrate_progress *p),
				  void *opaque);
/* Answer the HELLO (after migrate_incoming_attach): rc 0, send RAM; else the source hears why (msg) and
 * keeps the VM, and inc is freed. 0, or -errno with one line in err. */
int migrate_incoming_ready(struct migrate_incoming *inc, int rc, const char *msg, char *err,
			   size_t errlen) WARN_UNUSED;
/* RAM and the state, checked all as a saved-state file (and the
 * configuration as the HELLO's); *out is then what migrate_restore_machine
 * takes. inc is freed either way; on failure the source hears why. */
int migrate_incoming_receive(struct migrate_incoming *inc, struct migrate_in **out, char *err,
			     size_t errlen) WARN_UNUSED;
/* Give up before migrate_incoming_receive: the source hears msg (NULL ok). */
void migrate_incoming_abort(struct migrate_incoming *inc, int rc, const char *msg);
/* The target is ready to build the machine: tell the source, which lets go
 * of the disks and says SWITCH. 0 (also for a file), or -errno with one
 * line in err (the source keeps the VM). */
int migrate_incoming_switch(struct migrate_in *in, char *err, size_t errlen) WARN_UNUSED;
/* The target's machine is loaded and about to run (rc 0), or failed: the
 * source's last word (it exits or resumes). No-op for a file. */
void migrate_incoming_done(struct migrate_in *in, int rc, const char *msg);

/* The file stays open while RAM is mapped from it: close after the machine. */
void migrate_restore_close(struct migrate_in *in);

#endif
