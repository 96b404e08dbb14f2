/*
 * Unit tests for the PROXY protocol parser and the --proxy-from allow-list
 * (src/proxy/proxy.c, included so the CRC32C helper can be checked too).
 *
 * Every header is fed at every split point: each prefix is copied into a
 * buffer of exactly its size (so a sanitizer build catches a read past len)
 * and must give -EAGAIN until the deciding byte has arrived, then the same
 * answer as the whole header. Examples come from HAProxy's
 * doc/proxy-protocol.txt and from headers HAProxy 2.6 sent with send-proxy-v2
 * and check-send-proxy.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "../../src/proxy/proxy.c"
#include "check.h"

/*
 * Parse buf[0..len) at every prefix length. want > 0: every prefix shorter
 * than want gives -EAGAIN, every longer one want. want < 0: -EAGAIN up to
 * some point, want from there on. Returns the whole-buffer result with *hdr
 * filled from it.
 */
static ssize_t splits_at(int line, const void *buf, size_t len, struct rr_proxy_hdr *hdr,
			 ssize_t want)
{
	bool decided = false, ok = true;
	size_t k;
	ssize_t r;

	for (k = 0; k <= len; k++) {
		uint8_t *copy = malloc(k ? k : 1);
		struct rr_proxy_hdr tmp;
		ssize_t rk;

		memcpy(copy, buf, k);
		rk = rr_proxy_parse(k ? copy : NULL, k, &tmp);
		free(copy);
		if (want >= 0) {
			ssize_t expect = (ssize_t)k < want ? -EAGAIN : want;

			if (rk != expect) {
				fprintf(stderr, "line %d: prefix %zu gave %zd, want %zd\n", line, k,
					rk, expect);
				ok = false;
				break;
			}
		} else if (rk == want) {
			decided = true;
		} else if (rk != -EAGAIN || decided) {
			fprintf(stderr, "line %d: prefix %zu gave %zd (want -EAGAIN or %zd)\n",
				line, k, rk, want);
			ok = false;
			break;
		}
	}
	CHECK(ok);
	r = rr_proxy_parse(buf, len, hdr);
	if (r != want)
		fprintf(stderr, "line %d: whole gave %zd, want %zd\n", line, r, want);
	CHECK_EQ(r, want);
	return r;
}

#define splits(buf, len, hdr, want) splits_at(__LINE__, buf, len, hdr, want)
#define v1(s, hdr, want) splits_at(__LINE__, s, strlen(s), hdr, want)

static bool is_v4(const struct sockaddr_storage *sa, const char *addr, uint16_t port)
{
	const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
	struct in_addr a;

	return sa->ss_family == AF_INET && inet_pton(AF_INET, addr, &a) == 1 &&
	       s->sin_addr.s_addr == a.s_addr && ntohs(s->sin_port) == port;
}

static bool is_v6(const struct sockaddr_storage *sa, const char *addr, uint16_t port)
{
	const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
	struct in6_addr a;

	return sa->ss_family == AF_INET6 && inet_pton(AF_INET6, addr, &a) == 1 &&
	       memcmp(&s->sin6_addr, &a, 16) == 0 && ntohs(s->sin6_port) == port;
}

/* ---- v1 --------------------------------------------------------------- */

static void test_v1_valid(void)
{
	struct rr_proxy_hdr h;
	const char *max4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
	const char *max6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	/* the spec's worst case: 107 bytes, the limit */
	const char *worst = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	const char *ex = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n"
			 "Host: 192.168.0.11\r\n\r\n";

	CHECK_EQ(strlen(max4), 56);
	CHECK_EQ(strlen(max6), 104);
	CHECK_EQ(strlen(worst), 107);

	if (v1(max4, &h, 56) == 56) {
		CHECK_EQ(h.version, 1);
		CHECK_EQ(h.kind, RR_PROXY_ADDR);
		CHECK(is_v4(&h.src, "255.255.255.255", 65535));
		CHECK(is_v4(&h.dst, "255.255.255.255", 65535));
	}
	if (v1(max6, &h, 104) == 104) {
		CHECK_EQ(h.kind, RR_PROXY_ADDR);
		CHECK(is_v6(&h.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535));
	}
	if (v1("PROXY UNKNOWN\r\n", &h, 15) == 15) {
		CHECK_EQ(h.kind, RR_PROXY_UNKNOWN);
		CHECK_EQ(h.src.ss_family, 0);
	}
	if (v1(worst, &h, 107) == 107)
		CHECK_EQ(h.kind, RR_PROXY_UNKNOWN);

	/* the spec's example, the request after it untouched */
	if (splits(ex, strlen(ex), &h, 47) == 47) {
		CHECK(is_v4(&h.src, "192.168.0.1", 56324));
		CHECK(is_v4(&h.dst, "192.168.0.11", 443));
	}
	if (v1("PROXY TCP6 ::1 2001:db8::7 0 8080\r\n", &h, 35) == 35) {
		CHECK(is_v6(&h.src, "::1", 0));
		CHECK(is_v6(&h.dst, "2001:db8::7", 8080));
	}
	if (v1("PROXY TCP6 ::ffff:10.1.2.3 ::FFFF:10.0.0.1 1 2\r\n", &h, 48) == 48)
		CHECK(is_v6(&h.src, "::ffff:10.1.2.3", 1));
	v1("PROXY TCP4 0.0.0.0 10.0.0.1 0 1\r\n", &h, 33);
	v1("PROXY UNKNOWN anything at all: 1.2.3.4 \t x\r\n", &h, 44);
}

static void test_v1_malformed(void)
{
	struct rr_proxy_hdr h;
	char big[300];

	v1("GET / HTTP/1.1\r\n", &h, -EPROTO);
	v1("PROXI TCP4 1.2.3.4 5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", &h, -EPROTO); /* bare LF */
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", &h, -EPROTO);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", &h, -EPROTO);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", &h, -EPROTO); /* one port */
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", &h, -EPROTO);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 100000 2\r\n", &h, -EPROTO);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", &h, -EPROTO);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", &h, -EPROTO);
	v1("PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("PROXY TCP4 1111111111111111 5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("PROXY TCP4 ::1 ::1 1 2\r\n", &h, -EPROTO); /* family mismatch */
	v1("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", &h, -EPROTO);
	v1("PROXY TCP6 ::g ::1 1 2\r\n", &h, -EPROTO);
	v1("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", &h, -EPROTO);
	v1("PROXY UNKNOWNX\r\n", &h, -EPROTO);
	v1("PROXY UNKNOWN\n", &h, -EPROTO);
	v1("PROXY UNKNOWN\r\r\n", &h, -EPROTO);
	v1("PROXY UNKNOWN a\rb\r\n", &h, -EPROTO);
	v1("PROXY UNKNOWN a\nb\r\n", &h, -EPROTO);
	v1("PROXY\r\n", &h, -EPROTO);
	splits("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", 34, &h, -EPROTO);
	splits("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 34, &h, -EPROTO);

	/* 108 bytes: one more than the spec's worst case */
	v1("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655355\r\n",
	   &h, -EMSGSIZE);
	/* a slow stream of junk that never ends the line */
	memset(big, 'a', sizeof(big));
	memcpy(big, "PROXY UNKNOWN ", 14);
	splits(big, sizeof(big), &h, -EMSGSIZE);
	CHECK_EQ(rr_proxy_parse((const uint8_t *)big, 106, &h), -EAGAIN);
	CHECK_EQ(rr_proxy_parse((const uint8_t *)big, 107, &h), -EMSGSIZE);
}

/* ---- v2 --------------------------------------------------------------- */

/* Build a v2 header: signature, ver_cmd, fam, length of body, body. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const void *body, size_t n)
{
	memcpy(out, rr_proxy_v2_sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(n >> 8);
	out[15] = (uint8_t)n;
	if (n)
		memcpy(out + 16, body, n);
	return 16 + n;
}

static void test_v2_valid(void)
{
	/* sent by HAProxy with send-proxy-v2, followed by the client's request */
	static const uint8_t haproxy[] = {
	    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	    0x21, 0x11, 0x00, 0x0c, 0xac, 0x13, 0x00, 0x01, 0xac, 0x13, 0x00, 0x03,
	    0xa6, 0x52, 0x00, 0x50, 'G',  'E',	'T',  ' ',  '/',  ' ',	'H',  'T',
	    'T',  'P',	'/',  '1',  '.',  '1',	'\r', '\n', '\r', '\n'};
	uint8_t buf[RR_PROXY_BYTES_MAX + 64], body[RR_PROXY_V2_LEN_MAX];
	struct rr_proxy_hdr h;
	size_t n;

	if (splits(haproxy, sizeof(haproxy), &h, 28) == 28) {
		CHECK_EQ(h.version, 2);
		CHECK_EQ(h.kind, RR_PROXY_ADDR);
		CHECK(is_v4(&h.src, "172.19.0.1", 42578));
		CHECK(is_v4(&h.dst, "172.19.0.3", 80));
	}

	/* TCP over IPv6 */
	memset(body, 0, 36);
	body[15] = 1;			  /* ::1 */
	body[16] = 0x20, body[17] = 0x01; /* 2001:db8::2 */
	body[18] = 0x0d, body[19] = 0xb8, body[31] = 2;
	body[32] = 0x30, body[33] = 0x39; /* 12345 */
	body[34] = 0x01, body[35] = 0xbb; /* 443 */
	n = v2(buf, 0x21, 0x21, body, 36);
	if (splits(buf, n, &h, 52) == 52) {
		CHECK_EQ(h.kind, RR_PROXY_ADDR);
		CHECK(is_v6(&h.src, "::1", 12345));
		CHECK(is_v6(&h.dst, "2001:db8::2", 443));
	}

	/* what HAProxy 2.6 sends on a health check with check-send-proxy
	 * (captured on loopback): LOCAL, UNSPEC, no address, then the check */
	{
		static const uint8_t check[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
						0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00,
						'G',  'E',  'T',  ' ',	'/',  'h',  'e',  'a'};

		if (splits(check, sizeof(check), &h, 16) == 16)
			CHECK_EQ(h.kind, RR_PROXY_LOCAL);
	}

	/* LOCAL (health checks): the address block, if any, is ignored */
	n = v2(buf, 0x20, 0x00, NULL, 0);
	if (splits(buf, n, &h, 16) == 16)
		CHECK_EQ(h.kind, RR_PROXY_LOCAL);
	n = v2(buf, 0x20, 0x11, haproxy + 16, 12);
	if (splits(buf, n, &h, 28) == 28) {
		CHECK_EQ(h.kind, RR_PROXY_LOCAL);
		CHECK_EQ(h.src.ss_family, 0);
	}
	n = v2(buf, 0x20, 0x11, NULL, 0); /* "must not assume zero" works both ways */
	if (splits(buf, n, &h, 16) == 16)
		CHECK_EQ(h.kind, RR_PROXY_LOCAL);
	memset(body, 0xee, 40);
	n = v2(buf, 0x20, 0x21, body, 7); /* LOCAL: the block is not parsed */
	splits(buf, n, &h, 23);

	/* valid families this broker does not serve: the real peer is used */
	n = v2(buf, 0x21, 0x00, NULL, 0);
	if (splits(buf, n, &h, 16) == 16)
		CHECK_EQ(h.kind, RR_PROXY_UNKNOWN);
	n = v2(buf, 0x21, 0x12, haproxy + 16, 12); /* UDP */
	if (splits(buf, n, &h, 28) == 28)
		CHECK_EQ(h.kind, RR_PROXY_UNKNOWN);
	memset(body, 0, 216);
	memcpy(body, "/run/a.sock", 11);
	n = v2(buf, 0x21, 0x31, body, 216); /* unix stream */
	if (splits(buf, n, &h, 232) == 232)
		CHECK_EQ(h.kind, RR_PROXY_UNKNOWN);
	n = v2(buf, 0x21, 0x22, body, 36);
	splits(buf, n, &h, 52);
	n = v2(buf, 0x21, 0x32, body, 216);
	splits(buf, n, &h, 232);
}

/* The HAProxy address block with TLVs tlv[0..tn) after it. */
static size_t v2_tlvs(uint8_t *buf, const uint8_t *tlv, size_t tn)
{
	static const uint8_t addr[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0x04, 0xd2, 0x00, 0x50};
	uint8_t body[RR_PROXY_V2_LEN_MAX + 64];

	memcpy(body, addr, 12);
	memcpy(body + 12, tlv, tn);
	return v2(buf, 0x21, 0x11, body, 12 + tn);
}

/* Put a correct CRC32C into the 4 bytes at buf[at]. */
static void set_crc(uint8_t *buf, size_t n, size_t at)
{
	uint32_t c = rr_proxy_crc32c(buf, n, at);

	buf[at] = (uint8_t)(c >> 24);
	buf[at + 1] = (uint8_t)(c >> 16);
	buf[at + 2] = (uint8_t)(c >> 8);
	buf[at + 3] = (uint8_t)c;
}

static void test_v2_tlvs(void)
{
	uint8_t buf[RR_PROXY_BYTES_MAX + 64], tlv[RR_PROXY_V2_LEN_MAX + 8];
	struct rr_proxy_hdr h;
	size_t n;

	/* RFC 3720 B.4 / the usual check value of CRC-32C */
	CHECK_EQ(rr_proxy_crc32c((const uint8_t *)"123456789", 9, 100), 0xe3069283u);
	/* the checksum field counts as zeros whatever it holds */
	CHECK_EQ(rr_proxy_crc32c((const uint8_t *)"123456789\xff\x01\x02\x03", 13, 9),
		 rr_proxy_crc32c((const uint8_t *)"123456789\0\0\0\0", 13, 100));

	/* ALPN "h2", an empty NOOP, AUTHORITY, a custom type */
	{
		static const uint8_t t[] = {0x01, 0, 2,	  'h', '2', 0x04, 0, 0, 0x02,
					    0,	  3, 'a', '.', 'b', 0xe0, 0, 1, 7};
		n = v2_tlvs(buf, t, sizeof(t));
		if (splits(buf, n, &h, (ssize_t)n) > 0) {
			CHECK_EQ(h.kind, RR_PROXY_ADDR);
			CHECK(is_v4(&h.src, "10.0.0.1", 1234));
		}
	}
	/* CRC32C right, wrong, badly sized, twice */
	{
		uint8_t t[] = {0x01, 0, 2, 'h', '2', 0x03, 0, 4, 0, 0, 0, 0};

		n = v2_tlvs(buf, t, sizeof(t));
		set_crc(buf, n, 16 + 12 + 8);
		if (splits(buf, n, &h, (ssize_t)n) > 0)
			CHECK_EQ(h.kind, RR_PROXY_ADDR);
		buf[17 + 4] ^= 1; /* a flipped address bit */
		splits(buf, n, &h, -EPROTO);
		buf[17 + 4] ^= 1;
		buf[16 + 12 + 8] ^= 0x80; /* a flipped checksum bit */
		splits(buf, n, &h, -EPROTO);
	}
	{
		uint8_t t[] = {0x03, 0, 3, 0, 0, 0};

		n = v2_tlvs(buf, t, sizeof(t));
		splits(buf, n, &h, -EPROTO);
	}
	{
		uint8_t t[] = {0x03, 0, 4, 0, 0, 0, 0, 0x03, 0, 4, 0, 0, 0, 0};

		n = v2_tlvs(buf, t, sizeof(t));
		set_crc(buf, n, 16 + 12 + 3);
		splits(buf, n, &h, -EPROTO);
	}
	/* truncated TLVs: a lone type byte, a header cut, a value past the block */
	{
		uint8_t t[] = {0x04, 0, 0, 0x04};

		n = v2_tlvs(buf, t, sizeof(t));
		splits(buf, n, &h, -EPROTO);
		n = v2_tlvs(buf, t, 2);
		splits(buf, n, &h, -EPROTO);
	}
	{
		uint8_t t[] = {0x01, 0, 3, 'h', '2'};

		n = v2_tlvs(buf, t, sizeof(t));
		splits(buf, n, &h, -EPROTO);
	}
	{
		uint8_t t[] = {0x01, 0xff, 0xff};

		n = v2_tlvs(buf, t, sizeof(t));
		splits(buf, n, &h, -EPROTO);
	}
	/* the length cap: exactly RR_PROXY_V2_LEN_MAX is fine, one more is not */
	memset(tlv, 0, sizeof(tlv));
	tlv[0] = 0x04;
	tlv[1] = (uint8_t)((RR_PROXY_V2_LEN_MAX - 12 - 3) >> 8);
	tlv[2] = (uint8_t)(RR_PROXY_V2_LEN_MAX - 12 - 3);
	n = v2_tlvs(buf, tlv, RR_PROXY_V2_LEN_MAX - 12);
	CHECK_EQ(n, RR_PROXY_BYTES_MAX);
	splits(buf, n, &h, RR_PROXY_BYTES_MAX);
	tlv[2]++;
	n = v2_tlvs(buf, tlv, RR_PROXY_V2_LEN_MAX - 12 + 1);
	splits(buf, n, &h, -EMSGSIZE);
	n = v2(buf, 0x21, 0x11, NULL, 0);
	buf[14] = 0xff, buf[15] = 0xff;
	splits(buf, 16, &h, -EMSGSIZE);
}

static void test_v2_malformed(void)
{
	uint8_t buf[300], body[216] = {0};
	struct rr_proxy_hdr h;
	static const uint8_t bad_fam[] = {0x01, 0x02, 0x10, 0x13, 0x20, 0x23,
					  0x30, 0x33, 0x41, 0x44, 0xff};
	size_t n, i;

	/* every byte of the signature matters */
	for (i = 0; i < 12; i++) {
		n = v2(buf, 0x21, 0x11, body, 12);
		buf[i] ^= 0x40;
		if (i == 0)
			buf[0] = 0x0e; /* stays neither 'P' nor CR */
		splits(buf, n, &h, -EPROTO);
	}
	/* version other than 2, command other than LOCAL/PROXY */
	n = v2(buf, 0x11, 0x11, body, 12);
	splits(buf, n, &h, -EPROTO);
	n = v2(buf, 0x31, 0x11, body, 12);
	splits(buf, n, &h, -EPROTO);
	n = v2(buf, 0x01, 0x11, body, 12);
	splits(buf, n, &h, -EPROTO);
	n = v2(buf, 0x22, 0x11, body, 12);
	splits(buf, n, &h, -EPROTO);
	n = v2(buf, 0x2f, 0x11, body, 12);
	splits(buf, n, &h, -EPROTO);
	/* unknown families, even on LOCAL */
	for (i = 0; i < sizeof(bad_fam); i++) {
		n = v2(buf, 0x21, bad_fam[i], body, 12);
		splits(buf, n, &h, -EPROTO);
		n = v2(buf, 0x20, bad_fam[i], body, 12);
		splits(buf, n, &h, -EPROTO);
	}
	/* an address block shorter than its family's */
	n = v2(buf, 0x21, 0x11, body, 11);
	splits(buf, n, &h, -EPROTO);
	n = v2(buf, 0x21, 0x21, body, 35);
	splits(buf, n, &h, -EPROTO);
	n = v2(buf, 0x21, 0x31, body, 215);
	splits(buf, n, &h, -EPROTO);
	n = v2(buf, 0x21, 0x11, body, 0);
	splits(buf, n, &h, -EPROTO);
	/* a header whose length runs past what was sent: need more, never done */
	n = v2(buf, 0x21, 0x11, body, 12);
	CHECK_EQ(rr_proxy_parse(buf, n - 1, &h), -EAGAIN);
	/* v2 signature cut short then junk */
	splits("\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c", 16, &h, -EAGAIN);
	splits("\r\nGET / HTTP/1.1\r\n", 18, &h, -EPROTO);
	splits("\x16\x03\x01\x00\xa5", 5, &h, -EPROTO); /* a TLS ClientHello */
	splits("\0", 1, &h, -EPROTO);
}

/* ---- --proxy-from ---------------------------------------------------- */

static bool match4(const struct rr_proxy_from *f, const char *a)
{
	struct sockaddr_in s = {.sin_family = AF_INET};

	CHECK(inet_pton(AF_INET, a, &s.sin_addr) == 1);
	return rr_proxy_from_match(f, (const struct sockaddr *)&s);
}

static bool match6(const struct rr_proxy_from *f, const char *a)
{
	struct sockaddr_in6 s = {.sin6_family = AF_INET6};

	CHECK(inet_pton(AF_INET6, a, &s.sin6_addr) == 1);
	return rr_proxy_from_match(f, (const struct sockaddr *)&s);
}

static void test_from(void)
{
	struct rr_proxy_from f;
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	char err[160], many[RR_PROXY_FROM_MAX * 16 + 16];
	static const char *const bad[] = {"",
					  ",",
					  "10.0.0.0/8,",
					  ",10.0.0.0/8",
					  "10.0.0.0/8,,::1",
					  "10.0.0.0/33",
					  "10.1.0.0/8",
					  "10.0.0.0/08",
					  "10.0.0.0/",
					  "10.0.0.0/-1",
					  "10.0.0.0/8 ",
					  " 10.0.0.0/8",
					  "abc",
					  "::1/129",
					  "::1/64",
					  "10.0.0/8",
					  "10.0.0.0/8/8",
					  "localhost",
					  "2001:db8::/32x",
					  "1.2.3.4/32,::1/128,fe80::1%eth0"};
	size_t i;

	CHECK_EQ(rr_proxy_from_parse(RR_PROXY_FROM_DEFAULT, &f, err, sizeof(err)), 0);
	CHECK_EQ(f.n, 2);
	CHECK(match4(&f, "127.0.0.1"));
	CHECK(match4(&f, "127.255.255.255"));
	CHECK(!match4(&f, "128.0.0.1"));
	CHECK(!match4(&f, "126.255.255.255"));
	CHECK(match6(&f, "::1"));
	CHECK(!match6(&f, "::2"));
	CHECK(match6(&f, "::ffff:127.0.0.2")); /* a dual-stack listener's IPv4 peer */
	CHECK(!match6(&f, "::ffff:10.0.0.1"));
	CHECK(!match6(&f, "::127.0.0.1"));
	CHECK(!rr_proxy_from_match(&f, (const struct sockaddr *)&un));

	CHECK_EQ(
	    rr_proxy_from_parse("10.128.0.0/9,192.168.1.7,2001:db8::/32", &f, err, sizeof(err)), 0);
	CHECK_EQ(f.n, 3);
	CHECK(match4(&f, "10.200.1.1"));
	CHECK(match4(&f, "10.128.0.0"));
	CHECK(!match4(&f, "10.127.255.255"));
	CHECK(match4(&f, "192.168.1.7"));
	CHECK(!match4(&f, "192.168.1.6"));
	CHECK(match6(&f, "2001:db8:ffff::1"));
	CHECK(!match6(&f, "2001:db9::1"));
	CHECK(!match4(&f, "127.0.0.1"));

	CHECK_EQ(rr_proxy_from_parse("0.0.0.0/0", &f, err, sizeof(err)), 0);
	CHECK(match4(&f, "1.2.3.4"));
	CHECK(match6(&f, "::ffff:1.2.3.4"));
	CHECK(!match6(&f, "2001:db8::1"));
	CHECK_EQ(rr_proxy_from_parse("::/0", &f, err, sizeof(err)), 0);
	CHECK(match6(&f, "2001:db8::1"));
	CHECK(!match4(&f, "1.2.3.4"));

	/* a v4-mapped network is the IPv4 network */
	CHECK_EQ(rr_proxy_from_parse("::ffff:10.0.0.0/104", &f, err, sizeof(err)), 0);
	CHECK_EQ(f.v[0].family, AF_INET);
	CHECK_EQ(f.v[0].prefix_len, 8);
	CHECK(match4(&f, "10.9.8.7"));
	CHECK(match6(&f, "::ffff:10.9.8.7"));
	CHECK(!match4(&f, "11.0.0.1"));

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (rr_proxy_from_parse(bad[i], &f, err, sizeof(err)) != -EINVAL)
			fprintf(stderr, "accepted bad --proxy-from '%s'\n", bad[i]);
		CHECK(err[0] != '\0');
	}
	CHECK_EQ(rr_proxy_from_parse("10.0.0.0/8,nope", &f, NULL, 0), -EINVAL);

	/* the entry cap */
	many[0] = '\0';
	for (i = 0; i < RR_PROXY_FROM_MAX; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s10.0.%zu.0/24",
			 i ? "," : "", i);
	CHECK_EQ(rr_proxy_from_parse(many, &f, err, sizeof(err)), 0);
	CHECK_EQ(f.n, RR_PROXY_FROM_MAX);
	CHECK(match4(&f, "10.0.63.9"));
	strcat(many, ",10.1.0.0/16");
	CHECK_EQ(rr_proxy_from_parse(many, &f, err, sizeof(err)), -EINVAL);
}

int main(void)
{
	test_v1_valid();
	test_v1_malformed();
	test_v2_valid();
	test_v2_tlvs();
	test_v2_malformed();
	test_from();
	return check_done();
}
