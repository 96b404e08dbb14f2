/*
 * HS256 JWT (src/auth/jwt.c): base64url (RFC 4648 section 10 vectors), the
 * RFC 7515 appendix A.1 example, tokens minted independently with Python's
 * hmac/hashlib/base64 (pasted below as literals), and every way a token is
 * refused: tampering, alg none / HS512, wrong secret, time window, bad
 * base64url, bad claims, oversize.
 */
#include "auth/jwt.h"
#include "check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t secret[] = "ringroom-test-secret";
#define SECRET_LEN (sizeof(secret) - 1)

/* Minted at dev time with /usr/bin/python3 (hmac, hashlib, base64, json):
 * header {"alg":"HS256","typ":"JWT"}, payload
 * {"sub":"u1","name":"al\u00efce \U0001F600","perms":["read","write"],
 *  "exp":2000000000,"iat":1700000000} (UTF-8, not \u-escaped), secret
 * "ringroom-test-secret". */
static const char py_token_rw[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1MSIsIm5hbWUiOiJhbMOvY2Ug8J-YgCIsInBlcm1zIjpbInJlYWQiLCJ3cml0ZSJdLCJleHAiOjIw"
    "MDAwMDAwMDAsImlhdCI6MTcwMDAwMDAwMH0."
    "aC1jtGSNNb64UzmYhwSXRU5RtiNq1MzzTskZJcJFAVs";
/* header {"alg":"HS256"}, payload {"sub":"reader-7","perms":["read"]} */
static const char py_token_ro[] =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZWFkZXItNyIsInBlcm1zIjpbInJlYWQiXX0."
    "R0QHplu9Z_J8_Enzwyjo_zsWxsgYyP-5yTf4DngmANI";

/* RFC 7515 appendix A.1: header {"typ":"JWT",CRLF "alg":"HS256"}, payload
 * {"iss":"joe",CRLF "exp":1300819380,CRLF "http://example.com/is_root":true},
 * with the JWK key below. It has no "sub", so a good signature still ends
 * in -EINVAL, while a wrong key gives -EACCES. */
static const uint8_t rfc_key[64] = {
    0x03, 0x23, 0x35, 0x4b, 0x2b, 0x0f, 0xa5, 0xbc, 0x83, 0x7e, 0x06, 0x65, 0x77, 0x7b, 0xa6, 0x8f,
    0x5a, 0xb3, 0x28, 0xe6, 0xf0, 0x54, 0xc9, 0x28, 0xa9, 0x0f, 0x84, 0xb2, 0xd2, 0x50, 0x2e, 0xbf,
    0xd3, 0xfb, 0x5a, 0x92, 0xd2, 0x06, 0x47, 0xef, 0x96, 0x8a, 0xb4, 0xc3, 0x77, 0x62, 0x3d, 0x22,
    0x3d, 0x2e, 0x21, 0x72, 0x05, 0x2e, 0x4f, 0x08, 0xc0, 0xcd, 0x9a, 0xf5, 0x67, 0xd0, 0x80, 0xa3};
static const char rfc_header[] = "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
static const char rfc_payload[] =
    "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
static const char rfc_token[] =
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0"
    "cnVlfQ."
    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

#define NOW 1700000000ull

static char tok[RR_JWT_TOKEN_MAX + 64];

/* Sign header/payload with the test secret into tok; returns its length. */
static size_t mint(const char *header, const char *payload)
{
	int n = rr_jwt_sign_raw(header, strlen(header), payload, strlen(payload), secret,
				SECRET_LEN, tok, sizeof(tok));
	if (n < 0) {
		fprintf(stderr, "mint failed: %d for %s\n", n, payload);
		abort();
	}
	return (size_t)n;
}

static int verify_str(const char *t, uint64_t now, struct rr_jwt_claims *c)
{
	return rr_jwt_verify(t, strlen(t), secret, SECRET_LEN, now, c);
}

/* Verify a payload signed under the standard header. */
static int verify_payload(const char *payload, uint64_t now, struct rr_jwt_claims *c)
{
	size_t n = mint("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload);
	return rr_jwt_verify(tok, n, secret, SECRET_LEN, now, c);
}

static bool zeroed(const struct rr_jwt_claims *c)
{
	static const struct rr_jwt_claims zero;
	return memcmp(c, &zero, sizeof(zero)) == 0;
}

static void test_b64url(void)
{
	static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	char out[32];
	uint8_t dec[32];
	for (size_t i = 0; i < 7; i++) {
		int n = rr_jwt_b64url_encode((const uint8_t *)plain[i], strlen(plain[i]), out,
					     sizeof(out));
		CHECK_EQ(n, strlen(enc[i]));
		CHECK(strcmp(out, enc[i]) == 0);
		n = rr_jwt_b64url_decode(enc[i], strlen(enc[i]), dec, sizeof(dec));
		CHECK_EQ(n, strlen(plain[i]));
		CHECK(n >= 0 && memcmp(dec, plain[i], (size_t)n) == 0);
	}
	/* the two url-safe characters (standard base64 would give "+/8") */
	static const uint8_t fb[] = {0xfb, 0xff};
	CHECK_EQ(rr_jwt_b64url_encode(fb, 2, out, sizeof(out)), 3);
	CHECK(strcmp(out, "-_8") == 0);
	CHECK_EQ(rr_jwt_b64url_decode("-_8", 3, dec, sizeof(dec)), 2);
	CHECK(dec[0] == 0xfb && dec[1] == 0xff);

	/* strict: padding, standard alphabet, whitespace, a lone 6-bit
	 * char, non-zero unused bits */
	static const char *bad[] = {"Zg==",  "Zg=", "+_8", "-/8",    "Zm9 v", "Z",
				    "Zm9vY", "Zh",  "Zm9", "Zm\n9v", "Zm9v\0"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = strlen(bad[i]);
		if (i == 10)
			n = 5;
		CHECK_EQ(rr_jwt_b64url_decode(bad[i], n, dec, sizeof(dec)), -EINVAL);
	}
	CHECK_EQ(rr_jwt_b64url_decode("Zm8", 3, dec, 1), -EMSGSIZE);
	CHECK_EQ(rr_jwt_b64url_encode((const uint8_t *)"foo", 3, out, 4), -EMSGSIZE);
	CHECK_EQ(rr_jwt_b64url_encode((const uint8_t *)"foo", 3, out, 5), 4);

	/* every byte value survives a round trip, at each tail length */
	uint8_t all[256], back[256];
	char text[400];
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)(255 - i);
	for (size_t len = 253; len <= 256; len++) {
		int n = rr_jwt_b64url_encode(all, len, text, sizeof(text));
		CHECK(n > 0);
		CHECK_EQ(rr_jwt_b64url_decode(text, (size_t)n, back, sizeof(back)), len);
		CHECK(memcmp(all, back, len) == 0);
	}
}

static void test_rfc7515(void)
{
	struct rr_jwt_claims c;
	/* signing the RFC's exact bytes reproduces the RFC's token */
	int n = rr_jwt_sign_raw(rfc_header, strlen(rfc_header), rfc_payload, strlen(rfc_payload),
				rfc_key, sizeof(rfc_key), tok, sizeof(tok));
	CHECK_EQ(n, strlen(rfc_token));
	CHECK(strcmp(tok, rfc_token) == 0);
	/* good MAC, but no sub: malformed claims, not a bad signature */
	CHECK_EQ(rr_jwt_verify(rfc_token, strlen(rfc_token), rfc_key, sizeof(rfc_key), 1, &c),
		 -EINVAL);
	CHECK(zeroed(&c));
	CHECK_EQ(rr_jwt_verify(rfc_token, strlen(rfc_token), rfc_key, sizeof(rfc_key) - 1, 1, &c),
		 -EACCES);
	CHECK_EQ(verify_str(rfc_token, 1, &c), -EACCES);
}

static void test_python_tokens(void)
{
	struct rr_jwt_claims c;
	CHECK_EQ(verify_str(py_token_rw, NOW, &c), 0);
	CHECK(strcmp(c.sub, "u1") == 0);
	CHECK(strcmp(c.name, "al\xc3\xaf"
			     "ce \xf0\x9f\x98\x80") == 0);
	CHECK(c.perm_read && c.perm_write);
	CHECK_EQ(c.exp, 2000000000);
	CHECK_EQ(c.nbf, 0);
	/* exp is exclusive: valid one second before, expired at it */
	CHECK_EQ(verify_str(py_token_rw, 1999999999, &c), 0);
	CHECK_EQ(verify_str(py_token_rw, 2000000000, &c), -ETIME);
	CHECK(zeroed(&c));

	CHECK_EQ(verify_str(py_token_ro, NOW, &c), 0);
	CHECK(strcmp(c.sub, "reader-7") == 0);
	CHECK(strcmp(c.name, "reader-7") == 0); /* no name: the sub */
	CHECK(c.perm_read && !c.perm_write);
	CHECK_EQ(c.exp, 0);
	/* no exp: never expires */
	CHECK_EQ(verify_str(py_token_ro, UINT64_MAX, &c), 0);

	/* not NUL-terminated: only len bytes count */
	char buf[sizeof(py_token_ro) + 8];
	memcpy(buf, py_token_ro, sizeof(py_token_ro) - 1);
	memcpy(buf + sizeof(py_token_ro) - 1, "AAAA.xyz", 8);
	CHECK_EQ(rr_jwt_verify(buf, sizeof(py_token_ro) - 1, secret, SECRET_LEN, NOW, &c), 0);
	CHECK_EQ(rr_jwt_verify(buf, sizeof(buf), secret, SECRET_LEN, NOW, &c), -EINVAL);
	/* every prefix fails */
	for (size_t n = 0; n + 1 < sizeof(py_token_ro); n++) {
		int rc = rr_jwt_verify(py_token_ro, n, secret, SECRET_LEN, NOW, &c);
		CHECK(rc == -EINVAL || rc == -EACCES);
	}
}

static void test_tampering(void)
{
	struct rr_jwt_claims c;
	char t[sizeof(py_token_rw)];
	memcpy(t, py_token_rw, sizeof(t));
	const char *d1 = strchr(t, '.'), *d2 = strrchr(t, '.');

	/* flip one payload character to another valid one: the MAC catches it */
	char *p = t + (d1 - t) + 5;
	char saved = *p;
	*p = saved == 'A' ? 'B' : 'A';
	CHECK_EQ(verify_str(t, NOW, &c), -EACCES);
	CHECK(zeroed(&c));
	*p = saved;
	CHECK_EQ(verify_str(t, NOW, &c), 0);

	/* a header change: either no longer HS256 JSON or a MAC mismatch */
	p = t + 1;
	saved = *p;
	*p = 'z';
	int rc = verify_str(t, NOW, &c);
	CHECK(rc == -EINVAL || rc == -EACCES);
	*p = saved;

	/* each signature char changed */
	for (char *s = t + (d2 - t) + 1; *s; s++) {
		saved = *s;
		*s = saved == 'Q' ? 'g' : 'Q';
		/* 'Q' and 'g' have zero low bits, so even the last char
		 * decodes canonically: a MAC mismatch */
		CHECK_EQ(verify_str(t, NOW, &c), -EACCES);
		*s = saved;
	}
	CHECK_EQ(verify_str(t, NOW, &c), 0);

	/* signature dropped, shortened, lengthened */
	char cut[sizeof(py_token_rw)];
	size_t head = (size_t)(d2 - t) + 1;
	memcpy(cut, t, head);
	cut[head] = '\0';
	CHECK_EQ(verify_str(cut, NOW, &c), -EACCES);
	memcpy(cut, t, sizeof(t));
	cut[strlen(cut) - 3] = '\0'; /* 40 chars: 30 bytes */
	CHECK_EQ(verify_str(cut, NOW, &c), -EACCES);
	char longer[sizeof(py_token_rw) + 4];
	snprintf(longer, sizeof(longer), "%sAAAA", py_token_rw);
	CHECK_EQ(verify_str(longer, NOW, &c), -EACCES);

	/* wrong secrets: different, a prefix, longer */
	CHECK_EQ(rr_jwt_verify(t, strlen(t), (const uint8_t *)"ringroom-test-secreT", SECRET_LEN,
			       NOW, &c),
		 -EACCES);
	CHECK_EQ(rr_jwt_verify(t, strlen(t), secret, SECRET_LEN - 1, NOW, &c), -EACCES);
	CHECK_EQ(rr_jwt_verify(t, strlen(t), (const uint8_t *)"ringroom-test-secret!",
			       SECRET_LEN + 1, NOW, &c),
		 -EACCES);
	CHECK_EQ(rr_jwt_verify(t, strlen(t), secret, 0, NOW, &c), -EINVAL);
}

static void test_alg(void)
{
	struct rr_jwt_claims c;
	const char *payload = "{\"sub\":\"u1\"}";
	size_t n;

	/* alg none, unsigned and with a (valid HS256) MAC attached anyway */
	n = mint("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload);
	CHECK_EQ(rr_jwt_verify(tok, n, secret, SECRET_LEN, NOW, &c), -EINVAL);
	char *last = strrchr(tok, '.');
	last[1] = '\0';
	CHECK_EQ(verify_str(tok, NOW, &c), -EINVAL);

	static const char *refused[] = {
	    "{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
	    "{\"alg\":\"HS384\"}",
	    "{\"alg\":\"RS256\"}",
	    "{\"alg\":\"hs256\"}",
	    "{\"alg\":\"HS256 \"}",
	    "{\"alg\":\"None\"}",
	    "{\"alg\":null}",
	    "{\"alg\":256}",
	    "{\"typ\":\"JWT\"}",
	    "{}",
	    "[\"HS256\"]",
	    "\"HS256\"",
	    "{\"alg\":\"HS256\",\"typ\":\"JWE\"}",
	    "{\"alg\":\"HS256\",\"typ\":1}",
	    "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
	    "{\"alg\":\"HS256\",\"alg\":\"HS256\"}",
	    "{\"alg\":\"HS256\"",
	    "",
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		n = mint(refused[i], payload);
		int rc = rr_jwt_verify(tok, n, secret, SECRET_LEN, NOW, &c);
		if (rc != -EINVAL)
			fprintf(stderr, "header %s: %d\n", refused[i], rc);
		CHECK_EQ(rc, -EINVAL);
	}

	/* accepted headers: alg alone, typ in any case, extra members */
	static const char *accepted[] = {
	    "{\"alg\":\"HS256\"}",
	    "{\"typ\":\"jwt\",\"alg\":\"HS256\"}",
	    "{\"alg\":\"HS256\",\"kid\":\"k1\"}",
	    " { \"alg\" : \"HS256\" } ",
	};
	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		n = mint(accepted[i], payload);
		CHECK_EQ(rr_jwt_verify(tok, n, secret, SECRET_LEN, NOW, &c), 0);
	}
}

static void test_time(void)
{
	struct rr_jwt_claims c;
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"exp\":1700000001}", NOW, &c), 0);
	CHECK_EQ(c.exp, 1700000001);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"exp\":1700000000}", NOW, &c), -ETIME);
	CHECK(zeroed(&c));
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"exp\":1}", NOW, &c), -ETIME);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"exp\":0}", NOW, &c), -ETIME);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"exp\":-5}", NOW, &c), -ETIME);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"exp\":1700000000.5}", NOW, &c), -ETIME);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"exp\":1700000001.5}", NOW, &c), 0);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"exp\":1e300}", NOW, &c), 0);
	CHECK(c.exp == UINT64_MAX);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"exp\":\"2000000000\"}", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"exp\":null}", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"exp\":true}", NOW, &c), -EINVAL);
	/* integer overflow is a JSON error in jansson */
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"exp\":99999999999999999999}", NOW, &c), -EINVAL);

	/* nbf: valid from nbf on */
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"nbf\":1700000001}", NOW, &c), -ETIME);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"nbf\":1700000000}", NOW, &c), 0);
	CHECK_EQ(c.nbf, 1700000000);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"nbf\":1,\"exp\":1700000100}", NOW, &c), 0);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"nbf\":\"x\"}", NOW, &c), -EINVAL);
	/* bad claims are reported before the time window */
	CHECK_EQ(verify_payload("{\"exp\":1}", NOW, &c), -EINVAL);
}

static void test_claims(void)
{
	struct rr_jwt_claims c;
	char payload[600], s129[130], s128[129];
	memset(s128, 's', 128);
	s128[128] = '\0';
	memset(s129, 's', 129);
	s129[129] = '\0';

	CHECK_EQ(verify_payload("{}", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"name\":\"alice\"}", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":\"\"}", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":7}", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":null}", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":\"a\\u0000b\"}", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":\"a\",\"sub\":\"b\"}", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":\"\xff\"}", NOW, &c), -EINVAL); /* not UTF-8 */
	CHECK_EQ(verify_payload("[\"sub\"]", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":\"u\"", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":\"u\"} x", NOW, &c), -EINVAL);

	snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",\"name\":\"%s\"}", s128, s128);
	CHECK_EQ(verify_payload(payload, NOW, &c), 0);
	CHECK_EQ(strlen(c.sub), 128);
	CHECK_EQ(strlen(c.name), 128);
	snprintf(payload, sizeof(payload), "{\"sub\":\"%s\"}", s129);
	CHECK_EQ(verify_payload(payload, NOW, &c), -EINVAL);
	snprintf(payload, sizeof(payload), "{\"sub\":\"u\",\"name\":\"%s\"}", s129);
	CHECK_EQ(verify_payload(payload, NOW, &c), -EINVAL);

	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"name\":\"\"}", NOW, &c), 0);
	CHECK(strcmp(c.name, "u") == 0);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"name\":5}", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"name\":\"Bob \\\"B\\\"\"}", NOW, &c), 0);
	CHECK(strcmp(c.name, "Bob \"B\"") == 0);

	/* perms: absent → both; [] → none; unknown strings grant nothing */
	CHECK_EQ(verify_payload("{\"sub\":\"u\"}", NOW, &c), 0);
	CHECK(c.perm_read && c.perm_write);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"perms\":[]}", NOW, &c), 0);
	CHECK(!c.perm_read && !c.perm_write);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"perms\":[\"write\"]}", NOW, &c), 0);
	CHECK(!c.perm_read && c.perm_write);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"perms\":[\"admin\",\"READ\",\"read\"]}", NOW, &c),
		 0);
	CHECK(c.perm_read && !c.perm_write);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"perms\":\"read\"}", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"perms\":[1]}", NOW, &c), -EINVAL);
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"perms\":null}", NOW, &c), -EINVAL);
	/* other claims are ignored */
	CHECK_EQ(verify_payload("{\"sub\":\"u\",\"iss\":\"x\",\"aud\":[1],\"iat\":{}}", NOW, &c),
		 0);
}

static void test_structure(void)
{
	struct rr_jwt_claims c;
	static const char *bad[] = {
	    "",
	    ".",
	    "..",
	    "...",
	    "abc",
	    "eyJhbGciOiJIUzI1NiJ9",
	    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0",
	    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.sig.extra",
	    "eyJhbGciOiJIUzI1NiJ9=.eyJzdWIiOiJ1In0.AAAA",
	    " eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.AAAA",
	    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.AA+A",
	    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.A",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = verify_str(bad[i], NOW, &c);
		if (rc != -EINVAL)
			fprintf(stderr, "token %zu: %d\n", i, rc);
		CHECK_EQ(rc, -EINVAL);
		CHECK(zeroed(&c));
	}
	CHECK_EQ(rr_jwt_verify(NULL, 0, secret, SECRET_LEN, NOW, &c), -EINVAL);
	/* the payload is not even decoded before the MAC matches */
	CHECK_EQ(verify_str("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0=.AAAA", NOW, &c), -EACCES);

	/* the standard-alphabet signature of a good token is refused */
	char t[sizeof(py_token_ro)];
	memcpy(t, py_token_ro, sizeof(t));
	for (char *s = strrchr(t, '.'); *s; s++) {
		if (*s == '_')
			*s = '/';
		else if (*s == '-')
			*s = '+';
	}
	CHECK_EQ(verify_str(t, NOW, &c), -EINVAL);
}

static void test_size(void)
{
	struct rr_jwt_claims c;
	/* the largest accepted token: 8192 bytes = 36 (header) + 1 + 8111
	 * (payload of 6083 bytes) + 1 + 43 */
	static char payload[6090];
	const char *pre = "{\"sub\":\"u1\",\"pad\":\"";
	size_t pre_len = strlen(pre);
	memcpy(payload, pre, pre_len);
	memset(payload + pre_len, 'x', 6083 - pre_len - 2);
	memcpy(payload + 6083 - 2, "\"}", 3);
	CHECK_EQ(strlen(payload), 6083);
	size_t n = mint("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload);
	CHECK_EQ(n, RR_JWT_TOKEN_MAX);
	CHECK_EQ(rr_jwt_verify(tok, n, secret, SECRET_LEN, NOW, &c), 0);
	CHECK(strcmp(c.sub, "u1") == 0);

	/* one payload byte more cannot be signed... */
	payload[6083 - 2] = 'x';
	memcpy(payload + 6083 - 1, "\"}", 3);
	CHECK_EQ(rr_jwt_sign_raw("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", 27, payload,
				 strlen(payload), secret, SECRET_LEN, tok, sizeof(tok)),
		 -EMSGSIZE);
	/* ...nor verified: refused on length alone */
	static char huge[RR_JWT_TOKEN_MAX + 2];
	memset(huge, 'A', sizeof(huge));
	huge[100] = '.';
	huge[200] = '.';
	CHECK_EQ(rr_jwt_verify(huge, RR_JWT_TOKEN_MAX + 1, secret, SECRET_LEN, NOW, &c), -EMSGSIZE);
	CHECK_EQ(rr_jwt_verify(huge, sizeof(huge), secret, SECRET_LEN, NOW, &c), -EMSGSIZE);
	CHECK_EQ(rr_jwt_verify(huge, (size_t)1 << 30, secret, SECRET_LEN, NOW, &c), -EMSGSIZE);
}

static void test_sign(void)
{
	struct rr_jwt_claims in = {0}, out;
	char t[512];
	strcpy(in.sub, "u42");
	strcpy(in.name, "Zo\xc3\xab \"quoted\"");
	in.perm_write = true;
	in.exp = NOW + 60;
	in.nbf = NOW - 60;
	int n = rr_jwt_sign(&in, secret, SECRET_LEN, t, sizeof(t));
	CHECK(n > 0 && (size_t)n == strlen(t));
	CHECK_EQ(rr_jwt_verify(t, (size_t)n, secret, SECRET_LEN, NOW, &out), 0);
	CHECK(memcmp(&in, &out, sizeof(in)) == 0);
	CHECK_EQ(rr_jwt_verify(t, (size_t)n, secret, SECRET_LEN, NOW + 60, &out), -ETIME);
	CHECK_EQ(rr_jwt_verify(t, (size_t)n, secret, SECRET_LEN, NOW - 61, &out), -ETIME);

	/* no name, no perms, no times */
	struct rr_jwt_claims bare = {0};
	strcpy(bare.sub, "x");
	n = rr_jwt_sign(&bare, secret, SECRET_LEN, t, sizeof(t));
	CHECK(n > 0);
	CHECK_EQ(rr_jwt_verify(t, (size_t)n, secret, SECRET_LEN, NOW, &out), 0);
	CHECK(strcmp(out.name, "x") == 0 && !out.perm_read && !out.perm_write);
	CHECK_EQ(out.exp, 0);

	CHECK_EQ(rr_jwt_sign(&bare, secret, SECRET_LEN, t, (size_t)n), -EMSGSIZE);
	CHECK_EQ(rr_jwt_sign(&bare, secret, SECRET_LEN, t, (size_t)n + 1), n);
	CHECK_EQ(rr_jwt_sign(&bare, secret, 0, t, sizeof(t)), -EINVAL);
	bare.sub[0] = '\0';
	CHECK_EQ(rr_jwt_sign(&bare, secret, SECRET_LEN, t, sizeof(t)), -EINVAL);
	strcpy(bare.sub, "\xc3("); /* not UTF-8 */
	CHECK_EQ(rr_jwt_sign(&bare, secret, SECRET_LEN, t, sizeof(t)), -EINVAL);
}

static void test_strerror(void)
{
	CHECK(strcmp(rr_jwt_strerror(-EACCES), "bad signature") == 0);
	CHECK(strcmp(rr_jwt_strerror(-ETIME), "token expired or not yet valid") == 0);
	CHECK(strcmp(rr_jwt_strerror(-EINVAL), "malformed token") == 0);
	CHECK(strcmp(rr_jwt_strerror(-EMSGSIZE), "token too long") == 0);
	CHECK(rr_jwt_strerror(-12345) != NULL);
}

/* tools/mint-token (an independent Python implementation) and this
 * verifier agree; run when meson passes the script's path. */
static void test_mint_token(const char *tool)
{
	static const struct {
		const char *args;
		int rc;
		const char *sub, *name;
		bool r, w;
		uint64_t exp;
	} cases[] = {
	    {"--sub u1 --name 'al\xc3\xaf"
	     "ce' --perms read,write --ttl 3600",
	     0, "u1",
	     "al\xc3\xaf"
	     "ce",
	     true, true, NOW + 3600},
	    {"--sub reader --perms read --exp 1700000001", 0, "reader", "reader", true, false,
	     NOW + 1},
	    {"--sub nobody --perms ''", 0, "nobody", "nobody", false, false, 0},
	    {"--sub anyone", 0, "anyone", "anyone", true, true, 0},
	    {"--sub old --ttl 1 --now 1600000000", -ETIME, "", "", false, false, 0},
	    {"--sub later --nbf 1700000100", -ETIME, "", "", false, false, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[512], t[RR_JWT_TOKEN_MAX + 2];
		/* --now first: a later --now in args wins (argparse) */
		snprintf(cmd, sizeof(cmd), "%s --secret ringroom-test-secret --now %llu %s", tool,
			 (unsigned long long)NOW, cases[i].args);
		FILE *f = popen(cmd, "r");
		CHECK(f != NULL);
		if (f == NULL)
			continue;
		size_t n = fread(t, 1, sizeof(t) - 1, f);
		int status = pclose(f);
		CHECK_EQ(status, 0);
		t[n] = '\0';
		while (n > 0 && t[n - 1] == '\n')
			t[--n] = '\0';
		struct rr_jwt_claims c;
		int rc = rr_jwt_verify(t, n, secret, SECRET_LEN, NOW, &c);
		if (rc != cases[i].rc)
			fprintf(stderr, "mint-token %s: rc %d\n", cases[i].args, rc);
		CHECK_EQ(rc, cases[i].rc);
		if (rc != 0)
			continue;
		CHECK(strcmp(c.sub, cases[i].sub) == 0);
		CHECK(strcmp(c.name, cases[i].name) == 0);
		CHECK(c.perm_read == cases[i].r && c.perm_write == cases[i].w);
		CHECK_EQ(c.exp, cases[i].exp);
		/* and the wrong secret fails */
		CHECK_EQ(rr_jwt_verify(t, n, (const uint8_t *)"x", 1, NOW, &c), -EACCES);
	}
}

int main(int argc, char **argv)
{
	test_b64url();
	test_rfc7515();
	test_python_tokens();
	test_tampering();
	test_alg();
	test_time();
	test_claims();
	test_structure();
	test_sign();
	test_size();
	test_strerror();
	if (argc > 1)
		test_mint_token(argv[1]);
	return check_done();
}
