/* netblast IFACE DSTMAC SIZE COUNT: send COUNT Ethernet frames of SIZE bytes
 * (ethertype 0x88b5, local experimental) to DSTMAC out of IFACE as fast as
 * the device takes them: one AF_PACKET socket, bypassing the qdisc. When the
 * device refuses (a TAP whose queue to the VMM is full), back off briefly and
 * send the same frames again, so the rate measured at the guest is the rate
 * the VMM drains the TAP, not how fast we can overflow it. Gives up after
 * 60 s. Prints what it sent, how often it was refused, and how long it took.
 * For scripts/bench/net.sh. Needs CAP_NET_RAW. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static int parse_mac(const char *s, unsigned char *mac)
{
	unsigned v[6];

	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (unsigned char)v[i];
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static unsigned char frame[9000];
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	struct mmsghdr msgs[BATCH];
	struct iovec iov;
	unsigned long size, count, sent = 0, refused = 0;
	int fd, one = 1;
	double t0;

	if (argc != 5 || parse_mac(argv[2], frame) < 0) {
		fprintf(stderr, "usage: netblast IFACE DSTMAC SIZE COUNT\n");
		return 2;
	}
	size = strtoul(argv[3], NULL, 10);
	count = strtoul(argv[4], NULL, 10);
	if (size < 14 || size > sizeof(frame)) {
		fprintf(stderr, "netblast: SIZE from 14 to %zu\n", sizeof(frame));
		return 2;
	}
	memcpy(frame + 6, (unsigned char[]){ 0x02, 0, 0, 0, 0, 0x02 }, 6);
	frame[12] = 0x88;
	frame[13] = 0xb5;
	fd = socket(AF_PACKET, SOCK_RAW, 0);
	sll.sll_ifindex = (int)if_nametoindex(argv[1]);
	if (fd < 0 || !sll.sll_ifindex) {
		fprintf(stderr, "netblast: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	iov = (struct iovec){ frame, size };
	for (int i = 0; i < BATCH; i++)
		msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_name = &sll,
							 .msg_namelen = sizeof(sll),
							 .msg_iov = &iov,
							 .msg_iovlen = 1 } };
	t0 = now();
	while (sent < count) {
		unsigned n = count - sent < BATCH ? (unsigned)(count - sent) : BATCH;
		int r = sendmmsg(fd, msgs, n, 0);

		if (r < 0) {
			/* The device's queue is full: wait for the VMM to drain some. */
			if (errno == ENOBUFS || errno == EAGAIN) {
				refused++;
				if (now() - t0 > 60) {
					fprintf(stderr,
						"netblast: the device stopped taking frames\n");
					break;
				}
				usleep(20);
				continue;
			}
			if (errno == EINTR)
				continue;
			fprintf(stderr, "netblast: sendmmsg: %s\n", strerror(errno));
			return 1;
		}
		sent += (unsigned long)r;
	}
	printf("netblast: sent=%lu backoffs=%lu size=%lu us=%.0f\n", sent, refused, size,
	       (now() - t0) * 1e6);
	close(fd);
	return 0;
}
