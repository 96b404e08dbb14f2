/*
 * The publish mode's HTTP answer reader: a stream of keep-alive answers
 * (interim 100, 200 with {"delivered":N}, errors with bodies, 204, a body
 * longer than what is kept, Connection: close) cut at every split point,
 * at every pair of split points and byte by byte must give the same
 * answers; malformed heads are refused whatever the split.
 */
#include "../http_answer.c"

#include "../../tests/unit/check.h"

#include <stdio.h>
#include <stdlib.h>

struct rec {
	int status;
	bool close;
	uint64_t body_len;
	int64_t delivered;
	char kept[RR_BENCH_HTTP_BODY_KEEP + 1];
};

struct log {
	struct rec r[16];
	int n;
	int stop_after; /* the callback asks to stop after this many (0: never) */
};

static int on_answer(void *ctx, const struct rr_bench_http_answer *a)
{
	struct log *l = ctx;
	if (l->n < 16) {
		struct rec *r = &l->r[l->n];
		r->status = a->status;
		r->close = a->close;
		r->body_len = a->body_len;
		r->delivered = rr_bench_http_delivered(a->body, a->body_kept);
		memcpy(r->kept, a->body, a->body_kept);
		r->kept[a->body_kept] = '\0';
	}
	l->n++;
	return l->stop_after && l->n == l->stop_after;
}

static char big_body[301];
#define ERR_BODY "{\"error\":{\"code\":\"unauthorized\",\"message\":\"unknown key\"}}"

static const char *stream(size_t *len)
{
	static char buf[4096];
	for (int i = 0; i < 300; i++)
		big_body[i] = (char)('a' + i % 26);
	big_body[300] = '\0';
	const char *err = ERR_BODY;
	int n = snprintf(
	    buf, sizeof(buf),
	    "HTTP/1.1 100 Continue\r\n\r\n"
	    "HTTP/1.1 200 OK\r\nServer: ringroom\r\nContent-Type: application/json\r\n"
	    "Content-Length: 15\r\nCache-Control: no-store\r\n\r\n{\"delivered\":3}"
	    "HTTP/1.1 401 Unauthorized\r\nServer: ringroom\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\nCache-Control: no-store\r\n"
	    "WWW-Authenticate: Bearer realm=\"ringroom\"\r\n\r\n%s"
	    "HTTP/1.1 204 No Content\r\n\r\n"
	    "HTTP/1.0 200 OK\r\ncontent-length:   300 \r\nX-Empty:\r\n\r\n%s"
	    "HTTP/1.1 200 \r\nContent-Length: 20\r\ncontent-length: 20\r\n\r\n{ \"delivered\" : "
	    "250}"
	    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
	    "Connection: keep-alive, Close\r\n\r\n",
	    strlen(err), err, big_body);
	*len = (size_t)n;
	return buf;
}

static void expect(struct rec *e, int *n)
{
	memset(e, 0, sizeof(struct rec) * 6);
	e[0] = (struct rec){.status = 200, .body_len = 15, .delivered = 3};
	strcpy(e[0].kept, "{\"delivered\":3}");
	e[1] = (struct rec){.status = 401, .delivered = -1};
	strcpy(e[1].kept, ERR_BODY);
	e[1].body_len = strlen(ERR_BODY);
	e[2] = (struct rec){.status = 204, .body_len = 0, .delivered = -1};
	e[3] = (struct rec){.status = 200, .body_len = 300, .delivered = -1};
	memcpy(e[3].kept, big_body, RR_BENCH_HTTP_BODY_KEEP);
	e[4] = (struct rec){.status = 200, .body_len = 20, .delivered = 250};
	strcpy(e[4].kept, "{ \"delivered\" : 250}");
	e[5] = (struct rec){.status = 503, .close = true, .delivered = -1};
	*n = 6;
}

static bool same(const struct log *l, const struct rec *e, int n)
{
	if (l->n != n)
		return false;
	for (int i = 0; i < n; i++) {
		const struct rec *a = &l->r[i], *b = &e[i];
		if (a->status != b->status || a->close != b->close || a->body_len != b->body_len ||
		    a->delivered != b->delivered || strcmp(a->kept, b->kept) != 0)
			return false;
	}
	return true;
}

/* Feed p[0..n) cut at the given points (ascending); returns the first error
 * or the total consumed. */
static ssize_t feed_cuts(struct rr_bench_http_rx *rx, struct log *l, const char *p, size_t n,
			 const size_t *cuts, int ncuts)
{
	size_t at = 0;
	ssize_t total = 0;
	for (int i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : n;
		ssize_t r = rr_bench_http_feed(rx, (const uint8_t *)p + at, to - at, on_answer, l);
		if (r < 0)
			return r;
		total += r;
		at = to;
	}
	return total;
}

static struct rr_bench_http_rx rx;

static void test_splits(void)
{
	size_t n;
	const char *s = stream(&n);
	struct rec e[6];
	int ne;
	expect(e, &ne);

	/* whole */
	struct log l = {0};
	rr_bench_http_rx_init(&rx);
	CHECK_EQ(feed_cuts(&rx, &l, s, n, NULL, 0), (ssize_t)n);
	CHECK(same(&l, e, ne));
	CHECK(!rx.in_body && rx.head_len == 0);

	/* every split point */
	int bad = 0;
	for (size_t i = 0; i <= n; i++) {
		struct log li = {0};
		rr_bench_http_rx_init(&rx);
		size_t cut[1] = {i};
		if (feed_cuts(&rx, &li, s, n, cut, 1) != (ssize_t)n || !same(&li, e, ne)) {
			if (!bad)
				fprintf(stderr, "split at %zu: %d answers\n", i, li.n);
			bad++;
		}
	}
	CHECK_EQ(bad, 0);

	/* every pair of split points */
	bad = 0;
	for (size_t i = 0; i <= n; i++)
		for (size_t j = i; j <= n; j++) {
			struct log li = {0};
			rr_bench_http_rx_init(&rx);
			size_t cut[2] = {i, j};
			if (feed_cuts(&rx, &li, s, n, cut, 2) != (ssize_t)n || !same(&li, e, ne)) {
				if (!bad)
					fprintf(stderr, "splits at %zu, %zu: %d answers\n", i, j,
						li.n);
				bad++;
			}
		}
	CHECK_EQ(bad, 0);

	/* byte by byte */
	struct log lb = {0};
	rr_bench_http_rx_init(&rx);
	ssize_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += rr_bench_http_feed(&rx, (const uint8_t *)s + i, 1, on_answer, &lb);
	CHECK_EQ(total, (ssize_t)n);
	CHECK(same(&lb, e, ne));

	/* a callback that stops: the feed returns right after that answer,
	 * and the rest fed again goes on from there */
	for (int stop = 1; stop <= ne; stop++) {
		struct log ls = {.stop_after = stop};
		rr_bench_http_rx_init(&rx);
		ssize_t r = rr_bench_http_feed(&rx, (const uint8_t *)s, n, on_answer, &ls);
		CHECK(r > 0 && r <= (ssize_t)n);
		CHECK_EQ(ls.n, stop);
		ls.stop_after = 0;
		ssize_t r2 =
		    rr_bench_http_feed(&rx, (const uint8_t *)s + r, n - (size_t)r, on_answer, &ls);
		CHECK_EQ(r + r2, (ssize_t)n);
		CHECK(same(&ls, e, ne));
	}
}

/* A malformed answer after a good one: the good one is delivered, then the
 * error, at every split point. */
static void bad_case(const char *bad, ssize_t want)
{
	char buf[8192];
	const char *good = "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"delivered\":1}";
	int n = snprintf(buf, sizeof(buf), "%s%s", good, bad);
	int wrong = 0;
	for (int i = 0; i <= n; i++) {
		struct log l = {0};
		rr_bench_http_rx_init(&rx);
		size_t cut[1] = {(size_t)i};
		ssize_t r = feed_cuts(&rx, &l, buf, (size_t)n, cut, 1);
		if (r != want || l.n != 1 || l.r[0].delivered != 1) {
			if (!wrong)
				fprintf(stderr, "bad case %.30s... split %d: %zd, %d answers\n",
					bad, i, r, l.n);
			wrong++;
		}
	}
	CHECK_EQ(wrong, 0);
}

static void test_bad(void)
{
	bad_case("HTTP/1.1 200 OK\r\n\r\n", -EBADMSG); /* no length */
	bad_case("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", -EBADMSG);
	bad_case("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", -EBADMSG);
	bad_case("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", -EBADMSG);
	bad_case("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", -EBADMSG);
	bad_case("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", -EBADMSG);
	bad_case("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", -EBADMSG);
	bad_case("HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n", -EBADMSG);
	bad_case("HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", -EPROTO);
	bad_case("HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", -EPROTO);
	bad_case("HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", -EPROTO);
	bad_case("HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n", -EPROTO);
	bad_case("HTTP/1.1 600 High\r\nContent-Length: 0\r\n\r\n", -EPROTO);
	bad_case("HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", -EPROTO);
	bad_case("http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", -EPROTO);
	bad_case("HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 0\r\n\r\n", -EPROTO);
	bad_case("HTTP/1.1 200 OK\r\n: empty name\r\nContent-Length: 0\r\n\r\n", -EPROTO);
	bad_case("HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", -EPROTO);
	bad_case("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n", -EPROTO);
	bad_case("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", -EPROTO); /* bare LF */
	bad_case("HTTP/1.1 200 OK\r\nX: a\nContent-Length: 0\r\n\r\n", -EPROTO);
	/* a head that never ends within the limit */
	char big[RR_BENCH_HTTP_HEAD_MAX + 64];
	int n = snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX-Long: ");
	memset(big + n, 'x', sizeof(big) - 1 - (size_t)n);
	big[sizeof(big) - 1] = '\0';
	bad_case(big, -EMSGSIZE);
}

static void test_edges(void)
{
	/* the largest head accepted, and one byte more refused */
	char h[RR_BENCH_HTTP_HEAD_MAX + 1];
	const char *a = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: ";
	size_t al = strlen(a);
	memcpy(h, a, al);
	memset(h + al, 'p', RR_BENCH_HTTP_HEAD_MAX - al - 4);
	memcpy(h + RR_BENCH_HTTP_HEAD_MAX - 4, "\r\n\r\n", 4);
	struct log l = {0};
	rr_bench_http_rx_init(&rx);
	CHECK_EQ(rr_bench_http_feed(&rx, (uint8_t *)h, RR_BENCH_HTTP_HEAD_MAX, on_answer, &l),
		 RR_BENCH_HTTP_HEAD_MAX);
	CHECK_EQ(l.n, 1);
	memcpy(h, a, al);
	memset(h + al, 'p', RR_BENCH_HTTP_HEAD_MAX - al - 3);
	memcpy(h + RR_BENCH_HTTP_HEAD_MAX - 3, "\r\n\r\n", 4);
	struct log l2 = {0};
	rr_bench_http_rx_init(&rx);
	CHECK_EQ(rr_bench_http_feed(&rx, (uint8_t *)h, RR_BENCH_HTTP_HEAD_MAX + 1, on_answer, &l2),
		 -EMSGSIZE);
	CHECK_EQ(l2.n, 0);

	/* nothing fed, nothing happens */
	struct log l3 = {0};
	rr_bench_http_rx_init(&rx);
	CHECK_EQ(rr_bench_http_feed(&rx, (const uint8_t *)"", 0, on_answer, &l3), 0);
	CHECK_EQ(l3.n, 0);

	/* the delivered count */
	CHECK_EQ(rr_bench_http_delivered("{\"delivered\":0}", 15), 0);
	CHECK_EQ(rr_bench_http_delivered("{\"delivered\":1000000}", 21), 1000000);
	CHECK_EQ(rr_bench_http_delivered("{\"delivered\":", 13), -1);
	CHECK_EQ(rr_bench_http_delivered("{\"delivered\":x}", 15), -1);
	CHECK_EQ(rr_bench_http_delivered("{\"delivered\"}", 13), -1);
	CHECK_EQ(rr_bench_http_delivered("{\"id\":5}", 8), -1);
	/* cut off inside the kept prefix: only what is there */
	CHECK_EQ(rr_bench_http_delivered("{\"delivered\":12", 15), 12);
}

int main(void)
{
	test_splits();
	test_bad();
	test_edges();
	return check_done();
}
