/* Small helpers shared by every module: logging, attributes, sizes. */
#ifndef KESTREL_UTIL_H
#define KESTREL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KESTREL_VERSION "0.1.0"

#define WARN_UNUSED	  __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define ARRAY_SIZE(a)	  (sizeof(a) / sizeof((a)[0]))
#define KiB(x)		  ((uint64_t)(x) << 10)
#define MiB(x)		  ((uint64_t)(x) << 20)
#define GiB(x)		  ((uint64_t)(x) << 30)
#define ALIGN_UP(x, a)	  (((x) + (a)-1) & ~((uint64_t)(a)-1))
#define MIN(a, b)	  ((a) < (b) ? (a) : (b))
#define MAX(a, b)	  ((a) > (b) ? (a) : (b))

/* Worker messages go to stderr as one line each, journal friendly:
 * "kestrel: <level>: <text>". --quiet raises the threshold to errors. */
enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERR };
extern enum log_level log_threshold;
void klog(enum log_level lvl, const char *fmt, ...) PRINTF_LIKE(2, 3);
#define kdebug(...) klog(LOG_DEBUG, __VA_ARGS__)
#define kinfo(...)  klog(LOG_INFO, __VA_ARGS__)
#define kwarn(...)  klog(LOG_WARN, __VA_ARGS__)
#define kerr(...)   klog(LOG_ERR, __VA_ARGS__)
/* Whether stderr is the journal (lines then carry a "<N>" priority prefix). */
bool log_journal_stream(void);

/* Parse "512M", "4G", "1048576", "64K", "2T" into bytes. 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *out) WARN_UNUSED;

/* All len bytes at off, read or written: EINTR retried, a short transfer
 * continued (at most 1 GiB at a time), no progress (end of file) -EIO.
 * 0 or -errno. */
int pread_full(int fd, void *buf, size_t len, uint64_t off) WARN_UNUSED;
int pwrite_full(int fd, const void *buf, size_t len, uint64_t off) WARN_UNUSED;

/* Read a whole file into a malloc'd buffer. 0 or -errno. */
int read_file(const char *path, uint8_t **buf, size_t *len) WARN_UNUSED;

#endif
