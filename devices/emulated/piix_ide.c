/* PIIX3 IDE controller, function 1 of the southbridge at 00:01.1 (8086:7010,
 * class 0101, prog-if 80h: both channels in compatibility mode, not
 * switchable, bus-master capable; Intel 82371SB datasheet, function 1, and
 * SFF-8038i for the bus master). It maps its two channels (kestrel/ide.h)
 * and lends them bus-master DMA; the channels do everything else.
 *
 * Registers: PCICMD (I/O Space and Bus Master only), BMIBA (BAR 4, 16 bytes
 * of I/O: the primary channel's bus-master registers at +0, the secondary's
 * at +8), IDETIM primary/secondary (0x40/0x42: bit 15 IDE Decode Enable, the
 * rest timings) and SIDETIM (0x44), kept as written. A channel's command
 * block (0x1F0/0x170, 8 ports) and control block (0x3F6/0x376: one port,
 * 0x3F7 is the floppy's) decode while both PCICMD I/O Space and its IDE
 * Decode Enable are set; firmware sets the latter (SeaBIOS piix_ide_setup),
 * and Linux's ata_piix leaves a channel alone when it finds it clear. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/bus.h"
#include "kestrel/ide.h"
#include "kestrel/pci_dma.h"
#include "kestrel/piix.h"
#include "kestrel/util.h"

#define PIIX_IDE_VENDOR 0x8086
#define PIIX_IDE_DEVICE 0x7010
#define PIIX_IDE_CLASS	0x010180 /* mass storage, IDE, compatibility mode + bus master */

#define PIIX_IDE_BMIBA_BAR 4
#define PIIX_IDE_BMIBA_LEN 16
#define PIIX_IDE_IDETIM	   0x40 /* primary; secondary at 0x42 */
#define PIIX_IDE_SIDETIM   0x44
#define PIIX_IDETIM_IDE	   0x8000 /* IDE Decode Enable */

static const uint16_t piix_ide_cmd_base[2] = { IDE_PRIMARY_CMD, IDE_SECONDARY_CMD };
static const uint16_t piix_ide_ctrl_base[2] = { IDE_PRIMARY_CTRL, IDE_SECONDARY_CTRL };

struct piix_ide {
	struct device dev;
	struct pci_dev pdev;
	uint8_t power_on[PCI_CFG_SIZE];
	struct bus *pio;
	struct device *ch[2];
	bool decoded[2]; /* the channel's legacy ports are on the bus */
};

static struct piix_ide *to_pide(struct device *dev)
{
	return (struct piix_ide *)dev;
}

/* ---- bus-master DMA for the channels ---------------------------------------- */

static int pide_dma_read(void *o, uint64_t gpa, void *buf, uint64_t len)
{
	return pci_dma_read(&((struct piix_ide *)o)->pdev, gpa, buf, len) ? -EFAULT : 0;
}

static int pide_dma_write(void *o, uint64_t gpa, const void *buf, uint64_t len)
{
	return pci_dma_write(&((struct piix_ide *)o)->pdev, gpa, buf, len) ? -EFAULT : 0;
}

static void *pide_dma_map(void *o, uint64_t gpa, uint64_t len, bool device_writes)
{
	(void)device_writes;
	return pci_dma_map(&((struct piix_ide *)o)->pdev, gpa, len);
}

static void pide_dma_dirty(void *o, uint64_t gpa, uint64_t len)
{
	pci_dma_unmap(&((struct piix_ide *)o)->pdev, gpa, len);
}

static const struct ide_dma_ops piix_ide_dma_ops = {
	.read = pide_dma_read,
	.write = pide_dma_write,
	.map = pide_dma_map,
	.mark_dirty = pide_dma_dirty,
};

/* ---- decoding ------------------------------------------------------------- */

static bool pide_channel_on(const struct piix_ide *p, unsigned c)
{
	return (pci_get_u16(&p->pdev, PCI_COMMAND) & PCI_COMMAND_IO) &&
	       (pci_get_u16(&p->pdev, PIIX_IDE_IDETIM + 2 * c) & PIIX_IDETIM_IDE);
}

static void pide_map_channel(struct piix_ide *p, unsigned c, bool on)
{
	int r1 = 0, r2 = 0;

	if (!p->pio || !p->ch[c] || on == p->decoded[c])
		return;
	if (!on) {
		bus_remove(p->pio, piix_ide_cmd_base[c]);
		bus_remove(p->pio, piix_ide_ctrl_base[c]);
		p->decoded[c] = false;
		return;
	}
	r1 = bus_insert(p->pio, piix_ide_cmd_base[c], IDE_CMD_LEN, p->ch[c], IDE_REGION_CMD);
	r2 = bus_insert(p->pio, piix_ide_ctrl_base[c], IDE_CTRL_LEN, p->ch[c], IDE_REGION_CTRL);
	if (r1 || r2) {
		kwarn("piix-ide: channel %u: ports %#x/%#x are taken; not decoded", c,
		      piix_ide_cmd_base[c], piix_ide_ctrl_base[c]);
		if (!r1)
			bus_remove(p->pio, piix_ide_cmd_base[c]);
		if (!r2)
			bus_remove(p->pio, piix_ide_ctrl_base[c]);
		return;
	}
	p->decoded[c] = true;
}

static void pide_update_decode(struct piix_ide *p)
{
	for (unsigned c = 0; c < 2; c++)
		pide_map_channel(p, c, pide_channel_on(p, c));
}

/* BMIBA moved: both channels' bus-master blocks follow. */
static void pide_bar_remap(struct pci_dev *pdev, int bar, uint64_t old, uint64_t now)
{
	struct piix_ide *p = pdev->opaque;

	if (bar != PIIX_IDE_BMIBA_BAR || !p->pio)
		return;
	for (unsigned c = 0; c < 2; c++) {
		uint64_t off = (uint64_t)IDE_BMDMA_LEN * c;

		if (old != PCI_BAR_UNMAPPED)
			bus_remove(p->pio, old + off);
		if (now != PCI_BAR_UNMAPPED && p->ch[c] &&
		    bus_insert(p->pio, now + off, IDE_BMDMA_LEN, p->ch[c], IDE_REGION_BMDMA))
			kwarn("piix-ide: BMIBA at %#llx overlaps another device; channel %u's "
			      "bus master not decoded",
			      (unsigned long long)now, c);
	}
}

static void pide_cfg_write(struct pci_dev *pdev, unsigned off, unsigned size, uint32_t val)
{
	(void)off;
	(void)size;
	(void)val;
	pide_update_decode(pdev->opaque);
}

static const struct pci_dev_ops piix_ide_pci_ops = {
	.cfg_write = pide_cfg_write,
	.bar_remap = pide_bar_remap,
};

/* ---- dev_ops ---------------------------------------------------------------- */

static void pide_reset(struct device *dev)
{
	struct piix_ide *p = to_pide(dev);

	pci_dev_reset_cfg(&p->pdev, p->power_on);
	pide_update_decode(p);
}

static int pide_save(struct device *dev, struct state_buf *out)
{
	return pci_dev_save(&to_pide(dev)->pdev, out);
}

static int pide_load(struct device *dev, struct state_buf *in)
{
	struct piix_ide *p = to_pide(dev);
	int ret = pci_dev_load(&p->pdev, in);

	if (!ret)
		pide_update_decode(p);
	return ret;
}

static void pide_destroy(struct device *dev)
{
	struct piix_ide *p = to_pide(dev);

	pci_dev_exit(&p->pdev);
	for (unsigned c = 0; c < 2; c++)
		pide_map_channel(p, c, false);
	pthread_mutex_destroy(&dev->lock);
	free(p);
}

static const struct dev_ops piix_ide_ops = {
	.name = "piix-ide",
	.reset = pide_reset,
	.save = pide_save,
	.load = pide_load,
	.destroy = pide_destroy,
};

struct pci_dev *piix_ide_pci(struct device *dev)
{
	return &to_pide(dev)->pdev;
}

struct device *piix_ide_create(const struct piix_ide_conf *c)
{
	struct piix_ide *p = calloc(1, sizeof(*p));
	struct pci_dev *pd;

	if (!p)
		return NULL;
	device_init(&p->dev, &piix_ide_ops);
	p->pio = c->pio;
	pd = &p->pdev;
	pci_dev_init(pd, PIIX_IDE_VENDOR, PIIX_IDE_DEVICE, PIIX_IDE_CLASS, 0, &piix_ide_pci_ops, p);
	pci_set_wmask16(pd, PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MASTER);
	pci_set_u16(pd, PCI_STATUS, 0x0280); /* fast back-to-back, medium DEVSEL */
	if (pci_dev_set_bar(pd, PIIX_IDE_BMIBA_BAR, PIIX_IDE_BMIBA_LEN, PCI_BAR_IO) ||
	    pci_dev_reserve(pd, PIIX_IDE_IDETIM, PIIX_IDE_SIDETIM + 1 - PIIX_IDE_IDETIM)) {
		pthread_mutex_destroy(&p->dev.lock);
		free(p);
		return NULL;
	}
	memset(&pd->wmask[PIIX_IDE_IDETIM], 0xff, PIIX_IDE_SIDETIM + 1 - PIIX_IDE_IDETIM);
	if (c->decode_on) {
		pci_set_u16(pd, PIIX_IDE_IDETIM, PIIX_IDETIM_IDE);
		pci_set_u16(pd, PIIX_IDE_IDETIM + 2, PIIX_IDETIM_IDE);
	}
	memcpy(p->power_on, pd->cfg, PCI_CFG_SIZE);
	for (unsigned i = 0; i < 2; i++) {
		p->ch[i] = c->ch[i];
		if (p->ch[i])
			ide_channel_set_dma(p->ch[i], &piix_ide_dma_ops, p);
	}
	return &p->dev;
}
