/* Control protocol: one request line in, one reply line out (docs/control.md).
 * Requests are strict JSON objects {"id": .., "command": "..", "arguments":
 * {..}}; everything a client sends is untrusted, so the request shape, the
 * command name and every argument's type and range are checked here, against
 * the command table, before a command runs. The table below is what the schema
 * document lists; tests/check_control.c holds the two to each other. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kestrel/json_text.h"
#include "kestrel/block.h"
#include "kestrel/config.h"
#include "kestrel/control.h"
#include "kestrel/devices.h"
#include "kestrel/keymap.h"

/* Nesting deeper than this is refused by the tokenizer: no request needs more
 * than three levels, and deep nesting costs stack. */
#define CTL_JSON_DEPTH	    16
#define CTL_STRING_MAX	    4096
#define CTL_DURATION_MAX_MS (7ULL * 24 * 3600 * 1000) /* one week */
#define CTL_ID_STRING_MAX   256

/* clang-format off */
const char *const control_event_names[] = {
	CTL_EV_STATE, CTL_EV_POWERDOWN, CTL_EV_RESET, CTL_EV_STOPPED, CTL_EV_EXITING,
	CTL_EV_DEVICE_ADDED, CTL_EV_DEVICE_REMOVED, CTL_EV_SAVE_PROGRESS, CTL_EV_SAVED,
	CTL_EV_SAVE_FAILED, CTL_EV_MIGRATE_PROGRESS, CTL_EV_MIGRATED, CTL_EV_MIGRATE_FAILED, NULL,
};
/* clang-format on */

const char *const control_error_codes[] = {
	CTL_E_PARSE,   CTL_E_REQUEST,	  CTL_E_UNKNOWN,   CTL_E_ARGUMENT, CTL_E_TOO_LONG,
	CTL_E_STATE,   CTL_E_UNSUPPORTED, CTL_E_NOT_FOUND, CTL_E_EXISTS,   CTL_E_FAILED,
	CTL_E_TIMEOUT, CTL_E_TOO_MANY,	  CTL_E_INTERNAL,  NULL,
};

int control_fail(struct control_error *e, const char *code, const char *fmt, ...)
{
	va_list ap;

	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

const char *control_arg_type_name(enum control_arg_type t)
{
	switch (t) {
	case CTL_ARG_STRING: return "string";
	case CTL_ARG_PATH: return "path";
	case CTL_ARG_INT: return "integer";
	case CTL_ARG_BOOL: return "boolean";
	case CTL_ARG_ENUM: return "enum";
	case CTL_ARG_DURATION: return "duration";
	}
	return "?";
}

/* ---- the commands ---------------------------------------------------- */

static int cmd_query_status(const struct control_ops *ops, void *o, const struct control_args *a,
			    struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)a;
	(void)e;
	ops->query_status(o, ret);
	return 0;
}

static int cmd_query_vm(const struct control_ops *ops, void *o, const struct control_args *a,
			struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)a;
	return ops->query_vm(o, ret, e);
}

static int cmd_pause(const struct control_ops *ops, void *o, const struct control_args *a,
		     struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)a;
	(void)ret;
	return ops->pause(o, e);
}

static int cmd_resume(const struct control_ops *ops, void *o, const struct control_args *a,
		      struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)a;
	(void)ret;
	return ops->resume(o, e);
}

static int cmd_shutdown(const struct control_ops *ops, void *o, const struct control_args *a,
			struct control_call *call, json_object *ret, struct control_error *e)
{
	uint64_t ms = a->set[0] ? (uint64_t)a->num[0] : 0;

	json_object_object_add(ret, "timeout_ms", json_object_new_int64((int64_t)ms));
	return ops->shutdown(o, ms, e);
}

static int cmd_stop(const struct control_ops *ops, void *o, const struct control_args *a,
		    struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)a;
	(void)ret;
	return ops->stop(o, e);
}

static int cmd_reset(const struct control_ops *ops, void *o, const struct control_args *a,
		     struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)a;
	(void)ret;
	return ops->reset(o, e);
}

static int cmd_stats(const struct control_ops *ops, void *o, const struct control_args *a,
		     struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)a;
	return ops->stats(o, ret, e);
}

static int cmd_disk_add(const struct control_ops *ops, void *o, const struct control_args *a,
			struct control_call *call, json_object *ret, struct control_error *e)
{
	struct control_disk_req d = {
		.path = a->str[0],
		.target = a->set[1] ? (int)a->num[1] : -1,
		.format = a->set[2] ? a->str[2] : "auto",
		.readonly = a->set[3] && a->flag[3],
		.cache = a->set[4] ? a->str[4] : "writeback",
		.aio = a->set[5] ? a->str[5] : "auto",
	};

	return ops->disk_add(o, &d, call, ret, e);
}

static int cmd_disk_remove(const struct control_ops *ops, void *o, const struct control_args *a,
			   struct control_call *call, json_object *ret, struct control_error *e)
{
	json_object_object_add(ret, "target", json_object_new_int64(a->num[0]));
	return ops->disk_remove(o, (unsigned)a->num[0], call, ret, e);
}

static int cmd_net_link(const struct control_ops *ops, void *o, const struct control_args *a,
			struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)ret;
	return ops->net_link(o, a->set[1] ? a->str[1] : NULL, strcmp(a->str[0], "up") == 0, e);
}

static int cmd_dirty_log(const struct control_ops *ops, void *o, const struct control_args *a,
			 struct control_call *call, json_object *ret, struct control_error *e)
{
	return ops->dirty_log(o, a->str[0], ret, e);
}

static int cmd_save(const struct control_ops *ops, void *o, const struct control_args *a,
		    struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)call;
	return ops->save(o, a->str[0], a->set[1] && a->flag[1], ret, e);
}

static int cmd_migrate(const struct control_ops *ops, void *o, const struct control_args *a,
		       struct control_call *call, json_object *ret, struct control_error *e)
{
	const char *uri = a->str[0];

	(void)call;
	if (!ops->migrate)
		return control_fail(e, CTL_E_UNSUPPORTED, "this worker cannot migrate");
	/* As for save's path: the worker's directory is nothing the caller
	 * knows (and may be a sandbox's), so a file or socket is named in full. */
	if ((!strncmp(uri, "file:", 5) && uri[5] != '/') ||
	    (!strncmp(uri, "unix:", 5) && uri[5] != '/'))
		return control_fail(e, CTL_E_ARGUMENT, "'uri': '%.200s' is not an absolute path",
				    uri);
	return ops->migrate(o, a->str[0], a->set[1] ? (uint64_t)a->num[1] : 0,
			    a->set[2] ? (uint64_t)a->num[2] << 20 : 0, ret, e);
}

static int cmd_migrate_cancel(const struct control_ops *ops, void *o, const struct control_args *a,
			      struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)a, (void)call, (void)ret;
	if (!ops->migrate_cancel)
		return control_fail(e, CTL_E_UNSUPPORTED, "this worker cannot migrate");
	return ops->migrate_cancel(o, e);
}

static int cmd_snapshot(const struct control_ops *ops, void *o, const struct control_args *a,
			struct control_call *call, json_object *ret, struct control_error *e)
{
	if (strcmp(a->str[0], "list") && !a->set[1])
		return control_fail(e, CTL_E_ARGUMENT, "snapshot %s needs the argument 'name'",
				    a->str[0]);
	return ops->snapshot(o, a->str[0], a->set[1] ? a->str[1] : NULL, call, ret, e);
}

static int cmd_send_key(const struct control_ops *ops, void *o, const struct control_args *a,
			struct control_call *call, json_object *ret, struct control_error *e)
{
	struct i8042_key keys[I8042_MAX_KEYS];
	char err[200];
	unsigned n;

	if (keymap_parse_keys(a->str[0], keys, I8042_MAX_KEYS, &n, err, sizeof(err)))
		return control_fail(e, CTL_E_ARGUMENT, "'keys': %s", err);
	json_object_object_add(ret, "events", json_object_new_int((int)n));
	return ops->send_key(o, keys, n, e);
}

static int cmd_mouse_move(const struct control_ops *ops, void *o, const struct control_args *a,
			  struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)ret;
	return ops->mouse_move(o, (int)a->num[0], (int)a->num[1], a->set[3] ? (int)a->num[3] : 0,
			       a->set[2] ? (unsigned)a->num[2] : 0, e);
}

static int cmd_screendump(const struct control_ops *ops, void *o, const struct control_args *a,
			  struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)call;
	if (!ops->screendump)
		return control_fail(e, CTL_E_UNSUPPORTED, "no display");
	return ops->screendump(o, a->str[0], ret, e);
}

static const char *const link_choices[] = { "up", "down", NULL };
static int cmd_cdrom_change(const struct control_ops *ops, void *o, const struct control_args *a,
			    struct control_call *call, json_object *ret, struct control_error *e)
{
	if (!ops->cdrom_change)
		return control_fail(e, CTL_E_UNSUPPORTED, "this VM has no IDE CD-ROM drive");
	return ops->cdrom_change(o, a->str[0], a->str[1], a->set[2] ? a->str[2] : "auto", call, ret,
				 e);
}

static int cmd_cdrom_eject(const struct control_ops *ops, void *o, const struct control_args *a,
			   struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)call;
	if (!ops->cdrom_eject)
		return control_fail(e, CTL_E_UNSUPPORTED, "this VM has no IDE CD-ROM drive");
	return ops->cdrom_eject(o, a->str[0], a->set[1] && a->flag[1], ret, e);
}

static const char *const dirty_log_choices[] = { "start", "fetch", "stop", NULL };
static const char *const snapshot_choices[] = { "create", "apply", "delete", "list", NULL };

#define ARG_END   \
	{         \
		0 \
	}
static const struct control_arg no_args[] = { ARG_END };
static const struct control_arg shutdown_args[] = {
	{ .name = "timeout", .type = CTL_ARG_DURATION },
	ARG_END,
};
/* The order is also the order of positional words in `kestrel ctl`. */
static const struct control_arg disk_add_args[] = {
	{ .name = "path", .type = CTL_ARG_PATH, .required = true },
	{ .name = "target", .type = CTL_ARG_INT, .min = 0, .max = CONFIG_MAX_DISKS - 1 },
	{ .name = "format", .type = CTL_ARG_ENUM, .choices = blk_format_names },
	{ .name = "readonly", .type = CTL_ARG_BOOL },
	{ .name = "cache", .type = CTL_ARG_ENUM, .choices = blk_cache_names },
	{ .name = "aio", .type = CTL_ARG_ENUM, .choices = blk_aio_names },
	ARG_END,
};
static const struct control_arg disk_remove_args[] = {
	{ .name = "target",
	  .type = CTL_ARG_INT,
	  .required = true,
	  .min = 0,
	  .max = CONFIG_MAX_DISKS - 1 },
	ARG_END,
};
static const struct control_arg screendump_args[] = {
	{ .name = "file", .type = CTL_ARG_PATH, .required = true },
	ARG_END,
};
static const struct control_arg net_link_args[] = {
	{ .name = "state", .type = CTL_ARG_ENUM, .required = true, .choices = link_choices },
	{ .name = "device", .type = CTL_ARG_STRING },
	ARG_END,
};
static const struct control_arg save_args[] = {
	{ .name = "path", .type = CTL_ARG_PATH, .required = true },
	{ .name = "keep-running", .type = CTL_ARG_BOOL },
	ARG_END,
};
static const struct control_arg migrate_args[] = {
	{ .name = "uri", .type = CTL_ARG_STRING, .required = true },
	{ .name = "max-downtime", .type = CTL_ARG_INT, .min = 1, .max = 60000 },
	{ .name = "bandwidth", .type = CTL_ARG_INT, .min = 1, .max = 1 << 20 },
	ARG_END,
};
static const struct control_arg snapshot_args[] = {
	{ .name = "action", .type = CTL_ARG_ENUM, .required = true, .choices = snapshot_choices },
	{ .name = "name", .type = CTL_ARG_STRING },
	ARG_END,
};
static const struct control_arg cdrom_change_args[] = {
	{ .name = "id", .type = CTL_ARG_STRING, .required = true },
	{ .name = "path", .type = CTL_ARG_PATH, .required = true },
	{ .name = "format", .type = CTL_ARG_ENUM, .choices = blk_format_names },
	ARG_END,
};
static const struct control_arg cdrom_eject_args[] = {
	{ .name = "id", .type = CTL_ARG_STRING, .required = true },
	{ .name = "force", .type = CTL_ARG_BOOL },
	ARG_END,
};
static const struct control_arg dirty_log_args[] = {
	{ .name = "action", .type = CTL_ARG_ENUM, .required = true, .choices = dirty_log_choices },
	ARG_END,
};
static const struct control_arg send_key_args[] = {
	{ .name = "keys", .type = CTL_ARG_STRING, .required = true },
	ARG_END,
};
#define MOUSE_MOVE_MAX 4096
static const struct control_arg mouse_move_args[] = {
	{ .name = "dx",
	  .type = CTL_ARG_INT,
	  .required = true,
	  .min = -MOUSE_MOVE_MAX,
	  .max = MOUSE_MOVE_MAX },
	{ .name = "dy",
	  .type = CTL_ARG_INT,
	  .required = true,
	  .min = -MOUSE_MOVE_MAX,
	  .max = MOUSE_MOVE_MAX },
	{ .name = "buttons", .type = CTL_ARG_INT, .min = 0, .max = 7 },
	{ .name = "wheel", .type = CTL_ARG_INT, .min = -127, .max = 127 },
	ARG_END,
};

const struct control_command control_commands[] = {
	{ "query-status", no_args, cmd_query_status },
	{ "query-vm", no_args, cmd_query_vm },
	{ "pause", no_args, cmd_pause },
	{ "resume", no_args, cmd_resume },
	{ "shutdown", shutdown_args, cmd_shutdown },
	{ "stop", no_args, cmd_stop },
	{ "reset", no_args, cmd_reset },
	{ "stats", no_args, cmd_stats },
	{ "disk-add", disk_add_args, cmd_disk_add },
	{ "disk-remove", disk_remove_args, cmd_disk_remove },
	{ "net-link", net_link_args, cmd_net_link },
	{ "dirty-log", dirty_log_args, cmd_dirty_log },
	{ "save", save_args, cmd_save },
	{ "migrate", migrate_args, cmd_migrate },
	{ "migrate-cancel", no_args, cmd_migrate_cancel },
	{ "snapshot", snapshot_args, cmd_snapshot },
	{ "send-key", send_key_args, cmd_send_key },
	{ "mouse-move", mouse_move_args, cmd_mouse_move },
	{ "screendump", screendump_args, cmd_screendump },
	{ "cdrom-change", cdrom_change_args, cmd_cdrom_change },
	{ "cdrom-eject", cdrom_eject_args, cmd_cdrom_eject },
	{ 0 },
};

const struct control_command *control_command_find(const char *name)
{
	for (const struct control_command *c = control_commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

/* ---- request validation ---------------------------------------------- */

/* A JSON string without embedded NUL (json-c keeps them; C strings would
 * silently cut them off), at most max bytes. */
static const char *json_cstr(json_object *v, size_t max)
{
	const char *s;

	if (!json_object_is_type(v, json_type_string))
		return NULL;
	s = json_object_get_string(v);
	if (strlen(s) != (size_t)json_object_get_string_len(v) || strlen(s) > max)
		return NULL;
	return s;
}

static int arg_enum(const struct control_arg *spec, json_object *v, const char **out,
		    struct control_error *e)
{
	const char *s = json_cstr(v, CTL_STRING_MAX);
	char list[128] = "";
	size_t n = 0;

	if (!s)
		return control_fail(e, CTL_E_ARGUMENT,
				    "'%s': expected one of a set of strings, got %s", spec->name,
				    json_type_text(v));
	for (const char *const *c = spec->choices; *c; c++) {
		if (strcmp(s, *c) == 0) {
			*out = *c;
			return 0;
		}
		n += (size_t)snprintf(list + n, sizeof(list) - MIN(n, sizeof(list)), "%s%s",
				      n ? ", " : "", *c);
		n = MIN(n, sizeof(list) - 1);
	}
	return control_fail(e, CTL_E_ARGUMENT, "'%s': '%.64s' is not one of: %s", spec->name, s,
			    list);
}

static int arg_duration(const struct control_arg *spec, json_object *v, int64_t *ms,
			struct control_error *e)
{
	uint64_t m;
	const char *s;

	if (json_object_is_type(v, json_type_int)) {
		int64_t sec = json_object_get_int64(v);

		if (sec < 0 || (uint64_t)sec > CTL_DURATION_MAX_MS / 1000)
			return control_fail(e, CTL_E_ARGUMENT,
					    "'%s': %lld seconds is out of range "
					    "(0 to one week)",
					    spec->name, (long long)sec);
		*ms = sec * 1000;
		return 0;
	}
	s = json_cstr(v, 64);
	if (!s)
		return control_fail(e, CTL_E_ARGUMENT,
				    "'%s': expected a duration (integer seconds "
				    "or a string like \"60s\"), got %s",
				    spec->name, json_type_text(v));
	if (config_parse_duration(s, &m) < 0)
		return control_fail(e, CTL_E_ARGUMENT,
				    "'%s': '%s' is not a duration (e.g. 60s, "
				    "1500ms, 5m)",
				    spec->name, s);
	if (m > CTL_DURATION_MAX_MS)
		return control_fail(e, CTL_E_ARGUMENT, "'%s': %s is longer than one week",
				    spec->name, s);
	*ms = (int64_t)m;
	return 0;
}

static int arg_int(const struct control_arg *spec, json_object *v, int64_t *out,
		   struct control_error *e)
{
	int64_t n;

	if (!json_object_is_type(v, json_type_int))
		return control_fail(e, CTL_E_ARGUMENT, "'%s': expected an integer, got %s",
				    spec->name, json_type_text(v));
	/* json-c clamps what does not fit int64 to the limits: out of range too. */
	n = json_object_get_int64(v);
	if (n < spec->min || n > spec->max)
		return control_fail(e, CTL_E_ARGUMENT, "'%s': %lld is out of range (%lld to %lld)",
				    spec->name, (long long)n, (long long)spec->min,
				    (long long)spec->max);
	*out = n;
	return 0;
}

static int arg_string(const struct control_arg *spec, json_object *v, const char **out,
		      struct control_error *e)
{
	const char *s = json_cstr(v, CTL_STRING_MAX);

	if (!s) {
		if (json_object_is_type(v, json_type_string))
			return control_fail(e, CTL_E_ARGUMENT,
					    "'%s': string too long or contains "
					    "a NUL character",
					    spec->name);
		return control_fail(e, CTL_E_ARGUMENT, "'%s': expected a string, got %s",
				    spec->name, json_type_text(v));
	}
	if (spec->type == CTL_ARG_PATH && s[0] != '/')
		return control_fail(e, CTL_E_ARGUMENT, "'%s': '%.200s' is not an absolute path",
				    spec->name, s);
	if (!*s)
		return control_fail(e, CTL_E_ARGUMENT, "'%s': empty string", spec->name);
	*out = s;
	return 0;
}

static int arg_one(const struct control_arg *spec, json_object *v, struct control_args *out, int i,
		   struct control_error *e)
{
	switch (spec->type) {
	case CTL_ARG_STRING:
	case CTL_ARG_PATH: return arg_string(spec, v, &out->str[i], e);
	case CTL_ARG_INT: return arg_int(spec, v, &out->num[i], e);
	case CTL_ARG_BOOL:
		if (!json_object_is_type(v, json_type_boolean))
			return control_fail(e, CTL_E_ARGUMENT,
					    "'%s': expected true or false, got %s", spec->name,
					    json_type_text(v));
		out->flag[i] = json_object_get_boolean(v);
		return 0;
	case CTL_ARG_ENUM: return arg_enum(spec, v, &out->str[i], e);
	case CTL_ARG_DURATION: return arg_duration(spec, v, &out->num[i], e);
	}
	return control_fail(e, CTL_E_INTERNAL, "bad argument table");
}

static int args_validate(const struct control_command *c, json_object *args,
			 struct control_args *out, struct control_error *e)
{
	int i;

	memset(out, 0, sizeof(*out));
	if (args && !json_object_is_type(args, json_type_object))
		return control_fail(e, CTL_E_REQUEST, "\"arguments\" must be an object, got %s",
				    json_type_text(args));
	if (args) {
		json_object_object_foreach(args, key, val)
		{
			for (i = 0; c->args[i].name; i++)
				if (strcmp(c->args[i].name, key) == 0)
					break;
			if (!c->args[i].name)
				return control_fail(e, CTL_E_ARGUMENT,
						    "%s takes no argument '%.64s'", c->name, key);
			if (arg_one(&c->args[i], val, out, i, e))
				return -EINVAL;
			out->set[i] = true;
		}
	}
	for (i = 0; c->args[i].name; i++)
		if (c->args[i].required && !out->set[i])
			return control_fail(e, CTL_E_ARGUMENT, "%s needs the argument '%s'",
					    c->name, c->args[i].name);
	return 0;
}

/* ---- one line in, one line out ---------------------------------------- */

static char *reply_text(json_object *reply)
{
	const char *s = json_object_to_json_string_ext(
		reply, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	char *dup = s ? strdup(s) : NULL;

	json_object_put(reply);
	return dup;
}

/* The request's id, echoed as it came: absent, a string, an integer or null. */
struct ctl_id {
	bool present;
	json_object *v; /* NULL for JSON null */
};

static void reply_id(json_object *r, const struct ctl_id *id)
{
	if (id && id->present)
		json_object_object_add(r, "id", json_object_get(id->v));
}

static char *error_reply(const struct ctl_id *id, const struct control_error *e)
{
	json_object *r = json_object_new_object(), *err = json_object_new_object();

	reply_id(r, id);
	json_object_object_add(err, "code", json_object_new_string(e->code));
	json_object_object_add(err, "message", json_object_new_string(e->message));
	json_object_object_add(r, "error", err);
	return reply_text(r);
}

char *control_error_line(const char *code, const char *message)
{
	struct control_error e = { .code = code };

	snprintf(e.message, sizeof(e.message), "%s", message);
	return error_reply(NULL, &e);
}

static json_object *parse_request(const char *line, size_t len, struct control_error *e)
{
	json_tokener *tok = json_tokener_new_ex(CTL_JSON_DEPTH);
	char *buf = malloc(len + 1);
	json_object *obj = NULL;
	enum json_tokener_error jerr;
	size_t end;

	if (!tok || !buf) {
		control_fail(e, CTL_E_INTERNAL, "out of memory");
		goto out;
	}
	memcpy(buf, line, len);
	buf[len] = '\0';
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	/* Including the NUL tells the tokenizer the input ends here. */
	obj = json_tokener_parse_ex(tok, buf, (int)len + 1);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	if (!obj && jerr == json_tokener_success) {
		/* A lone JSON null: well-formed, but no request. */
		control_fail(e, CTL_E_REQUEST, "a request is a JSON object, got null");
		goto out;
	}
	if (!obj) {
		control_fail(e, CTL_E_PARSE, "%s at byte %zu",
			     jerr == json_tokener_continue ? "unexpected end of input"
							   : json_tokener_error_desc(jerr),
			     MIN(end, len));
		goto out;
	}
	end = MIN(end, len);
	end += strspn(buf + end, " \t\r");
	if (end < len) {
		control_fail(e, CTL_E_PARSE, "unexpected data after the request at byte %zu", end);
		json_object_put(obj);
		obj = NULL;
	}
out:
	if (tok)
		json_tokener_free(tok);
	free(buf);
	return obj;
}

/* The request's members: id, command, arguments; nothing else, so that a
 * misspelt member is not silently ignored. (json-c hands JSON null over as a
 * NULL object, hence the flags.) */
static int request_members(json_object *req, struct ctl_id *id, const char **cmd,
			   json_object **args, struct control_error *e)
{
	json_object *c = NULL;
	bool has_cmd = false;

	*args = NULL;
	if (!json_object_is_type(req, json_type_object))
		return control_fail(e, CTL_E_REQUEST, "a request is a JSON object, got %s",
				    json_type_text(req));
	json_object_object_foreach(req, key, val)
	{
		if (strcmp(key, "id") == 0) {
			id->present = true;
			id->v = val;
		} else if (strcmp(key, "command") == 0) {
			c = val;
			has_cmd = true;
		} else if (strcmp(key, "arguments") == 0) {
			*args = val;
		} else {
			return control_fail(e, CTL_E_REQUEST,
					    "unknown member '%.64s' (a request has "
					    "id, command, arguments)",
					    key);
		}
	}
	if (id->v && !json_object_is_type(id->v, json_type_int) &&
	    !json_cstr(id->v, CTL_ID_STRING_MAX)) {
		id->present = false;
		return control_fail(e, CTL_E_REQUEST,
				    "\"id\" must be a string (up to %d bytes), "
				    "an integer or null",
				    CTL_ID_STRING_MAX);
	}
	if (!has_cmd)
		return control_fail(e, CTL_E_REQUEST, "missing \"command\"");
	*cmd = json_cstr(c, 64);
	if (!*cmd)
		return control_fail(e, CTL_E_REQUEST, "\"command\" must be a short string, got %s",
				    json_type_text(c));
	return 0;
}

static char *ok_reply(const struct ctl_id *id, json_object *ret)
{
	json_object *reply = json_object_new_object();

	reply_id(reply, id);
	json_object_object_add(reply, "return", ret ? ret : json_object_new_object());
	return reply_text(reply);
}

/* ---- replies that come later ------------------------------------------ */

struct control_call {
	const struct ctl_id *id;
	struct control_server *srv; /* NULL: the request cannot wait */
	uint64_t client;
	bool deferred;
};

/* The pending request owns a copy of its id: the request it came in is gone
 * by the time the reply is made, on whatever thread. */
struct control_pending {
	struct control_server *srv;
	uint64_t client;
	struct ctl_id id;
};

struct control_pending *control_defer(struct control_call *call)
{
	struct control_pending *p;

	if (!call || !call->srv || call->deferred)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->srv = call->srv;
	p->client = call->client;
	p->id.present = call->id->present;
	if (call->id->v && json_object_deep_copy(call->id->v, &p->id.v, NULL) < 0) {
		free(p);
		return NULL;
	}
	call->deferred = true;
	return p;
}

void control_pending_drop(struct control_pending *p)
{
	if (!p)
		return;
	json_object_put(p->id.v);
	free(p);
}

void control_pending_done(struct control_pending *p, json_object *ret,
			  const struct control_error *e)
{
	char *line;

	if (!p) {
		json_object_put(ret);
		return;
	}
	if (e) {
		json_object_put(ret);
		line = error_reply(&p->id, e);
	} else {
		line = ok_reply(&p->id, ret);
	}
	if (line)
		control_server_reply(p->srv, p->client, line);
	else
		kwarn("control: out of memory making a reply; client %llu gets none",
		      (unsigned long long)p->client);
	control_pending_drop(p);
}

/* ---- one line in, one line out (or later) ---------------------------- */

char *control_run_line(const struct control_ops *ops, void *opaque, const char *line, size_t len,
		       struct control_server *srv, uint64_t client, bool *deferred)
{
	struct control_error e = { .code = CTL_E_INTERNAL };
	const struct control_command *c;
	struct ctl_id id = { 0 };
	struct control_call call = { .id = &id, .srv = srv, .client = client };
	json_object *req, *args, *ret;
	struct control_args a;
	const char *name;
	char *out = NULL;

	*deferred = false;
	req = parse_request(line, len, &e);
	if (!req)
		return error_reply(NULL, &e);
	if (request_members(req, &id, &name, &args, &e)) {
		out = error_reply(&id, &e);
		json_object_put(req);
		return out;
	}
	c = control_command_find(name);
	if (!c) {
		control_fail(&e, CTL_E_UNKNOWN, "no command '%.64s'", name);
	} else if (args_validate(c, args, &a, &e) == 0) {
		ret = json_object_new_object();
		if (c->run(ops, opaque, &a, &call, ret, &e) == 0) {
			/* A deferred command answers through its pending. */
			if (call.deferred)
				json_object_put(ret);
			else
				out = ok_reply(&id, ret);
			*deferred = call.deferred;
			json_object_put(req);
			return out;
		}
		json_object_put(ret);
	}
	out = error_reply(&id, &e);
	json_object_put(req);
	return out;
}

char *control_handle_line(const struct control_ops *ops, void *opaque, const char *line, size_t len)
{
	bool deferred;

	return control_run_line(ops, opaque, line, len, NULL, 0, &deferred);
}
