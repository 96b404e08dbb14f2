/*
 * HTTP/1.1 request-head parser for the WebSocket upgrade and the backend API,
 * plus the small helpers both need (query lookup, percent-decoding, the
 * Sec-WebSocket-Key shape check, the Content-Length body, keep-alive, Bearer
 * credentials).
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
 * most one Host, Content-Length must be digits (and repeated only with the
 * same value). Bare LF line ends are accepted.
 *
 * A body is framed by Content-Length only: the API's clients (curl, HTTP
 * libraries) send it for every body they know the size of, and refusing
 * chunked requests (501) keeps the parser a single stateless scan.
 */
#include <errno.h>
#include <stdint.h>
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
		else if (rr_http_eq_ci(name.p, name.n, "expect") &&
			 rr_http_eq_ci(v.p, v.n, "100-continue"))
			req->expect_continue = true;
		break;
	case 7:
		if (rr_http_eq_ci(name.p, name.n, "upgrade") && rr_http_list_has(v, "websocket"))
			req->upgrade_websocket = true;
		break;
	case 10:
		if (rr_http_eq_ci(name.p, name.n, "connection")) {
			if (rr_http_list_has(v, "upgrade"))
				req->connection_upgrade = true;
			if (rr_http_list_has(v, "close"))
				req->conn_close = true;
			if (rr_http_list_has(v, "keep-alive"))
				req->conn_keep_alive = true;
		}
		break;
	case 12:
		if (rr_http_eq_ci(name.p, name.n, "content-type"))
			rr_http_set_first(&req->content_type, v);
		break;
	case 13:
		if (rr_http_eq_ci(name.p, name.n, "authorization"))
			rr_http_set_first(&req->authorization, v);
		break;
	case 14:
		if (rr_http_eq_ci(name.p, name.n, "content-length")) {
			uint64_t cl = 0;

			/* digits only; a non-zero one means a body follows */
			if (v.n == 0)
				return -EPROTO;
			for (k = 0; k < v.n; k++) {
				unsigned d = (unsigned)(v.p[k] - '0');

				if (v.p[k] < '0' || v.p[k] > '9')
					return -EPROTO;
				if (d != 0)
					req->has_body = true;
				/* saturate: any such length is over every body limit */
				cl = cl > (UINT64_MAX - d) / 10 ? UINT64_MAX : cl * 10 + d;
			}
			/* two different lengths: which one frames the body? (RFC 9112 6.3) */
			if (req->has_content_length && req->content_length != cl)
				return -EPROTO;
			req->has_content_length = true;
			req->content_length = cl;
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
			req->transfer_encoding = true;
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

/* ---- a whole request: head and body (the backend API) ------------------ */

ssize_t rr_http_parse_request(const char *buf, size_t len, const struct rr_http_limits *lim,
			      uint64_t body_bytes_max, struct rr_http_req *req)
{
	ssize_t head = rr_http_parse(buf, len, lim, req);
	size_t have;

	if (head < 0)
		return head;
	rr_assert((size_t)head <= len);
	req->head_bytes = (size_t)head;
	if (req->transfer_encoding)
		return req->has_content_length ? -EPROTO : -ENOTSUP;
	if (req->content_length > body_bytes_max)
		return -EFBIG;
	have = len - (size_t)head;
	if (have < req->content_length)
		return -EAGAIN; /* head_bytes says the head is done */
	req->body.p = buf + head;
	req->body.n = (size_t)req->content_length;
	return head + (ssize_t)req->content_length;
}

int rr_http_error_status(ssize_t err)
{
	switch (err) {
	case -EMSGSIZE:
		return 431;
	case -EFBIG:
		return 413;
	case -ENOTSUP:
		return 501;
	default:
		return 400;
	}
}

bool rr_http_keep_alive(const struct rr_http_req *req)
{
	rr_assert(req != NULL);
	if (req->conn_close)
		return false;
	return req->minor_version >= 1 || req->conn_keep_alive;
}

bool rr_http_content_is_text(struct rr_http_str ct)
{
	size_t n = 0, slash;

	rr_assert(ct.p != NULL || ct.n == 0);
	/* the media type ends at ';' or whitespace before the parameters */
	while (n < ct.n && ct.p[n] != ';' && !rr_http_is_ows(ct.p[n]))
		n++;
	for (slash = 0; slash < n && ct.p[slash] != '/'; slash++)
		;
	if (slash == 0 || slash + 1 >= n)
		return false;
	if (rr_http_eq_ci(ct.p, slash, "text"))
		return true;
	if (rr_http_eq_ci(ct.p, n, "application/json"))
		return true;
	return n - slash - 1 > 5 && rr_http_eq_ci(ct.p + n - 5, 5, "+json");
}

bool rr_http_bearer(struct rr_http_str a, struct rr_http_str *token)
{
	size_t i = 6, k;

	rr_assert(token != NULL);
	rr_assert(a.p != NULL || a.n == 0);
	if (a.n < 8 || !rr_http_eq_ci(a.p, 6, "bearer") || a.p[6] != ' ')
		return false;
	while (i < a.n && a.p[i] == ' ')
		i++;
	if (i == a.n)
		return false;
	for (k = i; k < a.n; k++) {
		if (rr_http_is_ows(a.p[k]))
			return false;
	}
	token->p = a.p + i;
	token->n = a.n - i;
	return true;
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

int rr_http_query_u64(struct rr_http_str query, const char *name, uint64_t max, uint64_t *out)
{
	struct rr_http_str v;
	uint64_t x = 0;
	size_t i;

	rr_assert(out != NULL && name != NULL);
	if (!rr_http_query_get(query, name, &v))
		return -ENOENT;
	if (v.n == 0)
		return -EINVAL;
	for (i = 0; i < v.n; i++) {
		unsigned d = (unsigned)(v.p[i] - '0');

		if (v.p[i] < '0' || v.p[i] > '9')
			return -EINVAL;
		if (d > max || x > (max - d) / 10)
			return -EINVAL;
		x = x * 10 + d;
	}
	*out = x;
	return 0;
}
