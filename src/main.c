/* kestrel: one worker process per VM. `kestrel run` validates everything,
 * builds the machine, runs the vCPUs and maps how the guest stopped to the
 * process exit code. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kestrel/block.h"
#include "kestrel/clock.h"
#include "kestrel/config.h"
#include "kestrel/console.h"
#include "kestrel/control.h"
#include "kestrel/control_vm.h"
#include "kestrel/machine.h"
#include "kestrel/migrate.h"
#include "kestrel/sandbox.h"
#include "kestrel/snapshot.h"
#include "kestrel/vhd.h"
#include "kestrel/vnc.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kestrel run [OPTIONS]     boot a VM (kestrel help run lists the options)\n"
		"       kestrel run --restore FILE [HOST OPTIONS]   bring a saved VM back (docs/state.md)\n"
		"       kestrel run --incoming tcp:ADDR:PORT|unix:PATH [HOST OPTIONS]   receive a live migration\n"
		"       kestrel vhd COMMAND ...   create, inspect, check and convert VHD disks (kestrel vhd help)\n"
		"       kestrel ctl NAME|SOCKET COMMAND [ARGS] [--json]   drive a running VM\n"
		"       kestrel list [--json]     running VMs (docs/control.md)\n"
		"       kestrel snapshot list|delete [NAME] --vm-dir DIR   a VM's snapshot tree (docs/state.md)\n"
		"       kestrel help [run]\n"
		"       kestrel --version\n");
}

static const char *stop_name(enum vm_stop_reason why)
{
	switch (why) {
	case VM_STOP_POWEROFF: return "guest powered off";
	case VM_STOP_RESET: return "guest reset";
	case VM_STOP_DEBUG_EXIT: return "guest wrote the debug-exit port";
	case VM_STOP_ERROR: return "VM error";
	case VM_STOP_SIGNAL: return "host signal";
	case VM_STOP_TIMEOUT: return "--timeout reached";
	case VM_STOP_SAVED: return "the VM was saved";
	case VM_STOP_APPLY: return "a snapshot is applied";
	}
	return "?";
}

/* The machine for one boot: booted from the kernel, or (the first time
 * after --restore) rebuilt and loaded from the saved state. */
static int machine_for_run(struct machine *m, const struct vm_config *cfg, struct migrate_in *in,
			   char *err, size_t errlen)
{
	int ret;

	if (!in)
		return machine_create(m, cfg, err, errlen);
	ret = machine_create_restored(m, cfg, err, errlen);
	return ret ?: migrate_restore_machine(in, m, false, err, errlen);
}

/* A live migration's target (docs/migration.md): the machine is built from
 * the source's configuration while the source still runs the guest (the
 * disks opened without their locks), so the source's pause spans only the
 * last pages, the state's check, the disks' hand-over and the load. inc is
 * consumed; *in is the received state. The source hears the outcome. */
static int machine_for_incoming(struct machine *m, const struct vm_config *cfg,
				struct migrate_incoming *inc, struct migrate_in **in, char *err,
				size_t errlen)
{
	int ret;

	blk_defer_locks(true);
	ret = machine_create_restored(m, cfg, err, errlen);
	blk_defer_locks(false);
	ret = ret ?: migrate_incoming_attach(inc, &m->vm.gm, err, errlen);
	ret = migrate_incoming_ready(inc, ret, ret ? err : NULL, err, errlen);
	/* Everything is open: sealed now, the control thread serves the
	 * target's socket (query-status, migrate-progress) during pre-copy. */
	if (!ret && (ret = sandbox_seal(err, errlen))) {
		migrate_incoming_abort(inc, ret, err);
		return ret;
	}
	ret = ret ?: migrate_incoming_receive(inc, in, err, errlen);
	/* The source lets go of the disks only now. */
	ret = ret ?: migrate_incoming_switch(*in, err, errlen);
	if (ret)
		return ret; /* the source keeps the VM */
	ret = machine_disks_take_over(m, err, errlen);
	ret = ret ?: migrate_restore_machine(*in, m, false, err, errlen);
	/* The source exits on this word, or resumes on an error. */
	migrate_incoming_done(*in, ret, err[0] ? err : strerror(-ret));
	return ret;
}

/* One boot of the guest; returns the stop reason and sets *code. deadline:
 * CLOCK_MONOTONIC ms at which --timeout stops the VM (0: none); it spans
 * guest restarts, so a guest that keeps rebooting still times out (an
 * incoming VM's starts when it arrives). in: a saved state to restore
 * instead of booting; inc: a live migration to receive (sets *in). */
static enum vm_stop_reason run_once(const struct vm_config *cfg, struct control_vm *cv,
				    struct migrate_in **in, struct migrate_incoming *inc,
				    struct vnc *vnc, uint64_t *deadline, int *code, int *fatal)
{
	struct machine m;
	struct console con;
	char err[512] = "";
	enum vm_stop_reason why;
	int ret;

	*fatal = 0;
	if (inc) {
		ret = machine_for_incoming(&m, cfg, inc, in, err, sizeof(err));
		if (!ret && cfg->timeout_ms)
			*deadline = clock_mono_ms() + cfg->timeout_ms;
	} else {
		ret = machine_for_run(&m, cfg, *in, err, sizeof(err));
	}
	if (ret) {
		kerr("%s", err[0] ? err : strerror(-ret));
		sandbox_abort(); /* threads waiting for the seal must be joinable */
		machine_destroy(&m);
		*fatal = EXIT_USAGE;
		return VM_STOP_ERROR;
	}
	ret = console_start(&con,
			    cfg->serial == SERIAL_STDIO ? machine_find_device(&m, "com1") : NULL,
			    &m.vm.ctl);
	if (ret == 0)
		ret = vm_start(&m.vm);
	if (ret) {
		kerr("starting the VM: %s", strerror(-ret));
		*fatal = EXIT_VM_ERROR;
	} else if ((ret = sandbox_seal(err, sizeof(err)))) {
		/* Everything of the first boot is open and its threads exist. */
		kerr("%s", err);
		*fatal = EXIT_USAGE;
	}
	if (ret) {
		sandbox_abort();
		vm_request_stop_cb(&m.vm, VM_STOP_ERROR, 0);
		console_stop(&con);
		machine_destroy(&m);
		return VM_STOP_ERROR;
	}
	control_vm_attach(cv, &m);
	vnc_attach(vnc, m.display, machine_find_device(&m, "i8042"));
	if (!vm_wait_stop(&m.vm,
			  *deadline ? MAX(*deadline - MIN(clock_mono_ms(), *deadline - 1), 1) : 0))
		vm_request_stop_cb(&m.vm, VM_STOP_TIMEOUT, EXIT_TIMEOUT);
	vnc_detach(vnc);
	control_vm_detach(cv, &m);
	vm_stop_vcpus(&m.vm);
	console_stop(&con);
	why = m.vm.stop_why;
	*code = m.vm.stop_code;
	kdebug("stopped: %s (code %d)", stop_name(why), *code);
	if (cfg->stats)
		vm_print_stats(&m.vm, stderr);
	/* A reboot in place keeps guest RAM (zeroed) for the next boot. */
	gm_retain_next(why == VM_STOP_RESET && cfg->on_reboot == ON_REBOOT_RESTART);
	machine_destroy(&m);
	return why;
}

/* A saved configuration (JSON text), with the host-side flags given now
 * (cfg) merged in, becomes cfg. */
static int adopt_config(struct vm_config *cfg, struct vm_config *saved, int rc, char *err,
			size_t errlen)
{
	rc = rc ?: config_restore_merge(saved, cfg, err, errlen);
	config_free(cfg);
	*cfg = *saved;
	return rc;
}

/* --restore: the stream is checked whole (but RAM) before anything else. */
static int restore_config(struct vm_config *cfg, struct migrate_in **in, char *err, size_t errlen)
{
	struct vm_config saved;
	int rc = migrate_restore_open(cfg->restore, in, err, errlen);

	config_defaults(&saved);
	rc = rc ?: migrate_restore_config(*in, &saved, err, errlen);
	return adopt_config(cfg, &saved, rc, err, errlen);
}

/* --incoming: the configuration the source's HELLO carries (after
 * sandbox_init, which closes inherited descriptors); the rest of the
 * stream comes while the machine is built (machine_for_incoming). */
static int incoming_config(struct vm_config *cfg, struct migrate_incoming **inc, char *err,
			   size_t errlen)
{
	struct vm_config saved;
	const char *conf;
	/* --timeout bounds the wait for the source too. */
	int rc = migrate_incoming_accept(cfg->incoming, cfg->timeout_ms, inc, &conf, err, errlen);

	if (rc)
		return rc;
	config_defaults(&saved);
	rc = config_load_json_text(&saved, "the source's configuration", conf, strlen(conf), err,
				   errlen);
	rc = adopt_config(cfg, &saved, rc, err, errlen);
	return rc ?: config_validate(cfg, err, errlen);
}

/* --landlock: the folders of the configured disks (where disk-add may find
 * more images), as *n malloc'd strings. */
static char **landlock_dirs(const struct vm_config *cfg, unsigned *n)
{
	char **dirs = calloc(cfg->ndisks + 1, sizeof(*dirs));

	*n = 0;
	for (unsigned i = 0; dirs && i < cfg->ndisks; i++) {
		const char *p = cfg->disks[i].path, *slash = strrchr(p, '/');

		dirs[*n] = slash ? strndup(p, slash == p ? 1 : (size_t)(slash - p)) : strdup(".");
		if (dirs[*n])
			(*n)++;
	}
	return dirs;
}

/* A snapshot is applied (docs/state.md): the old machine is gone; its
 * disks' children are removed, the configuration's disks become the fresh
 * children of the snapshot's, and the next boot restores its state. */
static int apply_snapshot(struct vm_config *cfg, struct control_vm *cv, struct migrate_in **in,
			  char *err, size_t errlen)
{
	struct snapshot_apply a;
	int rc;

	if (!control_vm_take_apply(cv, &a)) {
		snprintf(err, errlen, "snapshot apply: nothing to apply");
		return -EINVAL;
	}
	snapshot_apply_finish(&a);
	for (unsigned i = 0; i < cfg->ndisks; i++) {
		struct config_disk *d = &cfg->disks[i];
		char *p;

		if (d->target < 0 || d->target >= SNAP_DISKS || !a.disk[d->target])
			continue;
		p = strdup(a.disk[d->target]);
		if (!p)
			continue;
		free(d->path);
		d->path = p;
		d->blk.path = p;
		d->blk.format = BLK_FMT_VHD;
	}
	rc = migrate_restore_open(a.state, in, err, errlen);
	if (!rc)
		migrate_restore_expect_children(*in);
	snapshot_apply_free(&a);
	return rc;
}

static int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
	struct control_vm *cv;
	struct migrate_in *in = NULL;
	struct migrate_incoming *inc = NULL;
	struct vnc *vnc = NULL;
	char err[512] = "";
	int code = 0, fatal = 0, exit_code, rc;
	enum vm_stop_reason why;
	uint64_t deadline;

	config_defaults(&cfg);
	rc = config_parse_run(&cfg, argc, argv, err, sizeof(err));
	if (rc == 0 && cfg.help) {
		config_usage_run(stdout);
		config_free(&cfg);
		return 0;
	}
	if (rc == 0 && cfg.restore && cfg.incoming) {
		snprintf(err, sizeof(err), "--incoming: not together with --restore (give one)");
		rc = -EINVAL;
	}
	if (rc == 0 && cfg.restore)
		rc = restore_config(&cfg, &in, err, sizeof(err));
	if (rc || (!cfg.incoming && config_validate(&cfg, err, sizeof(err)))) {
		kerr("%s", err);
		migrate_restore_close(in);
		config_free(&cfg);
		return EXIT_USAGE;
	}
	/* A host name is resolved now: the sandbox has no resolver. */
	if (cfg.incoming) {
		char *numeric;

		if (migrate_uri_resolve(cfg.incoming, &numeric, err, sizeof(err))) {
			kerr("--incoming %s", err);
			config_free(&cfg);
			return EXIT_USAGE;
		}
		free(cfg.incoming);
		cfg.incoming = numeric;
	}
	if (cfg.quiet)
		log_threshold = LOG_ERR;
	console_block_signals();
	/* Before anything is opened or started (docs/sandbox.md). */
	{
		unsigned ndirs = 0;
		char **dirs = cfg.landlock ? landlock_dirs(&cfg, &ndirs) : NULL;

		rc = sandbox_init(&(struct sandbox_opts){ .seccomp = cfg.seccomp,
							  .user = cfg.user,
							  .landlock = cfg.landlock,
							  .landlock_dirs =
								  (const char *const *)dirs,
							  .nlandlock_dirs = ndirs },
				  err, sizeof(err));
		for (unsigned i = 0; i < ndirs; i++)
			free(dirs[i]);
		free(dirs);
	}
	if (rc == 0 && cfg.incoming && (rc = incoming_config(&cfg, &inc, err, sizeof(err)))) {
		migrate_incoming_abort(inc, rc, err);
		sandbox_abort();
	}
	if (rc) {
		/* No source within --timeout ends as a timeout does. */
		int status = rc == -ETIMEDOUT && cfg.incoming ? EXIT_TIMEOUT : EXIT_USAGE;

		kerr("%s", err);
		config_free(&cfg);
		return status;
	}
	/* The control socket outlives each boot (docs/control.md). */
	if (control_vm_create(&cv, &cfg, err, sizeof(err))) {
		kerr("%s", err);
		migrate_restore_close(in);
		migrate_incoming_abort(inc, -EINVAL, err);
		sandbox_abort();
		config_free(&cfg);
		return EXIT_USAGE;
	}
	/* An incoming migration's rounds show on the target's socket too. */
	if (inc)
		migrate_incoming_on_progress(inc, control_vm_migrate_progress, cv);
	/* So does the VNC server: clients stay connected across reboots. */
	if (cfg.display == CONFIG_DISPLAY_VNC &&
	    vnc_create(&vnc, &cfg.vnc, cfg.name, err, sizeof(err))) {
		kerr("%s", err);
		migrate_restore_close(in);
		migrate_incoming_abort(inc, -EINVAL, err);
		sandbox_abort();
		control_vm_destroy(cv, EXIT_USAGE);
		config_free(&cfg);
		return EXIT_USAGE;
	}
	deadline = cfg.timeout_ms ? clock_mono_ms() + cfg.timeout_ms : 0;
	for (;;) {
		why = run_once(&cfg, cv, &in, inc, vnc, &deadline, &code, &fatal);
		inc = NULL;
		/* Only the first boot is the restored one; RAM mapped from the
		 * file keeps its own reference to it. */
		migrate_restore_close(in);
		in = NULL;
		if (fatal) {
			exit_code = fatal;
			break;
		}
		if (why == VM_STOP_RESET && cfg.on_reboot == ON_REBOOT_RESTART) {
			control_vm_disk_paths(cv, &cfg);
			kinfo("guest reset: restarting");
			continue;
		}
		if (why == VM_STOP_APPLY) {
			if (apply_snapshot(&cfg, cv, &in, err, sizeof(err)) == 0) {
				kinfo("applying a snapshot: restarting from its state");
				continue;
			}
			kerr("%s", err);
			exit_code = EXIT_VM_ERROR;
			break;
		}
		switch (why) {
		case VM_STOP_POWEROFF:
		case VM_STOP_RESET:
		case VM_STOP_SAVED: exit_code = 0; break;
		case VM_STOP_DEBUG_EXIT:
		case VM_STOP_SIGNAL: exit_code = code; break;
		case VM_STOP_TIMEOUT:
			kerr("--timeout: the guest ran out of time; stopped");
			exit_code = EXIT_TIMEOUT;
			break;
		default: exit_code = EXIT_VM_ERROR; break;
		}
		break;
	}
	vnc_destroy(vnc);
	control_vm_destroy(cv, exit_code);
	config_free(&cfg);
	return exit_code;
}

int main(int argc, char **argv)
{
	if (getenv("KESTREL_DEBUG"))
		log_threshold = LOG_DEBUG;
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("kestrel %s\n", KESTREL_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		if (argc > 2 && !strcmp(argv[2], "run"))
			config_usage_run(stdout);
		else
			usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ctl"))
		return ctl_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "list"))
		return ctl_list_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "vhd"))
		return vhd_tool_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "snapshot"))
		return snapshot_tool_main(argc - 1, argv + 1);
	fprintf(stderr, "kestrel: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
