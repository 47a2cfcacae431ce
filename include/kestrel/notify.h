/* systemd's service notification protocol (sd_notify(3)), spoken directly:
 * one datagram to $NOTIFY_SOCKET. No libsystemd: the protocol is a few lines
 * and stable, and the worker stays free of the dependency. */
#ifndef KESTREL_NOTIFY_H
#define KESTREL_NOTIFY_H

#include <stdint.h>

#include "kestrel/util.h"

/* Send "READY=1", "STATUS=...", "WATCHDOG=1", "STOPPING=1" (newline-separated
 * assignments). 0 sent, 1 no $NOTIFY_SOCKET (not under systemd), -errno. */
int notify_send(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* $WATCHDOG_USEC when it is meant for this process ($WATCHDOG_PID unset or
 * ours), else 0. Ping with WATCHDOG=1 at about half this interval. */
uint64_t notify_watchdog_usec(void);

#endif
