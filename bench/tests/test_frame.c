/*
 * Client framing tests. First against an oracle that is not ringroom's:
 * the example frames of RFC 6455 section 5.7, byte for byte (the encoder
 * must produce the masked ones exactly, the reader must deliver the
 * unmasked ones; frame_oracle.py adds the Python test client's encoder as a
 * second independent oracle). Then the bench's masked encoder is checked
 * against ringroom's server-side codec (src/ws), and the bench's reader is
 * fed server frames made by that codec's encoder, at every split point, so
 * the two directions of the same RFC agree with each other.
 */
#include "../frame.c"

#include "../../tests/unit/check.h"
#include "ws/ws.h"

static uint8_t buf[70000 + 32];
static uint8_t payload[70000];

/* What the reader delivered. */
struct seen {
	int messages, pings, pongs, closes;
	uint8_t last_op;
	uint64_t last_len;
	size_t stamp_len;
	uint8_t stamp[RR_BENCH_STAMP_LEN];
	uint8_t ctrl[125];
	size_t ctrl_len;
	int stop_after; /* return non-zero from the callback after this many events */
	int events;
};

static int on_msg(void *ctx, uint8_t op, const uint8_t *st, size_t sl, uint64_t len)
{
	struct seen *s = ctx;
	s->messages++;
	s->last_op = op;
	s->last_len = len;
	s->stamp_len = sl;
	memcpy(s->stamp, st, sl);
	return s->stop_after && ++s->events >= s->stop_after;
}

static int on_ctl(void *ctx, uint8_t op, const uint8_t *p, size_t n)
{
	struct seen *s = ctx;
	if (op == RR_BENCH_OP_PING)
		s->pings++;
	else if (op == RR_BENCH_OP_PONG)
		s->pongs++;
	else if (op == RR_BENCH_OP_CLOSE)
		s->closes++;
	memcpy(s->ctrl, p, n);
	s->ctrl_len = n;
	return s->stop_after && ++s->events >= s->stop_after;
}

static const struct rr_bench_rx_ops ops = {.message = on_msg, .control = on_ctl};

static ssize_t feed_bytes(const uint8_t *p, size_t n)
{
	struct rr_bench_rx rx = {0};
	struct seen s = {0};
	ssize_t r = rr_bench_rx_feed(&rx, p, n, &ops, &s);
	rr_bench_rx_free(&rx);
	return r;
}

/* RFC 6455 section 5.7, "Examples", copied from the RFC's text. */
static const uint8_t rfc_mask[4] = {0x37, 0xfa, 0x21, 0x3d};
static const uint8_t rfc_hello_unmasked[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
static const uint8_t rfc_hello_masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
					   0x7f, 0x9f, 0x4d, 0x51, 0x58};
static const uint8_t rfc_hel_lo[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
static const uint8_t rfc_ping_unmasked[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
static const uint8_t rfc_pong_masked[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
					  0x7f, 0x9f, 0x4d, 0x51, 0x58};
static const uint8_t rfc_256_hdr[] = {0x82, 0x7e, 0x01, 0x00};
static const uint8_t rfc_64k_hdr[] = {0x82, 0x7f, 0x00, 0x00, 0x00, 0x00,
				      0x00, 0x01, 0x00, 0x00};

/* Feed all of p at every split point; the events must be the same each time. */
static struct seen feed_split(const uint8_t *p, size_t n)
{
	struct seen first = {0};
	for (size_t a = 0; a <= n; a++) {
		struct rr_bench_rx rx = {0};
		struct seen s = {0};
		CHECK_EQ(rr_bench_rx_feed(&rx, p, a, &ops, &s), (ssize_t)a);
		CHECK_EQ(rr_bench_rx_feed(&rx, p + a, n - a, &ops, &s), (ssize_t)(n - a));
		rr_bench_rx_free(&rx);
		if (a == 0)
			first = s;
		CHECK_EQ(s.messages, first.messages);
		CHECK_EQ(s.pings + s.pongs + s.closes, first.pings + first.pongs + first.closes);
		CHECK_EQ(s.last_len, first.last_len);
	}
	return first;
}

static void test_rfc6455_examples(void)
{
	uint32_t mask;
	uint8_t out[32];
	size_t n;

	memcpy(&mask, rfc_mask, 4); /* the key as it goes on the wire */
	/* the encoder: a masked "Hello" and a masked Pong, byte for byte */
	n = rr_bench_frame_encode(out, RR_BENCH_OP_TEXT, (const uint8_t *)"Hello", 5, mask);
	CHECK_EQ(n, sizeof(rfc_hello_masked));
	CHECK(memcmp(out, rfc_hello_masked, sizeof(rfc_hello_masked)) == 0);
	n = rr_bench_frame_encode(out, RR_BENCH_OP_PONG, (const uint8_t *)"Hello", 5, mask);
	CHECK_EQ(n, sizeof(rfc_pong_masked));
	CHECK(memcmp(out, rfc_pong_masked, sizeof(rfc_pong_masked)) == 0);
	/* 256 and 65536 bytes: the 16- and 64-bit length forms (the RFC's
	 * frames are unmasked server frames: the same bytes with MASK set) */
	n = rr_bench_frame_hdr(out, RR_BENCH_OP_BINARY, 256, mask);
	CHECK_EQ(n, sizeof(rfc_256_hdr) + 4);
	CHECK_EQ(out[0], rfc_256_hdr[0]);
	CHECK_EQ(out[1], rfc_256_hdr[1] | 0x80);
	CHECK(memcmp(out + 2, rfc_256_hdr + 2, 2) == 0);
	CHECK(memcmp(out + 4, rfc_mask, 4) == 0);
	n = rr_bench_frame_hdr(out, RR_BENCH_OP_BINARY, 65536, mask);
	CHECK_EQ(n, sizeof(rfc_64k_hdr) + 4);
	CHECK_EQ(out[0], rfc_64k_hdr[0]);
	CHECK_EQ(out[1], rfc_64k_hdr[1] | 0x80);
	CHECK(memcmp(out + 2, rfc_64k_hdr + 2, 8) == 0);
	CHECK(memcmp(out + 10, rfc_mask, 4) == 0);

	/* the reader: the unmasked examples a server sends */
	struct seen s = feed_split(rfc_hello_unmasked, sizeof(rfc_hello_unmasked));
	CHECK_EQ(s.messages, 1);
	CHECK_EQ(s.last_op, RR_BENCH_OP_TEXT);
	CHECK_EQ(s.last_len, 5);
	CHECK(s.stamp_len == 5 && memcmp(s.stamp, "Hello", 5) == 0);
	s = feed_split(rfc_hel_lo, sizeof(rfc_hel_lo));
	CHECK_EQ(s.messages, 1);
	CHECK_EQ(s.last_op, RR_BENCH_OP_TEXT);
	CHECK_EQ(s.last_len, 5);
	CHECK(s.stamp_len == 5 && memcmp(s.stamp, "Hello", 5) == 0);
	s = feed_split(rfc_ping_unmasked, sizeof(rfc_ping_unmasked));
	CHECK_EQ(s.pings, 1);
	CHECK_EQ(s.messages, 0);
	CHECK(s.ctrl_len == 5 && memcmp(s.ctrl, "Hello", 5) == 0);
	/* the masked examples are client frames: a server must not send them */
	CHECK_EQ(feed_bytes(rfc_hello_masked, sizeof(rfc_hello_masked)), -EPROTO);
	CHECK_EQ(feed_bytes(rfc_pong_masked, sizeof(rfc_pong_masked)), -EPROTO);
	/* 256 bytes and 64 KiB in one unmasked binary frame each */
	static uint8_t big[10 + 65536];
	memcpy(big, rfc_256_hdr, sizeof(rfc_256_hdr));
	memset(big + sizeof(rfc_256_hdr), 0x5a, 256);
	s = feed_split(big, sizeof(rfc_256_hdr) + 256);
	CHECK_EQ(s.messages, 1);
	CHECK_EQ(s.last_op, RR_BENCH_OP_BINARY);
	CHECK_EQ(s.last_len, 256);
	memcpy(big, rfc_64k_hdr, sizeof(rfc_64k_hdr));
	memset(big + sizeof(rfc_64k_hdr), 0x5a, 65536);
	struct rr_bench_rx rx = {0};
	struct seen s64 = {0};
	CHECK_EQ(rr_bench_rx_feed(&rx, big, sizeof(big), &ops, &s64), (ssize_t)sizeof(big));
	rr_bench_rx_free(&rx);
	CHECK_EQ(s64.messages, 1);
	CHECK_EQ(s64.last_len, 65536);
}

static void test_encode_roundtrip(void)
{
	static const size_t lens[] = {0, 1, 24, 125, 126, 127, 65535, 65536, 70000};
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		size_t n = lens[k];
		for (size_t i = 0; i < n; i++)
			payload[i] = (uint8_t)(i * 31 + k);
		uint32_t mask = 0xa1b2c3d4u + (uint32_t)k;
		size_t len = rr_bench_frame_encode(buf, RR_BENCH_OP_BINARY, payload, n, mask);
		CHECK_EQ(len, rr_bench_frame_len(n));
		struct rr_ws_hdr h;
		int hl = rr_ws_hdr_parse(buf, len, &h);
		CHECK(hl > 0);
		CHECK(h.fin);
		CHECK(h.masked);
		CHECK_EQ(h.rsv, 0);
		CHECK_EQ(h.opcode, RR_WS_BINARY);
		CHECK_EQ(h.len, n);
		CHECK_EQ((size_t)hl + n, len);
		/* the payload on the wire is masked (unless empty) and unmasks back */
		if (n >= 8)
			CHECK(memcmp(buf + hl, payload, n) != 0);
		rr_ws_unmask(buf + hl, n, h.mask, 0);
		CHECK(memcmp(buf + hl, payload, n) == 0);
	}
	/* the word-wise mask equals the byte-wise definition at every length */
	for (size_t n = 0; n < 40; n++) {
		uint8_t a[40], b[40];
		uint32_t key = 0x01020304u;
		const uint8_t *kb = (const uint8_t *)&key;
		for (size_t i = 0; i < n; i++)
			a[i] = b[i] = (uint8_t)(i + 100);
		rr_bench_mask(a, n, key);
		for (size_t i = 0; i < n; i++)
			b[i] ^= kb[i % 4];
		CHECK(memcmp(a, b, n) == 0);
	}
}

static void test_stamp(void)
{
	struct rr_bench_stamp in = {.run = 0xdeadbeef,
				    .pub = 4000000000u,
				    .seq = 0x0102030405060708ull,
				    .ts_ns = 987654321012345ull},
			      out;
	uint8_t b[RR_BENCH_STAMP_LEN];
	rr_bench_stamp_put(b, &in);
	CHECK(rr_bench_stamp_get(b, &out));
	CHECK_EQ(out.pub, in.pub);
	CHECK_EQ(out.run, in.run);
	CHECK(out.seq == in.seq);
	CHECK(out.ts_ns == in.ts_ns);
	b[0] ^= 1;
	CHECK(!rr_bench_stamp_get(b, &out));

	/* either form by length: a full stamp in 28 bytes or more, a short
	 * one in 20 to 27 (run: low 16 bits, seq: low 32 bits) */
	bool is_short = true;
	rr_bench_stamp_put(b, &in);
	CHECK(rr_bench_stamp_get_any(b, sizeof(b), &out, &is_short));
	CHECK(!is_short && out.run == in.run && out.seq == in.seq);
	CHECK(!rr_bench_stamp_get_any(b, RR_BENCH_STAMP_LEN - 1, &out, &is_short));
	uint8_t sb[RR_BENCH_STAMP_LEN];
	memset(sb, 'x', sizeof(sb));
	rr_bench_stamp_put_short(sb, &in);
	for (size_t len = RR_BENCH_STAMP_SHORT_LEN; len <= RR_BENCH_STAMP_LEN; len++) {
		CHECK(rr_bench_stamp_get_any(sb, len, &out, &is_short));
		CHECK(is_short);
		CHECK_EQ(out.run, in.run & 0xffff);
		CHECK_EQ(out.pub, in.pub);
		CHECK(out.seq == (in.seq & 0xffffffffu));
		CHECK(out.ts_ns == in.ts_ns);
	}
	CHECK(!rr_bench_stamp_get_any(sb, RR_BENCH_STAMP_SHORT_LEN - 1, &out, &is_short));
	sb[1] ^= 1;
	CHECK(!rr_bench_stamp_get_any(sb, sizeof(sb), &out, &is_short));
}

/* A stream of server frames: ping, a stamped binary message, a fragmented
 * text message whose stamp straddles the fragments, a big message, close. */
static size_t build_stream(uint8_t *out)
{
	size_t o = 0;
	o += rr_ws_hdr_encode(out + o, RR_WS_PING, true, 3);
	memcpy(out + o, "abc", 3);
	o += 3;
	struct rr_bench_stamp st = {.pub = 7, .seq = 42, .ts_ns = 123456789};
	uint8_t msg[100];
	memset(msg, 'x', sizeof(msg));
	rr_bench_stamp_put(msg, &st);
	o += rr_ws_hdr_encode(out + o, RR_WS_BINARY, true, sizeof(msg));
	memcpy(out + o, msg, sizeof(msg));
	o += sizeof(msg);
	st.seq = 43;
	rr_bench_stamp_put(msg, &st);
	o += rr_ws_hdr_encode(out + o, RR_WS_TEXT, false, 10);
	memcpy(out + o, msg, 10);
	o += 10;
	o += rr_ws_hdr_encode(out + o, RR_WS_PONG, true, 0); /* control between fragments */
	o += rr_ws_hdr_encode(out + o, RR_WS_CONT, false, 0);
	o += rr_ws_hdr_encode(out + o, RR_WS_CONT, true, 30);
	memcpy(out + o, msg + 10, 30);
	o += 30;
	st.seq = 44;
	memset(payload, 'y', 300);
	rr_bench_stamp_put(payload, &st);
	o += rr_ws_hdr_encode(out + o, RR_WS_BINARY, true, 300);
	memcpy(out + o, payload, 300);
	o += 300;
	o += rr_ws_hdr_encode(out + o, RR_WS_CLOSE, true, 2);
	out[o++] = 0x03;
	out[o++] = 0xe8;
	return o;
}

static void check_stream(const struct seen *s)
{
	CHECK_EQ(s->pings, 1);
	CHECK_EQ(s->pongs, 1);
	CHECK_EQ(s->closes, 1);
	CHECK_EQ(s->messages, 3);
	CHECK_EQ(s->last_op, RR_BENCH_OP_BINARY);
	CHECK_EQ(s->last_len, 300);
	CHECK_EQ(s->stamp_len, RR_BENCH_STAMP_LEN);
	struct rr_bench_stamp st;
	CHECK(rr_bench_stamp_get(s->stamp, &st));
	CHECK_EQ(st.seq, 44);
	CHECK_EQ(s->ctrl_len, 2);
	CHECK_EQ((s->ctrl[0] << 8) | s->ctrl[1], 1000);
}

static int text_stamp_ok;

static int on_msg_text(void *ctx, uint8_t op, const uint8_t *st, size_t sl, uint64_t len)
{
	struct rr_bench_stamp s;
	if (op == RR_BENCH_OP_TEXT && len == 40 && sl == RR_BENCH_STAMP_LEN &&
	    rr_bench_stamp_get(st, &s) && s.seq == 43)
		text_stamp_ok++;
	return on_msg(ctx, op, st, sl, len);
}

static void test_reader_splits(void)
{
	static uint8_t stream[1024];
	size_t n = build_stream(stream);
	const struct rr_bench_rx_ops o2 = {.message = on_msg_text, .control = on_ctl};
	int bad = 0;
	text_stamp_ok = 0;
	/* every single split point, and every pair of split points */
	for (size_t a = 0; a <= n; a++) {
		for (size_t b = a; b <= n; b += (a % 7 == 0) ? 1 : 37) {
			struct rr_bench_rx rx = {0};
			struct seen s = {0};
			uint8_t copy[1024];
			memcpy(copy, stream, n);
			if (rr_bench_rx_feed(&rx, copy, a, &o2, &s) != (ssize_t)a ||
			    rr_bench_rx_feed(&rx, copy + a, b - a, &o2, &s) != (ssize_t)(b - a) ||
			    rr_bench_rx_feed(&rx, copy + b, n - b, &o2, &s) != (ssize_t)(n - b))
				bad++;
			check_stream(&s);
			CHECK(rx.ctrl == NULL); /* no allocation outlives a control frame */
			CHECK_EQ(rx.msg_opcode, 0);
			rr_bench_rx_free(&rx);
		}
	}
	CHECK_EQ(bad, 0);
	CHECK(text_stamp_ok > 0);
	/* one byte at a time */
	struct rr_bench_rx rx = {0};
	struct seen s = {0};
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(rr_bench_rx_feed(&rx, stream + i, 1, &ops, &s), 1);
	check_stream(&s);
	rr_bench_rx_free(&rx);
	/* a callback that asks to stop makes feed return what it consumed */
	struct rr_bench_rx rx2 = {0};
	struct seen s2 = {.stop_after = 1};
	ssize_t r = rr_bench_rx_feed(&rx2, stream, n, &ops, &s2);
	CHECK_EQ(r, 2 + 3); /* the ping */
	CHECK_EQ(s2.pings, 1);
	CHECK_EQ(s2.messages, 0);
	rr_bench_rx_free(&rx2);
	/* a short message carries a short stamp */
	struct rr_bench_rx rx3 = {0};
	struct seen s3 = {0};
	uint8_t f[8];
	size_t fl = rr_ws_hdr_encode(f, RR_WS_BINARY, true, 5);
	memcpy(f + fl, "hello", 5);
	CHECK_EQ(rr_bench_rx_feed(&rx3, f, fl + 5, &ops, &s3), (ssize_t)(fl + 5));
	CHECK_EQ(s3.stamp_len, 5);
	CHECK_EQ(s3.last_len, 5);
}

static void test_reader_errors(void)
{
	const uint8_t masked[] = {0x82, 0x81, 1, 2, 3, 4, 5};
	CHECK_EQ(feed_bytes(masked, sizeof(masked)), -EPROTO);
	const uint8_t rsv[] = {0xc2, 0x00};
	CHECK_EQ(feed_bytes(rsv, sizeof(rsv)), -EPROTO);
	const uint8_t cont[] = {0x80, 0x00};
	CHECK_EQ(feed_bytes(cont, sizeof(cont)), -EPROTO);
	const uint8_t op3[] = {0x83, 0x00};
	CHECK_EQ(feed_bytes(op3, sizeof(op3)), -EPROTO);
	const uint8_t opb[] = {0x8b, 0x00};
	CHECK_EQ(feed_bytes(opb, sizeof(opb)), -EPROTO);
	const uint8_t bigping[] = {0x89, 0x7e, 0x00, 0x7e};
	CHECK_EQ(feed_bytes(bigping, sizeof(bigping)), -EPROTO);
	const uint8_t fragping[] = {0x09, 0x00};
	CHECK_EQ(feed_bytes(fragping, sizeof(fragping)), -EPROTO);
	const uint8_t newdata[] = {0x01, 0x00, 0x82, 0x00};
	CHECK_EQ(feed_bytes(newdata, sizeof(newdata)), -EPROTO);
	const uint8_t toplen[] = {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0};
	CHECK_EQ(feed_bytes(toplen, sizeof(toplen)), -EPROTO);
	/* a length not in its minimal encoding (RFC 6455 5.2) */
	const uint8_t longform[] = {0x82, 0x7e, 0x00, 0x05, 1, 2, 3, 4, 5};
	CHECK_EQ(feed_bytes(longform, sizeof(longform)), -EPROTO);
	/* an incomplete header is not an error */
	const uint8_t part[] = {0x82, 0x7f, 0x00};
	CHECK_EQ(feed_bytes(part, sizeof(part)), 3);
}

int main(void)
{
	test_rfc6455_examples();
	test_encode_roundtrip();
	test_stamp();
	test_reader_splits();
	test_reader_errors();
	return check_done();
}
