/*
 * The handler runtime: see handler.h. Also the public API of
 * include/ringroom/handler.h, implemented on the connection and room layers.
 */
#include "room/handler.h"
#include "conn/conn.h"
#include "core/assert.h"
#include "core/log.h"
#include "core/time.h"
#include "http/http.h"
#include "persist/store.h"
#include "reactor/loop.h"
#include "room/room.h"
#include "ws/ws.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

struct rr_handler_config rr_handler_cfg;

#define ALARM_PAYLOAD_MAX 4096
#define ALARM_BACKOFF_MAX_MS (5 * 60 * 1000)
#define ALARM_KEY_MAX (8 + 8 + 1 + RR_ROOM_NAME_MAX)

struct alarm {
	struct rr_timer t;
	struct alarm *next;
	uint64_t id, at_ms;
	uint32_t attempts;
	uint8_t route;
	uint8_t name_len;
	char name[RR_ROOM_NAME_MAX + 1];
	uint32_t len;
	uint8_t payload[];
};


/* The chat handler lives in src/chat/; a build without it serves no /chat/. */
const struct rr_handler *rr_chat_handler(void) __attribute__((weak));

const struct rr_handler *rr_handler_for_route(unsigned route)
{
	if (route == RR_ROUTE_CHAT)
		return rr_chat_handler ? rr_chat_handler() : NULL;
	if (route >= RR_ROUTE_CUSTOM_BASE && route - RR_ROUTE_CUSTOM_BASE < rr_handler_cfg.ncustom)
		return rr_handler_cfg.custom[route - RR_ROUTE_CUSTOM_BASE];
	return NULL;
}

unsigned rr_handler_match_custom(const char *path, size_t n, const char **room, size_t *room_len)
{
	for (unsigned i = 0; i < rr_handler_cfg.ncustom; i++) {
		const char *pre = rr_handler_cfg.custom_prefix[i];
		size_t pn = strlen(pre);
		if (n > pn && memcmp(path, pre, pn) == 0) {
			*room = path + pn;
			*room_len = n - pn;
			return RR_ROUTE_CUSTOM_BASE + i;
		}
	}
	return 0;
}

int rr_handler_load_so(const char *spec)
{
	const char *eq = strchr(spec, '=');
	if (eq == NULL || eq == spec || spec[0] != '/' || eq[-1] != '/' ||
	    (size_t)(eq - spec) >= sizeof(rr_handler_cfg.custom_prefix[0])) {
		rr_err("--handler '%s': expected /prefix/=path/to/handler.so", spec);
		return -EINVAL;
	}
	if (rr_handler_cfg.ncustom == RR_CUSTOM_HANDLERS_MAX) {
		rr_err("--handler: at most %d handlers", RR_CUSTOM_HANDLERS_MAX);
		return -ENOSPC;
	}
	void *so = dlopen(eq + 1, RTLD_NOW | RTLD_LOCAL);
	if (so == NULL) {
		rr_err("--handler %s: %s", eq + 1, dlerror());
		return -ENOENT;
	}
	const struct rr_handler *(*get)(void);
	*(void **)&get = dlsym(so, "ringroom_handler");
	const struct rr_handler *h = get ? get() : NULL;
	if (h == NULL || h->abi != RR_HANDLER_ABI || h->message == NULL) {
		rr_err("--handler %s: no ringroom_handler() with ABI %d and a message callback",
		       eq + 1, RR_HANDLER_ABI);
		dlclose(so);
		return -EINVAL;
	}
	unsigned i = rr_handler_cfg.ncustom++;
	rr_handler_cfg.custom[i] = h;
	memcpy(rr_handler_cfg.custom_prefix[i], spec, (size_t)(eq - spec));
	rr_handler_cfg.custom_prefix[i][eq - spec] = '\0';
	rr_info("handler '%s' from %s serves %s{room}", h->name ? h->name : "?", eq + 1,
		rr_handler_cfg.custom_prefix[i]);
	return 0; /* the object stays loaded for the process's life */
}

/* ---- helpers ---------------------------------------------------------- */

static struct rr_core *cur(void)
{
	return rr_conn_core();
}

static void b64url(const uint8_t *in, size_t n, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = tab[(acc >> bits) & 63];
		}
	}
	if (bits > 0)
		out[o++] = tab[(acc << (6 - bits)) & 63];
	out[o] = '\0';
}

static void random_bytes(uint8_t *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(p + got, n - got, 0);
		if (r <= 0)
			continue; /* EINTR; the pool is initialised long before */
		got += (size_t)r;
	}
}

static void sha256(const void *p, size_t n, uint8_t out[32])
{
	wc_Sha256Hash(p, (word32)n, out);
}

static bool ct_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;
	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

static struct rr_room_rt *rt_of(const struct rr_room *r)
{
	return r ? r->rt : NULL;
}

/* ---- storage requests ------------------------------------------------- */

enum sreq_kind {
	SR_ROOM_LOAD,
	SR_RELOAD,
	SR_SESSION_GET,
	SR_SESSION_PUT,
	SR_APPEND,
	SR_READ,
	SR_KV,
	SR_KV_LIST,
	SR_ALARM_LIST,
};

struct sreq {
	struct rr_store_req req;
	struct rr_room *room;
	struct rr_conn *conn;
	uint32_t conn_gen;
	uint8_t kind;
	union {
		rr_log_done_fn *log_done;
		rr_log_read_fn *read_done;
		rr_kv_done_fn *kv_done;
		rr_kv_list_fn *list_done;
	} cb;
	void *arg;
	struct rr_store_session sess;
	uint8_t data[]; /* room name, key, value, session blobs */
};

static void sreq_done(struct rr_store_req *req);

static struct sreq *sreq_new(struct rr_core *core, struct rr_room *r, enum rr_store_op op,
			     uint8_t kind, size_t extra)
{
	struct rr_room_rt *rt = r->rt;
	struct sreq *s = calloc(1, sizeof(*s) + rt->store_name_len + extra);
	if (s == NULL)
		return NULL;
	s->req.op = op;
	s->req.core = core->id;
	s->req.reply_ring_fd = core->ring_fd;
	s->req.done = sreq_done;
	memcpy(s->data, rt->store_name, rt->store_name_len);
	s->req.room = (const char *)s->data;
	s->req.room_len = rt->store_name_len;
	s->room = r;
	s->kind = kind;
	return s;
}

static int sreq_submit(struct rr_core *core, struct sreq *s)
{
	if (rr_handler_cfg.store == NULL) {
		free(s);
		return -ENOSYS;
	}
	int rc = rr_store_submit(rr_handler_cfg.store, &s->req);
	if (rc < 0) {
		free(s);
		return rc;
	}
	s->room->rt->ops_inflight++;
	core->store_inflight++;
	return 0;
}

/* ---- sessions ---------------------------------------------------------- */

static void session_put(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conn_ext *x = c->x;
	struct rr_room *r = c->room;
	if (x == NULL || r == NULL || rr_handler_cfg.store == NULL || !r->rt->h->durable)
		return;
	size_t extra = RR_SESSION_ID_LEN + x->attachment_len + x->tags_len;
	struct sreq *s = sreq_new(core, r, RR_STORE_SESSION_PUT, SR_SESSION_PUT, extra);
	if (s == NULL)
		return;
	uint8_t *p = s->data + r->rt->store_name_len;
	memcpy(p, x->session, RR_SESSION_ID_LEN);
	s->req.key = p;
	s->req.key_len = RR_SESSION_ID_LEN;
	p += RR_SESSION_ID_LEN;
	s->sess.room = s->req.room;
	s->sess.room_len = s->req.room_len;
	if (x->attachment_len)
		memcpy(p, x->attachment, x->attachment_len);
	s->sess.attachment = p;
	s->sess.attachment_len = x->attachment_len;
	p += x->attachment_len;
	if (x->tags_len)
		memcpy(p, x->tags, x->tags_len);
	s->sess.tags = p;
	s->sess.tags_len = x->tags_len;
	s->sess.last_id = x->last_id;
	s->sess.expiry_ms = rr_wall_ms() + rr_handler_cfg.session_ttl_ms;
	memcpy(s->sess.resume_hash, x->resume_hash, 32);
	s->req.session = &s->sess;
	if (sreq_submit(core, s) < 0)
		rr_warn("session %s: not saved (storage queue full)", x->session);
}

static void new_session(struct rr_conn_ext *x)
{
	uint8_t raw[32];
	random_bytes(raw, 16);
	b64url(raw, 16, x->session);
	random_bytes(raw, 32);
	x->resume_token = malloc(44);
	if (x->resume_token)
		b64url(raw, 32, x->resume_token);
	sha256(x->resume_token ? x->resume_token : "", x->resume_token ? 43 : 0,
	       x->resume_hash);
	x->session_new = true;
}

/* ---- opening a member --------------------------------------------------- */

static void member_open(struct rr_core *core, struct rr_conn *c);

static void alarms_room_ready(struct rr_core *core, struct rr_room *r);

static void room_ready(struct rr_core *core, struct rr_room *r)
{
	struct rr_room_rt *rt = r->rt;
	r->busy++; /* opens and alarms below may empty the room */
	rt->load = RR_LOAD_READY;
	if (!rt->initialised) {
		rt->initialised = true;
		if (rt->h->init && rt->h->init(r) < 0) {
			rr_warn("room '%s': %s init failed", r->name, rt->h->name);
			rt->initialised = false;
			rt->load = RR_LOAD_FAILED;
		}
	}
	struct rr_conn *w = rt->waiters;
	rt->waiters = NULL;
	while (w) {
		struct rr_conn *next = w->x->next_waiter;
		w->x->next_waiter = NULL;
		if (rt->load == RR_LOAD_READY) {
			member_open(core, w);
		} else {
			w->x->waiting_room = NULL; /* detached above */
			rr_conn_reject(core, w, 503);
		}
		w = next;
	}
	alarms_room_ready(core, r);
	if (rt->load == RR_LOAD_FAILED)
		rt->load = RR_LOAD_NONE; /* the next connection tries again */
	r->busy--;
	rr_room_release_if_empty(core, r);
}

static int room_load(struct rr_core *core, struct rr_room *r, uint8_t kind)
{
	struct sreq *s = sreq_new(core, r, RR_STORE_ROOM_LOAD, kind, 0);
	if (s == NULL)
		return -ENOMEM;
	return sreq_submit(core, s);
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
	struct rr_conn_ext *x = c->x;
	struct rr_room *r = x->waiting_room;
	const struct rr_handler *h = r->rt->h;

	x->waiting_room = NULL;
	if (c->state != RR_CONN_WAIT) {
		rr_room_release_if_empty(core, r);
		return;
	}
	if (x->session[0] == '\0')
		new_session(x);
	int rc = rr_room_join(core, r, c);
	if (rc < 0) {
		rr_info("conn %u: room '%s' is full (%u members), answering 503", c->idx, r->name,
			r->count);
		rr_conn_reject(core, c, 503);
		rr_room_release_if_empty(core, r);
		return;
	}
	int arc = rr_conn_accept_ws(core, c, x->accept, x->protocol);
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
	int code = h->open ? h->open(r, c, &info) : 0;
	free(x->resume_token);
	x->resume_token = NULL;
	free(x->query);
	x->query = NULL;
	x->query_len = 0;
	if (code != 0) {
		rr_conn_close(core, c, (uint16_t)code, "refused by the room");
		return;
	}
	if (x->session_new || x->resumed)
		session_put(core, c);
	x->session_new = false;
	if (x->early) {
		uint8_t *early = x->early;
		size_t n = x->early_len;
		x->early = NULL;
		x->early_len = 0;
		rr_conn_feed(core, c, early, n);
		free(early);
	}
	rr_conn_after_open(core, c);
}

static void on_session_get(struct rr_core *core, struct sreq *s)
{
	struct rr_conn *c = s->conn;
	if (c->gen != s->conn_gen || c->state != RR_CONN_WAIT || c->x == NULL)
		return; /* gone meanwhile */
	struct rr_conn_ext *x = c->x;
	struct rr_room *r = x->waiting_room;
	const struct rr_store_session *ss = &s->req.out.session;
	uint8_t h[32];
	sha256(x->resume_token ? x->resume_token : "", x->resume_token ? strlen(x->resume_token) : 0,
	       h);
	free(x->resume_token);
	x->resume_token = NULL;
	if (s->req.res == 0 && ss->room_len == r->rt->store_name_len &&
	    memcmp(ss->room, r->rt->store_name, ss->room_len) == 0 &&
	    ct_equal(h, ss->resume_hash, 32) &&
	    rr_room_member_by_session(r, x->session) == NULL) {
		x->resumed = true;
		x->resumed_last_id = ss->last_id;
		x->last_id = ss->last_id;
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
	} else {
		/* unknown, expired, another room's, or a wrong token: a new
		 * session (the client can't tell which: no oracle) */
		x->session[0] = '\0';
	}
	if (r->rt->load == RR_LOAD_READY) {
		member_open(core, c);
		return;
	}
	x->next_waiter = r->rt->waiters;
	r->rt->waiters = c;
	if (r->rt->load == RR_LOAD_NONE) {
		r->rt->load = RR_LOAD_LOADING;
		if (room_load(core, r, SR_ROOM_LOAD) < 0) {
			r->rt->load = RR_LOAD_FAILED;
			room_ready(core, r);
		}
	}
}

/* Find or create a handler room with its runtime state. */
static struct rr_room *room_get_rt(struct rr_core *core, const struct rr_handler *h,
				   unsigned route, const char *name, size_t name_len)
{
	struct rr_room *r = rr_room_get(core, (uint8_t)route, name, name_len);
	if (r == NULL || r->rt)
		return r;
	r->rt = calloc(1, sizeof(*r->rt));
	if (r->rt)
		r->rt->state = h->state_size ? calloc(1, h->state_size) : NULL;
	if (r->rt == NULL || (h->state_size && r->rt->state == NULL)) {
		free(r->rt);
		r->rt = NULL;
		rr_room_release_if_empty(core, r);
		return NULL;
	}
	r->rt->h = h;
	int n = snprintf(r->rt->store_name, sizeof(r->rt->store_name), "%.64s:%s",
			 h->name ? h->name : "handler", r->name);
	r->rt->store_name_len = (uint32_t)n;
	return r;
}

/* Make a room ready for work that isn't a connection (an alarm). */
static void room_wake(struct rr_core *core, struct rr_room *r)
{
	struct rr_room_rt *rt = r->rt;
	rr_timer_cancel(&core->wheel, &rt->idle_timer);
	rt->evict_now = false;
	if (rt->load != RR_LOAD_NONE)
		return;
	if (!rt->h->durable) {
		room_ready(core, r);
		return;
	}
	rt->load = RR_LOAD_LOADING;
	if (room_load(core, r, SR_ROOM_LOAD) < 0) {
		rt->load = RR_LOAD_FAILED;
		room_ready(core, r);
	}
}

void rr_handler_upgrade(struct rr_core *core, struct rr_conn *c, unsigned route,
			const char *name, size_t name_len, const char accept[29],
			const struct rr_identity *id, const char *protocol, const char *query,
			size_t query_len,
			const uint8_t *extra, size_t extra_len)
{
	const struct rr_handler *h = rr_handler_for_route(route);
	if (h == NULL) {
		rr_conn_reject(core, c, 404);
		return;
	}
	struct rr_conn_ext *x = calloc(1, sizeof(*x));
	if (x == NULL) {
		rr_conn_reject(core, c, 503);
		return;
	}
	c->x = x;
	memcpy(x->accept, accept, 29);
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
	if (extra_len) {
		x->early = malloc(extra_len);
		if (x->early) {
			memcpy(x->early, extra, extra_len);
			x->early_len = (uint32_t)extra_len;
		}
	}
	struct rr_room *r = room_get_rt(core, h, route, name, name_len);
	if (r == NULL) {
		rr_conn_reject(core, c, 503);
		return;
	}
	struct rr_room_rt *rt = r->rt;
	rr_timer_cancel(&core->wheel, &rt->idle_timer);
	rt->evict_now = false;
	c->state = RR_CONN_WAIT;
	x->waiting_room = r;

	/* a session to resume? look it up first */
	char sid[64], token[128];
	if (h->durable && rr_handler_cfg.store && query_get(x, "session", sid, sizeof(sid)) &&
	    query_get(x, "resume", token, sizeof(token)) && strlen(sid) == RR_SESSION_ID_LEN) {
		struct sreq *s = sreq_new(core, r, RR_STORE_SESSION_GET, SR_SESSION_GET,
					  RR_SESSION_ID_LEN);
		x->resume_token = strdup(token);
		if (s && x->resume_token) {
			memcpy(x->session, sid, RR_SESSION_ID_LEN + 1);
			memcpy(s->data + rt->store_name_len, sid, RR_SESSION_ID_LEN);
			s->req.key = s->data + rt->store_name_len;
			s->req.key_len = RR_SESSION_ID_LEN;
			s->conn = c;
			s->conn_gen = c->gen;
			if (sreq_submit(core, s) == 0) {
				if (rt->load == RR_LOAD_NONE && h->durable) {
					rt->load = RR_LOAD_LOADING;
					if (room_load(core, r, SR_ROOM_LOAD) < 0)
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
	int rc = room_load(core, r, SR_ROOM_LOAD);
	if (rc < 0) {
		rr_warn("room '%s': can't load (%s)", r->name, strerror(-rc));
		rt->load = RR_LOAD_FAILED;
		room_ready(core, r);
	}
}

void rr_handler_unwait(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conn_ext *x = c->x;
	if (x == NULL || x->waiting_room == NULL)
		return;
	struct rr_room *r = x->waiting_room;
	struct rr_conn **pp = &r->rt->waiters;
	while (*pp && *pp != c)
		pp = &(*pp)->x->next_waiter;
	if (*pp)
		*pp = x->next_waiter;
	x->next_waiter = NULL;
	x->waiting_room = NULL;
	rr_room_release_if_empty(core, r);
}

/* ---- traffic ---------------------------------------------------------- */

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
#define SKIP_WS                                                                            \
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))      \
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
					    memcmp(p + i + 1, rt->auto_req, rt->auto_req_len) == 0 &&
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
	if (c->x)
		c->x->auto_resp_ms = now;
	struct rr_frame *f = rr_frame_ws(RR_WS_TEXT, out, o);
	if (f) {
		rr_conn_send(core, c, f);
		rr_frame_unref(f);
	}
	return true;
}

void rr_handler_message(struct rr_core *core, struct rr_conn *c, uint8_t opcode, uint8_t *p,
			size_t n)
{
	struct rr_room *r = c->room;
	struct rr_room_rt *rt = r->rt;
	if (opcode == RR_WS_TEXT && auto_response(core, c, rt, p, n))
		return;
	rt->h->message(r, c, opcode, p, n);
}

void rr_handler_leave(struct rr_core *core, struct rr_conn *c, uint16_t code, bool clean)
{
	struct rr_room *r = c->room;
	if (r && r->rt && r->rt->h->close)
		r->rt->h->close(r, c, code, clean);
	if (r && r->rt)
		session_put(core, c);
}

void rr_handler_conn_free(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conn_ext *x = c->x;
	if (x == NULL)
		return;
	rr_handler_unwait(core, c);
	free(x->resume_token);
	free(x->query);
	free(x->protocol);
	free(x->early);
	free(x->attachment);
	free(x->tags);
	rr_conn_free_list(x->held_head);
	free(x);
	c->x = NULL;
}

/* ---- room lifecycle ------------------------------------------------------ */

bool rr_handler_room_busy(const struct rr_room_rt *rt)
{
	return rt->ops_inflight > 0 || rt->waiters != NULL || rt->load == RR_LOAD_LOADING ||
	       rt->pending_alarms != NULL || rt->pinned;
}

void rr_handler_room_free(struct rr_core *core, struct rr_room_rt *rt, void *room)
{
	rr_timer_cancel(&core->wheel, &rt->idle_timer);
	while (rt->pending_alarms) {
		struct alarm *a = rt->pending_alarms;
		rt->pending_alarms = a->next;
		free(a);
	}
	if (rt->initialised && rt->h->evict)
		rt->h->evict(room);
	free(rt->state);
	free(rt->auto_req);
	free(rt->auto_resp);
	free(rt);
}

static void room_idle_fn(struct rr_timer *t, uint64_t now_ms)
{
	struct rr_room_rt *rt = rr_container_of(t, struct rr_room_rt, idle_timer);
	(void)now_ms;
	rt->evict_now = true;
	rr_room_release_if_empty(cur(), rt->room);
}

/* Called by room.c when a handler room has no member: hibernate it. Returns
 * true when the room may be freed now. */
bool rr_handler_room_empty(struct rr_core *core, struct rr_room *r)
{
	struct rr_room_rt *rt = r->rt;
	if (rr_handler_room_busy(rt))
		return false;
	if (rt->evict_now || rr_handler_cfg.room_idle_evict_ms == 0 || core->draining)
		return true;
	if (!rr_timer_armed(&rt->idle_timer)) {
		rt->room = r;
		rr_timer_init(&rt->idle_timer, room_idle_fn);
		rr_timer_set(&core->wheel, &rt->idle_timer,
			     core->now_ms + rr_handler_cfg.room_idle_evict_ms);
	}
	return false;
}

/* ---- storage completions ------------------------------------------------- */

static void log_entries(const struct rr_store_req *req, struct rr_log_entry *out)
{
	for (uint32_t i = 0; i < req->out.n_items; i++) {
		out[i].id = req->out.items[i].id;
		out[i].ts_ms = req->out.items[i].ts_ms;
		out[i].data = req->out.items[i].val;
		out[i].len = req->out.items[i].val_len;
	}
}

static void alarms_listed(struct rr_core *core, struct sreq *s);

static void sreq_done(struct rr_store_req *req)
{
	struct sreq *s = (struct sreq *)req;
	struct rr_core *core = cur();
	struct rr_room *r = s->room;
	struct rr_room_rt *rt = r->rt;

	rt->ops_inflight--;
	core->store_inflight--;
	r->busy++; /* callbacks may empty the room */
	switch (s->kind) {
	case SR_ROOM_LOAD:
	case SR_RELOAD:
		if (req->res == 0) {
			memcpy(rt->epoch, req->out.epoch, sizeof(rt->epoch));
			rt->last_id = req->out.last_id;
			rt->first_id = req->out.first_id;
			if (s->kind == SR_ROOM_LOAD)
				room_ready(core, r);
		} else {
			rr_warn("room '%s': loading its log failed: %s", r->name,
				strerror(-req->res));
			if (s->kind == SR_ROOM_LOAD) {
				rt->load = RR_LOAD_FAILED;
				room_ready(core, r);
			}
		}
		break;
	case SR_SESSION_GET:
		on_session_get(core, s);
		break;
	case SR_SESSION_PUT:
		if (req->res < 0)
			rr_warn("session not saved: %s", strerror(-req->res));
		break;
	case SR_APPEND:
		if (req->res < 0) {
			static __thread uint64_t last_log;
			if (core->now_ms - last_log > 1000) {
				rr_warn("room '%s': storing message %llu failed: %s", r->name,
					(unsigned long long)req->id, strerror(-req->res));
				last_log = core->now_ms;
			}
			/* renumber from what is stored: later appends of the
			 * failed batch fail with -ESTALE until this lands */
			if (req->res != -ESTALE)
				room_load(core, r, SR_RELOAD);
		}
		if (s->cb.log_done)
			s->cb.log_done(r, s->arg, req->res, req->id);
		break;
	case SR_READ: {
		struct rr_log_entry *e = NULL;
		if (req->res == 0 && req->out.n_items) {
			e = calloc(req->out.n_items, sizeof(*e));
			if (e == NULL)
				req->res = -ENOMEM;
			else
				log_entries(req, e);
		}
		s->cb.read_done(r, s->arg, req->res, e, req->res == 0 ? req->out.n_items : 0,
				req->out.more);
		free(e);
		break;
	}
	case SR_KV:
		if (s->cb.kv_done)
			s->cb.kv_done(r, s->arg, req->res, req->out.val, req->out.val_len);
		break;
	case SR_ALARM_LIST:
		alarms_listed(core, s);
		break;
	case SR_KV_LIST: {
		struct rr_log_entry *e = NULL;
		if (req->res == 0 && req->out.n_items) {
			e = calloc(req->out.n_items, sizeof(*e));
			if (e == NULL) {
				req->res = -ENOMEM;
			} else {
				for (uint32_t i = 0; i < req->out.n_items; i++) {
					e[i].data = req->out.items[i].key;
					e[i].len = req->out.items[i].key_len;
				}
			}
		}
		s->cb.list_done(r, s->arg, req->res, e, req->res == 0 ? req->out.n_items : 0,
				req->out.more);
		free(e);
		break;
	}
	}
	rr_store_req_release(req);
	free(s);
	r->busy--;
	rr_room_release_if_empty(core, r);
}

void rr_handler_store_done(struct rr_core *core, struct rr_store_req *req)
{
	(void)core;
	rr_store_complete(req);
}

/* ---- the public API ------------------------------------------------------ */

void *rr_room_state(struct rr_room *room)
{
	return room->rt ? room->rt->state : NULL;
}

const char *rr_room_name(const struct rr_room *room, size_t *len)
{
	if (len)
		*len = room->name_len;
	return room->name;
}

uint32_t rr_room_size(const struct rr_room *room)
{
	return room->count;
}

int rr_room_broadcast(struct rr_room *room, int opcode, const void *data, size_t len,
		      struct rr_conn *except)
{
	struct rr_frame *f = rr_frame_ws((uint8_t)opcode, data, len);
	if (f == NULL)
		return -ENOMEM;
	rr_room_broadcast_frame(cur(), room, f, except);
	rr_frame_unref(f);
	return 0;
}

int rr_room_broadcast_tag(struct rr_room *room, const char *tag, int opcode, const void *data,
			  size_t len, struct rr_conn *except)
{
	struct rr_core *core = cur();
	struct rr_frame *f = rr_frame_ws((uint8_t)opcode, data, len);
	if (f == NULL)
		return -ENOMEM;
	room->busy++;
	for (uint32_t i = room->count; i > 0; i--) {
		if (i - 1 >= room->count)
			continue;
		struct rr_conn *m = room->members[i - 1];
		if (m != except && rr_member_has_tag(m, tag))
			rr_conn_send(core, m, f);
	}
	room->busy--;
	rr_frame_unref(f);
	rr_room_release_if_empty(core, room);
	return 0;
}

size_t rr_room_members(struct rr_room *room, const char *tag, struct rr_conn **out, size_t max)
{
	size_t n = 0;
	for (uint32_t i = 0; i < room->count; i++) {
		struct rr_conn *m = room->members[i];
		if (tag && !rr_member_has_tag(m, tag))
			continue;
		if (n < max)
			out[n] = m;
		n++;
	}
	return n;
}

struct rr_conn *rr_room_member_by_session(struct rr_room *room, const char *session)
{
	for (uint32_t i = 0; i < room->count; i++) {
		struct rr_conn *m = room->members[i];
		if (m->x && strcmp(m->x->session, session) == 0)
			return m;
	}
	return NULL;
}

int rr_member_send(struct rr_conn *c, int opcode, const void *data, size_t len)
{
	struct rr_frame *f = rr_frame_ws((uint8_t)opcode, data, len);
	if (f == NULL)
		return -ENOMEM;
	int rc = rr_conn_send(cur(), c, f);
	rr_frame_unref(f);
	return rc;
}

int rr_member_send_now(struct rr_conn *c, int opcode, const void *data, size_t len)
{
	struct rr_frame *f = rr_frame_ws((uint8_t)opcode, data, len);
	if (f == NULL)
		return -ENOMEM;
	int rc = rr_conn_send_now(cur(), c, f);
	rr_frame_unref(f);
	return rc;
}

void rr_member_hold(struct rr_conn *c)
{
	if (c->x)
		c->x->hold = true;
}

void rr_member_release(struct rr_conn *c)
{
	if (c->x && c->x->hold) {
		c->x->hold = false;
		rr_conn_release_hold(cur(), c);
	}
}

void rr_member_close(struct rr_conn *c, uint16_t code, const char *reason)
{
	rr_conn_close(cur(), c, code, reason);
}

const char *rr_member_session(const struct rr_conn *c)
{
	return c->x ? c->x->session : "";
}

const char *rr_member_resume_token(const struct rr_conn *c)
{
	return c->x ? c->x->resume_token : NULL;
}

int rr_member_set_tags(struct rr_conn *c, const char *const *tags, size_t n)
{
	if (c->x == NULL || n > RR_TAGS_MAX)
		return -EINVAL;
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = tags[i] ? strlen(tags[i]) : 0;
		if (l == 0 || l > RR_TAG_BYTES_MAX)
			return -EINVAL;
		total += l + 1;
	}
	char *buf = NULL;
	if (total) {
		buf = malloc(total);
		if (buf == NULL)
			return -ENOMEM;
		size_t o = 0;
		for (size_t i = 0; i < n; i++) {
			size_t l = strlen(tags[i]) + 1;
			memcpy(buf + o, tags[i], l);
			o += l;
		}
	}
	free(c->x->tags);
	c->x->tags = buf;
	c->x->tags_len = (uint32_t)total;
	c->x->ntags = (uint8_t)n;
	return 0;
}

const char *rr_member_tag(const struct rr_conn *c, size_t i)
{
	if (c->x == NULL || i >= c->x->ntags)
		return NULL;
	const char *p = c->x->tags;
	while (i--)
		p += strlen(p) + 1;
	return p;
}

bool rr_member_has_tag(const struct rr_conn *c, const char *tag)
{
	for (size_t i = 0;; i++) {
		const char *t = rr_member_tag(c, i);
		if (t == NULL)
			return false;
		if (strcmp(t, tag) == 0)
			return true;
	}
}

int rr_member_set_attachment(struct rr_conn *c, const void *data, size_t len)
{
	if (c->x == NULL)
		return -EINVAL;
	if (len > rr_handler_cfg.max_attachment_bytes)
		return -E2BIG;
	uint8_t *p = NULL;
	if (len) {
		p = malloc(len);
		if (p == NULL)
			return -ENOMEM;
		memcpy(p, data, len);
	}
	free(c->x->attachment);
	c->x->attachment = p;
	c->x->attachment_len = (uint32_t)len;
	/* written through, except during open(): the session is saved once
	 * open() returns */
	if (c->state == RR_CONN_OPEN && c->x->query == NULL)
		session_put(cur(), c);
	return 0;
}

const void *rr_member_attachment(const struct rr_conn *c, size_t *len)
{
	if (c->x == NULL || c->x->attachment == NULL) {
		if (len)
			*len = 0;
		return NULL;
	}
	if (len)
		*len = c->x->attachment_len;
	return c->x->attachment;
}

void rr_member_set_last_id(struct rr_conn *c, uint64_t id)
{
	if (c->x && id > c->x->last_id)
		c->x->last_id = id;
}

uint64_t rr_member_last_id(const struct rr_conn *c)
{
	return c->x ? c->x->last_id : 0;
}

uint64_t rr_member_auto_response_ms(const struct rr_conn *c)
{
	return c->x ? c->x->auto_resp_ms : 0;
}

int rr_room_set_auto_response(struct rr_room *room, const char *request, const char *response,
			      bool match_type)
{
	struct rr_room_rt *rt = rt_of(room);
	if (rt == NULL)
		return -EINVAL;
	free(rt->auto_req);
	free(rt->auto_resp);
	rt->auto_req = rt->auto_resp = NULL;
	if (request == NULL)
		return 0;
	rt->auto_req = strdup(request);
	rt->auto_resp = strdup(response ? response : "");
	if (rt->auto_req == NULL || rt->auto_resp == NULL)
		return -ENOMEM;
	rt->auto_req_len = strlen(request);
	rt->auto_match_type = match_type;
	return 0;
}

const char *rr_log_epoch(const struct rr_room *room)
{
	return room->rt ? room->rt->epoch : "";
}

uint64_t rr_log_last_id(const struct rr_room *room)
{
	return room->rt ? room->rt->last_id : 0;
}

uint64_t rr_log_first_id(const struct rr_room *room)
{
	return room->rt ? room->rt->first_id : 1;
}

int rr_log_append(struct rr_room *room, const void *data, size_t len, uint64_t *id_out,
		  rr_log_done_fn *done, void *arg)
{
	struct rr_core *core = cur();
	struct rr_room_rt *rt = rt_of(room);
	if (rt == NULL || !rt->h->durable || rr_handler_cfg.store == NULL)
		return -ENOSYS;
	struct sreq *s = sreq_new(core, room, RR_STORE_APPEND, SR_APPEND, len);
	if (s == NULL)
		return -ENOMEM;
	memcpy(s->data + rt->store_name_len, data, len);
	s->req.data = s->data + rt->store_name_len;
	s->req.len = (uint32_t)len;
	s->req.id = rt->last_id + 1;
	s->req.ts_ms = rr_wall_ms();
	s->cb.log_done = done;
	s->arg = arg;
	int rc = sreq_submit(core, s);
	if (rc < 0)
		return rc;
	rt->last_id++;
	if (id_out)
		*id_out = rt->last_id;
	return 0;
}

static int log_read(struct rr_room *room, enum rr_store_op op, uint64_t id, uint32_t limit,
		    rr_log_read_fn *done, void *arg)
{
	struct rr_core *core = cur();
	struct rr_room_rt *rt = rt_of(room);
	if (rt == NULL || !rt->h->durable || rr_handler_cfg.store == NULL)
		return -ENOSYS;
	struct sreq *s = sreq_new(core, room, op, SR_READ, 0);
	if (s == NULL)
		return -ENOMEM;
	s->req.id = id;
	s->req.limit = limit;
	s->cb.read_done = done;
	s->arg = arg;
	return sreq_submit(core, s);
}

int rr_log_read_after(struct rr_room *room, uint64_t id, uint32_t limit, rr_log_read_fn *done,
		      void *arg)
{
	return log_read(room, RR_STORE_READ_AFTER, id, limit, done, arg);
}

int rr_log_read_before(struct rr_room *room, uint64_t id, uint32_t limit, rr_log_read_fn *done,
		       void *arg)
{
	return log_read(room, RR_STORE_READ_BEFORE, id, limit, done, arg);
}

static int kv_op(struct rr_room *room, enum rr_store_op op, const void *key, size_t klen,
		 const void *val, size_t vlen, rr_kv_done_fn *done, void *arg)
{
	struct rr_core *core = cur();
	if (rt_of(room) == NULL || rr_handler_cfg.store == NULL)
		return -ENOSYS;
	if (klen == 0 || klen > RR_STORE_KEY_MAX || vlen > RR_STORE_VALUE_MAX)
		return -EINVAL;
	struct sreq *s = sreq_new(core, room, op, SR_KV, klen + vlen);
	if (s == NULL)
		return -ENOMEM;
	uint8_t *p = s->data + room->rt->store_name_len;
	memcpy(p, key, klen);
	s->req.key = p;
	s->req.key_len = (uint32_t)klen;
	if (vlen)
		memcpy(p + klen, val, vlen);
	s->req.data = p + klen;
	s->req.len = (uint32_t)vlen;
	s->cb.kv_done = done;
	s->arg = arg;
	return sreq_submit(core, s);
}

int rr_kv_get(struct rr_room *room, const void *key, size_t klen, rr_kv_done_fn *done,
	      void *arg)
{
	return kv_op(room, RR_STORE_KV_GET, key, klen, NULL, 0, done, arg);
}

int rr_kv_put(struct rr_room *room, const void *key, size_t klen, const void *val, size_t vlen,
	      rr_kv_done_fn *done, void *arg)
{
	return kv_op(room, RR_STORE_KV_PUT, key, klen, val, vlen, done, arg);
}

int rr_kv_delete(struct rr_room *room, const void *key, size_t klen, rr_kv_done_fn *done,
		 void *arg)
{
	return kv_op(room, RR_STORE_KV_DEL, key, klen, NULL, 0, done, arg);
}

int rr_kv_list(struct rr_room *room, const void *prefix, size_t plen, const void *after,
	       size_t alen, uint32_t limit, rr_kv_list_fn *done, void *arg)
{
	struct rr_core *core = cur();
	if (rt_of(room) == NULL || rr_handler_cfg.store == NULL)
		return -ENOSYS;
	if (plen > RR_STORE_KEY_MAX || alen > RR_STORE_KEY_MAX)
		return -EINVAL;
	struct sreq *s = sreq_new(core, room, RR_STORE_KV_LIST, SR_KV_LIST, plen + alen);
	if (s == NULL)
		return -ENOMEM;
	uint8_t *p = s->data + room->rt->store_name_len;
	if (plen)
		memcpy(p, prefix, plen);
	s->req.key = p;
	s->req.key_len = (uint32_t)plen;
	if (after) {
		memcpy(p + plen, after, alen);
		s->req.after = p + plen;
		s->req.after_len = (uint32_t)alen;
	}
	s->req.limit = limit;
	s->cb.list_done = done;
	s->arg = arg;
	return sreq_submit(core, s);
}

uint64_t rr_now_wall_ms(void)
{
	return rr_wall_ms();
}

/* ---- alarms ---------------------------------------------------------------
 *
 * DESIGN: every alarm is one key in a broker-wide index kept in room storage
 * under the pseudo-room "alarms:index": big-endian due time, id, route and
 * room name, with the payload as the value. Sorting by due time lets a core
 * that starts list them in order; each core takes the alarms of the rooms
 * it is home to and arms them on its timer wheel, so an alarm that came due
 * while the broker was down fires right after the restart. The key is
 * deleted only after the handler's alarm() returned 0: at least once.
 */

static __thread struct alarm *tl_alarms; /* armed on this core */
static __thread struct rr_room *tl_index;

static const struct rr_handler index_handler = {
	.abi = RR_HANDLER_ABI,
	.name = "alarms",
};

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static size_t alarm_key(const struct alarm *a, uint8_t *k)
{
	put_be64(k, a->at_ms);
	put_be64(k + 8, a->id);
	k[16] = a->route;
	memcpy(k + 17, a->name, a->name_len);
	return 17u + a->name_len;
}

static struct rr_room *index_room(struct rr_core *core)
{
	if (tl_index)
		return tl_index;
	struct rr_room *r = room_get_rt(core, &index_handler, 0xff, "index", 5);
	if (r == NULL)
		return NULL;
	r->rt->pinned = true;
	r->rt->load = RR_LOAD_READY;
	tl_index = r;
	return r;
}

static void alarm_fire(struct rr_timer *t, uint64_t now_ms);

static void alarm_arm(struct rr_core *core, struct alarm *a, uint64_t delay_ms)
{
	rr_timer_init(&a->t, alarm_fire);
	rr_timer_set(&core->wheel, &a->t, core->now_ms + delay_ms);
	a->next = tl_alarms;
	tl_alarms = a;
}

static void alarm_unlink(struct alarm *a)
{
	struct alarm **pp = &tl_alarms;
	while (*pp && *pp != a)
		pp = &(*pp)->next;
	if (*pp)
		*pp = a->next;
	a->next = NULL;
}

static void index_delete(struct rr_core *core, const struct alarm *a)
{
	uint8_t k[ALARM_KEY_MAX];
	struct rr_room *ix = index_room(core);
	if (ix == NULL || kv_op(ix, RR_STORE_KV_DEL, k, alarm_key(a, k), NULL, 0, NULL, NULL) < 0)
		rr_warn("alarm %llu: index key not deleted (storage busy); it may fire again",
			(unsigned long long)a->id);
}

/* Run a due alarm in its (ready) room. */
static void alarm_run(struct rr_core *core, struct rr_room *r, struct alarm *a)
{
	const struct rr_handler *h = r->rt->h;
	int rc = h->alarm ? h->alarm(r, a->id, a->payload, a->len) : 0;
	if (rc == 0) {
		index_delete(core, a);
		free(a);
	} else {
		a->attempts++;
		uint64_t backoff = 1000ull << (a->attempts < 20 ? a->attempts - 1 : 19);
		if (backoff > ALARM_BACKOFF_MAX_MS)
			backoff = ALARM_BACKOFF_MAX_MS;
		rr_info("room '%s': alarm %llu failed (%d), retry %u in %llu ms", r->name,
			(unsigned long long)a->id, rc, a->attempts, (unsigned long long)backoff);
		alarm_arm(core, a, backoff);
	}
	if (r->count == 0)
		rr_room_release_if_empty(core, r);
}

static void alarm_fire(struct rr_timer *t, uint64_t now_ms)
{
	struct alarm *a = (struct alarm *)t;
	struct rr_core *core = cur();
	const struct rr_handler *h = rr_handler_for_route(a->route);
	(void)now_ms;
	alarm_unlink(a);
	if (h == NULL) {
		rr_warn("alarm %llu: no handler serves route %u any more; dropped",
			(unsigned long long)a->id, a->route);
		index_delete(core, a);
		free(a);
		return;
	}
	struct rr_room *r = room_get_rt(core, h, a->route, a->name, a->name_len);
	if (r == NULL) {
		alarm_arm(core, a, 1000); /* out of memory: try again soon */
		return;
	}
	if (r->rt->load == RR_LOAD_READY) {
		alarm_run(core, r, a);
		return;
	}
	a->next = r->rt->pending_alarms;
	r->rt->pending_alarms = a;
	room_wake(core, r);
}

static void alarms_room_ready(struct rr_core *core, struct rr_room *r)
{
	struct alarm *a = r->rt->pending_alarms;
	r->rt->pending_alarms = NULL;
	while (a) {
		struct alarm *next = a->next;
		a->next = NULL;
		if (r->rt->load == RR_LOAD_READY)
			alarm_run(core, r, a);
		else
			alarm_arm(core, a, 1000); /* the room failed to load: retry */
		a = next;
	}
}

int rr_alarm_set(struct rr_room *room, uint64_t at_ms, const void *payload, size_t len,
		 uint64_t *id_out)
{
	struct rr_core *core = cur();
	if (room->rt == NULL || room->kind == 0xff)
		return -EINVAL;
	if (len > ALARM_PAYLOAD_MAX)
		return -E2BIG;
	struct rr_room *ix = index_room(core);
	if (ix == NULL || rr_handler_cfg.store == NULL)
		return -ENOSYS;
	struct alarm *a = calloc(1, sizeof(*a) + len);
	if (a == NULL)
		return -ENOMEM;
	random_bytes((uint8_t *)&a->id, sizeof(a->id));
	a->id &= (UINT64_C(1) << 53) - 1; /* exact in a JSON number */
	a->at_ms = at_ms;
	a->route = room->kind;
	a->name_len = room->name_len;
	memcpy(a->name, room->name, room->name_len);
	a->len = (uint32_t)len;
	if (len)
		memcpy(a->payload, payload, len);
	uint8_t k[ALARM_KEY_MAX];
	int rc = kv_op(ix, RR_STORE_KV_PUT, k, alarm_key(a, k), payload, len, NULL, NULL);
	if (rc < 0) {
		free(a);
		return rc;
	}
	uint64_t wall = rr_wall_ms();
	alarm_arm(core, a, at_ms > wall ? at_ms - wall : 0);
	if (id_out)
		*id_out = a->id;
	return 0;
}

int rr_alarm_cancel(struct rr_room *room, uint64_t id)
{
	struct rr_core *core = cur();
	struct alarm **lists[2] = {&tl_alarms, room->rt ? &room->rt->pending_alarms : NULL};
	for (int l = 0; l < 2; l++) {
		if (lists[l] == NULL)
			continue;
		for (struct alarm **pp = lists[l]; *pp; pp = &(*pp)->next) {
			struct alarm *a = *pp;
			if (a->id != id || a->name_len != room->name_len ||
			    memcmp(a->name, room->name, a->name_len) != 0)
				continue;
			*pp = a->next;
			rr_timer_cancel(&core->wheel, &a->t);
			index_delete(core, a);
			free(a);
			return 0;
		}
	}
	return -ENOENT;
}

static int alarms_list_page(struct rr_core *core, const uint8_t *after, size_t alen)
{
	struct rr_room *ix = index_room(core);
	if (ix == NULL)
		return -ENOMEM;
	struct sreq *s = sreq_new(core, ix, RR_STORE_KV_LIST, SR_ALARM_LIST, alen);
	if (s == NULL)
		return -ENOMEM;
	if (alen) {
		memcpy(s->data + ix->rt->store_name_len, after, alen);
		s->req.after = s->data + ix->rt->store_name_len;
		s->req.after_len = (uint32_t)alen;
	}
	s->req.key = s->data; /* empty prefix */
	s->req.key_len = 0;
	s->req.limit = 1000;
	return sreq_submit(core, s);
}

static void alarms_listed(struct rr_core *core, struct sreq *s)
{
	const struct rr_store_req *req = &s->req;
	uint64_t wall = rr_wall_ms();
	unsigned armed = 0;
	if (req->res < 0) {
		rr_err("alarms: listing the index failed: %s", strerror(-req->res));
		return;
	}
	for (uint32_t i = 0; i < req->out.n_items; i++) {
		const struct rr_store_item *it = &req->out.items[i];
		if (it->key_len < 18 || it->key_len > ALARM_KEY_MAX ||
		    it->val_len > ALARM_PAYLOAD_MAX)
			continue;
		const char *name = (const char *)it->key + 17;
		size_t nlen = it->key_len - 17;
		if (rr_room_home(core->broker, name, nlen) != core->id)
			continue;
		struct alarm *a = calloc(1, sizeof(*a) + it->val_len);
		if (a == NULL)
			break;
		a->at_ms = get_be64(it->key);
		a->id = get_be64(it->key + 8);
		a->route = it->key[16];
		a->name_len = (uint8_t)nlen;
		memcpy(a->name, name, nlen);
		a->len = it->val_len;
		memcpy(a->payload, it->val, it->val_len);
		alarm_arm(core, a, a->at_ms > wall ? a->at_ms - wall : 0);
		armed++;
	}
	if (armed)
		rr_info("alarms: %u restored from storage", armed);
	if (req->out.more && req->out.n_items) {
		const struct rr_store_item *last = &req->out.items[req->out.n_items - 1];
		alarms_list_page(core, last->key, last->key_len);
	}
}

void rr_handler_core_start(struct rr_core *core)
{
	if (rr_handler_cfg.store && alarms_list_page(core, NULL, 0) < 0)
		rr_err("alarms: can't list the index; stored alarms won't fire until restart");
}

void rr_handler_core_stop(struct rr_core *core)
{
	while (tl_alarms) {
		struct alarm *a = tl_alarms;
		tl_alarms = a->next;
		rr_timer_cancel(&core->wheel, &a->t);
		free(a);
	}
	if (tl_index) {
		tl_index->rt->pinned = false;
		tl_index = NULL;
	}
}
