/* The VNC server (src/display/vnc.c) against libvncclient in this process:
 * a display with a fake source draws known pictures and an i8042 takes the
 * input. The client must receive the picture pixel for pixel, the changes,
 * a resize; its keys (keysyms and QEMU's XT codes) and pointer must come out
 * of the i8042 as scancodes and mouse packets; a password is enforced; with
 * a still screen the server does not refresh the display at all. */
#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rfb/rfbclient.h>

#include "kestrel/config.h"
#include "kestrel/devices.h"
#include "kestrel/display.h"
#include "kestrel/vnc.h"
#include "fake_board.h"
#include "vnc_hostile.h"
#include "vnc_wait.h"

/* ---- a display source drawing a pattern ---- */

struct source {
	uint32_t w, h;
	uint32_t seed;			  /* the pattern */
	uint32_t box_x, box_y, box_color; /* a 20x10 box over it, when box_color */
	bool redraw;			  /* everything next refresh */
	bool box_moved;
};

static uint32_t pattern(const struct source *s, uint32_t x, uint32_t y)
{
	if (s->box_color && x >= s->box_x && x < s->box_x + 20 && y >= s->box_y &&
	    y < s->box_y + 10)
		return s->box_color;
	return ((x * 7 + s->seed) & 0xff) << 16 | ((y * 3) & 0xff) << 8 | ((x ^ y) & 0xff);
}

static void src_refresh(void *opaque, struct display *d, struct display_hint *hint)
{
	struct source *s = opaque;
	const struct display_surface *su;

	(void)hint;
	ck_assert_int_eq(display_resize(d, s->w, s->h), 0);
	su = display_surface(d);
	if (!s->redraw && !s->box_moved)
		return;
	for (uint32_t y = 0; y < s->h; y++)
		for (uint32_t x = 0; x < s->w; x++)
			su->pixels[y * su->stride + x] = pattern(s, x, y);
	if (s->redraw)
		display_damage(d, 0, 0, s->w, s->h);
	else
		display_damage(d, s->box_x, s->box_y, 20, 10);
	s->redraw = s->box_moved = false;
}

static const struct display_source_ops src_ops = { .refresh = src_refresh };

/* ---- the fixture: a display, an i8042, a server ---- */

static struct source src;
static struct display *disp;
static struct device *kbc;
static struct vnc *server;
static int port;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void start_server(const char *password_file)
{
	struct config_vnc c = { .addr = htonl(INADDR_LOOPBACK),
				.port = 0,
				.password_file = (char *)password_file };
	char err[256] = "";

	ck_assert_msg(vnc_create(&server, &c, "test", err, sizeof(err)) == 0, "%s", err);
	port = vnc_port(server);
	ck_assert_int_gt(port, 0);
	vnc_attach(server, disp, kbc);
}

static void setup(void)
{
	src = (struct source){ .w = 320, .h = 200, .seed = 1, .redraw = true };
	disp = display_create();
	ck_assert_ptr_nonnull(disp);
	display_set_source(disp, &src_ops, &src);
	kbc = i8042_create(NULL, NULL, NULL);
	server = NULL;
}

static void teardown(void)
{
	vnc_detach(server);
	vnc_destroy(server);
	kbc->ops->destroy(kbc);
	display_destroy(disp);
}

/* ---- the client ---- */

struct client_state {
	long updates;
	int resizes;
};

static struct client_state cs;
static char *client_password;

static rfbBool c_resize(rfbClient *c)
{
	free(c->frameBuffer);
	c->frameBuffer = calloc((size_t)c->width * c->height, 4);
	cs.resizes++;
	return c->frameBuffer != NULL;
}

static void c_update(rfbClient *c, int x, int y, int w, int h)
{
	(void)c, (void)x, (void)y, (void)w, (void)h;
	cs.updates++;
}

static char *c_password(rfbClient *c)
{
	(void)c;
	return strdup(client_password ? client_password : "");
}

static void c_quiet(const char *fmt, ...)
{
	(void)fmt;
}

static rfbClient *client_connect(void)
{
	rfbClient *c = rfbGetClient(8, 3, 4);

	rfbClientLog = rfbClientErr = c_quiet;
	memset(&cs, 0, sizeof(cs));
	c->MallocFrameBuffer = c_resize;
	c->GotFrameBufferUpdate = c_update;
	c->GetPassword = c_password;
	c->appData.encodingsString = "zrle hextile raw";
	c->appData.enableJPEG = FALSE;
	c->serverHost = strdup("127.0.0.1");
	c->serverPort = port;
	return rfbInitClient(c, NULL, NULL) ? c : NULL;
}

static void client_close(rfbClient *c)
{
	free(c->frameBuffer);
	rfbClientCleanup(c);
}

/* Handle messages until cond() holds or 10 s pass (a generous bound: the
 * test fails only when the thing never happens). */
static bool pump_until(rfbClient *c, bool (*cond)(rfbClient *c))
{
	double end = now_ms() + 10000;

	while (!cond(c) && now_ms() < end) {
		int n = vnc_wait_message(c, 20000);

		ck_assert_int_ge(n, 0);
		if (n > 0)
			ck_assert(HandleRFBServerMessage(c));
	}
	return cond(c);
}

static void pump_for(rfbClient *c, double ms)
{
	double end = now_ms() + ms;

	while (now_ms() < end) {
		int n = vnc_wait_message(c, 20000);

		if (n > 0)
			ck_assert(HandleRFBServerMessage(c));
	}
}

static bool matches_source(rfbClient *c)
{
	const rfbPixelFormat *f = &c->format;

	if ((uint32_t)c->width != src.w || (uint32_t)c->height != src.h)
		return false;
	for (uint32_t y = 0; y < src.h; y++)
		for (uint32_t x = 0; x < src.w; x++) {
			uint32_t p = ((uint32_t *)c->frameBuffer)[y * src.w + x];
			uint32_t rgb = ((p >> f->redShift) & 0xff) << 16 |
				       ((p >> f->greenShift) & 0xff) << 8 |
				       ((p >> f->blueShift) & 0xff);

			if (rgb != pattern(&src, x, y))
				return false;
		}
	return true;
}

/* ---- the i8042's side ---- */

static int kbc_read(uint8_t *out, int max, bool *aux)
{
	int n = 0;

	while (n < max && (kbc->ops->read(kbc, 1, 0, 1) & 0x01)) {
		if (aux)
			aux[n] = kbc->ops->read(kbc, 1, 0, 1) & 0x20;
		out[n++] = (uint8_t)kbc->ops->read(kbc, 0, 0, 1);
	}
	return n;
}

/* Collect i8042 bytes while pumping the client, until want of them came. */
static int kbc_collect(rfbClient *c, uint8_t *out, int want, bool *aux)
{
	double end = now_ms() + 10000;
	int n = 0;

	while (n < want && now_ms() < end) {
		n += kbc_read(out + n, want - n, aux ? aux + n : NULL);
		pump_for(c, 5);
	}
	return n;
}

/* ---- cases ---- */

START_TEST(test_frame_changes_and_resize)
{
	rfbClient *c;
	long before;
	uint64_t refreshes;

	start_server(NULL);
	c = client_connect();
	ck_assert_ptr_nonnull(c);
	ck_assert_msg(pump_until(c, matches_source), "the first frame is not the picture");
	ck_assert_str_eq(c->desktopName, "kestrel test");

	/* A still screen: no refresh, no update. */
	pump_for(c, 300);
	refreshes = display_refresh_count(disp);
	before = cs.updates;
	pump_for(c, 500);
	ck_assert_uint_eq(display_refresh_count(disp), refreshes);
	ck_assert_int_eq(cs.updates, before);

	/* A change, notified: only it is sent. (The server's thread draws
	 * src under the display's lock.) */
	display_lock(disp);
	src.box_x = 100, src.box_y = 50, src.box_color = 0x12ab34;
	src.box_moved = true;
	display_unlock(disp);
	display_changed(disp);
	ck_assert_msg(pump_until(c, matches_source), "the box never arrived");
	ck_assert_uint_gt(display_refresh_count(disp), refreshes);

	/* A mode change: a DesktopSize update, then the whole new picture. */
	display_lock(disp);
	src.w = 640, src.h = 400, src.seed = 9, src.redraw = true;
	display_unlock(disp);
	display_changed(disp);
	ck_assert_msg(pump_until(c, matches_source), "the resized picture never arrived");
	ck_assert_int_ge(cs.resizes, 2);
	client_close(c);
}
END_TEST

static uint8_t kbytes[64];

/* The server acknowledges the extension after the first update. */
static bool knows_qemu_keys(rfbClient *c)
{
	return SupportsClient2Server(c, rfbQemuEvent);
}

START_TEST(test_keys)
{
	static const uint8_t want[] = {
		0x2a, 0x1e, 0xaa, 0x9e, /* 'A': Shift around a's press */
		0x1e, 0x9e,		/* 'a' */
		0x2a, 0x02, 0xaa, 0x82, /* '!': Shift around 1's press */
		0xe0, 0x1d, 0xe0, 0x9d, /* XT 0x9d: right Ctrl */
		0x1c, 0x9c,		/* Return */
	};
	rfbClient *c;
	int n;

	start_server(NULL);
	c = client_connect();
	ck_assert_ptr_nonnull(c);
	ck_assert(pump_until(c, matches_source));
	ck_assert(SendKeyEvent(c, 'A', TRUE) && SendKeyEvent(c, 'A', FALSE));
	ck_assert(SendKeyEvent(c, 'a', TRUE) && SendKeyEvent(c, 'a', FALSE));
	ck_assert(SendKeyEvent(c, '!', TRUE) && SendKeyEvent(c, '!', FALSE));
	ck_assert_msg(pump_until(c, knows_qemu_keys), "no QEMU extended key event");
	ck_assert(SendExtendedKeyEvent(c, 0, 0x9d, TRUE) &&
		  SendExtendedKeyEvent(c, 0, 0x9d, FALSE));
	ck_assert(SendKeyEvent(c, 0xff0d, TRUE) && SendKeyEvent(c, 0xff0d, FALSE));
	n = kbc_collect(c, kbytes, sizeof(want), NULL);
	ck_assert_int_eq(n, (int)sizeof(want));
	ck_assert_mem_eq(kbytes, want, sizeof(want));
	/* The client's own Shift: the key comes without a second one. */
	ck_assert(SendKeyEvent(c, 0xffe1, TRUE) && SendKeyEvent(c, 'B', TRUE));
	ck_assert(SendKeyEvent(c, 'B', FALSE) && SendKeyEvent(c, 0xffe1, FALSE));
	n = kbc_collect(c, kbytes, 4, NULL);
	ck_assert_int_eq(n, 4);
	ck_assert(kbytes[0] == 0x2a && kbytes[1] == 0x30 && kbytes[2] == 0xb0 && kbytes[3] == 0xaa);
	client_close(c);
}
END_TEST

/* A client that reads late: whatever the server sent meanwhile - the end of
 * the first frame and the extension's ack - arrives in one read, and
 * libvncclient keeps what it read ahead in its own buffer, where select()
 * does not see it (WaitForMessage). The rig's slow nested guest made
 * linux-vnc's client such a reader: it waited 60 s for an ack it held. */
START_TEST(test_ack_read_ahead)
{
	double end = now_ms() + 10000;
	rfbClient *c;

	/* A frame that compresses to less than the client's 8 KiB buffer
	 * (fbcon's black screen took 527 bytes of ZRLE). */
	src.w = src.h = 16;
	start_server(NULL);
	c = client_connect();
	ck_assert_ptr_nonnull(c);
	while (!knows_qemu_keys(c) && now_ms() < end) {
		int n;

		usleep(200 * 1000);
		n = vnc_wait_message(c, 0);
		ck_assert_int_ge(n, 0);
		if (n > 0)
			ck_assert(HandleRFBServerMessage(c));
	}
	ck_assert_msg(knows_qemu_keys(c), "the ack never came out of the client's buffer");
	client_close(c);
}
END_TEST

static void aux_cmd(uint8_t v)
{
	kbc->ops->write(kbc, 1, 0, 1, 0xd4);
	kbc->ops->write(kbc, 0, 0, 1, v);
	ck_assert_uint_eq(kbc->ops->read(kbc, 0, 0, 1) & 0xff, 0xfa);
}

START_TEST(test_pointer)
{
	static const uint8_t want[] = {
		0x08 | 0x01,
		5,
		3, /* right 5, up 3 (PS/2 y is up), left */
		0x08 | 0x01 | 0x10,
		0xfe,
		0, /* left 2 */
		0x08,
		0,
		0, /* the wheel: no wheel on a standard mouse */
		0x08 | 0x02,
		0,
		0, /* right button (RFB mask 4) */
	};
	bool aux[16];
	rfbClient *c;
	int n;

	aux_cmd(0xf4); /* reporting on */
	start_server(NULL);
	c = client_connect();
	ck_assert_ptr_nonnull(c);
	ck_assert(pump_until(c, matches_source));
	ck_assert(SendPointerEvent(c, 100, 100, 0));
	ck_assert(SendPointerEvent(c, 105, 97, 1));
	ck_assert(SendPointerEvent(c, 103, 97, 1));
	ck_assert(SendPointerEvent(c, 103, 97, 16));
	ck_assert(SendPointerEvent(c, 103, 97, 4));
	n = kbc_collect(c, kbytes, sizeof(want), aux);
	ck_assert_int_eq(n, (int)sizeof(want));
	ck_assert_mem_eq(kbytes, want, sizeof(want));
	for (int i = 0; i < n; i++)
		ck_assert(aux[i]);
	client_close(c);
}
END_TEST

START_TEST(test_password)
{
	char path[] = "/tmp/check-vnc-pw.XXXXXX";
	int fd = mkstemp(path);
	rfbClient *c;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "s3cret\nignored\n", 15), 15);
	close(fd);
	start_server(path);
	client_password = "wrong";
	ck_assert_ptr_null(client_connect());
	client_password = "s3cret";
	c = client_connect();
	ck_assert_ptr_nonnull(c);
	ck_assert(pump_until(c, matches_source));
	client_close(c);
	client_password = NULL;
	unlink(path);
}
END_TEST

/* Between two boots the server keeps its clients and has no keyboard; the
 * next machine's display is sent whole. */
START_TEST(test_detach_and_attach)
{
	struct source src2 = { .w = 200, .h = 100, .seed = 77, .redraw = true };
	struct display *d2 = display_create();
	rfbClient *c;

	display_set_source(d2, &src_ops, &src);
	start_server(NULL);
	c = client_connect();
	ck_assert_ptr_nonnull(c);
	ck_assert(pump_until(c, matches_source));
	vnc_detach(server);
	ck_assert(SendKeyEvent(c, 'a', TRUE) && SendKeyEvent(c, 'a', FALSE));
	pump_for(c, 200);
	ck_assert_int_eq(kbc_read(kbytes, 8, NULL), 0);
	display_lock(disp); /* detached: nothing draws; to be sure */
	src = src2;
	display_unlock(disp);
	vnc_attach(server, d2, kbc);
	ck_assert_msg(pump_until(c, matches_source), "the new machine's picture never came");
	vnc_detach(server);
	client_close(c);
	display_destroy(d2);
}
END_TEST

/* Every hostile session (tests/vnc_hostile.h) logs in, and afterwards a
 * well-behaved client still gets the picture and its keys still arrive. */
START_TEST(test_hostile_clients)
{
	rfbClient *c;

	start_server(NULL);
	for (unsigned i = 0; i < VNC_HOSTILE_N; i++)
		ck_assert_msg(vnc_hostile_session(htonl(INADDR_LOOPBACK), port, i) == 0,
			      "%s: the login failed", vnc_hostile_names[i]);
	c = client_connect();
	ck_assert_ptr_nonnull(c);
	ck_assert_msg(pump_until(c, matches_source), "no picture after the hostile clients");
	ck_assert(SendKeyEvent(c, 'a', TRUE) && SendKeyEvent(c, 'a', FALSE));
	ck_assert_int_eq(kbc_collect(c, kbytes, 2, NULL), 2);
	ck_assert(kbytes[0] == 0x1e && kbytes[1] == 0x9e);
	client_close(c);
}
END_TEST

/* A password file swapped for a FIFO after validation: vnc_create fails
 * at once rather than waiting for a writer. */
START_TEST(test_password_fifo)
{
	char dir[] = "/tmp/check-vnc-fifo.XXXXXX", path[64];
	struct config_vnc c = { .addr = htonl(INADDR_LOOPBACK), .port = 0 };
	struct vnc *v = NULL;
	char err[256] = "";

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/pw", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	c.password_file = path;
	ck_assert_int_eq(vnc_create(&v, &c, "x", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(v);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(test_listen_errors)
{
	struct config_vnc c = { .addr = htonl(INADDR_LOOPBACK), .port = 0 };
	struct vnc *other;
	char err[256] = "";

	start_server(NULL);
	c.port = (uint16_t)port;
	ck_assert_int_eq(vnc_create(&other, &c, "x", err, sizeof(err)), -EADDRINUSE);
	ck_assert_ptr_nonnull(strstr(err, "--display vnc=127.0.0.1:"));
	c.port = 0;
	c.password_file = (char *)"/nonexistent/pw";
	ck_assert_int_eq(vnc_create(&other, &c, "x", err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "password-file=/nonexistent/pw"));
}
END_TEST

SUITE_MAIN("vnc", "server", setup, teardown, 60, test_frame_changes_and_resize, test_keys,
	   test_ack_read_ahead, test_pointer, test_password, test_detach_and_attach,
	   test_listen_errors, test_password_fifo, test_hostile_clients)
