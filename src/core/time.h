/* Monotonic clocks. The reactor reads the clock once per loop iteration. */
#ifndef RR_CORE_TIME_H
#define RR_CORE_TIME_H

#include <stdint.h>
#include <time.h>

static inline uint64_t rr_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t rr_now_ms(void)
{
	return rr_now_ns() / 1000000u;
}

static inline uint64_t rr_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#endif
