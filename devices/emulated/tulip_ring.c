/* The 21140A's transmit and receive processes (21140A HRM chapter 4): the
 * descriptor lists in guest memory, setup frames and the receive address
 * filter they program. Run by the I/O thread (tulip.c), with dev.lock held
 * while descriptors are read and written and dropped while a frame goes to
 * or comes from the TAP.
 *
 * Descriptors are copied out of guest memory once before use; lists may be
 * rings (DSL longwords skipped between descriptors, TER/RER back to the
 * base) or chains (TCH/RCH: buffer 2 is the next descriptor). A guest can
 * make a list loop: the transmitter gives each descriptor back as it goes,
 * so a loop ends where it meets its own work, and each pass is capped; a
 * received frame may take at most TULIP_RX_DESC_MAX descriptors and meets
 * its own earlier ones as not owned, as on the chip. A zero-length
 * descriptor carries nothing and is given back. Addresses outside RAM are
 * a master abort: fatal bus error, both processes stop until a software
 * reset. A receive list that cannot take a frame in TULIP_RX_DESC_MAX
 * descriptors stops the receive process (RPS). Nothing the guest writes
 * makes the thread spin or touch memory outside RAM.
 *
 * Received frames: padded to 60 bytes as the wire would carry them, the
 * four FCS bytes stored as zeros after the data (the length in RDES0
 * counts them, HRM 4.2.1; drivers drop them), descriptors given back last
 * first so a driver never sees the head of a frame before its tail.
 * Frames come from the TAP only while a descriptor is ready; when the list
 * runs dry the process suspends (RU), and frames wait in the TAP until the
 * driver touches a CSR, gives a receive poll demand, or
 * TULIP_RX_GRACE_NS pass; then, as on the chip, a frame that finds no
 * descriptor is missed (CSR8). */
#include <errno.h>
#include <string.h>

#include "kestrel/clock.h"
#include "kestrel/pci_dma.h"
#include "tulip_priv.h"

#define TULIP_RX_GRACE_NS 5000000ULL
#define VNET_F_NEEDS_CSUM 1
#define VNET_GSO_NONE	  0

struct tulip_desc {
	uint32_t des0, des1, buf1, buf2;
};

/* ---- descriptors ---- */

static uint32_t desc_get(const struct tulip *t, const uint8_t *b)
{
	if (t->csr0 & CSR0_DBO)
		return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	return (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

static void desc_set(const struct tulip *t, uint8_t *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[(t->csr0 & CSR0_DBO) ? 3 - i : i] = (uint8_t)(v >> (8 * i));
}

/* 0, -EPERM (Bus Master off: wait), or -EFAULT (now fatal). */
static int desc_read(struct tulip *t, uint32_t addr, struct tulip_desc *d)
{
	uint8_t b[16];
	int r = tulip_dma_read(t, addr, b, sizeof(b));

	if (r == -EFAULT)
		tulip_fatal(t, "descriptor outside RAM: fatal bus error");
	if (r)
		return r;
	d->des0 = desc_get(t, b);
	d->des1 = desc_get(t, b + 4);
	d->buf1 = desc_get(t, b + 8);
	d->buf2 = desc_get(t, b + 12);
	return 0;
}

static int desc_put_status(struct tulip *t, uint32_t addr, uint32_t des0)
{
	uint8_t b[4];
	int r;

	desc_set(t, b, des0);
	r = tulip_dma_write(t, addr, b, sizeof(b));
	if (r == -EFAULT)
		tulip_fatal(t, "descriptor outside RAM: fatal bus error");
	return r;
}

/* HRM 4.1: the next descriptor; the end-of-ring bit wins over chaining. */
static uint32_t desc_next(const struct tulip *t, uint32_t cur, const struct tulip_desc *d,
			  uint32_t base, uint32_t end_bit, uint32_t chain_bit)
{
	uint32_t skip = ((t->csr0 >> CSR0_DSL_SHIFT) & CSR0_DSL_MASK) * 4;

	if (d->des1 & end_bit)
		return base;
	if (d->des1 & chain_bit)
		return d->buf2 & ~3u;
	return cur + 16 + skip;
}

static uint32_t desc_len1(const struct tulip_desc *d)
{
	return d->des1 & DES1_TBS_MASK;
}

static uint32_t desc_len2(const struct tulip_desc *d, uint32_t chain_bit)
{
	return d->des1 & chain_bit ? 0 : (d->des1 >> DES1_TBS2_SHIFT) & DES1_TBS_MASK;
}

/* ---- receive filter (HRM 4.2.3) ---- */

void tulip_filter_reset(struct tulip_filter *f)
{
	memset(f, 0, sizeof(*f));
	f->mode = FILTER_PERFECT;
}

bool tulip_filter_valid(const struct tulip_filter *f)
{
	return f->mode <= FILTER_HASH_ONLY;
}

uint32_t tulip_filter_csr6(const struct tulip_filter *f)
{
	static const uint32_t bits[] = { [FILTER_PERFECT] = 0,
					 [FILTER_HASH] = CSR6_HP,
					 [FILTER_INVERSE] = CSR6_IF,
					 [FILTER_HASH_ONLY] = CSR6_HP | CSR6_HO };

	return tulip_filter_valid(f) ? bits[f->mode] : 0;
}

static bool filter_perfect_has(const struct tulip_filter *f, const uint8_t *a)
{
	for (unsigned i = 0; i < TULIP_PERFECT; i++)
		if (!memcmp(f->perfect[i], a, NET_ETH_ALEN))
			return true;
	return false;
}

/* The hash is the low 9 bits of the CRC-32 of the destination address. */
static bool filter_hash_has(const struct tulip_filter *f, const uint8_t *a)
{
	unsigned bit = tulip_crc32(a, NET_ETH_ALEN) & (TULIP_HASH_BITS - 1);

	return f->hash[bit / 8] & (1u << (bit % 8));
}

static bool filter_match(const struct tulip *t, const uint8_t *dst)
{
	const struct tulip_filter *f = &t->filter;
	bool multicast = dst[0] & 1;

	if (t->csr6 & CSR6_PR)
		return true;
	if (multicast && (t->csr6 & CSR6_PM))
		return true;
	switch (f->mode) {
	case FILTER_PERFECT: return filter_perfect_has(f, dst);
	case FILTER_INVERSE: return !filter_perfect_has(f, dst);
	case FILTER_HASH:
		return multicast ? filter_hash_has(f, dst)
				 : !memcmp(f->perfect[0], dst, NET_ETH_ALEN);
	case FILTER_HASH_ONLY: return filter_hash_has(f, dst);
	}
	return false;
}

/* An address in a setup frame: three longwords, the low 16 bits of each. */
static void setup_addr(const uint8_t *b, uint8_t *a)
{
	for (unsigned i = 0; i < 3; i++) {
		a[2 * i] = b[4 * i];
		a[2 * i + 1] = b[4 * i + 1];
	}
}

/* HRM 4.2.3: FT1/FT0 of the setup descriptor pick the mode; perfect and
 * inverse frames hold 16 addresses, hash frames a 512-bit table (the low
 * 16 bits of longwords 0-31) and, for hash mode, one unicast address in
 * longwords 39-41. CSR6 HP, HO and IF report the mode. */
static void filter_load(struct tulip *t, const struct tulip_desc *d, const uint8_t *b)
{
	static const enum tulip_filter_mode modes[4] = { FILTER_PERFECT, FILTER_HASH,
							 FILTER_INVERSE, FILTER_HASH_ONLY };
	unsigned ft = (d->des1 & TDES1_FT1 ? 2 : 0) | (d->des1 & TDES1_FT0 ? 1 : 0);
	struct tulip_filter *f = &t->filter;

	tulip_filter_reset(f);
	f->mode = modes[ft];
	if (f->mode == FILTER_PERFECT || f->mode == FILTER_INVERSE) {
		for (unsigned i = 0; i < TULIP_PERFECT; i++)
			setup_addr(b + 12 * i, f->perfect[i]);
	} else {
		for (unsigned i = 0; i < TULIP_HASH_BITS / 16; i++) {
			f->hash[2 * i] = b[4 * i];
			f->hash[2 * i + 1] = b[4 * i + 1];
		}
		if (f->mode == FILTER_HASH)
			setup_addr(b + 156, f->perfect[0]);
	}
	t->csr6 = (t->csr6 & ~CSR6_RO) | tulip_filter_csr6(f);
}

/* ---- transmit (HRM 4.3) ---- */

enum tx_step { TX_NEXT, TX_SEND, TX_WAIT };

void tulip_tx_reset(struct tulip *t)
{
	t->tx_len = 0;
	t->tx_in_frame = false;
	t->tx_jabber = false;
}

/* 0, -EPERM or -EFAULT (fatal already raised). */
static int tx_gather(struct tulip *t, uint32_t addr, uint32_t len)
{
	size_t limit = t->csr15 & CSR15_JBD ? TULIP_FRAME_MAX : TULIP_JABBER;
	size_t n = MIN((size_t)len, limit - MIN(t->tx_len, limit));
	int r;

	if (len > n)
		t->tx_jabber = true;
	if (!n)
		return 0;
	r = tulip_dma_read(t, addr, t->tx_frame + t->tx_len, n);
	if (r == -EFAULT)
		tulip_fatal(t, "transmit buffer outside RAM: fatal bus error");
	if (!r)
		t->tx_len += n;
	return r;
}

/* A setup frame (SET): 192 bytes in buffer 1 program the filter. */
static enum tx_step tx_setup(struct tulip *t, const struct tulip_desc *d, uint32_t *des0)
{
	uint8_t b[TULIP_SETUP_LEN];
	int r;

	if (desc_len1(d) != TULIP_SETUP_LEN) {
		tulip_warn_once(t, "setup frame that is not 192 bytes; ignored");
		*des0 = TDES0_ES;
		return TX_NEXT;
	}
	r = tulip_dma_read(t, d->buf1, b, sizeof(b));
	if (r == -EFAULT)
		tulip_fatal(t, "setup frame outside RAM: fatal bus error");
	if (r)
		return TX_WAIT;
	filter_load(t, d, b);
	*des0 = 0;
	return TX_NEXT;
}

/* The last segment is in: the frame is sent (TX_SEND), dropped, or cut
 * by the jabber timer (HRM 3.2.2.6 TJT: the transmit process stops). */
static enum tx_step tx_frame_done(struct tulip *t, uint32_t *des0)
{
	t->tx_in_frame = false;
	if (t->tx_jabber && !(t->csr15 & CSR15_JBD)) {
		*des0 = TDES0_ES | TDES0_TO;
		t->status |= CSR5_TJT | CSR5_TPS;
		t->ts = TS_STOPPED;
		atomic_fetch_add(&t->ctr.tx_dropped, 1);
		return TX_NEXT;
	}
	if (!atomic_load(&t->link_up)) {
		*des0 = TDES0_ES | TDES0_LO | TDES0_NC;
		atomic_fetch_add(&t->ctr.tx_dropped, 1);
		return TX_NEXT;
	}
	*des0 = 0;
	return t->tx_len ? TX_SEND : TX_NEXT;
}

static enum tx_step tx_data(struct tulip *t, const struct tulip_desc *d, uint32_t *des0)
{
	uint32_t len1 = desc_len1(d), len2 = desc_len2(d, TDES1_TCH);
	size_t before;
	int r;

	*des0 = 0;
	if (d->des1 & TDES1_FS) {
		tulip_tx_reset(t);
		t->tx_in_frame = true;
	} else if (!t->tx_in_frame) {
		/* Nothing to send and no frame open: Linux puts such a
		 * descriptor before each setup frame. */
		if (!len1 && !len2 && !(d->des1 & TDES1_LS))
			return TX_NEXT;
		t->tx_in_frame = true;
	}
	before = t->tx_len;
	r = tx_gather(t, d->buf1, len1);
	r = r ?: tx_gather(t, d->buf2, len2);
	if (r) {
		t->tx_len = before;
		return TX_WAIT;
	}
	return d->des1 & TDES1_LS ? tx_frame_done(t, des0) : TX_NEXT;
}

/* One descriptor at tx_cur (dev.lock held). */
static enum tx_step tx_one(struct tulip *t)
{
	struct tulip_desc d;
	enum tx_step step;
	uint32_t des0;

	if (desc_read(t, t->tx_cur, &d))
		return TX_WAIT;
	if (!(d.des0 & DES0_OWN)) {
		t->ts = TS_SUSPENDED;
		t->status |= CSR5_TU;
		tulip_update_irq(t);
		return TX_WAIT;
	}
	step = d.des1 & TDES1_SET ? tx_setup(t, &d, &des0) : tx_data(t, &d, &des0);
	if (step == TX_WAIT || desc_put_status(t, t->tx_cur, des0))
		return TX_WAIT;
	t->tx_cur = desc_next(t, t->tx_cur, &d, t->csr4, TDES1_TER, TDES1_TCH);
	if (d.des1 & TDES1_IC)
		t->status |= CSR5_TI;
	tulip_update_irq(t);
	return step;
}

/* HRM 4.3.1: short frames are padded to the minimum unless the driver
 * disabled padding; the NIC's VLAN tag goes in after the MAC addresses. */
static void tx_send(struct tulip *t, size_t len)
{
	static const uint8_t hdr[NET_VNET_HDR_LEN];
	size_t min = TULIP_FRAME_MIN;
	ssize_t sent;

	if (len < min) {
		memset(t->tx_frame + len, 0, min - len);
		len = min;
	}
	if (t->vlan && net_vlan_insert(t->tx_frame, &len, sizeof(t->tx_frame), t->vlan)) {
		atomic_fetch_add(&t->ctr.tx_dropped, 1);
		return;
	}
	sent = net_tap_send(&t->tap, 0,
			    (struct iovec[]){ { (void *)hdr, sizeof(hdr) }, { t->tx_frame, len } },
			    2);
	if (sent < 0) {
		kdebug("%s: TAP write: %s", t->name, strerror((int)-sent));
		atomic_fetch_add(&t->ctr.tx_dropped, 1);
		return;
	}
	atomic_fetch_add(&t->ctr.tx_packets, 1);
	atomic_fetch_add(&t->ctr.tx_bytes, len);
}

bool tulip_tx_serve(struct tulip *t)
{
	unsigned done = 0;

	pthread_mutex_lock(&t->dev.lock);
	while (t->ts == TS_FETCHING && !t->fatal && done < TULIP_BUDGET) {
		enum tx_step step = tx_one(t);
		size_t len = t->tx_len;

		if (step == TX_WAIT)
			break;
		done++;
		if (step != TX_SEND)
			continue;
		t->tx_len = 0;
		/* The frame is the I/O thread's own until the next descriptor. */
		pthread_mutex_unlock(&t->dev.lock);
		tx_send(t, len);
		pthread_mutex_lock(&t->dev.lock);
	}
	done = t->ts == TS_FETCHING && !t->fatal && done >= TULIP_BUDGET;
	pthread_mutex_unlock(&t->dev.lock);
	return done;
}

/* ---- receive (HRM 4.2) ---- */

enum rx_gate { RX_DELIVER, RX_DROP, RX_MISS, RX_HOLD };

static bool rx_ready(const struct tulip *t)
{
	return atomic_load(&t->link_up) && t->rs != RS_STOPPED && !t->fatal;
}

/* Whether the current descriptor is the device's. */
static bool rx_owned(struct tulip *t)
{
	struct tulip_desc d;

	return desc_read(t, t->rx_cur, &d) == 0 && (d.des0 & DES0_OWN);
}

bool tulip_rx_wants_frames(struct tulip *t, uint64_t now)
{
	return !rx_ready(t) || t->rs != RS_SUSPENDED || now >= t->rx_grace_at;
}

void tulip_rx_recheck(struct tulip *t)
{
	pthread_mutex_lock(&t->dev.lock);
	if (rx_ready(t) && t->rs == RS_SUSPENDED && rx_owned(t))
		t->rs = RS_WAITING;
	pthread_mutex_unlock(&t->dev.lock);
}

/* What to do with the next frame in the TAP (dev.lock held). */
static enum rx_gate rx_gate(struct tulip *t, uint64_t now)
{
	if (!rx_ready(t) || !pci_dma_allowed(&t->pdev))
		return RX_DROP;
	if (rx_owned(t)) {
		t->rs = RS_WAITING;
		return RX_DELIVER;
	}
	if (t->fatal)
		return RX_DROP;
	if (t->rs == RS_WAITING) {
		t->rs = RS_SUSPENDED;
		t->status |= CSR5_RU;
		t->rx_grace_at = now + TULIP_RX_GRACE_NS;
		tulip_update_irq(t);
		return RX_HOLD;
	}
	return now >= t->rx_grace_at ? RX_MISS : RX_HOLD;
}

/* HRM 3.2.2.6 RU / 3.2.2.9: no descriptor for a frame: missed. */
static void rx_missed(struct tulip *t)
{
	if ((t->missed & 0xffff) == 0xffff)
		t->missed |= CSR8_MFO;
	else
		t->missed++;
	atomic_fetch_add(&t->ctr.rx_missed, 1);
}

/* The receive list took more descriptors than a frame may: stop the
 * receive process with RPS, as a hostile list cannot be walked further. */
static void rx_stop(struct tulip *t, const char *why)
{
	tulip_warn_once(t, why);
	t->rs = RS_STOPPED;
	t->status |= CSR5_RPS;
	tulip_update_irq(t);
}

static bool rx_revisits(const struct tulip *t, unsigned n, uint32_t addr)
{
	for (unsigned i = 0; i < n; i++)
		if (t->rx_used[i].addr == addr)
			return true;
	return false;
}

/* Store part of a frame in one buffer; -EFAULT is fatal. */
static int rx_store(struct tulip *t, uint32_t addr, uint32_t cap, const uint8_t **p, size_t *left)
{
	size_t n = MIN((size_t)cap, *left);
	int r;

	if (!n)
		return 0;
	r = tulip_dma_write(t, addr, *p, n);
	if (r == -EFAULT)
		tulip_fatal(t, "receive buffer outside RAM: fatal bus error");
	*p += n;
	*left -= n;
	return r;
}

/* RDES0 of the last descriptor (HRM 4.2.1): length with FCS, the frame's
 * kind, errors. */
static uint32_t rx_status(const struct tulip *t, const uint8_t *f, size_t total, bool filtered_out,
			  bool watchdog, bool truncated)
{
	uint32_t s = RDES0_LS | (uint32_t)(total & 0x3fff) << RDES0_FL_SHIFT;

	if (f[0] & 1)
		s |= RDES0_MF;
	if ((f[12] << 8 | f[13]) > 1500)
		s |= RDES0_FT;
	if (total > 1518)
		s |= RDES0_TL;
	if (filtered_out)
		s |= RDES0_FF;
	if (watchdog)
		s |= RDES0_RW;
	if (truncated)
		s |= RDES0_DE;
	if (s & (RDES0_TL | RDES0_DE))
		s |= RDES0_ES;
	return s;
}

/* Write the frame into the list from rx_cur (dev.lock held; the caller saw
 * the first descriptor owned). total: bytes with FCS. */
static void rx_deliver(struct tulip *t, const uint8_t *f, size_t total, bool filtered_out,
		       bool watchdog)
{
	const uint8_t *p = f;
	size_t left = total;
	uint32_t cur = t->rx_cur;
	unsigned n = 0;
	bool truncated = false;

	while (left) {
		struct tulip_desc d;

		if (n == TULIP_RX_DESC_MAX) {
			rx_stop(t,
				"receive list longer than a frame may take: receive process stopped");
			return;
		}
		if (desc_read(t, cur, &d) || t->fatal)
			return;
		if (!(d.des0 & DES0_OWN) || rx_revisits(t, n, cur)) {
			truncated = true;
			break;
		}
		if (rx_store(t, d.buf1, desc_len1(&d), &p, &left) ||
		    rx_store(t, d.buf2, desc_len2(&d, RDES1_RCH), &p, &left))
			return;
		t->rx_used[n].addr = cur;
		t->rx_used[n].rdes0 = n ? 0 : RDES0_FS;
		n++;
		cur = desc_next(t, cur, &d, t->csr3, RDES1_RER, RDES1_RCH);
	}
	if (!n)
		return;
	t->rx_used[n - 1].rdes0 |= rx_status(t, f, total - left, filtered_out, watchdog, truncated);
	for (unsigned i = n; i-- > 0;)
		if (desc_put_status(t, t->rx_used[i].addr, t->rx_used[i].rdes0))
			return;
	t->rx_cur = cur;
	t->status |= CSR5_RI;
	if (truncated) {
		t->rs = RS_SUSPENDED;
		t->status |= CSR5_RU;
		t->rx_grace_at = clock_mono_ns() + TULIP_RX_GRACE_NS;
	}
	tulip_update_irq(t);
	atomic_fetch_add(&t->ctr.rx_packets, 1);
	atomic_fetch_add(&t->ctr.rx_bytes, total - TULIP_FCS);
}

/* A frame from the TAP (vnet header first) as the wire would give it:
 * untagged for the NIC's VLAN, padded, FCS room after it. Returns its
 * length with FCS, or 0 to drop it. */
static size_t rx_prepare(struct tulip *t, ssize_t got)
{
	uint8_t *h = t->rx_buf, *f = t->rx_buf + NET_VNET_HDR_LEN;
	size_t len;

	if (got < NET_VNET_HDR_LEN + NET_ETH_HLEN)
		return 0;
	/* The TAP was opened with no offloads: partial checksums and GSO
	 * never come; a frame that has them is not for this NIC. */
	if ((h[0] & VNET_F_NEEDS_CSUM) || h[1] != VNET_GSO_NONE)
		return 0;
	len = (size_t)got - NET_VNET_HDR_LEN;
	if (t->vlan && net_vlan_strip(f, &len, t->vlan))
		return 0;
	if (len < TULIP_FRAME_MIN) {
		memset(f + len, 0, TULIP_FRAME_MIN - len);
		len = TULIP_FRAME_MIN;
	}
	memset(f + len, 0, TULIP_FCS);
	return len + TULIP_FCS;
}

static void rx_frame(struct tulip *t, size_t total, uint64_t now)
{
	const uint8_t *f = t->rx_buf + NET_VNET_HDR_LEN;
	enum rx_gate g = rx_gate(t, now);
	bool pass, watchdog = false;

	if (g == RX_MISS)
		rx_missed(t);
	if (g != RX_DELIVER) {
		atomic_fetch_add(&t->ctr.rx_dropped, g != RX_MISS);
		return;
	}
	pass = filter_match(t, f);
	if (!pass && !(t->csr6 & CSR6_RA))
		return;
	/* HRM 3.2.2.16: the receive watchdog cuts frames past 2048 bytes. */
	if (total > TULIP_JABBER && !(t->csr15 & CSR15_RWD)) {
		total = TULIP_JABBER;
		watchdog = true;
		t->status |= CSR5_RWT;
	}
	rx_deliver(t, f, MIN(total, (size_t)TULIP_FRAME_MAX), !pass, watchdog);
}

bool tulip_rx_serve(struct tulip *t)
{
	for (unsigned i = 0; i < TULIP_BUDGET; i++) {
		uint64_t now = clock_mono_ns();
		size_t total;
		ssize_t got;

		pthread_mutex_lock(&t->dev.lock);
		if (rx_gate(t, now) == RX_HOLD) {
			pthread_mutex_unlock(&t->dev.lock);
			return false;
		}
		pthread_mutex_unlock(&t->dev.lock);
		got = net_tap_recv(&t->tap, 0,
				   &(struct iovec){ t->rx_buf, sizeof(t->rx_buf) - TULIP_FRAME_MIN -
								       TULIP_FCS },
				   1);
		if (got < 0) {
			if (got != -EAGAIN)
				kdebug("%s: TAP read: %s", t->name, strerror((int)-got));
			return false;
		}
		total = rx_prepare(t, got);
		pthread_mutex_lock(&t->dev.lock);
		if (total)
			rx_frame(t, total, now);
		else
			atomic_fetch_add(&t->ctr.rx_dropped, 1);
		pthread_mutex_unlock(&t->dev.lock);
	}
	return true;
}
