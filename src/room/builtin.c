/*
 * The built-in owners of WebSocket connections: /echo (every data message
 * back to its sender) and /raw/{room} (every data message, unchanged, to
 * every other member of the room; nothing stored).
 */
#include "conn/conn.h"
#include "core/log.h"
#include "gate/gate.h"
#include "http/http.h"
#include "room/room.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void echo_message(struct rr_core *core, struct rr_conn *c, uint8_t opcode, uint8_t *p,
			 size_t n)
{
	struct rr_frame *f = rr_frame_ws(opcode, p, n);
	if (f == NULL) {
		rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
		return;
	}
	rr_conn_send(core, c, f);
	rr_frame_unref(f);
}

static const struct rr_conn_owner echo_owner = {
    .message = echo_message,
};

static void raw_message(struct rr_core *core, struct rr_conn *c, uint8_t opcode, uint8_t *p,
			size_t n)
{
	if (c->room == NULL)
		return;
	struct rr_frame *f = rr_frame_ws(opcode, p, n);
	if (f == NULL) {
		rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
		return;
	}
	rr_room_send_all(core, c->room, f, c, NULL, NULL);
	rr_frame_unref(f);
}

static void raw_detach(struct rr_core *core, struct rr_conn *c)
{
	struct rr_room *r = c->room;
	if (r == NULL)
		return;
	rr_room_detach(core, c);
	rr_room_release_if_empty(core, r);
}

static size_t raw_room(const struct rr_conn *c, const char **name)
{
	const struct rr_room *r = c->room;
	*name = r ? r->name : "";
	return r ? r->name_len : 0;
}

static const struct rr_conn_owner raw_owner = {
    .message = raw_message,
    .detach = raw_detach,
    .room = raw_room,
};

static void echo_open(struct rr_core *core, struct rr_conn *c, const struct rr_gate_upgrade *u)
{
	c->owner = &echo_owner;
	if (rr_conn_upgrade(core, c, u->accept, NULL) == 0)
		rr_conn_feed(core, c, u->extra, u->extra_len);
}

static void raw_open(struct rr_core *core, struct rr_conn *c, const struct rr_gate_upgrade *u)
{
	struct rr_room *r = rr_room_get(core, (uint8_t)u->route, u->room, u->room_len);
	if (r == NULL) {
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	int rc = rr_room_join(core, r, c);
	if (rc < 0) {
		rr_info("conn %u: room '%s' is full (%u members), answering 503", c->idx, r->name,
			r->count);
		rr_room_release_if_empty(core, r);
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	c->owner = &raw_owner;
	if (rr_conn_upgrade(core, c, u->accept, NULL) < 0) {
		raw_detach(core, c); /* answered 503 instead */
		return;
	}
	rr_conn_feed(core, c, u->extra, u->extra_len);
}

/* POST /api/raw/{room}: the body to every member, as one frame. */
static void raw_api(struct rr_core *core, struct rr_api_call *call)
{
	struct rr_room *r = rr_room_find(core, RR_ROUTE_RAW, call->room, call->room_len);
	uint32_t n = 0;
	if (r && r->count) {
		struct rr_frame *f =
		    rr_frame_ws(call->text ? RR_WS_TEXT : RR_WS_BINARY, call->body, call->body_len);
		if (f == NULL) {
			rr_gate_api_error(core, call, 503, "unavailable", "out of memory");
			return;
		}
		n = rr_room_send_all(core, r, f, NULL, NULL, NULL);
		rr_frame_unref(f);
	}
	char body[48];
	int bl = snprintf(body, sizeof(body), "{\"delivered\":%u}", n);
	rr_gate_api_done(core, call, 200, body, (size_t)bl);
}

struct list {
	char *p;
	size_t len, cap;
	unsigned core;
	bool failed;
};

static void list_room(struct rr_room *r, void *arg)
{
	struct list *l = arg;
	const char *prefix = r->kind == RR_ROUTE_RAW	? "/raw/"
			     : r->kind == RR_ROUTE_CHAT ? "/chat/"
							: NULL;
	if (prefix == NULL || l->failed || r->shard)
		return; /* internal rooms (the alarm index), --handler rooms, and
			 * shards (their members are in the home's count) */
	if (l->cap - l->len < RR_ROOM_NAME_MAX + 80) {
		size_t cap = l->cap ? l->cap * 2 : 4096;
		char *np = realloc(l->p, cap);
		if (np == NULL) {
			l->failed = true;
			return;
		}
		l->p = np;
		l->cap = cap;
	}
	/* room names are [A-Za-z0-9._~-]: nothing to escape in JSON */
	l->len += (size_t)snprintf(l->p + l->len, l->cap - l->len,
				   "%s{\"path\":\"%s%s\",\"members\":%u,\"core\":%u}",
				   l->len ? "," : "", prefix, r->name, r->count, l->core);
}

static void list_rooms(struct rr_core *core, char **out, size_t *len)
{
	struct list l = {.core = core->id};
	rr_room_each(core, list_room, &l);
	if (l.failed) {
		free(l.p);
		l.p = NULL;
		l.len = 0;
	}
	*out = l.p;
	*len = l.len;
}

void rr_room_register(void)
{
	rr_room_layer_register();
	rr_room_shard_register();
	rr_gate_api(RR_ROUTE_RAW, raw_api);
	rr_gate_rooms(list_rooms);
	rr_gate_route(RR_ROUTE_ECHO, echo_open, false);
	rr_gate_route(RR_ROUTE_RAW, raw_open, false);
}
