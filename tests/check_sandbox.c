/* The worker's sandbox (src/sandbox/): each kind's seccomp filter, installed in
 * a forked child, lets that kind's calls through and ends the process with the
 * report and status 4 on anything else; the spawner's list covers every kind;
 * --seccomp/--user errors; and, where /dev/kvm is, the worker itself: the test
 * hook of kestrel-test makes a device thread call execve (the worker must die
 * saying so, and must not with --seccomp off), and --user nobody leaves every
 * thread without uid 0, capabilities or a way to new privileges. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "../src/block/block_priv.h" /* blk_uring_restrict */
#include "../src/sandbox/sandbox_priv.h"
#include "check_util.h"

static char errb[8192], outb[8192];

/* Sanitizer builds widen every list (src/sandbox/seccomp.c: rules_sanitizer):
 * LeakSanitizer forks and ptraces, ASan opens its report file anywhere. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZER_BUILD 1
#endif
#endif
#ifdef SANITIZER_BUILD
static const bool sanitizer_build = true;
#else
static const bool sanitizer_build = false;
#endif

static void *idle_thread(void *arg)
{
	return arg;
}

/* Run fn in a child under kind's filter, its stderr in errb; the exit status
 * (128 + signal when killed). As in the worker, a thread has been started
 * before (glibc sets up its thread signals at the first one). */
static int run_filtered(enum sandbox_kind kind, void (*fn)(void))
{
	int pe[2], status;
	pid_t pid;

	ck_assert_int_eq(pipe(pe), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char err[256];
		pthread_t t;

		if (pthread_create(&t, NULL, idle_thread, NULL) || pthread_join(t, NULL))
			_exit(89);
		dup2(pe[1], 2);
		close(pe[0]);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
		    sb_seccomp_build(false, err, sizeof(err)))
			_exit(90);
		sb_seccomp_set_thread(kind, "t-check");
		if (sb_seccomp_install(kind))
			_exit(91);
		fn();
		_exit(0);
	}
	close(pe[1]);
	slurp(pe[0], errb, sizeof(errb));
	close(pe[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void assert_report(int rc, enum sandbox_kind kind, const char *call)
{
	char want[160];

	snprintf(want, sizeof(want),
		 "kestrel: error: seccomp: thread %s (t-check) made a forbidden "
		 "system call %s (nr ",
		 sandbox_kind_name(kind), call);
	ck_assert_msg(rc == EXIT_SECCOMP, "%s: status %d, want %d; stderr: %s",
		      sandbox_kind_name(kind), rc, EXIT_SECCOMP, errb);
	ck_assert_msg(strstr(errb, want), "%s: no '%s' in: %s", sandbox_kind_name(kind), want,
		      errb);
}

static void call_execve(void)
{
	char *const argv[] = { "x", NULL };

	execve("/nonexistent", argv, argv);
	_exit(99); /* not trapped */
}

START_TEST(every_kind_traps_execve)
{
	for (int k = 0; k < SANDBOX_KIND_NR; k++)
		assert_report(run_filtered((enum sandbox_kind)k, call_execve), (enum sandbox_kind)k,
			      "execve");
}
END_TEST

/* What every thread does: memory, time, locks, logging, its own signals. */
static void call_basics(void)
{
	struct timespec ts;
	int p[2] = { -1, -1 };
	void *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int futex_word = 0;

	if (m == MAP_FAILED || munmap(m, 1 << 20) ||
	    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts))
		_exit(10);
	if (write(2, "", 0) < 0 || syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1) < 0)
		_exit(11);
	if (syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), 0) < 0)
		_exit(12);
	free(malloc(1 << 22)); /* an mmap'd block */
	(void)p;
}

START_TEST(every_kind_runs_the_c_library)
{
	for (int k = 0; k < SANDBOX_KIND_NR; k++) {
		int rc = run_filtered((enum sandbox_kind)k, call_basics);

		ck_assert_msg(rc == 0, "%s: status %d; stderr: %s", sandbox_kind_name(k), rc, errb);
	}
}
END_TEST

static void call_mmap_exec(void)
{
	mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	_exit(99);
}

static void call_mprotect_exec(void)
{
	void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	mprotect(m, 4096, PROT_READ | PROT_EXEC);
	_exit(99);
}

START_TEST(no_kind_makes_executable_memory)
{
	for (int k = 0; k < SANDBOX_KIND_NR; k++) {
		assert_report(run_filtered((enum sandbox_kind)k, call_mmap_exec), k, "mmap");
		assert_report(run_filtered((enum sandbox_kind)k, call_mprotect_exec), k,
			      "mprotect");
	}
}
END_TEST

/* ioctl is allowed by request number: KVM_RUN passes the filter (and the
 * kernel says ENOTTY for a pipe), TCGETS does not in a vCPU thread. */
static void call_kvm_run_on_pipe(void)
{
	if (ioctl(2, KVM_RUN, 0) != -1 || errno != ENOTTY) /* stderr: a pipe */
		_exit(20);
}

static void call_tcgets(void)
{
	struct termios t;

	ioctl(0, TCGETS, &t);
	_exit(99);
}

START_TEST(ioctl_by_request_number)
{
	ck_assert_int_eq(run_filtered(SANDBOX_VCPU, call_kvm_run_on_pipe), 0);
	assert_report(run_filtered(SANDBOX_VCPU, call_tcgets), SANDBOX_VCPU, "ioctl");
	assert_report(run_filtered(SANDBOX_IO, call_tcgets), SANDBOX_IO, "ioctl");
	/* The main thread owns the console's terminal. */
	ck_assert_int_eq(run_filtered(SANDBOX_MAIN, call_tcgets), 99);
}
END_TEST

/* Threads that never open files are refused quietly (glibc's malloc reads
 * /proc/sys/vm/overcommit_memory from whichever thread first trims a heap). */
static void call_open(void)
{
	if (open("/proc/self/status", O_RDONLY) != -1 || errno != EACCES)
		_exit(30);
}

static void call_open_ok(void)
{
	int fd = open("/proc/self/status", O_RDONLY);

	if (fd < 0)
		_exit(31);
	close(fd);
}

START_TEST(opening_files)
{
	if (!sanitizer_build) {
		ck_assert_int_eq(run_filtered(SANDBOX_VCPU, call_open), 0);
		ck_assert_int_eq(run_filtered(SANDBOX_IO, call_open), 0);
		ck_assert_int_eq(run_filtered(SANDBOX_CONSOLE, call_open), 0);
	}
	ck_assert_int_eq(run_filtered(SANDBOX_CONTROL, call_open_ok), 0);
	ck_assert_int_eq(run_filtered(SANDBOX_MAIN, call_open_ok), 0);
}
END_TEST

static void call_notify_socket(void)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		_exit(40);
}

static void call_stream_socket(void)
{
	socket(AF_UNIX, SOCK_STREAM, 0);
	_exit(99);
}

static void call_inet_socket(void)
{
	socket(AF_INET, SOCK_DGRAM, 0);
	_exit(99);
}

START_TEST(sockets_are_notify_datagrams)
{
	ck_assert_int_eq(run_filtered(SANDBOX_CONTROL, call_notify_socket), 0);
	ck_assert_int_eq(run_filtered(SANDBOX_MAIN, call_notify_socket), 0);
	assert_report(run_filtered(SANDBOX_CONTROL, call_stream_socket), SANDBOX_CONTROL, "socket");
	assert_report(run_filtered(SANDBOX_MAIN, call_inet_socket), SANDBOX_MAIN, "socket");
	assert_report(run_filtered(SANDBOX_VCPU, call_notify_socket), SANDBOX_VCPU, "socket");
}
END_TEST

static void call_kill_init(void)
{
	syscall(SYS_tgkill, 1, 1, 0);
	_exit(99);
}

START_TEST(signals_stay_in_the_process)
{
	if (sanitizer_build)
		return;
	assert_report(run_filtered(SANDBOX_CONTROL, call_kill_init), SANDBOX_CONTROL, "tgkill");
}
END_TEST

/* The spawner may start threads, never processes; a thread it starts that
 * narrows to the io list is held to that list (the filters stack). */
static void *narrow_to_io(void *arg)
{
	(void)arg;
	sb_seccomp_set_thread(SANDBOX_IO, "t-check");
	if (sb_seccomp_install(SANDBOX_IO))
		_exit(51);
	socket(AF_UNIX, SOCK_DGRAM, 0); /* the spawner's list has it, io's has not */
	_exit(99);
}

static void call_thread_then_narrow(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, narrow_to_io, NULL))
		_exit(50);
	pthread_join(t, NULL);
	_exit(98);
}

static void call_fork(void)
{
	fork();
	_exit(99);
}

static void call_pthread_create(void)
{
	pthread_t t;

	pthread_create(&t, NULL, idle_thread, NULL);
	_exit(99);
}

START_TEST(only_the_spawner_clones_and_only_threads)
{
	assert_report(run_filtered(SANDBOX_SPAWNER, call_thread_then_narrow), SANDBOX_IO, "socket");
	if (sanitizer_build)
		return;
	assert_report(run_filtered(SANDBOX_SPAWNER, call_fork), SANDBOX_SPAWNER, "clone");
	assert_report(run_filtered(SANDBOX_MAIN, call_fork), SANDBOX_MAIN, "clone");
	/* glibc blocks every signal around clone(): the trap cannot be handled,
	 * the kernel kills the worker with SIGSYS itself, without the line. */
	ck_assert_int_eq(run_filtered(SANDBOX_VCPU, call_pthread_create), 128 + SIGSYS);
}
END_TEST

/* Threads born after the seal inherit the spawner's filter: it must allow all
 * that any kind allows, or a thread would die of its parent's list. */
START_TEST(the_spawner_covers_every_kind)
{
	char err[256];

	ck_assert_int_eq(sb_seccomp_build(false, err, sizeof(err)), 0);
	for (int k = 0; k < SANDBOX_KIND_NR; k++) {
		ck_assert_uint_gt(sb_seccomp_syscall_count(k), 20);
		for (int nr = 0; nr < 512; nr++)
			ck_assert_msg(!sb_seccomp_allows(k, nr) ||
					      sb_seccomp_allows(SANDBOX_SPAWNER, nr),
				      "%s allows system call %d, the spawner does not",
				      sandbox_kind_name(k), nr);
	}
	ck_assert(sanitizer_build || !sb_seccomp_allows(SANDBOX_VCPU, SYS_openat));
	ck_assert(!sb_seccomp_allows(SANDBOX_SPAWNER, SYS_execve));
	ck_assert(sanitizer_build || !sb_seccomp_allows(SANDBOX_SPAWNER, SYS_ptrace));
}
END_TEST

/* seccomp does not see what an io_uring does: the engine's rings take only
 * the opcodes it issues. An open through the ring is refused (EACCES), a nop
 * and a read go through. */
static int ring_submit(struct io_uring *ring, void (*prep)(struct io_uring_sqe *))
{
	struct io_uring_cqe *cqe;
	int res;

	prep(io_uring_get_sqe(ring));
	ck_assert_int_eq(io_uring_submit(ring), 1);
	ck_assert_int_eq(io_uring_wait_cqe(ring, &cqe), 0);
	res = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return res;
}

static void prep_openat(struct io_uring_sqe *sqe)
{
	io_uring_prep_openat(sqe, AT_FDCWD, "/proc/self/status", O_RDONLY, 0);
}

static void prep_nop(struct io_uring_sqe *sqe)
{
	io_uring_prep_nop(sqe);
}

static char ring_buf[16];
static struct iovec ring_iov = { ring_buf, sizeof(ring_buf) };
static int ring_zero_fd;

static void prep_readv(struct io_uring_sqe *sqe)
{
	io_uring_prep_readv(sqe, ring_zero_fd, &ring_iov, 1, 0);
}

START_TEST(uring_rings_take_only_the_engine_opcodes)
{
	struct io_uring_params p = { .flags = IORING_SETUP_R_DISABLED };
	struct io_uring ring;
	int r = io_uring_queue_init_params(8, &ring, &p), fd;

	if (r == -EINVAL || r == -ENOSYS || r == -EPERM) {
		printf("SKIP: %s: no io_uring with IORING_SETUP_R_DISABLED here (%s)\n",
		       tcase_name(), strerror(-r));
		return;
	}
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(blk_uring_restrict(&ring), 0);
	ck_assert_int_eq(ring_submit(&ring, prep_openat), -EACCES);
	ck_assert_int_eq(ring_submit(&ring, prep_nop), 0);
	ring_zero_fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(ring_zero_fd, 0);
	ck_assert_int_eq(ring_submit(&ring, prep_readv), (int)sizeof(ring_buf));
	close(ring_zero_fd);
	io_uring_queue_exit(&ring);
	/* Without the restriction the same open goes through. */
	ck_assert_int_eq(io_uring_queue_init(8, &ring, 0), 0);
	fd = ring_submit(&ring, prep_openat);
	ck_assert_int_ge(fd, 0);
	close(fd);
	io_uring_queue_exit(&ring);
}
END_TEST

/* ---- the worker ------------------------------------------------------------- */

extern char **environ;

/* bin ARGV (kestrel run ..., kestrel ctl ...), with
 * KESTREL_TEST_FORBIDDEN_SYSCALL=hook if any;
 * its output in outb and errb, its status back. */
static int run_worker(const char *bin, const char *hook, const char *const *argv)
{
	const char *args[32];
	char *envp[64], hookvar[96];
	posix_spawn_file_actions_t fa;
	int po[2], pe[2], n = 0;
	pid_t pid;

	child_argv(args, ARRAY_SIZE(args), bin, argv);
	for (char **e = environ; *e && n < 62; e++)
		if (strncmp(*e, "KESTREL_TEST_", 13))
			envp[n++] = *e;
	snprintf(hookvar, sizeof(hookvar), "KESTREL_TEST_FORBIDDEN_SYSCALL=%s", hook ? hook : "");
	envp[n++] = hookvar;
	envp[n] = NULL;
	ck_assert_int_eq(pipe(po), 0);
	ck_assert_int_eq(pipe(pe), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, po[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
	ck_assert_int_eq(posix_spawn(&pid, bin, &fa, NULL, (char *const *)args, envp), 0);
	posix_spawn_file_actions_destroy(&fa);
	return child_collect(pid, po, pe, outb, sizeof(outb), errb, sizeof(errb));
}

#define WORKER(bin, hook, ...) \
	run_worker(bin, hook, (const char *const[]){ "run", __VA_ARGS__, NULL })
#define KESTREL(...) run_worker(KESTREL_BIN, NULL, (const char *const[]){ __VA_ARGS__, NULL })

START_TEST(bad_flags)
{
	ck_assert_int_eq(WORKER(KESTREL_BIN, NULL, "--kernel", KESTREL_BIN, "--seccomp", "maybe"),
			 2);
	ck_assert_msg(strstr(errb, "--seccomp: 'maybe' is not on, log or off"), "%s", errb);
	ck_assert_int_eq(WORKER(KESTREL_BIN, NULL, "--kernel", KESTREL_BIN, "--user", "a b"), 2);
	ck_assert_msg(strstr(errb, "--user: 'a b' is not a user name or uid"), "%s", errb);
}
END_TEST

static bool have_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		printf("SKIP: %s: no usable /dev/kvm here\n", tcase_name());
		return false;
	}
	close(fd);
	return true;
}

static char img[64];

static const char *vscsi_payload(void)
{
	int fd;

	snprintf(img, sizeof(img), "/tmp/kestrel-sandbox-XXXXXX");
	fd = mkstemp(img);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 8 << 20), 0);
	close(fd);
	return KESTREL_BINARY_DIR "/tests/guest/vscsi.bin";
}

/* A virtio-scsi queue thread (born from the spawner when the guest's driver
 * starts the device) calls execve: the worker dies saying so; with --seccomp
 * off the same call fails and the guest finishes its test. */
START_TEST(device_thread_off_its_list)
{
	char disk[128];
	const char *p;
	int rc;

	if (!have_kvm())
		return;
	p = vscsi_payload();
	snprintf(disk, sizeof(disk), "path=%s,bus=scsi", img);
	rc = WORKER(KESTREL_TEST_BIN, "vscsi-q0", "--kernel", p, "--debug-exit", "--cmdline",
		    "disks=1 malformed=0", "--disk", disk, "--timeout", "60s", "--control", "none");
	ck_assert_msg(rc == EXIT_SECCOMP, "status %d; stderr: %s", rc, errb);
	ck_assert_msg(strstr(errb, "kestrel: error: seccomp: thread io (vscsi-q0) made a forbidden "
				   "system call execve (nr 59)"),
		      "%s", errb);
	rc = WORKER(KESTREL_TEST_BIN, "vscsi-q0", "--seccomp", "off", "--kernel", p, "--debug-exit",
		    "--cmdline", "disks=1 malformed=0", "--disk", disk, "--timeout", "60s",
		    "--control", "none");
	ck_assert_msg(rc == 1 && strstr(outb, "RESULT: PASS"), "--seccomp off: status %d: %s", rc,
		      errb);
	ck_assert(!strstr(errb, "forbidden"));
	/* The product binary has no hook. */
	rc = WORKER(KESTREL_BIN, "vscsi-q0", "--kernel", p, "--debug-exit", "--cmdline",
		    "disks=1 malformed=0", "--disk", disk, "--timeout", "60s", "--control", "none");
	ck_assert_msg(rc == 1 && strstr(outb, "RESULT: PASS"), "status %d: %s", rc, errb);
	unlink(img);
}
END_TEST

/* Threads of the first boot (a vCPU, the block engine, the main thread) and
 * their reports. */
START_TEST(first_boot_threads_off_their_list)
{
	static const struct {
		const char *thread, *kind;
	} t[] = {
		{ "vcpu0", "vcpu" },	  { "blk-uring", "io" }, { "control", "control" },
		{ "console", "console" }, { "main", "main" },
	};
	char disk[128], want[160];
	const char *p;

	if (!have_kvm())
		return;
	p = vscsi_payload();
	snprintf(disk, sizeof(disk), "path=%s,bus=scsi", img);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int rc = WORKER(KESTREL_TEST_BIN, t[i].thread, "--kernel", p, "--debug-exit",
				"--cmdline", "disks=1 malformed=0", "--disk", disk, "--timeout",
				"60s");

		snprintf(want, sizeof(want), "thread %s (%s) made a forbidden system call execve",
			 t[i].kind, t[i].thread);
		ck_assert_msg(rc == EXIT_SECCOMP && strstr(errb, want), "%s: status %d: %s",
			      t[i].thread, rc, errb);
	}
	unlink(img);
}
END_TEST

/* One field of /proc/PID/task/TID/status, or "" */
static void status_field(const char *path, const char *key, char *val, size_t len)
{
	char line[256];
	FILE *f = fopen(path, "r");

	val[0] = 0;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)) && line[strlen(key)] == ':')
			sscanf(line + strlen(key) + 1, " %63[^\n]", val);
	for (size_t n = strlen(val); n > 0 && val[n - 1] == ' '; n--)
		val[n - 1] = 0;
	if (f)
		fclose(f);
	(void)len;
}

START_TEST(user_nobody_while_the_guest_runs)
{
	char disk[128], path[300], v[64], log[] = "/tmp/kestrel-sandbox-log-XXXXXX";
	struct dirent *e;
	DIR *d;
	pid_t pid;
	int fd, threads = 0;

	if (!have_kvm())
		return;
	if (geteuid() != 0) {
		printf("SKIP: %s: needs root to switch to nobody\n", tcase_name());
		return;
	}
	vscsi_payload();
	chmod(img, 0600); /* root's: only the descriptor opened before the drop reaches it */
	snprintf(disk, sizeof(disk), "path=%s,bus=scsi", img);
	fd = mkstemp(log);
	ck_assert_int_ge(fd, 0);
	pid = fork();
	if (pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		execl(KESTREL_BIN, KESTREL_BIN, "run", "--user", "nobody", "--kernel",
		      KESTREL_BINARY_DIR "/tests/guest/counter.bin", "--cmdline", "period_ms=50",
		      "--cpus", "2", "--disk", disk, "--timeout", "60s", "--control", "none",
		      (char *)NULL);
		_exit(127);
	}
	/* Once the guest counts, the sandbox is sealed. */
	for (int i = 0; i < 200; i++) {
		char buf[4096] = "";

		pread(fd, buf, sizeof(buf) - 1, 0);
		if (strstr(buf, "counter: 3"))
			break;
		usleep(50 * 1000);
	}
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		const char *tid = e->d_name;

		if (tid[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, tid);
		threads++;
		status_field(path, "Uid", v, sizeof(v));
		ck_assert_msg(!strcmp(v, "65534\t65534\t65534\t65534"), "task %s Uid %s", tid, v);
		status_field(path, "Gid", v, sizeof(v));
		ck_assert_msg(!strcmp(v, "65534\t65534\t65534\t65534"), "task %s Gid %s", tid, v);
		status_field(path, "Groups", v, sizeof(v));
		ck_assert_msg(!strcmp(v, "65534"), "task %s Groups %s", tid, v);
		for (const char *const *c = (const char *const[]){ "CapInh", "CapPrm", "CapEff",
								   "CapBnd", "CapAmb", NULL };
		     *c; c++) {
			status_field(path, *c, v, sizeof(v));
			ck_assert_msg(!strcmp(v, "0000000000000000"), "task %s %s %s", tid, *c, v);
		}
		status_field(path, "NoNewPrivs", v, sizeof(v));
		ck_assert_msg(!strcmp(v, "1"), "task %s NoNewPrivs %s", tid, v);
		status_field(path, "Seccomp", v, sizeof(v));
		ck_assert_msg(!strcmp(v, "2"), "task %s Seccomp %s", tid, v);
	}
	closedir(d);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	/* main, spawner, control, console, blk-uring, two vCPUs at least */
	ck_assert_int_ge(threads, 7);
	close(fd);
	unlink(log);
	unlink(img);
}
END_TEST

/* Whether the file holds needle at least n times. */
static bool file_has(const char *path, const char *needle, int n)
{
	static char buf[1 << 16];
	int fd = open(path, O_RDONLY | O_CLOEXEC), k = 0;
	ssize_t len = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	buf[len > 0 ? len : 0] = 0;
	for (char *p = buf; (p = strstr(p, needle)); p++)
		k++;
	return k >= n;
}

static bool wait_file_has(const char *path, const char *needle, int n)
{
	for (int i = 0; i < 400; i++) {
		if (file_has(path, needle, n))
			return true;
		usleep(50 * 1000);
	}
	return false;
}

/* After --user nobody, a guest reboot builds the VM again from what the
 * first boot opened: a differencing VHD and its parent, and the serial file,
 * all root's, in a folder nobody may not even enter. */
START_TEST(user_nobody_reboots)
{
	char dir[] = "/tmp/kestrel-sandbox-dir-XXXXXX", base[96], child[96], serial[96], disk[128],
	     name[48], serial_arg[128];
	pid_t pid;
	int status;

	if (!have_kvm())
		return;
	if (geteuid() != 0) {
		printf("SKIP: %s: needs root to switch to nobody\n", tcase_name());
		return;
	}
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(base, sizeof(base), "%s/base.vhd", dir);
	snprintf(child, sizeof(child), "%s/child.vhd", dir);
	snprintf(serial, sizeof(serial), "%s/serial.txt", dir);
	snprintf(disk, sizeof(disk), "path=%s,bus=scsi", child);
	snprintf(serial_arg, sizeof(serial_arg), "file:%s", serial);
	snprintf(name, sizeof(name), "sbx-reboot-%d", (int)getpid());
	ck_assert_int_eq(KESTREL("vhd", "create", "-q", "--type", "dynamic", "--size", "8M", base),
			 0);
	ck_assert_int_eq(KESTREL("vhd", "create", "-q", "--type", "diff", "--parent", base, child),
			 0);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 1);
		dup2(null, 2);
		execl(KESTREL_BIN, KESTREL_BIN, "run", "--user", "nobody", "--name", name,
		      "--kernel", KESTREL_BINARY_DIR "/tests/guest/counter.bin", "--cmdline",
		      "period_ms=50", "--disk", disk, "--serial", serial_arg, "--timeout", "60s",
		      (char *)NULL);
		_exit(127);
	}
	ck_assert_msg(wait_file_has(serial, "counter: 3", 1), "the guest never counted");
	ck_assert_int_eq(KESTREL("ctl", name, "reset"), 0);
	ck_assert_msg(wait_file_has(serial, "counter: start", 2), "the guest did not boot again");
	ck_assert_msg(wait_file_has(serial, "counter: 3", 2), "the second boot did not count");
	ck_assert_int_eq(KESTREL("ctl", name, "stop"), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	KESTREL("list"); /* removes the socket nobody could not */
	unlink(serial);
	unlink(child);
	unlink(base);
	rmdir(dir);
}
END_TEST

/* --landlock: after the seal a file may be opened only in the folders of the
 * VM's disks (disk-add there works, elsewhere it is refused) and in
 * /proc/self (stats); a reboot still works. */
START_TEST(landlock_keeps_disk_add_to_the_disks_folders)
{
	char d1[] = "/tmp/kestrel-sandbox-ll1-XXXXXX", d2[] = "/tmp/kestrel-sandbox-ll2-XXXXXX";
	char a[96], b[96], c[96], disk[128], name[48];
	pid_t pid;
	int status;

	if (!have_kvm())
		return;
	if (syscall(SYS_landlock_create_ruleset, NULL, 0, 1 /* VERSION */) < 1) {
		printf("SKIP: %s: no Landlock in this kernel\n", tcase_name());
		return;
	}
	if (sanitizer_build) {
		/* Each thread's domain is its own: LeakSanitizer's child cannot
		 * ptrace them at exit, and ASan's report file is out of reach. */
		printf("SKIP: %s: Landlock and the sanitizers' exit checks do not mix\n",
		       tcase_name());
		return;
	}
	ck_assert_ptr_nonnull(mkdtemp(d1));
	ck_assert_ptr_nonnull(mkdtemp(d2));
	snprintf(a, sizeof(a), "%s/a.img", d1);
	snprintf(b, sizeof(b), "%s/b.img", d1);
	snprintf(c, sizeof(c), "%s/c.img", d2);
	for (const char *f = a; f; f = f == a ? b : f == b ? c : NULL) {
		int fd = open(f, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(ftruncate(fd, 8 << 20), 0);
		close(fd);
	}
	snprintf(disk, sizeof(disk), "path=%s,bus=scsi", a);
	snprintf(name, sizeof(name), "sbx-landlock-%d", (int)getpid());
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 1);
		dup2(null, 2);
		execl(KESTREL_BIN, KESTREL_BIN, "run", "--landlock", "--name", name, "--kernel",
		      KESTREL_BINARY_DIR "/tests/guest/counter.bin", "--cmdline", "period_ms=50",
		      "--disk", disk, "--timeout", "60s", (char *)NULL);
		_exit(127);
	}
	/* Running, not only listening: on a loaded host the socket can answer
	 * before the first boot is done. */
	for (int i = 0; i < 400; i++) {
		if (KESTREL("ctl", name, "query-status") == 0 && strstr(outb, "state: running"))
			break;
		usleep(50 * 1000);
	}
	ck_assert_msg(strstr(outb, "state: running"), "%s%s", outb, errb);
	ck_assert_msg(KESTREL("ctl", name, "disk-add", b) == 0, "disk-add %s: %s%s", b, outb, errb);
	ck_assert_int_ne(KESTREL("ctl", name, "disk-add", c), 0);
	ck_assert_msg(strstr(errb, "Permission denied"), "%s", errb);
	ck_assert_int_eq(KESTREL("ctl", name, "stats", "--json"), 0);
	ck_assert_msg(strstr(outb, "\"rss_kb\":") && !strstr(outb, "\"rss_kb\":0"), "%s", outb);
	ck_assert_int_eq(KESTREL("ctl", name, "reset"), 0);
	for (int i = 0; i < 200; i++) {
		if (KESTREL("ctl", name, "query-status") == 0 && strstr(outb, "boots: 2"))
			break;
		usleep(50 * 1000);
	}
	ck_assert_msg(strstr(outb, "boots: 2"), "%s", outb);
	ck_assert_int_eq(KESTREL("ctl", name, "stop"), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	KESTREL("list"); /* removes the socket Landlock kept the worker from removing */
	unlink(a);
	unlink(b);
	unlink(c);
	rmdir(d1);
	rmdir(d2);
}
END_TEST

static Suite *sandbox_suite(void)
{
	Suite *s = suite_create("sandbox");

	ADD_TCASE(s, "filters", NULL, NULL, 0, every_kind_traps_execve,
		  every_kind_runs_the_c_library, no_kind_makes_executable_memory,
		  ioctl_by_request_number, opening_files, sockets_are_notify_datagrams,
		  signals_stay_in_the_process, only_the_spawner_clones_and_only_threads,
		  the_spawner_covers_every_kind, uring_rings_take_only_the_engine_opcodes);
	ADD_TCASE(s, "worker", NULL, NULL, 300, bad_flags, device_thread_off_its_list,
		  first_boot_threads_off_their_list, user_nobody_while_the_guest_runs,
		  user_nobody_reboots, landlock_keeps_disk_add_to_the_disks_folders);
	return s;
}

int main(void)
{
	return run_suite(sandbox_suite());
}
