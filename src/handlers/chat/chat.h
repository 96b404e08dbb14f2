/*
 * The chat room handler (/chat/{room}): the JSON room protocol of
 * protocol.md (identity, welcome, initial state, replay with no gap into the
 * live stream, history, typing, presence, rate limits), written only against
 * the public handler API (include/ringroom/handler.h).
 *
 * The broker fills struct rr_chat_config from its flags and calls
 * rr_chat_configure() once, before any core starts; without it the defaults
 * below apply.
 */
#ifndef RR_CHAT_H
#define RR_CHAT_H

#include <stdint.h>

struct rr_handler;

struct rr_chat_config {
	/* token bucket per connection: every client frame the handler sees
	 * costs one token; rate_per_s 0 turns the limit off, burst 0 means
	 * "same as the rate" */
	uint32_t rate_per_s;
	uint32_t rate_burst;
	/* bytes of UTF-8 in a message's content; 0: no limit of its own
	 * (--max-message-bytes still applies to the whole frame) */
	uint32_t max_content_bytes;
	/* advertised to clients in welcome: how often they should heartbeat */
	uint32_t heartbeat_ms;
	/* messages in initial_state, at most RR_CHAT_INITIAL_MAX */
	uint32_t initial_messages;
};

#define RR_CHAT_RATE_DEFAULT 20
#define RR_CHAT_BURST_DEFAULT 40
#define RR_CHAT_CONTENT_DEFAULT 4096
#define RR_CHAT_HEARTBEAT_DEFAULT 25000
#define RR_CHAT_INITIAL_DEFAULT 50
/* rr_log_read_before() reads at most 100 */
#define RR_CHAT_INITIAL_MAX 100

/* Copy cfg (values out of range are clamped). Call before the cores start. */
void rr_chat_configure(const struct rr_chat_config *cfg);

/* The handler table for /chat/ rooms. */
const struct rr_handler *rr_chat_handler(void);

#endif
