/*
 * A connection: its state machine, its output queue and its timer.
 *
 * DESIGN: a connection lives in one core's slot array and is only touched by
 * that core. Every operation in flight on it counts in `inflight`; a closing
 * connection is released only when that count reaches zero, and the slot's
 * generation (in every user_data) changes on release, so a late completion
 * for a recycled slot is recognised and dropped.
 *
 * Calls point down. The layers above register what they want to hear: the
 * gate gets the request bytes (rr_conn_set_gate), and whoever a WebSocket
 * connection belongs to (a room, the handler runtime) sets its owner, which
 * hears its messages and its leaving. Closing is a flag and a list, never
 * inline: rr_conn_close() and a hard drop mark the connection and queue it;
 * the owner's detach and leave run in the loop's settle step, after the
 * iteration's dispatch and before the flush, outside any broadcast or
 * callback, so a member list never changes under a walk over it.
 *
 * Output is a queue of pooled nodes (no allocation per frame per member):
 * small frames are copied into chunks while the queue is short, others are
 * queued by reference to the shared frame (core/frame.h; conn/outq.h says
 * why). The flush sends each dirty connection once per iteration with every
 * queued node (corking).
 *
 * Input is budgeted: a connection delivers at most RR_INPUT_MESSAGES_MAX
 * messages per pass (a receive, or a settle step: so at most twice that
 * between two flushes); the rest waits in its input backlog, and while
 * that passes RR_INPUT_BACKLOG_MAX its receive is cancelled, so TCP pushes
 * back on the sender.
 */
#ifndef RR_CONN_CONN_H
#define RR_CONN_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn/outq.h"
#include "core/frame.h"
#include "net/addr.h"
#include "reactor/loop.h"
#include "reactor/timer.h"
#include "ws/ws.h"

enum rr_conn_state {
	RR_CONN_FREE = 0,
	RR_CONN_HS,	 /* reading the HTTP request */
	RR_CONN_HANDOFF, /* being moved to its room's home core */
	RR_CONN_WAIT,	 /* on the home core, waiting for its room or session */
	RR_CONN_OPEN,	 /* WebSocket */
	RR_CONN_CLOSING, /* close frame queued or sent; waiting for the peer's */
	RR_CONN_LINGER,	 /* shutdown(SHUT_WR) done; reading until EOF */
	RR_CONN_DEAD,	 /* dropping the socket once nothing is in flight */
};

enum rr_conn_flag {
	RR_CF_RECV_ARMED = 1u << 0,
	RR_CF_RECV_PAUSED = 1u << 1, /* receive cancelled: the input backlog is full */
	RR_CF_SEND_INFLIGHT = 1u << 2,
	RR_CF_DIRTY = 1u << 3,
	RR_CF_REARM = 1u << 4,
	RR_CF_CLOSE_SENT = 1u << 5,	/* our close frame is queued */
	RR_CF_CLOSE_RCVD = 1u << 6,	/* the peer's close frame arrived */
	RR_CF_INPUT_DONE = 1u << 7,	/* ignore further input (after a failure) */
	RR_CF_REPLY = 1u << 8,		/* an HTTP response is the last output */
	RR_CF_LEAVING = 1u << 9,	/* queued for the owner's detach and leave */
	RR_CF_FD_CLOSING = 1u << 10,	/* close_direct issued */
	RR_CF_COUNTED = 1u << 11,	/* counted in broker->live_conns */
	RR_CF_HANDED_OFF = 1u << 12,	/* the socket now belongs to another core */
	RR_CF_OVER_LIMIT = 1u << 13,	/* accepted past --max-connections */
	RR_CF_MEMBER = 1u << 14,	/* counted as an upgraded member */
	RR_CF_OVER_IP = 1u << 15,	/* past --max-connections-per-ip */
	RR_CF_HANDOFF_WAIT = 1u << 16,	/* hand-off waits for TLS output to leave */
	RR_CF_HEAD = 1u << 17,		/* a HEAD request: answer without the body */
	RR_CF_HOLD = 1u << 18,		/* live output waits behind a replay */
	RR_CF_CLEAN = 1u << 19,		/* the leave is a clean close (1000/1001/peer's) */
	RR_CF_WANT_WRITABLE = 1u << 20, /* tell the owner when the queue runs low */
	RR_CF_STUB = 1u << 21,		/* a member whose socket is on another core */
	RR_CF_BACKLOG = 1u << 22,	/* on the core's input backlog list */
	RR_CF_PROXY = 1u << 23,		/* reading its PROXY protocol header */
	RR_CF_BODY = 1u << 24,		/* HTTP requests with bodies (the backend API) */
	RR_CF_REMOTE = 1u << 25,	/* a member of a room homed on another core */
};

struct rr_hs {
	uint32_t len, cap;
	uint8_t buf[];
};

struct rr_inbuf; /* input backlog, conn/input.c */
struct rr_handoff;
struct rr_remote;
struct rr_tls;
struct rr_ip_entry;
struct rr_conn;

/* What the owner of a WebSocket connection hears. Called on the core's
 * thread, never inside another owner's callback or a broadcast except
 * `message` and `writable` (which run from a completion). */
struct rr_conn_owner {
	/* a data message (payload writable, valid during the call) */
	void (*message)(struct rr_core *core, struct rr_conn *c, uint8_t opcode, uint8_t *p,
			size_t n);
	/* the connection is closing: leave the member list (first pass over
	 * every closing connection of the iteration) */
	void (*detach)(struct rr_core *core, struct rr_conn *c);
	/* then run the close callbacks: code is the close code (1006 when the
	 * socket dropped), clean for 1000, 1001 or a close the peer began */
	void (*leave)(struct rr_core *core, struct rr_conn *c, uint16_t code, bool clean);
	/* the output queue fell below RR_OUT_LOW_WATER after
	 * rr_conn_want_writable() */
	void (*writable)(struct rr_core *core, struct rr_conn *c);
	/* the slot is being freed: drop what the owner attached (ctx) */
	void (*release)(struct rr_core *core, struct rr_conn *c);
	/* the room's name for logs (its length; 0 when none) */
	size_t (*room)(const struct rr_conn *c, const char **name);
};

struct rr_conn {
	uint32_t idx;
	uint32_t gen;
	int32_t fd; /* fixed-file slot */
	uint8_t state;
	uint8_t route; /* set by the gate (http/http.h rr_route_kind) */
	uint8_t inflight;
	uint8_t _pad;
	uint32_t flags;
	uint16_t close_code;
	uint16_t _pad2;
	uint32_t exp_s; /* token expiry (unix seconds), 0: none */

	struct rr_outq out;

	struct rr_conn *next; /* dirty list or free list */
	struct rr_conn *next_rearm;

	const struct rr_conn_owner *owner;
	void *ctx;  /* the owner's per-connection state */
	void *room; /* the room layer's: the room this is a member of */
	uint32_t member_idx;
	uint64_t last_rx_ms;
	uint64_t last_ping_ms;
	uint64_t accepted_ns; /* monotonic: the handshake histogram, lifetimes in logs */

	struct rr_timer timer;
	struct rr_ws_rx rx;
	struct rr_hs *hs;
	struct rr_inbuf *in; /* input backlog, while over budget */
	union {
		struct rr_handoff *handoff; /* while RR_CONN_HANDOFF */
		struct rr_remote *remote;   /* RR_CF_STUB or RR_CF_REMOTE */
	};
	struct rr_ip_entry *ip; /* with --max-connections-per-ip */
	struct rr_addr peer;	/* the client: accepted peer or PROXY source */
	struct rr_tls *tls;	/* NULL on the plain port */
};

/* What the gate registers: it hears the request bytes of a connection in
 * RR_CONN_HS (all of them so far in c->hs), and a connection another core
 * handed over (record: the bytes the gate gave rr_conn_handoff). */
struct rr_conn_gate {
	void (*request)(struct rr_core *core, struct rr_conn *c);
	void (*arrived)(struct rr_core *core, struct rr_conn *c, const void *record, size_t len);
};
/* Register the connection layer with the reactor, with its gate. Once,
 * before the cores start. */
void rr_conn_register(const struct rr_conn_gate *gate);

/* ---- for the layers above ------------------------------------------------ */

/* Queue f (takes a reference) as live output: behind a hold, and counted
 * against --max-queued-bytes. Returns 0, -ENOBUFS when the connection
 * passed the limit and is now closing with 1013, or -EPIPE when it is not
 * open. */
int rr_conn_send(struct rr_core *core, struct rr_conn *c, struct rr_frame *f);
/* Queue the server's own bulk output (a replay page, a history answer):
 * past a hold, and not counted against --max-queued-bytes, since the owner
 * paces it with rr_conn_queued_bytes() and rr_conn_want_writable(). */
int rr_conn_send_bulk(struct rr_core *core, struct rr_conn *c, struct rr_frame *f);
/* Hold live output (queued meanwhile), or let it through in order. */
void rr_conn_hold(struct rr_conn *c);
void rr_conn_release_hold(struct rr_core *core, struct rr_conn *c);
/* Bytes queued ahead of anything sent next, held output excluded. */
uint64_t rr_conn_queued_bytes(const struct rr_conn *c);
/* Call owner->writable once the queue is below RR_OUT_LOW_WATER (at once,
 * in the next settle, when it already is). */
void rr_conn_want_writable(struct rr_core *core, struct rr_conn *c);
/* Start a WebSocket close with code (server-initiated); the owner's leave
 * runs in the next settle. */
void rr_conn_close(struct rr_core *core, struct rr_conn *c, uint16_t code, const char *reason);

/* Answer an HTTP status before the upgrade and close. f is the response
 * (reference taken over), or NULL for the status's standard one. */
void rr_conn_reply(struct rr_core *core, struct rr_conn *c, int status, struct rr_frame *f);
/* Queue the 101, become a member (OPEN) of owner, start timers and the
 * multishot receive. -ESHUTDOWN/-ENOMEM: answered 503 and closing instead. */
int rr_conn_upgrade(struct rr_core *core, struct rr_conn *c, const char accept[29],
		    const char *protocol);
/* Feed received WebSocket bytes (early bytes kept while waiting), then pass
 * on TLS records that arrived meanwhile. */
void rr_conn_feed(struct rr_core *core, struct rr_conn *c, uint8_t *p, size_t n);
/* Queue f (reference taken) on a connection that is not a WebSocket and
 * stays open (a backend API answer). 0 or -ENOMEM. */
int rr_conn_write(struct rr_core *core, struct rr_conn *c, struct rr_frame *f);
/* Move c to core home with record (len bytes, copied); the gate's arrived()
 * gets it there. Answers 503 itself when it can't. */
void rr_conn_handoff(struct rr_core *core, struct rr_conn *c, unsigned home, const void *record,
		     size_t len);
/* The client's address for logs ("?" when unknown). */
void rr_conn_peer(const struct rr_conn *c, char *out, size_t cap);

/* ---- spread rooms: members on other cores (conn/remote.c) ------------------
 *
 * A spread room has one home core, which orders everything: its member list,
 * its handler and every broadcast. A member accepted on another core stays
 * there (RR_CF_REMOTE: its socket, TLS, timers and output queue), and the
 * home holds a stub for it (RR_CF_STUB: a slot without a socket, carrying
 * what the layers above keep per member). What the home does to a stub goes
 * to the member's core through that pair of cores' queue (conn/xq.h), in
 * order: the 101, each frame, holds, closes; what the member does comes back
 * the same way (its messages, its leaving, its queue running low). A
 * broadcast passes each frame once per core (rr_conn_remote_all), by
 * reference (core/frame.h), and that core queues it on its own members of
 * the room (its shard) in its own corked flush.
 */
struct rr_remote {
	uint32_t core;	   /* the other end's core */
	uint32_t idx, gen; /* the other end's connection; gen 0: not known yet */
	uint64_t queued;   /* a stub: bulk bytes passed on since the member's last report */
	uint8_t *early;	   /* a remote member: bytes after its request, fed after the 101 */
	uint32_t early_len;
	uint8_t route;
	uint8_t room_len;
	char room[]; /* a remote member: its room's name, NUL-terminated */
};

/* What the room layer does with remote members on their own core. */
struct rr_conn_shard {
	/* c had its 101: it joins this core's shard of route/room */
	int (*join)(struct rr_core *core, struct rr_conn *c, unsigned route, const char *room,
		    size_t n);
	/* c leaves its shard (first pass of its close) */
	void (*detach)(struct rr_core *core, struct rr_conn *c);
	/* f for every member of this core's shard of route/room but except */
	void (*deliver)(struct rr_core *core, unsigned route, const char *room, size_t n,
			struct rr_frame *f, const struct rr_conn *except);
};
void rr_conn_shard_register(const struct rr_conn_shard *s);

/* Keep c here as a member of route/room, homed on core home: the home gets
 * record (the gate's, as for a hand-off) and answers with the 101 or a
 * status; extra (bytes after the request) waits here until then. */
void rr_conn_remote_join(struct rr_core *core, struct rr_conn *c, unsigned home, unsigned route,
			 const char *room, size_t room_len, const void *record, size_t len,
			 const uint8_t *extra, size_t extra_len);
/* A stub: the core its member's socket is on. */
static inline unsigned rr_conn_stub_core(const struct rr_conn *c)
{
	return c->remote->core;
}
/* On the home: queue f (reference kept by the callee as needed) for every
 * member of route/room's shard on core dst but except (a stub on dst, or
 * NULL). */
void rr_conn_remote_all(struct rr_core *core, unsigned dst, unsigned route, const char *room,
			size_t n, struct rr_frame *f, const struct rr_conn *except);

/* ---- inside the connection layer (conn/ files) ------------------------------- */

/* Per-core state of the connection layer (core->layer[RR_LAYER_CONN]). */
struct rr_accept_slot;
struct rr_conns {
	struct rr_conn *slot;
	uint32_t cap, used;
	struct rr_conn *free;
	struct rr_conn *dirty;
	struct rr_conn *rearm;
	/* closing connections whose owner's leave is due, and connections
	 * with input waiting over their budget: arrays, since a connection
	 * may be on both */
	struct rr_conn **leaving;
	uint32_t nleaving, leaving_cap;
	struct rr_conn **backlog;
	uint32_t nbacklog, backlog_cap;
	/* per-iteration scratch for sendmsg: consumed by the kernel at submit
	 * (IORING_FEAT_SUBMIT_STABLE), so it is reused after each submit */
	struct msghdr *msgs;
	struct iovec *iovs;
	uint32_t msgs_used, iovs_used, msgs_cap, iovs_cap;
	/* decrypted bytes of one TLS read, passed on at once */
	uint8_t *tls_plain;
	size_t tls_plain_cap;
	struct rr_out_pool pool; /* output chunks */
	/* stubs closed this iteration: freed after the leaving list */
	struct rr_conn *dead_stubs;
	uint32_t stubs; /* slots held by stubs (no fixed file) */
	/* accepting */
	struct rr_accept_slot *accept_slots;
	struct rr_timer accept_retry; /* re-arms accepts parked on a full table */
	struct rr_core *core;
};

static inline struct rr_conns *rr_conns(struct rr_core *core)
{
	return core->layer[RR_LAYER_CONN];
}

extern const struct rr_conn_gate *rr_conn_gate;

/* conn.c (the others call it; it calls only outq.c and xq.c) */
struct rr_conn *rr_conn_alloc(struct rr_core *core, int fd);
void rr_conn_release(struct rr_core *core, struct rr_conn *c);
struct rr_conn *rr_conn_lookup(struct rr_core *core, uint64_t user_data);
void rr_conn_kill(struct rr_core *core, struct rr_conn *c);
void rr_conn_fail(struct rr_core *core, struct rr_conn *c, uint16_t code);
void rr_conn_maybe_finish(struct rr_core *core, struct rr_conn *c);
void rr_conn_op_done(struct rr_core *core, struct rr_conn *c);
void rr_conn_set_deadline(struct rr_core *core, struct rr_conn *c, uint64_t at_ms);
void rr_conn_arm_recv(struct rr_core *core, struct rr_conn *c);
void rr_conn_settle_leaving(struct rr_core *core);
void rr_conn_peer_closed(struct rr_core *core, struct rr_conn *c, uint16_t code);
void rr_conn_mark_dirty(struct rr_core *core, struct rr_conn *c);
bool rr_conn_output_pending(const struct rr_conn *c);
int rr_conn_pong(struct rr_core *core, struct rr_conn *c, const uint8_t *p, size_t n);
/* Count c against --max-connections-per-ip under its client address. */
void rr_conn_count_ip(struct rr_conn *c);
/* input.c */
void rr_in_on_recv(struct rr_core *core, const struct io_uring_cqe *cqe);
void rr_in_settle(struct rr_core *core);
void rr_in_rearm_all(struct rr_core *core);
void rr_in_tls_drain(struct rr_core *core, struct rr_conn *c);
/* handoff.c */
void rr_handoff_on_out(struct rr_core *core, struct rr_conn *c, int res);
void rr_handoff_on_in(struct rr_core *core, const struct io_uring_cqe *cqe);
void rr_handoff_submit(struct rr_core *core, struct rr_conn *c);
/* send.c */
void rr_send_flush_all(struct rr_core *core);
void rr_send_on_cqe(struct rr_core *core, const struct io_uring_cqe *cqe);
void rr_conn_stub_left(struct rr_core *core, struct rr_conn *c, uint16_t code, bool clean);
/* Free a stub's or remote member's c->remote. */
void rr_remote_free(struct rr_conn *c);
/* remote.c */
void rr_remote_on_batch(struct rr_core *core, const struct io_uring_cqe *cqe);
/* accept.c */
void rr_accept_start(struct rr_core *core);
void rr_accept_on_cqe(struct rr_core *core, const struct io_uring_cqe *cqe);

#endif
