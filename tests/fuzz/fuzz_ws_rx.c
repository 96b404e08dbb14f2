/*
 * libFuzzer target for the message layer (src/ws/ws_rx.c).
 *
 * Input: one configuration byte, then the stream. Config bits 0-2 pick the
 * message limit; bit 3 selects "structured" mode, in which the rest is read
 * as records (b0, length, payload) that the harness turns into properly
 * masked client frames, so mutations reach fragmentation, UTF-8 and close
 * handling instead of dying at the mask check; bits 4-7 pick how often a
 * callback asks to stop.
 *
 * The stream is fed whole, then again in pieces whose sizes come from a
 * generator seeded by the input (restarting after callback stops from the
 * returned count). Both runs must produce the same callbacks (hashed), the
 * same error and close code. Every delivery is checked: text and close
 * reasons are valid UTF-8, messages within the limit, control payloads
 * <= 125, close codes valid; a clean end between messages leaves the
 * reader idle with no memory held.
 */
#include "ws/ws.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint64_t limits_table[8] = {0, 1, 16, 125, 126, 1000, 65536, 1u << 20};

struct obs {
	uint64_t hash;
	unsigned calls;
	unsigned stop_every; /* 0: never stop */
	uint64_t limit;
};

static void mix(struct obs *o, uint64_t v)
{
	o->hash = (o->hash ^ v) * 0x100000001b3ull;
}

static void mix_bytes(struct obs *o, const uint8_t *p, size_t n)
{
	mix(o, n);
	for (size_t k = 0; k < n; k++)
		mix(o, p[k]);
}

static int stop(struct obs *o)
{
	o->calls++;
	return o->stop_every && o->calls % o->stop_every == 0;
}

static int on_message(void *ctx, uint8_t opcode, uint8_t *p, size_t n)
{
	struct obs *o = ctx;
	if (opcode != RR_WS_TEXT && opcode != RR_WS_BINARY)
		abort();
	if (n > o->limit)
		abort();
	if (opcode == RR_WS_TEXT && !rr_utf8_valid(p, n))
		abort();
	mix(o, opcode);
	mix_bytes(o, p, n);
	return stop(o);
}

static int on_ping(void *ctx, uint8_t *p, size_t n)
{
	if (n > 125)
		abort();
	mix(ctx, 0x100);
	mix_bytes(ctx, p, n);
	return stop(ctx);
}

static int on_pong(void *ctx, uint8_t *p, size_t n)
{
	if (n > 125)
		abort();
	mix(ctx, 0x200);
	mix_bytes(ctx, p, n);
	return stop(ctx);
}

static int on_close(void *ctx, uint16_t code, const uint8_t *reason, size_t n)
{
	if (n > 123 || !rr_utf8_valid(reason, n))
		abort();
	if (code == RR_WS_CLOSE_NO_STATUS ? n != 0 : !rr_ws_close_code_valid(code))
		abort();
	mix(ctx, 0x300 + (uint64_t)code);
	mix_bytes(ctx, reason, n);
	return stop(ctx);
}

static const struct rr_ws_rx_ops ops = {
    .message = on_message,
    .ping = on_ping,
    .pong = on_pong,
    .close = on_close,
};

struct outcome {
	uint64_t hash;
	unsigned calls;
	ssize_t err;
	uint16_t code;
	bool idle;
};

/*
 * Feed s[0..n) (modified in place) in pieces: of at most `fixed` bytes when
 * fixed != 0, else of sizes from a small generator when seed != 0, else
 * whole. A stop makes us resume from the returned count, as a connection
 * would.
 */
static void run(uint8_t *s, size_t n, uint64_t limit, unsigned stop_every, uint32_t seed,
		size_t fixed, struct outcome *out)
{
	struct rr_ws_rx rx;
	struct rr_ws_limits lim = {.message_bytes_max = limit};
	struct obs o = {.hash = 0xcbf29ce484222325ull, .stop_every = stop_every, .limit = limit};
	rr_ws_rx_init(&rx);
	out->err = 0;
	out->code = 0;

	size_t at = 0;
	size_t rounds = 0;
	while (at < n) {
		size_t piece = n - at;
		if (fixed) {
			if (fixed < piece)
				piece = fixed;
		} else if (seed) {
			seed = seed * 1664525u + 1013904223u;
			/* mostly small pieces, sometimes large ones */
			unsigned shift = (seed >> 28) & 0xf;
			size_t p = 1 + ((seed >> 8) & ((1u << (shift < 12 ? shift : 12)) - 1));
			if (p < piece)
				piece = p;
		}
		uint16_t code = 0;
		ssize_t got = rr_ws_rx_feed(&rx, s + at, piece, &lim, &ops, &o, &code);
		if (got < 0) {
			out->err = got;
			out->code = code;
			if (code != RR_WS_CLOSE_PROTOCOL && code != RR_WS_CLOSE_INVALID_DATA &&
			    code != RR_WS_CLOSE_TOO_BIG)
				abort(); /* 1011 would mean malloc failed */
			break;
		}
		if ((size_t)got > piece)
			abort();
		if ((size_t)got < piece && !stop_every)
			abort(); /* short count without a stop */
		at += (size_t)got;
		if (++rounds > 4 * n + 16)
			abort(); /* no progress */
	}
	out->hash = o.hash;
	out->calls = o.calls;
	out->idle = rr_ws_rx_idle(&rx);
	if (out->err == 0 && out->idle && (rx._msg != NULL || rx._ctrl != NULL))
		abort();
	rr_ws_rx_free(&rx);
}

/*
 * Structured mode: records of (b0, len byte, payload) become masked frames.
 * With out == NULL only measures, so the stream can be allocated exactly
 * (ASan then sees any read past its end). At most cap bytes.
 */
static size_t build_frames(const uint8_t *d, size_t n, uint8_t *out, size_t cap)
{
	size_t i = 0, o = 0;
	while (i + 2 <= n) {
		uint8_t b0 = d[i];
		uint8_t lb = d[i + 1];
		i += 2;
		size_t len = lb;
		int form = 7;
		if (lb >= 250) {
			/* bigger lengths; 125 in the 16-bit form is non-minimal */
			static const size_t big[6] = {125, 126, 300, 65535, 65536, 70000};
			len = big[lb - 250];
			form = len <= 0xffff ? 16 : 64;
		} else if (len >= 126) {
			form = 16;
		}
		size_t hl = 2 + (form == 16 ? 2 : form == 64 ? 8 : 0) + 4;
		if (o + hl + len > cap)
			break;
		if (out == NULL) {
			o += hl + len;
			i += len < n - i ? len : n - i;
			continue;
		}
		uint8_t mask[4] = {(uint8_t)(i * 13), (uint8_t)(i * 7 + 1), 0xa5, (uint8_t)lb};
		out[o++] = b0;
		if (form == 7) {
			out[o++] = (uint8_t)(0x80 | len);
		} else if (form == 16) {
			out[o++] = 0x80 | 126;
			out[o++] = (uint8_t)(len >> 8);
			out[o++] = (uint8_t)len;
		} else {
			out[o++] = 0x80 | 127;
			for (int k = 0; k < 8; k++)
				out[o++] = (uint8_t)((uint64_t)len >> (56 - 8 * k));
		}
		memcpy(out + o, mask, 4);
		o += 4;
		/* payload from the input, padded with a repeating pattern */
		for (size_t k = 0; k < len; k++) {
			uint8_t v = i < n ? d[i++] : (uint8_t)('a' + k % 26);
			out[o++] = v ^ mask[k & 3];
		}
	}
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t cfg = data[0];
	uint64_t limit = limits_table[cfg & 7];
	unsigned stop_every = cfg >> 4; /* 0 = never */
	const uint8_t *body = data + 1;
	size_t n = size - 1;

	/* structured streams are bounded so one input stays cheap */
	const size_t cap = 4 * 70000 + 16 * n;
	size_t len = (cfg & 8) ? build_frames(body, n, NULL, cap) : n;
	uint8_t *stream = malloc(len ? len : 1);
	uint8_t *work = malloc(len ? len : 1);
	if (stream == NULL || work == NULL)
		abort();
	if (cfg & 8) {
		if (build_frames(body, n, stream, len) != len)
			abort();
	} else {
		memcpy(stream, body, n);
	}

	uint32_t seed = 0x9e3779b9u;
	for (size_t k = 0; k < n; k++)
		seed = (seed ^ body[k]) * 16777619u;
	seed |= 1;

	struct outcome whole, pieces, bytes;
	memcpy(work, stream, len);
	run(work, len, limit, stop_every, 0, 0, &whole);
	memcpy(work, stream, len);
	run(work, len, limit, stop_every, seed, 0, &pieces);
	if (whole.hash != pieces.hash || whole.calls != pieces.calls || whole.err != pieces.err ||
	    whole.code != pieces.code || (whole.err == 0 && whole.idle != pieces.idle))
		abort();
	/* byte by byte, for small inputs */
	if (len <= 512) {
		memcpy(work, stream, len);
		run(work, len, limit, stop_every, 0, 1, &bytes);
		if (whole.hash != bytes.hash || whole.calls != bytes.calls ||
		    whole.err != bytes.err || whole.code != bytes.code)
			abort();
	}
	free(stream);
	free(work);
	return 0;
}
