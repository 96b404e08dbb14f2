/* Prometheus text for /metrics: see gate.h. */
#include "core/time.h"
#include "gate/gate.h"
#include "persist/store.h"
#include "reactor/loop.h"

#include <errno.h>
#include <stdlib.h>

#include <stdarg.h>
#include <stdio.h>

static size_t put(char *buf, size_t cap, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static size_t put(char *buf, size_t cap, size_t n, const char *fmt, ...)
{
	if (n >= cap)
		return n;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, cap - n, fmt, ap);
	va_end(ap);
	if (m < 0)
		return n;
	return n + (size_t)m >= cap ? cap - 1 : n + (size_t)m;
}

static size_t render(const struct rr_broker *b, char *buf, size_t cap)
{
	size_t n = 0;
	if (cap == 0)
		return 0;
	buf[0] = '\0';
	n = put(buf, cap, n, "# HELP ringroom_uptime_seconds seconds since start\n"
			     "# TYPE ringroom_uptime_seconds gauge\n"
			     "ringroom_uptime_seconds %.3f\n",
		(double)(rr_now_ms() - b->start_ms) / 1000.0);
	n = put(buf, cap, n, "# HELP ringroom_connections connections open (all cores)\n"
			     "# TYPE ringroom_connections gauge\n"
			     "ringroom_connections %u\n",
		atomic_load_explicit(&b->live_conns, memory_order_relaxed));
	n = put(buf, cap, n, "# HELP ringroom_draining 1 while shutting down\n"
			     "# TYPE ringroom_draining gauge\n"
			     "ringroom_draining %d\n",
		atomic_load_explicit(&b->draining, memory_order_relaxed) ? 1 : 0);
#define RR_STAT_RENDER(name, kind, help)                                                   \
	n = put(buf, cap, n, "# HELP ringroom_" #name " " help "\n# TYPE ringroom_" #name     \
			     " " #kind "\n");                                              \
	for (unsigned i = 0; i < b->ncores; i++)                                           \
		n = put(buf, cap, n, "ringroom_" #name "{core=\"%u\"} %llu\n", i,          \
			(unsigned long long)__atomic_load_n(&b->cores[i].stats.name,       \
							    __ATOMIC_RELAXED));
	RR_STATS(RR_STAT_RENDER)
#undef RR_STAT_RENDER
	if (rr_gate_cfg.store) {
		struct rr_store_stats st;
		rr_store_stats_get(rr_gate_cfg.store, &st);
#define STORE_STAT(name, kind, help, v)                                                    \
	n = put(buf, cap, n,                                                               \
		"# HELP ringroom_store_" name " " help "\n# TYPE ringroom_store_" name " " kind \
		"\nringroom_store_" name " %llu\n",                                            \
		(unsigned long long)(v))
		STORE_STAT("submitted", "counter", "storage requests accepted", st.submitted);
		STORE_STAT("rejected", "counter", "storage requests refused: queue full",
			   st.rejected);
		STORE_STAT("batches", "counter", "group commits (one WriteBatch each)", st.batches);
		STORE_STAT("batch_writes", "counter", "writes carried by those group commits",
			   st.batch_writes);
		STORE_STAT("batch_failures", "counter", "group commits that failed (disk)",
			   st.batch_failures);
		STORE_STAT("trimmed", "counter", "messages removed by retention", st.trimmed);
		STORE_STAT("queued", "gauge", "storage requests waiting now", st.queued);
		STORE_STAT("post_failures", "counter",
			   "completion posts a core's ring refused (held, retried)", st.post_failures);
		STORE_STAT("post_retries", "counter", "held completions delivered by a retry",
			   st.post_retries);
		STORE_STAT("post_pending", "gauge", "completions held for a refusing ring now",
			   st.post_pending);
		STORE_STAT("post_abandoned", "counter", "held completions given up at close",
			   st.post_abandoned);
#undef STORE_STAT
	}
	return n;
}

int rr_metrics_render(const struct rr_broker *b, char **out, size_t *len)
{
	/* Render, and again in a bigger buffer until it fits: the text grows
	 * with the cores (--cores allows 256). */
	for (size_t cap = 64 * 1024; cap <= (64u << 20); cap *= 4) {
		char *buf = malloc(cap);
		if (buf == NULL)
			return -ENOMEM;
		size_t n = render(b, buf, cap);
		if (n + 1 < cap) {
			*out = buf;
			*len = n;
			return 0;
		}
		free(buf);
	}
	return -ENOMEM;
}
