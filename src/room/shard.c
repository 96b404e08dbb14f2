/*
 * The shards of spread rooms (room.h): on a core that is not a room's home,
 * the room's members accepted there, and the frames the home passes for
 * them. The connection layer calls in here (struct rr_conn_shard) for what
 * arrives from the home; the gate asks here whether a room is spread.
 */
#include "conn/conn.h"
#include "gate/gate.h"
#include "room/room.h"

static int shard_join(struct rr_core *core, struct rr_conn *c, unsigned route, const char *room,
		      size_t n)
{
	struct rr_room *r = rr_room_get_shard(core, (uint8_t)route, room, n);
	if (r == NULL)
		return -1;
	int rc = rr_room_join(core, r, c);
	if (rc < 0)
		rr_room_release_if_empty(core, r);
	return rc;
}

static void shard_detach(struct rr_core *core, struct rr_conn *c)
{
	struct rr_room *r = c->room;
	rr_room_detach(core, c);
	rr_room_release_if_empty(core, r);
}

static void shard_deliver(struct rr_core *core, unsigned route, const char *room, size_t n,
			  struct rr_frame *f, const struct rr_conn *except)
{
	struct rr_room *r = rr_room_find(core, (uint8_t)route, room, n);
	if (r && r->shard)
		rr_room_send_all(core, r, f, except, NULL, NULL);
}

static const struct rr_conn_shard shard = {
    .join = shard_join,
    .detach = shard_detach,
    .deliver = shard_deliver,
};

static bool spread(unsigned route, const char *room, size_t n)
{
	return rr_room_is_spread(route, room, n);
}

void rr_room_shard_register(void)
{
	rr_conn_shard_register(&shard);
	rr_gate_spread(spread);
}
