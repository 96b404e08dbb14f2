/*
 * Sequence checking: see seq.h for what is counted and why.
 */
#include "seq.h"

#include <assert.h>

enum rr_bench_seq_verdict rr_bench_seq_check(struct rr_bench_seq *s, uint64_t seq,
					     struct rr_bench_seq_counts *c)
{
	if (seq == s->next) {
		s->window = (s->window << 1) | 1;
		s->next++;
		c->received++;
		return RR_BENCH_SEQ_OK;
	}
	if (seq > s->next) {
		uint64_t gap = seq - s->next;
		c->lost += gap;
		c->received++;
		/* the skipped sequences enter the window as "not received" */
		s->window = gap + 1 >= 64 ? 1 : (s->window << (gap + 1)) | 1;
		s->next = seq + 1;
		return RR_BENCH_SEQ_GAP;
	}
	uint64_t d = s->next - 1 - seq;
	if (d >= 64) {
		c->late++;
		return RR_BENCH_SEQ_LATE;
	}
	uint64_t bit = 1ull << d;
	if (s->window & bit) {
		c->dup++;
		return RR_BENCH_SEQ_DUP;
	}
	s->window |= bit;
	assert(c->lost > 0); /* a hole in the window was counted as lost */
	c->lost--;
	c->reordered++;
	c->received++;
	return RR_BENCH_SEQ_REORDERED;
}

uint64_t rr_bench_seq_finish(const struct rr_bench_seq *s, uint64_t sent,
			     struct rr_bench_seq_counts *c)
{
	if (s->next >= sent)
		return 0;
	uint64_t tail = sent - s->next;
	c->lost += tail;
	c->tail += tail;
	return tail;
}

void rr_bench_seq_counts_add(struct rr_bench_seq_counts *dst, const struct rr_bench_seq_counts *src)
{
	dst->received += src->received;
	dst->lost += src->lost;
	dst->dup += src->dup;
	dst->reordered += src->reordered;
	dst->late += src->late;
	dst->tail += src->tail;
}
