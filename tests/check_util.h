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
 * a timeout in seconds (0: Check's default) and the n tests, in order. */
static UNUSED_FN void add_tcase(Suite *s, const char *name, SFun setup, SFun teardown, double timeout,
				const TTest *const *tests, size_t n)
{
	TCase *tc = tcase_create(name);

	if (setup || teardown)
		tcase_add_checked_fixture(tc, setup, teardown);
	if (timeout > 0)
		tcase_set_timeout(tc, timeout);
	for (size_t i = 0; i < n; i++)
		tcase_add_test(tc, tests[i]);
	suite_add_tcase(s, tc);
}

/* ADD_TCASE(s, "name", setup, teardown, timeout, test_a, test_b, ...) */
#define ADD_TCASE(s, name, setup, teardown, timeout, ...)                                      \
	do {                                                                                   \
		const TTest *tests_[] = { __VA_ARGS__ };                                       \
		add_tcase(s, name, setup, teardown, timeout, tests_, sizeof(tests_) / sizeof(tests_[0])); \
	} while (0)

/* mkdtemp(3) on tmpl ("...XXXXXX"); a suite cannot run without it. */
static UNUSED_FN void make_tmpdir(char *tmpl)
{
	if (!mkdtemp(tmpl)) {
		perror(tmpl);
		exit(1);
	}
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

	if (!f || (size && (fseek(f, (long)size - 1, SEEK_SET) || fputc(0, f) == EOF)) || fclose(f)) {
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

#endif
