/* Descriptors kept from the first boot.
 *
 * A guest reboot re-creates the machine (--on-reboot restart): /dev/kvm, the
 * kernel and initrd, the serial file, every disk (and VHD parent) and every
 * TAP queue are opened again. After --user and the capability drop the
 * worker could not open most of them any more (/dev/kvm and disks owned by
 * root, TUNSETIFF needs CAP_NET_ADMIN), and under Landlock not at all. So
 * while the first boot is set up, each descriptor the worker opens is also
 * kept (a dup, for the worker's life), and the same open later hands out a
 * dup of the kept one: a reboot uses the very files of the first boot, as
 * QEMU does (a kernel or disk file replaced by name takes effect at the next
 * start of the worker, not at a guest reboot).
 *
 * A dup shares the open file description: its offset (the block layer only
 * uses pread/pwrite), its status flags (the key includes them, so a second
 * user with other flags opens its own), and its OFD lock, which is why the
 * block layer unlocks a disk before closing it (blk_unlock_file).
 *
 * Only the first boot records, and only what comes after it replays: the
 * first boot opens exactly as without a sandbox (two opens of one file are two
 * descriptions, and the lock check between two --disk of one image holds). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandbox_priv.h"

struct kept {
	char *key;
	int fd;
	struct kept *next;
};

static pthread_mutex_t keep_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kept *keep_list;
static enum sb_keep_mode keep_mode;

void sb_keep_mode(enum sb_keep_mode mode)
{
	pthread_mutex_lock(&keep_lock);
	keep_mode = mode;
	pthread_mutex_unlock(&keep_lock);
}

void sandbox_keep(const char *key, int fd)
{
	struct kept *k;
	int dupfd;

	pthread_mutex_lock(&keep_lock);
	for (k = keep_list; k && strcmp(k->key, key); k = k->next)
		;
	if (keep_mode != SB_KEEP_RECORD || k) {
		pthread_mutex_unlock(&keep_lock);
		return;
	}
	/* Out of memory or descriptors: the reboot opens by name instead. */
	k = calloc(1, sizeof(*k));
	dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (k && dupfd >= 0 && (k->key = strdup(key))) {
		k->fd = dupfd;
		k->next = keep_list;
		keep_list = k;
	} else {
		if (dupfd >= 0)
			close(dupfd);
		free(k);
		kwarn("sandbox: cannot keep %s open for a reboot", key);
	}
	pthread_mutex_unlock(&keep_lock);
}

int sandbox_kept(const char *key)
{
	int fd = -ENOENT;

	pthread_mutex_lock(&keep_lock);
	for (struct kept *k = keep_mode == SB_KEEP_REPLAY ? keep_list : NULL; k; k = k->next) {
		if (strcmp(k->key, key))
			continue;
		fd = fcntl(k->fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			fd = -errno;
		break;
	}
	pthread_mutex_unlock(&keep_lock);
	return fd;
}

/* O_CREAT/O_TRUNC only matter the first time: a kept serial file is not
 * truncated again by a reboot. */
#define KEEP_KEY_FLAGS (O_ACCMODE | O_DIRECT | O_NONBLOCK | O_DSYNC | O_SYNC | O_PATH)
#define KEEP_KEY_MAX   4200

static int keep_file_key(char *key, size_t len, const char *path, int flags)
{
	int n = snprintf(key, len, "file:%#x:%s", (unsigned)(flags & KEEP_KEY_FLAGS), path);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int sandbox_open(const char *path, int flags, mode_t mode)
{
	char key[KEEP_KEY_MAX];
	int fd = keep_file_key(key, sizeof(key), path, flags);

	if (fd == 0)
		fd = sandbox_kept(key);
	if (fd != -ENOENT)
		return fd;
	fd = open(path, flags, mode);
	if (fd < 0)
		return -errno;
	sandbox_keep(key, fd);
	return fd;
}

/* A second open file description of what fd is open on (its own status flags
 * and lock): through /proc/self/fd, so that it is the same file even if path
 * was replaced meanwhile; by name where /proc is missing. */
int sandbox_reopen(int fd, const char *path, int flags)
{
	char key[KEEP_KEY_MAX], proc[64];
	int nfd = keep_file_key(key, sizeof(key), path, flags);

	if (nfd == 0)
		nfd = sandbox_kept(key);
	if (nfd != -ENOENT)
		return nfd;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	nfd = open(proc, flags);
	if (nfd < 0)
		nfd = open(path, flags);
	if (nfd < 0)
		return -errno;
	sandbox_keep(key, nfd);
	return nfd;
}
