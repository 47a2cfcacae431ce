/* Firmware boot's board side (src/boot/firmware.c): the image read into the
 * worker's own read-only memory, and the boot devices for --boot in the
 * bootorder file and the CMOS, as SeaBIOS matches them. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kestrel/firmware.h"
#include "check_util.h"

static char tmpdir[] = "/tmp/kestrel-check-firmware-XXXXXX";

static void write_bytes(const char *path, size_t size, uint8_t seed)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	for (size_t i = 0; i < size; i++)
		fputc((int)(uint8_t)(i * 13 + seed), f);
	ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_image_load)
{
	char path[300], err[300];
	struct fw_image img;

	snprintf(path, sizeof(path), "%s/fw.bin", tmpdir);
	write_bytes(path, 0x20000, 7);
	ck_assert_int_eq(fw_image_load(path, &img, err, sizeof(err)), 0);
	ck_assert_uint_eq(img.size, 0x20000);
	ck_assert_uint_eq((uintptr_t)img.data % 4096, 0);
	for (size_t i = 0; i < img.size; i++)
		ck_assert_uint_eq(img.data[i], (uint8_t)(i * 13 + 7));
	/* A copy: the file changing later changes nothing the guest sees. */
	write_bytes(path, 0x20000, 9);
	ck_assert_uint_eq(img.data[1], (uint8_t)(13 + 7));
	fw_image_free(&img);
	ck_assert_ptr_null(img.data);
	/* The file may have changed since the configuration was checked. */
	write_bytes(path, 0x20001, 0);
	ck_assert_int_eq(fw_image_load(path, &img, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "not a firmware image"));
	ck_assert_ptr_null(img.data);
	ck_assert_int_lt(fw_image_load("/nonexistent/fw", &img, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "--firmware: /nonexistent/fw: No such file"));
	ck_assert_int_eq(fw_image_load(tmpdir, &img, err, sizeof(err)), -EINVAL);
	unlink(path);
}
END_TEST

static void add_scsi(struct vm_config *c, int target, uint64_t add_after)
{
	c->disks = realloc(c->disks, (c->ndisks + 1) * sizeof(*c->disks));
	memset(&c->disks[c->ndisks], 0, sizeof(c->disks[0]));
	c->disks[c->ndisks].bus = CONFIG_BUS_SCSI;
	c->disks[c->ndisks].target = target;
	c->disks[c->ndisks].add_after_ms = add_after;
	c->ndisks++;
}

static char *order(const struct vm_config *c, const struct fw_boot_board *b, char *buf, size_t size)
{
	struct fw_boot_dev d[32];
	unsigned n = fw_boot_list(c, b, d, 32);

	ck_assert_int_ge(fw_bootorder_build(d, n, buf, size), 0);
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return buf;
}

START_TEST(test_boot_list)
{
	struct vm_config c;
	struct fw_boot_board b = { .scsi_slot = 4, .ide_slot = -1, .ide_fn = -1, .net_slot = 5 };
	char buf[1024];

	memset(&c, 0, sizeof(c));
	add_scsi(&c, 3, 0);
	add_scsi(&c, 0, 0);
	add_scsi(&c, 2, 5000); /* hot-added later: not there at boot */
	c.nnets = 2;
	/* Default: disks (SCSI by target), then CD-ROMs; NICs only when asked. */
	ck_assert_str_eq(
		order(&c, &b, buf, sizeof(buf)),
		"/pci@i0cf8/scsi@4/channel@0/disk@0,0 /pci@i0cf8/scsi@4/channel@0/disk@3,0");
	c.boot = (struct config_boot){ .order = { CONFIG_BOOT_NET, CONFIG_BOOT_DISK }, .n = 2 };
	ck_assert_str_eq(
		order(&c, &b, buf, sizeof(buf)),
		"/pci@i0cf8/ethernet@5/ethernet-phy@0 /pci@i0cf8/ethernet@6/ethernet-phy@0 "
		"/pci@i0cf8/scsi@4/channel@0/disk@0,0 /pci@i0cf8/scsi@4/channel@0/disk@3,0");
	c.boot = (struct config_boot){ .order = { CONFIG_BOOT_CDROM }, .n = 1 };
	ck_assert_str_eq(order(&c, &b, buf, sizeof(buf)), "");
	/* No controller on the board: nothing of it listed. */
	b.scsi_slot = -1;
	b.net_slot = -1;
	c.boot.n = 0;
	ck_assert_str_eq(order(&c, &b, buf, sizeof(buf)), "");
	free(c.disks);
}
END_TEST

static void add_ide(struct vm_config *c, int unit, enum config_disk_media media)
{
	c->disks = realloc(c->disks, (c->ndisks + 1) * sizeof(*c->disks));
	memset(&c->disks[c->ndisks], 0, sizeof(c->disks[0]));
	c->disks[c->ndisks].bus = CONFIG_BUS_IDE;
	c->disks[c->ndisks].unit = unit;
	c->disks[c->ndisks].target = -1;
	c->disks[c->ndisks].media = media;
	c->ndisks++;
}

/* IDE drives by unit (channel, master/slave) before SCSI disks; CDs apart. */
START_TEST(test_boot_list_ide)
{
	struct vm_config c;
	struct fw_boot_board b = { .scsi_slot = 4, .ide_slot = 1, .ide_fn = 1, .net_slot = -1 };
	char buf[1024];

	memset(&c, 0, sizeof(c));
	add_scsi(&c, 1, 0);
	add_ide(&c, 3, CONFIG_MEDIA_DISK);
	add_ide(&c, 2, CONFIG_MEDIA_CDROM);
	add_ide(&c, 0, CONFIG_MEDIA_DISK);
	ck_assert_str_eq(order(&c, &b, buf, sizeof(buf)),
			 "/pci@i0cf8/ide@1,1/drive@0/disk@0 /pci@i0cf8/ide@1,1/drive@1/disk@1 "
			 "/pci@i0cf8/scsi@4/channel@0/disk@1,0 /pci@i0cf8/ide@1,1/drive@1/disk@0");
	c.boot = (struct config_boot){ .order = { CONFIG_BOOT_CDROM, CONFIG_BOOT_DISK }, .n = 2 };
	ck_assert_str_eq(order(&c, &b, buf, sizeof(buf)),
			 "/pci@i0cf8/ide@1,1/drive@1/disk@0 /pci@i0cf8/ide@1,1/drive@0/disk@0 "
			 "/pci@i0cf8/ide@1,1/drive@1/disk@1 /pci@i0cf8/scsi@4/channel@0/disk@1,0");
	free(c.disks);
}
END_TEST

START_TEST(test_boot_cmos)
{
	struct config_boot boot = { 0 };
	enum rtc_boot_dev d[3];

	fw_boot_cmos(&boot, d);
	ck_assert_int_eq(d[0], RTC_BOOT_DISK);
	ck_assert_int_eq(d[1], RTC_BOOT_CDROM);
	ck_assert_int_eq(d[2], RTC_BOOT_NONE);
	boot = (struct config_boot){
		.order = { CONFIG_BOOT_CDROM, CONFIG_BOOT_NET, CONFIG_BOOT_DISK }, .n = 3
	};
	fw_boot_cmos(&boot, d);
	ck_assert_int_eq(d[0], RTC_BOOT_CDROM);
	ck_assert_int_eq(d[1], RTC_BOOT_NET);
	ck_assert_int_eq(d[2], RTC_BOOT_DISK);
}
END_TEST

static Suite *firmware_suite(void)
{
	Suite *s = suite_create("firmware");

	ADD_TCASE(s, "core", NULL, NULL, 0, test_image_load, test_boot_list, test_boot_list_ide,
		  test_boot_cmos);
	return s;
}

int main(void)
{
	int failed;

	make_tmpdir(tmpdir);
	failed = run_suite(firmware_suite());
	rmdir(tmpdir);
	return failed;
}
