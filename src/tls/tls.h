/*
 * TLS server over memory buffers (wolfSSL 5.5.4: by default the static build
 * tools/wolfssl-bundle makes for ringroom from Debian's source package,
 * with -Dtls_lib=system Debian's shared libwolfssl; rr_tls_build_info()).
 *
 * This module never touches a socket. The connection layer receives
 * ciphertext with io_uring and hands it to rr_tls_feed(); it drives the
 * handshake and reads plaintext; it encrypts outgoing plaintext with
 * rr_tls_write_iov() and sends whatever rr_tls_pending_iov() exposes, then
 * calls rr_tls_consume() with what the socket accepted.
 *
 * Policy (fixed, not a flag): TLS 1.2 minimum (the bundled build has no
 * 1.0/1.1 code; Debian's still compiles them and they are refused at run
 * time), 1.3 preferred; ECDHE key exchange with AEAD ciphers only (AES-GCM
 * first when the library runs AES on AES-NI, else ChaCha20-Poly1305); ALPN
 * "http/1.1" — a client that offers ALPN without http/1.1 is refused with a
 * fatal no_application_protocol alert (RFC 7301 section 3.2), a client that
 * offers no ALPN is served; SNI is accepted whatever the name; session
 * resumption with tickets (1.2 and 1.3): stateless, sealed by wolfSSL's
 * built-in ticket callback with keys owned by the context (ChaCha20-Poly1305;
 * each key has a compiled-in lifetime of 1 h, then the next slot is used),
 * tickets advertised for 300 s (wolfSSL's default hint), and all keys
 * replaced when a reload builds a new context, so old tickets fall back to
 * a full handshake; no renegotiation (a client's attempt draws a fatal
 * unexpected_message alert), no compression, no 0-RTT (neither build
 * compiles secure renegotiation, zlib or early data).
 *
 * DESIGN: memory per connection matters more than copies. An idle
 * connection owns no input and no output buffer: rr_tls_feed() copies
 * ciphertext into a buffer that is freed as soon as wolfSSL has pulled every
 * byte of it, and output chunks are freed as soon as they are consumed.
 * Output is a list of chunks so that a pointer handed to an in-flight send
 * never moves: later writes append behind it or in a new chunk. After the
 * handshake wolfSSL's handshake-only state is released.
 *
 * Cost, measured by tests/unit/test_tls.c: an idle connection after its
 * handshake holds about 4 KB in wolfSSL with the bundled build (1.3 EC cert
 * or 1.2 RSA; this module adds one 80-byte struct rr_tls). Debian's build
 * holds about 58 KB (1.3, EC) or 55 KB (1.2, RSA): its WOLFSSL_SESSION alone
 * is 37.5 KB, because it compiles SESSION_CERTS (room for a 9-deep peer
 * chain inline), and the WOLFSSL object 10.9 KB. See
 * kernel-notes/wolfssl-build.md.
 *
 * Threads: a context is shared by every core (atomic refcount, immutable
 * after creation). A connection has no thread-local state and may move to
 * another thread between calls; it must not be used by two threads at once.
 */
#ifndef RR_TLS_H
#define RR_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
 * Most ciphertext a connection buffers on input before the caller must read:
 * a few maximum records (16 KiB + 256 each in 1.3, + 2 KiB in 1.2). A
 * caller that feeds past it gets -ENOBUFS and should stop receiving until it
 * has drained plaintext with rr_tls_read(). Ceiling: whatever memory allows.
 */
#define RR_TLS_IN_MAX (64 * 1024)

/* Largest plaintext per TLS record (RFC 8446 5.1); write_iov packs up to it. */
#define RR_TLS_RECORD_MAX 16384

struct rr_tls_ctx;
struct rr_tls;

/* ---- the library build ---------------------------------------------------- */

/*
 * One line naming the TLS library and its build, for `ringroom --version`
 * and the start-up log, e.g.
 *   "TLS: wolfSSL 5.5.4, bundled build, AES-NI, AES-GCM first"
 *   "TLS: wolfSSL 5.5.4, system build, AES in C (library built without AES
 *    assembly), ChaCha20-Poly1305 first"
 * "bundled" is tools/wolfssl-bundle's static build, "system" Debian's shared
 * libwolfssl (meson -Dtls_lib). "AES-NI" appears exactly when
 * rr_tls_aes_hw() is true. Static string, any thread.
 */
const char *rr_tls_build_info(void);

/*
 * True when the library's AES (and GCM's GHASH) runs on the CPU's
 * instructions: it was compiled with AES-NI (WOLFSSL_AESNI, the bundled
 * build) and this CPU has them (wolfSSL falls back to C otherwise). Decides
 * the cipher order of every context: AES-GCM first when true,
 * ChaCha20-Poly1305 first when false.
 */
bool rr_tls_aes_hw(void);

/* ---- server context ---------------------------------------------------- */

/*
 * Build a server context from a PEM certificate chain (leaf first, then
 * intermediates) and a PEM private key (RSA or EC), both given as bytes in
 * memory; the caller keeps ownership of the buffers, which may be freed on
 * return. The first call also initialises wolfSSL for the process.
 *
 * Returns 0 and *out with one reference held by the caller, or:
 *   -EINVAL  the certificate or key does not parse, or the key does not match
 *            the certificate; err holds a one-line reason (NUL-terminated,
 *            truncated to errlen) and *out is left untouched, so a reload
 *            simply keeps using its old context;
 *   -ENOMEM  out of memory (err says so too).
 * err may be NULL when errlen is 0.
 */
int rr_tls_ctx_new(struct rr_tls_ctx **out, const void *cert_pem, size_t cert_len,
		   const void *key_pem, size_t key_len, char *err, size_t errlen);

/* Take another reference (any thread). */
void rr_tls_ctx_ref(struct rr_tls_ctx *ctx);

/*
 * Drop a reference (any thread); the last one frees the context. Each
 * connection holds its own reference, so a reload can drop the old context
 * at once while old connections keep using it until they are freed.
 */
void rr_tls_ctx_unref(struct rr_tls_ctx *ctx);

/*
 * Call on each thread that did TLS work, just before it exits. Debian's
 * wolfSSL keeps a per-thread cache of precomputed ECC points (FP_ECC in
 * thread-local storage; measured about 1.6 MiB once a thread has done a few
 * ECDHE handshakes) that is otherwise leaked when the thread ends. Harmless
 * on a thread that did none. The cache is per thread, not per connection.
 * The bundled build has no FP_ECC cache (its P-256 is SP assembly): a no-op.
 */
void rr_tls_thread_exit(void);

/* ---- connection -------------------------------------------------------- */

/*
 * A new server-side connection using ctx (takes its own reference on ctx).
 * Returns NULL when out of memory.
 */
struct rr_tls *rr_tls_new(struct rr_tls_ctx *ctx);

/* Free the connection, its buffers, and its reference on the context. NULL is a no-op. */
void rr_tls_free(struct rr_tls *t);

/*
 * Hand the connection n bytes of ciphertext received from the peer. The
 * bytes are copied; in may be reused on return. n == 0 is a no-op.
 * Returns 0, -ENOBUFS when more than RR_TLS_IN_MAX bytes would be buffered
 * (nothing is taken; read first), or -ENOMEM.
 */
int rr_tls_feed(struct rr_tls *t, const void *in, size_t n);

/* Bytes fed but not yet pulled by wolfSSL (a partial record, usually). */
size_t rr_tls_buffered(const struct rr_tls *t);

/*
 * Advance the handshake with the input fed so far. Returns:
 *   0        the handshake is complete (and stays so: later calls return 0);
 *   -EAGAIN  more input is needed; output may be pending (send it first);
 *   -EPROTO  the handshake failed; rr_tls_error() says why. Output may be
 *            pending (an alert): send it, then close.
 *   -ENOMEM  out of memory.
 * On 0 output may still be pending too (1.2 Finished, 1.3 session tickets),
 * and plaintext may already be decodable (the client's first data can come
 * with its Finished): call rr_tls_read() without waiting for more input.
 */
int rr_tls_handshake(struct rr_tls *t);

/* True once rr_tls_handshake() has returned 0. */
bool rr_tls_handshake_done(const struct rr_tls *t);

/*
 * Decrypt up to cap bytes of plaintext into out. Call only after the
 * handshake is done; call again until it returns 0, since one fed buffer
 * may hold many records and a record may be larger than cap. Returns:
 *   > 0      bytes of plaintext written to out;
 *   0        nothing decodable yet (need more input);
 *   -EPIPE   the peer sent close_notify (clean end of stream);
 *   -EPROTO  the record layer failed (bad MAC, fatal alert...);
 *            rr_tls_error() says why; an alert may be pending to send;
 *   -ENOMEM  out of memory.
 * Reading may queue output (a 1.3 KeyUpdate answer): check pending after.
 */
ssize_t rr_tls_read(struct rr_tls *t, void *out, size_t cap);

/*
 * Encrypt the n buffers of iov, in order, into pending output. Data is
 * packed into as few records as fit (each up to RR_TLS_RECORD_MAX bytes of
 * plaintext), so many small frames cost one record header and tag, not one
 * each. Call only after the handshake is done; a zero-length total is a
 * no-op. Returns the number of plaintext bytes taken (always the total on
 * success), -EPIPE after rr_tls_shutdown(), -EPROTO if the connection has
 * already failed, or -ENOMEM (nothing or a prefix of whole records may have
 * been queued; treat the connection as failed).
 */
ssize_t rr_tls_write_iov(struct rr_tls *t, const struct iovec *iov, int n);

/*
 * Ciphertext waiting to be sent. Sets *ptr to the oldest unsent byte and
 * returns how many contiguous bytes follow it (0 and *ptr = NULL if none).
 * The pointed-to bytes stay valid and unmoved until rr_tls_consume() covers
 * them or rr_tls_free(), whatever else is written meanwhile, so they may be
 * handed to an asynchronous send.
 */
size_t rr_tls_pending(struct rr_tls *t, const void **ptr);

/*
 * Like rr_tls_pending() but fills up to max iovecs, one per output chunk,
 * for a single sendmsg; returns the number filled (0 when nothing is
 * pending). Same validity guarantee. Total bytes: rr_tls_pending_bytes().
 */
int rr_tls_pending_iov(struct rr_tls *t, struct iovec *iov, int max);

/* Total ciphertext bytes waiting to be sent (all chunks). */
size_t rr_tls_pending_bytes(const struct rr_tls *t);

/*
 * The socket accepted n bytes (n <= rr_tls_pending_bytes()): drop them from
 * the front of pending output and free chunks that are done.
 */
void rr_tls_consume(struct rr_tls *t, size_t n);

/*
 * Queue a close_notify alert (once; later calls do nothing). Returns 0,
 * or -ENOMEM. Send pending output, then close the socket; the module does
 * not wait for the peer's close_notify.
 */
int rr_tls_shutdown(struct rr_tls *t);

/*
 * Why the connection failed: a static string (never freed, never NULL),
 * "no error" when it has not failed.
 */
const char *rr_tls_error(const struct rr_tls *t);

/* ---- what was negotiated (valid after the handshake) ------------------- */

/* "TLSv1.3", "TLSv1.2"; static string. */
const char *rr_tls_version(const struct rr_tls *t);

/* The cipher suite's name, e.g. "TLS13-AES128-GCM-SHA256"; static string. */
const char *rr_tls_cipher(const struct rr_tls *t);

/* True when the handshake resumed a session from a ticket. */
bool rr_tls_resumed(const struct rr_tls *t);

/*
 * The selected ALPN protocol ("http/1.1") or NULL if the client offered
 * none. Owned by the connection, valid until rr_tls_free().
 */
const char *rr_tls_alpn(const struct rr_tls *t, size_t *len);

/*
 * The server name the client asked for (SNI host_name), not NUL-terminated,
 * or NULL if it sent none. Owned by the connection, valid until
 * rr_tls_free(). Any name is accepted; routing on it is the caller's choice.
 */
const char *rr_tls_sni(const struct rr_tls *t, size_t *len);

#endif
