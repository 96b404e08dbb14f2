/*
 * A chat room across nodes (--cluster): what is not a logged message
 * (users joining and leaving, typing, presence, kicks) goes to the same
 * room on the other nodes with rr_room_tell_nodes(); messages themselves
 * come through the cluster's log (log_arrived).
 *
 * DESIGN: every node keeps, per room, the users of each other node
 * (st->remote: node -> {userId: username}). A user is online when some node
 * has a connection of it: user_joined goes to this node's members when a
 * user becomes online anywhere, user_disconnected when it is online
 * nowhere, so a user with tabs on two nodes joins and leaves once.
 * onlineUsers and the backend API's presence list every node's users.
 *
 * Messages (JSON objects, "t" says which):
 *   hello {users}  the room on that node is listening (it just loaded, or
 *                  came back after an outage): its users replace what was
 *                  known of it, and this node answers with a state
 *   state {users}  the same, without an answer
 *   join {u, n}    a user's first connection on that node
 *   leave {u}      its last
 *   frame {f}      a typing or presence frame to show this node's members
 *   kick {u}       the backend API closes a user's connections everywhere
 * They are at most once (core NATS): a hello after every outage repairs
 * what was lost, and a node that stops is forgotten through node_gone.
 */
#include "chat/chat_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tell(struct rr_room *room, json_t *o)
{
	/* rare (hellos, joins, leaves, kicks): -ENOTSUP when the room does
	 * not span nodes; published also before the room listens (a kick
	 * must go) */
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (s)
		rr_room_tell_nodes(room, s, strlen(s));
	free(s);
}

/* This node's users: {userId: username}. */
static json_t *local_users(struct chat_room *st)
{
	json_t *o = json_object();
	const char *uid;
	json_t *u;
	json_object_foreach(st->users, uid, u)
	{
		json_object_set(o, uid, json_object_get(u, "username"));
	}
	return o;
}

/* Joins and leaves go once the room hears the other nodes: before that,
 * its hello (chat_nodes_ready) carries the users it has then; in a room
 * that does not span nodes they cost nothing. */
void chat_nodes_join(struct rr_room *room, const struct chat_member *m)
{
	if (chat_state(room)->clustered)
		tell(room, json_pack("{s:s, s:s, s:s}", "t", "join", "u", m->user_id, "n",
				     m->user_name));
}

void chat_nodes_leave(struct rr_room *room, const struct chat_member *m)
{
	if (chat_state(room)->clustered)
		tell(room, json_pack("{s:s, s:s}", "t", "leave", "u", m->user_id));
}

void chat_nodes_frame(struct rr_room *room, const char *frame, size_t len)
{
	static const char head[] = "{\"t\":\"frame\",\"f\":";
	if (!chat_state(room)->clustered)
		return;
	/* the frame as it was broadcast here, spliced in without a re-parse */
	char *s = malloc(sizeof(head) + len + 1);
	if (s == NULL)
		return;
	memcpy(s, head, sizeof(head) - 1);
	memcpy(s + sizeof(head) - 1, frame, len);
	s[sizeof(head) - 1 + len] = '}';
	rr_room_tell_nodes(room, s, sizeof(head) + len);
	free(s);
}

void chat_nodes_kick(struct rr_room *room, const char *user_id)
{
	tell(room, json_pack("{s:s, s:s}", "t", "kick", "u", user_id));
}

void chat_nodes_ready(struct rr_room *room)
{
	struct chat_room *st = chat_state(room);
	if (st->users == NULL)
		return; /* init failed */
	st->clustered = true;
	tell(room, json_pack("{s:s, s:o}", "t", "hello", "users", local_users(st)));
}

static void announce(struct rr_room *room, const char *type, const char *uid, json_t *name)
{
	chat_broadcast_obj(room,
			   json_pack("{s:s, s:s, s:O}", "type", type, "userId", uid, "username",
				     name),
			   NULL);
}

/* A node's users are now `users` (NULL: none): tell this node's members who
 * came online and who went offline because of it. */
static void node_users(struct rr_room *room, struct chat_room *st, const char *node,
		       json_t *users)
{
	json_t *old = json_object_get(st->remote, node);
	if (old)
		json_incref(old);
	json_object_del(st->remote, node);
	const char *uid;
	json_t *u;
	if (users && json_object_size(users) > 0) {
		json_object_foreach(users, uid, u)
		{
			if (!json_is_string(u))
				continue;
			bool was = chat_user_online(st, uid) || json_object_get(old, uid);
			if (!was)
				announce(room, "user_joined", uid, u);
		}
		json_object_set(st->remote, node, users);
	}
	json_object_foreach(old, uid, u)
	{
		if (!chat_user_online(st, uid))
			announce(room, "user_disconnected", uid, u);
	}
	json_decref(old);
}

void chat_node_gone(struct rr_room *room, const char *node, size_t node_len)
{
	struct chat_room *st = chat_state(room);
	char name[256];
	if (st->remote == NULL || node_len >= sizeof(name))
		return;
	memcpy(name, node, node_len);
	name[node_len] = '\0';
	node_users(room, st, name, NULL);
}

/* {userId: username} with string values only */
static json_t *users_of(json_t *msg)
{
	json_t *users = json_object_get(msg, "users");
	if (!json_is_object(users))
		return NULL;
	json_t *out = json_object();
	const char *uid;
	json_t *u;
	json_object_foreach(users, uid, u)
	{
		if (json_is_string(u))
			json_object_set(out, uid, u);
	}
	return out;
}

void chat_node_message(struct rr_room *room, const char *node, size_t node_len, const void *data,
		       size_t len)
{
	struct chat_room *st = chat_state(room);
	char name[256];
	if (st->users == NULL || node_len >= sizeof(name))
		return;
	memcpy(name, node, node_len);
	name[node_len] = '\0';
	if (st->remote == NULL && (st->remote = json_object()) == NULL)
		return;
	json_t *msg = json_loadb(data, len, 0, NULL);
	const char *t = json_string_value(json_object_get(msg, "t"));
	const char *uid = json_string_value(json_object_get(msg, "u"));
	if (t == NULL) {
		/* not a chat node's (the runtime checked the envelope): dropped */
	} else if (strcmp(t, "hello") == 0 || strcmp(t, "state") == 0) {
		json_t *users = users_of(msg);
		node_users(room, st, name, users);
		json_decref(users);
		if (strcmp(t, "hello") == 0)
			tell(room, json_pack("{s:s, s:o}", "t", "state", "users", local_users(st)));
	} else if (strcmp(t, "join") == 0 && uid &&
		   json_is_string(json_object_get(msg, "n"))) {
		json_t *users = json_object_get(st->remote, name);
		if (users == NULL) {
			users = json_object();
			json_object_set_new(st->remote, name, users);
		}
		json_t *n = json_object_get(msg, "n");
		if (!chat_user_online(st, uid))
			announce(room, "user_joined", uid, n);
		json_object_set(users, uid, n);
	} else if (strcmp(t, "leave") == 0 && uid) {
		json_t *users = json_object_get(st->remote, name);
		json_t *n = json_object_get(users, uid);
		if (n) {
			json_incref(n);
			json_object_del(users, uid);
			if (!chat_user_online(st, uid))
				announce(room, "user_disconnected", uid, n);
			json_decref(n);
		}
	} else if (strcmp(t, "frame") == 0) {
		json_t *f = json_object_get(msg, "f");
		const char *ft = json_string_value(json_object_get(f, "type"));
		/* only what a member's client frame makes: nothing else is
		 * shown on another node's word */
		if (ft && (strcmp(ft, "typing") == 0 || strcmp(ft, "presence") == 0))
			chat_broadcast_obj(room, json_incref(f), NULL);
	} else if (strcmp(t, "kick") == 0 && uid) {
		chat_kick_local(st, uid);
	}
	json_decref(msg);
}
