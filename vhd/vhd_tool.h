/* Shared by the `kestrel vhd` subcommands (vhd_tool.c, vhd_convert.c). */
#ifndef KESTREL_VHD_TOOL_H
#define KESTREL_VHD_TOOL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "vhd_int.h"

/* Exit codes: 0 fine, 1 bad image or failed operation, 2 usage. */
#define VHD_EXIT_OK    0
#define VHD_EXIT_BAD   1
#define VHD_EXIT_USAGE 2

/* "--name VALUE" / "--name=VALUE" / switches, in any order with operands. */
struct vhd_args {
	int nops;
	const char *ops[4];
	const char *type, *size, *block_size, *parent, *to, *parent_dir;
	bool json, repair, exact_size, shrink, quiet;
};
int vhd_args_parse(int argc, char **argv, const char *allowed, struct vhd_args *a) WARN_UNUSED;

void vhd_tool_err(const char *fmt, ...) PRINTF_LIKE(1, 2);
void vhd_human(uint64_t bytes, char *out, size_t n);
int vhd_parse_block_size(const char *s, uint32_t *out) WARN_UNUSED;

/* A progress bar on stderr, only when stderr is a terminal. */
struct vhd_progress {
	bool on;
	const char *label;
	uint64_t total;
	uint64_t last_ns; /* CLOCK_MONOTONIC of the last redraw */
};
void vhd_progress_start(struct vhd_progress *p, const char *label, uint64_t total, bool quiet);
void vhd_progress_update(struct vhd_progress *p, uint64_t done);
void vhd_progress_end(struct vhd_progress *p);

int vhd_cmd_convert(struct vhd_args *a);
int vhd_cmd_compact(struct vhd_args *a);
int vhd_cmd_merge(struct vhd_args *a);
int vhd_cmd_resize(struct vhd_args *a);

#endif
