/* The backend API on a connection (gate/api.c): the gate's side. */
#ifndef RR_GATE_API_H
#define RR_GATE_API_H

#include <stdbool.h>

#include "gate/gate.h"

/* True with --api-key-file or --auth-secret: /api/ answers. */
bool rr_gate_api_enabled(void);
/* c's request buffer starts with an /api/ request: serve it, and every
 * pipelined one after it, keeping the connection open between them. */
void rr_gate_api_request(struct rr_core *core, struct rr_conn *c);
/* c speaks the API (after its first /api/ request). */
bool rr_gate_api_conn(const struct rr_conn *c);
/* Register the API's completion kinds with the reactor. */
void rr_gate_api_register(void);

#endif
