/* Disk option strings: "path=FILE,format=raw,readonly,cache=none,aio=libaio".
 * Keys a front end adds (--disk's bus=, ...) pass through an allow-list. A
 * ',' inside a value is written ",," (QEMU's convention), so any path works. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/block.h"

struct blk_opt_seen {
	bool path, format, readonly, cache, aio, parent_dir;
};

static const char *const blk_onoff_true[] = { "on", "true", "yes", "1" };
static const char *const blk_onoff_false[] = { "off", "false", "no", "0" };

static int blk_opt_bool(const char *key, const char *v, bool *out, char *err, size_t errlen)
{
	if (!v) {
		*out = true;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(blk_onoff_true); i++) {
		if (strcmp(v, blk_onoff_true[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(v, blk_onoff_false[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	snprintf(err, errlen, "disk option '%s': expected on or off, got '%s'", key, v);
	return -EINVAL;
}

const char *const blk_format_names[] = { "auto", "raw", "vhd", NULL };
const char *const blk_cache_names[] = { "writeback", "none", "directsync", NULL };
const char *const blk_aio_names[] = { "auto", "io_uring", "libaio", "sync", NULL };

const char *blk_format_name(enum blk_format f)
{
	return (unsigned)f <= BLK_FMT_VHD ? blk_format_names[f] : "?";
}

const char *blk_cache_name(enum blk_cache c)
{
	return (unsigned)c <= BLK_CACHE_DIRECTSYNC ? blk_cache_names[c] : "?";
}

int blk_name_index(const char *const *names, const char *s)
{
	for (int i = 0; s && names[i]; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

/* Map v to the index of the matching name; names is NULL-terminated. */
static int blk_opt_enum(const char *key, const char *v, const char *const *names,
			const char *expect, int *out, char *err, size_t errlen)
{
	*out = blk_name_index(names, v);
	if (*out >= 0)
		return 0;
	snprintf(err, errlen, "disk option '%s': expected %s, got '%s'", key, expect, v ? v : "");
	return -EINVAL;
}

static int blk_opt_once(bool *seen, const char *key, char *err, size_t errlen)
{
	if (*seen) {
		snprintf(err, errlen, "disk option '%s' given twice", key);
		return -EINVAL;
	}
	*seen = true;
	return 0;
}

/* A non-empty text value, given once. */
static int blk_opt_text(bool *seen, const char *key, const char *v, const char *empty,
			const char **out, char *err, size_t errlen)
{
	int r = blk_opt_once(seen, key, err, errlen);

	if (r < 0)
		return r;
	if (!v || !*v) {
		snprintf(err, errlen, "disk option '%s': %s", key, empty);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static struct blk_opt_extra *blk_opt_find_extra(struct blk_opt_extra *extras, const char *key)
{
	for (; extras && extras->key; extras++)
		if (strcmp(extras->key, key) == 0)
			return extras;
	return NULL;
}

static int blk_opt_unknown(const char *key, const struct blk_opt_extra *extras, char *err,
			   size_t errlen)
{
	size_t n = (size_t)snprintf(err, errlen,
				    "unknown disk option '%s' (known: path, format, readonly, "
				    "cache, aio, parent-dir",
				    key);

	for (; extras && extras->key && n < errlen; extras++)
		n += (size_t)snprintf(err + n, errlen - n, ", %s", extras->key);
	if (n < errlen)
		snprintf(err + n, errlen - n, ")");
	return -EINVAL;
}

static int blk_opt_apply(struct blk_opts *o, struct blk_opt_seen *seen,
			 struct blk_opt_extra *extras, const char *key, const char *v, char *err,
			 size_t errlen)
{
	struct blk_opt_extra *x;
	int i, r;

	if (strcmp(key, "path") == 0)
		return blk_opt_text(&seen->path, key, v, "empty file name", &o->path, err, errlen);
	if (strcmp(key, "parent-dir") == 0)
		return blk_opt_text(&seen->parent_dir, key, v, "expected DIR[:DIR...]",
				    &o->parent_dirs, err, errlen);
	if (strcmp(key, "format") == 0) {
		if ((r = blk_opt_once(&seen->format, key, err, errlen)) < 0 ||
		    (r = blk_opt_enum(key, v, blk_format_names, "raw, vhd or auto", &i, err,
				      errlen)) < 0)
			return r;
		o->format = (enum blk_format)i; /* same order as the enum */
		return 0;
	}
	if (strcmp(key, "readonly") == 0) {
		if ((r = blk_opt_once(&seen->readonly, key, err, errlen)) < 0)
			return r;
		return blk_opt_bool(key, v, &o->readonly, err, errlen);
	}
	if (strcmp(key, "cache") == 0) {
		if ((r = blk_opt_once(&seen->cache, key, err, errlen)) < 0 ||
		    (r = blk_opt_enum(key, v, blk_cache_names, "writeback, none or directsync", &i,
				      err, errlen)) < 0)
			return r;
		o->cache = (enum blk_cache)i;
		return 0;
	}
	if (strcmp(key, "aio") == 0) {
		if ((r = blk_opt_once(&seen->aio, key, err, errlen)) < 0 ||
		    (r = blk_opt_enum(key, v, blk_aio_names, "io_uring, libaio, sync or auto", &i,
				      err, errlen)) < 0)
			return r;
		o->aio = (enum blk_aio)i;
		return 0;
	}
	x = blk_opt_find_extra(extras, key);
	if (!x)
		return blk_opt_unknown(key, extras, err, errlen);
	if (x->value) {
		snprintf(err, errlen, "disk option '%s' given twice", key);
		return -EINVAL;
	}
	x->value = v ? v : "";
	return 0;
}

/* Copy the next option of *spec into out, undoing ",," escapes; advance *spec
 * past it and its separator. Returns the end of what was written; *sep tells
 * whether a separator followed (so another option, maybe empty, comes). */
static char *blk_opt_next(const char **spec, char *out, bool *sep)
{
	const char *p = *spec;

	for (; *p; p++) {
		if (*p == ',') {
			if (p[1] != ',')
				break;
			p++;
		}
		*out++ = *p;
	}
	*out = '\0';
	*sep = *p == ',';
	*spec = *sep ? p + 1 : p;
	return out;
}

static int blk_opt_parse_all(const char *spec, struct blk_opts *o, struct blk_opt_extra *extras,
			     bool need_path, char *err, size_t errlen)
{
	struct blk_opt_seen seen = { false };
	char *buf = o->owned;
	bool more = *spec != '\0';

	while (more) {
		char *key = buf, *eq;
		int r;

		buf = blk_opt_next(&spec, buf, &more) + 1;
		if (!*key) {
			snprintf(err, errlen, "disk options: empty option (stray ',')");
			return -EINVAL;
		}
		eq = strchr(key, '=');
		if (eq)
			*eq = '\0';
		r = blk_opt_apply(o, &seen, extras, key, eq ? eq + 1 : NULL, err, errlen);
		if (r < 0)
			return r;
	}
	if (!seen.path && need_path) {
		snprintf(err, errlen, "disk options: path=FILE is required");
		return -EINVAL;
	}
	return 0;
}

static int blk_parse(const char *spec, struct blk_opts *o, struct blk_opt_extra *extras,
		     bool need_path, char *err, size_t errlen)
{
	int r;

	memset(o, 0, sizeof(*o));
	o->format = BLK_FMT_AUTO;
	o->cache = BLK_CACHE_WRITEBACK;
	o->aio = BLK_AIO_AUTO;
	for (struct blk_opt_extra *x = extras; x && x->key; x++)
		x->value = NULL;
	/* Decoded options are never longer than the spec: one buffer holds all. */
	o->owned = malloc(strlen(spec) + 2);
	if (!o->owned) {
		snprintf(err, errlen, "disk options: out of memory");
		return -ENOMEM;
	}
	r = blk_opt_parse_all(spec, o, extras, need_path, err, errlen);
	if (r < 0) {
		blk_opts_free(o);
		for (struct blk_opt_extra *x = extras; x && x->key; x++)
			x->value = NULL;
	}
	return r;
}

int blk_parse_opts_ex(const char *spec, struct blk_opts *o, struct blk_opt_extra *extras, char *err,
		      size_t errlen)
{
	return blk_parse(spec, o, extras, true, err, errlen);
}

int blk_parse_opts_nopath(const char *spec, struct blk_opts *o, struct blk_opt_extra *extras,
			  char *err, size_t errlen)
{
	return blk_parse(spec, o, extras, false, err, errlen);
}

int blk_parse_opts(const char *spec, struct blk_opts *o, char *err, size_t errlen)
{
	return blk_parse(spec, o, NULL, true, err, errlen);
}

void blk_opts_free(struct blk_opts *o)
{
	free(o->owned);
	o->owned = NULL;
	o->path = NULL;
}
