/*
 * RFC 6455 frame headers (section 5.2) and payload masking (section 5.3).
 *
 * The parser checks only what a header says about itself (complete? length
 * in minimal form? top bit of a 64-bit length clear?); what the frame means
 * for the connection (mask required, RSV, opcodes, control sizes) is decided
 * by the message layer in ws_rx.c, which knows the connection's state.
 *
 * DESIGN: unmasking runs over every received payload byte, so it works a
 * 64-bit word at a time with the 4-byte key repeated and rotated to the
 * payload offset; memcpy loads and stores keep it alignment-safe and compile
 * to single moves.
 */
#include "ws/ws.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

int rr_ws_hdr_parse(const uint8_t *p, size_t n, struct rr_ws_hdr *h)
{
	assert(h != NULL);
	assert(p != NULL || n == 0);
	if (n < 2)
		return -EAGAIN;

	uint8_t b0 = p[0], b1 = p[1];
	uint8_t len7 = b1 & 0x7f;
	size_t need = 2;
	uint64_t len = len7;

	if (len7 == 126) {
		need += 2;
		if (n < need)
			return -EAGAIN;
		len = (uint64_t)p[2] << 8 | p[3];
		if (len < 126)
			return -EPROTO;
	} else if (len7 == 127) {
		need += 8;
		if (n < need)
			return -EAGAIN;
		len = 0;
		for (int k = 0; k < 8; k++)
			len = len << 8 | p[2 + k];
		/* Decided before the mask bytes arrive: fail as early as we can. */
		if (len >> 63)
			return -EPROTO;
		if (len <= 0xffff)
			return -EPROTO;
	}

	bool masked = (b1 & 0x80) != 0;
	if (masked)
		need += 4;
	if (n < need)
		return -EAGAIN;

	h->fin = (b0 & 0x80) != 0;
	h->rsv = (b0 >> 4) & 7;
	h->opcode = b0 & 0x0f;
	h->masked = masked;
	if (masked)
		memcpy(h->mask, p + need - 4, 4);
	else
		memset(h->mask, 0, 4);
	h->len = len;
	h->hdr_len = (uint8_t)need;
	return (int)need;
}

size_t rr_ws_hdr_encode(uint8_t *out, uint8_t opcode, bool fin, uint64_t len)
{
	assert(out != NULL);
	assert((opcode & 0xf0) == 0);
	assert((len >> 63) == 0);

	out[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int k = 0; k < 8; k++)
		out[2 + k] = (uint8_t)(len >> (56 - 8 * k));
	return 10;
}

void rr_ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off)
{
	assert(mask != NULL);
	assert(p != NULL || n == 0);

	/* The key as it lines up with p[0]: rotated by the payload offset. */
	uint8_t rot[8];
	for (unsigned k = 0; k < 8; k++)
		rot[k] = mask[(off + k) & 3];
	uint64_t m;
	memcpy(&m, rot, 8);

	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		uint64_t w0, w1, w2, w3;
		memcpy(&w0, p + i, 8);
		memcpy(&w1, p + i + 8, 8);
		memcpy(&w2, p + i + 16, 8);
		memcpy(&w3, p + i + 24, 8);
		w0 ^= m;
		w1 ^= m;
		w2 ^= m;
		w3 ^= m;
		memcpy(p + i, &w0, 8);
		memcpy(p + i + 8, &w1, 8);
		memcpy(p + i + 16, &w2, 8);
		memcpy(p + i + 24, &w3, 8);
	}
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		w ^= m;
		memcpy(p + i, &w, 8);
	}
	/* i is a multiple of 8, so the tail starts at phase 0 of rot. */
	for (size_t k = 0; i < n; i++, k++)
		p[i] ^= rot[k];
}
