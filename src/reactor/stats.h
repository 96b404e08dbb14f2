/*
 * Per-core counters for /metrics (rendered by gate/metrics.c). Each core writes only its own counters (plain
 * increments through relaxed atomics that compile to ordinary moves); the
 * core answering /metrics reads every core's with relaxed loads.
 */
#ifndef RR_REACTOR_STATS_H
#define RR_REACTOR_STATS_H

#include <stddef.h>
#include <stdint.h>

#define RR_STATS(X)                                                                        \
	X(connections_accepted, counter, "TCP connections accepted")                       \
	X(connections_open, gauge, "connections currently open on this core")              \
	X(upgrades, counter, "WebSocket upgrades completed")                              \
	X(rejected_400, counter, "requests answered 400")                                 \
	X(rejected_401, counter, "requests answered 401")                                 \
	X(rejected_403, counter, "requests answered 403")                                 \
	X(rejected_404, counter, "requests answered 404")                                 \
	X(rejected_405, counter, "requests answered 405")                                 \
	X(rejected_426, counter, "requests answered 426")                                 \
	X(rejected_429, counter, "requests answered 429")                                 \
	X(rejected_431, counter, "requests answered 431")                                 \
	X(rejected_503, counter, "requests answered 503")                                 \
	X(handshake_timeouts, counter, "connections closed by --handshake-timeout")        \
	X(handoffs_out, counter, "connections handed to their room's home core")          \
	X(handoffs_in, counter, "connections received from another core")                 \
	X(messages_in, counter, "data messages received")                                 \
	X(bytes_in, counter, "bytes received")                                            \
	X(frames_out, counter, "frames queued for sending (one per member per broadcast)") \
	X(bytes_out, counter, "bytes sent")                                               \
	X(sends, counter, "send operations submitted")                                    \
	X(broadcasts, counter, "room broadcasts")                                         \
	X(closes_1002, counter, "connections closed with 1002")                           \
	X(closes_1007, counter, "connections closed with 1007")                           \
	X(closes_1009, counter, "connections closed with 1009")                           \
	X(closes_1013, counter, "slow consumers closed with 1013")                        \
	X(closes_4008, counter, "idle connections closed with 4008")                      \
	X(pings_sent, counter, "server pings sent")                                       \
	X(api_requests, counter, "backend API requests routed to a room's core (or all)") \
	X(proxy_rejected, counter, "connections closed for a missing or bad PROXY header or source") \
	X(recv_paused, counter, "receives paused because the input backlog passed its limit") \
	X(recv_enobufs, counter, "receives paused because the buffer ring ran dry")       \
	X(rooms_open, gauge, "rooms currently in memory on this core")                    \
	X(tls_handshakes, counter, "TLS handshakes completed")                            \
	X(tls_handshake_failures, counter, "TLS handshakes that failed")

struct rr_core_stats {
#define RR_STAT_FIELD(name, kind, help) uint64_t name;
	RR_STATS(RR_STAT_FIELD)
#undef RR_STAT_FIELD
};

#define RR_STAT_ADD(core, field, n)                                                        \
	__atomic_store_n(&(core)->stats.field,                                            \
			 __atomic_load_n(&(core)->stats.field, __ATOMIC_RELAXED) + (n),    \
			 __ATOMIC_RELAXED)
#define RR_STAT_INC(core, field) RR_STAT_ADD(core, field, 1)
#define RR_STAT_DEC(core, field) RR_STAT_ADD(core, field, (uint64_t)-1)

#endif
