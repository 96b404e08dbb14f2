/*
 * Logging to stderr, one line per event, prefixed with the wall time, the
 * level and the thread's name (main, core0, ...). Lines are written with one
 * write(2) so threads don't interleave within a line. Logging is for events
 * (a rejected client, a fault), never per message on the data path.
 */
#ifndef RR_CORE_LOG_H
#define RR_CORE_LOG_H

enum rr_log_level { RR_LOG_ERROR = 0, RR_LOG_WARN, RR_LOG_INFO, RR_LOG_DEBUG };

extern int rr_log_level;

void rr_log_set_thread(const char *name);
void rr_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rr_log(level, ...)                                                                 \
	do {                                                                               \
		if ((level) <= rr_log_level)                                               \
			rr_log_write((level), __VA_ARGS__);                                \
	} while (0)
#define rr_err(...) rr_log(RR_LOG_ERROR, __VA_ARGS__)
#define rr_warn(...) rr_log(RR_LOG_WARN, __VA_ARGS__)
#define rr_info(...) rr_log(RR_LOG_INFO, __VA_ARGS__)
#define rr_debug(...) rr_log(RR_LOG_DEBUG, __VA_ARGS__)

#endif
