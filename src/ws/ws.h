/*
 * RFC 6455 codec: frame headers, the message layer and the handshake key.
 *
 * Pure code: no I/O, no allocation outside the rx state's own buffers, no
 * dependency above src/core. The connection layer feeds received bytes in
 * whatever pieces the kernel hands it; the reader calls back once per
 * complete message or control frame.
 *
 * DESIGN: the reader streams. A frame header is stashed (at most 14 bytes)
 * until complete; payload bytes are unmasked, UTF-8 checked (text and its
 * continuations, fail-fast) and, when a whole unfragmented data frame lies in
 * the buffer passed to rr_ws_rx_feed(), delivered in place without a copy.
 * Only fragmented or split messages are copied into rx->msg, which is freed
 * as soon as the message is delivered, so an idle connection owns no buffer.
 */
#ifndef RR_WS_H
#define RR_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum rr_ws_opcode {
	RR_WS_CONT = 0x0,
	RR_WS_TEXT = 0x1,
	RR_WS_BINARY = 0x2,
	RR_WS_CLOSE = 0x8,
	RR_WS_PING = 0x9,
	RR_WS_PONG = 0xA,
};

/* Close codes (RFC 6455 7.4.1 and protocol.md). */
enum rr_ws_close_code {
	RR_WS_CLOSE_NORMAL = 1000,
	RR_WS_CLOSE_GOING_AWAY = 1001,
	RR_WS_CLOSE_PROTOCOL = 1002,
	RR_WS_CLOSE_NO_STATUS = 1005, /* never sent on the wire */
	RR_WS_CLOSE_INVALID_DATA = 1007,
	RR_WS_CLOSE_POLICY = 1008,
	RR_WS_CLOSE_TOO_BIG = 1009,
	RR_WS_CLOSE_INTERNAL = 1011,
	RR_WS_CLOSE_TRY_LATER = 1013,
	RR_WS_CLOSE_IDLE = 4008,
};

/* ---- frame header ---------------------------------------------------- */

struct rr_ws_hdr {
	bool fin;
	uint8_t rsv;    /* the three RSV bits, as (b0 >> 4) & 7 */
	uint8_t opcode; /* low nibble of byte 0 */
	bool masked;
	uint8_t mask[4];
	uint64_t len;     /* payload length */
	uint8_t hdr_len;  /* bytes of header: 2..14 */
};

/* Maximum size of a frame header. */
#define RR_WS_HDR_MAX 14

/*
 * Parse a frame header from p[0..n). Returns the header length (2..14) when
 * complete, -EAGAIN when more bytes are needed, -EPROTO when the header is
 * invalid in itself: 64-bit length with the top bit set, or a length not in
 * its minimal encoding (RFC 6455 5.2 "the minimal number of bytes MUST be
 * used"). Semantic checks (mask, RSV, opcode, control sizes) are the
 * reader's job, not this function's.
 */
int rr_ws_hdr_parse(const uint8_t *p, size_t n, struct rr_ws_hdr *h);

/*
 * Write an unmasked server frame header for a payload of len bytes into out
 * (at least RR_WS_HDR_MAX bytes). Returns the header length (2, 4 or 10).
 */
size_t rr_ws_hdr_encode(uint8_t *out, uint8_t opcode, bool fin, uint64_t len);

/* XOR p[0..n) with mask, as if p started at payload offset off. */
void rr_ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off);

/* ---- UTF-8 ----------------------------------------------------------- */

/*
 * Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). state starts at RR_UTF8_ACCEPT; feed any split.
 * Returns the new state: RR_UTF8_ACCEPT at a character boundary,
 * RR_UTF8_REJECT as soon as the input cannot be valid (fail fast), any
 * other value in the middle of a character.
 */
#define RR_UTF8_ACCEPT 0u
#define RR_UTF8_REJECT 1u
uint32_t rr_utf8_feed(uint32_t state, const uint8_t *p, size_t n);
bool rr_utf8_valid(const uint8_t *p, size_t n);

/* ---- the message layer ------------------------------------------------ */

struct rr_ws_limits {
	uint64_t message_bytes_max; /* whole message after reassembly (1009) */
};

/*
 * Callbacks. Each returns 0 to keep reading, or non-zero to stop: feed then
 * returns at once with the bytes consumed so far (the caller closes, hands
 * off, ...). Pointers are valid only during the call; the payload may be
 * modified by the callee (it is the unmasked copy or the caller's buffer).
 */
struct rr_ws_rx_ops {
	int (*message)(void *ctx, uint8_t opcode, uint8_t *p, size_t n);
	int (*ping)(void *ctx, uint8_t *p, size_t n);
	int (*pong)(void *ctx, uint8_t *p, size_t n);
	/* code is RR_WS_CLOSE_NO_STATUS for an empty close payload; reason is
	 * validated UTF-8 */
	int (*close)(void *ctx, uint16_t code, const uint8_t *reason, size_t n);
};

/*
 * Per-connection reader state. Zero-initialise (or rr_ws_rx_init) before
 * the first feed; rr_ws_rx_free releases any buffer. Private fields.
 */
struct rr_ws_rx {
	uint8_t _hdr[RR_WS_HDR_MAX];
	uint8_t _hdr_have;
	uint8_t _in_payload;  /* a header was parsed, payload pending */
	uint8_t _opcode;      /* opcode of the current frame */
	uint8_t _fin;
	uint8_t _mask[4];
	uint8_t _msg_opcode;  /* RR_WS_TEXT/BINARY while a message is open */
	uint8_t _ctrl_len;
	uint32_t _utf8;
	uint64_t _left;       /* payload bytes left in the current frame */
	uint64_t _off;        /* payload offset in the current frame (mask phase) */
	uint8_t *_msg;        /* message assembly, NULL when none */
	uint64_t _msg_len;
	uint64_t _msg_cap;
	uint8_t *_ctrl;       /* control payload assembly (125 B), NULL when none */
};

void rr_ws_rx_init(struct rr_ws_rx *rx);
void rr_ws_rx_free(struct rr_ws_rx *rx);
/* True when the reader holds no partial frame or message (idle). */
bool rr_ws_rx_idle(const struct rr_ws_rx *rx);

/*
 * Feed n received bytes (p is writable: payload is unmasked in place).
 * Returns the number of bytes consumed (n, or fewer when a callback asked to
 * stop), or a negative errno on a protocol failure with *close_code set to
 * the code to send: 1002 (unmasked frame, RSV bits, unknown opcode, control
 * frame fragmented or > 125 bytes, continuation without a start, a new data
 * frame inside a fragmented message, bad close payload or code), 1007
 * (invalid UTF-8 in text or close reason), 1009 (message over
 * limits->message_bytes_max, decided from the header, before buffering).
 * -ENOMEM with 1011 if a buffer cannot be allocated.
 */
ssize_t rr_ws_rx_feed(struct rr_ws_rx *rx, uint8_t *p, size_t n,
		      const struct rr_ws_limits *limits,
		      const struct rr_ws_rx_ops *ops, void *ctx,
		      uint16_t *close_code);

/* True for a close code a peer may send (RFC 6455 7.4.1/7.4.2). */
bool rr_ws_close_code_valid(uint16_t code);

/* ---- handshake -------------------------------------------------------- */

/*
 * Compute Sec-WebSocket-Accept for a client key: base64(SHA-1(key + GUID)).
 * out receives 28 characters and a NUL (29 bytes).
 */
void rr_ws_accept_key(const char *key, size_t key_len, char out[29]);

/* SHA-1 and base64, exposed for tests. */
void rr_sha1(const void *data, size_t n, uint8_t out[20]);
size_t rr_base64_encode(const uint8_t *in, size_t n, char *out); /* returns chars written, NUL added */
/* Decode standard base64; returns bytes written or -1 if invalid. */
ssize_t rr_base64_decode(const char *in, size_t n, uint8_t *out, size_t out_cap);

#endif
