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
	const char *accept;	      /* Sec-WebSocket-Accept, 28 chars */
	const struct rr_identity *id; /* NULL: anonymous */
	const char *protocol;	      /* Sec-WebSocket-Protocol to answer, or "" */
	const char *query;	      /* raw query string (still %-encoded) */
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
typedef unsigned rr_gate_match_fn(const char *path, size_t n, const char **room, size_t *room_len);

struct rr_apikey_store;

struct rr_gate_config {
	uint8_t auth_secret[256]; /* HS256 key; auth_secret_len 0: no auth */
	size_t auth_secret_len;
	struct rr_store *store;		  /* for /metrics, or NULL */
	struct rr_apikey_store *api_keys; /* --api-key-file, or NULL */
	const char *api_key_file;
};
extern struct rr_gate_config rr_gate_cfg;

/* Load --api-key-file (0, or -EINVAL logged); SIGHUP: reload it (keeps the
 * previous keys on a bad file, logged); free them at exit. */
int rr_gate_api_keys(const char *path);
void rr_gate_reload(void);
void rr_gate_api_fini(void);

/* ---- the backend API (/api/…): a call made on the room's home core ------- */

/*
 * One backend API request, carried to the core that owns its room (or to
 * every core for the room list) and back. The owner of the route runs it
 * there and answers exactly once with rr_gate_api_done(), at once or later
 * (a durable publish answers when stored). Fields are read-only to it except
 * through rr_gate_api_done.
 */
struct rr_api_call {
	unsigned kind;	/* enum rr_api_kind (http/http.h) */
	unsigned route; /* RR_ROUTE_RAW or RR_ROUTE_CHAT */
	char room[129];
	size_t room_len;
	bool text;	     /* publish to /raw/: a text frame (else binary) */
	uint64_t before_id;  /* history: 0 = from the newest */
	uint32_t limit;	     /* history */
	char user_id[129];   /* kick */
	const uint8_t *body; /* publish */
	size_t body_len;
	/* the answer */
	int status;
	char *answer; /* JSON body, malloc'd */
	size_t answer_len;
	/* the gate's */
	unsigned origin;
	uint32_t conn_idx, conn_gen;
	struct rr_api_call *next; /* a runtime's queue of calls waiting for a room */
	void *agg;		  /* the room list's collector */
	uint8_t data[];
};

/* Run calls of route (RR_ROUTE_RAW, RR_ROUTE_CHAT) on the home core. */
typedef void rr_gate_api_fn(struct rr_core *core, struct rr_api_call *call);
void rr_gate_api(unsigned route, rr_gate_api_fn *fn);
/* List this core's rooms as JSON objects, comma-separated, into a malloc'd
 * string (*out, *len); registered by the room layer. */
typedef void rr_gate_rooms_fn(struct rr_core *core, char **out, size_t *len);
void rr_gate_rooms(rr_gate_rooms_fn *fn);
/* The answer to call (json copied; NULL for an empty body). */
void rr_gate_api_done(struct rr_core *core, struct rr_api_call *call, int status, const char *json,
		      size_t len);
/* An error answer {"error":{"code":…,"message":…}}. */
void rr_gate_api_error(struct rr_core *core, struct rr_api_call *call, int status, const char *code,
		       const char *message);

/* Register the gate with the connection layer. Once, before the cores start. */
void rr_gate_register(void);
/* Serve route (rr_route_kind or a matcher's kind, < RR_GATE_ROUTES) with
 * open; auth: the token is checked (401) and the identity passed on. A route
 * without an owner answers 404. */
#define RR_GATE_ROUTES 64
void rr_gate_route(unsigned route, rr_gate_open_fn *open, bool auth);
void rr_gate_matcher(rr_gate_match_fn *fn);
/* Is route/room spread (rooms above decide): its new members stay on the
 * core that accepted them instead of moving to its home core. */
typedef bool rr_gate_spread_fn(unsigned route, const char *room, size_t n);
void rr_gate_spread(rr_gate_spread_fn *fn);

/* Prometheus text of the broker into a malloc'd buffer (*out, *len), sized
 * to fit any number of cores. 0 or -ENOMEM. */
struct rr_broker;
int rr_metrics_render(const struct rr_broker *b, char **out, size_t *len);

#endif
