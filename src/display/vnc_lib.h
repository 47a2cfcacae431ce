/* libvncserver, loaded when a VM is given a VNC server and not before.
 *
 * Linking libvncserver pulls in GnuTLS, libgcrypt, libjpeg, LZO and a dozen
 * more libraries - about 3 MiB of resident memory in every worker, most of
 * which never shows a screen (--display none is the default). So the worker
 * does not link it: vnc_lib_load() dlopen()s it by its SONAME when
 * --display vnc= is given, before the sandbox is sealed, and resolves the
 * few entry points the server uses into one table.
 *
 * The macros below route libvncserver's own names through that table, so
 * vnc.c and vnc_input.c read as libvncserver's documentation does; only
 * files that include this header (after <rfb/rfb.h>) see them. */
#ifndef KESTREL_VNC_LIB_H
#define KESTREL_VNC_LIB_H

#include <stddef.h>

#include <gcrypt.h>
#include <rfb/rfb.h>

/* Debian 12's libvncserver1 package. */
#define VNC_LIB_SONAME "libvncserver.so.1"

struct vnc_lib {
	__typeof__(rfbGetScreen) *get_screen;
	/* rfb.h's rfbInitServer is a macro for this one (the build with threads). */
	__typeof__(rfbInitServerWithPthreadsAndZRLE) *init_server;
	__typeof__(rfbScreenCleanup) *screen_cleanup;
	__typeof__(rfbNewClient) *new_client;
	__typeof__(rfbCloseClient) *close_client;
	__typeof__(rfbNewFramebuffer) *new_framebuffer;
	__typeof__(rfbMarkRectAsModified) *mark_rect_as_modified;
	__typeof__(rfbProcessEvents) *process_events;
	__typeof__(rfbGetClientIterator) *get_client_iterator;
	__typeof__(rfbClientIteratorNext) *client_iterator_next;
	__typeof__(rfbReleaseClientIterator) *release_client_iterator;
	__typeof__(rfbReadExact) *read_exact;
	__typeof__(rfbWriteExact) *write_exact;
	__typeof__(rfbRegisterProtocolExtension) *register_protocol_extension;
	__typeof__(rfbCheckPasswordByList) *check_password_by_list;
	__typeof__(rfbLog) *log; /* the library's log hooks (variables) */
	__typeof__(rfbErr) *err;
	/* libgcrypt comes with libvncserver (its VNC authentication's DES). */
	__typeof__(gcry_control) *gcrypt_control;
	__typeof__(gcry_check_version) *gcrypt_check_version;
};

extern struct vnc_lib vnc_lib;

/* Load the library once (later calls return at once); 0 or -errno, with one
 * line in err naming the library and what failed. */
int vnc_lib_load(char *err, size_t errlen);

#define rfbGetScreen (*vnc_lib.get_screen)
#undef rfbInitServer
#define rfbInitServer		     (*vnc_lib.init_server)
#define rfbScreenCleanup	     (*vnc_lib.screen_cleanup)
#define rfbNewClient		     (*vnc_lib.new_client)
#define rfbCloseClient		     (*vnc_lib.close_client)
#define rfbNewFramebuffer	     (*vnc_lib.new_framebuffer)
#define rfbMarkRectAsModified	     (*vnc_lib.mark_rect_as_modified)
#define rfbProcessEvents	     (*vnc_lib.process_events)
#define rfbGetClientIterator	     (*vnc_lib.get_client_iterator)
#define rfbClientIteratorNext	     (*vnc_lib.client_iterator_next)
#define rfbReleaseClientIterator     (*vnc_lib.release_client_iterator)
#define rfbReadExact		     (*vnc_lib.read_exact)
#define rfbWriteExact		     (*vnc_lib.write_exact)
#define rfbRegisterProtocolExtension (*vnc_lib.register_protocol_extension)
#define rfbCheckPasswordByList	     (*vnc_lib.check_password_by_list)
#define rfbLog			     (*vnc_lib.log)
#define rfbErr			     (*vnc_lib.err)
#define gcry_control		     (*vnc_lib.gcrypt_control)
#define gcry_check_version	     (*vnc_lib.gcrypt_check_version)

#endif
