/*
 * The bench's client codec (bench/frame.c) behind a line protocol, so that
 * frame_oracle.py can check it against the Python test client's encoder
 * (tests/integration/rrtest.py), an implementation that shares no code with
 * it. One request per stdin line, one answer line per request:
 *   E <opcode> <mask, 8 hex digits> <payload hex>  ->  <frame hex>
 *   D <stream hex>  ->  the reader's events fed the whole stream, then fed
 *                       it one byte at a time (both must agree), as
 *                       "m<op>:<len>:<first bytes hex>" / "c<op>:<payload hex>"
 *                       separated by spaces, or "error <rc>"
 * ("-" stands for an empty hex string.)
 */
#include "../frame.c"

#include <stdio.h>
#include <stdlib.h>

static uint8_t in[1 << 21], out[(1 << 21) + RR_BENCH_FRAME_HDR_MAX];
static char line[(1 << 22) + 64];
static char events[2][1 << 16];
static size_t ev_len;
static int ev_which;

static size_t unhex(const char *h, uint8_t *dst)
{
	size_t n = 0;

	if (h[0] == '-')
		return 0;
	while (h[0] && h[1] && h[0] != '\n' && h[0] != ' ') {
		unsigned v;
		sscanf(h, "%2x", &v);
		dst[n++] = (uint8_t)v;
		h += 2;
	}
	return n;
}

static void hex(const uint8_t *p, size_t n)
{
	if (n == 0)
		fputs("-", stdout);
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
}

static void ev_add(const char *fmt_prefix, const uint8_t *p, size_t n)
{
	char *e = events[ev_which];
	ev_len += (size_t)snprintf(e + ev_len, sizeof(events[0]) - ev_len, "%s", fmt_prefix);
	if (n == 0)
		ev_len += (size_t)snprintf(e + ev_len, sizeof(events[0]) - ev_len, "-");
	for (size_t i = 0; i < n && ev_len + 3 < sizeof(events[0]); i++)
		ev_len += (size_t)snprintf(e + ev_len, sizeof(events[0]) - ev_len, "%02x", p[i]);
	ev_len += (size_t)snprintf(e + ev_len, sizeof(events[0]) - ev_len, " ");
}

static int on_message(void *ctx, uint8_t op, const uint8_t *st, size_t sl, uint64_t len)
{
	char pre[64];

	(void)ctx;
	snprintf(pre, sizeof(pre), "m%u:%llu:", op, (unsigned long long)len);
	ev_add(pre, st, sl);
	return 0;
}

static int on_control(void *ctx, uint8_t op, const uint8_t *p, size_t n)
{
	char pre[16];

	(void)ctx;
	snprintf(pre, sizeof(pre), "c%u:", op);
	ev_add(pre, p, n);
	return 0;
}

static const struct rr_bench_rx_ops ops = {.message = on_message, .control = on_control};

/* Returns 0 or the reader's error. */
static ssize_t decode(const uint8_t *p, size_t n, size_t step)
{
	struct rr_bench_rx rx = {0};
	ssize_t r = 0;

	ev_len = 0;
	events[ev_which][0] = '\0';
	for (size_t i = 0; i < n; i += step) {
		size_t k = n - i < step ? n - i : step;
		r = rr_bench_rx_feed(&rx, p + i, k, &ops, NULL);
		if (r < 0)
			break;
		r = 0;
	}
	rr_bench_rx_free(&rx);
	return r;
}

int main(void)
{
	while (fgets(line, sizeof(line), stdin) != NULL) {
		if (line[0] == 'E') {
			unsigned op, mask_be;
			char *p = line + 2;
			uint8_t key[4];
			uint32_t mask;

			if (sscanf(p, "%u %8x", &op, &mask_be) != 2)
				return 2;
			key[0] = (uint8_t)(mask_be >> 24);
			key[1] = (uint8_t)(mask_be >> 16);
			key[2] = (uint8_t)(mask_be >> 8);
			key[3] = (uint8_t)mask_be;
			memcpy(&mask, key, 4); /* wire order */
			p = strchr(p, ' ') + 1;
			p = strchr(p, ' ') + 1;
			size_t n = unhex(p, in);
			size_t len = rr_bench_frame_encode(out, (uint8_t)op, in, n, mask);
			hex(out, len);
			putchar('\n');
		} else if (line[0] == 'D') {
			size_t n = unhex(line + 2, in);
			ev_which = 0;
			ssize_t r1 = decode(in, n, n ? n : 1);
			ev_which = 1;
			ssize_t r2 = decode(in, n, 1);
			if (r1 != r2 || strcmp(events[0], events[1]) != 0)
				printf("split-mismatch whole=[%zd %s] bytewise=[%zd %s]\n", r1, events[0],
				       r2, events[1]);
			else if (r1 < 0)
				printf("error %zd\n", r1);
			else
				printf("%s\n", events[0]);
		} else {
			return 2;
		}
		fflush(stdout);
	}
	return 0;
}
