/*
 * Reference-counted output buffers: one encoded WebSocket frame (or HTTP
 * response) shared by every connection it is queued on.
 *
 * DESIGN: the count is a plain integer, touched only by the core that made
 * the frame. A broadcast to N members makes one frame with N references; each
 * connection drops its reference when the bytes are sent.
 *
 * A spread room's frame also goes to other cores (conn/remote.c) by
 * reference: the making core takes one "holder" per core it passes the
 * frame to (rr_frame_share, an atomic add per frame per core), and each of
 * those cores wraps it in a local alias (rr_frame_alias: its own plain count
 * over the same bytes) for its members. When an alias's last reference goes,
 * its core drops its holder; the last holder frees the bytes. So the
 * per-member path never touches an atomic.
 */
#ifndef RR_CORE_FRAME_H
#define RR_CORE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <stdatomic.h>
#include <stdbool.h>

struct rr_frame {
	uint32_t refs; /* this core's references */
	uint32_t len;
	uint8_t *data;		 /* bytes[], or the origin's bytes for an alias */
	struct rr_frame *origin; /* an alias: the frame (of another core) it shows */
	atomic_uint holders;	 /* once shared: cores holding it (its maker counts 1) */
	bool shared;
	uint8_t bytes[];
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

/* Take a holder for another core before passing f to it (its maker's core
 * only). */
struct rr_frame *rr_frame_share(struct rr_frame *f);
/* On the receiving core: a local frame with one reference showing origin's
 * bytes; it releases the holder taken for this core when it is freed. NULL
 * when out of memory (the holder is released then). */
struct rr_frame *rr_frame_alias(struct rr_frame *origin);
/* Release a holder without an alias (a frame passed on but never used). */
void rr_frame_drop_holder(struct rr_frame *origin);

#endif
