/* MSI and MSI-X (PCI Local Bus 3.0, 6.8) for any PCI function
 * (devices/pci/msi.c).
 *
 * Design
 * - Each vector is one GSI route in KVM plus an irqfd on it, made when the
 *   capability is set up: delivering a message is one eventfd write from any
 *   thread, and a guest reprogramming a vector is one route update (made only
 *   when address or data changed). Where routes come from is a sink: the
 *   VM's (msi_vm_sink(): vm_msi_route_alloc/set/free, vm_irqfd) or a test's.
 *   A NULL sink makes vectors without routes: messages are then dropped,
 *   pending bits still work.
 * - A message is held, its pending bit set, while its vector or the whole
 *   function is masked, and while the function's Bus Master Enable is clear
 *   (a message is a memory write the function may not issue then, 6.8.3.1);
 *   it is sent when that ends (6.8.2.9).
 * - MSI-X: the capability points at a table and a PBA inside the device's
 *   BARs; the device forwards its BAR accesses through msix_bar_read/write,
 *   which say whether they hit the table or the PBA. Table accesses are
 *   dwords or aligned qwords (6.8.2); others read 0 and write nothing.
 * - MSI: the registers live in config space (32- or 64-bit address, 1-32
 *   vectors, optional per-vector masking); the pending bits are live.
 * - The PCI core calls msi_config_written()/msix_config_written() after each
 *   config write, with the host's lock held, so enabling, masking and Bus
 *   Master changes take effect there; msi(x)_notify() come from any thread.
 * - Locking: each struct has its own lock, a leaf (only the sink's calls,
 *   which take the VM's route lock, and eventfd writes happen under it).
 * - State: MSI's registers are config space (pci_dev_save). MSI-X's table
 *   and pending bits are one section, msix_save()/msix_load(); load after
 *   pci_dev_load() (which restores the enable and mask bits). */
#ifndef KESTREL_MSI_H
#define KESTREL_MSI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "kestrel/util.h"

struct pci_dev;
struct state_buf;
struct vm;

struct msi_sink_ops {
	int (*route_alloc)(void *opaque, uint32_t *gsi);
	int (*route_set)(void *opaque, uint32_t gsi, uint64_t addr, uint32_t data);
	void (*route_free)(void *opaque, uint32_t gsi);
	int (*irqfd)(void *opaque, int fd, uint32_t gsi, bool assign);
};

struct msi_sink {
	const struct msi_sink_ops *ops;
	void *opaque;
};

/* The VM's MSI routes and irqfds. */
struct msi_sink msi_vm_sink(struct vm *vm);

/* One vector: its route and the irqfd that raises it. */
struct msi_vec {
	uint32_t gsi;
	int irqfd;   /* -1: no route (no sink) */
	bool routed; /* the route holds addr/data below */
	uint64_t addr;
	uint32_t data;
};

/* ---- MSI (6.8.1) ---- */

#define MSI_MAX_VECTORS 32

struct msi {
	struct pci_dev *pdev;
	struct msi_sink sink;
	unsigned cap;  /* config offset of the capability */
	unsigned nvec; /* vectors capable: 1, 2, 4, .. 32 */
	bool is64, maskable;
	pthread_mutex_t lock; /* everything below */
	bool enabled, bus_master;
	unsigned nused; /* vectors enabled (Multiple Message Enable) */
	uint64_t addr;
	uint16_t data;
	uint32_t mask, pending;
	struct msi_vec vec[MSI_MAX_VECTORS];
};

/* Add an MSI capability for nvec vectors (a power of two, 1..32). 0, or
 * -EINVAL, -ENOSPC (no room in config space), -errno from the sink. */
int msi_init(struct msi *m, struct pci_dev *pdev, const struct msi_sink *sink, unsigned nvec,
	     bool is64, bool maskable) WARN_UNUSED;
void msi_destroy(struct msi *m);
bool msi_enabled(struct msi *m);
/* Signal vector v (held while masked or without Bus Master; dropped when
 * MSI is off or v is not enabled). */
void msi_notify(struct msi *m, unsigned v);
/* For the core: after a config write; and the live Pending Bits register. */
void msi_config_written(struct msi *m);
uint32_t msi_config_read(struct msi *m, unsigned off, unsigned size, uint32_t val);

/* ---- MSI-X (6.8.2) ---- */

#define MSIX_MAX_VECTORS   2048
#define MSIX_ENTRY_SIZE	   16
#define MSIX_CTRL_ENABLE   0x8000
#define MSIX_CTRL_MASKALL  0x4000
#define MSIX_VECTOR_MASKED 1

struct msix_entry {
	uint32_t addr_lo, addr_hi, data, ctrl;
	bool pending;
	struct msi_vec v;
};

struct msix {
	struct pci_dev *pdev;
	struct msi_sink sink;
	unsigned cap; /* config offset of the capability */
	unsigned nvec;
	int table_bar, pba_bar;
	uint32_t table_off, pba_off;
	pthread_mutex_t lock; /* everything below */
	bool enabled, masked, bus_master;
	struct msix_entry *e;
};

/* Add an MSI-X capability with nvec (1..2048) vectors whose table is at
 * table_off in BAR table_bar and PBA at pba_off in BAR pba_bar (declared
 * before, 8-byte aligned, inside the BAR, not overlapping). 0, or -EINVAL,
 * -ENOSPC, -ENOMEM, -errno from the sink. */
int msix_init(struct msix *m, struct pci_dev *pdev, const struct msi_sink *sink, unsigned nvec,
	      int table_bar, uint32_t table_off, int pba_bar, uint32_t pba_off) WARN_UNUSED;
void msix_destroy(struct msix *m);
bool msix_enabled(struct msix *m);
/* Signal vector v (held while masked or without Bus Master; dropped when
 * MSI-X is off or v >= nvec). */
void msix_notify(struct msix *m, unsigned v);
/* Forget held messages (a device reset). */
void msix_clear_pending(struct msix *m);
/* An access at off in BAR bar: true (and *val for a read) when it hit the
 * table or the PBA. */
bool msix_bar_read(struct msix *m, int bar, uint64_t off, unsigned size, uint64_t *val);
bool msix_bar_write(struct msix *m, int bar, uint64_t off, unsigned size, uint64_t val);
/* For the core: after a config write. */
void msix_config_written(struct msix *m);

int msix_save(struct msix *m, struct state_buf *out) WARN_UNUSED;
/* All-or-nothing: a bad section changes nothing. Routes follow the table. */
int msix_load(struct msix *m, struct state_buf *in) WARN_UNUSED;
/* msix_load in two steps, for a device checking all of its sections first:
 * parse (allocates st, changes nothing), then commit (after pci_dev_commit;
 * frees st) or msix_state_free. */
struct msix_state {
	unsigned nvec;
	struct msix_entry *e;
};
int msix_parse(const struct msix *m, struct state_buf *in, struct msix_state *st) WARN_UNUSED;
void msix_commit(struct msix *m, struct msix_state *st);
void msix_state_free(struct msix_state *st);

#endif
