/*
 * libFuzzer target for HS256 JWT verification (src/auth/jwt.c).
 *
 * The first byte picks a mode, the rest is the input:
 *   0  the input is a token: verification must return one of the documented
 *      codes, leave the claims zeroed on failure, and (since the fuzzer
 *      cannot forge a MAC) essentially never succeed; if it does, the claims
 *      must still be well-formed.
 *   1  the input is "header\0payload": both are signed with the secret, so
 *      the MAC always matches and the fuzzer reaches the header and claims
 *      checks. Never -EACCES; on success the claims are well-formed,
 *      re-signing them verifies to the same claims, and changing any one
 *      signature character makes the token fail.
 *   2  base64url: a successful decode re-encodes to exactly the input
 *      (strictness: one text per byte string), and encode → decode is the
 *      identity.
 */
#include "auth/jwt.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

static const uint8_t secret[] = "fuzz-secret";
#define SECRET_LEN (sizeof(secret) - 1)
#define NOW 1700000000ull

static bool zeroed(const struct rr_jwt_claims *c)
{
	static const struct rr_jwt_claims zero;
	return memcmp(c, &zero, sizeof(zero)) == 0;
}

static void check_claims(const struct rr_jwt_claims *c)
{
	size_t sub = strnlen(c->sub, sizeof(c->sub)), name = strnlen(c->name, sizeof(c->name));
	REQUIRE(sub >= 1 && sub <= RR_JWT_SUB_MAX);
	REQUIRE(name >= 1 && name <= RR_JWT_NAME_MAX);
	REQUIRE(c->exp == 0 || c->exp > NOW);
	REQUIRE(c->nbf <= NOW);
}

static bool rc_known(int rc)
{
	return rc == 0 || rc == -EMSGSIZE || rc == -EINVAL || rc == -EACCES || rc == -ETIME;
}

static void mode_token(const uint8_t *d, size_t n)
{
	/* an exact-size copy so ASan sees any read past the end */
	char *t = malloc(n ? n : 1);
	if (n)
		memcpy(t, d, n);
	struct rr_jwt_claims c;
	int rc = rr_jwt_verify(t, n, secret, SECRET_LEN, NOW, &c);
	REQUIRE(rc_known(rc));
	if (rc == 0)
		check_claims(&c);
	else
		REQUIRE(zeroed(&c));
	if (n > RR_JWT_TOKEN_MAX)
		REQUIRE(rc == -EMSGSIZE);
	free(t);
}

static void mode_signed(const uint8_t *d, size_t n)
{
	const uint8_t *nul = memchr(d, 0, n);
	size_t hl = nul ? (size_t)(nul - d) : n;
	const char *header = (const char *)d, *payload = nul ? (const char *)nul + 1 : "";
	size_t pl = nul ? n - hl - 1 : 0;

	static char tok[RR_JWT_TOKEN_MAX + 1];
	int len = rr_jwt_sign_raw(header, hl, payload, pl, secret, SECRET_LEN, tok, sizeof(tok));
	if (len < 0) {
		REQUIRE(len == -EMSGSIZE);
		return;
	}
	struct rr_jwt_claims c;
	int rc = rr_jwt_verify(tok, (size_t)len, secret, SECRET_LEN, NOW, &c);
	REQUIRE(rc == 0 || rc == -EINVAL || rc == -ETIME);
	if (rc != 0) {
		REQUIRE(zeroed(&c));
		return;
	}
	check_claims(&c);

	/* the claims survive signing them again (rr_jwt_sign writes JSON
	 * integers, so a time clamped from a huge real can't be re-signed) */
	static char again[RR_JWT_TOKEN_MAX + 1];
	struct rr_jwt_claims c2;
	int n2 = rr_jwt_sign(&c, secret, SECRET_LEN, again, sizeof(again));
	if (c.exp > INT64_MAX) {
		REQUIRE(n2 == -EINVAL);
	} else {
		REQUIRE(n2 > 0);
		REQUIRE(rr_jwt_verify(again, (size_t)n2, secret, SECRET_LEN, NOW, &c2) == 0);
		REQUIRE(memcmp(&c, &c2, sizeof(c)) == 0);
	}

	/* any changed signature character breaks it */
	char *sig = strrchr(tok, '.') + 1;
	size_t k = d[n / 2 % (n ? n : 1)] % strlen(sig);
	char saved = sig[k];
	sig[k] = saved == 'A' ? 'B' : 'A';
	rc = rr_jwt_verify(tok, (size_t)len, secret, SECRET_LEN, NOW, &c2);
	REQUIRE(rc == -EACCES || rc == -EINVAL);
	/* and the wrong secret never verifies */
	sig[k] = saved;
	REQUIRE(rr_jwt_verify(tok, (size_t)len, secret, SECRET_LEN, NOW, &c2) == 0);
	rc = rr_jwt_verify(tok, (size_t)len, secret, SECRET_LEN - 1, NOW, &c2);
	REQUIRE(rc == -EACCES);
}

static void mode_b64(const uint8_t *d, size_t n)
{
	static uint8_t dec[RR_JWT_TOKEN_MAX];
	static char enc[RR_JWT_TOKEN_MAX * 2];
	if (n > RR_JWT_TOKEN_MAX)
		n = RR_JWT_TOKEN_MAX;
	int m = rr_jwt_b64url_decode((const char *)d, n, dec, sizeof(dec));
	if (m >= 0) {
		int e = rr_jwt_b64url_encode(dec, (size_t)m, enc, sizeof(enc));
		REQUIRE(e >= 0 && (size_t)e == n && memcmp(enc, d, n) == 0);
	} else {
		REQUIRE(m == -EINVAL);
	}
	int e = rr_jwt_b64url_encode(d, n, enc, sizeof(enc));
	REQUIRE(e >= 0 && (size_t)e == strlen(enc));
	m = rr_jwt_b64url_decode(enc, (size_t)e, dec, sizeof(dec));
	REQUIRE(m >= 0 && (size_t)m == n && memcmp(dec, d, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
		mode_token(data + 1, size - 1);
		break;
	case 1:
		mode_signed(data + 1, size - 1);
		break;
	default:
		mode_b64(data + 1, size - 1);
		break;
	}
	return 0;
}
