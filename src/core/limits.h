/*
 * Every limit of the broker in one place: its default, its ceiling, and why
 * (SQLite's sqliteLimit.h). Flags override the defaults within the ceilings;
 * the values here are the ones --help prints.
 */
#ifndef RR_CORE_LIMITS_H
#define RR_CORE_LIMITS_H

/* Connections in all: each costs a fixed-file slot, a connection slot and
 * kernel socket memory. The fixed-file table of a ring is held to the
 * process's RLIMIT_NOFILE, so one core holds at most that many. */
#define RR_MAX_CONNECTIONS_DEFAULT 65536
#define RR_MAX_CONNECTIONS_CEIL 4000000

/* Members per room: a broadcast costs one queue entry per member, so a room
 * bounds the work one message can cause. */
#define RR_MAX_ROOM_SIZE_DEFAULT 100000
#define RR_MAX_ROOM_SIZE_CEIL 4000000

/* Output queued on one connection before it is a slow consumer (1013). Big
 * enough for a burst of 1 MiB messages, small enough that 10k slow readers
 * can't exhaust memory unnoticed. */
#define RR_MAX_QUEUED_BYTES_DEFAULT (4u << 20)
#define RR_MAX_QUEUED_BYTES_CEIL (1u << 30)

/* One reassembled message (1009). */
#define RR_MAX_MESSAGE_BYTES_DEFAULT (1u << 20)
#define RR_MAX_MESSAGE_BYTES_CEIL (256u << 20)

/* Request line + headers of the upgrade (431). Browsers send < 2 KiB. */
#define RR_MAX_HEADER_BYTES_DEFAULT 8192
#define RR_MAX_HEADER_BYTES_CEIL 65536
#define RR_MAX_HEADERS_DEFAULT 100
#define RR_MAX_HEADERS_CEIL 1000

/* PROXY protocol headers (src/proxy). v1 is at most 107 bytes by its spec;
 * v2 carries a 16-byte header plus a length, and the length is capped so a
 * peer can't make a connection buffer megabytes before it is known to be
 * bogus: 216 bytes of the largest address block plus ample room for the TLVs
 * balancers send (ALPN, SNI, unique id, TLS details, cloud endpoint ids). */
#define RR_PROXY_V1_BYTES_MAX 107
#define RR_PROXY_V2_LEN_MAX 2048
#define RR_PROXY_BYTES_MAX (16 + RR_PROXY_V2_LEN_MAX)
/* --proxy-from entries: a short list of balancer networks, matched linearly
 * once per accepted connection. */
#define RR_PROXY_FROM_MAX 64

/* Timeouts (ms). */
#define RR_HANDSHAKE_TIMEOUT_MS_DEFAULT 10000
#define RR_PING_INTERVAL_MS_DEFAULT 25000
#define RR_IDLE_TIMEOUT_MS_DEFAULT 60000
#define RR_CLOSE_TIMEOUT_MS_DEFAULT 5000
#define RR_DRAIN_TIMEOUT_MS_DEFAULT 10000
/* Lingering close while the broker stops: long enough for a peer to read
 * our last bytes on a LAN, short enough not to hold the exit. */
#define RR_STOP_LINGER_MS 300
#define RR_TIMEOUT_MS_CEIL (24u * 3600 * 1000)

/* Provided receive buffers per core: receives in flight at once. An idle
 * connection owns none; a buffer returns to the ring as soon as its bytes are
 * decoded. */
#define RR_RECV_BUFFERS_DEFAULT 1024
#define RR_RECV_BUFFERS_CEIL 32768
#define RR_RECV_BUFFERS_STEP 64 /* provided at start, and added per shortage */
#define RR_RECV_BUFFER_SIZE_DEFAULT 16384
#define RR_RECV_BUFFER_SIZE_CEIL (1u << 20)

/* Reactor threads. */
#define RR_CORES_CEIL 256

/* Completions handled per batch before the loop flushes output: bounds the
 * work between two flushes so a backlogged publisher can't starve them. */
#define RR_CQE_BATCH 256

/* Input budget: messages one connection delivers per loop iteration, and
 * bytes it may have waiting past that budget before its receive is paused
 * (TCP then pushes back on the sender). Bounds one iteration's work and the
 * memory it queues, so a backlogged publisher can't starve the flush. */
#define RR_INPUT_MESSAGES_MAX 64
#define RR_INPUT_BACKLOG_MAX (256u << 10)

/* Output chunks: frames up to RR_OUT_COPY_MAX bytes are copied into pooled
 * chunks of RR_OUT_CHUNK bytes (no allocation per frame per member, few
 * iovecs per send); larger ones are queued by reference. A core keeps at
 * most RR_OUT_POOL_MAX free chunks. */
#define RR_OUT_CHUNK 2048
#ifndef RR_OUT_COPY_MAX
#define RR_OUT_COPY_MAX 512
#endif
#ifndef RR_OUT_COPY_QUEUED_MAX
#define RR_OUT_COPY_QUEUED_MAX (16u << 10)
#endif
#define RR_OUT_POOL_MAX 4096
#define RR_OUT_REF_POOL_MAX 65536

/* Bulk output (replays, history) is pulled: the next page is read when the
 * member's queue is below this. */
#define RR_OUT_LOW_WATER (64u << 10)

/* io_uring submission queue entries per core. */
#define RR_SQ_ENTRIES 4096

/* Frames gathered in one sendmsg, and bytes per send: past these the rest
 * goes in the next send (the completion re-flushes at once). */
#define RR_SEND_IOV_MAX 256
#ifndef RR_SEND_BYTES_MAX
#define RR_SEND_BYTES_MAX (1u << 20)
#endif

/* Fixed-file slots a core keeps free for connections other cores hand to
 * it: a new connection past slots - reserve is answered 503. */
#define RR_SLOTS_RESERVE 64

/* Hand-offs a core may have in flight to other cores. */
#define RR_HANDOFF_INFLIGHT_MAX 4096

/* Retry-After seconds on 503/429. */
#define RR_RETRY_AFTER_S 5

#define RR_STRINGIFY_(x) #x
#define RR_STRINGIFY(x) RR_STRINGIFY_(x)

#endif
