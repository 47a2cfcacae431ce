/* What every device shares: its ops table, its lock, and register accesses
 * made under that lock. */
#include "kestrel/device.h"

void device_init(struct device *dev, const struct dev_ops *ops)
{
	dev->ops = ops;
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
