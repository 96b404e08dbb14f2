/*
 * Client side of RFC 6455 framing for ringroom-bench, and the bench's
 * message stamp.
 *
 * ringroom's codec (src/ws) is written for a server: its reader expects
 * masked frames and its encoder writes unmasked ones. A client does the
 * opposite, so the bench carries a small encoder (masked) and reader
 * (unmasked, keeping only what the bench needs); frame headers are parsed by
 * the codec's rr_ws_hdr_parse, which is direction-neutral.
 *
 * DESIGN: the reader never copies a data payload. The bench only needs the
 * stamp in the first RR_BENCH_STAMP_LEN bytes of each message, so it keeps
 * those (across splits and continuation frames) and skips the rest; a
 * control payload (<= 125 bytes) is handed over in place when it lies in one
 * buffer and copied into a short-lived allocation only when it is split.
 * That keeps the per-connection reader state under 80 bytes.
 */
#ifndef RR_BENCH_FRAME_H
#define RR_BENCH_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
	RR_BENCH_OP_CONT = 0x0,
	RR_BENCH_OP_TEXT = 0x1,
	RR_BENCH_OP_BINARY = 0x2,
	RR_BENCH_OP_CLOSE = 0x8,
	RR_BENCH_OP_PING = 0x9,
	RR_BENCH_OP_PONG = 0xA,
};

#define RR_BENCH_FRAME_HDR_MAX 14 /* 2 + 8 length + 4 mask */

/* Bytes a masked client frame with an n-byte payload occupies. */
size_t rr_bench_frame_len(uint64_t n);

/*
 * Write a masked client frame header (FIN set) for an n-byte payload with
 * masking key `mask` into out (RR_BENCH_FRAME_HDR_MAX bytes). Returns the
 * header length; the payload goes right after it and must be masked with
 * rr_bench_mask() using the same key and offset 0.
 */
size_t rr_bench_frame_hdr(uint8_t *out, uint8_t opcode, uint64_t n, uint32_t mask);

/* XOR p[0..n) with the 4-byte key (as stored on the wire, byte 0 first). */
void rr_bench_mask(uint8_t *p, size_t n, uint32_t mask);

/* Encode a whole masked frame (header + masked copy of payload) into out
 * (rr_bench_frame_len(n) bytes). Returns the frame length. */
size_t rr_bench_frame_encode(uint8_t *out, uint8_t opcode, const uint8_t *payload, size_t n,
			     uint32_t mask);

/* ---- the stamp every bench message starts with ------------------------ */

#define RR_BENCH_STAMP_LEN 28
#define RR_BENCH_STAMP_MAGIC 0x32627272u /* "rrb2" little-endian */

struct rr_bench_stamp {
	/* random per bench run: a server may still be delivering an earlier
	 * run's backlog to a room when the next run's members join it */
	uint32_t run;
	uint32_t pub;	/* publisher id, unique across the run */
	uint64_t seq;	/* 0, 1, 2 ... per publisher */
	uint64_t ts_ns; /* CLOCK_MONOTONIC when the message was built for sending */
};

void rr_bench_stamp_put(uint8_t out[RR_BENCH_STAMP_LEN], const struct rr_bench_stamp *s);
/* Returns false when the bytes do not carry the magic. */
bool rr_bench_stamp_get(const uint8_t in[RR_BENCH_STAMP_LEN], struct rr_bench_stamp *s);

/*
 * Messages shorter than the stamp (--size 20 to 27) carry a short one: "r1",
 * the run id's low 16 bits, the publisher id, the sequence's low 32 bits and
 * the send time, 20 bytes in all. Enough for a run: a publisher would need
 * four billion messages to wrap the sequence, and a foreign run has one
 * chance in 65,536 to pass for this one.
 */
#define RR_BENCH_STAMP_SHORT_LEN 20
#define RR_BENCH_STAMP_SHORT_MAGIC 0x3172u /* "r1" little-endian */

void rr_bench_stamp_put_short(uint8_t out[RR_BENCH_STAMP_SHORT_LEN],
			      const struct rr_bench_stamp *s);
/* Either stamp, told apart by length and magic; false if neither. From a
 * short one, run holds only the low 16 bits (*is_short set). */
bool rr_bench_stamp_get_any(const uint8_t *in, size_t len, struct rr_bench_stamp *s,
			    bool *is_short);

/* ---- reading server frames ------------------------------------------- */

struct rr_bench_rx {
	uint8_t hdr[RR_BENCH_FRAME_HDR_MAX];
	uint8_t hdr_have;
	uint8_t in_payload; /* header parsed, payload bytes pending */
	uint8_t opcode;	    /* current frame */
	uint8_t fin;
	uint8_t msg_opcode; /* TEXT/BINARY while a data message is open, else 0 */
	uint8_t stamp_have;
	uint8_t ctrl_have;
	uint8_t stamp[RR_BENCH_STAMP_LEN];
	uint64_t left;	  /* payload bytes left in the current frame */
	uint64_t msg_len; /* data message bytes so far */
	uint8_t *ctrl;	  /* split control payload, NULL otherwise */
	/* keep_cap > 0: keep the first keep_cap bytes of each data message in
	 * keep (allocated on first use) and hand those to ->message instead of
	 * the stamp; chat messages carry their stamp inside JSON, past a
	 * prefix of varying length */
	uint8_t *keep;
	uint16_t keep_cap, keep_have;
};

struct rr_bench_rx_ops {
	/* A complete data message: its first min(len, STAMP_LEN) bytes (or
	 * keep_cap bytes when set). */
	int (*message)(void *ctx, uint8_t opcode, const uint8_t *stamp, size_t stamp_len,
		       uint64_t len);
	/* A complete control frame (CLOSE, PING, PONG) and its payload. */
	int (*control)(void *ctx, uint8_t opcode, const uint8_t *p, size_t n);
};

/*
 * Feed n bytes received from the server. Returns the bytes consumed (n, or
 * fewer when a callback returned non-zero: it stops at once), -EPROTO for a
 * frame a server must not send (masked, RSV bits, unknown opcode, a control
 * frame fragmented or over 125 bytes, a continuation with no message open,
 * a new data frame inside a fragmented one, a 64-bit length with the top
 * bit set) or -ENOMEM.
 */
ssize_t rr_bench_rx_feed(struct rr_bench_rx *rx, const uint8_t *p, size_t n,
			 const struct rr_bench_rx_ops *ops, void *ctx);
void rr_bench_rx_free(struct rr_bench_rx *rx);

#endif
