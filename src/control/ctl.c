/* `kestrel ctl` and `kestrel list`: clients of the control socket
 * (docs/control.md). ctl turns words into one request, typing each argument
 * by the command table the server uses, prints the reply for people (or as
 * it came, with --json), and for shutdown/stop waits until the worker is
 * gone, which is what a systemd ExecStop needs. list asks every socket in the
 * default directory for its status and removes sockets nobody listens on. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kestrel/clock.h"
#include "kestrel/config.h"
#include "kestrel/control.h"
#include "kestrel/migrate.h"

#define CTL_EXIT_OK	  0
#define CTL_EXIT_ERROR	  1	/* the command failed */
#define CTL_EXIT_USAGE	  2	/* bad words, or no such VM */
#define CTL_REPLY_MS	  30000 /* pause waits 2 s; disk-add may take longer (below) */
#define CTL_LIST_MS	  2000
#define CTL_WAIT_GRACE_MS 30000

struct ctl_conn {
	int fd;
	char buf[CONTROL_LINE_MAX];
	size_t len;
};

/* ---- connection ---------------------------------------------------------- */

static int conn_open(struct ctl_conn *c, const char *path, bool quiet)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	c->len = 0;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		if (!quiet)
			fprintf(stderr, "kestrel: ctl: %s: path too long for a socket\n", path);
		return -ENAMETOOLONG;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return 0;
	int e = errno;

	close(c->fd);
	c->fd = -1;
	if (quiet)
		return -e;
	if (e == ENOENT)
		fprintf(stderr, "kestrel: ctl: no VM there (no socket %s)\n", path);
	else if (e == ECONNREFUSED)
		fprintf(stderr, "kestrel: ctl: the VM is not running (stale socket %s)\n", path);
	else
		fprintf(stderr, "kestrel: ctl: %s: %s\n", path, strerror(e));
	return -e;
}

static int conn_send(struct ctl_conn *c, json_object *req)
{
	const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
								    JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t len = strlen(s), off = 0;

	while (off < len + 1) {
		const char *p = off < len ? s + off : "\n";
		ssize_t n = send(c->fd, p, off < len ? len - off : 1, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -errno;
		off += (size_t)n;
	}
	return 0;
}

/* Next line (malloc'd, without the newline): 0, -ETIMEDOUT, or -EPIPE at the
 * end of the stream. timeout_ms < 0 waits forever. */
static int conn_line(struct ctl_conn *c, int timeout_ms, char **out)
{
	uint64_t t0 = clock_mono_ms();

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		struct pollfd p = { c->fd, POLLIN, 0 };
		int wait = timeout_ms, r;
		ssize_t n;

		if (nl) {
			size_t l = (size_t)(nl - c->buf);

			*out = strndup(c->buf, l);
			memmove(c->buf, nl + 1, c->len - l - 1);
			c->len -= l + 1;
			return *out ? 0 : -ENOMEM;
		}
		if (c->len == sizeof(c->buf))
			return -EPROTO;
		if (timeout_ms >= 0) {
			wait = timeout_ms - (int)(clock_mono_ms() - t0);
			if (wait <= 0)
				return -ETIMEDOUT;
		}
		r = poll(&p, 1, wait);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return -ETIMEDOUT;
		n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		c->len += (size_t)n;
	}
}

/* Read until the reply with our id; events before it go to on_event. */
static int conn_reply(struct ctl_conn *c, int id, int timeout_ms, json_object **reply,
		      void (*on_event)(json_object *ev, const char *line, void *arg), void *arg)
{
	for (;;) {
		json_object *o, *v;
		char *line;
		int r = conn_line(c, timeout_ms, &line);

		if (r)
			return r;
		o = json_tokener_parse(line);
		if (o && json_object_object_get_ex(o, "event", NULL)) {
			if (on_event)
				on_event(o, line, arg);
		} else if (o && (!json_object_object_get_ex(o, "id", &v) ||
				 json_object_get_int(v) == id)) {
			/* No id: an error about the request line itself. */
			*reply = o;
			free(line);
			return 0;
		}
		json_object_put(o);
		free(line);
	}
}

/* ---- words -> request ------------------------------------------------------ */

static int ctl_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" }, *const no[] = { "false",
										       "no", "off",
										       "0" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcasecmp(v, yes[i]) || !strcasecmp(v, no[i])) {
			*out = !strcasecmp(v, yes[i]);
			return 0;
		}
	}
	return -EINVAL;
}

static bool ctl_digits(const char *v)
{
	return *v && v[strspn(v, "0123456789")] == '\0' && strlen(v) < 19;
}

/* A relative path means the caller's directory, not the worker's. */
static json_object *ctl_abs_path(const char *v)
{
	char cwd[PATH_MAX], *rp, *s;
	json_object *o;

	if (v[0] == '/')
		return json_object_new_string(v);
	rp = realpath(v, NULL);
	if (rp) {
		o = json_object_new_string(rp);
		free(rp);
		return o;
	}
	if (!getcwd(cwd, sizeof(cwd)) || asprintf(&s, "%s/%s", cwd, v) < 0)
		return json_object_new_string(v);
	o = json_object_new_string(s);
	free(s);
	return o;
}

static json_object *ctl_abs_uri(const char *v)
{
	json_object *p = ctl_abs_path(v + 5), *o;
	char *s;

	if (!p || asprintf(&s, "%.5s%s", v, json_object_get_string(p)) < 0) {
		json_object_put(p);
		return json_object_new_string(v);
	}
	json_object_put(p);
	o = json_object_new_string(s);
	free(s);
	return o;
}

static json_object *ctl_resolve_uri(const char *v)
{
	char err[300], *numeric;
	json_object *o;

	int r = migrate_uri_resolve(v, &numeric, err, sizeof(err));

	/* A malformed address goes as it is (the worker's answer names the
	 * problem); a name that does not resolve stops here. */
	if (r == -EHOSTUNREACH) {
		fprintf(stderr, "kestrel: ctl: %s\n", err);
		return NULL;
	}
	if (r)
		return json_object_new_string(v);
	o = json_object_new_string(numeric);
	free(numeric);
	return o;
}

static json_object *ctl_value(const struct control_arg *spec, const char *v, const char *key)
{
	bool b;

	if (!spec) {
		/* Not in our table (a newer worker?): guess, and let it judge. */
		if (ctl_digits(v))
			return json_object_new_int64(strtoll(v, NULL, 10));
		if (!strcmp(v, "true") || !strcmp(v, "false"))
			return json_object_new_boolean(v[0] == 't');
		return json_object_new_string(v);
	}
	switch (spec->type) {
	case CTL_ARG_INT:
		if (!ctl_digits(v) && !(v[0] == '-' && ctl_digits(v + 1)))
			break;
		return json_object_new_int64(strtoll(v, NULL, 10));
	case CTL_ARG_BOOL:
		if (ctl_bool(v, &b))
			break;
		return json_object_new_boolean(b);
	case CTL_ARG_DURATION:
		return ctl_digits(v) ? json_object_new_int64(strtoll(v, NULL, 10))
				     : json_object_new_string(v);
	case CTL_ARG_PATH: return ctl_abs_path(v);
	case CTL_ARG_STRING:
		/* migrate file:PATH and unix:PATH: relative to the caller too. */
		if (!strcmp(spec->name, "uri") &&
		    (!strncmp(v, "file:", 5) || !strncmp(v, "unix:", 5)) && v[5] && v[5] != '/')
			return ctl_abs_uri(v);
		/* and a host name resolved here: the worker's sandbox has no
		 * resolver. */
		if (!strcmp(spec->name, "uri") && !strncmp(v, "tcp:", 4))
			return ctl_resolve_uri(v);
		return json_object_new_string(v);
	case CTL_ARG_ENUM: return json_object_new_string(v);
	}
	fprintf(stderr, "kestrel: ctl: %s=%s: expected %s\n", key, v,
		spec->type == CTL_ARG_INT ? "an integer" : "true or false");
	return NULL;
}

static const struct control_arg *ctl_spec(const struct control_command *cmd, const char *key,
					  size_t keylen)
{
	for (const struct control_arg *a = cmd ? cmd->args : NULL; a && a->name; a++)
		if (strlen(a->name) == keylen && !strncmp(a->name, key, keylen))
			return a;
	return NULL;
}

static int ctl_add(json_object *args, const struct control_command *cmd, const char *key,
		   size_t keylen, const char *value)
{
	const struct control_arg *spec = ctl_spec(cmd, key, keylen);
	char k[64];
	json_object *v;

	if (keylen == 0 || keylen >= sizeof(k)) {
		fprintf(stderr, "kestrel: ctl: '%.*s': not an argument name\n",
			(int)MIN(keylen, (size_t)80), key);
		return -EINVAL;
	}
	snprintf(k, sizeof(k), "%.*s", (int)keylen, key);
	if (cmd && !spec) {
		fprintf(stderr, "kestrel: ctl: %s takes no argument '%s' (kestrel ctl help)\n",
			cmd->name, k);
		return -EINVAL;
	}
	v = ctl_value(spec, value, k);
	if (!v)
		return -EINVAL;
	json_object_object_add(args, k, v);
	return 0;
}

/* key=value, --key value, --key=value, --flag (booleans), or a bare word for
 * the command's next argument not given yet, in table order. */
static int ctl_args(const struct control_command *cmd, int argc, char **argv, json_object *args)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *eq = strchr(a, '=');
		const struct control_arg *spec;

		if (!strncmp(a, "--", 2)) {
			a += 2;
			eq = strchr(a, '=');
			if (eq) {
				if (ctl_add(args, cmd, a, (size_t)(eq - a), eq + 1))
					return -EINVAL;
				continue;
			}
			spec = ctl_spec(cmd, a, strlen(a));
			if (spec && spec->type == CTL_ARG_BOOL &&
			    (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))) {
				json_object_object_add(args, a, json_object_new_boolean(true));
				continue;
			}
			if (i + 1 >= argc) {
				fprintf(stderr, "kestrel: ctl: --%s needs a value\n", a);
				return -EINVAL;
			}
			if (ctl_add(args, cmd, a, strlen(a), argv[++i]))
				return -EINVAL;
		} else if (eq) {
			if (ctl_add(args, cmd, a, (size_t)(eq - a), eq + 1))
				return -EINVAL;
		} else {
			spec = NULL;
			for (const struct control_arg *s = cmd ? cmd->args : NULL; s && s->name;
			     s++)
				if (!json_object_object_get_ex(args, s->name, NULL)) {
					spec = s;
					break;
				}
			if (!spec) {
				fprintf(stderr, "kestrel: ctl: '%s': unexpected argument\n", a);
				return -EINVAL;
			}
			if (ctl_add(args, cmd, spec->name, strlen(spec->name), a))
				return -EINVAL;
		}
	}
	return 0;
}

/* ---- output ------------------------------------------------------------------ */

static void print_scalar(json_object *v)
{
	if (json_object_is_type(v, json_type_string))
		fputs(json_object_get_string(v), stdout);
	else
		fputs(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), stdout);
}

/* key: value lines; nested objects indented; arrays of objects one per line. */
static void print_object(json_object *o, int indent)
{
	json_object_object_foreach(o, key, val)
	{
		printf("%*s%s:", indent, "", key);
		if (json_object_is_type(val, json_type_object)) {
			putchar('\n');
			print_object(val, indent + 2);
			continue;
		}
		if (!json_object_is_type(val, json_type_array)) {
			putchar(' ');
			print_scalar(val);
			putchar('\n');
			continue;
		}
		putchar('\n');
		for (size_t i = 0; i < json_object_array_length(val); i++) {
			json_object *e = json_object_array_get_idx(val, i);

			printf("%*s-", indent + 2, "");
			if (json_object_is_type(e, json_type_object)) {
				json_object_object_foreach(e, k2, v2)
				{
					printf(" %s=", k2);
					print_scalar(v2);
				}
			} else {
				putchar(' ');
				print_scalar(e);
			}
			putchar('\n');
		}
	}
}

static const char *jget_str(json_object *o, const char *k, const char *dflt)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : dflt;
}

static int64_t jget_int(json_object *o, const char *k, int64_t dflt)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_int)
		       ? json_object_get_int64(v)
		       : dflt;
}

static void print_event(json_object *ev, const char *line, void *arg)
{
	bool json = *(bool *)arg;
	json_object *d = NULL;

	if (json) {
		puts(line);
	} else {
		printf("event %s", jget_str(ev, "event", "?"));
		if (json_object_object_get_ex(ev, "data", &d) &&
		    json_object_is_type(d, json_type_object)) {
			json_object_object_foreach(d, k, v)
			{
				printf(" %s=", k);
				print_scalar(v);
			}
		}
		putchar('\n');
	}
	fflush(stdout);
}

/* ---- kestrel ctl -------------------------------------------------------------- */

static void ctl_usage(FILE *f)
{
	fprintf(f,
		"usage: kestrel ctl NAME|SOCKET COMMAND [ARG ...] [--json] [--no-wait]\n"
		"       kestrel ctl NAME|SOCKET watch [--json]    print events until the VM exits\n"
		"       kestrel ctl NAME|SOCKET raw < REQUESTS    send JSON lines, print what comes\n"
		"       kestrel list [--json]\n"
		"ARG: key=value, --key value, or the next argument's value. Commands\n"
		"(docs/control.md):\n");
	for (const struct control_command *c = control_commands; c->name; c++) {
		fprintf(f, "  %-13s", c->name);
		for (const struct control_arg *a = c->args; a->name; a++) {
			fprintf(f, " %s%s=", a->required ? "" : "[", a->name);
			if (a->choices)
				for (const char *const *ch = a->choices; *ch; ch++)
					fprintf(f, "%s%s", ch == a->choices ? "" : "|", *ch);
			else
				fputs(control_arg_type_name(a->type), f);
			fputs(a->required ? "" : "]", f);
		}
		fputc('\n', f);
	}
	fprintf(f, "NAME is looked up in the socket directory ($XDG_RUNTIME_DIR/kestrel,\n"
		   "/run/kestrel for root); anything with a '/' is a socket path.\n");
}

/* After shutdown or stop: read until the worker closes the socket. */
static int ctl_wait_gone(struct ctl_conn *c, const char *name, int64_t timeout_ms, bool json)
{
	int64_t code = -1;
	int wait = timeout_ms > 0 ? (int)MIN(timeout_ms + CTL_WAIT_GRACE_MS, (int64_t)INT_MAX) : -1;

	for (;;) {
		char *line;
		json_object *o;
		int r = conn_line(c, wait, &line);

		if (r == -ETIMEDOUT) {
			fprintf(stderr, "kestrel: ctl: %s is still running\n", name);
			return CTL_EXIT_ERROR;
		}
		if (r)
			break;
		o = json_tokener_parse(line);
		if (o && !strcmp(jget_str(o, "event", ""), CTL_EV_EXITING)) {
			json_object *d;

			if (json_object_object_get_ex(o, "data", &d))
				code = jget_int(d, "exit_code", -1);
		}
		if (json)
			puts(line);
		json_object_put(o);
		free(line);
	}
	if (!json) {
		if (code >= 0)
			printf("%s stopped (exit status %lld)\n", name, (long long)code);
		else
			printf("%s stopped\n", name);
	}
	return CTL_EXIT_OK;
}

/* A job the worker runs on a thread of its own (save, migrate): the reply
 * comes at once, then progress and the outcome as events. */
struct ctl_job {
	const char *what; /* in messages: "the save", "the migration" */
	const char *verb; /* "save", "migrate" */
	const char *ev_progress, *ev_done, *ev_failed;
	const char *failed_note; /* after the failure's message */
	void (*progress)(json_object *d);
	void (*done)(const char *name, json_object *d, bool tty);
};

static void save_progress(json_object *d)
{
	fprintf(stderr, "\rsaving: %3lld%%",
		(long long)(jget_int(d, "bytes", 0) * 100 / MAX(jget_int(d, "total", 1), 1)));
}

static void save_done(const char *name, json_object *d, bool tty)
{
	printf("%s%s saved to %s (%lld MiB of RAM stored, %lld ms)\n", tty ? "\r" : "", name,
	       jget_str(d, "path", "?"), (long long)(jget_int(d, "ram_bytes", 0) >> 20),
	       (long long)jget_int(d, "ms", 0));
}

static void migrate_progress(json_object *d)
{
	fprintf(stderr,
		"\rmigrating: round %lld, %lld MiB sent, %lld KiB dirty, %lld ms expected "
		"downtime   ",
		(long long)jget_int(d, "round", 0),
		(long long)(jget_int(d, "transferred", 0) >> 20),
		(long long)(jget_int(d, "remaining", 0) >> 10),
		(long long)jget_int(d, "expected_downtime_ms", 0));
}

static void migrate_done(const char *name, json_object *d, bool tty)
{
	printf("%s%s migrated to %s (downtime %lld ms, %lld ms in all, %lld rounds, %lld MiB sent; "
	       "state sent %lld ms into the pause)\n",
	       tty ? "\r" : "", name, jget_str(d, "uri", "?"),
	       (long long)jget_int(d, "downtime_ms", 0), (long long)jget_int(d, "total_ms", 0),
	       (long long)jget_int(d, "rounds", 0),
	       (long long)(jget_int(d, "transferred", 0) >> 20),
	       (long long)jget_int(d, "state_sent_ms", 0));
}

static const struct ctl_job ctl_job_save = {
	"the save",	    "save", CTL_EV_SAVE_PROGRESS, CTL_EV_SAVED,
	CTL_EV_SAVE_FAILED, "",	    save_progress,	  save_done,
};
static const struct ctl_job ctl_job_migrate = {
	"the migration",	 "migrate",
	CTL_EV_MIGRATE_PROGRESS, CTL_EV_MIGRATED,
	CTL_EV_MIGRATE_FAILED,	 " (the VM runs on here)",
	migrate_progress,	 migrate_done,
};

/* The job's outcome (progress to stderr on a terminal); *done: it
 * succeeded, and then (unless the VM keeps running) the worker exits. */
static int ctl_wait_job(struct ctl_conn *c, const char *name, bool json, const struct ctl_job *job,
			bool *done)
{
	bool tty = isatty(STDERR_FILENO);

	*done = false;
	for (;;) {
		json_object *o, *d = NULL;
		const char *ev;
		char *line;
		int r = conn_line(c, -1, &line);

		if (r) {
			fprintf(stderr, "kestrel: ctl: %s: the worker went away during %s\n", name,
				job->what);
			return CTL_EXIT_ERROR;
		}
		o = json_tokener_parse(line);
		ev = o ? jget_str(o, "event", "") : "";
		if (o)
			json_object_object_get_ex(o, "data", &d);
		if (json && *ev)
			puts(line);
		if (!strcmp(ev, job->ev_progress) && tty && !json)
			job->progress(d);
		if (!strcmp(ev, job->ev_done) && !json)
			job->done(name, d, tty);
		if (!strcmp(ev, job->ev_failed))
			fprintf(stderr, "%skestrel: ctl: %s: %s: %s%s\n", tty && !json ? "\r" : "",
				name, job->verb, jget_str(d, "message", "?"), job->failed_note);
		*done = !strcmp(ev, job->ev_done);
		r = *done || !strcmp(ev, job->ev_failed);
		json_object_put(o);
		free(line);
		if (r)
			return *done ? CTL_EXIT_OK : CTL_EXIT_ERROR;
	}
}

static int ctl_watch(struct ctl_conn *c, bool json)
{
	for (;;) {
		char *line;
		json_object *o;

		if (conn_line(c, -1, &line))
			return CTL_EXIT_OK;
		o = json_tokener_parse(line);
		if (o && json_object_object_get_ex(o, "event", NULL))
			print_event(o, line, &json);
		json_object_put(o);
		free(line);
	}
}

/* Copy stdin to the socket as it is and print whatever comes back, until the
 * worker has answered everything and closed (scripts, fuzzing). Neither side
 * blocks the other: a client that stops reading would be dropped. */
static int ctl_raw(struct ctl_conn *c)
{
	char in[16384], buf[16384];
	size_t in_len = 0, in_off = 0;
	bool in_eof = false, shut = false;

	for (;;) {
		struct pollfd p[2] = {
			{ (!in_eof && in_off == in_len) ? STDIN_FILENO : -1, POLLIN, 0 },
			{ c->fd, POLLIN | (in_off < in_len ? POLLOUT : 0), 0 },
		};
		ssize_t n;

		if (in_eof && in_off == in_len && !shut) {
			shutdown(c->fd, SHUT_WR); /* the worker answers the rest, then closes */
			shut = true;
		}
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return CTL_EXIT_ERROR;
		}
		if (p[0].revents) {
			n = read(STDIN_FILENO, in, sizeof(in));
			if (n < 0 && errno == EINTR)
				continue;
			in_eof = n <= 0;
			in_len = n > 0 ? (size_t)n : 0;
			in_off = 0;
		}
		if (p[1].revents & POLLOUT) {
			n = send(c->fd, in + in_off, in_len - in_off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				in_off += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				return CTL_EXIT_ERROR;
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(c->fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return n == 0 ? CTL_EXIT_OK : CTL_EXIT_ERROR;
			fwrite(buf, 1, (size_t)n, stdout);
		}
	}
}

static int ctl_result(json_object *reply, const char *name, const char *cmd, bool json)
{
	json_object *ret, *err;

	if (json) {
		puts(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN |
								   JSON_C_TO_STRING_NOSLASHESCAPE));
	} else if (json_object_object_get_ex(reply, "return", &ret)) {
		print_object(ret, 0);
	}
	if (json_object_object_get_ex(reply, "error", &err)) {
		fprintf(stderr, "kestrel: ctl: %s: %s: %s (%s)\n", name, cmd,
			jget_str(err, "message", "?"), jget_str(err, "code", "?"));
		return CTL_EXIT_ERROR;
	}
	return CTL_EXIT_OK;
}

struct ctl_opts {
	bool json, no_wait;
	int nargs;
	char **args;
};

/* Pull --json and --no-wait out wherever they are. */
static void ctl_split(int argc, char **argv, struct ctl_opts *o)
{
	o->nargs = 0;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			o->json = true;
		else if (!strcmp(argv[i], "--no-wait"))
			o->no_wait = true;
		else
			o->args[o->nargs++] = argv[i];
	}
}

static int ctl_run(const char *target, const char *cmdname, int argc, char **argv,
		   const struct ctl_opts *o)
{
	const struct control_command *cmd = control_command_find(cmdname);
	json_object *req = json_object_new_object(), *args = json_object_new_object(), *reply;
	char path[PATH_MAX];
	struct ctl_conn *c = calloc(1, sizeof(*c));
	bool json = o->json;
	int rc = CTL_EXIT_USAGE, r;

	if (!c || control_socket_path(target, path, sizeof(path))) {
		fprintf(stderr, "kestrel: ctl: %s: name too long\n", target);
		goto out;
	}
	if (!strcmp(cmdname, "watch") || !strcmp(cmdname, "raw")) {
		if (argc || conn_open(c, path, false))
			goto out;
		rc = cmdname[0] == 'w' ? ctl_watch(c, json) : ctl_raw(c);
		goto out_close;
	}
	if (ctl_args(cmd, argc, argv, args) || conn_open(c, path, false))
		goto out;
	json_object_object_add(req, "id", json_object_new_int(1));
	json_object_object_add(req, "command", json_object_new_string(cmdname));
	json_object_object_add(req, "arguments", json_object_get(args));
	r = conn_send(c, req);
	r = r ?: conn_reply(c, 1, CTL_REPLY_MS, &reply, json ? print_event : NULL, &json);
	if (r) {
		fprintf(stderr, "kestrel: ctl: %s: %s\n", target,
			r == -ETIMEDOUT ? "no reply"
			: r == -EPIPE	? "the worker closed the connection"
					: strerror(-r));
		/* The worker goes on with a slow open or drain without us. */
		if (r == -ETIMEDOUT && !strncmp(cmdname, "disk-", 5))
			fprintf(stderr,
				"kestrel: ctl: %s: the worker may still be working on %s; "
				"query-vm shows the disks, watch the device-added/removed events\n",
				target, cmdname);
		rc = CTL_EXIT_ERROR;
		goto out_close;
	}
	rc = ctl_result(reply, target, cmdname, json);
	if (rc == CTL_EXIT_OK && !o->no_wait && !strcmp(cmdname, "save")) {
		json_object *keep = NULL;
		bool saved;

		json_object_object_get_ex(args, "keep-running", &keep);
		rc = ctl_wait_job(c, target, json, &ctl_job_save, &saved);
		if (saved && !(keep && json_object_get_boolean(keep)))
			rc = ctl_wait_gone(c, target, 0, json);
	} else if (rc == CTL_EXIT_OK && !o->no_wait && !strcmp(cmdname, "migrate")) {
		json_object *uri = NULL;
		bool done;

		json_object_object_get_ex(args, "uri", &uri);
		rc = ctl_wait_job(c, target, json,
				  strncmp(uri ? json_object_get_string(uri) : "", "file:", 5)
					  ? &ctl_job_migrate
					  : &ctl_job_save,
				  &done);
		if (done)
			rc = ctl_wait_gone(c, target, 0, json);
	} else if (rc == CTL_EXIT_OK && !o->no_wait &&
		   (!strcmp(cmdname, "shutdown") || !strcmp(cmdname, "stop"))) {
		json_object *ret = NULL;

		json_object_object_get_ex(reply, "return", &ret);
		rc = ctl_wait_gone(c, target, jget_int(ret, "timeout_ms", 0), json);
	}
	json_object_put(reply);
out_close:
	close(c->fd);
out:
	free(c);
	json_object_put(args);
	json_object_put(req);
	return rc;
}

int ctl_main(int argc, char **argv)
{
	struct ctl_opts o = { .args = calloc((size_t)argc + 1, sizeof(char *)) };
	int rc;

	if (!o.args)
		return CTL_EXIT_USAGE;
	ctl_split(argc - 1, argv + 1, &o);
	if (o.nargs >= 1 && (!strcmp(o.args[0], "help") || !strcmp(o.args[0], "--help") ||
			     !strcmp(o.args[0], "-h"))) {
		ctl_usage(stdout);
		rc = CTL_EXIT_OK;
	} else if (o.nargs < 2) {
		ctl_usage(stderr);
		rc = CTL_EXIT_USAGE;
	} else {
		rc = ctl_run(o.args[0], o.args[1], o.nargs - 2, o.args + 2, &o);
	}
	free(o.args);
	return rc;
}

/* ---- kestrel list ------------------------------------------------------------ */

static json_object *list_query(const char *path, const char *name)
{
	struct ctl_conn *c = calloc(1, sizeof(*c));
	json_object *req = json_object_new_object(), *reply = NULL, *ret = NULL;
	int r;

	if (!c)
		goto out;
	r = conn_open(c, path, true);
	if (r == -ECONNREFUSED) {
		/* Nobody listens: a worker that died without cleaning up. */
		if (unlink(path) == 0)
			fprintf(stderr, "kestrel: list: removed the stale socket of %s\n", name);
		goto out;
	}
	if (r)
		goto out;
	json_object_object_add(req, "id", json_object_new_int(1));
	json_object_object_add(req, "command", json_object_new_string("query-status"));
	if (conn_send(c, req) == 0 && conn_reply(c, 1, CTL_LIST_MS, &reply, NULL, NULL) == 0 &&
	    json_object_object_get_ex(reply, "return", &ret))
		json_object_get(ret);
	else
		ret = NULL;
	if (!ret) {
		ret = json_object_new_object();
		json_object_object_add(ret, "name", json_object_new_string(name));
		json_object_object_add(ret, "state", json_object_new_string("not-responding"));
	}
	json_object_put(reply);
	close(c->fd);
out:
	free(c);
	json_object_put(req);
	return ret;
}

static void fmt_mem(int64_t b, char *buf, size_t len)
{
	if (b < 0)
		snprintf(buf, len, "-");
	else if (b >= (int64_t)GiB(1) && b % (int64_t)GiB(1) == 0)
		snprintf(buf, len, "%lldG", (long long)(b >> 30));
	else
		snprintf(buf, len, "%lldM", (long long)(b >> 20));
}

static void fmt_uptime(int64_t ms, char *buf, size_t len)
{
	int64_t s = ms / 1000;

	if (ms < 0)
		snprintf(buf, len, "-");
	else if (s >= 86400)
		snprintf(buf, len, "%lldd%02lldh", (long long)(s / 86400),
			 (long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600),
			 (long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
	else
		snprintf(buf, len, "%llds", (long long)s);
}

static int list_cmp(const void *a, const void *b)
{
	return strcmp(jget_str(*(json_object *const *)a, "name", ""),
		      jget_str(*(json_object *const *)b, "name", ""));
}

static void list_print(json_object *all, bool json)
{
	size_t n = json_object_array_length(all);

	if (json) {
		puts(json_object_to_json_string_ext(all, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
		return;
	}
	printf("%-24s %8s %-14s %5s %7s %9s\n", "NAME", "PID", "STATE", "VCPUS", "MEMORY",
	       "UPTIME");
	for (size_t i = 0; i < n; i++) {
		json_object *s = json_object_array_get_idx(all, i);
		char mem[16], up[24], pid[16], cpus[8];

		fmt_mem(jget_int(s, "memory", -1), mem, sizeof(mem));
		fmt_uptime(jget_int(s, "uptime_ms", -1), up, sizeof(up));
		snprintf(pid, sizeof(pid), "%lld", (long long)jget_int(s, "pid", 0));
		snprintf(cpus, sizeof(cpus), "%lld", (long long)jget_int(s, "vcpus", 0));
		printf("%-24s %8s %-14s %5s %7s %9s\n", jget_str(s, "name", "?"),
		       jget_int(s, "pid", 0) ? pid : "-", jget_str(s, "state", "?"),
		       jget_int(s, "vcpus", 0) ? cpus : "-", mem, up);
	}
}

int ctl_list_main(int argc, char **argv)
{
	char dir[PATH_MAX], path[PATH_MAX * 2];
	json_object *all = json_object_new_array();
	bool json = false;
	struct dirent *de;
	DIR *d;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") != 0) {
			fprintf(stderr, "usage: kestrel list [--json]\n");
			json_object_put(all);
			return CTL_EXIT_USAGE;
		}
		json = true;
	}
	if (control_socket_dir(dir, sizeof(dir)) == 0 && (d = opendir(dir))) {
		while ((de = readdir(d))) {
			size_t l = strlen(de->d_name);
			struct stat st;
			char name[256];
			json_object *s;

			if (l <= 5 || strcmp(de->d_name + l - 5, ".sock") != 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			snprintf(name, sizeof(name), "%.*s", (int)(l - 5), de->d_name);
			if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
				continue;
			s = list_query(path, name);
			if (s)
				json_object_array_add(all, s);
		}
		closedir(d);
	}
	json_object_array_sort(all, list_cmp);
	list_print(all, json);
	json_object_put(all);
	return CTL_EXIT_OK;
}
