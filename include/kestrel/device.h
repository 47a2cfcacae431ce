/* A device as the bus sees it: a const ops table and a lock. */
#ifndef KESTREL_DEVICE_H
#define KESTREL_DEVICE_H

#include <pthread.h>
#include <stdint.h>
#include "kestrel/util.h"

struct device;
struct state_buf;

struct dev_ops {
	const char *name;
	void (*reset)(struct device *dev);
	/* region: the id given to bus_insert; off: offset inside that region;
	 * size: 1, 2, 4 or 8. Reads return the value zero-extended. */
	uint64_t (*read)(struct device *dev, int region, uint64_t off, unsigned size);
	void (*write)(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val);
	int (*save)(struct device *dev, struct state_buf *out);
	int (*load)(struct device *dev, struct state_buf *in);
	void (*destroy)(struct device *dev);
};

/* Embedded as the first member of each device's state struct. The bus takes
 * lock around read/write; other threads touching the device take it too. */
struct device {
	const struct dev_ops *ops;
	pthread_mutex_t lock;
};

void device_init(struct device *dev, const struct dev_ops *ops);
/* One register access under the device's lock, as the buses and guest
 * memory's read-only slots make them. A missing handler ignores writes and
 * reads all ones. */
uint64_t device_read(struct device *dev, int region, uint64_t off, unsigned size);
void device_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val);

/* An interrupt line as a device sees it. set() is called with the device lock
 * held; it must not call back into the device. */
struct irq_line {
	void (*set)(void *opaque, uint32_t gsi, int level);
	void *opaque;
	uint32_t gsi;
};

static inline void irq_set(const struct irq_line *l, int level)
{
	if (l->set)
		l->set(l->opaque, l->gsi, level);
}

/* How a device asks the worker to stop the VM (power off, reset, debug exit).
 * Safe to call from any thread with the device lock held. */
enum vm_stop_reason { VM_STOP_POWEROFF, VM_STOP_RESET, VM_STOP_DEBUG_EXIT, VM_STOP_ERROR, VM_STOP_SIGNAL, VM_STOP_TIMEOUT };
struct vm_ctl {
	void (*request_stop)(void *opaque, enum vm_stop_reason why, int code);
	void *opaque;
};

static inline void vm_request_stop(const struct vm_ctl *c, enum vm_stop_reason why, int code)
{
	if (c->request_stop)
		c->request_stop(c->opaque, why, code);
}

#endif
