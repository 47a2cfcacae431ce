/* What the parts of migrate/ share: the RAM writer and reader (ram.c) and
 * the DISK record (disk_state.c). */
#ifndef KESTREL_MIGRATE_INT_H
#define KESTREL_MIGRATE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "kestrel/state_stream.h"

struct guest_mem;
struct machine;

/* A stream being restored: a saved-state file, or what an incoming
 * migration received (incoming.c), which is the same layout in a memfd. */
struct migrate_in {
	char *path;	/* the file, or the incoming address (messages) */
	int fd;		/* open only while reading: see restore_reopen */
	bool keep_fd;	/* fd stays open (a memfd: no path to reopen) */
	struct stat st; /* the file as it was checked */
	struct stream_header h;
	uint8_t *area; /* the records */
	struct stream_records recs;
	struct stream_ram ram;
	bool disk_children; /* migrate_restore_expect_children */
	int conn;	    /* incoming: the source's connection, else -1 */
	bool ram_in_place;  /* incoming: RAM was received into the VM's own */
	uint64_t switch_ns; /* incoming: when SWITCH came (the debug log's timing) */
};

/* Open a stream already in fd (taken over, closed on error too). */
int migrate_restore_open_fd(int fd, const char *label, struct migrate_in **out, char *err,
			    size_t errlen) WARN_UNUSED;
/* The CONF record's text (malloc'd), or NULL when it is malformed. */
char *migrate_restore_conf_text(struct migrate_in *in);
/* save.c's pieces the live migration sends too. */
char *save_config_json(struct machine *m);
int save_cpuid(struct machine *m, struct state_buf *b) WARN_UNUSED;
int save_records(struct machine *m, struct state_buf *b, char *err, size_t errlen) WARN_UNUSED;

struct ram_save {
	const struct guest_mem *gm;
	struct stream_ram *r; /* filled: bitmap, count, checksums */
	int fd;
	uint64_t ram_off;
	int pagemap;
	void (*progress)(void *opaque, uint64_t done, uint64_t total);
	void *opaque;
};

/* Write RAM's non-zero pages to fd at ram_off (the file already has its
 * final size, so skipped pages are holes). 0 or -errno. */
int ram_save(struct ram_save *rs) WARN_UNUSED;
bool ram_page_is_zero(const uint8_t *p);
/* The VM's RAM is laid out as the stream's: 0, or -EINVAL with err set. */
int ram_layout_check(const struct guest_mem *gm, const struct stream_ram *r, char *err,
		     size_t errlen) WARN_UNUSED;
/* RAM from the file: mapped (lazy) unless eager or the mapping fails, then
 * read with every chunk's checksum checked. 0 or -errno, one line in err. */
int ram_restore(struct guest_mem *gm, int fd, uint64_t ram_off, const struct stream_ram *r,
		bool eager, char *err, size_t errlen) WARN_UNUSED;

/* The DISK record: what each attached disk is (target, path, format, size,
 * VHD unique id, read-only), written at save and compared at restore with
 * the disks the restored machine opened from the saved configuration. */
void disk_state_put(struct machine *m, struct state_buf *b);
/* children: each disk now must be a differencing VHD child of the saved one
 * (a snapshot applied: docs/state.md, "Snapshots") instead of the same. */
int disk_state_check(struct machine *m, const struct stream_record *rec, bool children, char *err,
		     size_t errlen) WARN_UNUSED;

/* ---- the migration connection (mig_sock.c) ---- */
#include <sys/socket.h>
#include <sys/uio.h>

struct mig_hdr;
struct mig_conn {
	int fd;
	const bool *cancel;  /* set by another thread: give up */
	uint64_t timeout_ms; /* silence longer than this fails (0: none) */
	uint64_t sent;	     /* bytes sent so far */
};

/* tcp:ADDR:PORT (numeric, [v6] in brackets) or unix:PATH. */
int mig_addr(const char *uri, struct sockaddr_storage *sa, socklen_t *len, char *err,
	     size_t errlen) WARN_UNUSED;
void mig_tune(int fd);
int mig_sendv(struct mig_conn *c, struct iovec *iov, int n) WARN_UNUSED;
int mig_recv(struct mig_conn *c, void *p, size_t n) WARN_UNUSED;
int mig_send_msg(struct mig_conn *c, uint32_t type, const void *body, size_t len) WARN_UNUSED;
int mig_send_reply(struct mig_conn *c, int status, const char *msg) WARN_UNUSED;
/* The body of a message whose header was h (malloc'd). */
int mig_recv_body(struct mig_conn *c, const struct mig_hdr *h, uint8_t **body) WARN_UNUSED;
/* A REPLY: 0 (ok) or -errno with one line in err (the peer's message). */
int mig_recv_reply(struct mig_conn *c, char *err, size_t errlen) WARN_UNUSED;

#endif
