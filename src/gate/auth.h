/* The gate's token and Origin checks (gate/auth.c). */
#ifndef RR_GATE_AUTH_H
#define RR_GATE_AUTH_H

#include "gate/gate.h"
#include "http/http.h"

struct rr_frame;

/* Verify the request's token when --auth-secret is set: 0 (id filled,
 * *has_id true; or anonymous without a secret), or 401 with *reply the
 * answer to send (WWW-Authenticate with the reason, rr_http_response_401;
 * owned by the caller, NULL when out of memory: rr_conn_reply then sends a
 * plain 401). A token needs exp unless --allow-no-exp. who names the
 * connection in the log line; the token is never logged. */
int rr_gate_authenticate(const struct rr_http_req *req, const char *who, struct rr_identity *id,
			 bool *has_id, char *protocol, size_t pcap, struct rr_frame **reply);
/* True when origin may connect under the --allow-origin list. */
bool rr_gate_origin_allowed(const char *list, struct rr_http_str origin);

#endif
