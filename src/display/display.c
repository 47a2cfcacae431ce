/* The display surface, its tile generations and the change notification
 * (the design is written up in include/kestrel/display.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kestrel/display.h"

struct display {
	pthread_mutex_t lock;
	struct display_surface s;
	uint64_t *tile_gen; /* tiles_x * tiles_y, row-major */
	uint32_t tiles_x, tiles_y;
	uint64_t gen; /* generation of the last refresh that drew */
	uint64_t resize_gen;
	bool damaged; /* this refresh drew something: gen + 1 */
	const struct display_source_ops *ops;
	void *opaque;
	int notify_fd;
	int armed; /* atomic: a refresh ran since the last notification */
	uint64_t refreshes;
};

static uint32_t tiles_for(uint32_t px)
{
	return (px + DISPLAY_TILE - 1) / DISPLAY_TILE;
}

struct display *display_create(void)
{
	struct display *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	pthread_mutex_init(&d->lock, NULL);
	d->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->notify_fd < 0 || display_resize(d, DISPLAY_DEFAULT_WIDTH, DISPLAY_DEFAULT_HEIGHT)) {
		display_destroy(d);
		return NULL;
	}
	/* The first picture is generation 1: a consumer starting at 0 sends it. */
	d->gen = d->resize_gen = 1;
	d->damaged = false;
	return d;
}

void display_destroy(struct display *d)
{
	if (!d)
		return;
	if (d->notify_fd >= 0)
		close(d->notify_fd);
	free(d->s.pixels);
	free(d->tile_gen);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

void display_set_source(struct display *d, const struct display_source_ops *ops, void *opaque)
{
	pthread_mutex_lock(&d->lock);
	d->ops = ops;
	d->opaque = opaque;
	pthread_mutex_unlock(&d->lock);
}

int display_resize(struct display *d, uint32_t width, uint32_t height)
{
	uint32_t w = MAX(1u, MIN(width, (uint32_t)DISPLAY_MAX_WIDTH));
	uint32_t h = MAX(1u, MIN(height, (uint32_t)DISPLAY_MAX_HEIGHT));
	uint32_t tx = tiles_for(w), ty = tiles_for(h);
	uint32_t *px;
	uint64_t *tg;

	if (d->s.pixels && w == d->s.width && h == d->s.height)
		return 0;
	px = calloc((size_t)w * h, sizeof(*px));
	tg = calloc((size_t)tx * ty, sizeof(*tg));
	if (!px || !tg) {
		free(px);
		free(tg);
		return -ENOMEM;
	}
	free(d->s.pixels);
	free(d->tile_gen);
	d->s = (struct display_surface){ .width = w, .height = h, .stride = w, .pixels = px };
	d->tile_gen = tg;
	d->tiles_x = tx;
	d->tiles_y = ty;
	d->resize_gen = d->gen + 1;
	display_damage(d, 0, 0, w, h);
	return 0;
}

const struct display_surface *display_surface(const struct display *d)
{
	return &d->s;
}

void display_damage(struct display *d, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
	uint32_t x1, y1;

	if (x >= d->s.width || y >= d->s.height || !w || !h)
		return;
	x1 = x + MIN(w, d->s.width - x);
	y1 = y + MIN(h, d->s.height - y);
	for (uint32_t ty = y / DISPLAY_TILE; ty <= (y1 - 1) / DISPLAY_TILE; ty++)
		for (uint32_t tx = x / DISPLAY_TILE; tx <= (x1 - 1) / DISPLAY_TILE; tx++)
			d->tile_gen[ty * d->tiles_x + tx] = d->gen + 1;
	d->damaged = true;
}

/* Checked first without writing, so that guest writes with nobody armed
 * do not bounce the cache line between vCPUs. */
void display_changed(struct display *d)
{
	uint64_t one = 1;

	if (!d || !__atomic_load_n(&d->armed, __ATOMIC_RELAXED))
		return;
	if (__atomic_exchange_n(&d->armed, 0, __ATOMIC_ACQ_REL) &&
	    write(d->notify_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is full, so the fd is readable anyway. */
	}
}

void display_lock(struct display *d)
{
	pthread_mutex_lock(&d->lock);
}

void display_unlock(struct display *d)
{
	pthread_mutex_unlock(&d->lock);
}

void display_refresh(struct display *d, struct display_status *st)
{
	struct display_hint hint = { .next_ms = -1, .poll_ms = -1 };

	/* Armed before the source looks, so a change racing the refresh is
	 * either drawn now or notified. */
	__atomic_store_n(&d->armed, 1, __ATOMIC_RELEASE);
	d->damaged = false;
	if (d->ops && d->ops->refresh) {
		d->ops->refresh(d->opaque, d, &hint);
		d->refreshes++;
	}
	if (d->damaged)
		d->gen++;
	d->damaged = false;
	*st = (struct display_status){
		.gen = d->gen,
		.resize_gen = d->resize_gen,
		.width = d->s.width,
		.height = d->s.height,
		.next_ms = hint.next_ms,
		.poll_ms = hint.poll_ms,
		.text = hint.text,
	};
}

static void rect_clip(const struct display *d, uint32_t tx0, uint32_t tx1, uint32_t ty,
		      struct display_rect *r)
{
	uint32_t x = tx0 * DISPLAY_TILE, y = ty * DISPLAY_TILE;

	r->x = x;
	r->y = y;
	r->w = MIN(tx1 * DISPLAY_TILE, d->s.width) - x;
	r->h = MIN(y + DISPLAY_TILE, d->s.height) - y;
}

static void rect_bound(struct display_rect *b, const struct display_rect *r, bool first)
{
	uint32_t x1, y1;

	if (first) {
		*b = *r;
		return;
	}
	x1 = MAX(b->x + b->w, r->x + r->w);
	y1 = MAX(b->y + b->h, r->y + r->h);
	b->x = MIN(b->x, r->x);
	b->y = MIN(b->y, r->y);
	b->w = x1 - b->x;
	b->h = y1 - b->y;
}

unsigned display_changes(const struct display *d, uint64_t since, struct display_rect *out,
			 unsigned max)
{
	struct display_rect r, bound = { 0 };
	unsigned n = 0;

	for (uint32_t ty = 0; ty < d->tiles_y; ty++) {
		const uint64_t *row = &d->tile_gen[(size_t)ty * d->tiles_x];

		for (uint32_t tx = 0; tx < d->tiles_x;) {
			uint32_t t0;

			if (row[tx] <= since) {
				tx++;
				continue;
			}
			for (t0 = tx; tx < d->tiles_x && row[tx] > since; tx++)
				;
			rect_clip(d, t0, tx, ty, &r);
			rect_bound(&bound, &r, n == 0);
			if (n < max)
				out[n] = r;
			n++;
		}
	}
	if (n > max && max) {
		out[0] = bound;
		return 1;
	}
	return MIN(n, max);
}

int display_notify_fd(const struct display *d)
{
	return d->notify_fd;
}

uint64_t display_refresh_count(const struct display *d)
{
	return d->refreshes;
}
