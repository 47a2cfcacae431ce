/* vgabench: the measurements of scripts/bench/vga.sh that need a clock.
 *
 *   vgabench cpu PID SECONDS         CPU time all of PID's threads used over
 *                                    SECONDS (/proc/PID/task/x/schedstat, ns),
 *                                    as "cpu_ms_per_s=X"
 *   vgabench dump-kestrel SOCK N FILE  N screendumps through kestrel's control
 *                                    socket, one connection; "dump_ms median=X max=Y"
 *   vgabench dump-qemu SOCK N FILE   the same through QEMU's human monitor on
 *                                    a unix socket (-monitor unix:SOCK,server=on,wait=off)
 * Exit 0, or 1 with a message on stderr. */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Nanoseconds on a CPU, summed over the process's threads. */
static double cpu_ns(const char *pid)
{
	char path[300];
	struct dirent *e;
	double sum = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%s/task", pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		unsigned long long ns;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/task/%s/schedstat", pid, e->d_name);
		f = fopen(path, "r");
		if (f && fscanf(f, "%llu", &ns) == 1)
			sum += (double)ns;
		if (f)
			fclose(f);
	}
	closedir(d);
	return sum;
}

static int do_cpu(const char *pid, double secs)
{
	double a = cpu_ns(pid), t0 = now_ms(), b;

	if (a < 0) {
		fprintf(stderr, "vgabench: no process %s\n", pid);
		return 1;
	}
	usleep((useconds_t)(secs * 1e6));
	b = cpu_ns(pid);
	printf("cpu_ms_per_s=%.2f\n", (b - a) / 1e6 / ((now_ms() - t0) / 1e3));
	return 0;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror(path);
		return -1;
	}
	return fd;
}

/* Read until buf ends with end (or holds it, for a line); 0 or -1. */
static int read_until(int fd, const char *end)
{
	char buf[8192];
	size_t n = 0;

	for (;;) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - n - 1);

		if (r <= 0)
			return -1;
		n += (size_t)r;
		buf[n] = '\0';
		if (strstr(buf, end))
			return strstr(buf, "\"error\"") ? -1 : 0;
		if (n > sizeof(buf) / 2) { /* keep the tail */
			memmove(buf, buf + n - 64, 64);
			n = 64;
		}
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int do_dumps(bool qemu, const char *sock, int n, const char *file)
{
	int fd = connect_unix(sock);
	double *t = calloc((size_t)n, sizeof(*t));
	char cmd[600];

	if (fd < 0 || !t || n <= 0)
		return 1;
	if (qemu && read_until(fd, "(qemu) "))
		return 1;
	if (qemu)
		snprintf(cmd, sizeof(cmd), "screendump %s\n", file);
	else
		snprintf(cmd, sizeof(cmd),
			 "{\"id\":1,\"command\":\"screendump\",\"arguments\":"
			 "{\"file\":\"%s\"}}\n",
			 file);
	for (int i = 0; i < n; i++) {
		double t0 = now_ms();

		if (write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd) ||
		    read_until(fd, qemu ? "(qemu) " : "\n")) {
			fprintf(stderr, "vgabench: screendump %d failed\n", i);
			return 1;
		}
		t[i] = now_ms() - t0;
	}
	qsort(t, (size_t)n, sizeof(*t), cmp_double);
	printf("dump_ms median=%.2f max=%.2f\n", t[n / 2], t[n - 1]);
	close(fd);
	free(t);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "cpu"))
		return do_cpu(argv[2], atof(argv[3]));
	if (argc == 5 && !strcmp(argv[1], "dump-kestrel"))
		return do_dumps(false, argv[2], atoi(argv[3]), argv[4]);
	if (argc == 5 && !strcmp(argv[1], "dump-qemu"))
		return do_dumps(true, argv[2], atoi(argv[3]), argv[4]);
	fprintf(stderr, "usage: vgabench cpu PID SECONDS | dump-kestrel SOCK N FILE | "
			"dump-qemu SOCK N FILE\n");
	return 2;
}
