/* lease-hold FILE: holds a write lease on FILE (fcntl(2) "Leases"), as a file
 * server such as Samba does, for the control socket's tests: another
 * process's open(2) of FILE then waits until the lease is let go -- a real
 * open that takes as long as the test wants. Prints "held" once it has the
 * lease, "break" when an opener asks for it (the kernel's SIGIO), and lets
 * go ("released") on SIGTERM. Exit 0; 77 when this kernel or file system
 * gives no lease. */
#define _GNU_SOURCE /* F_SETLEASE */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct signalfd_siginfo si;
	sigset_t sigs;
	int fd, sfd;

	if (argc != 2) {
		fprintf(stderr, "usage: lease-hold FILE\n");
		return 2;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGIO);
	sigaddset(&sigs, SIGTERM);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (sfd < 0 || fd < 0 || fcntl(fd, F_SETLEASE, F_WRLCK) < 0) {
		perror("lease-hold");
		return 77;
	}
	printf("held\n");
	fflush(stdout);
	while (read(sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGIO) {
		printf("break\n");
		fflush(stdout);
	}
	fcntl(fd, F_SETLEASE, F_UNLCK);
	printf("released\n");
	return 0;
}
