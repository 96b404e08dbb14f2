/*
 * Incremental reader of HTTP/1.1 answers on a keep-alive connection (see
 * http_answer.h).
 */
#include "http_answer.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

void rr_bench_http_rx_init(struct rr_bench_http_rx *rx)
{
	rx->in_body = false;
	rx->head_len = 0;
	rx->body_kept = 0;
	rx->body_left = 0;
	memset(&rx->cur, 0, sizeof(rx->cur));
}

static bool is_ows(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* Does the comma-separated list v[0..n) hold the token tok (any case)? */
static bool has_token(const char *v, size_t n, const char *tok)
{
	size_t tl = strlen(tok);
	size_t i = 0;
	while (i < n) {
		while (i < n && (is_ows(v[i]) || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && is_ows(v[e - 1]))
			e--;
		if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
			return true;
	}
	return false;
}

/* The head h[0..n), ending with the empty line's CRLF: status and the
 * headers that frame the body. */
static int parse_head(const char *h, size_t n, struct rr_bench_http_answer *a)
{
	memset(a, 0, sizeof(*a));
	/* "HTTP/1.x SSS" then a space (a reason, maybe empty) or the line end */
	if (n < 14 || memcmp(h, "HTTP/1.", 7) != 0 || h[7] < '0' || h[7] > '9' || h[8] != ' ')
		return -EPROTO;
	int st = 0;
	for (int i = 9; i < 12; i++) {
		if (h[i] < '0' || h[i] > '9')
			return -EPROTO;
		st = st * 10 + (h[i] - '0');
	}
	if (st < 100 || st > 599 || (h[12] != ' ' && h[12] != '\r'))
		return -EPROTO;
	a->status = st;
	const char *line = memchr(h, '\n', n);
	if (!line || line[-1] != '\r')
		return -EPROTO;
	bool have_len = false;
	uint64_t len = 0;
	/* bounded by the head: each turn moves past one line */
	for (;;) {
		line++;
		const char *nl = memchr(line, '\n', (size_t)(h + n - line));
		if (!nl || nl == line || nl[-1] != '\r')
			return -EPROTO;
		size_t ll = (size_t)(nl - 1 - line);
		if (ll == 0)
			break; /* the empty line: end of the head */
		if (is_ows(line[0]))
			return -EPROTO; /* obsolete line folding */
		const char *colon = memchr(line, ':', ll);
		if (!colon || colon == line)
			return -EPROTO;
		size_t nlen = (size_t)(colon - line);
		if (is_ows(line[nlen - 1]))
			return -EPROTO; /* no space before the colon (RFC 9112 5.1) */
		const char *v = colon + 1;
		size_t vl = ll - nlen - 1;
		while (vl && is_ows(*v))
			v++, vl--;
		while (vl && is_ows(v[vl - 1]))
			vl--;
		if (nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
			if (vl == 0 || vl > 19)
				return -EBADMSG;
			uint64_t x = 0;
			for (size_t i = 0; i < vl; i++) {
				if (v[i] < '0' || v[i] > '9')
					return -EBADMSG;
				x = x * 10 + (uint64_t)(v[i] - '0');
			}
			if (x > RR_BENCH_HTTP_BODY_MAX || (have_len && x != len))
				return -EBADMSG;
			have_len = true;
			len = x;
		} else if (nlen == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
			return -EBADMSG; /* chunked: not what the broker sends */
		} else if (nlen == 10 && strncasecmp(line, "Connection", 10) == 0) {
			if (has_token(v, vl, "close"))
				a->close = true;
		}
		line = nl;
	}
	if (st < 200 || st == 204 || st == 304) {
		if (have_len && len && st < 200)
			return -EBADMSG;
		len = 0; /* no body, whatever the header says */
	} else if (!have_len) {
		return -EBADMSG;
	}
	a->body_len = len;
	return 0;
}

ssize_t rr_bench_http_feed(struct rr_bench_http_rx *rx, const uint8_t *p, size_t n,
			   rr_bench_http_answer_fn *fn, void *ctx)
{
	size_t off = 0;
	/* bounded: every turn consumes at least one byte or ends the call */
	while (off < n) {
		if (!rx->in_body) {
			size_t had = rx->head_len;
			size_t room = RR_BENCH_HTTP_HEAD_MAX - had;
			size_t take = n - off < room ? n - off : room;
			memcpy(rx->head + had, p + off, take);
			size_t have = had + take;
			/* the terminator may straddle the previous piece */
			size_t from = had >= 3 ? had - 3 : 0;
			const char *end = NULL;
			if (have >= 4)
				end = memmem(rx->head + from, have - from, "\r\n\r\n", 4);
			if (!end) {
				if (have >= RR_BENCH_HTTP_HEAD_MAX)
					return -EMSGSIZE;
				rx->head_len = (uint16_t)have;
				off += take;
				continue;
			}
			size_t hl = (size_t)(end - rx->head) + 4;
			off += hl - had;
			rx->head_len = 0;
			int err = parse_head(rx->head, hl, &rx->cur);
			if (err)
				return err;
			if (rx->cur.status < 200)
				continue; /* interim: the real answer follows */
			rx->in_body = true;
			rx->body_left = rx->cur.body_len;
			rx->body_kept = 0;
		} else {
			size_t take = n - off;
			if (take > rx->body_left)
				take = (size_t)rx->body_left;
			size_t keep = RR_BENCH_HTTP_BODY_KEEP - rx->body_kept;
			if (keep > take)
				keep = take;
			memcpy(rx->body + rx->body_kept, p + off, keep);
			rx->body_kept = (uint16_t)(rx->body_kept + keep);
			rx->body_left -= take;
			off += take;
		}
		if (rx->in_body && rx->body_left == 0) {
			rx->in_body = false;
			rx->cur.body = rx->body;
			rx->cur.body_kept = rx->body_kept;
			int stop = fn(ctx, &rx->cur);
			rx->body_kept = 0;
			if (stop)
				return (ssize_t)off;
		}
	}
	return (ssize_t)off;
}

int64_t rr_bench_http_delivered(const char *body, size_t len)
{
	static const char key[] = "\"delivered\"";
	const char *k = memmem(body, len, key, sizeof(key) - 1);
	if (!k)
		return -1;
	const char *p = k + sizeof(key) - 1, *e = body + len;
	while (p < e && is_ows(*p))
		p++;
	if (p == e || *p != ':')
		return -1;
	p++;
	while (p < e && is_ows(*p))
		p++;
	if (p == e || *p < '0' || *p > '9')
		return -1;
	int64_t v = 0;
	for (int i = 0; p < e && *p >= '0' && *p <= '9' && i < 18; p++, i++)
		v = v * 10 + (*p - '0');
	return v;
}
