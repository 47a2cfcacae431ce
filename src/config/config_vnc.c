/* --display vnc=[ADDR]:PORT[,password-file=FILE] (JSON "display"): the VNC
 * server's address and its password.
 *
 * ADDR is an IPv4 address (or "localhost"); empty means 127.0.0.1. A VNC
 * server without a password gives whoever reaches the port the guest's
 * console, keyboard and mouse, so an address other than loopback needs
 * password-file=FILE: a file whose first line is the password (VNC
 * authentication uses its first 8 characters; DES challenge-response, no
 * encryption of the session, so keep to loopback plus an SSH tunnel where
 * the network is not trusted). The file is read once at start. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kestrel/config.h"

#define VNC_SPEC_MAX 4096

/* [ADDR]:PORT */
static int vnc_listen(struct config_vnc *v, const char *s, char *err, size_t errlen)
{
	const char *colon = strrchr(s, ':');
	char addr[64], *end;
	unsigned long port;
	struct in_addr in;

	if (!colon || (size_t)(colon - s) >= sizeof(addr))
		return config_errf(err, errlen,
				   "vnc=%s: expected [ADDR]:PORT (e.g. 127.0.0.1:5900)", s);
	memcpy(addr, s, (size_t)(colon - s));
	addr[colon - s] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port < 1 || port > 65535)
		return config_errf(err, errlen, "vnc=%s: the port must be 1 to 65535", s);
	if (!addr[0] || !strcmp(addr, "localhost"))
		snprintf(addr, sizeof(addr), "127.0.0.1");
	if (inet_pton(AF_INET, addr, &in) != 1)
		return config_errf(err, errlen, "vnc=%s: '%s' is not an IPv4 address", s, addr);
	v->addr = in.s_addr;
	v->port = (uint16_t)port;
	return 0;
}

static int vnc_option(struct config_vnc *v, char *kv, const char *basedir, char *err, size_t errlen)
{
	const char *val;

	if (strncmp(kv, "password-file=", 14))
		return config_errf(err, errlen, "'%s': unknown VNC option (password-file=FILE)",
				   kv);
	val = kv + 14;
	if (!*val)
		return config_errf(err, errlen, "password-file=: needs a file");
	free(v->password_file);
	v->password_file = NULL;
	if (basedir && val[0] != '/') {
		if (asprintf(&v->password_file, "%s/%s", basedir, val) < 0)
			v->password_file = NULL;
	} else {
		v->password_file = strdup(val);
	}
	return v->password_file ? 0 : config_errf(err, errlen, "out of memory");
}

int config_vnc_set(struct vm_config *c, const char *spec, const char *basedir, char *err,
		   size_t errlen)
{
	char buf[VNC_SPEC_MAX], *save = NULL, *kv;
	int ret;

	if (strlen(spec) >= sizeof(buf))
		return config_errf(err, errlen, "too long");
	config_vnc_free(c);
	memcpy(buf, spec, strlen(spec) + 1);
	kv = strtok_r(buf, ",", &save);
	ret = vnc_listen(&c->vnc, kv ? kv : "", err, errlen);
	while (!ret && (kv = strtok_r(NULL, ",", &save)))
		ret = vnc_option(&c->vnc, kv, basedir, err, errlen);
	if (!ret)
		c->display = CONFIG_DISPLAY_VNC;
	return ret;
}

static bool vnc_loopback(uint32_t addr)
{
	return (ntohl(addr) >> 24) == 127;
}

/* Checked before anything starts: the password file is there, and a server
 * off loopback has one. VNC needs a picture: --vga std unless said otherwise. */
int config_vnc_validate(struct vm_config *c, char *err, size_t errlen)
{
	const char *pf = c->vnc.password_file;
	char addr[INET_ADDRSTRLEN] = "?";
	struct stat st;

	if (c->display != CONFIG_DISPLAY_VNC)
		return 0;
	inet_ntop(AF_INET, &c->vnc.addr, addr, sizeof(addr));
	if (!pf && !vnc_loopback(c->vnc.addr))
		return config_errf(
			err, errlen,
			"--display vnc=%s:%u: a VNC server off loopback needs "
			"password-file=FILE (without one, whoever reaches the port gets the "
			"guest's console, keyboard and mouse)",
			addr, c->vnc.port);
	if (pf && (stat(pf, &st) < 0 || access(pf, R_OK) < 0))
		return config_errf(err, errlen, "--display: password-file=%s: %s", pf,
				   strerror(errno));
	if (pf && (!S_ISREG(st.st_mode) || st.st_size == 0 || st.st_size > 4096))
		return config_errf(err, errlen,
				   "--display: password-file=%s: not a file of 1 byte "
				   "to 4K",
				   pf);
	if (c->vga == CONFIG_VGA_NONE)
		return config_errf(err, errlen,
				   "--display vnc needs a display: --vga std, not none");
	if (c->vga == CONFIG_VGA_DEFAULT)
		c->vga = CONFIG_VGA_STD;
	return 0;
}

bool config_vnc_same(const struct vm_config *a, const struct vm_config *b)
{
	const char *pa = a->vnc.password_file, *pb = b->vnc.password_file;

	return a->vnc.addr == b->vnc.addr && a->vnc.port == b->vnc.port &&
	       ((!pa && !pb) || (pa && pb && !strcmp(pa, pb)));
}

void config_vnc_free(struct vm_config *c)
{
	free(c->vnc.password_file);
	memset(&c->vnc, 0, sizeof(c->vnc));
}
