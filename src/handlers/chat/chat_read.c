/* The chat handler: replays (pulled by the reader), initial state, history. */
#include "chat/chat_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- log reads --------------------------------------------------------------- */

struct chat_sync *chat_sync_new(struct chat_room *st, struct chat_member *m,
				       enum chat_read_kind kind)
{
	struct chat_sync *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->kind = kind;
	s->m = m;
	m->refs++;
	s->next = st->reads;
	if (st->reads)
		st->reads->prev = s;
	st->reads = s;
	return s;
}

void chat_sync_free(struct chat_room *st, struct chat_sync *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		st->reads = s->next;
	if (s->next)
		s->next->prev = s->prev;
	chat_member_put(s->m);
	if (s->request_id)
		json_decref(s->request_id);
	free(s);
}

/* The member's replay or initial state is complete: let the live stream
 * (held since the hold point) through. */
void chat_member_go_live(struct chat_member *m, uint64_t last_id)
{
	rr_member_set_last_id(m->conn, last_id);
	m->sync = NULL;
	m->live = true;
	rr_member_release(m->conn);
}

/* ,"onlineUsers":[{"userId","username"}...],"onlineCount":N}: the room's
 * users, each once, at most CHAT_ONLINE_MAX of them (onlineCount says how
 * many there are); closes the object. Shared by initial_state and synced so
 * a client that reconnected with `since` refreshes its list the same way. */
struct online_list {
	struct chat_buf *b;
	size_t listed;
};

static bool online_add(const char *uid, json_t *username, void *arg)
{
	struct online_list *l = arg;
	if (l->listed == CHAT_ONLINE_MAX || l->b->failed)
		return false;
	json_t *o = json_pack("{s:s, s:O}", "userId", uid, "username", username);
	if (o == NULL) {
		l->b->failed = true;
		return false;
	}
	if (l->listed)
		chat_buf_str(l->b, ",");
	chat_buf_json(l->b, o);
	json_decref(o);
	return ++l->listed < CHAT_ONLINE_MAX;
}

static void chat_buf_online_tail(struct chat_buf *b, struct chat_room *st)
{
	chat_buf_str(b, ",\"onlineUsers\":[");
	struct online_list l = {.b = b};
	size_t count = chat_online_each(st, online_add, &l);
	char tail[64];
	int tn = snprintf(tail, sizeof(tail), "],\"onlineCount\":%zu}", count);
	chat_buf_add(b, tail, (size_t)tn);
}

void chat_send_synced(struct chat_room *st, struct chat_member *m, bool recovered,
		      uint64_t last_id)
{
	struct chat_buf b = {0};
	char head[96];
	int hn = snprintf(head, sizeof(head), "{\"type\":\"synced\",\"recovered\":%s,\"lastId\":%" PRIu64,
			  recovered ? "true" : "false", last_id);
	chat_buf_add(&b, head, (size_t)hn);
	chat_buf_online_tail(&b, st);
	if (!b.failed)
		rr_member_send_now(m->conn, RR_TEXT, b.p, b.len);
	free(b.p);
}


/* Read the next page of a replay. Returns 0 or the error of the read call. */
int chat_replay_next(struct rr_room *room, struct chat_sync *s)
{
	uint64_t left = s->target - s->after;
	s->limit = left < CHAT_REPLAY_PAGE ? (uint32_t)left : CHAT_REPLAY_PAGE;
	return rr_log_read_after(room, s->after, s->limit, chat_read_done, s);
}

static void chat_replay_page(struct rr_room *room, struct chat_room *st, struct chat_sync *s,
			     struct chat_member *m, int res, const struct rr_log_entry *e, size_t n,
			     bool more)
{
	bool recovered = res == 0;
	uint64_t before = s->after;
	for (size_t i = 0; res == 0 && i < n; i++) {
		if (e[i].id <= s->after)
			continue;
		if (e[i].id > s->target)
			break;
		/* trimmed by retention (rr_log_first_id() is only a hint: it
		 * can lag behind the trimming) */
		if (e[i].id != s->after + 1)
			s->gap = true;
		s->after = e[i].id;
		if (!chat_stored_ok(e[i].data, e[i].len))
			continue; /* not a chat message: nothing to show */
		struct chat_buf b = {0};
		chat_buf_message_frame(&b, e[i].data, e[i].len);
		int rc = b.failed ? -ENOMEM : rr_member_send_now(m->conn, RR_TEXT, b.p, b.len);
		free(b.p);
		if (rc == -EPIPE || rc == -ENOBUFS) {
			/* it is being closed (a replay larger than its queue
			 * cap): it reconnects and replays from where it got */
			m->sync = NULL;
			chat_sync_free(st, s);
			return;
		}
		if (rc < 0)
			s->gap = true; /* one not sent (out of memory) */
	}
	/* a full page: read on even if `more` said otherwise */
	if (n >= s->limit)
		more = true;
	if (s->after == before)
		more = false; /* no progress: never read the same page twice */
	/* Everything up to the target is durable (broadcast only once
	 * stored), so the reads end when they reach it or the log ends. The
	 * reader pulls: the next page is read once it has taken this one. */
	if (res == 0 && more && n > 0 && s->after < s->target) {
		if (rr_member_queued_bytes(m->conn) >= CHAT_REPLAY_LOW_WATER) {
			s->waiting = true;
			rr_member_want_writable(m->conn);
			return;
		}
		if (chat_replay_next(room, s) == 0)
			return;
		recovered = false;
	}
	/* the log ended before the target: the newest ones are gone too */
	if (s->after < s->target || s->gap)
		recovered = false;
	chat_send_synced(st, m, recovered, s->target);
	chat_member_go_live(m, s->target);
	chat_sync_free(st, s);
}

void chat_initial_state(struct rr_room *room, struct chat_room *st, struct chat_member *m,
			       const struct rr_log_entry *e, size_t n, uint64_t target)
{
	struct chat_buf b = {0};
	chat_buf_str(&b, "{\"type\":\"initial_state\",\"messages\":[");
	chat_buf_messages(&b, e, n, target);
	chat_buf_str(&b, "]");
	chat_buf_online_tail(&b, st);
	if (!b.failed)
		rr_member_send_now(m->conn, RR_TEXT, b.p, b.len);
	free(b.p);
	(void)room;
	chat_member_go_live(m, target);
}

static void chat_history_reply(struct rr_room *room, struct chat_member *m, int res,
			       const struct rr_log_entry *e, size_t n, uint32_t limit,
			       json_t *request_id)
{
	if (res < 0) {
		chat_send_error(m->conn, "storage_unavailable", "reading the history failed",
				request_id);
		return;
	}
	struct chat_buf b = {0};
	chat_buf_str(&b, "{\"type\":\"history\",\"messages\":[");
	chat_buf_messages(&b, e, n, UINT64_MAX);
	/* older ones may remain when the page is full and its oldest is past
	 * the first retained id */
	bool older = n == limit && e[0].id > rr_log_first_id(room);
	chat_buf_str(&b, older ? "],\"hasMore\":true" : "],\"hasMore\":false");
	if (request_id) { /* lets a client match the page to its request */
		chat_buf_str(&b, ",\"requestId\":");
		chat_buf_json(&b, request_id);
	}
	chat_buf_str(&b, "}");
	if (!b.failed)
		rr_member_send(m->conn, RR_TEXT, b.p, b.len);
	free(b.p);
}

void chat_read_done(struct rr_room *room, void *arg, int res, const struct rr_log_entry *e,
			   size_t n, bool more)
{
	struct chat_room *st = chat_state(room);
	struct chat_sync *s = arg;
	struct chat_member *m = s->m;
	if (m->gone) { /* it left meanwhile */
		chat_sync_free(st, s);
		return;
	}
	switch (s->kind) {
	case CHAT_READ_REPLAY:
		chat_replay_page(room, st, s, m, res, e, n, more);
		return; /* it frees s or reads on */
	case CHAT_READ_INITIAL:
		chat_initial_state(room, st, m, res == 0 ? e : NULL, res == 0 ? n : 0, s->target);
		break;
	case CHAT_READ_HISTORY:
		chat_history_reply(room, m, res, e, n, s->limit, s->request_id);
		break;
	}
	chat_sync_free(st, s);
}

/*
 * Replay (after, last_bcast] to m, whose output the caller has just put on
 * hold (in this same callback: that fixes the target); the caller has
 * checked the epoch. Returns 0 (the replay runs, or is already complete and
 * the hold released) or a negative errno (nothing started; the caller
 * releases the hold).
 */
int chat_replay_start(struct rr_room *room, struct chat_room *st, struct chat_member *m,
			     uint64_t after)
{
	uint64_t target = st->last_bcast;
	/* ahead of the log (it was reset under the same epoch): nothing to
	 * send. Older than retention: what is still stored is sent, and
	 * synced says recovered:false (the client knows it has a gap). */
	if (after >= target) {
		chat_send_synced(st, m, after == target, target);
		chat_member_go_live(m, target);
		return 0;
	}
	struct chat_sync *s = chat_sync_new(st, m, CHAT_READ_REPLAY);
	if (s == NULL)
		return -ENOMEM;
	s->after = after;
	s->target = target;
	s->gap = after + 1 < rr_log_first_id(room);
	int rc = chat_replay_next(room, s);
	if (rc < 0) {
		chat_sync_free(st, s);
		return rc;
	}
	m->sync = s;
	m->live = false;
	return 0;
}

