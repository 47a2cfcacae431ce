/* A SCSI direct-access block device (a disk) as a command interpreter:
 * SPC-4/SBC-3 commands decoded into either an answer from the model
 * (INQUIRY, READ CAPACITY, MODE SENSE, ...) or a block operation for the front
 * end to submit (READ/WRITE/SYNCHRONIZE CACHE/UNMAP/WRITE SAME). It knows
 * nothing of the transport (virtio-scsi today, anything with CDBs later) nor
 * of the block layer: the front end moves the data.
 *
 * Every CDB field is the guest's: lengths are bounded, LBA ranges are checked
 * with overflow-safe arithmetic, and anything not understood is CHECK
 * CONDITION with fixed-format sense (SPC-4 4.5.3). */
#ifndef KESTREL_SCSI_DISK_H
#define KESTREL_SCSI_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* SAM-5 status codes. */
#define SCSI_STATUS_GOOD	    0x00
#define SCSI_STATUS_CHECK_CONDITION 0x02
#define SCSI_STATUS_BUSY	    0x08

/* SPC-4 4.5.6 sense keys. */
#define SCSI_SENSE_NO_SENSE	   0x0
#define SCSI_SENSE_NOT_READY	   0x2
#define SCSI_SENSE_MEDIUM_ERROR	   0x3
#define SCSI_SENSE_HARDWARE_ERROR  0x4
#define SCSI_SENSE_ILLEGAL_REQUEST 0x5
#define SCSI_SENSE_UNIT_ATTENTION  0x6
#define SCSI_SENSE_DATA_PROTECT	   0x7
#define SCSI_SENSE_ABORTED_COMMAND 0xb

/* SPC-4 D.2 additional sense codes (ASC << 8 | ASCQ) used here. */
#define SCSI_ASC_NONE			      0x0000
#define SCSI_ASC_WRITE_ERROR		      0x0c00
#define SCSI_ASC_UNRECOVERED_READ_ERROR	      0x1100
#define SCSI_ASC_PARAM_LIST_LENGTH	      0x1a00
#define SCSI_ASC_INVALID_OPCODE		      0x2000
#define SCSI_ASC_LBA_OUT_OF_RANGE	      0x2100
#define SCSI_ASC_INVALID_FIELD_IN_CDB	      0x2400
#define SCSI_ASC_LUN_NOT_SUPPORTED	      0x2500
#define SCSI_ASC_INVALID_FIELD_IN_PARAM	      0x2600
#define SCSI_ASC_WRITE_PROTECTED	      0x2700
#define SCSI_ASC_SPACE_ALLOC_FAILED	      0x2707
#define SCSI_ASC_MEDIUM_MAY_HAVE_CHANGED      0x2800
#define SCSI_ASC_SAVING_NOT_SUPPORTED	      0x3900
#define SCSI_ASC_MEDIUM_NOT_PRESENT	      0x3a00
#define SCSI_ASC_MEDIUM_NOT_PRESENT_TRAY_OPEN 0x3a02
#define SCSI_ASC_INTERNAL_TARGET_FAILURE      0x4400
#define SCSI_ASC_MEDIUM_REMOVAL_PREVENTED     0x5302

/* Operation codes (SPC-4, SBC-3). */
#define SCSI_TEST_UNIT_READY		  0x00
#define SCSI_REQUEST_SENSE		  0x03
#define SCSI_READ_6			  0x08
#define SCSI_WRITE_6			  0x0a
#define SCSI_INQUIRY			  0x12
#define SCSI_MODE_SENSE_6		  0x1a
#define SCSI_START_STOP_UNIT		  0x1b
#define SCSI_PREVENT_ALLOW_MEDIUM_REMOVAL 0x1e
#define SCSI_READ_CAPACITY_10		  0x25
#define SCSI_READ_10			  0x28
#define SCSI_WRITE_10			  0x2a
#define SCSI_SYNCHRONIZE_CACHE_10	  0x35
#define SCSI_UNMAP			  0x42
#define SCSI_MODE_SENSE_10		  0x5a
#define SCSI_READ_16			  0x88
#define SCSI_WRITE_16			  0x8a
#define SCSI_SYNCHRONIZE_CACHE_16	  0x91
#define SCSI_WRITE_SAME_16		  0x93
#define SCSI_SERVICE_ACTION_IN_16	  0x9e
#define SCSI_SAI_READ_CAPACITY_16	  0x10
#define SCSI_REPORT_LUNS		  0xa0
#define SCSI_READ_12			  0xa8
#define SCSI_WRITE_12			  0xaa

#define SCSI_SENSE_FIXED_LEN	   18
#define SCSI_DISK_BUF_SIZE	   512	    /* room for any answer scsi_disk_exec builds */
#define SCSI_DISK_MAX_XFER_BLOCKS  65535    /* per READ/WRITE (VPD 0xB0) */
#define SCSI_DISK_MAX_UNMAP_DESC   16	    /* per UNMAP (VPD 0xB0) */
#define SCSI_DISK_MAX_UNMAP_BLOCKS 0x400000 /* per descriptor / WRITE SAME */

struct scsi_disk {
	uint64_t nblocks;    /* logical blocks */
	uint32_t block_size; /* bytes, 512 or 4096 */
	bool readonly;
	bool can_discard; /* UNMAP / WRITE SAME with UNMAP; unmapped reads zero */
	bool write_cache; /* WCE: a volatile cache the guest must flush */
	char serial[21];  /* VPD 0x80: up to 20 printable ASCII characters */
	uint64_t naa_id;  /* VPD 0x83: low 60 bits of a locally assigned NAA id */
};

struct scsi_sense {
	uint8_t key;
	uint16_t asc; /* ASC << 8 | ASCQ */
};

enum scsi_action {
	SCSI_ACT_DONE,	/* status/sense set; data-in in buf[0..data_len) */
	SCSI_ACT_READ,	/* lba, nblocks, into the data-in buffer */
	SCSI_ACT_WRITE, /* lba, nblocks, fua, from the data-out buffer */
	SCSI_ACT_FLUSH,
	SCSI_ACT_DATAOUT, /* UNMAP / WRITE SAME: call scsi_disk_dataout */
	SCSI_ACT_DISCARD, /* set by scsi_disk_dataout: the ranges */
	SCSI_ACT_WRITE_ZEROES,
};

struct scsi_cmd {
	enum scsi_action action;
	uint8_t opcode;
	uint8_t status;
	struct scsi_sense sense;
	uint32_t data_len; /* SCSI_ACT_DONE: data-in bytes in buf */
	uint64_t lba;
	uint32_t nblocks;
	bool fua;
	bool unmap;	      /* WRITE SAME: UNMAP bit */
	uint32_t dataout_len; /* SCSI_ACT_DATAOUT: data-out bytes the command carries */
};

struct scsi_range {
	uint64_t lba;
	uint32_t nblocks;
};

/* Execute one CDB (cdb_len bytes available, e.g. virtio-scsi's 32) against d.
 * buf holds SCSI_DISK_BUF_SIZE bytes for data-in. Data-in never exceeds the
 * CDB's allocation length (the caller also bounds it by the buffer the
 * initiator gave). */
void scsi_disk_exec(const struct scsi_disk *d, const uint8_t *cdb, size_t cdb_len, uint8_t *buf,
		    struct scsi_cmd *c);
/* The same for a LUN with no device behind it on an existing target (SPC-4
 * 4.6.4): INQUIRY answers "not present", REPORT LUNS lists lun0, the rest is
 * LOGICAL UNIT NOT SUPPORTED. */
void scsi_nolun_exec(const uint8_t *cdb, size_t cdb_len, uint8_t *buf, struct scsi_cmd *c);
/* Second step of SCSI_ACT_DATAOUT with the data-out bytes (copied from the
 * initiator): fills up to max ranges, sets c->action to DISCARD or
 * WRITE_ZEROES (or DONE with sense/GOOD) and returns the range count. */
unsigned scsi_disk_dataout(const struct scsi_disk *d, struct scsi_cmd *c, const uint8_t *data,
			   size_t len, struct scsi_range *ranges, unsigned max);
/* A block-layer error (-errno) of a READ/WRITE/FLUSH/DISCARD as CHECK
 * CONDITION: -EIO medium error, -EROFS write protected, -ENOSPC space
 * allocation failed, -EINVAL LBA out of range, else internal target failure. */
void scsi_cmd_set_errno(struct scsi_cmd *c, int err);
void scsi_cmd_check(struct scsi_cmd *c, uint8_t key, uint16_t asc);
/* Fixed-format sense data (SPC-4 4.5.3) into buf; returns bytes (<= len). */
size_t scsi_sense_fixed(const struct scsi_sense *s, uint8_t *buf, size_t len);
/* Standard INQUIRY data (SPC-4 6.6.2), 36 bytes, for a logical unit of
 * peripheral device type `type`: vendor "KESTREL", product (at most 16
 * characters, space padded), RMB set for removable media. Returns 36. Also
 * for ATAPI devices (atapi_cd.c), which answer INQUIRY the same way. */
uint32_t scsi_inquiry_standard(uint8_t *buf, uint8_t type, bool removable, const char *product);

#endif
