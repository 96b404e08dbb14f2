/*
 * Unit tests for path routing and the room-name rule (src/http/http_route.c),
 * including paths taken from a parsed request line so the query is split off
 * the way the broker does it.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "http/http.h"
#include "check.h"

static struct rr_route route(const char *path)
{
	struct rr_http_str s = {.p = path, .n = strlen(path)};

	return rr_http_route(s);
}

static bool room_is(struct rr_route r, const char *lit)
{
	return r.room.n == strlen(lit) && memcmp(r.room.p, lit, r.room.n) == 0;
}

static void test_fixed_paths(void)
{
	CHECK_EQ(route("/echo").kind, RR_ROUTE_ECHO);
	CHECK_EQ(route("/healthz").kind, RR_ROUTE_HEALTHZ);
	CHECK_EQ(route("/metrics").kind, RR_ROUTE_METRICS);
	CHECK_EQ(route("/").kind, RR_ROUTE_INDEX);
	CHECK_EQ(route("/echo").room.n, 0);

	/* exact matches only: 404 */
	CHECK_EQ(route("").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("//").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("/echo/").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("/echox").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("/Echo").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("/ech").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("/healthz/").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("/metrics.txt").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("/index.html").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("/%65cho").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("echo").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("*").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("http://h/echo").kind, RR_ROUTE_NONE);
	/* not under /raw/ or /chat/: 404, not 400 */
	CHECK_EQ(route("/raw").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("/chat").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("/rawx/a").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("/Raw/a").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("/chatroom/a").kind, RR_ROUTE_NONE);
	CHECK_EQ(route("//raw/a").kind, RR_ROUTE_NONE);
	{
		struct rr_http_str empty = {.p = NULL, .n = 0};

		CHECK_EQ(rr_http_route(empty).kind, RR_ROUTE_NONE);
	}
}

static void test_rooms(void)
{
	char path[256];
	struct rr_route r;

	r = route("/raw/lobby");
	CHECK_EQ(r.kind, RR_ROUTE_RAW);
	CHECK(room_is(r, "lobby"));
	r = route("/chat/lobby");
	CHECK_EQ(r.kind, RR_ROUTE_CHAT);
	CHECK(room_is(r, "lobby"));
	r = route("/chat/A-z_0.9~");
	CHECK_EQ(r.kind, RR_ROUTE_CHAT);
	CHECK(room_is(r, "A-z_0.9~"));
	r = route("/raw/..");
	CHECK_EQ(r.kind, RR_ROUTE_RAW); /* only a name here, never a file path */
	CHECK(room_is(r, ".."));
	r = route("/raw/x");
	CHECK_EQ(r.kind, RR_ROUTE_RAW);
	CHECK(room_is(r, "x"));

	/* 128 bytes is the longest name, 129 is refused */
	memcpy(path, "/raw/", 5);
	memset(path + 5, 'r', 128);
	path[5 + 128] = '\0';
	r = route(path);
	CHECK_EQ(r.kind, RR_ROUTE_RAW);
	CHECK_EQ(r.room.n, 128);
	CHECK(r.room.p == path + 5);
	path[5 + 128] = 'r';
	path[5 + 129] = '\0';
	r = route(path);
	CHECK_EQ(r.kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(r.room.n, 0);
	memcpy(path, "/chat/", 6);
	memset(path + 6, 'c', 129);
	path[6 + 129] = '\0';
	CHECK_EQ(route(path).kind, RR_ROUTE_BAD_ROOM);
	path[6 + 128] = '\0';
	CHECK_EQ(route(path).kind, RR_ROUTE_CHAT);

	/* empty, extra slash, percent-encoded (not decoded), bad bytes */
	CHECK_EQ(route("/raw/").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/chat/").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/raw/a/b").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/raw/a/").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/raw//a").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/chat/a/b").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/raw/a%20b").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/raw/%61").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/chat/a b").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/chat/a+b").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/chat/caf\xc3\xa9").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/chat/a?b").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/chat/a#b").kind, RR_ROUTE_BAD_ROOM);
	CHECK_EQ(route("/chat/a;b").kind, RR_ROUTE_BAD_ROOM);
	{
		static const char nul[] = "/raw/a\0b";
		struct rr_http_str s = {.p = nul, .n = sizeof(nul) - 1};

		CHECK_EQ(rr_http_route(s).kind, RR_ROUTE_BAD_ROOM);
	}
}

static void test_room_name_valid(void)
{
	char name[130];
	unsigned c;
	unsigned allowed = 0;

	CHECK(!rr_room_name_valid(NULL, 0));
	CHECK(!rr_room_name_valid("a", 0));
	CHECK(rr_room_name_valid("a", 1));
	memset(name, 'z', sizeof(name));
	CHECK(rr_room_name_valid(name, 128));
	CHECK(!rr_room_name_valid(name, 129));
	CHECK(!rr_room_name_valid(name, 130));

	/* exactly 26 + 26 + 10 + 4 byte values are allowed */
	for (c = 0; c < 256; c++) {
		char ch = (char)c;
		bool want = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~' || c == '-';

		CHECK_EQ(rr_room_name_valid(&ch, 1), want);
		if (rr_room_name_valid(&ch, 1))
			allowed++;
		/* a bad byte anywhere spoils the name */
		name[0] = 'a';
		name[1] = ch;
		name[2] = 'b';
		CHECK_EQ(rr_room_name_valid(name, 3), want);
	}
	CHECK_EQ(allowed, 66);
}

/* route the path of a parsed request, as the broker does */
static void test_from_request(void)
{
	static const struct rr_http_limits lim = {.header_bytes_max = 8192, .headers_max = 100};
	struct rr_http_req req;
	struct rr_route r;
	const char *s;

	s = "GET /raw/lobby?token=abc HTTP/1.1\r\nHost: h\r\n\r\n";
	CHECK_EQ(rr_http_parse(s, strlen(s), &lim, &req), strlen(s));
	r = rr_http_route(req.path);
	CHECK_EQ(r.kind, RR_ROUTE_RAW);
	CHECK(room_is(r, "lobby"));

	s = "GET /healthz? HTTP/1.1\r\n\r\n";
	CHECK_EQ(rr_http_parse(s, strlen(s), &lim, &req), strlen(s));
	CHECK_EQ(rr_http_route(req.path).kind, RR_ROUTE_HEALTHZ);

	s = "GET /?x=/raw/a HTTP/1.1\r\n\r\n";
	CHECK_EQ(rr_http_parse(s, strlen(s), &lim, &req), strlen(s));
	CHECK_EQ(rr_http_route(req.path).kind, RR_ROUTE_INDEX);

	s = "GET /chat/a%20b HTTP/1.1\r\n\r\n";
	CHECK_EQ(rr_http_parse(s, strlen(s), &lim, &req), strlen(s));
	CHECK_EQ(rr_http_route(req.path).kind, RR_ROUTE_BAD_ROOM);
}

/* ---- the backend API --------------------------------------------------- */

static struct rr_api_route api(const char *method, const char *path)
{
	struct rr_http_str m = {.p = method, .n = strlen(method)};
	struct rr_http_str p = {.p = path, .n = strlen(path)};

	return rr_http_api_route(m, p);
}

static bool s_is(struct rr_http_str s, const char *lit)
{
	return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

static void test_api_is(void)
{
	static const char *const yes[] = {"/api", "/api/", "/api/rooms", "/api/x/y"};
	static const char *const no[] = {"/ap", "/apix", "/api2/rooms", "/API/rooms", "api/rooms",
					 "/raw/api", ""};
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		struct rr_http_str s = {.p = yes[i], .n = strlen(yes[i])};

		CHECK(rr_http_is_api(s));
	}
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		struct rr_http_str s = {.p = no[i], .n = strlen(no[i])};

		CHECK(!rr_http_is_api(s));
		/* the plain routes don't know the API: unchanged behaviour */
	}
	CHECK_EQ(route("/api/rooms").kind, RR_ROUTE_NONE);
}

static void test_api_routes(void)
{
	struct rr_api_route r;
	char long_room[200];

	r = api("GET", "/api/rooms");
	CHECK_EQ(r.kind, RR_API_ROOMS);
	CHECK_EQ(r.status, 0);
	CHECK_EQ(r.perm, RR_API_PERM_ADMIN);
	CHECK(!r.head);
	CHECK(strcmp(r.allow, "GET, HEAD") == 0);
	r = api("HEAD", "/api/rooms");
	CHECK_EQ(r.status, 0);
	CHECK(r.head);

	r = api("POST", "/api/raw/lobby");
	CHECK_EQ(r.kind, RR_API_RAW_PUBLISH);
	CHECK_EQ(r.status, 0);
	CHECK_EQ(r.perm, RR_API_PERM_PUBLISH);
	CHECK(s_is(r.room, "lobby"));

	r = api("POST", "/api/chat/a.b_c~d-e");
	CHECK_EQ(r.kind, RR_API_CHAT_PUBLISH);
	CHECK_EQ(r.status, 0);
	CHECK_EQ(r.perm, RR_API_PERM_PUBLISH);
	CHECK(s_is(r.room, "a.b_c~d-e"));

	r = api("GET", "/api/chat/lobby/history");
	CHECK_EQ(r.kind, RR_API_CHAT_HISTORY);
	CHECK_EQ(r.status, 0);
	CHECK_EQ(r.perm, RR_API_PERM_ADMIN);
	CHECK(s_is(r.room, "lobby"));

	r = api("GET", "/api/chat/lobby/presence");
	CHECK_EQ(r.kind, RR_API_CHAT_PRESENCE);
	CHECK_EQ(r.status, 0);

	r = api("DELETE", "/api/chat/lobby/members/u%201");
	CHECK_EQ(r.kind, RR_API_CHAT_KICK);
	CHECK_EQ(r.status, 0);
	CHECK_EQ(r.perm, RR_API_PERM_ADMIN);
	CHECK(s_is(r.room, "lobby"));
	CHECK(s_is(r.user_id, "u%201"));
	CHECK(strcmp(r.allow, "DELETE") == 0);

	/* 405 with the resource's Allow */
	r = api("GET", "/api/raw/lobby");
	CHECK_EQ(r.kind, RR_API_RAW_PUBLISH);
	CHECK_EQ(r.status, 405);
	CHECK(strcmp(r.allow, "POST") == 0);
	CHECK_EQ(api("PUT", "/api/chat/lobby").status, 405);
	CHECK_EQ(api("post", "/api/chat/lobby").status, 405); /* methods are case-sensitive */
	CHECK_EQ(api("POST", "/api/rooms").status, 405);
	CHECK_EQ(api("DELETE", "/api/chat/a/history").status, 405);
	CHECK_EQ(api("POST", "/api/chat/a/presence").status, 405);
	CHECK_EQ(api("GET", "/api/chat/a/members/u").status, 405);
	CHECK_EQ(api("HEAD", "/api/raw/a").status, 405);
	CHECK(!api("HEAD", "/api/raw/a").head);

	/* 400: a known shape with a bad room, whatever the method */
	r = api("POST", "/api/raw/a%20b");
	CHECK_EQ(r.kind, RR_API_BAD_ROOM);
	CHECK_EQ(r.status, 400);
	CHECK(r.allow == NULL);
	CHECK_EQ(api("POST", "/api/raw/").status, 400);
	CHECK_EQ(api("GET", "/api/chat/a!b/history").status, 400);
	CHECK_EQ(api("DELETE", "/api/chat//members/u").status, 400);
	CHECK_EQ(api("PATCH", "/api/chat/a b").status, 400);
	memset(long_room, 'r', sizeof(long_room));
	memcpy(long_room, "/api/raw/", 9);
	long_room[9 + 128] = '\0';
	CHECK_EQ(api("POST", long_room).status, 0);
	long_room[9 + 128] = 'r';
	long_room[9 + 129] = '\0';
	CHECK_EQ(api("POST", long_room).status, 400); /* 129 bytes */

	/* 404: no such shape */
	static const char *const none[] = {
		"/api",  "/api/", "/api/rooms/", "/api/room", "/api/raw", "/api/raw/a/b",
		"/api/chat", "/api/chat/a/", "/api/chat/a/history/", "/api/chat/a/members",
		"/api/chat/a/members/", "/api/chat/a/members/u/v", "/api/chat/a/other",
		"/api/raw/a/history", "/api/x/a", "/api//rooms", "/api/a/b/c/d/e/f/g",
		"/apirooms", "/raw/a", "/api/Rooms"};
	size_t i;

	for (i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		r = api("GET", none[i]);
		if (r.kind != RR_API_NONE || r.status != 404)
			fprintf(stderr, "'%s' routed to %d/%d\n", none[i], r.kind, r.status);
		CHECK_EQ(r.kind, RR_API_NONE);
		CHECK_EQ(r.status, 404);
		CHECK(r.allow == NULL);
	}
}

/* the path of a parsed request, query split off */
static void test_api_from_request(void)
{
	static const struct rr_http_limits lim = {.header_bytes_max = 8192, .headers_max = 100};
	struct rr_http_req req;
	struct rr_api_route r;
	uint64_t v;
	const char *s = "GET /api/chat/lobby/history?beforeId=10&limit=5 HTTP/1.1\r\n\r\n";

	CHECK_EQ(rr_http_parse_request(s, strlen(s), &lim, 100, &req), strlen(s));
	CHECK(rr_http_is_api(req.path));
	r = rr_http_api_route(req.method, req.path);
	CHECK_EQ(r.kind, RR_API_CHAT_HISTORY);
	CHECK_EQ(r.status, 0);
	CHECK_EQ(rr_http_query_u64(req.query, "beforeId", UINT64_MAX, &v), 0);
	CHECK_EQ(v, 10);
	CHECK_EQ(rr_http_query_u64(req.query, "limit", 100, &v), 0);
	CHECK_EQ(v, 5);
}

static void test_api_answers(void)
{
	char out[512], small[40];
	ssize_t n;

	CHECK(strcmp(rr_http_status_text(413), "Content Too Large") == 0);
	CHECK(strcmp(rr_http_status_text(501), "Not Implemented") == 0);
	CHECK(strcmp(rr_http_status_text(299), "Unknown") == 0);

	n = rr_http_api_head(out, sizeof(out), 200, "application/json", 15, NULL, true);
	CHECK(n > 0 && (size_t)n == strlen(out));
	CHECK(strcmp(out, "HTTP/1.1 200 OK\r\nServer: ringroom\r\n"
			  "Content-Type: application/json\r\nContent-Length: 15\r\n"
			  "Cache-Control: no-store\r\n\r\n") == 0);

	n = rr_http_api_head(out, sizeof(out), 405, "application/json", 0, "GET, HEAD", false);
	CHECK(n > 0);
	CHECK(strncmp(out, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0);
	CHECK(strstr(out, "\r\nAllow: GET, HEAD\r\n") != NULL);
	CHECK(strstr(out, "\r\nConnection: close\r\n\r\n") != NULL);
	CHECK(strstr(out, "Content-Length: 0\r\n") != NULL);

	n = rr_http_api_head(out, sizeof(out), 401, NULL, 0, NULL, true);
	CHECK(n > 0 && strstr(out, "\r\nWWW-Authenticate: Bearer realm=\"ringroom\"\r\n") != NULL);
	CHECK(strstr(out, "Content-Type") == NULL && strstr(out, "Connection") == NULL);
	n = rr_http_api_head(out, sizeof(out), 503, "application/json", 9, NULL, true);
	CHECK(n > 0 && strstr(out, "\r\nRetry-After: 5\r\n") != NULL);
	CHECK(strstr(out, "Service Unavailable") != NULL);
	CHECK_EQ(rr_http_api_head(small, sizeof(small), 200, "text/plain", 1, NULL, true), -ENOSPC);

	n = rr_http_api_error_body(out, sizeof(out), "invalid_format", "bad \"JSON\"\\\n\x01");
	CHECK(n > 0 && (size_t)n == strlen(out));
	CHECK(strcmp(out, "{\"error\":{\"code\":\"invalid_format\","
			  "\"message\":\"bad \\\"JSON\\\"\\\\\\u000a\\u0001\"}}") == 0);
	n = rr_http_api_error_body(out, sizeof(out), "storage_unavailable", "caf\xc3\xa9");
	CHECK(strcmp(out, "{\"error\":{\"code\":\"storage_unavailable\",\"message\":\"caf\xc3\xa9\"}}") ==
	      0);
	/* exactly fitting, one byte short */
	n = rr_http_api_error_body(out, sizeof(out), "x", "");
	CHECK_EQ(n, (ssize_t)strlen("{\"error\":{\"code\":\"x\",\"message\":\"\"}}"));
	CHECK_EQ(rr_http_api_error_body(small, (size_t)n + 1, "x", ""), n);
	CHECK_EQ(rr_http_api_error_body(small, (size_t)n, "x", ""), -ENOSPC);
	CHECK_EQ(rr_http_api_error_body(small, sizeof(small), "invalid_format", "a long message"),
		 -ENOSPC);
	CHECK(strcmp(RR_HTTP_100_CONTINUE, "HTTP/1.1 100 Continue\r\n\r\n") == 0);
}

int main(void)
{
	test_fixed_paths();
	test_rooms();
	test_room_name_valid();
	test_from_request();
	test_api_is();
	test_api_routes();
	test_api_from_request();
	test_api_answers();
	return check_done();
}
