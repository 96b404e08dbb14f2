/*
 * The broker and its cores: one pinned thread per core, each with its own
 * io_uring, listener, buffer ring, timer wheel, connections and rooms.
 *
 * DESIGN: a loop iteration reaps a bounded batch of completions and runs
 * their handlers; handlers only queue output on connections (marking them
 * dirty); then every dirty connection is flushed with at most one send, and
 * all the iteration's SQEs reach the kernel in one io_uring_enter, which also
 * waits for the next completions or the next timer deadline.
 */
#ifndef RR_REACTOR_LOOP_H
#define RR_REACTOR_LOOP_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/flags.h"
#include "reactor/ring.h"
#include "reactor/timer.h"
#include "room/metrics.h"

struct rr_conn;
struct rr_accept_slot;
struct rr_tls_ctx;
struct rr_room_table;
struct rr_broker;

struct rr_core {
	unsigned id;
	struct rr_broker *broker;
	pthread_t thread;
	struct io_uring ring;
	int ring_fd;
	int listen_fd;
	int tls_listen_fd;
	uint32_t accepts_inflight;
	struct rr_accept_slot *accept_slots; /* with --max-connections-per-ip */

	/* provided receive buffers */
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	uint32_t nbufs, buf_size;
	uint32_t bufs_provided; /* grows by RR_RECV_BUFFERS_STEP on -ENOBUFS */
	uint32_t bufs_to_return;
	bool bufs_short;

	/* connection slots: mmap'd, touched only as used */
	struct rr_conn *conns;
	uint32_t conns_cap, conns_used, conns_live;
	uint32_t slots; /* fixed-file table size */
	struct rr_timer accept_retry[2]; /* per listener: plain, TLS */
	uint32_t members_live; /* upgraded connections */
	struct rr_conn *free_conns;

	/* connections with output to flush, and receives to re-arm */
	struct rr_conn *dirty;
	struct rr_conn *rearm;

	struct rr_wheel wheel;
	struct rr_room_table *rooms;
	uint32_t handoffs_inflight;
	uint32_t store_inflight; /* storage requests awaiting their completion */

	/* per-iteration scratch for sendmsg: consumed by the kernel at submit
	 * (IORING_FEAT_SUBMIT_STABLE), so it is reused after each submit */
	struct msghdr *msgs;
	struct iovec *iovs;
	uint32_t msgs_used, iovs_used, msgs_cap, iovs_cap;

	/* decrypted bytes of one TLS read, passed on at once */
	uint8_t *tls_plain;
	size_t tls_plain_cap;

	uint64_t now_ms;
	bool draining;
	bool drained;
	bool stopped;
	bool started;
	int init_rc;

	struct rr_core_stats stats __attribute__((aligned(64)));
};

struct rr_broker {
	struct rr_config cfg;
	struct rr_ring_features features;
	unsigned ncores;
	struct rr_core *cores;
	atomic_uint live_conns;   /* all cores: for --max-connections */
	atomic_bool draining;
	atomic_bool stopping;       /* after the drain: close listeners and exit */
	atomic_uint cores_drained;  /* cores whose members are all gone */
	atomic_bool abort_start;
	pthread_mutex_t tls_lock;
	struct rr_tls_ctx *tls_ctx; /* swapped on SIGHUP; under tls_lock */
	pthread_barrier_t ready, go;
	uint64_t start_ms;
};

/* Create the cores (rings, listeners, pools); 0 or -errno with a log line. */
int rr_broker_init(struct rr_broker *b);
/* Start one pinned thread per core. */
int rr_broker_start(struct rr_broker *b);
/* Begin the drain on every core (called from the signal-handling thread):
 * /healthz and upgrades answer 503, members get close 1001. */
void rr_broker_drain(struct rr_broker *b);
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

/* Give a provided buffer back to the ring (published at the end of the batch). */
void rr_core_return_buffer(struct rr_core *core, uint32_t bid);

/* Home core of a room. */
unsigned rr_room_home(const struct rr_broker *b, const char *name, size_t n);

#endif
