/* --net and the JSON "net" array (src/config/config_net.c): what each spelling
 * turns into, the default MAC, and one-line errors for bad names,
 * addresses, VLAN ids, queue counts and duplicates. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kestrel/config.h"
#include "config_driver.h"

static char tmpdir[] = "/tmp/kestrel-check-net-XXXXXX";
static char kernel[300], json[300];

START_TEST(flags)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };

	ck_assert_int_eq(run("--net", "tap=tap0,mac=52:54:00:AB:cd:ef,vlan=5,queues=4",
			     "--net=tap=tap1", NULL),
			 0);
	ck_assert_uint_eq(c.nnets, 2);
	ck_assert_str_eq(c.nets[0].ifname, "tap0");
	ck_assert_mem_eq(c.nets[0].mac, mac, 6);
	ck_assert(c.nets[0].mac_set);
	ck_assert_uint_eq(c.nets[0].vlan, 5);
	ck_assert_uint_eq(c.nets[0].queues, 4);
	ck_assert_str_eq(c.nets[1].ifname, "tap1");
	ck_assert(!c.nets[1].mac_set);
	ck_assert_uint_eq(c.nets[1].vlan, 0);
	ck_assert_uint_eq(c.nets[1].queues, 1);
	/* Default MAC: QEMU's prefix, then a hash of the name; unicast. */
	ck_assert_uint_eq(c.nets[1].mac[0], 0x52);
	ck_assert_uint_eq(c.nets[1].mac[1], 0x54);
	ck_assert_uint_eq(c.nets[1].mac[2], 0x00);
	ck_assert_mem_ne(c.nets[1].mac, c.nets[0].mac, 6);
	ck_assert_int_eq(run("--net", "mac=52-54-00-00-00-01,tap=x", NULL), 0);
	ck_assert_uint_eq(c.nets[0].mac[5], 1);
	ck_assert_int_eq(c.nets[0].model, CONFIG_NET_VIRTIO);
}
END_TEST

START_TEST(model)
{
	ck_assert_int_eq(
		run("--net", "tap=t0,model=tulip,vlan=7", "--net", "tap=t1,model=virtio", NULL), 0);
	ck_assert_int_eq(c.nets[0].model, CONFIG_NET_TULIP);
	ck_assert_uint_eq(c.nets[0].vlan, 7);
	ck_assert_uint_eq(c.nets[0].queues, 1);
	ck_assert_int_eq(c.nets[1].model, CONFIG_NET_VIRTIO);
	RUN_FAILS("model=e1000: not a NIC model (virtio, tulip)", "--net", "tap=t0,model=e1000");
	RUN_FAILS("queues=2: model=tulip has one queue", "--net", "tap=t0,model=tulip,queues=2");
	RUN_FAILS("model given twice", "--net", "tap=t0,model=tulip,model=virtio");
}
END_TEST

START_TEST(default_mac_stable)
{
	uint8_t first[6];

	ck_assert_int_eq(run("--net", "tap=vmtap7", NULL), 0);
	memcpy(first, c.nets[0].mac, 6);
	ck_assert_int_eq(run("--net", "tap=vmtap7,vlan=9", NULL), 0);
	ck_assert_mem_eq(c.nets[0].mac, first, 6);
	ck_assert_int_eq(run("--net", "tap=vmtap8", NULL), 0);
	ck_assert_mem_ne(c.nets[0].mac, first, 6);
}
END_TEST

START_TEST(errors)
{
	RUN_FAILS("--net: tap=IFNAME is required", "--net", "mac=52:54:00:00:00:01");
	RUN_FAILS("not an interface name", "--net", "tap=");
	RUN_FAILS("not an interface name", "--net", "tap=abcdefghijklmnop");
	RUN_FAILS("not an interface name", "--net", "tap=a/b");
	RUN_FAILS("not an interface name", "--net", "tap=tap%d");
	RUN_FAILS("multicast", "--net", "tap=t,mac=01:00:5e:00:00:01");
	RUN_FAILS("all-zero", "--net", "tap=t,mac=00:00:00:00:00:00");
	RUN_FAILS("not a MAC address", "--net", "tap=t,mac=52:54:00:00:00");
	RUN_FAILS("not a MAC address", "--net", "tap=t,mac=52:54:00:00:00:0g");
	RUN_FAILS("vlan=0: not a number from 1 to 4094", "--net", "tap=t,vlan=0");
	RUN_FAILS("vlan=4095", "--net", "tap=t,vlan=4095");
	RUN_FAILS("vlan=-1", "--net", "tap=t,vlan=-1");
	RUN_FAILS("queues=9: not a number from 1 to 8", "--net", "tap=t,queues=9");
	RUN_FAILS("queues=0", "--net", "tap=t,queues=0");
	RUN_FAILS("unknown option \"speed\"", "--net", "tap=t,speed=10");
	RUN_FAILS("vlan given twice", "--net", "tap=t,vlan=3,vlan=3");
	RUN_FAILS("expected key=value", "--net", "tap=t,novalue");
	RUN_FAILS("the same interface given twice", "--net", "tap=t", "--net", "tap=t");
	ck_assert_int_ne(run("--net", "tap=a,mac=52:54:00:00:00:01", "--net",
			     "tap=b,mac=52:54:00:00:00:01", NULL),
			 0);
	expect_err("the same MAC address");
}
END_TEST

START_TEST(too_many)
{
	char *argv[40] = { "run", "--kernel", kernel };
	char specs[9][32];
	int argc = 3;

	for (int i = 0; i < 9; i++) {
		snprintf(specs[i], sizeof(specs[i]), "tap=t%d", i);
		argv[argc++] = "--net";
		argv[argc++] = specs[i];
	}
	config_free(&c);
	config_defaults(&c);
	ck_assert_int_ne(config_parse_run(&c, argc, argv, err, sizeof(err)), 0);
	expect_err("at most 8 NICs");
}
END_TEST

START_TEST(json_array)
{
	char arg[400];

	write_text(json, "{ \"net\": [ {\"tap\": \"j0\", \"vlan\": 7, \"queues\": 2},"
			 " \"tap=j1,mac=52:54:00:00:00:09\" ] }");
	snprintf(arg, sizeof(arg), "--config=%s", json);
	ck_assert_int_eq(run(arg, "--net", "tap=f0", NULL), 0);
	ck_assert_uint_eq(c.nnets, 3);
	ck_assert_str_eq(c.nets[0].ifname, "j0");
	ck_assert_uint_eq(c.nets[0].vlan, 7);
	ck_assert_uint_eq(c.nets[0].queues, 2);
	ck_assert_str_eq(c.nets[1].ifname, "j1");
	ck_assert_uint_eq(c.nets[1].mac[5], 9);
	ck_assert_str_eq(c.nets[2].ifname, "f0");

	write_text(json, "{ \"net\": [ {\"tap\": \"j0\", \"model\": \"tulip\"} ] }");
	ck_assert_int_eq(run(arg, NULL), 0);
	ck_assert_int_eq(c.nets[0].model, CONFIG_NET_TULIP);
	write_text(json, "{ \"net\": {\"tap\": \"j0\"} }");
	RUN_FAILS("\"net\": expected an array of NICs", arg);
	write_text(json, "{ \"net\": [ {\"tap\": \"j0\", \"vlan\": true} ] }");
	RUN_FAILS("\"net\"[0]: \"vlan\": expected a string or an integer", arg);
	write_text(json, "{ \"net\": [ 5 ] }");
	RUN_FAILS("\"net\"[0]: expected an object or a string", arg);
	write_text(json, "{ \"net\": [ {\"tap\": \"a,vlan=3\"} ] }");
	RUN_FAILS("not allowed", arg);
	write_text(json, "{ \"net\": [ {\"tap\": \"j0\", \"vlan\": 9999} ] }");
	RUN_FAILS("\"net\"[0]: vlan=9999", arg);
}
END_TEST

static void setup(void)
{
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(kernel, sizeof(kernel), "%s/kernel", tmpdir);
	snprintf(json, sizeof(json), "%s/vm.json", tmpdir);
	write_text(kernel, "not really a kernel, but the config only checks it is a file");
	run_prefix[0] = "--kernel";
	run_prefix[1] = kernel;
	config_defaults(&c);
}

static void teardown(void)
{
	config_free(&c);
	unlink(kernel);
	unlink(json);
	rmdir(tmpdir);
}

int main(void)
{
	Suite *s = suite_create("config_net");

	ADD_TCASE(s, "net", setup, teardown, 0, flags, model, default_mac_stable, errors, too_many,
		  json_array);
	return run_suite(s);
}
