/* The live-migration wire format (kestrel/migrate_wire.h, docs/migration.md):
 * round trips, then hostile input: every cut of a HELLO and a REPLY, wrong
 * magic and versions, lengths over each type's bound, page ranges outside
 * RAM (overflow included), and the addresses `migrate` and --incoming take. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/byteorder.h"
#include "kestrel/migrate.h"
#include "kestrel/migrate_wire.h"
#include "kestrel/state_stream.h"

#include "check_util.h"

#define RAM (512ull << 20)

static void hello(struct state_buf *b, const char *conf)
{
	memset(b, 0, sizeof(*b));
	mig_hello_put(b, RAM, RAM, 0, conf);
	state_put_u32(b, 1); /* a CPUI body's vCPU count: opaque to the parser */
	ck_assert(!b->error);
}

START_TEST(test_hdr_round_trip_and_bounds)
{
	static const struct {
		uint32_t type;
		uint64_t max;
	} t[] = {
		{ MIG_HELLO, MIG_SMALL_MAX },
		{ MIG_REPLY, MIG_SMALL_MAX },
		{ MIG_PAGES, 8 + MIG_BATCH_PAGES * MIG_PAGE },
		{ MIG_ROUND, MIG_ROUND_SIZE },
		{ MIG_STATE, 1000 },
		{ MIG_SWITCH, 0 },
	};
	uint8_t raw[MIG_HDR_SIZE];
	struct mig_hdr h;
	char err[200];

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		mig_hdr_encode(t[i].type, t[i].max, raw);
		ck_assert_int_eq(mig_hdr_decode(raw, 1000, &h, err, sizeof(err)), 0);
		ck_assert_uint_eq(h.type, t[i].type);
		ck_assert_uint_eq(h.len, t[i].max);
		mig_hdr_encode(t[i].type, t[i].max + 1, raw);
		ck_assert_int_eq(mig_hdr_decode(raw, 1000, &h, err, sizeof(err)), -EINVAL);
		ck_assert_msg(strstr(err, "at most"), "%s", err);
		mig_hdr_encode(t[i].type, UINT64_MAX, raw);
		ck_assert_int_eq(mig_hdr_decode(raw, 1000, &h, err, sizeof(err)), -EINVAL);
	}
	for (uint32_t bad = 0; bad < 20; bad += (bad == 0 ? 7 : 1)) {
		mig_hdr_encode(bad, 0, raw);
		ck_assert_int_eq(mig_hdr_decode(raw, 1000, &h, err, sizeof(err)), -EINVAL);
		ck_assert_msg(strstr(err, "unknown type"), "%s", err);
	}
	mig_hdr_encode(MIG_SWITCH, 0, raw);
	raw[5] = 1; /* reserved */
	ck_assert_int_eq(mig_hdr_decode(raw, 1000, &h, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "reserved"), "%s", err);
}
END_TEST

START_TEST(test_hello_round_trip)
{
	struct state_buf b;
	struct mig_hello h;
	char err[200];

	hello(&b, "{\"mem\":\"512M\"}");
	ck_assert_int_eq(mig_hello_parse(b.data, b.len, &h, err, sizeof(err)), 0);
	ck_assert_uint_eq(h.proto, MIG_PROTO_VERSION);
	ck_assert_uint_eq(h.stream_version, STREAM_FORMAT_VERSION);
	ck_assert_uint_eq(h.ram_size, RAM);
	ck_assert_uint_eq(h.ram_low, RAM);
	ck_assert_uint_eq(h.ram_high, 0);
	ck_assert_str_eq(h.conf, "{\"mem\":\"512M\"}");
	ck_assert_uint_eq(h.cpuid.len, 4);
	ck_assert_uint_eq(state_get_u32(&h.cpuid), 1);
	mig_hello_free(&h);
	state_free(&b);
}
END_TEST

/* Cut anywhere before the CPUID body: refused (and nothing leaks: ASan). */
START_TEST(test_hello_every_cut)
{
	struct state_buf b;
	struct mig_hello h;
	char err[200];

	hello(&b, "{}");
	for (size_t n = 0; n + 4 < b.len; n++) {
		int ret = mig_hello_parse(b.data, n, &h, err, sizeof(err));

		ck_assert_msg(ret == -EINVAL, "cut at %zu accepted", n);
		mig_hello_free(&h);
	}
	state_free(&b);
}
END_TEST

START_TEST(test_hello_hostile)
{
	struct state_buf b;
	struct mig_hello h;
	char err[200];
	static const struct {
		size_t off;
		uint64_t val;
		int width;
		const char *why;
	} bad[] = {
		{ 0, 0x90, 1, "no magic" },
		{ 8, 2, 4, "protocol version 2" },
		{ 8, 0, 4, "protocol version 0" },
		{ 12, STREAM_FORMAT_VERSION + 1, 4, "state format version" },
		{ 12, 0, 4, "state format version 0" },
		{ 16, 0, 8, "RAM layout" },
		{ 16, RAM + 1, 8, "RAM layout" },
		{ 24, RAM + 4096, 8, "RAM layout" },
		{ 32, 4096, 8, "RAM layout" },
		{ 40, 0xffffffff, 4, "configuration" },
		{ 40, 200, 4, "configuration" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		hello(&b, "{}");
		if (bad[i].width == 1)
			b.data[bad[i].off] = (uint8_t)bad[i].val;
		else if (bad[i].width == 4)
			put_le32(b.data + bad[i].off, (uint32_t)bad[i].val);
		else
			put_le64(b.data + bad[i].off, bad[i].val);
		ck_assert_msg(mig_hello_parse(b.data, b.len, &h, err, sizeof(err)) == -EINVAL,
			      "case %zu (%s) accepted", i, bad[i].why);
		mig_hello_free(&h);
		state_free(&b);
	}
	/* A NUL inside the configuration string. */
	hello(&b, "{}x");
	b.data[45] = 0;
	ck_assert_int_eq(mig_hello_parse(b.data, b.len, &h, err, sizeof(err)), -EINVAL);
	mig_hello_free(&h);
	state_free(&b);
}
END_TEST

START_TEST(test_pages_check)
{
	uint64_t pages = RAM / MIG_PAGE, first, n;
	uint8_t head[8];
	char err[200];

	put_le64(head, pages - 2);
	ck_assert_int_eq(
		mig_pages_check(head, 8 + 2 * MIG_PAGE, pages, &first, &n, err, sizeof(err)), 0);
	ck_assert_uint_eq(first, pages - 2);
	ck_assert_uint_eq(n, 2);
	/* One page past the end, the first past it, overflow of first + n. */
	ck_assert_int_eq(mig_pages_check(head, 8 + 3 * MIG_PAGE, pages, &first, &n, err,
					 sizeof(err)),
			 -EINVAL);
	ck_assert_msg(strstr(err, "outside RAM"), "%s", err);
	put_le64(head, pages);
	ck_assert_int_eq(mig_pages_check(head, 8 + MIG_PAGE, pages, &first, &n, err, sizeof(err)),
			 -EINVAL);
	put_le64(head, UINT64_MAX);
	ck_assert_int_eq(mig_pages_check(head, 8 + 2 * MIG_PAGE, pages, &first, &n, err,
					 sizeof(err)),
			 -EINVAL);
	put_le64(head, 0);
	/* Not whole pages, none at all. */
	ck_assert_int_eq(mig_pages_check(head, 8 + MIG_PAGE + 1, pages, &first, &n, err,
					 sizeof(err)),
			 -EINVAL);
	ck_assert_msg(strstr(err, "whole pages"), "%s", err);
	ck_assert_int_eq(mig_pages_check(head, 8, pages, &first, &n, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(mig_pages_check(head, 7, pages, &first, &n, err, sizeof(err)), -EINVAL);
}
END_TEST

/* ROUND: the whole progress, or a bare round number; nothing else. */
START_TEST(test_round)
{
	struct migrate_progress p = { .round = 7,
				      .remaining = 1ull << 40,
				      .dirty_rate = 12345,
				      .expected_downtime_ms = 29,
				      .throttle_pct = 40 },
				q;
	uint8_t b[MIG_ROUND_SIZE];

	mig_round_put(&p, b);
	ck_assert_int_eq(mig_round_parse(b, sizeof(b), &q), 0);
	ck_assert_uint_eq(q.round, 7);
	ck_assert_uint_eq(q.remaining, 1ull << 40);
	ck_assert_uint_eq(q.dirty_rate, 12345);
	ck_assert_uint_eq(q.expected_downtime_ms, 29);
	ck_assert_uint_eq(q.throttle_pct, 40);
	ck_assert_int_eq(mig_round_parse(b, 4, &q), 0);
	ck_assert_uint_eq(q.round, 7);
	ck_assert_uint_eq(q.remaining, 0);
	for (uint64_t n = 0; n <= MIG_ROUND_SIZE; n++)
		if (n != 4 && n != MIG_ROUND_SIZE)
			ck_assert_int_eq(mig_round_parse(b, n, &q), -EINVAL);
	put_le32(b + 4, 0xffffffffu); /* a hostile %: reported as 100 */
	ck_assert_int_eq(mig_round_parse(b, sizeof(b), &q), 0);
	ck_assert_uint_eq(q.throttle_pct, 100);
}
END_TEST

START_TEST(test_reply)
{
	struct state_buf b = { 0 };
	char *msg;
	int st;

	mig_reply_put(&b, -ENOTSUP, "the guest saw CPU features this host lacks");
	ck_assert_int_eq(mig_reply_parse(b.data, b.len, &st, &msg), 0);
	ck_assert_int_eq(st, ENOTSUP);
	ck_assert_str_eq(msg, "the guest saw CPU features this host lacks");
	free(msg);
	for (size_t n = 0; n < b.len; n++)
		ck_assert_msg(mig_reply_parse(b.data, n, &st, &msg) == -EINVAL, "cut at %zu", n);
	state_put_u8(&b, 0); /* a byte after the end */
	ck_assert_int_eq(mig_reply_parse(b.data, b.len, &st, &msg), -EINVAL);
	put_le32(b.data, 100000);
	ck_assert_int_eq(mig_reply_parse(b.data, b.len - 1, &st, &msg), -EINVAL);
	state_free(&b);
}
END_TEST

START_TEST(test_uri)
{
	static const char *const good[] = {
		"unix:/run/x.sock", "tcp:127.0.0.1:4444", "tcp::4444",
		"tcp:[::1]:1",	    "tcp:10.0.0.2:65535",
	};
	static const char *const bad[] = {
		"unix:",
		"tcp:127.0.0.1",
		"tcp:127.0.0.1:",
		"tcp:127.0.0.1:0",
		"tcp:127.0.0.1:65536",
		"tcp:127.0.0.1:12x",
		"tcp:host.example:80",
		"tcp:[::1:80",
		"tcp:1.2.3.4.5:80",
		"file:/x",
		"udp:1.2.3.4:5",
		"",
		"tcp:[zz]:80",
	};
	char err[200], longp[200];

	for (size_t i = 0; i < ARRAY_SIZE(good); i++)
		ck_assert_msg(migrate_uri_check(good[i], err, sizeof(err)) == 0, "%s: %s", good[i],
			      err);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		ck_assert_msg(migrate_uri_check(bad[i], err, sizeof(err)) == -EINVAL, "%s accepted",
			      bad[i]);
	memset(longp, 'a', sizeof(longp));
	memcpy(longp, "unix:", 5);
	longp[sizeof(longp) - 1] = '\0';
	ck_assert_int_eq(migrate_uri_check(longp, err, sizeof(err)), -EINVAL);
}
END_TEST

/* Host names become addresses before the sandbox (kestrel ctl, --incoming);
 * everything else is checked and passed on as it is. */
START_TEST(test_uri_resolve)
{
	char err[300], *out;

	ck_assert_int_eq(migrate_uri_resolve("tcp:localhost:4444", &out, err, sizeof(err)), 0);
	ck_assert_msg(!strcmp(out, "tcp:127.0.0.1:4444") || !strcmp(out, "tcp:[::1]:4444"), "%s",
		      out);
	free(out);
	ck_assert_int_eq(migrate_uri_resolve("tcp:10.0.0.2:80", &out, err, sizeof(err)), 0);
	ck_assert_str_eq(out, "tcp:10.0.0.2:80");
	free(out);
	ck_assert_int_eq(migrate_uri_resolve("unix:/run/x.sock", &out, err, sizeof(err)), 0);
	ck_assert_str_eq(out, "unix:/run/x.sock");
	free(out);
	ck_assert_int_eq(migrate_uri_resolve("tcp:no-such-host.invalid:80", &out, err, sizeof(err)),
			 -EHOSTUNREACH);
	ck_assert_ptr_null(out);
	ck_assert_msg(strstr(err, "no-such-host.invalid"), "%s", err);
	ck_assert_int_eq(migrate_uri_resolve("tcp:localhost:0", &out, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(out);
	ck_assert_int_eq(migrate_uri_resolve("udp:1.2.3.4:5", &out, err, sizeof(err)), -EINVAL);
}
END_TEST

SUITE_MAIN("migrate_wire", "wire", NULL, NULL, 0, test_hdr_round_trip_and_bounds, test_round,
	   test_hello_round_trip, test_hello_every_cut, test_hello_hostile, test_pages_check,
	   test_reply, test_uri, test_uri_resolve)
