/* `kestrel run` configuration: flags and a JSON file merged into one struct
 * vm_config. Every option has one setter, shared by the flag and the JSON key,
 * so both spell values and report errors the same way. See docs/cli.md. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kestrel/json_text.h"
#include "kestrel/config.h"
#include "kestrel/cpuid.h"

#define CONFIG_JSON_MAX	   MiB(1)
/* Address space the worker needs besides guest RAM: libraries, heap, device
 * buffers, plus one default-size thread stack per vCPU. An estimate for the
 * RLIMIT_AS check, generous on purpose. */
#define CONFIG_AS_HEADROOM MiB(256)
#define CONFIG_AS_PER_CPU  MiB(8)

/* Where a value came from: a flag ("--mem") or a JSON key ("vm.json: "mem""). */
struct opt_src {
	const char *flag;    /* option name without dashes */
	const char *file;    /* JSON file, or NULL for a flag */
	const char *basedir; /* relative paths are resolved against this, if set */
	char *err;
	size_t errlen;
};

enum opt_id {
	OPT_CONFIG,
	OPT_KERNEL,
	OPT_INITRD,
	OPT_CMDLINE,
	OPT_MEM,
	OPT_CPUS,
	OPT_CPU,
	OPT_SERIAL,
	OPT_NAME,
	OPT_BOOT_ENTRY,
	OPT_ON_REBOOT,
	OPT_HUGEPAGES,
	OPT_TIMEOUT,
	OPT_QUIET,
	OPT_STATS,
	OPT_DISK,
	OPT_SCSI_CONTROLLER,
	OPT_NET,
	OPT_VGA,
	OPT_DISPLAY,
	OPT_FIRMWARE,
	OPT_FIRMWARE_LOG,
	OPT_BOOT,
	OPT_CONTROL,
	OPT_SECCOMP,
	OPT_USER,
	OPT_LANDLOCK,
	OPT_DEBUG_EXIT,
	OPT_RESTORE,
	OPT_INCOMING,
	OPT_HELP,
	OPT_NR
};
/* struct vm_config's given has a bit per option. */
_Static_assert(OPT_NR <= 64, "more options than bits in vm_config.given");

/* JSON types a key accepts; an integer or a boolean becomes the same text a
 * flag would carry ("1024", "true") and goes through the same setter. */
#define JT_STRING 1u
#define JT_INT	  2u
#define JT_BOOL	  4u

struct opt {
	const char *flag; /* without dashes; the JSON key is this with '-' -> '_' */
	const char *key;  /* NULL: flag only */
	unsigned json_types;
	bool has_arg; /* false: a switch, optionally --x=true|false */
	int (*set)(struct vm_config *c, const char *v, const struct opt_src *src);
	const char *metavar;
	const char *help;
};

PRINTF_LIKE(2, 3) static int opt_err(const struct opt_src *src, const char *fmt, ...)
{
	size_t n = 0;
	va_list ap;
	int w;

	if (src->errlen == 0)
		return -EINVAL;
	if (src->file)
		w = snprintf(src->err, src->errlen, "%s: \"%s\": ", src->file, src->flag);
	else
		w = snprintf(src->err, src->errlen, "--%s: ", src->flag);
	if (w > 0)
		n = MIN((size_t)w, src->errlen - 1);
	va_start(ap, fmt);
	vsnprintf(src->err + n, src->errlen - n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* One message line into err; -EINVAL (kestrel/config.h: config_errf). */
#define plain_err config_errf
int config_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen == 0)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* "512M", "1536M", "1T" when exact, else bytes: for messages. */
static const char *fmt_size(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int u = -1;

	while (u < 3 && v != 0 && (v & 1023) == 0) {
		v >>= 10;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%llu", (unsigned long long)v);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)v, units[u]);
	return buf;
}

static bool all_digits(const char *s)
{
	return *s != '\0' && s[strspn(s, "0123456789")] == '\0';
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!all_digits(s))
		return -EINVAL;
	for (; *s; s++) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > max)
			return -ERANGE;
	}
	*out = v;
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

int config_parse_bool(const char *v, bool *out)
{
	return parse_bool(v, out);
}

int config_parse_duration(const char *s, uint64_t *ms)
{
	static const struct {
		const char *sfx;
		uint64_t ms;
	} units[] = {
		{ "", 1000 },	{ "s", 1000 },	  { "ms", 1 },
		{ "m", 60000 }, { "min", 60000 }, { "h", 3600000 },
	};
	size_t nd;
	uint64_t v = 0;

	if (!s)
		return -EINVAL;
	nd = strspn(s, "0123456789");
	if (nd == 0)
		return -EINVAL;
	for (size_t i = 0; i < nd; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcasecmp(s + nd, units[i].sfx) != 0)
			continue;
		if (v > UINT64_MAX / units[i].ms)
			return -EINVAL;
		*ms = v * units[i].ms;
		return 0;
	}
	return -EINVAL;
}

static int set_string(char **field, const char *v, const struct opt_src *src)
{
	char *s = strdup(v);

	if (!s) {
		opt_err(src, "out of memory");
		return -ENOMEM;
	}
	free(*field);
	*field = s;
	return 0;
}

/* Paths from a JSON file are relative to the file's directory, so a vm.json
 * next to its kernel works from any working directory. */
static int set_path(char **field, const char *v, const struct opt_src *src)
{
	char *s;

	if (*v == '\0')
		return opt_err(src, "empty path");
	if (!src->basedir || v[0] == '/')
		return set_string(field, v, src);
	if (asprintf(&s, "%s/%s", src->basedir, v) < 0) {
		opt_err(src, "out of memory");
		return -ENOMEM;
	}
	free(*field);
	*field = s;
	return 0;
}

static int opt_kernel(struct vm_config *c, const char *v, const struct opt_src *src)
{
	return set_path(&c->kernel, v, src);
}

static int opt_initrd(struct vm_config *c, const char *v, const struct opt_src *src)
{
	return set_path(&c->initrd, v, src);
}

static int cmdline_check(const char *v, const struct opt_src *src)
{
	size_t len = strlen(v);

	if (len > CONFIG_CMDLINE_MAX)
		return opt_err(src, "%zu bytes is longer than the maximum of %u", len,
			       CONFIG_CMDLINE_MAX);
	return 0;
}

static int opt_cmdline(struct vm_config *c, const char *v, const struct opt_src *src)
{
	return cmdline_check(v, src) ?: set_string(&c->cmdline, v, src);
}

static int mem_range_check(uint64_t mem, const char *shown, const struct opt_src *src)
{
	char lim[32];

	if (mem < CONFIG_MEM_MIN)
		return opt_err(src, "%s is below the minimum of %s", shown,
			       fmt_size(CONFIG_MEM_MIN, lim, sizeof(lim)));
	if (mem > CONFIG_MEM_MAX)
		return opt_err(src, "%s is above the maximum of %s", shown,
			       fmt_size(CONFIG_MEM_MAX, lim, sizeof(lim)));
	return 0;
}

/* A well-formed size that parse_size refused can only have overflowed. */
static bool size_overflows(const char *v)
{
	size_t nd = strspn(v, "0123456789");
	char one[8];
	uint64_t x;

	if (nd == 0 || strlen(v + nd) >= sizeof(one) - 1)
		return false;
	snprintf(one, sizeof(one), "1%s", v + nd);
	return parse_size(one, &x) == 0;
}

/* A plain number is MiB, as QEMU's -m; with a suffix it is binary units. */
static int opt_mem(struct vm_config *c, const char *v, const struct opt_src *src)
{
	uint64_t mem;
	int ret;

	if (all_digits(v)) {
		if (parse_uint(v, CONFIG_MEM_MAX >> 20, &mem) < 0)
			return mem_range_check(UINT64_MAX, v, src);
		mem <<= 20;
	} else if (parse_size(v, &mem) < 0) {
		if (size_overflows(v))
			return mem_range_check(UINT64_MAX, v, src);
		if (strchr(v, '.'))
			return opt_err(src, "'%s' is not a size (whole numbers only, e.g. 1536M)",
				       v);
		return opt_err(src, "'%s' is not a size (use e.g. 512M or 4G)", v);
	}
	ret = mem_range_check(mem, v, src);
	if (ret)
		return ret;
	/* 2 MiB multiples keep huge pages and the memory map simple. */
	c->mem_size = ALIGN_UP(mem, CONFIG_MEM_ALIGN);
	return 0;
}

/* --cpu host|compat|x86-64-v1..v4 (docs/cpu.md); whether this host can
 * offer the model is found when the VM is made (cpu_model_apply). */
static int opt_cpu(struct vm_config *c, const char *v, const struct opt_src *src)
{
	const struct cpu_model *m = cpu_model_find(v);

	if (!m)
		return opt_err(src,
			       "'%s' is not a CPU model (host, compat, x86-64-v1, x86-64-v2, "
			       "x86-64-v3, x86-64-v4)",
			       v);
	c->cpu = m;
	return 0;
}

static int opt_cpus(struct vm_config *c, const char *v, const struct opt_src *src)
{
	uint64_t n;
	int ret = parse_uint(v, CONFIG_MAX_CPUS, &n);

	if (ret == -EINVAL)
		return opt_err(src, "'%s' is not a number (1 to %d)", v, CONFIG_MAX_CPUS);
	if (ret < 0 || n < 1)
		return opt_err(src, "%s is out of range (1 to %d)", v, CONFIG_MAX_CPUS);
	c->cpus = (unsigned)n;
	return 0;
}

static int opt_serial(struct vm_config *c, const char *v, const struct opt_src *src)
{
	int ret;

	if (strcmp(v, "stdio") == 0 || strcmp(v, "none") == 0) {
		c->serial = v[0] == 's' ? SERIAL_STDIO : SERIAL_NONE;
		free(c->serial_path);
		c->serial_path = NULL;
		return 0;
	}
	if (strncmp(v, "file:", 5) != 0)
		return opt_err(src, "'%s' is not a serial mode (use stdio, none or file:PATH)", v);
	ret = set_path(&c->serial_path, v + 5, src);
	if (ret == 0)
		c->serial = SERIAL_FILE;
	return ret;
}

/* Names end up in socket and file names: no '/', no leading '.' or '-'. */
static bool name_ok(const char *v)
{
	static const char ok[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
	size_t len = strlen(v);

	return len >= 1 && len <= CONFIG_NAME_MAX && strspn(v, ok) == len && v[0] != '.' &&
	       v[0] != '-';
}

static int opt_name(struct vm_config *c, const char *v, const struct opt_src *src)
{
	if (!name_ok(v))
		return opt_err(src,
			       "'%s' is not a valid name (1 to %d of A-Z a-z 0-9 _ . -, "
			       "not starting with . or -)",
			       v, CONFIG_NAME_MAX);
	return set_string(&c->name, v, src);
}

static int opt_boot_entry(struct vm_config *c, const char *v, const struct opt_src *src)
{
	if (strcmp(v, "auto") == 0)
		c->boot_entry = BOOT_ENTRY_AUTO;
	else if (strcmp(v, "64") == 0)
		c->boot_entry = BOOT_ENTRY_64;
	else if (strcmp(v, "32") == 0)
		c->boot_entry = BOOT_ENTRY_32;
	else
		return opt_err(src, "'%s' is not a boot entry (use auto, 64 or 32)", v);
	return 0;
}

static int opt_on_reboot(struct vm_config *c, const char *v, const struct opt_src *src)
{
	if (strcmp(v, "restart") == 0)
		c->on_reboot = ON_REBOOT_RESTART;
	else if (strcmp(v, "exit") == 0)
		c->on_reboot = ON_REBOOT_EXIT;
	else
		return opt_err(src, "'%s' is not a reboot action (use restart or exit)", v);
	return 0;
}

static int opt_timeout(struct vm_config *c, const char *v, const struct opt_src *src)
{
	if (config_parse_duration(v, &c->timeout_ms) < 0)
		return opt_err(src,
			       "'%s' is not a duration (use e.g. 60s, 5m, 1500ms; "
			       "whole numbers only)",
			       v);
	return 0;
}

/* A switch given without a value (v == NULL) means true. */
static int set_switch(bool *field, const char *v, const struct opt_src *src)
{
	if (!v) {
		*field = true;
		return 0;
	}
	if (parse_bool(v, field) < 0)
		return opt_err(src, "'%s' is not a boolean (use true or false)", v);
	return 0;
}

static int opt_hugepages(struct vm_config *c, const char *v, const struct opt_src *src)
{
	return set_switch(&c->hugepages, v, src);
}

static int opt_quiet(struct vm_config *c, const char *v, const struct opt_src *src)
{
	return set_switch(&c->quiet, v, src);
}

static int opt_stats(struct vm_config *c, const char *v, const struct opt_src *src)
{
	return set_switch(&c->stats, v, src);
}

/* --disk is repeatable: each one adds a disk (src/config/config_disk.c). */
static int opt_disk(struct vm_config *c, const char *v, const struct opt_src *src)
{
	char msg[256] = "";

	if (config_disk_add(c, v, src->basedir, msg, sizeof(msg)))
		return opt_err(src, "%s", msg);
	return 0;
}

/* An empty controller a disk can be hot-added to later (disk-add), as
 * QEMU's -device virtio-scsi-pci without disks; with a scsi disk the
 * controller exists anyway. */
static int opt_scsi_controller(struct vm_config *c, const char *v, const struct opt_src *src)
{
	return set_switch(&c->scsi_controller, v, src);
}

/* --net is repeatable: each one adds a NIC (src/config/config_net.c). */
static int opt_net(struct vm_config *c, const char *v, const struct opt_src *src)
{
	char msg[256] = "";

	if (config_net_add(c, v, msg, sizeof(msg)))
		return opt_err(src, "%s", msg);
	return 0;
}

/* --vga std[,mem=SIZE][,rom=FILE|none] | none (src/config/config_display.c). */
static int opt_vga(struct vm_config *c, const char *v, const struct opt_src *src)
{
	char msg[256] = "";

	if (config_vga_set(c, v, src->basedir, msg, sizeof(msg)))
		return opt_err(src, "%s", msg);
	return 0;
}

static int opt_display(struct vm_config *c, const char *v, const struct opt_src *src)
{
	char msg[256] = "";

	if (config_display_set(c, v, src->basedir, msg, sizeof(msg)))
		return opt_err(src, "%s", msg);
	return 0;
}

/* Firmware boot (src/config/config_firmware.c). */
static int opt_firmware(struct vm_config *c, const char *v, const struct opt_src *src)
{
	char msg[256] = "";

	if (config_firmware_set(c, v, src->basedir, msg, sizeof(msg)))
		return opt_err(src, "%s", msg);
	return 0;
}

static int opt_firmware_log(struct vm_config *c, const char *v, const struct opt_src *src)
{
	char msg[256] = "";

	if (config_firmware_log_set(c, v, src->basedir, msg, sizeof(msg)))
		return opt_err(src, "%s", msg);
	return 0;
}

static int opt_boot(struct vm_config *c, const char *v, const struct opt_src *src)
{
	char msg[256] = "";

	if (config_boot_set(c, v, msg, sizeof(msg)))
		return opt_err(src, "%s", msg);
	return 0;
}

/* --control PATH: the control socket (docs/control.md); "none" turns it off. */
static int opt_control(struct vm_config *c, const char *v, const struct opt_src *src)
{
	if (strcmp(v, "none") == 0)
		return set_string(&c->control, v, src);
	return set_path(&c->control, v, src);
}

/* --seccomp on|log|off (docs/sandbox.md): off is for debugging only. */
static int opt_seccomp(struct vm_config *c, const char *v, const struct opt_src *src)
{
	bool on;

	if (strcmp(v, "log") == 0)
		c->seccomp = SANDBOX_SECCOMP_LOG;
	else if (parse_bool(v, &on) == 0)
		c->seccomp = on ? SANDBOX_SECCOMP_ON : SANDBOX_SECCOMP_OFF;
	else
		return opt_err(src, "'%s' is not on, log or off", v);
	return 0;
}

/* --user NAME: a user name or a numeric uid; looked up at start. */
static int opt_user(struct vm_config *c, const char *v, const struct opt_src *src)
{
	static const char ok[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
	size_t len = strlen(v);

	if (len < 1 || len > 32 || strspn(v, ok) != len || v[0] == '-')
		return opt_err(src, "'%s' is not a user name or uid", v);
	return set_string(&c->user, v, src);
}

static int opt_landlock(struct vm_config *c, const char *v, const struct opt_src *src)
{
	return set_switch(&c->landlock, v, src);
}

/* The debug-exit port lets the guest pick the worker's exit status, which is
 * a test harness's verdict and, under systemd, the restart decision: only a
 * VM started for testing gets it (as QEMU's -device isa-debug-exit). */
static int opt_debug_exit(struct vm_config *c, const char *v, const struct opt_src *src)
{
	return set_switch(&c->debug_exit, v, src);
}

/* --restore FILE: the VM comes back from a saved state (docs/state.md); its
 * configuration is the saved one, flags may only change the host side. */
static int opt_restore(struct vm_config *c, const char *v, const struct opt_src *src)
{
	return set_path(&c->restore, v, src);
}

/* --incoming tcp:ADDR:PORT|unix:PATH: wait for one live migration
 * (docs/migration.md); file:PATH is --restore PATH (quick migration). */
static int opt_incoming(struct vm_config *c, const char *v, const struct opt_src *src)
{
	if (!strncmp(v, "file:", 5))
		return set_path(&c->restore, v + 5, src);
	if (strncmp(v, "tcp:", 4) && strncmp(v, "unix:", 5))
		return opt_err(src, "'%s': expected tcp:ADDR:PORT, unix:PATH or file:PATH", v);
	return set_string(&c->incoming, v, src);
}

static bool opt_repeatable(size_t id)
{
	return id == OPT_DISK || id == OPT_NET;
}

static const struct opt opts[OPT_NR] = {
	[OPT_CONFIG] = { "config", NULL, 0, true, NULL, "FILE",
			 "JSON file with the same settings (keys: flag\n"
			 "names, _ for -); applied first, flags override\n"
			 "it; its relative paths are relative to its folder" },
	[OPT_KERNEL] = { "kernel", "kernel", JT_STRING, true, opt_kernel, "FILE",
			 "boot this kernel directly: bzImage, ELF vmlinux\n"
			 "with a PVH note, or Multiboot v1 (default: none,\n"
			 "the VM boots firmware, see --firmware)" },
	[OPT_INITRD] = { "initrd", "initrd", JT_STRING, true, opt_initrd, "FILE",
			 "initial ramdisk (default: none)" },
	[OPT_CMDLINE] = { "cmdline", "cmdline", JT_STRING, true, opt_cmdline, "STR",
			  "kernel command line, up to 65535 bytes\n"
			  "(default: empty)" },
	[OPT_MEM] = { "mem", "mem", JT_STRING | JT_INT, true, opt_mem, "SIZE",
		      "guest RAM, 16M to 1T, rounded up to 2M; K M G T\n"
		      "are binary (KiB, KB too); a plain number is MiB\n"
		      "(default 512M)" },
	[OPT_CPUS] = { "cpus", "cpus", JT_INT, true, opt_cpus, "N", "vCPUs, 1 to 64 (default 1)" },
	[OPT_CPU] = { "cpu", "cpu", JT_STRING, true, opt_cpu, "MODEL",
		      "CPUID features the guest sees: host (all\n"
		      "KVM offers), compat (a baseline any x86-64 host\n"
		      "offers, for migration between CPU generations)\n"
		      "or x86-64-v1..v4 (docs/cpu.md; default host)" },
	[OPT_SERIAL] = { "serial", "serial", JT_STRING, true, opt_serial, "MODE",
			 "COM1: stdio, none or file:PATH (default stdio)" },
	[OPT_NAME] = { "name", "name", JT_STRING, true, opt_name, "NAME",
		       "VM name: 1 to 64 of A-Z a-z 0-9 _ . -, not\n"
		       "starting with . or - (default kestrel-PID)" },
	[OPT_BOOT_ENTRY] = { "boot-entry", "boot_entry", JT_STRING | JT_INT, true, opt_boot_entry,
			     "auto|64|32",
			     "bzImage entry point: 64-bit (long mode) or\n"
			     "32-bit (protected mode) protocol; auto takes\n"
			     "64 when the kernel has it (default auto)" },
	[OPT_ON_REBOOT] = { "on-reboot", "on_reboot", JT_STRING, true, opt_on_reboot,
			    "restart|exit", "what a guest reboot does (default restart)" },
	[OPT_HUGEPAGES] = { "hugepages", "hugepages", JT_BOOL, false, opt_hugepages, NULL,
			    "back guest RAM with 2 MiB huge pages" },
	[OPT_TIMEOUT] = { "timeout", "timeout", JT_STRING | JT_INT, true, opt_timeout, "DURATION",
			  "stop the VM and exit 124 after e.g. 90s, 5m,\n"
			  "1500ms, 1h; a plain number is seconds; 0 is\n"
			  "none (default none)" },
	[OPT_QUIET] = { "quiet", "quiet", JT_BOOL, false, opt_quiet, NULL, "log errors only" },
	[OPT_STATS] = { "stats", "stats", JT_BOOL, false, opt_stats, NULL,
			"print run statistics to stderr at the end" },
	[OPT_DISK] = { "disk", "disks", 0, true, opt_disk, "SPEC",
		       "add a disk (repeatable): path=FILE,bus=scsi\n"
		       "[,format=raw|vhd][,readonly]\n"
		       "[,cache=writeback|none|directsync]\n"
		       "[,aio=io_uring|libaio|sync][,target=N]\n"
		       "or bus=ide[,media=disk|cdrom][,unit=0-3]\n"
		       "(JSON: \"disks\": [ {\"path\": ..}, ..])" },
	[OPT_SCSI_CONTROLLER] = { "scsi-controller", "scsi_controller", JT_BOOL, false,
				  opt_scsi_controller, NULL,
				  "create the virtio-scsi controller even with no\n"
				  "--disk, for disk-add on the control socket" },
	[OPT_NET] = { "net", "net", 0, true, opt_net, "SPEC",
		      "add a NIC (repeatable): tap=IFNAME[,model=virtio|\n"
		      "tulip][,mac=52:54:00:..][,vlan=ID][,queues=N]\n"
		      "(JSON: \"net\": [ {\"tap\": ..}, ..])" },
	[OPT_VGA] = { "vga", "vga", JT_STRING, true, opt_vga, "SPEC",
		      "graphics card: std[,mem=SIZE][,rom=FILE|none]\n"
		      "(PCI std VGA with Bochs VBE; VRAM a power of\n"
		      "two, 1M to 256M, default 16M) or none (default\n"
		      "none when booting a kernel directly)" },
	[OPT_DISPLAY] = { "display", "display", JT_STRING, true, opt_display, "SPEC",
			  "display output: none (screendumps only) or\n"
			  "vnc=[ADDR]:PORT[,password-file=FILE] (ADDR\n"
			  "default 127.0.0.1; off loopback a password is\n"
			  "required; implies --vga std)" },
	[OPT_FIRMWARE] = { "firmware", "firmware", JT_STRING, true, opt_firmware, "bios|FILE",
			   "without --kernel: the firmware image, mapped\n"
			   "below 4 GiB (default bios: Debian's SeaBIOS,\n" CONFIG_FIRMWARE_BIOS
			   ")" },
	[OPT_FIRMWARE_LOG] = { "firmware-log", "firmware_log", JT_STRING, true, opt_firmware_log,
			       "stderr|FILE",
			       "the firmware's debug log (debugcon, port\n"
			       "0x402; default: off)" },
	[OPT_BOOT] = { "boot", "boot", JT_STRING, true, opt_boot, "ORDER",
		       "firmware's boot order: disk, cdrom, net,\n"
		       "comma-separated (default disk,cdrom);\n"
		       "[,menu=on][,menu-wait=DURATION]" },
	[OPT_CONTROL] = { "control", "control", JT_STRING, true, opt_control, "PATH",
			  "control socket (default $XDG_RUNTIME_DIR/kestrel/\n"
			  "NAME.sock, /run/kestrel/NAME.sock as root);\n"
			  "none: no socket" },
	[OPT_SECCOMP] = { "seccomp", "seccomp", JT_STRING | JT_BOOL, true, opt_seccomp,
			  "on|log|off",
			  "system call filters per thread (default on);\n"
			  "log: allow and log what they would refuse;\n"
			  "off: none (debugging only)" },
	[OPT_USER] = { "user", "user", JT_STRING | JT_INT, true, opt_user, "NAME",
		       "once everything is open, run as this user\n"
		       "(name or uid; needs root) without capabilities" },
	[OPT_LANDLOCK] = { "landlock", "landlock", JT_BOOL, false, opt_landlock, NULL,
			   "once set up, open files only in the disks'\n"
			   "folders (disk-add) and /proc/self (Linux 5.13+)" },
	[OPT_DEBUG_EXIT] = { "debug-exit", "debug_exit", JT_BOOL, false, opt_debug_exit, NULL,
			     "decode the debug-exit port 0xf4: the guest's\n"
			     "write of V ends the worker with (V << 1) | 1\n"
			     "(test payloads; default off)" },
	[OPT_RESTORE] = { "restore", NULL, 0, true, opt_restore, "FILE",
			  "bring a saved VM back (kestrel ctl NAME save):\n"
			  "its configuration comes from FILE; only\n"
			  "--serial --control --name --on-reboot\n"
			  "--timeout --quiet --stats --seccomp --user\n"
			  "--landlock may be given" },
	[OPT_INCOMING] = { "incoming", NULL, 0, true, opt_incoming, "ADDR",
			   "wait for a live migration (kestrel ctl NAME\n"
			   "migrate): tcp:ADDR:PORT or unix:PATH; the\n"
			   "configuration comes with it, flags as with\n"
			   "--restore; file:PATH is --restore PATH" },
	[OPT_HELP] = { "help", NULL, 0, false, NULL, NULL, "show this help (also -h)" },
};

static const struct opt *opt_by_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < OPT_NR; i++)
		if (strlen(opts[i].flag) == len && strncmp(opts[i].flag, name, len) == 0)
			return &opts[i];
	return NULL;
}

static const struct opt *opt_by_key(const char *key)
{
	for (size_t i = 0; i < OPT_NR; i++)
		if (opts[i].key && strcmp(opts[i].key, key) == 0)
			return &opts[i];
	return NULL;
}

/* Edit distance, for "did you mean" on a typo'd flag or key. Long inputs are
 * not typos of our short names, so they are cut off. */
static unsigned edit_distance(const char *a, size_t la, const char *b)
{
	unsigned row[33], lb = (unsigned)MIN(strlen(b), (size_t)32);

	la = MIN(la, (size_t)32);
	for (unsigned j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		unsigned diag = row[0];

		row[0] = (unsigned)i;
		for (unsigned j = 1; j <= lb; j++) {
			unsigned up = row[j];
			unsigned best = diag + (a[i - 1] != b[j - 1]);

			best = MIN(best, up + 1);
			best = MIN(best, row[j - 1] + 1);
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* The closest flag (or JSON key) within two edits, or NULL. */
static const char *opt_suggest(const char *name, size_t len, bool json)
{
	const char *best = NULL;
	unsigned best_d = 3;

	for (size_t i = 0; i < OPT_NR; i++) {
		const char *cand = json ? opts[i].key : opts[i].flag;
		unsigned d;

		if (!cand)
			continue;
		d = edit_distance(name, len, cand);
		if (d < best_d) {
			best_d = d;
			best = cand;
		}
	}
	return best;
}

/* One command-line item: a flag with its value, or a stray argument. */
struct arg_item {
	const char *arg;       /* argv entry as typed */
	const struct opt *opt; /* NULL: unknown flag or positional */
	const char *value;     /* NULL for a switch without =value */
	bool positional;
	bool missing; /* has_arg but no value */
};

static bool arg_is_flag(const char *s)
{
	if (strcmp(s, "-h") == 0)
		return true;
	return strncmp(s, "--", 2) == 0 && opt_by_flag(s + 2, strcspn(s + 2, "=")) != NULL;
}

/* Takes the item at argv[*i] and advances *i past it (and its value). A value
 * that is itself a known flag counts as missing: "--kernel --initrd x". */
static void args_next(int argc, char **argv, int *i, struct arg_item *it)
{
	const char *a = argv[(*i)++], *eq;
	size_t namelen;

	memset(it, 0, sizeof(*it));
	it->arg = a;
	if (strcmp(a, "-h") == 0) {
		it->opt = &opts[OPT_HELP];
		return;
	}
	if (strncmp(a, "--", 2) != 0) {
		it->positional = a[0] != '-' || a[1] == '\0';
		return;
	}
	namelen = strcspn(a + 2, "=");
	it->opt = opt_by_flag(a + 2, namelen);
	eq = a[2 + namelen] == '=' ? a + 3 + namelen : NULL;
	if (!it->opt || eq || !it->opt->has_arg) {
		it->value = eq;
		return;
	}
	if (*i < argc && !arg_is_flag(argv[*i]))
		it->value = argv[(*i)++];
	else
		it->missing = true;
}

/* First pass: --help wins over everything, and --config is found wherever it
 * is so that the file can be applied before any flag. */
static int args_scan(int argc, char **argv, const char **config, bool *help, char *err,
		     size_t errlen)
{
	struct arg_item it;

	for (int i = 1; i < argc;) {
		args_next(argc, argv, &i, &it);
		if (it.opt == &opts[OPT_HELP])
			*help = true;
		if (it.opt != &opts[OPT_CONFIG] || it.missing)
			continue;
		if (*config && strcmp(*config, it.value) != 0)
			return plain_err(err, errlen, "--config: given twice ('%s' and '%s')",
					 *config, it.value);
		*config = it.value;
	}
	return 0;
}

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool boot_same(const struct config_boot *a, const struct config_boot *b)
{
	return a->n == b->n && !memcmp(a->order, b->order, a->n * sizeof(a->order[0])) &&
	       a->menu == b->menu && a->menu_wait_ms == b->menu_wait_ms;
}

/* Whether two configs agree on the fields that option id sets. */
static bool opt_same(enum opt_id id, const struct vm_config *a, const struct vm_config *b)
{
	switch (id) {
	case OPT_KERNEL: return str_eq(a->kernel, b->kernel);
	case OPT_INITRD: return str_eq(a->initrd, b->initrd);
	case OPT_CMDLINE: return str_eq(a->cmdline, b->cmdline);
	case OPT_MEM: return a->mem_size == b->mem_size;
	case OPT_CPUS: return a->cpus == b->cpus;
	case OPT_CPU: return cpu_model_name(a->cpu) == cpu_model_name(b->cpu);
	case OPT_SERIAL: return a->serial == b->serial && str_eq(a->serial_path, b->serial_path);
	case OPT_NAME: return str_eq(a->name, b->name);
	case OPT_BOOT_ENTRY: return a->boot_entry == b->boot_entry;
	case OPT_ON_REBOOT: return a->on_reboot == b->on_reboot;
	case OPT_HUGEPAGES: return a->hugepages == b->hugepages;
	case OPT_TIMEOUT: return a->timeout_ms == b->timeout_ms;
	case OPT_QUIET: return a->quiet == b->quiet;
	case OPT_STATS: return a->stats == b->stats;
	case OPT_SCSI_CONTROLLER: return a->scsi_controller == b->scsi_controller;
	case OPT_VGA: return config_vga_same(a, b);
	case OPT_DISPLAY: return a->display == b->display && config_vnc_same(a, b);
	case OPT_CONTROL: return str_eq(a->control, b->control);
	case OPT_FIRMWARE: return str_eq(a->firmware, b->firmware);
	case OPT_FIRMWARE_LOG: return str_eq(a->firmware_log, b->firmware_log);
	case OPT_BOOT: return boot_same(&a->boot, &b->boot);
	case OPT_SECCOMP: return a->seccomp == b->seccomp;
	case OPT_USER: return str_eq(a->user, b->user);
	case OPT_LANDLOCK: return a->landlock == b->landlock;
	case OPT_DEBUG_EXIT: return a->debug_exit == b->debug_exit;
	case OPT_RESTORE: return str_eq(a->restore, b->restore);
	case OPT_INCOMING: return str_eq(a->incoming, b->incoming);
	default: return true;
	}
}

/* A flag repeated with the same meaning is harmless; with another it is
 * almost certainly a mistake, so refuse rather than pick one. */
static int arg_repeat(const struct vm_config *c, const struct arg_item *it, const char *first,
		      const struct opt_src *src)
{
	struct vm_config tmp;
	bool same;
	int ret;

	memset(&tmp, 0, sizeof(tmp));
	ret = it->opt->set(&tmp, it->value, src);
	same = ret == 0 && opt_same((enum opt_id)(it->opt - opts), c, &tmp);
	config_free(&tmp);
	if (ret)
		return ret;
	/* A bare switch has no text of its own: it means "true". */
	if (!same)
		return opt_err(src, "given twice with different values ('%s' and '%s')",
			       first ? first : "true", it->value ? it->value : "true");
	return 0;
}

static int arg_apply(struct vm_config *c, const struct arg_item *it, const char **seen,
		     bool *was_seen, char *err, size_t errlen)
{
	const struct opt *o = it->opt;
	struct opt_src src = { .flag = o->flag, .err = err, .errlen = errlen };
	size_t id = (size_t)(o - opts);
	int ret;

	if (it->missing)
		return opt_err(&src, "missing value (e.g. --%s %s)", o->flag, o->metavar);
	if (!o->set)
		return 0; /* --config and --help: handled by args_scan */
	if (was_seen[id] && !opt_repeatable(id))
		return arg_repeat(c, it, seen[id], &src);
	ret = o->set(c, it->value, &src);
	seen[id] = it->value;
	was_seen[id] = true;
	c->given |= 1ull << id;
	return ret;
}

static int arg_unknown(const struct arg_item *it, char *err, size_t errlen)
{
	size_t dashes, len;
	const char *hint;

	if (it->positional)
		return plain_err(err, errlen,
				 "'%s': unexpected argument (kestrel run takes only "
				 "--flags; see kestrel help run)",
				 it->arg);
	dashes = strspn(it->arg, "-");
	len = strcspn(it->arg, "=");
	hint = opt_suggest(it->arg + dashes, len - dashes, false);
	if (hint)
		return plain_err(err, errlen, "%.*s: unknown flag (did you mean --%s?)",
				 (int)MIN(len, (size_t)200), it->arg, hint);
	return plain_err(err, errlen, "%.*s: unknown flag (see kestrel help run)",
			 (int)MIN(len, (size_t)200), it->arg);
}

static int args_apply(struct vm_config *c, int argc, char **argv, char *err, size_t errlen)
{
	const char *seen[OPT_NR] = { 0 };
	bool was_seen[OPT_NR] = { 0 };
	struct arg_item it;
	int ret;

	for (int i = 1; i < argc;) {
		args_next(argc, argv, &i, &it);
		if (!it.opt)
			return arg_unknown(&it, err, errlen);
		ret = arg_apply(c, &it, seen, was_seen, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

static char *json_basedir(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return NULL;
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* "a string", "an integer", ... as the message for a wrong JSON type. */
static const char *json_types_desc(unsigned types)
{
	switch (types) {
	case JT_STRING: return "a string";
	case JT_INT: return "an integer";
	case JT_BOOL: return "true or false";
	case JT_STRING | JT_INT: return "a string or an integer";
	default: return "nothing";
	}
}

/* The value as the text a flag would carry, or an error for the wrong type. */
static int json_value_text(const struct opt *o, json_object *v, char *num, size_t numlen,
			   const char **out, const struct opt_src *src)
{
	enum json_type t = json_object_get_type(v);
	int64_t i;

	if (t == json_type_string && (o->json_types & JT_STRING)) {
		*out = json_object_get_string(v);
		if (strlen(*out) != (size_t)json_object_get_string_len(v))
			return opt_err(src, "string contains a NUL character");
		return 0;
	}
	if (t == json_type_int && (o->json_types & JT_INT)) {
		i = json_object_get_int64(v);
		if (i == INT64_MAX)
			snprintf(num, numlen, "%llu",
				 (unsigned long long)json_object_get_uint64(v));
		else
			snprintf(num, numlen, "%lld", (long long)i);
		*out = num;
		return 0;
	}
	if (t == json_type_boolean && (o->json_types & JT_BOOL)) {
		*out = json_object_get_boolean(v) ? "true" : "false";
		return 0;
	}
	return opt_err(src, "expected %s, got %s", json_types_desc(o->json_types),
		       json_type_text(v));
}

static int json_apply(struct vm_config *c, json_object *root, const char *path, const char *basedir,
		      char *err, size_t errlen)
{
	char num[32];

	json_object_object_foreach(root, key, val)
	{
		const struct opt *o = opt_by_key(key);
		struct opt_src src = {
			.flag = key, .file = path, .basedir = basedir, .err = err, .errlen = errlen
		};
		const char *text = NULL, *hint;
		int ret;

		if (strcmp(key, "disks") == 0) {
			c->given |= 1ull << OPT_DISK;
			ret = config_disks_json(c, val, path, basedir, err, errlen);
			if (ret)
				return ret;
			continue;
		}
		if (strcmp(key, "net") == 0) {
			c->given |= 1ull << OPT_NET;
			ret = config_nets_json(c, val, path, err, errlen);
			if (ret)
				return ret;
			continue;
		}
		if (!o) {
			hint = opt_suggest(key, strlen(key), true);
			if (hint)
				return plain_err(err, errlen,
						 "%s: unknown key \"%s\" (did you mean "
						 "\"%s\"?)",
						 path, key, hint);
			return plain_err(err, errlen, "%s: unknown key \"%s\"", path, key);
		}
		ret = json_value_text(o, val, num, sizeof(num), &text, &src);
		if (ret == 0)
			ret = o->set(c, text, &src);
		c->given |= 1ull << (o - opts);
		if (ret)
			return ret;
	}
	return 0;
}

/* 1-based line and column (in bytes) of offset off in buf. */
static void text_position(const char *buf, size_t off, unsigned *line, unsigned *col)
{
	size_t start = 0;

	*line = 1;
	for (size_t i = 0; i < off; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			start = i + 1;
		}
	}
	*col = (unsigned)(off - start + 1);
}

PRINTF_LIKE(6, 7)
static int json_syntax_err(const char *path, const char *buf, size_t off, char *err, size_t errlen,
			   const char *fmt, ...)
{
	unsigned line, col;
	char msg[128];
	va_list ap;

	text_position(buf, off, &line, &col);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return plain_err(err, errlen, "%s:%u:%u: JSON syntax error: %s", path, line, col, msg);
}

/* Parses buf (NUL-terminated at len) as one strict JSON object. */
static int json_parse_text(const char *path, const char *buf, size_t len, json_object **out,
			   char *err, size_t errlen)
{
	json_tokener *tok = json_tokener_new();
	enum json_tokener_error jerr;
	json_object *root;
	size_t end;

	if (!tok)
		return plain_err(err, errlen, "%s: out of memory", path);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	/* Passing the NUL too tells the tokener the input ends here, which it
	 * needs to finish a bare top-level number. */
	root = json_tokener_parse_ex(tok, buf, (int)len + 1);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!root) {
		if (jerr == json_tokener_success || jerr == json_tokener_continue)
			return json_syntax_err(path, buf, len, err, errlen,
					       "unexpected end of file");
		return json_syntax_err(path, buf, MIN(end, len), err, errlen, "%s",
				       json_tokener_error_desc(jerr));
	}
	end = MIN(end, len);
	end += strspn(buf + end, " \t\r\n");
	if (end < len) {
		json_object_put(root);
		return json_syntax_err(path, buf, end, err, errlen,
				       "unexpected data after the top-level object");
	}
	if (!json_object_is_type(root, json_type_object)) {
		plain_err(err, errlen, "%s: expected a JSON object at the top level, got %s", path,
			  json_type_text(root));
		json_object_put(root);
		return -EINVAL;
	}
	*out = root;
	return 0;
}

static int json_load_buf(struct vm_config *c, const char *path, const char *buf, size_t len,
			 bool relative, char *err, size_t errlen)
{
	json_object *root;
	char *basedir = NULL;
	int ret;

	if (len > CONFIG_JSON_MAX)
		return plain_err(err, errlen, "%s: larger than 1 MiB; not a config file?", path);
	ret = json_parse_text(path, buf, len, &root, err, errlen);
	if (ret)
		return ret;
	if (relative)
		basedir = json_basedir(path);
	if (relative && strchr(path, '/') && !basedir)
		ret = plain_err(err, errlen, "%s: out of memory", path);
	else
		ret = json_apply(c, root, path, basedir, err, errlen);
	free(basedir);
	json_object_put(root);
	return ret;
}

/* What a saved configuration may not say: where the worker writes (the
 * serial file, the control socket) and how this run behaves are the
 * restoring user's choice, never the file's. */
#define CONFIG_HOST_SIDE                                                                          \
	((1ull << OPT_SERIAL) | (1ull << OPT_CONTROL) | (1ull << OPT_TIMEOUT) |                   \
	 (1ull << OPT_QUIET) | (1ull << OPT_STATS) | (1ull << OPT_SECCOMP) | (1ull << OPT_USER) | \
	 (1ull << OPT_LANDLOCK))

int config_load_json_text(struct vm_config *c, const char *label, const char *text, size_t len,
			  char *err, size_t errlen)
{
	uint64_t before = c->given;
	int ret;

	if (memchr(text, '\0', len))
		return plain_err(err, errlen, "%s: contains a NUL byte", label);
	ret = json_load_buf(c, label, text, len, false, err, errlen);
	for (unsigned id = 0; !ret && id < OPT_NR; id++)
		if ((c->given & ~before & CONFIG_HOST_SIDE) >> id & 1)
			ret = plain_err(err, errlen,
					"%s: \"%s\" is not part of a saved "
					"configuration",
					label, opts[id].key);
	return ret;
}

static int json_load(struct vm_config *c, const char *path, const char *what, char *err,
		     size_t errlen)
{
	uint8_t *buf;
	size_t len;
	int ret = read_file(path, &buf, &len);

	if (ret == -EFBIG)
		return plain_err(err, errlen, "%s%s: larger than 1 MiB; not a config file?", what,
				 path);
	if (ret)
		return plain_err(err, errlen, "%s%s: %s", what, path, strerror(-ret));
	ret = json_load_buf(c, path, (const char *)buf, len, true, err, errlen);
	free(buf);
	return ret;
}

int config_load_json(struct vm_config *c, const char *path, char *err, size_t errlen)
{
	return json_load(c, path, "", err, errlen);
}

int config_parse_run(struct vm_config *c, int argc, char **argv, char *err, size_t errlen)
{
	const char *config = NULL;
	bool help = false;
	int ret;

	if (errlen)
		err[0] = '\0';
	ret = args_scan(argc, argv, &config, &help, err, errlen);
	if (help) {
		c->help = true;
		return 0;
	}
	if (ret)
		return ret;
	if (config) {
		ret = json_load(c, config, "--config: ", err, errlen);
		if (ret)
			return ret;
	}
	return args_apply(c, argc, argv, err, errlen);
}

/* Kernel and initrd: readable, a regular file, not empty. */
static int input_file_check(const struct opt_src *src, const char *path)
{
	struct stat st;
	int fd, ret = 0;

	/* O_NONBLOCK: a FIFO must not hang us before fstat rejects it. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return opt_err(src, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		ret = opt_err(src, "%s: %s", path, strerror(errno));
	else if (S_ISDIR(st.st_mode))
		ret = opt_err(src, "%s: is a directory", path);
	else if (!S_ISREG(st.st_mode))
		ret = opt_err(src, "%s: not a regular file", path);
	else if (st.st_size == 0)
		ret = opt_err(src, "%s: file is empty", path);
	close(fd);
	return ret;
}

/* The serial file is created later; here only what would make that fail. */
static int serial_file_check(const struct opt_src *src, const char *path)
{
	struct stat st;
	char *dir;
	int ret = 0;

	if (!path || !*path)
		return opt_err(src, "file: needs a path");
	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return opt_err(src, "%s: is a directory", path);
		if (access(path, W_OK) < 0)
			return opt_err(src, "%s: %s", path, strerror(errno));
		return 0;
	}
	if (errno != ENOENT)
		return opt_err(src, "%s: %s", path, strerror(errno));
	dir = json_basedir(path);
	if (access(dir ? dir : ".", W_OK | X_OK) < 0)
		ret = opt_err(src, "%s: directory %s: %s", path, dir ? dir : ".", strerror(errno));
	free(dir);
	return ret;
}

/* Guest RAM is mapped lazily, so host RAM is no limit; ulimit -v is. */
static int mem_rlimit_check(const struct vm_config *c, const struct opt_src *src)
{
	uint64_t need = c->mem_size + CONFIG_AS_HEADROOM + (uint64_t)c->cpus * CONFIG_AS_PER_CPU;
	char a[32], b[32];
	struct rlimit rl;

	if (getrlimit(RLIMIT_AS, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	if (need <= rl.rlim_cur)
		return 0;
	return opt_err(src,
		       "%s does not fit the address-space limit of %s (ulimit -v); "
		       "raise it or lower --mem",
		       fmt_size(c->mem_size, a, sizeof(a)), fmt_size(rl.rlim_cur, b, sizeof(b)));
}

static int mem_validate(const struct vm_config *c, const struct opt_src *src)
{
	char shown[32];
	int ret;

	fmt_size(c->mem_size, shown, sizeof(shown));
	ret = mem_range_check(c->mem_size, shown, src);
	if (ret)
		return ret;
	if (c->mem_size % CONFIG_MEM_ALIGN)
		return opt_err(src, "%s is not a multiple of 2M", shown);
	return mem_rlimit_check(c, src);
}

#define VSRC(f) (&(struct opt_src){ .flag = (f), .err = err, .errlen = errlen })

int config_output_file_check(const char *flag, const char *path, char *err, size_t errlen)
{
	return serial_file_check(VSRC(flag), path);
}

/* Without --kernel the VM boots firmware (config_firmware_validate). */
static int config_validate_files(struct vm_config *c, char *err, size_t errlen)
{
	/* A restored VM needs its kernel again only when the guest reboots. */
	bool restored = c->restore || c->incoming;
	int ret = restored ? 0 : config_firmware_validate(c, err, errlen);

	if (ret == 0 && c->kernel && !restored)
		ret = input_file_check(VSRC("kernel"), c->kernel);
	if (ret == 0 && c->initrd && !restored)
		ret = input_file_check(VSRC("initrd"), c->initrd);
	if (ret == 0 && c->serial == SERIAL_FILE)
		ret = serial_file_check(VSRC("serial"), c->serial_path);
	return ret;
}

int config_validate(struct vm_config *c, char *err, size_t errlen)
{
	int ret;

	if (errlen)
		err[0] = '\0';
	if (!c->name && asprintf(&c->name, "kestrel-%d", (int)getpid()) < 0) {
		c->name = NULL;
		plain_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!name_ok(c->name))
		return opt_name(c, c->name, VSRC("name"));
	if (c->cmdline && (ret = cmdline_check(c->cmdline, VSRC("cmdline"))))
		return ret;
	if (c->cpus < 1 || c->cpus > CONFIG_MAX_CPUS)
		return opt_err(VSRC("cpus"), "%u is out of range (1 to %d)", c->cpus,
			       CONFIG_MAX_CPUS);
	if (c->serial > SERIAL_NONE || c->boot_entry > BOOT_ENTRY_32 ||
	    c->on_reboot > ON_REBOOT_EXIT || c->seccomp > SANDBOX_SECCOMP_OFF)
		return plain_err(err, errlen, "internal error: enum out of range in vm_config");
	ret = mem_validate(c, VSRC("mem"));
	ret = ret ?: config_validate_files(c, err, errlen);
	ret = ret ?: config_disks_validate(c, err, errlen);
	ret = ret ?: config_vnc_validate(c, err, errlen);
	ret = ret ?: config_vga_validate(c, err, errlen);
	return ret ?: config_nets_validate(c, err, errlen);
}

void config_defaults(struct vm_config *c)
{
	memset(c, 0, sizeof(*c));
	c->mem_size = CONFIG_MEM_DEFAULT;
	c->cpus = 1;
	c->serial = SERIAL_STDIO;
	c->boot_entry = BOOT_ENTRY_AUTO;
	c->on_reboot = ON_REBOOT_RESTART;
	/* On failure the name stays NULL; config_validate retries. */
	if (asprintf(&c->name, "kestrel-%d", (int)getpid()) < 0)
		c->name = NULL;
}

void config_free(struct vm_config *c)
{
	free(c->name);
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->serial_path);
	free(c->control);
	free(c->firmware);
	free(c->firmware_log);
	free(c->user);
	free(c->restore);
	free(c->incoming);
	c->name = c->kernel = c->initrd = c->cmdline = c->serial_path = c->control = NULL;
	c->firmware = c->firmware_log = c->user = c->restore = c->incoming = NULL;
	config_disks_free(c);
	config_nets_free(c);
	config_display_free(c);
	config_vnc_free(c);
}

static void usage_opt(FILE *f, const struct opt *o)
{
	char head[40];
	const char *h = o->help;
	size_t n;

	snprintf(head, sizeof(head), "--%s%s%s", o->flag, o->metavar ? " " : "",
		 o->metavar ? o->metavar : "");
	fprintf(f, "  %-25s ", head);
	if (strlen(head) > 25)
		fprintf(f, "\n  %-25s ", "");
	for (;;) {
		n = strcspn(h, "\n");
		fprintf(f, "%.*s\n", (int)n, h);
		if (h[n] == '\0')
			break;
		h += n + 1;
		fprintf(f, "  %-25s ", "");
	}
}

void config_usage_run(FILE *f)
{
	fprintf(f, "Usage: kestrel run [--kernel FILE | --firmware bios|FILE] [options]\n"
		   "\n"
		   "Boot one VM in this process. Options take --flag VALUE or\n"
		   "--flag=VALUE; switches also take --flag=true|false. A flag\n"
		   "given twice must agree.\n"
		   "\n");
	for (size_t i = 0; i < OPT_NR; i++)
		usage_opt(f, &opts[i]);
	fprintf(f, "\n"
		   "Exit status: 0 the guest powered off; 2 bad flags, config or\n"
		   "files; 3 VM error (triple fault, KVM internal error); 124\n"
		   "--timeout reached; 4 a thread made a system call outside its\n"
		   "seccomp list; (V << 1) | 1 the guest wrote V to the\n"
		   "debug-exit port (with --debug-exit).\n"
		   "Environment: KESTREL_DEBUG=1 logs debug messages.\n");
}

/* What a restore may change: where the worker's own ends go, never the
 * machine the guest knows. */
static const enum opt_id restore_host_side[] = {
	OPT_SERIAL,  OPT_CONTROL,  OPT_NAME,	OPT_ON_REBOOT,	  OPT_TIMEOUT,
	OPT_QUIET,   OPT_STATS,	   OPT_SECCOMP, OPT_USER,	  OPT_LANDLOCK,
	OPT_RESTORE, OPT_INCOMING, OPT_DISPLAY, OPT_FIRMWARE_LOG,
};

static bool restore_allowed(unsigned id)
{
	for (size_t i = 0; i < ARRAY_SIZE(restore_host_side); i++)
		if (restore_host_side[i] == id)
			return true;
	return false;
}

static int take_string(char **dst, const char *src)
{
	char *s = src ? strdup(src) : NULL;

	if (src && !s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

int config_restore_merge(struct vm_config *saved, const struct vm_config *given, char *err,
			 size_t errlen)
{
	int ret = 0;

	for (unsigned id = 0; id < OPT_NR; id++)
		if ((given->given >> id & 1) && !restore_allowed(id))
			return plain_err(
				err, errlen,
				"--%s: cannot be changed with --restore or --incoming (the "
				"configuration comes from %s; only --serial, --control, "
				"--name, --on-reboot, --timeout, --quiet, --stats, "
				"--seccomp, --user, --landlock, --display, --firmware-log "
				"may be given)",
				opts[id].flag, given->restore ? given->restore : "the stream");
	if (given->given & (1ull << OPT_SERIAL)) {
		saved->serial = given->serial;
		ret = take_string(&saved->serial_path, given->serial_path);
	}
	if (given->given & (1ull << OPT_NAME))
		ret = ret ?: take_string(&saved->name, given->name);
	if (given->given & (1ull << OPT_ON_REBOOT))
		saved->on_reboot = given->on_reboot;
	ret = ret ?: take_string(&saved->control, given->control);
	ret = ret ?: take_string(&saved->restore, given->restore);
	ret = ret ?: take_string(&saved->incoming, given->incoming);
	ret = ret ?: take_string(&saved->user, given->user);
	if (given->given & (1ull << OPT_DISPLAY)) {
		char *pf = saved->vnc.password_file; /* the copy below must not take given's */

		saved->display = given->display;
		saved->vnc = given->vnc;
		saved->vnc.password_file = pf;
		ret = ret ?: take_string(&saved->vnc.password_file, given->vnc.password_file);
	}
	if (given->given & (1ull << OPT_FIRMWARE_LOG))
		ret = ret ?: take_string(&saved->firmware_log, given->firmware_log);
	saved->seccomp = given->seccomp;
	saved->landlock = given->landlock;
	saved->timeout_ms = given->timeout_ms;
	saved->quiet = given->quiet;
	saved->stats = given->stats;
	if (ret)
		return plain_err(err, errlen, "out of memory");
	return 0;
}
