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

static const struct rr_conn_owner raw_owner = {
	.message = raw_message,
	.detach = raw_detach,
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

void rr_room_builtin_register(void);
void rr_room_builtin_register(void)
{
	rr_gate_route(RR_ROUTE_ECHO, echo_open, false);
	rr_gate_route(RR_ROUTE_RAW, raw_open, false);
}
