/* Firmware boot's configuration (src/config/config_firmware.c): --firmware,
 * --firmware-log, --boot as flags and JSON keys, the checks of the image,
 * and one-line errors for what cannot go together. Files live in a temp
 * directory. */
#include <check.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/config.h"
#include "config_driver.h"

static char tmpdir[] = "/tmp/kestrel-check-fw-XXXXXX";
static char kernel[300], fw[300], fw64k[300], odd[300], small[300], big[300], empty[300];
static char fifo[300], json[300];

START_TEST(test_firmware_boot)
{
	ck_assert_int_eq(run("--firmware", fw, NULL), 0);
	ck_assert_str_eq(c.firmware, fw);
	ck_assert_ptr_null(c.kernel);
	ck_assert_uint_eq(c.boot.n, 0); /* the default order */
	ck_assert(!c.boot.set);
	ck_assert_ptr_null(c.firmware_log);
	/* A PC that boots firmware has a screen unless --vga none says not. */
	ck_assert_int_eq(c.vga, CONFIG_VGA_STD);
	ck_assert_uint_eq(c.vga_mem, CONFIG_VGA_MEM_DEFAULT);
	ck_assert_int_eq(run("--firmware", fw, "--vga", "none", NULL), 0);
	ck_assert_int_eq(c.vga, CONFIG_VGA_NONE);
	ck_assert_int_eq(run("--kernel", kernel, NULL), 0);
	ck_assert_int_eq(c.vga, CONFIG_VGA_NONE);
	ck_assert_int_eq(run("--firmware", fw64k, "--firmware-log", "stderr", NULL), 0);
	ck_assert_str_eq(c.firmware_log, "stderr");
	/* "bios" is Debian's SeaBIOS; given twice the same, it is one value. */
	ck_assert_int_eq(config_firmware_set(&c, "bios", NULL, err, sizeof(err)), 0);
	ck_assert_str_eq(c.firmware, CONFIG_FIRMWARE_BIOS);
	ck_assert_int_eq(run("--firmware", fw, "--firmware", fw, NULL), 0);
	RUN_FAILS("given twice with different values", "--firmware", fw, "--firmware", fw64k);
}
END_TEST

START_TEST(test_firmware_image_errors)
{
	RUN_FAILS("--firmware: /nonexistent/fw.bin: No such file or directory", "--firmware",
		  "/nonexistent/fw.bin");
	RUN_FAILS("not a regular file", "--firmware", tmpdir);
	RUN_FAILS("not a regular file", "--firmware", fifo);
	RUN_FAILS("0 bytes is not a firmware image size (a multiple of 64 KiB, 64 KiB to 16 MiB)",
		  "--firmware", empty);
	RUN_FAILS("100000 bytes is not a firmware image size", "--firmware", odd);
	RUN_FAILS("32768 bytes is not", "--firmware", small);
	RUN_FAILS("17825792 bytes is not", "--firmware", big);
	RUN_FAILS("--firmware: empty path", "--firmware", "");
	ck_assert_int_eq(config_firmware_file_check(fw, err, sizeof(err)), 0);
}
END_TEST

/* A direct kernel boot runs no firmware, and firmware boots no kernel. */
START_TEST(test_combinations)
{
	RUN_FAILS("--firmware: does not go with --kernel", "--kernel", kernel, "--firmware", fw);
	RUN_FAILS("--firmware: does not go with --kernel", "--kernel", kernel, "--firmware",
		  "bios");
	RUN_FAILS("--firmware-log: does not go with --kernel", "--kernel", kernel, "--firmware-log",
		  "stderr");
	RUN_FAILS("--boot: does not go with --kernel", "--kernel", kernel, "--boot", "disk");
	RUN_FAILS("--initrd: needs --kernel", "--firmware", fw, "--initrd", kernel);
	RUN_FAILS("--cmdline: needs --kernel", "--firmware", fw, "--cmdline", "console=ttyS0");
	RUN_FAILS("--cmdline: needs --kernel", "--firmware", fw, "--cmdline=");
	RUN_FAILS("--boot-entry: needs --kernel", "--firmware", fw, "--boot-entry", "32");
	ck_assert_int_eq(run("--firmware", fw, "--boot-entry", "auto", NULL), 0);
	ck_assert_int_eq(run("--kernel", kernel, NULL), 0);
	ck_assert_ptr_null(c.firmware);
}
END_TEST

START_TEST(test_boot_order)
{
	ck_assert_int_eq(run("--firmware", fw, "--boot", "cdrom", NULL), 0);
	ck_assert_uint_eq(c.boot.n, 1);
	ck_assert_int_eq(c.boot.order[0], CONFIG_BOOT_CDROM);
	ck_assert(c.boot.set);
	ck_assert_int_eq(run("--firmware", fw, "--boot", "net,cdrom,disk", NULL), 0);
	ck_assert_uint_eq(c.boot.n, 3);
	ck_assert_int_eq(c.boot.order[0], CONFIG_BOOT_NET);
	ck_assert_int_eq(c.boot.order[1], CONFIG_BOOT_CDROM);
	ck_assert_int_eq(c.boot.order[2], CONFIG_BOOT_DISK);
	ck_assert(!c.boot.menu);
	ck_assert_int_eq(run("--firmware", fw, "--boot=disk,menu=on,menu-wait=3s", NULL), 0);
	ck_assert_uint_eq(c.boot.n, 1);
	ck_assert(c.boot.menu);
	ck_assert_uint_eq(c.boot.menu_wait_ms, 3000);
	ck_assert_int_eq(run("--firmware", fw, "--boot", "menu=on", NULL), 0);
	ck_assert_uint_eq(c.boot.n, 0);
	ck_assert(c.boot.menu);
	ck_assert_int_eq(run("--firmware", fw, "--boot", "disk", "--boot", "disk", NULL), 0);
	RUN_FAILS("--boot: given twice with different values", "--firmware", fw, "--boot", "disk",
		  "--boot", "cdrom");
}
END_TEST

START_TEST(test_boot_order_errors)
{
	static const struct {
		const char *v, *want;
	} bad[] = {
		{ "", "is not a boot order" },
		{ "floppy", "'floppy' is not a boot device (use disk, cdrom or net" },
		{ "disk,disk", "disk: named twice" },
		{ "disk,,cdrom", "is not a boot order" },
		{ ",disk", "is not a boot order" },
		{ "disk,", "is not a boot order" },
		{ "menu=maybe", "menu=maybe: use on or off" },
		{ "menu-wait=70s", "menu-wait=70s: not a duration up to 65535ms" },
		{ "menu-wait=1.5s", "not a duration" },
		{ "splash=1", "splash=: unknown option" },
	};
	char longv[400];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_ne(run("--firmware", fw, "--boot", bad[i].v, NULL), 0);
		ck_assert_msg(!strncmp(err, "--boot: ", 8), "'%s': %s", bad[i].v, err);
		expect_err(bad[i].want);
	}
	memset(longv, 'd', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	RUN_FAILS("is not a boot order", "--firmware", fw, "--boot", longv);
	ck_assert_uint_lt(strlen(err), 200);
}
END_TEST

START_TEST(test_firmware_log)
{
	char path[400];

	snprintf(path, sizeof(path), "%s/fw.log", tmpdir);
	ck_assert_int_eq(run("--firmware", fw, "--firmware-log", path, NULL), 0);
	ck_assert_str_eq(c.firmware_log, path);
	ck_assert_int_ne(access(path, F_OK), 0); /* checked, not created */
	ck_assert_int_ne(run("--firmware", fw, "--firmware-log", "/nonexistent/dir/fw.log", NULL),
			 0);
	expect_err("--firmware-log: /nonexistent/dir/fw.log: directory /nonexistent/dir");
	RUN_FAILS("is a directory", "--firmware", fw, "--firmware-log", tmpdir);
}
END_TEST

/* JSON keys, with paths relative to the file's folder. */
START_TEST(test_json)
{
	char arg[400];

	write_text(json, "{ \"firmware\": \"fw.bin\", \"boot\": \"cdrom,disk\", "
			 "\"firmware_log\": \"fw.log\", \"mem\": \"64M\" }");
	snprintf(arg, sizeof(arg), "--config=%s", json);
	ck_assert_int_eq(run(arg, NULL), 0);
	ck_assert_str_eq(c.firmware, fw);
	ck_assert_uint_eq(c.boot.n, 2);
	ck_assert_int_eq(c.boot.order[0], CONFIG_BOOT_CDROM);
	ck_assert_ptr_nonnull(strstr(c.firmware_log, tmpdir));
	/* A flag overrides the file. */
	ck_assert_int_eq(run(arg, "--boot", "disk", NULL), 0);
	ck_assert_int_eq(c.boot.order[0], CONFIG_BOOT_DISK);
	write_text(json, "{ \"firmware\": \"bios\", \"kernel\": \"k\" }");
	RUN_FAILS("--firmware: does not go with --kernel", arg);
	write_text(json, "{ \"boot\": 5 }");
	RUN_FAILS("vm.json: \"boot\": expected a string, got an integer", arg);
	write_text(json, "{ \"boot\": \"tape\" }");
	RUN_FAILS("vm.json: \"boot\": 'tape' is not a boot device", arg);
	write_text(json, "{ \"firmware_logs\": \"x\" }");
	RUN_FAILS("did you mean \"firmware_log\"?", arg);
}
END_TEST

static Suite *fw_suite(void)
{
	Suite *s = suite_create("config_firmware");

	ADD_TCASE(s, "core", NULL, NULL, 0, test_firmware_boot, test_firmware_image_errors,
		  test_combinations, test_boot_order, test_boot_order_errors, test_firmware_log,
		  test_json);
	return s;
}

int main(void)
{
	int failed;

	make_tmpdir(tmpdir);
	snprintf(kernel, sizeof(kernel), "%s/k", tmpdir);
	snprintf(fw, sizeof(fw), "%s/fw.bin", tmpdir);
	snprintf(fw64k, sizeof(fw64k), "%s/fw64k.bin", tmpdir);
	snprintf(odd, sizeof(odd), "%s/odd.bin", tmpdir);
	snprintf(small, sizeof(small), "%s/small.bin", tmpdir);
	snprintf(big, sizeof(big), "%s/big.bin", tmpdir);
	snprintf(empty, sizeof(empty), "%s/empty.bin", tmpdir);
	snprintf(fifo, sizeof(fifo), "%s/fifo", tmpdir);
	snprintf(json, sizeof(json), "%s/vm.json", tmpdir);
	write_file(kernel, 4096);
	write_file(fw, 0x40000);
	write_file(fw64k, 0x10000);
	write_file(odd, 100000);
	write_file(small, 0x8000);
	write_file(big, 0x1100000);
	write_file(empty, 0);
	if (mkfifo(fifo, 0600)) {
		perror("mkfifo");
		return 1;
	}
	failed = run_suite(fw_suite());
	config_free(&c);
	rm_tree(tmpdir);
	return failed;
}
