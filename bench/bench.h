/*
 * ringroom-bench: what the parent and its worker processes share.
 *
 * DESIGN: the parent parses flags, maps one shared anonymous region, forks
 * the workers and then only watches. Each worker owns an io_uring, a
 * provided-buffer ring and its share of the connections; it publishes live
 * counters and its latency histograms into its own slot of the shared region
 * (one writer per slot, so no locks: the parent's once-a-second reads may be
 * a little stale, and the final read happens after the worker has set
 * `done` with a release store). The run is driven by a phase word the parent
 * writes: CONNECT (every worker opens its connections and says `ready`),
 * RUN (from t_start: warm-up until t_warm, measured until t_end), DRAIN (all
 * publishers have `stopped` and written how many messages each sent; the
 * receivers wait for what is still in flight, then count what never came),
 * EXIT. All times are CLOCK_MONOTONIC nanoseconds, which is one clock for
 * every process on the machine, so a stamp written by one worker can be
 * compared with the arrival time seen by another.
 */
#ifndef RR_BENCH_H
#define RR_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "hist.h"
#include "seq.h"
#include "url.h"

enum rr_bench_mode {
	RR_BENCH_ECHO,
	RR_BENCH_FANOUT,
	RR_BENCH_IDLE,
	RR_BENCH_CHURN,
	RR_BENCH_CHAT, /* fanout's shape over ringroom's /chat/{room} JSON protocol */
	/* fanout's receivers; the messages come from --publishers keep-alive
	 * HTTP connections POSTing to the backend API's /api/raw/{room} */
	RR_BENCH_PUBLISH,
};

/* fanout, chat and publish share the rooms/members/publishers shape, the
 * receivers and the pacing (publish: the publishers are HTTP connections,
 * not members). */
static inline bool rr_bench_mode_rooms(enum rr_bench_mode m)
{
	return m == RR_BENCH_FANOUT || m == RR_BENCH_CHAT || m == RR_BENCH_PUBLISH;
}

/* --ports: at most this many ports to spread the connections over */
#define RR_BENCH_PORTS_MAX 16

struct rr_bench_cfg {
	enum rr_bench_mode mode;
	struct rr_bench_url url;
	/* --ports: connection g goes to ports[g mod nports] of the URL's host
	 * instead of the URL's port (several brokers: a cluster's nodes) */
	uint16_t ports[RR_BENCH_PORTS_MAX];
	uint32_t nports;
	uint32_t conns;	     /* echo/idle: connections; churn: concurrent cycles */
	uint32_t rooms;	     /* fanout */
	uint32_t members;    /* fanout: per room */
	uint32_t publishers; /* fanout: per room, members 0..P-1 of each room;
			      * publish: HTTP connections in all */
	double rate;	     /* fanout: messages/s per room; publish: in all */
	uint32_t size;	     /* message payload bytes (>= RR_BENCH_STAMP_LEN) */
	uint64_t duration_ns;
	uint64_t warmup_ns;
	uint64_t drain_ns;	     /* after the run: wait this long at most for stragglers */
	uint64_t connect_timeout_ns; /* per connection: connect + upgrade */
	uint32_t procs;
	uint32_t src_ips;	      /* spread source addresses over 127.0.0.1 .. 127.0.0.N */
	uint32_t connect_concurrency; /* handshakes in flight per worker */
	uint64_t drop_every;	      /* test hook: discard every Nth received message */
	int server_pid;		      /* idle: measure this process's RSS and CPU */
	double slow_pct;	      /* fanout: % of each room's receivers that stop reading */
	bool insecure;		      /* wss://: do not check the server's certificate */
	const char *ca_file;	      /* wss://: CA the server's chain must verify against */
	const char *api_key;	      /* publish: the backend API's bearer key */
	uint32_t window;	      /* publish: requests in flight per HTTP connection */
	bool json;
	bool quiet;
	uint32_t run_id; /* random per run, in every stamp */
};

/* Connections the run opens (fanout: rooms x members; publish: that plus
 * the HTTP publishers). */
uint32_t rr_bench_cfg_total_conns(const struct rr_bench_cfg *cfg);
/* Slow readers per room (fanout with --slow-readers): the room's last
 * members, never a publisher. */
uint32_t rr_bench_cfg_slow_per_room(const struct rr_bench_cfg *cfg);
/* Publishers (fanout: rooms x publishers; echo: one per connection).
 * publish: also rooms x publishers, one stamp id per (room, HTTP
 * connection): room * P + connection. */
uint32_t rr_bench_cfg_total_pubs(const struct rr_bench_cfg *cfg);
/* The index into --ports of connection gid (0 without --ports), and the port
 * it connects to. */
uint32_t rr_bench_cfg_port_index(const struct rr_bench_cfg *cfg, uint32_t gid);
uint16_t rr_bench_cfg_port(const struct rr_bench_cfg *cfg, uint32_t gid);

enum rr_bench_phase {
	RR_BENCH_PH_CONNECT,
	RR_BENCH_PH_RUN,
	RR_BENCH_PH_DRAIN,
	RR_BENCH_PH_EXIT,
};

/* One worker's counters. Live ones are stored with relaxed atomics. */
struct rr_bench_slot {
	uint64_t connected;	  /* open now */
	uint64_t opened;	  /* upgrades completed, ever */
	uint64_t conn_failed;	  /* connect or upgrade failed / timed out */
	uint64_t hs_timeouts;	  /* of those: connected, but no upgrade response in time */
	uint64_t peer_closed;	  /* the server closed a connection during the run */
	uint64_t proto_errors;	  /* bad frames, bad stamps, send/recv errors */
	uint64_t sent;		  /* data messages sent */
	uint64_t received;	  /* data messages received (all phases) */
	uint64_t measured;	  /* received with a stamp inside the measured window */
	uint64_t arrived;	  /* received while the measured window was open, any stamp */
	uint64_t cycles;	  /* churn: cycles completed inside the window */
	uint64_t misrouted;	  /* a message from a publisher this receiver must not hear */
	uint64_t foreign;	  /* stamped by another run: ignored, reported */
	uint64_t dropped;	  /* discarded on purpose (--drop-every) */
	uint64_t enobufs;	  /* recv ran out of provided buffers (re-armed) */
	uint64_t pub_backlog_max; /* fanout: most messages a publisher fell behind */
	uint64_t rss_start_kb;	  /* this worker's VmRSS before connecting */
	uint64_t rss_open_kb;	  /* ... once its connections are open */
	int last_status;	  /* last non-101 HTTP status seen */
	int last_errno;		  /* last connect/socket error */
	uint16_t last_close_code; /* last close code the server sent */
	uint64_t slow_1013;	  /* slow readers the server closed with 1013 */
	uint64_t slow_other;	  /* slow readers closed otherwise (other code, FIN, reset) */
	uint64_t acks;		  /* chat: acks received by publishers */
	uint64_t unacked;	  /* chat: messages never acknowledged by the drain's end */
	uint64_t chat_ready;	  /* chat: connections past welcome + initial_state */
	uint64_t chat_errors;	  /* chat: "error" frames from the server */
	/* publish: acks/unacked/ack above count the API's 200 answers, the
	 * requests never answered and request sent -> answer read */
	uint64_t pub_answered;	/* publish: 200 answers to requests stamped in the window */
	uint64_t http_errors;	/* publish: answers other than 200 */
	uint64_t api_delivered; /* publish: sum of the answers' "delivered" */
	int http_last_status;	/* publish: last non-200 answer's status */
	struct rr_bench_seq_counts seq;
	int ready, stopped, done;
	struct rr_bench_hist lat; /* message latency, ns (echo: round trip) */
	struct rr_bench_hist hs;  /* connect start -> 101 received, ns */
	struct rr_bench_hist ack; /* chat: publisher's send -> its ack, ns */
};

struct rr_bench_shared {
	int phase;
	int abort;
	uint64_t t_start, t_warm, t_end, t_drain_end;
	uint32_t nslots;
	uint32_t npubs;
	uint64_t *pub_sent; /* [npubs]: messages each publisher sent, set at stop */
	struct rr_bench_slot slots[];
};

/* Run worker w (0-based) until the phase reaches EXIT. Returns the exit
 * status for the worker process. */
int rr_bench_worker_run(const struct rr_bench_cfg *cfg, struct rr_bench_shared *sh, uint32_t w);

uint64_t rr_bench_now_ns(void);
/* VmRSS of a process in KiB (pid 0: self), 0 if unknown. */
uint64_t rr_bench_rss_kb(int pid);

#define RR_LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define RR_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

#endif
