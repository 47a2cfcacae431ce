/* state-tamper FILE TAG INDEX OFFSET BYTE...: write the bytes (hex) at
 * OFFSET of the body of the INDEX-th record TAG ("VCPU", "DEVS", ...) of a
 * saved VM, and put the record's checksum right again, so the file is a
 * hostile one that only the reader's checks of the fields can refuse
 * (tests/guest-tests.sh: a restore of it must fail with one line). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/crc32c.h"
#include "kestrel/state_stream.h"

static int die(const char *why)
{
	fprintf(stderr, "state-tamper: %s\n", why);
	return 2;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int main(int argc, char **argv)
{
	uint8_t hdr[STREAM_HEADER_SIZE], *area;
	struct stream_header h;
	struct stat st;
	uint32_t tag, index, offset, seen = 0;
	char err[256];
	int fd;

	if (argc < 6 || strlen(argv[2]) != 4)
		return die("usage: state-tamper FILE TAG INDEX OFFSET BYTE...");
	tag = (uint32_t)argv[2][0] << 24 | (uint32_t)argv[2][1] << 16 | (uint32_t)argv[2][2] << 8 |
	      (uint32_t)argv[2][3];
	index = (uint32_t)strtoul(argv[3], NULL, 0);
	offset = (uint32_t)strtoul(argv[4], NULL, 0);
	fd = open(argv[1], O_RDWR);
	if (fd < 0 || fstat(fd, &st) < 0 || pread(fd, hdr, sizeof(hdr), 0) != sizeof(hdr))
		return die("cannot read the file");
	if (stream_header_decode(hdr, (uint64_t)st.st_size, &h, err, sizeof(err)))
		return die(err);
	area = malloc(h.records_len);
	if (!area || pread(fd, area, h.records_len, (off_t)h.records_off) != (ssize_t)h.records_len)
		return die("cannot read the records");
	for (uint64_t pos = 0; pos + STREAM_RECORD_HDR <= h.records_len;) {
		uint8_t *r = area + pos;
		uint32_t len = le32(r + 8), crc;

		if (le32(r) == tag && seen++ == index) {
			if (offset + (uint64_t)(argc - 5) > len)
				return die("offset past the record's body");
			for (int i = 5; i < argc; i++)
				r[STREAM_RECORD_HDR + offset + (unsigned)(i - 5)] =
					(uint8_t)strtoul(argv[i], NULL, 16);
			crc = crc32c(crc32c(0, r, 12), r + STREAM_RECORD_HDR, len);
			for (int i = 0; i < 4; i++)
				r[12 + i] = (uint8_t)(crc >> (8 * i));
			ssize_t n = pwrite(fd, area, h.records_len, (off_t)h.records_off);

			free(area);
			if (n != (ssize_t)h.records_len)
				return die("cannot write");
			return close(fd) ? die("close") : 0;
		}
		pos += STREAM_RECORD_HDR + (uint64_t)len;
	}
	return die("no such record");
}
