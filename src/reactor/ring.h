/*
 * io_uring set-up and feature probing.
 *
 * DESIGN: every kernel feature the broker relies on is probed once at
 * start-up by rr_ring_probe(); a missing required feature stops the broker
 * with a message naming it and the first kernel that has it. Optional ones
 * fall back and the choice is logged. The result is read-only afterwards
 * and shared by all cores.
 */
#ifndef RR_REACTOR_RING_H
#define RR_REACTOR_RING_H

#include <liburing.h>
#include <stdbool.h>

struct rr_ring_features {
	bool defer_taskrun;  /* IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN (6.1) */
	bool coop_taskrun;   /* IORING_SETUP_COOP_TASKRUN (5.19) */
	bool ext_arg;        /* timeout passed to io_uring_enter (5.11) */
	bool submit_stable;  /* SQE data consumed at submit (5.5) */
	unsigned max_fixed_files;
};

/* Probe the kernel. Returns 0, or -ENOTSUP with msg naming the feature. */
int rr_ring_probe(struct rr_ring_features *f, char *msg, size_t msg_len);

/* Create a core's ring with the best set-up flags the kernel has. */
int rr_ring_init(struct io_uring *ring, unsigned entries, const struct rr_ring_features *f);

/* An SQE, submitting first when the SQ is full (never NULL). */
struct io_uring_sqe *rr_ring_sqe(struct io_uring *ring);

#endif
