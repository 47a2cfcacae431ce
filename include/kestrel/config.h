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

#define CONFIG_MAX_CPUS	   64
#define CONFIG_MEM_DEFAULT MiB(512)
#define CONFIG_MEM_MIN	   MiB(16)
#define CONFIG_MEM_MAX	   GiB(1024)
#define CONFIG_MEM_ALIGN   MiB(2) /* --mem is rounded up to this */
#define CONFIG_CMDLINE_MAX 65535  /* bytes, without the NUL */
#define CONFIG_NAME_MAX	   64
#define CONFIG_MAX_DISKS   16 /* --disk: one SCSI controller's targets */

/* One --disk / "disks" element (src/config/config_disk.c). */
enum config_disk_bus { CONFIG_BUS_SCSI, CONFIG_BUS_IDE };
enum config_disk_media { CONFIG_MEDIA_DISK, CONFIG_MEDIA_CDROM };
#define CONFIG_IDE_UNITS 4 /* bus=ide: primary master/slave, secondary master/slave */
struct config_disk {
	struct blk_opts blk; /* blk.path points at path */
	char *path;	     /* JSON: resolved against the file's folder; NULL: an
				   * empty CD-ROM drive (bus=ide,media=cdrom) */
	enum config_disk_bus bus;
	enum config_disk_media media; /* bus=ide; a CD is opened read-only */
	int target;		      /* SCSI target; -1 until config_validate picks one */
	int unit;		      /* IDE unit 0-3 (channel = unit / 2, master = even);
				   * -1 until config_validate picks one */
	uint64_t add_after_ms;	      /* test hooks: hot-add / hot-remove this long after */
	uint64_t remove_after_ms;     /* the guest driver starts the controller; 0: none */
};

/* One --net / "net" element (src/config/config_net.c): a NIC on a TAP, virtio-net
 * or the emulated DEC 21140 (model=tulip). */
#define CONFIG_MAX_NETS 8
enum config_net_model { CONFIG_NET_VIRTIO, CONFIG_NET_TULIP };
struct config_net {
	enum config_net_model model;
	char ifname[NET_IFNAME_MAX + 1];
	uint8_t mac[6]; /* given, or derived from ifname */
	bool mac_set;
	unsigned vlan;	 /* 802.1Q id 1..4094, 0: untagged */
	unsigned queues; /* queue pairs, 1..NET_MAX_QUEUES */
};

/* --vga / --display (src/config/config_display.c). */
enum config_vga { CONFIG_VGA_DEFAULT, CONFIG_VGA_STD, CONFIG_VGA_NONE };
enum config_display { CONFIG_DISPLAY_DEFAULT, CONFIG_DISPLAY_NONE, CONFIG_DISPLAY_VNC };
/* --display vnc=[ADDR]:PORT[,password-file=FILE] (src/config/config_vnc.c). */
struct config_vnc {
	uint32_t addr; /* IPv4, network order */
	uint16_t port;
	char *password_file; /* or NULL: no password (loopback only) */
};
#define CONFIG_VGA_MEM_MIN     MiB(1)
#define CONFIG_VGA_MEM_MAX     MiB(256)
#define CONFIG_VGA_MEM_DEFAULT MiB(16)
#define CONFIG_VGA_ROM_MAX     MiB(16)
#define CONFIG_VGA_ROM_DEFAULT "/usr/share/seabios/vgabios-stdvga.bin"
/* Firmware boot (src/config/config_firmware.c): the boot devices in the
 * order --boot gives them. */
enum config_boot_dev { CONFIG_BOOT_DISK, CONFIG_BOOT_CDROM, CONFIG_BOOT_NET };
#define CONFIG_BOOT_MAX 3
#define CONFIG_FIRMWARE_BIOS \
	"/usr/share/seabios/bios-256k.bin" /* --firmware bios: Debian's SeaBIOS */
#define CONFIG_FIRMWARE_MIN	  KiB(64)
#define CONFIG_FIRMWARE_MAX	  MiB(16)
#define CONFIG_BOOT_MENU_WAIT_MAX 65535 /* ms: fw_cfg etc/boot-menu-wait is 16 bits */
struct config_boot {
	enum config_boot_dev order[CONFIG_BOOT_MAX];
	unsigned n;	       /* 0: the default, disk then cdrom */
	bool menu;	       /* offer the firmware's boot menu (F12) */
	unsigned menu_wait_ms; /* how long it waits for the key; 0: the firmware's default */
	bool set;	       /* --boot given */
};

struct cpu_model;
struct vm_config {
	char *name;
	char *kernel;
	char *initrd;
	char *cmdline;
	uint64_t mem_size; /* bytes */
	unsigned cpus;
	const struct cpu_model *cpu; /* --cpu (kestrel/cpuid.h); NULL: host */
	enum serial_kind serial;
	char *serial_path; /* SERIAL_FILE */
	enum boot_entry boot_entry;
	enum on_reboot on_reboot;
	bool hugepages;
	bool quiet;
	bool stats;
	uint64_t timeout_ms; /* 0: none */
	bool help;	     /* --help/-h seen: print config_usage_run, exit 0 */
	char *control;	     /* --control: socket path, "none", or NULL (default) */
	struct config_disk *disks;
	unsigned ndisks;
	bool scsi_controller; /* the virtio-scsi controller even with no scsi disk */
	bool debug_exit;      /* decode the debug-exit port (tests only) */
	struct config_net *nets;
	unsigned nnets;
	enum config_vga vga; /* DEFAULT: none for a direct kernel boot */
	uint64_t vga_mem;    /* VRAM bytes (0 until validated: the default) */
	char *vga_rom;	     /* option ROM file, "none", or NULL (the default file if there) */
	enum config_display display;
	struct config_vnc vnc; /* CONFIG_DISPLAY_VNC */
	/* Without --kernel the VM boots firmware: the image's path (config_validate
	 * turns "bios" and an unset --firmware into CONFIG_FIRMWARE_BIOS), where
	 * its debug log goes ("stderr", a path, or NULL: nowhere), the boot order. */
	char *firmware;
	char *firmware_log;
	struct config_boot boot;
	enum sandbox_seccomp seccomp; /* --seccomp on|log|off (default on) */
	char *user;		      /* --user: drop to this user once all is open, or NULL */
	bool landlock;	/* --landlock: no file opened after setup but in the disks' folders */
	char *restore;	/* --restore FILE: a saved VM (docs/state.md) */
	char *incoming; /* --incoming ADDR: a live migration (docs/migration.md) */
	uint64_t given; /* bit per option set by a flag or a JSON key */
};

/* Exit codes of the worker. 0: the guest powered off. With --debug-exit, a
 * guest's debug-exit write of V exits with (V << 1) | 1, as QEMU's
 * isa-debug-exit. */
#define EXIT_USAGE    2 /* bad flags/config/files, before anything starts */
#define EXIT_VM_ERROR 3 /* triple fault, KVM internal error, unhandled exit */
/* 4: EXIT_SECCOMP (kestrel/sandbox.h), a thread made a call off its list */
#define EXIT_TIMEOUT  124 /* --timeout reached (as timeout(1)) */

void config_defaults(struct vm_config *c);
void config_free(struct vm_config *c);
/* Parse `kestrel run` arguments (argv[0] is "run"). On error, writes one line
 * to err (what and where) and returns -EINVAL. --config FILE is merged first,
 * flags after it override. The struct may be partly filled on error:
 * config_free it either way. With --help anywhere, only c->help is set. */
int config_parse_run(struct vm_config *c, int argc, char **argv, char *err,
		     size_t errlen) WARN_UNUSED;
int config_load_json(struct vm_config *c, const char *path, char *err, size_t errlen) WARN_UNUSED;
/* JSON text (a saved VM's configuration); label names it in messages.
 * Relative paths stay as they are; the host-side keys (serial, control,
 * timeout, quiet, stats) are refused. */
int config_load_json_text(struct vm_config *c, const char *label, const char *text, size_t len,
			  char *err, size_t errlen) WARN_UNUSED;
/* The configuration as JSON that config_load_json_text reads back (the
 * machine's settings: name, kernel, initrd, cmdline and boot_entry, or
 * firmware and boot; mem, cpus, cpu, on_reboot, hugepages, scsi_controller,
 * debug_exit, vga, disks (SCSI and IDE), net (either model)); paths
 * absolute. malloc'd, NULL when out of memory. src/config/config_save.c. */
char *config_to_json(const struct vm_config *c);
/* --restore: take into saved (the configuration from the file) the
 * host-side options given on the command line; any other option given is
 * an error naming it. */
int config_restore_merge(struct vm_config *saved, const struct vm_config *given, char *err,
			 size_t errlen) WARN_UNUSED;
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
/* Write one message line into err (when errlen > 0); returns -EINVAL. */
int config_errf(char *err, size_t errlen, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* --vga SPEC / --display, their checks (the ROM file) and freeing. */
int config_vga_set(struct vm_config *c, const char *spec, const char *basedir, char *err,
		   size_t errlen) WARN_UNUSED;
int config_display_set(struct vm_config *c, const char *v, const char *basedir, char *err,
		       size_t errlen) WARN_UNUSED;
int config_vnc_set(struct vm_config *c, const char *spec, const char *basedir, char *err,
		   size_t errlen) WARN_UNUSED;
int config_vnc_validate(struct vm_config *c, char *err, size_t errlen) WARN_UNUSED;
bool config_vnc_same(const struct vm_config *a, const struct vm_config *b);
void config_vnc_free(struct vm_config *c);
bool config_vga_same(const struct vm_config *a, const struct vm_config *b);
int config_vga_validate(struct vm_config *c, char *err, size_t errlen) WARN_UNUSED;
void config_display_free(struct vm_config *c);
/* --firmware bios|FILE, --firmware-log stderr|FILE, --boot ORDER[,menu=..]
 * (relative paths against basedir when set), the checks of firmware boot and
 * of what cannot go with it: src/config/config_firmware.c. The setters write
 * a message without the flag's name to err. */
int config_firmware_set(struct vm_config *c, const char *v, const char *basedir, char *err,
			size_t errlen) WARN_UNUSED;
int config_firmware_log_set(struct vm_config *c, const char *v, const char *basedir, char *err,
			    size_t errlen) WARN_UNUSED;
int config_boot_set(struct vm_config *c, const char *v, char *err, size_t errlen) WARN_UNUSED;
int config_firmware_validate(struct vm_config *c, char *err, size_t errlen) WARN_UNUSED;
/* A firmware image file: open, a regular file, a size firmware can have. 0,
 * or -errno with the reason in err (without the path). */
int config_firmware_file_check(const char *path, char *err, size_t errlen) WARN_UNUSED;
/* An output file the worker will create (--serial file:, --firmware-log):
 * what would make creating it fail, as "--FLAG: PATH: why". */
int config_output_file_check(const char *flag, const char *path, char *err,
			     size_t errlen) WARN_UNUSED;

/* true/yes/on/1, false/no/off/0 (any case). 0 or -EINVAL. */
int config_parse_bool(const char *v, bool *out) WARN_UNUSED;
/* "60s", "5m", "1500ms", "2h"; a plain number is seconds. 0 or -EINVAL. */
int config_parse_duration(const char *s, uint64_t *ms) WARN_UNUSED;

#endif
