/* The chat handler: appends (broadcast once durable) and client frames. */
#include "chat/chat_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- appends ------------------------------------------------------------------ */

void chat_append_free(struct chat_append *a)
{
	if (a->m)
		chat_member_put(a->m);
	free(a->stored);
	free(a->key);
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
		struct rr_conn *c = a->m == NULL ? NULL
				    : !a->m->gone ? a->m->conn
						  : rr_room_member_by_session(room, a->session);
		if (a->res == 0 && a->bad_id)
			a->res = -EPROTO;
		if (a->duplicate) {
			/* a resend of a message stored before: shown then; its
			 * ack names that message when the cluster could tell */
			if (c) {
				json_t *o = json_pack("{s:s, s:b}", "type", "ack", "duplicate", 1);
				if (o && a->id)
					json_object_set_new(o, "id", json_integer((json_int_t)a->id));
				if (o && a->request_id)
					json_object_set(o, "requestId", a->request_id);
				chat_send_obj(c, o, false);
			}
		} else if (a->res == 0) {
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
			if (a->call) {
				char body[80];
				int n = snprintf(body, sizeof(body), "{\"id\":%llu,\"epoch\":\"%s\"}",
						 (unsigned long long)a->id, rr_log_epoch(room));
				rr_api_reply(a->call, 200, body, (size_t)n);
			}
		} else if (a->call) {
			rr_api_error(a->call, 503, "storage_unavailable", "message not stored");
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

static int chat_log_append(struct rr_room *room, struct chat_append *a, uint64_t *id)
{
	if (a->key)
		return rr_log_append_once(room, a->key, strlen(a->key), a->stored, a->stored_len,
					  id, chat_append_done, a);
	return rr_log_append(room, a->stored, a->stored_len, id, chat_append_done, a);
}

/* Cluster mode: another node took a's id (or an append before it failed):
 * number it again as the next id and append it again, in its place in the
 * queue. 0, or the error that ends it. */
static int chat_append_again(struct rr_room *room, struct chat_room *st, struct chat_append *a)
{
	uint64_t next_id = rr_log_last_id(room) + 1;
	json_error_t jerr;
	json_t *o = json_loadb(a->stored, a->stored_len, 0, &jerr);
	char *stored = NULL;
	if (o && json_object_set_new(o, "id", json_integer((json_int_t)next_id)) == 0)
		stored = json_dumps(o, JSON_COMPACT); /* keys keep their order: id first */
	json_decref(o);
	if (stored == NULL)
		return -ENOMEM;
	free(a->stored);
	a->stored = stored;
	a->stored_len = strlen(stored);
	uint64_t id = 0;
	bool was = st->appending;
	st->appending = true;
	int rc = chat_log_append(room, a, &id);
	st->appending = was;
	if (rc == 0) {
		a->id = id;
		a->bad_id = id != next_id;
	}
	return rc;
}

void chat_append_done(struct rr_room *room, void *arg, int res, uint64_t id)
{
	struct chat_room *st = chat_state(room);
	struct chat_append *a = arg;
	if (res == -EXDEV) {
		res = chat_append_again(room, st, a);
		if (res == 0)
			return; /* its completion comes again */
	}
	a->done = true;
	a->res = res;
	if (res == -EALREADY) {
		a->duplicate = true;
		a->id = id; /* the original's, 0 when unknown */
	} else if (id) {
		a->id = id;
	}
	if (!st->appending)
		chat_append_flush(room, st);
}

/* Queue a (its stored JSON numbered next_id) and append it to the log: it
 * is broadcast and acknowledged from the queue's head once stored. 0, or the
 * error of rr_log_append() (a is not queued then; the caller frees it). */
static int chat_append_start(struct rr_room *room, struct chat_room *st, struct chat_append *a,
			     uint64_t next_id)
{
	/* queued before the call: a completion inside it finds it */
	if (st->ap_tail)
		st->ap_tail->next = a;
	else
		st->ap_head = a;
	struct chat_append *prev_tail = st->ap_tail;
	st->ap_tail = a;

	uint64_t id = 0;
	st->appending = true;
	int rc = chat_log_append(room, a, &id);
	st->appending = false;
	if (rc < 0) {
		/* never appended, so no completion will come: unqueue */
		st->ap_tail = prev_tail;
		if (prev_tail)
			prev_tail->next = NULL;
		else
			st->ap_head = NULL;
		return rc;
	}
	if (a->id == 0)
		a->id = id;
	if (id != next_id) {
		/* the runtime numbered it otherwise: the stored copy names the
		 * wrong id; never show it (the client sees an error) */
		a->bad_id = true;
	}
	return 0;
}

/* Cluster mode: a message another node stored, in log order. */
void chat_log_arrived(struct rr_room *room, uint64_t id, const void *data, size_t len)
{
	struct chat_room *st = chat_state(room);
	if (!st->positioned)
		return; /* no member has seen the room yet: the log has it */
	struct chat_buf b = {0};
	chat_buf_message_frame(&b, data, len);
	if (!b.failed)
		rr_room_broadcast(room, RR_TEXT, b.p, b.len, NULL);
	free(b.p);
	if (id > st->last_bcast)
		st->last_bcast = id;
}

/* POST /api/chat/{room}: a message from a backend, stored and broadcast
 * exactly like a member's; answered {"id","epoch"} once durable. */
int chat_api_publish(struct rr_room *room, struct chat_room *st, struct rr_api_call *call,
		     const void *body, size_t len)
{
	json_error_t jerr;
	json_t *req = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *content = req ? json_object_get(req, "content") : NULL;
	json_t *uid = req ? json_object_get(req, "userId") : NULL;
	json_t *uname = req ? json_object_get(req, "username") : NULL;
	json_t *thread = req ? json_object_get(req, "threadId") : NULL;
	const char *bad = NULL;
	if (!json_is_object(req))
		bad = "the body must be a JSON object";
	else if (!json_is_string(content))
		bad = "content must be a string";
	else if (!json_is_string(uid) || json_string_length(uid) == 0 ||
		 json_string_length(uid) > RR_CHAT_REQUEST_ID_MAX * 2)
		bad = "userId must be a non-empty string";
	else if (uname && !json_is_null(uname) && !json_is_string(uname))
		bad = "username must be a string";
	else if (thread && !json_is_null(thread) &&
		 (!json_is_string(thread) || json_string_length(thread) > CHAT_THREAD_ID_MAX))
		bad = "threadId must be a short string";
	if (bad) {
		json_decref(req);
		rr_api_error(call, 400, "invalid_format", bad);
		return 0;
	}
	if (chat_cfg.max_content_bytes && json_string_length(content) > chat_cfg.max_content_bytes) {
		json_decref(req);
		rr_api_error(call, 400, "too_large", "content is over --max-chat-bytes");
		return 0;
	}
	uint64_t next_id = rr_log_last_id(room) + 1;
	json_t *stored_obj = json_pack(
		"{s:I, s:O, s:O, s:O, s:I, s:O}", "id", (json_int_t)next_id, "userId", uid,
		"username", json_is_string(uname) ? uname : uid, "content", content, "timestamp",
		(json_int_t)rr_now_wall_ms(), "threadId", thread ? thread : json_null());
	char *stored = stored_obj ? json_dumps(stored_obj, JSON_COMPACT) : NULL;
	json_decref(stored_obj);
	json_decref(req);
	struct chat_append *a = stored ? calloc(1, sizeof(*a) + 1) : NULL;
	if (a == NULL) {
		free(stored);
		return -ENOMEM;
	}
	a->stored = stored;
	a->stored_len = strlen(stored);
	a->call = call;
	int rc = chat_append_start(room, st, a, next_id);
	if (rc < 0) {
		a->call = NULL;
		chat_append_free(a);
		if (rc == -EAGAIN) {
			rr_api_error(call, 503, "storage_unavailable", "storage is busy: retry later");
			return 0;
		}
		return rc;
	}
	chat_append_flush(room, st);
	return 0;
}

/* ---- client frames ---------------------------------------------------------------- */

static bool chat_id_valid(const json_t *v, size_t max)
{
	if (json_is_integer(v))
		return true;
	return json_is_string(v) && json_string_length(v) <= max;
}

/* Past the closing quote of the string whose body starts at p; NULL when
 * it does not end. */
static const char *chat_skip_string(const char *p, const char *end)
{
	for (; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

static const char *chat_skip_space(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/*
 * The requestId of a frame that is not parsed (longer than any legal one)
 * or did not parse: one pass over the bytes looking for the key
 * "requestId" (spelled without escapes) in the top-level object, so an
 * error can still name the request it answers. Linear, and nothing is
 * allocated but the id itself. Returns a new reference, or NULL when there
 * is no readable, valid id.
 */
static json_t *chat_peek_request_id(const char *s, size_t len)
{
	const char *p = s, *end = s + len;
	int depth = 0;
	bool want_key = false;
	p = chat_skip_space(p, end);
	if (p == end || *p != '{')
		return NULL;
	while (p < end) {
		char ch = *p;
		if (ch != '"') {
			if (ch == '{' || ch == '[') {
				depth++;
				want_key = ch == '{' && depth == 1;
			} else if (ch == '}' || ch == ']') {
				if (--depth <= 0)
					return NULL;
			} else if (ch == ',' && depth == 1) {
				want_key = true;
			}
			p++;
			continue;
		}
		const char *body = p + 1;
		p = chat_skip_string(body, end);
		if (p == NULL)
			return NULL;
		if (depth != 1 || !want_key)
			continue;
		want_key = false;
		bool match = p - body - 1 == 9 && memcmp(body, "requestId", 9) == 0;
		p = chat_skip_space(p, end);
		if (p == end || *p != ':')
			return NULL;
		if (!match)
			continue;
		const char *v = chat_skip_space(p + 1, end);
		p = v;
		if (p < end && *p == '"') {
			p = chat_skip_string(p + 1, end);
			if (p == NULL)
				return NULL;
		} else {
			while (p < end && ((*p >= '0' && *p <= '9') || *p == '-'))
				p++;
		}
		/* the longest valid id, every byte escaped as \uXXXX */
		if (p == v || (size_t)(p - v) > 6 * (size_t)CHAT_REQUEST_ID_MAX + 2)
			return NULL;
		json_t *id = json_loadb(v, (size_t)(p - v), JSON_DECODE_ANY, NULL);
		if (id && chat_id_valid(id, CHAT_REQUEST_ID_MAX))
			return id;
		json_decref(id);
		return NULL;
	}
	return NULL;
}

/* content is over --max-chat-bytes: the error says the limit */
static void chat_send_too_large(struct rr_conn *c, json_t *rid)
{
	char msg[96];
	snprintf(msg, sizeof(msg), "content is longer than %" PRIu32 " bytes (--max-chat-bytes)",
		 chat_cfg.max_content_bytes);
	chat_send_error(c, "too_large", msg, rid);
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
		chat_send_too_large(m->conn, rid);
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
	if (rid) {
		char *r = json_dumps(rid, JSON_ENCODE_ANY | JSON_COMPACT);
		size_t ul = strlen(m->user_id);
		a->key = r ? malloc(ul + 1 + strlen(r) + 1) : NULL;
		if (a->key) {
			memcpy(a->key, m->user_id, ul);
			a->key[ul] = '\n';
			strcpy(a->key + ul + 1, r);
		}
		free(r);
	}
	a->m = m;
	m->refs++;
	int rc = chat_append_start(room, st, a, next_id);
	if (rc < 0) {
		if (rc == -EAGAIN)
			chat_send_error(m->conn, "rate_limited", "storage is busy: retry later",
					rid);
		else
			chat_send_error(m->conn, "storage_unavailable", "message not stored", rid);
		chat_append_free(a);
		return;
	}
	chat_append_flush(room, st);
}

/* Broadcast a member's typing or presence here and on the other nodes. */
static void chat_broadcast_shown(struct rr_room *room, json_t *o, struct rr_conn *except)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (s == NULL)
		return;
	rr_room_broadcast(room, RR_TEXT, s, strlen(s), except);
	chat_nodes_frame(room, s, strlen(s));
	free(s);
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
	chat_broadcast_shown(room, o, m->conn);
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
	chat_broadcast_shown(room, o, NULL);
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
	s->request_id = rid ? json_incref(rid) : NULL;
	if (rr_log_read_before(room, before, (uint32_t)limit, chat_read_done, s) < 0) {
		chat_sync_free(st, s);
		chat_send_error(m->conn, "rate_limited", "storage is busy: retry later", rid);
	}
}

void chat_message(struct rr_room *room, struct rr_conn *c, int opcode, void *data,
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
		json_t *prid = chat_peek_request_id(data, len);
		if (!chat_bucket_take(m, rr_now_wall_ms()))
			chat_send_error(c, "rate_limited", "too many messages: slow down", prid);
		else
			chat_send_too_large(c, prid);
		json_decref(prid);
		return;
	}
	json_error_t jerr;
	json_t *req = json_loadb(data, len, 0, &jerr);
	if (!json_is_object(req)) {
		json_t *prid = chat_peek_request_id(data, len);
		if (!chat_bucket_take(m, rr_now_wall_ms()))
			chat_send_error(c, "rate_limited", "too many messages: slow down", prid);
		else
			chat_send_error(c, "invalid_format", "not a JSON object", prid);
		json_decref(prid);
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

