/*
 * Per-publisher sequence checking for ringroom-bench receivers.
 *
 * Each publisher numbers its messages 0, 1, 2 ... A receiver keeps, per
 * publisher it hears, the next sequence it expects and a 64-bit window of
 * which of the 64 sequences below it have arrived. That is enough to tell a
 * gap (loss), a message arriving again (duplicate) and a message arriving
 * after a later one (reordered: it had been counted lost, so the loss count
 * is taken back). A message older than the window cannot be classified and
 * is counted as "late" (reported as an error too).
 */
#ifndef RR_BENCH_SEQ_H
#define RR_BENCH_SEQ_H

#include <stdint.h>

struct rr_bench_seq {
	uint64_t next;	 /* next expected sequence */
	uint64_t window; /* bit i set: sequence next-1-i was received */
};

struct rr_bench_seq_counts {
	uint64_t received;  /* messages accepted (in order or reordered) */
	uint64_t lost;	    /* sequences never received (gaps + tail) */
	uint64_t dup;	    /* a sequence received twice */
	uint64_t reordered; /* a sequence received after a later one */
	uint64_t late;	    /* older than the window: dup or reorder, unknown */
	uint64_t tail;	    /* of lost: still missing when the run ended */
};

enum rr_bench_seq_verdict {
	RR_BENCH_SEQ_OK,
	RR_BENCH_SEQ_GAP, /* accepted, after a gap (loss counted) */
	RR_BENCH_SEQ_DUP,
	RR_BENCH_SEQ_REORDERED, /* accepted, fills an earlier gap */
	RR_BENCH_SEQ_LATE,
};

/* Record the arrival of seq and update the counts. */
enum rr_bench_seq_verdict rr_bench_seq_check(struct rr_bench_seq *s, uint64_t seq,
					     struct rr_bench_seq_counts *c);

/*
 * At the end of a run: the publisher sent `sent` messages (0 .. sent-1);
 * count those past the last one received as lost (and as tail). Returns
 * the tail loss.
 */
uint64_t rr_bench_seq_finish(const struct rr_bench_seq *s, uint64_t sent,
			     struct rr_bench_seq_counts *c);

/* True when the receiver has seen every sequence below `sent` arrive in
 * order or been accounted (no tail pending). */
static inline int rr_bench_seq_complete(const struct rr_bench_seq *s, uint64_t sent)
{
	return s->next >= sent;
}

void rr_bench_seq_counts_add(struct rr_bench_seq_counts *dst,
			     const struct rr_bench_seq_counts *src);

#endif
