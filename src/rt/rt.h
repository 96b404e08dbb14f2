/*
 * The handler runtime: what the broker does for rooms served by a handler
 * (include/ringroom/handler.h): the registry of handlers, loading a durable
 * room's log position before its first member opens, sessions and resume,
 * tags, attachments, the hold a replay puts on live output, auto-response,
 * hibernation, alarms, and storage requests to the RocksDB worker with their
 * completions back on the room's core.
 *
 * DESIGN: the runtime owns its connections (a struct rr_conn_owner) and its
 * rooms' state (a struct rr_room_ops); the layers below call it only through
 * those, and its callbacks into handlers never run inside a broadcast: a
 * member that closes is detached and its handler's close() called in the
 * loop's settle step.
 *
 * A connection for a handler room waits in RR_CONN_WAIT (still before its
 * 101, holding its request's query and any early bytes) until the room is
 * loaded and its session looked up; then the 101, the member's join and
 * open() happen in one step on the room's core, so the room's log position
 * a handler reads in open() is exactly where the live stream starts for
 * that member.
 */
#ifndef RR_RT_RT_H
#define RR_RT_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn/conn.h"
#include "gate/gate.h"
#include "persist/store.h"
#include "reactor/timer.h"
#include "ringroom/handler.h"
#include "room/room.h"

#define RR_SESSION_ID_LEN 22 /* base64url of 16 random bytes */
#define RR_ROUTE_CUSTOM_BASE 16
#define RR_CUSTOM_HANDLERS_MAX 16

struct alarm;

/* Per-connection state of handler rooms (conn->ctx; plain /echo and /raw/
 * members don't carry it, so their idle cost stays small). */
struct rr_conn_ext {
	char session[RR_SESSION_ID_LEN + 1];
	char *resume_token; /* during open() of a new session only */
	uint8_t resume_hash[32];
	struct rr_identity id;
	char *query; /* until open() */
	uint32_t query_len;
	uint8_t *early; /* bytes after the request, fed after open() */
	uint32_t early_len;
	char accept[29];
	char *protocol; /* Sec-WebSocket-Protocol to answer, until open */
	uint8_t *attachment;
	uint32_t attachment_len;
	char *tags; /* ntags NUL-terminated strings back to back */
	uint32_t tags_len;
	uint8_t ntags;
	bool resumed;
	bool session_new;
	bool opened; /* its handler's open() ran: close() is due */
	uint64_t last_id;
	uint64_t resumed_last_id;
	uint64_t auto_resp_ms;
	struct rr_conn *next_waiter;
	struct rr_room *waiting_room; /* while RR_CONN_WAIT */
	struct rr_room *left_room;    /* between detach and leave */
};

/* Per-room state of handler rooms (room->owner). */
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
	bool pinned;			 /* never evicted (the alarm index) */
	struct alarm *pending_alarms;	 /* due while the room was loading */
	struct rr_api_call *api_waiters; /* backend API calls waiting for the load */
	struct rr_timer idle_timer;	 /* hibernation: --room-idle-evict */
	/* the room's name in storage: "<handler>:<room>", so /chat/x and a
	 * --handler room x don't share a log */
	char store_name[200];
	uint32_t store_name_len;
	struct rr_room *room;
	struct rt_clog *clog; /* cluster mode: the cluster's log (rt/cluster.c) */
	struct rt_evt *evt;   /* cluster mode: its events across nodes (rt/nodes.c) */
};

enum { RR_LOAD_NONE = 0, RR_LOAD_LOADING, RR_LOAD_READY, RR_LOAD_FAILED };

/* Broker-wide handler settings from the flags. */
struct rr_cluster;
struct rr_handler_config {
	struct rr_store *store;
	struct rr_cluster *cluster; /* --cluster: /chat/ logs are the cluster's */
	uint64_t session_ttl_ms;
	uint32_t max_attachment_bytes;
	uint64_t room_idle_evict_ms;
	const struct rr_handler *custom[RR_CUSTOM_HANDLERS_MAX];
	char custom_prefix[RR_CUSTOM_HANDLERS_MAX][64];
	unsigned ncustom;
};
extern struct rr_handler_config rr_handler_cfg;

/* Register the runtime with the reactor and the gate, with every handler
 * added so far. Once, after rr_rt_add() and rr_handler_load_so(). */
void rr_rt_register(void);
/* The filter of a tagged broadcast (api.c): m carries the tag. */
bool rr_rt_has_tag(const struct rr_conn *m, const void *tag);
/* Serve route (an rr_route_kind, e.g. RR_ROUTE_CHAT) with h. */
void rr_rt_add(unsigned route, const struct rr_handler *h);
/* Load a handler from a shared object for prefix. 0 or -errno (logged). */
int rr_handler_load_so(const char *spec);
/* The --handler route of path and its room part, or 0. */
unsigned rr_rt_match_custom(const char *path, size_t n, const char **room, size_t *room_len);
/* The handler serving a route kind, or NULL. */
const struct rr_handler *rr_handler_for_route(unsigned route);

/* ---- inside the runtime (rt/ files) ----------------------------------------- */

/* registry.c: the runtime's owner tables (filled by member.c) */
extern struct rr_conn_owner rr_rt_owner;
extern struct rr_room_ops rr_rt_room_ops;

static inline struct rr_conn_ext *cx(const struct rr_conn *c)
{
	return c->owner == &rr_rt_owner ? c->ctx : NULL;
}

static inline struct rr_room_rt *rt_of(const struct rr_room *r)
{
	return r && r->ops == &rr_rt_room_ops ? r->owner : NULL;
}

/* storage.c: requests to the storage worker */
enum sreq_kind {
	SR_ROOM_LOAD,
	SR_RELOAD,
	SR_SESSION_GET,
	SR_SESSION_PUT,
	SR_APPEND,
	SR_READ,
	SR_KV,
	SR_KV_LIST,
	SR_ALARM_LIST,
};

struct sreq {
	struct rr_store_req req;
	struct rr_room *room;
	struct rr_conn *conn;
	uint32_t conn_gen;
	uint8_t kind;
	union {
		rr_log_done_fn *log_done;
		rr_log_read_fn *read_done;
		rr_kv_done_fn *kv_done;
		rr_kv_list_fn *list_done;
	} cb;
	void *arg;
	/* the runtime's own requests (room load, session lookup, alarm index):
	 * called instead of the handler callbacks above */
	void (*done)(struct rr_core *core, struct sreq *s);
	struct rr_store_session sess;
	uint64_t submit_ns; /* rr_now_ns() at submit: storage commit latency */
	uint8_t data[];	    /* room name, key, value, session blobs */
};

struct sreq *rr_rt_sreq_new(struct rr_core *core, struct rr_room *r, enum rr_store_op op,
			    uint8_t kind, size_t extra);
int rr_rt_sreq_submit(struct rr_core *core, struct sreq *s);
int rr_rt_kv_op(struct rr_room *room, enum rr_store_op op, const void *key, size_t klen,
		const void *val, size_t vlen, rr_kv_done_fn *done, void *arg);
void rr_rt_session_put(struct rr_core *core, struct rr_conn *c);
void rr_rt_new_session(struct rr_conn_ext *x);
void rr_rt_store_done(struct rr_core *core, const struct io_uring_cqe *cqe);
/* member.c registers the upgrade of route with the gate */
void rr_rt_open_register(unsigned route);
void rr_rt_random(uint8_t *p, size_t n);
void rr_rt_sha256(const void *p, size_t n, uint8_t out[32]);

/* Load a room's log position; done runs with the completion. 0 or -errno. */
int rr_rt_room_load(struct rr_core *core, struct rr_room *r,
		    void (*done)(struct rr_core *core, struct sreq *s));

/* The runtime's per-core state (core->layer[RR_LAYER_RT]). */
struct rt_core {
	struct rt_clog *clogs;	 /* cluster.c: the core's rooms with a cluster log */
	struct rt_nodes *nodes; /* nodes.c: the nodes heard and the rooms' events */
};

/* csession.c: sessions that resume on any node (--cluster), above
 * cluster.c: save = rr_rt_session_put, plus the cluster's copy for a room
 * whose log is the cluster's; get: look the waiting connection's session
 * up in the cluster; done runs on the core with the record that decides:
 * the cluster's, else (none there, or NATS unreachable) local (the node's
 * own copy, or NULL), or NULL. 0 or -errno (-ENOTSUP: not such a room). */
typedef void rr_rt_csession_fn(struct rr_core *core, struct rr_conn *c, uint64_t gen,
			       const struct rr_store_session *ss);
void rr_rt_session_save(struct rr_core *core, struct rr_conn *c);
int rr_rt_csession_get(struct rr_core *core, struct rr_conn *c,
		       const struct rr_store_session *local, rr_rt_csession_fn *done);

/* nodes.c: events across nodes (--cluster), below cluster.c. register:
 * once, before the cores start (the boot id); start / fini: the core's
 * node table, heartbeat and subscription; room_start / room_stop: a room
 * with a cluster log subscribes to its events (the handler's
 * node_message, node_gone, nodes_ready) while it is in memory; tell:
 * rr_room_tell_nodes(). */
struct rt_evt;
struct rt_nodes;
void rr_rt_nodes_register(void);
void rr_rt_nodes_start(struct rr_core *core);
void rr_rt_nodes_fini(struct rr_core *core);
void rr_rt_nodes_room_start(struct rr_core *core, struct rr_room *r);
void rr_rt_nodes_room_stop(struct rr_room_rt *rt);
int rr_rt_nodes_tell(struct rr_core *core, struct rr_room_rt *rt, const void *data, size_t len);
/* hold_api: a presence call on a room that said hello less than a few
 * round trips ago waits (true: held; it runs through the hook) so that it
 * lists the users the other nodes answer with. member.c registers it. */
bool rr_rt_nodes_hold_api(struct rr_core *core, struct rr_room *r, struct rr_api_call *call);
/* room_ready: the room's init ran (member.c): a hello held back goes now */
void rr_rt_nodes_room_ready(struct rr_room *r);
struct rr_rt_nodes_hooks {
	void (*api_run)(struct rr_core *core, struct rr_room *r, struct rr_api_call *call);
};
extern struct rr_rt_nodes_hooks rr_rt_nodes_hooks;

/* cluster.c: the cluster's log of a /chat/ room (--cluster), above
 * storage.c and below api.c and member.c. wanted: the room's log is the
 * cluster's; start: after the local log's position is loaded, takes the
 * load over (0), or -errno (the load fails); stop: the room leaves memory;
 * append / last_id: rr_log_append / rr_log_last_id; busy: work in flight
 * keeps the room; init/fini: the core's state. It tells member.c that the
 * load is over through rr_rt_clog_hooks (member.c registers it). */
struct rt_clog;
bool rr_rt_clog_wanted(const struct rr_room *r);
int rr_rt_clog_start(struct rr_core *core, struct rr_room *r);
void rr_rt_clog_stop(struct rr_core *core, struct rr_room_rt *rt);
int rr_rt_clog_append(struct rr_room_rt *rt, const void *key, size_t klen, const void *data,
		      size_t len, uint64_t *id_out,
		      rr_log_done_fn *done, void *arg);
uint64_t rr_rt_clog_last_id(const struct rr_room_rt *rt);
bool rr_rt_clog_busy(const struct rr_room_rt *rt);
int rr_rt_clog_init(struct rr_core *core);
void rr_rt_clog_fini(struct rr_core *core);
struct rr_rt_clog_hooks {
	/* the load is over (rt->load READY or FAILED): open the waiters */
	void (*room_ready)(struct rr_core *core, struct rr_room *r);
};
extern struct rr_rt_clog_hooks rr_rt_clog_hooks;

/* member.c: rooms and members */
struct rr_room *rr_rt_room_get(struct rr_core *core, const struct rr_handler *h, unsigned route,
			       const char *name, size_t name_len);
void rr_rt_room_wake(struct rr_core *core, struct rr_room *r);
/* What alarm.c (above) tells member.c: a room became ready (run its
 * pending alarms), and a room's pending alarms are to be freed. */
struct rr_rt_alarm_hooks {
	void (*room_ready)(struct rr_core *core, struct rr_room *r);
	void (*free_pending)(struct alarm *list);
};
extern struct rr_rt_alarm_hooks rr_rt_alarm_hooks;
void rr_rt_member_register(void);

/* alarm.c */
void rr_rt_alarms_register(void);
void rr_rt_alarms_start(struct rr_core *core);
void rr_rt_alarms_stop(struct rr_core *core);

#endif
