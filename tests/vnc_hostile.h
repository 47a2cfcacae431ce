/* Hostile VNC clients, shared by tests/check_vnc.c (the server in-process)
 * and tests/vnc-client.c's "hostile" step (the worker, sandboxed): each
 * session logs in with RFB 3.8 and security type None on a raw socket of
 * its own, sends one malformed or absurd message (RFC 6143 section 7.5 and
 * the extensions libvncserver parses), then reads whatever comes back until
 * the server closes or stays quiet for a while. The server may answer or
 * drop the client; the worker must live on and serve the next client. */
#ifndef KESTREL_TESTS_VNC_HOSTILE_H
#define KESTREL_TESTS_VNC_HOSTILE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* How long a session waits for each reply; the server's own limit on a
 * client that stalls mid-message is 5 s (src/display/vnc.c). */
#define VNC_HOSTILE_WAIT_MS 3000

static const char *const vnc_hostile_names[] = {
	"cut-text-4g",	      /* ClientCutText length 0xffffffff (extended clipboard's sign bit) */
	"cut-text-2g",	      /* length 0x7fffffff, then the connection ends */
	"cut-text-1m",	      /* exactly 1 MiB of text, all sent */
	"pixel-format-7bpp",  /* SetPixelFormat: 7 bits per pixel, zero maxima */
	"pixel-format-shift", /* 32 bpp with shifts past 31, then a full update */
	"encodings-stall",    /* SetEncodings announcing 65535, sending 4 */
	"update-huge",	      /* FramebufferUpdateRequest 65535x65535 at 65535,65535 */
	"desktop-size",	      /* SetDesktopSize 65535x65535 with 255 screens */
	"desktop-size-zero",  /* SetDesktopSize 0x0 with no screen */
	"scale-zero",	      /* SetScale 0 (a division by the factor) */
	"palm-scale-zero",    /* PalmVNC's SetScaleFactor 0 */
	"file-transfer",      /* TightVNC file transfer: list "/" */
	"text-chat-huge",     /* TextChat length 0x7fffffff */
	"qemu-audio",	      /* QEMU client message, audio subtype */
	"qemu-key-junk",      /* QEMU extended key event, keysym and XT code 0xffffffff */
	"pointer-far",	      /* PointerEvent at 65535,65535 with every button */
	"key-junk",	      /* KeyEvent keysyms 0xffffffff and 0 */
	"unknown-type",	      /* message type 0x77 */
	"garbage",	      /* 4 KiB of noise */
};
#define VNC_HOSTILE_N (sizeof(vnc_hostile_names) / sizeof(vnc_hostile_names[0]))

static int vnc_hostile_read(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, VNC_HOSTILE_WAIT_MS) <= 0)
			return -1;
		n = read(fd, (char *)buf + got, len - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static void vnc_hostile_write(int fd, const void *buf, size_t len)
{
	/* The server may drop us halfway: no SIGPIPE, no error. */
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n <= 0)
			return;
		buf = (const char *)buf + n;
		len -= (size_t)n;
	}
}

/* RFB 3.8 handshake with security None; the socket, or -1. */
static int vnc_hostile_login(uint32_t addr, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = addr };
	struct timeval tv = { .tv_sec = VNC_HOSTILE_WAIT_MS / 1000 };
	uint8_t b[256], one = 1;
	uint32_t len;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || vnc_hostile_read(fd, b, 12))
		goto fail;
	vnc_hostile_write(fd, "RFB 003.008\n", 12);
	if (vnc_hostile_read(fd, b, 1) || !b[0] || vnc_hostile_read(fd, b + 1, b[0]) ||
	    !memchr(b + 1, 1, b[0]))
		goto fail;
	vnc_hostile_write(fd, &one, 1); /* security None */
	if (vnc_hostile_read(fd, b, 4) || memcmp(b, "\0\0\0\0", 4))
		goto fail;
	vnc_hostile_write(fd, &one, 1);	 /* ClientInit: shared */
	if (vnc_hostile_read(fd, b, 24)) /* ServerInit */
		goto fail;
	memcpy(&len, b + 20, 4);
	len = ntohl(len);
	if (len > sizeof(b) || vnc_hostile_read(fd, b, len))
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

static void vnc_hostile_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void vnc_hostile_put32(uint8_t *p, uint32_t v)
{
	vnc_hostile_put16(p, (uint16_t)(v >> 16));
	vnc_hostile_put16(p + 2, (uint16_t)v);
}

/* Message number i into m (at least 8 KiB); its length. */
static size_t vnc_hostile_message(unsigned i, uint8_t *m)
{
	memset(m, 0, 8192);
	switch (i) {
	case 0:
		m[0] = 6;
		vnc_hostile_put32(m + 4, 0xffffffff);
		return 8;
	case 1:
		m[0] = 6;
		vnc_hostile_put32(m + 4, 0x7fffffff);
		return 72;
	case 2:
		m[0] = 6;
		vnc_hostile_put32(m + 4, 1u << 20);
		return 8; /* the text follows */
	case 3:
		m[4] = 7;
		m[5] = 7;
		m[7] = 1;
		memset(m + 14, 0xff, 3);
		return 20;
	case 4:
		m[4] = 32;
		m[5] = 24;
		m[7] = 1;
		vnc_hostile_put16(m + 8, 0xffff);
		vnc_hostile_put16(m + 10, 0xffff);
		vnc_hostile_put16(m + 12, 0xffff);
		m[14] = 200;
		m[15] = 201;
		m[16] = 202;
		m[20] = 3;
		vnc_hostile_put16(m + 26, 0xffff);
		vnc_hostile_put16(m + 28, 0xffff);
		return 30;
	case 5:
		m[0] = 2;
		vnc_hostile_put16(m + 2, 0xffff);
		return 4 + 16;
	case 6:
		m[0] = 3;
		for (int k = 2; k < 10; k += 2)
			vnc_hostile_put16(m + k, 0xffff);
		return 10;
	case 7:
		m[0] = 251;
		vnc_hostile_put16(m + 2, 0xffff);
		vnc_hostile_put16(m + 4, 0xffff);
		m[6] = 255;
		for (int k = 0; k < 255; k++) {
			vnc_hostile_put32(m + 8 + 16 * k, (uint32_t)k);
			vnc_hostile_put16(m + 16 + 16 * k, 0xffff);
			vnc_hostile_put16(m + 18 + 16 * k, 0xffff);
		}
		return 8 + 255 * 16;
	case 8: m[0] = 251; return 8;
	case 9: m[0] = 8; return 4;
	case 10: m[0] = 15; return 4;
	case 11:
		m[0] = 7;
		m[1] = 1;
		m[2] = 1;
		vnc_hostile_put32(m + 8, 1);
		m[12] = '/';
		return 13;
	case 12:
		m[0] = 11;
		vnc_hostile_put32(m + 4, 0x7fffffff);
		return 8;
	case 13:
	case 14:
		/* SetEncodings with QEMU's extended key event (-258) first: the
		 * server parses type 255 only from a client that asked for it. */
		m[0] = 2;
		vnc_hostile_put16(m + 2, 1);
		vnc_hostile_put32(m + 4, 0xfffffefe);
		m[8] = 255;
		if (i == 13) {
			m[9] = 1;
			return 20;
		}
		vnc_hostile_put16(m + 10, 1);
		vnc_hostile_put32(m + 12, 0xffffffff);
		vnc_hostile_put32(m + 16, 0xffffffff);
		return 20;
	case 15:
		m[0] = 5;
		m[1] = 0xff;
		vnc_hostile_put16(m + 2, 0xffff);
		vnc_hostile_put16(m + 4, 0xffff);
		m[6] = 5;
		return 12;
	case 16:
		m[0] = 4;
		m[1] = 1;
		vnc_hostile_put32(m + 4, 0xffffffff);
		m[8] = 4;
		m[9] = 1;
		return 16;
	case 17:
		m[0] = 0x77;
		memset(m + 1, 0x5a, 63);
		return 64;
	default:
		srand(i);
		for (int k = 0; k < 4096; k++)
			m[k] = (uint8_t)rand();
		return 4096;
	}
}

/* One session: login, message i, read until the server closes or is
 * quiet. 0 when the login worked (whatever came after), -1 when not. */
static int vnc_hostile_session(uint32_t addr, int port, unsigned i)
{
	uint8_t *m = malloc(8192);
	size_t len;
	int fd = m ? vnc_hostile_login(addr, port) : -1;

	if (fd < 0) {
		free(m);
		return -1;
	}
	len = vnc_hostile_message(i, m);
	vnc_hostile_write(fd, m, len);
	if (i == 2) {
		memset(m, 'a', 8192);
		for (int k = 0; k < (1 << 20) / 8192; k++)
			vnc_hostile_write(fd, m, 8192);
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, VNC_HOSTILE_WAIT_MS) <= 0 || read(fd, m, 8192) <= 0)
			break;
	}
	close(fd);
	free(m);
	return 0;
}

#endif
