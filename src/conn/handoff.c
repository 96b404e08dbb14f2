/*
 * Moving a connection to its room's home core: the socket (a fixed file
 * sent with IORING_OP_MSG_RING + IORING_MSG_SEND_FD), its TLS state and
 * per-IP entry, and the gate's record (what it decided: route, room,
 * identity, bytes read past the request).
 *
 * The record is one allocation holding the same ip and tls pointers as the
 * connection until the file arrived, so dropping it (conn.c) is a free().
 *
 * DESIGN: the source keeps its slot until the MSG_RING completion says the
 * file arrived (then drops the slot without touching the socket) or not
 * (then answers 503 itself). TLS output still queued must leave from the
 * source first: a socket's byte stream can't be split between cores.
 */
#include "conn/conn.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/tsan.h"
#include "net/iplimit.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct rr_handoff {
	uint32_t home;
	uint32_t len;
	uint64_t accepted_ns; /* the same monotonic clock on every core */
	struct rr_addr peer;
	struct rr_ip_entry *ip;
	struct rr_tls *tls; /* moves with the socket: keys, buffered records */
	uint8_t record[];
};

void rr_conn_handoff(struct rr_core *core, struct rr_conn *c, unsigned home, const void *record,
		     size_t len)
{
	if (core->handoffs_inflight >= RR_HANDOFF_INFLIGHT_MAX) {
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	struct rr_handoff *h = malloc(sizeof(*h) + len);
	if (h == NULL) {
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	h->home = home;
	h->len = (uint32_t)len;
	h->ip = c->ip;
	h->tls = c->tls;
	h->accepted_ns = c->accepted_ns;
	h->peer = c->peer;
	memcpy(h->record, record, len);

	free(c->hs);
	c->hs = NULL;
	rr_timer_cancel(&core->wheel, &c->timer);
	c->state = RR_CONN_HANDOFF;
	c->handoff = h; /* kept until the source CQE says whether it arrived */
	core->handoffs_inflight++;
	if ((c->flags & RR_CF_SEND_INFLIGHT) || (c->tls && rr_tls_pending_bytes(c->tls) > 0)) {
		c->flags |= RR_CF_HANDOFF_WAIT;
		rr_conn_mark_dirty(core, c);
		return;
	}
	rr_handoff_submit(core, c);
}

void rr_handoff_submit(struct rr_core *core, struct rr_conn *c)
{
	struct rr_handoff *h = c->handoff;
	struct rr_core *dst = &core->broker->cores[h->home];

	/* IORING_MSG_SEND_FD: install our fixed file in the home core's table
	 * (any free slot) and post a CQE there carrying the record. */
	RR_HB_RELEASE(h);
	struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
	io_uring_prep_rw(IORING_OP_MSG_RING, sqe, dst->ring_fd, NULL, 0,
			 rr_ud_ptr(RR_UD_HANDOFF_IN, h));
	sqe->addr = IORING_MSG_SEND_FD;
	sqe->addr3 = (uint64_t)c->fd;
	sqe->file_index = IORING_FILE_INDEX_ALLOC;
	io_uring_sqe_set_data64(sqe, rr_ud_conn(RR_UD_HANDOFF_OUT, c->gen, c->idx));
	c->flags &= ~RR_CF_HANDOFF_WAIT;
	c->inflight++;
	RR_STAT_INC(core, handoffs_out);
}

void rr_handoff_on_out(struct rr_core *core, struct rr_conn *c, int res)
{
	struct rr_handoff *h = c->handoff;
	c->handoff = NULL;
	core->handoffs_inflight--;
	if (res < 0) {
		/* the home core's fixed-file table is full, or it is gone */
		rr_warn("conn %u: hand-off to the room's home core failed: %s; answering 503",
			c->idx, strerror(-res));
		free(h);
		c->state = RR_CONN_HS;
		rr_conn_reply(core, c, 503, NULL);
	} else {
		/* The home core owns the socket (and the record) now: drop our
		 * slot without touching the socket; the count moved too. */
		c->flags |= RR_CF_HANDED_OFF;
		c->flags &= ~RR_CF_COUNTED;
		c->ip = NULL;
		c->tls = NULL;
		c->state = RR_CONN_HS; /* so rr_conn_kill proceeds */
		rr_conn_kill(core, c);
	}
	rr_conn_op_done(core, c);
}

void rr_handoff_on_in(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	struct rr_handoff *h = rr_ud_to_ptr(io_uring_cqe_get_data64(cqe));
	int res = cqe->res;
	RR_HB_ACQUIRE(h); /* published by the source core through MSG_RING */
	if (res < 0) {
		/* not expected: the fd is only sent when a slot was allocated */
		rr_warn("hand-off arrived without a file: %s", strerror(-res));
		free(h);
		return;
	}
	RR_STAT_INC(core, handoffs_in);
	struct rr_conn *c = rr_conn_alloc(core, res);
	if (c == NULL) {
		rr_warn("no free connection slot for a handed-off connection: dropping it");
		struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
		io_uring_prep_close_direct(sqe, (unsigned)res);
		io_uring_sqe_set_data64(sqe, 0);
		atomic_fetch_sub(&core->broker->live_conns, 1);
		rr_iplimit_release(h->ip);
		rr_tls_free(h->tls);
		free(h);
		return;
	}
	c->flags |= RR_CF_COUNTED;
	c->ip = h->ip;
	c->tls = h->tls;
	c->accepted_ns = h->accepted_ns;
	c->peer = h->peer;
	/* bounded like any handshake: a room load or session lookup may wait */
	rr_conn_set_deadline(core, c, core->now_ms + core->broker->cfg.handshake_timeout_ms);
	rr_conn_gate->arrived(core, c, h->record, h->len);
	free(h);
	if (c->tls)
		rr_in_tls_drain(core, c); /* records that arrived with the request */
}
