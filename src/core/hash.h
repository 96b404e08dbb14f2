/*
 * FNV-1a, 64 bits: the one string hash of the broker (room homes, room
 * tables). Stable across runs, processes and nodes, so a room's home core is
 * the same after every restart and behind any load balancer.
 */
#ifndef RR_CORE_HASH_H
#define RR_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t rr_hash(const void *p, size_t n)
{
	const uint8_t *s = p;
	uint64_t h = UINT64_C(14695981039346656037);
	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= UINT64_C(1099511628211);
	}
	return h;
}

#endif
