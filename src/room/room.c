/* Rooms of one core: see room.h. */
#include "room/room.h"
#include "conn/conn.h"
#include "core/assert.h"
#include "core/hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ROOM_BUCKETS_INIT 1024

struct rr_room_table {
	struct rr_room **buckets;
	uint32_t nbuckets, count;
};

static struct rr_room_table *table(struct rr_core *core)
{
	return core->layer[RR_LAYER_ROOM];
}

static void room_free(struct rr_core *core, struct rr_room *r)
{
	if (r->ops)
		r->ops->free(core, r);
	free(r->members);
	free(r);
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

struct rr_room *rr_room_find(struct rr_core *core, uint8_t kind, const char *name, size_t n)
{
	struct rr_room_table *t = table(core);
	uint64_t h = rr_hash(name, n) ^ kind;
	for (struct rr_room *r = t->buckets[h & (t->nbuckets - 1)]; r; r = r->next) {
		if (r->hash == h && r->kind == kind && r->name_len == n &&
		    memcmp(r->name, name, n) == 0)
			return r;
	}
	return NULL;
}

void rr_room_each(struct rr_core *core, void (*fn)(struct rr_room *r, void *arg), void *arg)
{
	struct rr_room_table *t = table(core);
	for (uint32_t i = 0; i < t->nbuckets; i++)
		for (struct rr_room *r = t->buckets[i]; r; r = r->next)
			fn(r, arg);
}

struct rr_room *rr_room_get(struct rr_core *core, uint8_t kind, const char *name, size_t n)
{
	struct rr_room_table *t = table(core);
	rr_assert(n >= 1 && n <= RR_ROOM_NAME_MAX);
	struct rr_room *r = rr_room_find(core, kind, name, n);
	if (r)
		return r;
	uint64_t h = rr_hash(name, n) ^ kind;
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
	if (kind != RR_ROOM_KIND_INTERNAL)
		RR_STAT_INC(core, rooms_open);
	return r;
}

void rr_room_release_if_empty(struct rr_core *core, struct rr_room *r)
{
	struct rr_room_table *t = table(core);
	if (r->count > 0 || r->busy > 0)
		return;
	rr_assert(r->walking == 0);
	if (r->ops && !r->ops->empty(core, r))
		return; /* hibernating or busy with storage */
	struct rr_room **pp = &t->buckets[r->hash & (t->nbuckets - 1)];
	while (*pp && *pp != r)
		pp = &(*pp)->next;
	rr_assert(*pp == r);
	*pp = r->next;
	t->count--;
	if (r->kind != RR_ROOM_KIND_INTERNAL)
		RR_STAT_DEC(core, rooms_open);
	room_free(core, r);
}

int rr_room_join(struct rr_core *core, struct rr_room *r, struct rr_conn *c)
{
	rr_assert(c->room == NULL);
	rr_assert(r->walking == 0);
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

void rr_room_detach(struct rr_core *core, struct rr_conn *c)
{
	struct rr_room *r = c->room;
	(void)core;
	if (r == NULL)
		return;
	rr_assert(r->walking == 0); /* closes are deferred: never inside a walk */
	rr_assert(c->member_idx < r->count && r->members[c->member_idx] == c);
	struct rr_conn *last = r->members[--r->count];
	r->members[c->member_idx] = last;
	last->member_idx = c->member_idx;
	c->room = NULL;
	/* shrink a room that emptied out, so a burst doesn't pin memory */
	if (r->cap > 64 && r->count < r->cap / 4) {
		struct rr_conn **m = realloc(r->members, (r->cap / 2) * sizeof(*m));
		if (m) {
			r->members = m;
			r->cap /= 2;
		}
	}
}

uint32_t rr_room_send_all(struct rr_core *core, struct rr_room *r, struct rr_frame *f,
			  const struct rr_conn *except, rr_room_keep_fn *keep, const void *arg)
{
	uint32_t sent = 0, n = r->count;
	uint64_t t0_ns = rr_now_ns(); /* ringroom_broadcast_seconds: the walk */
	RR_STAT_INC(core, broadcasts);
	r->walking++;
	for (uint32_t i = 0; i < n; i++) {
		struct rr_conn *m = r->members[i];
		if (m == except || (keep && !keep(m, arg)))
			continue;
		if (rr_conn_send(core, m, f) == 0)
			sent++;
	}
	rr_assert(r->count == n);
	r->walking--;
	RR_HIST_OBSERVE(core, broadcast_seconds, rr_now_ns() - t0_ns);
	return sent;
}

/* ---- the layer ------------------------------------------------------------ */

static int rooms_init(struct rr_core *core)
{
	struct rr_room_table *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->nbuckets = ROOM_BUCKETS_INIT;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	core->layer[RR_LAYER_ROOM] = t;
	return t->buckets ? 0 : -ENOMEM;
}

static void rooms_fini(struct rr_core *core)
{
	struct rr_room_table *t = table(core);
	if (t == NULL)
		return;
	for (uint32_t i = 0; t->buckets && i < t->nbuckets; i++) {
		struct rr_room *r = t->buckets[i];
		while (r) {
			struct rr_room *next = r->next;
			room_free(core, r);
			r = next;
		}
	}
	free(t->buckets);
	free(t);
	core->layer[RR_LAYER_ROOM] = NULL;
}

static const struct rr_layer room_layer = {
    .name = "rooms",
    .init = rooms_init,
    .fini = rooms_fini,
};

void rr_room_layer_register(void)
{
	rr_reactor_layer(RR_LAYER_ROOM, &room_layer);
}
