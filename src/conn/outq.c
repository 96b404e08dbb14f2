/* An output queue: see outq.h. */
#include "conn/outq.h"
#include "core/assert.h"
#include "core/limits.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static inline const uint8_t *node_bytes(const struct rr_out *o)
{
	return o->f ? o->f->data : o->data;
}

static struct rr_out *chunk_get(struct rr_out_pool *p)
{
	struct rr_out *o = p->free;
	if (o) {
		p->free = o->next;
		p->n--;
	} else {
		o = malloc(sizeof(*o) + RR_OUT_CHUNK);
		if (o == NULL)
			return NULL;
	}
	o->next = NULL;
	o->f = NULL;
	o->off = 0;
	o->len = 0;
	return o;
}

static void node_free(struct rr_out_pool *p, struct rr_out *o)
{
	if (o->f) {
		rr_frame_unref(o->f);
		if (p->nrefs < RR_OUT_REF_POOL_MAX) {
			o->next = p->free_refs;
			p->free_refs = o;
			p->nrefs++;
		} else {
			free(o);
		}
	} else if (p->n < RR_OUT_POOL_MAX) {
		o->next = p->free;
		p->free = o;
		p->n++;
	} else {
		free(o);
	}
}

static struct rr_out *ref_node(struct rr_out_pool *p, struct rr_frame *f)
{
	struct rr_out *o = p->free_refs;
	if (o) {
		p->free_refs = o->next;
		p->nrefs--;
	} else {
		o = malloc(sizeof(*o));
		if (o == NULL)
			return NULL;
	}
	o->next = NULL;
	o->f = rr_frame_ref(f);
	o->off = 0;
	o->len = f->len;
	return o;
}

static void list_free(struct rr_out_pool *p, struct rr_out *o)
{
	while (o) {
		struct rr_out *next = o->next;
		node_free(p, o);
		o = next;
	}
}

void rr_out_pool_free(struct rr_out_pool *p)
{
	struct rr_out *o = p->free;
	while (o) {
		struct rr_out *next = o->next;
		free(o);
		o = next;
	}
	p->free = NULL;
	p->n = 0;
	for (o = p->free_refs; o;) {
		struct rr_out *next = o->next;
		free(o);
		o = next;
	}
	p->free_refs = NULL;
	p->nrefs = 0;
}

static void append_node(struct rr_out **head, struct rr_out **tail, struct rr_out *o)
{
	if (*tail)
		(*tail)->next = o;
	else
		*head = o;
	*tail = o;
}

int rr_outq_push(struct rr_outq *q, struct rr_out_pool *p, struct rr_frame *f, bool held, bool bulk)
{
	struct rr_out **head = held ? &q->held_head : &q->head;
	struct rr_out **tail = held ? &q->held_tail : &q->tail;
	struct rr_out *t = *tail;
	/* copy while the queue is short (its chunks stay in cache, one iovec
	 * carries many frames); a long queue (a slow reader, overload) takes
	 * references to the shared frame, whose bytes stay hot for every
	 * member, instead of a cold copy per member */
	bool copy = f->len <= RR_OUT_COPY_MAX && q->bytes < RR_OUT_COPY_QUEUED_MAX;
	if (copy && t && t->f == NULL && RR_OUT_CHUNK - t->len >= f->len) {
		memcpy(t->data + t->len, f->data, f->len);
		t->len += f->len;
	} else {
		struct rr_out *o;
		if (copy) {
			o = chunk_get(p);
			if (o == NULL)
				return -ENOMEM;
			memcpy(o->data, f->data, f->len);
			o->len = f->len;
		} else {
			o = ref_node(p, f);
			if (o == NULL)
				return -ENOMEM;
		}
		append_node(head, tail, o);
	}
	q->bytes += f->len;
	if (held)
		q->held += f->len;
	if (bulk)
		q->bulk += f->len;
	return 0;
}

int rr_outq_pong(struct rr_outq *q, struct rr_frame *f)
{
	if (q->pong) {
		q->bytes -= q->pong->len;
		q->bulk -= q->pong->len;
		rr_frame_unref(q->pong->f);
		q->pong->f = rr_frame_ref(f);
		q->pong->len = f->len;
		q->bytes += f->len;
		q->bulk += f->len;
		return 0;
	}
	struct rr_out *o = malloc(sizeof(*o)); /* pooled by node_free once sent */
	if (o == NULL)
		return -ENOMEM;
	o->next = NULL;
	o->f = rr_frame_ref(f);
	o->off = 0;
	o->len = f->len;
	append_node(&q->head, &q->tail, o);
	q->bytes += o->len;
	q->bulk += o->len;
	q->pong = o;
	return 0;
}

bool rr_outq_release_hold(struct rr_outq *q)
{
	if (q->held_head == NULL)
		return false;
	if (q->tail)
		q->tail->next = q->held_head;
	else
		q->head = q->held_head;
	q->tail = q->held_tail;
	q->held_head = q->held_tail = NULL;
	q->held = 0;
	return true;
}

void rr_outq_drop_unsent(struct rr_outq *q, struct rr_out_pool *p)
{
	struct rr_out **pp = &q->head, *last = NULL;
	uint32_t keep = q->send_nodes;
	if (keep == 0 && q->head && (q->head->off > 0 || q->keep_head))
		keep = 1;
	for (uint32_t i = 0; i < keep && *pp; i++) {
		last = *pp;
		pp = &(*pp)->next;
	}
	struct rr_out *o = *pp;
	*pp = NULL;
	q->tail = last;
	for (struct rr_out *d = o; d; d = d->next)
		q->bytes -= d->len - d->off;
	list_free(p, o);
	q->bytes -= q->held;
	list_free(p, q->held_head);
	q->held_head = q->held_tail = NULL;
	q->held = 0;
	if (q->bulk > q->bytes)
		q->bulk = q->bytes;
	q->pong = NULL;
}

uint32_t rr_outq_iov(struct rr_outq *q, struct iovec *iov, uint32_t max, uint64_t bytes_max)
{
	uint32_t n = 0;
	uint64_t bytes = 0;
	for (struct rr_out *o = q->head; o && n < max; o = o->next) {
		iov[n].iov_base = (void *)(node_bytes(o) + o->off);
		iov[n].iov_len = o->len - o->off;
		bytes += iov[n].iov_len;
		n++;
		if (o == q->pong)
			q->pong = NULL; /* in flight: can't be replaced any more */
		if (bytes >= bytes_max)
			break;
	}
	return n;
}

void rr_outq_consume(struct rr_outq *q, struct rr_out_pool *p, uint64_t n)
{
	rr_assert(n <= q->bytes);
	q->bytes -= n;
	q->bulk -= n < q->bulk ? n : q->bulk;
	while (n > 0) {
		struct rr_out *o = q->head;
		rr_assert(o != NULL);
		uint64_t avail = o->len - o->off;
		if (n < avail) {
			o->off += (uint32_t)n;
			break;
		}
		n -= avail;
		q->head = o->next;
		if (q->head == NULL)
			q->tail = NULL;
		if (q->pong == o)
			q->pong = NULL;
		q->keep_head = false; /* the kept head (the 101) is out */
		node_free(p, o);
	}
}

void rr_outq_free(struct rr_outq *q, struct rr_out_pool *p)
{
	list_free(p, q->head);
	list_free(p, q->held_head);
	memset(q, 0, sizeof(*q));
}
