/* libFuzzer harness: the SCSI disk command interpreter (scsi_disk.c). Input:
 * byte 0 flags (readonly, discard, write cache), then a 32-byte CDB, then the
 * data-out bytes UNMAP / WRITE SAME would carry. Answers must stay inside
 * the buffer; block operations inside the disk. */
#include <stdint.h>
#include <string.h>

#include "kestrel/scsi_disk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct scsi_disk d = { .nblocks = 1 << 20, .block_size = 512, .naa_id = 1 };
	struct scsi_range r[SCSI_DISK_MAX_UNMAP_DESC];
	uint8_t cdb[32] = { 0 }, buf[SCSI_DISK_BUF_SIZE];
	struct scsi_cmd c;
	unsigned n;

	if (size < 1)
		return 0;
	d.readonly = data[0] & 1;
	d.can_discard = data[0] & 2;
	d.write_cache = data[0] & 4;
	if (data[0] & 8)
		d.nblocks = UINT64_MAX / 4096;
	strcpy(d.serial, "FUZZ");
	memcpy(cdb, data + 1, size - 1 < 32 ? size - 1 : 32);
	scsi_disk_exec(&d, cdb, sizeof(cdb), buf, &c);
	if (c.data_len > sizeof(buf))
		__builtin_trap();
	if ((c.action == SCSI_ACT_READ || c.action == SCSI_ACT_WRITE) &&
	    (c.nblocks == 0 || c.lba >= d.nblocks || c.nblocks > d.nblocks - c.lba))
		__builtin_trap();
	if (c.action == SCSI_ACT_DATAOUT && size > 33) {
		n = scsi_disk_dataout(&d, &c, data + 33, size - 33, r, SCSI_DISK_MAX_UNMAP_DESC);
		for (unsigned i = 0; i < n; i++)
			if (r[i].lba >= d.nblocks || r[i].nblocks > d.nblocks - r[i].lba)
				__builtin_trap();
	}
	scsi_nolun_exec(cdb, sizeof(cdb), buf, &c);
	return 0;
}
