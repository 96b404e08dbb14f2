/*
 * Unit tests of how the storage worker hands completions back to the cores
 * (src/persist/store_post.c), against a real RocksDB and real io_uring rings:
 *  - a core ring the kernel refuses MSG_RING for (created disabled,
 *    IORING_SETUP_R_DISABLED: -EBADFD) gets nothing while it refuses, the
 *    worker holds and retries, and once the ring is enabled every completion
 *    arrives exactly once and in order; another core is not held up;
 *  - an injected refusal in the middle of a burst (-EOVERFLOW) does not let
 *    the completions behind it overtake it;
 *  - held completions count against the core's queue quota;
 *  - a tiny completion queue that is not reaped loses nothing (the kernel's
 *    overflow list takes what does not fit);
 *  - closing: a ring enabled while close waits gets everything; a ring that
 *    is gone, or refuses for good, is given up within a bounded time, with
 *    the results freed and no callback run.
 */
#include "test_store_util.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define N_MAX 512

static struct rr_store_req reqs[N_MAX];
static char payloads[N_MAX][32];
static unsigned seen[N_MAX];	  /* completions run, per request */
static unsigned order[2 * N_MAX]; /* request indexes, in completion order */
static unsigned n_order;

static void p_done(struct rr_store_req *req)
{
	unsigned i = (unsigned)(uintptr_t)req->arg;

	seen[i]++;
	if (n_order < 2 * N_MAX)
		order[n_order++] = i;
}

static void reset_seen(void)
{
	memset(seen, 0, sizeof(seen));
	n_order = 0;
}

/* A ring the kernel refuses MSG_RING for (-EBADFD) until ring_enable(). */
static void ring_disabled(struct io_uring *r)
{
	struct io_uring_params p = {.flags = IORING_SETUP_R_DISABLED};
	int ret = io_uring_queue_init_params(64, r, &p);

	if (ret < 0) {
		fprintf(stderr, "io_uring R_DISABLED: %s\n", strerror(-ret));
		exit(1);
	}
}

static int ring_enable(struct io_uring *r)
{
	/* liburing 2.3 has no io_uring_enable_rings() */
	return syscall(__NR_io_uring_register, r->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) <
		       0
		   ? -errno
		   : 0;
}

/* Request i: an APPEND of id first + i to `room`, completing on ring_fd. */
static void submit_append(struct rr_store *s, unsigned i, uint64_t id, const char *room,
			  uint32_t core, int ring_fd)
{
	t_req_init(&reqs[i], RR_STORE_APPEND, room);
	reqs[i].id = id;
	snprintf(payloads[i], sizeof(payloads[i]), "P-%llu", (unsigned long long)id);
	reqs[i].data = payloads[i];
	reqs[i].len = (uint32_t)strlen(payloads[i]);
	reqs[i].core = core;
	reqs[i].reply_ring_fd = ring_fd;
	reqs[i].done = p_done;
	reqs[i].arg = (void *)(uintptr_t)i;
	CHECK_EQ(rr_store_submit(s, &reqs[i]), 0);
}

/* Request i: a READ_AFTER of `room` (its results are one allocation). */
static void submit_read(struct rr_store *s, unsigned i, const char *room, int ring_fd)
{
	t_req_init(&reqs[i], RR_STORE_READ_AFTER, room);
	reqs[i].reply_ring_fd = ring_fd;
	reqs[i].done = p_done;
	reqs[i].arg = (void *)(uintptr_t)i;
	CHECK_EQ(rr_store_submit(s, &reqs[i]), 0);
}

/* Wait (up to 5 s) until the store holds `pending` completions after at
 * least `failures` refused posts. */
static bool wait_held(struct rr_store *s, uint32_t pending, uint64_t failures)
{
	struct rr_store_stats st;

	for (int i = 0; i < 500; i++) {
		rr_store_stats_get(s, &st);
		if (st.post_pending == pending && st.post_failures >= failures)
			return true;
		usleep(10 * 1000);
	}
	fprintf(stderr, "store holds %u completions after %llu refusals, want %u after %llu\n",
		st.post_pending, (unsigned long long)st.post_failures, pending,
		(unsigned long long)failures);
	return false;
}

/*
 * Wait until the worker has counted the posts whose completions were just
 * reaped. It learns a post's outcome only from its own CQE, after the
 * kernel has already put the completion on the core's ring, so it adds
 * post_retries and stores post_pending after the core may have run the
 * completion. A FLUSH on core 1 orders this: the worker takes it from the
 * queue only in a later pass of its loop than the flush that delivered
 * them (that pass took its drain before posting), so by the time the FLUSH
 * completes, those counters are final.
 */
static void wait_posts_counted(struct rr_store *s)
{
	struct rr_store_req fl;

	t_req_init(&fl, RR_STORE_FLUSH, NULL);
	fl.core = 1;
	CHECK_EQ(t_run(s, &fl), 0);
}

/* Every request [from, to) completed exactly once, in index order. */
static void check_once_in_order(unsigned from, unsigned to)
{
	CHECK_EQ(n_order, to - from);
	for (unsigned i = from; i < to; i++)
		CHECK_EQ(seen[i], 1);
	for (unsigned k = 0; k < n_order && k < to - from; k++)
		CHECK_EQ(order[k], from + k);
}

static uint64_t elapsed_ms(uint64_t since)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 - since;
}

static uint64_t mono_ms(void)
{
	return elapsed_ms(0);
}

/* The kernel refuses a core's ring: nothing is lost, nothing overtakes. */
static void test_refused_ring(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s = t_open(&o);
	struct rr_store_req load, rd;
	struct rr_store_stats st;
	struct io_uring core0;
	unsigned i;

	reset_seen();
	ring_disabled(&core0);
	CHECK_EQ(t_room_load(s, "held", &load), 0);
	CHECK_EQ(t_room_load(s, "free", &load), 0);

	/* core 0's completions go to the refusing ring, core 1's to t_ring,
	 * interleaved in one drain */
	rr_store_pause(s, true);
	for (i = 0; i < 40; i++)
		submit_append(s, i, i + 1, "held", 0, core0.ring_fd);
	for (i = 40; i < 45; i++)
		submit_append(s, i, i - 39, "free", 1, t_ring.ring_fd);
	rr_store_pause(s, false);

	CHECK(wait_held(s, 40, 1));
	/* core 1 is not held up behind core 0 */
	CHECK_EQ(t_reap_on(&t_ring, 5, 50), 5);
	for (i = 40; i < 45; i++)
		CHECK_EQ(seen[i], 1);
	/* the refusing ring got nothing, and the worker keeps trying */
	CHECK_EQ(io_uring_cq_ready(&core0), 0);
	rr_store_stats_get(s, &st);
	uint64_t refusals = st.post_failures;

	/* it keeps trying: a new refusal comes (polled, no time bound but the
	 * test's own timeout) */
	do {
		usleep(20 * 1000);
		rr_store_stats_get(s, &st);
	} while (st.post_failures == refusals);
	CHECK(st.post_failures > refusals);
	CHECK_EQ(st.post_pending, 40);
	CHECK_EQ(st.post_retries, 0);
	CHECK_EQ(st.completed - st.post_pending, 2 + 5); /* loads + core 1 */
	printf("refused ring: %llu more refusals while the test looked\n",
	       (unsigned long long)(st.post_failures - refusals));

	/* the ring takes posts again: all 40, once each, in order */
	reset_seen();
	CHECK_EQ(ring_enable(&core0), 0);
	CHECK_EQ(t_reap_on(&core0, 40, 50), 40);
	CHECK_EQ(t_reap_on(&core0, 1, 3), 0); /* and nothing more */
	check_once_in_order(0, 40);
	for (i = 0; i < 40; i++)
		CHECK_EQ(reqs[i].res, 0);
	wait_posts_counted(s);
	rr_store_stats_get(s, &st);
	CHECK_EQ(st.post_pending, 0);
	CHECK_EQ(st.post_retries, 40);

	/* they were stored, in order */
	t_req_init(&rd, RR_STORE_READ_AFTER, "held");
	CHECK_EQ(t_run(s, &rd), 0);
	CHECK_EQ(rd.out.n_items, 40);
	for (i = 0; i < rd.out.n_items; i++)
		CHECK_EQ(rd.out.items[i].id, i + 1);
	rr_store_req_release(&rd);

	/* and the core's ring works as before */
	reset_seen();
	submit_append(s, 0, 41, "held", 0, core0.ring_fd);
	CHECK_EQ(t_reap_on(&core0, 1, 50), 1);
	CHECK_EQ(seen[0], 1);
	rr_store_stats_get(s, &st);
	CHECK_EQ(st.post_retries, 40);
	rr_store_close(s);
	io_uring_queue_exit(&core0);
}

/* A refusal in the middle of a burst: those behind it wait for it. */
static void test_injected_refusal(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s = t_open(&o);
	struct rr_store_req load;
	struct rr_store_stats st;

	reset_seen();
	CHECK_EQ(t_room_load(s, "inj", &load), 0);
	rr_store_pause(s, true);
	for (unsigned i = 0; i < 10; i++)
		submit_append(s, i, i + 1, "inj", 0, t_ring.ring_fd);
	/* posts 1..3 go through, the 4th is refused twice */
	rr_store_inject_post_fault(s, -EOVERFLOW, 3, 2);
	rr_store_pause(s, false);
	CHECK_EQ(t_reap_on(&t_ring, 10, 50), 10);
	CHECK_EQ(t_reap_on(&t_ring, 1, 3), 0);
	check_once_in_order(0, 10);
	for (unsigned i = 0; i < 10; i++)
		CHECK_EQ(reqs[i].res, 0);
	wait_posts_counted(s);
	rr_store_stats_get(s, &st);
	CHECK_EQ(st.post_failures, 2);
	/* the refused one and those behind it in its drain: how many were
	 * batched with it depends on the worker's timing (a sanitizer build
	 * batches differently), so the count is bounded, not exact */
	uint64_t retries = st.post_retries;
	CHECK(retries >= 2 && retries <= 10);
	CHECK_EQ(st.post_pending, 0);

	/* -EBUSY on the very first post of a drain, once */
	reset_seen();
	rr_store_pause(s, true);
	for (unsigned i = 0; i < 5; i++)
		submit_append(s, i, 11 + i, "inj", 0, t_ring.ring_fd);
	rr_store_inject_post_fault(s, -EBUSY, 0, 1);
	rr_store_pause(s, false);
	CHECK_EQ(t_reap_on(&t_ring, 5, 50), 5);
	check_once_in_order(0, 5);
	wait_posts_counted(s);
	rr_store_stats_get(s, &st);
	CHECK_EQ(st.post_failures, 3);
	CHECK(st.post_retries >= retries + 1 && st.post_retries <= retries + 5);
	rr_store_close(s);
}

/* While a core's completions are held, they use up its queue quota. */
static void test_held_use_quota(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store_req load, extra, other;
	struct rr_store_stats st;
	struct io_uring core0;

	o.queue_capacity = 8;
	struct rr_store *s = t_open(&o);

	reset_seen();
	ring_disabled(&core0);
	CHECK_EQ(t_room_load(s, "q", &load), 0);
	for (unsigned i = 0; i < 8; i++)
		submit_append(s, i, i + 1, "q", 0, core0.ring_fd);
	CHECK(wait_held(s, 8, 1));
	rr_store_stats_get(s, &st);
	CHECK_EQ(st.queued, 0);
	/* the queue is empty, but core 0's share is used by what it has not
	 * been given yet */
	t_req_init(&extra, RR_STORE_ROOM_LOAD, "q");
	extra.reply_ring_fd = core0.ring_fd;
	CHECK_EQ(rr_store_submit(s, &extra), -EAGAIN);
	/* nor while the worker retries: the share stays used through every
	 * attempt, not only between them (submitting in a tight loop across
	 * ten refused retries finds the window if there is one) */
	rr_store_stats_get(s, &st);
	uint64_t until = st.post_failures + 10;
	unsigned accepted = 0;

	while (st.post_failures < until && accepted < N_MAX - 8) {
		t_req_init(&reqs[8 + accepted], RR_STORE_ROOM_LOAD, "q");
		reqs[8 + accepted].reply_ring_fd = core0.ring_fd;
		if (rr_store_submit(s, &reqs[8 + accepted]) == 0)
			accepted++;
		rr_store_stats_get(s, &st);
	}
	CHECK_EQ(accepted, 0);
	/* core 1 is not affected */
	t_req_init(&other, RR_STORE_ROOM_LOAD, "q");
	other.core = 1;
	CHECK_EQ(t_run(s, &other), 0);

	CHECK_EQ(ring_enable(&core0), 0);
	CHECK_EQ(t_reap_on(&core0, 8 + accepted, 50), 8 + accepted);
	check_once_in_order(0, 8);
	/* the share is free again once the worker has seen the posts succeed
	 * (it stops counting them then, after the core may have reaped them) */
	wait_posts_counted(s);
	t_req_init(&other, RR_STORE_ROOM_LOAD, "q");
	CHECK_EQ(t_run(s, &other), 0);
	rr_store_close(s);
	io_uring_queue_exit(&core0);
}

/* A two-entry CQ that nobody reaps during the burst: nothing is refused,
 * nothing lost (the kernel keeps what does not fit on its overflow list). */
static void test_tiny_cq(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s = t_open(&o);
	struct rr_store_req load;
	struct rr_store_stats st;
	struct io_uring tiny;
	struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE, .cq_entries = 2};

	reset_seen();
	CHECK_EQ(io_uring_queue_init_params(2, &tiny, &p), 0);
	CHECK_EQ(t_room_load(s, "tiny", &load), 0);
	for (unsigned i = 0; i < 300; i++)
		submit_append(s, i, i + 1, "tiny", 0, tiny.ring_fd);
	struct rr_store_req fl;

	/* a FLUSH on t_ring completes after all 300 were posted */
	t_req_init(&fl, RR_STORE_FLUSH, NULL);
	fl.core = 1;
	CHECK_EQ(t_run(s, &fl), 0);
	CHECK_EQ(n_order, 0);
	CHECK_EQ(t_reap_on(&tiny, 300, 50), 300);
	check_once_in_order(0, 300);
	rr_store_stats_get(s, &st);
	CHECK_EQ(st.post_failures, 0);
	CHECK_EQ(st.post_pending, 0);
	rr_store_close(s);
	io_uring_queue_exit(&tiny);
}

struct enabler {
	struct io_uring *ring;
	unsigned delay_ms;
};

static void *enable_later(void *arg)
{
	struct enabler *e = arg;

	usleep(e->delay_ms * 1000);
	if (ring_enable(e->ring) < 0)
		fprintf(stderr, "enable: %s\n", strerror(errno));
	return NULL;
}

/* Close waits for a ring that starts taking posts again. */
static void test_close_retries(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s = t_open(&o);
	struct rr_store_req load;
	struct io_uring core0;
	pthread_t t;
	struct enabler e = {.ring = &core0, .delay_ms = 300};

	reset_seen();
	ring_disabled(&core0);
	CHECK_EQ(t_room_load(s, "cr", &load), 0);
	for (unsigned i = 0; i < 10; i++)
		submit_append(s, i, i + 1, "cr", 0, core0.ring_fd);
	CHECK(wait_held(s, 10, 1));
	CHECK_EQ(pthread_create(&t, NULL, enable_later, &e), 0);
	uint64_t t0 = mono_ms();

	rr_store_close(s);
	uint64_t took = elapsed_ms(t0);

	pthread_join(t, NULL);
	printf("close with a ring refusing for 300 ms: %llu ms\n", (unsigned long long)took);
	/* it waited for the ring (the enabler's 300 ms at least); how long
	 * beyond is the machine's, not checked */
	CHECK(took >= 250);
	CHECK_EQ(t_reap_on(&core0, 10, 50), 10);
	check_once_in_order(0, 10);
	for (unsigned i = 0; i < 10; i++)
		CHECK_EQ(reqs[i].res, 0);
	io_uring_queue_exit(&core0);
}

/* Close gives up on a ring that is gone (at once) or keeps refusing (after
 * its bounded wait): results freed, no callback. */
static void test_close_gives_up(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s = t_open(&o);
	struct rr_store_req load;
	struct rlimit rl;
	struct io_uring core0;

	reset_seen();
	CHECK_EQ(t_room_load(s, "gone", &load), 0);
	CHECK_EQ(t_append(s, "gone", 1, "G-1"), 0);
	/* an fd above the limit can never be open: the ring is gone (-EBADF) */
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
	int gone_fd = (int)(rl.rlim_cur < 1000000 ? rl.rlim_cur + 10 : 1000000);

	for (unsigned i = 0; i < 5; i++)
		submit_read(s, i, "gone", gone_fd);
	CHECK(wait_held(s, 5, 1));
	uint64_t t0 = mono_ms();

	rr_store_close(s);
	uint64_t took = elapsed_ms(t0);

	printf("close with a gone ring: %llu ms (no bounded wait for it)\n",
	       (unsigned long long)took);
	for (unsigned i = 0; i < 5; i++) {
		CHECK_EQ(seen[i], 0);
		CHECK(reqs[i].out._buf == NULL); /* released, not leaked */
	}

	/* a ring that refuses and never recovers: close waits its bound */
	s = t_open(&o);
	ring_disabled(&core0);
	for (unsigned i = 0; i < 5; i++)
		submit_read(s, i, "gone", core0.ring_fd);
	CHECK(wait_held(s, 5, 1));
	t0 = mono_ms();
	rr_store_close(s);
	took = elapsed_ms(t0);
	printf("close with a ring refusing for good: %llu ms\n", (unsigned long long)took);
	CHECK(took >= 1500); /* it waited its bound first */
	for (unsigned i = 0; i < 5; i++) {
		CHECK_EQ(seen[i], 0);
		CHECK(reqs[i].out._buf == NULL);
	}
	io_uring_queue_exit(&core0);
}

int main(void)
{
	t_ring_init();

#define RUN(fn) t_in_tmpdir(fn, "store-post")

	RUN(test_refused_ring);
	RUN(test_injected_refusal);
	RUN(test_held_use_quota);
	RUN(test_tiny_cq);
	RUN(test_close_retries);
	RUN(test_close_gives_up);
	CHECK_EQ(t_bad_cqes, 0);
	io_uring_queue_exit(&t_ring);
	return check_done();
}
