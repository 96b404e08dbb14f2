/* Plain HTTP answers: see http_reply.h. */
#include "http/http_reply.h"
#include "http/http.h"
#include "core/limits.h"

#include <stdio.h>
#include <string.h>

const char *rr_http_reason(int status)
{
	return rr_http_status_text(status); /* one table: http_route.c */
}

/* The response with extra header lines (each ending in CRLF) after the
 * ones the status requires. */
static struct rr_frame *response(int status, const char *content_type, const void *body,
				 size_t body_len, const char *more)
{
	char head[1024];
	char deflt[64];
	const char *extra = "";

	if (body == NULL) {
		body_len = (size_t)snprintf(deflt, sizeof(deflt), "%d %s\n", status,
					    rr_http_reason(status));
		body = deflt;
		content_type = "text/plain; charset=utf-8";
	}
	if (status == 426)
		extra = "Sec-WebSocket-Version: 13\r\n";
	else if (status == 503 || status == 429)
		extra = "Retry-After: " RR_STRINGIFY(RR_RETRY_AFTER_S) "\r\n";
	if (status == 405)
		extra = "Allow: GET\r\n";

	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\n"
			 "Server: ringroom\r\n"
			 "Content-Type: %s\r\n"
			 "Content-Length: %zu\r\n"
			 "Cache-Control: no-store\r\n"
			 "%s%s"
			 "Connection: close\r\n\r\n",
			 status, rr_http_reason(status), content_type, body_len, extra, more);
	if (n < 0 || (size_t)n >= sizeof(head))
		return NULL;
	struct rr_frame *f = rr_frame_new((size_t)n + body_len);
	if (f == NULL)
		return NULL;
	memcpy(f->data, head, (size_t)n);
	memcpy(f->data + n, body, body_len);
	return f;
}

struct rr_frame *rr_http_response(int status, const char *content_type, const void *body,
				  size_t body_len)
{
	return response(status, content_type, body, body_len, "");
}

/* s as the body of a quoted-string (RFC 9110 5.6.4), at most cap-1 bytes:
 * '"' and '\\' escaped; control bytes, which a header may not carry,
 * become spaces. */
static void quoted(char *out, size_t cap, const char *s)
{
	size_t n = 0;
	for (; s && *s && n + 3 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			out[n++] = '\\';
		out[n++] = ch < 0x20 || ch == 0x7F ? ' ' : (char)ch;
	}
	out[n] = '\0';
}

struct rr_frame *rr_http_response_401(const char *error, const char *description)
{
	char err[64], desc[200], hdr[384], body[224];
	quoted(err, sizeof(err), error);
	quoted(desc, sizeof(desc), description);
	snprintf(hdr, sizeof(hdr),
		 "WWW-Authenticate: Bearer realm=\"ringroom\", error=\"%s\", "
		 "error_description=\"%s\"\r\n",
		 err, desc);
	int bn = snprintf(body, sizeof(body), "401 Unauthorized: %s\n",
			  description ? description : error);
	if (bn < 0)
		return NULL;
	if ((size_t)bn >= sizeof(body))
		bn = sizeof(body) - 1;
	return response(401, "text/plain; charset=utf-8", body, (size_t)bn, hdr);
}

struct rr_frame *rr_http_switching(const char accept[29], const char *protocol)
{
	char head[256 + 8300]; /* a bearer.<token> protocol can be a long JWT */
	int n;
	if (protocol)
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 101 Switching Protocols\r\n"
			     "Upgrade: websocket\r\n"
			     "Connection: Upgrade\r\n"
			     "Sec-WebSocket-Accept: %s\r\n"
			     "Sec-WebSocket-Protocol: %s\r\n\r\n",
			     accept, protocol);
	else
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 101 Switching Protocols\r\n"
			     "Upgrade: websocket\r\n"
			     "Connection: Upgrade\r\n"
			     "Sec-WebSocket-Accept: %s\r\n\r\n",
			     accept);
	if (n < 0 || (size_t)n >= sizeof(head))
		return NULL;
	struct rr_frame *f = rr_frame_new((size_t)n);
	if (f)
		memcpy(f->data, head, (size_t)n);
	return f;
}
