/* Base64: see base64.h. */
#include "core/base64.h"
#include "core/assert.h"

#include <errno.h>

static const char std_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t rr_b64_encode(const uint8_t *in, size_t n, char *out, bool url)
{
	const char *a = url ? url_alphabet : std_alphabet;
	rr_assert(in != NULL || n == 0);
	rr_assert(out != NULL);
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = a[(v >> 6) & 63];
		out[o++] = a[v & 63];
	}
	if (n - i > 0) {
		uint32_t v = (uint32_t)in[i] << 16 | (n - i == 2 ? (uint32_t)in[i + 1] << 8 : 0);
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		if (n - i == 2)
			out[o++] = a[(v >> 6) & 63];
		else if (!url)
			out[o++] = '=';
		if (!url)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

static int value(unsigned char ch, bool url)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == (url ? '-' : '+'))
		return 62;
	if (ch == (url ? '_' : '/'))
		return 63;
	return -1;
}

ssize_t rr_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, bool url)
{
	rr_assert(in != NULL || n == 0);
	rr_assert(out != NULL || cap == 0);
	size_t len = n;
	if (!url) {
		if (n % 4 != 0)
			return -EINVAL;
		while (len > 0 && n - len < 2 && in[len - 1] == '=')
			len--;
	}
	if (len % 4 == 1)
		return -EINVAL; /* 6 bits cannot make a byte */
	size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
	if (need > cap)
		return -EMSGSIZE;
	size_t o = 0;
	uint32_t acc = 0;
	for (size_t i = 0; i < len; i++) {
		int v = value((unsigned char)in[i], url);
		if (v < 0)
			return -EINVAL;
		acc = acc << 6 | (uint32_t)v;
		if (i % 4 == 3) {
			out[o++] = (uint8_t)(acc >> 16);
			out[o++] = (uint8_t)(acc >> 8);
			out[o++] = (uint8_t)acc;
			acc = 0;
		}
	}
	/* a tail of 2 chars carries 12 bits for 1 byte, 3 chars 18 bits for 2:
	 * the unused low bits must be zero or two strings decode alike */
	if (len % 4 == 2) {
		if (acc & 0xf)
			return -EINVAL;
		out[o++] = (uint8_t)(acc >> 4);
	} else if (len % 4 == 3) {
		if (acc & 0x3)
			return -EINVAL;
		out[o++] = (uint8_t)(acc >> 10);
		out[o++] = (uint8_t)(acc >> 2);
	}
	return (ssize_t)o;
}
