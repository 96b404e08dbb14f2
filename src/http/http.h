/*
 * HTTP/1.1 request parsing for the upgrade and the backend API, and routing
 * by path.
 *
 * Pure code: no I/O, no allocation. The parser is incremental in the
 * picohttpparser way: the caller appends received bytes to one buffer and
 * calls rr_http_parse() again with the whole buffer; it answers -EAGAIN until
 * the blank line that ends the headers has arrived, and enforces the limits
 * on every call, so an oversized request is refused before it completes.
 * Parsed strings point into the caller's buffer.
 *
 * The backend API (keep-alive, pipelining) uses rr_http_parse_request(): the
 * same head parser and limits, plus the Content-Length body. After answering
 * a request of n bytes the caller drops those n bytes (or moves its start
 * past them) and calls it again on what is left: that is pipelining.
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

	/* for requests with a body and keep-alive (the backend API) */
	struct rr_http_str content_type; /* Content-Type (first occurrence) */
	uint64_t content_length;  /* Content-Length; 0 when absent; UINT64_MAX past 2^64-1 */
	bool has_content_length;  /* a Content-Length field is present */
	bool transfer_encoding;   /* a Transfer-Encoding field is present */
	bool conn_close;          /* Connection: contains token "close" */
	bool conn_keep_alive;     /* Connection: contains token "keep-alive" */
	bool expect_continue;     /* Expect: 100-continue (case-insensitive) */
	/* set by rr_http_parse_request() only */
	size_t head_bytes;        /* request line + headers + blank line */
	struct rr_http_str body;  /* buf[head_bytes .. head_bytes + content_length) */
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
 * a Content-Length that is not all digits, a second Content-Length with a
 * different value (a repeated equal one is accepted, RFC 9112 6.3), an empty
 * line before the request line. A verdict given on a prefix is the verdict on any longer buffer, and
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
 * Parse one whole request, head and Content-Length body, at the start of
 * buf[0..len): the backend API's parser, with the head limits of
 * rr_http_parse(). Returns the request's length in bytes (head + body) when
 * all of it is there, with req->head_bytes and req->body set; the bytes after
 * it are the next pipelined request, not looked at. Otherwise:
 *   -EAGAIN   more bytes needed. req->head_bytes is 0 while the head is
 *             incomplete; once the head is complete and only body bytes are
 *             missing it is the head's length and *req is fully set (body.n
 *             is 0), so the caller may route, authenticate, refuse early, or
 *             answer "100 Continue" when req->expect_continue.
 *   -EPROTO   malformed head (400), or both Content-Length and
 *             Transfer-Encoding (400: RFC 9112 6.1, a smuggling vector).
 *   -EMSGSIZE head over the limits (431).
 *   -EFBIG    Content-Length over body_bytes_max (413), decided as soon as
 *             the head is complete: the body is never waited for.
 *   -ENOTSUP  Transfer-Encoding without Content-Length (chunked bodies are
 *             not implemented: 501).
 * After any failure the connection cannot be read further (the body's end is
 * unknown): answer rr_http_error_status(r) and close. A request without
 * Content-Length has no body (RFC 9112 6.3). A verdict given on a prefix is
 * the verdict on any longer buffer.
 */
ssize_t rr_http_parse_request(const char *buf, size_t len, const struct rr_http_limits *lim,
			      uint64_t body_bytes_max, struct rr_http_req *req);

/* The status that answers a failure of rr_http_parse()/rr_http_parse_request():
 * -EPROTO 400, -EMSGSIZE 431, -EFBIG 413, -ENOTSUP 501; anything else 400. */
int rr_http_error_status(ssize_t err);

/* Whether the connection stays open after the answer to req: HTTP/1.1 unless
 * "Connection: close"; HTTP/1.0 only with "Connection: keep-alive" and
 * without "close". */
bool rr_http_keep_alive(const struct rr_http_req *req);

/*
 * Is a body of this Content-Type text for a WebSocket text frame? True for
 * text/<anything>, application/json and <type>/<anything>+json, compared
 * case-insensitively with parameters (";charset=...") ignored. False for an
 * absent (n == 0) or any other type: the body is sent as a binary frame.
 */
bool rr_http_content_is_text(struct rr_http_str content_type);

/*
 * The credentials of "Authorization: Bearer <token>" (scheme
 * case-insensitive, one or more spaces, then a token without whitespace).
 * Returns false for another scheme, an empty token or a malformed value.
 */
bool rr_http_bearer(struct rr_http_str authorization, struct rr_http_str *token);

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

/*
 * A query parameter as an unsigned decimal number (history's beforeId and
 * limit). Returns 0 with *out set, -ENOENT when the parameter is absent,
 * -EINVAL when its value is empty, not all digits or over max (answer 400).
 */
int rr_http_query_u64(struct rr_http_str query, const char *name, uint64_t max, uint64_t *out);

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

/* ---- the backend API (/api/...) ---------------------------------------- */

enum rr_api_kind {
	RR_API_NONE = 0,      /* no such resource: 404 */
	RR_API_BAD_ROOM,      /* a resource shape with an invalid room name: 400 */
	RR_API_ROOMS,         /* GET    /api/rooms */
	RR_API_RAW_PUBLISH,   /* POST   /api/raw/{room} */
	RR_API_CHAT_PUBLISH,  /* POST   /api/chat/{room} */
	RR_API_CHAT_HISTORY,  /* GET    /api/chat/{room}/history */
	RR_API_CHAT_PRESENCE, /* GET    /api/chat/{room}/presence */
	RR_API_CHAT_KICK,     /* DELETE /api/chat/{room}/members/{userId} */
};

/* The permission a route needs (protocol.md): "publish" for the two
 * publishes, "admin" for everything (an API key has every permission). */
enum rr_api_perm {
	RR_API_PERM_PUBLISH = 1,
	RR_API_PERM_ADMIN,
};

struct rr_api_route {
	enum rr_api_kind kind;
	int status;             /* 0 when the method is allowed, else 400, 404 or 405 */
	const char *allow;      /* the resource's "Allow" value (answer it with 405);
				 * NULL for NONE and BAD_ROOM */
	bool head;              /* HEAD on a GET resource: answer as GET, without the body */
	enum rr_api_perm perm;  /* for a known resource */
	struct rr_http_str room;    /* every kind but ROOMS: a valid room name */
	struct rr_http_str user_id; /* KICK: non-empty, still percent-encoded (decode it
				     * with rr_http_pct_decode(); a failure is a 400) */
};

/* Is path "/api" or under "/api/"? (Then route it with rr_http_api_route(),
 * not rr_http_route(), which knows nothing of the API.) */
bool rr_http_is_api(struct rr_http_str path);

/*
 * Route a backend API request by path, then method. Paths are matched as
 * sent, like rr_http_route(): exact segments, no trailing-slash folding, no
 * percent-decoding of room names. A path of a known shape whose room is not a
 * valid name is BAD_ROOM (400, checked before the method); a path of no known
 * shape is NONE (404); a known resource with another method gets status 405
 * and its allow list. GET resources also accept HEAD.
 */
struct rr_api_route rr_http_api_route(struct rr_http_str method, struct rr_http_str path);

/* The interim answer to "Expect: 100-continue", sent once the head passed
 * routing and authentication and before the body is read. */
#define RR_HTTP_100_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

/* RFC 9110 reason phrase of a status ("Content Too Large" for 413), or
 * "Unknown" for a status it does not list. */
const char *rr_http_status_text(int status);

/*
 * Format the head of a backend API response into out[0..cap): status line,
 * Server, Content-Type (when content_type is not NULL), Content-Length:
 * body_len, Cache-Control: no-store, then the headers the status needs:
 * Allow: allow (when allow is not NULL: pass rr_api_route.allow with 405),
 * Retry-After for 429 and 503, WWW-Authenticate: Bearer for 401 (RFC 6750
 * 3), and "Connection: close" when !keep_alive (the caller then closes after
 * sending). For HEAD pass the GET body's length and send no body. Returns the
 * head's length, or -ENOSPC when it does not fit (512 bytes always do with
 * allow and content_type under 100 bytes each).
 */
ssize_t rr_http_api_head(char *out, size_t cap, int status, const char *content_type,
			 size_t body_len, const char *allow, bool keep_alive);

/*
 * Format protocol.md's error body {"error":{"code":"<code>","message":"<message>"}}
 * into out[0..cap), message escaped as a JSON string (quote, backslash and
 * control bytes; other bytes are copied, so pass UTF-8). code is one of the
 * fixed codes (e.g. "invalid_format") and is copied as is. Returns the length
 * (no NUL is counted; one is written when it fits), or -ENOSPC.
 */
ssize_t rr_http_api_error_body(char *out, size_t cap, const char *code, const char *message);

#endif
