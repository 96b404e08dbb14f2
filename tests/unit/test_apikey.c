/*
 * Unit tests for API keys (src/auth/apikey.c): the key-file format, the
 * check, and a SIGHUP reload that keeps the old set when the new file is
 * bad. Files are written to a fresh temporary directory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/apikey.h"
#include "check.h"

#define K1 "k1-0123456789abcdef"
#define K2 "k2-ZZZZZZZZZZZZZZZZZZZZZZZZZ+/="
#define K3 "k3-0123456789abcdef"

static char dir[] = "/tmp/rr-apikey-XXXXXX";
static char path[256];

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");

	CHECK(f != NULL);
	if (f == NULL)
		return;
	fputs(text, f);
	fclose(f);
}

static bool check(const struct rr_apikeys *set, const char *key)
{
	return rr_apikey_check(set, key, strlen(key));
}

static void test_format(void)
{
	struct rr_apikeys *set = NULL;
	char err[200];
	const char *good = "# backend keys\n"
			   "\n" K1 "\n"
			   "   \t\n"
			   "  " K2 "  \r\n"
			   "#" K3 "\n" K1 "\n"; /* a duplicate */

	CHECK_EQ(rr_apikey_parse(good, strlen(good), &set, err, sizeof(err)), 0);
	if (set != NULL) {
		CHECK_EQ(rr_apikey_count(set), 2);
		CHECK(check(set, K1));
		CHECK(check(set, K2));
		CHECK(!check(set, K3));			  /* commented out */
		CHECK(!check(set, "k1-0123456789abcde")); /* a prefix */
		CHECK(!check(set, K1 "f"));		  /* longer */
		CHECK(!check(set, " " K1));
		CHECK(!check(set, ""));
		CHECK(!rr_apikey_check(set, K1, strlen(K1) - 1));
		rr_apikey_free(set);
	}
	/* no newline at the end, CRLF only */
	set = NULL;
	CHECK_EQ(rr_apikey_parse(K1, strlen(K1), &set, err, sizeof(err)), 0);
	rr_apikey_free(set);
	set = NULL;
	CHECK_EQ(rr_apikey_parse(K1 "\r\n" K2 "\r\n", strlen(K1 K2) + 4, &set, err, sizeof(err)),
		 0);
	if (set)
		CHECK_EQ(rr_apikey_count(set), 2);
	rr_apikey_free(set);

	/* refused as a whole, with the line in the message and no key in it */
	{
		static const struct {
			const char *text;
			int want;
			const char *msg;
		} bad[] = {
		    {"", -EINVAL, "no key"},
		    {"# only a comment\n\n", -EINVAL, "no key"},
		    {K1 "\nshort\n", -EINVAL, "line 2: key shorter"},
		    {K1 "\nk1-0123456789 abcdef\n", -EINVAL, "line 2:"},
		    {"k1-0123456789\x01"
		     "abcdef\n",
		     -EINVAL, "line 1:"},
		    {"k1-0123456789\xc3\xa9"
		     "abcdef\n",
		     -EINVAL, "line 1:"},
		};
		size_t i;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			set = NULL;
			CHECK_EQ(rr_apikey_parse(bad[i].text, strlen(bad[i].text), &set, err,
						 sizeof(err)),
				 bad[i].want);
			CHECK(set == NULL);
			if (strstr(err, bad[i].msg) == NULL) {
				fprintf(stderr, "message for bad[%zu] is '%s'\n", i, err);
				CHECK(0);
			}
			CHECK(strstr(err, "k1-") == NULL);
		}
	}
	/* the length bounds */
	{
		char key[RR_APIKEY_BYTES_MAX + 2];

		memset(key, 'a', sizeof(key));
		key[RR_APIKEY_BYTES_MAX] = '\0';
		set = NULL;
		CHECK_EQ(rr_apikey_parse(key, RR_APIKEY_BYTES_MAX, &set, err, sizeof(err)), 0);
		if (set)
			CHECK(check(set, key));
		rr_apikey_free(set);
		set = NULL;
		CHECK_EQ(rr_apikey_parse(key, RR_APIKEY_BYTES_MAX + 1, &set, err, sizeof(err)),
			 -EINVAL);
		CHECK_EQ(rr_apikey_parse(key, RR_APIKEY_BYTES_MIN, &set, err, sizeof(err)), 0);
		rr_apikey_free(set);
		CHECK_EQ(rr_apikey_parse(key, RR_APIKEY_BYTES_MIN - 1, &set, err, sizeof(err)),
			 -EINVAL);
	}
	/* the count bound */
	{
		size_t n = RR_APIKEY_COUNT_MAX + 1, i;
		char *text = malloc(n * 24 + 1), *p = text;

		for (i = 0; i < n; i++)
			p += sprintf(p, "key-%019zu\n", i);
		set = NULL;
		CHECK_EQ(rr_apikey_parse(text, (size_t)(p - text), &set, err, sizeof(err)), -E2BIG);
		p -= 24;
		CHECK_EQ(rr_apikey_parse(text, (size_t)(p - text), &set, err, sizeof(err)), 0);
		if (set) {
			CHECK_EQ(rr_apikey_count(set), RR_APIKEY_COUNT_MAX);
			CHECK(check(set, "key-0000000000000004095"));
			CHECK(!check(set, "key-0000000000000004096"));
		}
		rr_apikey_free(set);
		free(text);
	}
}

static void test_files_and_reload(void)
{
	struct rr_apikey_store st;
	struct rr_apikeys *set = NULL;
	char err[300];

	/* missing, a directory, too big */
	CHECK_EQ(rr_apikey_load("/nonexistent/keys", &set, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "/nonexistent/keys") != NULL);
	CHECK_EQ(rr_apikey_load(dir, &set, err, sizeof(err)), -EINVAL);
	CHECK(set == NULL);
	CHECK_EQ(rr_apikey_store_init(&st, "/nonexistent/keys", err, sizeof(err)), -ENOENT);
	CHECK(!rr_apikey_store_check(&st, K1, strlen(K1)));
	CHECK_EQ(rr_apikey_store_count(&st), 0);
	{
		FILE *f = fopen(path, "w");

		if (f) {
			CHECK_EQ(ftruncate(fileno(f), RR_APIKEY_FILE_BYTES_MAX + 1), 0);
			fclose(f);
		}
		CHECK_EQ(rr_apikey_load(path, &set, err, sizeof(err)), -EFBIG);
	}

	write_file(K1 "\n" K2 "\n");
	CHECK_EQ(rr_apikey_store_init(&st, path, err, sizeof(err)), 0);
	CHECK_EQ(rr_apikey_store_count(&st), 2);
	CHECK(rr_apikey_store_check(&st, K1, strlen(K1)));
	CHECK(rr_apikey_store_check(&st, K2, strlen(K2)));
	CHECK(!rr_apikey_store_check(&st, K3, strlen(K3)));

	/* a bad file: the old keys stay */
	write_file(K3 "\nshort\n");
	CHECK_EQ(rr_apikey_reload(&st, path, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 2") != NULL && strstr(err, path) != NULL);
	CHECK(rr_apikey_store_check(&st, K1, strlen(K1)));
	CHECK(!rr_apikey_store_check(&st, K3, strlen(K3)));
	unlink(path);
	CHECK_EQ(rr_apikey_reload(&st, path, err, sizeof(err)), -ENOENT);
	CHECK(rr_apikey_store_check(&st, K2, strlen(K2)));
	write_file("# emptied by mistake\n");
	CHECK_EQ(rr_apikey_reload(&st, path, err, sizeof(err)), -EINVAL);
	CHECK_EQ(rr_apikey_store_count(&st), 2);

	/* a good file: the new keys only */
	write_file(K3 "\n");
	CHECK_EQ(rr_apikey_reload(&st, path, err, sizeof(err)), 0);
	CHECK_EQ(rr_apikey_store_count(&st), 1);
	CHECK(rr_apikey_store_check(&st, K3, strlen(K3)));
	CHECK(!rr_apikey_store_check(&st, K1, strlen(K1)));
	write_file(K1 "\n");
	CHECK_EQ(rr_apikey_reload(&st, path, err, sizeof(err)), 0);
	CHECK(rr_apikey_store_check(&st, K1, strlen(K1)));
	rr_apikey_store_fini(&st); /* frees the retired sets too (ASan's leak check) */
	CHECK(!rr_apikey_store_check(&st, K1, strlen(K1)));
	unlink(path);
}

int main(void)
{
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/keys", dir);
	test_format();
	test_files_and_reload();
	unlink(path);
	rmdir(dir);
	return check_done();
}
