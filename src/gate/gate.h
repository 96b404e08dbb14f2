/*
 * The gate: what happens to a request between its last byte and the
 * WebSocket it becomes. Parse, route, check (method, upgrade headers,
 * token, Origin, limits, drain), find the room's home core, hand the
 * connection there or open it here with the route's owner; or answer a plain
 * endpoint (/healthz, /metrics, /).
 *
 * DESIGN: the gate sits above the connection layer (it registers as its
 * gate) and below the rooms and the handler runtime, which register the
 * routes they serve (rr_gate_route). It never calls up otherwise.
 */
#ifndef RR_GATE_GATE_H
#define RR_GATE_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rr_core;
struct rr_conn;
struct rr_store;

/* Who a connection is (from its token, or anonymous). */
struct rr_identity {
	char user_id[129];
	char user_name[129];
	bool perm_read, perm_write;
	uint64_t exp_s;
};

/* An accepted upgrade, on the room's home core. Pointers are valid during
 * the open call only; extra (bytes after the request) is writable. */
struct rr_gate_upgrade {
	unsigned route;
	const char *room;
	size_t room_len;
	const char *accept;              /* Sec-WebSocket-Accept, 28 chars */
	const struct rr_identity *id;    /* NULL: anonymous */
	const char *protocol;            /* Sec-WebSocket-Protocol to answer, or "" */
	const char *query;               /* raw query string (still %-encoded) */
	size_t query_len;
	uint8_t *extra;
	size_t extra_len;
};

/* A route's owner: make c a member (rr_conn_upgrade) or answer it
 * (rr_conn_reply). */
typedef void rr_gate_open_fn(struct rr_core *core, struct rr_conn *c,
			     const struct rr_gate_upgrade *u);
/* A matcher of extra path prefixes (loaded handlers): the route kind and
 * the room part, or 0. */
typedef unsigned rr_gate_match_fn(const char *path, size_t n, const char **room,
				  size_t *room_len);

struct rr_gate_config {
	uint8_t auth_secret[256]; /* HS256 key; auth_secret_len 0: no auth */
	size_t auth_secret_len;
	struct rr_store *store;   /* for /metrics, or NULL */
};
extern struct rr_gate_config rr_gate_cfg;

/* Register the gate with the connection layer. Once, before the cores start. */
void rr_gate_register(void);
/* Serve route (rr_route_kind or a matcher's kind, < RR_GATE_ROUTES) with
 * open; auth: the token is checked (401) and the identity passed on. A route
 * without an owner answers 404. */
#define RR_GATE_ROUTES 64
void rr_gate_route(unsigned route, rr_gate_open_fn *open, bool auth);
void rr_gate_matcher(rr_gate_match_fn *fn);

/* Prometheus text of the broker into a malloc'd buffer (*out, *len), sized
 * to fit any number of cores. 0 or -ENOMEM. */
struct rr_broker;
int rr_metrics_render(const struct rr_broker *b, char **out, size_t *len);

#endif
