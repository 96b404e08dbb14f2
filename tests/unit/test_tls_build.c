/*
 * The TLS library build is what it claims (issue #13): the bundled build
 * runs AES on the CPU's instructions where the CPU has them, so a configure
 * change that drops AES-NI fails here, by the feature query and by time;
 * the system build says so and prefers ChaCha20-Poly1305.
 *
 * The timing check seals 16 KiB records with AES-128-GCM and takes the best
 * of many 1 MiB rounds (the machine is shared: the best round is the least
 * disturbed one). AES-NI + PCLMUL does several GB/s here, plain C about
 * 0.2 GB/s (kernel-notes/wolfssl-build.md); the floor, 1 GB/s, sits between
 * with a wide margin on both sides.
 */
#include "tls/tls.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"

#define RECORD 16384
#define RECORDS_PER_ROUND 64
#define ROUNDS 60
#define FLOOR_MB_S 1000.0

static unsigned char in[RECORD], out[RECORD];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* best AES-128-GCM sealing rate over ROUNDS rounds, MB/s; < 0 on error */
static double aes_gcm_mb_s(void)
{
	unsigned char key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	unsigned char iv[12] = {0}, tag[16], aad[5] = {0x17, 0x03, 0x03, 0x40, 0x00};
	double best = 1e9;
	Aes aes;

	if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0 || wc_AesGcmSetKey(&aes, key, 16) != 0)
		return -1;
	for (int r = 0; r < ROUNDS; r++) {
		double t0 = now_s();

		for (int i = 0; i < RECORDS_PER_ROUND; i++) {
			iv[11] = (unsigned char)i;
			if (wc_AesGcmEncrypt(&aes, out, in, RECORD, iv, sizeof(iv), tag,
					     sizeof(tag), aad, sizeof(aad)) != 0) {
				wc_AesFree(&aes);
				return -1;
			}
		}
		double t = now_s() - t0;
		if (t < best)
			best = t;
	}
	wc_AesFree(&aes);
	return (double)RECORD * RECORDS_PER_ROUND / best / 1e6;
}

int main(void)
{
	const char *info = rr_tls_build_info();
	bool cpu_aes = false;
	double mb_s;

#if defined(__x86_64__) || defined(__i386__)
	cpu_aes = __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
#endif
	memset(in, 0xa5, sizeof(in));
	mb_s = aes_gcm_mb_s();
	printf("%s\nCPU AES-NI+PCLMUL: %s; AES-128-GCM, 16 KiB records: %.0f MB/s (best of %d)\n",
	       info, cpu_aes ? "yes" : "no", mb_s, ROUNDS);
	CHECK(mb_s > 0);
	CHECK(strncmp(info, "TLS: wolfSSL ", 13) == 0);
	CHECK((strstr(info, "AES-NI") != NULL) == rr_tls_aes_hw());
	CHECK(strstr(info, rr_tls_aes_hw() ? "AES-GCM first" : "ChaCha20-Poly1305 first") != NULL);
	if (strcmp(RR_TLS_LIB, "bundled") == 0) {
		CHECK(strstr(info, "bundled build") != NULL);
#ifndef WOLFSSL_AESNI
		CHECK(!"the bundled wolfSSL was configured without --enable-aesni");
#endif
		if (cpu_aes) {
			CHECK(rr_tls_aes_hw());
			CHECK(mb_s > FLOOR_MB_S);
		} else {
			printf("this CPU has no AES-NI: the speed check does not apply\n");
		}
	} else {
		CHECK(strstr(info, "system build") != NULL);
	}
	return check_done();
}
