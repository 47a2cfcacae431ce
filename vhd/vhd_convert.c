/* `kestrel vhd convert|compact|merge|resize`. New images are built in a temp
 * file beside the target (vhd_builder: sequential, one fsync) and renamed into
 * place, so a failure leaves the target untouched. merge and the in-place
 * resize of a fixed disk change their file directly, in an order that keeps
 * it a valid image at every step (see each command). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/block.h"
#include "vhd_tool.h"

#define COPY_CHUNK (1u << 20)

/* ---- input: a VHD (with its chain) or a raw file ------------------------------------ */

struct src {
	const char *path;
	struct vhd_image *img;
	int fd;
	uint64_t size; /* bytes the output holds (raw: rounded up to a sector) */
	uint64_t raw_size;
};

static int src_open(struct src *s, const char *path, const char *parent_dir)
{
	char err[512];
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	memset(s, 0, sizeof(*s));
	s->path = path;
	s->fd = -1;
	if (fd < 0) {
		vhd_tool_err("%s: %s", path, strerror(errno));
		return -errno;
	}
	if (vhd_probe_fd(fd)) {
		close(fd);
		if (vhd_open_ex(&s->img, -1, path, 0, parent_dir, err, sizeof(err))) {
			vhd_tool_err("%s", err);
			return -EINVAL;
		}
		s->size = s->img->m.size;
		return 0;
	}
	s->fd = fd;
	if (vhd_file_size(fd, &s->raw_size) || s->raw_size == 0) {
		vhd_tool_err("%s: empty or not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	s->size = ALIGN_UP(s->raw_size, VHD_SECTOR);
	return 0;
}

static void src_close(struct src *s)
{
	if (s->img)
		vhd_close(s->img);
	if (s->fd >= 0)
		close(s->fd);
}

static int src_read(struct src *s, uint8_t *buf, uint64_t len, uint64_t off)
{
	uint64_t have;

	if (s->img)
		return vhd_read(s->img, buf, len, off);
	have = off < s->raw_size ? MIN(len, s->raw_size - off) : 0;
	memset(buf + have, 0, len - have);
	return have ? pread_full(s->fd, buf, have, off) : 0;
}

/* True when [off, off+len) is known to read as zeros without reading it:
 * a hole in a raw file, or unallocated in every image of a VHD chain. */
static bool src_known_zero(struct src *s, uint64_t off, uint64_t len)
{
	if (!s->img) {
		off_t d = lseek(s->fd, (off_t)off, SEEK_DATA);

		return (d < 0 && errno == ENXIO) || (d >= 0 && (uint64_t)d >= off + len);
	}
	for (const struct vhd_image *i = s->img; i; i = i->parent) {
		if (i->m.type == VHD_TYPE_FIXED)
			return false;
		for (uint64_t b = off / i->m.block_size; b <= (off + len - 1) / i->m.block_size;
		     b++)
			if (i->m.bat[b] != VHD_BAT_UNUSED)
				return false;
	}
	return true;
}

/* ---- output helpers --------------------------------------------------------------- */

static int out_create(const char *out, char *tmp, size_t tmplen)
{
	struct stat st;
	int fd;

	if (stat(out, &st) == 0) {
		vhd_tool_err("%s: exists; remove it first", out);
		return -EEXIST;
	}
	fd = vhd_tmpfile(out, tmp, tmplen);
	if (fd < 0)
		vhd_tool_err("%s: %s", out, strerror(-fd));
	return fd;
}

/* fsync and move the temp file to `out`; replace says whether it may
 * replace an existing file (compact, resize) or must not (convert). */
static int out_commit(int fd, const char *tmp, const char *out, bool replace)
{
	int ret = fsync(fd) < 0 ? -errno : 0;

	close(fd);
	if (!ret) {
		if (replace)
			ret = rename(tmp, out) < 0 ? -errno : 0;
		else
			ret = renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_NOREPLACE) < 0 ? -errno
											    : 0;
		if (ret == -EINVAL && !replace) /* file system without RENAME_NOREPLACE */
			ret = link(tmp, out) < 0 ? -errno : 0;
	}
	if (ret)
		vhd_tool_err("%s: %s", out, strerror(-ret));
	unlink(tmp);
	return ret;
}

static void out_abort(int fd, const char *tmp)
{
	close(fd);
	unlink(tmp);
}

/* ---- convert ---------------------------------------------------------------------- */

/* ---- output writes through the block engine ----------------------------------------- */

/* The output is written with up to AW_SLOTS writes in flight through the
 * block engine (io_uring where available), so reading the next piece of the
 * input overlaps writing the last ones, as qemu-img's convert overlaps its
 * coroutines. Without an engine the writes run inline. */
#define AW_SLOTS 8

struct aw_slot {
	struct blk_io io;
	struct iovec iov;
	struct awriter *w;
	uint8_t *buf;
	struct aw_slot *next;
};

struct awriter {
	struct blk_engine *e;
	int fd;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct aw_slot slots[AW_SLOTS];
	struct aw_slot *free;
	int nfree, err;
};

static void aw_put(struct awriter *w, struct aw_slot *sl, int err)
{
	pthread_mutex_lock(&w->lock);
	if (err && !w->err)
		w->err = err;
	sl->next = w->free;
	w->free = sl;
	w->nfree++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->lock);
}

static void aw_done(struct blk_io *io, long res)
{
	struct aw_slot *sl = (struct aw_slot *)((uint8_t *)io - offsetof(struct aw_slot, io));

	aw_put(sl->w, sl, res < 0 ? (int)res : (uint64_t)res == sl->iov.iov_len ? 0 : -EIO);
}

static int aw_init(struct awriter *w, int fd, size_t bufsize)
{
	char why[256];

	memset(w, 0, sizeof(*w));
	w->fd = fd;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (blk_engine_create(BLK_AIO_AUTO, AW_SLOTS, &w->e, why, sizeof(why)))
		w->e = NULL;
	for (int i = 0; i < AW_SLOTS; i++) {
		if (posix_memalign((void **)&w->slots[i].buf, 4096, bufsize))
			w->slots[i].buf = NULL;
		w->slots[i].w = w;
		aw_put(w, &w->slots[i], w->slots[i].buf ? 0 : -ENOMEM);
	}
	return w->err;
}

/* A free buffer (waits for a write to finish), or NULL after a failure. */
static struct aw_slot *aw_get(struct awriter *w)
{
	struct aw_slot *sl = NULL;

	pthread_mutex_lock(&w->lock);
	while (!w->free && !w->err)
		pthread_cond_wait(&w->cv, &w->lock);
	if (!w->err) {
		sl = w->free;
		w->free = sl->next;
		w->nfree--;
	}
	pthread_mutex_unlock(&w->lock);
	return sl;
}

static void aw_write(struct awriter *w, struct aw_slot *sl, size_t len, uint64_t off)
{
	sl->iov = (struct iovec){ .iov_base = sl->buf, .iov_len = len };
	sl->io = (struct blk_io){ .op = BLK_IO_WRITE,
				  .fd = w->fd,
				  .off = off,
				  .iov = &sl->iov,
				  .iovcnt = 1,
				  .done = aw_done };
	if (!w->e || blk_engine_submit(w->e, &sl->io))
		aw_put(w, sl, pwrite_full(w->fd, sl->buf, len, off));
}

static int aw_finish(struct awriter *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->nfree < AW_SLOTS)
		pthread_cond_wait(&w->cv, &w->lock);
	pthread_mutex_unlock(&w->lock);
	if (w->e)
		blk_engine_destroy(w->e);
	for (int i = 0; i < AW_SLOTS; i++)
		free(w->slots[i].buf);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cv);
	return w->err;
}

/* ---- convert ---------------------------------------------------------------------- */

static int copy_flat(struct src *s, int fd, struct vhd_progress *p)
{
	struct awriter w;
	int ret = aw_init(&w, fd, COPY_CHUNK);

	if (!ret && ftruncate(fd, (off_t)s->size) < 0)
		ret = -errno;
	for (uint64_t off = 0; !ret && off < s->size; off += COPY_CHUNK) {
		uint64_t n = MIN(COPY_CHUNK, s->size - off);
		struct aw_slot *sl;

		vhd_progress_update(p, off);
		if (src_known_zero(s, off, n))
			continue;
		sl = aw_get(&w);
		if (!sl)
			break;
		ret = src_read(s, sl->buf, n, off);
		if (!ret && !vhd_is_zero(sl->buf, n))
			aw_write(&w, sl, n, off);
		else
			aw_put(&w, sl, 0);
	}
	return aw_finish(&w) ?: ret;
}

/* A new footer of type for an image of s's size, with a fresh UUID. */
static int convert_footer(const struct src *s, enum vhd_type type, struct vhd_footer *f)
{
	uint16_t c;
	uint8_t h, sp;

	vhd_geometry_keep(s->size, &c, &h, &sp);
	vhd_footer_template(f, type, s->size, c, h, sp);
	return vhd_uuid_generate(f->uuid);
}

static int convert_fixed_footer(struct src *s, int fd)
{
	struct vhd_footer f;
	uint8_t foot[VHD_FOOTER_SIZE];
	int ret = convert_footer(s, VHD_TYPE_FIXED, &f);

	vhd_footer_encode(&f, foot);
	return ret ? ret : pwrite_full(fd, foot, sizeof(foot), s->size);
}

static int copy_dynamic(struct src *s, int fd, uint32_t bs, struct vhd_progress *p)
{
	struct vhd_builder b;
	struct vhd_footer f;
	struct vhd_header h;
	struct awriter w;
	uint64_t nblocks = (s->size + bs - 1) / bs;
	int ret = convert_footer(s, VHD_TYPE_DYNAMIC, &f);

	vhd_header_template(&h, (uint32_t)nblocks, bs);
	if (!ret)
		ret = vhd_builder_begin(&b, fd, &f, &h, NULL);
	if (ret)
		return ret;
	/* Each buffer is a whole block as it lies in the file: bitmap, data. */
	ret = aw_init(&w, fd, (size_t)b.bitmap_size + bs);
	for (uint64_t i = 0; !ret && i < nblocks; i++) {
		uint64_t off = i * bs, n = MIN(bs, s->size - off), at;
		struct aw_slot *sl;
		uint8_t *data;

		vhd_progress_update(p, off);
		if (src_known_zero(s, off, n))
			continue;
		sl = aw_get(&w);
		if (!sl)
			break;
		data = sl->buf + b.bitmap_size;
		memset(data + n, 0, bs - n);
		ret = src_read(s, data, n, off);
		if (ret || vhd_is_zero(data, bs)) {
			aw_put(&w, sl, 0);
			continue;
		}
		memset(sl->buf, 0xff, b.bitmap_size);
		ret = vhd_builder_place(&b, (uint32_t)i, &at);
		if (ret)
			aw_put(&w, sl, 0);
		else
			aw_write(&w, sl, (size_t)b.bitmap_size + bs, at);
	}
	ret = aw_finish(&w) ?: ret;
	if (!ret)
		return vhd_builder_finish(&b);
	vhd_builder_abort(&b);
	return ret;
}

int vhd_cmd_convert(struct vhd_args *a)
{
	struct vhd_progress p;
	struct src s;
	char tmp[PATH_MAX];
	uint32_t bs;
	int fd, ret;

	if (a->nops != 2 || !a->to) {
		vhd_tool_err("usage: kestrel vhd convert --to fixed|dynamic|raw IN OUT");
		return VHD_EXIT_USAGE;
	}
	if (strcmp(a->to, "fixed") && strcmp(a->to, "dynamic") && strcmp(a->to, "raw")) {
		vhd_tool_err("--to: '%s' is not fixed, dynamic or raw", a->to);
		return VHD_EXIT_USAGE;
	}
	if (vhd_parse_block_size(a->block_size, &bs))
		return VHD_EXIT_USAGE;
	if (src_open(&s, a->ops[0], a->parent_dir))
		return VHD_EXIT_BAD;
	if (s.size > VHD_MAX_BYTES && strcmp(a->to, "raw")) {
		vhd_tool_err("%s: %llu bytes is beyond the 2040 GiB a VHD holds", a->ops[0],
			     (unsigned long long)s.size);
		src_close(&s);
		return VHD_EXIT_BAD;
	}
	if (!strcmp(a->to, "dynamic") && (s.size + bs - 1) / bs > VHD_MAX_BAT_ENTRIES) {
		vhd_tool_err(
			"--block-size: %u-byte blocks for %llu bytes make more than the %u BAT entries kestrel reads (take larger blocks)",
			bs, (unsigned long long)s.size, VHD_MAX_BAT_ENTRIES);
		src_close(&s);
		return VHD_EXIT_USAGE;
	}
	fd = out_create(a->ops[1], tmp, sizeof(tmp));
	if (fd < 0) {
		src_close(&s);
		return VHD_EXIT_BAD;
	}
	vhd_progress_start(&p, "converting", s.size, a->quiet);
	if (!strcmp(a->to, "dynamic")) {
		ret = copy_dynamic(&s, fd, bs, &p);
	} else {
		ret = copy_flat(&s, fd, &p);
		if (!ret && !strcmp(a->to, "fixed"))
			ret = convert_fixed_footer(&s, fd);
	}
	vhd_progress_end(&p);
	src_close(&s);
	if (ret) {
		vhd_tool_err("%s: %s", a->ops[1], strerror(-ret));
		out_abort(fd, tmp);
		return VHD_EXIT_BAD;
	}
	return out_commit(fd, tmp, a->ops[1], false) ? VHD_EXIT_BAD : VHD_EXIT_OK;
}

/* ---- compact and the dynamic rebuild it shares with resize ------------------------------ */

/* Locator data of a differencing image, to carry over verbatim. */
static int read_locators(struct vhd_image *img, uint8_t *blobs[VHD_LOCATORS])
{
	for (int i = 0; i < VHD_LOCATORS; i++) {
		const struct vhd_locator *l = &img->m.hdr.loc[i];
		int ret;

		blobs[i] = NULL;
		if (img->m.type != VHD_TYPE_DIFF || l->code == VHD_PLAT_NONE)
			continue;
		blobs[i] = calloc(1, l->data_length + 1);
		if (!blobs[i])
			return -ENOMEM;
		ret = pread_full(img->fd, blobs[i], l->data_length, l->data_offset);
		if (ret)
			return ret;
	}
	return 0;
}

struct rebuild {
	uint64_t new_size; /* 0: unchanged */
	bool exact, shrink, drop_empty;
	uint32_t dropped, kept;
};

static bool block_droppable(const struct vhd_image *img, const uint8_t *bitmap, const uint8_t *data)
{
	if (img->m.type == VHD_TYPE_DIFF)
		return vhd_is_zero(bitmap, img->m.bitmap_size); /* no sector stored here */
	return vhd_is_zero(data, img->m.block_size);
}

static int rebuild_blocks(struct vhd_image *img, struct vhd_builder *b, struct rebuild *rb,
			  struct vhd_progress *p)
{
	uint64_t span = (uint64_t)img->m.bitmap_size + img->m.block_size, done = 0;
	uint8_t *buf = malloc(span);
	int ret = buf ? 0 : -ENOMEM;

	for (uint32_t i = 0; !ret && i < img->m.nblocks; i++) {
		if (img->m.bat[i] == VHD_BAT_UNUSED)
			continue;
		vhd_progress_update(p, done += img->m.block_size);
		ret = pread_full(img->fd, buf, span, (uint64_t)img->m.bat[i] * VHD_SECTOR);
		if (ret)
			break;
		if ((rb->drop_empty && block_droppable(img, buf, buf + img->m.bitmap_size)) ||
		    i >= b->hdr.max_table_entries) {
			if (i >= b->hdr.max_table_entries && !rb->shrink &&
			    !block_droppable(img, buf, buf + img->m.bitmap_size)) {
				ret = -ENOSPC;
				break;
			}
			rb->dropped++;
			continue;
		}
		ret = vhd_builder_add(b, i, buf, buf + img->m.bitmap_size);
		rb->kept++;
	}
	free(buf);
	return ret;
}

static int rebuild_dynamic(struct vhd_image *img, int fd, struct rebuild *rb,
			   struct vhd_progress *p)
{
	struct vhd_builder b;
	struct vhd_footer f = img->m.footer;
	struct vhd_header h = img->m.hdr;
	uint8_t *blobs[VHD_LOCATORS] = { 0 };
	int ret = read_locators(img, blobs);

	/* The entries the size uses: a reserve beyond them (vhd-util -S) was
	 * never read, and is not carried over. */
	h.max_table_entries = img->m.nblocks;

	if (!ret && rb->new_size) {
		uint16_t c;
		uint8_t hd, sp;

		ret = vhd_size_for_create(rb->new_size, rb->exact, &rb->new_size, &c, &hd, &sp);
		f.current_size = rb->new_size;
		f.cylinders = c;
		f.heads = hd;
		f.sectors = sp;
		h.max_table_entries = (uint32_t)((rb->new_size + h.block_size - 1) / h.block_size);
	}
	if (!ret)
		ret = vhd_builder_begin(&b, fd, &f, &h, (const uint8_t *const *)blobs);
	if (!ret) {
		ret = rebuild_blocks(img, &b, rb, p);
		if (!ret)
			ret = vhd_builder_finish(&b);
		else
			vhd_builder_abort(&b);
	}
	for (int i = 0; i < VHD_LOCATORS; i++)
		free(blobs[i]);
	return ret;
}

/* Open an image we are about to replace: exclusive (no VM may be using it),
 * clean (no repairable damage), not in a saved state (spec, Saved State:
 * "compaction and expansion cannot be performed"). */
static int open_for_rewrite(const char *path, const char *cmd, struct vhd_image **img)
{
	char err[512];

	if (vhd_open(img, path, VHD_OPEN_RDWR | VHD_OPEN_NO_PARENT, err, sizeof(err))) {
		vhd_tool_err("%s", err);
		return -EINVAL;
	}
	if ((*img)->m.footer.saved_state) {
		vhd_tool_err("%s: saved state at offset %llu is set: %s is not allowed", path,
			     (unsigned long long)(*img)->m.footer_off + VHD_F_SAVED_STATE, cmd);
		vhd_close(*img);
		return -EBUSY;
	}
	return 0;
}

static int replace_with_rebuild(struct vhd_image *img, const char *path, struct rebuild *rb,
				struct vhd_progress *p)
{
	char tmp[PATH_MAX];
	struct stat st;
	int fd, ret;

	fd = vhd_tmpfile(path, tmp, sizeof(tmp));
	if (fd < 0) {
		vhd_tool_err("%s: %s", path, strerror(-fd));
		return fd;
	}
	if (fstat(img->fd, &st) == 0 && fchmod(fd, st.st_mode & 07777) < 0) {
		/* keep the temp file's mode */
	}
	ret = rebuild_dynamic(img, fd, rb, p);
	vhd_progress_end(p);
	if (ret) {
		if (ret == -ENOSPC)
			vhd_tool_err(
				"%s: blocks beyond the new size hold data; --shrink drops them",
				path);
		else
			vhd_tool_err("%s: %s", path, strerror(-ret));
		out_abort(fd, tmp);
		return ret;
	}
	return out_commit(fd, tmp, path, true);
}

int vhd_cmd_compact(struct vhd_args *a)
{
	struct vhd_progress p;
	struct rebuild rb = { .drop_empty = true };
	struct vhd_image *img;
	uint64_t before;

	if (a->nops != 1) {
		vhd_tool_err("usage: kestrel vhd compact FILE");
		return VHD_EXIT_USAGE;
	}
	if (open_for_rewrite(a->ops[0], "compaction", &img))
		return VHD_EXIT_BAD;
	if (img->m.type == VHD_TYPE_FIXED) {
		vhd_tool_err("%s: a fixed disk has no blocks to drop (convert --to dynamic)",
			     a->ops[0]);
		vhd_close(img);
		return VHD_EXIT_BAD;
	}
	before = img->m.file_size;
	vhd_progress_start(&p, "compacting", (uint64_t)img->m.allocated * img->m.block_size,
			   a->quiet);
	if (replace_with_rebuild(img, a->ops[0], &rb, &p)) {
		vhd_close(img);
		return VHD_EXIT_BAD;
	}
	vhd_close(img);
	if (!a->quiet) {
		struct stat st;

		stat(a->ops[0], &st);
		printf("%s: %u block(s) kept, %u dropped; %llu -> %llu bytes\n", a->ops[0], rb.kept,
		       rb.dropped, (unsigned long long)before, (unsigned long long)st.st_size);
	}
	return VHD_EXIT_OK;
}

/* ---- resize ---------------------------------------------------------------------- */

/* A fixed disk is resized in place. Growing: the new footer is written at
 * the new end first (the file is a valid, larger VHD from then on), then the
 * old footer, now inside the data, is zeroed. Shrinking: the new footer is
 * written inside the data being dropped, then the file is cut after it. */
static int resize_fixed(struct vhd_image *img, uint64_t size, uint16_t c, uint8_t h, uint8_t s)
{
	struct vhd_footer f = img->m.footer;
	uint8_t foot[VHD_FOOTER_SIZE], zero[VHD_FOOTER_SIZE] = { 0 };
	uint64_t old = img->m.footer_off;
	int ret;

	f.current_size = size;
	f.cylinders = c;
	f.heads = h;
	f.sectors = s;
	vhd_footer_encode(&f, foot);
	ret = pwrite_full(img->fd, foot, sizeof(foot), size);
	if (!ret)
		ret = fsync(img->fd) < 0 ? -errno : 0;
	if (!ret && size > old)
		ret = pwrite_full(img->fd, zero, MIN(sizeof(zero), size - old), old);
	if (!ret && size < old && ftruncate(img->fd, (off_t)(size + VHD_FOOTER_SIZE)) < 0)
		ret = -errno;
	if (!ret)
		ret = fsync(img->fd) < 0 ? -errno : 0;
	return ret;
}

int vhd_cmd_resize(struct vhd_args *a)
{
	struct vhd_image *img;
	struct vhd_progress p;
	uint64_t want, size;
	uint16_t c;
	uint8_t h, s;
	char hs[32];
	int ret;

	if (a->nops != 1 || !a->size) {
		vhd_tool_err(
			"usage: kestrel vhd resize --size SIZE [--exact-size] [--shrink] FILE");
		return VHD_EXIT_USAGE;
	}
	if (parse_size(a->size, &want) ||
	    vhd_size_for_create(want, a->exact_size, &size, &c, &h, &s)) {
		vhd_tool_err("--size: '%s' is not a size from 512 bytes to 2040 GiB", a->size);
		return VHD_EXIT_USAGE;
	}
	if (open_for_rewrite(a->ops[0], "expansion", &img))
		return VHD_EXIT_BAD;
	if (img->m.type == VHD_TYPE_DIFF) {
		vhd_tool_err(
			"%s: a differencing disk has its parent's size; resize the base and start a new child",
			a->ops[0]);
		vhd_close(img);
		return VHD_EXIT_BAD;
	}
	if (size < img->m.size && !a->shrink) {
		vhd_tool_err(
			"%s: %llu bytes is smaller than the disk (%llu bytes); --shrink drops the end",
			a->ops[0], (unsigned long long)size, (unsigned long long)img->m.size);
		vhd_close(img);
		return VHD_EXIT_BAD;
	}
	if (img->m.type == VHD_TYPE_FIXED) {
		ret = resize_fixed(img, size, c, h, s);
		if (ret)
			vhd_tool_err("%s: %s", a->ops[0], strerror(-ret));
	} else {
		struct rebuild rb = { .new_size = want,
				      .exact = a->exact_size,
				      .shrink = a->shrink };

		vhd_progress_start(&p, "resizing", (uint64_t)img->m.allocated * img->m.block_size,
				   a->quiet);
		ret = replace_with_rebuild(img, a->ops[0], &rb, &p);
	}
	vhd_close(img);
	if (ret)
		return VHD_EXIT_BAD;
	vhd_human(size, hs, sizeof(hs));
	if (!a->quiet)
		printf("%s: now %s (%llu bytes); differencing disks made from it no longer match it\n",
		       a->ops[0], hs, (unsigned long long)size);
	return VHD_EXIT_OK;
}

/* ---- merge ----------------------------------------------------------------------- */

/* Copy every sector the child stores into the parent, through the parent's
 * crash-safe write path. The child is left as it is: it still overrides the
 * parent with the same data, so the chain reads the same at every point of
 * an interrupted merge. */
static int merge_blocks(struct vhd_image *child, struct vhd_image *parent, struct vhd_progress *p)
{
	const struct vhd_meta *m = &child->m;
	uint8_t *bm = malloc(m->bitmap_size), *buf = malloc(m->block_size);
	uint64_t done = 0;
	int ret = bm && buf ? 0 : -ENOMEM;

	for (uint32_t i = 0; !ret && i < m->nblocks; i++) {
		uint64_t boff = (uint64_t)m->bat[i] * VHD_SECTOR,
			 base = (uint64_t)i * m->block_size;
		uint32_t spb = m->block_size / VHD_SECTOR;

		if (m->bat[i] == VHD_BAT_UNUSED)
			continue;
		vhd_progress_update(p, done += m->block_size);
		ret = pread_full(child->fd, bm, m->bitmap_size, boff);
		for (uint32_t sct = 0;
		     !ret && sct < spb && base + (uint64_t)sct * VHD_SECTOR < m->size;) {
			bool set = bm[sct >> 3] & (0x80u >> (sct & 7));
			uint32_t n = 1;

			while (sct + n < spb && base + (uint64_t)(sct + n) * VHD_SECTOR < m->size &&
			       (bool)(bm[(sct + n) >> 3] & (0x80u >> ((sct + n) & 7))) == set)
				n++;
			if (set) {
				uint64_t len = (uint64_t)n * VHD_SECTOR,
					 off = base + (uint64_t)sct * VHD_SECTOR;

				ret = pread_full(child->fd, buf, len,
						 boff + m->bitmap_size +
							 (uint64_t)sct * VHD_SECTOR);
				if (!ret)
					ret = vhd_write(parent, buf, len, off);
			}
			sct += n;
		}
	}
	if (!ret)
		ret = vhd_flush(parent);
	free(bm);
	free(buf);
	return ret;
}

int vhd_cmd_merge(struct vhd_args *a)
{
	struct vhd_image *chain, *parent;
	struct vhd_progress p;
	char err[512], ppath[PATH_MAX];
	int ret;

	if (a->nops != 1) {
		vhd_tool_err("usage: kestrel vhd merge CHILD");
		return VHD_EXIT_USAGE;
	}
	/* The whole chain validated (UUIDs, sizes), without locks: the parent
	 * is locked below, exclusively, for writing. */
	if (vhd_open_ex(&chain, -1, a->ops[0], VHD_OPEN_NOLOCK | VHD_OPEN_NOLOCK_PARENTS,
			a->parent_dir, err, sizeof(err))) {
		vhd_tool_err("%s", err);
		return VHD_EXIT_BAD;
	}
	if (chain->m.type != VHD_TYPE_DIFF) {
		vhd_tool_err("%s: a %s disk has no parent to merge into", a->ops[0],
			     vhd_type_name(chain->m.type));
		vhd_close(chain);
		return VHD_EXIT_BAD;
	}
	if (vhd_lock_fd(chain->fd, false)) {
		vhd_tool_err("%s: in use by another process", a->ops[0]);
		vhd_close(chain);
		return VHD_EXIT_BAD;
	}
	snprintf(ppath, sizeof(ppath), "%s", chain->parent->path);
	if (vhd_open(&parent, ppath, VHD_OPEN_RDWR | VHD_OPEN_NO_PARENT, err, sizeof(err))) {
		vhd_tool_err("%s", err);
		vhd_close(chain);
		return VHD_EXIT_BAD;
	}
	if (parent->m.footer.saved_state || chain->m.footer.saved_state) {
		vhd_tool_err("%s: saved state is set: merging is not allowed",
			     parent->m.footer.saved_state ? ppath : a->ops[0]);
		vhd_close(parent);
		vhd_close(chain);
		return VHD_EXIT_BAD;
	}
	vhd_progress_start(&p, "merging", (uint64_t)chain->m.allocated * chain->m.block_size,
			   a->quiet);
	ret = merge_blocks(chain, parent, &p);
	vhd_progress_end(&p);
	if (ret)
		vhd_tool_err("%s: merging into %s: %s (the chain still reads as before)", a->ops[0],
			     ppath, strerror(-ret));
	if (vhd_close(parent) && !ret)
		ret = -EIO;
	vhd_close(chain);
	if (ret)
		return VHD_EXIT_BAD;
	if (!a->quiet)
		printf("%s: merged into %s; %s can be deleted, and other differencing disks of %s no longer match it\n",
		       a->ops[0], ppath, a->ops[0], ppath);
	return VHD_EXIT_OK;
}

/* ---- merge up (snapshots) -------------------------------------------------------- */

/* The parent, merged, takes the child's identity: its unique id and
 * timestamp in both footers (the copy at 0 first, the trailing one last:
 * the trailing footer is the one read, the copy only when it is damaged). */
static int take_identity(const char *ppath, const struct vhd_footer *child, char *err,
			 size_t errlen)
{
	struct vhd_diag d = { 0 };
	struct vhd_meta m;
	uint8_t foot[VHD_FOOTER_SIZE];
	int fd = open(ppath, O_RDWR | O_CLOEXEC), ret;

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", ppath, strerror(errno));
		return -errno;
	}
	memset(&m, 0, sizeof(m));
	ret = vhd_parse(fd, &m, VHD_PARSE_ALLOW_REPAIRABLE, &d); /* the copy at 0 may differ */
	if (!ret && (m.footer_len != VHD_FOOTER_SIZE || m.trailing_bad))
		ret = -EINVAL;
	if (!ret) {
		memcpy(m.footer.uuid, child->uuid, sizeof(m.footer.uuid));
		m.footer.timestamp = child->timestamp;
		vhd_footer_encode(&m.footer, foot);
		if (m.type != VHD_TYPE_FIXED)
			ret = vhd_pwrite(fd, foot, sizeof(foot), 0);
		ret = ret ?: vhd_pwrite(fd, foot, sizeof(foot), m.footer_off);
		if (!ret && fdatasync(fd) < 0)
			ret = -errno;
	}
	if (ret)
		snprintf(err, errlen, "%s: taking its child's identity: %s", ppath,
			 d.first[0] ? d.first : strerror(-ret));
	vhd_meta_free(&m);
	close(fd);
	return ret;
}

/* The rename that ends a merge-up, made durable: the folder synced. */
static int merge_up_rename(const char *ppath, const char *child_path, char *err, size_t errlen)
{
	char dir[PATH_MAX], *slash;
	int ret = vhd_crash_point(), fd;

	if (!ret && rename(ppath, child_path) < 0)
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "%s: renaming to %s: %s", ppath, child_path, strerror(-ret));
		return ret;
	}
	snprintf(dir, sizeof(dir), "%s", child_path);
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd); /* done either way: a lost rename re-runs (below) */
		close(fd);
	}
	return 0;
}

/* Crash safety, in the order of the writes (docs/state.md, "Snapshots"):
 * (1) the child's sectors are copied into the parent and the parent flushed:
 * the child still overrides them with the same data, so the chain reads
 * the same; (2) the parent takes the child's unique id and timestamp (one
 * footer sector, then the other, synced): the child's parent link no longer
 * matches, but a parent with its child's own id and timestamp is accepted
 * as the child's parent (vhd_parent.c, find_parent: a merge-up not finished;
 * the parent holds all the child's data, so the chain still reads the
 * same; stopped between the two footer writes, the next run takes the
 * identity again first), and the child's own children still find the
 * child; (3) the rename
 * puts the parent, which is now the child in all but name, in the child's
 * place, atomically. A crash anywhere leaves a chain that reads as before,
 * and running vhd_merge_up on the child again finishes the job (each step
 * is idempotent). */
int vhd_merge_up(const char *child_path, bool nolock, char *err, size_t errlen)
{
	struct vhd_image *chain, *parent;
	struct vhd_progress p;
	struct vhd_footer cf;
	char ppath[PATH_MAX];
	unsigned lk = nolock ? VHD_OPEN_NOLOCK : 0;
	int ret;

	ret = vhd_open_ex(&chain, -1, child_path, VHD_OPEN_NOLOCK | VHD_OPEN_NOLOCK_PARENTS, NULL,
			  err, errlen);
	if (ret)
		return ret;
	if (chain->m.type != VHD_TYPE_DIFF || (!nolock && vhd_lock_fd(chain->fd, false))) {
		snprintf(err, errlen, "%s: %s", child_path,
			 chain->m.type != VHD_TYPE_DIFF ? "not a differencing disk"
							: "in use by another process");
		vhd_close(chain);
		return -EINVAL;
	}
	cf = chain->m.footer;
	snprintf(ppath, sizeof(ppath), "%s", chain->parent->path);
	/* Stopped between step (2)'s two footer writes, the parent's copy at 0
	 * differs from its footer, which a read-write open refuses: taking the
	 * identity again makes them agree (the chain reads the same either way). */
	ret = chain->parent->m.copy_bad ? take_identity(ppath, &cf, err, errlen) : 0;
	if (ret) {
		vhd_close(chain);
		return ret;
	}
	ret = vhd_open(&parent, ppath, VHD_OPEN_RDWR | VHD_OPEN_NO_PARENT | lk, err, errlen);
	if (ret) {
		vhd_close(chain);
		return ret;
	}
	vhd_progress_start(&p, "merging", 0, true);
	ret = merge_blocks(chain, parent, &p);
	vhd_progress_end(&p);
	if (ret)
		snprintf(err, errlen, "%s: merging into %s: %s (the chain still reads as before)",
			 child_path, ppath, strerror(-ret));
	if (vhd_close(parent) && !ret)
		ret = -EIO;
	vhd_close(chain);
	ret = ret ?: take_identity(ppath, &cf, err, errlen);
	return ret ?: merge_up_rename(ppath, child_path, err, errlen);
}
