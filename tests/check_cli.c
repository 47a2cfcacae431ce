/* The kestrel binary's user-facing errors: bad flags, files and configs exit 2
 * with one line naming what and where, before any VM starts. No KVM needed. */
#include <check.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_util.h"

static char out[8192], errb[8192];
static char tmpdir[] = "/tmp/kestrel-cli-XXXXXX";
static char junk_kernel[256], mb_kernel[256];
static bool journal_stderr; /* the child's stderr is announced as a journal stream */

/* Run kestrel with argv (NULL-terminated), optional address-space limit. */
static int run_kestrel_limited(rlim_t as_limit, const char *const *argv)
{
	int po[2], pe[2];
	pid_t pid;

	pid = child_fork(po, pe);
	if (pid == 0) {
		const char *args[32];

		child_argv(args, sizeof(args) / sizeof(args[0]), KESTREL_BIN, argv);
		if (as_limit) {
			struct rlimit rl = { as_limit, as_limit };

			setrlimit(RLIMIT_AS, &rl);
		}
		unsetenv("JOURNAL_STREAM");
		if (journal_stderr) {
			struct stat st;
			char v[64];

			fstat(2, &st);
			snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
				 (unsigned long long)st.st_ino);
			setenv("JOURNAL_STREAM", v, 1);
		}
		execv(KESTREL_BIN, (char *const *)args);
		_exit(127);
	}
	return child_collect(pid, po, pe, out, sizeof(out), errb, sizeof(errb));
}

#define KESTREL(...) run_kestrel_limited(0, (const char *const[]){ __VA_ARGS__, NULL })

static int lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Usage errors: exit 2, exactly one line on stderr containing `needle`. */
static void assert_usage_error(int rc, const char *needle)
{
	ck_assert_msg(rc == 2, "exit %d, stderr: %s", rc, errb);
	ck_assert_msg(lines(errb) == 1, "want one line, got: %s", errb);
	ck_assert_msg(strstr(errb, needle) != NULL, "'%s' not in: %s", needle, errb);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void setup(void)
{
	uint32_t mb[8] = { 0x1BADB002, 0x00010000, 0, 0x100000, 0x100000, 0, 0, 0x100020 };
	char junk[4096];

	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(junk_kernel, sizeof(junk_kernel), "%s/junk", tmpdir);
	snprintf(mb_kernel, sizeof(mb_kernel), "%s/mb.bin", tmpdir);
	memset(junk, 0x5a, sizeof(junk));
	write_bytes(junk_kernel, junk, sizeof(junk));
	mb[2] = -(mb[0] + mb[1]);
	write_bytes(mb_kernel, mb, sizeof(mb));
}

static void teardown(void)
{
	unlink(junk_kernel);
	unlink(mb_kernel);
	rmdir(tmpdir);
	strcpy(tmpdir, "/tmp/kestrel-cli-XXXXXX");
}

START_TEST(version_and_help)
{
	ck_assert_int_eq(KESTREL("--version"), 0);
	ck_assert_ptr_nonnull(strstr(out, "kestrel "));
	ck_assert_int_eq(KESTREL("help", "run"), 0);
	ck_assert_ptr_nonnull(strstr(out, "--kernel"));
	ck_assert_ptr_nonnull(strstr(out, "--cpus"));
	ck_assert_ptr_nonnull(strstr(out, "--scsi-controller"));
	ck_assert_ptr_nonnull(strstr(out, "--debug-exit"));
	ck_assert_int_eq(KESTREL("run", "--help"), 0);
	ck_assert_ptr_nonnull(strstr(out, "--mem"));
}
END_TEST

START_TEST(no_command)
{
	ck_assert_int_eq(KESTREL("frobnicate"), 2);
	ck_assert_int_eq(run_kestrel_limited(0, (const char *const[]){ NULL }), 2);
}
END_TEST

START_TEST(bad_flags)
{
	assert_usage_error(KESTREL("run", "--kernel", mb_kernel, "--cpus", "0"), "--cpus");
	assert_usage_error(KESTREL("run", "--kernel", mb_kernel, "--cpus", "65"), "--cpus");
	assert_usage_error(KESTREL("run", "--kernel", mb_kernel, "--cpus", "two"), "--cpus");
	assert_usage_error(KESTREL("run", "--kernel", mb_kernel, "--mem", "12Q"), "--mem");
	assert_usage_error(KESTREL("run", "--kernel", mb_kernel, "--bogus"), "--bogus");
	assert_usage_error(KESTREL("run", "--kernel", mb_kernel, "--serial", "tcp:1"), "--serial");
	assert_usage_error(KESTREL("run", "--kernel", mb_kernel, "--boot-entry", "16"),
			   "--boot-entry");
	assert_usage_error(KESTREL("run", "--kernel", mb_kernel, "--scsi-controller=maybe"),
			   "--scsi-controller");
	assert_usage_error(KESTREL("run", "--kernel", mb_kernel, "--debug-exit=0xf4"),
			   "--debug-exit");
	assert_usage_error(KESTREL("run", "--kernel"), "--kernel");
	/* Without --kernel the VM boots firmware; what cannot go with it is refused. */
	assert_usage_error(KESTREL("run", "--firmware", "/nonexistent/fw.bin"), "--firmware");
	assert_usage_error(KESTREL("run", "--firmware", mb_kernel), "not a firmware image size");
	assert_usage_error(KESTREL("run", "--kernel", mb_kernel, "--firmware", "bios"),
			   "--firmware");
	assert_usage_error(KESTREL("run", "--initrd", mb_kernel), "--initrd: needs --kernel");
	assert_usage_error(KESTREL("run", "--boot", "floppy"), "--boot");
}
END_TEST

START_TEST(bad_files)
{
	assert_usage_error(KESTREL("run", "--kernel", "/nonexistent/bzImage"),
			   "/nonexistent/bzImage");
	assert_usage_error(KESTREL("run", "--kernel", mb_kernel, "--initrd", "/nonexistent/initrd"),
			   "/nonexistent/initrd");
	/* A file that is no kernel at all is refused before any VM is created. */
	assert_usage_error(KESTREL("run", "--kernel", junk_kernel), "not a bzImage");
	assert_usage_error(KESTREL("run", "--config", "/nonexistent/vm.json"),
			   "/nonexistent/vm.json");
}
END_TEST

/* Under systemd (JOURNAL_STREAM names stderr) each line carries its syslog
 * priority for the journal; anywhere else it does not. */
START_TEST(journal_priorities)
{
	journal_stderr = true;
	ck_assert_int_eq(KESTREL("run", "--kernel", "/nonexistent/bzImage"), 2);
	journal_stderr = false;
	ck_assert_msg(strncmp(errb, "<3>kestrel: error: ", 19) == 0, "stderr: %s", errb);
	ck_assert_int_eq(KESTREL("run", "--kernel", "/nonexistent/bzImage"), 2);
	ck_assert_msg(strncmp(errb, "kestrel: error: ", 16) == 0, "stderr: %s", errb);
}
END_TEST

START_TEST(bad_json)
{
	char path[300], text[400];

	snprintf(path, sizeof(path), "%s/vm.json", tmpdir);
	write_bytes(path, "{ \"kernel\": \"x\", \"cpus\": }", 26);
	assert_usage_error(KESTREL("run", "--config", path), "vm.json");
	write_bytes(path, "{ \"cpuz\": 2 }", 13);
	assert_usage_error(KESTREL("run", "--config", path), "cpuz");
	snprintf(text, sizeof(text), "{ \"kernel\": \"%s\", \"scsi_controller\": \"yes\" }",
		 mb_kernel);
	write_bytes(path, text, strlen(text));
	assert_usage_error(KESTREL("run", "--config", path),
			   "\"scsi_controller\": expected true or false, got a string");
	unlink(path);
}
END_TEST

/* Not under ASan: its shadow memory alone needs terabytes of address space,
 * so a worker under RLIMIT_AS dies before it gets to --mem. */
#ifndef __SANITIZE_ADDRESS__
START_TEST(mem_beyond_host)
{
	/* The host cannot map 8 GiB within a 1 GiB address-space limit. */
	assert_usage_error(run_kestrel_limited(1ULL << 30,
					       (const char *const[]){ "run", "--kernel", mb_kernel,
								      "--mem", "8G", NULL }),
			   "--mem");
}
END_TEST
#endif

int main(void)
{
	Suite *s = suite_create("cli");
	TCase *tc;

	tc = ADD_TCASE(s, "errors", setup, teardown, 0, version_and_help, no_command, bad_flags,
		       bad_files, bad_json, journal_priorities);
#ifndef __SANITIZE_ADDRESS__
	tcase_add_test(tc, mem_beyond_host);
#else
	(void)tc;
#endif
	return run_suite(s);
}
