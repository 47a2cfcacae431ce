/* libFuzzer harness for the VHD parser and I/O paths (vhd/). The input is a
 * whole image file, held in a memfd:
 *  1. vhd_parse in check mode (every validation path, every message);
 *  2. if it opens read-write (parents not followed), reads at the start, the
 *     end and an input-chosen place, writes that allocate, a flush;
 *  3. the oracle: an image we accepted and then wrote to must still parse
 *     with no error (a write never breaks a valid image), and what we wrote
 *     must read back.
 * Build: tests/fuzz/run.sh (clang -fsanitize=fuzzer,address,undefined). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kestrel/vhd.h"

#define FUZZ_IO (64u << 10)

static uint64_t pick(const uint8_t *data, size_t size, size_t at)
{
	uint64_t v = 0;

	for (size_t i = 0; i < 8 && at + i < size; i++)
		v = v << 8 | data[at + i];
	return v;
}

static void exercise(int fd, const uint8_t *data, size_t size)
{
	static uint8_t buf[FUZZ_IO], back[FUZZ_IO];
	struct vhd_image *img;
	struct vhd_diag d = { 0 };
	struct vhd_meta m;
	char err[512];
	uint64_t disk, off;
	unsigned flags = VHD_OPEN_RDWR | VHD_OPEN_NO_PARENT | VHD_OPEN_NOSYNC | VHD_OPEN_NOLOCK;

	if (vhd_open_fd(&img, fd, "fuzz.vhd", flags, err, sizeof(err)))
		return;
	disk = vhd_image_size(img);
	(void)vhd_read(img, buf, MIN(disk, FUZZ_IO), 0);
	(void)vhd_read(img, buf, MIN(disk, FUZZ_IO), disk - MIN(disk, FUZZ_IO));
	off = (pick(data, size, 40) % (disk / 512)) * 512;
	(void)vhd_read(img, buf, MIN(disk - off, FUZZ_IO), off);
	/* Two writes: one at an input-chosen place, one in the last sector. */
	memset(buf, 0x5a, sizeof(buf));
	if (vhd_write(img, buf, MIN(disk - off, 4096), off) == 0) {
		if (vhd_read(img, back, MIN(disk - off, 4096), off) != 0 ||
		    memcmp(buf, back, MIN(disk - off, 4096)) != 0)
			__builtin_trap();
	}
	(void)vhd_write(img, buf, 512, disk - 512);
	(void)vhd_flush(img);
	(void)vhd_close(img);
	if (vhd_parse(fd, &m, VHD_PARSE_CHECK, &d) != 0 || d.errors || d.repairable) {
		fprintf(stderr, "fuzz_vhd: image broken by our writes: %s\n", d.first);
		__builtin_trap();
	}
	vhd_meta_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vhd_diag d = { 0 };
	struct vhd_meta m;
	int fd = memfd_create("fuzz.vhd", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t)size) {
		(void)vhd_parse(fd, &m, VHD_PARSE_CHECK, &d);
		vhd_meta_free(&m);
		exercise(fd, data, size);
	}
	close(fd);
	return 0;
}
