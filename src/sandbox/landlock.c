/* --landlock: after the seal, the worker's threads may open files only in the
 * folders of the VM's own disks (to read and write existing files: disk-add
 * of an image kept next to them), and read /proc/self (statistics). Nothing
 * else is opened by name after the seal: a reboot re-uses the first boot's
 * descriptors (keep.c), and opened descriptors are not Landlock's business.
 *
 * Landlock (Linux 5.13+, Documentation/userspace-api/landlock.rst) restricts
 * the calling thread and the threads it creates afterwards, so every thread
 * of the first boot enters the domain at its sandbox entry, the main thread
 * at the seal, and threads born later inherit it from the spawner. The
 * ruleset is made at sandbox_init, when the folders can still be opened. */
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox_priv.h"

static int sb_landlock_fd = -1;

/* Everything ABI 1 and 2 know (REFER: 5.19), so all of it is refused unless
 * a rule allows it. */
static uint64_t sb_landlock_handled(int abi)
{
	uint64_t all = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
		       LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
		       LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
		       LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
		       LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
		       LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		       LANDLOCK_ACCESS_FS_MAKE_SYM;

	return abi >= 2 ? all | LANDLOCK_ACCESS_FS_REFER : all;
}

static int sb_landlock_allow(int ruleset, const char *path, uint64_t access, char *err,
			     size_t errlen)
{
	struct landlock_path_beneath_attr pb = { .allowed_access = access };
	int r;

	pb.parent_fd = open(path, O_PATH | O_CLOEXEC);
	if (pb.parent_fd < 0) {
		snprintf(err, errlen, "--landlock: %s: %s", path, strerror(errno));
		return -errno;
	}
	r = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
	if (r < 0) {
		r = -errno;
		snprintf(err, errlen, "--landlock: %s: landlock_add_rule: %s", path, strerror(-r));
	}
	close(pb.parent_fd);
	return r < 0 ? r : 0;
}

int sb_landlock_init(const char *const *dirs, unsigned ndirs, char *err, size_t errlen)
{
	struct landlock_ruleset_attr attr = { 0 };
	int abi =
		(int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	int r = 0;

	if (abi < 1) {
		snprintf(err, errlen,
			 "--landlock: this kernel has no Landlock (%s; Linux 5.13+ with "
			 "landlock in its lsm= list)",
			 strerror(errno));
		return -ENOTSUP;
	}
	attr.handled_access_fs = sb_landlock_handled(abi);
	sb_landlock_fd = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (sb_landlock_fd < 0) {
		snprintf(err, errlen, "--landlock: landlock_create_ruleset: %s", strerror(errno));
		return -errno;
	}
	r = sb_landlock_allow(sb_landlock_fd, "/proc/self",
			      LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR, err,
			      errlen);
	for (unsigned i = 0; i < ndirs && !r; i++)
		r = sb_landlock_allow(sb_landlock_fd, dirs[i],
				      LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE,
				      err, errlen);
	if (r) {
		close(sb_landlock_fd);
		sb_landlock_fd = -1;
	}
	return r;
}

int sb_landlock_enter(void)
{
	if (sb_landlock_fd < 0)
		return 0;
	return syscall(SYS_landlock_restrict_self, sb_landlock_fd, 0) < 0 ? -errno : 0;
}
