/* MSI and MSI-X for any PCI function (PCI Local Bus 3.0, 6.8): vectors as
 * KVM GSI routes with irqfds, masking and pending bits, Bus Master gating.
 * The design is written up at the top of include/kestrel/msi.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kestrel/msi.h"
#include "kestrel/pci.h"
#include "kestrel/state.h"
#include "kestrel/vm.h"

#define MSIX_CAP_LEN	   12
#define MSIX_STATE_ID	   0x4d534958 /* "MSIX" */
#define MSIX_STATE_VERSION 1

/* 6.8.1: Message Control bits. */
#define MSI_CTRL_ENABLE	   0x0001
#define MSI_CTRL_MME_SHIFT 4
#define MSI_CTRL_MMC_SHIFT 1
#define MSI_CTRL_64BIT	   0x0080
#define MSI_CTRL_MASKABLE  0x0100

/* ---- the sink: the VM's routes ---- */

static int msi_vm_route_alloc(void *o, uint32_t *gsi)
{
	return vm_msi_route_alloc(o, gsi);
}

static int msi_vm_route_set(void *o, uint32_t gsi, uint64_t addr, uint32_t data)
{
	return vm_msi_route_set(o, gsi, addr, data);
}

static void msi_vm_route_free(void *o, uint32_t gsi)
{
	vm_msi_route_free(o, gsi);
}

static int msi_vm_irqfd(void *o, int fd, uint32_t gsi, bool assign)
{
	return vm_irqfd(o, fd, gsi, assign);
}

static const struct msi_sink_ops msi_vm_ops = {
	.route_alloc = msi_vm_route_alloc,
	.route_set = msi_vm_route_set,
	.route_free = msi_vm_route_free,
	.irqfd = msi_vm_irqfd,
};

struct msi_sink msi_vm_sink(struct vm *vm)
{
	return (struct msi_sink){ vm ? &msi_vm_ops : NULL, vm };
}

/* ---- one vector ---- */

/* Made at set-up, so that programming a vector later is a route update. */
static int msi_vec_init(struct msi_vec *v, const struct msi_sink *s)
{
	int fd, ret;

	*v = (struct msi_vec){ .irqfd = -1 };
	if (!s->ops)
		return 0;
	ret = s->ops->route_alloc(s->opaque, &v->gsi);
	if (ret)
		return ret;
	fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = fd < 0 ? -errno : s->ops->irqfd(s->opaque, fd, v->gsi, true);
	if (ret) {
		if (fd >= 0)
			close(fd);
		s->ops->route_free(s->opaque, v->gsi);
		return ret;
	}
	v->irqfd = fd;
	return 0;
}

static void msi_vec_release(struct msi_vec *v, const struct msi_sink *s)
{
	if (v->irqfd < 0)
		return;
	if (s->ops->irqfd(s->opaque, v->irqfd, v->gsi, false))
		kwarn("msi: cannot remove the irqfd of GSI %u", v->gsi);
	s->ops->route_free(s->opaque, v->gsi);
	close(v->irqfd);
	v->irqfd = -1;
}

/* Point the route at addr/data, when that is news. */
static void msi_vec_route(struct msi_vec *v, const struct msi_sink *s, uint64_t addr, uint32_t data)
{
	if (v->irqfd < 0 || (v->routed && v->addr == addr && v->data == data))
		return;
	v->routed = false;
	if (s->ops->route_set(s->opaque, v->gsi, addr, data)) {
		kwarn("msi: cannot route GSI %u to %#llx/%#x", v->gsi, (unsigned long long)addr,
		      data);
		return;
	}
	v->routed = true;
	v->addr = addr;
	v->data = data;
}

static void msi_vec_fire(struct msi_vec *v)
{
	if (v->irqfd >= 0 && v->routed && eventfd_write(v->irqfd, 1) < 0)
		kwarn("msi: irqfd write for GSI %u failed", v->gsi);
}

static bool msi_pow2(unsigned v)
{
	return v && !(v & (v - 1));
}

/* ---- MSI (6.8.1) ---- */

static unsigned msi_data_off(const struct msi *m)
{
	return m->cap + (m->is64 ? 0xc : 0x8);
}

static unsigned msi_mask_off(const struct msi *m)
{
	return m->cap + (m->is64 ? 0x10 : 0xc);
}

static unsigned msi_cap_len(bool is64, bool maskable)
{
	if (maskable)
		return is64 ? 0x18 : 0x14;
	return is64 ? 0xe : 0xa;
}

static void msi_regs_init(struct msi *m, unsigned log2n)
{
	struct pci_dev *p = m->pdev;
	uint16_t ctrl = (uint16_t)(log2n << MSI_CTRL_MMC_SHIFT);

	ctrl |= m->is64 ? MSI_CTRL_64BIT : 0;
	ctrl |= m->maskable ? MSI_CTRL_MASKABLE : 0;
	pci_set_u16(p, m->cap + 2, ctrl);
	p->wmask[m->cap + 2] = MSI_CTRL_ENABLE | 7u << MSI_CTRL_MME_SHIFT;
	pci_set_wmask32(p, m->cap + 4, 0xfffffffc); /* dword-aligned address */
	if (m->is64)
		pci_set_wmask32(p, m->cap + 8, 0xffffffff);
	pci_set_wmask16(p, msi_data_off(m), 0xffff);
	if (m->maskable)
		pci_set_wmask32(p, msi_mask_off(m), m->nvec == 32 ? ~0u : (1u << m->nvec) - 1);
}

int msi_init(struct msi *m, struct pci_dev *pdev, const struct msi_sink *sink, unsigned nvec,
	     bool is64, bool maskable)
{
	unsigned log2n = 0;
	int cap, ret = 0;

	if (!msi_pow2(nvec) || nvec > MSI_MAX_VECTORS || pdev->msi)
		return -EINVAL;
	while ((1u << log2n) < nvec)
		log2n++;
	cap = pci_cap_add(pdev, PCI_CAP_ID_MSI, msi_cap_len(is64, maskable));
	if (cap < 0)
		return cap;
	*m = (struct msi){ .pdev = pdev,
			   .sink = sink ? *sink : (struct msi_sink){ 0 },
			   .cap = (unsigned)cap,
			   .nvec = nvec,
			   .is64 = is64,
			   .maskable = maskable };
	for (unsigned v = 0; v < MSI_MAX_VECTORS; v++)
		m->vec[v].irqfd = -1;
	for (unsigned v = 0; v < nvec && !ret; v++)
		ret = msi_vec_init(&m->vec[v], &m->sink);
	if (ret) {
		for (unsigned v = 0; v < nvec; v++)
			msi_vec_release(&m->vec[v], &m->sink);
		m->pdev = NULL;
		return ret;
	}
	msi_regs_init(m, log2n);
	pthread_mutex_init(&m->lock, NULL);
	pdev->msi = m;
	return 0;
}

void msi_destroy(struct msi *m)
{
	if (!m->pdev)
		return;
	for (unsigned v = 0; v < m->nvec; v++)
		msi_vec_release(&m->vec[v], &m->sink);
	if (m->pdev->msi == m)
		m->pdev->msi = NULL;
	pthread_mutex_destroy(&m->lock);
	m->pdev = NULL;
}

/* Without the lock: the caller acts on it after it may have changed anyway. */
bool msi_enabled(struct msi *m)
{
	return __atomic_load_n(&m->enabled, __ATOMIC_ACQUIRE);
}

/* 6.8.1.6: with Multiple Message Enable, vector v is the data with its low
 * bits replaced by v. lock held. */
static void msi_route_all(struct msi *m)
{
	for (unsigned v = 0; v < m->nused; v++)
		msi_vec_route(&m->vec[v], &m->sink, m->addr, (m->data & ~(m->nused - 1)) | v);
}

static void msi_send(struct msi *m, unsigned v)
{
	if ((m->mask & (1u << v)) || !m->bus_master)
		m->pending |= 1u << v;
	else
		msi_vec_fire(&m->vec[v]);
}

static void msi_flush(struct msi *m)
{
	for (unsigned v = 0; v < m->nused; v++) {
		if (!(m->pending & (1u << v)) || (m->mask & (1u << v)) || !m->bus_master)
			continue;
		m->pending &= ~(1u << v);
		msi_vec_fire(&m->vec[v]);
	}
}

void msi_notify(struct msi *m, unsigned v)
{
	pthread_mutex_lock(&m->lock);
	if (m->enabled && v < m->nused)
		msi_send(m, v);
	pthread_mutex_unlock(&m->lock);
}

void msi_config_written(struct msi *m)
{
	const struct pci_dev *p = m->pdev;
	uint16_t ctrl = pci_get_u16(p, m->cap + 2);
	unsigned mme = (ctrl >> MSI_CTRL_MME_SHIFT) & 7;
	uint64_t addr = pci_get_u32(p, m->cap + 4);

	if (m->is64)
		addr |= (uint64_t)pci_get_u32(p, m->cap + 8) << 32;
	pthread_mutex_lock(&m->lock);
	__atomic_store_n(&m->enabled, (ctrl & MSI_CTRL_ENABLE) != 0, __ATOMIC_RELEASE);
	/* 6.8.1.3: more than it asked for is the guest's error; give what we have. */
	m->nused = mme < 6 ? MIN(1u << mme, m->nvec) : m->nvec;
	m->addr = addr;
	m->data = pci_get_u16(p, msi_data_off(m));
	m->mask = m->maskable ? pci_get_u32(p, msi_mask_off(m)) : 0;
	m->bus_master = pci_get_u16(p, PCI_COMMAND) & PCI_COMMAND_MASTER;
	if (m->enabled) {
		msi_route_all(m);
		msi_flush(m);
	}
	pthread_mutex_unlock(&m->lock);
}

/* The Pending Bits register is the device's, live. */
uint32_t msi_config_read(struct msi *m, unsigned off, unsigned size, uint32_t val)
{
	unsigned pend = msi_mask_off(m) + 4;

	if (!m->maskable || off >= pend + 4 || off + size <= pend)
		return val;
	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < size; i++) {
		unsigned o = off + i;

		if (o < pend || o >= pend + 4)
			continue;
		val &= ~(0xffu << (8 * i));
		val |= ((m->pending >> (8 * (o - pend))) & 0xff) << (8 * i);
	}
	pthread_mutex_unlock(&m->lock);
	return val;
}

/* ---- MSI-X (6.8.2) ---- */

static uint64_t msix_pba_len(unsigned nvec)
{
	return (nvec + 63) / 64 * 8;
}

/* The table and the PBA fit their BARs and do not overlap. */
static bool msix_layout_ok(const struct pci_dev *p, unsigned nvec, int tbar, uint32_t toff,
			   int pbar, uint32_t poff)
{
	uint64_t tlen = (uint64_t)nvec * MSIX_ENTRY_SIZE, plen = msix_pba_len(nvec);

	if (tbar < 0 || tbar >= PCI_NUM_BARS || pbar < 0 || pbar >= PCI_NUM_BARS ||
	    (toff | poff) & 7 || (p->bar[tbar].flags & PCI_BAR_IO) ||
	    (p->bar[pbar].flags & PCI_BAR_IO))
		return false;
	if (toff + tlen > p->bar[tbar].size || poff + plen > p->bar[pbar].size)
		return false;
	return tbar != pbar || toff + tlen <= poff || poff + plen <= toff;
}

static void msix_free_vectors(struct msix *m)
{
	for (unsigned v = 0; v < m->nvec; v++)
		msi_vec_release(&m->e[v].v, &m->sink);
	free(m->e);
	m->e = NULL;
}

int msix_init(struct msix *m, struct pci_dev *pdev, const struct msi_sink *sink, unsigned nvec,
	      int table_bar, uint32_t table_off, int pba_bar, uint32_t pba_off)
{
	int cap, ret = 0;

	if (!nvec || nvec > MSIX_MAX_VECTORS || pdev->msix ||
	    !msix_layout_ok(pdev, nvec, table_bar, table_off, pba_bar, pba_off))
		return -EINVAL;
	*m = (struct msix){ .pdev = pdev,
			    .sink = sink ? *sink : (struct msi_sink){ 0 },
			    .nvec = nvec,
			    .table_bar = table_bar,
			    .table_off = table_off,
			    .pba_bar = pba_bar,
			    .pba_off = pba_off };
	m->e = calloc(nvec, sizeof(*m->e));
	if (!m->e) {
		m->pdev = NULL;
		return -ENOMEM;
	}
	for (unsigned v = 0; v < nvec; v++) {
		m->e[v].ctrl = MSIX_VECTOR_MASKED; /* 6.8.2.9: masked after reset */
		m->e[v].v.irqfd = -1;
	}
	for (unsigned v = 0; v < nvec && !ret; v++)
		ret = msi_vec_init(&m->e[v].v, &m->sink);
	cap = ret ? ret : pci_cap_add(pdev, PCI_CAP_ID_MSIX, MSIX_CAP_LEN);
	if (cap < 0) {
		msix_free_vectors(m);
		m->pdev = NULL;
		return cap;
	}
	m->cap = (unsigned)cap;
	pci_set_u16(pdev, m->cap + 2, (uint16_t)(nvec - 1));
	pdev->wmask[m->cap + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
	pci_set_u32(pdev, m->cap + 4, table_off | (uint32_t)table_bar);
	pci_set_u32(pdev, m->cap + 8, pba_off | (uint32_t)pba_bar);
	pthread_mutex_init(&m->lock, NULL);
	pdev->msix = m;
	return 0;
}

void msix_destroy(struct msix *m)
{
	if (!m->pdev)
		return;
	msix_free_vectors(m);
	if (m->pdev->msix == m)
		m->pdev->msix = NULL;
	pthread_mutex_destroy(&m->lock);
	m->pdev = NULL;
}

/* Without the lock: the caller acts on it after it may have changed anyway. */
bool msix_enabled(struct msix *m)
{
	return __atomic_load_n(&m->enabled, __ATOMIC_ACQUIRE);
}

/* lock held from here on. */
static void msix_route(struct msix *m, unsigned v)
{
	struct msix_entry *e = &m->e[v];

	if (!(e->ctrl & MSIX_VECTOR_MASKED))
		msi_vec_route(&e->v, &m->sink, (uint64_t)e->addr_hi << 32 | e->addr_lo, e->data);
}

static bool msix_held(const struct msix *m, unsigned v)
{
	return m->masked || (m->e[v].ctrl & MSIX_VECTOR_MASKED) || !m->bus_master;
}

static void msix_send(struct msix *m, unsigned v)
{
	if (msix_held(m, v))
		m->e[v].pending = true;
	else
		msi_vec_fire(&m->e[v].v);
}

/* After a mask bit cleared or Bus Master came back: deliver what was held
 * back (6.8.2.9). */
static void msix_flush(struct msix *m)
{
	if (!m->enabled)
		return;
	for (unsigned v = 0; v < m->nvec; v++) {
		if (!m->e[v].pending || msix_held(m, v))
			continue;
		m->e[v].pending = false;
		msi_vec_fire(&m->e[v].v);
	}
}

void msix_notify(struct msix *m, unsigned v)
{
	pthread_mutex_lock(&m->lock);
	if (m->enabled && v < m->nvec)
		msix_send(m, v);
	pthread_mutex_unlock(&m->lock);
}

void msix_clear_pending(struct msix *m)
{
	pthread_mutex_lock(&m->lock);
	for (unsigned v = 0; v < m->nvec; v++)
		m->e[v].pending = false;
	pthread_mutex_unlock(&m->lock);
}

void msix_config_written(struct msix *m)
{
	uint16_t ctrl = pci_get_u16(m->pdev, m->cap + 2);
	bool on = ctrl & MSIX_CTRL_ENABLE;

	pthread_mutex_lock(&m->lock);
	if (on && !m->enabled)
		for (unsigned v = 0; v < m->nvec; v++)
			msix_route(m, v);
	__atomic_store_n(&m->enabled, on, __ATOMIC_RELEASE);
	m->masked = ctrl & MSIX_CTRL_MASKALL;
	m->bus_master = pci_get_u16(m->pdev, PCI_COMMAND) & PCI_COMMAND_MASTER;
	msix_flush(m);
	pthread_mutex_unlock(&m->lock);
}

static uint32_t msix_dword(const struct msix_entry *e, unsigned dw)
{
	switch (dw) {
	case 0: return e->addr_lo;
	case 1: return e->addr_hi;
	case 2: return e->data;
	default: return e->ctrl;
	}
}

static void msix_dword_write(struct msix *m, unsigned v, unsigned dw, uint32_t val)
{
	struct msix_entry *e = &m->e[v];
	bool was_masked = e->ctrl & MSIX_VECTOR_MASKED;

	switch (dw) {
	case 0: e->addr_lo = val & ~3u; break; /* dword aligned */
	case 1: e->addr_hi = val; break;
	case 2: e->data = val; break;
	default: e->ctrl = val & MSIX_VECTOR_MASKED; break;
	}
	if (!(e->ctrl & MSIX_VECTOR_MASKED) && (dw != 3 || was_masked)) {
		msix_route(m, v);
		msix_flush(m);
	}
}

static uint64_t msix_table_read(struct msix *m, uint64_t off, unsigned size)
{
	unsigned v = (unsigned)(off / MSIX_ENTRY_SIZE), dw = (unsigned)(off % MSIX_ENTRY_SIZE) / 4;
	uint64_t val;

	if ((size != 4 && size != 8) || off % size || v >= m->nvec)
		return 0;
	pthread_mutex_lock(&m->lock);
	val = msix_dword(&m->e[v], dw);
	if (size == 8)
		val |= (uint64_t)msix_dword(&m->e[v], dw + 1) << 32;
	pthread_mutex_unlock(&m->lock);
	return val;
}

static void msix_table_write(struct msix *m, uint64_t off, unsigned size, uint64_t val)
{
	unsigned v = (unsigned)(off / MSIX_ENTRY_SIZE), dw = (unsigned)(off % MSIX_ENTRY_SIZE) / 4;

	if ((size != 4 && size != 8) || off % size || v >= m->nvec)
		return;
	pthread_mutex_lock(&m->lock);
	msix_dword_write(m, v, dw, (uint32_t)val);
	if (size == 8)
		msix_dword_write(m, v, dw + 1, (uint32_t)(val >> 32));
	pthread_mutex_unlock(&m->lock);
}

static uint64_t msix_pba_read(struct msix *m, uint64_t off, unsigned size)
{
	uint64_t v = 0;

	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < 8 * size; i++) {
		uint64_t bit = off * 8 + i;

		if (bit < m->nvec && m->e[bit].pending)
			v |= 1ULL << i;
	}
	pthread_mutex_unlock(&m->lock);
	return v;
}

static bool msix_in(uint64_t off, uint64_t start, uint64_t len)
{
	return off >= start && off - start < len;
}

bool msix_bar_read(struct msix *m, int bar, uint64_t off, unsigned size, uint64_t *val)
{
	if (bar == m->table_bar &&
	    msix_in(off, m->table_off, (uint64_t)m->nvec * MSIX_ENTRY_SIZE)) {
		*val = msix_table_read(m, off - m->table_off, size);
		return true;
	}
	if (bar == m->pba_bar && msix_in(off, m->pba_off, msix_pba_len(m->nvec))) {
		*val = msix_pba_read(m, off - m->pba_off, size);
		return true;
	}
	return false;
}

/* The PBA is read-only (6.8.2.10). */
bool msix_bar_write(struct msix *m, int bar, uint64_t off, unsigned size, uint64_t val)
{
	if (bar == m->table_bar &&
	    msix_in(off, m->table_off, (uint64_t)m->nvec * MSIX_ENTRY_SIZE)) {
		msix_table_write(m, off - m->table_off, size, val);
		return true;
	}
	return bar == m->pba_bar && msix_in(off, m->pba_off, msix_pba_len(m->nvec));
}

/* ---- state ---- */

int msix_save(struct msix *m, struct state_buf *out)
{
	size_t mark = state_section_begin(out, MSIX_STATE_ID, MSIX_STATE_VERSION);

	pthread_mutex_lock(&m->lock);
	state_put_u32(out, m->nvec);
	for (unsigned v = 0; v < m->nvec; v++) {
		const struct msix_entry *e = &m->e[v];

		state_put_u32(out, e->addr_lo);
		state_put_u32(out, e->addr_hi);
		state_put_u32(out, e->data);
		state_put_u32(out, e->ctrl);
		state_put_u8(out, e->pending);
	}
	pthread_mutex_unlock(&m->lock);
	state_section_end(out, mark);
	return out->error ? -ENOMEM : 0;
}

static int msix_parse_entries(const struct msix *m, struct state_buf *in, struct msix_entry *snap)
{
	size_t end;

	if (state_section_open(in, MSIX_STATE_ID, MSIX_STATE_VERSION) < 1)
		return -EINVAL;
	end = state_section_body_end(in);
	if (state_get_u32(in) != m->nvec)
		return -EINVAL;
	for (unsigned v = 0; v < m->nvec; v++) {
		struct msix_entry *e = &snap[v];
		uint8_t pending;

		e->addr_lo = state_get_u32(in);
		e->addr_hi = state_get_u32(in);
		e->data = state_get_u32(in);
		e->ctrl = state_get_u32(in);
		pending = state_get_u8(in);
		if (in->error || (e->addr_lo & 3) || (e->ctrl & ~MSIX_VECTOR_MASKED) || pending > 1)
			return -EINVAL;
		e->pending = pending;
	}
	return state_section_done(in, end) ? 0 : -EINVAL;
}

void msix_state_free(struct msix_state *st)
{
	free(st->e);
	st->e = NULL;
}

int msix_parse(const struct msix *m, struct state_buf *in, struct msix_state *st)
{
	int ret;

	st->nvec = m->nvec;
	st->e = calloc(m->nvec, sizeof(*st->e));
	if (!st->e)
		return -ENOMEM;
	ret = msix_parse_entries(m, in, st->e);
	if (ret)
		msix_state_free(st);
	return ret;
}

void msix_commit(struct msix *m, struct msix_state *st)
{
	pthread_mutex_lock(&m->lock);
	for (unsigned v = 0; v < m->nvec && v < st->nvec; v++) {
		struct msi_vec keep = m->e[v].v;

		m->e[v] = st->e[v];
		m->e[v].v = keep;
		msix_route(m, v);
	}
	pthread_mutex_unlock(&m->lock);
	msix_state_free(st);
	msix_config_written(m);
}

int msix_load(struct msix *m, struct state_buf *in)
{
	struct msix_state st;
	int ret = msix_parse(m, in, &st);

	if (ret == 0)
		msix_commit(m, &st);
	return ret;
}
