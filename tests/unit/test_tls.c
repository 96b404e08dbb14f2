/*
 * Unit test of src/tls: a real wolfSSL client, also on memory buffers, talks
 * to the server object with no socket anywhere. Certificates come from
 * tls_test.sh (paths in RR_TLS_* environment variables).
 *
 * Covers: TLS 1.3 and 1.2 handshakes, refusal of 1.1 and of non-AEAD
 * suites, ALPN (http/1.1 chosen, refused when absent from the client's list,
 * fine when the client sends none), SNI, data both ways from 0 to 1 MiB,
 * record coalescing of many small writes, garbage instead of a ClientHello,
 * a handshake fed one byte at a time, bad certificate/key files, ticket
 * resumption (and its refusal under another context's keys), close_notify
 * both ways, a tampered record, moving a connection to another thread, and
 * the memory an idle connection keeps after its handshake.
 */
/* the .c itself, to look inside the context (style.md: tests may) */
#include "tls/tls.c"

#include <wolfssl/wolfcrypt/chacha20_poly1305.h> /* WOLFSSL_TICKET_KEYS_SZ */

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "check.h"

/* ---- counting allocator for wolfSSL (set before anything allocates) ---- */

static size_t wolf_live_bytes;
static pthread_mutex_t wolf_mu = PTHREAD_MUTEX_INITIALIZER;

struct alloc_hdr {
	size_t size;
	size_t pad; /* keep 16-byte alignment */
};

static void *count_malloc(size_t n)
{
	struct alloc_hdr *h = malloc(sizeof(*h) + n);

	if (!h)
		return NULL;
	h->size = n;
	pthread_mutex_lock(&wolf_mu);
	wolf_live_bytes += n;
	pthread_mutex_unlock(&wolf_mu);
	return h + 1;
}

static void count_free(void *p)
{
	struct alloc_hdr *h;

	if (!p)
		return;
	h = (struct alloc_hdr *)p - 1;
	pthread_mutex_lock(&wolf_mu);
	wolf_live_bytes -= h->size;
	pthread_mutex_unlock(&wolf_mu);
	free(h);
}

static void *count_realloc(void *p, size_t n)
{
	struct alloc_hdr *h, *g;
	size_t old;

	if (!p)
		return count_malloc(n);
	h = (struct alloc_hdr *)p - 1;
	old = h->size;
	g = realloc(h, sizeof(*g) + n);
	if (!g)
		return NULL;
	g->size = n;
	pthread_mutex_lock(&wolf_mu);
	wolf_live_bytes = wolf_live_bytes - old + n;
	pthread_mutex_unlock(&wolf_mu);
	return g + 1;
}

static size_t wolf_live(void)
{
	size_t v;

	pthread_mutex_lock(&wolf_mu);
	v = wolf_live_bytes;
	pthread_mutex_unlock(&wolf_mu);
	return v;
}

/* ---- files -------------------------------------------------------------- */

struct blob {
	char *p;
	size_t n;
};

static struct blob slurp_env(const char *var)
{
	struct blob b = {NULL, 0};
	const char *path = getenv(var);
	FILE *f;
	long n;

	if (!path) {
		fprintf(stderr, "%s not set: run through tls_test.sh\n", var);
		exit(1);
	}
	f = fopen(path, "rb");
	if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		fprintf(stderr, "cannot read %s\n", path);
		exit(1);
	}
	b.p = malloc((size_t)n + 1);
	if (!b.p || fread(b.p, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "cannot read %s\n", path);
		exit(1);
	}
	b.n = (size_t)n;
	b.p[n] = 0;
	fclose(f);
	return b;
}

static struct blob ca, ec_cert, ec_key, rsa_cert, rsa_key, other_key;

/* ---- a wolfSSL client over memory buffers -------------------------------- */

struct buf {
	unsigned char *p;
	size_t head, len, cap;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap - b->len < n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			abort();
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static size_t buf_avail(const struct buf *b)
{
	return b->len - b->head;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

struct client {
	WOLFSSL *ssl;
	struct buf in;	/* from the server */
	struct buf out; /* to the server */
};

static int cli_recv(WOLFSSL *ssl, char *p, int sz, void *arg)
{
	struct client *c = arg;
	size_t n = buf_avail(&c->in);

	(void)ssl;
	if (n == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	if (n > (size_t)sz)
		n = (size_t)sz;
	memcpy(p, c->in.p + c->in.head, n);
	c->in.head += n;
	return (int)n;
}

static int cli_send(WOLFSSL *ssl, char *p, int sz, void *arg)
{
	struct client *c = arg;

	(void)ssl;
	buf_put(&c->out, p, (size_t)sz);
	return sz;
}

enum cli_ver { CLI_ANY, CLI_12, CLI_11 };

static WOLFSSL_CTX *cli_ctx_new(enum cli_ver v)
{
#ifdef NO_OLD_TLS
	/* the bundled build has no TLS 1.0/1.1 code: test_refuse_11 sends raw bytes */
	WOLFSSL_METHOD *m = v == CLI_12 ? wolfTLSv1_2_client_method() : wolfSSLv23_client_method();
#else
	WOLFSSL_METHOD *m = v == CLI_12	  ? wolfTLSv1_2_client_method()
			    : v == CLI_11 ? wolfTLSv1_1_client_method()
					  : wolfSSLv23_client_method();
#endif
	WOLFSSL_CTX *w = wolfSSL_CTX_new(m);

	if (!w)
		abort();
	if (wolfSSL_CTX_load_verify_buffer(w, (const unsigned char *)ca.p, (long)ca.n,
					   WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
		abort();
	wolfSSL_CTX_set_verify(w, WOLFSSL_VERIFY_PEER, NULL);
	wolfSSL_CTX_SetIORecv(w, cli_recv);
	wolfSSL_CTX_SetIOSend(w, cli_send);
	return w;
}

static struct client *cli_new(WOLFSSL_CTX *w)
{
	struct client *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	c->ssl = wolfSSL_new(w);
	if (!c->ssl)
		abort();
	wolfSSL_SetIOReadCtx(c->ssl, c);
	wolfSSL_SetIOWriteCtx(c->ssl, c);
	return c;
}

static void cli_free(struct client *c)
{
	wolfSSL_free(c->ssl);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

/* Move everything the server has pending to the client's input. */
static size_t srv_to_cli(struct rr_tls *s, struct client *c)
{
	size_t moved = 0;
	int guard = 0;

	while (rr_tls_pending_bytes(s) > 0 && guard++ < 1000) {
		const void *p;
		size_t n = rr_tls_pending(s, &p);

		buf_put(&c->in, p, n);
		rr_tls_consume(s, n);
		moved += n;
	}
	return moved;
}

/*
 * Drive both handshakes to the end, delivering client bytes to the server
 * `step` bytes at a time. Returns the server's last handshake result, or
 * -1000 if the client failed first, -3000 if feeding failed, -2000 if
 * nothing moved and neither is done.
 */
static int pump_handshake(struct client *c, struct rr_tls *s, size_t step)
{
	int sret = -EAGAIN;

	for (int round = 0; round < 64; round++) {
		int cr = wolfSSL_connect(c->ssl);
		size_t moved = 0;

		if (cr != WOLFSSL_SUCCESS) {
			int e = wolfSSL_get_error(c->ssl, cr);

			if (e != WOLFSSL_ERROR_WANT_READ) {
				/* an alert from the client may explain a server failure */
				while (buf_avail(&c->out)) {
					size_t n = buf_avail(&c->out);

					rr_tls_feed(s, c->out.p + c->out.head, n);
					c->out.head += n;
					sret = rr_tls_handshake(s);
				}
				return sret == -EPROTO ? sret : -1000;
			}
		}
		do {
			size_t n = buf_avail(&c->out);

			if (n > step)
				n = step;
			if (n > 0) {
				/* no CHECK here: threads run this too */
				if (rr_tls_feed(s, c->out.p + c->out.head, n) != 0)
					return -3000;
				c->out.head += n;
				moved += n;
			}
			sret = rr_tls_handshake(s);
			/* byte by byte, only a flight's last byte may finish it */
			if (step == 1 && buf_avail(&c->out) > 0)
				CHECK(sret == -EAGAIN);
		} while (buf_avail(&c->out) > 0 && sret == -EAGAIN);
		moved += srv_to_cli(s, c);
		if (sret != 0 && sret != -EAGAIN) {
			/* let the client see the alert */
			wolfSSL_connect(c->ssl);
			return sret;
		}
		if (cr == WOLFSSL_SUCCESS && sret == 0 && moved == 0)
			return 0;
		if (moved == 0 && cr != WOLFSSL_SUCCESS && buf_avail(&c->in) == 0)
			return -2000;
	}
	return -2000;
}

/* Let the client process what the server sent (1.3 session tickets). */
static void cli_drain(struct client *c)
{
	unsigned char tmp[4096];
	int guard = 0;

	/* until WANT_READ: wolfSSL may hold decrypted bytes beyond c->in */
	while (guard++ < 10000)
		if (wolfSSL_read(c->ssl, tmp, sizeof(tmp)) <= 0)
			break;
}

static struct rr_tls_ctx *ctx_ec, *ctx_rsa;

struct pair {
	struct client *c;
	struct rr_tls *s;
};

static struct pair connect_pair(struct rr_tls_ctx *ctx, WOLFSSL_CTX *cw, size_t step, int *ret)
{
	struct pair p;

	p.c = cli_new(cw);
	p.s = rr_tls_new(ctx);
	CHECK(p.s != NULL);
	*ret = pump_handshake(p.c, p.s, step);
	return p;
}

static void pair_free(struct pair *p)
{
	cli_free(p->c);
	rr_tls_free(p->s);
}

/* ---- data ---------------------------------------------------------------- */

static unsigned char *pattern(size_t n, unsigned seed)
{
	unsigned char *p = malloc(n ? n : 1);

	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)((i * 131 + seed * 7 + (i >> 9)) & 0xff);
	return p;
}

/* Server → client: write n bytes as `pieces` iovecs, check the client reads them. */
static void send_s2c(struct pair *p, size_t n, int pieces)
{
	unsigned char *src = pattern(n, 3), *dst = malloc(n + 1);
	struct iovec iov[64];
	size_t got = 0, off = 0;
	int k;

	if (pieces > 64)
		pieces = 64;
	for (k = 0; k < pieces; k++) {
		size_t len = k == pieces - 1 ? n - off : n / (size_t)pieces;

		iov[k].iov_base = src + off;
		iov[k].iov_len = len;
		off += len;
	}
	CHECK_EQ(rr_tls_write_iov(p->s, iov, pieces), (ssize_t)n);
	if (n == 0)
		CHECK_EQ(rr_tls_pending_bytes(p->s), 0);
	srv_to_cli(p->s, p->c);
	for (int guard = 0; got < n && guard < 10000; guard++) {
		int r = wolfSSL_read(p->c->ssl, dst + got, (int)(n - got));

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	CHECK_EQ(got, n);
	CHECK(n == 0 || memcmp(src, dst, n) == 0);
	free(src);
	free(dst);
}

/* Client → server: the client writes n bytes; feed them in `step` pieces. */
static void send_c2s(struct pair *p, size_t n, size_t step)
{
	unsigned char *src = pattern(n, 5), *dst = malloc(n + 1);
	size_t got = 0, sent = 0;
	int guard = 0;

	/* wolfSSL's client writes at most what fits one call; loop */
	while (sent < n && guard++ < 10000) {
		int w = wolfSSL_write(p->c->ssl, src + sent, (int)(n - sent));

		if (w <= 0)
			break;
		sent += (size_t)w;
	}
	CHECK_EQ(sent, n);
	guard = 0;
	while (buf_avail(&p->c->out) > 0 && guard++ < 1000000) {
		size_t k = buf_avail(&p->c->out);

		if (k > step)
			k = step;
		CHECK_EQ(rr_tls_feed(p->s, p->c->out.p + p->c->out.head, k), 0);
		p->c->out.head += k;
		for (int g = 0; g < 1000; g++) {
			ssize_t r = rr_tls_read(p->s, dst + got, n - got > 0 ? n - got : 1);

			if (r <= 0) {
				CHECK_EQ(r, 0);
				break;
			}
			got += (size_t)r;
		}
	}
	CHECK_EQ(got, n);
	CHECK(n == 0 || memcmp(src, dst, n) == 0);
	CHECK_EQ(rr_tls_buffered(p->s), 0);
	free(src);
	free(dst);
}

/* Count TLS records in a ciphertext byte stream. */
static int count_records(const unsigned char *p, size_t n)
{
	int recs = 0;
	size_t off = 0;

	while (off + 5 <= n) {
		size_t len = ((size_t)p[off + 3] << 8) | p[off + 4];

		off += 5 + len;
		recs++;
	}
	return off == n ? recs : -1;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_ctx_errors(void)
{
	struct rr_tls_ctx *c = (struct rr_tls_ctx *)0x1;
	char err[256];
	const char junk[] = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
			    "-----END CERTIFICATE-----\n";

	CHECK_EQ(
	    rr_tls_ctx_new(&c, ec_cert.p, ec_cert.n, other_key.p, other_key.n, err, sizeof(err)),
	    -EINVAL);
	CHECK(strstr(err, "match") != NULL);
	printf("mismatched key: %s\n", err);
	CHECK(c == (struct rr_tls_ctx *)0x1);

	CHECK_EQ(rr_tls_ctx_new(&c, junk, sizeof(junk) - 1, ec_key.p, ec_key.n, err, sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "certificate") != NULL);
	printf("garbage certificate: %s\n", err);

	CHECK_EQ(rr_tls_ctx_new(&c, ec_cert.p, ec_cert.n, ec_cert.p, ec_cert.n, err, sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "key") != NULL);
	printf("certificate as key: %s\n", err);

	CHECK_EQ(rr_tls_ctx_new(&c, rsa_cert.p, rsa_cert.n, ec_key.p, ec_key.n, err, sizeof(err)),
		 -EINVAL);
	CHECK_EQ(rr_tls_ctx_new(&c, ec_cert.p, 0, ec_key.p, ec_key.n, err, sizeof(err)), -EINVAL);
	CHECK(c == (struct rr_tls_ctx *)0x1);
}

static void test_handshake_13(WOLFSSL_CTX *cw)
{
	int ret;
	struct pair p = connect_pair(ctx_ec, cw, SIZE_MAX, &ret);

	CHECK_EQ(ret, 0);
	CHECK(rr_tls_handshake_done(p.s));
	CHECK_EQ(rr_tls_handshake(p.s), 0);
	CHECK(strcmp(rr_tls_version(p.s), "TLSv1.3") == 0);
	CHECK(strcmp(wolfSSL_get_version(p.c->ssl), "TLSv1.3") == 0);
	CHECK(!rr_tls_resumed(p.s));
	printf("1.3: %s %s\n", rr_tls_version(p.s), rr_tls_cipher(p.s));
	CHECK(strstr(rr_tls_cipher(p.s), "GCM") || strstr(rr_tls_cipher(p.s), "CHACHA"));
	CHECK(rr_tls_alpn(p.s, NULL) == NULL); /* client offered none: still served */
	send_s2c(&p, 5, 1);
	send_c2s(&p, 5, SIZE_MAX);
	pair_free(&p);
}

static void test_handshake_12(void)
{
	WOLFSSL_CTX *cw = cli_ctx_new(CLI_12);
	int ret;
	struct pair p = connect_pair(ctx_rsa, cw, SIZE_MAX, &ret);

	CHECK_EQ(ret, 0);
	CHECK(strcmp(rr_tls_version(p.s), "TLSv1.2") == 0);
	printf("1.2 (RSA cert): %s %s\n", rr_tls_version(p.s), rr_tls_cipher(p.s));
	CHECK(strncmp(rr_tls_cipher(p.s), "ECDHE-RSA-", 10) == 0);
	send_s2c(&p, 70000, 3);
	send_c2s(&p, 70000, 1000);
	pair_free(&p);

	/* same with the EC certificate */
	p = connect_pair(ctx_ec, cw, SIZE_MAX, &ret);
	CHECK_EQ(ret, 0);
	printf("1.2 (EC cert): %s %s\n", rr_tls_version(p.s), rr_tls_cipher(p.s));
	CHECK(strncmp(rr_tls_cipher(p.s), "ECDHE-ECDSA-", 12) == 0);
	pair_free(&p);

	/* a 1.2 client that only offers CBC or static-RSA suites is refused */
	CHECK_EQ(wolfSSL_CTX_set_cipher_list(cw, "ECDHE-ECDSA-AES128-SHA256:AES128-GCM-SHA256:"
						 "ECDHE-ECDSA-AES128-SHA"),
		 WOLFSSL_SUCCESS);
	p = connect_pair(ctx_ec, cw, SIZE_MAX, &ret);
	CHECK_EQ(ret, -EPROTO);
	printf("1.2 CBC/static-RSA only client: %d %s\n", ret, rr_tls_error(p.s));
	pair_free(&p);
	wolfSSL_CTX_free(cw);
}

#ifdef NO_OLD_TLS
/*
 * The library cannot speak 1.1 (bundled build), so hand the server a
 * TLS 1.1 ClientHello as bytes: legacy_version 3.2, no supported_versions,
 * one suite (ECDHE-RSA-AES128-SHA), no extensions.
 */
static void test_refuse_11(void)
{
	static const unsigned char hello[] = {
	    0x16, 0x03, 0x01, 0x00, 0x2d,	/* record: handshake, 45 B */
	    0x01, 0x00, 0x00, 0x29, 0x03, 0x02, /* ClientHello, 41 B, TLS 1.1 */
	    1,	  2,	3,    4,    5,	  6,	7,  8,	9,  10, 11, 12, 13, 14, 15, 16, /* random */
	    17,	  18,	19,   20,   21,	  22,	23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
	    0x00,		    /* no session id */
	    0x00, 0x02, 0xc0, 0x13, /* one cipher suite */
	    0x01, 0x00,		    /* null compression */
	};
	struct rr_tls *s = rr_tls_new(ctx_ec);
	int ret;

	CHECK(s != NULL);
	CHECK_EQ(rr_tls_feed(s, hello, sizeof(hello)), 0);
	ret = rr_tls_handshake(s);
	CHECK_EQ(ret, -EPROTO);
	CHECK(!rr_tls_handshake_done(s));
	CHECK(strcmp(rr_tls_error(s), "no error") != 0);
	printf("1.1 ClientHello (raw, library without 1.1): %d %s\n", ret, rr_tls_error(s));
	rr_tls_free(s);
}
#else
static void test_refuse_11(void)
{
	WOLFSSL_CTX *cw = cli_ctx_new(CLI_11);
	int ret;
	struct pair p = connect_pair(ctx_ec, cw, SIZE_MAX, &ret);

	CHECK_EQ(ret, -EPROTO);
	CHECK(!rr_tls_handshake_done(p.s));
	CHECK(strcmp(rr_tls_error(p.s), "no error") != 0);
	printf("1.1 client: %d %s\n", ret, rr_tls_error(p.s));
	/* the alert went back to the client, which failed */
	CHECK(wolfSSL_connect(p.c->ssl) != WOLFSSL_SUCCESS);
	pair_free(&p);
	wolfSSL_CTX_free(cw);
}
#endif

static void test_alpn_sni(WOLFSSL_CTX *cw)
{
	char both[] = "h2,http/1.1", h2[] = "h2";
	struct pair p;
	const char *name;
	size_t len;
	char *cname = NULL;
	unsigned short clen = 0;
	int ret;

	p.c = cli_new(cw);
	p.s = rr_tls_new(ctx_ec);
	CHECK_EQ(wolfSSL_UseALPN(p.c->ssl, both, sizeof(both) - 1, WOLFSSL_ALPN_FAILED_ON_MISMATCH),
		 WOLFSSL_SUCCESS);
	CHECK_EQ(wolfSSL_UseSNI(p.c->ssl, WOLFSSL_SNI_HOST_NAME, "localhost", 9), WOLFSSL_SUCCESS);
	CHECK_EQ(wolfSSL_check_domain_name(p.c->ssl, "localhost"), WOLFSSL_SUCCESS);
	CHECK_EQ(pump_handshake(p.c, p.s, SIZE_MAX), 0);
	name = rr_tls_alpn(p.s, &len);
	CHECK(name && len == 8 && memcmp(name, "http/1.1", 8) == 0);
	CHECK_EQ(wolfSSL_ALPN_GetProtocol(p.c->ssl, &cname, &clen), WOLFSSL_SUCCESS);
	CHECK(cname && clen == 8 && memcmp(cname, "http/1.1", 8) == 0);
	name = rr_tls_sni(p.s, &len);
	CHECK(name && len == 9 && memcmp(name, "localhost", 9) == 0);
	pair_free(&p);

	/* any SNI name is accepted (the client is not told to check it) */
	p.c = cli_new(cw);
	p.s = rr_tls_new(ctx_ec);
	CHECK_EQ(wolfSSL_UseSNI(p.c->ssl, WOLFSSL_SNI_HOST_NAME, "other.example", 13),
		 WOLFSSL_SUCCESS);
	CHECK_EQ(pump_handshake(p.c, p.s, SIZE_MAX), 0);
	name = rr_tls_sni(p.s, &len);
	CHECK(name && len == 13 && memcmp(name, "other.example", 13) == 0);
	pair_free(&p);

	/* ALPN offered without http/1.1: refused (RFC 7301 3.2) */
	p.c = cli_new(cw);
	p.s = rr_tls_new(ctx_ec);
	CHECK_EQ(wolfSSL_UseALPN(p.c->ssl, h2, sizeof(h2) - 1, WOLFSSL_ALPN_CONTINUE_ON_MISMATCH),
		 WOLFSSL_SUCCESS);
	ret = pump_handshake(p.c, p.s, SIZE_MAX);
	CHECK_EQ(ret, -EPROTO);
	printf("ALPN h2 only: %d %s\n", ret, rr_tls_error(p.s));
	CHECK(wolfSSL_connect(p.c->ssl) != WOLFSSL_SUCCESS);
	pair_free(&p);
}

static void test_sizes(WOLFSSL_CTX *cw)
{
	static const size_t sizes[] = {0,     1,     2,	    100,    1000,   16383,  16384,
				       16385, 32768, 65536, 100000, 262144, 1048576};
	int ret;
	struct pair p = connect_pair(ctx_ec, cw, SIZE_MAX, &ret);

	CHECK_EQ(ret, 0);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		send_s2c(&p, sizes[i], 1);
		send_s2c(&p, sizes[i], 7);
		send_c2s(&p, sizes[i], SIZE_MAX > 60000 ? 60000 : SIZE_MAX);
		send_c2s(&p, sizes[i], 4093);
	}
	/* after all that, nothing stays buffered in the module */
	CHECK_EQ(rr_tls_buffered(p.s), 0);
	CHECK_EQ(rr_tls_pending_bytes(p.s), 0);
	pair_free(&p);
}

static void test_coalesce(WOLFSSL_CTX *cw)
{
	unsigned char frames[100][100];
	struct iovec iov[100], out[4];
	const void *ptr;
	size_t n;
	int ret, recs;
	struct pair p = connect_pair(ctx_ec, cw, SIZE_MAX, &ret);

	CHECK_EQ(ret, 0);
	for (int i = 0; i < 100; i++) {
		memset(frames[i], 'a' + i % 26, sizeof(frames[i]));
		iov[i].iov_base = frames[i];
		iov[i].iov_len = sizeof(frames[i]);
	}
	CHECK_EQ(rr_tls_pending_bytes(p.s), 0);
	CHECK_EQ(rr_tls_write_iov(p.s, iov, 100), 10000);
	n = rr_tls_pending(p.s, &ptr);
	CHECK_EQ(n, rr_tls_pending_bytes(p.s)); /* one chunk: one send */
	CHECK_EQ(rr_tls_pending_iov(p.s, out, 4), 1);
	recs = count_records(ptr, n);
	printf("100 x 100 B: %zu bytes of ciphertext in %d record(s)\n", n, recs);
	CHECK_EQ(recs, 1);
	CHECK(n < 100 * 100 + 3 * 30);

	/* 3 x 10000 B: two full-or-partial records, not three */
	unsigned char *big = pattern(30000, 9);
	struct iovec iov3[3] = {{big, 10000}, {big + 10000, 10000}, {big + 20000, 10000}};

	srv_to_cli(p.s, p.c);
	cli_drain(p.c);
	p.c->in.head = p.c->in.len = 0;
	CHECK_EQ(rr_tls_write_iov(p.s, iov3, 3), 30000);
	n = rr_tls_pending(p.s, &ptr);
	recs = count_records(ptr, n);
	printf("3 x 10000 B: %zu bytes in %d records\n", n, recs);
	CHECK_EQ(recs, 2);
	CHECK(n < 30000 + 2 * 30);

	/*
	 * A send is "in flight" on the exposed bytes; more writes must not move
	 * them. Keep a copy, write a lot more, compare.
	 */
	unsigned char *copy = malloc(n);
	const void *again;

	memcpy(copy, ptr, n);
	for (int i = 0; i < 50; i++)
		CHECK_EQ(rr_tls_write_iov(p.s, iov, 100), 10000);
	CHECK(memcmp(copy, ptr, n) == 0);
	CHECK_EQ(rr_tls_pending(p.s, &again), n);
	CHECK(again == ptr);
	/* partial consume, then the client gets the whole stream intact */
	size_t total = rr_tls_pending_bytes(p.s);
	CHECK(total > n);
	free(copy);
	buf_put(&p.c->in, ptr, n / 2);
	rr_tls_consume(p.s, n / 2);
	srv_to_cli(p.s, p.c);
	unsigned char *dst = malloc(30000 + 500000);
	size_t got = 0;
	for (int g = 0; g < 10000; g++) {
		int r = wolfSSL_read(p.c->ssl, dst + got, (int)(530000 - got));

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	CHECK_EQ(got, 30000 + 500000);
	CHECK(memcmp(dst, big, 30000) == 0);
	CHECK(memcmp(dst + 30000, frames[0], 100) == 0);
	free(dst);
	free(big);
	pair_free(&p);
}

static void test_garbage(void)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
	struct rr_tls *s = rr_tls_new(ctx_ec);
	int ret;

	CHECK_EQ(rr_tls_feed(s, req, sizeof(req) - 1), 0);
	ret = rr_tls_handshake(s);
	CHECK_EQ(ret, -EPROTO);
	CHECK(strcmp(rr_tls_error(s), "no error") != 0 && rr_tls_error(s)[0]);
	printf("plain HTTP instead of ClientHello: %s (alert bytes pending: %zu)\n",
	       rr_tls_error(s), rr_tls_pending_bytes(s));
	CHECK_EQ(rr_tls_handshake(s), -EPROTO); /* stays failed */
	rr_tls_free(s);

	/* a record header announcing a handshake, then nonsense */
	static const unsigned char bad[] = {0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00,
					    0x00, 0x04, 0xde, 0xad, 0xbe, 0xef};
	s = rr_tls_new(ctx_ec);
	CHECK_EQ(rr_tls_feed(s, bad, sizeof(bad)), 0);
	ret = rr_tls_handshake(s);
	CHECK_EQ(ret, -EPROTO);
	printf("malformed ClientHello: %s\n", rr_tls_error(s));
	rr_tls_free(s);

	/* a lone partial header is just "need more" */
	s = rr_tls_new(ctx_ec);
	CHECK_EQ(rr_tls_feed(s, bad, 3), 0);
	CHECK_EQ(rr_tls_handshake(s), -EAGAIN);
	CHECK_EQ(rr_tls_feed(s, NULL, 0), 0);
	rr_tls_free(s);

	/* feeding past the cap is refused, not buffered */
	s = rr_tls_new(ctx_ec);
	unsigned char *lots = calloc(1, RR_TLS_IN_MAX + 1);
	CHECK_EQ(rr_tls_feed(s, lots, RR_TLS_IN_MAX + 1), -ENOBUFS);
	CHECK_EQ(rr_tls_feed(s, lots, RR_TLS_IN_MAX), 0);
	CHECK_EQ(rr_tls_feed(s, lots, 1), -ENOBUFS);
	CHECK_EQ(rr_tls_buffered(s), RR_TLS_IN_MAX);
	free(lots);
	rr_tls_free(s);
}

static void test_bytewise(WOLFSSL_CTX *cw)
{
	int ret;
	struct pair p = connect_pair(ctx_ec, cw, 1, &ret);

	CHECK_EQ(ret, 0);
	send_c2s(&p, 3000, 1);
	send_s2c(&p, 3000, 2);
	pair_free(&p);

	WOLFSSL_CTX *cw12 = cli_ctx_new(CLI_12);
	p = connect_pair(ctx_rsa, cw12, 1, &ret);
	CHECK_EQ(ret, 0);
	send_c2s(&p, 100, 1);
	pair_free(&p);
	wolfSSL_CTX_free(cw12);
}

static void resume_once(WOLFSSL_CTX *cw, bool ticket12, const char *label)
{
	WOLFSSL_SESSION *sess;
	int ret;
	struct pair p = connect_pair(ctx_ec, cw, SIZE_MAX, &ret);

	CHECK_EQ(ret, 0);
	cli_drain(p.c); /* 1.3: take the NewSessionTicket */
	sess = wolfSSL_get1_session(p.c->ssl);
	CHECK(sess != NULL);
	CHECK(!rr_tls_resumed(p.s));
	pair_free(&p);

	p.c = cli_new(cw);
	p.s = rr_tls_new(ctx_ec);
	CHECK_EQ(wolfSSL_set_session(p.c->ssl, sess), WOLFSSL_SUCCESS);
	CHECK_EQ(pump_handshake(p.c, p.s, SIZE_MAX), 0);
	CHECK_EQ(wolfSSL_session_reused(p.c->ssl), 1);
	CHECK(rr_tls_resumed(p.s));
	printf("%s resumption: client reused=%d server resumed=%d %s\n", label,
	       wolfSSL_session_reused(p.c->ssl), rr_tls_resumed(p.s), rr_tls_version(p.s));
	send_s2c(&p, 1000, 1);
	send_c2s(&p, 1000, SIZE_MAX);
	pair_free(&p);

	/*
	 * The same ticket against another context (a reload): full handshake.
	 * 1.3 only: wolfSSL 5.5.4's 1.2 client offers a ticket with an empty
	 * session ID and then takes any ServerHello for a resumption, so it
	 * chokes on the Certificate (OUT_OF_ORDER_E) — a client quirk; OpenSSL's
	 * s_client falls back to a full 1.2 handshake against this server.
	 */
	if (ticket12) {
		wolfSSL_SESSION_free(sess);
		return;
	}
	p.c = cli_new(cw);
	p.s = rr_tls_new(ctx_rsa);
	CHECK_EQ(wolfSSL_set_session(p.c->ssl, sess), WOLFSSL_SUCCESS);
	ret = pump_handshake(p.c, p.s, SIZE_MAX);
	CHECK_EQ(ret, 0);
	if (ret)
		printf("%s ticket under another context: %d %s\n", label, ret, rr_tls_error(p.s));
	CHECK_EQ(wolfSSL_session_reused(p.c->ssl), 0);
	CHECK(!rr_tls_resumed(p.s));
	send_c2s(&p, 10, SIZE_MAX);
	pair_free(&p);
	wolfSSL_SESSION_free(sess);
}

static void test_resumption(WOLFSSL_CTX *cw13)
{
	WOLFSSL_CTX *cw12 = cli_ctx_new(CLI_12);

	resume_once(cw13, false, "1.3");
	CHECK_EQ(wolfSSL_CTX_UseSessionTicket(cw12), WOLFSSL_SUCCESS);
	resume_once(cw12, true, "1.2 ticket");
	wolfSSL_CTX_free(cw12);
}

/*
 * Ticket keys: wolfSSL's built-in ticket callback keeps two keys per
 * context, each with an expiry time; a key encrypts new tickets until it
 * expires and is then replaced (rotation), old tickets fail over to a full
 * handshake. Check they exist once tickets were issued and that the
 * current one expires within the hour (wolfSSL's compiled-in key lifetime).
 * Layout (WOLFSSL_TICKET_KEYS_SZ = 88): name[16], key[2][32], expiry[2] as
 * big-endian seconds since the epoch.
 */
static void test_ticket_keys(void)
{
	unsigned char k[WOLFSSL_TICKET_KEYS_SZ];
	unsigned char zero[16] = {0};
	uint32_t exp0, exp1, now = (uint32_t)time(NULL);

	CHECK_EQ(wolfSSL_CTX_get_tlsext_ticket_keys(ctx_ec->w, k, sizeof(k)), WOLFSSL_SUCCESS);
	CHECK(memcmp(k, zero, sizeof(zero)) != 0); /* key name set: keys were made */
	/* stored big-endian */
	exp0 = (uint32_t)k[80] << 24 | (uint32_t)k[81] << 16 | (uint32_t)k[82] << 8 | k[83];
	exp1 = (uint32_t)k[84] << 24 | (uint32_t)k[85] << 16 | (uint32_t)k[86] << 8 | k[87];
	printf("ticket keys: key 0 expires in %ld s; key 1 %s\n", (long)exp0 - (long)now,
	       exp1 ? "in use too" : "not yet generated (made when key 0 expires)");
	CHECK(exp0 > now && exp0 - now <= 3600);
}

static void test_close_and_tamper(WOLFSSL_CTX *cw)
{
	int ret;
	unsigned char tmp[64];
	struct pair p = connect_pair(ctx_ec, cw, SIZE_MAX, &ret);

	/* client close_notify → -EPIPE */
	CHECK_EQ(ret, 0);
	send_c2s(&p, 10, SIZE_MAX);
	wolfSSL_shutdown(p.c->ssl);
	CHECK(buf_avail(&p.c->out) > 0);
	CHECK_EQ(rr_tls_feed(p.s, p.c->out.p + p.c->out.head, buf_avail(&p.c->out)), 0);
	p.c->out.head = p.c->out.len;
	CHECK_EQ(rr_tls_read(p.s, tmp, sizeof(tmp)), -EPIPE);
	pair_free(&p);

	/* server close_notify → the client sees a clean end */
	p = connect_pair(ctx_ec, cw, SIZE_MAX, &ret);
	CHECK_EQ(ret, 0);
	cli_drain(p.c);
	CHECK_EQ(rr_tls_shutdown(p.s), 0);
	CHECK(rr_tls_pending_bytes(p.s) > 0);
	CHECK_EQ(rr_tls_shutdown(p.s), 0);
	srv_to_cli(p.s, p.c);
	ret = wolfSSL_read(p.c->ssl, tmp, sizeof(tmp));
	CHECK(ret <= 0);
	CHECK_EQ(wolfSSL_get_error(p.c->ssl, ret), WOLFSSL_ERROR_ZERO_RETURN);
	struct iovec one = {tmp, 1};
	CHECK_EQ(rr_tls_write_iov(p.s, &one, 1), -EPIPE);
	pair_free(&p);

	/* one flipped bit in a record → -EPROTO (bad MAC), and it stays failed */
	p = connect_pair(ctx_ec, cw, SIZE_MAX, &ret);
	CHECK_EQ(ret, 0);
	CHECK_EQ(wolfSSL_write(p.c->ssl, "hello world", 11), 11);
	p.c->out.p[p.c->out.len - 3] ^= 0x10;
	CHECK_EQ(rr_tls_feed(p.s, p.c->out.p + p.c->out.head, buf_avail(&p.c->out)), 0);
	ret = (int)rr_tls_read(p.s, tmp, sizeof(tmp));
	CHECK_EQ(ret, -EPROTO);
	printf("tampered record: %s\n", rr_tls_error(p.s));
	CHECK_EQ(rr_tls_read(p.s, tmp, sizeof(tmp)), -EPROTO);
	CHECK_EQ(rr_tls_write_iov(p.s, &one, 1), -EPROTO);
	pair_free(&p);
}

/*
 * The client's Finished and its first application data arrive in one feed:
 * the handshake completes and the data is already decodable with no more
 * input (it sits inside wolfSSL, not in this module's buffer).
 */
static void test_finished_with_data(WOLFSSL_CTX *cw)
{
	struct client *c = cli_new(cw);
	struct rr_tls *s = rr_tls_new(ctx_ec);
	unsigned char buf[64];

	CHECK(wolfSSL_connect(c->ssl) != WOLFSSL_SUCCESS); /* ClientHello out */
	CHECK_EQ(rr_tls_feed(s, c->out.p + c->out.head, buf_avail(&c->out)), 0);
	c->out.head = c->out.len;
	CHECK_EQ(rr_tls_handshake(s), -EAGAIN);
	srv_to_cli(s, c);
	CHECK_EQ(wolfSSL_connect(c->ssl), WOLFSSL_SUCCESS); /* 1.3: Finished out */
	CHECK_EQ(wolfSSL_write(c->ssl, "first words", 11), 11);
	CHECK_EQ(rr_tls_feed(s, c->out.p + c->out.head, buf_avail(&c->out)), 0);
	c->out.head = c->out.len;
	CHECK_EQ(rr_tls_handshake(s), 0);
	CHECK_EQ(rr_tls_read(s, buf, sizeof(buf)), 11);
	CHECK(memcmp(buf, "first words", 11) == 0);
	CHECK_EQ(rr_tls_read(s, buf, sizeof(buf)), 0);
	cli_free(c);
	rr_tls_free(s);
}

/*
 * TLS 1.3 KeyUpdate from the client (update_requested): reading it queues
 * the server's own KeyUpdate, and traffic both ways continues under the
 * new keys.
 */
static void test_key_update(WOLFSSL_CTX *cw)
{
	int ret;
	struct pair p = connect_pair(ctx_ec, cw, SIZE_MAX, &ret);

	CHECK_EQ(ret, 0);
	cli_drain(p.c);
	CHECK_EQ(rr_tls_pending_bytes(p.s), 0);
	CHECK_EQ(wolfSSL_update_keys(p.c->ssl), WOLFSSL_SUCCESS);
	send_c2s(&p, 5000, SIZE_MAX);
	CHECK(rr_tls_pending_bytes(p.s) > 0); /* the server's KeyUpdate */
	send_s2c(&p, 5000, 2);
	send_c2s(&p, 5000, 100);
	pair_free(&p);
}

/*
 * Two threads make connections on one shared context at once. CHECK's
 * counters are not thread-safe, so the threads count their own successes.
 */
static void *handshake_thread(void *arg)
{
	WOLFSSL_CTX *cw = arg;
	uintptr_t ok = 0;

	for (int i = 0; i < 20; i++) {
		struct rr_tls *s = rr_tls_new(ctx_ec);
		struct client *c = cli_new(cw);
		unsigned char buf[16];

		if (s && pump_handshake(c, s, SIZE_MAX) == 0 &&
		    wolfSSL_write(c->ssl, "ping", 4) == 4 &&
		    rr_tls_feed(s, c->out.p + c->out.head, buf_avail(&c->out)) == 0 &&
		    rr_tls_read(s, buf, sizeof(buf)) == 4 && memcmp(buf, "ping", 4) == 0)
			ok++;
		cli_free(c);
		rr_tls_free(s);
	}
	rr_tls_thread_exit();
	return (void *)ok;
}

static void test_shared_ctx(WOLFSSL_CTX *cw)
{
	pthread_t th[2];
	void *ok[2];

	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, handshake_thread, cw), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], &ok[i]);
		CHECK_EQ((uintptr_t)ok[i], 20);
	}
}

struct thread_arg {
	struct pair *p;
};

static void *other_thread(void *arg)
{
	struct thread_arg *a = arg;

	send_s2c(a->p, 20000, 3);
	send_c2s(a->p, 20000, 777);
	rr_tls_thread_exit();
	return NULL;
}

static void test_thread_move(WOLFSSL_CTX *cw)
{
	pthread_t th;
	int ret;
	struct pair p = connect_pair(ctx_ec, cw, SIZE_MAX, &ret);
	struct thread_arg a = {&p};

	CHECK_EQ(ret, 0);
	CHECK_EQ(pthread_create(&th, NULL, other_thread, &a), 0);
	pthread_join(th, NULL);
	/* and back on this thread */
	send_s2c(&p, 100, 1);
	pair_free(&p);
}

static void test_ctx_refcount(WOLFSSL_CTX *cw)
{
	struct rr_tls_ctx *c;
	char err[128];
	int ret;

	CHECK_EQ(rr_tls_ctx_new(&c, ec_cert.p, ec_cert.n, ec_key.p, ec_key.n, err, sizeof(err)), 0);
	struct pair p = connect_pair(c, cw, SIZE_MAX, &ret);
	/* a reload drops the old context; the connection keeps working */
	rr_tls_ctx_unref(c);
	CHECK_EQ(ret, 0);
	send_s2c(&p, 1000, 1);
	send_c2s(&p, 1000, SIZE_MAX);
	pair_free(&p); /* last reference: ASan's leak check sees it freed */
}

/*
 * Memory an idle connection keeps after handshake and some traffic: live
 * bytes from wolfSSL (counting allocator) and from the heap as a whole
 * (mallinfo2, which also counts this module's own struct).
 */
static void test_idle_memory(WOLFSSL_CTX *cw, struct rr_tls_ctx *ctx, const char *label)
{
	enum { N = 50 };
	struct rr_tls *s[2][N];
	size_t w[3], h[3];
	int ret;

	/* warm up caches and one-time allocations */
	struct pair warm = connect_pair(ctx, cw, SIZE_MAX, &ret);
	pair_free(&warm);

	/* phase 0: handshake only; phase 1: handshake then 40 KB each way */
	for (int ph = 0; ph < 2; ph++) {
		w[ph] = wolf_live();
		h[ph] = mallinfo2().uordblks;
		for (int i = 0; i < N; i++) {
			struct pair p = connect_pair(ctx, cw, SIZE_MAX, &ret);

			CHECK_EQ(ret, 0);
			cli_drain(p.c);
			if (ph == 1) {
				send_s2c(&p, 40000, 2);
				send_c2s(&p, 40000, 5000);
			}
			CHECK_EQ(rr_tls_buffered(p.s), 0);
			CHECK_EQ(rr_tls_pending_bytes(p.s), 0);
			s[ph][i] = p.s;
			cli_free(p.c);
		}
	}
	w[2] = wolf_live();
	h[2] = mallinfo2().uordblks;
	/* mallinfo2 reads 0 under ASan, which has its own allocator */
	printf("idle %s connection, after handshake: wolfSSL %zu B, whole heap %zu B; "
	       "after 40 KB each way too: wolfSSL %zu B, whole heap %zu B%s\n",
	       label, (w[1] - w[0]) / N, (h[1] - h[0]) / N, (w[2] - w[1]) / N, (h[2] - h[1]) / N,
	       h[2] == h[0] ? " (heap n/a here)" : "");
	printf("this module's own struct rr_tls: %zu B\n", sizeof(struct rr_tls));
	CHECK(w[1] > w[0]);
	for (int ph = 0; ph < 2; ph++)
		for (int i = 0; i < N; i++)
			rr_tls_free(s[ph][i]);
	CHECK(wolf_live() <= w[0] + 64);
}

int main(void)
{
	char err[256];
	WOLFSSL_CTX *cw;

	if (wolfSSL_SetAllocators(count_malloc, count_free, count_realloc) != 0) {
		fprintf(stderr, "wolfSSL_SetAllocators failed\n");
		return 1;
	}
	ca = slurp_env("RR_TLS_CA");
	ec_cert = slurp_env("RR_TLS_EC_CERT");
	ec_key = slurp_env("RR_TLS_EC_KEY");
	rsa_cert = slurp_env("RR_TLS_RSA_CERT");
	rsa_key = slurp_env("RR_TLS_RSA_KEY");
	other_key = slurp_env("RR_TLS_OTHER_KEY");

	test_ctx_errors();
	if (rr_tls_ctx_new(&ctx_ec, ec_cert.p, ec_cert.n, ec_key.p, ec_key.n, err, sizeof(err)) !=
		0 ||
	    rr_tls_ctx_new(&ctx_rsa, rsa_cert.p, rsa_cert.n, rsa_key.p, rsa_key.n, err,
			   sizeof(err)) != 0) {
		fprintf(stderr, "context: %s\n", err);
		return 1;
	}
	cw = cli_ctx_new(CLI_ANY);

	test_handshake_13(cw);
	test_handshake_12();
	test_refuse_11();
	test_alpn_sni(cw);
	test_sizes(cw);
	test_coalesce(cw);
	test_garbage();
	test_bytewise(cw);
	test_resumption(cw);
	test_ticket_keys();
	test_close_and_tamper(cw);
	test_finished_with_data(cw);
	test_key_update(cw);
	test_thread_move(cw);
	test_shared_ctx(cw);
	test_ctx_refcount(cw);
	test_idle_memory(cw, ctx_ec, "1.3 EC");
	WOLFSSL_CTX *cw12 = cli_ctx_new(CLI_12);
	test_idle_memory(cw12, ctx_rsa, "1.2 RSA");
	wolfSSL_CTX_free(cw12);

	wolfSSL_CTX_free(cw);
	rr_tls_ctx_unref(ctx_ec);
	rr_tls_ctx_unref(ctx_rsa);
	free(ca.p);
	free(ec_cert.p);
	free(ec_key.p);
	free(rsa_cert.p);
	free(rsa_key.p);
	free(other_key.p);
	rr_tls_thread_exit();
	wolfSSL_Cleanup();
	return check_done();
}
