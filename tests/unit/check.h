/*
 * A minimal check harness for unit tests: CHECK() records a failure with its
 * location and carries on; check_done() prints the totals and returns the
 * exit status (0 only if every check passed and at least one ran).
 */
#ifndef RR_TEST_CHECK_H
#define RR_TEST_CHECK_H

#include <stdio.h>

static unsigned check_passed, check_failed;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (cond) {                                                                \
			check_passed++;                                                    \
		} else {                                                                   \
			check_failed++;                                                    \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
				#cond);                                                    \
		}                                                                          \
	} while (0)

#define CHECK_EQ(a, b)                                                                     \
	do {                                                                               \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b);            \
		if (check_a_ == check_b_) {                                                \
			check_passed++;                                                    \
		} else {                                                                   \
			check_failed++;                                                    \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n",  \
				__FILE__, __LINE__, #a, check_a_, #b, check_b_);           \
		}                                                                          \
	} while (0)

static inline int check_done(void)
{
	printf("%u checks passed, %u failed\n", check_passed, check_failed);
	return (check_failed == 0 && check_passed > 0) ? 0 : 1;
}

#endif
