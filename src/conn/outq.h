/*
 * An output queue: the bytes a connection has to send, in order.
 *
 * DESIGN: small frames are copied into pooled chunks of RR_OUT_CHUNK bytes,
 * appended while the tail chunk has room, so a broadcast to N members costs
 * N copies, no allocation per member, and a send carries a few iovecs
 * instead of one per frame (as Redis fills a client's reply buffer before
 * its reply list). Frames over RR_OUT_COPY_MAX are queued by reference to
 * the shared frame. Appending to a chunk already in a send in flight is
 * safe: the send covers the bytes it was given, rr_outq_consume() releases
 * by byte count, and the rest stays.
 *
 * A hold parks live output behind a replay (the held list); bulk bytes are
 * those the owner paces itself (replays, pongs), not counted against the
 * slow-consumer limit. Pure data structure: no I/O, no connection.
 */
#ifndef RR_CONN_OUTQ_H
#define RR_CONN_OUTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/frame.h"

/* One node: a chunk of copied frames (f NULL, bytes in data[]) or a
 * reference to a shared frame. */
struct rr_out {
	struct rr_out *next;
	struct rr_frame *f;
	uint32_t off; /* bytes already sent */
	uint32_t len; /* bytes in the node */
	uint8_t data[];
};

/* Free chunks and free reference nodes, per core. */
struct rr_out_pool {
	struct rr_out *free;
	uint32_t n;
	struct rr_out *free_refs;
	uint32_t nrefs;
};

struct rr_outq {
	struct rr_out *head, *tail, *pong;
	struct rr_out *held_head, *held_tail;
	uint64_t bytes;	     /* queued (held included), the send in flight too */
	uint64_t bulk;	     /* of bytes: paced by the owner (replays, pongs) */
	uint32_t held;	     /* of bytes: held */
	uint32_t send_nodes; /* nodes in the send in flight */
	bool keep_head;	     /* never drop the head unsent (the 101) */
};

/* Append f's bytes (to the held list when held). 0 or -ENOMEM. */
int rr_outq_push(struct rr_outq *q, struct rr_out_pool *p, struct rr_frame *f, bool held,
		 bool bulk);
/* Replace the unsent pong, or queue a new one (never copied, so it can be
 * replaced). 0 or -ENOMEM. */
int rr_outq_pong(struct rr_outq *q, struct rr_frame *f);
/* Move the held list behind the queue; true when anything moved. */
bool rr_outq_release_hold(struct rr_outq *q);
/* Bytes ahead of anything queued next, held output excluded. */
static inline uint64_t rr_outq_ahead(const struct rr_outq *q)
{
	return q->bytes - q->held;
}
/* Bytes that count against the slow-consumer limit. */
static inline uint64_t rr_outq_live(const struct rr_outq *q)
{
	return q->bytes - q->bulk;
}
/* Drop what is not in flight: keeps the nodes of the send in flight, a head
 * already partly sent and a kept head; drops the held list. */
void rr_outq_drop_unsent(struct rr_outq *q, struct rr_out_pool *p);
/* Fill iov with the queue from its head (at most max entries, and up to
 * bytes_max bytes unless one node is bigger); returns the count. The pong
 * among them can't be replaced any more. */
uint32_t rr_outq_iov(struct rr_outq *q, struct iovec *iov, uint32_t max, uint64_t bytes_max);
/* n bytes went out: release what they cover; a partial node stays. */
void rr_outq_consume(struct rr_outq *q, struct rr_out_pool *p, uint64_t n);
/* Free every node (held ones too). */
void rr_outq_free(struct rr_outq *q, struct rr_out_pool *p);
void rr_out_pool_free(struct rr_out_pool *p);

#endif
