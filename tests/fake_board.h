/* Fakes the device unit tests share: an IRQ sink that records levels, a vm_ctl
 * that records stop requests, settable clocks, a seeded PRNG for the register
 * fuzz cases, and a save -> load -> save round trip. Header-only; each
 * check_*.c has its own main() (run_suite, in check_util.h). */
#ifndef KESTREL_TEST_FAKE_BOARD_H
#define KESTREL_TEST_FAKE_BOARD_H

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "kestrel/device.h"
#include "kestrel/state.h"
#include "check_util.h"

struct fake_irq {
	int level; /* last level set, -1 before any */
	int calls;
	int bad;   /* levels other than 0/1 */
	int rises; /* 0 -> 1 transitions */
	uint32_t gsi;
};

static UNUSED_FN void fake_irq_set(void *opaque, uint32_t gsi, int level)
{
	struct fake_irq *f = opaque;

	if (level != 0 && level != 1)
		f->bad++;
	if (level == 1 && f->level != 1)
		f->rises++;
	f->level = level;
	f->gsi = gsi;
	f->calls++;
}

static UNUSED_FN struct irq_line fake_irq_line(struct fake_irq *f, uint32_t gsi)
{
	memset(f, 0, sizeof(*f));
	f->level = -1;
	return (struct irq_line){ .set = fake_irq_set, .opaque = f, .gsi = gsi };
}

struct fake_ctl {
	int stops;
	enum vm_stop_reason why;
	int code;
};

static UNUSED_FN void fake_request_stop(void *opaque, enum vm_stop_reason why, int code)
{
	struct fake_ctl *c = opaque;

	c->stops++;
	c->why = why;
	c->code = code;
}

static UNUSED_FN struct vm_ctl fake_vm_ctl(struct fake_ctl *c)
{
	memset(c, 0, sizeof(*c));
	return (struct vm_ctl){ .request_stop = fake_request_stop, .opaque = c };
}

static uint64_t fake_ns;
static time_t fake_secs;

static UNUSED_FN uint64_t fake_now_ns(void)
{
	return fake_ns;
}

static UNUSED_FN time_t fake_wall(void)
{
	return fake_secs;
}

/* xorshift64*: reproducible fuzz runs. */
static uint64_t fuzz_seed = 0x9e3779b97f4a7c15ULL;

static UNUSED_FN uint64_t fuzz_next(void)
{
	fuzz_seed ^= fuzz_seed >> 12;
	fuzz_seed ^= fuzz_seed << 25;
	fuzz_seed ^= fuzz_seed >> 27;
	return fuzz_seed * 0x2545f4914f6cdd1dULL;
}

static UNUSED_FN unsigned fuzz_size(void)
{
	static const unsigned sizes[] = { 1, 2, 4, 8 };

	return sizes[fuzz_next() % 4];
}

static UNUSED_FN uint64_t dev_rd(struct device *d, int region, uint64_t off, unsigned size)
{
	return d->ops->read(d, region, off, size);
}

static UNUSED_FN void dev_wr(struct device *d, int region, uint64_t off, unsigned size,
			     uint64_t val)
{
	d->ops->write(d, region, off, size, val);
}

/* Save a, load into b, save b: both saves must be byte-identical. Leaves a's
 * state in *out for corruption tests (caller frees). */
static UNUSED_FN void roundtrip(struct device *a, struct device *b, struct state_buf *out)
{
	struct state_buf s1 = { 0 }, s2 = { 0 };

	ck_assert_int_eq(a->ops->save(a, &s1), 0);
	ck_assert(!s1.error);
	ck_assert_uint_ge(s1.len, 12);
	ck_assert_int_eq(b->ops->load(b, &s1), 0);
	ck_assert_uint_eq(s1.pos, s1.len);
	ck_assert_int_eq(b->ops->save(b, &s2), 0);
	ck_assert_uint_eq(s1.len, s2.len);
	ck_assert_mem_eq(s1.data, s2.data, s1.len);
	state_free(&s2);
	s1.pos = 0;
	*out = s1;
}

/* A reader over a copy of saved bytes, possibly cut short or patched. */
static UNUSED_FN struct state_buf state_copy(const struct state_buf *src, size_t len)
{
	struct state_buf b = { 0 };

	state_put_bytes(&b, src->data, len);
	b.pos = 0;
	return b;
}

/* Every proper prefix of a saved state must fail to load, and leave the device
 * as it was (its own save is unchanged). */
static UNUSED_FN void check_truncations(struct device *d, const struct state_buf *good)
{
	struct state_buf before = { 0 }, after = { 0 };

	ck_assert_int_eq(d->ops->save(d, &before), 0);
	for (size_t n = 0; n < good->len; n++) {
		struct state_buf b = state_copy(good, n);

		ck_assert_msg(d->ops->load(d, &b) == -EINVAL, "load of %zu/%zu bytes accepted", n,
			      good->len);
		state_free(&b);
	}
	ck_assert_int_eq(d->ops->save(d, &after), 0);
	ck_assert_uint_eq(before.len, after.len);
	ck_assert_mem_eq(before.data, after.data, before.len);
	state_free(&before);
	state_free(&after);
}

/* Patch byte `at` of a saved state to v and expect load to fail. */
static UNUSED_FN void check_patched_fails(struct device *d, const struct state_buf *good, size_t at,
					  uint8_t v)
{
	struct state_buf b = state_copy(good, good->len);

	ck_assert_uint_lt(at, b.len);
	b.data[at] = v;
	ck_assert_msg(d->ops->load(d, &b) == -EINVAL, "patched byte %zu = %#x accepted", at, v);
	state_free(&b);
}

/* The same saved state with one byte patched must load. */
static UNUSED_FN void check_patched_loads(struct device *d, const struct state_buf *good, size_t at,
					  uint8_t v)
{
	struct state_buf b = state_copy(good, good->len);

	b.data[at] = v;
	ck_assert_int_eq(d->ops->load(d, &b), 0);
	state_free(&b);
}

#define STATE_HDR 12 /* {id, version, length} */

static UNUSED_FN int locked_load(struct device *d, struct state_buf *b)
{
	int ret;

	pthread_mutex_lock(&d->lock);
	ret = d->ops->load(d, b);
	pthread_mutex_unlock(&d->lock);
	return ret;
}

static UNUSED_FN struct state_buf locked_save(struct device *d)
{
	struct state_buf b = { 0 };

	pthread_mutex_lock(&d->lock);
	ck_assert_int_eq(d->ops->save(d, &b), 0);
	pthread_mutex_unlock(&d->lock);
	ck_assert(!b.error);
	return b;
}

static UNUSED_FN void expect_saves(struct device *d, const uint8_t *data, size_t len,
				   const char *why, size_t at)
{
	struct state_buf now = locked_save(d);
	size_t diff = 0;

	while (diff < len && diff < now.len && now.data[diff] == data[diff])
		diff++;
	ck_assert_msg(now.len == len && diff == len,
		      "%s (byte %zu): the device's state differs at byte %zu", why, at, diff);
	state_free(&now);
}

/* Load s (from its start) into d: accepted, and d then saves the same bytes. */
static UNUSED_FN void load_saves_same(struct device *d, struct state_buf *s)
{
	s->pos = 0;
	ck_assert_int_eq(locked_load(d, s), 0);
	expect_saves(d, s->data, s->len, "after the load", 0);
}

/* Every corruption of good (a state saved by another device of d's kind and
 * configuration) against d, under d's lock as the registry calls it: each
 * cut refused; a wrong section id, version 0 and a version from the future
 * refused; and each byte flipped (xor 0xff) either refused with d unchanged,
 * or taken whole — d then saves the flipped bytes, or (for bits the model
 * keeps from itself, like PCI read-only bits) a state that loads back to
 * itself. A refused load never half-applies. d is put back after each accepted flip. Returns how many
 * flips were refused. */
static UNUSED_FN unsigned check_every_corruption(struct device *d, const struct state_buf *good)
{
	struct state_buf before = locked_save(d);
	unsigned refused = 0;

	for (size_t n = 0; n < good->len; n++) {
		struct state_buf b = state_copy(good, n);

		ck_assert_msg(locked_load(d, &b) < 0, "load of %zu/%zu bytes accepted", n,
			      good->len);
		state_free(&b);
	}
	expect_saves(d, before.data, before.len, "after the cuts", 0);
	for (size_t at = 0; at < 8; at++) {
		struct state_buf b = state_copy(good, good->len);

		if (at < 4)
			b.data[at] ^= 0x20; /* another section id */
		else
			memcpy(b.data + 4, at == 4 ? "\0\0\0\0" : "\x7f\0\0\0",
			       4); /* version 0, 127 */
		ck_assert_msg(locked_load(d, &b) < 0, "header patch %zu accepted", at);
		state_free(&b);
	}
	for (size_t at = 0; at < good->len; at++) {
		struct state_buf b = state_copy(good, good->len);

		b.data[at] ^= 0xff;
		if (locked_load(d, &b) < 0) {
			refused++;
			expect_saves(d, before.data, before.len, "refused flip changed the device",
				     at);
		} else {
			struct state_buf now = locked_save(d);

			ck_assert_msg(b.pos == b.len, "flip at %zu: load stopped short", at);
			/* Taken whole, or some bits kept from the live device (the
			 * read-only bits pci_dev_load keeps): then what the device
			 * holds must be a state it saves and loads unchanged. */
			if (now.len != b.len || memcmp(now.data, b.data, b.len)) {
				struct state_buf again = state_copy(&now, now.len);

				ck_assert_msg(locked_load(d, &again) == 0,
					      "flip at %zu: not a fixpoint", at);
				expect_saves(d, now.data, now.len, "flip not a fixpoint", at);
				state_free(&again);
			}
			state_free(&now);
			state_free(&b);
			b = state_copy(&before, before.len);
			ck_assert_int_eq(locked_load(d, &b), 0);
		}
		state_free(&b);
	}
	expect_saves(d, before.data, before.len, "after the flips", 0);
	state_free(&before);
	return refused;
}

#endif
