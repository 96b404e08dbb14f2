/*
 * Helpers shared by the storage worker's unit tests: a real io_uring that
 * plays the core (completions arrive on it through MSG_RING, exactly as on a
 * reactor), synchronous wrappers for one request, and temporary data dirs.
 */
#ifndef RR_TEST_STORE_UTIL_H
#define RR_TEST_STORE_UTIL_H

#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "persist/store.h"
#include "reactor/ud.h"

#include "check.h"

/* the "core": one ring, a count of completions seen */
static struct io_uring t_ring;
static unsigned t_completed;
static unsigned t_bad_cqes;

static inline void t_done(struct rr_store_req *req)
{
	(void)req;
	t_completed++;
}

static inline void t_ring_init(void)
{
	int ret = io_uring_queue_init(64, &t_ring, 0);

	if (ret < 0) {
		fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-ret));
		exit(1);
	}
}

/* Reap CQEs of `ring` until `want` completions ran or `tries` waits of
 * 100 ms found nothing. A CQE must be RR_UD_STORE and carry the request's
 * address; rr_store_complete() runs its done(). Returns completions run. */
static inline unsigned t_reap_on(struct io_uring *ring, unsigned want, int tries_max)
{
	unsigned got = 0;
	struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};

	for (int tries = 0; tries < tries_max && got < want;) {
		struct io_uring_cqe *cqe;
		int ret = io_uring_wait_cqe_timeout(ring, &cqe, &ts);

		if (ret == -ETIME) {
			tries++;
			continue;
		}
		if (ret < 0) {
			fprintf(stderr, "wait_cqe: %s\n", strerror(-ret));
			break;
		}
		if (rr_ud_kind(cqe->user_data) != RR_UD_STORE) {
			t_bad_cqes++;
		} else {
			struct rr_store_req *req = rr_ud_to_ptr(cqe->user_data);

			rr_store_complete(req);
			got++;
		}
		io_uring_cqe_seen(ring, cqe);
	}
	return got;
}

/* Reap the "core" ring until `want` more completions ran (or ~30 s pass). */
static inline unsigned t_reap(unsigned want)
{
	unsigned start = t_completed;

	t_reap_on(&t_ring, want, 300);
	return t_completed - start;
}

static inline void t_req_init(struct rr_store_req *req, enum rr_store_op op, const char *room)
{
	memset(req, 0, sizeof(*req));
	req->op = op;
	req->reply_ring_fd = t_ring.ring_fd;
	req->done = t_done;
	if (room != NULL) {
		req->room = room;
		req->room_len = (uint32_t)strlen(room);
	}
}

/* Submit one request and wait for its completion; returns req->res, or the
 * submit error. */
static inline int t_run(struct rr_store *s, struct rr_store_req *req)
{
	int ret = rr_store_submit(s, req);

	if (ret < 0)
		return ret;
	if (t_reap(1) != 1) {
		fprintf(stderr, "request op %d never completed\n", (int)req->op);
		return -ETIMEDOUT;
	}
	return req->res;
}

static inline int t_room_load(struct rr_store *s, const char *room, struct rr_store_req *out)
{
	t_req_init(out, RR_STORE_ROOM_LOAD, room);
	return t_run(s, out);
}

static inline int t_append(struct rr_store *s, const char *room, uint64_t id, const char *payload)
{
	struct rr_store_req req;

	t_req_init(&req, RR_STORE_APPEND, room);
	req.id = id;
	req.data = payload;
	req.len = (uint32_t)strlen(payload);
	return t_run(s, &req);
}

static inline uint64_t t_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline int t_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

static inline void t_rm_rf(const char *dir)
{
	nftw(dir, t_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory name under /tmp; the store creates it (mkdir -p) so the
 * name includes a missing sub-directory. */
static inline void t_tmpdir(char *buf, size_t len, const char *tag)
{
	char base[64];

	snprintf(base, sizeof(base), "/tmp/rr-%s-XXXXXX", tag);
	if (mkdtemp(base) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(buf, len, "%s/data", base);
}

static inline void t_tmpdir_rm(const char *data_dir)
{
	char base[256];

	snprintf(base, sizeof(base), "%s", data_dir);
	char *slash = strrchr(base, '/');

	if (slash != NULL)
		*slash = '\0';
	t_rm_rf(base);
}

/* The options most tests start from: async, two cores, a roomy queue. */
static inline struct rr_store_opts t_base_opts(const char *dir)
{
	return (struct rr_store_opts){
	    .dir = dir,
	    .durability = RR_STORE_ASYNC,
	    .queue_capacity = 1024,
	    .cores = 2,
	};
}

/* Run one test with a fresh data dir name, removed afterwards. */
static inline void t_in_tmpdir(void (*fn)(const char *dir), const char *tag)
{
	char dir[256];

	t_tmpdir(dir, sizeof(dir), tag);
	fn(dir);
	t_tmpdir_rm(dir);
}

static struct rr_store *t_open(const struct rr_store_opts *opts)
{
	struct rr_store *s = NULL;
	char err[512];
	int ret = rr_store_open(&s, opts, err, sizeof(err));

	if (ret < 0) {
		fprintf(stderr, "rr_store_open(%s): %s (%d)\n", opts->dir, err, ret);
		exit(1);
	}
	return s;
}

#endif
