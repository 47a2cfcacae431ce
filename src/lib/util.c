/* Shared helpers: one-line logging, size strings, whole-file reads. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/util.h"

enum log_level log_threshold = LOG_INFO;

/* KESTREL_DEBUG=1 in the environment lowers the threshold before main() runs,
 * so main can still raise it again for --quiet. */
__attribute__((constructor)) static void log_init_from_env(void)
{
	const char *e = getenv("KESTREL_DEBUG");

	if (e && *e && strcmp(e, "0") != 0)
		log_threshold = LOG_DEBUG;
}

/* Under systemd, stderr is a journal stream (JOURNAL_STREAM names its device
 * and inode): a "<N>" syslog priority at the start of a line sets the
 * journal's PRIORITY= (sd-daemon(3)), so `journalctl -p err` finds errors. */
static bool log_to_journal;

__attribute__((constructor)) static void log_detect_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0)
		log_to_journal = (unsigned long long)st.st_dev == dev &&
				 (unsigned long long)st.st_ino == ino;
}

bool log_journal_stream(void)
{
	return log_to_journal;
}

static const char *const log_journal_prio[] = {
	[LOG_DEBUG] = "<7>",
	[LOG_INFO] = "<6>",
	[LOG_WARN] = "<4>",
	[LOG_ERR] = "<3>",
};

static const char *const log_level_names[] = {
	[LOG_DEBUG] = "debug",
	[LOG_INFO] = "info",
	[LOG_WARN] = "warning",
	[LOG_ERR] = "error",
};

/* A line stays below PIPE_BUF so that one write() to a pipe is atomic and
 * lines from different threads never interleave. */
#define LOG_LINE_MAX 1024

/* Messages may carry guest- or file-controlled text: keep them on one line and
 * free of terminal escapes. UTF-8 bytes (>= 0x80) pass through. */
static void log_sanitize(char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			s[i] = '?';
	}
}

static void log_write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

void klog(enum log_level lvl, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	int saved_errno = errno;
	size_t head, len;
	va_list ap;
	int n;

	if (lvl < log_threshold || lvl > LOG_ERR)
		return;
	n = snprintf(line, sizeof(line),
		     "%skestrel: %s: ", log_to_journal ? log_journal_prio[lvl] : "",
		     log_level_names[lvl]);
	head = (size_t)n;
	va_start(ap, fmt);
	n = vsnprintf(line + head, sizeof(line) - head, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	len = head + (size_t)n;
	if (len > sizeof(line) - 2) {
		/* Truncated: mark it, leaving room for the newline. */
		len = sizeof(line) - 2;
		memcpy(line + len - 3, "...", 3);
	}
	while (len > head && line[len - 1] == '\n')
		len--;
	log_sanitize(line + head, len - head);
	line[len++] = '\n';
	log_write_all(line, len);
	errno = saved_errno;
}

/* Binary multiplier for a size suffix: "", "B", "K", "KB", "KiB" ... "TiB",
 * case-insensitive. 0 if the suffix is not one of these. */
static uint64_t size_multiplier(const char *sfx)
{
	static const char units[] = "KMGT";
	const char *u;
	uint64_t mult = 1;
	char c;

	if (*sfx == '\0' || strcasecmp(sfx, "b") == 0)
		return 1;
	c = (char)toupper((unsigned char)sfx[0]);
	u = strchr(units, c);
	if (!u)
		return 0;
	if (sfx[1] != '\0' && strcasecmp(sfx + 1, "b") != 0 && strcasecmp(sfx + 1, "ib") != 0)
		return 0;
	for (const char *p = units; p <= u; p++)
		mult <<= 10;
	return mult;
}

int parse_size(const char *s, uint64_t *out)
{
	uint64_t val = 0, mult;
	const char *p = s;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (val > (UINT64_MAX - d) / 10)
			return -EINVAL;
		val = val * 10 + d;
	}
	mult = size_multiplier(p);
	if (mult == 0 || val > UINT64_MAX / mult)
		return -EINVAL;
	*out = val * mult;
	return 0;
}

#define READ_FILE_MAX GiB(1)

/* At the cap, one more byte tells "exactly at the limit" from "too big". */
static int pio_full(int fd, uint8_t *p, size_t len, uint64_t off, bool write)
{
	while (len > 0) {
		size_t step = MIN(len, (size_t)1 << 30);
		ssize_t n = write ? pwrite(fd, p, step, (off_t)off)
				  : pread(fd, p, step, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	return pio_full(fd, buf, len, off, false);
}

/* pio_full only reads p when it writes. */
int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	return pio_full(fd, (uint8_t *)buf, len, off, true);
}

static int read_fd_past_cap(int fd)
{
	char probe;
	ssize_t n;

	do
		n = read(fd, &probe, 1);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == 0 ? 0 : -EFBIG;
}

static int read_fd_grow(uint8_t **p, size_t *cap)
{
	size_t ncap = MIN(MAX(*cap * 2, (size_t)4096), (size_t)READ_FILE_MAX + 1);
	uint8_t *np = realloc(*p, ncap);

	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

/* Reads until EOF rather than trusting st_size: /proc files report 0 and a
 * file may grow while we read it. */
static int read_fd_all(int fd, size_t hint, uint8_t **buf, size_t *len)
{
	size_t cap = MIN(hint, READ_FILE_MAX) + 1, used = 0;
	uint8_t *p = malloc(cap);
	int ret = 0;
	ssize_t n;

	if (!p)
		return -ENOMEM;
	for (;;) {
		if (used + 1 == cap) {
			if (used >= READ_FILE_MAX) {
				ret = read_fd_past_cap(fd);
				break;
			}
			ret = read_fd_grow(&p, &cap);
			if (ret)
				break;
		}
		n = read(fd, p + used, cap - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : 0;
			break;
		}
		used += (size_t)n;
	}
	if (ret) {
		free(p);
		return ret;
	}
	p[used] = '\0';
	*buf = p;
	*len = used;
	return 0;
}

/* The buffer is NUL-terminated after len bytes, for text parsers. */
int read_file(const char *path, uint8_t **buf, size_t *len)
{
	struct stat st;
	int fd, ret;

	/* O_NONBLOCK so a FIFO cannot hang us before fstat rejects it. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		ret = -EISDIR;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > READ_FILE_MAX) {
		ret = -EFBIG;
		goto out;
	}
	ret = read_fd_all(fd, (size_t)st.st_size, buf, len);
out:
	close(fd);
	return ret;
}
