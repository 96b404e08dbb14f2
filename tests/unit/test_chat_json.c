/*
 * The chat protocol's JSON layer (src/chat/chat_json.c): every client frame
 * type and every error code the parser gives, every server frame byte for
 * byte, escaping of awkward content (quotes, backslash, control characters,
 * U+2028/9, emoji, invalid UTF-8), and the stored form ↔ frame round trip.
 */
#include "chat/chat_json.h"
#include "check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static struct rr_chat_in in;

static enum rr_chat_err parse(const char *s)
{
	rr_chat_in_release(&in);
	return rr_chat_parse(&in, s, strlen(s), 0);
}

static bool buf_is(const struct rr_chat_buf *b, const char *want)
{
	if (b->len == strlen(want) && b->data != NULL && memcmp(b->data, want, b->len) == 0 &&
	    b->data[b->len] == '\0')
		return true;
	fprintf(stderr, "got  %.*s\nwant %s\n", (int)b->len, b->data ? b->data : "", want);
	return false;
}

static void test_parse_message(void)
{
	CHECK_EQ(parse("{\"type\":\"message\",\"content\":\"hi\"}"), RR_CHAT_OK);
	CHECK_EQ(in.type, RR_CHAT_MESSAGE);
	CHECK(strcmp(in.message.content, "hi") == 0);
	CHECK_EQ(in.message.content_len, 2);
	CHECK(in.message.thread_id == NULL);
	CHECK_EQ(in.request_id_len, 0);
	CHECK(in.why == NULL);

	CHECK_EQ(parse("{\"content\":\"a\\u00e9\\ud83d\\ude00\",\"threadId\":\"t-9\","
		       "\"requestId\":\"r1\",\"type\":\"message\",\"extra\":[1,{}]}"),
		 RR_CHAT_OK);
	CHECK(strcmp(in.message.content, "a\xc3\xa9\xf0\x9f\x98\x80") == 0);
	CHECK_EQ(in.message.content_len, 7);
	CHECK(in.message.thread_id && strcmp(in.message.thread_id, "t-9") == 0);
	CHECK_EQ(in.message.thread_id_len, 3);
	CHECK(strcmp(in.request_id, "\"r1\"") == 0);
	CHECK_EQ(in.request_id_len, 4);

	CHECK_EQ(
	    parse("{\"type\":\"message\",\"content\":\"\",\"threadId\":null,\"requestId\":null}"),
	    RR_CHAT_OK);
	CHECK_EQ(in.message.content_len, 0);
	CHECK(in.message.thread_id == NULL);
	CHECK_EQ(in.request_id_len, 0);

	/* requestId numbers, re-encoded compactly */
	CHECK_EQ(parse("{\"type\":\"message\",\"content\":\"x\",\"requestId\":17}"), RR_CHAT_OK);
	CHECK(strcmp(in.request_id, "17") == 0);
	CHECK_EQ(parse("{\"type\":\"message\",\"content\":\"x\",\"requestId\":-3}"), RR_CHAT_OK);
	CHECK(strcmp(in.request_id, "-3") == 0);
	CHECK_EQ(parse("{\"type\":\"message\",\"content\":\"x\",\"requestId\":1.5}"), RR_CHAT_OK);
	CHECK(strcmp(in.request_id, "1.5") == 0);
	CHECK_EQ(parse("{\"type\":\"message\",\"content\":\"x\",\"requestId\":9007199254740993}"),
		 RR_CHAT_OK);
	CHECK(strcmp(in.request_id, "9007199254740993") == 0);
	/* a string requestId keeps its escapes valid, U+2028 escaped */
	CHECK_EQ(parse("{\"type\":\"message\",\"content\":\"x\",\"requestId\":\"a\\\"b\\\\c\\n"
		       "\\u2028\\u00e9\"}"),
		 RR_CHAT_OK);
	CHECK(strcmp(in.request_id, "\"a\\\"b\\\\c\\n\\u2028\xc3\xa9\"") == 0);
	CHECK_EQ(in.request_id_len, strlen(in.request_id));

	/* the longest requestId: 64 control characters → 386 bytes of JSON */
	char frame[1024];
	int n = snprintf(frame, sizeof(frame),
			 "{\"type\":\"message\",\"content\":\"x\",\"requestId\":\"");
	for (int i = 0; i < RR_CHAT_REQUEST_ID_MAX; i++)
		n += snprintf(frame + n, sizeof(frame) - (size_t)n, "\\u0001");
	snprintf(frame + n, sizeof(frame) - (size_t)n, "\"}");
	CHECK_EQ(parse(frame), RR_CHAT_OK);
	CHECK_EQ(in.request_id_len, RR_CHAT_REQUEST_ID_JSON_MAX);
	/* 65 bytes is too large */
	n = snprintf(frame, sizeof(frame),
		     "{\"type\":\"message\",\"content\":\"x\",\"requestId\":\"");
	memset(frame + n, 'r', 65);
	snprintf(frame + n + 65, sizeof(frame) - (size_t)n - 65, "\"}");
	CHECK_EQ(parse(frame), RR_CHAT_E_TOO_LARGE);
	CHECK(in.why != NULL);
}

static void test_parse_others(void)
{
	CHECK_EQ(parse("{\"type\":\"typing\",\"isTyping\":true}"), RR_CHAT_OK);
	CHECK_EQ(in.type, RR_CHAT_TYPING);
	CHECK(in.typing.is_typing);
	CHECK_EQ(parse("{\"type\":\"typing\",\"isTyping\":false}"), RR_CHAT_OK);
	CHECK(!in.typing.is_typing);

	CHECK_EQ(parse("{\"type\":\"presence\",\"status\":\"away\"}"), RR_CHAT_OK);
	CHECK_EQ(in.type, RR_CHAT_PRESENCE);
	CHECK(strcmp(in.presence.status, "away") == 0);
	CHECK_EQ(in.presence.status_len, 4);

	char frame[256], status[80];
	memset(status, 's', 64);
	status[64] = '\0';
	snprintf(frame, sizeof(frame), "{\"type\":\"presence\",\"status\":\"%s\"}", status);
	CHECK_EQ(parse(frame), RR_CHAT_OK);
	CHECK_EQ(in.presence.status_len, 64);
	status[64] = 's';
	status[65] = '\0';
	snprintf(frame, sizeof(frame), "{\"type\":\"presence\",\"status\":\"%s\"}", status);
	CHECK_EQ(parse(frame), RR_CHAT_E_TOO_LARGE);

	CHECK_EQ(parse("{\"type\":\"sync\",\"afterMessageId\":41}"), RR_CHAT_OK);
	CHECK_EQ(in.type, RR_CHAT_SYNC);
	CHECK_EQ(in.sync.after_id, 41);
	CHECK_EQ(parse("{\"type\":\"sync\",\"afterMessageId\":0}"), RR_CHAT_OK);
	CHECK_EQ(in.sync.after_id, 0);
	CHECK_EQ(parse("{\"type\":\"sync\",\"afterMessageId\":7.0}"), RR_CHAT_OK);
	CHECK_EQ(in.sync.after_id, 7);
	CHECK_EQ(parse("{\"type\":\"sync\",\"afterMessageId\":9223372036854775807}"), RR_CHAT_OK);
	CHECK(in.sync.after_id == 9223372036854775807ull);

	CHECK_EQ(parse("{\"type\":\"history\"}"), RR_CHAT_OK);
	CHECK_EQ(in.type, RR_CHAT_HISTORY);
	CHECK_EQ(in.history.before_id, 0);
	CHECK_EQ(in.history.limit, 50);
	CHECK_EQ(parse("{\"type\":\"history\",\"beforeId\":100,\"limit\":20}"), RR_CHAT_OK);
	CHECK_EQ(in.history.before_id, 100);
	CHECK_EQ(in.history.limit, 20);
	CHECK_EQ(parse("{\"type\":\"history\",\"beforeId\":null,\"limit\":null}"), RR_CHAT_OK);
	CHECK_EQ(in.history.before_id, 0);
	CHECK_EQ(in.history.limit, 50);
	CHECK_EQ(parse("{\"type\":\"history\",\"beforeId\":5,\"limit\":100}"), RR_CHAT_OK);
	CHECK_EQ(in.history.limit, 100);
	CHECK_EQ(parse("{\"type\":\"history\",\"beforeId\":5,\"limit\":101}"), RR_CHAT_OK);
	CHECK_EQ(in.history.limit, 100);
	CHECK_EQ(parse("{\"type\":\"history\",\"limit\":4000000000000}"), RR_CHAT_OK);
	CHECK_EQ(in.history.limit, 100);
	CHECK_EQ(parse("{\"type\":\"history\",\"limit\":1}"), RR_CHAT_OK);
	CHECK_EQ(in.history.limit, 1);

	CHECK_EQ(parse("{\"type\":\"heartbeat\"}"), RR_CHAT_OK);
	CHECK_EQ(in.type, RR_CHAT_HEARTBEAT);
	CHECK_EQ(parse("{\"type\":\"ping\",\"anything\":[1,2,3]}"), RR_CHAT_OK);
	CHECK_EQ(in.type, RR_CHAT_PING);
	CHECK_EQ(parse(" \t\r\n{\"type\":\"ping\"}\n"), RR_CHAT_OK);
}

static void test_parse_errors(void)
{
	static const char *invalid[] = {
	    "",
	    " ",
	    "nope",
	    "{",
	    "{\"type\":\"ping\"",
	    "{\"type\":\"ping\"}x",
	    "{\"type\":\"ping\"}{}",
	    "{'type':'ping'}",
	    "{\"type\":\"ping\",}",
	    "[\"type\",\"ping\"]",
	    "\"ping\"",
	    "42",
	    "null",
	    "{}",
	    "{\"kind\":\"ping\"}",
	    "{\"type\":null}",
	    "{\"type\":7}",
	    "{\"type\":[\"ping\"]}",
	    "{\"type\":{\"ping\":1}}",
	    "{\"type\":\"ping\",\"type\":\"ping\"}", /* duplicate member */
	    "{\"type\":\"message\"}",
	    "{\"type\":\"message\",\"content\":null}",
	    "{\"type\":\"message\",\"content\":5}",
	    "{\"type\":\"message\",\"content\":[\"hi\"]}",
	    "{\"type\":\"message\",\"content\":\"a\\u0000b\"}",
	    "{\"type\":\"message\",\"content\":\"raw\ttab\"}",
	    "{\"type\":\"message\",\"content\":\"\\ud800\"}", /* lone surrogate */
	    "{\"type\":\"message\",\"content\":\"\\x41\"}",
	    "{\"type\":\"message\",\"content\":\"x\",\"threadId\":5}",
	    "{\"type\":\"message\",\"content\":\"x\",\"threadId\":{}}",
	    "{\"type\":\"message\",\"content\":\"x\",\"requestId\":true}",
	    "{\"type\":\"message\",\"content\":\"x\",\"requestId\":[1]}",
	    "{\"type\":\"message\",\"content\":\"x\",\"requestId\":{\"a\":1}}",
	    "{\"type\":\"typing\"}",
	    "{\"type\":\"typing\",\"isTyping\":\"true\"}",
	    "{\"type\":\"typing\",\"isTyping\":1}",
	    "{\"type\":\"typing\",\"isTyping\":null}",
	    "{\"type\":\"presence\"}",
	    "{\"type\":\"presence\",\"status\":3}",
	    "{\"type\":\"sync\"}",
	    "{\"type\":\"sync\",\"afterMessageId\":-1}",
	    "{\"type\":\"sync\",\"afterMessageId\":1.5}",
	    "{\"type\":\"sync\",\"afterMessageId\":\"5\"}",
	    "{\"type\":\"sync\",\"afterMessageId\":null}",
	    "{\"type\":\"sync\",\"afterMessageId\":1e300}",
	    "{\"type\":\"sync\",\"afterMessageId\":99999999999999999999}",
	    "{\"type\":\"history\",\"beforeId\":-1}",
	    "{\"type\":\"history\",\"beforeId\":\"10\"}",
	    "{\"type\":\"history\",\"limit\":0}",
	    "{\"type\":\"history\",\"limit\":-5}",
	    "{\"type\":\"history\",\"limit\":2.5}",
	    "{\"type\":\"history\",\"limit\":\"10\"}",
	};
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		enum rr_chat_err e = parse(invalid[i]);
		if (e != RR_CHAT_E_INVALID_FORMAT)
			fprintf(stderr, "frame %s: %d\n", invalid[i], (int)e);
		CHECK_EQ(e, RR_CHAT_E_INVALID_FORMAT);
		CHECK(in.why != NULL && in.why[0] != '\0');
		CHECK(in._root == NULL);
	}

	/* invalid UTF-8 (overlong, truncated, stray continuation, 0xFF) */
	static const char *bad_utf8[] = {
	    "{\"type\":\"message\",\"content\":\"\xc0\xaf\"}",
	    "{\"type\":\"message\",\"content\":\"\xe2\x82\"}",
	    "{\"type\":\"message\",\"content\":\"\x80\"}",
	    "{\"type\":\"message\",\"content\":\"\xff\"}",
	    "{\"type\":\"message\",\"content\":\"\xed\xa0\x80\"}", /* surrogate */
	    "{\"type\":\"mess\xc3\"}",
	};
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
		CHECK_EQ(parse(bad_utf8[i]), RR_CHAT_E_INVALID_FORMAT);

	/* a NUL byte inside the frame */
	static const char nul[] = "{\"type\":\"ping\"}\0";
	CHECK_EQ(rr_chat_parse(&in, nul, sizeof(nul) - 1, 0), RR_CHAT_E_INVALID_FORMAT);
	rr_chat_in_release(&in);

	static const char *unknown[] = {
	    "{\"type\":\"\"}",	  "{\"type\":\"MESSAGE\"}", "{\"type\":\"messages\"}",
	    "{\"type\":\"ack\"}", "{\"type\":\"welcome\"}", "{\"type\":\"ping \"}",
	    "{\"type\":\"pin\"}",
	};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		CHECK_EQ(parse(unknown[i]), RR_CHAT_E_UNKNOWN_TYPE);
		CHECK(in.why != NULL && strcmp(in.why, "unknown type") == 0);
	}
	/* the type is checked before the fields */
	CHECK_EQ(parse("{\"type\":\"nope\",\"content\":5}"), RR_CHAT_E_UNKNOWN_TYPE);

	/* error release is a no-op; double release is harmless */
	rr_chat_in_release(&in);
	rr_chat_in_release(&in);
}

static void test_parse_sizes(void)
{
	/* content exactly at the limit passes, one byte over is too_large */
	enum { MAX = 100 };
	char frame[2 * MAX + 128];
	int n = snprintf(frame, sizeof(frame), "{\"type\":\"message\",\"content\":\"");
	memset(frame + n, 'c', MAX);
	snprintf(frame + n + MAX, sizeof(frame) - (size_t)n - MAX, "\"}");
	CHECK_EQ(rr_chat_parse(&in, frame, strlen(frame), MAX), RR_CHAT_OK);
	CHECK_EQ(in.message.content_len, MAX);
	rr_chat_in_release(&in);
	frame[n + MAX] = 'c';
	snprintf(frame + n + MAX + 1, sizeof(frame) - (size_t)n - MAX - 1, "\"}");
	CHECK_EQ(rr_chat_parse(&in, frame, strlen(frame), MAX), RR_CHAT_E_TOO_LARGE);
	CHECK(strcmp(in.why, "message content is too long") == 0);
	rr_chat_in_release(&in);

	/* the limit is on unescaped bytes: 4 emoji = 16 bytes, as 8 \u escapes
	 * 48 bytes of JSON */
	const char *emoji4 = "{\"type\":\"message\",\"content\":"
			     "\"\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\"}";
	CHECK_EQ(rr_chat_parse(&in, emoji4, strlen(emoji4), 16), RR_CHAT_OK);
	CHECK_EQ(in.message.content_len, 16);
	rr_chat_in_release(&in);
	CHECK_EQ(rr_chat_parse(&in, emoji4, strlen(emoji4), 15), RR_CHAT_E_TOO_LARGE);
	rr_chat_in_release(&in);

	/* default limit: 4096 */
	static char big[2 * RR_CHAT_CONTENT_MAX_DEFAULT];
	n = snprintf(big, sizeof(big), "{\"type\":\"message\",\"content\":\"");
	memset(big + n, 'x', RR_CHAT_CONTENT_MAX_DEFAULT + 1);
	snprintf(big + n + RR_CHAT_CONTENT_MAX_DEFAULT + 1, 8, "\"}");
	CHECK_EQ(parse(big), RR_CHAT_E_TOO_LARGE);
	big[n + RR_CHAT_CONTENT_MAX_DEFAULT] = '"';
	big[n + RR_CHAT_CONTENT_MAX_DEFAULT + 1] = '}';
	big[n + RR_CHAT_CONTENT_MAX_DEFAULT + 2] = '\0';
	CHECK_EQ(parse(big), RR_CHAT_OK);
	CHECK_EQ(in.message.content_len, RR_CHAT_CONTENT_MAX_DEFAULT);
	/* SIZE_MAX: no limit of its own */
	{
		size_t cl = 100000;
		char *f = malloc(cl + 64);
		int k = snprintf(f, 64, "{\"type\":\"message\",\"content\":\"");
		memset(f + k, 'y', cl);
		memcpy(f + k + cl, "\"}", 3);
		rr_chat_in_release(&in);
		CHECK_EQ(rr_chat_parse(&in, f, strlen(f), SIZE_MAX), RR_CHAT_OK);
		CHECK_EQ(in.message.content_len, cl);
		rr_chat_in_release(&in);
		CHECK_EQ(rr_chat_parse(&in, f, strlen(f), 0), RR_CHAT_E_TOO_LARGE);
		free(f);
	}

	/* threadId over its limit */
	char tframe[400];
	n = snprintf(tframe, sizeof(tframe),
		     "{\"type\":\"message\",\"content\":\"x\",\"threadId\":\"");
	memset(tframe + n, 't', RR_CHAT_THREAD_ID_MAX + 1);
	snprintf(tframe + n + RR_CHAT_THREAD_ID_MAX + 1, 8, "\"}");
	CHECK_EQ(parse(tframe), RR_CHAT_E_TOO_LARGE);
	tframe[n + RR_CHAT_THREAD_ID_MAX] = '"';
	tframe[n + RR_CHAT_THREAD_ID_MAX + 1] = '}';
	tframe[n + RR_CHAT_THREAD_ID_MAX + 2] = '\0';
	CHECK_EQ(parse(tframe), RR_CHAT_OK);
	CHECK_EQ(in.message.thread_id_len, RR_CHAT_THREAD_ID_MAX);
	rr_chat_in_release(&in);

	/* the pre-parse cap: 6 * content_max + slack, whatever the type */
	size_t cap = 6 * 10 + RR_CHAT_FRAME_SLACK;
	char *huge = malloc(cap + 2);
	memset(huge, ' ', cap + 1);
	memcpy(huge, "{\"type\":\"ping\"}", 15);
	CHECK_EQ(rr_chat_parse(&in, huge, cap, 10), RR_CHAT_OK);
	rr_chat_in_release(&in);
	CHECK_EQ(rr_chat_parse(&in, huge, cap + 1, 10), RR_CHAT_E_TOO_LARGE);
	CHECK(strcmp(in.why, "frame is too large") == 0);
	rr_chat_in_release(&in);
	free(huge);
}

static void test_err_codes(void)
{
	CHECK(strcmp(rr_chat_err_code(RR_CHAT_OK), "") == 0);
	CHECK(strcmp(rr_chat_err_code(RR_CHAT_E_INVALID_FORMAT), "invalid_format") == 0);
	CHECK(strcmp(rr_chat_err_code(RR_CHAT_E_UNKNOWN_TYPE), "unknown_type") == 0);
	CHECK(strcmp(rr_chat_err_code(RR_CHAT_E_TOO_LARGE), "too_large") == 0);
	CHECK(strcmp(rr_chat_err_code(RR_CHAT_E_NO_PERMISSION), "no_permission") == 0);
	CHECK(strcmp(rr_chat_err_code(RR_CHAT_E_RATE_LIMITED), "rate_limited") == 0);
}

static const struct rr_chat_msg m1 = {
    .id = 41,
    .user_id = "u1",
    .username = "alice",
    .content = "hello",
    .timestamp_ms = 1700000000123ull,
    .thread_id = NULL,
};
static const struct rr_chat_msg m2 = {
    .id = 42,
    .user_id = "u2",
    .username = "bob",
    .content = "re: hello",
    .timestamp_ms = 1700000000456ull,
    .thread_id = "t1",
};
#define M1                                                                                         \
	"{\"id\":41,\"userId\":\"u1\",\"username\":\"alice\",\"content\":\"hello\",\"timestamp\":" \
	"1700000000123,\"threadId\":null}"
#define M2                                                                                         \
	"{\"id\":42,\"userId\":\"u2\",\"username\":\"bob\",\"content\":\"re: "                     \
	"hello\",\"timestamp\":1700000000456,\"threadId\":\"t1\"}"

static void test_encoders(void)
{
	struct rr_chat_buf b = {0};
	const struct rr_chat_welcome w = {
	    .room = "lobby",
	    .session = "s-1",
	    .resume = "r-1",
	    .epoch = "00112233aabbccdd",
	    .last_id = 41,
	    .user_id = "u1",
	    .user_name = "alice",
	    .heartbeat_ms = 25000,
	};
	CHECK_EQ(rr_chat_encode_welcome(&b, &w), 0);
	CHECK(buf_is(&b, "{\"type\":\"welcome\",\"room\":\"lobby\",\"session\":\"s-1\",\"resume\":"
			 "\"r-1\",\"epoch\":\"00112233aabbccdd\",\"lastId\":41,\"user\":{\"id\":"
			 "\"u1\",\"name\":\"alice\"},\"heartbeatMs\":25000}"));

	const struct rr_chat_msg msgs[2] = {m1, m2};
	const struct rr_chat_user users[2] = {{"u1", "alice"}, {"u2", "bob"}};
	CHECK_EQ(rr_chat_encode_initial_state(&b, msgs, 2, users, 2), 0);
	CHECK(buf_is(&b, "{\"type\":\"initial_state\",\"messages\":[" M1 "," M2 "],\"onlineUsers\":"
			 "[{\"userId\":\"u1\",\"username\":\"alice\"},{\"userId\":\"u2\","
			 "\"username\":\"bob\"}]}"));
	CHECK_EQ(rr_chat_encode_initial_state(&b, NULL, 0, NULL, 0), 0);
	CHECK(buf_is(&b, "{\"type\":\"initial_state\",\"messages\":[],\"onlineUsers\":[]}"));

	CHECK_EQ(rr_chat_encode_message(&b, &m1), 0);
	CHECK(buf_is(&b, "{\"type\":\"message\",\"message\":" M1 "}"));
	CHECK_EQ(rr_chat_encode_message(&b, &m2), 0);
	CHECK(buf_is(&b, "{\"type\":\"message\",\"message\":" M2 "}"));

	CHECK_EQ(rr_chat_encode_ack(&b, "\"r1\"", 4, 42), 0);
	CHECK(buf_is(&b, "{\"type\":\"ack\",\"requestId\":\"r1\",\"id\":42}"));
	CHECK_EQ(rr_chat_encode_ack(&b, "17", 2, 1), 0);
	CHECK(buf_is(&b, "{\"type\":\"ack\",\"requestId\":17,\"id\":1}"));
	CHECK_EQ(rr_chat_encode_ack(&b, NULL, 0, 9), 0);
	CHECK(buf_is(&b, "{\"type\":\"ack\",\"id\":9}"));

	CHECK_EQ(rr_chat_encode_typing(&b, "u1", "alice", true), 0);
	CHECK(buf_is(&b, "{\"type\":\"typing\",\"userId\":\"u1\",\"username\":\"alice\","
			 "\"isTyping\":true}"));
	CHECK_EQ(rr_chat_encode_typing(&b, "u1", "alice", false), 0);
	CHECK(buf_is(&b, "{\"type\":\"typing\",\"userId\":\"u1\",\"username\":\"alice\","
			 "\"isTyping\":false}"));

	CHECK_EQ(rr_chat_encode_presence(&b, "u1", "away"), 0);
	CHECK(buf_is(&b, "{\"type\":\"presence\",\"userId\":\"u1\",\"status\":\"away\"}"));

	CHECK_EQ(rr_chat_encode_user_joined(&b, "u2", "bob"), 0);
	CHECK(buf_is(&b, "{\"type\":\"user_joined\",\"userId\":\"u2\",\"username\":\"bob\"}"));
	CHECK_EQ(rr_chat_encode_user_disconnected(&b, "u2", "bob"), 0);
	CHECK(
	    buf_is(&b, "{\"type\":\"user_disconnected\",\"userId\":\"u2\",\"username\":\"bob\"}"));

	CHECK_EQ(rr_chat_encode_synced(&b, true, 41), 0);
	CHECK(buf_is(&b, "{\"type\":\"synced\",\"recovered\":true,\"lastId\":41}"));
	CHECK_EQ(rr_chat_encode_synced(&b, false, 0), 0);
	CHECK(buf_is(&b, "{\"type\":\"synced\",\"recovered\":false,\"lastId\":0}"));

	CHECK_EQ(rr_chat_encode_history(&b, msgs, 2), 0);
	CHECK(buf_is(&b, "{\"type\":\"history\",\"messages\":[" M1 "," M2 "]}"));
	CHECK_EQ(rr_chat_encode_history(&b, NULL, 0), 0);
	CHECK(buf_is(&b, "{\"type\":\"history\",\"messages\":[]}"));

	CHECK_EQ(rr_chat_encode_error(&b, RR_CHAT_E_INVALID_FORMAT, "frame is not valid JSON"), 0);
	CHECK(buf_is(&b, "{\"type\":\"error\",\"code\":\"invalid_format\",\"message\":"
			 "\"frame is not valid JSON\"}"));
	CHECK_EQ(rr_chat_encode_error(&b, RR_CHAT_E_UNKNOWN_TYPE, "unknown type"), 0);
	CHECK(buf_is(&b, "{\"type\":\"error\",\"code\":\"unknown_type\",\"message\":"
			 "\"unknown type\"}"));
	CHECK_EQ(rr_chat_encode_error(&b, RR_CHAT_E_NO_PERMISSION, NULL), 0);
	CHECK(buf_is(&b, "{\"type\":\"error\",\"code\":\"no_permission\",\"message\":\"\"}"));
	CHECK_EQ(rr_chat_encode_error(&b, RR_CHAT_E_TOO_LARGE, "x"), 0);
	CHECK(buf_is(&b, "{\"type\":\"error\",\"code\":\"too_large\",\"message\":\"x\"}"));
	CHECK_EQ(rr_chat_encode_error(&b, RR_CHAT_E_RATE_LIMITED, "slow down"), 0);
	CHECK(buf_is(&b, "{\"type\":\"error\",\"code\":\"rate_limited\",\"message\":"
			 "\"slow down\"}"));

	CHECK_EQ(rr_chat_encode_heartbeat_ack(&b, 1700000000789ull), 0);
	CHECK(buf_is(&b, "{\"type\":\"heartbeat_ack\",\"timestamp\":1700000000789}"));
	CHECK_EQ(rr_chat_encode_pong(&b), 0);
	CHECK(buf_is(&b, "{\"type\":\"pong\"}"));

	/* refused inputs leave an empty buffer */
	struct rr_chat_msg bad = m1;
	bad.content = "\xff";
	CHECK_EQ(rr_chat_encode_message(&b, &bad), -EINVAL);
	CHECK_EQ(b.len, 0);
	bad.content = NULL;
	CHECK_EQ(rr_chat_encode_message(&b, &bad), -EINVAL);
	bad = m1;
	bad.id = (uint64_t)INT64_MAX + 1;
	CHECK_EQ(rr_chat_encode_stored(&b, &bad), -EINVAL);
	bad = m1;
	bad.thread_id = "\xc3";
	CHECK_EQ(rr_chat_encode_history(&b, &bad, 1), -EINVAL);
	CHECK_EQ(rr_chat_encode_presence(&b, "u1", NULL), -EINVAL);
	CHECK_EQ(rr_chat_encode_typing(&b, "u\xe2\x82", "x", true), -EINVAL);
	const struct rr_chat_user bad_user = {"u1", "\x80"};
	CHECK_EQ(rr_chat_encode_initial_state(&b, msgs, 2, &bad_user, 1), -EINVAL);
	CHECK_EQ(b.len, 0);
	CHECK_EQ(rr_chat_encode_synced(&b, true, UINT64_MAX), -EINVAL);
	CHECK_EQ(rr_chat_encode_ack(&b, NULL, 0, UINT64_MAX), -EINVAL);
	struct rr_chat_welcome bw = w;
	bw.epoch = NULL;
	CHECK_EQ(rr_chat_encode_welcome(&b, &bw), -EINVAL);

	rr_chat_buf_free(&b);
	rr_chat_buf_free(&b);
}

/* Content that stresses escaping: quote, backslash, slash, controls
 * (incl. DEL, which JSON allows raw), U+2028/2029, 2-, 3- and 4-byte
 * characters, and what looks like markup. */
static const char tricky[] = "q\"b\\s/n\nt\tc\x01\x1f"
			     "d\x7f"
			     "ls\xe2\x80\xa8ps\xe2\x80\xa9"
			     "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80</script>";
static const char tricky_json[] = "\"q\\\"b\\\\s/n\\nt\\tc\\u0001\\u001F"
				  "d\x7f"
				  "ls\\u2028ps\\u2029"
				  "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80</script>\"";

static void test_escaping(void)
{
	struct rr_chat_buf b = {0};
	struct rr_chat_msg m = m1;
	m.content = tricky;
	m.username = "\xe2\x80\xa8\xe2\x80\xa8";
	CHECK_EQ(rr_chat_encode_message(&b, &m), 0);
	char want[512];
	snprintf(want, sizeof(want),
		 "{\"type\":\"message\",\"message\":{\"id\":41,\"userId\":\"u1\",\"username\":"
		 "\"\\u2028\\u2028\",\"content\":%s,\"timestamp\":1700000000123,\"threadId\":"
		 "null}}",
		 tricky_json);
	CHECK(buf_is(&b, want));
	/* no raw line separators anywhere in the output */
	CHECK(memmem(b.data, b.len, "\xe2\x80\xa8", 3) == NULL);
	CHECK(memmem(b.data, b.len, "\xe2\x80\xa9", 3) == NULL);

	/* jansson reads it back to the same bytes */
	json_error_t e;
	json_t *j = json_loadb(b.data, b.len, 0, &e);
	CHECK(j != NULL);
	const char *c =
	    json_string_value(json_object_get(json_object_get(j, "message"), "content"));
	CHECK(c != NULL && strcmp(c, tricky) == 0);
	json_decref(j);

	/* and so does our parser, from a client frame carrying it */
	char frame[512];
	snprintf(frame, sizeof(frame), "{\"type\":\"message\",\"content\":%s}", tricky_json);
	CHECK_EQ(parse(frame), RR_CHAT_OK);
	CHECK(strcmp(in.message.content, tricky) == 0);
	CHECK_EQ(in.message.content_len, strlen(tricky));

	/* a buffer is reused: a long frame, then a short one */
	static char longc[3000];
	memset(longc, 'z', sizeof(longc) - 1);
	m.content = longc;
	m.username = "alice";
	CHECK_EQ(rr_chat_encode_message(&b, &m), 0);
	CHECK(b.len > sizeof(longc));
	CHECK_EQ(rr_chat_encode_pong(&b), 0);
	CHECK(buf_is(&b, "{\"type\":\"pong\"}"));

	/* many separators: growth by 3 bytes each */
	static char seps[3 * 500 + 1];
	for (int i = 0; i < 500; i++)
		memcpy(seps + 3 * i, i % 2 ? "\xe2\x80\xa9" : "\xe2\x80\xa8", 3);
	CHECK_EQ(rr_chat_encode_presence(&b, "u", seps), 0);
	CHECK_EQ(b.len,
		 strlen("{\"type\":\"presence\",\"userId\":\"u\",\"status\":\"\"}") + 6 * 500);
	CHECK(memcmp(b.data + b.len - 14, "\\u2028\\u2029\"}", 14) == 0);
	CHECK_EQ(strlen(b.data), b.len);
	rr_chat_buf_free(&b);
}

static void test_stored(void)
{
	struct rr_chat_buf b = {0}, f = {0};
	CHECK_EQ(rr_chat_encode_stored(&b, &m1), 0);
	CHECK(buf_is(&b, M1));

	/* stored → frame equals the frame encoded from the struct */
	CHECK_EQ(rr_chat_message_from_stored(&f, b.data, b.len), 0);
	CHECK(buf_is(&f, "{\"type\":\"message\",\"message\":" M1 "}"));

	/* decode gives the fields back */
	struct rr_chat_stored_msg d;
	CHECK_EQ(rr_chat_stored_decode(&d, b.data, b.len), 0);
	CHECK_EQ(d.msg.id, 41);
	CHECK(strcmp(d.msg.user_id, "u1") == 0);
	CHECK(strcmp(d.msg.username, "alice") == 0);
	CHECK(strcmp(d.msg.content, "hello") == 0);
	CHECK(d.msg.timestamp_ms == 1700000000123ull);
	CHECK(d.msg.thread_id == NULL);
	rr_chat_stored_release(&d);
	rr_chat_stored_release(&d);

	/* tricky content survives struct → stored → decode → stored */
	struct rr_chat_msg m = m2;
	m.content = tricky;
	CHECK_EQ(rr_chat_encode_stored(&b, &m), 0);
	CHECK_EQ(rr_chat_stored_decode(&d, b.data, b.len), 0);
	CHECK(strcmp(d.msg.content, tricky) == 0);
	CHECK(d.msg.thread_id && strcmp(d.msg.thread_id, "t1") == 0);
	CHECK_EQ(rr_chat_encode_stored(&f, &d.msg), 0);
	CHECK(f.len == b.len && memcmp(f.data, b.data, b.len) == 0);
	struct rr_chat_buf g = {0};
	CHECK_EQ(rr_chat_message_from_stored(&f, b.data, b.len), 0);
	CHECK_EQ(rr_chat_encode_message(&g, &m), 0);
	CHECK(f.len == g.len && memcmp(f.data, g.data, f.len) == 0);
	rr_chat_stored_release(&d);

	/* history / initial_state from stored values equal the struct forms */
	const struct rr_chat_msg msgs[2] = {m1, m2};
	const struct rr_chat_stored st[2] = {{M1, sizeof(M1) - 1}, {M2, sizeof(M2) - 1}};
	const struct rr_chat_user users[1] = {{"u\xe2\x80\xa8", "n"}};
	CHECK_EQ(rr_chat_encode_history_stored(&f, st, 2), 0);
	CHECK_EQ(rr_chat_encode_history(&g, msgs, 2), 0);
	CHECK(f.len == g.len && memcmp(f.data, g.data, f.len) == 0);
	CHECK_EQ(rr_chat_encode_history_stored(&f, NULL, 0), 0);
	CHECK(buf_is(&f, "{\"type\":\"history\",\"messages\":[]}"));
	CHECK_EQ(rr_chat_encode_initial_state_stored(&f, st, 2, users, 1), 0);
	CHECK_EQ(rr_chat_encode_initial_state(&g, msgs, 2, users, 1), 0);
	CHECK(f.len == g.len && memcmp(f.data, g.data, f.len) == 0);
	CHECK(memmem(f.data, f.len, "\"userId\":\"u\\u2028\"", 18) != NULL);

	/* shapes that are not a stored object */
	CHECK_EQ(rr_chat_message_from_stored(&f, "", 0), -EINVAL);
	CHECK_EQ(f.len, 0);
	CHECK_EQ(rr_chat_message_from_stored(&f, "{", 1), -EINVAL);
	CHECK_EQ(rr_chat_message_from_stored(&f, "[1]", 3), -EINVAL);
	CHECK_EQ(rr_chat_message_from_stored(&f, "{\0}", 3), -EINVAL);
	CHECK_EQ(rr_chat_message_from_stored(&f, NULL, 0), -EINVAL);
	const struct rr_chat_stored bad[2] = {{M1, sizeof(M1) - 1}, {"x", 1}};
	CHECK_EQ(rr_chat_encode_history_stored(&f, bad, 2), -EINVAL);
	CHECK_EQ(f.len, 0);
	CHECK_EQ(rr_chat_encode_initial_state_stored(&f, bad, 2, NULL, 0), -EINVAL);

	/* decode is strict about fields */
	static const char *not_stored[] = {
	    "",
	    "{}",
	    "[]",
	    "{\"id\":1,\"userId\":\"u\",\"username\":\"n\",\"content\":\"c\",\"timestamp\":2}",
	    "{\"id\":1,\"userId\":\"u\",\"username\":\"n\",\"content\":\"c\",\"timestamp\":2,"
	    "\"threadId\":null,\"x\":1}",
	    "{\"id\":-1,\"userId\":\"u\",\"username\":\"n\",\"content\":\"c\",\"timestamp\":2,"
	    "\"threadId\":null}",
	    "{\"id\":1,\"userId\":5,\"username\":\"n\",\"content\":\"c\",\"timestamp\":2,"
	    "\"threadId\":null}",
	    "{\"id\":1,\"userId\":\"u\",\"username\":\"n\",\"content\":\"c\",\"timestamp\":2,"
	    "\"threadId\":7}",
	    "{\"id\":1.5,\"userId\":\"u\",\"username\":\"n\",\"content\":\"c\",\"timestamp\":2,"
	    "\"threadId\":null}",
	};
	for (size_t i = 0; i < sizeof(not_stored) / sizeof(not_stored[0]); i++) {
		CHECK_EQ(rr_chat_stored_decode(&d, not_stored[i], strlen(not_stored[i])), -EINVAL);
		CHECK(d._root == NULL);
	}
	rr_chat_buf_free(&b);
	rr_chat_buf_free(&f);
	rr_chat_buf_free(&g);
}

/* What a handler does with a message: parse, store, broadcast, ack. */
static void test_message_flow(void)
{
	struct rr_chat_buf stored = {0}, frame = {0}, ack = {0};
	CHECK_EQ(
	    parse("{\"type\":\"message\",\"content\":\"hi \\\"all\\\"\",\"requestId\":\"c-7\"}"),
	    RR_CHAT_OK);
	struct rr_chat_msg m = {
	    .id = 1,
	    .user_id = "u1",
	    .username = "alice",
	    .content = in.message.content,
	    .timestamp_ms = 5,
	    .thread_id = in.message.thread_id,
	};
	CHECK_EQ(rr_chat_encode_stored(&stored, &m), 0);
	CHECK_EQ(rr_chat_message_from_stored(&frame, stored.data, stored.len), 0);
	CHECK(buf_is(&frame, "{\"type\":\"message\",\"message\":{\"id\":1,\"userId\":\"u1\","
			     "\"username\":\"alice\",\"content\":\"hi \\\"all\\\"\","
			     "\"timestamp\":5,\"threadId\":null}}"));
	CHECK_EQ(rr_chat_encode_ack(&ack, in.request_id, in.request_id_len, m.id), 0);
	CHECK(buf_is(&ack, "{\"type\":\"ack\",\"requestId\":\"c-7\",\"id\":1}"));
	rr_chat_in_release(&in);
	rr_chat_buf_free(&stored);
	rr_chat_buf_free(&frame);
	rr_chat_buf_free(&ack);
}

int main(void)
{
	test_parse_message();
	test_parse_others();
	test_parse_errors();
	test_parse_sizes();
	test_err_codes();
	test_encoders();
	test_escaping();
	test_stored();
	test_message_flow();
	rr_chat_in_release(&in);
	return check_done();
}
