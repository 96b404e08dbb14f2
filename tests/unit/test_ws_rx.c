/*
 * The message layer (src/ws/ws_rx.c). Every input is fed whole, split in two
 * at every offset, byte by byte, and in a few pseudo-random pieces; each
 * way must deliver the same callbacks (logged as text) and end with the same
 * close code. Covers length encodings, masking, fragmentation with
 * interleaved control frames, every protocol error, UTF-8 (fail-fast
 * mid-frame), close payloads, the 1009 limit decided from the header, the
 * zero-copy path and callback stops.
 */
#include "ws/ws.h"
#include "check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- building client frames --------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (b->p == NULL)
			abort();
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_reset(struct buf *b)
{
	b->len = 0;
}

static unsigned mask_seed = 1;

/* Header only. form: 0 auto (minimal), 7, 16 or 64 to force an encoding.
 * Returns the mask used. */
static void put_hdr(struct buf *b, uint8_t b0, bool masked, int form, uint64_t len, uint8_t mask[4])
{
	uint8_t h[14];
	size_t o = 0;
	uint8_t m = masked ? 0x80 : 0;
	if (form == 0)
		form = len < 126 ? 7 : len <= 0xffff ? 16 : 64;
	h[o++] = b0;
	if (form == 7) {
		h[o++] = (uint8_t)(m | len);
	} else if (form == 16) {
		h[o++] = m | 126;
		h[o++] = (uint8_t)(len >> 8);
		h[o++] = (uint8_t)len;
	} else {
		h[o++] = m | 127;
		for (int k = 0; k < 8; k++)
			h[o++] = (uint8_t)(len >> (56 - 8 * k));
	}
	mask_seed = mask_seed * 1103515245u + 12345u;
	for (int k = 0; k < 4; k++)
		mask[k] = (uint8_t)(mask_seed >> (8 * k + 3));
	if (masked) {
		memcpy(h + o, mask, 4);
		o += 4;
	}
	buf_put(b, h, o);
}

static void put_frame_x(struct buf *b, uint8_t b0, bool masked, int form, const void *payload,
			size_t len)
{
	uint8_t mask[4];
	put_hdr(b, b0, masked, form, len, mask);
	size_t at = b->len;
	buf_put(b, payload, len);
	if (masked)
		for (size_t k = 0; k < len; k++)
			b->p[at + k] ^= mask[k & 3];
}

/* A normal masked frame with minimal length. */
static void put_frame(struct buf *b, uint8_t b0, const void *payload, size_t len)
{
	put_frame_x(b, b0, true, 0, payload, len);
}

static void put_str(struct buf *b, uint8_t b0, const char *s)
{
	put_frame(b, b0, s, strlen(s));
}

#define FIN 0x80

/* ---- recording callbacks ------------------------------------------------- */

struct rec {
	char log[4096];
	size_t log_len;
	int stop_after; /* stop (return 1) at this callback number, 0 never */
	int calls;
	const uint8_t *fed_lo, *fed_hi; /* the buffer of the current feed */
	int in_place;			/* messages delivered from the caller's buffer */
};

static void rec_add(struct rec *r, const char *s)
{
	size_t n = strlen(s);
	if (r->log_len + n + 1 > sizeof(r->log))
		n = sizeof(r->log) - 1 - r->log_len; /* truncation shows as a diff */
	memcpy(r->log + r->log_len, s, n);
	r->log_len += n;
	r->log[r->log_len] = '\0';
}

/* Payloads up to 16 bytes are logged as hex, longer ones as a hash. */
static void rec_payload(struct rec *r, char tag, int code, const uint8_t *p, size_t n)
{
	char s[96];
	int o;
	if (code)
		o = snprintf(s, sizeof(s), "%c%d/%zu:", tag, code, n);
	else
		o = snprintf(s, sizeof(s), "%c%zu:", tag, n);
	if (n <= 16) {
		for (size_t k = 0; k < n; k++)
			o += snprintf(s + o, sizeof(s) - (size_t)o, "%02x", p[k]);
	} else {
		uint64_t h = 0xcbf29ce484222325ull;
		for (size_t k = 0; k < n; k++)
			h = (h ^ p[k]) * 0x100000001b3ull;
		o += snprintf(s + o, sizeof(s) - (size_t)o, "#%016llx", (unsigned long long)h);
	}
	snprintf(s + o, sizeof(s) - (size_t)o, ";");
	rec_add(r, s);
}

static int rec_stop(struct rec *r)
{
	r->calls++;
	return r->stop_after && r->calls == r->stop_after;
}

static int on_message(void *ctx, uint8_t opcode, uint8_t *p, size_t n)
{
	struct rec *r = ctx;
	rec_payload(r, opcode == RR_WS_TEXT ? 'T' : opcode == RR_WS_BINARY ? 'B' : '?', 0, p, n);
	if (n > 0 && p >= r->fed_lo && p + n <= r->fed_hi)
		r->in_place++;
	return rec_stop(r);
}

static int on_ping(void *ctx, uint8_t *p, size_t n)
{
	rec_payload(ctx, 'P', 0, p, n);
	return rec_stop(ctx);
}

static int on_pong(void *ctx, uint8_t *p, size_t n)
{
	rec_payload(ctx, 'O', 0, p, n);
	return rec_stop(ctx);
}

static int on_close(void *ctx, uint16_t code, const uint8_t *reason, size_t n)
{
	rec_payload(ctx, 'C', code, reason, n);
	return rec_stop(ctx);
}

static const struct rr_ws_rx_ops ops = {
    .message = on_message,
    .ping = on_ping,
    .pong = on_pong,
    .close = on_close,
};

/* ---- feeding in pieces ---------------------------------------------------- */

struct result {
	char log[4096];
	int err;       /* 0 or the negative errno of the failing feed */
	uint16_t code; /* close code when err != 0 */
	bool idle;     /* rr_ws_rx_idle() after the last feed */
	bool no_heap;  /* no buffers held after the last feed */
	int in_place;
};

/* Feed a private copy of in[0..n) cut at cuts[0..ncuts) (ascending). */
static void run(const uint8_t *in, size_t n, const size_t *cuts, size_t ncuts, uint64_t limit,
		struct result *res)
{
	static struct rec r;
	struct rr_ws_rx rx;
	struct rr_ws_limits lim = {.message_bytes_max = limit};
	uint8_t *copy = malloc(n ? n : 1);
	if (copy == NULL)
		abort();
	memcpy(copy, in, n);
	memset(&r, 0, sizeof(r));
	rr_ws_rx_init(&rx);
	res->err = 0;
	res->code = 0;

	size_t start = 0;
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : n;
		r.fed_lo = copy + start;
		r.fed_hi = copy + end;
		uint16_t code = 0;
		ssize_t got = rr_ws_rx_feed(&rx, copy + start, end - start, &lim, &ops, &r, &code);
		if (got < 0) {
			res->err = (int)got;
			res->code = code;
			break;
		}
		if ((size_t)got != end - start) {
			/* callbacks only stop in the stop tests */
			res->err = -9999;
			break;
		}
		start = end;
	}
	memcpy(res->log, r.log, sizeof(res->log));
	res->idle = rr_ws_rx_idle(&rx);
	res->no_heap = rx._msg == NULL && rx._ctrl == NULL;
	res->in_place = r.in_place;
	rr_ws_rx_free(&rx);
	free(copy);
}

static unsigned split_failures;

static bool same(const struct result *a, const struct result *b)
{
	/* after an error the reader's state is dead: only the outcome counts */
	return strcmp(a->log, b->log) == 0 && a->err == b->err && a->code == b->code &&
	       (a->err != 0 || (a->idle == b->idle && a->no_heap == b->no_heap));
}

static void report_diff(const char *name, const char *how, size_t at, const struct result *whole,
			const struct result *r)
{
	if (split_failures++ < 8)
		fprintf(
		    stderr,
		    "%s: %s %zu differs:\n  whole: %s err %d code %u\n  split: %s err %d code %u\n",
		    name, how, at, whole->log, whole->err, whole->code, r->log, r->err, r->code);
}

/* Inputs up to this size are cut at every offset; larger ones at a sample. */
#define SPLIT_ALL_MAX 4096

/*
 * Feed in every way and check: same outcome everywhere, and the whole feed's
 * outcome is (want_log, want_code). want_code 0 means success, in which case
 * the reader must also be idle and hold no memory.
 */
static void expect_lim(const char *name, const struct buf *b, uint64_t limit, const char *want_log,
		       uint16_t want_code)
{
	static struct result whole, r;
	run(b->p, b->len, NULL, 0, limit, &whole);
	bool ok = strcmp(whole.log, want_log) == 0 && whole.code == want_code &&
		  (want_code != 0) == (whole.err != 0);
	if (want_code == 0)
		ok = ok && whole.idle && whole.no_heap;
	if (!ok)
		fprintf(stderr, "%s: got log '%s' err %d code %u idle %d; want '%s' code %u\n",
			name, whole.log, whole.err, whole.code, whole.idle, want_log, want_code);
	CHECK(ok);

	size_t n = b->len;
	unsigned before = split_failures;
	for (size_t cut = 0; cut <= n; cut++) {
		if (n > SPLIT_ALL_MAX && cut > 64 && cut + 64 < n && cut % (n / 251 + 1) != 0)
			continue;
		run(b->p, n, &cut, 1, limit, &r);
		if (!same(&whole, &r))
			report_diff(name, "cut at", cut, &whole, &r);
	}
	/* byte by byte */
	size_t *cuts = calloc(n + 1, sizeof(*cuts));
	if (cuts == NULL)
		abort();
	for (size_t k = 0; k < n; k++)
		cuts[k] = k + 1;
	run(b->p, n, cuts, n ? n - 1 : 0, limit, &r);
	if (!same(&whole, &r))
		report_diff(name, "byte by byte", 0, &whole, &r);
	/* a few pseudo-random piece sizes */
	unsigned seed = 7;
	for (int round = 0; round < 20 && n > 2; round++) {
		size_t nc = 0, at = 0;
		for (;;) {
			seed = seed * 1103515245u + 12345u;
			at += 1 + (seed >> 8) % (round < 10 ? 7 : 300);
			if (at >= n)
				break;
			cuts[nc++] = at;
		}
		run(b->p, n, cuts, nc, limit, &r);
		if (!same(&whole, &r))
			report_diff(name, "random round", (size_t)round, &whole, &r);
	}
	free(cuts);
	CHECK_EQ(split_failures, before);
}

#define LIMIT_DEFAULT (1u << 20)

static void expect(const char *name, const struct buf *b, const char *want_log, uint16_t want_code)
{
	expect_lim(name, b, LIMIT_DEFAULT, want_log, want_code);
}

/* Log form of a payload, as rec_payload writes it. */
static const char *logged(char tag, int code, const void *p, size_t n)
{
	static struct rec r;
	memset(&r, 0, sizeof(r));
	rec_payload(&r, tag, code, p, n);
	return r.log;
}

/* Append to an expected log (a too-small buffer is a bug in the test). */
static void want_add(char *w, size_t cap, const char *s)
{
	size_t a = strlen(w), n = strlen(s);
	if (a + n + 1 > cap)
		abort();
	memcpy(w + a, s, n + 1);
}

/* ---- tests ------------------------------------------------------------------ */

static struct buf b;

static void test_lengths(void)
{
	static const size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 1u << 20};
	size_t max = 1u << 20;
	uint8_t *payload = malloc(max);
	if (payload == NULL)
		abort();
	for (size_t k = 0; k < max; k++)
		payload[k] = (uint8_t)(k * 31 + (k >> 9)); /* binary: any bytes */
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		char want[128] = "";
		buf_reset(&b);
		put_frame(&b, FIN | RR_WS_BINARY, payload, sizes[s]);
		want_add(want, sizeof(want), logged('B', 0, payload, sizes[s]));
		expect("binary length", &b, want, 0);

		/* the same as text (ASCII), plus a second message after it */
		memset(payload, 'a' + (int)s, sizes[s]);
		buf_reset(&b);
		put_frame(&b, FIN | RR_WS_TEXT, payload, sizes[s]);
		put_str(&b, FIN | RR_WS_TEXT, "next");
		want[0] = '\0';
		want_add(want, sizeof(want), logged('T', 0, payload, sizes[s]));
		want_add(want, sizeof(want), logged('T', 0, "next", 4));
		expect("text length", &b, want, 0);
		for (size_t k = 0; k < max; k++)
			payload[k] = (uint8_t)(k * 31 + (k >> 9));
	}

	/* exactly at the limit passes, one byte over is 1009 */
	buf_reset(&b);
	put_frame(&b, FIN | RR_WS_BINARY, payload, 1000);
	expect_lim("at limit", &b, 1000, logged('B', 0, payload, 1000), 0);
	expect_lim("over limit", &b, 999, "", RR_WS_CLOSE_TOO_BIG);
	free(payload);
}

static void test_length_encoding_errors(void)
{
	/* non-minimal 16-bit form */
	buf_reset(&b);
	put_str(&b, FIN | RR_WS_TEXT, "ok");
	put_frame_x(&b, FIN | RR_WS_TEXT, true, 16, "hello", 5);
	expect("16-bit non-minimal", &b, "T2:6f6b;", RR_WS_CLOSE_PROTOCOL);

	buf_reset(&b);
	put_frame_x(&b, FIN | RR_WS_BINARY, true, 64, "hello", 5);
	expect("64-bit non-minimal (5)", &b, "", RR_WS_CLOSE_PROTOCOL);

	static uint8_t big[70000];
	buf_reset(&b);
	put_frame_x(&b, FIN | RR_WS_BINARY, true, 64, big, 65535);
	expect("64-bit non-minimal (65535)", &b, "", RR_WS_CLOSE_PROTOCOL);

	buf_reset(&b);
	put_frame_x(&b, FIN | RR_WS_BINARY, true, 64, big, 65536);
	expect("64-bit minimal (65536)", &b, logged('B', 0, big, 65536), 0);

	/* top bit of the 64-bit length: 1002, even though it is also over
	 * the limit, and whatever follows */
	uint8_t mask[4];
	buf_reset(&b);
	put_hdr(&b, FIN | RR_WS_BINARY, true, 64, 0x8000000000000001ull, mask);
	buf_put(&b, "xyz", 3);
	expect("64-bit top bit", &b, "", RR_WS_CLOSE_PROTOCOL);
}

static void test_masking(void)
{
	/* unmasked client frames are refused whatever they carry */
	static const uint8_t ops_all[] = {RR_WS_TEXT, RR_WS_BINARY, RR_WS_CLOSE, RR_WS_PING,
					  RR_WS_PONG};
	for (size_t k = 0; k < sizeof(ops_all); k++) {
		buf_reset(&b);
		put_str(&b, FIN | RR_WS_PING, "a");
		put_frame_x(&b, FIN | ops_all[k], false, 0, "hi", 2);
		expect("unmasked", &b, "P1:61;", RR_WS_CLOSE_PROTOCOL);
	}
	/* unmasked continuation inside a message */
	buf_reset(&b);
	put_str(&b, RR_WS_TEXT, "a");
	put_frame_x(&b, FIN | RR_WS_CONT, false, 0, "b", 1);
	expect("unmasked continuation", &b, "", RR_WS_CLOSE_PROTOCOL);

	/* many masks, many payload lengths: content survives */
	for (size_t len = 0; len < 40; len++) {
		char msg[64];
		for (size_t k = 0; k < len; k++)
			msg[k] = (char)('A' + (k * 7) % 26);
		buf_reset(&b);
		put_frame(&b, FIN | RR_WS_TEXT, msg, len);
		put_frame(&b, FIN | RR_WS_TEXT, msg, len);
		char want[256] = "";
		want_add(want, sizeof(want), logged('T', 0, msg, len));
		want_add(want, sizeof(want), logged('T', 0, msg, len));
		expect("mask content", &b, want, 0);
	}
}

static void test_fragmentation(void)
{
	buf_reset(&b);
	put_str(&b, RR_WS_TEXT, "Hel");
	put_str(&b, FIN | RR_WS_PING, "p1");
	put_str(&b, RR_WS_CONT, "lo ");
	put_str(&b, FIN | RR_WS_PONG, "");
	put_str(&b, RR_WS_CONT, "");
	put_str(&b, FIN | RR_WS_CONT, "world");
	put_str(&b, FIN | RR_WS_TEXT, "after");
	expect("fragmented text, interleaved control", &b,
	       "P2:7031;O0:;T11:48656c6c6f20776f726c64;T5:6166746572;", 0);

	/* binary: empty first and last fragments */
	buf_reset(&b);
	put_frame(&b, RR_WS_BINARY, "", 0);
	put_frame(&b, RR_WS_CONT, "\x00\xff", 2);
	put_frame(&b, FIN | RR_WS_CONT, "", 0);
	expect("binary empty fragments", &b, "B2:00ff;", 0);
}

static void test_close_inside_message_not_idle(void)
{
	/* A close between fragments is delivered at once. expect() insists on
	 * idle for a clean end; here a message is still open, so check
	 * directly. */
	struct result r;
	buf_reset(&b);
	put_str(&b, RR_WS_BINARY, "ab");
	put_frame(&b, FIN | RR_WS_CLOSE, "\x03\xe8", 2);
	run(b.p, b.len, NULL, 0, LIMIT_DEFAULT, &r);
	CHECK_EQ(r.err, 0);
	CHECK(!r.idle);
	CHECK(strcmp(r.log, "C1000/0:;") == 0);
}

static void test_protocol_errors(void)
{
	/* RSV bits, on data and control frames, first or later frame */
	for (int rsv = 1; rsv < 8; rsv++) {
		buf_reset(&b);
		put_str(&b, FIN | RR_WS_TEXT, "x");
		put_str(&b, (uint8_t)(FIN | rsv << 4 | RR_WS_TEXT), "y");
		expect("rsv text", &b, "T1:78;", RR_WS_CLOSE_PROTOCOL);
		buf_reset(&b);
		put_str(&b, (uint8_t)(FIN | rsv << 4 | RR_WS_PING), "");
		expect("rsv ping", &b, "", RR_WS_CLOSE_PROTOCOL);
	}
	/* reserved opcodes */
	for (int op = 3; op < 16; op++) {
		if (op >= RR_WS_CLOSE && op <= RR_WS_PONG)
			continue;
		buf_reset(&b);
		put_str(&b, FIN | RR_WS_BINARY, "x");
		put_str(&b, (uint8_t)(FIN | op), "y");
		expect("reserved opcode", &b, "B1:78;", RR_WS_CLOSE_PROTOCOL);
		buf_reset(&b);
		put_str(&b, (uint8_t)op, "");
		expect("reserved opcode, no fin", &b, "", RR_WS_CLOSE_PROTOCOL);
	}
	/* control frames: fragmented, or longer than 125 */
	static const uint8_t ctl[] = {RR_WS_CLOSE, RR_WS_PING, RR_WS_PONG};
	static uint8_t pl[200];
	memset(pl, 'z', sizeof(pl));
	pl[0] = 0x03; /* a valid close code 1000 for the close case */
	pl[1] = 0xe8;
	for (size_t k = 0; k < sizeof(ctl); k++) {
		buf_reset(&b);
		put_frame(&b, ctl[k], "", 0);
		expect("control without FIN", &b, "", RR_WS_CLOSE_PROTOCOL);
		buf_reset(&b);
		put_frame(&b, FIN | ctl[k], pl, 126);
		expect("control 126 bytes", &b, "", RR_WS_CLOSE_PROTOCOL);
		buf_reset(&b);
		put_frame_x(&b, FIN | ctl[k], true, 64, pl, 0);
		expect("control 64-bit form", &b, "", RR_WS_CLOSE_PROTOCOL);
		/* 125 is fine */
		buf_reset(&b);
		put_frame(&b, FIN | ctl[k], pl, 125);
		const char tag = ctl[k] == RR_WS_CLOSE ? 'C' : ctl[k] == RR_WS_PING ? 'P' : 'O';
		expect("control 125 bytes", &b,
		       tag == 'C' ? logged('C', 1000, pl + 2, 123) : logged(tag, 0, pl, 125), 0);
	}
	/* continuation with no message open */
	buf_reset(&b);
	put_str(&b, FIN | RR_WS_CONT, "x");
	expect("continuation first", &b, "", RR_WS_CLOSE_PROTOCOL);
	buf_reset(&b);
	put_str(&b, FIN | RR_WS_TEXT, "a");
	put_str(&b, RR_WS_CONT, "x");
	expect("continuation after a complete message", &b, "T1:61;", RR_WS_CLOSE_PROTOCOL);
	/* a new data frame inside an open message */
	buf_reset(&b);
	put_str(&b, RR_WS_TEXT, "a");
	put_str(&b, FIN | RR_WS_TEXT, "b");
	expect("text inside a message", &b, "", RR_WS_CLOSE_PROTOCOL);
	buf_reset(&b);
	put_str(&b, RR_WS_BINARY, "a");
	put_str(&b, FIN | RR_WS_PING, "");
	put_str(&b, RR_WS_BINARY, "b");
	expect("binary inside a message", &b, "P0:;", RR_WS_CLOSE_PROTOCOL);
}

static void test_utf8(void)
{
	const char *good = "kosme \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9f\x98\x80!";
	size_t gl = strlen(good);
	buf_reset(&b);
	put_str(&b, FIN | RR_WS_TEXT, good);
	expect("valid multibyte", &b, logged('T', 0, good, gl), 0);

	/* the same text fragmented at every byte: characters cut across
	 * frames are fine */
	for (size_t cut = 0; cut <= gl; cut++) {
		buf_reset(&b);
		put_frame(&b, RR_WS_TEXT, good, cut);
		put_frame(&b, FIN | RR_WS_CONT, good + cut, gl - cut);
		expect("valid text, fragmented", &b, logged('T', 0, good, gl), 0);
	}

	static const char *bad[] = {
	    "\xc0\xaf",
	    "\xe0\x80\xaf",
	    "\xed\xa0\x80",
	    "\xed\xbf\xbf",
	    "\xf4\x90\x80\x80",
	    "\xf5\x80\x80\x80",
	    "\xff",
	    "\x80",
	    "a\xc2z",
	    "\xf0\x8f\xbf\xbf",
	    "\xe1\x80\xe1\x80",
	    "\xfe\xfe\xff\xff",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		char msg[64];
		snprintf(msg, sizeof(msg), "ok %s tail", bad[k]);
		buf_reset(&b);
		put_str(&b, FIN | RR_WS_TEXT, "fine");
		put_str(&b, FIN | RR_WS_TEXT, msg);
		expect("invalid utf-8", &b, "T4:66696e65;", RR_WS_CLOSE_INVALID_DATA);
		/* in a continuation */
		buf_reset(&b);
		put_str(&b, RR_WS_TEXT, "ok ");
		put_str(&b, FIN | RR_WS_CONT, bad[k]);
		expect("invalid utf-8 in continuation", &b, "", RR_WS_CLOSE_INVALID_DATA);
		/* binary does not care */
		buf_reset(&b);
		put_str(&b, FIN | RR_WS_BINARY, bad[k]);
		expect("binary is not utf-8 checked", &b, logged('B', 0, bad[k], strlen(bad[k])),
		       0);
	}

	/* a message that ends mid-character */
	buf_reset(&b);
	put_str(&b, FIN | RR_WS_TEXT, "abc\xe2\x82");
	expect("ends mid-character", &b, "", RR_WS_CLOSE_INVALID_DATA);
	buf_reset(&b);
	put_str(&b, RR_WS_TEXT, "abc\xe2\x82");
	put_str(&b, FIN | RR_WS_CONT, "");
	expect("ends mid-character, fragmented", &b, "", RR_WS_CLOSE_INVALID_DATA);
	buf_reset(&b);
	put_str(&b, RR_WS_TEXT, "abc\xe2");
	put_str(&b, FIN | RR_WS_CONT, "\x82\xac");
	expect("euro sign across fragments", &b, "T6:616263e282ac;", 0);

	/* fail fast: a frame that declares 1000 bytes but whose first bytes
	 * are already invalid is refused before the rest arrives */
	uint8_t mask[4];
	buf_reset(&b);
	put_hdr(&b, FIN | RR_WS_TEXT, true, 0, 1000, mask);
	const uint8_t early[] = {'a', 'b', 0xed, 0xa0, 'c'};
	for (size_t k = 0; k < sizeof(early); k++) {
		uint8_t byte = early[k] ^ mask[k & 3];
		buf_put(&b, &byte, 1);
	}
	expect("fail fast mid-frame", &b, "", RR_WS_CLOSE_INVALID_DATA);
	/* and it fails on exactly the byte that makes it impossible */
	for (size_t upto = 2; upto <= 4; upto++) {
		struct rr_ws_rx rx;
		struct rr_ws_limits lim = {.message_bytes_max = LIMIT_DEFAULT};
		struct rec r;
		uint8_t copy[64];
		uint16_t code = 0;
		memset(&r, 0, sizeof(r));
		size_t hl = b.len - sizeof(early);
		memcpy(copy, b.p, hl + upto);
		rr_ws_rx_init(&rx);
		ssize_t got = rr_ws_rx_feed(&rx, copy, hl + upto, &lim, &ops, &r, &code);
		if (upto <= 3) /* "ab", "ab\xed": still possible */
			CHECK_EQ(got, (ssize_t)(hl + upto));
		else
			CHECK(got == -EPROTO && code == RR_WS_CLOSE_INVALID_DATA);
		rr_ws_rx_free(&rx);
	}
}

static void test_close(void)
{
	buf_reset(&b);
	put_frame(&b, FIN | RR_WS_CLOSE, "", 0);
	expect("close empty", &b, "C1005/0:;", 0);

	buf_reset(&b);
	put_frame(&b, FIN | RR_WS_CLOSE, "\x03", 1);
	expect("close 1 byte", &b, "", RR_WS_CLOSE_PROTOCOL);
	/* 0x0f then the next frame's 0x88 would read as 3976, a valid code,
	 * if the length were not checked */
	buf_reset(&b);
	put_frame(&b, FIN | RR_WS_CLOSE, "\x0f", 1);
	put_frame(&b, FIN | RR_WS_CLOSE, "", 0);
	expect("close 1 byte, then more", &b, "", RR_WS_CLOSE_PROTOCOL);

	buf_reset(&b);
	put_frame(&b, FIN | RR_WS_CLOSE,
		  "\x03\xe8"
		  "bye",
		  5);
	expect("close with reason", &b, "C1000/3:627965;", 0);

	buf_reset(&b);
	put_frame(&b, FIN | RR_WS_CLOSE,
		  "\x0f\xa0"
		  "\xce\xba",
		  4);
	expect("close 4000 utf-8 reason", &b, "C4000/2:ceba;", 0);

	buf_reset(&b);
	put_frame(&b, FIN | RR_WS_CLOSE,
		  "\x03\xe8"
		  "a\xed\xa0\x80",
		  6);
	expect("close bad reason", &b, "", RR_WS_CLOSE_INVALID_DATA);

	buf_reset(&b);
	put_frame(&b, FIN | RR_WS_CLOSE,
		  "\x03\xe8"
		  "ab\xc3",
		  5);
	expect("close reason cut mid-character", &b, "", RR_WS_CLOSE_INVALID_DATA);

	/* bad code and bad reason: the code is judged first */
	buf_reset(&b);
	put_frame(&b, FIN | RR_WS_CLOSE,
		  "\x03\xed"
		  "\xff",
		  3);
	expect("close bad code and reason", &b, "", RR_WS_CLOSE_PROTOCOL);

	/* every code through the reader agrees with the predicate */
	static const uint16_t codes[] = {0,    999,  1000, 1001, 1002, 1003, 1004, 1005, 1006,
					 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 1015,
					 1016, 2000, 2999, 3000, 3999, 4000, 4999, 5000, 65535};
	for (size_t k = 0; k < sizeof(codes) / sizeof(codes[0]); k++) {
		uint8_t pl[2] = {(uint8_t)(codes[k] >> 8), (uint8_t)codes[k]};
		buf_reset(&b);
		put_frame(&b, FIN | RR_WS_CLOSE, pl, 2);
		char want[32];
		snprintf(want, sizeof(want), "C%u/0:;", codes[k]);
		if (rr_ws_close_code_valid(codes[k]))
			expect("close code", &b, want, 0);
		else
			expect("close code", &b, "", RR_WS_CLOSE_PROTOCOL);
	}
	/* the predicate itself, over the whole range */
	unsigned valid = 0;
	for (uint32_t c = 0; c <= 65535; c++) {
		bool v = rr_ws_close_code_valid((uint16_t)c);
		bool want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
			    (c >= 3000 && c <= 4999);
		if (v != want)
			fprintf(stderr, "close code %u: got %d\n", c, v);
		valid += v;
	}
	CHECK_EQ(valid, 4 + 8 + 2000);
	CHECK(!rr_ws_close_code_valid(1004));
	CHECK(!rr_ws_close_code_valid(1005));
	CHECK(!rr_ws_close_code_valid(1006));
	CHECK(!rr_ws_close_code_valid(1015));
	CHECK(rr_ws_close_code_valid(1012));
	CHECK(rr_ws_close_code_valid(1014));
}

static void test_limit(void)
{
	static uint8_t pl[300];
	memset(pl, 'q', sizeof(pl));
	/* accumulated over fragments */
	buf_reset(&b);
	put_frame(&b, RR_WS_TEXT, pl, 60);
	put_frame(&b, RR_WS_CONT, pl, 40);
	put_frame(&b, FIN | RR_WS_CONT, pl, 0);
	expect_lim("fragments at limit", &b, 100, logged('T', 0, pl, 100), 0);
	buf_reset(&b);
	put_frame(&b, RR_WS_TEXT, pl, 60);
	put_frame(&b, FIN | RR_WS_PING, "", 0);
	put_frame(&b, FIN | RR_WS_CONT, pl, 41);
	expect_lim("fragments over limit", &b, 100, "P0:;", RR_WS_CLOSE_TOO_BIG);
	/* control frames do not count */
	buf_reset(&b);
	put_frame(&b, FIN | RR_WS_PING, pl, 100);
	expect_lim("ping over message limit", &b, 10, logged('P', 0, pl, 100), 0);
	/* a zero limit still passes empty messages */
	buf_reset(&b);
	put_frame(&b, FIN | RR_WS_BINARY, "", 0);
	expect_lim("zero limit", &b, 0, "B0:;", 0);

	/* decided from the header alone: only 14 bytes of a 2^40-byte frame */
	uint8_t mask[4];
	buf_reset(&b);
	put_hdr(&b, FIN | RR_WS_BINARY, true, 0, 1ull << 40, mask);
	CHECK_EQ(b.len, 14);
	expect("header only, huge", &b, "", RR_WS_CLOSE_TOO_BIG);
	buf_reset(&b);
	put_hdr(&b, FIN | RR_WS_TEXT, true, 0, (1u << 20) + 1, mask);
	expect("header only, limit + 1", &b, "", RR_WS_CLOSE_TOO_BIG);
	buf_reset(&b);
	put_frame(&b, RR_WS_TEXT, pl, 200);
	put_hdr(&b, FIN | RR_WS_CONT, true, 0, 0x7fffffffffffffffull, mask);
	expect_lim("continuation header, max length", &b, 1000, "", RR_WS_CLOSE_TOO_BIG);
	/* and the header is enough: the reader returned before any payload */
	struct rr_ws_rx rx;
	struct rr_ws_limits lim = {.message_bytes_max = 1u << 20};
	struct rec r;
	uint16_t code = 0;
	memset(&r, 0, sizeof(r));
	buf_reset(&b);
	put_hdr(&b, FIN | RR_WS_BINARY, true, 0, 1ull << 40, mask);
	rr_ws_rx_init(&rx);
	CHECK_EQ(rr_ws_rx_feed(&rx, b.p, b.len, &lim, &ops, &r, &code), -EMSGSIZE);
	CHECK_EQ(code, RR_WS_CLOSE_TOO_BIG);
	CHECK(rx._msg == NULL);
	rr_ws_rx_free(&rx);
}

static void test_zero_copy_and_idle(void)
{
	struct rr_ws_rx rx;
	struct rr_ws_limits lim = {.message_bytes_max = 1u << 20};
	struct rec r;
	uint16_t code = 0;
	memset(&r, 0, sizeof(r));

	buf_reset(&b);
	put_str(&b, FIN | RR_WS_TEXT, "in place");
	put_str(&b, FIN | RR_WS_BINARY, "also");
	rr_ws_rx_init(&rx);
	r.fed_lo = b.p;
	r.fed_hi = b.p + b.len;
	CHECK_EQ(rr_ws_rx_feed(&rx, b.p, b.len, &lim, &ops, &r, &code), (ssize_t)b.len);
	CHECK_EQ(r.in_place, 2);
	CHECK(rr_ws_rx_idle(&rx));
	CHECK(rx._msg == NULL && rx._ctrl == NULL);

	/* split: a copy, freed after delivery */
	buf_reset(&b);
	put_str(&b, FIN | RR_WS_TEXT, "copied");
	memset(&r, 0, sizeof(r));
	r.fed_lo = b.p;
	r.fed_hi = b.p + b.len;
	CHECK_EQ(rr_ws_rx_feed(&rx, b.p, 1, &lim, &ops, &r, &code), 1);
	CHECK(!rr_ws_rx_idle(&rx));
	CHECK_EQ(rr_ws_rx_feed(&rx, b.p + 1, 8, &lim, &ops, &r, &code), 8);
	CHECK(!rr_ws_rx_idle(&rx));
	CHECK(rx._msg != NULL);
	CHECK_EQ(rr_ws_rx_feed(&rx, b.p + 9, b.len - 9, &lim, &ops, &r, &code),
		 (ssize_t)(b.len - 9));
	CHECK(strcmp(r.log, "T6:636f70696564;") == 0);
	CHECK_EQ(r.in_place, 0);
	CHECK(rr_ws_rx_idle(&rx));
	CHECK(rx._msg == NULL);

	/* a control frame split across feeds is assembled, then released */
	buf_reset(&b);
	put_str(&b, FIN | RR_WS_PING, "ping!");
	memset(&r, 0, sizeof(r));
	CHECK_EQ(rr_ws_rx_feed(&rx, b.p, 8, &lim, &ops, &r, &code), 8);
	CHECK(rx._ctrl != NULL);
	CHECK(!rr_ws_rx_idle(&rx));
	CHECK_EQ(rr_ws_rx_feed(&rx, b.p + 8, b.len - 8, &lim, &ops, &r, &code),
		 (ssize_t)(b.len - 8));
	CHECK(rx._ctrl == NULL);
	CHECK(rr_ws_rx_idle(&rx));
	CHECK(strcmp(r.log, "P5:70696e6721;") == 0);

	/* empty feed */
	CHECK_EQ(rr_ws_rx_feed(&rx, NULL, 0, &lim, &ops, &r, &code), 0);
	CHECK(rr_ws_rx_idle(&rx));

	/* a zero-initialised reader works too */
	struct rr_ws_rx zero = {0};
	buf_reset(&b);
	put_str(&b, FIN | RR_WS_TEXT, "z");
	CHECK_EQ(rr_ws_rx_feed(&zero, b.p, b.len, &lim, &ops, &r, &code), (ssize_t)b.len);
	rr_ws_rx_free(&zero);
	rr_ws_rx_free(&rx);
}

static void test_stop(void)
{
	/* a callback that returns non-zero stops the feed right after its
	 * frame; feeding the rest carries on */
	buf_reset(&b);
	put_str(&b, FIN | RR_WS_TEXT, "one");
	size_t first = b.len;
	put_str(&b, FIN | RR_WS_PING, "p");
	size_t second = b.len;
	put_str(&b, FIN | RR_WS_TEXT, "two");
	for (int stop = 1; stop <= 3; stop++) {
		struct rr_ws_rx rx;
		struct rr_ws_limits lim = {.message_bytes_max = 100};
		struct rec r;
		uint16_t code = 0;
		uint8_t copy[64];
		memcpy(copy, b.p, b.len);
		memset(&r, 0, sizeof(r));
		r.stop_after = stop;
		rr_ws_rx_init(&rx);
		ssize_t got = rr_ws_rx_feed(&rx, copy, b.len, &lim, &ops, &r, &code);
		size_t want = stop == 1 ? first : stop == 2 ? second : b.len;
		CHECK_EQ(got, (ssize_t)want);
		CHECK(rr_ws_rx_idle(&rx));
		r.stop_after = 0;
		if (got > 0 && (size_t)got < b.len)
			CHECK_EQ(rr_ws_rx_feed(&rx, copy + got, b.len - (size_t)got, &lim, &ops, &r,
					       &code),
				 (ssize_t)(b.len - (size_t)got));
		CHECK(strcmp(r.log, "T3:6f6e65;P1:70;T3:74776f;") == 0);
		rr_ws_rx_free(&rx);
	}
	/* stopping on a copied (split) message: consumed up to its end */
	{
		struct rr_ws_rx rx;
		struct rr_ws_limits lim = {.message_bytes_max = 100};
		struct rec r;
		uint16_t code = 0;
		uint8_t copy[64];
		memcpy(copy, b.p, b.len);
		memset(&r, 0, sizeof(r));
		r.stop_after = 1;
		rr_ws_rx_init(&rx);
		CHECK_EQ(rr_ws_rx_feed(&rx, copy, 3, &lim, &ops, &r, &code), 3);
		CHECK_EQ(rr_ws_rx_feed(&rx, copy + 3, b.len - 3, &lim, &ops, &r, &code),
			 (ssize_t)(first - 3));
		rr_ws_rx_free(&rx);
	}
}

static void test_garbage_then_free(void)
{
	/* a partial frame left in the reader is released by free (ASan
	 * checks the leak) */
	struct rr_ws_rx rx;
	struct rr_ws_limits lim = {.message_bytes_max = 1000};
	struct rec r;
	uint16_t code = 0;
	memset(&r, 0, sizeof(r));
	buf_reset(&b);
	put_frame(&b, RR_WS_BINARY, "abcdef", 6);
	put_frame(&b, FIN | RR_WS_PING, "abcdef", 6);
	rr_ws_rx_init(&rx);
	CHECK_EQ(rr_ws_rx_feed(&rx, b.p, b.len - 2, &lim, &ops, &r, &code), (ssize_t)(b.len - 2));
	CHECK(rx._msg != NULL && rx._ctrl != NULL);
	rr_ws_rx_free(&rx);
	CHECK(rx._msg == NULL && rx._ctrl == NULL);
}

int main(void)
{
	test_lengths();
	test_length_encoding_errors();
	test_masking();
	test_fragmentation();
	test_close_inside_message_not_idle();
	test_protocol_errors();
	test_utf8();
	test_close();
	test_limit();
	test_zero_copy_and_idle();
	test_stop();
	test_garbage_then_free();
	free(b.p);
	return check_done();
}
