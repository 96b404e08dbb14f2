/* Timer wheel: ordering, cancel, re-arm from a callback, far deadlines,
 * and the next-wake computation. */
#include "reactor/timer.h"
#include "check.h"

#include <stdlib.h>

static int fired[64];
static int fire_count;
static struct rr_wheel wheel;

struct tt {
	struct rr_timer t;
	int id;
	int rearm_ms;
};

static void on_fire(struct rr_timer *t, uint64_t now)
{
	struct tt *x = (struct tt *)t;
	fired[fire_count++] = x->id;
	if (x->rearm_ms) {
		int ms = x->rearm_ms;
		x->rearm_ms = 0;
		rr_timer_set(&wheel, t, now + (uint64_t)ms);
	}
}

int main(void)
{
	struct tt a = {.id = 1}, b = {.id = 2}, c = {.id = 3}, far = {.id = 4};
	uint64_t now = 1000000;

	rr_wheel_init(&wheel, now);
	rr_timer_init(&a.t, on_fire);
	rr_timer_init(&b.t, on_fire);
	rr_timer_init(&c.t, on_fire);
	rr_timer_init(&far.t, on_fire);
	CHECK_EQ(rr_wheel_next_ms(&wheel, now), -1);

	rr_timer_set(&wheel, &a.t, now + 50);
	rr_timer_set(&wheel, &b.t, now + 20);
	rr_timer_set(&wheel, &c.t, now + 30);
	rr_timer_set(&wheel, &far.t, now + 100000); /* > one turn of the wheel */
	CHECK(rr_timer_armed(&a.t));
	CHECK_EQ(wheel.count, 4);
	int64_t next = rr_wheel_next_ms(&wheel, now);
	CHECK(next >= 10 && next <= 20);

	rr_timer_cancel(&wheel, &c.t);
	CHECK(!rr_timer_armed(&c.t));
	CHECK_EQ(wheel.count, 3);

	CHECK_EQ(rr_wheel_advance(&wheel, now + 19), 0);
	CHECK_EQ(rr_wheel_advance(&wheel, now + 25), 1);
	CHECK_EQ(fired[0], 2);
	a.rearm_ms = 40;
	CHECK_EQ(rr_wheel_advance(&wheel, now + 60), 1);
	CHECK_EQ(fired[1], 1);
	CHECK(rr_timer_armed(&a.t)); /* re-armed from its own callback */
	CHECK_EQ(rr_wheel_advance(&wheel, now + 99), 0);
	CHECK_EQ(rr_wheel_advance(&wheel, now + 100), 1);
	CHECK_EQ(fired[2], 1);

	/* the far timer survives whole turns and fires on time, not before */
	CHECK_EQ(rr_wheel_advance(&wheel, now + 99990), 0);
	CHECK(rr_timer_armed(&far.t));
	CHECK_EQ(rr_wheel_advance(&wheel, now + 100000), 1);
	CHECK_EQ(fired[3], 4);
	CHECK_EQ(wheel.count, 0);
	CHECK_EQ(rr_wheel_next_ms(&wheel, now + 100000), -1);

	/* many timers with random deadlines fire in deadline order per tick */
	static struct tt many[2000];
	uint64_t base = now + 200000;
	rr_wheel_init(&wheel, base);
	srand(7);
	for (int i = 0; i < 2000; i++) {
		rr_timer_init(&many[i].t, on_fire);
		many[i].id = i;
		rr_timer_set(&wheel, &many[i].t, base + 1 + (uint64_t)(rand() % 60000));
	}
	fire_count = 0;
	unsigned total = 0;
	int late = 0;
	for (uint64_t t = base; t <= base + 61000; t += 7) {
		for (int i = 0; i < 2000; i++) {
			/* due timers fire at the first advance past their tick: at most one tick + one step late */
			if (rr_timer_armed(&many[i].t) && many[i].t.deadline_ms + RR_WHEEL_TICK_MS + 7 < t)
				late++;
		}
		total += rr_wheel_advance(&wheel, t);
		if (t > base + 30000 && t < base + 30010) {
			for (int i = 0; i < 2000; i++)
				if (!rr_timer_armed(&many[i].t))
					CHECK(many[i].t.deadline_ms <= t);
		}
		fire_count = 0;
	}
	CHECK_EQ(total, 2000);
	CHECK_EQ(late, 0);
	return check_done();
}
