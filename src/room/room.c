/* Rooms of one core: see room.h. */
#include "room/room.h"
#include "conn/conn.h"
#include "core/assert.h"
#include "core/hash.h"
#include "core/limits.h"

#include <errno.h>
#include <pthread.h>
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

/* ---- which rooms are spread: one set for the broker -------------------------
 *
 * Each home marks and unmarks its own rooms; the gate of every core asks
 * once per upgrade for a room homed elsewhere. A mutex is enough for that.
 * Keys are the rooms' hashes (name and kind); a collision only makes a new
 * member stay on its core for a room that isn't spread, which works the
 * same, so no name is kept. Open addressing: 0 is empty, 1 a tombstone.
 */
static struct {
	pthread_mutex_t lock;
	uint64_t *keys;
	uint32_t cap, used; /* used counts tombstones too */
} spread_set = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t spread_key(uint64_t h)
{
	return h < 2 ? h + 2 : h;
}

static bool spread_insert(uint64_t k)
{
	if ((spread_set.used + 1) * 2 > spread_set.cap) {
		uint32_t cap = spread_set.cap ? spread_set.cap * 2 : 64;
		uint64_t *keys = calloc(cap, sizeof(*keys));
		if (keys == NULL)
			return false;
		uint32_t used = 0;
		for (uint32_t i = 0; i < spread_set.cap; i++) {
			uint64_t x = spread_set.keys[i];
			if (x < 2)
				continue;
			uint32_t j = (uint32_t)(x & (cap - 1));
			while (keys[j])
				j = (j + 1) & (cap - 1);
			keys[j] = x;
			used++;
		}
		free(spread_set.keys);
		spread_set.keys = keys;
		spread_set.cap = cap;
		spread_set.used = used;
	}
	uint32_t j = (uint32_t)(k & (spread_set.cap - 1));
	while (spread_set.keys[j] >= 2)
		j = (j + 1) & (spread_set.cap - 1);
	if (spread_set.keys[j] == 0)
		spread_set.used++;
	spread_set.keys[j] = k;
	return true;
}

static uint32_t spread_find(uint64_t k)
{
	if (spread_set.cap == 0)
		return UINT32_MAX;
	uint32_t j = (uint32_t)(k & (spread_set.cap - 1));
	for (uint32_t n = 0; n < spread_set.cap && spread_set.keys[j] != 0; n++) {
		if (spread_set.keys[j] == k)
			return j;
		j = (j + 1) & (spread_set.cap - 1);
	}
	return UINT32_MAX;
}

static void spread_mark(struct rr_core *core, struct rr_room *r, bool on)
{
	uint64_t k = spread_key(r->hash);
	if (r->spread == on)
		return;
	pthread_mutex_lock(&spread_set.lock);
	if (on) {
		r->spread = spread_insert(k);
	} else {
		/* two rooms of one hash: the set keeps one key per spread room */
		uint32_t j = spread_find(k);
		if (j != UINT32_MAX)
			spread_set.keys[j] = 1;
		r->spread = false;
	}
	pthread_mutex_unlock(&spread_set.lock);
	if (r->spread == on) {
		if (on)
			RR_STAT_INC(core, spread_rooms);
		else
			RR_STAT_DEC(core, spread_rooms);
	}
}

bool rr_room_is_spread(unsigned kind, const char *name, size_t n)
{
	uint64_t k = spread_key(rr_hash(name, n) ^ kind);
	pthread_mutex_lock(&spread_set.lock);
	bool on = spread_find(k) != UINT32_MAX;
	pthread_mutex_unlock(&spread_set.lock);
	return on;
}

static void room_free(struct rr_core *core, struct rr_room *r)
{
	spread_mark(core, r, false);
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

static struct rr_room *room_get(struct rr_core *core, uint8_t kind, const char *name, size_t n,
				bool shard)
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
	r->shard = shard;
	if (t->count + 1 > t->nbuckets)
		table_grow(t);
	uint32_t k = (uint32_t)(h & (t->nbuckets - 1));
	r->next = t->buckets[k];
	t->buckets[k] = r;
	t->count++;
	if (kind != RR_ROOM_KIND_INTERNAL && !shard)
		RR_STAT_INC(core, rooms_open);
	return r;
}

struct rr_room *rr_room_get(struct rr_core *core, uint8_t kind, const char *name, size_t n)
{
	return room_get(core, kind, name, n, false);
}

struct rr_room *rr_room_get_shard(struct rr_core *core, uint8_t kind, const char *name, size_t n)
{
	return room_get(core, kind, name, n, true);
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
	if (r->kind != RR_ROOM_KIND_INTERNAL && !r->shard)
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
	uint32_t at = core->broker->cfg.spread_at;
	if (at && r->count >= at && !r->shard && !r->spread && r->kind != RR_ROOM_KIND_INTERNAL &&
	    core->broker->ncores > 1)
		spread_mark(core, r, true);
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
	/* shrink back under half the mark: new members go to the home again
	 * (those on other cores stay there until they leave) */
	if (r->spread && (uint64_t)r->count * 2 < core->broker->cfg.spread_at)
		spread_mark(core, r, false);
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
	uint64_t t0_ns = rr_now_ns();			 /* ringroom_broadcast_seconds: the walk */
	uint64_t cores[(RR_CORES_CEIL + 63) / 64] = {0}; /* with stubs to pass f to */
	bool remote = false;
	RR_STAT_INC(core, broadcasts);
	r->walking++;
	for (uint32_t i = 0; i < n; i++) {
		struct rr_conn *m = r->members[i];
		if (m == except)
			continue;
		if (rr_unlikely(m->flags & RR_CF_STUB) && keep == NULL) {
			/* every member there but except: once for the core */
			if (m->state == RR_CONN_OPEN) {
				unsigned d = rr_conn_stub_core(m);
				cores[d / 64] |= UINT64_C(1) << (d % 64);
				remote = true;
				sent++;
			}
			continue;
		}
		if (keep && !keep(m, arg))
			continue;
		if (rr_conn_send(core, m, f) == 0)
			sent++;
	}
	rr_assert(r->count == n);
	r->walking--;
	for (unsigned w = 0; remote && w < sizeof(cores) / sizeof(cores[0]); w++) {
		for (uint64_t bits = cores[w]; bits; bits &= bits - 1) {
			unsigned d = w * 64 + (unsigned)__builtin_ctzll(bits);
			rr_conn_remote_all(core, d, r->kind, r->name, r->name_len, f, except);
		}
	}
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
