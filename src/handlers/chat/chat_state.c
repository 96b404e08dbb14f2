/* The chat handler: config, members, JSON out, rate limit. See chat_int.h. */
#include "chat/chat_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rr_chat_config chat_cfg = {
    .rate_per_s = RR_CHAT_RATE_DEFAULT,
    .rate_burst = RR_CHAT_BURST_DEFAULT,
    .max_content_bytes = RR_CHAT_CONTENT_DEFAULT,
    .heartbeat_ms = RR_CHAT_HEARTBEAT_DEFAULT,
    .initial_messages = RR_CHAT_INITIAL_DEFAULT,
};

void rr_chat_configure(const struct rr_chat_config *cfg)
{
	chat_cfg = *cfg;
	if (chat_cfg.rate_per_s && chat_cfg.rate_burst == 0)
		chat_cfg.rate_burst = chat_cfg.rate_per_s;
	if (chat_cfg.initial_messages > RR_CHAT_INITIAL_MAX)
		chat_cfg.initial_messages = RR_CHAT_INITIAL_MAX;
}

struct chat_room *chat_state(struct rr_room *room)
{
	return rr_room_state(room);
}

static size_t chat_hash_ptr(const void *p, size_t nbuckets)
{
	uint64_t x = (uint64_t)(uintptr_t)p;
	x ^= x >> 17;
	x *= 0x9E3779B97F4A7C15ull;
	return (size_t)(x >> 32) & (nbuckets - 1);
}

struct chat_member *chat_member_find(struct chat_room *st, const struct rr_conn *c)
{
	if (st->nbuckets == 0)
		return NULL;
	for (struct chat_member *m = st->buckets[chat_hash_ptr(c, st->nbuckets)]; m; m = m->next)
		if (m->conn == c)
			return m;
	return NULL;
}

static int chat_member_table_grow(struct chat_room *st)
{
	size_t n = st->nbuckets ? st->nbuckets * 2 : 16;
	struct chat_member **b = calloc(n, sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < st->nbuckets; i++) {
		struct chat_member *m = st->buckets[i];
		while (m) {
			struct chat_member *next = m->next;
			size_t h = chat_hash_ptr(m->conn, n);
			m->next = b[h];
			b[h] = m;
			m = next;
		}
	}
	free(st->buckets);
	st->buckets = b;
	st->nbuckets = n;
	return 0;
}

int chat_member_insert(struct chat_room *st, struct chat_member *m)
{
	if (st->nmembers >= st->nbuckets) {
		int rc = chat_member_table_grow(st);
		if (rc < 0 && st->nbuckets == 0)
			return rc; /* a full table still works, only slower */
	}
	size_t h = chat_hash_ptr(m->conn, st->nbuckets);
	m->next = st->buckets[h];
	st->buckets[h] = m;
	st->nmembers++;
	return 0;
}

void chat_member_unlink(struct chat_room *st, struct chat_member *m)
{
	struct chat_member **pp = &st->buckets[chat_hash_ptr(m->conn, st->nbuckets)];
	while (*pp && *pp != m)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = m->next;
		st->nmembers--;
	}
}

void chat_member_free(struct chat_member *m)
{
	free(m->user_id);
	free(m->user_name);
	free(m);
}

/* m leaves the table; it is freed now or by its last completion. */
void chat_member_leave(struct chat_room *st, struct chat_member *m)
{
	chat_member_unlink(st, m);
	m->gone = true;
	m->conn = NULL;
	m->sync = NULL;
	if (m->refs == 0)
		chat_member_free(m);
}

/* A completion is done with m (taken with m->refs++). */
void chat_member_put(struct chat_member *m)
{
	if (--m->refs == 0 && m->gone)
		chat_member_free(m);
}

/* ---- JSON out ------------------------------------------------------------- */


void chat_buf_add(struct chat_buf *b, const void *data, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void chat_buf_str(struct chat_buf *b, const char *s)
{
	chat_buf_add(b, s, strlen(s));
}

/* Add the JSON text of v (compact). */
void chat_buf_json(struct chat_buf *b, const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (s == NULL) {
		b->failed = true;
		return;
	}
	chat_buf_str(b, s);
	free(s);
}

/* A stored message is the protocol's message object itself, id first
 * ({"id":N,"userId":...}, the form src/chat/chat_json.h documents), so
 * frames built from the log are concatenations: nothing is re-parsed. */
bool chat_stored_ok(const void *data, size_t len)
{
	const char *s = data;
	return len > 2 && s[0] == '{' && s[len - 1] == '}';
}

void chat_buf_message(struct chat_buf *b, const void *data, size_t len)
{
	chat_buf_add(b, data, len);
}

/* {"type":"message","message":{...}} */
void chat_buf_messages(struct chat_buf *b, const struct rr_log_entry *e, size_t n,
		       uint64_t max_id)
{
	bool first = true;
	for (size_t i = 0; i < n; i++) {
		if (e[i].id > max_id || !chat_stored_ok(e[i].data, e[i].len))
			continue;
		if (!first)
			chat_buf_str(b, ",");
		chat_buf_message(b, e[i].data, e[i].len);
		first = false;
	}
}

void chat_buf_message_frame(struct chat_buf *b, const void *data, size_t len)
{
	chat_buf_str(b, "{\"type\":\"message\",\"message\":");
	chat_buf_message(b, data, len);
	chat_buf_str(b, "}");
}

int chat_send_obj(struct rr_conn *c, json_t *obj, bool now)
{
	int rc = -ENOMEM;
	if (obj == NULL)
		return rc;
	char *s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (s == NULL)
		return rc;
	rc = now ? rr_member_send_now(c, RR_TEXT, s, strlen(s))
		 : rr_member_send(c, RR_TEXT, s, strlen(s));
	free(s);
	return rc;
}

int chat_broadcast_obj(struct rr_room *room, json_t *obj, struct rr_conn *except)
{
	int rc = -ENOMEM;
	if (obj == NULL)
		return rc;
	char *s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (s == NULL)
		return rc;
	rc = rr_room_broadcast(room, RR_TEXT, s, strlen(s), except);
	free(s);
	return rc;
}

/* {"type":"error","code":...,"message":...[,"requestId":...]}; the
 * requestId (when the request had a valid one) lets a client match it. */
void chat_send_error(struct rr_conn *c, const char *code, const char *msg,
			    json_t *request_id)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", msg);
	if (o && request_id)
		json_object_set(o, "requestId", request_id);
	chat_send_obj(c, o, false);
}

json_t *chat_perms_json(bool r, bool w)
{
	json_t *a = json_array();
	if (a && r)
		json_array_append_new(a, json_string("read"));
	if (a && w)
		json_array_append_new(a, json_string("write"));
	return a;
}

/* ---- rate limit ------------------------------------------------------------ */

bool chat_bucket_take(struct chat_member *m, uint64_t now_ms)
{
	if (chat_cfg.rate_per_s == 0)
		return true;
	uint64_t cap = (uint64_t)chat_cfg.rate_burst * 1000;
	if (now_ms > m->refill_ms) {
		uint64_t el = now_ms - m->refill_ms;
		if (el > CHAT_BUCKET_ELAPSED_MAX)
			el = CHAT_BUCKET_ELAPSED_MAX;
		m->tokens_milli += el * chat_cfg.rate_per_s;
		if (m->tokens_milli > cap)
			m->tokens_milli = cap;
	}
	m->refill_ms = now_ms; /* also after the wall clock stepped back */
	if (m->tokens_milli < 1000)
		return false;
	m->tokens_milli -= 1000;
	return true;
}


/* ---- users of other nodes (cluster mode; chat_nodes.c fills st->remote) ---- */

bool chat_user_remote(const struct chat_room *st, const char *uid)
{
	const char *node;
	json_t *users;
	json_object_foreach((json_t *)st->remote, node, users)
	{
		if (json_object_get(users, uid))
			return true;
	}
	return false;
}

bool chat_user_online(const struct chat_room *st, const char *uid)
{
	return json_object_get(st->users, uid) != NULL || chat_user_remote(st, uid);
}

size_t chat_online_each(struct chat_room *st, chat_online_fn *fn, void *arg)
{
	const char *uid;
	json_t *u;
	bool more = true;
	json_object_foreach(st->users, uid, u)
	{
		if (!(more = fn(uid, json_object_get(u, "username"), arg)))
			break;
	}
	size_t n = json_object_size(st->users);
	if (st->remote == NULL || json_object_size(st->remote) == 0)
		return n; /* this node's users only: the count is the table's size */
	/* each other user once: skip those of this node and of a node before */
	void *it = json_object_iter(st->remote);
	for (; it; it = json_object_iter_next(st->remote, it)) {
		json_t *users = json_object_iter_value(it);
		json_object_foreach(users, uid, u)
		{
			if (json_object_get(st->users, uid))
				continue;
			bool seen = false;
			void *jt = json_object_iter(st->remote);
			for (; jt != it && !seen; jt = json_object_iter_next(st->remote, jt))
				seen = json_object_get(json_object_iter_value(jt), uid) != NULL;
			if (seen)
				continue;
			if (more)
				more = fn(uid, u, arg);
			n++;
		}
	}
	return n;
}

unsigned chat_kick_local(struct chat_room *st, const char *user_id)
{
	unsigned closed = 0;
	for (size_t i = 0; i < st->nbuckets; i++) {
		for (struct chat_member *m = st->buckets[i]; m; m = m->next) {
			if (m->gone || m->conn == NULL || strcmp(m->user_id, user_id) != 0)
				continue;
			rr_member_close(m->conn, 1008, "removed by the server");
			closed++;
		}
	}
	return closed;
}
