/*
 * Sessions that resume on any node (--cluster; kernel-notes/cluster.md,
 * "Sessions across nodes"). For the rooms whose log is the cluster's (the
 * built-in /chat/ handler), every save of a session goes to the node's
 * RocksDB as before and also to the JetStream stream RINGROOM_SESSIONS, on
 * ringroom.session.<session id>, which keeps the newest record per session
 * for --session-ttl. A resume is decided by that record (the session may
 * have moved on on another node, whose token this one must refuse); the
 * node's own copy decides only when the cluster has none or cannot be
 * reached.
 *
 * DESIGN: fire and forget for saves (a save that fails leaves the session
 * resumable on its node only, like a save RocksDB refused); a lookup is one
 * asynchronous JS_LAST (a round trip) per resume, after the local one. The
 * record is the session's fields in a small binary layout:
 *   [0] 1 (version)  [1..3) room name length, LE  room name (its store name)
 *   resume hash (32)  last id (8, LE)  expiry ms (8, LE)
 *   attachment length (4, LE) attachment  tags length (4, LE) tags
 */
#include "rt/rt.h"
#include "core/bytes.h"
#include "core/log.h"
#include "core/time.h"

#if RR_HAVE_CLUSTER

#include "cluster/cluster.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CS_VERSION 1
#define CS_PREFIX "ringroom.session."

struct cs_put {
	struct rr_cluster_req req;
	char subject[sizeof(CS_PREFIX) + RR_SESSION_ID_LEN];
	uint8_t data[];
};

struct cs_get {
	struct rr_cluster_req req;
	char subject[sizeof(CS_PREFIX) + RR_SESSION_ID_LEN];
	struct rr_core *core;
	struct rr_room *room;
	struct rr_conn *conn;
	uint64_t gen;
	rr_rt_csession_fn *done;
	bool has_local;
	struct rr_store_session local; /* the node's own copy, into buf */
	uint8_t buf[];
};

/* A session id is base64url: safe as a subject token as it is. */
static void subject_of(char *out, const char *sid)
{
	memcpy(out, CS_PREFIX, sizeof(CS_PREFIX) - 1);
	memcpy(out + sizeof(CS_PREFIX) - 1, sid, RR_SESSION_ID_LEN);
	out[sizeof(CS_PREFIX) - 1 + RR_SESSION_ID_LEN] = '\0';
}

static void put_done(struct rr_cluster_req *req)
{
	if (req->res < 0 && req->res != -ENOTCONN && req->res != -ESHUTDOWN)
		rr_debug("saving a session to the cluster: %s", strerror(-req->res));
	free(req->arg);
}

void rr_rt_session_save(struct rr_core *core, struct rr_conn *c)
{
	rr_rt_session_put(core, c);
	struct rr_conn_ext *x = cx(c);
	struct rr_room *r = c->room ? c->room : (x ? x->left_room : NULL);
	if (x == NULL || r == NULL || !rr_rt_clog_wanted(r) || x->session[0] == '\0')
		return;
	const struct rr_room_rt *rt = rt_of(r);
	size_t len = 3 + rt->store_name_len + 32 + 16 + 4 + x->attachment_len + 4 + x->tags_len;
	struct cs_put *p = malloc(sizeof(*p) + len);
	if (p == NULL)
		return;
	uint8_t *d = p->data;
	d[0] = CS_VERSION;
	rr_put_le(d + 1, rt->store_name_len, 2);
	d += 3;
	memcpy(d, rt->store_name, rt->store_name_len);
	d += rt->store_name_len;
	memcpy(d, x->resume_hash, 32);
	d += 32;
	rr_put_le(d, x->last_id, 8);
	rr_put_le(d + 8, rr_wall_ms() + rr_handler_cfg.session_ttl_ms, 8);
	d += 16;
	rr_put_le(d, x->attachment_len, 4);
	if (x->attachment_len)
		memcpy(d + 4, x->attachment, x->attachment_len);
	d += 4 + x->attachment_len;
	rr_put_le(d, x->tags_len, 4);
	if (x->tags_len)
		memcpy(d + 4, x->tags, x->tags_len);
	subject_of(p->subject, x->session);
	p->req = (struct rr_cluster_req){
	    .op = RR_CLUSTER_JS_PUBLISH,
	    .core = core->id,
	    .reply_ring_fd = core->ring_fd,
	    .done = put_done,
	    .arg = p,
	    .subject = p->subject,
	    .data = p->data,
	    .len = (uint32_t)len,
	};
	if (rr_room_net_submit(core, &p->req) < 0)
		free(p); /* down or full: it resumes on this node only */
}

/* The record's fields, pointing into data; false when it is not one. */
static bool decode(const uint8_t *d, uint32_t len, struct rr_store_session *ss)
{
	if (len < 3 || d[0] != CS_VERSION)
		return false;
	uint32_t rl = (uint32_t)rr_get_le(d + 1, 2), off = 3;
	if (len - off < rl + 32 + 16 + 4)
		return false;
	ss->room = (const char *)d + off;
	ss->room_len = rl;
	off += rl;
	memcpy(ss->resume_hash, d + off, 32);
	off += 32;
	ss->last_id = rr_get_le(d + off, 8);
	ss->expiry_ms = rr_get_le(d + off + 8, 8);
	off += 16;
	ss->attachment_len = (uint32_t)rr_get_le(d + off, 4);
	off += 4;
	if (len - off < ss->attachment_len + 4u)
		return false;
	ss->attachment = d + off;
	off += ss->attachment_len;
	ss->tags_len = (uint32_t)rr_get_le(d + off, 4);
	off += 4;
	if (len - off != ss->tags_len)
		return false;
	ss->tags = d + off;
	return true;
}

static void get_done(struct rr_cluster_req *req)
{
	struct cs_get *g = req->arg;
	struct rr_store_session ss;
	bool found = req->res == 0 && decode(req->out_data, req->out_len, &ss) &&
		     (ss.expiry_ms == 0 || ss.expiry_ms > rr_wall_ms());
	if (req->res == 0 && !found)
		rr_debug("a session record in the cluster is expired or not one: ignored");
	struct rr_room *r = g->room;
	rt_of(r)->ops_inflight--;
	r->busy++; /* the callback may empty the room */
	/* the cluster's record decides; without one (never saved there, or
	 * NATS unreachable) the node's own copy does */
	const struct rr_store_session *use = found ? &ss : g->has_local ? &g->local : NULL;
	if (req->res == 0 && !found)
		use = NULL; /* expired or not one: no session */
	g->done(g->core, g->conn, g->gen, use);
	r->busy--;
	rr_room_release_if_empty(g->core, r);
	free(req->out_data);
	free(g);
}

int rr_rt_csession_get(struct rr_core *core, struct rr_conn *c,
		       const struct rr_store_session *local, rr_rt_csession_fn *done)
{
	struct rr_conn_ext *x = cx(c);
	struct rr_room *r = x ? x->waiting_room : NULL;
	if (r == NULL || !rr_rt_clog_wanted(r) || strlen(x->session) != RR_SESSION_ID_LEN)
		return -ENOTSUP;
	size_t extra = local ? local->room_len + local->attachment_len + local->tags_len : 0;
	struct cs_get *g = calloc(1, sizeof(*g) + extra);
	if (g == NULL)
		return -ENOMEM;
	if (local) {
		uint8_t *p = g->buf;
		g->has_local = true;
		g->local = *local;
		memcpy(p, local->room, local->room_len);
		g->local.room = (const char *)p;
		p += local->room_len;
		if (local->attachment_len)
			memcpy(p, local->attachment, local->attachment_len);
		g->local.attachment = p;
		p += local->attachment_len;
		if (local->tags_len)
			memcpy(p, local->tags, local->tags_len);
		g->local.tags = p;
	}
	subject_of(g->subject, x->session);
	g->core = core;
	g->room = r;
	g->conn = c;
	g->gen = c->gen;
	g->done = done;
	g->req = (struct rr_cluster_req){
	    .op = RR_CLUSTER_JS_LAST,
	    .core = core->id,
	    .reply_ring_fd = core->ring_fd,
	    .done = get_done,
	    .arg = g,
	    .subject = g->subject,
	    .kv = true,
	    .want_data = true,
	};
	int rc = rr_room_net_submit(core, &g->req);
	if (rc < 0) {
		free(g);
		return rc;
	}
	rt_of(r)->ops_inflight++; /* the room stays while the lookup runs */
	return 0;
}

#else /* no cluster thread in this build */

void rr_rt_session_save(struct rr_core *core, struct rr_conn *c)
{
	rr_rt_session_put(core, c);
}

int rr_rt_csession_get(struct rr_core *core, struct rr_conn *c,
		       const struct rr_store_session *local, rr_rt_csession_fn *done)
{
	(void)core;
	(void)c;
	(void)local;
	(void)done;
	return -ENOTSUP;
}

#endif
