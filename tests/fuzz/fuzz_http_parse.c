/*
 * libFuzzer target for the upgrade-request parser and what the broker does
 * with a parsed head: upgrade check, routing, query lookup, percent-decoding.
 *
 * Each input is parsed whole and, as the broker would see it, in two reads:
 * first a prefix (at a split point derived from the input, copied into a
 * buffer of exactly that size so ASan sees any read past it) and then the
 * whole. A verdict given on the prefix must be the verdict on the whole, and
 * a prefix shorter than a complete head must give -EAGAIN. Any broken
 * invariant traps. The first input byte also picks a second, small set of
 * limits so the -EMSGSIZE paths are reached often.
 *
 * The same bytes are also read as the backend API reads them: a pipeline of
 * whole requests (rr_http_parse_request), consumed one by one, each checked
 * against the same parse of a prefix and routed with rr_http_api_route.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

/* s lies inside buf[0..n) */
static bool within(struct rr_http_str s, const char *buf, size_t n)
{
	if (s.p == NULL)
		return s.n == 0;
	return s.p >= buf && (size_t)(s.p - buf) <= n && s.n <= n - (size_t)(s.p - buf);
}

static size_t split_point(const uint8_t *data, size_t size)
{
	uint32_t h = 2166136261u; /* FNV-1a over at most 64 bytes: cheap and input-derived */
	size_t i;

	for (i = 0; i < size && i < 64; i++)
		h = (h ^ data[i]) * 16777619u;
	return size ? h % (size + 1) : 0;
}

static void use_request(const char *buf, size_t head, const struct rr_http_req *req)
{
	static const char *const names[] = {"token", "since", "a", ""};
	struct rr_route route;
	struct rr_http_str v;
	char out[64];
	size_t i;
	int status;

	REQUIRE(within(req->method, buf, head) && req->method.n > 0);
	REQUIRE(within(req->target, buf, head) && req->target.n > 0);
	REQUIRE(within(req->path, buf, head) && within(req->query, buf, head));
	REQUIRE(req->path.p == req->target.p && req->path.n <= req->target.n);
	REQUIRE(within(req->host, buf, head) && within(req->ws_key, buf, head));
	REQUIRE(within(req->origin, buf, head) && within(req->ws_version, buf, head));
	REQUIRE(within(req->ws_protocol, buf, head) && within(req->authorization, buf, head));
	REQUIRE(within(req->forwarded_for, buf, head));
	REQUIRE(req->minor_version >= 0 && req->minor_version <= 9);

	status = rr_http_upgrade_check(req);
	REQUIRE(status == 0 || status == 400 || status == 405 || status == 426);

	route = rr_http_route(req->path);
	REQUIRE(route.kind >= RR_ROUTE_NONE && route.kind <= RR_ROUTE_INDEX);
	if (route.kind == RR_ROUTE_RAW || route.kind == RR_ROUTE_CHAT) {
		REQUIRE(within(route.room, req->path.p, req->path.n));
		REQUIRE(rr_room_name_valid(route.room.p, route.room.n));
	}

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (rr_http_query_get(req->query, names[i], &v)) {
			ssize_t n;

			REQUIRE(within(v, req->query.p, req->query.n));
			n = rr_http_pct_decode(v, out, sizeof(out));
			REQUIRE(n >= -1 && n <= (ssize_t)sizeof(out) &&
				(n < 0 || (size_t)n <= v.n));
		}
	}
}

static void use_api_request(const char *buf, size_t n, const struct rr_http_req *req)
{
	struct rr_api_route ar;
	struct rr_http_str tok;
	uint64_t v;
	int q;

	REQUIRE(req->head_bytes > 0 && req->head_bytes <= n);
	REQUIRE(req->body.p == buf + req->head_bytes && req->body.n == req->content_length);
	REQUIRE(req->head_bytes + req->body.n == n);
	REQUIRE(!req->transfer_encoding);
	REQUIRE(req->has_body == (req->content_length > 0));
	REQUIRE(within(req->content_type, buf, req->head_bytes));
	(void)rr_http_keep_alive(req);
	(void)rr_http_content_is_text(req->content_type);
	if (rr_http_bearer(req->authorization, &tok))
		REQUIRE(tok.n > 0 && within(tok, req->authorization.p, req->authorization.n));

	ar = rr_http_api_route(req->method, req->path);
	REQUIRE(ar.status == 0 || ar.status == 400 || ar.status == 404 || ar.status == 405);
	REQUIRE((ar.kind == RR_API_NONE) == (ar.status == 404));
	REQUIRE((ar.kind == RR_API_BAD_ROOM) == (ar.status == 400));
	REQUIRE((ar.allow == NULL) == (ar.kind == RR_API_NONE || ar.kind == RR_API_BAD_ROOM));
	REQUIRE(ar.kind == RR_API_NONE || rr_http_is_api(req->path));
	if (ar.kind > RR_API_ROOMS) {
		REQUIRE(within(ar.room, req->path.p, req->path.n));
		REQUIRE(rr_room_name_valid(ar.room.p, ar.room.n));
	}
	if (ar.kind == RR_API_CHAT_KICK)
		REQUIRE(ar.user_id.n > 0 && within(ar.user_id, req->path.p, req->path.n));
	q = rr_http_query_u64(req->query, "limit", 100, &v);
	REQUIRE(q == -ENOENT || q == -EINVAL || (q == 0 && v <= 100));
}

/* The buffer as a pipeline of API requests: each whole request is consumed
 * and the rest parsed again, until the data runs out or a verdict ends it. */
static void check_pipeline(const uint8_t *data, size_t size, const struct rr_http_limits *lim,
			   uint64_t body_max)
{
	const char *buf = (const char *)data;
	size_t off = 0;
	unsigned n = 0;

	while (n++ < 64) {
		struct rr_http_req req, part;
		size_t left = size - off, cut;
		char *prefix;
		ssize_t r, r1;

		r = rr_http_parse_request(left ? buf + off : NULL, left, lim, body_max, &req);
		REQUIRE(r == -EAGAIN || r == -EPROTO || r == -EMSGSIZE || r == -EFBIG ||
			r == -ENOTSUP || (r > 0 && (size_t)r <= left));
		REQUIRE(r <= 0 || (uint64_t)r - req.head_bytes <= body_max);
		if (r == -EAGAIN)
			REQUIRE(req.head_bytes == 0 || req.head_bytes <= left);
		if (r < 0 && r != -EAGAIN)
			REQUIRE(rr_http_error_status(r) >= 400);

		/* a prefix of what is left: -EAGAIN or the same verdict */
		cut = split_point(data + off, left);
		prefix = malloc(cut ? cut : 1);
		REQUIRE(prefix != NULL);
		memcpy(prefix, buf + off, cut);
		r1 = rr_http_parse_request(cut ? prefix : NULL, cut, lim, body_max, &part);
		if (r > 0 && cut < (size_t)r)
			REQUIRE(r1 == -EAGAIN);
		else if (r > 0)
			REQUIRE(r1 == r && part.head_bytes == req.head_bytes &&
				part.body.n == req.body.n);
		else
			REQUIRE(r1 == -EAGAIN || r1 == r);
		free(prefix);

		if (r <= 0)
			return;
		use_api_request(buf + off, (size_t)r, &req);
		off += (size_t)r;
	}
}

static void check_limits(const uint8_t *data, size_t size, const struct rr_http_limits *lim)
{
	const char *buf = (const char *)data;
	struct rr_http_req whole, part;
	size_t cut = split_point(data, size);
	char *prefix = malloc(cut ? cut : 1);
	ssize_t r, r1;

	REQUIRE(prefix != NULL);
	r = rr_http_parse(buf, size, lim, &whole);
	REQUIRE(r == -EAGAIN || r == -EPROTO || r == -EMSGSIZE || (r > 0 && (size_t)r <= size));
	REQUIRE(r <= 0 || (size_t)r <= lim->header_bytes_max);
	REQUIRE(r <= 0 || whole.header_count <= lim->headers_max);

	/* first read: the prefix alone */
	memcpy(prefix, data, cut);
	r1 = rr_http_parse(cut ? prefix : NULL, cut, lim, &part);
	if (r > 0 && cut < (size_t)r)
		REQUIRE(r1 == -EAGAIN);
	else if (r > 0)
		REQUIRE(r1 == r);
	else
		REQUIRE(r1 == -EAGAIN || r1 == r);
	if (r1 > 0) {
		REQUIRE(part.header_count == whole.header_count);
		REQUIRE(part.target.n == whole.target.n &&
			part.target.p - prefix == whole.target.p - buf);
		REQUIRE(part.host.n == whole.host.n && part.ws_key.n == whole.ws_key.n);
		REQUIRE(part.upgrade_websocket == whole.upgrade_websocket &&
			part.connection_upgrade == whole.connection_upgrade &&
			part.has_body == whole.has_body && part.dup_ws_key == whole.dup_ws_key);
		REQUIRE(rr_http_upgrade_check(&part) == rr_http_upgrade_check(&whole));
	}
	free(prefix);

	/* second read: the whole buffer again, as the caller re-calls it */
	REQUIRE(rr_http_parse(buf, size, lim, &part) == r);
	if (r > 0)
		use_request(buf, (size_t)r, &whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct rr_http_limits lim_default = {.header_bytes_max = 8192,
							  .headers_max = 100};
	struct rr_http_limits lim_small;
	struct rr_http_str s = {.p = (const char *)data, .n = size};
	char out[256];

	check_limits(data, size, &lim_default);
	check_pipeline(data, size, &lim_default, 1u << 20);
	if (size > 0) {
		lim_small.header_bytes_max = data[0] % 2 ? size : size / 2 + data[0] % 32;
		lim_small.headers_max = data[0] % 8;
		check_limits(data, size, &lim_small);
		check_pipeline(data, size, &lim_small, data[0] % 64);
	}

	/* the helpers on raw bytes, which the parser never hands them */
	(void)rr_http_pct_decode(s, out, sizeof(out));
	(void)rr_http_route(s);
	{
		char *msg = malloc(size + 1), body[512];
		ssize_t n;
		size_t i;

		REQUIRE(msg != NULL);
		memcpy(msg, data, size);
		msg[size] = '\0';
		n = rr_http_api_error_body(body, sizeof(body), "invalid_format", msg);
		REQUIRE(n == -ENOSPC || (n > 0 && (size_t)n == strlen(body)));
		/* no raw control byte survives the escaping */
		for (i = 0; n > 0 && i < (size_t)n; i++)
			REQUIRE((unsigned char)body[i] >= 0x20 && body[i] != 0x7f);
		free(msg);
	}
	return 0;
}
