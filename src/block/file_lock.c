/* Advisory image locks, shared by the block layer and the VHD tool (kept
 * apart from block.c so the VHD parser's fuzz harness links without it). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>

#include "kestrel/block.h"

/* A worker killed with I/O in flight keeps its lock until the kernel has torn
 * down its io_uring, which runs asynchronously after the process is reaped:
 * a restart (systemd's Restart=on-failure, `kestrel vhd check` right after a
 * crash) must not see that as "in use". So a conflict is retried for a short
 * grace period before it counts. */
#define BLK_LOCK_GRACE_MS 3000

int blk_lock_file(int fd, bool exclusive)
{
	struct flock fl = { .l_type = exclusive ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET };
	int waited = 0;

	/* Whole-file open-file-description lock: QEMU (byte-range OFD locks) and
	 * kestrel see each other's. */
	while (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
		if (errno != EAGAIN && errno != EACCES)
			return errno == EINVAL || errno == ENOLCK || errno == EOPNOTSUPP ? 0
											 : -errno;
		if (waited >= BLK_LOCK_GRACE_MS)
			return -EBUSY;
		usleep(20 * 1000);
		waited += 20;
	}
	return 0;
}

void blk_unlock_file(int fd)
{
	struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET };

	(void)fcntl(fd, F_OFD_SETLK, &fl);
}
