/* The display surface (src/display/): refresh through a fake source, tile
 * generations and the change rectangles consumers get, resizes, the
 * notification fd, and screendumps written with libpng and read back with
 * libpng here, pixel for pixel. */
#include <check.h>
#include <errno.h>
#include <png.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/display.h"
#include "fake_board.h"

struct fake_src {
	uint32_t w, h;
	uint32_t color;
	struct display_rect draw; /* what the next refresh paints with color */
	bool pending;
	int calls;
};

static void fake_refresh(void *opaque, struct display *d, struct display_hint *hint)
{
	struct fake_src *f = opaque;
	const struct display_surface *s;

	f->calls++;
	ck_assert_int_eq(display_resize(d, f->w, f->h), 0);
	hint->next_ms = 5;
	if (!f->pending)
		return;
	s = display_surface(d);
	for (uint32_t y = f->draw.y; y < f->draw.y + f->draw.h && y < s->height; y++)
		for (uint32_t x = f->draw.x; x < f->draw.x + f->draw.w && x < s->width; x++)
			s->pixels[(size_t)y * s->stride + x] = f->color;
	display_damage(d, f->draw.x, f->draw.y, f->draw.w, f->draw.h);
	f->pending = false;
}

static const struct display_source_ops fake_ops = { .refresh = fake_refresh };

static struct display_status refresh(struct display *d)
{
	struct display_status st;

	display_lock(d);
	display_refresh(d, &st);
	display_unlock(d);
	return st;
}

START_TEST(test_default_surface)
{
	struct display *d = display_create();
	struct display_rect r[4];
	struct display_status st = refresh(d);

	ck_assert_uint_eq(st.width, 640);
	ck_assert_uint_eq(st.height, 480);
	ck_assert_uint_eq(st.gen, 1);
	ck_assert_int_eq(st.next_ms, -1);
	ck_assert_int_eq(st.poll_ms, -1);
	/* A consumer that has seen nothing gets everything, bounded when the
	 * rectangles do not fit. */
	ck_assert_uint_eq(display_changes(d, 0, r, 4), 1);
	ck_assert_uint_eq(r[0].w, 640);
	ck_assert_uint_eq(r[0].h, 480);
	ck_assert_uint_eq(display_changes(d, 1, r, 4), 0);
	display_destroy(d);
}
END_TEST

START_TEST(test_changes_by_generation)
{
	struct display *d = display_create();
	struct fake_src f = { .w = 100, .h = 50, .color = 0x123456 };
	struct display_rect r[8];
	struct display_status a, b, c;

	display_set_source(d, &fake_ops, &f);
	a = refresh(d);
	ck_assert_uint_eq(a.width, 100);
	ck_assert_uint_eq(a.resize_gen, a.gen);
	ck_assert_int_eq(a.next_ms, 5);
	b = refresh(d);
	ck_assert_uint_eq(b.gen, a.gen); /* nothing drawn: same generation */
	f.draw = (struct display_rect){ 20, 3, 2, 2 };
	f.pending = true;
	c = refresh(d);
	ck_assert_uint_eq(c.gen, a.gen + 1);
	ck_assert_uint_eq(display_changes(d, b.gen, r, 8), 1);
	ck_assert_uint_eq(r[0].x, 16);
	ck_assert_uint_eq(r[0].y, 0);
	ck_assert_uint_eq(r[0].w, 16);
	ck_assert_uint_eq(r[0].h, 16);
	/* Two separate areas, one spanning tiles to the clipped edge. */
	f.draw = (struct display_rect){ 0, 40, 100, 1 };
	f.pending = true;
	refresh(d);
	ck_assert_uint_eq(display_changes(d, b.gen, r, 8), 2);
	ck_assert_uint_eq(r[1].y, 32);
	ck_assert_uint_eq(r[1].w, 100);
	ck_assert_uint_eq(r[1].h, 16);
	ck_assert_uint_eq(display_changes(d, c.gen, r, 8), 1);
	/* Bounded: one rectangle around both. */
	ck_assert_uint_eq(display_changes(d, b.gen, r, 1), 1);
	ck_assert_uint_eq(r[0].x, 0);
	ck_assert_uint_eq(r[0].y, 0);
	ck_assert_uint_eq(r[0].w, 100);
	ck_assert_uint_eq(r[0].h, 48);
	ck_assert_int_eq(f.calls, 4);
	display_destroy(d);
}
END_TEST

START_TEST(test_resize_clamped)
{
	struct display *d = display_create();
	struct fake_src f = { .w = 100000, .h = 0 };
	struct display_status st;

	display_set_source(d, &fake_ops, &f);
	st = refresh(d);
	ck_assert_uint_eq(st.width, DISPLAY_MAX_WIDTH);
	ck_assert_uint_eq(st.height, 1);
	f.w = 8;
	f.h = 8;
	st = refresh(d);
	ck_assert_uint_eq(st.resize_gen, st.gen);
	ck_assert_uint_eq(display_surface(d)->pixels[0], 0); /* cleared */
	display_destroy(d);
}
END_TEST

START_TEST(test_notify_fd)
{
	struct display *d = display_create();
	struct pollfd p = { .fd = display_notify_fd(d), .events = POLLIN };
	uint64_t n;

	display_changed(d);
	ck_assert_int_eq(poll(&p, 1, 0), 0);
	refresh(d);
	display_changed(d);
	display_changed(d);
	ck_assert_int_eq(poll(&p, 1, 0), 1);
	ck_assert_int_eq(read(p.fd, &n, sizeof(n)), 8);
	ck_assert_uint_eq(n, 1);
	display_changed(NULL);
	display_destroy(d);
}
END_TEST

/* ---- PNG ---- */

static uint32_t pattern(uint32_t x, uint32_t y)
{
	return (x * 7 & 0xff) << 16 | (y * 13 & 0xff) << 8 | ((x ^ y) & 0xff);
}

/* The file read back with libpng's simplified API: 8-bit RGB. */
static uint8_t *png_load(const char *path, uint32_t *w, uint32_t *h)
{
	png_image img = { .version = PNG_IMAGE_VERSION };
	uint8_t *buf;

	ck_assert_msg(png_image_begin_read_from_file(&img, path), "%s: %s", path, img.message);
	ck_assert_uint_eq(img.format & PNG_FORMAT_FLAG_ALPHA, 0);
	img.format = PNG_FORMAT_RGB;
	buf = malloc(PNG_IMAGE_SIZE(img));
	ck_assert(png_image_finish_read(&img, NULL, buf, 0, NULL));
	*w = img.width;
	*h = img.height;
	return buf;
}

static char tmpdir[64];

static void png_setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_display.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void png_teardown(void)
{
	rm_tree(tmpdir);
}

START_TEST(test_png_roundtrip)
{
	uint32_t w = 37, h = 21, stride = 40, rw, rh;
	uint32_t *px = calloc((size_t)stride * h, 4);
	char path[128], err[256];
	uint8_t *rgb;
	struct stat st;

	for (uint32_t y = 0; y < h; y++)
		for (uint32_t x = 0; x < w; x++)
			px[y * stride + x] = pattern(x, y);
	snprintf(path, sizeof(path), "%s/a.png", tmpdir);
	ck_assert_int_eq(display_png_write(path, px, w, h, stride, err, sizeof(err)), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0644);
	rgb = png_load(path, &rw, &rh);
	ck_assert_uint_eq(rw, w);
	ck_assert_uint_eq(rh, h);
	for (uint32_t y = 0; y < h; y++)
		for (uint32_t x = 0; x < w; x++) {
			const uint8_t *p = rgb + 3 * (y * w + x);

			ck_assert_uint_eq((uint32_t)p[0] << 16 | p[1] << 8 | p[2], pattern(x, y));
		}
	free(rgb);
	free(px);
}
END_TEST

/* A dump that cannot be written says why and leaves nothing behind; one
 * over an existing file replaces it whole. */
START_TEST(test_png_errors)
{
	uint32_t px[4] = { 1, 2, 3, 4 }, w, h;
	char path[128], err[256] = "";
	uint8_t *rgb;
	FILE *f;

	snprintf(path, sizeof(path), "%s/missing/a.png", tmpdir);
	ck_assert_int_eq(display_png_write(path, px, 2, 2, 2, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "missing/a.png"));
	ck_assert_int_eq(display_png_write(path, px, 0, 2, 2, err, sizeof(err)), -EINVAL);
	snprintf(path, sizeof(path), "%s/old.png", tmpdir);
	f = fopen(path, "w");
	fputs("old", f);
	fclose(f);
	ck_assert_int_eq(display_png_write(path, px, 2, 2, 2, err, sizeof(err)), 0);
	rgb = png_load(path, &w, &h);
	ck_assert_uint_eq(w, 2);
	ck_assert_uint_eq(rgb[3 * 3 + 2], 4);
	free(rgb);
	/* No temporary file left: the folder holds old.png alone. */
	snprintf(path, sizeof(path), "test $(ls -A %s | wc -l) = 1", tmpdir);
	ck_assert_int_eq(system(path), 0);
}
END_TEST

START_TEST(test_screendump)
{
	struct display *d = display_create();
	struct fake_src f = {
		.w = 64, .h = 32, .color = 0xff8000, .draw = { 10, 10, 5, 5 }, .pending = true
	};
	char path[128], err[256];
	uint32_t w, h;
	uint8_t *rgb;

	display_set_source(d, &fake_ops, &f);
	snprintf(path, sizeof(path), "%s/dump.png", tmpdir);
	ck_assert_int_eq(display_screendump(d, path, &w, &h, err, sizeof(err)), 0);
	ck_assert_uint_eq(w, 64);
	ck_assert_uint_eq(h, 32);
	w = h = 0;
	rgb = png_load(path, &w, &h);
	ck_assert_uint_eq(w, 64);
	ck_assert_uint_eq(h, 32);
	ck_assert_uint_eq(rgb[3 * (12 * 64 + 12)], 0xff);
	ck_assert_uint_eq(rgb[3 * (12 * 64 + 12) + 1], 0x80);
	ck_assert_uint_eq(rgb[3 * (9 * 64 + 9)], 0);
	free(rgb);
	display_destroy(d);
}
END_TEST

static Suite *display_suite(void)
{
	Suite *s = suite_create("display");

	ADD_TCASE(s, "surface", NULL, NULL, 0, test_default_surface, test_changes_by_generation,
		  test_resize_clamped, test_notify_fd);
	ADD_TCASE(s, "png", png_setup, png_teardown, 0, test_png_roundtrip, test_png_errors,
		  test_screendump);
	return s;
}

int main(void)
{
	return run_suite(display_suite());
}
