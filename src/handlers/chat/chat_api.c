/*
 * The chat handler's side of the backend API (the docs' "The backend API"):
 * a room's history and presence, and closing a user's connections. The
 * room is loaded and on its core when these run (rt/member.c).
 */
#include "chat/chat_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where the live stream is, for a room loaded with no member yet. */
static void chat_position(struct rr_room *room, struct chat_room *st)
{
	if (!st->positioned) {
		st->last_bcast = rr_log_last_id(room);
		st->positioned = true;
	}
}

static void api_history_done(struct rr_room *room, void *arg, int res, const struct rr_log_entry *e,
			     size_t n, bool more)
{
	struct rr_api_call *call = arg;
	(void)more;
	(void)room;
	if (res < 0) {
		rr_api_error(call, 503, "storage_unavailable", "reading the history failed");
		return;
	}
	struct chat_buf b = {0};
	chat_buf_str(&b, "{\"messages\":[");
	chat_buf_messages(&b, e, n, UINT64_MAX);
	chat_buf_str(&b, "]}");
	if (b.failed)
		rr_api_error(call, 503, "unavailable", "out of memory");
	else
		rr_api_reply(call, 200, b.p, b.len);
	free(b.p);
}

static int api_history(struct rr_room *room, struct chat_room *st, struct rr_api_call *call,
		       const struct rr_api_request *req)
{
	uint64_t before = req->before_id;
	uint32_t limit = req->limit ? req->limit : CHAT_HISTORY_DEFAULT;
	if (limit > CHAT_HISTORY_MAX)
		limit = CHAT_HISTORY_MAX;
	/* only what was broadcast, as for a member's history request */
	if (before == 0 || before > st->last_bcast + 1)
		before = st->last_bcast + 1;
	return rr_log_read_before(room, before, limit, api_history_done, call);
}

static bool presence_add(const char *uid, json_t *username, void *arg)
{
	return json_array_append_new(arg, json_pack("{s:s, s:O}", "userId", uid, "username",
						   username)) == 0;
}

/* every node's users (cluster mode), each once */
static int api_presence(struct chat_room *st, struct rr_api_call *call)
{
	json_t *list = json_array();
	if (list == NULL)
		return -ENOMEM;
	if (st->users)
		chat_online_each(st, presence_add, list);
	json_t *o = json_pack("{s:o}", "onlineUsers", list);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (s == NULL)
		return -ENOMEM;
	rr_api_reply(call, 200, s, strlen(s));
	free(s);
	return 0;
}

/* closes the user's connections on every node; "closed" counts this node's */
static int api_kick(struct rr_room *room, struct chat_room *st, struct rr_api_call *call,
		    const char *user_id)
{
	unsigned closed = chat_kick_local(st, user_id);
	chat_nodes_kick(room, user_id);
	char body[40];
	int n = snprintf(body, sizeof(body), "{\"closed\":%u}", closed);
	rr_api_reply(call, 200, body, (size_t)n);
	return 0;
}

int chat_api(struct rr_room *room, struct rr_api_call *call, const struct rr_api_request *req)
{
	struct chat_room *st = chat_state(room);
	chat_position(room, st);
	switch (req->op) {
	case RR_API_OP_HISTORY:
		return api_history(room, st, call, req);
	case RR_API_OP_PRESENCE:
		return api_presence(st, call);
	case RR_API_OP_KICK:
		return api_kick(room, st, call, req->user_id);
	case RR_API_OP_PUBLISH:
		return chat_api_publish(room, st, call, req->body, req->body_len);
	}
	return -EINVAL;
}
