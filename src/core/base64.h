/*
 * Base64 (RFC 4648): the standard alphabet with padding (section 4, the
 * WebSocket accept key) and the URL alphabet without padding (section 5,
 * JWTs and session ids). One implementation for both.
 */
#ifndef RR_CORE_BASE64_H
#define RR_CORE_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Characters rr_b64_encode writes for n bytes (without the NUL). */
static inline size_t rr_b64_encoded_len(size_t n, bool url)
{
	return url ? n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0) : (n + 2) / 3 * 4;
}

/* Encode n bytes into out (rr_b64_encoded_len + 1 bytes, NUL added);
 * returns the characters written. */
size_t rr_b64_encode(const uint8_t *in, size_t n, char *out, bool url);

/*
 * Decode strictly: every byte string has exactly one accepted encoding
 * (padding exactly as the encoder writes it, none for url; the unused low
 * bits zero). Returns the bytes written, -EINVAL when in is not such an
 * encoding, -EMSGSIZE when it does not fit in cap.
 */
ssize_t rr_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, bool url);

#endif
