/*
 * Histogram tests: bucket arithmetic, precision, percentiles of known
 * distributions, merging.
 */
#include "../hist.c"

#include "../../tests/unit/check.h"

#include <stdlib.h>

static struct rr_bench_hist a, b, all;

static int within(uint64_t got, uint64_t want, double rel)
{
	double d = (double)got - (double)want;
	if (d < 0)
		d = -d;
	return d <= rel * (double)want + 1.0;
}

static void test_buckets(void)
{
	/* every value lands in a bucket whose bounds hold it, buckets tile the
	 * line without gaps, and no bucket is wider than 1/128 of its start */
	int bad = 0;
	for (size_t i = 1; i < RR_BENCH_HIST_BUCKETS; i++) {
		if (rr_bench_hist_lowest(i) != rr_bench_hist_highest(i - 1) + 1)
			bad++;
		uint64_t lo = rr_bench_hist_lowest(i), hi = rr_bench_hist_highest(i);
		if (lo >= RR_BENCH_HIST_SUB && (double)(hi - lo + 1) > (double)lo / 128.0)
			bad++;
		if (rr_bench_hist_index(lo) != i || rr_bench_hist_index(hi) != i)
			bad++;
	}
	CHECK_EQ(bad, 0);
	for (uint64_t v = 0; v < 300000; v += 7) {
		size_t i = rr_bench_hist_index(v);
		CHECK(rr_bench_hist_lowest(i) <= v && v <= rr_bench_hist_highest(i));
	}
	CHECK_EQ(rr_bench_hist_index(0), 0);
	CHECK_EQ(rr_bench_hist_index(255), 255);
	CHECK_EQ(rr_bench_hist_index(256), 256);
	CHECK_EQ(rr_bench_hist_index(UINT64_MAX), RR_BENCH_HIST_BUCKETS - 1);
}

static void test_uniform(void)
{
	rr_bench_hist_init(&a);
	for (uint64_t v = 1; v <= 1000000; v++)
		rr_bench_hist_record(&a, v * 1000); /* 1 us .. 1 s */
	CHECK_EQ(a.count, 1000000);
	CHECK_EQ(a.min, 1000);
	CHECK_EQ(a.max, 1000000000);
	CHECK(within(rr_bench_hist_percentile(&a, 50), 500000000, 0.01));
	CHECK(within(rr_bench_hist_percentile(&a, 90), 900000000, 0.01));
	CHECK(within(rr_bench_hist_percentile(&a, 99), 990000000, 0.01));
	CHECK(within(rr_bench_hist_percentile(&a, 99.9), 999000000, 0.01));
	CHECK_EQ(rr_bench_hist_percentile(&a, 100), 1000000000);
	/* a percentile never reports below the true sample */
	CHECK(rr_bench_hist_percentile(&a, 50) >= 500000000);
}

static void test_bimodal_and_exact(void)
{
	rr_bench_hist_init(&a);
	CHECK_EQ(rr_bench_hist_percentile(&a, 99), 0);
	for (int i = 0; i < 9990; i++)
		rr_bench_hist_record(&a, 1000000); /* 1 ms */
	for (int i = 0; i < 10; i++)
		rr_bench_hist_record(&a, 100000000); /* 100 ms: the top 0.1% */
	CHECK(within(rr_bench_hist_percentile(&a, 50), 1000000, 0.008));
	CHECK(within(rr_bench_hist_percentile(&a, 99.9), 1000000, 0.008));
	CHECK(within(rr_bench_hist_percentile(&a, 99.95), 100000000, 0.008));
	CHECK_EQ(rr_bench_hist_percentile(&a, 100), 100000000);

	/* small values are exact */
	rr_bench_hist_init(&a);
	for (uint64_t v = 1; v <= 100; v++)
		rr_bench_hist_record(&a, v);
	CHECK_EQ(rr_bench_hist_percentile(&a, 50), 50);
	CHECK_EQ(rr_bench_hist_percentile(&a, 99), 99);
	CHECK_EQ(rr_bench_hist_percentile(&a, 1), 1);
	CHECK_EQ(a.sum, 5050);
}

static void test_merge(void)
{
	/* two workers' halves merged equal one histogram of everything */
	rr_bench_hist_init(&a);
	rr_bench_hist_init(&b);
	rr_bench_hist_init(&all);
	srand(7);
	for (int i = 0; i < 200000; i++) {
		uint64_t v = (uint64_t)rand() % 5000000 + (i % 100 == 0 ? 50000000 : 0);
		rr_bench_hist_record(i & 1 ? &a : &b, v);
		rr_bench_hist_record(&all, v);
	}
	struct rr_bench_hist *m = calloc(1, sizeof(*m));
	rr_bench_hist_init(m);
	rr_bench_hist_merge(m, &a);
	rr_bench_hist_merge(m, &b);
	CHECK_EQ(m->count, all.count);
	CHECK_EQ(m->min, all.min);
	CHECK_EQ(m->max, all.max);
	CHECK_EQ(m->sum, all.sum);
	CHECK(memcmp(m->buckets, all.buckets, sizeof(all.buckets)) == 0);
	CHECK_EQ(rr_bench_hist_percentile(m, 99), rr_bench_hist_percentile(&all, 99));
	/* merging an empty histogram changes nothing */
	rr_bench_hist_init(&b);
	rr_bench_hist_merge(m, &b);
	CHECK_EQ(m->count, all.count);
	CHECK_EQ(m->min, all.min);
	free(m);
}

int main(void)
{
	test_buckets();
	test_uniform();
	test_bimodal_and_exact();
	test_merge();
	return check_done();
}
