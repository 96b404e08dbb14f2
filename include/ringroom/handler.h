/*
 * ringroom room handler API.
 *
 * A room handler is a table of callbacks (struct rr_handler) that ringroom
 * calls for one room at a time, always on the room's home core: a room is
 * pinned to one CPU core and every callback for it runs on that core's
 * thread, one at a time, so handler code needs no locks for its room.
 *
 * Rules for handler code:
 *  - Never block: no sleeping, no blocking syscalls, no unbounded loops.
 *    Everything slow (storage) is asynchronous: the call returns at once and
 *    a completion callback runs later on the same core.
 *  - Pointers passed to a callback are valid during that callback only,
 *    unless stated otherwise. Copy what you keep.
 *  - A struct rr_conn is valid from open() until close() returns; don't keep
 *    it past close(). To refer to a member later, keep its session id
 *    (rr_member_session) and look it up with rr_room_member_by_session().
 *  - Functions return 0 or a negative errno; "bool" functions are
 *    predicates.
 *
 * Built-in handlers: "echo" (/echo), "broadcast" (/raw/{room}) and "chat"
 * (/chat/{room}). A handler in a shared object exports
 *   const struct rr_handler *ringroom_handler(void);
 * and is mounted with --handler /prefix/=./libmine.so (the room name is the
 * path after the prefix).
 */
#ifndef RINGROOM_HANDLER_H
#define RINGROOM_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RR_HANDLER_ABI 2

/* WebSocket opcodes for data messages. */
#define RR_TEXT 0x1
#define RR_BINARY 0x2

/* Limits on tags (Durable Objects' acceptWebSocket tags, but changeable). */
#define RR_TAGS_MAX 10
#define RR_TAG_BYTES_MAX 256

struct rr_room; /* a room on its home core (opaque) */
struct rr_conn; /* a member of a room (opaque) */
struct rr_api_call; /* a backend API request being answered (opaque) */
struct rr_api_request;

/* What a connection brought with its upgrade request. Valid during open(). */
struct rr_open_info {
	const char *query; /* raw query string (after '?'), not NUL-terminated */
	size_t query_len;
	/* identity: from a verified token when --auth-secret is set, else an
	 * anonymous user ("anon-<n>") with read and write permission */
	const char *user_id;
	const char *user_name;
	bool perm_read, perm_write;
	uint64_t token_exp_s; /* 0: no expiry */
	/* a resumed session: its attachment and tags are already restored */
	bool resumed;
	uint64_t resumed_last_id; /* last message id delivered to that session */
};

struct rr_log_entry {
	uint64_t id;    /* per room: 1, 2, 3 ... within the room's epoch */
	uint64_t ts_ms; /* wall clock when stored */
	const void *data;
	size_t len;
};

struct rr_handler {
	uint32_t abi;         /* RR_HANDLER_ABI */
	const char *name;     /* for logs and metrics */
	size_t state_size;    /* bytes of per-room state, zeroed, rr_room_state() */
	bool durable;         /* the room's log position is loaded from storage
			       * before the first open(); the rr_log_* calls
			       * need it */

	/* The room came into memory (first member, or rebuilt after
	 * eviction). Optional. Return 0, or a negative errno to refuse the
	 * connection that caused it (503). */
	int (*init)(struct rr_room *room);
	/* The room leaves memory (no members for --room-idle-evict, or the
	 * broker stops): release what the state points to. Optional. */
	void (*evict)(struct rr_room *room);
	/* A member joined; the 101 answer is already queued before anything
	 * this callback sends. Return 0, or a close code (1008, 4xxx) to
	 * refuse it (it is closed at once with that code). Optional. */
	int (*open)(struct rr_room *room, struct rr_conn *c, const struct rr_open_info *info);
	/* A complete data message (opcode RR_TEXT or RR_BINARY; text is valid
	 * UTF-8). data is writable and valid during the call only. */
	void (*message)(struct rr_room *room, struct rr_conn *c, int opcode, void *data,
			size_t len);
	/* The member left: clean is true after a close handshake, false after
	 * a reset, a timeout or a protocol error. code is the close code
	 * (1006 when none). Optional. */
	void (*close)(struct rr_room *room, struct rr_conn *c, uint16_t code, bool clean);
	/* An alarm set with rr_alarm_set() is due. Return 0 when handled, a
	 * negative errno to have it retried with back-off. Optional. */
	int (*alarm)(struct rr_room *room, uint64_t alarm_id, const void *payload, size_t len);
	/* The member's output queue fell below the low watermark after
	 * rr_member_want_writable(): send the next page of a replay. Optional.
	 * (ABI 2) */
	void (*writable)(struct rr_room *room, struct rr_conn *c);
	/* A backend API request for this room (the HTTP API of the docs,
	 * "/api/chat/{room}…"), on the room's core, the room loaded. Answer it
	 * exactly once with rr_api_reply() or rr_api_error(), now or later.
	 * Return 0, or a negative errno to have it answered 503. Optional
	 * (without it such requests are answered 404). (ABI 2) */
	int (*api)(struct rr_room *room, struct rr_api_call *call, const struct rr_api_request *req);
	/* Cluster mode (--cluster): the room's log is shared by every node
	 * (kernel-notes/cluster.md). A message another node stored arrived,
	 * already in this node's log under id: show it as the handler shows
	 * its own. Calls come in log order, interleaved with the completions
	 * of this node's own appends. A durable handler without it keeps a
	 * log of its own per node. Optional; read for the built-in /chat/
	 * handler only until the ABI number moves (a handler built against
	 * ABI 2 has no such field). */
	void (*log_arrived)(struct rr_room *room, uint64_t id, const void *data, size_t len);
	/* Cluster mode, the same rooms as log_arrived (read for the built-in
	 * /chat/ handler only until the ABI number moves). node_message: bytes
	 * the same room's handler on another node sent with
	 * rr_room_tell_nodes() (at most once, each node's in the order sent).
	 * node_gone: that node stopped (no heartbeat for a few seconds, or it
	 * restarted): forget what it told. nodes_ready: the room hears the
	 * other nodes now (its subscription is in place, or the connection
	 * to the cluster came back after an outage): say what the others
	 * need to know. Optional. */
	void (*node_message)(struct rr_room *room, const char *node, size_t node_len,
			     const void *data, size_t len);
	void (*node_gone)(struct rr_room *room, const char *node, size_t node_len);
	void (*nodes_ready)(struct rr_room *room);
};

/* ---- the backend API ------------------------------------------------------ */

/* What a backend API request asks of a room. */
enum rr_api_op {
	RR_API_OP_PUBLISH = 1, /* POST: body is the request's JSON */
	RR_API_OP_HISTORY,     /* GET …/history: before_id (0: the newest), limit */
	RR_API_OP_PRESENCE,    /* GET …/presence */
	RR_API_OP_KICK,        /* DELETE …/members/{user_id} */
};

struct rr_api_request {
	enum rr_api_op op;
	const void *body;
	size_t body_len;
	uint64_t before_id;
	uint32_t limit;
	const char *user_id;
};

/* Answer call with status and a JSON body (copied; NULL/0 for none). */
void rr_api_reply(struct rr_api_call *call, int status, const char *json, size_t len);
/* Answer call with {"error":{"code":code,"message":message}}. */
void rr_api_error(struct rr_api_call *call, int status, const char *code, const char *message);

/* ---- rooms -------------------------------------------------------------- */

/* The handler's per-room state (state_size bytes, zeroed at init). */
void *rr_room_state(struct rr_room *room);
/* The room's name (not NUL-terminated) and its length. */
const char *rr_room_name(const struct rr_room *room, size_t *len);
/* Members currently in the room. */
uint32_t rr_room_size(const struct rr_room *room);

/*
 * Send a message to every member (except `except`, which may be NULL). The
 * frame is encoded once; each member gets a reference. Members past their
 * --max-queued-bytes are closed with 1013 instead. Returns 0 or -ENOMEM.
 * With --cluster it also reaches the room's members on the other nodes
 * (those that mount this handler on the same prefix), once each, while
 * NATS is up; each node runs its own instance of the handler (its state,
 * storage and alarms) for its own members.
 */
int rr_room_broadcast(struct rr_room *room, int opcode, const void *data, size_t len,
		      struct rr_conn *except);
/* The same, only to members carrying tag (on every node, too). */
int rr_room_broadcast_tag(struct rr_room *room, const char *tag, int opcode, const void *data,
			  size_t len, struct rr_conn *except);
/*
 * List members (all when tag is NULL, else those with tag) into out[max].
 * Returns how many exist (may exceed max: only max are written).
 */
size_t rr_room_members(struct rr_room *room, const char *tag, struct rr_conn **out, size_t max);
/* The member with this session id, or NULL. */
struct rr_conn *rr_room_member_by_session(struct rr_room *room, const char *session);

/* ---- members ------------------------------------------------------------ */

/* Send one message to one member. Returns 0, -EPIPE (closing) or
 * -ENOBUFS (it passed --max-queued-bytes and is being closed with 1013). */
int rr_member_send(struct rr_conn *c, int opcode, const void *data, size_t len);
/* Close with a code (1000, 1008, 3000-4999) and a reason (≤ 123 bytes). */
void rr_member_close(struct rr_conn *c, uint16_t code, const char *reason);

/* The member's session id (NUL-terminated, stable across resumes). */
const char *rr_member_session(const struct rr_conn *c);
/* During open(): the secret token the client resumes this session with next
 * time, new for every session and every resume (single use; else NULL):
 * give it to the client; the broker keeps only its hash. */
const char *rr_member_resume_token(const struct rr_conn *c);

/*
 * Replace the member's tags (at most RR_TAGS_MAX, each 1..RR_TAG_BYTES_MAX
 * bytes, NUL-terminated strings). Returns 0 or -EINVAL (too many, too long,
 * empty) or -ENOMEM; on error the old tags stay.
 */
int rr_member_set_tags(struct rr_conn *c, const char *const *tags, size_t n);
bool rr_member_has_tag(const struct rr_conn *c, const char *tag);
/* The i-th tag or NULL past the last. */
const char *rr_member_tag(const struct rr_conn *c, size_t i);

/*
 * The member's attachment: an opaque blob (at most --max-attachment-bytes)
 * kept with its session, stored durably, and restored when the session is
 * resumed (also after a restart). set copies data; returns 0, -E2BIG or
 * -ENOMEM. get returns a pointer valid until the next set (NULL if none).
 */
int rr_member_set_attachment(struct rr_conn *c, const void *data, size_t len);
const void *rr_member_attachment(const struct rr_conn *c, size_t *len);

/* The last message id delivered to this member (kept with its session);
 * handlers that replay a log update it as they send. */
void rr_member_set_last_id(struct rr_conn *c, uint64_t id);
uint64_t rr_member_last_id(const struct rr_conn *c);

/*
 * Hold the member's output: until rr_member_release(), messages sent to it
 * (broadcasts included) wait in order behind a hold, while the handler
 * sends replayed messages with rr_member_send_now(). This is how a replay
 * read from storage and the live stream meet with no gap and no duplicate.
 */
void rr_member_hold(struct rr_conn *c);
int rr_member_send_now(struct rr_conn *c, int opcode, const void *data, size_t len);
void rr_member_release(struct rr_conn *c);

/*
 * Pacing the server's own bulk output. rr_member_send_now() is not counted
 * against --max-queued-bytes (a replay is not the reader being slow), so a
 * handler sending many pages reads the next one only when the member has
 * taken the last: rr_member_queued_bytes() says what is still queued (held
 * live output excluded), and rr_member_want_writable() asks for one
 * writable() callback once that falls below the low watermark (64 KiB).
 */
uint64_t rr_member_queued_bytes(const struct rr_conn *c);
void rr_member_want_writable(struct rr_conn *c);

/*
 * A parameter of a query string (rr_open_info.query): its %-decoded value
 * into out (cap bytes, NUL-terminated). Returns its length, -ENOENT when
 * absent, -EINVAL when it does not decode or does not fit.
 */
int rr_query_param(const char *query, size_t len, const char *name, char *out, size_t cap);

/*
 * The member's client address as text ("192.0.2.7", "2001:db8::7"; "?" when
 * unknown) into out (at least 46 bytes): the connection's peer, or the
 * source of its PROXY protocol header behind a balancer (--proxy-protocol).
 * Returns out.
 */
const char *rr_member_address(const struct rr_conn *c, char *out, size_t cap);

/* Wall-clock ms when the auto-response last answered this member, 0 never. */
uint64_t rr_member_auto_response_ms(const struct rr_conn *c);

/* ---- auto-response --------------------------------------------------------- */

/*
 * Answer a request on the core without calling message(): when a text
 * message equals `request` (or, with match_type, is a JSON object whose
 * "type" is `request`), send `response`, in which "%T" stands for the
 * current wall-clock ms. Set for every room of the handler's route; call
 * from init(). Protocol pings never reach handlers either. Returns 0 or
 * -ENOMEM. NULL request removes it.
 */
int rr_room_set_auto_response(struct rr_room *room, const char *request, const char *response,
			      bool match_type);

/* Cluster mode: send len bytes (at most 1 MiB) to the same room's handler
 * on every other node, which gets them in node_message(). Fire and forget:
 * 0 (queued), -ENOTCONN (the cluster is down: dropped), -EAGAIN (the queue
 * to the cluster is full), -ENOTSUP (not a room that spans nodes). */
int rr_room_tell_nodes(struct rr_room *room, const void *data, size_t len);

/* ---- the message log (durable handlers) ---------------------------------------- */

/* The room's epoch (NUL-terminated) and the id of its newest message. */
const char *rr_log_epoch(const struct rr_room *room);
uint64_t rr_log_last_id(const struct rr_room *room);
/* Oldest id retained when the room was loaded (last id + 1 when the log was
 * empty). Retention trims in the background, so older reads may still come
 * back shorter than this promises: a reader that needs exactness checks the
 * first id it gets. */
uint64_t rr_log_first_id(const struct rr_room *room);

/*
 * Append a message: it gets the next id at once (*id_out), so the handler
 * can broadcast it immediately; done runs once it is stored under
 * --durability (res 0), or failed (res -EIO/-ENOSPC: it was not stored and
 * must not be acknowledged). Writes of one loop iteration share one commit.
 * In cluster mode (a handler with log_arrived) the log is the cluster's:
 * done runs once the message is stored there and in this node's copy, and
 * may also get -EXDEV (another node stored a message under this id first,
 * or an earlier append of this room failed: nothing stored; append it
 * again, the next id being rr_log_last_id() + 1) or -ENOTCONN/-ETIMEDOUT
 * (the cluster is down, or the answer did not come: never acknowledge).
 * Returns 0, -EAGAIN (storage queue full: back-pressure, nothing appended)
 * or -ENOSYS (not a durable handler).
 */
typedef void rr_log_done_fn(struct rr_room *room, void *arg, int res, uint64_t id);
int rr_log_append(struct rr_room *room, const void *data, size_t len, uint64_t *id_out,
		  rr_log_done_fn *done, void *arg);
/* The same with a key naming the message for the client that sends it
 * (the chat handler: its user and requestId). In cluster mode a second
 * append with a key stored within the cluster's duplicate window (2
 * minutes) stores nothing: done gets -EALREADY and the first one's id (0
 * when it cannot be read back), so a resend after a lost answer is not
 * stored twice. Without cluster mode the key is not used. */
int rr_log_append_once(struct rr_room *room, const void *key, size_t klen, const void *data,
		       size_t len, uint64_t *id_out, rr_log_done_fn *done, void *arg);

/*
 * Read stored messages: after `id` (oldest first, at most limit ≤ 1000), or
 * before `id` (the newest `limit` ≤ 100 older than id, oldest first; id 0:
 * before the end). done gets the entries (valid during the call) and whether
 * more follow. Returns 0, -EAGAIN or -ENOSYS.
 */
typedef void rr_log_read_fn(struct rr_room *room, void *arg, int res,
			    const struct rr_log_entry *entries, size_t n, bool more);
int rr_log_read_after(struct rr_room *room, uint64_t id, uint32_t limit, rr_log_read_fn *done,
		      void *arg);
int rr_log_read_before(struct rr_room *room, uint64_t id, uint32_t limit,
		       rr_log_read_fn *done, void *arg);

/* ---- room storage ---------------------------------------------------------------- */

/*
 * Per-room keys and values in RocksDB. done gets res 0, -ENOENT (get of a
 * missing key) or -EIO; for get the value (valid during the call). list
 * gives keys starting with prefix, after `after` (NULL: from the start), in
 * key order, at most limit ≤ 1000, and whether more follow. Each call
 * returns 0 or -EAGAIN (queue full).
 */
typedef void rr_kv_done_fn(struct rr_room *room, void *arg, int res, const void *val,
			   size_t len);
typedef void rr_kv_list_fn(struct rr_room *room, void *arg, int res,
			   const struct rr_log_entry *keys_as_entries, size_t n, bool more);
int rr_kv_get(struct rr_room *room, const void *key, size_t klen, rr_kv_done_fn *done,
	      void *arg);
int rr_kv_put(struct rr_room *room, const void *key, size_t klen, const void *val, size_t vlen,
	      rr_kv_done_fn *done, void *arg);
int rr_kv_delete(struct rr_room *room, const void *key, size_t klen, rr_kv_done_fn *done,
		 void *arg);
int rr_kv_list(struct rr_room *room, const void *prefix, size_t plen, const void *after,
	       size_t alen, uint32_t limit, rr_kv_list_fn *done, void *arg);

/* ---- alarms ---------------------------------------------------------------------- */

/*
 * Fire alarm() at wall-clock time at_ms with a copy of payload (≤ 4 KiB).
 * Any number per room; persisted, so an alarm that came due while the
 * broker was down fires after the restart (at least once). *id_out
 * identifies it for rr_alarm_cancel. Returns 0, -E2BIG, -EAGAIN.
 */
int rr_alarm_set(struct rr_room *room, uint64_t at_ms, const void *payload, size_t len,
		 uint64_t *id_out);
int rr_alarm_cancel(struct rr_room *room, uint64_t id);

/* Wall-clock milliseconds (CLOCK_REALTIME), read once per loop iteration. */
uint64_t rr_now_wall_ms(void);

#ifdef __cplusplus
}
#endif

#endif
