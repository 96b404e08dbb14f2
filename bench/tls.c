/*
 * wolfSSL client over memory buffers for ringroom-bench: see tls.h.
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

struct rr_bench_tls_ctx {
	WOLFSSL_CTX *w;
};

struct rr_bench_tls {
	WOLFSSL *ssl;
	const uint8_t *in; /* received ciphertext not yet consumed */
	size_t in_len;
	uint8_t *pend, *fly; /* see tls.h */
	size_t pend_len, pend_cap, fly_len, fly_cap;
	bool nomem;
	int last_err;
};

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct rr_bench_tls *t = ctx;
	(void)ssl;
	if (t->in_len == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	size_t n = t->in_len < (size_t)sz ? t->in_len : (size_t)sz;
	memcpy(buf, t->in, n);
	t->in += n;
	t->in_len -= n;
	return (int)n;
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct rr_bench_tls *t = ctx;
	(void)ssl;
	if (sz <= 0)
		return 0;
	size_t need = t->pend_len + (size_t)sz;
	if (need > t->pend_cap) {
		size_t cap = t->pend_cap ? t->pend_cap : 4096;
		while (cap < need)
			cap *= 2;
		uint8_t *p = realloc(t->pend, cap);
		if (!p) {
			t->nomem = true;
			return WOLFSSL_CBIO_ERR_GENERAL;
		}
		t->pend = p;
		t->pend_cap = cap;
	}
	memcpy(t->pend + t->pend_len, buf, (size_t)sz);
	t->pend_len = need;
	return sz; /* never blocks: the worker sends when it can */
}

static int once_done;

int rr_bench_tls_ctx_new(struct rr_bench_tls_ctx **out, const char *ca_file, char *err,
			 size_t errlen)
{
	if (!once_done) {
		if (wolfSSL_Init() != WOLFSSL_SUCCESS) {
			snprintf(err, errlen, "wolfSSL_Init failed");
			return -ENOMEM;
		}
		once_done = 1;
	}
	struct rr_bench_tls_ctx *c = calloc(1, sizeof(*c));
	if (!c || !(c->w = wolfSSL_CTX_new(wolfTLSv1_3_client_method()))) {
		free(c);
		snprintf(err, errlen, "out of memory for the TLS context");
		return -ENOMEM;
	}
	if (ca_file) {
		if (wolfSSL_CTX_load_verify_locations(c->w, ca_file, NULL) != WOLFSSL_SUCCESS) {
			snprintf(err, errlen, "cannot load CA file %s", ca_file);
			rr_bench_tls_ctx_free(c);
			return -EINVAL;
		}
		wolfSSL_CTX_set_verify(c->w, WOLFSSL_VERIFY_PEER, NULL);
	} else {
		wolfSSL_CTX_set_verify(c->w, WOLFSSL_VERIFY_NONE, NULL);
	}
	/*
	 * RINGROOM_BENCH_TLS_CIPHERS (wolfSSL names, ':'-separated) narrows what
	 * the client offers, to measure one suite whatever the server prefers,
	 * e.g. TLS13-AES128-GCM-SHA256 or TLS13-CHACHA20-POLY1305-SHA256.
	 */
	const char *ciphers = getenv("RINGROOM_BENCH_TLS_CIPHERS");
	if (ciphers && *ciphers && wolfSSL_CTX_set_cipher_list(c->w, ciphers) != WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "RINGROOM_BENCH_TLS_CIPHERS: no usable suite in %s", ciphers);
		rr_bench_tls_ctx_free(c);
		return -EINVAL;
	}
	wolfSSL_CTX_SetIORecv(c->w, io_recv);
	wolfSSL_CTX_SetIOSend(c->w, io_send);
	*out = c;
	return 0;
}

void rr_bench_tls_ctx_free(struct rr_bench_tls_ctx *ctx)
{
	if (!ctx)
		return;
	wolfSSL_CTX_free(ctx->w);
	free(ctx);
}

struct rr_bench_tls *rr_bench_tls_new(struct rr_bench_tls_ctx *ctx)
{
	struct rr_bench_tls *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ssl = wolfSSL_new(ctx->w);
	if (!t->ssl) {
		free(t);
		return NULL;
	}
	wolfSSL_SetIOReadCtx(t->ssl, t);
	wolfSSL_SetIOWriteCtx(t->ssl, t);
	return t;
}

void rr_bench_tls_free(struct rr_bench_tls *t)
{
	if (!t)
		return;
	wolfSSL_free(t->ssl);
	free(t->pend);
	free(t->fly);
	free(t);
}

void rr_bench_tls_input(struct rr_bench_tls *t, const uint8_t *p, size_t n)
{
	t->in = p;
	t->in_len = n;
}

int rr_bench_tls_connect(struct rr_bench_tls *t)
{
	int r = wolfSSL_connect(t->ssl);
	if (r == WOLFSSL_SUCCESS)
		return 1;
	int e = wolfSSL_get_error(t->ssl, r);
	if ((e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) && !t->nomem)
		return 0;
	t->last_err = e;
	return -EPROTO;
}

ssize_t rr_bench_tls_read(struct rr_bench_tls *t, uint8_t *buf, size_t cap)
{
	int r = wolfSSL_read(t->ssl, buf, (int)cap);
	if (r > 0)
		return r;
	int e = wolfSSL_get_error(t->ssl, r);
	if ((e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) && !t->nomem)
		return 0;
	t->last_err = e;
	return e == WOLFSSL_ERROR_ZERO_RETURN ? -EPIPE : -EPROTO;
}

int rr_bench_tls_write(struct rr_bench_tls *t, const uint8_t *p, size_t n)
{
	/* the send callback never blocks, so one call takes everything */
	int r = wolfSSL_write(t->ssl, p, (int)n);
	if (r == (int)n)
		return 0;
	t->last_err = wolfSSL_get_error(t->ssl, r);
	return t->nomem ? -ENOMEM : -EPROTO;
}

const uint8_t *rr_bench_tls_take(struct rr_bench_tls *t, size_t *len)
{
	if (t->fly_len || !t->pend_len)
		return NULL;
	uint8_t *b = t->fly;
	size_t cap = t->fly_cap;
	t->fly = t->pend;
	t->fly_cap = t->pend_cap;
	t->fly_len = t->pend_len;
	t->pend = b;
	t->pend_cap = cap;
	t->pend_len = 0;
	*len = t->fly_len;
	return t->fly;
}

void rr_bench_tls_sent(struct rr_bench_tls *t)
{
	t->fly_len = 0;
}

const uint8_t *rr_bench_tls_inflight(const struct rr_bench_tls *t)
{
	return t->fly;
}

const char *rr_bench_tls_error(const struct rr_bench_tls *t)
{
	static char buf[96];
	if (t->nomem)
		return "out of memory";
	wolfSSL_ERR_error_string_n((unsigned long)t->last_err, buf, sizeof(buf));
	return buf;
}
