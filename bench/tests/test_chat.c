/*
 * Chat tests for ringroom-bench: what a publisher sends is valid chat JSON
 * whose content carries the stamp, the server's broadcast of it (built here
 * as ringroom writes it) gives the stamp back, an ack gives back the send
 * time, and the frame reader keeps a message's first bytes (keep_cap) across
 * every split point, which is where the content sits in a broadcast.
 */
#include "../chat.c"
#include "../frame.c"

#include "../../tests/unit/check.h"

static char out[4096];

/* The broadcast ringroom makes of a bench message: the content copied from
 * what the bench sent, after an id and user fields of varying length. */
static size_t broadcast(char *dst, const char *sent, size_t sent_len, const char *user)
{
	const char *c = memmem(sent, sent_len, "\"content\":\"", 11);
	CHECK(c != NULL);
	c += 11;
	const char *e = memchr(c, '"', (size_t)(sent + sent_len - c));
	CHECK(e != NULL);
	return (size_t)sprintf(
	    dst,
	    "{\"type\":\"message\",\"message\":{\"id\":12345,\"userId\":\"%s\","
	    "\"username\":\"%s\",\"content\":\"%.*s\",\"timestamp\":1795461665581,"
	    "\"threadId\":null}}",
	    user, user, (int)(e - c), c);
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
		char b[4096];
		size_t bn = broadcast(b, out, n, "anon-1-1");
		struct rr_bench_chat_frame f;
		CHECK_EQ(rr_bench_chat_parse((const uint8_t *)b, bn, &f), RR_BENCH_CHAT_MESSAGE);
		CHECK_EQ(f.stamp.run, st.run);
		CHECK_EQ(f.stamp.pub, st.pub);
		CHECK_EQ(f.stamp.seq, st.seq);
		CHECK_EQ(f.stamp.ts_ns, st.ts_ns);
		/* the ack names the request: run and send time come back */
		const char *r = memmem(out, n, "\"requestId\":\"", 13);
		CHECK(r != NULL);
		char ack[200];
		size_t an =
		    (size_t)sprintf(ack, "{\"type\":\"ack\",\"id\":12345,\"requestId\":\"%.*s}",
				    (int)(out + n - (r + 13) - 1), r + 13);
		CHECK_EQ(rr_bench_chat_parse((const uint8_t *)ack, an, &f), RR_BENCH_CHAT_ACK);
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
	size_t bn = broadcast(b, out, n, "u");
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
	char b[2000];
	size_t bn = broadcast(b, out, n, "anon-123-456");
	uint8_t frame[2100];
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
	return check_done();
}
