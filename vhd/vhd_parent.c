/* Parents of differencing disks (spec, Implementing a Differencing Hard Disk):
 * the parent is found through the locators stored in the child (W2ru: path
 * relative to the child, W2ku: absolute path, MacX: file URL) or the header's
 * parent name, and accepted only if its footer UUID is the child's Parent
 * Unique ID. Every parent is opened read only; chains of any depth up to
 * VHD_MAX_CHAIN, with loops refused. Windows paths are read with '\' as the
 * separator; a drive-letter path cannot name a file here and is skipped. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/sandbox.h"
#include "vhd_int.h"

#define VHD_CANDIDATES	6
#define VHD_PARENT_DIRS 16 /* the top's folder and up to 15 parent-dirs */

uint64_t vhd_locator_space(const struct vhd_locator *l)
{
	/* Spec: "the number of 512-byte sectors"; Virtual PC and Hyper-V store
	 * bytes (VirtualBox's VHD.cpp notes the same). A value below one
	 * sector can only mean sectors. */
	return l->data_space < VHD_SECTOR ? (uint64_t)l->data_space * VHD_SECTOR : l->data_space;
}

static int utf8_put(uint32_t cp, char *out, size_t outlen, size_t *o)
{
	uint8_t b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (uint8_t)(0xc0 | cp >> 6);
		b[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (uint8_t)(0xe0 | cp >> 12);
		b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (uint8_t)(0xf0 | cp >> 18);
		b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	if (*o + n >= outlen)
		return -ENOSPC;
	memcpy(out + *o, b, n);
	*o += n;
	return 0;
}

int vhd_utf16_to_utf8(const uint8_t *in, size_t inlen, bool be, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return -ENOSPC;
	for (size_t i = 0; i + 1 < inlen; i += 2) {
		uint32_t cp = be ? (uint32_t)(in[i] << 8 | in[i + 1])
				 : (uint32_t)(in[i + 1] << 8 | in[i]);
		int ret;

		if (cp == 0)
			break; /* the name is NUL-padded */
		if (cp >= 0xd800 && cp < 0xdc00) {
			uint32_t lo;

			if (i + 3 >= inlen)
				return -EINVAL;
			lo = be ? (uint32_t)(in[i + 2] << 8 | in[i + 3])
				: (uint32_t)(in[i + 3] << 8 | in[i + 2]);
			if (lo < 0xdc00 || lo >= 0xe000)
				return -EINVAL;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			i += 2;
		} else if (cp >= 0xdc00 && cp < 0xe000) {
			return -EINVAL;
		}
		ret = utf8_put(cp, out, outlen, &o);
		if (ret)
			return ret;
	}
	out[o] = '\0';
	return 0;
}

static int utf8_get(const unsigned char **p, uint32_t *cp)
{
	const unsigned char *s = *p;
	unsigned n = s[0] < 0x80 ? 0 : s[0] >= 0xf0 ? 3 : s[0] >= 0xe0 ? 2 : s[0] >= 0xc0 ? 1 : 9;

	if (n == 9)
		return -EINVAL;
	*cp = n == 0 ? s[0] : s[0] & (0x3f >> n);
	for (unsigned k = 1; k <= n; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return -EINVAL;
		*cp = *cp << 6 | (s[k] & 0x3f);
	}
	*p = s + n + 1;
	return *cp > 0x10ffff || (*cp >= 0xd800 && *cp < 0xe000) ? -EINVAL : 0;
}

static void u16_put(uint8_t *o, uint32_t v, bool be)
{
	o[be ? 0 : 1] = (uint8_t)(v >> 8);
	o[be ? 1 : 0] = (uint8_t)v;
}

int vhd_utf8_to_utf16(const char *in, bool be, uint8_t *out, size_t outlen)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t o = 0;

	while (*p) {
		uint32_t cp;

		if (utf8_get(&p, &cp))
			return -EINVAL;
		if (cp >= 0x10000) {
			if (o + 4 > outlen)
				return -ENOSPC;
			cp -= 0x10000;
			u16_put(out + o, 0xd800 + (cp >> 10), be);
			u16_put(out + o + 2, 0xdc00 + (cp & 0x3ff), be);
			o += 4;
		} else {
			if (o + 2 > outlen)
				return -ENOSPC;
			u16_put(out + o, cp, be);
			o += 2;
		}
	}
	return (int)o;
}

static char *child_dir(const struct vhd_image *img)
{
	char *copy = strdup(img->path), *dir;

	if (!copy)
		return NULL;
	dir = strdup(dirname(copy));
	free(copy);
	return dir;
}

/* Windows separators to '/', "./" prefixes dropped; NULL for drive paths. */
static char *path_from_windows(const char *in, const char *dir)
{
	char *p, *out;
	const char *s = in;

	if (((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z') && s[1] == ':')
		return NULL;
	p = strdup(s);
	if (!p)
		return NULL;
	for (char *c = p; *c; c++)
		if (*c == '\\')
			*c = '/';
	s = p;
	while (s[0] == '.' && s[1] == '/')
		s += 2;
	if (!*s || s[0] == '/' || !dir)
		out = *s ? strdup(s) : NULL;
	else if (asprintf(&out, "%s/%s", dir, s) < 0)
		out = NULL;
	free(p);
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "file://localhost/dir/parent.vhd" or "file:///dir/parent.vhd" (RFC 2396). */
static char *path_from_url(const char *url)
{
	const char *s;
	char *out, *o;

	if (strncmp(url, "file://", 7) != 0)
		return NULL;
	s = url + 7;
	if (strncmp(s, "localhost/", 10) == 0)
		s += 9;
	if (s[0] != '/')
		return NULL;
	out = malloc(strlen(s) + 1);
	for (o = out; out && *s; s++) {
		if (s[0] == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
			*o++ = (char)(hexval(s[1]) << 4 | hexval(s[2]));
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	if (out)
		*o = '\0';
	if (out && strlen(out) == 0) {
		free(out);
		return NULL;
	}
	return out;
}

static char *locator_path(const struct vhd_image *img, const struct vhd_locator *l, const char *dir)
{
	size_t textlen = (size_t)l->data_length * 2 + 1;
	char *text, *path = NULL;
	uint8_t *raw;
	int ret;

	if (l->data_length == 0 || l->data_length > VHD_LOCATOR_MAX)
		return NULL;
	raw = malloc(l->data_length);
	text = malloc(textlen);
	if (!raw || !text) {
		free(raw);
		free(text);
		return NULL;
	}
	ret = pread_full(img->fd, raw, l->data_length, l->data_offset);
	if (!ret && l->code == VHD_PLAT_MACX) {
		size_t n = strnlen((const char *)raw, l->data_length);

		memcpy(text, raw, n);
		text[n] = '\0';
		path = path_from_url(text);
	} else if (!ret && !vhd_utf16_to_utf8(raw, l->data_length, false, text, textlen)) {
		path = path_from_windows(text, l->code == VHD_PLAT_W2RU ? dir : NULL);
	}
	free(raw);
	free(text);
	return path;
}

static void add_candidate(char **paths, int *n, int max, char *p)
{
	if (!p)
		return;
	for (int i = 0; i < *n; i++) {
		if (strcmp(paths[i], p) == 0) {
			free(p);
			return;
		}
	}
	if (*n < max)
		paths[(*n)++] = p;
	else
		free(p);
}

int vhd_parent_candidates(const struct vhd_image *img, char **paths, int max)
{
	static const uint32_t order[] = { VHD_PLAT_W2RU, VHD_PLAT_W2KU, VHD_PLAT_MACX };
	char *dir = child_dir(img), name[1024];
	int n = 0;

	for (size_t k = 0; k < ARRAY_SIZE(order); k++)
		for (int i = 0; i < VHD_LOCATORS; i++)
			if (img->m.hdr.loc[i].code == order[k])
				add_candidate(paths, &n, max,
					      locator_path(img, &img->m.hdr.loc[i], dir));
	/* The header's name: as a path, then as a file next to the child. */
	if (!vhd_utf16_to_utf8(img->m.hdr.parent_name, sizeof(img->m.hdr.parent_name), true, name,
			       sizeof(name)) &&
	    name[0]) {
		char *p = path_from_windows(name, dir);
		char *slash = strrchr(name, '\\') ? strrchr(name, '\\') : strrchr(name, '/');

		add_candidate(paths, &n, max, p);
		if (slash && slash[1])
			add_candidate(paths, &n, max, path_from_windows(slash + 1, dir));
	}
	free(dir);
	return n;
}

/* Whether an image of the chain from top, skip aside, has uuid. */
static bool chain_has_uuid(const struct vhd_image *top, const uint8_t uuid[16],
			   const struct vhd_image *skip)
{
	for (const struct vhd_image *i = top; i; i = i->parent)
		if (i != skip && memcmp(i->m.footer.uuid, uuid, 16) == 0)
			return true;
	return false;
}

/* A parent that has taken its child's own unique id and timestamp is the
 * child's parent in a merge-up stopped before its rename (vhd_merge_up,
 * vhd_convert.c): it already holds all of the child's data, which the child
 * still overrides with the same data, so the chain reads as before. A copy
 * of the child is not one: its parent link is the child's own. */
static bool merged_up_parent(const struct vhd_image *p, const struct vhd_image *child)
{
	return memcmp(p->m.footer.uuid, child->m.footer.uuid, 16) == 0 &&
	       p->m.footer.timestamp == child->m.footer.timestamp &&
	       memcmp(p->m.hdr.parent_uuid, child->m.hdr.parent_uuid, 16) != 0;
}

/* ---- where parents may be ------------------------------------------------------- */

/* Folders parents may be in (and below): the top image's own folder, as
 * Hyper-V resolves relative locators against it, and the parent_dirs the
 * user named; each by its real path. */
struct parent_dirs {
	char *dir[VHD_PARENT_DIRS];
	int n;
};

static void parent_dirs_add(struct parent_dirs *pd, const char *dir)
{
	char *real = pd->n < VHD_PARENT_DIRS ? realpath(dir, NULL) : NULL;

	if (real)
		pd->dir[pd->n++] = real; /* a folder that is not there allows nothing */
}

static void parent_dirs_init(const struct vhd_image *top, struct parent_dirs *pd)
{
	char *dir = child_dir(top), *list = top->parent_dirs ? strdup(top->parent_dirs) : NULL;
	char *save = NULL;

	pd->n = 0;
	if (dir)
		parent_dirs_add(pd, dir);
	for (char *d = list ? strtok_r(list, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save))
		parent_dirs_add(pd, d);
	free(dir);
	free(list);
}

static void parent_dirs_free(struct parent_dirs *pd)
{
	for (int i = 0; i < pd->n; i++)
		free(pd->dir[i]);
	pd->n = 0;
}

static bool path_beneath(const char *real, char *const *dirs, int ndirs)
{
	for (int i = 0; i < ndirs; i++) {
		size_t n = strlen(dirs[i]);

		if (strncmp(real, dirs[i], n) == 0 &&
		    (real[n] == '/' || (n > 0 && dirs[i][n - 1] == '/')))
			return true;
	}
	return false;
}

/* realpath() only looks at the names (lstat, readlink): nothing outside the
 * folders is ever opened, so no device open has side effects and no FIFO
 * waits. What was opened is checked again by its descriptor (a folder
 * renamed in between cannot lead elsewhere). */
int vhd_parent_open_fd(const char *path, char *const *dirs, int ndirs)
{
	char *real, proc[64], *opened, key[PATH_MAX + 16];
	int fd = -1;

	/* In the worker, a reboot takes the parent the first boot checked and
	 * opened (sandbox_keep): after --user the names may be out of reach. */
	snprintf(key, sizeof(key), "vhd-parent:%s", path);
	fd = sandbox_kept(key);
	if (fd >= 0)
		return fd;
	fd = -1;
	real = realpath(path, NULL);
	if (!real || !path_beneath(real, dirs, ndirs))
		goto refuse;
	fd = open(real, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		goto refuse;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	opened = realpath(proc, NULL);
	if (opened && strcmp(opened, real) != 0) {
		free(opened);
		goto refuse;
	}
	free(opened);
	{
		struct stat st;
		int fl = fcntl(fd, F_GETFL);

		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || fl < 0 ||
		    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 || !vhd_probe_fd(fd))
			goto refuse;
	}
	free(real);
	sandbox_keep(key, fd);
	return fd;
refuse:
	if (fd >= 0)
		close(fd);
	free(real);
	return -EACCES;
}

/* path with control characters shown as '?': it comes from the image. */
static void put_path(char *out, size_t outlen, size_t *n, const char *path)
{
	for (const char *c = path; *c && *n + 1 < outlen; c++)
		out[(*n)++] = (unsigned char)*c < 0x20 || *c == 0x7f ? '?' : *c;
	out[*n < outlen ? *n : outlen - 1] = '\0';
}

/* Try each candidate; keep the first whose UUID matches. */
static int find_parent(struct vhd_image *top, struct vhd_image *child, const struct parent_dirs *pd,
		       struct vhd_image **out, char *err, size_t errlen)
{
	char *paths[VHD_CANDIDATES];
	char why[512] = "", uwant[37], uhave[37];
	unsigned flags = VHD_OPEN_NO_PARENT;
	int n, ret = -ENOENT;
	size_t wn = 0;

	if (child->flags & VHD_OPEN_NOLOCK_PARENTS)
		flags |= VHD_OPEN_NOLOCK | VHD_OPEN_NOLOCK_PARENTS;
	n = vhd_parent_candidates(child, paths, VHD_CANDIDATES);
	vhd_uuid_format(child->m.hdr.parent_uuid, uwant);
	*out = NULL;
	for (int i = 0; i < n; i++) {
		struct vhd_image *p = NULL;
		char perr[384];
		int fd = *out ? -1 : vhd_parent_open_fd(paths[i], pd->dir, pd->n);

		if (fd >= 0 && vhd_open_fd(&p, fd, paths[i], flags, perr, sizeof(perr)) == 0) {
			if (memcmp(p->m.footer.uuid, child->m.hdr.parent_uuid, 16) == 0 ||
			    merged_up_parent(p, child)) {
				*out = p;
			} else {
				vhd_uuid_format(p->m.footer.uuid, uhave);
				wn = 0;
				put_path(why, sizeof(why), &wn, paths[i]);
				snprintf(why + wn, sizeof(why) - wn, " has UUID %s", uhave);
				ret = -EINVAL;
				vhd_close(p);
			}
		} else if (fd >= 0 && ret == -ENOENT) {
			/* A VHD in an allowed folder: its own error says what is wrong. */
			snprintf(why, sizeof(why), "%s", perr);
			ret = -EINVAL;
		} else if (!*out && ret == -ENOENT) {
			if (wn && wn + 2 < sizeof(why))
				wn += (size_t)snprintf(why + wn, sizeof(why) - wn, ", ");
			put_path(why, sizeof(why), &wn, paths[i]);
		}
		if (fd >= 0)
			close(fd);
		free(paths[i]);
	}
	if (*out) {
		const struct vhd_image *self = merged_up_parent(*out, child) ? child : NULL;

		if (chain_has_uuid(top, (*out)->m.footer.uuid, self)) {
			snprintf(err, errlen,
				 "%s: parent %s makes a loop in the differencing chain",
				 child->path, (*out)->path);
			vhd_close(*out);
			*out = NULL;
			return -ELOOP;
		}
		return 0;
	}
	if (n == 0)
		snprintf(err, errlen, "%s: parent locators at offset %llu: no usable parent path",
			 child->path, (unsigned long long)child->m.hdr_off + VHD_H_LOCATORS);
	else if (ret == -ENOENT)
		snprintf(
			err, errlen,
			"%s: parent UUID at offset %llu: %s not found (not usable: %s; a parent is a regular VHD file in %s's folder or a parent-dir)",
			child->path, (unsigned long long)child->m.hdr_off + VHD_H_PARENT_UUID,
			uwant, why, top->path);
	else
		snprintf(err, errlen, "%s: parent UUID at offset %llu: %s not found (%s)",
			 child->path, (unsigned long long)child->m.hdr_off + VHD_H_PARENT_UUID,
			 uwant, why);
	return ret;
}

int vhd_open_parents(struct vhd_image *img, char *err, size_t errlen)
{
	struct vhd_image *cur = img;
	struct parent_dirs pd;
	unsigned depth = 0;
	int ret = 0;

	parent_dirs_init(img, &pd);
	while (!ret && cur->m.type == VHD_TYPE_DIFF) {
		struct vhd_image *p;

		if (++depth > VHD_MAX_CHAIN) {
			snprintf(err, errlen, "%s: differencing chain deeper than %d", img->path,
				 VHD_MAX_CHAIN);
			ret = -ELOOP;
			break;
		}
		ret = find_parent(img, cur, &pd, &p, err, errlen);
		if (ret)
			break;
		cur->parent = p;
		if (p->m.size != cur->m.size) {
			snprintf(err, errlen,
				 "%s: disk size %llu differs from its parent %s (%llu)", cur->path,
				 (unsigned long long)cur->m.size, p->path,
				 (unsigned long long)p->m.size);
			ret = -EINVAL;
		}
		cur = p;
	}
	parent_dirs_free(&pd);
	return ret;
}
