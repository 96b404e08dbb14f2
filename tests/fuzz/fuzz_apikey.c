/*
 * libFuzzer target for the API-key file parser (src/auth/apikey.c): any
 * bytes as a key file. A file that loads must hold 1..RR_APIKEY_COUNT_MAX
 * keys, and every well-formed line of it must then check true; a file that
 * fails must say why. The input's first line is also checked as a presented
 * key against the set (a key that is in the file matches; the check must not
 * read past the key it is given).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/apikey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct rr_apikeys *set = NULL;
	char err[160];
	size_t i = 0;
	int r;

	if (size > 1u << 16)
		return 0;
	r = rr_apikey_parse(size ? text : NULL, size, &set, err, sizeof(err));
	REQUIRE(r == 0 || r == -EINVAL || r == -E2BIG);
	if (r < 0) {
		REQUIRE(set == NULL && err[0] != '\0');
		return 0;
	}
	REQUIRE(set != NULL);
	REQUIRE(rr_apikey_count(set) >= 1 && rr_apikey_count(set) <= RR_APIKEY_COUNT_MAX);

	/* every key line of a file that loaded is in the set */
	while (i < size) {
		size_t b = i, e;
		char *key;

		while (i < size && text[i] != '\n')
			i++;
		e = i;
		if (i < size)
			i++;
		while (b < e && is_space(text[b]))
			b++;
		while (e > b && is_space(text[e - 1]))
			e--;
		if (b == e || text[b] == '#')
			continue;
		key = malloc(e - b); /* exactly its size: ASan sees an over-read */
		REQUIRE(key != NULL);
		memcpy(key, text + b, e - b);
		REQUIRE(rr_apikey_check(set, key, e - b));
		if (e - b > 1)
			REQUIRE(!rr_apikey_check(set, key, e - b - 1) || rr_apikey_count(set) > 1);
		free(key);
	}
	rr_apikey_free(set);
	return 0;
}
