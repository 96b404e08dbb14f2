/* Queues between cores: see xq.h. */
#include "conn/xq.h"
#include "core/assert.h"
#include "reactor/loop.h"
#include "core/frame.h"
#include "core/log.h"
#include "core/tsan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XQ_BATCH_INIT 4096

struct rr_xq {
	unsigned ncores;
	struct rr_xbatch **out;	  /* being filled, per destination */
	uint64_t *seq_out;	  /* the next batch's number, per destination */
	uint64_t *seq_in;	  /* the next batch to run, per source */
	struct rr_xbatch **early; /* arrived before their turn, per source, by seq */
	struct rr_xbatch *retry;  /* posts the kernel refused, to send again */
};

static struct rr_xq *xq_of(struct rr_core *core)
{
	return core->xq;
}

int rr_xq_init(struct rr_core *core)
{
	unsigned n = core->broker->ncores;
	struct rr_xq *q = calloc(1, sizeof(*q));
	if (q == NULL)
		return -ENOMEM;
	core->xq = q;
	q->ncores = n;
	q->out = calloc(n, sizeof(*q->out));
	q->seq_out = calloc(n, sizeof(*q->seq_out));
	q->seq_in = calloc(n, sizeof(*q->seq_in));
	q->early = calloc(n, sizeof(*q->early));
	if (!q->out || !q->seq_out || !q->seq_in || !q->early)
		return -ENOMEM;
	return 0;
}

static void discard_list(struct rr_xbatch *b)
{
	while (b) {
		struct rr_xbatch *next = b->next;
		rr_xq_discard(b);
		b = next;
	}
}

void rr_xq_fini(struct rr_core *core)
{
	struct rr_xq *q = xq_of(core);
	if (q == NULL)
		return;
	/* At exit: batches posted to this core and never reaped still sit in
	 * its completion queue; what is left is dropped with its holders. */
	if (core->ring_fd >= 0) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		io_uring_for_each_cqe(&core->ring, head, cqe)
		{
			uint64_t ud = io_uring_cqe_get_data64(cqe);
			if (rr_ud_kind(ud) == RR_UD_XQ_IN || rr_ud_kind(ud) == RR_UD_XQ_FAILED)
				rr_xq_discard(rr_ud_to_ptr(ud));
			n++;
		}
		io_uring_cq_advance(&core->ring, n);
	}
	for (unsigned i = 0; q->out && i < q->ncores; i++) {
		if (q->out[i])
			rr_xq_discard(q->out[i]);
		if (q->early)
			discard_list(q->early[i]);
	}
	discard_list(q->retry);
	free(q->out);
	free(q->seq_out);
	free(q->seq_in);
	free(q->early);
	free(q);
	core->xq = NULL;
}

void *rr_xq_op(struct rr_core *core, unsigned dst, enum rr_xop op, uint8_t flag, uint16_t code,
	       uint32_t idx, uint32_t gen, size_t n)
{
	struct rr_xq *q = xq_of(core);
	size_t len = (sizeof(struct rr_xop_hdr) + n + 7) & ~(size_t)7;
	struct rr_xbatch *b = q->out[dst];
	if (b == NULL || b->cap - b->len < len) {
		size_t cap = b ? b->cap : XQ_BATCH_INIT;
		while (cap - (b ? b->len : 0) < len)
			cap *= 2;
		struct rr_xbatch *nb = realloc(b, sizeof(*nb) + cap);
		if (nb == NULL) {
			rr_warn("core %u: no memory to queue an operation for core %u", core->id,
				dst);
			return NULL;
		}
		if (b == NULL) {
			nb->len = 0;
			nb->next = NULL;
			nb->src = core->id;
			nb->dst = dst;
		}
		nb->cap = (uint32_t)cap;
		q->out[dst] = b = nb;
	}
	struct rr_xop_hdr *h = (struct rr_xop_hdr *)(b->buf + b->len);
	h->op = (uint8_t)op;
	h->flag = flag;
	h->code = code;
	h->len = (uint32_t)(sizeof(*h) + n);
	h->idx = idx;
	h->gen = gen;
	b->len += (uint32_t)len;
	return h + 1;
}

int rr_xq_frame(struct rr_core *core, unsigned dst, enum rr_xop op, uint8_t flag, uint32_t idx,
		uint32_t gen, struct rr_frame *f)
{
	struct rr_frame **p = rr_xq_op(core, dst, op, flag, 0, idx, gen, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	*p = rr_frame_share(f);
	RR_STAT_INC(core, shard_frames_forwarded);
	return 0;
}

static void post(struct rr_core *core, struct rr_xbatch *b)
{
	struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
	int ring_fd = core->broker->cores[b->dst].ring_fd;
	RR_HB_RELEASE(b); /* our last touch unless refused */
	io_uring_prep_msg_ring(sqe, ring_fd, 0, rr_ud_ptr(RR_UD_XQ_IN, b), 0);
	/* only a refusal comes back (the target's completion queue is full) */
	io_uring_sqe_set_data64(sqe, rr_ud_ptr(RR_UD_XQ_FAILED, b));
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	RR_STAT_INC(core, shard_batches);
}

void rr_xq_flush(struct rr_core *core)
{
	struct rr_xq *q = xq_of(core);
	struct rr_xbatch *r = q->retry;
	q->retry = NULL;
	while (r) {
		struct rr_xbatch *next = r->next;
		r->next = NULL;
		post(core, r);
		r = next;
	}
	for (unsigned i = 0; i < q->ncores; i++) {
		struct rr_xbatch *b = q->out[i];
		if (b == NULL || b->len == 0)
			continue;
		q->out[i] = NULL;
		b->seq = q->seq_out[i]++;
		post(core, b);
	}
}

void rr_xq_on_failed(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	struct rr_xq *q = xq_of(core);
	struct rr_xbatch *b = rr_ud_to_ptr(io_uring_cqe_get_data64(cqe));
	RR_HB_ACQUIRE(b); /* ours again */
	if (atomic_load_explicit(&core->broker->stopping, memory_order_relaxed)) {
		rr_xq_discard(b); /* stopping: the other core may be gone */
		return;
	}
	if (cqe->res != -EOVERFLOW && cqe->res != -EAGAIN && cqe->res != -EBUSY)
		rr_warn("core %u: passing a batch to core %u failed: %s; retrying", core->id,
			b->dst, strerror(-cqe->res));
	/* sent again at the next flush; the receiver holds later batches */
	b->next = q->retry;
	q->retry = b;
}

struct rr_xbatch *rr_xq_ready(struct rr_core *core, struct rr_xbatch *arrived)
{
	struct rr_xq *q = xq_of(core);
	if (arrived) {
		RR_HB_ACQUIRE(arrived);
		unsigned src = arrived->src;
		if (arrived->seq == q->seq_in[src]) {
			q->seq_in[src]++;
			return arrived;
		}
		/* early: keep it in order until its turn */
		struct rr_xbatch **pp = &q->early[src];
		while (*pp && (*pp)->seq < arrived->seq)
			pp = &(*pp)->next;
		arrived->next = *pp;
		*pp = arrived;
		return NULL;
	}
	for (unsigned src = 0; src < q->ncores; src++) {
		struct rr_xbatch *b = q->early[src];
		if (b && b->seq == q->seq_in[src]) {
			q->early[src] = b->next;
			b->next = NULL;
			q->seq_in[src]++;
			return b;
		}
	}
	return NULL;
}

void rr_xq_discard(struct rr_xbatch *b)
{
	uint32_t off = 0;
	while (off + sizeof(struct rr_xop_hdr) <= b->len) {
		struct rr_xop_hdr *h = (struct rr_xop_hdr *)(b->buf + off);
		void *p = h + 1;
		if (h->op == RR_XOP_FRAME_TO || h->op == RR_XOP_REPLY) {
			struct rr_frame *f = *(struct rr_frame **)p;
			if (f)
				rr_frame_drop_holder(f);
		} else if (h->op == RR_XOP_FRAME_ALL) {
			rr_frame_drop_holder(((struct rr_xall *)p)->f);
		}
		off = RR_XOP_NEXT(off, h);
	}
	free(b);
}
