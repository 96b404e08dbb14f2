/*
 * Logging: see log.h.
 *
 * DESIGN: a line is built in a stack buffer by a bounded writer that never
 * splits an escape and keeps room for the closing bytes (`"`, `}`, newline),
 * so a JSON line cut at RR_LOG_LINE_MAX is still one valid object.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int rr_log_level = RR_LOG_INFO;
static enum rr_log_format log_format = RR_LOG_TEXT;

static __thread char thread_name[16] = "main";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* bytes kept back for what closes a JSON line: `","truncated":true}\n` */
#define LOG_RESERVE 24

struct lw {
	char *p;
	size_t n, cap; /* cap: size less the reserve */
	size_t size;
	bool full;
};

void rr_log_set_format(enum rr_log_format format)
{
	log_format = format;
}

void rr_log_set_thread(const char *name)
{
	snprintf(thread_name, sizeof(thread_name), "%s", name);
}

static void lw_raw(struct lw *w, const char *s, size_t n)
{
	if (w->full || w->n + n > w->cap) {
		w->full = true;
		return;
	}
	memcpy(w->p + w->n, s, n);
	w->n += n;
}

/* Into the reserve: the bytes that close a line. */
static void lw_force(struct lw *w, const char *s, size_t n)
{
	if (w->n + n <= w->size) {
		memcpy(w->p + w->n, s, n);
		w->n += n;
	}
}

static void lw_str(struct lw *w, const char *s)
{
	lw_raw(w, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if none. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		len = 2, cp = s[0] & 0x1F;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		len = 3, cp = s[0] & 0x0F;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return len;
}

/* The body of a JSON string (no quotes): each character whole or not at all. */
static void lw_json_body(struct lw *w, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < n && !w->full;) {
		char esc[8];
		unsigned char ch = u[i];
		if (ch == '"' || ch == '\\') {
			esc[0] = '\\';
			esc[1] = (char)ch;
			lw_raw(w, esc, 2);
			i++;
		} else if (ch == '\n') {
			lw_raw(w, "\\n", 2), i++;
		} else if (ch == '\t') {
			lw_raw(w, "\\t", 2), i++;
		} else if (ch == '\r') {
			lw_raw(w, "\\r", 2), i++;
		} else if (ch < 0x20 || ch == 0x7F) {
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
			lw_raw(w, esc, 6);
			i++;
		} else {
			size_t len = utf8_seq(u + i, n - i);
			if (len == 0) {
				lw_raw(w, "\\ufffd", 6);
				i++;
			} else {
				lw_raw(w, s + i, len);
				i += len;
			}
		}
	}
}

static void lw_json_str(struct lw *w, const char *s, size_t n)
{
	lw_raw(w, "\"", 1);
	lw_json_body(w, s, n);
	lw_force(w, "\"", 1); /* a cut string still ends */
}

/* A text-format value: bare when it can be, else quoted with \" \\ \n. */
static void lw_text_str(struct lw *w, const char *s, size_t n)
{
	const char *end = s + n;
	bool quote = n == 0;
	for (const char *q = s; q < end && !quote; q++)
		quote = *q == ' ' || *q == '"' || *q == '=' || (unsigned char)*q < 0x20;
	if (!quote) {
		lw_raw(w, s, n);
		return;
	}
	lw_raw(w, "\"", 1);
	for (const char *q = s; q < end && !w->full; q++) {
		char esc[8];
		if (*q == '"' || *q == '\\') {
			esc[0] = '\\';
			esc[1] = *q;
			lw_raw(w, esc, 2);
		} else if ((unsigned char)*q < 0x20) {
			snprintf(esc, sizeof(esc), "\\x%02x", (unsigned char)*q);
			lw_raw(w, esc, 4);
		} else {
			lw_raw(w, q, 1);
		}
	}
	lw_force(w, "\"", 1);
}

/* The line's start: the text prefix, or the JSON object up to "msg":. */
static void lw_head(struct lw *w, int level)
{
	struct timespec ts;
	struct tm tm;
	char stamp[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t sn = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + sn, sizeof(stamp) - sn, ".%03ldZ", ts.tv_nsec / 1000000);
	const char *lv = level_names[level < 0 ? 0 : level > 3 ? 3 : level];
	if (log_format == RR_LOG_JSON) {
		lw_str(w, "{\"ts\":\"");
		lw_str(w, stamp);
		lw_str(w, "\",\"level\":\"");
		lw_str(w, lv);
		lw_str(w, "\",\"thread\":");
		lw_json_str(w, thread_name, strlen(thread_name));
		lw_str(w, ",\"msg\":");
	} else {
		lw_str(w, stamp);
		lw_str(w, " ");
		lw_str(w, lv);
		lw_str(w, " ");
		lw_str(w, thread_name);
		lw_str(w, ": ");
	}
}

/* Close the line (the reserve is now usable) and write it. */
static void lw_finish(struct lw *w)
{
	const char *end = log_format != RR_LOG_JSON ? "\n"
			  : w->full		      ? ",\"truncated\":true}\n"
						      : "}\n";
	lw_force(w, end, strlen(end));
	ssize_t r = write(STDERR_FILENO, w->p, w->n);
	(void)r;
}

void rr_log_write(int level, const char *fmt, ...)
{
	char line[RR_LOG_LINE_MAX];
	char msg[RR_LOG_LINE_MAX];
	struct lw w = {line, 0, sizeof(line) - LOG_RESERVE, sizeof(line), false};
	va_list ap;

	lw_head(&w, level);
	va_start(ap, fmt);
	int m = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	size_t mn = m < 0 ? 0 : (size_t)m >= sizeof(msg) ? sizeof(msg) - 1 : (size_t)m;
	if (log_format == RR_LOG_JSON) {
		lw_json_str(&w, msg, mn);
	} else {
		/* text: the message as given, a newline in it cannot start
		 * a fake line */
		for (size_t i = 0; i < mn; i++)
			if (msg[i] == '\n' || msg[i] == '\r')
				msg[i] = ' ';
		lw_raw(&w, msg, mn);
		if (w.full) { /* keep what fits */
			size_t room = w.cap - w.n;
			w.full = false;
			lw_raw(&w, msg, mn < room ? mn : room);
			w.full = true;
		}
	}
	lw_finish(&w);
}

/* One conversion of fmt_kv: its length modifier and its letter. */
enum kv_len { KV_INT, KV_CHAR, KV_SHORT, KV_LONG, KV_LLONG, KV_SIZE, KV_MAX };

void rr_log_event_write(int level, const char *event, const char *fmt_kv, ...)
{
	char line[RR_LOG_LINE_MAX];
	struct lw w = {line, 0, sizeof(line) - LOG_RESERVE, sizeof(line), false};
	bool json = log_format == RR_LOG_JSON;
	va_list ap;

	lw_head(&w, level);
	if (json)
		lw_json_str(&w, event, strlen(event));
	else
		lw_str(&w, event);

	va_start(ap, fmt_kv);
	const char *p = fmt_kv;
	while (*p && !w.full) {
		while (*p == ' ')
			p++;
		const char *key = p;
		while (*p && *p != '=' && *p != ' ')
			p++;
		size_t kn = (size_t)(p - key);
		if (kn == 0 || p[0] != '=' || p[1] != '%')
			break; /* not key=%conv: the rest is not read */
		p += 2;
		int prec = -1; /* %.*s: at most prec bytes of the string */
		if (p[0] == '.' && p[1] == '*') {
			prec = va_arg(ap, int);
			p += 2;
			if (*p != 's')
				break; /* only for strings */
		}
		enum kv_len len = KV_INT;
		if (p[0] == 'h' && p[1] == 'h')
			len = KV_CHAR, p += 2;
		else if (p[0] == 'h')
			len = KV_SHORT, p++;
		else if (p[0] == 'l' && p[1] == 'l')
			len = KV_LLONG, p += 2;
		else if (p[0] == 'l')
			len = KV_LONG, p++;
		else if (p[0] == 'z')
			len = KV_SIZE, p++;
		else if (p[0] == 'j')
			len = KV_MAX, p++;
		char conv = *p ? *p++ : '\0';

		char num[64];
		const char *sval = NULL; /* a string value */
		size_t slen = 0;
		bool is_null = false;
		switch (conv) {
		case 's':
			sval = va_arg(ap, const char *);
			is_null = sval == NULL;
			if (sval)
				slen = prec >= 0 ? strnlen(sval, (size_t)prec) : strlen(sval);
			break;
		case 'c':
			num[0] = (char)va_arg(ap, int);
			num[1] = '\0';
			sval = num;
			slen = 1;
			break;
		case 'd':
		case 'i': {
			long long v;
			switch (len) {
			case KV_LONG: v = va_arg(ap, long); break;
			case KV_LLONG: v = va_arg(ap, long long); break;
			case KV_SIZE: v = (long long)va_arg(ap, ptrdiff_t); break;
			case KV_MAX: v = (long long)va_arg(ap, intmax_t); break;
			case KV_CHAR: v = (signed char)va_arg(ap, int); break;
			case KV_SHORT: v = (short)va_arg(ap, int); break;
			default: v = va_arg(ap, int); break;
			}
			snprintf(num, sizeof(num), "%lld", v);
			break;
		}
		case 'u':
		case 'x': {
			unsigned long long v;
			switch (len) {
			case KV_LONG: v = va_arg(ap, unsigned long); break;
			case KV_LLONG: v = va_arg(ap, unsigned long long); break;
			case KV_SIZE: v = va_arg(ap, size_t); break;
			case KV_MAX: v = (unsigned long long)va_arg(ap, uintmax_t); break;
			case KV_CHAR: v = (unsigned char)va_arg(ap, unsigned); break;
			case KV_SHORT: v = (unsigned short)va_arg(ap, unsigned); break;
			default: v = va_arg(ap, unsigned); break;
			}
			snprintf(num, sizeof(num), conv == 'x' ? "%llx" : "%llu", v);
			if (conv == 'x') {
				sval = num;
				slen = strlen(num);
			}
			break;
		}
		case 'f':
		case 'g':
		case 'e': {
			double v = va_arg(ap, double);
			/* JSON has no NaN or infinities */
			if (v != v || v > 1.7e308 || v < -1.7e308)
				is_null = true;
			else
				snprintf(num, sizeof(num), conv == 'f' ? "%f" : conv == 'g' ? "%g" : "%e", v);
			break;
		}
		default:
			goto out; /* its argument's type is unknown: stop here */
		}

		/* a field goes in whole or not at all: the line stays valid */
		size_t before = w.n;
		if (json) {
			lw_raw(&w, ",", 1);
			lw_json_str(&w, key, kn);
			lw_raw(&w, ":", 1);
			if (is_null)
				lw_str(&w, "null");
			else if (sval)
				lw_json_str(&w, sval, slen);
			else
				lw_str(&w, num);
		} else {
			lw_raw(&w, " ", 1);
			lw_raw(&w, key, kn);
			lw_raw(&w, "=", 1);
			if (is_null)
				lw_str(&w, "-");
			else if (sval)
				lw_text_str(&w, sval, slen);
			else
				lw_str(&w, num);
		}
		if (w.full)
			w.n = before;
	}
out:
	va_end(ap);
	lw_finish(&w);
}
