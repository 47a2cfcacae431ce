/* The control socket server: one thread, one epoll set, many clients.
 *
 * The worker's VM must never wait for a client, so every client socket is
 * non-blocking: requests are read as they come and cut into lines (at most
 * CONTROL_LINE_MAX bytes; longer ones get an error and are skipped), replies
 * and events are queued per client and written when the socket takes them. A
 * client that lets more than CONTROL_OUT_MAX bytes pile up, or that goes away,
 * is dropped. Events may be raised by any thread: they go through a short
 * locked queue and an eventfd, never touching a client socket themselves.
 * Commands run on this thread (src/control/control_cmd.c), never on a vCPU thread.
 * A command that may take long (disk-add opens a file) answers later
 * (control_defer): its reply comes through the same queue as the events,
 * addressed to its client, whose further requests wait meanwhile so that
 * its replies stay in order; the other clients are served as usual. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kestrel/clock.h"
#include "kestrel/control.h"
#include "kestrel/sandbox.h"

#define CTL_READ_CHUNK 16384
#define CTL_BACKLOG    16

struct ctl_client {
	int fd;
	uint64_t serial; /* names the client to a deferred reply */
	bool waiting;	 /* a deferred reply is due: later lines wait */
	char *in;	 /* CONTROL_LINE_MAX bytes */
	size_t in_len;
	bool discarding; /* inside a line that was too long */
	bool eof;	 /* the client shut down its side: reply, then close */
	bool dead;
	uint32_t events; /* what epoll watches for this client */
	char *out;
	size_t out_off, out_len, out_cap;
	struct ctl_client *next;
};

struct ctl_event {
	struct ctl_event *next;
	uint64_t to; /* 0: an event for every client; else a reply */
	size_t len;
	char line[]; /* with its newline */
};

struct control_server {
	int listen_fd, ep_fd, wake_fd;
	char *path;
	dev_t sock_dev;
	ino_t sock_ino;
	const struct control_ops *ops;
	void *opaque;
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t lock; /* the event queue and the stop request */
	struct ctl_event *ev_head, *ev_tail;
	unsigned ev_count;
	uint64_t ev_seq;
	bool ev_overflow_logged;
	bool stop;
	unsigned flush_ms;

	struct ctl_client *clients; /* control thread only */
	unsigned nclients;
	uint64_t next_serial;
};

/* ---- socket paths ------------------------------------------------------ */

int control_socket_dir(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	const char *rt = getenv("RUNTIME_DIRECTORY");

	/* Root always uses /run/kestrel, so that a root shell (with its own
	 * XDG_RUNTIME_DIR) finds the VMs systemd started. A service run as
	 * another user (kestrel@.service: User=, RuntimeDirectory=kestrel) gets
	 * the same place from systemd's RUNTIME_DIRECTORY (its first entry). */
	if (geteuid() == 0)
		n = snprintf(buf, len, "/run/kestrel");
	else if (rt && rt[0] == '/')
		n = snprintf(buf, len, "%.*s", (int)strcspn(rt, ":"), rt);
	else if (xdg && xdg[0] == '/')
		n = snprintf(buf, len, "%s/kestrel", xdg);
	else
		n = snprintf(buf, len, "/tmp/kestrel-%u", (unsigned)geteuid());
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int control_socket_path(const char *name, char *buf, size_t len)
{
	char dir[PATH_MAX];
	int n;

	if (strchr(name, '/')) {
		n = snprintf(buf, len, "%s", name);
	} else {
		if (control_socket_dir(dir, sizeof(dir)))
			return -ENAMETOOLONG;
		n = snprintf(buf, len, "%s/%s.sock", dir, name);
	}
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Is something listening at path? 1 yes, 0 no (stale or gone), -errno. */
static int ctl_probe(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), ret = 0;

	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN ||
	    errno == EINPROGRESS)
		ret = 1; /* EAGAIN: a full backlog is still a listener */
	else if (errno != ECONNREFUSED && errno != ENOENT)
		ret = -errno;
	close(fd);
	return ret;
}

static int ctl_bind(int fd, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int ret;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	/* The socket file is born 0600: nobody else may drive the VM. This runs
	 * before the worker starts other threads, so the umask dance is safe. */
	old = umask(0177);
	ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	umask(old);
	return ret;
}

/* Bind path, replacing a stale socket (no listener) but never a live one or a
 * file that is not a socket. */
static int ctl_listen(struct control_server *s, const char *path, const char *vm_name, char *err,
		      size_t errlen)
{
	struct sockaddr_un sa;
	struct stat st;
	int ret;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen,
			 "--control: %s: path too long for a socket (at most %zu bytes)", path,
			 sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0)
		goto fail_errno;
	ret = ctl_bind(s->listen_fd, path);
	for (int tries = 0; ret == -EADDRINUSE && tries < 3; tries++) {
		if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "--control: %s exists and is not a socket", path);
			return -EEXIST;
		}
		ret = ctl_probe(path);
		if (ret == 1) {
			snprintf(err, errlen, "another VM named %s is running (control socket %s)",
				 vm_name, path);
			return -EADDRINUSE;
		}
		if (ret < 0)
			break;
		kdebug("control: replacing the stale socket %s", path);
		if (unlink(path) < 0 && errno != ENOENT)
			goto fail_errno;
		ret = ctl_bind(s->listen_fd, path);
	}
	if (ret) {
		errno = -ret;
		goto fail_errno;
	}
	if (chmod(path, 0600) < 0 || listen(s->listen_fd, CTL_BACKLOG) < 0 || stat(path, &st) < 0)
		goto fail_errno;
	s->sock_dev = st.st_dev;
	s->sock_ino = st.st_ino;
	s->path = strdup(path);
	return s->path ? 0 : -ENOMEM;
fail_errno:
	ret = -errno;
	snprintf(err, errlen, "--control: %s: %s", path, strerror(errno));
	return ret;
}

/* Remove the socket file only if it is still ours: a second worker may have
 * replaced it after deciding ours was stale. */
static void ctl_unlink(struct control_server *s)
{
	struct stat st;

	if (s->path && stat(s->path, &st) == 0 && st.st_dev == s->sock_dev &&
	    st.st_ino == s->sock_ino)
		unlink(s->path);
}

/* ---- clients ----------------------------------------------------------- */

static void client_kill(struct control_server *s, struct ctl_client *c, const char *why)
{
	if (c->dead)
		return;
	kdebug("control: dropping client fd %d: %s", c->fd, why);
	epoll_ctl(s->ep_fd, EPOLL_CTL_DEL, c->fd, NULL);
	c->dead = true;
}

/* Watch for input until the client's EOF, for writability while output waits. */
static void client_arm(struct control_server *s, struct ctl_client *c)
{
	struct epoll_event ev = { .data.ptr = c };

	ev.events = (c->eof || c->waiting ? 0 : EPOLLIN) | (c->out_len > c->out_off ? EPOLLOUT : 0);
	if (c->dead || ev.events == c->events)
		return;
	if (epoll_ctl(s->ep_fd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = ev.events;
}

static void client_flush(struct control_server *s, struct ctl_client *c)
{
	while (!c->dead && c->out_len > c->out_off) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			client_kill(s, c, "write failed");
			return;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->eof && c->out_len == 0 && !c->waiting)
		client_kill(s, c, "done");
	client_arm(s, c);
}

/* Queue one line (a newline is added). Over the cap the client is dropped:
 * it is not reading, and the worker will not buffer without bound for it. */
static void client_queue(struct control_server *s, struct ctl_client *c, const char *line,
			 size_t len)
{
	size_t need;

	if (c->dead)
		return;
	if (c->out_off && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	need = c->out_len - c->out_off + len + 1;
	if (need > CONTROL_OUT_MAX) {
		client_kill(s, c, "too much unread output");
		return;
	}
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	if (c->out_len + len + 1 > c->out_cap) {
		size_t cap = MAX(c->out_cap * 2, c->out_len + len + 1);
		char *n = realloc(c->out, MIN(MAX(cap, (size_t)4096), (size_t)CONTROL_OUT_MAX));

		if (!n) {
			client_kill(s, c, "out of memory");
			return;
		}
		c->out = n;
		c->out_cap = MIN(MAX(cap, (size_t)4096), (size_t)CONTROL_OUT_MAX);
	}
	memcpy(c->out + c->out_len, line, len);
	c->out[c->out_len + len] = '\n';
	c->out_len += len + 1;
}

static void client_reply(struct control_server *s, struct ctl_client *c, char *reply)
{
	if (!reply) {
		client_kill(s, c, "out of memory");
		return;
	}
	client_queue(s, c, reply, strlen(reply));
	free(reply);
}

static bool line_blank(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return false;
	return true;
}

static void client_line(struct control_server *s, struct ctl_client *c, const char *p, size_t len)
{
	char *reply;

	if (len && p[len - 1] == '\r')
		len--;
	if (line_blank(p, len))
		return;
	reply = control_run_line(s->ops, s->opaque, p, len, s, c->serial, &c->waiting);
	if (c->waiting) {
		client_arm(s, c); /* no reading until the reply is out */
		return;
	}
	client_reply(s, c, reply);
}

/* Cut the input buffer into lines; keep an unfinished one for later. */
static void client_lines(struct control_server *s, struct ctl_client *c)
{
	size_t start = 0;
	char *nl;

	while (!c->dead && !c->waiting && (nl = memchr(c->in + start, '\n', c->in_len - start))) {
		size_t len = (size_t)(nl - (c->in + start));

		if (c->discarding)
			c->discarding = false; /* the end of the over-long line */
		else
			client_line(s, c, c->in + start, len);
		start += len + 1;
	}
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	if (c->in_len == CONTROL_LINE_MAX && !c->waiting) {
		if (!c->discarding)
			client_reply(s, c,
				     control_error_line(CTL_E_TOO_LONG,
							"request line too long "
							"(at most 65535 bytes and a newline); "
							"skipped"));
		c->discarding = true;
		c->in_len = 0;
	}
}

static void client_read(struct control_server *s, struct ctl_client *c)
{
	size_t room = CONTROL_LINE_MAX - c->in_len;
	ssize_t n;

	/* One read per wake-up keeps a chatty client from starving the others;
	 * epoll is level-triggered and comes back for the rest. */
	n = recv(c->fd, c->in + c->in_len, MIN(room, (size_t)CTL_READ_CHUNK), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n < 0) {
		client_kill(s, c, "read failed");
		return;
	}
	if (n == 0) {
		/* Half-close: answer what came, including a last line without its
		 * newline, then close once the replies are out. */
		if (c->in_len && !c->discarding)
			client_line(s, c, c->in, c->in_len);
		c->in_len = 0;
		c->eof = true;
		client_flush(s, c);
		return;
	}
	c->in_len += (size_t)n;
	client_lines(s, c);
}

static void server_accept(struct control_server *s)
{
	for (;;) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct ctl_client *c;
		struct epoll_event ev;

		if (fd < 0)
			return; /* EAGAIN, or a client that gave up: nothing to do */
		if (s->nclients >= CONTROL_MAX_CLIENTS) {
			char *msg = control_error_line(CTL_E_TOO_MANY, "too many control clients");

			if (msg && send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
				(void)!send(fd, "\n", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			free(msg);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c)
			c->in = malloc(CONTROL_LINE_MAX);
		ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = c };
		if (!c || !c->in || epoll_ctl(s->ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			if (c)
				free(c->in);
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->serial = ++s->next_serial;
		c->events = EPOLLIN;
		c->next = s->clients;
		s->clients = c;
		s->nclients++;
	}
}

static void clients_reap(struct control_server *s)
{
	struct ctl_client **pp = &s->clients;

	while (*pp) {
		struct ctl_client *c = *pp;

		if (!c->dead) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		close(c->fd);
		free(c->in);
		free(c->out);
		free(c);
		s->nclients--;
	}
}

/* ---- events ------------------------------------------------------------ */

static uint64_t wall_us(void)
{
	return clock_ns(CLOCK_REALTIME) / 1000;
}

static void server_wake(struct control_server *s)
{
	uint64_t one = 1;

	if (write(s->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		kwarn("control: waking the control thread: %s", strerror(errno));
}

void control_server_kick(struct control_server *s)
{
	if (s)
		server_wake(s);
}

/* Append one line to the queue (s->lock held); to: 0 for every client. */
static struct ctl_event *queue_line(struct control_server *s, uint64_t to, const char *text)
{
	size_t len = text ? strlen(text) : 0;
	struct ctl_event *item = len ? malloc(sizeof(*item) + len + 1) : NULL;

	if (!item)
		return NULL;
	memcpy(item->line, text, len);
	item->line[len] = '\n';
	item->len = len + 1;
	item->to = to;
	item->next = NULL;
	if (s->ev_tail)
		s->ev_tail->next = item;
	else
		s->ev_head = item;
	s->ev_tail = item;
	s->ev_count++;
	return item;
}

void control_event(struct control_server *s, const char *name, json_object *data)
{
	struct ctl_event *item = NULL;
	json_object *ev;

	if (!s) {
		json_object_put(data);
		return;
	}
	ev = json_object_new_object();
	json_object_object_add(ev, "event", json_object_new_string(name));
	json_object_object_add(ev, "data", data ? data : json_object_new_object());
	json_object_object_add(ev, "timestamp", json_object_new_int64((int64_t)wall_us()));
	pthread_mutex_lock(&s->lock);
	/* seq is taken under the lock that orders the queue: the numbers the
	 * clients see are the order the events happened in. */
	json_object_object_add(ev, "seq", json_object_new_int64((int64_t)++s->ev_seq));
	if (s->ev_count < CONTROL_EVENT_QUEUE_MAX)
		item = queue_line(
			s, 0,
			json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN |
								   JSON_C_TO_STRING_NOSLASHESCAPE));
	if (!item && !s->ev_overflow_logged) {
		s->ev_overflow_logged = true;
		kwarn("control: event queue full; dropping events");
	}
	pthread_mutex_unlock(&s->lock);
	json_object_put(ev);
	if (item)
		server_wake(s);
}

/* A deferred reply (src/control/control_cmd.c): through the event queue, so that it
 * comes before the events its command raises after it. Never dropped for a
 * full queue: there is at most one per waiting client. */
void control_server_reply(struct control_server *s, uint64_t client, char *line)
{
	struct ctl_event *item;

	pthread_mutex_lock(&s->lock);
	item = queue_line(s, client, line);
	pthread_mutex_unlock(&s->lock);
	if (!item)
		kwarn("control: out of memory queueing a reply; client %llu gets none",
		      (unsigned long long)client);
	free(line);
	server_wake(s);
}

/* The deferred reply a waiting client was owed: out it goes, and the
 * requests that came after it are served now. A client that went away gets
 * nothing. */
static void reply_deliver(struct control_server *s, const struct ctl_event *r)
{
	for (struct ctl_client *c = s->clients; c; c = c->next) {
		if (c->serial != r->to || c->dead)
			continue;
		client_queue(s, c, r->line, r->len - 1);
		c->waiting = false;
		client_lines(s, c);
		client_arm(s, c);
		return;
	}
}

static void events_deliver(struct control_server *s)
{
	struct ctl_event *list, *next;

	pthread_mutex_lock(&s->lock);
	list = s->ev_head;
	s->ev_head = s->ev_tail = NULL;
	s->ev_count = 0;
	pthread_mutex_unlock(&s->lock);
	for (; list; list = next) {
		next = list->next;
		if (list->to)
			reply_deliver(s, list);
		for (struct ctl_client *c = s->clients; c && !list->to; c = c->next)
			client_queue(s, c, list->line, list->len - 1);
		free(list);
	}
}

/* ---- the thread -------------------------------------------------------- */

static int server_timeout(struct control_server *s)
{
	int64_t ms = s->ops->tick ? s->ops->tick(s->opaque) : -1;

	return ms < 0 ? -1 : (int)MIN(ms, (int64_t)INT_MAX);
}

static void server_dispatch(struct control_server *s, struct epoll_event *ev)
{
	struct ctl_client *c = ev->data.ptr;

	if (ev->data.ptr == &s->listen_fd) {
		server_accept(s);
		return;
	}
	if (ev->data.ptr == &s->wake_fd) {
		uint64_t v;

		(void)!read(s->wake_fd, &v, sizeof(v));
		return;
	}
	if (c->dead)
		return;
	if (c->waiting && (ev->events & (EPOLLHUP | EPOLLERR))) {
		/* Gone for good: nobody will read the reply it waits for. */
		client_kill(s, c, "hung up while a reply was due");
		return;
	}
	if (!c->waiting && (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		client_read(s, c);
	if (!c->dead && (ev->events & EPOLLOUT))
		client_flush(s, c);
}

/* Write out what is queued, for at most flush_ms, then close everything. */
static void server_drain(struct control_server *s)
{
	struct epoll_event evs[16];
	uint64_t t0;

	/* From here on only the clients' writability matters. */
	if (s->listen_fd >= 0)
		epoll_ctl(s->ep_fd, EPOLL_CTL_DEL, s->listen_fd, NULL);
	epoll_ctl(s->ep_fd, EPOLL_CTL_DEL, s->wake_fd, NULL);
	events_deliver(s);
	for (struct ctl_client *c = s->clients; c; c = c->next)
		c->eof = true; /* no more requests: close once written out */
	t0 = clock_mono_ms();
	for (;;) {
		bool pending = false;
		uint64_t spent;

		for (struct ctl_client *c = s->clients; c; c = c->next) {
			client_flush(s, c);
			pending |= !c->dead && c->out_len > c->out_off;
		}
		spent = clock_mono_ms() - t0;
		if (!pending || spent >= s->flush_ms)
			break;
		if (epoll_wait(s->ep_fd, evs, 16, (int)(s->flush_ms - spent)) < 0 && errno != EINTR)
			break;
	}
	for (struct ctl_client *c = s->clients; c; c = c->next)
		c->dead = true;
	clients_reap(s);
}

static void *server_thread(void *arg)
{
	struct control_server *s = arg;
	struct epoll_event evs[32];

	/* Host signals belong to the console thread, kicks to vCPU threads:
	 * sandbox_thread_start blocked them. */
	for (;;) {
		bool stop;
		int n = epoll_wait(s->ep_fd, evs, 32, server_timeout(s));

		for (int i = 0; i < n; i++)
			server_dispatch(s, &evs[i]);
		events_deliver(s);
		for (struct ctl_client *c = s->clients; c; c = c->next)
			if (!c->dead && c->out_len > c->out_off)
				client_flush(s, c);
		clients_reap(s);
		pthread_mutex_lock(&s->lock);
		stop = s->stop;
		pthread_mutex_unlock(&s->lock);
		if (stop)
			break;
		if (n < 0 && errno != EINTR) {
			kerr("control: epoll_wait: %s; the control socket stops answering",
			     strerror(errno));
			break;
		}
	}
	server_drain(s);
	return NULL;
}

static void server_free(struct control_server *s)
{
	struct ctl_event *e, *next;

	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		ctl_unlink(s);
	}
	if (s->ep_fd >= 0)
		close(s->ep_fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	for (e = s->ev_head; e; e = next) {
		next = e->next;
		free(e);
	}
	pthread_mutex_destroy(&s->lock);
	free(s->path);
	free(s);
}

static int server_setup(struct control_server *s, const char *path, const char *vm_name, char *err,
			size_t errlen)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int ret;

	s->ep_fd = epoll_create1(EPOLL_CLOEXEC);
	s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->ep_fd < 0 || s->wake_fd < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return -errno;
	}
	ev.data.ptr = &s->wake_fd;
	if (epoll_ctl(s->ep_fd, EPOLL_CTL_ADD, s->wake_fd, &ev) < 0)
		goto fail;
	if (!path)
		return 0;
	ret = ctl_listen(s, path, vm_name, err, errlen);
	if (ret)
		return ret;
	ev.data.ptr = &s->listen_fd;
	if (epoll_ctl(s->ep_fd, EPOLL_CTL_ADD, s->listen_fd, &ev) < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "control socket: epoll: %s", strerror(errno));
	return -errno;
}

int control_server_start(struct control_server **out, const char *path, const char *vm_name,
			 const struct control_ops *ops, void *opaque, char *err, size_t errlen)
{
	struct control_server *s = calloc(1, sizeof(*s));
	int ret;

	*out = NULL;
	if (!s) {
		snprintf(err, errlen, "control socket: out of memory");
		return -ENOMEM;
	}
	s->listen_fd = s->ep_fd = s->wake_fd = -1;
	s->ops = ops;
	s->opaque = opaque;
	pthread_mutex_init(&s->lock, NULL);
	ret = server_setup(s, path, vm_name, err, errlen);
	if (ret == 0) {
		ret = sandbox_thread_start(&s->thread, SANDBOX_CONTROL, "control", server_thread,
					   s);
		if (ret)
			snprintf(err, errlen, "control socket: thread: %s", strerror(-ret));
	}
	if (ret) {
		server_free(s);
		return ret;
	}
	s->thread_started = true;
	if (path)
		kdebug("control: listening on %s", path);
	*out = s;
	return 0;
}

void control_server_stop(struct control_server *s, unsigned flush_ms)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	s->flush_ms = flush_ms;
	pthread_mutex_unlock(&s->lock);
	server_wake(s);
	if (s->thread_started)
		pthread_join(s->thread, NULL);
	server_free(s);
}
