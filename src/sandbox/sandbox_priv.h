/* Inside the sandbox module: what sandbox.c (life cycle, threads) needs from
 * seccomp.c (filters), privdrop.c (credentials) and keep.c (descriptors). */
#ifndef KESTREL_SANDBOX_PRIV_H
#define KESTREL_SANDBOX_PRIV_H

#include <stdbool.h>
#include <stddef.h>

#include "kestrel/sandbox.h"

/* seccomp.c: build every kind's BPF program once (before any thread exists),
 * install one on the calling thread, name the thread for the SIGSYS report. */
int sb_seccomp_build(bool log_only, char *err, size_t errlen) WARN_UNUSED;
int sb_seccomp_install(enum sandbox_kind kind) WARN_UNUSED;
void sb_seccomp_set_thread(enum sandbox_kind kind, const char *name);
/* Allow-list sizes (rules, and distinct system calls) for docs and tests, and
 * whether some rule of the kind allows system call nr (perhaps only for some
 * arguments). After sb_seccomp_build. */
unsigned sb_seccomp_rule_count(enum sandbox_kind kind);
unsigned sb_seccomp_syscall_count(enum sandbox_kind kind);
bool sb_seccomp_allows(enum sandbox_kind kind, int nr);

/* privdrop.c */
int sb_priv_init(const char *user, char *err, size_t errlen) WARN_UNUSED;
/* setgroups/setresgid/setresuid to --user for every thread (glibc runs them
 * in each thread); nothing without --user. */
int sb_priv_drop_process(char *err, size_t errlen) WARN_UNUSED;
/* Empty the calling thread's capability sets (they are per thread). */
int sb_priv_drop_thread(void) WARN_UNUSED;
/* After the drop: an unprivileged worker is made non-dumpable. */
void sb_priv_seal(void);

/* landlock.c: make the ruleset (at init), enter it (the calling thread). */
int sb_landlock_init(const char *const *dirs, unsigned ndirs, char *err, size_t errlen) WARN_UNUSED;
int sb_landlock_enter(void) WARN_UNUSED;

/* keep.c: record what is opened while setting up, hand out dups after the
 * seal; OFF (never set up, or aborted): plain open(2). */
enum sb_keep_mode { SB_KEEP_OFF, SB_KEEP_RECORD, SB_KEEP_REPLAY };
void sb_keep_mode(enum sb_keep_mode mode);

#endif
