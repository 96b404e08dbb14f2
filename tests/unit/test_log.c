/*
 * core/log.c: --log-format json writes one valid JSON object per line
 * (parsed back with jansson here), strings escaped (quotes, backslashes,
 * control bytes, bytes that are not UTF-8), events with typed fields, a cut
 * line still valid; text renders `event key=value` with logfmt quoting.
 * stderr is redirected into a temporary file and read back.
 */
#include "core/log.h"

#include "check.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static FILE *cap;
static int saved_stderr;

static void capture_start(void)
{
	fflush(stderr);
	cap = tmpfile();
	saved_stderr = dup(STDERR_FILENO);
	dup2(fileno(cap), STDERR_FILENO);
}

/* Everything written since capture_start(), NUL-terminated (malloc'd). */
static char *capture_end(void)
{
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	long n = ftell(cap);
	char *out = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
	rewind(cap);
	if (n > 0 && fread(out, 1, (size_t)n, cap) != (size_t)n)
		out[0] = '\0';
	fclose(cap);
	return out;
}

/* The one line written, parsed; NULL unless it is exactly one JSON object
 * followed by a newline. */
static json_t *one_json_line(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || s[n - 1] != '\n' || memchr(s, '\n', n - 1) != NULL)
		return NULL;
	json_t *o = json_loadb(s, n - 1, 0, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void test_json_write(void)
{
	rr_log_set_format(RR_LOG_JSON);
	rr_log_set_thread("core7");
	capture_start();
	rr_log_write(RR_LOG_WARN, "quote \" backslash \\ newline \n tab \t bell \a %s",
		     "bad \xff utf8 \xc3\xa9");
	char *s = capture_end();
	json_t *o = one_json_line(s);
	CHECK(o != NULL);
	if (o) {
		CHECK(strcmp(str(o, "level"), "warn") == 0);
		CHECK(strcmp(str(o, "thread"), "core7") == 0);
		CHECK(str(o, "ts") && strlen(str(o, "ts")) == 24 && str(o, "ts")[23] == 'Z');
		CHECK(strcmp(str(o, "msg"), "quote \" backslash \\ newline \n tab \t bell \a "
					    "bad \xef\xbf\xbd utf8 \xc3\xa9") == 0);
	}
	json_decref(o);
	free(s);
}

static void test_json_event(void)
{
	const char *volatile none = NULL; /* %s of NULL: rendered null */
	rr_log_set_format(RR_LOG_JSON);
	capture_start();
	rr_log_event_write(RR_LOG_INFO, "conn_close",
			   "peer=%s room=%s code=%u duration_ms=%llu neg=%d size=%zu null=%s hex=%x "
			   "ratio=%g room2=%.*s",
			   "10.0.0.7:51234", "lob\"by\n", 1000u, 1234567890123ull, -5, (size_t)7,
			   none, 255u, 0.5, 3, "lobby");
	char *s = capture_end();
	json_t *o = one_json_line(s);
	CHECK(o != NULL);
	if (o) {
		CHECK(strcmp(str(o, "msg"), "conn_close") == 0);
		CHECK(strcmp(str(o, "level"), "info") == 0);
		CHECK(strcmp(str(o, "peer"), "10.0.0.7:51234") == 0);
		CHECK(strcmp(str(o, "room"), "lob\"by\n") == 0);
		CHECK_EQ(json_integer_value(json_object_get(o, "code")), 1000);
		CHECK_EQ(json_integer_value(json_object_get(o, "duration_ms")), 1234567890123ll);
		CHECK_EQ(json_integer_value(json_object_get(o, "neg")), -5);
		CHECK_EQ(json_integer_value(json_object_get(o, "size")), 7);
		CHECK(json_is_null(json_object_get(o, "null")));
		CHECK(strcmp(str(o, "hex"), "ff") == 0);
		CHECK(json_real_value(json_object_get(o, "ratio")) == 0.5);
		CHECK(strcmp(str(o, "room2"), "lob") == 0);
	}
	json_decref(o);
	free(s);
}

static void test_json_cut(void)
{
	/* longer than a line: still one object, marked truncated */
	static char big[3 * RR_LOG_LINE_MAX];
	memset(big, '"', sizeof(big) - 1);
	rr_log_set_format(RR_LOG_JSON);
	capture_start();
	rr_log_write(RR_LOG_ERROR, "%s", big);
	rr_log_event_write(RR_LOG_ERROR, "ev", "a=%s b=%s", "short", big);
	char *s = capture_end();
	char *nl = strchr(s, '\n');
	CHECK(nl != NULL);
	if (nl) {
		*nl = '\0';
		json_t *a = json_loads(s, 0, NULL);
		CHECK(json_is_object(a));
		CHECK(json_is_true(json_object_get(a, "truncated")));
		CHECK(strlen(s) < RR_LOG_LINE_MAX);
		json_decref(a);
		json_t *b = one_json_line(nl + 1);
		CHECK(b != NULL);
		/* the field that did not fit is left out whole */
		CHECK(b && strcmp(str(b, "a"), "short") == 0);
		CHECK(b && json_object_get(b, "b") == NULL);
		CHECK(b && json_is_true(json_object_get(b, "truncated")));
		json_decref(b);
	}
	free(s);
}

static void test_text(void)
{
	rr_log_set_format(RR_LOG_TEXT);
	rr_log_set_thread("main");
	capture_start();
	rr_log_event_write(RR_LOG_INFO, "conn_open", "peer=%s room=%s empty=%s code=%u path=%.*s",
			   "127.0.0.1:1", "a b", "", 1001u, 6, "/chat/lobby");
	char *s = capture_end();
	CHECK(strstr(s, " info main: conn_open peer=127.0.0.1:1 room=\"a b\" empty=\"\" "
			"code=1001 path=/chat/\n") != NULL);
	free(s);
}

int main(void)
{
	test_json_write();
	test_json_event();
	test_json_cut();
	test_text();
	return check_done();
}
