/*
 * Log-linear latency histogram for ringroom-bench (HdrHistogram-style).
 *
 * Values (nanoseconds) below 2^RR_BENCH_HIST_SUB_BITS are counted exactly;
 * above that, each power-of-two range is split into 2^(SUB_BITS-1) equal
 * buckets, so a bucket is never wider than 1/128 of its lowest value: every
 * reported percentile is within 0.8% of the true sample. Every sample is
 * recorded (no sampling); the struct is a flat array so that workers can
 * keep it in shared memory and the parent can merge them by addition.
 */
#ifndef RR_BENCH_HIST_H
#define RR_BENCH_HIST_H

#include <stddef.h>
#include <stdint.h>

#define RR_BENCH_HIST_SUB_BITS 8
#define RR_BENCH_HIST_SUB (1u << RR_BENCH_HIST_SUB_BITS) /* 256 exact values */
#define RR_BENCH_HIST_HALF (RR_BENCH_HIST_SUB / 2)	 /* 128 per octave */
/* Largest value kept in its own bucket: 2^40 ns is ~18 minutes; beyond it
 * samples land in the last bucket but max stays exact. */
#define RR_BENCH_HIST_MAX_BITS 40
#define RR_BENCH_HIST_BUCKETS                                                                      \
	(RR_BENCH_HIST_SUB + (RR_BENCH_HIST_MAX_BITS - RR_BENCH_HIST_SUB_BITS) * RR_BENCH_HIST_HALF)

struct rr_bench_hist {
	uint64_t count;
	uint64_t min;
	uint64_t max;
	uint64_t sum; /* for the mean; wraps only after ~584 years of summed ns */
	uint64_t buckets[RR_BENCH_HIST_BUCKETS];
};

void rr_bench_hist_init(struct rr_bench_hist *h);
void rr_bench_hist_record(struct rr_bench_hist *h, uint64_t v);
/* dst += src; either may be empty. */
void rr_bench_hist_merge(struct rr_bench_hist *dst, const struct rr_bench_hist *src);
/*
 * The value at percentile p (0 < p <= 100): the highest value equivalent to
 * the bucket holding the sample of rank ceil(p/100 * count), clamped to the
 * recorded max and min. Returns 0 for an empty histogram.
 */
uint64_t rr_bench_hist_percentile(const struct rr_bench_hist *h, double p);

/* Bucket arithmetic, exposed for tests. */
size_t rr_bench_hist_index(uint64_t v);
uint64_t rr_bench_hist_lowest(size_t idx);
uint64_t rr_bench_hist_highest(size_t idx);

#endif
