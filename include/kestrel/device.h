/* A device as the bus sees it: a const ops table and a lock. */
#ifndef KESTREL_DEVICE_H
#define KESTREL_DEVICE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "kestrel/util.h"

struct device;
struct state_buf;

/* One ops table per device model, const (nothing writes it at run time).
 * The bus calls read/write with dev->lock held. The registry (struct
 * dev_list below, walked by src/machine.c) calls reset, save and load with
 * dev->lock held too, and only while the vCPUs are paused; quiesce, resume,
 * realize and destroy are called without it. Every op but read/write may be
 * NULL: the registry then skips the device (save/load: a device without
 * them has no state and says so in the registry's docs/devices.md table). */
struct dev_ops {
	const char *name;
	/* Once, after every device of the machine exists and is wired, before
	 * a vCPU runs: what needs the board complete. 0 or -errno. */
	int (*realize)(struct device *dev);
	/* Power-on state, as after a hardware reset. */
	void (*reset)(struct device *dev);
	/* region: the id given to bus_insert; off: offset inside that region;
	 * size: 1, 2, 4 or 8. Reads return the value zero-extended. */
	uint64_t (*read)(struct device *dev, int region, uint64_t off, unsigned size);
	void (*write)(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val);
	/* Stop the device's own threads and finish what they took: when it
	 * returns nothing of the device touches guest memory or a queue, and
	 * every request taken from the guest has been completed (or put back
	 * where the guest left it). The state is kept; resume restarts. */
	void (*quiesce)(struct device *dev);
	/* After quiesce (or a load into a quiesced device): run again.
	 * 0 or -errno (the device then reports the error to its guest). */
	int (*resume)(struct device *dev);
	/* One or more versioned sections of fixed-endian fields (kestrel/state.h).
	 * load validates everything first and changes nothing unless the whole
	 * section is good (-EINVAL); -EBUSY when the device is not quiesced. */
	int (*save)(struct device *dev, struct state_buf *out);
	int (*load)(struct device *dev, struct state_buf *in);
	void (*destroy)(struct device *dev);
};

/* Stable names: lower-case letters, digits and '-', at most DEV_ID_MAX - 1
 * characters. Singletons of the board by their function ("com1", "rtc",
 * "i8042", "pm", "debug-exit", "post", "pci-host", later "vga"), devices
 * that may come more than once by kind and index from 0 ("scsi0", "net0",
 * later "ide0", "tulip0"). Used by the control socket and as the key of a
 * device's state in a saved VM. */
#define DEV_ID_MAX 16

/* Embedded as the first member of each device's state struct. The bus takes
 * lock around read/write; other threads touching the device take it too. */
struct device {
	const struct dev_ops *ops;
	pthread_mutex_t lock;
	char id[DEV_ID_MAX]; /* "" until registered */
};

void device_init(struct device *dev, const struct dev_ops *ops);
/* One register access under the device's lock, as the buses and guest
 * memory's read-only slots make them. A missing handler ignores writes and
 * reads all ones. */
uint64_t device_read(struct device *dev, int region, uint64_t off, unsigned size);
void device_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val);

/* ---- the registry: a machine's devices in creation order ---- */

#define DEV_LIST_MAX 64

struct dev_list {
	struct device *dev[DEV_LIST_MAX];
	unsigned n;
	bool quiesced;
};

/* Register dev under id (copied into dev->id). -EINVAL: a bad id or NULL
 * dev; -EEXIST: the id or the device is there already; -ENOSPC: full. */
int dev_list_add(struct dev_list *l, struct device *dev, const char *id) WARN_UNUSED;
struct device *dev_list_find(const struct dev_list *l, const char *id);
/* realize in order; the first error stops (*failed: that device). */
int dev_list_realize(struct dev_list *l, struct device **failed) WARN_UNUSED;
/* reset in order, each under its lock. */
void dev_list_reset(struct dev_list *l);
/* quiesce in reverse order (a device is stopped before what it uses),
 * resume in order; both idempotent. resume returns the first error but
 * resumes every device. */
void dev_list_quiesce(struct dev_list *l);
int dev_list_resume(struct dev_list *l) WARN_UNUSED;
/* destroy in reverse order and empty the list. */
void dev_list_destroy(struct dev_list *l);
/* Every device's state, each in a section naming its id, in list order. */
int dev_list_save(struct dev_list *l, struct state_buf *out) WARN_UNUSED;
/* Load a stream dev_list_save wrote: each section into the device of that
 * id. -ENOENT: an id this machine does not have; -ENODATA: a device of this
 * machine missing from the stream; a device's own error otherwise. A device
 * whose section is bad is left unchanged, but devices before it in the
 * stream have been loaded: restore into a fresh machine and throw it away
 * when this fails. */
int dev_list_load(struct dev_list *l, struct state_buf *in) WARN_UNUSED;
/* The id is a well-formed device id (see DEV_ID_MAX). */
bool dev_id_valid(const char *id);

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
/* SAVED: the VM's state went to a file (kestrel ctl NAME save) and the
 * worker ends, as Hyper-V's "Save" turns the VM off until it is restored.
 * APPLY: a snapshot is being applied: the machine is rebuilt from it. */
enum vm_stop_reason {
	VM_STOP_POWEROFF,
	VM_STOP_RESET,
	VM_STOP_DEBUG_EXIT,
	VM_STOP_ERROR,
	VM_STOP_SIGNAL,
	VM_STOP_TIMEOUT,
	VM_STOP_SAVED,
	VM_STOP_APPLY
};
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
