/*
 * Spread rooms across two real cores driven by hand on one thread: real
 * rings (their MSG_RING hand-offs and batches between them), real sockets
 * (one end of a socketpair installed in a core's fixed-file table, the other
 * end played here as the client, RFC 6455 framing), /raw/ rooms.
 *
 * The cases (each prints what it checked):
 *   1. a room spreads at --spread-at: the first members move to the home,
 *      later ones stay on their core; every member gets each other member's
 *      messages once, in order, never its own;
 *   2. the frame's cross-core lifetime: a broadcast is in flight to core 1
 *      when every member there goes; its frame is freed once, by the last
 *      holder (the maker's count is back to its own reference);
 *   3. a room shrinks back under half the mark while a broadcast is on its
 *      way: the remote member left gets it once, the room no longer spreads
 *      (a new member moves to the home), and the remote member still hears
 *      the room.
 *
 * Every wait is a bounded number of pump rounds (each waits at most a few
 * milliseconds for completions); no clock decides a result.
 */
#include "check.h"

#include "conn/conn.h"
#include "core/flags.h"
#include "core/frame.h"
#include "core/log.h"
#include "core/time.h"
#include "gate/gate.h"
#include "http/http.h"
#include "reactor/loop.h"
#include "room/room.h"
#include "ws/ws.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MSGS_MAX 64
#define BUF_MAX (1 << 16)
#define PUMP_ROUNDS 4000 /* bound on any wait: each round is at most 2 ms */

static struct rr_broker broker;
static struct rr_core cores[2] __attribute__((aligned(64)));
static uint32_t next_slot[2];

struct client {
	int fd;
	unsigned core;
	bool upgraded;
	bool closed;
	uint8_t buf[1 << 16];
	size_t len;
	/* text messages received after the 101 */
	char *msgs[MSGS_MAX];
	unsigned nmsgs;
};

static void fail_now(const char *what)
{
	fprintf(stderr, "fatal: %s\n", what);
	exit(1);
}

/* ---- the cores ------------------------------------------------------------ */

/* One iteration of core c, waiting up to wait_ms for a completion. Returns
 * the completions handled. */
static unsigned pump_core(unsigned c, int wait_ms)
{
	struct rr_core *core = &cores[c];
	rr_core_enter(core);
	core->now_ms = rr_now_ms();
	rr_core_settle_flush(core);
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = (long)wait_ms * 1000000};
	int rc = io_uring_submit_and_wait_timeout(&core->ring, &cqe, 1, &ts, NULL);
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
		fail_now("io_uring_submit_and_wait_timeout");
	unsigned head, n = 0;
	io_uring_for_each_cqe(&core->ring, head, cqe)
	{
		rr_core_dispatch(core, cqe);
		n++;
	}
	io_uring_cq_advance(&core->ring, n);
	rr_bufring_publish(&core->bufs);
	return n;
}

static void client_read(struct client *cl);

/* Pump both cores (and read every client) until cond holds; false when it
 * never did within the bound. */
static bool pump_until(bool (*cond)(void *), void *arg, struct client **cls, unsigned ncl)
{
	for (unsigned round = 0; round < PUMP_ROUNDS; round++) {
		pump_core(0, 1);
		pump_core(1, 1);
		for (unsigned i = 0; i < ncl; i++)
			client_read(cls[i]);
		if (cond(arg))
			return true;
	}
	return false;
}

/* Pump until nothing happens on either core for 20 rounds in a row. */
static void pump_quiet(struct client **cls, unsigned ncl)
{
	unsigned calm = 0;
	for (unsigned round = 0; round < PUMP_ROUNDS && calm < 20; round++) {
		unsigned n = pump_core(0, 1) + pump_core(1, 1);
		for (unsigned i = 0; i < ncl; i++)
			client_read(cls[i]);
		calm = n ? 0 : calm + 1;
	}
}

/* ---- clients ------------------------------------------------------------------ */

static void parse_frames(struct client *cl)
{
	size_t off = 0;
	if (!cl->upgraded) {
		uint8_t *end = memmem(cl->buf, cl->len, "\r\n\r\n", 4);
		if (end == NULL)
			return;
		CHECK(memcmp(cl->buf, "HTTP/1.1 101", 12) == 0);
		cl->upgraded = true;
		off = (size_t)(end - cl->buf) + 4;
	}
	for (;;) {
		if (cl->len - off < 2)
			break;
		uint8_t op = cl->buf[off] & 0x0f;
		uint64_t n = cl->buf[off + 1] & 0x7f;
		size_t h = 2;
		if (n == 126) {
			if (cl->len - off < 4)
				break;
			n = ((uint64_t)cl->buf[off + 2] << 8) | cl->buf[off + 3];
			h = 4;
		} else if (n == 127) {
			if (cl->len - off < 10)
				break;
			n = 0;
			for (int i = 0; i < 8; i++)
				n = (n << 8) | cl->buf[off + 2 + i];
			h = 10;
		}
		if (cl->len - off < h + n)
			break;
		if (op == RR_WS_TEXT && cl->nmsgs < MSGS_MAX) {
			char *m = malloc(n + 1);
			memcpy(m, cl->buf + off + h, n);
			m[n] = '\0';
			cl->msgs[cl->nmsgs++] = m;
		}
		off += h + n;
	}
	memmove(cl->buf, cl->buf + off, cl->len - off);
	cl->len -= off;
}

static void client_read(struct client *cl)
{
	if (cl->closed)
		return;
	for (;;) {
		ssize_t n = read(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len);
		if (n <= 0)
			break;
		cl->len += (size_t)n;
		parse_frames(cl);
	}
}

static bool upgraded(void *arg)
{
	return ((struct client *)arg)->upgraded;
}

/* A client of core c asking for path; its 101 awaited. */
static struct client *client_open(unsigned c, const char *path)
{
	struct rr_core *core = &cores[c];
	struct client *cl = calloc(1, sizeof(*cl));
	int sv[2];
	if (cl == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		fail_now("socketpair");
	/* the server's end into the core's table, from the top (hand-offs
	 * allocate from the bottom) */
	int slot = (int)(core->slots - 1 - next_slot[c]++);
	if (io_uring_register_files_update(&core->ring, (unsigned)slot, &sv[1], 1) != 1)
		fail_now("io_uring_register_files_update");
	close(sv[1]);
	cl->fd = sv[0];
	cl->core = c;
	fcntl(cl->fd, F_SETFL, O_NONBLOCK);
	rr_core_enter(core);
	struct rr_conn *conn = rr_conn_alloc(core, slot);
	if (conn == NULL)
		fail_now("rr_conn_alloc");
	conn->accepted_ns = rr_now_ns();
	rr_conn_arm_recv(core, conn);
	char req[512];
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			 "Sec-WebSocket-Version: 13\r\n\r\n",
			 path);
	if (write(cl->fd, req, (size_t)n) != n)
		fail_now("write");
	struct client *one[1] = {cl};
	CHECK(pump_until(upgraded, cl, one, 1));
	return cl;
}

static void client_text(struct client *cl, const char *s)
{
	uint8_t f[256];
	size_t n = strlen(s);
	static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
	f[0] = 0x80 | RR_WS_TEXT;
	f[1] = 0x80 | (uint8_t)n;
	memcpy(f + 2, mask, 4);
	for (size_t i = 0; i < n; i++)
		f[6 + i] = (uint8_t)s[i] ^ mask[i % 4];
	if (write(cl->fd, f, 6 + n) != (ssize_t)(6 + n))
		fail_now("write");
}

static void client_close(struct client *cl)
{
	if (!cl->closed)
		close(cl->fd);
	cl->closed = true;
}

static void client_free(struct client *cl)
{
	client_close(cl);
	for (unsigned i = 0; i < cl->nmsgs; i++)
		free(cl->msgs[i]);
	free(cl);
}

static unsigned count_msg(const struct client *cl, const char *s)
{
	unsigned n = 0;
	for (unsigned i = 0; i < cl->nmsgs; i++)
		n += strcmp(cl->msgs[i], s) == 0;
	return n;
}

/* A room name whose home is core 0. */
static void home0_name(const char *prefix, char *out, size_t cap)
{
	for (unsigned i = 0;; i++) {
		snprintf(out, cap, "%s%u", prefix, i);
		if (rr_broker_home(&broker, out, strlen(out)) == 0)
			return;
	}
}

struct want {
	struct client **cls;
	unsigned n, msgs;
};

static bool all_have(void *arg)
{
	struct want *w = arg;
	for (unsigned i = 0; i < w->n; i++)
		if (w->cls[i]->nmsgs < w->msgs)
			return false;
	return true;
}

/* ---- the cases ---------------------------------------------------------------- */

#define NM 8 /* members per room: 4 move to the home, then the room spreads */

/* Members of room: m[0] on core 0, the rest on core 1 (the first three
 * moved to the home, the last four kept on core 1). */
static void open_room(const char *room, struct client **m)
{
	char path[160];
	snprintf(path, sizeof(path), "/raw/%s", room);
	uint64_t in0 = cores[0].stats.handoffs_in;
	for (unsigned i = 0; i < NM; i++)
		m[i] = client_open(i == 0 ? 0 : 1, path);
	CHECK_EQ(cores[0].stats.handoffs_in - in0, 3);
	CHECK(rr_room_is_spread(RR_ROUTE_RAW, room, strlen(room)));
	struct rr_room *r = rr_room_find(&cores[0], RR_ROUTE_RAW, room, strlen(room));
	CHECK(r != NULL && r->count == NM && r->spread);
	struct rr_room *s = rr_room_find(&cores[1], RR_ROUTE_RAW, room, strlen(room));
	CHECK(s != NULL && s->shard && s->count == NM - 4);
}

static void case_spread(void)
{
	struct client *m[NM];
	char room[32];
	home0_name("spread", room, sizeof(room));
	uint64_t sm1 = cores[1].stats.shard_members;
	open_room(room, m);
	CHECK_EQ(cores[1].stats.shard_members - sm1, NM - 4);
	CHECK_EQ(cores[0].stats.spread_rooms, 1);

	/* m[0] (home) and m[5] (core 1) publish 3 each, interleaved */
	char s[32];
	for (unsigned k = 0; k < 3; k++) {
		snprintf(s, sizeof(s), "a%u", k);
		client_text(m[0], s);
		snprintf(s, sizeof(s), "b%u", k);
		client_text(m[5], s);
	}
	struct want w = {m, NM, 3};
	CHECK(pump_until(all_have, &w, m, NM));
	pump_quiet(m, NM);
	unsigned ok = 0;
	for (unsigned i = 0; i < NM; i++) {
		bool good = true;
		unsigned expect = (i == 0 || i == 5) ? 3 : 6;
		good &= m[i]->nmsgs == expect;
		/* each publisher's in order, none of its own */
		int last_a = -1, last_b = -1;
		for (unsigned j = 0; j < m[i]->nmsgs; j++) {
			const char *x = m[i]->msgs[j];
			int k = x[1] - '0';
			if (x[0] == 'a') {
				good &= i != 0 && k == last_a + 1;
				last_a = k;
			} else {
				good &= i != 5 && k == last_b + 1;
				last_b = k;
			}
		}
		if (!good)
			fprintf(stderr, "member %u: %u messages\n", i, m[i]->nmsgs);
		ok += good;
	}
	CHECK_EQ(ok, NM);
	printf("  spread: %u members (3 moved to the home, %u kept on core 1); 2 publishers x 3: "
	       "%u of %u members got each other message once, in order, none of their own\n",
	       NM, NM - 4, ok, NM);
	for (unsigned i = 0; i < NM; i++)
		client_free(m[i]);
	pump_quiet(NULL, 0);
	CHECK(rr_room_find(&cores[0], RR_ROUTE_RAW, room, strlen(room)) == NULL);
	CHECK(rr_room_find(&cores[1], RR_ROUTE_RAW, room, strlen(room)) == NULL);
	CHECK_EQ(cores[1].stats.shard_members, sm1);
	CHECK_EQ(cores[0].stats.spread_rooms, 0);
}

/* A frame big enough to be queued by reference, not copied (conn/outq.h),
 * with our own reference; its text in big_text. */
static char big_text[1001];

static struct rr_frame *big_frame(char tag)
{
	memset(big_text, tag, sizeof(big_text) - 1);
	big_text[sizeof(big_text) - 1] = '\0';
	return rr_frame_ws(RR_WS_TEXT, big_text, strlen(big_text));
}

static void case_inflight_close(void)
{
	struct client *m[NM];
	char room[32];
	home0_name("inflight", room, sizeof(room));
	open_room(room, m);
	struct rr_room *r = rr_room_find(&cores[0], RR_ROUTE_RAW, room, strlen(room));
	uint64_t fwd = cores[0].stats.shard_frames_forwarded;

	/* the broadcast leaves core 0 (one batch for core 1, posted) ... */
	struct rr_frame *f = big_frame('x');
	rr_core_enter(&cores[0]);
	CHECK_EQ(rr_room_send_all(&cores[0], r, f, NULL, NULL, NULL), NM);
	rr_core_settle_flush(&cores[0]);
	io_uring_submit(&cores[0].ring);
	CHECK_EQ(cores[0].stats.shard_frames_forwarded - fwd, 1);
	CHECK(f->shared && atomic_load(&f->holders) == 2);
	/* ... and before core 1 runs, every one of its members goes */
	for (unsigned i = 4; i < NM; i++)
		client_close(m[i]);
	pump_quiet(m, 4);
	for (unsigned i = 0; i < 4; i++)
		CHECK_EQ(count_msg(m[i], big_text), 1);
	CHECK(rr_room_find(&cores[1], RR_ROUTE_RAW, room, strlen(room)) == NULL);
	CHECK_EQ(r->count, 4); /* their stubs left too */
	/* only the maker's holder and our reference are left */
	CHECK_EQ(atomic_load(&f->holders), 1);
	CHECK_EQ(f->refs, 1);
	printf("  in flight: core 1 lost its %u members with a broadcast on its way: the home's "
	       "4 got it once, core 1's shard and the stubs are gone, the frame's holders back "
	       "to 1 (%u), its references to ours (%u)\n",
	       NM - 4, atomic_load(&f->holders), f->refs);
	rr_frame_unref(f);
	for (unsigned i = 0; i < NM; i++)
		client_free(m[i]);
	pump_quiet(NULL, 0);
}

static void case_shrink(void)
{
	struct client *m[NM];
	char room[32], path[64];
	home0_name("shrink", room, sizeof(room));
	snprintf(path, sizeof(path), "/raw/%s", room);
	open_room(room, m);
	struct rr_room *r = rr_room_find(&cores[0], RR_ROUTE_RAW, room, strlen(room));

	struct rr_frame *f = big_frame('y');
	rr_core_enter(&cores[0]);
	rr_room_send_all(&cores[0], r, f, NULL, NULL, NULL);
	rr_core_settle_flush(&cores[0]);
	io_uring_submit(&cores[0].ring);
	/* on its way to core 1: the room falls to one member (m[7], on core
	 * 1), under half of --spread-at 4 */
	for (unsigned i = 0; i < NM - 1; i++)
		client_close(m[i]);
	struct client *last[1] = {m[NM - 1]};
	pump_quiet(last, 1);
	r = rr_room_find(&cores[0], RR_ROUTE_RAW, room, strlen(room));
	CHECK(r != NULL && r->count == 1 && !r->spread);
	CHECK(!rr_room_is_spread(RR_ROUTE_RAW, room, strlen(room)));
	CHECK_EQ(count_msg(m[NM - 1], big_text), 1);
	CHECK_EQ(atomic_load(&f->holders), 1);
	CHECK_EQ(f->refs, 1);
	rr_frame_unref(f);

	/* a new member on core 1 moves to the home again */
	uint64_t in0 = cores[0].stats.handoffs_in, sm1 = cores[1].stats.shard_members;
	struct client *n = client_open(1, path);
	CHECK_EQ(cores[0].stats.handoffs_in - in0, 1);
	CHECK_EQ(cores[1].stats.shard_members, sm1);
	/* and the member left on core 1 still hears the room */
	client_text(n, "after");
	struct client *both[2] = {m[NM - 1], n};
	struct want w = {last, 1, 2};
	CHECK(pump_until(all_have, &w, both, 2));
	pump_quiet(both, 2);
	CHECK_EQ(count_msg(m[NM - 1], "after"), 1);
	CHECK_EQ(n->nmsgs, 0);
	printf("  shrink: the room fell to 1 member (on core 1) with a broadcast on its way: it "
	       "got it once, the room stopped spreading, a new member moved to the home, the "
	       "member on core 1 still hears the room\n");
	client_free(n);
	for (unsigned i = 0; i < NM; i++)
		client_free(m[i]);
	pump_quiet(NULL, 0);
}

int main(void)
{
	char err[256];
	setvbuf(stdout, NULL, _IOLBF, 0);
	char *argv[] = {"test_spread", "--cores",	  "2",	  "--spread-at",
			"4",	       "--log-level",	  "warn", "--handshake-timeout",
			"1h",	       "--ping-interval", "1h",	  "--idle-timeout",
			"2h",	       "--close-timeout", "1h",	  NULL};
	int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1;
	if (rr_flags_parse(&broker.cfg, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "flags: %s\n", err);
		return 1;
	}
	rr_log_level = broker.cfg.log_level;
	if (rr_ring_probe(&broker.features, err, sizeof(err)) < 0) {
		printf("SKIP: %s\n", err);
		return 77;
	}
	broker.ncores = 2;
	broker.cores = cores;
	broker.start_ms = rr_now_ms();
	rr_gate_register();
	rr_room_register();
	for (unsigned i = 0; i < 2; i++)
		if (rr_core_setup(&broker, &cores[i], i, false) < 0)
			fail_now("rr_core_setup");

	case_spread();
	case_inflight_close();
	case_shrink();

	for (unsigned i = 0; i < 2; i++) {
		CHECK_EQ(cores[i].conns_live, 0);
		CHECK_EQ(cores[i].members_live, 0);
		CHECK_EQ(cores[i].stats.rooms_open, 0);
		CHECK_EQ(cores[i].stats.shard_members, 0);
	}
	printf("  end: no connection, member, room or shard left on either core\n");
	for (unsigned i = 0; i < 2; i++)
		rr_core_teardown(&cores[i]);
	return check_done();
}
