/*
 * The JSON layer of the chat protocol (/chat/{room}, docs/protocol.md):
 * client frames parsed into a tagged struct, server frames encoded from
 * plain structs, and the stored form of a message (the value kept in the
 * room's log).
 *
 * Pure code: no I/O, no clock, no room state; the handler passes in every
 * value (ids, timestamps, user names). JSON is jansson's.
 *
 * DESIGN: the stored form of a message IS the message object of the
 * protocol, {"id","userId","username","content","timestamp","threadId"}, in
 * that order, compact and escaped exactly as it is sent. So a `message`
 * frame, a `history` or an `initial_state` built from the log is a
 * concatenation of stored values with a fixed prefix and suffix: replaying
 * a room re-parses nothing.
 *
 * Output escaping (every encoder): compact, non-ASCII kept as raw UTF-8,
 * `"` `\` and control characters escaped by jansson, and U+2028/U+2029
 * written as \u2028/\u2029 (valid raw in JSON but line terminators in older
 * JavaScript, so a client that evals or embeds a frame cannot be broken by
 * a message). Strings handed to encoders must be valid UTF-8: anything else
 * is -EINVAL, never a malformed frame.
 */
#ifndef RR_CHAT_CHAT_JSON_H
#define RR_CHAT_CHAT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits ---- */

/* Message content in bytes (UTF-8, after JSON unescaping) when the caller
 * passes 0: a chat line, not a file transfer; the stored log keeps up to
 * 1000 messages per room, so this bounds a room's history at ~4 MiB. */
#define RR_CHAT_CONTENT_MAX_DEFAULT 4096
/* A frame longer than 6 * content_max + RR_CHAT_FRAME_SLACK is too_large
 * without being parsed: the longest legal content takes at most 6 bytes per
 * byte (a control character written as \u0001), the slack covers the other
 * fields. Bounds the parse work one frame can cause. */
#define RR_CHAT_FRAME_SLACK 2048
/* presence status, threadId and a string requestId (bytes). They are echoed
 * to every member or back to the sender, so they stay short. */
#define RR_CHAT_STATUS_MAX 64
#define RR_CHAT_THREAD_ID_MAX 128
#define RR_CHAT_REQUEST_ID_MAX 64
/* requestId as JSON text: a 64-byte string escapes to at most 6 bytes per
 * byte plus quotes; a number re-encodes to < 30 bytes. */
#define RR_CHAT_REQUEST_ID_JSON_MAX (6 * RR_CHAT_REQUEST_ID_MAX + 2)
/* history: `limit` when absent, and its ceiling (protocol.md; larger
 * values are clamped, not refused). */
#define RR_CHAT_HISTORY_LIMIT_DEFAULT 50
#define RR_CHAT_HISTORY_LIMIT_MAX 100

/* ---- client → server ---- */

enum rr_chat_type {
	RR_CHAT_MESSAGE = 1,
	RR_CHAT_TYPING,
	RR_CHAT_PRESENCE,
	RR_CHAT_SYNC,
	RR_CHAT_HISTORY,
	RR_CHAT_HEARTBEAT,
	RR_CHAT_PING,
};

/* The `code` of an error frame. The parser produces the first three; the
 * handler uses the others. */
enum rr_chat_err {
	RR_CHAT_OK = 0,
	RR_CHAT_E_INVALID_FORMAT, /* "invalid_format" */
	RR_CHAT_E_UNKNOWN_TYPE,	  /* "unknown_type" */
	RR_CHAT_E_TOO_LARGE,	  /* "too_large" */
	RR_CHAT_E_NO_PERMISSION,  /* "no_permission" */
	RR_CHAT_E_RATE_LIMITED,	  /* "rate_limited" */
};

/* The protocol's code string for e ("invalid_format", ...); "" for OK. */
const char *rr_chat_err_code(enum rr_chat_err e);

/*
 * A parsed client frame. Strings point into memory owned by the struct
 * (released by rr_chat_in_release): NUL-terminated, valid UTF-8, no NUL
 * bytes inside (the parser refuses \u0000), lengths in bytes.
 * Unknown members of any frame are ignored.
 */
struct rr_chat_in {
	enum rr_chat_type type;
	/* on error: a short human sentence for the error frame's `message`
	 * (static storage; says which field, never echoes input) */
	const char *why;
	union {
		struct {
			const char *content; /* required string, <= content_max */
			size_t content_len;
			const char *thread_id; /* string <= RR_CHAT_THREAD_ID_MAX; NULL
						* when absent or null */
			size_t thread_id_len;
		} message;
		struct {
			bool is_typing; /* required bool */
		} typing;
		struct {
			const char *status; /* required string <= RR_CHAT_STATUS_MAX */
			size_t status_len;
		} presence;
		struct {
			uint64_t after_id; /* required integer >= 0 */
		} sync;
		struct {
			uint64_t before_id; /* integer >= 0; absent or null → 0, which
					     * means "the newest" (as RR_STORE_READ_BEFORE's
					     * id 0; ids start at 1) */
			uint32_t limit;	    /* 1..100: absent → 50, > 100 → 100 */
		} history;
	};
	/* message only: the requestId (string <= RR_CHAT_REQUEST_ID_MAX bytes,
	 * or a number) re-encoded as compact JSON text to put verbatim in the
	 * ack (string → "\"r1\"", number → "17"); request_id_len 0 when absent
	 * or null. NUL-terminated. */
	char request_id[RR_CHAT_REQUEST_ID_JSON_MAX + 1];
	size_t request_id_len;
	void *_root; /* the parsed document the pointers above point into */
};

/*
 * Parse one client text frame text[0..len) (need not be NUL-terminated).
 * content_max: longest message content in bytes; 0 → the default
 * (RR_CHAT_CONTENT_MAX_DEFAULT); SIZE_MAX → no limit of its own (the
 * WebSocket layer's --max-message-bytes still bounds the frame).
 * Returns RR_CHAT_OK with *in filled, or an error with in->why set:
 *   RR_CHAT_E_INVALID_FORMAT  not JSON (incl. invalid UTF-8, \u0000 in a
 *     string, duplicate member names, trailing bytes), not an object, `type`
 *     missing or not a string, a required field missing, a field of the
 *     wrong type or out of range (negative id, limit < 1, fraction)
 *   RR_CHAT_E_UNKNOWN_TYPE    `type` is a string this protocol doesn't know
 *   RR_CHAT_E_TOO_LARGE       content over content_max, status/threadId/
 *     requestId over their limit, or the whole frame over the pre-parse cap
 * Numbers given where an id or limit is expected may be integers or
 * integral reals (5.0). *in is overwritten without being released: release
 * an earlier result first. Whatever it returns, call rr_chat_in_release(in)
 * when done (a no-op after an error).
 */
enum rr_chat_err rr_chat_parse(struct rr_chat_in *in, const char *text, size_t len,
			       size_t content_max);

void rr_chat_in_release(struct rr_chat_in *in);

/* ---- output buffer ---- */

/* A growable text buffer, reusable across encodes: each encoder REPLACES
 * its content with one NUL-terminated frame in data[0..len). Start from
 * {0}; free with rr_chat_buf_free. After an error len is 0. */
struct rr_chat_buf {
	char *data;
	size_t len;
	size_t cap;
};

void rr_chat_buf_free(struct rr_chat_buf *b);

/* ---- server → client ---- */

/* One chat message, as sent and as stored. All strings NUL-terminated
 * UTF-8; thread_id NULL → "threadId":null. */
struct rr_chat_msg {
	uint64_t id;
	const char *user_id;
	const char *username;
	const char *content;
	uint64_t timestamp_ms;
	const char *thread_id;
};

/* An online user: {"userId","username"}. */
struct rr_chat_user {
	const char *id;
	const char *name;
};

/* A stored message value (rr_chat_encode_stored's output, as read back). */
struct rr_chat_stored {
	const char *data;
	size_t len;
};

struct rr_chat_welcome {
	const char *room;
	const char *session;
	const char *resume;
	const char *epoch;
	uint64_t last_id;
	const char *user_id;
	const char *user_name;
	uint32_t heartbeat_ms;
};

/*
 * Encoders. Each returns 0 with the frame in b, or -EINVAL (a string that
 * is NULL where one is required or not valid UTF-8, a number over
 * INT64_MAX, a malformed stored value) or -ENOMEM. Field order is as shown.
 */

/* {"type":"welcome","room","session","resume","epoch","lastId",
 *  "user":{"id","name"},"heartbeatMs"} */
int rr_chat_encode_welcome(struct rr_chat_buf *b, const struct rr_chat_welcome *w);

/* {"type":"initial_state","messages":[msg...],"onlineUsers":[{"userId",
 * "username"}...]}: from message structs, or from stored values (copied
 * as they are, oldest first as given). */
int rr_chat_encode_initial_state(struct rr_chat_buf *b, const struct rr_chat_msg *msgs, size_t n,
				 const struct rr_chat_user *users, size_t n_users);
int rr_chat_encode_initial_state_stored(struct rr_chat_buf *b, const struct rr_chat_stored *msgs,
					size_t n, const struct rr_chat_user *users, size_t n_users);

/* {"type":"message","message":{"id","userId","username","content",
 *  "timestamp","threadId"}} */
int rr_chat_encode_message(struct rr_chat_buf *b, const struct rr_chat_msg *m);

/* {"type":"ack","requestId":<request_id>,"id":N}; request_id is the JSON
 * text from rr_chat_in.request_id (trusted: it is copied as is); len 0 →
 * the requestId member is left out. */
int rr_chat_encode_ack(struct rr_chat_buf *b, const char *request_id, size_t request_id_len,
		       uint64_t id);

/* {"type":"typing","userId","username","isTyping"} */
int rr_chat_encode_typing(struct rr_chat_buf *b, const char *user_id, const char *username,
			  bool is_typing);

/* {"type":"presence","userId","status"} */
int rr_chat_encode_presence(struct rr_chat_buf *b, const char *user_id, const char *status);

/* {"type":"user_joined"|"user_disconnected","userId","username"} */
int rr_chat_encode_user_joined(struct rr_chat_buf *b, const char *user_id, const char *username);
int rr_chat_encode_user_disconnected(struct rr_chat_buf *b, const char *user_id,
				     const char *username);

/* {"type":"synced","recovered","lastId"} */
int rr_chat_encode_synced(struct rr_chat_buf *b, bool recovered, uint64_t last_id);

/* {"type":"history","messages":[...]} from structs or stored values. */
int rr_chat_encode_history(struct rr_chat_buf *b, const struct rr_chat_msg *msgs, size_t n);
int rr_chat_encode_history_stored(struct rr_chat_buf *b, const struct rr_chat_stored *msgs,
				  size_t n);

/* {"type":"error","code":rr_chat_err_code(code),"message"}; code must not
 * be RR_CHAT_OK; message NULL → "". */
int rr_chat_encode_error(struct rr_chat_buf *b, enum rr_chat_err code, const char *message);

/* {"type":"heartbeat_ack","timestamp":ms} */
int rr_chat_encode_heartbeat_ack(struct rr_chat_buf *b, uint64_t timestamp_ms);

/* {"type":"pong"} */
int rr_chat_encode_pong(struct rr_chat_buf *b);

/* ---- the stored form ---- */

/* The value to append to the room's log: the message object alone,
 * {"id","userId","username","content","timestamp","threadId"}. */
int rr_chat_encode_stored(struct rr_chat_buf *b, const struct rr_chat_msg *m);

/* The `message` frame for a stored value: prefix + value + suffix. Only
 * the shape is checked (an object: starts with '{', ends with '}', no NUL);
 * the value is trusted as written by rr_chat_encode_stored. -EINVAL on a
 * bad shape. */
int rr_chat_message_from_stored(struct rr_chat_buf *b, const char *stored, size_t len);

/* A stored value decoded back into fields (for tests, tools, migrations:
 * the serving path never needs it). Pointers are valid until
 * rr_chat_stored_release. Returns 0, -EINVAL (not a stored message: not
 * JSON, a field missing or of the wrong type) or -ENOMEM. */
struct rr_chat_stored_msg {
	struct rr_chat_msg msg;
	void *_root;
};
int rr_chat_stored_decode(struct rr_chat_stored_msg *out, const char *stored, size_t len);
void rr_chat_stored_release(struct rr_chat_stored_msg *m);

#endif
