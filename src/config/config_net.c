/* --net (repeatable) and the JSON "net" array: one NIC each, on a TAP
 * interface:
 *
 *   tap=IFNAME[,model=virtio|tulip][,mac=52:54:00:xx:xx:xx][,vlan=ID][,queues=N]
 *
 * model: virtio-net (default) or the emulated DEC 21140 "Tulip", which has
 * one queue.
 * mac: a unicast address (default: 52:54:00 followed by three bytes hashed
 * from IFNAME, so a NIC keeps its address across runs). vlan: 802.1Q id
 * 1-4094; the NIC is then an access port of that VLAN. queues: queue pairs
 * (1-8; more than one needs a multi-queue TAP). In JSON, each element is
 * either such a string or an object with the same keys ("vlan" and "queues"
 * may be integers). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kestrel/config.h"

#define NET_SPEC_MAX 256

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* "52:54:00:12:34:56" (or with '-'): six hex pairs, unicast, not zero. */
static int net_mac(const char *v, uint8_t *mac, char *err, size_t errlen)
{
	unsigned nz = 0;

	if (strlen(v) != 17)
		goto bad;
	for (unsigned i = 0; i < 6; i++) {
		int hi = hexval(v[3 * i]), lo = hexval(v[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && v[3 * i + 2] != ':' && v[3 * i + 2] != '-'))
			goto bad;
		mac[i] = (uint8_t)(hi << 4 | lo);
		nz |= mac[i];
	}
	if (mac[0] & 1)
		return config_errf(err, errlen,
				   "mac=%s: a multicast address (the first byte must be "
				   "even)",
				   v);
	if (!nz)
		return config_errf(err, errlen, "mac=%s: the all-zero address", v);
	return 0;
bad:
	return config_errf(err, errlen, "mac=%s: not a MAC address (like 52:54:00:12:34:56)", v);
}

static int net_uint(const char *key, const char *v, unsigned lo, unsigned hi, unsigned *out,
		    char *err, size_t errlen)
{
	char *end;
	unsigned long n;

	if (!*v || strspn(v, "0123456789") != strlen(v))
		goto bad;
	n = strtoul(v, &end, 10);
	if (*end || n < lo || n > hi)
		goto bad;
	*out = (unsigned)n;
	return 0;
bad:
	return config_errf(err, errlen, "%s=%s: not a number from %u to %u", key, v, lo, hi);
}

static int net_ifname(const char *v, char *out, char *err, size_t errlen)
{
	size_t n = strlen(v);

	if (n == 0 || n > NET_IFNAME_MAX || !strcmp(v, ".") || !strcmp(v, "..") ||
	    strpbrk(v, "/% \t\n:,="))
		return config_errf(err, errlen,
				   "tap=%s: not an interface name (1 to %d characters, no "
				   "'/', '%%', ':' or spaces)",
				   v, NET_IFNAME_MAX);
	memcpy(out, v, n + 1);
	return 0;
}

static int net_model(const char *v, enum config_net_model *m, char *err, size_t errlen)
{
	if (!strcmp(v, "virtio")) {
		*m = CONFIG_NET_VIRTIO;
		return 0;
	}
	if (!strcmp(v, "tulip")) {
		*m = CONFIG_NET_TULIP;
		return 0;
	}
	return config_errf(err, errlen, "model=%s: not a NIC model (virtio, tulip)", v);
}

/* 52:54:00 (QEMU's locally administered prefix) + FNV-1a of the name. */
static void net_default_mac(const char *ifname, uint8_t *mac)
{
	uint32_t h = 2166136261u;

	for (const char *p = ifname; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

/* One key=value of a spec into n; seen: keys already given. */
static int net_key(struct config_net *n, const char *k, const char *v, unsigned *seen, char *err,
		   size_t errlen)
{
	static const char *const keys[] = { "tap", "mac", "vlan", "queues", "model" };
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(keys); i++)
		if (!strcmp(k, keys[i]))
			break;
	if (i == ARRAY_SIZE(keys))
		return config_errf(err, errlen,
				   "unknown option \"%s\" (tap, model, mac, vlan, queues)", k);
	if (*seen & (1u << i))
		return config_errf(err, errlen, "%s given twice", k);
	*seen |= 1u << i;
	switch (i) {
	case 0: return net_ifname(v, n->ifname, err, errlen);
	case 1: n->mac_set = true; return net_mac(v, n->mac, err, errlen);
	case 2: return net_uint("vlan", v, 1, NET_VLAN_ID_MAX, &n->vlan, err, errlen);
	case 3: return net_uint("queues", v, 1, NET_MAX_QUEUES, &n->queues, err, errlen);
	default: return net_model(v, &n->model, err, errlen);
	}
}

static int net_parse(const char *spec, struct config_net *n, char *err, size_t errlen)
{
	char buf[NET_SPEC_MAX], *save = NULL, *tok;
	unsigned seen = 0;
	int ret;

	if (strlen(spec) >= sizeof(buf))
		return config_errf(err, errlen, "too long");
	snprintf(buf, sizeof(buf), "%s", spec);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (!eq)
			return config_errf(err, errlen, "\"%s\": expected key=value (tap=IFNAME)",
					   tok);
		*eq = '\0';
		ret = net_key(n, tok, eq + 1, &seen, err, errlen);
		if (ret)
			return ret;
	}
	if (!(seen & 1))
		return config_errf(err, errlen, "tap=IFNAME is required");
	if (n->model == CONFIG_NET_TULIP && n->queues > 1)
		return config_errf(err, errlen, "queues=%u: model=tulip has one queue", n->queues);
	if (!n->mac_set)
		net_default_mac(n->ifname, n->mac);
	return 0;
}

int config_net_add(struct vm_config *c, const char *spec, char *err, size_t errlen)
{
	struct config_net n = { .queues = 1 }, *arr;
	int ret;

	if (c->nnets >= CONFIG_MAX_NETS)
		return config_errf(err, errlen, "at most %d NICs", CONFIG_MAX_NETS);
	ret = net_parse(spec, &n, err, errlen);
	if (ret)
		return ret;
	arr = realloc(c->nets, (c->nnets + 1) * sizeof(*arr));
	if (!arr)
		return config_errf(err, errlen, "out of memory");
	c->nets = arr;
	c->nets[c->nnets++] = n;
	return 0;
}

/* ---- JSON ---- */

/* {"tap": "tap0", "vlan": 5} -> "tap=tap0,vlan=5" */
static int json_net_spec(json_object *obj, char *spec, size_t len, char *err, size_t errlen)
{
	size_t n = 0;

	spec[0] = '\0';
	json_object_object_foreach(obj, k, v)
	{
		char val[64];
		int w;

		if (json_object_is_type(v, json_type_string))
			snprintf(val, sizeof(val), "%s", json_object_get_string(v));
		else if (json_object_is_type(v, json_type_int))
			snprintf(val, sizeof(val), "%lld", (long long)json_object_get_int64(v));
		else
			return config_errf(err, errlen, "\"%s\": expected a string or an integer",
					   k);
		if (strpbrk(k, ",=") || strchr(val, ','))
			return config_errf(err, errlen, "\"%s\": ',' and '=' are not allowed", k);
		w = snprintf(spec + n, len - n, "%s%s=%s", n ? "," : "", k, val);
		if (w < 0 || (size_t)w >= len - n)
			return config_errf(err, errlen, "too long");
		n += (size_t)w;
	}
	return 0;
}

int config_nets_json(struct vm_config *c, struct json_object *arr, const char *file, char *err,
		     size_t errlen)
{
	char msg[256], spec[NET_SPEC_MAX];
	size_t len;
	int ret = 0;

	if (!json_object_is_type(arr, json_type_array))
		return config_errf(err, errlen, "%s: \"net\": expected an array of NICs", file);
	len = json_object_array_length(arr);
	for (size_t i = 0; i < len && !ret; i++) {
		json_object *d = json_object_array_get_idx(arr, i);

		msg[0] = '\0';
		if (json_object_is_type(d, json_type_string))
			ret = config_net_add(c, json_object_get_string(d), msg, sizeof(msg));
		else if (json_object_is_type(d, json_type_object))
			ret = json_net_spec(d, spec, sizeof(spec), msg, sizeof(msg))
				      ?: config_net_add(c, spec, msg, sizeof(msg));
		else
			ret = config_errf(msg, sizeof(msg), "expected an object or a string");
		if (ret)
			config_errf(err, errlen, "%s: \"net\"[%zu]: %s", file, i, msg);
	}
	return ret;
}

/* ---- validation ---- */

int config_nets_validate(struct vm_config *c, char *err, size_t errlen)
{
	for (unsigned i = 0; i < c->nnets; i++) {
		const struct config_net *n = &c->nets[i];

		for (unsigned j = 0; j < i; j++) {
			if (!strcmp(c->nets[j].ifname, n->ifname))
				return config_errf(err, errlen,
						   "--net tap=%s: the same interface given "
						   "twice",
						   n->ifname);
			if (!memcmp(c->nets[j].mac, n->mac, sizeof(n->mac)))
				return config_errf(err, errlen,
						   "--net tap=%s: the same MAC address as "
						   "tap=%s (set mac=)",
						   n->ifname, c->nets[j].ifname);
		}
	}
	return 0;
}

void config_nets_free(struct vm_config *c)
{
	free(c->nets);
	c->nets = NULL;
	c->nnets = 0;
}
