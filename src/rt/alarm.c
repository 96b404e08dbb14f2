/*
 * Room alarms (rr_alarm_set): persisted, so they fire after a restart.
 */
#include "rt/rt.h"
#include "core/bytes.h"
#include "core/log.h"
#include "core/time.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ALARM_PAYLOAD_MAX 4096
#define ALARM_BACKOFF_MAX_MS (5 * 60 * 1000)
#define ALARM_KEY_MAX (8 + 8 + 1 + RR_ROOM_NAME_MAX)

struct alarm {
	struct rr_timer t;
	struct alarm *next;
	uint64_t id, at_ms;
	uint32_t attempts;
	uint8_t route;
	uint8_t name_len;
	char name[RR_ROOM_NAME_MAX + 1];
	uint32_t len;
	uint8_t payload[];
};

/*
 * DESIGN: every alarm is one key in a broker-wide index kept in room storage
 * under the pseudo-room "alarms:index": big-endian due time, id, route and
 * room name, with the payload as the value. Sorting by due time lets a core
 * that starts list them in order; each core takes the alarms of the rooms
 * it is home to and arms them on its timer wheel, so an alarm that came due
 * while the broker was down fires right after the restart. The key is
 * deleted only after the handler's alarm() returned 0: at least once.
 */

static __thread struct alarm *tl_alarms; /* armed on this core */
static __thread struct rr_room *tl_index;

static const struct rr_handler index_handler = {
    .abi = RR_HANDLER_ABI,
    .name = "alarms",
};

static size_t alarm_key(const struct alarm *a, uint8_t *k)
{
	rr_put_be64(k, a->at_ms);
	rr_put_be64(k + 8, a->id);
	k[16] = a->route;
	memcpy(k + 17, a->name, a->name_len);
	return 17u + a->name_len;
}

static struct rr_room *index_room(struct rr_core *core)
{
	if (tl_index)
		return tl_index;
	struct rr_room *r = rr_rt_room_get(core, &index_handler, RR_ROOM_KIND_INTERNAL, "index", 5);
	if (r == NULL)
		return NULL;
	rt_of(r)->pinned = true;
	rt_of(r)->load = RR_LOAD_READY;
	tl_index = r;
	return r;
}

static void alarm_fire(struct rr_timer *t, uint64_t now_ms);

static void alarm_arm(struct rr_core *core, struct alarm *a, uint64_t delay_ms)
{
	rr_timer_init(&a->t, alarm_fire);
	rr_timer_set(&core->wheel, &a->t, core->now_ms + delay_ms);
	a->next = tl_alarms;
	tl_alarms = a;
}

static void alarm_unlink(struct alarm *a)
{
	struct alarm **pp = &tl_alarms;
	while (*pp && *pp != a)
		pp = &(*pp)->next;
	if (*pp)
		*pp = a->next;
	a->next = NULL;
}

static void index_delete(struct rr_core *core, const struct alarm *a)
{
	uint8_t k[ALARM_KEY_MAX];
	struct rr_room *ix = index_room(core);
	if (ix == NULL ||
	    rr_rt_kv_op(ix, RR_STORE_KV_DEL, k, alarm_key(a, k), NULL, 0, NULL, NULL) < 0)
		rr_warn("alarm %llu: index key not deleted (storage busy); it may fire again",
			(unsigned long long)a->id);
}

/* Run a due alarm in its (ready) room. */
static void alarm_run(struct rr_core *core, struct rr_room *r, struct alarm *a)
{
	const struct rr_handler *h = rt_of(r)->h;
	r->busy++; /* what alarm() closes leaves in the settle step */
	int rc = h->alarm ? h->alarm(r, a->id, a->payload, a->len) : 0;
	r->busy--;
	if (rc == 0) {
		index_delete(core, a);
		free(a);
	} else {
		a->attempts++;
		uint64_t backoff = 1000ull << (a->attempts < 20 ? a->attempts - 1 : 19);
		if (backoff > ALARM_BACKOFF_MAX_MS)
			backoff = ALARM_BACKOFF_MAX_MS;
		rr_info("room '%s': alarm %llu failed (%d), retry %u in %llu ms", r->name,
			(unsigned long long)a->id, rc, a->attempts, (unsigned long long)backoff);
		alarm_arm(core, a, backoff);
	}
	if (r->count == 0)
		rr_room_release_if_empty(core, r);
}

static void alarm_fire(struct rr_timer *t, uint64_t now_ms)
{
	struct alarm *a = (struct alarm *)t;
	struct rr_core *core = rr_core_current();
	const struct rr_handler *h = rr_handler_for_route(a->route);
	(void)now_ms;
	alarm_unlink(a);
	if (h == NULL) {
		rr_warn("alarm %llu: no handler serves route %u any more; dropped",
			(unsigned long long)a->id, a->route);
		index_delete(core, a);
		free(a);
		return;
	}
	struct rr_room *r = rr_rt_room_get(core, h, a->route, a->name, a->name_len);
	if (r == NULL) {
		alarm_arm(core, a, 1000); /* out of memory: try again soon */
		return;
	}
	if (rt_of(r)->load == RR_LOAD_READY) {
		alarm_run(core, r, a);
		return;
	}
	a->next = rt_of(r)->pending_alarms;
	rt_of(r)->pending_alarms = a;
	rr_rt_room_wake(core, r);
}

static void alarms_room_ready(struct rr_core *core, struct rr_room *r)
{
	struct alarm *a = rt_of(r)->pending_alarms;
	rt_of(r)->pending_alarms = NULL;
	while (a) {
		struct alarm *next = a->next;
		a->next = NULL;
		if (rt_of(r)->load == RR_LOAD_READY)
			alarm_run(core, r, a);
		else
			alarm_arm(core, a, 1000); /* the room failed to load: retry */
		a = next;
	}
}

int rr_alarm_set(struct rr_room *room, uint64_t at_ms, const void *payload, size_t len,
		 uint64_t *id_out)
{
	struct rr_core *core = rr_core_current();
	if (rt_of(room) == NULL || room->kind == RR_ROOM_KIND_INTERNAL)
		return -EINVAL;
	if (len > ALARM_PAYLOAD_MAX)
		return -E2BIG;
	struct rr_room *ix = index_room(core);
	if (ix == NULL || rr_handler_cfg.store == NULL)
		return -ENOSYS;
	struct alarm *a = calloc(1, sizeof(*a) + len);
	if (a == NULL)
		return -ENOMEM;
	rr_rt_random((uint8_t *)&a->id, sizeof(a->id));
	a->id &= (UINT64_C(1) << 53) - 1; /* exact in a JSON number */
	a->at_ms = at_ms;
	a->route = room->kind;
	a->name_len = room->name_len;
	memcpy(a->name, room->name, room->name_len);
	a->len = (uint32_t)len;
	if (len)
		memcpy(a->payload, payload, len);
	uint8_t k[ALARM_KEY_MAX];
	int rc = rr_rt_kv_op(ix, RR_STORE_KV_PUT, k, alarm_key(a, k), payload, len, NULL, NULL);
	if (rc < 0) {
		free(a);
		return rc;
	}
	uint64_t wall = rr_wall_ms();
	alarm_arm(core, a, at_ms > wall ? at_ms - wall : 0);
	if (id_out)
		*id_out = a->id;
	return 0;
}

int rr_alarm_cancel(struct rr_room *room, uint64_t id)
{
	struct rr_core *core = rr_core_current();
	struct alarm **lists[2] = {&tl_alarms, rt_of(room) ? &rt_of(room)->pending_alarms : NULL};
	for (int l = 0; l < 2; l++) {
		if (lists[l] == NULL)
			continue;
		for (struct alarm **pp = lists[l]; *pp; pp = &(*pp)->next) {
			struct alarm *a = *pp;
			if (a->id != id || a->name_len != room->name_len ||
			    memcmp(a->name, room->name, a->name_len) != 0)
				continue;
			*pp = a->next;
			rr_timer_cancel(&core->wheel, &a->t);
			index_delete(core, a);
			free(a);
			return 0;
		}
	}
	return -ENOENT;
}

static void alarms_listed(struct rr_core *core, struct sreq *s);

static int alarms_list_page(struct rr_core *core, const uint8_t *after, size_t alen)
{
	struct rr_room *ix = index_room(core);
	if (ix == NULL)
		return -ENOMEM;
	struct sreq *s = rr_rt_sreq_new(core, ix, RR_STORE_KV_LIST, SR_ALARM_LIST, alen);
	if (s == NULL)
		return -ENOMEM;
	if (alen) {
		memcpy(s->data + rt_of(ix)->store_name_len, after, alen);
		s->req.after = s->data + rt_of(ix)->store_name_len;
		s->req.after_len = (uint32_t)alen;
	}
	s->req.key = s->data; /* empty prefix */
	s->req.key_len = 0;
	s->req.limit = 1000;
	s->done = alarms_listed;
	return rr_rt_sreq_submit(core, s);
}

static void alarms_listed(struct rr_core *core, struct sreq *s)
{
	const struct rr_store_req *req = &s->req;
	uint64_t wall = rr_wall_ms();
	unsigned armed = 0;
	if (req->res < 0) {
		rr_err("alarms: listing the index failed: %s", strerror(-req->res));
		return;
	}
	for (uint32_t i = 0; i < req->out.n_items; i++) {
		const struct rr_store_item *it = &req->out.items[i];
		if (it->key_len < 18 || it->key_len > ALARM_KEY_MAX ||
		    it->val_len > ALARM_PAYLOAD_MAX)
			continue;
		const char *name = (const char *)it->key + 17;
		size_t nlen = it->key_len - 17;
		if (rr_broker_home(core->broker, name, nlen) != core->id)
			continue;
		struct alarm *a = calloc(1, sizeof(*a) + it->val_len);
		if (a == NULL)
			break;
		a->at_ms = rr_get_be64(it->key);
		a->id = rr_get_be64(it->key + 8);
		a->route = it->key[16];
		a->name_len = (uint8_t)nlen;
		memcpy(a->name, name, nlen);
		a->len = it->val_len;
		memcpy(a->payload, it->val, it->val_len);
		alarm_arm(core, a, a->at_ms > wall ? a->at_ms - wall : 0);
		armed++;
	}
	if (armed)
		rr_info("alarms: %u restored from storage", armed);
	if (req->out.more && req->out.n_items) {
		const struct rr_store_item *last = &req->out.items[req->out.n_items - 1];
		alarms_list_page(core, last->key, last->key_len);
	}
}

void rr_rt_alarms_start(struct rr_core *core)
{
	if (rr_handler_cfg.store && alarms_list_page(core, NULL, 0) < 0)
		rr_err("alarms: can't list the index; stored alarms won't fire until restart");
}

void rr_rt_alarms_stop(struct rr_core *core)
{
	while (tl_alarms) {
		struct alarm *a = tl_alarms;
		tl_alarms = a->next;
		rr_timer_cancel(&core->wheel, &a->t);
		free(a);
	}
	if (tl_index) {
		rt_of(tl_index)->pinned = false;
		tl_index = NULL;
	}
}

static void alarms_free(struct alarm *a)
{
	while (a) {
		struct alarm *next = a->next;
		free(a);
		a = next;
	}
}

void rr_rt_alarms_register(void)
{
	rr_rt_alarm_hooks.room_ready = alarms_room_ready;
	rr_rt_alarm_hooks.free_pending = alarms_free;
}
