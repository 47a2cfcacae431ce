/* A configuration written back as the JSON `kestrel run --config` reads: a
 * saved VM carries its configuration this way (docs/state.md, record CONF),
 * so a restore reads it through the very parser and checks a flag goes
 * through. Only what makes the machine is written; where the worker writes
 * (--serial, --control) and how it runs (--timeout, --quiet, --stats) are
 * the restoring user's, and a saved configuration may not name them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kestrel/config.h"
#include "kestrel/cpuid.h"

/* The absolute path of an existing file, else the path as it is. */
static json_object *config_path_json(const char *p)
{
	char *rp = p ? realpath(p, NULL) : NULL;
	json_object *o = json_object_new_string(rp ? rp : p);

	free(rp);
	return o;
}

/* --disk's spec for d: path (',' doubled), bus and place, every option. An
 * empty CD-ROM drive has no path. */
static json_object *config_disk_json(const struct config_disk *d)
{
	char spec[8192], *rp = d->path ? realpath(d->path, NULL) : NULL;
	const char *p = rp ? rp : d->path;
	size_t n = 0;

	if (p) {
		n += (size_t)snprintf(spec + n, sizeof(spec) - n, "path=");
		for (; *p && n + 3 < sizeof(spec); p++) {
			spec[n++] = *p;
			if (*p == ',')
				spec[n++] = ',';
		}
		spec[n++] = ',';
	}
	spec[n] = '\0';
	free(rp);
	if (d->bus == CONFIG_BUS_IDE)
		n += (size_t)snprintf(spec + n, sizeof(spec) - MIN(n, sizeof(spec)),
				      "bus=ide,unit=%d,media=%s", d->unit,
				      d->media == CONFIG_MEDIA_CDROM ? "cdrom" : "disk");
	else
		n += (size_t)snprintf(spec + n, sizeof(spec) - MIN(n, sizeof(spec)),
				      "bus=scsi,target=%d", d->target);
	if (d->path && n < sizeof(spec))
		n += (size_t)snprintf(spec + n, sizeof(spec) - n, ",format=%s,cache=%s,aio=%s%s",
				      blk_format_name(d->blk.format), blk_cache_name(d->blk.cache),
				      blk_aio_name(d->blk.aio), d->blk.readonly ? ",readonly" : "");
	if (d->path && d->blk.parent_dirs && n < sizeof(spec))
		snprintf(spec + n, sizeof(spec) - n, ",parent-dir=%s", d->blk.parent_dirs);
	return json_object_new_string(spec);
}

static json_object *config_net_json(const struct config_net *c)
{
	char spec[128];
	int n = snprintf(spec, sizeof(spec), "tap=%s,mac=%02x:%02x:%02x:%02x:%02x:%02x,queues=%u",
			 c->ifname, c->mac[0], c->mac[1], c->mac[2], c->mac[3], c->mac[4],
			 c->mac[5], c->queues);

	if (c->vlan && n > 0 && (size_t)n < sizeof(spec))
		n += snprintf(spec + n, sizeof(spec) - (size_t)n, ",vlan=%u", c->vlan);
	if (c->model == CONFIG_NET_TULIP && n > 0 && (size_t)n < sizeof(spec))
		snprintf(spec + n, sizeof(spec) - (size_t)n, ",model=tulip");
	return json_object_new_string(spec);
}

/* --vga as validated: std with its VRAM size and the option ROM it was
 * given (rom=none when it ran without one), or none. */
static json_object *config_vga_json(const struct vm_config *c)
{
	char spec[PATH_MAX + 64], *rp;
	const char *rom = c->vga_rom;

	if (c->vga != CONFIG_VGA_STD)
		return json_object_new_string("none");
	if (!rom) /* the default file, if it was there */
		rom = access(CONFIG_VGA_ROM_DEFAULT, R_OK) == 0 ? CONFIG_VGA_ROM_DEFAULT : "none";
	rp = strcmp(rom, "none") ? realpath(rom, NULL) : NULL;
	snprintf(spec, sizeof(spec), "std,mem=%lluM,rom=%s", (unsigned long long)(c->vga_mem >> 20),
		 rp ? rp : rom);
	free(rp);
	return json_object_new_string(spec);
}

/* --boot as given: the devices in order, then the menu options. */
static json_object *config_boot_json(const struct config_boot *b)
{
	static const char *const names[] = {
		[CONFIG_BOOT_DISK] = "disk", [CONFIG_BOOT_CDROM] = "cdrom", [CONFIG_BOOT_NET] = "net"
	};
	char spec[128] = "";
	size_t n = 0;

	for (unsigned i = 0; i < b->n && i < CONFIG_BOOT_MAX; i++)
		n += (size_t)snprintf(spec + n, sizeof(spec) - n, "%s%s", n ? "," : "",
				      names[b->order[i]]);
	if (!n)
		n += (size_t)snprintf(spec + n, sizeof(spec) - n, "disk,cdrom");
	snprintf(spec + n, sizeof(spec) - n, ",menu=%s,menu-wait=%ums", b->menu ? "on" : "off",
		 b->menu_wait_ms);
	return json_object_new_string(spec);
}

char *config_to_json(const struct vm_config *c)
{
	json_object *o = json_object_new_object(), *disks = json_object_new_array(),
		    *nets = json_object_new_array();
	const char *s;
	char *out;

	json_object_object_add(o, "name", json_object_new_string(c->name ? c->name : ""));
	if (c->kernel) {
		json_object_object_add(o, "kernel", config_path_json(c->kernel));
		if (c->initrd)
			json_object_object_add(o, "initrd", config_path_json(c->initrd));
		json_object_object_add(o, "cmdline",
				       json_object_new_string(c->cmdline ? c->cmdline : ""));
		s = c->boot_entry == BOOT_ENTRY_64   ? "64"
		    : c->boot_entry == BOOT_ENTRY_32 ? "32"
						     : "auto";
		json_object_object_add(o, "boot_entry", json_object_new_string(s));
	} else {
		/* Loaded again at restore: the ROM is not in the saved state
		 * (what runs is the copy the firmware shadowed into RAM). */
		json_object_object_add(o, "firmware", config_path_json(c->firmware));
		if (c->boot.set || c->boot.menu || c->boot.menu_wait_ms)
			json_object_object_add(o, "boot", config_boot_json(&c->boot));
	}
	json_object_object_add(o, "mem", json_object_new_int64((int64_t)(c->mem_size >> 20)));
	json_object_object_add(o, "cpus", json_object_new_int((int)c->cpus));
	/* The target of a restore or migration builds the same CPUID from it. */
	json_object_object_add(o, "cpu", json_object_new_string(cpu_model_name(c->cpu)));
	json_object_object_add(o, "on_reboot",
			       json_object_new_string(c->on_reboot == ON_REBOOT_EXIT ? "exit"
										     : "restart"));
	json_object_object_add(o, "hugepages", json_object_new_boolean(c->hugepages));
	json_object_object_add(o, "scsi_controller", json_object_new_boolean(c->scsi_controller));
	json_object_object_add(o, "debug_exit", json_object_new_boolean(c->debug_exit));
	for (unsigned i = 0; i < c->ndisks; i++)
		json_object_array_add(disks, config_disk_json(&c->disks[i]));
	for (unsigned i = 0; i < c->nnets; i++)
		json_object_array_add(nets, config_net_json(&c->nets[i]));
	json_object_object_add(o, "vga", config_vga_json(c));
	json_object_object_add(o, "disks", disks);
	json_object_object_add(o, "net", nets);
	s = json_object_to_json_string_ext(o,
					   JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	out = s ? strdup(s) : NULL;
	json_object_put(o);
	return out;
}
