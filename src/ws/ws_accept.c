/*
 * The opening handshake's key (RFC 6455 4.2.2): Sec-WebSocket-Accept is
 * base64(SHA-1(key + GUID)). SHA-1 follows FIPS 180-4 section 6.1; base64 is
 * RFC 4648 section 4 (standard alphabet, padded).
 *
 * SHA-1 is used here only as the protocol's fixed fingerprint, not for
 * security; it runs once per connection, so clarity beats speed.
 */
#include "ws/ws.h"
#include "core/base64.h"

#include <assert.h>
#include <string.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

struct sha1_ctx {
	uint32_t h[5];
	uint8_t block[64];
	size_t block_len;
	uint64_t total; /* bytes hashed so far */
};

static uint32_t rol32(uint32_t x, unsigned s)
{
	return (x << s) | (x >> (32 - s));
}

static void sha1_init(struct sha1_ctx *c)
{
	/* FIPS 180-4 5.3.1 */
	c->h[0] = 0x67452301;
	c->h[1] = 0xefcdab89;
	c->h[2] = 0x98badcfe;
	c->h[3] = 0x10325476;
	c->h[4] = 0xc3d2e1f0;
	c->block_len = 0;
	c->total = 0;
}

/* FIPS 180-4 6.1.2: one 512-bit block. */
static void sha1_block(uint32_t h[5], const uint8_t b[64])
{
	uint32_t w[80];
	for (int t = 0; t < 16; t++)
		w[t] = (uint32_t)b[4 * t] << 24 | (uint32_t)b[4 * t + 1] << 16 |
		       (uint32_t)b[4 * t + 2] << 8 | b[4 * t + 3];
	for (int t = 16; t < 80; t++)
		w[t] = rol32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);

	uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
	for (int t = 0; t < 80; t++) {
		uint32_t f, k;
		if (t < 20) {
			f = (bb & c) ^ (~bb & d); /* Ch */
			k = 0x5a827999;
		} else if (t < 40) {
			f = bb ^ c ^ d; /* Parity */
			k = 0x6ed9eba1;
		} else if (t < 60) {
			f = (bb & c) ^ (bb & d) ^ (c & d); /* Maj */
			k = 0x8f1bbcdc;
		} else {
			f = bb ^ c ^ d;
			k = 0xca62c1d6;
		}
		uint32_t tmp = rol32(a, 5) + f + e + k + w[t];
		e = d;
		d = c;
		c = rol32(bb, 30);
		bb = a;
		a = tmp;
	}
	h[0] += a;
	h[1] += bb;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

static void sha1_update(struct sha1_ctx *c, const uint8_t *p, size_t n)
{
	c->total += n;
	while (n > 0) {
		size_t take = 64 - c->block_len;
		if (take > n)
			take = n;
		memcpy(c->block + c->block_len, p, take);
		c->block_len += take;
		p += take;
		n -= take;
		if (c->block_len == 64) {
			sha1_block(c->h, c->block);
			c->block_len = 0;
		}
	}
}

static void sha1_final(struct sha1_ctx *c, uint8_t out[20])
{
	/* FIPS 180-4 5.1.1: a 1 bit, zeros to 448 mod 512, 64-bit bit length. */
	uint64_t bits = c->total * 8;
	uint8_t pad[72] = {0x80};
	size_t pad_len = (c->block_len < 56) ? 56 - c->block_len : 120 - c->block_len;
	for (int k = 0; k < 8; k++)
		pad[pad_len + k] = (uint8_t)(bits >> (56 - 8 * k));
	sha1_update(c, pad, pad_len + 8);
	assert(c->block_len == 0);
	for (int k = 0; k < 5; k++) {
		out[4 * k] = (uint8_t)(c->h[k] >> 24);
		out[4 * k + 1] = (uint8_t)(c->h[k] >> 16);
		out[4 * k + 2] = (uint8_t)(c->h[k] >> 8);
		out[4 * k + 3] = (uint8_t)c->h[k];
	}
}

void rr_sha1(const void *data, size_t n, uint8_t out[20])
{
	struct sha1_ctx c;
	assert(data != NULL || n == 0);
	sha1_init(&c);
	sha1_update(&c, data, n);
	sha1_final(&c, out);
}

size_t rr_base64_encode(const uint8_t *in, size_t n, char *out)
{
	return rr_b64_encode(in, n, out, false);
}

/* Strict (core/base64.h): a handshake key that is not canonical is not one
 * a client generated. */
ssize_t rr_base64_decode(const char *in, size_t n, uint8_t *out, size_t out_cap)
{
	ssize_t rc = rr_b64_decode(in, n, out, out_cap, false);
	return rc < 0 ? -1 : rc;
}

void rr_ws_accept_key(const char *key, size_t key_len, char out[29])
{
	struct sha1_ctx c;
	uint8_t digest[20];
	assert(key != NULL || key_len == 0);
	assert(out != NULL);
	sha1_init(&c);
	sha1_update(&c, (const uint8_t *)key, key_len);
	sha1_update(&c, (const uint8_t *)ws_guid, sizeof(ws_guid) - 1);
	sha1_final(&c, digest);
	size_t len = rr_base64_encode(digest, sizeof(digest), out);
	assert(len == 28);
	(void)len;
}
