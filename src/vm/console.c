/* The worker's event thread: host signals and serial input from stdin.
 * stdin goes to the UART in raw mode when it is a terminal; Ctrl-A x quits
 * (as in QEMU), Ctrl-A Ctrl-A sends one Ctrl-A. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "kestrel/console.h"
#include "kestrel/devices.h"
#include "kestrel/sandbox.h"

#define CTRL_A 0x01

static struct termios saved_tio;
static bool tio_saved;

void console_restore_tty(void)
{
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
	tio_saved = false;
}

static void console_raw_tty(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio))
		return;
	tio_saved = true;
	t = saved_tio;
	cfmakeraw(&t);
	t.c_oflag |= OPOST | ONLCR; /* our own messages still get CR-LF */
	tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

/* Feed stdin to the UART, holding back what its FIFO can't take yet. */
static void console_input(struct console *con)
{
	uint8_t buf[64];
	size_t n = 0;
	ssize_t r;

	if (con->pending_len) {
		size_t done = uart_receive(con->uart, con->pending, con->pending_len);

		memmove(con->pending, con->pending + done, con->pending_len - done);
		con->pending_len -= done;
		return;
	}
	r = read(STDIN_FILENO, buf, sizeof(buf));
	if (r <= 0) {
		if (r == 0 || (errno != EINTR && errno != EAGAIN))
			con->stdin_open = false;
		return;
	}
	for (ssize_t i = 0; i < r; i++) {
		uint8_t c = buf[i];

		if (con->escape) {
			con->escape = false;
			if (c == 'x' || c == 'X') {
				fprintf(stderr,
					"\r\nkestrel: terminated from the console (Ctrl-A x)\r\n");
				vm_request_stop(con->ctl, VM_STOP_POWEROFF, 0);
				return;
			}
			if (c != CTRL_A)
				continue;
		} else if (c == CTRL_A && con->raw) {
			con->escape = true;
			continue;
		}
		con->pending[n++] = c;
	}
	con->pending_len = n;
}

static void *console_thread(void *arg)
{
	struct console *con = arg;

	for (;;) {
		struct pollfd p[3] = {
			{ con->stop_fd, POLLIN, 0 },
			{ con->sig_fd, POLLIN, 0 },
			{ STDIN_FILENO, POLLIN, 0 },
		};
		int nfds = (con->uart && con->stdin_open && !con->pending_len) ? 3 : 2;

		/* With input held back, poll with a short timeout to retry the FIFO. */
		if (poll(p, nfds, con->pending_len ? 5 : -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(con->sig_fd, &si, sizeof(si)) == sizeof(si)) {
				con->signal = (int)si.ssi_signo;
				vm_request_stop(con->ctl, VM_STOP_SIGNAL, 128 + (int)si.ssi_signo);
			}
		}
		if (con->pending_len || (nfds == 3 && p[2].revents))
			console_input(con);
	}
	return NULL;
}

int console_start(struct console *con, struct device *uart, const struct vm_ctl *ctl)
{
	sigset_t set;

	memset(con, 0, sizeof(*con));
	con->uart = uart;
	con->ctl = ctl;
	con->stdin_open = uart != NULL;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	con->sig_fd = signalfd(-1, &set, SFD_CLOEXEC);
	con->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (con->sig_fd < 0 || con->stop_fd < 0)
		return -errno;
	if (uart) {
		console_raw_tty();
		con->raw = tio_saved;
	}
	if (sandbox_thread_start(&con->thread, SANDBOX_CONSOLE, "console", console_thread, con))
		return -EAGAIN;
	con->running = true;
	return 0;
}

void console_stop(struct console *con)
{
	if (con->running) {
		uint64_t one = 1;

		if (write(con->stop_fd, &one, sizeof(one)) < 0)
			perror("kestrel: console stop");
		pthread_join(con->thread, NULL);
		con->running = false;
	}
	if (con->sig_fd > 0)
		close(con->sig_fd);
	if (con->stop_fd > 0)
		close(con->stop_fd);
	con->sig_fd = con->stop_fd = -1;
	console_restore_tty();
}

void console_block_signals(void)
{
	sigset_t set;

	/* Every thread inherits this mask; the console thread takes the
	 * signals through its signalfd. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
}
