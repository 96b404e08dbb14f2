/*
 * RR_CLUSTER_JS_LAST without blocking the cluster thread: a JetStream
 * "direct get" of the last message on a subject, sent as a request whose
 * reply comes back on this connection's own inbox subscription.
 *
 * DESIGN: js_GetLastMsg waits a round trip on the calling thread; the
 * cluster thread serves every core, so a burst of lookups (members of a
 * dead node resuming their sessions on this one, rooms loading) would hold
 * up every publish behind them. Instead the request goes out with
 * natsConnection_PublishRequest to $JS.API.DIRECT.GET.<stream> (the streams
 * are created with AllowDirect) with the reply subject <inbox>.<token>; the
 * reply (the stored message itself, its stream sequence in the
 * Nats-Sequence header, or a Status header: 404 none, 408 timeout, 503 no
 * responders) arrives on libnats' delivery thread, which only pushes it as
 * an event; the cluster thread matches the token against its pending list
 * and finishes the request. A connection loss fails what is pending
 * (-ENOTCONN); a reply that never comes fails at CL_GET_TIMEOUT_MS.
 *
 * The same way, by stream sequence, a publish JetStream acked as a
 * duplicate (a client's resend after a lost ack) reads back the original's
 * Rr-Id before it finishes: it was stored either way, so a failed lookup
 * finishes it as stored with room id 0.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_int.h"
#include "core/log.h"
#include "core/time.h"

static void on_reply(natsConnection *nc, natsSubscription *nsub, natsMsg *nmsg, void *closure)
{
	struct rr_cluster *cl = closure;
	struct cl_event *ev = calloc(1, sizeof(*ev));

	(void)nc;
	(void)nsub;
	if (ev == NULL) {
		natsMsg_Destroy(nmsg); /* its request times out */
		return;
	}
	ev->kind = CL_EV_GOT;
	ev->nmsg = nmsg;
	rr_cl_push_event(cl, ev);
}

int rr_cl_get_start(struct rr_cluster *cl)
{
	natsInbox *inbox = NULL;
	natsStatus s = natsInbox_Create(&inbox);

	if (s == NATS_OK) {
		snprintf(cl->get_prefix, sizeof(cl->get_prefix), "%s.", (const char *)inbox);
		natsInbox_Destroy(inbox);
		char wild[sizeof(cl->get_prefix) + 1];

		snprintf(wild, sizeof(wild), "%s*", cl->get_prefix);
		/* works while disconnected: the interest goes out on connect */
		s = natsConnection_Subscribe(&cl->get_sub, cl->nc, wild, on_reply, cl);
	}
	if (s != NATS_OK) {
		rr_err("cluster: the reply subscription for lookups: %s", natsStatus_GetText(s));
		cl->get_sub = NULL;
		return -EIO;
	}
	return 0;
}

static void pending_add(struct rr_cluster *cl, struct rr_cluster_req *req)
{
	req->_next = NULL;
	if (cl->get_tail != NULL)
		cl->get_tail->_next = req;
	else
		cl->get_head = req;
	cl->get_tail = req;
}

/* Take the pending request with this token out of the list, or NULL. */
static struct rr_cluster_req *pending_take(struct rr_cluster *cl, uint64_t token)
{
	struct rr_cluster_req *req = cl->get_head, *prev = NULL;

	while (req != NULL && req->_token != token) {
		prev = req;
		req = req->_next;
	}
	if (req == NULL)
		return NULL;
	if (prev != NULL)
		prev->_next = req->_next;
	else
		cl->get_head = req->_next;
	if (cl->get_tail == req)
		cl->get_tail = prev;
	req->_next = NULL;
	return req;
}

/* Finish a lookup: a duplicate's is a publish that was stored. */
static void get_finish(struct rr_cluster *cl, struct rr_cluster_req *req, int res)
{
	if (req->_original && res != 0) {
		req->room_id = 0;
		res = 0;
	}
	rr_cl_finish(cl, req, res);
}

/* Ask for the message the body names, on `stream`. */
static void get_send(struct rr_cluster *cl, struct rr_cluster_req *req, const char *stream,
		     const char *body, int len)
{
	char subject[64 + RR_CLUSTER_SUBJECT_MAX], reply[sizeof(cl->get_prefix) + 24];

	if (stream == NULL) {
		get_finish(cl, req, -ENOENT);
		return;
	}
	if (cl->get_sub == NULL || rr_cluster_state(cl) != RR_CLUSTER_CONNECTED) {
		get_finish(cl, req, -ENOTCONN);
		return;
	}
	req->_token = ++cl->get_next_token;
	snprintf(subject, sizeof(subject), "$JS.API.DIRECT.GET.%s", stream);
	snprintf(reply, sizeof(reply), "%s%" PRIu64, cl->get_prefix, req->_token);
	natsStatus s = natsConnection_PublishRequest(cl->nc, subject, reply, body, len);

	if (s != NATS_OK) {
		get_finish(cl, req, s == NATS_CONNECTION_CLOSED || s == NATS_CONNECTION_DISCONNECTED
					  ? -ENOTCONN
					  : -EIO);
		return;
	}
	req->_sent_ns = rr_now_ns();
	pending_add(cl, req);
}

void rr_cl_get_run(struct rr_cluster *cl, struct rr_cluster_req *req)
{
	char body[32 + RR_CLUSTER_SUBJECT_MAX];
	/* subjects are made of subject-safe bytes: nothing to escape */
	int n = snprintf(body, sizeof(body), "{\"last_by_subj\":\"%s\"}", req->subject);

	get_send(cl, req, req->kv ? cl->kv_stream : cl->stream, body, n);
}

void rr_cl_get_original(struct rr_cluster *cl, struct rr_cluster_req *req)
{
	char body[48];
	int n = snprintf(body, sizeof(body), "{\"seq\":%" PRIu64 "}", req->seq);

	req->_original = true;
	get_send(cl, req, cl->stream, body, n);
}

void rr_cl_get_reply(struct rr_cluster *cl, natsMsg *m)
{
	const char *subj = natsMsg_GetSubject(m);
	size_t pl = strlen(cl->get_prefix);
	const char *v = NULL;

	if (strncmp(subj, cl->get_prefix, pl) != 0) {
		natsMsg_Destroy(m);
		return;
	}
	struct rr_cluster_req *req = pending_take(cl, strtoull(subj + pl, NULL, 10));

	if (req == NULL) { /* it timed out, or failed with the connection */
		natsMsg_Destroy(m);
		return;
	}
	int res = 0;

	if (natsMsgHeader_Get(m, "Status", &v) == NATS_OK && v != NULL) {
		int st = atoi(v);

		res = st == 404 || st == 503 ? -ENOENT : st == 408 ? -ETIMEDOUT : -EIO;
		if (res == -EIO)
			rr_warn("cluster: a direct get for %s: status %s",
				req->subject, v);
	} else {
		if (natsMsgHeader_Get(m, "Nats-Sequence", &v) == NATS_OK && v != NULL)
			req->seq = strtoull(v, NULL, 10);
		req->room_id = 0;
		if (natsMsgHeader_Get(m, "Rr-Id", &v) == NATS_OK && v != NULL)
			req->room_id = strtoull(v, NULL, 10);
		if (req->want_data) {
			int len = natsMsg_GetDataLength(m);

			req->out_data = malloc(len > 0 ? (size_t)len : 1);
			if (req->out_data == NULL) {
				res = -ENOMEM;
			} else {
				if (len > 0)
					memcpy(req->out_data, natsMsg_GetData(m), (size_t)len);
				req->out_len = (uint32_t)len;
			}
		}
	}
	natsMsg_Destroy(m);
	get_finish(cl, req, res);
}

void rr_cl_get_fail_all(struct rr_cluster *cl, int err)
{
	while (cl->get_head != NULL)
		get_finish(cl, pending_take(cl, cl->get_head->_token), err);
}

uint64_t rr_cl_get_sweep(struct rr_cluster *cl, uint64_t now_ns)
{
	const uint64_t limit = (uint64_t)CL_GET_TIMEOUT_MS * 1000000;

	/* in send order: the oldest first */
	while (cl->get_head != NULL && now_ns - cl->get_head->_sent_ns >= limit)
		get_finish(cl, pending_take(cl, cl->get_head->_token), -ETIMEDOUT);
	return cl->get_head != NULL ? cl->get_head->_sent_ns + limit : 0;
}
