/* Creating VHD files. New images are written to a temp file next to the
 * target and renamed into place, so a failed create leaves nothing behind.
 *
 * Layout of a dynamic or differencing image we write: footer copy (0),
 * dynamic header (512), BAT (1536, padded to a sector), parent locator data
 * (differencing, one sector-aligned area each), then blocks, then the footer.
 * Each block's data starts on a 4 KiB boundary (its 512-byte bitmap just
 * before), so guest 4 KiB I/O maps to whole host pages; the gaps this leaves
 * between blocks are unreferenced space, which the spec permits. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhd_int.h"

#define VHD_CREATOR_APP	    "kstl"
#define VHD_CREATOR_VERSION 0x00000001u /* kestrel 0.1 */
#define VHD_HOST_WI2K	    0x5769326bu /* "Wi2k": what Hyper-V and qemu-img write */
#define VHD_DATA_ALIGN	    4096u

uint64_t vhd_next_block_off(uint64_t end, uint32_t bitmap_size, uint32_t block_size)
{
	end = ALIGN_UP(end, VHD_SECTOR);
	if (block_size < VHD_DATA_ALIGN)
		return end;
	return ALIGN_UP(end + bitmap_size, VHD_DATA_ALIGN) - bitmap_size;
}

void vhd_footer_template(struct vhd_footer *f, enum vhd_type type, uint64_t size, uint16_t c,
			 uint8_t h, uint8_t s)
{
	memset(f, 0, sizeof(*f));
	memcpy(f->cookie, "conectix", 8);
	f->features = 0x2;
	f->version = 0x00010000;
	f->data_offset = type == VHD_TYPE_FIXED ? UINT64_MAX : VHD_FOOTER_SIZE;
	f->timestamp = vhd_now();
	memcpy(f->creator_app, VHD_CREATOR_APP, 4);
	f->creator_version = VHD_CREATOR_VERSION;
	f->creator_os = VHD_HOST_WI2K;
	f->original_size = size;
	f->current_size = size;
	f->cylinders = c;
	f->heads = h;
	f->sectors = s;
	f->disk_type = type;
}

void vhd_header_template(struct vhd_header *h, uint32_t nblocks, uint32_t block_size)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->cookie, "cxsparse", 8);
	/* The spec says 0xFFFFFFFF; Microsoft's tools expect all 64 bits set
	 * (qemu's vpc.c notes the same). */
	h->data_offset = UINT64_MAX;
	h->table_offset = VHD_FOOTER_SIZE + VHD_HEADER_SIZE;
	h->version = 0x00010000;
	h->max_table_entries = nblocks;
	h->block_size = block_size;
}

/* ---- sequential writer ------------------------------------------------------ */

int vhd_builder_begin(struct vhd_builder *b, int fd, const struct vhd_footer *f,
		      const struct vhd_header *h, const uint8_t *const loc_data[VHD_LOCATORS])
{
	uint8_t buf[VHD_HEADER_SIZE];
	uint64_t end;
	int ret = 0;

	memset(b, 0, sizeof(*b));
	b->fd = fd;
	b->footer = *f;
	b->hdr = *h;
	b->bitmap_size = (uint32_t)ALIGN_UP(h->block_size / VHD_SECTOR / 8, VHD_SECTOR);
	if (h->max_table_entries > VHD_MAX_BAT_ENTRIES)
		return -E2BIG; /* an image no reader of ours would open */
	b->bat = malloc((size_t)h->max_table_entries * 4 + 4);
	if (!b->bat)
		return -ENOMEM;
	memset(b->bat, 0xff, (size_t)h->max_table_entries * 4);
	b->footer.data_offset = VHD_FOOTER_SIZE;
	b->hdr.table_offset = VHD_FOOTER_SIZE + VHD_HEADER_SIZE;
	end = b->hdr.table_offset + ALIGN_UP((uint64_t)h->max_table_entries * 4, VHD_SECTOR);
	for (int i = 0; i < VHD_LOCATORS && !ret; i++) {
		struct vhd_locator *l = &b->hdr.loc[i];
		uint64_t space = ALIGN_UP(MAX(l->data_length, 1u), VHD_SECTOR);

		if (l->code == VHD_PLAT_NONE)
			continue;
		l->data_offset = end;
		l->data_space = (uint32_t)space; /* bytes, as Hyper-V writes */
		ret = loc_data && loc_data[i] ? pwrite_full(fd, loc_data[i], l->data_length, end)
					      : 0;
		end += space;
	}
	vhd_header_encode(&b->hdr, buf);
	if (!ret)
		ret = pwrite_full(fd, buf, VHD_HEADER_SIZE, VHD_FOOTER_SIZE);
	b->next = end;
	if (ret)
		vhd_builder_abort(b);
	return ret;
}

int vhd_builder_place(struct vhd_builder *b, uint32_t block, uint64_t *at)
{
	uint64_t off = vhd_next_block_off(b->next, b->bitmap_size, b->hdr.block_size);

	if (block >= b->hdr.max_table_entries || b->bat[block] != VHD_BAT_UNUSED)
		return -EINVAL;
	if ((off + b->bitmap_size + b->hdr.block_size) / VHD_SECTOR > UINT32_MAX)
		return -EFBIG;
	b->bat[block] = (uint32_t)(off / VHD_SECTOR);
	b->next = off + b->bitmap_size + b->hdr.block_size;
	*at = off;
	return 0;
}

int vhd_builder_add(struct vhd_builder *b, uint32_t block, const uint8_t *bitmap,
		    const uint8_t *data)
{
	uint64_t off;
	int ret = vhd_builder_place(b, block, &off);

	if (!ret)
		ret = pwrite_full(b->fd, bitmap, b->bitmap_size, off);
	if (!ret && data)
		ret = pwrite_full(b->fd, data, b->hdr.block_size, off + b->bitmap_size);
	return ret;
}

int vhd_builder_finish(struct vhd_builder *b)
{
	uint64_t bat_bytes = ALIGN_UP((uint64_t)b->hdr.max_table_entries * 4, VHD_SECTOR);
	uint8_t foot[VHD_FOOTER_SIZE], *raw = malloc(bat_bytes);
	int ret;

	if (!raw) {
		vhd_builder_abort(b);
		return -ENOMEM;
	}
	memset(raw, 0xff, bat_bytes); /* "unused table entries are initialized to 0xFFFFFFFF" */
	for (uint32_t i = 0; i < b->hdr.max_table_entries; i++)
		vhd_put32(raw + 4 * (size_t)i, b->bat[i]);
	ret = pwrite_full(b->fd, raw, bat_bytes, b->hdr.table_offset);
	free(raw);
	vhd_footer_encode(&b->footer, foot);
	if (!ret)
		ret = pwrite_full(b->fd, foot, sizeof(foot), 0);
	if (!ret)
		ret = pwrite_full(b->fd, foot, sizeof(foot), b->next);
	if (!ret && ftruncate(b->fd, (off_t)(b->next + VHD_FOOTER_SIZE)) < 0)
		ret = -errno;
	if (!ret && fsync(b->fd) < 0)
		ret = -errno;
	vhd_builder_abort(b);
	return ret;
}

void vhd_builder_abort(struct vhd_builder *b)
{
	free(b->bat);
	b->bat = NULL;
}

/* ---- files ------------------------------------------------------------------ */

int vhd_tmpfile(const char *path, char *tmp, size_t tmplen)
{
	mode_t mask;
	int fd;

	if ((size_t)snprintf(tmp, tmplen, "%s.XXXXXX", path) >= tmplen)
		return -ENAMETOOLONG;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	mask = umask(0);
	umask(mask);
	if (fchmod(fd, 0666 & ~mask) < 0) {
		/* keep mkostemp's 0600 */
	}
	return fd;
}

/* Move a finished temp file to path without replacing anything there. */
static int place_new(const char *tmp, const char *path)
{
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (link(tmp, path) < 0)
		return -errno;
	unlink(tmp);
	return 0;
}

/* ---- create ------------------------------------------------------------------- */

/* Geometry for a size that must be kept as is: the spec's geometry when it
 * covers the size exactly, else the maximum geometry (read as current size). */
void vhd_geometry_keep(uint64_t size, uint16_t *c, uint8_t *h, uint8_t *s)
{
	uint64_t rounded;

	if (vhd_size_for_create(size, false, &rounded, c, h, s) == 0 && rounded == size)
		return;
	*c = VHD_CHS_MAX_C;
	*h = VHD_CHS_MAX_H;
	*s = VHD_CHS_MAX_S;
}

/* Relative path from directory `from` to file `to`, both absolute and
 * canonical (realpath). */
static int relative_path(const char *from, const char *to, char *out, size_t outlen)
{
	size_t i = 0, common, o = 0;

	while (from[i] && from[i] == to[i])
		i++;
	if (!from[i] && to[i] == '/') {
		common = i + 1; /* `from` is a directory above `to` */
	} else {
		while (i > 0 && from[i - 1] != '/')
			i--;
		common = i;
	}
	for (const char *p = from + common; *p;) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		if (o + 4 > outlen)
			return -ENAMETOOLONG;
		memcpy(out + o, "../", 3);
		o += 3;
		while (*p && *p != '/')
			p++;
	}
	if (o + strlen(to + common) + 1 > outlen)
		return -ENAMETOOLONG;
	strcpy(out + o, to + common);
	return 0;
}

struct diff_parent {
	uint64_t size;
	uint8_t uuid[16];
	uint32_t mtime;
	char abs[PATH_MAX];
	char rel[PATH_MAX];
};

static int diff_parent_info(const char *child, const char *parent, struct diff_parent *dp,
			    char *err, size_t errlen)
{
	struct vhd_image *p;
	char dirbuf[PATH_MAX], realdir[PATH_MAX], *dir;
	struct stat st;
	int ret = vhd_open(&p, parent, 0, err, errlen);

	if (ret)
		return ret;
	dp->size = p->m.size;
	memcpy(dp->uuid, p->m.footer.uuid, 16);
	ret = fstat(p->fd, &st) < 0 ? -errno : 0;
	vhd_close(p);
	if (ret)
		return ret;
	dp->mtime = st.st_mtime > VHD_EPOCH_OFFSET ? (uint32_t)(st.st_mtime - VHD_EPOCH_OFFSET) : 0;
	snprintf(dirbuf, sizeof(dirbuf), "%s", child);
	dir = dirname(dirbuf);
	if (!realpath(parent, dp->abs) || !realpath(dir, realdir)) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", parent, strerror(errno));
		return ret;
	}
	ret = relative_path(realdir, dp->abs, dp->rel, sizeof(dp->rel));
	if (ret)
		snprintf(err, errlen, "%s: path too long", parent);
	return ret;
}

/* Windows form of a path: '\' separators; relative ones start with ".\". */
static int locator_blob(const char *path, bool relative, uint8_t **out, uint32_t *len)
{
	size_t n = strlen(path) + 3;
	char *win = malloc(n);
	int ret;

	*out = malloc(n * 4);
	if (!win || !*out) {
		free(win);
		return -ENOMEM;
	}
	snprintf(win, n, "%s%s", relative && strncmp(path, "../", 3) ? "./" : "", path);
	for (char *c = win; *c; c++)
		if (*c == '/')
			*c = '\\';
	ret = vhd_utf8_to_utf16(win, false, *out, n * 4);
	free(win);
	if (ret < 0)
		return ret;
	*len = (uint32_t)ret;
	return 0;
}

static void parent_name(const struct diff_parent *dp, uint8_t name[512])
{
	const char *base = strrchr(dp->abs, '/');

	memset(name, 0, 512);
	if (vhd_utf8_to_utf16(dp->abs, true, name, 510) < 0) {
		memset(name, 0, 512);
		if (vhd_utf8_to_utf16(base ? base + 1 : dp->abs, true, name, 510) < 0)
			memset(name, 0, 512);
	}
}

static int create_dynamic(int fd, struct vhd_footer *f, uint32_t bs, const struct diff_parent *dp)
{
	struct vhd_builder b;
	struct vhd_header h;
	uint8_t *blobs[VHD_LOCATORS] = { 0 };
	uint64_t nblocks = (f->current_size + bs - 1) / bs;
	int ret = 0;

	vhd_header_template(&h, (uint32_t)nblocks, bs);
	if (dp) {
		memcpy(h.parent_uuid, dp->uuid, 16);
		h.parent_timestamp = dp->mtime;
		parent_name(dp, h.parent_name);
		h.loc[0].code = VHD_PLAT_W2KU;
		h.loc[1].code = VHD_PLAT_W2RU;
		ret = locator_blob(dp->abs, false, &blobs[0], &h.loc[0].data_length);
		if (!ret)
			ret = locator_blob(dp->rel, true, &blobs[1], &h.loc[1].data_length);
	}
	if (!ret)
		ret = vhd_builder_begin(&b, fd, f, &h, (const uint8_t *const *)blobs);
	if (!ret)
		ret = vhd_builder_finish(&b);
	for (int i = 0; i < VHD_LOCATORS; i++)
		free(blobs[i]);
	return ret;
}

static int create_fixed(int fd, struct vhd_footer *f)
{
	uint8_t foot[VHD_FOOTER_SIZE];
	int ret;

	vhd_footer_encode(f, foot);
	if (ftruncate(fd, (off_t)f->current_size) < 0)
		return -errno;
	ret = pwrite_full(fd, foot, sizeof(foot), f->current_size);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	return ret;
}

static int create_check_opts(const struct vhd_create_opts *o, char *err, size_t errlen)
{
	uint32_t bs = o->block_size ? o->block_size : VHD_BLOCK_DEFAULT;

	if (o->type != VHD_TYPE_FIXED && o->type != VHD_TYPE_DYNAMIC && o->type != VHD_TYPE_DIFF) {
		snprintf(err, errlen, "--type: must be fixed, dynamic or diff");
		return -EINVAL;
	}
	if (bs < VHD_CREATE_BLOCK_MIN || bs > VHD_BLOCK_MAX || (bs & (bs - 1))) {
		snprintf(err, errlen, "--block-size: %u is not a power of two from 4K to 256M", bs);
		return -EINVAL;
	}
	if (o->type == VHD_TYPE_DIFF && !o->parent) {
		snprintf(err, errlen, "--parent: a differencing disk needs one");
		return -EINVAL;
	}
	if (o->type != VHD_TYPE_DIFF && o->size == 0) {
		snprintf(err, errlen, "--size: required, and not 0");
		return -EINVAL;
	}
	return 0;
}

int vhd_create(const char *path, const struct vhd_create_opts *o, char *err, size_t errlen)
{
	struct diff_parent dp;
	struct vhd_footer f;
	uint64_t size = o->size;
	uint32_t bs = o->block_size ? o->block_size : VHD_BLOCK_DEFAULT;
	uint16_t c;
	uint8_t h, s;
	char tmp[PATH_MAX];
	int fd, ret;

	err[0] = '\0';
	ret = create_check_opts(o, err, errlen);
	if (!ret && o->type == VHD_TYPE_DIFF) {
		ret = diff_parent_info(path, o->parent, &dp, err, errlen);
		if (!ret && o->size && o->size != dp.size) {
			snprintf(err, errlen, "--size: %llu differs from the parent's %llu bytes",
				 (unsigned long long)o->size, (unsigned long long)dp.size);
			ret = -EINVAL;
		}
		size = dp.size;
		vhd_geometry_keep(size, &c, &h, &s);
	} else if (!ret) {
		ret = vhd_size_for_create(o->size, o->exact_size, &size, &c, &h, &s);
		if (ret)
			snprintf(err, errlen, "--size: %llu bytes is beyond the 2040 GiB maximum",
				 (unsigned long long)o->size);
	}
	if (!ret && o->type != VHD_TYPE_FIXED && (size + bs - 1) / bs > VHD_MAX_BAT_ENTRIES) {
		snprintf(
			err, errlen,
			"--block-size: %u-byte blocks for %llu bytes make %llu BAT entries, more than the %u kestrel reads (take larger blocks)",
			bs, (unsigned long long)size, (unsigned long long)((size + bs - 1) / bs),
			VHD_MAX_BAT_ENTRIES);
		ret = -EINVAL;
	}
	if (ret)
		return ret;
	vhd_footer_template(&f, o->type, size, c, h, s);
	if (o->uuid)
		memcpy(f.uuid, o->uuid, 16);
	else if ((ret = vhd_uuid_generate(f.uuid)))
		return ret;
	fd = vhd_tmpfile(path, tmp, sizeof(tmp));
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-fd));
		return fd;
	}
	ret = o->type == VHD_TYPE_FIXED
		      ? create_fixed(fd, &f)
		      : create_dynamic(fd, &f, bs, o->type == VHD_TYPE_DIFF ? &dp : NULL);
	close(fd);
	if (!ret)
		ret = place_new(tmp, path);
	if (ret) {
		unlink(tmp);
		if (!err[0])
			snprintf(err, errlen, "%s: %s", path, strerror(-ret));
	}
	return ret;
}
