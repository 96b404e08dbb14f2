/*
 * Routing of a request path to one of the fixed endpoints of protocol.md.
 *
 * DESIGN: paths are matched exactly as sent, without percent-decoding. A room
 * name may only hold unreserved characters (RFC 3986 2.3), which never need
 * encoding, so a '%' under /raw/ or /chat/ can only be an encoding of some
 * other byte: it is refused (400) rather than decoded. This also means one
 * room has exactly one spelling. No trailing-slash or dot-segment folding is
 * done: "/echo/" and "/raw/a/b" are different paths from "/echo" and
 * "/raw/a".
 *
 * The backend API (/api/...) is routed by rr_http_api_route(): the path is cut
 * into '/'-separated segments and compared with the few resource shapes of
 * protocol.md; the method is checked only once the resource is known, so a
 * wrong method on a real resource is a 405 with its Allow list, and a wrong
 * path a 404 whatever the method.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/assert.h"
#include "core/limits.h"
#include "http/http.h"

#define RR_ROOM_NAME_MAX 128 /* protocol.md: room names are 1..128 bytes */

bool rr_room_name_valid(const char *p, size_t n)
{
	size_t i;

	rr_assert(p != NULL || n == 0);

	if (n == 0 || n > RR_ROOM_NAME_MAX)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '~' || c == '-'))
			return false;
	}
	return true;
}

static bool rr_http_path_is(struct rr_http_str path, const char *lit)
{
	size_t n = strlen(lit);

	return path.n == n && memcmp(path.p, lit, n) == 0;
}

/* If path starts with prefix, the rest of it in *rest. */
static bool rr_http_path_under(struct rr_http_str path, const char *prefix,
			       struct rr_http_str *rest)
{
	size_t n = strlen(prefix);

	if (path.n < n || memcmp(path.p, prefix, n) != 0)
		return false;
	rest->p = path.p + n;
	rest->n = path.n - n;
	return true;
}

struct rr_route rr_http_route(struct rr_http_str path)
{
	struct rr_route r = {.kind = RR_ROUTE_NONE};
	struct rr_http_str room;

	rr_assert(path.p != NULL || path.n == 0);

	if (rr_http_path_under(path, "/raw/", &room))
		r.kind = RR_ROUTE_RAW;
	else if (rr_http_path_under(path, "/chat/", &room))
		r.kind = RR_ROUTE_CHAT;

	if (r.kind != RR_ROUTE_NONE) {
		/* '/' is not a room character, so "/raw/a/b" lands here too */
		if (!rr_room_name_valid(room.p, room.n)) {
			r.kind = RR_ROUTE_BAD_ROOM;
			return r;
		}
		r.room = room;
		return r;
	}

	if (rr_http_path_is(path, "/echo"))
		r.kind = RR_ROUTE_ECHO;
	else if (rr_http_path_is(path, "/healthz"))
		r.kind = RR_ROUTE_HEALTHZ;
	else if (rr_http_path_is(path, "/metrics"))
		r.kind = RR_ROUTE_METRICS;
	else if (rr_http_path_is(path, "/"))
		r.kind = RR_ROUTE_INDEX;
	return r;
}

/* ---- the backend API --------------------------------------------------- */

#define RR_API_SEGMENTS_MAX 5 /* the longest shape: chat/{room}/members/{userId} */

bool rr_http_is_api(struct rr_http_str path)
{
	struct rr_http_str rest;

	rr_assert(path.p != NULL || path.n == 0);
	return rr_http_path_is(path, "/api") || rr_http_path_under(path, "/api/", &rest);
}

static bool rr_http_seg_is(struct rr_http_str s, const char *lit)
{
	return rr_http_path_is(s, lit);
}

static bool rr_http_method_is(struct rr_http_str m, const char *lit)
{
	return rr_http_path_is(m, lit);
}

struct rr_api_route rr_http_api_route(struct rr_http_str method, struct rr_http_str path)
{
	struct rr_api_route r = {.kind = RR_API_NONE, .status = 404};
	struct rr_http_str seg[RR_API_SEGMENTS_MAX], rest;
	const char *want; /* the one method the resource takes besides HEAD */
	unsigned nseg = 0;
	size_t i, b;

	rr_assert(method.p != NULL || method.n == 0);
	rr_assert(path.p != NULL || path.n == 0);

	if (!rr_http_path_under(path, "/api/", &rest))
		return r;
	/* segments; one too many is no known shape */
	for (i = 0, b = 0; i <= rest.n; i++) {
		if (i < rest.n && rest.p[i] != '/')
			continue;
		if (nseg == RR_API_SEGMENTS_MAX)
			return r;
		seg[nseg].p = rest.p + b;
		seg[nseg].n = i - b;
		nseg++;
		b = i + 1;
	}

	if (nseg == 1 && rr_http_seg_is(seg[0], "rooms")) {
		r.kind = RR_API_ROOMS;
		want = "GET";
	} else if (nseg == 2 && rr_http_seg_is(seg[0], "raw")) {
		r.kind = RR_API_RAW_PUBLISH;
		want = "POST";
	} else if (nseg == 2 && rr_http_seg_is(seg[0], "chat")) {
		r.kind = RR_API_CHAT_PUBLISH;
		want = "POST";
	} else if (nseg == 3 && rr_http_seg_is(seg[0], "chat") &&
		   rr_http_seg_is(seg[2], "history")) {
		r.kind = RR_API_CHAT_HISTORY;
		want = "GET";
	} else if (nseg == 3 && rr_http_seg_is(seg[0], "chat") &&
		   rr_http_seg_is(seg[2], "presence")) {
		r.kind = RR_API_CHAT_PRESENCE;
		want = "GET";
	} else if (nseg == 4 && rr_http_seg_is(seg[0], "chat") &&
		   rr_http_seg_is(seg[2], "members") && seg[3].n > 0) {
		r.kind = RR_API_CHAT_KICK;
		want = "DELETE";
		r.user_id = seg[3];
	} else {
		return r;
	}

	if (r.kind != RR_API_ROOMS) {
		if (!rr_room_name_valid(seg[1].p, seg[1].n)) {
			r.kind = RR_API_BAD_ROOM;
			r.status = 400;
			r.user_id.p = NULL;
			r.user_id.n = 0;
			return r;
		}
		r.room = seg[1];
	}
	r.perm = (r.kind == RR_API_RAW_PUBLISH || r.kind == RR_API_CHAT_PUBLISH)
		     ? RR_API_PERM_PUBLISH
		     : RR_API_PERM_ADMIN;

	if (strcmp(want, "GET") == 0) {
		r.allow = "GET, HEAD";
		r.head = rr_http_method_is(method, "HEAD");
		r.status = (rr_http_method_is(method, "GET") || r.head) ? 0 : 405;
	} else {
		r.allow = want;
		r.status = rr_http_method_is(method, want) ? 0 : 405;
	}
	return r;
}

/* ---- answers of the backend API ---------------------------------------- */

/* one status per line reads better than clang-format's three */
/* clang-format off */
const char *rr_http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}
/* clang-format on */

ssize_t rr_http_api_head(char *out, size_t cap, int status, const char *content_type,
			 size_t body_len, const char *allow, bool keep_alive)
{
	const char *extra = "";
	int n;

	rr_assert(out != NULL || cap == 0);
	rr_assert(status >= 100 && status <= 599);

	if (status == 503 || status == 429)
		extra = "Retry-After: " RR_STRINGIFY(RR_RETRY_AFTER_S) "\r\n";
	else if (status == 401)
		extra = "WWW-Authenticate: Bearer realm=\"ringroom\"\r\n";

	n = snprintf(out, cap,
		     "HTTP/1.1 %d %s\r\n"
		     "Server: ringroom\r\n"
		     "%s%s%s"
		     "Content-Length: %zu\r\n"
		     "Cache-Control: no-store\r\n"
		     "%s%s%s"
		     "%s%s"
		     "\r\n",
		     status, rr_http_status_text(status), content_type ? "Content-Type: " : "",
		     content_type ? content_type : "", content_type ? "\r\n" : "", body_len,
		     allow ? "Allow: " : "", allow ? allow : "", allow ? "\r\n" : "", extra,
		     keep_alive ? "" : "Connection: close\r\n");
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}

ssize_t rr_http_api_error_body(char *out, size_t cap, const char *code, const char *message)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;
	const char *m;
	int k;

	rr_assert(out != NULL || cap == 0);
	rr_assert(code != NULL && message != NULL);

	k = snprintf(out, cap, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
	if (k < 0 || (size_t)k >= cap)
		return -ENOSPC;
	n = (size_t)k;
	for (m = message; *m != '\0'; m++) {
		unsigned char c = (unsigned char)*m;
		char esc[6];
		size_t e = 0;

		if (c == '"' || c == '\\') {
			esc[e++] = '\\';
			esc[e++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			esc[e++] = '\\';
			esc[e++] = 'u';
			esc[e++] = '0';
			esc[e++] = '0';
			esc[e++] = hex[c >> 4];
			esc[e++] = hex[c & 15];
		} else {
			esc[e++] = (char)c;
		}
		if (cap - n <= e)
			return -ENOSPC;
		memcpy(out + n, esc, e);
		n += e;
	}
	if (cap - n <= 3)
		return -ENOSPC;
	memcpy(out + n, "\"}}", 4); /* with the NUL */
	return (ssize_t)(n + 3);
}
