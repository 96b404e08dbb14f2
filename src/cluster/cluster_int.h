/*
 * The cluster thread's private half: the struct the cluster_*.c files share
 * and the functions one file calls in another. Only src/cluster/ includes
 * this header, and with it nats/nats.h; the rest of ringroom knows the
 * cluster through cluster.h alone.
 *
 * DESIGN: the files call one way, lowest first:
 *   cluster_post.c  completions and messages back to the cores with
 *                   MSG_RING; a post the kernel refuses is held and retried
 *   cluster_get.c   JS_LAST as an asynchronous direct get (a request whose
 *                   reply comes back on the connection's own inbox)
 *   cluster_nats.c  everything libnats: options, connect, the JetStream
 *                   context and stream, the callbacks of libnats' threads
 *                   (which only push events onto the inbox), running one
 *                   request or raw publish
 *   cluster.c       open and close, the queue (submit, quota), the cluster
 *                   thread's loop, stats
 * Fields are grouped by who may touch them: the queue and the inbox under
 * mu (any thread), the thread's own state (the cluster thread only), the
 * values libnats' callbacks read (set before the connection exists), and
 * statistics (atomics).
 */
#ifndef RR_CLUSTER_CLUSTER_INT_H
#define RR_CLUSTER_CLUSTER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <liburing.h>
#include <nats/nats.h>

#include "cluster/cluster.h"

/* Requests and raw publishes taken from the queue per loop turn: bounds the
 * time between two looks at the inbox. */
#define CL_BATCH_MAX 256
/* MSG_RING posts submitted at once (one chunk of one core's list). */
#define CL_POST_RING_ENTRIES 256
/* A refused core is tried again after this back-off, doubling (store_int.h
 * says why these values). */
#define CL_POST_BACKOFF_MIN_MS 1
#define CL_POST_BACKOFF_MAX_MS 64
/* Closing: how long JetStream acks still in flight may take, how long the
 * connection's close callbacks may take, and how long refusing rings are
 * retried before their completions are abandoned. */
#define CL_CLOSE_ACK_WAIT_MS 1000
#define CL_CLOSE_NATS_WAIT_MS 2000
#define CL_POST_CLOSE_WAIT_MS 2000
/* JetStream API calls made by the cluster thread (the stream check at each
 * connect): bounded, since the thread serves no request meanwhile. */
#define CL_JS_API_WAIT_MS 2000
/* A direct get (JS_LAST) whose reply does not come within this fails with
 * -ETIMEDOUT (the server answers at once or never). */
#define CL_GET_TIMEOUT_MS 5000
/* libnats' message delivery pool: subscriptions share these threads instead
 * of one thread each (there is one subscription per room). */
#define CL_DELIVERY_THREADS 2

/* A raw publish (rr_cluster_publish): one allocation, subject and data
 * copied behind the header. */
struct cl_raw {
	uint32_t core;
	uint32_t len;
	bool control; /* counted in control_out, not the core's messages */
	char *subject;
	uint8_t *data;
};

/* One queue entry: a request or a raw publish. */
struct cl_qent {
	void *p;
	uint32_t core;
	bool raw;
};

/* Events libnats' threads push for the cluster thread (the messages of
 * subscriptions travel on their own list, inbox_msgs). */
enum cl_ev_kind {
	CL_EV_UP,	/* connected, or reconnected */
	CL_EV_DOWN,	/* disconnected (libnats reconnects) */
	CL_EV_CLOSED,	/* the connection is closed for good */
	CL_EV_ACK,	/* a JetStream publish's ack, or its failure */
	CL_EV_SUB_DONE, /* a subscription's handler will not run again */
	CL_EV_GOT,	/* the reply to a direct get (nmsg: ours to destroy) */
};

struct cl_event {
	struct cl_event *next;
	enum cl_ev_kind kind;
	natsMsg *nmsg; /* ACK: the published message (ours to destroy) */
	uint64_t seq;  /* ACK */
	bool duplicate;
	int err;			/* ACK: 0 or -errno */
	int js_code;			/* ACK: JetStream's error code, if any */
	struct rr_cluster_sub *sub;	/* SUB_DONE */
};

struct rr_cluster_sub {
	/* set before libnats knows the sub; read by its delivery threads */
	struct rr_cluster *cl;
	rr_cluster_msg_fn *on_msg;
	void *ctx;
	uint32_t core;
	int ring_fd;
	bool js; /* a JetStream consumer: messages carry a stream sequence */
	bool control; /* the node's own traffic: not counted with the rooms' */
	/* the cluster thread's */
	natsSubscription *nsub;
	bool unsubscribed; /* the core gave it up: its messages are dropped */
	bool done;	   /* libnats' completion callback ran */
	struct rr_cluster_sub *prev, *next; /* every sub not yet freed */
};

/* One thing to post to a core: the user_data and the ring. */
struct cl_post {
	uint64_t ud;
	int ring_fd;
	uint32_t bytes; /* a message's payload: counted in inbox_bytes */
};

/* What waits to be posted to one core, oldest first (a ring buffer that
 * grows); non-empty between turns only while the core's ring refuses. */
struct cl_postq {
	struct cl_post *v;
	uint32_t cap, head, len;
	uint32_t backoff_ms;
	uint64_t retry_at_ms;
	int err;
	uint64_t refusals;
};

struct rr_cluster {
	struct rr_cluster_opts opts;
	char *servers_buf; /* opts.servers split in place */
	const char *servers[RR_CLUSTER_SERVERS_MAX];
	int nservers;
	char *node_name;
	char *stream;
	char *stream_subjects_buf;
	const char *stream_subjects[RR_CLUSTER_SERVERS_MAX];
	int nstream_subjects;
	char *kv_stream, *kv_subject;

	/* ---- queue and inbox: guarded by mu ---- */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool idle; /* the thread waits on cv: a producer signals */
	bool stopping;
	struct cl_qent *q;
	uint32_t q_cap, q_head, q_len;
	uint32_t *core_len; /* outstanding per core: queued, unacked, unposted */
	bool *core_stopped; /* cluster thread: the core sent CORE_STOP */
	struct rr_cluster_msg *inbox_head, *inbox_tail;
	struct cl_event *ev_head, *ev_tail;
	uint64_t inbox_bytes; /* messages taken by callbacks, not yet posted */
	int post_fault_err;
	uint32_t post_fault_count;

	pthread_t thread;

	/* ---- read by libnats' callback threads ---- */
	_Atomic int state; /* enum rr_cluster_state */
	atomic_bool ever_connected;
	atomic_bool closing;
	_Atomic uint64_t stream_created; /* ns since 1970; 0: not known yet */

	/* ---- the cluster thread's ---- */
	natsConnection *nc;
	jsCtx *js;
	struct cl_qent batch[CL_BATCH_MAX];
	struct rr_cluster_req *unacked_head, *unacked_tail; /* in publish order */
	uint32_t unacked;
	struct rr_cluster_sub *subs; /* not yet freed */
	natsSubscription *get_sub;   /* <get_prefix>*: replies to direct gets */
	char get_prefix[64];	     /* "_INBOX.<unique>." */
	struct rr_cluster_req *get_head, *get_tail; /* direct gets, in send order */
	uint64_t get_next_token;
	bool closed_seen;	     /* CL_EV_CLOSED arrived */
	bool up_logged;
	struct io_uring post;
	struct cl_postq *postq; /* per core */
	uint32_t post_pending;
	uint64_t post_next_ms;
	uint32_t req_posted_since; /* per-turn uncharge batching */

	/* ---- statistics: atomics (relaxed) ---- */
	struct rr_cluster_core_stats *core_st;
	struct rr_cluster_stats st;
};

#define CL_STAT_ADD(cl, field, n) __atomic_fetch_add(&(cl)->st.field, (n), __ATOMIC_RELAXED)

/* ---- cluster_post.c: the hand-offs between the files (the bottom of src/cluster/) ---- */

/* Push an event for the cluster thread (any thread); false: out of memory. */
bool rr_cl_push_event(struct rr_cluster *cl, struct cl_event *ev);
/* With mu held: wake the cluster thread if it sleeps (cluster_post.c). */
void rr_cl_wake_locked(struct rr_cluster *cl);
/* The core's outstanding count drops by n (a request's completion posted). */
void rr_cl_uncharge(struct rr_cluster *cl, uint32_t core, uint32_t n);
/* A request is finished: its completion goes onto the core's post list. */
void rr_cl_finish(struct rr_cluster *cl, struct rr_cluster_req *req, int res);

/* ---- cluster_get.c: JS_LAST as an asynchronous direct get ---- */

/* The reply subscription (at start, with the connection). 0 or -EIO. */
int rr_cl_get_start(struct rr_cluster *cl);
/* Send the request; the reply finishes it. */
void rr_cl_get_run(struct rr_cluster *cl, struct rr_cluster_req *req);
/* A publish acked as a duplicate of stream sequence req->seq: read the
 * original's Rr-Id into req->room_id (0 if it cannot be), then finish it
 * as stored. */
void rr_cl_get_original(struct rr_cluster *cl, struct rr_cluster_req *req);
/* A CL_EV_GOT's message (destroyed here). */
void rr_cl_get_reply(struct rr_cluster *cl, natsMsg *m);
/* Fail what is pending (the connection dropped, or closing). */
void rr_cl_get_fail_all(struct rr_cluster *cl, int err);
/* Fail the requests older than CL_GET_TIMEOUT_MS; the next deadline in ns
 * (0: none pending). */
uint64_t rr_cl_get_sweep(struct rr_cluster *cl, uint64_t now_ns);

/* ---- cluster_nats.c ---- */

/* Connect (libnats retries in the background when no server answers yet),
 * and make the JetStream context. 0 or -errno (logged). */
int rr_cl_nats_start(struct rr_cluster *cl);
/* Connected (again): log it, make sure of the stream. */
void rr_cl_nats_up(struct rr_cluster *cl);
/* Run one request or raw publish taken from the queue. */
void rr_cl_nats_run(struct rr_cluster *cl, struct cl_qent *e);
/* An ack event: complete its publish, if still waiting. */
void rr_cl_nats_ack(struct rr_cluster *cl, struct cl_event *ev);
/* Fail every publish still waiting for its ack with err. */
void rr_cl_nats_fail_unacked(struct rr_cluster *cl, int err);
/* Unsubscribe every sub and close the connection (callbacks still come). */
void rr_cl_nats_close(struct rr_cluster *cl);
/* After the close callbacks: destroy the JetStream context and connection. */
void rr_cl_nats_destroy(struct rr_cluster *cl);
/* Free a sub once both the core and libnats are done with it. */
void rr_cl_sub_maybe_free(struct rr_cluster *cl, struct rr_cluster_sub *sub);

/* ---- cluster_post.c ---- */

int rr_cl_post_init(struct rr_cluster *cl);
void rr_cl_post_free(struct rr_cluster *cl);
/* Queue one post for a core (the cluster thread); false: out of memory. */
bool rr_cl_post_add(struct rr_cluster *cl, uint32_t core, uint64_t ud, int ring_fd,
		    uint32_t bytes);
/* Post what is due; sets post_next_ms for the next retry. */
void rr_cl_post_flush(struct rr_cluster *cl, bool closing);
/* Closing: drop what no ring took (logged, counted). */
void rr_cl_post_abandon(struct rr_cluster *cl);

#endif
