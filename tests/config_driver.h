/* Drives the run command's parser the way the CLI does, for the config
 * suites: run(ARGS..., NULL) parses and validates "run PREFIX ARGS..." into
 * the suite's config c and leaves the first error in err, which expect_err()
 * then checks is one line naming what went wrong. A suite sets run_prefix
 * (e.g. to "--kernel", a kernel file) before its tests run. Header-only like
 * check_util.h. */
#ifndef KESTREL_TEST_CONFIG_DRIVER_H
#define KESTREL_TEST_CONFIG_DRIVER_H

#include <check.h>
#include <stdarg.h>
#include <string.h>

#include "kestrel/config.h"
#include "check_util.h"

#define ERRLEN	     512
#define RUN_ARGS_MAX 32

static struct vm_config c;
static char err[ERRLEN];
static const char *run_prefix[4]; /* NULL-terminated: what comes after "run" */

/* Parse and validate "run PREFIX first ..."; returns the first error. */
static UNUSED_FN int run(const char *first, ...)
{
	char *argv[RUN_ARGS_MAX] = { "run" };
	int argc = 1, ret;
	const char *a = first;
	va_list ap;

	for (const char **p = run_prefix; *p; p++)
		argv[argc++] = (char *)*p;
	va_start(ap, first);
	for (; a && argc < RUN_ARGS_MAX - 1; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	config_free(&c);
	config_defaults(&c);
	err[0] = '\0';
	ret = config_parse_run(&c, argc, argv, err, sizeof(err));
	return ret ?: config_validate(&c, err, sizeof(err));
}

static UNUSED_FN void expect_err(const char *needle)
{
	ck_assert_msg(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
	ck_assert_ptr_null(strchr(err, '\n'));
}

/* RUN_FAILS("needle", ARGS...): run(ARGS..., NULL) fails with a one-line
 * error naming needle (a macro, so a failure names the caller's line). */
#define RUN_FAILS(needle, ...)                               \
	do {                                                 \
		ck_assert_int_ne(run(__VA_ARGS__, NULL), 0); \
		expect_err(needle);                          \
	} while (0)

#endif
