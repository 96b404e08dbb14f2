/* Prometheus text for /metrics: see gate.h. */
#include "core/time.h"
#include "gate/gate.h"
#include "persist/store.h"
#if RR_HAVE_CLUSTER
#include "cluster/cluster.h"
#endif
#include "reactor/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stdio.h>

/* The version for ringroom_build_info: main.c's, until meson passes it to
 * every file (-DRINGROOM_VERSION from meson.project_version()). */
#ifndef RINGROOM_VERSION
#define RINGROOM_VERSION "0.1.0"
#endif

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

/* The exposed name: a counter's ends in _total. */
static const char *metric_name(char out[96], const char *base, const char *kind)
{
	snprintf(out, 96, "%s%s", base, strcmp(kind, "counter") == 0 ? "_total" : "");
	return out;
}

/* Add one core's histogram to *sum (relaxed loads, like the counters). */
static void hist_add(struct rr_hist *sum, const struct rr_hist *h)
{
	for (unsigned k = 0; k <= RR_HIST_BUCKETS; k++)
		sum->bucket[k] += __atomic_load_n(&h->bucket[k], __ATOMIC_RELAXED);
	sum->sum_ns += __atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED);
}

/* _bucket lines (cumulative, le in seconds), _sum and _count. */
static size_t render_hist(char *buf, size_t cap, size_t n, const char *name,
			  const struct rr_hist *h)
{
	uint64_t cum = 0;
	for (unsigned k = 0; k < RR_HIST_BUCKETS; k++) {
		cum += h->bucket[k];
		n = put(buf, cap, n, "%s_bucket{le=\"%g\"} %llu\n", name,
			(double)(1ull << k) * 1e-6, (unsigned long long)cum);
	}
	cum += h->bucket[RR_HIST_BUCKETS];
	n = put(buf, cap, n,
		"%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n%s_count %llu\n", name,
		(unsigned long long)cum, name, (double)h->sum_ns / 1e9, name,
		(unsigned long long)cum);
	return n;
}

#if RR_HAVE_CLUSTER
/* The cluster thread's series (--cluster): connection state, messages per
 * core, JetStream acks and their round trip, the posting machinery. */
static size_t render_cluster(struct rr_cluster *cl, char *buf, size_t cap, size_t n)
{
	static const enum rr_cluster_state states[] = {
	    RR_CLUSTER_CONNECTING, RR_CLUSTER_CONNECTED, RR_CLUSTER_RECONNECTING,
	    RR_CLUSTER_CLOSED};
	uint32_t ncores = rr_cluster_cores(cl);
	struct rr_cluster_core_stats *pc = calloc(ncores, sizeof(*pc));
	struct rr_cluster_stats st;
	char mname[96];

	rr_cluster_stats_get(cl, &st, pc);
	n = put(buf, cap, n, "# HELP ringroom_cluster_up 1 while connected to NATS\n"
			     "# TYPE ringroom_cluster_up gauge\n"
			     "ringroom_cluster_up %d\n",
		st.state == RR_CLUSTER_CONNECTED);
	n = put(buf, cap, n, "# HELP ringroom_cluster_state the NATS connection's state (1 for "
			     "the current one)\n# TYPE ringroom_cluster_state gauge\n");
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		n = put(buf, cap, n, "ringroom_cluster_state{state=\"%s\"} %d\n",
			rr_cluster_state_name(states[i]), st.state == states[i]);
	if (pc != NULL) {
		n = put(buf, cap, n, "# HELP ringroom_cluster_messages_out_total messages a core "
				     "published to NATS (raw and JetStream)\n"
				     "# TYPE ringroom_cluster_messages_out_total counter\n");
		for (uint32_t c = 0; c < ncores; c++)
			n = put(buf, cap, n, "ringroom_cluster_messages_out_total{core=\"%u\"} %llu\n",
				c, (unsigned long long)pc[c].msgs_out);
		n = put(buf, cap, n, "# HELP ringroom_cluster_messages_in_total messages from NATS "
				     "subscriptions delivered to a core\n"
				     "# TYPE ringroom_cluster_messages_in_total counter\n");
		for (uint32_t c = 0; c < ncores; c++)
			n = put(buf, cap, n, "ringroom_cluster_messages_in_total{core=\"%u\"} %llu\n",
				c, (unsigned long long)pc[c].msgs_in);
		free(pc);
	}
#define CLUSTER_STAT(name, kind, help, v)                                                  \
	n = put(buf, cap, n, "# HELP %s " help "\n# TYPE %s " kind "\n%s %llu\n",              \
		metric_name(mname, "ringroom_cluster_" name, kind), mname, mname,          \
		(unsigned long long)(v))
	CLUSTER_STAT("subscriptions", "gauge", "NATS subscriptions of rooms now (not the heartbeats')",
		     st.subscriptions);
	CLUSTER_STAT("disconnects", "counter", "connections to NATS lost", st.disconnects);
	CLUSTER_STAT("reconnects", "counter", "connections to NATS regained", st.reconnects);
	CLUSTER_STAT("publish_refused", "counter",
		     "publishes refused at once: NATS down or the core's queue full",
		     st.publish_refused);
	CLUSTER_STAT("publish_failures", "counter", "publishes libnats failed", st.publish_failures);
	CLUSTER_STAT("js_acks", "counter", "JetStream publishes acked (stored)", st.js_acks);
	CLUSTER_STAT("js_failures", "counter", "JetStream publishes answered with an error",
		     st.js_failures);
	CLUSTER_STAT("late_acks", "counter", "JetStream acks after their publish had failed",
		     st.late_acks);
	CLUSTER_STAT("heartbeats_out", "counter",
		     "heartbeats this node sent (one a second; not in messages_out)",
		     st.control_out);
	CLUSTER_STAT("heartbeats_in", "counter",
		     "heartbeats of other nodes received, over every core (not in messages_in)",
		     st.control_in);
	CLUSTER_STAT("dropped", "counter", "incoming messages dropped (cores behind)", st.dropped);
	CLUSTER_STAT("post_failures", "counter", "posts a core's ring refused (held, retried)",
		     st.post_failures);
	CLUSTER_STAT("post_retries", "counter", "held posts delivered by a retry",
		     st.post_retries);
	CLUSTER_STAT("post_abandoned", "counter", "held posts given up at close",
		     st.post_abandoned);
#undef CLUSTER_STAT
	n = put(buf, cap, n, "# HELP ringroom_cluster_js_ack_seconds JetStream publish to its ack\n"
			     "# TYPE ringroom_cluster_js_ack_seconds histogram\n");
	return render_hist(buf, cap, n, "ringroom_cluster_js_ack_seconds", &st.js_ack_rtt);
}
#endif

static size_t render(const struct rr_broker *b, char *buf, size_t cap)
{
	char mname[96];
	size_t n = 0;
	if (cap == 0)
		return 0;
	buf[0] = '\0';
	n = put(buf, cap, n, "# HELP ringroom_build_info the running build (always 1)\n"
			     "# TYPE ringroom_build_info gauge\n"
			     "ringroom_build_info{version=\"%s\"} 1\n",
		RINGROOM_VERSION);
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
	n = put(buf, cap, n, "# HELP %s " help "\n# TYPE %s " #kind "\n",                     \
		metric_name(mname, "ringroom_" #name, #kind),                               \
		metric_name(mname, "ringroom_" #name, #kind));                              \
	for (unsigned i = 0; i < b->ncores; i++)                                           \
		n = put(buf, cap, n, "%s{core=\"%u\"} %llu\n", mname, i,                    \
			(unsigned long long)__atomic_load_n(&b->cores[i].stats.name,       \
							    __ATOMIC_RELAXED));
	RR_STATS(RR_STAT_RENDER)
#undef RR_STAT_RENDER
	/* one family's codes are adjacent: HELP and TYPE before the first */
	const char *family = "";
#define RR_STAT_CODED_RENDER(name, fam, code)                                              \
	if (strcmp(family, #fam) != 0) {                                                   \
		family = #fam;                                                             \
		n = put(buf, cap, n,                                                       \
			"# HELP ringroom_" #fam " " RR_STATS_CODED_HELP_##fam              \
			"\n# TYPE ringroom_" #fam " counter\n");                           \
	}                                                                                  \
	for (unsigned i = 0; i < b->ncores; i++)                                           \
		n = put(buf, cap, n, "ringroom_" #fam "{core=\"%u\",code=\"" #code "\"} %llu\n", \
			i,                                                                 \
			(unsigned long long)__atomic_load_n(&b->cores[i].stats.name,       \
							    __ATOMIC_RELAXED));
	RR_STATS_CODED(RR_STAT_CODED_RENDER)
#undef RR_STAT_CODED_RENDER
#define RR_HIST_RENDER(name, help)                                                         \
	{                                                                                  \
		struct rr_hist h = {{0}, 0};                                               \
		for (unsigned i = 0; i < b->ncores; i++)                                   \
			hist_add(&h, &b->cores[i].stats.name);                             \
		n = put(buf, cap, n,                                                       \
			"# HELP ringroom_" #name " " help "\n# TYPE ringroom_" #name         \
			" histogram\n");                                                    \
		n = render_hist(buf, cap, n, "ringroom_" #name, &h);                       \
	}
	RR_HISTS(RR_HIST_RENDER)
#undef RR_HIST_RENDER
	if (rr_gate_cfg.store) {
		struct rr_store_stats st;
		rr_store_stats_get(rr_gate_cfg.store, &st);
#define STORE_STAT(name, kind, help, v)                                                    \
	n = put(buf, cap, n, "# HELP %s " help "\n# TYPE %s " kind "\n%s %llu\n",              \
		metric_name(mname, "ringroom_store_" name, kind), mname, mname,            \
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
#if RR_HAVE_CLUSTER
	if (rr_gate_cfg.cluster)
		n = render_cluster(rr_gate_cfg.cluster, buf, cap, n);
#endif
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
