/* A port that swallows writes and reads as all ones (an empty ISA bus), for
 * port 0x80 POST codes and the like: claimed so they do not count as
 * unhandled, with nothing behind them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/devices.h"
#include "kestrel/state.h"
#include "emu.h"

#define SINK_STATE_ID	   0x534e4b30 /* "SNK0" */
#define SINK_STATE_VERSION 1
#define SINK_NAME_MAX	   32

struct sink {
	struct device dev;
	char name[SINK_NAME_MAX]; /* which sink, for whoever inspects it in a debugger */
};

static uint64_t sink_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	return emu_ones(size);
}

static void sink_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
}

static void sink_reset(struct device *dev)
{
}

static int sink_save(struct device *dev, struct state_buf *out)
{
	return emu_save_empty(out, SINK_STATE_ID, SINK_STATE_VERSION);
}

static int sink_load(struct device *dev, struct state_buf *in)
{
	return emu_load_empty(in, SINK_STATE_ID, SINK_STATE_VERSION);
}

static void sink_destroy(struct device *dev)
{
	pthread_mutex_destroy(&dev->lock);
	free(dev);
}

static const struct dev_ops sink_ops = {
	.name = "sink",
	.reset = sink_reset,
	.read = sink_read,
	.write = sink_write,
	.save = sink_save,
	.load = sink_load,
	.destroy = sink_destroy,
};

struct device *sink_create(const char *name)
{
	struct sink *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	device_init(&s->dev, &sink_ops);
	if (name)
		snprintf(s->name, sizeof(s->name), "%s", name);
	return &s->dev;
}
