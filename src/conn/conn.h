/*
 * A connection: its state machine, its output queue and its timer.
 *
 * DESIGN: a connection lives in one core's slot array and is only touched by
 * that core. Every operation in flight on it counts in `inflight`; a closing
 * connection is released only when that count reaches zero, and the slot's
 * generation (in every user_data) changes on release, so a late completion
 * for a recycled slot is recognised and dropped.
 *
 * Output is a queue of references to shared frames (core/frame.h). Handlers
 * only append; the reactor flushes each dirty connection once per loop
 * iteration with one send carrying every queued frame (corking).
 */
#ifndef RR_CONN_CONN_H
#define RR_CONN_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/frame.h"
#include "reactor/timer.h"
#include "ws/ws.h"

struct rr_core;
struct rr_room;

enum rr_conn_state {
	RR_CONN_FREE = 0,
	RR_CONN_HS,      /* reading the HTTP request */
	RR_CONN_HANDOFF, /* being moved to its room's home core */
	RR_CONN_WAIT,    /* on the home core, waiting for its room or session */
	RR_CONN_OPEN,    /* WebSocket */
	RR_CONN_CLOSING, /* close frame queued or sent; waiting for the peer's */
	RR_CONN_LINGER,  /* shutdown(SHUT_WR) done; reading until EOF */
	RR_CONN_DEAD,    /* dropping the socket once nothing is in flight */
};

enum rr_conn_flag {
	RR_CF_RECV_ARMED = 1u << 0,
	RR_CF_SEND_INFLIGHT = 1u << 2,
	RR_CF_DIRTY = 1u << 3,
	RR_CF_REARM = 1u << 4,
	RR_CF_CLOSE_SENT = 1u << 5,  /* our close frame is queued */
	RR_CF_CLOSE_RCVD = 1u << 6,  /* the peer's close frame arrived */
	RR_CF_INPUT_DONE = 1u << 7,  /* ignore further input (after a failure) */
	RR_CF_REPLY = 1u << 8,       /* an HTTP response is the last output */
	RR_CF_FD_CLOSING = 1u << 10, /* close_direct issued */
	RR_CF_COUNTED = 1u << 11,    /* counted in broker->live_conns */
	RR_CF_HANDED_OFF = 1u << 12, /* the socket now belongs to another core */
	RR_CF_OVER_LIMIT = 1u << 13, /* accepted past --max-connections */
	RR_CF_MEMBER = 1u << 14,     /* counted as an upgraded member */
	RR_CF_OVER_IP = 1u << 15,    /* past --max-connections-per-ip */
	RR_CF_HANDOFF_WAIT = 1u << 16, /* hand-off waits for TLS output to leave */
	RR_CF_HEAD = 1u << 17,         /* a HEAD request: answer without the body */
};

struct rr_out {
	struct rr_out *next;
	struct rr_frame *f;
	uint32_t off; /* bytes of f already sent */
};

struct rr_handoff;
struct rr_tls;
struct rr_conn_ext;

struct rr_hs {
	uint32_t len, cap;
	uint8_t buf[];
};

struct rr_conn {
	uint32_t idx;
	uint32_t gen;
	int32_t fd; /* fixed-file slot */
	uint8_t state;
	uint8_t route;
	uint8_t inflight;
	uint8_t _pad;
	uint32_t flags;
	uint16_t close_code;

	struct rr_out *out_head, *out_tail, *pong;
	uint64_t out_bytes;    /* queued, including the send in flight */
	uint32_t send_nodes;   /* nodes in the send in flight */

	struct rr_conn *next;  /* dirty list or free list */
	struct rr_conn *next_rearm;

	struct rr_room *room;
	uint32_t member_idx;
	uint64_t last_rx_ms;
	uint64_t last_ping_ms;

	struct rr_timer timer;
	struct rr_ws_rx rx;
	struct rr_hs *hs;
	struct rr_handoff *handoff; /* while RR_CONN_HANDOFF */
	struct rr_ip_entry *ip;     /* with --max-connections-per-ip */
	struct rr_tls *tls;         /* NULL on the plain port */
	struct rr_conn_ext *x;      /* handler rooms only (room/handler.h) */
};

/* Reactor entry points (called by loop.c). */
void rr_conn_set_core(struct rr_core *core); /* the calling thread's core */
struct sockaddr;
/* A new connection in fixed-file slot; peer is NULL when accepted without
 * its address (multishot accept). */
void rr_conn_on_accept(struct rr_core *core, int slot, const struct sockaddr *peer, bool tls);
void rr_conn_on_recv(struct rr_core *core, struct rr_conn *c, int res, uint32_t cqe_flags);
void rr_conn_on_send(struct rr_core *core, struct rr_conn *c, int res);
void rr_conn_on_op_done(struct rr_core *core, struct rr_conn *c, int kind, int res);
void rr_conn_on_handoff_in(struct rr_core *core, void *record, int res);
void rr_conn_flush_all(struct rr_core *core);
void rr_conn_rearm_all(struct rr_core *core);
void rr_conn_drain(struct rr_core *core);
void rr_conn_drop_handshakes(struct rr_core *core);
void rr_conn_release_all(struct rr_core *core);
struct rr_conn *rr_conn_lookup(struct rr_core *core, uint64_t user_data);

/* For rooms and handlers: queue a frame (takes a reference). Returns 0, or
 * -ENOBUFS when the connection passed --max-queued-bytes and is now being
 * closed with 1013, or -EPIPE when it is closing. */
int rr_conn_send(struct rr_core *core, struct rr_conn *c, struct rr_frame *f);
/* Start a WebSocket close with code (server-initiated). */
void rr_conn_close(struct rr_core *core, struct rr_conn *c, uint16_t code, const char *reason);

/* For the handler runtime (room/handler.c). */
struct rr_core *rr_conn_core(void);
/* Answer an HTTP status before the upgrade and close. */
void rr_conn_reject(struct rr_core *core, struct rr_conn *c, int status);
/* Queue the 101, become a member (OPEN), start timers and the receive. */
int rr_conn_accept_ws(struct rr_core *core, struct rr_conn *c, const char accept[29],
		      const char *protocol);
/* Feed received WebSocket bytes (early bytes kept while waiting). */
void rr_conn_feed(struct rr_core *core, struct rr_conn *c, uint8_t *p, size_t n);
/* Queue past a hold (replays); move the held frames to the output. */
int rr_conn_send_now(struct rr_core *core, struct rr_conn *c, struct rr_frame *f);
void rr_conn_release_hold(struct rr_core *core, struct rr_conn *c);
void rr_conn_free_list(struct rr_out *o);
/* A waiting member just opened: pass on TLS records that arrived meanwhile. */
void rr_conn_after_open(struct rr_core *core, struct rr_conn *c);

#endif
