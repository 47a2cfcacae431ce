/* dlopen() of libvncserver for the VNC server (why: vnc_lib.h). */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "vnc_lib.h"

struct vnc_lib vnc_lib;

static pthread_mutex_t vnc_lib_lock = PTHREAD_MUTEX_INITIALIZER;
static void *vnc_lib_handle;

/* One entry point, by name, into the slot at offset off of the table. */
static const struct vnc_lib_sym {
	const char *name;
	size_t off;
} vnc_lib_syms[] = {
#define SYM(name, field)                              \
	{                                             \
		name, offsetof(struct vnc_lib, field) \
	}
	SYM("rfbGetScreen", get_screen),
	SYM("rfbInitServerWithPthreadsAndZRLE", init_server),
	SYM("rfbScreenCleanup", screen_cleanup),
	SYM("rfbNewClient", new_client),
	SYM("rfbCloseClient", close_client),
	SYM("rfbNewFramebuffer", new_framebuffer),
	SYM("rfbMarkRectAsModified", mark_rect_as_modified),
	SYM("rfbProcessEvents", process_events),
	SYM("rfbGetClientIterator", get_client_iterator),
	SYM("rfbClientIteratorNext", client_iterator_next),
	SYM("rfbReleaseClientIterator", release_client_iterator),
	SYM("rfbReadExact", read_exact),
	SYM("rfbWriteExact", write_exact),
	SYM("rfbRegisterProtocolExtension", register_protocol_extension),
	SYM("rfbCheckPasswordByList", check_password_by_list),
	SYM("rfbLog", log),
	SYM("rfbErr", err),
	/* dlsym() on the handle searches libvncserver's own dependencies too. */
	SYM("gcry_control", gcrypt_control),
	SYM("gcry_check_version", gcrypt_check_version),
#undef SYM
};

static int vnc_lib_resolve(void *h, char *err, size_t errlen)
{
	struct vnc_lib t;

	for (size_t i = 0; i < sizeof(vnc_lib_syms) / sizeof(vnc_lib_syms[0]); i++) {
		void *p = dlsym(h, vnc_lib_syms[i].name);

		if (!p) {
			snprintf(
				err, errlen,
				"--display: %s has no %s: not the libvncserver kestrel was built for",
				VNC_LIB_SONAME, vnc_lib_syms[i].name);
			return -ENOENT;
		}
		/* Every slot is a pointer; the table's types were checked
		 * against the headers when it was declared. */
		*(void **)((char *)&t + vnc_lib_syms[i].off) = p;
	}
	vnc_lib = t;
	return 0;
}

int vnc_lib_load(char *err, size_t errlen)
{
	int ret = 0;

	pthread_mutex_lock(&vnc_lib_lock);
	if (!vnc_lib_handle) {
		void *h = dlopen(VNC_LIB_SONAME, RTLD_NOW | RTLD_LOCAL);

		if (!h) {
			snprintf(
				err, errlen,
				"--display: cannot load %s (Debian: apt-get install libvncserver1): %s",
				VNC_LIB_SONAME, dlerror());
			ret = -ENOENT;
		} else if ((ret = vnc_lib_resolve(h, err, errlen))) {
			dlclose(h);
		} else {
			vnc_lib_handle = h;
		}
	}
	pthread_mutex_unlock(&vnc_lib_lock);
	return ret;
}
