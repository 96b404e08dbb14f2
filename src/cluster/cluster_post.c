/*
 * Completions and messages back to the cores: each is posted to the ring of
 * its core with IORING_OP_MSG_RING from the cluster thread's own small ring.
 * Nothing is lost between threads: a post the kernel refuses is kept and
 * retried, never only logged (the rule and the reasons are store_post.c's;
 * this is the same mechanism over a different item).
 *
 * DESIGN: every core has a FIFO of posts (struct cl_postq, a ring buffer of
 * user_data and ring fd). A turn of the cluster thread appends to them, then
 * each is posted as a chain of linked SQEs (IOSQE_IO_LINK), so when the
 * kernel refuses one (the target ring disabled, out of memory for its
 * overflow list, its task exiting) the posts behind it are cancelled rather
 * than overtaking it. The refused one and everything behind it stay and the
 * core is tried again after a back-off; new posts for that core queue behind
 * them. A core therefore sees its completions and messages exactly once and
 * in the order the cluster thread produced them.
 *
 * A held request still counts against its core's quota (core_len) until its
 * post succeeds, and a held message against inbox_bytes, so a core whose
 * ring takes nothing gets -EAGAIN and drops instead of unbounded memory.
 * A successful post's CQE is reaped too, so the thread knows every outcome
 * before it touches the list again; an item is never touched once its post
 * succeeded: from then on it belongs to its core.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster_int.h"
#include "core/log.h"
#include "core/time.h"

int rr_cl_post_init(struct rr_cluster *cl)
{
	int ret = io_uring_queue_init(CL_POST_RING_ENTRIES, &cl->post, 0);

	if (ret < 0)
		return ret;
	cl->postq = calloc(cl->opts.cores, sizeof(*cl->postq));
	if (cl->postq == NULL) {
		io_uring_queue_exit(&cl->post);
		return -ENOMEM;
	}
	cl->post_next_ms = UINT64_MAX;
	return 0;
}

void rr_cl_post_free(struct rr_cluster *cl)
{
	if (cl->postq == NULL)
		return;
	for (uint32_t c = 0; c < cl->opts.cores; c++)
		free(cl->postq[c].v);
	free(cl->postq);
	cl->postq = NULL;
	io_uring_queue_exit(&cl->post);
}

void rr_cluster_inject_post_fault(struct rr_cluster *cl, int err, uint32_t count)
{
	assert(err < 0);
	pthread_mutex_lock(&cl->mu);
	cl->post_fault_err = err;
	__atomic_store_n(&cl->post_fault_count, count, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&cl->mu);
}

/* The injected refusal for this attempt, or 0 (lock only when armed). */
static int take_post_fault(struct rr_cluster *cl)
{
	int err = 0;

	if (__atomic_load_n(&cl->post_fault_count, __ATOMIC_RELAXED) == 0)
		return 0;
	pthread_mutex_lock(&cl->mu);
	if (cl->post_fault_count > 0) {
		__atomic_store_n(&cl->post_fault_count, cl->post_fault_count - 1,
				 __ATOMIC_RELAXED);
		err = cl->post_fault_err;
	}
	pthread_mutex_unlock(&cl->mu);
	return err;
}

bool rr_cl_post_add(struct rr_cluster *cl, uint32_t core, uint64_t ud, int ring_fd,
		    uint32_t bytes)
{
	assert(core < cl->opts.cores);
	struct cl_postq *pq = &cl->postq[core];

	if (pq->len == pq->cap) {
		uint32_t cap = pq->cap ? 2 * pq->cap : 64;
		struct cl_post *v = malloc(cap * sizeof(*v));

		if (v == NULL)
			return false;
		for (uint32_t i = 0; i < pq->len; i++)
			v[i] = pq->v[(pq->head + i) % pq->cap];
		free(pq->v);
		pq->v = v;
		pq->cap = cap;
		pq->head = 0;
	}
	pq->v[(pq->head + pq->len) % pq->cap] = (struct cl_post){ud, ring_fd, bytes};
	pq->len++;
	cl->post_pending++;
	return true;
}

/* Submit k prepared posts and collect every outcome into res[]. Once
 * prepared they are in the ring: a failing io_uring_enter is waited out,
 * never abandoned (giving up could post twice). */
static void submit_chunk(struct rr_cluster *cl, uint32_t k, int *res)
{
	uint32_t got = 0;
	bool logged = false;

	while (got < k) {
		int ret = io_uring_submit_and_wait(&cl->post, 1);

		if (ret < 0 && ret != -EINTR) {
			if (!logged)
				rr_warn("submitting posts: %s (retrying)", strerror(-ret));
			logged = true;
			usleep(1000);
		}
		struct io_uring_cqe *cqe;

		while (got < k && io_uring_peek_cqe(&cl->post, &cqe) == 0) {
			uint64_t i = cqe->user_data;

			assert(i < k);
			res[i] = cqe->res;
			got++;
			io_uring_cqe_seen(&cl->post, cqe);
		}
	}
}

/* What a delivered post gave back: quota for a request, inbox room for a
 * message (one lock per chunk). */
static void release_posted(struct rr_cluster *cl, uint32_t core, uint32_t reqs, uint64_t bytes)
{
	if (reqs == 0 && bytes == 0)
		return;
	pthread_mutex_lock(&cl->mu);
	assert(cl->core_len[core] >= reqs && cl->inbox_bytes >= bytes);
	cl->core_len[core] -= reqs;
	cl->inbox_bytes -= bytes;
	pthread_mutex_unlock(&cl->mu);
}

/*
 * Post up to CL_POST_RING_ENTRIES items from the head of a core's list as
 * one chain. Delivered items leave the list; the first refused one and all
 * behind it stay, in order. Returns 0 or the refusal.
 */
static int post_chunk(struct rr_cluster *cl, uint32_t core, struct cl_postq *pq,
		      uint32_t *posted)
{
	int res[CL_POST_RING_ENTRIES];
	struct io_uring_sqe *prev = NULL;
	uint32_t k = 0;
	int err = 0;

	assert(pq->len > 0);
	while (k < pq->len && k < CL_POST_RING_ENTRIES) {
		err = take_post_fault(cl);
		if (err < 0)
			break;
		struct cl_post *p = &pq->v[(pq->head + k) % pq->cap];
		struct io_uring_sqe *sqe = io_uring_get_sqe(&cl->post);

		assert(sqe != NULL); /* k < the ring's size; every chunk is reaped */
		io_uring_prep_msg_ring(sqe, p->ring_fd, 0, p->ud, 0);
		io_uring_sqe_set_data64(sqe, k);
		if (prev != NULL)
			prev->flags |= IOSQE_IO_LINK;
		prev = sqe;
		RR_HB_RELEASE(rr_ud_to_ptr(p->ud)); /* our last touch unless refused */
		k++;
	}
	if (k > 0)
		submit_chunk(cl, k, res);

	/* the delivered ones form a prefix: a refusal cancels what follows */
	uint32_t delivered = 0, reqs = 0;
	uint64_t bytes = 0;

	while (delivered < k && res[delivered] >= 0) {
		struct cl_post *p = &pq->v[(pq->head + delivered) % pq->cap];

		if (rr_ud_kind(p->ud) == RR_UD_CLUSTER)
			reqs++;
		bytes += p->bytes;
		delivered++;
	}
	if (delivered < k && err == 0)
		err = res[delivered] == -ECANCELED ? -ECANCELED : res[delivered];
	pq->head = pq->cap ? (pq->head + delivered) % pq->cap : 0;
	pq->len -= delivered;
	cl->post_pending -= delivered;
	*posted += delivered;
	release_posted(cl, core, reqs, bytes);
	return err;
}

static void post_list(struct rr_cluster *cl, uint32_t core, struct cl_postq *pq, uint64_t now)
{
	bool late = pq->backoff_ms > 0;
	uint32_t posted = 0;
	int err = 0;

	while (pq->len > 0 && err == 0)
		err = post_chunk(cl, core, pq, &posted);
	if (late)
		CL_STAT_ADD(cl, post_retries, posted);
	if (err == 0) {
		if (late)
			rr_info("posts reach core %u again (after %llu refusals)", core,
				(unsigned long long)pq->refusals);
		pq->backoff_ms = 0;
		pq->retry_at_ms = 0;
		pq->refusals = 0;
		return;
	}
	CL_STAT_ADD(cl, post_failures, 1);
	if (pq->refusals++ == 0)
		rr_warn("posting to core %u failed: %s; holding %u posts and retrying",
			core, strerror(-err), pq->len);
	pq->err = err;
	pq->backoff_ms = pq->backoff_ms ? 2 * pq->backoff_ms : CL_POST_BACKOFF_MIN_MS;
	if (pq->backoff_ms > CL_POST_BACKOFF_MAX_MS)
		pq->backoff_ms = CL_POST_BACKOFF_MAX_MS;
	pq->retry_at_ms = now + pq->backoff_ms;
}

/* Drop a list nobody will reap: a request's done() never runs (its memory
 * stays the submitter's), a message is freed. */
static void abandon_list(struct rr_cluster *cl, uint32_t core, struct cl_postq *pq)
{
	uint32_t reqs = 0;
	uint64_t bytes = 0;

	rr_warn("closing: %u posts for core %u were never delivered (%s)", pq->len,
		core, strerror(-pq->err));
	for (uint32_t i = 0; i < pq->len; i++) {
		struct cl_post *p = &pq->v[(pq->head + i) % pq->cap];

		if (rr_ud_kind(p->ud) == RR_UD_CLUSTER_MSG) {
			struct rr_cluster_msg *msg = rr_ud_to_ptr(p->ud);

			natsMsg_Destroy(msg->_nmsg);
			free(msg);
		} else {
			reqs++;
		}
		bytes += p->bytes;
	}
	release_posted(cl, core, reqs, bytes);
	CL_STAT_ADD(cl, post_abandoned, pq->len);
	cl->post_pending -= pq->len;
	pq->len = 0;
	pq->head = 0;
	pq->backoff_ms = 0;
	pq->retry_at_ms = 0;
}

static bool gone_for_good(int err)
{
	return err == -EBADF || err == -EOWNERDEAD;
}

void rr_cl_post_flush(struct rr_cluster *cl, bool closing)
{
	uint64_t now = rr_now_ms(), next = UINT64_MAX;

	if (cl->post_pending == 0) {
		cl->post_next_ms = UINT64_MAX;
		return;
	}
	for (uint32_t c = 0; c < cl->opts.cores; c++) {
		struct cl_postq *pq = &cl->postq[c];

		if (pq->len > 0 && now >= pq->retry_at_ms)
			post_list(cl, c, pq, now);
		if (pq->len > 0 && closing && gone_for_good(pq->err))
			abandon_list(cl, c, pq);
		if (pq->len > 0 && pq->retry_at_ms < next)
			next = pq->retry_at_ms;
	}
	cl->post_next_ms = next;
}

void rr_cl_post_abandon(struct rr_cluster *cl)
{
	for (uint32_t c = 0; c < cl->opts.cores; c++)
		if (cl->postq[c].len > 0)
			abandon_list(cl, c, &cl->postq[c]);
	cl->post_next_ms = UINT64_MAX;
}

/* ---- the hand-offs the other files of the cluster share ---- */

enum rr_cluster_state rr_cluster_state(const struct rr_cluster *cl)
{
	return (enum rr_cluster_state)atomic_load_explicit(&cl->state, memory_order_relaxed);
}

const char *rr_cluster_state_name(enum rr_cluster_state st)
{
	switch (st) {
	case RR_CLUSTER_CONNECTING:
		return "connecting";
	case RR_CLUSTER_CONNECTED:
		return "connected";
	case RR_CLUSTER_RECONNECTING:
		return "reconnecting";
	case RR_CLUSTER_CLOSED:
		return "closed";
	}
	return "unknown";
}

/* With mu held: a producer's wake-up, only when the thread sleeps. */
void rr_cl_wake_locked(struct rr_cluster *cl)
{
	if (cl->idle) {
		cl->idle = false;
		pthread_cond_signal(&cl->cv);
	}
}

bool rr_cl_push_event(struct rr_cluster *cl, struct cl_event *ev)
{
	ev->next = NULL;
	pthread_mutex_lock(&cl->mu);
	if (cl->ev_tail != NULL)
		cl->ev_tail->next = ev;
	else
		cl->ev_head = ev;
	cl->ev_tail = ev;
	rr_cl_wake_locked(cl);
	pthread_mutex_unlock(&cl->mu);
	return true;
}

void rr_cl_uncharge(struct rr_cluster *cl, uint32_t core, uint32_t n)
{
	pthread_mutex_lock(&cl->mu);
	assert(cl->core_len[core] >= n);
	cl->core_len[core] -= n;
	pthread_mutex_unlock(&cl->mu);
}

void rr_cl_finish(struct rr_cluster *cl, struct rr_cluster_req *req, int res)
{
	req->res = res;
	if (req->op == RR_CLUSTER_JS_PUBLISH) {
		if (res == 0)
			CL_STAT_ADD(cl, js_acks, 1);
		else
			CL_STAT_ADD(cl, js_failures, 1);
	}
	if (!rr_cl_post_add(cl, req->core, rr_ud_ptr(RR_UD_CLUSTER, req), req->reply_ring_fd, 0)) {
		/* a completion must not be lost: wait for memory, loudly */
		rr_err("out of memory holding a completion for core %u; retrying",
		       req->core);
		while (!rr_cl_post_add(cl, req->core, rr_ud_ptr(RR_UD_CLUSTER, req),
				       req->reply_ring_fd, 0)) {
			struct timespec ts = {0, 1000000};

			nanosleep(&ts, NULL);
		}
	}
}

