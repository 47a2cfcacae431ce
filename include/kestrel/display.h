/* The host's picture of a VM's screen (src/display/): one surface of
 * XRGB8888 pixels that a display source (the VGA device) draws into, read by
 * consumers (the screendump command today, a VNC server later).
 *
 * Design
 * - Pull, not push. Nothing renders on a timer. A consumer calls
 *   display_refresh(); the display calls its source's refresh op, which draws
 *   only what changed since the previous refresh (VRAM pages written, a
 *   register or palette change, a text blink phase that ended) and reports
 *   what it drew with display_damage(). While nobody asks, nothing runs.
 * - Changes by generation. The surface is cut into DISPLAY_TILE x
 *   DISPLAY_TILE tiles; each tile holds the generation in which it last
 *   changed, and a refresh that damaged anything bumps the generation. A
 *   consumer keeps the generation it last sent and asks for the tiles newer
 *   than that (display_changes()), so any number of consumers, each at its
 *   own pace, share one surface with no per-consumer state here. A size
 *   change records resize_gen: a consumer older than that sends the whole
 *   surface (VNC: a DesktopSize update first).
 * - Notification. The source calls display_changed() from any thread when
 *   the guest did something that may change the picture (a write to the
 *   legacy window, a register or palette write). That is one atomic load
 *   unless the display is armed; display_refresh() arms it, and the first
 *   display_changed() after that makes display_notify_fd() (an eventfd)
 *   readable, once. A consumer that wants updates waits on the fd (draining
 *   it with read) with a timeout taken from its last refresh:
 *   next_ms, when the picture changes by itself (text cursor and character
 *   blink), and poll_ms, when the source has memory the guest writes without
 *   the device seeing it (a framebuffer mapped into the guest and tracked by
 *   KVM's dirty log), which must be polled while someone wants updates.
 *   One thread waits on the fd (the VNC server's, serving all its clients);
 *   screendumps only refresh.
 * - Locking. d->lock serialises refreshes and guards the surface: a consumer
 *   holds it (display_lock) from display_refresh() until it is done reading
 *   pixels. The source's refresh runs under it and may take its device's
 *   lock briefly; a device never takes d->lock (display_changed() takes no
 *   lock), so a vCPU never waits for a consumer.
 *
 * Who owns what: the machine creates the display with --vga std (struct
 * machine's display, NULL without a VGA) and destroys it after the device;
 * a consumer (the control socket's screendump, a VNC server) only borrows
 * it while the machine lives. --display (enum config_display) is where a
 * VNC server's options go.
 *
 * Typical consumer (VNC):
 *     display_lock(d);
 *     display_refresh(d, &st);
 *     n = display_changes(d, client_gen, rects, max);   // or all, if resized
 *     ... encode rects from display_surface(d) ...
 *     client_gen = st.gen;
 *     display_unlock(d);
 *     poll(display_notify_fd(d), min(st.next_ms, st.poll_ms)) and read it. */
#ifndef KESTREL_DISPLAY_H
#define KESTREL_DISPLAY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/util.h"

#define DISPLAY_TILE	       16
#define DISPLAY_MAX_WIDTH      4096
#define DISPLAY_MAX_HEIGHT     2048
/* Before a source has drawn anything: a black 640x480, as a PC monitor
 * shows before the first mode set (and QEMU's first surface). */
#define DISPLAY_DEFAULT_WIDTH  640
#define DISPLAY_DEFAULT_HEIGHT 480

struct display;

/* Pixels: 0x00RRGGBB in host order, row y at pixels + y * stride. */
struct display_surface {
	uint32_t width, height;
	uint32_t stride; /* in pixels */
	uint32_t *pixels;
};

struct display_rect {
	uint32_t x, y, w, h;
};

/* What a refresh leaves for its consumer. */
struct display_status {
	uint64_t gen;	     /* the surface's generation now */
	uint64_t resize_gen; /* generation of the last size change */
	uint32_t width, height;
	int64_t next_ms; /* the picture changes by itself in this
				       * many ms (blink); -1: it does not */
	int64_t poll_ms; /* refresh at least this often while
				       * updates are wanted; -1: every change
				       * is notified */
	bool text;	 /* the source shows a text mode */
};

/* What a source's refresh reports besides damage. */
struct display_hint {
	int64_t next_ms, poll_ms; /* as in display_status; both start at -1 */
	bool text;
};

struct display_source_ops {
	/* Bring the surface up to date: resize if the mode changed, draw what
	 * changed since the previous call, report it with display_damage().
	 * Runs on the consumer's thread with d->lock held. */
	void (*refresh)(void *opaque, struct display *d, struct display_hint *hint);
};

struct display *display_create(void);
void display_destroy(struct display *d);
/* Who draws: set once, before the first consumer. NULL ops: no source (the
 * surface stays black). */
void display_set_source(struct display *d, const struct display_source_ops *ops, void *opaque);

/* ---- the source's side (inside refresh, d->lock held) ---- */

/* Set the surface's size, clamped to 1..DISPLAY_MAX_*. A change clears it
 * to black, damages all of it and records resize_gen; the same size is a
 * no-op. 0 or -ENOMEM (the surface keeps its old size). */
int display_resize(struct display *d, uint32_t width, uint32_t height) WARN_UNUSED;
/* The surface: the source draws into it, consumers read it; d->lock held
 * (valid until the next display_resize, i.e. the next refresh). */
const struct display_surface *display_surface(const struct display *d);
/* The rectangle was redrawn (clipped to the surface). */
void display_damage(struct display *d, uint32_t x, uint32_t y, uint32_t w, uint32_t h);
/* Any thread, no lock: something the guest did may change the picture. */
void display_changed(struct display *d);

/* ---- the consumers' side ---- */

void display_lock(struct display *d);
void display_unlock(struct display *d);
/* Run the source's refresh and re-arm the notification. d->lock held. */
void display_refresh(struct display *d, struct display_status *st);
/* Tiles changed after generation `since`, as rectangles (each a run of
 * changed tiles in one tile row, clipped to the surface), at most max; when
 * there are more, one rectangle bounding them all. Returns the count.
 * d->lock held. */
unsigned display_changes(const struct display *d, uint64_t since, struct display_rect *out,
			 unsigned max);
/* An eventfd (non-blocking) made readable by the first display_changed()
 * after a refresh. */
int display_notify_fd(const struct display *d);
/* Refreshes that ran a source's refresh op, for tests and --stats. */
uint64_t display_refresh_count(const struct display *d);

/* ---- screendump (src/display/screendump.c) ---- */

/* Refresh and write the picture as an 8-bit RGB PNG (libpng) to path:
 * through a temporary file next to it, renamed over it when complete, so a
 * failure leaves any file there untouched. d->lock is held only while the
 * pixels are copied. 0 or -errno with one line in err; the picture's size
 * in *width, *height (either may be NULL). */
int display_screendump(struct display *d, const char *path, uint32_t *width, uint32_t *height,
		       char *err, size_t errlen) WARN_UNUSED;
/* Write pixels (XRGB8888, stride in pixels) as a PNG to path the same way. */
int display_png_write(const char *path, const uint32_t *pixels, uint32_t width, uint32_t height,
		      uint32_t stride, char *err, size_t errlen) WARN_UNUSED;

#endif
