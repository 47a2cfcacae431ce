/* sd_notify(3) without libsystemd: $NOTIFY_SOCKET names an AF_UNIX datagram
 * socket, a path or, with a leading '@', an abstract-namespace name. Each
 * message is one datagram of newline-separated VAR=VALUE assignments. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kestrel/notify.h"

static int notify_addr(struct sockaddr_un *sa, socklen_t *len)
{
	const char *p = getenv("NOTIFY_SOCKET");
	size_t n;

	if (!p || !*p)
		return 1;
	n = strlen(p);
	if ((p[0] != '/' && p[0] != '@') || n >= sizeof(sa->sun_path))
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, p, n);
	if (p[0] == '@')
		sa->sun_path[0] = '\0'; /* abstract: no NUL terminator counted */
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (p[0] == '/'));
	return 0;
}

int notify_send(const char *fmt, ...)
{
	struct sockaddr_un sa;
	socklen_t salen;
	char msg[512];
	va_list ap;
	int fd, ret, n;

	ret = notify_addr(&sa, &salen);
	if (ret)
		return ret;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = 0;
	if (sendto(fd, msg, MIN((size_t)n, sizeof(msg) - 1), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   salen) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

uint64_t notify_watchdog_usec(void)
{
	const char *u = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	char *end;
	unsigned long long v;

	if (!u || !*u)
		return 0;
	if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid())
		return 0;
	errno = 0;
	v = strtoull(u, &end, 10);
	if (errno || *end || v == 0)
		return 0;
	return v;
}
