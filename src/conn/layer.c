/*
 * The connection layer's place in the loop: its per-core state, the hooks
 * the reactor calls each iteration (settle: budgeted input, then the owners'
 * deferred leaves; flush: the sends, then receives to re-arm), the drain,
 * and the completion handlers it registers.
 */
#include "conn/conn.h"
#include "conn/xq.h"
#include "core/limits.h"
#include "core/log.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define SCRATCH_MSGS 4096
#define SCRATCH_IOVS (64 * 1024)

const struct rr_conn_gate *rr_conn_gate;

static int conns_init(struct rr_core *core)
{
	struct rr_conns *cs = calloc(1, sizeof(*cs));
	if (cs == NULL)
		return -ENOMEM;
	core->layer[RR_LAYER_CONN] = cs;
	cs->core = core;
	/* Connection slots: +25 % for connections handed to this core, and
	 * stubs of members on the other cores (spread rooms: they hold no
	 * fixed file, so up to --max-connections of them). The mapping is
	 * lazily backed, so unused slots cost no memory. */
	uint64_t stubs = core->broker->ncores > 1 ? core->broker->cfg.max_connections : 0;
	uint64_t cap = (uint64_t)core->slots + core->slots / 4 + stubs;
	cs->cap = cap > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)cap;
	cs->slot = mmap(NULL, (size_t)cs->cap * sizeof(struct rr_conn), PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (cs->slot == MAP_FAILED) {
		cs->slot = NULL;
		return -ENOMEM;
	}
	cs->msgs_cap = SCRATCH_MSGS;
	cs->iovs_cap = SCRATCH_IOVS;
	cs->msgs = calloc(cs->msgs_cap, sizeof(*cs->msgs));
	cs->iovs = calloc(cs->iovs_cap, sizeof(*cs->iovs));
	if (cs->msgs == NULL || cs->iovs == NULL)
		return -ENOMEM;
	int rc = rr_xq_init(core);
	if (rc < 0)
		return rc;
	if (core->broker->cfg.tls_cert[0]) {
		cs->tls_plain_cap = RR_TLS_RECORD_MAX + 256;
		cs->tls_plain = malloc(cs->tls_plain_cap);
		if (cs->tls_plain == NULL)
			return -ENOMEM;
	}
	return 0;
}

static void conns_settle(struct rr_core *core)
{
	rr_in_settle(core);
	rr_conn_settle_leaving(core);
}

static void conns_flush(struct rr_core *core)
{
	/* Batches to other cores first: the kernel runs the SQEs of one
	 * submit in order, and loopback sends run the receivers' TCP inline,
	 * so a spread room's other cores would otherwise start only after
	 * this core's sends (measured: no gain at all at 10,000 members). */
	rr_xq_flush(core);
	rr_send_flush_all(core);
	rr_in_rearm_all(core);
}

static void conns_drain(struct rr_core *core)
{
	struct rr_conns *cs = rr_conns(core);
	for (uint32_t i = 0; i < cs->used; i++) {
		struct rr_conn *c = &cs->slot[i];
		if (c->state == RR_CONN_OPEN)
			rr_conn_close(core, c, RR_WS_CLOSE_GOING_AWAY, "server shutting down");
	}
}

static void conns_stopped_listening(struct rr_core *core)
{
	/* The broker is stopping: a request still arriving can only be
	 * refused; answer it now rather than wait for the rest of it (the
	 * lingering close reads and drops what it still sends). */
	struct rr_conns *cs = rr_conns(core);
	for (uint32_t i = 0; i < cs->used; i++) {
		struct rr_conn *c = &cs->slot[i];
		if (c->state != RR_CONN_HS && c->state != RR_CONN_WAIT)
			continue;
		if (c->tls && !rr_tls_handshake_done(c->tls))
			rr_conn_kill(core, c); /* nothing to answer with */
		else
			rr_conn_reply(core, c, 503, NULL);
	}
}

static void conns_stop(struct rr_core *core)
{
	(void)core;
	rr_tls_thread_exit();
}

static void conns_fini(struct rr_core *core)
{
	/* At exit, after the ring is gone: free what each slot holds. */
	struct rr_conns *cs = rr_conns(core);
	if (cs == NULL)
		return;
	rr_xq_fini(core);
	for (uint32_t i = 0; cs->slot && i < cs->used; i++) {
		struct rr_conn *c = &cs->slot[i];
		if (c->state == RR_CONN_FREE)
			continue;
		c->inflight = 0;
		rr_conn_release(core, c);
	}
	while (cs->rearm) {
		cs->rearm->flags &= ~RR_CF_REARM;
		cs->rearm = cs->rearm->next_rearm;
	}
	rr_out_pool_free(&cs->pool);
	free(cs->leaving);
	free(cs->backlog);
	free(cs->msgs);
	free(cs->iovs);
	free(cs->tls_plain);
	free(cs->accept_slots);
	if (cs->slot)
		munmap(cs->slot, (size_t)cs->cap * sizeof(struct rr_conn));
	free(cs);
	core->layer[RR_LAYER_CONN] = NULL;
}

static const struct rr_layer conn_layer = {
    .name = "connections",
    .init = conns_init,
    .start = rr_accept_start,
    .settle = conns_settle,
    .flush = conns_flush,
    .drain = conns_drain,
    .stopped_listening = conns_stopped_listening,
    .stop = conns_stop,
    .fini = conns_fini,
};

static void on_op_done(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct rr_conn *c = rr_conn_lookup(core, ud);
	if (c == NULL)
		return;
	if (rr_ud_kind(ud) == RR_UD_HANDOFF_OUT) {
		rr_handoff_on_out(core, c, cqe->res); /* calls rr_conn_op_done */
		return;
	}
	/* SHUTDOWN (ENOTCONN etc. are fine: the peer went first), CLOSE */
	rr_conn_op_done(core, c);
}

void rr_conn_register(const struct rr_conn_gate *gate)
{
	rr_conn_gate = gate;
	rr_reactor_layer(RR_LAYER_CONN, &conn_layer);
	rr_reactor_on(RR_UD_ACCEPT, rr_accept_on_cqe);
	rr_reactor_on(RR_UD_RECV, rr_in_on_recv);
	rr_reactor_on(RR_UD_SEND, rr_send_on_cqe);
	rr_reactor_on(RR_UD_SHUTDOWN, on_op_done);
	rr_reactor_on(RR_UD_CLOSE, on_op_done);
	rr_reactor_on(RR_UD_HANDOFF_OUT, on_op_done);
	rr_reactor_on(RR_UD_HANDOFF_IN, rr_handoff_on_in);
	rr_reactor_on(RR_UD_XQ_IN, rr_remote_on_batch);
	rr_reactor_on(RR_UD_XQ_FAILED, rr_xq_on_failed);
}
