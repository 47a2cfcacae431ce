/* Inside the VNC server: the server (vnc.c) and its input side (vnc_input.c). */
#ifndef KESTREL_VNC_PRIV_H
#define KESTREL_VNC_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <rfb/rfb.h>

#include "vnc_lib.h"

#include "kestrel/display.h"
#include "kestrel/vnc.h"

#define VNC_MAX_RECTS 256

struct vnc {
	/* Shared with the worker's main thread (attach/detach): under lock. */
	pthread_mutex_t lock;
	struct display *display; /* the attached machine's, or NULL */
	struct device *kbc;	 /* its i8042 */
	bool new_display;	 /* attached since the thread last looked */
	bool stop;

	/* The server thread's own. */
	rfbScreenInfoPtr screen;
	pthread_t thread;
	bool thread_started;
	int listen_fd, wake_fd;
	int notify_fd; /* our dup of the display's notification eventfd */
	uint32_t *fb;  /* what the clients are sent, in the server's format */
	uint32_t fbw, fbh;
	uint64_t gen;	       /* the display generation fb holds */
	bool full;	       /* the next update copies everything */
	bool want_update;      /* refresh at the next turn of the loop */
	int64_t refresh_at_ms; /* monotonic: refresh then (blink, polled memory); -1 */
	unsigned nclients;
	int pointer_x, pointer_y, buttons;
	bool pointer_seen;
	char *passwords[2]; /* for rfbCheckPasswordByList; NULL-terminated */
	char desktop_name[64];
	struct display_rect rects[VNC_MAX_RECTS];
};

/* vnc_input.c: the screen's input hooks and the QEMU extended key event. */
void vnc_input_init(struct vnc *v);
/* A client's per-connection state (its Shift keys); freed when it goes. */
void vnc_input_client(rfbClientPtr cl);
/* Acknowledge QEMU's extended key event to the clients that asked. */
void vnc_input_acks(struct vnc *v);
/* Key events to the attached keyboard, if any (takes v->lock). */
void vnc_send_keys(struct vnc *v, const struct i8042_key *keys, unsigned n);

#endif
