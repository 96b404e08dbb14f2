/*
 * The public API of include/ringroom/handler.h, implemented on the room,
 * connection and storage layers. Every call runs on the room's core.
 */
#include "rt/rt.h"
#include "core/log.h"
#include "core/time.h"
#include "http/http.h"
#include "ws/ws.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- the public API ------------------------------------------------------ */

void *rr_room_state(struct rr_room *room)
{
	return rt_of(room) ? rt_of(room)->state : NULL;
}

const char *rr_room_name(const struct rr_room *room, size_t *len)
{
	if (len)
		*len = room->name_len;
	return room->name;
}

uint32_t rr_room_size(const struct rr_room *room)
{
	return room->count;
}

/* A loaded handler's broadcast also reaches the room's members on the
 * other nodes (--cluster; room/net.c). The built-in handlers' rooms have
 * their own ways across (the chat room its log and node messages). */
static void to_nodes(struct rr_room *room, int opcode, const char *tag, const void *data,
		     size_t len)
{
	if (room->kind >= RR_ROUTE_CUSTOM_BASE)
		rr_room_net_broadcast(rr_core_current(), room, (uint8_t)opcode, tag, data, len);
}

int rr_room_broadcast(struct rr_room *room, int opcode, const void *data, size_t len,
		      struct rr_conn *except)
{
	struct rr_frame *f = rr_frame_ws((uint8_t)opcode, data, len);
	if (f == NULL)
		return -ENOMEM;
	rr_room_send_all(rr_core_current(), room, f, except, NULL, NULL);
	rr_frame_unref(f);
	to_nodes(room, opcode, NULL, data, len);
	return 0;
}

bool rr_rt_has_tag(const struct rr_conn *m, const void *tag)
{
	return rr_member_has_tag(m, tag);
}

int rr_room_broadcast_tag(struct rr_room *room, const char *tag, int opcode, const void *data,
			  size_t len, struct rr_conn *except)
{
	struct rr_frame *f = rr_frame_ws((uint8_t)opcode, data, len);
	if (f == NULL)
		return -ENOMEM;
	rr_room_send_all(rr_core_current(), room, f, except, rr_rt_has_tag, tag);
	rr_frame_unref(f);
	to_nodes(room, opcode, tag, data, len);
	return 0;
}

size_t rr_room_members(struct rr_room *room, const char *tag, struct rr_conn **out, size_t max)
{
	size_t n = 0;
	for (uint32_t i = 0; i < room->count; i++) {
		struct rr_conn *m = room->members[i];
		if (tag && !rr_member_has_tag(m, tag))
			continue;
		if (n < max)
			out[n] = m;
		n++;
	}
	return n;
}

struct rr_conn *rr_room_member_by_session(struct rr_room *room, const char *session)
{
	for (uint32_t i = 0; i < room->count; i++) {
		struct rr_conn *m = room->members[i];
		if (cx(m) && strcmp(cx(m)->session, session) == 0)
			return m;
	}
	return NULL;
}

int rr_member_send(struct rr_conn *c, int opcode, const void *data, size_t len)
{
	struct rr_frame *f = rr_frame_ws((uint8_t)opcode, data, len);
	if (f == NULL)
		return -ENOMEM;
	int rc = rr_conn_send(rr_core_current(), c, f);
	rr_frame_unref(f);
	return rc;
}

int rr_member_send_now(struct rr_conn *c, int opcode, const void *data, size_t len)
{
	struct rr_frame *f = rr_frame_ws((uint8_t)opcode, data, len);
	if (f == NULL)
		return -ENOMEM;
	int rc = rr_conn_send_bulk(rr_core_current(), c, f);
	rr_frame_unref(f);
	return rc;
}

void rr_member_hold(struct rr_conn *c)
{
	if (cx(c))
		rr_conn_hold(c);
}

void rr_member_release(struct rr_conn *c)
{
	if (cx(c))
		rr_conn_release_hold(rr_core_current(), c);
}

uint64_t rr_member_queued_bytes(const struct rr_conn *c)
{
	return rr_conn_queued_bytes(c);
}

void rr_member_want_writable(struct rr_conn *c)
{
	rr_conn_want_writable(rr_core_current(), c);
}

void rr_member_close(struct rr_conn *c, uint16_t code, const char *reason)
{
	rr_conn_close(rr_core_current(), c, code, reason);
}

const char *rr_member_session(const struct rr_conn *c)
{
	return cx(c) ? cx(c)->session : "";
}

const char *rr_member_resume_token(const struct rr_conn *c)
{
	return cx(c) ? cx(c)->resume_token : NULL;
}

int rr_member_set_tags(struct rr_conn *c, const char *const *tags, size_t n)
{
	if (cx(c) == NULL || n > RR_TAGS_MAX)
		return -EINVAL;
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = tags[i] ? strlen(tags[i]) : 0;
		if (l == 0 || l > RR_TAG_BYTES_MAX)
			return -EINVAL;
		total += l + 1;
	}
	char *buf = NULL;
	if (total) {
		buf = malloc(total);
		if (buf == NULL)
			return -ENOMEM;
		size_t o = 0;
		for (size_t i = 0; i < n; i++) {
			size_t l = strlen(tags[i]) + 1;
			memcpy(buf + o, tags[i], l);
			o += l;
		}
	}
	free(cx(c)->tags);
	cx(c)->tags = buf;
	cx(c)->tags_len = (uint32_t)total;
	cx(c)->ntags = (uint8_t)n;
	return 0;
}

const char *rr_member_tag(const struct rr_conn *c, size_t i)
{
	if (cx(c) == NULL || i >= cx(c)->ntags)
		return NULL;
	const char *p = cx(c)->tags;
	while (i--)
		p += strlen(p) + 1;
	return p;
}

bool rr_member_has_tag(const struct rr_conn *c, const char *tag)
{
	for (size_t i = 0;; i++) {
		const char *t = rr_member_tag(c, i);
		if (t == NULL)
			return false;
		if (strcmp(t, tag) == 0)
			return true;
	}
}

int rr_member_set_attachment(struct rr_conn *c, const void *data, size_t len)
{
	if (cx(c) == NULL)
		return -EINVAL;
	if (len > rr_handler_cfg.max_attachment_bytes)
		return -E2BIG;
	uint8_t *p = NULL;
	if (len) {
		p = malloc(len);
		if (p == NULL)
			return -ENOMEM;
		memcpy(p, data, len);
	}
	free(cx(c)->attachment);
	cx(c)->attachment = p;
	cx(c)->attachment_len = (uint32_t)len;
	/* written through, except during open(): the session is saved once
	 * open() returns */
	if (c->state == RR_CONN_OPEN && cx(c)->query == NULL)
		rr_rt_session_save(rr_core_current(), c);
	return 0;
}

const void *rr_member_attachment(const struct rr_conn *c, size_t *len)
{
	if (cx(c) == NULL || cx(c)->attachment == NULL) {
		if (len)
			*len = 0;
		return NULL;
	}
	if (len)
		*len = cx(c)->attachment_len;
	return cx(c)->attachment;
}

void rr_member_set_last_id(struct rr_conn *c, uint64_t id)
{
	if (cx(c) && id > cx(c)->last_id)
		cx(c)->last_id = id;
}

uint64_t rr_member_last_id(const struct rr_conn *c)
{
	return cx(c) ? cx(c)->last_id : 0;
}

uint64_t rr_member_auto_response_ms(const struct rr_conn *c)
{
	return cx(c) ? cx(c)->auto_resp_ms : 0;
}

int rr_room_set_auto_response(struct rr_room *room, const char *request, const char *response,
			      bool match_type)
{
	struct rr_room_rt *rt = rt_of(room);
	if (rt == NULL)
		return -EINVAL;
	free(rt->auto_req);
	free(rt->auto_resp);
	rt->auto_req = rt->auto_resp = NULL;
	if (request == NULL)
		return 0;
	rt->auto_req = strdup(request);
	rt->auto_resp = strdup(response ? response : "");
	if (rt->auto_req == NULL || rt->auto_resp == NULL)
		return -ENOMEM;
	rt->auto_req_len = strlen(request);
	rt->auto_match_type = match_type;
	return 0;
}

int rr_room_tell_nodes(struct rr_room *room, const void *data, size_t len)
{
	struct rr_room_rt *rt = rt_of(room);
	if (rt == NULL)
		return -ENOTSUP;
	return rr_rt_nodes_tell(rr_core_current(), rt, data, len);
}

const char *rr_log_epoch(const struct rr_room *room)
{
	return rt_of(room) ? rt_of(room)->epoch : "";
}

uint64_t rr_log_last_id(const struct rr_room *room)
{
	const struct rr_room_rt *rt = rt_of(room);
	if (rt && rt->clog)
		return rr_rt_clog_last_id(rt);
	return rt ? rt->last_id : 0;
}

uint64_t rr_log_first_id(const struct rr_room *room)
{
	return rt_of(room) ? rt_of(room)->first_id : 1;
}

int rr_log_append(struct rr_room *room, const void *data, size_t len, uint64_t *id_out,
		  rr_log_done_fn *done, void *arg)
{
	return rr_log_append_once(room, NULL, 0, data, len, id_out, done, arg);
}

int rr_log_append_once(struct rr_room *room, const void *key, size_t klen, const void *data,
		       size_t len, uint64_t *id_out, rr_log_done_fn *done, void *arg)
{
	struct rr_core *core = rr_core_current();
	struct rr_room_rt *rt = rt_of(room);
	if (rt == NULL || !rt->h->durable || rr_handler_cfg.store == NULL)
		return -ENOSYS;
	if (rt->clog)
		return rr_rt_clog_append(rt, key, klen, data, len, id_out, done, arg);
	struct sreq *s = rr_rt_sreq_new(core, room, RR_STORE_APPEND, SR_APPEND, len);
	if (s == NULL)
		return -ENOMEM;
	memcpy(s->data + rt->store_name_len, data, len);
	s->req.data = s->data + rt->store_name_len;
	s->req.len = (uint32_t)len;
	s->req.id = rt->last_id + 1;
	s->req.ts_ms = rr_wall_ms();
	s->cb.log_done = done;
	s->arg = arg;
	int rc = rr_rt_sreq_submit(core, s);
	if (rc < 0)
		return rc;
	rt->last_id++;
	if (id_out)
		*id_out = rt->last_id;
	return 0;
}

static int log_read(struct rr_room *room, enum rr_store_op op, uint64_t id, uint32_t limit,
		    rr_log_read_fn *done, void *arg)
{
	struct rr_core *core = rr_core_current();
	struct rr_room_rt *rt = rt_of(room);
	if (rt == NULL || !rt->h->durable || rr_handler_cfg.store == NULL)
		return -ENOSYS;
	struct sreq *s = rr_rt_sreq_new(core, room, op, SR_READ, 0);
	if (s == NULL)
		return -ENOMEM;
	s->req.id = id;
	s->req.limit = limit;
	s->cb.read_done = done;
	s->arg = arg;
	return rr_rt_sreq_submit(core, s);
}

int rr_log_read_after(struct rr_room *room, uint64_t id, uint32_t limit, rr_log_read_fn *done,
		      void *arg)
{
	return log_read(room, RR_STORE_READ_AFTER, id, limit, done, arg);
}

int rr_log_read_before(struct rr_room *room, uint64_t id, uint32_t limit, rr_log_read_fn *done,
		       void *arg)
{
	return log_read(room, RR_STORE_READ_BEFORE, id, limit, done, arg);
}

int rr_kv_get(struct rr_room *room, const void *key, size_t klen, rr_kv_done_fn *done, void *arg)
{
	return rr_rt_kv_op(room, RR_STORE_KV_GET, key, klen, NULL, 0, done, arg);
}

int rr_kv_put(struct rr_room *room, const void *key, size_t klen, const void *val, size_t vlen,
	      rr_kv_done_fn *done, void *arg)
{
	return rr_rt_kv_op(room, RR_STORE_KV_PUT, key, klen, val, vlen, done, arg);
}

int rr_kv_delete(struct rr_room *room, const void *key, size_t klen, rr_kv_done_fn *done, void *arg)
{
	return rr_rt_kv_op(room, RR_STORE_KV_DEL, key, klen, NULL, 0, done, arg);
}

int rr_kv_list(struct rr_room *room, const void *prefix, size_t plen, const void *after,
	       size_t alen, uint32_t limit, rr_kv_list_fn *done, void *arg)
{
	struct rr_core *core = rr_core_current();
	if (rt_of(room) == NULL || rr_handler_cfg.store == NULL)
		return -ENOSYS;
	if (plen > RR_STORE_KEY_MAX || alen > RR_STORE_KEY_MAX)
		return -EINVAL;
	struct sreq *s = rr_rt_sreq_new(core, room, RR_STORE_KV_LIST, SR_KV_LIST, plen + alen);
	if (s == NULL)
		return -ENOMEM;
	uint8_t *p = s->data + rt_of(room)->store_name_len;
	if (plen)
		memcpy(p, prefix, plen);
	s->req.key = p;
	s->req.key_len = (uint32_t)plen;
	if (after) {
		memcpy(p + plen, after, alen);
		s->req.after = p + plen;
		s->req.after_len = (uint32_t)alen;
	}
	s->req.limit = limit;
	s->cb.list_done = done;
	s->arg = arg;
	return rr_rt_sreq_submit(core, s);
}

uint64_t rr_now_wall_ms(void)
{
	return rr_wall_ms();
}

int rr_query_param(const char *query, size_t len, const char *name, char *out, size_t cap)
{
	struct rr_http_str q = {query, len}, v;
	if (cap == 0)
		return -EINVAL;
	if (!rr_http_query_get(q, name, &v))
		return -ENOENT;
	ssize_t n = rr_http_pct_decode(v, out, cap - 1);
	if (n < 0)
		return -EINVAL;
	out[n] = '\0';
	return (int)n;
}

const char *rr_member_address(const struct rr_conn *c, char *out, size_t cap)
{
	rr_addr_format(&c->peer, out, cap);
	return out;
}

void rr_api_reply(struct rr_api_call *call, int status, const char *json, size_t len)
{
	rr_gate_api_done(rr_core_current(), call, status, json, len);
}

void rr_api_error(struct rr_api_call *call, int status, const char *code, const char *message)
{
	rr_gate_api_error(rr_core_current(), call, status, code, message);
}
