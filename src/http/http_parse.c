/*
 * HTTP/1.1 request-head parser for the WebSocket upgrade, plus the small
 * helpers the upgrade path needs (query lookup, percent-decoding, the
 * Sec-WebSocket-Key shape check).
 *
 * DESIGN: the parser keeps no state between calls. Each call scans the buffer
 * from the start, left to right, once, and stops at the first byte that
 * decides the answer: the blank line (complete), a malformed byte (-EPROTO),
 * the header_bytes_max'th byte without a blank line or the first byte of one
 * header line too many (-EMSGSIZE), or the end of the data (-EAGAIN). Because
 * every verdict depends only on the bytes before the point where it is given,
 * a request fed in any number of pieces gets the same answer as one fed
 * whole, and it never reads past min(len, header_bytes_max). Re-scanning on
 * each call costs little: the common case is the whole head in one read, and
 * the head is capped at a few KiB.
 *
 * Strictness: single SP between request-line parts, "HTTP/1.<digit>" only,
 * header names are tokens followed directly by ':', no control characters
 * except HTAB in values, no obs-fold, no bare CR, no leading empty line, at
 * most one Host, Content-Length must be digits. Bare LF line ends are accepted.
 */
#include <errno.h>
#include <string.h>

#include "core/assert.h"
#include "http/http.h"

/* Byte classes (RFC 9110 5.6.2 tchar, 5.5 field-vchar / obs-text). */
enum {
	CT_TCHAR = 1, /* may appear in a method or header name */
	CT_VCHAR = 2, /* visible ASCII: may appear in the request target */
	CT_FIELD = 4, /* may appear in a header value (includes SP, HTAB, obs-text) */
};

/* one class per line reads better than packed columns */
/* clang-format off */
#define T (CT_TCHAR | CT_VCHAR | CT_FIELD)
#define V (CT_VCHAR | CT_FIELD)
static const unsigned char rr_http_ctype[256] = {
	['\t'] = CT_FIELD,
	[' '] = CT_FIELD,
	['!'] = T,
	['"'] = V,
	['#' ... '\''] = T,
	['('] = V,
	[')'] = V,
	['*'] = T,
	['+'] = T,
	[','] = V,
	['-'] = T,
	['.'] = T,
	['/'] = V,
	['0' ... '9'] = T,
	[':' ... '@'] = V,
	['A' ... 'Z'] = T,
	['[' ... ']'] = V,
	['^' ... '`'] = T,
	['a' ... 'z'] = T,
	['{'] = V,
	['|'] = T,
	['}'] = V,
	['~'] = T,
	[0x80 ... 0xff] = CT_FIELD,
};
#undef T
#undef V
/* clang-format on */

static inline unsigned char rr_http_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* a[0..n) equals the lowercase literal lit, ignoring ASCII case */
static bool rr_http_eq_ci(const char *a, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (lit[i] == '\0' || rr_http_lower((unsigned char)a[i]) != (unsigned char)lit[i])
			return false;
	}
	return lit[n] == '\0';
}

static inline bool rr_http_is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* Does the comma-separated list v contain token tok (lowercase literal)? */
static bool rr_http_list_has(struct rr_http_str v, const char *tok)
{
	size_t i = 0;

	while (i < v.n) {
		size_t b, e;

		while (i < v.n && (rr_http_is_ows(v.p[i]) || v.p[i] == ','))
			i++;
		b = i;
		while (i < v.n && v.p[i] != ',')
			i++;
		e = i;
		while (e > b && rr_http_is_ows(v.p[e - 1]))
			e--;
		if (e > b && rr_http_eq_ci(v.p + b, e - b, tok))
			return true;
	}
	return false;
}

/*
 * Where the line ending at buf[*i] finishes: 0 and *i past it, -EAGAIN when
 * it is cut by the end, -EPROTO when buf[*i] is not CRLF or LF.
 */
static int rr_http_eol(const unsigned char *b, size_t end, size_t *i)
{
	if (b[*i] == '\n') {
		*i += 1;
		return 0;
	}
	if (b[*i] != '\r')
		return -EPROTO;
	if (*i + 1 >= end)
		return -EAGAIN;
	if (b[*i + 1] != '\n')
		return -EPROTO; /* bare CR */
	*i += 2;
	return 0;
}

static int rr_http_request_line(const unsigned char *b, size_t end, size_t *pi,
				struct rr_http_req *req)
{
	static const char version[] = "HTTP/1.";
	size_t i = *pi, start, k;
	bool query = false;

	/* method: token SP */
	start = i;
	while (i < end && (rr_http_ctype[b[i]] & CT_TCHAR))
		i++;
	if (i == end)
		return -EAGAIN;
	if (b[i] != ' ' || i == start)
		return -EPROTO;
	req->method.p = (const char *)b + start;
	req->method.n = i - start;
	i++;

	/* target: visible ASCII SP; the path ends at the first '?' */
	start = i;
	while (i < end && (rr_http_ctype[b[i]] & CT_VCHAR)) {
		if (b[i] == '?' && !query) {
			query = true;
			req->path.p = (const char *)b + start;
			req->path.n = i - start;
			req->query.p = (const char *)b + i + 1;
		}
		i++;
	}
	if (i == end)
		return -EAGAIN;
	if (b[i] != ' ' || i == start)
		return -EPROTO;
	req->target.p = (const char *)b + start;
	req->target.n = i - start;
	if (query) {
		req->query.n = (size_t)((const char *)b + i - req->query.p);
	} else {
		req->path = req->target;
	}
	i++;

	/* "HTTP/1." DIGIT, compared as the bytes arrive so junk fails early */
	for (k = 0; k < sizeof(version) - 1; k++, i++) {
		if (i == end)
			return -EAGAIN;
		if (b[i] != (unsigned char)version[k])
			return -EPROTO;
	}
	if (i == end)
		return -EAGAIN;
	if (b[i] < '0' || b[i] > '9')
		return -EPROTO;
	req->minor_version = b[i] - '0';
	i++;
	if (i == end)
		return -EAGAIN;
	{
		int r = rr_http_eol(b, end, &i);

		if (r < 0)
			return r;
	}
	*pi = i;
	return 0;
}

static void rr_http_set_first(struct rr_http_str *dst, struct rr_http_str v)
{
	if (dst->p == NULL)
		*dst = v;
}

/* Record what the broker needs from one header field. */
static int rr_http_header(struct rr_http_req *req, struct rr_http_str name, struct rr_http_str v)
{
	size_t k;

	switch (name.n) {
	case 4:
		if (rr_http_eq_ci(name.p, name.n, "host")) {
			/* RFC 9112 3.2: more than one Host is a 400 */
			if (req->host.p != NULL)
				return -EPROTO;
			req->host = v;
		}
		break;
	case 6:
		if (rr_http_eq_ci(name.p, name.n, "origin"))
			rr_http_set_first(&req->origin, v);
		break;
	case 7:
		if (rr_http_eq_ci(name.p, name.n, "upgrade") && rr_http_list_has(v, "websocket"))
			req->upgrade_websocket = true;
		break;
	case 10:
		if (rr_http_eq_ci(name.p, name.n, "connection") && rr_http_list_has(v, "upgrade"))
			req->connection_upgrade = true;
		break;
	case 13:
		if (rr_http_eq_ci(name.p, name.n, "authorization"))
			rr_http_set_first(&req->authorization, v);
		break;
	case 14:
		if (rr_http_eq_ci(name.p, name.n, "content-length")) {
			/* digits only; a non-zero one means a body follows */
			if (v.n == 0)
				return -EPROTO;
			for (k = 0; k < v.n; k++) {
				if (v.p[k] < '0' || v.p[k] > '9')
					return -EPROTO;
				if (v.p[k] != '0')
					req->has_body = true;
			}
		}
		break;
	case 15:
		if (rr_http_eq_ci(name.p, name.n, "x-forwarded-for"))
			rr_http_set_first(&req->forwarded_for, v);
		break;
	case 17:
		if (rr_http_eq_ci(name.p, name.n, "sec-websocket-key")) {
			if (req->ws_key.p != NULL)
				req->dup_ws_key = true;
			else
				req->ws_key = v;
		} else if (rr_http_eq_ci(name.p, name.n, "transfer-encoding")) {
			req->has_body = true;
		}
		break;
	case 21:
		if (rr_http_eq_ci(name.p, name.n, "sec-websocket-version"))
			rr_http_set_first(&req->ws_version, v);
		break;
	case 22:
		if (rr_http_eq_ci(name.p, name.n, "sec-websocket-protocol"))
			rr_http_set_first(&req->ws_protocol, v);
		break;
	default:
		break;
	}
	return 0;
}

/* One header line starting at b[*pi] (known not to be SP, HTAB, CR or LF). */
static int rr_http_header_line(const unsigned char *b, size_t end, size_t *pi,
			       struct rr_http_req *req)
{
	struct rr_http_str name, v;
	size_t i = *pi, start, last;
	int r;

	start = i;
	while (i < end && (rr_http_ctype[b[i]] & CT_TCHAR))
		i++;
	if (i == end)
		return -EAGAIN;
	/* no empty name, no whitespace before ':' (RFC 9112 5.1) */
	if (b[i] != ':' || i == start)
		return -EPROTO;
	name.p = (const char *)b + start;
	name.n = i - start;
	i++;

	while (i < end && rr_http_is_ows((char)b[i]))
		i++;
	start = i;
	last = i; /* one past the last non-OWS byte of the value */
	while (i < end && (rr_http_ctype[b[i]] & CT_FIELD)) {
		if (!rr_http_is_ows((char)b[i]))
			last = i + 1;
		i++;
	}
	if (i == end)
		return -EAGAIN;
	r = rr_http_eol(b, end, &i); /* any other control byte is -EPROTO here */
	if (r < 0)
		return r;
	v.p = (const char *)b + start;
	v.n = last - start;

	r = rr_http_header(req, name, v);
	if (r < 0)
		return r;
	*pi = i;
	return 0;
}

ssize_t rr_http_parse(const char *buf, size_t len, const struct rr_http_limits *lim,
		      struct rr_http_req *req)
{
	const unsigned char *b = (const unsigned char *)buf;
	size_t end, i = 0;
	int r;

	rr_assert(lim != NULL && req != NULL);
	rr_assert(buf != NULL || len == 0);

	memset(req, 0, sizeof(*req));
	/* never look past the limit: what lies beyond cannot make the head valid */
	end = len < lim->header_bytes_max ? len : lim->header_bytes_max;

	r = rr_http_request_line(b, end, &i, req);
	if (r == -EAGAIN)
		goto more;
	if (r < 0)
		return r;

	/* each pass consumes one non-empty line of at least 2 bytes */
	while (i < end) {
		unsigned char c = b[i];

		if (c == '\n')
			return (ssize_t)(i + 1);
		if (c == '\r') {
			r = rr_http_eol(b, end, &i);
			if (r == -EAGAIN)
				goto more;
			if (r < 0)
				return r;
			return (ssize_t)i;
		}
		if (c == ' ' || c == '\t')
			return -EPROTO; /* obs-fold (RFC 9112 5.2) */
		/* refuse at the first byte of one line too many */
		if (req->header_count >= lim->headers_max)
			return -EMSGSIZE;
		req->header_count++;
		r = rr_http_header_line(b, end, &i, req);
		if (r == -EAGAIN)
			goto more;
		if (r < 0)
			return r;
	}
more:
	return len > lim->header_bytes_max ? -EMSGSIZE : -EAGAIN;
}

/* ---- upgrade check ----------------------------------------------------- */

static int rr_http_b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Length the standard base64 (padded) string s decodes to, or -1 if it is not
 * base64. Unused low bits of the last symbol are not required to be zero, as
 * common server implementations do not require it either.
 */
static ssize_t rr_http_b64_len(struct rr_http_str s)
{
	size_t i, pad = 0;

	if (s.n == 0 || s.n % 4 != 0)
		return -1;
	if (s.p[s.n - 1] == '=')
		pad++;
	if (s.p[s.n - 2] == '=')
		pad++;
	for (i = 0; i < s.n - pad; i++) {
		if (rr_http_b64_val((unsigned char)s.p[i]) < 0)
			return -1;
	}
	return (ssize_t)(s.n / 4 * 3 - pad);
}

int rr_http_upgrade_check(const struct rr_http_req *req)
{
	rr_assert(req != NULL);
	rr_assert(req->method.p != NULL);

	if (!(req->method.n == 3 && memcmp(req->method.p, "GET", 3) == 0))
		return 405;
	/* RFC 6455 4.1: HTTP/1.1 or higher */
	if (req->minor_version < 1)
		return 400;
	if (req->host.p == NULL || req->host.n == 0)
		return 400;
	if (req->has_body)
		return 400;
	if (!req->upgrade_websocket || !req->connection_upgrade)
		return 400;
	if (req->ws_key.p == NULL || req->dup_ws_key || rr_http_b64_len(req->ws_key) != 16)
		return 400;
	if (req->ws_version.p == NULL || req->ws_version.n == 0)
		return 400;
	if (!(req->ws_version.n == 2 && memcmp(req->ws_version.p, "13", 2) == 0))
		return 426;
	return 0;
}

/* ---- query ------------------------------------------------------------- */

bool rr_http_query_get(struct rr_http_str query, const char *name, struct rr_http_str *value)
{
	size_t nlen, i = 0;

	rr_assert(name != NULL && value != NULL);
	rr_assert(query.p != NULL || query.n == 0);

	nlen = strlen(name);
	while (i < query.n) {
		size_t b = i, eq = 0;
		bool has_eq = false;

		while (i < query.n && query.p[i] != '&') {
			if (!has_eq && query.p[i] == '=') {
				has_eq = true;
				eq = i;
			}
			i++;
		}
		/* query.p[b..i) is one "key[=value]" pair */
		{
			size_t klen = has_eq ? eq - b : i - b;

			if (klen == nlen && memcmp(query.p + b, name, nlen) == 0) {
				value->p = has_eq ? query.p + eq + 1 : query.p + i;
				value->n = has_eq ? i - eq - 1 : 0;
				return true;
			}
		}
		i++; /* skip '&' */
	}
	return false;
}

static int rr_http_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = rr_http_lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

ssize_t rr_http_pct_decode(struct rr_http_str src, char *dst, size_t cap)
{
	size_t i = 0, n = 0;

	rr_assert(src.p != NULL || src.n == 0);
	rr_assert(dst != NULL || cap == 0);

	while (i < src.n) {
		unsigned char c = (unsigned char)src.p[i];

		if (c == '%') {
			int hi, lo;

			if (src.n - i < 3)
				return -1;
			hi = rr_http_hex((unsigned char)src.p[i + 1]);
			lo = rr_http_hex((unsigned char)src.p[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (unsigned char)(hi << 4 | lo);
			/* a NUL would truncate the value for any C-string user */
			if (c == 0)
				return -1;
			i += 3;
		} else {
			i++;
		}
		if (n == cap)
			return -1;
		dst[n++] = (char)c;
	}
	return (ssize_t)n;
}
