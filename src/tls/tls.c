/*
 * TLS server over memory buffers: wolfSSL does the protocol and the crypto,
 * this file moves ciphertext between wolfSSL's I/O callbacks and buffers the
 * connection layer fills from, and sends from, io_uring.
 *
 * DESIGN: input is one buffer (copied in by rr_tls_feed(), pulled out by the
 * receive callback, freed when empty); wolfSSL consumes it synchronously, so
 * it may move when it grows. Output is a singly linked list of chunks: the
 * connection layer may have an asynchronous send in flight from a chunk, so
 * a chunk whose bytes have been exposed by rr_tls_pending*() never moves; new
 * ciphertext goes behind the exposed bytes if the chunk has room, else into
 * a new chunk. rr_tls_write_iov() sizes that chunk for the whole call, so a
 * burst of fanned-out frames ends up in one chunk and one send.
 *
 * Policy is set once on the WOLFSSL_CTX; see tls.h for what it is and why.
 */
#include "tls/tls.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

/*
 * TLS 1.3 suites first (all AEAD, ECDHE key exchange per the groups below),
 * then TLS 1.2 ECDHE + AEAD only: no RSA key exchange (no forward secrecy),
 * no CBC (Lucky13 class), no RC4/NULL/anon, all of which Debian's build
 * compiles. Two orders, picked once per context by rr_tls_aes_hw(): AES-GCM
 * first where the library runs AES on the CPU's instructions (3-6x
 * ChaCha20-Poly1305 there), ChaCha20-Poly1305 first where AES would run in C
 * (there ChaCha20-Poly1305 is the faster; kernel-notes/wolfssl-build.md).
 * The server's order wins (CIPHER_SERVER_PREFERENCE below).
 */
static const char rr_tls_ciphers_aes[] = "TLS13-AES128-GCM-SHA256:"
					 "TLS13-CHACHA20-POLY1305-SHA256:"
					 "TLS13-AES256-GCM-SHA384:"
					 "ECDHE-ECDSA-AES128-GCM-SHA256:"
					 "ECDHE-RSA-AES128-GCM-SHA256:"
					 "ECDHE-ECDSA-CHACHA20-POLY1305:"
					 "ECDHE-RSA-CHACHA20-POLY1305:"
					 "ECDHE-ECDSA-AES256-GCM-SHA384:"
					 "ECDHE-RSA-AES256-GCM-SHA384";
static const char rr_tls_ciphers_chacha[] = "TLS13-CHACHA20-POLY1305-SHA256:"
					    "TLS13-AES128-GCM-SHA256:"
					    "TLS13-AES256-GCM-SHA384:"
					    "ECDHE-ECDSA-CHACHA20-POLY1305:"
					    "ECDHE-RSA-CHACHA20-POLY1305:"
					    "ECDHE-ECDSA-AES128-GCM-SHA256:"
					    "ECDHE-RSA-AES128-GCM-SHA256:"
					    "ECDHE-ECDSA-AES256-GCM-SHA384:"
					    "ECDHE-RSA-AES256-GCM-SHA384";

/* Key-exchange groups: ECDHE only, X25519 first (fast, what browsers send). */
static int rr_tls_groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1};

static const char rr_tls_alpn_h1[] = "http/1.1";

/*
 * Ciphertext bytes a record adds to its plaintext, at most, for the suites
 * above: 5 header + 8 explicit nonce + 16 tag (1.2 GCM), or 5 + 1 inner
 * content type + 16 tag (1.3). Used only to size output chunks.
 */
#define RR_TLS_RECORD_OVERHEAD 32

/* Smallest output chunk worth allocating (a handshake flight fits). */
#define RR_TLS_CHUNK_MIN 512

struct rr_tls_ctx {
	atomic_uint refs;
	WOLFSSL_CTX *w;
};

struct rr_tls_chunk {
	struct rr_tls_chunk *next;
	uint32_t head; /* first unsent byte */
	uint32_t len;  /* bytes written */
	uint32_t cap;
	bool exposed; /* bytes were handed out: never realloc */
	unsigned char data[];
};

enum {
	RR_TLS_F_DONE = 1u << 0,     /* handshake complete */
	RR_TLS_F_FAILED = 1u << 1,   /* fatal error seen; why says which */
	RR_TLS_F_SHUTDOWN = 1u << 2, /* close_notify queued */
	RR_TLS_F_NOMEM = 1u << 3,    /* a callback failed to allocate */
};

struct rr_tls {
	WOLFSSL *ssl;
	struct rr_tls_ctx *ctx;
	unsigned char *in; /* fed ciphertext not yet pulled by wolfSSL */
	uint32_t in_head, in_len, in_cap;
	uint32_t flags;
	struct rr_tls_chunk *out_head, *out_tail;
	size_t out_bytes; /* unsent bytes over all chunks */
	size_t out_hint;  /* size for the next new chunk */
	const char *why;
};

/* ---- library init -------------------------------------------------------- */

static pthread_once_t rr_tls_once = PTHREAD_ONCE_INIT;
static int rr_tls_init_ret;

static void rr_tls_init_once(void)
{
	rr_tls_init_ret = wolfSSL_Init();
}

static void rr_tls_set_err(char *err, size_t errlen, const char *what, int code)
{
	char reason[WOLFSSL_MAX_ERROR_SZ];

	if (!err || errlen == 0)
		return;
	/* wolfSSL's error codes are <= -100; above that are bare API results */
	if (code <= -100) {
		wolfSSL_ERR_error_string_n((unsigned long)(code < 0 ? -code : code), reason,
					   sizeof(reason));
		snprintf(err, errlen, "%s: %s (wolfSSL %d)", what, reason, code);
	} else {
		snprintf(err, errlen, "%s", what);
	}
}

/* ---- I/O callbacks -------------------------------------------------------- */

static void rr_tls_in_release(struct rr_tls *t)
{
	free(t->in);
	t->in = NULL;
	t->in_head = t->in_len = t->in_cap = 0;
}

static int rr_tls_recv_cb(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct rr_tls *t = arg;
	uint32_t avail = t->in_len - t->in_head;
	uint32_t n;

	(void)ssl;
	assert(sz >= 0 && t->in_head <= t->in_len);
	if (avail == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	n = (uint32_t)sz < avail ? (uint32_t)sz : avail;
	memcpy(buf, t->in + t->in_head, n);
	t->in_head += n;
	/* idle connections own no input buffer */
	if (t->in_head == t->in_len)
		rr_tls_in_release(t);
	return (int)n;
}

static struct rr_tls_chunk *rr_tls_chunk_new(size_t cap)
{
	struct rr_tls_chunk *c;

	if (cap > UINT32_MAX - sizeof(*c))
		return NULL;
	c = malloc(sizeof(*c) + cap);
	if (!c)
		return NULL;
	c->next = NULL;
	c->head = c->len = 0;
	c->cap = (uint32_t)cap;
	c->exposed = false;
	return c;
}

/* Append n bytes of ciphertext to pending output without moving exposed bytes. */
static int rr_tls_out_append(struct rr_tls *t, const void *p, size_t n)
{
	struct rr_tls_chunk *c = t->out_tail;

	if (c && c->cap - c->len < n && !c->exposed && c->head == 0 &&
	    (size_t)c->len + n <= UINT32_MAX / 2) {
		/* nobody holds a pointer into it yet: grow in place */
		size_t cap = (size_t)c->cap * 2;
		struct rr_tls_chunk *g, **link;

		if (cap < (size_t)c->len + n)
			cap = (size_t)c->len + n;
		g = realloc(c, sizeof(*c) + cap);
		if (!g)
			return -ENOMEM;
		g->cap = (uint32_t)cap;
		for (link = &t->out_head; *link != c; link = &(*link)->next)
			;
		*link = g;
		t->out_tail = c = g;
	}
	if (!c || c->cap - c->len < n) {
		size_t cap = t->out_hint > n ? t->out_hint : n;
		struct rr_tls_chunk *fresh;

		if (cap < RR_TLS_CHUNK_MIN)
			cap = RR_TLS_CHUNK_MIN;
		fresh = rr_tls_chunk_new(cap);
		if (!fresh)
			return -ENOMEM;
		if (c)
			c->next = fresh;
		else
			t->out_head = fresh;
		t->out_tail = c = fresh;
	}
	memcpy(c->data + c->len, p, n);
	c->len += (uint32_t)n;
	t->out_bytes += n;
	/* the hint covered this burst; later small writes size themselves */
	t->out_hint = t->out_hint > n ? t->out_hint - n : 0;
	return 0;
}

static int rr_tls_send_cb(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct rr_tls *t = arg;

	(void)ssl;
	assert(sz >= 0);
	if (rr_tls_out_append(t, buf, (size_t)sz) < 0) {
		t->flags |= RR_TLS_F_NOMEM;
		return WOLFSSL_CBIO_ERR_GENERAL;
	}
	return sz;
}

/* ---- what the library is ------------------------------------------------- */

#ifndef RR_TLS_LIB
#define RR_TLS_LIB "system" /* src/tls/meson.build says which; see -Dtls_lib */
#endif

bool rr_tls_aes_hw(void)
{
#if defined(WOLFSSL_AESNI) && (defined(__x86_64__) || defined(__i386__))
	/* wolfSSL's own run-time test (Check_CPU_support_AES): CPUID AES bit */
	return __builtin_cpu_supports("aes");
#else
	return false; /* built without AES-NI: AES and GHASH in C whatever the CPU */
#endif
}

static pthread_once_t rr_tls_info_once = PTHREAD_ONCE_INIT;
static char rr_tls_info[160];

static void rr_tls_info_init(void)
{
	const char *aes;

#ifdef WOLFSSL_AESNI
	aes = rr_tls_aes_hw() ? "AES-NI" : "AES in C (the CPU lacks AES instructions)";
#else
	aes = "AES in C (library built without AES assembly)";
#endif
	snprintf(rr_tls_info, sizeof(rr_tls_info), "TLS: wolfSSL %s, %s build, %s, %s first",
		 wolfSSL_lib_version(), RR_TLS_LIB, aes,
		 rr_tls_aes_hw() ? "AES-GCM" : "ChaCha20-Poly1305");
}

const char *rr_tls_build_info(void)
{
	pthread_once(&rr_tls_info_once, rr_tls_info_init);
	return rr_tls_info;
}

/* ---- context --------------------------------------------------------------- */

/* Upper bound of an EC public point in X9.63 form (P-521: 1 + 2 * 66). */
#define RR_TLS_EC_POINT_MAX 160
/* Upper bound of a DER key or SubjectPublicKeyInfo we check (RSA 8192 fits). */
#define RR_TLS_DER_MAX 8192

/*
 * wolfSSL 5.5.4's wolfSSL_CTX_check_private_key() catches a mismatched RSA
 * key but accepts any EC key with any EC certificate (seen in this
 * project's tests). So for EC keys compare the public point computed from
 * the private scalar with the certificate's. The certificate is decoded with
 * wolfCrypt's own parser (not the X509 API of the OpenSSL compatibility
 * layer, which the bundled build leaves out). Returns 1 match, 0 mismatch,
 * -1 not an EC key pair (left to wolfSSL's check), -ENOMEM.
 */
static int rr_tls_ec_key_matches(const void *cert_pem, size_t cert_len, const void *key_pem,
				 size_t key_len)
{
	unsigned char pub_a[RR_TLS_EC_POINT_MAX], pub_b[RR_TLS_EC_POINT_MAX];
	word32 len_a = sizeof(pub_a), len_b = sizeof(pub_b), idx = 0;
	unsigned char *der = malloc(RR_TLS_DER_MAX);
	struct DecodedCert *cert = malloc(sizeof(*cert));
	ecc_key priv, pub;
	WC_RNG rng;
	int n, ret = -1;
	bool have_priv = false, have_pub = false, have_rng = false, have_cert = false;

	if (!der || !cert) {
		ret = -ENOMEM;
		goto out;
	}
	if (wc_ecc_init(&priv) != 0 || wc_ecc_init(&pub) != 0)
		goto out;
	have_priv = have_pub = true;
	n = wc_KeyPemToDer(key_pem, (int)key_len, der, RR_TLS_DER_MAX, NULL);
	if (n <= 0)
		goto out;
	/* a PKCS#8 wrapper, or already the SEC1 ECPrivateKey */
	idx = 0;
	if (wc_GetPkcs8TraditionalOffset(der, &idx, (word32)n) < 0)
		idx = 0;
	if (wc_EccPrivateKeyDecode(der, &idx, &priv, (word32)n) != 0)
		goto out; /* not EC */
	if (wc_InitRng(&rng) != 0)
		goto out;
	have_rng = true;
	/* recompute from the scalar: a key file may carry any public part */
	if (wc_ecc_make_pub_ex(&priv, NULL, &rng) != 0 ||
	    wc_ecc_export_x963(&priv, pub_a, &len_a) != 0)
		goto out;

	/* the leaf (first certificate of the chain); der is reused: the key is decoded */
	n = wc_CertPemToDer(cert_pem, (int)cert_len, der, RR_TLS_DER_MAX, CERT_TYPE);
	if (n <= 0)
		goto out;
	wc_InitDecodedCert(cert, der, (word32)n, NULL);
	have_cert = true;
	if (wc_ParseCert(cert, CERT_TYPE, NO_VERIFY, NULL) != 0)
		goto out;
	idx = 0;
	/* publicKey is the SubjectPublicKeyInfo for an EC certificate */
	if (cert->keyOID != ECDSAk || !cert->publicKey ||
	    wc_EccPublicKeyDecode(cert->publicKey, &idx, &pub, cert->pubKeySize) != 0 ||
	    wc_ecc_export_x963(&pub, pub_b, &len_b) != 0) {
		ret = 0; /* EC key, non-EC certificate */
		goto out;
	}
	ret = len_a == len_b && memcmp(pub_a, pub_b, len_a) == 0;
out:
	if (have_cert)
		wc_FreeDecodedCert(cert);
	if (have_rng)
		wc_FreeRng(&rng);
	if (have_pub)
		wc_ecc_free(&pub);
	if (have_priv)
		wc_ecc_free(&priv);
	free(cert);
	free(der);
	return ret;
}

int rr_tls_ctx_new(struct rr_tls_ctx **out, const void *cert_pem, size_t cert_len,
		   const void *key_pem, size_t key_len, char *err, size_t errlen)
{
	struct rr_tls_ctx *ctx;
	WOLFSSL_CTX *w;
	int ret;

	assert(out);
	assert(cert_pem || cert_len == 0);
	assert(key_pem || key_len == 0);
	pthread_once(&rr_tls_once, rr_tls_init_once);
	if (rr_tls_init_ret != WOLFSSL_SUCCESS) {
		rr_tls_set_err(err, errlen, "wolfSSL_Init failed", rr_tls_init_ret);
		return -ENOMEM;
	}
	if (cert_len > LONG_MAX || key_len > LONG_MAX || cert_len == 0 || key_len == 0) {
		rr_tls_set_err(err, errlen,
			       cert_len == 0 ? "certificate: empty" : "private key: empty", 0);
		return -EINVAL;
	}

	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		goto fail_nomem;
	w = wolfSSL_CTX_new(wolfSSLv23_server_method());
	if (!w)
		goto free_ctx_nomem;

	/* Debian's build keeps TLS 1.0/1.1 compiled in: refuse them here */
	ret = wolfSSL_CTX_SetMinVersion(w, WOLFSSL_TLSV1_2);
	if (ret != WOLFSSL_SUCCESS) {
		rr_tls_set_err(err, errlen, "setting TLS 1.2 minimum", ret);
		goto free_w;
	}
	ret = wolfSSL_CTX_set_cipher_list(w, rr_tls_aes_hw() ? rr_tls_ciphers_aes
							     : rr_tls_ciphers_chacha);
	if (ret != WOLFSSL_SUCCESS) {
		rr_tls_set_err(err, errlen, "setting cipher list", 0);
		goto free_w;
	}
	ret = wolfSSL_CTX_set_groups(w, rr_tls_groups,
				     (int)(sizeof(rr_tls_groups) / sizeof(rr_tls_groups[0])));
	if (ret != WOLFSSL_SUCCESS) {
		rr_tls_set_err(err, errlen, "setting key-exchange groups", ret);
		goto free_w;
	}

	ret = wolfSSL_CTX_use_certificate_chain_buffer_format(w, cert_pem, (long)cert_len,
							      WOLFSSL_FILETYPE_PEM);
	if (ret != WOLFSSL_SUCCESS) {
		rr_tls_set_err(err, errlen, "certificate: not a PEM certificate chain", ret);
		goto free_w;
	}
	ret = wolfSSL_CTX_use_PrivateKey_buffer(w, key_pem, (long)key_len, WOLFSSL_FILETYPE_PEM);
	if (ret != WOLFSSL_SUCCESS) {
		rr_tls_set_err(err, errlen, "private key: not a PEM RSA or EC key", ret);
		goto free_w;
	}
	ret = wolfSSL_CTX_check_private_key(w);
	if (ret == WOLFSSL_SUCCESS) {
		int m = rr_tls_ec_key_matches(cert_pem, cert_len, key_pem, key_len);

		if (m == -ENOMEM) {
			wolfSSL_CTX_free(w);
			goto free_ctx_nomem;
		}
		if (m == 0)
			ret = WOLFSSL_FAILURE;
	}
	if (ret != WOLFSSL_SUCCESS) {
		rr_tls_set_err(err, errlen, "private key does not match the certificate", 0);
		goto free_w;
	}

	wolfSSL_CTX_SetIORecv(w, rr_tls_recv_cb);
	wolfSSL_CTX_SetIOSend(w, rr_tls_send_cb);
	wolfSSL_CTX_set_verify(w, WOLFSSL_VERIFY_NONE, NULL);
	wolfSSL_CTX_set_options(w, WOLFSSL_OP_NO_COMPRESSION | WOLFSSL_OP_CIPHER_SERVER_PREFERENCE);
	/*
	 * Resumption is stateless (tickets sealed with the context's keys), so
	 * the server never looks sessions up by ID in wolfSSL's process-wide
	 * cache nor stores them there: nothing shared or locked across cores,
	 * and a reload's new context cannot resume the old one's sessions.
	 * The mode stays "server" rather than OFF because OFF also makes the
	 * 1.2 ServerHello carry an empty session ID, which leaves a client that
	 * offered a ticket unable to tell a full handshake from a resumption.
	 */
	wolfSSL_CTX_set_session_cache_mode(w, WOLFSSL_SESS_CACHE_SERVER |
						  WOLFSSL_SESS_CACHE_NO_INTERNAL);

	atomic_init(&ctx->refs, 1);
	ctx->w = w;
	*out = ctx;
	return 0;

free_w:
	wolfSSL_CTX_free(w);
	free(ctx);
	return -EINVAL;
free_ctx_nomem:
	free(ctx);
fail_nomem:
	rr_tls_set_err(err, errlen, "out of memory", 0);
	return -ENOMEM;
}

void rr_tls_ctx_ref(struct rr_tls_ctx *ctx)
{
	unsigned prev = atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);

	assert(prev > 0);
	(void)prev;
}

void rr_tls_ctx_unref(struct rr_tls_ctx *ctx)
{
	unsigned prev;

	if (!ctx)
		return;
	prev = atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel);
	assert(prev > 0);
	if (prev != 1)
		return;
	wolfSSL_CTX_free(ctx->w);
	free(ctx);
}

void rr_tls_thread_exit(void)
{
#ifdef FP_ECC
	/* the FP_ECC point cache is thread-local (HAVE_THREAD_LS + FP_ECC) */
	wc_ecc_fp_free();
#endif
}

/* ---- connection ------------------------------------------------------------ */

struct rr_tls *rr_tls_new(struct rr_tls_ctx *ctx)
{
	struct rr_tls *t;

	assert(ctx && atomic_load_explicit(&ctx->refs, memory_order_relaxed) > 0);
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ssl = wolfSSL_new(ctx->w);
	if (!t->ssl) {
		free(t);
		return NULL;
	}
	/*
	 * Per connection because wolfSSL 5.5.4 ignores a ctx-level ALPN select
	 * callback's refusal (it just carries on without ALPN), while
	 * FAILED_ON_MISMATCH sends no_application_protocol as RFC 7301 3.2
	 * asks. A client that sends no ALPN at all is still served.
	 */
	if (wolfSSL_UseALPN(t->ssl, (char *)rr_tls_alpn_h1, sizeof(rr_tls_alpn_h1) - 1,
			    WOLFSSL_ALPN_FAILED_ON_MISMATCH) != WOLFSSL_SUCCESS) {
		wolfSSL_free(t->ssl);
		free(t);
		return NULL;
	}
	wolfSSL_SetIOReadCtx(t->ssl, t);
	wolfSSL_SetIOWriteCtx(t->ssl, t);
	rr_tls_ctx_ref(ctx);
	t->ctx = ctx;
	t->why = "no error";
	return t;
}

void rr_tls_free(struct rr_tls *t)
{
	struct rr_tls_chunk *c, *next;

	if (!t)
		return;
	wolfSSL_free(t->ssl);
	for (c = t->out_head; c; c = next) {
		next = c->next;
		free(c);
	}
	free(t->in);
	rr_tls_ctx_unref(t->ctx);
	free(t);
}

int rr_tls_feed(struct rr_tls *t, const void *in, size_t n)
{
	uint32_t live;

	assert(t);
	assert(in || n == 0);
	if (n == 0)
		return 0;
	live = t->in_len - t->in_head;
	if (n > RR_TLS_IN_MAX || live + n > RR_TLS_IN_MAX)
		return -ENOBUFS;
	if (t->in_cap - t->in_len < n) {
		if (t->in_head > 0) {
			/* slide the live part down before growing */
			memmove(t->in, t->in + t->in_head, live);
			t->in_len = live;
			t->in_head = 0;
		}
		if (t->in_cap - t->in_len < n) {
			size_t cap = (size_t)live + n;
			unsigned char *p = realloc(t->in, cap);

			if (!p)
				return -ENOMEM;
			t->in = p;
			t->in_cap = (uint32_t)cap;
		}
	}
	memcpy(t->in + t->in_len, in, n);
	t->in_len += (uint32_t)n;
	return 0;
}

size_t rr_tls_buffered(const struct rr_tls *t)
{
	return t->in_len - t->in_head;
}

/* Record a fatal error once and map it to the return convention. */
static int rr_tls_fail(struct rr_tls *t, int ret)
{
	int err = wolfSSL_get_error(t->ssl, ret);

	if (t->flags & RR_TLS_F_NOMEM) {
		t->flags |= RR_TLS_F_FAILED;
		t->why = "out of memory";
		return -ENOMEM;
	}
	if (!(t->flags & RR_TLS_F_FAILED)) {
		const char *s = wolfSSL_ERR_reason_error_string((unsigned long)err);

		t->flags |= RR_TLS_F_FAILED;
		t->why = s && *s ? s : "TLS failure";
	}
	return -EPROTO;
}

int rr_tls_handshake(struct rr_tls *t)
{
	int ret, err;

	assert(t && t->ssl);
	if (t->flags & RR_TLS_F_DONE)
		return 0;
	if (t->flags & RR_TLS_F_FAILED)
		return (t->flags & RR_TLS_F_NOMEM) ? -ENOMEM : -EPROTO;
	ret = wolfSSL_accept(t->ssl);
	if (ret == WOLFSSL_SUCCESS) {
		t->flags |= RR_TLS_F_DONE;
		/*
		 * wolfSSL 5.5.4 already frees its handshake-only state at the
		 * end of accept (measured: this call changes nothing today); it
		 * stays so that a build or option that keeps that state for a
		 * re-handshake (none is allowed here) still drops it.
		 */
		wolfSSL_FreeHandshakeResources(t->ssl);
		return 0;
	}
	err = wolfSSL_get_error(t->ssl, ret);
	if ((err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) &&
	    !(t->flags & RR_TLS_F_NOMEM))
		return -EAGAIN;
	return rr_tls_fail(t, ret);
}

bool rr_tls_handshake_done(const struct rr_tls *t)
{
	return (t->flags & RR_TLS_F_DONE) != 0;
}

ssize_t rr_tls_read(struct rr_tls *t, void *out, size_t cap)
{
	int ret, err;

	assert(t && (t->flags & RR_TLS_F_DONE));
	assert(out && cap > 0);
	if (t->flags & RR_TLS_F_FAILED)
		return (t->flags & RR_TLS_F_NOMEM) ? -ENOMEM : -EPROTO;
	if (cap > INT_MAX)
		cap = INT_MAX;
	ret = wolfSSL_read(t->ssl, out, (int)cap);
	if (ret > 0)
		return ret;
	err = wolfSSL_get_error(t->ssl, ret);
	if (t->flags & RR_TLS_F_NOMEM)
		return rr_tls_fail(t, ret);
	if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE)
		return 0;
	if (err == WOLFSSL_ERROR_ZERO_RETURN)
		return -EPIPE;
	return rr_tls_fail(t, ret);
}

/* Encrypt one record's worth (n <= RR_TLS_RECORD_MAX) from contiguous p. */
static int rr_tls_write_record(struct rr_tls *t, const void *p, size_t n)
{
	int ret = wolfSSL_write(t->ssl, p, (int)n);

	if (ret == (int)n)
		return 0;
	/* the send callback never blocks, so anything short is a failure */
	return rr_tls_fail(t, ret);
}

ssize_t rr_tls_write_iov(struct rr_tls *t, const struct iovec *iov, int n)
{
	unsigned char stage[RR_TLS_RECORD_MAX];
	size_t total = 0, staged = 0, off = 0;
	int i = 0, ret;

	assert(t && (t->flags & RR_TLS_F_DONE));
	assert(iov || n == 0);
	if (t->flags & RR_TLS_F_SHUTDOWN)
		return -EPIPE;
	if (t->flags & RR_TLS_F_FAILED)
		return (t->flags & RR_TLS_F_NOMEM) ? -ENOMEM : -EPROTO;
	for (int k = 0; k < n; k++)
		total += iov[k].iov_len;
	if (total == 0)
		return 0;
	if (total > SSIZE_MAX)
		return -EINVAL;
	/* one chunk for the whole burst, so it leaves in one send */
	t->out_hint = total + (total / RR_TLS_RECORD_MAX + 1) * RR_TLS_RECORD_OVERHEAD;

	/*
	 * Bounded by the iovec: each pass either writes a full record straight
	 * from one iovec (no copy) or moves bytes into the stage; i only grows.
	 */
	while (i < n) {
		const unsigned char *base = iov[i].iov_base;
		size_t left = iov[i].iov_len - off;

		if (left == 0) {
			i++;
			off = 0;
			continue;
		}
		if (staged == 0 && left >= RR_TLS_RECORD_MAX) {
			ret = rr_tls_write_record(t, base + off, RR_TLS_RECORD_MAX);
			if (ret < 0)
				goto fail;
			off += RR_TLS_RECORD_MAX;
			continue;
		}
		size_t take = RR_TLS_RECORD_MAX - staged;

		if (take > left)
			take = left;
		memcpy(stage + staged, base + off, take);
		staged += take;
		off += take;
		if (staged == RR_TLS_RECORD_MAX) {
			ret = rr_tls_write_record(t, stage, staged);
			if (ret < 0)
				goto fail;
			staged = 0;
		}
	}
	if (staged > 0) {
		ret = rr_tls_write_record(t, stage, staged);
		if (ret < 0)
			goto fail;
	}
	t->out_hint = 0;
	return (ssize_t)total;
fail:
	t->out_hint = 0;
	return ret;
}

size_t rr_tls_pending(struct rr_tls *t, const void **ptr)
{
	struct rr_tls_chunk *c = t->out_head;

	assert(ptr);
	if (!c || c->len == c->head) {
		*ptr = NULL;
		return 0;
	}
	c->exposed = true;
	*ptr = c->data + c->head;
	return c->len - c->head;
}

int rr_tls_pending_iov(struct rr_tls *t, struct iovec *iov, int max)
{
	struct rr_tls_chunk *c;
	int k = 0;

	assert(iov || max == 0);
	for (c = t->out_head; c && k < max; c = c->next) {
		if (c->len == c->head)
			continue;
		c->exposed = true;
		iov[k].iov_base = c->data + c->head;
		iov[k].iov_len = c->len - c->head;
		k++;
	}
	return k;
}

size_t rr_tls_pending_bytes(const struct rr_tls *t)
{
	return t->out_bytes;
}

void rr_tls_consume(struct rr_tls *t, size_t n)
{
	assert(n <= t->out_bytes);
	t->out_bytes -= n;
	/* bounded: each pass frees a chunk or finishes n */
	while (t->out_head) {
		struct rr_tls_chunk *c = t->out_head;
		size_t avail = c->len - c->head;

		if (n < avail) {
			c->head += (uint32_t)n;
			return;
		}
		n -= avail;
		/* sent chunks are freed at once: idle connections own no output */
		t->out_head = c->next;
		if (t->out_tail == c)
			t->out_tail = NULL;
		free(c);
	}
	assert(n == 0);
}

int rr_tls_shutdown(struct rr_tls *t)
{
	int ret;

	assert(t);
	if (t->flags & (RR_TLS_F_SHUTDOWN | RR_TLS_F_FAILED))
		return 0;
	t->flags |= RR_TLS_F_SHUTDOWN;
	ret = wolfSSL_shutdown(t->ssl);
	if (t->flags & RR_TLS_F_NOMEM)
		return -ENOMEM;
	/* SHUTDOWN_NOT_DONE just means the peer's close_notify has not come */
	(void)ret;
	return 0;
}

const char *rr_tls_error(const struct rr_tls *t)
{
	return t->why;
}

const char *rr_tls_version(const struct rr_tls *t)
{
	return wolfSSL_get_version(t->ssl);
}

const char *rr_tls_cipher(const struct rr_tls *t)
{
	return wolfSSL_get_cipher_name(t->ssl);
}

bool rr_tls_resumed(const struct rr_tls *t)
{
	return wolfSSL_session_reused(t->ssl) == 1;
}

const char *rr_tls_alpn(const struct rr_tls *t, size_t *len)
{
	char *name = NULL;
	unsigned short sz = 0;

	if (wolfSSL_ALPN_GetProtocol(t->ssl, &name, &sz) != WOLFSSL_SUCCESS || !name) {
		if (len)
			*len = 0;
		return NULL;
	}
	if (len)
		*len = sz;
	return name;
}

const char *rr_tls_sni(const struct rr_tls *t, size_t *len)
{
	void *name = NULL;
	unsigned short sz = wolfSSL_SNI_GetRequest(t->ssl, WOLFSSL_SNI_HOST_NAME, &name);

	if (sz == 0 || !name) {
		if (len)
			*len = 0;
		return NULL;
	}
	if (len)
		*len = sz;
	return name;
}
