/* Split virtqueue walking on crafted rings: plain and indirect chains, used
 * ring and interrupt suppression (flags, EVENT_IDX), 16-bit index wrap, and
 * every kind of nonsense a guest can write (loops, addresses outside RAM,
 * oversized lengths, bad indices, misordered or nested descriptors); and a
 * reset on another thread while a pop is under way. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <string.h>
#include <time.h>

#include "kestrel/virtio.h"
#include "check_util.h"

#define RAM   MiB(4)
#define QSZ   8
#define DESC  0x1000
#define AVAIL 0x2000
#define USED  0x3000
#define BUF   0x10000
#define ITAB  0x8000

static struct guest_mem gm;
static struct virtq vq;
static struct iovec iov[64];
static uint16_t avail_idx;

static void put16(uint64_t gpa, uint16_t v)
{
	ck_assert_int_eq(gm_write(&gm, gpa, &v, 2), 0);
}

static uint16_t get16(uint64_t gpa)
{
	uint16_t v;

	ck_assert_int_eq(gm_read(&gm, gpa, &v, 2), 0);
	return v;
}

static uint32_t get32(uint64_t gpa)
{
	uint32_t v;

	ck_assert_int_eq(gm_read(&gm, gpa, &v, 4), 0);
	return v;
}

static void desc_at(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		    uint16_t next)
{
	struct virtq_desc d = { addr, len, flags, next };

	ck_assert_int_eq(gm_write(&gm, table + 16ULL * i, &d, sizeof(d)), 0);
}

static void desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	desc_at(DESC, i, addr, len, flags, next);
}

static void avail_add(uint16_t head)
{
	put16(AVAIL + 4 + 2 * (avail_idx % QSZ), head);
	avail_idx++;
	put16(AVAIL + 2, avail_idx);
}

static void setup_features(uint64_t features)
{
	ck_assert_int_eq(gm_init(&gm, RAM, false), 0);
	vq_init_empty(&vq);
	avail_idx = 0;
	ck_assert_int_eq(vq_init(&vq, &gm, QSZ, DESC, AVAIL, USED, features), 0);
}

static void setup(void)
{
	setup_features(VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
}

static void teardown(void)
{
	gm_destroy(&gm);
}

static int pop(struct vq_elem *e)
{
	return vq_pop(&vq, e, iov, QSZ);
}

START_TEST(init_validates)
{
	struct virtq q;

	vq_init_empty(&q);
	ck_assert_int_eq(vq_init(&q, &gm, 6, DESC, AVAIL, USED, 0), -EINVAL); /* not 2^n */
	ck_assert_int_eq(vq_init(&q, &gm, 0, DESC, AVAIL, USED, 0), -EINVAL);
	ck_assert_int_eq(vq_init(&q, &gm, 8, DESC + 8, AVAIL, USED, 0), -EINVAL); /* align 16 */
	ck_assert_int_eq(vq_init(&q, &gm, 8, DESC, AVAIL + 1, USED, 0), -EINVAL); /* align 2 */
	ck_assert_int_eq(vq_init(&q, &gm, 8, DESC, AVAIL, USED + 2, 0), -EINVAL); /* align 4 */
	ck_assert_int_eq(vq_init(&q, &gm, 8, RAM - 64, AVAIL, USED, 0), -EINVAL); /* past RAM */
	ck_assert_int_eq(vq_init(&q, &gm, 8, DESC, AVAIL, RAM - 16, 0), -EINVAL);
	ck_assert_int_eq(vq_init(&q, &gm, 8, DESC, AVAIL, ~0ULL - 3, 0), -EINVAL); /* wraps */
	ck_assert(!q.ready);
	ck_assert_int_eq(vq_pop(&q, &(struct vq_elem){ 0 }, iov, QSZ), 0);
}
END_TEST

START_TEST(simple_chain)
{
	struct vq_elem e;

	ck_assert_int_eq(pop(&e), 0);
	desc(0, BUF, 16, VIRTQ_DESC_F_NEXT, 3);
	desc(3, BUF + 0x100, 32, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 5);
	desc(5, BUF + 0x200, 8, VIRTQ_DESC_F_WRITE, 0);
	avail_add(0);
	ck_assert(vq_has_work(&vq));
	ck_assert_int_eq(pop(&e), 1);
	ck_assert_uint_eq(e.head, 0);
	ck_assert_uint_eq(e.out_num, 1);
	ck_assert_uint_eq(e.in_num, 2);
	ck_assert_uint_eq(e.out_len, 16);
	ck_assert_uint_eq(e.in_len, 40);
	ck_assert_ptr_eq(e.iov[0].iov_base, gm_ptr(&gm, BUF, 16));
	ck_assert_ptr_eq(e.iov[2].iov_base, gm_ptr(&gm, BUF + 0x200, 8));
	ck_assert_int_eq(pop(&e), 0);
	ck_assert(!vq_has_work(&vq));

	/* Used ring: {id, len}, idx, and an interrupt (no suppression asked). */
	ck_assert(vq_push(&vq, 0, 40));
	ck_assert_uint_eq(get16(USED + 2), 1);
	ck_assert_uint_eq(get32(USED + 4), 0);
	ck_assert_uint_eq(get32(USED + 8), 40);
}
END_TEST

START_TEST(zero_length_buffer_skipped)
{
	struct vq_elem e;

	desc(0, BUF, 0, VIRTQ_DESC_F_NEXT, 1);
	desc(1, BUF, 4, VIRTQ_DESC_F_WRITE, 0);
	avail_add(0);
	ck_assert_int_eq(pop(&e), 1);
	ck_assert_uint_eq(e.out_num, 0);
	ck_assert_uint_eq(e.in_num, 1);
}
END_TEST

START_TEST(no_interrupt_flag)
{
	desc(0, BUF, 4, 0, 0);
	avail_add(0);
	ck_assert_int_eq(pop(&(struct vq_elem){ 0 }), 1);
	put16(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	ck_assert(!vq_push(&vq, 0, 0));
	put16(AVAIL, 0);
	ck_assert(vq_push(&vq, 0, 0));
}
END_TEST

START_TEST(event_idx_interrupts)
{
	struct vq_elem e;

	teardown();
	setup_features(VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	desc(0, BUF, 4, 0, 0);
	put16(AVAIL + 4 + 2 * QSZ, 3); /* used_event: interrupt once used idx passes 3 */
	for (int i = 0; i < 6; i++) {
		avail_add(0);
		ck_assert_int_eq(pop(&e), 1);
		/* First push always notifies; then only crossing used_event (4th entry). */
		bool want = i == 0 || i == 3;

		ck_assert_msg(vq_push(&vq, 0, 0) == want, "push %d", i);
	}
	/* The flag is ignored with EVENT_IDX (2.6.10). */
	put16(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	put16(AVAIL + 4 + 2 * QSZ, 6);
	avail_add(0);
	ck_assert_int_eq(pop(&e), 1);
	ck_assert(vq_push(&vq, 0, 0));
}
END_TEST

START_TEST(notify_suppression)
{
	desc(0, BUF, 4, 0, 0);
	vq_notify_off(&vq);
	ck_assert_uint_eq(get16(USED), VIRTQ_USED_F_NO_NOTIFY);
	ck_assert(!vq_notify_on(&vq));
	ck_assert_uint_eq(get16(USED), 0);
	avail_add(0);
	ck_assert(vq_notify_on(&vq)); /* work arrived: keep going */

	teardown();
	setup_features(VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	desc(0, BUF, 4, 0, 0);
	avail_add(0);
	avail_add(0);
	ck_assert_int_eq(pop(&(struct vq_elem){ 0 }), 1);
	ck_assert(vq_notify_on(&vq));
	ck_assert_uint_eq(get16(USED + 4 + 8 * QSZ), 1); /* avail_event = last_avail */
	ck_assert_int_eq(pop(&(struct vq_elem){ 0 }), 1);
	ck_assert(!vq_notify_on(&vq));
	ck_assert_uint_eq(get16(USED + 4 + 8 * QSZ), 2);
}
END_TEST

START_TEST(index_wraparound)
{
	struct vq_elem e;

	/* Both sides 65534 entries in: avail->idx wraps from 0xffff to 0. */
	vq.last_avail = vq.used_idx = 0xfffe;
	avail_idx = 0xfffe;
	for (uint16_t i = 0; i < 3; i++)
		desc(i, BUF + 64 * i, 4, 0, 0);
	avail_add(0);
	avail_add(1);
	avail_add(2);
	ck_assert_uint_eq(get16(AVAIL + 2), 1);
	for (uint16_t i = 0; i < 3; i++) {
		ck_assert_int_eq(pop(&e), 1);
		ck_assert_uint_eq(e.head, i);
		ck_assert(vq_push(&vq, e.head, i));
	}
	ck_assert_int_eq(pop(&e), 0);
	ck_assert_uint_eq(get16(USED + 2), 1);
	ck_assert_uint_eq(get32(USED + 4 + 8 * 6), 0); /* 0xfffe % 8 */
	ck_assert_uint_eq(get32(USED + 4 + 8 * 7), 1);
	ck_assert_uint_eq(get32(USED + 4 + 8 * 0), 2);
}
END_TEST

START_TEST(indirect_chain)
{
	struct vq_elem e;

	desc_at(ITAB, 0, BUF, 51, VIRTQ_DESC_F_NEXT, 1);
	desc_at(ITAB, 1, BUF + 0x100, 512, VIRTQ_DESC_F_NEXT, 2);
	desc_at(ITAB, 2, BUF + 0x400, 108, VIRTQ_DESC_F_WRITE, 0);
	desc(2, BUF + 0x800, 4, VIRTQ_DESC_F_NEXT, 6); /* direct, then the table */
	desc(6, ITAB, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_add(2);
	ck_assert_int_eq(pop(&e), 1);
	ck_assert_uint_eq(e.head, 2);
	ck_assert_uint_eq(e.out_num, 3);
	ck_assert_uint_eq(e.in_num, 1);
	ck_assert_uint_eq(e.out_len, 4 + 51 + 512);
	ck_assert_uint_eq(e.in_len, 108);
}
END_TEST

/* Each broken chain: pop fails with -EPROTO, the queue stays broken. */
static void expect_broken(uint16_t head)
{
	avail_add(head);
	ck_assert_int_eq(pop(&(struct vq_elem){ 0 }), -EPROTO);
	ck_assert(vq.broken);
	ck_assert_int_eq(pop(&(struct vq_elem){ 0 }), -EPROTO);
	ck_assert(!vq_has_work(&vq));
}

START_TEST(loop_detected)
{
	desc(0, BUF, 4, VIRTQ_DESC_F_NEXT, 1);
	desc(1, BUF, 4, VIRTQ_DESC_F_NEXT, 0);
	expect_broken(0);
}
END_TEST

START_TEST(self_loop_detected)
{
	desc(4, BUF, 4, VIRTQ_DESC_F_NEXT, 4);
	expect_broken(4);
}
END_TEST

START_TEST(indirect_loop_detected)
{
	desc_at(ITAB, 0, BUF, 4, VIRTQ_DESC_F_NEXT, 1);
	desc_at(ITAB, 1, BUF, 4, VIRTQ_DESC_F_NEXT, 0);
	desc(0, ITAB, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	expect_broken(0);
}
END_TEST

START_TEST(full_length_chain_ok)
{
	struct vq_elem e;

	for (unsigned i = 0; i < QSZ; i++)
		desc(i, BUF + 16 * i, 16, i + 1 < QSZ ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	avail_add(0);
	ck_assert_int_eq(pop(&e), 1);
	ck_assert_uint_eq(e.out_num, QSZ);
	/* The same chain with room for fewer buffers than it has. */
	avail_add(0);
	ck_assert_int_eq(vq_pop(&vq, &e, iov, QSZ - 1), -EPROTO);
}
END_TEST

START_TEST(buffer_outside_ram)
{
	desc(0, RAM - 8, 16, 0, 0); /* straddles the end */
	expect_broken(0);
}
END_TEST

START_TEST(buffer_far_outside_ram)
{
	desc(0, 0xfee00000ULL, 4, 0, 0); /* the LAPIC, not RAM */
	expect_broken(0);
}
END_TEST

START_TEST(oversized_length)
{
	desc(0, BUF, 0xffffffffu, VIRTQ_DESC_F_WRITE, 0);
	expect_broken(0);
}
END_TEST

START_TEST(address_wraps)
{
	desc(0, ~0ULL - 1, 16, 0, 0);
	expect_broken(0);
}
END_TEST

START_TEST(next_out_of_range)
{
	desc(0, BUF, 4, VIRTQ_DESC_F_NEXT, QSZ);
	expect_broken(0);
}
END_TEST

START_TEST(head_out_of_range)
{
	expect_broken(QSZ + 3);
}
END_TEST

START_TEST(readable_after_writable)
{
	desc(0, BUF, 4, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	desc(1, BUF, 4, 0, 0);
	expect_broken(0);
}
END_TEST

START_TEST(avail_idx_too_far_ahead)
{
	desc(0, BUF, 4, 0, 0);
	put16(AVAIL + 2, QSZ + 1);
	ck_assert_int_eq(pop(&(struct vq_elem){ 0 }), -EPROTO);
	ck_assert(vq.broken);
}
END_TEST

START_TEST(indirect_without_feature)
{
	teardown();
	setup_features(0);
	desc_at(ITAB, 0, BUF, 4, 0, 0);
	desc(0, ITAB, 16, VIRTQ_DESC_F_INDIRECT, 0);
	expect_broken(0);
}
END_TEST

START_TEST(indirect_nested)
{
	desc_at(ITAB, 0, ITAB + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
	desc(0, ITAB, 16, VIRTQ_DESC_F_INDIRECT, 0);
	expect_broken(0);
}
END_TEST

START_TEST(indirect_with_next)
{
	desc_at(ITAB, 0, BUF, 4, 0, 0);
	desc(0, ITAB, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	desc(1, BUF, 4, 0, 0);
	expect_broken(0);
}
END_TEST

START_TEST(indirect_bad_length)
{
	desc(0, ITAB, 20, VIRTQ_DESC_F_INDIRECT, 0);
	expect_broken(0);
}
END_TEST

START_TEST(indirect_too_long)
{
	desc(0, ITAB, 16 * (QSZ + 1), VIRTQ_DESC_F_INDIRECT, 0);
	expect_broken(0);
}
END_TEST

START_TEST(indirect_table_outside_ram)
{
	desc(0, RAM - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	expect_broken(0);
}
END_TEST

START_TEST(indirect_next_out_of_table)
{
	desc_at(ITAB, 0, BUF, 4, VIRTQ_DESC_F_NEXT, 1); /* entry 1 lies past the table */
	desc(0, ITAB, 16, VIRTQ_DESC_F_INDIRECT, 0);
	expect_broken(0);
}
END_TEST

START_TEST(reset_clears_broken)
{
	desc(0, BUF, 4, VIRTQ_DESC_F_NEXT, 0);
	expect_broken(0);
	vq_reset(&vq);
	ck_assert(!vq.broken && !vq.ready);
	avail_idx = 0;
	put16(AVAIL + 2, 0);
	ck_assert_int_eq(vq_init(&vq, &gm, QSZ, DESC, AVAIL, USED, 0), 0);
	desc(0, BUF, 4, 0, 0);
	avail_add(0);
	ck_assert_int_eq(pop(&(struct vq_elem){ 0 }), 1);
}
END_TEST

/* This suite builds its own devices/synthetic/virtqueue.c with
 * KESTREL_VQ_TEST_HOOKS (CMakeLists.txt), whose vq_pop calls this hook after
 * it found the queue ready and before it reads the rings. */
extern void (*vq_test_pop_hook)(struct virtq *vq);

static sem_t pop_paused, pop_go, reset_done;
static struct vq_elem race_elem;
static int race_pop;

static void pause_pop(struct virtq *q)
{
	(void)q;
	sem_post(&pop_paused);
	sem_wait(&pop_go);
}

static void *race_popper(void *arg)
{
	(void)arg;
	race_pop = pop(&race_elem);
	return NULL;
}

static void *race_resetter(void *arg)
{
	(void)arg;
	vq_reset(&vq); /* what a vCPU thread does for device_status = 0 */
	sem_post(&reset_done);
	return NULL;
}

/* An I/O thread in vq_pop has seen the queue ready when a vCPU thread
 * resets it (issue #9). Without vq->lock in vq_pop the reset went through at
 * once and the pop went on with the cleared rings: a NULL dereference. Now
 * the reset waits until the pop is done, and the pop takes its chain whole
 * from the rings it started on. */
START_TEST(reset_waits_for_pop)
{
	struct timespec t;
	pthread_t popper, resetter;

	desc(0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(1, BUF + 0x100, 32, VIRTQ_DESC_F_WRITE, 0);
	avail_add(0);
	sem_init(&pop_paused, 0, 0);
	sem_init(&pop_go, 0, 0);
	sem_init(&reset_done, 0, 0);
	vq_test_pop_hook = pause_pop;
	ck_assert_int_eq(pthread_create(&popper, NULL, race_popper, NULL), 0);
	sem_wait(&pop_paused);
	ck_assert_int_eq(pthread_create(&resetter, NULL, race_resetter, NULL), 0);
	/* A reset that does not wait finishes now; give it a second to. */
	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_sec += 1;
	ck_assert_msg(sem_timedwait(&reset_done, &t) != 0,
		      "the queue was reset while vq_pop was using it");
	sem_post(&pop_go);
	pthread_join(popper, NULL);
	pthread_join(resetter, NULL);
	vq_test_pop_hook = NULL;
	ck_assert_int_eq(race_pop, 1);
	ck_assert_uint_eq(race_elem.head, 0);
	ck_assert_uint_eq(race_elem.out_len, 16);
	ck_assert_uint_eq(race_elem.in_len, 32);
	ck_assert(!vq.ready);
	ck_assert_int_eq(pop(&race_elem), 0);
	ck_assert(!vq_push(&vq, 0, 32)); /* a late completion writes nothing */
}
END_TEST

START_TEST(iov_helpers)
{
	uint8_t a[4], b[6], c[8], out[18];
	struct iovec v[3] = { { a, 4 }, { b, 6 }, { c, 8 } }, s[3];
	const char *msg = "0123456789abcdefgh";

	ck_assert_uint_eq(vq_iov_write(v, 3, 0, msg, 18), 18);
	ck_assert_int_eq(memcmp(b, "456789", 6), 0);
	ck_assert_uint_eq(vq_iov_read(v, 3, 3, out, 5), 5);
	ck_assert_int_eq(memcmp(out, "34567", 5), 0);
	ck_assert_uint_eq(vq_iov_read(v, 3, 16, out, 10), 2); /* what is left */
	ck_assert_uint_eq(vq_iov_write(v, 3, 40, msg, 4), 0);
	ck_assert_int_eq(vq_iov_slice(v, 3, 2, 10, s, 3), 3);
	ck_assert_ptr_eq(s[0].iov_base, a + 2);
	ck_assert_uint_eq(s[0].iov_len, 2);
	ck_assert_uint_eq(s[1].iov_len, 6);
	ck_assert_uint_eq(s[2].iov_len, 2);
	ck_assert_int_eq(vq_iov_slice(v, 3, 2, 10, s, 2), -1); /* no room */
	ck_assert_int_eq(vq_iov_slice(v, 3, 10, 9, s, 3), -1); /* past the end */
	ck_assert_int_eq(vq_iov_slice(v, 3, 4, 6, s, 3), 1);
	ck_assert_ptr_eq(s[0].iov_base, b);
}
END_TEST

/* Live migration's view: the device's writes reach the dirty log (KVM sees
 * only the guest's). vq_push marks the used ring, vq_mark_written the bytes
 * a device put into the chain's writable buffers; readable buffers and the
 * rings the guest writes stay clean. */
START_TEST(dirty_log_sees_device_writes)
{
	int low = gm_slot_at(&gm, 0);
	uint64_t bm[0xa0000 / 4096 / 64 + 1];
	struct vq_elem e;

	ck_assert_int_eq(gm_dirty_log_start(&gm), 0);
	desc(0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(1, BUF + 0x1000, 0x1800, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	desc(2, BUF + 0x5000, 32, VIRTQ_DESC_F_WRITE, 0);
	avail_add(0);
	ck_assert_int_eq(gm_dirty_fetch(&gm, low, bm, 0xa0, true), 2); /* the driver's own */
	ck_assert_int_eq(pop(&e), 1);
	ck_assert_int_eq(gm_dirty_fetch(&gm, low, bm, 0xa0, true), 0); /* popping reads */
	/* 0x1800 bytes fill the first writable buffer, 4 go into the second. */
	vq_mark_written(&vq, e.iov + e.out_num, e.in_num, 0x1800 + 4);
	ck_assert(vq_push(&vq, e.head, 0x1800 + 4));
	ck_assert_int_eq(gm_dirty_fetch(&gm, low, bm, 0xa0, true), 4);
	ck_assert(bm[0] == (1ULL << (USED / 4096) | 1ULL << 0x11 | 1ULL << 0x12 | 1ULL << 0x15));
	/* Notification suppression writes the used ring too. */
	vq_notify_off(&vq);
	ck_assert_int_eq(gm_dirty_fetch(&gm, low, bm, 0xa0, true), 1);
	ck_assert(bm[0] == 1ULL << (USED / 4096));
	ck_assert(!vq_notify_on(&vq));
	ck_assert_int_eq(gm_dirty_fetch(&gm, low, bm, 0xa0, true), 1);
	/* Nothing written, nothing marked. */
	vq_mark_written(&vq, e.iov + e.out_num, e.in_num, 0);
	ck_assert_int_eq(gm_dirty_fetch(&gm, low, bm, 0xa0, true), 0);
}
END_TEST

SUITE_MAIN("virtqueue", "core", setup, teardown, 0, init_validates, simple_chain,
	   zero_length_buffer_skipped, no_interrupt_flag, event_idx_interrupts, notify_suppression,
	   index_wraparound, indirect_chain, loop_detected, self_loop_detected,
	   indirect_loop_detected, full_length_chain_ok, buffer_outside_ram, buffer_far_outside_ram,
	   oversized_length, address_wraps, next_out_of_range, head_out_of_range,
	   readable_after_writable, avail_idx_too_far_ahead, indirect_without_feature,
	   indirect_nested, indirect_with_next, indirect_bad_length, indirect_too_long,
	   indirect_table_outside_ram, indirect_next_out_of_table, reset_clears_broken,
	   reset_waits_for_pop, iov_helpers, dirty_log_sees_device_writes)
