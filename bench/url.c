/*
 * URL template parsing and filling: see url.h.
 */
#include "url.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int rr_bench_url_parse(const char *s, struct rr_bench_url *u)
{
	memset(u, 0, sizeof(*u));
	const char *h;
	if (strncasecmp(s, "ws://", 5) == 0) {
		h = s + 5;
	} else if (strncasecmp(s, "wss://", 6) == 0) {
		h = s + 6;
		u->tls = true;
	} else {
		return strstr(s, "://") ? -EPROTONOSUPPORT : -EINVAL;
	}
	size_t hl = strcspn(h, ":/?#");
	if (hl == 0)
		return -EINVAL;
	if (hl >= sizeof(u->host))
		return -ENAMETOOLONG;
	memcpy(u->host, h, hl);
	u->host[hl] = '\0';
	const char *p = h + hl;
	u->port = u->tls ? 443 : 80;
	if (*p == ':') {
		p++;
		size_t dl = strspn(p, "0123456789");
		if (dl == 0 || dl > 5)
			return -EINVAL;
		unsigned long port = strtoul(p, NULL, 10);
		if (port == 0 || port > 65535)
			return -EINVAL;
		u->port = (uint16_t)port;
		p += dl;
	}
	if (*p == '\0') {
		strcpy(u->path, "/");
	} else if (*p == '/') {
		if (strlen(p) >= sizeof(u->path))
			return -ENAMETOOLONG;
		if (strchr(p, '#') || strpbrk(p, " \t\r\n"))
			return -EINVAL;
		strcpy(u->path, p);
	} else {
		return -EINVAL;
	}
	u->has_room = strstr(u->path, "{room}") != NULL;
	if (strcasecmp(u->host, "localhost") == 0)
		u->addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, u->host, &u->addr) != 1)
		return -EHOSTUNREACH;
	return 0;
}

int rr_bench_url_target(const struct rr_bench_url *u, const char *room, char *out, size_t cap)
{
	static const char key[] = "{room}";
	size_t rl = strlen(room), o = 0;
	const char *p = u->path;
	while (*p) {
		size_t take;
		const char *src;
		if (strncmp(p, key, sizeof(key) - 1) == 0) {
			src = room;
			take = rl;
			p += sizeof(key) - 1;
		} else {
			src = p;
			take = 1;
			p++;
		}
		if (o + take >= cap)
			return -ENAMETOOLONG;
		memcpy(out + o, src, take);
		o += take;
	}
	if (o >= cap)
		return -ENAMETOOLONG;
	out[o] = '\0';
	return (int)o;
}
