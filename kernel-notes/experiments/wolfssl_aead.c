/*
 * Experiment for kernel-notes/wolfssl-build.md: what one TLS record's AEAD
 * costs in a given wolfSSL build, measured with wolfCrypt directly (no TLS,
 * no I/O): AES-128-GCM and ChaCha20-Poly1305 sealing a 100-byte record (a
 * small WebSocket frame) and a 16 KiB record (the largest TLS allows), with
 * TLS 1.3's 5-byte additional data and a fresh nonce per record. Prints ns
 * per record and MB/s of plaintext, best of ROUNDS timed rounds of about
 * 0.2 s each (the machine is shared: the best round is the one least
 * disturbed). One line per case, prefixed with the build's label.
 *
 * Build against each library and run on one pinned core:
 *   # Debian's shared libwolfssl
 *   cc -O2 -Wall -Wextra -o /tmp/aead-system \
 *      kernel-notes/experiments/wolfssl_aead.c -lwolfssl
 *   # the bundled build (tools/wolfssl-bundle prints its prefix)
 *   P=$(tools/wolfssl-bundle --prefix)
 *   cc -O2 -Wall -Wextra -isystem "$P/include" -o /tmp/aead-bundled \
 *      kernel-notes/experiments/wolfssl_aead.c "$P/lib/libwolfssl.a" -lm -pthread
 *   for i in 1 2 3; do taskset -c 1 /tmp/aead-system system; \
 *                      taskset -c 1 /tmp/aead-bundled bundled; done
 */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/version.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 5
#define ROUND_NS 200000000.0

static unsigned char in[16384], out[16384 + 16];

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

enum aead { AES_GCM, CHACHA };

/* seal n records of sz bytes; returns nonzero on a wolfCrypt error */
static int seal(enum aead a, Aes *aes, const unsigned char *key, size_t sz, long n)
{
	unsigned char iv[12] = {0}, tag[16], aad[5] = {0x17, 0x03, 0x03, 0, 0};

	for (long i = 0; i < n; i++) {
		memcpy(iv + 4, &i, sizeof(i)); /* per-record nonce, as TLS does */
		aad[3] = (unsigned char)(sz >> 8);
		aad[4] = (unsigned char)sz;
		int rc = a == AES_GCM ? wc_AesGcmEncrypt(aes, out, in, (word32)sz, iv, sizeof(iv),
							 tag, sizeof(tag), aad, sizeof(aad))
				      : wc_ChaCha20Poly1305_Encrypt(key, iv, aad, sizeof(aad), in,
								    (word32)sz, out, tag);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static void run(const char *label, enum aead a, Aes *aes, const unsigned char *key, size_t sz)
{
	double best = 1e30;
	long n = 1000;
	double t0, t;

	/* calibrate: about ROUND_NS per round */
	t0 = now_ns();
	if (seal(a, aes, key, sz, n) != 0) {
		fprintf(stderr, "wolfCrypt error\n");
		exit(1);
	}
	t = now_ns() - t0;
	n = (long)(ROUND_NS / (t / n)) + 1;
	for (int r = 0; r < ROUNDS; r++) {
		t0 = now_ns();
		seal(a, aes, key, sz, n);
		t = (now_ns() - t0) / n;
		if (t < best)
			best = t;
	}
	printf("%s %-18s %5zu B: %8.1f ns/record %8.1f MB/s\n", label,
	       a == AES_GCM ? "AES-128-GCM" : "ChaCha20-Poly1305", sz, best, sz / best * 1e3);
}

int main(int argc, char **argv)
{
	const char *label = argc > 1 ? argv[1] : "?";
	unsigned char key[32];
	Aes aes;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)i;
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)(i * 7 + 1);
	if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0 || wc_AesGcmSetKey(&aes, key, 16) != 0) {
		fprintf(stderr, "AES-GCM key setup failed\n");
		return 1;
	}
#ifdef WOLFSSL_AESNI
	printf("%s: wolfSSL %s, built with AES-NI (WOLFSSL_AESNI)\n", label,
	       LIBWOLFSSL_VERSION_STRING);
#else
	printf("%s: wolfSSL %s, built without AES-NI\n", label, LIBWOLFSSL_VERSION_STRING);
#endif
	run(label, AES_GCM, &aes, key, 100);
	run(label, AES_GCM, &aes, key, 16384);
	run(label, CHACHA, &aes, key, 100);
	run(label, CHACHA, &aes, key, 16384);
	wc_AesFree(&aes);
	return 0;
}
