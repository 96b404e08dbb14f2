/*
 * Accepting: multishot accepts into the fixed-file table on the core's
 * listeners, or single-shot accepts with an address buffer each when the
 * peer's address is needed (--max-connections-per-ip), and the new
 * connection's first steps (limits, TLS state, the handshake deadline).
 */
#include "conn/conn.h"
#include "core/limits.h"
#include "core/log.h"
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
};

static int listener(struct rr_core *core, bool tls)
{
	return tls ? core->tls_listen_fd : core->listen_fd;
}

static void arm_accept_slot(struct rr_core *core, struct rr_accept_slot *a)
{
	struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
	a->len = sizeof(a->ss);
	io_uring_prep_accept(sqe, listener(core, a->tls), (struct sockaddr *)&a->ss, &a->len, 0);
	/* liburing 2.3's prep_accept_direct can't express ALLOC: set it here */
	sqe->file_index = IORING_FILE_INDEX_ALLOC;
	io_uring_sqe_set_data64(sqe, rr_ud_ptr(RR_UD_ACCEPT, a));
	core->accepts_inflight++;
}

static void arm_multishot(struct rr_core *core, bool tls)
{
	struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
	/* no SOCK_CLOEXEC: a direct descriptor is not in the fd table at all */
	io_uring_prep_multishot_accept_direct(sqe, listener(core, tls), NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, rr_ud_ptr(tls ? RR_UD_ACCEPT_TLS : RR_UD_ACCEPT, NULL));
	core->accepts_inflight++;
}

static void accept_retry_fn(struct rr_timer *t, bool tls)
{
	struct rr_core *core = rr_core_current();
	(void)t;
	if (!core->stopped && listener(core, tls) >= 0)
		arm_multishot(core, tls);
}

static void accept_retry_plain(struct rr_timer *t, uint64_t now_ms)
{
	(void)now_ms;
	accept_retry_fn(t, false);
}

static void accept_retry_tls(struct rr_timer *t, uint64_t now_ms)
{
	(void)now_ms;
	accept_retry_fn(t, true);
}

void rr_accept_start(struct rr_core *core)
{
	struct rr_conns *cs = rr_conns(core);
	if (core->broker->cfg.max_connections_per_ip) {
		if (cs->accept_slots == NULL) {
			cs->accept_slots = calloc(2 * RR_ACCEPT_SLOTS, sizeof(struct rr_accept_slot));
			if (cs->accept_slots == NULL) {
				rr_err("core %u: no memory for accept slots: not accepting", core->id);
				return;
			}
		}
		for (unsigned i = 0; i < 2 * RR_ACCEPT_SLOTS; i++) {
			struct rr_accept_slot *a = &cs->accept_slots[i];
			a->tls = i >= RR_ACCEPT_SLOTS;
			if (listener(core, a->tls) >= 0)
				arm_accept_slot(core, a);
		}
		return;
	}
	if (core->listen_fd >= 0)
		arm_multishot(core, false);
	if (core->tls_listen_fd >= 0)
		arm_multishot(core, true);
}

/* A new connection in fixed-file slot; peer is NULL when accepted without
 * its address (multishot accept). */
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
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct rr_accept_slot *a = rr_ud_to_ptr(ud);
	bool tls = a ? a->tls : rr_ud_kind(ud) == RR_UD_ACCEPT_TLS;
	int lfd = listener(core, tls);

	if (!(cqe->flags & IORING_CQE_F_MORE))
		core->accepts_inflight--; /* until then the listener stays open */
	if (a) {
		if (cqe->res >= 0)
			on_accepted(core, cqe->res, (struct sockaddr *)&a->ss, tls);
		else if (cqe->res != -ECANCELED)
			rr_debug("accept: %s", strerror(-cqe->res));
		if (!core->stopped && lfd >= 0 && cqe->res != -EINVAL && cqe->res != -EBADF)
			arm_accept_slot(core, a);
		return;
	}
	bool rearm = !(cqe->flags & IORING_CQE_F_MORE);
	if (cqe->res >= 0) {
		on_accepted(core, cqe->res, NULL, tls);
	} else if (cqe->res == -ENFILE) {
		/* The table is full (the kernel dropped that connection): stop
		 * accepting for a moment, so the next ones wait in the backlog
		 * or go to another core's listener instead of being dropped. */
		static __thread uint64_t last_log;
		if (core->now_ms - last_log > 1000) {
			rr_warn("fixed-file table full (%u slots): pausing accepts", core->slots);
			last_log = core->now_ms;
		}
		struct rr_timer *rt = &cs->accept_retry[tls ? 1 : 0];
		if (rearm && !rr_timer_armed(rt)) {
			rr_timer_init(rt, tls ? accept_retry_tls : accept_retry_plain);
			rr_timer_set(&core->wheel, rt, core->now_ms + 50);
		}
		rearm = false;
	} else if (cqe->res == -EINVAL || cqe->res == -EBADF) {
		/* not transient: re-arming would spin */
		if (lfd >= 0)
			rr_err("accept: %s; this listener stops accepting", strerror(-cqe->res));
		rearm = false;
	} else if (cqe->res != -ECANCELED) {
		rr_debug("accept: %s", strerror(-cqe->res));
	}
	if (rearm && !core->stopped && lfd >= 0 && cqe->res != -ECANCELED)
		arm_multishot(core, tls);
}
