/* What guest_mem.c and guest_mem_dirty.c share: the lock-free slot lookup,
 * KVM's copy of a slot, and the dirty-bit bookkeeping around slot changes. */
#ifndef KESTREL_GUEST_MEM_INT_H
#define KESTREL_GUEST_MEM_INT_H

#include "kestrel/guest_mem.h"

#define GM_SLOT_FLAGS_ALL (GM_SLOT_RAM | GM_SLOT_READONLY | GM_SLOT_LOG_DIRTY)

/* The lookup table's fields: loads without the lock, the writers' stores. */
#define RD(x)	 __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WR(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* The slot holding addr, from one consistent view of the table. */
bool gm_find(const struct guest_mem *gm, uint64_t addr, struct gm_map_entry *h);

/* gm->lock held from here on. */

/* Create/update (present) or delete KVM's slot id as the entry says. */
int gm_kvm_set(struct guest_mem *gm, int id, bool present) WARN_UNUSED;
/* Release the entry's memory and bitmap; the entry is unpublished. */
void gm_slot_free(struct guest_mem *gm, int id);
/* Around a change that makes KVM drop the slot's log (delete, move,
 * re-create): harvest KVM's log before, mark the whole slot after. */
void gm_dirty_before_change(struct guest_mem *gm, int id);
void gm_dirty_after_change(struct guest_mem *gm, int id);

static inline bool gm_slot_logged(const struct guest_mem *gm, const struct gm_slot *s)
{
	return (s->flags & GM_SLOT_LOG_DIRTY) ||
	       ((s->flags & GM_SLOT_RAM) && __atomic_load_n(&gm->ram_logging, __ATOMIC_RELAXED));
}

#endif
