/* Emulated IDE: one channel (task-file registers, device control, two
 * drives, the PIO data buffer, the interrupt line and the channel's half of
 * an SFF-8038i bus-master DMA engine) with ATA hard disks and ATAPI CD-ROMs
 * behind it. The PCI function that owns the channels (PIIX3 IDE, 8086:7010)
 * is not here: it maps the registers, supplies DMA access to guest memory
 * and does nothing else.
 *
 * Files: devices/emulated/ide.c (the channel: registers, PIO, IRQ, resets,
 * block requests, save/load), ide_bmdma.c (bus-master registers, PRD walking,
 * DMA), ata_disk.c (the ATA command set of a hard disk), atapi_cd.c (PACKET
 * and the MMC commands of a CD-ROM); devices/emulated/ide_priv.h between
 * them.
 *
 * How to wire (the machine and the PIIX3 function, later):
 *   struct ide_drive_conf d[2] = { { IDE_DISK, disk_blk }, { IDE_CDROM, iso_blk } };
 *   struct device *ch = ide_channel_create("ide0", &irq14, d, err, sizeof(err));
 *   bus_insert(&vm->pio, 0x1f0, 8, ch, IDE_REGION_CMD);
 *   bus_insert(&vm->pio, 0x3f6, 1, ch, IDE_REGION_CTRL);     (0x3f7 is not ours)
 *   -- the PIIX3 function: ide_channel_set_dma(ch, &piix_dma_ops, piix);
 *      on each BAR4 move: bus_remove/bus_insert(&vm->pio, bar4 + 0, 8, ch,
 *      IDE_REGION_BMDMA) for the primary channel, bar4 + 8 for the secondary.
 *   The secondary channel: 0x170/0x376, IRQ 15. Legacy-mode IRQs are ISA
 *   edge interrupts 14/15; the line is driven as a level (1 while INTRQ is
 *   asserted and nIEN is clear), which the board turns into an edge.
 *   Ownership: the channel closes the blk_devs it was given at destroy.
 *
 * Threads: register accesses come with the channel's device lock held (the
 * bus takes it). Block requests are asynchronous: a command that needs the
 * disk sets BSY and queues the request for the channel's I/O thread
 * ("ide0-io", a SANDBOX_IO thread of a channel with drives), which submits
 * it through blk_submit; the vCPU returns at once and makes no block-layer
 * system call. The completion runs on a block-layer thread (which submits a
 * DMA's next chunk itself), takes the same lock, sets DRQ or the final status
 * and raises the interrupt. One block request per channel is in flight at a
 * time (IDE has no overlapped commands here). PIO goes to the disk 64 KiB at
 * a time (read ahead / collected writes), DMA straight between guest RAM and
 * the block layer.
 *
 * State: dev_ops save/load, one section "IDEC" per channel (ide_state.c).
 * save returns -EBUSY while a request is at the block layer: the quiesce step
 * calls ide_channel_drain() first (the registry's .quiesce when it has one).
 * A DMA the guest asked for but has not started is state and is saved; the
 * images and the CD's medium are configuration, and a load whose drives or
 * medium sizes differ is refused. */
#ifndef KESTREL_IDE_H
#define KESTREL_IDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "kestrel/device.h"
#include "kestrel/util.h"

struct blk_dev;

/* Register regions of a channel device (the id given to bus_insert). */
#define IDE_REGION_CMD	 0 /* command block: BASE+0..7 (data, error/features, ...) */
#define IDE_REGION_CTRL	 1 /* alternate status / device control: CTRL+0 */
#define IDE_REGION_BMDMA 2 /* bus master: +0 command, +2 status, +4 PRD table address */

#define IDE_CMD_LEN   8
#define IDE_CTRL_LEN  1
#define IDE_BMDMA_LEN 8

/* The PC's legacy (compatibility-mode) resources. */
#define IDE_PRIMARY_CMD	   0x1f0
#define IDE_PRIMARY_CTRL   0x3f6
#define IDE_PRIMARY_IRQ	   14
#define IDE_SECONDARY_CMD  0x170
#define IDE_SECONDARY_CTRL 0x376
#define IDE_SECONDARY_IRQ  15

enum ide_drive_kind { IDE_NONE, IDE_DISK, IDE_CDROM };

struct ide_drive_conf {
	enum ide_drive_kind kind;
	/* IDE_DISK: the disk (required). IDE_CDROM: the medium, or NULL for an
	 * empty drive (it should be opened read-only; the drive never writes).
	 * The channel owns it from a successful create on. */
	struct blk_dev *blk;
	/* IDENTIFY strings: serial up to 20, model up to 40 printable ASCII
	 * characters; NULL for the defaults ("KESTREL-<channel>-<unit>" and
	 * "KESTREL HARDDISK" / "KESTREL DVD-ROM"). */
	const char *serial;
	const char *model;
};

/* Guest memory as the bus master sees it, supplied by the PCI function
 * (its pci_dma_* helpers, which also gate on Bus Master Enable). Called with
 * the channel's lock held, from a vCPU or a block-layer thread: they must not
 * take a lock that is held while calling into the channel. */
struct ide_dma_ops {
	/* Copy [gpa, gpa+len) out of guest memory (PRD entries). 0 or -EFAULT. */
	int (*read)(void *opaque, uint64_t gpa, void *buf, uint64_t len);
	/* Copy into guest memory (answers of ATAPI commands), marking it dirty. */
	int (*write)(void *opaque, uint64_t gpa, const void *buf, uint64_t len);
	/* Host address of [gpa, gpa+len) for the block layer to fill or drain,
	 * or NULL (not RAM, bus mastering off). Valid until the VM is torn down. */
	void *(*map)(void *opaque, uint64_t gpa, uint64_t len, bool device_writes);
	/* The device wrote [gpa, gpa+len) through a mapped pointer (dirty log).
	 * May be NULL. */
	void (*mark_dirty)(void *opaque, uint64_t gpa, uint64_t len);
};

/* A channel with drives[0] (master) and drives[1] (slave), either of which
 * may be IDE_NONE. name: for messages ("ide0"). irq: the channel's line.
 * NULL and a one-line err on a bad configuration (a disk without blk, a
 * disk smaller than one sector, a string too long). */
struct device *ide_channel_create(const char *name, const struct irq_line *irq,
				  const struct ide_drive_conf drives[2], char *err, size_t errlen);
/* Give the channel its bus master (without one, DMA commands end in ABRT
 * once the guest starts the engine, and the engine never starts). */
void ide_channel_set_dma(struct device *dev, const struct ide_dma_ops *ops, void *opaque);
/* Wait until no block request of the channel is in flight (quiesce before
 * save: save refuses with -EBUSY while one is). Takes the device lock. */
void ide_channel_drain(struct device *dev);

/* What a drive did for the guest (`kestrel ctl stats`, --stats): READ and
 * WRITE commands (ATA PIO/DMA sectors, ATAPI READ(10)/(12)) and FLUSH CACHE
 * that succeeded and their data bytes, and those that ended in an error
 * (ERR: a bad address, a read-only disk, the block layer or the bus master
 * failing; ATAPI: CHECK CONDITION). Since the drive was created; a command
 * in flight when the state was loaded counts without its bytes. */
struct ide_counters {
	uint64_t read_ops, read_bytes, write_ops, write_bytes, flush_ops, errors;
};
struct ide_drive_stats {
	enum ide_drive_kind kind;
	bool readonly;	 /* a CD, or a read-only disk */
	char path[4096]; /* the image; "" for an empty CD drive */
	struct ide_counters c;
};
/* The drive at unit 0/1 of the channel; -ENODEV when there is none. */
int ide_drive_get_stats(struct device *dev, unsigned unit, struct ide_drive_stats *out) WARN_UNUSED;

/* The medium in the drive at unit 0/1 (NULL: no drive, or an empty CD
 * drive; *kind says which drive it is). For a save, with the channel
 * quiesced: the pointer is the drive's until a cdrom-change or eject. */
struct blk_dev *ide_drive_blk(struct device *dev, unsigned unit, enum ide_drive_kind *kind);

/* --stats: one line per drive, "kestrel: stats: ide unitN disk|cdrom
 * path=.. read_ops=..", N = first_unit + 0/1 (the --disk unit). */
void ide_channel_print_stats(struct device *dev, unsigned first_unit, FILE *f);

/* Removable media of an IDE_CDROM at unit 0/1 (`kestrel ctl NAME
 * cdrom-change` / `cdrom-eject`). Both wait for the channel's request in
 * flight, then swap; *old gets the medium taken out (NULL if none), which
 * the caller closes. The guest sees UNIT ATTENTION 28/00 and a media event.
 * eject: -EBUSY while the guest holds the medium locked (PREVENT ALLOW
 * MEDIUM REMOVAL) unless force; the guest is then sent an eject request.
 * -ENODEV: no CD-ROM at that unit. */
int ide_cd_change(struct device *dev, unsigned unit, struct blk_dev *blk,
		  struct blk_dev **old) WARN_UNUSED;
int ide_cd_eject(struct device *dev, unsigned unit, bool force, struct blk_dev **old) WARN_UNUSED;

#endif
