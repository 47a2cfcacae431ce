/* seccomp allow-lists, one per thread kind (Firecracker's resources/seccomp,
 * crosvm's jail/seccomp/ARCH/NAME.policy), and the SIGSYS report.
 *
 * Each kind's list is a few rule groups; every rule says who needs it. ioctl
 * is allowed by request number only, mmap and mprotect never with PROT_EXEC,
 * clone only for threads and only in the spawner (clone3 says ENOSYS, so
 * glibc falls back to clone, whose flags a filter can read), socket only for
 * AF_UNIX datagrams (sd_notify), tgkill only within this process. The
 * spawner's list is the union of all the others plus what a thread's birth
 * takes (sandbox.c says why). Anything else traps: SIGSYS, whose handler
 * writes one line naming the thread and the call (from a table of names made
 * when the filters were built: nothing in the handler allocates) and ends the
 * worker with EXIT_SECCOMP.
 *
 * The lists were taken from strace -ff of the payload tier and of extra runs
 * (disks on every engine and cache mode, VHD chains, hot-plug, reboots, TAPs,
 * the control socket, signals, a terminal; scripts/seccomp-trace.sh), plus
 * the paths tests do not reach, read from the code; the whole suite, the
 * rig's Debian guests included, runs with the filters on. docs/sandbox.md. */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_tun.h>
#include <linux/fs.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "sandbox_priv.h"

/* ---- rules ---------------------------------------------------------------- */

enum sb_arg_src { SB_DATUM, SB_DATUM_PID }; /* the datum, or this process's pid */

struct sb_cmp {
	unsigned arg;
	enum scmp_compare op;
	uint64_t mask; /* SCMP_CMP_MASKED_EQ */
	uint64_t datum;
	enum sb_arg_src src;
};

struct sb_rule {
	int nr;
	uint32_t action;
	unsigned ncmp;
	struct sb_cmp cmp[2];
	const char *why;
};

/* clang-format off */
#define ALLOW(name, why) { SCMP_SYS(name), SCMP_ACT_ALLOW, 0, { { 0 } }, why }
#define ALLOW_IF(name, cmp, why) { SCMP_SYS(name), SCMP_ACT_ALLOW, 1, { cmp }, why }
#define ALLOW_IF2(name, c1, c2, why) { SCMP_SYS(name), SCMP_ACT_ALLOW, 2, { c1, c2 }, why }
#define ARG_EQ(i, v) { (i), SCMP_CMP_EQ, 0, (v), SB_DATUM }
#define ARG_BITS(i, m, v) { (i), SCMP_CMP_MASKED_EQ, (m), (v), SB_DATUM }
#define ARG_IS_PID(i) { (i), SCMP_CMP_EQ, 0, 0, SB_DATUM_PID }
/* clang-format on */
#define NO_EXEC ARG_BITS(2, PROT_EXEC, 0)

struct sb_ioctl {
	unsigned long req;
	const char *why;
};

/* A sanitizer build (see rules_sanitizer)? */
#if defined(__SANITIZE_ADDRESS__)
#define SB_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_SANITIZER 1
#endif
#endif

/* Every thread runs the C library: memory, locks, signals, its own end. */
static const struct sb_rule rules_thread[] = {
	ALLOW(futex, "mutexes, condition variables, pthread_join"),
	ALLOW(exit, "a thread ends"),
	ALLOW(exit_group, "the worker ends (from any thread: a fatal error, the SIGSYS report)"),
	ALLOW(rt_sigreturn, "returning from a signal handler (vCPU kick, glibc's SIGSETXID)"),
	ALLOW(rt_sigprocmask, "pthread_sigmask; glibc around thread start and exit"),
	ALLOW(restart_syscall, "a call interrupted by a signal resumes"),
	ALLOW(sched_yield, "glibc's spin locks"),
	ALLOW(getpid, "pthread_kill and raise name their own process"),
	ALLOW(gettid, "raise, glibc's locks"),
	ALLOW_IF(tgkill, ARG_IS_PID(0),
		 "pthread_kill (vCPU kicks, pause), abort(): this process only"),
	ALLOW(clock_gettime, "timestamps and timeouts, where the vDSO does not answer"),
	ALLOW(gettimeofday, "as clock_gettime"),
	ALLOW(time, "as clock_gettime (the RTC reads the host's time)"),
	ALLOW(clock_nanosleep, "usleep: back-off loops"),
	ALLOW(nanosleep, "usleep"),
	ALLOW_IF(mmap, NO_EXEC, "malloc arenas and large blocks, thread stacks; never executable"),
	ALLOW_IF(mprotect, NO_EXEC, "malloc arenas grow, stack guard pages; never executable"),
	ALLOW(munmap, "free, thread stacks"),
	ALLOW(mremap, "realloc of a large block"),
	ALLOW(madvise, "free; glibc releasing a finished thread's stack"),
	ALLOW(brk, "malloc"),
	ALLOW(sched_getaffinity, "glibc's malloc sizing its arena count, from whichever thread"),
	ALLOW(getrandom, "json-c seeding its hash tables (from whichever thread is first)"),
	ALLOW(write, "log lines on stderr; eventfd and irqfd signals; the serial output"),
	ALLOW(close, "descriptors of finished work (eventfds, a closed disk)"),
	{ SCMP_SYS(clone3),
	  SCMP_ACT_ERRNO(ENOSYS),
	  0,
	  { { 0 } },
	  "glibc then falls back to clone(), whose flags a filter can check" },
};

#ifndef SB_SANITIZER
/* Threads that never open a file. glibc opens /proc/sys/vm/overcommit_memory
 * the first time any thread's malloc heap shrinks; refused, it assumes the
 * default policy. So open fails (EACCES) here rather than trapping. */
static const struct sb_rule rules_no_files[] = {
	{ SCMP_SYS(openat),
	  SCMP_ACT_ERRNO(EACCES),
	  0,
	  { { 0 } },
	  "glibc's malloc, lazily; an open by anyone else fails too" },
	{ SCMP_SYS(open), SCMP_ACT_ERRNO(EACCES), 0, { { 0 } }, "as openat" },
};
#endif

/* Sanitizer builds (-DKESTREL_SANITIZE=ON, tests only) widen every list by
 * what ASan, UBSan and LeakSanitizer do in any thread: an alternate signal
 * stack per thread, the report file (log_path) and /proc/self/maps for it,
 * and LeakSanitizer's check at exit, which stops the world from a child of
 * the exiting thread that ptraces every thread (CLONE_UNTRACED: strace cannot
 * follow it; sanitizer_stoptheworld_linux_libcdep.cpp says what it does).
 * A product build has none of this. */
#ifdef SB_SANITIZER
static const struct sb_rule rules_sanitizer[] = {
	ALLOW(sigaltstack, "ASan: each thread's alternate signal stack"),
	ALLOW(openat, "ASan: log_path, /proc/self/maps"),
	ALLOW(open, "LSan: /proc/self/task (the sanitizers call open(2) itself)"),
	ALLOW(read, "ASan, LSan: /proc files"),
	ALLOW(pread64, "ASan: /proc files"),
	ALLOW(lseek, "ASan: /proc files"),
	ALLOW(fstat, "ASan: /proc files"),
	ALLOW(newfstatat, "ASan: /proc files"),
	ALLOW(stat,
	      "LSan: the suppressions file (LSAN_OPTIONS=suppressions=, its own system call)"),
	ALLOW(getdents64, "LSan: the threads in /proc/self/task"),
	ALLOW(getdents, "LSan: the threads in /proc/self/task (its own system call)"),
	ALLOW(readlink, "ASan: /proc/self/exe for the report"),
	ALLOW(readlinkat, "ASan: /proc/self/exe for the report"),
	ALLOW(prctl, "LSan: PR_SET_PTRACER, PR_SET_PDEATHSIG, PR_GET_DUMPABLE"),
	ALLOW(clone, "LSan: the stop-the-world child"),
	ALLOW(ptrace, "LSan: the child attaches to every thread"),
	ALLOW(wait4, "LSan: waiting for threads and the child"),
	ALLOW(getppid, "LSan: the child watching its parent"),
	ALLOW(rt_sigaction, "LSan: the child's handlers"),
	ALLOW(kill, "LSan, ASan: Die()"),
	ALLOW(tgkill, "LSan, ASan: Die()"),
	ALLOW(getrlimit, "ASan: stack bounds"),
	ALLOW(prlimit64, "ASan: stack bounds"),
	ALLOW(sched_getaffinity, "ASan"),
	ALLOW(uname, "ASan: the report"),
};
#endif

/* The vCPU loop and what exit handlers do: device registers, interrupts,
 * virtio-pci turning queues on (ioeventfd, irqfd, MSI routes). */
static const struct sb_rule rules_vcpu[] = {
	ALLOW(read, "eventfds (virtio-pci draining a queue's kick)"),
	ALLOW(poll, "the UART waiting for a blocking stdout (pipe, terminal)"),
	ALLOW(ppoll, "as poll"),
};

static const struct sb_ioctl ioctls_vcpu[] = {
	{ KVM_RUN, "the vCPU loop" },
	{ KVM_GET_REGS, "register dump on a fatal exit" },
	{ KVM_GET_SREGS, "register dump on a fatal exit" },
	{ KVM_IRQ_LINE, "ISA devices and virtio INTx# raising their interrupt line" },
	{ KVM_SIGNAL_MSI, "MSI-X messages that become deliverable (Bus Master Enable, unmask)" },
	{ KVM_SET_GSI_ROUTING, "the guest programming an MSI-X vector" },
	{ KVM_IOEVENTFD, "virtio-pci: queue notify registers at DRIVER_OK and reset; the 21140's "
			 "poll demands when the guest moves its BARs" },
	{ KVM_IRQFD, "virtio-pci: queue interrupts at DRIVER_OK and reset" },
	{ TUNSETOFFLOAD, "virtio-net: offloads the guest accepted, at DRIVER_OK" },
	{ TUNSETQUEUE, "virtio-net: queue pairs turned on or off at DRIVER_OK and reset" },
	{ KVM_SET_USER_MEMORY_REGION,
	  "the i440FX's PAM registers mapping 0xC0000-0xFFFFF anew "
	  "(shadow RAM or the firmware image); the std VGA's framebuffer slot following BAR 0 "
	  "(machine_lfb_map)" },
	{ KVM_GET_DIRTY_LOG,
	  "a dirty-logged slot (the VGA framebuffer) moving: its log harvested first" },
	{ KVM_CLEAR_DIRTY_LOG, "as KVM_GET_DIRTY_LOG, with manual dirty-log protection" },
};

/* Virtqueue threads (virtio-scsi, virtio-net) and block engine threads
 * (io_uring completions, libaio, the sync pool, VHD metadata). */
static const struct sb_rule rules_io[] = {
	ALLOW(read, "kick eventfds, libaio's completion eventfd"),
	ALLOW(poll, "waiting on kicks, the TAP and the stop eventfd"),
	ALLOW(ppoll, "as poll"),
	ALLOW(readv, "virtio-net, the 21140: frames from the TAP"),
	ALLOW(writev, "virtio-net, the 21140: frames to the TAP"),
	ALLOW(pread64, "VHD metadata"),
	ALLOW(pwrite64, "VHD metadata"),
	ALLOW(preadv, "the sync engine, VHD data"),
	ALLOW(pwritev, "the sync engine, VHD data"),
	ALLOW(fsync, "flushes (sync engine, libaio's helper, VHD)"),
	ALLOW(fdatasync, "flushes (sync engine, libaio's helper, VHD)"),
	ALLOW(fallocate, "discard and write-zeroes (sync engine, libaio's helper, VHD)"),
	ALLOW(ftruncate, "VHD: cutting off a footer a full disk left half-written"),
	ALLOW(fstat, "VHD: the file's size before a block is added"),
	ALLOW(newfstatat, "VHD: the file's size (glibc's fstat)"),
	ALLOW(io_uring_enter, "submitting to and waiting on an io_uring"),
	ALLOW(io_submit, "libaio: submitting"),
	ALLOW(io_getevents, "libaio: reaping"),
};

static const struct sb_ioctl ioctls_io[] = {
	{ KVM_IRQ_LINE, "virtio-pci INTx# when the guest has no MSI-X; the 21140's INTA#" },
	{ KVM_SIGNAL_MSI, "virtio-pci: MSI-X messages without an irqfd" },
	{ TUNSETOFFLOAD, "virtio-net control queue: offloads the guest changed" },
	{ TUNSETQUEUE, "virtio-net control queue: the number of queue pairs" },
	{ BLKGETSIZE64, "VHD on a block device: its size" },
};

/* Opening a disk at run time (disk-add, a reboot, timed hot-plug) and what
 * creating or closing a block engine takes. */
static const struct sb_rule rules_disk_open[] = {
	ALLOW(openat, "disk-add, VHD parents; /proc/self/smaps for stats"),
	ALLOW(read, "files, eventfds"),
	ALLOW(pread64, "VHD headers and metadata"),
	ALLOW(pwrite64, "VHD metadata"),
	ALLOW(lseek, "file sizes"),
	ALLOW(fstat, "disk size and type"),
	ALLOW(newfstatat, "disk size and type; the control socket's owner at exit"),
	ALLOW(statx, "O_DIRECT alignment (STATX_DIOALIGN)"),
	ALLOW(readlink, "realpath: where a VHD parent really is (lstat and readlink)"),
	ALLOW(fcntl, "disk locks (F_OFD_SETLK), descriptor flags, kept descriptors (F_DUPFD)"),
	ALLOW(fsync, "VHD metadata"),
	ALLOW(fdatasync, "VHD metadata"),
	ALLOW(fallocate, "probing discard support; VHD"),
	ALLOW(ftruncate, "VHD"),
	ALLOW(eventfd2, "a new device's and block engine's eventfds"),
	ALLOW(io_uring_setup, "a new disk's io_uring engine"),
	ALLOW(io_uring_register, "probing the ring's opcodes"),
	ALLOW(io_uring_enter, "a closing engine's last submission"),
	ALLOW(io_setup, "a new disk's libaio engine"),
	ALLOW(io_destroy, "a closing libaio engine"),
};

static const struct sb_ioctl ioctls_disk_open[] = {
	{ BLKGETSIZE64, "a block-device disk's size" },
	{ BLKSSZGET, "a block-device disk's sector size" },
	{ KVM_IRQ_LINE, "virtio events to the guest (hot-plug, link state) by INTx#" },
	{ KVM_SIGNAL_MSI, "virtio events to the guest by MSI-X" },
	{ TUNSETOFFLOAD, "net-link; a reboot setting up the kept TAP queues" },
	{ TUNSETQUEUE, "net-link; a reboot setting up the kept TAP queues" },
};

/* sd_notify (src/control/notify.c): a datagram socket per message. */
static const struct sb_rule rules_notify[] = {
	ALLOW_IF2(socket, ARG_EQ(0, AF_UNIX), ARG_BITS(1, 0xf, SOCK_DGRAM),
		  "sd_notify: STATUS=, WATCHDOG=1, READY=1 (a datagram, never a stream)"),
	ALLOW(sendto, "sd_notify; replies to control clients (send)"),
};

/* The dirty log (src/vm/guest_mem_dirty.c): the control socket's dirty-log
 * command turns it on and off and reads it; a slot changing while it is on
 * (a reboot's teardown) harvests it first. */
static const struct sb_rule rules_dirty_log[] = {
	ALLOW(mremap, "slot bitmaps grow"),
};

static const struct sb_ioctl ioctls_dirty_log[] = {
	{ KVM_SET_USER_MEMORY_REGION,
	  "dirty-log start/stop: KVM_MEM_LOG_DIRTY_PAGES on RAM slots" },
	{ KVM_GET_DIRTY_LOG, "dirty-log fetch, a logged slot changing" },
	{ KVM_CLEAR_DIRTY_LOG, "dirty-log fetch with manual protection" },
};

static const struct sb_rule rules_control[] = {
	ALLOW(epoll_wait, "the control thread's loop"),
	ALLOW(epoll_pwait, "as epoll_wait"),
	ALLOW(epoll_ctl, "clients coming and going"),
	ALLOW(accept4, "a new client"),
	ALLOW(recvfrom, "client requests (recv)"),
	ALLOW(poll, "the hot-plug timer (virtio-scsi's add-after test hook)"),
	ALLOW(fchmod, "screendump: the new file 0644, not mkstemp's 0600"),
	ALLOW(rename, "screendump: the finished file over the target"),
	ALLOW(unlink, "screendump: a failed dump's temporary file"),
};

static const struct sb_rule rules_console[] = {
	ALLOW(read, "stdin, the signalfd"),
	ALLOW(poll, "stdin, the signalfd, the stop eventfd"),
	ALLOW(ppoll, "as poll"),
};

/* The VNC server (src/display/vnc.c): its own accept, libvncserver's reads,
 * writes and select()s on the clients' sockets, the display's eventfd. */
static const struct sb_rule rules_display[] = {
	ALLOW(poll, "the server's wait: listening socket, clients, notification, wake-up"),
	ALLOW(ppoll, "as poll"),
	ALLOW(select, "libvncserver's rfbCheckFds, rfbReadExact, rfbWriteExact"),
	ALLOW(pselect6, "as select"),
	ALLOW(accept4, "a new VNC client"),
	ALLOW(read, "client messages; the eventfds"),
	ALLOW(recvfrom, "libvncserver peeking at a client's first bytes (recv MSG_PEEK)"),
	ALLOW(setsockopt, "TCP_NODELAY on a client's socket"),
	ALLOW(getpeername, "libvncserver names a new client by its address"),
	ALLOW(getsockname, "as getpeername"),
	ALLOW(fcntl, "non-blocking client sockets; the dup of the display's eventfd"),
	ALLOW(shutdown, "libvncserver closing a client"),
};

static const struct sb_ioctl ioctls_display[] = {
	{ KVM_IRQ_LINE, "a client's keys and pointer raising IRQ 1 and 12 (the i8042)" },
};

static const struct sb_ioctl ioctls_console[] = {
	{ KVM_IRQ_LINE, "the UART's interrupt on input" },
};

/* Saving the VM (migrate/save.c, on the thread control_vm.c starts for
 * `save`): every vCPU's and the VM's state read from KVM, the disks
 * flushed (rules_disk_open: the engines), RAM and records written to a new
 * file beside the target, which is then renamed over it; afterwards the
 * devices resume (virtio-pci: ioeventfds, irqfds, MSI routes) unless the
 * worker ends. /proc/self/pagemap tells the pages never touched. */
static const struct sb_rule rules_save[] = {
	ALLOW(rename, "the finished state file over its name"),
	ALLOW(renameat, "as rename"),
	ALLOW(renameat2, "as rename"),
	ALLOW(unlink, "the temporary file, after a failure"),
	ALLOW(unlinkat, "as unlink"),
	ALLOW(io_submit, "a disk's flush on the libaio engine"),
	ALLOW(poll, "waiting for a disk's flush"),
	ALLOW(mkdir, "snapshots: the VM directory's snapshots/ folder (migrate/snapshot.c)"),
	ALLOW(mkdirat, "as mkdir"),
	ALLOW(access, "snapshots: a free name for a new differencing child"),
	ALLOW(faccessat, "as access"),
	ALLOW(faccessat2, "as access"),
	ALLOW(umask, "snapshots: a new child's mode follows the umask (vhd/vhd_build.c)"),
	ALLOW(fchmod, "as umask"),
	ALLOW(link, "a new child into place where renameat2 has no RENAME_NOREPLACE"),
	ALLOW(linkat, "as link"),
	ALLOW(getcwd, "realpath() of a disk given by a relative path, for the saved configuration"),
};

static const struct sb_ioctl ioctls_save[] = {
	{ KVM_CHECK_EXTENSION, "which state parts this KVM has (XSAVE, XCRs, debug registers)" },
	{ KVM_GET_MSR_INDEX_LIST, "the MSRs to save" },
	{ KVM_GET_MP_STATE, "vCPU state" },
	{ KVM_GET_REGS, "vCPU state" },
	{ KVM_GET_SREGS, "vCPU state" },
	{ KVM_GET_FPU, "vCPU state, without XSAVE" },
	{ KVM_GET_XSAVE, "vCPU state" },
	{ KVM_GET_XSAVE2, "vCPU state" },
	{ KVM_GET_XCRS, "vCPU state" },
	{ KVM_GET_DEBUGREGS, "vCPU state" },
	{ KVM_GET_LAPIC, "vCPU state" },
	{ KVM_GET_TSC_KHZ, "vCPU state" },
	{ KVM_GET_MSRS, "vCPU state: TSC, kvmclock and the other MSRs" },
	{ KVM_GET_VCPU_EVENTS, "vCPU state: pending exceptions, interrupts, NMIs" },
	{ KVM_GET_IRQCHIP, "the in-kernel PICs and IOAPIC" },
	{ KVM_GET_PIT2, "the in-kernel PIT" },
	{ KVM_GET_CLOCK, "the kvmclock" },
	{ KVM_IOEVENTFD, "resume (--keep-running): virtio-pci queue notifiers" },
	{ KVM_IRQFD, "resume: virtio-pci queue interrupts" },
	{ KVM_SET_GSI_ROUTING, "resume: MSI-X routes" },
};

/* A live migration's source (migrate/outgoing.c, migrate/mig_sock.c): one
 * connection it makes itself, to an address the control socket's client
 * gave; RAM goes out with sendmsg straight from guest memory. */
static const struct sb_rule rules_migrate[] = {
	ALLOW_IF(socket, ARG_EQ(0, AF_UNIX), "the connection to a unix: target"),
	ALLOW_IF(socket, ARG_EQ(0, AF_INET), "the connection to a tcp: target"),
	ALLOW_IF(socket, ARG_EQ(0, AF_INET6), "the connection to a tcp:[v6] target"),
	ALLOW(connect, "to the target"),
	ALLOW(setsockopt, "TCP_NODELAY and buffer sizes"),
	ALLOW(sendmsg, "messages and RAM pages to the target"),
	ALLOW(sendto, "as sendmsg"),
	ALLOW(recvfrom, "the target's replies (recv)"),
	ALLOW(poll, "waiting for the socket, with a cancel check"),
	ALLOW(ppoll, "as poll"),
};

/* The main thread waits for the VM to stop and, on a guest reboot, builds the
 * machine again: KVM VM and vCPUs, RAM, devices, disks, TAPs (all from kept
 * descriptors), then the console and the vCPU threads (via the spawner). */
static const struct sb_rule rules_main[] = {
	ALLOW(mincore, "zeroing the RAM a rebooting guest touched"),
	ALLOW(signalfd4, "the console's signalfd, each boot"),
	ALLOW_IF(rt_sigaction, ARG_EQ(0, SIGUSR1), "the vCPU kick handler, each boot"),
	ALLOW(unlink, "removing the control socket at exit"),
	/* --incoming seals once the machine is built, before RAM arrives, so
	 * that the control socket answers during the pre-copy. */
	ALLOW(recvfrom, "--incoming: the source's pages and state (recv)"),
	ALLOW(sendmsg, "--incoming: the replies to the source"),
	ALLOW(poll, "--incoming: waiting for the source"),
	ALLOW(ppoll, "as poll"),
};

static const struct sb_ioctl ioctls_main[] = {
	{ KVM_GET_API_VERSION, "reboot: checking /dev/kvm" },
	{ KVM_CHECK_EXTENSION, "reboot: checking /dev/kvm" },
	{ KVM_CREATE_VM, "reboot: the new VM" },
	{ KVM_GET_VCPU_MMAP_SIZE, "reboot: vCPU run area" },
	{ KVM_GET_SUPPORTED_CPUID, "reboot: CPUID table" },
	{ KVM_SET_USER_MEMORY_REGION, "reboot: RAM and ROM slots" },
	{ KVM_ENABLE_CAP, "reboot: manual dirty-log protection" },
	{ KVM_SET_TSS_ADDR, "reboot: irqchip setup" },
	{ KVM_SET_IDENTITY_MAP_ADDR, "reboot: irqchip setup" },
	{ KVM_CREATE_IRQCHIP, "reboot: in-kernel PIC/IOAPIC" },
	{ KVM_CREATE_PIT2, "reboot: in-kernel PIT" },
	{ KVM_SET_GSI_ROUTING, "reboot: interrupt routes, MSI-X vectors" },
	{ KVM_CREATE_VCPU, "reboot: vCPUs" },
	{ KVM_SET_CPUID2, "reboot: vCPU CPUID" },
	{ KVM_GET_SREGS, "reboot: boot vCPU state" },
	{ KVM_SET_SREGS, "reboot: boot vCPU state" },
	{ KVM_SET_REGS, "reboot: boot vCPU state" },
	{ KVM_SET_FPU, "reboot: boot vCPU state" },
	{ KVM_SET_MSRS, "reboot: vCPU MSRs; applying a snapshot: its vCPUs' MSRs" },
	{ KVM_GET_MSR_INDEX_LIST, "applying a snapshot: the MSRs this KVM restores" },
	{ KVM_GET_MSRS, "applying a snapshot: which listed MSRs KVM returns" },
	{ KVM_SET_MP_STATE, "applying a snapshot: vCPU state (migrate/vcpu_state.c)" },
	{ KVM_SET_XSAVE, "applying a snapshot: vCPU state" },
	{ KVM_SET_XCRS, "applying a snapshot: vCPU state" },
	{ KVM_SET_DEBUGREGS, "applying a snapshot: vCPU state" },
	{ KVM_SET_LAPIC, "applying a snapshot: vCPU state" },
	{ KVM_SET_VCPU_EVENTS, "applying a snapshot: vCPU state" },
	{ KVM_SET_IRQCHIP, "applying a snapshot: the in-kernel PICs and IOAPIC" },
	{ KVM_SET_PIT2, "applying a snapshot: the in-kernel PIT" },
	{ KVM_SET_CLOCK, "applying a snapshot: the kvmclock" },
	{ KVM_REGISTER_COALESCED_MMIO, "reboot: coalesced 0xCF8 writes" },
	{ KVM_IOEVENTFD, "virtio devices made or torn down at a reboot" },
	{ KVM_IRQFD, "virtio devices made or torn down at a reboot" },
	{ TUNGETFEATURES, "reboot: the kept TAP queues set up again" },
	{ TUNSETVNETHDRSZ, "reboot: the kept TAP queues set up again" },
	{ TUNSETVNETLE, "reboot: the kept TAP queues set up again" },
	{ TCGETS, "reboot: the console's terminal (isatty, raw mode)" },
	{ TCSETS, "the console's terminal: raw mode and back" },
	{ TCSETSW, "the console's terminal: raw mode and back" },
	{ TCSETSF, "the console's terminal: raw mode and back" },
};

/* What a thread's birth takes, in the spawner (and in the new thread until it
 * narrows to its own list). */
static const struct sb_rule rules_spawner[] = {
	ALLOW_IF(clone, ARG_BITS(0, CLONE_THREAD, CLONE_THREAD), "pthread_create: threads only"),
	ALLOW(set_robust_list, "a new thread registers its robust futex list"),
	ALLOW(rseq, "a new thread registers its restartable sequence area"),
	ALLOW_IF(prctl, ARG_EQ(0, PR_SET_NAME), "a new thread names itself"),
	ALLOW(seccomp, "a new thread installs its own filter"),
};

struct sb_group {
	const struct sb_rule *rules;
	size_t nrules;
	const struct sb_ioctl *ioctls;
	size_t nioctls;
};

#define RULES(r)                          \
	{                                 \
		r, ARRAY_SIZE(r), NULL, 0 \
	}
#define RULES_IOCTLS(r, i)                         \
	{                                          \
		r, ARRAY_SIZE(r), i, ARRAY_SIZE(i) \
	}
#define SB_MAX_GROUPS 7

#ifdef SB_SANITIZER
#define SB_SANITIZER_OR_NO_FILES RULES(rules_sanitizer)
#define SB_SANITIZER_RULES	 RULES(rules_sanitizer)
#else
#define SB_SANITIZER_OR_NO_FILES RULES(rules_no_files)
#define SB_SANITIZER_RULES       \
	{                        \
		NULL, 0, NULL, 0 \
	} /* the end of the list */
#endif

/* The lists: each kind is a few groups. */
static const struct sb_group sb_kinds[SANDBOX_KIND_NR][SB_MAX_GROUPS] = {
	[SANDBOX_MAIN] = { RULES(rules_thread), RULES_IOCTLS(rules_main, ioctls_main),
			   RULES_IOCTLS(rules_disk_open, ioctls_disk_open), RULES(rules_notify),
			   RULES_IOCTLS(rules_dirty_log, ioctls_dirty_log), SB_SANITIZER_RULES },
	[SANDBOX_VCPU] = { RULES(rules_thread), SB_SANITIZER_OR_NO_FILES,
			   RULES_IOCTLS(rules_vcpu, ioctls_vcpu) },
	[SANDBOX_IO] = { RULES(rules_thread), SB_SANITIZER_OR_NO_FILES,
			 RULES_IOCTLS(rules_io, ioctls_io) },
	[SANDBOX_CONTROL] = { RULES(rules_thread), RULES(rules_control),
			      RULES_IOCTLS(rules_disk_open, ioctls_disk_open), RULES(rules_notify),
			      RULES_IOCTLS(rules_dirty_log, ioctls_dirty_log), SB_SANITIZER_RULES },
	/* The VGA's refresh runs on the server's thread: it fetches the
	 * framebuffer slot's dirty log. */
	[SANDBOX_DISPLAY] = { RULES(rules_thread), SB_SANITIZER_OR_NO_FILES,
			      RULES_IOCTLS(rules_display, ioctls_display),
			      RULES_IOCTLS(rules_dirty_log, ioctls_dirty_log) },
	[SANDBOX_CONSOLE] = { RULES(rules_thread), SB_SANITIZER_OR_NO_FILES,
			      RULES_IOCTLS(rules_console, ioctls_console) },
	[SANDBOX_SAVE] = { RULES(rules_thread), RULES_IOCTLS(rules_disk_open, ioctls_disk_open),
			   RULES_IOCTLS(rules_save, ioctls_save), SB_SANITIZER_RULES },
	[SANDBOX_MIGRATE] = { RULES(rules_thread), RULES_IOCTLS(rules_disk_open, ioctls_disk_open),
			      RULES_IOCTLS(rules_save, ioctls_save),
			      RULES_IOCTLS(rules_dirty_log, ioctls_dirty_log), RULES(rules_migrate),
			      SB_SANITIZER_RULES },
	/* + every ALLOW rule of the other kinds: sb_add_kind */
	[SANDBOX_SPAWNER] = { RULES(rules_thread), RULES(rules_spawner) },
};

/* ---- building ------------------------------------------------------------- */

#define SB_NR_NAMES 512

struct sb_prog {
	struct sock_filter *insns;
	unsigned short len;
	unsigned rules, syscalls;
	uint8_t seen[SB_NR_NAMES / 8]; /* the system calls some rule allows */
};

static struct sb_prog sb_progs[SANDBOX_KIND_NR];
static const char *sb_names[SB_NR_NAMES];

static int sb_add_rule(scmp_filter_ctx ctx, const struct sb_rule *r, const struct sb_cmp *extra,
		       struct sb_prog *p)
{
	struct scmp_arg_cmp c[3];
	unsigned n = 0;

	for (unsigned i = 0; i < r->ncmp; i++) {
		const struct sb_cmp *s = &r->cmp[i];
		uint64_t datum = s->src == SB_DATUM_PID ? (uint64_t)getpid() : s->datum;

		c[n++] = (struct scmp_arg_cmp){ .arg = s->arg,
						.op = s->op,
						.datum_a = s->op == SCMP_CMP_MASKED_EQ ? s->mask
										       : datum,
						.datum_b = datum };
	}
	if (extra)
		c[n++] = (struct scmp_arg_cmp){ .arg = extra->arg,
						.op = extra->op,
						.datum_a = extra->mask,
						.datum_b = extra->datum };
	p->rules++;
	if (r->action == SCMP_ACT_ALLOW && r->nr >= 0 && r->nr < SB_NR_NAMES &&
	    !(p->seen[r->nr / 8] & (1u << (r->nr % 8)))) {
		p->seen[r->nr / 8] |= (uint8_t)(1u << (r->nr % 8));
		p->syscalls++;
	}
	return seccomp_rule_add_array(ctx, r->action, r->nr, n, c);
}

/* ioctl rules compare the request's low 32 bits (the kernel's ioctl takes an
 * unsigned int). union_only: the spawner taking another kind's rules, where
 * only what is allowed counts (a refusal there is that kind's business). */
static int sb_add_group(scmp_filter_ctx ctx, const struct sb_group *g, bool union_only,
			struct sb_prog *p)
{
	static const struct sb_rule ioctl_rule = ALLOW(ioctl, "see the request's reason");
	int r = 0;

	for (size_t i = 0; i < g->nrules && !r; i++)
		if (!union_only || g->rules[i].action == SCMP_ACT_ALLOW)
			r = sb_add_rule(ctx, &g->rules[i], NULL, p);
	for (size_t j = 0; j < g->nioctls && !r; j++) {
		struct sb_cmp req = ARG_BITS(1, 0xffffffffu, (uint32_t)g->ioctls[j].req);

		r = sb_add_rule(ctx, &ioctl_rule, &req, p);
	}
	return r;
}

static int sb_add_kind(scmp_filter_ctx ctx, enum sandbox_kind kind, bool union_only,
		       struct sb_prog *p)
{
	int r = 0;

	for (int i = 0; i < SB_MAX_GROUPS && sb_kinds[kind][i].rules && !r; i++)
		r = sb_add_group(ctx, &sb_kinds[kind][i], union_only, p);
	if (r == 0 && kind == SANDBOX_SPAWNER)
		for (int k = 0; k < SANDBOX_KIND_NR && !r; k++)
			if (k != SANDBOX_SPAWNER)
				r = sb_add_kind(ctx, (enum sandbox_kind)k, true, p);
	return r;
}

/* libseccomp 2.5 exports BPF only to a descriptor: through a memfd. */
static int sb_export(scmp_filter_ctx ctx, struct sb_prog *p)
{
	int fd = memfd_create("kestrel-seccomp", MFD_CLOEXEC), r = 0;
	off_t len;

	if (fd < 0)
		return -errno;
	r = seccomp_export_bpf(ctx, fd);
	if (r == 0) {
		len = lseek(fd, 0, SEEK_END);
		if (len <= 0 || len % sizeof(struct sock_filter) ||
		    len / sizeof(struct sock_filter) > BPF_MAXINSNS)
			r = -E2BIG;
	}
	if (r == 0) {
		p->insns = malloc((size_t)len);
		p->len = (unsigned short)(len / sizeof(struct sock_filter));
		if (!p->insns || pread(fd, p->insns, (size_t)len, 0) != len)
			r = -EIO;
	}
	close(fd);
	return r;
}

static int sb_build_kind(enum sandbox_kind kind, bool log_only)
{
	scmp_filter_ctx ctx = seccomp_init(log_only ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
	struct sb_prog *p = &sb_progs[kind];
	int r;

	if (!ctx)
		return -ENOMEM;
	r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	r = r ?: seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	r = r ?: sb_add_kind(ctx, kind, false, p);
	r = r ?: sb_export(ctx, p);
	seccomp_release(ctx);
	return r;
}

static void sb_build_names(void)
{
	for (int nr = 0; nr < SB_NR_NAMES; nr++)
		sb_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
}

/* ---- the SIGSYS report ---------------------------------------------------- */

static __thread enum sandbox_kind sb_thread_kind = SANDBOX_MAIN;
static __thread char sb_thread_name[16] = "main";
static const char *sb_journal_prefix = "";

void sb_seccomp_set_thread(enum sandbox_kind kind, const char *name)
{
	sb_thread_kind = kind;
	snprintf(sb_thread_name, sizeof(sb_thread_name), "%s", name);
}

static size_t sb_cat(char *buf, size_t at, size_t cap, const char *s)
{
	while (*s && at + 1 < cap)
		buf[at++] = *s++;
	return at;
}

static size_t sb_cat_uint(char *buf, size_t at, size_t cap, unsigned long v)
{
	char d[24];
	int n = 0;

	do {
		d[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n > 0 && at + 1 < cap)
		buf[at++] = d[--n];
	return at;
}

/* Async-signal-safe: fixed strings, the name table, write(2), _exit(2). */
static void sb_sigsys(int sig, siginfo_t *si, void *uc)
{
	char msg[256];
	size_t n = 0, cap = sizeof(msg);
	int nr = si->si_syscall;
	const char *name = nr >= 0 && nr < SB_NR_NAMES && sb_names[nr] ? sb_names[nr] : "?";

	(void)sig;
	(void)uc;
	n = sb_cat(msg, n, cap, sb_journal_prefix);
	n = sb_cat(msg, n, cap, "kestrel: error: seccomp: thread ");
	n = sb_cat(msg, n, cap, sandbox_kind_name(sb_thread_kind));
	n = sb_cat(msg, n, cap, " (");
	n = sb_cat(msg, n, cap, sb_thread_name);
	n = sb_cat(msg, n, cap, ") made a forbidden system call ");
	n = sb_cat(msg, n, cap, name);
	n = sb_cat(msg, n, cap, " (nr ");
	n = sb_cat_uint(msg, n, cap, (unsigned long)nr);
	n = sb_cat(msg, n, cap, ")\n");
	if (write(STDERR_FILENO, msg, n) < 0)
		n = 0;
	/* The system call itself: a sanitizer's _exit interceptor would run
	 * its own checks, with calls this thread may not make. */
	syscall(SYS_exit_group, EXIT_SECCOMP);
}

int sb_seccomp_build(bool log_only, char *err, size_t errlen)
{
	struct sigaction sa = { .sa_sigaction = sb_sigsys, .sa_flags = SA_SIGINFO };
	int r;

	sb_build_names();
	if (log_journal_stream())
		sb_journal_prefix = "<3>";
	for (int k = 0; k < SANDBOX_KIND_NR; k++) {
		r = sb_build_kind((enum sandbox_kind)k, log_only);
		if (r) {
			snprintf(err, errlen, "seccomp: building the %s filter: %s",
				 sandbox_kind_name((enum sandbox_kind)k), strerror(-r));
			return r;
		}
		kdebug("seccomp: %s: %u system calls, %u rules, %u BPF instructions",
		       sandbox_kind_name((enum sandbox_kind)k), sb_progs[k].syscalls,
		       sb_progs[k].rules, sb_progs[k].len);
	}
	sigfillset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0) {
		snprintf(err, errlen, "seccomp: SIGSYS handler: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

int sb_seccomp_install(enum sandbox_kind kind)
{
	struct sock_fprog prog = { .len = sb_progs[kind].len, .filter = sb_progs[kind].insns };

	if (!prog.filter)
		return -EINVAL;
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0 ? -errno : 0;
}

unsigned sb_seccomp_rule_count(enum sandbox_kind kind)
{
	return sb_progs[kind].rules;
}

unsigned sb_seccomp_syscall_count(enum sandbox_kind kind)
{
	return sb_progs[kind].syscalls;
}

bool sb_seccomp_allows(enum sandbox_kind kind, int nr)
{
	return nr >= 0 && nr < SB_NR_NAMES && (sb_progs[kind].seen[nr / 8] & (1u << (nr % 8)));
}
