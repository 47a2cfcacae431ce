/* Control socket: request parsing and every error path, the schema document
 * against the command table, a running server with a fake VM (many clients,
 * slow and vanishing clients, over-long lines, events, a fuzzed stream of
 * more than 10,000 lines), the systemd notification protocol, and `kestrel
 * ctl` / `kestrel list` driving the fake VM through the real binary. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kestrel/config.h"
#include <linux/input-event-codes.h>

#include "kestrel/control.h"
#include "kestrel/devices.h"
#include "kestrel/notify.h"

#include "check_util.h"

/* ---- a fake VM ------------------------------------------------------------ */

struct fake_vm {
	pthread_mutex_t lock;
	const char *state;
	int calls[32]; /* per command, by index in control_commands */
	uint64_t shutdown_ms;
	struct control_disk_req last_disk;
	char last_path[512];
	unsigned last_target;
	bool net_up;
	const char *dirty_action;
	bool save_keep;
	struct i8042_key keys[I8042_MAX_KEYS];
	unsigned nkeys;
	int mouse[4]; /* dx, dy, wheel, buttons */
	char cd_id[32], cd_path[512], cd_format[16];
	bool cd_force;
	int ticks;
	const char *fail_code; /* every op fails with this when set */
	bool defer;	       /* disk-add/-remove answer later, through pending */
	struct control_pending *pending;
};

enum {
	F_STATUS,
	F_VM,
	F_PAUSE,
	F_RESUME,
	F_SHUTDOWN,
	F_STOP,
	F_RESET,
	F_STATS,
	F_ADD,
	F_REMOVE,
	F_NET,
	F_DIRTY,
	F_SAVE,
	F_SNAPSHOT,
	F_KEY,
	F_MOUSE,
	F_DUMP,
	F_CD_CHANGE,
	F_CD_EJECT,
	F_MIGRATE
};

static struct fake_vm fake = { .lock = PTHREAD_MUTEX_INITIALIZER, .state = "running" };

static int fake_enter(int which, struct control_error *e)
{
	pthread_mutex_lock(&fake.lock);
	fake.calls[which]++;
	pthread_mutex_unlock(&fake.lock);
	if (fake.fail_code)
		return control_fail(e, fake.fail_code, "fake failure");
	return 0;
}

static void f_status(void *o, json_object *ret)
{
	(void)o;
	fake_enter(F_STATUS, &(struct control_error){ 0 });
	json_object_object_add(ret, "name", json_object_new_string("fake"));
	json_object_object_add(ret, "pid", json_object_new_int(getpid()));
	json_object_object_add(ret, "state", json_object_new_string(fake.state));
	json_object_object_add(ret, "vcpus", json_object_new_int(2));
	json_object_object_add(ret, "memory", json_object_new_int64(1LL << 30));
	json_object_object_add(ret, "uptime_ms", json_object_new_int(65000));
}

static int f_vm(void *o, json_object *ret, struct control_error *e)
{
	(void)o;
	json_object_object_add(ret, "devices", json_object_new_array());
	return fake_enter(F_VM, e);
}

static int f_pause(void *o, struct control_error *e)
{
	(void)o;
	if (!fake.fail_code && strcmp(fake.state, "running"))
		return control_fail(e, CTL_E_STATE, "not running");
	return fake_enter(F_PAUSE, e) ?: (fake.state = "paused", 0);
}

static int f_resume(void *o, struct control_error *e)
{
	(void)o;
	if (!fake.fail_code && strcmp(fake.state, "paused"))
		return control_fail(e, CTL_E_STATE, "not paused");
	return fake_enter(F_RESUME, e) ?: (fake.state = "running", 0);
}

static int f_shutdown(void *o, uint64_t ms, struct control_error *e)
{
	(void)o;
	fake.shutdown_ms = ms;
	return fake_enter(F_SHUTDOWN, e);
}

static int f_stop(void *o, struct control_error *e)
{
	(void)o;
	return fake_enter(F_STOP, e);
}

static int f_reset(void *o, struct control_error *e)
{
	(void)o;
	return fake_enter(F_RESET, e);
}

static int f_stats(void *o, json_object *ret, struct control_error *e)
{
	(void)o;
	json_object_object_add(ret, "uptime_ms", json_object_new_int(1));
	return fake_enter(F_STATS, e);
}

/* With fake.defer the command is taken over: the test answers it later. */
static int fake_defer(struct control_call *call, struct control_error *e)
{
	struct control_pending *p = control_defer(call);

	if (!p)
		return control_fail(e, CTL_E_INTERNAL, "cannot defer");
	pthread_mutex_lock(&fake.lock);
	fake.pending = p;
	pthread_mutex_unlock(&fake.lock);
	return 0;
}

static int f_add(void *o, const struct control_disk_req *d, struct control_call *call,
		 json_object *ret, struct control_error *e)
{
	(void)o;
	fake.last_disk = *d;
	snprintf(fake.last_path, sizeof(fake.last_path), "%s", d->path);
	json_object_object_add(ret, "target", json_object_new_int(d->target < 0 ? 0 : d->target));
	return fake_enter(F_ADD, e) ?: fake.defer ? fake_defer(call, e) : 0;
}

static int f_remove(void *o, unsigned t, struct control_call *call, json_object *ret,
		    struct control_error *e)
{
	(void)o;
	(void)ret;
	fake.last_target = t;
	return fake_enter(F_REMOVE, e) ?: fake.defer ? fake_defer(call, e) : 0;
}

static int f_net(void *o, const char *dev, bool up, struct control_error *e)
{
	(void)o;
	(void)dev;
	fake.net_up = up;
	return fake_enter(F_NET, e);
}

static int f_dirty(void *o, const char *action, json_object *ret, struct control_error *e)
{
	(void)o;
	fake.dirty_action = action;
	json_object_object_add(ret, "pages", json_object_new_int(0));
	return fake_enter(F_DIRTY, e);
}

static int f_save(void *o, const char *path, bool keep, json_object *ret, struct control_error *e)
{
	(void)o;
	snprintf(fake.last_path, sizeof(fake.last_path), "%s", path);
	fake.save_keep = keep;
	json_object_object_add(ret, "path", json_object_new_string(path));
	return fake_enter(F_SAVE, e);
}

static int f_migrate(void *o, const char *uri, uint64_t max_downtime_ms, uint64_t bandwidth,
		     json_object *ret, struct control_error *e)
{
	(void)o;
	(void)max_downtime_ms;
	(void)bandwidth;
	snprintf(fake.last_path, sizeof(fake.last_path), "%s", uri);
	json_object_object_add(ret, "uri", json_object_new_string(uri));
	return fake_enter(F_MIGRATE, e);
}

static int f_snapshot(void *o, const char *action, const char *name, struct control_call *call,
		      json_object *ret, struct control_error *e)
{
	(void)o;
	(void)call;
	snprintf(fake.last_path, sizeof(fake.last_path), "%s:%s", action, name ? name : "-");
	json_object_object_add(ret, "name", json_object_new_string(name ? name : ""));
	return fake_enter(F_SNAPSHOT, e);
}

static int f_key(void *o, const struct i8042_key *keys, unsigned n, struct control_error *e)
{
	(void)o;
	ck_assert_uint_le(n, I8042_MAX_KEYS);
	memcpy(fake.keys, keys, n * sizeof(*keys));
	fake.nkeys = n;
	return fake_enter(F_KEY, e);
}

static int f_mouse(void *o, int dx, int dy, int wheel, unsigned buttons, struct control_error *e)
{
	(void)o;
	fake.mouse[0] = dx;
	fake.mouse[1] = dy;
	fake.mouse[2] = wheel;
	fake.mouse[3] = (int)buttons;
	return fake_enter(F_MOUSE, e);
}

static int f_dump(void *o, const char *path, json_object *ret, struct control_error *e)
{
	(void)o;
	snprintf(fake.last_path, sizeof(fake.last_path), "%s", path);
	json_object_object_add(ret, "width", json_object_new_int(720));
	return fake_enter(F_DUMP, e);
}

static int f_cd_change(void *o, const char *id, const char *path, const char *format,
		       struct control_call *call, json_object *ret, struct control_error *e)
{
	(void)o;
	(void)call;
	(void)ret;
	snprintf(fake.cd_id, sizeof(fake.cd_id), "%s", id);
	snprintf(fake.cd_path, sizeof(fake.cd_path), "%s", path);
	snprintf(fake.cd_format, sizeof(fake.cd_format), "%s", format);
	return fake_enter(F_CD_CHANGE, e);
}

static int f_cd_eject(void *o, const char *id, bool force, json_object *ret,
		      struct control_error *e)
{
	(void)o;
	(void)ret;
	snprintf(fake.cd_id, sizeof(fake.cd_id), "%s", id);
	fake.cd_force = force;
	return fake_enter(F_CD_EJECT, e);
}

static int64_t f_tick(void *o)
{
	(void)o;
	pthread_mutex_lock(&fake.lock);
	fake.ticks++;
	pthread_mutex_unlock(&fake.lock);
	return 20;
}

/* clang-format off */
static const struct control_ops fake_ops = {
	.query_status = f_status, .query_vm = f_vm, .pause = f_pause, .resume = f_resume,
	.shutdown = f_shutdown, .stop = f_stop, .reset = f_reset, .stats = f_stats,
	.disk_add = f_add, .disk_remove = f_remove, .net_link = f_net, .dirty_log = f_dirty,
	.save = f_save, .snapshot = f_snapshot, .migrate = f_migrate,
	.send_key = f_key, .mouse_move = f_mouse,
	.screendump = f_dump,
	.cdrom_change = f_cd_change, .cdrom_eject = f_cd_eject, .tick = f_tick,
};
/* clang-format on */

static void fake_reset(void)
{
	pthread_mutex_lock(&fake.lock);
	memset(fake.calls, 0, sizeof(fake.calls));
	fake.state = "running";
	fake.fail_code = NULL;
	fake.ticks = 0;
	fake.defer = false;
	fake.pending = NULL;
	pthread_mutex_unlock(&fake.lock);
}

/* ---- helpers --------------------------------------------------------------- */

/* One request line through the parser; the reply parsed back. */
static json_object *handle(const char *line)
{
	char *r = control_handle_line(&fake_ops, NULL, line, strlen(line));
	json_object *o;

	ck_assert_ptr_nonnull(r);
	ck_assert_ptr_null(strchr(r, '\n'));
	o = json_tokener_parse(r);
	ck_assert_msg(o != NULL, "reply is not JSON: %s", r);
	free(r);
	return o;
}

static const char *err_code(json_object *reply)
{
	json_object *e, *c;

	if (!json_object_object_get_ex(reply, "error", &e) ||
	    !json_object_object_get_ex(e, "code", &c))
		return NULL;
	return json_object_get_string(c);
}

/* The line must fail with code; the reply keeps its id iff want_id. */
static void expect_error(const char *line, const char *code, bool want_id)
{
	json_object *r = handle(line), *m, *e;
	const char *got = err_code(r);

	ck_assert_msg(got && !strcmp(got, code), "%s: want %s, got %s", line, code,
		      json_object_to_json_string(r));
	ck_assert_msg(json_object_object_get_ex(r, "id", NULL) == want_id, "%s: id %s", line,
		      json_object_to_json_string(r));
	json_object_object_get_ex(r, "error", &e);
	ck_assert(json_object_object_get_ex(e, "message", &m));
	ck_assert_int_gt(json_object_get_string_len(m), 0);
	ck_assert(!json_object_object_get_ex(r, "return", NULL));
	json_object_put(r);
}

static json_object *expect_ok(const char *line)
{
	json_object *r = handle(line), *ret;

	ck_assert_msg(json_object_object_get_ex(r, "return", &ret), "%s: %s", line,
		      json_object_to_json_string(r));
	json_object_get(ret);
	json_object_put(r);
	return ret;
}

static char tmpdir[] = "/tmp/kestrel-ctl-XXXXXX";
static char sock_path[200];

static void dir_setup(void)
{
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(sock_path, sizeof(sock_path), "%s/vm.sock", tmpdir);
	fake_reset();
}

static void dir_teardown(void)
{
	rm_tree(tmpdir);
	strcpy(tmpdir, "/tmp/kestrel-ctl-XXXXXX");
}

static int sock_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", path);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s", path,
		      strerror(errno));
	return fd;
}

static void send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		ck_assert_int_gt(n, 0);
		p += n;
		len -= (size_t)n;
	}
}

static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

struct reader {
	int fd;
	char buf[1 << 17];
	size_t len;
};

/* Next line within timeout_ms, as parsed JSON; NULL at EOF or timeout. */
static json_object *read_json(struct reader *r, int timeout_ms)
{
	for (;;) {
		char *nl = memchr(r->buf, '\n', r->len);
		struct pollfd p = { r->fd, POLLIN, 0 };
		ssize_t n;

		if (nl) {
			json_object *o;

			*nl = '\0';
			o = json_tokener_parse(r->buf);
			ck_assert_msg(o != NULL, "bad line from the server: %s", r->buf);
			r->len -= (size_t)(nl + 1 - r->buf);
			memmove(r->buf, nl + 1, r->len);
			return o;
		}
		if (poll(&p, 1, timeout_ms) <= 0)
			return NULL;
		n = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
		if (n <= 0)
			return NULL;
		r->len += (size_t)n;
	}
}

/* The next line that is not an event. */
static json_object *read_reply(struct reader *r, int timeout_ms)
{
	for (;;) {
		json_object *o = read_json(r, timeout_ms);

		if (!o || !json_object_object_get_ex(o, "event", NULL))
			return o;
		json_object_put(o);
	}
}

static struct control_server *start_server(void)
{
	struct control_server *s;
	char err[256] = "";

	ck_assert_msg(control_server_start(&s, sock_path, "fake", &fake_ops, NULL, err,
					   sizeof(err)) == 0,
		      "%s", err);
	return s;
}

/* A live server answers a status request on a fresh connection. */
static void assert_alive(void)
{
	struct reader *r = calloc(1, sizeof(*r));
	json_object *o;

	r->fd = sock_connect(sock_path);
	send_str(r->fd, "{\"id\":\"alive\",\"command\":\"query-status\"}\n");
	o = read_reply(r, 5000);
	ck_assert_msg(o && json_object_object_get_ex(o, "return", NULL), "server not answering");
	json_object_put(o);
	close(r->fd);
	free(r);
}

/* ---- request parsing -------------------------------------------------------- */

START_TEST(request_ok)
{
	json_object *r = handle("{\"id\":7,\"command\":\"query-status\"}"), *v;

	ck_assert(json_object_object_get_ex(r, "id", &v));
	ck_assert_int_eq(json_object_get_int(v), 7);
	ck_assert(json_object_object_get_ex(r, "return", &v));
	ck_assert(json_object_object_get_ex(v, "state", NULL));
	json_object_put(r);

	r = handle("  {\"command\":\"query-status\",\"id\":\"abc\",\"arguments\":{}}  \r");
	ck_assert(json_object_object_get_ex(r, "id", &v));
	ck_assert_str_eq(json_object_get_string(v), "abc");
	json_object_put(r);

	r = handle("{\"command\":\"query-status\"}");
	ck_assert(!json_object_object_get_ex(r, "id", NULL));
	ck_assert(json_object_object_get_ex(r, "return", NULL));
	json_object_put(r);

	r = handle("{\"id\":null,\"command\":\"stats\"}");
	ck_assert(json_object_object_get_ex(r, "id", &v));
	ck_assert(json_object_is_type(v, json_type_null));
	json_object_put(r);
}
END_TEST

START_TEST(request_parse_errors)
{
	static const char *const bad[] = {
		"{",
		"{\"id\":1,",
		"{\"command\":\"query-status\"",
		"}",
		"nul",
		"{'command':'x'}",
		"{\"command\":\"query-status\",}",
		"{\"command\":\"query-status\"} x",
		"{\"command\":\"query-status\"}{}",
		"\"unterminated",
		"[1,2",
		"{\"a\":01}",
		"/* c */ {\"command\":\"stats\"}",
		"{\"command\":\"stats\"} // c",
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error(bad[i], CTL_E_PARSE, false);
}
END_TEST

START_TEST(request_shape_errors)
{
	expect_error("[]", CTL_E_REQUEST, false);
	expect_error("\"query-status\"", CTL_E_REQUEST, false);
	expect_error("42", CTL_E_REQUEST, false);
	expect_error("null", CTL_E_REQUEST, false);
	expect_error("{}", CTL_E_REQUEST, false);
	expect_error("{\"id\":1}", CTL_E_REQUEST, true);
	expect_error("{\"id\":1,\"command\":5}", CTL_E_REQUEST, true);
	expect_error("{\"id\":1,\"command\":null}", CTL_E_REQUEST, true);
	expect_error("{\"id\":1,\"command\":[\"stats\"]}", CTL_E_REQUEST, true);
	expect_error("{\"id\":1,\"command\":\"stats\",\"argument\":{}}", CTL_E_REQUEST, true);
	expect_error("{\"id\":1,\"command\":\"stats\",\"arguments\":[]}", CTL_E_REQUEST, true);
	expect_error("{\"id\":1,\"command\":\"stats\",\"arguments\":\"x\"}", CTL_E_REQUEST, true);
	/* Unusable ids are not echoed. */
	expect_error("{\"id\":{},\"command\":\"stats\"}", CTL_E_REQUEST, false);
	expect_error("{\"id\":[1],\"command\":\"stats\"}", CTL_E_REQUEST, false);
	expect_error("{\"id\":true,\"command\":\"stats\"}", CTL_E_REQUEST, false);
	expect_error("{\"id\":1.5,\"command\":\"stats\"}", CTL_E_REQUEST, false);
	expect_error("{\"id\":\"a\\u0000b\",\"command\":\"stats\"}", CTL_E_REQUEST, false);
	/* A NUL inside the name must not make it "stats". */
	expect_error("{\"id\":1,\"command\":\"stats\\u0000x\"}", CTL_E_REQUEST, true);
	expect_error("{\"id\":1,\"command\":\"frobnicate\"}", CTL_E_UNKNOWN, true);
	expect_error("{\"id\":1,\"command\":\"\"}", CTL_E_UNKNOWN, true);
	expect_error("{\"id\":1,\"command\":\"QUERY-STATUS\"}", CTL_E_UNKNOWN, true);
}
END_TEST

START_TEST(request_argument_errors)
{
#define REQ(cmd, args) "{\"id\":1,\"command\":\"" cmd "\",\"arguments\":" args "}"
	static const char *const bad[] = {
		REQ("stats", "{\"x\":1}"),
		REQ("shutdown", "{\"timeout\":\"soon\"}"),
		REQ("shutdown", "{\"timeout\":-1}"),
		REQ("shutdown", "{\"timeout\":1.5}"),
		REQ("shutdown", "{\"timeout\":true}"),
		REQ("shutdown", "{\"timeout\":\"8d\"}"),
		REQ("shutdown", "{\"timeout\":99999999999999999999}"),
		REQ("shutdown", "{\"timeout\":{}}"),
		REQ("shutdown", "{\"timeoutx\":1}"),
		REQ("disk-add", "{}"),
		REQ("disk-add", "{\"path\":\"relative.img\"}"),
		REQ("disk-add", "{\"path\":\"\"}"),
		REQ("disk-add", "{\"path\":5}"),
		REQ("disk-add", "{\"path\":\"/x\",\"target\":16}"),
		REQ("disk-add", "{\"path\":\"/x\",\"target\":-1}"),
		REQ("disk-add", "{\"path\":\"/x\",\"target\":\"3\"}"),
		REQ("disk-add", "{\"path\":\"/x\",\"target\":9223372036854775807}"),
		REQ("disk-add", "{\"path\":\"/x\",\"readonly\":\"yes\"}"),
		REQ("disk-add", "{\"path\":\"/x\",\"readonly\":1}"),
		REQ("disk-add", "{\"path\":\"/x\",\"format\":\"qcow2\"}"),
		REQ("disk-add", "{\"path\":\"/x\",\"cache\":\"unsafe\"}"),
		REQ("disk-add", "{\"path\":\"/x\",\"aio\":null}"),
		REQ("disk-add", "{\"path\":\"/x\\u0000y\"}"),
		REQ("disk-remove", "{}"),
		REQ("disk-remove", "{\"target\":null}"),
		REQ("disk-remove", "{\"target\":99}"),
		REQ("net-link", "{}"),
		REQ("net-link", "{\"state\":\"sideways\"}"),
		REQ("net-link", "{\"state\":true}"),
		REQ("net-link", "{\"state\":\"up\",\"device\":7}"),
		REQ("dirty-log", "{}"),
		REQ("dirty-log", "{\"action\":\"clear\"}"),
		REQ("dirty-log", "{\"action\":1}"),
		REQ("dirty-log", "{\"action\":\"fetch\",\"clear\":true}"),
		REQ("pause", "{\"now\":true}"),
		REQ("save", "{}"),
		REQ("save", "{\"path\":\"vm.state\"}"),
		REQ("save", "{\"path\":\"/vm.state\",\"keep-running\":\"yes\"}"),
		REQ("save", "{\"path\":\"/vm.state\",\"keep_running\":true}"),
		/* A relative file or socket would be the worker's, not the caller's. */
		REQ("migrate", "{\"uri\":\"file:vm.state\"}"),
		REQ("migrate", "{\"uri\":\"unix:mig.sock\"}"),
		REQ("migrate", "{\"uri\":\"file:\"}"),
		REQ("snapshot", "{}"),
		REQ("snapshot", "{\"action\":\"revert\",\"name\":\"a\"}"),
		REQ("snapshot", "{\"action\":\"create\"}"),
		REQ("snapshot", "{\"action\":\"apply\",\"name\":7}"),
		REQ("send-key", "{}"),
		REQ("send-key", "{\"keys\":\"ctrl-alt-del\"}"),
		REQ("send-key", "{\"keys\":\"ctrl-\"}"),
		REQ("send-key", "{\"keys\":\"A\"}"),
		REQ("send-key", "{\"keys\":\"   \"}"),
		REQ("send-key", "{\"keys\":\"a-b-c-d-e-f-g-h-i\"}"),
		REQ("send-key", "{\"keys\":[\"a\"]}"),
		REQ("mouse-move", "{\"dx\":1}"),
		REQ("mouse-move", "{\"dx\":4097,\"dy\":0}"),
		REQ("mouse-move", "{\"dx\":0,\"dy\":0,\"buttons\":8}"),
		REQ("mouse-move", "{\"dx\":0,\"dy\":0,\"wheel\":-128}"),
		REQ("screendump", "{}"),
		REQ("screendump", "{\"file\":\"shot.png\"}"),
		REQ("screendump", "{\"file\":\"\"}"),
		REQ("screendump", "{\"file\":\"/x.png\",\"format\":\"ppm\"}"),
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error(bad[i], CTL_E_ARGUMENT, true);
	/* A string longer than the limit. */
	{
		const char *head = "{\"command\":\"disk-add\",\"arguments\":{\"path\":\"/";
		size_t n = 5000, h = strlen(head);
		char *line = malloc(h + n + 8);

		memcpy(line, head, h);
		memset(line + h, 'a', n);
		strcpy(line + h + n, "\"}}");
		expect_error(line, CTL_E_ARGUMENT, false);
		free(line);
	}
	/* 65 taps are 130 presses and releases: over the limit. */
	{
		char line[400] = "{\"command\":\"send-key\",\"arguments\":{\"keys\":\"";

		for (int i = 0; i < 65; i++)
			strcat(line, "a ");
		strcat(line, "\"}}");
		expect_error(line, CTL_E_ARGUMENT, false);
	}
	ck_assert_int_eq(fake.calls[F_ADD], 0);
	ck_assert_int_eq(fake.calls[F_SHUTDOWN], 0);
	ck_assert_int_eq(fake.calls[F_SAVE], 0);
	ck_assert_int_eq(fake.calls[F_MIGRATE], 0);
	ck_assert_int_eq(fake.calls[F_KEY], 0);
	ck_assert_int_eq(fake.calls[F_MOUSE], 0);
	ck_assert_int_eq(fake.calls[F_DUMP], 0);
#undef REQ
}
END_TEST

static const char *const dirty_log_actions[] = { "start", "fetch", "stop", NULL };

START_TEST(commands_reach_the_vm)
{
	json_object *r;

	fake_reset();
	json_object_put(expect_ok("{\"command\":\"query-vm\"}"));
	json_object_put(expect_ok("{\"command\":\"pause\"}"));
	ck_assert_str_eq(fake.state, "paused");
	expect_error("{\"id\":2,\"command\":\"pause\"}", CTL_E_STATE, true);
	json_object_put(expect_ok("{\"command\":\"resume\"}"));
	expect_error("{\"id\":3,\"command\":\"resume\"}", CTL_E_STATE, true);
	r = expect_ok("{\"command\":\"shutdown\",\"arguments\":{\"timeout\":\"1500ms\"}}");
	ck_assert_int_eq(fake.shutdown_ms, 1500);
	json_object_put(r);
	json_object_put(expect_ok("{\"command\":\"shutdown\",\"arguments\":{\"timeout\":60}}"));
	ck_assert_int_eq(fake.shutdown_ms, 60000);
	json_object_put(expect_ok("{\"command\":\"shutdown\"}"));
	ck_assert_int_eq(fake.shutdown_ms, 0);
	json_object_put(expect_ok("{\"command\":\"stop\"}"));
	json_object_put(expect_ok("{\"command\":\"reset\"}"));
	json_object_put(expect_ok("{\"command\":\"stats\"}"));
	json_object_put(expect_ok("{\"command\":\"disk-add\",\"arguments\":{\"path\":\"/d.img\","
				  "\"target\":3,\"readonly\":true,\"format\":\"vhd\",\"cache\":"
				  "\"none\",\"aio\":\"sync\"}}"));
	ck_assert_str_eq(fake.last_path, "/d.img");
	ck_assert_int_eq(fake.last_disk.target, 3);
	ck_assert(fake.last_disk.readonly);
	ck_assert_str_eq(fake.last_disk.format, "vhd");
	ck_assert_str_eq(fake.last_disk.cache, "none");
	ck_assert_str_eq(fake.last_disk.aio, "sync");
	json_object_put(
		expect_ok("{\"command\":\"disk-add\",\"arguments\":{\"path\":\"/e.img\"}}"));
	ck_assert_int_eq(fake.last_disk.target, -1);
	ck_assert_str_eq(fake.last_disk.format, "auto");
	ck_assert(!fake.last_disk.readonly);
	json_object_put(expect_ok("{\"command\":\"disk-remove\",\"arguments\":{\"target\":15}}"));
	ck_assert_int_eq(fake.last_target, 15);
	json_object_put(expect_ok("{\"command\":\"net-link\",\"arguments\":{\"state\":\"down\"}}"));
	ck_assert(!fake.net_up);
	for (int i = 0; dirty_log_actions[i]; i++) {
		char line[96];

		snprintf(line, sizeof(line),
			 "{\"command\":\"dirty-log\",\"arguments\":"
			 "{\"action\":\"%s\"}}",
			 dirty_log_actions[i]);
		json_object_put(expect_ok(line));
		ck_assert_str_eq(fake.dirty_action, dirty_log_actions[i]);
	}
	json_object_put(expect_ok("{\"command\":\"save\",\"arguments\":{\"path\":\"/s/vm.state\","
				  "\"keep-running\":true}}"));
	ck_assert_str_eq(fake.last_path, "/s/vm.state");
	ck_assert(fake.save_keep);
	json_object_put(expect_ok("{\"command\":\"save\",\"arguments\":{\"path\":\"/s/b\"}}"));
	ck_assert(!fake.save_keep);
	json_object_put(expect_ok("{\"command\":\"snapshot\",\"arguments\":{\"action\":\"create\","
				  "\"name\":\"before-upgrade\"}}"));
	ck_assert_str_eq(fake.last_path, "create:before-upgrade");
	json_object_put(
		expect_ok("{\"command\":\"snapshot\",\"arguments\":{\"action\":\"list\"}}"));
	ck_assert_str_eq(fake.last_path, "list:-");
	r = expect_ok("{\"command\":\"send-key\",\"arguments\":{\"keys\":\"ctrl-alt-delete\"}}");
	ck_assert_int_eq(json_object_get_int(json_object_object_get(r, "events")), 6);
	json_object_put(r);
	{
		static const struct i8042_key cad[] = {
			{ KEY_LEFTCTRL, true }, { KEY_LEFTALT, true },	{ KEY_DELETE, true },
			{ KEY_DELETE, false },	{ KEY_LEFTALT, false }, { KEY_LEFTCTRL, false },
		};

		ck_assert_uint_eq(fake.nkeys, 6);
		for (int i = 0; i < 6; i++)
			ck_assert(fake.keys[i].code == cad[i].code &&
				  fake.keys[i].down == cad[i].down);
	}
	json_object_put(expect_ok("{\"command\":\"send-key\",\"arguments\":"
				  "{\"keys\":\" shift-h  i ret \"}}"));
	ck_assert_uint_eq(fake.nkeys, 8);
	ck_assert(fake.keys[1].code == KEY_H && fake.keys[2].code == KEY_H && !fake.keys[2].down);
	ck_assert(fake.keys[3].code == KEY_LEFTSHIFT && !fake.keys[3].down);
	ck_assert(fake.keys[6].code == KEY_ENTER && fake.keys[6].down);
	json_object_put(expect_ok("{\"command\":\"mouse-move\",\"arguments\":"
				  "{\"dx\":-4096,\"dy\":7,\"buttons\":5,\"wheel\":-2}}"));
	ck_assert(fake.mouse[0] == -4096 && fake.mouse[1] == 7 && fake.mouse[2] == -2 &&
		  fake.mouse[3] == 5);
	json_object_put(
		expect_ok("{\"command\":\"mouse-move\",\"arguments\":{\"dx\":1,\"dy\":0}}"));
	ck_assert(fake.mouse[0] == 1 && fake.mouse[2] == 0 && fake.mouse[3] == 0);
	json_object_put(expect_ok("{\"command\":\"screendump\",\"arguments\":{\"file\":"
				  "\"/tmp/s.png\"}}"));
	ck_assert_str_eq(fake.last_path, "/tmp/s.png");
	json_object_put(expect_ok("{\"command\":\"cdrom-change\",\"arguments\":{\"id\":\"ide1-0\","
				  "\"path\":\"/isos/a.iso\"}}"));
	ck_assert_str_eq(fake.cd_id, "ide1-0");
	ck_assert_str_eq(fake.cd_path, "/isos/a.iso");
	ck_assert_str_eq(fake.cd_format, "auto");
	json_object_put(expect_ok("{\"command\":\"cdrom-change\",\"arguments\":{\"id\":\"2\","
				  "\"path\":\"/b.vhd\",\"format\":\"vhd\"}}"));
	ck_assert_str_eq(fake.cd_format, "vhd");
	expect_error("{\"id\":4,\"command\":\"cdrom-change\",\"arguments\":{\"id\":\"2\","
		     "\"path\":\"rel.iso\"}}",
		     CTL_E_ARGUMENT, true);
	expect_error("{\"id\":5,\"command\":\"cdrom-change\",\"arguments\":{\"id\":\"2\"}}",
		     CTL_E_ARGUMENT, true);
	json_object_put(expect_ok("{\"command\":\"cdrom-eject\",\"arguments\":{\"id\":\"3\"}}"));
	ck_assert(!fake.cd_force);
	json_object_put(expect_ok("{\"command\":\"cdrom-eject\",\"arguments\":{\"id\":\"3\","
				  "\"force\":true}}"));
	ck_assert(fake.cd_force);
	for (int i = F_VM; i <= F_CD_EJECT; i++)
		ck_assert_msg(fake.calls[i] > 0, "command %d never reached the VM", i);
}
END_TEST

/* Whatever code the VM fails with reaches the client, for every command. */
START_TEST(vm_errors_pass_through)
{
	static const char *const lines[] = {
		"{\"id\":1,\"command\":\"query-vm\"}",
		"{\"id\":1,\"command\":\"pause\"}",
		"{\"id\":1,\"command\":\"resume\"}",
		"{\"id\":1,\"command\":\"shutdown\"}",
		"{\"id\":1,\"command\":\"stop\"}",
		"{\"id\":1,\"command\":\"reset\"}",
		"{\"id\":1,\"command\":\"stats\"}",
		"{\"id\":1,\"command\":\"disk-add\",\"arguments\":{\"path\":\"/x\"}}",
		"{\"id\":1,\"command\":\"disk-remove\",\"arguments\":{\"target\":1}}",
		"{\"id\":1,\"command\":\"net-link\",\"arguments\":{\"state\":\"up\"}}",
		"{\"id\":1,\"command\":\"dirty-log\",\"arguments\":{\"action\":\"fetch\"}}",
		"{\"id\":1,\"command\":\"save\",\"arguments\":{\"path\":\"/x\"}}",
		"{\"id\":1,\"command\":\"send-key\",\"arguments\":{\"keys\":\"a\"}}",
		"{\"id\":1,\"command\":\"mouse-move\",\"arguments\":{\"dx\":1,\"dy\":1}}",
		"{\"id\":1,\"command\":\"screendump\",\"arguments\":{\"file\":\"/x.png\"}}",
		"{\"id\":1,\"command\":\"cdrom-change\",\"arguments\":{\"id\":\"0\",\"path\":\"/c\"}}",
		"{\"id\":1,\"command\":\"cdrom-eject\",\"arguments\":{\"id\":\"0\"}}",
	};
	static const char *const codes[] = { CTL_E_STATE,  CTL_E_UNSUPPORTED, CTL_E_NOT_FOUND,
					     CTL_E_EXISTS, CTL_E_FAILED,      CTL_E_TIMEOUT };

	for (size_t c = 0; c < sizeof(codes) / sizeof(codes[0]); c++) {
		fake.fail_code = codes[c];
		for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
			expect_error(lines[i], codes[c], true);
	}
	fake.fail_code = NULL;
}
END_TEST

/* ---- the schema document ------------------------------------------------------ */

struct doc_cmd {
	char name[64];
	char args[CONTROL_MAX_ARGS][200]; /* "name type req" */
	int nargs;
};

static char *doc_read(void)
{
	FILE *f = fopen(KESTREL_SOURCE_DIR "/docs/control.md", "r");
	char *buf;
	long n;

	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

/* The text of section "## title", up to the next "## ". */
static char *doc_section(const char *doc, const char *title)
{
	char head[64];
	const char *s, *e;

	snprintf(head, sizeof(head), "\n## %s\n", title);
	s = strstr(doc, head);
	ck_assert_msg(s != NULL, "docs/control.md has no section '%s'", title);
	s += strlen(head);
	e = strstr(s, "\n## ");
	return strndup(s, e ? (size_t)(e - s) : strlen(s));
}

/* "### name" headings of a section, in order. */
static int doc_headings(const char *sec, char names[][64], int max)
{
	int n = 0;

	for (const char *p = sec; (p = strstr(p, "### ")) && n < max; p += 4) {
		if (p != sec && p[-1] != '\n')
			continue;
		sscanf(p + 4, "%63[^\n ]", names[n++]);
	}
	return n;
}

/* What the table says of an argument, in the document's words. */
static void arg_words(const struct control_arg *a, char *buf, size_t len)
{
	size_t n = (size_t)snprintf(buf, len, "%s %s", a->name, control_arg_type_name(a->type));

	for (const char *const *c = a->choices; c && *c && n < len; c++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", c == a->choices ? ": " : "|", *c);
	snprintf(buf + n, len - MIN(n, len), " %s", a->required ? "required" : "optional");
}

/* "- `name` (type[: a|b], required|optional)" lines under "### cmd". */
static void doc_command(const char *sec, const char *name, struct doc_cmd *dc)
{
	char head[80], *body, *end;
	const char *s;
	bool none;

	snprintf(head, sizeof(head), "### %s\n", name);
	s = strstr(sec, head);
	ck_assert_ptr_nonnull(s);
	s += strlen(head);
	end = strstr(s, "\n### ");
	body = strndup(s, end ? (size_t)(end - s) : strlen(s));
	memset(dc, 0, sizeof(*dc));
	snprintf(dc->name, sizeof(dc->name), "%s", name);
	none = strstr(body, "Arguments: none.") != NULL;
	for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n")) {
		char an[64], at[96], ar[16];

		if (strncmp(line, "- `", 3) != 0)
			continue;
		ck_assert_msg(sscanf(line, "- `%63[^`]` (%95[^,], %15[a-z])", an, at, ar) == 3,
			      "%s: bad argument line: %s", name, line);
		ck_assert_int_lt(dc->nargs, CONTROL_MAX_ARGS);
		snprintf(dc->args[dc->nargs++], sizeof(dc->args[0]), "%s %s %s", an, at, ar);
	}
	ck_assert_msg((dc->nargs > 0) != none,
		      "%s: needs either argument lines or \"Arguments: none.\"", name);
	free(body);
}

START_TEST(schema_matches_commands)
{
	char *doc = doc_read(), *sec = doc_section(doc, "Commands");
	char names[64][64];
	int n = doc_headings(sec, names, 64), ntable = 0;

	for (const struct control_command *c = control_commands; c->name; c++, ntable++) {
		struct doc_cmd dc;
		int na = 0;

		ck_assert_msg(strstr(sec, c->name), "command %s is not in docs/control.md",
			      c->name);
		doc_command(sec, c->name, &dc);
		for (const struct control_arg *a = c->args; a->name; a++, na++) {
			char want[160];

			arg_words(a, want, sizeof(want));
			ck_assert_msg(na < dc.nargs && !strcmp(dc.args[na], want),
				      "%s: the table has '%s', docs/control.md '%s'", c->name, want,
				      na < dc.nargs ? dc.args[na] : "(nothing)");
		}
		ck_assert_msg(na == dc.nargs,
			      "%s: docs/control.md lists %d arguments, the table %d", c->name,
			      dc.nargs, na);
	}
	for (int i = 0; i < n; i++)
		ck_assert_msg(control_command_find(names[i]),
			      "docs/control.md documents '%s', which "
			      "is not implemented",
			      names[i]);
	ck_assert_int_eq(n, ntable);
	free(sec);
	free(doc);
}
END_TEST

START_TEST(schema_matches_events_and_errors)
{
	char *doc = doc_read(), *ev = doc_section(doc, "Events"), *er = doc_section(doc, "Errors");
	char names[64][64], row[80];
	int n = doc_headings(ev, names, 64), count = 0, rows = 0;

	for (const char *const *e = control_event_names; *e; e++, count++) {
		bool found = false;

		for (int i = 0; i < n; i++)
			found |= !strcmp(names[i], *e);
		ck_assert_msg(found, "event %s is not in docs/control.md", *e);
	}
	ck_assert_msg(n == count, "docs/control.md has %d events, the code %d", n, count);
	count = 0;
	for (const char *const *c = control_error_codes; *c; c++, count++) {
		snprintf(row, sizeof(row), "\n| `%s` |", *c);
		ck_assert_msg(strstr(er, row), "error code %s is not in docs/control.md", *c);
	}
	for (const char *p = er; (p = strstr(p, "\n| `")); p++)
		rows++;
	ck_assert_msg(rows == count, "docs/control.md has %d error codes, the code %d", rows,
		      count);
	free(ev);
	free(er);
	free(doc);
}
END_TEST

/* ---- the server ------------------------------------------------------------------ */

START_TEST(server_basics)
{
	struct control_server *s = start_server();
	struct reader *r = calloc(1, sizeof(*r));
	struct stat st;
	json_object *o, *v;

	ck_assert_int_eq(stat(sock_path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	r->fd = sock_connect(sock_path);
	/* Two requests in one write, one split over two writes, a blank line,
	 * CR LF. */
	send_str(r->fd,
		 "{\"id\":1,\"command\":\"query-status\"}\n{\"id\":2,\"command\":\"bogus\"}\n\n");
	send_str(r->fd, "{\"id\":3,\"comm");
	usleep(20000);
	send_str(r->fd, "and\":\"stats\"}\r\n");
	for (int id = 1; id <= 3; id++) {
		o = read_reply(r, 5000);
		ck_assert_ptr_nonnull(o);
		ck_assert(json_object_object_get_ex(o, "id", &v));
		ck_assert_int_eq(json_object_get_int(v), id);
		ck_assert(json_object_object_get_ex(o, id == 2 ? "error" : "return", NULL));
		json_object_put(o);
	}
	close(r->fd);
	free(r);
	control_server_stop(s, 100);
	ck_assert_int_eq(access(sock_path, F_OK), -1);
}
END_TEST

START_TEST(server_too_long_line)
{
	struct control_server *s = start_server();
	struct reader *r = calloc(1, sizeof(*r));
	size_t big = 3 * CONTROL_LINE_MAX;
	char *junk = malloc(big);
	json_object *o;

	memset(junk, 'x', big);
	r->fd = sock_connect(sock_path);
	send_all(r->fd, junk, big);
	send_str(r->fd, "still the same line\n{\"id\":9,\"command\":\"query-status\"}\n");
	o = read_reply(r, 5000);
	ck_assert_str_eq(err_code(o), CTL_E_TOO_LONG);
	json_object_put(o);
	o = read_reply(r, 5000);
	ck_assert(json_object_object_get_ex(o, "return", NULL));
	json_object_put(o);
	/* Exactly at the limit: 65535 bytes and the newline is still a request
	 * (a parse error, being junk), one byte more is too long. */
	memset(junk, ' ', CONTROL_LINE_MAX);
	junk[0] = '[';
	junk[CONTROL_LINE_MAX - 1] = '\n';
	send_all(r->fd, junk, CONTROL_LINE_MAX);
	o = read_reply(r, 5000);
	ck_assert_str_eq(err_code(o), CTL_E_PARSE);
	json_object_put(o);
	free(junk);
	close(r->fd);
	free(r);
	control_server_stop(s, 100);
}
END_TEST

START_TEST(server_stale_and_live_socket)
{
	struct control_server *s, *s2;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char err[256] = "";
	int fd;

	/* A socket file nobody listens on (as a killed worker leaves it). */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", sock_path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	s = start_server();
	assert_alive();
	ck_assert_int_eq(control_server_start(&s2, sock_path, "web-1", &fake_ops, NULL, err,
					      sizeof(err)),
			 -EADDRINUSE);
	ck_assert_msg(strstr(err, "another VM named web-1 is running"), "%s", err);
	assert_alive();
	control_server_stop(s, 100);
	/* Not a socket: refused, and left alone. */
	fd = open(sock_path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	ck_assert_int_ne(control_server_start(&s2, sock_path, "web-1", &fake_ops, NULL, err,
					      sizeof(err)),
			 0);
	ck_assert_msg(strstr(err, "not a socket"), "%s", err);
	ck_assert_int_eq(access(sock_path, F_OK), 0);
	unlink(sock_path);
	/* Too long for sun_path. */
	ck_assert_int_ne(control_server_start(&s2,
					      "/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
					      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
					      "aaaaaaaaaaaaaaaaaaaa.sock",
					      "x", &fake_ops, NULL, err, sizeof(err)),
			 0);
	ck_assert_msg(strstr(err, "too long"), "%s", err);
}
END_TEST

START_TEST(server_many_clients)
{
	struct control_server *s = start_server();
	enum { N = CONTROL_MAX_CLIENTS };
	struct reader *r = calloc(N + 1, sizeof(*r));
	json_object *o;
	char line[80];
	int extra;

	for (int i = 0; i < N; i++) {
		r[i].fd = sock_connect(sock_path);
		snprintf(line, sizeof(line), "{\"id\":%d,\"command\":\"query-status\"}\n", i);
		send_str(r[i].fd, line);
	}
	for (int i = 0; i < N; i++) {
		json_object *v;

		o = read_reply(&r[i], 5000);
		ck_assert_ptr_nonnull(o);
		ck_assert(json_object_object_get_ex(o, "id", &v));
		ck_assert_int_eq(json_object_get_int(v), i);
		json_object_put(o);
	}
	/* One too many: told so and closed; the others keep working. */
	extra = sock_connect(sock_path);
	r[N].fd = extra;
	o = read_json(&r[N], 5000);
	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(err_code(o), CTL_E_TOO_MANY);
	json_object_put(o);
	ck_assert_ptr_null(read_json(&r[N], 5000));
	close(extra);
	for (int i = 0; i < N; i++)
		close(r[i].fd);
	usleep(100000);
	assert_alive();
	free(r);
	control_server_stop(s, 100);
}
END_TEST

/* A client that never reads is dropped once its backlog passes the cap; one
 * that vanishes mid-reply is dropped at once; neither stalls anyone. */
START_TEST(server_slow_and_vanishing_clients)
{
	struct control_server *s = start_server();
	struct reader *r = calloc(1, sizeof(*r));
	char *burst;
	size_t n = 0, per;
	int slow, gone, replies = 0;
	const char *req = "{\"id\":1,\"command\":\"query-status\"}\n";

	per = strlen(req);
	burst = malloc(per * 20000);
	for (int i = 0; i < 20000; i++, n += per)
		memcpy(burst + n, req, per);
	slow = sock_connect(sock_path);
	gone = sock_connect(sock_path);
	send_all(gone, burst, per * 200);
	close(gone);
	/* 20000 replies of ~110 bytes: well over the 1 MiB cap if unread. */
	for (size_t off = 0; off < n;) {
		ssize_t w = send(slow, burst + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && errno == EAGAIN) {
			assert_alive(); /* the server answers others meanwhile */
			usleep(2000);
			continue;
		}
		if (w <= 0)
			break; /* dropped: EPIPE/ECONNRESET */
		off += (size_t)w;
	}
	assert_alive();
	/* What was sent before the drop can be read, then the stream ends. */
	r->fd = slow;
	for (json_object *o; (o = read_json(r, 5000)); replies++)
		json_object_put(o);
	ck_assert_int_lt(replies, 20000);
	free(r);
	close(slow);
	free(burst);
	control_server_stop(s, 100);
}
END_TEST

static void *event_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 50; i++) {
		json_object *d = json_object_new_object();

		json_object_object_add(d, "i", json_object_new_int(i));
		control_event(arg, CTL_EV_STATE, d);
	}
	return NULL;
}

START_TEST(server_events_in_order)
{
	struct control_server *s = start_server();
	struct reader *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	pthread_t t;
	int64_t last_seq = 0;
	json_object *o, *v, *d;

	a->fd = sock_connect(sock_path);
	b->fd = sock_connect(sock_path);
	send_str(a->fd, "{\"id\":1,\"command\":\"query-status\"}\n");
	json_object_put(read_reply(a, 5000)); /* both are registered by now */
	send_str(b->fd, "{\"id\":1,\"command\":\"query-status\"}\n");
	json_object_put(read_reply(b, 5000));
	pthread_create(&t, NULL, event_thread, s);
	pthread_join(t, NULL);
	for (int i = 0; i < 50; i++) {
		for (int k = 0; k < 2; k++) {
			o = read_json(k ? b : a, 5000);
			ck_assert_ptr_nonnull(o);
			ck_assert(json_object_object_get_ex(o, "event", &v));
			ck_assert_str_eq(json_object_get_string(v), CTL_EV_STATE);
			ck_assert(json_object_object_get_ex(o, "timestamp", &v));
			ck_assert_int_gt(json_object_get_int64(v), 1600000000000000LL);
			ck_assert(json_object_object_get_ex(o, "data", &d));
			ck_assert(json_object_object_get_ex(d, "i", &v));
			ck_assert_int_eq(json_object_get_int(v), i);
			ck_assert(json_object_object_get_ex(o, "seq", &v));
			if (k == 0) {
				ck_assert_int_gt(json_object_get_int64(v), last_seq);
				last_seq = json_object_get_int64(v);
			}
			json_object_put(o);
		}
	}
	/* A last event queued right before stopping still arrives, then EOF. */
	control_event(s, CTL_EV_EXITING, NULL);
	control_server_stop(s, 1000);
	o = read_json(a, 5000);
	ck_assert(json_object_object_get_ex(o, "event", &v));
	ck_assert_str_eq(json_object_get_string(v), CTL_EV_EXITING);
	json_object_put(o);
	ck_assert_ptr_null(read_json(a, 5000));
	close(a->fd);
	close(b->fd);
	free(a);
	free(b);
}
END_TEST

START_TEST(server_half_close_and_tick)
{
	struct control_server *s = start_server();
	struct reader *r = calloc(1, sizeof(*r));
	json_object *o;
	int ticks;

	r->fd = sock_connect(sock_path);
	/* The last request has no newline: end of stream ends it. */
	send_str(r->fd, "{\"id\":1,\"command\":\"stats\"}\n{\"id\":2,\"command\":\"stats\"}");
	shutdown(r->fd, SHUT_WR);
	for (int i = 0; i < 2; i++) {
		o = read_reply(r, 5000);
		ck_assert_ptr_nonnull(o);
		json_object_put(o);
	}
	ck_assert_ptr_null(read_json(r, 5000));
	close(r->fd);
	free(r);
	usleep(200000);
	pthread_mutex_lock(&fake.lock);
	ticks = fake.ticks;
	pthread_mutex_unlock(&fake.lock);
	ck_assert_int_ge(ticks, 3); /* the fake asks every 20 ms */
	control_server_stop(s, 100);
}
END_TEST

/* The request the fake took over (waits up to 5 s for it), handed to the test. */
static struct control_pending *take_pending(void)
{
	struct control_pending *p = NULL;

	for (int i = 0; i < 500 && !p; i++) {
		pthread_mutex_lock(&fake.lock);
		p = fake.pending;
		fake.pending = NULL;
		pthread_mutex_unlock(&fake.lock);
		if (!p)
			usleep(10000);
	}
	ck_assert_msg(p, "the command was never taken over");
	return p;
}

static int fake_ticks(void)
{
	int n;

	pthread_mutex_lock(&fake.lock);
	n = fake.ticks;
	pthread_mutex_unlock(&fake.lock);
	return n;
}

static void expect_reply_id(struct reader *r, const char *id, const char *member)
{
	json_object *o = read_reply(r, 5000), *v;

	ck_assert_msg(o, "no reply %s", id);
	ck_assert_msg(json_object_object_get_ex(o, "id", &v) &&
			      !strcmp(json_object_get_string(v), id),
		      "reply %s out of order: %s", id, json_object_to_json_string(o));
	ck_assert_msg(json_object_object_get_ex(o, member, NULL), "reply %s: %s", id,
		      json_object_to_json_string(o));
	json_object_put(o);
}

/* A command that answers later (disk-add opening a slow file, issue #9): while
 * it is pending the control thread serves another client and keeps calling
 * tick (the watchdog); the waiting client's next request is answered after
 * the deferred reply, which carries the request's id and comes before the
 * event raised after it; an error can come later too; a client that leaves
 * while waiting costs nothing. */
START_TEST(server_deferred_reply)
{
	struct control_server *s = start_server();
	struct reader *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct control_error e = { .code = CTL_E_FAILED };
	struct control_pending *p;
	json_object *ret, *o;
	int ticks;

	fake.defer = true;
	a->fd = sock_connect(sock_path);
	b->fd = sock_connect(sock_path);
	send_str(a->fd,
		 "{\"id\":\"a1\",\"command\":\"disk-add\",\"arguments\":{\"path\":\"/slow\"}}\n"
		 "{\"id\":\"a2\",\"command\":\"query-status\"}\n");
	p = take_pending();
	/* Nothing blocks meanwhile: b is answered, tick goes on. */
	ticks = fake_ticks();
	send_str(b->fd, "{\"id\":\"b1\",\"command\":\"query-status\"}\n");
	expect_reply_id(b, "b1", "return");
	for (int i = 0; i < 500 && fake_ticks() <= ticks + 2; i++)
		usleep(10000);
	ck_assert_int_gt(fake_ticks(), ticks + 2);
	ck_assert_ptr_null(read_json(a, 100)); /* a waits for a1 */
	ret = json_object_new_object();
	json_object_object_add(ret, "target", json_object_new_int(3));
	control_pending_done(p, ret, NULL);
	control_event(s, CTL_EV_DEVICE_ADDED, NULL);
	o = read_json(a, 5000);
	ck_assert_msg(o && json_object_object_get_ex(o, "return", &ret) &&
			      json_object_get_int(json_object_object_get(ret, "target")) == 3 &&
			      !strcmp(json_object_get_string(json_object_object_get(o, "id")),
				      "a1"),
		      "deferred reply: %s", o ? json_object_to_json_string(o) : "none");
	json_object_put(o);
	expect_reply_id(a, "a2", "return");
	/* A deferred error, on disk-remove. */
	send_str(a->fd,
		 "{\"id\":\"a3\",\"command\":\"disk-remove\",\"arguments\":{\"target\":2}}\n");
	snprintf(e.message, sizeof(e.message), "late failure");
	control_pending_done(take_pending(), NULL, &e);
	expect_reply_id(a, "a3", "error");
	/* Gone while waiting: the reply goes nowhere, the server lives on. */
	send_str(b->fd,
		 "{\"id\":\"b2\",\"command\":\"disk-add\",\"arguments\":{\"path\":\"/x\"}}\n");
	p = take_pending();
	close(b->fd);
	usleep(50000);
	control_pending_done(p, NULL, NULL);
	assert_alive();
	close(a->fd);
	free(a);
	free(b);
	control_server_stop(s, 100);
}
END_TEST

/* Random bytes, truncated and mutated requests, wrong types and huge lines:
 * every line gets exactly one reply, and the server lives on. */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

static const char *const fuzz_seeds[] = {
	"{\"id\":1,\"command\":\"query-status\"}",
	"{\"id\":\"x\",\"command\":\"shutdown\",\"arguments\":{\"timeout\":\"60s\"}}",
	"{\"id\":2,\"command\":\"disk-add\",\"arguments\":{\"path\":\"/a\",\"target\":3,\"readonly\":true}}",
	"{\"id\":3,\"command\":\"disk-remove\",\"arguments\":{\"target\":2}}",
	"{\"id\":4,\"command\":\"net-link\",\"arguments\":{\"state\":\"up\",\"device\":\"n0\"}}",
	"{\"id\":5,\"command\":\"pause\"}",
	"{\"id\":6,\"command\":\"resume\"}",
	"{\"id\":7,\"command\":\"stats\",\"arguments\":{}}",
};

static const char *const fuzz_values[] = {
	"null",	  "true",     "false",	     "0",	    "-1",
	"1e999",  "1.5",      "\"\"",	     "\"x\"",	    "[]",
	"{}",	  "[[[[[[[[", "\"\\u0000\"", "\"\\ud800\"", "99999999999999999999999",
	"\"up\"", "\"/p\"",   "\"60s\"",
};

/* One fuzz line into buf (no newline inside); returns its length. */
static size_t fuzz_line(char *buf, size_t cap)
{
	const char *seed = fuzz_seeds[rnd() % (sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]))];
	size_t len = strlen(seed), n;

	switch (rnd() % 6) {
	case 0: /* random bytes */
		n = rnd() % 300;
		for (size_t i = 0; i < n; i++) {
			buf[i] = (char)(rnd() & 0xff);
			if (buf[i] == '\n')
				buf[i] = ' ';
		}
		return n;
	case 1: /* truncated */
		n = rnd() % (len + 1);
		memcpy(buf, seed, n);
		return n;
	case 2: /* byte flips */
		memcpy(buf, seed, len);
		for (int k = rnd() % 4; k >= 0; k--) {
			buf[rnd() % len] = (char)(rnd() & 0xff);
		}
		for (size_t i = 0; i < len; i++)
			if (buf[i] == '\n')
				buf[i] = '\t';
		return len;
	case 3: { /* wrong types for every member */
		const char *v = fuzz_values[rnd() % (sizeof(fuzz_values) / sizeof(fuzz_values[0]))];
		static const char *const shapes[] = {
			"{\"id\":%s,\"command\":\"stats\"}",
			"{\"command\":%s}",
			"{\"command\":\"shutdown\",\"arguments\":{\"timeout\":%s}}",
			"{\"command\":\"disk-add\",\"arguments\":{\"path\":%s}}",
			"{\"command\":\"disk-add\",\"arguments\":{\"path\":\"/x\",\"target\":%s}}",
			"{\"command\":\"net-link\",\"arguments\":{\"state\":%s}}",
			"{\"command\":\"pause\",\"arguments\":%s}",
			"%s",
		};
		const char *shape = shapes[rnd() % 8], *hole = strstr(shape, "%s");
		size_t pre = (size_t)(hole - shape);

		return (size_t)snprintf(buf, cap, "%.*s%s%s", (int)pre, shape, v, hole + 2);
	}
	case 4: /* huge */
		if (rnd() % 50)
			return (size_t)snprintf(buf, cap, "%s", seed);
		n = CONTROL_LINE_MAX + rnd() % CONTROL_LINE_MAX;
		memset(buf, '{', MIN(n, cap));
		return MIN(n, cap);
	default: /* valid */ memcpy(buf, seed, len); return len;
	}
}

/* What the server will answer: nothing for a blank line, one reply else. */
static int fuzz_replies(const char *p, size_t n)
{
	if (n >= CONTROL_LINE_MAX)
		return 1;
	if (n && p[n - 1] == '\r')
		n--;
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return 1;
	return 0;
}

START_TEST(server_fuzz_stream)
{
	struct control_server *s = start_server();
	struct reader *r = calloc(1, sizeof(*r));
	size_t cap = 3 * CONTROL_LINE_MAX, n;
	char *line = malloc(cap + 1);
	long want = 0, got = 0;

	r->fd = sock_connect(sock_path);
	for (int i = 0; i < 12000; i++) {
		n = fuzz_line(line, cap);
		want += fuzz_replies(line, n);
		line[n] = '\n';
		send_all(r->fd, line, n + 1);
		/* Keep up with the replies so as not to be the slow client. */
		for (json_object *o; got < want - 64 && (o = read_json(r, 5000)); got++)
			json_object_put(o);
		if (i % 1000 == 999) {
			assert_alive();
			/* Mid-stream the same connection still answers properly. */
			send_str(r->fd, "{\"id\":\"probe\",\"command\":\"query-status\"}\n");
			want++;
		}
	}
	for (json_object *o; got < want && (o = read_json(r, 10000)); got++) {
		ck_assert(json_object_object_get_ex(o, "return", NULL) ||
			  json_object_object_get_ex(o, "error", NULL));
		json_object_put(o);
	}
	ck_assert_int_eq(got, want);
	ck_assert_int_ge(want, 10000);
	ck_assert_ptr_null(read_json(r, 200)); /* nothing extra */
	assert_alive();
	close(r->fd);
	free(r);
	free(line);
	control_server_stop(s, 100);
}
END_TEST

/* ---- systemd notification ---------------------------------------------------- */

static int dgram_bind(const char *path, bool abstract)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path + abstract, sizeof(sa.sun_path) - 1, "%.100s", path);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + abstract + strlen(path) +
			  !abstract);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, len), 0);
	return fd;
}

static void dgram_expect(int fd, const char *want)
{
	char buf[600];
	struct pollfd p = { fd, POLLIN, 0 };
	ssize_t n;

	ck_assert_int_eq(poll(&p, 1, 2000), 1);
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, want);
}

START_TEST(notify_protocol)
{
	char path[256], env[64], pid[32];
	int fd;

	unsetenv("NOTIFY_SOCKET");
	ck_assert_int_eq(notify_send("READY=1"), 1);
	snprintf(path, sizeof(path), "%s/notify", tmpdir);
	fd = dgram_bind(path, false);
	setenv("NOTIFY_SOCKET", path, 1);
	ck_assert_int_eq(notify_send("READY=1\nSTATUS=VM %s: %s", "a", "running"), 0);
	dgram_expect(fd, "READY=1\nSTATUS=VM a: running");
	close(fd);
	snprintf(env, sizeof(env), "kestrel-check-%d", (int)getpid());
	fd = dgram_bind(env, true);
	snprintf(path, sizeof(path), "@%s", env);
	setenv("NOTIFY_SOCKET", path, 1);
	ck_assert_int_eq(notify_send("WATCHDOG=1"), 0);
	dgram_expect(fd, "WATCHDOG=1");
	close(fd);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	ck_assert_int_eq(notify_send("READY=1"), -EINVAL);
	unsetenv("NOTIFY_SOCKET");

	unsetenv("WATCHDOG_PID");
	setenv("WATCHDOG_USEC", "30000000", 1);
	ck_assert_int_eq(notify_watchdog_usec(), 30000000);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	ck_assert_int_eq(notify_watchdog_usec(), 30000000);
	setenv("WATCHDOG_PID", "1", 1);
	ck_assert_int_eq(notify_watchdog_usec(), 0); /* meant for another process */
	unsetenv("WATCHDOG_PID");
	setenv("WATCHDOG_USEC", "abc", 1);
	ck_assert_int_eq(notify_watchdog_usec(), 0);
	unsetenv("WATCHDOG_USEC");
	ck_assert_int_eq(notify_watchdog_usec(), 0);
}
END_TEST

START_TEST(socket_paths)
{
	char buf[256], want[256];

	setenv("XDG_RUNTIME_DIR", "/run/user/1234", 1);
	ck_assert_int_eq(control_socket_dir(buf, sizeof(buf)), 0);
	if (geteuid() == 0)
		ck_assert_str_eq(buf, "/run/kestrel");
	else
		ck_assert_str_eq(buf, "/run/user/1234/kestrel");
	unsetenv("XDG_RUNTIME_DIR");
	ck_assert_int_eq(control_socket_dir(buf, sizeof(buf)), 0);
	snprintf(want, sizeof(want), geteuid() == 0 ? "/run/kestrel" : "/tmp/kestrel-%u",
		 (unsigned)geteuid());
	ck_assert_str_eq(buf, want);
	ck_assert_int_eq(control_socket_path("web-1", buf, sizeof(buf)), 0);
	strcat(want, "/web-1.sock");
	ck_assert_str_eq(buf, want);
	ck_assert_int_eq(control_socket_path("./x.sock", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "./x.sock");
	ck_assert_int_eq(control_socket_path("web-1", buf, 8), -ENAMETOOLONG);
	/* systemd's RuntimeDirectory= for a service run as another user
	 * (kestrel@.service); root keeps /run/kestrel. */
	setenv("RUNTIME_DIRECTORY", "/run/kestrel-svc:/run/other", 1);
	ck_assert_int_eq(control_socket_dir(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, geteuid() == 0 ? "/run/kestrel" : "/run/kestrel-svc");
	unsetenv("RUNTIME_DIRECTORY");
}
END_TEST

/* ---- kestrel ctl / kestrel list against the fake VM ---------------------------- */

static char out[1 << 16], errb[1 << 14];

/* Run the kestrel binary (stdin from in_path, or /dev/null); stdout in out,
 * stderr in errb. */
static int run_kestrel_in(const char *const *argv, const char *cwd, const char *in_path)
{
	int po[2], pe[2];
	pid_t pid;

	pid = child_fork(po, pe);
	if (pid == 0) {
		const char *args[32];
		int in = open(in_path ? in_path : "/dev/null", O_RDONLY);

		child_argv(args, ARRAY_SIZE(args), KESTREL_BIN, argv);
		dup2(in, 0);
		if (cwd && chdir(cwd))
			_exit(126);
		execv(KESTREL_BIN, (char *const *)args);
		_exit(127);
	}
	return child_collect(pid, po, pe, out, sizeof(out), errb, sizeof(errb));
}

static int run_kestrel(const char *const *argv, const char *cwd)
{
	return run_kestrel_in(argv, cwd, NULL);
}

#define CTL(...) run_kestrel((const char *const[]){ "ctl", sock_path, __VA_ARGS__, NULL }, NULL)

START_TEST(ctl_commands)
{
	struct control_server *s = start_server();
	char want[512];

	ck_assert_int_eq(CTL("query-status"), 0);
	ck_assert_msg(strstr(out, "state: running") && strstr(out, "name: fake"), "%s", out);
	ck_assert_int_eq(CTL("query-status", "--json"), 0);
	ck_assert_msg(strstr(out, "\"return\":{") && strstr(out, "\"id\":1"), "%s", out);
	ck_assert_int_eq(CTL("pause"), 0);
	ck_assert_int_eq(CTL("pause"), 1);
	ck_assert_msg(strstr(errb, "(invalid-state)"), "%s", errb);
	ck_assert_int_eq(CTL("resume"), 0);
	/* Positional words, key=value, --key value, --flag; a relative path is
	 * the caller's. */
	ck_assert_int_eq(run_kestrel((const char *const[]){ "ctl", sock_path, "disk-add", "d.img",
							    "target=4", "--format", "raw",
							    "--readonly", NULL },
				     tmpdir),
			 0);
	snprintf(want, sizeof(want), "%s/d.img", tmpdir);
	ck_assert_str_eq(fake.last_path, want);
	ck_assert_int_eq(fake.last_disk.target, 4);
	ck_assert_str_eq(fake.last_disk.format, "raw");
	ck_assert(fake.last_disk.readonly);
	ck_assert_int_eq(run_kestrel((const char *const[]){ "ctl", sock_path, "migrate",
							    "file:vm.state", "--no-wait", NULL },
				     tmpdir),
			 0);
	snprintf(want, sizeof(want), "file:%s/vm.state", tmpdir);
	ck_assert_str_eq(fake.last_path, want);
	ck_assert_int_eq(CTL("migrate", "tcp:127.0.0.1:4444", "--no-wait"), 0);
	ck_assert_str_eq(fake.last_path, "tcp:127.0.0.1:4444");
	ck_assert_int_eq(CTL("disk-remove", "7"), 0);
	ck_assert_int_eq(fake.last_target, 7);
	ck_assert_int_eq(CTL("net-link", "up"), 0);
	ck_assert(fake.net_up);
	/* Typed locally: caught before sending. */
	ck_assert_int_eq(CTL("disk-remove", "seven"), 2);
	ck_assert_int_eq(CTL("disk-add", "/x", "bogus=1"), 2);
	ck_assert_int_eq(CTL("frobnicate"), 1);
	ck_assert_msg(strstr(errb, "(unknown-command)"), "%s", errb);
	ck_assert_int_eq(CTL("shutdown", "--timeout", "90", "--no-wait"), 0);
	ck_assert_int_eq(fake.shutdown_ms, 90000);
	ck_assert_int_eq(CTL("shutdown", "timeout=1500ms", "--no-wait"), 0);
	ck_assert_int_eq(fake.shutdown_ms, 1500);
	control_server_stop(s, 100);
	ck_assert_int_eq(CTL("query-status"), 2);
	ck_assert_msg(strstr(errb, "no VM there"), "%s", errb);
}
END_TEST

/* raw: standard input goes out as it is; every reply comes back, then EOF. */
START_TEST(ctl_raw)
{
	struct control_server *s = start_server();
	char in[300];
	FILE *f;
	int n = 0;

	snprintf(in, sizeof(in), "%s/req", tmpdir);
	f = fopen(in, "w");
	fputs("{\"id\":1,\"command\":\"query-status\"}\n\n{oops\n{\"id\":3,\"command\":\"stats\"}",
	      f);
	fclose(f);
	ck_assert_int_eq(run_kestrel_in((const char *const[]){ "ctl", sock_path, "raw", NULL },
					NULL, in),
			 0);
	for (const char *p = out; (p = strchr(p, '\n')); p++)
		n++;
	ck_assert_msg(n == 3, "want 3 replies: %s", out);
	ck_assert_msg(strstr(out, "{\"id\":1,\"return\"") && strstr(out, "parse-error") &&
			      strstr(out, "{\"id\":3,\"return\""),
		      "%s", out);
	control_server_stop(s, 100);
}
END_TEST

/* --control and the JSON key "control" (relative to the file's folder). */
START_TEST(control_config)
{
	struct vm_config c;
	char err[256] = "", path[300];
	FILE *f;

	config_defaults(&c);
	ck_assert_int_eq(config_parse_run(&c, 3,
					  (char *[]){ "run", "--control", "/x/vm.sock", NULL }, err,
					  sizeof(err)),
			 0);
	ck_assert_str_eq(c.control, "/x/vm.sock");
	config_free(&c);
	config_defaults(&c);
	ck_assert_int_eq(config_parse_run(&c, 2, (char *[]){ "run", "--control=none", NULL }, err,
					  sizeof(err)),
			 0);
	ck_assert_str_eq(c.control, "none");
	config_free(&c);
	config_defaults(&c);
	ck_assert_int_ne(config_parse_run(&c, 2, (char *[]){ "run", "--control", NULL }, err,
					  sizeof(err)),
			 0);
	ck_assert_msg(strstr(err, "--control"), "%s", err);
	config_free(&c);
	snprintf(path, sizeof(path), "%s/vm.json", tmpdir);
	f = fopen(path, "w");
	fputs("{ \"control\": \"s/vm.sock\" }", f);
	fclose(f);
	config_defaults(&c);
	ck_assert_int_eq(config_load_json(&c, path, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/s/vm.sock", tmpdir);
	ck_assert_str_eq(c.control, path);
	config_free(&c);
	f = fopen(strcat(strcpy(path, tmpdir), "/bad.json"), "w");
	fputs("{ \"control\": 7 }", f);
	fclose(f);
	config_defaults(&c);
	ck_assert_int_ne(config_load_json(&c, path, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "\"control\""), "%s", err);
	config_free(&c);
}
END_TEST

static void *stop_later(void *arg)
{
	struct control_server *s = arg;
	json_object *d = json_object_new_object();

	for (int i = 0; i < 1000 && !__atomic_load_n(&fake.calls[F_SHUTDOWN], __ATOMIC_ACQUIRE);
	     i++)
		usleep(10000);
	json_object_object_add(d, "exit_code", json_object_new_int(0));
	control_event(s, CTL_EV_EXITING, d);
	control_server_stop(s, 1000);
	return NULL;
}

/* ExecStop's `kestrel ctl NAME shutdown --timeout 60` returns once the worker
 * is gone, with 0. */
START_TEST(ctl_shutdown_waits)
{
	struct control_server *s = start_server();
	pthread_t t;

	pthread_create(&t, NULL, stop_later, s);
	ck_assert_int_eq(CTL("shutdown", "--timeout", "60"), 0);
	ck_assert_msg(strstr(out, "stopped (exit status 0)"), "%s", out);
	pthread_join(t, NULL);
}
END_TEST

START_TEST(list_running_and_stale)
{
	char dir[256], live[400], stale[400], name[64];
	struct control_server *s;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char err[256] = "";
	int fd;

	ck_assert_int_eq(control_socket_dir(dir, sizeof(dir)), 0);
	mkdir(dir, 0700);
	snprintf(name, sizeof(name), "check-control-%d", (int)getpid());
	snprintf(live, sizeof(live), "%s/%s.sock", dir, name);
	snprintf(stale, sizeof(stale), "%s/%s-stale.sock", dir, name);
	ck_assert_int_eq(control_server_start(&s, live, name, &fake_ops, NULL, err, sizeof(err)),
			 0);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", stale);
	unlink(stale);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ck_assert_int_eq(run_kestrel((const char *const[]){ "list", NULL }, NULL), 0);
	ck_assert_msg(strstr(out, "NAME") && strstr(out, "fake") && strstr(out, "running") &&
			      strstr(out, "1G") && strstr(out, "1m05s"),
		      "%s", out);
	ck_assert_msg(strstr(errb, "removed the stale socket"), "%s", errb);
	ck_assert_int_eq(access(stale, F_OK), -1);
	ck_assert_int_eq(run_kestrel((const char *const[]){ "list", "--json", NULL }, NULL), 0);
	ck_assert_msg(out[0] == '[' && strstr(out, "\"state\":\"running\""), "%s", out);
	control_server_stop(s, 100);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("control");

	ADD_TCASE(s, "requests", NULL, NULL, 0, request_ok, request_parse_errors,
		  request_shape_errors, request_argument_errors, commands_reach_the_vm,
		  vm_errors_pass_through);
	ADD_TCASE(s, "schema", NULL, NULL, 0, schema_matches_commands,
		  schema_matches_events_and_errors);
	ADD_TCASE(s, "server", dir_setup, dir_teardown, 120, server_basics, server_too_long_line,
		  server_stale_and_live_socket, server_many_clients,
		  server_slow_and_vanishing_clients, server_events_in_order,
		  server_half_close_and_tick, server_deferred_reply, server_fuzz_stream,
		  notify_protocol, socket_paths);
	ADD_TCASE(s, "ctl", dir_setup, dir_teardown, 60, ctl_commands, ctl_raw, control_config,
		  ctl_shutdown_waits, list_running_and_stale);
	return run_suite(s);
}
