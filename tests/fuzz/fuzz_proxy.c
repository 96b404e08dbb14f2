/*
 * libFuzzer target for the PROXY protocol parser and the --proxy-from
 * allow-list (src/proxy/proxy.c).
 *
 * Each input is parsed whole and, as the broker would see it, in two reads:
 * first a prefix (at a split point derived from the input, copied into a
 * buffer of exactly that size so ASan sees any read past it) and then the
 * whole. A verdict given on the prefix must be the verdict on the whole, a
 * prefix shorter than a complete header must give -EAGAIN, and a parsed
 * header must be consistent (lengths within the limits, addresses of the
 * family the kind promises). The same bytes, as a string, are also parsed as
 * a --proxy-from value and matched against the header's addresses. Any
 * broken invariant traps.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

static size_t split_point(const uint8_t *data, size_t size)
{
	uint32_t h = 2166136261u; /* FNV-1a over at most 64 bytes: cheap and input-derived */
	size_t i;

	for (i = 0; i < size && i < 64; i++)
		h = (h ^ data[i]) * 16777619u;
	return size ? h % (size + 1) : 0;
}

static void check_hdr(const struct rr_proxy_hdr *h, ssize_t r)
{
	REQUIRE(h->version == 1 || h->version == 2);
	REQUIRE(h->version == 2 || r <= RR_PROXY_V1_BYTES_MAX);
	REQUIRE(r <= RR_PROXY_BYTES_MAX);
	switch (h->kind) {
	case RR_PROXY_ADDR:
		REQUIRE(h->src.ss_family == AF_INET || h->src.ss_family == AF_INET6);
		REQUIRE(h->dst.ss_family == h->src.ss_family);
		break;
	case RR_PROXY_LOCAL:
		REQUIRE(h->version == 2);
		/* fall through */
	case RR_PROXY_UNKNOWN:
		REQUIRE(h->src.ss_family == 0 && h->dst.ss_family == 0);
		break;
	default:
		REQUIRE(0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rr_proxy_hdr whole, part;
	struct rr_proxy_from from;
	size_t cut = split_point(data, size);
	uint8_t *prefix;
	char *s;
	ssize_t r, r1;

	r = rr_proxy_parse(size ? data : NULL, size, &whole);
	REQUIRE(r == -EAGAIN || r == -EPROTO || r == -EMSGSIZE || (r > 0 && (size_t)r <= size));
	if (r > 0)
		check_hdr(&whole, r);

	prefix = malloc(cut ? cut : 1);
	REQUIRE(prefix != NULL);
	memcpy(prefix, data, cut);
	r1 = rr_proxy_parse(cut ? prefix : NULL, cut, &part);
	free(prefix);
	if (r > 0 && cut < (size_t)r)
		REQUIRE(r1 == -EAGAIN);
	else if (r > 0)
		REQUIRE(r1 == r && part.kind == whole.kind && part.version == whole.version &&
			memcmp(&part.src, &whole.src, sizeof(part.src)) == 0 &&
			memcmp(&part.dst, &whole.dst, sizeof(part.dst)) == 0);
	else
		REQUIRE(r1 == -EAGAIN || r1 == r);

	/* the same bytes as a --proxy-from value */
	s = malloc(size + 1);
	REQUIRE(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	if (rr_proxy_from_parse(s, &from, NULL, 0) == 0) {
		unsigned i;

		REQUIRE(from.n >= 1 && from.n <= RR_PROXY_FROM_MAX);
		for (i = 0; i < from.n; i++) {
			REQUIRE(from.v[i].family == AF_INET || from.v[i].family == AF_INET6);
			REQUIRE(from.v[i].prefix_len <= (from.v[i].family == AF_INET ? 32 : 128));
		}
		if (r > 0 && whole.kind == RR_PROXY_ADDR) {
			(void)rr_proxy_from_match(&from, (const struct sockaddr *)&whole.src);
			(void)rr_proxy_from_match(&from, (const struct sockaddr *)&whole.dst);
		}
	}
	free(s);
	return 0;
}
