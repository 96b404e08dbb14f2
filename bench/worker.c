/*
 * One ringroom-bench worker process: an io_uring event loop driving its
 * share of the connections through connect, upgrade, the mode's traffic and
 * close.
 *
 * DESIGN: a connection is a ~150-byte slot plus, on receivers, one 16-byte
 * sequence state per publisher it hears. Receives are one multishot recv per
 * connection into the worker's provided-buffer ring: an idle connection owns
 * no receive buffer, and data is parsed straight out of the ring buffer,
 * which goes back to the kernel at the end of the completion batch. Sends
 * are coalesced: each loop iteration gives a connection at most one send
 * carrying everything due for it (a pong, up to a batch of messages, a
 * close); a connection never has two sends in flight. A slot is released
 * only when it has no operation in flight (connect, recv, send), and the
 * slot's generation travels in user_data so a late completion is recognised.
 *
 * Who is who: fanout connection g (0 .. rooms*members-1) is member g % M of
 * room g / M; members 0..P-1 of a room publish, as publisher id
 * room*P + member. Connection g belongs to worker g % procs, so every room
 * is spread over all workers. An echo connection is its own publisher (id
 * g) and hears only itself. In publish mode no member publishes: the
 * connections after the rooms' members, R*M .. R*M+K-1, are K keep-alive
 * HTTP connections POSTing to /api/raw/{room} (see put_request), and they
 * are the last slots of each worker.
 */
#include "bench.h"
#include "chat.h"
#include "frame.h"
#include "http_answer.h"
#include "tls.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ws/ws.h"

/* Provided receive buffers per worker: enough that thousands of receivers
 * can each hold one while the batch is processed. 4096 x 4 KiB = 16 MiB. */
#define RX_BUFS 4096
#define RX_BUF_SIZE 4096
#define RX_BGID 1
#define SQ_ENTRIES 4096
#define CQ_ENTRIES 32768
/* Most completions handled before the loop flushes and submits again. */
#define CQE_BATCH 4096
/* Most messages one publisher puts in one send. */
#define PUB_BATCH_MAX 64
/* Upgrade response we accept, headers included. */
#define HS_MAX 2048
#define PING_MAX 125
/* Delivery anomalies printed in detail per worker (all are counted). */
#define ANOMALIES_SHOWN_MAX 10
/* chat: bytes of each server message kept for parsing; the content (and the
 * stamp in it) comes after the id, user id and user name. */
#define CHAT_KEEP 512
/* Receive buffer a slow reader asks for (the kernel doubles it). */
#define SLOW_RCVBUF 8192
/* publish: request bytes awaiting their answers per HTTP connection (past
 * the first request). The broker keeps a connection's unanswered requests
 * in its request buffer (a body of --max-message-bytes plus 256 KiB of
 * pipelined requests) and answers 431 past it: 16 KiB stays well inside. */
#define HTTP_INFLIGHT_MAX (16 * 1024)
/* publish: non-200 answers and unframeable streams shown in detail */
#define HTTP_ERRORS_SHOWN_MAX 5

enum conn_state {
	C_FREE,
	C_CONNECTING,
	C_TLS,	     /* wss://: TLS handshake in progress */
	C_HANDSHAKE, /* upgrade request sent, waiting for the 101 */
	C_OPEN,
	C_CLOSING, /* close frame sent or received: waiting for the server's FIN */
	C_DEAD,	   /* failed or finished: waiting for in-flight ops, then released */
};

enum {
	F_CONNECT = 1 << 0,  /* connect in flight */
	F_RECV = 1 << 1,     /* multishot recv armed */
	F_SEND = 1 << 2,     /* send in flight */
	F_QUEUED = 1 << 3,   /* on the flush list */
	F_PONG = 1 << 4,     /* pong owed (payload in aux) */
	F_CLOSE_TX = 1 << 5, /* close frame to send */
	F_CLOSE_SENT = 1 << 6,
	F_WANT_SEND = 1 << 7,	/* echo: next message due */
	F_REARM = 1 << 8,	/* on the re-arm list */
	F_PEER_CLOSED = 1 << 9, /* the server sent a close frame */
	F_FAILED = 1 << 10,
	F_SLOW = 1 << 11,	/* --slow-readers: stops reading after the warm-up */
	F_PAUSED = 1 << 12,	/* a slow reader not reading now (recv cancelled) */
	F_SLOW_SEEN = 1 << 13,	/* its close (1013 or otherwise) is counted */
	F_CHAT_READY = 1 << 14, /* chat: initial_state received, a member now */
};
/* Flags that belong to the slot, not to one connection's life. */
#define F_SLOT_KEEP (F_QUEUED | F_REARM | F_SLOW)

enum op_kind {
	OP_CONNECT = 1,
	OP_RECV,
	OP_SEND,
	OP_IGNORE, /* cancels: nothing to do on completion */
};

struct bconn {
	int fd;
	uint32_t gid; /* global connection index (see the DESIGN note) */
	uint32_t room;
	int32_t pub; /* publisher id, -1 if this connection does not publish */
	uint16_t gen;
	uint16_t flags;
	uint8_t state;
	uint8_t aux_len; /* pong payload length */
	uint16_t hs_len; /* upgrade response bytes in aux */
	uint32_t tx_off, tx_len;
	uint64_t sent;		  /* messages built for sending */
	uint64_t acked;		  /* chat: acks this publisher received */
	uint64_t t_state;	  /* when the current state began */
	uint64_t t_cycle;	  /* when the connect began */
	uint8_t *tx;		  /* in-flight send buffer (cleartext connections) */
	struct rr_bench_tls *tls; /* wss://: TLS state, ciphertext buffers */
	uint8_t *aux;		  /* upgrade response while upgrading, then a pong payload */
	struct rr_bench_seq *seq; /* per publisher heard (fanout: P; echo: 1) */
	struct rr_bench_rx rx;
};

/* publish: one HTTP publisher connection's requests awaiting their answers
 * (answered in order, so a ring of their send times and sizes). */
struct http_pub {
	struct rr_bench_http_rx rx;
	uint64_t *ts;	    /* [window] send time (the body's stamp) */
	uint32_t *len;	    /* [window] request bytes */
	uint32_t head, out; /* oldest, and how many await their answer */
	uint64_t out_bytes;
};

struct worker {
	const struct rr_bench_cfg *cfg;
	struct rr_bench_shared *sh;
	struct rr_bench_slot *slot;
	uint32_t id;
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	uint8_t *rxbufs;
	unsigned br_added; /* buffers returned since the last advance */

	struct bconn *conns;
	uint32_t nconns;
	struct rr_bench_seq *seqs;
	uint32_t seqs_per_conn;
	uint32_t *flushq, nflush;
	uint32_t *rearmq, nrearm;
	uint32_t *pubs, npubs; /* local publishing connections (fanout) */
	/* publish: local connections http_first.. are the HTTP publishers,
	 * hps[i - http_first] their state */
	uint32_t http_first;
	struct http_pub *hps;
	char *req_tail; /* " HTTP/1.1\r\nHost: ...Content-Length: N\r\n\r\n" */
	size_t req_tail_len, req_max;
	uint32_t http_errors_shown;

	void **txfree;
	uint32_t ntxfree, txcap;
	size_t txsz;
	uint8_t *msg_tmpl;		  /* a message's payload (stamp zeroed + padding) */
	char *chat_tmp;			  /* chat: one message's JSON before masking */
	struct rr_bench_tls_ctx *tls_ctx; /* wss:// */
	uint8_t *plain;			  /* wss://: decrypted bytes, one read at a time */
	size_t chat_max;		  /* chat: longest JSON payload the bench sends */

	uint64_t now;
	uint64_t rng;
	uint64_t drop_ctr;
	uint32_t next_connect; /* connect phase: next slot to open */
	uint32_t in_handshake; /* connects + upgrades in flight */
	uint32_t resolved;     /* connect phase: slots opened or failed */
	uint64_t alive;	       /* slots not FREE */
	bool started, stop_written, finalized;
	bool slow_paused, slow_resumed;
	bool tls_errors_shown;
	uint64_t last_sweep;
	uint32_t anomalies_shown;

	/* local copies of the slot's counters, published once per iteration */
	struct rr_bench_slot c;
};

static struct worker *W; /* one worker per process; rx callbacks reach it here */

/* publish: is c one of the HTTP publishers (the last local slots)? */
static inline bool is_http(const struct worker *w, const struct bconn *c)
{
	return (uint32_t)(c - w->conns) >= w->http_first;
}

static inline struct http_pub *hp_of(const struct worker *w, const struct bconn *c)
{
	return &w->hps[(uint32_t)(c - w->conns) - w->http_first];
}

uint64_t rr_bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t rr_bench_rss_kb(int pid)
{
	char path[64], line[256];
	if (pid > 0)
		snprintf(path, sizeof(path), "/proc/%d/status", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/status");
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	uint64_t kb = 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = strtoull(line + 6, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

static uint64_t rng_next(struct worker *w)
{
	/* xorshift64*: masking keys and upgrade keys need to vary, not to be
	 * secret (the bench is the client; RFC 6455 10.3 guards proxies) */
	uint64_t x = w->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static inline uint64_t ud_make(uint32_t idx, uint16_t gen, enum op_kind op)
{
	return (uint64_t)idx | ((uint64_t)gen << 32) | ((uint64_t)op << 56);
}

static struct io_uring_sqe *get_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	for (int i = 0; !sqe && i < 8; i++) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	if (!sqe) {
		fprintf(stderr, "ringroom-bench: worker %u: submission queue stuck\n", w->id);
		exit(1);
	}
	return sqe;
}

/* ---- send buffers ----------------------------------------------------- */

static uint8_t *tx_get(struct worker *w)
{
	if (w->ntxfree)
		return w->txfree[--w->ntxfree];
	uint8_t *b = malloc(w->txsz);
	if (!b) {
		fprintf(stderr, "ringroom-bench: out of memory for send buffers\n");
		exit(1);
	}
	return b;
}

static void tx_put(struct worker *w, uint8_t *b)
{
	if (w->ntxfree == w->txcap) {
		uint32_t cap = w->txcap ? w->txcap * 2 : 64;
		void **n = realloc(w->txfree, cap * sizeof(*n));
		if (!n) {
			free(b);
			return;
		}
		w->txfree = n;
		w->txcap = cap;
	}
	w->txfree[w->ntxfree++] = b;
}

/* ---- connection lifecycle -------------------------------------------- */

static void queue_flush(struct worker *w, struct bconn *c)
{
	if (c->flags & F_QUEUED)
		return;
	c->flags |= F_QUEUED;
	w->flushq[w->nflush++] = (uint32_t)(c - w->conns);
}

static void arm_recv(struct worker *w, struct bconn *c)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RX_BGID;
	io_uring_sqe_set_data64(sqe, ud_make((uint32_t)(c - w->conns), c->gen, OP_RECV));
	c->flags |= F_RECV;
}

/* Release the slot once nothing is in flight on it. */
static void conn_maybe_release(struct worker *w, struct bconn *c)
{
	if (c->state != C_DEAD || (c->flags & (F_CONNECT | F_RECV | F_SEND)))
		return;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->tx)
		tx_put(w, c->tx);
	c->tx = NULL;
	rr_bench_tls_free(c->tls);
	c->tls = NULL;
	free(c->aux);
	c->aux = NULL;
	rr_bench_rx_free(&c->rx);
	memset(&c->rx, 0, sizeof(c->rx));
	c->state = C_FREE;
	c->flags &= F_SLOT_KEEP; /* list membership is cleared by the lists */
	c->gen++;
	w->alive--;
}

/* Stop using a connection: cancel what is in flight and let the completions
 * release it. */
static void conn_kill(struct worker *w, struct bconn *c)
{
	if (c->state == C_DEAD || c->state == C_FREE)
		return;
	if (c->state == C_OPEN || c->state == C_CLOSING)
		w->c.connected--;
	c->state = C_DEAD;
	if (c->fd >= 0 && (c->flags & (F_CONNECT | F_RECV | F_SEND))) {
		shutdown(c->fd, SHUT_RDWR);
		struct io_uring_sqe *sqe = get_sqe(w);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, ud_make(0, 0, OP_IGNORE));
	}
	conn_maybe_release(w, c);
}

static void conn_fail(struct worker *w, struct bconn *c, bool during_upgrade)
{
	if (c->state == C_DEAD || c->state == C_FREE)
		return;
	c->flags |= F_FAILED;
	if (during_upgrade) {
		w->c.conn_failed++;
		if (w->in_handshake)
			w->in_handshake--;
		if (w->sh->phase == RR_BENCH_PH_CONNECT)
			w->resolved++;
	} else {
		w->c.proto_errors++;
	}
	conn_kill(w, c);
}

static void conn_start(struct worker *w, struct bconn *c)
{
	const struct rr_bench_cfg *cfg = w->cfg;
	assert(c->state == C_FREE);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	c->t_cycle = c->t_state = w->now;
	c->flags = c->flags & F_SLOT_KEEP;
	c->sent = 0;
	c->acked = 0;
	c->hs_len = 0;
	if (cfg->mode == RR_BENCH_CHAT)
		c->rx.keep_cap = CHAT_KEEP;
	w->alive++;
	w->in_handshake++;
	c->state = C_CONNECTING;
	if (c->fd < 0) {
		w->c.last_errno = errno;
		conn_fail(w, c, true);
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (c->flags & F_SLOW) {
		/* a small window, as on a slow mobile link: the server's queue,
		 * not the kernel's buffers, must then absorb what it cannot send,
		 * so the 1013 comes within seconds */
		int rcvbuf = SLOW_RCVBUF;
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	}
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(rr_bench_cfg_port(cfg, c->gid))};
	sa.sin_addr = cfg->url.addr;
	if ((ntohl(cfg->url.addr.s_addr) >> 24) == 127 && cfg->src_ips > 0) {
		/* spread source addresses so that more than one port range of
		 * connections fits; the port is picked at connect() time per
		 * 4-tuple instead of reserved at bind() time */
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		struct sockaddr_in src = {.sin_family = AF_INET};
		uint32_t k = (uint32_t)((c->gid + c->gen) % cfg->src_ips);
		src.sin_addr.s_addr = htonl(0x7f000001u + k);
		if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			w->c.last_errno = errno;
			conn_fail(w, c, true);
			return;
		}
	}
	/* read by the kernel at submission, so it must outlive this call; every
	 * connection to the same port has the same destination, so one per
	 * port and worker will do */
	static struct sockaddr_in dst[RR_BENCH_PORTS_MAX];
	struct sockaddr_in *d = &dst[rr_bench_cfg_port_index(cfg, c->gid)];
	*d = sa;
	struct io_uring_sqe *sqe = get_sqe(w);
	io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)d, sizeof(*d));
	io_uring_sqe_set_data64(sqe, ud_make((uint32_t)(c - w->conns), c->gen, OP_CONNECT));
	c->flags |= F_CONNECT;
}

static void room_name(uint32_t room, char *out, size_t cap)
{
	snprintf(out, cap, "r%u", room);
}

/* The upgrade key for this slot and cycle: derived, so it need not be kept. */
static void upgrade_key(const struct bconn *c, uint32_t worker, char out[25])
{
	uint8_t raw[16];
	uint64_t a = ((uint64_t)c->gid << 20) ^ ((uint64_t)c->gen << 4) ^ worker;
	uint64_t b = a * 0x9E3779B97F4A7C15ull ^ 0xD1B54A32D192ED03ull;
	a = (a ^ (a >> 31)) * 0xBF58476D1CE4E5B9ull;
	memcpy(raw, &a, 8);
	memcpy(raw + 8, &b, 8);
	rr_base64_encode(raw, 16, out);
}

static void send_buf(struct worker *w, struct bconn *c)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	const uint8_t *base = c->tls ? rr_bench_tls_inflight(c->tls) : c->tx;
	io_uring_prep_send(sqe, c->fd, base + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_make((uint32_t)(c - w->conns), c->gen, OP_SEND));
	c->flags |= F_SEND;
}

/* wss://: send the ciphertext wolfSSL has produced, unless a send is in
 * flight (its completion calls this again). */
static void tls_kick(struct worker *w, struct bconn *c)
{
	size_t len;
	if (!c->tls || (c->flags & F_SEND) || c->state == C_DEAD || c->state == C_FREE)
		return;
	if (!rr_bench_tls_take(c->tls, &len))
		return;
	c->tx_off = 0;
	c->tx_len = (uint32_t)len;
	send_buf(w, c);
}

static void tls_failed(struct worker *w, struct bconn *c)
{
	bool upgrading = c->state == C_TLS || c->state == C_HANDSHAKE;
	if (!w->tls_errors_shown) {
		w->tls_errors_shown = true;
		fprintf(stderr, "ringroom-bench: worker %u: connection %u: TLS: %s\n", w->id,
			c->gid, rr_bench_tls_error(c->tls));
	}
	w->c.last_errno = EPROTO;
	conn_fail(w, c, upgrading);
}

/* Hand plaintext b[0..n) (a tx_get buffer) to the socket: as is, or through
 * TLS (the buffer goes back to the pool once encrypted). */
static void send_plain(struct worker *w, struct bconn *c, uint8_t *b, size_t n)
{
	if (!c->tls) {
		c->tx = b;
		c->tx_off = 0;
		c->tx_len = (uint32_t)n;
		send_buf(w, c);
		return;
	}
	int err = n ? rr_bench_tls_write(c->tls, b, n) : 0;
	tx_put(w, b);
	if (err < 0) {
		tls_failed(w, c);
		return;
	}
	tls_kick(w, c);
}

static void send_upgrade(struct worker *w, struct bconn *c)
{
	char room[16], target[RR_BENCH_URL_PATH_MAX + 32], key[25];
	room_name(c->room, room, sizeof(room));
	if (rr_bench_url_target(&w->cfg->url, room, target, sizeof(target)) < 0) {
		conn_fail(w, c, true);
		return;
	}
	upgrade_key(c, w->id, key);
	uint8_t *b = tx_get(w);
	int n = snprintf((char *)b, w->txsz,
			 "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
			 "Sec-WebSocket-Version: 13\r\nUser-Agent: ringroom-bench\r\n\r\n",
			 target, w->cfg->url.host, rr_bench_cfg_port(w->cfg, c->gid), key);
	assert(n > 0 && (size_t)n < w->txsz);
	c->state = C_HANDSHAKE;
	c->t_state = w->now;
	send_plain(w, c, b, (size_t)n);
}

static void conn_opened(struct worker *w, struct bconn *c);

static void on_connect(struct worker *w, struct bconn *c, int res)
{
	c->flags &= ~F_CONNECT;
	if (c->state != C_CONNECTING) {
		conn_maybe_release(w, c);
		return;
	}
	if (res < 0) {
		w->c.last_errno = -res;
		conn_fail(w, c, true);
		return;
	}
	if (w->tls_ctx) {
		/* wss://: the ClientHello first; the upgrade follows the handshake */
		c->tls = rr_bench_tls_new(w->tls_ctx);
		if (!c->tls) {
			w->c.last_errno = ENOMEM;
			conn_fail(w, c, true);
			return;
		}
		c->state = C_TLS;
		c->t_state = w->now;
		if (rr_bench_tls_connect(c->tls) < 0) {
			tls_failed(w, c);
			return;
		}
		tls_kick(w, c);
		arm_recv(w, c);
		return;
	}
	if (is_http(w, c))
		conn_opened(w, c); /* publish: an API connection needs no upgrade */
	else
		send_upgrade(w, c);
	arm_recv(w, c);
}

/* ---- rx callbacks ---------------------------------------------------- */

static void conn_echo_next(struct worker *w, struct bconn *c)
{
	if (w->now < w->sh->t_end && c->state == C_OPEN) {
		c->flags |= F_WANT_SEND;
		queue_flush(w, c);
	}
}

/* The first few delivery anomalies of a worker, in detail, on stderr: the
 * counts say that something went wrong, these say where to look. */
static void report_anomaly(struct worker *w, const struct bconn *c, const char *what,
			   const struct rr_bench_stamp *st, uint64_t expected)
{
	if (w->anomalies_shown >= ANOMALIES_SHOWN_MAX)
		return;
	w->anomalies_shown++;
	fprintf(stderr,
		"ringroom-bench: worker %u: connection %u (room r%u, publisher id %d) got "
		"publisher %u seq %" PRIu64 ": %s (expected seq %" PRIu64 ", sent %.3f s ago)\n",
		w->id, c->gid, c->room, c->pub, st->pub, st->seq, what, expected,
		w->now > st->ts_ns ? (double)(w->now - st->ts_ns) / 1e9 : 0.0);
}

/*
 * One chat frame from the server (its first CHAT_KEEP bytes). A message
 * fills *st (st->run stays 0 for anything else, which is handled here): an
 * ack is timed against the send time in its requestId, initial_state makes
 * the connection a member, an error is counted and shown. Returns -1 for a
 * frame that is not chat JSON.
 */
static int chat_frame(struct worker *w, struct bconn *c, const uint8_t *p, size_t n,
		      struct rr_bench_stamp *st)
{
	struct rr_bench_chat_frame f;
	memset(st, 0, sizeof(*st));
	switch (rr_bench_chat_parse(p, n, &f)) {
	case RR_BENCH_CHAT_BAD:
		return -1;
	case RR_BENCH_CHAT_MESSAGE:
		*st = f.stamp;
		if (st->run == 0)
			st->run = ~0u; /* 0 means "not a message" to the caller */
		break;
	case RR_BENCH_CHAT_FOREIGN:
		w->c.foreign++; /* not a bench message */
		break;
	case RR_BENCH_CHAT_ACK:
		if (f.ack_run != w->cfg->run_id) {
			w->c.foreign++;
			break;
		}
		c->acked++;
		w->c.acks++;
		if (f.ack_ts >= w->sh->t_warm && f.ack_ts < w->sh->t_end)
			rr_bench_hist_record(&w->slot->ack,
					     w->now > f.ack_ts ? w->now - f.ack_ts : 0);
		break;
	case RR_BENCH_CHAT_INITIAL:
		if (!(c->flags & F_CHAT_READY)) {
			c->flags |= F_CHAT_READY;
			w->c.chat_ready++;
		}
		break;
	case RR_BENCH_CHAT_ERROR:
		w->c.chat_errors++;
		if (w->anomalies_shown < ANOMALIES_SHOWN_MAX) {
			w->anomalies_shown++;
			fprintf(stderr,
				"ringroom-bench: worker %u: connection %u: chat error: %.*s\n",
				w->id, c->gid, (int)(n < 200 ? n : 200), (const char *)p);
		}
		break;
	case RR_BENCH_CHAT_OTHER:
		break; /* welcome, user_joined, presence ...: not measured */
	}
	return 0;
}

static int on_message(void *ctx, uint8_t opcode, const uint8_t *stamp, size_t stamp_len,
		      uint64_t len)
{
	struct worker *w = W;
	struct bconn *c = ctx;
	const struct rr_bench_cfg *cfg = w->cfg;
	struct rr_bench_stamp st;
	(void)len;
	if (w->finalized)
		return 0; /* the books are closed: stragglers are already counted lost */
	if (cfg->mode == RR_BENCH_CHAT) {
		if (opcode != RR_BENCH_OP_TEXT || chat_frame(w, c, stamp, stamp_len, &st) < 0) {
			w->c.proto_errors++;
			return 0;
		}
		if (st.run == 0)
			return 0; /* not a message: handled */
	} else {
		bool is_short;
		if (!rr_bench_stamp_get_any(stamp, stamp_len, &st, &is_short)) {
			w->c.proto_errors++;
			return 0;
		}
		if (is_short && st.run == (cfg->run_id & 0xffff))
			st.run = cfg->run_id; /* the short stamp's 16 bits match */
	}
	if (st.run != cfg->run_id) {
		w->c.foreign++;
		return 0;
	}
	if (c->flags & F_SLOW)
		return 0; /* not part of the figures: the others' latency is */
	if (cfg->drop_every && ++w->drop_ctr % cfg->drop_every == 0) {
		w->c.dropped++;
		if (cfg->mode == RR_BENCH_ECHO)
			conn_echo_next(w, c);
		return 0;
	}
	struct rr_bench_seq *s = NULL;
	if (cfg->mode == RR_BENCH_ECHO) {
		if (st.pub == c->gid)
			s = &c->seq[0];
	} else if (cfg->mode == RR_BENCH_FANOUT) {
		uint32_t room = st.pub / cfg->publishers;
		if (room == c->room && (int32_t)st.pub != c->pub)
			s = &c->seq[st.pub % cfg->publishers];
	} else if (cfg->mode == RR_BENCH_PUBLISH) {
		/* the API delivers to every member of the room */
		if (st.pub / cfg->publishers == c->room)
			s = &c->seq[st.pub % cfg->publishers];
	} else if (cfg->mode == RR_BENCH_CHAT) {
		/* chat broadcasts to every member, the sender included */
		if (st.pub / cfg->publishers == c->room)
			s = &c->seq[st.pub % cfg->publishers];
	}
	if (!s) {
		w->c.misrouted++;
		report_anomaly(w, c, "misrouted", &st, 0);
		return 0;
	}
	uint64_t expected = s->next;
	enum rr_bench_seq_verdict v = rr_bench_seq_check(s, st.seq, &w->c.seq);
	if (v != RR_BENCH_SEQ_OK) {
		static const char *const what[] = {"ok", "gap", "duplicate", "reordered", "late"};
		report_anomaly(w, c, what[v], &st, expected);
	}
	w->c.received++;
	if (w->now >= w->sh->t_warm && w->now < w->sh->t_end)
		w->c.arrived++;
	if (st.ts_ns >= w->sh->t_warm && st.ts_ns < w->sh->t_end) {
		w->c.measured++;
		rr_bench_hist_record(&w->slot->lat, w->now > st.ts_ns ? w->now - st.ts_ns : 0);
	}
	if (cfg->mode == RR_BENCH_ECHO)
		conn_echo_next(w, c);
	return 0;
}

/* A slow reader's connection ended on the server's side: code 1013 is what
 * --slow-readers expects; anything else (0: no close frame) is counted apart. */
static void slow_closed(struct worker *w, struct bconn *c, uint16_t code)
{
	if (c->flags & F_SLOW_SEEN)
		return;
	c->flags |= F_SLOW_SEEN;
	if (code == 1013)
		w->c.slow_1013++;
	else
		w->c.slow_other++;
}

static int on_control(void *ctx, uint8_t opcode, const uint8_t *p, size_t n)
{
	struct worker *w = W;
	struct bconn *c = ctx;
	if (opcode == RR_BENCH_OP_PING) {
		if (!c->aux && !(c->aux = malloc(PING_MAX))) {
			conn_fail(w, c, false);
			return 1;
		}
		memcpy(c->aux, p, n);
		c->aux_len = (uint8_t)n;
		c->flags |= F_PONG;
		queue_flush(w, c);
	} else if (opcode == RR_BENCH_OP_CLOSE) {
		c->flags |= F_PEER_CLOSED;
		uint16_t code = n >= 2 ? (uint16_t)((p[0] << 8) | p[1]) : 0;
		if (c->flags & F_SLOW) {
			/* expected: counted apart, not as an error */
			slow_closed(w, c, code);
		} else if (code) {
			w->c.last_close_code = code;
		}
		if (!(c->flags & F_CLOSE_SENT)) {
			/* the server started the close: unexpected unless the run
			 * is over */
			if (w->sh->phase < RR_BENCH_PH_EXIT && !(c->flags & F_SLOW))
				w->c.peer_closed++;
			c->flags |= F_CLOSE_TX;
			queue_flush(w, c);
		}
		c->state = C_CLOSING;
		c->t_state = w->now;
	}
	return 0;
}

static const struct rr_bench_rx_ops rx_ops = {
    .message = on_message,
    .control = on_control,
};

/* Check the upgrade response; returns 0, or -1 to fail the connection. */
static int check_upgrade(struct worker *w, struct bconn *c, const char *head, size_t n)
{
	int status = 0;
	if (n < 12 || strncmp(head, "HTTP/1.1 ", 9) != 0)
		return -1;
	status = atoi(head + 9);
	if (status != 101) {
		w->c.last_status = status;
		return -1;
	}
	char key[25], want[29];
	upgrade_key(c, w->id, key);
	rr_ws_accept_key(key, 24, want);
	bool accept_ok = false, upgrade_ok = false;
	const char *line = memchr(head, '\n', n);
	/* header lines, each ending in \n; the head ends with an empty line */
	for (int i = 0; line && i < 100; i++) {
		line++;
		const char *end = memchr(line, '\n', (size_t)(head + n - line));
		if (!end)
			break;
		size_t len = (size_t)(end - line);
		if (len && line[len - 1] == '\r')
			len--;
		if (len == 0)
			break;
		if (len >= 21 && strncasecmp(line, "Sec-WebSocket-Accept:", 21) == 0) {
			const char *v = line + 21;
			size_t vl = len - 21;
			while (vl && (*v == ' ' || *v == '\t'))
				v++, vl--;
			while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
				vl--;
			accept_ok = vl == 28 && memcmp(v, want, 28) == 0;
		} else if (len >= 8 && strncasecmp(line, "Upgrade:", 8) == 0) {
			upgrade_ok = memmem(line, len, "ebsocket", 8) != NULL;
		}
		line = end;
	}
	if (!accept_ok || !upgrade_ok) {
		w->c.last_status = 101;
		return -1;
	}
	return 0;
}

static void conn_opened(struct worker *w, struct bconn *c)
{
	c->state = C_OPEN;
	w->c.connected++;
	w->c.opened++;
	if (w->in_handshake)
		w->in_handshake--;
	if (w->sh->phase == RR_BENCH_PH_CONNECT)
		w->resolved++;
	if (!is_http(w, c))
		rr_bench_hist_record(&w->slot->hs, w->now - c->t_cycle);
	c->t_state = w->now;
	if (w->cfg->mode == RR_BENCH_CHURN) {
		c->flags |= F_CLOSE_TX;
		queue_flush(w, c);
	} else if (w->cfg->mode == RR_BENCH_ECHO && w->started) {
		conn_echo_next(w, c);
	}
}

static void http_rx(struct worker *w, struct bconn *c, const uint8_t *p, size_t n);

static void conn_rx_plain(struct worker *w, struct bconn *c, uint8_t *p, size_t n)
{
	if (is_http(w, c)) {
		http_rx(w, c, p, n);
		return;
	}
	if (c->state == C_HANDSHAKE) {
		if (!c->aux && !(c->aux = malloc(HS_MAX))) {
			conn_fail(w, c, true);
			return;
		}
		size_t take = n < (size_t)(HS_MAX - c->hs_len) ? n : (size_t)(HS_MAX - c->hs_len);
		memcpy(c->aux + c->hs_len, p, take);
		size_t had = c->hs_len;
		c->hs_len = (uint16_t)(c->hs_len + take);
		char *end = memmem(c->aux, c->hs_len, "\r\n\r\n", 4);
		if (!end) {
			if (c->hs_len >= HS_MAX)
				conn_fail(w, c, true);
			return;
		}
		size_t head = (size_t)(end - (char *)c->aux) + 4;
		if (check_upgrade(w, c, (char *)c->aux, head) < 0) {
			conn_fail(w, c, true);
			return;
		}
		free(c->aux);
		c->aux = NULL;
		conn_opened(w, c);
		/* bytes after the head are the first frames */
		size_t used = head - had;
		p += used;
		n -= used;
		if (n == 0)
			return;
	}
	if (c->state != C_OPEN && c->state != C_CLOSING)
		return;
	ssize_t r = rr_bench_rx_feed(&c->rx, p, n, &rx_ops, c);
	if (r < 0) {
		conn_fail(w, c, false);
		return;
	}
}

/* Bytes from the socket: cleartext, or TLS records to decrypt (the
 * handshake first, then the upgrade and frames as plaintext). */
static void conn_rx(struct worker *w, struct bconn *c, uint8_t *p, size_t n)
{
	if (!c->tls) {
		conn_rx_plain(w, c, p, n);
		return;
	}
	rr_bench_tls_input(c->tls, p, n);
	if (c->state == C_TLS) {
		int r = rr_bench_tls_connect(c->tls);
		if (r < 0) {
			tls_failed(w, c);
			return;
		}
		if (r == 1 && is_http(w, c))
			conn_opened(w, c);
		else if (r == 1)
			send_upgrade(w, c);
		else
			tls_kick(w, c);
	}
	/* bounded: each read consumes input, and the input is one buffer */
	for (int i = 0; i < 1024 && c->state != C_TLS && c->state != C_DEAD && c->state != C_FREE;
	     i++) {
		ssize_t k = rr_bench_tls_read(c->tls, w->plain, RX_BUF_SIZE * 4);
		if (k == 0)
			break;
		if (k == -EPIPE) {
			/* close_notify: the TCP FIN follows and ends the connection */
			break;
		}
		if (k < 0) {
			tls_failed(w, c);
			return;
		}
		conn_rx_plain(w, c, w->plain, (size_t)k);
	}
	if (c->tls)
		rr_bench_tls_input(c->tls, NULL, 0);
	tls_kick(w, c); /* a key update or alert may want out */
}

/* ---- completions ------------------------------------------------------ */

static void return_buf(struct worker *w, unsigned bid)
{
	io_uring_buf_ring_add(w->br, w->rxbufs + (size_t)bid * RX_BUF_SIZE, RX_BUF_SIZE,
			      (unsigned short)bid, io_uring_buf_ring_mask(RX_BUFS),
			      (int)w->br_added);
	w->br_added++;
}

static void conn_finished_cycle(struct worker *w, struct bconn *c)
{
	/* a churn cycle ends when the server's FIN follows the close exchange */
	if (w->cfg->mode == RR_BENCH_CHURN && (c->flags & F_CLOSE_SENT) &&
	    (c->flags & F_PEER_CLOSED)) {
		if (w->now >= w->sh->t_warm && w->now < w->sh->t_end)
			w->c.cycles++;
		rr_bench_hist_record(&w->slot->lat, w->now - c->t_cycle);
	}
}

static void on_recv(struct worker *w, struct bconn *c, int res, unsigned flags)
{
	bool more = flags & IORING_CQE_F_MORE;
	if (!more)
		c->flags &= ~F_RECV;
	if (res > 0) {
		unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
		assert(flags & IORING_CQE_F_BUFFER); /* data comes only in ring buffers */
		if (c->state != C_DEAD && c->state != C_FREE)
			conn_rx(w, c, w->rxbufs + (size_t)bid * RX_BUF_SIZE, (size_t)res);
		return_buf(w, bid);
		if (!more && c->state != C_DEAD && c->state != C_FREE && !(c->flags & F_PAUSED))
			arm_recv(w, c);
		conn_maybe_release(w, c);
		return;
	}
	/* the kernel hands a buffer over with an empty completion only when
	 * it flags it; handing back one it kept would list it twice */
	if (flags & IORING_CQE_F_BUFFER)
		return_buf(w, flags >> IORING_CQE_BUFFER_SHIFT);
	if (res == -ECANCELED && (c->flags & F_PAUSED)) {
		/* a slow reader stopped reading: its data waits in the socket */
	} else if (res == -ENOBUFS) {
		w->c.enobufs++;
		if (!more && c->state != C_DEAD && !(c->flags & (F_REARM | F_PAUSED))) {
			c->flags |= F_REARM;
			w->rearmq[w->nrearm++] = (uint32_t)(c - w->conns);
		}
	} else if (res == 0) {
		/* the server closed the TCP connection */
		if (c->state == C_CLOSING) {
			conn_finished_cycle(w, c);
			conn_kill(w, c);
		} else if (c->state == C_HANDSHAKE || c->state == C_TLS) {
			conn_fail(w, c, true);
		} else if (c->state == C_OPEN) {
			if (c->flags & F_SLOW)
				slow_closed(w, c, 0);
			else if (w->sh->phase < RR_BENCH_PH_EXIT)
				w->c.peer_closed++;
			conn_kill(w, c);
		}
	} else {
		if (c->state == C_HANDSHAKE || c->state == C_TLS) {
			w->c.last_errno = -res;
			conn_fail(w, c, true);
		} else if (c->state == C_OPEN && (c->flags & F_SLOW)) {
			/* reset by a server that gave up on it */
			slow_closed(w, c, 0);
			conn_kill(w, c);
		} else if (c->state == C_OPEN) {
			w->c.last_errno = -res;
			conn_fail(w, c, false);
		} else {
			conn_kill(w, c);
		}
	}
	conn_maybe_release(w, c);
}

static bool conn_has_output(const struct worker *w, const struct bconn *c);

static void on_send(struct worker *w, struct bconn *c, int res)
{
	c->flags &= ~F_SEND;
	if (c->state == C_DEAD || c->state == C_FREE) {
		conn_maybe_release(w, c);
		return;
	}
	bool upgrading = c->state == C_HANDSHAKE || c->state == C_TLS;
	if (res <= 0 && (c->flags & F_SLOW) && !upgrading) {
		slow_closed(w, c, 0); /* the server dropped it */
		conn_kill(w, c);
		return;
	}
	if (res <= 0) {
		w->c.last_errno = res < 0 ? -res : EPIPE;
		conn_fail(w, c, upgrading);
		return;
	}
	c->tx_off += (uint32_t)res;
	if (c->tx_off < c->tx_len) {
		send_buf(w, c); /* the socket took part of it: send the rest */
		return;
	}
	if (c->tls) {
		rr_bench_tls_sent(c->tls);
		tls_kick(w, c);
	} else {
		tx_put(w, c->tx);
		c->tx = NULL;
	}
	if (conn_has_output(w, c))
		queue_flush(w, c);
}

static void handle_cqe(struct worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum op_kind op = (enum op_kind)(ud >> 56);
	uint32_t idx = (uint32_t)ud;
	uint16_t gen = (uint16_t)(ud >> 32);
	if (op == OP_IGNORE || op == 0)
		return;
	if (idx >= w->nconns || w->conns[idx].gen != gen) {
		/* cannot happen while slots wait for their ops; keep the buffer */
		if (cqe->flags & IORING_CQE_F_BUFFER)
			return_buf(w, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		return;
	}
	struct bconn *c = &w->conns[idx];
	switch (op) {
	case OP_CONNECT:
		on_connect(w, c, cqe->res);
		break;
	case OP_RECV:
		on_recv(w, c, cqe->res, cqe->flags);
		break;
	case OP_SEND:
		on_send(w, c, cqe->res);
		break;
	default:
		break;
	}
}

/* ---- output ----------------------------------------------------------- */

static uint64_t pub_due(const struct worker *w, const struct bconn *c)
{
	const struct rr_bench_cfg *cfg = w->cfg;
	if (w->now < w->sh->t_start)
		return 0;
	uint64_t until = w->now < w->sh->t_end ? w->now : w->sh->t_end;
	double per_pub = cfg->rate / cfg->publishers;
	/* publishers of different rooms start at different phases of their
	 * period so that they do not all fire in the same instant */
	double phase = (double)((uint32_t)c->pub * 2654435761u) / 4294967296.0;
	double due = (double)(until - w->sh->t_start) / 1e9 * per_pub + phase;
	return (uint64_t)due;
}

static bool http_room(const struct worker *w, const struct bconn *c);

static bool conn_has_output(const struct worker *w, const struct bconn *c)
{
	if (is_http(w, c))
		return c->state == C_OPEN && !w->stop_written && http_room(w, c) &&
		       pub_due(w, c) > c->sent;
	if (c->flags & (F_PONG | F_CLOSE_TX | F_WANT_SEND))
		return true;
	return rr_bench_mode_rooms(w->cfg->mode) && c->pub >= 0 && c->state == C_OPEN &&
	       pub_due(w, c) > c->sent;
}

/* A chat message (chat.h): the stamp travels in the content, the send time
 * in the requestId. */
static size_t put_chat_message(struct worker *w, struct bconn *c, uint8_t *out)
{
	struct rr_bench_stamp st = {
	    .run = w->cfg->run_id,
	    .pub = (uint32_t)c->pub,
	    .seq = c->sent++,
	    .ts_ns = w->now,
	};
	size_t n = rr_bench_chat_encode(w->chat_tmp, &st, w->cfg->size);
	assert(n <= w->chat_max);
	w->c.sent++;
	return rr_bench_frame_encode(out, RR_BENCH_OP_TEXT, (const uint8_t *)w->chat_tmp, n,
				     (uint32_t)rng_next(w));
}

static size_t put_message(struct worker *w, struct bconn *c, uint8_t *out)
{
	if (w->cfg->mode == RR_BENCH_CHAT)
		return put_chat_message(w, c, out);
	uint32_t mask = (uint32_t)rng_next(w);
	size_t h = rr_bench_frame_hdr(out, RR_BENCH_OP_BINARY, w->cfg->size, mask);
	struct rr_bench_stamp st = {
	    .run = w->cfg->run_id,
	    .pub = (uint32_t)c->pub,
	    .seq = c->sent++,
	    .ts_ns = w->now,
	};
	memcpy(out + h, w->msg_tmpl, w->cfg->size);
	if (w->cfg->size < RR_BENCH_STAMP_LEN)
		rr_bench_stamp_put_short(out + h, &st);
	else
		rr_bench_stamp_put(out + h, &st);
	rr_bench_mask(out + h, w->cfg->size, mask);
	w->c.sent++;
	return h + w->cfg->size;
}

/* ---- publish: the HTTP publishers ---------------------------------------- */

/* May c send another request? At most --window await their answers, and
 * past the first at most HTTP_INFLIGHT_MAX bytes of them. */
static bool http_room(const struct worker *w, const struct bconn *c)
{
	const struct http_pub *hp = hp_of(w, c);
	return hp->out < w->cfg->window &&
	       (hp->out == 0 || hp->out_bytes + w->req_max <= HTTP_INFLIGHT_MAX);
}

/*
 * One POST /api/raw/{room} with a stamped body. HTTP connection k sends its
 * n-th request to room (k + n) mod R, so each connection visits every room
 * in turn and each room gets rate/R; its sequence in that room is n / R and
 * its stamp id room * P + k (P: --publishers), as fanout's publisher ids.
 */
static size_t put_request(struct worker *w, struct bconn *c, struct http_pub *hp, uint8_t *out)
{
	const struct rr_bench_cfg *cfg = w->cfg;
	uint32_t k = (uint32_t)c->pub;
	uint32_t room = (uint32_t)((k + c->sent) % cfg->rooms);
	char rn[16];
	room_name(room, rn, sizeof(rn));
	memcpy(out, "POST /api", 9);
	size_t o = 9;
	int tl = rr_bench_url_target(&cfg->url, rn, (char *)out + o, w->req_max - o);
	assert(tl > 0);
	o += (size_t)tl;
	memcpy(out + o, w->req_tail, w->req_tail_len);
	o += w->req_tail_len;
	struct rr_bench_stamp st = {
	    .run = cfg->run_id,
	    .pub = room * cfg->publishers + k,
	    .seq = c->sent / cfg->rooms,
	    .ts_ns = w->now,
	};
	memcpy(out + o, w->msg_tmpl, cfg->size);
	if (cfg->size < RR_BENCH_STAMP_LEN)
		rr_bench_stamp_put_short(out + o, &st);
	else
		rr_bench_stamp_put(out + o, &st);
	o += cfg->size;
	assert(o <= w->req_max);
	uint32_t at = (hp->head + hp->out) % cfg->window;
	hp->ts[at] = w->now;
	hp->len[at] = (uint32_t)o;
	hp->out++;
	hp->out_bytes += o;
	c->sent++;
	w->c.sent++;
	return o;
}

/* Everything due that the window lets out, in one send. */
static void http_flush(struct worker *w, struct bconn *c)
{
	if (c->state != C_OPEN || w->stop_written) {
		tls_kick(w, c);
		return;
	}
	uint64_t due = pub_due(w, c);
	if (due > c->sent && due - c->sent > w->c.pub_backlog_max)
		w->c.pub_backlog_max = due - c->sent;
	if (due <= c->sent || !http_room(w, c)) {
		tls_kick(w, c);
		return;
	}
	struct http_pub *hp = hp_of(w, c);
	uint8_t *b = tx_get(w);
	size_t o = 0;
	while (due > c->sent && http_room(w, c) && o + w->req_max <= w->txsz)
		o += put_request(w, c, hp, b + o);
	send_plain(w, c, b, o);
}

static void http_show(struct worker *w, const struct bconn *c, const char *what,
		      const struct rr_bench_http_answer *a)
{
	if (w->http_errors_shown >= HTTP_ERRORS_SHOWN_MAX)
		return;
	w->http_errors_shown++;
	if (a)
		fprintf(stderr,
			"ringroom-bench: worker %u: HTTP publisher %d: %s: status %d, body "
			"%.*s\n",
			w->id, c->pub, what, a->status, (int)a->body_kept, a->body);
	else
		fprintf(stderr, "ringroom-bench: worker %u: HTTP publisher %d: %s\n", w->id, c->pub,
			what);
}

/* One answer, in request order: the oldest request awaiting one is done. A
 * non-zero return (an answer to no request) fails the connection. */
static int on_http_answer(void *ctx, const struct rr_bench_http_answer *a)
{
	struct worker *w = W;
	struct bconn *c = ctx;
	struct http_pub *hp = hp_of(w, c);
	if (hp->out == 0) {
		http_show(w, c, "an answer to no request", a);
		return 1;
	}
	uint64_t ts = hp->ts[hp->head];
	hp->out_bytes -= hp->len[hp->head];
	hp->head = (hp->head + 1) % w->cfg->window;
	hp->out--;
	if (w->finalized)
		return 0; /* the books are closed */
	if (a->status == 200) {
		w->c.acks++;
		if (ts >= w->sh->t_warm && ts < w->sh->t_end) {
			w->c.pub_answered++;
			rr_bench_hist_record(&w->slot->ack, w->now > ts ? w->now - ts : 0);
		}
		int64_t d = rr_bench_http_delivered(a->body, a->body_kept);
		if (d >= 0)
			w->c.api_delivered += (uint64_t)d;
	} else {
		w->c.http_errors++;
		w->c.http_last_status = a->status;
		http_show(w, c, "answer other than 200", a);
	}
	/* "Connection: close": the server's FIN follows and is counted there */
	if (conn_has_output(w, c))
		queue_flush(w, c);
	return 0;
}

static void http_rx(struct worker *w, struct bconn *c, const uint8_t *p, size_t n)
{
	if (c->state != C_OPEN)
		return;
	ssize_t r = rr_bench_http_feed(&hp_of(w, c)->rx, p, n, on_http_answer, c);
	if (r >= 0 && (size_t)r == n)
		return;
	if (r < 0) {
		char what[96];
		snprintf(what, sizeof(what), "unreadable answer (%s); dropped", strerror((int)-r));
		http_show(w, c, what, NULL);
	}
	w->c.last_errno = EPROTO;
	conn_fail(w, c, false);
}

/* At the window's end: how many requests connection c sent to each room. */
static void http_stop(struct worker *w, const struct bconn *c)
{
	const struct rr_bench_cfg *cfg = w->cfg;
	uint32_t k = (uint32_t)c->pub, rooms = cfg->rooms;
	for (uint32_t r = 0; r < rooms; r++) {
		/* requests n with (k + n) mod R == r: n = off, off + R, ... */
		uint64_t off = ((uint64_t)r + rooms - k % rooms) % rooms;
		uint64_t cnt = c->sent > off ? (c->sent - off - 1) / rooms + 1 : 0;
		w->sh->pub_sent[(uint64_t)r * cfg->publishers + k] = cnt;
	}
}

static void conn_flush(struct worker *w, struct bconn *c)
{
	if ((c->flags & F_SEND) || (c->state != C_OPEN && c->state != C_CLOSING))
		return;
	if (is_http(w, c)) {
		http_flush(w, c);
		return;
	}
	uint8_t *b = tx_get(w);
	size_t o = 0;
	size_t frame = w->cfg->mode == RR_BENCH_CHAT ? rr_bench_frame_len(w->chat_max)
						     : rr_bench_frame_len(w->cfg->size);
	if (c->flags & F_PONG) {
		o += rr_bench_frame_encode(b + o, RR_BENCH_OP_PONG, c->aux, c->aux_len,
					   (uint32_t)rng_next(w));
		c->flags &= ~F_PONG;
	}
	if (w->stop_written)
		c->flags &= ~F_WANT_SEND; /* the run is over: build nothing more */
	if (c->state == C_OPEN && !(c->flags & F_CLOSE_SENT) && !w->stop_written) {
		if (c->flags & F_WANT_SEND) {
			o += put_message(w, c, b + o);
			c->flags &= ~F_WANT_SEND;
		} else if (rr_bench_mode_rooms(w->cfg->mode) && c->pub >= 0) {
			uint64_t due = pub_due(w, c);
			if (due > c->sent && due - c->sent > w->c.pub_backlog_max)
				w->c.pub_backlog_max = due - c->sent;
			for (int i = 0;
			     due > c->sent && i < PUB_BATCH_MAX && o + frame + 256 <= w->txsz; i++)
				o += put_message(w, c, b + o);
		}
	}
	if ((c->flags & F_CLOSE_TX) && !(c->flags & F_CLOSE_SENT)) {
		const uint8_t code[2] = {1000 >> 8, 1000 & 0xff};
		o +=
		    rr_bench_frame_encode(b + o, RR_BENCH_OP_CLOSE, code, 2, (uint32_t)rng_next(w));
		c->flags |= F_CLOSE_SENT;
		if (c->state == C_OPEN) {
			c->state = C_CLOSING;
			c->t_state = w->now;
		}
	}
	c->flags &= ~F_CLOSE_TX;
	if (o == 0) {
		tx_put(w, b);
		tls_kick(w, c);
		return;
	}
	assert(o <= w->txsz);
	send_plain(w, c, b, o);
}

static void flush_all(struct worker *w)
{
	for (uint32_t i = 0; i < w->nflush; i++) {
		struct bconn *c = &w->conns[w->flushq[i]];
		c->flags &= ~F_QUEUED;
		conn_flush(w, c);
	}
	w->nflush = 0;
	for (uint32_t i = 0; i < w->nrearm; i++) {
		struct bconn *c = &w->conns[w->rearmq[i]];
		c->flags &= ~F_REARM;
		if (c->state != C_DEAD && c->state != C_FREE && !(c->flags & (F_RECV | F_PAUSED)))
			arm_recv(w, c);
		conn_maybe_release(w, c);
	}
	w->nrearm = 0;
}

/* ---- the phases ------------------------------------------------------- */

static void publish_live(struct worker *w)
{
	struct rr_bench_slot *s = w->slot;
#define PUB(f) __atomic_store_n(&s->f, w->c.f, __ATOMIC_RELAXED)
	PUB(connected);
	PUB(opened);
	PUB(conn_failed);
	PUB(hs_timeouts);
	PUB(peer_closed);
	PUB(proto_errors);
	PUB(sent);
	PUB(received);
	PUB(measured);
	PUB(arrived);
	PUB(cycles);
	PUB(misrouted);
	PUB(dropped);
	PUB(enobufs);
	PUB(pub_backlog_max);
	PUB(last_status);
	PUB(last_errno);
	PUB(last_close_code);
	PUB(slow_1013);
	PUB(slow_other);
	PUB(acks);
	PUB(unacked);
	PUB(chat_ready);
	PUB(chat_errors);
	PUB(pub_answered);
	PUB(http_errors);
	PUB(api_delivered);
	PUB(http_last_status);
	PUB(seq.lost);
	PUB(seq.dup);
	PUB(seq.reordered);
	PUB(seq.late);
	PUB(seq.tail);
	PUB(seq.received);
#undef PUB
}

/* Sweep for connections stuck in connect/upgrade/close. */
static void sweep_timeouts(struct worker *w)
{
	if (w->now - w->last_sweep < 200000000ull)
		return;
	w->last_sweep = w->now;
	uint64_t close_limit = 2000000000ull;
	for (uint32_t i = 0; i < w->nconns; i++) {
		struct bconn *c = &w->conns[i];
		if ((c->state == C_CONNECTING || c->state == C_TLS || c->state == C_HANDSHAKE) &&
		    w->now - c->t_state > w->cfg->connect_timeout_ns) {
			if (c->state == C_HANDSHAKE || c->state == C_TLS)
				w->c.hs_timeouts++;
			else
				w->c.last_errno = ETIMEDOUT;
			conn_fail(w, c, true);
		} else if (c->state == C_CLOSING && w->now - c->t_state > close_limit) {
			/* no FIN after the close exchange: count it and move on */
			if (w->sh->phase < RR_BENCH_PH_EXIT)
				w->c.proto_errors++;
			conn_kill(w, c);
		}
	}
}

static void phase_connect(struct worker *w)
{
	uint32_t limit = w->cfg->connect_concurrency;
	if (w->cfg->mode == RR_BENCH_CHURN)
		w->resolved = w->next_connect = w->nconns; /* churn connects in the run */
	for (uint32_t i = 0; w->next_connect < w->nconns && w->in_handshake < limit && i < limit;
	     i++)
		conn_start(w, &w->conns[w->next_connect++]);
	/* a chat connection counts once it is a member (initial_state), so
	 * that no receiver misses the first messages */
	bool members = w->cfg->mode != RR_BENCH_CHAT || w->c.chat_ready >= w->c.connected;
	if (!w->slot->ready && w->resolved >= w->nconns && members) {
		w->c.rss_open_kb = rr_bench_rss_kb(0);
		w->slot->rss_open_kb = w->c.rss_open_kb;
		publish_live(w);
		RR_STORE(w->slot->ready, 1);
	}
}

/* --slow-readers: at the end of the warm-up the slow readers stop reading
 * (their multishot recv is cancelled, so data piles up in the socket and
 * then in the server's queue); when the window ends they read again, to find
 * the close frame the server sent them. */
static void slow_readers_step(struct worker *w)
{
	if (!w->slow_paused && w->now >= w->sh->t_warm) {
		w->slow_paused = true;
		for (uint32_t i = 0; i < w->nconns; i++) {
			struct bconn *c = &w->conns[i];
			if (!(c->flags & F_SLOW) || c->state != C_OPEN)
				continue;
			c->flags |= F_PAUSED;
			if (c->flags & F_RECV) {
				struct io_uring_sqe *sqe = get_sqe(w);
				io_uring_prep_cancel64(sqe, ud_make(i, c->gen, OP_RECV), 0);
				io_uring_sqe_set_data64(sqe, ud_make(0, 0, OP_IGNORE));
			}
		}
	}
	if (!w->slow_resumed && w->now >= w->sh->t_end) {
		w->slow_resumed = true;
		for (uint32_t i = 0; i < w->nconns; i++) {
			struct bconn *c = &w->conns[i];
			if (!(c->flags & F_PAUSED))
				continue;
			c->flags &= ~F_PAUSED;
			if (c->state != C_DEAD && c->state != C_FREE && !(c->flags & F_RECV))
				arm_recv(w, c);
		}
	}
}

static void phase_run(struct worker *w)
{
	const struct rr_bench_cfg *cfg = w->cfg;
	if (w->now < w->sh->t_start)
		return;
	if (!w->started) {
		w->started = true;
		if (cfg->mode == RR_BENCH_ECHO)
			for (uint32_t i = 0; i < w->nconns; i++)
				conn_echo_next(w, &w->conns[i]);
	}
	if (cfg->slow_pct > 0)
		slow_readers_step(w);
	if (rr_bench_mode_rooms(cfg->mode)) {
		for (uint32_t i = 0; i < w->npubs; i++) {
			struct bconn *c = &w->conns[w->pubs[i]];
			if (c->state != C_OPEN || (c->flags & F_SEND) || w->stop_written)
				continue;
			uint64_t due = pub_due(w, c);
			if (due <= c->sent)
				continue;
			if (is_http(w, c) && !http_room(w, c)) {
				/* the window is full: the backlog is the server's */
				if (due - c->sent > w->c.pub_backlog_max)
					w->c.pub_backlog_max = due - c->sent;
				continue;
			}
			queue_flush(w, c);
		}
	} else if (cfg->mode == RR_BENCH_CHURN && w->now < w->sh->t_end) {
		uint32_t limit = cfg->connect_concurrency;
		for (uint32_t i = 0; i < w->nconns && w->in_handshake < limit; i++)
			if (w->conns[i].state == C_FREE)
				conn_start(w, &w->conns[i]);
	}
	if (w->now >= w->sh->t_end && !w->stop_written) {
		/* From here on no message is built (conn_flush checks), so each
		 * publisher's count is final now, even with a send still in
		 * flight: what was built and never arrives is lost. Schedule
		 * not met is a backlog, reported, not a loss. Churn waits for
		 * its cycles in flight, within the drain time. */
		bool busy = false;
		for (uint32_t i = 0; cfg->mode == RR_BENCH_CHURN && i < w->nconns && !busy; i++)
			busy = w->conns[i].state != C_FREE && w->now < w->sh->t_end + cfg->drain_ns;
		if (busy)
			return;
		if (rr_bench_mode_rooms(cfg->mode))
			for (uint32_t i = 0; i < w->npubs; i++) {
				struct bconn *c = &w->conns[w->pubs[i]];
				if (is_http(w, c))
					http_stop(w, c);
				else
					w->sh->pub_sent[c->pub] = c->sent;
			}
		w->stop_written = true;
		publish_live(w);
		RR_STORE(w->slot->stopped, 1);
	}
}

static uint64_t conn_expected(const struct worker *w, const struct bconn *c, uint32_t p)
{
	if (w->cfg->mode == RR_BENCH_ECHO)
		return c->sent;
	uint32_t pub = c->room * w->cfg->publishers + p;
	if ((int32_t)pub == c->pub && w->cfg->mode != RR_BENCH_CHAT)
		return 0; /* /raw does not echo a publisher's own messages */
	return w->sh->pub_sent[pub];
}

static void phase_drain(struct worker *w)
{
	if (w->finalized)
		return;
	const struct rr_bench_cfg *cfg = w->cfg;
	bool complete = true;
	if (cfg->mode == RR_BENCH_ECHO || rr_bench_mode_rooms(cfg->mode)) {
		for (uint32_t i = 0; i < w->nconns && complete; i++) {
			struct bconn *c = &w->conns[i];
			if ((c->flags & F_SLOW) && c->state == C_OPEN) {
				complete = false; /* its close has not been read yet */
				continue;
			}
			if (cfg->mode == RR_BENCH_CHAT && c->pub >= 0 && c->state == C_OPEN &&
			    c->acked < c->sent) {
				complete = false; /* acks still to come */
				continue;
			}
			if (is_http(w, c)) {
				if (c->state == C_OPEN && hp_of(w, c)->out)
					complete = false; /* answers still to come */
				continue;
			}
			if (c->state != C_OPEN || !c->seq || (c->flags & F_SLOW))
				continue;
			for (uint32_t p = 0; p < w->seqs_per_conn && complete; p++)
				complete =
				    rr_bench_seq_complete(&c->seq[p], conn_expected(w, c, p));
		}
	}
	if (!complete && w->now < w->sh->t_drain_end)
		return;
	/* what has not come by now is lost; a receiver that died is counted
	 * as a connection error, not as loss */
	for (uint32_t i = 0; i < w->nconns; i++) {
		struct bconn *c = &w->conns[i];
		if (is_http(w, c) && c->state == C_OPEN)
			w->c.unacked += hp_of(w, c)->out; /* never answered */
		if (c->state != C_OPEN || !c->seq || (c->flags & F_SLOW))
			continue;
		if (cfg->mode == RR_BENCH_CHAT && c->pub >= 0 && c->acked < c->sent)
			w->c.unacked += c->sent - c->acked;
		for (uint32_t p = 0; p < w->seqs_per_conn; p++)
			rr_bench_seq_finish(&c->seq[p], conn_expected(w, c, p), &w->c.seq);
	}
	w->finalized = true;
	publish_live(w);
	RR_STORE(w->slot->done, 1);
}

static int setup(struct worker *w)
{
	struct io_uring_params p = {0};
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	p.cq_entries = CQ_ENTRIES;
	int err = io_uring_queue_init_params(SQ_ENTRIES, &w->ring, &p);
	if (err == -EINVAL) {
		/* kernels before 6.1: no deferred task work */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = CQ_ENTRIES;
		err = io_uring_queue_init_params(SQ_ENTRIES, &w->ring, &p);
	}
	if (err < 0) {
		fprintf(stderr, "ringroom-bench: io_uring_queue_init: %s\n", strerror(-err));
		return err;
	}
	size_t brsz = RX_BUFS * sizeof(struct io_uring_buf);
	void *brmem = mmap(NULL, brsz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	w->rxbufs = malloc((size_t)RX_BUFS * RX_BUF_SIZE);
	if (brmem == MAP_FAILED || !w->rxbufs) {
		fprintf(stderr, "ringroom-bench: out of memory for receive buffers\n");
		return -ENOMEM;
	}
	/* fault in now, not mid-run (non-zero, or malloc+memset becomes calloc) */
	memset(w->rxbufs, 0xa5, (size_t)RX_BUFS * RX_BUF_SIZE);
	w->br = brmem;
	io_uring_buf_ring_init(w->br);
	struct io_uring_buf_reg reg = {
	    .ring_addr = (unsigned long)brmem,
	    .ring_entries = RX_BUFS,
	    .bgid = RX_BGID,
	};
	err = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (err < 0) {
		fprintf(stderr,
			"ringroom-bench: provided buffer rings (kernel 5.19+) unavailable: %s\n",
			strerror(-err));
		return err;
	}
	if (w->cfg->url.tls) {
		char why[160];
		int e = rr_bench_tls_ctx_new(&w->tls_ctx, w->cfg->insecure ? NULL : w->cfg->ca_file,
					     why, sizeof(why));
		if (e < 0) {
			fprintf(stderr, "ringroom-bench: %s\n", why);
			return e;
		}
		w->plain = malloc(RX_BUF_SIZE * 4);
		if (!w->plain)
			return -ENOMEM;
	}
	for (unsigned i = 0; i < RX_BUFS; i++)
		return_buf(w, i);
	io_uring_buf_ring_advance(w->br, (int)w->br_added);
	w->br_added = 0;
	return 0;
}

/* publish: the request head's fixed part, the largest request, the send
 * buffer that holds a window of them, and each HTTP publisher's state. */
static int http_setup(struct worker *w)
{
	const struct rr_bench_cfg *cfg = w->cfg;
	char tail[1024], rn[16], target[RR_BENCH_URL_PATH_MAX + 32];
	int n = snprintf(tail, sizeof(tail),
			 " HTTP/1.1\r\nHost: %s:%u\r\nAuthorization: Bearer %s\r\n"
			 "Content-Type: application/octet-stream\r\nContent-Length: %u\r\n\r\n",
			 cfg->url.host, cfg->url.port, cfg->api_key, cfg->size);
	if (n < 0 || (size_t)n >= sizeof(tail))
		return -ENAMETOOLONG;
	w->req_tail = strdup(tail);
	w->req_tail_len = (size_t)n;
	/* the longest room name is the last one's */
	room_name(cfg->rooms - 1, rn, sizeof(rn));
	int tl = rr_bench_url_target(&cfg->url, rn, target, sizeof(target));
	if (tl < 0 || !w->req_tail)
		return tl < 0 ? tl : -ENOMEM;
	w->req_max = 9 + (size_t)tl + w->req_tail_len + cfg->size;
	size_t tx = w->req_max * cfg->window;
	if (tx > HTTP_INFLIGHT_MAX + w->req_max)
		tx = HTTP_INFLIGHT_MAX + w->req_max;
	if (w->txsz < tx)
		w->txsz = tx;
	uint32_t nh = w->nconns - w->http_first;
	w->hps = calloc(nh ? nh : 1, sizeof(*w->hps));
	if (!w->hps)
		return -ENOMEM;
	for (uint32_t i = 0; i < nh; i++) {
		struct http_pub *hp = &w->hps[i];
		rr_bench_http_rx_init(&hp->rx);
		hp->ts = calloc(cfg->window, sizeof(*hp->ts));
		hp->len = calloc(cfg->window, sizeof(*hp->len));
		if (!hp->ts || !hp->len)
			return -ENOMEM;
	}
	return 0;
}

/* The connection slots: their cost is per connection, so they are allocated
 * after the fixed-size ring and buffers have been measured. */
static int setup_conns(struct worker *w)
{
	const struct rr_bench_cfg *cfg = w->cfg;
	/* this worker's connections: every procs-th global index */
	uint32_t total = rr_bench_cfg_total_conns(cfg);
	w->nconns = total / cfg->procs + (w->id < total % cfg->procs ? 1 : 0);
	w->conns = calloc(w->nconns ? w->nconns : 1, sizeof(*w->conns));
	w->flushq = calloc(w->nconns ? w->nconns : 1, sizeof(uint32_t));
	w->rearmq = calloc(w->nconns ? w->nconns : 1, sizeof(uint32_t));
	w->pubs = calloc(w->nconns ? w->nconns : 1, sizeof(uint32_t));
	if (cfg->mode == RR_BENCH_ECHO)
		w->seqs_per_conn = 1;
	else if (rr_bench_mode_rooms(cfg->mode))
		w->seqs_per_conn = cfg->publishers;
	if (w->seqs_per_conn)
		w->seqs = calloc((size_t)w->nconns * w->seqs_per_conn + 1, sizeof(*w->seqs));
	if (!w->conns || !w->flushq || !w->rearmq || !w->pubs || (w->seqs_per_conn && !w->seqs))
		return -ENOMEM;
	w->http_first = w->nconns;
	uint32_t nmembers = cfg->rooms * cfg->members;
	for (uint32_t i = 0; i < w->nconns; i++) {
		struct bconn *c = &w->conns[i];
		c->fd = -1;
		c->gid = i * cfg->procs + w->id;
		c->pub = -1;
		if (w->seqs)
			c->seq = &w->seqs[(size_t)i * w->seqs_per_conn];
		if (cfg->mode == RR_BENCH_PUBLISH && c->gid >= nmembers) {
			/* the HTTP publishers come after every member */
			if (w->http_first == w->nconns)
				w->http_first = i;
			c->pub = (int32_t)(c->gid - nmembers); /* k, 0 .. P-1 */
			c->room = 0;
			c->seq = NULL;
			w->pubs[w->npubs++] = i;
		} else if (rr_bench_mode_rooms(cfg->mode)) {
			c->room = c->gid / cfg->members;
			uint32_t m = c->gid % cfg->members;
			if (cfg->mode != RR_BENCH_PUBLISH && m < cfg->publishers) {
				c->pub = (int32_t)(c->room * cfg->publishers + m);
				w->pubs[w->npubs++] = i;
			} else if (m >= cfg->members - rr_bench_cfg_slow_per_room(cfg)) {
				c->flags |= F_SLOW;
			}
		} else {
			/* a {room} URL spreads the connections over --rooms rooms */
			c->room = c->gid % cfg->rooms;
			if (cfg->mode == RR_BENCH_ECHO)
				c->pub = (int32_t)c->gid;
		}
	}
	if (cfg->mode == RR_BENCH_CHAT) {
		w->chat_max = rr_bench_chat_max(cfg->size);
		w->chat_tmp = malloc(w->chat_max + 1);
		if (!w->chat_tmp)
			return -ENOMEM;
	}
	size_t frame = rr_bench_frame_len(cfg->mode == RR_BENCH_CHAT ? w->chat_max : cfg->size);
	/* publish: members send only pongs and closes */
	size_t batch =
	    rr_bench_mode_rooms(cfg->mode) && cfg->mode != RR_BENCH_PUBLISH ? PUB_BATCH_MAX : 1;
	if (batch > 1 && frame * batch > 256 * 1024)
		batch = (256 * 1024) / frame ? (256 * 1024) / frame : 1;
	/* room for a batch of messages, a pong, a close and, first, the request */
	w->txsz = frame * batch + 256 + 128;
	if (w->txsz < RR_BENCH_URL_PATH_MAX + 1024)
		w->txsz = RR_BENCH_URL_PATH_MAX + 1024;
	if (cfg->mode == RR_BENCH_PUBLISH) {
		int err = http_setup(w);
		if (err < 0)
			return err;
	}
	w->msg_tmpl = calloc(1, cfg->size);
	if (!w->msg_tmpl)
		return -ENOMEM;
	for (uint32_t i = RR_BENCH_STAMP_LEN; i < cfg->size; i++)
		w->msg_tmpl[i] = (uint8_t)('a' + i % 26);
	w->rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)getpid() << 17) ^ rr_bench_now_ns();
	if (!w->rng)
		w->rng = 1;
	return 0;
}

static void graceful_close(struct worker *w)
{
	/* say goodbye with a close frame; the server's FIN ends each one */
	uint64_t deadline = rr_bench_now_ns() + 1000000000ull;
	for (uint32_t i = 0; i < w->nconns; i++) {
		struct bconn *c = &w->conns[i];
		if (c->state == C_OPEN && !is_http(w, c)) {
			c->flags |= F_CLOSE_TX;
			queue_flush(w, c);
		} else if (c->state != C_FREE && c->state != C_CLOSING) {
			/* an HTTP publisher has nothing to say: just close it */
			conn_kill(w, c);
		}
	}
	for (int iter = 0; iter < 100000 && w->alive > 0; iter++) {
		w->now = rr_bench_now_ns();
		if (w->now > deadline)
			break;
		flush_all(w);
		struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10000000};
		struct io_uring_cqe *cqe;
		io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&w->ring, head, cqe)
		{
			handle_cqe(w, cqe);
			if (++seen >= CQE_BATCH)
				break;
		}
		io_uring_cq_advance(&w->ring, seen);
		if (w->br_added) {
			io_uring_buf_ring_advance(w->br, (int)w->br_added);
			w->br_added = 0;
		}
	}
}

int rr_bench_worker_run(const struct rr_bench_cfg *cfg, struct rr_bench_shared *sh, uint32_t id)
{
	static struct worker wk;
	struct worker *w = &wk;
	W = w;
	w->cfg = cfg;
	w->sh = sh;
	w->id = id;
	w->slot = &sh->slots[id];
	int err = setup(w);
	if (err < 0) {
		fprintf(stderr, "ringroom-bench: worker %u: setup failed: %s\n", id,
			strerror(-err));
		return 1;
	}
	/* measured after the ring and receive buffers exist, before the slots,
	 * so that the growth is what the connections themselves cost */
	w->c.rss_start_kb = rr_bench_rss_kb(0);
	w->slot->rss_start_kb = w->c.rss_start_kb;
	err = setup_conns(w);
	if (err < 0) {
		fprintf(stderr, "ringroom-bench: worker %u: out of memory for %s\n", id,
			"connection slots");
		return 1;
	}
	/* bounded by the parent: it moves the phase on or aborts, and a
	 * worker whose parent is gone exits */
	for (;;) {
		w->now = rr_bench_now_ns();
		int phase = RR_LOAD(sh->phase);
		if (RR_LOAD(sh->abort))
			break;
		if (phase == RR_BENCH_PH_EXIT)
			break;
		if (phase == RR_BENCH_PH_CONNECT)
			phase_connect(w);
		else if (phase == RR_BENCH_PH_RUN)
			phase_run(w);
		else if (phase == RR_BENCH_PH_DRAIN)
			phase_drain(w);
		sweep_timeouts(w);
		flush_all(w);

		/* fanout publishers are paced by the clock: wake often */
		long wait_ns = (rr_bench_mode_rooms(cfg->mode) && phase == RR_BENCH_PH_RUN)
				   ? 500000
				   : 10000000;
		struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = wait_ns};
		struct io_uring_cqe *cqe;
		int r = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
		if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			fprintf(stderr, "ringroom-bench: worker %u: io_uring_enter: %s\n", id,
				strerror(-r));
			return 1;
		}
		w->now = rr_bench_now_ns();
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&w->ring, head, cqe)
		{
			handle_cqe(w, cqe);
			if (++seen >= CQE_BATCH)
				break;
		}
		io_uring_cq_advance(&w->ring, seen);
		if (w->br_added) {
			io_uring_buf_ring_advance(w->br, (int)w->br_added);
			w->br_added = 0;
		}
		publish_live(w);
	}
	if (!RR_LOAD(sh->abort))
		graceful_close(w);
	return 0;
}
