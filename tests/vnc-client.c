/* vnc-client: a VNC client for the tests (libvncclient), driven by steps on
 * its command line, one connection for all of them:
 *
 *   vnc-client [--password-file FILE] HOST:PORT STEP...
 *     size WxH MS       wait until the framebuffer is WxH (a DesktopSize update)
 *     resize MS         wait until the size changes from the first one
 *     frame FILE        wait until every pixel arrived since the connection or
 *                       the last resize and 300 ms passed with no update, then
 *                       write the picture as a binary PPM (vga-compare reads it)
 *     type TEXT         each character as a KeyEvent press and release
 *                       (X11 keysyms; "\n" is Return)
 *     xt CODE...        QEMU extended key events, press and release, by XT code
 *                       (hex; E0 xx as 0x80|xx); fails if the server has not
 *                       acknowledged the extension
 *     pointer X Y MASK  a PointerEvent (mask: 1 left, 2 middle, 4 right,
 *                       8/16 wheel)
 *     updates MS        count the updates arriving within MS
 *     hostile           tests/vnc_hostile.h's sessions, each on a connection
 *                       of its own beside this one (login without a
 *                       password); fails if one cannot log in
 *     sleep MS
 *
 * Prints one line per step ("vnc-client: ..."). Exit 0, or 1 when a step
 * failed (timeout, no extension), 2 for usage, connection or login errors.
 * Also the benchmark's probe (scripts/bench/vga.sh, tests/kit/fbbench.sh):
 *     serial-latency FILE N
 *                       types "go" and Return, then for N lines "fbw: K" the
 *                       guest appends to FILE (its serial console) just before
 *                       each framebuffer write, how long after the line the
 *                       next update arrives; prints the median, 90th
 *                       percentile and maximum in ms. The line's time is the
 *                       file's modification time when the line is first seen,
 *                       updates are timed as they arrive (both CLOCK_REALTIME),
 *                       so an update that came before the line was read still
 *                       counts. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rfb/rfbclient.h>

#include "vnc_hostile.h"
#include "vnc_wait.h"

struct state {
	int w, h;
	uint8_t *covered; /* a byte per pixel: arrived since the resize */
	long ncovered;
	long updates;
	double last_update_ms;
	char *password;
	double recent[64]; /* CLOCK_REALTIME ms of the last updates */
	unsigned nrecent;
};

static struct state st;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static rfbBool on_resize(rfbClient *c)
{
	free(c->frameBuffer);
	c->frameBuffer = calloc((size_t)c->width * c->height, 4);
	free(st.covered);
	st.covered = calloc((size_t)c->width * c->height, 1);
	st.ncovered = 0;
	st.w = c->width;
	st.h = c->height;
	return c->frameBuffer && st.covered;
}

static void on_update(rfbClient *c, int x, int y, int w, int h)
{
	(void)c;
	struct timespec ts;

	st.updates++;
	st.last_update_ms = now_ms();
	clock_gettime(CLOCK_REALTIME, &ts);
	st.recent[st.nrecent++ % 64] = ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
	for (int j = y; j < y + h && j < st.h; j++)
		for (int i = x; i < x + w && i < st.w; i++)
			if (!st.covered[(size_t)j * st.w + i]) {
				st.covered[(size_t)j * st.w + i] = 1;
				st.ncovered++;
			}
}

static char *on_password(rfbClient *c)
{
	(void)c;
	return st.password ? strdup(st.password) : strdup("");
}

static void quiet_log(const char *fmt, ...)
{
	(void)fmt;
}

/* Handle what the server sent, for at most ms (0: what is there now). */
static int pump(rfbClient *c, double ms)
{
	double end = now_ms() + ms;

	do {
		double left = end - now_ms();
		int n = vnc_wait_message(c, left > 0 ? (unsigned)(left * 1000) : 0);

		if (n < 0)
			return -1;
		if (n > 0 && !HandleRFBServerMessage(c))
			return -1;
	} while (now_ms() < end);
	return 0;
}

/* Pump until the screen is w x h (same) or no longer is (!same), for at most
 * ms; print the size. 0 when it came, 1 on timeout, 2 when the server went. */
static int wait_size(rfbClient *c, int w, int h, bool same, const char *ms)
{
	double end = now_ms() + atof(ms);
	bool done;

	while (!(done = (st.w == w && st.h == h) == same) && now_ms() < end)
		if (pump(c, 50) < 0)
			return 2;
	printf("vnc-client: size %dx%d%s\n", st.w, st.h, done ? "" : " (timeout)");
	return done ? 0 : 1;
}

static int step_size(rfbClient *c, const char *wxh, const char *ms)
{
	int w = 0, h = 0;

	if (sscanf(wxh, "%dx%d", &w, &h) != 2)
		return 2;
	return wait_size(c, w, h, true, ms);
}

static int step_resize(rfbClient *c, const char *ms)
{
	return wait_size(c, st.w, st.h, false, ms);
}

static int write_ppm(rfbClient *c, const char *path)
{
	FILE *f = fopen(path, "wb");
	const rfbPixelFormat *pf = &c->format;

	if (!f)
		return 2;
	fprintf(f, "P6\n%d %d\n255\n", st.w, st.h);
	for (long i = 0; i < (long)st.w * st.h; i++) {
		uint32_t p = ((uint32_t *)c->frameBuffer)[i];
		uint8_t rgb[3] = { (uint8_t)(p >> pf->redShift), (uint8_t)(p >> pf->greenShift),
				   (uint8_t)(p >> pf->blueShift) };

		fwrite(rgb, 1, 3, f);
	}
	return fclose(f) ? 2 : 0;
}

static int step_frame(rfbClient *c, const char *path)
{
	double end = now_ms() + 60000;

	while (now_ms() < end) {
		if (pump(c, 100) < 0)
			return 2;
		if (st.ncovered == (long)st.w * st.h && now_ms() - st.last_update_ms >= 300)
			break;
	}
	if (st.ncovered != (long)st.w * st.h) {
		printf("vnc-client: frame incomplete (%ld of %d pixels)\n", st.ncovered,
		       st.w * st.h);
		return 1;
	}
	printf("vnc-client: frame %dx%d\n", st.w, st.h);
	return write_ppm(c, path);
}

static uint32_t char_keysym(char ch)
{
	return ch == '\n' ? 0xff0d : (uint32_t)(unsigned char)ch;
}

static int step_type(rfbClient *c, const char *text)
{
	for (const char *p = text; *p; p++) {
		if (!SendKeyEvent(c, char_keysym(*p), TRUE) ||
		    !SendKeyEvent(c, char_keysym(*p), FALSE))
			return 2;
		pump(c, 0);
	}
	printf("vnc-client: typed %zu characters\n", strlen(text));
	return 0;
}

static int step_xt(rfbClient *c, int argc, char **argv, int *i)
{
	int n = 0;
	double end = now_ms() + 60000;

	/* The server acknowledges it with (or after) the first update (a
	 * whole frame to encode first: seconds in the nested rig). */
	while (!SupportsClient2Server(c, rfbQemuEvent) && now_ms() < end)
		if (pump(c, 50) < 0)
			return 2;
	if (!SupportsClient2Server(c, rfbQemuEvent)) {
		/* What did come: a server's SupportedMessages lists SetScale,
		 * libvncclient's defaults do not. */
		printf("vnc-client: the server did not acknowledge QEMU's extended key event "
		       "(%ld updates, %ld of %d pixels, %s SupportedMessages)\n",
		       st.updates, st.ncovered, st.w * st.h,
		       SupportsClient2Server(c, rfbSetScale) ? "after" : "no");
		return 1;
	}
	while (*i + 1 < argc && !strncmp(argv[*i + 1], "0x", 2)) {
		uint32_t code = (uint32_t)strtoul(argv[++*i], NULL, 16);

		if (!SendExtendedKeyEvent(c, 0, code, TRUE) ||
		    !SendExtendedKeyEvent(c, 0, code, FALSE))
			return 2;
		n++;
	}
	printf("vnc-client: %d extended key events\n", n);
	return 0;
}

static int step_updates(rfbClient *c, const char *ms)
{
	long before = st.updates;

	if (pump(c, atof(ms)) < 0)
		return 2;
	printf("vnc-client: %ld updates in %s ms\n", st.updates - before, ms);
	return 0;
}

/* The first update at or after t (CLOCK_REALTIME ms), or -1. */
static double update_after(double t)
{
	double best = -1;

	for (unsigned i = 0; i < 64 && i < st.nrecent; i++)
		if (st.recent[i] >= t && (best < 0 || st.recent[i] < best))
			best = st.recent[i];
	return best;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* New complete lines of the serial log; returns how many were "fbw: K"
 * and stamps them with the file's mtime. */
static int serial_lines(int fd, char *buf, size_t *len, size_t cap, double *stamp)
{
	struct stat sb;
	ssize_t n = read(fd, buf + *len, cap - *len - 1);
	int found = 0;
	char *nl;

	if (n <= 0)
		return 0;
	*len += (size_t)n;
	buf[*len] = '\0';
	fstat(fd, &sb);
	while ((nl = strchr(buf, '\n'))) {
		const char *m = strstr(buf, "fbw: ");
		int k;

		*nl = '\0';
		if (m && sscanf(m, "fbw: %d", &k) == 1) {
			*stamp = sb.st_mtim.tv_sec * 1e3 + sb.st_mtim.tv_nsec / 1e6;
			found++;
		}
		*len -= (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, *len + 1);
	}
	if (*len >= cap - 1)
		*len = 0;
	return found;
}

static int step_serial_latency(rfbClient *c, const char *path, const char *count)
{
	int n = atoi(count), got = 0, fd = open(path, O_RDONLY);
	double *d = calloc((size_t)(n > 0 ? n : 1), sizeof(*d)), line = -1;
	double end = now_ms() + 60000.0 + n * 2000.0;
	char buf[4096];
	size_t len = 0;

	if (fd < 0 || !d || n <= 0)
		return 2;
	lseek(fd, 0, SEEK_END);
	if (step_type(c, "go\n"))
		return 2;
	while (got < n && now_ms() < end) {
		double stamp = -1, u;

		if (pump(c, 1) < 0)
			return 2;
		if (serial_lines(fd, buf, &len, sizeof(buf), &stamp))
			line = stamp;
		if (line >= 0 && (u = update_after(line)) >= 0) {
			d[got++] = u - line;
			line = -1;
		}
	}
	close(fd);
	if (got < n) {
		printf("vnc-client: latency: only %d of %d writes came with an update\n", got, n);
		return 1;
	}
	qsort(d, (size_t)n, sizeof(*d), cmp_double);
	printf("vnc-client: latency ms median %.1f p90 %.1f max %.1f (%d writes)\n", d[n / 2],
	       d[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1], d[n - 1], n);
	free(d);
	return 0;
}

static int step_hostile(rfbClient *c)
{
	struct in_addr a;

	if (inet_pton(AF_INET, c->serverHost, &a) != 1)
		return 2;
	for (unsigned k = 0; k < VNC_HOSTILE_N; k++) {
		if (vnc_hostile_session(a.s_addr, c->serverPort, k)) {
			printf("vnc-client: hostile %s: cannot log in\n", vnc_hostile_names[k]);
			return 1;
		}
		printf("vnc-client: hostile %s: done\n", vnc_hostile_names[k]);
		if (pump(c, 0) < 0)
			return 2;
	}
	return 0;
}

static int run_step(rfbClient *c, int argc, char **argv, int *i)
{
	const char *s = argv[*i];
	int need = !strcmp(s, "size") || !strcmp(s, "serial-latency") ? 2
		   : !strcmp(s, "pointer")			      ? 3
		   : !strcmp(s, "xt") || !strcmp(s, "hostile")	      ? 0
								      : 1;

	if (*i + need >= argc)
		return 2;
	if (!strcmp(s, "size"))
		return *i += 2, step_size(c, argv[*i - 1], argv[*i]);
	if (!strcmp(s, "resize"))
		return step_resize(c, argv[++*i]);
	if (!strcmp(s, "frame"))
		return step_frame(c, argv[++*i]);
	if (!strcmp(s, "type"))
		return step_type(c, argv[++*i]);
	if (!strcmp(s, "xt"))
		return step_xt(c, argc, argv, i);
	if (!strcmp(s, "pointer")) {
		*i += 3;
		if (!SendPointerEvent(c, atoi(argv[*i - 2]), atoi(argv[*i - 1]), atoi(argv[*i])))
			return 2;
		return pump(c, 0) < 0 ? 2 : 0;
	}
	if (!strcmp(s, "hostile"))
		return step_hostile(c);
	if (!strcmp(s, "updates"))
		return step_updates(c, argv[++*i]);
	if (!strcmp(s, "serial-latency"))
		return *i += 2, step_serial_latency(c, argv[*i - 1], argv[*i]);
	if (!strcmp(s, "sleep"))
		return pump(c, atof(argv[++*i])) < 0 ? 2 : 0;
	return 2;
}

static char *read_password(const char *path)
{
	char buf[256] = "";
	FILE *f = fopen(path, "r");

	if (!f || !fgets(buf, sizeof(buf), f))
		return NULL;
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return strdup(buf);
}

int main(int argc, char **argv)
{
	int i = 1, rc = 0;
	rfbClient *c;
	char *colon;

	if (argc > 2 && !strcmp(argv[1], "--password-file")) {
		st.password = read_password(argv[2]);
		i = 3;
	}
	if (i >= argc || !(colon = strrchr(argv[i], ':'))) {
		fprintf(stderr, "usage: vnc-client [--password-file FILE] HOST:PORT STEP...\n");
		return 2;
	}
	rfbClientLog = getenv("VNC_CLIENT_DEBUG") ? rfbClientLog : quiet_log;
	rfbClientErr = getenv("VNC_CLIENT_DEBUG") ? rfbClientErr : quiet_log;
	c = rfbGetClient(8, 3, 4);
	c->MallocFrameBuffer = on_resize;
	c->GotFrameBufferUpdate = on_update;
	c->GetPassword = on_password;
	/* Lossless encodings only: frames are compared pixel for pixel
	 * (libvncclient would take Tight with JPEG where the server has it). */
	c->appData.encodingsString = "zrle hextile zlib copyrect raw";
	c->appData.enableJPEG = FALSE;
	c->serverHost = strndup(argv[i], (size_t)(colon - argv[i]));
	c->serverPort = atoi(colon + 1);
	if (!rfbInitClient(c, NULL, NULL)) { /* it frees c on failure */
		printf("vnc-client: cannot connect or log in to %s\n", argv[i]);
		return 2;
	}
	printf("vnc-client: connected, %dx%d, \"%s\"\n", c->width, c->height, c->desktopName);
	for (i++; i < argc && rc == 0; i++)
		rc = run_step(c, argc, argv, &i);
	if (rc == 2)
		printf("vnc-client: step '%s' failed\n", argv[i < argc ? i : argc - 1]);
	free(c->frameBuffer);
	rfbClientCleanup(c);
	return rc;
}
