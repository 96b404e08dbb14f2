/*
 * Accepting: RR_ACCEPT_SLOTS single-shot accepts in flight per listener,
 * each into the fixed-file table with its own address buffer (a multishot
 * accept has one buffer for every connection it takes, and the client's
 * address is needed for logs, --max-connections-per-ip and --proxy-from),
 * and the new connection's first steps (limits, PROXY header, TLS state,
 * the handshake deadline).
 */
#include "conn/conn.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "net/iplimit.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define RR_ACCEPT_SLOTS 32

struct rr_accept_slot {
	struct sockaddr_storage ss;
	socklen_t len;
	bool tls;
	bool parked; /* the table was full: re-armed by the retry timer */
};

static int listener(struct rr_core *core, bool tls)
{
	return tls ? core->tls_listen_fd : core->listen_fd;
}

static void arm_accept_slot(struct rr_core *core, struct rr_accept_slot *a)
{
	struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
	a->len = sizeof(a->ss);
	a->parked = false;
	io_uring_prep_accept(sqe, listener(core, a->tls), (struct sockaddr *)&a->ss, &a->len, 0);
	/* liburing 2.3's prep_accept_direct can't express ALLOC: set it here */
	sqe->file_index = IORING_FILE_INDEX_ALLOC;
	io_uring_sqe_set_data64(sqe, rr_ud_ptr(RR_UD_ACCEPT, a));
	core->accepts_inflight++;
}

static void accept_retry(struct rr_timer *t, uint64_t now_ms)
{
	struct rr_core *core = rr_core_current();
	struct rr_conns *cs = rr_conns(core);
	(void)t;
	(void)now_ms;
	for (unsigned i = 0; i < 2 * RR_ACCEPT_SLOTS; i++) {
		struct rr_accept_slot *a = &cs->accept_slots[i];
		if (a->parked && !core->stopped && listener(core, a->tls) >= 0)
			arm_accept_slot(core, a);
	}
}

void rr_accept_start(struct rr_core *core)
{
	struct rr_conns *cs = rr_conns(core);
	cs->accept_slots = calloc(2 * RR_ACCEPT_SLOTS, sizeof(struct rr_accept_slot));
	if (cs->accept_slots == NULL) {
		rr_err("core %u: no memory for accept slots: not accepting", core->id);
		return;
	}
	rr_timer_init(&cs->accept_retry, accept_retry);
	for (unsigned i = 0; i < 2 * RR_ACCEPT_SLOTS; i++) {
		struct rr_accept_slot *a = &cs->accept_slots[i];
		a->tls = i >= RR_ACCEPT_SLOTS;
		if (listener(core, a->tls) >= 0)
			arm_accept_slot(core, a);
	}
}

/* A new connection in fixed-file slot; peer is its address (NULL only for a
 * socket handed in without one: the fake ring of tests/unit/test_fake_ring.c). */
static void on_accepted(struct rr_core *core, int slot, const struct sockaddr *peer, bool tls)
{
	struct rr_broker *b = core->broker;
	struct rr_conn *c = rr_conn_alloc(core, slot);
	RR_STAT_INC(core, connections_accepted);
	if (c == NULL) {
		rr_warn("no free connection slot on this core: dropping a new connection");
		struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
		io_uring_prep_close_direct(sqe, (unsigned)slot);
		io_uring_sqe_set_data64(sqe, 0);
		return;
	}
	c->accepted_ns = rr_now_ns();
	unsigned live = atomic_fetch_add(&b->live_conns, 1) + 1;
	c->flags |= RR_CF_COUNTED;
	/* past --max-connections, or this core's fixed-file table nearly full
	 * (the rest is kept for connections handed over by other cores) */
	if (live > b->cfg.max_connections ||
	    core->conns_live - rr_conns(core)->stubs + RR_SLOTS_RESERVE > core->slots)
		c->flags |= RR_CF_OVER_LIMIT;
	rr_addr_set(&c->peer, peer);
	if (b->cfg.proxy_protocol) {
		if (!rr_proxy_from_match(&b->proxy_from, peer)) {
			char who[64];
			rr_conn_peer(c, who, sizeof(who));
			rr_info("conn %u (%s): not in --proxy-from, closing without an answer",
				c->idx, who);
			RR_STAT_INC(core, proxy_rejected);
			rr_conn_kill(core, c);
			return;
		}
		c->flags |= RR_CF_PROXY; /* the client's address comes with the header */
	} else {
		rr_conn_count_ip(c);
	}
	if (tls) {
		struct rr_tls_ctx *ctx = rr_broker_tls_ctx(b);
		c->tls = ctx ? rr_tls_new(ctx) : NULL;
		if (ctx)
			rr_tls_ctx_unref(ctx);
		if (c->tls == NULL) {
			rr_warn("conn %u: no TLS state (out of memory): closing", c->idx);
			rr_conn_kill(core, c);
			return;
		}
	}
	/* the TLS handshake counts toward the handshake timeout */
	rr_conn_set_deadline(core, c, core->now_ms + b->cfg.handshake_timeout_ms);
	rr_conn_arm_recv(core, c);
}

void rr_accept_on_cqe(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	struct rr_conns *cs = rr_conns(core);
	struct rr_accept_slot *a = rr_ud_to_ptr(io_uring_cqe_get_data64(cqe));
	if (a == NULL) {
		/* a socket handed in without an accept of ours (the fake ring of
		 * tests/unit/test_fake_ring.c): no address, nothing to re-arm */
		if (cqe->res >= 0)
			on_accepted(core, cqe->res, NULL, false);
		return;
	}
	int lfd = listener(core, a->tls);

	core->accepts_inflight--; /* until none is left the listener stays open */
	if (cqe->res >= 0) {
		on_accepted(core, cqe->res, (struct sockaddr *)&a->ss, a->tls);
	} else if (cqe->res == -ENFILE) {
		/* The table is full (the kernel dropped that connection): stop
		 * accepting for a moment, so the next ones wait in the backlog
		 * or go to another core's listener instead of being dropped. */
		static __thread uint64_t last_log;
		if (core->now_ms - last_log > 1000) {
			rr_warn("fixed-file table full (%u slots): pausing accepts", core->slots);
			last_log = core->now_ms;
		}
		a->parked = true;
		if (!rr_timer_armed(&cs->accept_retry))
			rr_timer_set(&core->wheel, &cs->accept_retry, core->now_ms + 50);
		return;
	} else if (cqe->res == -EINVAL || cqe->res == -EBADF) {
		/* not transient: re-arming would spin */
		if (lfd >= 0)
			rr_err("accept: %s; this listener stops accepting", strerror(-cqe->res));
		return;
	} else if (cqe->res != -ECANCELED) {
		rr_debug("accept: %s", strerror(-cqe->res));
	}
	if (!core->stopped && lfd >= 0 && cqe->res != -ECANCELED)
		arm_accept_slot(core, a);
}
