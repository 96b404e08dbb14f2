/*
 * Experiment for kernel-notes/fd-limits.md: can one process hold more
 * sockets than RLIMIT_NOFILE when they are io_uring direct descriptors
 * spread over several rings?
 *
 * Child processes (each well under the fd limit) open CLIENTS connections in
 * all to a loopback listener, each child from its own source address
 * 127.0.0.(2+i). The parent accepts them with multishot accept straight into
 * the sparse fixed-file table of ring A (IORING_FILE_INDEX_ALLOC) until the
 * kernel says -ENFILE, then into ring B. Each table is registered with
 * RLIMIT_NOFILE slots, the most the kernel allows. Then it sends one byte on
 * every direct descriptor (IOSQE_FIXED_FILE) and counts the sends that
 * worked, and the children count the bytes they receive. A connection
 * that meets a full table is counted as lost (see fd-limits.md). The parent's
 * /proc/self/fd count is printed at the peak.
 *
 * Build and run (not part of the meson build; loopback only, bounded):
 *   cc -O2 -Wall -Wextra -o /tmp/fd_beyond_limit \
 *      kernel-notes/experiments/fd_beyond_limit.c -luring
 *   /tmp/fd_beyond_limit [clients, default 27000]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILDREN 3
#define MAX_CLIENTS 60000

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and the DIR's own fd */
}

/* A child: open n connections from 127.0.0.src, report, then wait for one
 * byte on each and report how many arrived. */
static int child(int port, int src, int n, int report_fd, int go_fd)
{
	int *fds = calloc((size_t)n, sizeof(int));
	int ok = 0, got = 0;
	char addr[32];
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr_in la = {.sin_family = AF_INET};

	snprintf(addr, sizeof(addr), "127.0.0.%d", src);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	inet_pton(AF_INET, addr, &la.sin_addr);
	for (int i = 0; i < n; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[i] < 0)
			break;
		if (bind(fds[i], (struct sockaddr *)&la, sizeof(la)) < 0 ||
		    connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			fprintf(stderr, "child %d: connection %d: %s\n", src, i, strerror(errno));
			close(fds[i]);
			break;
		}
		ok++;
	}
	if (write(report_fd, &ok, sizeof(ok)) != sizeof(ok))
		return 1;
	char c;
	if (read(go_fd, &c, 1) != 1) /* the parent has sent its bytes */
		return 1;
	for (int i = 0; i < ok; i++) {
		struct pollfd p = {.fd = fds[i], .events = POLLIN};
		if (poll(&p, 1, 2000) == 1 && read(fds[i], &c, 1) == 1)
			got++;
	}
	if (write(report_fd, &got, sizeof(got)) != sizeof(got))
		return 1;
	return 0;
}

static void arm_accept(struct io_uring *r, int lfd)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(r);
	io_uring_prep_multishot_accept_direct(sqe, lfd, NULL, NULL, 0);
	io_uring_submit(r);
}

/* Send one byte on every accepted slot of ring r; returns sends that wrote 1. */
static int send_all(struct io_uring *r, const int *slots, int n)
{
	int done = 0, inflight = 0, i = 0;
	static const char byte = 'x';
	while (i < n || inflight > 0) {
		while (i < n) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(r);
			if (sqe == NULL)
				break;
			io_uring_prep_send(sqe, slots[i], &byte, 1, MSG_NOSIGNAL);
			sqe->flags |= IOSQE_FIXED_FILE;
			i++;
			inflight++;
		}
		io_uring_submit_and_wait(r, 1);
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(r, head, cqe)
		{
			if (cqe->res == 1)
				done++;
			seen++;
		}
		io_uring_cq_advance(r, seen);
		inflight -= (int)seen;
	}
	return done;
}

int main(int argc, char **argv)
{
	int clients = argc > 1 ? atoi(argv[1]) : 27000;
	struct rlimit rl;
	struct io_uring ring[2];
	static int slots[2][MAX_CLIENTS];
	int nslots[2] = {0, 0};
	int report[2], go[2];

	if (clients <= 0 || clients > MAX_CLIENTS)
		return 2;
	getrlimit(RLIMIT_NOFILE, &rl);
	printf("RLIMIT_NOFILE soft %llu hard %llu; clients %d from %d processes\n",
	       (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, clients, CHILDREN);

	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4096) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
		perror("listen");
		return 1;
	}
	int port = ntohs(sa.sin_port);

	for (int k = 0; k < 2; k++) {
		int rc = io_uring_queue_init(256, &ring[k], 0);
		if (rc == 0)
			rc = io_uring_register_files_sparse(&ring[k], (unsigned)rl.rlim_cur);
		if (rc < 0) {
			fprintf(stderr, "ring %d: %s\n", k, strerror(-rc));
			return 1;
		}
	}
	/* one more slot than the limit is refused: the table is capped */
	struct io_uring probe;
	if (io_uring_queue_init(4, &probe, 0) == 0) {
		int rc = io_uring_register_files_sparse(&probe, (unsigned)rl.rlim_cur + 1);
		printf("a table of RLIMIT_NOFILE+1 slots: %s\n", rc < 0 ? strerror(-rc) : "accepted");
		io_uring_queue_exit(&probe);
	}

	if (pipe(report) < 0 || pipe(go) < 0)
		return 1;
	pid_t kids[CHILDREN];
	for (int i = 0; i < CHILDREN; i++) {
		int n = clients / CHILDREN + (i < clients % CHILDREN);
		kids[i] = fork();
		if (kids[i] == 0) {
			close(lfd);
			_exit(child(port, 2 + i, n, report[1], go[0]));
		}
	}

	int k = 0, accepted = 0, enfile = 0, lost = 0;
	arm_accept(&ring[0], lfd);
	while (accepted + lost < clients) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = {.tv_sec = 10};
		if (io_uring_wait_cqe_timeout(&ring[k], &cqe, &ts) < 0) {
			fprintf(stderr, "no connection for 10 s after %d\n", accepted);
			break;
		}
		int res = cqe->res;
		bool more = cqe->flags & IORING_CQE_F_MORE;
		io_uring_cqe_seen(&ring[k], cqe);
		if (res >= 0) {
			slots[k][nslots[k]++] = res;
			accepted++;
		} else if (res == -ENFILE) {
			/* the kernel took the connection off the queue, found no
			 * free slot and closed it: that client is gone */
			lost++;
			if (k == 1)
				break;
			enfile = nslots[0];
			k = 1; /* ring A's table is full: go on in ring B's */
			arm_accept(&ring[1], lfd);
			continue;
		} else {
			fprintf(stderr, "accept: %s\n", strerror(-res));
		}
		if (!more)
			arm_accept(&ring[k], lfd);
	}
	int connected = 0;
	for (int i = 0; i < CHILDREN; i++) {
		int n = 0;
		if (read(report[0], &n, sizeof(n)) == sizeof(n))
			connected += n;
	}
	printf("clients connected %d; accepted as direct descriptors: ring A %d (first -ENFILE "
	       "after %d), ring B %d, total %d; lost to -ENFILE: %d\n",
	       connected, nslots[0], enfile, nslots[1], accepted, lost);
	printf("open fds in this process at the peak: %d (limit %llu)\n", count_fds(),
	       (unsigned long long)rl.rlim_cur);

	int sent = send_all(&ring[0], slots[0], nslots[0]) + send_all(&ring[1], slots[1], nslots[1]);
	for (int i = 0; i < CHILDREN; i++)
		if (write(go[1], "g", 1) != 1)
			return 1;
	int received = 0;
	for (int i = 0; i < CHILDREN; i++) {
		int n = 0;
		if (read(report[0], &n, sizeof(n)) == sizeof(n))
			received += n;
	}
	printf("one byte sent on each direct descriptor: %d sends succeeded, %d bytes received "
	       "by the clients\n",
	       sent, received);
	for (int i = 0; i < CHILDREN; i++)
		waitpid(kids[i], NULL, 0);
	io_uring_queue_exit(&ring[0]);
	io_uring_queue_exit(&ring[1]);
	close(lfd);
	return sent == accepted && accepted > (int)rl.rlim_cur ? 0 : 1;
}
