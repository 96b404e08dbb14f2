/*
 * Plain HTTP answers: rejections before the upgrade, the 101 response, and
 * the small endpoints (/healthz, /metrics, /). Every answer but 101 carries
 * "Connection: close"; the connection layer then closes the TCP connection.
 */
#ifndef RR_HTTP_REPLY_H
#define RR_HTTP_REPLY_H

#include <stddef.h>

#include "core/frame.h"

/* A complete response with the status's reason phrase, the headers each
 * status requires (426: Sec-WebSocket-Version: 13; 503/429: Retry-After) and
 * body (a one-line reason when body is NULL). NULL on out of memory. */
struct rr_frame *rr_http_response(int status, const char *content_type, const void *body,
				  size_t body_len);

/*
 * 401 with the reason a client can act on (RFC 6750 section 3):
 *   WWW-Authenticate: Bearer realm="ringroom", error="<error>",
 *                     error_description="<description>"
 * and the description as the text body. error is an RFC 6750 code:
 * "invalid_token" (expired, malformed, bad signature, no exp claim) or
 * "invalid_request" (no token where one is required; RFC 6750 3.1 lets a
 * server omit the code then, ringroom names it so that every 401 says why).
 * Both strings are written as quoted-strings ('"' and '\\' escaped, control
 * bytes replaced); description is cut at 190 bytes and must not hold token
 * text. NULL on out of memory.
 */
struct rr_frame *rr_http_response_401(const char *error, const char *description);

/* The 101 Switching Protocols answer; protocol may be NULL. */
struct rr_frame *rr_http_switching(const char accept[29], const char *protocol);

const char *rr_http_reason(int status);

/* The page served at GET / (src/http/index.html, embedded at build time). */
extern const char rr_index_html[];
extern const unsigned long rr_index_html_len;

#endif
