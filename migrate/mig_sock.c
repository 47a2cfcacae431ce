/* The migration connection, for both ends: addresses (numeric only, so the
 * sandboxed source never needs a resolver; migrate_uri_resolve turns a host
 * name into one before, outside the sandbox), whole-buffer sends and receives
 * that give up on cancel or after a long silence, and whole messages. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kestrel/clock.h"
#include "kestrel/migrate.h"
#include "kestrel/migrate_wire.h"
#include "migrate_int.h"

#define MIG_POLL_MS 200

int mig_addr(const char *uri, struct sockaddr_storage *sa, socklen_t *len, char *err, size_t errlen)
{
	memset(sa, 0, sizeof(*sa));
	if (!strncmp(uri, "unix:", 5)) {
		struct sockaddr_un *un = (struct sockaddr_un *)sa;
		size_t n = strlen(uri + 5);

		if (!n || n >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "%s: the socket path is empty or too long", uri);
			return -EINVAL;
		}
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, uri + 5, n + 1);
		*len = (socklen_t)sizeof(*un);
		return 0;
	}
	if (!strncmp(uri, "tcp:", 4)) {
		const char *colon = strrchr(uri + 4, ':');
		char host[INET6_ADDRSTRLEN + 2] = "", *end;
		unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
		size_t hl = colon ? (size_t)(colon - (uri + 4)) : 0;
		struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;

		if (colon && hl < sizeof(host)) {
			memcpy(host, uri + 4, hl);
			host[hl] = '\0';
		}
		if (!colon || !colon[1] || *end || port == 0 || port > 65535 || hl >= sizeof(host))
			goto bad_tcp;
		if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
			host[hl - 1] = '\0';
			if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) != 1)
				goto bad_tcp;
			in6->sin6_family = AF_INET6;
			in6->sin6_port = htons((uint16_t)port);
			*len = (socklen_t)sizeof(*in6);
			return 0;
		}
		if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &in4->sin_addr) != 1)
			goto bad_tcp;
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = (socklen_t)sizeof(*in4);
		return 0;
	}
	snprintf(err, errlen, "%s: expected tcp:ADDR:PORT or unix:PATH", uri);
	return -EINVAL;
bad_tcp:
	snprintf(err, errlen,
		 "%s: expected tcp:ADDR:PORT with a numeric IPv4 address or [IPv6] "
		 "address and a port 1-65535",
		 uri);
	return -EINVAL;
}

int migrate_uri_resolve(const char *uri, char **out, char *err, size_t errlen)
{
	const char *colon = strncmp(uri, "tcp:", 4) ? NULL : strrchr(uri + 4, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char host[256], num[INET6_ADDRSTRLEN];
	size_t hl = colon ? (size_t)(colon - (uri + 4)) : 0;
	int r;

	*out = NULL;
	if (colon && hl && uri[4] != '[' && hl < sizeof(host)) {
		memcpy(host, uri + 4, hl);
		host[hl] = '\0';
	} else {
		host[0] = '\0';
	}
	/* unix:, a numeric address, an empty host (any), a [v6]: as it is. */
	if (!host[0] || inet_pton(AF_INET, host, num) == 1) {
		r = migrate_uri_check(uri, err, errlen);
		if (!r && !(*out = strdup(uri)))
			r = -ENOMEM;
		return r;
	}
	r = getaddrinfo(host, NULL, &hints, &ai);
	if (r || !ai) {
		snprintf(err, errlen, "%s: %s: %s", uri, host, r ? gai_strerror(r) : "no address");
		return -EHOSTUNREACH;
	}
	if (ai->ai_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, num,
			  sizeof(num));
	else
		inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, num,
			  sizeof(num));
	r = asprintf(out, ai->ai_family == AF_INET6 ? "tcp:[%s]%s" : "tcp:%s%s", num, colon);
	freeaddrinfo(ai);
	if (r < 0) {
		*out = NULL;
		return -ENOMEM;
	}
	r = migrate_uri_check(*out, err, errlen);
	if (r) {
		free(*out);
		*out = NULL;
	}
	return r;
}

int migrate_uri_check(const char *uri, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	socklen_t len;

	return mig_addr(uri, &sa, &len, err, errlen);
}

void mig_tune(int fd)
{
	int one = 1, buf = 4 << 20;

	/* Small messages (REPLY, SWITCH) go at once; big buffers for pages. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

/* Wait until fd is ready for events; -ECANCELED, -ETIMEDOUT or -errno. */
static int mig_wait(struct mig_conn *c, short events)
{
	uint64_t start = clock_mono_ms();

	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = events };
		int r;

		if (c->cancel && __atomic_load_n(c->cancel, __ATOMIC_ACQUIRE))
			return -ECANCELED;
		r = poll(&p, 1, MIG_POLL_MS);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (c->timeout_ms && clock_mono_ms() - start > c->timeout_ms)
			return -ETIMEDOUT;
	}
}

int mig_sendv(struct mig_conn *c, struct iovec *iov, int n)
{
	while (n > 0) {
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		int r;

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			r = mig_wait(c, POLLOUT);
			if (r)
				return r;
			continue;
		}
		c->sent += (uint64_t)w;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

int mig_recv(struct mig_conn *c, void *p, size_t n)
{
	uint8_t *d = p;

	while (n) {
		ssize_t r = recv(c->fd, d, n, MSG_DONTWAIT);
		int w;

		if (r == 0)
			return -EPIPE;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			w = mig_wait(c, POLLIN);
			if (w)
				return w;
			continue;
		}
		d += r;
		n -= (size_t)r;
	}
	return 0;
}

int mig_send_msg(struct mig_conn *c, uint32_t type, const void *body, size_t len)
{
	uint8_t hdr[MIG_HDR_SIZE];
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)body, len } };

	mig_hdr_encode(type, len, hdr);
	return mig_sendv(c, iov, len ? 2 : 1);
}

int mig_send_reply(struct mig_conn *c, int status, const char *msg)
{
	struct state_buf b = { 0 };
	int ret;

	mig_reply_put(&b, status, msg);
	ret = b.error ? -ENOMEM : mig_send_msg(c, MIG_REPLY, b.data, b.len);
	state_free(&b);
	return ret;
}

int mig_recv_body(struct mig_conn *c, const struct mig_hdr *h, uint8_t **body)
{
	int ret;

	*body = malloc(h->len ? h->len : 1);
	if (!*body)
		return -ENOMEM;
	ret = mig_recv(c, *body, h->len);
	if (ret) {
		free(*body);
		*body = NULL;
	}
	return ret;
}

int mig_recv_reply(struct mig_conn *c, char *err, size_t errlen)
{
	uint8_t raw[MIG_HDR_SIZE], *body = NULL;
	struct mig_hdr h;
	char *msg = NULL;
	int status = 0, ret = mig_recv(c, raw, sizeof(raw));

	if (ret) {
		snprintf(err, errlen, "the target %s",
			 ret == -EPIPE	     ? "closed the connection"
			 : ret == -ECANCELED ? "did not answer before the cancel"
					     : strerror(-ret));
		return ret;
	}
	ret = mig_hdr_decode(raw, 0, &h, err, errlen);
	if (!ret && h.type != MIG_REPLY) {
		snprintf(err, errlen, "the target sent message type %u instead of a reply", h.type);
		ret = -EPROTO;
	}
	ret = ret ?: mig_recv_body(c, &h, &body);
	if (!ret && mig_reply_parse(body, h.len, &status, &msg)) {
		snprintf(err, errlen, "the target's reply is malformed");
		ret = -EPROTO;
	}
	if (!ret && status) {
		snprintf(err, errlen, "the target refused: %s", msg);
		ret = -status;
	}
	free(msg);
	free(body);
	return ret;
}
