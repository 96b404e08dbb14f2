/*
 * The RFC 6455 message layer, server side (section 5): turns received bytes,
 * in whatever pieces they arrive, into whole messages and control frames,
 * and decides the close code for every protocol violation.
 *
 * DESIGN: one loop alternates between "header" and "payload". A header is
 * checked as soon as its first two bytes are present (mask, RSV, opcode,
 * control rules and fragmentation state all live there), then parsed whole
 * (stashed in rx->_hdr while split), then checked against the message limit
 * before a single payload byte is buffered. Payload bytes are unmasked and,
 * for text, UTF-8 checked chunk by chunk, so bad input fails at the chunk
 * that carries it. The checks run in the same order whatever the split, so
 * the outcome (messages delivered, close code) never depends on how the
 * kernel cut the stream.
 *
 * A data frame that starts a message, carries FIN and lies wholly in the
 * caller's buffer is unmasked in place and delivered from there (no copy,
 * no allocation): the common case for small messages. Everything else is
 * copied into rx->_msg (control payloads into rx->_ctrl), which is freed as
 * soon as it has been delivered.
 */
#include "ws/ws.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CTRL_PAYLOAD_MAX 125
/* First reassembly allocation; it then doubles up to the message limit. */
#define MSG_CAP_MIN 1024

void rr_ws_rx_init(struct rr_ws_rx *rx)
{
	assert(rx != NULL);
	memset(rx, 0, sizeof(*rx));
}

void rr_ws_rx_free(struct rr_ws_rx *rx)
{
	assert(rx != NULL);
	free(rx->_msg);
	free(rx->_ctrl);
	memset(rx, 0, sizeof(*rx));
}

bool rr_ws_rx_idle(const struct rr_ws_rx *rx)
{
	assert(rx != NULL);
	return rx->_hdr_have == 0 && !rx->_in_payload && rx->_msg_opcode == 0 && rx->_msg == NULL &&
	       rx->_ctrl == NULL;
}

bool rr_ws_close_code_valid(uint16_t code)
{
	/* 1004 is reserved, 1005/1006/1015 must never be sent on the wire;
	 * 1012-1014 are registered with IANA; 3000-4999 are for libraries
	 * and applications. */
	if (code >= 1000 && code <= 1003)
		return true;
	if (code >= 1007 && code <= 1014)
		return true;
	return code >= 3000 && code <= 4999;
}

static ssize_t rx_fail(uint16_t *close_code, uint16_t code)
{
	*close_code = code;
	switch (code) {
	case RR_WS_CLOSE_TOO_BIG:
		return -EMSGSIZE;
	case RR_WS_CLOSE_INTERNAL:
		return -ENOMEM;
	default:
		return -EPROTO;
	}
}

/*
 * Checks that need only the first two header bytes; returns the close code
 * or 0. Doing them here, not after the whole header, keeps the outcome the
 * same whether the length bytes have arrived yet or not.
 */
static uint16_t rx_check_start(const struct rr_ws_rx *rx, uint8_t b0, uint8_t b1)
{
	if (b0 & 0x70) /* RSV1-3: no extension was negotiated */
		return RR_WS_CLOSE_PROTOCOL;
	if (!(b1 & 0x80)) /* 5.1: a client MUST mask */
		return RR_WS_CLOSE_PROTOCOL;
	switch (b0 & 0x0f) {
	case RR_WS_CONT:
		if (rx->_msg_opcode == 0)
			return RR_WS_CLOSE_PROTOCOL;
		return 0;
	case RR_WS_TEXT:
	case RR_WS_BINARY:
		if (rx->_msg_opcode != 0)
			return RR_WS_CLOSE_PROTOCOL;
		return 0;
	case RR_WS_CLOSE:
	case RR_WS_PING:
	case RR_WS_PONG:
		/* 5.5: control frames are never fragmented, payload <= 125 */
		if (!(b0 & 0x80) || (b1 & 0x7f) > CTRL_PAYLOAD_MAX)
			return RR_WS_CLOSE_PROTOCOL;
		return 0;
	default:
		return RR_WS_CLOSE_PROTOCOL;
	}
}

/* A complete close payload: 5.5.1 and 7.4. Returns 0 or a close code. */
static uint16_t rx_close_payload(const uint8_t *p, size_t n, uint16_t *code)
{
	if (n == 0) {
		*code = RR_WS_CLOSE_NO_STATUS;
		return 0;
	}
	if (n == 1)
		return RR_WS_CLOSE_PROTOCOL;
	*code = (uint16_t)(p[0] << 8 | p[1]);
	if (!rr_ws_close_code_valid(*code))
		return RR_WS_CLOSE_PROTOCOL;
	if (!rr_utf8_valid(p + 2, n - 2))
		return RR_WS_CLOSE_INVALID_DATA;
	return 0;
}

/* Deliver a complete control frame; returns the callback's verdict (>0 to
 * stop) or the negated close code of a bad close payload. */
static int rx_deliver_ctrl(uint8_t opcode, uint8_t *p, size_t n, const struct rr_ws_rx_ops *ops,
			   void *ctx)
{
	switch (opcode) {
	case RR_WS_PING:
		return ops->ping ? (ops->ping(ctx, p, n) != 0) : 0;
	case RR_WS_PONG:
		return ops->pong ? (ops->pong(ctx, p, n) != 0) : 0;
	default: {
		uint16_t code = 0;
		uint16_t bad = rx_close_payload(p, n, &code);
		if (bad)
			return -(int)bad;
		if (!ops->close)
			return 0;
		return ops->close(ctx, code, n ? p + 2 : p, n ? n - 2 : 0) != 0;
	}
	}
}

static int rx_msg_reserve(struct rr_ws_rx *rx, uint64_t need, uint64_t max)
{
	if (need <= rx->_msg_cap)
		return 0;
	uint64_t cap = rx->_msg_cap * 2;
	if (cap < MSG_CAP_MIN)
		cap = MSG_CAP_MIN;
	if (cap < need)
		cap = need;
	if (cap > max)
		cap = max; /* need <= max: the header check saw to it */
	assert(cap >= need);
	if (cap > SIZE_MAX)
		return -ENOMEM;
	uint8_t *m = realloc(rx->_msg, (size_t)cap);
	if (m == NULL)
		return -ENOMEM;
	rx->_msg = m;
	rx->_msg_cap = cap;
	return 0;
}

ssize_t rr_ws_rx_feed(struct rr_ws_rx *rx, uint8_t *p, size_t n, const struct rr_ws_limits *limits,
		      const struct rr_ws_rx_ops *ops, void *ctx, uint16_t *close_code)
{
	assert(rx != NULL && limits != NULL && ops != NULL && close_code != NULL);
	assert(p != NULL || n == 0);
	assert(ops->message != NULL);

	const uint64_t max = limits->message_bytes_max;
	size_t i = 0;

	/* Each pass consumes at least one byte or completes a frame, and
	 * every frame has at least a 2-byte header: bounded by n. */
	while (i < n) {
		if (!rx->_in_payload) {
			struct rr_ws_hdr h;
			size_t avail = n - i;
			uint16_t bad;
			int hl;

			if (rx->_hdr_have == 0) {
				hl = -EAGAIN;
				if (avail >= 2) {
					bad = rx_check_start(rx, p[i], p[i + 1]);
					if (bad)
						return rx_fail(close_code, bad);
					hl = rr_ws_hdr_parse(p + i, avail, &h);
				}
				if (hl == -EAGAIN) {
					/* EAGAIN means fewer bytes than a header */
					assert(avail < RR_WS_HDR_MAX);
					memcpy(rx->_hdr, p + i, avail);
					rx->_hdr_have = (uint8_t)avail;
					return (ssize_t)n;
				}
				if (hl > 0)
					i += (size_t)hl;
			} else {
				size_t have = rx->_hdr_have;
				size_t take = RR_WS_HDR_MAX - have;
				if (take > avail)
					take = avail;
				memcpy(rx->_hdr + have, p + i, take);
				if (have + take >= 2) {
					bad = rx_check_start(rx, rx->_hdr[0], rx->_hdr[1]);
					if (bad)
						return rx_fail(close_code, bad);
				}
				hl = rr_ws_hdr_parse(rx->_hdr, have + take, &h);
				if (hl == -EAGAIN) {
					rx->_hdr_have = (uint8_t)(have + take);
					return (ssize_t)n; /* take == avail here */
				}
				if (hl > 0) {
					assert((size_t)hl > have && (size_t)hl <= have + take);
					i += (size_t)hl - have;
					rx->_hdr_have = 0;
				}
			}
			if (hl < 0) /* non-minimal length or top bit set */
				return rx_fail(close_code, RR_WS_CLOSE_PROTOCOL);

			if (!(h.opcode & 0x8)) {
				/* 1009 from the header alone: nothing buffered yet */
				if (rx->_msg_len > max || h.len > max - rx->_msg_len)
					return rx_fail(close_code, RR_WS_CLOSE_TOO_BIG);
				if (h.opcode != RR_WS_CONT) {
					rx->_msg_opcode = h.opcode;
					rx->_utf8 = RR_UTF8_ACCEPT;
				}
			} else {
				rx->_ctrl_len = 0;
			}
			rx->_opcode = h.opcode;
			rx->_fin = h.fin;
			memcpy(rx->_mask, h.mask, 4);
			rx->_left = h.len;
			rx->_off = 0;
			rx->_in_payload = 1;
			/* fall through: a zero-length frame completes now */
		}

		size_t avail = n - i;
		size_t take = rx->_left < avail ? (size_t)rx->_left : avail;
		uint8_t *q = p + i;

		if (rx->_opcode & 0x8) {
			/* control frame */
			uint8_t *payload;
			size_t len;
			if (rx->_ctrl == NULL && rx->_off == 0 && take == rx->_left) {
				rr_ws_unmask(q, take, rx->_mask, 0);
				payload = q;
				len = take;
			} else {
				if (rx->_ctrl == NULL) {
					rx->_ctrl = malloc(CTRL_PAYLOAD_MAX);
					if (rx->_ctrl == NULL)
						return rx_fail(close_code, RR_WS_CLOSE_INTERNAL);
				}
				assert(rx->_ctrl_len + take <= CTRL_PAYLOAD_MAX);
				uint8_t *dst = rx->_ctrl + rx->_ctrl_len;
				if (take) {
					memcpy(dst, q, take);
					rr_ws_unmask(dst, take, rx->_mask, rx->_off);
				}
				rx->_ctrl_len = (uint8_t)(rx->_ctrl_len + take);
				payload = rx->_ctrl;
				len = rx->_ctrl_len;
			}
			i += take;
			rx->_off += take;
			rx->_left -= take;
			if (rx->_left > 0)
				continue; /* i == n */

			/* Reset before the callback so a stop leaves a clean
			 * state; the buffer is freed after it. */
			uint8_t *ctrl = rx->_ctrl;
			rx->_ctrl = NULL;
			rx->_ctrl_len = 0;
			rx->_in_payload = 0;
			int r = rx_deliver_ctrl(rx->_opcode, payload, len, ops, ctx);
			free(ctrl);
			if (r < 0)
				return rx_fail(close_code, (uint16_t)-r);
			if (r > 0)
				return (ssize_t)i;
			continue;
		}

		/* data frame */
		const bool text = rx->_msg_opcode == RR_WS_TEXT;
		if (rx->_opcode != RR_WS_CONT && rx->_fin && rx->_off == 0 && take == rx->_left) {
			/* Whole unfragmented message in the caller's buffer:
			 * deliver in place. */
			assert(rx->_msg == NULL && rx->_msg_len == 0);
			rr_ws_unmask(q, take, rx->_mask, 0);
			if (text && !rr_utf8_valid(q, take))
				return rx_fail(close_code, RR_WS_CLOSE_INVALID_DATA);
			i += take;
			uint8_t op = rx->_msg_opcode;
			rx->_msg_opcode = 0;
			rx->_in_payload = 0;
			rx->_left = 0;
			if (ops->message(ctx, op, q, take) != 0)
				return (ssize_t)i;
			continue;
		}

		if (take) {
			if (rx_msg_reserve(rx, rx->_msg_len + take, max) < 0)
				return rx_fail(close_code, RR_WS_CLOSE_INTERNAL);
			uint8_t *dst = rx->_msg + rx->_msg_len;
			memcpy(dst, q, take);
			rr_ws_unmask(dst, take, rx->_mask, rx->_off);
			if (text) {
				/* fail fast, even mid-frame */
				rx->_utf8 = rr_utf8_feed(rx->_utf8, dst, take);
				if (rx->_utf8 == RR_UTF8_REJECT)
					return rx_fail(close_code, RR_WS_CLOSE_INVALID_DATA);
			}
			rx->_msg_len += take;
			i += take;
			rx->_off += take;
			rx->_left -= take;
		}
		if (rx->_left > 0)
			continue; /* i == n */
		rx->_in_payload = 0;
		if (!rx->_fin)
			continue;			 /* more fragments to come */
		if (text && rx->_utf8 != RR_UTF8_ACCEPT) /* ends mid-character */
			return rx_fail(close_code, RR_WS_CLOSE_INVALID_DATA);

		uint8_t *msg = rx->_msg;
		size_t len = (size_t)rx->_msg_len;
		uint8_t op = rx->_msg_opcode;
		rx->_msg = NULL;
		rx->_msg_len = 0;
		rx->_msg_cap = 0;
		rx->_msg_opcode = 0;
		rx->_utf8 = RR_UTF8_ACCEPT;
		int r = ops->message(ctx, op, msg ? msg : q, len);
		free(msg);
		if (r != 0)
			return (ssize_t)i;
	}
	return (ssize_t)i;
}
