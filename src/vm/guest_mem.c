/* Guest RAM and memory slots: the RAM backing (one lazily-populated host
 * mapping), the PC's layout, the slot table with its lock-free lookup, KVM's
 * copy of it, and the one bounds-checked accessor every guest-physical access
 * goes through. Dirty tracking is in guest_mem_dirty.c; the design is written
 * up at the top of include/kestrel/guest_mem.h. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "kestrel/board.h"
#include "kestrel/device.h"
#include "guest_mem_int.h"

/* Guest RAM kept from one boot to the next when the guest reboots in place
 * (--on-reboot restart): the next gm_init of the same shape takes it back
 * instead of mapping fresh memory. Besides saving the map/fault-in, this
 * keeps the host pages behind guest-physical addresses stable across the
 * VM's re-creation, as QEMU's in-place reset does: handing them back to the
 * host kernel and mapping new ones at once corrupted guests and froze the
 * nested test rig (QEMU TCG emulating SVM) within a few dozen reboots. */
static struct {
	void *map;
	uint64_t size;
	bool hugepages, retain_next;
} gm_spare;

void gm_retain_next(bool on)
{
	gm_spare.retain_next = on;
}

/* Zero what the last boot touched: a rebooted guest starts from zeroed RAM
 * as on first boot, and pages it never touched stay unallocated. */
static void gm_zero_resident(uint8_t *map, uint64_t size)
{
	const uint64_t page = 4096, chunk = 1ull << 30;
	static unsigned char vec[(1u << 30) / 4096];

	for (uint64_t off = 0; off < size; off += chunk) {
		uint64_t len = MIN(chunk, size - off);

		if (mincore(map + off, len, vec) < 0) {
			memset(map + off, 0, len); /* cannot tell: zero it all */
			continue;
		}
		for (uint64_t p = 0; p < len / page; p++)
			if (vec[p] & 1)
				memset(map + off + p * page, 0, page);
	}
}

/* The kept mapping if it has this shape (else it is dropped), or NULL. */
static void *gm_take_spare(uint64_t ram_size, bool hugepages)
{
	void *map = gm_spare.map;

	gm_spare.map = NULL;
	if (map && (gm_spare.size != ram_size || gm_spare.hugepages != hugepages)) {
		munmap(map, gm_spare.size);
		map = NULL;
	}
	return map;
}

/* Anonymous memory whose start is 2 MiB-aligned. KVM maps a guest's 2 MiB
 * page with one large page (THP behind it) only where the guest-physical
 * and host-virtual addresses agree modulo 2 MiB; an mmap() that is merely
 * page-aligned (what kernels before 6.7 return) would make every 4 KiB of
 * guest RAM a separate stage-2 fault and TLB entry. */
static void *gm_map_aligned(uint64_t size, int flags)
{
	const uint64_t align = 2ull << 20;
	uint8_t *raw, *start;
	uintptr_t head;

	if (flags & MAP_HUGETLB) /* hugetlbfs mappings come aligned */
		return mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
	raw = mmap(NULL, size + align, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (raw == MAP_FAILED)
		return MAP_FAILED;
	head = (align - ((uintptr_t)raw & (align - 1))) & (align - 1);
	start = raw + head;
	if (head)
		munmap(raw, head);
	munmap(start + size, align - head);
	return start;
}

/* ---- the seqlock over the slot table ---- */

/* Readers retry when a writer was inside; they never block it. The fields
 * they read are accessed with relaxed atomics (RD/WR), so a torn view is a
 * retried view, never undefined behaviour. */
static unsigned gm_read_begin(const struct guest_mem *gm)
{
	unsigned s;

	while ((s = __atomic_load_n(&gm->seq, __ATOMIC_ACQUIRE)) & 1)
		__builtin_ia32_pause();
	return s;
}

static bool gm_read_retry(const struct guest_mem *gm, unsigned s)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&gm->seq, __ATOMIC_RELAXED) != s;
}

static void gm_write_begin(struct guest_mem *gm)
{
	WR(gm->seq, gm->seq + 1);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void gm_write_end(struct guest_mem *gm)
{
	__atomic_store_n(&gm->seq, gm->seq + 1, __ATOMIC_RELEASE);
}

/* The last entry at or below addr in one view of the table (which may be
 * torn: the caller retries), or -1. A walk down from the top: the big RAM
 * slots, where nearly every access lands, are the highest ones, and the
 * table is short (measured: 5.6 ns a gm_ptr, against 6.8 for a binary
 * search, check_guest_mem lookup_cost). */
static int gm_index(const struct guest_mem *gm, uint64_t addr)
{
	int i = (int)MIN(RD(gm->nr), (unsigned)GM_MAX_SLOTS) - 1;

	while (i >= 0 && RD(gm->tab[i].gpa) > addr)
		i--;
	return i;
}

static bool gm_search(const struct guest_mem *gm, uint64_t addr, struct gm_map_entry *h)
{
	int i = gm_index(gm, addr);
	const struct gm_map_entry *e;

	if (i < 0)
		return false;
	e = &gm->tab[i];
	h->gpa = RD(e->gpa);
	h->size = RD(e->size);
	h->hva = RD(e->hva);
	h->ram_offset = RD(e->ram_offset);
	h->sink = RD(e->sink);
	h->sink_region = RD(e->sink_region);
	h->flags = RD(e->flags);
	h->id = RD(e->id);
	return addr - h->gpa < h->size;
}

bool gm_find(const struct guest_mem *gm, uint64_t addr, struct gm_map_entry *h)
{
	unsigned seq;
	bool found;

	do {
		seq = gm_read_begin(gm);
		found = gm_search(gm, addr, h);
	} while (gm_read_retry(gm, seq));
	return found;
}

/* Writers (gm->lock held): the lookup table again from the slots but hide,
 * sorted by address, in one write section. */
static void gm_publish(struct guest_mem *gm, int hide)
{
	struct gm_map_entry t[GM_MAX_SLOTS];
	unsigned n = 0;

	for (int id = 0; id < GM_MAX_SLOTS; id++) {
		const struct gm_slot *s = &gm->slot[id];
		unsigned i;

		if (!s->size || id == hide)
			continue;
		for (i = n++; i > 0 && t[i - 1].gpa > s->gpa; i--)
			t[i] = t[i - 1];
		t[i] = (struct gm_map_entry){ .gpa = s->gpa,
					      .size = s->size,
					      .hva = s->hva,
					      .ram_offset = s->ram_offset,
					      .sink = s->sink,
					      .sink_region = s->sink_region,
					      .flags = s->flags,
					      .id = id };
	}
	gm_write_begin(gm);
	for (unsigned i = 0; i < n; i++) {
		struct gm_map_entry *e = &gm->tab[i];

		WR(e->gpa, t[i].gpa);
		WR(e->size, t[i].size);
		WR(e->hva, t[i].hva);
		WR(e->ram_offset, t[i].ram_offset);
		WR(e->sink, t[i].sink);
		WR(e->sink_region, t[i].sink_region);
		WR(e->flags, t[i].flags);
		WR(e->id, t[i].id);
	}
	WR(gm->nr, n);
	gm_write_end(gm);
}

/* ---- KVM's copy of the table ---- */

/* Create, update (same id) or delete KVM slot id from the table entry,
 * placed at gpa. */
static int gm_kvm_set_at(struct guest_mem *gm, int id, uint64_t gpa, bool present)
{
	struct gm_slot *s = &gm->slot[id];
	struct kvm_userspace_memory_region r = { .slot = (uint32_t)id };

	if (gm->vm_fd < 0)
		return 0;
	if (present) {
		r.guest_phys_addr = gpa;
		r.memory_size = s->size;
		r.userspace_addr = (uintptr_t)s->hva;
		if (s->flags & GM_SLOT_READONLY)
			r.flags |= KVM_MEM_READONLY;
		else if (gm_slot_logged(gm, s)) /* a read-only slot has no guest writes to log */
			r.flags |= KVM_MEM_LOG_DIRTY_PAGES;
	}
	if (ioctl(gm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return -errno;
	s->kvm_logging = r.flags & KVM_MEM_LOG_DIRTY_PAGES;
	return 0;
}

int gm_kvm_set(struct guest_mem *gm, int id, bool present)
{
	return gm_kvm_set_at(gm, id, gm->slot[id].gpa, present);
}

int gm_attach_kvm(struct guest_mem *gm, int kvm_fd, int vm_fd)
{
	int n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
	int manual = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
				      .args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } };
	int ret = 0;

	pthread_mutex_lock(&gm->lock);
	/* 32 is what KVM guaranteed before it reported the capability. */
	gm->max_slots = n > 0 ? MIN((unsigned)n, (unsigned)GM_MAX_SLOTS) : 32;
	/* With manual protection, reading the log no longer re-protects every
	 * page at once; the pages are re-protected as their bits are cleared. */
	if (manual > 0 && (manual & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
		gm->kvm_manual_protect = ioctl(vm_fd, KVM_ENABLE_CAP, &cap) == 0;
	gm->vm_fd = vm_fd;
	for (int id = 0; id < GM_MAX_SLOTS && !ret; id++)
		if (gm->slot[id].size)
			ret = (unsigned)id < gm->max_slots ? gm_kvm_set(gm, id, true) : -ENOSPC;
	pthread_mutex_unlock(&gm->lock);
	return ret;
}

/* ---- the PC layout ---- */

static const struct {
	const char *name;
	uint64_t start, end;
} gm_low_layout[] = {
	{ "ram-low", 0, BOARD_VGA_WINDOW },
	{ "ram-rom-area", BOARD_VGA_WINDOW_END, BOARD_BIOS_SEGMENT },
	{ "bios", BOARD_BIOS_SEGMENT, BOARD_BIOS_SEGMENT_END },
	{ "ram", BOARD_BIOS_SEGMENT_END, GM_LOWMEM_MAX },
};

static int gm_layout(struct guest_mem *gm)
{
	int ret = 0;

	for (size_t i = 0; i < ARRAY_SIZE(gm_low_layout) && ret >= 0; i++) {
		uint64_t start = gm_low_layout[i].start,
			 end = MIN(gm_low_layout[i].end, gm->ram_low);

		if (start < end)
			ret = gm_slot_add(gm, &(struct gm_slot_spec){ .name = gm_low_layout[i].name,
								      .gpa = start,
								      .size = end - start,
								      .flags = GM_SLOT_RAM,
								      .ram_offset = start });
	}
	if (ret >= 0 && gm->ram_high)
		ret = gm_slot_add(gm, &(struct gm_slot_spec){ .name = "ram-high",
							      .gpa = GM_HIGHMEM_BASE,
							      .size = gm->ram_high,
							      .flags = GM_SLOT_RAM,
							      .ram_offset = gm->ram_low });
	return ret < 0 ? ret : 0;
}

static int gm_map_ram(struct guest_mem *gm, uint64_t ram_size, bool hugepages)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;

	gm->map = gm_take_spare(ram_size, hugepages);
	if (!gm->map) {
		if (hugepages)
			flags |= MAP_HUGETLB;
		/* MAP_NORESERVE: pages are allocated on first touch, so a guest
		 * larger than the host's free memory starts as long as it does
		 * not use it all. */
		gm->map = gm_map_aligned(ram_size, flags);
		if (gm->map == MAP_FAILED) {
			gm->map = NULL;
			return -errno;
		}
	}
	gm->map_size = ram_size;
	gm->hugepages = hugepages;
	if (!hugepages)
		madvise(gm->map, ram_size, MADV_HUGEPAGE); /* best effort: fewer TLB misses */
	/* The dirty bitmap costs nothing until a bit is set (MAP_NORESERVE). */
	gm->ram_dirty_bytes = ALIGN_UP(ram_size >> GM_PAGE_SHIFT, 64) / 8;
	gm->ram_dirty = mmap(NULL, gm->ram_dirty_bytes, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (gm->ram_dirty == MAP_FAILED) {
		gm->ram_dirty = NULL;
		return -ENOMEM;
	}
	return 0;
}

int gm_init(struct guest_mem *gm, uint64_t ram_size, bool hugepages)
{
	int ret;

	memset(gm, 0, sizeof(*gm));
	gm->vm_fd = -1;
	gm->max_slots = GM_MAX_SLOTS;
	if (ram_size == 0 || ram_size % GM_PAGE_SIZE)
		return -EINVAL;
	pthread_mutex_init(&gm->lock, NULL);
	gm->ram_size = ram_size;
	gm->ram_low = MIN(ram_size, GM_LOWMEM_MAX);
	gm->ram_high = ram_size - gm->ram_low;
	ret = gm_map_ram(gm, ram_size, hugepages);
	ret = ret ?: gm_layout(gm);
	if (ret) {
		gm_retain_next(false);
		gm_destroy(gm);
	}
	return ret;
}

int gm_map_file(struct guest_mem *gm, int fd, uint64_t offset)
{
	void *p;

	if (!gm->map || offset % GM_PAGE_SIZE)
		return -EINVAL;
	/* MAP_FIXED over the RAM backing keeps every address the slots and
	 * KVM's memslots hold; nothing has mapped guest pages yet. */
	p = mmap(gm->map, gm->map_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, (off_t)offset);
	if (p == MAP_FAILED) {
		int ret = -errno;

		/* A failed MAP_FIXED may have unmapped the range: put fresh
		 * anonymous memory back so RAM stays usable (the caller may
		 * read the file into it instead). */
		if (mmap(gm->map, gm->map_size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
			 0) == MAP_FAILED)
			kerr("guest memory: cannot re-map RAM: %s", strerror(errno));
		return ret;
	}
	gm->file_backed = true;
	return 0;
}

void gm_destroy(struct guest_mem *gm)
{
	if (!gm->ram_size)
		return; /* never initialised (or already destroyed) */
	for (int id = 0; id < GM_MAX_SLOTS; id++)
		gm_slot_free(gm, id);
	if (gm->ram_dirty)
		munmap(gm->ram_dirty, gm->ram_dirty_bytes);
	/* A file-backed RAM would hand its file's pages to the next boot:
	 * that one starts from fresh anonymous memory instead. */
	if (gm->map && gm_spare.retain_next && !gm_spare.map && !gm->file_backed) {
		gm_zero_resident(gm->map, gm->map_size);
		gm_spare.map = gm->map;
		gm_spare.size = gm->map_size;
		gm_spare.hugepages = gm->hugepages;
	} else if (gm->map) {
		munmap(gm->map, gm->map_size);
	}
	gm_spare.retain_next = false;
	pthread_mutex_destroy(&gm->lock);
	memset(gm, 0, sizeof(*gm));
	gm->vm_fd = -1;
}

/* ---- the accessor ---- */

/* gm_ptr on one view of the table. The hot path of every virtqueue access:
 * it reads only what it needs. */
static uint8_t *gm_ptr_view(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	int i = gm_index(gm, gpa);
	const struct gm_map_entry *e;
	uint64_t off, size;

	if (i < 0)
		return NULL;
	e = &gm->tab[i];
	if ((RD(e->flags) & (GM_SLOT_RAM | GM_SLOT_READONLY)) != GM_SLOT_RAM)
		return NULL;
	off = gpa - RD(e->gpa);
	size = RD(e->size);
	/* Written so that no sum can wrap: off <= size and len <= size - off
	 * (an empty range may sit at the very end of a slot). */
	if (off > size || len > size - off)
		return NULL;
	return RD(e->hva) + off;
}

void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	unsigned seq;
	uint8_t *p;

	do {
		seq = gm_read_begin(gm);
		p = gm_ptr_view(gm, gpa, len);
	} while (gm_read_retry(gm, seq));
	return p;
}

void *gm_ram_ptr(const struct guest_mem *gm, uint64_t offset, uint64_t len)
{
	if (!gm->map || offset > gm->map_size || len > gm->map_size - offset)
		return NULL;
	return (uint8_t *)gm->map + offset;
}

int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	gm_mark_dirty_hva(gm, p, len);
	return 0;
}

/* ---- slots ---- */

/* Both ranges are valid (gm_range_ok): their last bytes do not wrap. */
static bool gm_overlaps(const struct guest_mem *gm, uint64_t gpa, uint64_t size, int except)
{
	for (int id = 0; id < GM_MAX_SLOTS; id++) {
		const struct gm_slot *s = &gm->slot[id];

		if (s->size && id != except && gpa <= s->gpa + (s->size - 1) &&
		    s->gpa <= gpa + (size - 1))
			return true;
	}
	return false;
}

static bool gm_range_ok(uint64_t gpa, uint64_t size)
{
	return size && !(gpa % GM_PAGE_SIZE) && !(size % GM_PAGE_SIZE) && gpa + size - 1 >= gpa;
}

static bool gm_spec_ok(const struct guest_mem *gm, const struct gm_slot_spec *sp)
{
	if (!gm_range_ok(sp->gpa, sp->size) || (sp->flags & ~GM_SLOT_FLAGS_ALL))
		return false;
	if (sp->flags & GM_SLOT_RAM)
		return !sp->hva && !(sp->ram_offset % GM_PAGE_SIZE) &&
		       sp->ram_offset <= gm->map_size && sp->size <= gm->map_size - sp->ram_offset;
	return !((uintptr_t)sp->hva % GM_PAGE_SIZE);
}

/* A zeroed dirty bitmap for size bytes of memory. */
static uint64_t *gm_bitmap_new(uint64_t size)
{
	return calloc(ALIGN_UP(size >> GM_PAGE_SHIFT, 64) / 64, sizeof(uint64_t));
}

/* The slot's memory and bitmap; the entry is then free. gm->lock held (or
 * the gm being torn down), the slot unpublished. */
void gm_slot_free(struct guest_mem *gm, int id)
{
	struct gm_slot *s = &gm->slot[id];

	if (!s->size)
		return;
	if (s->owns_hva)
		munmap(s->hva, s->size);
	free(s->dirty);
	memset(s, 0, sizeof(*s));
}

/* Fill entry id from spec (not yet published). */
static int gm_slot_fill(struct guest_mem *gm, int id, const struct gm_slot_spec *sp)
{
	struct gm_slot *s = &gm->slot[id];
	uint8_t *hva = sp->hva;

	if (sp->flags & GM_SLOT_RAM) {
		hva = (uint8_t *)gm->map + sp->ram_offset;
	} else if (!hva) {
		hva = mmap(NULL, sp->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			   0);
		if (hva == MAP_FAILED)
			return -ENOMEM;
		s->owns_hva = true;
	}
	if ((sp->flags & (GM_SLOT_LOG_DIRTY | GM_SLOT_RAM)) == GM_SLOT_LOG_DIRTY) {
		s->dirty = gm_bitmap_new(sp->size);
		if (!s->dirty) {
			if (s->owns_hva)
				munmap(hva, sp->size);
			s->owns_hva = false;
			return -ENOMEM;
		}
	}
	snprintf(s->name, sizeof(s->name), "%s", sp->name ? sp->name : "slot");
	s->writes = 0;
	s->ram_offset = sp->ram_offset;
	s->gpa = sp->gpa;
	s->hva = hva;
	s->flags = sp->flags;
	s->sink = sp->sink;
	s->sink_region = sp->sink_region;
	s->size = sp->size;
	return 0;
}

int gm_slot_add(struct guest_mem *gm, const struct gm_slot_spec *sp)
{
	int id = -1, ret;

	pthread_mutex_lock(&gm->lock);
	ret = gm_spec_ok(gm, sp) ? 0 : -EINVAL;
	if (!ret && gm_overlaps(gm, sp->gpa, sp->size, -1))
		ret = -EEXIST;
	for (unsigned i = 0; !ret && i < gm->max_slots && id < 0; i++)
		if (!gm->slot[i].size)
			id = (int)i;
	if (!ret && id < 0)
		ret = -ENOSPC;
	ret = ret ?: gm_slot_fill(gm, id, sp);
	if (!ret) {
		ret = gm_kvm_set(gm, id, true);
		if (ret)
			gm_slot_free(gm, id);
		else
			gm_publish(gm, -1);
	}
	pthread_mutex_unlock(&gm->lock);
	return ret ? ret : id;
}

static struct gm_slot *gm_slot_used(struct guest_mem *gm, int id)
{
	if (id < 0 || id >= GM_MAX_SLOTS || !gm->slot[id].size)
		return NULL;
	return &gm->slot[id];
}

int gm_slot_remove(struct guest_mem *gm, int id)
{
	struct gm_slot *s;
	int ret = -ENOENT;

	pthread_mutex_lock(&gm->lock);
	s = gm_slot_used(gm, id);
	if (s) {
		gm_dirty_before_change(gm, id);
		gm_publish(gm, id);
		ret = gm_kvm_set(gm, id, false);
		gm_dirty_after_change(gm, id);
		if (ret)
			gm_publish(gm, -1); /* KVM still maps it: so do we */
		else
			gm_slot_free(gm, id);
	}
	pthread_mutex_unlock(&gm->lock);
	return ret;
}

int gm_slot_move(struct guest_mem *gm, int id, uint64_t gpa)
{
	struct gm_slot *s;
	int ret;

	pthread_mutex_lock(&gm->lock);
	s = gm_slot_used(gm, id);
	ret = !s				  ? -ENOENT
	      : !gm_range_ok(gpa, s->size)	  ? -EINVAL
	      : gm_overlaps(gm, gpa, s->size, id) ? -EEXIST
						  : 0;
	if (!ret && gpa != s->gpa) {
		gm_dirty_before_change(gm, id);
		/* KVM first (KVM_MR_MOVE: same slot, new address), then the
		 * table in one step. */
		ret = gm_kvm_set_at(gm, id, gpa, true);
		if (!ret) {
			s->gpa = gpa;
			gm_publish(gm, -1);
		}
		gm_dirty_after_change(gm, id);
	}
	pthread_mutex_unlock(&gm->lock);
	return ret;
}

/* KVM's side of a flag change: READONLY only by delete and create, the log
 * flag in place. */
static int gm_kvm_reflag(struct guest_mem *gm, int id, unsigned old)
{
	struct gm_slot *s = &gm->slot[id];
	int ret = 0;

	if ((old ^ s->flags) & GM_SLOT_READONLY)
		ret = gm_kvm_set(gm, id, false);
	return ret ?: gm_kvm_set(gm, id, true);
}

static void gm_slot_publish_flags(struct guest_mem *gm, struct gm_slot *s, unsigned flags,
				  struct device *sink, int sink_region)
{
	s->flags = flags;
	s->sink = sink;
	s->sink_region = sink_region;
	gm_publish(gm, -1);
}

int gm_slot_set_flags(struct guest_mem *gm, int id, unsigned flags, struct device *sink,
		      int sink_region)
{
	struct device *old_sink;
	struct gm_slot *s;
	int ret, old_region;
	unsigned old;

	pthread_mutex_lock(&gm->lock);
	s = gm_slot_used(gm, id);
	ret = !s								   ? -ENOENT
	      : (flags & ~GM_SLOT_FLAGS_ALL) || ((flags ^ s->flags) & GM_SLOT_RAM) ? -EINVAL
										   : 0;
	if (!ret && (flags & (GM_SLOT_LOG_DIRTY | GM_SLOT_RAM)) == GM_SLOT_LOG_DIRTY && !s->dirty) {
		s->dirty = gm_bitmap_new(s->size);
		ret = s->dirty ? 0 : -ENOMEM;
	}
	if (!ret) {
		old = s->flags;
		old_sink = s->sink;
		old_region = s->sink_region;
		gm_dirty_before_change(gm, id);
		gm_slot_publish_flags(gm, s, flags, sink, sink_region);
		ret = gm_kvm_reflag(gm, id, old);
		if (ret) {
			gm_slot_publish_flags(gm, s, old, old_sink, old_region);
			if (gm_kvm_reflag(gm, id, flags))
				kwarn("guest memory: slot %s lost in KVM", s->name);
		}
		if ((old ^ flags) & GM_SLOT_READONLY)
			gm_dirty_after_change(gm, id);
	}
	pthread_mutex_unlock(&gm->lock);
	return ret;
}

int gm_slot_at(const struct guest_mem *gm, uint64_t gpa)
{
	struct gm_map_entry h;

	return gm_find(gm, gpa, &h) ? h.id : -ENOENT;
}

static void gm_slot_info_fill(struct guest_mem *gm, int id, struct gm_slot_info *o)
{
	const struct gm_slot *s = &gm->slot[id];

	*o = (struct gm_slot_info){ .id = id,
				    .gpa = s->gpa,
				    .size = s->size,
				    .flags = s->flags,
				    .ram_offset = s->ram_offset,
				    .hva = s->hva,
				    .logging = gm_slot_logged(gm, s),
				    .writes = __atomic_load_n(&s->writes, __ATOMIC_RELAXED) };
	memcpy(o->name, s->name, sizeof(o->name));
}

int gm_slot_get(struct guest_mem *gm, int id, struct gm_slot_info *out)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&gm->lock);
	if (gm_slot_used(gm, id)) {
		gm_slot_info_fill(gm, id, out);
		ret = 0;
	}
	pthread_mutex_unlock(&gm->lock);
	return ret;
}

int gm_slots(struct guest_mem *gm, struct gm_slot_info *out, int max)
{
	int n;

	pthread_mutex_lock(&gm->lock);
	n = (int)gm->nr;
	for (int i = 0; i < n && i < max; i++)
		gm_slot_info_fill(gm, gm->tab[i].id, &out[i]);
	pthread_mutex_unlock(&gm->lock);
	return n;
}

/* ---- writes to read-only slots ---- */

bool gm_mmio_write(struct guest_mem *gm, uint64_t gpa, const void *data, unsigned len)
{
	struct gm_map_entry h;
	uint64_t val = 0;

	if (!gm_find(gm, gpa, &h) || !(h.flags & GM_SLOT_READONLY))
		return false;
	__atomic_add_fetch(&gm->slot[h.id].writes, 1, __ATOMIC_RELAXED);
	if (h.sink && len <= sizeof(val)) {
		memcpy(&val, data, len); /* x86 is little-endian */
		device_write(h.sink, h.sink_region, gpa - h.gpa, len, val);
	}
	return true;
}
