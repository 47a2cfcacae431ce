/* QEMU isa-debug-exit compatible port: a write of V ends the VM with exit
 * status (V << 1) | 1, so a test payload can report pass/fail and never be
 * mistaken for a clean exit 0. An exit status is 8 bits, so the code is
 * truncated the way exit(2) would truncate QEMU's. */
#include <errno.h>
#include <stdlib.h>

#include "kestrel/devices.h"
#include "kestrel/state.h"
#include "emu.h"

#define DEBUG_EXIT_STATE_ID	 0x44425845 /* "DBXE" */
#define DEBUG_EXIT_STATE_VERSION 1

struct debug_exit {
	struct device dev;
	struct vm_ctl ctl;
};

static uint64_t debug_exit_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	return emu_ones(size);
}

static void debug_exit_write(struct device *dev, int region, uint64_t off, unsigned size,
			     uint64_t val)
{
	struct debug_exit *d = (struct debug_exit *)dev;

	vm_request_stop(&d->ctl, VM_STOP_DEBUG_EXIT, (int)(((val << 1) | 1) & 0xff));
}

static void debug_exit_reset(struct device *dev)
{
}

/* No guest-visible state: an empty section keeps the stream uniform. */
static int debug_exit_save(struct device *dev, struct state_buf *out)
{
	return emu_save_empty(out, DEBUG_EXIT_STATE_ID, DEBUG_EXIT_STATE_VERSION);
}

static int debug_exit_load(struct device *dev, struct state_buf *in)
{
	return emu_load_empty(in, DEBUG_EXIT_STATE_ID, DEBUG_EXIT_STATE_VERSION);
}

static void debug_exit_destroy(struct device *dev)
{
	pthread_mutex_destroy(&dev->lock);
	free(dev);
}

static const struct dev_ops debug_exit_ops = {
	.name = "debug_exit",
	.reset = debug_exit_reset,
	.read = debug_exit_read,
	.write = debug_exit_write,
	.save = debug_exit_save,
	.load = debug_exit_load,
	.destroy = debug_exit_destroy,
};

struct device *debug_exit_create(const struct vm_ctl *ctl)
{
	struct debug_exit *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	device_init(&d->dev, &debug_exit_ops);
	if (ctl)
		d->ctl = *ctl;
	return &d->dev;
}
