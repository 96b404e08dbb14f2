/*
 * URL template tests: parsing ws:// and wss:// URLs and filling {room}.
 */
#include "../url.c"

#include "../../tests/unit/check.h"

int main(void)
{
	struct rr_bench_url u;
	char out[64];

	CHECK_EQ(rr_bench_url_parse("ws://127.0.0.1:8080/raw/{room}", &u), 0);
	CHECK(strcmp(u.host, "127.0.0.1") == 0);
	CHECK_EQ(u.port, 8080);
	CHECK(strcmp(u.path, "/raw/{room}") == 0);
	CHECK(u.has_room);
	CHECK_EQ(ntohl(u.addr.s_addr), 0x7f000001);
	CHECK_EQ(rr_bench_url_target(&u, "r17", out, sizeof(out)), 8);
	CHECK(strcmp(out, "/raw/r17") == 0);

	/* defaults: port 80, path / */
	CHECK_EQ(rr_bench_url_parse("ws://localhost", &u), 0);
	CHECK_EQ(u.port, 80);
	CHECK(strcmp(u.path, "/") == 0);
	CHECK(!u.has_room);
	CHECK_EQ(ntohl(u.addr.s_addr), 0x7f000001);
	CHECK_EQ(rr_bench_url_parse("WS://127.0.0.2/echo", &u), 0);
	CHECK_EQ(u.port, 80);
	CHECK(strcmp(u.path, "/echo") == 0);
	CHECK_EQ(rr_bench_url_target(&u, "r0", out, sizeof(out)), 5);
	CHECK(strcmp(out, "/echo") == 0);

	/* several placeholders, a query string, partial braces left alone */
	CHECK_EQ(rr_bench_url_parse("ws://127.0.0.1:1/a/{room}/b?x={room}&y={roo", &u), 0);
	CHECK_EQ(u.port, 1);
	CHECK(rr_bench_url_target(&u, "r3", out, sizeof(out)) > 0);
	CHECK(strcmp(out, "/a/r3/b?x=r3&y={roo") == 0);
	/* no room in the template: the target is the path as is */
	CHECK_EQ(rr_bench_url_parse("ws://127.0.0.1:9/chat/lobby", &u), 0);
	CHECK(rr_bench_url_target(&u, "r9", out, sizeof(out)) > 0);
	CHECK(strcmp(out, "/chat/lobby") == 0);
	/* the filled target must fit */
	CHECK_EQ(rr_bench_url_parse("ws://127.0.0.1:9/{room}{room}{room}", &u), 0);
	CHECK_EQ(rr_bench_url_target(&u, "0123456789abcdef0123456", out, sizeof(out)),
		 -ENAMETOOLONG);
	CHECK_EQ(rr_bench_url_target(&u, "ab", out, 8), 7); /* "/ababab" and its NUL */
	CHECK_EQ(rr_bench_url_target(&u, "ab", out, 7), -ENAMETOOLONG);

	/* refusals */
	/* wss://: TLS, port 443 by default */
	CHECK_EQ(rr_bench_url_parse("wss://127.0.0.1/echo", &u), 0);
	CHECK(u.tls);
	CHECK_EQ(u.port, 443);
	CHECK_EQ(rr_bench_url_parse("WSS://localhost:8443/raw/{room}", &u), 0);
	CHECK(u.tls && u.has_room);
	CHECK_EQ(u.port, 8443);
	CHECK_EQ(rr_bench_url_parse("ws://127.0.0.1/echo", &u), 0);
	CHECK(!u.tls);
	CHECK_EQ(rr_bench_url_parse("wss:/127.0.0.1/echo", &u), -EINVAL);
	CHECK_EQ(rr_bench_url_parse("http://127.0.0.1/echo", &u), -EPROTONOSUPPORT);
	CHECK_EQ(rr_bench_url_parse("127.0.0.1:8080/echo", &u), -EINVAL);
	CHECK_EQ(rr_bench_url_parse("ws://", &u), -EINVAL);
	CHECK_EQ(rr_bench_url_parse("ws://:80/", &u), -EINVAL);
	CHECK_EQ(rr_bench_url_parse("ws://127.0.0.1:0/", &u), -EINVAL);
	CHECK_EQ(rr_bench_url_parse("ws://127.0.0.1:65536/", &u), -EINVAL);
	CHECK_EQ(rr_bench_url_parse("ws://127.0.0.1:/", &u), -EINVAL);
	CHECK_EQ(rr_bench_url_parse("ws://127.0.0.1:80x/", &u), -EINVAL);
	CHECK_EQ(rr_bench_url_parse("ws://127.0.0.1/a b", &u), -EINVAL);
	CHECK_EQ(rr_bench_url_parse("ws://127.0.0.1/a#frag", &u), -EINVAL);
	CHECK_EQ(rr_bench_url_parse("ws://example.com/", &u), -EHOSTUNREACH);
	CHECK_EQ(rr_bench_url_parse("ws://127.0.0.1:65535/", &u), 0);
	CHECK_EQ(u.port, 65535);

	char longpath[2000] = "ws://127.0.0.1/";
	memset(longpath + 15, 'a', 1500);
	longpath[1515] = '\0';
	CHECK_EQ(rr_bench_url_parse(longpath, &u), -ENAMETOOLONG);
	return check_done();
}
