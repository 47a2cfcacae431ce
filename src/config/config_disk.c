/* --disk (repeatable) and the JSON "disks" array: one disk each, parsed by
 * the block layer's option parser plus the keys only the front ends know:
 *
 *   path=FILE,bus=scsi[,format=raw|vhd|auto][,readonly][,cache=writeback|none|directsync]
 *   [,aio=io_uring|libaio|sync|auto][,target=N][,add-after=DUR][,remove-after=DUR]
 *   [path=FILE,]bus=ide[,media=disk|cdrom][,unit=0-3][,readonly][,cache=..]...
 *
 * bus=ide: the PIIX3 IDE controller's four drives; unit 0/1 the primary
 * channel's master/slave, 2/3 the secondary's (default: the lowest free
 * unit). media=cdrom: an ATAPI CD-ROM, its medium opened read-only, and
 * without path= an empty drive (a medium can come later through the control
 * socket's cdrom-change).
 * target: the SCSI target id (default: the lowest free one). add-after /
 * remove-after: hot-add / hot-remove the disk DUR after the guest's driver
 * first starts the controller (a test hook; the control socket will call the
 * same virtio_scsi_hotplug/unplug). In JSON, each element is either such a
 * string or an object with the same keys (add_after/remove_after may also be
 * spelt with '_'; booleans and integers are accepted where they make sense). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kestrel/config.h"

#define DISK_SPEC_MAX 8192

static int disk_bus(const char *v, enum config_disk_bus *bus, char *err, size_t errlen)
{
	if (!v || strcmp(v, "scsi") == 0) {
		*bus = CONFIG_BUS_SCSI;
		return 0;
	}
	if (strcmp(v, "ide") == 0) {
		*bus = CONFIG_BUS_IDE;
		return 0;
	}
	return config_errf(err, errlen, "bus=%s: unknown bus (use scsi or ide)", v);
}

static int disk_media(const char *v, struct config_disk *d, char *err, size_t errlen)
{
	d->media = CONFIG_MEDIA_DISK;
	if (!v)
		return 0;
	if (d->bus != CONFIG_BUS_IDE)
		return config_errf(err, errlen,
				   "media=%s: only with bus=ide (a SCSI target is a disk)", v);
	if (strcmp(v, "cdrom") == 0)
		d->media = CONFIG_MEDIA_CDROM;
	else if (strcmp(v, "disk") != 0)
		return config_errf(err, errlen, "media=%s: expected disk or cdrom", v);
	return 0;
}

static int disk_unit(const char *v, struct config_disk *d, char *err, size_t errlen)
{
	char *end;
	long n;

	d->unit = -1;
	if (!v)
		return 0;
	if (d->bus != CONFIG_BUS_IDE)
		return config_errf(err, errlen,
				   "unit=%s: only with bus=ide (bus=scsi takes target=N)", v);
	n = strtol(v, &end, 10);
	if (!*v || *end || n < 0 || n >= CONFIG_IDE_UNITS)
		return config_errf(err, errlen,
				   "unit=%s: not an IDE unit (0 primary master, 1 primary "
				   "slave, 2 secondary master, 3 secondary slave)",
				   v);
	d->unit = (int)n;
	return 0;
}

/* What only a bus=scsi disk may have, and what only a CD-ROM may lack. */
static int disk_ide_rules(struct config_disk *d, bool target, bool after, char *err, size_t errlen)
{
	if (d->bus != CONFIG_BUS_IDE)
		return d->blk.path
			       ? 0
			       : config_errf(err, errlen, "disk options: path=FILE is required");
	if (target)
		return config_errf(err, errlen,
				   "target=: only with bus=scsi (bus=ide takes unit=0-3)");
	if (after)
		return config_errf(err, errlen,
				   "add-after/remove-after: only with bus=scsi (IDE drives "
				   "are not hot-plugged)");
	if (!d->blk.path && d->media != CONFIG_MEDIA_CDROM)
		return config_errf(err, errlen,
				   "disk options: path=FILE is required (only a "
				   "media=cdrom drive may be empty)");
	if (d->media == CONFIG_MEDIA_CDROM)
		d->blk.readonly = true; /* a CD is read-only, whatever was asked */
	return 0;
}

static int disk_target(const char *v, int *target, char *err, size_t errlen)
{
	char *end;
	long n;

	*target = -1;
	if (!v)
		return 0;
	n = strtol(v, &end, 10);
	if (!*v || *end || n < 0 || n >= CONFIG_MAX_DISKS)
		return config_errf(err, errlen, "target=%s: not a target number (0 to %d)", v,
				   CONFIG_MAX_DISKS - 1);
	*target = (int)n;
	return 0;
}

static int disk_after(const char *key, const char *v, uint64_t *ms, char *err, size_t errlen)
{
	*ms = 0;
	if (!v)
		return 0;
	if (config_parse_duration(v, ms) < 0 || *ms == 0)
		return config_errf(err, errlen, "%s=%s: not a duration (e.g. 5s, 1500ms)", key, v);
	return 0;
}

/* JSON: paths relative to the file's folder; flags: as given. */
static int disk_path(struct config_disk *d, const char *basedir, char *err, size_t errlen)
{
	const char *p = d->blk.path;

	if (!p)
		return 0;
	if (basedir && p[0] != '/') {
		if (asprintf(&d->path, "%s/%s", basedir, p) < 0)
			d->path = NULL;
	} else {
		d->path = strdup(p);
	}
	if (!d->path)
		return config_errf(err, errlen, "out of memory");
	d->blk.path = d->path;
	return 0;
}

int config_disk_add(struct vm_config *c, const char *spec, const char *basedir, char *err,
		    size_t errlen)
{
	struct blk_opt_extra extra[] = { { "bus", NULL },	{ "target", NULL },
					 { "add-after", NULL }, { "remove-after", NULL },
					 { "media", NULL },	{ "unit", NULL },
					 { NULL, NULL } };
	struct config_disk d = { .target = -1, .unit = -1 }, *n;
	int ret;

	if (c->ndisks >= CONFIG_MAX_DISKS)
		return config_errf(err, errlen, "at most %d disks", CONFIG_MAX_DISKS);
	ret = blk_parse_opts_nopath(spec, &d.blk, extra, err, errlen);
	if (ret)
		return ret;
	ret = disk_bus(extra[0].value, &d.bus, err, errlen);
	ret = ret ?: disk_target(extra[1].value, &d.target, err, errlen);
	ret = ret ?: disk_after("add-after", extra[2].value, &d.add_after_ms, err, errlen);
	ret = ret ?: disk_after("remove-after", extra[3].value, &d.remove_after_ms, err, errlen);
	ret = ret ?: disk_media(extra[4].value, &d, err, errlen);
	ret = ret ?: disk_unit(extra[5].value, &d, err, errlen);
	ret = ret
		      ?: disk_ide_rules(&d, extra[1].value != NULL,
					extra[2].value != NULL || extra[3].value != NULL, err,
					errlen);
	ret = ret ?: disk_path(&d, basedir, err, errlen);
	n = ret ? NULL : realloc(c->disks, (c->ndisks + 1) * sizeof(*n));
	if (!ret && !n)
		ret = config_errf(err, errlen, "out of memory");
	if (ret) {
		blk_opts_free(&d.blk);
		free(d.path);
		return ret;
	}
	c->disks = n;
	c->disks[c->ndisks++] = d;
	return 0;
}

/* ---- JSON ---- */

/* Append s to the spec; values get ',' doubled (the option parser's escape). */
static bool spec_put(char *spec, size_t *n, const char *s, bool escape)
{
	for (; *s; s++) {
		if (*n + 3 >= DISK_SPEC_MAX)
			return false;
		spec[(*n)++] = *s;
		if (escape && *s == ',')
			spec[(*n)++] = ',';
	}
	spec[*n] = '\0';
	return true;
}

static int json_disk_value(json_object *v, char *buf, size_t len, const char **out)
{
	switch (json_object_get_type(v)) {
	case json_type_string:
		*out = json_object_get_string(v);
		return strlen(*out) == (size_t)json_object_get_string_len(v) ? 0 : -EINVAL;
	case json_type_boolean: *out = json_object_get_boolean(v) ? "on" : "off"; return 0;
	case json_type_int:
		snprintf(buf, len, "%lld", (long long)json_object_get_int64(v));
		*out = buf;
		return 0;
	default: return -EINVAL;
	}
}

/* {"path": "a.img", "readonly": true, "target": 1} -> "path=a.img,readonly=on,target=1" */
static int json_disk_spec(json_object *obj, char *spec, char *err, size_t errlen)
{
	size_t n = 0;
	char num[32], key[32];

	spec[0] = '\0';
	json_object_object_foreach(obj, k, v)
	{
		const char *text;

		if (strlen(k) >= sizeof(key) || strpbrk(k, "=,"))
			return config_errf(err, errlen, "\"%.40s\": unknown key", k);
		snprintf(key, sizeof(key), "%s", k);
		for (char *p = key; *p; p++)
			if (*p == '_')
				*p = '-';
		if (json_disk_value(v, num, sizeof(num), &text) < 0)
			return config_errf(err, errlen,
					   "\"%s\": expected a string, integer or boolean", k);
		if ((n && !spec_put(spec, &n, ",", false)) || !spec_put(spec, &n, key, false) ||
		    !spec_put(spec, &n, "=", false) || !spec_put(spec, &n, text, true))
			return config_errf(err, errlen, "too long");
	}
	return 0;
}

int config_disks_json(struct vm_config *c, struct json_object *arr, const char *file,
		      const char *basedir, char *err, size_t errlen)
{
	char msg[256], *spec;
	size_t len;
	int ret = 0;

	if (!json_object_is_type(arr, json_type_array))
		return config_errf(err, errlen, "%s: \"disks\": expected an array of disks", file);
	spec = malloc(DISK_SPEC_MAX);
	if (!spec)
		return config_errf(err, errlen, "%s: out of memory", file);
	len = json_object_array_length(arr);
	for (size_t i = 0; i < len && !ret; i++) {
		json_object *d = json_object_array_get_idx(arr, i);

		msg[0] = '\0';
		if (json_object_is_type(d, json_type_string))
			ret = config_disk_add(c, json_object_get_string(d), basedir, msg,
					      sizeof(msg));
		else if (json_object_is_type(d, json_type_object))
			ret = json_disk_spec(d, spec, msg, sizeof(msg))
				      ?: config_disk_add(c, spec, basedir, msg, sizeof(msg));
		else
			ret = config_errf(msg, sizeof(msg), "expected an object or a string");
		if (ret)
			config_errf(err, errlen, "%s: \"disks\"[%zu]: %s", file, i, msg);
	}
	free(spec);
	return ret;
}

/* ---- validation ---- */

/* Readable (writable unless readonly), a file or block device, whole sectors. */
static int disk_file_check(const struct config_disk *d, char *err, size_t errlen)
{
	struct stat st;

	if (stat(d->path, &st) < 0)
		return config_errf(err, errlen, "%s: %s", d->path, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return config_errf(err, errlen, "%s: not a regular file or block device", d->path);
	if (access(d->path, d->blk.readonly ? R_OK : R_OK | W_OK) < 0)
		return config_errf(err, errlen, "%s: %s%s", d->path, strerror(errno),
				   d->blk.readonly ? "" : " (add readonly?)");
	if (S_ISREG(st.st_mode) && st.st_size == 0)
		return config_errf(err, errlen, "%s: file is empty", d->path);
	if (S_ISREG(st.st_mode) && d->blk.format == BLK_FMT_RAW && st.st_size % 512)
		return config_errf(err, errlen,
				   "%s: raw image of %lld bytes is not a whole number of "
				   "512-byte sectors",
				   d->path, (long long)st.st_size);
	return 0;
}

static const char *disk_name(const struct config_disk *d)
{
	return d->path ? d->path : "media=cdrom (empty)";
}

/* The SCSI target or IDE unit of disk i: the one asked for if free, else
 * the lowest free one on its bus. */
static int disk_pick_slot(struct vm_config *c, unsigned i, char *err, size_t errlen)
{
	bool used[CONFIG_MAX_DISKS] = { false }, ide = c->disks[i].bus == CONFIG_BUS_IDE;
	int *slot = ide ? &c->disks[i].unit : &c->disks[i].target;
	int max = ide ? CONFIG_IDE_UNITS : CONFIG_MAX_DISKS;
	const char *what = ide ? "unit" : "target";

	for (unsigned j = 0; j < c->ndisks; j++) {
		const struct config_disk *o = &c->disks[j];
		int s = ide ? o->unit : o->target;

		if (j != i && s >= 0 && o->bus == c->disks[i].bus)
			used[s] = true;
	}
	if (*slot >= 0) {
		if (used[*slot])
			return config_errf(err, errlen, "--disk %s: %s %d is taken by another disk",
					   disk_name(&c->disks[i]), what, *slot);
		return 0;
	}
	for (int t = 0; t < max; t++) {
		if (!used[t]) {
			*slot = t;
			return 0;
		}
	}
	return config_errf(err, errlen, "--disk %s: no free %s (bus=%s has %d)",
			   disk_name(&c->disks[i]), what, ide ? "ide" : "scsi", max);
}

int config_disks_validate(struct vm_config *c, char *err, size_t errlen)
{
	int ret;

	/* Explicit targets and units first, so the defaults fill around them. */
	for (unsigned pass = 0; pass < 2; pass++) {
		for (unsigned i = 0; i < c->ndisks; i++) {
			const struct config_disk *d = &c->disks[i];
			int slot = d->bus == CONFIG_BUS_IDE ? d->unit : d->target;

			if ((slot >= 0) != (pass == 0))
				continue;
			ret = disk_pick_slot(c, i, err, errlen);
			if (ret)
				return ret;
		}
	}
	for (unsigned i = 0; i < c->ndisks; i++) {
		const struct config_disk *d = &c->disks[i];

		if (!d->path)
			continue; /* an empty CD-ROM drive */
		ret = disk_file_check(d, err, errlen);
		if (ret) {
			char msg[512];

			snprintf(msg, sizeof(msg), "--disk: %s", err);
			snprintf(err, errlen, "%s", msg);
			return ret;
		}
		for (unsigned j = 0; j < i; j++)
			if (c->disks[j].path && strcmp(c->disks[j].path, d->path) == 0)
				return config_errf(err, errlen,
						   "--disk %s: the same file given twice", d->path);
		if (d->add_after_ms && d->remove_after_ms && d->remove_after_ms <= d->add_after_ms)
			return config_errf(err, errlen,
					   "--disk %s: remove-after must come after "
					   "add-after",
					   d->path);
	}
	return 0;
}

void config_disks_free(struct vm_config *c)
{
	for (unsigned i = 0; i < c->ndisks; i++) {
		blk_opts_free(&c->disks[i].blk);
		free(c->disks[i].path);
	}
	free(c->disks);
	c->disks = NULL;
	c->ndisks = 0;
}
