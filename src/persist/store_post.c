/*
 * Completions back to the cores: each finished request is posted to the ring
 * of the core that submitted it with IORING_OP_MSG_RING, from the worker's
 * own small ring. Nothing is lost between threads: a post the kernel refuses
 * is kept and retried, never only logged.
 *
 * DESIGN: every core has a FIFO post list (struct post_list, linked through
 * req->_next). A drain appends its finished requests in order, then each
 * list is posted as a chain of linked SQEs (IOSQE_IO_LINK), so when the
 * kernel refuses one post (the target ring is disabled, out of memory for
 * its overflow list, its task is exiting, the fd is not a ring) the ones
 * behind it are cancelled rather than overtaking it. The refused request and
 * everything behind it stay on the list and the core is tried again after a
 * back-off (POST_BACKOFF_MIN_MS, doubling to POST_BACKOFF_MAX_MS); new
 * completions for that core queue behind them. A core therefore sees its
 * completions exactly once and in the order the worker finished them.
 *
 * While held, a core's requests count against its queue quota (core_len),
 * so a core whose ring takes nothing gets -EAGAIN from rr_store_submit
 * instead of growing the list without bound. They stay counted while a
 * retry is in flight and stop counting only once their post has succeeded
 * (uncharging the list before the attempt let the core submit a quota's
 * worth more at every refused retry, so the list grew after all). A core
 * that reaps one of them and submits at once, while at its quota, may
 * therefore still be refused for the moment it takes the worker to reap
 * its own CQE: the bound holds at every instant, at the price of that.
 *
 * A successful post's CQE is reaped too (no IOSQE_CQE_SKIP_SUCCESS): the
 * worker then knows the outcome of every post before it touches the list
 * again, even one the kernel finished asynchronously. A request is never
 * touched once its post succeeded: from then on it belongs to its core.
 *
 * Closing: the worker keeps retrying for POST_CLOSE_WAIT_MS after the queue
 * is empty (a ring gone for good, -EBADF or -EOWNERDEAD, is given up at
 * once). What is still held then is released: its results are freed, its
 * done() never runs, and it is counted in post_abandoned and logged.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/time.h"
#include "persist/store_int.h"

int rr_store_post_init(struct rr_store *s)
{
	int ret = io_uring_queue_init(POST_RING_ENTRIES, &s->post, 0);

	if (ret < 0)
		return ret;
	s->posts = calloc(s->opts.cores, sizeof(*s->posts));
	if (s->posts == NULL) {
		io_uring_queue_exit(&s->post);
		return -ENOMEM;
	}
	s->post_next_ms = UINT64_MAX;
	return 0;
}

void rr_store_post_free(struct rr_store *s)
{
	if (s->posts == NULL)
		return;
	io_uring_queue_exit(&s->post);
	free(s->posts);
	s->posts = NULL;
}

void rr_store_inject_post_fault(struct rr_store *s, int err, uint32_t skip, uint32_t count)
{
	assert(err < 0);
	pthread_mutex_lock(&s->mu);
	s->post_fault_err = err;
	s->post_fault_skip = skip;
	__atomic_store_n(&s->post_fault_count, count, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&s->mu);
}

/* The injected refusal for this post attempt, or 0. The unlocked look
 * keeps the lock off the path when no fault is armed. */
static int take_post_fault(struct rr_store *s)
{
	int err = 0;

	if (__atomic_load_n(&s->post_fault_count, __ATOMIC_RELAXED) == 0)
		return 0;
	pthread_mutex_lock(&s->mu);
	if (s->post_fault_count > 0) {
		if (s->post_fault_skip > 0) {
			s->post_fault_skip--;
		} else {
			__atomic_store_n(&s->post_fault_count, s->post_fault_count - 1,
					 __ATOMIC_RELAXED);
			err = s->post_fault_err;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return err;
}

/* Count the list's requests against the core's quota (all of them: a held
 * request is still the core's outstanding work). The charged ones are the
 * oldest, at the head: requests added since the last flush are not. */
static void charge(struct rr_store *s, uint32_t core, struct post_list *pl)
{
	assert(pl->len >= pl->charged);
	if (pl->len == pl->charged)
		return;
	pthread_mutex_lock(&s->mu);
	s->core_len[core] += pl->len - pl->charged;
	pthread_mutex_unlock(&s->mu);
	pl->charged = pl->len;
}

/* Stop counting up to n of the list's charged requests: the n oldest left
 * the list (delivered, or released at close). */
static void uncharge(struct rr_store *s, uint32_t core, struct post_list *pl, uint32_t n)
{
	if (n > pl->charged)
		n = pl->charged;
	if (n == 0)
		return;
	pthread_mutex_lock(&s->mu);
	assert(s->core_len[core] >= n);
	s->core_len[core] -= n;
	pthread_mutex_unlock(&s->mu);
	pl->charged -= n;
}

void rr_store_post_add(struct rr_store *s, struct rr_store_req **reqs, uint32_t n)
{
	/* counted first: once posted, a core may look at the stats */
	STAT_ADD(s, completed, n);
	for (uint32_t i = 0; i < n; i++) {
		struct rr_store_req *req = reqs[i];

		if (req->reply_ring_fd < 0) {
			req->done(req);
			continue;
		}
		assert(req->core < s->opts.cores);
		struct post_list *pl = &s->posts[req->core];

		req->_next = NULL;
		if (pl->tail != NULL)
			pl->tail->_next = req;
		else
			pl->head = req;
		pl->tail = req;
		pl->len++;
		s->post_pending++;
	}
}

/* Submit the k prepared posts and collect every outcome into res[]. The
 * SQEs are in the ring once prepared, so a failing io_uring_enter (the
 * worker's own ring short of memory) is waited out, never abandoned:
 * giving up here could post a request twice. */
static void submit_chunk(struct rr_store *s, uint32_t k, int *res)
{
	uint32_t got = 0;
	bool logged = false;

	while (got < k) {
		int ret = io_uring_submit_and_wait(&s->post, 1);

		if (ret < 0 && ret != -EINTR) {
			if (!logged)
				rr_store_log("submitting completions: %s (retrying)",
					     strerror(-ret));
			logged = true;
			usleep(1000);
		}
		struct io_uring_cqe *cqe;

		while (got < k && io_uring_peek_cqe(&s->post, &cqe) == 0) {
			uint64_t i = cqe->user_data;

			assert(i < k);
			res[i] = cqe->res;
			got++;
			io_uring_cqe_seen(&s->post, cqe);
		}
	}
}

/*
 * Post up to POST_RING_ENTRIES requests from the head of a list, as one
 * chain. Delivered requests leave the list (*posted counts them); the first
 * refused one and all behind it stay, in order. Returns 0 or the refusal.
 */
static int post_chunk(struct rr_store *s, uint32_t core, struct post_list *pl, uint32_t *posted)
{
	struct rr_store_req *slot[POST_RING_ENTRIES];
	int res[POST_RING_ENTRIES];
	struct io_uring_sqe *prev = NULL;
	struct rr_store_req *rest = pl->head;
	uint32_t k = 0;
	int err = 0;

	assert(rest != NULL && pl->len > 0);
	while (rest != NULL && k < POST_RING_ENTRIES) {
		err = take_post_fault(s);
		if (err < 0) {
			pl->ring_fd = rest->reply_ring_fd;
			break;
		}
		struct io_uring_sqe *sqe = io_uring_get_sqe(&s->post);

		assert(sqe != NULL); /* k < the ring's size; every chunk is reaped */
		io_uring_prep_msg_ring(sqe, rest->reply_ring_fd, 0, rr_ud_ptr(RR_UD_STORE, rest),
				       0);
		io_uring_sqe_set_data64(sqe, k);
		if (prev != NULL)
			prev->flags |= IOSQE_IO_LINK;
		prev = sqe;
		slot[k++] = rest;
		rest = rest->_next;
	}
	for (uint32_t i = 0; i < k; i++)
		RR_HB_RELEASE(slot[i]); /* our last touch unless refused */
	if (k > 0)
		submit_chunk(s, k, res);

	/* rebuild the head: refused and cancelled posts, then the rest */
	struct rr_store_req *head = NULL, **link = &head, *last = NULL;
	uint32_t delivered = 0;

	for (uint32_t i = 0; i < k; i++) {
		if (res[i] >= 0) {
			delivered++;
			continue;
		}
		if (err == 0 && res[i] != -ECANCELED) {
			err = res[i];
			pl->ring_fd = slot[i]->reply_ring_fd;
		}
		*link = last = slot[i];
		link = &slot[i]->_next;
	}
	*link = rest;
	pl->head = head;
	if (rest == NULL)
		pl->tail = last;
	/* the delivered were the oldest: the charged ones go first */
	uncharge(s, core, pl, delivered);
	pl->len -= delivered;
	s->post_pending -= delivered;
	*posted += delivered;
	if (err == 0 && delivered < k)
		err = -ECANCELED; /* cancelled without a refusal: not expected, retry */
	return err;
}

/* One attempt at a core's list: everything, or up to the first refusal. */
static void post_list(struct rr_store *s, uint32_t core, struct post_list *pl, uint64_t now)
{
	bool late = pl->backoff_ms > 0;
	uint32_t posted = 0;
	int err = 0;

	while (pl->len > 0 && err == 0)
		err = post_chunk(s, core, pl, &posted);
	if (late)
		STAT_ADD(s, post_retries, posted);
	if (err == 0) {
		if (late)
			rr_store_log("completions reach core %u again (after %llu refused posts)",
				     core, (unsigned long long)pl->refusals);
		pl->backoff_ms = 0;
		pl->retry_at_ms = 0;
		pl->refusals = 0;
		return;
	}
	STAT_ADD(s, post_failures, 1);
	if (pl->refusals++ == 0)
		rr_store_log("posting a completion to core %u (ring fd %d) failed: %s; holding "
			     "%u completions and retrying",
			     core, pl->ring_fd, strerror(-err), pl->len);
	pl->err = err;
	pl->backoff_ms = pl->backoff_ms ? 2 * pl->backoff_ms : POST_BACKOFF_MIN_MS;
	if (pl->backoff_ms > POST_BACKOFF_MAX_MS)
		pl->backoff_ms = POST_BACKOFF_MAX_MS;
	pl->retry_at_ms = now + pl->backoff_ms;
}

/* Closing: release a list nobody will reap (see the DESIGN note). */
static void abandon_list(struct rr_store *s, uint32_t core, struct post_list *pl)
{
	struct rr_store_req *req, *next;

	uncharge(s, core, pl, pl->charged);
	rr_store_log("closing: %u completions for core %u were never delivered (ring fd %d: %s); "
		     "their results are freed and their callbacks will not run",
		     pl->len, core, pl->ring_fd, strerror(-pl->err));
	for (req = pl->head; req != NULL; req = next) {
		next = req->_next;
		req->_next = NULL;
		rr_store_req_release(req);
	}
	STAT_ADD(s, post_abandoned, pl->len);
	s->post_pending -= pl->len;
	*pl = (struct post_list){0};
}

static bool gone_for_good(int err)
{
	return err == -EBADF || err == -EOWNERDEAD;
}

void rr_store_post_flush(struct rr_store *s, bool closing)
{
	uint64_t now = rr_now_ms(), next = UINT64_MAX;

	if (s->post_pending == 0)
		return;
	for (uint32_t c = 0; c < s->opts.cores; c++) {
		struct post_list *pl = &s->posts[c];

		if (pl->len > 0 && now >= pl->retry_at_ms)
			post_list(s, c, pl, now);
		if (pl->len > 0 && closing && gone_for_good(pl->err))
			abandon_list(s, c, pl);
		if (pl->len == 0)
			continue;
		charge(s, c, pl);
		if (pl->retry_at_ms < next)
			next = pl->retry_at_ms;
	}
	s->post_next_ms = next;
	__atomic_store_n(&s->st.post_pending, s->post_pending, __ATOMIC_RELAXED);
}

void rr_store_post_abandon(struct rr_store *s)
{
	for (uint32_t c = 0; c < s->opts.cores; c++) {
		if (s->posts[c].len > 0)
			abandon_list(s, c, &s->posts[c]);
	}
	s->post_next_ms = UINT64_MAX;
	__atomic_store_n(&s->st.post_pending, s->post_pending, __ATOMIC_RELAXED);
}
