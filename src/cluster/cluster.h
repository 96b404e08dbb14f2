/*
 * The cluster thread: ringroom's one NATS connection per process, reached
 * from the reactor cores without ever blocking them (issue 15; the plan is
 * kernel-notes/cluster.md).
 *
 * DESIGN: the same shape as the storage worker (persist/store.h). A core
 * hands work to the cluster thread through one bounded queue (a mutex held
 * for a few instructions, a per-core quota; full → -EAGAIN, never a wait)
 * and goes on with its loop. The cluster thread owns the natsConnection and
 * its JetStream context and is the only thread that calls into libnats for
 * the cores. What comes back goes to the core's own io_uring with
 * IORING_OP_MSG_RING, posted by the cluster thread from a small ring of its
 * own, retried after a back-off when the kernel refuses (store_post.c's
 * rule: nothing is lost between threads, nothing overtakes):
 *   - a finished request: user_data rr_ud_ptr(RR_UD_CLUSTER, req); the core
 *     calls rr_cluster_complete(req), which runs req->done;
 *   - a message of one of the core's subscriptions: user_data
 *     rr_ud_ptr(RR_UD_CLUSTER_MSG, msg); the core calls
 *     rr_cluster_deliver(msg), which runs the subscription's on_msg and frees
 *     the message.
 * libnats' own threads (socket reader, flusher, message delivery pool,
 * connection events) never touch a core: their callbacks push events onto
 * the cluster thread's inbox under the same mutex.
 *
 * Operations:
 *   rr_cluster_publish()   core NATS publish, fire and forget (/raw/): the
 *                          bytes are copied; no completion. Refused at once
 *                          with -ENOTCONN while the connection is down (no
 *                          buffering for later: a late broadcast is worse
 *                          than a lost one for /raw/).
 *   RR_CLUSTER_JS_PUBLISH  publish to JetStream and wait for the stream's
 *                          ack (the stream sequence comes back in req->seq).
 *                          res 0 means the server stored it; any doubt is an
 *                          error, never an ack: a publish still waiting when
 *                          the connection drops fails with -ENOTCONN (it may
 *                          or may not be stored), one not acked within
 *                          ack_timeout_ms fails with -ETIMEDOUT.
 *   RR_CLUSTER_SUBSCRIBE   interest in a subject (wildcards allowed) for the
 *                          submitting core; its messages go to that core in
 *                          the order NATS delivered them. The connection is
 *                          made with no echo: what this process published
 *                          never comes back to it (the node fans its own
 *                          messages out locally). Survives
 *                          reconnects (libnats subscribes again); messages
 *                          published while the connection was down are not
 *                          replayed (core NATS is at most once).
 *   RR_CLUSTER_UNSUBSCRIBE no message of the subscription reaches the core
 *                          after this request's completion (also ends a
 *                          JS_CONSUME).
 *   RR_CLUSTER_JS_CONSUME  read the stream (opts.stream) from start_seq (0:
 *                          from its first message) on, only the messages of
 *                          subject (a filter: wildcards allowed), through an
 *                          ordered push consumer: each message once, in
 *                          stream order, with its stream sequence (msg->seq)
 *                          and its Rr-Id header (msg->room_id); this node's
 *                          own publishes come too (no echo applies to core
 *                          subscriptions only). Messages go to the core like
 *                          a subscription's. Needs the connection up (the
 *                          consumer is made by a JetStream API call, which
 *                          blocks the cluster thread for up to a round trip,
 *                          at most CL_JS_API_WAIT_MS); after a reconnect
 *                          libnats makes the consumer again from the last
 *                          sequence it delivered.
 *   RR_CLUSTER_JS_LAST     the stream's last message on subject (no
 *                          wildcard): its stream sequence (req->seq) and
 *                          its Rr-Id header (req->room_id, 0 without one);
 *                          -ENOENT when the subject has no message; in
 *                          opts.kv_stream with req->kv, and a copy of its
 *                          data with req->want_data (req->out_data, the
 *                          core frees it). An asynchronous direct get
 *                          (cluster_get.c): the cluster thread serves
 *                          other requests while the reply is on its way.
 *
 * Memory: what a request points to (subject, data) is the submitter's and
 * must stay valid until done() runs; the cluster thread copies it into a
 * NATS message when it runs the request. A message (struct rr_cluster_msg)
 * is the cluster's, valid during on_msg only.
 */
#ifndef RR_CLUSTER_CLUSTER_H
#define RR_CLUSTER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tsan.h"
#include "reactor/stats.h"
#include "reactor/ud.h"

/* ---- limits (default, ceiling, why) ---- */

/* NATS subjects: a prefix such as "ringroom.chat." and a room name
 * (1..128 bytes, protocol.md) escaped into one token, at most 3 bytes per
 * byte (rr_cluster_room_subject): 14 + 384 fits, with room for longer
 * prefixes, and stays far below the server's own limits. */
#define RR_CLUSTER_SUBJECT_MAX 512
/* Room names (protocol.md): 1..128 bytes. */
#define RR_CLUSTER_ROOM_MAX 128
/* One payload: the server's max_payload defaults to 1 MiB, the same as
 * --max-message-bytes; a bigger publish fails with -EMSGSIZE here rather
 * than in the server. */
#define RR_CLUSTER_PAYLOAD_MAX (1u << 20)
/* Outstanding requests per core (queued, waiting for an ack, or held for
 * the core's ring): back-pressure for a core that outruns NATS. */
#define RR_CLUSTER_DEFAULT_QUEUE 4096
#define RR_CLUSTER_QUEUE_CEIL 65536
#define RR_CLUSTER_CORES_MAX 1024
/* Bytes of incoming messages waiting for cores (inbox and held posts):
 * past it new messages are dropped and counted, like a NATS slow consumer,
 * instead of growing without bound behind a core that does not reap. */
#define RR_CLUSTER_DEFAULT_INBOX_BYTES (64u << 20)
/* A JetStream publish not acked within this fails with -ETIMEDOUT. */
#define RR_CLUSTER_DEFAULT_ACK_TIMEOUT_MS 5000
/* libnats reconnect: wait between rounds over the server list. Short,
 * because the usual outage is a restart of one server. */
#define RR_CLUSTER_DEFAULT_RECONNECT_WAIT_MS 250
/* URLs in --cluster. */
#define RR_CLUSTER_SERVERS_MAX 16

/* ---- opening ---- */

struct rr_cluster_opts {
	/* "nats://host:port[,nats://host:port...]": the servers of one NATS
	 * cluster; libnats picks one and fails over to the others */
	const char *servers;
	const char *node_name;	 /* connection name the server shows (monitoring) */
	uint32_t cores;		 /* submitting cores (req->core < cores); 0 → 1 */
	uint32_t queue_capacity; /* per core; 0 → RR_CLUSTER_DEFAULT_QUEUE */
	uint32_t inbox_bytes;	 /* 0 → RR_CLUSTER_DEFAULT_INBOX_BYTES */
	uint32_t ack_timeout_ms; /* 0 → RR_CLUSTER_DEFAULT_ACK_TIMEOUT_MS */
	uint32_t reconnect_wait_ms; /* 0 → RR_CLUSTER_DEFAULT_RECONNECT_WAIT_MS */
	/* A JetStream stream to make sure of at every (re)connect: created with
	 * file storage on these subjects if missing, left alone if present.
	 * NULL: none (RR_CLUSTER_JS_PUBLISH still works for streams that exist). */
	const char *stream;
	const char *stream_subjects; /* comma-separated, e.g. "ringroom.chat.>" */
	/* Limits of a stream this node creates (an existing stream keeps its
	 * own): messages kept per subject (a room's history: --history-size)
	 * and their age (--history-ttl); 0: no limit. */
	int64_t stream_max_per_subject;
	uint64_t stream_max_age_ms;
	/* A second stream made sure of the same way, keeping one message per
	 * subject (a key-value store: the newest value of each key) for
	 * kv_max_age_ms (0: forever): the sessions. NULL: none. */
	const char *kv_stream;
	const char *kv_subject; /* one subject, e.g. "ringroom.session.>" */
	uint64_t kv_max_age_ms;
	/* Copies of each stream this node creates: 1 on one server; 3 on a
	 * NATS cluster of 3 (a message is acked once a majority stored it).
	 * 0 → 1. An existing stream keeps its own. */
	uint32_t stream_replicas;
};

struct rr_cluster;

/*
 * Check opts, start the cluster thread and return at once: the connection is
 * made (and remade) by the thread, so a NATS server that is not there yet is
 * not an error here; rr_cluster_state() tells, and the log says when it
 * comes. On failure returns -errno with a one-line reason in err, e.g.
 * "--cluster: 'http://x' is not nats://HOST:PORT" (-EINVAL).
 * Blocking only for the thread's start: call at start-up, not from a core.
 */
int rr_cluster_open(struct rr_cluster **out, const struct rr_cluster_opts *opts, char *err,
		    size_t errlen);

/*
 * Stop: new submits get -ESHUTDOWN; queued requests complete with
 * -ESHUTDOWN, JetStream publishes still waiting for their ack get up to
 * about a second to have it, then -ESHUTDOWN; the connection is closed;
 * every completion is posted (a ring that refuses is retried for about 2 s,
 * then the completion is abandoned and logged). The cores' rings must stay
 * open until this returns. Messages not yet delivered are dropped. NULL is
 * accepted. Blocking: call from the main thread at shutdown.
 */
void rr_cluster_close(struct rr_cluster *cl);

/* ---- connection state ---- */

enum rr_cluster_state {
	RR_CLUSTER_CONNECTING = 0,   /* never connected yet (retrying) */
	RR_CLUSTER_CONNECTED = 1,    /* up */
	RR_CLUSTER_RECONNECTING = 2, /* was up, lost it, retrying */
	RR_CLUSTER_CLOSED = 3,	     /* closing, or libnats gave up */
};

/* The state now (any thread; one atomic load). */
enum rr_cluster_state rr_cluster_state(const struct rr_cluster *cl);
/* "connecting", "connected", "reconnecting", "closed" */
const char *rr_cluster_state_name(enum rr_cluster_state st);

/* ---- requests ---- */

enum rr_cluster_op {
	RR_CLUSTER_JS_PUBLISH = 1, /* in: subject, data, len; out: res, seq, duplicate */
	RR_CLUSTER_SUBSCRIBE,	   /* in: subject, on_msg, sub_ctx; out: res, sub */
	RR_CLUSTER_UNSUBSCRIBE,	   /* in: sub; out: res */
	RR_CLUSTER_JS_CONSUME,	   /* in: subject, start_seq, on_msg, sub_ctx; out: res, sub */
	RR_CLUSTER_JS_LAST,	   /* in: subject; out: res, seq, room_id */
	RR_CLUSTER_CORE_STOP,	   /* the core's loop is ending: out: res */
};

struct rr_cluster_req;
struct rr_cluster_msg;
struct rr_cluster_sub; /* a subscription: the cluster's, named by the core */
typedef void rr_cluster_done_fn(struct rr_cluster_req *req);
typedef void rr_cluster_msg_fn(struct rr_cluster_msg *msg);

struct rr_cluster_req {
	/* ---- filled by the submitter, read-only for the cluster thread ---- */
	enum rr_cluster_op op;
	uint32_t core;		    /* submitting core, < opts.cores */
	int reply_ring_fd;	    /* ring that gets the completion (and, for
				     * SUBSCRIBE, the messages) */
	rr_cluster_done_fn *done;   /* called by rr_cluster_complete() */
	void *arg;		    /* for the submitter */
	const char *subject;	    /* JS_PUBLISH, SUBSCRIBE: NUL-terminated */
	const void *data;	    /* JS_PUBLISH */
	uint32_t len;		    /* JS_PUBLISH: 0..RR_CLUSTER_PAYLOAD_MAX */
	rr_cluster_msg_fn *on_msg;  /* SUBSCRIBE: run on the core per message */
	void *sub_ctx;		    /* SUBSCRIBE: handed to on_msg */
	struct rr_cluster_sub *sub; /* UNSUBSCRIBE: in; SUBSCRIBE: out */
	const char *msg_id;	    /* JS_PUBLISH: Nats-Msg-Id, or NULL; a
				     * second publish with the same id within
				     * the stream's duplicate window is acked
				     * with the first one's seq, duplicate set */
	bool expect_set;	    /* JS_PUBLISH: compare-and-set on the
				     * subject: stored only if the subject's
				     * last stream sequence is expect_seq */
	uint64_t expect_seq;	    /* ... 0: the subject has no message yet */
	uint64_t start_seq;	    /* JS_CONSUME: first stream sequence (0: all) */
	bool kv;		    /* JS_LAST: in opts.kv_stream, not opts.stream */
	bool want_data;		    /* JS_LAST: copy the message's data out */
	bool control;		    /* SUBSCRIBE: the node's own traffic (heartbeats):
				     * its messages are counted in control_in, not
				     * the core's, and it is not in subscriptions */
	uint64_t room_id;	    /* JS_PUBLISH: > 0 sets the header Rr-Id (the
				     * message's id in its room); out: on a
				     * duplicate, the original's Rr-Id (0 when
				     * it cannot be read); JS_LAST: out */

	/* ---- filled by the cluster thread before the completion ---- */
	int res;	/* 0 or -errno (below) */
	uint64_t seq;	/* JS_PUBLISH: the stream sequence the server gave it */
	bool duplicate; /* JS_PUBLISH: the server had it already (same msg id) */
	void *out_data; /* JS_LAST with want_data: malloc'd copy (the core frees it) */
	uint32_t out_len;

	/* ---- private to the cluster ---- */
	struct rr_cluster_req *_next; /* queue, then pending-ack list */
	void *_nmsg;		      /* JS_PUBLISH: its natsMsg while unacked */
	uint64_t _sent_ns;	      /* JS_PUBLISH, JS_LAST: when it went out */
	uint64_t _token;	      /* JS_LAST, a duplicate's lookup: names its reply */
	bool _original;		      /* JS_PUBLISH acked as a duplicate: the
				       * original's Rr-Id is being read back */
};

/*
 * Queue a request. Never blocks: 0 (done() will run exactly once, on the
 * core, through reply_ring_fd), -EAGAIN (this core's share of outstanding
 * requests is full), -EINVAL (bad op, subject, length, or a missing
 * callback: nothing queued), -ESHUTDOWN (closing). Thread-safe.
 *
 * req->res in done():
 *   JS_PUBLISH   0 (stored; seq set), -ESTALE (expect_set and the subject
 *                has moved on: not stored), -ENOTCONN (down, or the connection
 *                dropped before the ack: maybe stored, never acked),
 *                -ETIMEDOUT (no ack within ack_timeout_ms: maybe stored),
 *                -ENOENT (no stream listens on the subject), -EMSGSIZE (over
 *                the server's max_payload), -EIO (JetStream said no:
 *                logged with its code), -ESHUTDOWN
 *   SUBSCRIBE    0 (req->sub set), -ENOMEM, -EIO (libnats refused: logged),
 *                -ESHUTDOWN. Works while the connection is down: the
 *                interest is sent when it comes back.
 *   JS_CONSUME   0 (req->sub set), -ENOTCONN (down), -ETIMEDOUT, -ENOENT (no
 *                stream), -ENOMEM, -EIO (logged), -ESHUTDOWN
 *   JS_LAST      0 (seq, room_id set), -ENOENT (no message on the subject),
 *                -ENOTCONN, -ETIMEDOUT, -EIO (logged), -ESHUTDOWN
 *   UNSUBSCRIBE  0 (always, once accepted: the sub is gone for the core)
 *   CORE_STOP    0, -ESHUTDOWN. From then on no message of any of the
 *                core's subscriptions is posted to it (they are dropped);
 *                every message posted before comes before this completion,
 *                so once it has run nothing but completions of the core's
 *                requests still out arrives on its ring. The last request
 *                of a core that stops while the cluster runs on.
 */
int rr_cluster_submit(struct rr_cluster *cl, struct rr_cluster_req *req);

/*
 * Publish on core NATS, fire and forget: subject and data are copied before
 * this returns. 0 (queued; it is sent unless the connection drops first),
 * -ENOTCONN (the connection is down: dropped now), -EAGAIN (the core's share
 * is full), -EINVAL / -EMSGSIZE (bad subject, too big), -ESHUTDOWN.
 * Counted in the core's messages out once sent.
 */
int rr_cluster_publish(struct rr_cluster *cl, uint32_t core, const char *subject,
		       const void *data, uint32_t len);

/*
 * The same with two parts sent as one payload, head then data (both copied:
 * a small envelope in front of a frame's bytes without a copy of the
 * caller's own). head_len + len at most RR_CLUSTER_PAYLOAD_MAX.
 */
int rr_cluster_publish2(struct rr_cluster *cl, uint32_t core, const char *subject,
			const void *head, uint32_t head_len, const void *data, uint32_t len);

/* rr_cluster_publish for the node's own traffic (heartbeats): counted in
 * control_out, not in the core's messages out. */
int rr_cluster_publish_control(struct rr_cluster *cl, uint32_t core, const char *subject,
			       const void *data, uint32_t len);

/* When the stream (opts.stream) was created, in ns since 1970, as the
 * server says at each connect; 0 until known. Every node sees the same
 * value, and a stream deleted and made again has a new one: the base of
 * a cluster-wide epoch. */
uint64_t rr_cluster_stream_created(const struct rr_cluster *cl);

/* The node's name (opts.node_name), for the whole life of cl. */
const char *rr_cluster_node_name(const struct rr_cluster *cl);

/* A message of a subscription, on the subscribing core. */
struct rr_cluster_msg {
	const char *subject; /* NUL-terminated (the concrete subject) */
	const uint8_t *data;
	uint32_t len;
	uint32_t core;
	void *sub_ctx;	  /* SUBSCRIBE's req->sub_ctx */
	uint64_t seq;	  /* JS_CONSUME: the stream sequence; 0 for core NATS */
	uint64_t room_id; /* the Rr-Id header, 0 without one */

	/* ---- private to the cluster ---- */
	rr_cluster_msg_fn *_on_msg;
	void *_nmsg;			/* the natsMsg holding subject and data */
	struct rr_cluster_msg *_next;	/* inbox, then post list */
	struct rr_cluster_sub *_sub;	/* checked by the cluster thread only */
};

/*
 * For the core, on a CQE whose kind is RR_UD_CLUSTER: rr_cluster_complete(
 * rr_ud_to_ptr(cqe->user_data)) runs req->done on the core's thread. The
 * CQE's res is meaningless; the result is req->res.
 */
static inline void rr_cluster_complete(struct rr_cluster_req *req)
{
	RR_HB_ACQUIRE(req); /* published by the cluster thread through MSG_RING */
	req->done(req);
}

/* For the core, on RR_UD_CLUSTER_MSG: run on_msg, then free the message. */
void rr_cluster_deliver(struct rr_cluster_msg *msg);

/* ---- subjects ---- */

/*
 * The subject of a room: prefix, '.', and the room name as one subject
 * token. Room names are 1..RR_CLUSTER_ROOM_MAX bytes of A-Z a-z 0-9 . _ ~ -
 * (protocol.md); NATS splits subjects on '.', so '.' becomes "~2e" and the
 * escape itself, '~', becomes "~7e" (a bijection: rr_cluster_subject_room
 * undoes it). prefix: non-empty, no trailing '.', e.g. "ringroom.raw".
 * Writes a NUL-terminated subject into buf and returns its length;
 * -EINVAL for an empty or too long name or a byte outside that alphabet,
 * -ENAMETOOLONG when it does not fit cap (or RR_CLUSTER_SUBJECT_MAX).
 */
int rr_cluster_room_subject(char *buf, size_t cap, const char *prefix, const char *room,
			    size_t room_len);

/*
 * The room name in the last token of a subject made by
 * rr_cluster_room_subject (e.g. one a wildcard subscription delivered).
 * Writes the name, NUL-terminated, into buf; returns its length, or -EINVAL
 * (not such a token: a bad escape, an empty token, a byte outside the
 * alphabet) or -ENAMETOOLONG (cap).
 */
int rr_cluster_subject_room(char *buf, size_t cap, const char *subject);

/* ---- observability ---- */

struct rr_cluster_core_stats {
	uint64_t msgs_out; /* published (raw and JetStream) for this core */
	uint64_t msgs_in;  /* delivered to this core's subscriptions */
};

struct rr_cluster_stats {
	enum rr_cluster_state state;
	uint64_t subscriptions;	    /* live now */
	uint64_t reconnects;	    /* connections regained after a loss */
	uint64_t disconnects;	    /* connections lost */
	uint64_t publish_refused;   /* publishes refused: down, queue full */
	uint64_t publish_failures;  /* publishes libnats or the server failed */
	uint64_t js_acks;	    /* JetStream publishes acked */
	uint64_t js_failures;	    /* JetStream publishes completed with an error */
	uint64_t late_acks;	    /* acks after their publish had failed */
	uint64_t control_out;	    /* the node's own messages (heartbeats) sent */
	uint64_t control_in;	    /* ... and received; neither is in the core counts */
	uint64_t dropped;	    /* incoming messages dropped (inbox full) */
	uint64_t post_failures;	    /* MSG_RING posts a core's ring refused */
	uint64_t post_retries;	    /* held posts delivered by a retry */
	uint64_t post_abandoned;    /* held posts given up at close */
	struct rr_hist js_ack_rtt;  /* publish → ack, nanoseconds */
};

/* A snapshot (any thread). per_core may be NULL, else has opts.cores entries. */
void rr_cluster_stats_get(struct rr_cluster *cl, struct rr_cluster_stats *st,
			  struct rr_cluster_core_stats *per_core);
/* The cores the cluster was opened for. */
uint32_t rr_cluster_cores(const struct rr_cluster *cl);

/* Tests: refuse the next count MSG_RING posts with err, as the kernel would
 * (store.h's rr_store_inject_post_fault). */
void rr_cluster_inject_post_fault(struct rr_cluster *cl, int err, uint32_t count);

#endif
