/*
 * The connection state machine: slots, the close path, timers, and the
 * connection layer's place in the loop.
 *
 * DESIGN: completions drive everything (conn/input.c reads, conn/send.c
 * writes, conn/handoff.c moves, conn/accept.c creates; conn/layer.c wires
 * them into the loop); this file is the part they all call: the slots, the
 * output policy (the slow-consumer limit, the hold of a replay) over the
 * queue of conn/outq.c, and the close path.
 *
 * Closing is one path for every cause: queue the last output (close frame
 * or HTTP answer), and once it is sent shutdown(SHUT_WR) and read until the
 * peer's FIN (lingering close: the peer gets our last bytes, not a reset);
 * the close timeout bounds every wait. rr_conn_kill() is the hard stop.
 * Neither calls the owner: the connection is queued on the core's leaving
 * list and the owner hears of it in the settle step (see conn.h).
 */
#include "conn/conn.h"
#include "conn/xq.h"
#include "core/assert.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "http/http_reply.h"
#include "net/iplimit.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

static void conn_timer_fn(struct rr_timer *t, uint64_t now_ms);

/* ---- slots ------------------------------------------------------------ */

struct rr_conn *rr_conn_alloc(struct rr_core *core, int fd)
{
	struct rr_conns *cs = rr_conns(core);
	struct rr_conn *c = cs->free;
	if (c) {
		cs->free = c->next;
	} else {
		if (cs->used == cs->cap)
			return NULL;
		c = &cs->slot[cs->used];
		c->idx = cs->used++;
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
	if (fd < 0) {
		c->flags |= RR_CF_STUB; /* its member's core counts the connection */
		cs->stubs++;
	} else
		RR_STAT_INC(core, connections_open);
	return c;
}

static void member_done(struct rr_core *core, struct rr_conn *c)
{
	if (c->flags & RR_CF_MEMBER) {
		c->flags &= ~RR_CF_MEMBER;
		core->members_live--;
	}
}

void rr_conn_release(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conns *cs = rr_conns(core);
	rr_assert(c->inflight == 0);
	/* Normally the owner heard of the close in the settle step before any
	 * completion could release the slot; at exit (or when the leaving
	 * list could not grow) it only detaches now: no close callback runs
	 * from here. Detaching twice is harmless. */
	c->flags &= ~RR_CF_LEAVING;
	rr_timer_cancel(&core->wheel, &c->timer);
	if (c->owner && c->owner->detach)
		c->owner->detach(core, c);
	if (c->owner && c->owner->release)
		c->owner->release(core, c);
	c->owner = NULL;
	c->ctx = NULL;
	rr_outq_free(&c->out, &cs->pool);
	free(c->in); /* input backlog (conn/input.c) */
	c->in = NULL;
	if (c->flags & (RR_CF_STUB | RR_CF_REMOTE))
		rr_remote_free(c);
	else
		free(c->handoff); /* a hand-off not yet submitted (at exit) */
	c->handoff = NULL;
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
	if (c->flags & RR_CF_STUB)
		cs->stubs--;
	else
		RR_STAT_DEC(core, connections_open);
	c->state = RR_CONN_FREE;
	c->gen = (c->gen + 1) & 0xffffff;
	if (c->gen == 0)
		c->gen = 1;
	c->next = cs->free;
	cs->free = c;
}

struct rr_conn *rr_conn_lookup(struct rr_core *core, uint64_t ud)
{
	struct rr_conns *cs = rr_conns(core);
	uint32_t idx = rr_ud_idx(ud);
	if (idx >= cs->used)
		return NULL;
	struct rr_conn *c = &cs->slot[idx];
	if (c->state == RR_CONN_FREE || c->gen != rr_ud_gen(ud))
		return NULL;
	return c;
}

/* ---- submissions ------------------------------------------------------ */

void rr_conn_arm_recv(struct rr_core *core, struct rr_conn *c)
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

void rr_conn_set_deadline(struct rr_core *core, struct rr_conn *c, uint64_t at_ms)
{
	if (c->flags & RR_CF_STUB)
		return; /* its member's core keeps its time */
	rr_timer_set(&core->wheel, &c->timer, at_ms);
}

/* ---- output ---------------------------------------------------------------- */

void rr_conn_mark_dirty(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conns *cs = rr_conns(core);
	if (c->flags & (RR_CF_DIRTY | RR_CF_SEND_INFLIGHT))
		return;
	c->flags |= RR_CF_DIRTY;
	c->next = cs->dirty;
	cs->dirty = c;
}

bool rr_conn_output_pending(const struct rr_conn *c)
{
	return c->out.head != NULL || (c->tls && rr_tls_pending_bytes(c->tls) > 0);
}

static int push(struct rr_core *core, struct rr_conn *c, struct rr_frame *f, bool held, bool bulk)
{
	int rc = rr_outq_push(&c->out, &rr_conns(core)->pool, f, held, bulk);
	if (rc < 0)
		return rc;
	RR_STAT_INC(core, frames_out);
	if (!held)
		rr_conn_mark_dirty(core, c);
	return 0;
}

static void queue_close(struct rr_core *core, struct rr_conn *c, uint16_t code, const char *reason)
{
	struct rr_frame *f;
	if (code == RR_WS_CLOSE_NO_STATUS)
		f = rr_frame_ws(RR_WS_CLOSE, NULL, 0);
	else
		f = rr_frame_ws_close(code, reason);
	c->flags |= RR_CF_CLOSE_SENT;
	c->close_code = code;
	if (f == NULL || push(core, c, f, false, false) < 0)
		rr_conn_kill(core, c);
	if (f)
		rr_frame_unref(f);
}

void rr_remote_free(struct rr_conn *c)
{
	if (c->remote == NULL)
		return;
	free(c->remote->early);
	free(c->remote);
	c->remote = NULL;
}

/* ---- stubs: what the home does to a member on another core -------------------- */

/* A stub is done: out of the member count now, freed after this settle
 * step's leaving list (its owner's leave may still use it). */
static void stub_dead(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conns *cs = rr_conns(core);
	member_done(core, c);
	c->state = RR_CONN_DEAD;
	c->next = cs->dead_stubs;
	cs->dead_stubs = c;
}

static void queue_leave(struct rr_core *core, struct rr_conn *c, uint16_t code, bool clean);

static int stub_frame(struct rr_core *core, struct rr_conn *c, struct rr_frame *f, bool bulk)
{
	struct rr_remote *rm = c->remote;
	if (c->state != RR_CONN_OPEN)
		return -EPIPE;
	if (rr_xq_frame(core, rm->core, RR_XOP_FRAME_TO, bulk, rm->idx, rm->gen, f) < 0) {
		rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
		return -ENOMEM;
	}
	if (bulk)
		rm->queued += f->len;
	return 0;
}

static void stub_op(struct rr_core *core, struct rr_conn *c, enum rr_xop op)
{
	rr_xq_op(core, c->remote->core, op, 0, 0, c->remote->idx, c->remote->gen, 0);
}

static void stub_close(struct rr_core *core, struct rr_conn *c, uint16_t code, const char *reason)
{
	size_t n = reason ? strlen(reason) : 0;
	char *p = rr_xq_op(core, c->remote->core, RR_XOP_CLOSE, 0, code, c->remote->idx,
			   c->remote->gen, n + 1);
	if (p) {
		memcpy(p, reason ? reason : "", n);
		p[n] = '\0';
	}
}

/* The home answers a waiting member with status (f: its response or NULL). */
static void stub_reply(struct rr_core *core, struct rr_conn *c, int status, struct rr_frame *f)
{
	struct rr_remote *rm = c->remote;
	struct rr_frame **p = rr_xq_op(core, rm->core, RR_XOP_REPLY, 0, (uint16_t)status, rm->idx,
				       rm->gen, sizeof(*p));
	if (p)
		*p = f ? rr_frame_share(f) : NULL;
	if (f)
		rr_frame_unref(f);
	if (c->state == RR_CONN_OPEN || c->state == RR_CONN_WAIT)
		queue_leave(core, c, 1006, false);
	stub_dead(core, c);
}

/* The member left on its core: the stub leaves the same way. */
void rr_conn_stub_left(struct rr_core *core, struct rr_conn *c, uint16_t code, bool clean)
{
	if (c->state != RR_CONN_OPEN && c->state != RR_CONN_WAIT)
		return;
	queue_leave(core, c, code, clean);
	stub_dead(core, c);
}

static int stub_upgrade(struct rr_core *core, struct rr_conn *c, const char accept[29],
			const char *protocol)
{
	struct rr_remote *rm = c->remote;
	size_t n = protocol ? strlen(protocol) : 0;
	if (core->draining) {
		rr_conn_reply(core, c, 503, NULL);
		return -ESHUTDOWN;
	}
	struct rr_xupgrade *u =
	    rr_xq_op(core, rm->core, RR_XOP_UPGRADE, 0, 0, rm->idx, rm->gen, sizeof(*u) + n + 1);
	if (u == NULL) {
		rr_conn_reply(core, c, 503, NULL);
		return -ENOMEM;
	}
	u->stub_idx = c->idx;
	u->stub_gen = c->gen;
	memcpy(u->accept, accept, 29);
	memcpy(u->protocol, protocol ? protocol : "", n);
	u->protocol[n] = '\0';
	c->state = RR_CONN_OPEN;
	c->flags |= RR_CF_MEMBER;
	core->members_live++;
	return 0;
}

uint64_t rr_conn_queued_bytes(const struct rr_conn *c)
{
	if (c->flags & RR_CF_STUB)
		return c->remote->queued;
	return rr_outq_ahead(&c->out) + (c->tls ? rr_tls_pending_bytes(c->tls) : 0);
}

int rr_conn_send(struct rr_core *core, struct rr_conn *c, struct rr_frame *f)
{
	if (rr_unlikely(c->flags & RR_CF_STUB))
		return stub_frame(core, c, f, false);
	if (c->state != RR_CONN_OPEN)
		return -EPIPE;
	uint64_t queued = rr_outq_live(&c->out) + (c->tls ? rr_tls_pending_bytes(c->tls) : 0);
	if (rr_unlikely(queued + f->len > core->broker->cfg.max_queued_bytes)) {
		char peer[64];
		rr_conn_peer(c, peer, sizeof(peer));
		rr_info("conn %u (%s): slow consumer (%llu bytes queued), closing with 1013",
			c->idx, peer, (unsigned long long)queued);
		rr_outq_drop_unsent(&c->out, &rr_conns(core)->pool);
		c->flags &= ~RR_CF_HOLD;
		rr_conn_close(core, c, RR_WS_CLOSE_TRY_LATER, "slow consumer");
		return -ENOBUFS;
	}
	if (push(core, c, f, c->flags & RR_CF_HOLD, false) < 0) {
		rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

int rr_conn_write(struct rr_core *core, struct rr_conn *c, struct rr_frame *f)
{
	return push(core, c, f, false, false);
}

int rr_conn_send_bulk(struct rr_core *core, struct rr_conn *c, struct rr_frame *f)
{
	if (c->flags & RR_CF_STUB)
		return stub_frame(core, c, f, true);
	if (c->state != RR_CONN_OPEN)
		return -EPIPE;
	if (push(core, c, f, false, true) < 0) {
		rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

void rr_conn_hold(struct rr_conn *c)
{
	if (c->flags & RR_CF_STUB) {
		if (c->state == RR_CONN_OPEN)
			stub_op(rr_core_current(), c, RR_XOP_HOLD);
		return;
	}
	c->flags |= RR_CF_HOLD;
}

void rr_conn_release_hold(struct rr_core *core, struct rr_conn *c)
{
	if (c->flags & RR_CF_STUB) {
		if (c->state == RR_CONN_OPEN)
			stub_op(core, c, RR_XOP_RELEASE);
		return;
	}
	c->flags &= ~RR_CF_HOLD;
	if (rr_outq_release_hold(&c->out))
		rr_conn_mark_dirty(core, c);
}

void rr_conn_want_writable(struct rr_core *core, struct rr_conn *c)
{
	if ((c->flags & RR_CF_STUB) && c->state == RR_CONN_OPEN) {
		stub_op(core, c, RR_XOP_WANT);
		return;
	}
	if (c->state == RR_CONN_OPEN)
		c->flags |= RR_CF_WANT_WRITABLE;
}

/* The latest ping's answer: only the latest is answered (RFC 6455 5.5.3),
 * so a ping flood costs one frame. It passes a replay's hold: it answers
 * the peer, not the room. */
int rr_conn_pong(struct rr_core *core, struct rr_conn *c, const uint8_t *p, size_t n)
{
	if (c->state != RR_CONN_OPEN)
		return 0;
	struct rr_frame *f = rr_frame_ws(RR_WS_PONG, p, n);
	if (f == NULL)
		return -ENOMEM;
	int rc = rr_outq_pong(&c->out, f);
	rr_frame_unref(f);
	if (rc == 0)
		rr_conn_mark_dirty(core, c);
	return rc;
}

/* ---- leaving: deferred to the settle step --------------------------------- */

/* One line per WebSocket connection at its open and at its close: client,
 * room, close code, lifetime (--log-format text or json). */
static void log_conn(const struct rr_conn *c, const char *event, uint16_t code)
{
	char peer[64];
	const char *room = "";
	size_t room_len = 0;
	if (RR_LOG_INFO > rr_log_level)
		return;
	rr_conn_peer(c, peer, sizeof(peer));
	if (c->owner && c->owner->room)
		room_len = c->owner->room(c, &room);
	rr_log_event(RR_LOG_INFO, event, "conn=%u peer=%s route=%u room=%.*s code=%u ms=%llu",
		     c->idx, peer, c->route, (int)room_len, room, code,
		     (unsigned long long)((rr_now_ns() - c->accepted_ns) / 1000000));
}

static void queue_leave(struct rr_core *core, struct rr_conn *c, uint16_t code, bool clean)
{
	struct rr_conns *cs = rr_conns(core);
	if (c->owner == NULL || (c->flags & RR_CF_LEAVING))
		return;
	if ((c->flags & RR_CF_MEMBER) && !(c->flags & RR_CF_STUB))
		log_conn(c, "conn_close", code);
	if (cs->nleaving == cs->leaving_cap) {
		uint32_t cap = cs->leaving_cap ? cs->leaving_cap * 2 : 64;
		struct rr_conn **a = realloc(cs->leaving, cap * sizeof(*a));
		if (a == NULL) {
			/* can't defer: it detaches when the slot is released,
			 * without its close callbacks */
			rr_warn("conn %u: leaving list full (out of memory)", c->idx);
			c->flags |= RR_CF_LEAVING;
			c->close_code = code;
			return;
		}
		cs->leaving = a;
		cs->leaving_cap = cap;
	}
	c->flags |= RR_CF_LEAVING;
	if (clean)
		c->flags |= RR_CF_CLEAN;
	c->close_code = code;
	cs->leaving[cs->nleaving++] = c;
}

/*
 * Every closing connection's owner hears of it here, outside any dispatch:
 * first each detaches (leaves its member list), then each runs its close
 * callbacks, which may close more connections: those are taken in the next
 * round, until none is left. A drain of a big room thus detaches everyone
 * before the first close callback broadcasts to whoever remains.
 */
void rr_conn_settle_leaving(struct rr_core *core)
{
	struct rr_conns *cs = rr_conns(core);
	uint32_t start = 0;
	while (start < cs->nleaving) {
		uint32_t end = cs->nleaving;
		for (uint32_t i = start; i < end; i++) {
			struct rr_conn *c = cs->leaving[i];
			if ((c->flags & RR_CF_LEAVING) && c->owner && c->owner->detach)
				c->owner->detach(core, c);
		}
		/* leave callbacks may queue more: they land past end */
		for (uint32_t i = start; i < end; i++) {
			struct rr_conn *c = cs->leaving[i];
			if (!(c->flags & RR_CF_LEAVING))
				continue; /* released meanwhile (at exit) */
			c->flags &= ~RR_CF_LEAVING;
			if (c->owner && c->owner->leave)
				c->owner->leave(core, c, c->close_code ? c->close_code : 1006,
						c->flags & RR_CF_CLEAN);
		}
		start = end;
	}
	cs->nleaving = 0;
	while (cs->dead_stubs) {
		struct rr_conn *c = cs->dead_stubs;
		cs->dead_stubs = c->next;
		c->next = NULL;
		rr_conn_release(core, c);
	}
}

/* ---- closing -------------------------------------------------------------- */

void rr_conn_close(struct rr_core *core, struct rr_conn *c, uint16_t code, const char *reason)
{
	if (c->state != RR_CONN_OPEN)
		return;
	if (c->flags & RR_CF_STUB) {
		queue_leave(core, c, code,
			    code == RR_WS_CLOSE_NORMAL || code == RR_WS_CLOSE_GOING_AWAY);
		stub_close(core, c, code, reason);
		stub_dead(core, c);
		return;
	}
	RR_STAT_CLOSE(core, code); /* ringroom_closes_total{code}: every close the broker starts */
	c->state = RR_CONN_CLOSING;
	queue_leave(core, c, code, code == RR_WS_CLOSE_NORMAL || code == RR_WS_CLOSE_GOING_AWAY);
	queue_close(core, c, code, reason);
	rr_conn_set_deadline(core, c, core->now_ms + core->broker->cfg.close_timeout_ms);
}

/* The peer began the close: echo its code (RFC 6455 5.5.1). */
void rr_conn_peer_closed(struct rr_core *core, struct rr_conn *c, uint16_t code)
{
	c->flags |= RR_CF_CLOSE_RCVD | RR_CF_INPUT_DONE;
	if (c->state == RR_CONN_OPEN) {
		c->state = RR_CONN_CLOSING;
		queue_leave(core, c, code == RR_WS_CLOSE_NO_STATUS ? 1005 : code, true);
		queue_close(core, c, code, NULL);
		rr_conn_set_deadline(core, c, core->now_ms + core->broker->cfg.close_timeout_ms);
	}
	rr_conn_maybe_finish(core, c);
}

/* A protocol failure: send the close code, ignore the peer from now on. */
void rr_conn_fail(struct rr_core *core, struct rr_conn *c, uint16_t code)
{
	char peer[64];
	rr_conn_peer(c, peer, sizeof(peer));
	rr_info("conn %u (%s): protocol failure, closing with %u", c->idx, peer, code);
	c->flags |= RR_CF_INPUT_DONE;
	if (c->state == RR_CONN_OPEN)
		rr_conn_close(core, c, code, NULL);
	else if (!(c->flags & RR_CF_CLOSE_SENT))
		queue_close(core, c, code, NULL);
	rr_conn_maybe_finish(core, c);
}

void rr_conn_reply(struct rr_core *core, struct rr_conn *c, int status, struct rr_frame *f)
{
	if (c->flags & RR_CF_STUB) {
		if (f == NULL)
			f = rr_http_response(status, NULL, NULL, 0);
		stub_reply(core, c, status, f); /* counted where the socket is */
		return;
	}
	switch (status) {
	case 400:
		RR_STAT_INC(core, rejected_400);
		break;
	case 401:
		RR_STAT_INC(core, rejected_401);
		break;
	case 403:
		RR_STAT_INC(core, rejected_403);
		break;
	case 404:
		RR_STAT_INC(core, rejected_404);
		break;
	case 405:
		RR_STAT_INC(core, rejected_405);
		break;
	case 426:
		RR_STAT_INC(core, rejected_426);
		break;
	case 429:
		RR_STAT_INC(core, rejected_429);
		break;
	case 431:
		RR_STAT_INC(core, rejected_431);
		break;
	case 503:
		RR_STAT_INC(core, rejected_503);
		break;
	default:
		break;
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
	if (c->state == RR_CONN_OPEN || c->state == RR_CONN_WAIT)
		queue_leave(core, c, 1006, false);
	c->state = RR_CONN_CLOSING;
	c->flags |= RR_CF_REPLY | RR_CF_INPUT_DONE;
	if (f == NULL || push(core, c, f, false, false) < 0) {
		if (f)
			rr_frame_unref(f);
		rr_conn_kill(core, c);
		return;
	}
	rr_frame_unref(f);
	rr_conn_set_deadline(core, c, core->now_ms + core->broker->cfg.close_timeout_ms);
}

/* Decide what a closing connection does next once its output is out. */
void rr_conn_maybe_finish(struct rr_core *core, struct rr_conn *c)
{
	if (c->state != RR_CONN_CLOSING)
		return;
	if (rr_conn_output_pending(c) || (c->flags & RR_CF_SEND_INFLIGHT))
		return; /* the send completion calls again */
	if ((c->flags & RR_CF_CLOSE_SENT) && (c->flags & RR_CF_CLOSE_RCVD)) {
		/* Close handshake complete: the peer sends nothing more, so the
		 * server closes TCP first (RFC 6455 7.1.1) at once: no reset
		 * can destroy our close frame. */
		member_done(core, c);
		rr_conn_kill(core, c);
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
	if (!(c->flags & RR_CF_RECV_ARMED)) {
		c->flags &= ~RR_CF_RECV_PAUSED;
		rr_conn_arm_recv(core, c);
	}
	uint64_t linger = core->broker->cfg.close_timeout_ms;
	if (atomic_load_explicit(&core->broker->stopping, memory_order_relaxed) &&
	    linger > RR_STOP_LINGER_MS)
		linger = RR_STOP_LINGER_MS; /* stopping: don't wait on idle peers */
	rr_conn_set_deadline(core, c, core->now_ms + linger);
}

/* Hard stop: the socket goes as soon as nothing is in flight on it. */
void rr_conn_kill(struct rr_core *core, struct rr_conn *c)
{
	if (c->state == RR_CONN_DEAD || c->state == RR_CONN_FREE)
		return;
	if (c->flags & RR_CF_STUB) {
		if (c->state == RR_CONN_OPEN || c->state == RR_CONN_WAIT) {
			queue_leave(core, c, 1006, false);
			stub_close(core, c, RR_WS_CLOSE_INTERNAL, "internal error");
		}
		stub_dead(core, c);
		return;
	}
	if (c->state == RR_CONN_OPEN || c->state == RR_CONN_WAIT)
		queue_leave(core, c, 1006, false);
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
	if (!(c->flags & RR_CF_HANDED_OFF) && (c->flags & (RR_CF_RECV_ARMED | RR_CF_SEND_INFLIGHT)))
		submit_shutdown(core, c, SHUT_RDWR); /* ends the receive and send */
	if (c->inflight == 0)
		submit_close(core, c);
}

/* An operation finished: a dead connection may now be dropped. */
void rr_conn_op_done(struct rr_core *core, struct rr_conn *c)
{
	rr_assert(c->inflight > 0);
	c->inflight--;
	if (c->state != RR_CONN_DEAD || c->inflight > 0)
		return;
	if (c->flags & RR_CF_FD_CLOSING)
		rr_conn_release(core, c);
	else
		submit_close(core, c);
}

/* ---- timers ----------------------------------------------------------- */

/* The next time an open connection needs attention: a ping, the idle
 * timeout, or its token's expiry. */
static uint64_t open_deadline(struct rr_core *core, struct rr_conn *c)
{
	const struct rr_config *cfg = &core->broker->cfg;
	uint64_t next = c->last_ping_ms + cfg->ping_interval_ms;
	if (c->last_rx_ms + cfg->idle_timeout_ms < next)
		next = c->last_rx_ms + cfg->idle_timeout_ms;
	if (c->exp_s) {
		uint64_t wall = rr_wall_ms();
		uint64_t exp_ms = (uint64_t)c->exp_s * 1000;
		uint64_t at = exp_ms > wall ? core->now_ms + (exp_ms - wall) : core->now_ms;
		if (at < next)
			next = at;
	}
	return next;
}

static void conn_timer_fn(struct rr_timer *t, uint64_t now_ms)
{
	struct rr_conn *c = rr_container_of(t, struct rr_conn, timer);
	struct rr_core *core = rr_core_current();
	const struct rr_config *cfg = &core->broker->cfg;
	char peer[64];

	switch (c->state) {
	case RR_CONN_HS:
	case RR_CONN_WAIT:
		rr_conn_peer(c, peer, sizeof(peer));
		rr_info("conn %u (%s): no complete %s within %llu ms, closing", c->idx, peer,
			(c->flags & RR_CF_PROXY) ? "PROXY header" : "request",
			(unsigned long long)cfg->handshake_timeout_ms);
		RR_STAT_INC(core, handshake_timeouts);
		if (c->flags & RR_CF_PROXY)
			RR_STAT_INC(core, proxy_rejected);
		rr_conn_kill(core, c);
		return;
	case RR_CONN_OPEN: {
		if (c->exp_s && rr_wall_ms() / 1000 >= c->exp_s) {
			rr_info("conn %u: token expired, closing with 1008", c->idx);
			rr_conn_close(core, c, RR_WS_CLOSE_POLICY, "token expired");
			return;
		}
		if (now_ms - c->last_rx_ms >= cfg->idle_timeout_ms) {
			rr_debug("conn %u: idle for %llu ms, closing with 4008", c->idx,
				 (unsigned long long)(now_ms - c->last_rx_ms));
			rr_conn_close(core, c, RR_WS_CLOSE_IDLE, "idle timeout");
			return;
		}
		if (now_ms - c->last_ping_ms >= cfg->ping_interval_ms) {
			struct rr_frame *f = rr_frame_ws(RR_WS_PING, NULL, 0);
			if (f) {
				rr_conn_send_bulk(core, c, f);
				rr_frame_unref(f);
				RR_STAT_INC(core, pings_sent);
			}
			c->last_ping_ms = now_ms;
			if (c->state != RR_CONN_OPEN)
				return;
		}
		rr_conn_set_deadline(core, c, open_deadline(core, c));
		return;
	}
	case RR_CONN_CLOSING:
	case RR_CONN_LINGER:
		rr_debug("conn %u: close timeout, dropping the socket", c->idx);
		rr_conn_kill(core, c);
		return;
	default:
		return;
	}
}

/* ---- upgrade ---------------------------------------------------------- */

int rr_conn_upgrade(struct rr_core *core, struct rr_conn *c, const char accept[29],
		    const char *protocol)
{
	if (c->flags & RR_CF_STUB)
		return stub_upgrade(core, c, accept, protocol);
	if (core->draining) {
		/* it waited (room load, hand-off) across the start of the drain */
		rr_conn_reply(core, c, 503, NULL);
		return -ESHUTDOWN;
	}
	struct rr_frame *f = rr_http_switching(accept, protocol && protocol[0] ? protocol : NULL);
	if (f == NULL || push(core, c, f, false, false) < 0) {
		if (f)
			rr_frame_unref(f);
		rr_warn("conn %u: no memory for the 101, answering 503", c->idx);
		rr_conn_reply(core, c, 503, NULL);
		return -ENOMEM;
	}
	rr_frame_unref(f);
	c->state = RR_CONN_OPEN;
	c->flags |= RR_CF_MEMBER;
	RR_HIST_OBSERVE(core, handshake_seconds, rr_now_ns() - c->accepted_ns);
	log_conn(c, "conn_open", 0);
	c->out.keep_head = true; /* the 101: never dropped unsent */
	core->members_live++;
	RR_STAT_INC(core, upgrades);
	c->last_rx_ms = core->now_ms;
	c->last_ping_ms = core->now_ms;
	rr_conn_set_deadline(core, c, open_deadline(core, c));
	rr_conn_arm_recv(core, c);
	return 0;
}

void rr_conn_count_ip(struct rr_conn *c)
{
	struct sockaddr_storage ss;
	bool over = false;
	if (rr_addr_sockaddr(&c->peer, &ss) == 0)
		return;
	c->ip = rr_iplimit_acquire((struct sockaddr *)&ss, &over);
	if (over)
		c->flags |= RR_CF_OVER_IP;
}

void rr_conn_peer(const struct rr_conn *c, char *out, size_t cap)
{
	rr_addr_format(&c->peer, out, cap);
}
