/* What every device shares: its ops table and its lock. */
#include "kestrel/device.h"

void device_init(struct device *dev, const struct dev_ops *ops)
{
	dev->ops = ops;
	pthread_mutex_init(&dev->lock, NULL);
}
