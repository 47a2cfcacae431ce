/* Snapshot trees on VHD disks (docs/state.md, "Snapshots"), Hyper-V's
 * checkpoints: a snapshot is the VM's saved state plus its disks as they
 * were, frozen from then on; the VM goes on with a differencing child of
 * each. Applying one gives the VM fresh children of that snapshot's disks
 * and its state; the children the VM ran on are dropped (nothing else
 * names them). The tree is DIR/snapshots.json in the VM directory (the
 * folder of the disks, so every chain stays inside it, as the VHD parent
 * rules want: docs/vhd.md), states are DIR/snapshots/NAME.state, children
 * DIR/STEM.N.vhd. The file is untrusted input like any image: names and
 * file names are checked (plain names inside DIR), parents must come
 * before their children, and it is written whole to a temporary file and
 * renamed. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kestrel/block.h"
#include "kestrel/config.h"
#include "kestrel/machine.h"
#include "kestrel/migrate.h"
#include "kestrel/snapshot.h"
#include "kestrel/vhd.h"
#include "kestrel/virtio_scsi.h"

#define SNAP_FILE_MAX 255
#define SNAP_TREE_MAX 4096 /* snapshots in one tree */
#define SNAP_JSON_MAX (4u << 20)

struct snap_disk {
	unsigned target;
	char file[SNAP_FILE_MAX + 1]; /* a plain name inside the VM directory */
};

struct snap_node {
	char name[SNAP_NAME_MAX + 1];
	char parent[SNAP_NAME_MAX + 1]; /* "" at the root */
	long long created;
	unsigned ndisks;
	struct snap_disk disks[SNAP_DISKS];
};

struct snap_tree {
	unsigned seq;	      /* numbers the children */
	struct snap_node cur; /* the position: name "", parent, the disks in use */
	unsigned n;
	struct snap_node *nodes;
	unsigned nlinks;
	char (*links)[SNAP_FILE_MAX + 1];
};

static bool snap_name_ok(const char *s)
{
	static const char ok[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
	size_t n = strlen(s);

	return n >= 1 && n <= SNAP_NAME_MAX && strspn(s, ok) == n && s[0] != '.' && s[0] != '-';
}

/* A plain file name: no folder, not . or .., printable. */
static bool snap_file_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SNAP_FILE_MAX || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static void snap_tree_free(struct snap_tree *t)
{
	free(t->nodes);
	free(t->links);
	memset(t, 0, sizeof(*t));
}

static struct snap_node *snap_find(struct snap_tree *t, const char *name)
{
	for (unsigned i = 0; i < t->n; i++)
		if (!strcmp(t->nodes[i].name, name))
			return &t->nodes[i];
	return NULL;
}

/* ---- snapshots.json ---- */

static int snap_str(json_object *o, const char *key, char *out, size_t len, bool empty_ok)
{
	json_object *v;
	const char *s;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
		out[0] = '\0';
		return empty_ok ? 0 : -EINVAL;
	}
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	s = json_object_get_string(v);
	if (strlen(s) != (size_t)json_object_get_string_len(v) || strlen(s) >= len)
		return -EINVAL;
	snprintf(out, len, "%s", s);
	return 0;
}

static int snap_disks_parse(json_object *arr, struct snap_node *n)
{
	size_t len;

	if (!json_object_is_type(arr, json_type_array))
		return -EINVAL;
	len = json_object_array_length(arr);
	if (len > SNAP_DISKS)
		return -EINVAL;
	n->ndisks = (unsigned)len;
	for (size_t i = 0; i < len; i++) {
		json_object *d = json_object_array_get_idx(arr, i), *t;
		int64_t target;

		if (!json_object_is_type(d, json_type_object) ||
		    !json_object_object_get_ex(d, "target", &t) ||
		    !json_object_is_type(t, json_type_int) ||
		    snap_str(d, "file", n->disks[i].file, sizeof(n->disks[i].file), false) ||
		    !snap_file_ok(n->disks[i].file))
			return -EINVAL;
		target = json_object_get_int64(t);
		if (target < 0 || target >= SNAP_DISKS)
			return -EINVAL;
		n->disks[i].target = (unsigned)target;
		for (size_t k = 0; k < i; k++)
			if (n->disks[k].target == n->disks[i].target)
				return -EINVAL;
	}
	return 0;
}

static int snap_node_parse(json_object *o, struct snap_node *n, bool cur)
{
	json_object *v;

	memset(n, 0, sizeof(*n));
	if (!json_object_is_type(o, json_type_object))
		return -EINVAL;
	if ((!cur &&
	     (snap_str(o, "name", n->name, sizeof(n->name), false) || !snap_name_ok(n->name))) ||
	    snap_str(o, "parent", n->parent, sizeof(n->parent), true) ||
	    (n->parent[0] && !snap_name_ok(n->parent)))
		return -EINVAL;
	if (!cur && json_object_object_get_ex(o, "created", &v) &&
	    json_object_is_type(v, json_type_int))
		n->created = json_object_get_int64(v);
	return json_object_object_get_ex(o, "disks", &v) ? snap_disks_parse(v, n) : -EINVAL;
}

/* Parents before children, names unique, the position's parent known. */
static int snap_tree_check(struct snap_tree *t)
{
	for (unsigned i = 0; i < t->n; i++) {
		bool parent_seen = !t->nodes[i].parent[0];

		for (unsigned k = 0; k < i; k++) {
			if (!strcmp(t->nodes[k].name, t->nodes[i].name))
				return -EINVAL;
			parent_seen |= !strcmp(t->nodes[k].name, t->nodes[i].parent);
		}
		if (!parent_seen)
			return -EINVAL;
	}
	return !t->cur.parent[0] || snap_find(t, t->cur.parent) ? 0 : -EINVAL;
}

static int snap_tree_parse(json_object *root, struct snap_tree *t)
{
	json_object *v, *arr;
	size_t n;

	if (!json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "version", &v) || json_object_get_int(v) != 1 ||
	    !json_object_object_get_ex(root, "seq", &v) || !json_object_is_type(v, json_type_int) ||
	    !json_object_object_get_ex(root, "current", &v) || snap_node_parse(v, &t->cur, true) ||
	    !json_object_object_get_ex(root, "snapshots", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return -EINVAL;
	json_object_object_get_ex(root, "seq", &v);
	t->seq = (unsigned)MIN(json_object_get_int64(v), (int64_t)UINT32_MAX / 2);
	n = json_object_array_length(arr);
	if (n > SNAP_TREE_MAX || !(t->nodes = calloc(n + 1, sizeof(*t->nodes))))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (snap_node_parse(json_object_array_get_idx(arr, i), &t->nodes[t->n++], false))
			return -EINVAL;
	if (json_object_object_get_ex(root, "links", &arr) &&
	    json_object_is_type(arr, json_type_array)) {
		n = json_object_array_length(arr);
		if (n > SNAP_TREE_MAX * SNAP_DISKS ||
		    !(t->links = calloc(n + 1, sizeof(*t->links))))
			return -EINVAL;
		for (size_t i = 0; i < n; i++) {
			json_object *l = json_object_array_get_idx(arr, i);

			if (!json_object_is_type(l, json_type_string) ||
			    !snap_file_ok(json_object_get_string(l)))
				return -EINVAL;
			snprintf(t->links[t->nlinks++], SNAP_FILE_MAX + 1, "%s",
				 json_object_get_string(l));
		}
	}
	return snap_tree_check(t);
}

/* The tree of dir; an empty one (no file yet) is fine. */
static int snap_tree_load(const char *dir, struct snap_tree *t, char *err, size_t errlen)
{
	char path[PATH_MAX];
	uint8_t *buf;
	size_t len;
	json_object *root;
	int ret;

	memset(t, 0, sizeof(*t));
	t->seq = 1;
	snprintf(path, sizeof(path), "%s/snapshots.json", dir);
	ret = read_file(path, &buf, &len);
	if (ret == -ENOENT)
		return 0;
	if (ret) {
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	root = len < SNAP_JSON_MAX && !memchr(buf, '\0', len) ? json_tokener_parse((char *)buf)
							      : NULL;
	free(buf);
	ret = root ? snap_tree_parse(root, t) : -EINVAL;
	json_object_put(root);
	if (ret) {
		snap_tree_free(t);
		snprintf(err, errlen, "%s: not a valid snapshot tree", path);
	}
	return ret;
}

static json_object *snap_disks_json(const struct snap_node *n)
{
	json_object *arr = json_object_new_array();

	for (unsigned i = 0; i < n->ndisks; i++) {
		json_object *d = json_object_new_object();

		json_object_object_add(d, "target", json_object_new_int((int)n->disks[i].target));
		json_object_object_add(d, "file", json_object_new_string(n->disks[i].file));
		json_object_array_add(arr, d);
	}
	return arr;
}

static json_object *snap_node_json(const struct snap_node *n, bool cur)
{
	json_object *o = json_object_new_object();

	if (!cur)
		json_object_object_add(o, "name", json_object_new_string(n->name));
	json_object_object_add(o, "parent",
			       n->parent[0] ? json_object_new_string(n->parent) : NULL);
	if (!cur)
		json_object_object_add(o, "created", json_object_new_int64(n->created));
	json_object_object_add(o, "disks", snap_disks_json(n));
	return o;
}

static json_object *snap_tree_json(const struct snap_tree *t)
{
	json_object *o = json_object_new_object(), *arr = json_object_new_array(),
		    *links = json_object_new_array();

	json_object_object_add(o, "version", json_object_new_int(1));
	json_object_object_add(o, "seq", json_object_new_int64(t->seq));
	json_object_object_add(o, "current", snap_node_json(&t->cur, true));
	for (unsigned i = 0; i < t->n; i++)
		json_object_array_add(arr, snap_node_json(&t->nodes[i], false));
	json_object_object_add(o, "snapshots", arr);
	for (unsigned i = 0; i < t->nlinks; i++)
		json_object_array_add(links, json_object_new_string(t->links[i]));
	json_object_object_add(o, "links", links);
	return o;
}

static int snap_tree_save(const char *dir, const struct snap_tree *t, char *err, size_t errlen)
{
	json_object *o = snap_tree_json(t);
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
								  JSON_C_TO_STRING_NOSLASHESCAPE);
	char path[PATH_MAX], tmp[PATH_MAX + 16];
	size_t len = strlen(s);
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/snapshots.json", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, s, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
	    fdatasync(fd) < 0)
		ret = -errno ?: -EIO;
	if (fd >= 0 && close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret) {
		unlink(tmp);
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
	}
	json_object_put(o);
	return ret;
}

/* ---- the machine's disks ---- */

static struct blk_dev *snap_disk(struct machine *m, unsigned t)
{
	struct device *scsi = machine_find_device(m, "scsi0");

	return scsi ? virtio_scsi_disk_blk(scsi, t) : NULL;
}

int snapshot_vm_dir(struct machine *m, char *dir, size_t len, char *err, size_t errlen)
{
	uint8_t uuid[16];
	bool any = false;

	/* A snapshot is a saved state: the same limits. */
	if (m->cfg) {
		int ret = migrate_snapshot_supported(m->cfg, err, errlen);

		if (ret)
			return ret;
	}
	for (unsigned t = 0; t < SNAP_DISKS; t++) {
		struct blk_dev *d = snap_disk(m, t);
		char *rp, *here;

		if (!d)
			continue;
		if (!blk_vhd_uuid(d, uuid)) {
			snprintf(err, errlen,
				 "target %u (%s) is a raw disk: raw and pass-through disks "
				 "cannot be snapshotted (use a VHD)",
				 t, d->path);
			return -ENOTSUP;
		}
		rp = realpath(d->path, NULL);
		here = rp ? dirname(rp) : NULL;
		if (!here || (any && strcmp(here, dir) != 0)) {
			snprintf(err, errlen,
				 "%s: every disk of a VM with snapshots must be in one "
				 "folder (%s)",
				 d->path, any ? dir : "?");
			free(rp);
			return -EINVAL;
		}
		snprintf(dir, len, "%s", here);
		free(rp);
		any = true;
	}
	if (!any) {
		snprintf(err, errlen, "the VM has no disk to snapshot");
		return -ENOTSUP;
	}
	return 0;
}

/* The position as the machine runs now: its disks' file names. */
static void snap_machine_disks(struct machine *m, struct snap_node *n)
{
	n->ndisks = 0;
	for (unsigned t = 0; t < SNAP_DISKS; t++) {
		struct blk_dev *d = snap_disk(m, t);
		char *rp = d ? realpath(d->path, NULL) : NULL;

		if (!rp)
			continue;
		n->disks[n->ndisks].target = t;
		snprintf(n->disks[n->ndisks++].file, SNAP_FILE_MAX + 1, "%s", basename(rp));
		free(rp);
	}
}

static bool snap_same_disks(const struct snap_node *a, const struct snap_node *b)
{
	if (a->ndisks != b->ndisks)
		return false;
	for (unsigned i = 0; i < a->ndisks; i++)
		if (a->disks[i].target != b->disks[i].target ||
		    strcmp(a->disks[i].file, b->disks[i].file))
			return false;
	return true;
}

/* DIR/STEM.N.vhd for a child of file: STEM is file without .vhd and
 * without an earlier .N. */
static void snap_child_name(const char *file, unsigned seq, char *out, size_t len)
{
	char stem[SNAP_FILE_MAX + 1];
	size_t n;
	char *dot;

	snprintf(stem, sizeof(stem), "%s", file);
	n = strlen(stem);
	if (n > 4 && !strcmp(stem + n - 4, ".vhd"))
		stem[n - 4] = '\0';
	dot = strrchr(stem, '.');
	if (dot && dot[1] && strspn(dot + 1, "0123456789") == strlen(dot + 1))
		*dot = '\0';
	snprintf(out, len, "%.200s.%u.vhd", stem, seq);
}

/* A differencing child of DIR/parent named after it; *file its name. */
static int snap_make_child(const char *dir, const char *parent, unsigned *seq, char *file,
			   size_t flen, char *err, size_t errlen)
{
	struct vhd_create_opts o = { .type = VHD_TYPE_DIFF };
	char ppath[PATH_MAX], cpath[PATH_MAX];
	int ret;

	snprintf(ppath, sizeof(ppath), "%s/%s", dir, parent);
	o.parent = ppath;
	do {
		snap_child_name(parent, (*seq)++, file, flen);
		snprintf(cpath, sizeof(cpath), "%s/%s", dir, file);
	} while (access(cpath, F_OK) == 0 && *seq < UINT32_MAX / 2);
	ret = vhd_create(cpath, &o, err, errlen);
	return ret;
}

/* ---- create ---- */

/* Target t onto a new child of its image; the old image closed. On failure
 * the old one is opened again and put back. */
static int snap_switch(struct machine *m, const char *dir, unsigned t, unsigned *seq, char *file,
		       char *err, size_t errlen)
{
	struct device *scsi = machine_find_device(m, "scsi0");
	struct blk_dev *old = snap_disk(m, t), *nb = NULL, *dummy;
	struct blk_opts o = old->opts;
	char oldpath[PATH_MAX], cpath[PATH_MAX + SNAP_FILE_MAX + 2], *oldfile;
	int ret;

	snprintf(oldpath, sizeof(oldpath), "%s", old->path);
	oldfile = realpath(oldpath, NULL);
	o.path = oldpath;
	o.owned = NULL;
	o.format = BLK_FMT_VHD;
	/* The child opens its parent shared; the VM holds it exclusively. */
	blk_close(old);
	ret = oldfile ? snap_make_child(dir, basename(oldfile), seq, file, SNAP_FILE_MAX + 1, err,
					errlen)
		      : -errno;
	snprintf(cpath, sizeof(cpath), "%s/%s", dir, file);
	if (!ret) {
		o.path = cpath;
		ret = blk_open(&nb, &o, err, errlen);
		if (ret)
			unlink(cpath);
		o.path = oldpath;
	}
	if (ret) {
		char again[256];

		if (blk_open(&nb, &o, again, sizeof(again)))
			kerr("snapshot: %s: the disk at target %u is lost: %s", oldpath, t, again);
	}
	if (nb && virtio_scsi_replace_disk(scsi, t, nb, &dummy)) {
		kerr("snapshot: target %u: the new image does not fit", t);
		ret = ret ?: -EINVAL;
	}
	free(oldfile);
	return ret;
}

/* Undo snap_switch: target t back onto DIR/parent, the child it ran on
 * (DIR/child, written since only by the paused VM's flushes: nothing the
 * snapshot needs) removed. When the parent does not open again, the child
 * stays in use so the disk is not lost. */
static int snap_switch_back(struct machine *m, const char *dir, unsigned t, const char *parent,
			    const char *child)
{
	struct device *scsi = machine_find_device(m, "scsi0");
	struct blk_dev *cur = snap_disk(m, t), *nb = NULL, *dummy;
	struct blk_opts o = cur->opts;
	char ppath[PATH_MAX + SNAP_FILE_MAX + 2], cpath[PATH_MAX + SNAP_FILE_MAX + 2], why[256];
	int ret;

	snprintf(ppath, sizeof(ppath), "%s/%s", dir, parent);
	snprintf(cpath, sizeof(cpath), "%s/%s", dir, child);
	o.owned = NULL;
	o.format = BLK_FMT_VHD;
	o.path = ppath;
	blk_close(cur); /* the child holds its parent open: close it first */
	ret = blk_open(&nb, &o, why, sizeof(why));
	if (ret) {
		kerr("snapshot: target %u: %s does not open again (%s); it stays on %s", t, ppath,
		     why, cpath);
		o.path = cpath;
		if (blk_open(&nb, &o, why, sizeof(why)))
			kerr("snapshot: %s: the disk at target %u is lost: %s", cpath, t, why);
	}
	if (nb && virtio_scsi_replace_disk(scsi, t, nb, &dummy)) {
		kerr("snapshot: target %u: the image does not fit", t);
		ret = ret ?: -EINVAL;
	}
	if (!ret && unlink(cpath) < 0)
		kwarn("snapshot: %s: %s (left behind)", cpath, strerror(errno));
	return ret;
}

int snapshot_create(struct machine *m, const char *name, char *err, size_t errlen)
{
	struct migrate_save_opts so = { 0 };
	struct migrate_save_result res;
	struct snap_tree t;
	struct snap_node now, *nodes;
	char dir[PATH_MAX], state[PATH_MAX + 80];
	unsigned done = 0;
	int ret;

	nodes = NULL;

	if (!snap_name_ok(name)) {
		snprintf(err, errlen,
			 "'%.80s' is not a snapshot name (1 to 64 of A-Z a-z 0-9 _ . -)", name);
		return -EINVAL;
	}
	ret = snapshot_vm_dir(m, dir, sizeof(dir), err, errlen)
		      ?: snap_tree_load(dir, &t, err, errlen);
	if (ret)
		return ret;
	memset(&now, 0, sizeof(now));
	snap_machine_disks(m, &now);
	if (snap_find(&t, name)) {
		snprintf(err, errlen, "a snapshot named %s exists", name);
		ret = -EEXIST;
	} else if (t.n == 0 && t.cur.ndisks == 0) {
		t.cur = now; /* the first snapshot of this VM */
	} else if (!snap_same_disks(&t.cur, &now)) {
		snprintf(err, errlen,
			 "%s/snapshots.json does not describe the disks this VM runs on", dir);
		ret = -EINVAL;
	}
	snprintf(state, sizeof(state), "%s/snapshots", dir);
	if (!ret && mkdir(state, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", state, strerror(errno));
	}
	snprintf(state, sizeof(state), "%s/snapshots/%s.state", dir, name);
	so.path = state;
	ret = ret ?: migrate_save(m, &so, &res, err, errlen);
	nodes = ret ? NULL : realloc(t.nodes, (t.n + 1) * sizeof(*t.nodes));
	if (!ret && !nodes)
		ret = -ENOMEM;
	if (!ret) {
		t.nodes = nodes;
		t.nodes[t.n] = t.cur;
		snprintf(t.nodes[t.n].name, sizeof(t.nodes[t.n].name), "%s", name);
		t.nodes[t.n].created = (long long)time(NULL);
	}
	while (!ret && done < now.ndisks) {
		ret = snap_switch(m, dir, now.disks[done].target, &t.seq, t.cur.disks[done].file,
				  err, errlen);
		done += !ret;
	}
	if (!ret) {
		t.n++;
		snprintf(t.cur.parent, sizeof(t.cur.parent), "%s", name);
		ret = snap_tree_save(dir, &t, err, errlen);
	}
	if (ret && nodes) {
		/* All or nothing: the disks already moved go back onto the files
		 * they ran on and their children are removed; snapshots.json was
		 * not written (or its rename failed), so the tree is as before. */
		while (done-- > 0)
			if (snap_switch_back(m, dir, now.disks[done].target, now.disks[done].file,
					     t.cur.disks[done].file))
				kerr("snapshot %s: target %u could not go back to %s", name,
				     now.disks[done].target, now.disks[done].file);
		unlink(state);
	}
	snap_tree_free(&t);
	return ret;
}

/* ---- apply ---- */

void snapshot_apply_free(struct snapshot_apply *a)
{
	for (unsigned i = 0; i < SNAP_DISKS; i++) {
		free(a->disk[i]);
		free(a->garbage[i]);
		a->disk[i] = a->garbage[i] = NULL;
	}
}

static bool snap_file_used(const struct snap_tree *t, const char *file)
{
	for (unsigned i = 0; i < t->n; i++)
		for (unsigned k = 0; k < t->nodes[i].ndisks; k++)
			if (!strcmp(t->nodes[i].disks[k].file, file))
				return true;
	for (unsigned i = 0; i < t->nlinks; i++)
		if (!strcmp(t->links[i], file))
			return true;
	return false;
}

int snapshot_apply_prepare(struct machine *m, const char *name, struct snapshot_apply *a, char *err,
			   size_t errlen)
{
	struct snap_tree t;
	struct snap_node *s, next = { 0 };
	char dir[PATH_MAX], path[PATH_MAX + SNAP_FILE_MAX + 2];
	int ret;

	memset(a, 0, sizeof(*a));
	ret = snapshot_vm_dir(m, dir, sizeof(dir), err, errlen)
		      ?: snap_tree_load(dir, &t, err, errlen);
	if (ret)
		return ret;
	s = snap_find(&t, name);
	if (!s) {
		snprintf(err, errlen, "no snapshot named %.80s", name);
		snap_tree_free(&t);
		return -ENOENT;
	}
	next.ndisks = s->ndisks;
	snprintf(next.parent, sizeof(next.parent), "%s", name);
	for (unsigned i = 0; i < s->ndisks && !ret; i++) {
		next.disks[i].target = s->disks[i].target;
		ret = snap_make_child(dir, s->disks[i].file, &t.seq, next.disks[i].file,
				      sizeof(next.disks[i].file), err, errlen);
		snprintf(path, sizeof(path), "%s/%s", dir, next.disks[i].file);
		if (!ret && !(a->disk[s->disks[i].target] = strdup(path)))
			ret = -ENOMEM;
	}
	for (unsigned i = 0; i < t.cur.ndisks && !ret; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, t.cur.disks[i].file);
		if (!snap_file_used(&t, t.cur.disks[i].file))
			a->garbage[i] = strdup(path);
	}
	snprintf(a->state, sizeof(a->state), "%s/snapshots/%s.state", dir, name);
	if (!ret) {
		t.cur = next;
		ret = snap_tree_save(dir, &t, err, errlen);
	}
	if (ret) {
		for (unsigned i = 0; i < SNAP_DISKS; i++)
			if (a->disk[i])
				unlink(a->disk[i]);
		snapshot_apply_free(a);
	}
	snap_tree_free(&t);
	return ret;
}

void snapshot_apply_finish(struct snapshot_apply *a)
{
	for (unsigned i = 0; i < SNAP_DISKS; i++)
		if (a->garbage[i] && unlink(a->garbage[i]) < 0)
			kwarn("snapshot: removing %s: %s", a->garbage[i], strerror(errno));
}

/* ---- delete, list ---- */

/* What snap_children needs of a file's footer and header. */
struct snap_ids {
	uint8_t uuid[16], parent[16];
	uint32_t timestamp;
	bool diff;
};

static int snap_file_ids(const char *dir, const char *file, struct snap_ids *ids)
{
	struct vhd_image *img;
	char path[PATH_MAX + SNAP_FILE_MAX + 2], err[256];
	int ret;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	ret = vhd_open(&img, path, VHD_OPEN_NO_PARENT | VHD_OPEN_NOLOCK, err, sizeof(err));
	if (ret)
		return ret;
	memcpy(ids->uuid, vhd_image_meta(img)->footer.uuid, 16);
	ids->timestamp = vhd_image_meta(img)->footer.timestamp;
	ids->diff = vhd_image_meta(img)->type == VHD_TYPE_DIFF;
	memcpy(ids->parent, vhd_image_meta(img)->hdr.parent_uuid, 16);
	vhd_close(img);
	return 0;
}

/* Every file the tree names (snapshots, the position, links), once. */
static unsigned snap_all_files(const struct snap_tree *t, const char **out, unsigned max)
{
	unsigned n = 0;

#define SNAP_ADD(f)                                     \
	do {                                            \
		bool seen_ = false;                     \
		for (unsigned k_ = 0; k_ < n; k_++)     \
			seen_ |= !strcmp(out[k_], (f)); \
		if (!seen_ && n < max)                  \
			out[n++] = (f);                 \
	} while (0)
	for (unsigned i = 0; i < t->n; i++)
		for (unsigned k = 0; k < t->nodes[i].ndisks; k++)
			SNAP_ADD(t->nodes[i].disks[k].file);
	for (unsigned k = 0; k < t->cur.ndisks; k++)
		SNAP_ADD(t->cur.disks[k].file);
	for (unsigned i = 0; i < t->nlinks; i++)
		SNAP_ADD(t->links[i]);
#undef SNAP_ADD
	return n;
}

/* How many files of the tree are differencing children of file; *child
 * the last one. -errno if a file cannot be read (then nothing is merged);
 * 0 if file itself is gone (a merge-up renamed it away before a crash).
 * A child into which file was being merged (file already carries the
 * child's id and timestamp: vhd_merge_up stopped before its rename) is its
 * one child: merging again finishes the job (its own children, which name
 * the same id, are not counted). */
static int snap_children(const char *dir, const struct snap_tree *t, const char *file,
			 const char **child)
{
	const char **all =
		calloc((size_t)t->n * SNAP_DISKS + t->nlinks + SNAP_DISKS + 1, sizeof(*all));
	struct snap_ids me, o;
	int n = 0, ret;
	unsigned total;

	if (!all)
		return -ENOMEM;
	total = snap_all_files(t, all, t->n * SNAP_DISKS + t->nlinks + SNAP_DISKS);
	ret = snap_file_ids(dir, file, &me);
	for (unsigned i = 0; !ret && i < total; i++) {
		if (!strcmp(all[i], file))
			continue;
		ret = snap_file_ids(dir, all[i], &o);
		if (!ret && o.diff && !memcmp(o.uuid, me.uuid, 16) && o.timestamp == me.timestamp &&
		    memcmp(o.parent, me.parent, 16)) {
			*child = all[i];
			free(all);
			return 1;
		}
		if (!ret && o.diff && !memcmp(o.parent, me.uuid, 16)) {
			n++;
			*child = all[i];
		}
	}
	free(all);
	if (ret == -ENOENT) {
		char path[PATH_MAX + SNAP_FILE_MAX + 2];

		snprintf(path, sizeof(path), "%s/%s", dir, file);
		if (access(path, F_OK) < 0 && errno == ENOENT)
			return 0;
	}
	return ret ?: n;
}

/* Links (files no snapshot or the position names) that can go: one with no
 * child is removed, one with a single child is merged into it (the child
 * keeps its name and id: vhd_merge_up). One with several stays. */
static void snap_collapse(const char *dir, struct snap_tree *t)
{
	for (unsigned i = 0; i < t->nlinks;) {
		char path[PATH_MAX + SNAP_FILE_MAX + 2], err[512];
		const char *child = NULL;
		int n = snap_children(dir, t, t->links[i], &child);

		if (n == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, t->links[i]);
			n = unlink(path) < 0 && errno != ENOENT ? -errno : 0;
			if (n)
				kwarn("snapshot: removing %s: %s", path, strerror(-n));
		} else if (n == 1) {
			snprintf(path, sizeof(path), "%s/%s", dir, child);
			n = vhd_merge_up(path, false, err, sizeof(err));
			if (n)
				kwarn("snapshot: %s stays a link: %s", t->links[i], err);
		} else if (n < 0) {
			kwarn("snapshot: %s stays a link: %s", t->links[i], strerror(-n));
		}
		if (n != 0) {
			i++;
			continue;
		}
		memmove(t->links[i], t->links[i + 1],
			(size_t)(t->nlinks - i - 1) * sizeof(*t->links));
		t->nlinks--;
		i = 0; /* its parent may have lost its last child */
	}
}

int snapshot_delete(const char *dir, const char *name, char *err, size_t errlen)
{
	struct snap_tree t;
	struct snap_node *s;
	char path[PATH_MAX + 80], parent[SNAP_NAME_MAX + 1];
	void *links;
	int ret = snap_tree_load(dir, &t, err, errlen);

	if (ret)
		return ret;
	s = snap_find(&t, name);
	links = s ? realloc(t.links, (t.nlinks + s->ndisks + 1) * sizeof(*t.links)) : NULL;
	if (!s || !links) {
		snprintf(err, errlen, s ? "out of memory" : "no snapshot named %.80s", name);
		snap_tree_free(&t);
		return s ? -ENOMEM : -ENOENT;
	}
	t.links = links;
	snprintf(parent, sizeof(parent), "%s", s->parent);
	/* Its disks become links first (saved so), then those that can go
	 * are merged away: a crash in between leaves a tree that reads right. */
	for (unsigned i = 0; i < s->ndisks; i++)
		snprintf(t.links[t.nlinks++], SNAP_FILE_MAX + 1, "%s", s->disks[i].file);
	for (unsigned i = 0; i < t.n; i++)
		if (!strcmp(t.nodes[i].parent, name))
			snprintf(t.nodes[i].parent, sizeof(t.nodes[i].parent), "%s", parent);
	if (!strcmp(t.cur.parent, name))
		snprintf(t.cur.parent, sizeof(t.cur.parent), "%s", parent);
	memmove(s, s + 1, (size_t)(t.nodes + t.n - (s + 1)) * sizeof(*s));
	t.n--;
	ret = snap_tree_save(dir, &t, err, errlen);
	snprintf(path, sizeof(path), "%s/snapshots/%s.state", dir, name);
	if (!ret && unlink(path) < 0 && errno != ENOENT)
		kwarn("snapshot: removing %s: %s", path, strerror(errno));
	if (!ret) {
		snap_collapse(dir, &t);
		ret = snap_tree_save(dir, &t, err, errlen);
	}
	snap_tree_free(&t);
	return ret;
}

/* Deleting from a running VM: its disks are closed around the merges (the
 * files they read change under them) and opened again by the same names. */
int snapshot_delete_machine(struct machine *m, const char *name, char *err, size_t errlen)
{
	struct device *scsi = machine_find_device(m, "scsi0");
	char dir[PATH_MAX], paths[SNAP_DISKS][PATH_MAX];
	struct blk_opts opts[SNAP_DISKS];
	bool had[SNAP_DISKS] = { false };
	int ret = snapshot_vm_dir(m, dir, sizeof(dir), err, errlen);

	if (ret)
		return ret;
	for (unsigned t = 0; t < SNAP_DISKS; t++) {
		struct blk_dev *d = snap_disk(m, t);

		if (!d)
			continue;
		had[t] = true;
		snprintf(paths[t], sizeof(paths[t]), "%s", d->path);
		opts[t] = d->opts;
		opts[t].owned = NULL;
		opts[t].path = paths[t];
		opts[t].format = BLK_FMT_VHD;
		blk_close(d);
	}
	ret = snapshot_delete(dir, name, err, errlen);
	for (unsigned t = 0; t < SNAP_DISKS; t++) {
		struct blk_dev *nb = NULL, *old;
		char why[256];

		if (!had[t])
			continue;
		if (blk_open(&nb, &opts[t], why, sizeof(why))) {
			kerr("snapshot: %s: the disk at target %u is lost: %s", paths[t], t, why);
			ret = ret ?: -EIO;
		} else if (virtio_scsi_replace_disk(scsi, t, nb, &old)) {
			kerr("snapshot: target %u: the image does not fit", t);
			blk_close(nb);
			ret = ret ?: -EIO;
		}
	}
	return ret;
}

int snapshot_list(const char *dir, json_object *out, char *err, size_t errlen)
{
	struct snap_tree t;
	json_object *o;
	int ret = snap_tree_load(dir, &t, err, errlen);

	if (ret)
		return ret;
	o = snap_tree_json(&t);
	json_object_object_foreach(o, k, v)
	{
		if (strcmp(k, "version") && strcmp(k, "seq"))
			json_object_object_add(out, k, json_object_get(v));
	}
	json_object_object_add(out, "vm_dir", json_object_new_string(dir));
	json_object_put(o);
	snap_tree_free(&t);
	return 0;
}

/* ---- kestrel snapshot ---- */

static void snap_print_tree(json_object *list)
{
	json_object *arr, *cur, *v;

	json_object_object_get_ex(list, "snapshots", &arr);
	json_object_object_get_ex(list, "current", &cur);
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *s = json_object_array_get_idx(arr, i);
		const char *name =
			json_object_object_get_ex(s, "name", &v) ? json_object_get_string(v) : "?";
		const char *parent = json_object_object_get_ex(s, "parent", &v) && v
					     ? json_object_get_string(v)
					     : "-";

		printf("%-24s parent %-24s%s\n", name, parent,
		       cur && json_object_object_get_ex(cur, "parent", &v) && v &&
				       !strcmp(json_object_get_string(v), name)
			       ? "  <- current"
			       : "");
	}
}

int snapshot_tool_main(int argc, char **argv)
{
	const char *dir = NULL, *action = NULL, *name = NULL;
	char err[512] = "";
	bool json = false;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--vm-dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!action)
			action = argv[i];
		else if (!name)
			name = argv[i];
		else
			action = "";
	}
	if (!dir || !action || (strcmp(action, "list") && strcmp(action, "delete")) ||
	    (!strcmp(action, "delete") && !name)) {
		fprintf(stderr, "usage: kestrel snapshot list --vm-dir DIR [--json]\n"
				"       kestrel snapshot delete NAME --vm-dir DIR\n"
				"(create and apply need the running VM: kestrel ctl NAME snapshot "
				"create|apply NAME)\n");
		return 2;
	}
	if (!strcmp(action, "delete")) {
		ret = snapshot_delete(dir, name, err, sizeof(err));
	} else {
		json_object *o = json_object_new_object();

		ret = snapshot_list(dir, o, err, sizeof(err));
		if (!ret && json)
			puts(json_object_to_json_string_ext(
				o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		else if (!ret)
			snap_print_tree(o);
		json_object_put(o);
	}
	if (ret) {
		fprintf(stderr, "kestrel: snapshot: %s\n", err);
		return ret == -ENOENT || ret == -EINVAL ? 2 : 1;
	}
	return 0;
}
