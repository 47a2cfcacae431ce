/* Guest physical memory: memory slots, the holes between them, the one
 * accessor every guest-physical access by the VMM goes through, and dirty
 * tracking.
 *
 * Design
 * - RAM is one host mapping, the RAM backing: lazily populated
 *   (MAP_NORESERVE), 2 MiB aligned or hugetlb, kept across an in-place
 *   reboot (gm_retain_next). Slots map parts of it at guest-physical
 *   addresses; a slot may instead map memory a device owns (a framebuffer,
 *   a firmware image). Below 4 GiB RAM offset == guest-physical address, so
 *   the RAM behind a hole exists in the backing but the guest cannot reach
 *   it (as QEMU's pc machine does with the VGA window).
 * - gm_init lays out the PC: [0, 640K) RAM, [640K, 768K) the legacy VGA
 *   window left as a hole (MMIO: its device traps it), [768K, 960K) RAM
 *   (the option-ROM area), [960K, 1M) the system BIOS segment (RAM, which the
 *   machine write-protects), [1M, ram_low) RAM, the 32-bit PCI hole, RAM again
 *   from 4 GiB. The pieces below 1 MiB are separate slots so that a chipset
 *   model (i440FX PAM) can remap them without touching the rest.
 * - Slots never overlap. A slot's id is also its KVM slot number and stays the
 *   same for its life: moves and flag changes keep it. At most GM_MAX_SLOTS.
 * - Lookups take no lock: the slot table is published under a sequence
 *   counter (a seqlock); slot changes, which are rare (BAR moves, PAM writes),
 *   serialise on a mutex and never sleep inside the write section. KVM's own
 *   table is updated outside it (KVM_SET_USER_MEMORY_REGION is safe while
 *   vCPUs run).
 * - gm_ptr, gm_read and gm_write reach only writable RAM: device DMA never
 *   lands in a read-only slot, in device memory (peer-to-peer into a
 *   framebuffer BAR is refused) or in a hole. What they return points into
 *   the RAM backing, which stays mapped as long as the guest_mem: a pointer
 *   taken before a slot change stays safe to use (a removed RAM slot only
 *   hides that RAM from the guest).
 * - Read-only slots (KVM_MEM_READONLY): KVM serves reads; a guest write
 *   exits (KVM_EXIT_MMIO) and the vCPU hands it to gm_mmio_write, which
 *   delivers it to the slot's sink device (ops->write with the sink's region
 *   and the offset inside the slot) or drops it, counting it either way.
 * - Dirty tracking, a bit per 4 KiB page. KVM's log (KVM_MEM_LOG_DIRTY_PAGES)
 *   sees the guest's writes; writes by the VMM itself are marked by gm_write
 *   and by devices (gm_mark_dirty, gm_mark_dirty_hva, gm_mark_dirty_iov;
 *   virtqueue users through vq_mark_written). The bits live with the memory,
 *   not with the slot: all RAM slots share one bitmap indexed by RAM offset,
 *   a device-memory slot has its own. gm_dirty_fetch first moves KVM's log of
 *   the slot into that bitmap (KVM_GET_DIRTY_LOG, then KVM_CLEAR_DIRTY_LOG
 *   when KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is enabled), then copies the
 *   slot's bits out and clears them: one call gives both kinds. A slot change
 *   harvests KVM's log first and marks the whole slot afterwards (KVM drops a
 *   moved or re-created slot's log), so no write is ever lost, only possibly
 *   reported twice. RAM is logged between gm_dirty_log_start and
 *   gm_dirty_log_stop (logging costs the guest a write fault per page and
 *   round); a slot made with GM_SLOT_LOG_DIRTY (a framebuffer) always.
 *   Marking while RAM is not logged is one relaxed load.
 * - Who marks: gm_write (each copy); the virtqueue (the used ring, each
 *   time it writes it); virtio-scsi (response, sense and data-in of every
 *   chain it returns, which covers READ data the block layer wrote into
 *   guest memory) and virtio-net (received frames, control acks) through
 *   vq_mark_written before they push. A device that writes through a
 *   pointer from gm_ptr marks with gm_mark_dirty_hva/_iov after writing.
 *   Loaders and the ACPI builder write before the vCPUs run, when nothing
 *   can be logging yet; they do not mark. */
#ifndef KESTREL_GUEST_MEM_H
#define KESTREL_GUEST_MEM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kestrel/util.h"

/* Board memory map (x86 PC): RAM below the PCI hole, the hole for 32-bit MMIO
 * (PCI BARs, IOAPIC, LAPIC, HPET), RAM again from 4 GiB. */
#define GM_LOWMEM_MAX	0xC0000000ULL  /* 3 GiB: start of the 32-bit PCI hole */
#define GM_HIGHMEM_BASE 0x100000000ULL /* 4 GiB */

#define GM_PAGE_SHIFT	 12
#define GM_PAGE_SIZE	 (1ULL << GM_PAGE_SHIFT)
#define GM_MAX_SLOTS	 32
#define GM_SLOT_NAME_MAX 16

/* Slot flags. */
#define GM_SLOT_RAM	  (1u << 0) /* maps the RAM backing at ram_offset */
#define GM_SLOT_READONLY  (1u << 1) /* guest writes go to the sink, not to memory */
#define GM_SLOT_LOG_DIRTY (1u << 2) /* dirty-logged for its whole life (device memory) */

struct device;

/* What gm_slot_add maps. */
struct gm_slot_spec {
	const char *name;    /* for messages and stats: "bios", "vga-vram" */
	uint64_t gpa, size;  /* page-aligned, size > 0, no wrap */
	unsigned flags;	     /* GM_SLOT_* */
	uint64_t ram_offset; /* GM_SLOT_RAM: where in the RAM backing */
	/* Otherwise the device's memory (page-aligned, size bytes), or NULL: a
	 * zeroed anonymous mapping made for the slot and unmapped with it. */
	void *hva;
	/* GM_SLOT_READONLY: where guest writes go (NULL: they are dropped). */
	struct device *sink;
	int sink_region;
};

/* One slot as lookups see it: the table of these, sorted by gpa, is what the
 * seqlock publishes (readers load each field with a relaxed atomic). */
struct gm_map_entry {
	uint64_t gpa, size;
	uint8_t *hva;
	uint64_t ram_offset;
	struct device *sink;
	int sink_region;
	unsigned flags;
	int id;
};

/* One slot by id; the writers' record (under gm->lock), published to the
 * lookup table after every change. */
struct gm_slot {
	uint64_t gpa, size; /* size 0: the id is free */
	uint8_t *hva;
	unsigned flags;
	struct device *sink;
	int sink_region;
	uint64_t ram_offset;
	uint64_t *dirty;  /* device memory with GM_SLOT_LOG_DIRTY: its bitmap */
	bool owns_hva;	  /* hva was mapped by gm_slot_add */
	bool kvm_logging; /* registered with KVM_MEM_LOG_DIRTY_PAGES */
	uint64_t writes;  /* guest writes that reached the slot (atomic) */
	char name[GM_SLOT_NAME_MAX];
};

/* A copy of one slot (gm_slot_get, gm_slots). */
struct gm_slot_info {
	int id;
	char name[GM_SLOT_NAME_MAX];
	uint64_t gpa, size;
	unsigned flags;
	uint64_t ram_offset;
	void *hva;
	bool logging;	 /* dirty-logged now */
	uint64_t writes; /* guest writes to a read-only slot */
};

struct guest_mem {
	/* The RAM backing. */
	void *map; /* the host mapping of all RAM */
	uint64_t map_size;
	uint64_t ram_size; /* total RAM bytes (== map_size) */
	uint64_t ram_low;  /* RAM below the PCI hole: it ends here */
	uint64_t ram_high; /* RAM from GM_HIGHMEM_BASE */
	bool hugepages;
	bool file_backed;    /* gm_map_file: a private mapping of a saved VM's file */
	uint64_t *ram_dirty; /* a bit per page of the backing (mapped lazily) */
	uint64_t ram_dirty_bytes;
	bool ram_logging; /* atomic: RAM is dirty-logged */

	/* The slots. */
	pthread_mutex_t lock; /* slot changes and KVM log harvests */
	struct gm_slot slot[GM_MAX_SLOTS];
	unsigned seq;			       /* seqlock over tab[] and nr: odd while written */
	struct gm_map_entry tab[GM_MAX_SLOTS]; /* the used slots, by gpa */
	unsigned nr;

	/* KVM, once attached (vm_fd -1 before: the table alone, as in unit tests). */
	int vm_fd;
	unsigned max_slots;	 /* KVM_CAP_NR_MEMSLOTS, at most GM_MAX_SLOTS */
	bool kvm_manual_protect; /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled */
};

/* Map RAM lazily (MAP_NORESERVE) and lay it out as the PC's slots (see the
 * top of this file). hugepages: back with MAP_HUGETLB. 0 or -errno. */
int gm_init(struct guest_mem *gm, uint64_t ram_size, bool hugepages) WARN_UNUSED;
void gm_destroy(struct guest_mem *gm);
/* Back all RAM with a private mapping of fd at offset (page-aligned; the file
 * must hold map_size bytes from there): each page is read from the file the
 * first time the guest or the VMM touches it, and writes stay private. This
 * is how a saved VM is restored lazily (migrate/ram.c, Firecracker's way).
 * Call before the vCPUs run: what RAM held is dropped. 0 or -errno. */
int gm_map_file(struct guest_mem *gm, int fd, uint64_t offset) WARN_UNUSED;
/* on: the next gm_destroy keeps the mapping, zeroing the pages the guest
 * touched, for the next gm_init of the same size (a guest reboot in place). */
void gm_retain_next(bool on);
/* Register every slot with KVM and keep KVM in step from now on: enables
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 when the host has it and caps the slot
 * count at KVM_CAP_NR_MEMSLOTS. Call once, before the vCPUs run. 0 or -errno. */
int gm_attach_kvm(struct guest_mem *gm, int kvm_fd, int vm_fd) WARN_UNUSED;

/* ---- the accessor (any thread) ---- */

/* Host pointer for [gpa, gpa+len) if the whole range lies inside one
 * writable RAM slot, else NULL. Overflow-safe; len 0 is valid inside RAM. */
void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
/* Copy in/out; 0 or -EFAULT when any byte is outside writable RAM. gm_write
 * marks what it wrote dirty. */
int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len) WARN_UNUSED;
int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len) WARN_UNUSED;

/* The RAM backing itself at [offset, offset+len), whatever maps it or not:
 * for the board filling firmware areas before the guest runs, and for a
 * chipset copying shadow RAM. NULL if the range is not all RAM. Whoever
 * writes through it while RAM is logged marks it (gm_mark_dirty_hva). */
void *gm_ram_ptr(const struct guest_mem *gm, uint64_t offset, uint64_t len);

/* ---- slots (any thread; they serialise on gm->lock) ---- */

/* Map a slot; its id (>= 0), or -EINVAL (bad spec), -EEXIST (overlaps a
 * slot), -ENOSPC (no free id), -ENOMEM, or KVM's -errno. */
int gm_slot_add(struct guest_mem *gm, const struct gm_slot_spec *spec) WARN_UNUSED;
/* Unmap a slot (its memory, if gm_slot_add mapped it). 0 or -ENOENT / -errno. */
int gm_slot_remove(struct guest_mem *gm, int id) WARN_UNUSED;
/* Move a slot to gpa (a BAR the guest reprogrammed); same memory, same id,
 * its dirty bits kept (and all of it marked: KVM drops the log on a move).
 * 0 or -EINVAL, -EEXIST (overlap), -ENOENT, -errno. */
int gm_slot_move(struct guest_mem *gm, int id, uint64_t gpa) WARN_UNUSED;
/* Change GM_SLOT_READONLY / GM_SLOT_LOG_DIRTY and the sink (PAM: shadow RAM
 * read-only or read-write). KVM cannot change READONLY in place, so the slot
 * is deleted and created again there: a vCPU touching it in between sees a
 * hole for that moment. 0 or -EINVAL / -ENOENT / -errno. */
int gm_slot_set_flags(struct guest_mem *gm, int id, unsigned flags, struct device *sink,
		      int sink_region) WARN_UNUSED;
/* The id of the slot holding gpa, or -ENOENT. */
int gm_slot_at(const struct guest_mem *gm, uint64_t gpa);
/* A copy of slot id: 0 or -ENOENT. */
int gm_slot_get(struct guest_mem *gm, int id, struct gm_slot_info *out) WARN_UNUSED;
/* Copies of all slots by address (at most max); returns how many there are. */
int gm_slots(struct guest_mem *gm, struct gm_slot_info *out, int max);

/* A vCPU's MMIO write exit: if gpa lies in a read-only slot, count it, hand
 * it to the slot's sink (if any) and return true; else false (the bus's). */
bool gm_mmio_write(struct guest_mem *gm, uint64_t gpa, const void *data, unsigned len);

/* ---- dirty tracking ---- */

/* Start logging RAM with no page dirty; -EBUSY if it is on already. */
int gm_dirty_log_start(struct guest_mem *gm) WARN_UNUSED;
void gm_dirty_log_stop(struct guest_mem *gm);
bool gm_dirty_logging(const struct guest_mem *gm);
/* The VMM wrote [gpa, gpa+len) of RAM (device DMA, loaders): KVM's log sees
 * only the guest's own writes. Bytes outside RAM are ignored. */
void gm_mark_dirty(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
/* The same for a host pointer into RAM (one gm_ptr returned): no lookup. */
void gm_mark_dirty_hva(const struct guest_mem *gm, const void *hva, uint64_t len);
/* The first len bytes of a scatter list of RAM pointers were written. */
void gm_mark_dirty_iov(const struct guest_mem *gm, const struct iovec *iov, unsigned n,
		       uint64_t len);
/* A device wrote [off, off+len) of the memory behind its GM_SLOT_LOG_DIRTY slot. */
void gm_slot_mark_dirty(struct guest_mem *gm, int id, uint64_t off, uint64_t len);
/* The slot's dirty pages, KVM's log and the VMM's marks merged: bit i of
 * bitmap (at least nbits >= size / 4 KiB bits, in 64-bit words) = page i of
 * the slot. clear: also forget them, so the next fetch reports only what is
 * dirtied after this one. Returns the number of dirty pages, or -ENOENT,
 * -EINVAL (the slot is not logged), -ENOSPC (bitmap too small), KVM's -errno. */
long gm_dirty_fetch(struct guest_mem *gm, int id, uint64_t *bitmap, uint64_t nbits,
		    bool clear) WARN_UNUSED;

#endif
