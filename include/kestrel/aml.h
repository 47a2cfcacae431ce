/* A tiny AML byte-code builder (ACPI 6.4 chapter 20, "ACPI Machine Language
 * Specification") for the few objects our DSDT needs: names, integers,
 * strings, packages, buffers, scopes, devices and resource templates.
 *
 * The builder writes into a caller-owned buffer and keeps a sticky error:
 * calls after the first failure do nothing, and aml_finish() reports it. So a
 * table is written as a plain list of calls with one check at the end. */
#ifndef KESTREL_AML_H
#define KESTREL_AML_H

#include <stddef.h>
#include <stdint.h>
#include "kestrel/util.h"

#define AML_MAX_DEPTH	  8
#define AML_PKGLENGTH_MAX ((1u << 28) - 1) /* 4-byte form: 4 + 8 + 8 + 8 bits */

struct aml {
	uint8_t *buf;
	size_t cap, len;
	size_t open[AML_MAX_DEPTH]; /* where each open object's PkgLength goes */
	unsigned depth;
	int err; /* first error: -ENOSPC, -EINVAL; 0 while all is well */
};

void aml_init(struct aml *a, void *buf, size_t cap);
/* Bytes written, or the first error (-EINVAL also if an object is still open). */
long aml_finish(const struct aml *a) WARN_UNUSED;

/* PkgLength (20.2.4) of exactly `value` (which counts the PkgLength bytes
 * themselves) into out; returns its size 1..4, or -EINVAL above 2^28-1. */
int aml_pkglength_encode(uint8_t out[4], uint32_t value) WARN_UNUSED;
/* Size of the PkgLength that prefixes a body of `body` bytes: the smallest n
 * with body + n encodable in n bytes; 0 if none is. */
unsigned aml_pkglength_size(size_t body);

/* Data objects (20.2.3). aml_integer picks Zero/One/Byte/Word/DWord/QWord. */
void aml_bytes(struct aml *a, const void *p, size_t n);
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* "PNP0A03" -> the 32-bit compressed EISA id (6.1.5 _HID), as an Integer. */
void aml_eisaid(struct aml *a, const char *id);
int aml_eisaid_value(const char *id, uint32_t *out) WARN_UNUSED;
/* NameString (20.2.2): "\\_SB.PCI0", "^FOO", "_S5" (segments padded with '_'). */
void aml_namestring(struct aml *a, const char *path);
void aml_buffer(struct aml *a, const void *data, size_t n);

/* Name(path, <next object>): emit NameOp and the name; the caller emits the value. */
void aml_name(struct aml *a, const char *path);

/* Objects with a PkgLength are opened, filled, then closed with aml_end(). */
void aml_scope(struct aml *a, const char *path);
void aml_device(struct aml *a, const char *path);
void aml_package(struct aml *a, unsigned nelems); /* up to 255 elements */
void aml_end(struct aml *a);

/* Resource data (6.4), written into a struct aml used as a plain byte sink. */
enum aml_mem_cache {
	AML_MEM_NONCACHEABLE = 0,
	AML_MEM_CACHEABLE = 1,
	AML_MEM_WC = 2,
	AML_MEM_PREFETCH = 3
};
void aml_res_io(struct aml *rt, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
void aml_res_irq_noflags(struct aml *rt, unsigned irq);
/* Address space descriptors for a bridge window: producer, min/max fixed,
 * positive decode, granularity and translation 0, length max-min+1. */
void aml_res_word_bus(struct aml *rt, uint16_t min, uint16_t max);
void aml_res_word_io(struct aml *rt, uint16_t min, uint16_t max);
void aml_res_dword_mem(struct aml *rt, enum aml_mem_cache c, uint32_t min, uint32_t max);
void aml_res_qword_mem(struct aml *rt, enum aml_mem_cache c, uint64_t min, uint64_t max);
/* ResourceTemplate(): append the End Tag to rt and emit it as a Buffer into a. */
void aml_resource_template(struct aml *a, struct aml *rt);

#endif
