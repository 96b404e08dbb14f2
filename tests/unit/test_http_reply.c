/*
 * http/http_reply.c: the 401 carries WWW-Authenticate: Bearer with an RFC
 * 6750 error code and description (quoted-string escaping), a Content-Length
 * that matches its body, and Connection: close. Also the histogram buckets
 * of reactor/stats.h (le = 2^k microseconds, +Inf last).
 */
#include "http/http_reply.h"
#include "reactor/stats.h"

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *text(const struct rr_frame *f)
{
	char *s = malloc(f->len + 1);
	memcpy(s, f->data, f->len);
	s[f->len] = '\0';
	return s;
}

static void test_401(void)
{
	struct rr_frame *f = rr_http_response_401("invalid_token", "token expired or not yet valid");
	CHECK(f != NULL);
	if (f == NULL)
		return;
	char *s = text(f);
	CHECK(strncmp(s, "HTTP/1.1 401 Unauthorized\r\n", 27) == 0);
	CHECK(strstr(s, "\r\nWWW-Authenticate: Bearer realm=\"ringroom\", error=\"invalid_token\", "
			"error_description=\"token expired or not yet valid\"\r\n") != NULL);
	CHECK(strstr(s, "\r\nConnection: close\r\n\r\n") != NULL);
	const char *body = strstr(s, "\r\n\r\n") + 4;
	unsigned long cl = 0;
	const char *h = strstr(s, "Content-Length: ");
	CHECK(h != NULL);
	if (h)
		cl = strtoul(h + 16, NULL, 10);
	CHECK_EQ(cl, strlen(body));
	CHECK(strstr(body, "token expired") != NULL);
	free(s);
	rr_frame_unref(f);

	/* quotes and backslashes escaped, control bytes replaced: one header */
	f = rr_http_response_401("invalid_request", "say \"hi\" \\ now\r\nX-Evil: 1");
	CHECK(f != NULL);
	if (f == NULL)
		return;
	s = text(f);
	CHECK(strstr(s, "error=\"invalid_request\", error_description=\"say \\\"hi\\\" \\\\ now  "
			"X-Evil: 1\"\r\n") != NULL);
	char *end = strstr(s, "\r\n\r\n");
	CHECK(end != NULL);
	if (end)
		*end = '\0'; /* the head only: the text body may hold anything */
	CHECK(strstr(s, "\r\nX-Evil") == NULL);
	free(s);
	rr_frame_unref(f);
}

static void test_hist_buckets(void)
{
	CHECK_EQ(rr_hist_bucket(0), 0);
	CHECK_EQ(rr_hist_bucket(1000), 0);    /* 1 us: le 1e-06 */
	CHECK_EQ(rr_hist_bucket(1001), 1);    /* just over: le 2e-06 */
	CHECK_EQ(rr_hist_bucket(2000), 1);
	CHECK_EQ(rr_hist_bucket(2001), 2);
	CHECK_EQ(rr_hist_bucket(4000), 2);
	CHECK_EQ(rr_hist_bucket(1000000), 10); /* 1 ms <= 1024 us */
	CHECK_EQ(rr_hist_bucket((1ull << 22) * 1000), 22);
	CHECK_EQ(rr_hist_bucket((1ull << 22) * 1000 + 1), RR_HIST_BUCKETS); /* +Inf */
	CHECK_EQ(rr_hist_bucket(~0ull), RR_HIST_BUCKETS);
	struct rr_hist h;
	memset(&h, 0, sizeof(h));
	rr_hist_observe(&h, 1500);
	rr_hist_observe(&h, 1500);
	CHECK_EQ(h.bucket[1], 2);
	CHECK_EQ(h.sum_ns, 3000);
}

int main(void)
{
	test_401();
	test_hist_buckets();
	return check_done();
}
