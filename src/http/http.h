/*
 * HTTP/1.1 request parsing for the upgrade, and routing by path.
 *
 * Pure code: no I/O, no allocation. The parser is incremental in the
 * picohttpparser way: the caller appends received bytes to one buffer and
 * calls rr_http_parse() again with the whole buffer; it answers -EAGAIN until
 * the blank line that ends the headers has arrived, and enforces the limits
 * on every call, so an oversized request is refused before it completes.
 * Parsed strings point into the caller's buffer.
 */
#ifndef RR_HTTP_H
#define RR_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct rr_http_str {
	const char *p;
	size_t n;
};

struct rr_http_limits {
	size_t header_bytes_max; /* request line + headers + blank line; 431 past it */
	unsigned headers_max;    /* number of header fields; 431 past it */
};

/* What the broker needs from an upgrade request. */
struct rr_http_req {
	struct rr_http_str method;
	struct rr_http_str target;  /* as sent: path plus optional ?query */
	struct rr_http_str path;    /* target up to '?' */
	struct rr_http_str query;   /* after '?', without it; n == 0 if none */
	int minor_version;          /* HTTP/1.x */
	unsigned header_count;

	struct rr_http_str host;
	struct rr_http_str origin;
	struct rr_http_str ws_key;        /* Sec-WebSocket-Key, trimmed */
	struct rr_http_str ws_version;    /* Sec-WebSocket-Version */
	struct rr_http_str ws_protocol;   /* Sec-WebSocket-Protocol (first occurrence) */
	struct rr_http_str authorization;
	struct rr_http_str forwarded_for; /* X-Forwarded-For, informational only */
	bool upgrade_websocket;   /* Upgrade: contains token "websocket" (case-insensitive) */
	bool connection_upgrade;  /* Connection: contains token "upgrade" (case-insensitive) */
	bool has_body;            /* Content-Length > 0 or Transfer-Encoding present */
	bool dup_ws_key;          /* Sec-WebSocket-Key appeared more than once */
};

/*
 * Parse the request in buf[0..len). Returns the number of bytes of the
 * request head (through the blank line) when complete, -EAGAIN when more
 * bytes are needed (and the limits are not yet passed), -EMSGSIZE when the
 * head passes header_bytes_max or headers_max (answer 431), -EPROTO when it
 * is malformed (answer 400): bad request line, not HTTP/1.x, a header line
 * without ':' or with whitespace before it, control characters, obs-fold
 * (line folding), bare CR. Accepts CRLF line ends and, leniently, bare LF.
 * Header names are matched case-insensitively; values are trimmed of
 * surrounding spaces and tabs. Also -EPROTO (RFC 9112): a second Host field,
 * a Content-Length that is not all digits, an empty line before the request
 * line. A verdict given on a prefix is the verdict on any longer buffer, and
 * no byte at or past min(len, header_bytes_max) is read. *req is meaningful only
 * when the return value is positive; the head ends there, later bytes (a
 * first WebSocket frame) are not looked at.
 */
ssize_t rr_http_parse(const char *buf, size_t len, const struct rr_http_limits *lim,
		      struct rr_http_req *req);

/*
 * Check a parsed request for a WebSocket upgrade (RFC 6455 4.2.1). Returns 0
 * when it is a valid upgrade, or the status to answer: 405 for a method
 * other than GET, 400 for a missing or invalid Upgrade/Connection/Host/
 * Sec-WebSocket-Key (the key must decode from base64 to exactly 16 bytes and
 * appear once) or a request with a body, 426 for a Sec-WebSocket-Version other
 * than 13 (missing counts as 400). HTTP/1.0 counts as 400 (RFC 6455 4.1 needs
 * 1.1); an empty Host counts as missing. 400 causes are checked before 426.
 */
int rr_http_upgrade_check(const struct rr_http_req *req);

/*
 * Find a query parameter's raw (still percent-encoded) value: the first
 * '&'-separated pair whose raw name equals name; a pair without '=' has an
 * empty value. value points into query.
 */
bool rr_http_query_get(struct rr_http_str query, const char *name, struct rr_http_str *value);

/*
 * Percent-decode src into dst (cap bytes). Returns length or -1 if invalid/too long.
 * '+' stays '+' (no form decoding); %00 is invalid; dst is not NUL-terminated.
 */
ssize_t rr_http_pct_decode(struct rr_http_str src, char *dst, size_t cap);

/* ---- routing ---------------------------------------------------------- */

enum rr_route_kind {
	RR_ROUTE_NONE = 0,   /* 404 */
	RR_ROUTE_BAD_ROOM,   /* a room path whose name is invalid: 400 */
	RR_ROUTE_ECHO,       /* /echo */
	RR_ROUTE_RAW,        /* /raw/{room} */
	RR_ROUTE_CHAT,       /* /chat/{room} */
	RR_ROUTE_HEALTHZ,    /* /healthz */
	RR_ROUTE_METRICS,    /* /metrics */
	RR_ROUTE_INDEX,      /* / */
};

struct rr_route {
	enum rr_route_kind kind;
	struct rr_http_str room; /* for RAW and CHAT: 1..128 bytes of [A-Za-z0-9._~-] */
};

/*
 * Route a path (without the query). Matched exactly as sent: no
 * percent-decoding (a '%' in a room name makes it BAD_ROOM), no trailing-slash
 * folding. Anything after "/raw/" or "/chat/" that is not a valid room name,
 * including "" and "a/b", is BAD_ROOM; every other unknown path is NONE.
 */
struct rr_route rr_http_route(struct rr_http_str path);

/* Room name rule of protocol.md. */
bool rr_room_name_valid(const char *p, size_t n);

#endif
