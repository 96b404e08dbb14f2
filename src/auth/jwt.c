/*
 * HS256 JWT verification and signing (see jwt.h for what is accepted).
 *
 * DESIGN: verification runs in a fixed order so that attacker-chosen bytes
 * reach as little code as possible before the MAC is checked: length cap,
 * split, header (tiny: it only selects the algorithm, and anything but HS256
 * stops here, which is what defeats "alg":"none" and algorithm confusion),
 * signature, and only then the payload's JSON. One stack buffer, sized for
 * the longest token, holds each decoded segment in turn, so verification
 * allocates only inside jansson. Nothing here logs: see jwt.h.
 */
#include "auth/jwt.h"
#include "core/base64.h"
#include "core/assert.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>

#define MAC_LEN 32 /* SHA-256 */

/* Decoded bytes of the longest possible segment. */
#define SEG_MAX (RR_JWT_TOKEN_MAX / 4 * 3 + 3)

int rr_jwt_b64url_encode(const uint8_t *in, size_t n, char *out, size_t out_size)
{
	size_t need = rr_b64_encoded_len(n, true);
	if (need >= out_size || need > INT32_MAX)
		return -EMSGSIZE;
	return (int)rr_b64_encode(in, n, out, true);
}

int rr_jwt_b64url_decode(const char *in, size_t n, uint8_t *out, size_t out_size)
{
	if (n / 4 * 3 > INT32_MAX)
		return -EMSGSIZE;
	return (int)rr_b64_decode(in, n, out, out_size, true);
}

static int hmac_sha256(const uint8_t *key, size_t key_len, const void *msg, size_t n,
		       uint8_t mac[MAC_LEN])
{
	if (key_len > UINT32_MAX || n > UINT32_MAX)
		return -EINVAL;
	Hmac h;
	int rc = wc_HmacInit(&h, NULL, INVALID_DEVID);
	if (rc != 0)
		return -ENOMEM;
	rc = wc_HmacSetKey(&h, WC_SHA256, key, (word32)key_len);
	if (rc == 0)
		rc = wc_HmacUpdate(&h, msg, (word32)n);
	if (rc == 0)
		rc = wc_HmacFinal(&h, mac);
	wc_HmacFree(&h);
	/* the context holds key-derived pads */
	explicit_bzero(&h, sizeof(h));
	return rc == 0 ? 0 : -EIO;
}

/* Equal in time that depends only on n, not on where the first difference
 * is, so a forger cannot learn the MAC byte by byte. */
static bool equal_ct(const uint8_t *a, const uint8_t *b, size_t n)
{
	volatile uint8_t diff = 0;
	for (size_t i = 0; i < n; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

static json_t *load_segment(const char *seg, size_t n, uint8_t *buf, int *rc)
{
	int len = rr_jwt_b64url_decode(seg, n, buf, SEG_MAX);
	if (len < 0) {
		*rc = -EINVAL;
		return NULL;
	}
	json_error_t jerr;
	json_t *j = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		/* jansson reports out-of-memory as a parse error too; at
		 * these sizes malformed input is the only likely cause */
		*rc = -EINVAL;
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		*rc = -EINVAL;
		return NULL;
	}
	return j;
}

static int check_header(const json_t *h)
{
	const json_t *alg = json_object_get(h, "alg");
	if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0)
		return -EINVAL;
	const json_t *typ = json_object_get(h, "typ");
	if (typ != NULL && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0))
		return -EINVAL;
	if (json_object_get(h, "crit") != NULL)
		return -EINVAL;
	return 0;
}

/* A NumericDate claim: absent → *present false; a number → seconds,
 * fraction dropped, clamped to [0, UINT64_MAX]; anything else -EINVAL. */
static int claim_time(const json_t *v, bool *present, uint64_t *t)
{
	*present = false;
	*t = 0;
	if (v == NULL)
		return 0;
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		*t = i > 0 ? (uint64_t)i : 0;
	} else if (json_is_real(v)) {
		double r = json_real_value(v);
		if (r >= 18446744073709551615.0)
			*t = UINT64_MAX;
		else if (r >= 1.0)
			*t = (uint64_t)r;
	} else {
		return -EINVAL;
	}
	*present = true;
	return 0;
}

static int copy_string(char *dst, size_t cap, const json_t *s)
{
	size_t n = json_string_length(s);
	if (n >= cap)
		return -EINVAL;
	memcpy(dst, json_string_value(s), n);
	dst[n] = '\0';
	return 0;
}

static int read_claims(const json_t *p, uint64_t now_s, struct rr_jwt_claims *out)
{
	const json_t *sub = json_object_get(p, "sub");
	if (!json_is_string(sub) || json_string_length(sub) == 0)
		return -EINVAL;
	if (copy_string(out->sub, sizeof(out->sub), sub) != 0)
		return -EINVAL;

	const json_t *name = json_object_get(p, "name");
	if (name == NULL || (json_is_string(name) && json_string_length(name) == 0))
		memcpy(out->name, out->sub, sizeof(out->name));
	else if (!json_is_string(name) || copy_string(out->name, sizeof(out->name), name) != 0)
		return -EINVAL;

	const json_t *perms = json_object_get(p, "perms");
	if (perms == NULL) {
		out->perm_read = out->perm_write = true;
	} else if (json_is_array(perms)) {
		/* bounded: the token is at most RR_JWT_TOKEN_MAX bytes */
		size_t i;
		const json_t *e;
		json_array_foreach(perms, i, e)
		{
			if (!json_is_string(e))
				return -EINVAL;
			const char *s = json_string_value(e);
			if (strcmp(s, "read") == 0)
				out->perm_read = true;
			else if (strcmp(s, "write") == 0)
				out->perm_write = true;
			else if (strcmp(s, "publish") == 0)
				out->perm_publish = true;
			else if (strcmp(s, "admin") == 0)
				out->perm_admin = true;
		}
	} else {
		return -EINVAL;
	}

	bool has_exp, has_nbf;
	if (claim_time(json_object_get(p, "exp"), &has_exp, &out->exp) != 0 ||
	    claim_time(json_object_get(p, "nbf"), &has_nbf, &out->nbf) != 0)
		return -EINVAL;
	if (has_exp && out->exp <= now_s)
		return -ETIME;
	if (has_nbf && out->nbf > now_s)
		return -ETIME;
	return 0;
}

int rr_jwt_verify(const char *token, size_t len, const uint8_t *secret, size_t secret_len,
		  uint64_t now_s, struct rr_jwt_claims *out)
{
	rr_assert(out != NULL);
	rr_assert(token != NULL || len == 0);
	memset(out, 0, sizeof(*out));
	if (len > RR_JWT_TOKEN_MAX)
		return -EMSGSIZE;
	if (secret == NULL || secret_len == 0)
		return -EINVAL;

	const char *end = token + len;
	const char *d1 = len ? memchr(token, '.', len) : NULL;
	if (d1 == NULL)
		return -EINVAL;
	const char *d2 = memchr(d1 + 1, '.', (size_t)(end - (d1 + 1)));
	if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(end - (d2 + 1))) != NULL)
		return -EINVAL;

	uint8_t buf[SEG_MAX];
	int rc = 0;
	json_t *header = load_segment(token, (size_t)(d1 - token), buf, &rc);
	if (header == NULL)
		return rc;
	rc = check_header(header);
	json_decref(header);
	if (rc != 0)
		return rc;

	int sig_len = rr_jwt_b64url_decode(d2 + 1, (size_t)(end - (d2 + 1)), buf, SEG_MAX);
	if (sig_len < 0)
		return -EINVAL;
	if (sig_len != MAC_LEN)
		return -EACCES;
	uint8_t mac[MAC_LEN];
	rc = hmac_sha256(secret, secret_len, token, (size_t)(d2 - token), mac);
	if (rc != 0)
		return rc;
	if (!equal_ct(mac, buf, MAC_LEN))
		return -EACCES;

	json_t *payload = load_segment(d1 + 1, (size_t)(d2 - (d1 + 1)), buf, &rc);
	if (payload == NULL)
		return rc;
	rc = read_claims(payload, now_s, out);
	json_decref(payload);
	if (rc != 0)
		memset(out, 0, sizeof(*out));
	return rc;
}

int rr_jwt_require_exp(const struct rr_jwt_claims *claims)
{
	return claims->exp != 0 ? 0 : -ENODATA;
}

const char *rr_jwt_strerror(int rc)
{
	switch (rc) {
	case 0:
		return "ok";
	case -EMSGSIZE:
		return "token too long";
	case -EINVAL:
		return "malformed token";
	case -EACCES:
		return "bad signature";
	case -ETIME:
		return "token expired or not yet valid";
	case -ENODATA:
		return "token has no exp claim";
	case -ENOMEM:
		return "out of memory";
	default:
		return "token rejected";
	}
}

int rr_jwt_sign_raw(const char *header_json, size_t header_len, const char *payload_json,
		    size_t payload_len, const uint8_t *secret, size_t secret_len, char *out,
		    size_t out_size)
{
	rr_assert(header_json != NULL && payload_json != NULL);
	rr_assert(out != NULL);
	if (secret == NULL || secret_len == 0)
		return -EINVAL;
	size_t hl = rr_b64_encoded_len(header_len, true), pl = rr_b64_encoded_len(payload_len, true);
	size_t sl = rr_b64_encoded_len(MAC_LEN, true);
	if (header_len > RR_JWT_TOKEN_MAX || payload_len > RR_JWT_TOKEN_MAX)
		return -EMSGSIZE;
	size_t total = hl + 1 + pl + 1 + sl;
	if (total > RR_JWT_TOKEN_MAX || total >= out_size)
		return -EMSGSIZE;

	int n = rr_jwt_b64url_encode((const uint8_t *)header_json, header_len, out, out_size);
	rr_assert(n == (int)hl);
	out[hl] = '.';
	n = rr_jwt_b64url_encode((const uint8_t *)payload_json, payload_len, out + hl + 1,
				 out_size - hl - 1);
	rr_assert(n == (int)pl);
	out[hl + 1 + pl] = '.';

	uint8_t mac[MAC_LEN];
	int rc = hmac_sha256(secret, secret_len, out, hl + 1 + pl, mac);
	if (rc != 0)
		return rc;
	n = rr_jwt_b64url_encode(mac, MAC_LEN, out + hl + 1 + pl + 1, out_size - hl - pl - 2);
	rr_assert(n == (int)sl);
	return (int)total;
}

int rr_jwt_sign(const struct rr_jwt_claims *claims, const uint8_t *secret, size_t secret_len,
		char *out, size_t out_size)
{
	rr_assert(claims != NULL && out != NULL);
	size_t sub_len = strnlen(claims->sub, sizeof(claims->sub));
	size_t name_len = strnlen(claims->name, sizeof(claims->name));
	if (sub_len == 0 || sub_len > RR_JWT_SUB_MAX || name_len > RR_JWT_NAME_MAX ||
	    claims->exp > INT64_MAX || claims->nbf > INT64_MAX)
		return -EINVAL;

	int rc = -ENOMEM;
	json_t *p = json_object();
	json_t *perms = json_array();
	if (p == NULL || perms == NULL)
		goto out_free;
	json_t *s = json_stringn(claims->sub, sub_len);
	if (s == NULL) {
		rc = -EINVAL; /* not UTF-8 */
		goto out_free;
	}
	json_object_set_new(p, "sub", s);
	if (name_len > 0) {
		json_t *nm = json_stringn(claims->name, name_len);
		if (nm == NULL) {
			rc = -EINVAL;
			goto out_free;
		}
		json_object_set_new(p, "name", nm);
	}
	if (claims->perm_read)
		json_array_append_new(perms, json_string("read"));
	if (claims->perm_write)
		json_array_append_new(perms, json_string("write"));
	if (claims->perm_publish)
		json_array_append_new(perms, json_string("publish"));
	if (claims->perm_admin)
		json_array_append_new(perms, json_string("admin"));
	json_object_set(p, "perms", perms);
	if (claims->exp != 0)
		json_object_set_new(p, "exp", json_integer((json_int_t)claims->exp));
	if (claims->nbf != 0)
		json_object_set_new(p, "nbf", json_integer((json_int_t)claims->nbf));

	char *payload = json_dumps(p, JSON_COMPACT);
	if (payload == NULL)
		goto out_free;
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	rc = rr_jwt_sign_raw(header, sizeof(header) - 1, payload, strlen(payload), secret,
			     secret_len, out, out_size);
	free(payload);
out_free:
	json_decref(perms);
	json_decref(p);
	return rc;
}
