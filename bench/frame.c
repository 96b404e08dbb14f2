/*
 * Client framing and the bench stamp: see frame.h.
 */
#include "frame.h"

#include "ws/ws.h"
#include "core/bytes.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t rr_bench_frame_len(uint64_t n)
{
	size_t h = n < 126 ? 2 : n <= 0xffff ? 4 : 10;
	return h + 4 + (size_t)n;
}

size_t rr_bench_frame_hdr(uint8_t *out, uint8_t opcode, uint64_t n, uint32_t mask)
{
	size_t o;
	out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
	if (n < 126) {
		out[1] = (uint8_t)(0x80 | n);
		o = 2;
	} else if (n <= 0xffff) {
		out[1] = 0x80 | 126;
		out[2] = (uint8_t)(n >> 8);
		out[3] = (uint8_t)n;
		o = 4;
	} else {
		out[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(n >> (56 - 8 * i));
		o = 10;
	}
	memcpy(out + o, &mask, 4);
	return o + 4;
}

void rr_bench_mask(uint8_t *p, size_t n, uint32_t mask)
{
	/* word at a time: the key repeats every 4 bytes, so an 8-byte key made
	 * of it twice masks any 8 bytes that start at a multiple of 4 */
	uint64_t m64 = (uint64_t)mask | ((uint64_t)mask << 32);
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		w ^= m64;
		memcpy(p + i, &w, 8);
	}
	const uint8_t *k = (const uint8_t *)&mask;
	for (; i < n; i++)
		p[i] ^= k[i & 3];
}

size_t rr_bench_frame_encode(uint8_t *out, uint8_t opcode, const uint8_t *payload, size_t n,
			     uint32_t mask)
{
	size_t h = rr_bench_frame_hdr(out, opcode, n, mask);
	memcpy(out + h, payload, n);
	rr_bench_mask(out + h, n, mask);
	return h + n;
}

void rr_bench_stamp_put(uint8_t out[RR_BENCH_STAMP_LEN], const struct rr_bench_stamp *s)
{
	rr_put_le(out, RR_BENCH_STAMP_MAGIC, 4);
	rr_put_le(out + 4, s->run, 4);
	rr_put_le(out + 8, s->pub, 4);
	rr_put_le(out + 12, s->seq, 8);
	rr_put_le(out + 20, s->ts_ns, 8);
}

bool rr_bench_stamp_get(const uint8_t in[RR_BENCH_STAMP_LEN], struct rr_bench_stamp *s)
{
	if (rr_get_le(in, 4) != RR_BENCH_STAMP_MAGIC)
		return false;
	s->run = (uint32_t)rr_get_le(in + 4, 4);
	s->pub = (uint32_t)rr_get_le(in + 8, 4);
	s->seq = rr_get_le(in + 12, 8);
	s->ts_ns = rr_get_le(in + 20, 8);
	return true;
}

void rr_bench_stamp_put_short(uint8_t out[RR_BENCH_STAMP_SHORT_LEN], const struct rr_bench_stamp *s)
{
	rr_put_le(out, RR_BENCH_STAMP_SHORT_MAGIC, 2);
	rr_put_le(out + 2, s->run & 0xffff, 2);
	rr_put_le(out + 4, s->pub, 4);
	rr_put_le(out + 8, s->seq & 0xffffffffu, 4);
	rr_put_le(out + 12, s->ts_ns, 8);
}

bool rr_bench_stamp_get_any(const uint8_t *in, size_t len, struct rr_bench_stamp *s, bool *is_short)
{
	*is_short = false;
	if (len >= RR_BENCH_STAMP_LEN && rr_bench_stamp_get(in, s))
		return true;
	if (len < RR_BENCH_STAMP_SHORT_LEN || rr_get_le(in, 2) != RR_BENCH_STAMP_SHORT_MAGIC)
		return false;
	s->run = (uint32_t)rr_get_le(in + 2, 2);
	s->pub = (uint32_t)rr_get_le(in + 4, 4);
	s->seq = rr_get_le(in + 8, 4);
	s->ts_ns = rr_get_le(in + 12, 8);
	*is_short = true;
	return true;
}

/* Validate a complete header and set up the frame. */
static int rx_start_frame(struct rr_bench_rx *rx, const struct rr_ws_hdr *h)
{
	uint8_t op = h->opcode;
	bool fin = h->fin;
	uint64_t len = h->len;
	if (h->rsv || h->masked)
		return -EPROTO; /* RSV without an extension, or a masked server frame */
	if (op >= 0x8) {
		if (op > RR_BENCH_OP_PONG || !fin || len > 125)
			return -EPROTO;
	} else if (op == RR_BENCH_OP_CONT) {
		if (rx->msg_opcode == 0)
			return -EPROTO;
	} else if (op == RR_BENCH_OP_TEXT || op == RR_BENCH_OP_BINARY) {
		if (rx->msg_opcode != 0)
			return -EPROTO;
		rx->msg_opcode = op;
		rx->msg_len = 0;
		rx->stamp_have = 0;
		rx->keep_have = 0;
	} else {
		return -EPROTO;
	}
	rx->opcode = op;
	rx->fin = fin;
	rx->left = len;
	rx->in_payload = 1;
	rx->ctrl_have = 0;
	return 0;
}

/* The current frame's payload is complete: deliver what it ends. */
static int rx_end_frame(struct rr_bench_rx *rx, const uint8_t *ctrl_inplace,
			const struct rr_bench_rx_ops *ops, void *ctx)
{
	int stop = 0;
	rx->in_payload = 0;
	rx->hdr_have = 0;
	if (rx->opcode >= 0x8) {
		const uint8_t *p = ctrl_inplace ? ctrl_inplace : rx->ctrl;
		uint8_t op = rx->opcode;
		size_t n = rx->ctrl_have;
		if (ops->control)
			stop = ops->control(ctx, op, p, n);
		free(rx->ctrl);
		rx->ctrl = NULL;
		rx->ctrl_have = 0;
		return stop;
	}
	if (!rx->fin)
		return 0;
	uint8_t op = rx->msg_opcode;
	rx->msg_opcode = 0;
	if (ops->message && rx->keep_cap)
		stop = ops->message(ctx, op, rx->keep, rx->keep_have, rx->msg_len);
	else if (ops->message)
		stop = ops->message(ctx, op, rx->stamp, rx->stamp_have, rx->msg_len);
	return stop;
}

ssize_t rr_bench_rx_feed(struct rr_bench_rx *rx, const uint8_t *p, size_t n,
			 const struct rr_bench_rx_ops *ops, void *ctx)
{
	size_t i = 0;
	/* each pass consumes header bytes or payload bytes, or ends a frame */
	while (i < n || (rx->in_payload && rx->left == 0)) {
		if (!rx->in_payload) {
			/* stash what may be header (at most 14 bytes) and let the
			 * codec's parser say how much of it is */
			size_t take = RR_WS_HDR_MAX - rx->hdr_have;
			if (take > n - i)
				take = n - i;
			memcpy(rx->hdr + rx->hdr_have, p + i, take);
			struct rr_ws_hdr h;
			int hl = rr_ws_hdr_parse(rx->hdr, rx->hdr_have + take, &h);
			if (hl == -EAGAIN) {
				assert(take == n - i); /* 14 bytes always hold a header */
				rx->hdr_have = (uint8_t)(rx->hdr_have + take);
				return (ssize_t)n; /* all of it went into the stash */
			}
			if (hl < 0)
				return -EPROTO;
			assert((size_t)hl > rx->hdr_have && (size_t)hl <= rx->hdr_have + take);
			i += (size_t)hl - rx->hdr_have;
			rx->hdr_have = 0;
			int err = rx_start_frame(rx, &h);
			if (err)
				return err;
			continue;
		}
		size_t take = rx->left < n - i ? (size_t)rx->left : n - i;
		const uint8_t *inplace = NULL;
		if (rx->opcode >= 0x8) {
			if (rx->ctrl_have == 0 && take == rx->left) {
				inplace = p + i; /* whole control payload here: no copy */
				rx->ctrl_have = (uint8_t)take;
			} else if (take > 0) {
				if (!rx->ctrl && !(rx->ctrl = malloc(125)))
					return -ENOMEM;
				memcpy(rx->ctrl + rx->ctrl_have, p + i, take);
				rx->ctrl_have = (uint8_t)(rx->ctrl_have + take);
			}
		} else {
			if (rx->keep_cap && rx->keep_have < rx->keep_cap && take > 0) {
				if (!rx->keep && !(rx->keep = malloc(rx->keep_cap)))
					return -ENOMEM;
				size_t s = (size_t)(rx->keep_cap - rx->keep_have);
				if (s > take)
					s = take;
				memcpy(rx->keep + rx->keep_have, p + i, s);
				rx->keep_have = (uint16_t)(rx->keep_have + s);
			} else if (!rx->keep_cap && rx->stamp_have < RR_BENCH_STAMP_LEN) {
				size_t s = RR_BENCH_STAMP_LEN - rx->stamp_have;
				if (s > take)
					s = take;
				memcpy(rx->stamp + rx->stamp_have, p + i, s);
				rx->stamp_have = (uint8_t)(rx->stamp_have + s);
			}
			rx->msg_len += take;
		}
		i += take;
		rx->left -= take;
		if (rx->left == 0) {
			if (rx_end_frame(rx, inplace, ops, ctx))
				return (ssize_t)i;
		}
	}
	return (ssize_t)i;
}

void rr_bench_rx_free(struct rr_bench_rx *rx)
{
	free(rx->ctrl);
	rx->ctrl = NULL;
	free(rx->keep);
	rx->keep = NULL;
	rx->keep_have = 0;
}
