/*
 * ringroom-bench publish mode: HTTP/1.1 answers read incrementally.
 *
 * A keep-alive connection to the backend API carries a stream of answers,
 * one per request and in the same order; the bytes come in whatever pieces
 * the socket hands over. The reader keeps the head of the answer being read
 * (at most RR_BENCH_HTTP_HEAD_MAX bytes), then counts its Content-Length
 * body down, keeping the body's first RR_BENCH_HTTP_BODY_KEEP bytes (enough
 * for {"delivered":N} or an error's code). 1xx interim answers are skipped.
 * An answer without Content-Length (chunked, or a body up to the close) is
 * refused: the broker always sends one, and a bench cannot keep a
 * connection it cannot frame.
 */
#ifndef RR_BENCH_HTTP_ANSWER_H
#define RR_BENCH_HTTP_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RR_BENCH_HTTP_HEAD_MAX 2048
#define RR_BENCH_HTTP_BODY_KEEP 128
/* Largest body we accept to count down (far above any API answer). */
#define RR_BENCH_HTTP_BODY_MAX (64ull * 1024 * 1024)

struct rr_bench_http_answer {
	int status;	   /* 100..599 */
	bool close;	   /* "Connection: close": the server ends the connection */
	uint64_t body_len; /* Content-Length */
	const char *body;  /* its first body_kept bytes */
	size_t body_kept;
};

struct rr_bench_http_rx {
	bool in_body;
	uint16_t head_len;
	uint16_t body_kept;
	uint64_t body_left;
	struct rr_bench_http_answer cur; /* the head's fields while in the body */
	char head[RR_BENCH_HTTP_HEAD_MAX];
	char body[RR_BENCH_HTTP_BODY_KEEP];
};

/* Called once per final (non-1xx) answer, in order. A non-zero return stops
 * the feed, which then returns the bytes consumed so far (the answer's last
 * byte included). */
typedef int rr_bench_http_answer_fn(void *ctx, const struct rr_bench_http_answer *a);

void rr_bench_http_rx_init(struct rr_bench_http_rx *rx);

/*
 * Feed bytes p[0..n). Returns n (or fewer when the callback stopped it), or
 * a negative errno: -EPROTO for a bad status line or header, -EMSGSIZE for
 * a head over RR_BENCH_HTTP_HEAD_MAX, -EBADMSG for a missing, malformed or
 * conflicting Content-Length or a Transfer-Encoding. After an error the
 * stream cannot be framed any more: the connection must be dropped.
 */
ssize_t rr_bench_http_feed(struct rr_bench_http_rx *rx, const uint8_t *p, size_t n,
			   rr_bench_http_answer_fn *fn, void *ctx);

/* {"delivered":N} in an API answer's body: N, or -1 if not there. */
int64_t rr_bench_http_delivered(const char *body, size_t len);

#endif
