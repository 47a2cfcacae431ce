/* Screendumps: the display's picture as a PNG file (libpng), written through
 * a temporary file in the same folder and renamed over the target once it is
 * complete, so a failed dump (disk full, bad folder) damages nothing. The
 * path comes from the control socket's client (the VM's owner), never from
 * the guest. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/display.h"

struct png_job {
	FILE *f;
	const uint32_t *pixels;
	uint32_t width, height, stride;
	uint8_t *row;
	char msg[160];
};

static void png_error_cb(png_structp png, png_const_charp msg)
{
	struct png_job *j = png_get_error_ptr(png);

	snprintf(j->msg, sizeof(j->msg), "%s", msg);
	png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

static void png_row_rgb(uint8_t *out, const uint32_t *in, uint32_t width)
{
	for (uint32_t x = 0; x < width; x++) {
		out[3 * x] = (uint8_t)(in[x] >> 16);
		out[3 * x + 1] = (uint8_t)(in[x] >> 8);
		out[3 * x + 2] = (uint8_t)in[x];
	}
}

/* libpng reports errors by longjmp: nothing with automatic storage that
 * changes after setjmp is used after it. */
static int png_encode(struct png_job *j)
{
	png_structp png =
		png_create_write_struct(PNG_LIBPNG_VER_STRING, j, png_error_cb, png_warning_cb);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	volatile int ret = -EIO;

	if (!info) {
		snprintf(j->msg, sizeof(j->msg), "out of memory");
		png_destroy_write_struct(&png, NULL);
		return -ENOMEM;
	}
	if (setjmp(png_jmpbuf(png)) == 0) {
		png_init_io(png, j->f);
		/* Speed over size: a dump is taken while a consumer may wait.
		 * One filter (Sub, which suits screens) instead of libpng trying
		 * all five on every row. */
		png_set_compression_level(png, 1);
		png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_SUB);
		png_set_IHDR(png, info, j->width, j->height, 8, PNG_COLOR_TYPE_RGB,
			     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
			     PNG_FILTER_TYPE_DEFAULT);
		png_write_info(png, info);
		for (uint32_t y = 0; y < j->height; y++) {
			png_row_rgb(j->row, j->pixels + (size_t)y * j->stride, j->width);
			png_write_row(png, j->row);
		}
		png_write_end(png, NULL);
		ret = 0;
	}
	png_destroy_write_struct(&png, &info);
	return ret;
}

/* A temporary file next to path: path.XXXXXX, opened O_EXCL by mkstemp. */
static int tmp_open(const char *path, char *tmp, size_t len)
{
	int fd;

	if ((size_t)snprintf(tmp, len, "%s.XXXXXX", path) >= len)
		return -ENAMETOOLONG;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* mkstemp makes it 0600; a screendump is an ordinary file. */
	if (fchmod(fd, 0644) < 0) {
		int e = errno;

		close(fd);
		unlink(tmp);
		return -e;
	}
	return fd;
}

int display_png_write(const char *path, const uint32_t *pixels, uint32_t width, uint32_t height,
		      uint32_t stride, char *err, size_t errlen)
{
	struct png_job j = { .pixels = pixels, .width = width, .height = height, .stride = stride };
	char tmp[PATH_MAX];
	int fd, ret;

	if (!width || !height || stride < width) {
		snprintf(err, errlen, "%s: empty picture", path);
		return -EINVAL;
	}
	fd = tmp_open(path, tmp, sizeof(tmp));
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-fd));
		return fd;
	}
	j.f = fdopen(fd, "wb");
	j.row = malloc((size_t)width * 3);
	if (!j.f || !j.row) {
		ret = -ENOMEM;
		snprintf(j.msg, sizeof(j.msg), "out of memory");
		if (!j.f)
			close(fd);
	} else {
		ret = png_encode(&j);
	}
	free(j.row);
	if (j.f && fclose(j.f) != 0 && !ret) {
		ret = -errno;
		snprintf(j.msg, sizeof(j.msg), "%s", strerror(errno));
	}
	if (!ret && rename(tmp, path) < 0) {
		ret = -errno;
		snprintf(j.msg, sizeof(j.msg), "%s", strerror(errno));
	}
	if (ret) {
		unlink(tmp);
		snprintf(err, errlen, "%s: %s", path, j.msg);
	}
	return ret;
}

int display_screendump(struct display *d, const char *path, uint32_t *width, uint32_t *height,
		       char *err, size_t errlen)
{
	const struct display_surface *s;
	struct display_status st;
	uint32_t *copy;
	uint32_t w, h;
	int ret;

	display_lock(d);
	display_refresh(d, &st);
	s = display_surface(d);
	w = s->width;
	h = s->height;
	copy = malloc((size_t)w * h * sizeof(*copy));
	if (copy)
		for (uint32_t y = 0; y < h; y++)
			memcpy(copy + (size_t)y * w, s->pixels + (size_t)y * s->stride,
			       (size_t)w * sizeof(*copy));
	display_unlock(d);
	if (!copy) {
		snprintf(err, errlen, "out of memory for a %ux%u picture", w, h);
		return -ENOMEM;
	}
	ret = display_png_write(path, copy, w, h, w, err, errlen);
	free(copy);
	if (width)
		*width = w;
	if (height)
		*height = h;
	return ret;
}
