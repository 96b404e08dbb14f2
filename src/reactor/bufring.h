/*
 * A core's provided receive buffers: one buffer ring (group 0) that every
 * receive of the core selects from.
 *
 * DESIGN: the ring starts with a few buffers and grows by
 * RR_RECV_BUFFERS_STEP only when receives run dry (-ENOBUFS): the ring is
 * FIFO, so every buffer ever provided keeps cycling and stays resident, and a
 * light load keeps a small working set. Returned buffers are staged and
 * published once per batch.
 */
#ifndef RR_REACTOR_BUFRING_H
#define RR_REACTOR_BUFRING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

struct rr_bufring {
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	uint32_t nbufs, size;
	uint32_t provided; /* grows by RR_RECV_BUFFERS_STEP on -ENOBUFS */
	uint32_t to_return;
	bool short_; /* a receive ran dry this batch */
};

/* Map nbufs (rounded up to a power of two, at most RR_RECV_BUFFERS_CEIL)
 * buffers of size bytes and register them with ring. 0 or -errno. */
int rr_bufring_setup(struct rr_bufring *b, struct io_uring *ring, uint32_t nbufs, uint32_t size);
void rr_bufring_free(struct rr_bufring *b);
/* The bytes of buffer bid. */
static inline uint8_t *rr_bufring_buf(const struct rr_bufring *b, uint32_t bid)
{
	return b->bufs + (size_t)bid * b->size;
}
/* Give buffer bid back (published by rr_bufring_publish). */
void rr_bufring_return(struct rr_bufring *b, uint32_t bid);
/* End of a batch: grow the ring after a shortage, publish the returns. */
void rr_bufring_publish(struct rr_bufring *b);

#endif
