/*
 * ringroom-bench: encoding the chat messages it publishes and reading the
 * server's chat frames (see chat.h for the format).
 */
#include "chat.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t rr_bench_chat_max(uint32_t size)
{
	size_t content = size > RR_BENCH_CHAT_STAMP_HEX ? size : RR_BENCH_CHAT_STAMP_HEX;
	return content + RR_BENCH_CHAT_ENVELOPE;
}

size_t rr_bench_chat_encode(char *out, const struct rr_bench_stamp *st, uint32_t size)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t raw[RR_BENCH_STAMP_LEN];
	rr_bench_stamp_put(raw, st);
	size_t o = (size_t)sprintf(out, "{\"type\":\"message\",\"content\":\"");
	for (int i = 0; i < RR_BENCH_STAMP_LEN; i++) {
		out[o++] = hex[raw[i] >> 4];
		out[o++] = hex[raw[i] & 15];
	}
	for (uint32_t i = RR_BENCH_CHAT_STAMP_HEX; i < size; i++)
		out[o++] = (char)('a' + i % 26);
	o += (size_t)sprintf(out + o, "\",\"requestId\":\"%x.%" PRIu64 "\"}", st->run, st->ts_ns);
	return o;
}

/* The string value of "key":"..." in p[0..n); NULL if absent. A value cut
 * off by the end of the bytes kept runs to that end, *cut set. */
static const char *json_str(const uint8_t *p, size_t n, const char *key, size_t *vlen, int *cut)
{
	char pat[32];
	int kl = snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	const char *v = memmem(p, n, pat, (size_t)kl);
	if (!v)
		return NULL;
	v += kl;
	const char *end = memchr(v, '"', (size_t)((const char *)p + n - v));
	*cut = end == NULL;
	if (!end)
		end = (const char *)p + n;
	*vlen = (size_t)(end - v);
	return v;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Does the type value at t (n bytes left) equal name? */
static int type_is(const char *t, size_t n, const char *name)
{
	size_t l = strlen(name);
	return n > l && memcmp(t, name, l) == 0 && t[l] == '"';
}

enum rr_bench_chat_kind rr_bench_chat_parse(const uint8_t *p, size_t n,
					    struct rr_bench_chat_frame *f)
{
	static const char head[] = "{\"type\":\"";
	const size_t hl = sizeof(head) - 1;
	memset(f, 0, sizeof(*f));
	if (n < hl || memcmp(p, head, hl) != 0)
		return RR_BENCH_CHAT_BAD;
	const char *type = (const char *)p + hl;
	size_t left = n - hl, vl;
	int cut;
	if (type_is(type, left, "message")) {
		/* a long content is cut off by the bytes kept; its start is enough */
		const char *v = json_str(p, n, "content", &vl, &cut);
		uint8_t raw[RR_BENCH_STAMP_LEN];
		if (!v || vl < RR_BENCH_CHAT_STAMP_HEX)
			return RR_BENCH_CHAT_FOREIGN;
		for (int i = 0; i < RR_BENCH_STAMP_LEN; i++) {
			int hi = hexval(v[2 * i]), lo = hexval(v[2 * i + 1]);
			if (hi < 0 || lo < 0)
				return RR_BENCH_CHAT_FOREIGN;
			raw[i] = (uint8_t)(hi << 4 | lo);
		}
		if (!rr_bench_stamp_get(raw, &f->stamp))
			return RR_BENCH_CHAT_FOREIGN;
		return RR_BENCH_CHAT_MESSAGE;
	}
	if (type_is(type, left, "ack")) {
		const char *v = json_str(p, n, "requestId", &vl, &cut);
		char buf[48], *dot, *end;
		if (!v || cut || vl == 0 || vl >= sizeof(buf))
			return RR_BENCH_CHAT_BAD;
		memcpy(buf, v, vl);
		buf[vl] = '\0';
		unsigned long run = strtoul(buf, &dot, 16);
		if (dot == buf || *dot != '.' || run > UINT32_MAX)
			return RR_BENCH_CHAT_BAD;
		f->ack_ts = strtoull(dot + 1, &end, 10);
		if (end == dot + 1 || *end)
			return RR_BENCH_CHAT_BAD;
		f->ack_run = (uint32_t)run;
		return RR_BENCH_CHAT_ACK;
	}
	if (type_is(type, left, "initial_state"))
		return RR_BENCH_CHAT_INITIAL;
	if (type_is(type, left, "error"))
		return RR_BENCH_CHAT_ERROR;
	return RR_BENCH_CHAT_OTHER;
}
