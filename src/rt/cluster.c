/*
 * The cluster's log of a room (--cluster; kernel-notes/cluster.md, "/chat/
 * across nodes"): for the built-in /chat/ handler, the room's messages live
 * in the JetStream stream on ringroom.chat.<room>, one order for every
 * node, and this node's RocksDB log is a copy of it.
 *
 * DESIGN: the room's home core runs, per loaded room, an ordered consumer
 * of the room's subject (from what the stream keeps) and at most one
 * JetStream publish. Everything the room shows comes from the consumer, in
 * stream order: a message is first written to the local log under its id
 * (the Rr-Id header), then either completes this node's append it is (its
 * publish was acked with the same stream sequence) or goes to the
 * handler's log_arrived. Ids are contiguous because each publish carries
 * id N and a compare-and-set on the stream sequence of message N-1: the
 * stream takes one message per (room, previous). A publish that lost the
 * race (-ESTALE) waits until the consumer has brought the winner, and the
 * handler numbers its message again (-EXDEV); so does every append queued
 * behind a failed one, since each was numbered as if those before it would
 * be stored.
 *
 * Loading: the local log's newest id L (RocksDB), the stream's newest id T
 * (JS_LAST); the consumer replays what the stream keeps, skips ids <= L,
 * writes the others; the room is ready (members open) once the local log
 * has T. Its epoch comes from the stream's creation time, the same on every
 * node.
 */
#include "rt/rt.h"
#include "core/log.h"

struct rr_rt_clog_hooks rr_rt_clog_hooks;

#if RR_HAVE_CLUSTER

#include "cluster/cluster.h"
#include "core/hash.h"
#include "http/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An append of this node, in append order. */
struct clog_pub {
	struct clog_pub *next;
	struct rt_clog *cl;
	struct rr_cluster_req req;
	uint64_t id; /* the id it was numbered with */
	rr_log_done_fn *done;
	void *arg;
	bool sent;     /* published, waiting for its answer */
	bool answered; /* the answer came: res */
	int res;
	uint64_t seq; /* the ack's stream sequence */
	char msg_id[65]; /* Nats-Msg-Id, "" without a key */
	uint32_t len;
	uint8_t data[];
};

/* A message from the consumer, in stream order, until it is shown. */
struct clog_in {
	struct clog_in *next;
	struct rt_clog *cl;
	uint64_t id, seq;
	struct clog_pub *mine; /* this node's append it completes, or NULL */
	bool written;	       /* in the local log (or it was there already) */
	bool old;	       /* it was there already: nothing to show */
	uint32_t len;
	uint8_t data[];
};

struct rt_clog {
	struct rt_clog *next, *prev; /* the core's list */
	struct rr_core *core;
	struct rr_room *room; /* NULL once the room is gone */
	char subject[RR_CLUSTER_SUBJECT_MAX];
	struct rr_cluster_sub *sub;
	struct rr_cluster_req last_req, sub_req, unsub_req;
	uint32_t inflight; /* cluster requests not yet completed */
	bool consuming;	   /* sub_req completed with 0 */
	bool ready;
	bool pumping;
	bool stale;	   /* a publish lost a race: wait for the consumer */
	bool warned_gap;
	uint64_t stale_seq;
	uint64_t cache_id;	     /* newest id in the local log */
	uint64_t shown_id;	     /* newest id shown (acked or log_arrived) */
	uint64_t last_id, last_seq;  /* newest message consumed */
	uint64_t target_id;	     /* loading: the stream's newest id */
	struct clog_pub *pub_head, *pub_tail;
	uint32_t npub;
	struct clog_in *in_head, *in_tail, *in_next; /* in_next: not yet written */
};

static struct rr_cluster *cluster(void)
{
	return rr_handler_cfg.cluster;
}

static struct rt_core *rtc(struct rr_core *core)
{
	return core->layer[RR_LAYER_RT];
}

bool rr_rt_clog_wanted(const struct rr_room *r)
{
	const struct rr_room_rt *rt = rt_of(r);
	/* the built-in handler only: one loaded from a shared object is built
	 * against ABI 2, whose struct has no log_arrived to read */
	return cluster() && rt && r->kind == RR_ROUTE_CHAT &&
	       rt->h == rr_handler_for_route(RR_ROUTE_CHAT) && rt->h->log_arrived;
}

static void clog_free(struct rt_clog *cl)
{
	struct rt_core *c = rtc(cl->core);
	if (cl->prev)
		cl->prev->next = cl->next;
	else if (c)
		c->clogs = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	while (cl->in_head) {
		struct clog_in *in = cl->in_head;
		cl->in_head = in->next;
		free(in);
	}
	while (cl->pub_head) {
		struct clog_pub *p = cl->pub_head;
		cl->pub_head = p->next;
		free(p);
	}
	free(cl);
}

static void maybe_free(struct rt_clog *cl)
{
	if (cl->room == NULL && cl->inflight == 0 && cl->sub == NULL)
		clog_free(cl);
}

static void unsub_done(struct rr_cluster_req *req)
{
	struct rt_clog *cl = req->arg;
	cl->inflight--;
	cl->sub = NULL;
	maybe_free(cl);
}

static void unsubscribe(struct rt_clog *cl)
{
	if (cl->sub == NULL)
		return;
	if (cluster() == NULL) {
		cl->sub = NULL; /* closed with the cluster */
		return;
	}
	cl->unsub_req = (struct rr_cluster_req){
	    .op = RR_CLUSTER_UNSUBSCRIBE,
	    .core = cl->core->id,
	    .reply_ring_fd = cl->core->ring_fd,
	    .done = unsub_done,
	    .arg = cl,
	    .sub = cl->sub,
	};
	if (rr_room_net_submit(cl->core, &cl->unsub_req) == 0)
		cl->inflight++;
	else
		cl->sub = NULL; /* closing: the cluster drops it */
}

void rr_rt_clog_stop(struct rr_core *core, struct rr_room_rt *rt)
{
	struct rt_clog *cl = rt->clog;
	(void)core;
	if (cl == NULL)
		return;
	rr_rt_nodes_room_stop(rt);
	rt->clog = NULL;
	cl->room = NULL;
	unsubscribe(cl);
	maybe_free(cl);
}

/* Loading failed: the room answers its waiters 503 and tries again on the
 * next connection. */
static void load_failed(struct rt_clog *cl, const char *why, int err)
{
	struct rr_room *r = cl->room;
	struct rr_core *core = cl->core;
	struct rr_room_rt *rt = rt_of(r);
	rr_warn("room '%s': loading it from the cluster failed: %s%s%s", r->name, why,
		err ? ": " : "", err ? strerror(-err) : "");
	rr_rt_clog_stop(core, rt); /* may free cl */
	rt->load = RR_LOAD_FAILED;
	rr_rt_clog_hooks.room_ready(core, r);
}

static void maybe_ready(struct rt_clog *cl)
{
	if (cl->ready || cl->room == NULL || !cl->consuming || cl->cache_id < cl->target_id)
		return;
	cl->ready = true;
	rt_of(cl->room)->last_id = cl->cache_id;
	rr_rt_clog_hooks.room_ready(cl->core, cl->room);
}

static void pump(struct rt_clog *cl);
static void process(struct rt_clog *cl);

/* Every append still queued ends: the first with res, the others with
 * -EXDEV (each was numbered as if the ones before would be stored). The
 * handler may append again from its callback: those queue anew. */
static void fail_all_id(struct rt_clog *cl, int res, uint64_t id)
{
	struct clog_pub *p = cl->pub_head;
	cl->pub_head = cl->pub_tail = NULL;
	cl->npub = 0;
	while (p) {
		struct clog_pub *next = p->next;
		if (p->done && cl->room)
			p->done(cl->room, p->arg, res, id);
		free(p);
		res = -EXDEV;
		id = 0;
		p = next;
	}
}

static void fail_all(struct rt_clog *cl, int res)
{
	fail_all_id(cl, res, 0);
}

static void pub_done(struct rr_cluster_req *req)
{
	struct clog_pub *p = req->arg;
	struct rt_clog *cl = p->cl;
	struct rr_room *r = cl->room;
	cl->inflight--;
	p->answered = true;
	p->res = req->res;
	p->seq = req->seq;
	if (req->res == 0 && req->duplicate) {
		/* its key was stored before (a resend after a lost ack): the
		 * stream kept nothing new, req->room_id names the original */
		p->res = -EALREADY;
		p->seq = 0;
	}
	if (r)
		r->busy++;
	if (req->res == -ESTALE) {
		cl->stale = true;
		cl->stale_seq = cl->last_seq;
	}
	process(cl); /* a message waiting for this answer goes on */
	if (cl->pub_head == p && p->res != 0) {
		if (p->res != -ESTALE && p->res != -ENOTCONN && p->res != -EALREADY)
			rr_warn("room '%s': publishing to the cluster: %s",
				r ? r->name : "(gone)", strerror(-p->res));
		fail_all_id(cl, p->res == -ESTALE ? -EXDEV : p->res,
			    p->res == -EALREADY ? req->room_id : 0);
	}
	pump(cl);
	if (r) {
		r->busy--;
		rr_room_release_if_empty(cl->core, r);
	}
	maybe_free(cl);
}

static void pump(struct rt_clog *cl)
{
	if (cl->pumping)
		return;
	cl->pumping = true;
	for (;;) {
		struct clog_pub *p = cl->pub_head;
		if (p == NULL || p->sent || !cl->ready || cl->room == NULL)
			break;
		if (cl->in_head)
			break; /* show what came first: appends are numbered after it */
		if (cl->stale && cl->last_seq == cl->stale_seq)
			break; /* the message that won is not here yet */
		cl->stale = false;
		if (p->id != cl->last_id + 1) {
			fail_all(cl, -EXDEV); /* numbered before a message from elsewhere */
			continue;
		}
		p->req = (struct rr_cluster_req){
		    .op = RR_CLUSTER_JS_PUBLISH,
		    .core = cl->core->id,
		    .reply_ring_fd = cl->core->ring_fd,
		    .done = pub_done,
		    .arg = p,
		    .subject = cl->subject,
		    .data = p->data,
		    .len = p->len,
		    .room_id = p->id,
		    .expect_set = true,
		    .expect_seq = cl->last_seq,
		    .msg_id = p->msg_id[0] ? p->msg_id : NULL,
		};
		int rc = rr_room_net_submit(cl->core, &p->req);
		if (rc < 0) {
			fail_all(cl, rc == -ESHUTDOWN ? -ENOTCONN : rc);
			continue;
		}
		p->sent = true;
		cl->inflight++;
		break;
	}
	cl->pumping = false;
}

/* Show what is written, from the head, in stream order. */
static void deliver(struct rt_clog *cl)
{
	while (cl->in_head && cl->in_head->written) {
		struct clog_in *in = cl->in_head;
		cl->in_head = in->next;
		if (cl->in_head == NULL)
			cl->in_tail = NULL;
		if (cl->in_next == in)
			cl->in_next = in->next;
		struct rr_room *r = cl->room;
		if (in->id > cl->shown_id)
			cl->shown_id = in->id;
		if (in->mine) {
			struct clog_pub *p = in->mine;
			if (p->done && r)
				p->done(r, p->arg, 0, in->id);
			free(p);
		} else if (!in->old && cl->ready && r) {
			rt_of(r)->h->log_arrived(r, in->id, in->data, in->len);
		}
		free(in);
	}
}

static void written(struct rr_core *core, struct sreq *s)
{
	struct clog_in *in = s->arg;
	struct rt_clog *cl = in->cl;
	(void)core;
	if (s->req.res < 0)
		rr_warn("room '%s': message %llu is in the cluster but not in this node's log: %s",
			s->room->name, (unsigned long long)in->id, strerror(-s->req.res));
	else if (in->id > cl->cache_id)
		cl->cache_id = in->id;
	in->written = true;
	deliver(cl);
	maybe_ready(cl);
	pump(cl);
}

/* Take the consumer's messages in order: each is written to the local log
 * (unless it is there), and matched with this node's append it is. */
static void process(struct rt_clog *cl)
{
	struct clog_in *in;
	while ((in = cl->in_next) != NULL && cl->room) {
		struct clog_pub *p = cl->pub_head;
		if (in->id <= cl->last_id) { /* in the local log already */
			in->old = true;
			in->written = true;
			cl->last_seq = in->seq;
			cl->in_next = in->next;
			continue;
		}
		if (p && p->sent && p->id == in->id) {
			if (!p->answered)
				return; /* ours, or the one that beat ours: the answer says */
			if (p->res == 0 && p->seq == in->seq) {
				in->mine = p;
				cl->pub_head = p->next;
				if (cl->pub_head == NULL)
					cl->pub_tail = NULL;
				cl->npub--;
			}
		}
		if (in->id != cl->last_id + 1 && !cl->warned_gap) {
			cl->warned_gap = true;
			rr_warn("room '%s': the cluster's log jumps from %llu to %llu (retention "
				"passed this node by)",
				cl->room->name, (unsigned long long)cl->last_id,
				(unsigned long long)in->id);
		}
		cl->last_id = in->id;
		cl->last_seq = in->seq;
		cl->in_next = in->next;
		struct rr_room_rt *rt = rt_of(cl->room);
		struct sreq *s =
		    rr_rt_sreq_new(cl->core, cl->room, RR_STORE_APPEND, SR_APPEND, in->len);
		int rc = -ENOMEM;
		if (s) {
			memcpy(s->data + rt->store_name_len, in->data, in->len);
			s->req.data = s->data + rt->store_name_len;
			s->req.len = in->len;
			s->req.id = in->id;
			s->req.ts_ms = rr_wall_ms();
			s->done = written;
			s->arg = in;
			rc = rr_rt_sreq_submit(cl->core, s);
		}
		if (rc < 0) {
			rr_warn("room '%s': message %llu is in the cluster but not in this node's "
				"log: %s",
				cl->room->name, (unsigned long long)in->id, strerror(-rc));
			in->written = true;
		}
	}
	deliver(cl);
	maybe_ready(cl);
}

static void on_msg(struct rr_cluster_msg *msg)
{
	struct rt_clog *cl = msg->sub_ctx;
	if (cl->room == NULL)
		return;
	struct clog_in *in = calloc(1, sizeof(*in) + msg->len);
	if (in == NULL) {
		rr_warn("room '%s': out of memory for a message from the cluster", cl->room->name);
		return;
	}
	in->cl = cl;
	in->id = msg->room_id;
	in->seq = msg->seq;
	in->len = msg->len;
	memcpy(in->data, msg->data, msg->len);
	if (cl->in_tail)
		cl->in_tail->next = in;
	else
		cl->in_head = in;
	cl->in_tail = in;
	if (cl->in_next == NULL)
		cl->in_next = in;
	struct rr_room *r = cl->room;
	r->busy++;
	process(cl);
	pump(cl);
	r->busy--;
	rr_room_release_if_empty(cl->core, r);
}

static void sub_done(struct rr_cluster_req *req)
{
	struct rt_clog *cl = req->arg;
	cl->inflight--;
	if (req->res == 0)
		cl->sub = req->sub;
	if (cl->room == NULL) {
		unsubscribe(cl);
		maybe_free(cl);
		return;
	}
	if (req->res < 0) {
		load_failed(cl, "its consumer", req->res);
		return;
	}
	cl->consuming = true;
	maybe_ready(cl);
}

static void last_done(struct rr_cluster_req *req)
{
	struct rt_clog *cl = req->arg;
	cl->inflight--;
	if (cl->room == NULL) {
		maybe_free(cl);
		return;
	}
	if (req->res < 0 && req->res != -ENOENT) {
		load_failed(cl, "its newest message", req->res);
		return;
	}
	cl->target_id = req->res == 0 ? req->room_id : 0;
	if (cl->cache_id > cl->target_id) {
		load_failed(cl, "this node's log has ids the cluster's does not (a --data-dir "
				"written without --cluster, or the stream was made again)",
			    0);
		return;
	}
	cl->sub_req = (struct rr_cluster_req){
	    .op = RR_CLUSTER_JS_CONSUME,
	    .core = cl->core->id,
	    .reply_ring_fd = cl->core->ring_fd,
	    .done = sub_done,
	    .arg = cl,
	    .subject = cl->subject,
	    .on_msg = on_msg,
	    .sub_ctx = cl,
	};
	int rc = rr_room_net_submit(cl->core, &cl->sub_req);
	if (rc < 0) {
		load_failed(cl, "its consumer", rc);
		return;
	}
	cl->inflight++;
}

int rr_rt_clog_start(struct rr_core *core, struct rr_room *r)
{
	struct rr_room_rt *rt = rt_of(r);
	uint64_t created = rr_cluster_stream_created(cluster());
	if (created == 0)
		return -ENOTCONN; /* the stream is not known yet */
	struct rt_clog *cl = calloc(1, sizeof(*cl));
	if (cl == NULL)
		return -ENOMEM;
	int rc = rr_cluster_room_subject(cl->subject, sizeof(cl->subject), "ringroom.chat", r->name,
					 r->name_len);
	if (rc < 0) {
		free(cl);
		return rc;
	}
	cl->core = core;
	cl->room = r;
	cl->cache_id = cl->last_id = cl->shown_id = rt->last_id;
	/* the epoch: the stream's, the same on every node */
	snprintf(rt->epoch, sizeof(rt->epoch), "%016llx",
		 (unsigned long long)rr_hash((const char *)&created, sizeof(created)));
	cl->last_req = (struct rr_cluster_req){
	    .op = RR_CLUSTER_JS_LAST,
	    .core = core->id,
	    .reply_ring_fd = core->ring_fd,
	    .done = last_done,
	    .arg = cl,
	    .subject = cl->subject,
	};
	rc = rr_room_net_submit(core, &cl->last_req);
	if (rc < 0) {
		free(cl);
		return rc;
	}
	cl->inflight++;
	struct rt_core *c = rtc(core);
	cl->next = c->clogs;
	if (c->clogs)
		c->clogs->prev = cl;
	c->clogs = cl;
	rt->clog = cl;
	rr_rt_nodes_room_start(core, r);
	return 0;
}

int rr_rt_clog_append(struct rr_room_rt *rt, const void *key, size_t klen, const void *data,
		      size_t len, uint64_t *id_out, rr_log_done_fn *done, void *arg)
{
	struct rt_clog *cl = rt->clog;
	if (!cl->ready)
		return -EAGAIN;
	if (cluster() == NULL || rr_cluster_state(cluster()) != RR_CLUSTER_CONNECTED)
		return -ENOTCONN; /* never queued for later: the client hears now */
	if (len > RR_CLUSTER_PAYLOAD_MAX)
		return -EMSGSIZE;
	struct clog_pub *p = calloc(1, sizeof(*p) + len);
	if (p == NULL)
		return -ENOMEM;
	p->cl = cl;
	p->id = cl->shown_id + cl->npub + 1; /* rr_log_last_id() + 1 */
	if (key) {
		/* Nats-Msg-Id: the room and the key, hashed (the key is the
		 * client's bytes; a header value must be plain text) */
		uint8_t in[sizeof(rt->store_name) + 1 + 256], h[32];
		size_t kn = klen < 256 ? klen : 256;
		memcpy(in, rt->store_name, rt->store_name_len);
		in[rt->store_name_len] = 0;
		memcpy(in + rt->store_name_len + 1, key, kn);
		rr_rt_sha256(in, rt->store_name_len + 1 + kn, h);
		static const char hex[] = "0123456789abcdef";
		for (int i = 0; i < 32; i++) {
			p->msg_id[2 * i] = hex[h[i] >> 4];
			p->msg_id[2 * i + 1] = hex[h[i] & 15];
		}
	}
	p->done = done;
	p->arg = arg;
	p->len = (uint32_t)len;
	memcpy(p->data, data, len);
	if (cl->pub_tail)
		cl->pub_tail->next = p;
	else
		cl->pub_head = p;
	cl->pub_tail = p;
	cl->npub++;
	if (id_out)
		*id_out = p->id;
	pump(cl);
	return 0;
}

/* What the handler numbers its next append after: the newest id shown,
 * not the newest consumed (a member opened now reads the local log up to
 * this id), plus the appends queued; a publish waits until what was
 * consumed is shown, so the numbers then agree with the stream. */
uint64_t rr_rt_clog_last_id(const struct rr_room_rt *rt)
{
	return rt->clog->shown_id + rt->clog->npub;
}

bool rr_rt_clog_busy(const struct rr_room_rt *rt)
{
	return rt->clog && (rt->clog->pub_head || rt->clog->in_head);
}

int rr_rt_clog_init(struct rr_core *core)
{
	core->layer[RR_LAYER_RT] = calloc(1, sizeof(struct rt_core));
	return core->layer[RR_LAYER_RT] ? 0 : -ENOMEM;
}

void rr_rt_clog_fini(struct rr_core *core)
{
	struct rt_core *c = rtc(core);
	if (c == NULL)
		return;
	rr_rt_nodes_fini(core);
	/* after rr_cluster_close: nothing refers to them any more */
	while (c->clogs) {
		struct rt_clog *cl = c->clogs;
		if (cl->room && rt_of(cl->room))
			rt_of(cl->room)->clog = NULL;
		clog_free(cl);
	}
	free(c);
	core->layer[RR_LAYER_RT] = NULL;
}

#else /* no cluster thread in this build */

bool rr_rt_clog_wanted(const struct rr_room *r)
{
	(void)r;
	return false;
}

int rr_rt_clog_start(struct rr_core *core, struct rr_room *r)
{
	(void)core;
	(void)r;
	return -ENOSYS;
}

void rr_rt_clog_stop(struct rr_core *core, struct rr_room_rt *rt)
{
	(void)core;
	(void)rt;
}

int rr_rt_clog_append(struct rr_room_rt *rt, const void *key, size_t klen, const void *data,
		      size_t len, uint64_t *id_out, rr_log_done_fn *done, void *arg)
{
	(void)rt;
	(void)key;
	(void)klen;
	(void)data;
	(void)len;
	(void)id_out;
	(void)done;
	(void)arg;
	return -ENOSYS;
}

uint64_t rr_rt_clog_last_id(const struct rr_room_rt *rt)
{
	(void)rt;
	return 0;
}

bool rr_rt_clog_busy(const struct rr_room_rt *rt)
{
	(void)rt;
	return false;
}

int rr_rt_clog_init(struct rr_core *core)
{
	(void)core;
	return 0;
}

void rr_rt_clog_fini(struct rr_core *core)
{
	(void)core;
}

#endif
