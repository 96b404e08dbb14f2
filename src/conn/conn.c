/*
 * The connection state machine: handshake, WebSocket traffic, close, and the
 * corked output queue.
 *
 * DESIGN: completions drive everything. A connection reads its HTTP request
 * with one-shot receives (so nothing is in flight when it is handed to
 * another core), then, once upgraded, with one multishot receive from the
 * core's provided-buffer ring; received bytes are decoded at once and the
 * buffer goes straight back to the ring, so an idle connection owns no
 * receive buffer. Output is only queued here; rr_conn_flush_all() sends it,
 * one send per connection per loop iteration.
 *
 * Closing is one path for every cause: queue the last output (close frame or
 * HTTP answer), and once it is sent shutdown(SHUT_WR) and read until the
 * peer's FIN (lingering close: the peer gets our last bytes, not a reset);
 * the close timeout bounds every wait. rr_conn_kill() is the hard stop.
 */
#include "conn/conn.h"
#include "core/assert.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/tsan.h"
#include "core/time.h"
#include "http/http.h"
#include "auth/jwt.h"
#include "http/http_reply.h"
#include "net/iplimit.h"
#include "reactor/loop.h"
#include "reactor/ud.h"
#include "room/handler.h"
#include "room/room.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define HS_BUF_INIT 1024

/* A connection on its way to its room's home core. */
struct rr_handoff {
	uint32_t home;
	uint8_t route;
	uint8_t room_len;
	char room[RR_ROOM_NAME_MAX + 1];
	char accept[29];
	struct rr_ip_entry *ip;
	struct rr_tls *tls; /* moves with the socket: keys, buffered records */
	bool has_id;
	struct rr_identity id; /* from the token, for handler rooms */
	uint32_t protocol_len; /* Sec-WebSocket-Protocol to answer */
	uint32_t query_len;
	uint32_t extra_len;
	uint8_t extra[]; /* query, protocol, then the bytes after the request */
};

static void conn_kill(struct rr_core *core, struct rr_conn *c);
static void member_done(struct rr_core *core, struct rr_conn *c);
static void conn_timer_fn(struct rr_timer *t, uint64_t now_ms);
static void conn_maybe_finish(struct rr_core *core, struct rr_conn *c);

/* ---- slots ------------------------------------------------------------ */

static struct rr_conn *conn_alloc(struct rr_core *core, int fd)
{
	struct rr_conn *c = core->free_conns;
	if (c) {
		core->free_conns = c->next;
	} else {
		if (core->conns_used == core->conns_cap)
			return NULL;
		c = &core->conns[core->conns_used];
		c->idx = core->conns_used++;
		c->gen = 1;
	}
	uint32_t idx = c->idx, gen = c->gen;
	memset(c, 0, sizeof(*c));
	c->idx = idx;
	c->gen = gen;
	c->fd = fd;
	c->state = RR_CONN_HS;
	rr_timer_init(&c->timer, conn_timer_fn);
	rr_ws_rx_init(&c->rx);
	core->conns_live++;
	RR_STAT_INC(core, connections_open);
	return c;
}

static void conn_release(struct rr_core *core, struct rr_conn *c)
{
	rr_assert(c->inflight == 0);
	rr_timer_cancel(&core->wheel, &c->timer);
	rr_room_leave(core, c);
	struct rr_out *o = c->out_head;
	while (o) {
		struct rr_out *next = o->next;
		rr_frame_unref(o->f);
		free(o);
		o = next;
	}
	rr_handler_conn_free(core, c);
	rr_ws_rx_free(&c->rx);
	rr_tls_free(c->tls);
	c->tls = NULL;
	free(c->hs);
	if (c->flags & RR_CF_COUNTED)
		atomic_fetch_sub(&core->broker->live_conns, 1);
	rr_iplimit_release(c->ip);
	c->ip = NULL;
	member_done(core, c);
	core->conns_live--;
	RR_STAT_DEC(core, connections_open);
	c->state = RR_CONN_FREE;
	c->gen = (c->gen + 1) & 0xffffff;
	if (c->gen == 0)
		c->gen = 1;
	c->next = core->free_conns;
	core->free_conns = c;
}

struct rr_conn *rr_conn_lookup(struct rr_core *core, uint64_t ud)
{
	uint32_t idx = rr_ud_idx(ud);
	if (idx >= core->conns_used)
		return NULL;
	struct rr_conn *c = &core->conns[idx];
	if (c->state == RR_CONN_FREE || c->gen != rr_ud_gen(ud))
		return NULL;
	return c;
}

/* ---- submissions ------------------------------------------------------ */

static void arm_recv(struct rr_core *core, struct rr_conn *c)
{
	struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
	bool multi = c->state != RR_CONN_HS;

	if (multi)
		io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	else
		io_uring_prep_recv(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data64(sqe, rr_ud_conn(RR_UD_RECV, c->gen, c->idx));
	c->flags |= RR_CF_RECV_ARMED;
	c->inflight++;
}

static void submit_shutdown(struct rr_core *core, struct rr_conn *c, int how)
{
	struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
	io_uring_prep_shutdown(sqe, c->fd, how);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, rr_ud_conn(RR_UD_SHUTDOWN, c->gen, c->idx));
	c->inflight++;
}

static void submit_close(struct rr_core *core, struct rr_conn *c)
{
	struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
	io_uring_prep_close_direct(sqe, (unsigned)c->fd);
	io_uring_sqe_set_data64(sqe, rr_ud_conn(RR_UD_CLOSE, c->gen, c->idx));
	c->flags |= RR_CF_FD_CLOSING;
	c->inflight++;
}

static void mark_dirty(struct rr_core *core, struct rr_conn *c)
{
	if (c->flags & (RR_CF_DIRTY | RR_CF_SEND_INFLIGHT))
		return;
	c->flags |= RR_CF_DIRTY;
	c->next = core->dirty;
	core->dirty = c;
}

/* ---- output queue ----------------------------------------------------- */

static void out_drop_unsent(struct rr_conn *c)
{
	/* Keep the nodes of the send in flight, and a head already partly
	 * sent (its tail must follow, or the stream is corrupt); drop the rest. */
	struct rr_out **pp = &c->out_head, *last = NULL;
	uint32_t keep = c->send_nodes;
	if (keep == 0 && c->out_head && c->out_head->off > 0)
		keep = 1;
	for (uint32_t i = 0; i < keep && *pp; i++) {
		last = *pp;
		pp = &(*pp)->next;
	}
	struct rr_out *o = *pp;
	*pp = NULL;
	c->out_tail = last;
	while (o) {
		struct rr_out *next = o->next;
		c->out_bytes -= o->f->len - o->off;
		rr_frame_unref(o->f);
		free(o);
		o = next;
	}
	c->pong = NULL;
	if (c->x) {
		for (o = c->x->held_head; o; o = o->next)
			c->out_bytes -= o->f->len;
		rr_conn_free_list(c->x->held_head);
		c->x->held_head = c->x->held_tail = NULL;
		c->x->hold = false;
	}
}

static struct rr_out *out_node(struct rr_core *core, struct rr_frame *f)
{
	struct rr_out *o = malloc(sizeof(*o));
	if (o == NULL)
		return NULL;
	o->next = NULL;
	o->f = rr_frame_ref(f);
	o->off = 0;
	RR_STAT_INC(core, frames_out);
	return o;
}

static int out_push(struct rr_core *core, struct rr_conn *c, struct rr_frame *f)
{
	struct rr_out *o = out_node(core, f);
	if (o == NULL)
		return -ENOMEM;
	if (c->out_tail)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	c->out_bytes += f->len;
	mark_dirty(core, c);
	return 0;
}

void rr_conn_free_list(struct rr_out *o)
{
	while (o) {
		struct rr_out *next = o->next;
		rr_frame_unref(o->f);
		free(o);
		o = next;
	}
}

static void queue_close(struct rr_core *core, struct rr_conn *c, uint16_t code,
			const char *reason)
{
	struct rr_frame *f;
	if (code == RR_WS_CLOSE_NO_STATUS)
		f = rr_frame_ws(RR_WS_CLOSE, NULL, 0);
	else
		f = rr_frame_ws_close(code, reason);
	c->flags |= RR_CF_CLOSE_SENT;
	c->close_code = code;
	if (f == NULL) {
		conn_kill(core, c);
		return;
	}
	if (out_push(core, c, f) < 0)
		conn_kill(core, c);
	rr_frame_unref(f);
}

static int conn_send(struct rr_core *core, struct rr_conn *c, struct rr_frame *f, bool held)
{
	if (c->state != RR_CONN_OPEN)
		return -EPIPE;
	uint64_t queued = c->out_bytes + (c->tls ? rr_tls_pending_bytes(c->tls) : 0);
	if (rr_unlikely(queued + f->len > core->broker->cfg.max_queued_bytes)) {
		rr_info("conn %u: slow consumer (%llu bytes queued), closing with 1013", c->idx,
			(unsigned long long)queued);
		RR_STAT_INC(core, closes_1013);
		out_drop_unsent(c);
		rr_conn_close(core, c, RR_WS_CLOSE_TRY_LATER, "slow consumer");
		return -ENOBUFS;
	}
	if (held) {
		/* behind a replay: counted now, sent on release */
		struct rr_out *o = out_node(core, f);
		if (o == NULL) {
			rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
			return -ENOMEM;
		}
		if (c->x->held_tail)
			c->x->held_tail->next = o;
		else
			c->x->held_head = o;
		c->x->held_tail = o;
		c->out_bytes += f->len;
		return 0;
	}
	if (out_push(core, c, f) < 0) {
		rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

int rr_conn_send(struct rr_core *core, struct rr_conn *c, struct rr_frame *f)
{
	return conn_send(core, c, f, c->x && c->x->hold);
}

int rr_conn_send_now(struct rr_core *core, struct rr_conn *c, struct rr_frame *f)
{
	return conn_send(core, c, f, false);
}

void rr_conn_release_hold(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conn_ext *x = c->x;
	if (x == NULL || x->held_head == NULL)
		return;
	if (c->out_tail)
		c->out_tail->next = x->held_head;
	else
		c->out_head = x->held_head;
	c->out_tail = x->held_tail;
	x->held_head = x->held_tail = NULL;
	mark_dirty(core, c);
}

static void set_deadline(struct rr_core *core, struct rr_conn *c, uint64_t at_ms)
{
	rr_timer_set(&core->wheel, &c->timer, at_ms);
}

static void leave_room(struct rr_core *core, struct rr_conn *c, uint16_t code, bool clean)
{
	if (c->room && c->room->rt)
		rr_handler_leave(core, c, code, clean);
	rr_room_leave(core, c);
}

void rr_conn_close(struct rr_core *core, struct rr_conn *c, uint16_t code, const char *reason)
{
	if (c->state != RR_CONN_OPEN)
		return;
	leave_room(core, c, code, code == RR_WS_CLOSE_NORMAL || code == RR_WS_CLOSE_GOING_AWAY);
	c->state = RR_CONN_CLOSING;
	queue_close(core, c, code, reason);
	set_deadline(core, c, core->now_ms + core->broker->cfg.close_timeout_ms);
}

/* A protocol failure: send the close code, ignore the peer from now on. */
static void conn_fail(struct rr_core *core, struct rr_conn *c, uint16_t code)
{
	switch (code) {
	case RR_WS_CLOSE_PROTOCOL: RR_STAT_INC(core, closes_1002); break;
	case RR_WS_CLOSE_INVALID_DATA: RR_STAT_INC(core, closes_1007); break;
	case RR_WS_CLOSE_TOO_BIG: RR_STAT_INC(core, closes_1009); break;
	default: break;
	}
	rr_debug("conn %u: protocol failure, closing with %u", c->idx, code);
	c->flags |= RR_CF_INPUT_DONE;
	if (c->state == RR_CONN_OPEN) {
		rr_conn_close(core, c, code, NULL);
	} else if (!(c->flags & RR_CF_CLOSE_SENT)) {
		queue_close(core, c, code, NULL);
	}
	conn_maybe_finish(core, c);
}

/* Answer an HTTP request and close. */
static void reply_and_close(struct rr_core *core, struct rr_conn *c, int status,
			    struct rr_frame *f)
{
	switch (status) {
	case 400: RR_STAT_INC(core, rejected_400); break;
	case 404: RR_STAT_INC(core, rejected_404); break;
	case 405: RR_STAT_INC(core, rejected_405); break;
	case 426: RR_STAT_INC(core, rejected_426); break;
	case 429: RR_STAT_INC(core, rejected_429); break;
	case 431: RR_STAT_INC(core, rejected_431); break;
	case 503: RR_STAT_INC(core, rejected_503); break;
	default: break;
	}
	if (f == NULL)
		f = rr_http_response(status, NULL, NULL, 0);
	if (f && (c->flags & RR_CF_HEAD)) {
		/* HEAD: the same head (Content-Length included), no body */
		for (uint32_t i = 0; i + 3 < f->len; i++) {
			if (memcmp(f->data + i, "\r\n\r\n", 4) == 0) {
				f->len = i + 4;
				break;
			}
		}
	}
	free(c->hs);
	c->hs = NULL;
	c->state = RR_CONN_CLOSING;
	c->flags |= RR_CF_REPLY | RR_CF_INPUT_DONE;
	if (f == NULL || out_push(core, c, f) < 0) {
		if (f)
			rr_frame_unref(f);
		conn_kill(core, c);
		return;
	}
	rr_frame_unref(f);
	set_deadline(core, c, core->now_ms + core->broker->cfg.close_timeout_ms);
}

static void member_done(struct rr_core *core, struct rr_conn *c)
{
	if (c->flags & RR_CF_MEMBER) {
		c->flags &= ~RR_CF_MEMBER;
		core->members_live--;
	}
}

/* Decide what a closing connection does next once its output is out. */
static void conn_maybe_finish(struct rr_core *core, struct rr_conn *c)
{
	if (c->state != RR_CONN_CLOSING)
		return;
	if (c->out_head != NULL || (c->flags & RR_CF_SEND_INFLIGHT) ||
	    (c->tls && rr_tls_pending_bytes(c->tls) > 0))
		return; /* the send completion calls again */
	if ((c->flags & RR_CF_CLOSE_SENT) && (c->flags & RR_CF_CLOSE_RCVD)) {
		/* Close handshake complete: the peer sends nothing more, so the
		 * server closes TCP first (RFC 6455 7.1.1) at once: no reset
		 * can destroy our close frame. */
		member_done(core, c);
		conn_kill(core, c);
		return;
	}
	bool done = (c->flags & RR_CF_REPLY) ||
		    ((c->flags & RR_CF_CLOSE_SENT) && (c->flags & RR_CF_INPUT_DONE));
	if (!done)
		return;
	/* The peer may still be sending (a request body, frames after an
	 * error): closing now would answer them with a reset that can wipe
	 * our last bytes at the peer. Lingering close: FIN now, read and
	 * discard until the peer's FIN or the close timeout. */
	member_done(core, c);
	c->state = RR_CONN_LINGER;
	submit_shutdown(core, c, SHUT_WR);
	if (!(c->flags & RR_CF_RECV_ARMED))
		arm_recv(core, c);
	uint64_t linger = core->broker->cfg.close_timeout_ms;
	if (atomic_load_explicit(&core->broker->stopping, memory_order_relaxed) &&
	    linger > RR_STOP_LINGER_MS)
		linger = RR_STOP_LINGER_MS; /* stopping: don't wait on idle peers */
	set_deadline(core, c, core->now_ms + linger);
}

/* Hard stop: the socket goes as soon as nothing is in flight on it. */
static void conn_kill(struct rr_core *core, struct rr_conn *c)
{
	if (c->state == RR_CONN_DEAD || c->state == RR_CONN_FREE)
		return;
	leave_room(core, c, 1006, false);
	if (c->state == RR_CONN_WAIT)
		rr_handler_unwait(core, c);
	if (c->state == RR_CONN_HANDOFF && (c->flags & RR_CF_HANDOFF_WAIT)) {
		/* never submitted: the record is ours (its tls and ip are c's) */
		free(c->handoff);
		c->handoff = NULL;
		c->flags &= ~RR_CF_HANDOFF_WAIT;
		core->handoffs_inflight--;
	}
	member_done(core, c);
	rr_timer_cancel(&core->wheel, &c->timer);
	c->state = RR_CONN_DEAD;
	if (!(c->flags & RR_CF_HANDED_OFF) &&
	    (c->flags & (RR_CF_RECV_ARMED | RR_CF_SEND_INFLIGHT)))
		submit_shutdown(core, c, SHUT_RDWR); /* ends the receive and send */
	if (c->inflight == 0)
		submit_close(core, c);
}

/* An operation finished: a dead connection may now be dropped. */
static void conn_op_done(struct rr_core *core, struct rr_conn *c)
{
	rr_assert(c->inflight > 0);
	c->inflight--;
	if (c->state != RR_CONN_DEAD || c->inflight > 0)
		return;
	if (c->flags & RR_CF_FD_CLOSING)
		conn_release(core, c);
	else
		submit_close(core, c);
}

/* ---- timers ----------------------------------------------------------- */

static __thread struct rr_core *tl_core;

void rr_conn_set_core(struct rr_core *core)
{
	tl_core = core;
}

static struct rr_core *core_of(struct rr_conn *c)
{
	(void)c;
	return tl_core;
}

struct rr_core *rr_conn_core(void)
{
	return tl_core;
}

/* The next time an open connection needs attention: a ping, the idle
 * timeout, or its token's expiry. */
static uint64_t open_deadline(struct rr_core *core, struct rr_conn *c)
{
	const struct rr_config *cfg = &core->broker->cfg;
	uint64_t next = c->last_ping_ms + cfg->ping_interval_ms;
	if (c->last_rx_ms + cfg->idle_timeout_ms < next)
		next = c->last_rx_ms + cfg->idle_timeout_ms;
	if (c->x && c->x->id.exp_s) {
		uint64_t wall = rr_wall_ms();
		uint64_t exp_ms = c->x->id.exp_s * 1000;
		uint64_t at = exp_ms > wall ? core->now_ms + (exp_ms - wall) : core->now_ms;
		if (at < next)
			next = at;
	}
	return next;
}

static void conn_timer_fn(struct rr_timer *t, uint64_t now_ms)
{
	struct rr_conn *c = rr_container_of(t, struct rr_conn, timer);
	struct rr_core *core = core_of(c);
	const struct rr_config *cfg = &core->broker->cfg;

	switch (c->state) {
	case RR_CONN_HS:
	case RR_CONN_WAIT:
		rr_info("conn %u: no complete request within %llu ms, closing", c->idx,
			(unsigned long long)cfg->handshake_timeout_ms);
		RR_STAT_INC(core, handshake_timeouts);
		conn_kill(core, c);
		return;
	case RR_CONN_OPEN: {
		if (c->x && c->x->id.exp_s && rr_wall_ms() / 1000 >= c->x->id.exp_s) {
			rr_info("conn %u: token expired, closing with 1008", c->idx);
			rr_conn_close(core, c, RR_WS_CLOSE_POLICY, "token expired");
			return;
		}
		if (now_ms - c->last_rx_ms >= cfg->idle_timeout_ms) {
			rr_debug("conn %u: idle for %llu ms, closing with 4008", c->idx,
				 (unsigned long long)(now_ms - c->last_rx_ms));
			RR_STAT_INC(core, closes_4008);
			rr_conn_close(core, c, RR_WS_CLOSE_IDLE, "idle timeout");
			return;
		}
		if (now_ms - c->last_ping_ms >= cfg->ping_interval_ms) {
			struct rr_frame *f = rr_frame_ws(RR_WS_PING, NULL, 0);
			if (f) {
				rr_conn_send(core, c, f);
				rr_frame_unref(f);
				RR_STAT_INC(core, pings_sent);
			}
			c->last_ping_ms = now_ms;
			if (c->state != RR_CONN_OPEN)
				return;
		}
		set_deadline(core, c, open_deadline(core, c));
		return;
	}
	case RR_CONN_CLOSING:
	case RR_CONN_LINGER:
		rr_debug("conn %u: close timeout, dropping the socket", c->idx);
		conn_kill(core, c);
		return;
	default:
		return;
	}
}

/* ---- handshake -------------------------------------------------------- */

static int hs_append(struct rr_core *core, struct rr_conn *c, const uint8_t *p, size_t n)
{
	struct rr_hs *hs = c->hs;
	size_t limit = core->broker->cfg.max_header_bytes + core->buf_size;
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

static void ws_feed(struct rr_core *core, struct rr_conn *c, uint8_t *p, size_t n);

int rr_conn_accept_ws(struct rr_core *core, struct rr_conn *c, const char accept[29],
		      const char *protocol)
{
	if (core->draining) {
		/* it waited (room load, hand-off) across the start of the drain */
		rr_room_leave(core, c);
		reply_and_close(core, c, 503, NULL);
		return -ESHUTDOWN;
	}
	struct rr_frame *f = rr_http_switching(accept, protocol && protocol[0] ? protocol : NULL);
	if (f == NULL) {
		rr_room_leave(core, c);
		reply_and_close(core, c, 503, NULL);
		return -ENOMEM;
	}
	c->state = RR_CONN_OPEN;
	c->flags |= RR_CF_MEMBER;
	core->members_live++;
	RR_STAT_INC(core, upgrades);
	out_push(core, c, f);
	rr_frame_unref(f);
	c->last_rx_ms = core->now_ms;
	c->last_ping_ms = core->now_ms;
	set_deadline(core, c, open_deadline(core, c));
	arm_recv(core, c);
	return 0;
}

void rr_conn_reject(struct rr_core *core, struct rr_conn *c, int status)
{
	reply_and_close(core, c, status, NULL);
}

void rr_conn_feed(struct rr_core *core, struct rr_conn *c, uint8_t *p, size_t n)
{
	if (c->state == RR_CONN_OPEN || c->state == RR_CONN_CLOSING)
		ws_feed(core, c, p, n);
}

/* Become a WebSocket on this (the home) core. */
static void upgrade_local(struct rr_core *core, struct rr_conn *c, uint8_t route,
			  const char *room, size_t room_len, const char accept[29],
			  const struct rr_identity *id, const char *protocol, const char *query,
			  size_t query_len, uint8_t *extra, size_t extra_len)
{
	c->route = route;
	if (route != RR_ROUTE_ECHO && route != RR_ROUTE_RAW) {
		rr_handler_upgrade(core, c, route, room, room_len, accept, id, protocol, query,
				   query_len, extra, extra_len);
		return;
	}
	if (route == RR_ROUTE_RAW) {
		struct rr_room *r = rr_room_get(core, route, room, room_len);
		if (r == NULL) {
			reply_and_close(core, c, 503, NULL);
			return;
		}
		int rc = rr_room_join(core, r, c);
		if (rc < 0) {
			rr_info("conn %u: room '%.*s' is full (%u members), answering 503", c->idx,
				(int)room_len, room, r->count);
			rr_room_release_if_empty(core, r);
			reply_and_close(core, c, 503, NULL);
			return;
		}
	}
	if (rr_conn_accept_ws(core, c, accept, NULL) < 0)
		return;
	if (extra_len)
		ws_feed(core, c, extra, extra_len);
}

static void handoff_submit(struct rr_core *core, struct rr_conn *c)
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

static void hand_off(struct rr_core *core, struct rr_conn *c, unsigned home, uint8_t route,
		     struct rr_route *rt, const char accept[29], const struct rr_identity *id,
		     const char *protocol, struct rr_http_str query, const uint8_t *extra,
		     size_t extra_len)
{
	if (core->handoffs_inflight >= RR_HANDOFF_INFLIGHT_MAX) {
		reply_and_close(core, c, 503, NULL);
		return;
	}
	size_t plen = protocol ? strlen(protocol) : 0;
	struct rr_handoff *h = malloc(sizeof(*h) + query.n + plen + 1 + extra_len);
	if (h == NULL) {
		reply_and_close(core, c, 503, NULL);
		return;
	}
	h->home = home;
	h->route = route;
	h->room_len = (uint8_t)rt->room.n;
	memcpy(h->room, rt->room.p, rt->room.n);
	h->room[rt->room.n] = '\0';
	memcpy(h->accept, accept, 29);
	h->ip = c->ip;
	h->tls = c->tls;
	h->has_id = id != NULL;
	if (id)
		h->id = *id;
	h->query_len = (uint32_t)query.n;
	if (query.n)
		memcpy(h->extra, query.p, query.n);
	h->protocol_len = (uint32_t)plen;
	if (plen)
		memcpy(h->extra + query.n, protocol, plen);
	h->extra[query.n + plen] = '\0';
	h->extra_len = (uint32_t)extra_len;
	if (extra_len)
		memcpy(h->extra + query.n + plen + 1, extra, extra_len);

	free(c->hs);
	c->hs = NULL;
	rr_timer_cancel(&core->wheel, &c->timer);
	c->state = RR_CONN_HANDOFF;
	c->handoff = h; /* kept until the source CQE says whether it arrived */
	core->handoffs_inflight++;
	/* TLS handshake output (Finished, session tickets) must leave from
	 * here first: the socket's byte stream can't be split between cores. */
	if ((c->flags & RR_CF_SEND_INFLIGHT) || (c->tls && rr_tls_pending_bytes(c->tls) > 0)) {
		c->flags |= RR_CF_HANDOFF_WAIT;
		mark_dirty(core, c);
		return;
	}
	handoff_submit(core, c);
}

/* --allow-origin: a comma-separated list; a request without Origin (not a
 * browser) passes, as browsers always send one. */
static bool origin_allowed(const struct rr_config *cfg, struct rr_http_str origin)
{
	const char *list = cfg->allow_origin;
	if (list[0] == '\0' || origin.n == 0)
		return true;
	while (*list) {
		const char *end = strchr(list, ',');
		size_t n = end ? (size_t)(end - list) : strlen(list);
		while (n && *list == ' ') {
			list++;
			n--;
		}
		while (n && list[n - 1] == ' ')
			n--;
		if (n == origin.n && strncasecmp(list, origin.p, n) == 0)
			return true;
		if (end == NULL)
			break;
		list = end + 1;
	}
	return false;
}

/* Find the token: Authorization: Bearer, ?token=, or the subprotocol
 * "bearer.<token>" (browsers can't set headers on a WebSocket). */
static bool find_token(const struct rr_http_req *req, char *out, size_t cap, char *protocol,
		       size_t pcap)
{
	const struct rr_http_str *a = &req->authorization;
	if (a->n > 7 && strncasecmp(a->p, "Bearer ", 7) == 0) {
		size_t n = a->n - 7;
		if (n >= cap)
			return false;
		memcpy(out, a->p + 7, n);
		out[n] = '\0';
		return true;
	}
	struct rr_http_str v;
	if (rr_http_query_get(req->query, "token", &v)) {
		ssize_t n = rr_http_pct_decode(v, out, cap - 1);
		if (n < 0)
			return false;
		out[n] = '\0';
		return true;
	}
	/* Sec-WebSocket-Protocol: a, bearer.xyz, ... */
	const char *p = req->ws_protocol.p, *end = p + req->ws_protocol.n;
	bool found = false, ringroom = false;
	while (p && p < end) {
		while (p < end && (*p == ' ' || *p == ','))
			p++;
		const char *q = p;
		while (q < end && *q != ',' && *q != ' ')
			q++;
		size_t n = (size_t)(q - p);
		if (n > 7 && strncmp(p, "bearer.", 7) == 0 && n - 7 < cap && !found) {
			memcpy(out, p + 7, n - 7);
			out[n - 7] = '\0';
			found = true;
			/* a browser needs one of its offered protocols back */
			if (!ringroom && n < pcap) {
				memcpy(protocol, p, n);
				protocol[n] = '\0';
			}
		} else if (n == 8 && strncmp(p, "ringroom", 8) == 0 && pcap > 8) {
			ringroom = true;
			memcpy(protocol, "ringroom", 9);
		}
		p = q;
	}
	return found;
}

/* Verify the request's token for a handler route: 0, or the status to
 * answer (401). Without --auth-secret everyone is anonymous. The token is
 * never logged. */
static int authenticate(struct rr_core *core, struct rr_conn *c, const struct rr_http_req *req,
			struct rr_identity *id, bool *has_id, char *protocol, size_t pcap)
{
	char token[RR_JWT_TOKEN_MAX + 1];
	bool have = find_token(req, token, sizeof(token), protocol, pcap);
	(void)core;
	if (rr_handler_cfg.auth_secret_len == 0)
		return 0;
	if (!have) {
		rr_info("conn %u: no token, answering 401", c->idx);
		return 401;
	}
	struct rr_jwt_claims cl;
	int rc = rr_jwt_verify(token, strlen(token), rr_handler_cfg.auth_secret,
			       rr_handler_cfg.auth_secret_len, rr_wall_ms() / 1000, &cl);
	explicit_bzero(token, sizeof(token));
	if (rc < 0) {
		rr_info("conn %u: token refused (%s), answering 401", c->idx, rr_jwt_strerror(rc));
		return 401;
	}
	memset(id, 0, sizeof(*id));
	snprintf(id->user_id, sizeof(id->user_id), "%s", cl.sub);
	snprintf(id->user_name, sizeof(id->user_name), "%s", cl.name);
	id->perm_read = cl.perm_read;
	id->perm_write = cl.perm_write;
	id->exp_s = cl.exp;
	*has_id = true;
	return 0;
}

static void hs_complete(struct rr_core *core, struct rr_conn *c, size_t head_len,
			struct rr_http_req *req)
{
	struct rr_route rt = rr_http_route(req->path);
	const char *croom;
	size_t croom_len;
	unsigned custom = rr_handler_match_custom(req->path.p, req->path.n, &croom, &croom_len);
	if (custom) {
		if (rr_room_name_valid(croom, croom_len)) {
			rt.kind = (enum rr_route_kind)custom;
			rt.room.p = croom;
			rt.room.n = croom_len;
		} else {
			rt.kind = RR_ROUTE_BAD_ROOM;
		}
	}
	const struct rr_broker *b = core->broker;
	bool draining = atomic_load_explicit(&b->draining, memory_order_relaxed);

	bool plain = rt.kind == RR_ROUTE_HEALTHZ || rt.kind == RR_ROUTE_METRICS ||
		     rt.kind == RR_ROUTE_INDEX;
	if (plain) {
		bool get = req->method.n == 3 && memcmp(req->method.p, "GET", 3) == 0;
		bool head = req->method.n == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
		if (!get && !head) {
			reply_and_close(core, c, 405, NULL);
			return;
		}
		if (head)
			c->flags |= RR_CF_HEAD; /* the answer goes out without its body */
	}

	switch (rt.kind) {
	case RR_ROUTE_HEALTHZ:
		if (draining)
			reply_and_close(core, c, 503,
					rr_http_response(503, "text/plain", "draining\n", 9));
		else
			reply_and_close(core, c, 200, rr_http_response(200, "text/plain", "ok\n", 3));
		return;
	case RR_ROUTE_METRICS: {
		size_t cap = 64 * 1024;
		char *buf = malloc(cap);
		if (buf == NULL) {
			reply_and_close(core, c, 503, NULL);
			return;
		}
		size_t n = rr_metrics_render(b, buf, cap);
		reply_and_close(core, c, 200,
				rr_http_response(200, "text/plain; version=0.0.4", buf, n));
		free(buf);
		return;
	}
	case RR_ROUTE_INDEX:
		reply_and_close(core, c, 200,
				rr_http_response(200, "text/html; charset=utf-8", rr_index_html,
						 rr_index_html_len));
		return;
	case RR_ROUTE_CHAT:
		if (rr_handler_for_route(RR_ROUTE_CHAT) != NULL)
			break;
		/* a build without the chat handler */
		__attribute__((fallthrough));
	case RR_ROUTE_NONE:
		rr_info("conn %u: no route for '%.*s', answering 404", c->idx,
			(int)(req->path.n > 128 ? 128 : req->path.n), req->path.p);
		reply_and_close(core, c, 404, NULL);
		return;
	case RR_ROUTE_BAD_ROOM:
		rr_info("conn %u: invalid room name, answering 400", c->idx);
		reply_and_close(core, c, 400, NULL);
		return;
	case RR_ROUTE_ECHO:
	case RR_ROUTE_RAW:
	default: /* --handler routes */
		break;
	}

	int status = rr_http_upgrade_check(req);
	if (status != 0) {
		rr_info("conn %u: bad upgrade request, answering %d", c->idx, status);
		reply_and_close(core, c, status, NULL);
		return;
	}
	struct rr_identity ident;
	bool has_id = false;
	char protocol[RR_JWT_TOKEN_MAX + 16] = "";
	if (rt.kind != RR_ROUTE_ECHO && rt.kind != RR_ROUTE_RAW) {
		int st = authenticate(core, c, req, &ident, &has_id, protocol, sizeof(protocol));
		if (st != 0) {
			reply_and_close(core, c, st, NULL);
			return;
		}
	}
	if (!origin_allowed(&b->cfg, req->origin)) {
		rr_info("conn %u: Origin '%.*s' not in --allow-origin, answering 403", c->idx,
			(int)(req->origin.n > 128 ? 128 : req->origin.n), req->origin.p);
		reply_and_close(core, c, 403, NULL);
		return;
	}
	if (c->flags & RR_CF_OVER_LIMIT) {
		rr_info("conn %u: --max-connections or the fixed-file table reached, answering 503",
			c->idx);
		reply_and_close(core, c, 503, NULL);
		return;
	}
	if (c->flags & RR_CF_OVER_IP) {
		char ip[64] = "?";
		rr_iplimit_format(c->ip, ip, sizeof(ip));
		rr_info("conn %u: --max-connections-per-ip reached for %s, answering 429", c->idx,
			ip);
		reply_and_close(core, c, 429, NULL);
		return;
	}
	if (draining) {
		reply_and_close(core, c, 503, NULL);
		return;
	}
	char accept[29];
	rr_ws_accept_key(req->ws_key.p, req->ws_key.n, accept);

	uint8_t *extra = c->hs->buf + head_len;
	size_t extra_len = c->hs->len - head_len;
	unsigned home = core->id;
	if (rt.kind != RR_ROUTE_ECHO)
		home = rr_room_home(b, rt.room.p, rt.room.n);
	if (home != core->id) {
		hand_off(core, c, home, (uint8_t)rt.kind, &rt, accept, has_id ? &ident : NULL,
			 protocol, req->query, extra, extra_len);
		return;
	}
	/* upgrade_local may feed the extra bytes; keep hs until it returns */
	struct rr_hs *hs = c->hs;
	c->hs = NULL;
	upgrade_local(core, c, (uint8_t)rt.kind, rt.room.p, rt.room.n, accept,
		      has_id ? &ident : NULL, protocol, req->query.p, req->query.n, extra, extra_len);
	free(hs);
}

static void hs_on_data(struct rr_core *core, struct rr_conn *c, const uint8_t *p, size_t n)
{
	const struct rr_config *cfg = &core->broker->cfg;
	struct rr_http_limits lim = {.header_bytes_max = cfg->max_header_bytes,
				     .headers_max = cfg->max_headers};
	struct rr_http_req req;

	int rc = hs_append(core, c, p, n);
	if (rc == -EMSGSIZE) {
		rr_info("conn %u: request head over %llu bytes, answering 431", c->idx,
			(unsigned long long)cfg->max_header_bytes);
		reply_and_close(core, c, 431, NULL);
		return;
	}
	if (rc < 0) {
		reply_and_close(core, c, 503, NULL);
		return;
	}
	ssize_t r = rr_http_parse((const char *)c->hs->buf, c->hs->len, &lim, &req);
	if (r == -EAGAIN)
		return; /* rr_conn_on_recv re-arms the receive */
	if (r == -EMSGSIZE) {
		rr_info("conn %u: request head over the limits (%llu bytes, %u headers), "
			"answering 431",
			c->idx, (unsigned long long)cfg->max_header_bytes, cfg->max_headers);
		reply_and_close(core, c, 431, NULL);
		return;
	}
	if (r < 0) {
		rr_info("conn %u: malformed HTTP request, answering 400", c->idx);
		reply_and_close(core, c, 400, NULL);
		return;
	}
	hs_complete(core, c, (size_t)r, &req);
}

/* ---- WebSocket traffic ------------------------------------------------ */

static int on_ws_message(void *ctx, uint8_t opcode, uint8_t *p, size_t n)
{
	struct rr_conn *c = ctx;
	struct rr_core *core = core_of(c);
	RR_STAT_INC(core, messages_in);
	if (c->room && c->room->rt) {
		rr_handler_message(core, c, opcode, p, n);
		return c->state == RR_CONN_OPEN ? 0 : 1;
	}
	struct rr_frame *f = rr_frame_ws(opcode, p, n);
	if (f == NULL) {
		rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
		return 1;
	}
	if (c->route == RR_ROUTE_ECHO) {
		rr_conn_send(core, c, f);
	} else if (c->route == RR_ROUTE_RAW && c->room) {
		rr_room_broadcast_frame(core, c->room, f, c);
	}
	rr_frame_unref(f);
	return c->state == RR_CONN_OPEN ? 0 : 1;
}

static int on_ws_ping(void *ctx, uint8_t *p, size_t n)
{
	struct rr_conn *c = ctx;
	struct rr_core *core = core_of(c);
	if (c->state != RR_CONN_OPEN)
		return 0;
	struct rr_frame *f = rr_frame_ws(RR_WS_PONG, p, n);
	if (f == NULL)
		return 0;
	if (c->pong) {
		/* A pong not yet sent answers an older ping: answer only the
		 * latest (RFC 6455 5.5.3), so a ping flood costs one frame. */
		c->out_bytes -= c->pong->f->len;
		rr_frame_unref(c->pong->f);
		c->pong->f = f;
		c->out_bytes += f->len;
		return 0;
	}
	/* a control frame may pass a replay's hold: it answers the peer, not
	 * the room, and c->pong must name a node of the output queue */
	if (rr_conn_send_now(core, c, f) == 0)
		c->pong = c->out_tail;
	rr_frame_unref(f);
	return c->state == RR_CONN_OPEN ? 0 : 1;
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
	struct rr_conn *c = ctx;
	struct rr_core *core = core_of(c);
	(void)reason;
	(void)n;
	c->flags |= RR_CF_CLOSE_RCVD | RR_CF_INPUT_DONE;
	if (c->state == RR_CONN_OPEN) {
		/* echo the peer's code (RFC 6455 5.5.1) */
		leave_room(core, c, code == RR_WS_CLOSE_NO_STATUS ? 1005 : code, true);
		c->state = RR_CONN_CLOSING;
		queue_close(core, c, code, NULL);
		set_deadline(core, c, core->now_ms + core->broker->cfg.close_timeout_ms);
	}
	conn_maybe_finish(core, c);
	return 1;
}

static const struct rr_ws_rx_ops ws_ops = {
	.message = on_ws_message,
	.ping = on_ws_ping,
	.pong = on_ws_pong,
	.close = on_ws_close,
};

static void ws_feed(struct rr_core *core, struct rr_conn *c, uint8_t *p, size_t n)
{
	if (c->flags & RR_CF_INPUT_DONE)
		return;
	struct rr_ws_limits lim = {.message_bytes_max = core->broker->cfg.max_message_bytes};
	uint16_t code = 0;
	ssize_t rc = rr_ws_rx_feed(&c->rx, p, n, &lim, &ws_ops, c, &code);
	if (rc < 0)
		conn_fail(core, c, code ? code : RR_WS_CLOSE_PROTOCOL);
}

/* ---- completions ------------------------------------------------------ */

void rr_conn_on_accept(struct rr_core *core, int slot, const struct sockaddr *peer, bool tls)
{
	struct rr_broker *b = core->broker;
	struct rr_conn *c = conn_alloc(core, slot);
	RR_STAT_INC(core, connections_accepted);
	if (c == NULL) {
		rr_warn("no free connection slot on this core: dropping a new connection");
		struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
		io_uring_prep_close_direct(sqe, (unsigned)slot);
		io_uring_sqe_set_data64(sqe, 0);
		return;
	}
	unsigned live = atomic_fetch_add(&b->live_conns, 1) + 1;
	c->flags |= RR_CF_COUNTED;
	/* past --max-connections, or this core's fixed-file table nearly full
	 * (the rest is kept for connections handed over by other cores) */
	if (live > b->cfg.max_connections || core->conns_live + RR_SLOTS_RESERVE > core->slots)
		c->flags |= RR_CF_OVER_LIMIT;
	if (peer) {
		bool over = false;
		c->ip = rr_iplimit_acquire(peer, &over);
		if (over)
			c->flags |= RR_CF_OVER_IP;
	}
	if (tls) {
		struct rr_tls_ctx *ctx = rr_broker_tls_ctx(b);
		c->tls = ctx ? rr_tls_new(ctx) : NULL;
		if (ctx)
			rr_tls_ctx_unref(ctx);
		if (c->tls == NULL) {
			rr_warn("conn %u: no TLS state (out of memory): closing", c->idx);
			conn_kill(core, c);
			return;
		}
	}
	/* the TLS handshake counts toward the handshake timeout */
	set_deadline(core, c, core->now_ms + b->cfg.handshake_timeout_ms);
	arm_recv(core, c);
}

static void plain_on_data(struct rr_core *core, struct rr_conn *c, uint8_t *p, size_t n)
{
	if (c->state == RR_CONN_HS)
		hs_on_data(core, c, p, n);
	else if (c->state == RR_CONN_OPEN || c->state == RR_CONN_CLOSING)
		ws_feed(core, c, p, n);
	/* lingering, handing off or dead: discard */
}

/* Decrypt what the TLS layer holds and pass the plaintext on. Stops when a
 * hand-off starts: the rest stays in the TLS object and moves with it. */
static void tls_drain(struct rr_core *core, struct rr_conn *c);

void rr_conn_after_open(struct rr_core *core, struct rr_conn *c)
{
	if (c->tls && c->state == RR_CONN_OPEN)
		tls_drain(core, c); /* records that arrived while it waited */
}

static void tls_drain(struct rr_core *core, struct rr_conn *c)
{
	for (int guard = 0; guard < 1024; guard++) {
		if (c->state != RR_CONN_HS && c->state != RR_CONN_OPEN &&
		    c->state != RR_CONN_CLOSING)
			break;
		ssize_t n = rr_tls_read(c->tls, core->tls_plain, core->tls_plain_cap);
		if (n == 0)
			break;
		if (n < 0) {
			if (n == -EPROTO)
				rr_info("conn %u: TLS record error: %s", c->idx, rr_tls_error(c->tls));
			conn_kill(core, c);
			return;
		}
		plain_on_data(core, c, core->tls_plain, (size_t)n);
	}
	if (c->tls && rr_tls_pending_bytes(c->tls) > 0)
		mark_dirty(core, c);
}

static void tls_on_data(struct rr_core *core, struct rr_conn *c, const uint8_t *p, size_t n)
{
	struct rr_tls *t = c->tls;
	if (c->state != RR_CONN_HS && c->state != RR_CONN_OPEN && c->state != RR_CONN_CLOSING)
		return;
	if (rr_tls_feed(t, p, n) < 0) {
		rr_info("conn %u: TLS input over %u bytes without a complete record", c->idx,
			RR_TLS_IN_MAX);
		conn_kill(core, c);
		return;
	}
	if (!rr_tls_handshake_done(t)) {
		int rc = rr_tls_handshake(t);
		if (rc == -EAGAIN) {
			if (rr_tls_pending_bytes(t) > 0)
				mark_dirty(core, c);
			return;
		}
		if (rc < 0) {
			RR_STAT_INC(core, tls_handshake_failures);
			rr_info("conn %u: TLS handshake failed: %s", c->idx, rr_tls_error(t));
			/* send the alert if there is one, then close */
			free(c->hs);
			c->hs = NULL;
			c->state = RR_CONN_CLOSING;
			c->flags |= RR_CF_REPLY | RR_CF_INPUT_DONE;
			set_deadline(core, c, core->now_ms + core->broker->cfg.close_timeout_ms);
			if (rr_tls_pending_bytes(t) > 0)
				mark_dirty(core, c);
			else
				conn_maybe_finish(core, c);
			return;
		}
		RR_STAT_INC(core, tls_handshakes);
	}
	tls_drain(core, c);
}

static bool reading_state(const struct rr_conn *c)
{
	return c->state == RR_CONN_OPEN || c->state == RR_CONN_CLOSING ||
	       c->state == RR_CONN_LINGER;
}

void rr_conn_on_recv(struct rr_core *core, struct rr_conn *c, int res, uint32_t cqe_flags)
{
	bool more = cqe_flags & IORING_CQE_F_MORE;

	if (!more)
		c->flags &= ~RR_CF_RECV_ARMED;
	if (cqe_flags & IORING_CQE_F_BUFFER) {
		uint32_t bid = cqe_flags >> IORING_CQE_BUFFER_SHIFT;
		uint8_t *buf = core->bufs + (size_t)bid * core->buf_size;
		if (res > 0) {
			RR_STAT_ADD(core, bytes_in, (uint64_t)res);
			c->last_rx_ms = core->now_ms;
			if (c->tls)
				tls_on_data(core, c, buf, (size_t)res);
			else
				plain_on_data(core, c, buf, (size_t)res);
		}
		rr_core_return_buffer(core, bid);
	}

	if (res == 0 || (res < 0 && res != -ENOBUFS)) {
		/* EOF or error: the peer is gone */
		if (res < 0 && res != -ECONNRESET && res != -ECANCELED && res != -EPIPE)
			rr_debug("conn %u: recv: %s", c->idx, strerror(-res));
		conn_kill(core, c);
	} else if (!more && res == -ENOBUFS) {
		RR_STAT_INC(core, recv_enobufs);
		core->bufs_short = true;
		if ((reading_state(c) || c->state == RR_CONN_HS) && !(c->flags & RR_CF_REARM)) {
			/* the buffers come back at the end of this batch */
			c->flags |= RR_CF_REARM;
			c->next_rearm = core->rearm;
			core->rearm = c;
			c->inflight++; /* held by the rearm list */
		}
	} else if (!more && (reading_state(c) || c->state == RR_CONN_HS) &&
		   !(c->flags & RR_CF_RECV_ARMED)) {
		arm_recv(core, c); /* one-shot while the request is incomplete */
	}
	if (!more)
		conn_op_done(core, c);
}

void rr_conn_rearm_all(struct rr_core *core)
{
	struct rr_conn *c = core->rearm;
	core->rearm = NULL;
	while (c) {
		struct rr_conn *next = c->next_rearm;
		c->flags &= ~RR_CF_REARM;
		if ((reading_state(c) || c->state == RR_CONN_HS) &&
		    !(c->flags & RR_CF_RECV_ARMED))
			arm_recv(core, c);
		conn_op_done(core, c);
		c = next;
	}
}

void rr_conn_on_send(struct rr_core *core, struct rr_conn *c, int res)
{
	c->flags &= ~RR_CF_SEND_INFLIGHT;
	if (res < 0) {
		if (res != -EPIPE && res != -ECONNRESET)
			rr_debug("conn %u: send: %s", c->idx, strerror(-res));
		c->send_nodes = 0;
		conn_kill(core, c);
		conn_op_done(core, c);
		return;
	}
	RR_STAT_ADD(core, bytes_out, (uint64_t)res);
	if (c->tls) {
		/* frames were released when encrypted; this is ciphertext */
		rr_tls_consume(c->tls, (size_t)res);
		c->send_nodes = 0;
		if (c->state != RR_CONN_DEAD &&
		    (c->out_head || rr_tls_pending_bytes(c->tls) > 0))
			mark_dirty(core, c);
		else if (c->state == RR_CONN_HANDOFF && (c->flags & RR_CF_HANDOFF_WAIT))
			handoff_submit(core, c);
		conn_maybe_finish(core, c);
		conn_op_done(core, c);
		return;
	}
	/* release what went out; a partial send leaves the rest queued */
	size_t left = (size_t)res;
	c->out_bytes -= (uint64_t)res;
	while (left > 0) {
		struct rr_out *o = c->out_head;
		rr_assert(o != NULL);
		size_t avail = o->f->len - o->off;
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
		rr_frame_unref(o->f);
		free(o);
	}
	c->send_nodes = 0;
	if (c->out_head && c->state != RR_CONN_DEAD)
		mark_dirty(core, c);
	conn_maybe_finish(core, c);
	conn_op_done(core, c);
}

void rr_conn_on_op_done(struct rr_core *core, struct rr_conn *c, int kind, int res)
{
	switch (kind) {
	case RR_UD_SHUTDOWN:
		break; /* ENOTCONN etc. are fine: the peer went first */
	case RR_UD_CLOSE:
		break;
	case RR_UD_HANDOFF_OUT: {
		struct rr_handoff *h = c->handoff;
		c->handoff = NULL;
		core->handoffs_inflight--;
		if (res < 0) {
			/* the home core's fixed-file table is full, or it is gone */
			rr_warn("conn %u: hand-off to the room's home core failed: %s; answering 503",
				c->idx, strerror(-res));
			free(h);
			c->state = RR_CONN_HS;
			reply_and_close(core, c, 503, NULL);
			break;
		}
		/* The home core owns the socket (and the record) now: drop our
		 * slot without touching the socket, and the count moved too. */
		c->flags |= RR_CF_HANDED_OFF;
		c->flags &= ~RR_CF_COUNTED;
		c->ip = NULL;
		c->tls = NULL;
		c->state = RR_CONN_HS; /* so conn_kill proceeds */
		conn_kill(core, c);
		break;
	}
	default:
		break;
	}
	conn_op_done(core, c);
}

void rr_conn_on_handoff_in(struct rr_core *core, void *record, int res)
{
	struct rr_handoff *h = record;
	RR_HB_ACQUIRE(h); /* published by the source core through MSG_RING */
	if (res < 0) {
		/* not expected: the fd is only sent when a slot was allocated */
		rr_warn("hand-off arrived without a file: %s", strerror(-res));
		free(h);
		return;
	}
	RR_STAT_INC(core, handoffs_in);
	struct rr_conn *c = conn_alloc(core, res);
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
	/* bounded like any handshake: a room load or session lookup may wait */
	set_deadline(core, c, core->now_ms + core->broker->cfg.handshake_timeout_ms);
	uint8_t *proto = h->extra + h->query_len;
	upgrade_local(core, c, h->route, h->room, h->room_len, h->accept,
		      h->has_id ? &h->id : NULL, (const char *)proto, (const char *)h->extra,
		      h->query_len, proto + h->protocol_len + 1, h->extra_len);
	free(h);
	if (c->tls)
		tls_drain(core, c); /* records that arrived with the request */
}

/* Encrypt every queued frame into as few records as fit (the frames are
 * released at once: the ciphertext carries them now) and point iov at the
 * pending ciphertext. Returns the iovec count, 0 when nothing to send. */
static uint32_t tls_prepare_send(struct rr_core *core, struct rr_conn *c, struct iovec *iov)
{
	if (c->out_head && rr_tls_handshake_done(c->tls)) {
		uint32_t n = 0;
		struct rr_out *o = c->out_head;
		while (o) {
			n = 0;
			for (; o && n < RR_SEND_IOV_MAX; o = o->next, n++) {
				iov[n].iov_base = o->f->data + o->off;
				iov[n].iov_len = o->f->len - o->off;
			}
			if (rr_tls_write_iov(c->tls, iov, (int)n) < 0) {
				conn_kill(core, c);
				return 0;
			}
		}
		o = c->out_head;
		while (o) {
			struct rr_out *next = o->next;
			c->out_bytes -= o->f->len - o->off; /* held frames stay counted */
			rr_frame_unref(o->f);
			free(o);
			o = next;
		}
		c->out_head = c->out_tail = c->pong = NULL;
	}
	int n = rr_tls_pending_iov(c->tls, iov, RR_SEND_IOV_MAX);
	return n > 0 ? (uint32_t)n : 0;
}

void rr_conn_flush_all(struct rr_core *core)
{
	bool cork = !core->broker->cfg.no_cork;
	struct rr_conn *c = core->dirty;
	core->dirty = NULL;

	while (c) {
		struct rr_conn *next = c->next;
		c->flags &= ~RR_CF_DIRTY;
		if (c->state == RR_CONN_DEAD || c->state == RR_CONN_FREE ||
		    (c->flags & RR_CF_SEND_INFLIGHT) ||
		    (c->out_head == NULL && !(c->tls && rr_tls_pending_bytes(c->tls) > 0))) {
			c = next;
			continue;
		}
		if (core->msgs_used == core->msgs_cap ||
		    core->iovs_used + RR_SEND_IOV_MAX > core->iovs_cap) {
			/* the kernel has consumed the scratch once submitted */
			io_uring_submit(&core->ring);
			core->msgs_used = 0;
			core->iovs_used = 0;
		}
		struct iovec *iov = &core->iovs[core->iovs_used];
		uint32_t n = 0;
		size_t bytes = 0;
		if (c->tls) {
			n = tls_prepare_send(core, c, iov);
			if (n == 0) {
				c = next;
				continue;
			}
			goto submit;
		}
		for (struct rr_out *o = c->out_head; o; o = o->next) {
			iov[n].iov_base = o->f->data + o->off;
			iov[n].iov_len = o->f->len - o->off;
			bytes += iov[n].iov_len;
			n++;
			if (o == c->pong)
				c->pong = NULL; /* in flight: can't be replaced any more */
			if (!cork || n == RR_SEND_IOV_MAX || bytes >= RR_SEND_BYTES_MAX)
				break;
		}
	submit:;
		struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
		if (n == 1) {
			io_uring_prep_send(sqe, c->fd, iov[0].iov_base, iov[0].iov_len,
					   MSG_NOSIGNAL);
		} else {
			struct msghdr *m = &core->msgs[core->msgs_used++];
			memset(m, 0, sizeof(*m));
			m->msg_iov = iov;
			m->msg_iovlen = n;
			core->iovs_used += n;
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

void rr_conn_drain(struct rr_core *core)
{
	for (uint32_t i = 0; i < core->conns_used; i++) {
		struct rr_conn *c = &core->conns[i];
		if (c->state == RR_CONN_OPEN)
			rr_conn_close(core, c, RR_WS_CLOSE_GOING_AWAY, "server shutting down");
	}
}

void rr_conn_drop_handshakes(struct rr_core *core)
{
	/* The broker is stopping: a request still arriving can only be
	 * refused; answer it now rather than wait for the rest of it (the
	 * lingering close reads and drops what it still sends). */
	for (uint32_t i = 0; i < core->conns_used; i++) {
		struct rr_conn *c = &core->conns[i];
		if (c->state == RR_CONN_WAIT)
			rr_handler_unwait(core, c);
		if (c->state == RR_CONN_HS || c->state == RR_CONN_WAIT) {
			if (c->tls && !rr_tls_handshake_done(c->tls))
				conn_kill(core, c); /* nothing to answer with */
			else
				reply_and_close(core, c, 503, NULL);
		}
	}
}

void rr_conn_release_all(struct rr_core *core)
{
	/* At exit, after the ring is gone: free what each slot holds. */
	for (uint32_t i = 0; i < core->conns_used; i++) {
		struct rr_conn *c = &core->conns[i];
		if (c->state == RR_CONN_FREE)
			continue;
		c->inflight = 0;
		if (c->handoff) {
			/* the record still owns what it carries */
			c->ip = NULL;
			c->tls = NULL;
			rr_iplimit_release(c->handoff->ip);
			rr_tls_free(c->handoff->tls);
		}
		free(c->handoff);
		c->handoff = NULL;
		conn_release(core, c);
	}
	while (core->rearm) {
		core->rearm->flags &= ~RR_CF_REARM;
		core->rearm = core->rearm->next_rearm;
	}
}
