/* VM configuration: from command-line flags or a JSON file, validated before anything starts. */
#ifndef KESTREL_CONFIG_H
#define KESTREL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "kestrel/block.h"
#include "kestrel/net.h"
#include "kestrel/sandbox.h"
#include "kestrel/util.h"

enum serial_kind { SERIAL_STDIO, SERIAL_FILE, SERIAL_NONE };
/* AUTO: the 64-bit entry when the bzImage has one (XLF_KERNEL_64), else the 32-bit one. */
enum boot_entry { BOOT_ENTRY_AUTO, BOOT_ENTRY_64, BOOT_ENTRY_32 };
enum on_reboot { ON_REBOOT_RESTART, ON_REBOOT_EXIT };

#define CONFIG_MAX_CPUS 64
#define CONFIG_MEM_DEFAULT MiB(512)
#define CONFIG_MEM_MIN MiB(16)
#define CONFIG_MEM_MAX GiB(1024)
#define CONFIG_MEM_ALIGN MiB(2)      /* --mem is rounded up to this */
#define CONFIG_CMDLINE_MAX 65535     /* bytes, without the NUL */
#define CONFIG_NAME_MAX 64
#define CONFIG_MAX_DISKS 16          /* --disk: one SCSI controller's targets */

/* One --disk / "disks" element (src/config/config_disk.c). */
enum config_disk_bus { CONFIG_BUS_SCSI };
struct config_disk {
	struct blk_opts blk;      /* blk.path points at path */
	char *path;               /* JSON: resolved against the file's folder */
	enum config_disk_bus bus;
	int target;               /* SCSI target; -1 until config_validate picks one */
	uint64_t add_after_ms;    /* test hooks: hot-add / hot-remove this long after */
	uint64_t remove_after_ms; /* the guest driver starts the controller; 0: none */
};

/* One --net / "net" element (src/config/config_net.c): a NIC on a TAP, virtio-net
 * or the emulated DEC 21140 (model=tulip). */
#define CONFIG_MAX_NETS 8
enum config_net_model { CONFIG_NET_VIRTIO, CONFIG_NET_TULIP };
struct config_net {
	enum config_net_model model;
	char ifname[NET_IFNAME_MAX + 1];
	uint8_t mac[6];           /* given, or derived from ifname */
	bool mac_set;
	unsigned vlan;            /* 802.1Q id 1..4094, 0: untagged */
	unsigned queues;          /* queue pairs, 1..NET_MAX_QUEUES */
};

struct vm_config {
	char *name;
	char *kernel;
	char *initrd;
	char *cmdline;
	uint64_t mem_size;        /* bytes */
	unsigned cpus;
	enum serial_kind serial;
	char *serial_path;        /* SERIAL_FILE */
	enum boot_entry boot_entry;
	enum on_reboot on_reboot;
	bool hugepages;
	bool quiet;
	bool stats;
	uint64_t timeout_ms;      /* 0: none */
	bool help;                /* --help/-h seen: print config_usage_run, exit 0 */
	char *control;            /* --control: socket path, "none", or NULL (default) */
	struct config_disk *disks;
	unsigned ndisks;
	bool scsi_controller;     /* the virtio-scsi controller even with no scsi disk */
	bool debug_exit;          /* decode the debug-exit port (tests only) */
	struct config_net *nets;
	unsigned nnets;
	enum sandbox_seccomp seccomp; /* --seccomp on|log|off (default on) */
	char *user;               /* --user: drop to this user once all is open, or NULL */
	bool landlock;            /* --landlock: no file opened after setup but in the disks' folders */
};

/* Exit codes of the worker. 0: the guest powered off. With --debug-exit, a
 * guest's debug-exit write of V exits with (V << 1) | 1, as QEMU's
 * isa-debug-exit. */
#define EXIT_USAGE 2        /* bad flags/config/files, before anything starts */
#define EXIT_VM_ERROR 3     /* triple fault, KVM internal error, unhandled exit */
/* 4: EXIT_SECCOMP (kestrel/sandbox.h), a thread made a call off its list */
#define EXIT_TIMEOUT 124    /* --timeout reached (as timeout(1)) */

void config_defaults(struct vm_config *c);
void config_free(struct vm_config *c);
/* Parse `kestrel run` arguments (argv[0] is "run"). On error, writes one line
 * to err (what and where) and returns -EINVAL. --config FILE is merged first,
 * flags after it override. The struct may be partly filled on error:
 * config_free it either way. With --help anywhere, only c->help is set. */
int config_parse_run(struct vm_config *c, int argc, char **argv, char *err, size_t errlen) WARN_UNUSED;
int config_load_json(struct vm_config *c, const char *path, char *err, size_t errlen) WARN_UNUSED;
/* Cross-field and environment checks (files exist and are readable, sizes). */
int config_validate(struct vm_config *c, char *err, size_t errlen) WARN_UNUSED;
void config_usage_run(FILE *f);
/* --disk SPEC (relative paths against basedir when set), the JSON "disks"
 * array, their checks (targets, files) and freeing: src/config/config_disk.c. */
struct json_object;
int config_disk_add(struct vm_config *c, const char *spec, const char *basedir, char *err,
		    size_t errlen) WARN_UNUSED;
int config_disks_json(struct vm_config *c, struct json_object *arr, const char *file,
		      const char *basedir, char *err, size_t errlen) WARN_UNUSED;
int config_disks_validate(struct vm_config *c, char *err, size_t errlen) WARN_UNUSED;
void config_disks_free(struct vm_config *c);
/* --net SPEC, the JSON "net" array, their checks and freeing: src/config/config_net.c. */
int config_net_add(struct vm_config *c, const char *spec, char *err, size_t errlen) WARN_UNUSED;
int config_nets_json(struct vm_config *c, struct json_object *arr, const char *file, char *err,
		     size_t errlen) WARN_UNUSED;
int config_nets_validate(struct vm_config *c, char *err, size_t errlen) WARN_UNUSED;
void config_nets_free(struct vm_config *c);
/* "60s", "5m", "1500ms", "2h"; a plain number is seconds. 0 or -EINVAL. */
int config_parse_duration(const char *s, uint64_t *ms) WARN_UNUSED;

#endif
