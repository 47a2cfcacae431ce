/* notify-listen PATH [SECONDS]: a stand-in for systemd's notification socket
 * in tests. Binds an AF_UNIX datagram socket at PATH and prints each message
 * it receives, one assignment per line, as "notify: VAR=VALUE", flushing as
 * it goes. Exits after STOPPING=1, after SECONDS (default 600) or on SIGTERM,
 * removing PATH. */
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t done;

static void on_term(int sig)
{
	(void)sig;
	done = 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	long limit = argc > 2 ? atol(argv[2]) : 600;
	time_t end = time(NULL) + (limit > 0 ? limit : 600);
	bool stopping = false;
	int fd;

	if (argc < 2 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: notify-listen PATH [SECONDS]\n");
		return 2;
	}
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	strcpy(sa.sun_path, argv[1]);
	unlink(argv[1]);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("notify-listen");
		return 1;
	}
	while (!done && !stopping && time(NULL) < end) {
		struct pollfd p = { fd, POLLIN, 0 };
		char buf[4096];
		ssize_t n;

		if (poll(&p, 1, 200) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
			printf("notify: %s\n", line);
			stopping |= strcmp(line, "STOPPING=1") == 0;
		}
		fflush(stdout);
	}
	unlink(argv[1]);
	return 0;
}
