/*
 * /raw/ rooms across nodes (--cluster; kernel-notes/cluster.md, "/raw/
 * across nodes"). Without --cluster (or in a build without the cluster
 * thread) every call here returns at once.
 *
 * DESIGN: a room's home core speaks for the node. While the room has
 * members on the node (its home's list counts the stubs of a spread room's
 * members on other cores), the home holds one subscription to
 * ringroom.raw.<room>; a member's message is fanned out locally by its
 * owner and published here once, from the home, so one publisher's
 * messages leave the node in order through one FIFO queue and one NATS
 * connection, and NATS keeps that order per subject. What arrives is
 * fanned out to every member on the node with rr_room_send_all (the
 * publisher is on another node: the connection has no echo).
 *
 * Each room's subscription is a small record in a per-core table, kept
 * apart from the room: the room may be freed and made again while a
 * SUBSCRIBE or UNSUBSCRIBE is in flight. A record has at most one request
 * in flight; when it completes, the record catches up with what the room
 * wants now (members: subscribed; none: unsubscribed, then freed). A
 * request the cluster refuses (its queue full) or that fails is tried
 * again by a timer.
 *
 * Rooms of a loaded handler (--handler) work the same way for what the
 * handler broadcasts (rr_room_broadcast, rr_room_broadcast_tag): each node
 * runs the handler for its own members, and a broadcast reaches the room's
 * members on every node. The runtime names each such route's subject
 * prefix (rr_room_net_kind: ringroom.h.<hash of the mount prefix>), so the
 * nodes must mount the handler on the same prefix.
 *
 * The payload on the subject is an envelope, then the frame's bytes:
 *   [0] 1 (version)   [1] opcode (text 1, binary 2)   [2] L
 *   [3 .. 3+L) the publishing node's name          then the payload
 * or, for a broadcast to the members carrying a tag:
 *   [0] 2   [1] opcode   [2] L   the name   [3+L, 4+L] T (big endian)
 *   then the tag (T bytes, 1..1024)
 * A node drops a message carrying its own name: with no echo it can only
 * come from another node of the same name (logged once: names must be
 * unique, or those nodes never hear each other).
 */
#include "conn/conn.h"
#include "core/assert.h"
#include "core/log.h"
#include "gate/gate.h"
#include "http/http.h"
#include "room/room.h"

#if RR_HAVE_CLUSTER

#include "cluster/cluster.h"
#include "core/hash.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define NET_BUCKETS_INIT 64
#define NET_RETRY_MS 1000
#define NET_ENVELOPE_VERSION 1
#define NET_ENVELOPE_TAGGED 2
#define NET_HEAD_MAX (3 + 255)
#define NET_KINDS 256
#define NET_PREFIX_MAX 48
#define NET_TAG_MAX 1024 /* the runtime's are at most 256 bytes */

struct net_sub {
	struct net_sub *next; /* hash chain */
	struct rr_core *core;
	uint64_t hash;
	struct rr_cluster_sub *sub; /* subscribed: the cluster's handle */
	struct rr_cluster_req req;  /* the one request in flight */
	bool want;		    /* the room has members on this node */
	bool busy;		    /* req is in flight */
	bool failed;		    /* the last try failed: the timer tries again */
	uint8_t kind;
	uint8_t name_len;
	char name[RR_ROOM_NAME_MAX + 1];
	char subject[RR_CLUSTER_SUBJECT_MAX];
};

struct rr_room_net {
	struct net_sub **buckets;
	uint32_t nbuckets, count;
	struct rr_timer retry;		/* failed subscriptions, a refused fence */
	struct rr_cluster_req fence;	/* the core's CORE_STOP */
	bool fence_due;			/* counted in cluster_inflight, not queued */
	struct rr_core *core;
	uint8_t head[NET_HEAD_MAX]; /* this node's envelope, opcode left 0 */
	uint32_t head_len;
	bool warned_name, warned_bad, warned_full, warned_size;
};

static struct rr_cluster *cluster(void)
{
	return rr_gate_cfg.cluster;
}

/* Each room kind that spans nodes: its subjects' prefix ("" for none).
 * Written before the cores start, read-only after. */
static char kind_prefix[NET_KINDS][NET_PREFIX_MAX] = {[RR_ROUTE_RAW] = "ringroom.raw"};
static rr_room_keep_fn *tag_keep;

void rr_room_net_kind(uint8_t kind, const char *prefix)
{
	rr_assert(strlen(prefix) < NET_PREFIX_MAX);
	strcpy(kind_prefix[kind], prefix);
}

void rr_room_net_tag_filter(rr_room_keep_fn *keep)
{
	tag_keep = keep;
}

static void net_retry(struct rr_timer *t, uint64_t now_ms);

static struct rr_room_net *net_of(struct rr_core *core, bool create)
{
	struct rr_room_net **slot = (struct rr_room_net **)&core->layer[RR_LAYER_NET];
	if (*slot || !create)
		return *slot;
	struct rr_room_net *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return NULL;
	n->nbuckets = NET_BUCKETS_INIT;
	n->buckets = calloc(n->nbuckets, sizeof(*n->buckets));
	if (n->buckets == NULL) {
		free(n);
		return NULL;
	}
	n->core = core;
	rr_timer_init(&n->retry, net_retry);
	const char *node = rr_cluster_node_name(cluster());
	size_t len = strlen(node);
	if (len > 255)
		len = 255; /* --node-name is at most 255 bytes; the default is shorter */
	n->head[0] = NET_ENVELOPE_VERSION;
	n->head[2] = (uint8_t)len;
	memcpy(n->head + 3, node, len);
	n->head_len = 3 + (uint32_t)len;
	*slot = n;
	return n;
}

static struct net_sub **find(struct rr_room_net *n, uint8_t kind, const char *name, size_t len,
			     uint64_t h)
{
	struct net_sub **pp = &n->buckets[h & (n->nbuckets - 1)];
	for (; *pp; pp = &(*pp)->next) {
		struct net_sub *s = *pp;
		if (s->hash == h && s->kind == kind && s->name_len == len &&
		    memcmp(s->name, name, len) == 0)
			break;
	}
	return pp;
}

static void grow(struct rr_room_net *n)
{
	uint32_t nb = n->nbuckets * 2;
	struct net_sub **b = calloc(nb, sizeof(*b));
	if (b == NULL)
		return; /* longer chains; still correct */
	for (uint32_t i = 0; i < n->nbuckets; i++) {
		struct net_sub *s = n->buckets[i];
		while (s) {
			struct net_sub *next = s->next;
			uint32_t k = (uint32_t)(s->hash & (nb - 1));
			s->next = b[k];
			b[k] = s;
			s = next;
		}
	}
	free(n->buckets);
	n->buckets = b;
	n->nbuckets = nb;
}

static void arm_retry(struct rr_room_net *n, struct net_sub *s)
{
	s->failed = true;
	if (!rr_timer_armed(&n->retry))
		rr_timer_set(&n->core->wheel, &n->retry, n->core->now_ms + NET_RETRY_MS);
}

static void on_msg(struct rr_cluster_msg *msg);
static void on_done(struct rr_cluster_req *req);

/* Bring s in line with what its room wants, one request at a time. */
static void settle(struct rr_room_net *n, struct net_sub *s)
{
	if (s->busy)
		return;
	if (!s->want && s->sub == NULL) {
		struct net_sub **pp = find(n, s->kind, s->name, s->name_len, s->hash);
		rr_assert(*pp == s);
		*pp = s->next;
		n->count--;
		free(s);
		return;
	}
	if (s->want == (s->sub != NULL) || cluster() == NULL)
		return;
	struct rr_core *core = n->core;
	s->req = (struct rr_cluster_req){
	    .op = s->want ? RR_CLUSTER_SUBSCRIBE : RR_CLUSTER_UNSUBSCRIBE,
	    .core = core->id,
	    .reply_ring_fd = core->ring_fd,
	    .done = on_done,
	    .arg = s,
	    .subject = s->subject,
	    .on_msg = on_msg,
	    .sub_ctx = s,
	    .sub = s->want ? NULL : s->sub,
	};
	int rc = rr_room_net_submit(core, &s->req);
	if (rc == 0) {
		s->busy = true;
		s->failed = false;
		return;
	}
	if (rc == -ESHUTDOWN)
		return; /* closing: the records go with the core */
	rr_warn("core %u: %s %s: %s (trying again in %u ms)", core->id,
		s->want ? "subscribing to" : "unsubscribing from", s->subject, strerror(-rc),
		NET_RETRY_MS);
	arm_retry(n, s);
}

static void on_done(struct rr_cluster_req *req)
{
	struct net_sub *s = req->arg;
	struct rr_room_net *n = net_of(s->core, false);
	s->busy = false;
	if (req->op == RR_CLUSTER_UNSUBSCRIBE) {
		s->sub = NULL; /* no message of it comes after this */
	} else if (req->res == 0) {
		s->sub = req->sub;
	} else {
		if (req->res != -ESHUTDOWN) {
			rr_warn("core %u: subscribing to %s: %s (trying again in %u ms)",
				s->core->id, s->subject, strerror(-req->res), NET_RETRY_MS);
			arm_retry(n, s);
		}
		return;
	}
	settle(n, s);
}

static void fence_done(struct rr_cluster_req *req)
{
	(void)req; /* on_cluster_done counted it */
}

/* Queue the fence; the cluster refusing it for a full quota: again later. */
static void fence(struct rr_room_net *n)
{
	struct rr_core *core = n->core;
	n->fence = (struct rr_cluster_req){
	    .op = RR_CLUSTER_CORE_STOP,
	    .core = core->id,
	    .reply_ring_fd = core->ring_fd,
	    .done = fence_done,
	    .arg = n,
	};
	int rc = rr_cluster_submit(cluster(), &n->fence);
	if (rc == -EAGAIN) {
		if (!rr_timer_armed(&n->retry))
			rr_timer_set(&core->wheel, &n->retry, core->now_ms + NET_RETRY_MS);
		return;
	}
	n->fence_due = false;
	if (rc < 0) /* closing: it posts no message any more */
		core->cluster_inflight--;
}

static void net_stopped_listening(struct rr_core *core)
{
	if (cluster() == NULL)
		return;
	struct rr_room_net *n = net_of(core, true);
	if (n == NULL) {
		rr_warn("core %u: out of memory for the cluster's stop fence", core->id);
		return;
	}
	n->fence_due = true;
	core->cluster_inflight++;
	fence(n);
}

int rr_room_net_submit(struct rr_core *core, struct rr_cluster_req *req)
{
	struct rr_cluster *cl = cluster();
	int rc = cl ? rr_cluster_submit(cl, req) : -ENOTCONN;
	if (rc == 0)
		core->cluster_inflight++;
	return rc;
}

static void net_retry(struct rr_timer *t, uint64_t now_ms)
{
	struct rr_room_net *n = (struct rr_room_net *)((char *)t - offsetof(struct rr_room_net, retry));
	(void)now_ms;
	if (n->fence_due)
		fence(n);
	for (uint32_t i = 0; i < n->nbuckets; i++) {
		struct net_sub *s = n->buckets[i];
		while (s) {
			struct net_sub *next = s->next; /* settle frees s at most */
			if (s->failed && !s->busy) {
				s->failed = false;
				settle(n, s);
			}
			s = next;
		}
	}
}

void rr_room_net_watch(struct rr_core *core, struct rr_room *r)
{
	if (cluster() == NULL || r->shard || kind_prefix[r->kind][0] == '\0')
		return;
	bool want = r->count > 0;
	struct rr_room_net *n = net_of(core, want);
	if (n == NULL) {
		rr_warn("core %u: room '%s': out of memory for its cluster subscription",
			core->id, r->name);
		return;
	}
	uint64_t h = r->hash;
	struct net_sub **pp = find(n, r->kind, r->name, r->name_len, h);
	struct net_sub *s = *pp;
	if (s == NULL) {
		if (!want)
			return;
		s = calloc(1, sizeof(*s));
		if (s == NULL) {
			rr_warn("core %u: room '%s': out of memory for its cluster subscription",
				core->id, r->name);
			return;
		}
		int rc = rr_cluster_room_subject(s->subject, sizeof(s->subject),
						 kind_prefix[r->kind], r->name, r->name_len);
		if (rc < 0) { /* the gate checked the name: cannot happen */
			rr_warn("core %u: room '%s': no subject: %s", core->id, r->name,
				strerror(-rc));
			free(s);
			return;
		}
		s->core = core;
		s->hash = h;
		s->kind = r->kind;
		s->name_len = r->name_len;
		memcpy(s->name, r->name, r->name_len);
		if (n->count + 1 > n->nbuckets) {
			grow(n);
			pp = find(n, r->kind, r->name, r->name_len, h);
		}
		*pp = s;
		n->count++;
	}
	s->want = want;
	if (!s->failed)
		settle(n, s);
}

/* One message to the room's subject, for the other nodes' members (those
 * carrying tag, when not NULL). */
static void publish(struct rr_core *core, uint8_t kind, const char *room, size_t room_len,
		    uint8_t opcode, const char *tag, const uint8_t *p, size_t len)
{
	struct rr_cluster *cl = cluster();
	if (cl == NULL || kind_prefix[kind][0] == '\0')
		return;
	struct rr_room_net *n = net_of(core, true);
	if (n == NULL)
		return;
	uint64_t h = rr_hash(room, room_len) ^ kind;
	struct net_sub *s = *find(n, kind, room, room_len, h);
	char subject[RR_CLUSTER_SUBJECT_MAX];
	const char *subj = s ? s->subject : subject;
	if (s == NULL &&
	    rr_cluster_room_subject(subject, sizeof(subject), kind_prefix[kind], room, room_len) < 0)
		return;
	/* the node's envelope as it is; a tagged one (handler rooms only)
	 * is built on the stack with the tag after the name */
	n->head[1] = opcode;
	const uint8_t *head = n->head;
	uint32_t head_len = n->head_len;
	uint8_t tagged[NET_HEAD_MAX + 2 + NET_TAG_MAX];
	if (tag != NULL) {
		size_t tl = strlen(tag);
		if (tl == 0 || tl > NET_TAG_MAX)
			return; /* the runtime's tags are shorter: cannot happen */
		memcpy(tagged, n->head, n->head_len);
		tagged[0] = NET_ENVELOPE_TAGGED;
		tagged[head_len++] = (uint8_t)(tl >> 8);
		tagged[head_len++] = (uint8_t)tl;
		memcpy(tagged + head_len, tag, tl);
		head_len += (uint32_t)tl;
		head = tagged;
	}
	int rc = rr_cluster_publish2(cl, core->id, subj, head, head_len, p, (uint32_t)len);
	if (rc == -EAGAIN && !n->warned_full) {
		n->warned_full = true;
		rr_warn("core %u: the cluster queue is full: room messages stay on this node "
			"(counted in ringroom_cluster_publish_refused_total; logged once)",
			core->id);
	} else if (rc == -EMSGSIZE && !n->warned_size) {
		n->warned_size = true;
		rr_warn("core %u: a room message of %zu bytes is over the cluster's payload "
			"limit (%u bytes with the envelope): it stays on this node (logged once)",
			core->id, len, RR_CLUSTER_PAYLOAD_MAX);
	} else if (rc < 0 && rc != -ENOTCONN && rc != -EAGAIN && rc != -EMSGSIZE) {
		rr_debug("core %u: publishing on %s: %s", core->id, subj, strerror(-rc));
	}
}

void rr_room_net_publish(struct rr_core *core, const char *room, size_t room_len, uint8_t opcode,
			 const uint8_t *p, size_t len)
{
	publish(core, RR_ROUTE_RAW, room, room_len, opcode, NULL, p, len);
}

void rr_room_net_broadcast(struct rr_core *core, struct rr_room *r, uint8_t opcode,
			   const char *tag, const uint8_t *p, size_t len)
{
	if (!r->shard)
		publish(core, r->kind, r->name, r->name_len, opcode, tag, p, len);
}

static void on_msg(struct rr_cluster_msg *msg)
{
	struct net_sub *s = msg->sub_ctx;
	struct rr_core *core = s->core;
	struct rr_room_net *n = net_of(core, false);
	if (n == NULL || !s->want)
		return; /* the room emptied: its unsubscribe is on the way */
	const uint8_t *d = msg->data;
	uint32_t len = msg->len;
	uint32_t head = len >= 3 ? 3u + d[2] : 0;
	uint32_t node_end = head;
	char tag[NET_TAG_MAX + 1];
	bool tagged = len >= 3 && d[0] == NET_ENVELOPE_TAGGED;
	uint32_t tl = tagged && head + 2u <= len ? (uint32_t)d[head] << 8 | d[head + 1] : 0;
	if (tagged && tl > 0 && tl <= NET_TAG_MAX && head + 2u + tl <= len) {
		memcpy(tag, d + head + 2, tl);
		tag[tl] = '\0';
		head += 2u + tl;
	} else if (tagged) {
		head = len + 1; /* no tag: not a node's */
	}
	if (len < 3 || (d[0] != NET_ENVELOPE_VERSION && !tagged) ||
	    (d[1] != RR_WS_TEXT && d[1] != RR_WS_BINARY) || head > len ||
	    (tagged && (tag_keep == NULL || memchr(tag, '\0', tl) != NULL)) ||
	    (d[1] == RR_WS_TEXT && !rr_utf8_valid(d + head, len - head))) {
		if (!n->warned_bad) {
			n->warned_bad = true;
			rr_warn("core %u: a message on %s is not a ringroom node's: dropped "
				"(logged once)",
				core->id, msg->subject);
		}
		return;
	}
	if (node_end == n->head_len && memcmp(d + 3, n->head + 3, node_end - 3) == 0) {
		if (!n->warned_name) {
			n->warned_name = true;
			rr_warn("core %u: a message on %s comes from another node named '%.*s' "
				"like this one: dropped (node names must be unique; logged once)",
				core->id, msg->subject, (int)(node_end - 3), (const char *)d + 3);
		}
		return;
	}
	struct rr_room *r = rr_room_find(core, s->kind, s->name, s->name_len);
	if (r == NULL || r->count == 0)
		return;
	struct rr_frame *f = rr_frame_ws(d[1], d + head, len - head);
	if (f == NULL)
		return; /* out of memory: lost like any late NATS message */
	rr_room_send_all(core, r, f, NULL, tagged ? tag_keep : NULL, tagged ? tag : NULL);
	rr_frame_unref(f);
}

static void net_fini(struct rr_core *core)
{
	struct rr_room_net **slot = (struct rr_room_net **)&core->layer[RR_LAYER_NET];
	struct rr_room_net *n = *slot;
	if (n == NULL)
		return;
	if (rr_timer_armed(&n->retry))
		rr_timer_cancel(&core->wheel, &n->retry);
	/* after rr_cluster_close: nothing refers to the records any more */
	for (uint32_t i = 0; i < n->nbuckets; i++) {
		struct net_sub *s = n->buckets[i];
		while (s) {
			struct net_sub *next = s->next;
			free(s);
			s = next;
		}
	}
	free(n->buckets);
	free(n);
	*slot = NULL;
}

static void on_cluster_done(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	rr_assert(core->cluster_inflight > 0);
	core->cluster_inflight--;
	rr_cluster_complete(rr_ud_to_ptr(io_uring_cqe_get_data64(cqe)));
}

static void on_cluster_msg(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	(void)core;
	rr_cluster_deliver(rr_ud_to_ptr(io_uring_cqe_get_data64(cqe)));
}

static const struct rr_layer net_layer = {
    .name = "rooms across nodes",
    .stopped_listening = net_stopped_listening,
    .fini = net_fini,
};

void rr_room_net_register(void)
{
	rr_reactor_layer(RR_LAYER_NET, &net_layer);
	rr_reactor_on(RR_UD_CLUSTER, on_cluster_done);
	rr_reactor_on(RR_UD_CLUSTER_MSG, on_cluster_msg);
}

#else /* no cluster thread in this build: nothing spans nodes */

void rr_room_net_watch(struct rr_core *core, struct rr_room *r)
{
	(void)core;
	(void)r;
}

void rr_room_net_publish(struct rr_core *core, const char *room, size_t room_len, uint8_t opcode,
			 const uint8_t *p, size_t len)
{
	(void)core;
	(void)room;
	(void)room_len;
	(void)opcode;
	(void)p;
	(void)len;
}

void rr_room_net_kind(uint8_t kind, const char *prefix)
{
	(void)kind;
	(void)prefix;
}

void rr_room_net_tag_filter(rr_room_keep_fn *keep)
{
	(void)keep;
}

void rr_room_net_broadcast(struct rr_core *core, struct rr_room *r, uint8_t opcode,
			   const char *tag, const uint8_t *p, size_t len)
{
	(void)core;
	(void)r;
	(void)opcode;
	(void)tag;
	(void)p;
	(void)len;
}

void rr_room_net_register(void)
{
}

#endif
