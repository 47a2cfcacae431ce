/* The worker's sandbox (src/sandbox/, docs/sandbox.md): seccomp allow-lists
 * per thread kind, the privilege drop, and the descriptors kept from the
 * first boot so that a guest reboot re-opens nothing by name.
 *
 * Life cycle, in `kestrel run` only (unit tests and `kestrel vhd` never call
 * sandbox_init, and then every call below is a plain pass-through):
 *   sandbox_init()   before anything is opened or any thread started
 *   ...first boot: open files, /dev/kvm, TAPs; threads started now wait...
 *   sandbox_seal()   once the first boot's vCPUs exist: drop privileges,
 *                    then every thread takes its kind's seccomp filter
 *   sandbox_abort()  setup failed before the seal: let waiting threads go */
#ifndef KESTREL_SANDBOX_H
#define KESTREL_SANDBOX_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "kestrel/util.h"

/* What a thread does decides its allow-list (src/sandbox/seccomp.c). */
enum sandbox_kind {
	SANDBOX_MAIN,	 /* waits for the VM to stop; a reboot re-creates the machine */
	SANDBOX_VCPU,	 /* KVM_RUN and the exit handlers (device registers) */
	SANDBOX_IO,	 /* virtqueue threads and block engine threads */
	SANDBOX_CONTROL, /* the control socket, and timed hot-plug (test hook) */
	SANDBOX_CONSOLE, /* host signals and stdin to the UART */
	SANDBOX_SAVE,	 /* kestrel ctl NAME save: the VM's state into a file */
	SANDBOX_MIGRATE, /* kestrel ctl NAME migrate: RAM and state to the target's socket */
	SANDBOX_DISPLAY, /* the VNC server: its clients' sockets, the display */
	SANDBOX_SPAWNER, /* starts every thread once the sandbox is sealed */
	SANDBOX_KIND_NR
};

/* --seccomp: on (a call off the list ends the worker), log (allowed, but the
 * kernel logs it: to find a missing rule), off (no filters; debugging). */
enum sandbox_seccomp { SANDBOX_SECCOMP_ON, SANDBOX_SECCOMP_LOG, SANDBOX_SECCOMP_OFF };

struct sandbox_opts {
	enum sandbox_seccomp seccomp;
	const char *user; /* --user NAME, or NULL */
	/* --landlock: after the seal, files may be opened only beneath these
	 * folders (read and write existing files) and in /proc/self. */
	bool landlock;
	const char *const *landlock_dirs;
	unsigned nlandlock_dirs;
};

/* The status the worker exits with when a thread makes a system call outside
 * its allow-list (after one line on stderr naming the thread and the call). */
#define EXIT_SECCOMP 4

/* Resolve --user, set no_new_privs, close inherited descriptors, drop the
 * capability bounding set, build the filters and start the spawner. One line
 * in err on failure (a configuration error: exit 2). */
int sandbox_init(const struct sandbox_opts *o, char *err, size_t errlen) WARN_UNUSED;
/* Drop to --user, drop every capability, then release the waiting threads
 * into their filters and filter the calling (main) thread. Idempotent. */
int sandbox_seal(char *err, size_t errlen) WARN_UNUSED;
/* Setup failed before the seal: waiting threads run on unfiltered, so that
 * they can be stopped and joined. A no-op once sealed. */
void sandbox_abort(void);
bool sandbox_sealed(void);
/* True while the sandbox is being set up: a thread started now waits in its
 * sandbox entry and runs none of its function until the seal (or an abort),
 * so it cannot be joined yet - and need not be stopped to be quiet. */
bool sandbox_in_setup(void);

/* pthread_create for every worker thread: the thread starts with all signals
 * blocked but SIGSYS and the fault signals, named `name` (at most 15 chars),
 * and enters its kind's sandbox before fn runs (waiting for the seal if the
 * sandbox is being set up). After the seal, threads are born from the
 * spawner thread, so no other thread needs clone(). 0 or -errno. */
int sandbox_thread_start(pthread_t *t, enum sandbox_kind kind, const char *name,
			 void *(*fn)(void *), void *arg) WARN_UNUSED;
const char *sandbox_kind_name(enum sandbox_kind kind);

/* Descriptors kept from the first boot (src/sandbox/keep.c). While the sandbox
 * is being set up, what the worker opens is also kept (a dup); afterwards the
 * same request gets a dup of that descriptor instead of a new open, so a
 * reboot works after privileges were dropped and reopens the very files of
 * the first boot. Outside `kestrel run` they are open(2) and nothing more.
 * sandbox_open: open(path, flags, mode) or the kept one; fd or -errno. */
int sandbox_open(const char *path, int flags, mode_t mode);
/* A new open file description of the file fd is open on (/proc/self/fd/FD,
 * else path), or the kept one; fd or -errno. */
int sandbox_reopen(int fd, const char *path, int flags);
/* Generic form: keep a dup of fd under key (only while setting up), and take
 * a dup of what is kept under key (-ENOENT if nothing). */
void sandbox_keep(const char *key, int fd);
int sandbox_kept(const char *key);

#endif
