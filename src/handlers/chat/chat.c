/*
 * The chat room handler (/chat/{room}): protocol.md's JSON room protocol on
 * top of the public handler API only (include/ringroom/handler.h) and
 * jansson.
 *
 * DESIGN
 *
 * Broadcast once durable. A `message` is appended to the room's log and
 * broadcast (to everyone, the sender included) and acknowledged only when
 * its append completes. The API would allow broadcasting at once with the id
 * rr_log_append() hands out, but an id seen live and then lost (a crash
 * before the commit, or a failed batch, after which the runtime renumbers
 * from what is stored) would later name a different message, and a client
 * resuming from it would skip that one. So every id a client ever sees is in
 * the log. Appends complete in order, but the handler does not rely on it:
 * they wait in a FIFO and are broadcast from its head only.
 *
 * No gap, no duplicate. st->last_bcast is the newest id broadcast. A member
 * that needs a replay (since=..., a `sync` request) or an initial_state is
 * put on hold in the same callback that reads last_bcast as its target: every
 * id up to the target was broadcast before the hold (so the member needs it
 * from the log, and it is durable, so the log has it), every later id is
 * broadcast after the hold (so it waits behind it). The replay sends exactly
 * the stored ids in (since, target] with rr_member_send_now(), then
 * `synced`, then releases the hold.
 *
 * Per-member state (identity, permissions, token bucket, the replay in
 * flight) lives in a small hash table in the room state keyed by the
 * connection pointer (valid from open() to close()). Appends and reads in
 * flight hold a reference to it, so a completion finds its member in O(1)
 * (no scan of the room by session id) and sees whether it left; a member
 * that left is freed by its last completion. The attachment (userId,
 * username, perms, joinedAt) is written once per new session: attachment
 * writes are persisted, the bucket is not.
 *
 * Users, not connections, join and leave: user_joined goes out when a
 * user's first connection opens, user_disconnected when its last closes;
 * onlineUsers lists each user once.
 *
 * Choices where protocol.md leaves room (extensions, nothing removed):
 *  - welcome also carries "resumed" and user.perms/joinedAt. "resume" is
 *    always the token for next time: resume tokens are single-use, so a
 *    resumed session gets a fresh one (the one it came with no longer
 *    works). On a resumed session the identity comes from the attachment (an anonymous user stays the same
 *    user), permissions from this connection's token. A token naming
 *    another user cannot resume the session (1008). A token without "read"
 *    is refused (1008).
 *  - synced.recovered is false when the epoch differs (nothing replayed:
 *    the ids name other messages), when since is ahead of the log (nothing
 *    to replay), or when ids after since are gone (retention): then what is
 *    still stored is replayed. lastId is where the live stream starts.
 *  - A message that cannot be stored gets {"type":"error","code":
 *    "storage_unavailable"} (a sixth code) and is neither broadcast nor
 *    acknowledged; a full storage queue answers rate_limited (retry later).
 *    Errors carry the request's requestId when it had a valid one, also
 *    when the frame is refused unparsed (too_large, rate_limited) or does
 *    not parse: a scan of the top-level object finds it. history answers
 *    carry the requestId too.
 *  - synced carries onlineUsers and onlineCount, like initial_state: a
 *    client that reconnected with since refreshes its list from it.
 *  - ack is sent for every stored message, with requestId when given.
 *  - Every client frame but ping costs a token of the per-connection
 *    bucket (message, typing, presence, sync and history all fan out or
 *    read storage); typing needs write permission, like message.
 *  - history answers also carry "hasMore"; initial_state "onlineCount"
 *    (onlineUsers is capped at CHAT_ONLINE_MAX).
 */
#include "chat/chat_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- open / close ------------------------------------------------------------------- */

/* A query parameter, %-decoded; *bad when present but undecodable. */
static bool chat_query_get(const char *q, size_t qn, const char *key, char *out, size_t cap,
			   bool *bad)
{
	int n = rr_query_param(q, qn, key, out, cap);
	if (n == -ENOENT)
		return false;
	if (n < 0)
		*bad = true;
	return true;
}

static bool chat_parse_u64(const char *s, uint64_t *out)
{
	if (*s == '\0')
		return false;
	uint64_t v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* The identity kept in a resumed session's attachment. */
static bool chat_attachment_identity(struct rr_conn *c, char **uid, char **uname,
				     json_int_t *joined)
{
	size_t len;
	const void *att = rr_member_attachment(c, &len);
	if (att == NULL)
		return false;
	json_t *o = json_loadb(att, len, 0, NULL);
	const char *u = json_string_value(json_object_get(o, "userId"));
	const char *n = json_string_value(json_object_get(o, "username"));
	bool ok = u && n;
	if (ok) {
		*uid = strdup(u);
		*uname = strdup(n);
		*joined = json_integer_value(json_object_get(o, "joinedAt"));
	}
	json_decref(o);
	return ok;
}

static void chat_attachment_write(struct rr_conn *c, struct chat_member *m, bool perm_read,
				  json_int_t joined)
{
	json_t *o =
	    json_pack("{s:s, s:s, s:o, s:I}", "userId", m->user_id, "username", m->user_name,
		      "perms", chat_perms_json(perm_read, m->perm_write), "joinedAt", joined);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	/* best effort: a session that cannot keep it (-E2BIG under a tiny
	 * --max-attachment-bytes) still chats, it only resumes as anyone */
	if (s)
		rr_member_set_attachment(c, s, strlen(s));
	free(s);
}

/* Count a user's connection; true when it is the user's first. */
static bool chat_user_add(struct chat_room *st, const struct chat_member *m)
{
	json_t *u = json_object_get(st->users, m->user_id);
	if (u) {
		json_t *n = json_object_get(u, "conns");
		json_integer_set(n, json_integer_value(n) + 1);
		return false;
	}
	json_object_set_new(st->users, m->user_id,
			    json_pack("{s:s, s:i}", "username", m->user_name, "conns", 1));
	return true;
}

/* Uncount it; true when it was the user's last. */
static bool chat_user_remove(struct chat_room *st, const struct chat_member *m)
{
	json_t *u = json_object_get(st->users, m->user_id);
	if (u == NULL)
		return true;
	json_t *n = json_object_get(u, "conns");
	if (json_integer_value(n) > 1) {
		json_integer_set(n, json_integer_value(n) - 1);
		return false;
	}
	json_object_del(st->users, m->user_id);
	return true;
}

static void chat_send_welcome(struct rr_room *room, struct chat_room *st, struct rr_conn *c,
			      struct chat_member *m, const struct rr_open_info *info,
			      json_int_t joined)
{
	size_t nl;
	const char *name = rr_room_name(room, &nl);
	const char *resume = rr_member_resume_token(c);
	json_t *user =
	    json_pack("{s:s, s:s, s:o, s:I}", "id", m->user_id, "name", m->user_name, "perms",
		      chat_perms_json(info->perm_read, m->perm_write), "joinedAt", joined);
	/* the next resume token: a new one in every welcome (single use);
	 * null only if the runtime could not make one (out of memory) */
	json_t *o = json_pack("{s:s, s:s%, s:s, s:o, s:b, s:s, s:I, s:o, s:I}", "type", "welcome",
			      "room", name, nl, "session", rr_member_session(c), "resume",
			      resume ? json_string(resume) : json_null(), "resumed", info->resumed,
			      "epoch", rr_log_epoch(room), "lastId", (json_int_t)st->last_bcast,
			      "user", user, "heartbeatMs", (json_int_t)chat_cfg.heartbeat_ms);
	chat_send_obj(c, o, true);
}

static int chat_open(struct rr_room *room, struct rr_conn *c, const struct rr_open_info *info)
{
	struct chat_room *st = chat_state(room);
	if (!info->perm_read)
		return 1008; /* a chat member reads the room */
	if (!st->positioned) {
		/* the log position is loaded before the first open() */
		st->last_bcast = rr_log_last_id(room);
		st->positioned = true;
	}

	struct chat_member *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return 1011;
	m->conn = c;
	m->perm_write = info->perm_write;
	m->tokens_milli = (uint64_t)chat_cfg.rate_burst * 1000;
	m->refill_ms = rr_now_wall_ms();

	/* Identity: a resumed session keeps the one in its attachment (an
	 * anonymous user stays the same user); permissions come from this
	 * connection's token, the latest word on them. A token naming
	 * another user cannot take over the session. */
	json_int_t joined = (json_int_t)rr_now_wall_ms();
	bool from_att =
	    info->resumed && chat_attachment_identity(c, &m->user_id, &m->user_name, &joined);
	if (from_att && strncmp(info->user_id, "anon-", 5) != 0 &&
	    strcmp(info->user_id, m->user_id) != 0) {
		chat_member_free(m);
		return 1008;
	}
	if (!from_att) {
		free(m->user_id);
		free(m->user_name);
		m->user_id = strdup(info->user_id);
		m->user_name = strdup(info->user_name);
		joined = (json_int_t)rr_now_wall_ms();
	}
	if (m->user_id == NULL || m->user_name == NULL || chat_member_insert(st, m) < 0) {
		chat_member_free(m);
		return 1011;
	}
	if (!from_att)
		chat_attachment_write(c, m, info->perm_read, joined);

	bool first_conn = chat_user_add(st, m);

	/* Hold first: the welcome and the replay or initial state go out
	 * before anything broadcast from here on. */
	rr_member_hold(c);
	chat_send_welcome(room, st, c, m, info, joined);

	char val[128];
	bool bad = false, has_since, has_epoch;
	uint64_t since = 0;
	has_since = chat_query_get(info->query, info->query_len, "since", val, sizeof(val), &bad);
	if (has_since && !bad && !chat_parse_u64(val, &since))
		bad = true;
	has_epoch = chat_query_get(info->query, info->query_len, "epoch", val, sizeof(val), &bad);
	if (bad) {
		json_t *o = json_pack("{s:s, s:s, s:s}", "type", "error", "code", "invalid_format",
				      "message", "since must be a number");
		chat_send_obj(c, o, true);
		has_since = false;
	}

	int rc = 0;
	if (has_since) {
		if (has_epoch && strcmp(val, rr_log_epoch(room)) != 0) {
			/* another log: the ids mean other messages */
			chat_send_synced(st, m, false, st->last_bcast);
			chat_member_go_live(m, st->last_bcast);
		} else {
			rc = chat_replay_start(room, st, m, since);
		}
	} else {
		struct chat_sync *s = NULL;
		uint64_t target = st->last_bcast;
		if (target >= rr_log_first_id(room) && chat_cfg.initial_messages > 0) {
			s = chat_sync_new(st, m, CHAT_READ_INITIAL);
			if (s == NULL) {
				rc = -ENOMEM;
			} else {
				s->target = target;
				rc = rr_log_read_before(room, target + 1, chat_cfg.initial_messages,
							chat_read_done, s);
				if (rc < 0)
					chat_sync_free(st, s);
				else
					m->sync = s;
			}
		} else {
			chat_initial_state(room, st, m, NULL, 0, target);
		}
	}
	if (rc < 0) {
		rr_member_release(c);
		/* storage busy: reconnect and replay (this undoes the join) */
		chat_user_remove(st, m);
		chat_member_leave(st, m);
		return 1013;
	}
	if (first_conn) {
		chat_nodes_join(room, m);
		/* online on another node already: it joined then */
		if (!chat_user_remote(st, m->user_id)) {
			json_t *o = json_pack("{s:s, s:s, s:s}", "type", "user_joined", "userId",
					      m->user_id, "username", m->user_name);
			chat_broadcast_obj(room, o, c);
		}
	}
	return 0;
}

static void chat_close(struct rr_room *room, struct rr_conn *c, uint16_t code, bool clean)
{
	struct chat_room *st = chat_state(room);
	struct chat_member *m = chat_member_find(st, c);
	(void)clean;
	if (m == NULL)
		return;
	/* what it was sent; a slow consumer's queue was dropped, so it keeps
	 * the point of its last replay */
	if (m->live && code != 1013)
		rr_member_set_last_id(c, st->last_bcast);
	if (chat_user_remove(st, m)) {
		chat_nodes_leave(room, m);
		if (!chat_user_remote(st, m->user_id)) {
			json_t *o = json_pack("{s:s, s:s, s:s}", "type", "user_disconnected",
					      "userId", m->user_id, "username", m->user_name);
			chat_broadcast_obj(room, o, c);
		}
	}
	/* a replay waiting for writable() stops here; one with a read in
	 * flight sees it gone when the read completes */
	if (m->sync && m->sync->waiting) {
		struct chat_sync *sy = m->sync;
		m->sync = NULL;
		chat_sync_free(st, sy);
	}
	chat_member_leave(st, m);
}

/* The member took the replay's last page: read the next. */
static void chat_writable(struct rr_room *room, struct rr_conn *c)
{
	struct chat_room *st = chat_state(room);
	struct chat_member *m = chat_member_find(st, c);
	if (m == NULL || m->sync == NULL || !m->sync->waiting)
		return;
	struct chat_sync *s = m->sync;
	s->waiting = false;
	if (chat_replay_next(room, s) == 0)
		return;
	/* can't read on (storage queue full): say what it has */
	chat_send_synced(st, m, false, s->target);
	chat_member_go_live(m, s->target);
	chat_sync_free(st, s);
}

/* ---- room lifecycle ----------------------------------------------------------------- */

static int chat_init(struct rr_room *room)
{
	struct chat_room *st = chat_state(room);
	st->users = json_object();
	if (st->users == NULL)
		return -ENOMEM;
	int rc = rr_room_set_auto_response(room, "heartbeat",
					   "{\"type\":\"heartbeat_ack\",\"timestamp\":%T}", true);
	if (rc < 0) {
		json_decref(st->users);
		st->users = NULL;
		return rc;
	}
	return 0;
}

/* The runtime evicts a room only with no member and no storage request in
 * flight, so nothing here can still be called back. */
static void chat_evict(struct rr_room *room)
{
	struct chat_room *st = chat_state(room);
	/* completions first: they release members that already left */
	while (st->ap_head) {
		struct chat_append *a = st->ap_head;
		st->ap_head = a->next;
		chat_append_free(a);
	}
	while (st->reads)
		chat_sync_free(st, st->reads);
	for (size_t i = 0; i < st->nbuckets; i++) {
		struct chat_member *m = st->buckets[i];
		while (m) {
			struct chat_member *next = m->next;
			chat_member_free(m);
			m = next;
		}
	}
	free(st->buckets);
	json_decref(st->users);
	json_decref(st->remote);
	memset(st, 0, sizeof(*st));
}

static const struct rr_handler chat_handler = {
    .abi = RR_HANDLER_ABI,
    .name = "chat",
    .state_size = sizeof(struct chat_room),
    .durable = true,
    .init = chat_init,
    .evict = chat_evict,
    .open = chat_open,
    .message = chat_message,
    .close = chat_close,
    .writable = chat_writable,
    .api = chat_api,
    .log_arrived = chat_log_arrived,
    .node_message = chat_node_message,
    .node_gone = chat_node_gone,
    .nodes_ready = chat_nodes_ready,
};

const struct rr_handler *rr_chat_handler(void)
{
	return &chat_handler;
}

