/* Reference-counted output frames: see frame.h. */
#include "core/frame.h"
#include "core/assert.h"
#include "ws/ws.h"

#include <stdlib.h>
#include <string.h>

struct rr_frame *rr_frame_new(size_t len)
{
	if (len > UINT32_MAX)
		return NULL;
	struct rr_frame *f = malloc(sizeof(*f) + len);
	if (f == NULL)
		return NULL;
	f->refs = 1;
	f->len = (uint32_t)len;
	f->data = f->bytes;
	f->origin = NULL;
	f->shared = false;
	return f;
}

struct rr_frame *rr_frame_ws(uint8_t opcode, const void *payload, size_t len)
{
	uint8_t hdr[RR_WS_HDR_MAX];
	size_t hlen = rr_ws_hdr_encode(hdr, opcode, true, len);
	struct rr_frame *f = rr_frame_new(hlen + len);
	if (f == NULL)
		return NULL;
	memcpy(f->data, hdr, hlen);
	if (len)
		memcpy(f->data + hlen, payload, len);
	return f;
}

struct rr_frame *rr_frame_ws_close(uint16_t code, const char *reason)
{
	uint8_t payload[125];
	size_t n = 2, rlen = reason ? strlen(reason) : 0;

	if (rlen > sizeof(payload) - 2)
		rlen = sizeof(payload) - 2;
	payload[0] = (uint8_t)(code >> 8);
	payload[1] = (uint8_t)code;
	if (rlen) {
		memcpy(payload + 2, reason, rlen);
		n += rlen;
	}
	return rr_frame_ws(RR_WS_CLOSE, payload, n);
}

void rr_frame_drop_holder(struct rr_frame *o)
{
	if (atomic_fetch_sub_explicit(&o->holders, 1, memory_order_acq_rel) == 1)
		free(o);
}

void rr_frame_unref(struct rr_frame *f)
{
	rr_assert(f->refs > 0);
	if (--f->refs > 0)
		return;
	if (f->origin) {
		rr_frame_drop_holder(f->origin);
		free(f);
	} else if (f->shared) {
		rr_frame_drop_holder(f);
	} else {
		free(f);
	}
}

struct rr_frame *rr_frame_share(struct rr_frame *f)
{
	rr_assert(f->origin == NULL);
	if (!f->shared) {
		f->shared = true;
		atomic_init(&f->holders, 1); /* the maker's own references */
	}
	atomic_fetch_add_explicit(&f->holders, 1, memory_order_relaxed);
	return f;
}

struct rr_frame *rr_frame_alias(struct rr_frame *origin)
{
	struct rr_frame *a = malloc(sizeof(*a));
	if (a == NULL) {
		rr_frame_drop_holder(origin);
		return NULL;
	}
	a->refs = 1;
	a->len = origin->len;
	a->data = origin->data;
	a->origin = origin;
	a->shared = false;
	return a;
}
