/* CRC-32C (Castagnoli, reflected polynomial 0x82f63b78, as iSCSI, ext4 and
 * SSE4.2's crc32 instruction compute it): the checksum of the saved-state
 * stream (docs/state.md). */
#ifndef KESTREL_CRC32C_H
#define KESTREL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue crc over len bytes; start with 0. crc32c("123456789") = 0xe3069283. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
