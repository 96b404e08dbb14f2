/*
 * Sequence checker tests: loss, duplicates, reordering, late arrivals and
 * the tail counted at the end of a run.
 */
#include "../seq.c"

#include "../../tests/unit/check.h"

static void feed(struct rr_bench_seq *s, struct rr_bench_seq_counts *c, const uint64_t *seqs, int n)
{
	for (int i = 0; i < n; i++)
		rr_bench_seq_check(s, seqs[i], c);
}

int main(void)
{
	struct rr_bench_seq s = {0};
	struct rr_bench_seq_counts c = {0};

	/* in order */
	const uint64_t inorder[] = {0, 1, 2, 3, 4};
	feed(&s, &c, inorder, 5);
	CHECK_EQ(c.received, 5);
	CHECK_EQ(c.lost + c.dup + c.reordered + c.late, 0);
	CHECK(rr_bench_seq_complete(&s, 5));
	CHECK(!rr_bench_seq_complete(&s, 6));
	CHECK_EQ(rr_bench_seq_finish(&s, 5, &c), 0);

	/* a gap of two, then one of them late: loss taken back */
	struct rr_bench_seq s2 = {0};
	struct rr_bench_seq_counts c2 = {0};
	CHECK_EQ(rr_bench_seq_check(&s2, 0, &c2), RR_BENCH_SEQ_OK);
	CHECK_EQ(rr_bench_seq_check(&s2, 3, &c2), RR_BENCH_SEQ_GAP);
	CHECK_EQ(c2.lost, 2);
	CHECK_EQ(rr_bench_seq_check(&s2, 2, &c2), RR_BENCH_SEQ_REORDERED);
	CHECK_EQ(c2.lost, 1);
	CHECK_EQ(c2.reordered, 1);
	/* the same again is a duplicate, so is one already in order */
	CHECK_EQ(rr_bench_seq_check(&s2, 2, &c2), RR_BENCH_SEQ_DUP);
	CHECK_EQ(rr_bench_seq_check(&s2, 0, &c2), RR_BENCH_SEQ_DUP);
	CHECK_EQ(rr_bench_seq_check(&s2, 3, &c2), RR_BENCH_SEQ_DUP);
	CHECK_EQ(c2.dup, 3);
	CHECK_EQ(c2.lost, 1); /* seq 1 never came */
	CHECK_EQ(c2.received, 3);

	/* a duplicate of the newest message right away */
	struct rr_bench_seq s3 = {0};
	struct rr_bench_seq_counts c3 = {0};
	const uint64_t d[] = {0, 1, 1, 2};
	feed(&s3, &c3, d, 4);
	CHECK_EQ(c3.dup, 1);
	CHECK_EQ(c3.lost, 0);

	/* the first message lost */
	struct rr_bench_seq s4 = {0};
	struct rr_bench_seq_counts c4 = {0};
	const uint64_t f[] = {1, 2, 3};
	feed(&s4, &c4, f, 3);
	CHECK_EQ(c4.lost, 1);
	CHECK_EQ(s4.next, 4);

	/* swapped neighbours: one reorder, no loss in the end */
	struct rr_bench_seq s5 = {0};
	struct rr_bench_seq_counts c5 = {0};
	const uint64_t sw[] = {0, 2, 1, 3, 5, 4};
	feed(&s5, &c5, sw, 6);
	CHECK_EQ(c5.reordered, 2);
	CHECK_EQ(c5.lost, 0);
	CHECK_EQ(c5.received, 6);

	/* a big gap (past the window) and something older than the window */
	struct rr_bench_seq s6 = {0};
	struct rr_bench_seq_counts c6 = {0};
	rr_bench_seq_check(&s6, 0, &c6);
	CHECK_EQ(rr_bench_seq_check(&s6, 1000, &c6), RR_BENCH_SEQ_GAP);
	CHECK_EQ(c6.lost, 999);
	CHECK_EQ(rr_bench_seq_check(&s6, 500, &c6), RR_BENCH_SEQ_LATE);
	CHECK_EQ(c6.late, 1);
	/* inside the window right after the big gap: a reorder */
	CHECK_EQ(rr_bench_seq_check(&s6, 990, &c6), RR_BENCH_SEQ_REORDERED);
	CHECK_EQ(c6.lost, 998);
	/* a gap exactly as wide as the window edge */
	struct rr_bench_seq s7 = {0};
	struct rr_bench_seq_counts c7 = {0};
	rr_bench_seq_check(&s7, 0, &c7);
	rr_bench_seq_check(&s7, 64, &c7); /* 1..63 missing */
	CHECK_EQ(c7.lost, 63);
	CHECK_EQ(rr_bench_seq_check(&s7, 1, &c7), RR_BENCH_SEQ_REORDERED);
	CHECK_EQ(rr_bench_seq_check(&s7, 64, &c7), RR_BENCH_SEQ_DUP);
	/* seq 0 is 64 behind the newest: just outside the window */
	CHECK_EQ(rr_bench_seq_check(&s7, 0, &c7), RR_BENCH_SEQ_LATE);
	CHECK_EQ(c7.lost, 62);

	/* the tail: messages sent after the last one received are lost */
	struct rr_bench_seq s8 = {0};
	struct rr_bench_seq_counts c8 = {0};
	const uint64_t t[] = {0, 1, 2};
	feed(&s8, &c8, t, 3);
	CHECK(!rr_bench_seq_complete(&s8, 10));
	CHECK_EQ(rr_bench_seq_finish(&s8, 10, &c8), 7);
	CHECK_EQ(c8.lost, 7);
	CHECK_EQ(c8.tail, 7);
	/* a receiver that heard nothing from a publisher that sent nothing */
	struct rr_bench_seq s9 = {0};
	CHECK(rr_bench_seq_complete(&s9, 0));
	CHECK_EQ(rr_bench_seq_finish(&s9, 0, &c8), 0);

	struct rr_bench_seq_counts sum = {0};
	rr_bench_seq_counts_add(&sum, &c2);
	rr_bench_seq_counts_add(&sum, &c6);
	CHECK_EQ(sum.lost, c2.lost + c6.lost);
	CHECK_EQ(sum.dup, c2.dup + c6.dup);
	CHECK_EQ(sum.late, 1);
	return check_done();
}
