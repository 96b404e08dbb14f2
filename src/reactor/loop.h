/*
 * The broker and its cores: one pinned thread per core, each with its own
 * io_uring, listeners, buffer ring, timer wheel, and the per-core state of
 * the layers above (connections, rooms, the handler runtime).
 *
 * DESIGN: the reactor knows nothing of the layers above it. They register
 * into it before the cores start: a completion handler per user_data kind
 * (each completion carries its handler's kind), and a layer table whose hooks
 * the loop calls at fixed points of every iteration:
 *
 *   fire due timers → settle (deferred closes, budgeted input) → flush (one
 *   send per dirty connection) → submit and wait in one io_uring_enter →
 *   reap at most RR_CQE_BATCH completions and dispatch each by kind →
 *   publish the receive buffers given back.
 *
 * Handlers only queue output and mark work; nothing is closed or freed
 * inside a dispatch. Bounding the batch bounds the work between two flushes.
 * A unit test can drive a core without threads or sockets: rr_core_setup()
 * then rr_core_settle_flush() and rr_core_dispatch() with made-up
 * completions (tests/unit/test_fake_ring.c).
 */
#ifndef RR_REACTOR_LOOP_H
#define RR_REACTOR_LOOP_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/flags.h"
#include "proxy/proxy.h"
#include "reactor/bufring.h"
#include "reactor/ring.h"
#include "reactor/stats.h"
#include "reactor/timer.h"
#include "reactor/ud.h"

struct rr_broker;
struct rr_core;

/* Per-core state of the layers above, in the order they are layered. */
enum rr_layer_id {
	RR_LAYER_CONN = 0, /* connections and the gate */
	RR_LAYER_ROOM,	   /* room registry */
	RR_LAYER_NET,	   /* rooms across nodes (--cluster) */
	RR_LAYER_RT,	   /* handler runtime */
	RR_LAYERS,
};

/*
 * What a layer asks of the loop; every hook is optional and runs on the
 * core's own thread (fini: on the thread that frees the broker). Layers
 * run lowest first, except stop, which runs highest first.
 */
struct rr_layer {
	const char *name;
	/* set up this core's state in core->layer[id]: 0 or -errno (logged) */
	int (*init)(struct rr_core *core);
	/* every core is up: start accepting, restore alarms */
	void (*start)(struct rr_core *core);
	/* after dispatch, before the flush: deferred closes, budgeted input */
	void (*settle)(struct rr_core *core);
	/* queue this iteration's sends */
	void (*flush)(struct rr_core *core);
	/* the drain begins (members get 1001) */
	void (*drain)(struct rr_core *core);
	/* the listeners are closed: refuse what is still arriving */
	void (*stopped_listening)(struct rr_core *core);
	/* the loop has ended */
	void (*stop)(struct rr_core *core);
	/* free core->layer[id] (the ring may be gone) */
	void (*fini)(struct rr_core *core);
};

typedef void rr_cqe_fn(struct rr_core *core, const struct io_uring_cqe *cqe);

/* Register the layer of id, and the completion handler of a user_data
 * kind. Both before rr_broker_start(); a second registration of the same
 * id or kind replaces the first. */
void rr_reactor_layer(enum rr_layer_id id, const struct rr_layer *l);
void rr_reactor_on(enum rr_ud_kind kind, rr_cqe_fn *fn);

struct rr_core {
	unsigned id;
	struct rr_broker *broker;
	pthread_t thread;
	struct io_uring ring;
	int ring_fd;
	int listen_fd;
	int tls_listen_fd;

	struct rr_bufring bufs; /* provided receive buffers */

	uint32_t slots; /* fixed-file table size */
	struct rr_wheel wheel;
	void *layer[RR_LAYERS];
	struct rr_xq *xq; /* queues to the other cores (conn/xq.h) */

	/* Counts the layers keep so the loop knows when the core is drained
	 * (no member, no hand-off) and when it may exit (nothing in flight). */
	uint32_t conns_live;
	uint32_t members_live;
	uint32_t handoffs_inflight;
	uint32_t accepts_inflight;
	uint32_t store_inflight;
	uint32_t cluster_inflight; /* cluster requests, the stop fence included */

	uint64_t now_ms;
	bool draining;
	bool drained;
	bool stopped;
	bool started;
	int init_rc;

	struct rr_core_stats stats __attribute__((aligned(64)));
};

struct rr_tls_ctx;

struct rr_broker {
	struct rr_config cfg;
	struct rr_ring_features features;
	unsigned ncores;
	struct rr_core *cores;
	atomic_uint live_conns;	   /* all cores: for --max-connections */
	atomic_bool draining;	   /* /healthz and upgrades answer 503 */
	atomic_bool closing;	   /* members are being closed with 1001 */
	atomic_bool stopping;	   /* after the drain: close listeners and exit */
	atomic_uint cores_drained; /* cores whose members are all gone */
	atomic_bool abort_start;
	pthread_mutex_t tls_lock;
	struct rr_tls_ctx *tls_ctx;	 /* swapped on SIGHUP; under tls_lock */
	struct rr_proxy_from proxy_from; /* --proxy-from, parsed */
	pthread_barrier_t ready, go;
	uint64_t start_ms;
};

/* Create the cores (rings, listeners, pools); 0 or -errno with a log line. */
int rr_broker_init(struct rr_broker *b);
/* Start one pinned thread per core. */
int rr_broker_start(struct rr_broker *b);
/* Begin the drain (called from the signal-handling thread): /healthz and
 * upgrades answer 503 at once; members get close 1001 once
 * rr_broker_close_members() is called (after --drain-grace). */
void rr_broker_drain(struct rr_broker *b);
void rr_broker_close_members(struct rr_broker *b);
/* True once every core's members are gone. */
bool rr_broker_drained(struct rr_broker *b);
/* End: every core closes its listeners, answers requests still arriving
 * with 503, and exits once its last connections are closed. */
void rr_broker_stop(struct rr_broker *b);
/* Wait up to timeout_ms for every core to finish; true if all did. */
bool rr_broker_join(struct rr_broker *b, uint64_t timeout_ms);
void rr_broker_free(struct rr_broker *b);

/* Load (or reload) the TLS certificate and key named by the flags. On
 * failure the context in use stays. Returns 0 or -errno (logged). */
int rr_broker_tls_load(struct rr_broker *b);
/* The current TLS context with a reference for the caller, or NULL. */
struct rr_tls_ctx *rr_broker_tls_ctx(struct rr_broker *b);

/* Home core of a room (FNV-1a of its name, stable across restarts). */
unsigned rr_broker_home(const struct rr_broker *b, const char *name, size_t n);

/* ---- one core, for the loop and for tests that drive it by hand ---------- */

/* Set up a core's ring, buffers, listeners (unless listen is false) and the
 * layers' state on the calling thread. 0 or -errno (logged). */
int rr_core_setup(struct rr_broker *b, struct rr_core *core, unsigned id, bool listen);
/* Run every layer's settle and flush hooks (one iteration's tail). */
void rr_core_settle_flush(struct rr_core *core);
/* Hand one completion to the handler registered for its kind. */
void rr_core_dispatch(struct rr_core *core, const struct io_uring_cqe *cqe);
/* Undo rr_core_setup (layers' fini, then the ring and buffers). */
void rr_core_teardown(struct rr_core *core);

/* The bytes of provided buffer bid of the core. */
static inline uint8_t *rr_core_buf(struct rr_core *core, uint32_t bid)
{
	return rr_bufring_buf(&core->bufs, bid);
}

/* The core running on the calling thread (set by the loop and by
 * rr_core_setup), or NULL. */
struct rr_core *rr_core_current(void);
/* Make core the calling thread's (a test driving several cores by hand). */
void rr_core_enter(struct rr_core *core);

#endif
