/*
 * Frame header parse/encode and unmasking (src/ws/ws_frame.c): every length
 * encoding, every truncation of each header, the two malformed-length
 * rules, and unmask against a byte-at-a-time reference at every phase.
 */
#include "ws/ws.h"
#include "check.h"

#include <errno.h>
#include <string.h>

/* Build a header by hand: len_form 0 = 7-bit, 2 = 16-bit, 8 = 64-bit. */
static size_t build(uint8_t *out, uint8_t b0, bool masked, int len_form, uint64_t len,
		    const uint8_t mask[4])
{
	size_t o = 0;
	out[o++] = b0;
	uint8_t m = masked ? 0x80 : 0;
	if (len_form == 0) {
		out[o++] = (uint8_t)(m | len);
	} else if (len_form == 2) {
		out[o++] = m | 126;
		out[o++] = (uint8_t)(len >> 8);
		out[o++] = (uint8_t)len;
	} else {
		out[o++] = m | 127;
		for (int k = 0; k < 8; k++)
			out[o++] = (uint8_t)(len >> (56 - 8 * k));
	}
	if (masked) {
		memcpy(out + o, mask, 4);
		o += 4;
	}
	return o;
}

/* Parse h fully and check every proper prefix says -EAGAIN. */
static int parse_all_prefixes(const uint8_t *b, size_t n, struct rr_ws_hdr *h)
{
	for (size_t k = 0; k < n; k++) {
		struct rr_ws_hdr t;
		int r = rr_ws_hdr_parse(b, k, &t);
		if (r != -EAGAIN && r != -EPROTO)
			return -1000;
		if (r == -EPROTO)
			return r;
	}
	return rr_ws_hdr_parse(b, n, h);
}

static void test_lengths(void)
{
	static const struct {
		uint64_t len;
		int form;
		size_t hdr_len; /* masked */
	} cases[] = {
	    {0, 0, 6},	   {1, 0, 6},	   {125, 0, 6},	      {126, 2, 8},
	    {65535, 2, 8}, {65536, 8, 14}, {1u << 20, 8, 14}, {0x7fffffffffffffffull, 8, 14},
	};
	const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint8_t b[RR_WS_HDR_MAX + 4];
		size_t n = build(b, 0x81, true, cases[c].form, cases[c].len, mask);
		CHECK_EQ(n, cases[c].hdr_len);
		/* trailing bytes must not matter */
		b[n] = 0xaa;
		b[n + 1] = 0xbb;
		struct rr_ws_hdr h;
		int r = parse_all_prefixes(b, n, &h);
		CHECK_EQ(r, (int)n);
		CHECK_EQ(rr_ws_hdr_parse(b, n + 2, &h), (int)n);
		CHECK_EQ(h.len, cases[c].len);
		CHECK_EQ(h.hdr_len, n);
		CHECK(h.fin);
		CHECK(h.masked);
		CHECK_EQ(h.opcode, 1);
		CHECK_EQ(h.rsv, 0);
		CHECK(memcmp(h.mask, mask, 4) == 0);

		/* unmasked form: 4 bytes shorter */
		n = build(b, 0x02, false, cases[c].form, cases[c].len, mask);
		CHECK_EQ(parse_all_prefixes(b, n, &h), (int)n);
		CHECK(!h.masked);
		CHECK(!h.fin);
		CHECK_EQ(h.opcode, 2);
		CHECK_EQ(h.len, cases[c].len);

		/* encode agrees with the minimal form and round-trips */
		uint8_t e[RR_WS_HDR_MAX];
		size_t en = rr_ws_hdr_encode(e, RR_WS_BINARY, false, cases[c].len);
		CHECK_EQ(en, n);
		CHECK(memcmp(e, b, en) == 0);
		CHECK_EQ(rr_ws_hdr_parse(e, en, &h), (int)en);
		CHECK_EQ(h.len, cases[c].len);
	}
}

static void test_bits(void)
{
	const uint8_t mask[4] = {1, 2, 3, 4};
	for (unsigned b0 = 0; b0 < 256; b0++) {
		uint8_t b[RR_WS_HDR_MAX];
		size_t n = build(b, (uint8_t)b0, true, 0, 5, mask);
		struct rr_ws_hdr h;
		CHECK_EQ(rr_ws_hdr_parse(b, n, &h), (int)n);
		CHECK_EQ(h.fin, (b0 >> 7) & 1);
		CHECK_EQ(h.rsv, (b0 >> 4) & 7);
		CHECK_EQ(h.opcode, b0 & 15);
	}
}

static void test_malformed(void)
{
	const uint8_t mask[4] = {9, 9, 9, 9};
	uint8_t b[RR_WS_HDR_MAX];
	struct rr_ws_hdr h;
	size_t n;

	/* non-minimal 16-bit: 0..125 */
	for (uint64_t len = 0; len < 126; len++) {
		n = build(b, 0x82, true, 2, len, mask);
		CHECK_EQ(rr_ws_hdr_parse(b, n, &h), -EPROTO);
		/* known as soon as the length is there */
		CHECK_EQ(rr_ws_hdr_parse(b, 4, &h), -EPROTO);
	}
	n = build(b, 0x82, true, 2, 126, mask);
	CHECK_EQ(rr_ws_hdr_parse(b, n, &h), (int)n);

	/* non-minimal 64-bit: anything <= 65535 */
	static const uint64_t nm[] = {0, 1, 125, 126, 65535};
	for (size_t k = 0; k < sizeof(nm) / sizeof(nm[0]); k++) {
		n = build(b, 0x82, true, 8, nm[k], mask);
		CHECK_EQ(rr_ws_hdr_parse(b, n, &h), -EPROTO);
		CHECK_EQ(rr_ws_hdr_parse(b, 10, &h), -EPROTO);
	}
	/* top bit of the 64-bit length */
	n = build(b, 0x82, true, 8, 0x8000000000000000ull, mask);
	CHECK_EQ(rr_ws_hdr_parse(b, n, &h), -EPROTO);
	n = build(b, 0x82, true, 8, 0xffffffffffffffffull, mask);
	CHECK_EQ(rr_ws_hdr_parse(b, n, &h), -EPROTO);
	n = build(b, 0x82, false, 8, 0x8000000000010000ull, mask);
	CHECK_EQ(rr_ws_hdr_parse(b, n, &h), -EPROTO);

	/* short input */
	CHECK_EQ(rr_ws_hdr_parse(b, 0, &h), -EAGAIN);
	CHECK_EQ(rr_ws_hdr_parse(NULL, 0, &h), -EAGAIN);
}

static void test_unmask(void)
{
	uint8_t src[80], a[80], ref[80];
	const uint8_t mask[4] = {0xde, 0xad, 0xbe, 0xef};
	for (size_t k = 0; k < sizeof(src); k++)
		src[k] = (uint8_t)(k * 7 + 3);
	for (size_t off = 0; off < 8; off++) {
		for (size_t start = 0; start < 8; start++) {
			for (size_t len = 0; start + len <= sizeof(src); len++) {
				memcpy(a, src, sizeof(src));
				memcpy(ref, src, sizeof(src));
				rr_ws_unmask(a + start, len, mask, off);
				for (size_t k = 0; k < len; k++)
					ref[start + k] ^= mask[(off + k) & 3];
				CHECK(memcmp(a, ref, sizeof(a)) == 0);
			}
		}
	}
	/* splitting the unmask anywhere equals doing it whole */
	for (size_t cut = 0; cut <= sizeof(src); cut++) {
		memcpy(a, src, sizeof(src));
		memcpy(ref, src, sizeof(src));
		rr_ws_unmask(ref, sizeof(ref), mask, 0);
		rr_ws_unmask(a, cut, mask, 0);
		rr_ws_unmask(a + cut, sizeof(a) - cut, mask, cut);
		CHECK(memcmp(a, ref, sizeof(a)) == 0);
	}
	/* large offsets: only the phase matters */
	memcpy(a, src, 20);
	memcpy(ref, src, 20);
	rr_ws_unmask(a, 20, mask, 0x100000003ull);
	rr_ws_unmask(ref, 20, mask, 3);
	CHECK(memcmp(a, ref, 20) == 0);
	/* masking twice restores */
	memcpy(a, src, sizeof(src));
	rr_ws_unmask(a, sizeof(a), mask, 1);
	rr_ws_unmask(a, sizeof(a), mask, 1);
	CHECK(memcmp(a, src, sizeof(a)) == 0);
}

static void test_encode(void)
{
	uint8_t e[RR_WS_HDR_MAX];
	CHECK_EQ(rr_ws_hdr_encode(e, RR_WS_TEXT, true, 0), 2);
	CHECK_EQ(e[0], 0x81);
	CHECK_EQ(e[1], 0);
	CHECK_EQ(rr_ws_hdr_encode(e, RR_WS_CLOSE, true, 125), 2);
	CHECK_EQ(e[0], 0x88);
	CHECK_EQ(e[1], 125);
	CHECK_EQ(rr_ws_hdr_encode(e, RR_WS_BINARY, true, 126), 4);
	CHECK_EQ(e[1], 126);
	CHECK_EQ(e[2], 0);
	CHECK_EQ(e[3], 126);
	CHECK_EQ(rr_ws_hdr_encode(e, RR_WS_BINARY, true, 65535), 4);
	CHECK_EQ(e[2], 0xff);
	CHECK_EQ(e[3], 0xff);
	CHECK_EQ(rr_ws_hdr_encode(e, RR_WS_CONT, false, 65536), 10);
	CHECK_EQ(e[0], 0x00);
	CHECK_EQ(e[1], 127);
	static const uint8_t want[8] = {0, 0, 0, 0, 0, 1, 0, 0};
	CHECK(memcmp(e + 2, want, 8) == 0);
}

int main(void)
{
	test_lengths();
	test_bits();
	test_malformed();
	test_unmask();
	test_encode();
	return check_done();
}
