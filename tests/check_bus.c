/* Bus routing: sorted non-overlapping ranges, region/offset delivery, unclaimed accesses. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/bus.h"
#include "check_util.h"

struct fake {
	struct device dev;
	int region;
	uint64_t off, val;
	unsigned size;
	int reads, writes;
};

static uint64_t fake_read(struct device *d, int region, uint64_t off, unsigned size)
{
	struct fake *f = (struct fake *)d;

	f->reads++;
	f->region = region;
	f->off = off;
	f->size = size;
	return 0x1122334455667788ULL;
}

static void fake_write(struct device *d, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct fake *f = (struct fake *)d;

	f->writes++;
	f->region = region;
	f->off = off;
	f->size = size;
	f->val = val;
}

static const struct dev_ops fake_ops = { .name = "fake", .read = fake_read, .write = fake_write };

START_TEST(overlap_rejected)
{
	struct bus b;
	struct fake f = { 0 };

	device_init(&f.dev, &fake_ops);
	bus_init(&b, "t");
	ck_assert_int_eq(bus_insert(&b, 0x100, 0x10, &f.dev, 0), 0);
	ck_assert_int_eq(bus_insert(&b, 0x10f, 1, &f.dev, 0), -EEXIST);
	ck_assert_int_eq(bus_insert(&b, 0xf8, 9, &f.dev, 0), -EEXIST);
	ck_assert_int_eq(bus_insert(&b, 0x0f0, 0x100, &f.dev, 0), -EEXIST);
	ck_assert_int_eq(bus_insert(&b, 0xf0, 0x10, &f.dev, 1), 0);  /* adjacent below */
	ck_assert_int_eq(bus_insert(&b, 0x110, 0x10, &f.dev, 2), 0); /* adjacent above */
	ck_assert_int_eq(bus_insert(&b, 0x200, 0, &f.dev, 0), -EINVAL);
	ck_assert_int_eq(bus_insert(&b, UINT64_MAX - 1, 4, &f.dev, 0), -EINVAL);
	ck_assert_int_eq(b.nr, 3);
	bus_destroy(&b);
}
END_TEST

START_TEST(dispatch)
{
	struct bus b;
	struct fake f = { 0 };
	uint32_t v = 0xdeadbeef;
	uint8_t r[8];

	device_init(&f.dev, &fake_ops);
	bus_init(&b, "t");
	ck_assert_int_eq(bus_insert(&b, 0x3f8, 8, &f.dev, 7), 0);
	ck_assert(bus_write(&b, 0x3fb, &v, 4));
	ck_assert_int_eq(f.region, 7);
	ck_assert_uint_eq(f.off, 3);
	ck_assert_uint_eq(f.size, 4);
	ck_assert_uint_eq(f.val, 0xdeadbeef);
	ck_assert(bus_read(&b, 0x3f8, r, 2));
	ck_assert_uint_eq(r[0], 0x88);
	ck_assert_uint_eq(r[1], 0x77);
	/* Unclaimed: reads float high, counted, no device called. */
	memset(r, 0, sizeof(r));
	ck_assert(!bus_read(&b, 0x400, r, 4));
	ck_assert_uint_eq(r[0], 0xff);
	ck_assert_uint_eq(r[3], 0xff);
	ck_assert(!bus_write(&b, 0x3f7, &v, 1));
	ck_assert_uint_eq(b.unhandled, 2);
	ck_assert_int_eq(f.reads, 1);
	ck_assert_int_eq(f.writes, 1);
	ck_assert_int_eq(bus_remove(&b, 0x3f8), 0);
	ck_assert(!bus_read(&b, 0x3f8, r, 1));
	bus_destroy(&b);
}
END_TEST

/* --stats: per-range access counts, busiest first, silent ranges left out. */
START_TEST(hit_counts)
{
	struct bus b;
	struct fake f = { 0 };
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	uint8_t x = 0;

	device_init(&f.dev, &fake_ops);
	bus_init(&b, "pio");
	ck_assert_int_eq(bus_insert(&b, 0x3f8, 8, &f.dev, 0), 0);
	ck_assert_int_eq(bus_insert(&b, 0xcf8, 8, &f.dev, 1), 0);
	ck_assert_int_eq(bus_insert(&b, 0x70, 2, &f.dev, 2), 0);
	for (int i = 0; i < 3; i++)
		ck_assert(bus_write(&b, 0xcfc, &x, 1));
	ck_assert(bus_read(&b, 0x3f9, &x, 1));
	ck_assert(!bus_read(&b, 0x80, &x, 1)); /* unclaimed: no range counts it */
	bus_print_hits(&b, out);
	fclose(out);
	ck_assert_str_eq(buf, "kestrel: stats: pio accesses: fake@0xcf8=3 fake@0x3f8=1\n");
	free(buf);
	bus_destroy(&b);
}
END_TEST

/* A counter device: each read returns the next value, each write is
 * recorded in order, so a string access shows it reached the device as
 * count separate accesses at the same offset. */
struct seq {
	struct device dev;
	uint64_t next, got[8], off[8];
	unsigned n;
};

static uint64_t seq_read(struct device *d, int region, uint64_t off, unsigned size)
{
	struct seq *q = (struct seq *)d;

	q->off[q->n++ % 8] = off;
	return q->next++;
}

static void seq_write(struct device *d, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct seq *q = (struct seq *)d;

	q->off[q->n % 8] = off;
	q->got[q->n++ % 8] = val;
}

static const struct dev_ops seq_ops = { .name = "seq", .read = seq_read, .write = seq_write };

START_TEST(string_access)
{
	struct bus b;
	struct seq q = { .next = 0x1000 };
	uint16_t w[5];
	uint32_t l[3] = { 0x11111111, 0x22222222, 0x33333333 };

	device_init(&q.dev, &seq_ops);
	bus_init(&b, "t");
	ck_assert_int_eq(bus_insert(&b, 0x1f0, 8, &q.dev, 3), 0);
	ck_assert(bus_read_string(&b, 0x1f0, w, 2, 5));
	for (unsigned i = 0; i < 5; i++) {
		ck_assert_uint_eq(w[i], 0x1000 + i);
		ck_assert_uint_eq(q.off[i], 0);
	}
	q.n = 0;
	ck_assert(bus_write_string(&b, 0x1f4, l, 4, 3));
	ck_assert_uint_eq(q.n, 3);
	for (unsigned i = 0; i < 3; i++) {
		ck_assert_uint_eq(q.got[i], l[i]);
		ck_assert_uint_eq(q.off[i], 4);
	}
	ck_assert_uint_eq(b.ranges[0].hits, 8);
	/* Nobody at the port: every element reads all ones and counts. */
	memset(w, 0, sizeof(w));
	ck_assert(!bus_read_string(&b, 0x170, w, 2, 5));
	for (unsigned i = 0; i < 5; i++)
		ck_assert_uint_eq(w[i], 0xffff);
	ck_assert(!bus_write_string(&b, 0x170, l, 4, 3));
	ck_assert_uint_eq(b.unhandled, 8);
	ck_assert(!bus_read_string(&b, 0x1f0, w, 16, 1)); /* no such access size */
	bus_destroy(&b);
}
END_TEST

START_TEST(many_ranges)
{
	struct bus b;
	struct fake f = { 0 };

	device_init(&f.dev, &fake_ops);
	bus_init(&b, "t");
	/* Insert in scrambled order; every lookup must find its own range. */
	for (int i = 0; i < 200; i++) {
		uint64_t base = ((uint64_t)(i * 37 % 200)) * 0x10;

		ck_assert_int_eq(bus_insert(&b, base, 0x8, &f.dev, (int)(base >> 4)), 0);
	}
	for (uint64_t a = 0; a < 200 * 0x10; a++) {
		uint8_t x;
		bool hit = bus_read(&b, a, &x, 1);

		ck_assert_int_eq(hit, (a & 0xf) < 8);
		if (hit)
			ck_assert_int_eq(f.region, (int)(a >> 4));
	}
	bus_destroy(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bus");

	ADD_TCASE(s, "core", NULL, NULL, 0, overlap_rejected, dispatch, many_ranges, hit_counts,
		  string_access);
	return run_suite(s);
}
