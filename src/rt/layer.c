/*
 * The runtime's place in the loop: registered with the reactor (per-core
 * start and stop, storage completions) and the gate (its routes).
 */
#include "rt/rt.h"
#include "core/hash.h"
#include "http/http.h"

#include <stdio.h>
#include <string.h>

static void rt_start(struct rr_core *core)
{
	rr_rt_alarms_start(core);
	rr_rt_nodes_start(core);
}

static void rt_stop(struct rr_core *core)
{
	rr_rt_alarms_stop(core);
}

static const struct rr_layer rt_layer = {
    .name = "handler runtime",
    .init = rr_rt_clog_init,
    .fini = rr_rt_clog_fini,
    .start = rt_start,
    .stop = rt_stop,
};

void rr_rt_register(void)
{
	rr_rt_member_register();
	rr_rt_nodes_register();
	rr_rt_alarms_register();
	rr_reactor_layer(RR_LAYER_RT, &rt_layer);
	rr_reactor_on(RR_UD_STORE, rr_rt_store_done);
	for (unsigned r = 0; r < RR_ROUTE_CUSTOM_BASE; r++)
		if (rr_handler_for_route(r))
			rr_rt_open_register(r);
	for (unsigned i = 0; i < rr_handler_cfg.ncustom; i++) {
		rr_rt_open_register(RR_ROUTE_CUSTOM_BASE + i);
		/* its broadcasts span nodes on ringroom.h.<mount prefix's hash>:
		 * the same on every node that mounts it on the same prefix */
		const char *mp = rr_handler_cfg.custom_prefix[i];
		char subj[32];
		snprintf(subj, sizeof(subj), "ringroom.h.%016llx",
			 (unsigned long long)rr_hash(mp, strlen(mp)));
		rr_room_net_kind((uint8_t)(RR_ROUTE_CUSTOM_BASE + i), subj);
	}
	rr_room_net_tag_filter(rr_rt_has_tag);
	if (rr_handler_cfg.ncustom)
		rr_gate_matcher(rr_rt_match_custom);
}
