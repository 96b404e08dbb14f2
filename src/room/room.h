/*
 * Rooms of one core: a registry by name, membership, and the one walk over
 * a room's members that every fan-out uses.
 *
 * DESIGN: a room lives on its home core (hash(name) % cores), so its member
 * list is never shared. A big room spreads (--spread-at): its new members
 * stay on the core that accepted them, and the home keeps a stub for each
 * (conn.h, "spread rooms") in its member list, so handlers, presence and
 * order stay on the home; each other core holds a shard of the room (its
 * members there), and a broadcast walks the home's list once, queueing on
 * the home's own members and passing the frame once to each core with
 * stubs in the list (room/shard.c delivers it there). A broadcast encodes the frame once and queues
 * it on each member; nothing is sent until the loop flushes. Members join
 * when they open and are detached in the loop's settle step (conn.h), never
 * during a walk: `walking` asserts it. A room is freed only when it has no
 * member and nothing runs on it (`busy`), and its owner agrees (a handler
 * room may hibernate instead).
 */
#ifndef RR_ROOM_ROOM_H
#define RR_ROOM_ROOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/frame.h"

struct rr_core;
struct rr_conn;
struct rr_room;

#define RR_ROOM_NAME_MAX 128
/* The kind of the runtime's own rooms (the alarm index): not counted in
 * ringroom_rooms_open, never listed. */
#define RR_ROOM_KIND_INTERNAL 0xff

/* What the owner of a room's state (the handler runtime) hears. */
struct rr_room_ops {
	/* the room has no member and nothing runs on it: true to free it now
	 * (else the owner keeps it, e.g. hibernating until a timer) */
	bool (*empty)(struct rr_core *core, struct rr_room *r);
	/* free the owner's state (r->owner) */
	void (*free)(struct rr_core *core, struct rr_room *r);
};

struct rr_room {
	struct rr_room *next; /* hash chain */
	uint64_t hash;
	struct rr_conn **members;
	uint32_t count, cap;
	uint32_t busy;		       /* > 0 while work on the room runs: not freed */
	uint32_t walking;	       /* > 0 while a walk is over the members: no change */
	const struct rr_room_ops *ops; /* NULL for /raw/ rooms */
	void *owner;
	uint8_t kind; /* the route: /raw/ and /chat/ rooms of one name differ */
	uint8_t name_len;
	bool spread; /* the home of a spread room: new members stay where they are */
	bool shard;  /* a shard: this core's members of a room homed elsewhere */
	char name[RR_ROOM_NAME_MAX + 1];
};

/* Register the room layer with the reactor (room.c), and with it the
 * built-in owners of /echo and /raw/ with the gate (builtin.c). */
void rr_room_layer_register(void);
void rr_room_register(void);
/* room/shard.c: the shards of spread rooms, with the connection layer */
void rr_room_shard_register(void);

/* room/net.c (above room.c, below builtin.c): /raw/ rooms across nodes
 * (--cluster; no-ops without it). rr_room_net_watch: r's count went to 1
 * or 0 on its home; the node subscribes to the room's subject while it has
 * members. publish: a message the node's members or the backend API sent
 * to a /raw/ room, once to the other nodes (their members get it, this
 * node's do not). register: its layer (per-core state) and the cluster's
 * completion kinds. */
void rr_room_net_register(void);
void rr_room_net_watch(struct rr_core *core, struct rr_room *r);
/* Every request of this core to the cluster goes through here: counted in
 * core->cluster_inflight until its completion, so the core's loop does not
 * end while one is out. rr_cluster_submit's result (-ENOTCONN without a
 * cluster). When the core stops listening, this layer sends the cluster
 * its CORE_STOP and the loop waits for that too: after it no message is
 * posted to the core, so none is left in its ring when the ring closes. */
struct rr_cluster_req;
int rr_room_net_submit(struct rr_core *core, struct rr_cluster_req *req);
void rr_room_net_publish(struct rr_core *core, const char *room, size_t room_len, uint8_t opcode,
			 const uint8_t *p, size_t len);

/* The room, or NULL when it is not in memory. */
struct rr_room *rr_room_find(struct rr_core *core, uint8_t kind, const char *name, size_t n);
/* Call fn on every room of the core (fn must not create or free rooms). */
void rr_room_each(struct rr_core *core, void (*fn)(struct rr_room *r, void *arg), void *arg);
/* Find or create the room; NULL when out of memory. */
struct rr_room *rr_room_get(struct rr_core *core, uint8_t kind, const char *name, size_t n);
/* Find or create this core's shard of a room homed on another core. */
struct rr_room *rr_room_get_shard(struct rr_core *core, uint8_t kind, const char *name, size_t n);
/* Is the room of kind and name spread now (any core may ask)? */
bool rr_room_is_spread(unsigned kind, const char *name, size_t n);
/* Add c; -ENOSPC when the room is at --max-room-size, -ENOMEM. */
int rr_room_join(struct rr_core *core, struct rr_room *r, struct rr_conn *c);
/* Take c out of its room's member list (no-op if none); the room is not
 * freed here: call rr_room_release_if_empty() once done with it. */
void rr_room_detach(struct rr_core *core, struct rr_conn *c);
/* Free r if it has no member, nothing runs on it and its owner agrees. */
void rr_room_release_if_empty(struct rr_core *core, struct rr_room *r);

/* Queue f on every member but except for which keep(member, arg) is true
 * (keep NULL: every member; members on other cores get it through their
 * core, once per core). Returns the members it was queued or passed on
 * for. */
typedef bool rr_room_keep_fn(const struct rr_conn *m, const void *arg);
uint32_t rr_room_send_all(struct rr_core *core, struct rr_room *r, struct rr_frame *f,
			  const struct rr_conn *except, rr_room_keep_fn *keep, const void *arg);

/* room/net.c, for the rooms of loaded handlers: rr_room_net_kind (before
 * the cores start) makes rooms of a kind span nodes on subjects
 * <prefix>.<room> (/raw/ rooms are "ringroom.raw"); net_watch then works
 * for them as for /raw/ rooms, and rr_room_net_broadcast sends what the
 * handler broadcast on r to the members on the other nodes (those
 * carrying tag, with keep the filter rr_room_net_tag_filter named: the
 * runtime's, as for a local tagged broadcast). */
void rr_room_net_kind(uint8_t kind, const char *prefix);
void rr_room_net_tag_filter(rr_room_keep_fn *keep);
void rr_room_net_broadcast(struct rr_core *core, struct rr_room *r, uint8_t opcode,
			   const char *tag, const uint8_t *p, size_t len);

#endif
