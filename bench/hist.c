/*
 * Log-linear histogram: see hist.h for the bucket layout and its precision.
 */
#include "hist.h"

#include <assert.h>
#include <math.h>
#include <string.h>

void rr_bench_hist_init(struct rr_bench_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

size_t rr_bench_hist_index(uint64_t v)
{
	if (v < RR_BENCH_HIST_SUB)
		return (size_t)v;
	/* shift so that v >> shift lies in [HALF, SUB): one octave per shift */
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - (RR_BENCH_HIST_SUB_BITS - 1);
	if (msb >= RR_BENCH_HIST_MAX_BITS)
		return RR_BENCH_HIST_BUCKETS - 1;
	size_t idx = RR_BENCH_HIST_SUB + (size_t)(shift - 1) * RR_BENCH_HIST_HALF +
		     (size_t)((v >> shift) - RR_BENCH_HIST_HALF);
	assert(idx < RR_BENCH_HIST_BUCKETS);
	return idx;
}

uint64_t rr_bench_hist_lowest(size_t idx)
{
	assert(idx < RR_BENCH_HIST_BUCKETS);
	if (idx < RR_BENCH_HIST_SUB)
		return idx;
	size_t k = idx - RR_BENCH_HIST_SUB;
	unsigned shift = (unsigned)(k / RR_BENCH_HIST_HALF) + 1;
	uint64_t sub = RR_BENCH_HIST_HALF + k % RR_BENCH_HIST_HALF;
	return sub << shift;
}

uint64_t rr_bench_hist_highest(size_t idx)
{
	if (idx < RR_BENCH_HIST_SUB)
		return idx;
	size_t k = idx - RR_BENCH_HIST_SUB;
	unsigned shift = (unsigned)(k / RR_BENCH_HIST_HALF) + 1;
	return rr_bench_hist_lowest(idx) + (1ull << shift) - 1;
}

void rr_bench_hist_record(struct rr_bench_hist *h, uint64_t v)
{
	h->buckets[rr_bench_hist_index(v)]++;
	h->count++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void rr_bench_hist_merge(struct rr_bench_hist *dst, const struct rr_bench_hist *src)
{
	if (src->count == 0)
		return;
	for (size_t i = 0; i < RR_BENCH_HIST_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t rr_bench_hist_percentile(const struct rr_bench_hist *h, double p)
{
	if (h->count == 0)
		return 0;
	if (p >= 100.0)
		return h->max;
	/* the epsilon keeps 99.9% of 10000 from rounding up to rank 9991 */
	double want = ceil(p / 100.0 * (double)h->count * (1.0 - 1e-12));
	uint64_t rank = want < 1.0 ? 1 : (uint64_t)want;
	uint64_t seen = 0;
	for (size_t i = 0; i < RR_BENCH_HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t v = rr_bench_hist_highest(i);
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max; /* unreachable when count matches the buckets */
}
