/*
 * The storage worker's queue and thread: rr_store_submit() from any core, the
 * worker's loop, and the order of one drain's phases. Interface and ordering
 * rules in store.h.
 *
 * DESIGN: one worker thread, one bounded FIFO of request pointers guarded by
 * a mutex (cores hold it for a few instructions; a full queue is -EAGAIN, not
 * a wait), with a per-core quota so one busy core cannot take every slot from
 * the others. The worker takes up to RR_STORE_BATCH_MAX requests per drain and
 * runs them in phases: every write of the drain goes into one WriteBatch
 * written once (group commit, store_commit.c), then the room loads and the
 * reads (store_read.c), then retention (store_retain.c), then the barrier,
 * and finally each request goes back to its core (store_post.c). Between
 * drains the worker sleeps until the next request, the next retention sweep,
 * or the next retry of a completion a core's ring refused, whichever is
 * first.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/time.h"
#include "persist/store_int.h"

/* ---- submission ---- */

static bool op_has_room(enum rr_store_op op)
{
	return op != RR_STORE_SESSION_PUT && op != RR_STORE_SESSION_GET &&
	       op != RR_STORE_SESSION_DEL && op != RR_STORE_FLUSH;
}

static int validate(const struct rr_store_req *req)
{
	if (req->op < RR_STORE_APPEND || req->op > RR_STORE_FLUSH)
		return -EINVAL;
	if (op_has_room(req->op) &&
	    (req->room == NULL || req->room_len == 0 || req->room_len > RR_STORE_ROOM_MAX))
		return -EINVAL;
	if (req->len > RR_STORE_VALUE_MAX || (req->len > 0 && req->data == NULL))
		return -EINVAL;
	if (req->key_len > RR_STORE_KEY_MAX || (req->key_len > 0 && req->key == NULL) ||
	    req->after_len > RR_STORE_KEY_MAX || (req->after_len > 0 && req->after == NULL))
		return -EINVAL;
	switch (req->op) {
	case RR_STORE_APPEND:
		return req->id == 0 ? -EINVAL : 0;
	case RR_STORE_SESSION_PUT:
		if (req->session == NULL || rr_keys_session_size(req->session) > RR_STORE_VALUE_MAX)
			return -EINVAL;
		/* fallthrough */
	case RR_STORE_SESSION_GET:
	case RR_STORE_SESSION_DEL:
	case RR_STORE_KV_GET:
	case RR_STORE_KV_PUT:
	case RR_STORE_KV_DEL:
		return req->key_len == 0 ? -EINVAL : 0;
	default:
		return 0;
	}
}

int rr_store_submit(struct rr_store *s, struct rr_store_req *req)
{
	assert(s != NULL && req != NULL);
	assert(req->done != NULL && req->core < s->opts.cores);

	int ret = validate(req);

	if (ret < 0)
		return ret;
	req->res = 0;
	memset(&req->out, 0, sizeof(req->out));
	req->_next = NULL;

	pthread_mutex_lock(&s->mu);
	if (s->stopping) {
		ret = -ESHUTDOWN;
	} else if (s->core_len[req->core] >= s->opts.queue_capacity) {
		ret = -EAGAIN;
	} else {
		s->q[(s->q_head + s->q_len) % s->q_cap] = req;
		s->q_len++;
		s->core_len[req->core]++;
		/* only an idle worker needs the wake-up; a busy one finds it */
		if (s->q_len == 1)
			pthread_cond_signal(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	if (ret == -EAGAIN)
		STAT_ADD(s, rejected, 1);
	else if (ret == 0)
		STAT_ADD(s, submitted, 1);
	return ret;
}

void rr_store_req_release(struct rr_store_req *req)
{
	free(req->out._buf);
	memset(&req->out, 0, sizeof(req->out));
}

/* ---- observability and test hooks ---- */

void rr_store_stats_get(struct rr_store *s, struct rr_store_stats *st)
{
#define LOAD(field) st->field = __atomic_load_n(&s->st.field, __ATOMIC_RELAXED)
	LOAD(submitted);
	LOAD(rejected);
	LOAD(completed);
	LOAD(batches);
	LOAD(batch_writes);
	LOAD(batch_failures);
	LOAD(reads);
	LOAD(trimmed);
	LOAD(post_failures);
	LOAD(post_retries);
	LOAD(post_abandoned);
	LOAD(post_pending);
#undef LOAD
	pthread_mutex_lock(&s->mu);
	st->queued = s->q_len;
	pthread_mutex_unlock(&s->mu);
}

void rr_store_inject_fault(struct rr_store *s, int err, uint32_t count)
{
	assert(err < 0);
	pthread_mutex_lock(&s->mu);
	s->fault_err = err;
	s->fault_count = count;
	pthread_mutex_unlock(&s->mu);
}

void rr_store_pause(struct rr_store *s, bool paused)
{
	pthread_mutex_lock(&s->mu);
	s->paused = paused;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* ---- one drain ---- */

static void run_drain(struct rr_store *s, struct rr_store_req **reqs, uint32_t n)
{
	int down = rr_store_reopen_if_needed(s);

	if (down < 0) {
		/* writes fail fast until the disk is usable again */
		for (uint32_t i = 0; i < n; i++)
			if (rr_store_op_is_write(reqs[i]->op) || reqs[i]->op == RR_STORE_TRIM ||
			    reqs[i]->op == RR_STORE_FLUSH)
				reqs[i]->res = down;
		if (!s->failing)
			rr_store_log("store is not writable: %s", strerror(-down));
		s->failing = true;
	} else {
		rr_store_write_phase(s, reqs, n);
	}
	if (s->db == NULL) {
		/* a reopen failed: nothing to read from either */
		for (uint32_t i = 0; i < n; i++)
			if (reqs[i]->res == 0)
				reqs[i]->res = -EIO;
	} else {
		rr_store_room_load_phase(s, reqs, n);
		rr_store_read_phase(s, reqs, n);
		rr_store_trim_phase(s, reqs, n);
		rr_store_flush_phase(s, reqs, n);
	}
	rr_store_post_add(s, reqs, n);
}

/* Take the next drain from the queue (mu held): bounded by count and by
 * bytes, since one WriteBatch holds copies of every payload of the drain. */
static uint32_t take_drain(struct rr_store *s)
{
	uint32_t n = 0;
	uint64_t bytes = 0;

	while (s->q_len > 0 && n < RR_STORE_BATCH_MAX && bytes < RR_STORE_BATCH_BYTES_MAX) {
		struct rr_store_req *req = s->q[s->q_head];

		bytes += (uint64_t)req->len + req->key_len;
		s->q_head = (s->q_head + 1) % s->q_cap;
		s->q_len--;
		s->core_len[req->core]--;
		s->drain[n++] = req;
	}
	return n;
}

/* ---- the worker ---- */

enum wake {
	WAKE_WORK,  /* requests queued, or a post retry is due */
	WAKE_SWEEP, /* the periodic retention sweep is due */
	WAKE_EXIT,  /* closing, and nothing is left to do or wait for */
};

static void wait_until(struct rr_store *s, uint64_t until_ms)
{
	if (until_ms == UINT64_MAX) {
		pthread_cond_wait(&s->cv, &s->mu);
		return;
	}
	struct timespec dl = {
	    .tv_sec = (time_t)(until_ms / 1000),
	    .tv_nsec = (long)(until_ms % 1000) * 1000000,
	};

	pthread_cond_timedwait(&s->cv, &s->mu, &dl);
}

/* With mu held: sleep until there is something to do. A paused worker
 * takes nothing from the queue and does not sweep, but still retries
 * completions it has already finished. */
static enum wake worker_wait(struct rr_store *s)
{
	for (;;) {
		uint64_t now = rr_now_ms(), until = UINT64_MAX;
		bool posts = s->post_pending > 0;
		bool post_due = posts && now >= s->post_next_ms;

		if (s->stopping) {
			if (s->q_len > 0 || post_due)
				return WAKE_WORK;
			if (!posts)
				return WAKE_EXIT;
			if (s->close_by_ms == 0)
				s->close_by_ms = now + POST_CLOSE_WAIT_MS;
			if (now >= s->close_by_ms)
				return WAKE_EXIT;
			until = s->close_by_ms;
		} else {
			if ((s->q_len > 0 && !s->paused) || post_due)
				return WAKE_WORK;
			if (!s->paused && now >= s->next_sweep_ms)
				return WAKE_SWEEP;
			if (!s->paused)
				until = s->next_sweep_ms;
		}
		if (posts && s->post_next_ms < until)
			until = s->post_next_ms;
		wait_until(s, until);
	}
}

void *rr_store_worker_main(void *arg)
{
	struct rr_store *s = arg;

	pthread_setname_np(pthread_self(), "rr-store");
	pthread_mutex_lock(&s->mu);
	for (;;) {
		enum wake why = worker_wait(s);

		if (why == WAKE_EXIT)
			break;
		bool closing = s->stopping, paused = s->paused;
		uint32_t n = paused ? 0 : take_drain(s);

		pthread_mutex_unlock(&s->mu);
		if (n > 0)
			run_drain(s, s->drain, n);
		rr_store_post_flush(s, closing);
		if (!paused && (why == WAKE_SWEEP || rr_now_ms() >= s->next_sweep_ms)) {
			bool done = s->db == NULL || s->need_reopen || rr_store_sweep_step(s);

			/* an unfinished sweep continues right after the next drain */
			s->next_sweep_ms = rr_now_ms() + (done ? s->opts.trim_interval_ms : 0);
		}
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	/* closing: what no ring would take within POST_CLOSE_WAIT_MS */
	rr_store_post_abandon(s);
	return NULL;
}
