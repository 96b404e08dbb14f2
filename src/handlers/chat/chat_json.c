/*
 * The chat protocol's JSON layer (see chat_json.h): parse client frames,
 * encode server frames and stored messages.
 *
 * DESIGN: encoders build a small jansson tree (json_pack) and dump it
 * straight into the caller's reusable buffer with json_dump_callback, then
 * rewrite U+2028/U+2029 as \u escapes in place: jansson leaves those raw
 * unless JSON_ENSURE_ASCII, which would also escape every other non-ASCII
 * character. Frames built from stored values skip jansson entirely and
 * concatenate, since a stored value is already the encoded message object.
 */
#include "chat/chat_json.h"
#include "core/assert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ---- output buffer ---- */

void rr_chat_buf_free(struct rr_chat_buf *b)
{
	rr_assert(b != NULL);
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* Room for `extra` more bytes plus the NUL. */
static int buf_reserve(struct rr_chat_buf *b, size_t extra)
{
	if (extra > SIZE_MAX / 4 - b->len)
		return -ENOMEM;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need) /* at most ~60 doublings: need < SIZE_MAX / 4 */
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (p == NULL)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

static int buf_put(struct rr_chat_buf *b, const char *s, size_t n)
{
	int rc = buf_reserve(b, n);
	if (rc != 0)
		return rc;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static int buf_puts(struct rr_chat_buf *b, const char *s)
{
	return buf_put(b, s, strlen(s));
}

static void buf_reset(struct rr_chat_buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

/* U+2028 is E2 80 A8, U+2029 E2 80 A9. In valid UTF-8 (all jansson emits)
 * an E2 is always a lead byte, so every such triple is one of the two. */
static bool is_ls_ps(const char *d)
{
	return (unsigned char)d[0] == 0xe2 && (unsigned char)d[1] == 0x80 &&
	       ((unsigned char)d[2] == 0xa8 || (unsigned char)d[2] == 0xa9);
}

static size_t ls_ps_count(const char *d, size_t from, size_t to)
{
	size_t n = 0;
	for (size_t i = from; i + 3 <= to; i++)
		if (is_ls_ps(d + i)) {
			n++;
			i += 2;
		}
	return n;
}

/* Rewrite d[from..len) in place, each 3-byte U+2028/9 becoming its 6-byte
 * escape; d must hold len + 3 * count bytes. Walks backwards so nothing is
 * overwritten before it is read. */
static void ls_ps_expand(char *d, size_t from, size_t len, size_t count)
{
	size_t r = len, w = len + 3 * count;
	while (r > from) {
		if (r - from >= 3 && is_ls_ps(d + r - 3)) {
			w -= 6;
			memcpy(d + w, (unsigned char)d[r - 1] == 0xa8 ? "\\u2028" : "\\u2029", 6);
			r -= 3;
		} else {
			d[--w] = d[--r];
		}
	}
	rr_assert(w == r);
}

static int dump_cb(const char *s, size_t n, void *data)
{
	return buf_put(data, s, n) == 0 ? 0 : -1;
}

/* Append j, compact, with U+2028/9 escaped. */
static int buf_json(struct rr_chat_buf *b, const json_t *j)
{
	size_t start = b->len;
	if (json_dump_callback(j, dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
		return -ENOMEM;
	size_t n = ls_ps_count(b->data, start, b->len);
	if (n == 0)
		return 0;
	int rc = buf_reserve(b, 3 * n);
	if (rc != 0)
		return rc;
	ls_ps_expand(b->data, start, b->len, n);
	b->len += 3 * n;
	b->data[b->len] = '\0';
	return 0;
}

/* Replace b's content by the dump of j (a json_pack result; NULL → the pack
 * failed with e), consuming j. */
static int emit(struct rr_chat_buf *b, json_t *j, const json_error_t *e)
{
	buf_reset(b);
	if (j == NULL)
		return json_error_code(e) == json_error_out_of_memory ? -ENOMEM : -EINVAL;
	int rc = buf_json(b, j);
	json_decref(j);
	if (rc != 0)
		buf_reset(b);
	return rc;
}

/* ---- errors ---- */

const char *rr_chat_err_code(enum rr_chat_err e)
{
	switch (e) {
	case RR_CHAT_OK:
		return "";
	case RR_CHAT_E_INVALID_FORMAT:
		return "invalid_format";
	case RR_CHAT_E_UNKNOWN_TYPE:
		return "unknown_type";
	case RR_CHAT_E_TOO_LARGE:
		return "too_large";
	case RR_CHAT_E_NO_PERMISSION:
		return "no_permission";
	case RR_CHAT_E_RATE_LIMITED:
		return "rate_limited";
	}
	return "invalid_format";
}

/* ---- parsing ---- */

static enum rr_chat_err fail(struct rr_chat_in *in, enum rr_chat_err e, const char *why)
{
	json_decref(in->_root);
	in->_root = NULL;
	in->why = why;
	return e;
}

/* An id or count: an integer >= 0, or a real with no fraction in range. */
static bool get_u64(const json_t *v, uint64_t *out)
{
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i < 0)
			return false;
		*out = (uint64_t)i;
		return true;
	}
	if (json_is_real(v)) {
		double r = json_real_value(v);
		if (!(r >= 0.0) || r >= 9223372036854775808.0 || (double)(uint64_t)r != r)
			return false;
		*out = (uint64_t)r;
		return true;
	}
	return false;
}

static enum rr_chat_err parse_request_id(struct rr_chat_in *in, const json_t *v)
{
	if (v == NULL || json_is_null(v))
		return RR_CHAT_OK;
	if (json_is_string(v)) {
		if (json_string_length(v) > RR_CHAT_REQUEST_ID_MAX)
			return fail(in, RR_CHAT_E_TOO_LARGE, "requestId is too long");
	} else if (!json_is_number(v)) {
		return fail(in, RR_CHAT_E_INVALID_FORMAT, "requestId must be a string or a number");
	}
	size_t cap = sizeof(in->request_id);
	size_t n = json_dumpb(v, in->request_id, cap - 1, JSON_COMPACT | JSON_ENCODE_ANY);
	if (n == 0 || n > cap - 1)
		return fail(in, RR_CHAT_E_TOO_LARGE, "requestId is too long");
	size_t k = ls_ps_count(in->request_id, 0, n);
	if (n + 3 * k > cap - 1) /* cannot happen within the limits; stay safe */
		return fail(in, RR_CHAT_E_TOO_LARGE, "requestId is too long");
	ls_ps_expand(in->request_id, 0, n, k);
	in->request_id_len = n + 3 * k;
	in->request_id[in->request_id_len] = '\0';
	return RR_CHAT_OK;
}

static enum rr_chat_err parse_message(struct rr_chat_in *in, const json_t *root, size_t content_max)
{
	const json_t *content = json_object_get(root, "content");
	if (!json_is_string(content))
		return fail(in, RR_CHAT_E_INVALID_FORMAT, "message needs a string content");
	if (json_string_length(content) > content_max)
		return fail(in, RR_CHAT_E_TOO_LARGE, "message content is too long");
	in->message.content = json_string_value(content);
	in->message.content_len = json_string_length(content);

	const json_t *thread = json_object_get(root, "threadId");
	if (json_is_string(thread)) {
		if (json_string_length(thread) > RR_CHAT_THREAD_ID_MAX)
			return fail(in, RR_CHAT_E_TOO_LARGE, "threadId is too long");
		in->message.thread_id = json_string_value(thread);
		in->message.thread_id_len = json_string_length(thread);
	} else if (thread != NULL && !json_is_null(thread)) {
		return fail(in, RR_CHAT_E_INVALID_FORMAT, "threadId must be a string or null");
	}
	return parse_request_id(in, json_object_get(root, "requestId"));
}

static enum rr_chat_err parse_history(struct rr_chat_in *in, const json_t *root)
{
	const json_t *before = json_object_get(root, "beforeId");
	in->history.before_id = 0;
	if (before != NULL && !json_is_null(before) && !get_u64(before, &in->history.before_id))
		return fail(in, RR_CHAT_E_INVALID_FORMAT, "beforeId must be an integer >= 0");

	const json_t *limit = json_object_get(root, "limit");
	uint64_t l = RR_CHAT_HISTORY_LIMIT_DEFAULT;
	if (limit != NULL && !json_is_null(limit) && (!get_u64(limit, &l) || l < 1))
		return fail(in, RR_CHAT_E_INVALID_FORMAT, "limit must be an integer >= 1");
	in->history.limit =
	    (uint32_t)(l > RR_CHAT_HISTORY_LIMIT_MAX ? RR_CHAT_HISTORY_LIMIT_MAX : l);
	return RR_CHAT_OK;
}

static const struct {
	const char *name;
	enum rr_chat_type type;
} type_names[] = {
    {"message", RR_CHAT_MESSAGE}, {"typing", RR_CHAT_TYPING},	{"presence", RR_CHAT_PRESENCE},
    {"sync", RR_CHAT_SYNC},	  {"history", RR_CHAT_HISTORY}, {"heartbeat", RR_CHAT_HEARTBEAT},
    {"ping", RR_CHAT_PING},
};

enum rr_chat_err rr_chat_parse(struct rr_chat_in *in, const char *text, size_t len,
			       size_t content_max)
{
	rr_assert(in != NULL);
	rr_assert(text != NULL || len == 0);
	memset(in, 0, sizeof(*in));
	if (content_max == 0)
		content_max = RR_CHAT_CONTENT_MAX_DEFAULT;
	if (content_max > (SIZE_MAX - RR_CHAT_FRAME_SLACK) / 6)
		content_max = (SIZE_MAX - RR_CHAT_FRAME_SLACK) / 6;
	if (len > 6 * content_max + RR_CHAT_FRAME_SLACK)
		return fail(in, RR_CHAT_E_TOO_LARGE, "frame is too large");

	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return fail(in, RR_CHAT_E_INVALID_FORMAT, "frame is not valid JSON");
	in->_root = root;
	if (!json_is_object(root))
		return fail(in, RR_CHAT_E_INVALID_FORMAT, "frame is not a JSON object");
	const json_t *type = json_object_get(root, "type");
	if (!json_is_string(type))
		return fail(in, RR_CHAT_E_INVALID_FORMAT, "frame needs a string type");

	const char *name = json_string_value(type);
	size_t i, n = sizeof(type_names) / sizeof(type_names[0]);
	for (i = 0; i < n; i++)
		if (strcmp(name, type_names[i].name) == 0)
			break;
	if (i == n)
		return fail(in, RR_CHAT_E_UNKNOWN_TYPE, "unknown type");
	in->type = type_names[i].type;

	const json_t *v;
	switch (in->type) {
	case RR_CHAT_MESSAGE:
		return parse_message(in, root, content_max);
	case RR_CHAT_TYPING:
		v = json_object_get(root, "isTyping");
		if (!json_is_boolean(v))
			return fail(in, RR_CHAT_E_INVALID_FORMAT,
				    "typing needs a boolean isTyping");
		in->typing.is_typing = json_is_true(v);
		return RR_CHAT_OK;
	case RR_CHAT_PRESENCE:
		v = json_object_get(root, "status");
		if (!json_is_string(v))
			return fail(in, RR_CHAT_E_INVALID_FORMAT, "presence needs a string status");
		if (json_string_length(v) > RR_CHAT_STATUS_MAX)
			return fail(in, RR_CHAT_E_TOO_LARGE, "status is too long");
		in->presence.status = json_string_value(v);
		in->presence.status_len = json_string_length(v);
		return RR_CHAT_OK;
	case RR_CHAT_SYNC:
		v = json_object_get(root, "afterMessageId");
		if (!get_u64(v, &in->sync.after_id))
			return fail(in, RR_CHAT_E_INVALID_FORMAT,
				    "sync needs an integer afterMessageId >= 0");
		return RR_CHAT_OK;
	case RR_CHAT_HISTORY:
		return parse_history(in, root);
	case RR_CHAT_HEARTBEAT:
	case RR_CHAT_PING:
		return RR_CHAT_OK;
	}
	return fail(in, RR_CHAT_E_UNKNOWN_TYPE, "unknown type");
}

void rr_chat_in_release(struct rr_chat_in *in)
{
	rr_assert(in != NULL);
	json_decref(in->_root);
	in->_root = NULL;
}

/* ---- encoding ---- */

/* jansson integers are signed 64-bit. */
static bool fits(uint64_t v)
{
	return v <= INT64_MAX;
}

static json_t *msg_object(const struct rr_chat_msg *m, json_error_t *e)
{
	if (!fits(m->id) || !fits(m->timestamp_ms)) {
		/* make emit() report -EINVAL */
		memset(e, 0, sizeof(*e));
		return NULL;
	}
	return json_pack_ex(e, 0, "{s:I,s:s,s:s,s:s,s:I,s:s?}", "id", (json_int_t)m->id, "userId",
			    m->user_id, "username", m->username, "content", m->content, "timestamp",
			    (json_int_t)m->timestamp_ms, "threadId", m->thread_id);
}

static json_t *msg_array(const struct rr_chat_msg *msgs, size_t n, json_error_t *e)
{
	json_t *a = json_array();
	if (a == NULL) {
		memset(e, 0, sizeof(*e));
		e->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)json_error_out_of_memory;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *m = msg_object(&msgs[i], e);
		if (m == NULL || json_array_append_new(a, m) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *user_array(const struct rr_chat_user *users, size_t n, json_error_t *e)
{
	json_t *a = json_array();
	if (a == NULL) {
		memset(e, 0, sizeof(*e));
		e->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)json_error_out_of_memory;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *u = json_pack_ex(e, 0, "{s:s,s:s}", "userId", users[i].id, "username",
					 users[i].name);
		if (u == NULL || json_array_append_new(a, u) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

int rr_chat_encode_welcome(struct rr_chat_buf *b, const struct rr_chat_welcome *w)
{
	rr_assert(b != NULL && w != NULL);
	json_error_t e;
	if (!fits(w->last_id)) {
		buf_reset(b);
		return -EINVAL;
	}
	json_t *j =
	    json_pack_ex(&e, 0, "{s:s,s:s,s:s,s:s,s:s,s:I,s:{s:s,s:s},s:I}", "type", "welcome",
			 "room", w->room, "session", w->session, "resume", w->resume, "epoch",
			 w->epoch, "lastId", (json_int_t)w->last_id, "user", "id", w->user_id,
			 "name", w->user_name, "heartbeatMs", (json_int_t)w->heartbeat_ms);
	return emit(b, j, &e);
}

int rr_chat_encode_initial_state(struct rr_chat_buf *b, const struct rr_chat_msg *msgs, size_t n,
				 const struct rr_chat_user *users, size_t n_users)
{
	rr_assert(b != NULL && (msgs != NULL || n == 0) && (users != NULL || n_users == 0));
	json_error_t e;
	json_t *m = msg_array(msgs, n, &e);
	if (m == NULL)
		return emit(b, NULL, &e);
	json_t *u = user_array(users, n_users, &e);
	if (u == NULL) {
		json_decref(m);
		return emit(b, NULL, &e);
	}
	json_t *j = json_pack_ex(&e, 0, "{s:s,s:o,s:o}", "type", "initial_state", "messages", m,
				 "onlineUsers", u);
	return emit(b, j, &e);
}

int rr_chat_encode_message(struct rr_chat_buf *b, const struct rr_chat_msg *m)
{
	rr_assert(b != NULL && m != NULL);
	json_error_t e;
	json_t *o = msg_object(m, &e);
	if (o == NULL)
		return emit(b, NULL, &e);
	json_t *j = json_pack_ex(&e, 0, "{s:s,s:o}", "type", "message", "message", o);
	return emit(b, j, &e);
}

int rr_chat_encode_stored(struct rr_chat_buf *b, const struct rr_chat_msg *m)
{
	rr_assert(b != NULL && m != NULL);
	json_error_t e;
	return emit(b, msg_object(m, &e), &e);
}

int rr_chat_encode_history(struct rr_chat_buf *b, const struct rr_chat_msg *msgs, size_t n)
{
	rr_assert(b != NULL && (msgs != NULL || n == 0));
	json_error_t e;
	json_t *m = msg_array(msgs, n, &e);
	if (m == NULL)
		return emit(b, NULL, &e);
	json_t *j = json_pack_ex(&e, 0, "{s:s,s:o}", "type", "history", "messages", m);
	return emit(b, j, &e);
}

int rr_chat_encode_ack(struct rr_chat_buf *b, const char *request_id, size_t request_id_len,
		       uint64_t id)
{
	rr_assert(b != NULL && (request_id != NULL || request_id_len == 0));
	buf_reset(b);
	if (!fits(id))
		return -EINVAL;
	char num[24];
	snprintf(num, sizeof(num), "%llu", (unsigned long long)id);
	int rc = buf_puts(b, "{\"type\":\"ack\",");
	if (rc == 0 && request_id_len > 0) {
		rc = buf_puts(b, "\"requestId\":");
		if (rc == 0)
			rc = buf_put(b, request_id, request_id_len);
		if (rc == 0)
			rc = buf_puts(b, ",");
	}
	if (rc == 0)
		rc = buf_puts(b, "\"id\":");
	if (rc == 0)
		rc = buf_puts(b, num);
	if (rc == 0)
		rc = buf_puts(b, "}");
	if (rc != 0)
		buf_reset(b);
	return rc;
}

int rr_chat_encode_typing(struct rr_chat_buf *b, const char *user_id, const char *username,
			  bool is_typing)
{
	rr_assert(b != NULL);
	json_error_t e;
	json_t *j = json_pack_ex(&e, 0, "{s:s,s:s,s:s,s:b}", "type", "typing", "userId", user_id,
				 "username", username, "isTyping", (int)is_typing);
	return emit(b, j, &e);
}

int rr_chat_encode_presence(struct rr_chat_buf *b, const char *user_id, const char *status)
{
	rr_assert(b != NULL);
	json_error_t e;
	json_t *j = json_pack_ex(&e, 0, "{s:s,s:s,s:s}", "type", "presence", "userId", user_id,
				 "status", status);
	return emit(b, j, &e);
}

static int encode_user_event(struct rr_chat_buf *b, const char *type, const char *user_id,
			     const char *username)
{
	rr_assert(b != NULL);
	json_error_t e;
	json_t *j = json_pack_ex(&e, 0, "{s:s,s:s,s:s}", "type", type, "userId", user_id,
				 "username", username);
	return emit(b, j, &e);
}

int rr_chat_encode_user_joined(struct rr_chat_buf *b, const char *user_id, const char *username)
{
	return encode_user_event(b, "user_joined", user_id, username);
}

int rr_chat_encode_user_disconnected(struct rr_chat_buf *b, const char *user_id,
				     const char *username)
{
	return encode_user_event(b, "user_disconnected", user_id, username);
}

int rr_chat_encode_synced(struct rr_chat_buf *b, bool recovered, uint64_t last_id)
{
	rr_assert(b != NULL);
	if (!fits(last_id)) {
		buf_reset(b);
		return -EINVAL;
	}
	json_error_t e;
	json_t *j = json_pack_ex(&e, 0, "{s:s,s:b,s:I}", "type", "synced", "recovered",
				 (int)recovered, "lastId", (json_int_t)last_id);
	return emit(b, j, &e);
}

int rr_chat_encode_error(struct rr_chat_buf *b, enum rr_chat_err code, const char *message)
{
	rr_assert(b != NULL);
	rr_assert(code != RR_CHAT_OK);
	json_error_t e;
	json_t *j = json_pack_ex(&e, 0, "{s:s,s:s,s:s}", "type", "error", "code",
				 rr_chat_err_code(code), "message", message ? message : "");
	return emit(b, j, &e);
}

int rr_chat_encode_heartbeat_ack(struct rr_chat_buf *b, uint64_t timestamp_ms)
{
	rr_assert(b != NULL);
	if (!fits(timestamp_ms)) {
		buf_reset(b);
		return -EINVAL;
	}
	json_error_t e;
	json_t *j = json_pack_ex(&e, 0, "{s:s,s:I}", "type", "heartbeat_ack", "timestamp",
				 (json_int_t)timestamp_ms);
	return emit(b, j, &e);
}

int rr_chat_encode_pong(struct rr_chat_buf *b)
{
	rr_assert(b != NULL);
	buf_reset(b);
	return buf_puts(b, "{\"type\":\"pong\"}");
}

/* ---- frames from stored values ---- */

static bool stored_shape_ok(const char *p, size_t n)
{
	return p != NULL && n >= 2 && p[0] == '{' && p[n - 1] == '}' && memchr(p, '\0', n) == NULL;
}

/* Append "[v0,v1,...]". */
static int put_stored_array(struct rr_chat_buf *b, const struct rr_chat_stored *msgs, size_t n)
{
	int rc = buf_puts(b, "[");
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!stored_shape_ok(msgs[i].data, msgs[i].len))
			return -EINVAL;
		if (i > 0)
			rc = buf_puts(b, ",");
		if (rc == 0)
			rc = buf_put(b, msgs[i].data, msgs[i].len);
	}
	if (rc == 0)
		rc = buf_puts(b, "]");
	return rc;
}

int rr_chat_message_from_stored(struct rr_chat_buf *b, const char *stored, size_t len)
{
	rr_assert(b != NULL);
	buf_reset(b);
	if (!stored_shape_ok(stored, len))
		return -EINVAL;
	int rc = buf_puts(b, "{\"type\":\"message\",\"message\":");
	if (rc == 0)
		rc = buf_put(b, stored, len);
	if (rc == 0)
		rc = buf_puts(b, "}");
	if (rc != 0)
		buf_reset(b);
	return rc;
}

int rr_chat_encode_history_stored(struct rr_chat_buf *b, const struct rr_chat_stored *msgs,
				  size_t n)
{
	rr_assert(b != NULL && (msgs != NULL || n == 0));
	buf_reset(b);
	int rc = buf_puts(b, "{\"type\":\"history\",\"messages\":");
	if (rc == 0)
		rc = put_stored_array(b, msgs, n);
	if (rc == 0)
		rc = buf_puts(b, "}");
	if (rc != 0)
		buf_reset(b);
	return rc;
}

int rr_chat_encode_initial_state_stored(struct rr_chat_buf *b, const struct rr_chat_stored *msgs,
					size_t n, const struct rr_chat_user *users, size_t n_users)
{
	rr_assert(b != NULL && (msgs != NULL || n == 0) && (users != NULL || n_users == 0));
	buf_reset(b);
	json_error_t e;
	json_t *u = user_array(users, n_users, &e);
	if (u == NULL)
		return emit(b, NULL, &e);
	int rc = buf_puts(b, "{\"type\":\"initial_state\",\"messages\":");
	if (rc == 0)
		rc = put_stored_array(b, msgs, n);
	if (rc == 0)
		rc = buf_puts(b, ",\"onlineUsers\":");
	if (rc == 0)
		rc = buf_json(b, u);
	if (rc == 0)
		rc = buf_puts(b, "}");
	json_decref(u);
	if (rc != 0)
		buf_reset(b);
	return rc;
}

int rr_chat_stored_decode(struct rr_chat_stored_msg *out, const char *stored, size_t len)
{
	rr_assert(out != NULL);
	rr_assert(stored != NULL || len == 0);
	memset(out, 0, sizeof(*out));
	json_error_t e;
	json_t *root = json_loadb(stored, len, JSON_REJECT_DUPLICATES, &e);
	if (root == NULL)
		return json_error_code(&e) == json_error_out_of_memory ? -ENOMEM : -EINVAL;
	json_int_t id = -1, ts = -1;
	json_t *thread = NULL;
	/* strict: exactly the six members, of the right types */
	if (json_unpack_ex(root, &e, JSON_STRICT, "{s:I,s:s,s:s,s:s,s:I,s:o}", "id", &id, "userId",
			   &out->msg.user_id, "username", &out->msg.username, "content",
			   &out->msg.content, "timestamp", &ts, "threadId", &thread) != 0 ||
	    id < 0 || ts < 0 || !(json_is_string(thread) || json_is_null(thread))) {
		json_decref(root);
		memset(out, 0, sizeof(*out));
		return -EINVAL;
	}
	out->msg.id = (uint64_t)id;
	out->msg.timestamp_ms = (uint64_t)ts;
	out->msg.thread_id = json_is_string(thread) ? json_string_value(thread) : NULL;
	out->_root = root;
	return 0;
}

void rr_chat_stored_release(struct rr_chat_stored_msg *m)
{
	rr_assert(m != NULL);
	json_decref(m->_root);
	m->_root = NULL;
}
