/* Rooms of one core: see room.h. */
#include "room/room.h"
#include "conn/conn.h"
#include "core/assert.h"
#include "reactor/loop.h"
#include "room/handler.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ROOM_BUCKETS_INIT 1024

uint64_t rr_room_hash(const char *name, size_t n)
{
	/* FNV-1a: stable across runs and processes, so a room's home core is
	 * the same for every node and restart (needed for consistent hashing
	 * behind a load balancer). */
	uint64_t h = UINT64_C(14695981039346656037);
	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)name[i];
		h *= UINT64_C(1099511628211);
	}
	return h;
}

unsigned rr_room_home(const struct rr_broker *b, const char *name, size_t n)
{
	return (unsigned)(rr_room_hash(name, n) % b->ncores);
}

int rr_room_table_init(struct rr_room_table *t)
{
	t->nbuckets = ROOM_BUCKETS_INIT;
	t->count = 0;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	return t->buckets ? 0 : -ENOMEM;
}

static void room_free(struct rr_core *core, struct rr_room *r)
{
	if (r->rt)
		rr_handler_room_free(core, r->rt, r);
	free(r->members);
	free(r);
}

void rr_room_table_free(struct rr_core *core, struct rr_room_table *t)
{
	for (uint32_t i = 0; i < t->nbuckets; i++) {
		struct rr_room *r = t->buckets[i];
		while (r) {
			struct rr_room *next = r->next;
			room_free(core, r);
			r = next;
		}
	}
	free(t->buckets);
	t->buckets = NULL;
}

static void table_grow(struct rr_room_table *t)
{
	uint32_t n = t->nbuckets * 2;
	struct rr_room **b = calloc(n, sizeof(*b));
	if (b == NULL)
		return; /* keep the longer chains; still correct */
	for (uint32_t i = 0; i < t->nbuckets; i++) {
		struct rr_room *r = t->buckets[i];
		while (r) {
			struct rr_room *next = r->next;
			uint32_t k = (uint32_t)(r->hash & (n - 1));
			r->next = b[k];
			b[k] = r;
			r = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

struct rr_room *rr_room_get(struct rr_core *core, uint8_t kind, const char *name, size_t n)
{
	struct rr_room_table *t = core->rooms;
	rr_assert(n >= 1 && n <= RR_ROOM_NAME_MAX);
	uint64_t h = rr_room_hash(name, n) ^ kind;
	struct rr_room *r = t->buckets[h & (t->nbuckets - 1)];

	for (; r; r = r->next) {
		if (r->hash == h && r->kind == kind && r->name_len == n &&
		    memcmp(r->name, name, n) == 0)
			return r;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->hash = h;
	r->kind = kind;
	r->name_len = (uint8_t)n;
	memcpy(r->name, name, n);
	r->name[n] = '\0';
	if (t->count + 1 > t->nbuckets)
		table_grow(t);
	uint32_t k = (uint32_t)(h & (t->nbuckets - 1));
	r->next = t->buckets[k];
	t->buckets[k] = r;
	t->count++;
	RR_STAT_INC(core, rooms_open);
	return r;
}

void rr_room_release_if_empty(struct rr_core *core, struct rr_room *r)
{
	struct rr_room_table *t = core->rooms;
	if (r->count > 0 || r->busy > 0)
		return;
	if (r->rt && !rr_handler_room_empty(core, r))
		return; /* hibernating or busy with storage */
	struct rr_room **pp = &t->buckets[r->hash & (t->nbuckets - 1)];
	while (*pp && *pp != r)
		pp = &(*pp)->next;
	rr_assert(*pp == r);
	*pp = r->next;
	t->count--;
	RR_STAT_DEC(core, rooms_open);
	room_free(core, r);
}

int rr_room_join(struct rr_core *core, struct rr_room *r, struct rr_conn *c)
{
	rr_assert(c->room == NULL);
	if (r->count >= core->broker->cfg.max_room_size)
		return -ENOSPC;
	if (r->count == r->cap) {
		uint32_t cap = r->cap ? r->cap * 2 : 4;
		struct rr_conn **m = realloc(r->members, cap * sizeof(*m));
		if (m == NULL)
			return -ENOMEM;
		r->members = m;
		r->cap = cap;
	}
	c->room = r;
	c->member_idx = r->count;
	r->members[r->count++] = c;
	return 0;
}

void rr_room_leave(struct rr_core *core, struct rr_conn *c)
{
	struct rr_room *r = c->room;
	if (r == NULL)
		return;
	rr_assert(c->member_idx < r->count && r->members[c->member_idx] == c);
	struct rr_conn *last = r->members[--r->count];
	r->members[c->member_idx] = last;
	last->member_idx = c->member_idx;
	c->room = NULL;
	/* shrink a room that emptied out, so a burst doesn't pin memory */
	if (r->count == 0) {
		rr_room_release_if_empty(core, r);
	} else if (r->cap > 64 && r->count < r->cap / 4) {
		struct rr_conn **m = realloc(r->members, (r->cap / 2) * sizeof(*m));
		if (m) {
			r->members = m;
			r->cap /= 2;
		}
	}
}

void rr_room_broadcast_frame(struct rr_core *core, struct rr_room *r, struct rr_frame *f,
			     struct rr_conn *except)
{
	RR_STAT_INC(core, broadcasts);
	/* Backwards: a member dropped as a slow consumer leaves the room
	 * during the loop, and swap-removal only moves an already visited
	 * member into its place. `busy` keeps the room alive meanwhile. */
	uint32_t i = r->count;
	r->busy++;
	while (i > 0) {
		i--;
		if (i >= r->count)
			continue;
		struct rr_conn *m = r->members[i];
		if (m == except)
			continue;
		rr_conn_send(core, m, f);
	}
	r->busy--;
	rr_room_release_if_empty(core, r);
}
