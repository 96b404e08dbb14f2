/*
 * The cluster thread: opening and closing, the queue the cores submit to,
 * and the thread's loop. Interface and guarantees in cluster.h.
 *
 * DESIGN: one thread, one bounded FIFO of requests and raw publishes
 * guarded by a mutex (a core holds it for a few instructions; full is
 * -EAGAIN, with a per-core quota so one busy core cannot take every slot),
 * and an inbox the callbacks of libnats' threads push onto under the same
 * mutex: the messages of subscriptions, and events (acks, connection up and
 * down, a subscription's end). A producer signals the condition variable
 * only when the thread says it is idle. Each turn the thread takes the
 * inbox and a batch of the queue in one critical section, then, unlocked:
 * routes messages to their cores' post lists (dropping those of a
 * subscription the core gave up), handles the events, runs the batch
 * against libnats, and posts everything to the cores (cluster_post.c).
 * Messages go before the events of the same turn, so a subscription's end,
 * which libnats signals after its last message, is seen after them.
 *
 * Closing walks four steps, each bounded: stop taking submits; let acks in
 * flight arrive (CL_CLOSE_ACK_WAIT_MS) then fail the rest; close the
 * connection and wait for its closed callback and the subscriptions' ends
 * (CL_CLOSE_NATS_WAIT_MS); post what is left, retrying refusing rings for
 * CL_POST_CLOSE_WAIT_MS.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/cluster_int.h"
#include "core/log.h"
#include "core/time.h"

/* ---- states ---- */

uint32_t rr_cluster_cores(const struct rr_cluster *cl)
{
	return cl->opts.cores;
}

/* ---- subjects ---- */

/* protocol.md's room alphabet */
static bool room_byte(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '~' || c == '-';
}

int rr_cluster_room_subject(char *buf, size_t cap, const char *prefix, const char *room,
			    size_t room_len)
{
	assert(buf != NULL && prefix != NULL && prefix[0] != '\0');
	if (room == NULL || room_len == 0 || room_len > RR_CLUSTER_ROOM_MAX)
		return -EINVAL;
	if (cap > RR_CLUSTER_SUBJECT_MAX + 1)
		cap = RR_CLUSTER_SUBJECT_MAX + 1;
	size_t n = strlen(prefix);

	if (n + 2 > cap)
		return -ENAMETOOLONG;
	memcpy(buf, prefix, n);
	buf[n++] = '.';
	for (size_t i = 0; i < room_len; i++) {
		unsigned char c = (unsigned char)room[i];

		if (!room_byte(c))
			return -EINVAL;
		const char *esc = c == '.' ? "~2e" : c == '~' ? "~7e" : NULL;
		size_t k = esc ? 3 : 1;

		if (n + k + 1 > cap)
			return -ENAMETOOLONG;
		if (esc)
			memcpy(buf + n, esc, 3);
		else
			buf[n] = (char)c;
		n += k;
	}
	buf[n] = '\0';
	return (int)n;
}

int rr_cluster_subject_room(char *buf, size_t cap, const char *subject)
{
	assert(buf != NULL && subject != NULL);
	const char *tok = strrchr(subject, '.');
	size_t n = 0;

	tok = tok ? tok + 1 : subject;
	if (*tok == '\0')
		return -EINVAL;
	for (const char *p = tok; *p != '\0'; p++) {
		char c = *p;

		if (c == '~') {
			if (p[1] == '2' && p[2] == 'e')
				c = '.';
			else if (p[1] == '7' && p[2] == 'e')
				c = '~';
			else
				return -EINVAL;
			p += 2;
		} else if (!room_byte((unsigned char)c) || c == '.') {
			return -EINVAL;
		}
		if (n + 2 > cap)
			return -ENAMETOOLONG;
		buf[n++] = c;
	}
	if (n > RR_CLUSTER_ROOM_MAX)
		return -EINVAL;
	buf[n] = '\0';
	return (int)n;
}

/* ---- submission ---- */

static int check_subject(const char *subject)
{
	if (subject == NULL)
		return -EINVAL;
	size_t n = strnlen(subject, RR_CLUSTER_SUBJECT_MAX + 1);

	if (n == 0 || n > RR_CLUSTER_SUBJECT_MAX)
		return -EINVAL;
	/* NATS subjects are space-free tokens; a space would split the
	 * protocol line */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)subject[i] <= ' ' || subject[i] == 0x7f)
			return -EINVAL;
	return 0;
}

static int validate(const struct rr_cluster_req *req)
{
	switch (req->op) {
	case RR_CLUSTER_JS_PUBLISH:
		if (req->len > RR_CLUSTER_PAYLOAD_MAX)
			return -EMSGSIZE;
		if (req->msg_id != NULL && check_subject(req->msg_id) < 0)
			return -EINVAL; /* a header value: printable, no spaces */
		if (req->len > 0 && req->data == NULL)
			return -EINVAL;
		return check_subject(req->subject);
	case RR_CLUSTER_SUBSCRIBE:
	case RR_CLUSTER_JS_CONSUME:
		return req->on_msg == NULL ? -EINVAL : check_subject(req->subject);
	case RR_CLUSTER_UNSUBSCRIBE:
		return req->sub == NULL ? -EINVAL : 0;
	case RR_CLUSTER_JS_LAST:
		return check_subject(req->subject);
	case RR_CLUSTER_CORE_STOP:
		return 0;
	}
	return -EINVAL;
}

static int enqueue(struct rr_cluster *cl, void *p, uint32_t core, bool raw)
{
	int ret = 0;

	pthread_mutex_lock(&cl->mu);
	if (cl->stopping) {
		ret = -ESHUTDOWN;
	} else if (cl->core_len[core] >= cl->opts.queue_capacity) {
		ret = -EAGAIN;
	} else {
		assert(cl->q_len < cl->q_cap); /* the quotas add up to q_cap */
		cl->q[(cl->q_head + cl->q_len) % cl->q_cap] = (struct cl_qent){p, core, raw};
		cl->q_len++;
		cl->core_len[core]++;
		rr_cl_wake_locked(cl);
	}
	pthread_mutex_unlock(&cl->mu);
	return ret;
}

int rr_cluster_submit(struct rr_cluster *cl, struct rr_cluster_req *req)
{
	assert(cl != NULL && req != NULL);
	assert(req->done != NULL && req->core < cl->opts.cores);

	int ret = validate(req);

	if (ret < 0)
		return ret;
	req->res = 0;
	req->seq = 0;
	req->duplicate = false;
	req->_next = NULL;
	req->_nmsg = NULL;
	if (req->op == RR_CLUSTER_SUBSCRIBE || req->op == RR_CLUSTER_JS_CONSUME)
		req->sub = NULL;
	if (req->op == RR_CLUSTER_JS_LAST)
		req->room_id = 0;
	ret = enqueue(cl, req, req->core, false);
	if (ret == -EAGAIN && req->op == RR_CLUSTER_JS_PUBLISH)
		CL_STAT_ADD(cl, publish_refused, 1);
	return ret;
}

int rr_cluster_publish(struct rr_cluster *cl, uint32_t core, const char *subject,
		       const void *data, uint32_t len)
{
	return rr_cluster_publish2(cl, core, subject, NULL, 0, data, len);
}

static int publish(struct rr_cluster *cl, uint32_t core, const char *subject, const void *head,
		   uint32_t head_len, const void *data, uint32_t len, bool control);

int rr_cluster_publish2(struct rr_cluster *cl, uint32_t core, const char *subject,
			const void *head, uint32_t head_len, const void *data, uint32_t len)
{
	return publish(cl, core, subject, head, head_len, data, len, false);
}

int rr_cluster_publish_control(struct rr_cluster *cl, uint32_t core, const char *subject,
			       const void *data, uint32_t len)
{
	return publish(cl, core, subject, NULL, 0, data, len, true);
}

static int publish(struct rr_cluster *cl, uint32_t core, const char *subject, const void *head,
		   uint32_t head_len, const void *data, uint32_t len, bool control)
{
	assert(cl != NULL && core < cl->opts.cores);

	int ret = check_subject(subject);

	if (ret < 0)
		return ret;
	if (len > RR_CLUSTER_PAYLOAD_MAX || head_len > RR_CLUSTER_PAYLOAD_MAX - len)
		return -EMSGSIZE;
	if ((len > 0 && data == NULL) || (head_len > 0 && head == NULL))
		return -EINVAL;
	if (rr_cluster_state(cl) != RR_CLUSTER_CONNECTED) {
		CL_STAT_ADD(cl, publish_refused, 1);
		return -ENOTCONN;
	}
	size_t sn = strlen(subject);
	struct cl_raw *r = malloc(sizeof(*r) + sn + 1 + head_len + len);

	if (r == NULL)
		return -ENOMEM;
	r->core = core;
	r->control = control;
	r->len = head_len + len;
	r->subject = (char *)(r + 1);
	r->data = (uint8_t *)r->subject + sn + 1;
	memcpy(r->subject, subject, sn + 1);
	if (head_len > 0)
		memcpy(r->data, head, head_len);
	if (len > 0)
		memcpy(r->data + head_len, data, len);
	ret = enqueue(cl, r, core, true);
	if (ret < 0) {
		free(r);
		CL_STAT_ADD(cl, publish_refused, 1);
	}
	return ret;
}

uint64_t rr_cluster_stream_created(const struct rr_cluster *cl)
{
	return atomic_load_explicit(&cl->stream_created, memory_order_relaxed);
}

const char *rr_cluster_node_name(const struct rr_cluster *cl)
{
	return cl->node_name;
}

void rr_cluster_deliver(struct rr_cluster_msg *msg)
{
	RR_HB_ACQUIRE(msg); /* published by the cluster thread through MSG_RING */
	msg->_on_msg(msg);
	natsMsg_Destroy(msg->_nmsg);
	free(msg);
}

/* ---- one turn ---- */

/* The messages taken from the inbox: to their cores, unless the core gave
 * the subscription up (then no message of it may arrive after the
 * UNSUBSCRIBE completion, which went out before). */
static void route_msgs(struct rr_cluster *cl, struct rr_cluster_msg *m, bool stopping)
{
	uint64_t dropped_bytes = 0;

	while (m != NULL) {
		struct rr_cluster_msg *next = m->_next;
		struct rr_cluster_sub *sub = m->_sub;

		m->_next = NULL;
		if (sub->unsubscribed || stopping || cl->core_stopped[sub->core] ||
		    !rr_cl_post_add(cl, sub->core, rr_ud_ptr(RR_UD_CLUSTER_MSG, m), sub->ring_fd,
				    m->len)) {
			dropped_bytes += m->len;
			natsMsg_Destroy(m->_nmsg);
			free(m);
		} else if (sub->control) {
			CL_STAT_ADD(cl, control_in, 1);
		} else {
			__atomic_fetch_add(&cl->core_st[sub->core].msgs_in, 1, __ATOMIC_RELAXED);
		}
		m = next;
	}
	if (dropped_bytes > 0) {
		pthread_mutex_lock(&cl->mu);
		cl->inbox_bytes -= dropped_bytes;
		pthread_mutex_unlock(&cl->mu);
	}
}

static void handle_events(struct rr_cluster *cl, struct cl_event *ev)
{
	while (ev != NULL) {
		struct cl_event *next = ev->next;

		switch (ev->kind) {
		case CL_EV_UP:
			if (rr_cluster_state(cl) == RR_CLUSTER_CONNECTED)
				rr_cl_nats_up(cl);
			break;
		case CL_EV_DOWN:
			if (atomic_load(&cl->closing))
				rr_info("connection to NATS closed");
			else
				rr_warn("lost the connection to NATS: reconnecting; JetStream "
					"publishes waiting for their ack fail");
			/* an ack can no longer come on this connection: say so
			 * now rather than at the timeout (never a false ack) */
			rr_cl_nats_fail_unacked(cl, -ENOTCONN);
			rr_cl_get_fail_all(cl, -ENOTCONN);
			break;
		case CL_EV_CLOSED:
			cl->closed_seen = true;
			break;
		case CL_EV_ACK:
			rr_cl_nats_ack(cl, ev);
			break;
		case CL_EV_GOT:
			rr_cl_get_reply(cl, ev->nmsg);
			break;
		case CL_EV_SUB_DONE:
			ev->sub->done = true;
			rr_cl_sub_maybe_free(cl, ev->sub);
			break;
		}
		free(ev);
		ev = next;
	}
}

/* A request or publish taken while closing: refused, not run. */
static void refuse(struct rr_cluster *cl, struct cl_qent *e)
{
	if (e->raw) {
		free(e->p);
		rr_cl_uncharge(cl, e->core, 1);
		CL_STAT_ADD(cl, publish_refused, 1);
		return;
	}
	struct rr_cluster_req *req = e->p;

	if (req->op == RR_CLUSTER_UNSUBSCRIBE) {
		rr_cl_nats_run(cl, e); /* the core is done with it either way */
		return;
	}
	rr_cl_finish(cl, req, -ESHUTDOWN);
}

enum phase {
	PH_RUN,	      /* serving */
	PH_ACKS,      /* closing: acks in flight may still arrive */
	PH_NATS,      /* closing: the connection is closing */
	PH_POSTS,     /* closing: posting what is left */
	PH_DONE,
};

static void wait_until(struct rr_cluster *cl, uint64_t until_ms)
{
	cl->idle = true;
	if (until_ms == UINT64_MAX) {
		pthread_cond_wait(&cl->cv, &cl->mu);
	} else {
		struct timespec dl = {
		    .tv_sec = (time_t)(until_ms / 1000),
		    .tv_nsec = (long)(until_ms % 1000) * 1000000,
		};

		pthread_cond_timedwait(&cl->cv, &cl->mu, &dl);
	}
	cl->idle = false;
}

/* Take the inbox and a batch of the queue (mu held). */
static uint32_t take(struct rr_cluster *cl, struct rr_cluster_msg **msgs, struct cl_event **evs)
{
	uint32_t n = 0;

	*msgs = cl->inbox_head;
	*evs = cl->ev_head;
	cl->inbox_head = cl->inbox_tail = NULL;
	cl->ev_head = cl->ev_tail = NULL;
	while (cl->q_len > 0 && n < CL_BATCH_MAX) {
		cl->batch[n++] = cl->q[cl->q_head];
		cl->q_head = (cl->q_head + 1) % cl->q_cap;
		cl->q_len--;
	}
	return n;
}

static void *cluster_main(void *arg)
{
	struct rr_cluster *cl = arg;
	enum phase ph = PH_RUN;
	uint64_t phase_end = UINT64_MAX;

	pthread_setname_np(pthread_self(), "rr-cluster");
	rr_log_set_thread("cluster");
	rr_cl_nats_start(cl);
	pthread_mutex_lock(&cl->mu);
	while (ph != PH_DONE) {
		uint64_t now = rr_now_ms();
		/* direct gets pending: the cluster thread's own list */
		uint64_t get_due = cl->get_head != NULL
				       ? (cl->get_head->_sent_ns / 1000000) + CL_GET_TIMEOUT_MS
				       : UINT64_MAX;
		bool work = cl->q_len > 0 || cl->inbox_head != NULL || cl->ev_head != NULL ||
			    now >= get_due;

		if (!work && ph == PH_RUN && cl->stopping) {
			ph = PH_ACKS;
			phase_end = now + CL_CLOSE_ACK_WAIT_MS;
		}
		if (!work && ph == PH_ACKS && (cl->unacked == 0 || now >= phase_end)) {
			pthread_mutex_unlock(&cl->mu);
			rr_cl_nats_fail_unacked(cl, -ESHUTDOWN);
			rr_cl_get_fail_all(cl, -ESHUTDOWN);
			rr_cl_nats_close(cl);
			pthread_mutex_lock(&cl->mu);
			ph = PH_NATS;
			phase_end = rr_now_ms() + CL_CLOSE_NATS_WAIT_MS;
			continue;
		}
		if (!work && ph == PH_NATS &&
		    ((cl->closed_seen && cl->subs == NULL) || now >= phase_end)) {
			pthread_mutex_unlock(&cl->mu);
			rr_cl_nats_destroy(cl);
			pthread_mutex_lock(&cl->mu);
			ph = PH_POSTS;
			phase_end = rr_now_ms() + CL_POST_CLOSE_WAIT_MS;
			continue;
		}
		if (!work && ph == PH_POSTS && (cl->post_pending == 0 || now >= phase_end)) {
			ph = PH_DONE;
			break;
		}
		if (!work && (cl->post_pending == 0 || now < cl->post_next_ms)) {
			uint64_t until = cl->post_pending ? cl->post_next_ms : UINT64_MAX;

			if (get_due < until)
				until = get_due;

			if (ph != PH_RUN && phase_end < until)
				until = phase_end;
			wait_until(cl, until);
			continue;
		}
		struct rr_cluster_msg *msgs;
		struct cl_event *evs;
		uint32_t n = take(cl, &msgs, &evs);
		bool stopping = cl->stopping;

		pthread_mutex_unlock(&cl->mu);
		route_msgs(cl, msgs, stopping);
		handle_events(cl, evs);
		rr_cl_get_sweep(cl, rr_now_ns());
		for (uint32_t i = 0; i < n; i++) {
			if (stopping)
				refuse(cl, &cl->batch[i]);
			else
				rr_cl_nats_run(cl, &cl->batch[i]);
		}
		rr_cl_post_flush(cl, ph != PH_RUN);
		pthread_mutex_lock(&cl->mu);
	}
	pthread_mutex_unlock(&cl->mu);
	rr_cl_post_abandon(cl);
	return NULL;
}

/* ---- opening and closing ---- */

/* Split "a,b,c" in place into out[] (at most max); count or -EINVAL. */
static int split_list(char *buf, const char **out, int max)
{
	int n = 0;

	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		if (n == max)
			return -EINVAL;
		out[n++] = tok;
	}
	return n;
}

/* nats://HOST:PORT with a non-empty host and a port 1..65535. */
static bool url_ok(const char *u)
{
	static const char scheme[] = "nats://";

	if (strncmp(u, scheme, sizeof(scheme) - 1) != 0)
		return false;
	const char *host = u + sizeof(scheme) - 1, *colon = strrchr(host, ':');

	if (colon == NULL || colon == host)
		return false;
	char *end;
	unsigned long port = strtoul(colon + 1, &end, 10);

	return colon[1] != '\0' && *end == '\0' && port >= 1 && port <= 65535;
}

static void cluster_free(struct rr_cluster *cl)
{
	rr_cl_post_free(cl);
	free(cl->q);
	free(cl->core_len);
	free(cl->core_stopped);
	free(cl->core_st);
	free(cl->servers_buf);
	free(cl->node_name);
	free(cl->stream);
	free(cl->stream_subjects_buf);
	free(cl->kv_stream);
	free(cl->kv_subject);
	pthread_mutex_destroy(&cl->mu);
	pthread_cond_destroy(&cl->cv);
	free(cl);
}

int rr_cluster_open(struct rr_cluster **out, const struct rr_cluster_opts *opts, char *err,
		    size_t errlen)
{
	struct rr_cluster *cl;
	int ret = -ENOMEM;

	assert(out != NULL && opts != NULL);
	if (errlen > 0)
		err[0] = '\0';
	if (opts->servers == NULL || opts->servers[0] == '\0') {
		snprintf(err, errlen, "--cluster: no server given");
		return -EINVAL;
	}
	if (opts->cores > RR_CLUSTER_CORES_MAX || opts->queue_capacity > RR_CLUSTER_QUEUE_CEIL) {
		snprintf(err, errlen, "cluster: %u cores or %u queued per core is too many",
			 opts->cores, opts->queue_capacity);
		return -EINVAL;
	}
	cl = calloc(1, sizeof(*cl));
	if (cl == NULL)
		goto fail_msg;
	pthread_mutex_init(&cl->mu, NULL);
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* rr_now_ms's clock */
	pthread_cond_init(&cl->cv, &ca);
	pthread_condattr_destroy(&ca);
	cl->opts = *opts;
	if (cl->opts.cores == 0)
		cl->opts.cores = 1;
	if (cl->opts.queue_capacity == 0)
		cl->opts.queue_capacity = RR_CLUSTER_DEFAULT_QUEUE;
	if (cl->opts.inbox_bytes == 0)
		cl->opts.inbox_bytes = RR_CLUSTER_DEFAULT_INBOX_BYTES;
	if (cl->opts.ack_timeout_ms == 0)
		cl->opts.ack_timeout_ms = RR_CLUSTER_DEFAULT_ACK_TIMEOUT_MS;
	if (cl->opts.reconnect_wait_ms == 0)
		cl->opts.reconnect_wait_ms = RR_CLUSTER_DEFAULT_RECONNECT_WAIT_MS;

	cl->servers_buf = strdup(opts->servers);
	cl->node_name = strdup(opts->node_name ? opts->node_name : "ringroom");
	if (cl->servers_buf == NULL || cl->node_name == NULL)
		goto fail_free;
	cl->nservers = split_list(cl->servers_buf, cl->servers, RR_CLUSTER_SERVERS_MAX);
	if (cl->nservers <= 0) {
		snprintf(err, errlen, "--cluster: give 1 to %d nats:// URLs, comma-separated",
			 RR_CLUSTER_SERVERS_MAX);
		ret = -EINVAL;
		goto fail_free;
	}
	for (int i = 0; i < cl->nservers; i++) {
		if (!url_ok(cl->servers[i])) {
			snprintf(err, errlen, "--cluster: '%.200s' is not nats://HOST:PORT",
				 cl->servers[i]);
			ret = -EINVAL;
			goto fail_free;
		}
	}
	if (opts->stream != NULL) {
		cl->stream = strdup(opts->stream);
		cl->stream_subjects_buf =
		    strdup(opts->stream_subjects ? opts->stream_subjects : "");
		if (cl->stream == NULL || cl->stream_subjects_buf == NULL)
			goto fail_free;
		cl->nstream_subjects = split_list(cl->stream_subjects_buf, cl->stream_subjects,
						  RR_CLUSTER_SERVERS_MAX);
		if (cl->nstream_subjects <= 0) {
			snprintf(err, errlen, "cluster: stream %s needs subjects", cl->stream);
			ret = -EINVAL;
			goto fail_free;
		}
	}
	if (opts->kv_stream != NULL) {
		cl->kv_stream = strdup(opts->kv_stream);
		cl->kv_subject = strdup(opts->kv_subject ? opts->kv_subject : "");
		if (cl->kv_stream == NULL || cl->kv_subject == NULL)
			goto fail_free;
	}
		cl->opts.servers = NULL; /* the caller's strings are not kept */
	cl->opts.node_name = cl->node_name;
	cl->opts.stream = cl->stream;
	cl->opts.stream_subjects = NULL;
	cl->opts.kv_stream = cl->kv_stream;
	cl->opts.kv_subject = NULL;

	cl->q_cap = cl->opts.queue_capacity * cl->opts.cores;
	cl->q = calloc(cl->q_cap, sizeof(*cl->q));
	cl->core_len = calloc(cl->opts.cores, sizeof(*cl->core_len));
	cl->core_stopped = calloc(cl->opts.cores, sizeof(*cl->core_stopped));
	cl->core_st = calloc(cl->opts.cores, sizeof(*cl->core_st));
	if (cl->q == NULL || cl->core_len == NULL || cl->core_stopped == NULL ||
	    cl->core_st == NULL)
		goto fail_free;
	ret = rr_cl_post_init(cl);
	if (ret < 0) {
		snprintf(err, errlen, "cluster: io_uring for posting: %s", strerror(-ret));
		goto fail_free;
	}
	atomic_init(&cl->state, RR_CLUSTER_CONNECTING);
	ret = -pthread_create(&cl->thread, NULL, cluster_main, cl);
	if (ret < 0) {
		snprintf(err, errlen, "cluster: starting the thread: %s", strerror(-ret));
		goto fail_free;
	}
	*out = cl;
	return 0;

fail_free:
	cluster_free(cl);
fail_msg:
	if (ret == -ENOMEM && errlen > 0 && err[0] == '\0')
		snprintf(err, errlen, "cluster: out of memory");
	return ret;
}

void rr_cluster_close(struct rr_cluster *cl)
{
	if (cl == NULL)
		return;
	atomic_store(&cl->closing, true);
	pthread_mutex_lock(&cl->mu);
	cl->stopping = true;
	cl->idle = true; /* make sure it is signalled */
	rr_cl_wake_locked(cl);
	pthread_mutex_unlock(&cl->mu);
	pthread_join(cl->thread, NULL);
	cluster_free(cl);
}

/* ---- stats ---- */

void rr_cluster_stats_get(struct rr_cluster *cl, struct rr_cluster_stats *st,
			  struct rr_cluster_core_stats *per_core)
{
#define LOAD(field) st->field = __atomic_load_n(&cl->st.field, __ATOMIC_RELAXED)
	LOAD(subscriptions);
	LOAD(reconnects);
	LOAD(disconnects);
	LOAD(publish_refused);
	LOAD(publish_failures);
	LOAD(js_acks);
	LOAD(js_failures);
	LOAD(late_acks);
	LOAD(control_out);
	LOAD(control_in);
	LOAD(dropped);
	LOAD(post_failures);
	LOAD(post_retries);
	LOAD(post_abandoned);
#undef LOAD
	for (unsigned k = 0; k <= RR_HIST_BUCKETS; k++)
		st->js_ack_rtt.bucket[k] =
		    __atomic_load_n(&cl->st.js_ack_rtt.bucket[k], __ATOMIC_RELAXED);
	st->js_ack_rtt.sum_ns = __atomic_load_n(&cl->st.js_ack_rtt.sum_ns, __ATOMIC_RELAXED);
	st->state = rr_cluster_state(cl);
	if (per_core == NULL)
		return;
	for (uint32_t c = 0; c < cl->opts.cores; c++) {
		per_core[c].msgs_out = __atomic_load_n(&cl->core_st[c].msgs_out, __ATOMIC_RELAXED);
		per_core[c].msgs_in = __atomic_load_n(&cl->core_st[c].msgs_in, __ATOMIC_RELAXED);
	}
}
