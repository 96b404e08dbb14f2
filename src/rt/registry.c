/*
 * The runtime's registry of handlers (built in by route, or loaded from a
 * shared object for a path prefix with --handler) and its place in the
 * loop: per-core start and stop, storage completions.
 */
#include "rt/rt.h"
#include "core/log.h"
#include "http/http.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

struct rr_handler_config rr_handler_cfg;
struct rr_conn_owner rr_rt_owner; /* filled by rr_rt_member_register() */
struct rr_room_ops rr_rt_room_ops;

static const struct rr_handler *builtin[RR_ROUTE_CUSTOM_BASE];

void rr_rt_add(unsigned route, const struct rr_handler *h)
{
	if (route < RR_ROUTE_CUSTOM_BASE)
		builtin[route] = h;
}

const struct rr_handler *rr_handler_for_route(unsigned route)
{
	if (route < RR_ROUTE_CUSTOM_BASE)
		return builtin[route];
	if (route - RR_ROUTE_CUSTOM_BASE < rr_handler_cfg.ncustom)
		return rr_handler_cfg.custom[route - RR_ROUTE_CUSTOM_BASE];
	return NULL;
}

unsigned rr_rt_match_custom(const char *path, size_t n, const char **room, size_t *room_len)
{
	for (unsigned i = 0; i < rr_handler_cfg.ncustom; i++) {
		const char *pre = rr_handler_cfg.custom_prefix[i];
		size_t pn = strlen(pre);
		if (n > pn && memcmp(path, pre, pn) == 0) {
			*room = path + pn;
			*room_len = n - pn;
			return RR_ROUTE_CUSTOM_BASE + i;
		}
	}
	return 0;
}

int rr_handler_load_so(const char *spec)
{
	const char *eq = strchr(spec, '=');
	if (eq == NULL || eq == spec || spec[0] != '/' || eq[-1] != '/' ||
	    (size_t)(eq - spec) >= sizeof(rr_handler_cfg.custom_prefix[0])) {
		rr_err("--handler '%s': expected /prefix/=path/to/handler.so", spec);
		return -EINVAL;
	}
	if (rr_handler_cfg.ncustom == RR_CUSTOM_HANDLERS_MAX) {
		rr_err("--handler: at most %d handlers", RR_CUSTOM_HANDLERS_MAX);
		return -ENOSPC;
	}
	void *so = dlopen(eq + 1, RTLD_NOW | RTLD_LOCAL);
	if (so == NULL) {
		rr_err("--handler %s: %s", eq + 1, dlerror());
		return -ENOENT;
	}
	const struct rr_handler *(*get)(void);
	*(void **)&get = dlsym(so, "ringroom_handler");
	const struct rr_handler *h = get ? get() : NULL;
	if (h == NULL || h->abi != RR_HANDLER_ABI || h->message == NULL) {
		rr_err("--handler %s: no ringroom_handler() with ABI %d and a message callback",
		       eq + 1, RR_HANDLER_ABI);
		dlclose(so);
		return -EINVAL;
	}
	unsigned i = rr_handler_cfg.ncustom++;
	rr_handler_cfg.custom[i] = h;
	memcpy(rr_handler_cfg.custom_prefix[i], spec, (size_t)(eq - spec));
	rr_handler_cfg.custom_prefix[i][eq - spec] = '\0';
	rr_info("handler '%s' from %s serves %s{room}", h->name ? h->name : "?", eq + 1,
		rr_handler_cfg.custom_prefix[i]);
	return 0; /* the object stays loaded for the process's life */
}
