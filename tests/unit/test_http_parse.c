/*
 * Unit tests for the upgrade-request parser (src/http/http_parse.c).
 *
 * Every request is fed at every split point, picohttpparser style: each
 * prefix is copied into a buffer of exactly its size (so a sanitizer build
 * catches any read past len) and must give -EAGAIN until the deciding byte
 * has arrived, then the same answer as the whole request.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "check.h"

static const struct rr_http_limits lim_default = {.header_bytes_max = 8192, .headers_max = 100};

static bool str_is(struct rr_http_str s, const char *lit)
{
	return s.p != NULL && s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

/*
 * Parse buf[0..len) at every prefix length. For a complete request (want > 0)
 * every prefix shorter than want gives -EAGAIN and every longer one gives
 * want; for an error (want < 0) prefixes give -EAGAIN up to some point and
 * want from there on. Returns the whole-buffer result, with *req filled from
 * the original buffer.
 */
static ssize_t parse_splits_at(int line, const char *buf, size_t len,
			       const struct rr_http_limits *lim, struct rr_http_req *req,
			       ssize_t want)
{
	bool decided = false, ok = true;
	size_t k;
	ssize_t r;

	for (k = 0; k <= len; k++) {
		char *copy = malloc(k ? k : 1);
		struct rr_http_req tmp;
		ssize_t rk;

		memcpy(copy, buf, k);
		rk = rr_http_parse(k ? copy : NULL, k, lim, &tmp);
		free(copy);
		if (want >= 0) {
			ssize_t expect = (ssize_t)k < want ? -EAGAIN : want;

			if (rk != expect) {
				fprintf(stderr, "line %d: prefix %zu gave %zd, want %zd\n", line, k,
					rk, expect);
				ok = false;
				break;
			}
		} else {
			if (rk == want) {
				decided = true;
			} else if (rk != -EAGAIN || decided) {
				fprintf(stderr,
					"line %d: prefix %zu gave %zd (want -EAGAIN or %zd)\n",
					line, k, rk, want);
				ok = false;
				break;
			}
		}
	}
	CHECK(ok);
	r = rr_http_parse(buf, len, lim, req);
	CHECK_EQ(r, want);
	return r;
}

#define parse_splits(s, lim, req, want) parse_splits_at(__LINE__, s, strlen(s), lim, req, want)
/* a complete request whose head is the whole string */
#define parse_ok(s, req) parse_splits(s, &lim_default, req, (ssize_t)strlen(s))
/* a request head that parses, then the status rr_http_upgrade_check gives */
#define check_status(s, status)                                                                    \
	do {                                                                                       \
		struct rr_http_req req_;                                                           \
		if (parse_ok(s, &req_) > 0)                                                        \
			CHECK_EQ(rr_http_upgrade_check(&req_), status);                            \
	} while (0)
#define check_proto(s)                                                                             \
	do {                                                                                       \
		struct rr_http_req req_;                                                           \
		parse_splits(s, &lim_default, &req_, -EPROTO);                                     \
	} while (0)

#define RFC_SAMPLE                                                                                 \
	"GET /chat HTTP/1.1\r\n"                                                                   \
	"Host: server.example.com\r\n"                                                             \
	"Upgrade: websocket\r\n"                                                                   \
	"Connection: Upgrade\r\n"                                                                  \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                                          \
	"Origin: http://example.com\r\n"                                                           \
	"Sec-WebSocket-Protocol: chat, superchat\r\n"                                              \
	"Sec-WebSocket-Version: 13\r\n"                                                            \
	"\r\n"

/* request line + headers common to the upgrade-check cases */
#define RL "GET /echo HTTP/1.1\r\n"
#define HOST "Host: h\r\n"
#define UPG "Upgrade: websocket\r\n"
#define CONN "Connection: Upgrade\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VER "Sec-WebSocket-Version: 13\r\n"

static void test_rfc_sample(void)
{
	struct rr_http_req req;
	const char *s = RFC_SAMPLE;

	CHECK_EQ(parse_ok(s, &req), strlen(s));
	CHECK(str_is(req.method, "GET"));
	CHECK(str_is(req.target, "/chat"));
	CHECK(str_is(req.path, "/chat"));
	CHECK_EQ(req.query.n, 0);
	CHECK_EQ(req.minor_version, 1);
	CHECK_EQ(req.header_count, 7);
	CHECK(str_is(req.host, "server.example.com"));
	CHECK(str_is(req.origin, "http://example.com"));
	CHECK(str_is(req.ws_key, "dGhlIHNhbXBsZSBub25jZQ=="));
	CHECK(str_is(req.ws_version, "13"));
	CHECK(str_is(req.ws_protocol, "chat, superchat"));
	CHECK(req.authorization.p == NULL);
	CHECK(req.forwarded_for.p == NULL);
	CHECK(req.upgrade_websocket);
	CHECK(req.connection_upgrade);
	CHECK(!req.has_body);
	CHECK(!req.dup_ws_key);
	CHECK_EQ(rr_http_upgrade_check(&req), 0);
}

static void test_lenient_forms(void)
{
	struct rr_http_req req;
	const char *lower = "GET /raw/lobby?token=abc&since=5 HTTP/1.1\r\n"
			    "host: example\r\n"
			    "upgrade: WebSocket\r\n"
			    "connection: keep-alive, Upgrade\r\n"
			    "sec-websocket-key:dGhlIHNhbXBsZSBub25jZQ==\r\n"
			    "sec-websocket-version: \t13 \t\r\n"
			    "AUTHORIZATION: Bearer x\r\n"
			    "x-forwarded-for: 10.0.0.1, 10.0.0.2\r\n"
			    "X-Other: \r\n"
			    "Content-Length: 0\r\n"
			    "\r\n";
	const char *lf = "GET /echo HTTP/1.1\n"
			 "Host: a\n"
			 "Upgrade: foo, websocket\n"
			 "Connection: Upgrade ,keep-alive\n"
			 "Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==   \n"
			 "Sec-WebSocket-Version: 13\n"
			 "\n";
	const char *mixed = "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\n";

	CHECK_EQ(parse_ok(lower, &req), strlen(lower));
	CHECK(str_is(req.target, "/raw/lobby?token=abc&since=5"));
	CHECK(str_is(req.path, "/raw/lobby"));
	CHECK(str_is(req.query, "token=abc&since=5"));
	CHECK(str_is(req.host, "example"));
	CHECK(str_is(req.ws_version, "13"));
	CHECK(str_is(req.authorization, "Bearer x"));
	CHECK(str_is(req.forwarded_for, "10.0.0.1, 10.0.0.2"));
	CHECK_EQ(req.header_count, 9);
	CHECK(!req.has_body);
	CHECK_EQ(rr_http_upgrade_check(&req), 0);

	CHECK_EQ(parse_ok(lf, &req), strlen(lf));
	CHECK(str_is(req.ws_key, "dGhlIHNhbXBsZSBub25jZQ=="));
	CHECK(req.upgrade_websocket);
	CHECK(req.connection_upgrade);
	CHECK_EQ(rr_http_upgrade_check(&req), 0);

	CHECK_EQ(parse_ok(mixed, &req), strlen(mixed));
	CHECK_EQ(req.header_count, 2);

	/* obs-text in a value is allowed through */
	check_status(RL HOST UPG CONN KEY VER "X-Name: caf\xc3\xa9\r\n\r\n", 0);
	/* a lowercase method is a token, but only GET upgrades */
	check_status("get /echo HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 405);
	/* HTTP/1.2 is still HTTP/1.x */
	check_status("GET /echo HTTP/1.2\r\n" HOST UPG CONN KEY VER "\r\n", 0);
}

static void test_upgrade_statuses(void)
{
	struct rr_http_req req;

	check_status(RL HOST UPG CONN KEY VER "\r\n", 0);

	/* 405 */
	check_status("POST /echo HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 405);
	check_status("HEAD /echo HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 405);
	check_status("GETS /echo HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 405);

	/* 400: Host */
	check_status(RL UPG CONN KEY VER "\r\n", 400);
	check_status(RL "Host:\r\n" UPG CONN KEY VER "\r\n", 400);
	check_status(RL "Host:  \t \r\n" UPG CONN KEY VER "\r\n", 400);
	/* 400: HTTP/1.0 cannot upgrade */
	check_status("GET /echo HTTP/1.0\r\n" HOST UPG CONN KEY VER "\r\n", 400);
	/* 400: Upgrade */
	check_status(RL HOST CONN KEY VER "\r\n", 400);
	check_status(RL HOST "Upgrade: h2c\r\n" CONN KEY VER "\r\n", 400);
	check_status(RL HOST "Upgrade: websockets\r\n" CONN KEY VER "\r\n", 400);
	check_status(RL HOST "Upgrade: websocket/13\r\n" CONN KEY VER "\r\n", 400);
	check_status(RL HOST "Upgrade:\r\n" CONN KEY VER "\r\n", 400);
	/* 400: Connection */
	check_status(RL HOST UPG KEY VER "\r\n", 400);
	check_status(RL HOST UPG "Connection: keep-alive\r\n" KEY VER "\r\n", 400);
	check_status(RL HOST UPG "Connection: upgraded\r\n" KEY VER "\r\n", 400);
	check_status(RL HOST UPG "Connection: keep-alive upgrade\r\n" KEY VER "\r\n", 400);
	/* tokens may come in separate fields */
	check_status(RL HOST UPG "Connection: keep-alive\r\nConnection: upgrade\r\n" KEY VER "\r\n",
		     0);
	/* 400: key */
	check_status(RL HOST UPG CONN VER "\r\n", 400);
	check_status(RL HOST UPG CONN "Sec-WebSocket-Key:\r\n" VER "\r\n", 400);
	/* 15 bytes, 17 bytes, 18 bytes */
	check_status(RL HOST UPG CONN "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n" VER "\r\n",
		     400);
	check_status(RL HOST UPG CONN "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=\r\n" VER "\r\n",
		     400);
	check_status(RL HOST UPG CONN "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA\r\n" VER "\r\n",
		     400);
	/* right length, bad alphabet / misplaced padding / missing padding */
	check_status(RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ*=\r\n" VER "\r\n",
		     400);
	check_status(RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j=Q==\r\n" VER "\r\n",
		     400);
	check_status(RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n" VER "\r\n",
		     400);
	check_status(RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jZQ==\r\n" VER "\r\n",
		     400);
	check_status(RL HOST UPG CONN "Sec-WebSocket-Key: ========================\r\n" VER "\r\n",
		     400);
	/* other 16-byte keys, including '+' and '/' */
	check_status(RL HOST UPG CONN "Sec-WebSocket-Key: +/+/AAAAzzzz9999aaaa0w==\r\n" VER "\r\n",
		     0);
	/* duplicated key, even if identical */
	check_status(RL HOST UPG CONN KEY KEY VER "\r\n", 400);
	CHECK(parse_ok(RL HOST UPG CONN KEY KEY VER "\r\n", &req) > 0);
	CHECK(req.dup_ws_key);
	/* 400: body */
	check_status(RL HOST UPG CONN KEY VER "Content-Length: 5\r\n\r\n", 400);
	check_status(RL HOST UPG CONN KEY VER "Content-Length: 0005\r\n\r\n", 400);
	check_status(RL HOST UPG CONN KEY VER "Content-Length: 000\r\n\r\n", 0);
	check_status(RL HOST UPG CONN KEY VER "Transfer-Encoding: chunked\r\n\r\n", 400);
	check_status(RL HOST UPG CONN KEY VER "transfer-encoding: identity\r\n\r\n", 400);
	/* 400: version missing or empty; 426: present but not 13 */
	check_status(RL HOST UPG CONN KEY "\r\n", 400);
	check_status(RL HOST UPG CONN KEY "Sec-WebSocket-Version:\r\n\r\n", 400);
	check_status(RL HOST UPG CONN KEY "Sec-WebSocket-Version: 8\r\n\r\n", 426);
	check_status(RL HOST UPG CONN KEY "Sec-WebSocket-Version: 13, 8\r\n\r\n", 426);
	check_status(RL HOST UPG CONN KEY "Sec-WebSocket-Version: 130\r\n\r\n", 426);
	check_status(RL HOST UPG CONN KEY "Sec-WebSocket-Version: 1\r\n\r\n", 426);
	/* first Sec-WebSocket-Version counts */
	check_status(RL HOST UPG CONN KEY VER "Sec-WebSocket-Version: 8\r\n\r\n", 0);
}

static void test_malformed(void)
{
	struct rr_http_req req;

	/* request line */
	check_proto("\r\nGET / HTTP/1.1\r\n\r\n");
	check_proto(" GET / HTTP/1.1\r\n\r\n");
	check_proto("GET /\r\n\r\n");
	check_proto("GET\r\n\r\n");
	check_proto("GET  / HTTP/1.1\r\n\r\n");
	check_proto("GET / HTTP/1.1 \r\n\r\n");
	check_proto("GET /  HTTP/1.1\r\n\r\n");
	check_proto("GET / HTTP/2.0\r\n\r\n");
	check_proto("GET / HTTP/1.x\r\n\r\n");
	check_proto("GET / HTTP/1.11\r\n\r\n");
	check_proto("GET / http/1.1\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\r\n\r\n");
	check_proto("GET /a\tb HTTP/1.1\r\n\r\n");
	check_proto("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n");
	check_proto("G(T / HTTP/1.1\r\n\r\n");
	check_proto(" / HTTP/1.1\r\n\r\n");
	/* NUL in target: strlen would stop there, so give lengths */
	{
		static const char nul[] = "GET /a\0b HTTP/1.1\r\n\r\n";

		parse_splits_at(__LINE__, nul, sizeof(nul) - 1, &lim_default, &req, -EPROTO);
	}
	/* header lines */
	check_proto("GET / HTTP/1.1\r\nHost\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nHost : a\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\n: a\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nX: a\x01 b\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nX: a\x1b[0m\r\n\r\n");
	/* obs-fold, with SP and with HTAB */
	check_proto("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n");
	/* bare CR inside a value, ending a line, and as the blank line */
	check_proto("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nX: a\r\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nX: a\r\n\rX\r\n");
	{
		static const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";

		parse_splits_at(__LINE__, nul, sizeof(nul) - 1, &lim_default, &req, -EPROTO);
	}
	/* two Host fields, invalid Content-Length */
	check_proto("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nContent-Length:\r\n\r\n");
	check_proto("GET / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n");

	/* an error is given as soon as the deciding byte is seen */
	CHECK_EQ(rr_http_parse("GET / HTTP/2", 12, &lim_default, &req), -EPROTO);
	CHECK_EQ(rr_http_parse("GET / HTTP/1", 12, &lim_default, &req), -EAGAIN);
	CHECK_EQ(rr_http_parse("GET / HTTP/1.1\r\nX : ", 20, &lim_default, &req), -EPROTO);
	CHECK_EQ(rr_http_parse("GET / HTTP/1.1\r\nX: \x01", 20, &lim_default, &req), -EPROTO);
}

/* build "GET / HTTP/1.1\r\n" + count "X: v\r\n" lines + "\r\n" */
static size_t build_headers(char *buf, size_t cap, unsigned count, size_t *last_line_at)
{
	size_t n = 0;
	unsigned i;

	n += (size_t)snprintf(buf + n, cap - n, "GET / HTTP/1.1\r\n");
	for (i = 0; i < count; i++) {
		*last_line_at = n;
		n += (size_t)snprintf(buf + n, cap - n, "X-%u: v\r\n", i);
	}
	n += (size_t)snprintf(buf + n, cap - n, "\r\n");
	return n;
}

static void test_limits(void)
{
	static char buf[16384];
	struct rr_http_req req;
	struct rr_http_limits lim = lim_default;
	size_t n, last, head;

	/* header count: 100 is fine, the 101st line is refused at its first byte */
	n = build_headers(buf, sizeof(buf), 100, &last);
	CHECK_EQ(parse_splits_at(__LINE__, buf, n, &lim, &req, (ssize_t)n), n);
	CHECK_EQ(req.header_count, 100);
	n = build_headers(buf, sizeof(buf), 101, &last);
	parse_splits_at(__LINE__, buf, n, &lim, &req, -EMSGSIZE);
	CHECK_EQ(rr_http_parse(buf, last, &lim, &req), -EAGAIN);
	CHECK_EQ(rr_http_parse(buf, last + 1, &lim, &req), -EMSGSIZE);
	lim.headers_max = 0;
	CHECK_EQ(rr_http_parse("GET / HTTP/1.1\r\n\r\n", 18, &lim, &req), 18);
	CHECK_EQ(rr_http_parse("GET / HTTP/1.1\r\nH", 17, &lim, &req), -EMSGSIZE);
	lim = lim_default;

	/* head bytes: exactly at the limit is fine, one byte more is 431 */
	n = build_headers(buf, sizeof(buf), 10, &last);
	lim.header_bytes_max = n;
	CHECK_EQ(parse_splits_at(__LINE__, buf, n, &lim, &req, (ssize_t)n), n);
	lim.header_bytes_max = n - 1;
	parse_splits_at(__LINE__, buf, n, &lim, &req, -EMSGSIZE);
	CHECK_EQ(rr_http_parse(buf, n - 1, &lim, &req), -EAGAIN);
	/* ... also when the last byte past the limit is the final LF of CRLF */
	lim.header_bytes_max = n - 1;
	CHECK_EQ(rr_http_parse(buf, n, &lim, &req), -EMSGSIZE);
	/* with trailing bytes after a head that fits, the extra bytes don't count */
	lim.header_bytes_max = n;
	memcpy(buf + n, "GARBAGE", 7);
	CHECK_EQ(rr_http_parse(buf, n + 7, &lim, &req), n);

	/* a 9 KiB head with an 8 KiB limit fails as soon as 8 KiB + 1 has arrived */
	lim = lim_default;
	n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX-Big: ");
	while (n < 9 * 1024 - 4)
		buf[n++] = 'a';
	memcpy(buf + n, "\r\n\r\n", 4);
	head = n + 4;
	parse_splits_at(__LINE__, buf, head, &lim, &req, -EMSGSIZE);
	CHECK_EQ(rr_http_parse(buf, 8192, &lim, &req), -EAGAIN);
	CHECK_EQ(rr_http_parse(buf, 8193, &lim, &req), -EMSGSIZE);
	/* the same head passes with a 9 KiB limit */
	lim.header_bytes_max = 9 * 1024;
	CHECK_EQ(rr_http_parse(buf, head, &lim, &req), head);
	/* a long request line counts against the same limit */
	lim = lim_default;
	n = (size_t)snprintf(buf, sizeof(buf), "GET /");
	while (n < 8200)
		buf[n++] = 'a';
	CHECK_EQ(rr_http_parse(buf, 8192, &lim, &req), -EAGAIN);
	CHECK_EQ(rr_http_parse(buf, 8193, &lim, &req), -EMSGSIZE);
	/* a limit of 0 refuses any byte */
	lim.header_bytes_max = 0;
	CHECK_EQ(rr_http_parse(NULL, 0, &lim, &req), -EAGAIN);
	CHECK_EQ(rr_http_parse("G", 1, &lim, &req), -EMSGSIZE);
}

static void test_trailing_bytes(void)
{
	struct rr_http_req req;
	const char *s = RFC_SAMPLE "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
	size_t head = strlen(RFC_SAMPLE);

	/* every prefix up to the head is -EAGAIN, every longer one returns head */
	CHECK_EQ(parse_splits(s, &lim_default, &req, (ssize_t)head), head);
	CHECK_EQ(rr_http_upgrade_check(&req), 0);
	/* a pipelined second request is not looked at */
	s = "GET / HTTP/1.1\n\nGET\x01\x02";
	CHECK_EQ(parse_splits(s, &lim_default, &req, 16), 16);
}

static void test_query(void)
{
	struct rr_http_req req;
	struct rr_http_str v, q;
	const char *s = "GET /chat/lobby?token=abc&since=5&flag&empty=&x=a=b&token=2 HTTP/1.1\r\n"
			"Host: h\r\n\r\n";

	CHECK(parse_ok(s, &req) > 0);
	CHECK(str_is(req.path, "/chat/lobby"));
	CHECK(rr_http_query_get(req.query, "token", &v));
	CHECK(str_is(v, "abc"));
	CHECK(rr_http_query_get(req.query, "since", &v));
	CHECK(str_is(v, "5"));
	CHECK(rr_http_query_get(req.query, "flag", &v));
	CHECK_EQ(v.n, 0);
	CHECK(rr_http_query_get(req.query, "empty", &v));
	CHECK_EQ(v.n, 0);
	CHECK(rr_http_query_get(req.query, "x", &v));
	CHECK(str_is(v, "a=b"));
	CHECK(!rr_http_query_get(req.query, "tok", &v));
	CHECK(!rr_http_query_get(req.query, "tokens", &v));
	CHECK(!rr_http_query_get(req.query, "abc", &v));
	CHECK(!rr_http_query_get(req.query, "", &v));

	/* "?" alone: empty query; "??" keeps the second '?' in the query */
	CHECK(parse_ok("GET /a? HTTP/1.1\r\n\r\n", &req) > 0);
	CHECK(str_is(req.path, "/a"));
	CHECK_EQ(req.query.n, 0);
	CHECK(!rr_http_query_get(req.query, "a", &v));
	CHECK(parse_ok("GET /a??b=1 HTTP/1.1\r\n\r\n", &req) > 0);
	CHECK(str_is(req.query, "?b=1"));
	CHECK(parse_ok("GET /a/b?c HTTP/1.1\r\n\r\n", &req) > 0);
	CHECK(str_is(req.path, "/a/b"));
	CHECK(str_is(req.query, "c"));

	q.p = "&&a=1&&";
	q.n = strlen(q.p);
	CHECK(rr_http_query_get(q, "a", &v));
	CHECK(str_is(v, "1"));
	q.p = NULL;
	q.n = 0;
	CHECK(!rr_http_query_get(q, "a", &v));
}

static void test_pct_decode(void)
{
	char out[16];
	struct rr_http_str s;

#define PCT(lit) (s.p = (lit), s.n = strlen(lit), rr_http_pct_decode(s, out, sizeof(out)))
	CHECK_EQ(PCT("abc"), 3);
	CHECK(memcmp(out, "abc", 3) == 0);
	CHECK_EQ(PCT("a%20b"), 3);
	CHECK(memcmp(out, "a b", 3) == 0);
	CHECK_EQ(PCT("%41%2f%2F%e2%82%AC"), 6);
	CHECK(memcmp(out, "A//\xe2\x82\xac", 6) == 0);
	CHECK_EQ(PCT("a+b"), 3); /* '+' is not form-decoded */
	CHECK(memcmp(out, "a+b", 3) == 0);
	CHECK_EQ(PCT(""), 0);
	CHECK_EQ(PCT("%"), -1);
	CHECK_EQ(PCT("%4"), -1);
	CHECK_EQ(PCT("ab%4"), -1);
	CHECK_EQ(PCT("%zz"), -1);
	CHECK_EQ(PCT("%g1"), -1);
	CHECK_EQ(PCT("%00"), -1);
	CHECK_EQ(PCT("%%41"), -1);
	/* capacity: 16 fits, 17 does not */
	CHECK_EQ(PCT("0123456789abcdef"), 16);
	CHECK_EQ(PCT("0123456789abcdefg"), -1);
	CHECK_EQ(PCT("%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41"), 16);
	CHECK_EQ(PCT("%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41"), -1);
	s.p = "ab";
	s.n = 2;
	CHECK_EQ(rr_http_pct_decode(s, out, 1), -1);
	CHECK_EQ(rr_http_pct_decode(s, out, 2), 2);
#undef PCT
}

int main(void)
{
	test_rfc_sample();
	test_lenient_forms();
	test_upgrade_statuses();
	test_malformed();
	test_limits();
	test_trailing_bytes();
	test_query();
	test_pct_decode();
	return check_done();
}
