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

/* The 101 Switching Protocols answer; protocol may be NULL. */
struct rr_frame *rr_http_switching(const char accept[29], const char *protocol);

const char *rr_http_reason(int status);

/* The page served at GET / (src/http/index.html, embedded at build time). */
extern const char rr_index_html[];
extern const unsigned long rr_index_html_len;

#endif
