/* The polled virtio-pci driver core shared by the virtio payloads; see
 * virtio.h. */
#include "virtio.h"

#define PCI_CAP_PTR 0x34
#define PCI_BAR0    0x10
#define BAR_WINDOW  0xe0000000u /* where a BAR goes when firmware left none */

static uint8_t ring_mem[VQ_MAX][3][4096] __attribute__((aligned(4096)));

static uint32_t vcc_read32(const struct vdev *vd, unsigned off)
{
	return mmio_read32(vd->common + off);
}
static void vcc_write16(const struct vdev *vd, unsigned off, uint16_t v)
{
	mmio_write16(vd->common + off, v);
}
static void vcc_write32(const struct vdev *vd, unsigned off, uint32_t v)
{
	mmio_write32(vd->common + off, v);
}

static void vcc_write64(const struct vdev *vd, unsigned off, uint64_t v)
{
	vcc_write32(vd, off, (uint32_t)v);
	vcc_write32(vd, off + 4, (uint32_t)(v >> 32));
}

bool vpci_find(struct vdev *vd, uint16_t modern_id, uint16_t transitional_id)
{
	for (unsigned d = 0; d < 32; d++) {
		uint32_t id = pci_conf_read32(0, d, 0, 0);
		uint16_t dev = (uint16_t)(id >> 16);

		if ((id & 0xffff) == VIRTIO_VENDOR &&
		    (dev == modern_id || dev == transitional_id)) {
			vd->dev = d;
			vd->devid = dev;
			return true;
		}
	}
	return false;
}

/* The BAR's address below 4 GiB (the payload maps only that), assigning one
 * in the PCI hole when firmware did not (kestrel has no firmware). */
static uint64_t vpci_bar(const struct vdev *vd, unsigned bar)
{
	static uint32_t next = BAR_WINDOW;
	unsigned off = PCI_BAR0 + 4 * bar;
	uint32_t lo = pci_conf_read32(0, vd->dev, 0, off), hi = 0, size;
	bool is64 = (lo & 6) == 4;
	uint64_t addr;

	if (is64)
		hi = pci_conf_read32(0, vd->dev, 0, off + 4);
	addr = ((uint64_t)hi << 32 | lo) & ~0xfull;
	if (addr && addr < 0xfee00000ull)
		return addr;
	pci_conf_write32(0, vd->dev, 0, off, 0xffffffff);
	size = ~(pci_conf_read32(0, vd->dev, 0, off) & ~0xfu) + 1;
	next = (next + size - 1) & ~(size - 1);
	pci_conf_write32(0, vd->dev, 0, off, next);
	if (is64)
		pci_conf_write32(0, vd->dev, 0, off + 4, 0);
	addr = next;
	next += size;
	return addr;
}

bool vpci_caps(struct vdev *vd, unsigned need)
{
	unsigned found = 0, dev = vd->dev;

	vd->one_bar = true;

	for (uint8_t c = pci_conf_read8(0, dev, 0, PCI_CAP_PTR) & 0xfc, n = 0; c && n < 48;
	     c = pci_conf_read8(0, dev, 0, c + 1) & 0xfc, n++) {
		uint8_t type = pci_conf_read8(0, dev, 0, c + 3);
		uint64_t base;

		uint8_t bar;

		if (pci_conf_read8(0, dev, 0, c) != 0x09 || type < 1 || type > 4)
			continue;
		bar = pci_conf_read8(0, dev, 0, c + 4);
		base = vpci_bar(vd, bar) + pci_conf_read32(0, dev, 0, c + 8);
		if (found && bar != vd->bar)
			vd->one_bar = false;
		vd->bar = bar;
		switch (type) {
		case 1:
			vd->common = base;
			vd->bar_addr = vpci_bar(vd, bar);
			vd->bar64 = (pci_conf_read32(0, dev, 0, PCI_BAR0 + 4 * bar) & 6) == 4;
			break;
		case 2:
			vd->notify_base = base;
			vd->notify_mult = pci_conf_read32(0, dev, 0, c + 16);
			break;
		case 3: vd->isr = base; break;
		case 4: vd->devcfg = base; break;
		}
		found |= 1u << type;
	}
	return (found & need) == need;
}

static void vring_setup(struct vdev *vd, unsigned q)
{
	struct vring *r = &vd->q[q];
	uint16_t size;

	vcc_write16(vd, CC_Q_SELECT, (uint16_t)q);
	size = vcc_read16(vd, CC_Q_SIZE);
	if (size > VQ_SIZE_MAX) {
		size = VQ_SIZE_MAX;
		vcc_write16(vd, CC_Q_SIZE, size);
	}
	memset(ring_mem[q], 0, sizeof(ring_mem[q]));
	r->qidx = q;
	r->num = size;
	r->avail_idx = r->last_used = 0;
	r->desc = (volatile struct vdesc *)ring_mem[q][0];
	r->avail = (volatile uint16_t *)ring_mem[q][1];
	r->used = ring_mem[q][2];
	r->event_idx = vd->features & F_EVENT_IDX;
	r->kicks = &vd->kicks;
	vcc_write16(vd, CC_Q_MSIX, 0xffff);
	vcc_write64(vd, CC_Q_DESC, (uint64_t)(uintptr_t)ring_mem[q][0]);
	vcc_write64(vd, CC_Q_DRIVER, (uint64_t)(uintptr_t)ring_mem[q][1]);
	vcc_write64(vd, CC_Q_DEVICE, (uint64_t)(uintptr_t)ring_mem[q][2]);
	r->notify = vd->notify_base + (uint64_t)vcc_read16(vd, CC_Q_NOTIFY_OFF) * vd->notify_mult;
	vcc_write16(vd, CC_Q_ENABLE, 1);
}

bool vdev_start(struct vdev *vd, uint64_t want, unsigned nq)
{
	struct deadline d;
	uint64_t have;

	vcc_write8(vd, CC_STATUS, 0);
	deadline_start(&d, 1000000);
	while (vcc_read8(vd, CC_STATUS) != 0 && !deadline_expired(&d))
		cpu_relax();
	vcc_write8(vd, CC_STATUS, ST_ACK);
	vcc_write8(vd, CC_STATUS, ST_ACK | ST_DRIVER);
	vcc_write32(vd, CC_DFSELECT, 0);
	have = vcc_read32(vd, CC_DF);
	vcc_write32(vd, CC_DFSELECT, 1);
	have |= (uint64_t)vcc_read32(vd, CC_DF) << 32;
	vd->features = have & want;
	vcc_write32(vd, CC_GFSELECT, 0);
	vcc_write32(vd, CC_GF, (uint32_t)vd->features);
	vcc_write32(vd, CC_GFSELECT, 1);
	vcc_write32(vd, CC_GF, (uint32_t)(vd->features >> 32));
	vcc_write8(vd, CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
	if (!(vcc_read8(vd, CC_STATUS) & ST_FEATURES_OK))
		return false;
	vcc_write16(vd, CC_MSIX_CONFIG, 0xffff);
	vd->nq = nq < VQ_MAX ? nq : VQ_MAX;
	for (unsigned q = 0; q < vd->nq; q++)
		vring_setup(vd, q);
	vcc_write8(vd, CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	return true;
}

void vpci_move_bar(struct vdev *vd, uint64_t addr)
{
	unsigned off = PCI_BAR0 + 4 * vd->bar;
	uint16_t cmd = pci_conf_read16(0, vd->dev, 0, PCI_COMMAND);
	uint64_t delta = addr - vd->bar_addr;

	pci_conf_write16(0, vd->dev, 0, PCI_COMMAND, cmd & (uint16_t)~CMD_MEM);
	pci_conf_write32(0, vd->dev, 0, off, (uint32_t)addr);
	if (vd->bar64)
		pci_conf_write32(0, vd->dev, 0, off + 4, (uint32_t)(addr >> 32));
	pci_conf_write16(0, vd->dev, 0, PCI_COMMAND, cmd);
	vd->bar_addr = addr;
	vd->common += delta;
	vd->notify_base += delta;
	vd->isr += delta;
	vd->devcfg += delta;
	for (unsigned q = 0; q < vd->nq; q++)
		vd->q[q].notify += delta;
}

void vq_desc(struct vring *r, unsigned i, const void *addr, uint32_t len, uint16_t flags,
	     uint16_t next)
{
	r->desc[i].addr = (uint64_t)(uintptr_t)addr;
	r->desc[i].len = len;
	r->desc[i].flags = flags;
	r->desc[i].next = next;
}

void vq_publish(struct vring *r, uint16_t head)
{
	r->avail[2 + (r->avail_idx % r->num)] = head;
	barrier();
	r->avail_idx++;
	r->avail[1] = r->avail_idx;
}

void vq_kick(struct vring *r, uint16_t old)
{
	mb();
	if (r->event_idx) {
		uint16_t ev = *(volatile uint16_t *)(r->used + 4 + 8 * r->num);

		if ((uint16_t)(r->avail_idx - ev - 1) >= (uint16_t)(r->avail_idx - old))
			return;
	} else if (*(volatile uint16_t *)r->used & USED_NO_NOTIFY) {
		return;
	}
	mmio_write16(r->notify, (uint16_t)r->qidx);
	(*r->kicks)++;
}

bool vq_used(struct vring *r, uint32_t *id, uint32_t *len)
{
	volatile uint8_t *e;

	if (*(volatile uint16_t *)(r->used + 2) == r->last_used)
		return false;
	barrier();
	e = r->used + 4 + 8 * (r->last_used % r->num);
	*id = *(volatile uint32_t *)e;
	*len = *(volatile uint32_t *)(e + 4);
	r->last_used++;
	return true;
}
