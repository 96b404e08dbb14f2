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

void rr_frame_unref(struct rr_frame *f)
{
	rr_assert(f->refs > 0);
	if (--f->refs == 0)
		free(f);
}
