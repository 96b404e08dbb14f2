/*
 * SHA-1 (FIPS 180-4 / FIPS 180-2 appendix vectors), base64 (RFC 4648
 * section 10 vectors and malformed input) and the RFC 6455 1.3 sample key.
 */
#include "ws/ws.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

static void hex(const uint8_t *d, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t k = 0; k < n; k++) {
		out[2 * k] = digits[d[k] >> 4];
		out[2 * k + 1] = digits[d[k] & 15];
	}
	out[2 * n] = '\0';
}

static int sha1_is(const void *data, size_t n, const char *want)
{
	uint8_t d[20];
	char h[41];
	rr_sha1(data, n, d);
	hex(d, 20, h);
	if (strcmp(h, want) != 0) {
		fprintf(stderr, "sha1 of %zu bytes: got %s want %s\n", n, h, want);
		return 0;
	}
	return 1;
}

static void test_sha1(void)
{
	CHECK(sha1_is("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d"));
	CHECK(sha1_is("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"));
	CHECK(sha1_is(NULL, 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"));
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	CHECK(sha1_is(two, strlen(two), "84983e441c3bd26ebaae4aa1f95129e5e54670f1"));
	const char *fox = "The quick brown fox jumps over the lazy dog";
	CHECK(sha1_is(fox, strlen(fox), "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"));
	/* lengths around the padding boundary (55, 56, 63, 64 bytes) */
	const char *a64 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	CHECK(sha1_is(a64, 55, "c1c8bbdc22796e28c0e15163d20899b65621d65a"));
	CHECK(sha1_is(a64, 56, "c2db330f6083854c99d4b5bfb6e8f29f201be699"));
	CHECK(sha1_is(a64, 64, "0098ba824b5c16427bd7a1122a5a442a25ec644d"));
	size_t big = 1000000;
	char *m = malloc(big);
	CHECK(m != NULL);
	if (m) {
		memset(m, 'a', big);
		CHECK(sha1_is(m, big, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"));
		free(m);
	}
}

static void test_base64(void)
{
	static const struct {
		const char *plain, *enc;
	} v[] = {
	    {"", ""},
	    {"f", "Zg=="},
	    {"fo", "Zm8="},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg=="},
	    {"fooba", "Zm9vYmE="},
	    {"foobar", "Zm9vYmFy"},
	};
	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		char out[16];
		size_t pn = strlen(v[k].plain);
		size_t en = rr_base64_encode((const uint8_t *)v[k].plain, pn, out);
		CHECK_EQ(en, strlen(v[k].enc));
		CHECK(strcmp(out, v[k].enc) == 0);
		uint8_t dec[16];
		CHECK_EQ(rr_base64_decode(v[k].enc, en, dec, sizeof(dec)), (ssize_t)pn);
		CHECK(memcmp(dec, v[k].plain, pn) == 0);
		/* too small an output buffer is an error, not an overflow */
		if (pn > 0)
			CHECK_EQ(rr_base64_decode(v[k].enc, en, dec, pn - 1), -1);
	}
	/* every byte value round-trips */
	uint8_t all[256], dec[256];
	char enc[400];
	for (int k = 0; k < 256; k++)
		all[k] = (uint8_t)k;
	for (size_t n = 0; n <= 256; n += 1) {
		size_t en = rr_base64_encode(all + 256 - n, n, enc);
		CHECK_EQ(en, (n + 2) / 3 * 4);
		CHECK_EQ(rr_base64_decode(enc, en, dec, sizeof(dec)), (ssize_t)n);
		CHECK(memcmp(dec, all + 256 - n, n) == 0);
	}
	static const char *bad[] = {
	    "Zg=",			/* not a multiple of 4 */
	    "Zg",			/* unpadded */
	    "Z===",			/* three pads */
	    "Zh==",			/* non-zero bits under the padding */
	    "Zm9=",			/* same, one pad */
	    "Zg==Zg==",			/* padding in the middle */
	    "Z=g=",			/* data after a pad */
	    "Zm9v\n",	"Zm9*", "Zm-v", /* url alphabet is not standard */
	    "====",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		CHECK_EQ(rr_base64_decode(bad[k], strlen(bad[k]), dec, sizeof(dec)), -1);
}

static void test_accept(void)
{
	char out[29];
	memset(out, 'x', sizeof(out));
	const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
	rr_ws_accept_key(key, strlen(key), out);
	/* RFC 6455 1.3 (and Python's hashlib) give this value. */
	CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
	CHECK_EQ(out[28], '\0');
	/* the key decodes to the 16-byte nonce the RFC requires */
	uint8_t nonce[32];
	CHECK_EQ(rr_base64_decode(key, strlen(key), nonce, sizeof(nonce)), 16);
	CHECK(memcmp(nonce, "the sample nonce", 16) == 0);
}

int main(void)
{
	test_sha1();
	test_base64();
	test_accept();
	return check_done();
}
