/* `kestrel run` configuration: flags, JSON, validation; and util.c's klog,
 * parse_size and read_file. Files live in a temp directory made in main(). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/config.h"
#include "kestrel/cpuid.h"
#include "check_util.h"

#define ERRLEN 512

static char tmpdir[] = "/tmp/kestrel-check-config-XXXXXX";
static char kernel[256], initrd[256], empty[256], subdir[256];

/* A JSON file at dir/name holding text; returns its path (static buffer). */
static const char *json_file(const char *dir, const char *text)
{
	static char path[300];

	snprintf(path, sizeof(path), "%s/vm.json", dir);
	write_text(path, text);
	return path;
}

/* config_parse_run on "run" followed by the NULL-terminated args. */
static int parse_list(struct vm_config *c, char *err, va_list ap)
{
	char *argv[64];
	int argc = 0;
	const char *a;

	argv[argc++] = "run";
	while ((a = va_arg(ap, const char *)) != NULL && argc < 63)
		argv[argc++] = (char *)a;
	argv[argc] = NULL;
	config_defaults(c);
	return config_parse_run(c, argc, argv, err, ERRLEN);
}

static int parse(struct vm_config *c, char *err, ...)
{
	va_list ap;
	int ret;

	va_start(ap, err);
	ret = parse_list(c, err, ap);
	va_end(ap);
	return ret;
}

/* Parsing (and validating, if parsing passed) fails with -EINVAL and a message
 * that contains every string in want (NULL-terminated before the args). */
static void expect_err(const char *want1, const char *want2, ...)
{
	struct vm_config c;
	char err[ERRLEN] = "";
	va_list ap;
	int ret;

	va_start(ap, want2);
	ret = parse_list(&c, err, ap);
	va_end(ap);
	if (ret == 0)
		ret = config_validate(&c, err, sizeof(err));
	ck_assert_msg(ret == -EINVAL, "rc %d, want -EINVAL (err '%s', want '%s')", ret, err, want1);
	ck_assert_msg(strstr(err, want1), "err '%s' lacks '%s'", err, want1);
	if (want2)
		ck_assert_msg(strstr(err, want2), "err '%s' lacks '%s'", err, want2);
	ck_assert_msg(!strchr(err, '\n'), "err '%s' is not one line", err);
	config_free(&c);
}

static void expect_ok(struct vm_config *c, ...)
{
	char err[ERRLEN] = "";
	va_list ap;
	int ret;

	va_start(ap, c);
	ret = parse_list(c, err, ap);
	va_end(ap);
	ck_assert_msg(ret == 0, "parse rc %d: %s", ret, err);
	ret = config_validate(c, err, sizeof(err));
	ck_assert_msg(ret == 0, "validate rc %d: %s", ret, err);
}

/* ---- flags ---- */

START_TEST(test_defaults)
{
	struct vm_config c;
	char name[32];

	config_defaults(&c);
	ck_assert_uint_eq(c.mem_size, MiB(512));
	ck_assert_uint_eq(c.cpus, 1);
	ck_assert_int_eq(c.serial, SERIAL_STDIO);
	ck_assert_int_eq(c.boot_entry, BOOT_ENTRY_AUTO);
	ck_assert_int_eq(c.on_reboot, ON_REBOOT_RESTART);
	ck_assert_uint_eq(c.timeout_ms, 0);
	ck_assert(!c.hugepages && !c.quiet && !c.stats && !c.help && !c.scsi_controller);
	ck_assert(!c.debug_exit);
	ck_assert_ptr_null(c.kernel);
	snprintf(name, sizeof(name), "kestrel-%d", (int)getpid());
	ck_assert_str_eq(c.name, name);
	config_free(&c);
	config_free(&c); /* idempotent */
}
END_TEST

static void check_full(const struct vm_config *c)
{
	ck_assert_str_eq(c->kernel, kernel);
	ck_assert_str_eq(c->initrd, initrd);
	ck_assert_str_eq(c->cmdline, "console=ttyS0 quiet");
	ck_assert_uint_eq(c->mem_size, GiB(1));
	ck_assert_uint_eq(c->cpus, 4);
	ck_assert_int_eq(c->serial, SERIAL_NONE);
	ck_assert_str_eq(c->name, "vm-1.test_x");
	ck_assert_int_eq(c->boot_entry, BOOT_ENTRY_32);
	ck_assert_int_eq(c->on_reboot, ON_REBOOT_EXIT);
	ck_assert(c->hugepages && c->quiet && c->stats && !c->help);
	ck_assert_uint_eq(c->timeout_ms, 300000);
}

START_TEST(test_flags_space_form)
{
	struct vm_config c;

	expect_ok(&c, "--kernel", kernel, "--initrd", initrd, "--cmdline", "console=ttyS0 quiet",
		  "--mem", "1G", "--cpus", "4", "--serial", "none", "--name", "vm-1.test_x",
		  "--boot-entry", "32", "--on-reboot", "exit", "--hugepages", "--quiet", "--stats",
		  "--timeout", "5m", NULL);
	check_full(&c);
	config_free(&c);
}
END_TEST

START_TEST(test_flags_equals_form)
{
	char k[300], i[300];
	struct vm_config c;

	snprintf(k, sizeof(k), "--kernel=%s", kernel);
	snprintf(i, sizeof(i), "--initrd=%s", initrd);
	expect_ok(&c, k, i, "--cmdline=console=ttyS0 quiet", "--mem=1024", "--cpus=4",
		  "--serial=none", "--name=vm-1.test_x", "--boot-entry=32", "--on-reboot=exit",
		  "--hugepages=true", "--quiet=yes", "--stats=1", "--timeout=300", NULL);
	check_full(&c);
	config_free(&c);
}
END_TEST

START_TEST(test_switch_values)
{
	struct vm_config c;

	expect_ok(&c, "--kernel", kernel, "--hugepages=off", "--quiet=FALSE", "--stats=no", NULL);
	ck_assert(!c.hugepages && !c.quiet && !c.stats);
	config_free(&c);
	expect_err("--quiet", "not a boolean", "--kernel", kernel, "--quiet=maybe", NULL);
}
END_TEST

/* A switch (the bool at offset field of struct vm_config): off by default,
 * on with --FLAG, also given twice as =yes and bare, off with =off. */
static void expect_switch(const char *flag, size_t field)
{
	char bare[64], yes[64], off[64];
	struct vm_config c;

	snprintf(bare, sizeof(bare), "--%s", flag);
	snprintf(yes, sizeof(yes), "--%s=yes", flag);
	snprintf(off, sizeof(off), "--%s=off", flag);
	expect_ok(&c, "--kernel", kernel, NULL);
	ck_assert(!*(bool *)((char *)&c + field));
	config_free(&c);
	expect_ok(&c, "--kernel", kernel, bare, NULL);
	ck_assert(*(bool *)((char *)&c + field));
	config_free(&c);
	expect_ok(&c, yes, "--kernel", kernel, bare, NULL);
	ck_assert(*(bool *)((char *)&c + field));
	config_free(&c);
	expect_ok(&c, "--kernel", kernel, off, NULL);
	ck_assert(!*(bool *)((char *)&c + field));
	config_free(&c);
}

/* An empty SCSI controller for disk-add (docs/control.md): a switch like
 * --stats, off by default, repeatable only with the same meaning. */
START_TEST(test_scsi_controller_flag)
{
	expect_switch("scsi-controller", offsetof(struct vm_config, scsi_controller));
	expect_err("--scsi-controller", "not a boolean", "--kernel", kernel,
		   "--scsi-controller=maybe", NULL);
	expect_err("--scsi-controller", "('true' and 'false')", "--kernel", kernel,
		   "--scsi-controller", "--scsi-controller=false", NULL);
	expect_err("--scsi-controler", "did you mean --scsi-controller?", "--kernel", kernel,
		   "--scsi-controler", NULL);
}
END_TEST

/* --vga std[,mem=SIZE][,rom=FILE|none] | none, --display none; JSON the same. */
START_TEST(test_vga_flags)
{
	struct vm_config c;
	char spec[300];
	const char *path;

	expect_ok(&c, "--kernel", kernel, NULL);
	ck_assert_int_eq(c.vga, CONFIG_VGA_NONE); /* a direct kernel boot: no VGA unless asked */
	ck_assert_int_eq(c.display, CONFIG_DISPLAY_DEFAULT);
	config_free(&c);
	expect_ok(&c, "--kernel", kernel, "--vga", "std", "--display", "none", NULL);
	ck_assert_int_eq(c.vga, CONFIG_VGA_STD);
	ck_assert_uint_eq(c.vga_mem, MiB(16));
	ck_assert_ptr_null(c.vga_rom);
	ck_assert_int_eq(c.display, CONFIG_DISPLAY_NONE);
	config_free(&c);
	snprintf(spec, sizeof(spec), "std,mem=64M,rom=%s", initrd);
	expect_ok(&c, "--kernel", kernel, "--vga", spec, "--vga", spec, NULL);
	ck_assert_uint_eq(c.vga_mem, MiB(64));
	ck_assert_str_eq(c.vga_rom, initrd);
	config_free(&c);
	expect_ok(&c, "--kernel", kernel, "--vga=std,rom=none", NULL);
	ck_assert_str_eq(c.vga_rom, "none");
	config_free(&c);
	expect_ok(&c, "--kernel", kernel, "--vga", "none", NULL);
	ck_assert_int_eq(c.vga, CONFIG_VGA_NONE);
	config_free(&c);
	expect_err("--vga", "not a VGA", "--kernel", kernel, "--vga", "cirrus", NULL);
	expect_err("--vga", "mem=3M: not a power of two", "--kernel", kernel, "--vga", "std,mem=3M",
		   NULL);
	expect_err("--vga", "mem=512M", "--kernel", kernel, "--vga", "std,mem=512M", NULL);
	expect_err("--vga", "unknown option", "--kernel", kernel, "--vga", "std,vram=1M", NULL);
	expect_err("--vga", "expected key=value", "--kernel", kernel, "--vga", "std,big", NULL);
	expect_err("--vga", "rom=/nonexistent.bin", "--kernel", kernel, "--vga",
		   "std,rom=/nonexistent.bin", NULL);
	expect_err("--vga", "not a file", "--kernel", kernel, "--vga", "std,rom=/tmp", NULL);
	expect_err("--vga", "not a file", "--kernel", kernel, "--vga",
		   (snprintf(spec, sizeof(spec), "std,rom=%s", empty), spec), NULL);
	expect_err("--vga", "given twice", "--kernel", kernel, "--vga", "std", "--vga", "none",
		   NULL);
	expect_err("--display", "not a display", "--kernel", kernel, "--display", "vnc", NULL);
	/* JSON: the same strings; a flag replaces the file's whole value. */
	path = json_file(tmpdir, "{\"vga\": \"std,mem=32M,rom=none\", \"display\": \"none\"}");
	expect_ok(&c, "--kernel", kernel, "--config", path, NULL);
	ck_assert_uint_eq(c.vga_mem, MiB(32));
	ck_assert_int_eq(c.display, CONFIG_DISPLAY_NONE);
	config_free(&c);
	expect_ok(&c, "--kernel", kernel, "--config", path, "--vga", "std", NULL);
	ck_assert_uint_eq(c.vga_mem, MiB(16));
	ck_assert_ptr_null(c.vga_rom);
	config_free(&c);
}
END_TEST

START_TEST(test_cmdline_values)
{
	static char big[CONFIG_CMDLINE_MAX + 2];
	struct vm_config c;

	expect_ok(&c, "--kernel", kernel, "--cmdline=", NULL);
	ck_assert_str_eq(c.cmdline, "");
	config_free(&c);
	/* A value that merely starts with a dash is still a value. */
	expect_ok(&c, "--kernel", kernel, "--cmdline", "-- init-arg", NULL);
	ck_assert_str_eq(c.cmdline, "-- init-arg");
	config_free(&c);
	memset(big, 'a', CONFIG_CMDLINE_MAX);
	expect_ok(&c, "--kernel", kernel, "--cmdline", big, NULL);
	ck_assert_uint_eq(strlen(c.cmdline), CONFIG_CMDLINE_MAX);
	config_free(&c);
	big[CONFIG_CMDLINE_MAX] = 'a';
	expect_err("--cmdline", "65536 bytes", "--kernel", kernel, "--cmdline", big, NULL);
}
END_TEST

static const struct {
	const char *in;
	uint64_t want;
} mem_good[] = {
	{ "512M", MiB(512) },	  { "1024", GiB(1) },
	{ "4G", GiB(4) },	  { "2g", GiB(2) },
	{ "1GiB", GiB(1) },	  { "1gb", GiB(1) },
	{ "16M", MiB(16) },	  { "16", MiB(16) },
	{ "17M", MiB(18) },	  { "16385K", MiB(18) },
	{ "1T", GiB(1024) },	  { "1048576K", GiB(1) },
	{ "1048576", GiB(1024) }, { "1099511627776B", GiB(1024) },
};

START_TEST(test_mem_good)
{
	struct vm_config c;
	char err[ERRLEN];
	int ret;

	ret = parse(&c, err, "--mem", mem_good[_i].in, NULL);
	ck_assert_msg(ret == 0, "%s: %s", mem_good[_i].in, err);
	ck_assert_msg(c.mem_size == mem_good[_i].want, "%s: got %llu", mem_good[_i].in,
		      (unsigned long long)c.mem_size);
	config_free(&c);
}
END_TEST

static const struct {
	const char *in, *why;
} mem_bad[] = {
	{ "12Q", "not a size (use e.g. 512M" },
	{ "1.5G", "whole numbers" },
	{ "8M", "below the minimum of 16M" },
	{ "15", "below" },
	{ "0", "below" },
	{ "2T", "above the maximum of 1T" },
	{ "20000000T", "above" },
	{ "99999999999999999999999", "above" },
	{ "1048577", "above" },
	{ "", "not a size" },
	{ "-1G", "not a size" },
	{ "M", "not a size" },
	{ " 1G", "not a size" },
	{ "1G ", "not a size" },
	{ "1GG", "not a size" },
	{ "0x100M", "not a size" },
};

START_TEST(test_mem_bad)
{
	expect_err("--mem: ", mem_bad[_i].why, "--kernel", kernel, "--mem", mem_bad[_i].in, NULL);
}
END_TEST

START_TEST(test_cpus)
{
	struct vm_config c;

	expect_ok(&c, "--kernel", kernel, "--cpus", "64", NULL);
	ck_assert_uint_eq(c.cpus, 64);
	config_free(&c);
	expect_err("--cpus", "out of range", "--kernel", kernel, "--cpus", "0", NULL);
	expect_err("--cpus", "out of range", "--kernel", kernel, "--cpus", "65", NULL);
	expect_err("--cpus", "out of range", "--kernel", kernel, "--cpus", "99999999999999999999",
		   NULL);
	expect_err("--cpus", "not a number", "--kernel", kernel, "--cpus", "two", NULL);
	expect_err("--cpus", "not a number", "--kernel", kernel, "--cpus", "-1", NULL);
	expect_err("--cpus", "not a number", "--kernel", kernel, "--cpus=", NULL);
	expect_err("--cpus", "not a number", "--kernel", kernel, "--cpus", "1.5", NULL);
}
END_TEST

START_TEST(test_cpu_model)
{
	const char *path;
	struct vm_config c;

	expect_ok(&c, "--kernel", kernel, NULL);
	ck_assert_ptr_null(c.cpu); /* host */
	config_free(&c);
	expect_ok(&c, "--kernel", kernel, "--cpu", "compat", NULL);
	ck_assert_ptr_eq(c.cpu, cpu_model_find("compat"));
	config_free(&c);
	expect_ok(&c, "--kernel", kernel, "--cpu=x86-64-v3", "--cpu", "x86-64-v3", NULL);
	ck_assert_str_eq(cpu_model_name(c.cpu), "x86-64-v3");
	config_free(&c);
	path = json_file(tmpdir, "{\"cpu\": \"x86-64-v1\"}");
	expect_ok(&c, "--config", path, "--kernel", kernel, NULL);
	ck_assert_str_eq(cpu_model_name(c.cpu), "x86-64-v1");
	config_free(&c);
	expect_ok(&c, "--config", path, "--kernel", kernel, "--cpu", "host", NULL);
	ck_assert(cpu_model_is_host(c.cpu));
	config_free(&c);
	expect_err("--cpu: 'skylake' is not a CPU model", "x86-64-v4", "--kernel", kernel, "--cpu",
		   "skylake", NULL);
	expect_err("--cpu: 'Host' is not", NULL, "--kernel", kernel, "--cpu", "Host", NULL);
	expect_err("--cpu: given twice", NULL, "--kernel", kernel, "--cpu", "compat", "--cpu",
		   "host", NULL);
	path = json_file(tmpdir, "{\"cpu\": 3}");
	expect_err("\"cpu\"", NULL, "--config", path, "--kernel", kernel, NULL);
}
END_TEST

START_TEST(test_serial)
{
	char arg[300], want[300];
	struct vm_config c;

	snprintf(arg, sizeof(arg), "file:%s/serial.log", tmpdir);
	snprintf(want, sizeof(want), "%s/serial.log", tmpdir);
	expect_ok(&c, "--kernel", kernel, "--serial", arg, NULL);
	ck_assert_int_eq(c.serial, SERIAL_FILE);
	ck_assert_str_eq(c.serial_path, want);
	config_free(&c);
	expect_ok(&c, "--kernel", kernel, "--serial", "stdio", "--serial=stdio", NULL);
	config_free(&c);
	expect_err("--serial", "given twice", "--kernel", kernel, "--serial", arg, "--serial=none",
		   NULL);
	expect_err("--serial", "not a serial mode", "--kernel", kernel, "--serial", "tcp:1", NULL);
	expect_err("--serial", "empty path", "--kernel", kernel, "--serial", "file:", NULL);
	expect_err("--serial", "No such file or directory", "--kernel", kernel, "--serial",
		   "file:/nonexistent-dir/x/serial.log", NULL);
	snprintf(arg, sizeof(arg), "file:%s", tmpdir);
	expect_err("--serial", "is a directory", "--kernel", kernel, "--serial", arg, NULL);
}
END_TEST

START_TEST(test_name)
{
	char n64[70], n65[70];
	struct vm_config c;

	memset(n64, 'a', 64);
	n64[64] = '\0';
	memset(n65, 'b', 65);
	n65[65] = '\0';
	expect_ok(&c, "--kernel", kernel, "--name", n64, NULL);
	ck_assert_str_eq(c.name, n64);
	config_free(&c);
	expect_err("--name", "not a valid name", "--kernel", kernel, "--name", n65, NULL);
	expect_err("--name", "not a valid name", "--kernel", kernel, "--name", "", NULL);
	expect_err("--name", "not a valid name", "--kernel", kernel, "--name", "a/b", NULL);
	expect_err("--name", "not a valid name", "--kernel", kernel, "--name", "a b", NULL);
	expect_err("--name", "not a valid name", "--kernel", kernel, "--name", "..", NULL);
	expect_err("--name", "not a valid name", "--kernel", kernel, "--name=-x", NULL);
}
END_TEST

START_TEST(test_enums)
{
	struct vm_config c;

	expect_ok(&c, "--kernel", kernel, "--boot-entry", "64", "--on-reboot", "restart", NULL);
	ck_assert_int_eq(c.boot_entry, BOOT_ENTRY_64);
	ck_assert_int_eq(c.on_reboot, ON_REBOOT_RESTART);
	config_free(&c);
	expect_err("--boot-entry", "use auto, 64 or 32", "--kernel", kernel, "--boot-entry", "16",
		   NULL);
	expect_ok(&c, "--kernel", kernel, "--boot-entry", "auto", NULL);
	ck_assert_int_eq(c.boot_entry, BOOT_ENTRY_AUTO);
	config_free(&c);
	expect_err("--on-reboot", "restart or exit", "--kernel", kernel, "--on-reboot=halt", NULL);
}
END_TEST

static const struct {
	const char *in;
	uint64_t ms;
} dur_good[] = {
	{ "60s", 60000 },   { "5m", 300000 },
	{ "1500ms", 1500 }, { "2h", 7200000 },
	{ "60", 60000 },    { "0", 0 },
	{ "3min", 180000 }, { "10S", 10000 },
	{ "007s", 7000 },   { "18446744073709551ms", 18446744073709551ULL },
};
/* clang-format off */
static const char *const dur_bad[] = {
	"", "s", "1.5s", "-1", "5x", "5 s", " 5s", "5ss", "99999999999999999999",
	"18446744073709552s", "5d",
};
/* clang-format on */

START_TEST(test_duration)
{
	uint64_t ms = 42;

	for (size_t i = 0; i < ARRAY_SIZE(dur_good); i++) {
		ck_assert_msg(config_parse_duration(dur_good[i].in, &ms) == 0, "%s",
			      dur_good[i].in);
		ck_assert_msg(ms == dur_good[i].ms, "%s: %llu", dur_good[i].in,
			      (unsigned long long)ms);
	}
	for (size_t i = 0; i < ARRAY_SIZE(dur_bad); i++)
		ck_assert_msg(config_parse_duration(dur_bad[i], &ms) == -EINVAL, "'%s'",
			      dur_bad[i]);
	ck_assert_int_eq(config_parse_duration(NULL, &ms), -EINVAL);
	expect_err("--timeout", "not a duration", "--kernel", kernel, "--timeout", "1.5s", NULL);
	expect_err("--timeout", "not a duration", "--kernel", kernel, "--timeout=soon", NULL);
}
END_TEST

START_TEST(test_arg_errors)
{
	expect_err("--memory: unknown flag", NULL, "--kernel", kernel, "--memory", "1G", NULL);
	expect_err("--kernal: unknown flag", "did you mean --kernel?", "--kernal", kernel, NULL);
	expect_err("-mem: unknown flag", "--mem", "-mem", "1G", NULL);
	expect_err("--: unknown flag", NULL, "--", NULL);
	expect_err("--kernel: missing value", NULL, "--kernel", NULL);
	expect_err("--kernel: missing value", NULL, "--kernel", "--mem", "1G", NULL);
	expect_err("--config: missing value", NULL, "--kernel", kernel, "--config", NULL);
	expect_err("'bzImage'", "unexpected argument", "--kernel", kernel, "bzImage", NULL);
	expect_err("'-'", "unexpected argument", "--kernel", kernel, "-", NULL);
	/* Without --kernel the VM boots firmware, which must be there. */
	expect_err("--firmware: /nonexistent/fw.bin: No such file or directory", NULL, "--firmware",
		   "/nonexistent/fw.bin", "--mem", "1G", NULL);
}
END_TEST

START_TEST(test_duplicates)
{
	struct vm_config c;

	expect_ok(&c, "--kernel", kernel, "--mem", "1G", "--mem", "1024", "--mem=1GiB", "--quiet",
		  "--quiet", "--kernel", kernel, NULL);
	ck_assert_uint_eq(c.mem_size, GiB(1));
	config_free(&c);
	expect_err("--mem", "given twice with different values ('1G' and '2G')", "--kernel", kernel,
		   "--mem", "1G", "--mem", "2G", NULL);
	expect_err("--quiet", "('true' and '0')", "--kernel", kernel, "--quiet", "--quiet=0", NULL);
	expect_err("--cpus", "given twice", "--kernel", kernel, "--cpus=1", "--cpus=2", NULL);
	/* The repeat is parsed too: a bad second value is a bad value. */
	expect_err("--cpus", "not a number", "--kernel", kernel, "--cpus=1", "--cpus=x", NULL);
	expect_err("--config", "given twice", "--config", "a.json", "--config=b.json", NULL);
}
END_TEST

START_TEST(test_help)
{
	struct vm_config c;
	char err[ERRLEN];

	ck_assert_int_eq(parse(&c, err, "--mem", "12Q", "--help", NULL), 0);
	ck_assert(c.help);
	config_free(&c);
	ck_assert_int_eq(parse(&c, err, "bogus", "-h", NULL), 0);
	ck_assert(c.help);
	config_free(&c);
	/* "--help" as the value of --config is not a file to read. */
	ck_assert_int_eq(parse(&c, err, "--config", "--help", NULL), 0);
	ck_assert(c.help);
	config_free(&c);
}
END_TEST

START_TEST(test_usage)
{
	static const char *const flags[] = {
		"--kernel FILE",
		"--initrd FILE",
		"--cmdline STR",
		"--mem SIZE",
		"--cpus N",
		"--serial MODE",
		"--name NAME",
		"--boot-entry auto|64|32",
		"--on-reboot restart|exit",
		"--hugepages",
		"--quiet",
		"--stats",
		"--timeout DURATION",
		"--config FILE",
		"--scsi-controller",
		"--debug-exit",
		"--help",
		"default 512M",
		"124",
	};
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(f);
	config_usage_run(f);
	fclose(f);
	for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
		ck_assert_msg(strstr(text, flags[i]), "usage lacks '%s'", flags[i]);
	free(text);
}
END_TEST

/* ---- validation ---- */

START_TEST(test_validate_files)
{
	char fifo[300];

	expect_err("--kernel: /nonexistent/bzImage: No such file or directory", NULL, "--kernel",
		   "/nonexistent/bzImage", NULL);
	expect_err("--kernel", "file is empty", "--kernel", empty, NULL);
	expect_err("--kernel", "is a directory", "--kernel", tmpdir, NULL);
	expect_err("--kernel", "empty path", "--kernel=", NULL);
	expect_err("--initrd", "file is empty", "--kernel", kernel, "--initrd", empty, NULL);
	expect_err("--initrd", "No such file", "--kernel", kernel, "--initrd", "/nonexistent",
		   NULL);
	snprintf(fifo, sizeof(fifo), "%s/fifo", tmpdir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	expect_err("--kernel", "not a regular file", "--kernel", fifo, NULL);
	expect_err("--kernel", "not a regular file", "--kernel", "/dev/null", NULL);
	unlink(fifo);
	if (geteuid() != 0) {
		char unreadable[300];

		snprintf(unreadable, sizeof(unreadable), "%s/unreadable", tmpdir);
		write_text(unreadable, "x");
		chmod(unreadable, 0);
		expect_err("--kernel", "Permission denied", "--kernel", unreadable, NULL);
		unlink(unreadable);
	}
}
END_TEST

START_TEST(test_validate_struct)
{
	struct vm_config c;
	char err[ERRLEN];

	config_defaults(&c);
	c.kernel = strdup(kernel);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
	c.cpus = 0;
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--cpus"));
	c.cpus = 2;
	c.mem_size = MiB(17);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--mem: 17M is not a multiple of 2M"));
	c.mem_size = GiB(2048);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--mem: 2T is above"));
	c.mem_size = MiB(64);
	free(c.name);
	c.name = NULL;
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(c.name); /* the default is filled in */
	free(c.name);
	c.name = strdup("a/b");
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--name"));
	config_free(&c);
}
END_TEST

START_TEST(test_validate_rlimit)
{
#if defined(__SANITIZE_ADDRESS__)
	/* ASan's shadow mappings do not survive a small RLIMIT_AS. */
	return;
#else
	struct rlimit old, rl;
	struct vm_config c;

	ck_assert_int_eq(getrlimit(RLIMIT_AS, &old), 0);
	rl = old;
	rl.rlim_cur = GiB(2);
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < GiB(2))
		return;
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
	expect_ok(&c, "--kernel", kernel, "--mem", "1G", NULL);
	config_free(&c);
	expect_err("--mem", "address-space limit of 2G", "--kernel", kernel, "--mem", "4G", NULL);
	setrlimit(RLIMIT_AS, &old); /* for CK_FORK=no runs */
#endif
}
END_TEST

/* ---- JSON ---- */

START_TEST(test_json_good)
{
	char text[2048], err[ERRLEN];
	struct vm_config c;
	const char *path;

	snprintf(text, sizeof(text),
		 "{\n"
		 "  \"kernel\": \"%s\", \"initrd\": \"%s\",\n"
		 "  \"cmdline\": \"console=ttyS0 quiet\", \"mem\": 1024, \"cpus\": 4,\n"
		 "  \"serial\": \"none\", \"name\": \"vm-1.test_x\", \"boot_entry\": 32,\n"
		 "  \"on_reboot\": \"exit\", \"hugepages\": true, \"quiet\": true,\n"
		 "  \"stats\": true, \"timeout\": \"5m\"\n"
		 "}\n",
		 kernel, initrd);
	path = json_file(tmpdir, text);
	config_defaults(&c);
	ck_assert_msg(config_load_json(&c, path, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
	check_full(&c);
	config_free(&c);

	path = json_file(tmpdir, "{\"mem\": \"2G\", \"boot_entry\": \"64\", \"timeout\": 90,"
				 " \"hugepages\": false}");
	expect_ok(&c, "--config", path, "--kernel", kernel, NULL);
	ck_assert_uint_eq(c.mem_size, GiB(2));
	ck_assert_int_eq(c.boot_entry, BOOT_ENTRY_64);
	ck_assert_uint_eq(c.timeout_ms, 90000);
	ck_assert(!c.hugepages);
	config_free(&c);
}
END_TEST

START_TEST(test_json_relative_paths)
{
	char text[512], want[512], dir_arg[512];
	struct vm_config c;
	const char *path;

	snprintf(want, sizeof(want), "%s/k.bin", subdir);
	write_text(want, "kernel bytes");
	snprintf(text, sizeof(text),
		 "{\"kernel\": \"k.bin\", \"initrd\": \"%s\", "
		 "\"serial\": \"file:out/../serial.log\"}",
		 initrd);
	snprintf(dir_arg, sizeof(dir_arg), "%s/out", subdir);
	mkdir(dir_arg, 0700);
	path = json_file(subdir, text);
	expect_ok(&c, "--config", path, NULL);
	ck_assert_str_eq(c.kernel, want);
	ck_assert_str_eq(c.initrd, initrd); /* absolute: untouched */
	snprintf(want, sizeof(want), "%s/out/../serial.log", subdir);
	ck_assert_str_eq(c.serial_path, want);
	config_free(&c);

	/* A flag's relative path stays relative to the working directory. */
	ck_assert_int_eq(chdir(subdir), 0);
	expect_ok(&c, "--config", "vm.json", "--initrd", "k.bin", NULL);
	ck_assert_str_eq(c.kernel, "k.bin");
	ck_assert_str_eq(c.initrd, "k.bin");
	config_free(&c);
}
END_TEST

START_TEST(test_json_flags_override)
{
	char text[512];
	struct vm_config c;
	const char *path;

	snprintf(text, sizeof(text),
		 "{\"kernel\": \"%s\", \"mem\": \"1G\", \"cpus\": 2, "
		 "\"quiet\": true}",
		 kernel);
	path = json_file(tmpdir, text);
	/* Flags win whether they come before or after --config. */
	expect_ok(&c, "--mem", "2G", "--config", path, "--quiet=false", NULL);
	ck_assert_uint_eq(c.mem_size, GiB(2));
	ck_assert_uint_eq(c.cpus, 2);
	ck_assert(!c.quiet);
	ck_assert_str_eq(c.kernel, kernel);
	config_free(&c);
	/* JSON and a flag may disagree; only flags among themselves may not. */
	expect_ok(&c, "--config", path, "--cpus", "3", NULL);
	ck_assert_uint_eq(c.cpus, 3);
	config_free(&c);
}
END_TEST

static void expect_json_err(const char *text, const char *want1, const char *want2)
{
	const char *path = json_file(tmpdir, text);
	char err[ERRLEN] = "";
	struct vm_config c;
	int ret;

	config_defaults(&c);
	ret = config_load_json(&c, path, err, sizeof(err));
	ck_assert_msg(ret == -EINVAL, "'%s': rc %d", text, ret);
	ck_assert_msg(strstr(err, path), "err '%s' lacks the file name", err);
	ck_assert_msg(strstr(err, want1), "err '%s' lacks '%s'", err, want1);
	if (want2)
		ck_assert_msg(strstr(err, want2), "err '%s' lacks '%s'", err, want2);
	config_free(&c);
}

START_TEST(test_json_errors)
{
	expect_json_err("{\n  \"mem\" 1024\n}", "vm.json:2:9: JSON syntax error", NULL);
	expect_json_err("{\"mem\": 1024,}", ":1:14: JSON syntax error", NULL);
	expect_json_err("{\"mem\": 1024", "JSON syntax error", "end of");
	expect_json_err("", ":1:1: JSON syntax error", NULL);
	expect_json_err("{} {}", ":1:4: JSON syntax error", NULL);
	expect_json_err("{\"a\": 1 /* comment */}", "JSON syntax error", NULL);
	expect_json_err("[1, 2]", "expected a JSON object", "an array");
	expect_json_err("{\"kernal\": \"x\"}", "unknown key \"kernal\"", "did you mean \"kernel\"");
	expect_json_err("{\"boot-entry\": 64}", "unknown key \"boot-entry\"", "\"boot_entry\"");
	expect_json_err("{\"usb\": []}", "unknown key \"usb\"", NULL);
	expect_json_err("{\"config\": \"x.json\"}", "unknown key \"config\"", NULL);
	expect_json_err("{\"cpus\": \"2\"}", "\"cpus\": expected an integer, got a string", NULL);
	expect_json_err("{\"mem\": 1.5}", "\"mem\": expected a string or an integer", "fraction");
	expect_json_err("{\"hugepages\": \"yes\"}", "\"hugepages\": expected true or false", NULL);
	expect_json_err("{\"kernel\": null}", "\"kernel\": expected a string, got null", NULL);
	expect_json_err("{\"serial\": [\"stdio\"]}", "\"serial\": expected a string", "an array");
	expect_json_err("{\"mem\": \"12Q\"}", "\"mem\": '12Q' is not a size", NULL);
	expect_json_err("{\"mem\": -5}", "\"mem\": '-5' is not a size", NULL);
	expect_json_err("{\"cpus\": 65}", "\"cpus\": 65 is out of range", NULL);
	expect_json_err("{\"cpus\": 99999999999999999999}", "\"cpus\"", "out of range");
	expect_json_err("{\"name\": \"a\\u0000b\"}", "\"name\": string contains a NUL", NULL);
	expect_json_err("{\"kernel\": \"\"}", "\"kernel\": empty path", NULL);
}
END_TEST

/* A switch's JSON key: true turns it on, the flag's =false off again. */
static void expect_json_switch(const char *key, const char *flag, size_t field)
{
	char text[512], off[64];
	struct vm_config c;
	const char *path;

	snprintf(text, sizeof(text), "{\"kernel\": \"%s\", \"%s\": true}", kernel, key);
	snprintf(off, sizeof(off), "--%s=false", flag);
	path = json_file(tmpdir, text);
	expect_ok(&c, "--config", path, NULL);
	ck_assert(*(bool *)((char *)&c + field));
	config_free(&c);
	expect_ok(&c, "--config", path, off, NULL);
	ck_assert(!*(bool *)((char *)&c + field));
	config_free(&c);
}

/* "scsi_controller" takes true or false only, and a flag overrides it. */
START_TEST(test_json_scsi_controller)
{
	expect_json_switch("scsi_controller", "scsi-controller",
			   offsetof(struct vm_config, scsi_controller));
	expect_json_err("{\"scsi_controller\": \"yes\"}",
			"\"scsi_controller\": expected true or false", "a string");
	expect_json_err("{\"scsi_controller\": 1}", "\"scsi_controller\": expected true or false",
			"an integer");
	expect_json_err("{\"scsi_controller\": null}",
			"\"scsi_controller\": expected true or false", "null");
	expect_json_err("{\"scsi-controller\": true}", "unknown key \"scsi-controller\"",
			"did you mean \"scsi_controller\"");
}
END_TEST

/* The debug-exit port is for test guests only (issue #9): off unless asked
 * for, by flag or by the JSON key, and a flag can turn a file's off again. */
START_TEST(test_debug_exit_flag)
{
	expect_switch("debug-exit", offsetof(struct vm_config, debug_exit));
	expect_err("--debug-exit", "not a boolean", "--kernel", kernel, "--debug-exit=0xf4", NULL);
	expect_err("--debug-exit", "('true' and 'no')", "--kernel", kernel, "--debug-exit",
		   "--debug-exit=no", NULL);
	expect_err("--debug-exti", "did you mean --debug-exit?", "--kernel", kernel, "--debug-exti",
		   NULL);
	expect_json_switch("debug_exit", "debug-exit", offsetof(struct vm_config, debug_exit));
	expect_json_err("{\"debug_exit\": 244}", "\"debug_exit\": expected true or false",
			"an integer");
	expect_json_err("{\"debug-exit\": true}", "unknown key \"debug-exit\"",
			"did you mean \"debug_exit\"");
}
END_TEST

START_TEST(test_json_file_errors)
{
	char path[400];

	expect_err("--config: /nonexistent/vm.json: No such file or directory", NULL, "--config",
		   "/nonexistent/vm.json", NULL);
	expect_err("--config", "Is a directory", "--config", tmpdir, NULL);
	snprintf(path, sizeof(path), "--config=%s", json_file(tmpdir, "{\"cpus\": 0}"));
	expect_err("vm.json: \"cpus\": 0 is out of range", NULL, path, NULL);
	/* A key that is fine on its own still fails validation like a flag. */
	snprintf(path, sizeof(path), "--config=%s",
		 json_file(tmpdir, "{\"mem\": 512, \"firmware\": \"nofw.bin\"}"));
	expect_err("--firmware: ", "/nofw.bin: No such file or directory", path, NULL);
}
END_TEST

/* ---- util.c ---- */

static const struct {
	const char *in;
	uint64_t want;
} size_good[] = {
	{ "0", 0 },
	{ "1", 1 },
	{ "1048576", MiB(1) },
	{ "1b", 1 },
	{ "1B", 1 },
	{ "64K", KiB(64) },
	{ "64k", KiB(64) },
	{ "64KB", KiB(64) },
	{ "64kib", KiB(64) },
	{ "512M", MiB(512) },
	{ "512MiB", MiB(512) },
	{ "4G", GiB(4) },
	{ "4gB", GiB(4) },
	{ "2T", GiB(2048) },
	{ "2TiB", GiB(2048) },
	{ "007M", MiB(7) },
	{ "18446744073709551615", UINT64_MAX },
	{ "16777215T", GiB(1024) * 16777215ULL },
};
/* clang-format off */
static const char *const size_bad[] = {
	"", "M", "-1", "+1", " 1", "1 ", "1.5G", "12Q", "1KK", "1KiBB", "1iB", "1Ki", "1E",
	"20000000T", "16777216T", "18446744073709551616", "99999999999999999999999K", "0x10",
	"1G\n", "1 G",
};
/* clang-format on */

START_TEST(test_parse_size)
{
	uint64_t v;

	for (size_t i = 0; i < ARRAY_SIZE(size_good); i++) {
		v = 42;
		ck_assert_msg(parse_size(size_good[i].in, &v) == 0, "'%s'", size_good[i].in);
		ck_assert_msg(v == size_good[i].want, "'%s': %llu", size_good[i].in,
			      (unsigned long long)v);
	}
	for (size_t i = 0; i < ARRAY_SIZE(size_bad); i++) {
		v = 42;
		ck_assert_msg(parse_size(size_bad[i], &v) == -EINVAL, "'%s' accepted", size_bad[i]);
		ck_assert_uint_eq(v, 42);
	}
	ck_assert_int_eq(parse_size(NULL, &v), -EINVAL);
}
END_TEST

START_TEST(test_read_file)
{
	char path[300];
	uint8_t *buf = NULL;
	size_t len = 99;

	ck_assert_int_eq(read_file(kernel, &buf, &len), 0);
	ck_assert_uint_eq(len, strlen("MZ fake kernel"));
	ck_assert_mem_eq(buf, "MZ fake kernel", len + 1); /* NUL-terminated */
	free(buf);
	ck_assert_int_eq(read_file(empty, &buf, &len), 0);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(buf[0], 0);
	free(buf);
	/* st_size is 0 in /proc: the content must still come back. */
	ck_assert_int_eq(read_file("/proc/self/status", &buf, &len), 0);
	ck_assert_uint_gt(len, 0);
	ck_assert_ptr_nonnull(strstr((char *)buf, "Pid:"));
	free(buf);
	ck_assert_int_eq(read_file("/nonexistent", &buf, &len), -ENOENT);
	ck_assert_int_eq(read_file(tmpdir, &buf, &len), -EISDIR);
	ck_assert_int_eq(read_file("/dev/null", &buf, &len), -EINVAL);
	snprintf(path, sizeof(path), "%s/fifo2", tmpdir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_int_eq(read_file(path, &buf, &len), -EINVAL);
	unlink(path);
}
END_TEST

START_TEST(test_read_file_too_big)
{
	char path[300];
	uint8_t *buf;
	size_t len;
	int fd;

	snprintf(path, sizeof(path), "%s/big", tmpdir);
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)GiB(1) + 1), 0); /* sparse */
	close(fd);
	ck_assert_int_eq(read_file(path, &buf, &len), -EFBIG);
	unlink(path);
}
END_TEST

/* stderr goes to a file between capture_begin and capture_end, which returns
 * what was written. */
static int capture_fd = -1, capture_saved = -1;

static void capture_begin(void)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/log", tmpdir);
	capture_fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	ck_assert_int_ge(capture_fd, 0);
	capture_saved = dup(STDERR_FILENO);
	dup2(capture_fd, STDERR_FILENO);
}

static char *capture_end(void)
{
	static char out[4096];
	ssize_t n;

	dup2(capture_saved, STDERR_FILENO);
	close(capture_saved);
	n = pread(capture_fd, out, sizeof(out) - 1, 0);
	close(capture_fd);
	out[n < 0 ? 0 : n] = '\0';
	return out;
}

#define klog_capture(...) (capture_begin(), klog(__VA_ARGS__), capture_end())

START_TEST(test_klog)
{
	static char big[3000];
	char *s;

	log_threshold = LOG_INFO;
	ck_assert_str_eq(klog_capture(LOG_INFO, "hello %s %d", "world", 42),
			 "kestrel: info: hello world 42\n");
	ck_assert_str_eq(klog_capture(LOG_WARN, "%s", "w"), "kestrel: warning: w\n");
	ck_assert_str_eq(klog_capture(LOG_ERR, "%s", "e"), "kestrel: error: e\n");
	ck_assert_str_eq(klog_capture(LOG_DEBUG, "%s", "hidden"), "");
	log_threshold = LOG_DEBUG;
	ck_assert_str_eq(klog_capture(LOG_DEBUG, "%s", "d"), "kestrel: debug: d\n");
	log_threshold = LOG_ERR;
	ck_assert_str_eq(klog_capture(LOG_WARN, "%s", "hidden"), "");
	log_threshold = LOG_INFO;
	/* One line, no terminal escapes, a trailing newline is not doubled. */
	ck_assert_str_eq(klog_capture(LOG_INFO, "%s", "a\nb\x1b[31m\n"),
			 "kestrel: info: a?b?[31m\n");
	memset(big, 'x', sizeof(big) - 1);
	s = klog_capture(LOG_INFO, "%s", big);
	ck_assert_uint_le(strlen(s), 1023);
	ck_assert_ptr_nonnull(strstr(s, "xxx...\n"));
	ck_assert_ptr_eq(strchr(s, '\n'), s + strlen(s) - 1);
	capture_begin();
	errno = EBUSY;
	klog(LOG_INFO, "%s", "keep errno");
	ck_assert_int_eq(errno, EBUSY);
	capture_end();
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *flags;

	flags = ADD_TCASE(s, "flags", NULL, NULL, 0, test_defaults, test_flags_space_form,
			  test_flags_equals_form, test_switch_values, test_scsi_controller_flag,
			  test_debug_exit_flag, test_cmdline_values, test_cpus, test_cpu_model,
			  test_serial, test_name, test_enums, test_duration, test_arg_errors,
			  test_duplicates, test_help, test_usage);
	tcase_add_loop_test(flags, test_mem_good, 0, ARRAY_SIZE(mem_good));
	tcase_add_loop_test(flags, test_mem_bad, 0, ARRAY_SIZE(mem_bad));
	ADD_TCASE(s, "validate", NULL, NULL, 0, test_validate_files, test_validate_struct,
		  test_validate_rlimit);
	ADD_TCASE(s, "json", NULL, NULL, 0, test_json_good, test_json_relative_paths,
		  test_json_flags_override, test_json_errors, test_json_scsi_controller,
		  test_json_file_errors);
	ADD_TCASE(s, "util", NULL, NULL, 0, test_vga_flags, test_parse_size, test_read_file,
		  test_read_file_too_big, test_klog);
	return s;
}

static void make_files(void)
{
	make_tmpdir(tmpdir);
	snprintf(kernel, sizeof(kernel), "%s/bzImage", tmpdir);
	snprintf(initrd, sizeof(initrd), "%s/initrd.img", tmpdir);
	snprintf(empty, sizeof(empty), "%s/empty", tmpdir);
	snprintf(subdir, sizeof(subdir), "%s/sub", tmpdir);
	write_text(kernel, "MZ fake kernel");
	write_text(initrd, "070701 fake cpio");
	write_text(empty, "");
	mkdir(subdir, 0700);
}

int main(void)
{
	int failed;

	make_files();
	failed = run_suite(config_suite());
	rm_tree(tmpdir);
	return failed;
}
