/* The VNC server (--display vnc=, src/display/vnc.c): one thread serving any
 * number of RFB clients (up to VNC_MAX_CLIENTS) the picture of the machine's
 * display, and passing their keys and pointer to its PS/2 keyboard and
 * mouse. It lives as long as the worker; each boot's machine is attached to
 * it and detached before it is destroyed, and clients stay connected across
 * guest reboots (they see the last picture in between). */
#ifndef KESTREL_VNC_H
#define KESTREL_VNC_H

#include "kestrel/util.h"

#define VNC_MAX_CLIENTS 8

struct vnc;
struct config_vnc;
struct device;
struct display;

/* Listen on the configured address (before the sandbox is sealed), read the
 * password file, and start the server's thread. 0, or -errno with one line
 * in err naming the flag. */
int vnc_create(struct vnc **out, const struct config_vnc *cfg, const char *name, char *err,
	       size_t errlen) WARN_UNUSED;
/* The machine whose display is shown and whose i8042 takes the input. */
void vnc_attach(struct vnc *v, struct display *d, struct device *i8042);
/* Before that machine goes away: the server lets go of both. */
void vnc_detach(struct vnc *v);
/* The port it listens on (cfg->port, or the one the kernel chose for 0). */
int vnc_port(const struct vnc *v);
/* Stop the thread, disconnect every client. NULL is fine. */
void vnc_destroy(struct vnc *v);

#endif
