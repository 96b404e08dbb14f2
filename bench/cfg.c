/* What a run's configuration implies (connections, slow readers,
 * publishers), shared by the parent (main.c) and the workers (worker.c). */
#include "bench.h"

uint32_t rr_bench_cfg_total_conns(const struct rr_bench_cfg *cfg)
{
	if (cfg->mode == RR_BENCH_PUBLISH)
		return cfg->rooms * cfg->members + cfg->publishers;
	if (rr_bench_mode_rooms(cfg->mode))
		return cfg->rooms * cfg->members;
	return cfg->conns;
}

uint32_t rr_bench_cfg_slow_per_room(const struct rr_bench_cfg *cfg)
{
	if (cfg->mode != RR_BENCH_FANOUT || !(cfg->slow_pct > 0))
		return 0;
	uint32_t receivers = cfg->members - cfg->publishers;
	uint32_t n = (uint32_t)((double)cfg->members * cfg->slow_pct / 100.0 + 0.5);
	if (n == 0)
		n = 1; /* asked for some: at least one */
	return n < receivers ? n : receivers;
}

uint32_t rr_bench_cfg_total_pubs(const struct rr_bench_cfg *cfg)
{
	if (rr_bench_mode_rooms(cfg->mode))
		return cfg->rooms * cfg->publishers;
	if (cfg->mode == RR_BENCH_ECHO)
		return cfg->conns;
	return 0;
}

uint32_t rr_bench_cfg_port_index(const struct rr_bench_cfg *cfg, uint32_t gid)
{
	return cfg->nports ? gid % cfg->nports : 0;
}

uint16_t rr_bench_cfg_port(const struct rr_bench_cfg *cfg, uint32_t gid)
{
	return cfg->nports ? cfg->ports[gid % cfg->nports] : cfg->url.port;
}
