/*
 * libFuzzer target for the chat protocol's JSON layer (src/chat/chat_json.c).
 *
 * The first byte picks content_max (0 → default, else 1..255), the rest is a
 * client frame. Whatever parses must obey the documented limits, and then
 * goes back out through the encoders:
 *   - message: the stored form decodes to the same fields, the `message`
 *     frame built from it equals the one built from the struct, jansson
 *     reads the content back unchanged, a client frame rebuilt from the
 *     parsed fields (with the echoed requestId text) parses to the same
 *     fields, and the ack carries a requestId equal to the one sent;
 *   - typing / presence / history / sync: their server frames are JSON that
 *     holds the same values.
 * No output ever contains a raw U+2028/U+2029 or fails to parse.
 */
#include "chat/chat_json.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

static struct rr_chat_buf b1, b2;

/* Output is one valid JSON object, with no raw line/paragraph separator. */
static json_t *check_out(const struct rr_chat_buf *b)
{
	REQUIRE(b->data != NULL && b->data[b->len] == '\0' && strlen(b->data) == b->len);
	REQUIRE(memmem(b->data, b->len, "\xe2\x80\xa8", 3) == NULL);
	REQUIRE(memmem(b->data, b->len, "\xe2\x80\xa9", 3) == NULL);
	json_error_t e;
	json_t *j = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &e);
	REQUIRE(j != NULL && json_is_object(j));
	return j;
}

static bool str_is(const json_t *v, const char *s)
{
	return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

static void check_message(const struct rr_chat_in *in, size_t content_max, const uint8_t *raw,
			  size_t raw_len)
{
	REQUIRE(in->message.content != NULL);
	REQUIRE(strlen(in->message.content) == in->message.content_len);
	REQUIRE(in->message.content_len <= content_max);
	if (in->message.thread_id) {
		REQUIRE(strlen(in->message.thread_id) == in->message.thread_id_len);
		REQUIRE(in->message.thread_id_len <= RR_CHAT_THREAD_ID_MAX);
	}
	REQUIRE(in->request_id_len <= RR_CHAT_REQUEST_ID_JSON_MAX);
	REQUIRE(strlen(in->request_id) == in->request_id_len);

	struct rr_chat_msg m = {
	    .id = 7,
	    .user_id = "u",
	    .username = "n",
	    .content = in->message.content,
	    .timestamp_ms = 99,
	    .thread_id = in->message.thread_id,
	};
	REQUIRE(rr_chat_encode_stored(&b1, &m) == 0);
	json_decref(check_out(&b1));
	struct rr_chat_stored_msg d;
	REQUIRE(rr_chat_stored_decode(&d, b1.data, b1.len) == 0);
	REQUIRE(d.msg.id == 7 && d.msg.timestamp_ms == 99);
	REQUIRE(strcmp(d.msg.content, m.content) == 0);
	REQUIRE((d.msg.thread_id == NULL) == (m.thread_id == NULL));
	REQUIRE(m.thread_id == NULL || strcmp(d.msg.thread_id, m.thread_id) == 0);
	rr_chat_stored_release(&d);

	REQUIRE(rr_chat_message_from_stored(&b2, b1.data, b1.len) == 0);
	REQUIRE(rr_chat_encode_message(&b1, &m) == 0);
	REQUIRE(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
	json_t *frame = check_out(&b1);
	REQUIRE(str_is(json_object_get(json_object_get(frame, "message"), "content"), m.content));
	json_decref(frame);

	/* the original requestId, as jansson sees it in the input */
	json_error_t e;
	json_t *orig = json_loadb((const char *)raw, raw_len, 0, &e);
	REQUIRE(orig != NULL);
	json_t *rid = json_object_get(orig, "requestId");
	json_t *echoed = NULL;
	if (in->request_id_len > 0) {
		echoed = json_loadb(in->request_id, in->request_id_len, JSON_DECODE_ANY, &e);
		REQUIRE(echoed != NULL && json_equal(echoed, rid));
	} else {
		REQUIRE(rid == NULL || json_is_null(rid));
	}

	REQUIRE(rr_chat_encode_ack(&b1, in->request_id, in->request_id_len, 7) == 0);
	json_t *ack = check_out(&b1);
	REQUIRE(str_is(json_object_get(ack, "type"), "ack"));
	REQUIRE(json_integer_value(json_object_get(ack, "id")) == 7);
	if (echoed)
		REQUIRE(json_equal(json_object_get(ack, "requestId"), echoed));
	else
		REQUIRE(json_object_get(ack, "requestId") == NULL);
	json_decref(ack);

	/* rebuild a client frame from the parsed fields: same result */
	json_t *again = json_pack("{s:s,s:s,s:s?}", "type", "message", "content", m.content,
				  "threadId", m.thread_id);
	REQUIRE(again != NULL);
	if (echoed)
		json_object_set(again, "requestId", echoed);
	char *text = json_dumps(again, JSON_COMPACT);
	REQUIRE(text != NULL);
	struct rr_chat_in in2;
	REQUIRE(rr_chat_parse(&in2, text, strlen(text), content_max) == RR_CHAT_OK);
	REQUIRE(in2.type == RR_CHAT_MESSAGE);
	REQUIRE(in2.message.content_len == in->message.content_len);
	REQUIRE(memcmp(in2.message.content, in->message.content, in->message.content_len) == 0);
	REQUIRE((in2.message.thread_id == NULL) == (in->message.thread_id == NULL));
	REQUIRE(in2.request_id_len == in->request_id_len);
	REQUIRE(memcmp(in2.request_id, in->request_id, in->request_id_len) == 0);
	rr_chat_in_release(&in2);
	free(text);
	json_decref(again);
	json_decref(echoed);
	json_decref(orig);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t content_max = data[0];
	size_t limit = content_max ? content_max : RR_CHAT_CONTENT_MAX_DEFAULT;
	const uint8_t *raw = data + 1;
	size_t n = size - 1;
	char *text = malloc(n ? n : 1); /* exact size: ASan sees overreads */
	if (n)
		memcpy(text, raw, n);

	struct rr_chat_in in;
	enum rr_chat_err rc = rr_chat_parse(&in, text, n, content_max);
	if (rc != RR_CHAT_OK) {
		REQUIRE(rc == RR_CHAT_E_INVALID_FORMAT || rc == RR_CHAT_E_UNKNOWN_TYPE ||
			rc == RR_CHAT_E_TOO_LARGE);
		REQUIRE(in.why != NULL && in._root == NULL);
		REQUIRE(rr_chat_encode_error(&b1, rc, in.why) == 0);
		json_t *j = check_out(&b1);
		REQUIRE(str_is(json_object_get(j, "code"), rr_chat_err_code(rc)));
		json_decref(j);
		goto out;
	}
	json_t *j;
	switch (in.type) {
	case RR_CHAT_MESSAGE:
		check_message(&in, limit, raw, n);
		break;
	case RR_CHAT_TYPING:
		REQUIRE(rr_chat_encode_typing(&b1, "u", "n", in.typing.is_typing) == 0);
		j = check_out(&b1);
		REQUIRE(json_is_true(json_object_get(j, "isTyping")) == in.typing.is_typing);
		json_decref(j);
		break;
	case RR_CHAT_PRESENCE:
		REQUIRE(in.presence.status_len <= RR_CHAT_STATUS_MAX);
		REQUIRE(strlen(in.presence.status) == in.presence.status_len);
		REQUIRE(rr_chat_encode_presence(&b1, "u", in.presence.status) == 0);
		j = check_out(&b1);
		REQUIRE(str_is(json_object_get(j, "status"), in.presence.status));
		json_decref(j);
		break;
	case RR_CHAT_SYNC:
		REQUIRE(in.sync.after_id <= INT64_MAX);
		REQUIRE(rr_chat_encode_synced(&b1, true, in.sync.after_id) == 0);
		j = check_out(&b1);
		REQUIRE((uint64_t)json_integer_value(json_object_get(j, "lastId")) ==
			in.sync.after_id);
		json_decref(j);
		break;
	case RR_CHAT_HISTORY:
		REQUIRE(in.history.limit >= 1 && in.history.limit <= RR_CHAT_HISTORY_LIMIT_MAX);
		REQUIRE(in.history.before_id <= INT64_MAX);
		break;
	case RR_CHAT_HEARTBEAT:
	case RR_CHAT_PING:
		break;
	default:
		REQUIRE(0);
	}
out:
	rr_chat_in_release(&in);
	free(text);
	return 0;
}
