/* The control socket: one Unix socket per worker speaking line-delimited JSON
 * (docs/control.md is the schema). src/control/control.c is the server and the
 * command table; it acts on the VM only through struct control_ops, which
 * src/control/control_vm.c implements for the real machine and tests fake. */
#ifndef KESTREL_CONTROL_H
#define KESTREL_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/util.h"

struct json_object;
struct control_server;
struct i8042_key;

#define CONTROL_LINE_MAX	(64 * 1024)   /* bytes in one request, newline included */
#define CONTROL_OUT_MAX		(1024 * 1024) /* replies + events queued for one client */
#define CONTROL_MAX_CLIENTS	64
#define CONTROL_EVENT_QUEUE_MAX 1024 /* events not yet handed to the clients */

/* Error codes (docs/control.md, "Errors"). */
#define CTL_E_PARSE	  "parse-error"
#define CTL_E_REQUEST	  "invalid-request"
#define CTL_E_UNKNOWN	  "unknown-command"
#define CTL_E_ARGUMENT	  "invalid-argument"
#define CTL_E_TOO_LONG	  "request-too-long"
#define CTL_E_STATE	  "invalid-state"
#define CTL_E_UNSUPPORTED "unsupported"
#define CTL_E_NOT_FOUND	  "not-found"
#define CTL_E_EXISTS	  "exists"
#define CTL_E_FAILED	  "failed"
#define CTL_E_TIMEOUT	  "timeout"
#define CTL_E_TOO_MANY	  "too-many-clients"
#define CTL_E_INTERNAL	  "internal-error"

/* Event names (docs/control.md, "Events"). */
#define CTL_EV_STATE		"state-changed"
#define CTL_EV_POWERDOWN	"powerdown"
#define CTL_EV_RESET		"reset"
#define CTL_EV_STOPPED		"stopped"
#define CTL_EV_EXITING		"exiting"
#define CTL_EV_DEVICE_ADDED	"device-added"
#define CTL_EV_DEVICE_REMOVED	"device-removed"
#define CTL_EV_SAVE_PROGRESS	"save-progress"
#define CTL_EV_SAVED		"saved"
#define CTL_EV_SAVE_FAILED	"save-failed"
#define CTL_EV_MIGRATE_PROGRESS "migrate-progress"
#define CTL_EV_MIGRATED		"migrated"
#define CTL_EV_MIGRATE_FAILED	"migrate-failed"

struct control_error {
	const char *code; /* one of CTL_E_* */
	char message[256];
};

/* Fill e and return -EINVAL (handlers: `return control_fail(e, ...)`). */
int control_fail(struct control_error *e, const char *code, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Argument types of the command table; the schema names them the same. */
enum control_arg_type {
	CTL_ARG_STRING,	  /* "string" */
	CTL_ARG_PATH,	  /* "path": an absolute path (kestrel ctl makes it so) */
	CTL_ARG_INT,	  /* "integer", within [min, max] */
	CTL_ARG_BOOL,	  /* "boolean" */
	CTL_ARG_ENUM,	  /* "enum": one of choices */
	CTL_ARG_DURATION, /* "duration": integer seconds or a string like "60s" */
};

struct control_arg {
	const char *name;
	enum control_arg_type type;
	bool required;
	int64_t min, max;	    /* CTL_ARG_INT */
	const char *const *choices; /* CTL_ARG_ENUM, NULL-terminated */
};

#define CONTROL_MAX_ARGS 8

/* Arguments after validation, one slot per control_arg of the command. */
struct control_args {
	bool set[CONTROL_MAX_ARGS];
	const char *str[CONTROL_MAX_ARGS]; /* STRING, PATH, ENUM (valid during the call) */
	int64_t num[CONTROL_MAX_ARGS];	   /* INT; DURATION in ms */
	bool flag[CONTROL_MAX_ARGS];	   /* BOOL */
};

/* What a disk-add request asks for; strings as validated by the table. */
struct control_disk_req {
	const char *path;
	int target;	    /* -1: the lowest free one */
	const char *format; /* "raw", "vhd", "auto" */
	const char *cache;  /* "writeback", "none" */
	const char *aio;    /* "auto", "io_uring", "libaio", "sync" */
	bool readonly;
};

/* A command whose op cannot answer at once: disk-add opens a file, which
 * may block (NFS, a lease being broken, a slow device); disk-remove waits for
 * the disk's requests in flight. The op takes the request over with
 * control_defer(call), returns 0 at once and answers later, from any thread,
 * with control_pending_done(). Meanwhile the control thread goes on serving
 * the other clients and ops->tick (the systemd watchdog); the same client's
 * later requests wait, so its replies stay in order. */
struct control_call;	/* the request an op is running for */
struct control_pending; /* a request whose reply comes later */

/* NULL when the request cannot wait (control_handle_line, no server) or out
 * of memory: the op then fails it as usual. */
struct control_pending *control_defer(struct control_call *call);
/* The reply: ret (consumed; NULL for {}) on success, or the error e. Not
 * after control_server_stop() was called for the server: drop instead. */
void control_pending_done(struct control_pending *p, struct json_object *ret,
			  const struct control_error *e);
/* Forget it without a reply (the worker is exiting). */
void control_pending_drop(struct control_pending *p);

/* The VM as the commands see it. Every call comes from the control thread.
 * Result members go into ret (an object); on failure return a negative errno
 * and fill e. */
struct control_ops {
	void (*query_status)(void *opaque, struct json_object *ret);
	int (*query_vm)(void *opaque, struct json_object *ret, struct control_error *e);
	int (*pause)(void *opaque, struct control_error *e);
	int (*resume)(void *opaque, struct control_error *e);
	int (*shutdown)(void *opaque, uint64_t timeout_ms, struct control_error *e);
	int (*stop)(void *opaque, struct control_error *e);
	int (*reset)(void *opaque, struct control_error *e);
	int (*stats)(void *opaque, struct json_object *ret, struct control_error *e);
	/* May defer (control_defer), and then answer through the pending. */
	int (*disk_add)(void *opaque, const struct control_disk_req *d, struct control_call *call,
			struct json_object *ret, struct control_error *e);
	int (*disk_remove)(void *opaque, unsigned target, struct control_call *call,
			   struct json_object *ret, struct control_error *e);
	int (*net_link)(void *opaque, const char *device, bool up, struct control_error *e);
	/* The medium of an IDE CD-ROM drive (id: "0".."3" or "ide0-0".."ide1-1"):
	 * change to path (opened read-only, format "auto", "raw" or "vhd"), or
	 * eject. NULL: the VM has none (unsupported). cdrom_change may defer
	 * (the medium is opened off the control thread). */
	int (*cdrom_change)(void *opaque, const char *id, const char *path, const char *format,
			    struct control_call *call, struct json_object *ret,
			    struct control_error *e);
	int (*cdrom_eject)(void *opaque, const char *id, bool force, struct json_object *ret,
			   struct control_error *e);
	/* Dirty-page logging of guest RAM; action "start", "fetch" or "stop". */
	int (*dirty_log)(void *opaque, const char *action, struct json_object *ret,
			 struct control_error *e);
	/* Save the VM's state to path (docs/state.md) on a thread of its own:
	 * progress and the outcome come as events; keep_running resumes the VM
	 * afterwards, else the worker exits 0 once it is saved. */
	int (*save)(void *opaque, const char *path, bool keep_running, struct json_object *ret,
		    struct control_error *e);
	/* Live migration to uri (tcp:, unix:; file:PATH is save PATH) on a
	 * thread of its own (docs/migration.md): progress and the outcome come
	 * as events; the worker exits 0 once the target runs the guest.
	 * max_downtime_ms 0: the default; bandwidth bytes/s, 0: no limit. */
	int (*migrate)(void *opaque, const char *uri, uint64_t max_downtime_ms, uint64_t bandwidth,
		       struct json_object *ret, struct control_error *e);
	int (*migrate_cancel)(void *opaque, struct control_error *e);
	/* Snapshot trees (docs/state.md): action "create", "apply", "delete" or
	 * "list"; name for all but list. May defer. */
	int (*snapshot)(void *opaque, const char *action, const char *name,
			struct control_call *call, struct json_object *ret,
			struct control_error *e);
	/* Keys pressed and released on the PS/2 keyboard, in order. */
	int (*send_key)(void *opaque, const struct i8042_key *keys, unsigned n,
			struct control_error *e);
	/* PS/2 mouse motion (dy down, wheel towards the user) and buttons. */
	int (*mouse_move)(void *opaque, int dx, int dy, int wheel, unsigned buttons,
			  struct control_error *e);
	/* Write the display's picture to path as a PNG; ret gets width, height. */
	int (*screendump)(void *opaque, const char *path, struct json_object *ret,
			  struct control_error *e);
	/* Called on every turn of the control thread's loop: timers (shutdown
	 * deadline, watchdog). Returns ms until it wants to be called again, or
	 * -1 for no deadline. May be NULL. */
	int64_t (*tick)(void *opaque);
};

struct control_command {
	const char *name;
	const struct control_arg *args; /* terminated by a NULL name */
	int (*run)(const struct control_ops *ops, void *opaque, const struct control_args *a,
		   struct control_call *call, struct json_object *ret, struct control_error *e);
};

/* The command table (what docs/control.md must list) and the event names and
 * error codes, each terminated by a NULL entry. */
extern const struct control_command control_commands[];
extern const char *const control_event_names[];
extern const char *const control_error_codes[];
const struct control_command *control_command_find(const char *name);
const char *control_arg_type_name(enum control_arg_type t);

/* Default socket directory: $XDG_RUNTIME_DIR/kestrel, /run/kestrel for root,
 * else /tmp/kestrel-UID. Written to buf; -ENAMETOOLONG if it does not fit. */
int control_socket_dir(char *buf, size_t len) WARN_UNUSED;
/* dir/NAME.sock, or name itself when it contains a '/'. */
int control_socket_path(const char *name, char *buf, size_t len) WARN_UNUSED;

/* Start the server on its own thread. path NULL: no socket (the thread still
 * runs ops->tick). A socket file with no listener is replaced; a live one is
 * -EADDRINUSE with "another VM named NAME is running". One line in err. */
int control_server_start(struct control_server **out, const char *path, const char *vm_name,
			 const struct control_ops *ops, void *opaque, char *err,
			 size_t errlen) WARN_UNUSED;
/* Queue an event for every client; data (may be NULL) is consumed. Any
 * thread; never blocks on a client. */
void control_event(struct control_server *s, const char *name, struct json_object *data);
/* Hand queued events to the clients, flush (at most flush_ms), close every
 * client, remove the socket file and join the thread. NULL is fine. */
void control_server_stop(struct control_server *s, unsigned flush_ms);
/* Wake the control thread so that it calls ops->tick soon. */
void control_server_kick(struct control_server *s);

/* Process one request line (without the newline) and return the reply line
 * (malloc'd, no newline). For tests: a command cannot defer here. */
char *control_handle_line(const struct control_ops *ops, void *opaque, const char *line,
			  size_t len);
/* The server's form: the request of client (a number the server gives each
 * connection) may defer; then the result is NULL, *deferred is true and the
 * reply comes through control_server_reply(). */
char *control_run_line(const struct control_ops *ops, void *opaque, const char *line, size_t len,
		       struct control_server *srv, uint64_t client, bool *deferred);
/* Queue a deferred reply line (consumed) for client: src/control/control_cmd.c. */
void control_server_reply(struct control_server *s, uint64_t client, char *line);
/* The reply to a line longer than CONTROL_LINE_MAX (malloc'd). */
char *control_error_line(const char *code, const char *message);

/* `kestrel ctl` and `kestrel list` (src/control/ctl.c). */
int ctl_main(int argc, char **argv);
int ctl_list_main(int argc, char **argv);

#endif
