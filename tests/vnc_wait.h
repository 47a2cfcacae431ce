/* Waiting for a server message with libvncclient, shared by tests/check_vnc.c
 * and tests/vnc-client.c. libvncclient reads ahead into its own buffer
 * (up to 8 KiB past what a message needs) and WaitForMessage only select()s
 * on the socket, so a message that arrived in the same read as the one
 * before it - the extended key event's ack right behind a small frame - is
 * never waited for. A message already buffered counts as arrived. */
#ifndef KESTREL_TESTS_VNC_WAIT_H
#define KESTREL_TESTS_VNC_WAIT_H

#include <rfb/rfbclient.h>

static inline int vnc_wait_message(rfbClient *c, unsigned usecs)
{
	return c->buffered ? 1 : WaitForMessage(c, usecs);
}

#endif
