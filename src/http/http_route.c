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
 */
#include <string.h>

#include "core/assert.h"
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
