/* Address routing for port I/O and MMIO. Ranges are kept sorted and never
 * overlap, so dispatch is a binary search under a read lock. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/bus.h"

void bus_init(struct bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	pthread_rwlock_init(&bus->lock, NULL);
}

void bus_destroy(struct bus *bus)
{
	free(bus->ranges);
	pthread_rwlock_destroy(&bus->lock);
	bus->ranges = NULL;
	bus->nr = bus->cap = 0;
}

/* Index of the first range with base > addr. */
static int bus_upper(const struct bus *bus, uint64_t addr)
{
	int lo = 0, hi = bus->nr;

	while (lo < hi) {
		int mid = (lo + hi) / 2;

		if (bus->ranges[mid].base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int bus_insert(struct bus *bus, uint64_t base, uint64_t len, struct device *dev, int region)
{
	int i, ret = 0;

	if (len == 0 || base + len - 1 < base)
		return -EINVAL;
	pthread_rwlock_wrlock(&bus->lock);
	i = bus_upper(bus, base);
	if ((i > 0 && bus->ranges[i - 1].base + bus->ranges[i - 1].len > base) ||
	    (i < bus->nr && bus->ranges[i].base <= base + len - 1)) {
		ret = -EEXIST;
		goto out;
	}
	if (bus->nr == bus->cap) {
		int cap = bus->cap ? bus->cap * 2 : 16;
		struct bus_range *n = realloc(bus->ranges, cap * sizeof(*n));

		if (!n) {
			ret = -ENOMEM;
			goto out;
		}
		bus->ranges = n;
		bus->cap = cap;
	}
	memmove(&bus->ranges[i + 1], &bus->ranges[i], (bus->nr - i) * sizeof(*bus->ranges));
	bus->ranges[i] =
		(struct bus_range){ .base = base, .len = len, .dev = dev, .region = region };
	bus->nr++;
out:
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

int bus_remove(struct bus *bus, uint64_t base)
{
	int ret = -ENOENT;

	pthread_rwlock_wrlock(&bus->lock);
	for (int i = 0; i < bus->nr; i++) {
		if (bus->ranges[i].base != base)
			continue;
		memmove(&bus->ranges[i], &bus->ranges[i + 1],
			(bus->nr - i - 1) * sizeof(*bus->ranges));
		bus->nr--;
		ret = 0;
		break;
	}
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

static const struct bus_range *bus_find(const struct bus *bus, uint64_t addr)
{
	int i = bus_upper(bus, addr);

	if (i == 0)
		return NULL;
	if (addr - bus->ranges[i - 1].base >= bus->ranges[i - 1].len)
		return NULL;
	return &bus->ranges[i - 1];
}

static bool bus_access(struct bus *bus, uint64_t addr, void *data, unsigned size, bool is_write)
{
	const struct bus_range *r;
	struct device *dev;
	uint64_t val = 0, base;
	int region;

	if (size == 0 || size > 8)
		return false;
	pthread_rwlock_rdlock(&bus->lock);
	r = bus_find(bus, addr);
	if (!r) {
		pthread_rwlock_unlock(&bus->lock);
		__atomic_add_fetch(&bus->unhandled, 1, __ATOMIC_RELAXED);
		if (!is_write)
			memset(data, 0xff, size);
		return false;
	}
	dev = r->dev;
	region = r->region;
	base = r->base;
	__atomic_add_fetch(&((struct bus_range *)r)->hits, 1, __ATOMIC_RELAXED);
	/* Drop the bus lock before calling the device: a device may remap its own
	 * ranges (PCI BAR writes). Devices removed from a bus stay allocated until
	 * the VM is torn down, after every vCPU has stopped. */
	pthread_rwlock_unlock(&bus->lock);
	if (is_write) {
		memcpy(&val, data, size); /* x86 is little-endian, as both buses are */
		device_write(dev, region, addr - base, size, val);
	} else {
		val = device_read(dev, region, addr - base, size);
		memcpy(data, &val, size);
	}
	return true;
}

bool bus_read(struct bus *bus, uint64_t addr, void *data, unsigned size)
{
	return bus_access(bus, addr, data, size, false);
}

bool bus_write(struct bus *bus, uint64_t addr, const void *data, unsigned size)
{
	return bus_access(bus, addr, (void *)data, size, true);
}

/* A string instruction's elements all go to one port (`rep insw` of a
 * sector: 256 of them in one KVM exit). Look the range up and take the
 * device lock once for the whole run instead of once per element, which
 * was ~100 ns a word. The elements still reach the device one by one, in
 * order, as separate accesses. If a write moves the device's own range
 * (none of ours does from a data port), the rest of the run still goes to
 * the device that took the first element. */
static bool bus_string(struct bus *bus, uint64_t addr, uint8_t *data, unsigned size, uint32_t count,
		       bool is_write)
{
	struct bus_range *r;
	struct device *dev;
	uint64_t off, val;
	int region;

	if (size == 0 || size > 8)
		return false;
	pthread_rwlock_rdlock(&bus->lock);
	r = (struct bus_range *)bus_find(bus, addr);
	if (!r) {
		pthread_rwlock_unlock(&bus->lock);
		__atomic_add_fetch(&bus->unhandled, count, __ATOMIC_RELAXED);
		if (!is_write)
			memset(data, 0xff, (size_t)size * count);
		return false;
	}
	dev = r->dev;
	region = r->region;
	off = addr - r->base;
	__atomic_add_fetch(&r->hits, count, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&bus->lock);
	pthread_mutex_lock(&dev->lock);
	for (uint32_t i = 0; i < count; i++, data += size) {
		if (is_write) {
			val = 0;
			memcpy(&val, data, size);
			if (dev->ops->write)
				dev->ops->write(dev, region, off, size, val);
		} else {
			val = dev->ops->read ? dev->ops->read(dev, region, off, size) : ~0ULL;
			memcpy(data, &val, size);
		}
	}
	pthread_mutex_unlock(&dev->lock);
	return true;
}

bool bus_read_string(struct bus *bus, uint64_t addr, void *data, unsigned size, uint32_t count)
{
	return bus_string(bus, addr, data, size, count, false);
}

bool bus_write_string(struct bus *bus, uint64_t addr, const void *data, unsigned size,
		      uint32_t count)
{
	return bus_string(bus, addr, (void *)data, size, count, true);
}

static int hits_desc(const void *a, const void *b)
{
	const struct bus_range *x = a, *y = b;

	return x->hits < y->hits ? 1 : x->hits > y->hits ? -1 : 0;
}

void bus_print_hits(struct bus *bus, FILE *f)
{
	struct bus_range *copy;
	int n;

	pthread_rwlock_rdlock(&bus->lock);
	n = bus->nr;
	copy = n ? malloc(sizeof(*copy) * (size_t)n) : NULL;
	if (copy)
		memcpy(copy, bus->ranges, sizeof(*copy) * (size_t)n);
	pthread_rwlock_unlock(&bus->lock);
	if (!copy)
		return;
	qsort(copy, (size_t)n, sizeof(*copy), hits_desc);
	fprintf(f, "kestrel: stats: %s accesses:", bus->name);
	for (int i = 0; i < n && copy[i].hits; i++)
		fprintf(f, " %s@0x%llx=%llu", copy[i].dev->ops->name ? copy[i].dev->ops->name : "?",
			(unsigned long long)copy[i].base, (unsigned long long)copy[i].hits);
	fputc('\n', f);
	free(copy);
}
