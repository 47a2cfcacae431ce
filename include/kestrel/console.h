/* Event thread for host signals and serial input from stdin. */
#ifndef KESTREL_CONSOLE_H
#define KESTREL_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "kestrel/device.h"

struct console {
	struct device *uart; /* NULL: no serial input */
	const struct vm_ctl *ctl;
	pthread_t thread;
	bool running, stdin_open, raw, escape;
	int sig_fd, stop_fd;
	int signal; /* last host signal taken, 0 if none */
	uint8_t pending[64];
	size_t pending_len;
};

void console_block_signals(void);
int console_start(struct console *con, struct device *uart, const struct vm_ctl *ctl) WARN_UNUSED;
void console_stop(struct console *con);
void console_restore_tty(void);

#endif
