/*
 * Logging to stderr, one line per event, written with one write(2) so
 * threads don't interleave within a line. Logging is for events (a rejected
 * client, a fault, a connection opened or closed), never per message on the
 * data path.
 *
 * Two formats, chosen once at start-up (--log-format):
 *
 *   text  2026-12-05T01:23:01.123Z info core0: conn_close peer=10.0.0.7:51234 code=1000
 *   json  {"ts":"2026-12-05T01:23:01.123Z","level":"info","thread":"core0",
 *          "msg":"conn_close","peer":"10.0.0.7:51234","code":1000}
 *
 * (one line each). A JSON line is always one complete object: strings are
 * escaped (quotes, backslashes, control characters as \uXXXX, bytes that are
 * not UTF-8 as U+FFFD), and a line cut at the size limit still closes its
 * strings and braces (and carries "truncated":true).
 */
#ifndef RR_CORE_LOG_H
#define RR_CORE_LOG_H

enum rr_log_level { RR_LOG_ERROR = 0, RR_LOG_WARN, RR_LOG_INFO, RR_LOG_DEBUG };
enum rr_log_format { RR_LOG_TEXT = 0, RR_LOG_JSON };

/* The longest line written, newline included; longer ones are cut. */
#define RR_LOG_LINE_MAX 2048

extern int rr_log_level;

/* Before any thread logs (main.c, from --log-format). */
void rr_log_set_format(enum rr_log_format format);
void rr_log_set_thread(const char *name);

/* A free-form line: printf's fmt; in JSON it becomes "msg". */
void rr_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * An event with fields, for lines that tools read (one per connection open
 * and close, for instance):
 *
 *     rr_log_event(RR_LOG_INFO, "conn_close",
 *                  "peer=%s room=%s code=%u duration_ms=%llu",
 *                  peer, room, code, (unsigned long long)ms);
 *
 * event: a fixed name (letters, digits, '_'), the "msg" of the JSON line.
 * fmt_kv: space-separated key=%conversion pairs, one conversion per key,
 * checked by the compiler like printf's. Conversions: %s (string; NULL is
 * rendered as null / -), %.*s (an int length, then the string), %c, %d %i %u %x with the h, hh, l, ll, z, j
 * modifiers (JSON numbers; %x becomes a string), %f %g %e (double). A key
 * with any other conversion ends the fields (the rest are dropped).
 * Text renders `event key=value ...`, quoting a string value that is empty
 * or holds a space, '"', '=' or a control character (logfmt); JSON renders
 * the pairs as members of the line's object, after ts, level, thread and
 * msg. Strings are copied: nothing passed in is kept.
 */
void rr_log_event_write(int level, const char *event, const char *fmt_kv, ...)
	__attribute__((format(printf, 3, 4)));

#define rr_log(level, ...)                                                                 \
	do {                                                                               \
		if ((level) <= rr_log_level)                                               \
			rr_log_write((level), __VA_ARGS__);                                \
	} while (0)
/* rr_log_event_write() when level is enabled (the arguments are not
 * evaluated otherwise). */
#define rr_log_event(level, ...)                                                           \
	do {                                                                               \
		if ((level) <= rr_log_level)                                               \
			rr_log_event_write((level), __VA_ARGS__);                          \
	} while (0)
#define rr_err(...) rr_log(RR_LOG_ERROR, __VA_ARGS__)
#define rr_warn(...) rr_log(RR_LOG_WARN, __VA_ARGS__)
#define rr_info(...) rr_log(RR_LOG_INFO, __VA_ARGS__)
#define rr_debug(...) rr_log(RR_LOG_DEBUG, __VA_ARGS__)

#endif
