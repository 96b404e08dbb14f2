/*
 * PROXY protocol v1/v2 header parser and the --proxy-from allow-list.
 *
 * DESIGN: like the HTTP parser, no state is kept between calls. Each call
 * walks the buffer from the start and stops at the first byte that decides
 * the answer, so every verdict depends only on the bytes before the point
 * where it is given: a header split anywhere gets the answer it gets whole.
 * The walk is short (107 bytes for v1, 16 + a capped length for v2) and a
 * balancer sends the whole header in its first segment, so re-scanning costs
 * nothing worth a state machine.
 *
 * The first byte picks the version: 'P' is v1, CR is v2 (the v2 signature
 * starts with CRLF CRLF NUL, which no v1 header or HTTP request can), anything
 * else is refused at once. v1 is checked byte by byte as it arrives (field
 * character sets and lengths) and the addresses are decoded with inet_pton()
 * once each field is complete; v2 refuses a bad signature, version, command,
 * family or length as soon as the byte that holds it arrives, then waits for
 * the whole block before it looks at the addresses and TLVs, as the spec
 * requires.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/assert.h"
#include "proxy/proxy.h"

/* ---- v1 --------------------------------------------------------------- */

/* Walking a v1 line: b[i..end) is what may be read. */
struct rr_proxy_v1 {
	const uint8_t *b;
	size_t i, end;
};

/* Consume the literal lit: 0, -EAGAIN when cut short, -EPROTO on mismatch. */
static int rr_proxy_v1_lit(struct rr_proxy_v1 *w, const char *lit)
{
	for (; *lit != '\0'; lit++, w->i++) {
		if (w->i == w->end)
			return -EAGAIN;
		if (w->b[w->i] != (uint8_t)*lit)
			return -EPROTO;
	}
	return 0;
}

static bool rr_proxy_v1_addr_char(int family, uint8_t c)
{
	if (c >= '0' && c <= '9')
		return true;
	if (c == '.')
		return true; /* IPv6 may end in dotted IPv4 (::ffff:1.2.3.4) */
	if (family == AF_INET)
		return false;
	return c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * An address field ended by term (SP): decoded into *sa with port 0.
 * Characters and length are checked as they arrive.
 */
static int rr_proxy_v1_addr(struct rr_proxy_v1 *w, int family, struct sockaddr_storage *sa)
{
	/* longest textual forms: 15 (a.b.c.d) and 45 (INET6_ADDRSTRLEN - 1) */
	size_t max = family == AF_INET ? 15 : 45, start = w->i, n;
	char text[46];

	while (w->i < w->end && w->b[w->i] != ' ') {
		if (!rr_proxy_v1_addr_char(family, w->b[w->i]) || w->i - start == max)
			return -EPROTO;
		w->i++;
	}
	if (w->i == w->end)
		return -EAGAIN;
	n = w->i - start;
	if (n == 0)
		return -EPROTO;
	memcpy(text, w->b + start, n);
	text[n] = '\0';
	w->i++; /* the SP */

	memset(sa, 0, sizeof(*sa));
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)sa;

		s4->sin_family = AF_INET;
		if (inet_pton(AF_INET, text, &s4->sin_addr) != 1)
			return -EPROTO;
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;

		s6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, text, &s6->sin6_addr) != 1)
			return -EPROTO;
	}
	return 0;
}

/* A port field (decimal 0..65535, no leading zero) ended by term. */
static int rr_proxy_v1_port(struct rr_proxy_v1 *w, uint8_t term, uint16_t *port_be)
{
	size_t start = w->i;
	unsigned v = 0;

	while (w->i < w->end && w->b[w->i] != term) {
		uint8_t c = w->b[w->i];

		if (c < '0' || c > '9' || w->i - start == 5)
			return -EPROTO;
		if (w->i > start && w->b[start] == '0')
			return -EPROTO; /* leading zero */
		v = v * 10 + (unsigned)(c - '0');
		w->i++;
	}
	if (w->i == w->end)
		return -EAGAIN;
	if (w->i == start || v > 65535)
		return -EPROTO;
	w->i++; /* the terminator */
	*port_be = htons((uint16_t)v);
	return 0;
}

static void rr_proxy_set_port(struct sockaddr_storage *sa, uint16_t port_be)
{
	if (sa->ss_family == AF_INET)
		((struct sockaddr_in *)sa)->sin_port = port_be;
	else
		((struct sockaddr_in6 *)sa)->sin6_port = port_be;
}

static int rr_proxy_v1_body(struct rr_proxy_v1 *w, struct rr_proxy_hdr *hdr)
{
	uint16_t sport = 0, dport = 0;
	int family, r;

	r = rr_proxy_v1_lit(w, "PROXY ");
	if (r < 0)
		return r;
	if (w->i == w->end)
		return -EAGAIN;

	if (w->b[w->i] == 'U') {
		/* "UNKNOWN", then CRLF or SP and anything up to CRLF */
		r = rr_proxy_v1_lit(w, "UNKNOWN");
		if (r < 0)
			return r;
		if (w->i == w->end)
			return -EAGAIN;
		if (w->b[w->i] == ' ') {
			while (w->i < w->end && w->b[w->i] != '\r' && w->b[w->i] != '\n')
				w->i++;
			if (w->i == w->end)
				return -EAGAIN;
		}
		r = rr_proxy_v1_lit(w, "\r\n");
		if (r < 0)
			return r;
		hdr->kind = RR_PROXY_UNKNOWN;
		return 0;
	}

	r = rr_proxy_v1_lit(w, "TCP");
	if (r < 0)
		return r;
	if (w->i == w->end)
		return -EAGAIN;
	if (w->b[w->i] == '4')
		family = AF_INET;
	else if (w->b[w->i] == '6')
		family = AF_INET6;
	else
		return -EPROTO;
	w->i++;
	r = rr_proxy_v1_lit(w, " ");
	if (r == 0)
		r = rr_proxy_v1_addr(w, family, &hdr->src);
	if (r == 0)
		r = rr_proxy_v1_addr(w, family, &hdr->dst);
	if (r == 0)
		r = rr_proxy_v1_port(w, ' ', &sport);
	if (r == 0)
		r = rr_proxy_v1_port(w, '\r', &dport);
	if (r == 0)
		r = rr_proxy_v1_lit(w, "\n");
	if (r < 0)
		return r;
	rr_proxy_set_port(&hdr->src, sport);
	rr_proxy_set_port(&hdr->dst, dport);
	hdr->kind = RR_PROXY_ADDR;
	return 0;
}

static ssize_t rr_proxy_v1(const uint8_t *buf, size_t len, struct rr_proxy_hdr *hdr)
{
	struct rr_proxy_v1 w = {
	    .b = buf,
	    .i = 0,
	    .end = len < RR_PROXY_V1_BYTES_MAX ? len : RR_PROXY_V1_BYTES_MAX,
	};
	int r;

	hdr->version = 1;
	r = rr_proxy_v1_body(&w, hdr);
	if (r == 0)
		return (ssize_t)w.i;
	/* cut short by the limit rather than by the data: no CRLF in 107 bytes */
	if (r == -EAGAIN && len >= RR_PROXY_V1_BYTES_MAX)
		return -EMSGSIZE;
	return r;
}

/* ---- v2 --------------------------------------------------------------- */

static const uint8_t rr_proxy_v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

enum {
	RR_PP2_CMD_LOCAL = 0x0,
	RR_PP2_CMD_PROXY = 0x1,
	RR_PP2_TYPE_CRC32C = 0x03,
};

/* Address block length of a family/protocol byte, -1 for the undefined ones. */
static int rr_proxy_v2_addr_len(uint8_t fam)
{
	switch (fam) {
	case 0x00: /* UNSPEC */
		return 0;
	case 0x11: /* TCP over IPv4 */
	case 0x12: /* UDP over IPv4 */
		return 12;
	case 0x21: /* TCP over IPv6 */
	case 0x22: /* UDP over IPv6 */
		return 36;
	case 0x31: /* unix stream */
	case 0x32: /* unix datagram */
		return 216;
	default:
		return -1;
	}
}

/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of b[0..n), the four
 * bytes at zero_at counted as zeros (the checksum field itself). Bitwise: it
 * runs at most once per connection over at most RR_PROXY_BYTES_MAX bytes. */
static uint32_t rr_proxy_crc32c(const uint8_t *b, size_t n, size_t zero_at)
{
	uint32_t crc = 0xffffffffu;
	size_t i;
	int k;

	for (i = 0; i < n; i++) {
		uint8_t c = (i >= zero_at && i < zero_at + 4) ? 0 : b[i];

		crc ^= c;
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static uint16_t rr_proxy_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* The TLVs in b[off..end): complete, and a CRC32C among them matches. */
static int rr_proxy_v2_tlvs(const uint8_t *b, size_t off, size_t end)
{
	size_t crc_at = 0;

	while (off < end) {
		size_t tlen;

		if (end - off < 3)
			return -EPROTO;
		tlen = rr_proxy_be16(b + off + 1);
		if (tlen > end - off - 3)
			return -EPROTO;
		if (b[off] == RR_PP2_TYPE_CRC32C) {
			if (tlen != 4 || crc_at != 0)
				return -EPROTO;
			crc_at = off + 3;
		}
		off += 3 + tlen;
	}
	if (crc_at != 0) {
		uint32_t want = (uint32_t)b[crc_at] << 24 | (uint32_t)b[crc_at + 1] << 16 |
				(uint32_t)b[crc_at + 2] << 8 | b[crc_at + 3];

		if (rr_proxy_crc32c(b, end, crc_at) != want)
			return -EPROTO;
	}
	return 0;
}

static ssize_t rr_proxy_v2(const uint8_t *b, size_t len, struct rr_proxy_hdr *hdr)
{
	size_t i, total;
	int alen_fam;
	uint8_t cmd, fam;
	uint16_t alen;
	int r;

	hdr->version = 2;
	for (i = 0; i < sizeof(rr_proxy_v2_sig); i++) {
		if (i == len)
			return -EAGAIN;
		if (b[i] != rr_proxy_v2_sig[i])
			return -EPROTO;
	}
	if (len < 13)
		return -EAGAIN;
	if ((b[12] >> 4) != 2)
		return -EPROTO; /* version */
	cmd = b[12] & 0x0f;
	if (cmd != RR_PP2_CMD_LOCAL && cmd != RR_PP2_CMD_PROXY)
		return -EPROTO;
	if (len < 14)
		return -EAGAIN;
	fam = b[13];
	alen_fam = rr_proxy_v2_addr_len(fam);
	if (alen_fam < 0)
		return -EPROTO;
	if (len < 16)
		return -EAGAIN;
	alen = rr_proxy_be16(b + 14);
	if (alen > RR_PROXY_V2_LEN_MAX)
		return -EMSGSIZE;
	if (cmd == RR_PP2_CMD_PROXY && alen < (unsigned)alen_fam)
		return -EPROTO;
	total = 16 + (size_t)alen;
	if (len < total)
		return -EAGAIN;

	if (cmd == RR_PP2_CMD_LOCAL) {
		/* the spec: accept and ignore the address information */
		hdr->kind = RR_PROXY_LOCAL;
		return (ssize_t)total;
	}
	r = rr_proxy_v2_tlvs(b, 16 + (size_t)alen_fam, total);
	if (r < 0)
		return r;

	if (fam == 0x11) {
		struct sockaddr_in *s = (struct sockaddr_in *)&hdr->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&hdr->dst;

		s->sin_family = AF_INET;
		d->sin_family = AF_INET;
		memcpy(&s->sin_addr, b + 16, 4);
		memcpy(&d->sin_addr, b + 20, 4);
		memcpy(&s->sin_port, b + 24, 2);
		memcpy(&d->sin_port, b + 26, 2);
		hdr->kind = RR_PROXY_ADDR;
	} else if (fam == 0x21) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&hdr->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&hdr->dst;

		s->sin6_family = AF_INET6;
		d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, b + 16, 16);
		memcpy(&d->sin6_addr, b + 32, 16);
		memcpy(&s->sin6_port, b + 48, 2);
		memcpy(&d->sin6_port, b + 50, 2);
		hdr->kind = RR_PROXY_ADDR;
	} else {
		/* valid but not TCP over IP: fall back to the real peer */
		hdr->kind = RR_PROXY_UNKNOWN;
	}
	return (ssize_t)total;
}

ssize_t rr_proxy_parse(const uint8_t *buf, size_t len, struct rr_proxy_hdr *hdr)
{
	ssize_t r;

	rr_assert(hdr != NULL);
	rr_assert(buf != NULL || len == 0);

	memset(hdr, 0, sizeof(*hdr));
	if (len == 0)
		return -EAGAIN;
	if (len > RR_PROXY_BYTES_MAX)
		len = RR_PROXY_BYTES_MAX;
	if (buf[0] == 'P')
		r = rr_proxy_v1(buf, len, hdr);
	else if (buf[0] == rr_proxy_v2_sig[0])
		r = rr_proxy_v2(buf, len, hdr);
	else
		r = -EPROTO;
	rr_assert(r == -EAGAIN || r == -EPROTO || r == -EMSGSIZE || (r > 0 && (size_t)r <= len));
	return r;
}

/* ---- --proxy-from ----------------------------------------------------- */

/* The bytes to match of an address: IPv4 (4) or IPv6 (16); a v4-mapped IPv6
 * address gives its IPv4 part. Returns the family, or 0 for others. */
static int rr_proxy_addr_bytes(const struct sockaddr *sa, const uint8_t **p)
{
	if (sa->sa_family == AF_INET) {
		*p = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
		return AF_INET;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			*p = a->s6_addr + 12;
			return AF_INET;
		}
		*p = a->s6_addr;
		return AF_INET6;
	}
	return 0;
}

/* a and b agree on their first bits bits */
static bool rr_proxy_prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[whole] ^ b[whole]) & (uint8_t)(0xff00u >> rest)) == 0;
}

static int rr_proxy_from_entry(const char *s, size_t n, struct rr_proxy_cidr *c)
{
	static const uint8_t zero[16];
	char text[64];
	const char *slash;
	unsigned bits, max;
	size_t alen;

	if (n == 0 || n >= sizeof(text))
		return -EINVAL;
	memcpy(text, s, n);
	text[n] = '\0';
	slash = memchr(text, '/', n);
	alen = slash ? (size_t)(slash - text) : n;
	text[alen] = '\0';

	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, text, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, text, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else {
		return -EINVAL;
	}

	bits = max;
	if (slash != NULL) {
		const char *d = slash + 1;

		if (*d == '\0' || (d[0] == '0' && d[1] != '\0'))
			return -EINVAL;
		for (bits = 0; *d != '\0'; d++) {
			if (*d < '0' || *d > '9')
				return -EINVAL;
			bits = bits * 10 + (unsigned)(*d - '0');
			if (bits > max)
				return -EINVAL;
		}
	}
	c->prefix_len = (uint8_t)bits;

	/* no host bits past the prefix: compare with the all-zero address past it */
	{
		uint8_t masked[16];
		unsigned i;

		for (i = 0; i < max / 8; i++) {
			unsigned keep = bits >= (i + 1) * 8 ? 8 : (bits > i * 8 ? bits - i * 8 : 0);

			masked[i] = (uint8_t)(c->addr[i] & (uint8_t)(0xff00u >> keep));
		}
		if (memcmp(masked, c->addr, max / 8) != 0)
			return -EINVAL;
	}

	/* a v4-mapped network (::ffff:a.b.c.d/96+) is the IPv4 network, as
	 * mapped peers are matched as IPv4 */
	if (c->family == AF_INET6 && bits >= 96 && memcmp(c->addr, zero, 10) == 0 &&
	    c->addr[10] == 0xff && c->addr[11] == 0xff) {
		memmove(c->addr, c->addr + 12, 4);
		memset(c->addr + 4, 0, 12);
		c->family = AF_INET;
		c->prefix_len = (uint8_t)(bits - 96);
	}
	return 0;
}

int rr_proxy_from_parse(const char *s, struct rr_proxy_from *out, char *err, size_t errlen)
{
	const char *p;

	rr_assert(s != NULL && out != NULL);
	rr_assert(err != NULL || errlen == 0);

	out->n = 0;
	p = s;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);

		if (out->n == RR_PROXY_FROM_MAX) {
			if (errlen)
				snprintf(err, errlen, "more than %d networks", RR_PROXY_FROM_MAX);
			return -EINVAL;
		}
		if (rr_proxy_from_entry(p, n, &out->v[out->n]) < 0) {
			if (errlen)
				snprintf(err, errlen,
					 "'%.*s' is not an IPv4 or IPv6 network (ADDRESS[/PREFIX], "
					 "no host bits past the prefix)",
					 (int)(n > 64 ? 64 : n), p);
			return -EINVAL;
		}
		out->n++;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return 0;
}

bool rr_proxy_from_match(const struct rr_proxy_from *from, const struct sockaddr *sa)
{
	const uint8_t *a = NULL;
	unsigned i;
	int family;

	rr_assert(from != NULL && sa != NULL);
	rr_assert(from->n <= RR_PROXY_FROM_MAX);

	family = rr_proxy_addr_bytes(sa, &a);
	if (family == 0)
		return false;
	for (i = 0; i < from->n; i++) {
		const struct rr_proxy_cidr *c = &from->v[i];

		if (c->family == family && rr_proxy_prefix_eq(a, c->addr, c->prefix_len))
			return true;
	}
	return false;
}
