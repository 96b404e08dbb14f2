/*
 * Incremental UTF-8 validation for text messages and close reasons
 * (RFC 3629 section 4 grammar, as RFC 6455 8.1 requires).
 *
 * DESIGN: a small deterministic automaton. Each byte maps to one of 12
 * classes; the state says what the next byte must be. States 5..8 encode the
 * four lead bytes whose second byte has a narrower range than 80..BF (E0: no
 * overlongs, ED: no surrogates, F0: no overlongs, F4: nothing above
 * U+10FFFF), which is what makes the check fail at the first impossible byte
 * rather than at the end of the character. While at a character boundary,
 * runs of ASCII are skipped 8 bytes at a time.
 */
#include "ws/ws.h"

#include <assert.h>
#include <string.h>

/* States beyond RR_UTF8_ACCEPT (0) and RR_UTF8_REJECT (1). */
enum {
	S_TAIL1 = 2, /* one more 80..BF */
	S_TAIL2 = 3, /* two more 80..BF */
	S_TAIL3 = 4, /* three more 80..BF */
	S_E0 = 5,    /* A0..BF, then one more */
	S_ED = 6,    /* 80..9F, then one more */
	S_F0 = 7,    /* 90..BF, then two more */
	S_F4 = 8,    /* 80..8F, then two more */
	S_COUNT = 9,
};

/* Byte classes. */
enum {
	C_ASCII, /* 00..7F */
	C_80_8F, /* continuation, low */
	C_90_9F, /* continuation, middle */
	C_A0_BF, /* continuation, high */
	C_BAD,	 /* C0, C1, F5..FF: never valid */
	C_LEAD2, /* C2..DF */
	C_E0,	 /* E0 */
	C_LEAD3, /* E1..EC, EE, EF */
	C_ED,	 /* ED */
	C_F0,	 /* F0 */
	C_LEAD4, /* F1..F3 */
	C_F4,	 /* F4 */
	C_COUNT,
};

/* clang-format off: the tables read as tables */
static const uint8_t utf8_class[256] = {
    [0x00 ... 0x7f] = C_ASCII,
    [0x80 ... 0x8f] = C_80_8F,
    [0x90 ... 0x9f] = C_90_9F,
    [0xa0 ... 0xbf] = C_A0_BF,
    [0xc0 ... 0xc1] = C_BAD,
    [0xc2 ... 0xdf] = C_LEAD2,
    [0xe0] = C_E0,
    [0xe1 ... 0xec] = C_LEAD3,
    [0xed] = C_ED,
    [0xee ... 0xef] = C_LEAD3,
    [0xf0] = C_F0,
    [0xf1 ... 0xf3] = C_LEAD4,
    [0xf4] = C_F4,
    [0xf5 ... 0xff] = C_BAD,
};

#define R RR_UTF8_REJECT
static const uint8_t utf8_next[S_COUNT][C_COUNT] = {
    /*            ASCII 80-8F   90-9F    A0-BF    bad C2-DF    E0    E1-EF    ED    F0    F1-F3  F4
     */
    [0] = {0, R, R, R, R, S_TAIL1, S_E0, S_TAIL2, S_ED, S_F0, S_TAIL3, S_F4},
    [R] = {R, R, R, R, R, R, R, R, R, R, R, R},
    [S_TAIL1] = {R, 0, 0, 0, R, R, R, R, R, R, R, R},
    [S_TAIL2] = {R, S_TAIL1, S_TAIL1, S_TAIL1, R, R, R, R, R, R, R, R},
    [S_TAIL3] = {R, S_TAIL2, S_TAIL2, S_TAIL2, R, R, R, R, R, R, R, R},
    [S_E0] = {R, R, R, S_TAIL1, R, R, R, R, R, R, R, R},
    [S_ED] = {R, S_TAIL1, S_TAIL1, R, R, R, R, R, R, R, R, R},
    [S_F0] = {R, R, S_TAIL2, S_TAIL2, R, R, R, R, R, R, R, R},
    [S_F4] = {R, S_TAIL2, R, R, R, R, R, R, R, R, R, R},
};
#undef R
/* clang-format on */

#define ASCII_MASK 0x8080808080808080ull

uint32_t rr_utf8_feed(uint32_t state, const uint8_t *p, size_t n)
{
	assert(state < S_COUNT);
	assert(p != NULL || n == 0);
	if (state == RR_UTF8_REJECT)
		return state;

	size_t i = 0;
	while (i < n) {
		if (state == RR_UTF8_ACCEPT) {
			/* ASCII fast path: most text is ASCII, skip it by words. */
			while (i + 16 <= n) {
				uint64_t a, b;
				memcpy(&a, p + i, 8);
				memcpy(&b, p + i + 8, 8);
				if ((a | b) & ASCII_MASK)
					break;
				i += 16;
			}
			while (i + 8 <= n) {
				uint64_t a;
				memcpy(&a, p + i, 8);
				if (a & ASCII_MASK)
					break;
				i += 8;
			}
			if (i == n)
				break;
		}
		/* Byte at a time until back at a boundary with a non-ASCII run
		 * behind us; bounded by n. */
		state = utf8_next[state][utf8_class[p[i]]];
		i++;
		if (state == RR_UTF8_REJECT)
			return state;
	}
	return state;
}

bool rr_utf8_valid(const uint8_t *p, size_t n)
{
	return rr_utf8_feed(RR_UTF8_ACCEPT, p, n) == RR_UTF8_ACCEPT;
}
