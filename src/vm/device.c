/* What every device shares: its ops table, its lock, register accesses made
 * under that lock; and the registry, the list of a machine's devices that
 * reset, quiesce, save and destroy walk. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kestrel/device.h"
#include "kestrel/state.h"
#include "kestrel/util.h"

void device_init(struct device *dev, const struct dev_ops *ops)
{
	dev->ops = ops;
	dev->id[0] = '\0';
	pthread_mutex_init(&dev->lock, NULL);
}

uint64_t device_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	uint64_t val;

	pthread_mutex_lock(&dev->lock);
	val = dev->ops->read ? dev->ops->read(dev, region, off, size) : ~0ULL;
	pthread_mutex_unlock(&dev->lock);
	return val;
}

void device_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	pthread_mutex_lock(&dev->lock);
	if (dev->ops->write)
		dev->ops->write(dev, region, off, size, val);
	pthread_mutex_unlock(&dev->lock);
}

bool dev_id_valid(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n >= DEV_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

int dev_list_add(struct dev_list *l, struct device *dev, const char *id)
{
	if (!dev || !dev_id_valid(id))
		return -EINVAL;
	for (unsigned i = 0; i < l->n; i++)
		if (l->dev[i] == dev || !strcmp(l->dev[i]->id, id))
			return -EEXIST;
	if (l->n >= DEV_LIST_MAX)
		return -ENOSPC;
	snprintf(dev->id, sizeof(dev->id), "%s", id);
	l->dev[l->n++] = dev;
	return 0;
}

struct device *dev_list_find(const struct dev_list *l, const char *id)
{
	for (unsigned i = 0; id && i < l->n; i++)
		if (!strcmp(l->dev[i]->id, id))
			return l->dev[i];
	return NULL;
}

int dev_list_realize(struct dev_list *l, struct device **failed)
{
	for (unsigned i = 0; i < l->n; i++) {
		struct device *d = l->dev[i];
		int ret = d->ops->realize ? d->ops->realize(d) : 0;

		if (ret) {
			if (failed)
				*failed = d;
			return ret;
		}
	}
	return 0;
}

void dev_list_reset(struct dev_list *l)
{
	for (unsigned i = 0; i < l->n; i++) {
		struct device *d = l->dev[i];

		if (!d->ops->reset)
			continue;
		pthread_mutex_lock(&d->lock);
		d->ops->reset(d);
		pthread_mutex_unlock(&d->lock);
	}
}

void dev_list_quiesce(struct dev_list *l)
{
	if (l->quiesced)
		return;
	for (unsigned i = l->n; i-- > 0;) {
		struct device *d = l->dev[i];

		if (d->ops->quiesce)
			d->ops->quiesce(d);
	}
	l->quiesced = true;
}

int dev_list_resume(struct dev_list *l)
{
	int first = 0;

	if (!l->quiesced)
		return 0;
	for (unsigned i = 0; i < l->n; i++) {
		struct device *d = l->dev[i];
		int ret = d->ops->resume ? d->ops->resume(d) : 0;

		if (ret && !first)
			first = ret;
	}
	l->quiesced = false;
	return first;
}

void dev_list_destroy(struct dev_list *l)
{
	for (unsigned i = l->n; i-- > 0;) {
		struct device *d = l->dev[i];

		l->dev[i] = NULL;
		if (d->ops->destroy)
			d->ops->destroy(d);
	}
	l->n = 0;
	l->quiesced = false;
}

/* A device's state in a saved machine: a section {DEV_STATE_ID, 1, len}
 * holding the device id (u8 length + bytes) and then the device's own
 * sections, so that a reader finds each device by its stable id. */
#define DEV_STATE_ID	  0x44455649 /* "DEVI" */
#define DEV_STATE_VERSION 1

int dev_list_save(struct dev_list *l, struct state_buf *out)
{
	for (unsigned i = 0; i < l->n; i++) {
		struct device *d = l->dev[i];
		size_t mark, n = strlen(d->id);
		int ret;

		if (!d->ops->save)
			continue;
		mark = state_section_begin(out, DEV_STATE_ID, DEV_STATE_VERSION);
		state_put_u8(out, (uint8_t)n);
		state_put_bytes(out, d->id, n);
		pthread_mutex_lock(&d->lock);
		ret = d->ops->save(d, out);
		pthread_mutex_unlock(&d->lock);
		state_section_end(out, mark);
		if (ret)
			return ret;
	}
	return out->error ? -ENOMEM : 0;
}

static int dev_list_load_one(struct dev_list *l, struct state_buf *in, bool *seen)
{
	char id[DEV_ID_MAX] = "";
	struct device *d = NULL;
	size_t end;
	uint8_t n;
	int ret;

	if (state_section_open(in, DEV_STATE_ID, DEV_STATE_VERSION) < 0)
		return -EINVAL;
	end = state_section_body_end(in);
	n = state_get_u8(in);
	if (n >= DEV_ID_MAX)
		return -EINVAL;
	state_get_bytes(in, id, n);
	for (unsigned i = 0; !in->error && i < l->n; i++)
		if (!strcmp(l->dev[i]->id, id) && l->dev[i]->ops->load)
			d = l->dev[i];
	if (!d)
		return -ENOENT;
	for (unsigned i = 0; i < l->n; i++) {
		if (l->dev[i] != d)
			continue;
		if (seen[i])
			return -EINVAL; /* twice in one stream */
		seen[i] = true;
	}
	pthread_mutex_lock(&d->lock);
	ret = d->ops->load(d, in);
	pthread_mutex_unlock(&d->lock);
	if (!ret && !state_section_done(in, end))
		ret = -EINVAL;
	if (ret) /* which one, for whoever debugs a stream */
		kdebug("state: device %s: %s", id, strerror(-ret));
	return ret;
}

int dev_list_load(struct dev_list *l, struct state_buf *in)
{
	bool seen[DEV_LIST_MAX] = { false };
	int ret;

	while (in->pos < in->len) {
		ret = dev_list_load_one(l, in, seen);
		if (ret)
			return ret;
	}
	for (unsigned i = 0; i < l->n; i++)
		if (l->dev[i]->ops->load && !seen[i])
			return -ENODATA; /* a device of this machine is not in the stream */
	return 0;
}
