/*
 * Per-core counters and histograms for /metrics (rendered by
 * gate/metrics.c). Each core writes only its own (plain increments through
 * relaxed atomics that compile to ordinary moves); the core answering
 * /metrics reads every core's with relaxed loads.
 *
 * Names follow the Prometheus conventions: a counter is exposed as
 * ringroom_<name>_total, codes go in a label (RR_STATS_CODED), durations are
 * _seconds histograms (RR_HISTS) summed over the cores when rendered.
 */
#ifndef RR_REACTOR_STATS_H
#define RR_REACTOR_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "core/time.h" /* rr_now_ns(), for the callers timing a histogram */

/* X(field, kind, help): exposed as ringroom_<field>{core="N"}, with _total
 * appended for a counter. */
#define RR_STATS(X)                                                                                \
	X(connections_accepted, counter, "TCP connections accepted")                               \
	X(connections_open, gauge, "connections currently open on this core")                      \
	X(upgrades, counter, "WebSocket upgrades completed")                                       \
	X(handshake_timeouts, counter, "connections closed by --handshake-timeout")                \
	X(handoffs_out, counter, "connections handed to their room's home core")                   \
	X(handoffs_in, counter, "connections received from another core")                          \
	X(messages_in, counter, "data messages received")                                          \
	X(bytes_in, counter, "bytes received")                                                     \
	X(frames_out, counter, "frames queued for sending (one per member per broadcast)")         \
	X(bytes_out, counter, "bytes sent")                                                        \
	X(sends, counter, "send operations submitted")                                             \
	X(broadcasts, counter, "room broadcasts")                                                  \
	X(pings_sent, counter, "server pings sent")                                                \
	X(api_requests, counter, "backend API requests routed to a room's core (or all)")          \
	X(proxy_rejected, counter,                                                                 \
	  "connections closed for a missing or bad PROXY header or source")                        \
	X(recv_paused, counter, "receives paused because the input backlog passed its limit")      \
	X(recv_enobufs, counter, "receives paused because the buffer ring ran dry")                \
	X(rooms_open, gauge, "rooms currently in memory on this core")                             \
	X(spread_rooms, gauge,                                                                     \
	  "rooms homed on this core whose new members stay on their own core")                     \
	X(shard_members, gauge, "members this core holds for rooms homed on another core")         \
	X(shard_frames_forwarded, counter,                                                         \
	  "frames passed to other cores (one per frame per core)")                                 \
	X(shard_frames_received, counter,                                                          \
	  "frames received from other cores for their rooms' members here")                        \
	X(shard_batches, counter,                                                                  \
	  "batches of operations posted to other cores (one per core per iteration at most)")      \
	X(tls_handshakes, counter, "TLS handshakes completed")                                     \
	X(tls_handshake_failures, counter, "TLS handshakes that failed")

/* X(field, family, code): counters exposed as
 * ringroom_<family>{core="N",code="<code>"}; one family's entries are
 * adjacent (its HELP and TYPE are written once). */
#define RR_STATS_CODED(X)                                                                          \
	X(rejected_400, http_responses_total, 400)                                                 \
	X(rejected_401, http_responses_total, 401)                                                 \
	X(rejected_403, http_responses_total, 403)                                                 \
	X(rejected_404, http_responses_total, 404)                                                 \
	X(rejected_405, http_responses_total, 405)                                                 \
	X(rejected_426, http_responses_total, 426)                                                 \
	X(rejected_429, http_responses_total, 429)                                                 \
	X(rejected_431, http_responses_total, 431)                                                 \
	X(rejected_503, http_responses_total, 503)                                                 \
	X(close_1000, closes_total, 1000)                                                          \
	X(close_1001, closes_total, 1001)                                                          \
	X(close_1002, closes_total, 1002)                                                          \
	X(close_1007, closes_total, 1007)                                                          \
	X(close_1008, closes_total, 1008)                                                          \
	X(close_1009, closes_total, 1009)                                                          \
	X(close_1011, closes_total, 1011)                                                          \
	X(close_1013, closes_total, 1013)                                                          \
	X(close_4008, closes_total, 4008)                                                          \
	X(close_other, closes_total, other)

#define RR_STATS_CODED_HELP_http_responses_total                                                   \
	"requests answered with an error before the upgrade, by status"
#define RR_STATS_CODED_HELP_closes_total                                                           \
	"WebSocket connections the broker closed, by the close code it sent"

/* X(field, help): ringroom_<field> histograms of durations. */
#define RR_HISTS(X)                                                                                \
	X(handshake_seconds, "from accept to the 101 answer")                                      \
	X(storage_commit_seconds,                                                                  \
	  "storage writes (appends, sessions, keys) from submit to completion")                    \
	X(broadcast_seconds, "one fan-out walk: a frame queued for every member of a room")

/*
 * Fixed log-spaced buckets, no allocation: bucket k (0 <= k < RR_HIST_BUCKETS)
 * counts durations in (2^(k-1), 2^k] microseconds, so the upper bounds run
 * from 1 us to 2^22 us (about 4.2 s); bucket RR_HIST_BUCKETS is +Inf. The
 * renderer makes them cumulative (le="..."), as Prometheus wants.
 */
#define RR_HIST_BUCKETS 23

struct rr_hist {
	uint64_t bucket[RR_HIST_BUCKETS + 1];
	uint64_t sum_ns;
};

struct rr_core_stats {
#define RR_STAT_FIELD(name, kind, help) uint64_t name;
	RR_STATS(RR_STAT_FIELD)
#undef RR_STAT_FIELD
#define RR_STAT_CODED_FIELD(name, family, code) uint64_t name;
	RR_STATS_CODED(RR_STAT_CODED_FIELD)
#undef RR_STAT_CODED_FIELD
#define RR_HIST_FIELD(name, help) struct rr_hist name;
	RR_HISTS(RR_HIST_FIELD)
#undef RR_HIST_FIELD
};

#define RR_STAT_ADD(core, field, n)                                                                \
	__atomic_store_n(&(core)->stats.field,                                                     \
			 __atomic_load_n(&(core)->stats.field, __ATOMIC_RELAXED) + (n),            \
			 __ATOMIC_RELAXED)
#define RR_STAT_INC(core, field) RR_STAT_ADD(core, field, 1)
#define RR_STAT_DEC(core, field) RR_STAT_ADD(core, field, (uint64_t)-1)

static inline void rr_stat_bump(uint64_t *v)
{
	__atomic_store_n(v, __atomic_load_n(v, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

/* Count a close the broker sends, by its code (other codes: close_other). */
static inline void rr_stats_close(struct rr_core_stats *s, uint16_t code)
{
	uint64_t *v;
	switch (code) {
	case 1000:
		v = &s->close_1000;
		break;
	case 1001:
		v = &s->close_1001;
		break;
	case 1002:
		v = &s->close_1002;
		break;
	case 1007:
		v = &s->close_1007;
		break;
	case 1008:
		v = &s->close_1008;
		break;
	case 1009:
		v = &s->close_1009;
		break;
	case 1011:
		v = &s->close_1011;
		break;
	case 1013:
		v = &s->close_1013;
		break;
	case 4008:
		v = &s->close_4008;
		break;
	default:
		v = &s->close_other;
		break;
	}
	rr_stat_bump(v);
}
#define RR_STAT_CLOSE(core, code) rr_stats_close(&(core)->stats, (code))

/* The bucket of a duration in nanoseconds. */
static inline unsigned rr_hist_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000 + (ns % 1000 != 0); /* v <= 2^k us, exactly */
	if (us <= 1)
		return 0;
	unsigned k = 64u - (unsigned)__builtin_clzll(us - 1);
	return k > RR_HIST_BUCKETS ? RR_HIST_BUCKETS : k;
}

static inline void rr_hist_observe(struct rr_hist *h, uint64_t ns)
{
	rr_stat_bump(&h->bucket[rr_hist_bucket(ns)]);
	__atomic_store_n(&h->sum_ns, __atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED) + ns,
			 __ATOMIC_RELAXED);
}

/* Record a duration (ns) in the core's histogram field (one of RR_HISTS). */
#define RR_HIST_OBSERVE(core, field, ns) rr_hist_observe(&(core)->stats.field, (ns))

#endif
