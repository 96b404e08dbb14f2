/*
 * HS256 JSON Web Tokens (RFC 7519 over RFC 7515 compact JWS): the identity a
 * client presents on /chat/{room} when the broker runs with --auth-secret.
 *
 * Pure code: no I/O, no clock (the caller passes "now"), no logging. Token
 * text is a bearer credential: NEVER log a token or any part of it (not even
 * on a failed verification: a typo'd token is usually one character away
 * from a valid one). Log only the rr_jwt_strerror() reason and, after a
 * successful verification, the subject.
 *
 * What is accepted (deliberately narrow):
 *   - exactly three base64url segments (RFC 4648 section 5, no padding, no
 *     whitespace, canonical: unused trailing bits must be zero);
 *   - header: a JSON object with "alg":"HS256"; "typ", if present, a string
 *     equal to "JWT" ignoring case; a "crit" member is refused (we implement
 *     no extensions, RFC 7515 4.1.11); other members (kid, ...) are ignored.
 *     "none", HS512, RS256 and every other alg are refused;
 *   - the HMAC-SHA256 of "header.payload" under the secret, compared in
 *     constant time, before the payload is parsed;
 *   - claims: "sub" (string, 1..RR_JWT_SUB_MAX bytes, required), "name"
 *     (string, 0..RR_JWT_NAME_MAX bytes, optional; absent or "" → sub),
 *     "perms" (array of strings; "read" and "write" grant those permissions
 *     in rooms, "publish" and "admin" those of the backend API; other strings
 *     grant nothing; ABSENT → read and write, matching an
 *     anonymous client of a broker without --auth-secret), "exp" and "nbf"
 *     (numbers, seconds since the epoch, optional; a fraction is dropped).
 *     Duplicate member names in header or payload make the token malformed.
 *     Other claims (iat, iss, aud, ...) are ignored.
 *   - time: valid iff (no exp or now < exp) and (no nbf or nbf <= now)
 *     (RFC 7519 4.1.4/4.1.5), no leeway: pass a skewed now to allow some.
 *   - exp is optional HERE; the broker requires it (a token without one
 *     would be valid forever): callers check rr_jwt_require_exp() after
 *     rr_jwt_verify(), and skip it only under --allow-no-exp.
 */
#ifndef RR_AUTH_JWT_H
#define RR_AUTH_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits ---- */

/* Longest token accepted, in bytes. Tokens travel in a query string or a
 * header of the upgrade request, whose whole head is capped at 8 KiB
 * (RR_MAX_HEADER_BYTES_DEFAULT), so a longer one cannot be legitimate. */
#define RR_JWT_TOKEN_MAX 8192
/* User ids and display names: shown to every member of a room and echoed in
 * each message, so they stay short. */
#define RR_JWT_SUB_MAX 128
#define RR_JWT_NAME_MAX 128

/* What a verified token says about its bearer. Strings are NUL-terminated
 * UTF-8 without NUL bytes (the JSON parser refuses \u0000). */
struct rr_jwt_claims {
	char sub[RR_JWT_SUB_MAX + 1];	/* user id */
	char name[RR_JWT_NAME_MAX + 1]; /* display name; = sub when absent */
	bool perm_read;
	bool perm_write;
	bool perm_publish; /* backend API: publish */
	bool perm_admin;   /* backend API: everything */
	uint64_t exp; /* expiry (s since epoch); 0: no exp claim */
	uint64_t nbf; /* not-before (s since epoch); 0: no nbf claim */
};

/*
 * Verify token[0..len) (not necessarily NUL-terminated) against the shared
 * secret at time now_s (seconds since the epoch) and fill *out.
 * Returns:
 *   0          valid; *out filled
 *   -EMSGSIZE  len > RR_JWT_TOKEN_MAX (nothing else was looked at)
 *   -EINVAL    malformed: not three segments, bad base64url, header not
 *              JSON or alg not HS256 (incl. "none"), crit present, or, with a
 *              good signature, claims that are not a JSON object, a missing
 *              or bad sub, wrong claim types; also secret_len == 0
 *   -EACCES    the signature does not match (wrong secret, tampered token,
 *              signature not 32 bytes)
 *   -ETIME     signature and claims fine but not valid at now_s: expired
 *              (exp <= now_s) or not yet valid (nbf > now_s)
 *   -ENOMEM    out of memory
 *   -EIO       wolfCrypt's HMAC failed (not expected)
 * On any error *out is zeroed. The secret and token are only read.
 */
int rr_jwt_verify(const char *token, size_t len, const uint8_t *secret, size_t secret_len,
		  uint64_t now_s, struct rr_jwt_claims *out);

/* 0 when the verified claims carry an exp, else -ENODATA ("token has no exp
 * claim"). Separate from rr_jwt_verify so the policy (--allow-no-exp) stays
 * with the caller. */
int rr_jwt_require_exp(const struct rr_jwt_claims *claims);

/* A short fixed reason for a return value of rr_jwt_verify or
 * rr_jwt_require_exp, for logs and the 401's error_description
 * ("malformed token", "bad signature", "token expired or not yet valid", ...).
 * Never includes token text. */
const char *rr_jwt_strerror(int rc);

/*
 * Sign claims with the header {"alg":"HS256","typ":"JWT"}: payload members
 * sub, name (if name[0]), perms (from the perm_* flags, possibly []),
 * exp (if non-zero), nbf (if non-zero). sub must be 1..RR_JWT_SUB_MAX bytes.
 * Writes the NUL-terminated token into out[0..out_size).
 * Returns the token length (excluding the NUL), or -EINVAL (empty sub,
 * invalid UTF-8, exp or nbf over INT64_MAX, secret_len == 0), -EMSGSIZE
 * (out_size too small or token over RR_JWT_TOKEN_MAX), -ENOMEM, -EIO.
 * tools/mint-token is the command-line equivalent (Python, independent).
 */
int rr_jwt_sign(const struct rr_jwt_claims *claims, const uint8_t *secret, size_t secret_len,
		char *out, size_t out_size);

/*
 * Lower level, for tools and tests: base64url-encode header_json and
 * payload_json as given (any bytes; nothing is checked), join them with '.',
 * append the HMAC-SHA256 signature under secret. Same output and returns as
 * rr_jwt_sign.
 */
int rr_jwt_sign_raw(const char *header_json, size_t header_len, const char *payload_json,
		    size_t payload_len, const uint8_t *secret, size_t secret_len, char *out,
		    size_t out_size);

/* base64url without padding (RFC 4648 section 5), exposed for tests.
 * encode: writes 4*ceil(n/3) - padding chars + NUL; returns the length or
 * -EMSGSIZE if out_size is too small.
 * decode: strict (alphabet A-Z a-z 0-9 - _ only, length % 4 != 1, unused
 * trailing bits zero); returns the decoded length or -EINVAL, -EMSGSIZE. */
int rr_jwt_b64url_encode(const uint8_t *in, size_t n, char *out, size_t out_size);
int rr_jwt_b64url_decode(const char *in, size_t n, uint8_t *out, size_t out_size);

#endif
