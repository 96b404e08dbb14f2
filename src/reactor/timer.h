/*
 * Per-core hashed timer wheel.
 *
 * DESIGN: a timer is an intrusive node (no allocation) in one of
 * RR_WHEEL_SLOTS lists, chosen by its deadline tick; a deadline further than
 * one turn away waits in its slot for later turns. A bitmap of non-empty
 * slots gives the next wake-up in a few word scans, and the reactor passes
 * it to io_uring_submit_and_wait_timeout, so an idle core sleeps until the
 * next deadline (no periodic tick). Each connection owns one timer, re-armed
 * lazily to its nearest deadline (handshake, ping, idle, close).
 */
#ifndef RR_REACTOR_TIMER_H
#define RR_REACTOR_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define RR_WHEEL_TICK_MS 10
#define RR_WHEEL_SLOTS 4096 /* 40.96 s per turn */

struct rr_timer;
typedef void (*rr_timer_fn)(struct rr_timer *t, uint64_t now_ms);

struct rr_timer {
	struct rr_timer *next;
	struct rr_timer **pprev; /* NULL: not armed */
	uint64_t deadline_ms;
	rr_timer_fn fn;
	uint32_t slot;
};

struct rr_wheel {
	struct rr_timer *slots[RR_WHEEL_SLOTS];
	uint64_t bitmap[RR_WHEEL_SLOTS / 64];
	uint64_t tick; /* last tick processed */
	uint32_t count;
};

void rr_wheel_init(struct rr_wheel *w, uint64_t now_ms);
void rr_timer_init(struct rr_timer *t, rr_timer_fn fn);
/* Arm (or move) t to fire at deadline_ms. */
void rr_timer_set(struct rr_wheel *w, struct rr_timer *t, uint64_t deadline_ms);
void rr_timer_cancel(struct rr_wheel *w, struct rr_timer *t);
static inline bool rr_timer_armed(const struct rr_timer *t)
{
	return t->pprev != 0;
}
/* Fire every timer due at now_ms; returns how many fired. A callback may
 * re-arm or cancel any timer. */
unsigned rr_wheel_advance(struct rr_wheel *w, uint64_t now_ms);
/* Milliseconds until the next timer may be due (0: now), or -1: none. */
int64_t rr_wheel_next_ms(const struct rr_wheel *w, uint64_t now_ms);

#endif
