/* The control socket bound to the worker's VM (src/control/control_vm.c): the
 * control_ops the commands call, the run state the socket reports, the events
 * of the VM's life, and systemd's notifications (READY, STATUS, WATCHDOG).
 *
 * It lives as long as the worker, across guest restarts: `kestrel run` creates
 * it once, attaches each machine it boots (--on-reboot restart re-creates the
 * machine) and detaches it before destroying it; between two boots the
 * commands that need a machine answer "invalid-state". */
#ifndef KESTREL_CONTROL_VM_H
#define KESTREL_CONTROL_VM_H

#include <stddef.h>

#include "kestrel/util.h"

struct control_vm;
struct machine;
struct vm_config;

/* Start the control thread and (unless --control none) the socket. An
 * unusable default socket directory only warns; an explicit --control that
 * fails, or a live socket of the same name, is an error (one line in err). */
int control_vm_create(struct control_vm **out, const struct vm_config *cfg, char *err,
		      size_t errlen) WARN_UNUSED;
/* A live migration's round (as migrate_send_opts.progress takes it, opaque
 * the control_vm): a migrate-progress event. The target's too. */
struct migrate_progress;
void control_vm_migrate_progress(void *opaque, const struct migrate_progress *p);
/* The machine's vCPUs run: state "running"; READY=1 on the first boot. */
void control_vm_attach(struct control_vm *cv, struct machine *m);
/* The machine stopped (its stop reason is set) and is about to be destroyed:
 * events for how it stopped; the control thread lets go of it. */
void control_vm_detach(struct control_vm *cv, struct machine *m);
/* After the machine stopped with VM_STOP_APPLY: the snapshot to rebuild it
 * from (true, *a filled and owned by the caller), or false. */
struct snapshot_apply;
bool control_vm_take_apply(struct control_vm *cv, struct snapshot_apply *a);
/* Before a reboot rebuilds the machine from cfg: the disk files the VM
 * runs on now (a snapshot moved it onto new differencing children). */
struct vm_config;
void control_vm_disk_paths(struct control_vm *cv, struct vm_config *cfg);
/* The worker exits with exit_code: a last event, STOPPING=1, close the
 * clients, remove the socket. NULL is fine. */
void control_vm_destroy(struct control_vm *cv, int exit_code);

#endif
