/*
 * The runtime's rooms and members: a handler room's state and hibernation,
 * a connection's wait for its room and session, its open (join, 101,
 * open()), its messages, and its leaving.
 */
#include "rt/rt.h"
#include "core/assert.h"
#include "core/log.h"
#include "core/time.h"
#include "http/http.h"
#include "ws/ws.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool ct_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;
	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

/* ---- rooms ---------------------------------------------------------------- */

static void member_open(struct rr_core *core, struct rr_conn *c);
static void api_room_ready(struct rr_core *core, struct rr_room *r);

static void room_ready(struct rr_core *core, struct rr_room *r)
{
	struct rr_room_rt *rt = rt_of(r);
	r->busy++; /* opens and alarms below may empty the room */
	/* a failed load stays failed: its waiters get 503, its alarms retry,
	 * its API calls get storage_unavailable (it used to become READY here,
	 * opening members on a log position that was never read) */
	if (rt->load != RR_LOAD_FAILED)
		rt->load = RR_LOAD_READY;
	if (rt->load == RR_LOAD_READY && !rt->initialised) {
		rt->initialised = true;
		if (rt->h->init && rt->h->init(r) < 0) {
			rr_warn("room '%s': %s init failed", r->name, rt->h->name);
			rt->initialised = false;
			rt->load = RR_LOAD_FAILED;
		}
	}
	if (rt->initialised)
		rr_rt_nodes_room_ready(r); /* it can say hello to the other nodes now */
	struct rr_conn *w = rt->waiters;
	rt->waiters = NULL;
	while (w) {
		struct rr_conn *next = cx(w)->next_waiter;
		cx(w)->next_waiter = NULL;
		if (rt->load == RR_LOAD_READY) {
			member_open(core, w);
		} else {
			cx(w)->waiting_room = NULL; /* detached above */
			rr_conn_reply(core, w, 503, NULL);
		}
		w = next;
	}
	if (rr_rt_alarm_hooks.room_ready)
		rr_rt_alarm_hooks.room_ready(core, r);
	api_room_ready(core, r);
	if (rt->load == RR_LOAD_FAILED)
		rt->load = RR_LOAD_NONE; /* the next connection tries again */
	r->busy--;
	rr_room_release_if_empty(core, r);
}

/* The room's log position arrived. */
static void on_loaded(struct rr_core *core, struct sreq *s)
{
	struct rr_room *r = s->room;
	struct rr_room_rt *rt = rt_of(r);
	if (s->req.res == 0) {
		memcpy(rt->epoch, s->req.out.epoch, sizeof(rt->epoch));
		rt->last_id = s->req.out.last_id;
		rt->first_id = s->req.out.first_id;
		if (rr_rt_clog_wanted(r)) {
			int rc = rr_rt_clog_start(core, r);
			if (rc == 0)
				return; /* ready once the cluster's log is here */
			rr_warn("room '%s': the cluster's log: %s", r->name, strerror(-rc));
			rt->load = RR_LOAD_FAILED;
		}
	} else {
		rr_warn("room '%s': loading its log failed: %s", r->name, strerror(-s->req.res));
		rt->load = RR_LOAD_FAILED;
	}
	room_ready(core, r);
}

/* Find or create a handler room with its runtime state. */
struct rr_room *rr_rt_room_get(struct rr_core *core, const struct rr_handler *h, unsigned route,
			       const char *name, size_t name_len)
{
	struct rr_room *r = rr_room_get(core, (uint8_t)route, name, name_len);
	if (r == NULL || r->ops)
		return r;
	struct rr_room_rt *rt = calloc(1, sizeof(*rt));
	if (rt)
		rt->state = h->state_size ? calloc(1, h->state_size) : NULL;
	if (rt == NULL || (h->state_size && rt->state == NULL)) {
		free(rt);
		rr_room_release_if_empty(core, r);
		return NULL;
	}
	rt->h = h;
	rt->room = r;
	int n = snprintf(rt->store_name, sizeof(rt->store_name), "%.64s:%s",
			 h->name ? h->name : "handler", r->name);
	rt->store_name_len = (uint32_t)n;
	r->owner = rt;
	r->ops = &rr_rt_room_ops;
	return r;
}

/* Make a room ready for work that isn't a connection (an alarm). */
void rr_rt_room_wake(struct rr_core *core, struct rr_room *r)
{
	struct rr_room_rt *rt = rt_of(r);
	rr_timer_cancel(&core->wheel, &rt->idle_timer);
	rt->evict_now = false;
	if (rt->load != RR_LOAD_NONE)
		return;
	if (!rt->h->durable) {
		room_ready(core, r);
		return;
	}
	rt->load = RR_LOAD_LOADING;
	if (rr_rt_room_load(core, r, on_loaded) < 0) {
		rt->load = RR_LOAD_FAILED;
		room_ready(core, r);
	}
}

static bool rt_busy(const struct rr_room_rt *rt)
{
	return rt->ops_inflight > 0 || rt->waiters != NULL || rt->load == RR_LOAD_LOADING ||
	       rt->pending_alarms != NULL || rt->api_waiters != NULL || rt->pinned ||
	       rr_rt_clog_busy(rt);
}

static void rt_room_free(struct rr_core *core, struct rr_room *r)
{
	struct rr_room_rt *rt = rt_of(r);
	rr_timer_cancel(&core->wheel, &rt->idle_timer);
	rr_rt_clog_stop(core, rt);
	if (rt->pending_alarms)
		rr_rt_alarm_hooks.free_pending(rt->pending_alarms);
	if (rt->initialised && rt->h->evict)
		rt->h->evict(r);
	free(rt->state);
	free(rt->auto_req);
	free(rt->auto_resp);
	free(rt);
	r->owner = NULL;
}

static void room_idle_fn(struct rr_timer *t, uint64_t now_ms)
{
	struct rr_room_rt *rt = rr_container_of(t, struct rr_room_rt, idle_timer);
	(void)now_ms;
	rt->evict_now = true;
	rr_room_release_if_empty(rr_core_current(), rt->room);
}

/* A handler room has no member: hibernate it. True when it may be freed now. */
static bool rt_room_empty(struct rr_core *core, struct rr_room *r)
{
	struct rr_room_rt *rt = rt_of(r);
	if (rt_busy(rt))
		return false;
	if (rt->evict_now || rr_handler_cfg.room_idle_evict_ms == 0 || core->draining)
		return true;
	if (!rr_timer_armed(&rt->idle_timer)) {
		rr_timer_init(&rt->idle_timer, room_idle_fn);
		rr_timer_set(&core->wheel, &rt->idle_timer,
			     core->now_ms + rr_handler_cfg.room_idle_evict_ms);
	}
	return false;
}

/* ---- members -------------------------------------------------------------- */

/* An anonymous user's display name (?name=): 1..64 bytes of UTF-8 without
 * control characters (it is echoed to every member). */
static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || !rr_utf8_valid((const uint8_t *)s, n))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool query_get(const struct rr_conn_ext *x, const char *name, char *out, size_t cap)
{
	struct rr_http_str q = {x->query, x->query_len}, v;
	if (!rr_http_query_get(q, name, &v))
		return false;
	ssize_t n = rr_http_pct_decode(v, out, cap - 1);
	if (n < 0)
		return false;
	out[n] = '\0';
	return true;
}

/* Join, 101, open(): one step on the room's core. */
static void member_open(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conn_ext *x = cx(c);
	struct rr_room *r = x->waiting_room;
	const struct rr_handler *h = rt_of(r)->h;

	x->waiting_room = NULL;
	if (c->state != RR_CONN_WAIT) {
		rr_room_release_if_empty(core, r);
		return;
	}
	if (x->session[0] == '\0')
		rr_rt_new_session(x);
	int rc = rr_room_join(core, r, c);
	if (rc < 0) {
		rr_info("conn %u: room '%s' is full (%u members), answering 503", c->idx, r->name,
			r->count);
		rr_conn_reply(core, c, 503, NULL);
		rr_room_release_if_empty(core, r);
		return;
	}
	if (r->count == 1)
		rr_room_net_watch(core, r); /* the node's first member: hear the others */
	int arc = rr_conn_upgrade(core, c, x->accept, x->protocol);
	free(x->protocol);
	x->protocol = NULL;
	if (arc < 0)
		return;
	struct rr_open_info info = {
	    .query = x->query,
	    .query_len = x->query_len,
	    .user_id = x->id.user_id,
	    .user_name = x->id.user_name,
	    .perm_read = x->id.perm_read,
	    .perm_write = x->id.perm_write,
	    .token_exp_s = x->id.exp_s,
	    .resumed = x->resumed,
	    .resumed_last_id = x->resumed_last_id,
	};
	x->opened = true;
	r->busy++; /* open() may close the last member: the room stays */
	int code = h->open ? h->open(r, c, &info) : 0;
	r->busy--;
	if (code == 0 && x->resumed && x->resume_token) /* the old token stops working */
		rr_rt_sha256(x->resume_token, strlen(x->resume_token), x->resume_hash);
	free(x->resume_token);
	x->resume_token = NULL;
	free(x->query);
	x->query = NULL;
	x->query_len = 0;
	if (code != 0) {
		rr_conn_close(core, c, (uint16_t)code, "refused by the room");
		return;
	}
	/* a new session, or a resumed one with its rotated token: saved now */
	if (x->session_new || x->resumed)
		rr_rt_session_save(core, c);
	x->session_new = false;
	if (x->early) {
		uint8_t *early = x->early;
		size_t n = x->early_len;
		x->early = NULL;
		x->early_len = 0;
		rr_conn_feed(core, c, early, n);
		free(early);
	} else {
		rr_conn_feed(core, c, NULL, 0); /* TLS records that arrived meanwhile */
	}
}

/* The stored session ss matches what the connection presented (its room,
 * the hash of its resume token, not connected now): take its state. */
static bool session_resume(struct rr_conn_ext *x, struct rr_room *r,
			   const struct rr_store_session *ss, const uint8_t h[32])
{
	if (ss->room_len != rt_of(r)->store_name_len ||
	    memcmp(ss->room, rt_of(r)->store_name, ss->room_len) != 0 ||
	    !ct_equal(h, ss->resume_hash, 32) || rr_room_member_by_session(r, x->session) != NULL)
		return false;
	x->resumed = true;
	x->resumed_last_id = ss->last_id;
	x->last_id = ss->last_id;
	free(x->resume_token); /* the presented one: used */
	x->resume_token = NULL;
	/* single use: a fresh token for the welcome; its hash replaces the
	 * stored one only once open() accepts the session (member_open), so a
	 * resume the handler refuses (another user's token: 1008) does not use
	 * the token up */
	rr_rt_new_session(x);
	memcpy(x->resume_hash, ss->resume_hash, 32);
	if (ss->attachment_len) {
		x->attachment = malloc(ss->attachment_len);
		if (x->attachment) {
			memcpy(x->attachment, ss->attachment, ss->attachment_len);
			x->attachment_len = ss->attachment_len;
		}
	}
	if (ss->tags_len) {
		x->tags = malloc(ss->tags_len);
		if (x->tags) {
			memcpy(x->tags, ss->tags, ss->tags_len);
			x->tags_len = ss->tags_len;
			for (uint32_t i = 0; i < ss->tags_len; i++)
				x->ntags += ss->tags[i] == '\0';
		}
	}
	return true;
}

/* The session is settled (resumed, or a new one): open now or once the
 * room is loaded. */
static void session_settled(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conn_ext *x = cx(c);
	struct rr_room *r = x->waiting_room;
	if (!x->resumed) {
		/* unknown, expired, another room's, or a wrong token: a new
		 * session (the client can't tell which: no oracle) */
		free(x->resume_token);
		x->resume_token = NULL;
		x->session[0] = '\0';
	}
	if (rt_of(r)->load == RR_LOAD_READY) {
		member_open(core, c);
		return;
	}
	x->next_waiter = rt_of(r)->waiters;
	rt_of(r)->waiters = c;
	if (rt_of(r)->load == RR_LOAD_NONE) {
		rt_of(r)->load = RR_LOAD_LOADING;
		if (rr_rt_room_load(core, r, on_loaded) < 0) {
			rt_of(r)->load = RR_LOAD_FAILED;
			room_ready(core, r);
		}
	}
}

static void resume_hash_of(const struct rr_conn_ext *x, uint8_t h[32])
{
	rr_rt_sha256(x->resume_token ? x->resume_token : "",
		     x->resume_token ? strlen(x->resume_token) : 0, h);
}

/* The record that decides a resume in cluster mode (csession.c). */
static void on_cluster_session(struct rr_core *core, struct rr_conn *c, uint64_t gen,
			       const struct rr_store_session *ss)
{
	if (c->gen != gen || c->state != RR_CONN_WAIT || cx(c) == NULL)
		return; /* gone meanwhile */
	struct rr_conn_ext *x = cx(c);
	uint8_t h[32];
	resume_hash_of(x, h);
	if (ss)
		session_resume(x, x->waiting_room, ss, h);
	session_settled(core, c);
}

static void on_session_get(struct rr_core *core, struct sreq *s)
{
	struct rr_conn *c = s->conn;
	if (c->gen != s->conn_gen || c->state != RR_CONN_WAIT || cx(c) == NULL)
		return; /* gone meanwhile */
	struct rr_conn_ext *x = cx(c);
	struct rr_room *r = x->waiting_room;
	uint8_t h[32];
	resume_hash_of(x, h);
	bool presented = x->resume_token && x->resume_token[0] != '\0';
	const struct rr_store_session *local = s->req.res == 0 ? &s->req.out.session : NULL;
	/* cluster mode: the cluster's record decides (the session may have
	 * been made, or resumed last, on another node) */
	if (presented && rr_rt_csession_get(core, c, local, on_cluster_session) == 0)
		return;
	if (presented && local)
		session_resume(x, r, local, h);
	session_settled(core, c);
}

/* The gate accepted an upgrade for a handler route, on its home core. */
static void rt_open(struct rr_core *core, struct rr_conn *c, const struct rr_gate_upgrade *u)
{
	unsigned route = u->route;
	const char *name = u->room, *protocol = u->protocol, *query = u->query;
	size_t name_len = u->room_len, query_len = u->query_len, extra_len = u->extra_len;
	const uint8_t *extra = u->extra;
	const struct rr_identity *id = u->id;
	const struct rr_handler *h = rr_handler_for_route(route);
	if (h == NULL) {
		rr_conn_reply(core, c, 404, NULL);
		return;
	}
	struct rr_conn_ext *x = calloc(1, sizeof(*x));
	if (x == NULL) {
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	c->owner = &rr_rt_owner;
	c->ctx = x;
	memcpy(x->accept, u->accept, 29);
	if (protocol && protocol[0])
		x->protocol = strdup(protocol);
	if (id) {
		x->id = *id;
	} else {
		static __thread uint64_t anon_seq;
		snprintf(x->id.user_id, sizeof(x->id.user_id), "anon-%u-%llu", core->id,
			 (unsigned long long)++anon_seq);
		snprintf(x->id.user_name, sizeof(x->id.user_name), "%s", x->id.user_id);
		x->id.perm_read = x->id.perm_write = true;
	}
	if (query_len) {
		x->query = malloc(query_len);
		if (x->query) {
			memcpy(x->query, query, query_len);
			x->query_len = (uint32_t)query_len;
		}
	}
	char dname[65];
	if (id == NULL && x->query && query_get(x, "name", dname, sizeof(dname)) && name_ok(dname))
		snprintf(x->id.user_name, sizeof(x->id.user_name), "%s", dname);
	if (extra_len) {
		x->early = malloc(extra_len);
		if (x->early) {
			memcpy(x->early, extra, extra_len);
			x->early_len = (uint32_t)extra_len;
		}
	}
	struct rr_room *r = rr_rt_room_get(core, h, route, name, name_len);
	if (r == NULL) {
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	struct rr_room_rt *rt = rt_of(r);
	rr_timer_cancel(&core->wheel, &rt->idle_timer);
	rt->evict_now = false;
	c->state = RR_CONN_WAIT;
	x->waiting_room = r;

	/* a session to resume? look it up first */
	char sid[64], token[128];
	if (h->durable && rr_handler_cfg.store && query_get(x, "session", sid, sizeof(sid)) &&
	    query_get(x, "resume", token, sizeof(token)) && strlen(sid) == RR_SESSION_ID_LEN) {
		struct sreq *s = rr_rt_sreq_new(core, r, RR_STORE_SESSION_GET, SR_SESSION_GET,
						RR_SESSION_ID_LEN);
		x->resume_token = strdup(token);
		if (s && x->resume_token) {
			memcpy(x->session, sid, RR_SESSION_ID_LEN + 1);
			memcpy(s->data + rt->store_name_len, sid, RR_SESSION_ID_LEN);
			s->req.key = s->data + rt->store_name_len;
			s->req.key_len = RR_SESSION_ID_LEN;
			s->conn = c;
			s->conn_gen = c->gen;
			s->done = on_session_get;
			if (rr_rt_sreq_submit(core, s) == 0) {
				if (rt->load == RR_LOAD_NONE && h->durable) {
					rt->load = RR_LOAD_LOADING;
					if (rr_rt_room_load(core, r, on_loaded) < 0)
						rt->load = RR_LOAD_NONE;
				}
				return; /* on_session_get continues */
			}
		} else {
			free(s);
		}
		free(x->resume_token);
		x->resume_token = NULL;
	}
	if (rt->load == RR_LOAD_READY) {
		member_open(core, c);
		return;
	}
	x->next_waiter = rt->waiters;
	rt->waiters = c;
	if (rt->load == RR_LOAD_LOADING)
		return;
	if (!h->durable) {
		room_ready(core, r);
		return;
	}
	rt->load = RR_LOAD_LOADING;
	int rc = rr_rt_room_load(core, r, on_loaded);
	if (rc < 0) {
		rr_warn("room '%s': can't load (%s)", r->name, strerror(-rc));
		rt->load = RR_LOAD_FAILED;
		room_ready(core, r);
	}
}

static bool auto_response(struct rr_core *core, struct rr_conn *c, struct rr_room_rt *rt,
			  const uint8_t *p, size_t n)
{
	if (rt->auto_req == NULL)
		return false;
	bool hit;
	if (!rt->auto_match_type) {
		hit = n == rt->auto_req_len && memcmp(p, rt->auto_req, n) == 0;
	} else {
		/* {"type":"<req>"} with any spacing and nothing else: a
		 * heartbeat; anything richer goes to the handler */
		size_t i = 0;
#define SKIP_WS                                                                                    \
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))             \
	i++
		SKIP_WS;
		hit = false;
		if (i < n && p[i] == '{') {
			i++;
			SKIP_WS;
			if (n - i >= 6 && memcmp(p + i, "\"type\"", 6) == 0) {
				i += 6;
				SKIP_WS;
				if (i < n && p[i] == ':') {
					i++;
					SKIP_WS;
					if (n - i >= rt->auto_req_len + 2 && p[i] == '"' &&
					    memcmp(p + i + 1, rt->auto_req, rt->auto_req_len) ==
						0 &&
					    p[i + 1 + rt->auto_req_len] == '"') {
						i += rt->auto_req_len + 2;
						SKIP_WS;
						hit = i + 1 == n && p[i] == '}';
					}
				}
			}
		}
#undef SKIP_WS
	}
	if (!hit)
		return false;
	char out[512];
	size_t o = 0;
	uint64_t now = rr_wall_ms();
	for (const char *s = rt->auto_resp; *s && o < sizeof(out) - 24; s++) {
		if (s[0] == '%' && s[1] == 'T') {
			o += (size_t)snprintf(out + o, sizeof(out) - o, "%llu",
					      (unsigned long long)now);
			s++;
		} else {
			out[o++] = *s;
		}
	}
	if (cx(c))
		cx(c)->auto_resp_ms = now;
	struct rr_frame *f = rr_frame_ws(RR_WS_TEXT, out, o);
	if (f) {
		rr_conn_send_bulk(core, c, f); /* an answer to the member, not the room */
		rr_frame_unref(f);
	}
	return true;
}

static void rt_message(struct rr_core *core, struct rr_conn *c, uint8_t opcode, uint8_t *p,
		       size_t n)
{
	struct rr_room *r = c->room;
	struct rr_room_rt *rt = rt_of(r);
	if (rt == NULL)
		return;
	if (opcode == RR_WS_TEXT && auto_response(core, c, rt, p, n))
		return;
	r->busy++; /* whatever the handler closes leaves in the settle step */
	rt->h->message(r, c, opcode, p, n);
	r->busy--;
}

/* First pass of a close: out of the waiters or the member list. The room
 * stays (busy) until the close callbacks have run. */
static void rt_detach(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conn_ext *x = cx(c);
	if (x == NULL)
		return;
	struct rr_room *w = x->waiting_room;
	if (w) {
		struct rr_conn **pp = &rt_of(w)->waiters;
		while (*pp && *pp != c)
			pp = &cx(*pp)->next_waiter;
		if (*pp)
			*pp = x->next_waiter;
		x->next_waiter = NULL;
		x->waiting_room = NULL;
		rr_room_release_if_empty(core, w);
	}
	struct rr_room *r = c->room;
	if (r) {
		r->busy++;
		rr_room_detach(core, c);
		if (r->count == 0)
			rr_room_net_watch(core, r); /* the node's last member left */
		x->left_room = r;
	}
}

static void rt_leave(struct rr_core *core, struct rr_conn *c, uint16_t code, bool clean)
{
	struct rr_conn_ext *x = cx(c);
	struct rr_room *r = x ? x->left_room : NULL;
	if (r == NULL)
		return;
	struct rr_room_rt *rt = rt_of(r);
	if (x->opened) {
		if (rt->h->close)
			rt->h->close(r, c, code, clean);
		rr_rt_session_save(core, c);
	}
	x->left_room = NULL;
	r->busy--;
	rr_room_release_if_empty(core, r);
}

static void rt_writable(struct rr_core *core, struct rr_conn *c)
{
	struct rr_room *r = c->room;
	struct rr_room_rt *rt = rt_of(r);
	(void)core;
	if (rt == NULL || rt->h->writable == NULL)
		return;
	r->busy++;
	rt->h->writable(r, c);
	r->busy--;
}

static void rt_release(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conn_ext *x = cx(c);
	if (x == NULL)
		return;
	if (x->left_room) {
		/* detached at exit without its close callbacks */
		x->left_room->busy--;
		rr_room_release_if_empty(core, x->left_room);
	}
	free(x->resume_token);
	free(x->query);
	free(x->protocol);
	free(x->early);
	free(x->attachment);
	free(x->tags);
	free(x);
	c->ctx = NULL;
}

struct rr_rt_alarm_hooks rr_rt_alarm_hooks;

/* ---- the backend API -------------------------------------------------------- */

static void api_run(struct rr_core *core, struct rr_room *r, struct rr_api_call *call)
{
	struct rr_room_rt *rt = rt_of(r);
	static const enum rr_api_op ops[] = {
	    [RR_API_CHAT_PUBLISH] = RR_API_OP_PUBLISH,
	    [RR_API_CHAT_HISTORY] = RR_API_OP_HISTORY,
	    [RR_API_CHAT_PRESENCE] = RR_API_OP_PRESENCE,
	    [RR_API_CHAT_KICK] = RR_API_OP_KICK,
	};
	struct rr_api_request req = {
	    .op = call->kind < sizeof(ops) / sizeof(ops[0]) ? ops[call->kind] : 0,
	    .body = call->body,
	    .body_len = call->body_len,
	    .before_id = call->before_id,
	    .limit = call->limit,
	    .user_id = call->user_id,
	};
	if (rt->load != RR_LOAD_READY) {
		rr_gate_api_error(core, call, 503, "storage_unavailable",
				  "the room could not be loaded");
		return;
	}
	if (rr_rt_nodes_hold_api(core, r, call))
		return; /* a presence list waits for the other nodes' answers */
	r->busy++; /* what the handler closes leaves in the settle step */
	int rc = req.op ? rt->h->api(r, call, &req) : -EINVAL;
	r->busy--;
	if (rc < 0)
		rr_gate_api_error(core, call, 503, "storage_unavailable", strerror(-rc));
}

static void api_room_ready(struct rr_core *core, struct rr_room *r)
{
	struct rr_room_rt *rt = rt_of(r);
	struct rr_api_call *call = rt->api_waiters;
	rt->api_waiters = NULL;
	while (call) {
		struct rr_api_call *next = call->next;
		api_run(core, r, call);
		call = next;
	}
}

/* A backend API call for a handler room, on its home core: loaded first. */
static void rt_api(struct rr_core *core, struct rr_api_call *call)
{
	const struct rr_handler *h = rr_handler_for_route(call->route);
	if (h == NULL || h->api == NULL) {
		rr_gate_api_error(core, call, 404, "not_found", "this room type has no API");
		return;
	}
	struct rr_room *r = rr_rt_room_get(core, h, call->route, call->room, call->room_len);
	if (r == NULL) {
		rr_gate_api_error(core, call, 503, "unavailable", "out of memory");
		return;
	}
	struct rr_room_rt *rt = rt_of(r);
	if (rt->load == RR_LOAD_READY) {
		api_run(core, r, call);
		rr_room_release_if_empty(core, r);
		return;
	}
	call->next = rt->api_waiters;
	rt->api_waiters = call;
	rr_rt_room_wake(core, r);
}

static size_t rt_room(const struct rr_conn *c, const char **name)
{
	const struct rr_conn_ext *x = cx(c);
	const struct rr_room *r = c->room ? c->room : x ? x->waiting_room : NULL;
	*name = r ? r->name : "";
	return r ? r->name_len : 0;
}

void rr_rt_member_register(void)
{
	rr_rt_clog_hooks.room_ready = room_ready;
	rr_rt_nodes_hooks.api_run = api_run;
	rr_rt_owner.room = rt_room;
	rr_gate_api(RR_ROUTE_CHAT, rt_api);
	rr_rt_room_ops.empty = rt_room_empty;
	rr_rt_room_ops.free = rt_room_free;
	rr_rt_owner.message = rt_message;
	rr_rt_owner.detach = rt_detach;
	rr_rt_owner.leave = rt_leave;
	rr_rt_owner.writable = rt_writable;
	rr_rt_owner.release = rt_release;
}

void rr_rt_open_register(unsigned route)
{
	rr_gate_route(route, rt_open, true);
}
