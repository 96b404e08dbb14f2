/*
 * Members of spread rooms on other cores: see conn.h ("spread rooms") and
 * xq.h. This file runs what arrives from another core: on the home, a
 * member's join, messages, leaving and low queue, played on its stub; on a
 * member's core, the home's 101 or refusal, frames, holds and closes,
 * played on the member's connection.
 */
#include "conn/conn.h"
#include "conn/xq.h"
#include "core/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct rr_conn_shard *shard;

void rr_conn_shard_register(const struct rr_conn_shard *s)
{
	shard = s;
}

/* ---- a remote member, on its own core --------------------------------------- */

static void member_message(struct rr_core *core, struct rr_conn *c, uint8_t opcode, uint8_t *p,
			   size_t n)
{
	struct rr_remote *rm = c->remote;
	uint8_t *dst = rr_xq_op(core, rm->core, RR_XOP_MSG, 0, opcode, rm->idx, rm->gen, n);
	if (dst == NULL) {
		rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
		return;
	}
	memcpy(dst, p, n);
}

static void member_detach(struct rr_core *core, struct rr_conn *c)
{
	if (c->room && shard) {
		shard->detach(core, c);
		RR_STAT_DEC(core, shard_members);
	}
}

static void member_leave(struct rr_core *core, struct rr_conn *c, uint16_t code, bool clean)
{
	struct rr_remote *rm = c->remote;
	if (rm && rm->gen) /* the home has a stub for it */
		rr_xq_op(core, rm->core, RR_XOP_LEFT, clean, code, rm->idx, rm->gen, 0);
}

static void member_writable(struct rr_core *core, struct rr_conn *c)
{
	struct rr_remote *rm = c->remote;
	uint64_t *q = rr_xq_op(core, rm->core, RR_XOP_WRITABLE, 0, 0, rm->idx, rm->gen, sizeof(*q));
	if (q)
		*q = rr_conn_queued_bytes(c);
}

static void member_release(struct rr_core *core, struct rr_conn *c)
{
	(void)core;
	rr_remote_free(c);
	c->flags &= ~RR_CF_REMOTE;
}

static size_t member_room(const struct rr_conn *c, const char **name)
{
	*name = c->remote ? c->remote->room : "";
	return c->remote ? c->remote->room_len : 0;
}

static const struct rr_conn_owner member_owner = {
    .message = member_message,
    .detach = member_detach,
    .leave = member_leave,
    .writable = member_writable,
    .release = member_release,
    .room = member_room,
};

void rr_conn_remote_join(struct rr_core *core, struct rr_conn *c, unsigned home, unsigned route,
			 const char *room, size_t room_len, const void *record, size_t len,
			 const uint8_t *extra, size_t extra_len)
{
	struct rr_remote *rm = calloc(1, sizeof(*rm) + room_len + 1);
	struct rr_xjoin *j = NULL;
	if (rm && extra_len) {
		rm->early = malloc(extra_len);
		if (rm->early == NULL) {
			free(rm);
			rm = NULL;
		}
	}
	if (rm)
		j = rr_xq_op(core, home, RR_XOP_JOIN, 0, 0, c->idx, c->gen, sizeof(*j) + len);
	if (j == NULL) {
		if (rm)
			free(rm->early);
		free(rm);
		rr_conn_reply(core, c, 503, NULL);
		return;
	}
	rm->core = home;
	rm->route = (uint8_t)route;
	rm->room_len = (uint8_t)room_len;
	memcpy(rm->room, room, room_len);
	if (extra_len) {
		memcpy(rm->early, extra, extra_len);
		rm->early_len = (uint32_t)extra_len;
	}
	j->accepted_ns = c->accepted_ns;
	_Static_assert(sizeof(c->peer) <= sizeof(j->peer), "struct rr_xjoin: peer");
	memcpy(j->peer, &c->peer, sizeof(c->peer));
	j->exp_s = c->exp_s;
	j->record_len = (uint32_t)len;
	memcpy(j->record, record, len);

	free(c->hs);
	c->hs = NULL;
	c->route = (uint8_t)route;
	c->remote = rm;
	c->flags |= RR_CF_REMOTE;
	c->owner = &member_owner;
	c->state = RR_CONN_WAIT; /* until the home answers; the handshake deadline runs */
}

/* The home's 101 for a remote member. */
static void on_upgrade(struct rr_core *core, unsigned src, const struct rr_xop_hdr *h,
		       const struct rr_xupgrade *u)
{
	struct rr_conn *c = rr_conn_lookup(core, rr_ud_conn(RR_UD_NONE, h->gen, h->idx));
	if (c == NULL || c->state != RR_CONN_WAIT || !(c->flags & RR_CF_REMOTE)) {
		/* gone meanwhile (its client left, its handshake timed out) */
		rr_xq_op(core, src, RR_XOP_LEFT, 0, 1006, u->stub_idx, u->stub_gen, 0);
		return;
	}
	struct rr_remote *rm = c->remote;
	rm->idx = u->stub_idx;
	rm->gen = u->stub_gen;
	if (rr_conn_upgrade(core, c, u->accept, u->protocol) < 0)
		return; /* answered 503: its leave tells the home */
	if (shard == NULL || shard->join(core, c, rm->route, rm->room, rm->room_len) < 0) {
		rr_conn_close(core, c, RR_WS_CLOSE_INTERNAL, "out of memory");
		return;
	}
	RR_STAT_INC(core, shard_members);
	uint8_t *early = rm->early;
	size_t n = rm->early_len;
	rm->early = NULL;
	rm->early_len = 0;
	rr_conn_feed(core, c, early, n);
	free(early);
}

static struct rr_conn *member(struct rr_core *core, const struct rr_xop_hdr *h)
{
	struct rr_conn *c = rr_conn_lookup(core, rr_ud_conn(RR_UD_NONE, h->gen, h->idx));
	return c && (c->flags & RR_CF_REMOTE) ? c : NULL;
}

static struct rr_frame *take_frame(struct rr_core *core, struct rr_frame *origin)
{
	RR_STAT_INC(core, shard_frames_received);
	return rr_frame_alias(origin);
}

static void run_on_member(struct rr_core *core, unsigned src, const struct rr_xop_hdr *h, void *p)
{
	struct rr_conn *c;
	struct rr_frame *f;
	switch (h->op) {
	case RR_XOP_UPGRADE:
		on_upgrade(core, src, h, p);
		return;
	case RR_XOP_REPLY:
		f = *(struct rr_frame **)p;
		f = f ? rr_frame_alias(f) : NULL;
		c = member(core, h);
		if (c && c->state == RR_CONN_WAIT) {
			rr_conn_reply(core, c, h->code, f); /* takes f */
			return;
		}
		if (f)
			rr_frame_unref(f);
		return;
	case RR_XOP_CLOSE:
		if ((c = member(core, h)) != NULL)
			rr_conn_close(core, c, h->code, p);
		return;
	case RR_XOP_HOLD:
		if ((c = member(core, h)) != NULL)
			rr_conn_hold(c);
		return;
	case RR_XOP_RELEASE:
		if ((c = member(core, h)) != NULL)
			rr_conn_release_hold(core, c);
		return;
	case RR_XOP_WANT:
		if ((c = member(core, h)) != NULL)
			rr_conn_want_writable(core, c);
		return;
	case RR_XOP_FRAME_TO:
		f = take_frame(core, *(struct rr_frame **)p);
		c = member(core, h);
		if (f && c)
			(h->flag ? rr_conn_send_bulk : rr_conn_send)(core, c, f);
		if (f)
			rr_frame_unref(f);
		return;
	case RR_XOP_FRAME_ALL: {
		const struct rr_xall *a = p;
		f = take_frame(core, a->f);
		c = h->gen ? member(core, h) : NULL;
		if (f && shard)
			shard->deliver(core, a->route, a->room, a->room_len, f, c);
		if (f)
			rr_frame_unref(f);
		return;
	}
	default:
		return;
	}
}

/* ---- a stub, on the home ------------------------------------------------------ */

static void on_join(struct rr_core *core, unsigned src, const struct rr_xop_hdr *h,
		    const struct rr_xjoin *j)
{
	struct rr_conn *s = rr_conn_alloc(core, -1);
	struct rr_remote *rm = s ? calloc(1, sizeof(*rm)) : NULL;
	if (rm == NULL) {
		rr_warn("core %u: no slot for a member on core %u: answering 503", core->id, src);
		if (s)
			rr_conn_release(core, s);
		struct rr_frame **f =
		    rr_xq_op(core, src, RR_XOP_REPLY, 0, 503, h->idx, h->gen, sizeof(*f));
		if (f)
			*f = NULL;
		return;
	}
	rm->core = src;
	rm->idx = h->idx;
	rm->gen = h->gen;
	s->remote = rm;
	s->accepted_ns = j->accepted_ns;
	memcpy(&s->peer, j->peer, sizeof(s->peer));
	s->exp_s = j->exp_s;
	rr_conn_gate->arrived(core, s, j->record, j->record_len);
}

static struct rr_conn *stub(struct rr_core *core, const struct rr_xop_hdr *h)
{
	struct rr_conn *c = rr_conn_lookup(core, rr_ud_conn(RR_UD_NONE, h->gen, h->idx));
	return c && (c->flags & RR_CF_STUB) ? c : NULL;
}

static void run_on_stub(struct rr_core *core, unsigned src, const struct rr_xop_hdr *h, void *p)
{
	struct rr_conn *c;
	switch (h->op) {
	case RR_XOP_JOIN:
		on_join(core, src, h, p);
		return;
	case RR_XOP_MSG: {
		size_t n = h->len - sizeof(*h);
		c = stub(core, h);
		if (c && c->state == RR_CONN_OPEN && c->owner && c->owner->message)
			c->owner->message(core, c, (uint8_t)h->code, p, n);
		return;
	}
	case RR_XOP_LEFT:
		if ((c = stub(core, h)) != NULL)
			rr_conn_stub_left(core, c, h->code, h->flag);
		return;
	case RR_XOP_WRITABLE:
		c = stub(core, h);
		if (c && c->state == RR_CONN_OPEN) {
			c->remote->queued = *(uint64_t *)p;
			if (c->owner && c->owner->writable)
				c->owner->writable(core, c);
		}
		return;
	default:
		run_on_member(core, src, h, p);
		return;
	}
}

static void run_batch(struct rr_core *core, struct rr_xbatch *b)
{
	uint32_t off = 0;
	while (off + sizeof(struct rr_xop_hdr) <= b->len) {
		struct rr_xop_hdr *h = (struct rr_xop_hdr *)(b->buf + off);
		run_on_stub(core, b->src, h, h + 1);
		off = RR_XOP_NEXT(off, h);
	}
	free(b);
}

void rr_remote_on_batch(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	struct rr_xbatch *b = rr_xq_ready(core, rr_ud_to_ptr(io_uring_cqe_get_data64(cqe)));
	while (b) {
		run_batch(core, b);
		b = rr_xq_ready(core, NULL);
	}
}

void rr_conn_remote_all(struct rr_core *core, unsigned dst, unsigned route, const char *room,
			size_t n, struct rr_frame *f, const struct rr_conn *except)
{
	uint32_t idx = 0, gen = 0;
	if (except && (except->flags & RR_CF_STUB) && except->remote->core == dst) {
		idx = except->remote->idx;
		gen = except->remote->gen;
	}
	struct rr_xall *a = rr_xq_op(core, dst, RR_XOP_FRAME_ALL, 0, 0, idx, gen, sizeof(*a) + n);
	if (a == NULL)
		return;
	a->f = rr_frame_share(f);
	a->route = (uint8_t)route;
	a->room_len = (uint8_t)n;
	memcpy(a->room, room, n);
	RR_STAT_INC(core, shard_frames_forwarded);
}
