/*
 * The handler runtime: what the broker does for rooms served by a handler
 * (include/ringroom/handler.h): loading a durable room's log position before
 * its first member opens, sessions and resume, tags, attachments, the output
 * hold used by replays, auto-response, hibernation, and storage requests to
 * the RocksDB worker with their completions back on the room's core.
 *
 * DESIGN: a connection for a handler room waits in RR_CONN_WAIT (still
 * before its 101, holding its request's query and any early bytes) until
 * the room is loaded and its session looked up; then the 101, the member's
 * join and open() happen in one step on the room's core, so the room's log
 * position a handler reads in open() is exactly where the live stream
 * starts for that member.
 */
#ifndef RR_ROOM_HANDLER_H
#define RR_ROOM_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reactor/timer.h"
#include "ringroom/handler.h"

struct rr_core;
struct rr_broker;
struct rr_store;
struct rr_store_req;
struct rr_out;
struct alarm;
struct rr_room;
struct rr_conn;

#define RR_SESSION_ID_LEN 22 /* base64url of 16 random bytes */
#define RR_ROUTE_CUSTOM_BASE 16
#define RR_CUSTOM_HANDLERS_MAX 16

/* Identity of a connection (from a token, or anonymous). */
struct rr_identity {
	char user_id[129];
	char user_name[129];
	bool perm_read, perm_write;
	uint64_t exp_s;
};

/* Per-connection state of handler rooms (plain /echo and /raw/ members
 * don't carry it, so their idle cost stays small). */
struct rr_conn_ext {
	char session[RR_SESSION_ID_LEN + 1];
	char *resume_token; /* during open() of a new session only */
	uint8_t resume_hash[32];
	struct rr_identity id;
	char *query; /* until open() */
	uint32_t query_len;
	uint8_t *early;     /* bytes after the request, fed after open() */
	uint32_t early_len;
	char accept[29];
	char *protocol; /* Sec-WebSocket-Protocol to answer, until open */
	uint8_t *attachment;
	uint32_t attachment_len;
	char *tags; /* ntags NUL-terminated strings back to back */
	uint32_t tags_len;
	uint8_t ntags;
	bool hold;
	bool resumed;
	bool session_new;
	uint64_t last_id;
	uint64_t resumed_last_id;
	uint64_t auto_resp_ms;
	struct rr_out *held_head, *held_tail;
	struct rr_conn *next_waiter;
	struct rr_room *waiting_room; /* while RR_CONN_WAIT */
};

/* Per-room state of handler rooms. */
struct rr_room_rt {
	const struct rr_handler *h;
	void *state;
	uint8_t load; /* RR_LOAD_* */
	char epoch[17];
	uint64_t last_id, first_id;
	uint32_t ops_inflight; /* storage requests not yet completed */
	struct rr_conn *waiters;
	char *auto_req, *auto_resp;
	size_t auto_req_len;
	bool auto_match_type;
	bool initialised;
	bool evict_now;
	bool pinned;                 /* never evicted (the alarm index) */
	struct alarm *pending_alarms; /* due while the room was loading */
	struct rr_timer idle_timer; /* hibernation: --room-idle-evict */
	/* the room's name in storage: "<handler>:<room>", so /chat/x and a
	 * --handler room x don't share a log */
	char store_name[200];
	uint32_t store_name_len;
	struct rr_room *room;
};

enum { RR_LOAD_NONE = 0, RR_LOAD_LOADING, RR_LOAD_READY, RR_LOAD_FAILED };

/* Broker-wide handler settings from the flags. */
struct rr_handler_config {
	struct rr_store *store;
	uint64_t session_ttl_ms;
	uint32_t max_attachment_bytes;
	uint64_t room_idle_evict_ms;
	uint8_t auth_secret[256]; /* HS256; auth_secret_len 0: no auth */
	size_t auth_secret_len;
	const struct rr_handler *custom[RR_CUSTOM_HANDLERS_MAX];
	char custom_prefix[RR_CUSTOM_HANDLERS_MAX][64];
	unsigned ncustom;
};
extern struct rr_handler_config rr_handler_cfg;

/* The handler serving a route kind, or NULL. */
const struct rr_handler *rr_handler_for_route(unsigned route);
/* Match path against --handler prefixes: the route kind (>= base) and the
 * room part, or 0 when none matches. */
unsigned rr_handler_match_custom(const char *path, size_t n, const char **room, size_t *room_len);
/* Load a handler from a shared object for prefix. 0 or -errno (logged). */
int rr_handler_load_so(const char *spec);

/* Connection-side entry points, called by conn.c. */
void rr_handler_upgrade(struct rr_core *core, struct rr_conn *c, unsigned route,
			const char *room, size_t room_len, const char accept[29],
			const struct rr_identity *id, const char *protocol, const char *query,
			size_t query_len,
			const uint8_t *extra, size_t extra_len);
void rr_handler_message(struct rr_core *core, struct rr_conn *c, uint8_t opcode, uint8_t *p,
			size_t n);
void rr_handler_leave(struct rr_core *core, struct rr_conn *c, uint16_t code, bool clean);
void rr_handler_conn_free(struct rr_core *core, struct rr_conn *c);
/* A connection waiting for its room is dropped (timeout, shutdown). */
void rr_handler_unwait(struct rr_core *core, struct rr_conn *c);
/* Queue f behind the member's hold, if it holds; true when queued there. */
bool rr_handler_hold_push(struct rr_core *core, struct rr_conn *c, struct rr_out *o);

/* Room lifecycle, called by room.c. */
bool rr_handler_room_busy(const struct rr_room_rt *rt);
void rr_handler_room_free(struct rr_core *core, struct rr_room_rt *rt, void *room);
/* A handler room has no member: true when it may be freed now, else it
 * hibernates (freed by its idle timer, --room-idle-evict) or is busy. */
bool rr_handler_room_empty(struct rr_core *core, struct rr_room *r);

/* Per core: restore stored alarms at start; drop them at exit. */
void rr_handler_core_start(struct rr_core *core);
void rr_handler_core_stop(struct rr_core *core);

/* A storage completion arrived on this core. */
void rr_handler_store_done(struct rr_core *core, struct rr_store_req *req);

#endif
