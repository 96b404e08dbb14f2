/*
 * Rooms of one core: a registry by name, membership, and fan-out.
 *
 * DESIGN: a room lives on its home core only (hash(name) % cores), so its
 * member list is never shared. A broadcast encodes the frame once and queues
 * a reference on each member; nothing is sent until the loop flushes.
 */
#ifndef RR_ROOM_ROOM_H
#define RR_ROOM_ROOM_H

#include <stddef.h>
#include <stdint.h>

#include "core/frame.h"

struct rr_core;
struct rr_conn;
struct rr_room_rt;

#define RR_ROOM_NAME_MAX 128

struct rr_room {
	struct rr_room *next; /* hash chain */
	uint64_t hash;
	struct rr_conn **members;
	uint32_t count, cap;
	uint32_t busy; /* > 0 while a broadcast walks the members */
	struct rr_room_rt *rt; /* handler rooms (room/handler.h); NULL for /raw/ */
	uint8_t kind; /* rr_route_kind: /raw/ and /chat/ rooms of one name differ */
	uint8_t name_len;
	char name[RR_ROOM_NAME_MAX + 1];
};

struct rr_room_table {
	struct rr_room **buckets;
	uint32_t nbuckets, count;
};

uint64_t rr_room_hash(const char *name, size_t n);

int rr_room_table_init(struct rr_room_table *t);
void rr_room_table_free(struct rr_core *core, struct rr_room_table *t);

/* Find or create the room; NULL when out of memory. */
struct rr_room *rr_room_get(struct rr_core *core, uint8_t kind, const char *name, size_t n);
/* Add c; -ENOSPC when the room is at --max-room-size, -ENOMEM. */
int rr_room_join(struct rr_core *core, struct rr_room *r, struct rr_conn *c);
/* Remove c from its room (no-op if none); an empty room is freed. */
void rr_room_leave(struct rr_core *core, struct rr_conn *c);
/* Free r if it has no members. */
void rr_room_release_if_empty(struct rr_core *core, struct rr_room *r);
/* Queue f on every member but except (may be NULL). */
void rr_room_broadcast_frame(struct rr_core *core, struct rr_room *r, struct rr_frame *f,
			     struct rr_conn *except);

#endif
