/* The TAP backend (Documentation/networking/tuntap.rst): one fd per queue on
 * /dev/net/tun, each bound to the same interface with TUNSETIFF. The vnet
 * header (TUNSETVNETHDRSZ 12) is the virtio 1.x struct virtio_net_hdr_v1,
 * so virtio-net hands the guest's header to the kernel and back unchanged;
 * TUNSETOFFLOAD says which offloaded frames the kernel may give us. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include "kestrel/net.h"
#include "kestrel/sandbox.h"

#define NET_TUN_PATH "/dev/net/tun"

PRINTF_LIKE(4, 5) static int tap_err(int ret, char *err, size_t errlen, const char *fmt, ...);
static int tap_err(int ret, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

static int tap_open_dev(const char *ifname, char *err, size_t errlen)
{
	int fd = open(NET_TUN_PATH, O_RDWR | O_CLOEXEC | O_NONBLOCK);

	if (fd >= 0)
		return fd;
	if (errno == ENOENT || errno == ENXIO || errno == ENODEV)
		return tap_err(-errno, err, errlen,
			       "tap=%s: %s: %s (is the tun module loaded? "
			       "modprobe tun)",
			       ifname, NET_TUN_PATH, strerror(errno));
	return tap_err(-errno, err, errlen, "tap=%s: %s: %s", ifname, NET_TUN_PATH,
		       strerror(errno));
}

/* TUNSETIFF failed: say why in the words of what the user must change. */
static int tap_setiff_err(int e, const char *ifname, unsigned nqueues, char *err, size_t errlen)
{
	switch (e) {
	case EPERM:
		return tap_err(
			-e, err, errlen,
			"tap=%s: not allowed to attach to or create the TAP "
			"(needs CAP_NET_ADMIN, or a TAP made beforehand for this user: ip tuntap "
			"add mode tap user $USER%s name %s)",
			ifname, nqueues > 1 ? " multi_queue" : "", ifname);
	case EBUSY:
		return tap_err(-e, err, errlen, "tap=%s: the TAP is in use by another process",
			       ifname);
	case EINVAL:
		if (nqueues > 1)
			return tap_err(
				-e, err, errlen,
				"tap=%s: cannot open %u queues: the interface "
				"is not a multi-queue TAP (ip tuntap add mode tap multi_queue "
				"name %s)",
				ifname, nqueues, ifname);
		return tap_err(-e, err, errlen, "tap=%s: the interface exists but is not a TAP",
			       ifname);
	}
	return tap_err(-e, err, errlen, "tap=%s: TUNSETIFF: %s", ifname, strerror(e));
}

/* Bind fd to ifname. A single queue also attaches to a multi-queue TAP: the
 * kernel insists that the flag matches how the interface was made. */
static int tap_setiff(int fd, const char *ifname, unsigned nqueues, char *err, size_t errlen)
{
	struct ifreq ifr;
	short mq = nqueues > 1 ? IFF_MULTI_QUEUE : 0;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_flags = (short)(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | mq);
	if (ioctl(fd, TUNSETIFF, &ifr) == 0)
		return 0;
	if (errno == EINVAL && nqueues == 1) {
		ifr.ifr_flags |= IFF_MULTI_QUEUE;
		if (ioctl(fd, TUNSETIFF, &ifr) == 0)
			return 0;
		errno = EINVAL;
	}
	return tap_setiff_err(errno, ifname, nqueues, err, errlen);
}

static int tap_setup_fd(int fd, const char *ifname, char *err, size_t errlen)
{
	int hdr = NET_VNET_HDR_LEN, le = 1;
	unsigned features = 0;

	if (ioctl(fd, TUNGETFEATURES, &features) == 0 && !(features & IFF_VNET_HDR))
		return tap_err(-ENOTSUP, err, errlen,
			       "tap=%s: the kernel's TAP has no vnet "
			       "header support",
			       ifname);
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0)
		return tap_err(-errno, err, errlen, "tap=%s: TUNSETVNETHDRSZ: %s", ifname,
			       strerror(errno));
	/* virtio 1.x headers are little endian; a no-op on x86 hosts. */
	if (ioctl(fd, TUNSETVNETLE, &le) < 0)
		kdebug("tap=%s: TUNSETVNETLE: %s", ifname, strerror(errno));
	if (ioctl(fd, TUNSETOFFLOAD, 0) < 0)
		return tap_err(-errno, err, errlen, "tap=%s: TUNSETOFFLOAD: %s", ifname,
			       strerror(errno));
	return 0;
}

static bool tap_name_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= NET_IFNAME_MAX && strcmp(s, ".") && strcmp(s, "..") &&
	       !strpbrk(s, "/% \t\n:");
}

int net_tap_open(struct net_tap *t, const char *ifname, unsigned nqueues, char *err, size_t errlen)
{
	int ret = 0;

	memset(t, 0, sizeof(*t));
	t->kind = NET_KIND_TAP;
	for (unsigned q = 0; q < NET_MAX_QUEUES; q++)
		t->fd[q] = -1;
	if (!tap_name_ok(ifname))
		return tap_err(-EINVAL, err, errlen, "tap=%s: not an interface name", ifname);
	if (nqueues < 1 || nqueues > NET_MAX_QUEUES)
		return tap_err(-EINVAL, err, errlen, "tap=%s: queues=%u out of range (1 to %d)",
			       ifname, nqueues, NET_MAX_QUEUES);
	snprintf(t->ifname, sizeof(t->ifname), "%s", ifname);
	for (unsigned q = 0; q < nqueues && !ret; q++) {
		/* A reboot takes the queue kept from the first boot, already
		 * attached: TUNSETIFF may need CAP_NET_ADMIN, long gone by then. */
		char key[64];
		int fd;

		snprintf(key, sizeof(key), "tap:%s:%u/%u", ifname, q, nqueues);
		fd = sandbox_kept(key);
		if (fd < 0 && (fd = tap_open_dev(ifname, err, errlen)) >= 0) {
			ret = tap_setiff(fd, ifname, nqueues, err, errlen);
			if (ret == 0)
				sandbox_keep(key, fd);
		}
		if (fd < 0) {
			ret = fd;
			break;
		}
		t->fd[q] = fd;
		t->nqueues = q + 1;
		ret = ret ?: tap_setup_fd(fd, ifname, err, errlen);
	}
	if (ret)
		net_tap_close(t);
	return ret;
}

void net_tap_from_fds(struct net_tap *t, const int *fds, unsigned nqueues)
{
	memset(t, 0, sizeof(*t));
	t->kind = NET_KIND_SOCKET;
	snprintf(t->ifname, sizeof(t->ifname), "socket");
	t->nqueues = MIN(nqueues, (unsigned)NET_MAX_QUEUES);
	for (unsigned q = 0; q < NET_MAX_QUEUES; q++)
		t->fd[q] = q < t->nqueues ? fds[q] : -1;
}

void net_tap_close(struct net_tap *t)
{
	for (unsigned q = 0; q < NET_MAX_QUEUES; q++) {
		if (t->fd[q] >= 0)
			close(t->fd[q]);
		t->fd[q] = -1;
	}
	t->nqueues = 0;
}

int net_tap_set_offload(const struct net_tap *t, unsigned flags)
{
	if (t->kind != NET_KIND_TAP)
		return 0;
	for (unsigned q = 0; q < t->nqueues; q++)
		if (ioctl(t->fd[q], TUNSETOFFLOAD, (unsigned long)flags) < 0)
			return -errno;
	return 0;
}

int net_tap_set_queue(const struct net_tap *t, unsigned q, bool enabled)
{
	struct ifreq ifr;

	if (t->kind != NET_KIND_TAP || t->nqueues < 2 || q >= t->nqueues)
		return 0;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = enabled ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
	if (ioctl(t->fd[q], TUNSETQUEUE, &ifr) == 0)
		return 0;
	/* Already in the wanted state. */
	return errno == EINVAL ? 0 : -errno;
}

ssize_t net_tap_recv(const struct net_tap *t, unsigned q, const struct iovec *iov, int iovcnt)
{
	struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	ssize_t n;

	do {
		if (t->kind == NET_KIND_TAP)
			n = readv(t->fd[q], iov, iovcnt);
		else
			n = recvmsg(t->fd[q], &msg, MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

ssize_t net_tap_send(const struct net_tap *t, unsigned q, const struct iovec *iov, int iovcnt)
{
	struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	ssize_t n;

	do {
		if (t->kind == NET_KIND_TAP)
			n = writev(t->fd[q], iov, iovcnt);
		else
			n = sendmsg(t->fd[q], &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}
