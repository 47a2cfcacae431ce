/* vhd_merge_up (the merge that deleting a snapshot does) stopped after each
 * of its writes in turn, as a crash of the worker would stop it: this suite
 * builds its own vhd_io.c and vhd_convert.c with KESTREL_VHD_TEST_HOOKS,
 * whose vhd_test_writes_left fails every write and rename after the first N
 * (vhd/vhd_int.h). After each stop the chain through the child's name and
 * through the child's own child must read exactly as before the merge, and
 * running the merge again must finish it. Power loss (writes reordered
 * below the page cache) is not simulated: the order of the flushes is
 * what docs/state.md documents for that. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/vhd.h"
#include "../vhd/vhd_int.h"
#include "check_util.h"

#define ERRLEN 512
#define DISK   (2u << 20)
#define BS64K  (64u << 10)

static char tmpdir[] = "/tmp/kestrel-check-vhdm-XXXXXX";

static const char *tp(const char *name)
{
	return tmp_join(tmpdir, name);
}

static void create(const char *path, enum vhd_type type, const char *parent)
{
	struct vhd_create_opts o = { .type = type,
				     .size = parent ? 0 : DISK,
				     .block_size = BS64K,
				     .exact_size = true,
				     .parent = parent };
	char err[ERRLEN];

	unlink(path);
	ck_assert_msg(vhd_create(path, &o, err, sizeof(err)) == 0, "%s", err);
}

/* len bytes of value v at off of path (its chain opened read-write). */
static void put(const char *path, uint64_t off, uint64_t len, uint8_t v)
{
	struct vhd_image *img;
	char err[ERRLEN];
	uint8_t *buf = malloc(len);

	ck_assert_ptr_nonnull(buf);
	memset(buf, v, len);
	ck_assert_msg(vhd_open(&img, path, VHD_OPEN_RDWR, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(vhd_write(img, buf, len, off), 0);
	ck_assert_int_eq(vhd_close(img), 0);
	free(buf);
}

/* The whole disk as the chain from path reads it. */
static uint8_t *view(const char *path)
{
	struct vhd_image *img;
	char err[ERRLEN];
	uint8_t *buf = malloc(DISK);

	ck_assert_ptr_nonnull(buf);
	ck_assert_msg(vhd_open(&img, path, 0, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(vhd_read(img, buf, DISK, 0), 0);
	vhd_close(img);
	return buf;
}

static void copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY | O_CLOEXEC), out;
	char buf[65536];
	ssize_t n;

	ck_assert_int_ge(in, 0);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(out, 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
	ck_assert_int_eq(n, 0);
	close(in);
	close(out);
}

static const char *const names[] = { "p.vhd", "c.vhd", "g.vhd" };

static void save_golden(void)
{
	char gold[64];

	for (unsigned i = 0; i < 3; i++) {
		snprintf(gold, sizeof(gold), "%s.gold", names[i]);
		copy_file(tp(names[i]), tp(gold));
	}
}

static void restore_golden(void)
{
	char gold[64];

	for (unsigned i = 0; i < 3; i++) {
		snprintf(gold, sizeof(gold), "%s.gold", names[i]);
		copy_file(tp(gold), tp(names[i]));
	}
}

/* p (dynamic) <- c <- g, each with data of its own: c's overlaps p's
 * sectors, fills a whole block, and lands in blocks p never wrote. */
static void make_chain(void)
{
	create(tp("p.vhd"), VHD_TYPE_DYNAMIC, NULL);
	put(tp("p.vhd"), 0, 8192, 0x11);
	put(tp("p.vhd"), 3 * BS64K + 512, 4096, 0x12);
	create(tp("c.vhd"), VHD_TYPE_DIFF, tp("p.vhd"));
	put(tp("c.vhd"), 1024, 2048, 0x21);
	put(tp("c.vhd"), BS64K, BS64K, 0x22);
	put(tp("c.vhd"), 3 * BS64K, 1024, 0x23);
	put(tp("c.vhd"), 20 * BS64K + 4096, 512, 0x24);
	create(tp("g.vhd"), VHD_TYPE_DIFF, tp("c.vhd"));
	put(tp("g.vhd"), 1536, 512, 0x31);
	put(tp("g.vhd"), 20 * BS64K, 8192, 0x32);
}

static void expect_views(const uint8_t *want_c, const uint8_t *want_g, long n)
{
	uint8_t *c = view(tp("c.vhd")), *g = view(tp("g.vhd"));

	ck_assert_msg(memcmp(c, want_c, DISK) == 0,
		      "stopped after %ld writes: c.vhd reads otherwise", n);
	ck_assert_msg(memcmp(g, want_g, DISK) == 0,
		      "stopped after %ld writes: g.vhd reads otherwise", n);
	free(c);
	free(g);
}

START_TEST(test_merge_up_stopped_at_every_write)
{
	uint8_t *want_c, *want_g;
	char err[ERRLEN];
	long n;
	int rc;

	make_chain();
	want_c = view(tp("c.vhd"));
	want_g = view(tp("g.vhd"));
	save_golden();
	for (n = 0;; n++) {
		restore_golden();
		vhd_test_writes_left = n;
		rc = vhd_merge_up(tp("c.vhd"), false, err, sizeof(err));
		vhd_test_writes_left = -1;
		expect_views(want_c, want_g, n);
		if (rc == 0)
			break;
		ck_assert_msg(rc == -EIO, "stopped after %ld writes: %d %s", n, rc, err);
		/* Run again, it finishes: c.vhd is then the merged p.vhd. */
		ck_assert_msg(vhd_merge_up(tp("c.vhd"), false, err, sizeof(err)) == 0,
			      "after a stop at %ld writes, the merge again: %s", n, err);
		expect_views(want_c, want_g, n);
		ck_assert_msg(access(tp("p.vhd"), F_OK) < 0, "after a stop at %ld: p.vhd is left",
			      n);
	}
	/* Every data write, BAT and bitmap update, both footers and the
	 * rename had their turn to be the last. */
	ck_assert_msg(n >= 10, "the whole merge took %ld writes", n);
	ck_assert_int_eq(access(tp("p.vhd"), F_OK), -1);
	free(want_c);
	free(want_g);
}
END_TEST

/* The chain with a parent that took its child's id (a merge-up stopped
 * before its rename) is accepted only as that: a plain copy of the child
 * given as its parent is still a loop. */
START_TEST(test_copy_of_child_is_not_its_parent)
{
	struct vhd_image *img;
	char err[ERRLEN];

	make_chain();
	copy_file(tp("c.vhd"), tp("p.vhd"));
	ck_assert_int_ne(vhd_open(&img, tp("c.vhd"), 0, err, sizeof(err)), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vhd_merge");
	int failed;

	make_tmpdir(tmpdir);
	ADD_TCASE(s, "vhd_merge", NULL, NULL, 120, test_merge_up_stopped_at_every_write,
		  test_copy_of_child_is_not_its_parent);
	failed = run_suite(s);
	rm_tree(tmpdir);
	return failed;
}
