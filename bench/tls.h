/*
 * wss:// for ringroom-bench: a wolfSSL TLS 1.3 client that never touches a
 * socket. The worker's io_uring moves ciphertext; this module turns it into
 * plaintext and back over memory buffers.
 *
 * DESIGN: wolfSSL reads through a callback from the chunk the worker has
 * just received (rr_bench_tls_input: the provided receive buffer, used in
 * place) and writes through a callback that appends to a pending buffer. A
 * connection never has two sends in flight, so ciphertext lives in two
 * buffers: `pend`, which wolfSSL may append to (and grow) at any time, and
 * `fly`, which the kernel is reading; rr_bench_tls_take swaps them when no
 * send is in flight, so a buffer is never reallocated under the kernel.
 */
#ifndef RR_BENCH_TLS_H
#define RR_BENCH_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct rr_bench_tls_ctx;
struct rr_bench_tls;

/* A client context: TLS 1.3 only. ca_file NULL: no certificate check
 * (--insecure); otherwise the server's chain must verify against it (the
 * host name is not checked: the bench connects to IP literals). Returns 0 or
 * -errno with a reason in err. */
int rr_bench_tls_ctx_new(struct rr_bench_tls_ctx **out, const char *ca_file, char *err,
			 size_t errlen);
void rr_bench_tls_ctx_free(struct rr_bench_tls_ctx *ctx);

/* One connection's TLS state, NULL when out of memory. */
struct rr_bench_tls *rr_bench_tls_new(struct rr_bench_tls_ctx *ctx);
void rr_bench_tls_free(struct rr_bench_tls *t);

/* The ciphertext just received; wolfSSL consumes it during the next
 * connect/read calls. Every byte is consumed by the time read returns 0. */
void rr_bench_tls_input(struct rr_bench_tls *t, const uint8_t *p, size_t n);

/* Advance the handshake: 1 done, 0 more input needed, -EPROTO failed. */
int rr_bench_tls_connect(struct rr_bench_tls *t);

/* Plaintext into buf: > 0 bytes, 0 when the input is used up, -EPIPE when
 * the server closed the TLS session (close_notify), -EPROTO on an error. */
ssize_t rr_bench_tls_read(struct rr_bench_tls *t, uint8_t *buf, size_t cap);

/* Encrypt n bytes into the pending ciphertext: 0, -ENOMEM or -EPROTO. */
int rr_bench_tls_write(struct rr_bench_tls *t, const uint8_t *p, size_t n);

/* Ciphertext to send now: moves the pending bytes in flight and returns
 * them, or NULL when there are none or a send is already in flight. */
const uint8_t *rr_bench_tls_take(struct rr_bench_tls *t, size_t *len);
/* The bytes in flight have all been sent. */
void rr_bench_tls_sent(struct rr_bench_tls *t);
/* The bytes in flight (for a send the socket took only part of). */
const uint8_t *rr_bench_tls_inflight(const struct rr_bench_tls *t);

/* A reason for the last failure, for the report. */
const char *rr_bench_tls_error(const struct rr_bench_tls *t);

#endif
