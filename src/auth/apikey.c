/*
 * API keys (--api-key-file): parse the key file into a set of SHA-256
 * digests, check a presented key in constant time, swap sets on SIGHUP.
 *
 * DESIGN: a set is one allocation, a header followed by its digests, built
 * in full before it is published, so a core sees either the old set or the
 * complete new one. Hashing the presented key first makes the comparison a
 * fixed 32 bytes per stored key whatever the key's length, and keeps the
 * plain keys out of the broker's memory after loading.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "auth/apikey.h"
#include "core/assert.h"

#define RR_APIKEY_DIGEST 32

struct rr_apikeys {
	struct rr_apikeys *next_retired;
	unsigned n;
	uint8_t digest[][RR_APIKEY_DIGEST];
};

static int rr_apikey_hash(const char *key, size_t n, uint8_t out[RR_APIKEY_DIGEST])
{
	return wc_Sha256Hash((const byte *)key, (word32)n, out) == 0 ? 0 : -EIO;
}

static bool rr_apikey_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Is d (one of the first n digests) already there? Loading only: not constant time. */
static bool rr_apikey_has(const struct rr_apikeys *set, const uint8_t *d)
{
	unsigned i;

	for (i = 0; i < set->n; i++) {
		if (memcmp(set->digest[i], d, RR_APIKEY_DIGEST) == 0)
			return true;
	}
	return false;
}

int rr_apikey_parse(const char *text, size_t len, struct rr_apikeys **out, char *err, size_t errlen)
{
	struct rr_apikeys *set;
	size_t i = 0, lines = 0, cap = 0;
	unsigned line = 0;
	int r = 0;

	rr_assert(out != NULL);
	rr_assert(text != NULL || len == 0);
	if (errlen)
		err[0] = '\0';

	/* an upper bound on the keys: the lines */
	for (i = 0; i < len; i++)
		lines += text[i] == '\n';
	cap = lines + 1 < RR_APIKEY_COUNT_MAX ? lines + 1 : RR_APIKEY_COUNT_MAX;
	set = calloc(1, sizeof(*set) + cap * RR_APIKEY_DIGEST);
	if (set == NULL)
		return -ENOMEM;

	i = 0;
	while (i < len) {
		size_t b = i, e, k;
		uint8_t d[RR_APIKEY_DIGEST];

		line++;
		while (i < len && text[i] != '\n')
			i++;
		e = i;
		if (i < len)
			i++; /* the LF */
		while (b < e && rr_apikey_is_space(text[b]))
			b++;
		while (e > b && rr_apikey_is_space(text[e - 1]))
			e--;
		if (b == e || text[b] == '#')
			continue;

		for (k = b; k < e; k++) {
			unsigned char c = (unsigned char)text[k];

			if (c < 0x21 || c > 0x7e) {
				if (errlen)
					snprintf(err, errlen,
						 "line %u: a key is printable ASCII without spaces",
						 line);
				r = -EINVAL;
				goto free_set;
			}
		}
		if (e - b < RR_APIKEY_BYTES_MIN || e - b > RR_APIKEY_BYTES_MAX) {
			if (errlen)
				snprintf(err, errlen, "line %u: key %s than %u characters", line,
					 e - b < RR_APIKEY_BYTES_MIN ? "shorter" : "longer",
					 e - b < RR_APIKEY_BYTES_MIN ? RR_APIKEY_BYTES_MIN
								     : RR_APIKEY_BYTES_MAX);
			r = -EINVAL;
			goto free_set;
		}
		r = rr_apikey_hash(text + b, e - b, d);
		if (r < 0) {
			if (errlen)
				snprintf(err, errlen, "line %u: SHA-256 failed", line);
			goto free_set;
		}
		if (rr_apikey_has(set, d))
			continue;
		if (set->n == RR_APIKEY_COUNT_MAX) {
			if (errlen)
				snprintf(err, errlen, "more than %u keys", RR_APIKEY_COUNT_MAX);
			r = -E2BIG;
			goto free_set;
		}
		rr_assert(set->n < cap);
		memcpy(set->digest[set->n++], d, RR_APIKEY_DIGEST);
	}
	if (set->n == 0) {
		if (errlen)
			snprintf(err, errlen, "no key in the file (one per line, '#' comments)");
		r = -EINVAL;
		goto free_set;
	}
	*out = set;
	return 0;

free_set:
	/* the digests of the keys read so far go too */
	memset(set, 0, sizeof(*set) + cap * RR_APIKEY_DIGEST);
	free(set);
	return r;
}

int rr_apikey_load(const char *path, struct rr_apikeys **out, char *err, size_t errlen)
{
	struct stat stt;
	char *text;
	size_t got = 0;
	int fd, r;

	rr_assert(path != NULL && out != NULL);
	if (errlen)
		err[0] = '\0';

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (errlen)
			snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &stt) < 0) {
		r = -errno;
		goto close_fd;
	}
	if (!S_ISREG(stt.st_mode)) {
		r = -EINVAL;
		if (errlen)
			snprintf(err, errlen, "%s: not a regular file", path);
		goto close_fd;
	}
	if ((uint64_t)stt.st_size > RR_APIKEY_FILE_BYTES_MAX) {
		r = -EFBIG;
		if (errlen)
			snprintf(err, errlen, "%s: over %u bytes", path, RR_APIKEY_FILE_BYTES_MAX);
		goto close_fd;
	}
	text = malloc((size_t)stt.st_size + 1);
	if (text == NULL) {
		r = -ENOMEM;
		goto close_fd;
	}
	/* read to EOF, bounded: the file may change while it is read */
	for (;;) {
		ssize_t n = read(fd, text + got, (size_t)stt.st_size + 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto free_text;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > (size_t)stt.st_size) {
			r = -EAGAIN; /* grew while read: let the operator retry */
			if (errlen)
				snprintf(err, errlen, "%s: changed while it was read", path);
			goto free_text;
		}
	}
	r = rr_apikey_parse(text, got, out, err, errlen);
	if (r < 0 && errlen) {
		char msg[160];

		snprintf(msg, sizeof(msg), "%s", err);
		snprintf(err, errlen, "%s: %s", path, msg);
	}
free_text:
	memset(text, 0, (size_t)stt.st_size + 1);
	free(text);
close_fd:
	if (r < 0 && errlen && err[0] == '\0')
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
	close(fd);
	return r;
}

void rr_apikey_free(struct rr_apikeys *set)
{
	if (set == NULL)
		return;
	memset(set->digest, 0, (size_t)set->n * RR_APIKEY_DIGEST);
	free(set);
}

unsigned rr_apikey_count(const struct rr_apikeys *set)
{
	rr_assert(set != NULL);
	return set->n;
}

bool rr_apikey_check(const struct rr_apikeys *set, const char *key, size_t n)
{
	uint8_t d[RR_APIKEY_DIGEST];
	unsigned i, found = 0;

	rr_assert(set != NULL);
	rr_assert(key != NULL || n == 0);
	if (n > RR_APIKEY_BYTES_MAX || rr_apikey_hash(key, n, d) < 0)
		return false;
	for (i = 0; i < set->n; i++) {
		unsigned diff = 0, k;

		for (k = 0; k < RR_APIKEY_DIGEST; k++)
			diff |= (unsigned)(set->digest[i][k] ^ d[k]);
		/* 1 when diff is 0, without a branch on it */
		found |= ((diff - 1u) >> 8) & 1u;
	}
	return found != 0;
}

/* ---- the shared, reloadable store -------------------------------------- */

int rr_apikey_store_init(struct rr_apikey_store *st, const char *path, char *err, size_t errlen)
{
	struct rr_apikeys *set = NULL;
	int r;

	rr_assert(st != NULL && path != NULL);
	atomic_init(&st->_cur, NULL);
	st->_retired = NULL;
	r = rr_apikey_load(path, &set, err, errlen);
	if (r < 0)
		return r;
	atomic_store_explicit(&st->_cur, set, memory_order_release);
	return 0;
}

int rr_apikey_reload(struct rr_apikey_store *st, const char *path, char *err, size_t errlen)
{
	struct rr_apikeys *set = NULL, *old;
	int r;

	rr_assert(st != NULL && path != NULL);
	r = rr_apikey_load(path, &set, err, errlen);
	if (r < 0)
		return r; /* the old set stays */
	old = atomic_exchange_explicit(&st->_cur, set, memory_order_acq_rel);
	if (old != NULL) {
		old->next_retired = st->_retired;
		st->_retired = old;
	}
	return 0;
}

bool rr_apikey_store_check(struct rr_apikey_store *st, const char *key, size_t n)
{
	const struct rr_apikeys *set;

	rr_assert(st != NULL);
	set = atomic_load_explicit(&st->_cur, memory_order_acquire);
	return set != NULL && rr_apikey_check(set, key, n);
}

unsigned rr_apikey_store_count(struct rr_apikey_store *st)
{
	const struct rr_apikeys *set;

	rr_assert(st != NULL);
	set = atomic_load_explicit(&st->_cur, memory_order_acquire);
	return set ? set->n : 0;
}

void rr_apikey_store_fini(struct rr_apikey_store *st)
{
	struct rr_apikeys *set;

	rr_assert(st != NULL);
	rr_apikey_free(atomic_exchange_explicit(&st->_cur, NULL, memory_order_acq_rel));
	while ((set = st->_retired) != NULL) {
		st->_retired = set->next_retired;
		rr_apikey_free(set);
	}
}
