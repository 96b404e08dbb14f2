/*
 * The chat handler's shared state and helpers (src/handlers/chat/): the
 * files call down in this order: chat_state.c (config, members, JSON out,
 * rate limit) ← chat_read.c (replays, initial state, history) ←
 * chat_append.c (appends and client frames) ← chat.c (open, close, the
 * handler table). See chat.c for the design.
 */
#ifndef RR_CHAT_INT_H
#define RR_CHAT_INT_H

#include "chat/chat.h"
#include "chat/chat_json.h" /* the protocol's limits, shared with the JSON layer */

#include "ringroom/handler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <string.h>

/* Replay page: rr_log_read_after() takes up to 1000; 256 frames per
 * completion keeps one callback short. */
#define CHAT_REPLAY_PAGE 256
/* a replay reads its next page once the member's queue is below this */
#define CHAT_REPLAY_LOW_WATER (64u << 10)
#define CHAT_HISTORY_DEFAULT RR_CHAT_HISTORY_LIMIT_DEFAULT
#define CHAT_HISTORY_MAX RR_CHAT_HISTORY_LIMIT_MAX
/* initial_state lists at most this many users (and says how many are
 * online): joining a room of 10,000 must not cost 10,000 objects each. */
#define CHAT_ONLINE_MAX 1000
/* Client-chosen strings echoed to others: bounded so one frame cannot make
 * every member's copy large (the limits of chat_json.h). */
#define CHAT_REQUEST_ID_MAX RR_CHAT_REQUEST_ID_MAX
#define CHAT_THREAD_ID_MAX RR_CHAT_THREAD_ID_MAX
#define CHAT_STATUS_MAX RR_CHAT_STATUS_MAX
/* Bytes of a message frame besides its escaped content. */
#define CHAT_FRAME_SLACK RR_CHAT_FRAME_SLACK
/* Refill at most this much elapsed time at once (overflow guard; a bucket
 * is full long before). */
#define CHAT_BUCKET_ELAPSED_MAX 10000000ull


extern struct rr_chat_config chat_cfg;

/* ---- state ---------------------------------------------------------------- */

struct chat_sync;

struct chat_member {
	struct chat_member *next; /* hash chain */
	struct rr_conn *conn;	  /* NULL once it left */
	char *user_id, *user_name;
	/* appends and reads in flight for it: it is freed when it has left
	 * and the last of them completed */
	uint32_t refs;
	bool gone;
	bool perm_write;
	bool live;	       /* past its initial_state / replay */
	uint64_t tokens_milli; /* token bucket, 1000 per frame */
	uint64_t refill_ms;
	struct chat_sync *sync; /* the replay holding its output, or NULL */
};

/* A message waiting for its append to complete (FIFO, in append order). */
struct chat_append {
	struct chat_append *next;
	char *stored; /* the stored JSON object */
	size_t stored_len;
	json_t *request_id; /* NULL when the client gave none */
	/* "<userId>\n<requestId as JSON>": names the message for
	 * rr_log_append_once (a resend after a lost ack is stored once in
	 * cluster mode); NULL without a requestId */
	char *key;
	struct chat_member *m;    /* NULL for a backend API publish */
	struct rr_api_call *call; /* the API publish to answer, or NULL */
	uint64_t id;
	int res;
	bool done;
	bool bad_id; /* numbered otherwise than predicted: never shown */
	bool duplicate; /* stored before under its key: ack it, show nothing */
	char session[];
};

enum chat_read_kind {
	CHAT_READ_REPLAY,  /* since=... at open, or a sync request */
	CHAT_READ_INITIAL, /* initial_state at open */
	CHAT_READ_HISTORY,
};

/* A log read in flight on behalf of a member. */
struct chat_sync {
	struct chat_sync *prev, *next; /* the room's list, freed at evict */
	enum chat_read_kind kind;
	struct chat_member *m;
	uint64_t after;	 /* replay: newest id sent so far */
	uint64_t target; /* replay/initial: the hold point */
	uint32_t limit;	 /* history; replay: the page asked for */
	bool gap;	 /* replay: some ids after `since` are gone */
	bool waiting;	 /* replay: no read in flight, waiting for writable() */
	json_t *request_id; /* history: the request's requestId, or NULL */
};

struct chat_room {
	struct chat_member **buckets;
	size_t nbuckets, nmembers;
	json_t *users; /* userId -> {"username": s, "conns": n} */
	/* cluster mode: the users of the room on other nodes,
	 * node name -> {userId: username} (chat_nodes.c); NULL without */
	json_t *remote;
	bool clustered; /* it heard nodes_ready: typing and presence go to them */
	struct chat_append *ap_head, *ap_tail;
	bool appending; /* inside rr_log_append(): completions wait */
	bool positioned;
	uint64_t last_bcast;
	struct chat_sync *reads;
};


/* A growable text buffer for frames spliced from stored JSON (no re-parse). */
struct chat_buf {
	char *p;
	size_t len, cap;
	bool failed;
};

/* prototypes */
/* chat_state.c: a user is online on another node / anywhere; each online
 * user once (this node's first), fn(userId, username) for each until fn
 * returns false (the listing is full); returns how many there are */
typedef bool chat_online_fn(const char *uid, json_t *username, void *arg);
bool chat_user_remote(const struct chat_room *st, const char *uid);
bool chat_user_online(const struct chat_room *st, const char *uid);
size_t chat_online_each(struct chat_room *st, chat_online_fn *fn, void *arg);
/* chat_nodes.c: what this node tells the room on the others, and what it
 * hears from them (the handler's node_message, node_gone, nodes_ready) */
void chat_nodes_join(struct rr_room *room, const struct chat_member *m);
void chat_nodes_leave(struct rr_room *room, const struct chat_member *m);
void chat_nodes_frame(struct rr_room *room, const char *frame, size_t len);
void chat_nodes_kick(struct rr_room *room, const char *user_id);
void chat_node_message(struct rr_room *room, const char *node, size_t node_len,
		       const void *data, size_t len);
void chat_node_gone(struct rr_room *room, const char *node, size_t node_len);
void chat_nodes_ready(struct rr_room *room);
/* closes this node's connections of a user; how many */
unsigned chat_kick_local(struct chat_room *st, const char *user_id);
struct chat_room *chat_state(struct rr_room *room);
struct chat_member *chat_member_find(struct chat_room *st, const struct rr_conn *c);
int chat_member_insert(struct chat_room *st, struct chat_member *m);
void chat_member_unlink(struct chat_room *st, struct chat_member *m);
void chat_member_free(struct chat_member *m);
void chat_member_leave(struct chat_room *st, struct chat_member *m);
void chat_member_put(struct chat_member *m);
void chat_buf_add(struct chat_buf *b, const void *data, size_t n);
void chat_buf_str(struct chat_buf *b, const char *s);
void chat_buf_json(struct chat_buf *b, const json_t *v);
bool chat_stored_ok(const void *data, size_t len);
void chat_buf_message(struct chat_buf *b, const void *data, size_t len);
/* The stored messages of e[0..n) up to max_id, comma-separated. */
void chat_buf_messages(struct chat_buf *b, const struct rr_log_entry *e, size_t n,
		       uint64_t max_id);
void chat_buf_message_frame(struct chat_buf *b, const void *data, size_t len);
void chat_log_arrived(struct rr_room *room, uint64_t id, const void *data, size_t len);
int chat_send_obj(struct rr_conn *c, json_t *obj, bool now);
int chat_broadcast_obj(struct rr_room *room, json_t *obj, struct rr_conn *except);
void chat_send_error(struct rr_conn *c, const char *code, const char *msg,
			    json_t *request_id);
json_t *chat_perms_json(bool r, bool w);
bool chat_bucket_take(struct chat_member *m, uint64_t now_ms);
struct chat_sync *chat_sync_new(struct chat_room *st, struct chat_member *m,
				       enum chat_read_kind kind);
void chat_sync_free(struct chat_room *st, struct chat_sync *s);
void chat_member_go_live(struct chat_member *m, uint64_t last_id);
void chat_send_synced(struct chat_room *st, struct chat_member *m, bool recovered,
		      uint64_t last_id);
int chat_replay_next(struct rr_room *room, struct chat_sync *s);
void chat_read_done(struct rr_room *room, void *arg, int res, const struct rr_log_entry *e,
			   size_t n, bool more);
int chat_replay_start(struct rr_room *room, struct chat_room *st, struct chat_member *m,
			     uint64_t after);
void chat_initial_state(struct rr_room *room, struct chat_room *st, struct chat_member *m,
			const struct rr_log_entry *e, size_t n, uint64_t target);
void chat_append_free(struct chat_append *a);
void chat_append_done(struct rr_room *room, void *arg, int res, uint64_t id);
void chat_message(struct rr_room *room, struct rr_conn *c, int opcode, void *data,
			 size_t len);
int chat_api(struct rr_room *room, struct rr_api_call *call, const struct rr_api_request *req);
int chat_api_publish(struct rr_room *room, struct chat_room *st, struct rr_api_call *call,
		     const void *body, size_t len);

#endif
