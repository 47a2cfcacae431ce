/* QEMU's ISA debug console (hw/char/debugcon.c) at the port SeaBIOS writes its
 * log to (0x402, CONFIG_DEBUG_IO): every byte written goes to an output, a
 * read returns the readback value 0xE9 by which SeaBIOS (qemu_debug_preinit)
 * tells the port is there. Without the device SeaBIOS reads 0xFF and logs
 * nothing, which is also the faster boot.
 *
 * Two outputs: a file gets the bytes as written, as QEMU's chardev does; a
 * terminal-like stream (stderr) gets whole lines, each in one write, with
 * control characters replaced by '?', so the guest's text can neither
 * interleave with the worker's log lines nor drive the terminal. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kestrel/devices.h"
#include "kestrel/state.h"
#include "emu.h"

#define DEBUGCON_READBACK      0xe9
#define DEBUGCON_LINE_MAX      256	  /* longer lines are cut into pieces of this size */
#define DEBUGCON_STATE_ID      0x44424330 /* "DBC0" */
#define DEBUGCON_STATE_VERSION 1

struct debugcon {
	struct device dev;
	int fd;
	bool lines;
	char line[DEBUGCON_LINE_MAX + 1];
	size_t len;
	uint64_t lost; /* bytes the output did not take */
};

static struct debugcon *to_dc(struct device *dev)
{
	return (struct debugcon *)dev;
}

static void dc_out(struct debugcon *d, const void *p, size_t n)
{
	ssize_t w = write(d->fd, p, n);

	if (w < 0 || (size_t)w != n)
		d->lost += n - (w > 0 ? (size_t)w : 0);
}

static void dc_flush_line(struct debugcon *d)
{
	if (!d->len)
		return;
	d->line[d->len++] = '\n';
	dc_out(d, d->line, d->len);
	d->len = 0;
}

static void dc_put_line_byte(struct debugcon *d, uint8_t c)
{
	if (c == '\n') {
		dc_flush_line(d);
		return;
	}
	if (c == '\r')
		return;
	d->line[d->len++] = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
	if (d->len == DEBUGCON_LINE_MAX)
		dc_flush_line(d);
}

static uint64_t dc_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	return off == 0 && size == 1 ? DEBUGCON_READBACK : emu_ones(size);
}

/* A wider write carries its bytes in order (outw/outl of text). */
static void dc_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct debugcon *d = to_dc(dev);
	uint8_t b[8];

	if (off || size > sizeof(b) || d->fd < 0)
		return;
	memcpy(b, &val, size);
	if (!d->lines) {
		dc_out(d, b, size);
		return;
	}
	for (unsigned i = 0; i < size; i++)
		dc_put_line_byte(d, b[i]);
}

static void dc_reset(struct device *dev)
{
}

/* Nothing the guest can read back besides the constant readback value. */
static int dc_save(struct device *dev, struct state_buf *out)
{
	return emu_save_empty(out, DEBUGCON_STATE_ID, DEBUGCON_STATE_VERSION);
}

static int dc_load(struct device *dev, struct state_buf *in)
{
	return emu_load_empty(in, DEBUGCON_STATE_ID, DEBUGCON_STATE_VERSION);
}

/* The last partial line goes out; the fd is the caller's. */
static void dc_destroy(struct device *dev)
{
	struct debugcon *d = to_dc(dev);

	if (d->lines && d->fd >= 0)
		dc_flush_line(d);
	if (d->lost)
		kwarn("--firmware-log: %llu bytes of the firmware's log could not be written",
		      (unsigned long long)d->lost);
	pthread_mutex_destroy(&dev->lock);
	free(d);
}

static const struct dev_ops debugcon_ops = {
	.name = "debugcon",
	.reset = dc_reset,
	.read = dc_read,
	.write = dc_write,
	.save = dc_save,
	.load = dc_load,
	.destroy = dc_destroy,
};

struct device *debugcon_create(int fd, bool lines)
{
	struct debugcon *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	device_init(&d->dev, &debugcon_ops);
	d->fd = fd;
	d->lines = lines;
	return &d->dev;
}
