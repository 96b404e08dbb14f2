/*
 * A connection's output: the queue, the hold a replay puts on live output,
 * the slow-consumer limit, and the corked flush (one send per connection per
 * loop iteration).
 *
 * DESIGN: small frames are copied into pooled chunks of RR_OUT_CHUNK bytes,
 * appended while the tail chunk has room, so a broadcast to N members costs
 * N copies, no allocation per member, and a send carries a few iovecs instead
 * of one per frame (as Redis fills a client's reply buffer before its reply
 * list). Frames over RR_OUT_COPY_MAX are queued by reference. Appending to a
 * chunk already in a send in flight is safe: the send covers the bytes it
 * was given, the completion releases by byte count, and the rest stays.
 */
#include "conn/conn.h"
#include "core/assert.h"
#include "core/limits.h"
#include "core/log.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static inline const uint8_t *node_bytes(const struct rr_out *o)
{
	return o->f ? o->f->data : o->data;
}

static struct rr_out *chunk_get(struct rr_conns *cs)
{
	struct rr_out *o = cs->chunks;
	if (o) {
		cs->chunks = o->next;
		cs->nchunks--;
	} else {
		o = malloc(sizeof(*o) + RR_OUT_CHUNK);
		if (o == NULL)
			return NULL;
	}
	o->next = NULL;
	o->f = NULL;
	o->off = 0;
	o->len = 0;
	return o;
}

static void node_free(struct rr_conns *cs, struct rr_out *o)
{
	if (o->f) {
		rr_frame_unref(o->f);
		free(o);
	} else if (cs->nchunks < RR_OUT_POOL_MAX) {
		o->next = cs->chunks;
		cs->chunks = o;
		cs->nchunks++;
	} else {
		free(o);
	}
}

static struct rr_out *ref_node(struct rr_frame *f)
{
	struct rr_out *o = malloc(sizeof(*o));
	if (o == NULL)
		return NULL;
	o->next = NULL;
	o->f = rr_frame_ref(f);
	o->off = 0;
	o->len = f->len;
	return o;
}

static void list_free(struct rr_conns *cs, struct rr_out *o)
{
	while (o) {
		struct rr_out *next = o->next;
		node_free(cs, o);
		o = next;
	}
}

void rr_out_pool_free(struct rr_conns *cs)
{
	struct rr_out *o = cs->chunks;
	while (o) {
		struct rr_out *next = o->next;
		free(o);
		o = next;
	}
	cs->chunks = NULL;
	cs->nchunks = 0;
}

/* Append f's bytes to the list: into the tail chunk when it fits. */
static int list_push(struct rr_conns *cs, struct rr_out **head, struct rr_out **tail,
		     struct rr_frame *f)
{
	struct rr_out *t = *tail, *o;
	if (f->len <= RR_OUT_COPY_MAX) {
		if (t && t->f == NULL && RR_OUT_CHUNK - t->len >= f->len) {
			memcpy(t->data + t->len, f->data, f->len);
			t->len += f->len;
			return 0;
		}
		o = chunk_get(cs);
		if (o == NULL)
			return -ENOMEM;
		memcpy(o->data, f->data, f->len);
		o->len = f->len;
	} else {
		o = ref_node(f);
		if (o == NULL)
			return -ENOMEM;
	}
	if (t)
		t->next = o;
	else
		*head = o;
	*tail = o;
	return 0;
}

void rr_out_mark_dirty(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conns *cs = rr_conns(core);
	if (c->flags & (RR_CF_DIRTY | RR_CF_SEND_INFLIGHT))
		return;
	c->flags |= RR_CF_DIRTY;
	c->next = cs->dirty;
	cs->dirty = c;
}

int rr_out_push(struct rr_core *core, struct rr_conn *c, struct rr_frame *f, bool held)
{
	struct rr_conns *cs = rr_conns(core);
	int rc = held ? list_push(cs, &c->held_head, &c->held_tail, f)
		      : list_push(cs, &c->out_head, &c->out_tail, f);
	if (rc < 0)
		return rc;
	c->out_bytes += f->len;
	RR_STAT_INC(core, frames_out);
	if (held)
		c->held_bytes += f->len;
	else
		rr_out_mark_dirty(core, c);
	return 0;
}

bool rr_out_pending(const struct rr_conn *c)
{
	return c->out_head != NULL || (c->tls && rr_tls_pending_bytes(c->tls) > 0);
}

uint64_t rr_conn_queued_bytes(const struct rr_conn *c)
{
	return c->out_bytes - c->held_bytes + (c->tls ? rr_tls_pending_bytes(c->tls) : 0);
}

void rr_out_drop_unsent(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conns *cs = rr_conns(core);
	/* Keep the nodes of the send in flight, a head already partly sent
	 * (its tail must follow, or the stream is corrupt) and an unsent 101
	 * (a close frame without it is garbage to the client); drop the rest. */
	struct rr_out **pp = &c->out_head, *last = NULL;
	uint32_t keep = c->send_nodes;
	if (keep == 0 && c->out_head &&
	    (c->out_head->off > 0 || (c->flags & RR_CF_UPGRADE_UNSENT)))
		keep = 1;
	for (uint32_t i = 0; i < keep && *pp; i++) {
		last = *pp;
		pp = &(*pp)->next;
	}
	struct rr_out *o = *pp;
	*pp = NULL;
	c->out_tail = last;
	for (struct rr_out *d = o; d; d = d->next)
		c->out_bytes -= d->len - d->off;
	list_free(cs, o);
	c->out_bytes -= c->held_bytes;
	list_free(cs, c->held_head);
	c->held_head = c->held_tail = NULL;
	c->held_bytes = 0;
	c->flags &= ~RR_CF_HOLD;
	if (c->bulk_bytes > c->out_bytes)
		c->bulk_bytes = c->out_bytes;
	c->pong = NULL;
}

void rr_out_free_all(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conns *cs = rr_conns(core);
	list_free(cs, c->out_head);
	list_free(cs, c->held_head);
	c->out_head = c->out_tail = c->held_head = c->held_tail = c->pong = NULL;
	c->out_bytes = c->held_bytes = c->bulk_bytes = 0;
}

void rr_out_queue_close(struct rr_core *core, struct rr_conn *c, uint16_t code,
			const char *reason)
{
	struct rr_frame *f;
	if (code == RR_WS_CLOSE_NO_STATUS)
		f = rr_frame_ws(RR_WS_CLOSE, NULL, 0);
	else
		f = rr_frame_ws_close(code, reason);
	c->flags |= RR_CF_CLOSE_SENT;
	c->close_code = code;
	if (f == NULL || rr_out_push(core, c, f, false) < 0)
		rr_conn_kill(core, c);
	if (f)
		rr_frame_unref(f);
}

int rr_conn_send(struct rr_core *core, struct rr_conn *c, struct rr_frame *f)
{
	if (c->state != RR_CONN_OPEN)
		return -EPIPE;
	uint64_t queued = c->out_bytes - c->bulk_bytes + (c->tls ? rr_tls_pending_bytes(c->tls) : 0);
	if (rr_unlikely(queued + f->len > core->broker->cfg.max_queued_bytes)) {
		char peer[64];
		rr_conn_peer(c, peer, sizeof(peer));
		rr_info("conn %u (%s): slow consumer (%llu bytes queued), closing with 1013", c->idx,
			peer, (unsigned long long)queued);
		RR_STAT_INC(core, closes_1013);
		rr_out_drop_unsent(core, c);
		rr_conn_close(core, c, RR_WS_CLOSE_TRY_LATER, "slow consumer");
		return -ENOBUFS;
	}
	if (rr_out_push(core, c, f, c->flags & RR_CF_HOLD) < 0) {
		rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

int rr_conn_send_bulk(struct rr_core *core, struct rr_conn *c, struct rr_frame *f)
{
	if (c->state != RR_CONN_OPEN)
		return -EPIPE;
	if (rr_out_push(core, c, f, false) < 0) {
		rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
		return -ENOMEM;
	}
	c->bulk_bytes += f->len;
	return 0;
}

void rr_conn_hold(struct rr_conn *c)
{
	c->flags |= RR_CF_HOLD;
}

void rr_conn_release_hold(struct rr_core *core, struct rr_conn *c)
{
	c->flags &= ~RR_CF_HOLD;
	if (c->held_head == NULL)
		return;
	if (c->out_tail)
		c->out_tail->next = c->held_head;
	else
		c->out_head = c->held_head;
	c->out_tail = c->held_tail;
	c->held_head = c->held_tail = NULL;
	c->held_bytes = 0;
	rr_out_mark_dirty(core, c);
}

void rr_conn_want_writable(struct rr_core *core, struct rr_conn *c)
{
	(void)core;
	if (c->state == RR_CONN_OPEN)
		c->flags |= RR_CF_WANT_WRITABLE;
}

/* The latest ping's answer: a pong not yet sent answers an older ping, so
 * only the latest is answered (RFC 6455 5.5.3) and a ping flood costs one
 * frame. A control frame passes a replay's hold: it answers the peer, not
 * the room. Returns 0 or -errno. */
int rr_out_pong(struct rr_core *core, struct rr_conn *c, const uint8_t *p, size_t n)
{
	if (c->state != RR_CONN_OPEN)
		return 0;
	struct rr_frame *f = rr_frame_ws(RR_WS_PONG, p, n);
	if (f == NULL)
		return -ENOMEM;
	if (c->pong) {
		c->out_bytes -= c->pong->len;
		c->bulk_bytes -= c->pong->len < c->bulk_bytes ? c->pong->len : c->bulk_bytes;
		rr_frame_unref(c->pong->f);
		c->pong->f = f;
		c->pong->len = f->len;
		c->out_bytes += f->len;
		c->bulk_bytes += f->len;
		return 0;
	}
	struct rr_out *o = ref_node(f); /* never copied: it may be replaced */
	rr_frame_unref(f);
	if (o == NULL)
		return -ENOMEM;
	if (c->out_tail)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	c->out_bytes += o->len;
	c->bulk_bytes += o->len;
	c->pong = o;
	rr_out_mark_dirty(core, c);
	return 0;
}

/* Encrypt every queued node into as few records as fit (the nodes are
 * released at once: the ciphertext carries them now) and point iov at the
 * pending ciphertext. Returns the iovec count, 0 when nothing to send. */
static uint32_t tls_prepare_send(struct rr_core *core, struct rr_conn *c, struct iovec *iov)
{
	struct rr_conns *cs = rr_conns(core);
	if (c->out_head && rr_tls_handshake_done(c->tls)) {
		uint32_t n = 0;
		struct rr_out *o = c->out_head;
		while (o) {
			n = 0;
			for (; o && n < RR_SEND_IOV_MAX; o = o->next, n++) {
				iov[n].iov_base = (void *)(node_bytes(o) + o->off);
				iov[n].iov_len = o->len - o->off;
			}
			if (rr_tls_write_iov(c->tls, iov, (int)n) < 0) {
				rr_conn_kill(core, c);
				return 0;
			}
		}
		uint64_t bytes = 0;
		for (o = c->out_head; o; o = o->next)
			bytes += o->len - o->off;
		c->out_bytes -= bytes; /* held frames stay counted */
		c->bulk_bytes -= bytes < c->bulk_bytes ? bytes : c->bulk_bytes;
		list_free(cs, c->out_head);
		c->out_head = c->out_tail = c->pong = NULL;
		c->flags &= ~RR_CF_UPGRADE_UNSENT;
	}
	int n = rr_tls_pending_iov(c->tls, iov, RR_SEND_IOV_MAX);
	return n > 0 ? (uint32_t)n : 0;
}

void rr_out_flush_all(struct rr_core *core)
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
		    (c->flags & RR_CF_SEND_INFLIGHT) || !rr_out_pending(c)) {
			c = next;
			continue;
		}
		if (cs->msgs_used == cs->msgs_cap || cs->iovs_used + RR_SEND_IOV_MAX > cs->iovs_cap) {
			/* the kernel has consumed the scratch once submitted */
			io_uring_submit(&core->ring);
			cs->msgs_used = 0;
			cs->iovs_used = 0;
		}
		struct iovec *iov = &cs->iovs[cs->iovs_used];
		uint32_t n = 0;
		size_t bytes = 0;
		if (c->tls) {
			n = tls_prepare_send(core, c, iov);
			if (n == 0) {
				c = next;
				continue;
			}
		} else {
			for (struct rr_out *o = c->out_head; o; o = o->next) {
				iov[n].iov_base = (void *)(node_bytes(o) + o->off);
				iov[n].iov_len = o->len - o->off;
				bytes += iov[n].iov_len;
				n++;
				if (o == c->pong)
					c->pong = NULL; /* in flight: can't be replaced any more */
				if (!cork || n == RR_SEND_IOV_MAX || bytes >= RR_SEND_BYTES_MAX)
					break;
			}
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
		c->send_nodes = c->tls ? 0 : n; /* TLS: ciphertext, no frame in flight */
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

void rr_out_on_send(struct rr_core *core, const struct io_uring_cqe *cqe)
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
		c->send_nodes = 0;
		rr_conn_kill(core, c);
		rr_conn_op_done(core, c);
		return;
	}
	RR_STAT_ADD(core, bytes_out, (uint64_t)res);
	if (c->tls) {
		/* frames were released when encrypted; this is ciphertext */
		rr_tls_consume(c->tls, (size_t)res);
		c->send_nodes = 0;
		if (c->state != RR_CONN_DEAD && rr_out_pending(c))
			rr_out_mark_dirty(core, c);
		else if (c->state == RR_CONN_HANDOFF && (c->flags & RR_CF_HANDOFF_WAIT))
			rr_handoff_submit(core, c);
		maybe_writable(core, c);
		rr_conn_maybe_finish(core, c);
		rr_conn_op_done(core, c);
		return;
	}
	/* release what went out; a partial send leaves the rest queued */
	size_t left = (size_t)res;
	c->out_bytes -= (uint64_t)res;
	c->bulk_bytes -= (uint64_t)res < c->bulk_bytes ? (uint64_t)res : c->bulk_bytes;
	while (left > 0) {
		struct rr_out *o = c->out_head;
		rr_assert(o != NULL);
		size_t avail = o->len - o->off;
		if (left < avail) {
			o->off += (uint32_t)left;
			break;
		}
		left -= avail;
		c->out_head = o->next;
		if (c->out_head == NULL)
			c->out_tail = NULL;
		if (c->pong == o)
			c->pong = NULL;
		c->flags &= ~RR_CF_UPGRADE_UNSENT; /* the 101 was the first node */
		node_free(cs, o);
	}
	c->send_nodes = 0;
	if (c->out_head && c->state != RR_CONN_DEAD)
		rr_out_mark_dirty(core, c);
	maybe_writable(core, c);
	rr_conn_maybe_finish(core, c);
	rr_conn_op_done(core, c);
}
