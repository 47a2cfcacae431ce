/* The sandbox's life cycle and the birth of every worker thread.
 *
 * seccomp filters belong to threads: a thread inherits its creator's filters
 * and can only add more (a call must pass every filter on the stack), and
 * capabilities and Landlock domains are per thread too. So the sandbox is
 * entered by each thread for itself, in the trampoline every worker thread
 * starts through (sandbox_thread_start):
 *
 *   - Threads started while the first boot is being set up (control, block
 *     engines, console, vCPUs) wait at their entry until sandbox_seal(). The
 *     seal drops to --user while nothing is filtered yet (glibc runs setresuid
 *     in every thread), then releases them: each empties its capability sets
 *     and installs its kind's filter before running any of its own code.
 *   - After the seal, threads are only born from the spawner, a thread of its
 *     own whose filter is the union of every kind's list plus clone(): a new
 *     thread inherits that union and narrows it to exactly its kind's list at
 *     its entry. So no guest-facing thread needs clone() (a vCPU starting
 *     virtqueue threads at DRIVER_OK asks the spawner), and a thread created at
 *     run time (disk-add, a reboot's new vCPUs) gets the same list as one
 *     created at setup.
 *   - The main thread filters itself last, at the seal.
 *
 * All threads share one address space, so the filters stop a compromised
 * thread from making calls off its list, not from corrupting another thread:
 * the union is the process's real boundary, and it still has no execve, no
 * fork, no ptrace, no socket but AF_UNIX datagrams, no mount or namespace. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "sandbox_priv.h"

enum sb_state {
	SB_NONE,   /* never initialised (unit tests, kestrel vhd): pass-through */
	SB_SETUP,  /* sandbox_init done: new threads wait at their entry */
	SB_SEALED, /* threads enter their sandbox */
	SB_OFF,	   /* setup failed: threads run unfiltered so they can be joined */
};

struct sb_birth {
	enum sandbox_kind kind;
	char name[16];
	void *(*fn)(void *);
	void *arg;
	bool after_seal;
};

struct sb_req {
	pthread_t *thread;
	struct sb_birth *birth;
	int ret;
	bool done;
	struct sb_req *next;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t changed; /* state, and spawn requests served */
	pthread_cond_t work;	/* a spawn request is queued */
	enum sb_state state;
	enum sandbox_seccomp seccomp;
	pthread_t spawner;
	struct sb_req *queue;
} sb = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.changed = PTHREAD_COND_INITIALIZER,
	.work = PTHREAD_COND_INITIALIZER,
};

static const char *const sb_kind_names[SANDBOX_KIND_NR] = {
	[SANDBOX_MAIN] = "main",       [SANDBOX_VCPU] = "vcpu",	      [SANDBOX_IO] = "io",
	[SANDBOX_CONTROL] = "control", [SANDBOX_CONSOLE] = "console", [SANDBOX_SAVE] = "save",
	[SANDBOX_MIGRATE] = "migrate", [SANDBOX_DISPLAY] = "display", [SANDBOX_SPAWNER] = "spawner",
};

const char *sandbox_kind_name(enum sandbox_kind kind)
{
	return (unsigned)kind < SANDBOX_KIND_NR ? sb_kind_names[kind] : "?";
}

static enum sb_state sb_get_state(void)
{
	enum sb_state s;

	pthread_mutex_lock(&sb.lock);
	s = sb.state;
	pthread_mutex_unlock(&sb.lock);
	return s;
}

static void sb_set_state(enum sb_state s)
{
	pthread_mutex_lock(&sb.lock);
	sb.state = s;
	pthread_cond_broadcast(&sb.changed);
	pthread_mutex_unlock(&sb.lock);
}

bool sandbox_sealed(void)
{
	return sb_get_state() == SB_SEALED;
}

bool sandbox_in_setup(void)
{
	return sb_get_state() == SB_SETUP;
}

/* A thread that cannot be confined must not run: say so and end the worker. */
static void sb_thread_fatal(const struct sb_birth *b, const char *what, int err)
{
	kerr("sandbox: thread %s (%s): %s: %s", b->name, sandbox_kind_name(b->kind), what,
	     strerror(-err));
	_exit(EXIT_SECCOMP);
}

#ifdef KESTREL_TEST_HOOKS
/* Test builds only (kestrel-test): KESTREL_TEST_FORBIDDEN_SYSCALL=NAME makes
 * the thread called NAME make a call that no allow-list has, right after it
 * entered its sandbox (tests/check_sandbox.c). Without seccomp the call fails
 * with ENOENT and the thread goes on. */
static void sb_test_hook(const char *thread)
{
	const char *want = getenv("KESTREL_TEST_FORBIDDEN_SYSCALL");
	char *const argv[] = { "kestrel-test-hook", NULL };

	if (want && !strcmp(want, thread))
		execve("/nonexistent/kestrel-test-hook", argv, argv);
}
#else
static void sb_test_hook(const char *thread)
{
	(void)thread;
}
#endif

/* The fault signals stay deliverable (a blocked one would kill the worker
 * without a word), SIGSYS above all: it carries the seccomp report. */
static void sb_unblock_faults(void)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGSYS);
	sigaddset(&s, SIGSEGV);
	sigaddset(&s, SIGBUS);
	sigaddset(&s, SIGILL);
	sigaddset(&s, SIGFPE);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
}

static void sb_enter(const struct sb_birth *b)
{
	enum sb_state s;
	int r;

	prctl(PR_SET_NAME, b->name);
	sb_seccomp_set_thread(b->kind, b->name);
	sb_unblock_faults();
	pthread_mutex_lock(&sb.lock);
	while (sb.state == SB_SETUP)
		pthread_cond_wait(&sb.changed, &sb.lock);
	s = sb.state;
	pthread_mutex_unlock(&sb.lock);
	if (s != SB_SEALED)
		return;
	/* Born after the seal: the spawner's (empty) capability sets and its
	 * Landlock domain came along. */
	if (!b->after_seal && (r = sb_priv_drop_thread()) < 0)
		sb_thread_fatal(b, "dropping capabilities", r);
	if (!b->after_seal && (r = sb_landlock_enter()) < 0)
		sb_thread_fatal(b, "entering the Landlock domain", r);
	if (sb.seccomp != SANDBOX_SECCOMP_OFF && (r = sb_seccomp_install(b->kind)) < 0)
		sb_thread_fatal(b, "installing its seccomp filter", r);
	sb_test_hook(b->name);
}

static void *sb_trampoline(void *arg)
{
	struct sb_birth b = *(struct sb_birth *)arg;

	free(arg);
	sb_enter(&b);
	return b.fn(b.arg);
}

/* The thread starts with every signal blocked; sb_enter opens the few that
 * must stay deliverable and the thread opens what it handles itself. */
static int sb_create(pthread_t *t, struct sb_birth *b)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(t, NULL, sb_trampoline, b);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		free(b);
		return -r;
	}
	return 0;
}

/* ---- the spawner ---------------------------------------------------------- */

static void *sb_spawner_thread(void *arg)
{
	(void)arg;
	for (;;) {
		struct sb_req *req;

		pthread_mutex_lock(&sb.lock);
		while (!sb.queue)
			pthread_cond_wait(&sb.work, &sb.lock);
		req = sb.queue;
		sb.queue = req->next;
		pthread_mutex_unlock(&sb.lock);
		req->ret = sb_create(req->thread, req->birth);
		pthread_mutex_lock(&sb.lock);
		req->done = true;
		pthread_cond_broadcast(&sb.changed);
		pthread_mutex_unlock(&sb.lock);
	}
	return NULL;
}

static int sb_spawn(pthread_t *t, struct sb_birth *b)
{
	struct sb_req req = { .thread = t, .birth = b }, **tail;

	pthread_mutex_lock(&sb.lock);
	for (tail = &sb.queue; *tail; tail = &(*tail)->next)
		;
	*tail = &req;
	pthread_cond_signal(&sb.work);
	while (!req.done)
		pthread_cond_wait(&sb.changed, &sb.lock);
	pthread_mutex_unlock(&sb.lock);
	return req.ret;
}

int sandbox_thread_start(pthread_t *t, enum sandbox_kind kind, const char *name,
			 void *(*fn)(void *), void *arg)
{
	struct sb_birth *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->kind = kind;
	snprintf(b->name, sizeof(b->name), "%s", name);
	b->fn = fn;
	b->arg = arg;
	b->after_seal = sb_get_state() == SB_SEALED;
	if (b->after_seal)
		return sb_spawn(t, b);
	return sb_create(t, b);
}

/* ---- life cycle ----------------------------------------------------------- */

int sandbox_init(const struct sandbox_opts *o, char *err, size_t errlen)
{
	int r;

	if (sb_get_state() != SB_NONE) {
		snprintf(err, errlen, "sandbox: set up twice");
		return -EALREADY;
	}
	r = sb_priv_init(o->user, err, errlen);
	if (r == 0 && o->landlock)
		r = sb_landlock_init(o->landlock_dirs, o->nlandlock_dirs, err, errlen);
	if (r)
		return r;
	sb.seccomp = o->seccomp;
	if (sb.seccomp != SANDBOX_SECCOMP_OFF) {
		r = sb_seccomp_build(sb.seccomp == SANDBOX_SECCOMP_LOG, err, errlen);
		if (r)
			return r;
	}
	sb_keep_mode(SB_KEEP_RECORD);
	sb_set_state(SB_SETUP);
	r = sandbox_thread_start(&sb.spawner, SANDBOX_SPAWNER, "spawner", sb_spawner_thread, NULL);
	if (r) {
		snprintf(err, errlen, "sandbox: cannot start the spawner thread: %s", strerror(-r));
		sandbox_abort();
		return r;
	}
	if (sb.seccomp == SANDBOX_SECCOMP_OFF)
		kwarn("--seccomp off: the worker's threads run without system call filters "
		      "(for debugging only)");
	else if (sb.seccomp == SANDBOX_SECCOMP_LOG)
		kwarn("--seccomp log: calls off the lists are allowed and logged by the kernel "
		      "(dmesg, the journal)");
	return 0;
}

int sandbox_seal(char *err, size_t errlen)
{
	int r;

	if (sb_get_state() != SB_SETUP)
		return 0;
	sb_keep_mode(SB_KEEP_REPLAY);
	r = sb_priv_drop_process(err, errlen);
	if (!r && (r = sb_priv_drop_thread()) < 0)
		snprintf(err, errlen, "sandbox: dropping capabilities: %s", strerror(-r));
	if (!r && (r = sb_landlock_enter()) < 0)
		snprintf(err, errlen, "--landlock: entering the domain: %s", strerror(-r));
	if (r)
		return r;
	sb_priv_seal();
	sb_set_state(SB_SEALED);
	sb_seccomp_set_thread(SANDBOX_MAIN, "main");
	if (sb.seccomp != SANDBOX_SECCOMP_OFF && (r = sb_seccomp_install(SANDBOX_MAIN)) < 0) {
		snprintf(err, errlen, "sandbox: installing the main thread's seccomp filter: %s",
			 strerror(-r));
		return r;
	}
	sb_test_hook("main");
	kdebug("sandbox: sealed (seccomp %s)", sb.seccomp == SANDBOX_SECCOMP_ON	   ? "on"
					       : sb.seccomp == SANDBOX_SECCOMP_LOG ? "log"
										   : "off");
	return 0;
}

void sandbox_abort(void)
{
	pthread_mutex_lock(&sb.lock);
	if (sb.state == SB_SETUP) {
		sb.state = SB_OFF;
		pthread_cond_broadcast(&sb.changed);
	}
	pthread_mutex_unlock(&sb.lock);
	if (!sandbox_sealed())
		sb_keep_mode(SB_KEEP_OFF);
}
