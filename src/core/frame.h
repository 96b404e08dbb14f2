/*
 * Reference-counted output buffers: one encoded WebSocket frame (or HTTP
 * response) shared by every connection it is queued on.
 *
 * DESIGN: a frame never leaves the core that made it (shared nothing), so the
 * count is a plain integer. A broadcast to N members makes one frame with N
 * references; each connection drops its reference when the bytes are sent.
 */
#ifndef RR_CORE_FRAME_H
#define RR_CORE_FRAME_H

#include <stddef.h>
#include <stdint.h>

struct rr_frame {
	uint32_t refs;
	uint32_t len;
	uint8_t data[];
};

/* A frame of len bytes with one reference, or NULL when out of memory. */
struct rr_frame *rr_frame_new(size_t len);
/* Encode a server WebSocket frame (header + payload) with one reference. */
struct rr_frame *rr_frame_ws(uint8_t opcode, const void *payload, size_t len);
/* A close frame with code and reason (reason cut to fit 125 bytes). */
struct rr_frame *rr_frame_ws_close(uint16_t code, const char *reason);

static inline struct rr_frame *rr_frame_ref(struct rr_frame *f)
{
	f->refs++;
	return f;
}

void rr_frame_unref(struct rr_frame *f);

#endif
