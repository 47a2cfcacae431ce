/* Internals shared by the IDE channel (ide.c), its bus master (ide_bmdma.c)
 * and the two drive models (ata_disk.c, atapi_cd.c). The channel does the
 * mechanics — registers, the PIO buffer, block requests, DMA, interrupts —
 * and a drive model decides what a command means, through the services
 * below (ide_pio_in, ide_blk_start, ide_dma_start, ide_cmd_done, ...).
 *
 * Register names and bits: ATA8-ACS (T13/1699-D r6a) and ATA/ATAPI-6
 * (T13/1410D r3b) for the register protocol; SFF-8038i for the bus master. */
#ifndef KESTREL_IDE_PRIV_H
#define KESTREL_IDE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kestrel/block.h"
#include "kestrel/ide.h"
#include "kestrel/scsi_disk.h"

#define IDE_SECTOR   512u
#define ATAPI_BLOCK  2048u
/* The PIO data buffer: a DRQ block of READ/WRITE MULTIPLE (at most
 * ATA_MAX_MULT sectors), or up to 32 CD blocks an ATAPI read fetches at once. */
#define IDE_BUF_SIZE (64u * 1024)

/* Command block register offsets (ATA/ATAPI-6, register addressing). */
#define IDE_DATA    0
#define IDE_ERROR   1 /* read; write: features */
#define IDE_NSECTOR 2 /* ATAPI: interrupt reason on read */
#define IDE_LBAL    3 /* sector number */
#define IDE_LBAM    4 /* cylinder low; ATAPI: byte count low */
#define IDE_LBAH    5 /* cylinder high; ATAPI: byte count high */
#define IDE_DEVICE  6
#define IDE_COMMAND 7 /* read: status */

/* Status (ATA8-ACS / ATA/ATAPI-6, Status register). */
#define ATA_ST_ERR   0x01
#define ATA_ST_DRQ   0x08
#define ATA_ST_DSC   0x10 /* device seek complete (obsolete, still read by old guests) */
#define ATA_ST_DF    0x20
#define ATA_ST_DRDY  0x40
#define ATA_ST_BSY   0x80
#define ATA_ST_READY (ATA_ST_DRDY | ATA_ST_DSC)

/* Error (ATA8-ACS, Error field). */
#define ATA_ER_AMNF 0x01
#define ATA_ER_ABRT 0x04
#define ATA_ER_IDNF 0x10
#define ATA_ER_UNC  0x40

/* Device register and Device Control. */
#define ATA_DEV_LBA  0x40
#define ATA_DEV_DEV  0x10
#define ATA_DEV_HEAD 0x0f
#define ATA_DC_NIEN  0x02
#define ATA_DC_SRST  0x04
#define ATA_DC_HOB   0x80

/* ATAPI interrupt reason, in the sector count register (ATA8-ACS
 * "Interrupt Reason"): CoD command (1) or data (0), IO to the host (1). */
#define ATAPI_IR_COD 0x01
#define ATAPI_IR_IO  0x02

/* Bus master (SFF-8038i; Intel 82371SB PIIX3 datasheet, Bus Master IDE). */
#define BM_CMD	      0
#define BM_STATUS     2
#define BM_PRD	      4
#define BM_CMD_START  0x01
#define BM_CMD_WRITE  0x08 /* the bus master writes memory (a device read) */
#define BM_ST_ACTIVE  0x01
#define BM_ST_ERROR   0x02
#define BM_ST_INTR    0x04
#define BM_ST_DMA0    0x20 /* drive 0/1 DMA capable: software flags */
#define BM_ST_DMA1    0x40
#define BM_ST_SIMPLEX 0x80

/* Commands both drive kinds know. */
#define ATA_CMD_DEVICE_RESET	   0x08
#define ATA_CMD_EXECUTE_DIAGNOSTIC 0x90
#define ATA_CMD_PACKET		   0xa0
#define ATA_CMD_IDENTIFY_PACKET	   0xa1
#define ATA_CMD_IDENTIFY	   0xec

struct ide_channel;
struct ide_drive;

/* What one device latched from the command block (current and, for 48-bit
 * commands, previous contents: the 48-bit feature set's "HOB"), and what it
 * presents. */
struct ide_regs {
	uint8_t feature, nsector, lbal, lbam, lbah;
	uint8_t hob_feature, hob_nsector, hob_lbal, hob_lbam, hob_lbah;
	uint8_t device, command;
	uint8_t status, error;
};

enum ide_phase {
	IDE_PH_IDLE,	/* no data phase */
	IDE_PH_BUSY,	/* BSY: a block request or a DMA is pending or running */
	IDE_PH_PIO_IN,	/* DRQ: the host reads buf[pos, end) */
	IDE_PH_PIO_OUT, /* DRQ: the host writes buf[pos, end) */
};

/* A drive model, called with the channel's lock held. */
struct ide_drive_ops {
	/* A command was written (d->r.command); the drive is not busy. */
	void (*exec)(struct ide_channel *ch, struct ide_drive *d);
	/* The host moved the whole PIO block [pos, end) of the buffer. */
	void (*pio_done)(struct ide_channel *ch, struct ide_drive *d);
	/* A block request or DMA the drive started finished: 0, -errno from the
	 * block layer, or -EFAULT for a bus-master error (BM status already says
	 * so); the drive sets the final status. */
	void (*io_done)(struct ide_channel *ch, struct ide_drive *d, int status);
	/* Power-on (hard) or software reset of the drive model's own state. */
	void (*reset)(struct ide_drive *d, bool hard);
	/* How much of the buffer the command in progress still needs (saved
	 * with the channel's state). */
	uint32_t (*buf_used)(const struct ide_drive *d);
};

/* ATA hard disk (ata_disk.c). */
#define ATA_MAX_MULT 16
enum ata_addr { ATA_ADDR_CHS, ATA_ADDR_LBA28, ATA_ADDR_LBA48 };
struct ata_state {
	uint64_t nsectors;
	uint16_t cyls, heads, spt;	       /* default geometry, IDENTIFY 1/3/6 */
	uint16_t cur_cyls, cur_heads, cur_spt; /* INITIALIZE DEVICE PARAMETERS, 54-56 */
	uint8_t mult;			       /* sectors per DRQ block; 0: off */
	bool wce, lookahead, standby;
	uint8_t xfer_mode; /* SET FEATURES 03h value */
	/* The command in progress. */
	uint64_t lba;	 /* next sector */
	uint32_t left;	 /* sectors still to move */
	uint32_t block;	 /* sectors in this DRQ block / request */
	uint64_t io_lba; /* PIO: the sector at buf[0]; the request's */
	uint32_t io_n;	 /* PIO: sectors fetched or collected there */
	uint32_t count;	 /* sectors of the command (stats; not saved) */
	uint8_t addr;	 /* enum ata_addr: how to report back */
	uint8_t op;	 /* enum ata_op (ata_disk.c) */
};

/* ATAPI CD-ROM (atapi_cd.c). */
struct atapi_state {
	uint64_t nblocks; /* 2048-byte blocks of the medium */
	bool tray_open, locked;
	bool ua;		 /* UNIT ATTENTION 28/00 pending */
	uint8_t event;		 /* GESN media event code to report */
	struct scsi_sense sense; /* for REQUEST SENSE */
	uint8_t xfer_mode;	 /* SET FEATURES 03h value */
	uint8_t op;		 /* enum atapi_op (atapi_cd.c) */
	/* The command in progress. */
	uint8_t cdb[12];
	bool dma;
	uint16_t bcl;	     /* byte count limit (LBA mid/high) */
	uint64_t lba;	     /* READ: next block */
	uint32_t left;	     /* READ: blocks still to fetch */
	uint32_t pos, end;   /* PIO: buffer bytes not yet handed over */
	uint64_t read_bytes; /* READ: the command's data (stats; not saved) */
};

struct ide_drive {
	enum ide_drive_kind kind;
	const struct ide_drive_ops *ops;
	unsigned unit;
	struct blk_dev *blk; /* disk, or the CD's medium (may be NULL) */
	char serial[21], model[41];
	struct ide_regs r;
	bool intrq; /* INTRQ pending (cleared by a status read) */
	enum ide_phase phase;
	uint32_t pos, end; /* PIO: buffer window */
	struct ata_state ata;
	struct atapi_state cd;
	struct ide_counters st; /* kestrel/ide.h, ide_drive_get_stats */
};

/* A PRD table position: entry index and byte offset inside that entry. */
struct ide_prd_cursor {
	uint32_t index, off;
};

/* The DMA the selected drive asked for (ide_dma_start). */
struct ide_dma {
	bool pending; /* asked for, not finished */
	bool running; /* the bus master is moving it */
	unsigned unit;
	bool to_guest;
	bool from_buf;	/* ch->buf[0, len) rather than the disk */
	uint64_t off;	/* disk byte offset of the next chunk */
	uint64_t left;	/* bytes still to move */
	bool fua;	/* disk writes durable before completion */
	bool bm_failed; /* the bus master refused the table or memory */
	struct ide_prd_cursor cur;
	uint32_t table; /* PRD table address latched at start */
};

struct ide_bm {
	uint8_t cmd, status;
	uint32_t prd;
	const struct ide_dma_ops *ops;
	void *opaque;
};

/* A scatter list mapped from a PRD table: per segment the host address (or
 * NULL when not mapped), the guest address and where in the table it began. */
struct ide_sg {
	struct iovec *iov;
	uint64_t *gpa;
	struct ide_prd_cursor *at;
	int max, n;
	uint64_t bytes;
};

struct ide_io {
	struct blk_req req;
	struct ide_sg sg;   /* BLK_MAX_IOV segments */
	atomic_int handoff; /* see ide_io_submit() */
	int status;
	bool busy;  /* at the block layer */
	bool stale; /* a reset came meanwhile: drop the result */
	bool dma;   /* a DMA chunk (else a PIO request of unit) */
	unsigned unit;
};

struct ide_channel {
	struct device dev; /* first: the bus hands us this */
	char name[16];
	struct irq_line irq;
	int irq_level; /* -1 until first driven */
	struct ide_drive drive[2];
	unsigned sel; /* DEV bit of the Device register */
	uint8_t dctl; /* nIEN, SRST, HOB */
	uint8_t *buf; /* IDE_BUF_SIZE */
	struct ide_io io;
	struct ide_dma dma;
	struct ide_bm bm;
	pthread_cond_t idle; /* io.busy went false */
	/* The channel's I/O thread submits its block requests (ide.c,
	 * ide_io_submit): a vCPU only queues them. Under the device lock. */
	pthread_t io_thread;
	pthread_cond_t io_kick;
	bool io_thread_on, io_queued, io_stop;
	unsigned warned; /* IDE_WARN_* said once already */
};

/* Guest nonsense is logged once per channel and kind. */
#define IDE_WARN_BUSY 0x01 /* a command while busy */
#define IDE_WARN_PRD  0x02 /* a PRD table the bus master refused */
void ide_warn_once(struct ide_channel *ch, unsigned what, const char *msg);

/* ---- channel services for the drive models (ide.c) ---- */

/* INTRQ of d (the line follows the selected drive and nIEN). */
void ide_irq_raise(struct ide_channel *ch, struct ide_drive *d);
void ide_irq_resync(struct ide_channel *ch);
/* Command finished without error: DRDY|DSC, interrupt. */
void ide_cmd_done(struct ide_channel *ch, struct ide_drive *d);
/* Command failed: DRDY|ERR, error register err, interrupt. */
void ide_cmd_error(struct ide_channel *ch, struct ide_drive *d, uint8_t err);
/* Open a PIO data phase over buf[pos, end): DRQ; interrupt if irq. */
void ide_pio_in(struct ide_channel *ch, struct ide_drive *d, uint32_t pos, uint32_t end, bool irq);
void ide_pio_out(struct ide_channel *ch, struct ide_drive *d, uint32_t pos, uint32_t end, bool irq);
/* BSY and one block request on d's disk over buf[0, len) (READ/WRITE) or
 * none (FLUSH); io_done follows. */
void ide_blk_start(struct ide_channel *ch, struct ide_drive *d, enum blk_op op, uint64_t off,
		   uint32_t len, bool fua);
/* BSY and a DMA of len bytes: between guest memory (through the PRD table)
 * and the disk at byte offset off, or buf[0, len) if from_buf. It starts when
 * the guest starts the bus master (now, if it already has); io_done follows. */
void ide_dma_start(struct ide_channel *ch, struct ide_drive *d, bool to_guest, bool from_buf,
		   uint64_t off, uint64_t len, bool fua);
/* The device signature after a reset or diagnostics (ATA8-ACS signatures). */
void ide_set_signature(struct ide_drive *d);
/* EXECUTE DEVICE DIAGNOSTIC for the whole channel. */
void ide_execute_diagnostic(struct ide_channel *ch);
/* 16-bit word i of an IDENTIFY page in the buffer (little-endian). */
void ide_put_word(uint8_t *page, unsigned i, uint16_t v);
/* An ATA string (bytes swapped in each word, space padded). */
void ide_put_string(uint8_t *page, unsigned word, unsigned words, const char *s);
/* Word 255: signature A5h and the checksum (ATA8-ACS, integrity word). */
void ide_identify_checksum(uint8_t *page);
/* SET FEATURES 03h (ATA8-ACS, set transfer mode): PIO default, PIO flow
 * control 0-4, multiword DMA 0-2, Ultra DMA 0-5; and IDENTIFY words 63/88
 * (supported modes, the selected one in the high byte). */
bool ide_xfer_mode_ok(uint8_t mode);
uint16_t ide_mwdma_word(uint8_t mode);
uint16_t ide_udma_word(uint8_t mode);
/* Word 93: hardware reset result, as device 0 or 1 reports it. */
uint16_t ide_reset_result(const struct ide_channel *ch, const struct ide_drive *d);

/* ---- block requests (ide.c) and the bus master (ide_bmdma.c) ---- */

/* Submit ch->io.req (prepared, io.busy set), finishing inline when it
 * completes before blk_submit returns. */
void ide_io_submit(struct ide_channel *ch);
/* blk_req.done of every channel request. */
void ide_io_done(struct blk_req *req, int status);
/* A DMA chunk came back: true if the next chunk is prepared in ch->io;
 * else *status is the DMA's result and ide_dma_finish follows. */
bool ide_dma_chunk_done(struct ide_channel *ch, int *status);
/* End the DMA: bus-master status, then the drive's io_done. */
void ide_dma_finish(struct ide_channel *ch, int status);
/* The bus master was started or a DMA was asked for: begin if both. */
void ide_dma_kick(struct ide_channel *ch);
/* Drop a DMA that was asked for (reset). */
void ide_dma_cancel(struct ide_channel *ch);
/* The chunk at the block layer wrote guest memory: tell the dirty log. */
void ide_dma_mark_dirty(struct ide_channel *ch);
uint64_t ide_bm_read(struct ide_channel *ch, uint64_t off, unsigned size);
void ide_bm_write(struct ide_channel *ch, uint64_t off, unsigned size, uint64_t val);
void ide_bm_reset(struct ide_channel *ch);

/* Walk the PRD table at `table` from cur on into sg: at most sg->max
 * segments and want bytes, cut back to a multiple of align; with map, each
 * segment is mapped for the block layer. cur moves past what sg holds.
 * 0, -EFAULT (an entry or a region not in RAM), -EINVAL (odd length or
 * address, no end-of-table bit within the 64 KiB the table may span) or
 * -ENOSPC (the table ended before want bytes). */
int ide_prd_map(const struct ide_bm *bm, uint32_t table, struct ide_prd_cursor *cur, uint64_t want,
		bool device_writes, bool map, unsigned align, struct ide_sg *sg) WARN_UNUSED;
/* Is cur at the very end of the table (the last entry had EOT and is used up)? */
bool ide_prd_exhausted(const struct ide_bm *bm, uint32_t table, const struct ide_prd_cursor *cur);

/* ---- the drive models ---- */

extern const struct ide_drive_ops ata_disk_ops;
extern const struct ide_drive_ops atapi_cd_ops;
/* Set up the model's state for a drive with d->blk (disk) or medium. */
int ata_disk_init(struct ide_drive *d, char *err, size_t errlen) WARN_UNUSED;
void atapi_cd_init(struct ide_drive *d);
/* The CD's medium changed (blk NULL: removed); the caller swapped d->blk. */
void atapi_cd_medium_changed(struct ide_drive *d);
void atapi_cd_eject_request(struct ide_drive *d);

struct state_buf;

/* dev_ops save/load (ide_state.c). */
int ide_save(struct device *dev, struct state_buf *out);
int ide_load(struct device *dev, struct state_buf *in);
/* The end of a reset once no request is out (ide.c). */
void ide_reset_finish(struct ide_channel *ch);

/* State of the models (ide_state.c frames the section). */
void ata_disk_save(const struct ide_drive *d, struct state_buf *out);
bool ata_disk_load(struct ide_drive *tmp, struct state_buf *in);
void atapi_cd_save(const struct ide_drive *d, struct state_buf *out);
bool atapi_cd_load(struct ide_drive *tmp, struct state_buf *in);

#endif
