/*
 * The runtime's storage bridge: requests to the storage worker (one per
 * log append, read, key-value operation or session write), sessions, and
 * the completions the worker posts back to the room's core.
 */
#include "rt/rt.h"
#include "auth/jwt.h"
#include "core/log.h"
#include "core/time.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

static void sreq_done(struct rr_store_req *req);

struct sreq *rr_rt_sreq_new(struct rr_core *core, struct rr_room *r, enum rr_store_op op,
			    uint8_t kind, size_t extra)
{
	struct rr_room_rt *rt = rt_of(r);
	struct sreq *s = calloc(1, sizeof(*s) + rt->store_name_len + extra);
	if (s == NULL)
		return NULL;
	s->req.op = op;
	s->req.core = core->id;
	s->req.reply_ring_fd = core->ring_fd;
	s->req.done = sreq_done;
	memcpy(s->data, rt->store_name, rt->store_name_len);
	s->req.room = (const char *)s->data;
	s->req.room_len = rt->store_name_len;
	s->room = r;
	s->kind = kind;
	return s;
}

int rr_rt_sreq_submit(struct rr_core *core, struct sreq *s)
{
	if (rr_handler_cfg.store == NULL) {
		free(s);
		return -ENOSYS;
	}
	s->submit_ns = rr_now_ns();
	int rc = rr_store_submit(rr_handler_cfg.store, &s->req);
	if (rc < 0) {
		free(s);
		return rc;
	}
	rt_of(s->room)->ops_inflight++;
	core->store_inflight++;
	return 0;
}

/* ---- sessions ---------------------------------------------------------- */

void rr_rt_session_put(struct rr_core *core, struct rr_conn *c)
{
	struct rr_conn_ext *x = cx(c);
	struct rr_room *r = c->room ? c->room : (x ? x->left_room : NULL);
	if (x == NULL || r == NULL || rr_handler_cfg.store == NULL || !rt_of(r)->h->durable)
		return;
	size_t extra = RR_SESSION_ID_LEN + x->attachment_len + x->tags_len;
	struct sreq *s = rr_rt_sreq_new(core, r, RR_STORE_SESSION_PUT, SR_SESSION_PUT, extra);
	if (s == NULL)
		return;
	uint8_t *p = s->data + rt_of(r)->store_name_len;
	memcpy(p, x->session, RR_SESSION_ID_LEN);
	s->req.key = p;
	s->req.key_len = RR_SESSION_ID_LEN;
	p += RR_SESSION_ID_LEN;
	s->sess.room = s->req.room;
	s->sess.room_len = s->req.room_len;
	if (x->attachment_len)
		memcpy(p, x->attachment, x->attachment_len);
	s->sess.attachment = p;
	s->sess.attachment_len = x->attachment_len;
	p += x->attachment_len;
	if (x->tags_len)
		memcpy(p, x->tags, x->tags_len);
	s->sess.tags = p;
	s->sess.tags_len = x->tags_len;
	s->sess.last_id = x->last_id;
	s->sess.expiry_ms = rr_wall_ms() + rr_handler_cfg.session_ttl_ms;
	memcpy(s->sess.resume_hash, x->resume_hash, 32);
	s->req.session = &s->sess;
	if (rr_rt_sreq_submit(core, s) < 0)
		rr_warn("session %s: not saved (storage queue full)", x->session);
}

/* A fresh resume token (x->resume_token, handed to the client in open())
 * and its hash (what the store keeps). A new session also gets its id; a
 * resumed one keeps its id and only rotates the token: resume tokens are
 * single-use, each welcome carries the next one (on_session_get keeps the
 * old hash until open() accepts the resume). */
void rr_rt_new_session(struct rr_conn_ext *x)
{
	uint8_t raw[32];
	if (!x->resumed) {
		rr_rt_random(raw, 16);
		rr_jwt_b64url_encode(raw, 16, x->session, sizeof(x->session));
		x->session_new = true;
	}
	rr_rt_random(raw, 32);
	free(x->resume_token);
	x->resume_token = malloc(44);
	if (x->resume_token)
		rr_jwt_b64url_encode(raw, 32, x->resume_token, 44);
	/* without a token (out of memory) the hash is of "", which no
	 * presented token (checked non-empty) ever matches */
	rr_rt_sha256(x->resume_token ? x->resume_token : "", x->resume_token ? 43 : 0,
		     x->resume_hash);
}

/* ---- storage completions ------------------------------------------------- */

static void log_entries(const struct rr_store_req *req, struct rr_log_entry *out)
{
	for (uint32_t i = 0; i < req->out.n_items; i++) {
		out[i].id = req->out.items[i].id;
		out[i].ts_ms = req->out.items[i].ts_ms;
		out[i].data = req->out.items[i].val;
		out[i].len = req->out.items[i].val_len;
	}
}

/* The log position after a failed append: renumber from what is stored. */
static void on_reloaded(struct rr_core *core, struct sreq *s)
{
	struct rr_room_rt *rt = rt_of(s->room);
	(void)core;
	if (s->req.res == 0) {
		memcpy(rt->epoch, s->req.out.epoch, sizeof(rt->epoch));
		rt->last_id = s->req.out.last_id;
		rt->first_id = s->req.out.first_id;
	} else {
		rr_warn("room '%s': reloading its log failed: %s", s->room->name,
			strerror(-s->req.res));
	}
}

int rr_rt_room_load(struct rr_core *core, struct rr_room *r,
		    void (*done)(struct rr_core *core, struct sreq *s))
{
	struct sreq *s = rr_rt_sreq_new(core, r, RR_STORE_ROOM_LOAD, SR_ROOM_LOAD, 0);
	if (s == NULL)
		return -ENOMEM;
	s->done = done;
	return rr_rt_sreq_submit(core, s);
}

static void sreq_done(struct rr_store_req *req)
{
	struct sreq *s = (struct sreq *)req;
	struct rr_core *core = rr_core_current();
	struct rr_room *r = s->room;
	struct rr_room_rt *rt = rt_of(r);

	rt->ops_inflight--;
	core->store_inflight--;
	/* the writes: what a group commit makes durable */
	if (req->op == RR_STORE_APPEND || req->op == RR_STORE_SESSION_PUT ||
	    req->op == RR_STORE_SESSION_DEL || req->op == RR_STORE_KV_PUT ||
	    req->op == RR_STORE_KV_DEL)
		RR_HIST_OBSERVE(core, storage_commit_seconds, rr_now_ns() - s->submit_ns);
	r->busy++; /* callbacks may empty the room */
	if (s->done) {
		s->done(core, s);
		goto out;
	}
	switch (s->kind) {
	case SR_SESSION_PUT:
		if (req->res < 0)
			rr_warn("session not saved: %s", strerror(-req->res));
		break;
	case SR_APPEND:
		if (req->res < 0) {
			static __thread uint64_t last_log;
			if (core->now_ms - last_log > 1000) {
				rr_warn("room '%s': storing message %llu failed: %s", r->name,
					(unsigned long long)req->id, strerror(-req->res));
				last_log = core->now_ms;
			}
			/* renumber from what is stored: later appends of the
			 * failed batch fail with -ESTALE until this lands */
			if (req->res != -ESTALE)
				rr_rt_room_load(core, r, on_reloaded);
		}
		if (s->cb.log_done)
			s->cb.log_done(r, s->arg, req->res, req->id);
		break;
	case SR_READ: {
		struct rr_log_entry *e = NULL;
		if (req->res == 0 && req->out.n_items) {
			e = calloc(req->out.n_items, sizeof(*e));
			if (e == NULL)
				req->res = -ENOMEM;
			else
				log_entries(req, e);
		}
		s->cb.read_done(r, s->arg, req->res, e, req->res == 0 ? req->out.n_items : 0,
				req->out.more);
		free(e);
		break;
	}
	case SR_KV:
		if (s->cb.kv_done)
			s->cb.kv_done(r, s->arg, req->res, req->out.val, req->out.val_len);
		break;
	default:
		break;
	case SR_KV_LIST: {
		struct rr_log_entry *e = NULL;
		if (req->res == 0 && req->out.n_items) {
			e = calloc(req->out.n_items, sizeof(*e));
			if (e == NULL) {
				req->res = -ENOMEM;
			} else {
				for (uint32_t i = 0; i < req->out.n_items; i++) {
					e[i].data = req->out.items[i].key;
					e[i].len = req->out.items[i].key_len;
				}
			}
		}
		s->cb.list_done(r, s->arg, req->res, e, req->res == 0 ? req->out.n_items : 0,
				req->out.more);
		free(e);
		break;
	}
	}
out:
	rr_store_req_release(req);
	free(s);
	r->busy--;
	rr_room_release_if_empty(core, r);
}

void rr_rt_store_done(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	(void)core;
	rr_store_complete(rr_ud_to_ptr(io_uring_cqe_get_data64(cqe)));
}

void rr_rt_random(uint8_t *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(p + got, n - got, 0);
		if (r <= 0)
			continue; /* EINTR; the pool is initialised long before */
		got += (size_t)r;
	}
}

void rr_rt_sha256(const void *p, size_t n, uint8_t out[32])
{
	wc_Sha256Hash(p, (word32)n, out);
}

int rr_rt_kv_op(struct rr_room *room, enum rr_store_op op, const void *key, size_t klen,
		const void *val, size_t vlen, rr_kv_done_fn *done, void *arg)
{
	struct rr_core *core = rr_core_current();
	if (rt_of(room) == NULL || rr_handler_cfg.store == NULL)
		return -ENOSYS;
	if (klen == 0 || klen > RR_STORE_KEY_MAX || vlen > RR_STORE_VALUE_MAX)
		return -EINVAL;
	struct sreq *s = rr_rt_sreq_new(core, room, op, SR_KV, klen + vlen);
	if (s == NULL)
		return -ENOMEM;
	uint8_t *p = s->data + rt_of(room)->store_name_len;
	memcpy(p, key, klen);
	s->req.key = p;
	s->req.key_len = (uint32_t)klen;
	if (vlen)
		memcpy(p + klen, val, vlen);
	s->req.data = p + klen;
	s->req.len = (uint32_t)vlen;
	s->cb.kv_done = done;
	s->arg = arg;
	return rr_rt_sreq_submit(core, s);
}
