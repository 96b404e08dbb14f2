/*
 * io_uring user_data encoding, shared by everything that posts completions to
 * a core's ring (the core itself, other cores through MSG_RING, the storage
 * worker).
 *
 * DESIGN: the top 8 bits name the kind of completion. For operations on a
 * connection the rest is a 24-bit generation and a 32-bit slot index, so a
 * completion for a recycled slot is recognised and dropped. For completions
 * that carry an object (a hand-off record, a storage request) the low 56 bits
 * are the object's address: user-space addresses on x86_64 and arm64 fit in
 * 48 bits.
 */
#ifndef RR_REACTOR_UD_H
#define RR_REACTOR_UD_H

#include <stdint.h>

enum rr_ud_kind {
	RR_UD_NONE = 0,     /* ignored (e.g. fire-and-forget close) */
	RR_UD_ACCEPT = 1,   /* pointer: an accept slot on a listener of the core */
	RR_UD_RECV = 2,     /* conn: recv (multishot after upgrade) */
	RR_UD_SEND = 3,     /* conn: send/sendmsg of the flushed output */
	RR_UD_CLOSE = 4,    /* conn: close of the fixed file */
	RR_UD_SHUTDOWN = 5, /* conn: shutdown(SHUT_WR) */
	RR_UD_HANDOFF_OUT = 6, /* conn: MSG_RING send-fd result on the source core */
	RR_UD_HANDOFF_IN = 7,  /* pointer: a hand-off record arriving on the home core */
	RR_UD_STORE = 9,    /* pointer: a completed storage request (persist/) */
	RR_UD_WAKE = 11,    /* a bare wake-up (shutdown, drain) */
	RR_UD_API_IN = 14,  /* pointer: a backend API call arriving at its room's core */
	RR_UD_API_OUT = 15, /* pointer: its answer back at the connection's core */
	RR_UD_API_SENT = 16, /* pointer: a call's MSG_RING failed (only failures post) */
	RR_UD_API_BACK_FAILED = 17, /* pointer: an answer's MSG_RING failed */
	RR_UD_XQ_IN = 18,     /* pointer: a batch from another core (conn/xq.h) */
	RR_UD_XQ_FAILED = 19, /* pointer: a batch's MSG_RING failed (only failures post) */
};

#define RR_UD_KIND_SHIFT 56
#define RR_UD_PTR_MASK ((UINT64_C(1) << RR_UD_KIND_SHIFT) - 1)

static inline uint64_t rr_ud_conn(enum rr_ud_kind kind, uint32_t gen, uint32_t idx)
{
	return ((uint64_t)kind << RR_UD_KIND_SHIFT) | ((uint64_t)(gen & 0xffffff) << 32) | idx;
}

static inline uint64_t rr_ud_ptr(enum rr_ud_kind kind, const void *p)
{
	return ((uint64_t)kind << RR_UD_KIND_SHIFT) | ((uint64_t)(uintptr_t)p & RR_UD_PTR_MASK);
}

static inline enum rr_ud_kind rr_ud_kind(uint64_t ud)
{
	return (enum rr_ud_kind)(ud >> RR_UD_KIND_SHIFT);
}

static inline void *rr_ud_to_ptr(uint64_t ud)
{
	return (void *)(uintptr_t)(ud & RR_UD_PTR_MASK);
}

static inline uint32_t rr_ud_idx(uint64_t ud)
{
	return (uint32_t)ud;
}

static inline uint32_t rr_ud_gen(uint64_t ud)
{
	return (uint32_t)(ud >> 32) & 0xffffff;
}

#endif
