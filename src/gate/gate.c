/*
 * The gate: see gate.h.
 */
#include "gate/gate.h"
#include "auth/jwt.h"
#include "conn/conn.h"
#include "core/log.h"
#include "gate/api.h"
#include "gate/auth.h"
#include "http/http.h"
#include "http/http_reply.h"
#include "ws/ws.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ROOM_NAME_MAX 128

/* src/http/ringroom.js, embedded at build time like the page */
extern const char rr_ringroom_js[];
extern const unsigned long rr_ringroom_js_len;

struct route_owner {
	rr_gate_open_fn *open;
	bool auth;
};

static struct route_owner routes[RR_GATE_ROUTES];
static rr_gate_match_fn *matcher;
static rr_gate_spread_fn *spread;

void rr_gate_spread(rr_gate_spread_fn *fn)
{
	spread = fn;
}

void rr_gate_route(unsigned route, rr_gate_open_fn *open, bool auth)
{
	if (route < RR_GATE_ROUTES) {
		routes[route].open = open;
		routes[route].auth = auth;
	}
}

void rr_gate_matcher(rr_gate_match_fn *fn)
{
	matcher = fn;
}

/* What travels with a connection to its room's home core. */
struct record {
	uint8_t route;
	uint8_t room_len;
	bool has_id;
	char room[ROOM_NAME_MAX + 1];
	char accept[29];
	struct rr_identity id;
	uint32_t protocol_len; /* Sec-WebSocket-Protocol to answer */
	uint32_t query_len;
	uint32_t extra_len;
	uint8_t bytes[]; /* query, protocol, NUL, then the bytes after the request */
};

static void open_here(struct rr_core *core, struct rr_conn *c, struct rr_gate_upgrade *u)
{
	c->route = (uint8_t)u->route;
	if (u->id)
		c->exp_s = (uint32_t)u->id->exp_s;
	struct route_owner *o = u->route < RR_GATE_ROUTES ? &routes[u->route] : NULL;
	if (o == NULL || o->open == NULL) {
		rr_conn_reply(core, c, 404, NULL);
		return;
	}
	o->open(core, c, u);
}

static void gate_arrived(struct rr_core *core, struct rr_conn *c, const void *p, size_t len)
{
	const struct record *r = p;
	(void)len;
	uint8_t *proto = (uint8_t *)r->bytes + r->query_len;
	struct rr_gate_upgrade u = {
	    .route = r->route,
	    .room = r->room,
	    .room_len = r->room_len,
	    .accept = r->accept,
	    .id = r->has_id ? &r->id : NULL,
	    .protocol = (const char *)proto,
	    .query = (const char *)r->bytes,
	    .query_len = r->query_len,
	    .extra = proto + r->protocol_len + 1,
	    .extra_len = r->extra_len,
	};
	open_here(core, c, &u);
}

/* The record of u (with the bytes after the request when extra). */
static struct record *record_make(const struct rr_gate_upgrade *u, bool extra, size_t *lenp)
{
	size_t plen = strlen(u->protocol);
	size_t xlen = extra ? u->extra_len : 0;
	size_t len = sizeof(struct record) + u->query_len + plen + 1 + xlen;
	struct record *r = malloc(len);
	if (r == NULL)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->route = (uint8_t)u->route;
	r->room_len = (uint8_t)u->room_len;
	memcpy(r->room, u->room, u->room_len);
	memcpy(r->accept, u->accept, 29);
	r->has_id = u->id != NULL;
	if (u->id)
		r->id = *u->id;
	r->query_len = (uint32_t)u->query_len;
	if (u->query_len)
		memcpy(r->bytes, u->query, u->query_len);
	r->protocol_len = (uint32_t)plen;
	memcpy(r->bytes + u->query_len, u->protocol, plen + 1);
	r->extra_len = (uint32_t)xlen;
	if (xlen)
		memcpy(r->bytes + u->query_len + plen + 1, u->extra, xlen);
	*lenp = len;
	return r;
}

static void hand_off(struct rr_core *core, struct rr_conn *c, unsigned home,
		     const struct rr_gate_upgrade *u)
{
	size_t len;
	struct record *r = record_make(u, true, &len);
	if (r == NULL) {
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	rr_conn_handoff(core, c, home, r, len);
	free(r);
}

/* A spread room: c stays here; its home hears of it and answers. */
static void keep_here(struct rr_core *core, struct rr_conn *c, unsigned home,
		      const struct rr_gate_upgrade *u)
{
	size_t len;
	struct record *r = record_make(u, false, &len);
	if (r == NULL) {
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	if (u->id)
		c->exp_s = (uint32_t)u->id->exp_s;
	rr_conn_remote_join(core, c, home, u->route, u->room, u->room_len, r, len, u->extra,
			    u->extra_len);
	free(r);
}

static void answer_plain(struct rr_core *core, struct rr_conn *c, enum rr_route_kind kind)
{
	const struct rr_broker *b = core->broker;
	switch (kind) {
	case RR_ROUTE_HEALTHZ:
		if (atomic_load_explicit(&b->draining, memory_order_relaxed))
			rr_conn_reply(core, c, 503,
				      rr_http_response(503, "text/plain", "draining\n", 9));
		else
			rr_conn_reply(core, c, 200, rr_http_response(200, "text/plain", "ok\n", 3));
		return;
	case RR_ROUTE_METRICS: {
		char *buf;
		size_t n;
		if (rr_metrics_render(b, &buf, &n) < 0) {
			rr_conn_reply(core, c, 503, NULL);
			return;
		}
		rr_conn_reply(core, c, 200,
			      rr_http_response(200, "text/plain; version=0.0.4", buf, n));
		free(buf);
		return;
	}
	default:
		rr_conn_reply(core, c, 200,
			      rr_http_response(200, "text/html; charset=utf-8", rr_index_html,
					       rr_index_html_len));
		return;
	}
}

/* --metrics-token: /metrics needs "Authorization: Bearer <token>" (compared
 * in constant time). */
static bool metrics_allowed(const struct rr_config *cfg, const struct rr_http_req *req)
{
	size_t n = strlen(cfg->metrics_token);
	struct rr_http_str tok;
	if (n == 0)
		return true;
	if (!rr_http_bearer(req->authorization, &tok) || tok.n != n)
		return false;
	uint8_t d = 0;
	for (size_t i = 0; i < n; i++)
		d |= (uint8_t)(tok.p[i] ^ cfg->metrics_token[i]);
	return d == 0;
}

static void request_complete(struct rr_core *core, struct rr_conn *c, size_t head_len,
			     struct rr_http_req *req)
{
	const struct rr_broker *b = core->broker;
	char who[96];
	size_t wn = (size_t)snprintf(who, sizeof(who), "conn %u (", c->idx);
	rr_conn_peer(c, who + wn, sizeof(who) - wn - 1);
	strncat(who, ")", sizeof(who) - strlen(who) - 1);

	struct rr_route rt = rr_http_route(req->path);
	const char *croom;
	size_t croom_len;
	unsigned custom = matcher ? matcher(req->path.p, req->path.n, &croom, &croom_len) : 0;
	if (custom) {
		if (rr_room_name_valid(croom, croom_len)) {
			rt.kind = (enum rr_route_kind)custom;
			rt.room.p = croom;
			rt.room.n = croom_len;
		} else {
			rt.kind = RR_ROUTE_BAD_ROOM;
		}
	}
	bool draining = atomic_load_explicit(&b->draining, memory_order_relaxed);
	/* GET /ringroom.js: the client library (src/http/ringroom.js) */
	bool js = rt.kind == RR_ROUTE_NONE && req->path.n == 12 &&
		  memcmp(req->path.p, "/ringroom.js", 12) == 0;

	switch (js ? RR_ROUTE_INDEX : rt.kind) {
	case RR_ROUTE_HEALTHZ:
	case RR_ROUTE_METRICS:
	case RR_ROUTE_INDEX: {
		bool get = req->method.n == 3 && memcmp(req->method.p, "GET", 3) == 0;
		bool head = req->method.n == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
		if (!get && !head) {
			rr_conn_reply(core, c, 405, NULL);
			return;
		}
		if (head)
			c->flags |= RR_CF_HEAD; /* the answer goes out without its body */
		if (rt.kind == RR_ROUTE_METRICS && !metrics_allowed(&b->cfg, req)) {
			rr_info("%s: /metrics without the --metrics-token, answering 401", who);
			rr_conn_reply(core, c, 401, NULL);
			return;
		}
		if (js)
			rr_conn_reply(core, c, 200,
				      rr_http_response(200, "text/javascript; charset=utf-8",
						       rr_ringroom_js, rr_ringroom_js_len));
		else
			answer_plain(core, c, rt.kind);
		return;
	}
	case RR_ROUTE_BAD_ROOM:
		rr_info("%s: invalid room name, answering 400", who);
		rr_conn_reply(core, c, 400, NULL);
		return;
	default:
		if (rt.kind == RR_ROUTE_NONE || rt.kind >= RR_GATE_ROUTES ||
		    routes[rt.kind].open == NULL) {
			rr_info("%s: no route for '%.*s', answering 404", who,
				(int)(req->path.n > 128 ? 128 : req->path.n), req->path.p);
			rr_conn_reply(core, c, 404, NULL);
			return;
		}
		break;
	}

	int status = rr_http_upgrade_check(req);
	if (status != 0) {
		rr_info("%s: bad upgrade request, answering %d", who, status);
		rr_conn_reply(core, c, status, NULL);
		return;
	}
	struct rr_identity ident;
	bool has_id = false;
	char protocol[RR_JWT_TOKEN_MAX + 16] = "";
	if (routes[rt.kind].auth) {
		struct rr_frame *reply;
		int st = rr_gate_authenticate(req, who, &ident, &has_id, protocol, sizeof(protocol),
					      &reply);
		if (st != 0) {
			rr_conn_reply(core, c, st, reply);
			return;
		}
	}
	if (!rr_gate_origin_allowed(b->cfg.allow_origin, req->origin)) {
		rr_info("%s: Origin '%.*s' not in --allow-origin, answering 403", who,
			(int)(req->origin.n > 128 ? 128 : req->origin.n), req->origin.p);
		rr_conn_reply(core, c, 403, NULL);
		return;
	}
	if (c->flags & RR_CF_OVER_LIMIT) {
		rr_info("%s: --max-connections or the fixed-file table reached, answering 503",
			who);
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	if (c->flags & RR_CF_OVER_IP) {
		rr_info("%s: --max-connections-per-ip reached, answering 429", who);
		rr_conn_reply(core, c, 429, NULL);
		return;
	}
	if (draining) {
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	char accept[29];
	rr_ws_accept_key(req->ws_key.p, req->ws_key.n, accept);

	/* open_here may feed the extra bytes; c->hs stays ours until it returns */
	struct rr_hs *hs = c->hs;
	struct rr_gate_upgrade u = {
	    .route = rt.kind,
	    .room = rt.room.p,
	    .room_len = rt.room.n,
	    .accept = accept,
	    .id = has_id ? &ident : NULL,
	    .protocol = protocol,
	    .query = req->query.p,
	    .query_len = req->query.n,
	    .extra = hs->buf + head_len,
	    .extra_len = hs->len - head_len,
	};
	unsigned home = core->id;
	if (rt.kind != RR_ROUTE_ECHO)
		home = rr_broker_home(b, rt.room.p, rt.room.n);
	if (home != core->id) {
		if (spread && spread(rt.kind, rt.room.p, rt.room.n))
			keep_here(core, c, home, &u);
		else
			hand_off(core, c, home, &u);
		return;
	}
	c->hs = NULL;
	open_here(core, c, &u);
	free(hs);
}

static void gate_request(struct rr_core *core, struct rr_conn *c)
{
	if (rr_gate_api_conn(c)) {
		rr_gate_api_request(core, c); /* the next request of a keep-alive API client */
		return;
	}
	const struct rr_config *cfg = &core->broker->cfg;
	struct rr_http_limits lim = {.header_bytes_max = cfg->max_header_bytes,
				     .headers_max = cfg->max_headers};
	struct rr_http_req req;

	ssize_t r = rr_http_parse((const char *)c->hs->buf, c->hs->len, &lim, &req);
	if (r == -EAGAIN)
		return; /* the receive is re-armed */
	if (r == -EMSGSIZE) {
		rr_info("conn %u: request head over the limits (%llu bytes, %u headers), "
			"answering 431",
			c->idx, (unsigned long long)cfg->max_header_bytes, cfg->max_headers);
		rr_conn_reply(core, c, 431, NULL);
		return;
	}
	if (r < 0) {
		rr_info("conn %u: malformed HTTP request, answering 400", c->idx);
		rr_conn_reply(core, c, 400, NULL);
		return;
	}
	if (rr_http_is_api(req.path)) {
		rr_gate_api_request(core, c);
		return;
	}
	request_complete(core, c, (size_t)r, &req);
}

static const struct rr_conn_gate gate = {
    .request = gate_request,
    .arrived = gate_arrived,
};

void rr_gate_register(void)
{
	rr_conn_register(&gate);
	rr_gate_api_register();
}
