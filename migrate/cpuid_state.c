/* The CPUID each vCPU saw (record CPUI, docs/state.md). A restored guest
 * gets the very table it booted with, so a feature it found stays there;
 * a host that cannot offer a feature the guest may be using refuses the
 * restore instead (Cloud Hypervisor's migration does the same check). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kestrel/cpuid.h"
#include "kestrel/kvm_state.h"

#define CPUID_FLAG_KNOWN (KVM_CPUID_FLAG_SIGNIFCANT_INDEX)

static struct kvm_cpuid2 *cpuid_alloc(unsigned n)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	if (c)
		c->nent = n;
	return c;
}

/* Body: u32 vCPU count, then per vCPU u32 entry count and per entry u32
 * function, index, flags, eax, ebx, ecx, edx. */
void cpuid_state_put(struct state_buf *b, const struct kvm_cpuid2 *const *tabs, unsigned n)
{
	state_put_u32(b, n);
	for (unsigned i = 0; i < n; i++) {
		state_put_u32(b, tabs[i]->nent);
		for (unsigned k = 0; k < tabs[i]->nent; k++) {
			const struct kvm_cpuid_entry2 *e = &tabs[i]->entries[k];

			state_put_u32(b, e->function);
			state_put_u32(b, e->index);
			state_put_u32(b, e->flags & CPUID_FLAG_KNOWN);
			state_put_u32(b, e->eax);
			state_put_u32(b, e->ebx);
			state_put_u32(b, e->ecx);
			state_put_u32(b, e->edx);
		}
	}
}

static struct kvm_cpuid2 *cpuid_table_get(struct state_buf *b)
{
	uint32_t n = state_get_u32(b);
	struct kvm_cpuid2 *c;

	if (b->error || n == 0 || n > CPUID_SAVE_MAX_ENTRIES || n * 28ull > b->len - b->pos)
		return NULL;
	c = cpuid_alloc(n);
	for (uint32_t k = 0; c && k < n; k++) {
		struct kvm_cpuid_entry2 *e = &c->entries[k];

		e->function = state_get_u32(b);
		e->index = state_get_u32(b);
		e->flags = state_get_u32(b);
		e->eax = state_get_u32(b);
		e->ebx = state_get_u32(b);
		e->ecx = state_get_u32(b);
		e->edx = state_get_u32(b);
		if (e->flags & ~CPUID_FLAG_KNOWN) {
			free(c);
			return NULL;
		}
	}
	return c;
}

int cpuid_state_parse(struct state_buf *b, unsigned n, struct kvm_cpuid2 ***out)
{
	struct kvm_cpuid2 **tabs;
	unsigned got = state_get_u32(b), i;

	if (b->error || got != n || n == 0)
		return -EINVAL;
	tabs = calloc(n, sizeof(*tabs));
	if (!tabs)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		if (!(tabs[i] = cpuid_table_get(b)))
			break;
	if (i == n && !b->error && b->pos == b->len) {
		*out = tabs;
		return 0;
	}
	for (unsigned k = 0; k < n; k++)
		free(tabs[k]);
	free(tabs);
	return -EINVAL;
}

/* Feature words: leaf, subleaf, register, bits a VMM sets itself on top
 * of KVM's table (cpuid_adjust: hypervisor, HTT; cpuid_get_supported: the
 * TSC-deadline timer) or the guest's own doing (OSXSAVE) and so not
 * compared. The words are those --cpu filters (src/vm/cpu_model.c), plus
 * XCR0's components: a guest may have state in them. */
static const struct {
	uint32_t fn, idx;
	int reg;
	uint32_t ignore;
} cpuid_features[] = {
	{ 1, 0, CPUID_ECX, (1u << 31) | (1u << 27) | (1u << 24) },
	{ 1, 0, CPUID_EDX, 1u << 28 },
	{ 7, 0, CPUID_EBX, 0 },
	{ 7, 0, CPUID_ECX, 0 },
	{ 7, 0, CPUID_EDX, 0 },
	{ 7, 1, CPUID_EAX, 0 },
	{ 0xd, 0, CPUID_EAX, 0 },
	{ 0xd, 1, CPUID_EAX, 0 },
	{ 0x80000001, 0, CPUID_ECX, 0 },
	{ 0x80000001, 0, CPUID_EDX, 0 },
	{ 0x80000007, 0, CPUID_EDX, 0 },
	{ 0x80000008, 0, CPUID_EBX, 0 },
};

int cpuid_state_check(const struct kvm_cpuid2 *saved, const struct kvm_cpuid2 *supported, char *err,
		      size_t errlen)
{
	struct cpuid_names missing = { 0 };

	for (size_t i = 0; i < ARRAY_SIZE(cpuid_features); i++) {
		const struct kvm_cpuid_entry2 *s =
			cpuid_entry(saved, cpuid_features[i].fn, cpuid_features[i].idx);
		const struct kvm_cpuid_entry2 *h =
			cpuid_entry(supported, cpuid_features[i].fn, cpuid_features[i].idx);
		uint32_t want, have;

		if (!s)
			continue;
		want = cpuid_reg_get(s, cpuid_features[i].reg) & ~cpuid_features[i].ignore;
		have = h ? cpuid_reg_get(h, cpuid_features[i].reg) : 0;
		cpuid_names_append(&missing, cpuid_features[i].fn, cpuid_features[i].idx,
				   cpuid_features[i].reg, want & ~have);
	}
	if (!missing.count)
		return 0;
	snprintf(err, errlen, "the saved CPU has %s that this host's KVM cannot offer",
		 cpuid_names_text(&missing));
	return -ENOTSUP;
}
