/*
 * The backend API (/api/…, protocol.md "The backend API"): HTTP/1.1 with
 * keep-alive and pipelining on the same listeners as the WebSockets, one
 * request at a time per connection.
 *
 * DESIGN: the connection stays on the core that accepted it; each request
 * becomes a struct rr_api_call that travels to its room's home core by
 * MSG_RING (the room is touched only there), is run by the route's owner
 * (room/builtin.c for /raw/, the handler runtime for /chat/), and comes back
 * with its answer the same way. GET /api/rooms goes to every core and its
 * answers are joined at the origin. While a call is out, further pipelined
 * requests wait in the connection's request buffer.
 */
#include "gate/api.h"
#include "auth/apikey.h"
#include "auth/jwt.h"
#include "conn/conn.h"
#include "core/log.h"
#include "core/tsan.h"
#include "core/time.h"
#include "http/http.h"
#include "ws/ws.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rr_gate_api_fn *executors[RR_GATE_ROUTES];
static rr_gate_rooms_fn *rooms_lister;

void rr_gate_api(unsigned route, rr_gate_api_fn *fn)
{
	if (route < RR_GATE_ROUTES)
		executors[route] = fn;
}

void rr_gate_rooms(rr_gate_rooms_fn *fn)
{
	rooms_lister = fn;
}

/* A connection speaking the API (conn->ctx). */
struct api_conn {
	uint32_t consumed; /* bytes of the request being answered */
	bool busy;	   /* its call is out */
	bool keep;	   /* keep-alive after this answer */
	bool head;	   /* HEAD: no body */
	bool continued;	   /* "100 Continue" sent for this request */
};

/* The room list's collector, at the origin. */
struct rooms_agg {
	unsigned pending;
	uint32_t conn_idx, conn_gen;
	char *buf;
	size_t len;
	bool failed;
};

static void api_release(struct rr_core *core, struct rr_conn *c)
{
	(void)core;
	free(c->ctx);
	c->ctx = NULL;
}

static const struct rr_conn_owner api_owner = {
    .release = api_release,
};

static struct rr_apikey_store keys;

int rr_gate_api_keys(const char *path)
{
	char err[256];
	if (rr_apikey_store_init(&keys, path, err, sizeof(err)) < 0) {
		rr_err("--api-key-file %s: %s", path, err);
		return -EINVAL;
	}
	rr_gate_cfg.api_keys = &keys;
	rr_gate_cfg.api_key_file = path;
	rr_info("backend API: %u keys from %s", rr_apikey_store_count(&keys), path);
	return 0;
}

void rr_gate_reload(void)
{
	char err[256];
	if (rr_gate_cfg.api_keys == NULL)
		return;
	if (rr_apikey_reload(&keys, rr_gate_cfg.api_key_file, err, sizeof(err)) < 0)
		rr_warn("SIGHUP: --api-key-file %s: %s; keeping the previous %u keys",
			rr_gate_cfg.api_key_file, err, rr_apikey_store_count(&keys));
	else
		rr_info("SIGHUP: %u API keys from %s", rr_apikey_store_count(&keys),
			rr_gate_cfg.api_key_file);
}

void rr_gate_api_fini(void)
{
	if (rr_gate_cfg.api_keys)
		rr_apikey_store_fini(&keys);
	rr_gate_cfg.api_keys = NULL;
}

bool rr_gate_api_enabled(void)
{
	return rr_gate_cfg.api_keys != NULL || rr_gate_cfg.auth_secret_len > 0;
}

static void respond(struct rr_core *core, struct rr_conn *c, int status, const char *body,
		    size_t len, const char *allow)
{
	struct api_conn *a = c->ctx;
	char head[512];
	ssize_t hn = rr_http_api_head(head, sizeof(head), status, len ? "application/json" : NULL,
				      len, allow, a->keep);
	size_t bn = a->head ? 0 : len;
	struct rr_frame *f = hn > 0 ? rr_frame_new((size_t)hn + bn) : NULL;
	if (f == NULL) {
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	memcpy(f->data, head, (size_t)hn);
	if (bn)
		memcpy(f->data + hn, body, bn);
	if (!a->keep) {
		rr_conn_reply(core, c, status, f); /* closes once sent */
		return;
	}
	if (rr_conn_write(core, c, f) < 0)
		rr_conn_kill(core, c);
	rr_frame_unref(f);
	/* the request is done: the next one, pipelined, is in the buffer */
	struct rr_hs *hs = c->hs;
	if (hs && a->consumed <= hs->len) {
		memmove(hs->buf, hs->buf + a->consumed, hs->len - a->consumed);
		hs->len -= a->consumed;
	}
	a->consumed = 0;
	/* idle keep-alive connections are bounded like a handshake */
	rr_conn_set_deadline(core, c, core->now_ms + core->broker->cfg.handshake_timeout_ms);
}

static void respond_error(struct rr_core *core, struct rr_conn *c, int status, const char *code,
			  const char *message, const char *allow)
{
	char body[512];
	ssize_t n = rr_http_api_error_body(body, sizeof(body), code, message);
	respond(core, c, status, body, n > 0 ? (size_t)n : 0, allow);
}

/* ---- calls between cores -------------------------------------------------- */

static void run_call(struct rr_core *core, struct rr_api_call *call)
{
	if (call->agg) {
		char *out = NULL;
		size_t len = 0;
		if (rooms_lister)
			rooms_lister(core, &out, &len);
		call->status = 200;
		call->answer = out;
		call->answer_len = len;
		rr_gate_api_done(core, call, 200, NULL, 0);
		return;
	}
	rr_gate_api_fn *fn = call->route < RR_GATE_ROUTES ? executors[call->route] : NULL;
	if (fn == NULL) {
		rr_gate_api_error(core, call, 404, "not_found", "no such room type");
		return;
	}
	fn(core, call);
}

static void post(struct rr_core *core, unsigned dst, struct rr_api_call *call, enum rr_ud_kind kind)
{
	struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
	RR_HB_RELEASE(call); /* the other core reads it once the CQE arrives */
	io_uring_prep_msg_ring(sqe, core->broker->cores[dst].ring_fd, 0, rr_ud_ptr(kind, call), 0);
	/* only a failure comes back (the target ring's queue is full) */
	io_uring_sqe_set_data64(
	    sqe, rr_ud_ptr(kind == RR_UD_API_IN ? RR_UD_API_SENT : RR_UD_API_BACK_FAILED, call));
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

static void send_call(struct rr_core *core, unsigned home, struct rr_api_call *call)
{
	call->origin = core->id;
	if (home == core->id)
		run_call(core, call);
	else
		post(core, home, call, RR_UD_API_IN);
}

static void answer(struct rr_core *core, struct rr_api_call *call);

void rr_gate_api_done(struct rr_core *core, struct rr_api_call *call, int status, const char *json,
		      size_t len)
{
	call->status = status;
	if (json && len) {
		call->answer = malloc(len);
		if (call->answer) {
			memcpy(call->answer, json, len);
			call->answer_len = len;
		} else {
			call->status = 503;
		}
	}
	if (call->origin == core->id)
		answer(core, call);
	else
		post(core, call->origin, call, RR_UD_API_OUT);
}

void rr_gate_api_error(struct rr_core *core, struct rr_api_call *call, int status, const char *code,
		       const char *message)
{
	char body[512];
	ssize_t n = rr_http_api_error_body(body, sizeof(body), code, message);
	rr_gate_api_done(core, call, status, body, n > 0 ? (size_t)n : 0);
}

static void call_free(struct rr_api_call *call)
{
	free(call->answer);
	free(call);
}

static struct rr_conn *call_conn(struct rr_core *core, uint32_t idx, uint32_t gen)
{
	struct rr_conn *c = rr_conn_lookup(core, rr_ud_conn(RR_UD_RECV, gen, idx));
	return c && c->ctx && c->owner == &api_owner ? c : NULL;
}

static void api_next(struct rr_core *core, struct rr_conn *c);

/* A call came back to the connection's core. */
static void answer(struct rr_core *core, struct rr_api_call *call)
{
	struct rooms_agg *agg = call->agg;
	struct rr_conn *c;
	if (agg) {
		if (call->answer_len) {
			char *nb = realloc(agg->buf, agg->len + call->answer_len + 2);
			if (nb == NULL) {
				agg->failed = true;
			} else {
				agg->buf = nb;
				if (agg->len)
					agg->buf[agg->len++] = ',';
				memcpy(agg->buf + agg->len, call->answer, call->answer_len);
				agg->len += call->answer_len;
			}
		}
		call_free(call);
		if (--agg->pending > 0)
			return;
		c = call_conn(core, agg->conn_idx, agg->conn_gen);
		if (c) {
			size_t n = agg->len + 16;
			char *body = agg->failed ? NULL : malloc(n);
			if (body) {
				int bl = snprintf(body, n, "{\"rooms\":[%.*s]}", (int)agg->len,
						  agg->buf ? agg->buf : "");
				respond(core, c, 200, body, (size_t)bl, NULL);
			} else {
				respond_error(core, c, 503, "unavailable", "out of memory", NULL);
			}
			free(body);
			((struct api_conn *)c->ctx)->busy = false;
			api_next(core, c);
		}
		free(agg->buf);
		free(agg);
		return;
	}
	c = call_conn(core, call->conn_idx, call->conn_gen);
	if (c) {
		respond(core, c, call->status, call->answer, call->answer_len, NULL);
		struct api_conn *a = c->ctx;
		if (a)
			a->busy = false;
	}
	call_free(call);
	if (c && c->ctx)
		api_next(core, c);
}

static void on_call_in(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	struct rr_api_call *call = rr_ud_to_ptr(io_uring_cqe_get_data64(cqe));
	RR_HB_ACQUIRE(call); /* published by the connection's core through MSG_RING */
	run_call(core, call);
}

static void on_call_back(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	struct rr_api_call *call = rr_ud_to_ptr(io_uring_cqe_get_data64(cqe));
	RR_HB_ACQUIRE(call); /* published by the room's core through MSG_RING */
	answer(core, call);
}

/* A MSG_RING that did not arrive (its target's completion queue is full):
 * a call that never left is answered 503 here; an answer that can't get back
 * is dropped (its connection's keep-alive timer closes it). */
static void on_post_failed(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	struct rr_api_call *call = rr_ud_to_ptr(io_uring_cqe_get_data64(cqe));
	RR_HB_ACQUIRE(call); /* ours again: it never left */
	rr_warn("backend API: a call between cores was not delivered: %s", strerror(-cqe->res));
	if (rr_ud_kind(io_uring_cqe_get_data64(cqe)) == RR_UD_API_SENT) {
		call->status = 503;
		answer(core, call);
	} else {
		call_free(call);
	}
}

/* ---- requests --------------------------------------------------------------- */

/* The caller's rights: 0 (allowed), 401 or 403. */
static int authorize(const struct rr_http_req *req, enum rr_api_perm need, const char **why)
{
	struct rr_http_str tok;
	if (!rr_http_bearer(req->authorization, &tok)) {
		*why = "an Authorization: Bearer key or token is required";
		return 401;
	}
	if (rr_gate_cfg.api_keys && rr_apikey_store_check(rr_gate_cfg.api_keys, tok.p, tok.n))
		return 0; /* a key: every right */
	if (rr_gate_cfg.auth_secret_len == 0 || tok.n > RR_JWT_TOKEN_MAX) {
		*why = "unknown key";
		return 401;
	}
	struct rr_jwt_claims cl;
	int rc = rr_jwt_verify(tok.p, tok.n, rr_gate_cfg.auth_secret, rr_gate_cfg.auth_secret_len,
			       rr_wall_ms() / 1000, &cl);
	if (rc < 0) {
		*why = "unknown key or invalid token";
		return 401;
	}
	if (cl.perm_admin || (need == RR_API_PERM_PUBLISH && cl.perm_publish))
		return 0;
	*why = need == RR_API_PERM_ADMIN ? "the token lacks the admin permission"
					 : "the token lacks the publish permission";
	return 403;
}

/* Build the call of a routed, authorized request. NULL: answered already. */
static struct rr_api_call *make_call(struct rr_core *core, struct rr_conn *c,
				     const struct rr_http_req *req, const struct rr_api_route *rt)
{
	struct rr_api_call *call = calloc(1, sizeof(*call) + req->body.n);
	if (call == NULL) {
		respond_error(core, c, 503, "unavailable", "out of memory", NULL);
		return NULL;
	}
	call->kind = rt->kind;
	call->route = rt->kind == RR_API_RAW_PUBLISH ? RR_ROUTE_RAW : RR_ROUTE_CHAT;
	call->room_len = rt->room.n;
	if (rt->room.n) /* none for /api/rooms */
		memcpy(call->room, rt->room.p, rt->room.n);
	call->conn_idx = c->idx;
	call->conn_gen = c->gen;
	if (req->body.n)
		memcpy(call->data, req->body.p, req->body.n);
	call->body = call->data;
	call->body_len = req->body.n;
	call->text = rr_http_content_is_text(req->content_type);
	if (rt->kind == RR_API_CHAT_HISTORY) {
		uint64_t v;
		int rc = rr_http_query_u64(req->query, "beforeId", UINT64_MAX / 2, &v);
		call->before_id = rc == 0 ? v : 0;
		int rc2 = rr_http_query_u64(req->query, "limit", 100, &v);
		call->limit = rc2 == 0 ? (uint32_t)v : 50;
		if (rc == -EINVAL || rc2 == -EINVAL || (rc2 == 0 && v == 0)) {
			free(call);
			respond_error(core, c, 400, "invalid_format",
				      "beforeId must be a number, limit 1..100", NULL);
			return NULL;
		}
	}
	if (rt->kind == RR_API_CHAT_KICK) {
		ssize_t n =
		    rr_http_pct_decode(rt->user_id, call->user_id, sizeof(call->user_id) - 1);
		if (n <= 0) {
			free(call);
			respond_error(core, c, 400, "invalid_format", "bad userId", NULL);
			return NULL;
		}
		call->user_id[n] = '\0';
	}
	if (call->kind == RR_API_RAW_PUBLISH && call->text &&
	    !rr_utf8_valid(call->body, call->body_len)) {
		free(call);
		respond_error(core, c, 400, "invalid_format", "a text body must be UTF-8", NULL);
		return NULL;
	}
	return call;
}

/* Take the next request in the buffer, if whole, unless one is out. */
static void api_next(struct rr_core *core, struct rr_conn *c)
{
	const struct rr_config *cfg = &core->broker->cfg;
	struct rr_http_limits lim = {.header_bytes_max = cfg->max_header_bytes,
				     .headers_max = cfg->max_headers};
	for (;;) {
		struct api_conn *a = c->ctx;
		if (a == NULL || a->busy || c->hs == NULL || c->hs->len == 0 ||
		    c->state != RR_CONN_HS)
			return;
		struct rr_http_req req;
		ssize_t r = rr_http_parse_request((const char *)c->hs->buf, c->hs->len, &lim,
						  cfg->max_message_bytes, &req);
		if (r == -EAGAIN) {
			if (req.head_bytes && req.expect_continue && !a->continued) {
				struct rr_frame *f = rr_frame_new(sizeof(RR_HTTP_100_CONTINUE) - 1);
				if (f) {
					memcpy(f->data, RR_HTTP_100_CONTINUE, f->len);
					rr_conn_write(core, c, f);
					rr_frame_unref(f);
				}
				a->continued = true;
			}
			return;
		}
		a->continued = false;
		a->head = false;
		if (r < 0) {
			int st = rr_http_error_status(r);
			a->keep = false;
			rr_info("conn %u: bad API request, answering %d", c->idx, st);
			respond_error(core, c, st, "invalid_format", rr_http_status_text(st), NULL);
			return;
		}
		a->consumed = (uint32_t)r;
		a->keep = rr_http_keep_alive(&req) &&
			  !atomic_load_explicit(&core->broker->draining, memory_order_relaxed);
		struct rr_api_route rt = rr_http_api_route(req.method, req.path);
		a->head = rt.head;
		if (!rr_gate_api_enabled() || rt.kind == RR_API_NONE) {
			respond_error(core, c, 404, "not_found", "no such resource", NULL);
			continue;
		}
		if (rt.status) {
			respond_error(core, c, rt.status,
				      rt.status == 405 ? "method_not_allowed" : "invalid_format",
				      rr_http_status_text(rt.status),
				      rt.status == 405 ? rt.allow : NULL);
			continue;
		}
		const char *why = NULL;
		int st = authorize(&req, rt.perm, &why);
		if (st) {
			char who[64];
			rr_conn_peer(c, who, sizeof(who));
			rr_info("conn %u (%s): API request refused (%d): %s", c->idx, who, st, why);
			respond_error(core, c, st, st == 401 ? "unauthorized" : "forbidden", why,
				      NULL);
			continue;
		}
		struct rr_api_call *call = make_call(core, c, &req, &rt);
		if (call == NULL)
			continue;
		a->busy = true;
		RR_STAT_INC(core, api_requests);
		if (rt.kind == RR_API_ROOMS) {
			struct rooms_agg *agg = calloc(1, sizeof(*agg));
			if (agg == NULL) {
				free(call);
				a->busy = false;
				respond_error(core, c, 503, "unavailable", "out of memory", NULL);
				continue;
			}
			unsigned n = core->broker->ncores;
			agg->pending = n;
			agg->conn_idx = c->idx;
			agg->conn_gen = c->gen;
			call->agg = agg;
			for (unsigned i = 1; i < n; i++) {
				struct rr_api_call *ci = malloc(sizeof(*ci));
				if (ci == NULL) {
					agg->failed = true;
					agg->pending--;
					continue;
				}
				memcpy(ci, call, sizeof(*ci));
				send_call(core, (core->id + i) % n, ci);
			}
			send_call(core, core->id, call);
		} else {
			send_call(core, rr_broker_home(core->broker, call->room, call->room_len),
				  call);
		}
	}
}

void rr_gate_api_request(struct rr_core *core, struct rr_conn *c)
{
	if (c->owner != &api_owner) {
		struct api_conn *a = calloc(1, sizeof(*a));
		if (a == NULL) {
			rr_conn_reply(core, c, 503, NULL);
			return;
		}
		c->owner = &api_owner;
		c->ctx = a;
		c->flags |= RR_CF_BODY;
	}
	api_next(core, c);
}

bool rr_gate_api_conn(const struct rr_conn *c)
{
	return c->owner == &api_owner;
}

void rr_gate_api_register(void)
{
	rr_reactor_on(RR_UD_API_IN, on_call_in);
	rr_reactor_on(RR_UD_API_OUT, on_call_back);
	rr_reactor_on(RR_UD_API_SENT, on_post_failed);
	rr_reactor_on(RR_UD_API_BACK_FAILED, on_post_failed);
}
