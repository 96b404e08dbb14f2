/*
 * The chat room handler (/chat/{room}): protocol.md's JSON room protocol on
 * top of the public handler API only (include/ringroom/handler.h) and
 * jansson.
 *
 * DESIGN
 *
 * Broadcast once durable. A `message` is appended to the room's log and
 * broadcast (to everyone, the sender included) and acknowledged only when
 * its append completes. The API would allow broadcasting at once with the id
 * rr_log_append() hands out, but an id seen live and then lost (a crash
 * before the commit, or a failed batch, after which the runtime renumbers
 * from what is stored) would later name a different message, and a client
 * resuming from it would skip that one. So every id a client ever sees is in
 * the log. Appends complete in order, but the handler does not rely on it:
 * they wait in a FIFO and are broadcast from its head only.
 *
 * No gap, no duplicate. st->last_bcast is the newest id broadcast. A member
 * that needs a replay (since=..., a `sync` request) or an initial_state is
 * put on hold in the same callback that reads last_bcast as its target: every
 * id up to the target was broadcast before the hold (so the member needs it
 * from the log, and it is durable, so the log has it), every later id is
 * broadcast after the hold (so it waits behind it). The replay sends exactly
 * the stored ids in (since, target] with rr_member_send_now(), then
 * `synced`, then releases the hold.
 *
 * Per-member state (identity, permissions, token bucket, the replay in
 * flight) lives in a small hash table in the room state keyed by the
 * connection pointer (valid from open() to close()). Appends and reads in
 * flight hold a reference to it, so a completion finds its member in O(1)
 * (no scan of the room by session id) and sees whether it left; a member
 * that left is freed by its last completion. The attachment (userId,
 * username, perms, joinedAt) is written once per new session: attachment
 * writes are persisted, the bucket is not.
 *
 * Users, not connections, join and leave: user_joined goes out when a
 * user's first connection opens, user_disconnected when its last closes;
 * onlineUsers lists each user once.
 *
 * Choices where protocol.md leaves room (extensions, nothing removed):
 *  - welcome also carries "resumed" and user.perms/joinedAt; on a resumed
 *    session "resume" is null (the client keeps the token it has), and the
 *    identity comes from the attachment (an anonymous user stays the same
 *    user), permissions from this connection's token. A token naming
 *    another user cannot resume the session (1008). A token without "read"
 *    is refused (1008).
 *  - synced.recovered is false when the epoch differs (nothing replayed:
 *    the ids name other messages), when since is ahead of the log (nothing
 *    to replay), or when ids after since are gone (retention): then what is
 *    still stored is replayed. lastId is where the live stream starts.
 *  - A message that cannot be stored gets {"type":"error","code":
 *    "storage_unavailable"} (a sixth code) and is neither broadcast nor
 *    acknowledged; a full storage queue answers rate_limited (retry later).
 *    Errors carry the request's requestId when it had a valid one.
 *  - ack is sent for every stored message, with requestId when given.
 *  - Every client frame but ping costs a token of the per-connection
 *    bucket (message, typing, presence, sync and history all fan out or
 *    read storage); typing needs write permission, like message.
 *  - history answers also carry "hasMore"; initial_state "onlineCount"
 *    (onlineUsers is capped at CHAT_ONLINE_MAX).
 */
#include "chat/chat.h"
#include "chat/chat_json.h" /* the protocol's limits, shared with the JSON layer */

#include "ringroom/handler.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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

static struct rr_chat_config chat_cfg = {
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
	struct chat_member *m;
	uint64_t id;
	int res;
	bool done;
	bool bad_id; /* numbered otherwise than predicted: never shown */
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
};

struct chat_room {
	struct chat_member **buckets;
	size_t nbuckets, nmembers;
	json_t *users; /* userId -> {"username": s, "conns": n} */
	struct chat_append *ap_head, *ap_tail;
	bool appending; /* inside rr_log_append(): completions wait */
	bool positioned;
	uint64_t last_bcast;
	struct chat_sync *reads;
};

static struct chat_room *chat_state(struct rr_room *room)
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

static struct chat_member *chat_member_find(struct chat_room *st, const struct rr_conn *c)
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

static int chat_member_insert(struct chat_room *st, struct chat_member *m)
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

static void chat_member_unlink(struct chat_room *st, struct chat_member *m)
{
	struct chat_member **pp = &st->buckets[chat_hash_ptr(m->conn, st->nbuckets)];
	while (*pp && *pp != m)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = m->next;
		st->nmembers--;
	}
}

static void chat_member_free(struct chat_member *m)
{
	free(m->user_id);
	free(m->user_name);
	free(m);
}

/* m leaves the table; it is freed now or by its last completion. */
static void chat_member_leave(struct chat_room *st, struct chat_member *m)
{
	chat_member_unlink(st, m);
	m->gone = true;
	m->conn = NULL;
	m->sync = NULL;
	if (m->refs == 0)
		chat_member_free(m);
}

/* A completion is done with m (taken with m->refs++). */
static void chat_member_put(struct chat_member *m)
{
	if (--m->refs == 0 && m->gone)
		chat_member_free(m);
}

/* ---- JSON out ------------------------------------------------------------- */

/* A growable text buffer for frames spliced from stored JSON (no re-parse). */
struct chat_buf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void chat_buf_add(struct chat_buf *b, const void *data, size_t n)
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

static void chat_buf_str(struct chat_buf *b, const char *s)
{
	chat_buf_add(b, s, strlen(s));
}

/* Add the JSON text of v (compact). */
static void chat_buf_json(struct chat_buf *b, const json_t *v)
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
static bool chat_stored_ok(const void *data, size_t len)
{
	const char *s = data;
	return len > 2 && s[0] == '{' && s[len - 1] == '}';
}

static void chat_buf_message(struct chat_buf *b, const void *data, size_t len)
{
	chat_buf_add(b, data, len);
}

/* {"type":"message","message":{...}} */
static void chat_buf_message_frame(struct chat_buf *b, const void *data, size_t len)
{
	chat_buf_str(b, "{\"type\":\"message\",\"message\":");
	chat_buf_message(b, data, len);
	chat_buf_str(b, "}");
}

static int chat_send_obj(struct rr_conn *c, json_t *obj, bool now)
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

static int chat_broadcast_obj(struct rr_room *room, json_t *obj, struct rr_conn *except)
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
static void chat_send_error(struct rr_conn *c, const char *code, const char *msg,
			    json_t *request_id)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", msg);
	if (o && request_id)
		json_object_set(o, "requestId", request_id);
	chat_send_obj(c, o, false);
}

static json_t *chat_perms_json(bool r, bool w)
{
	json_t *a = json_array();
	if (a && r)
		json_array_append_new(a, json_string("read"));
	if (a && w)
		json_array_append_new(a, json_string("write"));
	return a;
}

/* ---- rate limit ------------------------------------------------------------ */

static bool chat_bucket_take(struct chat_member *m, uint64_t now_ms)
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

/* ---- log reads --------------------------------------------------------------- */

static struct chat_sync *chat_sync_new(struct chat_room *st, struct chat_member *m,
				       enum chat_read_kind kind)
{
	struct chat_sync *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->kind = kind;
	s->m = m;
	m->refs++;
	s->next = st->reads;
	if (st->reads)
		st->reads->prev = s;
	st->reads = s;
	return s;
}

static void chat_sync_free(struct chat_room *st, struct chat_sync *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		st->reads = s->next;
	if (s->next)
		s->next->prev = s->prev;
	chat_member_put(s->m);
	free(s);
}

/* The member's replay or initial state is complete: let the live stream
 * (held since the hold point) through. */
static void chat_member_go_live(struct chat_member *m, uint64_t last_id)
{
	rr_member_set_last_id(m->conn, last_id);
	m->sync = NULL;
	m->live = true;
	rr_member_release(m->conn);
}

static void chat_send_synced(struct chat_member *m, bool recovered, uint64_t last_id)
{
	json_t *o = json_pack("{s:s, s:b, s:I}", "type", "synced", "recovered", recovered, "lastId",
			      (json_int_t)last_id);
	chat_send_obj(m->conn, o, true);
}

static void chat_read_done(struct rr_room *room, void *arg, int res, const struct rr_log_entry *e,
			   size_t n, bool more);

/* Read the next page of a replay. Returns 0 or the error of the read call. */
static int chat_replay_next(struct rr_room *room, struct chat_sync *s)
{
	uint64_t left = s->target - s->after;
	s->limit = left < CHAT_REPLAY_PAGE ? (uint32_t)left : CHAT_REPLAY_PAGE;
	return rr_log_read_after(room, s->after, s->limit, chat_read_done, s);
}

static void chat_replay_page(struct rr_room *room, struct chat_room *st, struct chat_sync *s,
			     struct chat_member *m, int res, const struct rr_log_entry *e, size_t n,
			     bool more)
{
	bool recovered = res == 0;
	uint64_t before = s->after;
	for (size_t i = 0; res == 0 && i < n; i++) {
		if (e[i].id <= s->after)
			continue;
		if (e[i].id > s->target)
			break;
		/* trimmed by retention (rr_log_first_id() is only a hint: it
		 * can lag behind the trimming) */
		if (e[i].id != s->after + 1)
			s->gap = true;
		s->after = e[i].id;
		if (!chat_stored_ok(e[i].data, e[i].len))
			continue; /* not a chat message: nothing to show */
		struct chat_buf b = {0};
		chat_buf_message_frame(&b, e[i].data, e[i].len);
		int rc = b.failed ? -ENOMEM : rr_member_send_now(m->conn, RR_TEXT, b.p, b.len);
		free(b.p);
		if (rc == -EPIPE || rc == -ENOBUFS) {
			/* it is being closed (a replay larger than its queue
			 * cap): it reconnects and replays from where it got */
			m->sync = NULL;
			chat_sync_free(st, s);
			return;
		}
		if (rc < 0)
			s->gap = true; /* one not sent (out of memory) */
	}
	/* a full page: read on even if `more` said otherwise */
	if (n >= s->limit)
		more = true;
	if (s->after == before)
		more = false; /* no progress: never read the same page twice */
	/* Everything up to the target is durable (broadcast only once
	 * stored), so the reads end when they reach it or the log ends. The
	 * reader pulls: the next page is read once it has taken this one. */
	if (res == 0 && more && n > 0 && s->after < s->target) {
		if (rr_member_queued_bytes(m->conn) >= CHAT_REPLAY_LOW_WATER) {
			s->waiting = true;
			rr_member_want_writable(m->conn);
			return;
		}
		if (chat_replay_next(room, s) == 0)
			return;
		recovered = false;
	}
	/* the log ended before the target: the newest ones are gone too */
	if (s->after < s->target || s->gap)
		recovered = false;
	chat_send_synced(m, recovered, s->target);
	chat_member_go_live(m, s->target);
	chat_sync_free(st, s);
}

static void chat_initial_state(struct rr_room *room, struct chat_room *st, struct chat_member *m,
			       const struct rr_log_entry *e, size_t n, uint64_t target)
{
	struct chat_buf b = {0};
	chat_buf_str(&b, "{\"type\":\"initial_state\",\"messages\":[");
	bool first = true;
	for (size_t i = 0; i < n; i++) {
		if (e[i].id > target || !chat_stored_ok(e[i].data, e[i].len))
			continue;
		if (!first)
			chat_buf_str(&b, ",");
		chat_buf_message(&b, e[i].data, e[i].len);
		first = false;
	}
	chat_buf_str(&b, "],\"onlineUsers\":[");
	size_t listed = 0;
	const char *uid;
	json_t *u;
	json_object_foreach(st->users, uid, u)
	{
		if (listed == CHAT_ONLINE_MAX)
			break;
		json_t *o = json_pack("{s:s, s:O}", "userId", uid, "username",
				      json_object_get(u, "username"));
		if (listed)
			chat_buf_str(&b, ",");
		chat_buf_json(&b, o);
		json_decref(o);
		listed++;
	}
	char tail[64];
	int tn =
	    snprintf(tail, sizeof(tail), "],\"onlineCount\":%zu}", json_object_size(st->users));
	chat_buf_add(&b, tail, (size_t)tn);
	if (!b.failed)
		rr_member_send_now(m->conn, RR_TEXT, b.p, b.len);
	free(b.p);
	(void)room;
	chat_member_go_live(m, target);
}

static void chat_history_reply(struct rr_room *room, struct chat_member *m, int res,
			       const struct rr_log_entry *e, size_t n, uint32_t limit)
{
	if (res < 0) {
		chat_send_error(m->conn, "storage_unavailable", "reading the history failed", NULL);
		return;
	}
	struct chat_buf b = {0};
	chat_buf_str(&b, "{\"type\":\"history\",\"messages\":[");
	bool first = true;
	for (size_t i = 0; i < n; i++) {
		if (!chat_stored_ok(e[i].data, e[i].len))
			continue;
		if (!first)
			chat_buf_str(&b, ",");
		chat_buf_message(&b, e[i].data, e[i].len);
		first = false;
	}
	/* older ones may remain when the page is full and its oldest is past
	 * the first retained id */
	bool older = n == limit && e[0].id > rr_log_first_id(room);
	chat_buf_str(&b, older ? "],\"hasMore\":true}" : "],\"hasMore\":false}");
	if (!b.failed)
		rr_member_send(m->conn, RR_TEXT, b.p, b.len);
	free(b.p);
}

static void chat_read_done(struct rr_room *room, void *arg, int res, const struct rr_log_entry *e,
			   size_t n, bool more)
{
	struct chat_room *st = chat_state(room);
	struct chat_sync *s = arg;
	struct chat_member *m = s->m;
	if (m->gone) { /* it left meanwhile */
		chat_sync_free(st, s);
		return;
	}
	switch (s->kind) {
	case CHAT_READ_REPLAY:
		chat_replay_page(room, st, s, m, res, e, n, more);
		return; /* it frees s or reads on */
	case CHAT_READ_INITIAL:
		chat_initial_state(room, st, m, res == 0 ? e : NULL, res == 0 ? n : 0, s->target);
		break;
	case CHAT_READ_HISTORY:
		chat_history_reply(room, m, res, e, n, s->limit);
		break;
	}
	chat_sync_free(st, s);
}

/*
 * Replay (after, last_bcast] to m, whose output the caller has just put on
 * hold (in this same callback: that fixes the target); the caller has
 * checked the epoch. Returns 0 (the replay runs, or is already complete and
 * the hold released) or a negative errno (nothing started; the caller
 * releases the hold).
 */
static int chat_replay_start(struct rr_room *room, struct chat_room *st, struct chat_member *m,
			     uint64_t after)
{
	uint64_t target = st->last_bcast;
	/* ahead of the log (it was reset under the same epoch): nothing to
	 * send. Older than retention: what is still stored is sent, and
	 * synced says recovered:false (the client knows it has a gap). */
	if (after >= target) {
		chat_send_synced(m, after == target, target);
		chat_member_go_live(m, target);
		return 0;
	}
	struct chat_sync *s = chat_sync_new(st, m, CHAT_READ_REPLAY);
	if (s == NULL)
		return -ENOMEM;
	s->after = after;
	s->target = target;
	s->gap = after + 1 < rr_log_first_id(room);
	int rc = chat_replay_next(room, s);
	if (rc < 0) {
		chat_sync_free(st, s);
		return rc;
	}
	m->sync = s;
	m->live = false;
	return 0;
}

/* ---- appends ------------------------------------------------------------------ */

static void chat_append_free(struct chat_append *a)
{
	chat_member_put(a->m);
	free(a->stored);
	if (a->request_id)
		json_decref(a->request_id);
	free(a);
}

/* Broadcast and acknowledge completed appends from the head, in id order. */
static void chat_append_flush(struct rr_room *room, struct chat_room *st)
{
	for (;;) {
		struct chat_append *a = st->ap_head;
		if (a == NULL || !a->done)
			return;
		st->ap_head = a->next;
		if (st->ap_head == NULL)
			st->ap_tail = NULL;
		/* the sender, or (rarely) its session resumed on a new connection */
		struct rr_conn *c =
		    !a->m->gone ? a->m->conn : rr_room_member_by_session(room, a->session);
		if (a->res == 0 && a->bad_id)
			a->res = -EPROTO;
		if (a->res == 0) {
			struct chat_buf b = {0};
			chat_buf_message_frame(&b, a->stored, a->stored_len);
			if (!b.failed)
				rr_room_broadcast(room, RR_TEXT, b.p, b.len, NULL);
			free(b.p);
			if (a->id > st->last_bcast)
				st->last_bcast = a->id;
			if (c) { /* without a requestId the ack still says "durable" */
				json_t *o =
				    json_pack("{s:s, s:I}", "type", "ack", "id", (json_int_t)a->id);
				if (o && a->request_id)
					json_object_set(o, "requestId", a->request_id);
				chat_send_obj(c, o, false);
			}
		} else if (c) {
			/* not stored, not broadcast: the client may send it
			 * again (an extension of protocol.md's error codes) */
			char msg[96];
			snprintf(msg, sizeof(msg), "message not stored: %s", strerror(-a->res));
			chat_send_error(c, "storage_unavailable", msg, a->request_id);
		}
		chat_append_free(a);
	}
}

static void chat_append_done(struct rr_room *room, void *arg, int res, uint64_t id)
{
	struct chat_room *st = chat_state(room);
	struct chat_append *a = arg;
	a->done = true;
	a->res = res;
	if (id)
		a->id = id;
	if (!st->appending)
		chat_append_flush(room, st);
}

/* ---- client frames ---------------------------------------------------------------- */

static bool chat_id_valid(const json_t *v, size_t max)
{
	if (json_is_integer(v))
		return true;
	return json_is_string(v) && json_string_length(v) <= max;
}

/* A non-negative integer field; absent gives dflt. */
static bool chat_get_uint(const json_t *req, const char *key, uint64_t dflt, uint64_t *out)
{
	const json_t *v = json_object_get(req, key);
	if (v == NULL || json_is_null(v)) {
		*out = dflt;
		return true;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

static void chat_on_message(struct rr_room *room, struct chat_room *st, struct chat_member *m,
			    json_t *req, json_t *rid)
{
	if (!m->perm_write) {
		chat_send_error(m->conn, "no_permission", "this user may not write", rid);
		return;
	}
	json_t *content = json_object_get(req, "content");
	if (!json_is_string(content)) {
		chat_send_error(m->conn, "invalid_format", "content must be a string", rid);
		return;
	}
	if (chat_cfg.max_content_bytes &&
	    json_string_length(content) > chat_cfg.max_content_bytes) {
		chat_send_error(m->conn, "too_large", "content is too long", rid);
		return;
	}
	json_t *thread = json_object_get(req, "threadId");
	if (thread && !json_is_null(thread) && !json_is_string(thread)) {
		chat_send_error(m->conn, "invalid_format", "threadId must be a string", rid);
		return;
	}
	if (thread && json_is_string(thread) && json_string_length(thread) > CHAT_THREAD_ID_MAX) {
		chat_send_error(m->conn, "too_large", "threadId is too long", rid);
		return;
	}
	/* rr_log_append() gives the next id, the newest plus one: it goes
	 * into the stored object so the log holds the message as sent */
	uint64_t next_id = rr_log_last_id(room) + 1;
	json_t *stored_obj =
	    json_pack("{s:I, s:s, s:s, s:O, s:I, s:O}", "id", (json_int_t)next_id, "userId",
		      m->user_id, "username", m->user_name, "content", content, "timestamp",
		      (json_int_t)rr_now_wall_ms(), "threadId", thread ? thread : json_null());
	char *stored = stored_obj ? json_dumps(stored_obj, JSON_COMPACT) : NULL;
	json_decref(stored_obj);
	const char *session = rr_member_session(m->conn);
	size_t sl = strlen(session);
	struct chat_append *a = stored ? calloc(1, sizeof(*a) + sl + 1) : NULL;
	if (a == NULL) {
		free(stored);
		chat_send_error(m->conn, "storage_unavailable", "out of memory", rid);
		return;
	}
	memcpy(a->session, session, sl + 1);
	a->stored = stored;
	a->stored_len = strlen(stored);
	a->request_id = rid ? json_incref(rid) : NULL;
	a->m = m;
	m->refs++;
	/* queued before the call: a completion inside it finds it */
	if (st->ap_tail)
		st->ap_tail->next = a;
	else
		st->ap_head = a;
	struct chat_append *prev_tail = st->ap_tail;
	st->ap_tail = a;

	uint64_t id = 0;
	st->appending = true;
	int rc = rr_log_append(room, a->stored, a->stored_len, &id, chat_append_done, a);
	st->appending = false;
	if (rc < 0) {
		/* never appended, so no completion will come: unqueue */
		st->ap_tail = prev_tail;
		if (prev_tail)
			prev_tail->next = NULL;
		else
			st->ap_head = NULL;
		if (rc == -EAGAIN)
			chat_send_error(m->conn, "rate_limited", "storage is busy: retry later",
					rid);
		else
			chat_send_error(m->conn, "storage_unavailable", "message not stored", rid);
		chat_append_free(a);
		return;
	}
	if (a->id == 0)
		a->id = id;
	if (id != next_id) {
		/* the runtime numbered it otherwise: the stored copy names the
		 * wrong id; never show it (the client sees an error) */
		a->bad_id = true;
	}
	chat_append_flush(room, st);
}

static void chat_on_typing(struct rr_room *room, struct chat_member *m, json_t *req, json_t *rid)
{
	json_t *t = json_object_get(req, "isTyping");
	if (!json_is_boolean(t)) {
		chat_send_error(m->conn, "invalid_format", "isTyping must be a boolean", rid);
		return;
	}
	/* typing announces a message to come: only writers */
	if (!m->perm_write) {
		chat_send_error(m->conn, "no_permission", "this user may not write", rid);
		return;
	}
	json_t *o = json_pack("{s:s, s:s, s:s, s:O}", "type", "typing", "userId", m->user_id,
			      "username", m->user_name, "isTyping", t);
	chat_broadcast_obj(room, o, m->conn);
}

static void chat_on_presence(struct rr_room *room, struct chat_member *m, json_t *req, json_t *rid)
{
	json_t *s = json_object_get(req, "status");
	if (!json_is_string(s)) {
		chat_send_error(m->conn, "invalid_format", "status must be a string", rid);
		return;
	}
	if (json_string_length(s) > CHAT_STATUS_MAX) {
		chat_send_error(m->conn, "too_large", "status is too long", rid);
		return;
	}
	json_t *o = json_pack("{s:s, s:s, s:s, s:O}", "type", "presence", "userId", m->user_id,
			      "username", m->user_name, "status", s);
	chat_broadcast_obj(room, o, NULL);
}

static void chat_on_sync(struct rr_room *room, struct chat_room *st, struct chat_member *m,
			 json_t *req, json_t *rid)
{
	uint64_t after;
	if (!chat_get_uint(req, "afterMessageId", 0, &after)) {
		chat_send_error(m->conn, "invalid_format", "afterMessageId must be a number", rid);
		return;
	}
	if (m->sync != NULL) {
		chat_send_error(m->conn, "rate_limited", "a sync is already running", rid);
		return;
	}
	rr_member_hold(m->conn);
	if (chat_replay_start(room, st, m, after) < 0) {
		rr_member_release(m->conn);
		chat_send_error(m->conn, "rate_limited", "storage is busy: retry later", rid);
	}
}

static void chat_on_history(struct rr_room *room, struct chat_room *st, struct chat_member *m,
			    json_t *req, json_t *rid)
{
	uint64_t before, limit;
	if (!chat_get_uint(req, "beforeId", 0, &before) ||
	    !chat_get_uint(req, "limit", CHAT_HISTORY_DEFAULT, &limit)) {
		chat_send_error(m->conn, "invalid_format", "beforeId and limit must be numbers",
				rid);
		return;
	}
	if (limit == 0)
		limit = 1;
	if (limit > CHAT_HISTORY_MAX)
		limit = CHAT_HISTORY_MAX;
	/* only what was broadcast: a stored message whose completion has not
	 * run yet is not visible anywhere */
	if (before == 0 || before > st->last_bcast + 1)
		before = st->last_bcast + 1;
	struct chat_sync *s = chat_sync_new(st, m, CHAT_READ_HISTORY);
	if (s == NULL) {
		chat_send_error(m->conn, "storage_unavailable", "out of memory", rid);
		return;
	}
	s->limit = (uint32_t)limit;
	if (rr_log_read_before(room, before, (uint32_t)limit, chat_read_done, s) < 0) {
		chat_sync_free(st, s);
		chat_send_error(m->conn, "rate_limited", "storage is busy: retry later", rid);
	}
}

static void chat_message(struct rr_room *room, struct rr_conn *c, int opcode, void *data,
			 size_t len)
{
	struct chat_room *st = chat_state(room);
	struct chat_member *m = chat_member_find(st, c);
	if (m == NULL)
		return; /* open() refused it; it is being closed */
	if (opcode != RR_TEXT) {
		if (!chat_bucket_take(m, rr_now_wall_ms()))
			chat_send_error(c, "rate_limited", "too many messages: slow down", NULL);
		else
			chat_send_error(c, "invalid_format", "chat frames are JSON text", NULL);
		return;
	}
	/* Longer than the longest legal frame (content escaped at 6 bytes a
	 * byte, plus the other fields): refused unparsed, so one frame of
	 * --max-message-bytes cannot cost a large parse. */
	if (chat_cfg.max_content_bytes &&
	    len > 6 * (size_t)chat_cfg.max_content_bytes + CHAT_FRAME_SLACK) {
		if (!chat_bucket_take(m, rr_now_wall_ms()))
			chat_send_error(c, "rate_limited", "too many messages: slow down", NULL);
		else
			chat_send_error(c, "too_large", "frame too large", NULL);
		return;
	}
	json_error_t jerr;
	json_t *req = json_loadb(data, len, 0, &jerr);
	if (!json_is_object(req)) {
		if (!chat_bucket_take(m, rr_now_wall_ms()))
			chat_send_error(c, "rate_limited", "too many messages: slow down", NULL);
		else
			chat_send_error(c, "invalid_format", "not a JSON object", NULL);
		json_decref(req);
		return;
	}
	json_t *rid = json_object_get(req, "requestId");
	const char *rid_bad = NULL; /* why it is refused (it is not echoed) */
	if (rid && json_is_null(rid)) {
		rid = NULL; /* as if absent */
	} else if (rid && !chat_id_valid(rid, CHAT_REQUEST_ID_MAX)) {
		rid_bad = json_is_string(rid) ? "too_large" : "invalid_format";
		rid = NULL;
	}
	const char *type = json_string_value(json_object_get(req, "type"));
	/* charged after parsing only so the error can carry the requestId:
	 * the parse is cheap next to what the frame would fan out to. A ping
	 * is free, like the heartbeat the auto-response answers: it costs one
	 * small frame to its sender only. */
	bool is_ping = type && strcmp(type, "ping") == 0;
	if (!is_ping && !chat_bucket_take(m, rr_now_wall_ms())) {
		chat_send_error(c, "rate_limited", "too many messages: slow down", rid);
	} else if (type == NULL) {
		chat_send_error(c, "invalid_format", "type must be a string", rid);
	} else if (rid_bad) {
		chat_send_error(c, rid_bad, "requestId must be a short string or a number", NULL);
	} else if (strcmp(type, "message") == 0) {
		chat_on_message(room, st, m, req, rid);
	} else if (strcmp(type, "typing") == 0) {
		chat_on_typing(room, m, req, rid);
	} else if (strcmp(type, "presence") == 0) {
		chat_on_presence(room, m, req, rid);
	} else if (strcmp(type, "sync") == 0) {
		chat_on_sync(room, st, m, req, rid);
	} else if (strcmp(type, "history") == 0) {
		chat_on_history(room, st, m, req, rid);
	} else if (strcmp(type, "ping") == 0) {
		chat_send_obj(c, json_pack("{s:s}", "type", "pong"), false);
	} else if (strcmp(type, "heartbeat") == 0) {
		/* normally answered by the auto-response before it gets here */
		chat_send_obj(c,
			      json_pack("{s:s, s:I}", "type", "heartbeat_ack", "timestamp",
					(json_int_t)rr_now_wall_ms()),
			      false);
	} else {
		chat_send_error(c, "unknown_type", "unknown type", rid);
	}
	json_decref(req);
}

/* ---- open / close ------------------------------------------------------------------- */

static int chat_hex(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decode src[0..n) into out (NUL-terminated); false if it does not
 * fit or is malformed. */
static bool chat_query_decode(const char *src, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = src[i];
		if (ch == '%') {
			if (i + 2 >= n)
				return false;
			int hi = chat_hex(src[i + 1]), lo = chat_hex(src[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return false;
			ch = (char)(hi << 4 | lo);
			i += 2;
		} else if (ch == '+') {
			ch = ' ';
		}
		if (o + 1 >= cap)
			return false;
		out[o++] = ch;
	}
	out[o] = '\0';
	return true;
}

/* The value of key in the query (decoded into out); false when absent. */
static bool chat_query_get(const char *q, size_t qn, const char *key, char *out, size_t cap,
			   bool *bad)
{
	size_t kl = strlen(key);
	size_t i = 0;
	while (i < qn) {
		size_t j = i;
		while (j < qn && q[j] != '&')
			j++;
		if (j - i > kl && memcmp(q + i, key, kl) == 0 && q[i + kl] == '=') {
			if (!chat_query_decode(q + i + kl + 1, j - i - kl - 1, out, cap))
				*bad = true;
			return true;
		}
		i = j + 1;
	}
	return false;
}

static bool chat_parse_u64(const char *s, uint64_t *out)
{
	if (*s == '\0')
		return false;
	uint64_t v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* The identity kept in a resumed session's attachment. */
static bool chat_attachment_identity(struct rr_conn *c, char **uid, char **uname,
				     json_int_t *joined)
{
	size_t len;
	const void *att = rr_member_attachment(c, &len);
	if (att == NULL)
		return false;
	json_t *o = json_loadb(att, len, 0, NULL);
	const char *u = json_string_value(json_object_get(o, "userId"));
	const char *n = json_string_value(json_object_get(o, "username"));
	bool ok = u && n;
	if (ok) {
		*uid = strdup(u);
		*uname = strdup(n);
		*joined = json_integer_value(json_object_get(o, "joinedAt"));
	}
	json_decref(o);
	return ok;
}

static void chat_attachment_write(struct rr_conn *c, struct chat_member *m, bool perm_read,
				  json_int_t joined)
{
	json_t *o =
	    json_pack("{s:s, s:s, s:o, s:I}", "userId", m->user_id, "username", m->user_name,
		      "perms", chat_perms_json(perm_read, m->perm_write), "joinedAt", joined);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	/* best effort: a session that cannot keep it (-E2BIG under a tiny
	 * --max-attachment-bytes) still chats, it only resumes as anyone */
	if (s)
		rr_member_set_attachment(c, s, strlen(s));
	free(s);
}

/* Count a user's connection; true when it is the user's first. */
static bool chat_user_add(struct chat_room *st, const struct chat_member *m)
{
	json_t *u = json_object_get(st->users, m->user_id);
	if (u) {
		json_t *n = json_object_get(u, "conns");
		json_integer_set(n, json_integer_value(n) + 1);
		return false;
	}
	json_object_set_new(st->users, m->user_id,
			    json_pack("{s:s, s:i}", "username", m->user_name, "conns", 1));
	return true;
}

/* Uncount it; true when it was the user's last. */
static bool chat_user_remove(struct chat_room *st, const struct chat_member *m)
{
	json_t *u = json_object_get(st->users, m->user_id);
	if (u == NULL)
		return true;
	json_t *n = json_object_get(u, "conns");
	if (json_integer_value(n) > 1) {
		json_integer_set(n, json_integer_value(n) - 1);
		return false;
	}
	json_object_del(st->users, m->user_id);
	return true;
}

static void chat_send_welcome(struct rr_room *room, struct chat_room *st, struct rr_conn *c,
			      struct chat_member *m, const struct rr_open_info *info,
			      json_int_t joined)
{
	size_t nl;
	const char *name = rr_room_name(room, &nl);
	const char *resume = rr_member_resume_token(c);
	json_t *user =
	    json_pack("{s:s, s:s, s:o, s:I}", "id", m->user_id, "name", m->user_name, "perms",
		      chat_perms_json(info->perm_read, m->perm_write), "joinedAt", joined);
	/* resume is null on a resumed session: its token stays the same */
	json_t *o = json_pack("{s:s, s:s%, s:s, s:o, s:b, s:s, s:I, s:o, s:I}", "type", "welcome",
			      "room", name, nl, "session", rr_member_session(c), "resume",
			      resume ? json_string(resume) : json_null(), "resumed", info->resumed,
			      "epoch", rr_log_epoch(room), "lastId", (json_int_t)st->last_bcast,
			      "user", user, "heartbeatMs", (json_int_t)chat_cfg.heartbeat_ms);
	chat_send_obj(c, o, true);
}

static int chat_open(struct rr_room *room, struct rr_conn *c, const struct rr_open_info *info)
{
	struct chat_room *st = chat_state(room);
	if (!info->perm_read)
		return 1008; /* a chat member reads the room */
	if (!st->positioned) {
		/* the log position is loaded before the first open() */
		st->last_bcast = rr_log_last_id(room);
		st->positioned = true;
	}

	struct chat_member *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return 1011;
	m->conn = c;
	m->perm_write = info->perm_write;
	m->tokens_milli = (uint64_t)chat_cfg.rate_burst * 1000;
	m->refill_ms = rr_now_wall_ms();

	/* Identity: a resumed session keeps the one in its attachment (an
	 * anonymous user stays the same user); permissions come from this
	 * connection's token, the latest word on them. A token naming
	 * another user cannot take over the session. */
	json_int_t joined = (json_int_t)rr_now_wall_ms();
	bool from_att =
	    info->resumed && chat_attachment_identity(c, &m->user_id, &m->user_name, &joined);
	if (from_att && strncmp(info->user_id, "anon-", 5) != 0 &&
	    strcmp(info->user_id, m->user_id) != 0) {
		chat_member_free(m);
		return 1008;
	}
	if (!from_att) {
		free(m->user_id);
		free(m->user_name);
		m->user_id = strdup(info->user_id);
		m->user_name = strdup(info->user_name);
		joined = (json_int_t)rr_now_wall_ms();
	}
	if (m->user_id == NULL || m->user_name == NULL || chat_member_insert(st, m) < 0) {
		chat_member_free(m);
		return 1011;
	}
	if (!from_att)
		chat_attachment_write(c, m, info->perm_read, joined);

	bool first_conn = chat_user_add(st, m);

	/* Hold first: the welcome and the replay or initial state go out
	 * before anything broadcast from here on. */
	rr_member_hold(c);
	chat_send_welcome(room, st, c, m, info, joined);

	char val[128];
	bool bad = false, has_since, has_epoch;
	uint64_t since = 0;
	has_since = chat_query_get(info->query, info->query_len, "since", val, sizeof(val), &bad);
	if (has_since && !bad && !chat_parse_u64(val, &since))
		bad = true;
	has_epoch = chat_query_get(info->query, info->query_len, "epoch", val, sizeof(val), &bad);
	if (bad) {
		json_t *o = json_pack("{s:s, s:s, s:s}", "type", "error", "code", "invalid_format",
				      "message", "since must be a number");
		chat_send_obj(c, o, true);
		has_since = false;
	}

	int rc = 0;
	if (has_since) {
		if (has_epoch && strcmp(val, rr_log_epoch(room)) != 0) {
			/* another log: the ids mean other messages */
			chat_send_synced(m, false, st->last_bcast);
			chat_member_go_live(m, st->last_bcast);
		} else {
			rc = chat_replay_start(room, st, m, since);
		}
	} else {
		struct chat_sync *s = NULL;
		uint64_t target = st->last_bcast;
		if (target >= rr_log_first_id(room) && chat_cfg.initial_messages > 0) {
			s = chat_sync_new(st, m, CHAT_READ_INITIAL);
			if (s == NULL) {
				rc = -ENOMEM;
			} else {
				s->target = target;
				rc = rr_log_read_before(room, target + 1, chat_cfg.initial_messages,
							chat_read_done, s);
				if (rc < 0)
					chat_sync_free(st, s);
				else
					m->sync = s;
			}
		} else {
			chat_initial_state(room, st, m, NULL, 0, target);
		}
	}
	if (rc < 0) {
		rr_member_release(c);
		/* storage busy: reconnect and replay (this undoes the join) */
		chat_user_remove(st, m);
		chat_member_leave(st, m);
		return 1013;
	}
	if (first_conn) {
		json_t *o = json_pack("{s:s, s:s, s:s}", "type", "user_joined", "userId",
				      m->user_id, "username", m->user_name);
		chat_broadcast_obj(room, o, c);
	}
	return 0;
}

static void chat_close(struct rr_room *room, struct rr_conn *c, uint16_t code, bool clean)
{
	struct chat_room *st = chat_state(room);
	struct chat_member *m = chat_member_find(st, c);
	(void)clean;
	if (m == NULL)
		return;
	/* what it was sent; a slow consumer's queue was dropped, so it keeps
	 * the point of its last replay */
	if (m->live && code != 1013)
		rr_member_set_last_id(c, st->last_bcast);
	if (chat_user_remove(st, m)) {
		json_t *o = json_pack("{s:s, s:s, s:s}", "type", "user_disconnected", "userId",
				      m->user_id, "username", m->user_name);
		chat_broadcast_obj(room, o, c);
	}
	/* a replay waiting for writable() stops here; one with a read in
	 * flight sees it gone when the read completes */
	if (m->sync && m->sync->waiting) {
		struct chat_sync *sy = m->sync;
		m->sync = NULL;
		chat_sync_free(st, sy);
	}
	chat_member_leave(st, m);
}

/* The member took the replay's last page: read the next. */
static void chat_writable(struct rr_room *room, struct rr_conn *c)
{
	struct chat_room *st = chat_state(room);
	struct chat_member *m = chat_member_find(st, c);
	if (m == NULL || m->sync == NULL || !m->sync->waiting)
		return;
	struct chat_sync *s = m->sync;
	s->waiting = false;
	if (chat_replay_next(room, s) == 0)
		return;
	/* can't read on (storage queue full): say what it has */
	chat_send_synced(m, false, s->target);
	chat_member_go_live(m, s->target);
	chat_sync_free(st, s);
}

/* ---- room lifecycle ----------------------------------------------------------------- */

static int chat_init(struct rr_room *room)
{
	struct chat_room *st = chat_state(room);
	st->users = json_object();
	if (st->users == NULL)
		return -ENOMEM;
	int rc = rr_room_set_auto_response(room, "heartbeat",
					   "{\"type\":\"heartbeat_ack\",\"timestamp\":%T}", true);
	if (rc < 0) {
		json_decref(st->users);
		st->users = NULL;
		return rc;
	}
	return 0;
}

/* The runtime evicts a room only with no member and no storage request in
 * flight, so nothing here can still be called back. */
static void chat_evict(struct rr_room *room)
{
	struct chat_room *st = chat_state(room);
	/* completions first: they release members that already left */
	while (st->ap_head) {
		struct chat_append *a = st->ap_head;
		st->ap_head = a->next;
		chat_append_free(a);
	}
	while (st->reads)
		chat_sync_free(st, st->reads);
	for (size_t i = 0; i < st->nbuckets; i++) {
		struct chat_member *m = st->buckets[i];
		while (m) {
			struct chat_member *next = m->next;
			chat_member_free(m);
			m = next;
		}
	}
	free(st->buckets);
	json_decref(st->users);
	memset(st, 0, sizeof(*st));
}

static const struct rr_handler chat_handler = {
    .abi = RR_HANDLER_ABI,
    .name = "chat",
    .state_size = sizeof(struct chat_room),
    .durable = true,
    .init = chat_init,
    .evict = chat_evict,
    .open = chat_open,
    .message = chat_message,
    .close = chat_close,
    .writable = chat_writable,
};

const struct rr_handler *rr_chat_handler(void)
{
	return &chat_handler;
}
