/*
 * Everything the cluster does with libnats (3.4, Debian 12): the connection
 * and its options, the JetStream context and stream, running the cores'
 * requests, and the callbacks libnats runs on its own threads.
 *
 * DESIGN: the cluster thread is the only caller of libnats for the cores.
 * libnats' threads call back here for a subscription's messages (the
 * library's delivery pool, CL_DELIVERY_THREADS threads for every
 * subscription, instead of one thread per subscription), for JetStream acks
 * (the context's reply subscription) and for connection events (libnats'
 * callback thread, in order). A callback never touches a core or the
 * thread's state: it pushes onto the inbox and returns.
 *
 * JetStream publishes use js_PublishMsgAsync with the context's AckHandler:
 * the handler gets back the very natsMsg we published (and must destroy it),
 * so the publish waiting for it is found by pointer in the unacked list,
 * which is in publish order, and acks mostly come in that order: the search
 * stops within the first few entries. MaxWait on each publish makes libnats
 * report a missing ack as NATS_TIMEOUT through the same handler.
 *
 * Connection loss: libnats reconnects by itself (forever, every
 * reconnect_wait_ms), subscribes again, and would buffer publishes made
 * meanwhile (8 MB) to send after the reconnect. We do not let it: raw
 * publishes are refused while the state is not connected, and a JetStream
 * publish whose ack has not come when the connection drops fails with
 * -ENOTCONN at once. A publish that slipped into libnats' buffer in the
 * instant before the disconnect event may still reach the stream after the
 * reconnect: a false failure is possible, a false ack is not.
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

/* libnats' status as an errno (cluster.h lists what each request gets). */
static int status_errno(natsStatus s)
{
	switch (s) {
	case NATS_OK:
		return 0;
	case NATS_TIMEOUT:
		return -ETIMEDOUT;
	case NATS_NO_RESPONDERS:
		return -ENOENT; /* no stream listens on the subject */
	case NATS_MAX_PAYLOAD:
		return -EMSGSIZE;
	case NATS_NO_MEMORY:
		return -ENOMEM;
	case NATS_CONNECTION_CLOSED:
	case NATS_CONNECTION_DISCONNECTED:
	case NATS_NOT_YET_CONNECTED:
	case NATS_STALE_CONNECTION:
	case NATS_NO_SERVER:
	case NATS_INSUFFICIENT_BUFFER:
		return -ENOTCONN;
	default:
		return -EIO;
	}
}

static struct cl_event *event_new(enum cl_ev_kind kind)
{
	struct cl_event *ev;

	/* an event carries a completion or a state change: wait for memory
	 * rather than lose it (this is one of libnats' threads, not a core) */
	while ((ev = calloc(1, sizeof(*ev))) == NULL) {
		struct timespec ts = {0, 1000000};

		nanosleep(&ts, NULL);
	}
	ev->kind = kind;
	return ev;
}

/* ---- libnats' threads ---- */

static void on_connected(natsConnection *nc, void *closure)
{
	struct rr_cluster *cl = closure;

	(void)nc;
	/* counted with the state change, so the two agree for an observer */
	if (atomic_exchange(&cl->ever_connected, true))
		CL_STAT_ADD(cl, reconnects, 1);
	atomic_store(&cl->state, RR_CLUSTER_CONNECTED);
	rr_cl_push_event(cl, event_new(CL_EV_UP));
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	struct rr_cluster *cl = closure;

	(void)nc;
	CL_STAT_ADD(cl, disconnects, 1);
	if (atomic_load(&cl->closing))
		atomic_store(&cl->state, RR_CLUSTER_CLOSED);
	else
		atomic_store(&cl->state, atomic_load(&cl->ever_connected)
					     ? RR_CLUSTER_RECONNECTING
					     : RR_CLUSTER_CONNECTING);
	rr_cl_push_event(cl, event_new(CL_EV_DOWN));
}

static void on_closed(natsConnection *nc, void *closure)
{
	struct rr_cluster *cl = closure;

	(void)nc;
	atomic_store(&cl->state, RR_CLUSTER_CLOSED);
	rr_cl_push_event(cl, event_new(CL_EV_CLOSED));
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
			   void *closure)
{
	struct rr_cluster *cl = closure;

	(void)nc;
	(void)sub;
	if (err == NATS_SLOW_CONSUMER) {
		/* libnats dropped a message: a subscription's pending limit */
		if (CL_STAT_ADD(cl, dropped, 1) == 0)
			rr_warn("cluster: a subscription fell behind and libnats dropped "
				"messages (counted in ringroom_cluster_dropped_total)");
		return;
	}
	rr_warn("cluster: NATS: %s", natsStatus_GetText(err));
}

static void on_message(natsConnection *nc, natsSubscription *nsub, natsMsg *nmsg, void *closure)
{
	struct rr_cluster_sub *sub = closure;
	struct rr_cluster *cl = sub->cl;
	struct rr_cluster_msg *m = malloc(sizeof(*m));
	int len = natsMsg_GetDataLength(nmsg);
	uint64_t seq = 0, room_id = 0;
	const char *v = NULL;

	(void)nc;
	(void)nsub;
	if (sub->js) {
		jsMsgMetaData *meta = NULL;

		if (natsMsg_GetMetaData(&meta, nmsg) == NATS_OK) {
			seq = meta->Sequence.Stream;
			jsMsgMetaData_Destroy(meta);
		}
	}
	if (natsMsgHeader_Get(nmsg, "Rr-Id", &v) == NATS_OK && v != NULL)
		room_id = strtoull(v, NULL, 10);
	pthread_mutex_lock(&cl->mu);
	if (m == NULL || cl->inbox_bytes + (uint64_t)len > cl->opts.inbox_bytes) {
		pthread_mutex_unlock(&cl->mu);
		if (CL_STAT_ADD(cl, dropped, 1) == 0)
			rr_warn("cluster: messages wait for cores past %u bytes: dropping "
				"(counted in ringroom_cluster_dropped_total)",
				cl->opts.inbox_bytes);
		natsMsg_Destroy(nmsg);
		free(m);
		return;
	}
	*m = (struct rr_cluster_msg){
	    .subject = natsMsg_GetSubject(nmsg),
	    .data = (const uint8_t *)natsMsg_GetData(nmsg),
	    .len = (uint32_t)len,
	    .core = sub->core,
	    .sub_ctx = sub->ctx,
	    .seq = seq,
	    .room_id = room_id,
	    ._on_msg = sub->on_msg,
	    ._nmsg = nmsg,
	    ._sub = sub,
	};
	cl->inbox_bytes += (uint64_t)len;
	if (cl->inbox_tail != NULL)
		cl->inbox_tail->_next = m;
	else
		cl->inbox_head = m;
	cl->inbox_tail = m;
	if (cl->idle) {
		cl->idle = false;
		pthread_cond_signal(&cl->cv);
	}
	pthread_mutex_unlock(&cl->mu);
}

static void on_sub_done(void *closure)
{
	struct rr_cluster_sub *sub = closure;
	struct cl_event *ev = event_new(CL_EV_SUB_DONE);

	ev->sub = sub;
	rr_cl_push_event(sub->cl, ev);
}

static void on_ack(jsCtx *js, natsMsg *nmsg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct rr_cluster *cl = closure;
	struct cl_event *ev = event_new(CL_EV_ACK);

	(void)js;
	ev->nmsg = nmsg; /* ours now: the handler's contract */
	if (pa != NULL) {
		ev->seq = pa->Sequence;
		ev->duplicate = pa->Duplicate;
	} else {
		ev->err = pae != NULL ? status_errno(pae->Err) : -EIO;
		if (ev->err == 0)
			ev->err = -EIO;
		if (pae != NULL && pae->ErrCode == JSStreamWrongLastSequenceErr) {
			/* a compare-and-set lost: the caller's business */
			ev->js_code = (int)pae->ErrCode;
			ev->err = -ESTALE;
		} else if (pae != NULL && pae->ErrCode != 0) {
			ev->js_code = (int)pae->ErrCode;
			ev->err = -EIO;
			rr_warn("cluster: JetStream refused a publish on %s: %s (code %d)",
				natsMsg_GetSubject(nmsg), pae->ErrText ? pae->ErrText : "",
				(int)pae->ErrCode);
		}
	}
	rr_cl_push_event(cl, ev);
}

/* ---- the cluster thread ---- */

int rr_cl_nats_start(struct rr_cluster *cl)
{
	natsOptions *o = NULL;
	natsStatus s = natsOptions_Create(&o);

	if (s == NATS_OK)
		s = natsOptions_SetServers(o, cl->servers, cl->nservers);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, cl->node_name);
	/* a node fans its own messages out locally: NATS must not send them
	 * back to it (a room's message would reach the node's members twice) */
	if (s == NATS_OK)
		s = natsOptions_SetNoEcho(o, true);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1); /* forever: NATS comes back */
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, cl->opts.reconnect_wait_ms);
	/* a server that vanishes without a FIN is noticed within about 3
	 * pings, not libnats' default of 2 minutes each */
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(o, 2000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(o, 2);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, 2000);
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, cl);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(o, on_disconnected, cl);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(o, on_connected, cl);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(o, on_closed, cl);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(o, on_async_error, cl);
	if (s == NATS_OK)
		s = natsOptions_UseGlobalMessageDelivery(o, true);
	if (s == NATS_OK)
		s = nats_SetMessageDeliveryPoolSize(CL_DELIVERY_THREADS);
	if (s != NATS_OK) {
		rr_err("NATS options: %s", natsStatus_GetText(s));
		natsOptions_Destroy(o);
		atomic_store(&cl->state, RR_CLUSTER_CLOSED);
		return -EINVAL;
	}
	s = natsConnection_Connect(&cl->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
		rr_err("connecting to %s: %s", cl->servers[0], natsStatus_GetText(s));
		cl->nc = NULL;
		atomic_store(&cl->state, RR_CLUSTER_CLOSED);
		return status_errno(s);
	}

	rr_cl_get_start(cl); /* without it lookups fail: logged */

	jsOptions jo;

	jsOptions_Init(&jo);
	jo.Wait = CL_JS_API_WAIT_MS;
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.AckHandlerClosure = cl;
	natsStatus js = natsConnection_JetStream(&cl->js, cl->nc, &jo);

	if (js != NATS_OK) {
		rr_err("JetStream context: %s", natsStatus_GetText(js));
		cl->js = NULL;
	}
	if (s == NATS_OK) {
		int st = RR_CLUSTER_CONNECTING;

		atomic_store(&cl->ever_connected, true);
		/* a disconnect may already have moved the state on */
		atomic_compare_exchange_strong(&cl->state, &st, RR_CLUSTER_CONNECTED);
		if (rr_cluster_state(cl) == RR_CLUSTER_CONNECTED)
			rr_cl_nats_up(cl);
	} else {
		rr_warn("no NATS server answers at %s%s yet; retrying every %u ms",
			cl->servers[0], cl->nservers > 1 ? " (and the others)" : "",
			cl->opts.reconnect_wait_ms);
	}
	return 0;
}

/* A stream at each (re)connect: created if missing, else left alone (its
 * limits and replicas are the operator's). Its creation time in *created.
 * Nodes starting together race to create it: the loser's create fails
 * (JetStream: the subjects overlap the stream just made) or answers before
 * the stream has its creation time, so the time is always read back with a
 * lookup, and a lost race looks again. */
static void ensure_one(struct rr_cluster *cl, const char *name, const char **subjects, int nsub,
		       int64_t max_per_subject, uint64_t max_age_ms, _Atomic uint64_t *created)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = NATS_OK;

	for (int attempt = 0; attempt < 4; attempt++) {
		jerr = 0;
		s = js_GetStreamInfo(&si, cl->js, name, NULL, &jerr);
		if (s == NATS_OK) {
			int64_t at = si->Created;

			jsStreamInfo_Destroy(si);
			if (at > 0 || created == NULL) {
				if (created != NULL)
					atomic_store(created, (uint64_t)at);
				return;
			}
			continue; /* just made by another node: not dated yet */
		}
		if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr)
			break;

		jsStreamConfig sc;

		jsStreamConfig_Init(&sc);
		sc.Name = name;
		sc.Subjects = subjects;
		sc.SubjectsLen = nsub;
		sc.Storage = js_FileStorage;
		sc.MaxMsgsPerSubject = max_per_subject;
		sc.MaxAge = (int64_t)max_age_ms * 1000000;
		sc.AllowDirect = true; /* lookups by direct get: cluster_get.c */
		sc.Replicas = cl->opts.stream_replicas ? (int64_t)cl->opts.stream_replicas : 1;
		jerr = 0;
		s = js_AddStream(&si, cl->js, &sc, NULL, &jerr);
		if (s == NATS_OK) {
			rr_info("created JetStream stream %s on %s%s (file storage, %lld "
				"replica%s)",
				name, subjects[0], nsub > 1 ? ", ..." : "", (long long)sc.Replicas,
				sc.Replicas == 1 ? "" : "s");
			jsStreamInfo_Destroy(si);
			continue; /* its creation time: read back */
		}
		if (jerr != JSStreamSubjectOverlapErr && jerr != JSStreamNameExistErr)
			break; /* not a race with another node: no point asking again */
	}
	if (s == NATS_OK)
		rr_warn("JetStream stream %s: no creation time after 4 lookups (tried again "
			"at the next reconnect)", name);
	else if (jerr == JSNotEnabledErr || jerr == JSNotEnabledForAccountErr)
		rr_warn("JetStream is not enabled on the NATS server (run nats-server "
			"with -js): JetStream publishes will fail");
	else
		rr_warn("JetStream stream %s: %s (JetStream code %d)", name,
			natsStatus_GetText(s), (int)jerr);
}

static void ensure_stream(struct rr_cluster *cl)
{
	if (cl->js == NULL)
		return;
	if (cl->stream != NULL)
		ensure_one(cl, cl->stream, cl->stream_subjects, cl->nstream_subjects,
			   cl->opts.stream_max_per_subject, cl->opts.stream_max_age_ms,
			   &cl->stream_created);
	if (cl->kv_stream != NULL) {
		const char *subjects[1] = {cl->kv_subject};

		ensure_one(cl, cl->kv_stream, subjects, 1, 1, cl->opts.kv_max_age_ms, NULL);
	}
}

void rr_cl_nats_up(struct rr_cluster *cl)
{
	char url[256] = "";

	if (cl->nc != NULL)
		natsConnection_GetConnectedUrl(cl->nc, url, sizeof(url));
	if (cl->up_logged) {
		rr_info("reconnected to %s", url);
	} else {
		rr_info("connected to %s as %s", url, cl->node_name);
		cl->up_logged = true;
	}
	ensure_stream(cl);
}

static void run_raw(struct rr_cluster *cl, struct cl_raw *r)
{
	if (cl->nc == NULL || rr_cluster_state(cl) != RR_CLUSTER_CONNECTED) {
		CL_STAT_ADD(cl, publish_refused, 1);
	} else {
		natsStatus s = natsConnection_Publish(cl->nc, r->subject, r->data, (int)r->len);

		if (s == NATS_OK && r->control)
			CL_STAT_ADD(cl, control_out, 1);
		else if (s == NATS_OK)
			__atomic_fetch_add(&cl->core_st[r->core].msgs_out, 1, __ATOMIC_RELAXED);
		else if (CL_STAT_ADD(cl, publish_failures, 1) == 0)
			rr_warn("publishing on %s: %s", r->subject, natsStatus_GetText(s));
	}
	rr_cl_uncharge(cl, r->core, 1);
	free(r);
}

static void run_js_publish(struct rr_cluster *cl, struct rr_cluster_req *req)
{
	natsMsg *m = NULL;

	if (cl->js == NULL || rr_cluster_state(cl) != RR_CLUSTER_CONNECTED) {
		rr_cl_finish(cl, req, -ENOTCONN);
		return;
	}
	natsStatus s = natsMsg_Create(&m, req->subject, NULL, req->data, (int)req->len);

	/* set as headers, not through jsPubOptions: libnats 3.4 sends
	 * ExpectLastSubjectSeq only when it is > 0, and 0 ("no message yet")
	 * is the one a new room needs */
	if (s == NATS_OK && req->msg_id != NULL)
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", req->msg_id);
	if (s == NATS_OK && req->room_id > 0) {
		char v[24];

		snprintf(v, sizeof(v), "%llu", (unsigned long long)req->room_id);
		s = natsMsgHeader_Set(m, "Rr-Id", v);
	}
	if (s == NATS_OK && req->expect_set) {
		char v[24];

		snprintf(v, sizeof(v), "%llu", (unsigned long long)req->expect_seq);
		s = natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", v);
	}
	if (s != NATS_OK) {
		natsMsg_Destroy(m);
		rr_cl_finish(cl, req, status_errno(s));
		return;
	}
	jsPubOptions po;

	jsPubOptions_Init(&po);
	po.MaxWait = cl->opts.ack_timeout_ms;
	natsMsg *key = m;

	req->_sent_ns = rr_now_ns();
	s = js_PublishMsgAsync(cl->js, &m, &po);
	if (s != NATS_OK) {
		/* not taken: m is still ours */
		natsMsg_Destroy(m);
		if (CL_STAT_ADD(cl, publish_failures, 1) == 0)
			rr_warn("JetStream publish on %s: %s", req->subject,
				natsStatus_GetText(s));
		rr_cl_finish(cl, req, status_errno(s));
		return;
	}
	req->_nmsg = key;
	req->_next = NULL;
	if (cl->unacked_tail != NULL)
		cl->unacked_tail->_next = req;
	else
		cl->unacked_head = req;
	cl->unacked_tail = req;
	cl->unacked++;
	__atomic_fetch_add(&cl->core_st[req->core].msgs_out, 1, __ATOMIC_RELAXED);
}

static void run_subscribe(struct rr_cluster *cl, struct rr_cluster_req *req)
{
	struct rr_cluster_sub *sub;

	if (cl->nc == NULL) {
		rr_cl_finish(cl, req, -ENOTCONN);
		return;
	}
	sub = calloc(1, sizeof(*sub));
	if (sub == NULL) {
		rr_cl_finish(cl, req, -ENOMEM);
		return;
	}
	sub->cl = cl;
	sub->on_msg = req->on_msg;
	sub->ctx = req->sub_ctx;
	sub->core = req->core;
	sub->ring_fd = req->reply_ring_fd;
	sub->js = req->op == RR_CLUSTER_JS_CONSUME;
	sub->control = req->control;
	natsStatus s;
	jsErrCode jerr = 0;

	if (sub->js) {
		jsSubOptions so;

		jsSubOptions_Init(&so);
		so.Stream = cl->stream;
		so.Ordered = true;
		if (req->start_seq > 0) {
			so.Config.DeliverPolicy = js_DeliverByStartSequence;
			so.Config.OptStartSeq = req->start_seq;
		}
		s = cl->js == NULL || rr_cluster_state(cl) != RR_CLUSTER_CONNECTED
			? NATS_CONNECTION_DISCONNECTED
			: js_Subscribe(&sub->nsub, cl->js, req->subject, on_message, sub, NULL, &so,
				       &jerr);
	} else {
		s = natsConnection_Subscribe(&sub->nsub, cl->nc, req->subject, on_message, sub);
	}

	if (s == NATS_OK)
		s = natsSubscription_SetOnCompleteCB(sub->nsub, on_sub_done, sub);
	if (s != NATS_OK) {
		int err = status_errno(s);

		if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
			err = -ENOENT;
		if (err != -ENOTCONN)
			rr_warn("%s %s: %s (JetStream error %d)",
				sub->js ? "consuming" : "subscribing to", req->subject,
				natsStatus_GetText(s), (int)jerr);
		if (sub->nsub != NULL) {
			/* no completion callback: its handler may still run,
			 * so the sub's memory is never freed (logged above) */
			sub->unsubscribed = true;
			natsSubscription_Unsubscribe(sub->nsub);
			natsSubscription_Destroy(sub->nsub);
		} else {
			free(sub);
			sub = NULL;
		}
		if (req->op != RR_CLUSTER_JS_CONSUME && err != -ENOMEM)
			err = -EIO; /* a core subscription fails only on a bad subject */
		rr_cl_finish(cl, req, err);
		return;
	}
	sub->next = cl->subs;
	if (cl->subs != NULL)
		cl->subs->prev = sub;
	cl->subs = sub;
	if (!sub->control)
		CL_STAT_ADD(cl, subscriptions, 1);
	req->sub = sub;
	rr_cl_finish(cl, req, 0);
}

/* Give a sub up: its messages are dropped from now on; libnats' completion
 * callback says when its handler will not run again. */
static void sub_close(struct rr_cluster *cl, struct rr_cluster_sub *sub)
{
	if (sub->unsubscribed)
		return;
	sub->unsubscribed = true;
	natsSubscription_Unsubscribe(sub->nsub); /* fails only when already closed */
	natsSubscription_Destroy(sub->nsub);
	sub->nsub = NULL;
	if (!sub->control)
		CL_STAT_ADD(cl, subscriptions, (uint64_t)-1);
}

void rr_cl_sub_maybe_free(struct rr_cluster *cl, struct rr_cluster_sub *sub)
{
	if (!sub->unsubscribed || !sub->done)
		return;
	if (sub->prev != NULL)
		sub->prev->next = sub->next;
	else
		cl->subs = sub->next;
	if (sub->next != NULL)
		sub->next->prev = sub->prev;
	free(sub);
}

void rr_cl_nats_run(struct rr_cluster *cl, struct cl_qent *e)
{
	if (e->raw) {
		run_raw(cl, e->p);
		return;
	}
	struct rr_cluster_req *req = e->p;

	switch (req->op) {
	case RR_CLUSTER_JS_PUBLISH:
		run_js_publish(cl, req);
		break;
	case RR_CLUSTER_SUBSCRIBE:
	case RR_CLUSTER_JS_CONSUME:
		run_subscribe(cl, req);
		break;
	case RR_CLUSTER_JS_LAST:
		rr_cl_get_run(cl, req);
		break;
	case RR_CLUSTER_CORE_STOP:
		/* route_msgs drops the core's messages from now on; those
		 * before are on its post list ahead of this completion */
		cl->core_stopped[req->core] = true;
		rr_cl_finish(cl, req, 0);
		break;
	case RR_CLUSTER_UNSUBSCRIBE: {
		struct rr_cluster_sub *sub = req->sub;

		sub_close(cl, sub);
		rr_cl_finish(cl, req, 0);
		rr_cl_sub_maybe_free(cl, sub);
		break;
	}
	}
}

void rr_cl_nats_ack(struct rr_cluster *cl, struct cl_event *ev)
{
	struct rr_cluster_req *req = cl->unacked_head, *prev = NULL;

	while (req != NULL && req->_nmsg != ev->nmsg) {
		prev = req;
		req = req->_next;
	}
	natsMsg_Destroy(ev->nmsg);
	if (req == NULL) {
		/* its publish already failed (the connection dropped) */
		CL_STAT_ADD(cl, late_acks, 1);
		return;
	}
	if (prev != NULL)
		prev->_next = req->_next;
	else
		cl->unacked_head = req->_next;
	if (cl->unacked_tail == req)
		cl->unacked_tail = prev;
	cl->unacked--;
	req->_next = NULL;
	req->_nmsg = NULL;
	if (ev->err == 0) {
		req->seq = ev->seq;
		req->duplicate = ev->duplicate;
		rr_hist_observe(&cl->st.js_ack_rtt, rr_now_ns() - req->_sent_ns);
		if (ev->duplicate && req->room_id > 0) {
			/* a client's resend after a lost ack: acked with
			 * the original's room id, read back first */
			rr_cl_get_original(cl, req);
			return;
		}
	}
	rr_cl_finish(cl, req, ev->err);
}

void rr_cl_nats_fail_unacked(struct rr_cluster *cl, int err)
{
	struct rr_cluster_req *req = cl->unacked_head, *next;

	for (; req != NULL; req = next) {
		next = req->_next;
		req->_next = NULL;
		req->_nmsg = NULL; /* libnats still holds it: its ack, if any, is late */
		rr_cl_finish(cl, req, err);
	}
	cl->unacked_head = cl->unacked_tail = NULL;
	cl->unacked = 0;
}

void rr_cl_nats_close(struct rr_cluster *cl)
{
	for (struct rr_cluster_sub *sub = cl->subs, *next; sub != NULL; sub = next) {
		next = sub->next;
		sub_close(cl, sub);
	}
	if (cl->nc != NULL)
		natsConnection_Close(cl->nc);
	else
		cl->closed_seen = true;
}

void rr_cl_nats_destroy(struct rr_cluster *cl)
{
	if (!cl->closed_seen)
		rr_warn("the NATS connection did not report its close in time");
	if (cl->subs != NULL)
		rr_warn("subscriptions libnats did not finish in time are leaked");
	if (cl->get_sub != NULL) /* closed with the connection */
		natsSubscription_Destroy(cl->get_sub);
	cl->get_sub = NULL;
	if (cl->js != NULL)
		jsCtx_Destroy(cl->js);
	cl->js = NULL;
	if (cl->nc != NULL)
		natsConnection_Destroy(cl->nc);
	cl->nc = NULL;
}
