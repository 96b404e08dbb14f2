/*
 * Rooms' events across nodes and the nodes that are alive (--cluster;
 * kernel-notes/cluster.md, "Presence across nodes"). For the rooms whose
 * log is the cluster's (rr_rt_clog_wanted: the built-in /chat/ handler),
 * the handler can tell the same room on the other nodes what is not a
 * logged message (joins, leaves, typing, presence, kicks) with
 * rr_room_tell_nodes(), and learns when another node stopped.
 *
 * DESIGN: a loaded room's home core holds one core NATS subscription on
 * ringroom.evt.<room> (made when the room starts its cluster log, dropped
 * when it leaves memory); what arrives goes to the handler's node_message.
 * Every node also says it is alive: core 0 publishes a heartbeat on
 * ringroom.nodes every NODES_BEAT_MS, and every core subscribes to it and
 * keeps a table of the nodes it heard, each with its boot id (random per
 * process start). A node not heard for NODES_DEAD_MS, or heard with a new
 * boot id (it restarted), is gone: every room of the core gets node_gone,
 * so what that node had told (its users) is forgotten. When the connection
 * to the cluster comes back after an outage, every room gets nodes_ready
 * again (core NATS is at most once: what was told meanwhile is lost, so
 * the handler says it again).
 *
 * Envelope of both subjects:
 *   [0] 1 (version)   [1] L   [2 .. 2+L) the node's name
 *   [2+L .. 10+L) its boot id, little endian   then the payload
 */
#include "rt/rt.h"
#include "core/log.h"
#include "http/http.h"

#if RR_HAVE_CLUSTER

#include "cluster/cluster.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define NODES_VERSION 1
#define NODES_BEAT_MS 1000
/* three beats missed: the node is gone (a SIGKILLed node's members are
 * shown as gone within about NODES_DEAD_MS + NODES_BEAT_MS) */
#define NODES_DEAD_MS 3000
#define NODES_HEAD_MAX (2 + 255 + 8)
#define NODES_SUBJECT "ringroom.nodes"
/* A room that just started listening has said hello; the other nodes'
 * answers (their users) come within a few round trips. A presence API call
 * on it waits this long after the hello, so it lists every node's users. */
#define NODES_SETTLE_MS 250

struct rt_evt {
	struct rt_evt *next, *prev; /* the core's list */
	struct rt_nodes *nodes;
	struct rr_room *room; /* NULL once the room is gone */
	struct rr_cluster_sub *sub;
	struct rr_cluster_req sub_req, unsub_req;
	uint32_t inflight;
	uint64_t ready_ms;	       /* its hello went out (0: not yet) */
	bool ready_due;		       /* subscribed before the handler's init */
	struct rr_api_call *held;      /* presence calls waiting for the answers */
	bool waited;		       /* the wait is over: calls run at once */
	struct rr_timer settle;
	char subject[RR_CLUSTER_SUBJECT_MAX];
};

struct rt_node {
	uint64_t boot;
	uint64_t seen_ms;
	uint8_t len;
	char name[255];
};

struct rt_nodes {
	struct rr_core *core;
	struct rt_evt *evts;
	struct rt_node *node;
	uint32_t n, cap;
	struct rr_cluster_sub *beat_sub;
	struct rr_cluster_req beat_req;
	struct rr_timer tick;
	bool up; /* the connection was up at the last tick */
	bool warned_bad, warned_name, warned_full;
	uint8_t head[NODES_HEAD_MAX]; /* this node's envelope */
	uint32_t head_len;
};

static uint64_t boot_id; /* this process's, set once before the cores start */

struct rr_rt_nodes_hooks rr_rt_nodes_hooks;

static struct rr_cluster *cluster(void)
{
	return rr_handler_cfg.cluster;
}

static struct rt_nodes *nodes_of(struct rr_core *core)
{
	struct rt_core *c = core->layer[RR_LAYER_RT];
	return c ? c->nodes : NULL;
}

/* The handler's callbacks, for rooms of the cluster (the same rule as
 * rr_rt_clog_wanted: only the built-in handler has these fields). */
static const struct rr_handler *handler(const struct rr_room *r)
{
	const struct rr_room_rt *rt = rt_of(r);
	return rt && rt->clog ? rt->h : NULL;
}

static void tell_gone(struct rt_nodes *ns, const struct rt_node *nd)
{
	rr_info("core %u: node '%.*s' is gone: its members leave this node's rooms",
		ns->core->id, (int)nd->len, nd->name);
	for (struct rt_evt *e = ns->evts; e; e = e->next) {
		const struct rr_handler *h = handler(e->room);
		if (h && h->node_gone)
			h->node_gone(e->room, nd->name, nd->len);
	}
}

/* Heard from a node: note it; a new boot id means the old one is gone. */
static void heard(struct rt_nodes *ns, const char *name, uint8_t len, uint64_t boot)
{
	for (uint32_t i = 0; i < ns->n; i++) {
		struct rt_node *nd = &ns->node[i];
		if (nd->len != len || memcmp(nd->name, name, len) != 0)
			continue;
		if (nd->boot != boot) {
			tell_gone(ns, nd);
			nd->boot = boot;
		}
		nd->seen_ms = ns->core->now_ms;
		return;
	}
	if (ns->n == ns->cap) {
		uint32_t cap = ns->cap ? ns->cap * 2 : 8;
		struct rt_node *p = realloc(ns->node, cap * sizeof(*p));
		if (p == NULL)
			return; /* not tracked: its users stay until it tells */
		ns->node = p;
		ns->cap = cap;
	}
	struct rt_node *nd = &ns->node[ns->n++];
	nd->boot = boot;
	nd->seen_ms = ns->core->now_ms;
	nd->len = len;
	memcpy(nd->name, name, len);
}

/* Check an envelope and note its node; the payload's offset, or 0 when the
 * message is not a ringroom node's or is this node's own. */
static uint32_t envelope(struct rt_nodes *ns, const struct rr_cluster_msg *msg)
{
	const uint8_t *d = msg->data;
	uint32_t head = msg->len >= 2 ? 2u + d[1] + 8u : 0;
	if (msg->len < 2 || d[0] != NODES_VERSION || head > msg->len || d[1] == 0) {
		if (!ns->warned_bad) {
			ns->warned_bad = true;
			rr_warn("core %u: a message on %s is not a ringroom node's: dropped "
				"(logged once)",
				ns->core->id, msg->subject);
		}
		return 0;
	}
	uint64_t boot;
	memcpy(&boot, d + 2 + d[1], 8);
	if (d[1] + 10u == ns->head_len && memcmp(d + 2, ns->head + 2, d[1]) == 0) {
		if (boot != boot_id && !ns->warned_name) {
			ns->warned_name = true;
			rr_warn("core %u: another node is named '%.*s' like this one: its "
				"messages are dropped (node names must be unique; logged once)",
				ns->core->id, (int)d[1], (const char *)d + 2);
		}
		return 0;
	}
	heard(ns, (const char *)d + 2, d[1], boot);
	return head;
}

static void beat_msg(struct rr_cluster_msg *msg)
{
	envelope(msg->sub_ctx, msg);
}

static void evt_msg(struct rr_cluster_msg *msg)
{
	struct rt_evt *e = msg->sub_ctx;
	struct rt_nodes *ns = e->nodes;
	uint32_t head = envelope(ns, msg);
	struct rr_room *r = e->room;
	const struct rr_handler *h = handler(r);
	if (head == 0 || h == NULL || h->node_message == NULL)
		return;
	r->busy++;
	h->node_message(r, (const char *)msg->data + 2, msg->data[1], msg->data + head,
			msg->len - head);
	r->busy--;
	rr_room_release_if_empty(ns->core, r);
}

static void evt_free(struct rt_evt *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		e->nodes->evts = e->next;
	if (e->next)
		e->next->prev = e->prev;
	free(e);
}

static void evt_maybe_free(struct rt_evt *e)
{
	if (e->room == NULL && e->inflight == 0 && e->sub == NULL)
		evt_free(e);
}

static void evt_unsub_done(struct rr_cluster_req *req)
{
	struct rt_evt *e = req->arg;
	e->inflight--;
	e->sub = NULL;
	evt_maybe_free(e);
}

static void evt_unsubscribe(struct rt_evt *e)
{
	if (e->sub == NULL)
		return;
	if (cluster() == NULL) {
		e->sub = NULL; /* closed with the cluster */
		return;
	}
	e->unsub_req = (struct rr_cluster_req){
	    .op = RR_CLUSTER_UNSUBSCRIBE,
	    .core = e->nodes->core->id,
	    .reply_ring_fd = e->nodes->core->ring_fd,
	    .done = evt_unsub_done,
	    .arg = e,
	    .sub = e->sub,
	};
	if (rr_room_net_submit(e->nodes->core, &e->unsub_req) == 0)
		e->inflight++;
	else
		e->sub = NULL; /* closing: the cluster drops it */
}

/* Tell the handler it hears the other nodes: once its init ran (before,
 * it has no state to say hello with; rr_rt_nodes_room_ready comes then). */
static void ready(struct rt_evt *e)
{
	struct rr_room *r = e->room;
	const struct rr_handler *h = handler(r);
	if (h == NULL || e->sub == NULL)
		return;
	if (!rt_of(r)->initialised) {
		e->ready_due = true;
		return;
	}
	e->ready_due = false;
	e->ready_ms = e->nodes->core->now_ms;
	if (h->nodes_ready) {
		r->busy++;
		h->nodes_ready(r);
		r->busy--;
	}
}

void rr_rt_nodes_room_ready(struct rr_room *r)
{
	struct rr_room_rt *rt = rt_of(r);
	if (rt && rt->evt && rt->evt->ready_due)
		ready(rt->evt);
}

static void evt_sub_done(struct rr_cluster_req *req)
{
	struct rt_evt *e = req->arg;
	e->inflight--;
	if (req->res == 0)
		e->sub = req->sub;
	if (e->room == NULL) {
		evt_unsubscribe(e);
		evt_maybe_free(e);
		return;
	}
	if (req->res < 0) {
		/* the room still works; it hears no other node's events */
		if (req->res != -ESHUTDOWN)
			rr_warn("room '%s': subscribing to %s: %s (presence stays on this "
				"node)",
				e->room->name, e->subject, strerror(-req->res));
		return;
	}
	/* libnats sent the interest before anything this room publishes
	 * now, so the others' answers reach it */
	struct rr_room *r = e->room;
	ready(e);
	rr_room_release_if_empty(e->nodes->core, r);
}

/* The held presence calls run now: the others had time to answer. */
static void settle_fn(struct rr_timer *t, uint64_t now_ms)
{
	struct rt_evt *e = (struct rt_evt *)((char *)t - offsetof(struct rt_evt, settle));
	struct rr_core *core = e->nodes->core;
	struct rr_room *r = e->room;
	struct rr_api_call *call = e->held;
	(void)now_ms;
	e->held = NULL;
	e->waited = true;
	while (call) {
		struct rr_api_call *next = call->next;
		rt_of(r)->ops_inflight--;
		rr_rt_nodes_hooks.api_run(core, r, call);
		call = next;
	}
	rr_room_release_if_empty(core, r);
}

bool rr_rt_nodes_hold_api(struct rr_core *core, struct rr_room *r, struct rr_api_call *call)
{
	struct rr_room_rt *rt = rt_of(r);
	struct rt_evt *e = rt ? rt->evt : NULL;
	if (e == NULL || e->waited || call->kind != RR_API_CHAT_PRESENCE)
		return false;
	uint64_t at = e->ready_ms + NODES_SETTLE_MS;
	if (e->ready_ms != 0 && core->now_ms >= at)
		return false; /* settled */
	if (e->ready_ms == 0)
		at = core->now_ms + NODES_SETTLE_MS; /* not listening yet: a bound */
	call->next = e->held;
	e->held = call;
	rt->ops_inflight++; /* the room stays until the call has run */
	if (!rr_timer_armed(&e->settle))
		rr_timer_set(&core->wheel, &e->settle, at);
	return true;
}

void rr_rt_nodes_room_start(struct rr_core *core, struct rr_room *r)
{
	struct rt_nodes *ns = nodes_of(core);
	struct rr_room_rt *rt = rt_of(r);
	if (ns == NULL || rt == NULL || rt->evt || cluster() == NULL)
		return;
	struct rt_evt *e = calloc(1, sizeof(*e));
	if (e == NULL ||
	    rr_cluster_room_subject(e->subject, sizeof(e->subject), "ringroom.evt", r->name,
				    r->name_len) < 0) {
		rr_warn("room '%s': no subscription for its events across nodes: out of memory",
			r->name);
		free(e);
		return;
	}
	e->nodes = ns;
	e->room = r;
	rr_timer_init(&e->settle, settle_fn);
	e->sub_req = (struct rr_cluster_req){
	    .op = RR_CLUSTER_SUBSCRIBE,
	    .core = core->id,
	    .reply_ring_fd = core->ring_fd,
	    .done = evt_sub_done,
	    .arg = e,
	    .subject = e->subject,
	    .on_msg = evt_msg,
	    .sub_ctx = e,
	};
	int rc = rr_room_net_submit(core, &e->sub_req);
	if (rc < 0) {
		rr_warn("room '%s': subscribing to %s: %s (presence stays on this node)", r->name,
			e->subject, strerror(-rc));
		free(e);
		return;
	}
	e->inflight++;
	e->next = ns->evts;
	if (ns->evts)
		ns->evts->prev = e;
	ns->evts = e;
	rt->evt = e;
}

void rr_rt_nodes_room_stop(struct rr_room_rt *rt)
{
	struct rt_evt *e = rt->evt;
	if (e == NULL)
		return;
	rt->evt = NULL;
	e->room = NULL;
	if (rr_timer_armed(&e->settle)) /* nothing held: held calls keep the room */
		rr_timer_cancel(&e->nodes->core->wheel, &e->settle);
	evt_unsubscribe(e);
	evt_maybe_free(e);
}

int rr_rt_nodes_tell(struct rr_core *core, struct rr_room_rt *rt, const void *data, size_t len)
{
	struct rt_nodes *ns = nodes_of(core);
	if (ns == NULL || rt->evt == NULL || cluster() == NULL)
		return -ENOTSUP;
	if (len + ns->head_len > RR_CLUSTER_PAYLOAD_MAX)
		return -EMSGSIZE;
	int rc = rr_cluster_publish2(cluster(), core->id, rt->evt->subject, ns->head, ns->head_len,
				     data, (uint32_t)len);
	if (rc == -EAGAIN && !ns->warned_full) {
		ns->warned_full = true;
		rr_warn("core %u: the cluster queue is full: a room's event stays on this node "
			"(logged once)",
			core->id);
	}
	return rc;
}

static void tick(struct rr_timer *t, uint64_t now_ms)
{
	struct rt_nodes *ns = (struct rt_nodes *)((char *)t - offsetof(struct rt_nodes, tick));
	struct rr_core *core = ns->core;
	if (cluster() == NULL)
		return; /* stopping */
	bool up = rr_cluster_state(cluster()) == RR_CLUSTER_CONNECTED;
	if (up && core->id == 0)
		rr_cluster_publish_control(cluster(), core->id, NODES_SUBJECT, ns->head, ns->head_len);
	if (up && !ns->up) {
		/* back after an outage: what the others were told meanwhile is
		 * lost, and they may have taken this node for gone */
		for (struct rt_evt *e = ns->evts; e; e = e->next)
			if (e->room && e->sub)
				ready(e);
	}
	ns->up = up;
	for (uint32_t i = 0; i < ns->n;) {
		struct rt_node *nd = &ns->node[i];
		if (nd->seen_ms + NODES_DEAD_MS > now_ms) {
			i++;
			continue;
		}
		struct rt_node gone = *nd;
		ns->node[i] = ns->node[--ns->n];
		tell_gone(ns, &gone);
	}
	rr_timer_set(&core->wheel, &ns->tick, now_ms + NODES_BEAT_MS);
}

static void beat_sub_done(struct rr_cluster_req *req)
{
	struct rt_nodes *ns = req->arg;
	if (req->res == 0)
		ns->beat_sub = req->sub;
	else if (req->res != -ESHUTDOWN)
		rr_warn("core %u: subscribing to %s: %s (nodes that stop are not noticed)",
			ns->core->id, NODES_SUBJECT, strerror(-req->res));
}

void rr_rt_nodes_register(void)
{
	/* a new one at every start: the other nodes tell a restart apart from
	 * a node that only went quiet */
	if (getrandom(&boot_id, sizeof(boot_id), 0) != sizeof(boot_id))
		boot_id = rr_wall_ms() ^ ((uint64_t)getpid() << 32);
}

void rr_rt_nodes_start(struct rr_core *core)
{
	struct rt_core *c = core->layer[RR_LAYER_RT];
	if (cluster() == NULL || c == NULL)
		return;
	struct rt_nodes *ns = calloc(1, sizeof(*ns));
	if (ns == NULL) {
		rr_warn("core %u: out of memory for the node table: presence stays per node",
			core->id);
		return;
	}
	ns->core = core;
	const char *name = rr_cluster_node_name(cluster());
	size_t len = strlen(name);
	if (len > 255)
		len = 255;
	ns->head[0] = NODES_VERSION;
	ns->head[1] = (uint8_t)len;
	memcpy(ns->head + 2, name, len);
	memcpy(ns->head + 2 + len, &boot_id, 8);
	ns->head_len = 2 + (uint32_t)len + 8;
	c->nodes = ns;
	ns->beat_req = (struct rr_cluster_req){
	    .op = RR_CLUSTER_SUBSCRIBE,
	    .core = core->id,
	    .reply_ring_fd = core->ring_fd,
	    .done = beat_sub_done,
	    .arg = ns,
	    .subject = NODES_SUBJECT,
	    .on_msg = beat_msg,
	    .sub_ctx = ns,
	    .control = true,
	};
	int rc = rr_room_net_submit(core, &ns->beat_req);
	if (rc < 0)
		rr_warn("core %u: subscribing to %s: %s (nodes that stop are not noticed)",
			core->id, NODES_SUBJECT, strerror(-rc));
	rr_timer_init(&ns->tick, tick);
	rr_timer_set(&core->wheel, &ns->tick, core->now_ms + NODES_BEAT_MS);
}

void rr_rt_nodes_fini(struct rr_core *core)
{
	struct rt_core *c = core->layer[RR_LAYER_RT];
	struct rt_nodes *ns = c ? c->nodes : NULL;
	if (ns == NULL)
		return;
	if (rr_timer_armed(&ns->tick))
		rr_timer_cancel(&core->wheel, &ns->tick);
	/* after rr_cluster_close: nothing refers to them any more */
	while (ns->evts) {
		struct rt_evt *e = ns->evts;
		if (rr_timer_armed(&e->settle))
			rr_timer_cancel(&core->wheel, &e->settle);
		if (e->room && rt_of(e->room))
			rt_of(e->room)->evt = NULL;
		evt_free(e);
	}
	free(ns->node);
	free(ns);
	c->nodes = NULL;
}

#else /* no cluster thread in this build */

struct rr_rt_nodes_hooks rr_rt_nodes_hooks;

void rr_rt_nodes_register(void)
{
}

void rr_rt_nodes_room_ready(struct rr_room *r)
{
	(void)r;
}

bool rr_rt_nodes_hold_api(struct rr_core *core, struct rr_room *r, struct rr_api_call *call)
{
	(void)core;
	(void)r;
	(void)call;
	return false;
}

void rr_rt_nodes_room_start(struct rr_core *core, struct rr_room *r)
{
	(void)core;
	(void)r;
}

void rr_rt_nodes_room_stop(struct rr_room_rt *rt)
{
	(void)rt;
}

int rr_rt_nodes_tell(struct rr_core *core, struct rr_room_rt *rt, const void *data, size_t len)
{
	(void)core;
	(void)rt;
	(void)data;
	(void)len;
	return -ENOTSUP;
}

void rr_rt_nodes_start(struct rr_core *core)
{
	(void)core;
}

void rr_rt_nodes_fini(struct rr_core *core)
{
	(void)core;
}

#endif
