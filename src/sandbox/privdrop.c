/* Least privilege for the worker: no_new_privs, no inherited descriptors, no
 * capability bounding set, then (at the seal, once /dev/kvm, disks, TAPs, the
 * serial file and the control socket are open) --user and empty capability
 * sets.
 *
 * Credentials and capabilities are per thread in Linux. setgroups, setresgid
 * and setresuid are run by glibc in every thread of the process, and a change
 * from uid 0 to another uid empties each thread's permitted and effective
 * capabilities as it goes; capset() and the bounding set act on the calling
 * thread only, so each thread empties its own capability sets at its sandbox
 * entry (sandbox.c), and the bounding set is emptied here, before the first
 * thread exists, so that every thread inherits an empty one. */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox_priv.h"

#define SB_MAX_GROUPS 256

static struct {
	bool drop; /* --user given and not already that user */
	uid_t uid;
	gid_t gid;
	gid_t groups[SB_MAX_GROUPS];
	int ngroups;
	char name[64];
} sb_user;

/* --user NAME or a numeric uid (its primary group from the password file if
 * it has an entry there, else the same number). */
static int sb_resolve_user(const char *user, char *err, size_t errlen)
{
	struct passwd *pw = getpwnam(user);
	char *end;
	unsigned long v;

	if (!pw) {
		errno = 0;
		v = strtoul(user, &end, 10);
		if (!*user || *end || errno || v >= (unsigned long)UINT_MAX) {
			snprintf(err, errlen, "--user: %s: no such user", user);
			return -ENOENT;
		}
		pw = getpwuid((uid_t)v);
		sb_user.uid = (uid_t)v;
		sb_user.gid = pw ? pw->pw_gid : (gid_t)v;
	} else {
		sb_user.uid = pw->pw_uid;
		sb_user.gid = pw->pw_gid;
	}
	sb_user.ngroups = SB_MAX_GROUPS;
	if (!pw || getgrouplist(pw->pw_name, sb_user.gid, sb_user.groups, &sb_user.ngroups) < 0) {
		/* No entry, or more groups than we take: its primary group only. */
		sb_user.groups[0] = sb_user.gid;
		sb_user.ngroups = 1;
	}
	snprintf(sb_user.name, sizeof(sb_user.name), "%s", user);
	return 0;
}

/* Everything but 0-2 was inherited from whoever started us: none of it is
 * ours to keep (kestrel takes no descriptors from its parent). */
static void sb_close_inherited(void)
{
	long max;

	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
	max = sysconf(_SC_OPEN_MAX);
	for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
		close((int)fd);
}

/* Needs CAP_SETPCAP (root has it): without it there is nothing to drop from
 * that could matter, since no_new_privs and the filters forbid execve. */
static void sb_drop_bounding_set(void)
{
	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL)
			break;
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

int sb_priv_init(const char *user, char *err, size_t errlen)
{
	int r;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "sandbox: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return -errno;
	}
	sb_close_inherited();
	if (user) {
		r = sb_resolve_user(user, err, errlen);
		if (r)
			return r;
		sb_user.drop = geteuid() != sb_user.uid || getegid() != sb_user.gid;
		if (sb_user.drop && geteuid() != 0) {
			snprintf(err, errlen,
				 "--user %s: only root can switch to another user "
				 "(the worker runs as uid %u)",
				 user, (unsigned)geteuid());
			return -EPERM;
		}
	}
	sb_drop_bounding_set();
	return 0;
}

int sb_priv_drop_process(char *err, size_t errlen)
{
	uid_t ru, eu, su;

	if (!sb_user.drop)
		return 0;
	if (setgroups((size_t)sb_user.ngroups, sb_user.groups) < 0 ||
	    setresgid(sb_user.gid, sb_user.gid, sb_user.gid) < 0 ||
	    setresuid(sb_user.uid, sb_user.uid, sb_user.uid) < 0) {
		snprintf(err, errlen, "--user %s: cannot switch to uid %u gid %u: %s", sb_user.name,
			 (unsigned)sb_user.uid, (unsigned)sb_user.gid, strerror(errno));
		return -errno;
	}
	/* Paranoia as in OpenBSD's privdrop: no way back to root. */
	if (getresuid(&ru, &eu, &su) < 0 || ru != sb_user.uid || eu != sb_user.uid ||
	    su != sb_user.uid || (sb_user.uid != 0 && setuid(0) == 0)) {
		snprintf(err, errlen, "--user %s: the switch to uid %u did not hold", sb_user.name,
			 (unsigned)sb_user.uid);
		return -EPERM;
	}
	kdebug("sandbox: running as uid %u gid %u (%s)", (unsigned)sb_user.uid,
	       (unsigned)sb_user.gid, sb_user.name);
	return 0;
}

int sb_priv_drop_thread(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

	memset(d, 0, sizeof(d));
	return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

/* An unprivileged worker shares its uid with other processes (other VMs of the
 * same user, under systemd's User=): non-dumpable, none of them can ptrace it
 * or reach its memory through /proc/PID/mem. (setresuid did this already for
 * --user; an unprivileged start needs it said.) */
void sb_priv_seal(void)
{
	if (geteuid() != 0)
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
