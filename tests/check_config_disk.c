/* --disk and the JSON "disks" array (src/config/config_disk.c): what each spelling
 * turns into, the targets picked, and one-line errors for missing files,
 * wrong sizes and bad combinations. Files live in a temp directory. */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kestrel/config.h"
#include "config_driver.h"

static char tmpdir[] = "/tmp/kestrel-check-disk-XXXXXX";
static char kernel[300], d0[300], d1[300], d2[300], odd[300], empty[300], json[300];

START_TEST(flags)
{
	char s0[400], s1[400];

	snprintf(s0, sizeof(s0), "path=%s,bus=scsi,readonly,cache=none,aio=sync", d0);
	snprintf(s1, sizeof(s1), "path=%s,format=raw,target=5,add-after=2s,remove-after=4500ms",
		 d1);
	ck_assert_int_eq(run("--disk", s0, "--disk", s1, NULL), 0);
	ck_assert_uint_eq(c.ndisks, 2);
	ck_assert_str_eq(c.disks[0].path, d0);
	ck_assert_str_eq(c.disks[0].blk.path, d0);
	ck_assert(c.disks[0].blk.readonly);
	ck_assert_int_eq(c.disks[0].blk.cache, BLK_CACHE_NONE);
	ck_assert_int_eq(c.disks[0].blk.aio, BLK_AIO_SYNC);
	ck_assert_int_eq(c.disks[0].bus, CONFIG_BUS_SCSI);
	ck_assert_int_eq(c.disks[0].target, 0);
	ck_assert_int_eq(c.disks[1].target, 5);
	ck_assert_int_eq(c.disks[1].blk.format, BLK_FMT_RAW);
	ck_assert_uint_eq(c.disks[1].add_after_ms, 2000);
	ck_assert_uint_eq(c.disks[1].remove_after_ms, 4500);
}
END_TEST

/* --scsi-controller with scsi disks changes nothing: the controller is
 * there anyway (src/machine.c); both are kept as given. */
START_TEST(scsi_controller_with_disks)
{
	char s0[400];

	snprintf(s0, sizeof(s0), "path=%s,bus=scsi", d0);
	ck_assert_msg(run("--scsi-controller", "--disk", s0, NULL) == 0, "%s", err);
	ck_assert(c.scsi_controller);
	ck_assert_uint_eq(c.ndisks, 1);
	ck_assert_int_eq(c.disks[0].target, 0);
	ck_assert_msg(run("--scsi-controller", NULL) == 0, "%s", err);
	ck_assert(c.scsi_controller);
	ck_assert_uint_eq(c.ndisks, 0);
}
END_TEST

START_TEST(targets_fill_around_explicit_ones)
{
	char s0[400], s1[400];

	snprintf(s0, sizeof(s0), "path=%s", d0);
	snprintf(s1, sizeof(s1), "path=%s,target=0", d1);
	ck_assert_int_eq(run("--disk", s0, "--disk", s1, NULL), 0);
	ck_assert_int_eq(c.disks[0].target, 1);
	ck_assert_int_eq(c.disks[1].target, 0);
	snprintf(s0, sizeof(s0), "path=%s,target=3", d0);
	snprintf(s1, sizeof(s1), "path=%s,target=3", d1);
	RUN_FAILS("target 3 is taken", "--disk", s0, "--disk", s1);
}
END_TEST

START_TEST(json_disks)
{
	char text[1200];

	snprintf(
		text, sizeof(text),
		"{ \"kernel\": \"%s\", \"disks\": [ { \"path\": \"d0.img\", \"bus\": \"scsi\", "
		"\"readonly\": true, \"target\": 2, \"add_after\": \"1s\" }, \"path=d1.img,cache=none\" ] }",
		kernel);
	write_text(json, text);
	ck_assert_int_eq(run("--config", json, NULL), 0);
	ck_assert_uint_eq(c.ndisks, 2);
	ck_assert_str_eq(c.disks[0].path, d0); /* relative to the file's folder */
	ck_assert(c.disks[0].blk.readonly);
	ck_assert_int_eq(c.disks[0].target, 2);
	ck_assert_uint_eq(c.disks[0].add_after_ms, 1000);
	ck_assert_str_eq(c.disks[1].path, d1);
	ck_assert_int_eq(c.disks[1].blk.cache, BLK_CACHE_NONE);
	/* Flags add to the file's disks. */
	snprintf(text, sizeof(text), "path=%s", d2);
	ck_assert_int_eq(run("--config", json, "--disk", text, NULL), 0);
	ck_assert_uint_eq(c.ndisks, 3);
	ck_assert_str_eq(c.disks[2].path, d2);
	ck_assert_int_eq(c.disks[1].target, 0);
	ck_assert_int_eq(c.disks[2].target, 1);
}
END_TEST

START_TEST(json_errors)
{
	write_text(json, "{ \"disks\": { \"path\": \"d0.img\" } }");
	RUN_FAILS("\"disks\": expected an array", "--config", json);
	write_text(json, "{ \"disks\": [ { \"path\": \"d0.img\", \"speed\": 3 } ] }");
	RUN_FAILS("\"disks\"[0]: unknown disk option 'speed'", "--config", json);
	write_text(json, "{ \"disks\": [ 42 ] }");
	RUN_FAILS("\"disks\"[0]: expected an object or a string", "--config", json);
	write_text(json, "{ \"disks\": [ { \"path\": [ \"x\" ] } ] }");
	RUN_FAILS("expected a string, integer or boolean", "--config", json);
}
END_TEST

START_TEST(errors)
{
	char s[400];

	RUN_FAILS("--disk: ", "--disk", "bus=scsi");
	expect_err("path=FILE is required");
	snprintf(s, sizeof(s), "path=%s/missing.img", tmpdir);
	RUN_FAILS("missing.img: No such file or directory", "--disk", s);
	snprintf(s, sizeof(s), "path=%s,bus=sata", d0);
	RUN_FAILS("bus=sata: unknown bus (use scsi or ide)", "--disk", s);
	snprintf(s, sizeof(s), "path=%s,cache=fast", d0);
	RUN_FAILS("cache", "--disk", s);
	snprintf(s, sizeof(s), "path=%s,format=raw", odd);
	RUN_FAILS("not a whole number of 512-byte sectors", "--disk", s);
	snprintf(s, sizeof(s), "path=%s", empty);
	RUN_FAILS("file is empty", "--disk", s);
	snprintf(s, sizeof(s), "path=%s", tmpdir);
	RUN_FAILS("not a regular file or block device", "--disk", s);
	snprintf(s, sizeof(s), "path=%s,target=16", d0);
	RUN_FAILS("target=16", "--disk", s);
	snprintf(s, sizeof(s), "path=%s,add-after=soon", d0);
	RUN_FAILS("add-after=soon: not a duration", "--disk", s);
	snprintf(s, sizeof(s), "path=%s,add-after=5s,remove-after=2s", d0);
	RUN_FAILS("remove-after must come after add-after", "--disk", s);
	snprintf(s, sizeof(s), "path=%s", d0);
	RUN_FAILS("the same file given twice", "--disk", s, "--disk", s);
}
END_TEST

/* bus=ide: units fill around explicit ones across both channels, a CD is
 * read-only and may be empty, and what belongs to the other bus is refused. */
START_TEST(ide_drives)
{
	char s0[400], s1[400], s2[400], text[1000];

	snprintf(s0, sizeof(s0), "path=%s,bus=ide", d0);
	snprintf(s1, sizeof(s1), "path=%s,bus=ide,media=cdrom,unit=2", d1);
	snprintf(s2, sizeof(s2), "path=%s,bus=scsi", d2);
	ck_assert_msg(run("--disk", s0, "--disk", s1, "--disk", "bus=ide,media=cdrom", "--disk", s2,
			  NULL) == 0,
		      "%s", err);
	ck_assert_uint_eq(c.ndisks, 4);
	ck_assert_int_eq(c.disks[0].bus, CONFIG_BUS_IDE);
	ck_assert_int_eq(c.disks[0].media, CONFIG_MEDIA_DISK);
	ck_assert_int_eq(c.disks[0].unit, 0);
	ck_assert(!c.disks[0].blk.readonly);
	ck_assert_int_eq(c.disks[1].media, CONFIG_MEDIA_CDROM);
	ck_assert_int_eq(c.disks[1].unit, 2);
	ck_assert(c.disks[1].blk.readonly);  /* a CD is read-only */
	ck_assert_ptr_null(c.disks[2].path); /* an empty drive */
	ck_assert_ptr_null(c.disks[2].blk.path);
	ck_assert_int_eq(c.disks[2].unit, 1);
	ck_assert_int_eq(c.disks[2].target, -1);
	ck_assert_int_eq(c.disks[3].bus, CONFIG_BUS_SCSI);
	ck_assert_int_eq(c.disks[3].target, 0); /* SCSI targets are counted apart */
	ck_assert_int_eq(c.disks[3].unit, -1);
	/* JSON: the same keys; an empty CD without a path. */
	snprintf(text, sizeof(text),
		 "{ \"kernel\": \"%s\", \"disks\": [ { \"path\": \"d0.img\", "
		 "\"bus\": \"ide\", \"unit\": 3 }, { \"bus\": \"ide\", \"media\": \"cdrom\" } ] }",
		 kernel);
	write_text(json, text);
	ck_assert_msg(run("--config", json, NULL) == 0, "%s", err);
	ck_assert_int_eq(c.disks[0].unit, 3);
	ck_assert_str_eq(c.disks[0].path, d0);
	ck_assert_int_eq(c.disks[1].unit, 0);
	ck_assert_ptr_null(c.disks[1].path);
}
END_TEST

START_TEST(ide_errors)
{
	char s[400], t[400];

	snprintf(s, sizeof(s), "path=%s,bus=ide,target=1", d0);
	RUN_FAILS("target=: only with bus=scsi (bus=ide takes unit=0-3)", "--disk", s);
	snprintf(s, sizeof(s), "path=%s,bus=ide,add-after=1s", d0);
	RUN_FAILS("only with bus=scsi (IDE drives are not hot-plugged)", "--disk", s);
	snprintf(s, sizeof(s), "path=%s,unit=1", d0);
	RUN_FAILS("unit=1: only with bus=ide", "--disk", s);
	snprintf(s, sizeof(s), "path=%s,media=cdrom", d0);
	RUN_FAILS("media=cdrom: only with bus=ide", "--disk", s);
	snprintf(s, sizeof(s), "path=%s,bus=ide,media=floppy", d0);
	RUN_FAILS("media=floppy: expected disk or cdrom", "--disk", s);
	snprintf(s, sizeof(s), "path=%s,bus=ide,unit=4", d0);
	RUN_FAILS("unit=4: not an IDE unit", "--disk", s);
	RUN_FAILS("path=FILE is required (only a media=cdrom drive may be empty)", "--disk",
		  "bus=ide");
	RUN_FAILS("path=FILE is required", "--disk", "bus=ide,media=disk");
	snprintf(s, sizeof(s), "path=%s,bus=ide,unit=1", d0);
	snprintf(t, sizeof(t), "path=%s,bus=ide,media=cdrom,unit=1", d1);
	RUN_FAILS("unit 1 is taken by another disk", "--disk", s, "--disk", t);
	ck_assert_int_ne(run("--disk", "bus=ide,media=cdrom", "--disk", "bus=ide,media=cdrom",
			     "--disk", "bus=ide,media=cdrom", "--disk", "bus=ide,media=cdrom",
			     "--disk", "bus=ide,media=cdrom", NULL),
			 0);
	expect_err("no free unit (bus=ide has 4)");
	snprintf(s, sizeof(s), "path=%s/none.iso,bus=ide,media=cdrom", tmpdir);
	RUN_FAILS("none.iso: No such file or directory", "--disk", s);
}
END_TEST

START_TEST(too_many_disks)
{
	char specs[CONFIG_MAX_DISKS + 1][64];
	char *argv[2 * CONFIG_MAX_DISKS + 8] = { "run", "--kernel", kernel };
	int argc = 3;

	for (int i = 0; i <= CONFIG_MAX_DISKS; i++) {
		snprintf(specs[i], sizeof(specs[i]), "path=x%d.img", i);
		argv[argc++] = "--disk";
		argv[argc++] = specs[i];
	}
	config_free(&c);
	config_defaults(&c);
	ck_assert_int_ne(config_parse_run(&c, argc, argv, err, sizeof(err)), 0);
	expect_err("at most 16 disks");
}
END_TEST

static Suite *config_disk_suite(void)
{
	Suite *s = suite_create("config_disk");

	ADD_TCASE(s, "disk", NULL, NULL, 0, flags, scsi_controller_with_disks,
		  targets_fill_around_explicit_ones, json_disks, json_errors, errors,
		  too_many_disks, ide_drives, ide_errors);
	return s;
}

int main(void)
{
	int failed;

	make_tmpdir(tmpdir);
	snprintf(kernel, sizeof(kernel), "%s/kernel", tmpdir);
	snprintf(d0, sizeof(d0), "%s/d0.img", tmpdir);
	snprintf(d1, sizeof(d1), "%s/d1.img", tmpdir);
	snprintf(d2, sizeof(d2), "%s/d2.img", tmpdir);
	snprintf(odd, sizeof(odd), "%s/odd.img", tmpdir);
	snprintf(empty, sizeof(empty), "%s/empty.img", tmpdir);
	snprintf(json, sizeof(json), "%s/vm.json", tmpdir);
	write_file(kernel, 4096);
	write_file(d0, 1 << 20);
	write_file(d1, 2 << 20);
	write_file(d2, 1 << 20);
	write_file(odd, 1000);
	write_file(empty, 0);
	run_prefix[0] = "--kernel";
	run_prefix[1] = kernel;
	failed = run_suite(config_disk_suite());
	config_free(&c);
	rm_tree(tmpdir);
	return failed;
}
