/*
 * Assertions for programmer errors, always on (TIGER_STYLE; HAProxy BUG_ON).
 * Never assert on what a peer, the kernel or the disk can cause: those are
 * error paths with a log line and a status or close code.
 */
#ifndef RR_CORE_ASSERT_H
#define RR_CORE_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define rr_assert(cond)                                                                    \
	do {                                                                               \
		if (__builtin_expect(!(cond), 0)) {                                        \
			fprintf(stderr, "ringroom: assertion failed: %s (%s:%d)\n", #cond,  \
				__FILE__, __LINE__);                                       \
			abort();                                                           \
		}                                                                          \
	} while (0)

#define rr_likely(x) __builtin_expect(!!(x), 1)
#define rr_unlikely(x) __builtin_expect(!!(x), 0)
#define rr_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
