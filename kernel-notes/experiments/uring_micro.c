/*
 * Micro-measurements quoted in kernel-notes/: each isolates one io_uring
 * feature ringroom uses, on loopback, bounded in count. Numbers from a
 * shared, noisy 2-core machine: read them as orders of magnitude.
 *
 *   taskrun   send+recv round trips on a TCP loopback pair in one thread,
 *             ring set up with no flags, COOP_TASKRUN, SINGLE_ISSUER|DEFER_TASKRUN
 *   cork      64 frames of 100 B: 64 SEND SQEs vs one SENDMSG with 64 iovecs
 *   fixed     64 B SENDs on a plain fd vs a registered (direct) descriptor
 *   msgring   MSG_RING ping-pong between two threads, each waiting on its ring
 *   timeout   lateness of io_uring_submit_and_wait_timeout() (EXT_ARG) at 1 ms
 *
 * Build and run (not part of the meson build):
 *   cc -O2 -Wall -Wextra -o /tmp/uring_micro \
 *      kernel-notes/experiments/uring_micro.c -luring -lpthread
 *   /tmp/uring_micro [taskrun|cork|fixed|msgring|timeout]...
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A connected TCP pair on 127.0.0.1 with Nagle off. */
static void tcp_pair(int fds[2])
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int one = 1;
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &sl) < 0)
		exit(1);
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fds[0], (struct sockaddr *)&sa, sizeof(sa)) < 0)
		exit(1);
	fds[1] = accept(l, NULL, NULL);
	close(l);
	setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Reap want CQEs; returns the sum of their results (bytes, for sends: a
 * send can be short when the socket buffer fills, so callers count these). */
static long reap(struct io_uring *r, unsigned want)
{
	struct io_uring_cqe *cqe;
	long sum = 0;
	for (unsigned got = 0; got < want; got++) {
		if (io_uring_wait_cqe(r, &cqe) < 0)
			exit(1);
		if (cqe->res < 0) {
			fprintf(stderr, "cqe: %s\n", strerror(-cqe->res));
			exit(1);
		}
		sum += cqe->res;
		io_uring_cqe_seen(r, cqe);
	}
	return sum;
}

/* ---- taskrun ---- */
static void bench_taskrun(void)
{
	static const struct {
		unsigned flags;
		const char *name;
	} modes[] = {
		{0, "no flags"},
		{IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
		{IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "SINGLE_ISSUER|DEFER_TASKRUN"},
	};
	const int n = 100000;
	for (int round = 0; round < 2; round++) {
		for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
			struct io_uring r;
			struct io_uring_params p = {.flags = modes[m].flags};
			int fds[2];
			char out[64] = {0}, in[64];
			if (io_uring_queue_init_params(64, &r, &p) < 0) {
				printf("taskrun  %-28s not available\n", modes[m].name);
				continue;
			}
			tcp_pair(fds);
			double t0 = now_s();
			for (int i = 0; i < n; i++) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&r);
				io_uring_prep_recv(sqe, fds[1], in, sizeof(in), MSG_WAITALL);
				sqe = io_uring_get_sqe(&r);
				io_uring_prep_send(sqe, fds[0], out, sizeof(out), 0);
				io_uring_submit(&r);
				reap(&r, 2);
			}
			double dt = now_s() - t0;
			if (round == 1)
				printf("taskrun  %-28s %.2f us per send+recv round (%d rounds)\n",
				       modes[m].name, dt * 1e6 / n, n);
			close(fds[0]);
			close(fds[1]);
			io_uring_queue_exit(&r);
		}
	}
}

/* ---- a reader thread that drains a socket until told to stop ---- */
struct drain {
	int fd;
	atomic_long bytes;
	atomic_bool stop;
};

static void *drain_main(void *arg)
{
	struct drain *d = arg;
	static char buf[1 << 16];
	while (!atomic_load(&d->stop)) {
		ssize_t got = recv(d->fd, buf, sizeof(buf), 0);
		if (got <= 0)
			break;
		atomic_fetch_add(&d->bytes, got);
	}
	return NULL;
}

/* Wait until the reader has everything, so the sender's time includes it. */
static void drain_wait(struct drain *d, long want)
{
	while (atomic_load(&d->bytes) < want)
		usleep(50);
}

/* ---- cork ---- */
static void bench_cork(void)
{
	enum { FRAMES = 64, FRAME = 100, BATCHES = 3000 };
	static char frames[FRAMES][FRAME];
	struct iovec iov[FRAMES];
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = FRAMES};
	for (int i = 0; i < FRAMES; i++) {
		iov[i].iov_base = frames[i];
		iov[i].iov_len = FRAME;
	}
	for (int round = 0; round < 2; round++) {
		for (int mode = 0; mode < 2; mode++) {
			struct io_uring r;
			int fds[2];
			struct drain d = {0};
			pthread_t th;
			io_uring_queue_init(128, &r, 0);
			tcp_pair(fds);
			d.fd = fds[1];
			pthread_create(&th, NULL, drain_main, &d);
			long sent = 0;
			double t0 = now_s();
			for (int b = 0; b < BATCHES; b++) {
				if (mode == 0) {
					for (int i = 0; i < FRAMES; i++) {
						struct io_uring_sqe *sqe = io_uring_get_sqe(&r);
						io_uring_prep_send(sqe, fds[0], frames[i], FRAME, 0);
					}
					io_uring_submit(&r);
					sent += reap(&r, FRAMES);
				} else {
					struct io_uring_sqe *sqe = io_uring_get_sqe(&r);
					io_uring_prep_sendmsg(sqe, fds[0], &msg, 0);
					io_uring_submit(&r);
					sent += reap(&r, 1);
				}
			}
			drain_wait(&d, sent);
			double dt = now_s() - t0;
			if (round == 1)
				printf("cork     %-28s %.2f us per 64-frame batch, %.3f us per frame\n",
				       mode == 0 ? "64 SENDs, one submit" : "1 SENDMSG, 64 iovecs",
				       dt * 1e6 / BATCHES, dt * 1e6 / BATCHES / FRAMES);
			atomic_store(&d.stop, true);
			shutdown(fds[0], SHUT_RDWR);
			pthread_join(th, NULL);
			close(fds[0]);
			close(fds[1]);
			io_uring_queue_exit(&r);
		}
	}
}

/* ---- fixed ---- */
static void bench_fixed(void)
{
	enum { SENDS = 200000, BATCH = 32, LEN = 64 };
	static char buf[LEN];
	for (int round = 0; round < 2; round++) {
		for (int mode = 0; mode < 2; mode++) {
			struct io_uring r;
			int fds[2];
			struct drain d = {0};
			pthread_t th;
			io_uring_queue_init(64, &r, 0);
			tcp_pair(fds);
			int target = fds[0];
			if (mode == 1) {
				io_uring_register_files(&r, &fds[0], 1);
				target = 0;
			}
			d.fd = fds[1];
			pthread_create(&th, NULL, drain_main, &d);
			long sent = 0;
			double t0 = now_s();
			for (int s = 0; s < SENDS; s += BATCH) {
				for (int i = 0; i < BATCH; i++) {
					struct io_uring_sqe *sqe = io_uring_get_sqe(&r);
					io_uring_prep_send(sqe, target, buf, LEN, 0);
					if (mode == 1)
						sqe->flags |= IOSQE_FIXED_FILE;
				}
				io_uring_submit(&r);
				sent += reap(&r, BATCH);
			}
			drain_wait(&d, sent);
			double dt = now_s() - t0;
			if (round == 1)
				printf("fixed    %-28s %.3f us per 64 B send\n",
				       mode == 0 ? "plain fd" : "registered (direct)", dt * 1e6 / SENDS);
			atomic_store(&d.stop, true);
			shutdown(fds[0], SHUT_RDWR);
			pthread_join(th, NULL);
			close(fds[0]);
			close(fds[1]);
			io_uring_queue_exit(&r);
		}
	}
}

/* ---- msgring ---- */
struct pong {
	struct io_uring ring;
	int peer_fd;
	int rounds;
	pthread_barrier_t ready;
};

static void *pong_main(void *arg)
{
	struct pong *p = arg;
	io_uring_queue_init(8, &p->ring, 0);
	pthread_barrier_wait(&p->ready);
	for (int i = 0; i < p->rounds; i++) {
		struct io_uring_cqe *cqe;
		io_uring_wait_cqe(&p->ring, &cqe);
		io_uring_cqe_seen(&p->ring, cqe);
		struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);
		io_uring_prep_msg_ring(sqe, p->peer_fd, 0, 2, 0);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		io_uring_submit(&p->ring);
	}
	return NULL;
}

static void bench_msgring(void)
{
	const int n = 50000;
	struct io_uring r;
	struct pong p = {.rounds = n};
	pthread_t th;
	io_uring_queue_init(8, &r, 0);
	p.peer_fd = r.ring_fd;
	pthread_barrier_init(&p.ready, NULL, 2);
	pthread_create(&th, NULL, pong_main, &p);
	pthread_barrier_wait(&p.ready);
	double t0 = now_s();
	for (int i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&r);
		io_uring_prep_msg_ring(sqe, p.ring.ring_fd, 0, 1, 0);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		io_uring_submit(&r);
		reap(&r, 1);
	}
	double dt = now_s() - t0;
	pthread_join(th, NULL);
	printf("msgring  %-28s %.2f us per round trip between two threads (%d)\n",
	       "MSG_RING ping-pong", dt * 1e6 / n, n);
	io_uring_queue_exit(&p.ring);
	io_uring_queue_exit(&r);
}

/* ---- timeout ---- */
static void bench_timeout(void)
{
	const int n = 500;
	struct io_uring r;
	struct io_uring_params p = {0};
	io_uring_queue_init_params(8, &r, &p);
	if (!(p.features & IORING_FEAT_EXT_ARG)) {
		printf("timeout  no IORING_FEAT_EXT_ARG\n");
		return;
	}
	double sum = 0, max = 0;
	for (int i = 0; i < n; i++) {
		struct __kernel_timespec ts = {.tv_nsec = 1000000};
		struct io_uring_cqe *cqe;
		double t0 = now_s();
		int rc = io_uring_submit_and_wait_timeout(&r, &cqe, 1, &ts, NULL);
		double late = now_s() - t0 - 0.001;
		if (rc != -ETIME)
			fprintf(stderr, "timeout: %d\n", rc);
		sum += late;
		if (late > max)
			max = late;
	}
	printf("timeout  %-28s mean lateness %.0f us, max %.0f us (%d waits)\n",
	       "EXT_ARG wait of 1 ms", sum * 1e6 / n, max * 1e6, n);
	io_uring_queue_exit(&r);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} all[] = {
		{"taskrun", bench_taskrun}, {"cork", bench_cork},       {"fixed", bench_fixed},
		{"msgring", bench_msgring}, {"timeout", bench_timeout},
	};
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		bool run = argc < 2;
		for (int a = 1; a < argc; a++)
			run |= strcmp(argv[a], all[i].name) == 0;
		if (run)
			all[i].fn();
	}
	return 0;
}
