/*
 * Chat tests for ringroom-bench: what a publisher sends is valid chat JSON
 * by the broker's own parser (src/chat/chat_json.c) and its content carries
 * the stamp; the broadcast of it, made by the broker's real encoders on the
 * path it serves (rr_chat_encode_stored, then rr_chat_message_from_stored),
 * gives the stamp back; the ack, made by rr_chat_encode_ack from the parsed
 * requestId, gives back the send time; and the frame reader keeps a
 * message's first bytes (keep_cap) across every split point, which is where
 * the content sits in a broadcast.
 */
#include "../chat.c"
#include "../frame.c"

#include "../../tests/unit/check.h"
#include "chat/chat_json.h"

static char out[4096];
static struct rr_chat_buf bcast, ackbuf, stored;

/* The broadcast ringroom makes of the bench message sent[0..sent_len): the
 * broker parses it, stores it as a message with an id and the sender's
 * user fields (of varying length), and sends the stored form. NULL when
 * the broker refuses what the bench sent. */
static const char *broadcast(const char *sent, size_t sent_len, const char *user, uint64_t id,
			     size_t *len)
{
	struct rr_chat_in in;
	enum rr_chat_err e = rr_chat_parse(&in, sent, sent_len, 0);

	CHECK_EQ(e, RR_CHAT_OK);
	if (e != RR_CHAT_OK) {
		rr_chat_in_release(&in);
		return NULL;
	}
	CHECK_EQ(in.type, RR_CHAT_MESSAGE);
	struct rr_chat_msg m = {.id = id,
				.user_id = user,
				.username = user,
				.content = in.message.content,
				.timestamp_ms = 1795461665581ull,
				.thread_id = NULL};
	CHECK_EQ(rr_chat_encode_stored(&stored, &m), 0);
	CHECK_EQ(rr_chat_message_from_stored(&bcast, stored.data, stored.len), 0);
	CHECK_EQ(rr_chat_encode_ack(&ackbuf, in.request_id, in.request_id_len, id), 0);
	rr_chat_in_release(&in);
	*len = bcast.len;
	return bcast.data;
}

static void test_roundtrip(void)
{
	static const uint32_t sizes[] = {28, 56, 57, 100, 1000};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct rr_bench_stamp st = {
		    .run = 0xdeadbeef, .pub = 42, .seq = 7 + k, .ts_ns = 123456789012345ull};
		size_t n = rr_bench_chat_encode(out, &st, sizes[k]);
		CHECK(n <= rr_bench_chat_max(sizes[k]));
		CHECK(memcmp(out, "{\"type\":\"message\",\"content\":\"", 29) == 0);
		CHECK_EQ(out[n - 1], '}');
		/* content is max(size, 56) characters */
		const char *c = out + 29, *e = memchr(c, '"', n - 29);
		CHECK_EQ((size_t)(e - c), sizes[k] > 56 ? sizes[k] : 56);
		size_t bn = 0;
		const char *b = broadcast(out, n, "anon-1-1", 12345 + k, &bn);
		struct rr_bench_chat_frame f;
		CHECK(b != NULL);
		if (b == NULL)
			continue;
		CHECK_EQ(rr_bench_chat_parse((const uint8_t *)b, bn, &f), RR_BENCH_CHAT_MESSAGE);
		CHECK_EQ(f.stamp.run, st.run);
		CHECK_EQ(f.stamp.pub, st.pub);
		CHECK_EQ(f.stamp.seq, st.seq);
		CHECK_EQ(f.stamp.ts_ns, st.ts_ns);
		/* the broker's ack names the request: run and send time come back */
		CHECK_EQ(rr_bench_chat_parse((const uint8_t *)ackbuf.data, ackbuf.len, &f),
			 RR_BENCH_CHAT_ACK);
		CHECK_EQ(f.ack_run, st.run);
		CHECK_EQ(f.ack_ts, st.ts_ns);
	}
}

static enum rr_bench_chat_kind parse(const char *s)
{
	struct rr_bench_chat_frame f;
	return rr_bench_chat_parse((const uint8_t *)s, strlen(s), &f);
}

static void test_kinds(void)
{
	CHECK_EQ(parse("{\"type\":\"welcome\",\"room\":\"r0\"}"), RR_BENCH_CHAT_OTHER);
	CHECK_EQ(parse("{\"type\":\"user_joined\",\"userId\":\"u\"}"), RR_BENCH_CHAT_OTHER);
	CHECK_EQ(parse("{\"type\":\"initial_state\",\"messages\":[]}"), RR_BENCH_CHAT_INITIAL);
	CHECK_EQ(parse("{\"type\":\"error\",\"code\":\"rate_limited\"}"), RR_BENCH_CHAT_ERROR);
	/* a type that only starts like one the bench reads */
	CHECK_EQ(parse("{\"type\":\"messages\",\"x\":1}"), RR_BENCH_CHAT_OTHER);
	CHECK_EQ(parse("{\"type\":\"acknowledge\"}"), RR_BENCH_CHAT_OTHER);
	CHECK_EQ(parse("not json"), RR_BENCH_CHAT_BAD);
	CHECK_EQ(parse(""), RR_BENCH_CHAT_BAD);
	/* messages that are not the bench's */
	CHECK_EQ(parse("{\"type\":\"message\",\"message\":{\"content\":\"hello\"}}"),
		 RR_BENCH_CHAT_FOREIGN);
	char b[300];
	sprintf(b, "{\"type\":\"message\",\"message\":{\"content\":\"%056d\"}}", 0);
	CHECK_EQ(parse(b), RR_BENCH_CHAT_FOREIGN); /* hex, but no magic */
	sprintf(b, "{\"type\":\"message\",\"message\":{\"content\":\"%s\"}}",
		"zz00000000000000000000000000000000000000000000000000000000");
	CHECK_EQ(parse(b), RR_BENCH_CHAT_FOREIGN);
	/* cut off inside the content (more than the bytes kept precede it) */
	struct rr_bench_stamp st = {.run = 1, .pub = 2, .seq = 3, .ts_ns = 4};
	size_t n = rr_bench_chat_encode(out, &st, 100);
	size_t bn = 0;
	const char *bc = broadcast(out, n, "u", 1, &bn);
	CHECK(bc != NULL && bn < sizeof(b));
	if (bc == NULL || bn >= sizeof(b))
		return;
	memcpy(b, bc, bn);
	char *c = strstr(b, "\"content\":\"") + 11;
	struct rr_bench_chat_frame f;
	CHECK_EQ(rr_bench_chat_parse((const uint8_t *)b, (size_t)(c - b) + 20, &f),
		 RR_BENCH_CHAT_FOREIGN);
	CHECK_EQ(rr_bench_chat_parse((const uint8_t *)b, bn, &f), RR_BENCH_CHAT_MESSAGE);
	/* acks whose requestId the bench did not write */
	CHECK_EQ(parse("{\"type\":\"ack\",\"id\":1,\"requestId\":\"r1\"}"), RR_BENCH_CHAT_BAD);
	CHECK_EQ(parse("{\"type\":\"ack\",\"id\":1,\"requestId\":\"1f.\"}"), RR_BENCH_CHAT_BAD);
	CHECK_EQ(parse("{\"type\":\"ack\",\"id\":1,\"requestId\":\"1f.12x\"}"), RR_BENCH_CHAT_BAD);
	CHECK_EQ(parse("{\"type\":\"ack\",\"id\":1}"), RR_BENCH_CHAT_BAD);
	CHECK_EQ(parse("{\"type\":\"ack\",\"id\":1,\"requestId\":\"1f.99\"}"), RR_BENCH_CHAT_ACK);
}

/* What the reader handed over. */
struct kept {
	int messages;
	size_t len;
	uint8_t first[600];
};

static int on_msg(void *ctx, uint8_t op, const uint8_t *p, size_t n, uint64_t len)
{
	struct kept *k = ctx;
	(void)op;
	(void)len;
	k->messages++;
	k->len = n;
	memcpy(k->first, p, n);
	return 0;
}

static int on_ctl(void *ctx, uint8_t op, const uint8_t *p, size_t n)
{
	(void)ctx, (void)op, (void)p, (void)n;
	return 0;
}

static const struct rr_bench_rx_ops ops = {.message = on_msg, .control = on_ctl};

/* A broadcast of 700 bytes in an unmasked server text frame, fed in two
 * pieces split at every point: the first keep_cap bytes arrive whole. */
static void test_reader_keeps(void)
{
	struct rr_bench_stamp st = {.run = 9, .pub = 1, .seq = 2, .ts_ns = 3};
	size_t n = rr_bench_chat_encode(out, &st, 500);
	size_t bn = 0;
	const char *b = broadcast(out, n, "anon-123-456", 987654, &bn);
	uint8_t frame[2100];
	CHECK(b != NULL && bn + 4 <= sizeof(frame));
	if (b == NULL || bn + 4 > sizeof(frame))
		return;
	frame[0] = 0x81;
	frame[1] = 126;
	frame[2] = (uint8_t)(bn >> 8);
	frame[3] = (uint8_t)bn;
	memcpy(frame + 4, b, bn);
	size_t fl = bn + 4;
	for (size_t cut = 0; cut <= fl; cut++) {
		struct rr_bench_rx rx = {0};
		rx.keep_cap = 512;
		struct kept k = {0};
		CHECK_EQ(rr_bench_rx_feed(&rx, frame, cut, &ops, &k), (ssize_t)cut);
		CHECK_EQ(rr_bench_rx_feed(&rx, frame + cut, fl - cut, &ops, &k),
			 (ssize_t)(fl - cut));
		CHECK_EQ(k.messages, 1);
		CHECK_EQ(k.len, (size_t)512);
		CHECK(memcmp(k.first, b, 512) == 0);
		struct rr_bench_chat_frame f;
		CHECK_EQ(rr_bench_chat_parse(k.first, k.len, &f), RR_BENCH_CHAT_MESSAGE);
		CHECK_EQ(f.stamp.seq, (uint64_t)2);
		rr_bench_rx_free(&rx);
	}
}

int main(void)
{
	test_roundtrip();
	test_kinds();
	test_reader_keeps();
	rr_chat_buf_free(&bcast);
	rr_chat_buf_free(&ackbuf);
	rr_chat_buf_free(&stored);
	return check_done();
}
