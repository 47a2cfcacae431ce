/* What every Check suite shares: running its Suite, a scratch directory and
 * the files the tests put there, and reading a child's output. Header-only
 * like fake_board.h: CMake builds each tests/check_*.c as its own program
 * from a glob, so a shared .c file there would be taken for a suite. */
#ifndef KESTREL_TEST_CHECK_UTIL_H
#define KESTREL_TEST_CHECK_UTIL_H

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define UNUSED_FN __attribute__((unused))

/* Run every test of s (forked, as CK_NORMAL does); 1 if any failed. */
static UNUSED_FN int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

/* Add to s a TCase called name with the fixture setup/teardown (NULL: none),
 * a timeout in seconds (0: Check's default) and the n tests, in order; returns
 * it, for the loop tests a few suites add after. */
static UNUSED_FN TCase *add_tcase(Suite *s, const char *name, SFun setup, SFun teardown,
				  double timeout, const TTest *const *tests, size_t n)
{
	TCase *tc = tcase_create(name);

	if (setup || teardown)
		tcase_add_checked_fixture(tc, setup, teardown);
	if (timeout > 0)
		tcase_set_timeout(tc, timeout);
	for (size_t i = 0; i < n; i++)
		tcase_add_test(tc, tests[i]);
	suite_add_tcase(s, tc);
	return tc;
}

#define TTESTS_(...) ((const TTest *const[]){ __VA_ARGS__ })

/* ADD_TCASE(s, "name", setup, teardown, timeout, test_a, test_b, ...): an
 * expression, the TCase. */
#define ADD_TCASE(s, name, setup, teardown, timeout, ...)                  \
	add_tcase(s, name, setup, teardown, timeout, TTESTS_(__VA_ARGS__), \
		  sizeof(TTESTS_(__VA_ARGS__)) / sizeof(const TTest *))

/* The main() of a suite that is one TCase: SUITE_MAIN("suite", "tcase", setup,
 * teardown, timeout, test_a, test_b, ...) runs them (as ADD_TCASE adds them)
 * and exits 1 if any failed. */
#define SUITE_MAIN(suite, tcase, setup, teardown, timeout, ...)             \
	int main(void)                                                      \
	{                                                                   \
		Suite *s = suite_create(suite);                             \
                                                                            \
		ADD_TCASE(s, tcase, setup, teardown, timeout, __VA_ARGS__); \
		return run_suite(s);                                        \
	}

/* mkdtemp(3) on tmpl ("...XXXXXX"); a suite cannot run without it. */
static UNUSED_FN void make_tmpdir(char *tmpl)
{
	if (!mkdtemp(tmpl)) {
		perror(tmpl);
		exit(1);
	}
}

/* dir/name in one of eight rotating buffers (for a suite's temp files). */
static UNUSED_FN const char *tmp_join(const char *dir, const char *name)
{
	static char bufs[8][512];
	static int k;
	char *p = bufs[k++ % 8];

	snprintf(p, 512, "%s/%s", dir, name);
	return p;
}

static UNUSED_FN int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Remove dir and everything below it (links are removed, not followed). */
static UNUSED_FN void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A file of size bytes, all zero (sparse); aborts on any error. */
static UNUSED_FN void write_file(const char *path, size_t size)
{
	FILE *f = fopen(path, "w");

	if (!f || (size && (fseek(f, (long)size - 1, SEEK_SET) || fputc(0, f) == EOF)) ||
	    fclose(f)) {
		perror(path);
		abort();
	}
}

/* A file holding text; aborts on any error. */
static UNUSED_FN void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f)) {
		perror(path);
		abort();
	}
}

/* Read fd to its end (or until buf is full) into buf, NUL-terminated;
 * returns the bytes read. */
static UNUSED_FN size_t slurp(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	ssize_t r;

	while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = 0;
	return n;
}

/* args = { bin, argv... , NULL } for execv, at most cap - 2 of argv. */
static UNUSED_FN void child_argv(const char **args, size_t cap, const char *bin,
				 const char *const *argv)
{
	size_t i;

	args[0] = bin;
	for (i = 0; argv[i] && i < cap - 2; i++)
		args[i + 1] = argv[i];
	args[i + 1] = NULL;
}

/* Fork with two new pipes, po and pe; the child (0 returned) has its stdout
 * on po and its stderr on pe. The parent follows with child_collect. */
static UNUSED_FN pid_t child_fork(int po[2], int pe[2])
{
	pid_t pid;

	ck_assert_int_eq(pipe(po), 0);
	ck_assert_int_eq(pipe(pe), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		close(po[0]);
		close(pe[0]);
	}
	return pid;
}

/* The parent's half of running child pid with its stdout on pipe po and its
 * stderr on pipe pe: close the write ends, read both to their end into out
 * and err (NUL-terminated), reap it. Its exit status, or 128 + the signal
 * that killed it. */
static UNUSED_FN int child_collect(pid_t pid, int po[2], int pe[2], char *out, size_t out_cap,
				   char *err, size_t err_cap)
{
	int status;

	close(po[1]);
	close(pe[1]);
	slurp(po[0], out, out_cap);
	slurp(pe[0], err, err_cap);
	close(po[0]);
	close(pe[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#endif
