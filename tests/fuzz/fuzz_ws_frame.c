/*
 * libFuzzer target for the frame header codec and unmasking
 * (src/ws/ws_frame.c).
 *
 * Checks: a complete parse agrees with a byte-level reading of the header;
 * every shorter prefix answers -EAGAIN or the same -EPROTO; a parsed length
 * re-encodes to a header that parses back to it; and unmasking the bytes
 * after the header at an input-chosen offset, whole or in two pieces,
 * equals a byte-at-a-time reference.
 */
#include "ws/ws.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rr_ws_hdr h;
	int r = rr_ws_hdr_parse(data, size, &h);
	if (r != -EAGAIN && r != -EPROTO && (r < 2 || r > RR_WS_HDR_MAX))
		abort();

	/* prefixes: never a success shorter than the header, never a
	 * different verdict once decided */
	for (size_t k = 0; k < size && k < RR_WS_HDR_MAX + 1; k++) {
		struct rr_ws_hdr t;
		int rk = rr_ws_hdr_parse(data, k, &t);
		if (r >= 0 && (size_t)r > k && rk != -EAGAIN)
			abort();
		if (rk >= 0 && (rk != r || t.len != h.len))
			abort();
		if (rk == -EPROTO && r != -EPROTO)
			abort();
	}

	if (r > 0) {
		/* independent reading of the header */
		size_t need = 2;
		uint64_t len = data[1] & 0x7f;
		if (len == 126) {
			len = (uint64_t)data[2] << 8 | data[3];
			need += 2;
			if (len < 126)
				abort();
		} else if (len == 127) {
			len = 0;
			for (int k = 0; k < 8; k++)
				len = len << 8 | data[2 + k];
			need += 8;
			if (len < 65536 || len >> 63)
				abort();
		}
		if (data[1] & 0x80)
			need += 4;
		if ((size_t)r != need || h.hdr_len != need || h.len != len)
			abort();
		if (h.fin != !!(data[0] & 0x80) || h.rsv != ((data[0] >> 4) & 7) ||
		    h.opcode != (data[0] & 15) || h.masked != !!(data[1] & 0x80))
			abort();
		if (h.masked && memcmp(h.mask, data + need - 4, 4) != 0)
			abort();

		uint8_t e[RR_WS_HDR_MAX];
		size_t en = rr_ws_hdr_encode(e, h.opcode, h.fin, h.len);
		struct rr_ws_hdr back;
		if (rr_ws_hdr_parse(e, en, &back) != (int)en || back.len != h.len ||
		    back.opcode != h.opcode || back.fin != h.fin || back.masked || back.rsv)
			abort();
		if (en != (h.masked ? need - 4 : need))
			abort();
	}

	/* unmask the rest at an input-chosen phase, against a reference */
	size_t start = r > 0 ? (size_t)r : 0;
	size_t n = size - start;
	if (n > 4096)
		n = 4096;
	uint8_t mask[4] = {0x5a, 0xc3, 0x01, 0xff};
	if (r > 0 && h.masked)
		memcpy(mask, h.mask, 4);
	uint64_t off = size ? data[size - 1] : 0;
	uint8_t *a = malloc(n + 1), *b = malloc(n + 1);
	if (a == NULL || b == NULL)
		abort();
	if (n) {
		memcpy(a, data + start, n);
		memcpy(b, data + start, n);
	}
	rr_ws_unmask(a, n, mask, off);
	for (size_t k = 0; k < n; k++)
		b[k] ^= mask[(off + k) & 3];
	if (n && memcmp(a, b, n) != 0)
		abort();
	/* in two pieces, at a cut chosen by the data */
	size_t cut = n ? data[0] % (n + 1) : 0;
	if (n)
		memcpy(a, data + start, n);
	rr_ws_unmask(a, cut, mask, off);
	rr_ws_unmask(a + cut, n - cut, mask, off + cut);
	if (n && memcmp(a, b, n) != 0)
		abort();
	free(a);
	free(b);
	return 0;
}
