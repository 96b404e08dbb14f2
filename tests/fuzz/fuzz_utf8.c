/*
 * libFuzzer target for the UTF-8 validator (src/ws/ws_utf8.c).
 *
 * The validator is compared with a reference written directly from the
 * definition rather than as a table: a character is a lead byte giving its
 * length and 1..3 continuation bytes 10xxxxxx; its scalar value must be at
 * least the smallest one that needs that length (no overlongs), at most
 * U+10FFFF and not a surrogate. Fail-fast is checked by asking, for each
 * prefix, whether any completion could still be valid: the scalar values a
 * partial character can still reach form one interval, so that is an
 * interval intersection. The input is also fed in pieces (cut points taken
 * from the input) and byte by byte.
 */
#include "ws/ws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Could continuation bytes complete this partial (or whole) character into
 * a valid scalar value? have = bytes present including the lead. */
static bool ref_reachable(const uint8_t *c, size_t have, size_t len)
{
	static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
	static const uint8_t lead_bits[5] = {0, 7, 5, 4, 3};
	uint32_t lo = c[0] & ((1u << lead_bits[len]) - 1);
	for (size_t k = 1; k < have; k++)
		lo = lo << 6 | (c[k] & 0x3f);
	uint32_t hi = lo;
	for (size_t k = have; k < len; k++) {
		lo = lo << 6;	     /* completed with 0x80 */
		hi = hi << 6 | 0x3f; /* completed with 0xBF */
	}
	uint32_t a = lo > min_for_len[len] ? lo : min_for_len[len];
	uint32_t b = hi < 0x10ffff ? hi : 0x10ffff;
	if (a > b)
		return false;
	return !(a >= 0xd800 && b <= 0xdfff); /* only surrogates left */
}

static size_t ref_len(uint8_t lead)
{
	if (lead < 0x80)
		return 1;
	if ((lead & 0xe0) == 0xc0)
		return 2;
	if ((lead & 0xf0) == 0xe0)
		return 3;
	if ((lead & 0xf8) == 0xf0)
		return 4;
	return 0; /* a continuation byte or 0xF8..0xFF */
}

/* Index of the first byte after which no valid completion exists, or -1;
 * *complete: the input ends at a character boundary. */
static long ref_fail_pos(const uint8_t *p, size_t n, bool *complete)
{
	size_t i = 0;
	*complete = true;
	while (i < n) {
		size_t len = ref_len(p[i]);
		if (len == 0)
			return (long)i;
		size_t k;
		for (k = 1; k <= len; k++) {
			/* p[i .. i+k) present: still completable? */
			if (k > 1 && (p[i + k - 1] & 0xc0) != 0x80)
				return (long)(i + k - 1);
			if (!ref_reachable(p + i, k, len))
				return (long)(i + k - 1);
			if (i + k == n && k < len) {
				*complete = false;
				return -1;
			}
		}
		i += len;
	}
	return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool complete;
	long want = ref_fail_pos(data, size, &complete);

	uint32_t whole = rr_utf8_feed(RR_UTF8_ACCEPT, data, size);
	if (want >= 0) {
		if (whole != RR_UTF8_REJECT)
			abort();
	} else if (complete) {
		if (whole != RR_UTF8_ACCEPT || !rr_utf8_valid(data, size))
			abort();
	} else {
		if (whole == RR_UTF8_ACCEPT || whole == RR_UTF8_REJECT || rr_utf8_valid(data, size))
			abort();
	}

	/* byte by byte: rejects exactly at the reference's position */
	uint32_t s = RR_UTF8_ACCEPT;
	long got = -1;
	for (size_t i = 0; i < size; i++) {
		s = rr_utf8_feed(s, data + i, 1);
		if (s == RR_UTF8_REJECT) {
			got = (long)i;
			break;
		}
	}
	if (got != want || s != whole)
		abort();

	/* the prefix ending just before the bad byte is not rejected; this
	 * goes through the word-at-a-time path */
	if (want >= 0 && rr_utf8_feed(RR_UTF8_ACCEPT, data, (size_t)want) == RR_UTF8_REJECT)
		abort();

	/* pieces: cut points taken from the data itself */
	s = RR_UTF8_ACCEPT;
	size_t at = 0, round = 0;
	while (at < size) {
		size_t piece = 1 + (data[(at * 7 + round) % size] % 23);
		if (piece > size - at)
			piece = size - at;
		s = rr_utf8_feed(s, data + at, piece);
		at += piece;
		round++;
	}
	if (s != whole)
		abort();
	return 0;
}
