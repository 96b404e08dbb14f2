/* Per-core hashed timer wheel: see timer.h. */
#include "reactor/timer.h"
#include "core/assert.h"

#include <stddef.h>
#include <string.h>

static void unlink_timer(struct rr_wheel *w, struct rr_timer *t)
{
	*t->pprev = t->next;
	if (t->next)
		t->next->pprev = t->pprev;
	t->pprev = NULL;
	t->next = NULL;
	w->count--;
	if (w->slots[t->slot] == NULL)
		w->bitmap[t->slot / 64] &= ~(UINT64_C(1) << (t->slot % 64));
}

void rr_wheel_init(struct rr_wheel *w, uint64_t now_ms)
{
	memset(w, 0, sizeof(*w));
	w->tick = now_ms / RR_WHEEL_TICK_MS;
}

void rr_timer_init(struct rr_timer *t, rr_timer_fn fn)
{
	memset(t, 0, sizeof(*t));
	t->fn = fn;
}

void rr_timer_set(struct rr_wheel *w, struct rr_timer *t, uint64_t deadline_ms)
{
	rr_assert(t->fn != NULL);
	if (t->pprev)
		unlink_timer(w, t);
	uint64_t tick = (deadline_ms + RR_WHEEL_TICK_MS - 1) / RR_WHEEL_TICK_MS;
	if (tick <= w->tick)
		tick = w->tick + 1;
	t->deadline_ms = deadline_ms;
	t->slot = (uint32_t)(tick % RR_WHEEL_SLOTS);
	t->next = w->slots[t->slot];
	if (t->next)
		t->next->pprev = &t->next;
	w->slots[t->slot] = t;
	t->pprev = &w->slots[t->slot];
	w->bitmap[t->slot / 64] |= UINT64_C(1) << (t->slot % 64);
	w->count++;
}

void rr_timer_cancel(struct rr_wheel *w, struct rr_timer *t)
{
	if (t->pprev)
		unlink_timer(w, t);
}

unsigned rr_wheel_advance(struct rr_wheel *w, uint64_t now_ms)
{
	uint64_t now_tick = now_ms / RR_WHEEL_TICK_MS;
	unsigned fired = 0;

	if (now_tick <= w->tick)
		return 0;
	uint64_t steps = now_tick - w->tick;
	if (steps > RR_WHEEL_SLOTS)
		steps = RR_WHEEL_SLOTS;

	uint64_t base = w->tick;
	for (uint64_t i = 1; i <= steps; i++) {
		uint32_t slot = (uint32_t)((base + i) % RR_WHEEL_SLOTS);
		/* a timer set by a callback below must land after this slot */
		w->tick = base + i;
		struct rr_timer *expired = NULL;
		struct rr_timer *t = w->slots[slot];

		/* Move the due timers to a local list first: callbacks may arm
		 * timers into this very slot or cancel any other timer. */
		while (t) {
			struct rr_timer *next = t->next;
			if (t->deadline_ms <= now_ms) {
				unlink_timer(w, t);
				w->count++; /* still counted while on the local list */
				t->next = expired;
				if (expired)
					expired->pprev = &t->next;
				expired = t;
				t->pprev = &expired;
				t->slot = slot;
			}
			t = next;
		}
		while (expired) {
			t = expired;
			/* unlink from the local list (pprev points into it) */
			*t->pprev = t->next;
			if (t->next)
				t->next->pprev = t->pprev;
			t->next = NULL;
			t->pprev = NULL;
			w->count--;
			t->fn(t, now_ms);
			fired++;
		}
	}
	w->tick = now_tick;
	return fired;
}

int64_t rr_wheel_next_ms(const struct rr_wheel *w, uint64_t now_ms)
{
	if (w->count == 0)
		return -1;
	uint32_t start = (uint32_t)((w->tick + 1) % RR_WHEEL_SLOTS);
	for (uint32_t d = 0; d < RR_WHEEL_SLOTS; d++) {
		uint32_t s = (start + d) % RR_WHEEL_SLOTS;
		uint64_t word = w->bitmap[s / 64] >> (s % 64);
		if (word == 0) {
			/* skip to the next word */
			d += 63 - (s % 64);
			continue;
		}
		if (word & 1) {
			uint64_t when = (w->tick + 1 + d) * RR_WHEEL_TICK_MS;
			return when <= now_ms ? 0 : (int64_t)(when - now_ms);
		}
		d += (uint32_t)__builtin_ctzll(word) - 1;
	}
	return 0;
}
