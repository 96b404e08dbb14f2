/*
 * ws:// and wss:// URL templates for ringroom-bench.
 *
 * The bench targets any RFC 6455 server, so the room is spliced into the
 * path the user gives: every "{room}" in the template is replaced by the
 * room's name (r0, r1, ...). The host is an
 * IPv4 literal or "localhost" (the bench generates load on loopback only).
 */
#ifndef RR_BENCH_URL_H
#define RR_BENCH_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#define RR_BENCH_URL_HOST_MAX 256
#define RR_BENCH_URL_PATH_MAX 1024

struct rr_bench_url {
	char host[RR_BENCH_URL_HOST_MAX]; /* as written, for the Host header */
	uint16_t port;
	char path[RR_BENCH_URL_PATH_MAX]; /* template, starts with '/' */
	bool has_room;			  /* path contains "{room}" */
	bool tls;			  /* wss:// */
	struct in_addr addr;		  /* resolved host */
};

/*
 * Parse "ws://host[:port][/path]" or "wss://..." (port 80 or 443 by
 * default). Returns 0, -EPROTONOSUPPORT for another scheme, -EINVAL for a malformed URL or port,
 * -ENAMETOOLONG for an over-long host or path, -EHOSTUNREACH for a host that
 * is neither an IPv4 literal nor "localhost".
 */
int rr_bench_url_parse(const char *s, struct rr_bench_url *u);

/*
 * Write the request target for room into out (cap bytes, NUL-terminated):
 * the template with each "{room}" replaced. Returns the length, or
 * -ENAMETOOLONG if it does not fit.
 */
int rr_bench_url_target(const struct rr_bench_url *u, const char *room, char *out, size_t cap);

#endif
