/* The DEC 21140A "Tulip" Fast Ethernet controller (PCI 1011:0009), the NIC
 * of Hyper-V's legacy network adapter: its CSRs, the PCI function, the I/O
 * thread that runs its transmit and receive processes, its state, and its
 * life. The descriptor lists and the receive filter are tulip_ring.c's, the
 * serial ROM and the MII PHY tulip_serial.c's (tulip_priv.h between them).
 * Register semantics follow the 21140A Hardware Reference Manual (HRM).
 *
 * Threads: register accesses come from vCPUs with dev.lock held (the bus
 * takes it), as do the registry's reset, save and load. The I/O thread owns the TAP: it takes dev.lock for each
 * descriptor walk and drops it while a frame goes to or comes from the TAP,
 * so a vCPU never waits for the host's network stack. A vCPU reaches it
 * through eventfds: kick_fd (CSR1 transmit poll demand, written by KVM
 * itself through an ioeventfd on CSR1, so a transmit costs no exit to user
 * space) and wake_fd (CSR2 receive poll demands, also by ioeventfd, and
 * register writes that let a stopped or suspended process go on). The interrupt line is driven from both, under dev.lock.
 *
 * What the model leaves out: the boot ROM (CSR9 BR, CSR10 only stores an
 * address), big-endian data buffers (CSR0 BLE is stored, not applied; DBO,
 * big-endian descriptors, is), early transmit/receive interrupts, the
 * FIFO-overflow counter (always 0), loopback modes (frames go to the TAP),
 * and the transmit and receive process stopped bits for stops the driver
 * asked for (CSR6): TPS and RPS report only stops the device made on its
 * own (jabber, a hostile ring, a fatal bus error), as Linux's tulip driver
 * restarts the transmitter whenever it sees TPS. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "kestrel/clock.h"
#include "kestrel/pci_dma.h"
#include "kestrel/sandbox.h"
#include "kestrel/state.h"
#include "kestrel/vm.h"
#include "emu.h"
#include "tulip_priv.h"

#define TULIP_REGION_IO	    0
#define TULIP_REGION_MEM    1
#define TULIP_REVISION	    0x20   /* 21140A, as Hyper-V's */
#define TULIP_SUBSYS_VENDOR 0x1af4 /* as kestrel's virtio functions */
#define TULIP_SUBSYS_ID	    0x1100
#define TULIP_CFDD	    0x40 /* configuration device and driver area */
#define TULIP_CSR1	    (1 * 8)
#define TULIP_CSR2	    (2 * 8)

static struct tulip *to_tulip(struct device *dev)
{
	return (struct tulip *)dev;
}

void tulip_wake(struct tulip *t)
{
	if (t->wake_fd >= 0 && eventfd_write(t->wake_fd, 1) < 0)
		kdebug("%s: wake-up write failed", t->name);
}

void tulip_warn_once(struct tulip *t, const char *why)
{
	if (!t->warned)
		kwarn("%s: %s", t->name, why);
	t->warned = true;
}

/* ---- guest memory, as a PCI bus master: the one path by which this
 * device touches guest RAM (Bus Master Enable gates it; what it writes is
 * marked dirty) ---- */

int tulip_dma_read(struct tulip *t, uint64_t addr, void *buf, uint64_t len)
{
	int r = pci_dma_read(&t->pdev, addr, buf, len);

	return r == -ENODEV ? -EPERM : r;
}

int tulip_dma_write(struct tulip *t, uint64_t addr, const void *buf, uint64_t len)
{
	int r = pci_dma_write(&t->pdev, addr, buf, len);

	return r == -ENODEV ? -EPERM : r;
}

/* ---- interrupts (HRM 3.2.2.6: NIS and AIS summarise the enabled
 * sources; INTA# is asserted while an enabled summary is set) ---- */

static uint32_t tulip_summary(const struct tulip *t)
{
	uint32_t on = t->status & t->csr7, s = 0;

	if (on & CSR5_NORMAL)
		s |= CSR5_NIS;
	if (on & CSR5_ABNORMAL)
		s |= CSR5_AIS;
	return s;
}

/* The core routes INTA#, masks it under Interrupt Disable and shows it in
 * STATUS.INTERRUPT. */
void tulip_update_irq(struct tulip *t)
{
	int level = (tulip_summary(t) & t->csr7) != 0;

	if (level == t->irq_level)
		return;
	t->irq_level = level;
	pci_intx_set(&t->pdev, level);
}

/* A master abort on the bus (an address outside RAM): HRM 3.2.2.6 FBE,
 * both processes stop and nothing moves until a software reset. */
void tulip_fatal(struct tulip *t, const char *why)
{
	tulip_warn_once(t, why);
	t->fatal = true;
	t->eb = CSR5_EB_MASTER_ABORT;
	t->status |= CSR5_FBE;
	if (t->ts != TS_STOPPED)
		t->status |= CSR5_TPS;
	if (t->rs != RS_STOPPED)
		t->status |= CSR5_RPS;
	t->ts = TS_STOPPED;
	t->rs = RS_STOPPED;
	pci_set_u16(&t->pdev, PCI_STATUS,
		    pci_get_u16(&t->pdev, PCI_STATUS) | PCI_STATUS_REC_MASTER_ABORT);
	tulip_update_irq(t);
}

/* ---- reset ---- */

/* CSR0 SWR and a device reset: every CSR to its reset value (HRM 3.2.1
 * table 3-5), both processes stopped, the filter and any half-gathered
 * frame gone. The serial ROM and the PHY keep their contents. */
static void tulip_soft_reset(struct tulip *t)
{
	t->csr0 = CSR0_RESET;
	t->csr3 = t->csr4 = 0;
	t->rx_cur = t->tx_cur = 0;
	t->status = 0;
	t->rs = RS_STOPPED;
	t->ts = TS_STOPPED;
	t->eb = 0;
	t->csr6 = CSR6_RESET;
	t->csr7 = 0;
	t->missed = 0;
	t->csr9 = 0;
	t->csr10 = 0;
	t->gpt = 0;
	t->gpt_deadline = 0;
	t->gp_dir = t->gp_out = 0;
	t->csr15 = 0;
	t->fatal = false;
	t->tx_poll_at = t->rx_grace_at = 0;
	tulip_filter_reset(&t->filter);
	tulip_srom_reset(&t->srom);
	tulip_tx_reset(t);
	tulip_update_irq(t);
}

/* ---- CSR reads ---- */

/* CSR11 counts down in units of 81.92 us at 100 Mb/s (CSR6 PS: the 100
 * Mb/s port) and 204.8 us at 10 Mb/s (HRM 3.2.2.12). */
static uint64_t tulip_gpt_unit_ns(const struct tulip *t)
{
	return t->csr6 & CSR6_PS ? 81920 : 204800;
}

static uint32_t tulip_gpt_read(const struct tulip *t)
{
	uint64_t now = clock_mono_ns(), unit = tulip_gpt_unit_ns(t), left = 0;

	if (t->gpt_deadline > now)
		left = (t->gpt_deadline - now + unit - 1) / unit;
	return (uint32_t)MIN(left, (uint64_t)CSR11_VALUE) | (t->gpt & CSR11_CON);
}

/* Input pins read the outside world (the link-sense pin: 1 while the link
 * is up), outputs what was driven on them. */
static uint32_t tulip_gp_read(const struct tulip *t)
{
	uint8_t in = atomic_load(&t->link_up) ? 1u << TULIP_GP_LINK : 0;

	return (uint8_t)((t->gp_out & t->gp_dir) | (in & ~t->gp_dir));
}

static uint32_t tulip_csr9_read(const struct tulip *t)
{
	uint32_t v = t->csr9 & ~(CSR9_SR_DO | CSR9_MDI);

	if ((t->csr9 & (CSR9_SR | CSR9_RD)) == (CSR9_SR | CSR9_RD) && t->srom.dout)
		v |= CSR9_SR_DO;
	if (t->mii.mdi)
		v |= CSR9_MDI;
	return v;
}

static uint32_t tulip_csr_read(struct tulip *t, unsigned n)
{
	uint32_t v;

	switch (n) {
	case 0: return t->csr0;
	case 1:
	case 2: return 0xffffffffu; /* write-only demands */
	case 3: return t->csr3;
	case 4: return t->csr4;
	case 5:
		return t->status | tulip_summary(t) | (uint32_t)t->rs << CSR5_RS_SHIFT |
		       (uint32_t)t->ts << CSR5_TS_SHIFT | (uint32_t)t->eb << CSR5_EB_SHIFT;
	case 6: return t->csr6;
	case 7: return t->csr7;
	case 8:
		/* HRM 3.2.2.9: the counter clears when read. */
		v = t->missed;
		t->missed = 0;
		return v;
	case 9: return tulip_csr9_read(t);
	case 10: return t->csr10;
	case 11: return tulip_gpt_read(t);
	case 12: return tulip_gp_read(t);
	case 15: return t->csr15;
	}
	return 0; /* CSR13, CSR14: reserved on the 21140A */
}

/* ---- CSR writes ---- */

static void tulip_csr0_write(struct tulip *t, uint32_t v)
{
	if (v & CSR0_SWR) {
		tulip_soft_reset(t);
		tulip_wake(t);
		return;
	}
	t->csr0 = CSR0_RESET | (v & CSR0_WMASK);
}

/* HRM 3.2.2.7: SR and ST start and stop the processes; a started process
 * goes on from its current descriptor. */
static void tulip_csr6_write(struct tulip *t, uint32_t v)
{
	uint32_t old = t->csr6;

	t->csr6 = (old & CSR6_RO) | CSR6_MBO | (v & CSR6_WMASK);
	if ((t->csr6 & CSR6_SR) && t->rs == RS_STOPPED && !t->fatal)
		t->rs = RS_WAITING;
	if (!(t->csr6 & CSR6_SR))
		t->rs = RS_STOPPED;
	if ((t->csr6 & CSR6_ST) && t->ts == TS_STOPPED && !t->fatal)
		t->ts = TS_FETCHING;
	if (!(t->csr6 & CSR6_ST))
		t->ts = TS_STOPPED;
	if ((old ^ t->csr6) & (CSR6_SR | CSR6_ST | CSR6_PS))
		tulip_wake(t);
}

/* A poll demand: written by the vCPU when KVM has no ioeventfd on CSR1. */
static void tulip_kick(struct tulip *t)
{
	if (eventfd_write(t->kick_fd, 1) < 0)
		kdebug("%s: kick write failed", t->name);
}

static void tulip_csr11_write(struct tulip *t, uint32_t v)
{
	uint32_t count = v & CSR11_VALUE;

	t->gpt = v & (CSR11_VALUE | CSR11_CON);
	t->gpt_deadline = count ? clock_mono_ns() + count * tulip_gpt_unit_ns(t) : 0;
	tulip_wake(t);
}

static void tulip_csr12_write(struct tulip *t, uint32_t v)
{
	if (v & CSR12_GPC)
		t->gp_dir = (uint8_t)v;
	else
		t->gp_out = (uint8_t)v;
}

static void tulip_csr9_write(struct tulip *t, uint32_t v)
{
	t->csr9 = v & ~(CSR9_SR_DO | CSR9_MDI);
	tulip_srom_pins(&t->srom, (v & CSR9_SR) ? v : 0);
	tulip_mii_pins(&t->mii, v, atomic_load(&t->link_up));
}

static void tulip_csr_write(struct tulip *t, unsigned n, uint32_t v)
{
	switch (n) {
	case 0: tulip_csr0_write(t, v); break;
	case 1: tulip_kick(t); break;
	case 2: tulip_wake(t); break;
	case 3: t->csr3 = t->rx_cur = v & ~3u; break;
	case 4: t->csr4 = t->tx_cur = v & ~3u; break;
	case 5:
		t->status &= ~(v & CSR5_SOURCES);
		if (t->rs == RS_SUSPENDED)
			tulip_wake(t);
		break;
	case 6: tulip_csr6_write(t, v); break;
	case 7:
		t->csr7 = v & CSR7_WMASK;
		if (t->rs == RS_SUSPENDED)
			tulip_wake(t);
		break;
	case 9: tulip_csr9_write(t, v); break;
	case 10: t->csr10 = v & 0x3ffffu; break;
	case 11: tulip_csr11_write(t, v); break;
	case 12: tulip_csr12_write(t, v); break;
	case 15: t->csr15 = v & CSR15_WMASK; break;
	}
	tulip_update_irq(t);
}

/* HRM 3.1: CSRs are longwords at longword-aligned offsets 8 apart. Narrower
 * reads see their byte lanes; other writes are ignored. */
static uint64_t tulip_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	struct tulip *t = to_tulip(dev);
	uint64_t base = off & ~7ULL;
	uint32_t v;

	if (base >= TULIP_CSR_SPACE || (off & 7) + size > 4)
		return 0;
	v = tulip_csr_read(t, (unsigned)(base / 8));
	return emu_lane_out(off, size, base, 4, v);
}

static void tulip_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct tulip *t = to_tulip(dev);

	if (off >= TULIP_CSR_SPACE || (off & 7) || size != 4) {
		tulip_warn_once(t, "CSR access that is not a longword; ignored");
		return;
	}
	tulip_csr_write(t, (unsigned)(off / 8), (uint32_t)val);
}

/* ---- the PCI function ---- */

/* The poll demands (CSR1 transmit, CSR2 receive) signal the I/O thread
 * inside KVM: their value means nothing, so no exit to user space. */
static void tulip_demand_fds(struct tulip *t, int bar, bool assign)
{
	static const unsigned off[2] = { TULIP_CSR1, TULIP_CSR2 };
	const int fd[2] = { t->kick_fd, t->wake_fd };
	bool pio = bar == 0;

	if (!t->vm || t->bar_addr[bar] == PCI_BAR_UNMAPPED)
		return;
	for (int i = 0; i < 2; i++) {
		uint64_t addr = t->bar_addr[bar] + off[i];
		unsigned *len = &t->demand_len[bar][i];

		if (!assign) {
			if (*len && vm_ioeventfd(t->vm, addr, *len - 1, pio, fd[i], false))
				kwarn("%s: cannot remove the ioeventfd on CSR%d", t->name, i + 1);
			*len = 0;
			continue;
		}
		/* Drivers write them as longwords; any length where KVM allows it. */
		if (vm_ioeventfd(t->vm, addr, 0, pio, fd[i], true) == 0)
			*len = 1;
		else if (vm_ioeventfd(t->vm, addr, 4, pio, fd[i], true) == 0)
			*len = 5;
		else
			kdebug("%s: no ioeventfd on CSR%d: its writes exit to user space", t->name,
			       i + 1);
	}
}

/* The core has moved the BAR on its bus (pci_bar_attach); the poll
 * demands' ioeventfds follow it. bar_addr and these ioeventfds change only
 * here, and the core calls this only where config space cannot change
 * under it: a guest config write (the host's lock), a load (dev.lock held
 * by the registry, vCPUs paused) and pci_dev_exit at destroy; so dev.lock
 * is not taken. */
static void tulip_bar_remap(struct pci_dev *pdev, int bar, uint64_t old, uint64_t now)
{
	struct tulip *t = pdev->opaque;

	if (bar != 0 && bar != 1)
		return;
	tulip_demand_fds(t, bar, false);
	t->bar_addr[bar] = now;
	tulip_demand_fds(t, bar, true);
}

/* Bus Master coming on lets a waiting process go on. */
static void tulip_cfg_write(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val)
{
	struct tulip *t = pdev->opaque;

	if (off >= PCI_COMMAND + 2 || off + size <= PCI_COMMAND)
		return;
	tulip_wake(t);
}

static const struct pci_dev_ops tulip_pci_ops = {
	.cfg_write = tulip_cfg_write,
	.bar_remap = tulip_bar_remap,
};

/* ---- the I/O thread ---- */

static void tulip_drain(int fd, atomic_ullong *count)
{
	eventfd_t v;

	if (eventfd_read(fd, &v) == 0 && count)
		atomic_fetch_add(count, v);
}

/* Timers that run out at now (dev.lock held): the general-purpose timer
 * (GTE) and transmit automatic polling (CSR0 TAP: a suspended transmit
 * process looks at its descriptor again, HRM 3.2.2.1). True when the
 * transmit process has to fetch. */
static bool tulip_timers(struct tulip *t, uint64_t now)
{
	static const uint32_t tap_us[8] = { 0, 200, 800, 1600, 12, 25, 51, 102 };
	unsigned tap = (t->csr0 >> CSR0_TAP_SHIFT) & CSR0_TAP_MASK;

	if (t->gpt_deadline && now >= t->gpt_deadline) {
		uint64_t period = (t->gpt & CSR11_VALUE) * tulip_gpt_unit_ns(t);

		t->status |= CSR5_GTE;
		t->gpt_deadline = (t->gpt & CSR11_CON) && period ? now + period : 0;
		tulip_update_irq(t);
	}
	if (!tap || t->ts != TS_SUSPENDED) {
		t->tx_poll_at = 0;
	} else if (!t->tx_poll_at) {
		t->tx_poll_at = now + tap_us[tap] * 1000ULL;
	} else if (now >= t->tx_poll_at) {
		t->ts = TS_FETCHING;
		t->tx_poll_at = 0;
		return true;
	}
	return false;
}

static uint64_t tulip_next_deadline(const struct tulip *t, uint64_t now)
{
	uint64_t d = UINT64_MAX;

	if (t->gpt_deadline)
		d = MIN(d, t->gpt_deadline);
	if (t->tx_poll_at)
		d = MIN(d, t->tx_poll_at);
	if (t->rs == RS_SUSPENDED && t->rx_grace_at > now)
		d = MIN(d, t->rx_grace_at);
	return d;
}

static struct timespec *tulip_timeout(uint64_t deadline, uint64_t now, struct timespec *ts)
{
	uint64_t left;

	if (deadline == UINT64_MAX)
		return NULL;
	left = deadline > now ? deadline - now : 0;
	ts->tv_sec = (time_t)(left / 1000000000ULL);
	ts->tv_nsec = (long)(left % 1000000000ULL);
	return ts;
}

/* A transmit poll demand (HRM 3.2.2.2): a suspended process fetches its
 * descriptor again. */
static void tulip_tx_demand(struct tulip *t)
{
	pthread_mutex_lock(&t->dev.lock);
	if (t->ts == TS_SUSPENDED)
		t->ts = TS_FETCHING;
	pthread_mutex_unlock(&t->dev.lock);
}

static void *tulip_thread(void *arg)
{
	struct tulip *t = arg;
	struct pollfd pfd[4] = {
		{ .fd = t->stop_fd, .events = POLLIN },
		{ .fd = t->kick_fd, .events = POLLIN },
		{ .fd = t->wake_fd, .events = POLLIN },
		{ .fd = t->tap.fd[0] },
	};
	bool tx_more = false, rx_more = false, want_rx;
	struct timespec ts, zero = { 0, 0 }, *tmo;

	for (;;) {
		uint64_t now = clock_mono_ns();

		pthread_mutex_lock(&t->dev.lock);
		tx_more |= tulip_timers(t, now);
		want_rx = tulip_rx_wants_frames(t, now);
		tmo = tulip_timeout(tulip_next_deadline(t, now), now, &ts);
		pthread_mutex_unlock(&t->dev.lock);
		pfd[3].events = want_rx ? POLLIN : 0;
		if (ppoll(pfd, 4, tx_more || (want_rx && rx_more) ? &zero : tmo, NULL) < 0)
			continue;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN) {
			tulip_drain(t->kick_fd, &t->ctr.kicks);
			tulip_tx_demand(t);
		}
		if (pfd[2].revents & POLLIN) {
			tulip_drain(t->wake_fd, NULL);
			tulip_rx_recheck(t);
		}
		tx_more = tulip_tx_serve(t);
		rx_more = want_rx && ((pfd[3].revents & POLLIN) || rx_more) && tulip_rx_serve(t);
	}
	return NULL;
}

/* An I/O thread of the sandbox ("net0-tulip": for ps and the seccomp
 * report). */
static int tulip_thread_start(struct tulip *t)
{
	char name[32];
	int ret;

	snprintf(name, sizeof(name), "%.8s-tulip", t->name);
	ret = sandbox_thread_start(&t->thread, SANDBOX_IO, name, tulip_thread, t);
	t->thread_running = ret == 0;
	return ret;
}

static void tulip_thread_stop(struct tulip *t)
{
	eventfd_t v;

	if (!t->thread_running)
		return;
	if (eventfd_write(t->stop_fd, 1) < 0)
		kwarn("%s: cannot stop the I/O thread", t->name);
	pthread_join(t->thread, NULL);
	t->thread_running = false;
	while (eventfd_read(t->stop_fd, &v) == 0)
		;
}

/* ---- the registry's quiesce and resume ----
 * Quiesce stops the I/O thread: after it nothing of the NIC touches guest
 * memory or the TAP, and the general-purpose timer stands still (its count
 * is kept in gpt_frozen) until resume. */

static void tulip_quiesce(struct device *dev)
{
	struct tulip *t = to_tulip(dev);
	uint64_t now = clock_mono_ns(), unit;

	/* A restore quiesces the machine it just built, before the seal: the
	 * I/O thread then still waits in its sandbox entry, has run nothing,
	 * and could not be joined (it leaves the entry only at the seal). */
	if (!sandbox_in_setup())
		tulip_thread_stop(t);
	pthread_mutex_lock(&dev->lock);
	if (!t->quiesced && t->gpt_deadline) {
		unit = tulip_gpt_unit_ns(t);
		t->gpt_frozen = (uint32_t)MIN(
			(t->gpt_deadline > now ? t->gpt_deadline - now : 0) / unit + 1,
			(uint64_t)CSR11_VALUE);
	}
	t->gpt_deadline = 0;
	t->quiesced = true;
	pthread_mutex_unlock(&dev->lock);
}

static int tulip_resume(struct device *dev)
{
	struct tulip *t = to_tulip(dev);

	pthread_mutex_lock(&dev->lock);
	if (t->quiesced && t->gpt_frozen)
		t->gpt_deadline = clock_mono_ns() + t->gpt_frozen * tulip_gpt_unit_ns(t);
	t->gpt_frozen = 0;
	t->quiesced = false;
	pthread_mutex_unlock(&dev->lock);
	return t->thread_running ? 0 : tulip_thread_start(t);
}

/* ---- state ----
 * Section {TULP, 1}: the CSRs (CSR5 as its sources and process states,
 * CSR11 as written and the count left), the missed-frame counter, the
 * current descriptors, the fatal-error latch, the receive filter, the
 * serial ROM's and the PHY's shift state, the PHY's writable registers
 * (BMCR, ANAR), and a frame half-gathered from transmit descriptors. Then
 * the PCI function's section (PCIF). The ROM's contents (the MAC) and the
 * link are the machine's configuration and the host's, not state. Save
 * and load run with dev.lock held, the NIC quiesced (the registry). */
#define TULIP_STATE_ID	    0x504c5554 /* "TULP" */
#define TULIP_STATE_VERSION 1

struct tulip_saved {
	uint32_t csr0, csr3, csr4, status, csr6, csr7, csr9, csr10, csr15, missed, gpt, gpt_left;
	uint32_t rx_cur, tx_cur;
	unsigned rs, ts, eb;
	uint8_t gp_dir, gp_out;
	bool fatal, tx_in_frame, tx_jabber;
	struct tulip_filter filter;
	struct tulip_srom srom;
	struct tulip_mii mii;
	uint16_t tx_len;
};

static void tulip_put_srom(struct state_buf *out, const struct tulip_srom *s)
{
	state_put_u8(out, (uint8_t)s->phase);
	state_put_u8(out, (uint8_t)(s->sk | s->dout << 1));
	state_put_u8(out, (uint8_t)s->nbits);
	state_put_u32(out, s->cmd);
	state_put_u16(out, s->addr);
	state_put_u16(out, s->shift);
	state_put_u8(out, (uint8_t)s->left);
}

static void tulip_put_mii(struct state_buf *out, const struct tulip_mii *m)
{
	state_put_u16(out, m->reg[TULIP_MII_BMCR]);
	state_put_u16(out, m->reg[TULIP_MII_ANAR]);
	state_put_u8(out, (uint8_t)(m->link_lost | m->mdc << 1 | m->mdi << 2));
	state_put_u8(out, (uint8_t)m->phase);
	state_put_u8(out, (uint8_t)m->ones);
	state_put_u8(out, (uint8_t)m->nbits);
	state_put_u32(out, m->word);
}

static void tulip_put_regs(struct state_buf *out, struct tulip *t)
{
	uint32_t left = t->quiesced ? t->gpt_frozen : tulip_gpt_read(t) & CSR11_VALUE;
	uint32_t regs[] = {
		t->csr0,  t->csr3,  t->csr4,   t->status, t->csr6, t->csr7,   t->csr9,
		t->csr10, t->csr15, t->missed, t->gpt,	  left,	   t->rx_cur, t->tx_cur
	};

	for (unsigned i = 0; i < ARRAY_SIZE(regs); i++)
		state_put_u32(out, regs[i]);
	state_put_u8(out, (uint8_t)t->rs);
	state_put_u8(out, (uint8_t)t->ts);
	state_put_u8(out, (uint8_t)t->eb);
	state_put_u8(out, t->gp_dir);
	state_put_u8(out, t->gp_out);
	state_put_u8(out, (uint8_t)(t->fatal | t->tx_in_frame << 1 | t->tx_jabber << 2));
}

static int tulip_save(struct device *dev, struct state_buf *out)
{
	struct tulip *t = to_tulip(dev);
	size_t mark = state_section_begin(out, TULIP_STATE_ID, TULIP_STATE_VERSION);

	tulip_put_regs(out, t);
	state_put_u8(out, (uint8_t)t->filter.mode);
	state_put_bytes(out, t->filter.perfect, sizeof(t->filter.perfect));
	state_put_bytes(out, t->filter.hash, sizeof(t->filter.hash));
	tulip_put_srom(out, &t->srom);
	tulip_put_mii(out, &t->mii);
	state_put_u16(out, (uint16_t)t->tx_len);
	state_put_bytes(out, t->tx_frame, t->tx_len);
	state_section_end(out, mark);
	if (pci_dev_save(&t->pdev, out) < 0)
		return -ENOMEM;
	return out->error ? -ENOMEM : 0;
}

static void tulip_get_regs(struct state_buf *in, struct tulip_saved *s)
{
	uint32_t *regs[] = { &s->csr0, &s->csr3,     &s->csr4,	 &s->status, &s->csr6,
			     &s->csr7, &s->csr9,     &s->csr10,	 &s->csr15,  &s->missed,
			     &s->gpt,  &s->gpt_left, &s->rx_cur, &s->tx_cur };
	uint8_t flags;

	for (unsigned i = 0; i < ARRAY_SIZE(regs); i++)
		*regs[i] = state_get_u32(in);
	s->rs = state_get_u8(in);
	s->ts = state_get_u8(in);
	s->eb = state_get_u8(in);
	s->gp_dir = state_get_u8(in);
	s->gp_out = state_get_u8(in);
	flags = state_get_u8(in);
	s->fatal = flags & 1;
	s->tx_in_frame = flags & 2;
	s->tx_jabber = flags & 4;
	if (flags & ~7u)
		in->error = true;
}

/* The process states the model uses, each only while its CSR6 bit is on;
 * after a fatal bus error both stopped; CSR6's read-only bits as the
 * filter's mode shows them. */
static bool tulip_states_valid(const struct tulip_saved *s)
{
	bool rs_ok = s->rs == RS_STOPPED || s->rs == RS_WAITING || s->rs == RS_SUSPENDED;
	bool ts_ok = s->ts == TS_STOPPED || s->ts == TS_FETCHING || s->ts == TS_SUSPENDED;

	return rs_ok && ts_ok && s->eb <= CSR5_EB_MASTER_ABORT &&
	       (s->rs == RS_STOPPED || (s->csr6 & CSR6_SR)) &&
	       (s->ts == TS_STOPPED || (s->csr6 & CSR6_ST)) &&
	       (!s->fatal || (s->rs == RS_STOPPED && s->ts == TS_STOPPED)) &&
	       (s->csr6 & CSR6_RO) == tulip_filter_csr6(&s->filter) &&
	       (s->tx_len == 0 || s->tx_in_frame);
}

static bool tulip_regs_valid(const struct tulip_saved *s)
{
	return (s->csr0 & ~(CSR0_WMASK | CSR0_RESET)) == 0 &&
	       (s->csr0 & CSR0_RESET) == CSR0_RESET &&
	       !((s->csr3 | s->csr4 | s->rx_cur | s->tx_cur) & 3) && !(s->status & ~CSR5_SOURCES) &&
	       (s->csr6 & ~(CSR6_WMASK | CSR6_RO)) == CSR6_MBO && !(s->csr7 & ~CSR7_WMASK) &&
	       !(s->csr9 & (CSR9_SR_DO | CSR9_MDI)) && !(s->csr10 & ~0x3ffffu) &&
	       !(s->csr15 & ~CSR15_WMASK) && !(s->missed & ~(CSR8_MFO | 0xffffu)) &&
	       !(s->gpt & ~(CSR11_VALUE | CSR11_CON)) && s->gpt_left <= CSR11_VALUE &&
	       tulip_states_valid(s);
}

static bool tulip_get_srom(struct state_buf *in, struct tulip_srom *s)
{
	uint8_t pins;

	s->phase = state_get_u8(in);
	pins = state_get_u8(in);
	s->sk = pins & 1;
	s->dout = pins & 2;
	s->nbits = state_get_u8(in);
	s->cmd = state_get_u32(in);
	s->addr = state_get_u16(in);
	s->shift = state_get_u16(in);
	s->left = state_get_u8(in);
	return !(pins & ~3u) && s->phase <= SROM_SKIP && s->nbits <= 8 && s->cmd < 256 &&
	       s->addr < 64 && s->left <= 16;
}

static bool tulip_get_mii(struct state_buf *in, struct tulip_mii *m)
{
	uint8_t flags;

	memset(m->reg, 0, sizeof(m->reg));
	m->reg[TULIP_MII_BMCR] = state_get_u16(in);
	m->reg[TULIP_MII_ANAR] = state_get_u16(in);
	flags = state_get_u8(in);
	m->link_lost = flags & 1;
	m->mdc = flags & 2;
	m->mdi = flags & 4;
	m->phase = state_get_u8(in);
	m->ones = state_get_u8(in);
	m->nbits = state_get_u8(in);
	m->word = state_get_u32(in);
	return !(flags & ~7u) && m->phase <= MII_WRITE && m->nbits <= 18 && tulip_mii_regs_valid(m);
}

static int tulip_parse(struct state_buf *in, struct tulip_saved *s, uint8_t *frame)
{
	size_t end;
	bool ok;

	memset(s, 0, sizeof(*s));
	if (state_section_open(in, TULIP_STATE_ID, TULIP_STATE_VERSION) < 0)
		return -EINVAL;
	end = emu_section_body_end(in);
	tulip_get_regs(in, s);
	s->filter.mode = state_get_u8(in);
	state_get_bytes(in, s->filter.perfect, sizeof(s->filter.perfect));
	state_get_bytes(in, s->filter.hash, sizeof(s->filter.hash));
	ok = tulip_get_srom(in, &s->srom);
	ok &= tulip_get_mii(in, &s->mii);
	s->tx_len = state_get_u16(in);
	if (in->error || !ok || s->tx_len > TULIP_FRAME_MAX || !tulip_filter_valid(&s->filter))
		return -EINVAL;
	state_get_bytes(in, frame, s->tx_len);
	return emu_section_done(in, end) && tulip_regs_valid(s) ? 0 : -EINVAL;
}

static void tulip_commit(struct tulip *t, const struct tulip_saved *s, const uint8_t *frame)
{
	uint16_t words[ARRAY_SIZE(t->srom.words)];

	t->csr0 = s->csr0;
	t->csr3 = s->csr3;
	t->csr4 = s->csr4;
	t->status = s->status;
	t->csr6 = s->csr6;
	t->csr7 = s->csr7;
	t->csr9 = s->csr9;
	t->csr10 = s->csr10;
	t->csr15 = s->csr15;
	t->missed = s->missed;
	t->gpt = s->gpt;
	t->gpt_frozen = t->quiesced ? s->gpt_left : 0;
	t->gpt_deadline = !t->quiesced && s->gpt_left
				  ? clock_mono_ns() + s->gpt_left * tulip_gpt_unit_ns(t)
				  : 0;
	t->rx_cur = s->rx_cur;
	t->tx_cur = s->tx_cur;
	t->rs = s->rs;
	t->ts = s->ts;
	t->eb = s->eb;
	t->gp_dir = s->gp_dir;
	t->gp_out = s->gp_out;
	t->fatal = s->fatal;
	t->filter = s->filter;
	memcpy(words, t->srom.words, sizeof(words));
	t->srom = s->srom;
	memcpy(t->srom.words, words, sizeof(words));
	t->mii = s->mii;
	t->tx_in_frame = s->tx_in_frame;
	t->tx_jabber = s->tx_jabber;
	t->tx_len = s->tx_len;
	memcpy(t->tx_frame, frame, s->tx_len);
	t->tx_poll_at = t->rx_grace_at = 0;
}

/* Everything is checked before anything changes: a hostile stream leaves
 * the device as it was. */
static int tulip_load(struct device *dev, struct state_buf *in)
{
	struct tulip *t = to_tulip(dev);
	struct tulip_saved *s = malloc(sizeof(*s));
	struct pci_dev_state *ps = malloc(sizeof(*ps));
	uint8_t *frame = malloc(TULIP_FRAME_MAX);
	int ret = -ENOMEM;

	if (!s || !ps || !frame)
		goto out;
	ret = -EBUSY;
	if (!t->quiesced)
		goto out;
	ret = -EINVAL;
	if (tulip_parse(in, s, frame) < 0 || pci_dev_parse(&t->pdev, in, ps) < 0)
		goto out;
	pci_dev_commit(&t->pdev, ps);
	tulip_commit(t, s, frame);
	t->irq_level = -1;
	tulip_update_irq(t);
	ret = 0;
out:
	free(s);
	free(ps);
	free(frame);
	return ret;
}

/* ---- life ---- */

/* The registry's reset (dev.lock held): power-on state. */
static void tulip_dev_reset(struct device *dev)
{
	struct tulip *t = to_tulip(dev);

	tulip_soft_reset(t);
	tulip_mii_reset(&t->mii);
	tulip_wake(t);
}

static void tulip_print_stats(struct tulip *t)
{
	struct tulip_stats st;

	if (tulip_get_stats(&t->dev, &st))
		return;
	fprintf(stderr,
		"kestrel: stats: tulip %s rx_packets=%llu rx_bytes=%llu rx_dropped=%llu "
		"rx_missed=%llu tx_packets=%llu tx_bytes=%llu tx_dropped=%llu tx_kicks=%llu\n",
		t->name, (unsigned long long)st.rx_packets, (unsigned long long)st.rx_bytes,
		(unsigned long long)st.rx_dropped, (unsigned long long)st.rx_missed,
		(unsigned long long)st.tx_packets, (unsigned long long)st.tx_bytes,
		(unsigned long long)st.tx_dropped, (unsigned long long)st.kicks);
}

static void tulip_destroy(struct device *dev)
{
	struct tulip *t = to_tulip(dev);

	tulip_thread_stop(t);
	pci_dev_exit(&t->pdev); /* the BARs off their buses, their ioeventfds gone */
	if (t->print_stats)
		tulip_print_stats(t);
	if (t->kick_fd >= 0)
		close(t->kick_fd);
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	if (t->stop_fd >= 0)
		close(t->stop_fd);
	net_tap_close(&t->tap);
	pthread_mutex_destroy(&dev->lock);
	free(t);
}

static const struct dev_ops tulip_ops = {
	.name = "tulip",
	.reset = tulip_dev_reset,
	.read = tulip_read,
	.write = tulip_write,
	.quiesce = tulip_quiesce,
	.resume = tulip_resume,
	.save = tulip_save,
	.load = tulip_load,
	.destroy = tulip_destroy,
};

/* PCI 3.0 header: Ethernet controller (02 00 00), INTA#, BAR 0 the CSRs in
 * I/O space, BAR 1 the same in memory space (HRM 3.1.1, CBIO and CBMA), and
 * CFDD (0x40), the power-management bits drivers of later chips write. */
static int tulip_pci_init(struct tulip *t, const struct tulip_board *b)
{
	struct pci_dev *p = &t->pdev;
	int ret;

	pci_dev_init(p, TULIP_VENDOR, TULIP_DEVICE, 0x020000, TULIP_REVISION, &tulip_pci_ops, t);
	pci_dev_set_subsystem(p, TULIP_SUBSYS_VENDOR, TULIP_SUBSYS_ID);
	pci_dev_set_irq(p, 1, 0);
	ret = pci_dev_reserve(p, TULIP_CFDD, 4);
	memset(&p->wmask[TULIP_CFDD], 0xff, 4);
	ret = ret ?: pci_dev_set_bar(p, 0, TULIP_CSR_SPACE, PCI_BAR_IO);
	ret = ret ?: pci_dev_set_bar(p, 1, TULIP_CSR_SPACE, PCI_BAR_MEM32);
	if (ret)
		return ret;
	pci_bar_attach(p, 0, &t->dev, TULIP_REGION_IO);
	pci_bar_attach(p, 1, &t->dev, TULIP_REGION_MEM);
	if (b->pci_host)
		ret = pci_host_add(b->pci_host, p, b->slot);
	else if (b->bus)
		ret = pci_bus_add(b->bus, p, b->slot, 0);
	return ret < 0 ? ret : 0;
}

static struct tulip *tulip_alloc(const struct tulip_board *b, const struct tulip_opts *o,
				 struct net_tap *tap)
{
	struct tulip *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	device_init(&t->dev, &tulip_ops);
	t->vm = b->vm;
	t->irq_level = -1;
	t->tap = *tap;
	snprintf(t->name, sizeof(t->name), "%s", o->name ? o->name : "net");
	memcpy(t->mac, o->mac, NET_ETH_ALEN);
	t->vlan = o->vlan;
	t->print_stats = o->stats;
	t->bar_addr[0] = t->bar_addr[1] = PCI_BAR_UNMAPPED;
	atomic_store(&t->link_up, true);
	t->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return t;
}

int tulip_create(const struct tulip_board *b, const struct tulip_opts *o, struct net_tap *tap,
		 struct device **out, char *err, size_t errlen)
{
	const char *name = o->name ? o->name : "net";
	struct tulip *t;
	int ret;

	if (tap->nqueues != 1 || o->vlan > NET_VLAN_ID_MAX) {
		net_tap_close(tap);
		snprintf(err, errlen, "%s: model=tulip takes one TAP queue and a VLAN id up to %d",
			 name, NET_VLAN_ID_MAX);
		return -EINVAL;
	}
	t = tulip_alloc(b, o, tap);
	if (!t) {
		net_tap_close(tap);
		snprintf(err, errlen, "%s: out of memory", name);
		return -ENOMEM;
	}
	tulip_srom_build(&t->srom, t->mac);
	tulip_mii_reset(&t->mii);
	tulip_soft_reset(t);
	ret = t->kick_fd < 0 || t->wake_fd < 0 || t->stop_fd < 0 ? -EMFILE : 0;
	ret = ret ?: tulip_pci_init(t, b);
	ret = ret ?: tulip_thread_start(t);
	if (ret) {
		snprintf(err, errlen, "%s: cannot create the 21140 function: %s", name,
			 strerror(-ret));
		tulip_destroy(&t->dev);
		return ret;
	}
	*out = &t->dev;
	return 0;
}

struct pci_dev *tulip_pci(struct device *dev)
{
	return dev && dev->ops == &tulip_ops ? &to_tulip(dev)->pdev : NULL;
}

int tulip_set_link(struct device *dev, bool up)
{
	struct tulip *t = to_tulip(dev);

	if (!dev || dev->ops != &tulip_ops)
		return -ENODEV;
	pthread_mutex_lock(&dev->lock);
	if (atomic_exchange(&t->link_up, up) != up)
		tulip_mii_link(&t->mii, up);
	tulip_wake(t);
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

int tulip_get_stats(struct device *dev, struct tulip_stats *st)
{
	struct tulip *t = to_tulip(dev);

	if (!dev || dev->ops != &tulip_ops)
		return -ENODEV;
	*st = (struct tulip_stats){
		.rx_packets = atomic_load(&t->ctr.rx_packets),
		.rx_bytes = atomic_load(&t->ctr.rx_bytes),
		.rx_dropped = atomic_load(&t->ctr.rx_dropped),
		.rx_missed = atomic_load(&t->ctr.rx_missed),
		.tx_packets = atomic_load(&t->ctr.tx_packets),
		.tx_bytes = atomic_load(&t->ctr.tx_bytes),
		.tx_dropped = atomic_load(&t->ctr.tx_dropped),
		.kicks = atomic_load(&t->ctr.kicks),
	};
	return 0;
}
