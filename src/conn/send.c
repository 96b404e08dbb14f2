/*
 * Sending: the corked flush (at most one send per dirty connection per loop
 * iteration, carrying every queued node: iovecs for plain connections, as
 * few TLS records as fit for TLS ones) and the send completion, which
 * releases what went out and tells the owner when its queue ran low.
 */
#include "conn/conn.h"
#include "core/limits.h"
#include "core/log.h"
#include "tls/tls.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

/* Encrypt every queued node into as few records as fit (the nodes are
 * released at once: the ciphertext carries them now) and point iov at the
 * pending ciphertext. Returns the iovec count, 0 when nothing to send. */
static uint32_t tls_prepare_send(struct rr_core *core, struct rr_conn *c, struct iovec *iov)
{
	struct rr_conns *cs = rr_conns(core);
	while (c->out.head && rr_tls_handshake_done(c->tls)) {
		uint32_t n = rr_outq_iov(&c->out, iov, RR_SEND_IOV_MAX, UINT64_MAX);
		uint64_t bytes = 0;
		for (uint32_t i = 0; i < n; i++)
			bytes += iov[i].iov_len;
		if (rr_tls_write_iov(c->tls, iov, (int)n) < 0) {
			rr_conn_kill(core, c);
			return 0;
		}
		rr_outq_consume(&c->out, &cs->pool, bytes); /* held frames stay queued */
	}
	int n = rr_tls_pending_iov(c->tls, iov, RR_SEND_IOV_MAX);
	return n > 0 ? (uint32_t)n : 0;
}

void rr_send_flush_all(struct rr_core *core)
{
	struct rr_conns *cs = rr_conns(core);
	bool cork = !core->broker->cfg.no_cork;
	struct rr_conn *c = cs->dirty;
	cs->dirty = NULL;
	/* the previous iteration's submit consumed the scratch */
	cs->msgs_used = 0;
	cs->iovs_used = 0;

	while (c) {
		struct rr_conn *next = c->next;
		c->flags &= ~RR_CF_DIRTY;
		if (c->state == RR_CONN_DEAD || c->state == RR_CONN_FREE ||
		    (c->flags & RR_CF_SEND_INFLIGHT) || !rr_conn_output_pending(c)) {
			c = next;
			continue;
		}
		if (cs->msgs_used == cs->msgs_cap ||
		    cs->iovs_used + RR_SEND_IOV_MAX > cs->iovs_cap) {
			/* the kernel has consumed the scratch once submitted */
			io_uring_submit(&core->ring);
			cs->msgs_used = 0;
			cs->iovs_used = 0;
		}
		struct iovec *iov = &cs->iovs[cs->iovs_used];
		uint32_t n = 0;
		if (c->tls) {
			n = tls_prepare_send(core, c, iov);
			if (n == 0) {
				c = next;
				continue;
			}
		} else {
			n = rr_outq_iov(&c->out, iov, cork ? RR_SEND_IOV_MAX : 1,
					RR_SEND_BYTES_MAX);
		}
		struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
		if (n == 1) {
			io_uring_prep_send(sqe, c->fd, iov[0].iov_base, iov[0].iov_len,
					   MSG_NOSIGNAL);
		} else {
			struct msghdr *m = &cs->msgs[cs->msgs_used++];
			memset(m, 0, sizeof(*m));
			m->msg_iov = iov;
			m->msg_iovlen = n;
			cs->iovs_used += n;
			io_uring_prep_sendmsg(sqe, c->fd, m, MSG_NOSIGNAL);
		}
		sqe->flags |= IOSQE_FIXED_FILE;
		io_uring_sqe_set_data64(sqe, rr_ud_conn(RR_UD_SEND, c->gen, c->idx));
		c->flags |= RR_CF_SEND_INFLIGHT;
		c->out.send_nodes = c->tls ? 0 : n; /* TLS: ciphertext, no frame in flight */
		c->inflight++;
		RR_STAT_INC(core, sends);
		c = next;
	}
}

static void maybe_writable(struct rr_core *core, struct rr_conn *c)
{
	if ((c->flags & RR_CF_WANT_WRITABLE) && c->state == RR_CONN_OPEN &&
	    rr_conn_queued_bytes(c) < RR_OUT_LOW_WATER) {
		c->flags &= ~RR_CF_WANT_WRITABLE;
		if (c->owner && c->owner->writable)
			c->owner->writable(core, c);
	}
}

void rr_send_on_cqe(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	struct rr_conns *cs = rr_conns(core);
	struct rr_conn *c = rr_conn_lookup(core, io_uring_cqe_get_data64(cqe));
	int res = cqe->res;
	if (c == NULL)
		return;
	c->flags &= ~RR_CF_SEND_INFLIGHT;
	if (res < 0) {
		if (res != -EPIPE && res != -ECONNRESET)
			rr_debug("conn %u: send: %s", c->idx, strerror(-res));
		c->out.send_nodes = 0;
		rr_conn_kill(core, c);
		rr_conn_op_done(core, c);
		return;
	}
	RR_STAT_ADD(core, bytes_out, (uint64_t)res);
	if (c->tls) {
		/* frames were released when encrypted; this is ciphertext */
		rr_tls_consume(c->tls, (size_t)res);
		c->out.send_nodes = 0;
		if (c->state != RR_CONN_DEAD && rr_conn_output_pending(c))
			rr_conn_mark_dirty(core, c);
		else if (c->state == RR_CONN_HANDOFF && (c->flags & RR_CF_HANDOFF_WAIT))
			rr_handoff_submit(core, c);
		maybe_writable(core, c);
		rr_conn_maybe_finish(core, c);
		rr_conn_op_done(core, c);
		return;
	}
	/* release what went out; a partial send leaves the rest queued */
	rr_outq_consume(&c->out, &cs->pool, (uint64_t)res);
	c->out.send_nodes = 0;
	if (c->out.head && c->state != RR_CONN_DEAD)
		rr_conn_mark_dirty(core, c);
	maybe_writable(core, c);
	rr_conn_maybe_finish(core, c);
	rr_conn_op_done(core, c);
}
