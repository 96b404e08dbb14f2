/*
 * UTF-8 validation (src/ws/ws_utf8.c) against a straightforward reference
 * decoder written from the RFC 3629 section 4 grammar: exhaustively over all
 * 1-, 2- and 3-byte inputs and the 4-byte inputs that matter, at every split,
 * with the fail-fast position checked (the index of the first byte after
 * which no valid continuation exists).
 */
#include "ws/ws.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

/*
 * Reference: returns the index of the first impossible byte, or -1 if none;
 * *complete says whether the input ends at a character boundary.
 */
static long ref_check(const uint8_t *p, size_t n, bool *complete)
{
	size_t i = 0;
	*complete = true;
	while (i < n) {
		uint8_t b = p[i];
		size_t len;
		uint8_t lo = 0x80, hi = 0xbf; /* range of the second byte */
		if (b <= 0x7f) {
			i++;
			continue;
		} else if (b >= 0xc2 && b <= 0xdf) {
			len = 2;
		} else if (b == 0xe0) {
			len = 3;
			lo = 0xa0; /* no overlongs */
		} else if ((b >= 0xe1 && b <= 0xec) || b == 0xee || b == 0xef) {
			len = 3;
		} else if (b == 0xed) {
			len = 3;
			hi = 0x9f; /* no surrogates */
		} else if (b == 0xf0) {
			len = 4;
			lo = 0x90; /* no overlongs */
		} else if (b >= 0xf1 && b <= 0xf3) {
			len = 4;
		} else if (b == 0xf4) {
			len = 4;
			hi = 0x8f; /* nothing above U+10FFFF */
		} else {
			return (long)i;
		}
		for (size_t k = 1; k < len; k++) {
			if (i + k >= n) {
				*complete = false;
				return -1;
			}
			uint8_t c = p[i + k];
			uint8_t l = (k == 1) ? lo : 0x80, h = (k == 1) ? hi : 0xbf;
			if (c < l || c > h)
				return (long)(i + k);
		}
		i += len;
	}
	return -1;
}

/* Position at which byte-by-byte feeding first reports REJECT, or -1. */
static long dut_fail_pos(const uint8_t *p, size_t n, uint32_t *end)
{
	uint32_t s = RR_UTF8_ACCEPT;
	for (size_t i = 0; i < n; i++) {
		s = rr_utf8_feed(s, p + i, 1);
		if (s == RR_UTF8_REJECT) {
			*end = s;
			return (long)i;
		}
	}
	*end = s;
	return -1;
}

static unsigned mismatches;

/* Compare everything we can observe for one input. */
static void compare(const uint8_t *p, size_t n, bool all_splits)
{
	bool complete;
	long want = ref_check(p, n, &complete);
	uint32_t whole = rr_utf8_feed(RR_UTF8_ACCEPT, p, n);
	uint32_t end;
	long got = dut_fail_pos(p, n, &end);
	bool ok = got == want;
	if (want >= 0)
		ok = ok && whole == RR_UTF8_REJECT;
	else if (complete)
		ok = ok && whole == RR_UTF8_ACCEPT && rr_utf8_valid(p, n);
	else
		ok = ok && whole != RR_UTF8_ACCEPT && whole != RR_UTF8_REJECT &&
		     !rr_utf8_valid(p, n);
	ok = ok && end == whole;
	if (all_splits) {
		for (size_t cut = 0; cut <= n; cut++) {
			uint32_t s = rr_utf8_feed(RR_UTF8_ACCEPT, p, cut);
			s = rr_utf8_feed(s, p + cut, n - cut);
			ok = ok && s == whole;
		}
	}
	if (!ok) {
		if (mismatches++ < 10) {
			fprintf(stderr, "utf8 mismatch on:");
			for (size_t k = 0; k < n; k++)
				fprintf(stderr, " %02x", p[k]);
			fprintf(stderr, " (ref pos %ld complete %d, got pos %ld state %u)\n", want,
				complete, got, whole);
		}
	}
}

static void test_exhaustive(void)
{
	uint8_t b[8];
	mismatches = 0;
	for (unsigned x = 0; x < 256; x++) {
		b[0] = (uint8_t)x;
		compare(b, 1, true);
		for (unsigned y = 0; y < 256; y++) {
			b[1] = (uint8_t)y;
			compare(b, 2, true);
			/* 3 bytes: every second byte, every third byte for the
			 * multi-byte leads (ASCII leads are covered by the rest) */
			if (x >= 0xc0) {
				for (unsigned z = 0; z < 256; z++) {
					b[2] = (uint8_t)z;
					compare(b, 3, false);
				}
			}
		}
	}
	/* 4 bytes: leads F0..F4 and a bad one, all second bytes, boundary
	 * values for the rest */
	static const uint8_t edge[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff};
	for (unsigned x = 0xef; x <= 0xf5; x++) {
		b[0] = (uint8_t)x;
		for (unsigned y = 0; y < 256; y++) {
			b[1] = (uint8_t)y;
			for (size_t z = 0; z < sizeof(edge); z++) {
				b[2] = edge[z];
				for (size_t w = 0; w < sizeof(edge); w++) {
					b[3] = edge[w];
					compare(b, 4, true);
					b[4] = 'a';
					compare(b, 5, true);
				}
			}
		}
	}
	CHECK_EQ(mismatches, 0);
}

struct vec {
	const char *s;
	long fail_at; /* -1 valid (or incomplete) */
	bool complete;
};

static void test_vectors(void)
{
	static const struct vec v[] = {
	    {"", -1, true},
	    {"hello", -1, true},
	    {"\xc2\x80", -1, true},					/* U+0080 */
	    {"\xdf\xbf", -1, true},					/* U+07FF */
	    {"\xe0\xa0\x80", -1, true},					/* U+0800 */
	    {"\xef\xbf\xbf", -1, true},					/* U+FFFF */
	    {"\xed\x9f\xbf", -1, true},					/* U+D7FF */
	    {"\xee\x80\x80", -1, true},					/* U+E000 */
	    {"\xf0\x90\x80\x80", -1, true},				/* U+10000 */
	    {"\xf4\x8f\xbf\xbf", -1, true},				/* U+10FFFF */
	    {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", -1, true}, /* kosme */
	    {"\xf0\x9f\x98\x80 smile", -1, true},
	    /* overlongs */
	    {"\xc0\x80", 0, false},
	    {"\xc1\xbf", 0, false},
	    {"\xe0\x80\x80", 1, false},
	    {"\xe0\x9f\xbf", 1, false},
	    {"\xf0\x80\x80\x80", 1, false},
	    {"\xf0\x8f\xbf\xbf", 1, false},
	    /* surrogates */
	    {"\xed\xa0\x80", 1, false},
	    {"\xed\xbf\xbf", 1, false},
	    {"\xed\xa0\x80\xed\xb0\x80", 1, false},
	    /* above U+10FFFF */
	    {"\xf4\x90\x80\x80", 1, false},
	    {"\xf5\x80\x80\x80", 0, false},
	    {"\xf7\xbf\xbf\xbf", 0, false},
	    {"\xf8\x88\x80\x80\x80", 0, false},
	    {"\xfc\x84\x80\x80\x80\x80", 0, false},
	    {"\xfe", 0, false},
	    {"\xff", 0, false},
	    /* stray and missing continuations */
	    {"\x80", 0, false},
	    {"\xbf", 0, false},
	    {"a\x80", 1, false},
	    {"\xc2\x41", 1, false},
	    {"\xe1\x80\x41", 2, false},
	    {"\xf1\x80\x80\x41", 3, false},
	    {"\xc2\x80\x80", 2, false},
	    /* incomplete at the end: not rejected, not accepted */
	    {"\xc2", -1, false},
	    {"\xe1\x80", -1, false},
	    {"\xf4\x8f\xbf", -1, false},
	    {"abc\xf0", -1, false},
	};
	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		const uint8_t *p = (const uint8_t *)v[k].s;
		size_t n = strlen(v[k].s);
		uint32_t end;
		long pos = dut_fail_pos(p, n, &end);
		CHECK_EQ(pos, v[k].fail_at);
		uint32_t whole = rr_utf8_feed(RR_UTF8_ACCEPT, p, n);
		if (v[k].fail_at >= 0)
			CHECK_EQ(whole, RR_UTF8_REJECT);
		else if (v[k].complete)
			CHECK_EQ(whole, RR_UTF8_ACCEPT);
		else
			CHECK(whole != RR_UTF8_ACCEPT && whole != RR_UTF8_REJECT);
		CHECK_EQ(rr_utf8_valid(p, n), v[k].fail_at < 0 && v[k].complete);
		/* the reference agrees with the table too */
		bool complete;
		CHECK_EQ(ref_check(p, n, &complete), v[k].fail_at);
		/* prefixes up to the bad byte are never rejected */
		if (v[k].fail_at >= 0) {
			CHECK(rr_utf8_feed(RR_UTF8_ACCEPT, p, (size_t)v[k].fail_at) !=
			      RR_UTF8_REJECT);
			CHECK_EQ(rr_utf8_feed(RR_UTF8_ACCEPT, p, (size_t)v[k].fail_at + 1),
				 RR_UTF8_REJECT);
		}
		/* every split gives the same state */
		for (size_t cut = 0; cut <= n; cut++) {
			uint32_t s = rr_utf8_feed(RR_UTF8_ACCEPT, p, cut);
			CHECK_EQ(rr_utf8_feed(s, p + cut, n - cut), whole);
		}
	}
	/* REJECT is sticky */
	CHECK_EQ(rr_utf8_feed(RR_UTF8_REJECT, (const uint8_t *)"a", 1), RR_UTF8_REJECT);
	CHECK_EQ(rr_utf8_feed(RR_UTF8_ACCEPT, NULL, 0), RR_UTF8_ACCEPT);
}

/* The word-at-a-time ASCII path: a bad or multi-byte character at every
 * position and alignment inside long ASCII runs. */
static void test_ascii_runs(void)
{
	uint8_t buf[100];
	for (size_t start = 0; start < 8; start++) {
		for (size_t at = 0; at + start + 4 <= 80; at++) {
			uint8_t *p = buf + start;
			memset(p, 'x', 80);
			p[at] = 0xff;
			uint32_t end;
			CHECK_EQ(dut_fail_pos(p, 80, &end), (long)at);
			CHECK_EQ(rr_utf8_feed(RR_UTF8_ACCEPT, p, 80), RR_UTF8_REJECT);
			CHECK_EQ(rr_utf8_feed(RR_UTF8_ACCEPT, p, at), RR_UTF8_ACCEPT);
			/* a valid 4-byte character there instead */
			memcpy(p + at, "\xf0\x9f\x92\xa9", 4);
			CHECK(rr_utf8_valid(p, 80));
			/* cut inside it */
			CHECK(rr_utf8_feed(RR_UTF8_ACCEPT, p, at + 2) > RR_UTF8_REJECT);
			/* an ASCII byte with the top bit in a later word */
			p[at] = 0x80;
			CHECK(!rr_utf8_valid(p, 80));
		}
	}
	/* a long mixed text, at every split */
	size_t n = 0;
	uint8_t big[600];
	while (n + 40 < sizeof(big)) {
		memcpy(big + n, "plain ascii text run ", 21);
		n += 21;
		memcpy(big + n, "\xce\xba\xe1\xbd\xb9\xf0\x9f\x98\x80", 9);
		n += 9;
	}
	CHECK(rr_utf8_valid(big, n));
	for (size_t cut = 0; cut <= n; cut++) {
		uint32_t s = rr_utf8_feed(RR_UTF8_ACCEPT, big, cut);
		CHECK(s != RR_UTF8_REJECT);
		CHECK_EQ(rr_utf8_feed(s, big + cut, n - cut), RR_UTF8_ACCEPT);
	}
}

int main(void)
{
	test_exhaustive();
	test_vectors();
	test_ascii_runs();
	return check_done();
}
