/*
 * ringroom-bench's side of ringroom's chat protocol (/chat/{room}): the JSON
 * a publisher sends and the few fields the bench reads back.
 *
 * A chat message's content starts with the bench stamp, hex-encoded (so it
 * is plain JSON string text), padded with letters to --size; the requestId
 * is "<run id in hex>.<send time in ns>", so an ack is timed from its own
 * text, with no table of messages in flight. The reader looks only at the
 * top-level type (the server writes it first) and at "content" or
 * "requestId"; the fields the bench reads never need JSON escapes.
 */
#ifndef RR_BENCH_CHAT_H
#define RR_BENCH_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define RR_BENCH_CHAT_STAMP_HEX (2 * RR_BENCH_STAMP_LEN)
/* JSON around the content of a message the bench sends, at most. */
#define RR_BENCH_CHAT_ENVELOPE 96

/* Longest payload rr_bench_chat_encode writes for a --size. */
size_t rr_bench_chat_max(uint32_t size);

/* {"type":"message","content":"<stamp hex><padding>","requestId":"<run>.<ts>"}
 * into out (rr_bench_chat_max(size) bytes); returns the length. */
size_t rr_bench_chat_encode(char *out, const struct rr_bench_stamp *st, uint32_t size);

enum rr_bench_chat_kind {
	RR_BENCH_CHAT_BAD = -1,	 /* not a chat JSON object */
	RR_BENCH_CHAT_OTHER = 0, /* welcome, user_joined, presence ...: not measured */
	RR_BENCH_CHAT_MESSAGE,	 /* a message carrying a bench stamp: in .stamp */
	RR_BENCH_CHAT_FOREIGN,	 /* a message without a bench stamp (or cut off) */
	RR_BENCH_CHAT_ACK,	 /* .ack_run, .ack_ts from the requestId */
	RR_BENCH_CHAT_INITIAL,	 /* initial_state: the connection is a member */
	RR_BENCH_CHAT_ERROR,	 /* an error frame */
};

struct rr_bench_chat_frame {
	struct rr_bench_stamp stamp;
	uint32_t ack_run;
	uint64_t ack_ts;
};

/* Classify a server frame from its first n bytes. */
enum rr_bench_chat_kind rr_bench_chat_parse(const uint8_t *p, size_t n,
					    struct rr_bench_chat_frame *f);

#endif
