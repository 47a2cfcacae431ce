/* runstat: run a command, report wall time from exec to exit (and to the
 * first output line containing a marker), the child's peak RSS and status.
 * Used by the scripts in scripts/bench so kestrel and QEMU are measured the same way.
 *
 * usage: runstat [--marker STR] [--stop-at-marker] [--timeout SEC] -- CMD [ARGS...]
 * --timeout kills the child (SIGKILL) after SEC seconds (status=hung if it
 * still has not exited 10 s later). It is built in rather
 * than `timeout CMD`: busybox's timeout leaves a watcher process holding the
 * output pipe open, so the run would only end at the deadline.
 * prints: elapsed_ms=F marker_ms=F maxrss_kb=N status=N */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static pid_t child;
static volatile sig_atomic_t alarms;

/* First alarm: kill the child. Second, 10 s later: it is still there, stuck
 * in the kernel where SIGKILL cannot reach it (seen with nested KVM in the
 * rig): report it and let the benchmark go on without it. */
static void on_alarm(int sig)
{
	(void)sig;
	if (alarms++ == 0) {
		kill(child, SIGKILL);
		alarm(10);
	}
}

int main(int argc, char **argv)
{
	unsigned timeout_s = 0;
	const char *marker = NULL;
	int stop = 0, i, p[2], status;
	double t0, tm = -1, t1;
	struct rusage ru;
	char win[8192];
	size_t wlen = 0;
	pid_t pid;

	for (i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--marker") && i + 1 < argc)
			marker = argv[++i];
		else if (!strcmp(argv[i], "--stop-at-marker"))
			stop = 1;
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout_s = (unsigned)strtoul(argv[++i], NULL, 10);
	}
	if (i + 1 >= argc) {
		fprintf(stderr,
			"usage: runstat [--marker STR] [--stop-at-marker] [--timeout SEC] -- CMD [ARGS...]\n");
		return 2;
	}
	if (pipe(p))
		return 1;
	t0 = now_ms();
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		execvp(argv[i + 1], argv + i + 1);
		_exit(127);
	}
	close(p[1]);
	child = pid;
	if (timeout_s) {
		/* No SA_RESTART: the alarm must interrupt read() and wait4(). */
		struct sigaction sa = { .sa_handler = on_alarm };

		sigaction(SIGALRM, &sa, NULL);
		alarm(timeout_s);
	}
	for (;;) {
		ssize_t r = read(p[0], win + wlen, sizeof(win) - 1 - wlen);

		if (r < 0 && errno == EINTR && alarms < 2)
			continue;
		if (r <= 0)
			break;
		wlen += r;
		win[wlen] = 0;
		if (marker && tm < 0 && strstr(win, marker)) {
			tm = now_ms();
			if (stop)
				kill(pid, SIGKILL);
		}
		/* Keep a tail so a marker split across reads is still found. */
		if (wlen > sizeof(win) / 2) {
			memmove(win, win + wlen - 256, 256);
			wlen = 256;
		}
	}
	while (alarms < 2 && wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
		;
	if (alarms >= 2) {
		printf("elapsed_ms=%.2f marker_ms=-1.00 maxrss_kb=0 status=hung\n", now_ms() - t0);
		return 0;
	}
	t1 = now_ms();
	alarm(0);
	printf("elapsed_ms=%.2f marker_ms=%.2f maxrss_kb=%ld status=%d\n", t1 - t0,
	       tm < 0 ? -1.0 : tm - t0, ru.ru_maxrss,
	       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	return 0;
}
