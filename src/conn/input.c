/*
 * A connection's input: receive completions, the HTTP request bytes handed
 * to the gate, TLS decryption, and WebSocket decoding under a budget.
 *
 * DESIGN: received bytes are decoded at once and the provided buffer goes
 * straight back to the ring, so an idle connection owns no receive buffer.
 * A connection delivers at most RR_INPUT_MESSAGES_MAX messages per
 * iteration; what is left is copied into its input backlog and taken in the
 * next settle steps, in order (new bytes queue behind it). While the backlog
 * is over RR_INPUT_BACKLOG_MAX the multishot receive is cancelled; it is
 * armed again once the backlog is half gone. The kernel's socket buffer then
 * fills and TCP slows the sender: one iteration's work, and the output it
 * queues, stay bounded (HAProxy's per-stream budgets; the "no cliff" rule).
 */
#include "conn/conn.h"
#include "core/assert.h"
#include "core/limits.h"
#include "core/log.h"
#include "proxy/proxy.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HS_BUF_INIT 1024

struct rr_inbuf { /* freed with the slot by conn.c */
	uint32_t off, len, cap;
	uint8_t data[];
};

static __thread uint32_t tl_budget;

/* ---- WebSocket decoding ------------------------------------------------- */

static int on_ws_message(void *ctx, uint8_t opcode, uint8_t *p, size_t n)
{
	struct rr_conn *c = ctx;
	struct rr_core *core = rr_core_current();
	if (c->state != RR_CONN_OPEN)
		return 0; /* closing: read on for the peer's close frame */
	RR_STAT_INC(core, messages_in);
	if (c->owner && c->owner->message)
		c->owner->message(core, c, opcode, p, n);
	if (c->state != RR_CONN_OPEN)
		return 1;
	return --tl_budget == 0; /* over budget: the rest waits */
}

static int on_ws_ping(void *ctx, uint8_t *p, size_t n)
{
	struct rr_conn *c = ctx;
	rr_conn_pong(rr_core_current(), c, p, n);
	return 0;
}

static int on_ws_pong(void *ctx, uint8_t *p, size_t n)
{
	(void)ctx;
	(void)p;
	(void)n;
	return 0;
}

static int on_ws_close(void *ctx, uint16_t code, const uint8_t *reason, size_t n)
{
	(void)reason;
	(void)n;
	rr_conn_peer_closed(rr_core_current(), ctx, code);
	return 1;
}

static const struct rr_ws_rx_ops ws_ops = {
    .message = on_ws_message,
    .ping = on_ws_ping,
    .pong = on_ws_pong,
    .close = on_ws_close,
};

/* Decode up to the budget; returns the bytes taken (n unless the budget
 * stopped an open connection). A connection that a message closed reads on
 * for the peer's close frame (its data messages are dropped). */
static size_t ws_feed(struct rr_core *core, struct rr_conn *c, uint8_t *p, size_t n)
{
	struct rr_ws_limits lim = {.message_bytes_max = core->broker->cfg.max_message_bytes};
	size_t off = 0;
	while (off < n && !(c->flags & RR_CF_INPUT_DONE)) {
		uint16_t code = 0;
		tl_budget = RR_INPUT_MESSAGES_MAX;
		ssize_t rc = rr_ws_rx_feed(&c->rx, p + off, n - off, &lim, &ws_ops, c, &code);
		if (rc < 0) {
			rr_conn_fail(core, c, code ? code : RR_WS_CLOSE_PROTOCOL);
			return n;
		}
		off += (size_t)rc;
		if (off < n && c->state == RR_CONN_OPEN)
			return off; /* over budget: the rest waits */
		if (rc == 0 || c->state != RR_CONN_CLOSING)
			break;
	}
	return n;
}

/* ---- the input backlog -------------------------------------------------- */

static int backlog_add(struct rr_core *core, struct rr_conn *c, const uint8_t *p, size_t n)
{
	struct rr_conns *cs = rr_conns(core);
	struct rr_inbuf *in = c->in;
	if (in && in->off > 0 && in->off == in->len)
		in->off = in->len = 0;
	if (in == NULL || in->len + n > in->cap) {
		size_t live = in ? in->len - in->off : 0;
		size_t cap = in ? in->cap : 4096;
		while (cap < live + n)
			cap *= 2;
		struct rr_inbuf *ni = malloc(sizeof(*ni) + cap);
		if (ni == NULL)
			return -ENOMEM;
		if (live)
			memcpy(ni->data, in->data + in->off, live);
		ni->off = 0;
		ni->len = (uint32_t)live;
		ni->cap = (uint32_t)cap;
		free(in);
		c->in = in = ni;
	}
	memcpy(in->data + in->len, p, n);
	in->len += (uint32_t)n;
	if (!(c->flags & RR_CF_BACKLOG)) {
		if (cs->nbacklog == cs->backlog_cap) {
			uint32_t cap = cs->backlog_cap ? cs->backlog_cap * 2 : 64;
			struct rr_conn **a = realloc(cs->backlog, cap * sizeof(*a));
			if (a == NULL)
				return -ENOMEM;
			cs->backlog = a;
			cs->backlog_cap = cap;
		}
		cs->backlog[cs->nbacklog++] = c;
		c->flags |= RR_CF_BACKLOG;
	}
	if (in->len - in->off > RR_INPUT_BACKLOG_MAX && (c->flags & RR_CF_RECV_ARMED) &&
	    !(c->flags & RR_CF_RECV_PAUSED)) {
		/* stop reading: the socket buffer fills and TCP pushes back */
		struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
		io_uring_prep_cancel64(sqe, rr_ud_conn(RR_UD_RECV, c->gen, c->idx), 0);
		io_uring_sqe_set_data64(sqe, 0);
		c->flags |= RR_CF_RECV_PAUSED;
		RR_STAT_INC(core, recv_paused);
	}
	return 0;
}

static void in_free(struct rr_conn *c)
{
	free(c->in);
	c->in = NULL;
}

static bool backlogged(const struct rr_conn *c)
{
	return c->in != NULL && c->in->len > c->in->off;
}

/* WebSocket bytes for an open or closing connection, in order behind any
 * backlog. */
static void ws_deliver(struct rr_core *core, struct rr_conn *c, uint8_t *p, size_t n)
{
	size_t used = 0;
	if (!backlogged(c))
		used = ws_feed(core, c, p, n);
	if (used < n && backlog_add(core, c, p + used, n - used) < 0) {
		rr_warn("conn %u: input backlog: out of memory, closing", c->idx);
		rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
	}
}

static bool reading_state(const struct rr_conn *c)
{
	return c->state == RR_CONN_OPEN || c->state == RR_CONN_CLOSING ||
	       c->state == RR_CONN_LINGER;
}

void rr_in_settle(struct rr_core *core)
{
	struct rr_conns *cs = rr_conns(core);
	uint32_t keep = 0;
	for (uint32_t i = 0; i < cs->nbacklog; i++) {
		struct rr_conn *c = cs->backlog[i];
		if (!(c->flags & RR_CF_BACKLOG))
			continue;
		struct rr_inbuf *in = c->in;
		bool decoding = c->state == RR_CONN_OPEN || c->state == RR_CONN_CLOSING;
		if (in && in->len > in->off && decoding)
			in->off +=
			    (uint32_t)ws_feed(core, c, in->data + in->off, in->len - in->off);
		if (c->in && (c->in->len == c->in->off || !decoding))
			in_free(c); /* done, or nobody reads it any more */
		/* A paused receive is armed again once the backlog is half gone
		 * and its cancel has completed; until then the connection stays
		 * on the list, drained or not, so the re-arm is never missed. */
		bool paused = (c->flags & RR_CF_RECV_PAUSED) && reading_state(c);
		if (paused &&
		    (c->in == NULL || c->in->len - c->in->off < RR_INPUT_BACKLOG_MAX / 2) &&
		    !(c->flags & (RR_CF_RECV_ARMED | RR_CF_REARM))) {
			c->flags &= ~RR_CF_RECV_PAUSED;
			rr_conn_arm_recv(core, c);
			paused = false;
		}
		if (c->in || paused)
			cs->backlog[keep++] = c;
		else
			c->flags &= ~RR_CF_BACKLOG;
	}
	cs->nbacklog = keep;
}

/* ---- HTTP request bytes -------------------------------------------------- */

static int hs_append(struct rr_core *core, struct rr_conn *c, const uint8_t *p, size_t n)
{
	struct rr_hs *hs = c->hs;
	/* a head, and what one receive brought past it; the backend API's
	 * requests also carry bodies, and pipelined ones queue behind */
	size_t limit = core->broker->cfg.max_header_bytes + core->bufs.size;
	if (c->flags & RR_CF_BODY)
		limit += core->broker->cfg.max_message_bytes + RR_API_PIPELINE_BYTES;
	if (hs == NULL || hs->len + n > hs->cap) {
		size_t cap = hs ? hs->cap : HS_BUF_INIT;
		size_t need = (hs ? hs->len : 0) + n;
		while (cap < need)
			cap *= 2;
		if (cap > limit)
			cap = limit;
		if (need > cap)
			return -EMSGSIZE;
		struct rr_hs *nh = realloc(hs, sizeof(*nh) + cap);
		if (nh == NULL)
			return -ENOMEM;
		if (hs == NULL)
			nh->len = 0;
		nh->cap = (uint32_t)cap;
		c->hs = hs = nh;
	}
	memcpy(hs->buf + hs->len, p, n);
	hs->len += (uint32_t)n;
	return 0;
}

static void hs_on_data(struct rr_core *core, struct rr_conn *c, const uint8_t *p, size_t n)
{
	int rc = hs_append(core, c, p, n);
	if (rc == -EMSGSIZE) {
		char peer[64];
		rr_conn_peer(c, peer, sizeof(peer));
		rr_info("conn %u (%s): request head over %llu bytes, answering 431", c->idx, peer,
			(unsigned long long)core->broker->cfg.max_header_bytes);
		rr_conn_reply(core, c, 431, NULL);
		return;
	}
	if (rc < 0) {
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	rr_conn_gate->request(core, c);
}

static void plain_on_data(struct rr_core *core, struct rr_conn *c, uint8_t *p, size_t n)
{
	if (c->state == RR_CONN_HS)
		hs_on_data(core, c, p, n);
	else if (c->state == RR_CONN_OPEN || c->state == RR_CONN_CLOSING)
		ws_deliver(core, c, p, n);
	/* lingering, handing off, waiting or dead: discard */
}

void rr_conn_feed(struct rr_core *core, struct rr_conn *c, uint8_t *p, size_t n)
{
	if (c->flags & RR_CF_STUB)
		return; /* its own core feeds what came with its request */
	if (n && (c->state == RR_CONN_OPEN || c->state == RR_CONN_CLOSING))
		ws_deliver(core, c, p, n);
	if (c->tls && c->state == RR_CONN_OPEN)
		rr_in_tls_drain(core, c); /* records that arrived while it waited */
}

/* ---- PROXY protocol ------------------------------------------------------ */

static void tls_on_data(struct rr_core *core, struct rr_conn *c, const uint8_t *p, size_t n);

/* --proxy-protocol: the header comes first, before TLS or HTTP; what
 * follows it goes on as if just received. A bad header is closed without
 * an answer (the balancer, not a browser, is at the other end). */
static void proxy_on_data(struct rr_core *core, struct rr_conn *c, uint8_t *p, size_t n)
{
	struct rr_proxy_hdr hdr;
	struct rr_hs *hs;
	char peer[64];
	size_t have = c->hs ? c->hs->len : 0;
	size_t take = n;
	if (have + take > RR_PROXY_BYTES_MAX)
		take = RR_PROXY_BYTES_MAX - have;
	if (take == 0 || hs_append(core, c, p, take) < 0)
		goto bad;
	hs = c->hs;
	ssize_t rc = rr_proxy_parse(hs->buf, hs->len, &hdr);
	if (rc == -EAGAIN && hs->len < RR_PROXY_BYTES_MAX)
		return; /* the one-shot receive is re-armed */
	if (rc <= 0)
		goto bad;
	if (hdr.kind == RR_PROXY_ADDR)
		rr_addr_set(&c->peer, (const struct sockaddr *)&hdr.src);
	c->flags &= ~RR_CF_PROXY;
	rr_conn_count_ip(c);
	/* the rest: what followed the header in this buffer, then the bytes
	 * of this receive that did not fit */
	c->hs = NULL;
	size_t rest = hs->len - (size_t)rc;
	if (rest) {
		if (c->tls)
			tls_on_data(core, c, hs->buf + rc, rest);
		else
			plain_on_data(core, c, hs->buf + rc, rest);
	}
	free(hs);
	if (take < n && c->state == RR_CONN_HS) {
		if (c->tls)
			tls_on_data(core, c, p + take, n - take);
		else
			plain_on_data(core, c, p + take, n - take);
	}
	return;
bad:
	rr_conn_peer(c, peer, sizeof(peer));
	rr_info("conn %u (%s): missing or malformed PROXY header, closing without an answer",
		c->idx, peer);
	RR_STAT_INC(core, proxy_rejected);
	rr_conn_kill(core, c);
}

/* ---- TLS ---------------------------------------------------------------- */

/* Decrypt what the TLS layer holds and pass the plaintext on. Stops when a
 * hand-off starts: the rest stays in the TLS object and moves with it. */
void rr_in_tls_drain(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conns *cs = rr_conns(core);
	for (int guard = 0; guard < 1024; guard++) {
		if (c->state != RR_CONN_HS && c->state != RR_CONN_OPEN &&
		    c->state != RR_CONN_CLOSING)
			break;
		ssize_t n = rr_tls_read(c->tls, cs->tls_plain, cs->tls_plain_cap);
		if (n == 0)
			break;
		if (n < 0) {
			if (n == -EPROTO)
				rr_info("conn %u: TLS record error: %s", c->idx,
					rr_tls_error(c->tls));
			rr_conn_kill(core, c);
			return;
		}
		plain_on_data(core, c, cs->tls_plain, (size_t)n);
	}
	if (c->tls && rr_tls_pending_bytes(c->tls) > 0)
		rr_conn_mark_dirty(core, c);
}

static void tls_on_data(struct rr_core *core, struct rr_conn *c, const uint8_t *p, size_t n)
{
	struct rr_tls *t = c->tls;
	if (c->state != RR_CONN_HS && c->state != RR_CONN_OPEN && c->state != RR_CONN_CLOSING)
		return;
	if (rr_tls_feed(t, p, n) < 0) {
		rr_info("conn %u: TLS input over %u bytes without a complete record", c->idx,
			RR_TLS_IN_MAX);
		rr_conn_kill(core, c);
		return;
	}
	if (!rr_tls_handshake_done(t)) {
		int rc = rr_tls_handshake(t);
		if (rc == -EAGAIN) {
			if (rr_tls_pending_bytes(t) > 0)
				rr_conn_mark_dirty(core, c);
			return;
		}
		if (rc < 0) {
			RR_STAT_INC(core, tls_handshake_failures);
			char peer[64];
			rr_conn_peer(c, peer, sizeof(peer));
			rr_info("conn %u (%s): TLS handshake failed: %s", c->idx, peer,
				rr_tls_error(t));
			/* send the alert if there is one, then close */
			free(c->hs);
			c->hs = NULL;
			c->state = RR_CONN_CLOSING;
			c->flags |= RR_CF_REPLY | RR_CF_INPUT_DONE;
			rr_conn_set_deadline(core, c,
					     core->now_ms + core->broker->cfg.close_timeout_ms);
			if (rr_tls_pending_bytes(t) > 0)
				rr_conn_mark_dirty(core, c);
			else
				rr_conn_maybe_finish(core, c);
			return;
		}
		RR_STAT_INC(core, tls_handshakes);
	}
	rr_in_tls_drain(core, c);
}

/* ---- completions ---------------------------------------------------------- */

void rr_in_on_recv(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	struct rr_conns *cs = rr_conns(core);
	uint32_t cqe_flags = cqe->flags;
	int res = cqe->res;
	struct rr_conn *c = rr_conn_lookup(core, io_uring_cqe_get_data64(cqe));
	if (c == NULL) {
		/* a stale completion still owns a buffer: give it back */
		if (cqe_flags & IORING_CQE_F_BUFFER)
			rr_bufring_return(&core->bufs, cqe_flags >> IORING_CQE_BUFFER_SHIFT);
		return;
	}
	bool more = cqe_flags & IORING_CQE_F_MORE;

	if (!more)
		c->flags &= ~RR_CF_RECV_ARMED;
	if (cqe_flags & IORING_CQE_F_BUFFER) {
		uint32_t bid = cqe_flags >> IORING_CQE_BUFFER_SHIFT;
		uint8_t *buf = rr_bufring_buf(&core->bufs, bid);
		if (res > 0) {
			RR_STAT_ADD(core, bytes_in, (uint64_t)res);
			c->last_rx_ms = core->now_ms;
			if (c->flags & RR_CF_PROXY)
				proxy_on_data(core, c, buf, (size_t)res);
			else if (c->tls)
				tls_on_data(core, c, buf, (size_t)res);
			else
				plain_on_data(core, c, buf, (size_t)res);
		}
		rr_bufring_return(&core->bufs, bid);
	}

	bool wanted = reading_state(c) || c->state == RR_CONN_HS;
	if (res == -ECANCELED && (c->flags & RR_CF_RECV_PAUSED)) {
		/* paused on purpose (backlog): rr_in_settle re-arms it */
	} else if (res == 0 || (res < 0 && res != -ENOBUFS)) {
		/* EOF or error: the peer is gone */
		if (res < 0 && res != -ECONNRESET && res != -ECANCELED && res != -EPIPE)
			rr_debug("conn %u: recv: %s", c->idx, strerror(-res));
		rr_conn_kill(core, c);
	} else if (!more && res == -ENOBUFS) {
		RR_STAT_INC(core, recv_enobufs);
		core->bufs.short_ = true;
		if (wanted && !(c->flags & RR_CF_REARM)) {
			/* the buffers come back at the end of this batch */
			c->flags |= RR_CF_REARM;
			c->next_rearm = cs->rearm;
			cs->rearm = c;
			c->inflight++; /* held by the rearm list */
		}
	} else if (!more && wanted && !(c->flags & (RR_CF_RECV_ARMED | RR_CF_RECV_PAUSED))) {
		rr_conn_arm_recv(core, c); /* one-shot while the request is incomplete */
	}
	if (!more)
		rr_conn_op_done(core, c);
}

void rr_in_rearm_all(struct rr_core *core)
{
	struct rr_conns *cs = rr_conns(core);
	struct rr_conn *c = cs->rearm;
	cs->rearm = NULL;
	while (c) {
		struct rr_conn *next = c->next_rearm;
		c->flags &= ~RR_CF_REARM;
		if ((reading_state(c) || c->state == RR_CONN_HS) &&
		    !(c->flags & (RR_CF_RECV_ARMED | RR_CF_RECV_PAUSED)))
			rr_conn_arm_recv(core, c);
		rr_conn_op_done(core, c);
		c = next;
	}
}
