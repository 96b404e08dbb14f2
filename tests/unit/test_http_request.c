/*
 * Unit tests for the backend API's side of the HTTP parser
 * (src/http/http_parse.c): whole requests with Content-Length bodies,
 * keep-alive, pipelining, and the small helpers (Bearer, Content-Type,
 * numeric query parameters, error statuses).
 *
 * Every request is fed at every split point, each prefix copied into a
 * buffer of exactly its size so a sanitizer build catches a read past len.
 * Pipelined requests are fed as a connection would receive them: split at
 * every point, and byte by byte.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "check.h"

static const struct rr_http_limits lim = {.header_bytes_max = 8192, .headers_max = 100};
#define BODY_MAX 1024

static bool str_is(struct rr_http_str s, const char *lit)
{
	return s.p != NULL && s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

static struct rr_http_str S(const char *lit) {
	struct rr_http_str s = {.p = lit, .n = strlen(lit)};

	return s;
}

/*
 * s is one request whose head is head bytes long and whose total is want
 * (> 0), or a failure want (< 0). Every prefix: -EAGAIN (head_bytes 0 before
 * the head is complete, head otherwise) until the verdict, then the verdict.
 */
static ssize_t
req_splits_at(int line, const char *s, size_t len, size_t head, ssize_t want,
	      struct rr_http_req *req)
{
	bool decided = false, ok = true;
	size_t k;
	ssize_t r;

	for (k = 0; k <= len && ok; k++) {
		char *copy = malloc(k ? k : 1);
		struct rr_http_req tmp;
		ssize_t rk;

		memcpy(copy, s, k);
		rk = rr_http_parse_request(k ? copy : NULL, k, &lim, BODY_MAX, &tmp);
		if (want > 0) {
			if ((ssize_t)k < want) {
				size_t hb = k < head ? 0 : head;

				ok = rk == -EAGAIN && tmp.head_bytes == hb;
			} else {
				ok = rk == want && tmp.head_bytes == head &&
				     tmp.body.p == copy + head && tmp.body.n == (size_t)want - head;
			}
		} else if (rk == want) {
			decided = true;
		} else {
			ok = rk == -EAGAIN && !decided;
		}
		if (!ok)
			fprintf(stderr, "line %d: prefix %zu gave %zd (head_bytes %zu), want %zd\n",
				line, k, rk, tmp.head_bytes, want);
		free(copy);
	}
	CHECK(ok);
	r = rr_http_parse_request(s, len, &lim, BODY_MAX, req);
	CHECK_EQ(r, want);
	return r;
}

#define req_splits(s, head, want, req) req_splits_at(__LINE__, s, strlen(s), head, want, req)

static void test_bodies(void)
{
	struct rr_http_req req;
	const char *pub = "POST /api/raw/lobby HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer k1\r\n"
			  "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\n"
			  "hello";
	size_t head = strlen(pub) - 5;

	if (req_splits(pub, head, (ssize_t)strlen(pub), &req) > 0) {
		CHECK(str_is(req.method, "POST"));
		CHECK(str_is(req.path, "/api/raw/lobby"));
		CHECK(str_is(req.body, "hello"));
		CHECK(str_is(req.content_type, "text/plain; charset=utf-8"));
		CHECK(rr_http_content_is_text(req.content_type));
		CHECK_EQ(req.content_length, 5);
		CHECK(req.has_content_length && req.has_body);
		CHECK(rr_http_keep_alive(&req));
		CHECK(!req.expect_continue);
	}

	/* no Content-Length: no body; Content-Length: 0 likewise */
	{
		const char *g = "GET /api/rooms HTTP/1.1\r\nHost: b\r\n\r\n";

		if (req_splits(g, strlen(g), (ssize_t)strlen(g), &req) > 0) {
			CHECK_EQ(req.body.n, 0);
			CHECK(!req.has_content_length);
		}
		g = "DELETE /api/chat/a/members/u HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
		if (req_splits(g, strlen(g), (ssize_t)strlen(g), &req) > 0)
			CHECK(req.has_content_length && !req.has_body);
	}

	/* a body of exactly the limit, and one byte over: refused from the head */
	{
		size_t n = BODY_MAX;
		char *s = malloc(200 + n);
		int h;

		if (s == NULL)
			return;
		h = sprintf(s, "POST /api/raw/a HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n);

		memset(s + h, 'x', n);
		s[h + n] = '\0';
		req_splits(s, (size_t)h, h + (ssize_t)n, &req);
		h = sprintf(s, "POST /api/raw/a HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n + 1);
		req_splits(s, (size_t)h, -EFBIG, &req);
		/* decided before any body byte */
		CHECK_EQ(rr_http_parse_request(s, (size_t)h, &lim, BODY_MAX, &req), -EFBIG);
		free(s);
	}
	req_splits("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n", 0,
		   -EFBIG, &req);
	CHECK_EQ(req.content_length, UINT64_MAX);

	/* Transfer-Encoding: 501 alone, 400 with Content-Length */
	req_splits("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		   0, -ENOTSUP, &req);
	req_splits("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
		   0, -EPROTO, &req);
	req_splits("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
		   0, -EPROTO, &req);

	/* repeated Content-Length: equal accepted, different refused */
	{
		const char *s =
		    "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 02\r\n\r\nab";

		req_splits(s, strlen(s) - 2, (ssize_t)strlen(s), &req);
	}
	req_splits("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", 0,
		   -EPROTO, &req);
	req_splits("POST / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nab", 0, -EPROTO, &req);
	req_splits("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 0, -EPROTO, &req);
	req_splits("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 0, -EPROTO, &req);
	req_splits("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 0, -EPROTO, &req);

	/* head over the limits is still 431 */
	{
		struct rr_http_limits small = {.header_bytes_max = 32, .headers_max = 100};
		const char *s = "POST /api/raw/lobby HTTP/1.1\r\nHost: b\r\n\r\n";

		CHECK_EQ(rr_http_parse_request(s, strlen(s), &small, BODY_MAX, &req), -EMSGSIZE);
	}

	/* Expect: 100-continue, visible while the body is awaited */
	{
		const char *s = "POST /api/chat/a HTTP/1.1\r\nExpect: 100-Continue\r\n"
				"Content-Length: 4\r\n\r\n";

		CHECK_EQ(rr_http_parse_request(s, strlen(s), &lim, BODY_MAX, &req), -EAGAIN);
		CHECK_EQ(req.head_bytes, strlen(s));
		CHECK(req.expect_continue);
		CHECK(str_is(req.path, "/api/chat/a"));
	}
}

static void test_keep_alive(void)
{
	struct rr_http_req req;
	static const struct {
		const char *s;
		bool keep;
	} cases[] = {
	    {"GET / HTTP/1.1\r\n\r\n", true},
	    {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false},
	    {"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", false},
	    {"GET / HTTP/1.1\r\nConnection: te\r\nConnection: close\r\n\r\n", false},
	    {"GET / HTTP/1.0\r\n\r\n", false},
	    {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
	    {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
	    {"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *s = cases[i].s;

		if (req_splits(s, strlen(s), (ssize_t)strlen(s), &req) > 0) {
			if (rr_http_keep_alive(&req) != cases[i].keep)
				fprintf(stderr, "keep-alive wrong for %s", s);
			CHECK(rr_http_keep_alive(&req) == cases[i].keep);
		}
	}
}

/* The requests a connection would answer, fed in pieces of `step` bytes
 * after a first read of `first` bytes; the buffer's start moves past each
 * answered request. Returns the number of requests seen. */
static int pipeline(const char *s, size_t len, size_t first, size_t step, const char *paths[],
		    const char *bodies[], int nreq, ssize_t last)
{
	char *buf = malloc(len + 1);
	size_t have = 0, off = 0;
	int seen = 0;
	bool ok = true;

	while (ok) {
		struct rr_http_req req;
		ssize_t r;
		char *view;

		/* parse what is buffered, in a copy of exactly its size */
		view = malloc(have - off ? have - off : 1);
		memcpy(view, buf + off, have - off);
		r = rr_http_parse_request(have - off ? view : NULL, have - off, &lim, BODY_MAX,
					  &req);
		if (r > 0) {
			ok = seen < nreq && str_is(req.path, paths[seen]) &&
			     str_is(req.body, bodies[seen]);
			seen++;
			off += (size_t)r;
			free(view);
			continue;
		}
		free(view);
		if (r != -EAGAIN) {
			ok = r == last;
			break;
		}
		if (have == len)
			break;
		{
			size_t n = have == 0 ? first : step;

			if (n > len - have)
				n = len - have;
			if (n == 0)
				n = 1;
			memcpy(buf + have, s + have, n);
			have += n;
		}
	}
	free(buf);
	return ok ? seen : -1;
}

static void test_pipelining(void)
{
	const char *s = "POST /api/raw/a HTTP/1.1\r\nContent-Length: 3\r\n\r\none"
			"GET /api/rooms HTTP/1.1\r\n\r\n"
			"POST /api/chat/b HTTP/1.1\r\nContent-Type: application/json\r\n"
			"Content-Length: 13\r\n\r\n{\"content\":1}"
			"DELETE /api/chat/b/members/u%201 HTTP/1.1\r\nConnection: close\r\n\r\n";
	const char *paths[] = {"/api/raw/a", "/api/rooms", "/api/chat/b",
			       "/api/chat/b/members/u%201"};
	const char *bodies[] = {"one", "", "{\"content\":1}", ""};
	/* the same, with a malformed fourth request after three good ones */
	const char *bad = "POST /api/raw/a HTTP/1.1\r\nContent-Length: 3\r\n\r\none"
			  "GET /api/rooms HTTP/1.1\r\n\r\n"
			  "POST /api/chat/b HTTP/1.1\r\nContent-Type: application/json\r\n"
			  "Content-Length: 13\r\n\r\n{\"content\":1}"
			  "GET /x HTTP/1.1\r\nBad Header: 1\r\n\r\n";
	size_t len = strlen(s), k;
	bool ok = true;

	/* body bytes that look like a request are body, not a second request */
	{
		const char *t = "POST /api/raw/a HTTP/1.1\r\nContent-Length: 18\r\n\r\n"
				"GET / HTTP/1.1\r\n\r\n";
		const char *tp[] = {"/api/raw/a"}, *tb[] = {"GET / HTTP/1.1\r\n\r\n"};

		CHECK_EQ(pipeline(t, strlen(t), strlen(t), 1, tp, tb, 1, 0), 1);
	}

	for (k = 0; k <= len; k++) {
		int n = pipeline(s, len, k, len, paths, bodies, 4, 0);

		if (n != 4) {
			fprintf(stderr, "pipeline split at %zu: %d requests\n", k, n);
			ok = false;
		}
	}
	CHECK(ok);
	CHECK_EQ(pipeline(s, len, 1, 1, paths, bodies, 4, 0), 4); /* byte by byte */
	CHECK_EQ(pipeline(s, len, 7, 13, paths, bodies, 4, 0), 4);
	ok = true;
	for (k = 0; k <= strlen(bad); k++) {
		if (pipeline(bad, strlen(bad), k, strlen(bad), paths, bodies, 3, -EPROTO) != 3)
			ok = false;
	}
	CHECK(ok);
	CHECK_EQ(pipeline(bad, strlen(bad), 1, 1, paths, bodies, 3, -EPROTO), 3);
}

static void test_helpers(void)
{
	struct rr_http_str t;
	uint64_t v;

	CHECK_EQ(rr_http_error_status(-EPROTO), 400);
	CHECK_EQ(rr_http_error_status(-EMSGSIZE), 431);
	CHECK_EQ(rr_http_error_status(-EFBIG), 413);
	CHECK_EQ(rr_http_error_status(-ENOTSUP), 501);

	CHECK(rr_http_bearer(S("Bearer abc.def-ghi"), &t) && str_is(t, "abc.def-ghi"));
	CHECK(rr_http_bearer(S("bearer   k=="), &t) && str_is(t, "k=="));
	CHECK(rr_http_bearer(S("BEARER x"), &t) && str_is(t, "x"));
	CHECK(!rr_http_bearer(S("Bearer "), &t));
	CHECK(!rr_http_bearer(S("Bearer"), &t));
	CHECK(!rr_http_bearer(S("Bearerx abc"), &t));
	CHECK(!rr_http_bearer(S("Basic dXNlcjpwYXNz"), &t));
	CHECK(!rr_http_bearer(S("Bearer a b"), &t));
	CHECK(!rr_http_bearer(S("Bearer\tabc"), &t));
	CHECK(!rr_http_bearer(S(""), &t));

	CHECK(rr_http_content_is_text(S("text/plain")));
	CHECK(rr_http_content_is_text(S("Text/HTML;charset=utf-8")));
	CHECK(rr_http_content_is_text(S("application/json")));
	CHECK(rr_http_content_is_text(S("application/JSON ; charset=utf-8")));
	CHECK(rr_http_content_is_text(S("application/vnd.api+json")));
	CHECK(!rr_http_content_is_text(S("application/octet-stream")));
	CHECK(!rr_http_content_is_text(S("application/jsonx")));
	CHECK(!rr_http_content_is_text(S("application/+json")));
	CHECK(!rr_http_content_is_text(S("texts/plain")));
	CHECK(!rr_http_content_is_text(S("text/")));
	CHECK(!rr_http_content_is_text(S("text")));
	CHECK(!rr_http_content_is_text(S("/json")));
	CHECK(!rr_http_content_is_text(S("")));

	CHECK_EQ(rr_http_query_u64(S("beforeId=42&limit=100"), "beforeId", UINT64_MAX, &v), 0);
	CHECK_EQ(v, 42);
	CHECK_EQ(rr_http_query_u64(S("beforeId=42&limit=100"), "limit", 100, &v), 0);
	CHECK_EQ(v, 100);
	CHECK_EQ(rr_http_query_u64(S("limit=101"), "limit", 100, &v), -EINVAL);
	CHECK_EQ(rr_http_query_u64(S("limit="), "limit", 100, &v), -EINVAL);
	CHECK_EQ(rr_http_query_u64(S("limit"), "limit", 100, &v), -EINVAL);
	CHECK_EQ(rr_http_query_u64(S("limit=-1"), "limit", 100, &v), -EINVAL);
	CHECK_EQ(rr_http_query_u64(S("limit=1e3"), "limit", 10000, &v), -EINVAL);
	CHECK_EQ(rr_http_query_u64(S("x=1"), "limit", 100, &v), -ENOENT);
	CHECK_EQ(rr_http_query_u64(S(""), "limit", 100, &v), -ENOENT);
	CHECK_EQ(rr_http_query_u64(S("n=18446744073709551615"), "n", UINT64_MAX, &v), 0);
	CHECK(v == UINT64_MAX);
	CHECK_EQ(rr_http_query_u64(S("n=18446744073709551616"), "n", UINT64_MAX, &v), -EINVAL);
	CHECK_EQ(rr_http_query_u64(S("n=0000000000000000000000001"), "n", 1, &v), 0);
	CHECK_EQ(v, 1);
}

int main(void)
{
	test_bodies();
	test_keep_alive();
	test_pipelining();
	test_helpers();
	return check_done();
}
