/* `kestrel vhd`: create, info, check [--repair] here; convert, compact, merge
 * and resize in vhd_convert.c. Errors are one line naming the file, the field
 * and its offset; exit 1 for a bad image or a failed operation, 2 for usage.
 * A command that fails never leaves a modified file behind: new files are
 * written under a temp name and renamed into place. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/clock.h"
#include "vhd_tool.h"

/* Links vhd_block.c wherever the tool is linked (see the anchor there). */
extern const struct blk_format_ops *const vhd_blk_ops_anchor;
__attribute__((used)) const void *const vhd_tool_block_link = &vhd_blk_ops_anchor;

static const char vhd_usage_text[] =
	"usage: kestrel vhd create --type fixed|dynamic|diff [--size SIZE] [--block-size SIZE]\n"
	"                          [--parent FILE] [--exact-size] FILE\n"
	"       kestrel vhd info [--json] [--parent-dir DIR[:DIR]] FILE\n"
	"       kestrel vhd check [--repair] [--parent-dir DIR[:DIR]] FILE\n"
	"       kestrel vhd convert --to fixed|dynamic|raw [--block-size SIZE] [--parent-dir DIR[:DIR]] IN OUT\n"
	"       kestrel vhd compact FILE\n"
	"       kestrel vhd merge [--parent-dir DIR[:DIR]] CHILD\n"
	"       kestrel vhd resize --size SIZE [--exact-size] [--shrink] FILE\n"
	"Sizes take K, M, G, T suffixes (binary). New sizes are rounded up to a CHS\n"
	"geometry as qemu-img does, so every tool sees the same size; --exact-size\n"
	"keeps the size and records the maximum geometry instead (qemu's force_size).\n"
	"Long jobs show a progress bar on a terminal (--quiet hides it).\n"
	"Parents of a differencing disk must be regular VHD files in its folder (or\n"
	"below it) or in a --parent-dir folder.\n";

/* ---- helpers ------------------------------------------------------------------- */

void vhd_tool_err(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c < 0x20)
			*c = '?'; /* file-controlled text stays on one line */
	fprintf(stderr, "kestrel vhd: %s\n", msg);
}

void vhd_human(uint64_t b, char *out, size_t n)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0 || v == (double)(uint64_t)v)
		snprintf(out, n, "%.0f %s", v, unit[u]);
	else
		snprintf(out, n, "%.2f %s", v, unit[u]);
}

int vhd_parse_block_size(const char *s, uint32_t *out)
{
	uint64_t v;

	if (!s) {
		*out = VHD_BLOCK_DEFAULT;
		return 0;
	}
	if (parse_size(s, &v) || v < VHD_CREATE_BLOCK_MIN || v > VHD_BLOCK_MAX || (v & (v - 1))) {
		vhd_tool_err("--block-size: '%s' is not a power of two from 4K to 256M", s);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

static const char *const value_flags[] = { "type",   "size", "block-size",
					   "parent", "to",   "parent-dir" };
static const char *const switch_flags[] = { "json", "repair", "exact-size", "shrink", "quiet" };

static bool flag_allowed(const char *allowed, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = allowed; (p = strstr(p, name)); p += n)
		if ((p == allowed || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}

static const char **value_slot(struct vhd_args *a, const char *name)
{
	const char **slots[] = { &a->type,   &a->size, &a->block_size,
				 &a->parent, &a->to,   &a->parent_dir };

	for (size_t i = 0; i < ARRAY_SIZE(value_flags); i++)
		if (strcmp(name, value_flags[i]) == 0)
			return slots[i];
	return NULL;
}

static bool *switch_slot(struct vhd_args *a, const char *name)
{
	bool *slots[] = { &a->json, &a->repair, &a->exact_size, &a->shrink, &a->quiet };

	for (size_t i = 0; i < ARRAY_SIZE(switch_flags); i++)
		if (strcmp(name, switch_flags[i]) == 0)
			return slots[i];
	return NULL;
}

static int parse_flag(char **argv, int argc, int *i, const char *allowed, struct vhd_args *a)
{
	char name[32];
	const char *arg = argv[*i] + 2, *eq = strchr(arg, '=');
	size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
	const char **vs;
	bool *sw;

	if (n >= sizeof(name) ||
	    !flag_allowed(allowed, (snprintf(name, sizeof(name), "%.*s", (int)n, arg), name))) {
		vhd_tool_err("unknown option '%s' for this command", argv[*i]);
		return -EINVAL;
	}
	vs = value_slot(a, name);
	sw = switch_slot(a, name);
	if (sw) {
		if (eq) {
			vhd_tool_err("--%s takes no value", name);
			return -EINVAL;
		}
		*sw = true;
		return 0;
	}
	if (!eq && (*i + 1 >= argc)) {
		vhd_tool_err("--%s needs a value", name);
		return -EINVAL;
	}
	*vs = eq ? eq + 1 : argv[++*i];
	return 0;
}

int vhd_args_parse(int argc, char **argv, const char *allowed, struct vhd_args *a)
{
	memset(a, 0, sizeof(*a));
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-q") == 0 && flag_allowed(allowed, "quiet")) {
			a->quiet = true;
		} else if (strncmp(argv[i], "--", 2) == 0 && argv[i][2]) {
			if (parse_flag(argv, argc, &i, allowed, a))
				return -EINVAL;
		} else if (a->nops < (int)ARRAY_SIZE(a->ops)) {
			a->ops[a->nops++] = argv[i];
		} else {
			vhd_tool_err("too many arguments");
			return -EINVAL;
		}
	}
	return 0;
}

void vhd_progress_start(struct vhd_progress *p, const char *label, uint64_t total, bool quiet)
{
	memset(p, 0, sizeof(*p));
	p->on = !quiet && isatty(STDERR_FILENO) && total > 0;
	p->label = label;
	p->total = total;
}

void vhd_progress_update(struct vhd_progress *p, uint64_t done)
{
	uint64_t now;
	char a[32], b[32], bar[41];
	unsigned pct, fill;

	if (!p->on)
		return;
	now = clock_mono_ns();
	if (done < p->total && now - p->last_ns < 100 * CLOCK_NS_PER_MS)
		return;
	p->last_ns = now;
	pct = (unsigned)(done * 100 / p->total);
	fill = (unsigned)(done * 40 / p->total);
	memset(bar, '#', fill);
	memset(bar + fill, '.', 40 - fill);
	bar[40] = '\0';
	vhd_human(done, a, sizeof(a));
	vhd_human(p->total, b, sizeof(b));
	fprintf(stderr, "\r%s [%s] %3u%% %s / %s ", p->label, bar, pct, a, b);
	fflush(stderr);
}

void vhd_progress_end(struct vhd_progress *p)
{
	if (!p->on)
		return;
	vhd_progress_update(p, p->total);
	fputc('\n', stderr);
}

static int need_operands(const struct vhd_args *a, int n, const char *what)
{
	if (a->nops == n)
		return 0;
	vhd_tool_err("expected %s", what);
	fputs(vhd_usage_text, stderr);
	return -EINVAL;
}

/* ---- create ------------------------------------------------------------------- */

static int cmd_create(struct vhd_args *a)
{
	struct vhd_create_opts o = { 0 };
	struct vhd_image *img;
	char err[512], h[32];

	if (need_operands(a, 1, "one FILE"))
		return VHD_EXIT_USAGE;
	if (!a->type) {
		vhd_tool_err("--type: required (fixed, dynamic or diff)");
		return VHD_EXIT_USAGE;
	}
	if (strcmp(a->type, "fixed") == 0)
		o.type = VHD_TYPE_FIXED;
	else if (strcmp(a->type, "dynamic") == 0)
		o.type = VHD_TYPE_DYNAMIC;
	else if (strcmp(a->type, "diff") == 0 || strcmp(a->type, "differencing") == 0)
		o.type = VHD_TYPE_DIFF;
	else {
		vhd_tool_err("--type: '%s' is not fixed, dynamic or diff", a->type);
		return VHD_EXIT_USAGE;
	}
	if (a->size && parse_size(a->size, &o.size)) {
		vhd_tool_err("--size: '%s' is not a size", a->size);
		return VHD_EXIT_USAGE;
	}
	if (vhd_parse_block_size(a->block_size, &o.block_size))
		return VHD_EXIT_USAGE;
	if (a->parent && o.type != VHD_TYPE_DIFF) {
		vhd_tool_err("--parent: only for --type diff");
		return VHD_EXIT_USAGE;
	}
	o.parent = a->parent;
	o.exact_size = a->exact_size;
	if (vhd_create(a->ops[0], &o, err, sizeof(err))) {
		vhd_tool_err("%s", err);
		return strncmp(err, "--", 2) == 0 ? VHD_EXIT_USAGE : VHD_EXIT_BAD;
	}
	if (vhd_open(&img, a->ops[0], VHD_OPEN_NO_PARENT, err, sizeof(err)) == 0) {
		vhd_human(img->m.size, h, sizeof(h));
		if (!a->quiet)
			printf("%s: %s VHD, %s (%llu bytes)%s\n", a->ops[0],
			       vhd_type_name(img->m.type), h, (unsigned long long)img->m.size,
			       o.size && img->m.size != o.size ? ", rounded up to a CHS geometry"
							       : "");
		vhd_close(img);
	}
	return VHD_EXIT_OK;
}

/* ---- info ----------------------------------------------------------------------- */

static void time_text(uint32_t vhd_ts, char *out, size_t n)
{
	time_t t = (time_t)(vhd_ts + VHD_EPOCH_OFFSET);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void creator_text(const struct vhd_footer *f, char *out, size_t n)
{
	char app[5];

	for (int i = 0; i < 4; i++)
		app[i] = f->creator_app[i] >= 0x20 && f->creator_app[i] < 0x7f ? f->creator_app[i]
									       : '?';
	app[4] = '\0';
	snprintf(out, n, "%s %u.%u", app, f->creator_version >> 16, f->creator_version & 0xffff);
}

static double alloc_pct(const struct vhd_meta *m)
{
	if (m->type == VHD_TYPE_FIXED)
		return 100.0;
	return m->nblocks ? 100.0 * m->allocated / m->nblocks : 0;
}

static json_object *info_json_one(const struct vhd_image *img)
{
	const struct vhd_meta *m = &img->m;
	json_object *o = json_object_new_object(), *g = json_object_new_object();
	char buf[64];

	json_object_object_add(o, "file", json_object_new_string(img->path));
	json_object_object_add(o, "type", json_object_new_string(vhd_type_name(m->type)));
	json_object_object_add(o, "virtual_size", json_object_new_int64((int64_t)m->size));
	json_object_object_add(
		o, "size_from",
		json_object_new_string(m->size_rule == VHD_SIZE_CHS ? "geometry" : "current_size"));
	json_object_object_add(o, "current_size",
			       json_object_new_int64((int64_t)m->footer.current_size));
	json_object_object_add(o, "original_size",
			       json_object_new_int64((int64_t)m->footer.original_size));
	json_object_object_add(g, "cylinders", json_object_new_int(m->footer.cylinders));
	json_object_object_add(g, "heads", json_object_new_int(m->footer.heads));
	json_object_object_add(g, "sectors", json_object_new_int(m->footer.sectors));
	json_object_object_add(o, "geometry", g);
	creator_text(&m->footer, buf, sizeof(buf));
	json_object_object_add(o, "creator", json_object_new_string(buf));
	vhd_uuid_format(m->footer.uuid, buf);
	json_object_object_add(o, "uuid", json_object_new_string(buf));
	time_text(m->footer.timestamp, buf, sizeof(buf));
	json_object_object_add(o, "created", json_object_new_string(buf));
	json_object_object_add(o, "saved_state", json_object_new_boolean(m->footer.saved_state));
	json_object_object_add(o, "file_size", json_object_new_int64((int64_t)m->file_size));
	if (m->type != VHD_TYPE_FIXED) {
		json_object_object_add(o, "block_size", json_object_new_int64(m->block_size));
		json_object_object_add(o, "blocks", json_object_new_int64(m->nblocks));
		json_object_object_add(o, "allocated_blocks", json_object_new_int64(m->allocated));
	}
	json_object_object_add(o, "allocated_percent", json_object_new_double(alloc_pct(m)));
	if (m->type == VHD_TYPE_DIFF) {
		vhd_uuid_format(m->hdr.parent_uuid, buf);
		json_object_object_add(o, "parent_uuid", json_object_new_string(buf));
	}
	return o;
}

static void info_json(const struct vhd_image *img, const char *parent_err)
{
	json_object *top = info_json_one(img), *chain = json_object_new_array();

	if (parent_err[0])
		json_object_object_add(top, "parent_error", json_object_new_string(parent_err));
	for (const struct vhd_image *p = img->parent; p; p = p->parent)
		json_object_array_add(chain, info_json_one(p));
	json_object_object_add(top, "chain", chain);
	puts(json_object_to_json_string_ext(top, JSON_C_TO_STRING_PRETTY |
							 JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(top);
}

static void info_text(const struct vhd_image *img, const char *parent_err)
{
	const struct vhd_meta *m = &img->m;
	char h[32], buf[64];

	vhd_human(m->size, h, sizeof(h));
	printf("file:           %s\n", img->path);
	printf("type:           %s\n", vhd_type_name(m->type));
	printf("virtual size:   %s (%llu bytes, from the %s)\n", h, (unsigned long long)m->size,
	       m->size_rule == VHD_SIZE_CHS ? "CHS geometry" : "current size");
	printf("current size:   %llu bytes\n", (unsigned long long)m->footer.current_size);
	printf("geometry:       %u/%u/%u (C/H/S)\n", m->footer.cylinders, m->footer.heads,
	       m->footer.sectors);
	if (m->type != VHD_TYPE_FIXED) {
		vhd_human(m->block_size, h, sizeof(h));
		printf("block size:     %s\n", h);
	}
	printf("allocated:      %.1f%%", alloc_pct(m));
	if (m->type != VHD_TYPE_FIXED)
		printf(" (%u of %u blocks)", m->allocated, m->nblocks);
	printf("\n");
	creator_text(&m->footer, buf, sizeof(buf));
	printf("creator:        %s\n", buf);
	vhd_uuid_format(m->footer.uuid, buf);
	printf("uuid:           %s\n", buf);
	time_text(m->footer.timestamp, buf, sizeof(buf));
	printf("created:        %s\n", buf);
	printf("saved state:    %s\n", m->footer.saved_state ? "yes" : "no");
	printf("file size:      %llu bytes\n", (unsigned long long)m->file_size);
	if (parent_err[0])
		printf("parent:         not usable: %s\n", parent_err);
	if (img->parent) {
		printf("chain:          %s", img->path);
		for (const struct vhd_image *p = img->parent; p; p = p->parent)
			printf(" -> %s (%s)", p->path, vhd_type_name(p->m.type));
		printf("\n");
	}
}

static int cmd_info(struct vhd_args *a)
{
	const unsigned flags = VHD_OPEN_NOLOCK | VHD_OPEN_NOLOCK_PARENTS;
	struct vhd_image *img;
	char err[512], perr[512] = "";

	if (need_operands(a, 1, "one FILE"))
		return VHD_EXIT_USAGE;
	/* Read only and unlocked, like `qemu-img info -U`: fine on a disk in
	 * use. A differencing disk whose parent is missing is still shown. */
	if (vhd_open_ex(&img, -1, a->ops[0], flags, a->parent_dir, perr, sizeof(perr))) {
		if (vhd_open(&img, a->ops[0], flags | VHD_OPEN_NO_PARENT, err, sizeof(err))) {
			vhd_tool_err("%s", err);
			return VHD_EXIT_BAD;
		}
	} else {
		perr[0] = '\0';
	}
	if (a->json)
		info_json(img, perr);
	else
		info_text(img, perr);
	vhd_close(img);
	return perr[0] ? VHD_EXIT_BAD : VHD_EXIT_OK;
}

/* ---- check and repair ------------------------------------------------------------- */

struct check_ctx {
	const char *path;
};

static void check_report(void *ctx, enum vhd_sev sev, bool repairable, const char *msg)
{
	const struct check_ctx *c = ctx;
	static const char *const sevname[] = { "note", "warning", "error" };

	printf("%s: %s: %s%s\n", c->path, sevname[sev], msg,
	       repairable && sev == VHD_ERROR && !strstr(msg, "--repair")
		       ? " (check --repair fixes it)"
		       : "");
}

/* Parents: resolvable, same UUID, same size (vhd_open does it all). */
static int check_chain(const char *path, const struct vhd_meta *m, const char *parent_dir)
{
	struct vhd_image *img;
	char err[512];

	if (m->type != VHD_TYPE_DIFF)
		return 0;
	if (vhd_open_ex(&img, -1, path, VHD_OPEN_NOLOCK, parent_dir, err, sizeof(err))) {
		printf("%s: error: %s\n", path, err);
		return 1;
	}
	for (struct vhd_image *c = img; c->parent; c = c->parent) {
		struct stat st;

		if (fstat(c->parent->fd, &st) == 0 &&
		    (uint32_t)(st.st_mtime - VHD_EPOCH_OFFSET) != c->m.hdr.parent_timestamp)
			printf("%s: note: parent time stamp at offset %llu does not match %s's modification time (it may have been copied or changed)\n",
			       c->path, (unsigned long long)c->m.hdr_off + VHD_H_PARENT_TIMESTAMP,
			       c->parent->path);
	}
	vhd_close(img);
	return 0;
}

static int repair_apply(int fd, struct vhd_meta *m)
{
	uint8_t foot[VHD_FOOTER_SIZE], ff[4] = { 0xff, 0xff, 0xff, 0xff };
	int ret = 0;

	/* BAT entries whose block lies wholly past the data: the data they
	 * would reference is not in the file; an unused entry (0xFFFFFFFF,
	 * spec: BAT) reads as zeros or, differencing, as the parent. */
	for (uint32_t i = 0; i < m->nbad_bat && !ret; i++)
		ret = pwrite_full(fd, ff, 4, m->hdr.table_offset + 4ULL * m->bad_bat[i]);
	if (!ret && m->nbad_bat)
		ret = fdatasync(fd) < 0 ? -errno : 0;
	/* The two footer copies are redundant by design (spec, Dynamic Hard
	 * Disk Image): restore the bad one from the good one. A missing
	 * trailing footer goes after everything in the file. */
	vhd_footer_encode(&m->footer, foot);
	if (!ret && m->trailing_bad)
		ret = pwrite_full(fd, foot, sizeof(foot), ALIGN_UP(m->file_size, VHD_SECTOR));
	if (!ret && m->copy_bad)
		ret = pwrite_full(fd, foot, sizeof(foot), 0);
	if (!ret)
		ret = fdatasync(fd) < 0 ? -errno : 0;
	return ret;
}

static int check_once(const char *path, int fd, struct vhd_meta *m, struct vhd_diag *d, bool quiet)
{
	struct check_ctx c = { path };

	memset(d, 0, sizeof(*d));
	d->report = quiet ? NULL : check_report;
	d->ctx = &c;
	return vhd_parse(fd, m, VHD_PARSE_CHECK, d);
}

static int do_repair(const char *path, int fd, struct vhd_meta *m, struct vhd_diag *d)
{
	int ret;

	if (d->errors) {
		printf("%s: not repaired: %u error(s) that no repair is known to be safe for\n",
		       path, d->errors);
		return VHD_EXIT_BAD;
	}
	ret = repair_apply(fd, m);
	vhd_meta_free(m);
	if (ret) {
		vhd_tool_err("%s: repair failed: %s", path, strerror(-ret));
		return VHD_EXIT_BAD;
	}
	printf("%s: repaired %u problem(s); checking again\n", path, d->repairable);
	ret = check_once(path, fd, m, d, false);
	return ret || d->errors || d->repairable ? VHD_EXIT_BAD : VHD_EXIT_OK;
}

static int cmd_check(struct vhd_args *a)
{
	const char *path;
	struct vhd_meta m;
	struct vhd_diag d;
	char h[32];
	int fd, ret, rc;

	if (need_operands(a, 1, "one FILE"))
		return VHD_EXIT_USAGE;
	path = a->ops[0];
	fd = open(path, (a->repair ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0) {
		vhd_tool_err("%s: %s", path, strerror(errno));
		return VHD_EXIT_BAD;
	}
	if (vhd_lock_fd(fd, a->repair)) {
		vhd_tool_err("%s: in use by another process", path);
		close(fd);
		return VHD_EXIT_BAD;
	}
	ret = check_once(path, fd, &m, &d, false);
	if (ret && ret != -EINVAL) {
		vhd_tool_err("%s: %s", path, strerror(-ret));
		rc = VHD_EXIT_BAD;
	} else if (a->repair && d.repairable) {
		rc = do_repair(path, fd, &m, &d);
	} else {
		rc = d.errors || d.repairable ? VHD_EXIT_BAD : VHD_EXIT_OK;
	}
	if (rc == VHD_EXIT_OK)
		rc = check_chain(path, &m, a->parent_dir) ? VHD_EXIT_BAD : VHD_EXIT_OK;
	if (rc == VHD_EXIT_OK) {
		vhd_human(m.size, h, sizeof(h));
		printf("%s: ok: %s, %s", path, vhd_type_name(m.type), h);
		if (m.type != VHD_TYPE_FIXED)
			printf(", %u of %u blocks allocated", m.allocated, m.nblocks);
		printf("%s\n", d.warnings ? ", with warnings" : "");
	} else if (!d.errors && !d.repairable && ret == 0) {
		/* chain problem: already printed */
	} else if (d.errors || d.repairable) {
		printf("%s: %u error(s)%s\n", path, d.errors + d.repairable,
		       d.repairable && !a->repair ? "; check --repair can fix some" : "");
	}
	vhd_meta_free(&m);
	close(fd);
	return rc;
}

/* ---- dispatch ---------------------------------------------------------------------- */

struct vhd_cmd {
	const char *name;
	const char *flags;
	int (*fn)(struct vhd_args *a);
};

static const struct vhd_cmd vhd_cmds[] = {
	{ "create", "type,size,block-size,parent,exact-size,quiet", cmd_create },
	{ "info", "json,parent-dir", cmd_info },
	{ "check", "repair,parent-dir", cmd_check },
	{ "convert", "to,block-size,quiet,parent-dir", vhd_cmd_convert },
	{ "compact", "quiet", vhd_cmd_compact },
	{ "merge", "quiet,parent-dir", vhd_cmd_merge },
	{ "resize", "size,exact-size,shrink,quiet", vhd_cmd_resize },
};

int vhd_tool_main(int argc, char **argv)
{
	struct vhd_args a;

	/* argv[0] is "vhd" */
	if (argc < 2) {
		fputs(vhd_usage_text, stderr);
		return VHD_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(vhd_usage_text, stdout);
		return VHD_EXIT_OK;
	}
	for (size_t i = 0; i < ARRAY_SIZE(vhd_cmds); i++) {
		if (strcmp(argv[1], vhd_cmds[i].name) != 0)
			continue;
		for (int k = 2; k < argc; k++) {
			if (!strcmp(argv[k], "--help") || !strcmp(argv[k], "-h")) {
				fputs(vhd_usage_text, stdout);
				return VHD_EXIT_OK;
			}
		}
		if (vhd_args_parse(argc - 1, argv + 1, vhd_cmds[i].flags, &a))
			return VHD_EXIT_USAGE;
		return vhd_cmds[i].fn(&a);
	}
	vhd_tool_err("unknown command '%s'", argv[1]);
	fputs(vhd_usage_text, stderr);
	return VHD_EXIT_USAGE;
}
