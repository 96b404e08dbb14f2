/*
 * The gate's token check: where a token may be (Authorization: Bearer,
 * ?token=, or the subprotocol "bearer.<token>" since browsers can't set
 * headers on a WebSocket), and its verification into an identity.
 */
#include "gate/auth.h"
#include "auth/jwt.h"
#include "core/log.h"
#include "core/time.h"
#include "http/http_reply.h"
#include "reactor/loop.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

struct rr_gate_config rr_gate_cfg;

/* Find the token; protocol receives the Sec-WebSocket-Protocol value to
 * answer (a browser needs one of its offered protocols back). */
static bool find_token(const struct rr_http_req *req, char *out, size_t cap, char *protocol,
		       size_t pcap)
{
	const struct rr_http_str *a = &req->authorization;
	if (a->n > 7 && strncasecmp(a->p, "Bearer ", 7) == 0) {
		size_t n = a->n - 7;
		if (n >= cap)
			return false;
		memcpy(out, a->p + 7, n);
		out[n] = '\0';
		return true;
	}
	struct rr_http_str v;
	if (rr_http_query_get(req->query, "token", &v)) {
		ssize_t n = rr_http_pct_decode(v, out, cap - 1);
		if (n < 0)
			return false;
		out[n] = '\0';
		return true;
	}
	/* Sec-WebSocket-Protocol: a, bearer.xyz, ... */
	const char *p = req->ws_protocol.p, *end = p + req->ws_protocol.n;
	bool found = false, ringroom = false;
	while (p && p < end) {
		while (p < end && (*p == ' ' || *p == ','))
			p++;
		const char *q = p;
		while (q < end && *q != ',' && *q != ' ')
			q++;
		size_t n = (size_t)(q - p);
		if (n > 7 && strncmp(p, "bearer.", 7) == 0 && n - 7 < cap && !found) {
			memcpy(out, p + 7, n - 7);
			out[n - 7] = '\0';
			found = true;
			if (!ringroom && n < pcap) {
				memcpy(protocol, p, n);
				protocol[n] = '\0';
			}
		} else if (n == 8 && strncmp(p, "ringroom", 8) == 0 && pcap > 8) {
			ringroom = true;
			memcpy(protocol, "ringroom", 9);
		}
		p = q;
	}
	return found;
}

int rr_gate_authenticate(const struct rr_http_req *req, const char *who, struct rr_identity *id,
			 bool *has_id, char *protocol, size_t pcap, struct rr_frame **reply)
{
	char token[RR_JWT_TOKEN_MAX + 1];
	bool have = find_token(req, token, sizeof(token), protocol, pcap);
	*reply = NULL;
	if (rr_gate_cfg.auth_secret_len == 0)
		return 0;
	if (!have) {
		rr_info("%s: no token, answering 401", who);
		*reply = rr_http_response_401("invalid_request", "no token");
		return 401;
	}
	struct rr_jwt_claims cl;
	int rc = rr_jwt_verify(token, strlen(token), rr_gate_cfg.auth_secret,
			       rr_gate_cfg.auth_secret_len, rr_wall_ms() / 1000, &cl);
	explicit_bzero(token, sizeof(token));
	if (rc == 0) {
		/* exp is required unless --allow-no-exp: a token without one
		 * would be good forever */
		const struct rr_core *core = rr_core_current();
		if (core == NULL || !core->broker->cfg.allow_no_exp)
			rc = rr_jwt_require_exp(&cl);
	}
	if (rc < 0) {
		rr_info("%s: token refused (%s), answering 401", who, rr_jwt_strerror(rc));
		*reply = rr_http_response_401("invalid_token", rr_jwt_strerror(rc));
		return 401;
	}
	memset(id, 0, sizeof(*id));
	snprintf(id->user_id, sizeof(id->user_id), "%s", cl.sub);
	snprintf(id->user_name, sizeof(id->user_name), "%s", cl.name);
	id->perm_read = cl.perm_read;
	id->perm_write = cl.perm_write;
	id->exp_s = cl.exp;
	*has_id = true;
	return 0;
}

/* --allow-origin: a comma-separated list; a request without Origin (not a
 * browser) passes, as browsers always send one. */
bool rr_gate_origin_allowed(const char *list, struct rr_http_str origin)
{
	if (list[0] == '\0' || origin.n == 0)
		return true;
	while (*list) {
		const char *end = strchr(list, ',');
		size_t n = end ? (size_t)(end - list) : strlen(list);
		while (n && *list == ' ') {
			list++;
			n--;
		}
		while (n && list[n - 1] == ' ')
			n--;
		if (n == origin.n && strncasecmp(list, origin.p, n) == 0)
			return true;
		if (end == NULL)
			break;
		list = end + 1;
	}
	return false;
}
