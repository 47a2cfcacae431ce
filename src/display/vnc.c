/* The VNC server (--display vnc=[ADDR]:PORT[,password-file=FILE]): RFB 3.8
 * through libvncserver, on one thread of its own (sandbox kind "display").
 *
 * What runs when: the thread sleeps in poll() on the listening socket, its
 * clients' sockets, a wake-up eventfd and - while a client is connected - the
 * display's change notification (kestrel/display.h). It refreshes the
 * display only when that notification fires, when a client arrives, or when
 * the last refresh asked for a later one (the text cursor's blink, a
 * framebuffer the guest writes through its own mapping, which is polled);
 * it then copies the rectangles that changed into the clients' framebuffer
 * and lets libvncserver send them to whoever asked. With no client nothing
 * runs at all; with a client and a still screen, nothing runs but the
 * timers the display asks for.
 *
 * The server owns its listening socket and accepts connections itself, so
 * that a client's descriptor is checked against FD_SETSIZE (libvncserver
 * selects on them) and the number of clients is capped. A mode change
 * resizes the framebuffer (rfbNewFramebuffer; clients get a DesktopSize
 * update). Input is vnc_input.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kestrel/clock.h"
#include "kestrel/config.h"
#include "kestrel/devices.h"
#include "kestrel/sandbox.h"
#include "vnc_priv.h"

/* How long a client that stops reading or writing in the middle of a
 * message may hold the server's thread (libvncserver's own default: 20 s). */
#define VNC_CLIENT_WAIT_MS 5000
#define VNC_LISTEN_BACKLOG 4
#define VNC_PASSWORD_MAX   4096

static int64_t vnc_now_ms(void)
{
	return (int64_t)clock_mono_ms();
}

/* libvncserver's messages, as our debug lines. */
static void vnc_log(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	kdebug("vnc: %s", line);
}

static void vnc_wake(struct vnc *v)
{
	uint64_t one = 1;

	if (write(v->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		kdebug("vnc: wake: %s", strerror(errno));
}

static void vnc_drain(int fd)
{
	uint64_t n;

	while (read(fd, &n, sizeof(n)) > 0)
		;
}

/* ---- the picture ---- */

/* The display's 0x00RRGGBB in the server's pixel format, which libvncserver
 * chooses (and translates for each client). */
static void vnc_copy_rect(struct vnc *v, const struct display_surface *s,
			  const struct display_rect *r)
{
	const rfbPixelFormat *f = &v->screen->serverFormat;

	for (uint32_t y = r->y; y < r->y + r->h; y++) {
		const uint32_t *src = s->pixels + (size_t)y * s->stride + r->x;
		uint32_t *dst = v->fb + (size_t)y * v->fbw + r->x;

		for (uint32_t x = 0; x < r->w; x++) {
			uint32_t p = src[x];

			dst[x] = ((p >> 16) & 0xff) << f->redShift |
				 ((p >> 8) & 0xff) << f->greenShift | (p & 0xff) << f->blueShift;
		}
	}
}

/* A new size: a new framebuffer for every client. False if out of memory
 * (the old one stays). */
static bool vnc_resize(struct vnc *v, uint32_t w, uint32_t h)
{
	uint32_t *fb = calloc((size_t)w * h, sizeof(*fb));

	if (!fb)
		return false;
	rfbNewFramebuffer(v->screen, (char *)fb, (int)w, (int)h, 8, 3, 4);
	free(v->fb);
	v->fb = fb;
	v->fbw = w;
	v->fbh = h;
	return true;
}

static int64_t vnc_next_refresh(const struct display_status *st)
{
	int64_t ms = st->next_ms;

	if (st->poll_ms >= 0 && (ms < 0 || st->poll_ms < ms))
		ms = st->poll_ms;
	return ms < 0 ? -1 : vnc_now_ms() + ms;
}

/* Refresh the display and copy what changed since the picture fb holds.
 * Returns the number of rectangles in v->rects. Called with v->lock held. */
static unsigned vnc_refresh(struct vnc *v)
{
	struct display *d = v->display;
	struct display_status st;
	const struct display_surface *s;
	unsigned n;

	display_lock(d);
	display_refresh(d, &st);
	s = display_surface(d);
	if ((st.width != v->fbw || st.height != v->fbh) && vnc_resize(v, st.width, st.height))
		v->full = true;
	if (st.width != v->fbw || st.height != v->fbh) {
		n = 0; /* no memory for the new size: wait for the next try */
	} else if (v->full || st.resize_gen > v->gen) {
		v->rects[0] = (struct display_rect){ 0, 0, st.width, st.height };
		n = 1;
	} else {
		n = display_changes(d, v->gen, v->rects, VNC_MAX_RECTS);
	}
	for (unsigned i = 0; i < n; i++)
		vnc_copy_rect(v, s, &v->rects[i]);
	if (n || !v->full) {
		v->gen = st.gen;
		v->full = false;
	}
	v->refresh_at_ms = vnc_next_refresh(&st);
	display_unlock(d);
	return n;
}

/* Returns the number of rectangles marked for the clients. */
static unsigned vnc_update(struct vnc *v)
{
	unsigned n = 0;

	pthread_mutex_lock(&v->lock);
	if (v->display)
		n = vnc_refresh(v);
	else
		v->refresh_at_ms = -1;
	pthread_mutex_unlock(&v->lock);
	for (unsigned i = 0; i < n; i++) {
		const struct display_rect *r = &v->rects[i];

		rfbMarkRectAsModified(v->screen, (int)r->x, (int)r->y, (int)(r->x + r->w),
				      (int)(r->y + r->h));
	}
	return n;
}

/* A machine came or went: follow its display's notification (a dup of its
 * eventfd: ours to close, whenever the machine is destroyed). */
static void vnc_follow_display(struct vnc *v)
{
	pthread_mutex_lock(&v->lock);
	if (v->new_display || !v->display) {
		if (v->notify_fd >= 0)
			close(v->notify_fd);
		v->notify_fd = -1;
	}
	if (v->new_display && v->display) {
		v->notify_fd = fcntl(display_notify_fd(v->display), F_DUPFD_CLOEXEC, 0);
		v->full = true;
		v->want_update = true;
	}
	v->new_display = false;
	pthread_mutex_unlock(&v->lock);
}

/* ---- clients ---- */

static enum rfbNewClientAction vnc_new_client(rfbClientPtr cl)
{
	struct vnc *v = cl->screen->screenData;

	vnc_input_client(cl);
	v->want_update = true; /* the picture may be old: nothing refreshed it */
	return RFB_CLIENT_ACCEPT;
}

static void vnc_accept(struct vnc *v)
{
	int one = 1;
	int fd = accept4(v->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	/* libvncserver select()s on its clients: a descriptor past
	 * FD_SETSIZE would write outside its fd_set. */
	if (fd >= FD_SETSIZE || v->nclients >= VNC_MAX_CLIENTS) {
		kwarn("vnc: refusing a client (%s)",
		      fd >= FD_SETSIZE ? "too many open files" : "too many clients");
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	rfbNewClient(v->screen, fd);
}

static unsigned vnc_count_clients(struct vnc *v, struct pollfd *pfd, unsigned max)
{
	rfbClientIteratorPtr it = rfbGetClientIterator(v->screen);
	rfbClientPtr cl;
	unsigned n = 0;

	while ((cl = rfbClientIteratorNext(it)))
		if (cl->sock >= 0 && n < max)
			pfd[n++] = (struct pollfd){ .fd = cl->sock, .events = POLLIN };
	rfbReleaseClientIterator(it);
	v->nclients = n;
	return n;
}

/* ---- the thread ---- */

static bool vnc_stopping(struct vnc *v)
{
	bool stop;

	pthread_mutex_lock(&v->lock);
	stop = v->stop;
	pthread_mutex_unlock(&v->lock);
	return stop;
}

static int vnc_timeout(const struct vnc *v)
{
	int64_t left;

	if (!v->nclients)
		return -1;
	if (v->want_update)
		return 0;
	if (v->refresh_at_ms < 0)
		return -1;
	left = v->refresh_at_ms - vnc_now_ms();
	return left <= 0 ? 0 : (int)MIN(left, 60000);
}

/* One turn: wait, then take what came in order. */
static void vnc_turn(struct vnc *v)
{
	struct pollfd pfd[VNC_MAX_CLIENTS + 3];
	unsigned n = 0, nc;
	bool io;

	pfd[n++] = (struct pollfd){ .fd = v->wake_fd, .events = POLLIN };
	pfd[n++] = (struct pollfd){ .fd = v->listen_fd, .events = POLLIN };
	nc = vnc_count_clients(v, pfd + 3, VNC_MAX_CLIENTS);
	/* The notification matters only while someone looks. */
	pfd[n++] = (struct pollfd){ .fd = nc ? v->notify_fd : -1, .events = POLLIN };
	if (poll(pfd, n + nc, vnc_timeout(v)) < 0 && errno != EINTR)
		kdebug("vnc: poll: %s", strerror(errno));
	if (pfd[0].revents)
		vnc_drain(v->wake_fd);
	vnc_follow_display(v);
	io = pfd[1].revents != 0; /* a new client: its handshake is libvncserver's */
	if (io)
		vnc_accept(v);
	if (pfd[2].fd >= 0 && pfd[2].revents) {
		vnc_drain(v->notify_fd);
		v->want_update = true;
	}
	if (v->refresh_at_ms >= 0 && vnc_now_ms() >= v->refresh_at_ms)
		v->want_update = true;
	/* Client messages first (a new client's hook asks for an update).
	 * libvncserver has work only when a client sent something or the
	 * picture changed: a refresh that found nothing (the framebuffer's
	 * poll at a still screen) costs no select() of its own. */
	for (unsigned i = 0; i < nc; i++)
		io |= pfd[3 + i].revents != 0;
	if (io)
		rfbProcessEvents(v->screen, 0);
	if (v->want_update && v->screen->clientHead) {
		v->want_update = false;
		if (vnc_update(v) || io)
			rfbProcessEvents(v->screen, 0);
	}
	vnc_input_acks(v);
}

static void *vnc_thread(void *arg)
{
	struct vnc *v = arg;

	while (!vnc_stopping(v))
		vnc_turn(v);
	return NULL;
}

/* ---- setup ---- */

static int vnc_listen(struct vnc *v, const struct config_vnc *c, char *err, size_t errlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(c->port),
				  .sin_addr.s_addr = c->addr };
	char addr[INET_ADDRSTRLEN] = "?";
	int one = 1, fd;

	inet_ntop(AF_INET, &c->addr, addr, sizeof(addr));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, VNC_LISTEN_BACKLOG) < 0) {
		int e = errno;

		snprintf(err, errlen, "--display vnc=%s:%u: %s", addr, c->port, strerror(e));
		if (fd >= 0)
			close(fd);
		return -e;
	}
	v->listen_fd = fd;
	return 0;
}

/* libgcrypt (VNC authentication's DES, inside libvncserver) initialises
 * itself on first use - reading /proc and /etc, and complaining to syslog
 * that nobody initialised it - which the server's thread may not do once
 * sandboxed. Done here, before the seal. */
static void vnc_crypto_init(void)
{
	if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P))
		return;
	gcry_check_version(NULL);
	gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
	gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
}

/* The first line of the file; VNC authentication uses 8 characters of it.
 * The file was checked at validation, but may have been swapped since: a
 * FIFO or a device must neither block the start nor be read, so the open
 * does not wait and the descriptor itself must be a regular file. */
static int vnc_password(struct vnc *v, const char *path, char *err, size_t errlen)
{
	char buf[VNC_PASSWORD_MAX + 1];
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0) {
		int e = errno;

		snprintf(err, errlen, "--display: password-file=%s: %s", path, strerror(e));
		return -e;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(err, errlen, "--display: password-file=%s: not a regular file", path);
		return -EINVAL;
	}
	n = read(fd, buf, VNC_PASSWORD_MAX);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (!buf[0]) {
		snprintf(err, errlen, "--display: password-file=%s: the first line is empty", path);
		return -EINVAL;
	}
	if (strlen(buf) > 8)
		kwarn("--display: password-file=%s: VNC authentication uses only the first 8 "
		      "characters of the password",
		      path);
	v->passwords[0] = strdup(buf);
	memset(buf, 0, sizeof(buf));
	return v->passwords[0] ? 0 : -ENOMEM;
}

static int vnc_screen(struct vnc *v, char *err, size_t errlen)
{
	int argc = 1;
	char *argv[] = { (char *)"kestrel", NULL };
	rfbScreenInfoPtr s;

	rfbLog = vnc_log;
	rfbErr = vnc_log;
	v->fbw = DISPLAY_DEFAULT_WIDTH;
	v->fbh = DISPLAY_DEFAULT_HEIGHT;
	v->fb = calloc((size_t)v->fbw * v->fbh, sizeof(*v->fb));
	s = v->fb ? rfbGetScreen(&argc, argv, (int)v->fbw, (int)v->fbh, 8, 3, 4) : NULL;
	if (!s) {
		snprintf(err, errlen, "--display: out of memory for the VNC server");
		return -ENOMEM;
	}
	v->screen = s;
	s->screenData = v;
	s->frameBuffer = (char *)v->fb;
	s->desktopName = v->desktop_name;
	/* Our socket, our accept(): libvncserver listens on nothing itself
	 * (no IPv6 wildcard, no HTTP, no UDP). */
	s->port = 0;
	s->ipv6port = 0;
	s->listenSock = -1;
	s->listen6Sock = -1;
	s->socketState = RFB_SOCKET_READY;
	s->deferUpdateTime = 0;
	s->maxClientWait = VNC_CLIENT_WAIT_MS;
	s->alwaysShared = TRUE;
	s->cursor = NULL; /* the guest draws its own pointer */
	s->newClientHook = vnc_new_client;
	if (v->passwords[0]) {
		s->authPasswdData = v->passwords;
		s->passwordCheck = rfbCheckPasswordByList;
	}
	vnc_input_init(v);
	rfbInitServer(s);
	return 0;
}

static void vnc_free(struct vnc *v)
{
	if (v->screen)
		rfbScreenCleanup(v->screen);
	if (v->listen_fd >= 0)
		close(v->listen_fd);
	if (v->wake_fd >= 0)
		close(v->wake_fd);
	if (v->notify_fd >= 0)
		close(v->notify_fd);
	if (v->passwords[0]) {
		memset(v->passwords[0], 0, strlen(v->passwords[0]));
		free(v->passwords[0]);
	}
	free(v->fb);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

int vnc_create(struct vnc **out, const struct config_vnc *c, const char *name, char *err,
	       size_t errlen)
{
	struct vnc *v = calloc(1, sizeof(*v));
	int ret;

	*out = NULL;
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&v->lock, NULL);
	v->listen_fd = v->notify_fd = -1;
	v->refresh_at_ms = -1;
	snprintf(v->desktop_name, sizeof(v->desktop_name), "kestrel %s", name ? name : "");
	v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = v->wake_fd < 0 ? -errno : 0;
	if (ret)
		snprintf(err, errlen, "--display: eventfd: %s", strerror(-ret));
	ret = ret ?: vnc_listen(v, c, err, errlen);
	ret = ret ?: c->password_file ? vnc_password(v, c->password_file, err, errlen) : 0;
	ret = ret ?: vnc_lib_load(err, errlen);
	if (!ret)
		vnc_crypto_init();
	ret = ret ?: vnc_screen(v, err, errlen);
	if (!ret) {
		ret = sandbox_thread_start(&v->thread, SANDBOX_DISPLAY, "vnc", vnc_thread, v);
		if (ret)
			snprintf(err, errlen, "--display: starting the VNC thread: %s",
				 strerror(-ret));
	}
	if (ret) {
		vnc_free(v);
		return ret;
	}
	v->thread_started = true;
	*out = v;
	return 0;
}

int vnc_port(const struct vnc *v)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	if (getsockname(v->listen_fd, (struct sockaddr *)&sa, &len) < 0)
		return -errno;
	return ntohs(sa.sin_port);
}

void vnc_attach(struct vnc *v, struct display *d, struct device *i8042)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->lock);
	v->display = d;
	v->kbc = i8042;
	v->new_display = true;
	pthread_mutex_unlock(&v->lock);
	vnc_wake(v);
}

void vnc_detach(struct vnc *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->lock);
	v->display = NULL;
	v->kbc = NULL;
	v->new_display = true;
	pthread_mutex_unlock(&v->lock);
	vnc_wake(v);
}

void vnc_destroy(struct vnc *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->lock);
	v->stop = true;
	pthread_mutex_unlock(&v->lock);
	vnc_wake(v);
	if (v->thread_started)
		pthread_join(v->thread, NULL);
	vnc_free(v);
}
