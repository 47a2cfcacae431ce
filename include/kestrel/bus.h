/* Port I/O and MMIO routing: ranges map to (device, region). Overlaps are rejected. */
#ifndef KESTREL_BUS_H
#define KESTREL_BUS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "kestrel/device.h"

struct bus_range {
	uint64_t base, len;
	struct device *dev;
	int region;
	uint64_t hits; /* accesses dispatched here (--stats) */
};

struct bus {
	const char *name;
	struct bus_range *ranges; /* sorted by base */
	int nr, cap;
	pthread_rwlock_t lock; /* writers: insert/remove (rare); readers: dispatch */
	uint64_t unhandled;    /* accesses that hit no device (counted, ignored) */
};

void bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);
/* -EEXIST on overlap, -EINVAL on empty/wrapping range. */
int bus_insert(struct bus *bus, uint64_t base, uint64_t len, struct device *dev,
	       int region) WARN_UNUSED;
int bus_remove(struct bus *bus, uint64_t base);
/* Dispatch one access; returns false (and counts it) if no device claims addr.
 * Unclaimed reads return all ones, as on a real ISA bus. */
bool bus_read(struct bus *bus, uint64_t addr, void *data, unsigned size);
bool bus_write(struct bus *bus, uint64_t addr, const void *data, unsigned size);
/* count accesses of size bytes each to one address (string port I/O: data
 * holds count elements), with one lookup and the device lock taken once. */
bool bus_read_string(struct bus *bus, uint64_t addr, void *data, unsigned size, uint32_t count);
bool bus_write_string(struct bus *bus, uint64_t addr, const void *data, unsigned size,
		      uint32_t count);
/* One line: the ranges that saw accesses, busiest first ("name@base=hits"). */
void bus_print_hits(struct bus *bus, FILE *f);

#endif
